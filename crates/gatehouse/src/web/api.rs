//! The JSON API's access: `POST /api/v1/auth/token` (password and refresh-token grants),
//! `POST /api/v1/auth/revoke`, `GET /api/v1/me`, the JWKS, and the bearer authenticator
//! ([`ApiUser`]).
//!
//! # Security
//! - API requests are authenticated by `Authorization: Bearer` only, never by the session
//!   cookie, so no API route can be driven cross-site (no CSRF surface).
//! - The password grant is the sign-in form's twin: the same per-address rate limit, the same
//!   throttle and lock, the same answer for an unknown address and a wrong password, and MFA:
//!   a user with MFA must send `otp` (a TOTP code or a recovery code), else `401` with
//!   `"error": "mfa_required"`.
//! - Each user's API requests are limited (`GATEHOUSE_API_RATE_LIMIT`) by the token's subject,
//!   so a user cannot escape the limit by spreading requests over addresses or tokens.
//! - A checked token is remembered for at most 5 s per instance (DESIGN.md §7), so a revocation
//!   or a change to the user made on another instance or by the CLI takes effect within 5 s; one
//!   made on this instance empties the cache and takes effect at once.
//! - Every failure is a `401` problem with `WWW-Authenticate: Bearer`, and says no more than
//!   "invalid token" or "invalid grant"; the reason goes to the log.

use axum::Json;
use axum::extract::{FromRequestParts, State};
use axum::response::{IntoResponse, Response};
use gatehouse_security::rate_limit::too_many_requests;
use gatehouse_security::{ClientIp, Problem, RequestId};
use http::header::{AUTHORIZATION, CACHE_CONTROL, WWW_AUTHENTICATE};
use http::request::Parts;
use http::{HeaderMap, HeaderValue, StatusCode};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::auth::{meta, throttled};
use crate::Error;
use crate::app::AppState;
use crate::audit::{self, Actor, AuditContext, AuditEvent};
use crate::identity::mfa::{self, Checked};
use crate::identity::signin::{self, SignInError};
use crate::identity::tokens::{self, Refreshed, TokenError};
use crate::identity::{Email, User, UserStatus, api_keys, throttle, users};

/// The API access routes, with their OpenAPI descriptions.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(token))
        .routes(routes!(revoke))
        .routes(routes!(me))
        .routes(routes!(jwks))
}

/// A `401` problem with `WWW-Authenticate: Bearer`.
fn unauthorized(error: &'static str, detail: &'static str) -> Response {
    let mut response = Problem::new(StatusCode::UNAUTHORIZED)
        .with_detail(detail)
        .with_extension("error", serde_json::Value::from(error))
        .into_response();
    let challenge = if error == "invalid_token" {
        "Bearer realm=\"gatehouse\", error=\"invalid_token\""
    } else {
        "Bearer realm=\"gatehouse\""
    };
    response
        .headers_mut()
        .insert(WWW_AUTHENTICATE, HeaderValue::from_static(challenge));
    response
}

/// The user an API request acts for, from its bearer access token. The token, its sign-in and
/// the user's status and role are checked, and trusted for at most five seconds on this instance
/// (`tokens::AccessCache`); every revocation made here empties that cache at once.
#[derive(Debug, Clone)]
pub struct ApiUser {
    /// Who.
    pub user: User,
    /// The token family (API sign-in) the token belongs to; `nil` for an API key.
    pub family: Uuid,
    /// For an API key, its id and scopes; `None` for an access token (the role's full rights).
    pub key: Option<(Uuid, Vec<String>)>,
}

impl FromRequestParts<AppState> for ApiUser {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        if let Some(user) = parts.extensions.get::<Self>() {
            return Ok(user.clone());
        }
        if let Some(raw) = api_key(&parts.headers) {
            let now = state.clock.now();
            let used = api_keys::authenticate(&state.db, raw, now)
                .await
                .map_err(IntoResponse::into_response)?;
            let user = match &used {
                Some(k) => users::find_by_id(&state.db, k.user_id)
                    .await
                    .map_err(IntoResponse::into_response)?,
                None => None,
            };
            return match (used, user) {
                (Some(k), Some(user)) if user.status == UserStatus::Active => {
                    Self::admit(state, parts, user, Uuid::nil(), Some((k.id, k.scopes))).await
                }
                _ => {
                    tracing::info!(event = "access_denied", "API key refused");
                    Err(unauthorized("invalid_token", "The API key is not valid."))
                }
            };
        }
        let Some(token) = bearer(&parts.headers) else {
            return Err(unauthorized(
                "unauthenticated",
                "Send an access token: Authorization: Bearer <token>.",
            ));
        };
        let invalid = || unauthorized("invalid_token", "The access token is not valid.");
        let now = state.clock.now();
        if let Some((user, family)) = state.access_cache.get(token, now) {
            return Self::admit(state, parts, user, family, None).await;
        }
        let issuer = issuer(state);
        let claims = match state
            .tokens
            .verify(token, &issuer, now, &state.db, &state.keys)
            .await
        {
            Ok(claims) => claims,
            Err(TokenError::Other(e)) => return Err(e.into_response()),
            Err(e) => {
                tracing::info!(event = "access_denied", reason = %e, "bearer token refused");
                return Err(invalid());
            }
        };
        let (Ok(user_id), Ok(family)) =
            (Uuid::parse_str(&claims.sub), Uuid::parse_str(&claims.sid))
        else {
            return Err(invalid());
        };
        let live = tokens::family_live(&state.db, family, user_id, now)
            .await
            .map_err(IntoResponse::into_response)?;
        let user = users::find_by_id(&state.db, user_id)
            .await
            .map_err(IntoResponse::into_response)?;
        match user {
            Some(user) if live && user.status == UserStatus::Active => {
                state
                    .access_cache
                    .put(token, user.clone(), family, claims.exp, now);
                Self::admit(state, parts, user, family, None).await
            }
            _ => {
                tracing::info!(event = "access_denied", user_id = %user_id, "bearer token of a revoked sign-in or an inactive user");
                Err(invalid())
            }
        }
    }
}

impl ApiUser {
    /// Lets an authenticated request in if its user is within the API rate limit.
    async fn admit(
        state: &AppState,
        parts: &mut Parts,
        user: User,
        family: Uuid,
        key: Option<(Uuid, Vec<String>)>,
    ) -> Result<Self, Response> {
        if let Some(refusal) = over_api_limit(state, user.id).await {
            return Err(refusal);
        }
        let api_user = Self { user, family, key };
        parts.extensions.insert(api_user.clone());
        Ok(api_user)
    }
}

impl ApiUser {
    /// Refuses a request made with an API key that lacks `scope` (access tokens carry the role's
    /// full rights).
    pub fn require_scope(&self, scope: &str) -> Result<(), Error> {
        match &self.key {
            Some((_, scopes)) if !scopes.iter().any(|s| s == scope) => Err(Error::Forbidden(
                format!("This API key lacks the `{scope}` scope."),
            )),
            _ => Ok(()),
        }
    }

    /// Refuses a request made with an API key: some actions need a signed-in user's token.
    pub fn require_token(&self) -> Result<(), Error> {
        if self.key.is_some() {
            return Err(Error::Forbidden(
                "API keys cannot do this: use an access token.".into(),
            ));
        }
        Ok(())
    }
}

/// An API key from `Authorization: Bearer gk_…` or seed 002's `X-API-Key` header.
fn api_key(headers: &HeaderMap) -> Option<&str> {
    if let Some(token) = bearer(headers).filter(|t| t.starts_with("gk_")) {
        return Some(token);
    }
    headers
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
}

/// `GATEHOUSE_API_RATE_LIMIT`, keyed by the user the token names (not the address): the `429`
/// to answer when they are over it.
async fn over_api_limit(state: &AppState, user_id: Uuid) -> Option<Response> {
    let rate = state.settings.api_rate_limit?;
    let quota = gatehouse_security::Quota::new(rate.limit, rate.period).ok()?;
    match state.limiter.check(&format!("api:{user_id}"), &quota).await {
        Ok(decision) if decision.allowed => None,
        Ok(decision) => {
            tracing::info!(event = "rate_limited", rule = "api", user_id = %user_id, "per-user API limit reached");
            Some(too_many_requests(&decision))
        }
        Err(e) => {
            let deny = state.settings.rate_limit_deny_on_store_error;
            tracing::warn!(event = "rate_limit_store_error", rule = "api", error = %e, deny, "cannot check the API limit");
            deny.then(|| {
                Error::Unavailable("the rate-limit store is unavailable".into()).into_response()
            })
        }
    }
}

/// `value` as a JSON response with `status`, never stored by any cache: API answers are
/// personal (tokens, keys, a user's items).
pub(crate) fn json_no_store(status: StatusCode, value: impl Serialize) -> Response {
    let mut response = (status, Json(value)).into_response();
    response
        .headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// The JSON object a request body holds: `415` unless the body is `application/json`, `400`
/// when it is not JSON, `422` when it is JSON but not an object. Fields are then checked by
/// hand, so every problem can be reported by field name.
pub(crate) fn json_object(
    headers: &HeaderMap,
    body: &[u8],
) -> Result<serde_json::Map<String, serde_json::Value>, Error> {
    let json = headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
    if !json {
        return Err(Error::UnsupportedMediaType);
    }
    match serde_json::from_slice(body) {
        Ok(serde_json::Value::Object(map)) => Ok(map),
        Ok(_) => Err(Error::InvalidFields(vec![crate::error::FieldError::new(
            "body",
            "must be a JSON object",
        )])),
        Err(_) => Err(Error::BadRequest("The body is not valid JSON.".into())),
    }
}

/// The bearer token of a request, if it has one.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

fn issuer(state: &AppState) -> String {
    state
        .settings
        .public_url
        .as_str()
        .trim_end_matches('/')
        .to_owned()
}

/// The body of `POST /api/v1/auth/token`, one of two grants told apart by `grant_type`. A field
/// that is not part of the grant is refused.
#[derive(Deserialize, ToSchema)]
#[serde(tag = "grant_type", rename_all = "snake_case", deny_unknown_fields)]
enum TokenRequest {
    /// `"grant_type": "password"`: sign in with email, password and, for a user with two-step
    /// sign-in, `otp`.
    Password {
        #[schema(example = "ada@example.com")]
        email: String,
        #[schema(value_type = String, format = Password)]
        password: SecretString,
        /// A code from the authenticator app, or a recovery code.
        otp: Option<String>,
    },
    /// `"grant_type": "refresh_token"`: trade the last answer's `refresh_token` (each works
    /// once) for a new pair.
    RefreshToken { refresh_token: String },
}

/// A new access token and refresh token.
#[derive(Serialize, ToSchema)]
struct TokenResponse {
    /// An EdDSA-signed JWT; send it as `Authorization: Bearer <token>`.
    access_token: String,
    /// Always `Bearer`.
    #[schema(value_type = String, example = "Bearer")]
    token_type: &'static str,
    /// Seconds until the access token expires.
    expires_in: u64,
    /// Single use: trade it for the next pair with the refresh-token grant.
    refresh_token: String,
}

async fn token_response(
    state: &AppState,
    user_id: Uuid,
    family: Uuid,
    refresh_token: String,
) -> Result<Response, Error> {
    let lifetime = state.settings.access_token_lifetime;
    state
        .tokens
        .refresh_if_stale(&state.db, &state.keys, state.clock.now())
        .await?;
    let access_token =
        state
            .tokens
            .sign(&issuer(state), user_id, family, state.clock.now(), lifetime)?;
    Ok(json_no_store(
        StatusCode::OK,
        TokenResponse {
            access_token,
            token_type: "Bearer",
            expires_in: lifetime.as_secs(),
            refresh_token,
        },
    ))
}

/// Sign in to the API, or trade a refresh token for a new pair.
#[utoipa::path(
    post,
    path = "/api/v1/auth/token",
    operation_id = "token",
    tag = "auth",
    request_body = TokenRequest,
    responses(
        (status = 200, description = "Signed in", body = TokenResponse),
        (status = 401, description = "Wrong email, password, code or refresh token (`invalid_grant`, the same answer whether or not the account exists), or a code is needed (`mfa_required`)", body = super::openapi::Problem, content_type = "application/problem+json", headers(
            ("WWW-Authenticate" = String, description = "The `Bearer` challenge"),
        )),
        (status = 429, description = "Too many attempts for this address or from this client: retry after `Retry-After` seconds", body = super::openapi::Problem, content_type = "application/problem+json", headers(
            ("Retry-After" = String, description = "Seconds to wait"),
        )),
    )
)]
async fn token(
    State(state): State<AppState>,
    ip: ClientIp,
    request_id: RequestId,
    headers: HeaderMap,
    Json(request): Json<TokenRequest>,
) -> Result<Response, Error> {
    let ctx = |user_id: Uuid| AuditContext::user(user_id, ip.0, request_id.as_str());
    match request {
        TokenRequest::Password {
            email,
            password,
            otp,
        } => {
            password_grant(
                &state,
                ip,
                &request_id,
                &headers,
                &email,
                &password,
                otp.as_deref(),
            )
            .await
        }
        TokenRequest::RefreshToken { refresh_token } => {
            match tokens::refresh(&state.db, &refresh_token, state.clock.now()).await? {
                Refreshed::Rotated {
                    user_id,
                    family,
                    token,
                } => {
                    let active = users::find_by_id(&state.db, user_id)
                        .await?
                        .is_some_and(|u| u.status == UserStatus::Active);
                    if !active {
                        tokens::revoke_family(&state.db, family, state.clock.now()).await?;
                        state.access_cache.clear();
                        return Ok(unauthorized(
                            "invalid_grant",
                            "The refresh token is not valid.",
                        ));
                    }
                    token_response(&state, user_id, family, token).await
                }
                Refreshed::Reused { user_id, family } => {
                    state.access_cache.clear();
                    tracing::warn!(event = "refresh_token_reused", user_id = %user_id, family = %family, "a spent refresh token was presented again: its sign-in is revoked");
                    audit_family(&state, &ctx(user_id), "auth.refresh_token_reused", family)
                        .await?;
                    Ok(unauthorized(
                        "invalid_grant",
                        "The refresh token is not valid.",
                    ))
                }
                Refreshed::Invalid => Ok(unauthorized(
                    "invalid_grant",
                    "The refresh token is not valid.",
                )),
            }
        }
    }
}

async fn password_grant(
    state: &AppState,
    ip: ClientIp,
    request_id: &RequestId,
    headers: &HeaderMap,
    raw_email: &str,
    password: &SecretString,
    otp: Option<&str>,
) -> Result<Response, Error> {
    const WRONG: &str = "That email and password do not match an account that may sign in.";
    let Ok(email) = Email::parse(raw_email) else {
        state.passwords.verify_dummy(password).await?;
        return Ok(unauthorized("invalid_grant", WRONG));
    };
    if let Err(decision) = signin::attempt_allowed(state, &email).await {
        return Ok(too_many_requests(&decision));
    }
    let keys = throttle::keys(&state.settings.throttle, &email, ip.0);
    let now = state.clock.now();
    if let Some(wait) = throttle::blocked_for(&state.db, &keys, now).await? {
        return Ok(throttled(wait));
    }
    let meta = meta(ip, headers);
    let rid = Some(request_id.as_str().to_owned());
    let failed = |state: &AppState| {
        let state = state.clone();
        let (keys, email, meta, rid) = (keys.clone(), email.clone(), meta.clone(), rid.clone());
        async move {
            if throttle::record_failure(&state.db, &state.settings.throttle, &keys, now).await? {
                signin::record_lock(&state, &email, &meta, rid).await?;
            }
            Ok::<_, Error>(())
        }
    };
    let user = match signin::check_password(state, &email, password, &meta, rid.clone()).await {
        Ok(user) => user,
        Err(SignInError::NotAllowed) => {
            failed(state).await?;
            return Ok(unauthorized("invalid_grant", WRONG));
        }
        Err(SignInError::Other(e)) => return Err(e),
    };
    let ctx = AuditContext {
        actor: Actor::User(user.id),
        client_ip: Some(ip.0),
        request_id: rid.clone(),
    };
    let mut method = "api_password";
    if user.mfa_enabled {
        let Some(otp) = otp else {
            return Ok(unauthorized(
                "mfa_required",
                "This account uses two-step sign-in: send the code from the authenticator app as `otp`.",
            ));
        };
        match mfa::check(&state.db, &state.keys, user.id, otp, now, &ctx).await? {
            Checked::Totp => method = "api_password+totp",
            Checked::RecoveryCode { .. } => {
                method = "api_password+recovery_code";
                super::notices::send(state, &user.email, ip, super::notices::RECOVERY_CODE_USED);
            }
            Checked::Rejected => {
                failed(state).await?;
                return Ok(unauthorized(
                    "invalid_grant",
                    "The two-step sign-in code is not right.",
                ));
            }
        }
    }
    throttle::clear(&state.db, &keys[0].name).await?;
    let (family, refresh_token) = tokens::start_family(
        &state.db,
        user.id,
        now,
        state.settings.refresh_token_lifetime,
    )
    .await?;
    let mut tx = state.db.begin().await?;
    audit::record(
        &mut tx,
        &ctx,
        AuditEvent {
            action: "auth.sign_in",
            entity_type: "token_family",
            entity_id: Some(family.to_string()),
            changes: serde_json::json!({ "method": method }),
        },
    )
    .await?;
    tx.commit().await?;
    tracing::info!(event = "sign_in", user_id = %user.id, method, "signed in to the API");
    token_response(state, user.id, family, refresh_token).await
}

async fn audit_family(
    state: &AppState,
    ctx: &AuditContext,
    action: &'static str,
    family: Uuid,
) -> Result<(), Error> {
    let mut tx = state.db.begin().await?;
    audit::record(
        &mut tx,
        ctx,
        AuditEvent {
            action,
            entity_type: "token_family",
            entity_id: Some(family.to_string()),
            changes: serde_json::json!({}),
        },
    )
    .await?;
    tx.commit().await
}

/// The body of `POST /api/v1/auth/revoke`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct RevokeRequest {
    /// A refresh token or an access token: the API sign-in it belongs to ends.
    token: String,
}

/// End an API sign-in (RFC 7009): its refresh token and access tokens stop working.
#[utoipa::path(
    post,
    path = "/api/v1/auth/revoke",
    operation_id = "revoke_token",
    tag = "auth",
    request_body = RevokeRequest,
    responses(
        (status = 200, description = "Done, whatever the token was (RFC 7009)"),
    )
)]
async fn revoke(
    State(state): State<AppState>,
    ip: ClientIp,
    request_id: RequestId,
    Json(request): Json<RevokeRequest>,
) -> Result<Response, Error> {
    let now = state.clock.now();
    let family = match tokens::family_of(&state.db, &request.token).await? {
        Some(family) => Some(family),
        // An access token names its family in `sid`.
        None => state
            .tokens
            .verify(&request.token, &issuer(&state), now, &state.db, &state.keys)
            .await
            .ok()
            .and_then(|c| Uuid::parse_str(&c.sid).ok()),
    };
    if let Some(family) = family {
        if tokens::revoke_family(&state.db, family, now).await? {
            state.access_cache.clear();
            let ctx = AuditContext {
                actor: Actor::System,
                client_ip: Some(ip.0),
                request_id: Some(request_id.as_str().to_owned()),
            };
            audit_family(&state, &ctx, "auth.sign_out", family).await?;
        }
    }
    Ok(StatusCode::OK.into_response())
}

/// The caller.
#[derive(Serialize, ToSchema)]
struct Me {
    id: Uuid,
    email: String,
    display_name: String,
    /// `admin`, `manager` or `user`.
    #[schema(value_type = String, example = "user")]
    role: &'static str,
    /// Whether two-step sign-in is on.
    mfa_enabled: bool,
}

/// Who the credential belongs to.
#[utoipa::path(
    get,
    path = "/api/v1/me",
    operation_id = "me",
    tag = "auth",
    responses((status = 200, description = "The caller", body = Me)),
    security(("bearer" = []), ("api_key" = []))
)]
async fn me(api: ApiUser) -> Response {
    let u = api.user;
    json_no_store(
        StatusCode::OK,
        Me {
            id: u.id,
            email: u.email.as_str().to_owned(),
            display_name: u.display_name.as_str().to_owned(),
            role: u.role.as_str(),
            mfa_enabled: u.mfa_enabled,
        },
    )
}

/// The public keys access tokens are signed with (RFC 7517).
#[derive(ToSchema)]
#[allow(dead_code)] // Describes `tokens::KeyRing::jwks`.
struct Jwks {
    keys: Vec<Jwk>,
}

/// One Ed25519 public key.
#[derive(ToSchema)]
#[allow(dead_code)] // Describes `tokens::KeyRing::jwks`.
struct Jwk {
    /// `OKP`.
    kty: String,
    /// `Ed25519`.
    crv: String,
    /// The public key, base64url.
    x: String,
    /// The key's id, as in a token's `kid` header.
    kid: String,
    /// `EdDSA`.
    alg: String,
    /// `sig`.
    #[schema(rename = "use")]
    use_: String,
}

/// The public keys that verify access tokens.
#[utoipa::path(
    get,
    path = "/.well-known/jwks.json",
    operation_id = "jwks",
    tag = "auth",
    responses((status = 200, description = "The key set", body = Jwks))
)]
async fn jwks(State(state): State<AppState>) -> Response {
    let mut response = Json(state.tokens.jwks()).into_response();
    response.headers_mut().insert(
        CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    response
}
