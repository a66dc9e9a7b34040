//! Identity from an upstream access proxy (seed 002), off by default
//! (`GATEHOUSE_UPSTREAM_IDENTITY`):
//!
//! - `cloudflare_access`: Gatehouse sits behind Cloudflare Access. Every request carries
//!   `Cf-Access-Jwt-Assertion`, a JWT Cloudflare signs; it is verified here (RS256 only, keys
//!   from `<team domain>/cdn-cgi/access/certs`, `iss` equal to `GATEHOUSE_CF_ACCESS_TEAM_DOMAIN`,
//!   `aud` containing `GATEHOUSE_CF_ACCESS_AUD`, `exp` and `nbf` against Gatehouse's clock with
//!   [`LEEWAY`]) and its `email` is the person.
//! - `trusted_header`: an authenticating proxy (oauth2-proxy, Authelia, Pomerium) names the
//!   person in a header (`GATEHOUSE_UPSTREAM_IDENTITY_HEADER`, `X-Forwarded-Email` by default),
//!   believed only when the request's TCP peer is one of `GATEHOUSE_TRUSTED_PROXIES`.
//!
//! The address the proxy vouches for is a first factor like any other: it goes through the one
//! sign-in pipeline (`Identity::sign_in_upstream` in `signin`), so the per-address limit, the
//! lock, the MFA branch (a user with MFA still gives their second factor), the required-role
//! rule, the new session, the `auth.sign_in` audit record (method `cloudflare_access` or
//! `trusted_header`) and the new-device notice all apply. Who may sign in is the rule every
//! sign-in link follows (`links::Allowance`): an active user, or an address in
//! `GATEHOUSE_ALLOWED_DOMAINS`, who gets an account with role `user`.
//!
//! How a request is treated ([`Identity::upstream_identity`]), once per request, before the
//! routes:
//! - `cloudflare_access`: a request without a valid assertion is refused (`401`), whatever
//!   cookie or token it carries; only `/healthz`, `/readyz` and the static files are exempt
//!   (the transport's list). A valid assertion without an `email` (a Cloudflare service token)
//!   opens the API to its own bearer token or API key, and no page (`403`).
//! - `trusted_header`: the header from any other peer is ignored (and logged); a request
//!   without it goes on as any other, with Gatehouse's own sign-in.
//! - With an identity: a session of the same user goes on; a session of another user is ended
//!   (audited as `auth.sign_out`, reason `upstream_identity_changed`) and, on a page, the
//!   person the proxy names is signed in instead; on the API such a request is refused (`401`).
//!   A bearer token or API key on the API decides who the request acts for (the proxy's
//!   assertion was its admission). Without a session, a page request signs the person in and
//!   goes back to the page it asked for (or to the second-factor page first).
//!
//! # Security
//! - `Cf-Access-Authenticated-User-Email` is never read: only the signed assertion counts.
//! - The algorithm is pinned to RS256 before any key is looked up: `alg: none`, HS256 (with the
//!   public key as a secret or anything else) and every other algorithm are refused. A key must
//!   be RSA, for signatures, and named by the token's `kid`.
//! - Keys are cached [`KEYS_LIFETIME`]; a key set older than that is fetched again before use
//!   and, when that fails, the request is refused (`503`) rather than judged by old keys. An
//!   unknown `kid` refreshes the set once, at most once per [`REFRESH_MIN_INTERVAL`], so forged
//!   `kid`s cannot make Gatehouse hammer the certs endpoint. The fetch goes through
//!   [`crate::outbound`] (https in production, timeouts, no redirects, no proxy variables).
//! - The trusted header's peer check is the client-IP layer's own
//!   (`gatehouse_security::client_ip::Peer`): the same list decides which peers' forwarding
//!   headers and identity headers are believed. Production refuses `trusted_header` without
//!   trusted proxies, or with a list that covers every address (`config::check`).
//! - A refusal says only "not signed in"; the reason goes to the log (`upstream_identity_refused`).

use std::time::Duration;

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use time::OffsetDateTime;
use tokio::sync::Mutex;
use url::Url;

use super::mfa::PendingSignIn;
use super::service::Identity;
use super::sessions::Session;
use super::signin::{Origin, Outcome};
use super::{Email, User, users};
use crate::error::Error;
use crate::mail::mask_email;
use crate::outbound::Outbound;

/// How long a fetched key set is used before it is fetched again.
pub const KEYS_LIFETIME: Duration = Duration::from_secs(3600);

/// The shortest time between two fetches of the key set, whatever asks for them.
pub const REFRESH_MIN_INTERVAL: Duration = Duration::from_secs(30);

/// Clock difference tolerated on `exp` and `nbf`.
pub const LEEWAY: Duration = Duration::from_secs(30);

/// The header Cloudflare Access puts its signed assertion in.
pub const CF_ACCESS_ASSERTION_HEADER: &str = "cf-access-jwt-assertion";

/// The identity header's default name (`GATEHOUSE_UPSTREAM_IDENTITY_HEADER`).
pub const DEFAULT_IDENTITY_HEADER: &str = "x-forwarded-email";

/// The most keys taken from one key set.
const MAX_KEYS: usize = 16;

/// The longest assertion looked at, in bytes.
const MAX_ASSERTION: usize = 8 * 1024;

/// Which upstream proxy, if any, names the person (`GATEHOUSE_UPSTREAM_IDENTITY`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum UpstreamMode {
    /// No upstream identity: Gatehouse's own sign-in only.
    #[default]
    Off,
    /// Cloudflare Access's signed assertion.
    CloudflareAccess,
    /// A header set by an authenticating proxy among the trusted proxies.
    TrustedHeader,
}

impl UpstreamMode {
    /// The setting's value, also the method an upstream sign-in is recorded under.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Off => "off",
            Self::CloudflareAccess => "cloudflare_access",
            Self::TrustedHeader => "trusted_header",
        }
    }

    /// Reads the setting's value.
    pub fn parse(raw: &str) -> Option<Self> {
        match raw.trim().to_ascii_lowercase().as_str() {
            "off" | "none" => Some(Self::Off),
            "cloudflare_access" => Some(Self::CloudflareAccess),
            "trusted_header" => Some(Self::TrustedHeader),
            _ => None,
        }
    }
}

/// The upstream identity settings, as validated at start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UpstreamSettings {
    /// `GATEHOUSE_UPSTREAM_IDENTITY`.
    pub mode: UpstreamMode,
    /// `GATEHOUSE_UPSTREAM_IDENTITY_HEADER`, lower case.
    pub header: String,
    /// `GATEHOUSE_CF_ACCESS_TEAM_DOMAIN`: `https://<team>.cloudflareaccess.com`, no path.
    pub team_domain: Option<Url>,
    /// `GATEHOUSE_CF_ACCESS_AUD`: the Access application's AUD tag.
    pub aud: Option<String>,
}

impl Default for UpstreamSettings {
    fn default() -> Self {
        Self {
            mode: UpstreamMode::Off,
            header: DEFAULT_IDENTITY_HEADER.into(),
            team_domain: None,
            aud: None,
        }
    }
}

impl UpstreamSettings {
    /// The assertions' issuer: the team domain as written, without a trailing slash.
    pub fn issuer(&self) -> Option<String> {
        self.team_domain
            .as_ref()
            .map(|u| u.as_str().trim_end_matches('/').to_owned())
    }

    /// Where the team's signing keys are published.
    pub fn certs_url(&self) -> Option<Url> {
        self.team_domain
            .as_ref()
            .and_then(|u| u.join("/cdn-cgi/access/certs").ok())
    }
}

/// Reads a team domain: an `http(s)://host[:port]` origin, no path, query or credentials.
pub fn parse_team_domain(raw: &str) -> Result<Url, String> {
    let expected = "expected the team's origin, such as `https://<team>.cloudflareaccess.com`";
    let url = Url::parse(raw.trim()).map_err(|_| format!("{expected}, got `{raw}`"))?;
    let plain = matches!(url.scheme(), "https" | "http")
        && url.host_str().is_some_and(|h| !h.is_empty())
        && url.username().is_empty()
        && url.password().is_none()
        && url.path() == "/"
        && url.query().is_none()
        && url.fragment().is_none();
    if plain {
        Ok(url)
    } else {
        Err(format!("{expected} (no path), got `{raw}`"))
    }
}

/// Reads an AUD tag: letters, digits, `-` and `_`, at most 256.
pub fn parse_aud(raw: &str) -> Result<String, String> {
    let aud = raw.trim();
    let ok = !aud.is_empty()
        && aud.len() <= 256
        && aud
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'));
    if ok {
        Ok(aud.to_owned())
    } else {
        Err(format!(
            "expected the Access application's AUD tag (letters and digits, from its Overview tab), got `{raw}`"
        ))
    }
}

/// Reads a header name (lower-cased).
pub fn parse_header_name(raw: &str) -> Result<String, String> {
    let name = raw.trim().to_ascii_lowercase();
    let ok = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'));
    if ok {
        Ok(name)
    } else {
        Err(format!(
            "expected a header name such as `X-Forwarded-Email`, got `{raw}`"
        ))
    }
}

/// The upstream identity: its settings and the access proxy's key cache.
#[derive(Debug)]
pub struct Upstream {
    settings: UpstreamSettings,
    outbound: Outbound,
    keys: Mutex<KeySet>,
}

/// The keys last fetched, and when.
#[derive(Default)]
struct KeySet {
    keys: Vec<(String, DecodingKey)>,
    fetched_at: Option<OffsetDateTime>,
    attempted_at: Option<OffsetDateTime>,
}

impl std::fmt::Debug for KeySet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeySet")
            .field(
                "kids",
                &self.keys.iter().map(|(k, _)| k).collect::<Vec<_>>(),
            )
            .field("fetched_at", &self.fetched_at)
            .finish_non_exhaustive()
    }
}

impl KeySet {
    fn fresh(&self, now: OffsetDateTime) -> bool {
        self.fetched_at.is_some_and(|t| now < t + KEYS_LIFETIME)
    }

    fn find(&self, kid: &str) -> Option<DecodingKey> {
        self.keys
            .iter()
            .find(|(k, _)| k == kid)
            .map(|(_, key)| key.clone())
    }
}

/// Why an assertion was refused (for the log).
#[derive(Debug, thiserror::Error)]
enum Rejected {
    #[error("not a JWT")]
    Malformed,
    #[error("algorithm {0:?} is not RS256")]
    Algorithm(String),
    #[error("no `kid`")]
    NoKid,
    #[error("no key `{0}` in the team's key set")]
    UnknownKey(String),
    #[error("{0}")]
    Invalid(String),
    #[error("expired")]
    Expired,
    #[error("not valid yet")]
    NotYetValid,
    #[error("the team's keys cannot be fetched: {0}")]
    KeysUnavailable(String),
}

/// The claims read from an assertion (`iss` and `aud` are checked by the decoder).
#[derive(Debug, Deserialize)]
struct AccessClaims {
    exp: i64,
    nbf: Option<i64>,
    email: Option<String>,
}

/// A key of the team's key set, as published.
#[derive(Debug, Deserialize)]
struct PublishedKey {
    kid: Option<String>,
    kty: Option<String>,
    alg: Option<String>,
    #[serde(rename = "use")]
    use_: Option<String>,
    n: Option<String>,
    e: Option<String>,
}

#[derive(Debug, Deserialize)]
struct PublishedKeys {
    keys: Vec<PublishedKey>,
}

impl Upstream {
    /// The upstream identity of `settings`, fetching keys through `outbound`.
    pub fn new(settings: UpstreamSettings, outbound: Outbound) -> Self {
        Self {
            settings,
            outbound,
            keys: Mutex::new(KeySet::default()),
        }
    }

    /// No upstream identity (command-line runs).
    pub fn off() -> Self {
        Self::new(UpstreamSettings::default(), Outbound::new(false))
    }

    /// The settings.
    pub fn settings(&self) -> &UpstreamSettings {
        &self.settings
    }

    /// The header the transport reads for this mode, or `None` when off.
    pub fn header(&self) -> Option<&str> {
        match self.settings.mode {
            UpstreamMode::Off => None,
            UpstreamMode::CloudflareAccess => Some(CF_ACCESS_ASSERTION_HEADER),
            UpstreamMode::TrustedHeader => Some(&self.settings.header),
        }
    }

    /// Verifies a Cloudflare Access assertion at `now`: its claims, or why not.
    async fn verify(&self, token: &str, now: OffsetDateTime) -> Result<AccessClaims, Rejected> {
        let (Some(issuer), Some(aud)) = (self.settings.issuer(), self.settings.aud.as_deref())
        else {
            return Err(Rejected::Invalid("not configured".into()));
        };
        if token.len() > MAX_ASSERTION {
            return Err(Rejected::Malformed);
        }
        // The algorithm is pinned before anything else is read: `none`, HS256 and the rest
        // never reach a key.
        let header = jsonwebtoken::decode_header(token).map_err(|e| match e.kind() {
            jsonwebtoken::errors::ErrorKind::Json(_) => {
                Rejected::Algorithm("unknown or none".into())
            }
            _ => Rejected::Malformed,
        })?;
        if header.alg != Algorithm::RS256 {
            return Err(Rejected::Algorithm(format!("{:?}", header.alg)));
        }
        let kid = header.kid.ok_or(Rejected::NoKid)?;
        let key = self.key(&kid, now).await?;
        let mut validation = Validation::new(Algorithm::RS256);
        validation.set_issuer(&[issuer]);
        validation.set_audience(&[aud]);
        // Times are checked below against Gatehouse's clock.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.required_spec_claims = ["exp", "iss", "aud"]
            .into_iter()
            .map(str::to_owned)
            .collect();
        let claims = jsonwebtoken::decode::<AccessClaims>(token, &key, &validation)
            .map_err(|e| Rejected::Invalid(e.to_string()))?
            .claims;
        let now = now.unix_timestamp();
        let leeway = i64::try_from(LEEWAY.as_secs()).unwrap_or(0);
        if claims.exp.saturating_add(leeway) <= now {
            return Err(Rejected::Expired);
        }
        if claims
            .nbf
            .is_some_and(|nbf| nbf.saturating_sub(leeway) > now)
        {
            return Err(Rejected::NotYetValid);
        }
        Ok(claims)
    }

    /// The key `kid`: from the cache while it is fresh, else after one refresh (at most one per
    /// [`REFRESH_MIN_INTERVAL`]).
    async fn key(&self, kid: &str, now: OffsetDateTime) -> Result<DecodingKey, Rejected> {
        let mut set = self.keys.lock().await;
        if set.fresh(now) {
            if let Some(key) = set.find(kid) {
                return Ok(key);
            }
        }
        let may_fetch = set
            .attempted_at
            .is_none_or(|t| now >= t + REFRESH_MIN_INTERVAL);
        let mut failure = None;
        if may_fetch {
            set.attempted_at = Some(now);
            match self.fetch().await {
                Ok(keys) => {
                    tracing::info!(event = "upstream_keys_fetched", kids = ?keys.iter().map(|(k, _)| k).collect::<Vec<_>>(), "fetched the access proxy's signing keys");
                    set.keys = keys;
                    set.fetched_at = Some(now);
                }
                Err(e) => {
                    tracing::warn!(event = "upstream_keys_unavailable", error = %e, "cannot fetch the access proxy's signing keys");
                    failure = Some(e);
                }
            }
        }
        if !set.fresh(now) {
            return Err(Rejected::KeysUnavailable(failure.map_or_else(
                || "a fetch failed recently".to_owned(),
                |e| e.to_string(),
            )));
        }
        set.find(kid)
            .ok_or_else(|| Rejected::UnknownKey(kid.to_owned()))
    }

    /// Fetches the team's RSA signing keys.
    async fn fetch(&self) -> Result<Vec<(String, DecodingKey)>, String> {
        let url = self.settings.certs_url().ok_or("no team domain")?;
        let published: PublishedKeys = self
            .outbound
            .get_json(&url)
            .await
            .map_err(|e| e.to_string())?;
        let keys: Vec<(String, DecodingKey)> = published
            .keys
            .into_iter()
            .filter(|k| {
                k.kty.as_deref() == Some("RSA")
                    && k.alg.as_deref().is_none_or(|a| a == "RS256")
                    && k.use_.as_deref().is_none_or(|u| u == "sig")
            })
            .filter_map(|k| {
                let key =
                    DecodingKey::from_rsa_components(k.n.as_deref()?, k.e.as_deref()?).ok()?;
                Some((k.kid?, key))
            })
            .take(MAX_KEYS)
            .collect();
        if keys.is_empty() {
            return Err("the key set holds no RSA signing key".into());
        }
        Ok(keys)
    }
}

/// What the transport found on a request, for [`Identity::upstream_identity`].
#[derive(Debug)]
pub struct UpstreamRequest<'a> {
    /// The value of [`Upstream::header`], when the request has it.
    pub presented: Option<&'a str>,
    /// Whether the request's TCP peer is one of `GATEHOUSE_TRUSTED_PROXIES`.
    pub from_trusted_proxy: bool,
    /// The session the request's cookie opened, and its user.
    pub session: Option<(&'a User, &'a Session)>,
    /// The request carries a bearer token or an API key, which decides who it acts for.
    pub other_credential: bool,
    /// The sign-in waiting for its second factor, on the second-factor page.
    pub pending: Option<&'a PendingSignIn>,
    /// Whether a sign-in may start here: a page, not the API.
    pub may_sign_in: bool,
    /// Where to go once signed in.
    pub next: Option<String>,
}

/// Why a request was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UpstreamRefusal {
    /// No assertion (`cloudflare_access`): `401`.
    Missing,
    /// A bad, forged, expired or foreign assertion, or an identity header that is no address:
    /// `401`.
    Invalid,
    /// A valid assertion that names no person (a service token) on a page: `403`.
    NoPerson,
    /// The keys to check it cannot be fetched: `503`.
    KeysUnavailable,
    /// An API request whose session belonged to another user than the one the proxy names;
    /// the session was ended: `401`.
    SessionOfAnother,
}

/// What to do with a request.
#[derive(Debug)]
pub enum UpstreamDecision {
    /// Go on with the request as it is.
    Proceed,
    /// Refuse it; `session_ended` says its session cookie is now worthless.
    Refused {
        /// Why.
        why: UpstreamRefusal,
        /// The request's session was ended.
        session_ended: bool,
    },
    /// The person the proxy names went through the sign-in pipeline: render the outcome.
    /// `session_ended` says the request's session (another user's) was ended first.
    SignIn {
        /// The pipeline's outcome.
        outcome: Outcome,
        /// The request's session was ended.
        session_ended: bool,
    },
}

impl Identity {
    /// Decides what a request gets from the upstream proxy's identity (see the module
    /// documentation): the one place upstream identity is judged, for every route.
    pub async fn upstream_identity(
        &self,
        request: UpstreamRequest<'_>,
        origin: &Origin,
    ) -> Result<UpstreamDecision, Error> {
        let mode = self.upstream.settings.mode;
        let refused = |why| UpstreamDecision::Refused {
            why,
            session_ended: false,
        };
        let email = match mode {
            UpstreamMode::Off => return Ok(UpstreamDecision::Proceed),
            UpstreamMode::CloudflareAccess => {
                let Some(token) = request.presented else {
                    tracing::warn!(
                        event = "upstream_identity_refused",
                        reason = "no assertion",
                        "a request without Cloudflare Access's assertion was refused"
                    );
                    return Ok(refused(UpstreamRefusal::Missing));
                };
                let claims = match self.upstream.verify(token.trim(), self.now()).await {
                    Ok(claims) => claims,
                    Err(Rejected::KeysUnavailable(reason)) => {
                        tracing::warn!(
                            event = "upstream_identity_refused",
                            reason,
                            "the assertion cannot be checked now"
                        );
                        return Ok(refused(UpstreamRefusal::KeysUnavailable));
                    }
                    Err(e) => {
                        tracing::warn!(event = "upstream_identity_refused", reason = %e, "a Cloudflare Access assertion was refused");
                        return Ok(refused(UpstreamRefusal::Invalid));
                    }
                };
                if request.other_credential {
                    return Ok(UpstreamDecision::Proceed);
                }
                match claims.email.as_deref().map(Email::parse) {
                    Some(Ok(email)) => email,
                    _ => {
                        if request.session.is_none() && !request.may_sign_in {
                            // The API without a session: its own credential rules apply.
                            return Ok(UpstreamDecision::Proceed);
                        }
                        tracing::warn!(
                            event = "upstream_identity_refused",
                            reason = "no email",
                            "a Cloudflare Access assertion names no person"
                        );
                        return Ok(refused(UpstreamRefusal::NoPerson));
                    }
                }
            }
            UpstreamMode::TrustedHeader => {
                let Some(value) = request.presented else {
                    return Ok(UpstreamDecision::Proceed);
                };
                if !request.from_trusted_proxy {
                    tracing::warn!(event = "upstream_identity_ignored", client_ip = %origin.client, "an identity header from a peer that is not a trusted proxy was ignored");
                    return Ok(UpstreamDecision::Proceed);
                }
                if request.other_credential {
                    return Ok(UpstreamDecision::Proceed);
                }
                match Email::parse(value) {
                    Ok(email) => email,
                    Err(_) => {
                        tracing::warn!(
                            event = "upstream_identity_refused",
                            reason = "not an address",
                            "the trusted proxy's identity header is not an address"
                        );
                        return Ok(refused(UpstreamRefusal::Invalid));
                    }
                }
            }
        };
        self.as_upstream_person(email, mode, request, origin).await
    }

    /// The request of the person `email` the proxy vouches for.
    async fn as_upstream_person(
        &self,
        email: Email,
        mode: UpstreamMode,
        request: UpstreamRequest<'_>,
        origin: &Origin,
    ) -> Result<UpstreamDecision, Error> {
        let mut session_ended = false;
        if let Some((user, session)) = request.session {
            if user.email == email {
                return Ok(UpstreamDecision::Proceed);
            }
            // The browser's session is someone else's: it never outlives a change of person.
            tracing::warn!(event = "upstream_identity_changed", user_id = %user.id, to = %mask_email(&email), "the access proxy names another person than the session's: the session ends");
            self.end_session(
                user.id,
                session,
                origin,
                serde_json::json!({ "reason": "upstream_identity_changed" }),
            )
            .await?;
            session_ended = true;
        }
        if !request.may_sign_in {
            return Ok(if session_ended {
                UpstreamDecision::Refused {
                    why: UpstreamRefusal::SessionOfAnother,
                    session_ended,
                }
            } else {
                UpstreamDecision::Proceed
            });
        }
        if let Some(pending) = request.pending {
            let same = users::find_by_id(&self.db, pending.user_id)
                .await?
                .is_some_and(|u| u.email == email);
            if same {
                // The second-factor page finishes this person's sign-in.
                return Ok(UpstreamDecision::Proceed);
            }
        }
        let outcome = self
            .sign_in_upstream(&email, mode.as_str(), request.next, origin)
            .await?;
        if matches!(outcome, Outcome::Refused) {
            tracing::warn!(event = "upstream_identity_refused", reason = "not allowed", to = %mask_email(&email), "the person the access proxy names may not sign in");
        }
        Ok(UpstreamDecision::SignIn {
            outcome,
            session_ended,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn team_domains_are_origins_only() {
        let ok = parse_team_domain("https://acme.cloudflareaccess.com").unwrap();
        assert_eq!(
            UpstreamSettings {
                team_domain: Some(ok),
                ..Default::default()
            }
            .issuer()
            .as_deref(),
            Some("https://acme.cloudflareaccess.com")
        );
        for bad in [
            "acme.cloudflareaccess.com",
            "https://acme.cloudflareaccess.com/cdn-cgi/access/certs",
            "https://user:pw@acme.cloudflareaccess.com",
            "https://acme.cloudflareaccess.com?x=1",
            "ftp://acme.cloudflareaccess.com",
        ] {
            assert!(parse_team_domain(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_certs_are_under_the_team_domain() {
        let settings = UpstreamSettings {
            team_domain: Some(parse_team_domain("https://acme.cloudflareaccess.com/").unwrap()),
            ..Default::default()
        };
        assert_eq!(
            settings.certs_url().unwrap().as_str(),
            "https://acme.cloudflareaccess.com/cdn-cgi/access/certs"
        );
    }

    #[test]
    fn aud_tags_and_header_names_are_checked() {
        assert!(
            parse_aud("4714c1358e65fe4b408ad6d432a5f878f08194bdb4752441fd56faefa9b2b6f2").is_ok()
        );
        assert!(parse_aud("").is_err());
        assert!(parse_aud("a b").is_err());
        assert_eq!(
            parse_header_name("X-Forwarded-Email").unwrap(),
            "x-forwarded-email"
        );
        assert!(parse_header_name("X Forwarded").is_err());
        assert!(parse_header_name("").is_err());
    }

    #[test]
    fn modes_parse() {
        assert_eq!(
            UpstreamMode::parse("Cloudflare_Access"),
            Some(UpstreamMode::CloudflareAccess)
        );
        assert_eq!(
            UpstreamMode::parse("trusted_header"),
            Some(UpstreamMode::TrustedHeader)
        );
        assert_eq!(UpstreamMode::parse("off"), Some(UpstreamMode::Off));
        assert_eq!(UpstreamMode::parse("cloudflare"), None);
    }
}
