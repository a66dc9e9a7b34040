//! Request IDs: generated, propagated when well formed, replaced when not.

use crate::backend_agnostic;
use crate::support::spawn_app;

backend_agnostic! {
    async fn a_request_id_is_generated_when_none_is_sent(backend) {
        let app = spawn_app(backend).await;
        let a = app.get("/healthz").await.headers()["x-request-id"].to_str().unwrap().to_owned();
        let b = app.get("/healthz").await.headers()["x-request-id"].to_str().unwrap().to_owned();
        assert_ne!(a, b);
        assert!(uuid::Uuid::parse_str(&a).is_ok(), "{a}");
    }

    async fn a_well_formed_incoming_request_id_is_kept_and_logged(backend) {
        let app = spawn_app(backend).await;
        let res = app
            .request(reqwest::Method::GET, "/healthz")
            .header("x-request-id", "lb-7f3a:2026.11_23-abc")
            .send()
            .await
            .unwrap();
        assert_eq!(res.headers()["x-request-id"], "lb-7f3a:2026.11_23-abc");
        let line = crate::support::request_log("lb-7f3a:2026.11_23-abc");
        assert_eq!(line["status"], 200);
    }

    async fn a_malformed_incoming_request_id_is_replaced(backend) {
        let app = spawn_app(backend).await;
        for bad in ["<script>alert(1)</script>", "has spaces", &"a".repeat(129), ""] {
            let res = app
                .request(reqwest::Method::GET, "/healthz")
                .header("x-request-id", bad)
                .send()
                .await
                .unwrap();
            let id = res.headers()["x-request-id"].to_str().unwrap();
            assert_ne!(id, bad);
            assert!(uuid::Uuid::parse_str(id).is_ok(), "{id}");
        }
    }

    async fn error_bodies_carry_the_request_id(backend) {
        let app = spawn_app(backend).await;
        let res = app
            .request(reqwest::Method::GET, "/missing")
            .header("x-request-id", "trace-me-123")
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 404);
        let body: serde_json::Value = res.json().await.unwrap();
        assert_eq!(body["request_id"], "trace-me-123");
        let page = app
            .request(reqwest::Method::GET, "/missing")
            .header("x-request-id", "trace-me-456")
            .header("accept", "text/html")
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(page.contains("trace-me-456"), "{page}");
    }
}
