//! Every response carries the security headers; CSP nonces are fresh and match the page.

use crate::backend_agnostic;
use crate::support::{GOOD_KEY, spawn_app, spawn_app_with};

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
}
