//! The PostgreSQL writer: write transactions of this instance take turns on one pooled
//! connection and commit in groups ([`super::group`]).
//!
//! Every change is recorded in the audit chain in its own transaction, and the chain's lock
//! (held until the commit) makes each writer wait for the one before it, commit and `fsync`
//! included: one transaction per disk flush, a few hundred a second on a real disk, however many
//! cores the server has. In a group, one commit (one flush) carries every transaction that
//! queued meanwhile. Reads stay on the pool and run in parallel.

use sqlx::pool::PoolConnection;
use sqlx::{PgPool, Postgres};

use super::group::{GroupConn, Turns, WriteTurn};
use crate::error::Error;

/// A write transaction on PostgreSQL.
pub(super) type PgTurn = WriteTurn<PgConn>;

/// The writer's connection, and whether its shared transaction is open.
#[derive(Debug)]
pub(super) struct PgConn {
    pub(super) conn: PoolConnection<Postgres>,
    in_transaction: bool,
}

impl GroupConn for PgConn {
    async fn begin(&mut self) -> Result<(), Error> {
        self.control("BEGIN").await
    }

    async fn control(&mut self, sql: &'static str) -> Result<(), Error> {
        // The simple protocol: one round trip, and `sql` may hold two statements.
        let result = sqlx::Executor::execute(&mut *self.conn, sql).await;
        match (&result, sql) {
            (Ok(_), "BEGIN") => self.in_transaction = true,
            (_, "COMMIT" | "ROLLBACK") => self.in_transaction = false,
            (Err(e), _) if crate::error::database_unreachable(e) => self.in_transaction = false,
            _ => {}
        }
        result.map(drop).map_err(Error::from)
    }

    fn in_transaction(&self) -> bool {
        self.in_transaction
    }
}

/// Begins a write transaction on `turns`, taking the writer's connection from `pool` first.
pub(super) async fn begin(
    pool: &PgPool,
    turns: &std::sync::Arc<Turns<PgConn>>,
) -> Result<PgTurn, Error> {
    let mut writer = turns.turn().await?;
    if writer.conn.is_none() {
        writer.conn = Some(PgConn {
            conn: pool.acquire().await?,
            in_transaction: false,
        });
    }
    turns.begin(writer).await
}
