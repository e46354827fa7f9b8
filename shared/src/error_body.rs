//! The JSON error body every mb HTTP API answers with:
//! `{"error": {"code": "...", "message": "...", "fields": {...}}}`.

use crate::message::FieldErrors;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct ErrorDetail {
    pub code: String,
    pub message: String,
    #[serde(default, skip_serializing_if = "FieldErrors::is_empty")]
    pub fields: FieldErrors,
}

/// Builds the response for an error with the given status, code and message.
pub fn error_response(
    status: StatusCode,
    code: &str,
    message: impl Into<String>,
    fields: FieldErrors,
) -> Response {
    let body = ErrorBody {
        error: ErrorDetail {
            code: code.to_owned(),
            message: message.into(),
            fields,
        },
    };
    (status, axum::Json(body)).into_response()
}

/// The answer to a path no route serves: a JSON 404, like every other refusal. `hint` says
/// where the API is described.
pub fn no_such_path(hint: &str) -> Response {
    error_response(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("no such path; {hint}"),
        FieldErrors::new(),
    )
}

/// The answer to a method a path does not take: a JSON 405 (axum adds `Allow`).
pub fn no_such_method(hint: &str) -> Response {
    error_response(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("this path does not take that method; {hint}"),
        FieldErrors::new(),
    )
}
