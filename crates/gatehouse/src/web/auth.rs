//! Sign-in pages and actions: the login form, magic links with their confirmation page, one-time
//! codes, sign-out, and the account page with the user's sessions.
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
//! - A used, expired or refused link gets one message whatever the reason.
//! - Sign-in always creates a new session (fixation), and `next` is followed only when it is a
//!   same-origin path.

use axum::extract::{Query, State};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use gatehouse_security::rate_limit::too_many_requests;
use gatehouse_security::{ClientIp, CspNonce, CsrfToken, RequestId};
use http::header::{CACHE_CONTROL, REFERRER_POLICY, SET_COOKIE, USER_AGENT};
use http::{HeaderMap, HeaderValue, StatusCode};
use minijinja::context;
use serde::Deserialize;

use super::notices;
use super::session::{
    CurrentUser, clear_cookie, recently_signed_in, set_cookie, set_pending_cookie,
};
use crate::Error;
use crate::app::AppState;
use crate::audit::{self, AuditContext, AuditEvent};
use crate::identity::Email;
use crate::identity::magic_links::{self, CodeOutcome, safe_next};
use crate::identity::sessions::SessionMeta;
use crate::identity::signin::{self, SignInError, SignedIn};
use crate::identity::throttle;
use crate::store::timestamp_text;

/// The sign-in and account routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/login", get(login_page))
        .route("/login/magic", post(request_link))
        .route("/login/magic/verify", get(confirm_page).post(verify_link))
        .route("/login/code", post(verify_code))
        .route("/login/password", post(password_sign_in))
        .route("/logout", post(logout))
        .route("/account", get(account))
        .route("/password/forgot", get(forgot_page).post(forgot))
        .route("/password/reset", get(reset_page).post(reset))
        .route(
            "/account/password",
            get(password_page).post(change_password),
        )
        .route("/account/sessions/revoke", post(revoke_session))
        .route(
            "/account/sessions/revoke-others",
            post(revoke_other_sessions),
        )
}

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
struct TokenParam {
    token: String,
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

#[derive(Debug, Deserialize)]
struct SessionForm {
    id: String,
}

pub(super) fn meta(ip: ClientIp, headers: &HeaderMap) -> SessionMeta {
    SessionMeta {
        client_ip: Some(ip.0),
        user_agent: headers
            .get(USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
    }
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
    let page = state.templates.page(
        "login.html",
        &nonce,
        context! { title => "Sign in", csrf_token => csrf.as_str(), next => next },
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
    let Ok(email) = Email::parse(&form.email) else {
        let page = state.templates.page(
            "login.html",
            &nonce,
            context! {
                title => "Sign in",
                csrf_token => csrf.as_str(),
                next => next,
                error => "Enter a valid email address.",
                email => form.email.trim(),
            },
        )?;
        return Ok(with_status(StatusCode::UNPROCESSABLE_ENTITY, page));
    };
    if let Err(decision) = signin::attempt_allowed(&state, &email).await {
        return Ok(too_many_requests(&decision));
    }
    signin::request_link(&state, email.clone(), next).await;
    let page = state.templates.page(
        "login_sent.html",
        &nonce,
        context! {
            title => "Check your inbox",
            csrf_token => csrf.as_str(),
            email => email.as_str(),
            minutes => magic_links::LINK_LIFETIME.as_secs() / 60,
        },
    )?;
    Ok(page.into_response())
}

async fn confirm_page(
    State(state): State<AppState>,
    nonce: CspNonce,
    csrf: CsrfToken,
    Query(q): Query<TokenParam>,
) -> Result<Response, Error> {
    let page = state.templates.page(
        "login_confirm.html",
        &nonce,
        context! { title => "Confirm sign-in", csrf_token => csrf.as_str(), token => q.token },
    )?;
    let mut response = page.into_response();
    let headers = response.headers_mut();
    headers.insert(REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

/// Signs in and redirects (to `next`, or to `/login/mfa` when a second factor is due), or
/// renders the login page with `failure`.
async fn finish_sign_in(
    state: &AppState,
    result: Result<SignedIn, SignInError>,
    next: Option<String>,
    render_failure: impl FnOnce() -> Result<Response, Error>,
) -> Result<Response, Error> {
    match result {
        Ok(SignedIn::Session(token, _user)) => {
            let mut response = Redirect::to(next.as_deref().unwrap_or("/")).into_response();
            response
                .headers_mut()
                .append(SET_COOKIE, set_cookie(state, &token));
            Ok(response)
        }
        Ok(SignedIn::SecondFactorDue(pending)) => {
            let mut response = Redirect::to("/login/mfa").into_response();
            response
                .headers_mut()
                .append(SET_COOKIE, set_pending_cookie(state, &pending));
            Ok(response)
        }
        Err(SignInError::NotAllowed) => render_failure(),
        Err(SignInError::Other(e)) => Err(e),
    }
}

async fn verify_link(
    State(state): State<AppState>,
    nonce: CspNonce,
    csrf: CsrfToken,
    ip: ClientIp,
    request_id: RequestId,
    headers: HeaderMap,
    Form(form): Form<TokenParam>,
) -> Result<Response, Error> {
    let failure = || -> Result<Response, Error> {
        let page = state.templates.page(
            "login.html",
            &nonce,
            context! { title => "Sign in", csrf_token => csrf.as_str(), error => LINK_FAILED },
        )?;
        Ok(with_status(StatusCode::BAD_REQUEST, page))
    };
    let Some(consumed) =
        magic_links::consume_token(&state.db, state.clock.now(), &form.token).await?
    else {
        return failure();
    };
    let meta = meta(ip, &headers);
    let result = signin::complete(
        &state,
        &consumed,
        "magic_link",
        &meta,
        Some(request_id.as_str().to_owned()),
    )
    .await;
    finish_sign_in(&state, result, consumed.next.clone(), failure).await
}

async fn verify_code(
    State(state): State<AppState>,
    nonce: CspNonce,
    csrf: CsrfToken,
    ip: ClientIp,
    request_id: RequestId,
    headers: HeaderMap,
    Form(form): Form<CodeForm>,
) -> Result<Response, Error> {
    let meta = meta(ip, &headers);
    let failure = |email: &str| -> Result<Response, Error> {
        let page = state.templates.page(
            "login_sent.html",
            &nonce,
            context! {
                title => "Check your inbox",
                csrf_token => csrf.as_str(),
                email => email,
                minutes => magic_links::LINK_LIFETIME.as_secs() / 60,
                error => CODE_FAILED,
            },
        )?;
        Ok(with_status(StatusCode::BAD_REQUEST, page))
    };
    let Ok(email) = Email::parse(&form.email) else {
        return failure(form.email.trim());
    };
    if let Err(decision) = signin::attempt_allowed(&state, &email).await {
        return Ok(too_many_requests(&decision));
    }
    match magic_links::consume_code(
        &state.db,
        &state.keys,
        state.clock.now(),
        &email,
        &form.code,
    )
    .await?
    {
        CodeOutcome::Accepted(consumed) => {
            let result = signin::complete(
                &state,
                &consumed,
                "code",
                &meta,
                Some(request_id.as_str().to_owned()),
            )
            .await;
            finish_sign_in(&state, result, consumed.next.clone(), || {
                failure(email.as_str())
            })
            .await
        }
        CodeOutcome::Rejected => {
            signin::record_failed_code(&state, &email, &meta, Some(request_id.as_str().to_owned()))
                .await?;
            failure(email.as_str())
        }
    }
}

async fn password_sign_in(
    State(state): State<AppState>,
    nonce: CspNonce,
    csrf: CsrfToken,
    ip: ClientIp,
    request_id: RequestId,
    headers: HeaderMap,
    Form(form): Form<PasswordForm>,
) -> Result<Response, Error> {
    let next = form.next.as_deref().and_then(safe_next);
    let failure = || -> Result<Response, Error> {
        let page = state.templates.page(
            "login.html",
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
    };
    let Ok(email) = Email::parse(&form.email) else {
        // Spend the same work as a real check: a malformed address tells nothing either.
        state.passwords.verify_dummy(&form.password).await?;
        return failure();
    };
    if let Err(decision) = signin::attempt_allowed(&state, &email).await {
        return Ok(too_many_requests(&decision));
    }
    let keys = throttle::keys(&state.settings.throttle, &email, ip.0);
    if let Some(wait) = throttle::blocked_for(&state.db, &keys, state.clock.now()).await? {
        return Ok(throttled(wait));
    }
    let meta = meta(ip, &headers);
    let result = signin::with_password(
        &state,
        &email,
        &form.password,
        next.clone(),
        &meta,
        Some(request_id.as_str().to_owned()),
    )
    .await;
    match &result {
        Ok(_) => throttle::clear(&state.db, &keys[0].name).await?,
        Err(SignInError::NotAllowed) => {
            let now = state.clock.now();
            if throttle::record_failure(&state.db, &state.settings.throttle, &keys, now).await? {
                signin::record_lock(&state, &email, &meta, Some(request_id.as_str().to_owned()))
                    .await?;
            }
        }
        Err(SignInError::Other(_)) => {}
    }
    finish_sign_in(&state, result, next.clone(), failure).await
}

#[derive(Deserialize)]
struct PasswordChangeForm {
    current: Option<secrecy::SecretString>,
    new: secrecy::SecretString,
    confirm: secrecy::SecretString,
}

/// Renders the password page with `extra` context and `status`.
async fn render_password_page(
    state: &AppState,
    nonce: &CspNonce,
    csrf: &CsrfToken,
    current: &CurrentUser,
    status: StatusCode,
    extra: minijinja::Value,
) -> Result<Response, Error> {
    let has_password = crate::identity::users::password_hash(&state.db, current.user.id)
        .await?
        .is_some();
    let stale = !recently_signed_in(state, current);
    let page = state.templates.page(
        "account_password.html",
        nonce,
        context! {
            title => "Your password",
            csrf_token => csrf.as_str(),
            user => context! { email => current.user.email.as_str() },
            has_password => has_password,
            stale => stale,
            min_length => state.settings.password_policy.min_length,
            ..extra
        },
    )?;
    Ok(with_status(status, page))
}

async fn password_page(
    State(state): State<AppState>,
    nonce: CspNonce,
    csrf: CsrfToken,
    current: CurrentUser,
) -> Result<Response, Error> {
    render_password_page(&state, &nonce, &csrf, &current, StatusCode::OK, context! {}).await
}

async fn change_password(
    State(state): State<AppState>,
    nonce: CspNonce,
    csrf: CsrfToken,
    current: CurrentUser,
    ip: ClientIp,
    request_id: RequestId,
    Form(form): Form<PasswordChangeForm>,
) -> Result<Response, Error> {
    let render =
        |status, extra| render_password_page(&state, &nonce, &csrf, &current, status, extra);
    if !recently_signed_in(&state, &current) {
        return render(StatusCode::FORBIDDEN, context! {}).await;
    }
    if let Some(stored) = crate::identity::users::password_hash(&state.db, current.user.id).await? {
        let given = form
            .current
            .clone()
            .unwrap_or_else(|| secrecy::SecretString::from(""));
        if !state.passwords.verify(&given, &stored).await?.ok {
            return render(
                StatusCode::BAD_REQUEST,
                context! { error => "The current password is not right." },
            )
            .await;
        }
    }
    if let Err((status, problem)) =
        check_new_password(&state, &form.new, &form.confirm, &current.user.email)
    {
        return render(status, problem).await;
    }
    let hash = state.passwords.hash(&form.new).await?;
    let ctx = AuditContext::user(current.user.id, ip.0, request_id.as_str());
    crate::identity::users::set_password(
        &state.db,
        current.user.id,
        &hash,
        "user.password_change",
        &ctx,
    )
    .await?;
    let ended =
        super::session::end_other_sign_ins(&state, current.user.id, Some(&current.session.id_hash))
            .await?;
    tracing::info!(event = "password_changed", user_id = %current.user.id, other_sessions_ended = ended, "password changed");
    notices::send(&state, &current.user.email, ip, notices::PASSWORD_CHANGED);
    render(StatusCode::OK, context! { done => true }).await
}

#[derive(Debug, Deserialize)]
struct ForgotForm {
    email: String,
}

#[derive(Deserialize)]
struct ResetForm {
    token: String,
    new: secrecy::SecretString,
    confirm: secrecy::SecretString,
}

async fn forgot_page(
    State(state): State<AppState>,
    nonce: CspNonce,
    csrf: CsrfToken,
) -> Result<Response, Error> {
    let page = state.templates.page(
        "password_forgot.html",
        &nonce,
        context! { title => "Reset your password", csrf_token => csrf.as_str() },
    )?;
    Ok(page.into_response())
}

async fn forgot(
    State(state): State<AppState>,
    nonce: CspNonce,
    csrf: CsrfToken,
    ip: ClientIp,
    request_id: RequestId,
    headers: HeaderMap,
    Form(form): Form<ForgotForm>,
) -> Result<Response, Error> {
    let Ok(email) = Email::parse(&form.email) else {
        let page = state.templates.page(
            "password_forgot.html",
            &nonce,
            context! { title => "Reset your password", csrf_token => csrf.as_str(), error => "Enter a valid email address." },
        )?;
        return Ok(with_status(StatusCode::UNPROCESSABLE_ENTITY, page));
    };
    if let Err(decision) = signin::attempt_allowed(&state, &email).await {
        return Ok(too_many_requests(&decision));
    }
    signin::record_reset_request(
        &state,
        &email,
        &meta(ip, &headers),
        Some(request_id.as_str().to_owned()),
    )
    .await?;
    if signin::within_mail_budget(&state, &email).await {
        crate::identity::password_reset::request(&state, email.clone());
    }
    let page = state.templates.page(
        "password_forgot.html",
        &nonce,
        context! {
            title => "Check your inbox",
            csrf_token => csrf.as_str(),
            sent => true,
            email => email.as_str(),
            hours => state.settings.password_reset_lifetime.as_secs() / 3600,
        },
    )?;
    Ok(page.into_response())
}

async fn render_reset(
    state: &AppState,
    nonce: &CspNonce,
    csrf: &CsrfToken,
    token: &str,
    status: StatusCode,
    extra: minijinja::Value,
) -> Result<Response, Error> {
    let page = state.templates.page(
        "password_reset.html",
        nonce,
        context! { title => "Choose a new password", csrf_token => csrf.as_str(), token => token, ..extra },
    )?;
    let mut response = with_status(status, page);
    let headers = response.headers_mut();
    headers.insert(REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

async fn reset_page(
    State(state): State<AppState>,
    nonce: CspNonce,
    csrf: CsrfToken,
    Query(q): Query<TokenParam>,
) -> Result<Response, Error> {
    render_reset(&state, &nonce, &csrf, &q.token, StatusCode::OK, context! {}).await
}

async fn reset(
    State(state): State<AppState>,
    nonce: CspNonce,
    csrf: CsrfToken,
    ip: ClientIp,
    request_id: RequestId,
    Form(form): Form<ResetForm>,
) -> Result<Response, Error> {
    use crate::identity::password_reset;
    const EXPIRED: &str = "This reset link has expired or was already used. Ask for a new one.";
    let render = |status, extra| render_reset(&state, &nonce, &csrf, &form.token, status, extra);
    let now = state.clock.now();
    let user = match password_reset::peek(&state.db, &form.token, now).await? {
        Some(id) => crate::identity::users::find_by_id(&state.db, id).await?,
        None => None,
    };
    let Some(user) = user else {
        return render(StatusCode::BAD_REQUEST, context! { error => EXPIRED }).await;
    };
    if let Err((status, problem)) =
        check_new_password(&state, &form.new, &form.confirm, &user.email)
    {
        return render(status, problem).await;
    }
    // Checked first, used up only now that the password is acceptable.
    if password_reset::consume(&state.db, &form.token, now).await? != Some(user.id) {
        return render(StatusCode::BAD_REQUEST, context! { error => EXPIRED }).await;
    }
    let hash = state.passwords.hash(&form.new).await?;
    let ctx = AuditContext::user(user.id, ip.0, request_id.as_str());
    crate::identity::users::set_password(&state.db, user.id, &hash, "user.password_reset", &ctx)
        .await?;
    super::session::end_other_sign_ins(&state, user.id, None).await?;
    password_reset::revoke_pending(&state.db, user.id, &user.email, now).await?;
    let keys = throttle::keys(&state.settings.throttle, &user.email, ip.0);
    throttle::clear(&state.db, &keys[0].name).await?;
    tracing::info!(event = "password_reset", user_id = %user.id, "password reset");
    notices::send(&state, &user.email, ip, notices::PASSWORD_CHANGED);
    let mut response = render(StatusCode::OK, context! { done => true }).await?;
    response
        .headers_mut()
        .append(SET_COOKIE, clear_cookie(&state));
    Ok(response)
}

/// The new password twice, against the policy: the status and page context of the first problem.
fn check_new_password(
    state: &AppState,
    new: &secrecy::SecretString,
    confirm: &secrecy::SecretString,
    email: &Email,
) -> Result<(), (StatusCode, minijinja::Value)> {
    use secrecy::ExposeSecret as _;
    if new.expose_secret() != confirm.expose_secret() {
        return Err((
            StatusCode::BAD_REQUEST,
            context! { error => "The two new passwords are not the same." },
        ));
    }
    state
        .settings
        .password_policy
        .check(new.expose_secret(), Some(email))
        .map_err(|errors| {
            (
                StatusCode::UNPROCESSABLE_ENTITY,
                context! { errors => errors },
            )
        })
}

/// The answer while an address or IP must wait: the same for every address, known or not.
pub(super) fn throttled(wait: std::time::Duration) -> Response {
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

async fn audit_session_event(
    state: &AppState,
    current: &CurrentUser,
    ip: ClientIp,
    request_id: &RequestId,
    action: &'static str,
    changes: serde_json::Value,
) -> Result<(), Error> {
    let ctx = AuditContext::user(current.user.id, ip.0, request_id.as_str());
    let mut tx = state.db.begin().await?;
    audit::record(
        &mut tx,
        &ctx,
        AuditEvent {
            action,
            entity_type: "session",
            entity_id: Some(current.session.id_hash[..16].to_owned()),
            changes,
        },
    )
    .await?;
    tx.commit().await
}

async fn logout(
    State(state): State<AppState>,
    current: CurrentUser,
    ip: ClientIp,
    request_id: RequestId,
) -> Result<Response, Error> {
    state
        .sessions
        .revoke(current.user.id, &current.session.id_hash)
        .await?;
    audit_session_event(
        &state,
        &current,
        ip,
        &request_id,
        "auth.sign_out",
        serde_json::json!({}),
    )
    .await?;
    tracing::info!(event = "sign_out", user_id = %current.user.id, "signed out");
    let mut response = Redirect::to("/").into_response();
    response
        .headers_mut()
        .append(SET_COOKIE, clear_cookie(&state));
    Ok(response)
}

async fn account(
    State(state): State<AppState>,
    nonce: CspNonce,
    csrf: CsrfToken,
    current: CurrentUser,
) -> Result<Response, Error> {
    let sessions: Vec<_> = state
        .sessions
        .list(current.user.id)
        .await?
        .into_iter()
        .map(|s| {
            context! {
                id => s.id_hash,
                current => s.id_hash == current.session.id_hash,
                device => s.user_agent.unwrap_or_else(|| "Unknown device".into()),
                ip => s.client_ip.unwrap_or_default(),
                created => timestamp_text(s.created_at)[..16].replace('T', " "),
                last_seen => timestamp_text(s.last_seen_at)[..16].replace('T', " "),
            }
        })
        .collect();
    let page = state.templates.page(
        "account.html",
        &nonce,
        context! {
            title => "Your account",
            csrf_token => csrf.as_str(),
            user => context! {
                email => current.user.email.as_str(),
                role => current.user.role.as_str(),
                name => current.user.display_name.as_str(),
                mfa => current.user.mfa_enabled,
            },
            sessions => sessions,
        },
    )?;
    Ok(page.into_response())
}

async fn revoke_session(
    State(state): State<AppState>,
    current: CurrentUser,
    ip: ClientIp,
    request_id: RequestId,
    Form(form): Form<SessionForm>,
) -> Result<Response, Error> {
    if state.sessions.revoke(current.user.id, &form.id).await? {
        let short: String = form.id.chars().take(16).collect();
        audit_session_event(
            &state,
            &current,
            ip,
            &request_id,
            "session.revoke",
            serde_json::json!({ "revoked": short }),
        )
        .await?;
    }
    if form.id == current.session.id_hash {
        let mut response = Redirect::to("/").into_response();
        response
            .headers_mut()
            .append(SET_COOKIE, clear_cookie(&state));
        return Ok(response);
    }
    Ok(Redirect::to("/account").into_response())
}

async fn revoke_other_sessions(
    State(state): State<AppState>,
    current: CurrentUser,
    ip: ClientIp,
    request_id: RequestId,
) -> Result<Response, Error> {
    let ended =
        super::session::end_other_sign_ins(&state, current.user.id, Some(&current.session.id_hash))
            .await?;
    audit_session_event(
        &state,
        &current,
        ip,
        &request_id,
        "session.revoke_others",
        serde_json::json!({ "revoked": ended }),
    )
    .await?;
    Ok(Redirect::to("/account").into_response())
}
