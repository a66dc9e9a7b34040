//! What this process does with its SQLite file besides sqlx's pool: hot reads on the calling
//! thread (`rusqlite`), and one writer at a time.
//!
//! # Hot reads
//!
//! sqlx runs each SQLite connection on a thread of its own and hands every query to it, and the
//! result back, through channels: at least two thread wake-ups per query. On a small machine
//! those cost far more than the query itself: a page of 20 items took ~150 µs of CPU through
//! sqlx, most of it in the scheduler, against a few tens of microseconds for SQLite to read and
//! encode the page (`bench/README.md` has the figures). The few reads on the busiest paths
//! (listing items) therefore run here instead, synchronously, on the thread of the request.
//!
//! That is safe to do on an async worker because these reads do not wait: the database is in WAL
//! mode, where a reader never waits for a writer, and the connections here are read-only
//! (`SQLITE_OPEN_READ_ONLY`, `PRAGMA query_only`), so they take no lock a writer holds. The one
//! wait left, while SQLite restarts the WAL, is bounded by a short busy timeout. Everything that
//! writes, and every transaction, stays on sqlx.
//!
//! # One writer at a time
//!
//! SQLite lets one transaction write at a time. Left to itself, a second writer polls for the
//! lock, sleeping longer between each try (1, 2, 5, 10 … 100 ms): under load, writes then wait
//! hundreds of milliseconds for a lock that was free most of that time. Write transactions of this
//! process ([`super::Db::begin`]) therefore queue for [`SqliteFile::writer_turn`] first, in order,
//! and take the database lock only when it is theirs; SQLite's own waiting is left for writers in
//! other processes (the command line).

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};
use tokio::sync::OwnedMutexGuard;

use crate::error::Error;

/// How long a read waits in the rare moment the WAL is being restarted.
const BUSY_TIMEOUT: Duration = Duration::from_millis(100);

/// One SQLite file's read-only connections (opened on first use, kept for reuse) and its queue
/// of writers.
#[derive(Debug)]
pub struct SqliteFile {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
    keep: usize,
    writer: Arc<tokio::sync::Mutex<()>>,
}

impl SqliteFile {
    /// The database file at `path`, keeping at most `keep` idle read connections.
    pub(super) fn new(path: PathBuf, keep: usize) -> Self {
        Self {
            path,
            idle: Mutex::new(Vec::new()),
            keep,
            writer: Arc::default(),
        }
    }

    /// Waits, in order of arrival, until no other write transaction of this process is open;
    /// the turn lasts until the guard is dropped.
    pub(super) async fn writer_turn(&self) -> OwnedMutexGuard<()> {
        self.writer.clone().lock_owned().await
    }

    /// Runs `read` on a read-only connection. `read` should use `prepare_cached`, so each
    /// connection parses a statement once.
    pub fn read<T>(
        &self,
        read: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> Result<T, Error> {
        let idle = self.idle.lock().ok().and_then(|mut idle| idle.pop());
        let conn = match idle {
            Some(conn) => conn,
            None => self.open().map_err(|e| self.error(&e))?,
        };
        let result = read(&conn).map_err(|e| self.error(&e));
        if let Ok(mut idle) = self.idle.lock() {
            if idle.len() < self.keep {
                idle.push(conn);
            }
        }
        result
    }

    fn open(&self) -> rusqlite::Result<Connection> {
        let conn = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        conn.pragma_update(None, "query_only", true)?;
        conn.pragma_update(None, "trusted_schema", false)?;
        Ok(conn)
    }

    fn error(&self, e: &rusqlite::Error) -> Error {
        Error::Internal(anyhow::anyhow!(
            "reading SQLite file {}: {e}",
            self.path.display()
        ))
    }
}

#[cfg(test)]
mod tests {
    use crate::store::Db;

    /// The reads that run on request threads can only read: a write through them fails instead
    /// of taking the database lock behind the writer queue's back.
    #[tokio::test]
    async fn hot_read_connections_cannot_write() {
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
            "a hot read connection wrote"
        );
        assert!(file.read(|c| c.execute("CREATE TABLE x (a)", [])).is_err());
    }
}
