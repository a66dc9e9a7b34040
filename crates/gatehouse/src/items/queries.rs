//! The `items` table.

use time::OffsetDateTime;
use uuid::Uuid;

use super::Item;
use crate::error::Error;
use crate::store::{Db, Row, Tx, UNICODE_LOWER};

const COLUMNS: &str = "id, owner_id, name, description, created_at, updated_at, version";

fn item(row: &Row) -> Result<Item, Error> {
    Ok(Item {
        id: row.uuid(0)?,
        owner_id: row.uuid(1)?,
        name: row.get(2)?,
        description: row.get(3)?,
        created_at: row.time(4)?,
        updated_at: row.time(5)?,
        version: row.get(6)?,
    })
}

#[tracing::instrument(level = "debug", skip_all)]
pub(super) async fn insert(tx: &mut Tx, item: &Item) -> Result<(), Error> {
    tx.query(
        "INSERT INTO items (id, owner_id, name, description, created_at, updated_at, version) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind_uuid(item.id)
    .bind_uuid(item.owner_id)
    .bind(item.name.as_str())
    .bind(item.description.as_str())
    .bind_time(item.created_at)
    .bind_time(item.updated_at)
    .bind(item.version)
    .execute()
    .await
    .map(drop)
}

#[tracing::instrument(level = "debug", skip_all)]
pub(super) async fn fetch(db: &Db, id: Uuid) -> Result<Option<Item>, Error> {
    db.query("SELECT id, owner_id, name, description, created_at, updated_at, version FROM items WHERE id = $1")
        .bind_uuid(id)
        .fetch_optional()
        .await?
        .as_ref()
        .map(item)
        .transpose()
}

/// Writes `after` if the item is still at `version`; whether it was.
#[tracing::instrument(level = "debug", skip_all)]
pub(super) async fn update(tx: &mut Tx, version: i64, after: &Item) -> Result<bool, Error> {
    let n = tx
        .query(
            "UPDATE items SET name = $3, description = $4, updated_at = $5, version = version + 1 \
             WHERE id = $1 AND version = $2",
        )
        .bind_uuid(after.id)
        .bind(version)
        .bind(after.name.as_str())
        .bind(after.description.as_str())
        .bind_time(after.updated_at)
        .execute()
        .await?;
    Ok(n > 0)
}

/// Deletes the item if it is still at `version`; whether it was.
#[tracing::instrument(level = "debug", skip_all)]
pub(super) async fn delete(tx: &mut Tx, id: Uuid, version: i64) -> Result<bool, Error> {
    let n = tx
        .query("DELETE FROM items WHERE id = $1 AND version = $2")
        .bind_uuid(id)
        .bind(version)
        .execute()
        .await?;
    Ok(n > 0)
}

/// A page of items, newest first, after `after` (a creation time and id), owned by `owner` and
/// matching the `LIKE` `pattern` when given; `fetch_n` at most.
#[tracing::instrument(level = "debug", skip_all)]
pub(super) async fn list(
    db: &Db,
    owner: Option<Uuid>,
    pattern: Option<String>,
    after: Option<(OffsetDateTime, Uuid)>,
    fetch_n: i64,
) -> Result<Vec<Item>, Error> {
    let lower = db.dialect().pick(UNICODE_LOWER, "lower");
    let sql = list_sql(owner.is_some(), pattern.is_some(), after.is_some(), lower);
    let mut query = db.query(&sql);
    if let Some(owner) = owner {
        query = query.bind_uuid(owner);
    }
    if let Some(pattern) = &pattern {
        query = query.bind(pattern.as_str());
    }
    if let Some((t, id)) = after {
        query = query.bind_time(t).bind_uuid(id);
    }
    query
        .bind(fetch_n)
        .fetch_all()
        .await?
        .iter()
        .map(item)
        .collect()
}

/// A list's query, naming only the filters in use (owner, search, cursor, in that order, then the
/// limit), so the database walks `items_owner_newest` or `items_newest` in order and stops after
/// a page instead of filtering and sorting every item. The search compares the pattern with the
/// name and description lower-cased by the dialect's Unicode-aware function `lower`.
pub(super) fn list_sql(owner: bool, search: bool, after: bool, lower: &str) -> String {
    let mut n = 0;
    let mut next = || {
        n += 1;
        format!("${n}")
    };
    let mut conditions = Vec::new();
    if owner {
        conditions.push(format!("owner_id = {}", next()));
    }
    if search {
        let p = next();
        conditions.push(format!(
            "({lower}(name) LIKE {p} ESCAPE '\\' OR {lower}(description) LIKE {p} ESCAPE '\\')"
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A page is read off an index in order, never by sorting every item (which would make each
    /// page cost as much as the whole table).
    #[tokio::test]
    async fn sqlite_walks_an_index_for_every_kind_of_list() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::connect(&format!("sqlite://{}/t.db", dir.path().display()), 1)
            .await
            .unwrap();
        db.migrate().await.unwrap();
        for owner in [false, true] {
            for search in [false, true] {
                for after in [false, true] {
                    let sql = list_sql(owner, search, after, UNICODE_LOWER);
                    let explain = format!("EXPLAIN QUERY PLAN {sql}");
                    let plan: Vec<String> = db
                        .sqlite_file()
                        .unwrap()
                        .read(|c| {
                            let mut statement = c.prepare(&explain)?;
                            let nulls =
                                vec![rusqlite::types::Value::Null; statement.parameter_count()];
                            let rows = statement
                                .query_map(rusqlite::params_from_iter(nulls), |r| {
                                    r.get::<_, String>("detail")
                                })?;
                            rows.collect()
                        })
                        .unwrap();
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
