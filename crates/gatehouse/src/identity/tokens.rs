//! API access: signed access tokens (JWT, EdDSA) and rotating refresh tokens.
//!
//! # Security
//! - Access tokens are JWTs signed with Ed25519 (`alg: EdDSA`), carrying `kid`, `iss`, `aud`,
//!   `sub` (the user), `sid` (the refresh-token family), `iat`, `exp` and a random `jti`. The
//!   algorithm is pinned: a token naming any other algorithm (`none`, `HS256`, …), an unknown
//!   `kid`, a bad signature, another issuer or audience, or a past `exp` is refused. Expiry is
//!   checked against the injected clock, with no leeway.
//! - Signing keys are generated with `ring`, stored in the database sealed under a key derived
//!   from the secret key ([`Purpose::SigningKeys`]), so every instance signs and verifies with the
//!   same keys. Every instance reads them every [`RELOAD_EVERY`]; an instance that meets an
//!   unknown `kid` reloads them at once (at most once a second). A rotated key is published at
//!   once and signs after [`PUBLICATION_DELAY`]; older keys keep verifying, and stay published,
//!   until every token they signed has expired, then housekeeping deletes them.
//! - Refresh tokens are 256-bit random strings, stored as SHA-256, single use: each use is one
//!   conditional `UPDATE` that returns a new token of the same family. Presenting a spent token
//!   again is treated as theft: the whole family (and the access tokens naming it in `sid`) is
//!   revoked at once.
//! - Access tokens are checked against their family, and the user's status and role are read,
//!   when a token is first seen and again every [`RECHECK_AFTER`] (5 s, DESIGN.md §7), so
//!   revocation, sign-out, a disabled account or a role change take effect within seconds rather
//!   than at expiry; on the instance that made the change, at once ([`AccessCache::clear`]).

use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rand::RngCore as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use time::OffsetDateTime;
use uuid::Uuid;
use zeroize::Zeroizing;

use super::queries::tokens as queries;
use crate::error::Error;
use crate::keys::{Keys, Purpose, Standing, Sweep};
use crate::store::{Db, Tx};

/// The audience every access token names.
pub const AUDIENCE: &str = "gatehouse-api";

/// The claims of an access token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Issuer: the public URL.
    pub iss: String,
    /// Audience: [`AUDIENCE`].
    pub aud: String,
    /// The user's id.
    pub sub: String,
    /// The refresh-token family (one per sign-in) the token belongs to.
    pub sid: String,
    /// Issued at (Unix seconds).
    pub iat: i64,
    /// Expires at (Unix seconds).
    pub exp: i64,
    /// Unique token id.
    pub jti: String,
}

/// One signing key.
struct SigningKey {
    kid: String,
    /// When it starts signing; before that it is only published.
    signs_from: OffsetDateTime,
    encoding: EncodingKey,
    decoding: DecodingKey,
    public: Vec<u8>,
}

/// How long a relying party may cache the key set: the JWKS's `Cache-Control: max-age`.
pub const JWKS_MAX_AGE: Duration = Duration::from_secs(300);

/// How often every instance reads the keys again, with or without traffic, so a rotation by the
/// CLI, another instance or the automatic rotation is published and used everywhere.
pub const RELOAD_EVERY: Duration = Duration::from_secs(60);

/// How long a new key is published before it signs: every instance has read it
/// ([`RELOAD_EVERY`]) and every copy of the key set cached before that has expired
/// ([`JWKS_MAX_AGE`]), so no relying party meets a `kid` it has not seen.
pub const PUBLICATION_DELAY: Duration =
    Duration::from_secs(JWKS_MAX_AGE.as_secs() + RELOAD_EVERY.as_secs());

/// The signing keys every instance shares, cached.
pub struct KeyRing {
    /// By `signs_from`, oldest first.
    keys: RwLock<Vec<Arc<SigningKey>>>,
    /// Last reload for an unknown `kid` (real time: a throttle against random kids).
    last_reload: Mutex<Instant>,
    /// Last reload by the injected clock (the periodic refresh).
    loaded_at: Mutex<OffsetDateTime>,
    /// The longest life of an access token: how long a retired key stays published.
    max_token_age: Duration,
}

impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kids: Vec<String> = self
            .keys
            .read()
            .map(|k| k.iter().map(|k| k.kid.clone()).collect())
            .unwrap_or_default();
        f.debug_struct("KeyRing").field("kids", &kids).finish()
    }
}

/// Why a bearer token is refused (never shown in detail to the caller).
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// Malformed, badly signed, of another algorithm, issuer or audience, or an unknown key.
    #[error("invalid token: {0}")]
    Invalid(String),
    /// Past its `exp`.
    #[error("the token has expired")]
    Expired,
    /// The store could not be read.
    #[error(transparent)]
    Other(#[from] Error),
}

/// A new Ed25519 key pair: the private key (PKCS#8, wiped when dropped) and the public key.
fn generate_key() -> Result<(Zeroizing<Vec<u8>>, Vec<u8>), Error> {
    use ring::signature::KeyPair as _;
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = ring::signature::Ed25519KeyPair::generate_pkcs8(&rng)
        .map_err(|_| Error::Internal(anyhow::anyhow!("cannot generate an Ed25519 key")))?;
    let pair = ring::signature::Ed25519KeyPair::from_pkcs8(pkcs8.as_ref())
        .map_err(|_| Error::Internal(anyhow::anyhow!("generated an unreadable Ed25519 key")))?;
    Ok((
        Zeroizing::new(pkcs8.as_ref().to_vec()),
        pair.public_key().as_ref().to_vec(),
    ))
}

fn signing_key(
    kid: String,
    signs_from: OffsetDateTime,
    pkcs8: &[u8],
    public: Vec<u8>,
) -> SigningKey {
    SigningKey {
        kid,
        signs_from,
        encoding: EncodingKey::from_ed_der(pkcs8),
        decoding: DecodingKey::from_ed_der(&public),
        public,
    }
}

/// A new signing key: published from now, signing from `now + delay`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rotated {
    /// Its id, as in a token's `kid`.
    pub kid: String,
    /// When it starts signing.
    pub signs_from: OffsetDateTime,
}

/// When to make a new signing key.
#[derive(Debug, Clone, Copy)]
pub enum When {
    /// Now (`gatehouse keys rotate`).
    Now,
    /// Only if there is no key yet (a new database); of several instances starting at once,
    /// one makes it.
    First,
    /// Only if the newest key was made more than this long ago (the automatic rotation); of
    /// several instances asking at once, one makes it.
    OlderThan(Duration),
}

/// Adds a new signing key, published at once and signing after [`PUBLICATION_DELAY`] (the first
/// key of a database signs at once: nobody can have cached a key set yet). With `ctx`, the
/// rotation is audited (`keys.rotate`) in the same transaction. `None` when `when` found a
/// recent enough key. Retired keys are deleted by the servers' housekeeping
/// ([`purge_retired_keys`]), with the servers' own token lifetime.
pub async fn rotate(
    db: &Db,
    keys: &Keys,
    now: OffsetDateTime,
    when: When,
    ctx: Option<&crate::audit::AuditContext>,
) -> Result<Option<Rotated>, Error> {
    let delay = match when {
        When::First => Duration::ZERO,
        When::Now | When::OlderThan(_) => PUBLICATION_DELAY,
    };
    let recent_enough = |newest: Option<OffsetDateTime>| match when {
        When::First => newest.is_some(),
        When::OlderThan(period) => newest.is_some_and(|made| made > now - period),
        When::Now => false,
    };
    // A plain read first: almost every call of the automatic rotation finds a recent key, and
    // needs neither a new key nor the lock.
    if !matches!(when, When::Now) && recent_enough(queries::newest_key_made(db).await?) {
        return Ok(None);
    }
    let (pkcs8, public) = generate_key()?;
    let kid = Uuid::new_v4().simple().to_string()[..16].to_owned();
    let sealed = keys.seal(Purpose::SigningKeys, &pkcs8);
    let public = URL_SAFE_NO_PAD.encode(public);
    let signs_from = now + delay;
    let mut tx = db.begin().await?;
    if !matches!(when, When::Now) {
        // Serializes the instances that reach this at once: the second sees the first's key.
        queries::lock_keys(&mut tx).await?;
        if recent_enough(queries::newest_key_made(&mut tx).await?) {
            return Ok(None);
        }
    }
    queries::insert_key(&mut tx, &kid, &sealed, &public, now, signs_from).await?;
    if let Some(ctx) = ctx {
        crate::audit::record(
            &mut tx,
            ctx,
            crate::audit::AuditEvent {
                action: "keys.rotate",
                entity_type: "signing_key",
                entity_id: Some(kid.clone()),
                changes: serde_json::json!({ "signs_from": crate::store::timestamp_text(signs_from) }),
            },
        )
        .await?;
    }
    tx.commit().await?;
    Ok(Some(Rotated { kid, signs_from }))
}

/// Deletes the keys retired (their successor signing) more than `max_token_age` before `now`;
/// returns how many.
pub async fn purge_retired_keys(
    db: &Db,
    now: OffsetDateTime,
    max_token_age: Duration,
) -> Result<u64, Error> {
    let mut tx = db.begin().await?;
    let n = queries::delete_retired_keys(&mut tx, now - max_token_age).await?;
    tx.commit().await?;
    Ok(n)
}

async fn load(db: &Db, keys: &Keys) -> Result<Vec<Arc<SigningKey>>, Error> {
    // By `signs_from`, oldest first.
    let rows = queries::keys(db).await?;
    let mut usable = Vec::with_capacity(rows.len());
    let mut first_error = None;
    for (kid, sealed, public, signs_from) in rows {
        let opened = keys.open(Purpose::SigningKeys, &sealed).and_then(|o| {
            URL_SAFE_NO_PAD
                .decode(&public)
                .map(|public| (o.plaintext, public))
                .map_err(|e| Error::Internal(anyhow::anyhow!("bad public key {kid}: {e}")))
        });
        match opened {
            Ok((pkcs8, public)) => {
                usable.push(Arc::new(signing_key(kid, signs_from, &pkcs8, public)));
            }
            // One unreadable key (sealed under another secret key) must not stop the others.
            Err(e) => {
                tracing::error!(event = "signing_key_unusable", kid = %kid, error = %e, "a token signing key cannot be opened and is ignored");
                first_error.get_or_insert(e);
            }
        }
    }
    match first_error {
        Some(e) if usable.is_empty() => Err(e),
        _ => Ok(usable),
    }
}

impl KeyRing {
    /// The stored keys; when there are none yet, the first one is made, signing at once.
    pub async fn load_or_create(
        db: &Db,
        keys: &Keys,
        now: OffsetDateTime,
        max_token_age: Duration,
    ) -> Result<Self, Error> {
        let mut loaded = load(db, keys).await?;
        if loaded.is_empty() {
            rotate(db, keys, now, When::First, None).await?;
            loaded = load(db, keys).await?;
        }
        Ok(Self {
            keys: RwLock::new(loaded),
            last_reload: Mutex::new(Instant::now()),
            loaded_at: Mutex::new(now),
            max_token_age,
        })
    }

    /// A ring with no keys, for a command that neither signs nor verifies tokens (it must not
    /// make a signing key as a side effect).
    pub fn unloaded(now: OffsetDateTime) -> Self {
        Self {
            keys: RwLock::new(Vec::new()),
            last_reload: Mutex::new(Instant::now()),
            loaded_at: Mutex::new(now),
            max_token_age: Duration::ZERO,
        }
    }

    /// The key that signs at `now`: the newest whose `signs_from` has come (the oldest, should
    /// the clocks disagree so that none has).
    fn signing(&self, now: OffsetDateTime) -> Option<Arc<SigningKey>> {
        let keys = self.keys.read().ok()?;
        keys.iter()
            .rev()
            .find(|k| k.signs_from <= now)
            .or_else(|| keys.first())
            .cloned()
    }

    /// The keys to publish at `now`: all but those retired more than the longest token life ago
    /// (housekeeping deletes them from the store).
    fn published(&self, now: OffsetDateTime) -> Vec<Arc<SigningKey>> {
        let Ok(keys) = self.keys.read() else {
            return Vec::new();
        };
        keys.iter()
            .enumerate()
            .filter(|(i, _)| {
                keys[i + 1..]
                    .iter()
                    .find(|successor| successor.signs_from <= now)
                    .is_none_or(|successor| now - successor.signs_from <= self.max_token_age)
            })
            .map(|(_, k)| k.clone())
            .collect()
    }

    fn cached(&self, kid: &str) -> Option<Arc<SigningKey>> {
        self.keys
            .read()
            .ok()?
            .iter()
            .find(|k| k.kid == kid)
            .cloned()
    }

    /// The key `kid` names, reloading from the store (at most once a second) when it is not
    /// cached: another instance may have rotated.
    async fn find(
        &self,
        kid: &str,
        db: &Db,
        keys: &Keys,
    ) -> Result<Option<Arc<SigningKey>>, Error> {
        if let Some(key) = self.cached(kid) {
            return Ok(Some(key));
        }
        {
            let mut last = self
                .last_reload
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if last.elapsed() < Duration::from_secs(1) {
                return Ok(None);
            }
            *last = Instant::now();
        }
        self.reload(db, keys).await?;
        Ok(self.cached(kid))
    }

    /// Reads the keys again.
    pub async fn reload(&self, db: &Db, keys: &Keys) -> Result<(), Error> {
        let fresh = load(db, keys).await?;
        if !fresh.is_empty() {
            if let Ok(mut k) = self.keys.write() {
                *k = fresh;
            }
        }
        Ok(())
    }

    /// The public keys published at `now` as a JSON Web Key Set (RFC 7517, OKP keys of RFC
    /// 8037), newest first: keys about to sign, the one signing, and retired ones until every
    /// token they signed has expired.
    pub fn jwks(&self, now: OffsetDateTime) -> serde_json::Value {
        let keys: Vec<serde_json::Value> = self
            .published(now)
            .iter()
            .rev()
            .map(|k| {
                serde_json::json!({
                    "kty": "OKP",
                    "crv": "Ed25519",
                    "x": URL_SAFE_NO_PAD.encode(&k.public),
                    "kid": k.kid,
                    "alg": "EdDSA",
                    "use": "sig",
                })
            })
            .collect();
        serde_json::json!({ "keys": keys })
    }

    /// Reads the keys again when the last read is [`RELOAD_EVERY`] old by `now`; whether it
    /// did.
    pub async fn refresh_if_stale(
        &self,
        db: &Db,
        keys: &Keys,
        now: OffsetDateTime,
    ) -> Result<bool, Error> {
        {
            let mut loaded_at = self
                .loaded_at
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if now - *loaded_at < RELOAD_EVERY {
                return Ok(false);
            }
            *loaded_at = now;
        }
        self.reload(db, keys).await?;
        Ok(true)
    }

    /// Signs an access token for `user_id` in family `sid`, valid for `lifetime` from `now`.
    pub fn sign(
        &self,
        issuer: &str,
        user_id: Uuid,
        sid: Uuid,
        now: OffsetDateTime,
        lifetime: Duration,
    ) -> Result<String, Error> {
        let key = self
            .signing(now)
            .ok_or_else(|| Error::Internal(anyhow::anyhow!("no signing key is loaded")))?;
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(key.kid.clone());
        let iat = now.unix_timestamp();
        let claims = Claims {
            iss: issuer.to_owned(),
            aud: AUDIENCE.to_owned(),
            sub: user_id.to_string(),
            sid: sid.to_string(),
            iat,
            exp: iat + i64::try_from(lifetime.as_secs()).unwrap_or(i64::MAX / 2),
            jti: Uuid::new_v4().to_string(),
        };
        jsonwebtoken::encode(&header, &claims, &key.encoding)
            .map_err(|e| Error::Internal(anyhow::anyhow!("cannot sign a token: {e}")))
    }

    /// The claims of a genuine, unexpired access token from `issuer`.
    pub async fn verify(
        &self,
        token: &str,
        issuer: &str,
        now: OffsetDateTime,
        db: &Db,
        keys: &Keys,
    ) -> Result<Claims, TokenError> {
        let header =
            jsonwebtoken::decode_header(token).map_err(|e| TokenError::Invalid(e.to_string()))?;
        if header.alg != Algorithm::EdDSA {
            return Err(TokenError::Invalid(format!("algorithm {:?}", header.alg)));
        }
        let kid = header
            .kid
            .ok_or_else(|| TokenError::Invalid("no kid".into()))?;
        let key = self
            .find(&kid, db, keys)
            .await?
            .ok_or_else(|| TokenError::Invalid("unknown kid".into()))?;
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.set_issuer(&[issuer]);
        validation.set_audience(&[AUDIENCE]);
        validation.set_required_spec_claims(&["exp", "iat", "iss", "aud", "sub"]);
        // Expiry is checked below against the injected clock.
        validation.validate_exp = false;
        validation.leeway = 0;
        let claims = jsonwebtoken::decode::<Claims>(token, &key.decoding, &validation)
            .map_err(|e| TokenError::Invalid(e.to_string()))?
            .claims;
        if now.unix_timestamp() >= claims.exp {
            return Err(TokenError::Expired);
        }
        Ok(claims)
    }
}

/// Seals every signing key that the previous secret key opened under the current one.
pub async fn reencrypt(db: &Db, keys: &Keys) -> Result<Sweep, Error> {
    let mut sweep = Sweep::default();
    for (kid, sealed, _, _) in queries::keys(db).await? {
        let standing = keys.classify(Purpose::SigningKeys, &sealed);
        let stored = match &standing {
            Standing::Reseal(fresh) => queries::reseal_key(db, &kid, &sealed, fresh).await?,
            _ => false,
        };
        sweep.count(&standing, stored);
    }
    Ok(sweep)
}

// ---- checked access tokens ----------------------------------------------------------------------

/// How long a checked access token (its signature, its sign-in and its user's status and role)
/// is trusted before it is checked again: DESIGN.md §7's "cached at most 5 s per instance".
pub const RECHECK_AFTER: time::Duration = time::Duration::seconds(5);

/// Most tokens remembered; beyond that the cache starts over.
const MAX_CHECKED: usize = 10_000;

/// Access tokens this instance checked in the last [`RECHECK_AFTER`], by the SHA-256 of the
/// token, with the user as read then. Every revocation made through this instance empties it
/// ([`AccessCache::clear`]); one made elsewhere (another instance, the CLI) takes effect here
/// within [`RECHECK_AFTER`].
#[derive(Debug, Default)]
pub struct AccessCache {
    entries: Mutex<std::collections::HashMap<[u8; 32], CheckedAccess>>,
}

#[derive(Debug, Clone)]
struct CheckedAccess {
    user: crate::identity::User,
    family: Uuid,
    checked_at: OffsetDateTime,
    exp: i64,
}

impl AccessCache {
    fn key(token: &str) -> [u8; 32] {
        Sha256::digest(token.as_bytes()).into()
    }

    /// The user and family of `token`, if it was checked less than [`RECHECK_AFTER`] ago and has
    /// not expired.
    pub fn get(&self, token: &str, now: OffsetDateTime) -> Option<(crate::identity::User, Uuid)> {
        let entries = self.entries.lock().ok()?;
        let hit = entries.get(&Self::key(token))?;
        (now - hit.checked_at < RECHECK_AFTER && now.unix_timestamp() < hit.exp)
            .then(|| (hit.user.clone(), hit.family))
    }

    /// Remembers that `token` (expiring at `exp`) was checked at `now`.
    pub fn put(
        &self,
        token: &str,
        user: crate::identity::User,
        family: Uuid,
        exp: i64,
        now: OffsetDateTime,
    ) {
        if let Ok(mut entries) = self.entries.lock() {
            if entries.len() >= MAX_CHECKED {
                entries.clear();
            }
            entries.insert(
                Self::key(token),
                CheckedAccess {
                    user,
                    family,
                    checked_at: now,
                    exp,
                },
            );
        }
    }

    /// Forgets every checked token: after a revocation or a change to a user.
    pub fn clear(&self) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.clear();
        }
    }
}

// ---- refresh tokens ----------------------------------------------------------------------------

fn hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

fn new_refresh_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    format!("grt_{}", URL_SAFE_NO_PAD.encode(bytes))
}

/// What presenting a refresh token came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refreshed {
    /// A live token, now spent: its successor in the same family.
    Rotated {
        /// The user.
        user_id: Uuid,
        /// The family.
        family: Uuid,
        /// The new refresh token.
        token: String,
    },
    /// A spent token presented again: the family is now revoked.
    Reused {
        /// The user.
        user_id: Uuid,
        /// The revoked family.
        family: Uuid,
    },
    /// Unknown, expired, or of a revoked family.
    Invalid,
}

/// Starts a family (a sign-in through the API) for `user_id` in the caller's transaction (the
/// one that also records the sign-in); returns it and its first refresh token.
pub async fn start_family(
    tx: &mut Tx,
    user_id: Uuid,
    now: OffsetDateTime,
    lifetime: Duration,
) -> Result<(Uuid, String), Error> {
    let family = Uuid::new_v4();
    let token = new_refresh_token();
    let expires = now + lifetime;
    queries::insert_family(tx, family, user_id, now, expires).await?;
    queries::insert_refresh_token(tx, &hash(&token), family, now).await?;
    Ok((family, token))
}

/// Spends a refresh token and returns its successor; a spent token presented again revokes its
/// family.
pub async fn refresh(db: &Db, raw: &str, now: OffsetDateTime) -> Result<Refreshed, Error> {
    if raw.len() > 100 {
        return Ok(Refreshed::Invalid);
    }
    let token_hash = hash(raw);
    let next = new_refresh_token();
    // Spending the token and storing its successor are one transaction: a failure between them
    // cannot leave a family whose only live token was spent without a successor.
    let mut tx = db.begin().await?;
    // One statement spends the token if it is live and its family is neither revoked nor
    // expired: of two concurrent uses exactly one wins.
    if let Some((family, user_id)) = queries::spend_refresh_token(&mut tx, &token_hash, now).await?
    {
        queries::insert_refresh_token(&mut tx, &hash(&next), family, now).await?;
        tx.commit().await?;
        return Ok(Refreshed::Rotated {
            user_id,
            family,
            token: next,
        });
    }
    // Not spendable: a spent token of a live family means someone replayed it.
    let reused = queries::spent_in_live_family(&mut tx, &token_hash).await?;
    drop(tx);
    match reused {
        Some((family, user_id)) => {
            revoke_family(db, family, now).await?;
            Ok(Refreshed::Reused { user_id, family })
        }
        None => Ok(Refreshed::Invalid),
    }
}

/// Revokes a family: its refresh tokens and the access tokens naming it stop working.
pub async fn revoke_family(db: &Db, family: Uuid, now: OffsetDateTime) -> Result<bool, Error> {
    Ok(queries::revoke_family(db, family, now).await? > 0)
}

/// The family a refresh token belongs to, if the token is known (spent or not).
pub async fn family_of(db: &Db, raw: &str) -> Result<Option<Uuid>, Error> {
    queries::family_of(db, &hash(raw)).await
}

/// Revokes every family of a user (password reset, role or status change); returns how many.
pub async fn revoke_all(db: &Db, user_id: Uuid, now: OffsetDateTime) -> Result<u64, Error> {
    queries::revoke_all(db, user_id, now).await
}

/// When the family (the API sign-in) started: the time of its password grant.
pub async fn family_created_at(db: &Db, family: Uuid) -> Result<Option<OffsetDateTime>, Error> {
    queries::family_created_at(db, family).await
}

/// Whether the family is live (not revoked, not expired) and belongs to `user_id`.
pub async fn family_live(
    db: &Db,
    family: Uuid,
    user_id: Uuid,
    now: OffsetDateTime,
) -> Result<bool, Error> {
    queries::family_live(db, family, user_id, now).await
}

/// Deletes families that expired or were revoked more than a day before `now` (with their
/// tokens).
pub async fn purge(db: &Db, now: OffsetDateTime) -> Result<u64, Error> {
    queries::purge(db, now - time::Duration::days(1)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring(keys: &[(&str, OffsetDateTime)]) -> KeyRing {
        let keys = keys
            .iter()
            .map(|(kid, signs_from)| {
                let (pkcs8, public) = generate_key().unwrap();
                Arc::new(signing_key((*kid).into(), *signs_from, &pkcs8, public))
            })
            .collect();
        KeyRing {
            keys: RwLock::new(keys),
            last_reload: Mutex::new(Instant::now()),
            loaded_at: Mutex::new(OffsetDateTime::now_utc()),
            max_token_age: Duration::from_secs(900),
        }
    }

    fn ring_with_one_key() -> KeyRing {
        ring(&[("k1", OffsetDateTime::UNIX_EPOCH)])
    }

    fn kids(jwks: &serde_json::Value) -> Vec<&str> {
        jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["kid"].as_str().unwrap())
            .collect()
    }

    #[test]
    fn a_new_key_is_published_at_once_and_signs_only_from_its_time() {
        let t0 = OffsetDateTime::UNIX_EPOCH + time::Duration::days(1);
        let switch = t0 + PUBLICATION_DELAY;
        let ring = ring(&[("old", t0 - time::Duration::days(1)), ("new", switch)]);
        assert_eq!(
            kids(&ring.jwks(t0)),
            ["new", "old"],
            "published before it signs"
        );
        assert_eq!(ring.signing(t0).unwrap().kid, "old");
        assert_eq!(
            ring.signing(switch - time::Duration::SECOND).unwrap().kid,
            "old"
        );
        assert_eq!(ring.signing(switch).unwrap().kid, "new");
    }

    #[test]
    fn a_retired_key_stays_published_until_its_last_token_has_expired() {
        let switch = OffsetDateTime::UNIX_EPOCH + time::Duration::days(1);
        let ring = ring(&[("old", OffsetDateTime::UNIX_EPOCH), ("new", switch)]);
        // A token "old" signed just before the switch lives 900 s more.
        let last_expiry = switch + time::Duration::seconds(900);
        assert_eq!(kids(&ring.jwks(last_expiry)), ["new", "old"]);
        assert_eq!(
            kids(&ring.jwks(last_expiry + time::Duration::SECOND)),
            ["new"]
        );
    }

    #[test]
    fn jwks_publish_the_public_key_only() {
        let ring = ring_with_one_key();
        let jwks = ring.jwks(OffsetDateTime::now_utc());
        let key = &jwks["keys"][0];
        assert_eq!(key["kty"], "OKP");
        assert_eq!(key["crv"], "Ed25519");
        assert_eq!(key["kid"], "k1");
        assert_eq!(
            URL_SAFE_NO_PAD
                .decode(key["x"].as_str().unwrap())
                .unwrap()
                .len(),
            32
        );
        assert!(key.get("d").is_none(), "no private part");
    }
}
