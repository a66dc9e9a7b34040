//! `/api/v1/admin/users`: managers and admins read users; admins change their role and status.
//!
//! # Security
//! - Permissions come from the table in `crate::access` (`UsersRead`, `UsersManage`), read from
//!   the caller's current role on every request.
//! - Nobody changes their own role or status (an admin cannot lock themselves out, and a stolen
//!   admin token cannot be used to hide the trail by demoting itself); the last active admin
//!   cannot be demoted or disabled.
//! - A change ends every session and API sign-in of the user, and is audited with its before and
//!   after in the same transaction.
//! - Reading another user, or the list, is audited by the identity service it calls
//!   (`user.read`, one `user.list` per request); reading yourself writes nothing.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::response::Response;
use gatehouse_security::{ClientIp, RequestId};
use http::{HeaderMap, StatusCode};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::auth::{ApiUser, json_no_store};
use crate::access::{self, Action};
use crate::audit::AuditContext;
use crate::error::Error;
use crate::error::FieldError;
use crate::identity::{Role, User, UserStatus, users};
use crate::state::AppState;

/// The admin routes, with their OpenAPI descriptions.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(read, change))
}

/// A user, as the admin API shows them.
#[derive(Serialize, ToSchema)]
struct UserView {
    id: Uuid,
    email: String,
    display_name: String,
    /// `admin`, `manager` or `user`.
    #[schema(value_type = String, example = "user")]
    role: &'static str,
    /// `active` or `disabled`.
    #[schema(value_type = String, example = "active")]
    status: &'static str,
    /// Whether two-step sign-in is on.
    mfa_enabled: bool,
    #[serde(with = "time::serde::rfc3339")]
    created_at: time::OffsetDateTime,
}

/// Every user.
#[derive(Serialize, ToSchema)]
struct UserList {
    users: Vec<UserView>,
}

/// The body of `PATCH /api/v1/admin/users/{id}`: what to change.
#[derive(serde::Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // Describes the body `change` reads.
struct UserChange {
    #[schema(nullable = false)]
    role: Option<RoleName>,
    #[schema(nullable = false)]
    status: Option<StatusName>,
}

/// A role (`identity::Role`).
#[derive(serde::Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
#[allow(dead_code)] // Describes the strings `Role::from_str` accepts.
enum RoleName {
    Admin,
    Manager,
    User,
}

/// A user's status (`identity::UserStatus`).
#[derive(serde::Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
#[allow(dead_code)] // Describes the strings `UserStatus::from_str` accepts.
enum StatusName {
    Active,
    Disabled,
}

/// The path of one user.
#[derive(serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)] // Describes the `Path` parameter the handlers read as text.
struct UserId {
    /// The user's id.
    id: Uuid,
}

impl From<&User> for UserView {
    fn from(u: &User) -> Self {
        Self {
            id: u.id,
            email: u.email.as_str().to_owned(),
            display_name: u.display_name.as_str().to_owned(),
            role: u.role.as_str(),
            status: u.status.as_str(),
            mfa_enabled: u.mfa_enabled,
            created_at: u.created_at,
        }
    }
}

fn require(api: &ApiUser, action: Action) -> Result<(), Error> {
    api.require_token(action)?;
    access::require(&api.user, action).map(drop)
}

/// List every user (managers and admins).
///
/// Writes one `user.list` audit record (with the count), not one per user.
#[utoipa::path(
    get,
    path = "/api/v1/admin/users",
    operation_id = "list_users",
    tag = "admin",
    responses((status = 200, description = "Every user", body = UserList)),
    security(("bearer" = []))
)]
async fn list(
    State(state): State<AppState>,
    api: ApiUser,
    ip: ClientIp,
    request_id: RequestId,
) -> Result<Response, Error> {
    require(&api, Action::UsersRead)?;
    let ctx = AuditContext::user(api.user.id, ip.0, request_id.as_str());
    let all = state.identity.list_users(&api.user, &ctx).await?;
    let users = all.iter().map(UserView::from).collect();
    Ok(json_no_store(StatusCode::OK, UserList { users }))
}

async fn find(state: &AppState, raw: &str) -> Result<User, Error> {
    let id = Uuid::parse_str(raw).map_err(|_| Error::NotFound)?;
    users::find_by_id(&state.db, id)
        .await?
        .ok_or(Error::NotFound)
}

/// Read one user (managers and admins).
///
/// Reading another user writes a `user.read` audit record.
#[utoipa::path(
    get,
    path = "/api/v1/admin/users/{id}",
    operation_id = "get_user",
    tag = "admin",
    params(UserId),
    responses(
        (status = 200, description = "The user", body = UserView),
        (status = 404, description = "No such user", body = super::schema::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
async fn read(
    State(state): State<AppState>,
    api: ApiUser,
    ip: ClientIp,
    request_id: RequestId,
    Path(id): Path<String>,
) -> Result<Response, Error> {
    require(&api, Action::UsersRead)?;
    let id = Uuid::parse_str(&id).map_err(|_| Error::NotFound)?;
    let ctx = AuditContext::user(api.user.id, ip.0, request_id.as_str());
    let user = state.identity.user_details(&api.user, id, &ctx).await?;
    Ok(json_no_store(StatusCode::OK, UserView::from(&user)))
}

/// Change a user's role or status (admins). Ends the user's sessions and API sign-ins.
#[utoipa::path(
    patch,
    path = "/api/v1/admin/users/{id}",
    operation_id = "change_user",
    tag = "admin",
    params(UserId),
    request_body = UserChange,
    responses(
        (status = 200, description = "The changed user", body = UserView),
        (status = 403, description = "Not an admin, an API key, or the caller's own account", body = super::schema::Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such user", body = super::schema::Problem, content_type = "application/problem+json"),
        (status = 409, description = "It would leave no active admin", body = super::schema::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
async fn change(
    State(state): State<AppState>,
    api: ApiUser,
    ip: ClientIp,
    request_id: RequestId,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Error> {
    require(&api, Action::UsersManage)?;
    let map = super::auth::json_object(&headers, &body)?;
    let mut errors = Vec::new();
    let (mut role, mut status) = (None, None);
    for (key, value) in &map {
        let text = value.as_str();
        match key.as_str() {
            // Only the canonical spelling, as the API description lists it.
            "role" => match text.and_then(|t| t.parse::<Role>().ok().filter(|r| r.as_str() == t)) {
                Some(r) => role = Some(r),
                None => errors.push(FieldError::new("role", "must be admin, manager or user")),
            },
            "status" => {
                match text.and_then(|t| t.parse::<UserStatus>().ok().filter(|s| s.as_str() == t)) {
                    Some(s) => status = Some(s),
                    None => errors.push(FieldError::new("status", "must be active or disabled")),
                }
            }
            other => errors.push(FieldError::new(other, "cannot be changed here")),
        }
    }
    if !errors.is_empty() {
        return Err(Error::InvalidFields(errors));
    }
    let target = find(&state, &id).await?;
    let ctx = AuditContext::user(api.user.id, ip.0, request_id.as_str());
    let (user, _) = state
        .identity
        .set_role_and_status(&target.email, role, status, Some(api.user.id), &ctx)
        .await?;
    Ok(json_no_store(StatusCode::OK, UserView::from(&user)))
}
