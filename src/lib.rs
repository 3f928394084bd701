//! dts-operator: a Kubernetes operator that stops Alibaba Cloud DTS jobs
//! declared as `DtsJob` resources.
//!
//! Architecture, one module per concern:
//! * [`crd`]: the `DtsJob` resource types (the schema is generated from them);
//! * [`cache`]: what the watch cache keeps of a DtsJob (status packed);
//! * [`store`]: the watch cache itself, keyed by namespace and name;
//! * [`runner`]: runs the reconciles: triggers, the queue, requeues, the
//!   concurrency bound and graceful shutdown;
//! * [`controller`]: the reconcile pipeline (observe → decide → act → record → write);
//! * [`reason`]: the one vocabulary of condition reasons, Event reasons and metric labels;
//! * [`run`]: wiring of watches, client, limits, leader election and controller
//!   for `dts-operator run`;
//! * [`scope`]: which namespaces and labels one replica set watches (sharding);
//! * [`triggers`]: which watch events start a reconcile (not the operator's own status writes);
//! * [`leader`]: leader election on a coordination.k8s.io Lease;
//! * [`limits`]: the DTS call limits per (AccessKey, region): adaptive rate,
//!   circuit breaker, and the global concurrency limit;
//! * [`view`]: DTS's own view of the jobs, as last read;
//! * [`observer`]: the periodic, batched read of DTS into that view;
//! * [`failpoint`]: crash points for the crash sweep (the `failpoints` feature only);
//! * [`http`], [`metrics`], [`telemetry`]: `/metrics`, `/livez`, `/readyz`,
//!   Prometheus metrics and logging.
//!
//! The DTS API client (signing, requests, response parsing, error
//! classification) is the `dts-api` crate (`crates/dts-api`). The local DTS
//! API for tests, demos and offline rehearsals is the `dts-emulator` crate
//! (`crates/dts-emulator`), a dev-dependency only.

pub mod alloc;
pub mod cache;
pub mod cli;
pub mod controller;
pub mod crd;
pub mod failpoint;
pub mod http;
pub mod kube_client;
pub mod leader;
pub mod limits;
pub mod metrics;
pub mod observer;
pub mod reason;
pub mod run;
pub mod runner;
pub mod scope;
pub mod store;
pub mod telemetry;
pub mod triggers;
pub mod view;
