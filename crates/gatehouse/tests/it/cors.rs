//! CORS: only allowlisted origins, preflights answered, `null` never allowed.

use crate::backend_agnostic;
use crate::support::spawn_app_with;

const ALLOWED: &str = "https://app.example";

backend_agnostic! {
    async fn an_allowlisted_origin_is_allowed_with_credentials(backend) {
        let app = spawn_app_with(backend, &[("GATEHOUSE_CORS_ORIGINS", ALLOWED)]).await;
        let res = app
            .request(reqwest::Method::GET, "/healthz")
            .header("origin", ALLOWED)
            .send()
            .await
            .unwrap();
        assert_eq!(res.headers()["access-control-allow-origin"], ALLOWED);
        assert_eq!(res.headers()["access-control-allow-credentials"], "true");
        assert!(res.headers()["vary"].to_str().unwrap().contains("origin"));
    }

    async fn another_origin_gets_no_cors_grant(backend) {
        let app = spawn_app_with(backend, &[("GATEHOUSE_CORS_ORIGINS", ALLOWED)]).await;
        for origin in ["https://evil.example", "null", "https://app.example.evil.example", "http://app.example"] {
            let res = app
                .request(reqwest::Method::GET, "/healthz")
                .header("origin", origin)
                .send()
                .await
                .unwrap();
            assert!(
                res.headers().get("access-control-allow-origin").is_none(),
                "{origin} was granted access"
            );
        }
    }

    async fn a_preflight_from_an_allowlisted_origin_is_answered(backend) {
        let app = spawn_app_with(backend, &[("GATEHOUSE_CORS_ORIGINS", ALLOWED)]).await;
        let res = app
            .request(reqwest::Method::OPTIONS, "/csp-report")
            .header("origin", ALLOWED)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "content-type, x-csrf-token")
            .send()
            .await
            .unwrap();
        assert!(res.status().is_success(), "{}", res.status());
        assert_eq!(res.headers()["access-control-allow-origin"], ALLOWED);
        let methods = res.headers()["access-control-allow-methods"].to_str().unwrap();
        assert!(methods.contains("POST"), "{methods}");
        let headers = res.headers()["access-control-allow-headers"].to_str().unwrap().to_ascii_lowercase();
        assert!(headers.contains("x-csrf-token"), "{headers}");
    }

    async fn a_preflight_from_another_origin_is_not_granted(backend) {
        let app = spawn_app_with(backend, &[("GATEHOUSE_CORS_ORIGINS", ALLOWED)]).await;
        let res = app
            .request(reqwest::Method::OPTIONS, "/csp-report")
            .header("origin", "https://evil.example")
            .header("access-control-request-method", "POST")
            .send()
            .await
            .unwrap();
        assert!(res.headers().get("access-control-allow-origin").is_none());
    }

    async fn without_an_allowlist_no_origin_is_granted(backend) {
        let app = spawn_app_with(backend, &[]).await;
        let res = app
            .request(reqwest::Method::GET, "/healthz")
            .header("origin", ALLOWED)
            .send()
            .await
            .unwrap();
        assert!(res.headers().get("access-control-allow-origin").is_none());
        assert!(res.headers().get("access-control-allow-credentials").is_none());
    }
}
