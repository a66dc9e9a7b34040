//! Group commit: write transactions take turns on one connection, each inside a savepoint of a
//! transaction that several turns share, committed once for all of them. The same protocol
//! serves both backends ([`super::SqliteFile`] and the PostgreSQL writer of [`super::Db`]); a
//! backend supplies the connection ([`GroupConn`]).
//!
//! # The protocol
//! - [`Turns::turn`] waits, in order of arrival and at most the pool's acquire timeout, for the
//!   one connection. [`Turns::begin`] then opens a savepoint `tx`, beginning the shared
//!   transaction when none is open.
//! - [`WriteTurn::commit`]: when no other writer is queued (after one turn of the scheduler, so
//!   that requests on their way to a write can queue), or the group is full, it commits the
//!   group itself and tells every waiting member the outcome. Otherwise it releases its
//!   savepoint into the shared transaction, opening the next turn's savepoint in the same round
//!   trip, hands the turn on and waits: every waiting member also queues for the turn again, and
//!   whichever gets it first with the group still open commits it, so a group always has a
//!   committer.
//! - A turn dropped without a commit leaves its savepoint to be rolled back by the next holder of
//!   the turn (before anything else), and a task of its own makes sure there is one.
//! - If the database ends the shared transaction (SQLite after a full disk; a lost PostgreSQL
//!   connection), every member still waiting gets the error: none of them was acknowledged.
//!
//! # What callers keep
//! A commit returns only once its writes are committed; a rolled-back transaction undoes its own
//! writes alone; a transaction sees the writes of the group's earlier members (they come before
//! it, in the order the audit chain shows) and nobody outside sees any of them before the group
//! commits.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::{OwnedMutexGuard, oneshot};

use crate::error::Error;

/// The most transactions one commit takes, so the first of a group never waits for a long queue.
const MAX_GROUP: usize = 64;

/// A connection that can run the shared transaction.
pub(super) trait GroupConn: Send + 'static {
    /// Begins the shared transaction (on SQLite, taking the database's write lock).
    fn begin(&mut self) -> impl Future<Output = Result<(), Error>> + Send;
    /// Runs one of `SAVEPOINT tx`, `RELEASE tx`, `ROLLBACK TO tx`, `COMMIT`, `ROLLBACK`, or
    /// `RELEASE tx; SAVEPOINT tx` (two statements, one round trip).
    fn control(&mut self, sql: &'static str) -> impl Future<Output = Result<(), Error>> + Send;
    /// Whether the shared transaction is still open (false: the database ended it).
    fn in_transaction(&self) -> bool;
    /// Whether the connection is lost (the next turn opens a new one).
    fn is_lost(&self) -> bool {
        false
    }
}

/// The one connection, its queue of writers and what they share.
#[derive(Debug)]
pub(super) struct Turns<C> {
    writer: Arc<tokio::sync::Mutex<Writer<C>>>,
    queued: AtomicUsize,
    next_group: AtomicU64,
    commits: AtomicU64,
    closed: AtomicBool,
    wait: Duration,
}

/// The connection and the transaction its turns share.
#[derive(Debug)]
pub(super) struct Writer<C> {
    /// The connection, opened by the backend on first use (see [`Turns::begin`]).
    pub(super) conn: Option<C>,
    group: Option<Group>,
    /// A turn was dropped with its savepoint open.
    abandoned: bool,
    /// A fresh savepoint `tx` is open for the next turn (opened with the last release).
    spare: bool,
}

/// The open shared transaction.
#[derive(Debug)]
struct Group {
    id: u64,
    members: usize,
    waiting: Vec<oneshot::Sender<Result<(), String>>>,
}

impl<C: GroupConn> Turns<C> {
    /// A writer whose callers wait at most `wait` for their turn.
    pub(super) fn new(wait: Duration) -> Self {
        Self {
            writer: Arc::new(tokio::sync::Mutex::new(Writer {
                conn: None,
                group: None,
                abandoned: false,
                spare: false,
            })),
            queued: AtomicUsize::new(0),
            next_group: AtomicU64::new(0),
            commits: AtomicU64::new(0),
            closed: AtomicBool::new(false),
            wait,
        }
    }

    /// How many commits were made: fewer than the transactions when they were grouped.
    pub(super) fn commits(&self) -> u64 {
        self.commits.load(Ordering::Relaxed)
    }

    /// How long a writer waits for its turn, and the backend for its connection.
    pub(super) fn wait(&self) -> Duration {
        self.wait
    }

    /// Whether [`Turns::close`] was called.
    pub(super) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    /// Waits for the turn (in order of arrival, at most the acquire timeout: then a 503), and
    /// first rolls back what a dropped turn left.
    pub(super) async fn turn(&self) -> Result<OwnedMutexGuard<Writer<C>>, Error> {
        if self.is_closed() {
            return Err(Error::Unavailable("the database is closed".into()));
        }
        let mut writer = tokio::time::timeout(self.wait, self.queue())
            .await
            .map_err(|_| Error::Database(sqlx::Error::PoolTimedOut))?;
        if self.is_closed() {
            return Err(Error::Unavailable("the database is closed".into()));
        }
        writer.clean_up().await;
        if writer.conn.as_ref().is_some_and(C::is_lost) {
            writer.roll_back_group().await;
            writer.conn = None;
        }
        Ok(writer)
    }

    /// Opens a savepoint on `writer` (whose connection the backend has opened), beginning the
    /// shared transaction when none is open.
    pub(super) async fn begin(
        self: &Arc<Self>,
        mut writer: OwnedMutexGuard<Writer<C>>,
    ) -> Result<WriteTurn<C>, Error> {
        if writer.group.is_none() {
            writer.conn()?.begin().await?;
            writer.group = Some(Group {
                id: self.next_group.fetch_add(1, Ordering::Relaxed),
                members: 0,
                waiting: Vec::new(),
            });
        }
        if std::mem::take(&mut writer.spare) {
            // Opened with the previous member's release, in the same round trip.
        } else if let Err(e) = writer.conn()?.control("SAVEPOINT tx").await {
            if writer.group.as_ref().is_some_and(|g| g.members == 0) || !writer.in_transaction() {
                writer.roll_back_group().await;
            }
            return Err(e);
        }
        Ok(WriteTurn {
            turns: Arc::clone(self),
            writer: Some(writer),
            broken: false,
        })
    }

    /// Refuses new turns, commits what is under way and closes the connection.
    pub(super) async fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        let mut writer = self.writer.clone().lock_owned().await;
        writer.clean_up().await;
        if writer.group.is_some() {
            let _ = writer.finish_group(&self.commits).await;
        }
        writer.conn = None;
    }

    /// The turn, counted in `queued` while waiting.
    async fn queue(&self) -> OwnedMutexGuard<Writer<C>> {
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

    /// Waits until the group `id` has committed; commits it itself when the turn comes round
    /// first.
    async fn await_group(
        self: &Arc<Self>,
        id: u64,
        mut outcome: oneshot::Receiver<Result<(), String>>,
    ) -> Result<(), Error> {
        let mut flush = Flush(Some(Arc::clone(self)));
        let result = tokio::select! {
            biased;
            result = &mut outcome => result,
            mut writer = self.queue() => {
                writer.clean_up().await;
                if writer.group.as_ref().is_some_and(|g| g.id == id) {
                    let _ = writer.finish_group(&self.commits).await;
                }
                drop(writer);
                outcome.await
            }
        };
        flush.0 = None;
        match result {
            Ok(Ok(())) => Ok(()),
            Ok(Err(message)) => Err(Error::Internal(anyhow::anyhow!("commit failed: {message}"))),
            Err(_) => Err(Error::Internal(anyhow::anyhow!(
                "a group of writes ended without an outcome"
            ))),
        }
    }

    /// Takes the turn and ends an open group that nobody is queued to end (its members'
    /// requests were dropped), committing what its members released.
    async fn flush(&self) {
        let mut writer = self.queue().await;
        writer.clean_up().await;
        if writer.group.is_some() && self.queued.load(Ordering::SeqCst) == 0 {
            let _ = writer.finish_group(&self.commits).await;
        }
    }
}

/// Flushes from a task of its own when dropped armed (see [`Turns::flush`]).
struct Flush<C: GroupConn>(Option<Arc<Turns<C>>>);

impl<C: GroupConn> Drop for Flush<C> {
    fn drop(&mut self) {
        if let (Some(turns), Ok(runtime)) = (self.0.take(), tokio::runtime::Handle::try_current()) {
            runtime.spawn(async move { turns.flush().await });
        }
    }
}

impl<C: GroupConn> Writer<C> {
    /// The connection.
    pub(super) fn conn(&mut self) -> Result<&mut C, Error> {
        self.conn
            .as_mut()
            .ok_or_else(|| Error::Unavailable("the database writer is closed".into()))
    }

    fn in_transaction(&self) -> bool {
        self.conn.as_ref().is_some_and(C::in_transaction)
    }

    /// Rolls back the savepoint a dropped turn left, and the whole group when that fails or
    /// the group has nothing else in it.
    async fn clean_up(&mut self) {
        if !std::mem::take(&mut self.abandoned) {
            return;
        }
        let undone = match self.conn.as_mut().filter(|c| c.in_transaction()) {
            Some(conn) => {
                conn.control("ROLLBACK TO tx").await.is_ok()
                    && conn.control("RELEASE tx").await.is_ok()
            }
            None => false,
        };
        if !undone || self.group.as_ref().is_some_and(|g| g.members == 0) {
            self.roll_back_group().await;
        }
    }

    /// Commits the shared transaction and tells every waiting member the outcome.
    async fn finish_group(&mut self, commits: &AtomicU64) -> Result<(), String> {
        self.spare = false;
        let Some(group) = self.group.take() else {
            return Ok(());
        };
        let result = match self.conn.as_mut() {
            Some(conn) => {
                let result = conn.control("COMMIT").await.map_err(|e| e.to_string());
                commits.fetch_add(1, Ordering::Relaxed);
                if result.is_err() && conn.in_transaction() {
                    let _ = conn.control("ROLLBACK").await;
                }
                result
            }
            None => Err("the database writer is closed".into()),
        };
        for waiter in group.waiting {
            let _ = waiter.send(result.clone());
        }
        result
    }

    /// Rolls the shared transaction back, telling every waiting member (none of whom was
    /// acknowledged) that their writes are gone.
    async fn roll_back_group(&mut self) {
        self.spare = false;
        if let Some(group) = self.group.take() {
            if let Some(conn) = self.conn.as_mut().filter(|c| c.in_transaction()) {
                let _ = conn.control("ROLLBACK").await;
            }
            if !group.waiting.is_empty() {
                tracing::warn!(
                    members = group.waiting.len(),
                    "a group of writes was rolled back"
                );
            }
            for waiter in group.waiting {
                let _ = waiter.send(Err("the transaction was rolled back".into()));
            }
        }
    }
}

/// One write transaction's turn: a savepoint in the shared transaction. Dropping it without
/// [`WriteTurn::commit`] rolls the savepoint back.
#[derive(Debug)]
pub(super) struct WriteTurn<C: GroupConn> {
    turns: Arc<Turns<C>>,
    writer: Option<OwnedMutexGuard<Writer<C>>>,
    /// The shared transaction ended under this turn: nothing more runs in it.
    broken: bool,
}

impl<C: GroupConn> WriteTurn<C> {
    /// The connection, to run this transaction's statements on.
    pub(super) fn conn(&mut self) -> Result<&mut C, Error> {
        match (&mut self.writer, self.broken) {
            (Some(writer), false) => writer.conn(),
            _ => Err(Error::Internal(anyhow::anyhow!(
                "a statement after the database ended its transaction"
            ))),
        }
    }

    /// After a statement failed: when the database ended the shared transaction (or
    /// `connection_lost`), the group is gone, and so is this turn's transaction.
    pub(super) async fn after_error(&mut self, connection_lost: bool) {
        let Some(writer) = self.writer.as_mut() else {
            return;
        };
        if connection_lost || !writer.in_transaction() {
            self.broken = true;
            writer.roll_back_group().await;
            if connection_lost {
                writer.conn = None;
            }
        }
    }

    /// Commits (see the module doc): returns once the writes are committed, or with the error
    /// that undid them.
    pub(super) async fn commit(mut self) -> Result<(), Error> {
        if self.broken {
            return Err(Error::Internal(anyhow::anyhow!(
                "the database ended the transaction before its commit"
            )));
        }
        let turns = Arc::clone(&self.turns);
        let Some(mut writer) = self.writer.take() else {
            return Ok(());
        };
        let Some(group) = writer.group.as_mut() else {
            return Err(Error::Internal(anyhow::anyhow!(
                "a savepoint without its transaction"
            )));
        };
        group.members += 1;
        let full = group.members >= MAX_GROUP;
        if !full && turns.queued.load(Ordering::SeqCst) == 0 {
            // Requests on their way to a write (parsing, checking a token) get to queue for
            // this group before it commits: one turn of the scheduler, the turn held.
            tokio::task::yield_now().await;
        }
        if full || turns.queued.load(Ordering::SeqCst) == 0 {
            // `COMMIT` commits the open savepoint with the rest.
            return writer
                .finish_group(&turns.commits)
                .await
                .map_err(|message| Error::Internal(anyhow::anyhow!("commit failed: {message}")));
        }
        // Released into the group, with a fresh savepoint for the next turn: one round trip.
        if let Err(e) = writer.conn()?.control("RELEASE tx; SAVEPOINT tx").await {
            if let Some(group) = writer.group.as_mut() {
                group.members -= 1;
            }
            self.writer = Some(writer);
            self.after_error(false).await;
            return Err(e);
        }
        writer.spare = true;
        let (tell, outcome) = oneshot::channel();
        let Some(group) = writer.group.as_mut() else {
            return Err(Error::Internal(anyhow::anyhow!(
                "a savepoint without its transaction"
            )));
        };
        group.waiting.push(tell);
        let id = group.id;
        drop(writer);
        turns.await_group(id, outcome).await
    }
}

impl<C: GroupConn> Drop for WriteTurn<C> {
    fn drop(&mut self) {
        if let Some(mut writer) = self.writer.take() {
            if !self.broken {
                writer.abandoned = true;
            }
            drop(writer);
            drop(Flush(Some(Arc::clone(&self.turns))));
        }
    }
}
