//! The store, as the portal uses it: every call over mutual TLS with the portal's service
//! certificate, on behalf of the signed-in person (their token as `Authorization: Bearer`).
//! The store decides what that person may see and do; the portal only shows the answer.

use hyper::{Method, StatusCode};
use mb_shared::error_body::ErrorBody;
use mb_shared::internal::InternalClient;
use mb_shared::message::FieldErrors;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Why a call to the store did not give what was asked.
#[derive(Debug, thiserror::Error)]
pub(crate) enum StoreError {
    /// No valid session (expired, logged out, user disabled): sign in again.
    #[error("not signed in")]
    Unauthorized,
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    /// The request was refused for what it says: the store's message and the fields named.
    #[error("{message}")]
    Invalid {
        message: String,
        fields: FieldErrors,
    },
    /// Sign-ins are locked for this many seconds.
    #[error("locked")]
    Locked(u64),
    #[error("the store is unavailable: {0}")]
    Unavailable(String),
}

#[derive(Clone)]
pub(crate) struct Store {
    client: InternalClient,
}

impl Store {
    pub(crate) fn new(client: InternalClient) -> Self {
        Self { client }
    }

    pub(crate) async fn get<O: DeserializeOwned>(
        &self,
        path: &str,
        token: Option<&str>,
    ) -> Result<O, StoreError> {
        self.call(Method::GET, path, token, None::<&()>).await
    }

    pub(crate) async fn post<I: Serialize, O: DeserializeOwned>(
        &self,
        path: &str,
        token: Option<&str>,
        body: &I,
    ) -> Result<O, StoreError> {
        self.call(Method::POST, path, token, Some(body)).await
    }

    async fn call<I: Serialize, O: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<&I>,
    ) -> Result<O, StoreError> {
        let json = body
            .map(serde_json::to_vec)
            .transpose()
            .map_err(|e| StoreError::Unavailable(e.to_string()))?;
        let answer = self
            .client
            .send(method, path, token, json)
            .await
            .map_err(|e| StoreError::Unavailable(e.to_string()))?;
        let (status, bytes) = (answer.status, answer.body);
        if status.is_success() {
            return serde_json::from_slice(&bytes)
                .map_err(|e| StoreError::Unavailable(format!("{path} answered {e}")));
        }
        let err = serde_json::from_slice::<ErrorBody>(&bytes).ok();
        let message = err
            .as_ref()
            .map_or_else(|| status.to_string(), |e| e.error.message.clone());
        Err(match status {
            StatusCode::UNAUTHORIZED => StoreError::Unauthorized,
            StatusCode::FORBIDDEN => StoreError::Forbidden(message),
            StatusCode::NOT_FOUND => StoreError::NotFound(message),
            StatusCode::TOO_MANY_REQUESTS => StoreError::Locked(
                answer
                    .headers
                    .get(hyper::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok()?.parse().ok())
                    .unwrap_or(60),
            ),
            s if s.is_client_error() => StoreError::Invalid {
                message,
                fields: err.map(|e| e.error.fields).unwrap_or_default(),
            },
            _ => StoreError::Unavailable(message),
        })
    }
}
