//! The extractors of every mb API, which refuse in the one error format
//! (`{"error": {"code", "message", "fields"}}`) where axum's own answer in plain text:
//!
//! * [`ApiJson<T>`], the JSON body: 415 when the body is not declared `application/json`, 400
//!   when it is not JSON, 422 naming the path of the field that does not fit (`days`,
//!   `messages[3].sender_number`). The body was already read, within its limits, by
//!   [`crate::server::body`].
//! * [`ApiQuery<T>`], the query string: 422 naming the parameter that does not fit (`limit`).
//! * [`ApiPath<T>`], the path parameters: 400 naming the one that cannot be decoded (a
//!   percent-encoded byte sequence that is not UTF-8).

use crate::error_body::error_response;
use crate::message::FieldErrors;
use axum::body::Bytes;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::request::Parts;
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

/// Deserializes `bytes`, or says what is wrong with them. Tracking the path of every field
/// costs time on every request (the store's deliver batches carry thousands of fields), so
/// the path is only worked out again for a body that failed.
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, JsonRejection> {
    if let Ok(v) = T::deserialize(&mut serde_json::Deserializer::from_slice(bytes)) {
        return Ok(v);
    }
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

/// Query parameters, deserialized by axum's `Query`; a parameter that does not fit is a 422
/// naming it, as a JSON field would be.
#[derive(Debug)]
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = JsonRejection;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, JsonRejection> {
        Query::try_from_uri(&parts.uri)
            .map(|Query(q)| ApiQuery(q))
            .map_err(query_rejection)
    }
}

/// axum words a query that does not deserialize as `Failed to deserialize query string:
/// <parameter>: <why>` (the parameter is `serde_path_to_error`'s path, absent when no one
/// parameter is to blame); the parameter becomes the field, as [`parse`] does for JSON.
fn query_rejection(e: QueryRejection) -> JsonRejection {
    let text = e.body_text();
    let detail = text
        .strip_prefix("Failed to deserialize query string: ")
        .unwrap_or(&text);
    let (field, why) = match detail.split_once(": ") {
        Some((name, why))
            if !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"_-.[]".contains(&b)) =>
        {
            (name, why)
        }
        _ => ("(query)", detail),
    };
    JsonRejection {
        status: StatusCode::UNPROCESSABLE_ENTITY,
        code: "validation_failed",
        message: "the request is invalid; see fields".into(),
        fields: [(field.to_owned(), why.to_owned())].into(),
    }
}

/// Path parameters, deserialized by axum's `Path`; one that cannot be decoded is a 400 naming
/// it. (A route whose parameters do not fit its handler is our bug: axum's 500, in JSON.)
#[derive(Debug)]
pub struct ApiPath<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for ApiPath<T> {
    type Rejection = JsonRejection;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, JsonRejection> {
        Path::from_request_parts(parts, state)
            .await
            .map(|Path(p)| ApiPath(p))
            .map_err(path_rejection)
    }
}

fn path_rejection(e: PathRejection) -> JsonRejection {
    use axum::extract::path::ErrorKind;
    if e.status().is_server_error() {
        tracing::error!(error = %e.body_text(), "path parameters do not fit their handler");
        return JsonRejection {
            status: e.status(),
            code: "internal",
            message: "internal error".into(),
            fields: FieldErrors::new(),
        };
    }
    let fields = match &e {
        PathRejection::FailedToDeserializePathParams(p) => match p.kind() {
            ErrorKind::InvalidUtf8InPathParam { key } | ErrorKind::ParseErrorAtKey { key, .. } => {
                [(key.clone(), p.kind().to_string())].into()
            }
            _ => FieldErrors::new(),
        },
        _ => FieldErrors::new(),
    };
    JsonRejection {
        status: e.status(),
        code: "bad_request",
        message: e.body_text(),
        fields,
    }
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

    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct Page {
        before: Option<u64>,
        limit: Option<u32>,
    }

    async fn query(uri: &str) -> Result<ApiQuery<Page>, JsonRejection> {
        let (mut parts, ()) = axum::http::Request::get(uri).body(()).unwrap().into_parts();
        ApiQuery::<Page>::from_request_parts(&mut parts, &()).await
    }

    #[tokio::test]
    async fn a_query_parameter_that_does_not_fit_is_a_422_naming_it() {
        for (uri, field) in [
            ("/a?limit=4294967296", "limit"),
            ("/a?limit=abc", "limit"),
            ("/a?before=-1&limit=5", "before"),
        ] {
            let r = query(uri).await.expect_err(uri);
            assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{uri}");
            assert_eq!(r.code, "validation_failed");
            assert!(r.fields.contains_key(field), "{uri}: {:?}", r.fields);
        }
        let ok = query("/a?limit=7&unknown=1").await.expect("fits");
        assert_eq!((ok.0.before, ok.0.limit), (None, Some(7)));
    }

    #[tokio::test]
    async fn a_path_parameter_that_is_not_utf8_is_a_400_naming_it() {
        let app = axum::Router::new().route(
            "/dead/{domain}",
            axum::routing::get(|ApiPath(d): ApiPath<String>| async move { d }),
        );
        let resp = tower::ServiceExt::oneshot(
            app,
            axum::http::Request::get("/dead/%FF")
                .body(axum::body::Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
        assert_eq!(resp.headers()[header::CONTENT_TYPE], "application/json");
        let body = http_body_util::BodyExt::collect(resp.into_body())
            .await
            .unwrap()
            .to_bytes();
        let body: crate::error_body::ErrorBody = serde_json::from_slice(&body).unwrap();
        assert_eq!(body.error.code, "bad_request");
        assert!(body.error.fields.contains_key("domain"), "{body:?}");
    }
}
