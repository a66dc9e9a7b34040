//! Periodic deletion of what has died: expired sessions, sign-in links, reset tokens, quiet
//! failure counts and API sign-ins.

use super::serve::until_stopped;
use crate::state::AppState;

/// How often expired sessions and sign-in links are deleted.
const HOUSEKEEPING_INTERVAL: std::time::Duration = std::time::Duration::from_secs(600);

/// Deletes expired sessions (database store; Redis expires its own), dead sign-in links and reset
/// tokens, quiet sign-in failure counts and dead API sign-ins, every [`HOUSEKEEPING_INTERVAL`]
/// (the first time one interval after start: instances restarting in a loop do not each sweep
/// the tables), until `stop`. With several instances each does it; the deletes are idempotent.
pub(super) async fn housekeeping(state: AppState, mut stop: tokio::sync::watch::Receiver<bool>) {
    let mut tick = tokio::time::interval_at(
        tokio::time::Instant::now() + HOUSEKEEPING_INTERVAL,
        HOUSEKEEPING_INTERVAL,
    );
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = until_stopped(&mut stop) => return,
        }
        match state.sessions.purge_expired().await {
            Ok(0) => {}
            Ok(n) => tracing::info!(
                event = "sessions_purged",
                count = n,
                "expired sessions deleted"
            ),
            Err(e) => {
                tracing::warn!(event = "housekeeping_failed", error = %e, "cannot purge sessions")
            }
        }
        let now = state.clock.now();
        let purges = [
            (
                "magic_links",
                crate::identity::magic_links::purge_expired(&state.db, now).await,
            ),
            (
                "password_resets",
                crate::identity::password_reset::purge_expired(&state.db, now).await,
            ),
            (
                "sign_in_failures",
                crate::identity::throttle::purge_quiet(&state.db, &state.settings.throttle, now)
                    .await,
            ),
            (
                "token_families",
                crate::identity::tokens::purge(&state.db, now).await,
            ),
        ];
        for (table, result) in purges {
            match result {
                Ok(0) => {}
                Ok(n) => tracing::info!(
                    event = "housekeeping_purged",
                    table,
                    count = n,
                    "dead rows deleted"
                ),
                Err(e) => {
                    tracing::warn!(event = "housekeeping_failed", table, error = %e, "cannot purge")
                }
            }
        }
    }
}
