//! A browser stand-in over HTTP: keeps cookies, reads CSRF tokens from pages, posts forms.

use std::collections::BTreeMap;

use crate::support::TestApp;

/// One visitor of a test app, with its own cookies.
pub(crate) struct Visitor<'a> {
    app: &'a TestApp,
    pub(crate) cookies: BTreeMap<String, String>,
    user_agent: Option<String>,
    /// Headers sent with every request (what a proxy in front would add), by name.
    pub(crate) headers: BTreeMap<String, String>,
}

/// The value of the first `name="…" value="…"` hidden field in `page`.
pub(crate) fn field(page: &str, name: &str) -> Option<String> {
    let marker = format!("name=\"{name}\" value=\"");
    let start = page.find(&marker)? + marker.len();
    let end = start + page[start..].find('"')?;
    Some(
        page[start..end]
            .replace("&#x2f;", "/")
            .replace("&#x3d;", "=")
            .replace("&amp;", "&"),
    )
}

/// `page` without its CSRF tokens (the form fields' and the `<meta>` tag's), which differ on
/// every response: what is left must be the same for pages that must not tell two cases apart.
pub(crate) fn without_csrf_tokens(page: &str) -> String {
    let mut out = page.to_owned();
    for marker in [
        "name=\"csrf_token\" value=\"",
        "name=\"csrf-token\" content=\"",
    ] {
        let mut at = 0;
        while let Some(found) = out[at..].find(marker) {
            let from = at + found + marker.len();
            let end = from + out[from..].find('"').unwrap_or(0);
            out.replace_range(from..end, "");
            at = from;
        }
    }
    out
}

impl<'a> Visitor<'a> {
    pub(crate) fn new(app: &'a TestApp) -> Self {
        Self {
            app,
            cookies: BTreeMap::new(),
            user_agent: None,
            headers: BTreeMap::new(),
        }
    }

    /// A visitor whose browser names itself `user_agent` (none by default).
    pub(crate) fn with_user_agent(app: &'a TestApp, user_agent: &str) -> Self {
        Self {
            user_agent: Some(user_agent.to_owned()),
            ..Self::new(app)
        }
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.request_accepting(method, path, "text/html")
    }

    fn request_accepting(
        &self,
        method: reqwest::Method,
        path: &str,
        accept: &str,
    ) -> reqwest::RequestBuilder {
        let mut request = self
            .app
            .request(method, path)
            .header("cookie", self.cookie_header())
            .header("accept", accept);
        for (name, value) in &self.headers {
            request = request.header(name, value);
        }
        match &self.user_agent {
            Some(agent) => request.header("user-agent", agent),
            None => request,
        }
    }

    fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    fn remember(&mut self, res: &reqwest::Response) {
        for set in res.headers().get_all("set-cookie") {
            let text = set.to_str().unwrap();
            let pair = text.split(';').next().unwrap();
            let (name, value) = pair.split_once('=').unwrap();
            if value.is_empty() || text.contains("Max-Age=0") {
                self.cookies.remove(name);
            } else {
                self.cookies.insert(name.to_owned(), value.to_owned());
            }
        }
    }

    /// `GET path` with this visitor's cookies; returns status, headers and body.
    pub(crate) async fn get(&mut self, path: &str) -> (u16, reqwest::header::HeaderMap, String) {
        let res = self
            .request(reqwest::Method::GET, path)
            .send()
            .await
            .unwrap();
        self.remember(&res);
        let status = res.status().as_u16();
        let headers = res.headers().clone();
        (status, headers, res.text().await.unwrap())
    }

    /// Posts a form (the CSRF token must be among `fields`), with this visitor's cookies.
    pub(crate) async fn post(
        &mut self,
        path: &str,
        fields: &[(&str, &str)],
    ) -> (u16, reqwest::header::HeaderMap, String) {
        let res = self
            .request(reqwest::Method::POST, path)
            .form(fields)
            .send()
            .await
            .unwrap();
        self.remember(&res);
        let status = res.status().as_u16();
        let headers = res.headers().clone();
        (status, headers, res.text().await.unwrap())
    }

    /// Posts `body` as JSON with the CSRF token in the `X-CSRF-Token` header, as the pages'
    /// scripts do; returns status, headers and the JSON answer (`null` when it is not JSON).
    pub(crate) async fn post_json(
        &mut self,
        path: &str,
        csrf: &str,
        body: &serde_json::Value,
    ) -> (u16, reqwest::header::HeaderMap, serde_json::Value) {
        let res = self
            .request_accepting(reqwest::Method::POST, path, "application/json")
            .header("x-csrf-token", csrf)
            .json(body)
            .send()
            .await
            .unwrap();
        self.remember(&res);
        let status = res.status().as_u16();
        let headers = res.headers().clone();
        let json = res.json().await.unwrap_or(serde_json::Value::Null);
        (status, headers, json)
    }

    /// The CSRF token of the page at `path`.
    pub(crate) async fn csrf_from(&mut self, path: &str) -> String {
        let (status, _, page) = self.get(path).await;
        assert_eq!(status, 200, "{path}: {page}");
        field(&page, "csrf_token").unwrap_or_else(|| panic!("no csrf_token on {path}"))
    }
}
