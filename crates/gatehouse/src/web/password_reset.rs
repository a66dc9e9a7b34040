//! Password reset by mail: asking for a link (the same page for every address) and choosing a
//! new password with it.
//!
//! # Security
//! The reset page sends `Referrer-Policy: same-origin` and `no-store`: its URL holds the token.

use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Form, Router};
use gatehouse_security::rate_limit::too_many_requests;
use gatehouse_security::{CspNonce, CsrfToken};
use http::StatusCode;
use http::header::SET_COOKIE;
use minijinja::context;
use serde::Deserialize;

use super::account::password_change_page;
use super::auth::{TokenParam, with_status};
use super::session::clear_cookie;
use crate::error::Error;
use crate::identity::accounts::PasswordChange;
use crate::identity::signin::{LinkRequest, Origin};
use crate::state::AppState;

/// The reset routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/password/forgot", get(forgot_page).post(forgot))
        .route("/password/reset", get(reset_page).post(reset))
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
    origin: Origin,
    Form(form): Form<ForgotForm>,
) -> Result<Response, Error> {
    match state.identity.request_reset(&form.email, &origin).await? {
        Err(_) => {
            let page = state.templates.page(
                "password_forgot.html",
                &nonce,
                context! { title => "Reset your password", csrf_token => csrf.as_str(), error => "Enter a valid email address." },
            )?;
            Ok(with_status(StatusCode::UNPROCESSABLE_ENTITY, page))
        }
        Ok(LinkRequest::RateLimited(decision)) => Ok(too_many_requests(&decision)),
        Ok(LinkRequest::Accepted) => {
            let page = state.templates.page(
                "password_forgot.html",
                &nonce,
                context! {
                    title => "Check your inbox",
                    csrf_token => csrf.as_str(),
                    sent => true,
                    email => form.email.trim().to_lowercase(),
                    valid_for => state.identity.reset_link_valid_for(),
                },
            )?;
            Ok(page.into_response())
        }
    }
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
        context! {
            title => "Choose a new password",
            csrf_token => csrf.as_str(),
            token => token,
            rules => super::password_rules(state),
            ..extra
        },
    )?;
    let mut response = with_status(status, page);
    super::token_page(&mut response);
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
    origin: Origin,
    Form(form): Form<ResetForm>,
) -> Result<Response, Error> {
    let change = state
        .identity
        .reset_password(&form.token, &form.new, &form.confirm, &origin)
        .await?;
    let (status, extra) = password_change_page(&change);
    let mut response = render_reset(&state, &nonce, &csrf, &form.token, status, extra).await?;
    if change == PasswordChange::Changed {
        response
            .headers_mut()
            .append(SET_COOKIE, clear_cookie(&state));
    }
    Ok(response)
}
