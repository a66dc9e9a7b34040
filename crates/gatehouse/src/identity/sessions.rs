//! Server-side sessions: creation, lookup with idle and absolute timeouts, throttled activity
//! updates, a per-user index (list, revoke one, revoke all, at most N per user) and rotation.
//!
//! Stores: the database (SQLite or PostgreSQL, table `sessions`) or Redis (one JSON value per
//! session with a TTL, plus a sorted set per user), chosen once at startup as a
//! [`SessionStore`] value. The same behaviour, and the same test suite, on every store.
//!
//! # Security
//! - The cookie carries a 256-bit random token from the OS-seeded CSPRNG; stores keep only its
//!   SHA-256 (`id_hash`), so a leaked database or Redis dump cannot be replayed as cookies.
//! - A token is accepted only in its exact format (43 base64url characters): anything else is
//!   refused before any lookup.
//! - Idle (default 30 minutes) and absolute (default 12 hours) lifetimes (ASVS 3.3.2, Level 2)
//!   are checked on every load with the injected [`Clock`]; an expired session is deleted when
//!   seen.
//! - [`Sessions::rotate`] issues a new token (and a new CSRF secret) and deletes the old one: call
//!   it at sign-in and at every privilege change, so a fixated token is worthless.
//! - [`Sessions::revoke`] deletes a session only if it belongs to the given user.
//! - `max_per_user` is enforced after each creation by deleting the oldest sessions; two
//!   sign-ins at the same instant can leave one extra session until the next sign-in.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore as _;
use redis::AsyncCommands as _;
use secrecy::{ExposeSecret as _, SecretString};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use time::OffsetDateTime;
use uuid::Uuid;
use zeroize::Zeroizing;

use super::queries::sessions as queries;
use crate::clock::Clock;
use crate::error::Error;
use crate::store::Db;

/// Longest user-agent string kept, in characters.
const MAX_USER_AGENT_CHARS: usize = 200;

/// Lifetimes and limits.
#[derive(Clone, Debug)]
pub struct SessionConfig {
    /// A session unused this long ends.
    pub idle_timeout: Duration,
    /// A session ends this long after sign-in, however active.
    pub absolute_timeout: Duration,
    /// At most this many sessions per user; the oldest are revoked. `None`: no limit.
    pub max_per_user: Option<u32>,
    /// `last_seen` is written at most this often per session.
    pub touch_interval: Duration,
}

/// The defaults are ASVS Level 2's (3.3.2): 30 minutes idle, 12 hours in all. The seeds' longer
/// sessions are settings (`GATEHOUSE_SESSION_IDLE_TIMEOUT`, `GATEHOUSE_SESSION_LIFETIME`).
impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            idle_timeout: Duration::from_secs(30 * 60),
            absolute_timeout: Duration::from_secs(12 * 3600),
            max_per_user: None,
            touch_interval: Duration::from_secs(60),
        }
    }
}

/// The cookie value of a session. Never stored, never logged.
#[derive(Debug)]
pub struct SessionToken(SecretString);

impl SessionToken {
    fn generate() -> Self {
        let mut bytes = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        Self(SecretString::from(URL_SAFE_NO_PAD.encode(bytes)))
    }

    /// The value to put in the cookie.
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }

    /// The stored form of a token: its SHA-256 in hex, or `None` if `raw` is not a token.
    pub fn hash_of(raw: &str) -> Option<String> {
        let well_formed = raw.len() == 43
            && raw
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        well_formed.then(|| hex::encode(Sha256::digest(raw.as_bytes())))
    }
}

/// Where a session was started from, shown to its user.
#[derive(Clone, Debug, Default)]
pub struct SessionMeta {
    /// Client address.
    pub client_ip: Option<IpAddr>,
    /// Browser's `User-Agent`, cut to 200 characters.
    pub user_agent: Option<String>,
}

/// A stored session.
#[derive(Clone, PartialEq, Eq)]
pub struct Session {
    /// SHA-256 of the token, hex.
    pub id_hash: String,
    /// Whose session.
    pub user_id: Uuid,
    /// The secret CSRF tokens of this session are masked from (wiped when dropped).
    pub csrf_secret: Zeroizing<[u8; 32]>,
    /// When it started.
    pub created_at: OffsetDateTime,
    /// Last recorded activity (throttled).
    pub last_seen_at: OffsetDateTime,
    /// When it ends at the latest.
    pub expires_at: OffsetDateTime,
    /// Last sign-in or re-authentication (for "recent sign-in" checks).
    pub authenticated_at: OffsetDateTime,
    /// Client address at creation.
    pub client_ip: Option<String>,
    /// Browser at creation.
    pub user_agent: Option<String>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("id_hash", &self.id_hash)
            .field("user_id", &self.user_id)
            .field("csrf_secret", &"[redacted]")
            .field("created_at", &self.created_at)
            .field("last_seen_at", &self.last_seen_at)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// Redis-backed session storage. Connects on first use (and reconnects as needed), so the
/// server starts while Redis is down and `/readyz` says so.
#[derive(Clone)]
pub struct RedisSessions {
    client: redis::Client,
    conn: Arc<tokio::sync::OnceCell<redis::aio::ConnectionManager>>,
    prefix: String,
}

impl std::fmt::Debug for RedisSessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisSessions")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl RedisSessions {
    /// Sessions in the Redis `client` names; keys start with `prefix`.
    pub fn new(client: &redis::Client, prefix: &str) -> Self {
        Self {
            client: client.clone(),
            conn: Arc::default(),
            prefix: prefix.to_owned(),
        }
    }

    async fn conn(&self) -> Result<redis::aio::ConnectionManager, Error> {
        self.conn
            .get_or_try_init(|| crate::store::redis_connection(&self.client))
            .await
            .cloned()
            .map_err(redis_error)
    }

    fn session_key(&self, id_hash: &str) -> String {
        format!("{}session:{id_hash}", self.prefix)
    }

    fn pending_key(&self, key_hash: &str) -> String {
        format!("{}pending:{key_hash}", self.prefix)
    }

    fn user_key(&self, user_id: Uuid) -> String {
        format!("{}user-sessions:{user_id}", self.prefix)
    }
}

/// Where sessions live.
#[derive(Clone, Debug)]
pub enum SessionStore {
    /// The `sessions` table.
    Database(Db),
    /// Redis.
    Redis(RedisSessions),
}

/// Sessions: policy (lifetimes, limits) over a store.
#[derive(Clone, Debug)]
pub struct Sessions {
    store: SessionStore,
    config: SessionConfig,
    clock: Arc<dyn Clock>,
}

impl Sessions {
    /// Sessions in `store` under `config`, timed by `clock`.
    pub fn new(store: SessionStore, config: SessionConfig, clock: Arc<dyn Clock>) -> Self {
        Self {
            store,
            config,
            clock,
        }
    }

    /// The time source.
    pub(super) fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// The lifetimes and limits in force.
    pub fn config(&self) -> &SessionConfig {
        &self.config
    }

    /// Starts a session for `user_id`; returns the cookie token and the session. Revokes the
    /// user's oldest sessions beyond `max_per_user`.
    pub async fn create(
        &self,
        user_id: Uuid,
        meta: &SessionMeta,
    ) -> Result<(SessionToken, Session), Error> {
        let now = self.clock.now();
        let token = SessionToken::generate();
        let id_hash = SessionToken::hash_of(token.expose())
            .ok_or_else(|| Error::Internal(anyhow::anyhow!("generated a malformed token")))?;
        let mut csrf_secret = Zeroizing::new([0u8; 32]);
        rand::rngs::OsRng.fill_bytes(&mut *csrf_secret);
        let session = Session {
            id_hash,
            user_id,
            csrf_secret,
            created_at: now,
            last_seen_at: now,
            expires_at: now + self.config.absolute_timeout,
            authenticated_at: now,
            client_ip: meta.client_ip.map(|ip| ip.to_string()),
            user_agent: meta.user_agent.as_deref().map(|ua| {
                ua.chars()
                    .filter(|c| !c.is_control())
                    .take(MAX_USER_AGENT_CHARS)
                    .collect()
            }),
        };
        self.insert(&session).await?;
        if let Some(max) = self.config.max_per_user {
            let mut existing = self.list(user_id).await?;
            existing.retain(|s| s.id_hash != session.id_hash);
            let keep = usize::try_from(max).unwrap_or(usize::MAX).saturating_sub(1);
            if existing.len() > keep {
                // `list` is oldest first.
                let excess = existing.len() - keep;
                for old in existing.iter().take(excess) {
                    self.delete(user_id, &old.id_hash).await?;
                }
            }
        }
        Ok((token, session))
    }

    /// The live session a cookie value names, or `None` (unknown, malformed or expired; an
    /// expired one is deleted).
    pub async fn load(&self, raw_token: &str) -> Result<Option<Session>, Error> {
        let Some(id_hash) = SessionToken::hash_of(raw_token) else {
            return Ok(None);
        };
        let Some(session) = self.get(&id_hash).await? else {
            return Ok(None);
        };
        if !self.is_live(&session) {
            self.delete(session.user_id, &session.id_hash).await?;
            return Ok(None);
        }
        Ok(Some(session))
    }

    fn is_live(&self, session: &Session) -> bool {
        let now = self.clock.now();
        now < session.expires_at && now < session.last_seen_at + self.config.idle_timeout
    }

    /// Records activity, at most once per `touch_interval`; returns the session as stored.
    pub async fn touch(&self, session: Session) -> Result<Session, Error> {
        let now = self.clock.now();
        if now < session.last_seen_at + self.config.touch_interval {
            return Ok(session);
        }
        let session = Session {
            last_seen_at: now,
            ..session
        };
        self.update_last_seen(&session).await?;
        Ok(session)
    }

    /// Replaces `old` by a new session of the same user (new token, new CSRF secret): at
    /// sign-in and at every privilege change.
    pub async fn rotate(
        &self,
        old: &Session,
        meta: &SessionMeta,
    ) -> Result<(SessionToken, Session), Error> {
        let created = self.create(old.user_id, meta).await?;
        self.delete(old.user_id, &old.id_hash).await?;
        Ok(created)
    }

    /// Ends one of `user_id`'s sessions; `false` if it is not theirs or does not exist.
    pub async fn revoke(&self, user_id: Uuid, id_hash: &str) -> Result<bool, Error> {
        match self.get(id_hash).await? {
            Some(s) if s.user_id == user_id => {
                self.delete(user_id, id_hash).await?;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    /// Ends every session of `user_id` except `keep`; returns how many ended.
    pub async fn revoke_all(&self, user_id: Uuid, keep: Option<&str>) -> Result<usize, Error> {
        let mut ended = 0;
        for s in self.list_all(user_id).await? {
            if Some(s.id_hash.as_str()) != keep {
                self.delete(user_id, &s.id_hash).await?;
                ended += 1;
            }
        }
        Ok(ended)
    }

    /// The user's live sessions, oldest first.
    pub async fn list(&self, user_id: Uuid) -> Result<Vec<Session>, Error> {
        let mut sessions = self.list_all(user_id).await?;
        sessions.retain(|s| self.is_live(s));
        Ok(sessions)
    }

    // ---- store operations ------------------------------------------------------------------

    async fn insert(&self, s: &Session) -> Result<(), Error> {
        match &self.store {
            SessionStore::Database(db) => queries::insert(db, s).await?,
            SessionStore::Redis(r) => {
                let mut conn = r.conn().await?;
                let value = serde_json::to_string(&StoredSession::from(s))
                    .map_err(|e| Error::Internal(e.into()))?;
                redis::pipe()
                    .atomic()
                    .set(r.session_key(&s.id_hash), value)
                    .ignore()
                    .pexpire_at(r.session_key(&s.id_hash), self.redis_expiry_ms(s))
                    .ignore()
                    .zadd(r.user_key(s.user_id), &s.id_hash, unix_micros(s.created_at))
                    .ignore()
                    .pexpire_at(r.user_key(s.user_id), unix_millis(s.expires_at))
                    .ignore()
                    .query_async::<()>(&mut conn)
                    .await
                    .map_err(redis_error)?;
            }
        }
        Ok(())
    }

    /// When Redis should drop the key: the earlier of the idle and absolute deadlines.
    fn redis_expiry_ms(&self, s: &Session) -> i64 {
        unix_millis(s.expires_at.min(s.last_seen_at + self.config.idle_timeout))
    }

    async fn get(&self, id_hash: &str) -> Result<Option<Session>, Error> {
        match &self.store {
            SessionStore::Database(db) => queries::get(db, id_hash).await,
            SessionStore::Redis(r) => {
                let mut conn = r.conn().await?;
                let value: Option<String> = conn
                    .get(r.session_key(id_hash))
                    .await
                    .map_err(redis_error)?;
                value
                    .map(|v| {
                        serde_json::from_str::<StoredSession>(&v)
                            .map_err(|e| Error::Internal(e.into()))
                            .and_then(Session::try_from)
                    })
                    .transpose()
            }
        }
    }

    async fn list_all(&self, user_id: Uuid) -> Result<Vec<Session>, Error> {
        match &self.store {
            SessionStore::Database(db) => queries::list(db, user_id).await,
            SessionStore::Redis(r) => {
                let mut conn = r.conn().await?;
                let ids: Vec<String> = conn
                    .zrange(r.user_key(user_id), 0, -1)
                    .await
                    .map_err(redis_error)?;
                let mut sessions = Vec::with_capacity(ids.len());
                for id in ids {
                    match self.get(&id).await? {
                        Some(s) => sessions.push(s),
                        // Expired by Redis: drop it from the index too.
                        None => {
                            let _: () = conn
                                .zrem(r.user_key(user_id), &id)
                                .await
                                .map_err(redis_error)?;
                        }
                    }
                }
                Ok(sessions)
            }
        }
    }

    async fn update_last_seen(&self, s: &Session) -> Result<(), Error> {
        match &self.store {
            SessionStore::Database(db) => {
                queries::update_last_seen(db, &s.id_hash, s.last_seen_at).await?;
            }
            SessionStore::Redis(r) => {
                let mut conn = r.conn().await?;
                let value = serde_json::to_string(&StoredSession::from(s))
                    .map_err(|e| Error::Internal(e.into()))?;
                // XX: only if it still exists (a revoked session must not come back).
                let set: Option<String> = redis::cmd("SET")
                    .arg(r.session_key(&s.id_hash))
                    .arg(value)
                    .arg("XX")
                    .arg("PXAT")
                    .arg(self.redis_expiry_ms(s))
                    .query_async(&mut conn)
                    .await
                    .map_err(redis_error)?;
                drop(set);
            }
        }
        Ok(())
    }

    async fn delete(&self, user_id: Uuid, id_hash: &str) -> Result<(), Error> {
        match &self.store {
            SessionStore::Database(db) => queries::delete(db, id_hash).await?,
            SessionStore::Redis(r) => {
                let mut conn = r.conn().await?;
                redis::pipe()
                    .atomic()
                    .del(r.session_key(id_hash))
                    .ignore()
                    .zrem(r.user_key(user_id), id_hash)
                    .ignore()
                    .query_async::<()>(&mut conn)
                    .await
                    .map_err(redis_error)?;
            }
        }
        Ok(())
    }

    /// Checks that the store answers, through the connection sessions use (a fresh connection
    /// could answer while that one waits to reconnect).
    pub async fn ping(&self) -> Result<(), Error> {
        match &self.store {
            SessionStore::Database(db) => db.ping().await,
            SessionStore::Redis(r) => {
                let mut conn = r.conn().await?;
                redis::cmd("PING")
                    .query_async::<String>(&mut conn)
                    .await
                    .map(drop)
                    .map_err(redis_error)
            }
        }
    }

    /// Deletes expired sessions from the database (Redis expires its own); returns how many.
    pub async fn purge_expired(&self) -> Result<u64, Error> {
        let now = self.clock.now();
        let idle_cutoff = now - self.config.idle_timeout;
        Ok(match &self.store {
            SessionStore::Database(db) => {
                queries::purge(db, now, idle_cutoff).await?
                    + queries::purge_pending(db, now).await?
            }
            SessionStore::Redis(_) => 0,
        })
    }

    // ---- single-use state of flows in progress -----------------------------------------------

    /// Keeps `payload` under `key_hash` (the SHA-256 of a random key the browser holds) until
    /// `expires_at`, in the session store, for one [`Sessions::take_pending`]: the server-side
    /// state of a flow between two requests (an OpenID Connect sign-in between its start and
    /// its callback, a passkey ceremony between its challenge and the browser's answer). Each
    /// user of this store names its keys with its own prefix (`oidc:`, `passkey:`).
    pub async fn put_pending(
        &self,
        key_hash: &str,
        payload: &str,
        expires_at: OffsetDateTime,
    ) -> Result<(), Error> {
        match &self.store {
            SessionStore::Database(db) => {
                queries::insert_pending(db, key_hash, payload, expires_at).await
            }
            SessionStore::Redis(r) => {
                let mut conn = r.conn().await?;
                redis::cmd("SET")
                    .arg(r.pending_key(key_hash))
                    .arg(payload)
                    .arg("PXAT")
                    .arg(unix_millis(expires_at))
                    .query_async::<()>(&mut conn)
                    .await
                    .map_err(redis_error)
            }
        }
    }

    /// Takes (reads and deletes, atomically) the state under `key_hash`: `None` when there is
    /// none, or it was taken already. Of two concurrent takes exactly one gets it. Whether it
    /// is still in time is the caller's to judge, with its clock (the stores drop it after its
    /// deadline, Redis by the wall clock).
    pub async fn take_pending(&self, key_hash: &str) -> Result<Option<String>, Error> {
        match &self.store {
            SessionStore::Database(db) => queries::take_pending(db, key_hash).await,
            SessionStore::Redis(r) => {
                let mut conn = r.conn().await?;
                let (payload,): (Option<String>,) = redis::pipe()
                    .atomic()
                    .get(r.pending_key(key_hash))
                    .del(r.pending_key(key_hash))
                    .ignore()
                    .query_async(&mut conn)
                    .await
                    .map_err(redis_error)?;
                Ok(payload)
            }
        }
    }
}

fn redis_error(e: redis::RedisError) -> Error {
    Error::Unavailable(format!("redis: {e}"))
}

fn unix_micros(t: OffsetDateTime) -> i64 {
    i64::try_from(t.unix_timestamp_nanos() / 1_000).unwrap_or(i64::MAX)
}

fn unix_millis(t: OffsetDateTime) -> i64 {
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

fn from_micros(us: i64) -> Result<OffsetDateTime, Error> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(us) * 1_000)
        .map_err(|e| Error::Internal(anyhow::anyhow!("bad session time: {e}")))
}

/// The Redis form of a session.
#[derive(Serialize, Deserialize)]
struct StoredSession {
    id_hash: String,
    user_id: Uuid,
    csrf_secret: String,
    created_at: i64,
    last_seen_at: i64,
    expires_at: i64,
    authenticated_at: i64,
    client_ip: Option<String>,
    user_agent: Option<String>,
}

impl From<&Session> for StoredSession {
    fn from(s: &Session) -> Self {
        Self {
            id_hash: s.id_hash.clone(),
            user_id: s.user_id,
            csrf_secret: hex::encode(&s.csrf_secret[..]),
            created_at: unix_micros(s.created_at),
            last_seen_at: unix_micros(s.last_seen_at),
            expires_at: unix_micros(s.expires_at),
            authenticated_at: unix_micros(s.authenticated_at),
            client_ip: s.client_ip.clone(),
            user_agent: s.user_agent.clone(),
        }
    }
}

impl TryFrom<StoredSession> for Session {
    type Error = Error;

    fn try_from(s: StoredSession) -> Result<Self, Error> {
        Ok(Self {
            id_hash: s.id_hash,
            user_id: s.user_id,
            csrf_secret: secret_from(&hex::decode(&s.csrf_secret).unwrap_or_default())?,
            created_at: from_micros(s.created_at)?,
            last_seen_at: from_micros(s.last_seen_at)?,
            expires_at: from_micros(s.expires_at)?,
            authenticated_at: from_micros(s.authenticated_at)?,
            client_ip: s.client_ip,
            user_agent: s.user_agent,
        })
    }
}

fn secret_from(bytes: &[u8]) -> Result<Zeroizing<[u8; 32]>, Error> {
    bytes
        .try_into()
        .map(Zeroizing::new)
        .map_err(|_| Error::Internal(anyhow::anyhow!("bad CSRF secret length in a session")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sessions_csrf_secret_is_wiped_when_dropped() {
        // A compile-time check: the field's type zeroizes itself on drop.
        fn wiped_on_drop<T: zeroize::ZeroizeOnDrop>(_: &T) {}
        let secret = secret_from(&[7; 32]).unwrap();
        wiped_on_drop(&secret);
        let _ = |session: &Session| wiped_on_drop(&session.csrf_secret);
        assert!(secret_from(&[7; 31]).is_err());
    }

    #[test]
    fn tokens_are_256_bit_and_only_their_format_is_accepted() {
        let a = SessionToken::generate();
        let b = SessionToken::generate();
        assert_ne!(a.expose(), b.expose());
        assert_eq!(URL_SAFE_NO_PAD.decode(a.expose()).unwrap().len(), 32);
        assert!(SessionToken::hash_of(a.expose()).is_some());
        for bad in [
            "",
            "short",
            &"a".repeat(44),
            &format!("{}=", &a.expose()[..42]),
            &"é".repeat(43),
        ] {
            assert!(SessionToken::hash_of(bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn the_stored_hash_is_not_the_token() {
        let t = SessionToken::generate();
        let h = SessionToken::hash_of(t.expose()).unwrap();
        assert_ne!(h, t.expose());
        assert_eq!(h.len(), 64);
        assert!(
            SessionToken::hash_of(&h).is_none(),
            "a hash is not a usable token"
        );
    }
}
