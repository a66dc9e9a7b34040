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
//! # Unicode lower case
//!
//! SQLite's own `lower` folds ASCII letters only (`ÄPFEL` stays `Äpfel`), where PostgreSQL's
//! folds every letter its locale knows. The read connections here therefore carry
//! [`UNICODE_LOWER`], Rust's `str::to_lowercase`, so a case-insensitive search finds the same
//! rows on both backends. It has a name of its own rather than replacing `lower`: SQLite's
//! `lower` is part of an index expression (`users_email_key`), and a replacement on some
//! connections would disagree with the index that sqlx's connections write.
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

use rusqlite::functions::FunctionFlags;
use rusqlite::types::ValueRef;
use rusqlite::{Connection, OpenFlags};
use tokio::sync::OwnedMutexGuard;

use crate::error::Error;

/// The SQL function on [`SqliteFile::read`]'s connections that lower-cases text as Rust's
/// `str::to_lowercase` does, every script included (see the module doc); `NULL` stays `NULL`.
pub const UNICODE_LOWER: &str = "unicode_lower";

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

    #[tokio::test]
    async fn hot_read_connections_lower_every_script() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::connect(&format!("sqlite://{}/t.db", dir.path().display()), 1)
            .await
            .unwrap();
        db.migrate().await.unwrap();
        let lowered: (String, String, Option<String>) = db
            .sqlite_file()
            .unwrap()
            .read(|c| {
                c.query_row(
                    "SELECT unicode_lower('ÄPFEL Ωmega ÇA'), lower('ÄPFEL'), unicode_lower(NULL)",
                    [],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                )
            })
            .unwrap();
        assert_eq!(
            lowered,
            ("äpfel ωmega ça".into(), "Äpfel".into(), None),
            "SQLite's own lower is left as it is"
        );
    }
}
