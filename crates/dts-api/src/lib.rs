//! `dts-api`: a client for the Alibaba Cloud DTS (2020-01-01) API, the one
//! dts-operator uses. It has no Kubernetes in it: signing, request building,
//! response parsing and error classification are plain functions over plain
//! values, and the network sits behind a small [`Transport`] trait.
//!
//! * [`sign`]: pure signing (HMAC-SHA1 RPC and ACS3-HMAC-SHA256);
//! * [`client`]: request building ([`client::build_request`], pure) and the
//!   [`DtsClient`] calls (`StopDtsJob`, `StartDtsJob`, `SuspendDtsJob`,
//!   `DescribeDtsJobDetail`, `DescribeDtsJobs`, any action);
//! * [`jobs`]: the describe answers read into [`JobDetail`] and
//!   [`JobPage`]/[`JobView`] (pure, testable without a transport), and the
//!   [`JobsQuery`] of a DescribeDtsJobs page;
//! * [`response`]: reading every answer shape DTS produces;
//! * [`error`]: [`DtsError`], its [`ErrorClass`] and stable `reason()`;
//! * [`endpoint`]: regionId → host, with the official SDK's map;
//! * [`sts`]: the STS client (`AssumeRole`, `AssumeRoleWithOIDC`) for temporary
//!   credentials, with the same signing and error classification;
//! * [`transport`]: the HTTP boundary, a trait with a reqwest implementation.
//!
//! Where is the StopDtsJob call made? [`DtsClient::stop_dts_job`].
//!
//! # Signing, without a network
//!
//! The signers take the timestamp and nonce as arguments, so a signature can
//! be checked against a known one. This is the first HMAC-SHA1 vector of
//! `tests/data/rpc-signature-v1-vectors.json`, produced by Alibaba's SDK:
//!
//! ```
//! use std::collections::BTreeMap;
//! use dts_api::sign::rpc_v1;
//!
//! let params: BTreeMap<String, String> = [
//!     ("AccessKeyId", "testAccessKeyId"),
//!     ("Action", "StopDtsJob"),
//!     ("DtsJobId", "dtsj1a2b3c4d5e6f7"),
//!     ("Format", "json"),
//!     ("RegionId", "cn-hangzhou"),
//!     ("SignatureMethod", "HMAC-SHA1"),
//!     ("SignatureNonce", "00000000000000000000000000000001"),
//!     ("SignatureVersion", "1.0"),
//!     ("Timestamp", "2024-01-02T03:04:05Z"),
//!     ("Version", "2020-01-01"),
//! ]
//! .into_iter()
//! .map(|(k, v)| (k.to_owned(), v.to_owned()))
//! .collect();
//! let canonical = rpc_v1::canonicalized_query_string(&params);
//! let string_to_sign = rpc_v1::string_to_sign("POST", &canonical);
//! assert_eq!(
//!     rpc_v1::signature("testAccessKeySecret", &string_to_sign),
//!     "qeMUz1MxAcTKSoPaTlTjSvUSK/Q="
//! );
//! ```
//!
//! # Building a request, without a network
//!
//! [`build_request`] is what [`DtsClient`] sends, minus the clock and the
//! nonce, which are arguments here:
//!
//! ```
//! use std::collections::BTreeMap;
//! use dts_api::{build_request, ClientConfig, Credentials, SignatureVersion};
//!
//! let config = ClientConfig {
//!     signature_version: SignatureVersion::Acs3HmacSha256,
//!     ..ClientConfig::default()
//! };
//! let creds = Credentials::new("testAccessKeyId", "testAccessKeySecret");
//! let mut params = BTreeMap::new();
//! params.insert("DtsJobId".to_owned(), "dtsj1a2b3c4d5e6f7".to_owned());
//! params.insert("RegionId".to_owned(), "cn-hangzhou".to_owned());
//! let ts = jiff::Timestamp::from_second(1_704_164_645).unwrap(); // 2024-01-02T03:04:05Z
//!
//! let req = build_request(&config, &creds, "cn-hangzhou", "StopDtsJob", &params, ts, "0001").unwrap();
//! assert_eq!(req.method, http::Method::POST);
//! // cn-hangzhou is served by the central endpoint, as in the SDK's map.
//! assert!(req.url.starts_with("https://dts.aliyuncs.com/?"));
//! assert_eq!(req.header("x-acs-action"), Some("StopDtsJob"));
//! assert!(req.header("authorization").unwrap().starts_with("ACS3-HMAC-SHA256 Credential=testAccessKeyId,"));
//!
//! // A bad regionId is refused before anything is signed or sent.
//! let err = build_request(&config, &creds, "cn-hangzhou.evil.com", "StopDtsJob", &params, ts, "0001").unwrap_err();
//! assert_eq!(err.class, dts_api::ErrorClass::Terminal);
//! ```

// `DtsError` is a flat record of public fields that the controller copies
// into status; it is returned once per network call, so its size (~170
// bytes) costs nothing measurable, and boxing it would complicate every
// consumer for no gain.
#![allow(clippy::result_large_err)]

pub mod client;
pub mod endpoint;
pub mod error;
pub mod jobs;
pub mod response;
pub mod sign;
pub mod sts;
pub mod transport;

pub use client::{build_request, ApiSuccess, ClientConfig, DtsClient, JobDetail, JobRef, SignatureVersion};
pub use error::{DtsError, ErrorClass, ErrorKind, ErrorReason};
pub use jobs::{JobPage, JobView, JobsQuery, MAX_PAGE_SIZE};
pub use sign::Credentials;
pub use sts::{AssumeRole, AssumeRoleWithOidc, StsClient, StsCredentials};
pub use transport::{HttpRequest, HttpResponse, ReqwestTransport, Transport, TransportError};

/// The README's example compiles (`cargo test -p dts-api --doc`).
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
