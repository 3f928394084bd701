//! dts-operator: a Kubernetes operator that stops Alibaba Cloud DTS jobs
//! declared as `DtsJob` resources.
//!
//! Architecture, one module per concern:
//! * [`crd`]: the `DtsJob` resource types (the schema is generated from them);
//! * [`dts`]: the DTS API client (signing, requests, response parsing and
//!   error classification): the `dts-api` crate (`crates/dts-api`),
//!   re-exported under its old path;
//! * [`controller`]: the reconcile pipeline (resolve → validate → plan → act → status);
//! * [`run`]: wiring of watches, client, limits, leader election and controller
//!   for `dts-operator run`;
//! * [`leader`]: leader election on a coordination.k8s.io Lease;
//! * [`http`], [`metrics`], [`telemetry`]: `/metrics`, `/livez`, `/readyz`,
//!   Prometheus metrics and logging.
//!
//! The local DTS API for tests, demos and offline rehearsals is the
//! `dts-emulator` crate (`crates/dts-emulator`), not part of the operator.

pub mod cli;
pub mod controller;
pub mod crd;
pub use dts_api as dts;
pub mod http;
pub mod leader;
pub mod metrics;
pub mod run;
pub mod telemetry;
