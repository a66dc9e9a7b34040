//! The application's one error type and how it becomes a response.
//!
//! Handlers return [`Error`]; it becomes an RFC 9457 problem (see
//! [`gatehouse_security::Problem`]). The error-page layer in `web::errors` then fills in the
//! request ID and renders an HTML page instead when the client asked for one.
//!
//! # Security
//! Internal errors (database, I/O, bugs) are logged in full inside the request's span, which
//! carries the request ID, and answered with a bare 500: no SQL, path, or message reaches the
//! client.

use std::borrow::Cow;

use axum::response::{IntoResponse, Response};
use gatehouse_security::Problem;
use http::StatusCode;
use uuid::Uuid;

/// Everything that can go wrong in Gatehouse, each with the status it answers.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// 400: the request cannot be understood; the message is safe to show.
    #[error("bad request: {0}")]
    BadRequest(String),
    /// 403: the caller is known but may not do this (not a permission check: a sign-in too old
    /// for the action, say); the message is safe to show.
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// 403: a permission, scope or object check refused (made by [`Error::denied`]); the
    /// message is safe to show. The response carries the [`Denial`] for the request log, which
    /// logs it as `access_denied` with the route template.
    #[error("access denied: {message}")]
    Denied {
        /// Who was refused what.
        denial: Denial,
        /// What the client is told.
        message: String,
    },
    /// 412: the object changed since the caller read it (`If-Match`).
    #[error("precondition failed")]
    PreconditionFailed,
    /// 422: fields that are invalid, each with the reason (safe to show).
    #[error("invalid fields")]
    InvalidFields(Vec<FieldError>),
    /// 404: nothing here, or nothing the caller may see.
    #[error("not found")]
    NotFound,
    /// 409: the change conflicts with existing data; the message is safe to show.
    #[error("conflict: {0}")]
    Conflict(String),
    /// 413: the body is larger than this route accepts.
    #[error("payload too large")]
    PayloadTooLarge,
    /// 415: the body's content type is not one this route reads.
    #[error("unsupported media type")]
    UnsupportedMediaType,
    /// 422: the input is well-formed but invalid; the message is safe to show.
    #[error("invalid input: {0}")]
    Invalid(String),
    /// 503: a dependency is unavailable.
    #[error("service unavailable: {0}")]
    Unavailable(String),
    /// 503 when the database cannot be reached (no pooled connection in time, a refused or
    /// dropped connection: [`database_unreachable`]), else 500; logged, never shown.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// An SQLite error ([`crate::store::SqliteFile`]): 503 while the file is locked by another
    /// process past the wait or cannot be opened, else 500; logged, never shown.
    #[error("SQLite file {file}: {source}")]
    Sqlite {
        /// The database file.
        file: String,
        /// What SQLite said.
        source: rusqlite::Error,
    },
    /// 500: anything else unexpected; logged, never shown.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

/// One invalid field of a request.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct FieldError {
    /// The field's name (`name`, `description`, …), or `body` for the body as a whole.
    pub field: String,
    /// Why it is refused.
    pub message: String,
}

impl FieldError {
    /// `field` is refused because of `message`.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl Error {
    /// The `403` refusing `user_id` `permission` in a `check`, with `message` (safe to show)
    /// for the client.
    pub fn denied(
        user_id: Uuid,
        permission: impl Into<Cow<'static, str>>,
        check: Check,
        message: impl Into<String>,
    ) -> Self {
        Self::Denied {
            denial: Denial {
                user_id,
                permission: permission.into(),
                check,
            },
            message: message.into(),
        }
    }

    /// The HTTP status this error answers with.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Forbidden(_) | Self::Denied { .. } => StatusCode::FORBIDDEN,
            Self::PreconditionFailed => StatusCode::PRECONDITION_FAILED,
            Self::InvalidFields(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Database(e) if database_unreachable(e) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Sqlite { source, .. } if sqlite_unavailable(source) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Self::Database(_) | Self::Sqlite { .. } | Self::Internal(_) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
        }
    }

    /// The problem document clients see.
    pub fn to_problem(&self) -> Problem {
        let problem = Problem::new(self.status());
        match self {
            Self::BadRequest(m)
            | Self::Conflict(m)
            | Self::Invalid(m)
            | Self::Forbidden(m)
            | Self::Denied { message: m, .. } => problem.with_detail(m),
            Self::PreconditionFailed => problem.with_detail(
                "The object changed since you read it: read it again, then retry with its new ETag.",
            ),
            Self::InvalidFields(errors) => problem
                .with_detail("Some fields are not valid.")
                .with_extension(
                    "errors",
                    serde_json::to_value(errors).unwrap_or(serde_json::Value::Null),
                ),
            Self::NotFound
            | Self::PayloadTooLarge
            | Self::UnsupportedMediaType
            | Self::Unavailable(_)
            | Self::Database(_)
            | Self::Sqlite { .. }
            | Self::Internal(_) => problem,
        }
    }
}

impl Error {
    /// Whether the database refused the change because it would duplicate a unique key (an
    /// address, a name): on either backend.
    pub fn is_unique_violation(&self) -> bool {
        match self {
            Self::Database(sqlx::Error::Database(db)) => db.is_unique_violation(),
            Self::Sqlite {
                source: rusqlite::Error::SqliteFailure(e, _),
                ..
            } => matches!(
                e.extended_code,
                rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
                    | rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY
            ),
            _ => false,
        }
    }
}

/// Whether an SQLite error means the file cannot be used now (held locked by another process
/// past the writer's wait, or not openable), rather than a fault in the request or the code.
fn sqlite_unavailable(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(
            rusqlite::ErrorCode::DatabaseBusy
                | rusqlite::ErrorCode::DatabaseLocked
                | rusqlite::ErrorCode::CannotOpen
        )
    )
}

/// How long a client is told to wait after a 503 (`Retry-After`).
pub const RETRY_AFTER_SECS: u32 = 5;

/// Whether a database error means the database cannot be reached now (an outage the client
/// may retry after), rather than a fault in the request or the code: no pooled connection within
/// the acquire timeout, the pool closing, a refused, reset or timed-out connection, a connection
/// that ends mid-message (a protocol error: what a dropped connection looks like during the
/// handshake), a lost TLS session, or PostgreSQL refusing connections (class 08, or 57P01–57P03
/// while shutting down or starting).
pub fn database_unreachable(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => db
            .code()
            .is_some_and(|c| c.starts_with("08") || matches!(&*c, "57P01" | "57P02" | "57P03")),
        _ => false,
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        match &self {
            Self::Database(e) if database_unreachable(e) => {
                tracing::warn!(event = "unavailable", reason = %e, "the database cannot be reached")
            }
            Self::Database(e) => {
                tracing::error!(event = "internal_error", error = %e, "database error")
            }
            Self::Sqlite { source, .. } if sqlite_unavailable(source) => {
                tracing::warn!(event = "unavailable", reason = %self, "the database cannot be used")
            }
            Self::Sqlite { .. } => {
                tracing::error!(event = "internal_error", error = %self, "database error")
            }
            Self::Internal(e) => {
                tracing::error!(event = "internal_error", error = ?e, "internal error")
            }
            Self::Unavailable(m) => {
                tracing::warn!(event = "unavailable", reason = %m, "dependency unavailable")
            }
            _ => {}
        }
        let mut response = self.to_problem().into_response();
        if response.status() == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert(http::header::RETRY_AFTER, RETRY_AFTER_SECS.into());
        }
        if let Self::Denied { denial, .. } = self {
            response.extensions_mut().insert(denial);
        }
        response
    }
}

/// Which kind of check refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Check {
    /// The role lacks the permission ([`crate::access::PERMISSIONS`]), or must set up MFA before using it.
    Role,
    /// The credential lacks it: an API key without the scope, or an API key where an access
    /// token is needed.
    Credential,
    /// The permission does not reach this object (someone else's, or the user's own account).
    Object,
}

impl Check {
    /// The kind's name in logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Role => "role",
            Self::Credential => "credential",
            Self::Object => "object",
        }
    }
}

/// A refusal by a permission, scope or object check: who was refused which permission. It rides
/// on the `403` response (a response extension) to the request log, which logs it with the
/// route template.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Denial {
    /// Who was refused.
    pub user_id: Uuid,
    /// What they lacked: a permission (`items.edit`), an API key scope (`items:write`), or
    /// `mfa_enrolment` for a user who must set up MFA first.
    pub permission: Cow<'static, str>,
    /// Which kind of check refused.
    pub check: Check,
}

impl Denial {
    /// Logs the refusal as the security event `access_denied`: the one place it is logged.
    pub fn log(&self, route: &str) {
        tracing::warn!(
            event = "access_denied",
            user_id = %self.user_id,
            route,
            permission = %self.permission,
            check = self.check.as_str(),
            "access denied"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_errors_say_nothing_internal() {
        let e = Error::Internal(anyhow::anyhow!("SELECT secret FROM /var/lib/db"));
        let body = String::from_utf8(e.to_problem().to_json().to_vec()).unwrap();
        assert!(!body.contains("SELECT"), "{body}");
        assert!(!body.contains("/var/lib"), "{body}");
        assert_eq!(e.status(), StatusCode::INTERNAL_SERVER_ERROR);
    }
}
