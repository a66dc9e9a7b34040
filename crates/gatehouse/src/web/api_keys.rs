//! The `/account/api-keys` page: make (shown once, after a recent sign-in), list and revoke
//! the user's API keys in the browser, through the same identity services as the API.

use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use gatehouse_security::{ClientIp, RequestId};
use http::StatusCode;

use crate::access::{self, Action};
use crate::audit::AuditContext;
use crate::error::Error;
use crate::identity::api_keys;
use crate::state::AppState;
use uuid::Uuid;

/// The page routes (under the CSRF layer).
pub fn pages() -> Router<AppState> {
    Router::new()
        .route("/account/api-keys", get(keys_page).post(create_from_page))
        .route(
            "/account/api-keys/revoke",
            axum::routing::post(revoke_from_page),
        )
}

#[derive(Debug, serde::Deserialize)]
struct NewKeyForm {
    name: String,
    scope_read: Option<String>,
    scope_write: Option<String>,
    days: String,
}

#[derive(Debug, serde::Deserialize)]
struct RevokeForm {
    id: String,
}

async fn render_keys(
    state: &AppState,
    nonce: &gatehouse_security::CspNonce,
    csrf: &gatehouse_security::CsrfToken,
    current: &super::session::CurrentUser,
    status: StatusCode,
    extra: minijinja::Value,
) -> Result<Response, Error> {
    let short = |t: Option<time::OffsetDateTime>| {
        t.map(|t| crate::store::timestamp_text(t)[..16].replace('T', " "))
            .unwrap_or_else(|| "never".into())
    };
    let keys: Vec<_> = api_keys::list(&state.db, current.user.id)
        .await?
        .into_iter()
        .map(|k| {
            minijinja::context! {
                id => k.id.to_string(),
                name => k.name,
                prefix => k.prefix,
                scopes => k.scopes.join(", "),
                expires => short(k.expires_at),
                last_used => short(k.last_used_at),
            }
        })
        .collect();
    let page = state.templates.page(
        "account_api_keys.html",
        nonce,
        minijinja::context! {
            title => "API keys",
            csrf_token => csrf.as_str(),
            user => minijinja::context! { email => current.user.email.as_str() },
            keys => keys,
            stale => !state.identity.recently_signed_in(&current.session),
            ..extra
        },
    )?;
    Ok((status, page).into_response())
}

async fn keys_page(
    State(state): State<AppState>,
    nonce: gatehouse_security::CspNonce,
    csrf: gatehouse_security::CsrfToken,
    current: super::session::CurrentUser,
) -> Result<Response, Error> {
    render_keys(
        &state,
        &nonce,
        &csrf,
        &current,
        StatusCode::OK,
        minijinja::context! {},
    )
    .await
}

async fn create_from_page(
    State(state): State<AppState>,
    nonce: gatehouse_security::CspNonce,
    csrf: gatehouse_security::CsrfToken,
    current: super::session::CurrentUser,
    origin: crate::identity::signin::Origin,
    axum::Form(form): axum::Form<NewKeyForm>,
) -> Result<Response, Error> {
    let render = |status, extra| render_keys(&state, &nonce, &csrf, &current, status, extra);
    if !state.identity.recently_signed_in(&current.session) {
        return render(StatusCode::FORBIDDEN, minijinja::context! {}).await;
    }
    access::require(&current.user, Action::ApiKeysOwn)?;
    let mut scopes = Vec::new();
    if form.scope_read.is_some() {
        scopes.push("items:read".to_owned());
    }
    if form.scope_write.is_some() {
        scopes.push("items:write".to_owned());
    }
    let days = form.days.trim().parse::<i64>().unwrap_or(0);
    match state
        .identity
        .create_api_key(&current.user, &form.name, &scopes, Some(days), &origin)
        .await
    {
        Ok((key, described)) => {
            render(
                StatusCode::CREATED,
                minijinja::context! { new_key => key, new_name => described.name },
            )
            .await
        }
        Err(Error::InvalidFields(errors)) => {
            render(
                StatusCode::UNPROCESSABLE_ENTITY,
                minijinja::context! { errors => errors },
            )
            .await
        }
        Err(Error::Conflict(message)) => {
            render(
                StatusCode::CONFLICT,
                minijinja::context! { error => message },
            )
            .await
        }
        Err(e) => Err(e),
    }
}

async fn revoke_from_page(
    State(state): State<AppState>,
    current: super::session::CurrentUser,
    ip: ClientIp,
    request_id: RequestId,
    axum::Form(form): axum::Form<RevokeForm>,
) -> Result<Response, Error> {
    let id = Uuid::parse_str(&form.id).map_err(|_| Error::NotFound)?;
    let ctx = AuditContext::user(current.user.id, ip.0, request_id.as_str());
    api_keys::revoke(&state.db, current.user.id, id, state.clock.now(), &ctx).await?;
    Ok(axum::response::Redirect::to("/account/api-keys").into_response())
}
