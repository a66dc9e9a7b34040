//! Storage: the database chosen from the URL once at startup, migrations, transactions.
//!
//! [`Db`] is a value, not a global: `sqlite://…` gives an embedded SQLite file (WAL, foreign
//! keys, reads and one writer on the calling thread: [`SqliteFile`]), `postgres://…` a
//! PostgreSQL pool. Its variants are private:
//! queries elsewhere go through [`query`], which binds and reads the values whose types differ
//! per dialect (UUIDs, times), so each query is written once; where the dialects really differ
//! (locking, upserts), the `queries.rs` of the domain picks one of two texts by [`Dialect`].
//!
//! # Security
//! - Every query binds its values; no SQL is ever built from input.
//! - [`Db::begin`] is the only way to open a transaction ([`Tx`]), and it opens a *write*
//!   transaction: on SQLite it is a turn on the one writer connection, inside a transaction begun
//!   `IMMEDIATE` (which takes the database's write lock up front), so a transaction that reads and
//!   then writes (the audit chain head, a single-use token) cannot interleave with another writer.
//! - Database errors are logged by the caller's error type and never shown to clients.

mod group;
mod postgres;
mod query;
mod sqlite_file;

use std::path::Path;
use std::str::FromStr as _;
use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{PgPool, SqlitePool};
use time::OffsetDateTime;

use crate::error::Error;
pub use query::{Dialect, On, Query, Row, query};
pub use sqlite_file::{SqliteFile, UNICODE_LOWER};

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// The database, chosen once from the URL.
#[derive(Clone, Debug)]
pub struct Db(Backend);

#[derive(Clone, Debug)]
enum Backend {
    /// Embedded SQLite file: sqlx's pool for the migrations, and [`SqliteFile`] for every
    /// query.
    Sqlite(SqlitePool, Arc<SqliteFile>),
    /// PostgreSQL server: the pool, and the writer (see [`postgres`]).
    Postgres(PgPool, Arc<group::Turns<postgres::PgConn>>),
}

/// A write transaction on either backend, opened by [`Db::begin`]. Dropping it without
/// [`Tx::commit`] rolls back.
#[derive(Debug)]
pub struct Tx(TxInner);

#[derive(Debug)]
enum TxInner {
    /// SQLite: a turn on this process's one writer.
    Sqlite(sqlite_file::LiteTurn),
    /// PostgreSQL: a turn on this instance's writer.
    Postgres(postgres::PgTurn),
}

impl Tx {
    /// Commits the change and everything recorded with it.
    pub async fn commit(self) -> Result<(), Error> {
        match self.0 {
            TxInner::Sqlite(turn) => turn.commit().await?,
            TxInner::Postgres(turn) => turn.commit().await?,
        }
        Ok(())
    }

    /// The dialect this transaction speaks.
    pub fn dialect(&self) -> Dialect {
        match self.0 {
            TxInner::Sqlite(_) => Dialect::Sqlite,
            TxInner::Postgres(_) => Dialect::Postgres,
        }
    }

    /// `sql` to run in this transaction (see [`query`]).
    pub fn query<'q>(&mut self, sql: &'q str) -> Query<'q, '_> {
        query(self, sql)
    }
}

impl Db {
    /// Connects to the database `url` names (creating the SQLite file and its folder if needed),
    /// with a pool of `max_connections` that a caller waits at most 5 s for (on SQLite: that
    /// many read connections kept).
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self, Error> {
        Self::connect_with(url, max_connections, Duration::from_secs(5)).await
    }

    /// [`Db::connect`], waiting at most `acquire_timeout` for a pooled connection: then the
    /// caller gets an error that answers 503 ([`Error::status`]).
    pub async fn connect_with(
        url: &str,
        max_connections: u32,
        acquire_timeout: Duration,
    ) -> Result<Self, Error> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let options = PgConnectOptions::from_str(url)?.application_name("gatehouse");
            let pool = PgPoolOptions::new()
                .max_connections(max_connections)
                .acquire_timeout(acquire_timeout)
                .connect_with(options)
                .await?;
            let turns = Arc::new(group::Turns::new(acquire_timeout));
            return Ok(Self(Backend::Postgres(pool, turns)));
        }
        let Some(path) = sqlite_file(url) else {
            return Err(Error::Internal(anyhow::anyhow!(
                "an in-memory SQLite database is not supported (each connection would see an \
                 empty database of its own): name a file, as in sqlite://./data/gatehouse.db"
            )));
        };
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| {
                Error::Internal(anyhow::anyhow!(
                    "cannot create the database folder {}: {e}",
                    parent.display()
                ))
            })?;
        }
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(5))
            .pragma("trusted_schema", "OFF");
        // sqlx applies the migrations; every query runs on [`SqliteFile`]'s connections.
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .acquire_timeout(acquire_timeout)
            .connect_with(options)
            .await?;
        let file = Arc::new(SqliteFile::new(
            path.to_owned(),
            max_connections as usize,
            acquire_timeout,
        ));
        Ok(Self(Backend::Sqlite(pool, file)))
    }

    /// Applies every pending migration of this backend.
    pub async fn migrate(&self) -> Result<(), Error> {
        match &self.0 {
            Backend::Sqlite(pool, _) => SQLITE_MIGRATIONS.run(pool).await,
            Backend::Postgres(pool, _) => POSTGRES_MIGRATIONS.run(pool).await,
        }
        .map_err(|e| Error::Internal(anyhow::anyhow!("migration failed: {e}")))
    }

    /// Checks that the database answers.
    pub async fn ping(&self) -> Result<(), Error> {
        self.query("SELECT 1").fetch_one().await.map(drop)
    }

    /// Opens a write transaction (see the module's Security section).
    pub async fn begin(&self) -> Result<Tx, Error> {
        Ok(Tx(match &self.0 {
            Backend::Sqlite(_, file) => TxInner::Sqlite(file.begin().await?),
            Backend::Postgres(pool, turns) => {
                TxInner::Postgres(postgres::begin(pool, turns).await?)
            }
        }))
    }

    /// Closes every connection; later queries fail.
    pub async fn close(&self) {
        match &self.0 {
            Backend::Sqlite(pool, file) => {
                file.close().await;
                pool.close().await;
            }
            Backend::Postgres(pool, turns) => {
                turns.close().await;
                pool.close().await;
            }
        }
    }

    /// `sqlite` or `postgres`.
    pub fn backend_name(&self) -> &'static str {
        match self.dialect() {
            Dialect::Sqlite => "sqlite",
            Dialect::Postgres => "postgres",
        }
    }

    /// The dialect this database speaks.
    pub fn dialect(&self) -> Dialect {
        match self.0 {
            Backend::Sqlite(..) => Dialect::Sqlite,
            Backend::Postgres(..) => Dialect::Postgres,
        }
    }

    /// `sql` to run on the pool, autocommit (see [`query`]).
    pub fn query<'q>(&self, sql: &'q str) -> Query<'q, '_> {
        query(self, sql)
    }

    /// The SQLite file's connections (see [`SqliteFile`]); `None` on PostgreSQL.
    pub fn sqlite_file(&self) -> Option<&SqliteFile> {
        match &self.0 {
            Backend::Sqlite(_, file) => Some(file),
            Backend::Postgres(..) => None,
        }
    }
}

/// The file a `sqlite:` URL names, or `None` for an in-memory database.
fn sqlite_file(url: &str) -> Option<&Path> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next().unwrap_or(rest);
    (!path.is_empty() && path != ":memory:").then(|| Path::new(path))
}

/// How long connecting to Redis may take.
const REDIS_CONNECT_TIMEOUT: Duration = Duration::from_millis(500);
/// How long one Redis command may take.
const REDIS_RESPONSE_TIMEOUT: Duration = Duration::from_millis(750);

/// A Redis connection for state kept in Redis (sessions, and what later features keep there)
/// that fails fast while Redis is away and works again as soon as it is back: each connection
/// attempt is bounded (0.5 s) and retried once after at most 200 ms, each command is bounded
/// (0.75 s), and a lost connection is made again at the next command. (The client library's
/// defaults wait up to minutes between attempts, and meanwhile every request hung until its
/// timeout.) So a request fails within 2 s while Redis is down, and one made after Redis is back
/// reconnects at once.
pub async fn redis_connection(
    client: &redis::Client,
) -> redis::RedisResult<redis::aio::ConnectionManager> {
    let config = redis::aio::ConnectionManagerConfig::new()
        .set_connection_timeout(REDIS_CONNECT_TIMEOUT)
        .set_response_timeout(REDIS_RESPONSE_TIMEOUT)
        .set_number_of_retries(1)
        .set_max_delay(200);
    redis::aio::ConnectionManager::new_with_config(client.clone(), config).await
}

/// The current time in UTC, cut to microseconds: what both backends store exactly.
pub fn now() -> OffsetDateTime {
    let t = OffsetDateTime::now_utc();
    t.replace_nanosecond(t.nanosecond() / 1_000 * 1_000)
        .unwrap_or(t)
}

/// RFC 3339 in UTC with exactly six fractional digits: sorts as text and hashes stably.
pub fn timestamp_text(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.microsecond()
    )
}

/// Parses what [`timestamp_text`] wrote.
pub fn parse_timestamp(s: &str) -> Result<OffsetDateTime, Error> {
    OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .map_err(|e| Error::Internal(anyhow::anyhow!("bad timestamp `{s}` in the database: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_urls_name_their_file() {
        assert_eq!(
            sqlite_file("sqlite://./data/g.db?mode=rwc"),
            Some(Path::new("./data/g.db"))
        );
        assert_eq!(sqlite_file("sqlite::memory:"), None);
        assert_eq!(sqlite_file("postgres://x/y"), None);
    }

    async fn sqlite_with_table() -> (tempfile::TempDir, Db) {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::connect(&format!("sqlite://{}/t.db", dir.path().display()), 2)
            .await
            .unwrap();
        db.query("CREATE TABLE t (n INTEGER PRIMARY KEY)")
            .execute()
            .await
            .unwrap();
        (dir, db)
    }

    async fn numbers(db: &Db) -> Vec<i64> {
        db.query("SELECT n FROM t ORDER BY n")
            .fetch_all()
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0).unwrap())
            .collect()
    }

    async fn insert(db: &Db, n: i64, commit: bool) -> Result<(), Error> {
        let mut tx = db.begin().await?;
        tx.query("INSERT INTO t (n) VALUES ($1)")
            .bind(n)
            .execute()
            .await?;
        tokio::task::yield_now().await;
        if commit { tx.commit().await } else { Ok(()) }
    }

    /// A writer waiting for its turn blocks no read, and starts as soon as the open
    /// transaction commits.
    #[tokio::test]
    async fn sqlite_writers_queue_while_reads_go_on() {
        let (_dir, db) = sqlite_with_table().await;
        let mut first = db.begin().await.unwrap();
        first
            .query("INSERT INTO t (n) VALUES (1)")
            .execute()
            .await
            .unwrap();
        let waiting = tokio::spawn({
            let db = db.clone();
            async move { insert(&db, 2, true).await }
        });
        tokio::task::yield_now().await;
        assert!(
            !waiting.is_finished(),
            "the second writer waits for the first"
        );
        let read = tokio::time::timeout(Duration::from_secs(2), numbers(&db))
            .await
            .expect("a read does not wait behind a writer");
        assert_eq!(read, Vec::<i64>::new(), "nothing is seen before its commit");
        first.commit().await.unwrap();
        tokio::time::timeout(Duration::from_secs(2), waiting)
            .await
            .expect("the queued writer starts once the first ends")
            .unwrap()
            .unwrap();
        assert_eq!(numbers(&db).await, [1, 2]);
    }

    /// Under load, many transactions share one commit; each commit returns only once a read
    /// elsewhere sees its write, and a transaction that rolls back inside a group takes only
    /// its own writes with it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite_group_commit_acknowledges_only_what_is_committed() {
        let (_dir, db) = sqlite_with_table().await;
        let file = db.sqlite_file().unwrap();
        let before = file.commits();
        let writers: Vec<_> = (1..=200)
            .map(|n| {
                let db = db.clone();
                tokio::spawn(async move {
                    let keep = n % 3 != 0;
                    insert(&db, n, keep).await.unwrap();
                    if keep {
                        let seen: Option<Row> = db
                            .query("SELECT n FROM t WHERE n = $1")
                            .bind(n)
                            .fetch_optional()
                            .await
                            .unwrap();
                        assert!(seen.is_some(), "{n} was acknowledged before its commit");
                    }
                })
            })
            .collect();
        for w in writers {
            w.await.unwrap();
        }
        let kept: Vec<i64> = (1..=200).filter(|n| n % 3 != 0).collect();
        assert_eq!(
            numbers(&db).await,
            kept,
            "every kept write, and no rolled-back one"
        );
        let commits = file.commits() - before;
        assert!(
            commits < kept.len() as u64,
            "{commits} commits for {} transactions: none were grouped",
            kept.len()
        );
    }

    /// A statement error inside a group (here a duplicate key) fails its own transaction alone.
    #[tokio::test]
    async fn a_failing_statement_in_a_group_fails_its_own_transaction_alone() {
        let (_dir, db) = sqlite_with_table().await;
        insert(&db, 1, true).await.unwrap();
        let mut first = db.begin().await.unwrap();
        first
            .query("INSERT INTO t (n) VALUES (2)")
            .execute()
            .await
            .unwrap();
        let duplicate = tokio::spawn({
            let db = db.clone();
            async move { insert(&db, 1, true).await }
        });
        let third = tokio::spawn({
            let db = db.clone();
            async move { insert(&db, 3, true).await }
        });
        tokio::task::yield_now().await;
        first.commit().await.unwrap();
        let duplicate = duplicate.await.unwrap().unwrap_err();
        assert!(duplicate.is_unique_violation(), "{duplicate}");
        third.await.unwrap().unwrap();
        assert_eq!(numbers(&db).await, [1, 2, 3]);
    }

    #[test]
    fn timestamps_round_trip_at_microsecond_precision() {
        let t = now();
        let text = timestamp_text(t);
        assert_eq!(text.len(), "2026-01-01T00:00:00.000000Z".len());
        assert_eq!(parse_timestamp(&text).unwrap(), t);
    }
}
