//! Prometheus metrics on their own listener, never on the public one.

use crate::backend_agnostic;
use crate::support::{spawn_app, spawn_app_with};

backend_agnostic! {
    async fn metrics_are_served_on_their_own_address(backend) {
        let app = spawn_app_with(backend, &[("GATEHOUSE_METRICS_LISTEN", "127.0.0.1:0")]).await;
        assert_eq!(app.get("/healthz").await.status(), 200);
        let addr = app.metrics_addr.expect("metrics listener bound");
        let text = reqwest::get(format!("http://{addr}/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(
            text.contains(r#"gatehouse_http_requests_total{method="GET",route="/healthz",status="200"}"#),
            "{text}"
        );
        assert!(text.contains("gatehouse_http_request_duration_seconds_bucket"), "{text}");
        assert_eq!(app.get("/metrics").await.status(), 404, "not on the public listener");
    }

    async fn random_paths_do_not_grow_the_metric_labels(backend) {
        let app = spawn_app_with(backend, &[("GATEHOUSE_METRICS_LISTEN", "127.0.0.1:0")]).await;
        app.get("/random-probe-a1").await;
        app.get("/random-probe-b2").await;
        let addr = app.metrics_addr.unwrap();
        let text = reqwest::get(format!("http://{addr}/metrics")).await.unwrap().text().await.unwrap();
        assert!(!text.contains("random-probe"), "{text}");
        assert!(text.contains(r#"route="<unmatched>",status="404"} 2"#), "{text}");
    }

    async fn without_a_metrics_address_nothing_is_exposed(backend) {
        let app = spawn_app(backend).await;
        assert!(app.metrics_addr.is_none());
        assert_eq!(app.get("/metrics").await.status(), 404);
    }
}
