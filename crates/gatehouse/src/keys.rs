//! Keys derived from the secret key, one per purpose (HKDF-SHA256 with a distinct label each),
//! so no two features ever share key material and none uses the secret key directly.
//!
//! # Security
//! - Changing `GATEHOUSE_SECRET_KEY` changes every derived key: outstanding one-time codes stop
//!   verifying (sessions are random tokens and are not affected).
//! - Short secrets people type (the mailed one-time code) are stored as HMAC-SHA256 under
//!   [`Keys::code_mac`], never as a plain hash an attacker with the database could brute-force.

use hkdf::Hkdf;
use hmac::{Hmac, Mac as _};
use secrecy::{ExposeSecret as _, SecretString};
use sha2::Sha256;

/// Every derived key.
#[derive(Clone)]
pub struct Keys {
    code_mac: [u8; 32],
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Keys([redacted])")
    }
}

impl Keys {
    /// Derives every key from the secret key.
    pub fn derive(secret_key: &SecretString) -> Self {
        let hk = Hkdf::<Sha256>::new(Some(b"gatehouse"), secret_key.expose_secret().as_bytes());
        let mut code_mac = [0u8; 32];
        // 32 bytes is far below HKDF-SHA256's 8160-byte limit: expand cannot fail here.
        let _ = hk.expand(b"gatehouse one-time code mac v1", &mut code_mac);
        Self { code_mac }
    }

    /// HMAC-SHA256 of `parts` (length-prefixed, so parts cannot run into each other) under the
    /// one-time-code key, hex.
    pub fn code_mac(&self, parts: &[&str]) -> String {
        let mut mac = <Hmac<Sha256>>::new_from_slice(&self.code_mac)
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        for part in parts {
            mac.update(&(part.len() as u64).to_be_bytes());
            mac.update(part.as_bytes());
        }
        hex::encode(mac.finalize().into_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    }
}
