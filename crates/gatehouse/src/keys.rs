//! Keys derived from the secret key, one per purpose (HKDF-SHA256 with a distinct label each),
//! so no two features ever share key material and none uses the secret key directly.
//!
//! Secrets that must be read back (TOTP secrets, signing keys) are sealed with
//! XChaCha20-Poly1305: a random 192-bit nonce per message, the purpose as associated data, and
//! the text form `v1.<base64url(nonce ‖ ciphertext)>`. After a secret-key change, the previous
//! key (`GATEHOUSE_SECRET_KEY_PREVIOUS`) still opens old values, and [`Opened::needs_reseal`]
//! tells the caller to seal them again under the current key.
//!
//! # Security
//! - Changing `GATEHOUSE_SECRET_KEY` changes every derived key: outstanding one-time codes stop
//!   verifying (sessions are random tokens and are not affected).
//! - Short secrets people type (the mailed one-time code) are stored as HMAC-SHA256 under
//!   [`Keys::code_mac`], never as a plain hash an attacker with the database could brute-force.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chacha20poly1305::aead::{Aead as _, AeadCore as _, KeyInit as _, OsRng, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hkdf::Hkdf;
use hmac::{Hmac, Mac as _};
use secrecy::{ExposeSecret as _, SecretString};
use sha2::Sha256;

/// What a sealed secret is for; each purpose has its own key and associated data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Purpose {
    /// TOTP shared secrets.
    Totp,
    /// Token signing keys.
    SigningKeys,
}

impl Purpose {
    fn label(self) -> &'static [u8] {
        match self {
            Self::Totp => b"gatehouse seal totp v1",
            Self::SigningKeys => b"gatehouse seal signing-keys v1",
        }
    }
}

/// A value opened by [`Keys::open`].
#[derive(Debug)]
pub struct Opened {
    /// The plaintext.
    pub plaintext: Vec<u8>,
    /// Opened with the previous secret key: seal it again under the current one.
    pub needs_reseal: bool,
}

/// Every derived key.
#[derive(Clone)]
pub struct Keys {
    code_mac: [u8; 32],
    pending_mac: [u8; 32],
    current: SecretString,
    previous: Option<SecretString>,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Keys([redacted])")
    }
}

impl Keys {
    /// Derives every key from the secret key.
    pub fn derive(secret_key: &SecretString) -> Self {
        Self::derive_with_previous(secret_key, None)
    }

    /// Derives every key from the secret key; `previous` (the key before the last change) still
    /// opens sealed values.
    pub fn derive_with_previous(
        secret_key: &SecretString,
        previous: Option<&SecretString>,
    ) -> Self {
        Self {
            code_mac: expand(secret_key, b"gatehouse one-time code mac v1"),
            pending_mac: expand(secret_key, b"gatehouse pending sign-in mac v1"),
            current: secret_key.clone(),
            previous: previous.cloned(),
        }
    }

    /// Seals `plaintext` for `purpose` under the current secret key.
    pub fn seal(&self, purpose: Purpose, plaintext: &[u8]) -> String {
        let cipher = XChaCha20Poly1305::new(&expand(&self.current, purpose.label()).into());
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
    pub fn open(&self, purpose: Purpose, sealed: &str) -> Result<Opened, crate::error::Error> {
        let refused = || {
            crate::error::Error::Internal(anyhow::anyhow!(
                "a sealed {purpose:?} value opens with neither GATEHOUSE_SECRET_KEY nor GATEHOUSE_SECRET_KEY_PREVIOUS (changed key, or corrupted)"
            ))
        };
        let bytes = sealed
            .strip_prefix("v1.")
            .and_then(|b| URL_SAFE_NO_PAD.decode(b).ok())
            .filter(|b| b.len() > 24)
            .ok_or_else(refused)?;
        let (nonce, ciphertext) = bytes.split_at(24);
        let attempt = |key: &SecretString| {
            XChaCha20Poly1305::new(&expand(key, purpose.label()).into())
                .decrypt(
                    XNonce::from_slice(nonce),
                    Payload {
                        msg: ciphertext,
                        aad: purpose.label(),
                    },
                )
                .ok()
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

    /// HMAC-SHA256 of `parts` (length-prefixed, so parts cannot run into each other) under the
    /// one-time-code key, hex.
    pub fn code_mac(&self, parts: &[&str]) -> String {
        mac_hex(&self.code_mac, parts)
    }

    /// HMAC-SHA256 of `parts` under the key that signs half-finished sign-ins (password or link
    /// accepted, second factor still due), hex.
    pub fn pending_sign_in_mac(&self, parts: &[&str]) -> String {
        mac_hex(&self.pending_mac, parts)
    }
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
fn expand(secret: &SecretString, label: &[u8]) -> [u8; 32] {
    let hk = Hkdf::<Sha256>::new(Some(b"gatehouse"), secret.expose_secret().as_bytes());
    let mut key = [0u8; 32];
    // 32 bytes is far below HKDF-SHA256's 8160-byte limit: expand cannot fail here.
    let _ = hk.expand(label, &mut key);
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(secret: &str) -> Keys {
        Keys::derive(&SecretString::from(secret.repeat(40)))
    }

    #[test]
    fn sealed_values_open_with_their_key_and_purpose_only() {
        let k = keys("a");
        let sealed = k.seal(Purpose::Totp, b"JBSWY3DPEHPK3PXP");
        assert!(sealed.starts_with("v1."));
        assert!(!sealed.contains("JBSWY3DP"));
        let opened = k.open(Purpose::Totp, &sealed).unwrap();
        assert_eq!(opened.plaintext, b"JBSWY3DPEHPK3PXP");
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
        let sealed = Keys::derive(&old_secret).seal(Purpose::SigningKeys, b"private key");
        assert!(
            Keys::derive(&new_secret)
                .open(Purpose::SigningKeys, &sealed)
                .is_err()
        );
        let rotated = Keys::derive_with_previous(&new_secret, Some(&old_secret));
        let opened = rotated.open(Purpose::SigningKeys, &sealed).unwrap();
        assert_eq!(opened.plaintext, b"private key");
        assert!(opened.needs_reseal);
        let resealed = rotated.seal(Purpose::SigningKeys, &opened.plaintext);
        assert!(
            !rotated
                .open(Purpose::SigningKeys, &resealed)
                .unwrap()
                .needs_reseal
        );
    }

    #[test]
    fn macs_depend_on_the_secret_key_and_on_part_boundaries() {
        let a = Keys::derive(&SecretString::from("a".repeat(40)));
        let b = Keys::derive(&SecretString::from("b".repeat(40)));
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
    }
}
