//! A software passkey for HTTP-level tests: an ES256 key made with `ring`, answering the
//! server's WebAuthn options as a browser and a platform authenticator would (attestation
//! `none`, resident key, user verification), with knobs for what an attacker might send
//! (another origin, no user verification, a counter that goes back).
//!
//! The CBOR it writes is the little WebAuthn needs (a map of text keys for the attestation
//! object, a COSE EC2 key), written by hand: no CBOR crate for a test fixture.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, KeyPair as _};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

/// User present, user verified, attested credential data.
const UP: u8 = 0x01;
const UV: u8 = 0x04;
const AT: u8 = 0x40;

pub(crate) struct SoftPasskey {
    key: EcdsaKeyPair,
    pub(crate) credential_id: Vec<u8>,
    /// The user handle the server gave at registration.
    pub(crate) user_handle: Vec<u8>,
    /// The signature counter; each assertion adds one first.
    pub(crate) counter: u32,
    /// The origin the "browser" puts in `clientDataJSON`.
    pub(crate) origin: String,
    /// The relying-party ID whose hash goes into the authenticator data.
    pub(crate) rp_id: String,
    /// Whether the authenticator says the user was verified.
    pub(crate) user_verified: bool,
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn unb64(text: &str) -> Vec<u8> {
    URL_SAFE_NO_PAD
        .decode(text.trim_end_matches('='))
        .expect("base64url")
}

/// A CBOR head: major type and length.
fn head(major: u8, len: usize) -> Vec<u8> {
    let m = major << 5;
    match len {
        0..=23 => vec![m | u8::try_from(len).unwrap()],
        24..=255 => vec![m | 24, u8::try_from(len).unwrap()],
        _ => {
            let mut v = vec![m | 25];
            v.extend_from_slice(&u16::try_from(len).unwrap().to_be_bytes());
            v
        }
    }
}

fn cbor_text(s: &str) -> Vec<u8> {
    let mut v = head(3, s.len());
    v.extend_from_slice(s.as_bytes());
    v
}

fn cbor_bytes(b: &[u8]) -> Vec<u8> {
    let mut v = head(2, b.len());
    v.extend_from_slice(b);
    v
}

impl SoftPasskey {
    /// A new key for the relying party at `origin` (`http://localhost:PORT`).
    pub(crate) fn new(origin: &str) -> Self {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng).unwrap();
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref(), &rng)
            .unwrap();
        let url = url::Url::parse(origin).unwrap();
        Self {
            key,
            credential_id: uuid::Uuid::new_v4().as_bytes().repeat(2),
            user_handle: Vec::new(),
            counter: 0,
            origin: origin.trim_end_matches('/').to_owned(),
            rp_id: url.host_str().unwrap().to_owned(),
            user_verified: true,
        }
    }

    fn client_data(&self, kind: &str, challenge: &str) -> Vec<u8> {
        json!({
            "type": kind,
            "challenge": b64(&unb64(challenge)),
            "origin": self.origin,
            "crossOrigin": false,
        })
        .to_string()
        .into_bytes()
    }

    fn flags(&self) -> u8 {
        UP | if self.user_verified { UV } else { 0 }
    }

    /// The COSE EC2 P-256 key: {1: 2, 3: -7, -1: 1, -2: x, -3: y}.
    fn cose_key(&self) -> Vec<u8> {
        let point = self.key.public_key().as_ref();
        let (x, y) = (&point[1..33], &point[33..65]);
        let mut v = vec![0xa5, 0x01, 0x02, 0x03, 0x26, 0x20, 0x01, 0x21];
        v.extend(cbor_bytes(x));
        v.push(0x22);
        v.extend(cbor_bytes(y));
        v
    }

    /// Answers `navigator.credentials.create({ publicKey })`: the JSON the page's script posts.
    pub(crate) fn register(&mut self, public_key: &Value) -> Value {
        self.user_handle = unb64(public_key["user"]["id"].as_str().expect("user.id"));
        let client_data = self.client_data(
            "webauthn.create",
            public_key["challenge"].as_str().expect("a challenge"),
        );
        let mut auth_data = Sha256::digest(self.rp_id.as_bytes()).to_vec();
        auth_data.push(self.flags() | AT);
        auth_data.extend_from_slice(&self.counter.to_be_bytes());
        auth_data.extend_from_slice(&[0; 16]);
        auth_data.extend_from_slice(
            &u16::try_from(self.credential_id.len())
                .unwrap()
                .to_be_bytes(),
        );
        auth_data.extend_from_slice(&self.credential_id);
        auth_data.extend(self.cose_key());
        let mut attestation = vec![0xa3];
        attestation.extend(cbor_text("fmt"));
        attestation.extend(cbor_text("none"));
        attestation.extend(cbor_text("attStmt"));
        attestation.push(0xa0);
        attestation.extend(cbor_text("authData"));
        attestation.extend(cbor_bytes(&auth_data));
        json!({
            "id": b64(&self.credential_id),
            "rawId": b64(&self.credential_id),
            "type": "public-key",
            "extensions": {},
            "response": {
                "attestationObject": b64(&attestation),
                "clientDataJSON": b64(&client_data),
            },
        })
    }

    /// Answers `navigator.credentials.get({ publicKey })`.
    pub(crate) fn assert(&mut self, public_key: &Value) -> Value {
        self.counter += 1;
        let client_data = self.client_data(
            "webauthn.get",
            public_key["challenge"].as_str().expect("a challenge"),
        );
        let mut auth_data = Sha256::digest(self.rp_id.as_bytes()).to_vec();
        auth_data.push(self.flags());
        auth_data.extend_from_slice(&self.counter.to_be_bytes());
        let mut signed = auth_data.clone();
        signed.extend_from_slice(&Sha256::digest(&client_data));
        let signature = self.key.sign(&SystemRandom::new(), &signed).unwrap();
        json!({
            "id": b64(&self.credential_id),
            "rawId": b64(&self.credential_id),
            "type": "public-key",
            "extensions": {},
            "response": {
                "authenticatorData": b64(&auth_data),
                "clientDataJSON": b64(&client_data),
                "signature": b64(signature.as_ref()),
                "userHandle": b64(&self.user_handle),
            },
        })
    }
}
