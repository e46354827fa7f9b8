//! The store's API error: one match from variant to status and body. Database and CA errors
//! are logged with their text and answered generically, never with SQL details.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use mb_shared::error_body::error_response;

#[derive(Debug, thiserror::Error)]
pub(crate) enum ApiError {
    #[error("forbidden: {0}")]
    Forbidden(String),
    #[error("not found: {0}")]
    NotFound(String),
    #[error("{0}")]
    Unprocessable(String),
    #[error("database error: {0}")]
    Database(#[from] mysql_async::Error),
    #[error("certificate authority error: {0}")]
    Ca(#[from] mb_pki::ca::CaError),
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

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code, message) = match self {
            ApiError::Forbidden(m) => (StatusCode::FORBIDDEN, "forbidden", m),
            ApiError::NotFound(m) => (StatusCode::NOT_FOUND, "not_found", m),
            ApiError::Unprocessable(m) => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_request", m),
            ApiError::Database(e) => {
                tracing::error!(error = %e, "database error");
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "database_unavailable",
                    "the database is unavailable; retry later".to_owned(),
                )
            }
            ApiError::Ca(e) => {
                tracing::error!(error = %e, "certificate authority error");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "the certificate authority failed".to_owned(),
                )
            }
        };
        error_response(status, code, message, Default::default())
    }
}
