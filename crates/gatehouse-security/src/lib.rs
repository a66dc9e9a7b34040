//! Reusable security layers for axum applications.
//!
//! Every item here is a tower [`Layer`](tower::Layer), an extractor or a checked
//! configuration value with no knowledge of the application using it:
//!
//! | module | what it provides |
//! |---|---|
//! | [`problem`] | [`Problem`], RFC 9457 problem details, the body of every error answered here |
//! | [`request_id`] | [`RequestIdLayer`] and the [`RequestId`] extractor |
//! | [`client_ip`] | [`ClientIpLayer`], [`TrustedProxies`] and the [`ClientIp`] extractor |
//! | [`headers`] | [`SecurityHeadersLayer`] (CSP with a per-request [`CspNonce`], HSTS, …) |
//! | [`panic`](mod@panic) | [`CatchPanicLayer`]: a panic becomes an opaque 500 with the request ID |
//! | [`method`] | [`RejectTraceLayer`]: `TRACE` and `TRACK` get a 405 with the target's `Allow` (404 where nothing is) |
//! | [`query_guard`] | [`QueryGuardLayer`]: a repeated query parameter or a credential in the query gets a 400 |
//! | [`cors`] | [`CorsPolicy`]: validated origins, turned into tower-http's `CorsLayer` |
//! | [`body_limit`] | [`BodyLimitLayer`]: 413 before reading an oversized `Content-Length` |
//! | [`rate_limit`] | [`RateLimitLayer`] and [`Limiter`]: GCRA over a memory or Redis [`Store`] |
//! | [`csrf`] | [`CsrfLayer`]: synchronizer tokens ([`CsrfToken`]) plus Origin / `Sec-Fetch-Site` checks |
//! | [`sensitive`] | [`sensitive_headers_layer`]: credentials never reach the logs |
//! | [`error`] | [`Error`], the configuration mistakes the constructors refuse |
//!
//! # Layer order
//!
//! Outermost first (the first layer sees the request first and the response last):
//!
//! ```text
//! sensitive_headers_layer()   mark credentials before anything can log them
//! RequestIdLayer              every later layer, log line and error body has the ID
//! ClientIpLayer               the tracing span and rate limits key on the real client
//! (the app's tracing span)    opened with the request ID and client IP
//! SecurityHeadersLayer        on every response, including the error and panic answers below
//! (the app's error rendering) re-renders a `Problem` found in the response extensions
//! CatchPanicLayer             a panic below becomes a `Problem` the layers above complete
//! RejectTraceLayer
//! QueryGuardLayer             repeated parameters and credentials in the URL, before any reader
//! timeout / body limit        tower-http
//! CorsPolicy::layer()         answers preflights before any route logic
//! RateLimitLayer              keyed on the client IP (or a hashed header) of the layers above
//! (the app's session layer)   puts the session's CsrfSecret in the extensions
//! CsrfLayer                   unsafe methods need an allowed origin and a valid token
//! routes
//! ```
//!
//! The request-ID and client-IP layers cannot panic, so running them outside the panic
//! catcher costs nothing and lets a 500 from a panic carry the request ID, the security
//! headers and the application's error page.
//!
//! # Security
//!
//! Each module states its assumptions in its own `# Security` section. The common ones: the
//! server sees the TCP peer address (`ConnectInfo<SocketAddr>`), only listed proxies are
//! trusted, and no error body ever carries internal details.
//!
//! The random values (request IDs, CSP nonces) come from `rand`'s thread-local generator, a
//! CSPRNG seeded from and periodically reseeded by the operating system; it avoids a system
//! call per request.

pub mod body_limit;
pub mod client_ip;
pub mod cookies;
pub mod cors;
pub mod csrf;
pub mod error;
pub mod headers;
pub mod method;
pub mod panic;
pub mod problem;
pub mod query_guard;
pub mod rate_limit;
pub mod request_id;
pub mod sensitive;

pub use body_limit::BodyLimitLayer;
pub use client_ip::{ClientIp, ClientIpLayer, Peer, TrustedProxies};
pub use cors::CorsPolicy;
pub use csrf::{CsrfConfig, CsrfExempt, CsrfLayer, CsrfSecret, CsrfToken};
pub use error::Error;
pub use headers::{CspNonce, SecurityHeadersConfig, SecurityHeadersLayer};
pub use method::RejectTraceLayer;
pub use panic::CatchPanicLayer;
pub use problem::{PROBLEM_JSON, Problem};
pub use query_guard::QueryGuardLayer;
pub use rate_limit::{
    Decision, FailurePolicy, KeySource, Limiter, MemoryStore, Quota, RateLimitLayer, RedisStore,
    Rule, Store,
};
pub use request_id::{REQUEST_ID_HEADER, RequestId, RequestIdLayer};
pub use sensitive::sensitive_headers_layer;

#[cfg(test)]
mod tests {
    use axum::{Router, body::Body, routing::get};
    use http::{Method, Request, StatusCode, header};
    use http_body_util::BodyExt;
    use serde_json::Value;
    use tower::ServiceExt;

    use super::*;

    async fn panicking_handler() -> &'static str {
        panic!("internal state that must not leak")
    }

    /// The stack in the documented order.
    fn app() -> Router {
        let cors = CorsPolicy::new(&["https://app.example.com".to_owned()], true).unwrap();
        Router::new()
            .route("/", get(|| async { "home" }))
            .route("/boom", get(panicking_handler))
            .layer(cors.layer())
            .layer(RejectTraceLayer::new())
            .layer(CatchPanicLayer::new())
            .layer(SecurityHeadersLayer::new(SecurityHeadersConfig::default()))
            .layer(ClientIpLayer::new(TrustedProxies::default()))
            .layer(RequestIdLayer::new())
            .layer(sensitive_headers_layer())
    }

    #[tokio::test]
    async fn panic_under_the_documented_stack_carries_request_id_and_security_headers() {
        let req = Request::builder().uri("/boom").body(Body::empty()).unwrap();

        let response = app().oneshot(req).await.unwrap();

        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let headers = response.headers().clone();
        assert!(headers.contains_key(header::CONTENT_SECURITY_POLICY));
        assert_eq!(headers[header::X_FRAME_OPTIONS], "DENY");
        let body = response.into_body().collect().await.unwrap().to_bytes();
        let json: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            json["request_id"],
            headers[REQUEST_ID_HEADER].to_str().unwrap()
        );
        assert!(!String::from_utf8_lossy(&body).contains("internal state"));
    }

    #[tokio::test]
    async fn trace_under_the_documented_stack_is_refused_with_headers() {
        let req = Request::builder()
            .method(Method::TRACE)
            .uri("/")
            .body(Body::empty())
            .unwrap();

        let response = app().oneshot(req).await.unwrap();

        assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert!(response.headers().contains_key(REQUEST_ID_HEADER));
        assert!(
            response
                .headers()
                .contains_key(header::CONTENT_SECURITY_POLICY)
        );
    }
}
