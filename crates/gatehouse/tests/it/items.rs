//! The items API over HTTP: create, read, change, delete with ETags; validation with field
//! errors; who sees and changes whose items; pagination and search.

use serde_json::{Value, json};

use crate::support::{TestApp, add_user};
use crate::{backend_agnostic, on_every_backend};

const PASSWORD: &str = "Vermilion-Otter-42";

async fn app(backend: crate::support::Backend) -> TestApp {
    crate::support::spawn_unlimited_app(backend, &[]).await
}

/// Creates a user with `role` and returns an access token for them.
async fn token_for(app: &TestApp, email: &str, role: &str) -> String {
    add_user(app, email).role(role).password(PASSWORD).await;
    crate::support::api_token(app, email, PASSWORD).await
}

struct Reply {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: Value,
}

async fn call(
    app: &TestApp,
    token: &str,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
    if_match: Option<&str>,
) -> Reply {
    let mut req = app.request(method, path).bearer_auth(token);
    if let Some(body) = body {
        req = req.json(&body);
    }
    if let Some(tag) = if_match {
        req = req.header("if-match", tag);
    }
    let res = req.send().await.unwrap();
    let status = res.status().as_u16();
    let headers = res.headers().clone();
    Reply {
        status,
        headers,
        body: res.json().await.unwrap_or(Value::Null),
    }
}

async fn create(app: &TestApp, token: &str, name: &str) -> Value {
    let r = call(
        app,
        token,
        reqwest::Method::POST,
        "/api/v1/items",
        Some(json!({"name": name, "description": "A fine thing."})),
        None,
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.body);
    r.body
}

fn fields(problem: &Value) -> Vec<String> {
    problem["errors"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|e| e["field"].as_str().unwrap().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

on_every_backend! {
    // The writer keeps a connection of its own: with a pool of one, reads and writes at once
    // still all succeed (were the writer's connection taken from the pool, every read would
    // wait for it and end in a 503).
    async fn a_pool_of_one_connection_serves_reads_and_writes_at_once(backend) {
        let app = crate::support::spawn_unlimited_app(backend, &[("GATEHOUSE_DATABASE_MAX_CONNECTIONS", "1")]).await;
        let token = token_for(&app, "ada@example.com", "user").await;
        let work = (0..20).map(|i| {
            let (app, token) = (&app, &token);
            async move {
                if i % 2 == 0 {
                    create(app, token, &format!("Item {i}")).await;
                } else {
                    let r = call(app, token, reqwest::Method::GET, "/api/v1/items?limit=5", None, None).await;
                    assert_eq!(r.status, 200, "{}", r.body);
                }
            }
        });
        futures_util::future::join_all(work).await;
        let r = call(&app, &token, reqwest::Method::GET, "/api/v1/items?limit=50", None, None).await;
        assert_eq!(r.body["items"].as_array().map(Vec::len), Some(10), "{}", r.body);
    }

    // Writes from two instances at once, many of them in the same commit group, some failing
    // inside their group (a version that moved): every acknowledged write is there, no failed
    // one left a trace, and the audit chain is one unbroken line.
    async fn concurrent_writes_on_two_instances_lose_nothing_and_keep_one_chain(backend) {
        let first = app(backend).await;
        let second = crate::support::spawn_instance(&first, &[("GATEHOUSE_RATE_LIMIT", "off"), ("GATEHOUSE_API_RATE_LIMIT", "off")]).await;
        let token = token_for(&first, "ada@example.com", "user").await;
        // Each instance issues its own tokens (its address is the issuer).
        let second_token = crate::support::api_token(&second, "ada@example.com", PASSWORD).await;
        let target = create(&first, &token, "Target").await;
        let path = format!("/api/v1/items/{}", target["id"].as_str().unwrap());
        let before = gatehouse::audit::count(&first.db).await.unwrap();

        let writes = (0..60).map(|i| {
            let (app, token, path) = if i % 2 == 0 { (&first, &token, &path) } else { (&second, &second_token, &path) };
            async move {
                if i % 4 == 3 {
                    // Fifteen changes of version 1: one wins, the others fail in their
                    // transaction (the version moved), most of them inside a group.
                    let r = call(app, token, reqwest::Method::PATCH, path, Some(json!({"name": format!("Changed {i}")})), Some("\"1\"")).await;
                    assert!(r.status == 200 || r.status == 412, "{} {}", r.status, r.body);
                    (r.status == 200).then(|| "change".to_owned())
                } else {
                    Some(create(app, token, &format!("Item {i}")).await["id"].as_str().unwrap().to_owned())
                }
            }
        });
        let mut acknowledged: Vec<String> = futures_util::future::join_all(writes).await.into_iter().flatten().collect();
        let changes = acknowledged.iter().filter(|w| *w == "change").count();
        assert_eq!(changes, 1, "exactly one change of version 1 wins");
        acknowledged.retain(|w| w != "change");
        assert_eq!(acknowledged.len(), 45);
        for id in &acknowledged {
            let r = call(&second, &second_token, reqwest::Method::GET, &format!("/api/v1/items/{id}"), None, None).await;
            assert_eq!(r.status, 200, "acknowledged item {id} is missing");
        }
        let r = call(&first, &token, reqwest::Method::GET, &path, None, None).await;
        assert_eq!(r.headers["etag"], "\"2\"", "one change, no lost update: {}", r.body);
        let report = gatehouse::audit::verify(&first.db, None, |_| {}).await.unwrap();
        assert_eq!(report.broken, None);
        assert_eq!(report.checked, before + 46, "one record per acknowledged write, none for a refused one");
    }

    async fn an_item_is_created_read_changed_and_deleted_with_etags(backend) {
        let app = app(backend).await;
        let token = token_for(&app, "ada@example.com", "user").await;
        let r = call(&app, &token, reqwest::Method::POST, "/api/v1/items", Some(json!({"name": "  Lamp  ", "description": "A desk lamp."})), None).await;
        assert_eq!(r.status, 201, "{}", r.body);
        let id = r.body["id"].as_str().unwrap().to_owned();
        assert_eq!(r.headers["location"], format!("/api/v1/items/{id}").as_str());
        assert_eq!(r.headers["etag"], "\"1\"");
        assert_eq!(r.body["name"], "Lamp", "trimmed");

        let path = format!("/api/v1/items/{id}");
        let r = call(&app, &token, reqwest::Method::GET, &path, None, None).await;
        assert_eq!((r.status, r.body["description"].as_str()), (200, Some("A desk lamp.")));

        let r = call(&app, &token, reqwest::Method::PATCH, &path, Some(json!({"name": "Brass lamp"})), Some("\"1\"")).await;
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(r.headers["etag"], "\"2\"");
        assert_eq!(r.body["description"], "A desk lamp.", "PATCH keeps what it does not name");

        let r = call(&app, &token, reqwest::Method::PATCH, &path, Some(json!({"name": "Lost update"})), Some("\"1\"")).await;
        assert_eq!(r.status, 412, "a stale ETag changes nothing");
        let r = call(&app, &token, reqwest::Method::PATCH, &path, Some(json!({"description": "\u{1b}"})), Some("\"1\"")).await;
        assert_eq!(r.status, 422, "invalid fields are reported before the precondition");
        assert_eq!(call(&app, &token, reqwest::Method::GET, &path, None, None).await.body["name"], "Brass lamp");

        let r = call(&app, &token, reqwest::Method::PUT, &path, Some(json!({"name": "Only a name"})), None).await;
        assert_eq!(r.status, 422);
        assert_eq!(fields(&r.body), ["description"], "PUT needs every field");

        let r = call(&app, &token, reqwest::Method::DELETE, &path, None, Some("\"1\"")).await;
        assert_eq!(r.status, 412);
        let r = call(&app, &token, reqwest::Method::DELETE, &path, None, Some("\"2\"")).await;
        assert_eq!(r.status, 204);
        assert_eq!(call(&app, &token, reqwest::Method::GET, &path, None, None).await.status, 404);

        let records = gatehouse::audit::records_after(&app.db, 0, 100).await.unwrap();
        let update = records.iter().find(|r| r.action == "item.update").expect("audited");
        assert!(update.changes.contains("\"before\"") && update.changes.contains("Lamp") && update.changes.contains("Brass lamp"), "{}", update.changes);
        assert!(records.iter().any(|r| r.action == "item.create"));
        assert!(records.iter().any(|r| r.action == "item.delete"));
    }

    async fn bad_bodies_get_field_errors_and_change_nothing(backend) {
        let app = app(backend).await;
        let token = token_for(&app, "ada@example.com", "user").await;
        let post = |body: Value| call(&app, &token, reqwest::Method::POST, "/api/v1/items", Some(body), None);
        let r = post(json!({"name": "ab", "description": "x".repeat(501)})).await;
        assert_eq!(r.status, 422);
        assert_eq!(r.headers["content-type"], "application/problem+json");
        assert_eq!(fields(&r.body), ["name", "description"], "{}", r.body);
        let r = post(json!({"name": "Lamp", "description": "A desk lamp.", "owner_id": "someone-else"})).await;
        assert_eq!((r.status, fields(&r.body)), (422, vec!["owner_id".to_owned()]), "unknown fields are refused");
        let r = post(json!({"name": 42, "description": "A desk lamp."})).await;
        assert_eq!((r.status, fields(&r.body)), (422, vec!["name".to_owned()]));
        let r = post(json!({"name": "La\u{0}mp", "description": "A desk lamp."})).await;
        assert_eq!(r.status, 422, "control characters");
        let r = post(json!({"name": "Été", "description": "Cinq."})).await;
        assert_eq!(r.status, 201, "three and five characters, counted as characters: {}", r.body);

        let res = app.request(reqwest::Method::POST, "/api/v1/items").bearer_auth(&token).header("content-type", "text/plain").body("{\"name\":\"Lamp\",\"description\":\"A desk lamp.\"}").send().await.unwrap();
        assert_eq!(res.status(), 415);
        let res = app.request(reqwest::Method::POST, "/api/v1/items").bearer_auth(&token).header("content-type", "application/json").body("{\"name\":").send().await.unwrap();
        assert_eq!(res.status(), 400);
        let r = call(&app, &token, reqwest::Method::GET, "/api/v1/items", None, None).await;
        assert_eq!(r.body["items"].as_array().unwrap().len(), 1, "only the valid item exists");

        let res = app.get("/api/v1/items").await;
        assert_eq!(res.status(), 401);
        assert!(res.headers().contains_key("www-authenticate"));
    }

    async fn users_see_only_their_items_and_managers_see_all(backend) {
        let app = app(backend).await;
        let ada = token_for(&app, "ada@example.com", "user").await;
        let bo = token_for(&app, "bo@example.com", "user").await;
        let boss = token_for(&app, "boss@example.com", "manager").await;
        let item = create(&app, &ada, "Ada's lamp").await;
        create(&app, &bo, "Bo's chair").await;
        let path = format!("/api/v1/items/{}", item["id"].as_str().unwrap());

        for (method, body) in [(reqwest::Method::GET, None), (reqwest::Method::PATCH, Some(json!({"name": "Mine now"}))), (reqwest::Method::DELETE, None)] {
            let r = call(&app, &bo, method.clone(), &path, body, None).await;
            assert_eq!(r.status, 404, "{method} on someone else's item: as if it did not exist");
        }
        let r = call(&app, &bo, reqwest::Method::GET, "/api/v1/items", None, None).await;
        let names: Vec<_> = r.body["items"].as_array().unwrap().iter().map(|i| i["name"].as_str().unwrap().to_owned()).collect();
        assert_eq!(names, ["Bo's chair"]);

        let r = call(&app, &boss, reqwest::Method::GET, "/api/v1/items", None, None).await;
        assert_eq!(r.body["items"].as_array().unwrap().len(), 2, "a manager reads all");
        let r = call(&app, &boss, reqwest::Method::PATCH, &path, Some(json!({"description": "Checked by a manager."})), None).await;
        assert_eq!(r.status, 200, "a manager edits all");
        assert_eq!(r.body["owner_id"], item["owner_id"], "the owner stays");
        assert_eq!(call(&app, &ada, reqwest::Method::GET, &path, None, None).await.body["description"], "Checked by a manager.");
    }

    async fn lists_page_with_cursors_and_search_matches_text_literally(backend) {
        let app = app(backend).await;
        let token = token_for(&app, "ada@example.com", "user").await;
        for name in ["Alpha", "Beta", "Gamma 50% off", "Delta", "Epsilon"] {
            create(&app, &token, name).await;
            app.clock.advance(std::time::Duration::from_millis(1));
        }
        let mut seen = Vec::new();
        let mut path = "/api/v1/items?limit=2".to_owned();
        loop {
            let r = call(&app, &token, reqwest::Method::GET, &path, None, None).await;
            assert_eq!(r.status, 200, "{}", r.body);
            let page = r.body["items"].as_array().unwrap();
            assert!(page.len() <= 2);
            seen.extend(page.iter().map(|i| i["name"].as_str().unwrap().to_owned()));
            match r.body["next_cursor"].as_str() {
                Some(cursor) => path = format!("/api/v1/items?limit=2&cursor={cursor}"),
                None => break,
            }
        }
        assert_eq!(seen, ["Epsilon", "Delta", "Gamma 50% off", "Beta", "Alpha"], "newest first, each once");

        let search = |q: &str| {
            let q: String = url::form_urlencoded::byte_serialize(q.as_bytes()).collect();
            let path = format!("/api/v1/items?q={q}");
            let (app, token) = (&app, &token);
            async move { call(app, token, reqwest::Method::GET, &path, None, None).await }
        };
        let names = |r: &Reply| r.body["items"].as_array().unwrap().iter().map(|i| i["name"].as_str().unwrap().to_owned()).collect::<Vec<_>>();
        assert_eq!(names(&search("ALPH").await), ["Alpha"], "case-insensitive substring");
        assert_eq!(names(&search("50%").await), ["Gamma 50% off"]);
        assert!(names(&search("%").await) == ["Gamma 50% off"], "% is a character, not a wildcard");
        assert!(names(&search("_").await).is_empty(), "_ is a character, not a wildcard");
        assert_eq!(search(&"x".repeat(101)).await.status, 422);
        assert_eq!(call(&app, &token, reqwest::Method::GET, "/api/v1/items?limit=101", None, None).await.status, 422);
        assert_eq!(call(&app, &token, reqwest::Method::GET, "/api/v1/items?cursor=garbage", None, None).await.status, 422);
        assert_eq!(search("a\0b").await.status, 422, "a NUL, which PostgreSQL refuses, is a field error, not a 500");
        assert_eq!(search("tab\tinside").await.status, 422, "control characters are refused");
        let first = call(&app, &token, reqwest::Method::GET, "/api/v1/items?cursor=", None, None).await;
        assert_eq!((first.status, first.body["items"].as_array().unwrap().len()), (200, 5), "an empty cursor is the first page");
        let before_everything = format!("/api/v1/items?cursor=0.{}", "0".repeat(32));
        let r = call(&app, &token, reqwest::Method::GET, &before_everything, None, None).await;
        assert_eq!((r.status, r.body["items"].as_array().unwrap().len()), (200, 0), "any well-formed cursor works");
    }

    async fn search_ignores_case_beyond_ascii(backend) {
        let app = app(backend).await;
        let token = token_for(&app, "ada@example.com", "user").await;
        for name in ["ÄPFEL aus Österreich", "äpfel", "ΩMEGA", "Birnen"] {
            create(&app, &token, name).await;
            app.clock.advance(std::time::Duration::from_millis(1));
        }
        let search = |q: &str| {
            let q: String = url::form_urlencoded::byte_serialize(q.as_bytes()).collect();
            let path = format!("/api/v1/items?q={q}");
            let (app, token) = (&app, &token);
            async move {
                let r = call(app, token, reqwest::Method::GET, &path, None, None).await;
                assert_eq!(r.status, 200, "{}", r.body);
                r.body["items"].as_array().unwrap().iter().map(|i| i["name"].as_str().unwrap().to_owned()).collect::<Vec<_>>()
            }
        };
        for q in ["ÄPFEL", "äpfel", "Äpfel"] {
            assert_eq!(search(q).await, ["äpfel", "ÄPFEL aus Österreich"], "{q}");
        }
        assert_eq!(search("österreich").await, ["ÄPFEL aus Österreich"]);
        assert_eq!(search("ωmega").await, ["ΩMEGA"]);
    }
}

backend_agnostic! {
    async fn an_empty_or_malformed_if_match_is_a_bad_request_naming_the_header(backend) {
        let app = app(backend).await;
        let token = token_for(&app, "ada@example.com", "user").await;
        let item = create(&app, &token, "Lamp").await;
        let path = format!("/api/v1/items/{}", item["id"].as_str().unwrap());
        let patch = || Some(json!({"name": "Brass lamp"}));
        for malformed in ["", "1", "\"1", "W/1", "\"a b\"", "\"1\", \"2\""] {
            for (method, body) in [(reqwest::Method::PATCH, patch()), (reqwest::Method::PUT, Some(json!({"name": "Brass lamp", "description": "A desk lamp."}))), (reqwest::Method::DELETE, None)] {
                let r = call(&app, &token, method.clone(), &path, body, Some(malformed)).await;
                assert_eq!(r.status, 400, "{method} with If-Match {malformed:?}: {}", r.body);
                assert!(r.body["detail"].as_str().unwrap().contains("If-Match"), "{}", r.body);
            }
        }
        // Well-formed entity-tags that are not the item's current ETag match nothing.
        for stale in ["W/\"1\"", "\"01\"", "\"abc\"", "\"\""] {
            let r = call(&app, &token, reqwest::Method::PATCH, &path, patch(), Some(stale)).await;
            assert_eq!(r.status, 412, "If-Match {stale:?}");
        }
        assert_eq!(call(&app, &token, reqwest::Method::GET, &path, None, None).await.body["name"], "Lamp", "nothing changed");
        let r = call(&app, &token, reqwest::Method::PATCH, &path, patch(), Some("*")).await;
        assert_eq!(r.status, 200, "`*` matches any version");
        let r = call(&app, &token, reqwest::Method::DELETE, &path, None, Some(" \"2\" ")).await;
        assert_eq!(r.status, 204, "the current ETag, whitespace around it ignored");
    }
}

/// A browser stand-in signed in with a password.
async fn signed_in<'a>(
    app: &'a TestApp,
    email: &str,
    role: &str,
) -> crate::support::visitor::Visitor<'a> {
    add_user(app, email).role(role).password(PASSWORD).await;
    let mut v = crate::support::visitor::Visitor::new(app);
    let csrf = v.csrf_from("/login").await;
    let (status, _, _) = v
        .post(
            "/login/password",
            &[
                ("csrf_token", &csrf),
                ("email", email),
                ("password", PASSWORD),
            ],
        )
        .await;
    assert_eq!(status, 303);
    v
}

on_every_backend! {
    async fn the_items_pages_create_edit_and_delete_with_every_value_escaped(backend) {
        let app = app(backend).await;
        let mut v = signed_in(&app, "ada@example.com", "user").await;
        let csrf = v.csrf_from("/items").await;
        let (status, _, _) = v.post("/items", &[("name", "Lamp"), ("description", "A desk lamp.")]).await;
        assert_eq!(status, 403, "no CSRF token, no item");
        let hostile = "<script>alert(1)</script>";
        let (status, headers, _) = v.post("/items", &[("csrf_token", &csrf), ("name", hostile), ("description", "\"><img src=x onerror=alert(1)>")]).await;
        assert_eq!((status, headers["location"].to_str().unwrap()), (303, "/items"));
        let (_, _, page) = v.get("/items").await;
        assert!(!page.contains(hostile) && page.contains("&lt;script&gt;alert(1)&lt;&#x2f;script&gt;"), "{page}");
        assert!(!page.contains("<img src=x"), "{page}");

        let (status, _, page) = v.post("/items", &[("csrf_token", &csrf), ("name", "ab"), ("description", "Fine text.")]).await;
        assert_eq!(status, 422);
        assert!(page.contains("3 to 100 characters") && page.contains("Fine text."), "the form keeps what was typed: {page}");

        let marker = "href=\"/items/";
        let at = page.find(marker).unwrap() + marker.len();
        let id = page[at..at + 36].to_owned();
        let (status, _, edit) = v.get(&format!("/items/{id}/edit")).await;
        assert_eq!(status, 200);
        let version = crate::support::visitor::field(&edit, "version").unwrap();
        let (status, _, _) = v.post(&format!("/items/{id}"), &[("csrf_token", &csrf), ("name", "Brass lamp"), ("description", "A desk lamp."), ("version", &version)]).await;
        assert_eq!(status, 303);
        let (status, _, stale) = v.post(&format!("/items/{id}"), &[("csrf_token", &csrf), ("name", "Lost update"), ("description", "A desk lamp."), ("version", &version)]).await;
        assert_eq!(status, 412, "a stale form changes nothing");
        assert!(stale.contains("Someone changed this item") && stale.contains("Brass lamp"), "{stale}");

        // Another user's item is not there for them, on any page.
        let mut bo = signed_in(&app, "bo@example.com", "user").await;
        let bo_csrf = bo.csrf_from("/items").await;
        assert!(!bo.get("/items").await.2.contains("Brass lamp"));
        assert_eq!(bo.get(&format!("/items/{id}/edit")).await.0, 404);
        assert_eq!(bo.post(&format!("/items/{id}/delete"), &[("csrf_token", &bo_csrf)]).await.0, 404);

        let (status, _, _) = v.post(&format!("/items/{id}/delete"), &[("csrf_token", &csrf)]).await;
        assert_eq!(status, 303);
        assert!(!v.get("/items").await.2.contains("Brass lamp"));
        assert_eq!(crate::support::visitor::Visitor::new(&app).get("/items").await.0, 303, "signed out: to the login page");
    }
}
