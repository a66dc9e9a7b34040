//! Refuses query strings that repeat a parameter or carry a credential.
//!
//! [`QueryGuardLayer`] answers `400 Bad Request` (a [`Problem`]) before anything else reads the
//! query when:
//!
//! - a parameter is given twice (`?q=a&q=b`), whatever its name, on every path: HTTP parameter
//!   pollution works by having two components read different copies (one the first, another
//!   the last), so the only safe answer is to read none;
//! - a parameter names a credential (`?access_token=…`, `?password=…`, …): the names in
//!   [`CREDENTIAL_PARAMETERS`] on every path, and the names added with
//!   [`QueryGuardLayer::refuse_under`] under a path prefix (`token` under `/api/`, say, where
//!   pages keep the one-time `?token=` of a mailed link).
//!
//! Names are compared after percent-decoding, ignoring ASCII case. The refusal names the
//! parameter (when its name is a short plain word) and never its value; it is logged as
//! `query_refused` with the reason and the parameter's name only.
//!
//! # Security
//!
//! A credential in a URL is copied into browser history, bookmarks, `Referer` headers and the
//! access logs of every proxy on the way; refusing it teaches clients to send it where it
//! belongs (a header or the body) before they ship. The refusal comes too late for the copy
//! already sent: the point is that no client can work that way.
//!
//! # Deployment caveat
//!
//! Install it outside the routes and anything that reads the query (the request log names the
//! route template, never the query). A proxy in front logs what it received before this layer
//! can refuse it.

use std::{
    collections::HashSet,
    future::{Ready, ready},
    sync::Arc,
    task::{Context, Poll},
};

use axum::response::{IntoResponse, Response};
use futures_util::future::Either;
use http::{Request, StatusCode};
use tower::{Layer, Service};

use crate::problem::Problem;

/// The query parameter names refused everywhere: names clients use for passwords, tokens and
/// keys.
pub const CREDENTIAL_PARAMETERS: &[&str] = &[
    "access_token",
    "refresh_token",
    "id_token",
    "api_key",
    "apikey",
    "x-api-key",
    "password",
    "passwd",
    "client_secret",
    "secret",
    "otp",
];

/// Refuses repeated query parameters and credentials in the query. See the [module
/// docs](self).
#[derive(Clone, Debug)]
pub struct QueryGuardLayer {
    shared: Arc<Shared>,
}

#[derive(Clone, Debug)]
struct Shared {
    /// Lowercase names refused on every path.
    everywhere: Vec<String>,
    /// Path prefixes with the lowercase names also refused under them.
    under: Vec<(String, Vec<String>)>,
}

impl Default for QueryGuardLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl QueryGuardLayer {
    /// Refuses repeated parameters and the names in [`CREDENTIAL_PARAMETERS`].
    pub fn new() -> Self {
        Self {
            shared: Arc::new(Shared {
                everywhere: CREDENTIAL_PARAMETERS
                    .iter()
                    .map(|n| n.to_ascii_lowercase())
                    .collect(),
                under: Vec::new(),
            }),
        }
    }

    /// Also refuses `names` in the query of requests whose path starts with `prefix`.
    pub fn refuse_under<'a>(
        mut self,
        prefix: &str,
        names: impl IntoIterator<Item = &'a str>,
    ) -> Self {
        let shared = Arc::make_mut(&mut self.shared);
        shared.under.push((
            prefix.to_owned(),
            names.into_iter().map(str::to_ascii_lowercase).collect(),
        ));
        self
    }
}

/// Why a query is refused.
#[derive(Debug, PartialEq, Eq)]
enum Refusal {
    Repeated(String),
    Credential(String),
}

impl Shared {
    fn check(&self, path: &str, query: &str) -> Option<Refusal> {
        let mut seen = HashSet::new();
        for (name, _) in form_urlencoded::parse(query.as_bytes()) {
            let lower = name.to_ascii_lowercase();
            let credential = self.everywhere.contains(&lower)
                || self.under.iter().any(|(prefix, names)| {
                    path.starts_with(prefix.as_str()) && names.contains(&lower)
                });
            if credential {
                return Some(Refusal::Credential(lower));
            }
            if !seen.insert(lower) {
                return Some(Refusal::Repeated(name.into_owned()));
            }
        }
        None
    }
}

/// The parameter's name as the answer and the log may show it: a short plain word, else nothing.
fn shown(name: &str) -> Option<&str> {
    (!name.is_empty()
        && name.len() <= 40
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.')))
    .then_some(name)
}

impl Refusal {
    fn into_response(self) -> Response {
        let detail = match &self {
            Self::Repeated(name) => match shown(name) {
                Some(name) => format!(
                    "The query parameter `{name}` is given more than once: send each parameter once."
                ),
                None => "A query parameter is given more than once: send each parameter once."
                    .to_owned(),
            },
            Self::Credential(name) => format!(
                "Credentials do not belong in a URL, which browsers, proxies and logs keep: send \
                 `{name}` in a header or the request body, never in the query string."
            ),
        };
        let (reason, name) = match &self {
            Self::Repeated(name) => ("repeated_parameter", shown(name).unwrap_or("?")),
            Self::Credential(name) => ("credential_in_query", name.as_str()),
        };
        tracing::info!(
            event = "query_refused",
            reason,
            parameter = name,
            "query string refused"
        );
        Problem::new(StatusCode::BAD_REQUEST)
            .with_detail(detail)
            .into_response()
    }
}

impl<S> Layer<S> for QueryGuardLayer {
    type Service = QueryGuardService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        QueryGuardService {
            inner,
            shared: Arc::clone(&self.shared),
        }
    }
}

/// The service built by [`QueryGuardLayer`].
#[derive(Clone, Debug)]
pub struct QueryGuardService<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S, B> Service<Request<B>> for QueryGuardService<S>
where
    S: Service<Request<B>, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = Either<Ready<Result<Response, S::Error>>, S::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let refusal = req
            .uri()
            .query()
            .and_then(|query| self.shared.check(req.uri().path(), query));
        match refusal {
            Some(refusal) => Either::Left(ready(Ok(refusal.into_response()))),
            None => Either::Right(self.inner.call(req)),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use axum::body::Body;
    use http_body_util::BodyExt;
    use tower::{ServiceExt, service_fn};

    use super::*;

    fn layer() -> QueryGuardLayer {
        QueryGuardLayer::new().refuse_under("/api/", ["token"])
    }

    async fn send(target: &str) -> (StatusCode, String) {
        let inner =
            service_fn(|_req: Request<Body>| async { Ok::<_, Infallible>("ok".into_response()) });
        let request = Request::builder().uri(target).body(Body::empty()).unwrap();
        let response = layer().layer(inner).oneshot(request).await.unwrap();
        let status = response.status();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8(body.to_vec()).unwrap())
    }

    #[tokio::test]
    async fn a_repeated_parameter_is_refused_naming_it() {
        let (status, body) = send("/items?q=a&limit=2&q=b").await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(body.contains("`q` is given more than once"), "{body}");
        assert_eq!(send("/items?Q=a&q=b").await.0, StatusCode::BAD_REQUEST);
        assert_eq!(send("/items?%71=a&q=b").await.0, StatusCode::BAD_REQUEST);
        let (status, body) = send("/items?%3Cb%3E=1&%3Cb%3E=2").await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(!body.contains("<b>"), "an odd name is not echoed: {body}");
    }

    #[tokio::test]
    async fn credentials_in_the_query_are_refused_without_their_value() {
        for target in [
            "/api/v1/me?access_token=s3cr3t-value",
            "/api/v1/items?ACCESS_TOKEN=s3cr3t-value",
            "/login?password=s3cr3t-value",
            "/api/v1/items?api%5Fkey=s3cr3t-value",
            "/api/v1/items?token=s3cr3t-value",
        ] {
            let (status, body) = send(target).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{target}");
            assert!(!body.contains("s3cr3t-value"), "{target}: {body}");
            assert!(
                body.contains("Credentials do not belong in a URL"),
                "{body}"
            );
        }
    }

    #[tokio::test]
    async fn other_queries_pass() {
        for target in [
            "/items?q=password&limit=2",
            "/login/magic/verify?token=abc",
            "/password/reset?token=abc",
            "/items",
            "/items?",
            "/items?q=",
        ] {
            assert_eq!(
                send(target).await,
                (StatusCode::OK, "ok".to_owned()),
                "{target}"
            );
        }
    }
}
