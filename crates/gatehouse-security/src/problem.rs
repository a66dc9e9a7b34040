//! RFC 9457 problem details: the body of every error response these layers produce.
//!
//! [`Problem`] renders as `application/problem+json` with the members `type`, `title`,
//! `status`, and, when set, `detail`, `request_id` and any extension members. The rendered
//! response also carries a clone of the [`Problem`] in its extensions, so an outer layer of the
//! application can render it again differently (an HTML error page for a browser, or the same
//! JSON with the request ID filled in) without parsing the body.
//!
//! # Security
//!
//! A problem says only what its builder was given. Callers must not put internal details
//! (error chains, SQL, file paths, panic messages) in `detail` or in extensions of a 5xx; the
//! layers of this crate never do.

use std::borrow::Cow;

use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{HeaderValue, StatusCode, header};
use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::{Map, Value};

/// The media type of a problem details document.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// Members this type writes itself; an extension with one of these names would produce a
/// document with duplicate keys, so [`Problem::with_extension`] ignores it.
const RESERVED_MEMBERS: [&str; 5] = ["type", "title", "status", "detail", "request_id"];

/// An RFC 9457 problem details document.
///
/// Built with [`Problem::new`] and the `with_*` methods; rendered by its [`IntoResponse`]
/// implementation or by [`Problem::to_json`].
#[derive(Clone, Debug)]
pub struct Problem {
    status: StatusCode,
    title: Cow<'static, str>,
    type_uri: Cow<'static, str>,
    detail: Option<String>,
    request_id: Option<String>,
    extensions: Map<String, Value>,
}

impl Problem {
    /// A problem with `status`, the status's canonical reason as its title and the type
    /// `about:blank`.
    pub fn new(status: StatusCode) -> Self {
        Self {
            status,
            title: Cow::Borrowed(status.canonical_reason().unwrap_or("Error")),
            type_uri: Cow::Borrowed("about:blank"),
            detail: None,
            request_id: None,
            extensions: Map::new(),
        }
    }

    /// Replaces the title: a short summary that is the same for every occurrence of the type.
    pub fn with_title(mut self, title: impl Into<Cow<'static, str>>) -> Self {
        self.title = title.into();
        self
    }

    /// Sets the detail: an explanation of this occurrence, meant for the client.
    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    /// Replaces the type URI (`about:blank` by default).
    pub fn with_type(mut self, type_uri: impl Into<Cow<'static, str>>) -> Self {
        self.type_uri = type_uri.into();
        self
    }

    /// Sets the request ID, rendered as the `request_id` member.
    pub fn with_request_id(mut self, request_id: impl Into<String>) -> Self {
        self.request_id = Some(request_id.into());
        self
    }

    /// Adds an extension member, rendered at the top level of the document.
    ///
    /// A key naming a member this type writes itself (`type`, `title`, `status`, `detail`,
    /// `request_id`) is ignored: use the dedicated method instead.
    pub fn with_extension(mut self, key: impl Into<String>, value: Value) -> Self {
        let key = key.into();
        if !RESERVED_MEMBERS.contains(&key.as_str()) {
            self.extensions.insert(key, value);
        }
        self
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The title.
    pub fn title(&self) -> &str {
        &self.title
    }

    /// The detail, if set.
    pub fn detail(&self) -> Option<&str> {
        self.detail.as_deref()
    }

    /// The request ID, if set.
    pub fn request_id(&self) -> Option<&str> {
        self.request_id.as_deref()
    }

    /// The type URI.
    pub fn type_uri(&self) -> &str {
        &self.type_uri
    }

    /// The extension members.
    pub fn extensions(&self) -> &Map<String, Value> {
        &self.extensions
    }

    /// The JSON document.
    pub fn to_json(&self) -> Bytes {
        // Serializing strings, a number and `Value`s into memory cannot fail; the fallback
        // exists so that rendering an error can never itself panic (this runs in the panic
        // catcher).
        serde_json::to_vec(self).map_or_else(
            |_| {
                Bytes::from_static(
                    br#"{"type":"about:blank","title":"Internal Server Error","status":500}"#,
                )
            },
            Bytes::from,
        )
    }
}

impl Serialize for Problem {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("type", &self.type_uri)?;
        map.serialize_entry("title", &self.title)?;
        map.serialize_entry("status", &self.status.as_u16())?;
        if let Some(detail) = &self.detail {
            map.serialize_entry("detail", detail)?;
        }
        if let Some(request_id) = &self.request_id {
            map.serialize_entry("request_id", request_id)?;
        }
        for (key, value) in &self.extensions {
            map.serialize_entry(key, value)?;
        }
        map.end()
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let body = self.to_json();
        let mut response = (self.status, body).into_response();
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        response.extensions_mut().insert(self);
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use serde_json::json;

    async fn body_json(response: Response) -> Value {
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        serde_json::from_slice(&bytes).unwrap()
    }

    #[test]
    fn new_problem_uses_the_canonical_reason_and_about_blank() {
        let problem = Problem::new(StatusCode::NOT_FOUND);

        assert_eq!(problem.status(), StatusCode::NOT_FOUND);
        assert_eq!(problem.title(), "Not Found");
        assert_eq!(problem.type_uri(), "about:blank");
        assert_eq!(problem.detail(), None);
        assert_eq!(problem.request_id(), None);
        assert!(problem.extensions().is_empty());
    }

    #[test]
    fn minimal_problem_serializes_only_the_required_members() {
        let json: Value =
            serde_json::from_slice(&Problem::new(StatusCode::CONFLICT).to_json()).unwrap();

        assert_eq!(
            json,
            json!({"type": "about:blank", "title": "Conflict", "status": 409})
        );
    }

    #[tokio::test]
    async fn response_has_status_media_type_body_and_the_problem_in_its_extensions() {
        let problem = Problem::new(StatusCode::UNPROCESSABLE_ENTITY)
            .with_type("https://example.com/problems/validation")
            .with_title("Invalid input")
            .with_detail("name is required")
            .with_request_id("req-1")
            .with_extension("errors", json!([{"field": "name"}]));

        let response = problem.into_response();

        assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(response.headers()[header::CONTENT_TYPE], PROBLEM_JSON);
        let carried = response.extensions().get::<Problem>().unwrap();
        assert_eq!(carried.detail(), Some("name is required"));
        assert_eq!(carried.request_id(), Some("req-1"));
        assert_eq!(
            body_json(response).await,
            json!({
                "type": "https://example.com/problems/validation",
                "title": "Invalid input",
                "status": 422,
                "detail": "name is required",
                "request_id": "req-1",
                "errors": [{"field": "name"}],
            })
        );
    }

    #[test]
    fn extensions_cannot_overwrite_standard_members() {
        let problem = Problem::new(StatusCode::FORBIDDEN)
            .with_extension("status", json!(200))
            .with_extension("title", json!("OK"));

        let json: Value = serde_json::from_slice(&problem.to_json()).unwrap();

        assert_eq!(
            json,
            json!({"type": "about:blank", "title": "Forbidden", "status": 403})
        );
    }
}
