//! A checked CORS configuration that produces tower-http's [`CorsLayer`].
//!
//! [`CorsPolicy::new`] validates the allowed origins once at startup; [`CorsPolicy::layer`]
//! builds a layer that echoes `Access-Control-Allow-Origin` only for an exact match (or sends
//! `*` for a wildcard policy without credentials) and answers preflight (`OPTIONS`) requests
//! itself with:
//!
//! ```text
//! methods          GET, HEAD, POST, PUT, PATCH, DELETE
//! request headers  content-type, authorization, x-csrf-token, x-csrftoken, x-requested-with,
//!                  if-match, if-none-match, x-request-id
//! exposed headers  x-request-id, etag, location, retry-after,
//!                  ratelimit-limit, ratelimit-remaining, ratelimit-reset
//! max age          600 seconds
//! ```
//!
//! An empty origin list allows no cross-origin access at all.
//!
//! # Security
//!
//! Browsers send the origin serialized as `scheme://host[:port]`, lower case and without a
//! default port, so each configured origin must be in exactly that form; anything else
//! (a trailing `/`, a path, an upper-case host, `:443` on https) could never match and is
//! refused as a configuration error instead of silently allowing nothing. `null` is refused
//! because any sandboxed iframe or `file:` page sends it, and `*` with credentials is refused
//! because it would let every site act as the signed-in user.
//!
//! CORS only governs what a browser lets a page *read*. It does not stop a cross-site form
//! post or a simple request from being sent: CSRF protection is still needed.
//!
//! # Deployment caveat
//!
//! The layer answers every `OPTIONS` request itself, so it must be the innermost layer before
//! the routes (after authentication would make preflights fail).

use std::{net::Ipv6Addr, str::FromStr, time::Duration};

use http::{HeaderName, HeaderValue, Method, header};
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::error::Error;

/// The allowed cross-origin callers, validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CorsPolicy {
    origins: Vec<String>,
    allow_credentials: bool,
}

impl CorsPolicy {
    /// Validates `origins`: each exactly `*` or `scheme://host[:port]` (see the
    /// [module docs](self)). Leading and trailing whitespace is ignored and duplicates are
    /// dropped.
    ///
    /// # Errors
    ///
    /// - [`Error::NullOrigin`] for `null`;
    /// - [`Error::WildcardWithCredentials`] for `*` with `allow_credentials`;
    /// - [`Error::InvalidOrigin`] for a malformed origin, or for `*` listed with others.
    pub fn new(origins: &[String], allow_credentials: bool) -> Result<Self, Error> {
        let mut checked: Vec<String> = Vec::with_capacity(origins.len());
        for origin in origins {
            let origin = origin.trim();
            if origin.eq_ignore_ascii_case("null") {
                return Err(Error::NullOrigin);
            }
            if origin != "*" {
                check_origin(origin)?;
            }
            if !checked.iter().any(|seen| seen == origin) {
                checked.push(origin.to_owned());
            }
        }
        if checked.len() > 1 && checked.iter().any(|origin| origin == "*") {
            return Err(Error::InvalidOrigin("*".to_owned()));
        }
        if allow_credentials && checked.first().is_some_and(|origin| origin == "*") {
            return Err(Error::WildcardWithCredentials);
        }
        Ok(Self {
            origins: checked,
            allow_credentials,
        })
    }

    /// Whether every origin is allowed (the list is `*`).
    pub fn is_wildcard(&self) -> bool {
        self.origins.first().is_some_and(|origin| origin == "*")
    }

    /// The allowed origins, as validated.
    pub fn origins(&self) -> &[String] {
        &self.origins
    }

    /// Whether cross-origin requests may carry cookies and authorization.
    pub fn allow_credentials(&self) -> bool {
        self.allow_credentials
    }

    /// The layer enforcing this policy.
    pub fn layer(&self) -> CorsLayer {
        let allow_origin = if self.is_wildcard() {
            AllowOrigin::any()
        } else {
            // Every origin passed `check_origin`, which admits visible ASCII only.
            AllowOrigin::list(
                self.origins
                    .iter()
                    .filter_map(|origin| HeaderValue::from_str(origin).ok()),
            )
        };
        CorsLayer::new()
            .allow_origin(allow_origin)
            .allow_methods([
                Method::GET,
                Method::HEAD,
                Method::POST,
                Method::PUT,
                Method::PATCH,
                Method::DELETE,
            ])
            .allow_headers([
                header::CONTENT_TYPE,
                header::AUTHORIZATION,
                HeaderName::from_static("x-csrf-token"),
                HeaderName::from_static("x-csrftoken"),
                HeaderName::from_static("x-requested-with"),
                header::IF_MATCH,
                header::IF_NONE_MATCH,
                HeaderName::from_static("x-request-id"),
            ])
            .expose_headers([
                HeaderName::from_static("x-request-id"),
                header::ETAG,
                header::LOCATION,
                header::RETRY_AFTER,
                HeaderName::from_static("ratelimit-limit"),
                HeaderName::from_static("ratelimit-remaining"),
                HeaderName::from_static("ratelimit-reset"),
            ])
            .max_age(Duration::from_secs(600))
            .allow_credentials(self.allow_credentials)
    }
}

/// Checks that `origin` is a serialized `http`/`https` origin as a browser sends it.
fn check_origin(origin: &str) -> Result<(), Error> {
    let invalid = || Error::InvalidOrigin(origin.to_owned());
    let (scheme, authority) = origin.split_once("://").ok_or_else(invalid)?;
    let default_port = match scheme {
        "http" => "80",
        "https" => "443",
        _ => return Err(invalid()),
    };
    let port = if let Some(rest) = authority.strip_prefix('[') {
        let (address, after) = rest.split_once(']').ok_or_else(invalid)?;
        // Browsers serialize IPv6 hosts in their shortest lower-case form.
        let parsed = Ipv6Addr::from_str(address).map_err(|_| invalid())?;
        if parsed.to_string() != address {
            return Err(invalid());
        }
        match after {
            "" => None,
            after => Some(after.strip_prefix(':').ok_or_else(invalid)?),
        }
    } else {
        let (host, port) = match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        };
        if !is_host(host) {
            return Err(invalid());
        }
        port
    };
    if let Some(port) = port {
        let numeric = !port.is_empty()
            && !port.starts_with('0')
            && port.bytes().all(|b| b.is_ascii_digit())
            && port.parse::<u16>().is_ok();
        if !numeric || port == default_port {
            return Err(invalid());
        }
    }
    Ok(())
}

/// A lower-case DNS name or IPv4 address: dot-separated labels of `a-z`, `0-9`, `-`, `_`.
/// Internationalized names must be given in their ASCII (punycode) form, as browsers send.
fn is_host(host: &str) -> bool {
    host.len() <= 253
        && host.split('.').all(|label| {
            (1..=63).contains(&label.len())
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.bytes().all(|b| {
                    b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'_')
                })
        })
}

#[cfg(test)]
mod tests {
    use std::{
        convert::Infallible,
        sync::{
            Arc,
            atomic::{AtomicUsize, Ordering},
        },
    };

    use axum::body::Body;
    use http::{Request, Response, StatusCode};
    use tower::{Layer, ServiceExt, service_fn};

    use super::*;

    const APP: &str = "https://app.example.com";

    fn policy(origins: &[&str], allow_credentials: bool) -> Result<CorsPolicy, Error> {
        let origins: Vec<String> = origins.iter().map(|&origin| origin.to_owned()).collect();
        CorsPolicy::new(&origins, allow_credentials)
    }

    /// Sends `req` through the policy's layer; returns the response and how many times the
    /// handler ran.
    async fn send(policy: &CorsPolicy, req: Request<Body>) -> (Response<Body>, usize) {
        let calls = Arc::new(AtomicUsize::new(0));
        let seen = Arc::clone(&calls);
        let handler = service_fn(move |_req: Request<Body>| {
            seen.fetch_add(1, Ordering::SeqCst);
            async { Ok::<_, Infallible>(Response::new(Body::from("data"))) }
        });
        let response = policy.layer().layer(handler).oneshot(req).await.unwrap();
        (response, calls.load(Ordering::SeqCst))
    }

    fn get_from(origin: &str) -> Request<Body> {
        Request::builder()
            .uri("/api/v1/items")
            .header(header::ORIGIN, origin)
            .body(Body::empty())
            .unwrap()
    }

    #[tokio::test]
    async fn allowed_origin_is_echoed_with_credentials() {
        let policy = policy(&[APP, "http://localhost:3000"], true).unwrap();

        let (response, calls) = send(&policy, get_from(APP)).await;

        let headers = response.headers();
        assert_eq!(headers[header::ACCESS_CONTROL_ALLOW_ORIGIN], APP);
        assert_eq!(headers[header::ACCESS_CONTROL_ALLOW_CREDENTIALS], "true");
        let exposed = headers[header::ACCESS_CONTROL_EXPOSE_HEADERS]
            .to_str()
            .unwrap();
        assert!(exposed.contains("x-request-id") && exposed.contains("ratelimit-reset"));
        assert_eq!(calls, 1);
    }

    #[tokio::test]
    async fn disallowed_origins_get_no_allow_origin() {
        let policy = policy(&[APP], true).unwrap();

        for origin in [
            "https://evil.example.com",
            "https://app.example.com.evil.com",
            "http://app.example.com",
            "https://APP.example.com",
            "null",
        ] {
            let (response, _) = send(&policy, get_from(origin)).await;

            assert!(
                !response
                    .headers()
                    .contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN),
                "{origin} was allowed"
            );
        }
    }

    #[tokio::test]
    async fn preflight_from_an_allowed_origin_is_answered_without_the_handler() {
        let policy = policy(&[APP], true).unwrap();
        let preflight = Request::builder()
            .method(Method::OPTIONS)
            .uri("/api/v1/items/1")
            .header(header::ORIGIN, APP)
            .header(header::ACCESS_CONTROL_REQUEST_METHOD, "PUT")
            .header(
                header::ACCESS_CONTROL_REQUEST_HEADERS,
                "content-type,x-csrf-token",
            )
            .body(Body::empty())
            .unwrap();

        let (response, calls) = send(&policy, preflight).await;

        assert_eq!(calls, 0);
        assert_eq!(response.status(), StatusCode::OK);
        let headers = response.headers();
        assert_eq!(headers[header::ACCESS_CONTROL_ALLOW_ORIGIN], APP);
        assert_eq!(
            headers[header::ACCESS_CONTROL_ALLOW_METHODS],
            "GET,HEAD,POST,PUT,PATCH,DELETE"
        );
        let allowed = headers[header::ACCESS_CONTROL_ALLOW_HEADERS]
            .to_str()
            .unwrap();
        assert!(allowed.contains("content-type") && allowed.contains("x-csrf-token"));
        assert_eq!(headers[header::ACCESS_CONTROL_MAX_AGE], "600");
    }

    #[tokio::test]
    async fn wildcard_without_credentials_allows_any_origin_without_credentials() {
        let policy = policy(&["*"], false).unwrap();

        let (response, _) = send(&policy, get_from("https://anyone.example")).await;

        assert!(policy.is_wildcard());
        assert_eq!(response.headers()[header::ACCESS_CONTROL_ALLOW_ORIGIN], "*");
        assert!(
            !response
                .headers()
                .contains_key(header::ACCESS_CONTROL_ALLOW_CREDENTIALS)
        );
    }

    #[tokio::test]
    async fn empty_list_allows_no_cross_origin_access() {
        let policy = policy(&[], false).unwrap();

        let (response, _) = send(&policy, get_from(APP)).await;

        assert!(
            !response
                .headers()
                .contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN)
        );
    }

    #[test]
    fn null_origin_is_always_refused() {
        for credentials in [false, true] {
            assert!(matches!(
                policy(&["null"], credentials),
                Err(Error::NullOrigin)
            ));
            assert!(matches!(
                policy(&[APP, "NULL"], credentials),
                Err(Error::NullOrigin)
            ));
        }
    }

    #[test]
    fn wildcard_with_credentials_is_refused() {
        assert!(matches!(
            policy(&["*"], true),
            Err(Error::WildcardWithCredentials)
        ));
    }

    #[test]
    fn wildcard_mixed_with_origins_is_refused() {
        assert!(matches!(
            policy(&[APP, "*"], false),
            Err(Error::InvalidOrigin(_))
        ));
        assert!(matches!(
            policy(&["*", APP], false),
            Err(Error::InvalidOrigin(_))
        ));
    }

    #[test]
    fn malformed_origins_are_refused() {
        for bad in [
            "",
            "app.example.com",
            "ftp://app.example.com",
            "HTTPS://app.example.com",
            "https://App.Example.com",
            "https://app.example.com/",
            "https://app.example.com/path",
            "https://app.example.com?q=1",
            "https://app.example.com#top",
            "https://user@app.example.com",
            "https://user:pw@app.example.com",
            "https://app.example.com:443",
            "http://app.example.com:80",
            "https://app.example.com:",
            "https://app.example.com:0",
            "https://app.example.com:65536",
            "https://app.example.com:08080",
            "https://app..example.com",
            "https://app.example.com.",
            "https://-app.example.com",
            "https://app example.com",
            "https://bücher.example",
            "https://[2001:DB8::1]",
            "https://[2001:db8:0::1]",
            "https://[::1",
            "https://*.example.com",
        ] {
            let result = policy(&[bad], false);

            assert!(
                matches!(&result, Err(Error::InvalidOrigin(origin)) if origin == bad.trim()),
                "{bad:?} gave {result:?}"
            );
        }
    }

    #[test]
    fn well_formed_origins_are_accepted_trimmed_and_deduplicated() {
        let policy = policy(
            &[
                " https://app.example.com ",
                "https://app.example.com",
                "http://localhost:3000",
                "http://127.0.0.1:8080",
                "https://[::1]:8443",
                "https://xn--bcher-kva.example",
            ],
            true,
        )
        .unwrap();

        assert_eq!(
            policy.origins(),
            [
                "https://app.example.com",
                "http://localhost:3000",
                "http://127.0.0.1:8080",
                "https://[::1]:8443",
                "https://xn--bcher-kva.example",
            ]
        );
        assert!(policy.allow_credentials());
        assert!(!policy.is_wildcard());
    }
}
