//! Gateway ("PopGw") errors: the 4xx/5xx answers with Alibaba's body shape
//! `{"RequestId","HostId","Code","Message","Recommend"}` (docs/dts-api.md §8).

use axum::http::StatusCode;

/// The HostId the gateway reports; the emulator stands in for the central
/// DTS endpoint.
pub const HOST_ID: &str = "dts.aliyuncs.com";

/// A gateway error before it gets its RequestId.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayError {
    pub status: StatusCode,
    pub code: String,
    pub message: String,
}

impl GatewayError {
    pub fn new(status: StatusCode, code: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            status,
            code: code.into(),
            message: message.into(),
        }
    }

    pub fn missing_parameter(name: &str) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "MissingParameter",
            format!("The input parameter \"{name}\" that is mandatory for processing this request is not supplied."),
        )
    }

    pub fn invalid_parameter(name: &str, why: &str) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "InvalidParameter",
            format!("The specified parameter \"{name}\" is not valid: {why}"),
        )
    }

    pub fn api_not_found() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "InvalidApi.NotFound",
            "Specified api is not found, please check your url and method.",
        )
    }

    pub fn incomplete_signature(why: &str) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "IncompleteSignature",
            format!("The request signature does not conform to Aliyun standards: {why}"),
        )
    }

    pub fn timestamp_format(name: &str) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "InvalidTimeStamp.Format",
            format!("Specified time stamp or date value is not well formatted ({name})."),
        )
    }

    pub fn timestamp_expired() -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "InvalidTimeStamp.Expired",
            "Specified time stamp or date value is expired.",
        )
    }

    pub fn access_key_not_found() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "InvalidAccessKeyId.NotFound",
            "Specified access key is not found.",
        )
    }

    /// The message ends with the server's string-to-sign, exactly as the
    /// gateway does: the legacy SDK compares it with its own to tell a wrong
    /// secret from a canonicalization bug.
    pub fn signature_mismatch(string_to_sign: &str) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "SignatureDoesNotMatch",
            format!(
                "Specified signature is not matched with our calculation. server string to sign is:{string_to_sign}"
            ),
        )
    }

    pub fn token_mismatch() -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "InvalidSecurityToken.MismatchWithAccessKey",
            "Specified SecurityToken mismatch with the AccessKey.",
        )
    }

    /// Temporary credentials past their `Expiration`.
    pub fn token_expired() -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "InvalidSecurityToken.Expired",
            "Specified SecurityToken is expired.",
        )
    }

    pub fn nonce_used() -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "SignatureNonceUsed",
            "Specified signature nonce was used already.",
        )
    }

    pub fn throttled() -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "Throttling.User",
            "Request was denied due to user flow control.",
        )
    }

    /// The JSON body for this error under `request_id`.
    pub fn body(&self, request_id: &str) -> serde_json::Value {
        serde_json::json!({
            "RequestId": request_id,
            "HostId": HOST_ID,
            "Code": self.code,
            "Message": self.message,
            "Recommend": format!("https://api.aliyun.com/troubleshoot?q={}&product=Dts&requestId={request_id}", self.code),
        })
    }
}
