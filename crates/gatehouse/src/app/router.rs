//! The router: every route, wrapped in the request pipeline in its order.

use anyhow::Context as _;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use gatehouse_security::body_limit::BodyLimitLayer;
use gatehouse_security::rate_limit::{ExtensionKey, FailurePolicy, KeySource, Quota, Rule};
use gatehouse_security::{
    CatchPanicLayer, ClientIpLayer, CsrfConfig, CsrfLayer, QueryGuardLayer, RateLimitLayer,
    RejectTraceLayer, RequestIdLayer, SecurityHeadersConfig, SecurityHeadersLayer, sensitive,
};
use http::StatusCode;
use tower::ServiceBuilder;
use tower_http::timeout::TimeoutLayer;

use crate::state::AppState;
use crate::telemetry::ObserveLayer;
use crate::web::errors::ErrorPagesLayer;
use crate::web::session::{CurrentUser, SessionLayer};
use crate::{ops, web};

/// Every route, wrapped in the request pipeline.
///
/// The stack, outermost first (DESIGN.md §2, with the reasons for each place):
/// 1. sensitive headers: `Authorization`, `Cookie`, `Set-Cookie`, `X-API-Key`,
///    `Cf-Access-Jwt-Assertion` are marked before anything can log them;
/// 2. request ID, then 3. client IP: both cannot panic, so running them first lets every
///    response, a panic's 500 included, carry the request ID, and lets the span name the client;
/// 4. the request span, log line and metrics: it sees the final status of everything below;
/// 5. security headers with the CSP nonce: on every response, error pages included, and
///    `Content-Disposition: attachment` on every answer under `/api/` and the JWKS, whichever
///    layer gave it (a 429 or a 404 too); `Server` and `X-Powered-By` never leave;
/// 6. error rendering: problem+json or an HTML page, with the request ID;
/// 7. panic catcher: a panic below becomes a bare 500 that 6 renders;
/// 8. TRACE refused;
/// 9. query guard: a repeated query parameter or a credential in the query (`?access_token=`,
///    `?password=`, and `?token=` on the API) is a 400 before anything reads the query;
/// 10. timeout, then 11. body-size limit (413 on a too-large `Content-Length` before reading);
/// 12. CORS: preflights answered here, before any route runs;
/// 13. rate limits per client IP (`/healthz` and `/readyz` exempt);
/// 14. authentication: the request's one credential (on the API a bearer token or API key, else
///     the session cookie) → its principal, and for a session `CurrentUser` and its CSRF secret;
/// 15. the upstream access proxy's identity, when configured (`web::upstream`): inside
///     authentication, which names the session it compares with the proxy's person; a request
///     without the proxy's valid assertion stops here;
/// 16. rate limits per signed-in account (inside the session layer, which names the account);
/// 17. CSRF: on the form routes, and on the API for cookie-authenticated requests;
/// 18. the routes.
pub fn router(state: AppState) -> anyhow::Result<Router> {
    let settings = &state.settings;
    let cors = settings
        .cors_policy()
        .context("GATEHOUSE_CORS_ORIGINS is not a valid origin list")?;
    let stack = ServiceBuilder::new()
        .layer(sensitive::sensitive_headers_layer())
        .layer(RequestIdLayer::new())
        .layer(ClientIpLayer::new(settings.trusted_proxies.clone()))
        .layer(ObserveLayer::new(state.metrics.clone()))
        .layer(SecurityHeadersLayer::new(SecurityHeadersConfig {
            hsts: settings.is_production(),
            csp_report_uri: Some("/csp-report".into()),
            // Data for programs, never a document to render. The OpenAPI document is one of
            // them: tools fetch it, which the header does not affect.
            attachment_prefixes: vec!["/api/".into(), "/.well-known/jwks.json".into()],
        }))
        .layer(ErrorPagesLayer::new(state.templates.clone()))
        .layer(CatchPanicLayer::new())
        .layer(RejectTraceLayer::new())
        // Pages keep `?token=`: the one-time token of a mailed sign-in or reset link.
        .layer(QueryGuardLayer::new().refuse_under("/api/", ["token"]))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            settings.request_timeout,
        ))
        .layer(BodyLimitLayer::new(settings.body_limit))
        // No allowlist, no CORS headers at all: browsers then refuse every cross-origin read.
        .option_layer((!cors.origins().is_empty()).then(|| cors.layer()))
        .layer(rate_limit_layer(&state)?)
        .layer(SessionLayer::new(state.clone()))
        .option_layer(
            web::upstream::enabled(&state)
                .then(|| axum::middleware::from_fn_with_state(state.clone(), web::upstream::layer)),
        )
        .layer(account_rate_limit_layer(&state)?);
    // CSRF guards the forms (sign-in, account); `/` needs no token for anonymous visitors and
    // `/csp-report` is posted by browsers without one.
    let mut csrf_origins = vec![settings.public_url.origin().ascii_serialization()];
    csrf_origins.extend(cors.origins().iter().filter(|o| *o != "*").cloned());
    let csrf = CsrfLayer::try_new(CsrfConfig {
        allowed_origins: csrf_origins,
        secure_cookie: settings.is_production(),
        form_body_limit: 64 * 1024,
    })
    .context("GATEHOUSE_PUBLIC_URL / GATEHOUSE_CORS_ORIGINS give an invalid CSRF origin")?;
    Ok(Router::new()
        .merge(ops::router())
        .merge(web::router())
        // The JSON API: cookie-authenticated requests are checked as forms are (the token in
        // `X-CSRF-Token`); bearer and API-key requests carry their own credential.
        .merge(crate::api::openapi::router().layer(csrf.clone().session_only()))
        .merge(
            web::auth::router()
                .merge(web::oidc::router())
                .merge(web::account::router())
                .merge(web::password_reset::router())
                .merge(web::mfa::router())
                .merge(web::passkeys::router())
                .merge(web::api_keys::pages())
                .merge(web::items::router())
                .merge(web::setup::router())
                .layer(csrf),
        )
        .fallback(web::not_found)
        .layer(stack)
        .layer(DefaultBodyLimit::max(settings.body_limit))
        .with_state(state))
}

/// The per-IP rules: every request, and sign-in attempts.
fn rate_limit_layer(state: &AppState) -> anyhow::Result<RateLimitLayer> {
    let settings = &state.settings;
    let policy = |deny: bool| {
        if deny {
            FailurePolicy::Deny
        } else {
            FailurePolicy::Allow
        }
    };
    let mut rules = Vec::new();
    if let Some(rate) = settings.rate_limit {
        rules.push(Rule::new(
            "global",
            Quota::new(rate.limit, rate.period)?,
            KeySource::ClientIp,
            policy(settings.rate_limit_deny_on_store_error),
        )?);
    }
    if let Some(rate) = settings.signin_rate_limit {
        rules.push(
            Rule::new(
                "signin",
                Quota::new(rate.limit, rate.period)?,
                KeySource::ClientIp,
                policy(settings.signin_rate_limit_deny_on_store_error),
            )?
            .path_prefix("/login")
            .path_prefix("/password")
            .path_prefix("/auth/oidc")
            .path_prefix("/api/v1/auth/token")
            .methods([http::Method::POST]),
        );
    }
    Ok(RateLimitLayer::new(state.limiter.clone(), rules)?.exempt(["/healthz", "/readyz"]))
}

/// The per-account rule: a signed-in account's requests from any address.
fn account_rate_limit_layer(state: &AppState) -> anyhow::Result<RateLimitLayer> {
    let settings = &state.settings;
    let mut rules = Vec::new();
    if let Some(rate) = settings.account_rate_limit {
        rules.push(Rule::new(
            "account",
            Quota::new(rate.limit, rate.period)?,
            KeySource::Extension(ExtensionKey::new(|ext| {
                ext.get::<CurrentUser>().map(|c| c.user.id.to_string())
            })),
            if settings.rate_limit_deny_on_store_error {
                FailurePolicy::Deny
            } else {
                FailurePolicy::Allow
            },
        )?);
    }
    Ok(RateLimitLayer::new(state.limiter.clone(), rules)?)
}
