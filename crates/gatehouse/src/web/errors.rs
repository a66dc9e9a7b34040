//! The error-page layer: every error response leaves as a problem document with the request ID,
//! or as an HTML page when a browser asked for one.
//!
//! Handlers and the security layers answer errors with a [`Problem`]; framework defaults (a 405
//! from the router, a timeout) answer with an empty or plain-text body. This layer turns both
//! into one consistent shape: `application/problem+json` with `request_id` for API clients, the
//! error page for browsers (`Accept: text/html`, outside `/api/`). Headers the original response
//! set (`Allow`, `Retry-After`, `WWW-Authenticate`, rate-limit headers) are kept.
//!
//! # Security
//! Bodies of error responses are rebuilt from the problem alone, so no framework message,
//! stack trace or internal detail that a lower layer might have written passes through.
//! Responses that carry their own JSON error body on purpose (`/readyz`) are left alone.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use gatehouse_security::{CspNonce, Problem, RequestId};
use http::header::{ACCEPT, CONTENT_LENGTH, CONTENT_TYPE};

use super::templates::Templates;

/// Middleware: see the module documentation.
pub async fn render_errors(
    State(templates): State<Arc<Templates>>,
    req: Request,
    next: Next,
) -> Response {
    let wants_html = wants_html(&req);
    let request_id = req.extensions().get::<RequestId>().cloned();
    let nonce = req.extensions().get::<CspNonce>().cloned();
    let response = next.run(req).await;
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let problem = match response.extensions().get::<Problem>() {
        Some(problem) => problem.clone(),
        None if is_bare(&response) => Problem::new(status),
        None => return response,
    };
    let problem = match request_id {
        Some(id) => problem.with_request_id(id.as_str()),
        None => problem,
    };
    let mut rendered = match (wants_html, nonce) {
        (true, Some(nonce)) => match templates.error_page(&problem, &nonce) {
            Ok(page) => page.into_response(),
            Err(e) => {
                tracing::error!(error = ?e, "cannot render the error page");
                problem.clone().into_response()
            }
        },
        _ => problem.clone().into_response(),
    };
    let (mut parts, _) = response.into_parts();
    parts.headers.remove(CONTENT_TYPE);
    parts.headers.remove(CONTENT_LENGTH);
    for (name, value) in rendered.headers() {
        parts.headers.insert(name.clone(), value.clone());
    }
    *rendered.headers_mut() = parts.headers;
    *rendered.status_mut() = status;
    rendered.extensions_mut().insert(problem);
    rendered
}

/// A browser page request: not the API, and HTML accepted.
fn wants_html(req: &Request) -> bool {
    !req.uri().path().starts_with("/api/")
        && req
            .headers()
            .get(ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|accept| accept.contains("text/html"))
}

/// A framework default: no body type, or plain text.
fn is_bare(response: &Response) -> bool {
    response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_none_or(|ct| ct.starts_with("text/plain"))
}
