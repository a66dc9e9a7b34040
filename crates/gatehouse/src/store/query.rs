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

use sqlx::postgres::{PgArguments, PgRow};
use sqlx::sqlite::{SqliteArguments, SqliteRow};
use sqlx::{ColumnIndex, Decode, Encode, PgConnection, Postgres, Sqlite, SqliteConnection, Type};
use sqlx::{PgPool, Row as _, SqlitePool};
use time::OffsetDateTime;
use uuid::Uuid;

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

type SqliteQuery<'q> = sqlx::query::Query<'q, Sqlite, SqliteArguments<'q>>;
type PgQuery<'q> = sqlx::query::Query<'q, Postgres, PgArguments>;

enum SqliteOn<'c> {
    Pool(&'c SqlitePool),
    Conn(&'c mut SqliteConnection),
}

enum PgOn<'c> {
    Pool(&'c PgPool),
    Conn(&'c mut PgConnection),
}

enum Bound<'q, 'c> {
    Sqlite(SqliteOn<'c>, SqliteQuery<'q>),
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
    Query(match on.into() {
        On::Db(Db(Backend::Sqlite(pool, _))) => {
            Bound::Sqlite(SqliteOn::Pool(pool), sqlx::query(sql))
        }
        On::Db(Db(Backend::Postgres(pool))) => Bound::Postgres(PgOn::Pool(pool), sqlx::query(sql)),
        On::Tx(Tx(TxInner::Sqlite(tx, _))) => Bound::Sqlite(SqliteOn::Conn(tx), sqlx::query(sql)),
        On::Tx(Tx(TxInner::Postgres(tx))) => Bound::Postgres(PgOn::Conn(tx), sqlx::query(sql)),
    })
}

impl<'q, 'c> Query<'q, 'c> {
    /// Binds a value both backends store alike: text, integers, booleans, bytes, `Option`s of
    /// them.
    pub fn bind<T>(self, value: T) -> Self
    where
        T: 'q + Send + Encode<'q, Sqlite> + Type<Sqlite> + Encode<'q, Postgres> + Type<Postgres>,
    {
        Self(match self.0 {
            Bound::Sqlite(on, q) => Bound::Sqlite(on, q.bind(value)),
            Bound::Postgres(on, q) => Bound::Postgres(on, q.bind(value)),
        })
    }

    /// Binds a UUID: `uuid` in PostgreSQL, its hyphenated text in SQLite.
    pub fn bind_uuid(self, value: Uuid) -> Self {
        Self(match self.0 {
            Bound::Sqlite(on, q) => Bound::Sqlite(on, q.bind(value.to_string())),
            Bound::Postgres(on, q) => Bound::Postgres(on, q.bind(value)),
        })
    }

    /// Binds a UUID or `NULL`.
    pub fn bind_opt_uuid(self, value: Option<Uuid>) -> Self {
        Self(match self.0 {
            Bound::Sqlite(on, q) => Bound::Sqlite(on, q.bind(value.map(|v| v.to_string()))),
            Bound::Postgres(on, q) => Bound::Postgres(on, q.bind(value)),
        })
    }

    /// Binds a time: `timestamptz` in PostgreSQL, [`timestamp_text`] in SQLite.
    pub fn bind_time(self, value: OffsetDateTime) -> Self {
        Self(match self.0 {
            Bound::Sqlite(on, q) => Bound::Sqlite(on, q.bind(timestamp_text(value))),
            Bound::Postgres(on, q) => Bound::Postgres(on, q.bind(value)),
        })
    }

    /// Binds a time or `NULL`.
    pub fn bind_opt_time(self, value: Option<OffsetDateTime>) -> Self {
        Self(match self.0 {
            Bound::Sqlite(on, q) => Bound::Sqlite(on, q.bind(value.map(timestamp_text))),
            Bound::Postgres(on, q) => Bound::Postgres(on, q.bind(value)),
        })
    }

    /// Runs the statement; returns how many rows it changed.
    pub async fn execute(self) -> Result<u64, Error> {
        Ok(match self.0 {
            Bound::Sqlite(SqliteOn::Pool(p), q) => q.execute(p).await?.rows_affected(),
            Bound::Sqlite(SqliteOn::Conn(c), q) => q.execute(c).await?.rows_affected(),
            Bound::Postgres(PgOn::Pool(p), q) => q.execute(p).await?.rows_affected(),
            Bound::Postgres(PgOn::Conn(c), q) => q.execute(c).await?.rows_affected(),
        })
    }

    /// The first row, if any.
    pub async fn fetch_optional(self) -> Result<Option<Row>, Error> {
        Ok(match self.0 {
            Bound::Sqlite(SqliteOn::Pool(p), q) => q.fetch_optional(p).await?.map(Row::Sqlite),
            Bound::Sqlite(SqliteOn::Conn(c), q) => q.fetch_optional(c).await?.map(Row::Sqlite),
            Bound::Postgres(PgOn::Pool(p), q) => q.fetch_optional(p).await?.map(Row::Postgres),
            Bound::Postgres(PgOn::Conn(c), q) => q.fetch_optional(c).await?.map(Row::Postgres),
        })
    }

    /// The one row; an error if there is none.
    pub async fn fetch_one(self) -> Result<Row, Error> {
        Ok(match self.0 {
            Bound::Sqlite(SqliteOn::Pool(p), q) => Row::Sqlite(q.fetch_one(p).await?),
            Bound::Sqlite(SqliteOn::Conn(c), q) => Row::Sqlite(q.fetch_one(c).await?),
            Bound::Postgres(PgOn::Pool(p), q) => Row::Postgres(q.fetch_one(p).await?),
            Bound::Postgres(PgOn::Conn(c), q) => Row::Postgres(q.fetch_one(c).await?),
        })
    }

    /// Every row.
    pub async fn fetch_all(self) -> Result<Vec<Row>, Error> {
        Ok(match self.0 {
            Bound::Sqlite(SqliteOn::Pool(p), q) => wrap(q.fetch_all(p).await?, Row::Sqlite),
            Bound::Sqlite(SqliteOn::Conn(c), q) => wrap(q.fetch_all(c).await?, Row::Sqlite),
            Bound::Postgres(PgOn::Pool(p), q) => wrap(q.fetch_all(p).await?, Row::Postgres),
            Bound::Postgres(PgOn::Conn(c), q) => wrap(q.fetch_all(c).await?, Row::Postgres),
        })
    }
}

fn wrap<R>(rows: Vec<R>, f: impl Fn(R) -> Row) -> Vec<Row> {
    rows.into_iter().map(f).collect()
}

/// A row of either backend, read by column index or name.
pub enum Row {
    /// From SQLite.
    Sqlite(SqliteRow),
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
    pub fn get<'r, T, I>(&'r self, column: I) -> Result<T, Error>
    where
        T: Decode<'r, Sqlite> + Type<Sqlite> + Decode<'r, Postgres> + Type<Postgres>,
        I: ColumnIndex<SqliteRow> + ColumnIndex<PgRow>,
    {
        Ok(match self {
            Self::Sqlite(row) => row.try_get(column)?,
            Self::Postgres(row) => row.try_get(column)?,
        })
    }

    /// A UUID (see [`Query::bind_uuid`]).
    pub fn uuid<I>(&self, column: I) -> Result<Uuid, Error>
    where
        I: ColumnIndex<SqliteRow> + ColumnIndex<PgRow>,
    {
        match self {
            Self::Sqlite(row) => parse_uuid(row.try_get(column)?),
            Self::Postgres(row) => Ok(row.try_get(column)?),
        }
    }

    /// A UUID or `NULL`.
    pub fn opt_uuid<I>(&self, column: I) -> Result<Option<Uuid>, Error>
    where
        I: ColumnIndex<SqliteRow> + ColumnIndex<PgRow>,
    {
        match self {
            Self::Sqlite(row) => row
                .try_get::<Option<&str>, _>(column)?
                .map(parse_uuid)
                .transpose(),
            Self::Postgres(row) => Ok(row.try_get(column)?),
        }
    }

    /// A time (see [`Query::bind_time`]).
    pub fn time<I>(&self, column: I) -> Result<OffsetDateTime, Error>
    where
        I: ColumnIndex<SqliteRow> + ColumnIndex<PgRow>,
    {
        match self {
            Self::Sqlite(row) => parse_timestamp(row.try_get(column)?),
            Self::Postgres(row) => Ok(row.try_get(column)?),
        }
    }

    /// A time or `NULL`.
    pub fn opt_time<I>(&self, column: I) -> Result<Option<OffsetDateTime>, Error>
    where
        I: ColumnIndex<SqliteRow> + ColumnIndex<PgRow>,
    {
        match self {
            Self::Sqlite(row) => row
                .try_get::<Option<&str>, _>(column)?
                .map(parse_timestamp)
                .transpose(),
            Self::Postgres(row) => Ok(row.try_get(column)?),
        }
    }
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
        assert_eq!(row.get::<i64, _>(0).unwrap(), 7);
        assert_eq!(row.uuid(1).unwrap(), id);
        assert_eq!(row.get::<i64, _>(2).unwrap(), 7);
        assert_eq!(row.time(3).unwrap(), t);
    }
}
