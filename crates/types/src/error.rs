//! The OpenAI error envelope: `{"error":{"message","type","param","code"}}`.
//!
//! This is the shape every OpenAI SDK parses into its exception types; the gateway answers
//! every failure in it (for OpenAI-dialect clients) with the matching HTTP status.

use serde::{Deserialize, Serialize};

/// The body of an OpenAI error response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorEnvelope {
    /// The error itself.
    pub error: ErrorBody,
}

/// What went wrong, for a person and for a program.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// What went wrong and what to do about it.
    pub message: String,
    /// The error type: `invalid_request_error`, `authentication_error`, `rate_limit_error`, ...
    #[serde(rename = "type")]
    pub kind: String,
    /// The request parameter at fault, if one is.
    pub param: Option<String>,
    /// A machine-readable code (`model_not_found`, `invalid_api_key`, ...).
    pub code: Option<String>,
}

impl ErrorEnvelope {
    /// An envelope with the given message, type and code and no parameter.
    pub fn new(message: impl Into<String>, kind: &str, code: Option<&str>) -> Self {
        Self {
            error: ErrorBody {
                message: message.into(),
                kind: kind.to_owned(),
                param: None,
                code: code.map(str::to_owned),
            },
        }
    }

    /// Names the request parameter at fault.
    pub fn with_param(mut self, param: impl Into<String>) -> Self {
        self.error.param = Some(param.into());
        self
    }
}
