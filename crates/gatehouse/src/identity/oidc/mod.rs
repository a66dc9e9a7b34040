//! OpenID Connect providers: their settings, their discovery metadata and keys (cached), and the
//! check of an ID token. The sign-in flow over them is [`flow`]; linked identities are
//! [`identities`].
//!
//! Built on the `openidconnect` crate (discovery, the authorization URL with PKCE, the code
//! exchange and the ID token's signature, `iss`, `aud`, `exp` and `nonce` checks). Around it,
//! what the crate leaves to its user:
//! - **`azp` and `iat`.** The crate does not check the authorized party (its source explains
//!   why) nor, by default, the issue time: `Providers::verify` refuses a token whose `azp`
//!   is not this client (or that has several audiences and no `azp`), and one issued more than
//!   [`CLOCK_SKEW`] in the future.
//! - **Keys that rotate.** The crate fetches metadata and keys once, when asked. Here they are
//!   cached for [`METADATA_LIFETIME`], and an ID token whose `kid` is not among the cached keys
//!   makes one refresh of the keys, at most once per [`KEY_REFRESH_INTERVAL`] per provider (a
//!   stream of tokens with made-up `kid`s cannot make Gatehouse hammer the provider).
//! - **The back channel.** The crate takes any HTTP client; the one here is Gatehouse's one
//!   back-channel client, [`Outbound`] (its `AsyncHttpClient` implementation is below): it
//!   follows no redirects (a redirecting discovery document or token endpoint is an error, not a
//!   detour to another host), ignores the `HTTP(S)_PROXY` variables, has connect and overall
//!   timeouts, bounds the answers, and in production refuses anything but https.
//!
//! # Security
//! - The accepted signature algorithms are the provider's allowlist from the settings
//!   (`GATEHOUSE_OIDC_<NAME>_ALGORITHMS`, default `RS256`), never what the provider's metadata
//!   lists; the verifier is a public-client one, so the client secret is never an HMAC key (an
//!   HS256 token "signed" with it is refused), and `alg: none` is refused.
//! - `iat` may be at most [`CLOCK_SKEW`] in the future and `exp` is checked with the
//!   application's clock.
//! - The client secret is a `SecretString`, sent only to the token endpoint.

pub mod flow;
pub mod identities;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use openidconnect::core::{
    CoreGenderClaim, CoreJsonWebKeySet, CoreJweContentEncryptionAlgorithm, CoreJwsSigningAlgorithm,
    CoreProviderMetadata,
};
use openidconnect::{AdditionalClaims, ClientId, IdToken, IdTokenVerifier, IssuerUrl, Nonce};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use tokio::sync::Mutex;

use crate::clock::Clock;
use crate::outbound::{Outbound, OutboundError};

/// How long discovery metadata and keys are used before they are fetched again.
pub const METADATA_LIFETIME: Duration = Duration::from_secs(3600);
/// At most one refresh of a provider's keys on an unknown `kid` this often.
pub const KEY_REFRESH_INTERVAL: Duration = Duration::from_secs(60);
/// How far in the future an ID token's `iat` may be.
pub const CLOCK_SKEW: Duration = Duration::from_secs(300);

/// An ID-token signature algorithm a provider may be allowed: asymmetric ones only.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Algorithm {
    /// RSASSA-PKCS1-v1_5 with SHA-256 (the OpenID Connect default).
    Rs256,
    /// RSASSA-PKCS1-v1_5 with SHA-384.
    Rs384,
    /// RSASSA-PKCS1-v1_5 with SHA-512.
    Rs512,
    /// RSASSA-PSS with SHA-256.
    Ps256,
    /// RSASSA-PSS with SHA-384.
    Ps384,
    /// RSASSA-PSS with SHA-512.
    Ps512,
    /// ECDSA P-256 with SHA-256.
    Es256,
    /// ECDSA P-384 with SHA-384.
    Es384,
    /// Ed25519.
    EdDsa,
}

impl Algorithm {
    /// Parses a JOSE name (`RS256`, …); `Err` gives back what was refused (HMAC algorithms,
    /// `none`, unknown names).
    pub fn parse(raw: &str) -> Result<Self, String> {
        Ok(match raw.trim().to_ascii_uppercase().as_str() {
            "RS256" => Self::Rs256,
            "RS384" => Self::Rs384,
            "RS512" => Self::Rs512,
            "PS256" => Self::Ps256,
            "PS384" => Self::Ps384,
            "PS512" => Self::Ps512,
            "ES256" => Self::Es256,
            "ES384" => Self::Es384,
            "EDDSA" => Self::EdDsa,
            _ => return Err(raw.trim().to_owned()),
        })
    }

    fn jws(self) -> CoreJwsSigningAlgorithm {
        match self {
            Self::Rs256 => CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256,
            Self::Rs384 => CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha384,
            Self::Rs512 => CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha512,
            Self::Ps256 => CoreJwsSigningAlgorithm::RsaSsaPssSha256,
            Self::Ps384 => CoreJwsSigningAlgorithm::RsaSsaPssSha384,
            Self::Ps512 => CoreJwsSigningAlgorithm::RsaSsaPssSha512,
            Self::Es256 => CoreJwsSigningAlgorithm::EcdsaP256Sha256,
            Self::Es384 => CoreJwsSigningAlgorithm::EcdsaP384Sha384,
            Self::EdDsa => CoreJwsSigningAlgorithm::EdDsa,
        }
    }
}

/// One provider's settings (`GATEHOUSE_OIDC_<NAME>_…`).
#[derive(Clone, Debug)]
pub struct ProviderConfig {
    /// The name in the settings and the routes (`google`, `corp`): letters and digits.
    pub name: String,
    /// The name on its button.
    pub label: String,
    /// The issuer URL, without a trailing slash.
    pub issuer: String,
    /// The client ID.
    pub client_id: String,
    /// The client secret.
    pub client_secret: SecretString,
    /// The scopes asked for.
    pub scopes: Vec<String>,
    /// Domains whose verified addresses may get a new account.
    pub allowed_domains: Vec<String>,
    /// The accepted ID-token signature algorithms.
    pub algorithms: Vec<Algorithm>,
}

impl ProviderConfig {
    /// Whether this is Google (whose `hd` claim names a Workspace domain): named `google`, or
    /// with Google's issuer.
    pub fn is_google(&self) -> bool {
        self.name == "google" || self.issuer == "https://accounts.google.com"
    }
}

/// The claims Gatehouse reads beyond the standard ones: Google's `hd`.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct ExtraClaims {
    /// Google: the Workspace domain of the account (absent for consumer accounts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hd: Option<String>,
}

impl AdditionalClaims for ExtraClaims {}

/// An ID token with [`ExtraClaims`].
pub(crate) type ExtraIdToken = IdToken<
    ExtraClaims,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJwsSigningAlgorithm,
>;

/// What a checked ID token says about the person.
#[derive(Clone, Debug)]
pub struct VerifiedIdentity {
    /// `iss`.
    pub issuer: String,
    /// `sub`.
    pub subject: String,
    /// `email`, if given.
    pub email: Option<String>,
    /// `email_verified` is `true`.
    pub email_verified: bool,
    /// Google's `hd`.
    pub hosted_domain: Option<String>,
}

/// Why a provider could not be used or its answer was refused. Never shown in detail: the
/// page says which of a few things went wrong, the log says more.
#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    /// Discovery, the keys or the token endpoint could not be reached or answered wrongly.
    #[error("provider unavailable: {0}")]
    Unavailable(String),
    /// The token endpoint refused the code.
    #[error("token endpoint refused: {0}")]
    TokenRefused(String),
    /// The ID token failed a check.
    #[error("ID token refused: {0}")]
    InvalidToken(String),
}

/// Cached metadata (with its keys) of one provider.
#[derive(Debug)]
struct Cached {
    metadata: CoreProviderMetadata,
    fetched_at: OffsetDateTime,
}

/// One configured provider and its cache.
#[derive(Debug)]
pub struct Provider {
    /// Its settings.
    pub config: ProviderConfig,
    cache: Mutex<Option<Cached>>,
    last_key_refresh: Mutex<Option<OffsetDateTime>>,
}

/// Every configured provider, with the back-channel client they share.
#[derive(Debug)]
pub struct Providers {
    providers: Vec<Arc<Provider>>,
    http: Outbound,
    clock: Arc<dyn Clock>,
    /// The public base URL (redirect URIs are made from it).
    base_url: String,
}

/// The `openidconnect` crate's requests (discovery, keys, the code exchange) go through the one
/// back-channel client, under its rules. A provider's error answer (a token endpoint's `400`)
/// is handed back for the crate to read; a redirect is an error.
impl<'c> openidconnect::AsyncHttpClient<'c> for Outbound {
    type Error = OutboundError;
    type Future = Pin<
        Box<dyn Future<Output = Result<openidconnect::HttpResponse, OutboundError>> + Send + 'c>,
    >;

    fn call(&'c self, request: openidconnect::HttpRequest) -> Self::Future {
        Box::pin(self.send(request))
    }
}

impl Providers {
    /// The providers of `configs`, reached through `http`, with redirect URIs under `base_url`.
    pub fn new(
        configs: &[ProviderConfig],
        http: Outbound,
        clock: Arc<dyn Clock>,
        base_url: &str,
    ) -> Self {
        Self {
            providers: configs
                .iter()
                .map(|c| {
                    Arc::new(Provider {
                        config: c.clone(),
                        cache: Mutex::new(None),
                        last_key_refresh: Mutex::new(None),
                    })
                })
                .collect(),
            http,
            clock,
            base_url: base_url.trim_end_matches('/').to_owned(),
        }
    }

    /// No provider at all (commands that sign nobody in).
    pub fn none(clock: Arc<dyn Clock>) -> Self {
        Self::new(&[], Outbound::new(false), clock, "")
    }

    /// The provider named `name`.
    pub fn get(&self, name: &str) -> Option<&Arc<Provider>> {
        self.providers.iter().find(|p| p.config.name == name)
    }

    /// Every provider, in the settings' order.
    pub fn all(&self) -> impl Iterator<Item = &ProviderConfig> {
        self.providers.iter().map(|p| &p.config)
    }

    /// The redirect URI of `provider`: what is registered at the provider.
    pub fn redirect_uri(&self, provider: &str) -> String {
        format!("{}/auth/oidc/{provider}/callback", self.base_url)
    }

    pub(crate) fn http(&self) -> &Outbound {
        &self.http
    }

    /// The provider's metadata and keys: cached, or fetched when older than
    /// [`METADATA_LIFETIME`].
    pub(crate) async fn metadata(
        &self,
        provider: &Provider,
    ) -> Result<CoreProviderMetadata, ProviderError> {
        let now = self.clock.now();
        let mut cache = provider.cache.lock().await;
        if let Some(cached) = cache.as_ref() {
            if now - cached.fetched_at < METADATA_LIFETIME {
                return Ok(cached.metadata.clone());
            }
        }
        let issuer = IssuerUrl::new(provider.config.issuer.clone())
            .map_err(|e| ProviderError::Unavailable(format!("issuer: {e}")))?;
        let metadata = CoreProviderMetadata::discover_async(issuer, &self.http)
            .await
            .map_err(|e| ProviderError::Unavailable(format!("discovery: {}", error_chain(&e))))?;
        tracing::info!(event = "oidc_discovered", provider = %provider.config.name, "fetched the provider's metadata and keys");
        *cache = Some(Cached {
            metadata: metadata.clone(),
            fetched_at: now,
        });
        Ok(metadata)
    }

    /// Fetches the provider's keys again after an unknown `kid`, unless that was done less than
    /// [`KEY_REFRESH_INTERVAL`] ago: `None` when it was not done.
    async fn refresh_keys(
        &self,
        provider: &Provider,
        metadata: &CoreProviderMetadata,
    ) -> Result<Option<CoreProviderMetadata>, ProviderError> {
        let now = self.clock.now();
        {
            let mut last = provider.last_key_refresh.lock().await;
            if last.is_some_and(|at| now - at < KEY_REFRESH_INTERVAL) {
                tracing::warn!(event = "oidc_key_refresh_skipped", provider = %provider.config.name, "an unknown key ID, but the keys were refreshed moments ago");
                return Ok(None);
            }
            *last = Some(now);
        }
        let jwks = CoreJsonWebKeySet::fetch_async(metadata.jwks_uri(), &self.http)
            .await
            .map_err(|e| ProviderError::Unavailable(format!("keys: {}", error_chain(&e))))?;
        tracing::info!(event = "oidc_keys_refreshed", provider = %provider.config.name, "fetched the provider's keys again after an unknown key ID");
        let refreshed = metadata.clone().set_jwks(jwks);
        *provider.cache.lock().await = Some(Cached {
            metadata: refreshed.clone(),
            fetched_at: now,
        });
        Ok(Some(refreshed))
    }

    /// Checks an ID token from `provider`'s token endpoint against `nonce`: the signature (with
    /// the allowlisted algorithms and the provider's keys, refreshed once on an unknown `kid`),
    /// `iss`, `aud`, `azp`, `exp`, `iat` and `nonce`.
    pub(crate) async fn verify(
        &self,
        provider: &Provider,
        metadata: &CoreProviderMetadata,
        raw_token: &str,
        nonce: &Nonce,
    ) -> Result<VerifiedIdentity, ProviderError> {
        let token: ExtraIdToken = raw_token
            .parse()
            .map_err(|e| ProviderError::InvalidToken(format!("malformed: {e}")))?;
        match self.check(provider, metadata, &token, nonce) {
            Err(openidconnect::ClaimsVerificationError::SignatureVerification(
                openidconnect::SignatureVerificationError::NoMatchingKey,
            )) => {
                let Some(refreshed) = self.refresh_keys(provider, metadata).await? else {
                    return Err(ProviderError::InvalidToken("no key matches its kid".into()));
                };
                self.check(provider, &refreshed, &token, nonce)
                    .map_err(|e| ProviderError::InvalidToken(e.to_string()))
            }
            other => other.map_err(|e| ProviderError::InvalidToken(e.to_string())),
        }
    }

    fn check(
        &self,
        provider: &Provider,
        metadata: &CoreProviderMetadata,
        token: &ExtraIdToken,
        nonce: &Nonce,
    ) -> Result<VerifiedIdentity, openidconnect::ClaimsVerificationError> {
        let clock = self.clock.clone();
        let now = move || {
            let t = clock.now();
            chrono::DateTime::from_timestamp(t.unix_timestamp(), t.nanosecond()).unwrap_or_default()
        };
        let latest_iat = now() + chrono::Duration::from_std(CLOCK_SKEW).unwrap_or_default();
        let verifier = IdTokenVerifier::new_public_client(
            ClientId::new(provider.config.client_id.clone()),
            metadata.issuer().clone(),
            metadata.jwks().clone(),
        )
        .set_allowed_algs(provider.config.algorithms.iter().map(|a| a.jws()))
        .set_time_fn(now)
        .set_issue_time_verifier_fn(move |iat| {
            if iat > latest_iat {
                Err(format!("issued in the future ({iat})"))
            } else {
                Ok(())
            }
        });
        let claims = token.claims(&verifier, nonce)?;
        // The crate leaves `azp` unchecked: a token for several audiences must name this client
        // as the party it was issued to, and a named party must be this client.
        let azp_ok = match claims.authorized_party() {
            Some(azp) => azp.as_str() == provider.config.client_id,
            None => claims.audiences().len() == 1,
        };
        if !azp_ok {
            return Err(openidconnect::ClaimsVerificationError::InvalidAudience(
                "the authorized party (azp) is not this client".into(),
            ));
        }
        Ok(VerifiedIdentity {
            issuer: claims.issuer().as_str().to_owned(),
            subject: claims.subject().as_str().to_owned(),
            email: claims.email().map(|e| e.as_str().to_owned()),
            email_verified: claims.email_verified() == Some(true),
            hosted_domain: claims.additional_claims().hd.clone(),
        })
    }
}

/// An error with its sources, for the log.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}
