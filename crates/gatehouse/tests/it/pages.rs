//! The home page, static assets and CSP reports.

use crate::backend_agnostic;
use crate::support::spawn_app;

backend_agnostic! {
    async fn the_home_page_renders_with_its_stylesheet(backend) {
        let app = spawn_app(backend).await;
        let res = app.get("/").await;
        assert_eq!(res.status(), 200);
        assert!(res.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
        let page = res.text().await.unwrap();
        assert!(page.contains("<html lang=\"en\">"));
        assert!(page.contains("Skip to content"));
        let start = page.find("/static/app.").expect("stylesheet link");
        let end = start + page[start..].find('"').unwrap();
        let css = app.get(&page[start..end]).await;
        assert_eq!(css.status(), 200);
        assert_eq!(css.headers()["content-type"], "text/css; charset=utf-8");
        assert_eq!(css.headers()["cache-control"], "public, max-age=31536000, immutable");
    }

    async fn plain_asset_names_are_cached_briefly_and_revalidated(backend) {
        let app = spawn_app(backend).await;
        let res = app.get("/static/app.css").await;
        assert_eq!(res.status(), 200);
        assert_eq!(res.headers()["cache-control"], "public, max-age=300");
        let etag = res.headers()["etag"].clone();
        let again = app
            .request(reqwest::Method::GET, "/static/app.css")
            .header("if-none-match", etag)
            .send()
            .await
            .unwrap();
        assert_eq!(again.status(), 304);
        assert_eq!(app.get("/static/../Cargo.toml").await.status(), 404);
        assert_eq!(app.get("/static/nothing.js").await.status(), 404);
    }

    async fn csp_reports_are_accepted_in_both_formats(backend) {
        let app = spawn_app(backend).await;
        let legacy = app
            .request(reqwest::Method::POST, "/csp-report")
            .header("content-type", "application/csp-report")
            .body(r#"{"csp-report":{"document-uri":"https://gate.example/a?token=csp-secret-1","violated-directive":"script-src","blocked-uri":"inline"}}"#)
            .send()
            .await
            .unwrap();
        assert_eq!(legacy.status(), 204);
        let modern = app
            .request(reqwest::Method::POST, "/csp-report")
            .header("content-type", "application/reports+json")
            .body(r#"[{"type":"csp-violation","body":{"documentURL":"https://gate.example/","effectiveDirective":"style-src","blockedURL":"inline"}}]"#)
            .send()
            .await
            .unwrap();
        assert_eq!(modern.status(), 204);
        let logs = crate::support::captured_log_text();
        assert!(logs.contains("csp_violation"));
        assert!(!logs.contains("csp-secret-1"), "report URIs lose their query");
    }

    async fn csp_reports_of_another_type_are_refused(backend) {
        let app = spawn_app(backend).await;
        let res = app
            .request(reqwest::Method::POST, "/csp-report")
            .header("content-type", "text/plain")
            .body("hello")
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 415);
    }
}
