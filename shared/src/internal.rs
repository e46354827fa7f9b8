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

use crate::domains::Domain;
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

/// One message to store. On the wire: the entry's fields and `attempt`, in one flat object.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub entry: StreamEntry,
    /// Which attempt this is (the pending list's delivery count), 1-based.
    pub attempt: u32,
}

// `Delivery`'s wire form is written out rather than derived with `#[serde(flatten)]`: a
// flattened struct is deserialized by buffering every field of the object first and then
// reading the buffer again, which cost the store a copy of every string of every message.

#[derive(Serialize)]
struct DeliveryOut<'a> {
    message_id: MessageId,
    client_id: &'a ClientId,
    domain: &'a Domain,
    queued_at: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    submitted_at: Option<&'a str>,
    sender_hash: &'a str,
    sender_mask: &'a str,
    body: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    request_id: Option<&'a str>,
    attempt: u32,
}

#[derive(Deserialize)]
struct DeliveryIn {
    message_id: MessageId,
    client_id: ClientId,
    domain: Domain,
    queued_at: String,
    #[serde(default)]
    submitted_at: Option<String>,
    sender_hash: String,
    sender_mask: String,
    body: String,
    #[serde(default)]
    request_id: Option<String>,
    attempt: u32,
}

impl Serialize for Delivery {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let e = &self.entry;
        DeliveryOut {
            message_id: e.message_id,
            client_id: &e.client_id,
            domain: &e.domain,
            queued_at: &e.queued_at,
            submitted_at: e.submitted_at.as_deref(),
            sender_hash: &e.sender_hash,
            sender_mask: &e.sender_mask,
            body: &e.body,
            request_id: e.request_id.as_deref(),
            attempt: self.attempt,
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for Delivery {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let w = DeliveryIn::deserialize(d)?;
        Ok(Self {
            entry: StreamEntry {
                message_id: w.message_id,
                client_id: w.client_id,
                domain: w.domain,
                queued_at: w.queued_at,
                submitted_at: w.submitted_at,
                sender_hash: w.sender_hash,
                sender_mask: w.sender_mask,
                body: w.body,
                request_id: w.request_id,
            },
            attempt: w.attempt,
        })
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_delivery_is_one_flat_object_and_reads_back_the_same() {
        let entry = StreamEntry {
            message_id: MessageId::new(),
            client_id: ClientId("ab".repeat(32)),
            domain: Domain::parse("example.com").expect("a domain"),
            queued_at: "2026-11-30T18:00:00.000Z".into(),
            submitted_at: None,
            sender_hash: "cd".repeat(32),
            sender_mask: "+141****0000".into(),
            body: "k1:AAAA".into(),
            request_id: Some("req-1".into()),
        };
        let d = Delivery { entry, attempt: 3 };
        let json = serde_json::to_value(&d).expect("serializes");
        let keys: Vec<&str> = json
            .as_object()
            .expect("an object")
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(
            keys.len(),
            9,
            "eight entry fields and attempt, no submitted_at: {keys:?}"
        );
        assert_eq!(json["attempt"], 3);
        assert_eq!(json["domain"], "example.com");
        assert_eq!(json["message_id"], d.entry.message_id.to_string());
        let back: Delivery = serde_json::from_value(json).expect("deserializes");
        assert_eq!(back.entry, d.entry);
        assert_eq!(back.attempt, 3);
    }
}
