//! Every response carries the security headers; CSP nonces are fresh and match the page; no
//! answer names the server's software; API answers are downloads, pages are not.

use reqwest::Method;
use serde_json::json;

use crate::backend_agnostic;
use crate::support::{
    GOOD_KEY, TestApp, add_user, api_token, spawn_app, spawn_app_with, spawn_unlimited_app,
};

const PASSWORD: &str = "Vermilion-Otter-42";

/// One answer of each kind the server gives, named: pages, the API (success and every kind of
/// error, from handlers and from the pipeline), static files, health, the documents.
async fn one_answer_of_each_kind(app: &TestApp) -> Vec<(&'static str, reqwest::Response)> {
    add_user(app, "ada@example.com").password(PASSWORD).await;
    let token = api_token(app, "ada@example.com", PASSWORD).await;
    let send = |builder: reqwest::RequestBuilder| async move { builder.send().await.unwrap() };
    let api = |method: Method, path: &str| app.request(method, path).bearer_auth(&token);
    let html = |path: &str| app.request(Method::GET, path).header("accept", "text/html");
    vec![
        ("home page", app.get("/").await),
        ("sign-in page", app.get("/login").await),
        ("page 404", send(html("/no/such/page")).await),
        ("page 405", send(app.request(Method::TRACE, "/")).await),
        ("static file", app.get("/static/app.css").await),
        ("static 404", app.get("/static/nothing.js").await),
        ("healthz", app.get("/healthz").await),
        ("readyz", app.get("/readyz").await),
        ("API 200", send(api(Method::GET, "/api/v1/items")).await),
        (
            "API 201",
            send(
                api(Method::POST, "/api/v1/items")
                    .json(&json!({"name": "Lamp", "description": "A desk lamp."})),
            )
            .await,
        ),
        (
            "API revoke",
            send(api(Method::POST, "/api/v1/auth/revoke").json(&json!({"token": "nothing"}))).await,
        ),
        (
            "API 400",
            send(api(Method::GET, "/api/v1/items?q=a&q=b")).await,
        ),
        ("API 401", app.get("/api/v1/me").await),
        (
            "API 404",
            send(api(
                Method::GET,
                "/api/v1/items/00000000-0000-0000-0000-000000000000",
            ))
            .await,
        ),
        ("API 404 without a route", app.get("/api/v1/nothing").await),
        (
            "API 415",
            send(api(Method::POST, "/api/v1/items").body("name=Lamp")).await,
        ),
        (
            "API 422",
            send(api(Method::POST, "/api/v1/items").json(&json!({}))).await,
        ),
        ("OpenAPI document", app.get("/api/v1/openapi.json").await),
        ("JWKS", app.get("/.well-known/jwks.json").await),
    ]
}

fn assert_security_headers(res: &reqwest::Response, what: &str) {
    let h = res.headers();
    let get = |name: &str| {
        h.get(name)
            .unwrap_or_else(|| panic!("{what}: missing {name}"))
            .to_str()
            .unwrap()
            .to_owned()
    };
    let csp = get("content-security-policy");
    for directive in [
        "default-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "frame-ancestors 'none'",
        "form-action 'self'",
        "report-uri /csp-report",
    ] {
        assert!(
            csp.contains(directive),
            "{what}: CSP lacks {directive}: {csp}"
        );
    }
    assert!(csp.contains("script-src 'self' 'nonce-"), "{what}: {csp}");
    assert!(!csp.contains("unsafe-inline"), "{what}: {csp}");
    assert_eq!(get("x-frame-options"), "DENY", "{what}");
    assert_eq!(get("x-content-type-options"), "nosniff", "{what}");
    assert_eq!(
        get("referrer-policy"),
        "strict-origin-when-cross-origin",
        "{what}"
    );
    assert!(get("permissions-policy").contains("camera=()"), "{what}");
    assert_eq!(get("cross-origin-opener-policy"), "same-origin", "{what}");
    assert_eq!(get("cross-origin-resource-policy"), "same-origin", "{what}");
    assert!(
        h.get("x-request-id").is_some(),
        "{what}: missing x-request-id"
    );
}

fn nonce_of(res: &reqwest::Response) -> String {
    let csp = res.headers()["content-security-policy"].to_str().unwrap();
    let start = csp.find("'nonce-").expect("nonce in CSP") + "'nonce-".len();
    let end = start + csp[start..].find('\'').unwrap();
    csp[start..end].to_owned()
}

backend_agnostic! {
    async fn every_kind_of_response_carries_the_security_headers(backend) {
        let app = spawn_app_with(backend, &[("GATEHOUSE_BODY_LIMIT", "1KiB")]).await;
        assert_security_headers(&app.get("/").await, "home page");
        assert_security_headers(&app.get("/healthz").await, "healthz");
        assert_security_headers(&app.get("/no/such/page").await, "404");
        let trace = app.request(reqwest::Method::TRACE, "/").send().await.unwrap();
        assert_security_headers(&trace, "405");
        let too_big = app
            .request(reqwest::Method::POST, "/csp-report")
            .header("content-type", "application/csp-report")
            .body(vec![b'x'; 4096])
            .send()
            .await
            .unwrap();
        assert_eq!(too_big.status(), 413);
        assert_security_headers(&too_big, "413");
    }

    async fn csp_nonces_are_fresh_and_every_inline_tag_carries_the_nonce(backend) {
        let app = spawn_app(backend).await;
        let first = app.get("/").await;
        let second = app.get("/").await;
        let (n1, n2) = (nonce_of(&first), nonce_of(&second));
        assert_ne!(n1, n2, "a nonce must never repeat");
        assert!(n1.len() >= 22, "at least 128 bits: {n1}");
        let body = first.text().await.unwrap();
        for tag in ["<script", "<style"] {
            for (i, _) in body.match_indices(tag) {
                let end = i + body[i..].find('>').unwrap();
                assert!(
                    body[i..end].contains(&format!("nonce=\"{n1}\"")),
                    "inline {tag} without the nonce: {}",
                    &body[i..end]
                );
            }
        }
        assert!(!body.contains(" style=\""), "inline style attributes cannot carry a nonce");
    }

    async fn hsts_is_sent_in_production_only(backend) {
        let dev = spawn_app(backend).await;
        assert!(dev.get("/").await.headers().get("strict-transport-security").is_none());
        let prod = spawn_app_with(
            backend,
            &[
                ("GATEHOUSE_ENV", "production"),
                ("GATEHOUSE_SECRET_KEY", GOOD_KEY),
                ("GATEHOUSE_PUBLIC_URL", "https://gate.example"),
                ("SMTP_HOST", "127.0.0.1"),
            ],
        )
        .await;
        let res = prod.get("/").await;
        assert_eq!(
            res.headers()["strict-transport-security"],
            "max-age=63072000; includeSubDomains"
        );
    }

    async fn tokens_in_urls_and_credentials_never_reach_the_log(backend) {
        let app = spawn_app(backend).await;
        let res = app
            .request(reqwest::Method::GET, "/?token=query-secret-5f1e")
            .header("authorization", "Bearer header-secret-77ab")
            .header("cookie", "gatehouse=cookie-secret-90cd")
            .send()
            .await
            .unwrap();
        let id = res.headers()["x-request-id"].to_str().unwrap().to_owned();
        let line = crate::support::request_log(&id);
        assert_eq!(line["span"]["route"], "/");
        let logs = crate::support::captured_log_text();
        for secret in ["query-secret-5f1e", "header-secret-77ab", "cookie-secret-90cd"] {
            assert!(!logs.contains(secret), "{secret} reached the log");
        }
    }

    async fn no_answer_names_the_server_software(backend) {
        let app = spawn_unlimited_app(backend, &[]).await;
        for (what, res) in one_answer_of_each_kind(&app).await {
            for header in ["server", "x-powered-by"] {
                assert!(
                    res.headers().get(header).is_none(),
                    "{what} ({}) names the software in {header}: {:?}",
                    res.status(),
                    res.headers()[header]
                );
            }
        }
    }

    async fn api_answers_are_downloads_and_pages_are_not(backend) {
        let app = spawn_unlimited_app(backend, &[]).await;
        let answers = one_answer_of_each_kind(&app).await;
        for (what, res) in &answers {
            let disposition = res.headers().get("content-disposition").map(|v| v.to_str().unwrap());
            let api = what.starts_with("API") || *what == "OpenAPI document" || *what == "JWKS";
            if api {
                assert_eq!(disposition, Some("attachment; filename=\"api.json\""), "{what} ({})", res.status());
            } else {
                assert_eq!(disposition, None, "{what} ({}) is shown, not saved", res.status());
            }
        }
        assert!(answers.iter().any(|(what, res)| *what == "API 200" && res.status() == 200));

        // The pipeline's own refusals under /api/ are downloads too.
        let limited = spawn_app_with(backend, &[("GATEHOUSE_RATE_LIMIT", "2/min")]).await;
        let mut last = limited.get("/api/v1/me").await;
        for _ in 0..3 {
            last = limited.get("/api/v1/me").await;
        }
        assert_eq!(last.status(), 429);
        assert_eq!(last.headers()["content-disposition"], "attachment; filename=\"api.json\"");
    }
}
