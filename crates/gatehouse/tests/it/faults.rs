//! Outages and recovery: Redis stopped and started again empty, the database cut off behind a
//! proxy and restored. Requests fail fast with a 503 and `Retry-After`, `/readyz` names what is
//! missing, and everything works again without a restart.

use std::time::{Duration, Instant};

use futures_util::StreamExt as _;
use serde_json::Value;

use crate::support::faults::{FaultProxy, PrivateRedis};
use crate::support::visitor::Visitor;
use crate::support::{
    Backend, ServedBinary, add_user, api_token, assert_audit_chain_verifies, env_of,
    run_cli_with_stdin, spawn_unlimited_app,
};

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

/// A fresh PostgreSQL database behind a [`FaultProxy`], the URL that reaches it through the
/// proxy, and the one that reaches it directly.
async fn proxied_database() -> (FaultProxy, url::Url, String) {
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
    (proxy, url, direct)
}

/// A server whose PostgreSQL database sits behind a [`FaultProxy`] (acquire timeout 1 s, then
/// `extra`), with a user and an access token; also the database's direct URL. `None` (skipped,
/// or failed when required) without PostgreSQL.
async fn app_behind_proxy(
    test: &str,
    extra: &[(&str, &str)],
) -> Option<(FaultProxy, crate::support::TestApp, String, String)> {
    if !Backend::Postgres.available(test) {
        return None;
    }
    let (proxy, url, direct) = proxied_database().await;
    let mut settings = vec![
        ("GATEHOUSE_DATABASE_URL", url.as_str()),
        ("GATEHOUSE_DATABASE_ACQUIRE_TIMEOUT", "1s"),
    ];
    settings.extend_from_slice(extra);
    let app = spawn_unlimited_app(Backend::Sqlite, &settings).await;
    add_user(&app, EMAIL).password(PASSWORD).await;
    let token = api_token(&app, EMAIL, PASSWORD).await;
    Some((proxy, app, token, direct))
}

#[tokio::test]
async fn a_slow_database_with_its_pool_taken_answers_503_before_the_request_timeout() {
    let Some((proxy, app, token, direct)) = app_behind_proxy(
        "faults::a_slow_database_with_its_pool_taken_answers_503_before_the_request_timeout",
        &[
            ("GATEHOUSE_DATABASE_MAX_CONNECTIONS", "2"),
            ("GATEHOUSE_REQUEST_TIMEOUT", "4s"),
        ],
    )
    .await
    else {
        return;
    };
    proxy.delay(Duration::from_millis(1500));
    app.clock.advance(Duration::from_secs(6));
    let asked = Instant::now();
    let requests = (0..8).map(|_| {
        app.request(reqwest::Method::GET, "/api/v1/items")
            .bearer_auth(&token)
            .send()
    });
    let responses = futures_util::future::join_all(requests).await;
    assert!(
        asked.elapsed() < Duration::from_secs(8),
        "nothing hangs past the request timeout: {:?}",
        asked.elapsed()
    );
    let statuses: Vec<u16> = responses
        .iter()
        .map(|r| r.as_ref().unwrap().status().as_u16())
        .collect();
    assert!(
        statuses.iter().all(|s| *s == 200 || *s == 503),
        "never a 500: {statuses:?}"
    );
    assert!(
        statuses.contains(&503),
        "two connections for eight slow requests: the pool ran out: {statuses:?}"
    );
    for response in responses.iter().flatten().filter(|r| r.status() == 503) {
        assert_eq!(response.headers()["retry-after"], "5");
    }
    // Writes cut off by the request timeout in the middle of their transaction: each happened
    // completely (the item and its audit record) or not at all.
    let writes = (0..4).map(|i| {
        app.request(reqwest::Method::POST, "/api/v1/items").bearer_auth(&token)
            .json(&serde_json::json!({"name": format!("Slow {i}"), "description": "written to a slow database"}))
            .send()
    });
    let statuses: Vec<u16> = futures_util::future::join_all(writes)
        .await
        .iter()
        .map(|r| r.as_ref().unwrap().status().as_u16())
        .collect();
    assert!(
        statuses.iter().all(|s| *s == 201 || *s == 503),
        "{statuses:?}"
    );
    assert!(
        statuses.contains(&503),
        "cut off by the request timeout: {statuses:?}"
    );

    proxy.delay(Duration::ZERO);
    app.clock.advance(Duration::from_secs(6));
    let res = app
        .request(reqwest::Method::GET, "/api/v1/items")
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let items: i64 = app
        .db
        .query("SELECT COUNT(*) FROM items")
        .fetch_one()
        .await
        .unwrap()
        .get(0)
        .unwrap();
    let created: i64 = app
        .db
        .query("SELECT COUNT(*) FROM audit_log WHERE action = 'item.create'")
        .fetch_one()
        .await
        .unwrap()
        .get(0)
        .unwrap();
    assert_eq!(
        items, created,
        "no item without its audit record, no record without its item"
    );
    let env = [
        ("GATEHOUSE_DATABASE_URL".to_owned(), direct),
        (
            "GATEHOUSE_SECRET_KEY".to_owned(),
            crate::support::GOOD_KEY.to_owned(),
        ),
    ];
    assert_audit_chain_verifies(&env);
}

#[tokio::test]
async fn a_database_that_stops_answering_is_a_503_after_the_acquire_timeout_not_a_hang() {
    let Some((proxy, app, token, _)) = app_behind_proxy(
        "faults::a_database_that_stops_answering_is_a_503_after_the_acquire_timeout_not_a_hang",
        &[],
    )
    .await
    else {
        return;
    };
    proxy.hang();
    app.clock.advance(Duration::from_secs(6));
    let asked = Instant::now();
    let requests = (0..6).map(|_| {
        app.request(reqwest::Method::GET, "/api/v1/items")
            .bearer_auth(&token)
            .send()
    });
    let statuses: Vec<u16> = futures_util::future::join_all(requests)
        .await
        .iter()
        .map(|r| r.as_ref().unwrap().status().as_u16())
        .collect();
    assert_eq!(
        statuses, [503; 6],
        "no pooled connection within the acquire timeout"
    );
    assert!(
        asked.elapsed() < Duration::from_secs(5),
        "answered after the acquire timeout, long before the request timeout: {:?}",
        asked.elapsed()
    );
    proxy.restore();
    app.clock.advance(Duration::from_secs(6));
    let res = app
        .request(reqwest::Method::GET, "/api/v1/items")
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "back without a restart");
}

#[tokio::test]
async fn a_database_outage_is_a_503_with_retry_after_and_recovery_needs_no_restart() {
    let Some((proxy, app, token, _)) = app_behind_proxy(
        "faults::a_database_outage_is_a_503_with_retry_after_and_recovery_needs_no_restart",
        &[],
    )
    .await
    else {
        return;
    };
    let items = || {
        app.request(reqwest::Method::GET, "/api/v1/items")
            .bearer_auth(&token)
            .send()
    };
    let write = || {
        app.request(reqwest::Method::POST, "/api/v1/items")
            .bearer_auth(&token)
            .json(&serde_json::json!({"name": "Lamp", "description": "A desk lamp."}))
            .send()
    };
    assert_eq!(items().await.unwrap().status(), 200);
    assert_eq!(
        write().await.unwrap().status(),
        201,
        "the writer's connection is open"
    );

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
    let asked = Instant::now();
    assert_eq!(
        write().await.unwrap().status(),
        503,
        "a write fails closed too"
    );
    assert!(
        asked.elapsed() < Duration::from_secs(5),
        "no hang: {:?}",
        asked.elapsed()
    );
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
    assert_eq!(
        write().await.unwrap().status(),
        201,
        "writes are back too: the writer connects again"
    );
    assert_eq!(readiness(&app).await.0, 200);
}

crate::on_every_backend! {
    async fn an_instance_killed_in_a_write_burst_loses_no_acknowledged_write(backend) {
        let dir = tempfile::tempdir().unwrap();
        let database_url = match backend {
            Backend::Sqlite => format!("sqlite://{}/gatehouse.db", dir.path().display()),
            Backend::Postgres => crate::support::backend::fresh_postgres_database().await,
        };
        let data_dir = dir.path().join("data").display().to_string();
        let env = env_of(&[
            ("GATEHOUSE_DATABASE_URL", database_url.as_str()),
            ("GATEHOUSE_DATA_DIR", data_dir.as_str()),
            ("GATEHOUSE_SECRET_KEY", crate::support::GOOD_KEY),
            ("GATEHOUSE_LISTEN", "127.0.0.1:0"),
            ("GATEHOUSE_LOG_FORMAT", "text"),
            ("GATEHOUSE_RATE_LIMIT", "off"),
            ("GATEHOUSE_API_RATE_LIMIT", "off"),
            ("GATEHOUSE_SIGNIN_RATE_LIMIT", "off"),
        ]);
        let out = run_cli_with_stdin(&env, &["user", "add", "--email", EMAIL, "--password-stdin"], PASSWORD);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let mut server = ServedBinary::start(&env);
        let listening = server.wait_for_line("Gatehouse is listening").await;
        let address = listening.split("address=").nth(1).and_then(|r| r.split_whitespace().next()).unwrap().to_owned();
        let client = reqwest::Client::new();
        let token: Value = client.post(format!("http://{address}/api/v1/auth/token"))
            .json(&serde_json::json!({"grant_type": "password", "email": EMAIL, "password": PASSWORD}))
            .send().await.unwrap().json().await.unwrap();
        let token = token["access_token"].as_str().unwrap().to_owned();

        // A hundred writes, sixteen at a time; the server dies once a third are acknowledged.
        let acknowledged = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
        let shared = (client.clone(), address.clone(), token.clone(), acknowledged.clone());
        let writes = futures_util::stream::iter(0..100).map(move |i| {
            let (client, address, token, acknowledged) = shared.clone();
            async move {
                let res = client.post(format!("http://{address}/api/v1/items")).bearer_auth(token)
                    .json(&serde_json::json!({"name": format!("Burst {i}"), "description": "written during a crash"}))
                    .send().await;
                if let Some(res) = res.ok().filter(|r| r.status() == 201) {
                    if let Ok(item) = res.json::<Value>().await {
                        acknowledged.lock().unwrap().push(item["id"].as_str().unwrap().to_owned());
                    }
                }
            }
        }).buffer_unordered(16);
        let burst = tokio::spawn(writes.collect::<Vec<()>>());
        let deadline = Instant::now() + Duration::from_secs(60);
        while acknowledged.lock().unwrap().len() < 33 {
            assert!(Instant::now() < deadline, "the burst did not get going");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        server.kill();
        burst.await.unwrap();
        let acknowledged = acknowledged.lock().unwrap().clone();
        assert!((33..100).contains(&acknowledged.len()), "killed in the middle: {}", acknowledged.len());

        let db = gatehouse::store::Db::connect(&database_url, 1).await.unwrap();
        let stored: Vec<String> = db.query("SELECT id FROM items").fetch_all().await.unwrap().iter().map(|r| r.uuid(0).unwrap().to_string()).collect();
        for id in &acknowledged {
            assert!(stored.contains(id), "acknowledged item {id} was lost");
        }
        db.close().await;
        assert_audit_chain_verifies(&env);
    }
}

/// V4.1.5: with the database gone, access fails closed: a signed-in page, a cookie-authenticated
/// API read and a sign-in (form or password grant) are each a 503, never a page with the user's
/// data and never a session or a token.
#[tokio::test]
async fn with_the_database_gone_pages_api_reads_and_sign_ins_fail_closed() {
    let Some((proxy, app, token, _)) = app_behind_proxy(
        "faults::with_the_database_gone_pages_api_reads_and_sign_ins_fail_closed",
        &[],
    )
    .await
    else {
        return;
    };
    let mut signed_in = Visitor::new(&app);
    assert_eq!(sign_in(&mut signed_in).await.0, 303);
    let (status, _, page) = signed_in.get("/account").await;
    assert_eq!(status, 200);
    assert!(page.contains(EMAIL), "{page}");
    let cookie: String = signed_in
        .cookies
        .iter()
        .map(|(k, v)| format!("{k}={v}; "))
        .collect();
    let bearer_me = || {
        app.request(reqwest::Method::GET, "/api/v1/me")
            .bearer_auth(&token)
            .send()
    };
    assert_eq!(bearer_me().await.unwrap().status(), 200);
    let mut signing_in = Visitor::new(&app);
    let csrf = signing_in.csrf_from("/login").await;

    proxy.cut();
    // Whatever was checked in the last 5 s may be trusted without the database: wait that out.
    app.clock.advance(Duration::from_secs(6));
    for path in ["/account", "/items", "/"] {
        let (status, _, page) = signed_in.get(path).await;
        assert_eq!(status, 503, "{path}: {page}");
        assert!(!page.contains(EMAIL), "{path} shows the user: {page}");
    }
    let me = app
        .request(reqwest::Method::GET, "/api/v1/me")
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), 503, "the API with the session cookie");
    assert_eq!(
        bearer_me().await.unwrap().status(),
        503,
        "the API with an access token checked before the outage"
    );
    let (status, headers, page) = signing_in
        .post(
            "/login/password",
            &[
                ("csrf_token", &csrf),
                ("email", EMAIL),
                ("password", PASSWORD),
            ],
        )
        .await;
    assert_eq!(status, 503, "{page}");
    assert!(
        !headers
            .get_all("set-cookie")
            .iter()
            .any(|c| c.to_str().unwrap().starts_with("gatehouse=")),
        "no session without the database"
    );
    let grant = app
        .request(reqwest::Method::POST, "/api/v1/auth/token")
        .json(&serde_json::json!({"grant_type": "password", "email": EMAIL, "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(grant.status(), 503, "no token without the database");
}

/// V4.1.5: with Redis gone, a request made with a session kept there is refused, not let
/// through, on the API as on the pages (`redis_away_fails_fast_…` covers the pages); and the
/// sign-in limits, which cannot count, refuse the password grant rather than let it through.
#[tokio::test]
async fn with_redis_gone_a_session_cookie_and_a_sign_in_are_refused_not_let_through() {
    let Some(mut redis) = PrivateRedis::start(
        "faults::with_redis_gone_a_session_cookie_and_a_sign_in_are_refused_not_let_through",
    ) else {
        return;
    };
    // The sign-in limits at their defaults: they count in Redis.
    let app =
        crate::support::spawn_app_with(Backend::Sqlite, &[("GATEHOUSE_REDIS_URL", &redis.url())])
            .await;
    add_user(&app, EMAIL).password(PASSWORD).await;
    let mut v = Visitor::new(&app);
    assert_eq!(sign_in(&mut v).await.0, 303);
    let cookie: String = v
        .cookies
        .iter()
        .map(|(k, v)| format!("{k}={v}; "))
        .collect();
    let me = || {
        app.request(reqwest::Method::GET, "/api/v1/me")
            .header("cookie", &cookie)
            .send()
    };
    assert_eq!(me().await.unwrap().status(), 200);

    redis.stop();
    let res = me().await.unwrap();
    assert_eq!(res.status(), 503, "the session cannot be checked");
    assert!(!res.text().await.unwrap().contains(EMAIL));
    let grant = app
        .request(reqwest::Method::POST, "/api/v1/auth/token")
        .json(&serde_json::json!({"grant_type": "password", "email": EMAIL, "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    let status = grant.status().as_u16();
    let body = grant.text().await.unwrap();
    assert!(
        status == 503 || status == 429,
        "a sign-in the limits cannot count is refused: {status} {body}"
    );
    assert!(!body.contains("access_token"), "{body}");
}
