//! Sign-in pages and actions: the login form, magic links with their confirmation page, one-time
//! codes, passwords, and sign-out. Each calls one sign-in of the identity pipeline and renders
//! its outcome.
//!
//! Every page works without JavaScript; every form carries the CSRF token.
//!
//! # Security
//! - `POST /login/magic` answers the same page, status and timing for every address (the work
//!   happens off the request path, see `identity::signin`).
//! - The emailed link opens a confirmation page; only its `POST` signs in, so mail scanners that
//!   fetch links consume nothing. That page sends `Referrer-Policy: same-origin`, so its URL (and
//!   token) is never sent to another site. Not `no-referrer` as DESIGN.md §7 words it: under
//!   `no-referrer` browsers send `Origin: null` with the page's own form POST, which the CSRF
//!   origin check must refuse; `same-origin` gives the same protection against leaks.
//! - The confirmation page names the account the link signs in, masked as in the logs. When
//!   someone else is signed in in this browser it says so and asks before switching: the `POST`
//!   signs in as another account only with `switch` set, which only that question's form sends
//!   (login CSRF: a crafted link cannot silently swap a user into an attacker's account).
//! - A used, expired or refused link gets one message whatever the reason.
//! - Sign-in always creates a new session (fixation), and `next` is followed only when it is a
//!   same-origin path.

use axum::extract::{Query, State};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use gatehouse_security::rate_limit::too_many_requests;
use gatehouse_security::{CspNonce, CsrfToken};
use http::header::SET_COOKIE;
use http::{HeaderValue, StatusCode};
use minijinja::context;
use serde::Deserialize;

use super::session::{CurrentUser, clear_cookie, set_cookie, set_pending_cookie};
use crate::error::Error;
use crate::identity::User;
use crate::identity::magic_links::safe_next;
use crate::identity::signin::{LinkConfirmation, LinkRequest, Origin, Outcome};
use crate::identity::upstream::UpstreamMode;
use crate::state::AppState;

/// The sign-in routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/login", get(login_page))
        .route("/login/magic", post(request_link))
        .route("/login/magic/verify", get(confirm_page).post(verify_link))
        .route("/login/code", post(verify_code))
        .route("/login/password", post(password_sign_in))
        .route("/logout", post(logout))
}

/// Cloudflare Access's sign-out, which it serves on every host it protects.
pub const CF_ACCESS_LOGOUT: &str = "/cdn-cgi/access/logout";

const LINK_FAILED: &str =
    "This sign-in link has expired or was already used. Ask for a new one below.";
const CODE_FAILED: &str = "That code is not right, or it has expired.";
const PASSWORD_FAILED: &str = "That email and password do not match an account that may sign in.";

#[derive(Debug, Deserialize)]
struct NextQuery {
    next: Option<String>,
}

#[derive(Debug, Deserialize)]
struct EmailForm {
    email: String,
    next: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(super) struct TokenParam {
    pub(super) token: String,
}

#[derive(Debug, Deserialize)]
struct LinkForm {
    token: String,
    /// Set by the form that asked "switch accounts?": the switch is confirmed.
    switch: Option<String>,
}

#[derive(Debug, Deserialize)]
struct CodeForm {
    email: String,
    code: String,
}

#[derive(Deserialize)]
struct PasswordForm {
    email: String,
    password: secrecy::SecretString,
    next: Option<String>,
}

/// The sign-in page with `ctx`, and a button for each OpenID Connect provider.
pub(super) fn login_page_with(
    state: &AppState,
    nonce: &CspNonce,
    ctx: minijinja::Value,
) -> Result<Html<String>, Error> {
    let providers: Vec<_> = state
        .identity
        .oidc_providers()
        .into_iter()
        .map(|(name, label)| context! { name => name, label => label })
        .collect();
    state.templates.page(
        "login.html",
        nonce,
        context! { providers => providers, ..ctx },
    )
}

pub(super) fn with_status(status: StatusCode, page: Html<String>) -> Response {
    (status, page).into_response()
}

async fn login_page(
    State(state): State<AppState>,
    nonce: CspNonce,
    csrf: CsrfToken,
    user: Option<CurrentUser>,
    Query(q): Query<NextQuery>,
) -> Result<Response, Error> {
    let next = q.next.as_deref().and_then(safe_next);
    if user.is_some() {
        return Ok(Redirect::to(next.as_deref().unwrap_or("/")).into_response());
    }
    let page = login_page_with(
        &state,
        &nonce,
        context! {
            title => "Sign in",
            csrf_token => csrf.as_str(),
            next => next,
            passkeys => state.identity.passkeys_available(),
        },
    )?;
    Ok(page.into_response())
}

async fn request_link(
    State(state): State<AppState>,
    nonce: CspNonce,
    csrf: CsrfToken,
    Form(form): Form<EmailForm>,
) -> Result<Response, Error> {
    let next = form.next.as_deref().and_then(safe_next);
    match state.identity.request_link(&form.email, next.clone()).await {
        Err(_) => {
            let page = login_page_with(
                &state,
                &nonce,
                context! {
                    title => "Sign in",
                    csrf_token => csrf.as_str(),
                    next => next,
                    error => "Enter a valid email address.",
                    email => form.email.trim(),
                    passkeys => state.identity.passkeys_available(),
                },
            )?;
            Ok(with_status(StatusCode::UNPROCESSABLE_ENTITY, page))
        }
        Ok(LinkRequest::RateLimited(decision)) => Ok(too_many_requests(&decision)),
        Ok(LinkRequest::Accepted) => {
            let page = state.templates.page(
                "login_sent.html",
                &nonce,
                context! {
                    title => "Check your inbox",
                    csrf_token => csrf.as_str(),
                    email => form.email.trim().to_lowercase(),
                    valid_for => state.identity.sign_in_link_valid_for(),
                },
            )?;
            Ok(page.into_response())
        }
    }
}

async fn confirm_page(
    State(state): State<AppState>,
    nonce: CspNonce,
    csrf: CsrfToken,
    current: Option<CurrentUser>,
    Query(q): Query<TokenParam>,
) -> Result<Response, Error> {
    let signed_in = current.as_ref().map(|c| &c.user);
    match state.identity.preview_link(&q.token, signed_in).await? {
        Some(confirmation) => {
            render_confirmation(&state, &nonce, &csrf, signed_in, &q.token, &confirmation)
        }
        None => {
            let mut response = link_failed(&state, &nonce, &csrf)?;
            super::token_page(&mut response);
            Ok(response)
        }
    }
}

/// The page that asks to confirm a link's sign-in, naming its account, and asking before a
/// switch from another signed-in account. `signed_in` keeps their navigation on the page.
fn render_confirmation(
    state: &AppState,
    nonce: &CspNonce,
    csrf: &CsrfToken,
    signed_in: Option<&User>,
    token: &str,
    confirmation: &LinkConfirmation,
) -> Result<Response, Error> {
    let replaces = confirmation.replaces.as_ref().map(|e| e.as_str());
    let page = state.templates.page(
        "login_confirm.html",
        nonce,
        context! {
            title => if replaces.is_some() { "Switch account?" } else { "Confirm sign-in" },
            csrf_token => csrf.as_str(),
            token => token,
            account => confirmation.account,
            replaces => replaces,
            user => signed_in.map(|u| context! { email => u.email.as_str() }),
        },
    )?;
    let mut response = page.into_response();
    super::token_page(&mut response);
    Ok(response)
}

/// The sign-in page with the one message for a link that cannot be used.
fn link_failed(state: &AppState, nonce: &CspNonce, csrf: &CsrfToken) -> Result<Response, Error> {
    let page = login_page_with(
        state,
        nonce,
        context! {
            title => "Sign in",
            csrf_token => csrf.as_str(),
            error => LINK_FAILED,
            passkeys => state.identity.passkeys_available(),
        },
    )?;
    Ok(with_status(StatusCode::BAD_REQUEST, page))
}

/// Where a sign-in with a password on the common list lands: the account page, with its notice
/// that leads to the change-password form (the notice is advice only: a crafted link to it does
/// no harm).
pub(super) const COMMON_PASSWORD_NOTICE: &str = "/account?notice=common-password";

/// Renders a browser sign-in's outcome: a redirect with the session and device cookies (to
/// `next`, or to the account page's notice when the password should be changed), or to
/// `/login/mfa` when a second factor is due; a wait; or the page `refused` renders.
pub(super) fn render_sign_in(
    state: &AppState,
    outcome: Outcome,
    refused: impl FnOnce() -> Result<Response, Error>,
) -> Result<Response, Error> {
    match outcome {
        Outcome::SignedIn {
            token,
            device,
            next,
            password_change_advised,
            ..
        } => {
            let to = if password_change_advised {
                COMMON_PASSWORD_NOTICE
            } else {
                next.as_deref().unwrap_or("/")
            };
            let mut response = Redirect::to(to).into_response();
            let headers = response.headers_mut();
            headers.append(SET_COOKIE, set_cookie(state, &token));
            headers.append(
                SET_COOKIE,
                super::session::set_device_cookie(state, &device),
            );
            headers.append(SET_COOKIE, super::session::clear_pending_cookie(state));
            Ok(response)
        }
        Outcome::SecondFactorDue(pending) => {
            let mut response = Redirect::to("/login/mfa").into_response();
            response
                .headers_mut()
                .append(SET_COOKIE, set_pending_cookie(state, &pending));
            Ok(response)
        }
        Outcome::Throttled(wait) => Ok(throttled(wait)),
        Outcome::RateLimited(decision) => Ok(too_many_requests(&decision)),
        Outcome::Refused
        | Outcome::TokensIssued(_)
        | Outcome::MfaRequired
        | Outcome::EnrolmentRequired
        | Outcome::SwitchUnconfirmed(_) => refused(),
    }
}

async fn verify_link(
    State(state): State<AppState>,
    nonce: CspNonce,
    csrf: CsrfToken,
    origin: Origin,
    current: Option<CurrentUser>,
    Form(form): Form<LinkForm>,
) -> Result<Response, Error> {
    let signed_in = current.as_ref().map(|c| &c.user);
    let outcome = state
        .identity
        .sign_in_with_link(&form.token, signed_in, form.switch.is_some(), &origin)
        .await?;
    if let Outcome::SwitchUnconfirmed(confirmation) = &outcome {
        return render_confirmation(&state, &nonce, &csrf, signed_in, &form.token, confirmation);
    }
    render_sign_in(&state, outcome, || link_failed(&state, &nonce, &csrf))
}

async fn verify_code(
    State(state): State<AppState>,
    nonce: CspNonce,
    csrf: CsrfToken,
    origin: Origin,
    Form(form): Form<CodeForm>,
) -> Result<Response, Error> {
    let outcome = state
        .identity
        .sign_in_with_code(&form.email, &form.code, &origin)
        .await?;
    render_sign_in(&state, outcome, || {
        let page = state.templates.page(
            "login_sent.html",
            &nonce,
            context! {
                title => "Check your inbox",
                csrf_token => csrf.as_str(),
                email => form.email.trim(),
                valid_for => state.identity.sign_in_link_valid_for(),
                error => CODE_FAILED,
            },
        )?;
        Ok(with_status(StatusCode::BAD_REQUEST, page))
    })
}

async fn password_sign_in(
    State(state): State<AppState>,
    nonce: CspNonce,
    csrf: CsrfToken,
    origin: Origin,
    Form(form): Form<PasswordForm>,
) -> Result<Response, Error> {
    let next = form.next.as_deref().and_then(safe_next);
    let outcome = state
        .identity
        .sign_in_with_password(
            &form.email,
            &form.password,
            next.clone(),
            crate::identity::signin::Channel::Browser,
            &origin,
        )
        .await?;
    render_sign_in(&state, outcome, || {
        let page = login_page_with(
            &state,
            &nonce,
            context! {
                title => "Sign in",
                csrf_token => csrf.as_str(),
                next => next,
                error => PASSWORD_FAILED,
                email => form.email.trim(),
            },
        )?;
        Ok(with_status(StatusCode::UNAUTHORIZED, page))
    })
}

/// The answer while an address or IP must wait: the same for every address, known or not.
pub(crate) fn throttled(wait: std::time::Duration) -> Response {
    let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    let mut response = gatehouse_security::Problem::new(StatusCode::TOO_MANY_REQUESTS)
        .with_detail(format!(
            "Too many failed sign-ins. Try again in {seconds} seconds, or sign in with an email link."
        ))
        .into_response();
    response
        .headers_mut()
        .insert(http::header::RETRY_AFTER, HeaderValue::from(seconds.max(1)));
    response
}

async fn logout(
    State(state): State<AppState>,
    current: CurrentUser,
    origin: Origin,
) -> Result<Response, Error> {
    state
        .identity
        .sign_out(current.user.id, &current.session, &origin)
        .await?;
    // Behind Cloudflare Access the next page would sign the person straight back in: its own
    // sign-out, on this host, ends the Access session too.
    let to = match state.settings.upstream_identity.mode {
        UpstreamMode::CloudflareAccess => CF_ACCESS_LOGOUT,
        UpstreamMode::Off | UpstreamMode::TrustedHeader => "/",
    };
    let mut response = Redirect::to(to).into_response();
    response
        .headers_mut()
        .append(SET_COOKIE, clear_cookie(&state));
    Ok(response)
}
