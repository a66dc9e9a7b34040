//! The session layer: from the cookie to a [`CurrentUser`] (and the session's CSRF secret) in
//! the request extensions, plus the cookie itself.
//!
//! # Security
//! - The cookie is `HttpOnly; SameSite=Lax; Path=/`, and in production `Secure` with the
//!   `__Host-` prefix (so no subdomain can set or shadow it).
//! - The user's status is read on every request: a disabled user's sessions stop working at
//!   once, not at expiry.
//! - A request carrying `Authorization: Bearer` is never authenticated by its cookie.
//! - A user whose role requires MFA (`GATEHOUSE_MFA_REQUIRED_ROLES`) and who has none reaches
//!   only the enrolment page and sign-out: pages redirect there, anything else gets a 403.
//! - Authenticated responses get `Cache-Control: no-store` so shared caches and the back button
//!   never show one user's page to another.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::extract::{FromRequestParts, Request};
use axum::response::{IntoResponse, Redirect, Response};
use futures_util::future::Either;
use gatehouse_security::CsrfSecret;
use http::header::{AUTHORIZATION, CACHE_CONTROL, COOKIE, SET_COOKIE};
use http::request::Parts;
use http::{HeaderMap, HeaderValue};
use tower::{Layer, Service};

use crate::app::AppState;
use crate::identity::mfa::{PENDING_LIFETIME, PendingSignIn};
use crate::identity::sessions::{Session, SessionToken};
use crate::identity::{User, UserStatus, users};

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
    let raw = cookie_value(headers, pending_cookie_name(state.settings.is_production()))?;
    PendingSignIn::decode(raw, &state.keys, state.clock.now())
}

/// How recent the last sign-in (with every factor) must be for a sensitive change: changing
/// the password, turning MFA off, new recovery codes.
pub const RECENT_SIGN_IN: time::Duration = time::Duration::minutes(10);

/// Whether the session's sign-in is recent enough for a sensitive change.
pub fn recently_signed_in(state: &AppState, current: &CurrentUser) -> bool {
    state.clock.now() - current.session.authenticated_at <= RECENT_SIGN_IN
}

/// Ends every session of `user_id` but `keep`, and every API sign-in (refresh-token family): after
/// a password change or reset and an MFA change, only the browser that made it stays signed in.
/// Returns how many sessions ended.
pub async fn end_other_sign_ins(
    state: &AppState,
    user_id: uuid::Uuid,
    keep: Option<&str>,
) -> Result<usize, crate::Error> {
    let ended = state.sessions.revoke_all(user_id, keep).await?;
    crate::identity::tokens::revoke_all(&state.db, user_id, state.clock.now()).await?;
    state.access_cache.clear();
    Ok(ended)
}

/// The value of cookie `name`, if the request has exactly one.
fn cookie_value<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    let mut found = None;
    for header in headers.get_all(COOKIE) {
        let Ok(text) = header.to_str() else { continue };
        for pair in text.split(';') {
            if let Some((k, v)) = pair.trim().split_once('=') {
                if k == name {
                    if found.is_some() {
                        // Two cookies of the same name: someone is shadowing ours; trust neither.
                        return None;
                    }
                    found = Some(v);
                }
            }
        }
    }
    found
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
        let bearer = req
            .headers()
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.len() > 7 && v[..7].eq_ignore_ascii_case("bearer "));
        let name = cookie_name(self.state.settings.is_production());
        let token = match cookie_value(req.headers(), name) {
            Some(token) if !bearer && needs_session(req.uri().path()) => token.to_owned(),
            // The common case, no cookie: no allocation, no lookup.
            _ => return Either::Left(self.inner.call(req)),
        };
        // The clone that was readied goes into the future; a fresh clone stays for next time.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let state = self.state.clone();
        Either::Right(Box::pin(async move {
            let current = match current_user(&state, &token).await {
                Ok(current) => current,
                Err(e) => return Ok(e.into_response()),
            };
            let signed_in = current.is_some();
            if let Some(current) = &current {
                if enrolment_due(&state, current) && !enrolment_path(req.uri().path()) {
                    let mut response = enrolment_required(req.method());
                    response
                        .headers_mut()
                        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
                    return Ok(response);
                }
            }
            if let Some(current) = current {
                req.extensions_mut()
                    .insert(CsrfSecret::from_bytes(current.session.csrf_secret));
                req.extensions_mut().insert(current);
            }
            let mut response = inner.call(req).await?;
            if signed_in {
                response
                    .headers_mut()
                    .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
            } else if !sets_cookie(response.headers(), name) {
                // A stale cookie (expired or revoked): remove it from the browser.
                response
                    .headers_mut()
                    .append(SET_COOKIE, clear_cookie(&state));
            }
            Ok(response)
        }))
    }
}

/// Paths that never act for a user: browsers send the cookie with every stylesheet and probe,
/// and looking the session up there would only cost two queries each.
fn needs_session(path: &str) -> bool {
    !(path.starts_with("/static/") || matches!(path, "/healthz" | "/readyz" | "/csp-report"))
}

/// Whether the user's role requires MFA (`GATEHOUSE_MFA_REQUIRED_ROLES`) and they have none yet.
fn enrolment_due(state: &AppState, current: &CurrentUser) -> bool {
    !current.user.mfa_enabled
        && state
            .settings
            .mfa_required_roles
            .contains(&current.user.role)
}

/// What a user who must enrol may still reach: the enrolment page and sign-out.
fn enrolment_path(path: &str) -> bool {
    path == "/account/mfa" || path.starts_with("/account/mfa/") || path == "/logout"
}

/// Pages send the user to enrolment; anything else is refused until it is done.
fn enrolment_required(method: &http::Method) -> Response {
    if matches!(*method, http::Method::GET | http::Method::HEAD) {
        return Redirect::to("/account/mfa").into_response();
    }
    gatehouse_security::Problem::new(http::StatusCode::FORBIDDEN)
        .with_detail("Your role requires two-step sign-in: set it up at /account/mfa first.")
        .into_response()
}

/// Whether the response already sets (or clears) the cookie `name`.
fn sets_cookie(headers: &HeaderMap, name: &str) -> bool {
    headers.get_all(SET_COOKIE).iter().any(|v| {
        v.as_bytes().starts_with(name.as_bytes()) && v.as_bytes().get(name.len()) == Some(&b'=')
    })
}

async fn current_user(state: &AppState, token: &str) -> Result<Option<CurrentUser>, crate::Error> {
    let Some(session) = state.sessions.load(token).await? else {
        return Ok(None);
    };
    let Some(user) = users::find_by_id(&state.db, session.user_id).await? else {
        return Ok(None);
    };
    if user.status != UserStatus::Active {
        return Ok(None);
    }
    let session = state.sessions.touch(session).await?;
    Ok(Some(CurrentUser { user, session }))
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
    fn only_a_single_session_cookie_is_trusted() {
        let mut h = HeaderMap::new();
        h.insert(COOKIE, HeaderValue::from_static("a=1; gatehouse=tok; b=2"));
        assert_eq!(cookie_value(&h, "gatehouse"), Some("tok"));
        h.append(COOKIE, HeaderValue::from_static("gatehouse=other"));
        assert_eq!(cookie_value(&h, "gatehouse"), None);
        let mut h = HeaderMap::new();
        h.insert(COOKIE, HeaderValue::from_static("xgatehouse=tok"));
        assert_eq!(cookie_value(&h, "gatehouse"), None);
    }
}
