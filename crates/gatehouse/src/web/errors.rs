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

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use gatehouse_security::{CspNonce, Problem, RequestId};
use http::header::{ACCEPT, CONTENT_LENGTH, CONTENT_TYPE};
use tower::{Layer, Service};

use crate::views::Templates;

/// Layer: see the module documentation.
#[derive(Clone, Debug)]
pub struct ErrorPagesLayer {
    templates: Arc<Templates>,
}

impl ErrorPagesLayer {
    /// Renders HTML error pages with `templates`.
    pub fn new(templates: Arc<Templates>) -> Self {
        Self { templates }
    }
}

impl<S> Layer<S> for ErrorPagesLayer {
    type Service = ErrorPages<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ErrorPages {
            inner,
            templates: self.templates.clone(),
        }
    }
}

/// The service of [`ErrorPagesLayer`].
#[derive(Clone, Debug)]
pub struct ErrorPages<S> {
    inner: S,
    templates: Arc<Templates>,
}

/// What the request said about how to render an error, kept until the response is known.
#[derive(Debug)]
struct RenderContext {
    wants_html: bool,
    request_id: Option<RequestId>,
    nonce: Option<CspNonce>,
    templates: Arc<Templates>,
}

impl<S> Service<Request> for ErrorPages<S>
where
    S: Service<Request, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = ErrorPagesFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        let context = RenderContext {
            wants_html: wants_html(&req),
            request_id: req.extensions().get::<RequestId>().cloned(),
            nonce: req.extensions().get::<CspNonce>().cloned(),
            templates: self.templates.clone(),
        };
        ErrorPagesFuture {
            inner: self.inner.call(req),
            context: Some(context),
        }
    }
}

pin_project_lite::pin_project! {
    /// The response future of [`ErrorPages`].
    pub struct ErrorPagesFuture<F> {
        #[pin]
        inner: F,
        context: Option<RenderContext>,
    }
}

impl<F, E> Future for ErrorPagesFuture<F>
where
    F: Future<Output = Result<Response, E>>,
{
    type Output = Result<Response, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let response = std::task::ready!(this.inner.poll(cx))?;
        Poll::Ready(Ok(match this.context.take() {
            Some(context) => render(context, response),
            None => response,
        }))
    }
}

/// Rebuilds an error response as a problem or an HTML page; leaves others alone.
fn render(context: RenderContext, response: Response) -> Response {
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let problem = match response.extensions().get::<Problem>() {
        Some(problem) => problem.clone(),
        None if is_bare(&response) => Problem::new(status),
        None => return response,
    };
    let problem = match context.request_id {
        Some(id) => problem.with_request_id(id.as_str()),
        None => problem,
    };
    let mut rendered = match (context.wants_html, context.nonce) {
        (true, Some(nonce)) => match context.templates.error_page(&problem, &nonce) {
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
    // The original's extensions stay (an access denial for the request log, say).
    *rendered.extensions_mut() = parts.extensions;
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
