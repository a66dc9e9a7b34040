//! Passkey ceremony state between the challenge and the browser's answer, kept server-side in
//! the session store's single-use state ([`Sessions::put_pending`] and
//! [`Sessions::take_pending`]: the `pending_flows` table, or Redis `<prefix>pending:passkey:…`),
//! the same store and the same take-once rule as an OpenID Connect flow's state.
//!
//! The browser holds only a random token naming the state; the state (the challenge, the
//! credentials allowed, the user verification asked for) never leaves the server.
//!
//! # Security
//! - Tokens are 256 random bits; stores keep only their SHA-256, as for sessions.
//! - **Single use.** Taking a ceremony removes it in one step (`take_pending`): of two requests
//!   with the same token one gets the state, the other nothing, so a challenge cannot be
//!   answered twice.
//! - **Five minutes.** The expiry is checked against the injected clock when the state is taken;
//!   the stores also drop it after five minutes (Redis by its expiry, the database by the
//!   housekeeping that purges sessions).
//! - A ceremony is for one purpose (registration, sign-in, second factor) and, except for a
//!   sign-in, one user: a token taken for another purpose or user gives nothing.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore as _;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::sessions::{SessionToken, Sessions};
use crate::error::Error;

/// How long a browser may take to answer a challenge.
pub const CEREMONY_LIFETIME: Duration = Duration::from_secs(5 * 60);

/// What a ceremony is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(super) enum Kind {
    /// Adding a passkey to a signed-in account.
    Register,
    /// Signing in with a discoverable passkey (no address typed).
    SignIn,
    /// A passkey as the second factor of a pending sign-in.
    SecondFactor,
}

/// What is kept for a ceremony.
#[derive(Serialize, Deserialize)]
struct Ceremony {
    kind: Kind,
    user_id: Option<Uuid>,
    /// The library's state, as JSON.
    state: String,
    /// Unix seconds.
    expires_at: i64,
}

/// The pending-state key of the token whose SHA-256 is `id_hash`.
fn pending_key(id_hash: &str) -> String {
    format!("passkey:{id_hash}")
}

/// Keeps `state` for a ceremony of `kind` (for `user_id`, unless a sign-in); returns the token
/// the browser sends back with its answer.
pub(super) async fn put(
    sessions: &Sessions,
    kind: Kind,
    user_id: Option<Uuid>,
    state: &impl Serialize,
) -> Result<String, Error> {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    let token = URL_SAFE_NO_PAD.encode(bytes);
    let id_hash = SessionToken::hash_of(&token)
        .ok_or_else(|| Error::Internal(anyhow::anyhow!("generated a malformed token")))?;
    let expires_at = sessions.clock().now() + CEREMONY_LIFETIME;
    let ceremony = Ceremony {
        kind,
        user_id,
        state: serde_json::to_string(state).map_err(|e| Error::Internal(e.into()))?,
        expires_at: expires_at.unix_timestamp(),
    };
    let payload = serde_json::to_string(&ceremony).map_err(|e| Error::Internal(e.into()))?;
    sessions
        .put_pending(&pending_key(&id_hash), &payload, expires_at)
        .await?;
    Ok(token)
}

/// Takes (removes and returns) the state of the ceremony `token` names, if it is of `kind`, for
/// `user_id` (`None` for a sign-in) and not expired; `None` otherwise, also for a token used
/// before.
pub(super) async fn take<T: DeserializeOwned>(
    sessions: &Sessions,
    token: &str,
    kind: Kind,
    user_id: Option<Uuid>,
) -> Result<Option<T>, Error> {
    let Some(id_hash) = SessionToken::hash_of(token) else {
        return Ok(None);
    };
    let Some(payload) = sessions.take_pending(&pending_key(&id_hash)).await? else {
        return Ok(None);
    };
    let c: Ceremony = serde_json::from_str(&payload).map_err(|e| Error::Internal(e.into()))?;
    if c.kind != kind
        || c.user_id != user_id
        || sessions.clock().now().unix_timestamp() >= c.expires_at
    {
        tracing::info!(
            event = "passkey_ceremony_refused",
            kind = ?kind,
            "a passkey answer came for an expired ceremony or another one"
        );
        return Ok(None);
    }
    serde_json::from_str(&c.state)
        .map(Some)
        .map_err(|e| Error::Internal(e.into()))
}
