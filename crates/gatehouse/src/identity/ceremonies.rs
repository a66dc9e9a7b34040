//! Passkey ceremony state between the challenge and the browser's answer, kept server-side in
//! the session store (the `passkey_ceremonies` table, or Redis beside the sessions).
//!
//! The browser holds only a random token naming the state; the state (the challenge, the
//! credentials allowed, the user verification asked for) never leaves the server.
//!
//! # Security
//! - Tokens are 256 random bits; stores keep only their SHA-256, as for sessions.
//! - **Single use.** Taking a ceremony removes it in one step (`DELETE … RETURNING`, Redis
//!   `GETDEL`): of two requests with the same token one gets the state, the other nothing, so a
//!   challenge cannot be answered twice.
//! - **Five minutes.** The expiry is checked against the injected clock when the state is taken;
//!   Redis also drops the key after five minutes and the database drops expired rows whenever a
//!   ceremony starts.
//! - A ceremony is for one purpose (registration, sign-in, second factor) and, except for a
//!   sign-in, one user: a token taken for another purpose or user gives nothing.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore as _;
use redis::AsyncCommands as _;
use serde::Serialize;
use serde::de::DeserializeOwned;
use uuid::Uuid;

use super::queries::passkeys::{self as queries, StoredCeremony};
use super::sessions::{SessionStore, SessionToken, Sessions, redis_error};
use crate::error::Error;

/// How long a browser may take to answer a challenge.
pub const CEREMONY_LIFETIME: Duration = Duration::from_secs(5 * 60);

/// What a ceremony is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    /// Adding a passkey to a signed-in account.
    Register,
    /// Signing in with a discoverable passkey (no address typed).
    SignIn,
    /// A passkey as the second factor of a pending sign-in.
    SecondFactor,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Self::Register => "register",
            Self::SignIn => "sign_in",
            Self::SecondFactor => "second_factor",
        }
    }
}

/// The value kept in Redis (the database keeps the same fields as columns).
#[derive(Serialize, serde::Deserialize)]
struct RedisCeremony {
    kind: String,
    user_id: Option<Uuid>,
    state: String,
    expires_at: i64,
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
    let state = serde_json::to_string(state).map_err(|e| Error::Internal(e.into()))?;
    let now = sessions.clock().now();
    let expires_at = now + CEREMONY_LIFETIME;
    match sessions.store() {
        SessionStore::Database(db) => {
            let stored = StoredCeremony {
                kind: kind.as_str().to_owned(),
                user_id,
                state,
                expires_at,
            };
            queries::put_ceremony(db, &id_hash, &stored, now).await?;
        }
        SessionStore::Redis(r) => {
            let value = serde_json::to_string(&RedisCeremony {
                kind: kind.as_str().to_owned(),
                user_id,
                state,
                expires_at: expires_at.unix_timestamp(),
            })
            .map_err(|e| Error::Internal(e.into()))?;
            let mut conn = r.connection().await?;
            let ttl = u64::try_from(CEREMONY_LIFETIME.as_millis()).unwrap_or(u64::MAX);
            let () = redis::cmd("SET")
                .arg(r.key(&format!("passkey-ceremony:{id_hash}")))
                .arg(value)
                .arg("PX")
                .arg(ttl)
                .query_async(&mut conn)
                .await
                .map_err(redis_error)?;
        }
    }
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
    let taken = match sessions.store() {
        SessionStore::Database(db) => queries::take_ceremony(db, &id_hash).await?,
        SessionStore::Redis(r) => {
            let mut conn = r.connection().await?;
            let value: Option<String> = conn
                .get_del(r.key(&format!("passkey-ceremony:{id_hash}")))
                .await
                .map_err(redis_error)?;
            match value {
                Some(v) => {
                    let c: RedisCeremony =
                        serde_json::from_str(&v).map_err(|e| Error::Internal(e.into()))?;
                    Some(StoredCeremony {
                        kind: c.kind,
                        user_id: c.user_id,
                        state: c.state,
                        expires_at: time::OffsetDateTime::from_unix_timestamp(c.expires_at)
                            .map_err(|e| Error::Internal(e.into()))?,
                    })
                }
                None => None,
            }
        }
    };
    let Some(c) = taken else {
        return Ok(None);
    };
    if c.kind != kind.as_str() || c.user_id != user_id || sessions.clock().now() >= c.expires_at {
        tracing::info!(
            event = "passkey_ceremony_refused",
            kind = kind.as_str(),
            "a passkey answer came for an expired ceremony or another one"
        );
        return Ok(None);
    }
    serde_json::from_str(&c.state)
        .map(Some)
        .map_err(|e| Error::Internal(e.into()))
}
