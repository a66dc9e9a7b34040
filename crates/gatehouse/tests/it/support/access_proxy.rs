//! A stand-in for Cloudflare Access: a certs endpoint on port 0 (the team domain, over http as
//! development allows) publishing RSA keys, and the assertions it would sign, with a knob for
//! every way one can be wrong.
//!
//! The two RSA keys are fixed test keys (`keys/access-proxy-{a,b}.der`, PKCS#1), made for these
//! tests only: ring signs with RSA but makes no RSA keys.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::routing::get;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use gatehouse::clock::Clock as _;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

use super::app::TestApp;

/// The AUD tag of the test application.
pub(crate) const AUD: &str = "4714c1358e65fe4b408ad6d432a5f878f08194bdb4752441fd56faefa9b2b6f2";

/// One of the fixed test keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TestKey {
    A,
    B,
}

impl TestKey {
    fn der(self) -> &'static [u8] {
        match self {
            Self::A => include_bytes!("keys/access-proxy-a.der"),
            Self::B => include_bytes!("keys/access-proxy-b.der"),
        }
    }

    /// The `kid` the certs endpoint publishes it under.
    pub(crate) fn kid(self) -> &'static str {
        match self {
            Self::A => "key-a",
            Self::B => "key-b",
        }
    }

    /// The public key as a JWK, as Cloudflare publishes it.
    fn jwk(self) -> Value {
        let pair = ring::rsa::KeyPair::from_der(self.der()).expect("a PKCS#1 RSA key");
        let public = ring::rsa::PublicKeyComponents::<Vec<u8>>::from(pair.public());
        json!({
            "kid": self.kid(),
            "kty": "RSA",
            "alg": "RS256",
            "use": "sig",
            "n": URL_SAFE_NO_PAD.encode(&public.n),
            "e": URL_SAFE_NO_PAD.encode(&public.e),
        })
    }
}

/// The stand-in: its team domain, the keys it publishes, and how often they were fetched.
pub(crate) struct AccessProxy {
    /// `http://127.0.0.1:PORT`.
    pub(crate) team_domain: String,
    published: Arc<Mutex<Vec<TestKey>>>,
    fetches: Arc<AtomicUsize>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for AccessProxy {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl AccessProxy {
    /// Starts a certs endpoint publishing key A.
    pub(crate) async fn start() -> Self {
        let published = Arc::new(Mutex::new(vec![TestKey::A]));
        let fetches = Arc::new(AtomicUsize::new(0));
        let (keys, count) = (published.clone(), fetches.clone());
        let app = Router::new().route(
            "/cdn-cgi/access/certs",
            get(move || {
                let keys = keys.lock().unwrap().clone();
                count.fetch_add(1, Ordering::SeqCst);
                async move {
                    // Cloudflare's shape: the JWKs, and the same keys as certificates beside.
                    axum::Json(json!({
                        "keys": keys.iter().map(|k| k.jwk()).collect::<Vec<_>>(),
                        "public_cert": {"kid": "unused", "cert": "-----BEGIN CERTIFICATE-----"},
                        "public_certs": [],
                    }))
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Self {
            team_domain: format!("http://{addr}"),
            published,
            fetches,
            server,
        }
    }

    /// The settings of an app behind this proxy.
    pub(crate) fn settings(&self) -> Vec<(&'static str, String)> {
        vec![
            ("GATEHOUSE_UPSTREAM_IDENTITY", "cloudflare_access".into()),
            ("GATEHOUSE_CF_ACCESS_TEAM_DOMAIN", self.team_domain.clone()),
            ("GATEHOUSE_CF_ACCESS_AUD", AUD.into()),
        ]
    }

    /// Publishes `keys` from now on (a rotation).
    pub(crate) fn publish(&self, keys: &[TestKey]) {
        *self.published.lock().unwrap() = keys.to_vec();
    }

    /// Stops answering: the certs endpoint is unreachable from now on.
    pub(crate) fn go_down(&self) {
        self.server.abort();
    }

    /// How often the keys were fetched.
    pub(crate) fn fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }

    /// A valid assertion for `email`, at `app`'s clock.
    pub(crate) fn assertion(&self, app: &TestApp, email: &str) -> String {
        self.token(app, email).sign()
    }

    /// An assertion for `email` to change before signing: valid as it is.
    pub(crate) fn token(&self, app: &TestApp, email: &str) -> Token {
        let now = app.clock.now().unix_timestamp();
        Token {
            key: TestKey::A,
            kid: Some(TestKey::A.kid().into()),
            claims: json!({
                "aud": [AUD],
                "email": email,
                "exp": now + 600,
                "iat": now,
                "nbf": now,
                "iss": self.team_domain,
                "type": "app",
                "identity_nonce": "6ei69kawdKzMIAPF",
                "sub": "7335d417-61da-459d-899c-0a01c76a2e3a",
                "country": "NL",
            }),
        }
    }
}

/// An assertion being made; [`Token::sign`] makes it.
#[derive(Clone, Debug)]
pub(crate) struct Token {
    key: TestKey,
    kid: Option<String>,
    claims: Value,
}

impl Token {
    /// Signed by `key` (keeping the `kid` unless [`Token::kid`] says otherwise).
    pub(crate) fn signed_by(mut self, key: TestKey) -> Self {
        self.key = key;
        self
    }

    /// With this `kid` (or none).
    pub(crate) fn kid(mut self, kid: Option<&str>) -> Self {
        self.kid = kid.map(str::to_owned);
        self
    }

    /// With `claim` set to `value` (`Value::Null` removes it).
    pub(crate) fn claim(mut self, claim: &str, value: Value) -> Self {
        let claims = self.claims.as_object_mut().unwrap();
        if value.is_null() {
            claims.remove(claim);
        } else {
            claims.insert(claim.to_owned(), value);
        }
        self
    }

    /// With `exp` and `nbf` moved by `seconds` (negative: in the past).
    pub(crate) fn shifted(self, seconds: i64) -> Self {
        let exp = self.claims["exp"].as_i64().unwrap() + seconds;
        let nbf = self.claims["nbf"].as_i64().unwrap() + seconds;
        self.claim("exp", json!(exp)).claim("nbf", json!(nbf))
    }

    /// RS256 over the claims, with the chosen key and `kid`.
    pub(crate) fn sign(&self) -> String {
        let mut header = Header::new(Algorithm::RS256);
        header.kid = self.kid.clone();
        jsonwebtoken::encode(
            &header,
            &self.claims,
            &EncodingKey::from_rsa_der(self.key.der()),
        )
        .unwrap()
    }

    /// `alg: none`, no signature.
    pub(crate) fn unsigned(&self) -> String {
        let header = json!({"alg": "none", "typ": "JWT", "kid": self.kid});
        format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(self.claims.to_string())
        )
    }

    /// HS256 with the published public key's modulus as the secret (the key-confusion attack).
    pub(crate) fn hs256_with_the_public_key(&self) -> String {
        let jwk = self.key.jwk();
        let secret = jwk["n"].as_str().unwrap().as_bytes().to_vec();
        let mut header = Header::new(Algorithm::HS256);
        header.kid = self.kid.clone();
        jsonwebtoken::encode(&header, &self.claims, &EncodingKey::from_secret(&secret)).unwrap()
    }
}
