//! The PostgreSQL writer: write transactions of this instance take turns on one pooled
//! connection and commit in groups ([`super::group`]).
//!
//! Every change is recorded in the audit chain in its own transaction, and the chain's lock
//! (held until the commit) makes each writer wait for the one before it, commit and `fsync`
//! included: one transaction per disk flush, a few hundred a second on a real disk, however many
//! cores the server has. In a group, one commit (one flush) carries every transaction that
//! queued meanwhile. Reads stay on the pool and run in parallel.
//!
//! The writer's connection is its own, beside the pool (`GATEHOUSE_DATABASE_MAX_CONNECTIONS`
//! counts the pool alone): a transaction that also reads on the pool while it holds the writer
//! never waits for the writer's own connection, whatever the pool's size.

use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection as _, PgConnection, PgPool};

use super::group::{GroupConn, Turns, WriteTurn};
use crate::error::Error;

/// A write transaction on PostgreSQL.
pub(super) type PgTurn = WriteTurn<PgConn>;

/// The writer's connection, and whether its shared transaction is open.
#[derive(Debug)]
pub(super) struct PgConn {
    pub(super) conn: PgConnection,
    options: Arc<PgConnectOptions>,
    wait: Duration,
    in_transaction: bool,
    lost: bool,
}

impl PgConn {
    /// Connects as the pool does, waiting at most `wait`.
    async fn connect(options: Arc<PgConnectOptions>, wait: Duration) -> Result<Self, Error> {
        let conn = tokio::time::timeout(wait, PgConnection::connect_with(&options))
            .await
            .map_err(|_| Error::Database(sqlx::Error::PoolTimedOut))??;
        Ok(Self {
            conn,
            options,
            wait,
            in_transaction: false,
            lost: false,
        })
    }
}

impl GroupConn for PgConn {
    /// `BEGIN`; on a connection that an outage ended since its last use (nothing of anyone's is
    /// on it yet), once more on a new connection.
    async fn begin(&mut self) -> Result<(), Error> {
        match self.control("BEGIN").await {
            Err(_) if self.lost => {
                *self = Self::connect(Arc::clone(&self.options), self.wait).await?;
                self.control("BEGIN").await
            }
            result => result,
        }
    }

    async fn control(&mut self, sql: &'static str) -> Result<(), Error> {
        // The simple protocol: one round trip, and `sql` may hold two statements.
        let result = sqlx::Executor::execute(&mut self.conn, sql).await;
        match (&result, sql) {
            (Ok(_), "BEGIN") => self.in_transaction = true,
            (_, "COMMIT" | "ROLLBACK") => self.in_transaction = false,
            (Err(e), _) if crate::error::database_unreachable(e) => {
                self.in_transaction = false;
                self.lost = true;
            }
            _ => {}
        }
        result.map(drop).map_err(Error::from)
    }

    fn in_transaction(&self) -> bool {
        self.in_transaction
    }

    fn is_lost(&self) -> bool {
        self.lost
    }
}

/// Begins a write transaction on `turns`, connecting the writer first (as `pool` connects).
pub(super) async fn begin(pool: &PgPool, turns: &Arc<Turns<PgConn>>) -> Result<PgTurn, Error> {
    let mut writer = turns.turn().await?;
    if writer.conn.is_none() {
        writer.conn = Some(PgConn::connect(pool.connect_options(), turns.wait()).await?);
    }
    turns.begin(writer).await
}
