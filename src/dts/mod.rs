//! The Alibaba Cloud DTS (2020-01-01) API client.
//!
//! * [`sign`]: pure signing (HMAC-SHA1 RPC and ACS3-HMAC-SHA256);
//! * [`client`]: request building ([`client::build_request`], pure) and the
//!   [`DtsClient`] calls (`StopDtsJob`, `DescribeDtsJobDetail`, any action);
//! * [`response`]: reading every answer shape DTS produces;
//! * [`error`]: [`DtsError`], its [`ErrorClass`] and stable `reason()`;
//! * [`endpoint`]: regionId → host, with the official SDK's map;
//! * [`transport`]: the HTTP boundary, a trait with a reqwest implementation.
//!
//! Where is the StopDtsJob call made? [`DtsClient::stop_dts_job`].

// `DtsError` is a flat record of public fields that the controller copies
// into status; it is returned once per network call, so its size (~170
// bytes) costs nothing measurable, and boxing it would complicate every
// consumer for no gain.
#![allow(clippy::result_large_err)]

pub mod client;
pub mod endpoint;
pub mod error;
pub mod response;
pub mod sign;
pub mod transport;

pub use client::{build_request, ApiSuccess, ClientConfig, DtsClient, JobDetail, JobRef, SignatureVersion};
pub use error::{DtsError, ErrorClass, ErrorKind};
pub use sign::Credentials;
pub use transport::{HttpRequest, HttpResponse, ReqwestTransport, Transport, TransportError};
