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
//! and write transactions ([`super::Db::begin`]) take turns on it, in order of arrival
//! ([`SqliteFile::begin`]). Each runs its statements on the calling thread too, inside a
//! `SAVEPOINT` of a transaction that several turns share: when a transaction commits while other
//! writers are queued, its savepoint is released into the shared transaction and it waits; the
//! next writers run in the same transaction, and the last writer of the queue (or a waiting
//! writer whose turn comes round again) `COMMIT`s them all at once and wakes every waiter with the
//! outcome. Under load that turns many commits, each writing the same pages of the audit chain
//! and the tables' indexes into the write-ahead log, into one, with one WAL write for the group
//! (measured in `bench/README.md`). With no queue, a transaction commits on its own at once.
//!
//! What a caller sees does not change: [`super::Tx::commit`] returns only once its writes are
//! committed, with the group's outcome; a transaction that rolls back undoes its savepoint alone;
//! a writer reads the writes of the earlier members of its group (they committed before it, in
//! the order the chain of audit records shows), and nobody else sees any of them before the
//! group commits. If SQLite itself abandons the shared transaction (a full disk, an I/O error),
//! every member still waiting gets the error: none of them was acknowledged.
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
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::functions::FunctionFlags;
use rusqlite::types::{Value, ValueRef};
use rusqlite::{Connection, OpenFlags, Statement};
use tokio::sync::{OwnedMutexGuard, oneshot};

use crate::error::Error;

/// The SQL function on every connection here that lower-cases text as Rust's
/// `str::to_lowercase` does, every script included (see the module doc); `NULL` stays `NULL`.
pub const UNICODE_LOWER: &str = "unicode_lower";

/// How long a read waits in the rare moment the WAL is being restarted, and how long one attempt
/// of the writer to take the database lock may block its thread.
const BUSY_TIMEOUT: Duration = Duration::from_millis(100);
/// How long a writer keeps trying for the database lock while another process holds it.
const LOCK_WAIT: Duration = Duration::from_secs(5);
/// The most transactions one commit takes, so the first of a group never waits for a long queue.
const MAX_GROUP: usize = 64;
/// How often the checkpoint thread looks for commits to copy into the database file.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(200);

/// A row as SQLite returned it.
pub(super) type LiteRow = Vec<Value>;

/// One SQLite file's connections: read-only ones (opened on first use, kept for reuse) and the
/// one writer with its queue (see the module doc).
#[derive(Debug)]
pub struct SqliteFile {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
    keep: usize,
    writer: Arc<tokio::sync::Mutex<Writer>>,
    /// Writers waiting for their turn, including those waiting for their group to commit.
    queued: AtomicUsize,
    next_group: AtomicU64,
    /// Commits made (each of one group).
    commits: Arc<AtomicU64>,
    closed: AtomicBool,
    /// Dropped at [`SqliteFile::close`], which ends the checkpoint thread.
    checkpoints: Mutex<Option<std::sync::mpsc::Sender<()>>>,
}

/// The read-write connection and the transaction its turns share.
#[derive(Debug)]
pub(super) struct Writer {
    conn: Option<Connection>,
    group: Option<Group>,
    commits: Arc<AtomicU64>,
}

/// The open transaction: how many transactions released their savepoint into it, and how to
/// tell those still waiting the outcome.
#[derive(Debug)]
struct Group {
    id: u64,
    members: usize,
    waiting: Vec<oneshot::Sender<Result<(), String>>>,
}

impl SqliteFile {
    /// The database file at `path`, keeping at most `keep` idle read connections.
    pub(super) fn new(path: PathBuf, keep: usize) -> Self {
        let commits = Arc::<AtomicU64>::default();
        Self {
            path,
            idle: Mutex::new(Vec::new()),
            keep,
            writer: Arc::new(tokio::sync::Mutex::new(Writer {
                conn: None,
                group: None,
                commits: Arc::clone(&commits),
            })),
            queued: AtomicUsize::new(0),
            next_group: AtomicU64::new(0),
            commits,
            closed: AtomicBool::new(false),
            checkpoints: Mutex::new(None),
        }
    }

    /// Runs `read` on a read-only connection. `read` should use `prepare_cached`, so each
    /// connection parses a statement once.
    pub fn read<T>(
        &self,
        read: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> Result<T, Error> {
        self.check_open()?;
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
    /// then opens a savepoint in the shared transaction (beginning it when none is open).
    pub(super) async fn begin(self: &Arc<Self>) -> Result<WriteTurn, Error> {
        self.check_open()?;
        let mut writer = self.turn().await;
        self.check_open()?;
        if writer.conn.is_none() {
            let conn = self.open(false).map_err(|e| self.error(e))?;
            conn.pragma_update(None, "wal_autocheckpoint", 0)
                .map_err(|e| self.error(e))?;
            writer.conn = Some(conn);
            self.start_checkpoints();
        }
        if writer.group.is_none() {
            self.lock_database(&mut writer).await?;
            writer.group = Some(Group {
                id: self.next_group.fetch_add(1, Ordering::Relaxed),
                members: 0,
                waiting: Vec::new(),
            });
        }
        if let Err(e) = writer.conn()?.execute_batch("SAVEPOINT tx") {
            writer.abandon_if_ended(&e);
            if writer.group.as_ref().is_some_and(|g| g.members == 0) {
                writer.roll_back_group();
            }
            return Err(self.error(e));
        }
        Ok(WriteTurn {
            file: Arc::clone(self),
            writer: Some(writer),
            broken: false,
        })
    }

    /// How many commits this file has made: fewer than the transactions when they were grouped.
    pub fn commits(&self) -> u64 {
        self.commits.load(Ordering::Relaxed)
    }

    /// Closes every connection once the writes under way are committed; later queries fail.
    pub(super) async fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        let mut writer = self.writer.clone().lock_owned().await;
        if writer.group.is_some() {
            let _ = writer.finish_group();
        }
        writer.conn = None;
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
                tracing::warn!(error = %e, "no checkpoint thread: SQLite will checkpoint in commits");
                return;
            }
        };
        let commits = Arc::clone(&self.commits);
        let spawned = std::thread::Builder::new()
            .name("sqlite-checkpoint".into())
            .spawn(move || {
                let mut done = commits.load(Ordering::Relaxed);
                while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
                    stop.recv_timeout(CHECKPOINT_EVERY)
                {
                    let now = commits.load(Ordering::Relaxed);
                    if now == done {
                        continue;
                    }
                    done = now;
                    if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
                    {
                        tracing::warn!(error = %e, "SQLite checkpoint failed; retrying later");
                    }
                }
            });
        match spawned {
            Ok(_) => *checkpoints = Some(keep),
            Err(e) => tracing::warn!(error = %e, "no checkpoint thread"),
        }
    }

    /// Waits for the writer turn, counted in `queued` while waiting (see [`WriteTurn::commit`]).
    async fn turn(&self) -> OwnedMutexGuard<Writer> {
        struct Queued<'a>(&'a AtomicUsize);
        impl Drop for Queued<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::SeqCst);
            }
        }
        self.queued.fetch_add(1, Ordering::SeqCst);
        let _queued = Queued(&self.queued);
        self.writer.clone().lock_owned().await
    }

    /// `BEGIN IMMEDIATE`, retried without blocking the thread while another process holds the
    /// database lock, for up to [`LOCK_WAIT`].
    async fn lock_database(&self, writer: &mut Writer) -> Result<(), Error> {
        let started = tokio::time::Instant::now();
        let mut pause = Duration::from_millis(1);
        loop {
            let attempt = writer.conn()?.execute_batch("BEGIN IMMEDIATE");
            match attempt {
                Ok(()) => return Ok(()),
                Err(e) if is_busy(&e) && started.elapsed() < LOCK_WAIT => {
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_millis(50));
                }
                Err(e) => return Err(self.error(e)),
            }
        }
    }

    /// Waits until the group `id` has committed; commits it itself when its turn comes round
    /// first (every waiter queues for the turn, so some waiter always commits the group).
    async fn await_group(
        self: &Arc<Self>,
        id: u64,
        mut outcome: oneshot::Receiver<Result<(), String>>,
    ) -> Result<(), Error> {
        let mut flush = FlushOnDrop {
            file: Some(Arc::clone(self)),
            group: id,
        };
        let result = tokio::select! {
            biased;
            result = &mut outcome => result,
            mut writer = self.turn() => {
                if writer.group.as_ref().is_some_and(|g| g.id == id) {
                    let _ = writer.finish_group();
                }
                drop(writer);
                outcome.await
            }
        };
        flush.file = None;
        match result {
            Ok(Ok(())) => Ok(()),
            Ok(Err(message)) => Err(Error::Internal(anyhow::anyhow!(
                "committing to SQLite file {}: {message}",
                self.path.display()
            ))),
            Err(_) => Err(Error::Internal(anyhow::anyhow!(
                "a group of writes to SQLite file {} ended without an outcome",
                self.path.display()
            ))),
        }
    }

    fn check_open(&self) -> Result<(), Error> {
        if self.closed.load(Ordering::SeqCst) {
            return Err(Error::Unavailable(format!(
                "SQLite file {} is closed",
                self.path.display()
            )));
        }
        Ok(())
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

    fn error(&self, e: rusqlite::Error) -> Error {
        Error::Sqlite {
            file: self.path.display().to_string(),
            source: e,
        }
    }
}

/// Commits the group `group` from a task of its own when the writer waiting for it was dropped
/// (its request cancelled), so the shared transaction never stays open for want of a committer.
struct FlushOnDrop {
    file: Option<Arc<SqliteFile>>,
    group: u64,
}

impl Drop for FlushOnDrop {
    fn drop(&mut self) {
        let (Some(file), Ok(runtime)) = (self.file.take(), tokio::runtime::Handle::try_current())
        else {
            return;
        };
        let group = self.group;
        runtime.spawn(async move {
            let mut writer = file.turn().await;
            if writer.group.as_ref().is_some_and(|g| g.id == group) {
                let _ = writer.finish_group();
            }
        });
    }
}

impl Writer {
    fn conn(&self) -> Result<&Connection, Error> {
        self.conn
            .as_ref()
            .ok_or_else(|| Error::Unavailable("the SQLite writer is closed".into()))
    }

    /// Commits the shared transaction and tells every waiting member the outcome.
    fn finish_group(&mut self) -> Result<(), String> {
        let Some(group) = self.group.take() else {
            return Ok(());
        };
        let result = match self.conn() {
            Ok(conn) => {
                let result = conn.execute_batch("COMMIT").map_err(|e| e.to_string());
                self.commits.fetch_add(1, Ordering::Relaxed);
                if result.is_err() && !conn.is_autocommit() {
                    let _ = conn.execute_batch("ROLLBACK");
                }
                result
            }
            Err(e) => Err(e.to_string()),
        };
        for waiter in group.waiting {
            let _ = waiter.send(result.clone());
        }
        result
    }

    /// Rolls the shared transaction back, telling every waiting member (none of whom was
    /// acknowledged) that their writes are gone.
    fn roll_back_group(&mut self) {
        if let Some(group) = self.group.take() {
            if let Some(conn) = self.conn.as_ref().filter(|c| !c.is_autocommit()) {
                let _ = conn.execute_batch("ROLLBACK");
            }
            for waiter in group.waiting {
                let _ = waiter.send(Err("the transaction was rolled back".into()));
            }
        }
    }

    /// After the error `e`: when SQLite ended the shared transaction itself, the group is gone.
    fn abandon_if_ended(&mut self, e: &rusqlite::Error) {
        if self.group.is_some() && self.conn.as_ref().is_some_and(Connection::is_autocommit) {
            tracing::warn!(error = %e, "SQLite rolled back a group of writes");
            self.roll_back_group();
        }
    }
}

/// One write transaction's turn on the writer: a savepoint in the shared transaction. Dropping
/// it without [`WriteTurn::commit`] rolls the savepoint back.
#[derive(Debug)]
pub(super) struct WriteTurn {
    file: Arc<SqliteFile>,
    writer: Option<OwnedMutexGuard<Writer>>,
    /// SQLite ended the shared transaction under this turn: nothing more runs in it.
    broken: bool,
}

impl WriteTurn {
    /// Runs `sql` with `values` in this transaction: the rows it returns (at most one when
    /// `first_only`) and how many rows it changed.
    pub(super) fn run(
        &mut self,
        sql: &str,
        values: &[Value],
        first_only: bool,
    ) -> Result<(Vec<LiteRow>, u64), Error> {
        let writer = match (&mut self.writer, self.broken) {
            (Some(writer), false) => writer,
            _ => {
                return Err(Error::Internal(anyhow::anyhow!(
                    "a statement after SQLite ended its transaction"
                )));
            }
        };
        let conn = writer.conn()?;
        let result = conn
            .prepare_cached(sql)
            .and_then(|mut statement| rows(&mut statement, values, first_only))
            .map(|rows| (rows, conn.changes()));
        let ended = conn.is_autocommit();
        result.map_err(|e| {
            if ended {
                writer.abandon_if_ended(&e);
                self.broken = true;
            }
            self.file.error(e)
        })
    }

    /// Commits: releases the savepoint into the shared transaction, then commits it now when no
    /// other writer is queued (or the group is full), else waits for the group's commit. Returns
    /// once the writes are committed, or with the error that undid them.
    pub(super) async fn commit(mut self) -> Result<(), Error> {
        let file = Arc::clone(&self.file);
        if self.broken {
            return Err(Error::Internal(anyhow::anyhow!(
                "SQLite ended the transaction before its commit"
            )));
        }
        let Some(mut writer) = self.writer.take() else {
            return Ok(());
        };
        if let Err(e) = writer.conn()?.execute_batch("RELEASE tx") {
            writer.abandon_if_ended(&e);
            self.writer = Some(writer);
            return Err(file.error(e));
        }
        let Some(group) = writer.group.as_mut() else {
            return Err(Error::Internal(anyhow::anyhow!(
                "a savepoint without its transaction"
            )));
        };
        group.members += 1;
        let full = group.members >= MAX_GROUP;
        if !full && file.queued.load(Ordering::SeqCst) == 0 {
            // Requests that are on their way to a write (parsing, checking a token) get to queue
            // for this group before it commits: one turn of the scheduler, the turn held.
            tokio::task::yield_now().await;
        }
        let Some(group) = writer.group.as_mut() else {
            return Err(Error::Internal(anyhow::anyhow!(
                "a savepoint without its transaction"
            )));
        };
        if file.queued.load(Ordering::SeqCst) == 0 || full {
            return writer.finish_group().map_err(|message| {
                Error::Internal(anyhow::anyhow!(
                    "committing to SQLite file {}: {message}",
                    file.path.display()
                ))
            });
        }
        let (tell, outcome) = oneshot::channel();
        group.waiting.push(tell);
        let id = group.id;
        drop(writer);
        file.await_group(id, outcome).await
    }
}

impl Drop for WriteTurn {
    fn drop(&mut self) {
        let Some(writer) = self.writer.as_mut() else {
            return;
        };
        if self.broken {
            return;
        }
        let undone = writer
            .conn()
            .is_ok_and(|c| c.execute_batch("ROLLBACK TO tx; RELEASE tx").is_ok());
        let empty = writer.group.as_ref().is_some_and(|g| g.members == 0);
        let ended = writer.conn.as_ref().is_none_or(Connection::is_autocommit);
        if !undone || empty || ended {
            // Nothing of anyone's to keep, or a state that cannot be trusted: the whole
            // transaction goes, and whoever waits on it hears so.
            writer.roll_back_group();
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
