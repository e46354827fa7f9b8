//! An HTTPS client for the tests: real TLS 1.3, an optional client certificate, keep-alive.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rustls::RootCertStore;
use std::path::Path;

#[derive(Clone)]
pub struct ApiClient {
    base: String,
    client: Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>,
}

/// What came back: status, headers, the body as text and parsed as JSON (Null when it is not
/// JSON).
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: hyper::HeaderMap,
    pub text: String,
    pub json: serde_json::Value,
}

impl ApiClient {
    /// `cert` is `(certificate, key)` PEM files, or `None` for no client certificate.
    pub fn new(base: &str, ca: &Path, cert: Option<(&Path, &Path)>) -> Self {
        mb_shared::tls::install_crypto_provider();
        let mut roots = RootCertStore::empty();
        for c in mb_shared::tls::load_certs(ca).expect("CA") {
            roots.add(c).expect("add CA");
        }
        let builder = rustls::ClientConfig::builder().with_root_certificates(roots);
        let tls = match cert {
            Some((c, k)) => builder
                .with_client_auth_cert(
                    mb_shared::tls::load_certs(c).expect("client cert"),
                    mb_shared::tls::load_key(k).expect("client key"),
                )
                .expect("client auth"),
            None => builder.with_no_client_auth(),
        };
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_only()
            .enable_http1()
            .wrap_connector(http);
        Self {
            base: base.trim_end_matches('/').to_owned(),
            client: Client::builder(TokioExecutor::new()).build(https),
        }
    }

    pub async fn request(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> Result<Answer, String> {
        let mut req = Request::builder()
            .method(method)
            .uri(format!("{}{}", self.base, path));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req
            .body(Full::new(body.into()))
            .map_err(|e| e.to_string())?;
        let resp = self
            .client
            .request(req)
            .await
            .map_err(|e| format!("{e:?}"))?;
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        Ok(Answer {
            status,
            headers,
            text: String::from_utf8_lossy(&bytes).into_owned(),
            json: serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
        })
    }

    /// POST /api/v1/messages with a JSON body.
    pub async fn submit(&self, body: &serde_json::Value) -> Result<Answer, String> {
        remember_submitted(body);
        self.submit_raw(&body.to_string(), &[("content-type", "application/json")])
            .await
    }

    pub async fn submit_raw(&self, body: &str, headers: &[(&str, &str)]) -> Result<Answer, String> {
        self.request(Method::POST, "/api/v1/messages", headers, body.to_owned())
            .await
    }

    pub async fn get(&self, path: &str) -> Result<Answer, String> {
        self.request(Method::GET, path, &[], Bytes::new()).await
    }
}

/// Sender numbers and bodies this test process submitted (a sample of at most 200 bodies), so
/// that [`crate::Stack`] can check on drop that none of them reached a log.
pub(crate) static SUBMITTED: std::sync::Mutex<(
    std::collections::BTreeSet<String>,
    std::collections::BTreeSet<String>,
)> = std::sync::Mutex::new((
    std::collections::BTreeSet::new(),
    std::collections::BTreeSet::new(),
));

fn remember_submitted(body: &serde_json::Value) {
    let mut seen = SUBMITTED
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(n) = body["sender_number"].as_str() {
        seen.0.insert(n.to_owned());
    }
    if let Some(b) = body["message_body"].as_str()
        && b.chars().count() >= 12
        && seen.1.len() < 200
    {
        seen.1.insert(b.to_owned());
    }
}

/// A valid message body for tests.
pub fn message(sender: &str, body: &str) -> serde_json::Value {
    serde_json::json!({"sender_number": sender, "message_body": body})
}

/// Asserts that a submit by `client` is refused during the TLS handshake with `alert` (e.g.
/// `CertificateRevoked`), not by some other failure such as a wrong port. Tried up to five
/// times on new connections: in TLS 1.3 the server sends its alert after the client has
/// finished its side of the handshake, and hyper may report the closed connection ("connection
/// was not ready", a reset) before it has read the alert. An HTTP answer fails at once.
pub async fn assert_submit_refused_in_handshake(client: &ApiClient, alert: &str) {
    let mut last = String::new();
    for _ in 0..5 {
        match client
            .submit(&message("+14155550123", "in the handshake"))
            .await
        {
            Ok(a) => panic!(
                "expected the TLS alert {alert}, got HTTP {}: {:?}",
                a.status, a.json
            ),
            Err(e) if e.contains(&format!("AlertReceived({alert})")) => return,
            Err(e) => last = e,
        }
    }
    panic!("expected the TLS alert {alert}, got: {last}");
}
