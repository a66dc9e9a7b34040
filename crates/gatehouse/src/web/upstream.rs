//! The upstream identity layer (`GATEHOUSE_UPSTREAM_IDENTITY`, off by default): inside the
//! authentication layer, it reads what the access proxy said (its header, whether the peer is a
//! trusted proxy, the request's session), asks the identity domain once
//! ([`crate::identity::Identity::upstream_identity`], which holds every rule) and renders the
//! answer: on, a refusal, or the sign-in's outcome (the page again, or the second-factor page,
//! with their cookies).
//!
//! `/healthz`, `/readyz` (probes that do not pass through the proxy) and `/static/` (the same
//! files in every installation) are exempt. A session whose role requires MFA not set up yet is
//! sent to enrolment by the authentication layer, which runs first; the enrolment page, like
//! every other, then needs the proxy's identity.
//!
//! # Security
//! - A header sent more than once, or not in ASCII, is never read as a name: it counts as
//!   invalid (two values mean someone added one the proxy did not replace).
//! - Refusals are problem documents (error pages in a browser) that say only what to do; every
//!   answer here is `Cache-Control: no-store`.

use axum::extract::{FromRequestParts, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use gatehouse_security::{Peer, Problem, cookies};
use http::header::{CACHE_CONTROL, SET_COOKIE};
use http::{HeaderMap, HeaderValue, Method, StatusCode};

use super::session::{clear_cookie, pending_sign_in};
use crate::identity::authentication::{Principal, Via};
use crate::identity::signin::{Origin, Outcome};
use crate::identity::upstream::{UpstreamDecision, UpstreamRefusal, UpstreamRequest};
use crate::state::AppState;

/// Whether the layer is needed at all: only when an upstream identity is configured.
pub fn enabled(state: &AppState) -> bool {
    state.identity.upstream.header().is_some()
}

/// Paths the access proxy's identity is not asked on.
fn exempt(path: &str) -> bool {
    path.starts_with("/static/") || matches!(path, "/healthz" | "/readyz")
}

/// The header's one value; `Some("")` when it is repeated or not ASCII.
fn single<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    let mut values = headers.get_all(name).iter();
    let first = values.next()?;
    if values.next().is_some() {
        return Some("");
    }
    Some(first.to_str().unwrap_or_default())
}

/// The middleware: see the module documentation.
pub async fn layer(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let Some(header) = state.identity.upstream.header() else {
        return next.run(req).await;
    };
    if exempt(req.uri().path()) {
        return next.run(req).await;
    }
    let (mut parts, body) = req.into_parts();
    let origin = match Origin::from_request_parts(&mut parts, &state).await {
        Ok(origin) => origin,
        Err(problem) => return problem.into_response(),
    };
    let path = parts.uri.path();
    let api = path.starts_with("/api/");
    let page_get = matches!(parts.method, Method::GET | Method::HEAD) && !api;
    let pending = (path == "/login/mfa")
        .then(|| pending_sign_in(&state, &parts.headers))
        .flatten();
    let principal = parts.extensions.get::<Principal>();
    let request = UpstreamRequest {
        presented: single(&parts.headers, header),
        from_trusted_proxy: parts
            .extensions
            .get::<Peer>()
            .is_some_and(|p| p.trusted_proxy),
        session: principal.and_then(|p| match &p.via {
            Via::Session(session) => Some((&p.user, session)),
            _ => None,
        }),
        other_credential: api
            && (cookies::bearer(&parts.headers).is_some()
                || parts.headers.contains_key("x-api-key")),
        pending: pending.as_ref(),
        may_sign_in: !api,
        next: (page_get && !path.starts_with("/login"))
            .then(|| parts.uri.path_and_query().map(|p| p.as_str().to_owned()))
            .flatten(),
    };
    let decision = state.identity.upstream_identity(request, &origin).await;
    let mut response = match decision {
        Err(e) => return e.into_response(),
        Ok(UpstreamDecision::Proceed) => return next.run(Request::from_parts(parts, body)).await,
        Ok(UpstreamDecision::Refused { why, session_ended }) => {
            let mut response = refusal(why);
            if session_ended {
                response
                    .headers_mut()
                    .append(SET_COOKIE, clear_cookie(&state));
            }
            response
        }
        Ok(UpstreamDecision::SignIn {
            outcome,
            session_ended,
        }) => {
            let refused = matches!(outcome, Outcome::Refused);
            let rendered = super::auth::render_sign_in(&state, outcome, || Ok(not_allowed()));
            let mut response = match rendered {
                Ok(response) => response,
                Err(e) => return e.into_response(),
            };
            if refused && session_ended {
                response
                    .headers_mut()
                    .append(SET_COOKIE, clear_cookie(&state));
            }
            response
        }
    };
    response
        .headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// The answer to a refused request.
fn refusal(why: UpstreamRefusal) -> Response {
    let (status, detail) = match why {
        UpstreamRefusal::Missing | UpstreamRefusal::Invalid => (
            StatusCode::UNAUTHORIZED,
            "This request did not come through your organisation's sign-in gateway, or its identity could not be verified. Open Gatehouse at its usual address to sign in there.",
        ),
        UpstreamRefusal::SessionOfAnother => (
            StatusCode::UNAUTHORIZED,
            "The sign-in gateway names another person than this session's: the session has ended. Open a page to sign in again.",
        ),
        UpstreamRefusal::NoPerson => (
            StatusCode::FORBIDDEN,
            "The sign-in gateway's identity names no person (a service token): pages need a person's sign-in.",
        ),
        UpstreamRefusal::KeysUnavailable => (
            StatusCode::SERVICE_UNAVAILABLE,
            "The sign-in gateway's identity cannot be checked right now. Try again in a minute.",
        ),
    };
    let mut response = Problem::new(status).with_detail(detail).into_response();
    if why == UpstreamRefusal::KeysUnavailable {
        response
            .headers_mut()
            .insert(http::header::RETRY_AFTER, HeaderValue::from_static("30"));
    }
    response
}

/// The answer when the person the proxy names may not sign in here (unknown outside the
/// allowed domains, or disabled).
fn not_allowed() -> Response {
    Problem::new(StatusCode::FORBIDDEN)
        .with_detail(
            "Your sign-in gateway knows you, but this account may not use Gatehouse. Ask an administrator to add it.",
        )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repeated_or_binary_header_is_never_a_name() {
        let mut h = HeaderMap::new();
        assert_eq!(single(&h, "x-forwarded-email"), None);
        h.append("x-forwarded-email", HeaderValue::from_static("a@x.com"));
        assert_eq!(single(&h, "x-forwarded-email"), Some("a@x.com"));
        h.append("x-forwarded-email", HeaderValue::from_static("b@x.com"));
        assert_eq!(single(&h, "x-forwarded-email"), Some(""));
        let mut binary = HeaderMap::new();
        binary.insert(
            "x-forwarded-email",
            HeaderValue::from_bytes(b"\xffa@x.com").unwrap(),
        );
        assert_eq!(single(&binary, "x-forwarded-email"), Some(""));
    }

    #[test]
    fn probes_and_assets_are_exempt_and_nothing_else() {
        assert!(exempt("/healthz") && exempt("/readyz") && exempt("/static/app.css"));
        for path in ["/", "/login", "/api/v1/me", "/csp-report", "/static"] {
            assert!(!exempt(path), "{path}");
        }
    }
}
