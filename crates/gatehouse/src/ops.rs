//! Operations endpoints: liveness, readiness and the Prometheus scrape.
//!
//! - `GET /healthz`: the process answers. Touches nothing else, so an orchestrator never kills
//!   an instance because the database is slow.
//! - `GET /readyz`: the database (and Redis, when configured) answer within two seconds; `503`
//!   otherwise, so a load balancer stops sending traffic.
//! - `GET /metrics` on `GATEHOUSE_METRICS_LISTEN` only, never on the public listener.
//!
//! # Security
//! Readiness says which dependency failed, never why: error details go to the log.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use http::StatusCode;
use http::header::{CACHE_CONTROL, CONTENT_TYPE};
use serde_json::json;

use crate::state::AppState;
use crate::telemetry::Metrics;

/// How long one readiness check may take.
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// The public operations routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
}

/// The metrics listener's routes.
pub fn metrics_router(metrics: Arc<Metrics>) -> Router {
    Router::new()
        .route("/metrics", get(scrape))
        .with_state(metrics)
}

async fn healthz() -> Response {
    ([(CACHE_CONTROL, "no-store")], Json(json!({"status": "ok"}))).into_response()
}

async fn readyz(State(state): State<AppState>) -> Response {
    let database = check("database", state.db.ping()).await;
    let redis = match &state.redis {
        None => "not configured",
        Some(client) => check("redis", ping_redis(client)).await,
    };
    let sessions = check("sessions", state.sessions.ping()).await;
    let ready = database == "ok" && redis != "unavailable" && sessions == "ok";
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        [(CACHE_CONTROL, "no-store")],
        Json(json!({
            "status": if ready { "ready" } else { "unavailable" },
            "checks": {"database": database, "redis": redis, "sessions": sessions},
        })),
    )
        .into_response()
}

/// Runs one dependency check within [`CHECK_TIMEOUT`]: `ok` or `unavailable`, with the reason
/// in the log only.
async fn check<E: std::fmt::Display>(
    dependency: &'static str,
    probe: impl std::future::Future<Output = Result<(), E>>,
) -> &'static str {
    match tokio::time::timeout(CHECK_TIMEOUT, probe).await {
        Ok(Ok(())) => "ok",
        Ok(Err(e)) => {
            tracing::warn!(event = "readiness_failed", dependency, error = %e, "dependency check failed");
            "unavailable"
        }
        Err(_) => {
            tracing::warn!(
                event = "readiness_failed",
                dependency,
                "dependency check timed out"
            );
            "unavailable"
        }
    }
}

async fn ping_redis(client: &redis::Client) -> redis::RedisResult<()> {
    let mut conn = client.get_multiplexed_async_connection().await?;
    redis::cmd("PING").query_async::<String>(&mut conn).await?;
    Ok(())
}

async fn scrape(State(metrics): State<Arc<Metrics>>) -> Response {
    (
        [(
            CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        metrics.encode(),
    )
        .into_response()
}
