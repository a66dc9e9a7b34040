//! `/api/v1/api-keys`: a signed-in user's API keys (seed 002), managed with an access token.
//!
//! # Security
//! - Only an access token manages keys (a key cannot make or list keys), and making one needs an
//!   API sign-in (password grant, with MFA where enrolled) from the last ten minutes, like the
//!   other sensitive actions; the owner is mailed a notice.
//! - The key is in the response to its creation only (`no-store`); listings show its prefix.
//! - A user sees and revokes only their own keys; another user's key is `404`.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use gatehouse_security::{ClientIp, RequestId};
use http::{HeaderMap, StatusCode};
use uuid::Uuid;

use super::api::{ApiUser, json_no_store as no_store, json_object};
use crate::Error;
use crate::access::{self, Action};
use crate::app::AppState;
use crate::audit::{Actor, AuditContext};
use crate::error::FieldError;
use crate::identity::{api_keys, tokens};

/// The API-key routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/api-keys", get(list).post(create))
        .route("/api/v1/api-keys/{id}", delete(revoke))
}

fn allowed(api: &ApiUser) -> Result<(), Error> {
    api.require_token()?;
    access::scope(api.user.role, Action::ApiKeysOwn)
        .map(drop)
        .ok_or_else(|| Error::Forbidden("Your role does not allow API keys.".into()))
}

async fn list(State(state): State<AppState>, api: ApiUser) -> Result<Response, Error> {
    allowed(&api)?;
    let keys = api_keys::list(&state.db, api.user.id).await?;
    Ok(no_store(
        StatusCode::OK,
        serde_json::json!({ "api_keys": keys }),
    ))
}

async fn create(
    State(state): State<AppState>,
    api: ApiUser,
    ip: ClientIp,
    request_id: RequestId,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Error> {
    allowed(&api)?;
    let now = state.clock.now();
    let signed_in_at = tokens::family_created_at(&state.db, api.family).await?;
    if signed_in_at.is_none_or(|at| now - at > super::session::RECENT_SIGN_IN) {
        return Err(Error::Forbidden(
            "Making an API key needs a sign-in from the last ten minutes: get a new token with the password grant."
                .into(),
        ));
    }
    let map = json_object(&headers, &body)?;
    let mut errors = Vec::new();
    let (mut name, mut scopes, mut days) = (None, None, None);
    for (key, value) in &map {
        match key.as_str() {
            "name" => match value.as_str() {
                Some(n) => name = Some(n.to_owned()),
                None => errors.push(FieldError::new("name", "must be a string")),
            },
            "scopes" => match value.as_array().and_then(|a| {
                a.iter()
                    .map(|s| s.as_str().map(str::to_owned))
                    .collect::<Option<Vec<_>>>()
            }) {
                Some(s) => scopes = Some(s),
                None => errors.push(FieldError::new("scopes", "must be a list of strings")),
            },
            "expires_in_days" => match value.as_i64() {
                Some(d) => days = Some(d),
                None => errors.push(FieldError::new("expires_in_days", "must be a whole number")),
            },
            other => errors.push(FieldError::new(other, "is not a field of an API key")),
        }
    }
    if name.is_none() && !errors.iter().any(|e| e.field == "name") {
        errors.push(FieldError::new("name", "is required"));
    }
    if !errors.is_empty() {
        return Err(Error::InvalidFields(errors));
    }
    let ctx = AuditContext {
        actor: Actor::User(api.user.id),
        client_ip: Some(ip.0),
        request_id: Some(request_id.as_str().to_owned()),
    };
    let (key, described) = api_keys::create(
        &state.db,
        api.user.id,
        name.as_deref().unwrap_or_default(),
        &scopes.unwrap_or_default(),
        days,
        now,
        &ctx,
    )
    .await?;
    tracing::info!(event = "api_key_created", user_id = %api.user.id, key_id = %described.id, "API key created");
    super::notices::send(&state, &api.user.email, ip, super::notices::API_KEY_CREATED);
    Ok(no_store(
        StatusCode::CREATED,
        serde_json::json!({ "key": key, "api_key": described }),
    ))
}

async fn revoke(
    State(state): State<AppState>,
    api: ApiUser,
    ip: ClientIp,
    request_id: RequestId,
    Path(id): Path<String>,
) -> Result<Response, Error> {
    allowed(&api)?;
    let id = Uuid::parse_str(&id).map_err(|_| Error::NotFound)?;
    let ctx = AuditContext {
        actor: Actor::User(api.user.id),
        client_ip: Some(ip.0),
        request_id: Some(request_id.as_str().to_owned()),
    };
    if !api_keys::revoke(&state.db, api.user.id, id, state.clock.now(), &ctx).await? {
        return Err(Error::NotFound);
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}
