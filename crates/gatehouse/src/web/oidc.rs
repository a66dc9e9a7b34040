//! Sign-in with an OpenID Connect provider: `POST /auth/oidc/{provider}/start` (the sign-in
//! page's button) sends the browser to the provider; `GET /auth/oidc/{provider}/callback` is
//! where it comes back. Each calls one identity service and renders its outcome; linking an
//! identity from the account page starts the same flow (`web::account`).
//!
//! # Security
//! - The start is a `POST` with the CSRF token: another site cannot start a sign-in (or a link)
//!   in the user's browser. Its answer is a page that moves on to the provider (see
//!   `render_started` for why not a redirect).
//! - The flow cookie binds the flow to this browser (`identity::oidc::flow`); the callback
//!   clears it. Callback pages are `no-store` with `Referrer-Policy: same-origin`: the code and
//!   state in their URL go nowhere else.
//! - Every refusal is a page that says what happened and what to do, with a 4xx status (502
//!   when the provider cannot be reached), never a 500.

use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use gatehouse_security::{CspNonce, CsrfToken};
use http::header::SET_COOKIE;
use http::{HeaderMap, StatusCode};
use minijinja::context;
use serde::Deserialize;

use super::auth::{login_page_with, render_sign_in, with_status};
use super::session::{CurrentUser, clear_oidc_flow_cookie, oidc_flow_key, set_oidc_flow_cookie};
use crate::error::Error;
use crate::identity::oidc::flow::{Callback, Refusal, Started};
use crate::identity::signin::{OidcOutcome, Origin};
use crate::state::AppState;

/// The OpenID Connect routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/auth/oidc/{provider}/start", post(start))
        .route("/auth/oidc/{provider}/callback", get(callback))
}

#[derive(Debug, Deserialize)]
struct StartForm {
    next: Option<String>,
}

/// What the page says for a refusal, and its status.
pub(super) fn refusal_page(refusal: Refusal, label: &str) -> (StatusCode, String) {
    match refusal {
        Refusal::UnknownProvider => (
            StatusCode::NOT_FOUND,
            "There is no such way to sign in.".to_owned(),
        ),
        Refusal::Cancelled => (
            StatusCode::FORBIDDEN,
            format!("Signing in with {label} was cancelled. Choose another way to sign in."),
        ),
        Refusal::Expired => (
            StatusCode::BAD_REQUEST,
            format!(
                "This sign-in with {label} has expired, was already used, or was started in another browser. Start again."
            ),
        ),
        Refusal::Failed => (
            StatusCode::BAD_REQUEST,
            format!("{label} did not confirm who you are. Try again, or sign in another way."),
        ),
        Refusal::Unavailable => (
            StatusCode::BAD_GATEWAY,
            format!(
                "{label} cannot be reached right now. Try again later, or sign in another way."
            ),
        ),
        Refusal::NoAccount => (
            StatusCode::FORBIDDEN,
            format!(
                "No account here is linked to this {label} account. Sign in with an email link first, then link {label} from your account page."
            ),
        ),
        Refusal::LinkedElsewhere => (
            StatusCode::CONFLICT,
            format!("This {label} account is already linked to another account here."),
        ),
    }
}

/// The label of `provider`, or the name as given when there is no such provider.
pub(super) fn label_of(state: &AppState, provider: &str) -> String {
    state
        .identity
        .oidc_providers()
        .into_iter()
        .find(|(name, _)| name == provider)
        .map_or_else(|| "that provider".to_owned(), |(_, label)| label)
}

/// The sign-in page with `message`, `status`.
fn sign_in_refused(
    state: &AppState,
    nonce: &CspNonce,
    csrf: &CsrfToken,
    status: StatusCode,
    message: &str,
) -> Result<Response, Error> {
    let page = login_page_with(
        state,
        nonce,
        context! { title => "Sign in", csrf_token => csrf.as_str(), error => message },
    )?;
    Ok(with_status(status, page))
}

/// The answer to a start: a page that sends the browser on to the provider (with the flow
/// cookie), or a page saying why not.
///
/// Not a redirect: the start is a form's `POST`, and the pages' CSP (`form-action 'self'`)
/// makes browsers refuse a form submission that a redirect carries to another origin. The page
/// moves on by a `<meta http-equiv="refresh">` (no script, which the CSP would hold to its
/// nonce anyway), with a link for a browser that does not follow it.
pub(super) fn render_started(
    state: &AppState,
    nonce: &CspNonce,
    started: Started,
    label: &str,
    refused: impl FnOnce(StatusCode, &str) -> Result<Response, Error>,
) -> Result<Response, Error> {
    match started {
        Started::Redirect { to, key } => {
            let page = state.templates.page(
                "oidc_continue.html",
                nonce,
                context! { title => format!("Continuing to {label}"), to => to, label => label },
            )?;
            let mut response = page.into_response();
            response
                .headers_mut()
                .append(SET_COOKIE, set_oidc_flow_cookie(state, &key));
            super::token_page(&mut response);
            Ok(response)
        }
        Started::UnknownProvider => {
            let (status, message) = refusal_page(Refusal::UnknownProvider, label);
            refused(status, &message)
        }
        Started::Unavailable => {
            let (status, message) = refusal_page(Refusal::Unavailable, label);
            refused(status, &message)
        }
        Started::NotRecent => refused(
            StatusCode::FORBIDDEN,
            "For your safety, sign in again before linking another way to sign in: your last sign-in was more than ten minutes ago.",
        ),
    }
}

async fn start(
    State(state): State<AppState>,
    nonce: CspNonce,
    csrf: CsrfToken,
    Path(provider): Path<String>,
    headers: HeaderMap,
    Form(form): Form<StartForm>,
) -> Result<Response, Error> {
    let started = state
        .identity
        .start_oidc(
            &provider,
            form.next.as_deref(),
            None,
            oidc_flow_key(&state, &headers),
        )
        .await?;
    let label = label_of(&state, &provider);
    render_started(&state, &nonce, started, &label, |status, message| {
        sign_in_refused(&state, &nonce, &csrf, status, message)
    })
}

#[expect(
    clippy::too_many_arguments,
    reason = "axum extractors: the page's nonce and token, who, where from, and the provider's answer"
)]
async fn callback(
    State(state): State<AppState>,
    nonce: CspNonce,
    csrf: CsrfToken,
    origin: Origin,
    current: Option<CurrentUser>,
    Path(provider): Path<String>,
    headers: HeaderMap,
    Query(callback): Query<Callback>,
) -> Result<Response, Error> {
    let key = oidc_flow_key(&state, &headers);
    let signed_in = current.as_ref().map(|c| &c.user);
    let outcome = state
        .identity
        .sign_in_with_oidc(&provider, &callback, key.as_ref(), signed_in, &origin)
        .await?;
    let label = label_of(&state, &provider);
    let mut response = match outcome {
        OidcOutcome::SignIn(outcome) => render_sign_in(&state, outcome, || {
            let (status, message) = refusal_page(Refusal::NoAccount, &label);
            sign_in_refused(&state, &nonce, &csrf, status, &message)
        })?,
        OidcOutcome::Linked => Redirect::to("/account?notice=linked").into_response(),
        OidcOutcome::Refused(refusal) => {
            let (status, message) = refusal_page(refusal, &label);
            sign_in_refused(&state, &nonce, &csrf, status, &message)?
        }
    };
    response
        .headers_mut()
        .append(SET_COOKIE, clear_oidc_flow_cookie(&state));
    super::token_page(&mut response);
    Ok(response)
}
