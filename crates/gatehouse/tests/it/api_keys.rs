//! API keys over HTTP: made with a fresh access token, shown once, scoped, usable as a bearer
//! token or as `X-API-Key`, expiring and revocable.

use std::time::Duration;

use serde_json::{Value, json};

use crate::on_every_backend;
use crate::support::{TestApp, add_user};

const PASSWORD: &str = "Vermilion-Otter-42";

async fn call(
    app: &TestApp,
    auth: (&str, &str),
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = app.request(method, path).header(auth.0, auth.1);
    if let Some(body) = body {
        req = req.json(&body);
    }
    let res = req.send().await.unwrap();
    (
        res.status().as_u16(),
        res.json().await.unwrap_or(Value::Null),
    )
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

async fn make_key(app: &TestApp, token: &str, scopes: Value, days: Option<i64>) -> (u16, Value) {
    let mut body = json!({"name": "CI job", "scopes": scopes});
    if let Some(days) = days {
        body["expires_in_days"] = json!(days);
    }
    call(
        app,
        ("authorization", &bearer(token)),
        reqwest::Method::POST,
        "/api/v1/api-keys",
        Some(body),
    )
    .await
}

on_every_backend! {
    async fn a_key_is_shown_once_and_works_within_its_scopes(backend) {
        let (app, sink) = crate::support::spawn_app_with_mail(backend, &[]).await;
        add_user(&app, "ada@example.com").password(PASSWORD).await;
        let token = crate::support::api_token(&app, "ada@example.com", PASSWORD).await;
        let (status, made) = make_key(&app, &token, json!(["items:read"]), None).await;
        assert_eq!(status, 201, "{made}");
        let key = made["key"].as_str().unwrap().to_owned();
        assert!(key.starts_with("gk_") && key.len() == 46, "{key}");
        let (_, listed) = call(&app, ("authorization", &bearer(&token)), reqwest::Method::GET, "/api/v1/api-keys", None).await;
        assert!(!listed.to_string().contains(&key), "the key is never shown again: {listed}");
        assert_eq!(listed["api_keys"][0]["prefix"], &key[..10]);
        assert!(sink.wait_for("ada@example.com").await.data.contains("new API key"));
        let whole = |days: Value| json!({"name": "float days", "scopes": ["items:read"], "expires_in_days": days});
        let (status, body) = call(&app, ("authorization", &bearer(&token)), reqwest::Method::POST, "/api/v1/api-keys", Some(whole(json!(30.0)))).await;
        assert_eq!(status, 201, "JSON's 30.0 is the whole number 30: {body}");
        let (status, _) = call(&app, ("authorization", &bearer(&token)), reqwest::Method::POST, "/api/v1/api-keys", Some(whole(json!(30.5)))).await;
        assert_eq!(status, 422, "a fraction of a day is refused");

        // Both ways of presenting it; the read scope reads and does not write.
        for auth in [("authorization", bearer(&key)), ("x-api-key", key.clone())] {
            let (status, body) = call(&app, (auth.0, &auth.1), reqwest::Method::GET, "/api/v1/items", None).await;
            assert_eq!(status, 200, "{body}");
        }
        let (status, body) = call(&app, ("x-api-key", &key), reqwest::Method::POST, "/api/v1/items", Some(json!({"name": "Lamp", "description": "A desk lamp."}))).await;
        assert_eq!(status, 403, "no items:write scope: {body}");
        let (status, _) = call(&app, ("x-api-key", &key), reqwest::Method::POST, "/api/v1/api-keys", Some(json!({"name": "x", "scopes": ["items:read"]}))).await;
        assert_eq!(status, 403, "a key cannot make keys");

        let (_, writer) = make_key(&app, &token, json!(["items:read", "items:write"]), None).await;
        let writer = writer["key"].as_str().unwrap().to_owned();
        let (status, _) = call(&app, ("authorization", &bearer(&writer)), reqwest::Method::POST, "/api/v1/items", Some(json!({"name": "Lamp", "description": "A desk lamp."}))).await;
        assert_eq!(status, 201);

        // Revoked: refused at once.
        let id = made["api_key"]["id"].as_str().unwrap();
        let (status, _) = call(&app, ("authorization", &bearer(&token)), reqwest::Method::DELETE, &format!("/api/v1/api-keys/{id}"), None).await;
        assert_eq!(status, 204);
        let (status, _) = call(&app, ("x-api-key", &key), reqwest::Method::GET, "/api/v1/items", None).await;
        assert_eq!(status, 401);
        let (status, _) = call(&app, ("x-api-key", "gk_made-up-key-that-is-not-real-at-all-xxxxxxxx"), reqwest::Method::GET, "/api/v1/items", None).await;
        assert_eq!(status, 401);
        let records = gatehouse::audit::records_after(&app.db, 0, 100).await.unwrap();
        assert!(records.iter().any(|r| r.action == "api_key.create"));
        assert!(records.iter().any(|r| r.action == "api_key.revoke"));
    }

    async fn keys_need_a_fresh_sign_in_expire_and_stay_their_owners(backend) {
        let app = crate::support::spawn_unlimited_app(backend, &[]).await;
        add_user(&app, "ada@example.com").password(PASSWORD).await;
        add_user(&app, "bo@example.com").role("admin").password(PASSWORD).await;
        let token = crate::support::api_token(&app, "ada@example.com", PASSWORD).await;
        let (status, body) = make_key(&app, &token, json!(["admin"]), Some(400)).await;
        assert_eq!(status, 422, "{body}");
        assert_eq!(body["errors"].as_array().unwrap().len(), 2);
        let (status, made) = make_key(&app, &token, json!(["items:read"]), Some(1)).await;
        assert_eq!(status, 201);
        let key = made["key"].as_str().unwrap().to_owned();

        // Someone else cannot see or revoke it, and a key opens no admin route.
        let other = crate::support::api_token(&app, "bo@example.com", PASSWORD).await;
        let id = made["api_key"]["id"].as_str().unwrap();
        let (status, _) = call(&app, ("authorization", &bearer(&other)), reqwest::Method::DELETE, &format!("/api/v1/api-keys/{id}"), None).await;
        assert_eq!(status, 404);
        let (_, listed) = call(&app, ("authorization", &bearer(&other)), reqwest::Method::GET, "/api/v1/api-keys", None).await;
        assert_eq!(listed["api_keys"].as_array().unwrap().len(), 0);
        let (_, admin_made) = make_key(&app, &other, json!(["items:read"]), None).await;
        let admin_key = admin_made["key"].as_str().unwrap().to_owned();
        let (status, _) = call(&app, ("x-api-key", &admin_key), reqwest::Method::GET, "/api/v1/admin/users", None).await;
        assert_eq!(status, 403, "an admin's key is not an admin");

        // Ten minutes after the password grant, the same token can no longer make keys.
        app.clock.advance(Duration::from_secs(11 * 60));
        let (status, _) = make_key(&app, &token, json!(["items:read"]), None).await;
        assert_eq!(status, 403);

        // A day later the one-day key stops working.
        assert_eq!(call(&app, ("x-api-key", &key), reqwest::Method::GET, "/api/v1/items", None).await.0, 200);
        app.clock.advance(Duration::from_secs(24 * 3600));
        assert_eq!(call(&app, ("x-api-key", &key), reqwest::Method::GET, "/api/v1/items", None).await.0, 401);
    }
}

on_every_backend! {
    async fn the_account_page_makes_shows_once_and_revokes_keys(backend) {
        let app = crate::support::spawn_unlimited_app(backend, &[]).await;
        add_user(&app, "ada@example.com").password(PASSWORD).await;
        let mut v = crate::support::visitor::Visitor::new(&app);
        let csrf = v.csrf_from("/login").await;
        v.post("/login/password", &[("csrf_token", &csrf), ("email", "ada@example.com"), ("password", PASSWORD)]).await;
        let csrf = v.csrf_from("/account/api-keys").await;
        let (status, _, _) = v.post("/account/api-keys", &[("name", "export"), ("scope_read", "on"), ("days", "30")]).await;
        assert_eq!(status, 403, "no CSRF token, no key");
        let (status, _, page) = v.post("/account/api-keys", &[("csrf_token", &csrf), ("name", "export"), ("scope_read", "on"), ("days", "30")]).await;
        assert_eq!(status, 201, "{page}");
        let start = page.find("<code id=\"new-key\">").expect("the key is shown") + "<code id=\"new-key\">".len();
        let key = page[start..start + 46].to_owned();
        assert!(key.starts_with("gk_"));
        assert_eq!(call(&app, ("x-api-key", &key), reqwest::Method::GET, "/api/v1/items", None).await.0, 200);
        let (_, _, page) = v.get("/account/api-keys").await;
        assert!(!page.contains(&key) && page.contains(&key[..10]), "only the prefix is shown again");
        let (status, _, page) = v.post("/account/api-keys", &[("csrf_token", &csrf), ("name", "bad"), ("days", "500")]).await;
        assert_eq!(status, 422, "no scope and too long: {page}");

        let id_marker = "name=\"id\" value=\"";
        let at = page.find(id_marker).unwrap() + id_marker.len();
        let id = page[at..at + 36].to_owned();
        let (status, _, _) = v.post("/account/api-keys/revoke", &[("csrf_token", &csrf), ("id", &id)]).await;
        assert_eq!(status, 303);
        assert_eq!(call(&app, ("x-api-key", &key), reqwest::Method::GET, "/api/v1/items", None).await.0, 401);

        app.clock.advance(Duration::from_secs(11 * 60));
        let (status, _, page) = v.post("/account/api-keys", &[("csrf_token", &csrf), ("name", "late"), ("scope_read", "on"), ("days", "30")]).await;
        assert_eq!(status, 403, "a sign-in more than ten minutes old: {page}");
        assert!(page.contains("sign in again"));
    }
}

on_every_backend! {
    // ASVS V2.3.3: renewal instructions a week before a key expires, once, and not for a key
    // made to live a week or less.
    async fn the_owner_is_reminded_once_a_week_before_a_key_expires(backend) {
        let (app, sink) = crate::support::spawn_app_with_mail(backend, &[]).await;
        add_user(&app, "ada@example.com").password(PASSWORD).await;
        let token = crate::support::api_token(&app, "ada@example.com", PASSWORD).await;
        let make = |name: &'static str, days: i64| {
            let (app, token) = (&app, token.clone());
            async move {
                let body = json!({"name": name, "scopes": ["items:read"], "expires_in_days": days});
                let (status, made) = call(app, ("authorization", &bearer(&token)), reqwest::Method::POST, "/api/v1/api-keys", Some(body)).await;
                assert_eq!(status, 201, "{made}");
                made["key"].as_str().unwrap().to_owned()
            }
        };
        make("short", 5).await;
        let ten_days = make("ten days", 10).await;
        let subject = |name: &str| format!("API key \"{name}\" expires soon");
        let unreminded = |name: &'static str| {
            let app = &app;
            async move {
                let n: i64 = app.db.query("SELECT COUNT(*) FROM api_keys WHERE name = $1 AND reminded_at IS NULL").bind(name).fetch_one().await.unwrap().get(0).unwrap();
                n == 1
            }
        };

        // Three days on, the ten-day key has a week left: its owner is told how to renew it.
        app.clock.advance(Duration::from_secs(3 * 24 * 3600 + 1));
        let mail = sink.wait_for_containing("ada@example.com", &subject("ten days")).await;
        assert!(mail.data.contains(&ten_days[..10]) && mail.data.contains("/account/api-keys"), "{}", mail.data);
        assert!(!mail.data.contains(&ten_days), "never the key itself");
        // Keys are looked at soonest-expiring first: the five-day key was passed over already.
        assert!(unreminded("short").await, "a key made for five days is not reminded");
        assert!(!unreminded("ten days").await);

        // A key made now for eight days is due a day later; when its reminder arrives, the
        // ten-day key (due too, and looked at first) was not reminded again.
        app.clock.advance(Duration::from_secs(3600));
        let token = crate::support::api_token(&app, "ada@example.com", PASSWORD).await;
        let body = json!({"name": "eight days", "scopes": ["items:read"], "expires_in_days": 8});
        assert_eq!(call(&app, ("authorization", &bearer(&token)), reqwest::Method::POST, "/api/v1/api-keys", Some(body)).await.0, 201);
        app.clock.advance(Duration::from_secs(24 * 3600 + 1));
        sink.wait_for_containing("ada@example.com", &subject("eight days")).await;
        let told = sink.messages_to("ada@example.com").into_iter().filter(|m| m.data.contains(&subject("ten days"))).count();
        assert_eq!(told, 1, "one reminder per key");
        assert!(!sink.messages_to("ada@example.com").iter().any(|m| m.data.contains(&subject("short"))));
    }
}
