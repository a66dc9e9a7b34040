//! Errors: problem+json for clients, an HTML page for browsers, nothing internal in either.

use crate::backend_agnostic;
use crate::support::spawn_app;

backend_agnostic! {
    async fn unknown_paths_get_a_problem_document(backend) {
        let app = spawn_app(backend).await;
        let res = app.get("/nothing/here").await;
        assert_eq!(res.status(), 404);
        assert_eq!(res.headers()["content-type"], "application/problem+json");
        let body: serde_json::Value = res.json().await.unwrap();
        assert_eq!(body["status"], 404);
        assert_eq!(body["title"], "Not Found");
        assert_eq!(body["type"], "about:blank");
    }

    async fn browsers_get_an_html_error_page(backend) {
        let app = spawn_app(backend).await;
        let res = app
            .request(reqwest::Method::GET, "/nothing/here")
            .header("accept", "text/html,application/xhtml+xml")
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 404);
        assert!(res.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
        let page = res.text().await.unwrap();
        assert!(page.contains("Not Found"));
        assert!(page.contains("<main"), "the page uses the site layout");
    }

    async fn trace_is_refused_with_the_allowed_methods(backend) {
        let app = spawn_app(backend).await;
        for (method, path, status, allow) in [
            (reqwest::Method::TRACE, "/", 405, Some("GET,HEAD")),
            (reqwest::Method::TRACE, "/healthz", 405, Some("GET,HEAD")),
            (reqwest::Method::TRACE, "/api/v1/items", 405, Some("GET,HEAD,POST")),
            (reqwest::Method::from_bytes(b"TRACK").unwrap(), "/healthz", 405, Some("GET,HEAD")),
            (reqwest::Method::TRACE, "/nothing", 404, None),
        ] {
            let res = app
                .request(method.clone(), path)
                .header("x-secret-probe", "reflected?")
                .header("cookie", "gatehouse_session=reflected?")
                .send()
                .await
                .unwrap();
            assert_eq!(res.status(), status, "{method} {path}");
            assert_eq!(res.headers().get("allow").map(|a| a.to_str().unwrap()), allow, "{method} {path}");
            assert_eq!(res.headers()["content-type"], "application/problem+json");
            let body = res.text().await.unwrap();
            assert!(!body.contains("reflected?"), "{method} echoed the request");
        }
    }

    async fn every_method_not_allowed_names_the_allowed_ones(backend) {
        let app = spawn_app(backend).await;
        for (method, path) in [
            (reqwest::Method::DELETE, "/healthz"),
            (reqwest::Method::PUT, "/api/v1/items"),
            (reqwest::Method::OPTIONS, "/api/v1/openapi.json"),
            (reqwest::Method::TRACE, "/api/v1/items/00000000-0000-0000-0000-000000000000"),
            (reqwest::Method::from_bytes(b"PURGE").unwrap(), "/"),
        ] {
            let res = app.request(method.clone(), path).send().await.unwrap();
            assert_eq!(res.status(), 405, "{method} {path}");
            let allow = res.headers().get("allow").unwrap_or_else(|| panic!("{method} {path}: no Allow"));
            assert!(allow.to_str().unwrap().contains("GET"), "{method} {path}: {allow:?}");
        }
    }

    async fn framework_errors_are_rewritten_as_problems(backend) {
        let app = spawn_app(backend).await;
        // The router's own 405 has no body; it leaves as a problem with the Allow header kept.
        let res = app.request(reqwest::Method::DELETE, "/healthz").send().await.unwrap();
        assert_eq!(res.status(), 405);
        assert!(res.headers().get("allow").is_some());
        assert_eq!(res.headers()["content-type"], "application/problem+json");
        let body: serde_json::Value = res.json().await.unwrap();
        assert!(body["request_id"].is_string());
    }

    async fn bad_input_errors_reveal_nothing_internal(backend) {
        let app = spawn_app(backend).await;
        let res = app
            .request(reqwest::Method::POST, "/csp-report")
            .header("content-type", "application/csp-report")
            .body("{not json")
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 400);
        let body = res.text().await.unwrap();
        for internal in ["serde", "line 1", "column", ".rs", "src/"] {
            assert!(!body.contains(internal), "{internal} in {body}");
        }
    }
}
