//! The SQLite backend: every query on an SQLite file runs here, through `rusqlite`, on the
//! thread of the request; sqlx only applies the migrations at start.
//!
//! # Reads on the calling thread
//!
//! sqlx runs each SQLite connection on a thread of its own and hands every query to it, and the
//! result back, through channels: at least two thread wake-ups per query. On a small machine
//! those cost far more than the query itself: a page of 20 items took ~150 µs of CPU through
//! sqlx, most of it in the scheduler, against a few tens of microseconds for SQLite to read and
//! encode the page (`bench/README.md` has the figures). Reads therefore run here, synchronously,
//! on read-only connections kept for reuse.
//!
//! That is safe to do on an async worker because these reads do not wait: the database is in WAL
//! mode, where a reader never waits for a writer, and the read connections are read-only
//! (`SQLITE_OPEN_READ_ONLY`, `PRAGMA query_only`), so they take no lock a writer holds. The one
//! wait left, while SQLite restarts the WAL, is bounded by a short busy timeout. Every list is
//! paged, so no read runs long. A statement that turns out to write (SQLite tells:
//! `sqlite3_stmt_readonly`) is not run there but as a transaction of its own on the writer.
//!
//! # One writer, and group commit
//!
//! SQLite lets one transaction write at a time. This process keeps one read-write connection,
//! and write transactions ([`super::Db::begin`]) take turns on it, in order of arrival, each
//! running its statements on the calling thread too, inside a savepoint of a transaction that
//! several turns share and commit once ([`super::group`]). Under load that turns many commits,
//! each writing the same pages of the audit chain and the tables' indexes into the write-ahead
//! log, into one (measured in `bench/README.md`). With no queue, a transaction commits on its own
//! at once. If SQLite itself abandons the shared transaction (a full disk, an I/O error), every
//! member still waiting gets the error.
//!
//! The writer never checkpoints: copying the log back into the database file ends with an
//! `fsync`, which takes milliseconds on real disks, and done in a `COMMIT` (SQLite's default,
//! every 1000 pages) it held every writer and a thread of the runtime for that long (a third of
//! the write path's time in a profile of `bench/run`'s `items-create`). A thread of its own,
//! with a connection of its own, runs a `PASSIVE` checkpoint instead when commits were made since
//! its last one ([`CHECKPOINT_EVERY`]); a passive checkpoint never blocks a writer or a reader.
//!
//! A writer that waits for another process's lock (the command line) waits asynchronously,
//! retrying `BEGIN IMMEDIATE` for up to [`LOCK_WAIT`], and never blocks its thread for long.
//!
//! # Unicode lower case
//!
//! SQLite's own `lower` folds ASCII letters only (`ÄPFEL` stays `Äpfel`), where PostgreSQL's
//! folds every letter its locale knows. Every connection here therefore carries
//! [`UNICODE_LOWER`], Rust's `str::to_lowercase`, so a case-insensitive search finds the same
//! rows on both backends. It has a name of its own rather than replacing `lower`: SQLite's
//! `lower` is part of an index expression (`users_email_key`), and a replacement would disagree
//! with the index the migrations built.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::functions::FunctionFlags;
use rusqlite::types::{Value, ValueRef};
use rusqlite::{Connection, OpenFlags, Statement};

use super::group::{GroupConn, Turns, WriteTurn};
use crate::error::Error;

/// The SQL function on every connection here that lower-cases text as Rust's
/// `str::to_lowercase` does, every script included (see the module doc); `NULL` stays `NULL`.
pub const UNICODE_LOWER: &str = "unicode_lower";

/// How long a read waits in the rare moment the WAL is being restarted, and how long one attempt
/// of the writer to take the database lock may block its thread.
const BUSY_TIMEOUT: Duration = Duration::from_millis(100);
/// How long a writer keeps trying for the database lock while another process holds it.
const LOCK_WAIT: Duration = Duration::from_secs(5);
/// How often the checkpoint thread looks for commits to copy into the database file.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(200);

/// A row as SQLite returned it.
pub(super) type LiteRow = Vec<Value>;

/// A write transaction on the SQLite file.
pub(super) type LiteTurn = WriteTurn<LiteConn>;

/// One SQLite file's connections: read-only ones (opened on first use, kept for reuse) and the
/// one writer with its queue (see the module doc).
#[derive(Debug)]
pub struct SqliteFile {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
    keep: usize,
    turns: Arc<Turns<LiteConn>>,
    /// Dropped at [`SqliteFile::close`], which ends the checkpoint thread.
    checkpoints: Mutex<Option<std::sync::mpsc::Sender<()>>>,
}

/// The read-write connection.
#[derive(Debug)]
pub(super) struct LiteConn {
    conn: Connection,
    path: String,
}

impl GroupConn for LiteConn {
    /// `BEGIN IMMEDIATE`, retried without blocking the thread while another process holds the
    /// database lock, for up to [`LOCK_WAIT`].
    async fn begin(&mut self) -> Result<(), Error> {
        let started = tokio::time::Instant::now();
        let mut pause = Duration::from_millis(1);
        loop {
            match self.conn.execute_batch("BEGIN IMMEDIATE") {
                Ok(()) => return Ok(()),
                Err(e) if is_busy(&e) && started.elapsed() < LOCK_WAIT => {
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_millis(50));
                }
                Err(e) => return Err(self.error(e)),
            }
        }
    }

    async fn control(&mut self, sql: &'static str) -> Result<(), Error> {
        self.conn.execute_batch(sql).map_err(|e| self.error(e))
    }

    fn in_transaction(&self) -> bool {
        !self.conn.is_autocommit()
    }
}

impl LiteConn {
    fn error(&self, source: rusqlite::Error) -> Error {
        Error::Sqlite {
            file: self.path.clone(),
            source,
        }
    }
}

impl SqliteFile {
    /// The database file at `path`, keeping at most `keep` idle read connections; a writer
    /// waits at most `wait` for its turn.
    pub(super) fn new(path: PathBuf, keep: usize, wait: Duration) -> Self {
        Self {
            path,
            idle: Mutex::new(Vec::new()),
            keep,
            turns: Arc::new(Turns::new(wait)),
            checkpoints: Mutex::new(None),
        }
    }

    /// Runs `read` on a read-only connection. `read` should use `prepare_cached`, so each
    /// connection parses a statement once.
    pub fn read<T>(
        &self,
        read: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> Result<T, Error> {
        if self.turns.is_closed() {
            return Err(Error::Unavailable(format!(
                "SQLite file {} is closed",
                self.path.display()
            )));
        }
        let idle = self.idle.lock().ok().and_then(|mut idle| idle.pop());
        let conn = match idle {
            Some(conn) => conn,
            None => self.open(true).map_err(|e| self.error(e))?,
        };
        let result = read(&conn).map_err(|e| self.error(e));
        if let Ok(mut idle) = self.idle.lock() {
            if idle.len() < self.keep {
                idle.push(conn);
            }
        }
        result
    }

    /// The rows `sql` returns on a read connection (at most one when `first_only`), or `None`
    /// when the statement writes and must run on the writer instead.
    pub(super) fn read_rows(
        &self,
        sql: &str,
        values: &[Value],
        first_only: bool,
    ) -> Result<Option<Vec<LiteRow>>, Error> {
        self.read(|conn| {
            let mut statement = conn.prepare_cached(sql)?;
            if !statement.readonly() {
                return Ok(None);
            }
            rows(&mut statement, values, first_only).map(Some)
        })
    }

    /// Begins a write transaction: waits for this process's writer turn, in order of arrival,
    /// then opens a savepoint in the shared transaction (see [`super::group`]).
    pub(super) async fn begin(&self) -> Result<LiteTurn, Error> {
        let mut writer = self.turns.turn().await?;
        if writer.conn.is_none() {
            let conn = self.open(false).map_err(|e| self.error(e))?;
            conn.pragma_update(None, "wal_autocheckpoint", 0)
                .map_err(|e| self.error(e))?;
            writer.conn = Some(LiteConn {
                conn,
                path: self.path.display().to_string(),
            });
            self.start_checkpoints();
        }
        self.turns.begin(writer).await
    }

    /// How many commits this file has made: fewer than the transactions when they were grouped.
    pub fn commits(&self) -> u64 {
        self.turns.commits()
    }

    /// Closes every connection once the writes under way are committed; later queries fail.
    pub(super) async fn close(&self) {
        self.turns.close().await;
        if let Ok(mut idle) = self.idle.lock() {
            idle.clear();
        }
        if let Ok(mut checkpoints) = self.checkpoints.lock() {
            checkpoints.take();
        }
    }

    /// Starts the checkpoint thread (see the module doc) unless it runs.
    fn start_checkpoints(&self) {
        let Ok(mut checkpoints) = self.checkpoints.lock() else {
            return;
        };
        if checkpoints.is_some() {
            return;
        }
        let (keep, stop) = std::sync::mpsc::channel::<()>();
        let conn = match self.open(false) {
            Ok(conn) => conn,
            Err(e) => {
                tracing::warn!(error = %e, "no checkpoint thread: the log grows until restart");
                return;
            }
        };
        let turns = Arc::clone(&self.turns);
        let spawned = std::thread::Builder::new()
            .name("sqlite-checkpoint".into())
            .spawn(move || {
                let mut done = turns.commits();
                while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
                    stop.recv_timeout(CHECKPOINT_EVERY)
                {
                    let now = turns.commits();
                    if now == done {
                        continue;
                    }
                    // (busy, frames in the log, frames copied): a reader in the way leaves some
                    // frames for the next tick.
                    let outcome = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
                        Ok((r.get::<_, i64>(1)?, r.get::<_, i64>(2)?))
                    });
                    match outcome {
                        Ok((log, copied)) if log == copied => done = now,
                        Ok(_) => {}
                        Err(e) => {
                            tracing::warn!(error = %e, "SQLite checkpoint failed; retrying later");
                        }
                    }
                }
            });
        match spawned {
            Ok(_) => *checkpoints = Some(keep),
            Err(e) => tracing::warn!(error = %e, "no checkpoint thread"),
        }
    }

    fn open(&self, read_only: bool) -> rusqlite::Result<Connection> {
        let flags = if read_only {
            OpenFlags::SQLITE_OPEN_READ_ONLY
        } else {
            OpenFlags::SQLITE_OPEN_READ_WRITE
        };
        let conn =
            Connection::open_with_flags(&self.path, flags | OpenFlags::SQLITE_OPEN_NO_MUTEX)?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        conn.set_prepared_statement_cache_capacity(64);
        if read_only {
            conn.pragma_update(None, "query_only", true)?;
        } else {
            conn.pragma_update(None, "synchronous", "NORMAL")?;
            conn.pragma_update(None, "foreign_keys", true)?;
        }
        conn.pragma_update(None, "trusted_schema", false)?;
        conn.create_scalar_function(
            UNICODE_LOWER,
            1,
            FunctionFlags::SQLITE_UTF8
                | FunctionFlags::SQLITE_DETERMINISTIC
                | FunctionFlags::SQLITE_INNOCUOUS,
            |ctx| match ctx.get_raw(0) {
                ValueRef::Null => Ok(None),
                ValueRef::Text(text) => Ok(Some(String::from_utf8_lossy(text).to_lowercase())),
                _ => Err(rusqlite::Error::UserFunctionError(
                    format!("{UNICODE_LOWER} takes text").into(),
                )),
            },
        )?;
        Ok(conn)
    }

    fn error(&self, source: rusqlite::Error) -> Error {
        Error::Sqlite {
            file: self.path.display().to_string(),
            source,
        }
    }
}

/// Runs `sql` with `values` in the transaction `turn`: the rows it returns (at most one when
/// `first_only`) and how many rows it changed.
pub(super) async fn run(
    turn: &mut LiteTurn,
    sql: &str,
    values: &[Value],
    first_only: bool,
) -> Result<(Vec<LiteRow>, u64), Error> {
    let writer = turn.conn()?;
    let result = writer
        .conn
        .prepare_cached(sql)
        .and_then(|mut statement| rows(&mut statement, values, first_only))
        .map(|rows| (rows, writer.conn.changes()));
    match result {
        Ok(found) => Ok(found),
        Err(e) => {
            let e = writer.error(e);
            turn.after_error(false).await;
            Err(e)
        }
    }
}

/// Binds `values` to `statement` (`$N` and `?N` name the N-th value, as on PostgreSQL) and steps
/// through it to the end: its rows (the first alone when `first_only`).
fn rows(
    statement: &mut Statement<'_>,
    values: &[Value],
    first_only: bool,
) -> rusqlite::Result<Vec<LiteRow>> {
    for index in 1..=statement.parameter_count() {
        let n = match statement.parameter_name(index) {
            None => index,
            Some(name) => name
                .strip_prefix(['$', '?'])
                .and_then(|n| n.parse::<usize>().ok())
                .ok_or_else(|| rusqlite::Error::InvalidParameterName(name.to_owned()))?,
        };
        let value = values
            .get(n.wrapping_sub(1))
            .ok_or(rusqlite::Error::InvalidParameterCount(n, values.len()))?;
        statement.raw_bind_parameter(index, value)?;
    }
    let columns = statement.column_count();
    let mut found = Vec::new();
    let mut rows = statement.raw_query();
    while let Some(row) = rows.next()? {
        if first_only && !found.is_empty() {
            continue;
        }
        let mut values = Vec::with_capacity(columns);
        for column in 0..columns {
            values.push(Value::from(row.get_ref(column)?));
        }
        found.push(values);
    }
    Ok(found)
}

fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    )
}

#[cfg(test)]
mod tests {
    use crate::store::Db;

    /// The reads that run on request threads can only read: a write through them fails instead
    /// of taking the database lock behind the writer queue's back.
    #[tokio::test]
    async fn read_connections_cannot_write() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::connect(&format!("sqlite://{}/t.db", dir.path().display()), 1)
            .await
            .unwrap();
        db.migrate().await.unwrap();
        let file = db.sqlite_file().unwrap();
        let count: i64 = file
            .read(|c| c.query_row("SELECT count(*) FROM items", [], |r| r.get(0)))
            .unwrap();
        assert_eq!(count, 0);
        assert!(
            file.read(|c| c.execute("DELETE FROM items", [])).is_err(),
            "a read connection wrote"
        );
        assert!(file.read(|c| c.execute("CREATE TABLE x (a)", [])).is_err());
    }

    /// The writer leaves checkpoints (and their `fsync`) to the checkpoint thread, which copies
    /// the commits into the database file soon after they are made.
    #[tokio::test]
    async fn commits_are_checkpointed_off_the_writer() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::connect(&format!("sqlite://{}/t.db", dir.path().display()), 1)
            .await
            .unwrap();
        db.query("CREATE TABLE t (n INTEGER)")
            .execute()
            .await
            .unwrap();
        let mut tx = db.begin().await.unwrap();
        let autocheckpoint = tx
            .query("PRAGMA wal_autocheckpoint")
            .fetch_one()
            .await
            .unwrap();
        assert_eq!(
            autocheckpoint.get::<i64>(0).unwrap(),
            0,
            "the writer checkpoints"
        );
        drop(tx);
        for n in 0..50_i64 {
            db.query("INSERT INTO t (n) VALUES ($1)")
                .bind(n)
                .execute()
                .await
                .unwrap();
        }
        let file = db.sqlite_file().unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            // A read connection may not checkpoint, but it can see the log's state: frames in
            // the log, and how many of them are in the database file.
            let (log, copied): (i64, i64) = file
                .read(|c| {
                    c.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
                        Ok((r.get(1)?, r.get(2)?))
                    })
                })
                .unwrap_or((-1, -2));
            if log > 0 && log == copied {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "not checkpointed: {log} frames, {copied} copied"
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    #[tokio::test]
    async fn every_connection_lowers_every_script() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::connect(&format!("sqlite://{}/t.db", dir.path().display()), 1)
            .await
            .unwrap();
        db.migrate().await.unwrap();
        let sql = "SELECT unicode_lower('ÄPFEL Ωmega ÇA'), lower('ÄPFEL'), unicode_lower(NULL)";
        let read = db.query(sql).fetch_one().await.unwrap();
        let mut tx = db.begin().await.unwrap();
        let written = tx.query(sql).fetch_one().await.unwrap();
        for row in [read, written] {
            assert_eq!(row.get::<String>(0).unwrap(), "äpfel ωmega ça");
            assert_eq!(
                row.get::<String>(1).unwrap(),
                "Äpfel",
                "SQLite's own lower is left as it is"
            );
            assert_eq!(row.get::<Option<String>>(2).unwrap(), None);
        }
    }
}
