//! The store's API error: one match from variant to status. Database errors are logged with
//! their text and answered with a generic body, never with SQL details.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use mb_shared::error_body::error_response;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("forbidden: {0}")]
    Forbidden(String),
    #[error("not found")]
    NotFound,
    #[error("bad request: {0}")]
    BadRequest(String),
    #[error("database error: {0}")]
    Database(#[from] mysql_async::Error),
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match self {
            ApiError::Forbidden(m) => {
                error_response(StatusCode::FORBIDDEN, "forbidden", m, Default::default())
            }
            ApiError::NotFound => error_response(
                StatusCode::NOT_FOUND,
                "not_found",
                "no such message",
                Default::default(),
            ),
            ApiError::BadRequest(m) => error_response(
                StatusCode::BAD_REQUEST,
                "bad_request",
                m,
                Default::default(),
            ),
            ApiError::Database(e) => {
                tracing::error!(error = %e, "database error");
                error_response(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "database_unavailable",
                    "the database is unavailable; retry later",
                    Default::default(),
                )
            }
        }
    }
}
