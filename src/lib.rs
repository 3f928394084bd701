//! dts-operator: a Kubernetes operator that stops Alibaba Cloud DTS jobs
//! declared as `DtsJob` resources.
//!
//! Architecture, one module per concern:
//! * [`crd`]: the `DtsJob` resource types (the schema is generated from them);
//! * [`dts`]: the DTS API client: signing, requests, response parsing and
//!   error classification;
//! * [`controller`]: the reconcile pipeline (resolve → validate → plan → act → status);
//! * [`emulator`]: a local DTS API for tests, demos and offline rehearsals;
//! * [`leader`]: leader election on a `coordination.k8s.io` Lease;
//! * [`http`]: the `/metrics`, `/livez` and `/readyz` server.

pub mod crd;
pub mod dts;
pub mod http;
pub mod leader;
