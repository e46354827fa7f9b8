//! A browser without a browser, for HTTP-level portal tests: keeps cookies, sends forms,
//! finds the CSRF token in a page. (The real-browser test drives Chromium.)

use crate::client::{Answer, ApiClient};
use hyper::Method;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

#[derive(Clone)]
pub struct Web {
    client: ApiClient,
    cookies: Arc<Mutex<BTreeMap<String, String>>>,
}

impl Web {
    pub fn new(base: &str, ca: &Path) -> Self {
        Self {
            client: ApiClient::new(base, ca, None),
            cookies: Arc::default(),
        }
    }

    fn cookie_header(&self) -> String {
        let jar = self.cookies.lock().unwrap();
        jar.iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    fn keep_cookies(&self, a: &Answer) {
        let mut jar = self.cookies.lock().unwrap();
        for v in a.headers.get_all("set-cookie") {
            let Some((pair, attrs)) = v
                .to_str()
                .ok()
                .map(|s| s.split_once(';').unwrap_or((s, "")))
            else {
                continue;
            };
            if let Some((k, v)) = pair.split_once('=') {
                if v.is_empty() || attrs.contains("Max-Age=0") {
                    jar.remove(k.trim());
                } else {
                    jar.insert(k.trim().to_owned(), v.to_owned());
                }
            }
        }
    }

    pub fn cookie(&self, name: &str) -> Option<String> {
        self.cookies.lock().unwrap().get(name).cloned()
    }

    pub fn set_cookie(&self, name: &str, value: &str) {
        self.cookies
            .lock()
            .unwrap()
            .insert(name.to_owned(), value.to_owned());
    }

    pub async fn get(&self, path: &str) -> Answer {
        let cookies = self.cookie_header();
        let a = self
            .client
            .request(Method::GET, path, &[("cookie", &cookies)], "")
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e}"));
        self.keep_cookies(&a);
        a
    }

    pub async fn post(&self, path: &str, form: &[(&str, &str)]) -> Answer {
        let body: String = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form)
            .finish();
        let cookies = self.cookie_header();
        let a = self
            .client
            .request(
                Method::POST,
                path,
                &[
                    ("cookie", &cookies),
                    ("content-type", "application/x-www-form-urlencoded"),
                ],
                body,
            )
            .await
            .unwrap_or_else(|e| panic!("POST {path}: {e}"));
        self.keep_cookies(&a);
        a
    }

    /// Signs in through the form, as a person does; returns the answer to the form post.
    pub async fn sign_in(&self, user: &str, password: &str) -> Answer {
        let form = self.get("/login").await;
        let csrf = csrf_of(&form.text);
        self.post(
            "/login",
            &[
                ("csrf", &csrf),
                ("next", "/messages"),
                ("username", user),
                ("password", password),
            ],
        )
        .await
    }
}

/// The CSRF token in a page's first form.
pub fn csrf_of(html: &str) -> String {
    let marker = "name=\"csrf\" value=\"";
    let start = html
        .find(marker)
        .unwrap_or_else(|| panic!("no CSRF token in the page:\n{html}"))
        + marker.len();
    html[start..]
        .split('"')
        .next()
        .unwrap_or_default()
        .to_owned()
}
