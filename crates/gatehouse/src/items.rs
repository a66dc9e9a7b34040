//! Items (seed 001): a name and a description, owned by their creator, behind the permission
//! table. The API and the pages both go through these functions, so the checks live here.
//!
//! # Security
//! - Every function takes the acting user and checks their current role's [`Scope`]: an item out
//!   of scope is [`Error::NotFound`], the same as one that does not exist.
//! - Names are 3–100 and descriptions 5–500 characters after trimming, counted in Unicode
//!   characters; control characters are refused.
//! - Writes carry the version the caller read (`If-Match`); a stale one is
//!   [`Error::PreconditionFailed`] and changes nothing. Each change is audited with its
//!   before/after in the same transaction.
//! - Search text is matched as a substring with `%`, `_` and `\` escaped: never a pattern or a
//!   regular expression.

use serde::Serialize;
use sqlx::Row as _;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::access::{self, Action, Scope};
use crate::audit::{self, AuditContext, AuditEvent};
use crate::error::Error;
use crate::error::FieldError;
use crate::identity::User;
use crate::store::{Db, Tx, parse_timestamp, timestamp_text};

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

fn text_field(
    field: &str,
    raw: &str,
    min: usize,
    max: usize,
    errors: &mut Vec<FieldError>,
) -> String {
    let value = raw.trim();
    let chars = value.chars().count();
    if value.chars().any(char::is_control) {
        errors.push(FieldError::new(
            field,
            "must not contain control characters",
        ));
    } else if chars < min || chars > max {
        errors.push(FieldError::new(
            field,
            format!("must be {min} to {max} characters long (it has {chars})"),
        ));
    }
    value.to_owned()
}

/// Validates the fields given; every problem is reported at once.
pub fn validate(changes: &Changes) -> Result<Changes, Error> {
    let mut errors = Vec::new();
    let name = changes
        .name
        .as_deref()
        .map(|n| text_field("name", n, 3, 100, &mut errors));
    let description = changes
        .description
        .as_deref()
        .map(|d| text_field("description", d, 5, 500, &mut errors));
    if errors.is_empty() {
        Ok(Changes { name, description })
    } else {
        Err(Error::InvalidFields(errors))
    }
}

fn allowed(actor: &User, action: Action) -> Result<Scope, Error> {
    access::scope(actor.role, action)
        .ok_or_else(|| Error::Forbidden("Your role does not allow this.".into()))
}

const COLUMNS: &str = "id, owner_id, name, description, created_at, updated_at, version";

fn from_pg(row: &sqlx::postgres::PgRow) -> Result<Item, Error> {
    Ok(Item {
        id: row.try_get("id")?,
        owner_id: row.try_get("owner_id")?,
        name: row.try_get("name")?,
        description: row.try_get("description")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
        version: row.try_get("version")?,
    })
}

fn from_sqlite(row: &sqlx::sqlite::SqliteRow) -> Result<Item, Error> {
    let uuid = |col: &str| -> Result<Uuid, Error> {
        let text: &str = row.try_get(col)?;
        Uuid::parse_str(text)
            .map_err(|e| Error::Internal(anyhow::anyhow!("bad {col} in items: {e}")))
    };
    Ok(Item {
        id: uuid("id")?,
        owner_id: uuid("owner_id")?,
        name: row.try_get("name")?,
        description: row.try_get("description")?,
        created_at: parse_timestamp(row.try_get("created_at")?)?,
        updated_at: parse_timestamp(row.try_get("updated_at")?)?,
        version: row.try_get("version")?,
    })
}

/// An item as SQLite stores it (text ids and times), read by `rusqlite` in [`COLUMNS`] order.
struct SqliteItem {
    id: String,
    owner_id: String,
    name: String,
    description: String,
    created_at: String,
    updated_at: String,
    version: i64,
}

impl SqliteItem {
    fn into_item(self) -> Result<Item, Error> {
        let uuid = |text: &str, col: &str| {
            Uuid::parse_str(text)
                .map_err(|e| Error::Internal(anyhow::anyhow!("bad {col} in items: {e}")))
        };
        Ok(Item {
            id: uuid(&self.id, "id")?,
            owner_id: uuid(&self.owner_id, "owner_id")?,
            name: self.name,
            description: self.description,
            created_at: parse_timestamp(&self.created_at)?,
            updated_at: parse_timestamp(&self.updated_at)?,
            version: self.version,
        })
    }
}

async fn record(
    tx: &mut Tx,
    ctx: &AuditContext,
    action: &'static str,
    id: Uuid,
    before: Option<&Item>,
    after: Option<&Item>,
) -> Result<(), Error> {
    let view = |i: Option<&Item>| {
        i.map(|i| serde_json::json!({ "name": i.name, "description": i.description, "owner_id": i.owner_id }))
    };
    audit::record(
        tx,
        ctx,
        AuditEvent {
            action,
            entity_type: "item",
            entity_id: Some(id.to_string()),
            changes: serde_json::json!({ "before": view(before), "after": view(after) }),
        },
    )
    .await?;
    Ok(())
}

/// Creates an item owned by `actor`.
pub async fn create(
    db: &Db,
    actor: &User,
    name: &str,
    description: &str,
    now: OffsetDateTime,
    ctx: &AuditContext,
) -> Result<Item, Error> {
    allowed(actor, Action::ItemsCreate)?;
    let valid = validate(&Changes {
        name: Some(name.to_owned()),
        description: Some(description.to_owned()),
    })?;
    let item = Item {
        id: Uuid::new_v4(),
        owner_id: actor.id,
        name: valid.name.unwrap_or_default(),
        description: valid.description.unwrap_or_default(),
        created_at: now,
        updated_at: now,
        version: 1,
    };
    let mut tx = db.begin().await?;
    match &mut tx {
        Tx::Postgres(tx) => {
            sqlx::query("INSERT INTO items (id, owner_id, name, description, created_at, updated_at, version) VALUES ($1, $2, $3, $4, $5, $5, 1)")
                .bind(item.id)
                .bind(item.owner_id)
                .bind(&item.name)
                .bind(&item.description)
                .bind(now)
                .execute(&mut **tx)
                .await?;
        }
        Tx::Sqlite(tx, _) => {
            sqlx::query("INSERT INTO items (id, owner_id, name, description, created_at, updated_at, version) VALUES (?1, ?2, ?3, ?4, ?5, ?5, 1)")
                .bind(item.id.to_string())
                .bind(item.owner_id.to_string())
                .bind(&item.name)
                .bind(&item.description)
                .bind(timestamp_text(now))
                .execute(&mut **tx)
                .await?;
        }
    }
    record(&mut tx, ctx, "item.create", item.id, None, Some(&item)).await?;
    tx.commit().await?;
    Ok(item)
}

async fn fetch(db: &Db, id: Uuid) -> Result<Option<Item>, Error> {
    match db {
        Db::Postgres(pool) => sqlx::query(&format!("SELECT {COLUMNS} FROM items WHERE id = $1"))
            .bind(id)
            .fetch_optional(pool)
            .await?
            .as_ref()
            .map(from_pg)
            .transpose(),
        Db::Sqlite(pool, _) => sqlx::query(&format!("SELECT {COLUMNS} FROM items WHERE id = ?"))
            .bind(id.to_string())
            .fetch_optional(pool)
            .await?
            .as_ref()
            .map(from_sqlite)
            .transpose(),
    }
}

/// The item `id`, if `actor` may read it (else [`Error::NotFound`]).
pub async fn get(db: &Db, actor: &User, id: Uuid) -> Result<Item, Error> {
    let scope = allowed(actor, Action::ItemsRead)?;
    match fetch(db, id).await? {
        Some(item) if scope.covers(actor.id, item.owner_id) => Ok(item),
        _ => Err(Error::NotFound),
    }
}

/// A page of the items `actor` may read, newest first, matching `query` (a substring of the name
/// or description, any case); with the cursor of the next page, if any.
pub async fn list(
    db: &Db,
    actor: &User,
    limit: u32,
    cursor: Option<&str>,
    query: Option<&str>,
) -> Result<(Vec<Item>, Option<String>), Error> {
    let scope = allowed(actor, Action::ItemsRead)?;
    let limit = limit.clamp(1, MAX_LIMIT);
    // `?cursor=` (a client templating a `null` cursor) means the first page.
    let after = cursor
        .filter(|c| !c.is_empty())
        .map(decode_cursor)
        .transpose()?;
    let pattern = match query.map(str::trim).filter(|q| !q.is_empty()) {
        Some(q) if q.chars().count() > MAX_QUERY_CHARS || q.chars().any(char::is_control) => {
            return Err(Error::InvalidFields(vec![FieldError::new(
                "q",
                format!("must be at most {MAX_QUERY_CHARS} characters, without control characters"),
            )]));
        }
        Some(q) => Some(format!("%{}%", escape_like(&q.to_lowercase()))),
        None => None,
    };
    let owner = (scope == Scope::Own).then_some(actor.id);
    let fetch_n = i64::from(limit) + 1;
    let (filter_owner, filter_search, filter_after) =
        (owner.is_some(), pattern.is_some(), after.is_some());
    let mut items = match db {
        Db::Postgres(pool) => {
            let sql = list_sql(filter_owner, filter_search, filter_after, |n| {
                format!("${n}")
            });
            let mut query = sqlx::query(&sql);
            if let Some(owner) = owner {
                query = query.bind(owner);
            }
            if let Some(pattern) = &pattern {
                query = query.bind(pattern);
            }
            if let Some((t, id)) = after {
                query = query.bind(t).bind(id);
            }
            query
                .bind(fetch_n)
                .fetch_all(pool)
                .await?
                .iter()
                .map(from_pg)
                .collect::<Result<Vec<_>, _>>()?
        }
        Db::Sqlite(_, file) => {
            // A hot read, on this thread (`store::SqliteFile`).
            let sql = list_sql(filter_owner, filter_search, filter_after, |n| {
                format!("?{n}")
            });
            let mut params: Vec<rusqlite::types::Value> = Vec::with_capacity(5);
            if let Some(owner) = owner {
                params.push(owner.to_string().into());
            }
            if let Some(pattern) = pattern {
                params.push(pattern.into());
            }
            if let Some((t, id)) = after {
                params.push(timestamp_text(t).into());
                params.push(id.to_string().into());
            }
            params.push(fetch_n.into());
            file.read(|conn| {
                let mut statement = conn.prepare_cached(&sql)?;
                let rows = statement.query_map(rusqlite::params_from_iter(params), |row| {
                    Ok(SqliteItem {
                        id: row.get(0)?,
                        owner_id: row.get(1)?,
                        name: row.get(2)?,
                        description: row.get(3)?,
                        created_at: row.get(4)?,
                        updated_at: row.get(5)?,
                        version: row.get(6)?,
                    })
                })?;
                rows.collect::<rusqlite::Result<Vec<_>>>()
            })?
            .into_iter()
            .map(SqliteItem::into_item)
            .collect::<Result<Vec<_>, _>>()?
        }
    };
    let next = if items.len() > limit as usize {
        items.truncate(limit as usize);
        items.last().map(encode_cursor)
    } else {
        None
    };
    Ok((items, next))
}

/// A list's query, naming only the filters in use (owner, search, cursor, in that order, then the
/// limit), so the database walks `items_owner_newest` or `items_newest` in order and stops after
/// a page instead of filtering and sorting every item. `param(n)` writes the dialect's `n`th
/// placeholder.
fn list_sql(owner: bool, search: bool, after: bool, param: fn(usize) -> String) -> String {
    let mut n = 0;
    let mut next = || {
        n += 1;
        param(n)
    };
    let mut conditions = Vec::new();
    if owner {
        conditions.push(format!("owner_id = {}", next()));
    }
    if search {
        let p = next();
        conditions.push(format!(
            "(lower(name) LIKE {p} ESCAPE '\\' OR lower(description) LIKE {p} ESCAPE '\\')"
        ));
    }
    if after {
        let (t, id) = (next(), next());
        conditions.push(format!("(created_at, id) < ({t}, {id})"));
    }
    let filter = if conditions.is_empty() {
        String::new()
    } else {
        format!(" WHERE {}", conditions.join(" AND "))
    };
    format!(
        "SELECT {COLUMNS} FROM items{filter} ORDER BY created_at DESC, id DESC LIMIT {}",
        next()
    )
}

fn escape_like(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The form of a cursor, for the API's description: the last item's creation time in
/// microseconds since 1970 and its id, or nothing (the first page). Every string of this form is
/// a cursor that works (it names a place in the order, not a stored object), so a client can only
/// get it wrong by sending something else.
pub const CURSOR_PATTERN: &str = "^([0-9]{1,16}\\.[0-9a-f]{32})?$";

/// The cursor that continues after `item` (timestamps are stored to the microsecond).
fn encode_cursor(item: &Item) -> String {
    let micros = item.created_at.unix_timestamp_nanos() / 1000;
    format!("{micros}.{}", item.id.simple())
}

fn decode_cursor(raw: &str) -> Result<(OffsetDateTime, Uuid), Error> {
    let bad = || {
        Error::InvalidFields(vec![FieldError::new(
            "cursor",
            "is not a cursor this API gave out",
        )])
    };
    let (micros, id) = raw.split_once('.').ok_or_else(bad)?;
    let well_formed = (1..=16).contains(&micros.len())
        && micros.bytes().all(|b| b.is_ascii_digit())
        && id.len() == 32
        && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    if !well_formed {
        return Err(bad());
    }
    let micros: i128 = micros.parse().map_err(|_| bad())?;
    Ok((
        OffsetDateTime::from_unix_timestamp_nanos(micros * 1000).map_err(|_| bad())?,
        Uuid::parse_str(id).map_err(|_| bad())?,
    ))
}

/// Applies `changes` to item `id` if `actor` may edit it and it is still at `if_match` (when
/// given); returns the new state.
pub async fn update(
    db: &Db,
    actor: &User,
    id: Uuid,
    changes: &Changes,
    if_match: Option<i64>,
    now: OffsetDateTime,
    ctx: &AuditContext,
) -> Result<Item, Error> {
    let valid = validate(changes)?;
    let before = get(db, actor, id).await?;
    let scope = allowed(actor, Action::ItemsEdit)?;
    if !scope.covers(actor.id, before.owner_id) {
        return Err(Error::Forbidden(
            "Your role does not allow changing this item.".into(),
        ));
    }
    if if_match.is_some_and(|v| v != before.version) {
        return Err(Error::PreconditionFailed);
    }
    let after = Item {
        name: valid.name.unwrap_or_else(|| before.name.clone()),
        description: valid
            .description
            .unwrap_or_else(|| before.description.clone()),
        updated_at: now,
        version: before.version + 1,
        ..before.clone()
    };
    let mut tx = db.begin().await?;
    // Conditional on the version read: a concurrent change makes this one fail, not vanish.
    let updated = match &mut tx {
        Tx::Postgres(tx) => sqlx::query("UPDATE items SET name = $3, description = $4, updated_at = $5, version = version + 1 WHERE id = $1 AND version = $2")
            .bind(id)
            .bind(before.version)
            .bind(&after.name)
            .bind(&after.description)
            .bind(now)
            .execute(&mut **tx)
            .await?
            .rows_affected(),
        Tx::Sqlite(tx, _) => sqlx::query("UPDATE items SET name = ?3, description = ?4, updated_at = ?5, version = version + 1 WHERE id = ?1 AND version = ?2")
            .bind(id.to_string())
            .bind(before.version)
            .bind(&after.name)
            .bind(&after.description)
            .bind(timestamp_text(now))
            .execute(&mut **tx)
            .await?
            .rows_affected(),
    };
    if updated == 0 {
        return Err(Error::PreconditionFailed);
    }
    record(&mut tx, ctx, "item.update", id, Some(&before), Some(&after)).await?;
    tx.commit().await?;
    Ok(after)
}

/// Deletes item `id` if `actor` may, and it is still at `if_match` (when given).
pub async fn delete(
    db: &Db,
    actor: &User,
    id: Uuid,
    if_match: Option<i64>,
    ctx: &AuditContext,
) -> Result<(), Error> {
    let before = get(db, actor, id).await?;
    let scope = allowed(actor, Action::ItemsDelete)?;
    if !scope.covers(actor.id, before.owner_id) {
        return Err(Error::Forbidden(
            "Your role does not allow deleting this item.".into(),
        ));
    }
    if if_match.is_some_and(|v| v != before.version) {
        return Err(Error::PreconditionFailed);
    }
    let mut tx = db.begin().await?;
    let deleted = match &mut tx {
        Tx::Postgres(tx) => sqlx::query("DELETE FROM items WHERE id = $1 AND version = $2")
            .bind(id)
            .bind(before.version)
            .execute(&mut **tx)
            .await?
            .rows_affected(),
        Tx::Sqlite(tx, _) => sqlx::query("DELETE FROM items WHERE id = ? AND version = ?")
            .bind(id.to_string())
            .bind(before.version)
            .execute(&mut **tx)
            .await?
            .rows_affected(),
    };
    if deleted == 0 {
        return Err(Error::PreconditionFailed);
    }
    record(&mut tx, ctx, "item.delete", id, Some(&before), None).await?;
    tx.commit().await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn changes(name: &str, description: &str) -> Changes {
        Changes {
            name: Some(name.into()),
            description: Some(description.into()),
        }
    }

    #[test]
    fn fields_are_trimmed_and_counted_in_characters() {
        let ok = validate(&changes("  Été  ", "  A café.  ")).unwrap();
        assert_eq!(ok.name.as_deref(), Some("Été"));
        assert_eq!(ok.description.as_deref(), Some("A café."));
        assert!(validate(&changes(&"é".repeat(100), "valid text")).is_ok());
        let Err(Error::InvalidFields(errors)) = validate(&changes("ab", "abcd")) else {
            panic!("short fields accepted");
        };
        let fields: Vec<_> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["name", "description"], "every problem at once");
        assert!(validate(&changes(&"é".repeat(101), "valid text")).is_err());
        assert!(validate(&changes("bell\u{7}name", "valid text")).is_err());
        assert!(
            validate(&changes("   ", "valid text")).is_err(),
            "blank after trimming"
        );
    }

    #[test]
    fn search_text_is_never_a_pattern() {
        assert_eq!(escape_like("50%_off\\"), "50\\%\\_off\\\\");
    }

    #[test]
    fn cursors_round_trip_and_garbage_is_refused() {
        let item = Item {
            id: Uuid::new_v4(),
            owner_id: Uuid::new_v4(),
            name: "n".into(),
            description: "d".into(),
            created_at: crate::store::now(),
            updated_at: crate::store::now(),
            version: 1,
        };
        assert_eq!(
            decode_cursor(&encode_cursor(&item)).unwrap(),
            (item.created_at, item.id)
        );
        assert!(decode_cursor("not-a-cursor").is_err());
    }

    /// A page is read off an index in order, never by sorting every item (which would make each
    /// page cost as much as the whole table).
    #[tokio::test]
    async fn sqlite_walks_an_index_for_every_kind_of_list() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::connect(&format!("sqlite://{}/t.db", dir.path().display()), 1)
            .await
            .unwrap();
        db.migrate().await.unwrap();
        let Db::Sqlite(pool, _) = &db else {
            unreachable!()
        };
        for owner in [false, true] {
            for search in [false, true] {
                for after in [false, true] {
                    let sql = list_sql(owner, search, after, |n| format!("?{n}"));
                    let rows = sqlx::query(&format!("EXPLAIN QUERY PLAN {sql}"))
                        .fetch_all(pool)
                        .await
                        .unwrap();
                    let plan: Vec<String> = rows.iter().map(|r| r.get("detail")).collect();
                    let plan = plan.join(" / ");
                    let index = if owner {
                        "items_owner_newest"
                    } else {
                        "items_newest"
                    };
                    assert!(plan.contains(index), "{sql}: {plan}");
                    assert!(!plan.contains("TEMP B-TREE"), "{sql} sorts: {plan}");
                }
            }
        }
    }
}
