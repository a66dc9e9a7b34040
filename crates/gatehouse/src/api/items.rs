//! `/api/v1/items`: seed 001's items API over [`crate::items`], for bearer-token callers.
//!
//! - Bodies must be `application/json` (else `415`), well-formed (else `400`), and name only
//!   known fields of the right type (else `422` with one entry per field).
//! - Writes answer with the item's `ETag`; `If-Match` with a stale one (or any entity-tag but
//!   the current ETag) gets `412` and changes nothing; one that is neither `*` nor one
//!   entity-tag gets `400`. `POST` answers `201` with `Location`.
//! - Lists are newest first, `limit` at most 100 (default 20), with an opaque `next_cursor`.

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use gatehouse_security::{ClientIp, RequestId};
use http::header::{ETAG, IF_MATCH, LOCATION};
use http::{HeaderMap, HeaderValue, StatusCode};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::auth::{ApiUser, json_no_store};
use crate::audit::AuditContext;
use crate::error::Error;
use crate::error::FieldError;
use crate::items::{self, Changes, Item};
use crate::state::AppState;

/// The items routes, with their OpenAPI descriptions.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(read, replace, patch, remove))
}

/// The body of `POST` and `PUT`: both fields. Text is trimmed; control characters are refused.
#[derive(serde::Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"name": "Lamp", "description": "A lamp for the desk."}))]
#[allow(dead_code)] // Describes the body `item_fields` reads.
struct ItemInput {
    #[schema(schema_with = super::schema::item_name)]
    name: String,
    #[schema(schema_with = super::schema::item_description)]
    description: String,
}

/// The body of `PATCH`: the fields to change (`null` is not a value).
#[derive(serde::Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // Describes the body `item_fields` reads.
struct ItemPatch {
    #[schema(schema_with = super::schema::item_name)]
    name: Option<String>,
    #[schema(schema_with = super::schema::item_description)]
    description: Option<String>,
}

/// One page of items.
#[derive(Serialize, ToSchema)]
struct ItemPage {
    /// Newest first.
    items: Vec<Item>,
    /// Pass as `cursor` for the next page; `null` on the last page.
    next_cursor: Option<String>,
}

/// The fields of an item body, checked by hand so every problem is reported by field name.
fn item_fields(headers: &HeaderMap, body: &Bytes, partial: bool) -> Result<Changes, Error> {
    let map = super::auth::json_object(headers, body)?;
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

/// What an `If-Match` header asks for (RFC 9110 §13.1.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Precondition {
    /// No header, or `*`: the change applies to what is stored.
    Any,
    /// One of our ETags: the item must still be at this version.
    Version(i64),
    /// A well-formed entity-tag that is none of ours (a weak one, which the strong comparison
    /// `If-Match` uses never matches, or another value): it matches no version.
    Nothing,
}

impl Precondition {
    /// Reads `If-Match`: `*` or one entity-tag ([`super::schema::ENTITY_TAG_PATTERN`]), else
    /// `400` naming the header (an empty value included).
    fn parse(headers: &HeaderMap) -> Result<Self, Error> {
        let Some(value) = headers.get(IF_MATCH) else {
            return Ok(Self::Any);
        };
        let text = value.as_bytes().trim_ascii();
        if text == b"*" {
            return Ok(Self::Any);
        }
        if !is_entity_tag(text) {
            return Err(Error::BadRequest(
                "The If-Match header must be `*` or one entity-tag, such as \"3\" (the item's ETag)."
                    .into(),
            ));
        }
        // Strong comparison: the exact text of one of our ETags, `"3"` but not `"03"`.
        let version = text
            .strip_prefix(b"\"")
            .and_then(|t| t.strip_suffix(b"\""))
            .and_then(|t| std::str::from_utf8(t).ok())
            .and_then(|t| t.parse::<i64>().ok().filter(|v| v.to_string() == t));
        Ok(version.map_or(Self::Nothing, Self::Version))
    }

    /// The version the write requires (`None`: any), or `412` when the header matches none.
    fn version(self) -> Result<Option<i64>, Error> {
        match self {
            Self::Any => Ok(None),
            Self::Version(v) => Ok(Some(v)),
            Self::Nothing => Err(Error::PreconditionFailed),
        }
    }
}

/// `entity-tag = [ "W/" ] DQUOTE *etagc DQUOTE` with `etagc = %x21 / %x23-7E`: RFC 9110's
/// grammar without `obs-text` (bytes above 0x7F), which no ETag of ours holds and which a
/// description's pattern cannot express portably for header values.
fn is_entity_tag(text: &[u8]) -> bool {
    let opaque = text.strip_prefix(b"W/").unwrap_or(text);
    opaque
        .strip_prefix(b"\"")
        .and_then(|t| t.strip_suffix(b"\""))
        .is_some_and(|tag| tag.iter().all(|&b| b == 0x21 || (0x23..=0x7e).contains(&b)))
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

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct ListQuery {
    /// Items per page, 1–100 (default 20).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 100)]
    limit: Option<String>,
    #[param(schema_with = super::schema::cursor)]
    cursor: Option<String>,
    #[param(schema_with = super::schema::search_text)]
    q: Option<String>,
}

/// An item path's `id`.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)] // Describes the `Path` parameter the handlers read as text.
struct ItemId {
    /// The item's id.
    id: Uuid,
}

/// The version an `If-Match` header names.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code)] // Describes the header `Precondition::parse` reads.
struct IfMatch {
    #[param(rename = "If-Match", schema_with = super::schema::if_match)]
    if_match: Option<String>,
}

/// List the items the caller may see.
///
/// A page that holds someone else's items writes one `item.list` audit record (the filter and
/// the counts), not one per item.
#[utoipa::path(
    get,
    path = "/api/v1/items",
    operation_id = "list_items",
    tag = "items",
    params(ListQuery),
    responses(
        (status = 200, description = "A page of items", body = ItemPage),
        (status = 422, description = "`limit`, `cursor` or `q` is not valid", body = super::schema::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []), ("api_key" = []))
)]
async fn list(
    State(state): State<AppState>,
    api: ApiUser,
    ip: ClientIp,
    request_id: RequestId,
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
        &AuditContext::user(api.user.id, ip.0, request_id.as_str()),
    )
    .await?;
    Ok(json_no_store(
        StatusCode::OK,
        ItemPage {
            items: page,
            next_cursor: next,
        },
    ))
}

/// Add an item, owned by the caller.
#[utoipa::path(
    post,
    path = "/api/v1/items",
    operation_id = "create_item",
    tag = "items",
    request_body = ItemInput,
    responses(
        (status = 201, description = "The new item", body = Item, headers(
            ("Location" = String, description = "The item's URL"),
            ("ETag" = String, description = "The item's version"),
        )),
    ),
    security(("bearer" = []), ("api_key" = []))
)]
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

/// Read one item.
///
/// Reading someone else's item (a manager's or admin's reach) writes an `item.read` audit record.
#[utoipa::path(
    get,
    path = "/api/v1/items/{id}",
    operation_id = "get_item",
    tag = "items",
    params(ItemId),
    responses(
        (status = 200, description = "The item", body = Item, headers(
            ("ETag" = String, description = "The item's version"),
        )),
        (status = 404, description = "No such item, or one the caller may not see", body = super::schema::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []), ("api_key" = []))
)]
async fn read(
    State(state): State<AppState>,
    api: ApiUser,
    ip: ClientIp,
    request_id: RequestId,
    Path(id): Path<String>,
) -> Result<Response, Error> {
    api.require_scope("items:read")?;
    let ctx = AuditContext::user(api.user.id, ip.0, request_id.as_str());
    let item = items::get(&state.db, &api.user, item_id(&id)?, &ctx).await?;
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
    let precondition = Precondition::parse(headers)?;
    // Field errors first: the client has to fix them whatever the item's version.
    let fields = items::validate(&item_fields(headers, body, partial)?)?;
    let item = items::update(
        &state.db,
        &api.user,
        id,
        &fields,
        precondition.version()?,
        state.clock.now(),
        audit_ctx,
    )
    .await?;
    Ok(item_response(StatusCode::OK, &item))
}

/// Replace an item's name and description.
#[utoipa::path(
    put,
    path = "/api/v1/items/{id}",
    operation_id = "replace_item",
    tag = "items",
    params(ItemId, IfMatch),
    request_body = ItemInput,
    responses(
        (status = 200, description = "The changed item", body = Item, headers(
            ("ETag" = String, description = "The item's new version"),
        )),
        (status = 400, description = "The body is not valid JSON, or `If-Match` is neither `*` nor one entity-tag", body = super::schema::Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such item, or one the caller may not see", body = super::schema::Problem, content_type = "application/problem+json"),
        (status = 412, description = "The item changed since the `If-Match` version", body = super::schema::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []), ("api_key" = []))
)]
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

/// Change some of an item's fields.
#[utoipa::path(
    patch,
    path = "/api/v1/items/{id}",
    operation_id = "patch_item",
    tag = "items",
    params(ItemId, IfMatch),
    request_body = ItemPatch,
    responses(
        (status = 200, description = "The changed item", body = Item, headers(
            ("ETag" = String, description = "The item's new version"),
        )),
        (status = 400, description = "The body is not valid JSON, or `If-Match` is neither `*` nor one entity-tag", body = super::schema::Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such item, or one the caller may not see", body = super::schema::Problem, content_type = "application/problem+json"),
        (status = 412, description = "The item changed since the `If-Match` version", body = super::schema::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []), ("api_key" = []))
)]
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

/// Delete an item.
#[utoipa::path(
    delete,
    path = "/api/v1/items/{id}",
    operation_id = "delete_item",
    tag = "items",
    params(ItemId, IfMatch),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, description = "`If-Match` is neither `*` nor one entity-tag", body = super::schema::Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such item, or one the caller may not see", body = super::schema::Problem, content_type = "application/problem+json"),
        (status = 412, description = "The item changed since the `If-Match` version", body = super::schema::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []), ("api_key" = []))
)]
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
        Precondition::parse(&headers)?.version()?,
        &AuditContext::user(api.user.id, ip.0, request_id.as_str()),
    )
    .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(value: &[u8]) -> Result<Precondition, u16> {
        let mut headers = HeaderMap::new();
        headers.insert(IF_MATCH, HeaderValue::from_bytes(value).unwrap());
        Precondition::parse(&headers).map_err(|e| e.status().as_u16())
    }

    #[test]
    fn if_match_is_a_star_or_one_entity_tag() {
        assert_eq!(
            Precondition::parse(&HeaderMap::new()).unwrap(),
            Precondition::Any
        );
        assert_eq!(parse(b"*"), Ok(Precondition::Any));
        assert_eq!(parse(b"\"3\""), Ok(Precondition::Version(3)));
        assert_eq!(parse(b" \"3\" "), Ok(Precondition::Version(3)));
        for none_of_ours in [
            &b"W/\"3\""[..],
            b"\"03\"",
            b"\"+3\"",
            b"\"abc\"",
            b"\"\"",
            b"\"!#~\"",
            b"\"99999999999999999999\"",
        ] {
            assert_eq!(
                parse(none_of_ours),
                Ok(Precondition::Nothing),
                "{}",
                String::from_utf8_lossy(none_of_ours)
            );
        }
        for malformed in [
            &b""[..],
            b"\"\xe9t\xe9\"",
            b"3",
            b"\"3",
            b"\"a\"b\"",
            b"\"a b\"",
            b"w/\"3\"",
            b"W/3",
            b"\"1\", \"2\"",
            b"**",
        ] {
            assert_eq!(
                parse(malformed),
                Err(400),
                "{}",
                String::from_utf8_lossy(malformed)
            );
        }
        assert!(matches!(
            Precondition::Nothing.version(),
            Err(Error::PreconditionFailed)
        ));
    }
}
