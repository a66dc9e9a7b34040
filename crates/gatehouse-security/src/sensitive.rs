//! Marks credential-carrying headers as sensitive so they never appear in logs.
//!
//! [`sensitive_headers_layer`] marks `Authorization`, `Proxy-Authorization`, `Cookie`,
//! `Set-Cookie`, `X-API-Key` and `Cf-Access-Jwt-Assertion` (Cloudflare Access's signed identity,
//! replayable until it expires) as [sensitive](http::HeaderValue::set_sensitive) on requests before the inner
//! service sees them and on responses after it produced them. A sensitive value prints as
//! `Sensitive` in `Debug` output, and tower-http's trace layer and most tracing code leave it
//! out.
//!
//! This is tower-http's `SetSensitiveHeadersLayer` with the header list fixed, so every
//! application marks the same set.
//!
//! # Security
//!
//! Marking is advisory: code that reads a header value and logs it as a string still leaks
//! it. The layer must be outermost so every other layer, including the tracing span, sees the
//! marked values.

use http::{HeaderName, header};
use tower_http::sensitive_headers::SetSensitiveHeadersLayer;

/// `X-API-Key`: an API key sent without `Authorization`, as many clients do.
pub const X_API_KEY: HeaderName = HeaderName::from_static("x-api-key");

/// `Cf-Access-Jwt-Assertion`: the identity Cloudflare Access signs for the application behind it.
pub const CF_ACCESS_JWT_ASSERTION: HeaderName = HeaderName::from_static("cf-access-jwt-assertion");

/// A layer marking `authorization`, `proxy-authorization`, `cookie`, `set-cookie`, `x-api-key`
/// and `cf-access-jwt-assertion` as sensitive on requests and responses.
pub fn sensitive_headers_layer() -> SetSensitiveHeadersLayer {
    SetSensitiveHeadersLayer::new([
        header::AUTHORIZATION,
        header::PROXY_AUTHORIZATION,
        header::COOKIE,
        header::SET_COOKIE,
        X_API_KEY,
        CF_ACCESS_JWT_ASSERTION,
    ])
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use axum::body::Body;
    use http::{HeaderValue, Request, Response};
    use tower::{Layer, ServiceExt, service_fn};

    use super::*;

    #[tokio::test]
    async fn credentials_are_hidden_from_debug_output_on_requests_and_responses() {
        let handler = service_fn(|req: Request<Body>| async move {
            // What a handler or an inner tracing layer would print.
            let printed = format!("{:?}", req.headers());
            let mut response = Response::new(Body::from(printed));
            response.headers_mut().insert(
                header::SET_COOKIE,
                HeaderValue::from_static("session=response-secret"),
            );
            Ok::<_, Infallible>(response)
        });
        let req = Request::builder()
            .header(header::AUTHORIZATION, "Bearer bearer-secret")
            .header(header::PROXY_AUTHORIZATION, "Basic proxy-secret")
            .header(header::COOKIE, "session=cookie-secret")
            .header("X-API-Key", "gk_api-key-secret")
            .header("Cf-Access-Jwt-Assertion", "eyJ.assertion-secret.sig")
            .header(header::ACCEPT, "text/html")
            .body(Body::empty())
            .unwrap();

        let response = sensitive_headers_layer()
            .layer(handler)
            .oneshot(req)
            .await
            .unwrap();

        assert!(response.headers()[header::SET_COOKIE].is_sensitive());
        let printed_response = format!("{:?}", response.headers());
        assert!(
            !printed_response.contains("response-secret"),
            "{printed_response}"
        );
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        let printed_request = String::from_utf8(body.to_vec()).unwrap();
        for secret in [
            "bearer-secret",
            "proxy-secret",
            "cookie-secret",
            "api-key-secret",
            "assertion-secret",
        ] {
            assert!(!printed_request.contains(secret), "{printed_request}");
        }
        assert!(printed_request.contains("text/html"), "{printed_request}");
    }
}
