//! The account pages: the user's sessions (each revocable, or all others at once), their
//! passkeys (added and removed through `web::passkeys`), the accounts at OpenID providers linked
//! to theirs (link, unlink) and their password. Changes go through the identity services (recent sign-in, audit, revocations,
//! notice); these handlers render the outcome. Ending another session with a sign-in older
//! than ten minutes shows the account page again, `403`, asking to sign in again.

use axum::extract::{Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use gatehouse_security::{CspNonce, CsrfToken};
use http::StatusCode;
use http::header::SET_COOKIE;
use minijinja::context;
use serde::Deserialize;

use super::auth::with_status;
use super::session::{CurrentUser, clear_cookie};
use crate::error::Error;
use crate::identity::accounts::{PasswordChange, SessionsEnded};
use crate::identity::oidc::identities::Unlinked;
use crate::identity::signin::Origin;
use crate::state::AppState;
use crate::store::timestamp_text;

/// The account routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/account", get(account))
        .route(
            "/account/password",
            get(password_page).post(change_password),
        )
        .route("/account/sessions/revoke", post(revoke_session))
        .route("/account/identities/link", post(link_identity))
        .route("/account/identities/unlink", post(unlink_identity))
        .route(
            "/account/sessions/revoke-others",
            post(revoke_other_sessions),
        )
}

#[derive(Debug, Deserialize)]
struct AccountQuery {
    /// `common-password`: the user just signed in with a password on the common list.
    notice: Option<String>,
}

#[derive(Debug, Deserialize)]
struct SessionForm {
    id: String,
}

#[derive(Debug, Deserialize)]
struct LinkForm {
    provider: String,
}

#[derive(Debug, Deserialize)]
struct UnlinkForm {
    id: String,
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
    let has_password = state.identity.has_password(current.user.id).await?;
    let stale = !state.identity.recently_signed_in(&current.session);
    let page = state.templates.page(
        "account_password.html",
        nonce,
        context! {
            title => "Your password",
            csrf_token => csrf.as_str(),
            user => context! { email => current.user.email.as_str() },
            has_password => has_password,
            stale => stale,
            rules => super::password_rules(state),
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

/// The status and page context of a password change's outcome.
pub(super) fn password_change_page(change: &PasswordChange) -> (StatusCode, minijinja::Value) {
    match change {
        PasswordChange::Changed => (StatusCode::OK, context! { done => true }),
        PasswordChange::NotRecent => (StatusCode::FORBIDDEN, context! {}),
        PasswordChange::WrongCurrent => (
            StatusCode::BAD_REQUEST,
            context! { error => "The current password is not right." },
        ),
        PasswordChange::LinkExpired => (
            StatusCode::BAD_REQUEST,
            context! { error => "This reset link has expired or was already used. Ask for a new one." },
        ),
        PasswordChange::Mismatch => (
            StatusCode::BAD_REQUEST,
            context! { error => "The two new passwords are not the same." },
        ),
        PasswordChange::Weak(errors) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            context! { errors => errors },
        ),
    }
}

async fn change_password(
    State(state): State<AppState>,
    nonce: CspNonce,
    csrf: CsrfToken,
    current: CurrentUser,
    origin: Origin,
    Form(form): Form<PasswordChangeForm>,
) -> Result<Response, Error> {
    let change = state
        .identity
        .change_password(
            &current.user,
            &current.session,
            form.current.as_ref(),
            &form.new,
            &form.confirm,
            &origin,
        )
        .await?;
    let (status, extra) = password_change_page(&change);
    render_password_page(&state, &nonce, &csrf, &current, status, extra).await
}

async fn account(
    State(state): State<AppState>,
    nonce: CspNonce,
    csrf: CsrfToken,
    current: CurrentUser,
    Query(q): Query<AccountQuery>,
) -> Result<Response, Error> {
    let notice = match q.notice.as_deref() {
        Some("common-password") => Notice::CommonPassword,
        Some("linked") => Notice::Message("The account was linked: you can sign in with it now."),
        Some("unlinked") => Notice::Message("The account was unlinked."),
        Some("passkey-removed") => Notice::Message("The passkey was removed."),
        _ => Notice::None,
    };
    render_account(&state, &nonce, &csrf, &current, StatusCode::OK, notice).await
}

/// What the account page says above its content.
#[derive(Clone, Copy, Debug)]
enum Notice {
    None,
    /// The user just signed in with a password on the common list.
    CommonPassword,
    /// A status message.
    Message(&'static str),
    /// An error message (the page's status says which).
    Error(&'static str),
}

/// Renders the account page with `status`: the sessions, whether ending others needs a new
/// sign-in first, the linked identities and the providers to link, and `notice`.
async fn render_account(
    state: &AppState,
    nonce: &CspNonce,
    csrf: &CsrfToken,
    current: &CurrentUser,
    status: StatusCode,
    notice: Notice,
) -> Result<Response, Error> {
    let providers = state.identity.oidc_providers();
    let label = |name: &str| {
        providers
            .iter()
            .find(|(n, _)| n == name)
            .map_or_else(|| name.to_owned(), |(_, l)| l.clone())
    };
    let identities: Vec<_> = state
        .identity
        .oidc_identities(current.user.id)
        .await?
        .into_iter()
        .map(|i| {
            context! {
                id => i.id.to_string(),
                provider => label(&i.provider),
                email => i.email.unwrap_or_default(),
                linked => timestamp_text(i.created_at)[..16].replace('T', " "),
                last_used => i.last_used_at.map(|t| timestamp_text(t)[..16].replace('T', " ")),
            }
        })
        .collect();
    let providers: Vec<_> = providers
        .iter()
        .map(|(name, label)| context! { name => name, label => label })
        .collect();
    let passkeys: Vec<_> = state
        .identity
        .passkeys(current.user.id)
        .await?
        .into_iter()
        .map(|p| {
            context! {
                id => p.id.to_string(),
                name => p.name,
                created => timestamp_text(p.created_at)[..16].replace('T', " "),
                last_used => p.last_used_at.map(|t| timestamp_text(t)[..16].replace('T', " ")),
            }
        })
        .collect();
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
        nonce,
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
            identities => identities,
            providers => providers,
            common_password => matches!(notice, Notice::CommonPassword),
            message => match notice { Notice::Message(m) => Some(m), _ => None },
            error => match notice { Notice::Error(m) => Some(m), _ => None },
            stale => !state.identity.recently_signed_in(&current.session),
            passkeys => passkeys,
            passkeys_available => state.identity.passkeys_available(),
        },
    )?;
    Ok(with_status(status, page))
}

/// The account page again, `403`: ending another session needs a recent sign-in, and the page
/// offers it.
pub(super) async fn sign_in_again(
    state: &AppState,
    nonce: &CspNonce,
    csrf: &CsrfToken,
    current: &CurrentUser,
) -> Result<Response, Error> {
    render_account(
        state,
        nonce,
        csrf,
        current,
        StatusCode::FORBIDDEN,
        Notice::None,
    )
    .await
}

async fn revoke_session(
    State(state): State<AppState>,
    nonce: CspNonce,
    csrf: CsrfToken,
    current: CurrentUser,
    origin: Origin,
    Form(form): Form<SessionForm>,
) -> Result<Response, Error> {
    let ended = state
        .identity
        .revoke_session(current.user.id, &current.session, &form.id, &origin)
        .await?;
    if ended == SessionsEnded::NotRecent {
        return sign_in_again(&state, &nonce, &csrf, &current).await;
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
    nonce: CspNonce,
    csrf: CsrfToken,
    current: CurrentUser,
    origin: Origin,
) -> Result<Response, Error> {
    let ended = state
        .identity
        .revoke_other_sessions(current.user.id, &current.session, &origin)
        .await?;
    if ended == SessionsEnded::NotRecent {
        return sign_in_again(&state, &nonce, &csrf, &current).await;
    }
    Ok(Redirect::to("/account").into_response())
}

/// `POST /account/identities/link`: starts linking an account at `provider` to this user (a
/// recent sign-in needed), through the provider.
async fn link_identity(
    State(state): State<AppState>,
    nonce: CspNonce,
    csrf: CsrfToken,
    current: CurrentUser,
    headers: http::HeaderMap,
    Form(form): Form<LinkForm>,
) -> Result<Response, Error> {
    let started = state
        .identity
        .start_oidc(
            &form.provider,
            None,
            Some((&current.user, &current.session)),
            super::session::oidc_flow_key(&state, &headers),
        )
        .await?;
    let label = super::oidc::label_of(&state, &form.provider);
    let mut refusal = None;
    let response = super::oidc::render_started(&state, &nonce, started, &label, |status, _| {
        refusal = Some(status);
        Ok(Response::default())
    })?;
    let Some(status) = refusal else {
        return Ok(response);
    };
    // A stale sign-in: the page's own question (sign in again); anything else: say so.
    let notice = if status == StatusCode::FORBIDDEN {
        Notice::None
    } else {
        Notice::Error("That provider cannot be used right now. Try again later.")
    };
    render_account(&state, &nonce, &csrf, &current, status, notice).await
}

/// `POST /account/identities/unlink`: unlinks one of the user's identities (a recent sign-in
/// needed; never the last way in).
async fn unlink_identity(
    State(state): State<AppState>,
    nonce: CspNonce,
    csrf: CsrfToken,
    current: CurrentUser,
    origin: Origin,
    Form(form): Form<UnlinkForm>,
) -> Result<Response, Error> {
    let Ok(id) = uuid::Uuid::parse_str(&form.id) else {
        return Err(Error::NotFound);
    };
    let (status, notice) = match state
        .identity
        .unlink_oidc(&current.user, &current.session, id, &origin)
        .await?
    {
        Unlinked::Done => return Ok(Redirect::to("/account?notice=unlinked").into_response()),
        Unlinked::NotRecent => (StatusCode::FORBIDDEN, Notice::None),
        Unlinked::LastWayIn => (
            StatusCode::CONFLICT,
            Notice::Error(
                "This is your last way to sign in besides email links: set a password or link another account first.",
            ),
        ),
        Unlinked::NotFound => return Err(Error::NotFound),
    };
    render_account(&state, &nonce, &csrf, &current, status, notice).await
}
