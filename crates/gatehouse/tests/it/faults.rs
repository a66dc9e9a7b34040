//! Outages and recovery: Redis stopped and started again empty, the database cut off behind a
//! proxy and restored. Requests fail fast with a 503 and `Retry-After`, `/readyz` names what is
//! missing, and everything works again without a restart.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::faults::{FaultProxy, PrivateRedis};
use crate::support::visitor::Visitor;
use crate::support::{Backend, add_user, api_token, spawn_unlimited_app};

const EMAIL: &str = "ada@example.com";
const PASSWORD: &str = "Vermilion-Otter-42";

async fn sign_in(v: &mut Visitor<'_>) -> (u16, reqwest::header::HeaderMap, String) {
    let csrf = v.csrf_from("/login").await;
    v.post(
        "/login/password",
        &[
            ("csrf_token", &csrf),
            ("email", EMAIL),
            ("password", PASSWORD),
        ],
    )
    .await
}

async fn readiness(app: &crate::support::TestApp) -> (u16, Value) {
    let res = app.get("/readyz").await;
    (res.status().as_u16(), res.json().await.unwrap())
}

#[tokio::test]
async fn redis_away_fails_fast_and_serves_again_within_two_seconds_of_its_return() {
    let Some(mut redis) = PrivateRedis::start(
        "faults::redis_away_fails_fast_and_serves_again_within_two_seconds_of_its_return",
    ) else {
        return;
    };
    let app = spawn_unlimited_app(Backend::Sqlite, &[("GATEHOUSE_REDIS_URL", &redis.url())]).await;
    add_user(&app, EMAIL).password(PASSWORD).await;
    let token = api_token(&app, EMAIL, PASSWORD).await;
    let mut v = Visitor::new(&app);
    assert_eq!(sign_in(&mut v).await.0, 303);
    assert_eq!(v.get("/account").await.0, 200);

    redis.stop();
    let asked = Instant::now();
    let (status, headers, page) = v.get("/account").await;
    assert!(
        asked.elapsed() < Duration::from_secs(2),
        "failed fast: {:?}",
        asked.elapsed()
    );
    assert_eq!(status, 503, "{page}");
    assert!(headers.contains_key("retry-after"));
    let (status, body) = readiness(&app).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["checks"]["sessions"], "unavailable", "{body}");
    assert_eq!(body["checks"]["database"], "ok");
    assert_eq!(
        Visitor::new(&app).get("/login").await.0,
        200,
        "a page without a session renders"
    );
    let me = app
        .request(reqwest::Method::GET, "/api/v1/me")
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), 200, "a token needs no session store");

    // Back, empty: the session is gone, which is a clean sign-out, never an error.
    redis.resume();
    let back = Instant::now();
    let (status, headers, page) = v.get("/account").await;
    assert!(
        back.elapsed() < Duration::from_secs(2),
        "served again at once: {:?}",
        back.elapsed()
    );
    assert_eq!(status, 303, "{page}");
    assert!(headers["location"].to_str().unwrap().starts_with("/login"));
    assert_eq!(readiness(&app).await.0, 200);
    let mut again = Visitor::new(&app);
    assert_eq!(sign_in(&mut again).await.0, 303);
    assert_eq!(again.get("/account").await.0, 200);
}

#[tokio::test]
async fn a_database_outage_is_a_503_with_retry_after_and_recovery_needs_no_restart() {
    if !Backend::Postgres.available(
        "faults::a_database_outage_is_a_503_with_retry_after_and_recovery_needs_no_restart",
    ) {
        return;
    }
    let direct = crate::support::backend::fresh_postgres_database().await;
    let mut url = url::Url::parse(&direct).unwrap();
    let target = (
        url.host_str().unwrap().to_owned(),
        url.port().unwrap_or(5432),
    );
    let target = tokio::net::lookup_host(target)
        .await
        .unwrap()
        .next()
        .unwrap();
    let proxy = FaultProxy::start(target).await;
    url.set_host(Some("127.0.0.1")).unwrap();
    url.set_port(Some(proxy.addr.port())).unwrap();
    let app = spawn_unlimited_app(
        Backend::Sqlite,
        &[
            ("GATEHOUSE_DATABASE_URL", url.as_str()),
            ("GATEHOUSE_DATABASE_ACQUIRE_TIMEOUT", "1s"),
        ],
    )
    .await;
    add_user(&app, EMAIL).password(PASSWORD).await;
    let token = api_token(&app, EMAIL, PASSWORD).await;
    let items = || {
        app.request(reqwest::Method::GET, "/api/v1/items")
            .bearer_auth(&token)
            .send()
    };
    assert_eq!(items().await.unwrap().status(), 200);

    proxy.cut();
    // A token checked in the last 5 s is trusted without the database: wait that out.
    app.clock.advance(Duration::from_secs(6));
    let asked = Instant::now();
    let res = items().await.unwrap();
    assert!(
        asked.elapsed() < Duration::from_secs(5),
        "no hang: {:?}",
        asked.elapsed()
    );
    assert_eq!(
        res.status(),
        503,
        "never a 500: {}",
        crate::support::captured_log_text()
            .lines()
            .filter(|l| l.contains("internal_error"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert_eq!(res.headers()["retry-after"], "5");
    assert_eq!(res.headers()["content-type"], "application/problem+json");
    let (status, body) = readiness(&app).await;
    assert_eq!(
        (status, &body["checks"]["database"]),
        (503, &Value::from("unavailable"))
    );

    proxy.restore();
    assert_eq!(
        items().await.unwrap().status(),
        200,
        "back without a restart"
    );
    assert_eq!(readiness(&app).await.0, 200);
}
