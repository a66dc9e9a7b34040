//! Security response headers, with a fresh Content-Security-Policy nonce for every request.
//!
//! [`SecurityHeadersLayer`] generates a [`CspNonce`] per request and inserts it into the
//! request extensions (also an extractor), so templates can put it on their `<script>` and
//! `<style>` tags. On the response it sets, unless the response already has the header:
//!
//! ```text
//! Content-Security-Policy: default-src 'self'; script-src 'self' 'nonce-N'; style-src 'self' 'nonce-N';
//!     img-src 'self' data:; font-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none';
//!     frame-ancestors 'none'; form-action 'self'[; report-uri URI]
//! X-Frame-Options: DENY
//! X-Content-Type-Options: nosniff
//! Referrer-Policy: strict-origin-when-cross-origin
//! Permissions-Policy: accelerometer=(), camera=(), geolocation=(), gyroscope=(), magnetometer=(),
//!     microphone=(), payment=(), usb=()
//! Cross-Origin-Opener-Policy: same-origin
//! Cross-Origin-Resource-Policy: same-origin
//! X-Permitted-Cross-Domain-Policies: none
//! Strict-Transport-Security: max-age=63072000; includeSubDomains      (only with `hsts`)
//! Content-Disposition: attachment; filename="api.json"     (only under `attachment_prefixes`)
//! ```
//!
//! A header the handler set itself is kept, so a route can send a stricter policy (a
//! sandboxing CSP on a download, `Referrer-Policy: no-referrer` on a page with a token in its
//! URL). Note that this also lets a handler weaken a header: review handlers that set one.
//!
//! `Server` and `X-Powered-By` are removed from every response, whoever set them: they tell an
//! attacker which software, and so which advisories, to try.
//!
//! # Security
//!
//! The nonce is 128 bits from `rand`'s thread-local CSPRNG (seeded from, and periodically
//! reseeded by, the operating system), base64-encoded; it is unpredictable to an attacker who
//! sees any number of earlier nonces. A nonce only protects pages that never echo
//! attacker-controlled markup inside a nonce-carrying tag, and only if responses carrying it
//! are not served from a shared cache to other users.
//!
//! The report URI comes from configuration and is checked so that it cannot add directives.
//!
//! # Deployment caveat
//!
//! HSTS tells browsers to use only HTTPS for the host and its subdomains for two years. Turn
//! it on only when the site and every subdomain are served over HTTPS; it cannot be recalled
//! from browsers that have seen it.

use std::{
    fmt,
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll, ready},
};

use axum::extract::FromRequestParts;
use base64::{Engine, engine::general_purpose::STANDARD};
use http::{
    HeaderMap, HeaderName, HeaderValue, Request, Response, StatusCode, header, header::Entry,
    request::Parts,
};
use pin_project_lite::pin_project;
use rand::RngCore;
use tower::{Layer, Service};

use crate::{error::Error, problem::Problem};

const CSP_BEFORE_SCRIPT_NONCE: &str = "default-src 'self'; script-src 'self' 'nonce-";
const CSP_BEFORE_STYLE_NONCE: &str = "'; style-src 'self' 'nonce-";
const CSP_AFTER_NONCES: &str = "'; img-src 'self' data:; font-src 'self'; connect-src 'self'; \
     object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'";
/// The length of a base64-encoded 16-byte nonce.
const NONCE_LEN: usize = 24;

const PERMISSIONS_POLICY: HeaderName = HeaderName::from_static("permissions-policy");
const CROSS_ORIGIN_OPENER_POLICY: HeaderName =
    HeaderName::from_static("cross-origin-opener-policy");
const CROSS_ORIGIN_RESOURCE_POLICY: HeaderName =
    HeaderName::from_static("cross-origin-resource-policy");
const X_PERMITTED_CROSS_DOMAIN_POLICIES: HeaderName =
    HeaderName::from_static("x-permitted-cross-domain-policies");
const X_POWERED_BY: HeaderName = HeaderName::from_static("x-powered-by");

/// Settings of [`SecurityHeadersLayer`].
#[derive(Clone, Debug, Default)]
pub struct SecurityHeadersConfig {
    /// Send `Strict-Transport-Security: max-age=63072000; includeSubDomains`.
    pub hsts: bool,
    /// Where browsers report CSP violations (`report-uri` directive), e.g. `/csp-report`.
    pub csp_report_uri: Option<String>,
    /// Path prefixes (e.g. `/api/`) whose answers are data for programs, not documents:
    /// `Content-Disposition: attachment; filename="api.json"`, so a browser sent there saves
    /// the answer instead of rendering it. Scripts reading it with `fetch` are unaffected.
    pub attachment_prefixes: Vec<String>,
}

/// The CSP nonce of the current request, for `nonce="…"` attributes.
///
/// Found in the request extensions once [`SecurityHeadersLayer`] has run. As an extractor it
/// fails with a 500 [`Problem`] when the layer is not installed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CspNonce(Arc<str>);

impl CspNonce {
    fn generate() -> Self {
        let mut bytes = [0u8; 16];
        rand::thread_rng().fill_bytes(&mut bytes);
        Self(STANDARD.encode(bytes).into())
    }

    /// The nonce, base64-encoded.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for CspNonce {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<S: Send + Sync> FromRequestParts<S> for CspNonce {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts.extensions.get::<Self>().cloned().ok_or_else(|| {
            tracing::error!("CspNonce extractor used on a route without SecurityHeadersLayer");
            Problem::new(StatusCode::INTERNAL_SERVER_ERROR)
                .with_detail("The security headers layer is not installed.")
        })
    }
}

/// What every service of one layer shares.
#[derive(Debug)]
struct Shared {
    /// The policy after the nonces, with the report URI if configured.
    csp_tail: String,
    hsts: bool,
    attachment_prefixes: Vec<String>,
}

/// Sets the security headers on every response and a [`CspNonce`] on every request.
///
/// See the [module docs](self) for the headers.
#[derive(Clone, Debug)]
pub struct SecurityHeadersLayer {
    shared: Arc<Shared>,
}

impl SecurityHeadersLayer {
    /// Creates the layer.
    ///
    /// # Panics
    ///
    /// When `config.csp_report_uri` is invalid (see [`try_new`](Self::try_new)): a startup
    /// configuration error.
    pub fn new(config: SecurityHeadersConfig) -> Self {
        Self::try_new(config).unwrap_or_else(|err| panic!("{err}"))
    }

    /// Creates the layer.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidReportUri`] when the report URI is empty or contains anything but
    /// visible ASCII other than `;` and `,` (which would end the directive or the policy).
    pub fn try_new(config: SecurityHeadersConfig) -> Result<Self, Error> {
        let mut csp_tail = CSP_AFTER_NONCES.to_owned();
        if let Some(uri) = config.csp_report_uri {
            let valid = !uri.is_empty()
                && uri
                    .bytes()
                    .all(|b| b.is_ascii_graphic() && b != b';' && b != b',');
            if !valid {
                return Err(Error::InvalidReportUri(uri));
            }
            csp_tail.push_str("; report-uri ");
            csp_tail.push_str(&uri);
        }
        Ok(Self {
            shared: Arc::new(Shared {
                csp_tail,
                hsts: config.hsts,
                attachment_prefixes: config.attachment_prefixes,
            }),
        })
    }
}

impl<S> Layer<S> for SecurityHeadersLayer {
    type Service = SecurityHeadersService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        SecurityHeadersService {
            inner,
            shared: Arc::clone(&self.shared),
        }
    }
}

/// The service built by [`SecurityHeadersLayer`].
#[derive(Clone, Debug)]
pub struct SecurityHeadersService<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for SecurityHeadersService<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ReqBody>) -> Self::Future {
        let nonce = CspNonce::generate();
        let csp = self.csp(nonce.as_str());
        req.extensions_mut().insert(nonce);
        let path = req.uri().path();
        let attachment = self
            .shared
            .attachment_prefixes
            .iter()
            .any(|prefix| path.starts_with(prefix.as_str()));
        ResponseFuture {
            inner: self.inner.call(req),
            csp: Some(csp),
            hsts: self.shared.hsts,
            attachment,
        }
    }
}

impl<S> SecurityHeadersService<S> {
    fn csp(&self, nonce: &str) -> HeaderValue {
        let tail = &self.shared.csp_tail;
        let mut csp = String::with_capacity(
            CSP_BEFORE_SCRIPT_NONCE.len()
                + CSP_BEFORE_STYLE_NONCE.len()
                + 2 * NONCE_LEN
                + tail.len(),
        );
        csp.push_str(CSP_BEFORE_SCRIPT_NONCE);
        csp.push_str(nonce);
        csp.push_str(CSP_BEFORE_STYLE_NONCE);
        csp.push_str(nonce);
        csp.push_str(tail);
        // Constants, base64 and a report URI checked in `try_new`: always a valid value.
        HeaderValue::try_from(csp).expect("the CSP is visible ASCII")
    }
}

pin_project! {
    /// The response future of [`SecurityHeadersService`].
    #[derive(Debug)]
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        csp: Option<HeaderValue>,
        hsts: bool,
        attachment: bool,
    }
}

impl<F, ResBody, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<ResBody>, E>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut response = ready!(this.inner.poll(cx))?;
        let headers = response.headers_mut();
        // One allocation for all the headers below instead of regrowing as they are added.
        headers.reserve(12);
        if let Some(csp) = this.csp.take() {
            set_default(headers, header::CONTENT_SECURITY_POLICY, csp);
        }
        // `const` blocks build these values at compile time: nothing is validated, allocated
        // or reference-counted per response.
        set_default(
            headers,
            header::X_FRAME_OPTIONS,
            const { HeaderValue::from_static("DENY") },
        );
        set_default(
            headers,
            header::X_CONTENT_TYPE_OPTIONS,
            const { HeaderValue::from_static("nosniff") },
        );
        set_default(
            headers,
            header::REFERRER_POLICY,
            const { HeaderValue::from_static("strict-origin-when-cross-origin") },
        );
        set_default(
            headers,
            PERMISSIONS_POLICY,
            const {
                HeaderValue::from_static(
                    "accelerometer=(), camera=(), geolocation=(), gyroscope=(), \
                     magnetometer=(), microphone=(), payment=(), usb=()",
                )
            },
        );
        set_default(
            headers,
            CROSS_ORIGIN_OPENER_POLICY,
            const { HeaderValue::from_static("same-origin") },
        );
        set_default(
            headers,
            CROSS_ORIGIN_RESOURCE_POLICY,
            const { HeaderValue::from_static("same-origin") },
        );
        set_default(
            headers,
            X_PERMITTED_CROSS_DOMAIN_POLICIES,
            const { HeaderValue::from_static("none") },
        );
        if *this.hsts {
            set_default(
                headers,
                header::STRICT_TRANSPORT_SECURITY,
                const { HeaderValue::from_static("max-age=63072000; includeSubDomains") },
            );
        }
        if *this.attachment {
            set_default(
                headers,
                header::CONTENT_DISPOSITION,
                const { HeaderValue::from_static("attachment; filename=\"api.json\"") },
            );
        }
        headers.remove(header::SERVER);
        headers.remove(X_POWERED_BY);
        Poll::Ready(Ok(response))
    }
}

/// Sets `name` unless the response already has it.
fn set_default(headers: &mut HeaderMap, name: HeaderName, value: HeaderValue) {
    if let Entry::Vacant(entry) = headers.entry(name) {
        entry.insert(value);
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use axum::{Router, body::Body, routing::get};
    use http_body_util::BodyExt;
    use tower::{ServiceExt, service_fn};

    use super::*;
    use crate::problem::PROBLEM_JSON;

    /// A service that answers with the nonce it was given.
    async fn echo_nonce(req: Request<Body>) -> Result<Response<Body>, Infallible> {
        let nonce = req.extensions().get::<CspNonce>().unwrap().to_string();
        Ok(Response::new(Body::from(nonce)))
    }

    async fn send(config: SecurityHeadersConfig) -> (HeaderMap, String) {
        let response = SecurityHeadersLayer::new(config)
            .layer(service_fn(echo_nonce))
            .oneshot(Request::new(Body::empty()))
            .await
            .unwrap();
        let headers = response.headers().clone();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (headers, String::from_utf8(body.to_vec()).unwrap())
    }

    fn expected_csp(nonce: &str) -> String {
        format!(
            "default-src 'self'; script-src 'self' 'nonce-{nonce}'; style-src 'self' 'nonce-{nonce}'; \
             img-src 'self' data:; font-src 'self'; connect-src 'self'; object-src 'none'; \
             base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
        )
    }

    #[tokio::test]
    async fn every_security_header_is_set() {
        let (headers, nonce) = send(SecurityHeadersConfig::default()).await;

        assert_eq!(
            headers[header::CONTENT_SECURITY_POLICY],
            expected_csp(&nonce)
        );
        assert_eq!(headers[header::X_FRAME_OPTIONS], "DENY");
        assert_eq!(headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
        assert_eq!(
            headers[header::REFERRER_POLICY],
            "strict-origin-when-cross-origin"
        );
        assert_eq!(
            headers["permissions-policy"],
            "accelerometer=(), camera=(), geolocation=(), gyroscope=(), magnetometer=(), \
             microphone=(), payment=(), usb=()"
        );
        assert_eq!(headers["cross-origin-opener-policy"], "same-origin");
        assert_eq!(headers["cross-origin-resource-policy"], "same-origin");
        assert_eq!(headers["x-permitted-cross-domain-policies"], "none");
        assert!(!headers.contains_key(header::STRICT_TRANSPORT_SECURITY));
    }

    #[tokio::test]
    async fn nonce_is_128_random_bits_and_differs_between_requests() {
        let (first_headers, first) = send(SecurityHeadersConfig::default()).await;
        let (second_headers, second) = send(SecurityHeadersConfig::default()).await;

        assert_eq!(STANDARD.decode(&first).unwrap().len(), 16);
        assert_ne!(first, second);
        assert_eq!(
            first_headers[header::CONTENT_SECURITY_POLICY],
            expected_csp(&first)
        );
        assert_eq!(
            second_headers[header::CONTENT_SECURITY_POLICY],
            expected_csp(&second)
        );
    }

    #[tokio::test]
    async fn hsts_is_sent_only_when_enabled() {
        let config = SecurityHeadersConfig {
            hsts: true,
            ..SecurityHeadersConfig::default()
        };

        let (headers, _) = send(config).await;

        assert_eq!(
            headers[header::STRICT_TRANSPORT_SECURITY],
            "max-age=63072000; includeSubDomains"
        );
    }

    #[tokio::test]
    async fn report_uri_is_appended_to_the_policy() {
        let config = SecurityHeadersConfig {
            csp_report_uri: Some("/csp-report".to_owned()),
            ..SecurityHeadersConfig::default()
        };

        let (headers, nonce) = send(config).await;

        assert_eq!(
            headers[header::CONTENT_SECURITY_POLICY],
            format!("{}; report-uri /csp-report", expected_csp(&nonce))
        );
    }

    #[test]
    fn report_uri_that_would_inject_directives_is_refused() {
        for uri in [
            "",
            "/r;script-src",
            "/r,script-src",
            "/r script-src",
            "/r\tx",
            "/é",
        ] {
            let config = SecurityHeadersConfig {
                csp_report_uri: Some(uri.to_owned()),
                ..SecurityHeadersConfig::default()
            };

            let result = SecurityHeadersLayer::try_new(config);

            assert!(
                matches!(result, Err(Error::InvalidReportUri(_))),
                "{uri:?} accepted"
            );
        }
    }

    #[tokio::test]
    async fn headers_set_by_the_handler_are_kept() {
        let inner = service_fn(|_req: Request<Body>| async {
            let mut response = Response::new(Body::empty());
            let headers = response.headers_mut();
            headers.insert(
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static("sandbox"),
            );
            headers.insert(
                header::REFERRER_POLICY,
                HeaderValue::from_static("no-referrer"),
            );
            Ok::<_, Infallible>(response)
        });

        let response = SecurityHeadersLayer::new(SecurityHeadersConfig::default())
            .layer(inner)
            .oneshot(Request::new(Body::empty()))
            .await
            .unwrap();

        let headers = response.headers();
        let csp: Vec<_> = headers
            .get_all(header::CONTENT_SECURITY_POLICY)
            .iter()
            .collect();
        assert_eq!(csp, ["sandbox"]);
        assert_eq!(headers[header::REFERRER_POLICY], "no-referrer");
        assert_eq!(headers[header::X_FRAME_OPTIONS], "DENY");
    }

    #[tokio::test]
    async fn server_and_powered_by_headers_are_removed_whoever_set_them() {
        let inner = service_fn(|_req: Request<Body>| async {
            let mut response = Response::new(Body::empty());
            let headers = response.headers_mut();
            headers.insert(header::SERVER, HeaderValue::from_static("hyper/1.0"));
            headers.insert(X_POWERED_BY, HeaderValue::from_static("axum"));
            Ok::<_, Infallible>(response)
        });

        let response = SecurityHeadersLayer::new(SecurityHeadersConfig::default())
            .layer(inner)
            .oneshot(Request::new(Body::empty()))
            .await
            .unwrap();

        assert!(!response.headers().contains_key(header::SERVER));
        assert!(!response.headers().contains_key("x-powered-by"));
    }

    #[tokio::test]
    async fn answers_under_an_attachment_prefix_are_downloads() {
        let layer = SecurityHeadersLayer::new(SecurityHeadersConfig {
            attachment_prefixes: vec!["/api/".to_owned()],
            ..SecurityHeadersConfig::default()
        });
        let disposition = |path: &'static str| {
            let layer = layer.clone();
            async move {
                let request = Request::builder().uri(path).body(Body::empty()).unwrap();
                let response = layer
                    .layer(service_fn(echo_nonce))
                    .oneshot(request)
                    .await
                    .unwrap();
                response
                    .headers()
                    .get(header::CONTENT_DISPOSITION)
                    .map(|v| v.to_str().unwrap().to_owned())
            }
        };

        assert_eq!(
            disposition("/api/v1/items").await.as_deref(),
            Some("attachment; filename=\"api.json\"")
        );
        assert_eq!(disposition("/items").await, None);
        assert_eq!(disposition("/apiary").await, None);
    }

    #[tokio::test]
    async fn extractor_gives_the_nonce_of_the_policy() {
        let app = Router::new()
            .route("/", get(|nonce: CspNonce| async move { nonce.to_string() }))
            .layer(SecurityHeadersLayer::new(SecurityHeadersConfig::default()));

        let response = app.oneshot(Request::new(Body::empty())).await.unwrap();

        let csp = response.headers()[header::CONTENT_SECURITY_POLICY].clone();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        let nonce = String::from_utf8(body.to_vec()).unwrap();
        assert_eq!(csp, expected_csp(&nonce));
    }

    #[tokio::test]
    async fn extractor_without_the_layer_is_a_500_problem() {
        let app = Router::new().route("/", get(|nonce: CspNonce| async move { nonce.to_string() }));

        let response = app.oneshot(Request::new(Body::empty())).await.unwrap();

        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(response.headers()[header::CONTENT_TYPE], PROBLEM_JSON);
    }
}
