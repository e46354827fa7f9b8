//! A W3C WebDriver client for the browser tests: the dozen commands they use, as JSON over
//! HTTP to Debian's `chromedriver`. (fantoccini did the same, but through Mozilla's
//! `webdriver` crate it pulled in thirteen duplicate crate versions and an MPL licence for a
//! few JSON calls.) Errors carry WebDriver's own `error` and `message`.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Uri};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};

/// The key under which WebDriver names an element.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// How to find an element.
#[derive(Debug, Clone, Copy)]
pub enum By<'a> {
    Css(&'a str),
    XPath(&'a str),
}

impl By<'_> {
    fn json(self) -> Value {
        match self {
            By::Css(s) => json!({"using": "css selector", "value": s}),
            By::XPath(s) => json!({"using": "xpath", "value": s}),
        }
    }
}

/// One browser session.
pub struct Browser {
    http: Client<HttpConnector, Full<Bytes>>,
    /// `http://127.0.0.1:<port>/session/<id>`
    session: String,
}

/// An element of the current page.
pub struct Element<'a> {
    browser: &'a Browser,
    id: String,
}

async fn call(
    http: &Client<HttpConnector, Full<Bytes>>,
    method: Method,
    url: &str,
    body: Option<Value>,
) -> Result<Value, String> {
    let mut req = hyper::Request::builder().method(method.clone()).uri(url);
    let body = match body {
        Some(v) => {
            req = req.header(hyper::header::CONTENT_TYPE, "application/json");
            Full::new(Bytes::from(v.to_string()))
        }
        None => Full::new(Bytes::new()),
    };
    let resp = http
        .request(req.body(body).map_err(|e| e.to_string())?)
        .await
        .map_err(|e| format!("{method} {url}: {e}"))?;
    let status = resp.status();
    let bytes = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    let v: Value = serde_json::from_slice(&bytes)
        .map_err(|e| format!("{method} {url}: not JSON ({e}): {bytes:?}"))?;
    if !status.is_success() {
        return Err(format!(
            "{method} {url}: {} ({})",
            v["value"]["error"].as_str().unwrap_or("error"),
            v["value"]["message"].as_str().unwrap_or_default()
        ));
    }
    Ok(v["value"].clone())
}

impl Browser {
    /// A new session of the WebDriver on 127.0.0.1:`port` with these capabilities.
    pub async fn start(port: u16, capabilities: Value) -> Result<Self, String> {
        let http = Client::builder(TokioExecutor::new()).build_http();
        let v = call(
            &http,
            Method::POST,
            &format!("http://127.0.0.1:{port}/session"),
            Some(json!({"capabilities": {"alwaysMatch": capabilities}})),
        )
        .await?;
        let id = v["sessionId"]
            .as_str()
            .ok_or_else(|| format!("no session id in {v}"))?;
        Ok(Self {
            http,
            session: format!("http://127.0.0.1:{port}/session/{id}"),
        })
    }

    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Result<Value, String> {
        call(&self.http, method, &format!("{}{path}", self.session), body).await
    }

    /// Opens `url` and waits for the page to load.
    pub async fn goto(&self, url: &str) -> Result<(), String> {
        self.call(Method::POST, "/url", Some(json!({"url": url})))
            .await
            .map(drop)
    }

    pub async fn current_url(&self) -> Result<Uri, String> {
        let v = self.call(Method::GET, "/url", None).await?;
        v.as_str()
            .ok_or_else(|| format!("not a URL: {v}"))?
            .parse()
            .map_err(|e| format!("{v}: {e}"))
    }

    pub async fn find(&self, by: By<'_>) -> Result<Element<'_>, String> {
        let v = self.call(Method::POST, "/element", Some(by.json())).await?;
        self.element(&v)
    }

    pub async fn find_all(&self, by: By<'_>) -> Result<Vec<Element<'_>>, String> {
        let v = self
            .call(Method::POST, "/elements", Some(by.json()))
            .await?;
        v.as_array()
            .ok_or_else(|| format!("not a list: {v}"))?
            .iter()
            .map(|e| self.element(e))
            .collect()
    }

    fn element(&self, v: &Value) -> Result<Element<'_>, String> {
        Ok(Element {
            browser: self,
            id: v[ELEMENT]
                .as_str()
                .ok_or_else(|| format!("not an element: {v}"))?
                .to_owned(),
        })
    }

    /// The page as a PNG.
    pub async fn screenshot(&self) -> Result<Vec<u8>, String> {
        use base64::Engine;
        let v = self.call(Method::GET, "/screenshot", None).await?;
        base64::engine::general_purpose::STANDARD
            .decode(v.as_str().unwrap_or_default())
            .map_err(|e| e.to_string())
    }

    pub async fn set_window_size(&self, width: u32, height: u32) -> Result<(), String> {
        self.call(
            Method::POST,
            "/window/rect",
            Some(json!({"width": width, "height": height})),
        )
        .await
        .map(drop)
    }

    /// Ends the session (the browser exits).
    pub async fn close(self) -> Result<(), String> {
        call(&self.http, Method::DELETE, &self.session, None)
            .await
            .map(drop)
    }
}

impl Element<'_> {
    async fn call(&self, method: Method, what: &str, body: Option<Value>) -> Result<Value, String> {
        self.browser
            .call(method, &format!("/element/{}{what}", self.id), body)
            .await
    }

    /// An element inside this one.
    pub async fn find(&self, by: By<'_>) -> Result<Element<'_>, String> {
        let v = self.call(Method::POST, "/element", Some(by.json())).await?;
        self.browser.element(&v)
    }

    pub async fn click(&self) -> Result<(), String> {
        self.call(Method::POST, "/click", Some(json!({})))
            .await
            .map(drop)
    }

    pub async fn clear(&self) -> Result<(), String> {
        self.call(Method::POST, "/clear", Some(json!({})))
            .await
            .map(drop)
    }

    /// Types `text` into the element.
    pub async fn send_keys(&self, text: &str) -> Result<(), String> {
        self.call(Method::POST, "/value", Some(json!({"text": text})))
            .await
            .map(drop)
    }

    /// The rendered text.
    pub async fn text(&self) -> Result<String, String> {
        let v = self.call(Method::GET, "/text", None).await?;
        Ok(v.as_str().unwrap_or_default().to_owned())
    }
}
