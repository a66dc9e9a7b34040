//! What the server never hands out: directory listings or repository files, answers without a
//! content type, JSON that turns text into structure, pages that may evaluate strings as code
//! (ASVS V4.3.2, V12.5.1, V14.4.1, V5.3.6, V5.2.4).

use serde_json::{Value, json};

use crate::support::{add_user, api_token, spawn_app, spawn_unlimited_app};
use crate::{backend_agnostic, on_every_backend};

backend_agnostic! {
    async fn no_directory_or_repository_metadata_is_served(backend) {
        let app = spawn_app(backend).await;
        for path in [
            "/static", "/static/", "/.git/config", "/.git/HEAD", "/.DS_Store", "/static/.DS_Store",
            "/Thumbs.db", "/.svn/entries", "/.env", "/Cargo.toml", "/static/../Cargo.toml",
            "/static/%2e%2e/Cargo.toml", "/gatehouse-data/gatehouse.db", "/migrations/",
        ] {
            let res = app.get(path).await;
            assert_eq!(res.status(), 404, "{path}");
            let body = res.text().await.unwrap();
            for leak in ["app.css", "favicon", "[package]", "ref: refs", "GATEHOUSE_"] {
                assert!(!body.contains(leak), "{path} shows {leak}: {body}");
            }
        }
    }

    async fn no_page_may_evaluate_a_string_as_code(backend) {
        let app = spawn_app(backend).await;
        for path in ["/", "/login", "/nothing/here"] {
            let res = app.get(path).await;
            let csp = res.headers()["content-security-policy"].to_str().unwrap().to_owned();
            let script_src = csp
                .split(';')
                .map(str::trim)
                .find(|d| d.starts_with("script-src "))
                .unwrap_or_else(|| panic!("{path}: no script-src in {csp}"));
            for loose in ["'unsafe-eval'", "'wasm-unsafe-eval'", "'unsafe-inline'", "*", "data:", "http:", "https:"] {
                assert!(!script_src.split_whitespace().any(|s| s == loose), "{path}: {script_src}");
            }
        }
    }

    async fn every_answer_says_its_content_type(backend) {
        let app = spawn_app(backend).await;
        let mut answers = Vec::new();
        for path in ["/", "/login", "/healthz", "/readyz", "/api/v1/openapi.json", "/.well-known/jwks.json", "/static/app.css", "/nothing/here", "/api/v1/me"] {
            answers.push((format!("GET {path}"), app.get(path).await));
        }
        answers.push(("DELETE /login".into(), app.request(reqwest::Method::DELETE, "/login").send().await.unwrap()));
        answers.push(("POST /login/password without CSRF".into(), app.request(reqwest::Method::POST, "/login/password").form(&[("email", "a@b.example")]).send().await.unwrap()));
        for (what, res) in answers {
            let status = res.status();
            let content_type = res
                .headers()
                .get("content-type")
                .unwrap_or_else(|| panic!("{what} ({status}) has no Content-Type"))
                .to_str()
                .unwrap()
                .to_owned();
            if content_type.starts_with("text/") {
                assert!(content_type.to_ascii_lowercase().contains("charset=utf-8"), "{what}: {content_type}");
            }
        }
    }
}

on_every_backend! {
    async fn json_answers_keep_every_character_and_never_become_code(backend) {
        let app = spawn_unlimited_app(backend, &[]).await;
        add_user(&app, "ada@example.com").password("Vermilion-Otter-42").await;
        let token = api_token(&app, "ada@example.com", "Vermilion-Otter-42").await;
        let name = r#"x","role":"admin","y":"\u0041"#;
        let description = "</script><script>alert(1)</script> \"}]} Ωmega ✓ 東京 🗼 \\ ' `";
        let res = app
            .request(reqwest::Method::POST, "/api/v1/items")
            .bearer_auth(&token)
            .json(&json!({"name": name, "description": description}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 201);
        let location = res.headers()["location"].to_str().unwrap().to_owned();
        let res = app.request(reqwest::Method::GET, &location).bearer_auth(&token).send().await.unwrap();
        assert_eq!(res.status(), 200);
        assert!(res.headers()["content-type"].to_str().unwrap().starts_with("application/json"));
        assert_eq!(res.headers()["x-content-type-options"], "nosniff", "markup in the text is never sniffed into a page");
        let raw = res.text().await.unwrap();
        let item: Value = serde_json::from_str(&raw).unwrap();
        assert_eq!(item["name"], name, "{raw}");
        assert_eq!(item["description"], description, "{raw}");
        assert!(item.get("role").is_none() && item.get("y").is_none(), "text never becomes a member: {raw}");
    }
}
