//! The internal API between services (deliver → store, ingest → store), over mutual TLS with
//! service certificates, and the pooled HTTPS client that speaks it.
//!
//! * `POST /internal/v1/deliver` — [`DeliverIn`] → [`DeliverOut`]: idempotent upsert of a batch
//!   by `message_id`; each item is `stored` or `rejected` (with the reason), in request order.
//! * `POST /internal/v1/failed` — [`FailedIn`]: record dead-lettered messages as `failed`.
//! * `GET /internal/v1/messages/{id}?client_id=…` — [`StatusOut`] or 404.
//! * `GET /internal/v1/revocations` — [`RevocationsOut`]: the CRL and the refused clients.

use crate::message::{ClientId, MessageId, StreamEntry};
use http_body_util::BodyExt;
use http_body_util::Full;
use hyper::{Method, Request, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use std::time::Duration;

pub const DELIVER_PATH: &str = "/internal/v1/deliver";
pub const FAILED_PATH: &str = "/internal/v1/failed";
pub const MESSAGES_PATH: &str = "/internal/v1/messages";
pub const REVOCATIONS_PATH: &str = "/internal/v1/revocations";

/// `GET /internal/v1/revocations`: what ingest must refuse, polled every second or so.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RevocationsOut {
    /// Changes whenever anything below changes.
    pub version: String,
    /// The CA's current CRL (PEM), for new handshakes.
    pub crl_pem: String,
    /// Serials (lowercase hex) of revoked certificates, for requests on open connections.
    pub revoked_serials: Vec<String>,
    /// Client ids (certificate fingerprints) of disabled clients.
    pub disabled_client_ids: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Delivery {
    #[serde(flatten)]
    pub entry: StreamEntry,
    /// Which attempt this is (the pending list's delivery count), 1-based.
    pub attempt: u32,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct DeliverIn {
    pub messages: Vec<Delivery>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Stored,
    Rejected,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct ItemResult {
    pub message_id: MessageId,
    pub outcome: Outcome,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct DeliverOut {
    pub results: Vec<ItemResult>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Failure {
    #[serde(flatten)]
    pub delivery: Delivery,
    pub error: String,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct FailedIn {
    pub messages: Vec<Failure>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StatusOut {
    pub message_id: MessageId,
    pub client_id: ClientId,
    pub status: String,
    pub attempt_count: u32,
    pub queued_at: String,
    pub delivered_at: Option<String>,
    pub updated_at: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("request to {path} failed: {source}")]
    Transport {
        path: String,
        source: hyper_util::client::legacy::Error,
    },
    #[error("request to {path} timed out after {timeout:?}")]
    Timeout { path: String, timeout: Duration },
    #[error("reading the answer of {path}: {source}")]
    Body { path: String, source: hyper::Error },
    #[error("{path} answered {status}")]
    Status { path: String, status: StatusCode },
    #[error("{path} answered malformed JSON: {source}")]
    Json {
        path: String,
        source: serde_json::Error,
    },
}

impl ClientError {
    /// Whether the server answered with a definite failure (4xx, 500), as opposed to being
    /// unreachable, timing out or saying it is temporarily unavailable (502-504).
    pub fn is_definite_failure(&self) -> bool {
        matches!(self, ClientError::Status { status, .. }
            if status.is_client_error() || *status == StatusCode::INTERNAL_SERVER_ERROR)
    }

    pub fn is_not_found(&self) -> bool {
        matches!(self, ClientError::Status { status, .. } if *status == StatusCode::NOT_FOUND)
    }
}

/// A pooled, keep-alive HTTPS client with a service certificate.
#[derive(Clone)]
pub struct InternalClient {
    base: String,
    timeout: Duration,
    client: Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<bytes::Bytes>>,
}

impl InternalClient {
    pub fn new(base_url: &str, tls: rustls::ClientConfig, timeout: Duration) -> Self {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(timeout));
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_only()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .build(https);
        Self {
            base: base_url.trim_end_matches('/').to_owned(),
            timeout,
            client,
        }
    }

    pub async fn post<I: Serialize, O: DeserializeOwned>(
        &self,
        path: &str,
        body: &I,
    ) -> Result<O, ClientError> {
        let json = serde_json::to_vec(body).map_err(|source| ClientError::Json {
            path: path.to_owned(),
            source,
        })?;
        self.call(Method::POST, path, Full::new(json.into())).await
    }

    pub async fn get<O: DeserializeOwned>(&self, path: &str) -> Result<O, ClientError> {
        self.call(Method::GET, path, Full::default()).await
    }

    async fn call<O: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Full<bytes::Bytes>,
    ) -> Result<O, ClientError> {
        let req = Request::builder()
            .method(method)
            .uri(format!("{}{}", self.base, path))
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .body(body)
            .expect("request parts are valid");
        let fut = async {
            let resp = self
                .client
                .request(req)
                .await
                .map_err(|source| ClientError::Transport {
                    path: path.to_owned(),
                    source,
                })?;
            let status = resp.status();
            let bytes = resp
                .into_body()
                .collect()
                .await
                .map_err(|source| ClientError::Body {
                    path: path.to_owned(),
                    source,
                })?
                .to_bytes();
            if !status.is_success() {
                return Err(ClientError::Status {
                    path: path.to_owned(),
                    status,
                });
            }
            serde_json::from_slice(&bytes).map_err(|source| ClientError::Json {
                path: path.to_owned(),
                source,
            })
        };
        tokio::time::timeout(self.timeout, fut)
            .await
            .unwrap_or_else(|_| {
                Err(ClientError::Timeout {
                    path: path.to_owned(),
                    timeout: self.timeout,
                })
            })
    }
}
