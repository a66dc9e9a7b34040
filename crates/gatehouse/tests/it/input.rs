//! What a request may carry, as an attacker would try it: a JSON key given twice, a query
//! parameter given twice, a credential in the URL; and what comes back of hostile text stored in
//! an item (template syntax, SQL metacharacters), on the pages and in the API, on both backends.

use reqwest::Method;
use serde_json::{Value, json};

use crate::support::visitor::Visitor;
use crate::support::{TestApp, add_user, api_token, spawn_unlimited_app};
use crate::{backend_agnostic, on_every_backend};

const PASSWORD: &str = "Vermilion-Otter-42";

async fn app(backend: crate::support::Backend) -> TestApp {
    // Admins without two-step sign-in, so an admin can take a password grant here.
    spawn_unlimited_app(backend, &[("GATEHOUSE_MFA_REQUIRED_ROLES", "")]).await
}

async fn token_for(app: &TestApp, email: &str, role: &str) -> String {
    add_user(app, email).role(role).password(PASSWORD).await;
    api_token(app, email, PASSWORD).await
}

/// Sends `body` as raw JSON text (so it can repeat a key) with `token`, if any.
async fn send_json(
    app: &TestApp,
    token: Option<&str>,
    method: Method,
    path: &str,
    body: &str,
) -> (u16, Value) {
    let mut req = app
        .request(method, path)
        .header("content-type", "application/json")
        .body(body.to_owned());
    if let Some(token) = token {
        req = req.bearer_auth(token);
    }
    let res = req.send().await.unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

async fn get_json(app: &TestApp, token: &str, path: &str) -> (u16, Value) {
    let res = app
        .request(Method::GET, path)
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

async fn create(app: &TestApp, token: &str, name: &str, description: &str) -> Value {
    let body = json!({"name": name, "description": description}).to_string();
    let (status, item) = send_json(app, Some(token), Method::POST, "/api/v1/items", &body).await;
    assert_eq!(status, 201, "{name:?}: {item}");
    item
}

/// The names of the items `q` finds, through the API.
async fn search(app: &TestApp, token: &str, q: &str) -> Vec<String> {
    let q: String = url::form_urlencoded::byte_serialize(q.as_bytes()).collect();
    let (status, page) = get_json(app, token, &format!("/api/v1/items?limit=100&q={q}")).await;
    assert_eq!(status, 200, "{page}");
    let mut names: Vec<String> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].as_str().unwrap().to_owned())
        .collect();
    names.sort();
    names
}

/// A browser stand-in signed in with a password as `email`, who must already exist.
async fn signed_in<'a>(app: &'a TestApp, email: &str) -> Visitor<'a> {
    let mut v = Visitor::new(app);
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

backend_agnostic! {
    async fn a_json_key_given_twice_is_refused_on_every_json_endpoint(backend) {
        let app = app(backend).await;
        let token = token_for(&app, "ada@example.com", "admin").await;
        add_user(&app, "bo@example.com").password(PASSWORD).await;
        let item = create(&app, &token, "Lamp", "A desk lamp.").await;
        let item_path = format!("/api/v1/items/{}", item["id"].as_str().unwrap());
        let (_, users) = get_json(&app, &token, "/api/v1/admin/users").await;
        let bo = users.as_array().or(users["users"].as_array()).unwrap().iter()
            .find(|u| u["email"] == "bo@example.com").unwrap()["id"].as_str().unwrap().to_owned();

        let twice = [
            (Method::POST, "/api/v1/items".to_owned(), r#"{"name": "Lamp", "name": "Evil lamp", "description": "A desk lamp."}"#),
            (Method::POST, "/api/v1/items".to_owned(), r#"{"name": "Lamp", "description": "A desk lamp.", "extra": {"a": 1, "a": 2}}"#),
            (Method::PUT, item_path.clone(), r#"{"name": "Brass lamp", "description": "A lamp.", "description": "Another lamp."}"#),
            (Method::PATCH, item_path.clone(), r#"{"name": "Brass lamp", "name": "Lamp"}"#),
            (Method::POST, "/api/v1/api-keys".to_owned(), r#"{"name": "ci", "scopes": ["items:read"], "name": "cd"}"#),
            (Method::PATCH, format!("/api/v1/admin/users/{bo}"), r#"{"role": "user", "role": "admin"}"#),
            (Method::POST, "/api/v1/auth/token".to_owned(), r#"{"grant_type": "password", "email": "bo@example.com", "email": "ada@example.com", "password": "Vermilion-Otter-42"}"#),
            (Method::POST, "/api/v1/auth/token".to_owned(), r#"{"grant_type": "refresh_token", "grant_type": "password", "email": "ada@example.com", "password": "Vermilion-Otter-42"}"#),
            (Method::POST, "/api/v1/auth/revoke".to_owned(), r#"{"token": "a", "token": "b"}"#),
        ];
        for (method, path, body) in twice {
            let (status, problem) = send_json(&app, Some(&token), method.clone(), &path, body).await;
            assert_eq!(status, 400, "{method} {path} {body}: {problem}");
            let detail = problem["detail"].as_str().unwrap_or_default();
            assert!(detail.contains("names a key twice"), "{method} {path}: {problem}");
        }

        // Nothing changed: one item, as it was; Bo is still a user with no tokens; no API key.
        let (_, page) = get_json(&app, &token, "/api/v1/items").await;
        let names: Vec<&str> = page["items"].as_array().unwrap().iter().map(|i| i["name"].as_str().unwrap()).collect();
        assert_eq!(names, ["Lamp"]);
        assert_eq!(get_json(&app, &token, &item_path).await.1["description"], "A desk lamp.");
        assert_eq!(get_json(&app, &token, &format!("/api/v1/admin/users/{bo}")).await.1["role"], "user");
        let (_, keys) = get_json(&app, &token, "/api/v1/api-keys").await;
        assert_eq!(keys["api_keys"].as_array().map(Vec::len), Some(0), "{keys}");

        // The same bodies with each key once are accepted.
        let (status, _) = send_json(&app, Some(&token), Method::PATCH, &item_path, r#"{"name": "Brass lamp"}"#).await;
        assert_eq!(status, 200);
        let (status, _) = send_json(&app, None, Method::POST, "/api/v1/auth/revoke", r#"{"token": "a"}"#).await;
        assert_eq!(status, 200);
    }

    async fn a_query_parameter_given_twice_is_refused_everywhere(backend) {
        let app = app(backend).await;
        let token = token_for(&app, "ada@example.com", "user").await;
        create(&app, &token, "Lamp", "A desk lamp.").await;
        for path in [
            "/api/v1/items?q=lamp&q=zzz",
            "/api/v1/items?limit=1&limit=100",
            "/api/v1/items?Limit=1&limit=100",
            "/api/v1/me?x=1&x=2",
            "/api/v1/items/00000000-0000-0000-0000-000000000000?v=1&v=1",
        ] {
            let (status, problem) = get_json(&app, &token, path).await;
            assert_eq!(status, 400, "{path}: {problem}");
            assert!(problem["detail"].as_str().unwrap().contains("more than once"), "{path}: {problem}");
        }
        for page in ["/login?next=/items&next=https://evil.example", "/items?q=a&q=b", "/?a=1&a=2"] {
            let res = app.request(Method::GET, page).header("accept", "text/html").send().await.unwrap();
            assert_eq!(res.status(), 400, "{page}");
        }
        assert_eq!(get_json(&app, &token, "/api/v1/me?x=1&y=2").await.0, 200, "distinct parameters pass");
        assert_eq!(search(&app, &token, "lamp").await, ["Lamp"]);
    }

    async fn credentials_in_a_url_are_refused_and_never_logged(backend) {
        let app = app(backend).await;
        let token = token_for(&app, "ada@example.com", "user").await;
        let mut secrets = Vec::new();
        for (i, name) in ["access_token", "token", "api_key", "apikey", "password", "refresh_token", "client_secret", "Access_Token"].into_iter().enumerate() {
            for path in ["/api/v1/me", "/api/v1/items", "/api/v1/openapi.json", "/.well-known/jwks.json"] {
                // A real access token as the value: the URL must not work even with one.
                let value = if name.eq_ignore_ascii_case("access_token") { token.clone() } else { format!("url-secret-{i}-7c1d") };
                let res = app.request(Method::GET, &format!("{path}?{name}={value}")).send().await.unwrap();
                let status = res.status().as_u16();
                let body = res.text().await.unwrap();
                if path == "/.well-known/jwks.json" && name == "token" {
                    assert_eq!(status, 200, "`token` is refused on the API only: {body}");
                    continue;
                }
                assert_eq!(status, 400, "{path}?{name}=: {body}");
                assert!(body.contains("Credentials do not belong in a URL") && !body.contains(&value), "{body}");
                secrets.push(value);
            }
        }
        let grant = json!({"grant_type": "password", "email": "ada@example.com", "password": PASSWORD});
        let res = app.request(Method::POST, "/api/v1/auth/token?password=url-secret-grant-7c1d").json(&grant).send().await.unwrap();
        assert_eq!(res.status(), 400, "a sign-in whose URL carries a password is refused, right body or not");
        secrets.push("url-secret-grant-7c1d".into());

        // The sign-in pages: a password or token in the query is refused; the mailed link's
        // one-time `?token=` still reaches its page.
        let mut v = Visitor::new(&app);
        let csrf = v.csrf_from("/login").await;
        let (status, _, _) = v.post("/login/password?password=url-secret-form-7c1d", &[("csrf_token", &csrf), ("email", "ada@example.com"), ("password", PASSWORD)]).await;
        assert_eq!(status, 400);
        secrets.push("url-secret-form-7c1d".into());
        for page in ["/login?password=url-secret-page-7c1d", "/password/forgot?access_token=url-secret-page-7c1d"] {
            assert_eq!(v.get(page).await.0, 400, "{page}");
        }
        secrets.push("url-secret-page-7c1d".into());
        let (_, _, link_page) = v.get("/login/magic/verify?token=not-a-real-link").await;
        assert!(!link_page.contains("Credentials do not belong"), "a mailed link's one-time token reaches its page: {link_page}");

        let logs = crate::support::captured_log_text();
        for secret in &secrets {
            assert!(!logs.contains(secret.as_str()), "a credential from a URL reached the log");
        }
        assert!(logs.contains("query_refused"), "each refusal is logged, by the parameter's name");
    }
}

on_every_backend! {
    async fn template_syntax_in_item_fields_is_shown_literally(backend) {
        let app = app(backend).await;
        let token = token_for(&app, "ada@example.com", "user").await;
        let hostile = [
            ("{{ 7*7 }}", "Jinja {{ 7*7 }} and {% if true %}yes{% endif %} and {# gone #}."),
            ("${7*7}", "Shell and JS ${7*7} and #{7*7} and *{7*7}."),
            ("<%= 7*7 %>", "ERB <%= 7*7 %> and <% x %> and [[ 7*7 ]]."),
            ("<script>alert(1)</script>", "{{ config }} {{ self.__init__ }} <script>alert(1)</script>"),
        ];
        let mut ids = Vec::new();
        for (name, description) in hostile {
            let item = create(&app, &token, name, description).await;
            assert_eq!((item["name"].as_str(), item["description"].as_str()), (Some(name), Some(description)));
            ids.push(item["id"].as_str().unwrap().to_owned());
        }
        for (id, (name, description)) in ids.iter().zip(hostile) {
            let (_, item) = get_json(&app, &token, &format!("/api/v1/items/{id}")).await;
            assert_eq!((item["name"].as_str(), item["description"].as_str()), (Some(name), Some(description)), "the API returns what was stored");
        }
        assert_eq!(search(&app, &token, "{{").await, ["<script>alert(1)</script>", "{{ 7*7 }}"], "template text is searched as text");
        assert_eq!(search(&app, &token, "${7*7}").await, ["${7*7}"]);

        // The pages show the same text, escaped for HTML and never evaluated.
        let mut v = signed_in(&app, "ada@example.com").await;
        let (status, _, list) = v.get("/items").await;
        assert_eq!(status, 200);
        for literal in ["{{ 7*7 }}", "{% if true %}yes{% endif %}", "{# gone #}", "${7*7}", "#{7*7}", "&lt;%= 7*7 %&gt;", "[[ 7*7 ]]", "{{ config }}", "&lt;script&gt;alert(1)&lt;&#x2f;script&gt;"] {
            assert!(list.contains(literal), "{literal} is not on the page literally:\n{list}");
        }
        assert!(!list.contains("<script>alert(1)"), "{list}");
        assert!(!list.contains(">49<") && !list.contains(" 49 "), "nothing was evaluated:\n{list}");
        for id in &ids {
            let (status, _, edit) = v.get(&format!("/items/{id}/edit")).await;
            assert_eq!(status, 200);
            assert!(!edit.contains("<script>alert(1)") && !edit.contains("value=\"49\"") && !edit.contains(">49<"), "{edit}");
        }
        let (_, _, edit) = v.get(&format!("/items/{}/edit", ids[0])).await;
        assert!(edit.contains("value=\"{{ 7*7 }}\"") && edit.contains("Jinja {{ 7*7 }} and {% if true %}yes{% endif %}"), "the edit form holds the stored text: {edit}");
    }

    async fn sql_metacharacters_in_item_fields_are_stored_and_found_literally(backend) {
        let app = app(backend).await;
        let token = token_for(&app, "ada@example.com", "user").await;
        // Each name carries one metacharacter (or a classic injection); each description the
        // same text, so both searchable fields are exercised.
        let names = [
            "O'Brien's lamp",
            "A \"quoted\" lamp",
            "lamp; DROP TABLE items; --",
            "100% cotton",
            "snake_case lamp",
            r"back\slash lamp",
            "/* comment */ lamp",
            "' OR '1'='1",
            r"all of '%_\;-- at once",
            "plain lamp",
        ];
        let mut ids = Vec::new();
        for name in names {
            let description = format!("About {name} here.");
            let item = create(&app, &token, name, &description).await;
            ids.push(item["id"].as_str().unwrap().to_owned());
        }
        for (id, name) in ids.iter().zip(names) {
            let (_, item) = get_json(&app, &token, &format!("/api/v1/items/{id}")).await;
            assert_eq!(item["name"], name, "stored and returned exactly");
            assert_eq!(item["description"], format!("About {name} here."));
        }
        let (_, page) = get_json(&app, &token, "/api/v1/items?limit=100").await;
        assert_eq!(page["items"].as_array().unwrap().len(), names.len(), "the table is whole");

        fn sorted(mut v: Vec<&'static str>) -> Vec<&'static str> {
            v.sort();
            v
        }
        let finds = [
            ("'", sorted(vec!["O'Brien's lamp", "' OR '1'='1", r"all of '%_\;-- at once"])),
            ("\"", vec!["A \"quoted\" lamp"]),
            (";", sorted(vec!["lamp; DROP TABLE items; --", r"all of '%_\;-- at once"])),
            ("--", sorted(vec!["lamp; DROP TABLE items; --", r"all of '%_\;-- at once"])),
            ("%", sorted(vec!["100% cotton", r"all of '%_\;-- at once"])),
            ("_", sorted(vec!["snake_case lamp", r"all of '%_\;-- at once"])),
            (r"\", sorted(vec![r"back\slash lamp", r"all of '%_\;-- at once"])),
            ("/*", vec!["/* comment */ lamp"]),
            ("' OR '1'='1", vec!["' OR '1'='1"]),
            ("%%", vec![]),
            ("_a", vec![]),
            (r"\%", vec![]),
            (r"%_\", vec![r"all of '%_\;-- at once"]),
            ("lamp' --", vec![]),
            ("o'brien", vec!["O'Brien's lamp"]),
        ];
        for (q, expected) in finds {
            assert_eq!(search(&app, &token, q).await, expected, "search for {q:?}");
        }

        // The same on the pages: the search box, and a stored value shown as text.
        let mut v = signed_in(&app, "ada@example.com").await;
        let (status, _, list) = v.get("/items?q=%25").await;
        assert_eq!(status, 200);
        assert!(list.contains("100% cotton") && !list.contains("plain lamp") && !list.contains("snake_case"), "{list}");
        let (_, _, list) = v.get("/items?q=_").await;
        assert!(list.contains("snake_case lamp") && !list.contains("plain lamp") && !list.contains("100% cotton"), "{list}");

        // NUL, which PostgreSQL cannot store, is a field error on both backends: nothing stored.
        for body in [json!({"name": "nul\u{0}lamp", "description": "A desk lamp."}), json!({"name": "Lamp", "description": "nul\u{0}here"})] {
            let (status, problem) = send_json(&app, Some(&token), Method::POST, "/api/v1/items", &body.to_string()).await;
            assert_eq!(status, 422, "{problem}");
        }
        let (status, _) = get_json(&app, &token, "/api/v1/items?q=a%00b").await;
        assert_eq!(status, 422);
        let (_, page) = get_json(&app, &token, "/api/v1/items?limit=100").await;
        assert_eq!(page["items"].as_array().unwrap().len(), names.len());
    }
}
