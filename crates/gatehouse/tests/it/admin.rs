//! `/api/v1/admin/users` over HTTP: who may read and change users, what a change ends, and the
//! before/after it leaves in the audit trail.

use serde_json::{Value, json};

use crate::on_every_backend;
use crate::support::{TestApp, add_user};

const PASSWORD: &str = "Vermilion-Otter-42";

async fn app(backend: crate::support::Backend) -> TestApp {
    crate::support::spawn_unlimited_app(backend, &[]).await
}

/// Creates a user with `role` and returns an access token for them.
async fn token_for(app: &TestApp, email: &str, role: &str) -> String {
    add_user(app, email).role(role).password(PASSWORD).await;
    crate::support::api_token(app, email, PASSWORD).await
}

async fn call(
    app: &TestApp,
    token: &str,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = app.request(method, path).bearer_auth(token);
    if let Some(body) = body {
        req = req.json(&body);
    }
    let res = req.send().await.unwrap();
    (
        res.status().as_u16(),
        res.json().await.unwrap_or(Value::Null),
    )
}

fn id_of(list: &Value, email: &str) -> String {
    list["users"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["email"] == email)
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

on_every_backend! {
    async fn admins_change_roles_and_the_user_is_signed_out_everywhere(backend) {
        let app = app(backend).await;
        let admin = token_for(&app, "root@example.com", "admin").await;
        let user = token_for(&app, "ada@example.com", "user").await;
        let (status, list) = call(&app, &admin, reqwest::Method::GET, "/api/v1/admin/users", None).await;
        assert_eq!(status, 200);
        let ada = id_of(&list, "ada@example.com");
        let root = id_of(&list, "root@example.com");
        let path = format!("/api/v1/admin/users/{ada}");

        let (status, body) = call(&app, &admin, reqwest::Method::PATCH, &path, Some(json!({"role": "manager"}))).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["role"], "manager");
        assert_eq!(call(&app, &user, reqwest::Method::GET, "/api/v1/me", None).await.0, 401, "the user's API sign-ins ended");
        let records = gatehouse::audit::records_after(&app.db, 0, 100).await.unwrap();
        let change = records.iter().find(|r| r.action == "user.set_role").unwrap();
        assert!(change.changes.contains("user") && change.changes.contains("manager"), "{}", change.changes);
        assert_eq!(change.actor, format!("user:{root}"));

        let (status, body) = call(&app, &admin, reqwest::Method::PATCH, &path, Some(json!({"role": "superuser", "email": "x@example.com"}))).await;
        assert_eq!(status, 422, "{body}");
        assert_eq!(body["errors"].as_array().unwrap().len(), 2);
        for spelling in ["Manager", " manager"] {
            let (status, _) = call(&app, &admin, reqwest::Method::PATCH, &path, Some(json!({"role": spelling}))).await;
            assert_eq!(status, 422, "only the spelling the API description lists: {spelling:?}");
        }
        let (status, _) = call(&app, &admin, reqwest::Method::PATCH, &format!("/api/v1/admin/users/{root}"), Some(json!({"role": "user"}))).await;
        assert_eq!(status, 403, "nobody changes their own role");
        let (status, _) = call(&app, &admin, reqwest::Method::PATCH, "/api/v1/admin/users/not-a-uuid", Some(json!({"status": "disabled"}))).await;
        assert_eq!(status, 404);
    }

    async fn managers_read_users_and_users_read_nothing(backend) {
        let app = app(backend).await;
        let manager = token_for(&app, "boss@example.com", "manager").await;
        let user = token_for(&app, "ada@example.com", "user").await;
        let (status, list) = call(&app, &manager, reqwest::Method::GET, "/api/v1/admin/users", None).await;
        assert_eq!(status, 200);
        let ada = id_of(&list, "ada@example.com");
        assert!(list.to_string().find("password").is_none(), "no password hashes: {list}");
        let (status, _) = call(&app, &manager, reqwest::Method::PATCH, &format!("/api/v1/admin/users/{ada}"), Some(json!({"status": "disabled"}))).await;
        assert_eq!(status, 403, "a manager may not change users");
        assert_eq!(call(&app, &user, reqwest::Method::GET, "/api/v1/admin/users", None).await.0, 403);
        assert_eq!(call(&app, &user, reqwest::Method::GET, &format!("/api/v1/admin/users/{ada}"), None).await.0, 403);
        assert_eq!(call(&app, &user, reqwest::Method::GET, "/api/v1/me", None).await.0, 200, "the refusals changed nothing");
    }
}
