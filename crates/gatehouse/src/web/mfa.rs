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
use gatehouse_security::{ClientIp, CspNonce, CsrfToken, RequestId};
use http::header::SET_COOKIE;
use http::{HeaderMap, StatusCode};
use minijinja::context;
use serde::Deserialize;

use super::auth::{meta, throttled, with_status};
use super::notices;
use super::session::{
    CurrentUser, clear_pending_cookie, pending_sign_in, recently_signed_in, set_cookie,
};
use crate::Error;
use crate::app::AppState;
use crate::audit::{self, AuditContext, AuditEvent};
use crate::identity::mfa::{self, Checked, Enrolment};
use crate::identity::{signin, throttle, users};

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
    if pending_sign_in(&state, &headers).is_none() {
        return Ok(Redirect::to("/login").into_response());
    }
    let page = state.templates.page(
        "login_mfa.html",
        &nonce,
        context! { title => "Two-step sign-in", csrf_token => csrf.as_str() },
    )?;
    Ok(page.into_response())
}

async fn second_factor(
    State(state): State<AppState>,
    nonce: CspNonce,
    csrf: CsrfToken,
    ip: ClientIp,
    request_id: RequestId,
    headers: HeaderMap,
    Form(form): Form<CodeForm>,
) -> Result<Response, Error> {
    let start_over = || {
        let mut response = Redirect::to("/login").into_response();
        response
            .headers_mut()
            .append(SET_COOKIE, clear_pending_cookie(&state));
        response
    };
    let Some(pending) = pending_sign_in(&state, &headers) else {
        return Ok(start_over());
    };
    let user = match users::find_by_id(&state.db, pending.user_id).await? {
        Some(u) if u.status == crate::identity::UserStatus::Active && u.mfa_enabled => u,
        _ => return Ok(start_over()),
    };
    let keys = throttle::keys(&state.settings.throttle, &user.email, ip.0);
    let now = state.clock.now();
    if let Some(wait) = throttle::blocked_for(&state.db, &keys, now).await? {
        return Ok(throttled(wait));
    }
    let audit_ctx = AuditContext::user(user.id, ip.0, request_id.as_str());
    let checked = mfa::check(&state.db, &state.keys, user.id, &form.code, now, &audit_ctx).await?;
    let second = match checked {
        Checked::Totp => "totp",
        Checked::RecoveryCode { remaining } => {
            tracing::warn!(event = "recovery_code_used", user_id = %user.id, remaining, "signed in with a recovery code");
            notices::send(&state, &user.email, ip, notices::RECOVERY_CODE_USED);
            "recovery_code"
        }
        Checked::Rejected => {
            if throttle::record_failure(&state.db, &state.settings.throttle, &keys, now).await? {
                signin::record_lock(
                    &state,
                    &user.email,
                    &meta(ip, &headers),
                    Some(request_id.as_str().to_owned()),
                )
                .await?;
            }
            let mut tx = state.db.begin().await?;
            audit::record(
                &mut tx,
                &audit_ctx,
                AuditEvent {
                    action: "auth.mfa_failed",
                    entity_type: "user",
                    entity_id: Some(user.id.to_string()),
                    changes: serde_json::json!({ "method": pending.method }),
                },
            )
            .await?;
            tx.commit().await?;
            tracing::warn!(event = "sign_in_failed", method = "mfa", user_id = %user.id, "second factor refused");
            let page = state.templates.page(
                "login_mfa.html",
                &nonce,
                context! {
                    title => "Two-step sign-in",
                    csrf_token => csrf.as_str(),
                    error => CODE_FAILED,
                },
            )?;
            return Ok(with_status(StatusCode::UNAUTHORIZED, page));
        }
    };
    throttle::clear(&state.db, &keys[0].name).await?;
    let method = format!("{}+{second}", pending.method);
    let token = signin::start_session(
        &state,
        &user,
        &method,
        &meta(ip, &headers),
        Some(request_id.as_str().to_owned()),
    )
    .await?;
    let mut response = Redirect::to(pending.next.as_deref().unwrap_or("/")).into_response();
    let headers = response.headers_mut();
    headers.append(SET_COOKIE, set_cookie(&state, &token));
    headers.append(SET_COOKIE, clear_pending_cookie(&state));
    Ok(response)
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
    let page = state.templates.page(
        "account_mfa.html",
        nonce,
        context! {
            title => "Two-step sign-in",
            csrf_token => csrf.as_str(),
            user => context! { email => user.email.as_str() },
            enabled => user.mfa_enabled,
            required => state.settings.mfa_required_roles.contains(&user.role),
            remaining => remaining,
            stale => !recently_signed_in(state, current),
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

async fn setup(
    State(state): State<AppState>,
    nonce: CspNonce,
    csrf: CsrfToken,
    current: CurrentUser,
) -> Result<Response, Error> {
    let render = |status, extra| render_account(&state, &nonce, &csrf, &current, status, extra);
    if !recently_signed_in(&state, &current) {
        return render(StatusCode::FORBIDDEN, context! {}).await;
    }
    match mfa::begin(
        &state.db,
        &state.keys,
        current.user.id,
        current.user.email.as_str(),
    )
    .await?
    {
        Some(enrolment) => render(StatusCode::OK, enrolment_context(&enrolment)).await,
        None => Ok(Redirect::to("/account/mfa").into_response()),
    }
}

async fn confirm(
    State(state): State<AppState>,
    nonce: CspNonce,
    csrf: CsrfToken,
    current: CurrentUser,
    ip: ClientIp,
    request_id: RequestId,
    Form(form): Form<CodeForm>,
) -> Result<Response, Error> {
    let render = |status, extra| render_account(&state, &nonce, &csrf, &current, status, extra);
    if !recently_signed_in(&state, &current) {
        return render(StatusCode::FORBIDDEN, context! {}).await;
    }
    let confirmed = mfa::confirm(
        &state.db,
        &state.keys,
        current.user.id,
        &form.code,
        state.clock.now(),
        &AuditContext::user(current.user.id, ip.0, request_id.as_str()),
    )
    .await?;
    let Some(codes) = confirmed else {
        let again = mfa::in_progress(
            &state.db,
            &state.keys,
            current.user.id,
            current.user.email.as_str(),
        )
        .await?;
        let extra = match &again {
            Some(enrolment) => enrolment_context(enrolment),
            None => context! {},
        };
        return render(
            StatusCode::BAD_REQUEST,
            context! { error => CONFIRM_FAILED, ..extra },
        )
        .await;
    };
    let ended =
        super::session::end_other_sign_ins(&state, current.user.id, Some(&current.session.id_hash))
            .await?;
    tracing::info!(event = "mfa_enabled", user_id = %current.user.id, other_sessions_ended = ended, "two-step sign-in turned on");
    notices::send(&state, &current.user.email, ip, notices::MFA_ENABLED);
    render(
        StatusCode::OK,
        context! { codes => codes, message => "Two-step sign-in is on. You were signed out everywhere else." },
    )
    .await
}

async fn regenerate_codes(
    State(state): State<AppState>,
    nonce: CspNonce,
    csrf: CsrfToken,
    current: CurrentUser,
    ip: ClientIp,
    request_id: RequestId,
) -> Result<Response, Error> {
    let render = |status, extra| render_account(&state, &nonce, &csrf, &current, status, extra);
    if !recently_signed_in(&state, &current) {
        return render(StatusCode::FORBIDDEN, context! {}).await;
    }
    match mfa::regenerate_recovery_codes(
        &state.db,
        &state.keys,
        current.user.id,
        state.clock.now(),
        &AuditContext::user(current.user.id, ip.0, request_id.as_str()),
    )
    .await?
    {
        Some(codes) => {
            tracing::info!(event = "recovery_codes_regenerated", user_id = %current.user.id, "new recovery codes");
            render(
                StatusCode::OK,
                context! { codes => codes, message => "Your old recovery codes no longer work." },
            )
            .await
        }
        None => Ok(Redirect::to("/account/mfa").into_response()),
    }
}

async fn disable(
    State(state): State<AppState>,
    nonce: CspNonce,
    csrf: CsrfToken,
    current: CurrentUser,
    ip: ClientIp,
    request_id: RequestId,
) -> Result<Response, Error> {
    let render = |status, extra| render_account(&state, &nonce, &csrf, &current, status, extra);
    if !recently_signed_in(&state, &current) {
        return render(StatusCode::FORBIDDEN, context! {}).await;
    }
    if state
        .settings
        .mfa_required_roles
        .contains(&current.user.role)
    {
        return render(
            StatusCode::FORBIDDEN,
            context! { error => "Your role requires two-step sign-in: it cannot be turned off." },
        )
        .await;
    }
    let ctx = AuditContext::user(current.user.id, ip.0, request_id.as_str());
    if !mfa::disable(&state.db, current.user.id, "mfa.disable", &ctx).await? {
        return Ok(Redirect::to("/account/mfa").into_response());
    }
    let ended =
        super::session::end_other_sign_ins(&state, current.user.id, Some(&current.session.id_hash))
            .await?;
    tracing::info!(event = "mfa_disabled", user_id = %current.user.id, other_sessions_ended = ended, "two-step sign-in turned off");
    notices::send(&state, &current.user.email, ip, notices::MFA_DISABLED);
    render(
        StatusCode::OK,
        context! { message => "Two-step sign-in is off. You were signed out everywhere else." },
    )
    .await
}
