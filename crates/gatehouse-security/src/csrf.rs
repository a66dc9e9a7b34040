//! Cross-site request forgery protection: a masked synchronizer token plus an `Origin` /
//! `Sec-Fetch-Site` check.
//!
//! [`CsrfLayer`] looks for the request's [`CsrfSecret`] in the request extensions, where the
//! application's session layer (installed outside this one) puts the current session's secret.
//! A request without a session (the sign-in form) uses a *pre-session* secret kept in a cookie
//! instead: `__Host-gatehouse-csrf` with [`CsrfConfig::secure_cookie`], else `gatehouse-csrf`
//! (`HttpOnly; SameSite=Lax; Path=/`, plus `Secure`; no expiry, so it ends with the browser
//! session). On a safe request whose cookie is missing or malformed a new secret is generated
//! and set on the response.
//!
//! Every request reaching the routes through a safe method, or through an unsafe method that
//! passed the checks, carries a [`CsrfToken`] in its extensions (also an extractor) for the
//! templates: `<input type="hidden" name="csrf_token" value="{{ csrf_token }}">`, or a
//! `<meta>` tag that scripts copy into the `X-CSRF-Token` header.
//!
//! Safe methods (`GET`, `HEAD`, `OPTIONS`, `TRACE`) always pass. Every other method must pass,
//! in order:
//!
//! 1. **Bearer exemption.** A request with `Authorization: Bearer <credentials>` passes with a
//!    [`CsrfExempt`] marker in its extensions and no token: browsers never attach a bearer
//!    credential by themselves, so a forged request cannot carry one.
//! 2. **Origin.** When `Origin` is present it must equal one of
//!    [`CsrfConfig::allowed_origins`] byte for byte (`null` never passes). When it is absent
//!    and `Sec-Fetch-Site` is present, that must be `same-origin` or `none`. When both are
//!    absent (old browsers, scripts) the token check below decides alone.
//! 3. **Token.** From the `X-CSRF-Token` or `X-CSRFToken` header; failing that, for an
//!    `application/x-www-form-urlencoded` body, from its `csrf_token` field. The body is then
//!    read into memory (at most [`CsrfConfig::form_body_limit`] bytes, else `413`) and the same
//!    bytes are handed on, so the handler reads the whole form. **Multipart bodies are not
//!    parsed: multipart forms and every other body type (JSON, uploads) must send the token in
//!    the header.**
//! 4. **Verification.** The token must unmask to the session's secret, or without a session to
//!    the pre-session cookie's secret.
//!
//! A failure is answered with a `403` [`Problem`] whose detail is "cross-origin request
//! refused" or "missing or invalid CSRF token" (the token is never echoed), logged as
//! `warn` with `event = "csrf_failure"` and a `reason`; the inner service is not called.
//!
//! A token is `base64url(mask ‖ (mask XOR secret))` without padding (86 characters) with a
//! fresh 32-byte random mask, computed on first use so requests that render no form pay only
//! for an `Arc`. One [`CsrfToken`] gives the same string on every access, so all forms of a
//! response agree; the next response gets another one.
//!
//! Why this is written here: tower-http's `csrf` module (0.7; this workspace is on 0.6) covers
//! only the header half, without tokens, and matches `Origin` against `Host`, which a proxy may
//! rewrite; the synchronizer token bound to the application's session, the pre-session cookie,
//! per-response masking and the bearer exemption have no well-kept crate. The primitives are
//! RustCrypto's `subtle` (constant-time comparison), `base64` and `form_urlencoded`.
//!
//! # Security
//!
//! Assumptions:
//!
//! - The session layer runs before this one, inserts the secret of the *current* session and
//!   regenerates it whenever the session ID changes (sign-in, privilege change), so a token
//!   learned before sign-in is worthless after it. Pages rendered before such a change carry a
//!   stale token and their forms get a `403`.
//! - A request with a bearer credential is never authenticated by its cookies: the exemption
//!   is only safe because such a request acts as the bearer's owner, whom an attacker cannot
//!   make a victim's browser impersonate.
//! - Handlers never change state on a safe method; those requests are not checked.
//! - `allowed_origins` holds the public origin exactly as browsers send it
//!   (`https://gate.example`), also behind a TLS-terminating proxy where the server itself
//!   sees plain HTTP.
//! - Secrets and masks come from `rand`: the secret straight from the operating system's
//!   generator, each mask from the thread-local CSPRNG seeded and reseeded by it. The unmasked
//!   token is compared with the secret in constant time; only the token's length, which is
//!   public, decides early.
//!
//! Masking changes the token's bytes in every response, so compression side channels on the
//! page (BREACH) cannot recover it byte by byte across responses.
//!
//! The pre-session check is a *double submit*: the cookie is `HttpOnly` (scripts never read
//! it), and the token travels in the page. It holds as long as an attacker cannot write the
//! victim's cookie. The `__Host-` prefix with `secure_cookie` forbids a `Domain` attribute, so a
//! sibling or parent subdomain cannot plant one; **without `secure_cookie` (development over
//! HTTP) a network attacker or a hostile subdomain can set the cookie and then forge a matching
//! token**; the `Origin` check is then the only defence. `SameSite=Lax` also keeps the cookie
//! off cross-site `POST`s.
//!
//! # Not covered
//!
//! - Cross-site scripting: a script running in the page reads the token like the page does.
//! - WebSocket upgrades and any other state change over `GET`: check `Origin` in the handler.
//! - Caching: a page that carries a token must not be stored by a shared cache (send
//!   `Cache-Control: no-store` or `private`), or one visitor's token reaches another.
//! - Tokens do not expire on their own: they live as long as the secret (the session, or the
//!   browser session for the pre-session cookie).
//! - A secret is wiped from memory when dropped ([`CsrfSecret`] is `ZeroizeOnDrop`), and so are
//!   the buffers that hold it unmasked while a token is made or checked. Copies the application
//!   keeps (a session's stored bytes) are its own to wipe.
//!
//! # Deployment caveat
//!
//! Install the layer inside the session layer (which must insert [`CsrfSecret`] first) and
//! outside the routes; without a session layer every request falls back to the pre-session
//! cookie. A proxy that strips `Origin` and `Sec-Fetch-Site` leaves the token as the only
//! check. The 403 and 413 answers are [`Problem`]s carried in the response extensions, so the
//! application's error rendering can turn them into an HTML page for browsers.

use std::{
    error::Error as StdError,
    fmt,
    future::Future,
    pin::Pin,
    sync::{Arc, OnceLock},
    task::{Context, Poll, ready},
};

use axum::{
    body::Body,
    extract::{FromRequestParts, OptionalFromRequestParts},
    response::{IntoResponse, Response},
};
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use futures_util::future::BoxFuture;
use http::{HeaderMap, HeaderValue, Method, Request, StatusCode, header, request::Parts};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use pin_project_lite::pin_project;
use rand::{RngCore, rngs::OsRng};
use subtle::ConstantTimeEq;
use tower::{Layer, Service};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::{cors::CorsPolicy, error::Error, problem::Problem};

/// The pre-session cookie's name with [`CsrfConfig::secure_cookie`].
const SECURE_COOKIE_NAME: &str = "__Host-gatehouse-csrf";
/// The pre-session cookie's name without [`CsrfConfig::secure_cookie`].
const COOKIE_NAME: &str = "gatehouse-csrf";
/// The form field carrying the token.
const FORM_FIELD: &str = "csrf_token";
/// The headers carrying the token, in the order they are looked at.
const TOKEN_HEADERS: [&str; 2] = ["x-csrf-token", "x-csrftoken"];

const SECRET_LEN: usize = 32;
/// A decoded token: a 32-byte mask and the 32-byte masked secret.
const TOKEN_LEN: usize = 2 * SECRET_LEN;
/// The length of a base64url (unpadded) encoded secret.
const ENCODED_SECRET_LEN: usize = 43;
/// The length of a base64url (unpadded) encoded token.
const ENCODED_TOKEN_LEN: usize = 86;

const DETAIL_CROSS_ORIGIN: &str = "cross-origin request refused";
const DETAIL_TOKEN: &str = "missing or invalid CSRF token";

/// The secret a session's CSRF tokens are derived from: 32 random bytes.
///
/// The application's session layer stores one per session, regenerates it whenever the
/// session ID changes, and inserts the current one into the request extensions before
/// [`CsrfLayer`] runs. Its `Debug` output is redacted, and its bytes are wiped when it is
/// dropped.
#[derive(Clone)]
pub struct CsrfSecret([u8; SECRET_LEN]);

impl Drop for CsrfSecret {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl ZeroizeOnDrop for CsrfSecret {}

impl CsrfSecret {
    /// A new secret from the operating system's random number generator.
    pub fn generate() -> Self {
        let mut bytes = [0u8; SECRET_LEN];
        // Once per session, not per request: the system call is worth not depending on the
        // state of a userspace generator.
        OsRng.fill_bytes(&mut bytes);
        Self(bytes)
    }

    /// The secret with these bytes, as stored with a session.
    pub fn from_bytes(bytes: [u8; SECRET_LEN]) -> Self {
        Self(bytes)
    }

    /// The bytes, for storing with the session.
    pub fn as_bytes(&self) -> &[u8; SECRET_LEN] {
        &self.0
    }

    /// A new token for this secret, masked with fresh randomness (computed on first use).
    pub fn token(&self) -> CsrfToken {
        CsrfToken::new(self.clone())
    }

    /// Whether `token` is a token of this secret (under any mask); compares in constant time.
    pub fn verify(&self, token: &str) -> bool {
        if token.len() != ENCODED_TOKEN_LEN {
            return false;
        }
        // `decode_slice` wants room for its estimate (3 bytes per 4 characters, rounded up).
        let mut decoded = Zeroizing::new([0u8; ENCODED_TOKEN_LEN.div_ceil(4) * 3]);
        let Ok(TOKEN_LEN) = URL_SAFE_NO_PAD.decode_slice(token, &mut *decoded) else {
            return false;
        };
        let (mask, masked) = decoded[..TOKEN_LEN].split_at(SECRET_LEN);
        let mut unmasked = Zeroizing::new([0u8; SECRET_LEN]);
        for ((out, m), x) in unmasked.iter_mut().zip(mask).zip(masked) {
            *out = m ^ x;
        }
        unmasked.ct_eq(&self.0).into()
    }

    /// `base64url(mask ‖ (mask XOR secret))` with a fresh random mask.
    fn mask(&self) -> String {
        let mut token = Zeroizing::new([0u8; TOKEN_LEN]);
        let (mask, masked) = token.split_at_mut(SECRET_LEN);
        rand::thread_rng().fill_bytes(mask);
        for ((out, m), s) in masked.iter_mut().zip(mask.iter()).zip(&self.0) {
            *out = m ^ s;
        }
        URL_SAFE_NO_PAD.encode(&token[..])
    }

    /// The secret in a cookie value, if it is exactly a base64url-encoded 32-byte secret.
    fn from_cookie_value(value: &[u8]) -> Option<Self> {
        if value.len() != ENCODED_SECRET_LEN {
            return None;
        }
        let mut decoded = Zeroizing::new([0u8; ENCODED_SECRET_LEN.div_ceil(4) * 3]);
        let len = URL_SAFE_NO_PAD.decode_slice(value, &mut *decoded).ok()?;
        let mut secret = Self([0; SECRET_LEN]);
        secret
            .0
            .copy_from_slice(decoded.get(..len).filter(|d| d.len() == SECRET_LEN)?);
        Some(secret)
    }
}

impl fmt::Debug for CsrfSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CsrfSecret([redacted])")
    }
}

/// The CSRF token for the current response, for the `csrf_token` form field or the
/// `X-CSRF-Token` header.
///
/// Found in the request extensions once [`CsrfLayer`] has let the request through (except for
/// bearer-exempt requests, which carry [`CsrfExempt`] instead). As an extractor it fails with a
/// 500 [`Problem`] when there is none; `Option<CsrfToken>` never fails.
///
/// The token is masked when first displayed; clones share it, so every form of one response
/// carries the same string. Its `Debug` output is redacted.
#[derive(Clone)]
pub struct CsrfToken(Arc<TokenCell>);

struct TokenCell {
    secret: CsrfSecret,
    masked: OnceLock<String>,
}

impl CsrfToken {
    fn new(secret: CsrfSecret) -> Self {
        Self(Arc::new(TokenCell {
            secret,
            masked: OnceLock::new(),
        }))
    }

    /// The token, base64url-encoded without padding.
    pub fn as_str(&self) -> &str {
        self.0.masked.get_or_init(|| self.0.secret.mask())
    }
}

impl fmt::Display for CsrfToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for CsrfToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CsrfToken([redacted])")
    }
}

impl<S: Send + Sync> FromRequestParts<S> for CsrfToken {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts.extensions.get::<Self>().cloned().ok_or_else(|| {
            tracing::error!(
                "CsrfToken extractor used without CsrfLayer, or on a bearer-exempt request"
            );
            Problem::new(StatusCode::INTERNAL_SERVER_ERROR)
                .with_detail("The CSRF layer is not installed.")
        })
    }
}

impl<S: Send + Sync> OptionalFromRequestParts<S> for CsrfToken {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        _state: &S,
    ) -> Result<Option<Self>, Self::Rejection> {
        Ok(parts.extensions.get::<Self>().cloned())
    }
}

/// Marks a request with an unsafe method that skipped the CSRF checks because it carries a
/// bearer credential (`Authorization: Bearer …`). For tests and logging.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CsrfExempt;

/// Settings of [`CsrfLayer`].
#[derive(Clone, Debug)]
pub struct CsrfConfig {
    /// The origins whose unsafe requests are accepted, exactly as browsers send them
    /// (`https://gate.example`): usually just the public URL's origin.
    pub allowed_origins: Vec<String>,
    /// Name the pre-session cookie `__Host-gatehouse-csrf` and mark it `Secure` (every
    /// deployment served over HTTPS).
    pub secure_cookie: bool,
    /// The largest `application/x-www-form-urlencoded` body read to find the token, in bytes.
    pub form_body_limit: usize,
}

/// What every service of one layer shares.
#[derive(Debug)]
struct Shared {
    allowed_origins: Vec<String>,
    cookie_name: &'static str,
    secure_cookie: bool,
    form_body_limit: usize,
    session_only: bool,
}

impl Shared {
    /// The `Set-Cookie` value storing a pre-session `secret`.
    fn set_cookie(&self, secret: &CsrfSecret) -> HeaderValue {
        let secure = if self.secure_cookie { "; Secure" } else { "" };
        let value = format!(
            "{}={}; Path=/; HttpOnly; SameSite=Lax{secure}",
            self.cookie_name,
            URL_SAFE_NO_PAD.encode(secret.as_bytes()),
        );
        // A constant name and base64url: always a valid header value.
        HeaderValue::try_from(value).expect("the cookie is visible ASCII")
    }

    /// The pre-session secret in the request's cookies: the first well-formed one.
    fn cookie_secret(&self, headers: &HeaderMap) -> Option<CsrfSecret> {
        // One parser for every layer (`cookies`): see its Security section.
        crate::cookies::values(headers, self.cookie_name).find_map(CsrfSecret::from_cookie_value)
    }
}

/// Refuses cross-site unsafe requests: see the [module docs](self).
#[derive(Clone, Debug)]
pub struct CsrfLayer {
    shared: Arc<Shared>,
}

impl CsrfLayer {
    /// Creates the layer.
    ///
    /// # Panics
    ///
    /// When an allowed origin is invalid (see [`try_new`](Self::try_new)): a startup
    /// configuration error.
    pub fn new(config: CsrfConfig) -> Self {
        Self::try_new(config).unwrap_or_else(|err| panic!("{err}"))
    }

    /// Creates the layer.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidCsrfOrigin`] when an allowed origin is `*`, `null`, or not
    /// `scheme://host[:port]` in the form browsers send (the rules of [`CorsPolicy::new`]):
    /// such an entry could never match, or would match any site.
    pub fn try_new(config: CsrfConfig) -> Result<Self, Error> {
        // The CORS policy's validation is exactly the one wanted here; with credentials it
        // also refuses `*`.
        let allowed_origins = CorsPolicy::new(&config.allowed_origins, true)
            .map_err(|err| match err {
                Error::InvalidOrigin(origin) => Error::InvalidCsrfOrigin(origin),
                Error::NullOrigin => Error::InvalidCsrfOrigin("null".to_owned()),
                Error::WildcardWithCredentials => Error::InvalidCsrfOrigin("*".to_owned()),
                other => other,
            })?
            .origins()
            .to_vec();
        Ok(Self {
            shared: Arc::new(Shared {
                allowed_origins,
                cookie_name: if config.secure_cookie {
                    SECURE_COOKIE_NAME
                } else {
                    COOKIE_NAME
                },
                secure_cookie: config.secure_cookie,
                form_body_limit: config.form_body_limit,
                session_only: false,
            }),
        })
    }

    /// The same layer, checking only requests that carry a session's [`CsrfSecret`]: those the
    /// application authenticated by a cookie. For a JSON API that also accepts bearer
    /// credentials and API keys: a request without a session acts for nobody by ambient
    /// authority (it carries its own credential, or none), so it passes without a token and no
    /// pre-session cookie is set. Cookie-authenticated unsafe requests must send the token in
    /// the `X-CSRF-Token` header and pass the `Origin` check, as forms do.
    pub fn session_only(self) -> Self {
        let shared = Shared {
            allowed_origins: self.shared.allowed_origins.clone(),
            cookie_name: self.shared.cookie_name,
            secure_cookie: self.shared.secure_cookie,
            form_body_limit: self.shared.form_body_limit,
            session_only: true,
        };
        Self {
            shared: Arc::new(shared),
        }
    }
}

impl<S> Layer<S> for CsrfLayer {
    type Service = CsrfService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        CsrfService {
            inner,
            shared: Arc::clone(&self.shared),
        }
    }
}

/// The service built by [`CsrfLayer`].
#[derive(Clone, Debug)]
pub struct CsrfService<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S> Service<Request<Body>> for CsrfService<S>
where
    S: Service<Request<Body>, Response = Response> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: 'static,
{
    type Response = Response;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, S::Error>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<Body>) -> Self::Future {
        let shared = &self.shared;
        let session_secret = req.extensions().get::<CsrfSecret>().cloned();

        if shared.session_only && session_secret.is_none() {
            return ResponseFuture::passed(self.inner.call(req), None);
        }

        if is_safe(req.method()) {
            let mut set_cookie = None;
            let secret = session_secret
                .or_else(|| shared.cookie_secret(req.headers()))
                .unwrap_or_else(|| {
                    let secret = CsrfSecret::generate();
                    set_cookie = Some(shared.set_cookie(&secret));
                    secret
                });
            req.extensions_mut().insert(CsrfToken::new(secret));
            return ResponseFuture::passed(self.inner.call(req), set_cookie);
        }

        if has_bearer_credential(req.headers()) {
            req.extensions_mut().insert(CsrfExempt);
            return ResponseFuture::passed(self.inner.call(req), None);
        }

        if let Err(failure) = check_origin(req.headers(), &shared.allowed_origins) {
            return ResponseFuture::refused(failure.refuse(req.headers()));
        }

        let Some(secret) = session_secret.or_else(|| shared.cookie_secret(req.headers())) else {
            return ResponseFuture::refused(Failure::NoSecret.refuse(req.headers()));
        };

        if let Some(token) = header_token(req.headers()) {
            if !secret.verify(token) {
                return ResponseFuture::refused(Failure::InvalidToken.refuse(req.headers()));
            }
            req.extensions_mut().insert(CsrfToken::new(secret));
            return ResponseFuture::passed(self.inner.call(req), None);
        }

        if !is_form(req.headers()) {
            return ResponseFuture::refused(Failure::MissingToken.refuse(req.headers()));
        }

        let limit = shared.form_body_limit;
        let declared = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|len| len > limit as u64) {
            return ResponseFuture::refused(too_large(limit));
        }

        // The inner service was made ready by `poll_ready`: take that one and leave a clone for
        // the next request (the usual tower pattern for calling from a future).
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        ResponseFuture::buffered(Box::pin(check_form(inner, req, secret, limit)))
    }
}

/// Reads a form body, checks its `csrf_token` field and hands the same bytes to `inner`.
async fn check_form<S>(
    mut inner: S,
    req: Request<Body>,
    secret: CsrfSecret,
    limit: usize,
) -> Result<Response, S::Error>
where
    S: Service<Request<Body>, Response = Response>,
{
    let (parts, body) = req.into_parts();
    let bytes = match Limited::new(body, limit).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(err) if is_length_limit(&*err) => return Ok(too_large(limit)),
        Err(_) => {
            return Ok(Problem::new(StatusCode::BAD_REQUEST)
                .with_detail("the request body could not be read")
                .into_response());
        }
    };
    let verified = match form_urlencoded::parse(&bytes).find(|(name, _)| name == FORM_FIELD) {
        Some((_, token)) if secret.verify(&token) => Ok(()),
        Some(_) => Err(Failure::InvalidToken),
        None => Err(Failure::MissingToken),
    };
    if let Err(failure) = verified {
        return Ok(failure.refuse(&parts.headers));
    }
    let mut req = Request::from_parts(parts, Body::from(bytes));
    req.extensions_mut().insert(CsrfToken::new(secret));
    inner.call(req).await
}

fn is_safe(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
    )
}

/// Whether the request carries `Authorization: Bearer <credentials>` (the scheme compared
/// case-insensitively, as RFC 9110 says). `Basic` and other schemes do not count: browsers
/// replay those by themselves.
fn has_bearer_credential(headers: &HeaderMap) -> bool {
    crate::cookies::bearer(headers).is_some()
}

/// Checks `Origin`, or without it `Sec-Fetch-Site`; passes when neither is sent.
fn check_origin(headers: &HeaderMap, allowed: &[String]) -> Result<(), Failure> {
    let mut origins = headers.get_all(header::ORIGIN).iter();
    if let Some(origin) = origins.next() {
        // Browsers send one; two means something between them and us is confused.
        if origins.next().is_some() {
            return Err(Failure::OriginNotAllowed);
        }
        let origin = origin.as_bytes();
        if origin == b"null" || !allowed.iter().any(|a| a.as_bytes() == origin) {
            return Err(Failure::OriginNotAllowed);
        }
        return Ok(());
    }
    match headers.get("sec-fetch-site") {
        None => Ok(()),
        Some(site) if site == "same-origin" || site == "none" => Ok(()),
        Some(_) => Err(Failure::CrossSiteFetch),
    }
}

/// The token from the first of [`TOKEN_HEADERS`] present; `""` for a value that is not ASCII,
/// which then fails verification.
fn header_token(headers: &HeaderMap) -> Option<&str> {
    TOKEN_HEADERS
        .iter()
        .find_map(|name| headers.get(*name))
        .map(|value| value.to_str().unwrap_or(""))
}

/// Whether the body is `application/x-www-form-urlencoded` (parameters such as `charset`
/// ignored).
fn is_form(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .is_some_and(|essence| {
            essence
                .trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        })
}

/// Whether reading failed because a body limit was reached, here or in an outer layer whose
/// error the body wraps.
fn is_length_limit(err: &(dyn StdError + 'static)) -> bool {
    let mut current = Some(err);
    while let Some(err) = current {
        if err.is::<LengthLimitError>() {
            return true;
        }
        current = err.source();
    }
    false
}

fn too_large(limit: usize) -> Response {
    Problem::new(StatusCode::PAYLOAD_TOO_LARGE)
        .with_detail(format!(
            "the form is larger than the {limit} bytes this endpoint accepts"
        ))
        .into_response()
}

/// Why an unsafe request was refused.
#[derive(Clone, Copy, Debug)]
enum Failure {
    /// `Origin` is not an allowed origin (or is `null`, or repeated).
    OriginNotAllowed,
    /// No `Origin`, and `Sec-Fetch-Site` is neither `same-origin` nor `none`.
    CrossSiteFetch,
    /// No session secret and no valid pre-session cookie to verify against.
    NoSecret,
    /// Neither header nor form field carries a token.
    MissingToken,
    /// The token does not verify against the secret.
    InvalidToken,
}

impl Failure {
    /// The stable `reason` field of the `csrf_failure` log event.
    fn reason(self) -> &'static str {
        match self {
            Self::OriginNotAllowed => "origin_not_allowed",
            Self::CrossSiteFetch => "cross_site_fetch",
            Self::NoSecret => "no_pre_session_cookie",
            Self::MissingToken => "missing_token",
            Self::InvalidToken => "invalid_token",
        }
    }

    /// Logs the failure and builds the 403.
    fn refuse(self, headers: &HeaderMap) -> Response {
        // The origin and fetch site are public and help find a misconfigured allowed origin;
        // the token is a credential and is never logged.
        tracing::warn!(
            event = "csrf_failure",
            reason = self.reason(),
            origin = ?headers.get(header::ORIGIN),
            sec_fetch_site = ?headers.get("sec-fetch-site"),
            "CSRF check failed",
        );
        let detail = match self {
            Self::OriginNotAllowed | Self::CrossSiteFetch => DETAIL_CROSS_ORIGIN,
            Self::NoSecret | Self::MissingToken | Self::InvalidToken => DETAIL_TOKEN,
        };
        Problem::new(StatusCode::FORBIDDEN)
            .with_title("Forbidden")
            .with_detail(detail)
            .into_response()
    }
}

pin_project! {
    /// The response future of [`CsrfService`].
    pub struct ResponseFuture<F, E> {
        #[pin]
        kind: Kind<F, E>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F, E> {
        /// Checked without reading the body; `set_cookie` stores a new pre-session secret.
        Passed {
            #[pin]
            future: F,
            set_cookie: Option<HeaderValue>,
        },
        Refused {
            response: Option<Response>,
        },
        /// Reading a form body, then calling the inner service.
        Buffered {
            future: BoxFuture<'static, Result<Response, E>>,
        },
    }
}

impl<F, E> ResponseFuture<F, E> {
    fn passed(future: F, set_cookie: Option<HeaderValue>) -> Self {
        Self {
            kind: Kind::Passed { future, set_cookie },
        }
    }

    fn refused(response: Response) -> Self {
        Self {
            kind: Kind::Refused {
                response: Some(response),
            },
        }
    }

    fn buffered(future: BoxFuture<'static, Result<Response, E>>) -> Self {
        Self {
            kind: Kind::Buffered { future },
        }
    }
}

impl<F, E> fmt::Debug for ResponseFuture<F, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl<F, E> Future for ResponseFuture<F, E>
where
    F: Future<Output = Result<Response, E>>,
{
    type Output = Result<Response, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Passed { future, set_cookie } => {
                let mut response = ready!(future.poll(cx))?;
                if let Some(cookie) = set_cookie.take() {
                    // Appended: the application's own cookies on this response must stay.
                    response.headers_mut().append(header::SET_COOKIE, cookie);
                }
                Poll::Ready(Ok(response))
            }
            KindProj::Refused { response } => Poll::Ready(Ok(response
                .take()
                .expect("ResponseFuture polled after completion"))),
            KindProj::Buffered { future } => future.as_mut().poll(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use axum::{
        Extension, Router,
        extract::State,
        routing::{get, post},
    };
    use bytes::Bytes;
    use serde_json::Value;
    use tower::ServiceExt;

    use super::*;
    use crate::problem::PROBLEM_JSON;

    const PUBLIC_ORIGIN: &str = "https://gate.example";

    fn config() -> CsrfConfig {
        CsrfConfig {
            allowed_origins: vec![PUBLIC_ORIGIN.to_owned()],
            secure_cookie: false,
            form_body_limit: 1024,
        }
    }

    /// A router behind the layer: `GET /` answers with its token, any unsafe method on `/`
    /// echoes the body it received (with `x-csrf-exempt: yes` when marked exempt) and counts
    /// its calls.
    struct Harness {
        router: Router,
        calls: Arc<AtomicUsize>,
    }

    impl Harness {
        fn new(config: CsrfConfig) -> Self {
            Self::with_session(config, None)
        }

        /// `session` stands in for the application's session layer, which runs first.
        fn with_session(config: CsrfConfig, session: Option<CsrfSecret>) -> Self {
            let calls = Arc::new(AtomicUsize::new(0));
            let router = Router::new()
                .route(
                    "/",
                    get(|token: CsrfToken| async move { token.to_string() })
                        .post(echo)
                        .put(echo)
                        .patch(echo)
                        .delete(echo),
                )
                .route(
                    "/token-of-post",
                    post(|token: CsrfToken| async move { token.to_string() }),
                )
                .with_state(Arc::clone(&calls))
                .layer(CsrfLayer::new(config));
            let router = match session {
                Some(secret) => router.layer(Extension(secret)),
                None => router,
            };
            Self { router, calls }
        }

        async fn send(&self, req: Request<Body>) -> Response {
            self.router.clone().oneshot(req).await.unwrap()
        }

        /// Loads the page: the pre-session cookie (`name=value`) it set, if any, and its token.
        async fn page(&self, cookie: Option<&str>) -> (Option<String>, String) {
            let mut req = Request::get("/");
            if let Some(cookie) = cookie {
                req = req.header(header::COOKIE, cookie);
            }
            let response = self.send(req.body(Body::empty()).unwrap()).await;
            assert_eq!(response.status(), StatusCode::OK);
            let set_cookie = response
                .headers()
                .get(header::SET_COOKIE)
                .map(|v| v.to_str().unwrap().split(';').next().unwrap().to_owned());
            (set_cookie, body_text(response).await)
        }

        /// A fresh visitor's cookie and token.
        async fn visitor(&self) -> (String, String) {
            let (cookie, token) = self.page(None).await;
            (cookie.unwrap(), token)
        }

        fn handler_calls(&self) -> usize {
            self.calls.load(Ordering::SeqCst)
        }
    }

    async fn echo(
        State(calls): State<Arc<AtomicUsize>>,
        exempt: Option<Extension<CsrfExempt>>,
        body: Bytes,
    ) -> Response {
        calls.fetch_add(1, Ordering::SeqCst);
        let mut response = body.into_response();
        if exempt.is_some() {
            response
                .headers_mut()
                .insert("x-csrf-exempt", HeaderValue::from_static("yes"));
        }
        response
    }

    async fn body_text(response: Response) -> String {
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    fn post_with_cookie(cookie: &str) -> http::request::Builder {
        Request::post("/").header(header::COOKIE, cookie)
    }

    /// The secret held by a pre-session cookie given as `name=value`.
    fn secret_of(cookie: &str) -> CsrfSecret {
        let (_, value) = cookie.split_once('=').unwrap();
        CsrfSecret::from_bytes(URL_SAFE_NO_PAD.decode(value).unwrap().try_into().unwrap())
    }

    /// Asserts a 403 problem with `detail`, and that the handler never ran.
    async fn assert_forbidden(harness: &Harness, response: Response, detail: &str) {
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
        assert_eq!(response.headers()[header::CONTENT_TYPE], PROBLEM_JSON);
        let json: Value = serde_json::from_str(&body_text(response).await).unwrap();
        assert_eq!(json["title"], "Forbidden");
        assert_eq!(json["detail"], detail);
        assert_eq!(harness.handler_calls(), 0, "the handler ran");
    }

    #[tokio::test]
    async fn get_yields_a_token_and_sets_the_pre_session_cookie() {
        let harness = Harness::new(config());

        let response = harness
            .send(Request::get("/").body(Body::empty()).unwrap())
            .await;

        assert_eq!(response.status(), StatusCode::OK);
        let set_cookie = response.headers()[header::SET_COOKIE].to_str().unwrap();
        let (pair, attributes) = set_cookie.split_once("; ").unwrap();
        assert_eq!(attributes, "Path=/; HttpOnly; SameSite=Lax");
        assert!(pair.starts_with("gatehouse-csrf="), "{pair}");
        let secret = secret_of(pair);
        let token = body_text(response).await;
        assert_eq!(token.len(), ENCODED_TOKEN_LEN);
        assert!(secret.verify(&token));
    }

    #[tokio::test]
    async fn secure_config_sets_a_host_prefixed_secure_cookie() {
        let harness = Harness::new(CsrfConfig {
            secure_cookie: true,
            ..config()
        });

        let response = harness
            .send(Request::get("/").body(Body::empty()).unwrap())
            .await;

        let set_cookie = response.headers()[header::SET_COOKIE].to_str().unwrap();
        assert!(
            set_cookie.starts_with("__Host-gatehouse-csrf="),
            "{set_cookie}"
        );
        assert!(
            set_cookie.ends_with("; Path=/; HttpOnly; SameSite=Lax; Secure"),
            "{set_cookie}"
        );
    }

    #[tokio::test]
    async fn secure_config_reads_only_the_host_prefixed_cookie() {
        let harness = Harness::new(CsrfConfig {
            secure_cookie: true,
            ..config()
        });
        let (cookie, token) = harness.visitor().await;
        let unprefixed = cookie.trim_start_matches("__Host-");

        let accepted = harness
            .send(
                post_with_cookie(&cookie)
                    .header("x-csrf-token", &token)
                    .body(Body::empty())
                    .unwrap(),
            )
            .await;
        let refused = harness
            .send(
                post_with_cookie(unprefixed)
                    .header("x-csrf-token", &token)
                    .body(Body::empty())
                    .unwrap(),
            )
            .await;

        assert_eq!(accepted.status(), StatusCode::OK);
        assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    }

    #[tokio::test]
    async fn a_valid_cookie_is_kept_and_a_malformed_one_replaced() {
        let harness = Harness::new(config());
        let (cookie, _) = harness.visitor().await;

        let (kept, _) = harness
            .page(Some(&format!("theme=dark; {cookie}; lang=fr")))
            .await;
        let (replaced, _) = harness.page(Some("gatehouse-csrf=not-a-secret")).await;

        assert_eq!(kept, None);
        let replaced = replaced.unwrap();
        assert!(replaced.starts_with("gatehouse-csrf="));
        assert_ne!(replaced, cookie);
    }

    #[tokio::test]
    async fn the_cookie_is_found_next_to_a_cookie_with_non_ascii_bytes() {
        let harness = Harness::new(config());
        let (cookie, token) = harness.visitor().await;
        let mut header_bytes = b"name=caf\xc3\xa9; ".to_vec();
        header_bytes.extend_from_slice(cookie.as_bytes());

        let response = harness
            .send(
                Request::post("/")
                    .header(
                        header::COOKIE,
                        HeaderValue::from_bytes(&header_bytes).unwrap(),
                    )
                    .header("x-csrf-token", &token)
                    .body(Body::empty())
                    .unwrap(),
            )
            .await;

        assert_eq!(response.status(), StatusCode::OK);
    }

    #[tokio::test]
    async fn post_with_the_cookie_and_the_token_in_either_header_passes() {
        for header_name in ["x-csrf-token", "X-CSRFToken"] {
            let harness = Harness::new(config());
            let (cookie, token) = harness.visitor().await;

            let response = harness
                .send(
                    post_with_cookie(&cookie)
                        .header(header::ORIGIN, PUBLIC_ORIGIN)
                        .header(header_name, &token)
                        .body(Body::from("payload"))
                        .unwrap(),
                )
                .await;

            assert_eq!(response.status(), StatusCode::OK, "{header_name}");
            assert_eq!(body_text(response).await, "payload");
            assert_eq!(harness.handler_calls(), 1);
        }
    }

    #[tokio::test]
    async fn post_with_the_token_in_the_form_passes_and_the_handler_sees_the_whole_form() {
        let harness = Harness::new(config());
        let (cookie, token) = harness.visitor().await;
        let body = format!("email=a%40b.example&csrf_token={token}&next=%2Fitems");

        let response = harness
            .send(
                post_with_cookie(&cookie)
                    .header(header::ORIGIN, PUBLIC_ORIGIN)
                    .header(
                        header::CONTENT_TYPE,
                        "application/x-www-form-urlencoded; charset=UTF-8",
                    )
                    .header(header::CONTENT_LENGTH, body.len())
                    .body(Body::from(body.clone()))
                    .unwrap(),
            )
            .await;

        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(body_text(response).await, body);
    }

    #[tokio::test]
    async fn a_request_that_passed_carries_a_token_for_the_next_form() {
        let harness = Harness::new(config());
        let (cookie, token) = harness.visitor().await;

        let response = harness
            .send(
                Request::post("/token-of-post")
                    .header(header::COOKIE, &cookie)
                    .header("x-csrf-token", &token)
                    .body(Body::empty())
                    .unwrap(),
            )
            .await;

        assert_eq!(response.status(), StatusCode::OK);
        let next = body_text(response).await;
        assert_ne!(next, token);
        assert!(secret_of(&cookie).verify(&next));
    }

    #[tokio::test]
    async fn every_unsafe_method_without_a_token_is_forbidden() {
        for method in [Method::POST, Method::PUT, Method::PATCH, Method::DELETE] {
            let harness = Harness::new(config());
            let (cookie, _) = harness.visitor().await;

            let response = harness
                .send(
                    Request::builder()
                        .method(method.clone())
                        .uri("/")
                        .header(header::COOKIE, &cookie)
                        .header(header::ORIGIN, PUBLIC_ORIGIN)
                        .body(Body::empty())
                        .unwrap(),
                )
                .await;

            assert_forbidden(&harness, response, DETAIL_TOKEN).await;
        }
    }

    #[tokio::test]
    async fn a_form_without_the_token_field_is_forbidden() {
        let harness = Harness::new(config());
        let (cookie, _) = harness.visitor().await;

        let response = harness
            .send(
                post_with_cookie(&cookie)
                    .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                    .body(Body::from("email=a%40b.example".to_owned()))
                    .unwrap(),
            )
            .await;

        assert_forbidden(&harness, response, DETAIL_TOKEN).await;
    }

    #[tokio::test]
    async fn a_wrong_token_is_forbidden_and_never_echoed() {
        let harness = Harness::new(config());
        let (cookie, token) = harness.visitor().await;
        let mut tampered = token.clone().into_bytes();
        // Flip a bit in the masked half: same length, same alphabet, wrong secret.
        tampered[60] = if tampered[60] == b'A' { b'B' } else { b'A' };
        let tampered = String::from_utf8(tampered).unwrap();

        for wrong in [tampered.as_str(), "", "abc", &"A".repeat(ENCODED_TOKEN_LEN)] {
            let response = harness
                .send(
                    post_with_cookie(&cookie)
                        .header("x-csrf-token", wrong)
                        .body(Body::empty())
                        .unwrap(),
                )
                .await;

            assert_eq!(response.status(), StatusCode::FORBIDDEN, "{wrong:?}");
            let body = body_text(response).await;
            assert!(body.contains(DETAIL_TOKEN));
            assert!(wrong.is_empty() || !body.contains(wrong));
        }
        assert_eq!(harness.handler_calls(), 0);
    }

    #[tokio::test]
    async fn a_wrong_token_in_the_form_is_forbidden() {
        let harness = Harness::new(config());
        let (cookie, _) = harness.visitor().await;
        let other = CsrfSecret::generate().token();

        let response = harness
            .send(
                post_with_cookie(&cookie)
                    .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                    .body(Body::from(format!("csrf_token={other}")))
                    .unwrap(),
            )
            .await;

        assert_forbidden(&harness, response, DETAIL_TOKEN).await;
    }

    #[tokio::test]
    async fn a_token_of_another_secret_is_forbidden() {
        let harness = Harness::new(config());
        let (cookie, _) = harness.visitor().await;
        let (_, other_visitors_token) = harness.visitor().await;

        let response = harness
            .send(
                post_with_cookie(&cookie)
                    .header("x-csrf-token", &other_visitors_token)
                    .body(Body::empty())
                    .unwrap(),
            )
            .await;

        assert_forbidden(&harness, response, DETAIL_TOKEN).await;
    }

    #[tokio::test]
    async fn a_token_without_its_cookie_is_forbidden() {
        let harness = Harness::new(config());
        let (_, token) = harness.visitor().await;

        let response = harness
            .send(
                Request::post("/")
                    .header("x-csrf-token", &token)
                    .body(Body::empty())
                    .unwrap(),
            )
            .await;

        assert_forbidden(&harness, response, DETAIL_TOKEN).await;
    }

    #[tokio::test]
    async fn tokens_are_masked_differently_each_time_and_all_verify() {
        let harness = Harness::new(config());
        let (cookie, first) = harness.visitor().await;
        let (_, second) = harness.page(Some(&cookie)).await;

        assert_ne!(first, second);
        for token in [&first, &second] {
            let response = harness
                .send(
                    post_with_cookie(&cookie)
                        .header("x-csrf-token", token)
                        .body(Body::empty())
                        .unwrap(),
                )
                .await;
            assert_eq!(response.status(), StatusCode::OK);
        }
    }

    #[test]
    fn a_secret_is_wiped_when_dropped() {
        // A compile-time check: the secret is a type that zeroizes itself on drop.
        fn wiped_on_drop<T: ZeroizeOnDrop>(_: &T) {}
        wiped_on_drop(&CsrfSecret::generate());
    }

    #[test]
    fn cookie_values_of_the_wrong_length_are_no_secret() {
        let secret = CsrfSecret::generate();
        let encoded = URL_SAFE_NO_PAD.encode(secret.as_bytes());
        let parsed = CsrfSecret::from_cookie_value(encoded.as_bytes()).unwrap();
        assert_eq!(parsed.as_bytes(), secret.as_bytes());
        for bad in ["", "abc", &encoded[..42], &format!("{encoded}A")] {
            assert!(
                CsrfSecret::from_cookie_value(bad.as_bytes()).is_none(),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn one_token_is_stable_and_each_new_token_is_masked_anew() {
        let secret = CsrfSecret::generate();
        let token = secret.token();
        let shared = token.clone();

        assert_eq!(token.as_str(), shared.as_str());
        assert_eq!(token.as_str(), token.to_string());
        let other = secret.token();
        assert_ne!(token.as_str(), other.as_str());
        assert!(secret.verify(token.as_str()));
        assert!(secret.verify(other.as_str()));
        assert!(!CsrfSecret::generate().verify(token.as_str()));
    }

    #[tokio::test]
    async fn a_cross_site_origin_is_forbidden_even_with_a_valid_token() {
        for origin in [
            "https://evil.example",
            "https://gate.example.evil.example",
            "http://gate.example",
            "https://gate.example:8443",
        ] {
            let harness = Harness::new(config());
            let (cookie, token) = harness.visitor().await;

            let response = harness
                .send(
                    post_with_cookie(&cookie)
                        .header(header::ORIGIN, origin)
                        .header("x-csrf-token", &token)
                        .body(Body::empty())
                        .unwrap(),
                )
                .await;

            assert_forbidden(&harness, response, DETAIL_CROSS_ORIGIN).await;
        }
    }

    #[tokio::test]
    async fn a_null_origin_is_forbidden() {
        let harness = Harness::new(config());
        let (cookie, token) = harness.visitor().await;

        let response = harness
            .send(
                post_with_cookie(&cookie)
                    .header(header::ORIGIN, "null")
                    .header("x-csrf-token", &token)
                    .body(Body::empty())
                    .unwrap(),
            )
            .await;

        assert_forbidden(&harness, response, DETAIL_CROSS_ORIGIN).await;
    }

    #[tokio::test]
    async fn a_repeated_origin_header_is_forbidden() {
        let harness = Harness::new(config());
        let (cookie, token) = harness.visitor().await;

        let response = harness
            .send(
                post_with_cookie(&cookie)
                    .header(header::ORIGIN, PUBLIC_ORIGIN)
                    .header(header::ORIGIN, PUBLIC_ORIGIN)
                    .header("x-csrf-token", &token)
                    .body(Body::empty())
                    .unwrap(),
            )
            .await;

        assert_forbidden(&harness, response, DETAIL_CROSS_ORIGIN).await;
    }

    #[tokio::test]
    async fn without_origin_only_a_same_origin_or_user_initiated_fetch_passes() {
        for (site, expected) in [
            ("cross-site", StatusCode::FORBIDDEN),
            ("same-site", StatusCode::FORBIDDEN),
            ("same-origin", StatusCode::OK),
            ("none", StatusCode::OK),
        ] {
            let harness = Harness::new(config());
            let (cookie, token) = harness.visitor().await;

            let response = harness
                .send(
                    post_with_cookie(&cookie)
                        .header("sec-fetch-site", site)
                        .header("x-csrf-token", &token)
                        .body(Body::empty())
                        .unwrap(),
                )
                .await;

            assert_eq!(response.status(), expected, "{site}");
        }
    }

    #[tokio::test]
    async fn sec_fetch_site_cross_site_without_origin_is_refused_as_cross_origin() {
        let harness = Harness::new(config());
        let (cookie, token) = harness.visitor().await;

        let response = harness
            .send(
                post_with_cookie(&cookie)
                    .header("sec-fetch-site", "cross-site")
                    .header("x-csrf-token", &token)
                    .body(Body::empty())
                    .unwrap(),
            )
            .await;

        assert_forbidden(&harness, response, DETAIL_CROSS_ORIGIN).await;
    }

    #[tokio::test]
    async fn session_only_checks_cookie_sessions_and_lets_the_rest_through() {
        let api = |session: Option<CsrfSecret>| {
            let router = Router::new()
                .route("/", post(|| async { "ran" }))
                .layer(CsrfLayer::new(config()).session_only());
            match session {
                Some(secret) => router.layer(Extension(secret)),
                None => router,
            }
        };
        let post = |token: Option<&str>| {
            let mut req = Request::post("/").header(header::CONTENT_TYPE, "application/json");
            if let Some(token) = token {
                req = req.header("x-csrf-token", token);
            }
            req.body(Body::from("{}")).unwrap()
        };
        // No session: nothing to forge, no token asked, no cookie set.
        let response = api(None).oneshot(post(None)).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert!(response.headers().get(header::SET_COOKIE).is_none());
        // A cookie session: the token is required, and works.
        let secret = CsrfSecret::generate();
        let response = api(Some(secret.clone())).oneshot(post(None)).await.unwrap();
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
        let token = secret.token().to_string();
        let response = api(Some(secret)).oneshot(post(Some(&token))).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }

    #[tokio::test]
    async fn a_bearer_request_is_exempt_and_marked() {
        let harness = Harness::new(config());

        let response = harness
            .send(
                Request::post("/")
                    .header(header::AUTHORIZATION, "bearer eyJhbGciOiJFZERTQSJ9.x.y")
                    .header(header::ORIGIN, "https://cli.example")
                    .body(Body::from("{}"))
                    .unwrap(),
            )
            .await;

        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()["x-csrf-exempt"], "yes");
        assert!(response.headers().get(header::SET_COOKIE).is_none());
    }

    #[tokio::test]
    async fn other_authorization_schemes_and_empty_bearers_are_not_exempt() {
        for authorization in ["Basic dXNlcjpwYXNz", "Bearer ", "Bearer    ", "Bearerx abc"] {
            let harness = Harness::new(config());
            let (cookie, _) = harness.visitor().await;

            let response = harness
                .send(
                    post_with_cookie(&cookie)
                        .header(header::AUTHORIZATION, authorization)
                        .body(Body::empty())
                        .unwrap(),
                )
                .await;

            assert_forbidden(&harness, response, DETAIL_TOKEN).await;
        }
    }

    #[tokio::test]
    async fn with_a_session_its_secret_is_used_and_not_the_cookie() {
        let session = CsrfSecret::generate();
        let harness = Harness::with_session(config(), Some(session.clone()));
        let pre_session = CsrfSecret::generate();
        let pre_session_cookie = format!(
            "gatehouse-csrf={}",
            URL_SAFE_NO_PAD.encode(pre_session.as_bytes())
        );

        let (set_cookie, token) = harness.page(None).await;
        let with_session_token = harness
            .send(
                post_with_cookie(&pre_session_cookie)
                    .header("x-csrf-token", &token)
                    .body(Body::empty())
                    .unwrap(),
            )
            .await;
        let with_cookie_token = harness
            .send(
                post_with_cookie(&pre_session_cookie)
                    .header("x-csrf-token", pre_session.token().as_str())
                    .body(Body::empty())
                    .unwrap(),
            )
            .await;

        assert_eq!(set_cookie, None);
        assert!(session.verify(&token));
        assert_eq!(with_session_token.status(), StatusCode::OK);
        assert_eq!(with_cookie_token.status(), StatusCode::FORBIDDEN);
    }

    #[tokio::test]
    async fn a_declared_oversized_form_is_refused_before_the_handler() {
        let harness = Harness::new(config());
        let (cookie, token) = harness.visitor().await;
        let body = format!("csrf_token={token}&text={}", "a".repeat(1024));

        let response = harness
            .send(
                post_with_cookie(&cookie)
                    .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                    .header(header::CONTENT_LENGTH, body.len())
                    .body(Body::from(body))
                    .unwrap(),
            )
            .await;

        assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(response.headers()[header::CONTENT_TYPE], PROBLEM_JSON);
        assert_eq!(harness.handler_calls(), 0);
    }

    #[tokio::test]
    async fn a_streamed_oversized_form_is_cut_at_the_limit() {
        let harness = Harness::new(config());
        let (cookie, token) = harness.visitor().await;
        let chunks = futures_util::stream::iter(vec![
            Ok::<_, std::io::Error>(Bytes::from(format!("csrf_token={token}&text="))),
            Ok(Bytes::from("a".repeat(1024))),
        ]);

        let response = harness
            .send(
                post_with_cookie(&cookie)
                    .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                    .body(Body::from_stream(chunks))
                    .unwrap(),
            )
            .await;

        assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(harness.handler_calls(), 0);
    }

    #[tokio::test]
    async fn an_outer_body_limit_reached_while_reading_the_form_is_a_413() {
        let harness = Harness::new(config());
        let (cookie, token) = harness.visitor().await;
        let router = harness.router.clone().layer(crate::BodyLimitLayer::new(16));
        let chunks = futures_util::stream::iter(vec![
            Ok::<_, std::io::Error>(Bytes::from(format!("csrf_token={token}"))),
            Ok(Bytes::from("&text=a")),
        ]);

        let response = router
            .oneshot(
                post_with_cookie(&cookie)
                    .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                    .body(Body::from_stream(chunks))
                    .unwrap(),
            )
            .await
            .unwrap();

        assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(harness.handler_calls(), 0);
    }

    #[tokio::test]
    async fn a_form_with_the_header_token_is_not_read_by_the_layer() {
        let harness = Harness::new(config());
        let (cookie, token) = harness.visitor().await;
        // Over the form limit: only a layer that buffered the body would refuse it.
        let body = format!("text={}", "a".repeat(2048));

        let response = harness
            .send(
                post_with_cookie(&cookie)
                    .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                    .header("x-csrf-token", &token)
                    .body(Body::from(body.clone()))
                    .unwrap(),
            )
            .await;

        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(body_text(response).await, body);
    }

    #[tokio::test]
    async fn a_non_form_body_is_passed_untouched() {
        let harness = Harness::new(config());
        let (cookie, token) = harness.visitor().await;
        let json = format!(r#"{{"csrf_token":"{token}","big":"{}"}}"#, "a".repeat(2048));

        let response = harness
            .send(
                post_with_cookie(&cookie)
                    .header(header::CONTENT_TYPE, "application/json")
                    .header("x-csrf-token", &token)
                    .body(Body::from(json.clone()))
                    .unwrap(),
            )
            .await;

        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(body_text(response).await, json);
    }

    #[tokio::test]
    async fn a_multipart_or_json_body_must_use_the_header() {
        for (content_type, body) in [
            (
                "multipart/form-data; boundary=x",
                "--x\r\nContent-Disposition: form-data; name=\"csrf_token\"\r\n\r\nTOKEN\r\n--x--\r\n",
            ),
            ("application/json", r#"{"csrf_token":"TOKEN"}"#),
        ] {
            let harness = Harness::new(config());
            let (cookie, token) = harness.visitor().await;

            let response = harness
                .send(
                    post_with_cookie(&cookie)
                        .header(header::CONTENT_TYPE, content_type)
                        .body(Body::from(body.replace("TOKEN", &token)))
                        .unwrap(),
                )
                .await;

            assert_forbidden(&harness, response, DETAIL_TOKEN).await;
        }
    }

    #[tokio::test]
    async fn safe_methods_pass_from_any_origin_without_a_token() {
        let harness = Harness::new(config());

        for method in [Method::GET, Method::HEAD] {
            let response = harness
                .send(
                    Request::builder()
                        .method(method.clone())
                        .uri("/")
                        .header(header::ORIGIN, "https://evil.example")
                        .header("sec-fetch-site", "cross-site")
                        .body(Body::empty())
                        .unwrap(),
                )
                .await;

            assert_eq!(response.status(), StatusCode::OK, "{method}");
        }
    }

    #[tokio::test]
    async fn extractor_without_the_layer_is_a_500_problem() {
        let app = Router::new().route(
            "/",
            get(|token: CsrfToken| async move { token.to_string() }),
        );

        let response = app.oneshot(Request::new(Body::empty())).await.unwrap();

        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(response.headers()[header::CONTENT_TYPE], PROBLEM_JSON);
    }

    #[test]
    fn origins_that_could_never_match_or_would_match_anyone_are_refused() {
        for origin in [
            "*",
            "null",
            "https://gate.example/",
            "HTTPS://gate.example",
            "gate.example",
        ] {
            let result = CsrfLayer::try_new(CsrfConfig {
                allowed_origins: vec![origin.to_owned()],
                ..config()
            });

            assert!(
                matches!(result, Err(Error::InvalidCsrfOrigin(_))),
                "{origin:?} accepted"
            );
        }
    }

    #[test]
    fn secrets_and_tokens_are_redacted_in_debug_output() {
        let secret = CsrfSecret::from_bytes([7; 32]);
        let token = secret.token();

        let debug = format!("{secret:?} {token:?}");

        assert_eq!(debug, "CsrfSecret([redacted]) CsrfToken([redacted])");
        assert_eq!(
            CsrfSecret::from_bytes(*secret.as_bytes()).as_bytes(),
            &[7; 32]
        );
    }
}
