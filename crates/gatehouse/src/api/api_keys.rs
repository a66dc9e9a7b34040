//! A user's API keys (seed 002): `/api/v1/api-keys` with an access token, and the
//! `/account/api-keys` page for a signed-in browser (CSRF-protected forms).
//!
//! # Security
//! - Only an access token manages keys (a key cannot make or list keys), and making one needs an
//!   API sign-in (password grant, with MFA where enrolled) from the last ten minutes, like the
//!   other sensitive actions; the owner is mailed a notice.
//! - The key is in the response to its creation only (`no-store`); listings show its prefix.
//! - A user sees and revokes only their own keys; another user's key is `404`.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use gatehouse_security::{ClientIp, RequestId};
use http::{HeaderMap, StatusCode};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::auth::{ApiUser, json_no_store as no_store, json_object};
use crate::access::{self, Action};
use crate::audit::AuditContext;
use crate::error::Error;
use crate::error::FieldError;
use crate::identity::api_keys;
use crate::state::AppState;

/// The API-key routes, with their OpenAPI descriptions.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(revoke))
}

/// The body of `POST /api/v1/api-keys`.
#[derive(serde::Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // Describes the body `create` reads.
struct NewApiKey {
    #[schema(schema_with = super::schema::key_name)]
    name: String,
    /// What the key may do: one or more scopes.
    #[schema(min_items = 1)]
    scopes: Vec<Scope>,
    /// Days until the key stops working, 1–365 (default 365).
    #[schema(minimum = 1, maximum = 365, nullable = false)]
    expires_in_days: Option<i64>,
}

/// A scope an API key may carry (`api_keys::SCOPES`).
#[derive(serde::Deserialize, ToSchema)]
#[allow(dead_code)] // Describes the strings `api_keys::validate` accepts.
enum Scope {
    #[serde(rename = "items:read")]
    ItemsRead,
    #[serde(rename = "items:write")]
    ItemsWrite,
}

/// The caller's keys.
#[derive(Serialize, ToSchema)]
struct ApiKeyList {
    api_keys: Vec<api_keys::ApiKey>,
}

/// A new key: the only answer that holds the key itself.
#[derive(Serialize, ToSchema)]
struct CreatedApiKey {
    /// The key (`gk_…`): store it now, it is never shown again.
    key: String,
    api_key: api_keys::ApiKey,
}

/// The path of one key.
#[derive(serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)] // Describes the `Path` parameter `revoke` reads as text.
struct KeyId {
    /// The key's id.
    id: Uuid,
}

fn allowed(api: &ApiUser) -> Result<(), Error> {
    api.require_token(Action::ApiKeysOwn)?;
    access::require(&api.user, Action::ApiKeysOwn).map(drop)
}

/// List the caller's API keys (never the keys themselves).
#[utoipa::path(
    get,
    path = "/api/v1/api-keys",
    operation_id = "list_api_keys",
    tag = "api-keys",
    responses((status = 200, description = "The caller's keys", body = ApiKeyList)),
    security(("bearer" = []))
)]
async fn list(State(state): State<AppState>, api: ApiUser) -> Result<Response, Error> {
    allowed(&api)?;
    let keys = api_keys::list(&state.db, api.user.id).await?;
    Ok(no_store(StatusCode::OK, ApiKeyList { api_keys: keys }))
}

/// Make an API key. Needs an access token from a password grant of the last ten minutes.
#[utoipa::path(
    post,
    path = "/api/v1/api-keys",
    operation_id = "create_api_key",
    tag = "api-keys",
    request_body = NewApiKey,
    responses(
        (status = 201, description = "The new key, shown this once", body = CreatedApiKey),
        (status = 403, description = "An API key cannot make keys, or the sign-in is older than ten minutes", body = super::schema::Problem, content_type = "application/problem+json"),
        (status = 409, description = "The caller already has the most keys allowed (50)", body = super::schema::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
async fn create(
    State(state): State<AppState>,
    api: ApiUser,
    origin: crate::identity::signin::Origin,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Error> {
    allowed(&api)?;
    if !state.identity.api_sign_in_recent(api.family).await? {
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
            // JSON has one number type: `30.0` is the whole number 30.
            "expires_in_days" => match value.as_i64().or_else(|| {
                value
                    .as_f64()
                    .filter(|f| f.fract() == 0.0 && f.abs() <= 1e15)
                    .map(|f| f as i64)
            }) {
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
    let (key, described) = state
        .identity
        .create_api_key(
            &api.user,
            name.as_deref().unwrap_or_default(),
            &scopes.unwrap_or_default(),
            days,
            &origin,
        )
        .await?;
    Ok(no_store(
        StatusCode::CREATED,
        CreatedApiKey {
            key,
            api_key: described,
        },
    ))
}

/// Revoke one of the caller's API keys.
#[utoipa::path(
    delete,
    path = "/api/v1/api-keys/{id}",
    operation_id = "revoke_api_key",
    tag = "api-keys",
    params(KeyId),
    responses(
        (status = 204, description = "Revoked"),
        (status = 404, description = "No such key of the caller's", body = super::schema::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
async fn revoke(
    State(state): State<AppState>,
    api: ApiUser,
    ip: ClientIp,
    request_id: RequestId,
    Path(id): Path<String>,
) -> Result<Response, Error> {
    allowed(&api)?;
    let id = Uuid::parse_str(&id).map_err(|_| Error::NotFound)?;
    let ctx = AuditContext::user(api.user.id, ip.0, request_id.as_str());
    if !api_keys::revoke(&state.db, api.user.id, id, state.clock.now(), &ctx).await? {
        return Err(Error::NotFound);
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

// ---- the account page ---------------------------------------------------------------------------
