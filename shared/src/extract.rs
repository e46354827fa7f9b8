//! `ApiJson<T>`: the JSON body extractor of every mb API. It answers in the one error format
//! (`{"error": {"code", "message", "fields"}}`): 415 when the body is not declared
//! `application/json`, 400 when it is not JSON, 422 naming the path of the field that does not
//! fit (`days`, `messages[3].sender_number`). The body was already read, within its limits,
//! by [`crate::server::body`].

use crate::error_body::error_response;
use crate::message::FieldErrors;
use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;

pub struct ApiJson<T>(pub T);

/// Why a JSON body was refused; answers in the mb error format.
#[derive(Debug)]
pub struct JsonRejection {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub fields: FieldErrors,
}

impl IntoResponse for JsonRejection {
    fn into_response(self) -> Response {
        error_response(self.status, self.code, self.message, self.fields)
    }
}

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = JsonRejection;

    async fn from_request(req: Request, state: &S) -> Result<Self, JsonRejection> {
        if !is_json(req.headers()) {
            return Err(JsonRejection {
                status: StatusCode::UNSUPPORTED_MEDIA_TYPE,
                code: "unsupported_media_type",
                message: "Content-Type must be application/json".into(),
                fields: [(
                    "content-type".to_owned(),
                    "must be application/json".to_owned(),
                )]
                .into(),
            });
        }
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(|e| JsonRejection {
                status: StatusCode::BAD_REQUEST,
                code: "bad_request",
                message: e.body_text(),
                fields: FieldErrors::new(),
            })?;
        parse(&bytes).map(ApiJson)
    }
}

/// Whether the request declares a JSON body (`application/json`, any parameters).
pub fn is_json(headers: &axum::http::HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|mime| mime.trim().eq_ignore_ascii_case("application/json"))
}

/// Deserializes `bytes`, or says what is wrong with them.
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, JsonRejection> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if inner.is_data() {
            let field = if path == "." {
                "(body)".to_owned()
            } else {
                path
            };
            JsonRejection {
                status: StatusCode::UNPROCESSABLE_ENTITY,
                code: "validation_failed",
                message: "the request is invalid; see fields".into(),
                fields: [(field, inner.to_string())].into(),
            }
        } else {
            JsonRejection {
                status: StatusCode::BAD_REQUEST,
                code: "malformed_json",
                message: format!("request body is not valid JSON: {inner}"),
                fields: FieldErrors::new(),
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct In {
        name: String,
        days: i64,
    }

    #[test]
    fn a_misfit_field_is_named_and_broken_json_is_a_400() {
        let r = parse::<In>(br#"{"name": "x", "days": "many"}"#).unwrap_err();
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(r.fields.contains_key("days"), "{:?}", r.fields);
        let r = parse::<In>(br#"{"name": "x", "days": 1e40}"#).unwrap_err();
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
        let r = parse::<In>(br#"{"name": "x", "#).unwrap_err();
        assert_eq!(r.status, StatusCode::BAD_REQUEST);
        assert!(parse::<In>(br#"{"name": "x", "days": 3}"#).is_ok());
    }
}
