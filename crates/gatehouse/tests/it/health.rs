//! Liveness and readiness.

use std::net::TcpListener;

use crate::support::{redis_url, spawn_app, spawn_app_with};
use crate::{backend_agnostic, on_every_backend};

/// A loopback address where nothing listens.
fn closed_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

backend_agnostic! {
    async fn healthz_answers_without_touching_the_database(backend) {
        let app = spawn_app(backend).await;
        let res = app.get("/healthz").await;
        assert_eq!(res.status(), 200);
        assert_eq!(res.json::<serde_json::Value>().await.unwrap()["status"], "ok");
        app.db.close().await;
        assert_eq!(app.get("/healthz").await.status(), 200);
    }

    async fn the_data_directory_is_readable_by_its_owner_only(backend) {
        use std::os::unix::fs::PermissionsExt as _;
        let app = spawn_app(backend).await;
        let mode = std::fs::metadata(&app.data_dir).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700, "{mode:o}");
    }

    async fn readyz_is_503_when_redis_is_unreachable(backend) {
        let url = format!("redis://127.0.0.1:{}", closed_port());
        let app = spawn_app_with(backend, &[("GATEHOUSE_REDIS_URL", &url)]).await;
        let res = app.get("/readyz").await;
        assert_eq!(res.status(), 503);
        let body: serde_json::Value = res.json().await.unwrap();
        assert_eq!(body["checks"]["database"], "ok");
        assert_eq!(body["checks"]["redis"], "unavailable");
    }

    async fn readyz_checks_a_real_redis(backend) {
        let Some(url) = redis_url("health::readyz_checks_a_real_redis") else { return };
        let app = spawn_app_with(backend, &[("GATEHOUSE_REDIS_URL", &url)]).await;
        let res = app.get("/readyz").await;
        assert_eq!(res.status(), 200);
        assert_eq!(res.json::<serde_json::Value>().await.unwrap()["checks"]["redis"], "ok");
    }
}

// Readiness asks the database, so it is checked on each.
on_every_backend! {
    async fn readyz_is_ready_when_the_database_answers(backend) {
        let app = spawn_app(backend).await;
        let res = app.get("/readyz").await;
        assert_eq!(res.status(), 200);
        let body: serde_json::Value = res.json().await.unwrap();
        assert_eq!(body["checks"]["database"], "ok");
        assert_eq!(body["checks"]["redis"], "not configured");
    }

    async fn readyz_is_503_when_the_database_is_unreachable(backend) {
        let app = spawn_app(backend).await;
        app.db.close().await;
        let res = app.get("/readyz").await;
        assert_eq!(res.status(), 503);
        let body: serde_json::Value = res.json().await.unwrap();
        assert_eq!(body["checks"]["database"], "unavailable");
        let text = body.to_string();
        assert!(!text.contains("closed"), "error details stay in the log: {text}");
    }
}
