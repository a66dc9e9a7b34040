//! Items (seed 001): a name and a description, owned by their creator, behind the permission
//! table. The API and the pages both go through these functions, so the checks live here.
//!
//! # Security
//! - Every function takes the acting user and checks their current role's [`Scope`](crate::access::Scope): an item out
//!   of scope is [`Error::NotFound`](crate::Error::NotFound), the same as one that does not exist.
//! - Reading someone else's items (a manager's or admin's reach) is audited: one record per item
//!   read, one per list page that holds any (see [`get`] and [`list`]).
//! - Names are 3–100 and descriptions 5–500 characters after trimming, counted in Unicode
//!   characters; control characters are refused.
//! - Writes carry the version the caller read (`If-Match`); a stale one is
//!   [`Error::PreconditionFailed`](crate::Error::PreconditionFailed) and changes nothing. Each change is audited with its
//!   before/after in the same transaction.
//! - Search text is matched as a substring with `%`, `_` and `\` escaped: never a pattern or a
//!   regular expression.

mod queries;
mod service;

use serde::Serialize;
use time::OffsetDateTime;
use uuid::Uuid;

pub use service::{CURSOR_PATTERN, create, delete, get, list, update, validate};

/// Longest search text, in characters.
pub const MAX_QUERY_CHARS: usize = 100;
/// Most items per page.
pub const MAX_LIMIT: u32 = 100;

/// A stored item.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Item {
    /// Identifier.
    pub id: Uuid,
    /// Who created it.
    pub owner_id: Uuid,
    /// 3–100 characters.
    pub name: String,
    /// 5–500 characters.
    pub description: String,
    /// When it was created.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// When it last changed.
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
    /// Raised by every change; the `ETag`.
    pub version: i64,
}

/// A change to an item: the fields given are replaced.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changes {
    /// A new name.
    pub name: Option<String>,
    /// A new description.
    pub description: Option<String>,
}
