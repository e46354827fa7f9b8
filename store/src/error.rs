//! The store's API error: one match from variant to status and body. Database, Redis and CA
//! errors are logged with their text and answered generically, never with SQL details.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use mb_shared::error_body::error_response;
use mb_shared::message::FieldErrors;

#[derive(Debug, thiserror::Error)]
pub(crate) enum ApiError {
    #[error("unauthorized: {0}")]
    Unauthorized(String),
    #[error("forbidden: {0}")]
    Forbidden(String),
    #[error("not found: {0}")]
    NotFound(String),
    #[error("conflict: {0}")]
    Conflict(String),
    #[error("{0}")]
    Unprocessable(String),
    #[error("validation failed")]
    Validation(FieldErrors),
    #[error("sign-ins locked")]
    LoginLocked { retry_after_secs: u64 },
    #[error("database error: {0}")]
    Database(#[from] mysql_async::Error),
    #[error("redis error: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("certificate authority error: {0}")]
    Ca(#[from] mb_pki::ca::CaError),
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    pub(crate) fn no_such_message() -> Self {
        ApiError::NotFound("no such message".into())
    }
}

impl From<mb_pki::lifecycle::CertError> for ApiError {
    fn from(e: mb_pki::lifecycle::CertError) -> Self {
        use mb_pki::lifecycle::CertError;
        match e {
            CertError::Db(e) => ApiError::Database(e),
            CertError::Ca(e) => ApiError::Ca(e),
            CertError::NotFound(m) => ApiError::NotFound(m),
            CertError::Invalid(m) => ApiError::Unprocessable(m),
        }
    }
}

impl From<mb_db::users::UserError> for ApiError {
    fn from(e: mb_db::users::UserError) -> Self {
        use mb_db::users::UserError;
        match e {
            UserError::Db(e) => ApiError::Database(e),
            UserError::Invalid(m) => ApiError::Unprocessable(m),
            UserError::NotFound(name) => ApiError::NotFound(format!("no user `{name}`")),
            UserError::Exists(name) => ApiError::Conflict(format!("user `{name}` exists already")),
            UserError::Hash(m) => ApiError::Internal(m),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let retry_after = match &self {
            ApiError::LoginLocked { retry_after_secs } => Some(*retry_after_secs),
            ApiError::Database(_) | ApiError::Redis(_) => Some(1),
            _ => None,
        };
        let (status, code, message, fields) = match self {
            ApiError::Unauthorized(m) => (StatusCode::UNAUTHORIZED, "unauthorized", m, None),
            ApiError::Forbidden(m) => (StatusCode::FORBIDDEN, "forbidden", m, None),
            ApiError::NotFound(m) => (StatusCode::NOT_FOUND, "not_found", m, None),
            ApiError::Conflict(m) => (StatusCode::CONFLICT, "conflict", m, None),
            ApiError::Unprocessable(m) => {
                (StatusCode::UNPROCESSABLE_ENTITY, "invalid_request", m, None)
            }
            ApiError::Validation(f) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "validation_failed",
                "the request is invalid; see fields".to_owned(),
                Some(f),
            ),
            ApiError::LoginLocked { retry_after_secs } => (
                StatusCode::TOO_MANY_REQUESTS,
                "login_locked",
                format!(
                    "too many failed sign-ins; try again in {} minute(s)",
                    retry_after_secs.div_ceil(60)
                ),
                None,
            ),
            ApiError::Database(e) => {
                tracing::error!(error = %e, "database error");
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "database_unavailable",
                    "the database is unavailable; retry later".to_owned(),
                    None,
                )
            }
            ApiError::Redis(e) => {
                tracing::error!(error = %e, "redis error");
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "queue_unavailable",
                    "the queue is unavailable; retry later".to_owned(),
                    None,
                )
            }
            ApiError::Ca(e) => {
                tracing::error!(error = %e, "certificate authority error");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "the certificate authority failed".to_owned(),
                    None,
                )
            }
            ApiError::Internal(e) => {
                tracing::error!(error = %e, "internal error");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "internal error".to_owned(),
                    None,
                )
            }
        };
        let mut resp = error_response(status, code, message, fields.unwrap_or_default());
        if let Some(s) = retry_after.and_then(|s| HeaderValue::from_str(&s.to_string()).ok()) {
            resp.headers_mut().insert(header::RETRY_AFTER, s);
        }
        resp
    }
}
