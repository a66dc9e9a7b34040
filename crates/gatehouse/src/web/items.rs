//! `/items`: the items pages (seed 001) for a signed-in browser, over the same service as the
//! API (`crate::items`), so the permission table, validation, versions and audit are the same.
//!
//! Every form carries the CSRF token; every value is escaped by the templates; a stale version
//! (someone changed the item meanwhile) gets the page back with a message, not a lost update.

use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use gatehouse_security::{ClientIp, CspNonce, CsrfToken, RequestId};
use http::StatusCode;
use minijinja::context;
use serde::Deserialize;
use uuid::Uuid;

use super::session::CurrentUser;
use crate::audit::AuditContext;
use crate::error::Error;
use crate::items::{self, Changes, Item};
use crate::state::AppState;
use crate::store::timestamp_text;

/// The items pages (under the CSRF layer).
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/items", get(list).post(create))
        .route("/items/{id}", post(update))
        .route("/items/{id}/edit", get(edit))
        .route("/items/{id}/delete", post(delete))
}

#[derive(Debug, Deserialize)]
struct ListQuery {
    q: Option<String>,
    cursor: Option<String>,
}

#[derive(Debug, Deserialize)]
struct ItemForm {
    name: String,
    description: String,
    version: Option<i64>,
}

#[derive(Debug, Deserialize)]
struct VersionForm {
    version: Option<i64>,
}

const STALE: &str = "Someone changed this item since you opened it. Here it is as it is now.";

fn item_id(raw: &str) -> Result<Uuid, Error> {
    Uuid::parse_str(raw).map_err(|_| Error::NotFound)
}

#[expect(
    clippy::too_many_arguments,
    reason = "the page's parts, the request's audit context and what to add"
)]
async fn render_list(
    state: &AppState,
    nonce: &CspNonce,
    csrf: &CsrfToken,
    current: &CurrentUser,
    ctx: &AuditContext,
    query: &ListQuery,
    status: StatusCode,
    extra: minijinja::Value,
) -> Result<Response, Error> {
    let (page, next) = items::list(
        &state.db,
        &current.user,
        20,
        query.cursor.as_deref(),
        query.q.as_deref(),
        ctx,
    )
    .await?;
    let rows: Vec<_> = page
        .iter()
        .map(|i| {
            context! {
                id => i.id.to_string(),
                name => i.name,
                description => i.description,
                version => i.version,
                updated => timestamp_text(i.updated_at)[..16].replace('T', " "),
            }
        })
        .collect();
    let next_href = next.map(|cursor| {
        let mut href = format!("/items?cursor={cursor}");
        if let Some(q) = query.q.as_deref().filter(|q| !q.is_empty()) {
            href.push_str("&q=");
            href.extend(url::form_urlencoded::byte_serialize(q.as_bytes()));
        }
        href
    });
    let page = state.templates.page(
        "items.html",
        nonce,
        context! {
            title => "Items",
            csrf_token => csrf.as_str(),
            user => context! { email => current.user.email.as_str() },
            items => rows,
            q => query.q,
            next_href => next_href,
            ..extra
        },
    )?;
    Ok((status, page).into_response())
}

fn render_edit(
    state: &AppState,
    nonce: &CspNonce,
    csrf: &CsrfToken,
    current: &CurrentUser,
    item: &Item,
    status: StatusCode,
    extra: minijinja::Value,
) -> Result<Response, Error> {
    let page = state.templates.page(
        "item_edit.html",
        nonce,
        context! {
            title => "Edit item",
            csrf_token => csrf.as_str(),
            user => context! { email => current.user.email.as_str() },
            item => context! {
                id => item.id.to_string(),
                name => item.name,
                description => item.description,
                version => item.version,
            },
            ..extra
        },
    )?;
    Ok((status, page).into_response())
}

async fn list(
    State(state): State<AppState>,
    nonce: CspNonce,
    csrf: CsrfToken,
    current: CurrentUser,
    ip: ClientIp,
    request_id: RequestId,
    Query(query): Query<ListQuery>,
) -> Result<Response, Error> {
    let ctx = AuditContext::user(current.user.id, ip.0, request_id.as_str());
    match render_list(
        &state,
        &nonce,
        &csrf,
        &current,
        &ctx,
        &query,
        StatusCode::OK,
        context! {},
    )
    .await
    {
        Err(Error::InvalidFields(errors)) => {
            let plain = ListQuery {
                q: None,
                cursor: None,
            };
            render_list(
                &state,
                &nonce,
                &csrf,
                &current,
                &ctx,
                &plain,
                StatusCode::UNPROCESSABLE_ENTITY,
                context! { errors => errors },
            )
            .await
        }
        other => other,
    }
}

async fn create(
    State(state): State<AppState>,
    nonce: CspNonce,
    csrf: CsrfToken,
    current: CurrentUser,
    ip: ClientIp,
    request_id: RequestId,
    Form(form): Form<ItemForm>,
) -> Result<Response, Error> {
    let ctx = AuditContext::user(current.user.id, ip.0, request_id.as_str());
    let created = items::create(
        &state.db,
        &current.user,
        &form.name,
        &form.description,
        state.clock.now(),
        &ctx,
    )
    .await;
    match created {
        Ok(_) => Ok(Redirect::to("/items").into_response()),
        Err(Error::InvalidFields(errors)) => {
            let query = ListQuery {
                q: None,
                cursor: None,
            };
            render_list(
                &state,
                &nonce,
                &csrf,
                &current,
                &ctx,
                &query,
                StatusCode::UNPROCESSABLE_ENTITY,
                context! { errors => errors, name => form.name, description => form.description },
            )
            .await
        }
        Err(e) => Err(e),
    }
}

async fn edit(
    State(state): State<AppState>,
    nonce: CspNonce,
    csrf: CsrfToken,
    current: CurrentUser,
    ip: ClientIp,
    request_id: RequestId,
    Path(id): Path<String>,
) -> Result<Response, Error> {
    let ctx = AuditContext::user(current.user.id, ip.0, request_id.as_str());
    let item = items::get(&state.db, &current.user, item_id(&id)?, &ctx).await?;
    render_edit(
        &state,
        &nonce,
        &csrf,
        &current,
        &item,
        StatusCode::OK,
        context! {},
    )
}

#[expect(
    clippy::too_many_arguments,
    reason = "an axum handler takes one argument per extractor"
)]
async fn update(
    State(state): State<AppState>,
    nonce: CspNonce,
    csrf: CsrfToken,
    current: CurrentUser,
    ip: ClientIp,
    request_id: RequestId,
    Path(id): Path<String>,
    Form(form): Form<ItemForm>,
) -> Result<Response, Error> {
    let id = item_id(&id)?;
    let changes = Changes {
        name: Some(form.name.clone()),
        description: Some(form.description.clone()),
    };
    let ctx = AuditContext::user(current.user.id, ip.0, request_id.as_str());
    let updated = items::update(
        &state.db,
        &current.user,
        id,
        &changes,
        form.version,
        state.clock.now(),
        &ctx,
    )
    .await;
    match updated {
        Ok(_) => Ok(Redirect::to("/items").into_response()),
        Err(Error::InvalidFields(errors)) => {
            let mut item = items::get(&state.db, &current.user, id, &ctx).await?;
            item.name = form.name;
            item.description = form.description;
            render_edit(
                &state,
                &nonce,
                &csrf,
                &current,
                &item,
                StatusCode::UNPROCESSABLE_ENTITY,
                context! { errors => errors },
            )
        }
        Err(Error::PreconditionFailed) => {
            let item = items::get(&state.db, &current.user, id, &ctx).await?;
            render_edit(
                &state,
                &nonce,
                &csrf,
                &current,
                &item,
                StatusCode::PRECONDITION_FAILED,
                context! { error => STALE },
            )
        }
        Err(e) => Err(e),
    }
}

async fn delete(
    State(state): State<AppState>,
    current: CurrentUser,
    ip: ClientIp,
    request_id: RequestId,
    Path(id): Path<String>,
    Form(form): Form<VersionForm>,
) -> Result<Response, Error> {
    match items::delete(
        &state.db,
        &current.user,
        item_id(&id)?,
        form.version,
        &AuditContext::user(current.user.id, ip.0, request_id.as_str()),
    )
    .await
    {
        Ok(()) | Err(Error::PreconditionFailed) => Ok(Redirect::to("/items").into_response()),
        Err(e) => Err(e),
    }
}
