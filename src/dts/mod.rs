//! The Alibaba Cloud DTS (2020-01-01) API client.

pub mod sign;
mod stub;
pub use stub::*;
