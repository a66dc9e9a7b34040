//! The OpenID Connect authorization code flow: its start (the provider's authorization URL and
//! the server-side state) and its callback (the state taken, the code exchanged, the ID token
//! checked, and who that makes the person). The sign-in itself is the one pipeline's
//! (`Identity::sign_in_with_oidc` in `signin.rs`).
//!
//! # Security
//! - **PKCE S256, `state` and `nonce`.** `state` is 256 random bits; the session store keeps,
//!   under its SHA-256 and for [`FLOW_LIFETIME`], the provider, `next`, the account being linked
//!   (if any) and the SHA-256 of the browser's flow cookie ([`FlowKey`], 256 random bits). The
//!   nonce and the PKCE verifier are HMACs of `state` under the browser's key: the store holds
//!   nothing that could finish a flow, and neither does a leaked URL.
//! - **Single use.** The callback takes the state (read and delete in one step, on both
//!   session stores), whatever happens next: a replayed or concurrent callback finds nothing.
//! - **Bound to the browser.** A callback whose browser does not hold the flow's cookie is
//!   refused (login CSRF: an attacker's callback URL sent to a victim signs nobody in).
//! - `next` is kept only when it is a same-origin path (DESIGN.md §7, `safe_next`).
//! - A provider's error (`error=access_denied`), an unknown, used or expired `state`, a wrong
//!   code and a refused ID token each end on a clear page, never a 500.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac as _};
use openidconnect::core::{CoreAuthenticationFlow, CoreClient};
use openidconnect::{
    AuthorizationCode, ClientId, ClientSecret, CsrfToken, Nonce, PkceCodeChallenge,
    PkceCodeVerifier, RedirectUrl, Scope, TokenResponse as _,
};
use rand::RngCore as _;
use secrecy::ExposeSecret as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;
use uuid::Uuid;

use super::{ProviderError, VerifiedIdentity};
use crate::error::Error;
use crate::identity::User;
use crate::identity::magic_links::safe_next;
use crate::identity::service::Identity;
use crate::identity::sessions::Session;

/// How long a started sign-in may take to come back.
pub const FLOW_LIFETIME: std::time::Duration = std::time::Duration::from_secs(600);

/// The browser's flow cookie value: 256 random bits, base64url. Never stored.
#[derive(Clone)]
pub struct FlowKey(String);

impl std::fmt::Debug for FlowKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FlowKey([redacted])")
    }
}

impl FlowKey {
    fn generate() -> Self {
        Self(random_token())
    }

    /// A cookie value, when well formed.
    pub fn parse(raw: &str) -> Option<Self> {
        (raw.len() == 43
            && raw
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'))
        .then(|| Self(raw.to_owned()))
    }

    /// The value to put in the cookie.
    pub fn expose(&self) -> &str {
        &self.0
    }

    fn hash(&self) -> String {
        hex::encode(Sha256::digest(self.0.as_bytes()))
    }

    /// A secret of this browser's flow `state` for `purpose` (the nonce, the PKCE verifier).
    fn derive(&self, purpose: &str, state: &str) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(self.0.as_bytes())
            .expect("HMAC takes a key of any length");
        mac.update(purpose.as_bytes());
        mac.update(b"\0");
        mac.update(state.as_bytes());
        URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    }
}

fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// What the session store keeps of a flow, under the SHA-256 of its `state`.
#[derive(Debug, Serialize, Deserialize)]
struct FlowState {
    provider: String,
    /// SHA-256 of the browser's [`FlowKey`], hex.
    browser: String,
    next: Option<String>,
    /// The account this flow links an identity to (`None`: a sign-in).
    link_user: Option<Uuid>,
    /// Unix seconds.
    expires_at: i64,
}

/// How a start ended.
#[derive(Debug)]
pub enum Started {
    /// Send the browser to `to`, with the flow cookie `key`.
    Redirect {
        /// The provider's authorization URL.
        to: String,
        /// The flow cookie's value.
        key: FlowKey,
    },
    /// No provider of that name.
    UnknownProvider,
    /// The provider's metadata cannot be fetched.
    Unavailable,
    /// Linking needs a sign-in from the last ten minutes.
    NotRecent,
}

/// What a provider sent back to the callback (its query string).
#[derive(Debug, Default, Deserialize)]
pub struct Callback {
    /// The `state` the start made.
    pub state: Option<String>,
    /// The authorization code.
    pub code: Option<String>,
    /// The provider's error code (`access_denied`, …).
    pub error: Option<String>,
}

/// Why an OpenID Connect sign-in or link ended without one. Each is one clear page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// No provider of that name.
    UnknownProvider,
    /// The person (or the provider) said no: `error=access_denied`.
    Cancelled,
    /// Unknown, used, expired or another browser's `state`.
    Expired,
    /// The provider answered an error, the code was refused, or the ID token failed a check.
    Failed,
    /// The provider could not be reached.
    Unavailable,
    /// No linked account, and the rules let the provider's address neither link nor create one.
    NoAccount,
    /// This provider account is linked to another user.
    LinkedElsewhere,
}

impl Refusal {
    /// The reason's name in audit records and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::UnknownProvider => "unknown_provider",
            Self::Cancelled => "cancelled",
            Self::Expired => "state_invalid",
            Self::Failed => "provider_error",
            Self::Unavailable => "provider_unavailable",
            Self::NoAccount => "no_account",
            Self::LinkedElsewhere => "linked_elsewhere",
        }
    }
}

/// A callback that checked out: whose identity, and what the flow was for.
#[derive(Debug)]
pub(crate) struct Finished {
    pub(crate) provider: String,
    pub(crate) identity: VerifiedIdentity,
    pub(crate) next: Option<String>,
    pub(crate) link_user: Option<Uuid>,
}

impl Identity {
    /// The providers to offer, as (name, label), in the settings' order.
    pub fn oidc_providers(&self) -> Vec<(String, String)> {
        self.oidc
            .all()
            .map(|p| (p.name.clone(), p.label.clone()))
            .collect()
    }

    /// Starts a sign-in with `provider` (or, with `link`, the linking of an identity to the
    /// signed-in user of that session): the state kept server-side and the URL to send the
    /// browser to. `browser` is the flow cookie the browser already holds, reused so that two
    /// tabs can each have a flow.
    pub async fn start_oidc(
        &self,
        provider: &str,
        next: Option<&str>,
        link: Option<(&User, &Session)>,
        browser: Option<FlowKey>,
    ) -> Result<Started, Error> {
        let Some(p) = self.oidc.get(provider) else {
            return Ok(Started::UnknownProvider);
        };
        if let Some((_, session)) = link {
            if !self.recently_signed_in(session) {
                return Ok(Started::NotRecent);
            }
        }
        let metadata = match self.oidc.metadata(p).await {
            Ok(m) => m,
            Err(e) => {
                tracing::error!(event = "oidc_unavailable", provider, error = %e, "cannot start an OpenID Connect sign-in");
                return Ok(Started::Unavailable);
            }
        };
        let key = browser.unwrap_or_else(FlowKey::generate);
        let state = random_token();
        let nonce = key.derive("nonce", &state);
        let verifier = PkceCodeVerifier::new(key.derive("pkce", &state));
        let challenge = PkceCodeChallenge::from_code_verifier_sha256(&verifier);
        let client = self.oidc_client(&p.config, metadata)?;
        let csrf = state.clone();
        let mut request = client.authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            move || CsrfToken::new(csrf),
            move || Nonce::new(nonce),
        );
        for scope in p.config.scopes.iter().filter(|s| *s != "openid") {
            request = request.add_scope(Scope::new(scope.clone()));
        }
        let (url, _, _) = request.set_pkce_challenge(challenge).url();
        let flow = FlowState {
            provider: provider.to_owned(),
            browser: key.hash(),
            next: next.and_then(safe_next),
            link_user: link.map(|(u, _)| u.id),
            expires_at: (self.now() + FLOW_LIFETIME).unix_timestamp(),
        };
        let payload = serde_json::to_string(&flow).map_err(|e| Error::Internal(e.into()))?;
        self.sessions
            .put_pending(&state_hash(&state), &payload, self.now() + FLOW_LIFETIME)
            .await?;
        Ok(Started::Redirect {
            to: url.to_string(),
            key,
        })
    }

    /// The provider's client, for the redirect URI of `config`'s provider.
    fn oidc_client(
        &self,
        config: &super::ProviderConfig,
        metadata: openidconnect::core::CoreProviderMetadata,
    ) -> Result<
        CoreClient<
            openidconnect::EndpointSet,
            openidconnect::EndpointNotSet,
            openidconnect::EndpointNotSet,
            openidconnect::EndpointNotSet,
            openidconnect::EndpointMaybeSet,
            openidconnect::EndpointMaybeSet,
        >,
        Error,
    > {
        let redirect = RedirectUrl::new(self.oidc.redirect_uri(&config.name))
            .map_err(|e| Error::Internal(anyhow::anyhow!("redirect URI: {e}")))?;
        Ok(CoreClient::from_provider_metadata(
            metadata,
            ClientId::new(config.client_id.clone()),
            Some(ClientSecret::new(
                config.client_secret.expose_secret().to_owned(),
            )),
        )
        .set_redirect_uri(redirect))
    }

    /// Checks a callback: the state taken and matched to this browser, the code exchanged, the
    /// ID token checked. `Err` is the refusal to show.
    pub(crate) async fn finish_oidc(
        &self,
        provider: &str,
        callback: &Callback,
        browser: Option<&FlowKey>,
    ) -> Result<Result<Finished, Refusal>, Error> {
        let Some(p) = self.oidc.get(provider) else {
            return Ok(Err(Refusal::UnknownProvider));
        };
        let cancelled = callback.error.as_deref() == Some("access_denied");
        let Some(state) = callback
            .state
            .as_deref()
            .filter(|s| !s.is_empty() && s.len() <= 128)
        else {
            return Ok(Err(if cancelled {
                Refusal::Cancelled
            } else {
                Refusal::Expired
            }));
        };
        // Taken whatever comes next: a state is good for one callback.
        let flow = self
            .sessions
            .take_pending(&state_hash(state))
            .await?
            .and_then(|payload| serde_json::from_str::<FlowState>(&payload).ok());
        let Some(flow) = flow else {
            tracing::warn!(
                event = "oidc_state_unknown",
                provider,
                "a callback with an unknown, used or expired state"
            );
            return Ok(Err(if cancelled {
                Refusal::Cancelled
            } else {
                Refusal::Expired
            }));
        };
        let key =
            browser.filter(|key| bool::from(key.hash().as_bytes().ct_eq(flow.browser.as_bytes())));
        let Some(key) = key
            .filter(|_| flow.provider == provider && self.now().unix_timestamp() < flow.expires_at)
        else {
            tracing::warn!(
                event = "oidc_state_mismatch",
                provider,
                "a callback for another browser, provider or an expired flow"
            );
            return Ok(Err(Refusal::Expired));
        };
        if let Some(error) = &callback.error {
            let error: String = error
                .chars()
                .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
                .take(64)
                .collect();
            tracing::warn!(
                event = "oidc_provider_error",
                provider,
                error,
                "the provider answered an error"
            );
            return Ok(Err(if cancelled {
                Refusal::Cancelled
            } else {
                Refusal::Failed
            }));
        }
        let Some(code) = callback.code.clone().filter(|c| !c.is_empty()) else {
            return Ok(Err(Refusal::Failed));
        };
        match self.exchange(p, state, key, code).await {
            Ok(identity) => Ok(Ok(Finished {
                provider: provider.to_owned(),
                identity,
                next: flow.next,
                link_user: flow.link_user,
            })),
            Err(e) => {
                tracing::warn!(event = "oidc_refused", provider, error = %e, "an OpenID Connect callback was refused");
                Ok(Err(match e {
                    ProviderError::Unavailable(_) => Refusal::Unavailable,
                    ProviderError::TokenRefused(_) | ProviderError::InvalidToken(_) => {
                        Refusal::Failed
                    }
                }))
            }
        }
    }

    /// The code exchanged (with the PKCE verifier) and the ID token checked (with the nonce).
    async fn exchange(
        &self,
        p: &super::Provider,
        state: &str,
        key: &FlowKey,
        code: String,
    ) -> Result<VerifiedIdentity, ProviderError> {
        let metadata = self.oidc.metadata(p).await?;
        let client = self
            .oidc_client(&p.config, metadata.clone())
            .map_err(|e| ProviderError::Unavailable(e.to_string()))?;
        let response = client
            .exchange_code(AuthorizationCode::new(code))
            .map_err(|e| ProviderError::Unavailable(format!("no token endpoint: {e}")))?
            .set_pkce_verifier(PkceCodeVerifier::new(key.derive("pkce", state)))
            .request_async(self.oidc.http())
            .await
            .map_err(|e| match e {
                openidconnect::RequestTokenError::ServerResponse(r) => {
                    ProviderError::TokenRefused(r.error().to_string())
                }
                other => ProviderError::Unavailable(super::error_chain(&other)),
            })?;
        let token = response
            .id_token()
            .ok_or_else(|| ProviderError::InvalidToken("no ID token".into()))?
            .to_string();
        let nonce = Nonce::new(key.derive("nonce", state));
        self.oidc.verify(p, &metadata, &token, &nonce).await
    }
}

fn state_hash(state: &str) -> String {
    format!("oidc:{}", hex::encode(Sha256::digest(state.as_bytes())))
}
