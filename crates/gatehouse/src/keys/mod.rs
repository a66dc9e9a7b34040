//! The keys Gatehouse keeps secrets with: sealing keys derived from the secret key, one per
//! purpose (HKDF-SHA256 with a distinct label each), and random data keys sealed under them.
//!
//! Secrets that must be read back (TOTP secrets, signing keys, data keys) are sealed with
//! XChaCha20-Poly1305: a random 192-bit nonce per message, the purpose as associated data, and
//! the text form `v1.<base64url(nonce ‖ ciphertext)>`. After a secret-key change, the previous
//! key (`GATEHOUSE_SECRET_KEY_PREVIOUS`) still opens old values, [`Keys::classify`] tells the
//! caller which need sealing again, and `gatehouse keys reencrypt` seals them under the current
//! key.
//!
//! Secrets people type (recovery codes, mailed one-time codes) and the tokens of mailed links
//! cannot be sealed: they are kept as HMAC-SHA256 under a **data key** — 32 random bytes stored sealed in `data_keys` — so a
//! secret-key change re-seals the data key and every code made under it keeps verifying. (A key
//! derived from the secret key itself, as before data keys, would change with it and silently
//! void every unused recovery code.) A database with codes from before data keys keeps their key:
//! its data key is made from that old derivation, once, then sealed like any other.
//!
//! The password pepper (argon2's secret in every new password hash, see
//! `identity::passwords`) is a data key too, for the same reason: a secret-key change re-seals it
//! and every password keeps verifying.
//!
//! # Security
//! - Changing `GATEHOUSE_SECRET_KEY` without setting `GATEHOUSE_SECRET_KEY_PREVIOUS` leaves the
//!   data keys unreadable: the server refuses to start, naming the variable, rather than refuse
//!   every code.
//! - No MAC key is ever the secret key or a sealing key; each data key has one purpose.
//! - Key material is wiped from memory when dropped: the data keys, every derived sealing key,
//!   opened plaintexts ([`Opened`]), and the secret keys (`SecretString`). The ciphers wipe
//!   their own copy of a key; the HKDF and HMAC states, short-lived on the stack, do not.

mod queries;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chacha20poly1305::aead::{Aead as _, AeadCore as _, KeyInit as _, OsRng, Payload};
use chacha20poly1305::{Key, XChaCha20Poly1305, XNonce};
use hkdf::Hkdf;
use hmac::{Hmac, Mac as _};
use rand::RngCore as _;
use secrecy::{ExposeSecret as _, SecretString};
use sha2::Sha256;
use time::OffsetDateTime;
use zeroize::Zeroizing;

use crate::error::Error;
use crate::store::Db;

/// What a sealed secret is for; each purpose has its own key and associated data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Purpose {
    /// TOTP shared secrets.
    Totp,
    /// Token signing keys.
    SigningKeys,
    /// Data keys.
    DataKeys,
}

impl Purpose {
    fn label(self) -> &'static [u8] {
        match self {
            Self::Totp => b"gatehouse seal totp v1",
            Self::SigningKeys => b"gatehouse seal signing-keys v1",
            Self::DataKeys => b"gatehouse seal data-keys v1",
        }
    }
}

/// 32 bytes of key material, wiped when dropped.
type KeyBytes = Zeroizing<[u8; 32]>;

/// The links whose tokens [`Keys::token_mac`] keys; each its own label, so a token of one kind
/// never matches a stored value of another.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenKind {
    /// A mailed sign-in link.
    SignInLink,
    /// A mailed password reset link.
    PasswordReset,
    /// The first start's setup link.
    Setup,
}

impl TokenKind {
    fn label(self) -> &'static str {
        match self {
            Self::SignInLink => "sign-in link",
            Self::PasswordReset => "password reset",
            Self::Setup => "setup",
        }
    }
}

/// A value opened by [`Keys::open`].
#[derive(Debug)]
pub struct Opened {
    /// The plaintext (a TOTP secret, a signing key, a data key), wiped when dropped.
    pub plaintext: Zeroizing<Vec<u8>>,
    /// Opened with the previous secret key: seal it again under the current one.
    pub needs_reseal: bool,
}

/// Where a sealed value stands after a secret-key change ([`Keys::classify`]).
#[derive(Debug)]
pub enum Standing {
    /// Sealed under the current secret key.
    Current,
    /// Sealed under the previous key: this is the same plaintext sealed under the current one.
    Reseal(String),
    /// Opens with neither key.
    Unreadable,
}

/// What sealing one kind of secret again came to.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Sweep {
    /// Values sealed again under the current key.
    pub resealed: usize,
    /// Values still not under the current key: unreadable, or changed while being sealed.
    pub left: usize,
}

impl Sweep {
    /// Counts one value's [`Standing`]; `Reseal` counts once the caller stored it (`stored`).
    pub fn count(&mut self, standing: &Standing, stored: bool) {
        match standing {
            Standing::Current => {}
            Standing::Reseal(_) if stored => self.resealed += 1,
            Standing::Reseal(_) | Standing::Unreadable => self.left += 1,
        }
    }
}

/// The data keys, by what they MAC.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum DataKey {
    /// Recovery codes, mailed one-time codes and the tokens of mailed links.
    OneTimeCodes,
    /// Half-finished sign-ins (first factor accepted, second due).
    PendingSignIns,
    /// The pepper of password hashes (not a MAC key: argon2's secret input).
    PasswordPepper,
}

impl DataKey {
    const ALL: [Self; 3] = [
        Self::OneTimeCodes,
        Self::PendingSignIns,
        Self::PasswordPepper,
    ];

    fn name(self) -> &'static str {
        match self {
            Self::OneTimeCodes => "one_time_codes",
            Self::PendingSignIns => "pending_sign_ins",
            Self::PasswordPepper => "password_pepper",
        }
    }

    /// The label of the key derived from the secret key alone that MACed these values before
    /// data keys existed (none for the pepper, which never was derived).
    fn derived_label(self) -> Option<&'static [u8]> {
        match self {
            Self::OneTimeCodes => Some(b"gatehouse one-time code mac v1"),
            Self::PendingSignIns => Some(b"gatehouse pending sign-in mac v1"),
            Self::PasswordPepper => None,
        }
    }
}

/// Every key.
#[derive(Clone)]
pub struct Keys {
    code_mac: KeyBytes,
    pending_mac: KeyBytes,
    password_pepper: KeyBytes,
    current: SecretString,
    previous: Option<SecretString>,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Keys([redacted])")
    }
}

impl Keys {
    /// The keys of a server or command over `db`: the sealing keys from the secret key (and the
    /// previous one, which still opens old values), and the data keys read from the database,
    /// made on first use.
    ///
    /// # Errors
    /// A data key that opens with neither key (the secret key changed and
    /// `GATEHOUSE_SECRET_KEY_PREVIOUS` does not name the old one), or the store failing.
    pub async fn load(
        db: &Db,
        secret_key: &SecretString,
        previous: Option<&SecretString>,
        now: OffsetDateTime,
    ) -> Result<Self, Error> {
        let mut keys = Self::sealing_only(secret_key, previous);
        for data_key in DataKey::ALL {
            let bytes = keys.data_key(db, data_key, now).await?;
            match data_key {
                DataKey::OneTimeCodes => keys.code_mac = bytes,
                DataKey::PendingSignIns => keys.pending_mac = bytes,
                DataKey::PasswordPepper => keys.password_pepper = bytes,
            }
        }
        Ok(keys)
    }

    /// Sealing keys only; the data keys are random, so no MAC made with them matches anything
    /// stored. For unit tests and for sealing alone.
    pub fn sealing_only(secret_key: &SecretString, previous: Option<&SecretString>) -> Self {
        Self {
            code_mac: random_key(),
            pending_mac: random_key(),
            password_pepper: random_key(),
            current: secret_key.clone(),
            previous: previous.cloned(),
        }
    }

    /// Whether a previous secret key is configured (a key change is under way).
    pub fn has_previous(&self) -> bool {
        self.previous.is_some()
    }

    async fn data_key(
        &self,
        db: &Db,
        data_key: DataKey,
        now: OffsetDateTime,
    ) -> Result<KeyBytes, Error> {
        let name = data_key.name();
        if queries::data_key(db, name).await?.is_none() {
            let legacy = match data_key.derived_label() {
                Some(label)
                    if data_key == DataKey::OneTimeCodes
                        && queries::codes_made_before_data_keys(db).await? =>
                {
                    Some(expand(&self.current, label))
                }
                _ => None,
            };
            let fresh = legacy.unwrap_or_else(random_key);
            let sealed = self.seal(Purpose::DataKeys, &fresh[..]);
            // Another instance starting at the same time may win: both then read its key.
            queries::insert_data_key(db, name, &sealed, now).await?;
        }
        let sealed = queries::data_key(db, name).await?.ok_or_else(|| {
            Error::Internal(anyhow::anyhow!(
                "the data key {name} was stored but cannot be read"
            ))
        })?;
        let opened = self.open(Purpose::DataKeys, &sealed).map_err(|_| {
            Error::Internal(anyhow::anyhow!(
                "the data key {name} opens with neither GATEHOUSE_SECRET_KEY nor GATEHOUSE_SECRET_KEY_PREVIOUS: GATEHOUSE_SECRET_KEY is not the key this database was sealed under (after a change, set GATEHOUSE_SECRET_KEY_PREVIOUS to the old key and run `gatehouse keys reencrypt`)"
            ))
        })?;
        <[u8; 32]>::try_from(opened.plaintext.as_slice())
            .map(Zeroizing::new)
            .map_err(|_| Error::Internal(anyhow::anyhow!("the data key {name} is not 32 bytes")))
    }

    /// Seals every data key that the previous secret key opened under the current one.
    pub async fn reseal_data_keys(&self, db: &Db) -> Result<Sweep, Error> {
        let mut sweep = Sweep::default();
        for (name, sealed) in queries::data_keys(db).await? {
            let standing = self.classify(Purpose::DataKeys, &sealed);
            let stored = match &standing {
                Standing::Reseal(fresh) => {
                    queries::reseal_data_key(db, &name, &sealed, fresh).await?
                }
                _ => false,
            };
            sweep.count(&standing, stored);
        }
        Ok(sweep)
    }

    /// Seals `plaintext` for `purpose` under the current secret key.
    pub fn seal(&self, purpose: Purpose, plaintext: &[u8]) -> String {
        let cipher =
            XChaCha20Poly1305::new(Key::from_slice(&*expand(&self.current, purpose.label())));
        let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
        let payload = Payload {
            msg: plaintext,
            aad: purpose.label(),
        };
        // Encryption of an in-memory buffer with a valid key cannot fail.
        let ciphertext = cipher.encrypt(&nonce, payload).unwrap_or_default();
        let mut out = nonce.to_vec();
        out.extend_from_slice(&ciphertext);
        format!("v1.{}", URL_SAFE_NO_PAD.encode(out))
    }

    /// Opens a value [`Keys::seal`] made for `purpose`, with the current or the previous key.
    pub fn open(&self, purpose: Purpose, sealed: &str) -> Result<Opened, Error> {
        let refused = || {
            Error::Internal(anyhow::anyhow!(
                "a sealed {purpose:?} value opens with neither GATEHOUSE_SECRET_KEY nor GATEHOUSE_SECRET_KEY_PREVIOUS (set GATEHOUSE_SECRET_KEY_PREVIOUS to the key before the change)"
            ))
        };
        let bytes = sealed
            .strip_prefix("v1.")
            .and_then(|b| URL_SAFE_NO_PAD.decode(b).ok())
            .filter(|b| b.len() > 24)
            .ok_or_else(refused)?;
        let (nonce, ciphertext) = bytes.split_at(24);
        let attempt = |key: &SecretString| {
            XChaCha20Poly1305::new(Key::from_slice(&*expand(key, purpose.label())))
                .decrypt(
                    XNonce::from_slice(nonce),
                    Payload {
                        msg: ciphertext,
                        aad: purpose.label(),
                    },
                )
                .ok()
                .map(Zeroizing::new)
        };
        if let Some(plaintext) = attempt(&self.current) {
            return Ok(Opened {
                plaintext,
                needs_reseal: false,
            });
        }
        self.previous
            .as_ref()
            .and_then(attempt)
            .map(|plaintext| Opened {
                plaintext,
                needs_reseal: true,
            })
            .ok_or_else(refused)
    }

    /// Where `sealed` stands: under the current key, under the previous one (with the value
    /// sealed again), or unreadable.
    pub fn classify(&self, purpose: Purpose, sealed: &str) -> Standing {
        match self.open(purpose, sealed) {
            Ok(Opened {
                needs_reseal: false,
                ..
            }) => Standing::Current,
            Ok(Opened { plaintext, .. }) => Standing::Reseal(self.seal(purpose, &plaintext)),
            Err(_) => Standing::Unreadable,
        }
    }

    /// HMAC-SHA256 of `parts` (length-prefixed, so parts cannot run into each other) under the
    /// one-time-code data key, hex.
    pub fn code_mac(&self, parts: &[&str]) -> String {
        mac_hex(&self.code_mac, parts)
    }

    /// HMAC-SHA256 of a link's token (`kind`: which link) under the one-time-code data key,
    /// hex: what the database keeps of sign-in, reset and setup links. Keyed, so the value
    /// stored is no unkeyed digest of what the mail carries, and someone who can write the
    /// database but not read the data key cannot plant a token of their own.
    pub fn token_mac(&self, kind: TokenKind, token: &str) -> String {
        mac_hex(&self.code_mac, &["token", kind.label(), token])
    }

    /// HMAC-SHA256 of `parts` under the data key that signs half-finished sign-ins (password or
    /// link accepted, second factor still due), hex.
    pub fn pending_sign_in_mac(&self, parts: &[&str]) -> String {
        mac_hex(&self.pending_mac, parts)
    }

    /// The pepper of password hashes (argon2's secret).
    pub fn password_pepper(&self) -> Zeroizing<[u8; 32]> {
        self.password_pepper.clone()
    }
}

fn random_key() -> KeyBytes {
    let mut key = Zeroizing::new([0u8; 32]);
    rand::rngs::OsRng.fill_bytes(&mut *key);
    key
}

/// HMAC-SHA256 of length-prefixed `parts` under `key`, hex.
fn mac_hex(key: &[u8; 32], parts: &[&str]) -> String {
    let mut mac = <Hmac<Sha256> as hmac::Mac>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    for part in parts {
        mac.update(&(part.len() as u64).to_be_bytes());
        mac.update(part.as_bytes());
    }
    hex::encode(mac.finalize().into_bytes())
}

/// 32 bytes of key material for `label` from `secret`.
fn expand(secret: &SecretString, label: &[u8]) -> KeyBytes {
    let hk = Hkdf::<Sha256>::new(Some(b"gatehouse"), secret.expose_secret().as_bytes());
    let mut key = Zeroizing::new([0u8; 32]);
    // 32 bytes is far below HKDF-SHA256's 8160-byte limit: expand cannot fail here.
    let _ = hk.expand(label, &mut *key);
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(secret: &str) -> Keys {
        Keys::sealing_only(&SecretString::from(secret.repeat(40)), None)
    }

    #[test]
    fn sealed_values_open_with_their_key_and_purpose_only() {
        let k = keys("a");
        let sealed = k.seal(Purpose::Totp, b"JBSWY3DPEHPK3PXP");
        assert!(sealed.starts_with("v1."));
        assert!(!sealed.contains("JBSWY3DP"));
        let opened = k.open(Purpose::Totp, &sealed).unwrap();
        assert_eq!(*opened.plaintext, b"JBSWY3DPEHPK3PXP");
        assert!(!opened.needs_reseal);
        assert_ne!(
            sealed,
            k.seal(Purpose::Totp, b"JBSWY3DPEHPK3PXP"),
            "random nonces"
        );
        assert!(
            k.open(Purpose::SigningKeys, &sealed).is_err(),
            "another purpose"
        );
        assert!(
            keys("b").open(Purpose::Totp, &sealed).is_err(),
            "another secret key"
        );
    }

    #[test]
    fn key_material_is_wiped_when_dropped() {
        // A compile-time check: each of these must be a type that zeroizes itself on drop.
        fn wiped_on_drop<T: zeroize::ZeroizeOnDrop>(_: &T) {}
        let k = keys("a");
        wiped_on_drop(&k.code_mac);
        wiped_on_drop(&k.pending_mac);
        wiped_on_drop(&random_key());
        wiped_on_drop(&expand(&k.current, Purpose::Totp.label()));
        let sealed = k.seal(Purpose::Totp, b"secret");
        wiped_on_drop(&k.open(Purpose::Totp, &sealed).unwrap().plaintext);
        wiped_on_drop(&XChaCha20Poly1305::new(Key::from_slice(&[0; 32])));
    }

    #[test]
    fn tampered_values_do_not_open() {
        let k = keys("a");
        let sealed = k.seal(Purpose::Totp, b"secret");
        let mut bytes = URL_SAFE_NO_PAD.decode(&sealed[3..]).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        let tampered = format!("v1.{}", URL_SAFE_NO_PAD.encode(bytes));
        assert!(k.open(Purpose::Totp, &tampered).is_err());
        for garbage in ["", "v1.", "v2.AAAA", "v1.@@@@"] {
            assert!(k.open(Purpose::Totp, garbage).is_err(), "{garbage:?}");
        }
    }

    #[test]
    fn the_previous_key_opens_old_values_and_asks_for_a_reseal() {
        let old_secret = SecretString::from("o".repeat(40));
        let new_secret = SecretString::from("n".repeat(40));
        let sealed =
            Keys::sealing_only(&old_secret, None).seal(Purpose::SigningKeys, b"private key");
        assert!(
            Keys::sealing_only(&new_secret, None)
                .open(Purpose::SigningKeys, &sealed)
                .is_err()
        );
        let rotated = Keys::sealing_only(&new_secret, Some(&old_secret));
        let opened = rotated.open(Purpose::SigningKeys, &sealed).unwrap();
        assert_eq!(*opened.plaintext, b"private key");
        assert!(opened.needs_reseal);
        let resealed = rotated.seal(Purpose::SigningKeys, &opened.plaintext);
        assert!(
            !rotated
                .open(Purpose::SigningKeys, &resealed)
                .unwrap()
                .needs_reseal
        );
    }

    async fn fresh_db() -> (tempfile::TempDir, Db) {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::connect(&format!("sqlite://{}/t.db", dir.path().display()), 1)
            .await
            .unwrap();
        db.migrate().await.unwrap();
        (dir, db)
    }

    #[tokio::test]
    async fn data_keys_are_random_kept_and_survive_a_secret_key_change() {
        let (_dir, db) = fresh_db().await;
        let (old, new) = (
            SecretString::from("o".repeat(40)),
            SecretString::from("n".repeat(40)),
        );
        let now = crate::store::now();
        let first = Keys::load(&db, &old, None, now).await.unwrap();
        let mac = first.code_mac(&["recovery", "u", "CODE"]);
        assert_ne!(
            mac,
            mac_hex(
                &expand(&old, DataKey::OneTimeCodes.derived_label().unwrap()),
                &["recovery", "u", "CODE"]
            ),
            "a new database gets a random key, not one derived from the secret key"
        );
        assert_eq!(
            Keys::load(&db, &old, None, now)
                .await
                .unwrap()
                .code_mac(&["recovery", "u", "CODE"]),
            mac,
            "kept"
        );
        assert!(
            Keys::load(&db, &new, None, now).await.is_err(),
            "another secret key alone opens nothing"
        );
        let changing = Keys::load(&db, &new, Some(&old), now).await.unwrap();
        assert_eq!(changing.code_mac(&["recovery", "u", "CODE"]), mac);
        assert_eq!(
            changing.reseal_data_keys(&db).await.unwrap(),
            Sweep {
                resealed: 3,
                left: 0
            }
        );
        let after = Keys::load(&db, &new, None, now).await.unwrap();
        assert_eq!(after.code_mac(&["recovery", "u", "CODE"]), mac);
        assert_eq!(
            after.password_pepper(),
            first.password_pepper(),
            "the pepper survives the change"
        );
        assert_ne!(
            after.password_pepper(),
            after.code_mac,
            "one key per purpose"
        );
    }

    #[tokio::test]
    async fn a_database_with_codes_from_before_data_keys_keeps_their_key() {
        let (_dir, db) = fresh_db().await;
        let secret = SecretString::from("s".repeat(40));
        let legacy = expand(&secret, DataKey::OneTimeCodes.derived_label().unwrap());
        let code_mac = mac_hex(&legacy, &["ada@example.com", "12345678"]);
        db.query(
            "INSERT INTO magic_links (token_hash, email, code_mac, created_at, expires_at) \
             VALUES ('h', 'ada@example.com', $1, '2026-01-01T00:00:00.000000Z', '2026-01-01T00:10:00.000000Z')",
        )
        .bind(code_mac.as_str())
        .execute()
        .await
        .unwrap();
        let keys = Keys::load(&db, &secret, None, crate::store::now())
            .await
            .unwrap();
        assert_eq!(keys.code_mac(&["ada@example.com", "12345678"]), code_mac);
    }

    #[test]
    fn macs_depend_on_the_data_key_and_on_part_boundaries() {
        let a = Keys::sealing_only(&SecretString::from("a".repeat(40)), None);
        let b = Keys::sealing_only(&SecretString::from("a".repeat(40)), None);
        // The same secret key, other data keys.
        assert_ne!(
            a.code_mac(&["x@example.com", "ABCD"]),
            b.code_mac(&["x@example.com", "ABCD"])
        );
        assert_ne!(a.code_mac(&["ab", "c"]), a.code_mac(&["a", "bc"]));
        assert_eq!(a.code_mac(&["q"]), a.code_mac(&["q"]));
        assert_ne!(
            a.code_mac(&["q"]),
            a.pending_sign_in_mac(&["q"]),
            "one key per purpose"
        );
        assert_ne!(
            a.token_mac(TokenKind::SignInLink, "t"),
            a.token_mac(TokenKind::PasswordReset, "t"),
            "a token of one kind never matches another kind's"
        );
        assert_eq!(
            a.token_mac(TokenKind::Setup, "t"),
            a.token_mac(TokenKind::Setup, "t")
        );
        assert_ne!(
            a.token_mac(TokenKind::Setup, "t"),
            b.token_mac(TokenKind::Setup, "t"),
            "keyed"
        );
    }
}
