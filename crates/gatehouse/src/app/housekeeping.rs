//! Periodic work: deletion of what has died (expired sessions, sign-in links, reset tokens, quiet
//! failure counts, API sign-ins, retired signing keys), the signing keys' upkeep, and reminders
//! to renew expiring API keys.

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
            (
                "signing_keys",
                crate::identity::tokens::purge_retired_keys(
                    &state.db,
                    now,
                    state.settings.access_token_lifetime,
                )
                .await,
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

/// How often the key upkeep looks at the clock. The injected clock decides when the keys are read
/// again ([`crate::identity::tokens::RELOAD_EVERY`]); this only bounds how late that can be.
const KEY_UPKEEP_TICK: std::time::Duration = std::time::Duration::from_secs(1);

/// Keeps the signing keys current with no traffic needed: reads them again every
/// [`crate::identity::tokens::RELOAD_EVERY`] (a key made by `gatehouse keys rotate` or another
/// instance is published here within that), and rotates on schedule when
/// `GATEHOUSE_SIGNING_KEY_ROTATION` is set, until `stop`.
pub(super) async fn key_upkeep(state: AppState, mut stop: tokio::sync::watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(KEY_UPKEEP_TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = until_stopped(&mut stop) => return,
        }
        let result = crate::identity::secrets::upkeep(
            &state.db,
            &state.keys,
            &state.tokens,
            state.clock.now(),
            state.settings.signing_key_rotation,
        )
        .await;
        if let Err(e) = result {
            tracing::warn!(event = "key_upkeep_failed", error = %e, "cannot read or rotate the signing keys");
        }
    }
}

/// How often, on the injected clock, expiring API keys are looked for.
const REMINDERS_EVERY: time::Duration = time::Duration::hours(1);

/// Reminds the owners of expiring API keys ([`crate::identity::Identity::remind_expiring_api_keys`])
/// at start and then every [`REMINDERS_EVERY`] of the injected clock (looked at each second, so a
/// test's clock moves it without waiting), until `stop`.
pub(super) async fn reminders(state: AppState, mut stop: tokio::sync::watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(KEY_UPKEEP_TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last: Option<time::OffsetDateTime> = None;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = until_stopped(&mut stop) => return,
        }
        let now = state.clock.now();
        if last.is_some_and(|at| now - at < REMINDERS_EVERY) {
            continue;
        }
        last = Some(now);
        if let Err(e) = state.identity.remind_expiring_api_keys().await {
            tracing::warn!(event = "housekeeping_failed", error = %e, "cannot remind owners of expiring API keys");
        }
    }
}
