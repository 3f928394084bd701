//! `dts-emulator`: a local DTS (2020-01-01) API that Alibaba's own SDKs
//! accept, for tests, demos and offline GitOps rehearsals.
//!
//! One module per concern: [`config`] (the YAML/JSON file), [`state`] (jobs
//! and their directions), [`verify`] (both signature schemes, nonces,
//! timestamps), [`faults`] (injected failures), [`journal`] (what was
//! received), [`ledger`] (the secrets a test run must never print), [`sts`] (AssumeRole, AssumeRoleWithOIDC and the credentials
//! they issue), [`error`] (gateway error bodies), [`api`] (HTTP handlers) and
//! [`server`] (serving and stopping).

pub mod api;
pub mod config;
pub mod error;
pub mod faults;
pub mod journal;
pub mod ledger;
pub mod server;
pub mod state;
pub mod sts;
pub mod verify;

pub use config::{Config, ConfigError};
pub use ledger::Ledger;
pub use server::{serve, serve_with_ledger, EmulatorHandle};
