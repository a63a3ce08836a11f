//! API errors in StackPath's wire shape: `{"code": <gRPC code>, "message": …, "details": […]}`
//! with the HTTP status the gateway pairs with that code.

use axum::Json;
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use serde_json::{Value, json};

/// gRPC status codes used by the API.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Code {
    InvalidArgument = 3,
    NotFound = 5,
    AlreadyExists = 6,
    PermissionDenied = 7,
    ResourceExhausted = 8,
    FailedPrecondition = 9,
    Unimplemented = 12,
    Internal = 13,
    Unavailable = 14,
    Unauthenticated = 16,
}

impl Code {
    fn status(self) -> StatusCode {
        match self {
            Code::InvalidArgument | Code::FailedPrecondition => StatusCode::BAD_REQUEST,
            Code::NotFound => StatusCode::NOT_FOUND,
            Code::AlreadyExists => StatusCode::CONFLICT,
            Code::PermissionDenied => StatusCode::FORBIDDEN,
            Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
            Code::Unimplemented => StatusCode::NOT_IMPLEMENTED,
            Code::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        }
    }
}

/// One field problem, reported as a `stackpath.rpc.BadRequest` field violation.
#[derive(Clone, Debug)]
pub(crate) struct Violation {
    pub field: String,
    pub description: String,
}

#[derive(Debug)]
pub(crate) struct ApiError {
    pub code: Code,
    pub message: String,
    pub details: Vec<Value>,
}

impl ApiError {
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            details: Vec::new(),
        }
    }
    pub fn invalid(violations: Vec<Violation>) -> Self {
        let message = violations
            .iter()
            .map(|v| format!("{}: {}", v.field, v.description))
            .collect::<Vec<_>>()
            .join("; ");
        let field_violations: Vec<Value> = violations
            .iter()
            .map(|v| json!({"field": v.field, "description": v.description}))
            .collect();
        Self {
            code: Code::InvalidArgument,
            message: format!("invalid request: {message}"),
            details: vec![json!({
                "@type": "stackpath.rpc.BadRequest",
                "fieldViolations": field_violations,
            })],
        }
    }
    pub fn invalid_field(field: &str, description: impl Into<String>) -> Self {
        Self::invalid(vec![Violation {
            field: field.to_string(),
            description: description.into(),
        }])
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(Code::NotFound, message)
    }
    pub fn unauthenticated(message: impl Into<String>) -> Self {
        Self::new(Code::Unauthenticated, message)
    }
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(Code::Internal, message)
    }
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(Code::Unavailable, message)
    }
    pub fn rate_limited(retry_after_seconds: u64) -> Self {
        Self {
            code: Code::ResourceExhausted,
            message: format!("rate limit exceeded; retry after {retry_after_seconds} seconds"),
            details: vec![json!({
                "@type": "stackpath.rpc.RetryInfo",
                "retryDelay": format!("{retry_after_seconds}s"),
            })],
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({
            "code": self.code as i32,
            "message": self.message,
            "details": self.details,
        });
        (self.code.status(), Json(body)).into_response()
    }
}
