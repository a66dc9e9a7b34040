//! The API's OpenAPI 3.1 document, served at `GET /api/v1/openapi.json`.
//!
//! The document is generated from the code: every API handler carries a `#[utoipa::path]`
//! annotation (method, path, parameters, body, answers), and the API routes are registered only
//! through `utoipa-axum`'s [`OpenApiRouter`], which takes the method and path from that same
//! annotation. A route therefore cannot be served without being described, and a description
//! cannot name a route that is not served.
//!
//! The answers that the request pipeline, not the handler, can give are added here to every
//! operation (`pipeline_answers`): `429` and `503` from the rate limits and the timeout, `500`,
//! `400` for a query string that repeats a parameter or carries a credential (the query guard),
//! `413` and `415` for operations that take a body, and `401` and `403` for operations that need
//! a credential. Every error is an RFC 9457 problem (`application/problem+json`).

use std::sync::LazyLock;

use axum::Router;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::HeaderValue;
use http::header::{CACHE_CONTROL, CONTENT_TYPE};
use utoipa::openapi::path::Operation;
use utoipa::openapi::schema::AdditionalProperties;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{
    ContentBuilder, HeaderBuilder, ObjectBuilder, OpenApi as Document, Ref, RefOr, ResponseBuilder,
    Schema, Type,
};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::schema::{PROBLEM_JSON, Problem};
use crate::state::AppState;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Gatehouse API",
        description = "Tokens, API keys, items and user administration. Authenticate with \
            `Authorization: Bearer <access token>` from `POST /api/v1/auth/token`, or with an \
            API key (`Authorization: Bearer gk_…` or `X-API-Key: gk_…`). A page's script may use its \
            session cookie instead, sending the page's CSRF token in `X-CSRF-Token` with every \
            change; a request with a bearer credential is never authenticated by its cookie. \
            Every error is an RFC 9457 problem.",
        license(name = "MIT OR Apache-2.0"),
    ),
    components(schemas(Problem, crate::error::FieldError)),
    modifiers(&SecuritySchemes),
    tags(
        (name = "auth", description = "Access and refresh tokens"),
        (name = "items", description = "Items: a user's own; managers and admins see all"),
        (name = "api-keys", description = "The caller's API keys"),
        (name = "admin", description = "User administration (managers read, admins change)"),
        (name = "meta", description = "This document"),
    )
)]
struct ApiDoc;

/// The two ways to authenticate: `bearer` (an access token or an API key) and `api_key`.
struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut Document) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some(
                        "An EdDSA access token from `POST /api/v1/auth/token` (15 minutes), \
                         or an API key (`gk_…`).",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "api_key",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "X-API-Key",
                "An API key (`gk_…`) from `POST /api/v1/api-keys`.",
            ))),
        );
    }
}

/// Every API route, each registered together with its description.
fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(document))
        .merge(super::auth::routes())
        .merge(super::items::routes())
        .merge(super::api_keys::routes())
        .merge(super::admin::routes())
}

/// The API routes (served by the application's router).
pub fn router() -> Router<AppState> {
    routes().split_for_parts().0
}

/// The OpenAPI document, built once.
pub fn spec() -> &'static Document {
    static SPEC: LazyLock<Document> = LazyLock::new(|| {
        let mut spec = routes().split_for_parts().1;
        pipeline_answers(&mut spec);
        close_variants(&mut spec, "TokenRequest");
        spec
    });
    &SPEC
}

/// `GET /api/v1/openapi.json`.
#[utoipa::path(
    get,
    path = "/api/v1/openapi.json",
    operation_id = "openapi",
    tag = "meta",
    responses((status = 200, description = "This document", content_type = "application/json"))
)]
async fn document() -> Response {
    static JSON: LazyLock<Bytes> = LazyLock::new(|| {
        // A document of strings and maps always serializes.
        Bytes::from(serde_json::to_vec(spec()).unwrap_or_default())
    });
    (
        [
            (CONTENT_TYPE, HeaderValue::from_static("application/json")),
            (
                CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=300"),
            ),
        ],
        JSON.clone(),
    )
        .into_response()
}

/// A problem answer's description, for `responses(…)` in the handlers' annotations and here.
fn problem_response(description: &str) -> utoipa::openapi::Response {
    ResponseBuilder::new()
        .description(description)
        .content(
            PROBLEM_JSON,
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("Problem")))
                .build(),
        )
        .build()
}

/// A string header's description.
fn header(description: &str) -> RefOr<utoipa::openapi::header::Header> {
    RefOr::T(
        HeaderBuilder::new()
            .schema(Some(ObjectBuilder::new().schema_type(Type::String)))
            .description(Some(description))
            .build(),
    )
}

/// Adds to every operation the answers the pipeline gives (see the module documentation), unless
/// the handler's annotation already describes that status.
fn pipeline_answers(spec: &mut Document) {
    let mut too_many = problem_response("Over a rate limit: retry after `Retry-After` seconds.");
    too_many
        .headers
        .insert("Retry-After".into(), header("Seconds to wait."));
    let mut unauthorized = problem_response(
        "No credential, or one that is not valid (expired, revoked, or for a user who may no \
         longer sign in).",
    );
    unauthorized
        .headers
        .insert("WWW-Authenticate".into(), header("The `Bearer` challenge."));
    let common = [
        ("429", too_many),
        (
            "500",
            problem_response("An unexpected error; it is logged with the request ID."),
        ),
        (
            "503",
            problem_response("The request took too long, or a store it needs is unavailable."),
        ),
    ];
    let with_body = [
        (
            "413",
            problem_response("The body is larger than the server accepts."),
        ),
        (
            "415",
            problem_response("The body is not `application/json`."),
        ),
        (
            "422",
            problem_response("Some fields are not valid: see `errors`."),
        ),
    ];
    let authenticated = [
        ("401", unauthorized),
        (
            "403",
            problem_response(
                "The caller may not do this: their role, or the API key's scopes, do not allow it.",
            ),
        ),
    ];
    for item in spec.paths.paths.values_mut() {
        for operation in [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
        ]
        .into_iter()
        .flatten()
        {
            add_missing(operation, &common);
            bad_request(operation);
            if operation.request_body.is_some() {
                add_missing(operation, &with_body);
            }
            if operation.security.as_ref().is_some_and(|s| !s.is_empty()) {
                add_missing(operation, &authenticated);
            }
        }
    }
}

/// Marks each variant of the enum schema `name` as refusing unknown fields: utoipa carries an
/// enum's `#[serde(deny_unknown_fields)]` to none of its variants, but serde refuses them.
fn close_variants(spec: &mut Document, name: &str) {
    let schema = spec
        .components
        .as_mut()
        .and_then(|c| c.schemas.get_mut(name));
    let Some(RefOr::T(Schema::OneOf(one_of))) = schema else {
        return;
    };
    for variant in &mut one_of.items {
        if let RefOr::T(Schema::Object(object)) = variant {
            object.additional_properties = Some(Box::new(AdditionalProperties::FreeForm(false)));
        }
    }
}

/// The `400` every operation can answer, its description completed with the pipeline's reasons:
/// the query guard's on every operation, a body's and a parameter's where there are some.
fn bad_request(operation: &mut Operation) {
    let mut reasons = Vec::new();
    if operation.request_body.is_some() {
        reasons.push("the body is not valid JSON or names a key twice");
    }
    if has_query(operation) {
        reasons.push("a query parameter cannot be read");
    }
    reasons.push(
        "the query string repeats a parameter, or carries a credential (`access_token`, \
         `password`, `token`, …), which belongs in a header or the body",
    );
    let reasons = reasons.join("; ");
    match operation.responses.responses.get_mut("400") {
        Some(RefOr::T(described)) => {
            let own = described.description.trim_end_matches('.');
            described.description = format!("{own}; or {reasons}.");
        }
        Some(RefOr::Ref(_)) => {}
        None => {
            let mut refused = reasons;
            refused[..1].make_ascii_uppercase();
            operation.responses.responses.insert(
                "400".to_owned(),
                RefOr::T(problem_response(&format!("{refused}."))),
            );
        }
    }
}

fn has_query(operation: &Operation) -> bool {
    operation.parameters.iter().flatten().any(
        |p| matches!(p, RefOr::T(p) if p.parameter_in == utoipa::openapi::path::ParameterIn::Query),
    )
}

fn add_missing(operation: &mut Operation, answers: &[(&str, utoipa::openapi::Response)]) {
    for (status, response) in answers {
        operation
            .responses
            .responses
            .entry((*status).to_owned())
            .or_insert_with(|| RefOr::T(response.clone()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_is_openapi_3_1_with_both_security_schemes() {
        let json = serde_json::to_value(spec()).unwrap();
        assert_eq!(json["openapi"], "3.1.0");
        let schemes = &json["components"]["securitySchemes"];
        assert_eq!(schemes["bearer"]["scheme"], "bearer");
        assert_eq!(schemes["api_key"]["name"], "X-API-Key");
    }

    #[test]
    fn every_operation_documents_its_errors_as_problems() {
        let json = serde_json::to_value(spec()).unwrap();
        for (path, item) in json["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                let responses = op["responses"].as_object().unwrap();
                for status in ["400", "429", "500", "503"] {
                    let content = &responses[status]["content"];
                    assert!(
                        content.get(PROBLEM_JSON).is_some(),
                        "{method} {path} lacks a {status} problem"
                    );
                }
                if op.get("security").is_some() {
                    assert!(responses.contains_key("401"), "{method} {path}");
                }
            }
        }
    }
}
