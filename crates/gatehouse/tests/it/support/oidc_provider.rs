//! A local OpenID provider for the sign-in tests: discovery, an authorization endpoint that
//! consents at once (as the person configured in its knobs), a token endpoint that checks the
//! client secret, the code and its PKCE verifier, and keys. Each knob makes one thing wrong, so
//! a test can show that Gatehouse refuses it.
//!
//! Two fixed RSA test keys (`oidc_keys/`, made for these tests only) sign the ID tokens; a
//! test rotates from one to the other.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::{Form, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::json;
use sha2::Digest as _;

/// The client Gatehouse is registered as.
pub(crate) const CLIENT_ID: &str = "gatehouse-test-client";
/// Its secret.
pub(crate) const CLIENT_SECRET: &str = "test-client-secret-0123456789abcdef";

const KEYS: [(&str, &[u8], &str); 2] = [
    (
        "key-a",
        include_bytes!("oidc_keys/a.der"),
        include_str!("oidc_keys/a.n"),
    ),
    (
        "key-b",
        include_bytes!("oidc_keys/b.der"),
        include_str!("oidc_keys/b.n"),
    ),
];

/// How the ID token is signed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Signing {
    /// RS256 with the current key (the right way).
    Rs256,
    /// `alg: none`, no signature.
    None,
    /// HS256 keyed with the client secret.
    Hs256WithClientSecret,
}

/// What the provider does; each field set away from its default breaks one thing.
#[derive(Clone, Debug)]
pub(crate) struct Knobs {
    /// The person's `sub`.
    pub(crate) subject: String,
    /// Their `email`.
    pub(crate) email: Option<String>,
    /// `email_verified`.
    pub(crate) email_verified: bool,
    /// Google's `hd`.
    pub(crate) hd: Option<String>,
    /// The authorization endpoint answers `error=access_denied`.
    pub(crate) deny: bool,
    /// The token endpoint answers `invalid_grant`.
    pub(crate) token_error: bool,
    /// The token endpoint never answers (well, after a minute).
    pub(crate) token_hangs: bool,
    /// The discovery document redirects elsewhere.
    pub(crate) redirect_discovery: bool,
    /// The nonce put in the token instead of the one asked for.
    pub(crate) nonce: Option<String>,
    /// The `aud` instead of the client ID.
    pub(crate) audience: Option<String>,
    /// A second audience beside the client ID (`aud` becomes a list).
    pub(crate) extra_audience: Option<String>,
    /// An `azp` claim.
    pub(crate) azp: Option<String>,
    /// The `iss` instead of the issuer.
    pub(crate) issuer: Option<String>,
    /// Seconds from now of `exp` (default 300; negative: expired).
    pub(crate) expires_in: i64,
    /// Seconds from now of `iat` (default 0; positive: issued in the future).
    pub(crate) issued_in: i64,
    /// How the token is signed.
    pub(crate) signing: Signing,
    /// The `kid` in the header instead of the signing key's.
    pub(crate) kid: Option<String>,
    /// Which of the two keys signs, and is published (0 or 1).
    pub(crate) key: usize,
}

impl Default for Knobs {
    fn default() -> Self {
        Self {
            subject: "subject-1".into(),
            email: Some("person@example.com".into()),
            email_verified: true,
            hd: None,
            deny: false,
            token_error: false,
            token_hangs: false,
            redirect_discovery: false,
            nonce: None,
            audience: None,
            extra_audience: None,
            azp: None,
            issuer: None,
            expires_in: 300,
            issued_in: 0,
            signing: Signing::Rs256,
            kid: None,
            key: 0,
        }
    }
}

#[derive(Debug)]
struct Grant {
    nonce: Option<String>,
    challenge: String,
    redirect_uri: String,
}

#[derive(Debug, Default)]
struct Inner {
    knobs: Knobs,
    codes: HashMap<String, Grant>,
    /// How many times the keys were fetched.
    jwks_fetches: usize,
}

/// A running provider.
#[derive(Clone, Debug)]
pub(crate) struct TestProvider {
    /// `http://127.0.0.1:PORT`, also its issuer.
    pub(crate) issuer: String,
    inner: Arc<Mutex<Inner>>,
}

impl TestProvider {
    /// Starts a provider on a free loopback port.
    pub(crate) async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let issuer = format!("http://{}", listener.local_addr().unwrap());
        let provider = Self {
            issuer,
            inner: Arc::default(),
        };
        let app = Router::new()
            .route("/.well-known/openid-configuration", get(discovery))
            .route("/moved/openid-configuration", get(moved_discovery))
            .route("/authorize", get(authorize))
            .route("/token", post(token))
            .route("/jwks", get(jwks))
            .with_state(provider.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        provider
    }

    /// Changes the knobs.
    pub(crate) fn set(&self, change: impl FnOnce(&mut Knobs)) {
        change(&mut self.inner.lock().unwrap().knobs);
    }

    /// How many times Gatehouse fetched the keys.
    pub(crate) fn jwks_fetches(&self) -> usize {
        self.inner.lock().unwrap().jwks_fetches
    }

    /// The settings that make this the provider `name` of a Gatehouse.
    pub(crate) fn settings(&self, name: &str) -> Vec<(String, String)> {
        let upper = name.to_ascii_uppercase();
        vec![
            ("GATEHOUSE_OIDC_PROVIDERS".into(), name.into()),
            (
                format!("GATEHOUSE_OIDC_{upper}_ISSUER"),
                self.issuer.clone(),
            ),
            (
                format!("GATEHOUSE_OIDC_{upper}_CLIENT_ID"),
                CLIENT_ID.into(),
            ),
            (
                format!("GATEHOUSE_OIDC_{upper}_CLIENT_SECRET"),
                CLIENT_SECRET.into(),
            ),
            (format!("GATEHOUSE_OIDC_{upper}_LABEL"), "Test ID".into()),
        ]
    }

    fn knobs(&self) -> Knobs {
        self.inner.lock().unwrap().knobs.clone()
    }
}

async fn discovery(State(p): State<TestProvider>) -> Response {
    if p.knobs().redirect_discovery {
        // To a copy of the real document: only a client that follows redirects gets it.
        return Redirect::temporary(&format!("{}/moved/openid-configuration", p.issuer))
            .into_response();
    }
    metadata(&p)
}

async fn moved_discovery(State(p): State<TestProvider>) -> Response {
    metadata(&p)
}

fn metadata(p: &TestProvider) -> Response {
    Json(json!({
        "issuer": p.issuer,
        "authorization_endpoint": format!("{}/authorize", p.issuer),
        "token_endpoint": format!("{}/token", p.issuer),
        "jwks_uri": format!("{}/jwks", p.issuer),
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
        // Lists more than Gatehouse may accept: its allowlist decides, not this.
        "id_token_signing_alg_values_supported": ["RS256", "HS256", "none"],
        "code_challenge_methods_supported": ["S256"],
    }))
    .into_response()
}

async fn authorize(
    State(p): State<TestProvider>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let redirect_uri = q.get("redirect_uri").cloned().unwrap_or_default();
    let state = q.get("state").cloned().unwrap_or_default();
    let ok = q.get("client_id").map(String::as_str) == Some(CLIENT_ID)
        && q.get("response_type").map(String::as_str) == Some("code")
        && q.get("code_challenge_method").map(String::as_str) == Some("S256")
        && q.get("scope")
            .is_some_and(|s| s.split(' ').any(|s| s == "openid"))
        && !state.is_empty();
    if !ok {
        return (
            axum::http::StatusCode::BAD_REQUEST,
            "bad authorization request",
        )
            .into_response();
    }
    let sep = if redirect_uri.contains('?') { '&' } else { '?' };
    let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    if p.knobs().deny {
        return Redirect::to(&format!(
            "{redirect_uri}{sep}error=access_denied&state={}",
            enc(&state)
        ))
        .into_response();
    }
    let code = uuid::Uuid::new_v4().simple().to_string();
    p.inner.lock().unwrap().codes.insert(
        code.clone(),
        Grant {
            nonce: q.get("nonce").cloned(),
            challenge: q.get("code_challenge").cloned().unwrap_or_default(),
            redirect_uri: redirect_uri.clone(),
        },
    );
    Redirect::to(&format!(
        "{redirect_uri}{sep}code={code}&state={}",
        enc(&state)
    ))
    .into_response()
}

fn token_error(error: &str) -> Response {
    (
        axum::http::StatusCode::BAD_REQUEST,
        Json(json!({ "error": error })),
    )
        .into_response()
}

async fn token(
    State(p): State<TestProvider>,
    headers: axum::http::HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let expected = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{CLIENT_ID}:{CLIENT_SECRET}"))
    );
    let basic_ok = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == expected);
    let post_ok = form.get("client_id").map(String::as_str) == Some(CLIENT_ID)
        && form.get("client_secret").map(String::as_str) == Some(CLIENT_SECRET);
    if !basic_ok && !post_ok {
        return token_error("invalid_client");
    }
    let knobs = p.knobs();
    if knobs.token_hangs {
        tokio::time::sleep(std::time::Duration::from_secs(60)).await;
    }
    if knobs.token_error {
        return token_error("invalid_grant");
    }
    let Some(grant) = form
        .get("code")
        .and_then(|c| p.inner.lock().unwrap().codes.remove(c))
    else {
        return token_error("invalid_grant");
    };
    let verifier = form.get("code_verifier").cloned().unwrap_or_default();
    let challenge = URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(verifier.as_bytes()));
    if challenge != grant.challenge
        || form.get("redirect_uri") != Some(&grant.redirect_uri)
        || form.get("grant_type").map(String::as_str) != Some("authorization_code")
    {
        return token_error("invalid_grant");
    }
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let mut claims = json!({
        "iss": knobs.issuer.clone().unwrap_or_else(|| p.issuer.clone()),
        "sub": knobs.subject,
        "aud": knobs.audience.clone().unwrap_or_else(|| CLIENT_ID.to_owned()),
        "iat": now + knobs.issued_in,
        "exp": now + knobs.expires_in,
        "email_verified": knobs.email_verified,
    });
    if let Some(email) = &knobs.email {
        claims["email"] = json!(email);
    }
    if let Some(extra) = &knobs.extra_audience {
        claims["aud"] = json!([claims["aud"].clone(), extra]);
    }
    if let Some(azp) = &knobs.azp {
        claims["azp"] = json!(azp);
    }
    if let Some(hd) = &knobs.hd {
        claims["hd"] = json!(hd);
    }
    if let Some(nonce) = knobs.nonce.clone().or(grant.nonce) {
        claims["nonce"] = json!(nonce);
    }
    let id_token = sign(&knobs, &claims);
    Json(json!({
        "access_token": "test-access-token",
        "token_type": "Bearer",
        "expires_in": 300,
        "id_token": id_token,
    }))
    .into_response()
}

fn sign(knobs: &Knobs, claims: &serde_json::Value) -> String {
    match knobs.signing {
        Signing::Rs256 => {
            let (kid, der, _) = KEYS[knobs.key];
            let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
            header.kid = Some(knobs.kid.clone().unwrap_or_else(|| kid.to_owned()));
            jsonwebtoken::encode(
                &header,
                claims,
                &jsonwebtoken::EncodingKey::from_rsa_der(der),
            )
            .unwrap()
        }
        Signing::Hs256WithClientSecret => {
            let header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
            jsonwebtoken::encode(
                &header,
                claims,
                &jsonwebtoken::EncodingKey::from_secret(CLIENT_SECRET.as_bytes()),
            )
            .unwrap()
        }
        Signing::None => {
            let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
            let body = URL_SAFE_NO_PAD.encode(claims.to_string());
            format!("{header}.{body}.")
        }
    }
}

async fn jwks(State(p): State<TestProvider>) -> Response {
    let key = {
        let mut inner = p.inner.lock().unwrap();
        inner.jwks_fetches += 1;
        inner.knobs.key
    };
    let (kid, _, n) = KEYS[key];
    Json(json!({
        "keys": [{ "kty": "RSA", "use": "sig", "alg": "RS256", "kid": kid, "n": n.trim(), "e": "AQAB" }]
    }))
    .into_response()
}
