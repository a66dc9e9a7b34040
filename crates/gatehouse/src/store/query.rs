//! One SQL text for both backends: [`query`] binds values the way each dialect stores them and
//! [`Row`] reads them back, so a query that differs only in placeholders and types is written
//! once.
//!
//! SQL is written with PostgreSQL's numbered placeholders (`$1`, `$2` …), which SQLite reads as
//! the same numbered parameters. The values whose storage differs are bound through named
//! methods: UUIDs ([`Query::bind_uuid`]: native `uuid` in PostgreSQL, `TEXT` in SQLite) and
//! times ([`Query::bind_time`]: `timestamptz` in PostgreSQL, [`super::timestamp_text`] in
//! SQLite); everything else (text, integers, booleans, bytes and their `Option`s) through
//! [`Query::bind`]. Where the dialects really differ (`FOR UPDATE`, upserts of different forms),
//! [`Dialect::pick`] chooses between two texts.
//!
//! A query runs either on the pool ([`Db`]: autocommit, for reads and single statements) or in
//! the caller's transaction ([`Tx`]). It binds straight into sqlx's arguments: no copy of the
//! values, no extra round trip.

use rusqlite::types::{FromSql, ToSql, ToSqlOutput, Value, ValueRef};
use sqlx::postgres::{PgArguments, PgRow};
use sqlx::{Decode, Encode, PgPool, Postgres, Row as _, Type};
use time::OffsetDateTime;
use uuid::Uuid;

use super::postgres::PgTurn;
use super::sqlite_file::{self, LiteRow, LiteTurn, SqliteFile};
use super::{Backend, Db, Tx, TxInner, parse_timestamp, timestamp_text};
use crate::error::Error;

/// Which SQL dialect a database speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    /// SQLite.
    Sqlite,
    /// PostgreSQL.
    Postgres,
}

impl Dialect {
    /// The text for this dialect, where the two really differ.
    pub fn pick<'a>(self, sqlite: &'a str, postgres: &'a str) -> &'a str {
        match self {
            Self::Sqlite => sqlite,
            Self::Postgres => postgres,
        }
    }
}

/// Where a query runs: the pool, or an open transaction.
#[derive(Debug)]
pub enum On<'c> {
    /// Autocommit on the pool.
    Db(&'c Db),
    /// In the caller's transaction.
    Tx(&'c mut Tx),
}

impl<'c> From<&'c Db> for On<'c> {
    fn from(db: &'c Db) -> Self {
        Self::Db(db)
    }
}

impl<'c> From<&'c mut Tx> for On<'c> {
    fn from(tx: &'c mut Tx) -> Self {
        Self::Tx(tx)
    }
}

impl On<'_> {
    /// The dialect of the database underneath.
    pub fn dialect(&self) -> Dialect {
        match self {
            Self::Db(db) => db.dialect(),
            Self::Tx(tx) => tx.dialect(),
        }
    }
}

type PgQuery<'q> = sqlx::query::Query<'q, Postgres, PgArguments>;

/// Where an SQLite statement runs: on the file (a read, or a write of its own) or in a turn.
enum LiteOn<'c> {
    File(&'c Db, &'c std::sync::Arc<SqliteFile>),
    Turn(&'c mut LiteTurn),
}

struct LiteQuery<'q, 'c> {
    on: LiteOn<'c>,
    sql: &'q str,
    values: Vec<Value>,
    /// The first value that could not be bound, reported when the query runs.
    bad_value: Option<rusqlite::Error>,
}

enum PgOn<'c> {
    Pool(&'c PgPool),
    Turn(&'c mut PgTurn),
}

enum Bound<'q, 'c> {
    Sqlite(LiteQuery<'q, 'c>),
    Postgres(PgOn<'c>, PgQuery<'q>),
}

/// A statement with its values, ready to run where it was made for. See the module doc.
#[must_use = "a query does nothing until it is executed or fetched"]
pub struct Query<'q, 'c>(Bound<'q, 'c>);

impl std::fmt::Debug for Query<'_, '_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Query").finish_non_exhaustive()
    }
}

/// `sql` (with `$1`, `$2` … placeholders) to run on `on`: a `&Db` or a `&mut Tx`.
pub fn query<'q, 'c>(on: impl Into<On<'c>>, sql: &'q str) -> Query<'q, 'c> {
    let lite = |on| {
        Bound::Sqlite(LiteQuery {
            on,
            sql,
            values: Vec::new(),
            bad_value: None,
        })
    };
    Query(match on.into() {
        On::Db(db @ Db(Backend::Sqlite(_, file))) => lite(LiteOn::File(db, file)),
        On::Db(Db(Backend::Postgres(pool, _))) => {
            Bound::Postgres(PgOn::Pool(pool), sqlx::query(sql))
        }
        On::Tx(Tx(TxInner::Sqlite(turn))) => lite(LiteOn::Turn(turn)),
        On::Tx(Tx(TxInner::Postgres(turn))) => Bound::Postgres(PgOn::Turn(turn), sqlx::query(sql)),
    })
}

impl LiteQuery<'_, '_> {
    fn push(&mut self, value: &dyn ToSql) {
        match value.to_sql() {
            Ok(ToSqlOutput::Borrowed(v)) => self.values.push(Value::from(v)),
            Ok(ToSqlOutput::Owned(v)) => self.values.push(v),
            Ok(_) => {
                self.values.push(Value::Null);
                self.bad_value
                    .get_or_insert(rusqlite::Error::ToSqlConversionFailure(
                        "a value SQLite cannot store here".into(),
                    ));
            }
            Err(e) => {
                self.values.push(Value::Null);
                self.bad_value.get_or_insert(e);
            }
        }
    }

    /// Runs the statement: its rows (the first alone when `first_only`) and how many rows it
    /// changed. A statement on the file reads on a read connection; one that writes (or is
    /// `execute`d: `writes`) runs as a transaction of its own on the writer.
    async fn run(self, first_only: bool, writes: bool) -> Result<(Vec<LiteRow>, u64), Error> {
        if let Some(e) = self.bad_value {
            return Err(Error::Internal(anyhow::anyhow!(
                "binding a value for SQLite: {e}"
            )));
        }
        match self.on {
            LiteOn::Turn(turn) => sqlite_file::run(turn, self.sql, &self.values, first_only).await,
            LiteOn::File(db, file) => {
                if !writes {
                    if let Some(rows) = file.read_rows(self.sql, &self.values, first_only)? {
                        return Ok((rows, 0));
                    }
                }
                let mut tx = db.begin().await?;
                let TxInner::Sqlite(turn) = &mut tx.0 else {
                    return Err(Error::Internal(anyhow::anyhow!(
                        "an SQLite file without a writer"
                    )));
                };
                let result = sqlite_file::run(turn, self.sql, &self.values, first_only).await?;
                tx.commit().await?;
                Ok(result)
            }
        }
    }
}

impl<'q, 'c> Query<'q, 'c> {
    /// Binds a value both backends store alike: text, integers, booleans, bytes, `Option`s of
    /// them.
    pub fn bind<T>(self, value: T) -> Self
    where
        T: 'q + Send + ToSql + Encode<'q, Postgres> + Type<Postgres>,
    {
        Self(match self.0 {
            Bound::Sqlite(mut q) => {
                q.push(&value);
                Bound::Sqlite(q)
            }
            Bound::Postgres(on, q) => Bound::Postgres(on, q.bind(value)),
        })
    }

    /// Binds a UUID: `uuid` in PostgreSQL, its hyphenated text in SQLite.
    pub fn bind_uuid(self, value: Uuid) -> Self {
        Self(match self.0 {
            Bound::Sqlite(mut q) => {
                q.values.push(Value::Text(value.to_string()));
                Bound::Sqlite(q)
            }
            Bound::Postgres(on, q) => Bound::Postgres(on, q.bind(value)),
        })
    }

    /// Binds a UUID or `NULL`.
    pub fn bind_opt_uuid(self, value: Option<Uuid>) -> Self {
        Self(match self.0 {
            Bound::Sqlite(mut q) => {
                q.values
                    .push(value.map_or(Value::Null, |v| Value::Text(v.to_string())));
                Bound::Sqlite(q)
            }
            Bound::Postgres(on, q) => Bound::Postgres(on, q.bind(value)),
        })
    }

    /// Binds a time: `timestamptz` in PostgreSQL, [`timestamp_text`] in SQLite.
    pub fn bind_time(self, value: OffsetDateTime) -> Self {
        Self(match self.0 {
            Bound::Sqlite(mut q) => {
                q.values.push(Value::Text(timestamp_text(value)));
                Bound::Sqlite(q)
            }
            Bound::Postgres(on, q) => Bound::Postgres(on, q.bind(value)),
        })
    }

    /// Binds a time or `NULL`.
    pub fn bind_opt_time(self, value: Option<OffsetDateTime>) -> Self {
        Self(match self.0 {
            Bound::Sqlite(mut q) => {
                q.values
                    .push(value.map_or(Value::Null, |v| Value::Text(timestamp_text(v))));
                Bound::Sqlite(q)
            }
            Bound::Postgres(on, q) => Bound::Postgres(on, q.bind(value)),
        })
    }

    /// Runs the statement; returns how many rows it changed.
    pub async fn execute(self) -> Result<u64, Error> {
        Ok(match self.0 {
            Bound::Sqlite(q) => q.run(false, true).await?.1,
            Bound::Postgres(PgOn::Pool(p), q) => q.execute(p).await?.rows_affected(),
            Bound::Postgres(PgOn::Turn(t), q) => {
                let result = q.execute(&mut t.conn()?.conn).await;
                in_turn(t, result).await?.rows_affected()
            }
        })
    }

    /// The first row, if any.
    pub async fn fetch_optional(self) -> Result<Option<Row>, Error> {
        Ok(match self.0 {
            Bound::Sqlite(q) => q.run(true, false).await?.0.pop().map(Row::Sqlite),
            Bound::Postgres(PgOn::Pool(p), q) => q.fetch_optional(p).await?.map(Row::Postgres),
            Bound::Postgres(PgOn::Turn(t), q) => {
                let result = q.fetch_optional(&mut t.conn()?.conn).await;
                in_turn(t, result).await?.map(Row::Postgres)
            }
        })
    }

    /// The one row; an error if there is none.
    pub async fn fetch_one(self) -> Result<Row, Error> {
        match self.0 {
            Bound::Sqlite(q) => q
                .run(true, false)
                .await?
                .0
                .pop()
                .map(Row::Sqlite)
                .ok_or(Error::Database(sqlx::Error::RowNotFound)),
            Bound::Postgres(PgOn::Pool(p), q) => Ok(Row::Postgres(q.fetch_one(p).await?)),
            Bound::Postgres(PgOn::Turn(t), q) => {
                let result = q.fetch_one(&mut t.conn()?.conn).await;
                Ok(Row::Postgres(in_turn(t, result).await?))
            }
        }
    }

    /// Every row.
    pub async fn fetch_all(self) -> Result<Vec<Row>, Error> {
        Ok(match self.0 {
            Bound::Sqlite(q) => wrap(q.run(false, false).await?.0, Row::Sqlite),
            Bound::Postgres(PgOn::Pool(p), q) => wrap(q.fetch_all(p).await?, Row::Postgres),
            Bound::Postgres(PgOn::Turn(t), q) => {
                let result = q.fetch_all(&mut t.conn()?.conn).await;
                wrap(in_turn(t, result).await?, Row::Postgres)
            }
        })
    }
}

/// A statement's outcome in a PostgreSQL turn: a lost connection ends the turn's group.
async fn in_turn<T>(turn: &mut PgTurn, result: Result<T, sqlx::Error>) -> Result<T, Error> {
    if let Err(e) = &result {
        turn.after_error(crate::error::database_unreachable(e))
            .await;
    }
    Ok(result?)
}

fn wrap<R>(rows: Vec<R>, f: impl Fn(R) -> Row) -> Vec<Row> {
    rows.into_iter().map(f).collect()
}

/// A row of either backend, read by column index.
pub enum Row {
    /// From SQLite.
    Sqlite(LiteRow),
    /// From PostgreSQL.
    Postgres(PgRow),
}

impl std::fmt::Debug for Row {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Row").finish_non_exhaustive()
    }
}

impl Row {
    /// A value both backends store alike (see [`Query::bind`]).
    pub fn get<'r, T>(&'r self, column: usize) -> Result<T, Error>
    where
        T: FromSql + Decode<'r, Postgres> + Type<Postgres>,
    {
        match self {
            Self::Sqlite(row) => T::column_result(lite_value(row, column)?).map_err(|e| {
                Error::Internal(anyhow::anyhow!("reading column {column} from SQLite: {e}"))
            }),
            Self::Postgres(row) => Ok(row.try_get(column)?),
        }
    }

    /// A UUID (see [`Query::bind_uuid`]).
    pub fn uuid(&self, column: usize) -> Result<Uuid, Error> {
        match self {
            Self::Sqlite(row) => parse_uuid(lite_text(row, column)?),
            Self::Postgres(row) => Ok(row.try_get(column)?),
        }
    }

    /// A UUID or `NULL`.
    pub fn opt_uuid(&self, column: usize) -> Result<Option<Uuid>, Error> {
        match self {
            Self::Sqlite(row) => lite_opt_text(row, column)?.map(parse_uuid).transpose(),
            Self::Postgres(row) => Ok(row.try_get(column)?),
        }
    }

    /// A time (see [`Query::bind_time`]).
    pub fn time(&self, column: usize) -> Result<OffsetDateTime, Error> {
        match self {
            Self::Sqlite(row) => parse_timestamp(lite_text(row, column)?),
            Self::Postgres(row) => Ok(row.try_get(column)?),
        }
    }

    /// A time or `NULL`.
    pub fn opt_time(&self, column: usize) -> Result<Option<OffsetDateTime>, Error> {
        match self {
            Self::Sqlite(row) => lite_opt_text(row, column)?.map(parse_timestamp).transpose(),
            Self::Postgres(row) => Ok(row.try_get(column)?),
        }
    }
}

/// Text stored in SQLite (UUIDs and times), read without a copy.
fn lite_text(row: &LiteRow, column: usize) -> Result<&str, Error> {
    lite_opt_text(row, column)?
        .ok_or_else(|| Error::Internal(anyhow::anyhow!("column {column} from SQLite is NULL")))
}

fn lite_opt_text(row: &LiteRow, column: usize) -> Result<Option<&str>, Error> {
    match lite_value(row, column)? {
        ValueRef::Null => Ok(None),
        ValueRef::Text(text) => std::str::from_utf8(text)
            .map(Some)
            .map_err(|e| Error::Internal(anyhow::anyhow!("column {column} from SQLite: {e}"))),
        _ => Err(Error::Internal(anyhow::anyhow!(
            "column {column} from SQLite is not text"
        ))),
    }
}

fn lite_value(row: &LiteRow, column: usize) -> Result<ValueRef<'_>, Error> {
    row.get(column).map(ValueRef::from).ok_or_else(|| {
        Error::Internal(anyhow::anyhow!(
            "column {column} of a row of {} from SQLite",
            row.len()
        ))
    })
}

fn parse_uuid(s: &str) -> Result<Uuid, Error> {
    Uuid::parse_str(s)
        .map_err(|e| Error::Internal(anyhow::anyhow!("bad UUID `{s}` in the database: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SQLite reads `$N` as the N-th bound value, repeated or out of order, as PostgreSQL does.
    #[tokio::test]
    async fn numbered_placeholders_work_on_sqlite() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::connect(&format!("sqlite://{}/t.db", dir.path().display()), 1)
            .await
            .unwrap();
        let id = Uuid::new_v4();
        let t = super::super::now();
        let row = query(&db, "SELECT $2, $1, $2, $3")
            .bind_uuid(id)
            .bind(7_i64)
            .bind_time(t)
            .fetch_one()
            .await
            .unwrap();
        assert_eq!(row.get::<i64>(0).unwrap(), 7);
        assert_eq!(row.uuid(1).unwrap(), id);
        assert_eq!(row.get::<i64>(2).unwrap(), 7);
        assert_eq!(row.time(3).unwrap(), t);
    }
}
