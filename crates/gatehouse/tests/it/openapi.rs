//! The OpenAPI document at `/api/v1/openapi.json`: every API route is in it, everything in it is
//! served, and what it says about authentication and errors is what the server does.

use serde_json::Value;

use crate::backend_agnostic;
use crate::support::{TestApp, spawn_app};

/// The API's operations, as the README and the issue that asked for them list them. A route
/// missing from the document fails the test, whatever else the document holds.
const OPERATIONS: &[(&str, &str)] = &[
    ("post", "/api/v1/auth/token"),
    ("post", "/api/v1/auth/revoke"),
    ("get", "/api/v1/me"),
    ("get", "/.well-known/jwks.json"),
    ("get", "/api/v1/items"),
    ("post", "/api/v1/items"),
    ("get", "/api/v1/items/{id}"),
    ("put", "/api/v1/items/{id}"),
    ("patch", "/api/v1/items/{id}"),
    ("delete", "/api/v1/items/{id}"),
    ("get", "/api/v1/api-keys"),
    ("post", "/api/v1/api-keys"),
    ("delete", "/api/v1/api-keys/{id}"),
    ("get", "/api/v1/admin/users"),
    ("get", "/api/v1/admin/users/{id}"),
    ("patch", "/api/v1/admin/users/{id}"),
    ("get", "/api/v1/openapi.json"),
];

async fn document(app: &TestApp) -> Value {
    let res = app.get("/api/v1/openapi.json").await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "application/json");
    res.json().await.unwrap()
}

/// Every (method, path) the document describes.
fn described(doc: &Value) -> Vec<(String, String)> {
    let mut ops = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            ops.push((method.clone(), path.clone()));
        }
    }
    ops
}

backend_agnostic! {
    async fn every_api_route_is_described_and_every_description_is_served(backend) {
        let app = spawn_app(backend).await;
        let doc = document(&app).await;
        assert_eq!(doc["openapi"], "3.1.0");
        let ops = described(&doc);
        for (method, path) in OPERATIONS {
            assert!(
                ops.iter().any(|(m, p)| m == method && p == path),
                "{} {path} is missing from the OpenAPI document",
                method.to_uppercase()
            );
        }
        assert_eq!(ops.len(), OPERATIONS.len(), "described but not listed here: {ops:?}");

        let mut ids = Vec::new();
        for (method, path) in &ops {
            let op = &doc["paths"][path][method];
            let id = op["operationId"].as_str().unwrap_or_default().to_owned();
            assert!(!id.is_empty() && !ids.contains(&id), "{method} {path}: operationId {id:?}");
            ids.push(id);
            assert!(op["summary"].is_string(), "{method} {path} has no summary");

            // Served: a call without a credential reaches the route (never the 404 or 405 of a
            // route that does not exist), and one that needs a credential says so as documented.
            let url = path.replace("{id}", "00000000-0000-4000-8000-000000000000");
            let res = app
                .request(method.to_uppercase().parse().unwrap(), &url)
                .header("content-type", "application/json")
                .body("{}")
                .send()
                .await
                .unwrap();
            let status = res.status().as_u16();
            assert!(!matches!(status, 404 | 405), "{method} {path} is not served: {status}");
            let secured = op["security"].as_array().is_some_and(|s| !s.is_empty());
            if secured {
                assert_eq!(status, 401, "{method} {path} without a credential");
                assert!(res.headers().contains_key("www-authenticate"), "{method} {path}");
            }
            assert!(
                op["responses"][status.to_string()].is_object(),
                "{method} {path} answered {status}, which its description does not list"
            );
        }
    }
}

#[tokio::test]
async fn errors_are_problems_and_credentials_are_described() {
    let app = spawn_app(crate::support::Backend::Sqlite).await;
    let doc = document(&app).await;
    let schemes = &doc["components"]["securitySchemes"];
    assert_eq!(schemes["bearer"]["type"], "http");
    assert_eq!(schemes["bearer"]["scheme"], "bearer");
    assert_eq!(schemes["api_key"]["in"], "header");
    assert_eq!(schemes["api_key"]["name"], "X-API-Key");
    for (method, path) in described(&doc) {
        let responses = doc["paths"][&path][&method]["responses"]
            .as_object()
            .unwrap();
        assert!(
            responses.keys().any(|s| s.starts_with('2')),
            "{method} {path} documents no success"
        );
        for (status, response) in responses {
            if status.starts_with('4') || status.starts_with('5') {
                assert_eq!(
                    response["content"]["application/problem+json"]["schema"]["$ref"],
                    "#/components/schemas/Problem",
                    "{method} {path} {status}"
                );
            }
        }
    }
    // The admin routes take an access token only: an API key never reaches them.
    let admin = &doc["paths"]["/api/v1/admin/users"]["get"]["security"];
    assert_eq!(admin, &serde_json::json!([{ "bearer": [] }]));
}

#[tokio::test]
async fn if_match_is_described_as_the_server_reads_it() {
    let app = spawn_app(crate::support::Backend::Sqlite).await;
    let doc = document(&app).await;
    for method in ["put", "patch", "delete"] {
        let operation = &doc["paths"]["/api/v1/items/{id}"][method];
        let if_match = operation["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == "If-Match")
            .unwrap_or_else(|| panic!("{method}: no If-Match parameter"));
        assert_eq!(if_match["in"], "header");
        // `*` or one entity-tag (RFC 9110 §8.8.3): what `items` reads; anything else is a 400
        // (the items tests send both kinds).
        assert_eq!(
            if_match["schema"]["pattern"], r#"^(\*|(W/)?"[\x21\x23-\x7E]*")$"#,
            "{method}"
        );
        let bad_request = operation["responses"]["400"]["description"]
            .as_str()
            .unwrap_or_default();
        assert!(bad_request.contains("If-Match"), "{method}: {bad_request}");
    }
}
