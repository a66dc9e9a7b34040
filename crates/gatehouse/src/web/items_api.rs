//! `/api/v1/items`: seed 001's items API over [`crate::items`], for bearer-token callers.
//!
//! - Bodies must be `application/json` (else `415`), well-formed (else `400`), and name only
//!   known fields of the right type (else `422` with one entry per field).
//! - Writes answer with the item's `ETag`; `If-Match` with a stale one gets `412` and changes
//!   nothing. `POST` answers `201` with `Location`.
//! - Lists are newest first, `limit` at most 100 (default 20), with an opaque `next_cursor`.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use gatehouse_security::{ClientIp, RequestId};
use http::header::{ETAG, IF_MATCH, LOCATION};
use http::{HeaderMap, HeaderValue, StatusCode};
use serde::Deserialize;
use uuid::Uuid;

use super::api::{ApiUser, json_no_store};
use crate::Error;
use crate::app::AppState;
use crate::audit::AuditContext;
use crate::error::FieldError;
use crate::items::{self, Changes, Item};

/// The items routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/items", get(list).post(create))
        .route(
            "/api/v1/items/{id}",
            get(read).put(replace).patch(patch).delete(remove),
        )
}

/// The fields of an item body, checked by hand so every problem is reported by field name.
fn item_fields(headers: &HeaderMap, body: &Bytes, partial: bool) -> Result<Changes, Error> {
    let map = super::api::json_object(headers, body)?;
    let mut errors = Vec::new();
    let mut changes = Changes::default();
    for (key, value) in &map {
        let slot = match key.as_str() {
            "name" => &mut changes.name,
            "description" => &mut changes.description,
            _ => {
                errors.push(FieldError::new(key.as_str(), "is not a field of an item"));
                continue;
            }
        };
        match value.as_str() {
            Some(s) => *slot = Some(s.to_owned()),
            None => errors.push(FieldError::new(key.as_str(), "must be a string")),
        }
    }
    if !partial {
        for (field, given) in [
            ("name", changes.name.is_some()),
            ("description", changes.description.is_some()),
        ] {
            if !given && !errors.iter().any(|e| e.field == field) {
                errors.push(FieldError::new(field, "is required"));
            }
        }
    }
    if !errors.is_empty() {
        return Err(Error::InvalidFields(errors));
    }
    Ok(changes)
}

/// The version `If-Match` names: `None` without the header or with `*`; a value that is not one
/// of our ETags matches nothing.
fn if_match(headers: &HeaderMap) -> Result<Option<i64>, Error> {
    let Some(value) = headers.get(IF_MATCH) else {
        return Ok(None);
    };
    let text = value
        .to_str()
        .map_err(|_| Error::PreconditionFailed)?
        .trim();
    if text == "*" {
        return Ok(None);
    }
    text.strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .and_then(|t| t.parse().ok())
        .map(Some)
        .ok_or(Error::PreconditionFailed)
}

fn etag(item: &Item) -> HeaderValue {
    HeaderValue::from_str(&format!("\"{}\"", item.version))
        .unwrap_or_else(|_| HeaderValue::from_static("\"0\""))
}

fn item_response(status: StatusCode, item: &Item) -> Response {
    let mut response = json_no_store(status, item);
    response.headers_mut().insert(ETAG, etag(item));
    response
}

fn item_id(raw: &str) -> Result<Uuid, Error> {
    Uuid::parse_str(raw).map_err(|_| Error::NotFound)
}

#[derive(Debug, Deserialize)]
struct ListQuery {
    limit: Option<String>,
    cursor: Option<String>,
    q: Option<String>,
}

async fn list(
    State(state): State<AppState>,
    api: ApiUser,
    Query(query): Query<ListQuery>,
) -> Result<Response, Error> {
    api.require_scope("items:read")?;
    let limit = match query.limit.as_deref() {
        None => 20,
        Some(raw) => raw
            .parse::<u32>()
            .ok()
            .filter(|n| (1..=items::MAX_LIMIT).contains(n))
            .ok_or_else(|| {
                Error::InvalidFields(vec![FieldError::new(
                    "limit",
                    format!("must be a whole number from 1 to {}", items::MAX_LIMIT),
                )])
            })?,
    };
    let (page, next) = items::list(
        &state.db,
        &api.user,
        limit,
        query.cursor.as_deref(),
        query.q.as_deref(),
    )
    .await?;
    Ok(json_no_store(
        StatusCode::OK,
        serde_json::json!({ "items": page, "next_cursor": next }),
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
    api.require_scope("items:write")?;
    let fields = item_fields(&headers, &body, false)?;
    let item = items::create(
        &state.db,
        &api.user,
        fields.name.as_deref().unwrap_or_default(),
        fields.description.as_deref().unwrap_or_default(),
        state.clock.now(),
        &AuditContext::user(api.user.id, ip.0, request_id.as_str()),
    )
    .await?;
    let mut response = item_response(StatusCode::CREATED, &item);
    if let Ok(location) = HeaderValue::from_str(&format!("/api/v1/items/{}", item.id)) {
        response.headers_mut().insert(LOCATION, location);
    }
    Ok(response)
}

async fn read(
    State(state): State<AppState>,
    api: ApiUser,
    Path(id): Path<String>,
) -> Result<Response, Error> {
    api.require_scope("items:read")?;
    let item = items::get(&state.db, &api.user, item_id(&id)?).await?;
    Ok(item_response(StatusCode::OK, &item))
}

async fn change(
    state: &AppState,
    api: &ApiUser,
    audit_ctx: &AuditContext,
    id: &str,
    headers: &HeaderMap,
    body: &Bytes,
    partial: bool,
) -> Result<Response, Error> {
    api.require_scope("items:write")?;
    let id = item_id(id)?;
    let fields = item_fields(headers, body, partial)?;
    let item = items::update(
        &state.db,
        &api.user,
        id,
        &fields,
        if_match(headers)?,
        state.clock.now(),
        audit_ctx,
    )
    .await?;
    Ok(item_response(StatusCode::OK, &item))
}

async fn replace(
    State(state): State<AppState>,
    api: ApiUser,
    ip: ClientIp,
    request_id: RequestId,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Error> {
    let audit_ctx = AuditContext::user(api.user.id, ip.0, request_id.as_str());
    change(&state, &api, &audit_ctx, &id, &headers, &body, false).await
}

async fn patch(
    State(state): State<AppState>,
    api: ApiUser,
    ip: ClientIp,
    request_id: RequestId,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Error> {
    let audit_ctx = AuditContext::user(api.user.id, ip.0, request_id.as_str());
    change(&state, &api, &audit_ctx, &id, &headers, &body, true).await
}

async fn remove(
    State(state): State<AppState>,
    api: ApiUser,
    ip: ClientIp,
    request_id: RequestId,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, Error> {
    api.require_scope("items:write")?;
    items::delete(
        &state.db,
        &api.user,
        item_id(&id)?,
        if_match(&headers)?,
        &AuditContext::user(api.user.id, ip.0, request_id.as_str()),
    )
    .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
