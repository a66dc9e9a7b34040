//! The JSON API's access: `POST /api/v1/auth/token` (password and refresh-token grants),
//! `POST /api/v1/auth/revoke`, `GET /api/v1/me`, the JWKS, and the bearer authenticator
//! ([`ApiUser`]).
//!
//! # Security
//! - API requests are authenticated by the one authentication (`identity::authentication`):
//!   a bearer access token or API key, `X-API-Key`, or the session cookie; a cookie-authenticated
//!   unsafe request must carry the session's CSRF token in `X-CSRF-Token` (checked by the CSRF
//!   layer on the API routes), so no API route can be driven cross-site.
//! - The password grant goes through the one sign-in pipeline (`identity::signin`) with the
//!   sign-in form: the same per-address rate limit, the same throttle and lock, the same answer
//!   for an unknown address and a wrong password, and MFA: a user with MFA must send `otp` (a
//!   TOTP code or a recovery code), else `401` with `"error": "mfa_required"`. A user whose role
//!   requires MFA and who has none gets no tokens (`403`, `mfa_enrolment_required`).
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
use gatehouse_security::Problem;
use gatehouse_security::rate_limit::too_many_requests;
use http::header::{CACHE_CONTROL, WWW_AUTHENTICATE};
use http::request::Parts;
use http::{HeaderMap, HeaderValue, StatusCode};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::access::{Action, Check};
use crate::error::Error;
use crate::identity::User;
use crate::identity::authentication::{Principal, Via};
use crate::identity::signin::{Channel, IssuedTokens, Origin, Outcome};
use crate::state::AppState;
use crate::web::auth::throttled;
use crate::web::session::{AuthRefused, MFA_ENROLMENT_REQUIRED};

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

/// The user an API request acts for, from the request's principal (see
/// `identity::authentication`): an access token, an API key, or the session cookie (with the
/// CSRF check the API routes' CSRF layer made), within the user's API rate limit.
#[derive(Debug, Clone)]
pub struct ApiUser {
    /// Who.
    pub user: User,
    /// The token family (API sign-in) the token belongs to; `nil` for an API key or a session.
    pub family: Uuid,
    /// For an API key, its id and scopes; `None` for an access token or a session (the role's
    /// full rights).
    pub key: Option<(Uuid, Vec<String>)>,
}

impl FromRequestParts<AppState> for ApiUser {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        if let Some(user) = parts.extensions.get::<Self>() {
            return Ok(user.clone());
        }
        // Taken, not cloned: from here on the request's principal is this `ApiUser`.
        let Some(principal) = parts.extensions.remove::<Principal>() else {
            return Err(match parts.extensions.get::<AuthRefused>() {
                Some(_) => unauthorized("invalid_token", "The credential is not valid."),
                None => unauthorized(
                    "unauthenticated",
                    "Send an access token: Authorization: Bearer <token>.",
                ),
            });
        };
        let (family, key) = match principal.via {
            Via::AccessToken { family } => (family, None),
            Via::ApiKey { id, scopes } => (Uuid::nil(), Some((id, scopes))),
            Via::Session(_) => (Uuid::nil(), None),
        };
        if let Some(refusal) = over_api_limit(state, principal.user.id).await {
            return Err(refusal);
        }
        let api_user = Self {
            user: principal.user,
            family,
            key,
        };
        parts.extensions.insert(api_user.clone());
        Ok(api_user)
    }
}

impl ApiUser {
    /// Refuses a request made with an API key that lacks `scope` (access tokens carry the role's
    /// full rights).
    pub fn require_scope(&self, scope: &'static str) -> Result<(), Error> {
        match &self.key {
            Some((_, scopes)) if !scopes.iter().any(|s| s == scope) => Err(Error::denied(
                self.user.id,
                scope,
                Check::Credential,
                format!("This API key lacks the `{scope}` scope."),
            )),
            _ => Ok(()),
        }
    }

    /// Refuses a request made with an API key: some actions (`action`) need a signed-in user's
    /// token.
    pub fn require_token(&self, action: Action) -> Result<(), Error> {
        if self.key.is_some() {
            return Err(Error::denied(
                self.user.id,
                action.as_str(),
                Check::Credential,
                "API keys cannot do this: use an access token.",
            ));
        }
        Ok(())
    }
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
/// when it is not JSON or names a key twice ([`checked_json`]), `422` when it is JSON but not an
/// object. Fields are then checked by hand, so every problem can be reported by field name.
pub(crate) fn json_object(
    headers: &HeaderMap,
    body: &[u8],
) -> Result<serde_json::Map<String, serde_json::Value>, Error> {
    match checked_json(headers, body)? {
        serde_json::Value::Object(map) => Ok(map),
        _ => Err(Error::InvalidFields(vec![crate::error::FieldError::new(
            "body",
            "must be a JSON object",
        )])),
    }
}

/// Every JSON body the API reads goes through here: `415` unless the body is
/// `application/json`, `400` when it is not JSON, or when an object in it (at any depth) names
/// a key twice. serde keeps the last of two equal keys without a word, while another reader
/// (a proxy, a log pipeline, a client library) may keep the first: the two would act on
/// different requests, so neither does.
fn checked_json(headers: &HeaderMap, body: &[u8]) -> Result<serde_json::Value, Error> {
    let json = headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
    if !json {
        return Err(Error::UnsupportedMediaType);
    }
    match serde_json::from_slice::<UniqueKeys>(body) {
        Ok(UniqueKeys(value)) => Ok(value),
        // The only data error `UniqueKeys` raises is a repeated key; the rest is syntax.
        Err(e) if e.is_data() => Err(Error::BadRequest(format!(
            "The body names a key twice ({e}): send each key once."
        ))),
        Err(_) => Err(Error::BadRequest("The body is not valid JSON.".into())),
    }
}

/// A JSON value read with every object's keys checked for repeats.
struct UniqueKeys(serde_json::Value);

impl<'de> Deserialize<'de> for UniqueKeys {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer
            .deserialize_any(UniqueKeysVisitor)
            .map(UniqueKeys)
    }
}

struct UniqueKeysVisitor;

impl<'de> serde::de::Visitor<'de> for UniqueKeysVisitor {
    type Value = serde_json::Value;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Self::Value, E> {
        Ok(v.into())
    }

    fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
        Ok(v.into())
    }

    fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
        Ok(v.into())
    }

    fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(serde_json::Value::Null, Into::into))
    }

    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(v.into())
    }

    fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
        Ok(v.into())
    }

    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(serde_json::Value::Null)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut items = Vec::new();
        while let Some(UniqueKeys(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(items.into())
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut object = serde_json::Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let UniqueKeys(value) = map.next_value()?;
            if object.contains_key(&key) {
                let shown: String = key.chars().take(40).collect();
                return Err(serde::de::Error::custom(format_args!(
                    "`{shown}` is repeated"
                )));
            }
            object.insert(key, value);
        }
        Ok(object.into())
    }
}

/// A JSON body of type `T` read through [`checked_json`]: `415`, `400` as there, `422` when the
/// JSON does not match `T` (a missing or unknown field, a wrong type).
pub(crate) struct JsonBody<T>(pub T);

impl<T, S> axum::extract::FromRequest<S> for JsonBody<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = Response;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, Response> {
        let headers = req.headers().clone();
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(IntoResponse::into_response)?;
        let value = checked_json(&headers, &bytes).map_err(IntoResponse::into_response)?;
        serde_json::from_value(value).map(JsonBody).map_err(|e| {
            Error::Invalid(format!("The body does not fit this request: {e}.")).into_response()
        })
    }
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
    /// `true` when the password of this password grant is on the list of common passwords
    /// attackers try first: it still signed in, but the user should change it (at
    /// `/account/password`). Always `false` for the refresh-token grant.
    password_change_advised: bool,
}

/// The answer to a token request's outcome.
fn token_answer(outcome: Outcome, wrong: &'static str) -> Response {
    match outcome {
        Outcome::TokensIssued(IssuedTokens {
            access_token,
            expires_in,
            refresh_token,
            password_change_advised,
            ..
        }) => json_no_store(
            StatusCode::OK,
            TokenResponse {
                access_token,
                token_type: "Bearer",
                expires_in: expires_in.as_secs(),
                refresh_token,
                password_change_advised,
            },
        ),
        Outcome::MfaRequired => unauthorized(
            "mfa_required",
            "This account uses two-step sign-in: send the code from the authenticator app as `otp`.",
        ),
        Outcome::EnrolmentRequired => {
            let mut response = Problem::new(StatusCode::FORBIDDEN)
                .with_type(MFA_ENROLMENT_REQUIRED)
                .with_detail("Your role requires two-step sign-in: set it up at /account/mfa in the browser first.")
                .with_extension("error", serde_json::Value::from("mfa_enrolment_required"))
                .into_response();
            response
                .headers_mut()
                .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
            response
        }
        Outcome::Throttled(wait) => throttled(wait),
        Outcome::RateLimited(decision) => too_many_requests(&decision),
        Outcome::Refused
        | Outcome::SignedIn { .. }
        | Outcome::SecondFactorDue(_)
        | Outcome::SwitchUnconfirmed(_) => unauthorized("invalid_grant", wrong),
    }
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
        (status = 401, description = "Wrong email, password, code or refresh token (`invalid_grant`, the same answer whether or not the account exists), or a code is needed (`mfa_required`)", body = super::schema::Problem, content_type = "application/problem+json", headers(
            ("WWW-Authenticate" = String, description = "The `Bearer` challenge"),
        )),
        (status = 429, description = "Too many attempts for this address or from this client: retry after `Retry-After` seconds", body = super::schema::Problem, content_type = "application/problem+json", headers(
            ("Retry-After" = String, description = "Seconds to wait"),
        )),
    )
)]
async fn token(
    State(state): State<AppState>,
    origin: Origin,
    JsonBody(request): JsonBody<TokenRequest>,
) -> Result<Response, Error> {
    Ok(match request {
        TokenRequest::Password {
            email,
            password,
            otp,
        } => {
            let outcome = state
                .identity
                .sign_in_with_password(&email, &password, None, Channel::Api { otp }, &origin)
                .await?;
            token_answer(
                outcome,
                "That email and password (and code) do not match an account that may sign in.",
            )
        }
        TokenRequest::RefreshToken { refresh_token } => {
            let outcome = state
                .identity
                .refresh_tokens(&refresh_token, &origin)
                .await?;
            token_answer(outcome, "The refresh token is not valid.")
        }
    })
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
    origin: Origin,
    JsonBody(request): JsonBody<RevokeRequest>,
) -> Result<Response, Error> {
    state.identity.revoke_token(&request.token, &origin).await?;
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
    let mut response = Json(state.tokens.jwks(state.clock.now())).into_response();
    let max_age = crate::identity::tokens::JWKS_MAX_AGE.as_secs();
    if let Ok(value) = HeaderValue::from_str(&format!("public, max-age={max_age}")) {
        response.headers_mut().insert(CACHE_CONTROL, value);
    }
    response
}
