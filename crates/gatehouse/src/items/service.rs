//! The item operations: permission, validation, the change and its audit record, in one
//! transaction; and the reads, with an audit record when they show someone else's items.
//!
//! # Audited reads (ASVS V8.3.5)
//! A manager or admin reading another user's item ([`get`]) writes an `item.read` record naming
//! the item and its owner. A list ([`list`]) whose page holds anyone else's items writes ONE
//! `item.list` record per request, naming the filter (`q`, `cursor`, `limit`), how many items
//! the page returned and how many of them were others', not one record per row: a page of 100
//! would otherwise be 100 appends to the hash chain, each serialized behind its lock. Reading
//! only your own items writes nothing. The cost is one audit append (one short write
//! transaction) per such page or item a manager opens.

use time::OffsetDateTime;
use uuid::Uuid;

use super::{Changes, Item, MAX_LIMIT, MAX_QUERY_CHARS, queries};
use crate::access::{self, Action, Check, Scope};
use crate::audit::{self, AuditContext, AuditEvent};
use crate::error::Error;
use crate::error::FieldError;
use crate::identity::User;
use crate::store::{Db, Tx};

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
    access::require(actor, action)
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
    queries::insert(&mut tx, &item).await?;
    record(&mut tx, ctx, "item.create", item.id, None, Some(&item)).await?;
    tx.commit().await?;
    Ok(item)
}

/// The item `id`, if `actor` may read it (else [`Error::NotFound`]), to show to them: reading
/// someone else's item is audited as `item.read`.
pub async fn get(db: &Db, actor: &User, id: Uuid, ctx: &AuditContext) -> Result<Item, Error> {
    let item = visible(db, actor, id).await?;
    if item.owner_id != actor.id {
        audit::record_alone(
            db,
            ctx,
            AuditEvent {
                action: "item.read",
                entity_type: "item",
                entity_id: Some(id.to_string()),
                changes: serde_json::json!({ "owner_id": item.owner_id }),
            },
        )
        .await?;
    }
    Ok(item)
}

/// The item `id`, if `actor` may read it (else [`Error::NotFound`]), for a change (whose own
/// record is the audit).
async fn visible(db: &Db, actor: &User, id: Uuid) -> Result<Item, Error> {
    let scope = allowed(actor, Action::ItemsRead)?;
    match queries::fetch(db, id).await? {
        Some(item) if scope.covers(actor.id, item.owner_id) => Ok(item),
        _ => Err(Error::NotFound),
    }
}

/// A page of the items `actor` may read, newest first, matching `query` (a substring of the name
/// or description, any case); with the cursor of the next page, if any. A page that holds
/// someone else's items is audited as one `item.list` record.
pub async fn list(
    db: &Db,
    actor: &User,
    limit: u32,
    cursor: Option<&str>,
    query: Option<&str>,
    ctx: &AuditContext,
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
    let mut items = queries::list(db, owner, pattern, after, fetch_n).await?;
    let next = if items.len() > limit as usize {
        items.truncate(limit as usize);
        items.last().map(encode_cursor)
    } else {
        None
    };
    let others = items.iter().filter(|i| i.owner_id != actor.id).count();
    if others > 0 {
        audit::record_alone(
            db,
            ctx,
            AuditEvent {
                action: "item.list",
                entity_type: "item",
                entity_id: None,
                changes: serde_json::json!({
                    "filter": {
                        "q": query.map(str::trim).filter(|q| !q.is_empty()),
                        "cursor": cursor.filter(|c| !c.is_empty()),
                        "limit": limit,
                    },
                    "count": items.len(),
                    "others": others,
                }),
            },
        )
        .await?;
    }
    Ok((items, next))
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
    let before = visible(db, actor, id).await?;
    let scope = allowed(actor, Action::ItemsEdit)?;
    if !scope.covers(actor.id, before.owner_id) {
        return Err(Error::denied(
            actor.id,
            Action::ItemsEdit.as_str(),
            Check::Object,
            "Your role does not allow changing this item.",
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
    let updated = queries::update(&mut tx, before.version, &after).await?;
    if !updated {
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
    let before = visible(db, actor, id).await?;
    let scope = allowed(actor, Action::ItemsDelete)?;
    if !scope.covers(actor.id, before.owner_id) {
        return Err(Error::denied(
            actor.id,
            Action::ItemsDelete.as_str(),
            Check::Object,
            "Your role does not allow deleting this item.",
        ));
    }
    if if_match.is_some_and(|v| v != before.version) {
        return Err(Error::PreconditionFailed);
    }
    let mut tx = db.begin().await?;
    let deleted = queries::delete(&mut tx, id, before.version).await?;
    if !deleted {
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
}
