//! A browser's view of the dashboard for HTTP-level tests: a session cookie, the CSRF token its
//! pages carry, form posts, and redirects left unfollowed so tests see where a page sends them.

use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::{HeaderMap, LOCATION};

use crate::support::{TestApp, TestUser};

/// A page as the browser received it.
#[derive(Debug)]
pub struct Page {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub html: String,
}

impl Page {
    /// Where a redirect points.
    pub fn location(&self) -> Option<&str> {
        self.headers.get(LOCATION).and_then(|v| v.to_str().ok())
    }

    /// The value of the first `name="csrf"` field on the page.
    pub fn csrf(&self) -> Option<String> {
        field_value(&self.html, "csrf")
    }
}

/// The `value` of the first input named `name` in `html`.
pub fn field_value(html: &str, name: &str) -> Option<String> {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html.find(&marker)? + marker.len();
    let end = html[start..].find('"')?;
    Some(html[start..start + end].to_owned())
}

/// A browser with (or without) someone's session cookie.
#[derive(Clone, Debug)]
pub struct Browser {
    http: reqwest::Client,
    base: String,
    cookie: Option<String>,
}

impl Browser {
    /// Signed in as `user` (their session token as the dashboard's cookie).
    pub fn of(app: &TestApp, user: &TestUser) -> Self {
        let mut browser = Self::anonymous(app);
        browser.cookie = Some(format!("prom_session={}", user.token));
        browser
    }

    pub fn anonymous(app: &TestApp) -> Self {
        let http = reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(30))
            .build()
            .expect("build the HTTP client");
        Self { http, base: app.client.url(""), cookie: None }
    }

    pub fn with_cookie(mut self, cookie: &str) -> Self {
        self.cookie = Some(cookie.to_owned());
        self
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let request = self.http.request(method, format!("{}{path}", self.base));
        match &self.cookie {
            Some(cookie) => request.header("cookie", cookie),
            None => request,
        }
    }

    async fn read(request: reqwest::RequestBuilder) -> Page {
        let response = request.send().await.expect("the server answers");
        let status = response.status();
        let headers = response.headers().clone();
        let html = response.text().await.expect("read the page");
        Page { status, headers, html }
    }

    pub async fn get(&self, path: &str) -> Page {
        Self::read(self.request(reqwest::Method::GET, path)).await
    }

    /// The CSRF token of this session's forms (read off a page, as a browser would have it).
    pub async fn csrf(&self) -> String {
        let page = self.get("/app/store").await;
        page.csrf().unwrap_or_else(|| panic!("no CSRF field on /app/store ({}): {}", page.status, page.html))
    }

    /// Posts a form with this session's CSRF token added.
    pub async fn post(&self, path: &str, fields: &[(&str, &str)]) -> Page {
        let csrf = self.csrf().await;
        let mut all: Vec<(&str, &str)> = vec![("csrf", csrf.as_str())];
        all.extend_from_slice(fields);
        self.post_raw(path, &all).await
    }

    /// Posts exactly these fields (no CSRF token unless given).
    pub async fn post_raw(&self, path: &str, fields: &[(&str, &str)]) -> Page {
        Self::read(self.request(reqwest::Method::POST, path).form(fields)).await
    }

    /// Posts with extra headers (e.g. a foreign `Origin`).
    pub async fn post_with(&self, path: &str, fields: &[(&str, &str)], headers: &[(&str, &str)]) -> Page {
        let mut request = self.request(reqwest::Method::POST, path).form(fields);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        Self::read(request).await
    }
}
