//! The authentication layer: from the request's one credential to a [`Principal`] in the
//! request extensions (and, for a session, a [`CurrentUser`] and its CSRF secret), plus the
//! session cookie itself.
//!
//! Which credential counts: on the JSON API (`/api/…`) a bearer credential (an access token,
//! or a `gk_` API key), else `X-API-Key`, else the session cookie; on the pages the session
//! cookie only. The credential then goes to the one authentication
//! ([`crate::identity::Identity::authenticate`]); the API's extractor reads its result.
//!
//! # Security
//! - The cookie is `HttpOnly; SameSite=Lax; Path=/`, and in production `Secure` with the
//!   `__Host-` prefix (so no subdomain can set or shadow it). The pending second-step cookie and
//!   the device cookie (`identity::devices`) and the OpenID Connect flow cookie have the same
//!   attributes.
//! - The user's status is read on every request: a disabled user's sessions stop working at
//!   once, not at expiry.
//! - A request carrying `Authorization: Bearer` (or, on the API, `X-API-Key`) is never
//!   authenticated by its cookie. A cookie-authenticated API request is checked for CSRF like a
//!   form (the `X-CSRF-Token` header), by the CSRF layer inside this one.
//! - Cookies are read by the one parser the CSRF layer also uses (`gatehouse_security::cookies`):
//!   another application's non-ASCII cookie cannot hide the session's.
//! - A user whose role requires MFA (`GATEHOUSE_MFA_REQUIRED_ROLES`) and who has none reaches
//!   only the enrolment page and sign-out: pages redirect there, anything else gets a 403, and
//!   no access token or API key of theirs reaches any API route (a `mfa_enrolment_required`
//!   problem).
//! - Authenticated responses get `Cache-Control: no-store` so shared caches and the back button
//!   never show one user's page to another.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::extract::{FromRequestParts, Request};
use axum::response::{IntoResponse, Redirect, Response};
use futures_util::future::Either;
use gatehouse_security::{CsrfSecret, cookies};
use http::header::{CACHE_CONTROL, SET_COOKIE};
use http::request::Parts;
use http::{HeaderMap, HeaderValue};
use tower::{Layer, Service};

use crate::access::{Check, Denial};
use crate::identity::authentication::{Credential, Principal, Refused, Via};
use crate::identity::devices::{DEVICE_COOKIE_LIFETIME, DeviceToken};
use crate::identity::mfa::{PENDING_LIFETIME, PendingSignIn};
use crate::identity::oidc::flow::{FLOW_LIFETIME, FlowKey};
use crate::identity::sessions::{Session, SessionToken};
use crate::identity::{Identity, User};
use crate::state::AppState;

/// The signed-in user of this request and their session.
#[derive(Clone, Debug)]
pub struct CurrentUser {
    /// Who.
    pub user: User,
    /// Which session.
    pub session: Session,
}

/// Pages that need a signed-in user send anyone else to `/login?next=…`.
impl<S: Send + Sync> FromRequestParts<S> for CurrentUser {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        parts.extensions.get::<Self>().cloned().ok_or_else(|| {
            let path = parts.uri.path();
            let target = if path == "/" {
                "/login".to_owned()
            } else {
                format!("/login?next={}", urlencode(path))
            };
            Redirect::to(&target).into_response()
        })
    }
}

impl<S: Send + Sync> axum::extract::OptionalFromRequestParts<S> for CurrentUser {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Option<Self>, Infallible> {
        Ok(parts.extensions.get::<Self>().cloned())
    }
}

fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// The session cookie's name in this environment.
pub fn cookie_name(production: bool) -> &'static str {
    if production {
        "__Host-gatehouse"
    } else {
        "gatehouse"
    }
}

/// The name of the cookie that holds a sign-in whose second factor is due.
pub fn pending_cookie_name(production: bool) -> &'static str {
    if production {
        "__Host-gatehouse-mfa"
    } else {
        "gatehouse-mfa"
    }
}

/// The name of the device cookie, which tells a browser that signed in before from a new one
/// (`identity::devices`).
pub fn device_cookie_name(production: bool) -> &'static str {
    if production {
        "__Host-gatehouse-device"
    } else {
        "gatehouse-device"
    }
}

/// The name of the cookie that binds an OpenID Connect flow to the browser that started it
/// (`identity::oidc::flow`).
pub fn oidc_flow_cookie_name(production: bool) -> &'static str {
    if production {
        "__Host-gatehouse-oidc"
    } else {
        "gatehouse-oidc"
    }
}

/// `Set-Cookie` for the OpenID Connect flow key (lives as long as a flow may take). `SameSite=Lax`:
/// the provider's redirect back is a top-level navigation, which carries it.
pub fn set_oidc_flow_cookie(state: &AppState, key: &FlowKey) -> HeaderValue {
    let name = oidc_flow_cookie_name(state.settings.is_production());
    cookie(state, name, key.expose(), FLOW_LIFETIME.as_secs())
}

/// `Set-Cookie` that removes the OpenID Connect flow key.
pub fn clear_oidc_flow_cookie(state: &AppState) -> HeaderValue {
    cookie(
        state,
        oidc_flow_cookie_name(state.settings.is_production()),
        "",
        0,
    )
}

/// The browser's OpenID Connect flow key, from its cookie, when well formed.
pub fn oidc_flow_key(state: &AppState, headers: &HeaderMap) -> Option<FlowKey> {
    let raw = cookies::single(
        headers,
        oidc_flow_cookie_name(state.settings.is_production()),
    )?;
    FlowKey::parse(raw)
}

/// `Set-Cookie` for `name=value`, with the session cookie's attributes.
fn cookie(state: &AppState, name: &str, value: &str, max_age: u64) -> HeaderValue {
    let secure = if state.settings.is_production() {
        "; Secure"
    } else {
        ""
    };
    HeaderValue::from_str(&format!(
        "{name}={value}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age}{secure}"
    ))
    .unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// `Set-Cookie` for a new session.
pub fn set_cookie(state: &AppState, token: &SessionToken) -> HeaderValue {
    let name = cookie_name(state.settings.is_production());
    let max_age = state.sessions.config().absolute_timeout.as_secs();
    cookie(state, name, token.expose(), max_age)
}

/// `Set-Cookie` for the browser's device token, set (renewed) at every sign-in.
pub fn set_device_cookie(state: &AppState, device: &DeviceToken) -> HeaderValue {
    let name = device_cookie_name(state.settings.is_production());
    cookie(
        state,
        name,
        device.expose(),
        DEVICE_COOKIE_LIFETIME.as_secs(),
    )
}

/// The browser's device token, from its cookie, when well formed.
pub fn device_token(state: &AppState, headers: &HeaderMap) -> Option<DeviceToken> {
    let raw = cookies::single(headers, device_cookie_name(state.settings.is_production()))?;
    DeviceToken::parse(raw)
}

/// `Set-Cookie` that removes the session cookie.
pub fn clear_cookie(state: &AppState) -> HeaderValue {
    cookie(state, cookie_name(state.settings.is_production()), "", 0)
}

/// `Set-Cookie` for a sign-in whose second factor is due.
pub fn set_pending_cookie(state: &AppState, pending: &PendingSignIn) -> HeaderValue {
    let name = pending_cookie_name(state.settings.is_production());
    let value = pending.encode(&state.keys);
    cookie(state, name, &value, PENDING_LIFETIME.as_secs())
}

/// `Set-Cookie` that removes the pending sign-in.
pub fn clear_pending_cookie(state: &AppState) -> HeaderValue {
    cookie(
        state,
        pending_cookie_name(state.settings.is_production()),
        "",
        0,
    )
}

/// The sign-in whose second factor is due, from its cookie, if it is genuine and not expired.
pub fn pending_sign_in(state: &AppState, headers: &HeaderMap) -> Option<PendingSignIn> {
    let raw = cookies::single(headers, pending_cookie_name(state.settings.is_production()))?;
    PendingSignIn::decode(raw, &state.keys, state.clock.now())
}

/// Why a request carries no principal although it carried a credential: the API answers `401`
/// with `invalid_token` instead of asking for a credential.
#[derive(Clone, Copy, Debug)]
pub struct AuthRefused(pub Refused);

/// The credential a request to `path` is authenticated by (see the module documentation).
fn credential<'a>(headers: &'a HeaderMap, path: &str, cookie: &'a str) -> Option<Credential<'a>> {
    let api = path.starts_with("/api/");
    if let Some(bearer) = cookies::bearer(headers) {
        // Pages never act on a bearer credential, and a request that has one is never
        // authenticated by its cookie.
        return api.then(|| {
            if bearer.starts_with("gk_") {
                Credential::ApiKey(bearer)
            } else {
                Credential::AccessToken(bearer)
            }
        });
    }
    if api {
        if let Some(key) = headers.get("x-api-key").and_then(|v| v.to_str().ok()) {
            return Some(Credential::ApiKey(key.trim()));
        }
    }
    if !needs_session(path) {
        return None;
    }
    cookies::single(headers, cookie).map(Credential::Session)
}

/// Applies [`SessionService`].
#[derive(Clone, Debug)]
pub struct SessionLayer {
    state: AppState,
}

impl SessionLayer {
    /// Sessions from `state`.
    pub fn new(state: AppState) -> Self {
        Self { state }
    }
}

impl<S> Layer<S> for SessionLayer {
    type Service = SessionService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        SessionService {
            inner,
            state: self.state.clone(),
        }
    }
}

/// See the module documentation.
#[derive(Clone, Debug)]
pub struct SessionService<S> {
    inner: S,
    state: AppState,
}

type BoxFuture = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

impl<S> Service<Request> for SessionService<S>
where
    S: Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Either<S::Future, BoxFuture>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request) -> Self::Future {
        let name = cookie_name(self.state.settings.is_production());
        if credential(req.headers(), req.uri().path(), name).is_none() {
            // The common case, no credential: no allocation, no lookup.
            return Either::Left(self.inner.call(req));
        }
        // The clone that was readied goes into the future; a fresh clone stays for next time.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let state = self.state.clone();
        Either::Right(Box::pin(async move {
            let identity: &Identity = &state.identity;
            // Read again inside the future, borrowing the request it owns (no copy).
            let Some(found) = credential(req.headers(), req.uri().path(), name) else {
                return inner.call(req).await;
            };
            let session_cookie = matches!(found, Credential::Session(_));
            let principal = match identity.authenticate(found).await {
                Ok(found) => found,
                Err(e) => return Ok(e.into_response()),
            };
            let signed_in = principal.is_ok();
            match principal {
                Ok(principal) => {
                    if principal.enrolment_due {
                        if let Some(refusal) = enrolment_refusal(&req, &principal) {
                            return Ok(refusal);
                        }
                    }
                    if let Via::Session(session) = &principal.via {
                        req.extensions_mut()
                            .insert(CsrfSecret::from_bytes(*session.csrf_secret));
                        req.extensions_mut().insert(CurrentUser {
                            user: principal.user.clone(),
                            session: session.clone(),
                        });
                    }
                    req.extensions_mut().insert(principal);
                }
                Err(refused) => {
                    req.extensions_mut().insert(AuthRefused(refused));
                }
            }
            let mut response = inner.call(req).await?;
            if signed_in {
                response
                    .headers_mut()
                    .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
            } else if session_cookie && !sets_cookie(response.headers(), name) {
                // A stale cookie (expired or revoked): remove it from the browser.
                response
                    .headers_mut()
                    .append(SET_COOKIE, clear_cookie(&state));
            }
            Ok(response)
        }))
    }
}

/// What a principal who must enrol in MFA first gets instead of `req`'s answer, if anything:
/// a browser session may reach the enrolment pages and sign out, any credential may end its
/// API sign-in; nothing else may be reached, and the rest of the API is refused to every
/// credential of theirs.
fn enrolment_refusal(req: &Request, principal: &Principal) -> Option<Response> {
    let path = req.uri().path();
    let api = path.starts_with("/api/");
    if !api && matches!(principal.via, Via::Session(_)) && enrolment_path(path) {
        return None;
    }
    // Ending a sign-in is always allowed, as signing out is.
    if path == "/api/v1/auth/revoke" {
        return None;
    }
    let mut response = if !api && matches!(*req.method(), http::Method::GET | http::Method::HEAD) {
        Redirect::to("/account/mfa").into_response()
    } else {
        let mut refused = gatehouse_security::Problem::new(http::StatusCode::FORBIDDEN)
            .with_type(MFA_ENROLMENT_REQUIRED)
            .with_detail(
                "Your role requires two-step sign-in: set it up at /account/mfa first, then sign in again.",
            )
            .with_extension("error", serde_json::Value::from("mfa_enrolment_required"))
            .into_response();
        refused.extensions_mut().insert(Denial {
            user_id: principal.user.id,
            permission: "mfa_enrolment".into(),
            check: Check::Role,
        });
        refused
    };
    response
        .headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Some(response)
}

/// The problem type of a refusal to a user who must set up MFA first.
pub const MFA_ENROLMENT_REQUIRED: &str = "urn:gatehouse:problem:mfa_enrolment_required";

/// Paths that never act for a user: browsers send the cookie with every stylesheet and probe,
/// and looking the session up there would only cost two queries each.
fn needs_session(path: &str) -> bool {
    !(path.starts_with("/static/") || matches!(path, "/healthz" | "/readyz" | "/csp-report"))
}

/// What a user who must enrol may still reach: the enrolment page (TOTP), adding a passkey, and
/// sign-out.
fn enrolment_path(path: &str) -> bool {
    path == "/account/mfa"
        || path.starts_with("/account/mfa/")
        || path == "/account/passkeys/start"
        || path == "/account/passkeys/finish"
        || path == "/logout"
}

/// Whether the response already sets (or clears) the cookie `name`.
fn sets_cookie(headers: &HeaderMap, name: &str) -> bool {
    headers.get_all(SET_COOKIE).iter().any(|v| {
        v.as_bytes().starts_with(name.as_bytes()) && v.as_bytes().get(name.len()) == Some(&b'=')
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assets_and_probes_skip_the_session_lookup() {
        assert!(!needs_session("/static/app.css"));
        assert!(!needs_session("/healthz"));
        assert!(needs_session("/"));
        assert!(needs_session("/account"));
        assert!(needs_session("/static"), "only the asset folder itself");
    }

    #[test]
    fn the_api_takes_a_bearer_credential_over_the_cookie_and_pages_take_only_the_cookie() {
        let mut h = HeaderMap::new();
        h.insert(
            http::header::COOKIE,
            HeaderValue::from_static("gatehouse=tok"),
        );
        assert!(matches!(
            credential(&h, "/account", "gatehouse"),
            Some(Credential::Session("tok"))
        ));
        assert!(matches!(
            credential(&h, "/api/v1/me", "gatehouse"),
            Some(Credential::Session("tok"))
        ));
        h.insert("x-api-key", HeaderValue::from_static("gk_x"));
        assert!(matches!(
            credential(&h, "/api/v1/me", "gatehouse"),
            Some(Credential::ApiKey("gk_x"))
        ));
        h.insert(
            http::header::AUTHORIZATION,
            HeaderValue::from_static("Bearer jwt"),
        );
        assert!(matches!(
            credential(&h, "/api/v1/me", "gatehouse"),
            Some(Credential::AccessToken("jwt"))
        ));
        assert!(
            credential(&h, "/account", "gatehouse").is_none(),
            "never the cookie beside a bearer"
        );
        assert!(credential(&HeaderMap::new(), "/static/app.css", "gatehouse").is_none());
    }
}
