//! Two-step sign-in pages: the second factor at `/login/mfa`, and enrolment, recovery codes and
//! turning MFA off at `/account/mfa`.
//!
//! # Security
//! - `/login/mfa` acts only for a genuine, unexpired pending sign-in (see
//!   `identity::mfa::PendingSignIn`), and only while its user is active and still has MFA. Wrong
//!   codes count against the account's and the address's sign-in throttle, so the million
//!   possible codes cannot be tried; the lock applies here as at the password form.
//! - Setting up, turning off and new recovery codes need a sign-in from the last ten minutes;
//!   turning MFA on or off ends every other session and mails the user; each change is audited.
//! - Recovery codes appear once, in the response to the action that made them (`no-store`, as
//!   every signed-in page); only their MACs are kept.

use axum::extract::State;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use gatehouse_security::{CspNonce, CsrfToken};
use http::header::SET_COOKIE;
use http::{HeaderMap, StatusCode};
use minijinja::context;
use serde::Deserialize;

use super::auth::{render_sign_in, with_status};
use super::session::{CurrentUser, clear_pending_cookie, pending_sign_in};
use crate::error::Error;
use crate::identity::enrolment::MfaRefusal;
use crate::identity::mfa::{self, Enrolment};
use crate::identity::signin::{Origin, SecondFactor};
use crate::identity::users;
use crate::state::AppState;

/// The MFA routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/login/mfa", get(second_factor_page).post(second_factor))
        .route("/account/mfa", get(account_page))
        .route("/account/mfa/setup", post(setup))
        .route("/account/mfa/confirm", post(confirm))
        .route("/account/mfa/recovery-codes", post(regenerate_codes))
        .route("/account/mfa/disable", post(disable))
}

const CODE_FAILED: &str =
    "That code is not right. Enter the current code from your app, or an unused recovery code.";
const CONFIRM_FAILED: &str = "That code is not right. Check that your phone's clock is set automatically, then enter the code your app shows now.";

#[derive(Debug, Deserialize)]
struct CodeForm {
    code: String,
}

async fn second_factor_page(
    State(state): State<AppState>,
    nonce: CspNonce,
    csrf: CsrfToken,
    headers: HeaderMap,
) -> Result<Response, Error> {
    let Some(pending) = pending_sign_in(&state, &headers) else {
        return Ok(Redirect::to("/login").into_response());
    };
    let page = state.templates.page(
        "login_mfa.html",
        &nonce,
        context! {
            title => "Two-step sign-in",
            csrf_token => csrf.as_str(),
            passkeys => offers_passkeys(&state, pending.user_id).await?,
        },
    )?;
    Ok(page.into_response())
}

async fn second_factor(
    State(state): State<AppState>,
    nonce: CspNonce,
    csrf: CsrfToken,
    origin: Origin,
    headers: HeaderMap,
    Form(form): Form<CodeForm>,
) -> Result<Response, Error> {
    let Some(pending) = pending_sign_in(&state, &headers) else {
        return Ok(start_over(&state));
    };
    let outcome = state
        .identity
        .sign_in_second_factor(&pending, SecondFactor::Code(&form.code), &origin)
        .await?;
    if matches!(outcome, crate::identity::signin::Outcome::Refused)
        && !state.identity.pending_still_valid(&pending).await?
    {
        return Ok(start_over(&state));
    }
    let passkeys = offers_passkeys(&state, pending.user_id).await?;
    render_sign_in(&state, outcome, || {
        let page = state.templates.page(
            "login_mfa.html",
            &nonce,
            context! {
                title => "Two-step sign-in",
                csrf_token => csrf.as_str(),
                error => CODE_FAILED,
                passkeys => passkeys,
            },
        )?;
        Ok(with_status(StatusCode::UNAUTHORIZED, page))
    })
}

/// Whether the second-factor page offers a passkey: passkeys work here and the user has one.
async fn offers_passkeys(state: &AppState, user_id: uuid::Uuid) -> Result<bool, Error> {
    Ok(state.identity.passkeys_available() && !state.identity.passkeys(user_id).await?.is_empty())
}

/// Back to the sign-in page, forgetting the pending sign-in.
fn start_over(state: &AppState) -> Response {
    let mut response = Redirect::to("/login").into_response();
    response
        .headers_mut()
        .append(SET_COOKIE, clear_pending_cookie(state));
    response
}

/// Renders `/account/mfa` with `extra` context.
async fn render_account(
    state: &AppState,
    nonce: &CspNonce,
    csrf: &CsrfToken,
    current: &CurrentUser,
    status: StatusCode,
    extra: minijinja::Value,
) -> Result<Response, Error> {
    // The page reads the stored state, not the request's snapshot: an action may just have
    // changed it.
    let user = users::find_by_id(&state.db, current.user.id)
        .await?
        .ok_or(Error::NotFound)?;
    let remaining = if user.mfa_enabled {
        mfa::remaining_recovery_codes(&state.db, user.id).await?
    } else {
        0
    };
    let required = state.identity.mfa_required(&user);
    let passkey = required && !state.identity.passkeys(user.id).await?.is_empty();
    let stale = !state.identity.recently_signed_in(&current.session);
    let page = state.templates.page(
        "account_mfa.html",
        nonce,
        context! {
            title => "Two-step sign-in",
            csrf_token => csrf.as_str(),
            user => context! { email => user.email.as_str() },
            enabled => user.mfa_enabled,
            required => required,
            passkey => passkey,
            offer_passkey => required && !passkey && !user.mfa_enabled && !stale
                && state.identity.passkeys_available(),
            remaining => remaining,
            stale => stale,
            ..extra
        },
    )?;
    Ok(with_status(status, page))
}

fn enrolment_context(enrolment: &Enrolment) -> minijinja::Value {
    context! {
        enrolment => context! {
            qr_svg => minijinja::Value::from_safe_string(enrolment.qr_svg.clone()),
            setup_key => enrolment.setup_key.as_str(),
        },
    }
}

async fn account_page(
    State(state): State<AppState>,
    nonce: CspNonce,
    csrf: CsrfToken,
    current: CurrentUser,
) -> Result<Response, Error> {
    render_account(&state, &nonce, &csrf, &current, StatusCode::OK, context! {}).await
}

/// Renders the account page after a refused change.
async fn refused(
    state: &AppState,
    nonce: &CspNonce,
    csrf: &CsrfToken,
    current: &CurrentUser,
    refusal: MfaRefusal,
) -> Result<Response, Error> {
    let (status, extra) = match refusal {
        MfaRefusal::NotRecent => (StatusCode::FORBIDDEN, context! {}),
        MfaRefusal::RequiredByRole => (
            StatusCode::FORBIDDEN,
            context! { error => "Your role requires two-step sign-in: it cannot be turned off." },
        ),
        MfaRefusal::WrongCode => {
            let again = state
                .identity
                .mfa_enrolment_in_progress(&current.user)
                .await?;
            let extra = match &again {
                Some(enrolment) => enrolment_context(enrolment),
                None => context! {},
            };
            (
                StatusCode::BAD_REQUEST,
                context! { error => CONFIRM_FAILED, ..extra },
            )
        }
        MfaRefusal::NothingToDo => return Ok(Redirect::to("/account/mfa").into_response()),
    };
    render_account(state, nonce, csrf, current, status, extra).await
}

async fn setup(
    State(state): State<AppState>,
    nonce: CspNonce,
    csrf: CsrfToken,
    current: CurrentUser,
) -> Result<Response, Error> {
    match state
        .identity
        .mfa_setup(&current.user, &current.session)
        .await?
    {
        Ok(enrolment) => {
            let extra = enrolment_context(&enrolment);
            render_account(&state, &nonce, &csrf, &current, StatusCode::OK, extra).await
        }
        Err(refusal) => refused(&state, &nonce, &csrf, &current, refusal).await,
    }
}

async fn confirm(
    State(state): State<AppState>,
    nonce: CspNonce,
    csrf: CsrfToken,
    current: CurrentUser,
    origin: Origin,
    Form(form): Form<CodeForm>,
) -> Result<Response, Error> {
    match state
        .identity
        .mfa_confirm(&current.user, &current.session, &form.code, &origin)
        .await?
    {
        Ok(codes) => {
            let extra = context! { codes => codes, message => "Two-step sign-in is on. You were signed out everywhere else." };
            render_account(&state, &nonce, &csrf, &current, StatusCode::OK, extra).await
        }
        Err(refusal) => refused(&state, &nonce, &csrf, &current, refusal).await,
    }
}

async fn regenerate_codes(
    State(state): State<AppState>,
    nonce: CspNonce,
    csrf: CsrfToken,
    current: CurrentUser,
    origin: Origin,
) -> Result<Response, Error> {
    match state
        .identity
        .mfa_new_recovery_codes(&current.user, &current.session, &origin)
        .await?
    {
        Ok(codes) => {
            let extra =
                context! { codes => codes, message => "Your old recovery codes no longer work." };
            render_account(&state, &nonce, &csrf, &current, StatusCode::OK, extra).await
        }
        Err(refusal) => refused(&state, &nonce, &csrf, &current, refusal).await,
    }
}

async fn disable(
    State(state): State<AppState>,
    nonce: CspNonce,
    csrf: CsrfToken,
    current: CurrentUser,
    origin: Origin,
) -> Result<Response, Error> {
    match state
        .identity
        .mfa_disable(&current.user, &current.session, &origin)
        .await?
    {
        Ok(()) => {
            let extra = context! { message => "Two-step sign-in is off. You were signed out everywhere else." };
            render_account(&state, &nonce, &csrf, &current, StatusCode::OK, extra).await
        }
        Err(refusal) => refused(&state, &nonce, &csrf, &current, refusal).await,
    }
}
