//! The internal API between services (deliver → store, ingest → store), over mutual TLS with
//! service certificates, and the pooled HTTPS client that speaks it.
//!
//! * `POST /internal/v1/deliver` — [`DeliverIn`] → [`DeliverOut`]: idempotent upsert of a batch
//!   by `message_id`; each item is `stored` or `rejected` (with the reason), in request order.
//! * `POST /internal/v1/failed` — [`FailedIn`]: record dead-lettered messages as `failed`.
//! * `GET /internal/v1/messages/{id}?client_id=…` — [`StatusOut`] or 404.
//! * `GET /internal/v1/access` — [`AccessListOut`]: who may submit (the fingerprints of active
//!   client certificates), the CRL, and the refused certificates and clients. Answered with an
//!   `ETag`; a poll with `If-None-Match` gets `304 Not Modified` while nothing changed.

use crate::message::{ClientId, MessageId};
use crate::streams::StreamEntry;
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
pub const ACCESS_PATH: &str = "/internal/v1/access";

/// `GET /internal/v1/access`: who ingest admits, polled every second or so.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AccessListOut {
    /// Changes whenever anything below changes (also the `ETag`).
    pub version: String,
    /// The CAs' current CRLs (PEM), for new handshakes.
    pub crl_pem: String,
    /// Client ids (certificate fingerprints) of the active client certificates: the only ones
    /// that may submit. A certificate the CA signed but the broker never recorded is not here.
    pub active_client_ids: Vec<String>,
    /// Serials (lowercase hex) of revoked certificates, to say why a request is refused.
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

/// What the store did with one delivered message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// Written (or already there): ack it.
    Stored,
    /// The message itself is bad and never will be stored: retried, then dead-lettered.
    Rejected,
    /// The store cannot take it *yet*: its key id or domain is unknown to the store, which is
    /// a configuration mismatch between services (one restarted before the other), not a bad
    /// message. It stays pending and is retried until the store knows the key or domain; it is
    /// never dead-lettered for this.
    Deferred,
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
    pub status: crate::status::MessageStatus,
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

/// What a server answered.
pub struct Answer {
    pub status: StatusCode,
    pub headers: hyper::HeaderMap,
    pub body: bytes::Bytes,
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
        let (_, bytes) = self
            .call(Method::POST, path, None, Full::new(json.into()))
            .await?;
        parse(path, &bytes)
    }

    pub async fn get<O: DeserializeOwned>(&self, path: &str) -> Result<O, ClientError> {
        let (_, bytes) = self.call(Method::GET, path, None, Full::default()).await?;
        parse(path, &bytes)
    }

    /// GET with `If-None-Match: etag`: `None` when the server answers 304 Not Modified,
    /// otherwise the document and its new `ETag`.
    pub async fn get_if_changed<O: DeserializeOwned>(
        &self,
        path: &str,
        etag: Option<&str>,
    ) -> Result<Option<(O, String)>, ClientError> {
        let (headers, bytes) = self.call(Method::GET, path, etag, Full::default()).await?;
        let Some(headers) = headers else {
            return Ok(None);
        };
        let etag = headers
            .get(hyper::header::ETAG)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        Ok(Some((parse(path, &bytes)?, etag)))
    }

    /// Sends one request with an optional bearer token and JSON body, and returns whatever
    /// came back (only transport failures and timeouts are errors).
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        bearer: Option<&str>,
        json: Option<Vec<u8>>,
    ) -> Result<Answer, ClientError> {
        let mut req = Request::builder()
            .method(method)
            .uri(format!("{}{}", self.base, path));
        if json.is_some() {
            req = req.header(hyper::header::CONTENT_TYPE, "application/json");
        }
        if let Some(token) = bearer {
            req = req.header(hyper::header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let req = req
            .body(Full::new(json.unwrap_or_default().into()))
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
            let headers = resp.headers().clone();
            let body = resp
                .into_body()
                .collect()
                .await
                .map_err(|source| ClientError::Body {
                    path: path.to_owned(),
                    source,
                })?
                .to_bytes();
            Ok(Answer {
                status,
                headers,
                body,
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

    /// Sends one request; `Ok((None, _))` is a 304 answer to `if_none_match`.
    async fn call(
        &self,
        method: Method,
        path: &str,
        if_none_match: Option<&str>,
        body: Full<bytes::Bytes>,
    ) -> Result<(Option<hyper::HeaderMap>, bytes::Bytes), ClientError> {
        let mut req = Request::builder()
            .method(method)
            .uri(format!("{}{}", self.base, path))
            .header(hyper::header::CONTENT_TYPE, "application/json");
        if let Some(tag) = if_none_match {
            req = req.header(hyper::header::IF_NONE_MATCH, tag);
        }
        let req = req.body(body).expect("request parts are valid");
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
            let headers = resp.headers().clone();
            let bytes = resp
                .into_body()
                .collect()
                .await
                .map_err(|source| ClientError::Body {
                    path: path.to_owned(),
                    source,
                })?
                .to_bytes();
            if status == StatusCode::NOT_MODIFIED && if_none_match.is_some() {
                return Ok((None, bytes));
            }
            if !status.is_success() {
                return Err(ClientError::Status {
                    path: path.to_owned(),
                    status,
                });
            }
            Ok((Some(headers), bytes))
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

fn parse<O: DeserializeOwned>(path: &str, bytes: &[u8]) -> Result<O, ClientError> {
    serde_json::from_slice(bytes).map_err(|source| ClientError::Json {
        path: path.to_owned(),
        source,
    })
}
