//! Refuses `TRACE` and `TRACK` requests.
//!
//! [`RejectTraceLayer`] answers `TRACE` and `TRACK` (compared case-insensitively) with a
//! [`Problem`] that carries nothing of the request: `405 Method Not Allowed` with the target's
//! `Allow` (RFC 9110 §15.5.6 requires it), or `404` when nothing is there. Other methods pass
//! through.
//!
//! To learn whether the target exists and its methods, the layer hands the inner service a bare
//! copy of the request: its method and target, and none of its headers or body (the extensions
//! the layers above put there stay). A router answers it from its route table without running a
//! handler: axum answers `405` with `Allow` for a known path (adding `Allow` itself when this
//! layer sits inside it, through `Router::layer`) and calls its fallback, typically a `404`, for
//! an unknown one. Whatever the inner service answers, only its status and `Allow` are used; its
//! body and other headers are dropped.
//!
//! # Security
//!
//! `TRACE` echoes the request back, including cookies and authorization headers, which
//! cross-site tracing attacks use to read credentials that are otherwise hidden from scripts;
//! `TRACK` is its IIS equivalent. An application has no use for either. Nothing of the request
//! but its method and target reaches the inner service, and nothing the inner service answers
//! but a status and an `Allow` header reaches the client, so even a route that takes every
//! method cannot echo anything (it runs with an empty request, and its answer is replaced by a
//! `405`; an empty `Allow` then says the layer could not learn the route's methods).

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll, ready},
};

use axum::{
    BoxError,
    body::Body,
    response::{IntoResponse, Response},
};
use bytes::Bytes;
use http::{HeaderValue, Method, Request, StatusCode, header::ALLOW};
use pin_project_lite::pin_project;
use tower::{Layer, Service};

use crate::problem::Problem;

/// Answers `TRACE` and `TRACK` requests with 405 Method Not Allowed and the target's `Allow`
/// (or 404 where nothing is), without letting anything of the request reach a handler.
///
/// See the [module docs](self).
#[derive(Clone, Debug, Default)]
pub struct RejectTraceLayer {
    _priv: (),
}

impl RejectTraceLayer {
    /// Creates the layer.
    pub fn new() -> Self {
        Self::default()
    }
}

impl<S> Layer<S> for RejectTraceLayer {
    type Service = RejectTraceService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RejectTraceService { inner }
    }
}

/// The service built by [`RejectTraceLayer`].
#[derive(Clone, Debug)]
pub struct RejectTraceService<S> {
    inner: S,
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for RejectTraceService<S>
where
    S: Service<Request<ReqBody>, Response = http::Response<ResBody>>,
    ReqBody: Default,
    ResBody: http_body::Body<Data = Bytes> + Send + 'static,
    ResBody::Error: Into<BoxError>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        let refused = is_trace(req.method());
        let req = if refused { bare(req) } else { req };
        ResponseFuture {
            future: self.inner.call(req),
            refused,
        }
    }
}

fn is_trace(method: &Method) -> bool {
    let method = method.as_str();
    method.eq_ignore_ascii_case("TRACE") || method.eq_ignore_ascii_case("TRACK")
}

/// The request's method, target, version and extensions, without its headers or body.
fn bare<B: Default>(req: Request<B>) -> Request<B> {
    let (parts, _body) = req.into_parts();
    let mut bare = Request::new(B::default());
    *bare.method_mut() = parts.method;
    *bare.uri_mut() = parts.uri;
    *bare.version_mut() = parts.version;
    *bare.extensions_mut() = parts.extensions;
    bare
}

/// The refusal of a `TRACE`: 404 where the inner service found nothing, else 405 with the inner
/// service's `Allow`.
///
/// A 405 from the inner service keeps its `Allow`, or goes without one: axum's router adds
/// `Allow` outside the layers it wraps around a route's methods (`Router::layer` puts this layer
/// there), and does not replace one that is set. Any other answer means a handler took the
/// method; its methods are then unknown here, and the empty `Allow` says so.
fn refusal<B>(inner: &http::Response<B>) -> Response {
    let status = inner.status();
    if status == StatusCode::NOT_FOUND {
        return Problem::new(StatusCode::NOT_FOUND).into_response();
    }
    let mut response = Problem::new(StatusCode::METHOD_NOT_ALLOWED).into_response();
    let allow = if status == StatusCode::METHOD_NOT_ALLOWED {
        inner.headers().get(ALLOW).cloned()
    } else {
        Some(HeaderValue::from_static(""))
    };
    if let Some(allow) = allow {
        response.headers_mut().insert(ALLOW, allow);
    }
    response
}

pin_project! {
    /// The response future of [`RejectTraceService`].
    #[derive(Debug)]
    pub struct ResponseFuture<F> {
        #[pin]
        future: F,
        refused: bool,
    }
}

impl<F, ResBody, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<http::Response<ResBody>, E>>,
    ResBody: http_body::Body<Data = Bytes> + Send + 'static,
    ResBody::Error: Into<BoxError>,
{
    type Output = Result<Response, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let response = ready!(this.future.poll(cx))?;
        Poll::Ready(Ok(if *this.refused {
            refusal(&response)
        } else {
            response.map(Body::new)
        }))
    }
}

#[cfg(test)]
mod tests {
    use std::{
        convert::Infallible,
        sync::{Arc, Mutex},
    };

    use axum::{Router, routing::get};
    use http::header;
    use http_body_util::BodyExt;
    use tower::{ServiceExt, service_fn};

    use super::*;
    use crate::problem::PROBLEM_JSON;

    /// What the inner service saw of a request: its method, header count and body length.
    type Seen = Arc<Mutex<Vec<(String, usize, usize)>>>;

    /// Sends `method` with a cookie and a body through the layer over a handler that takes every
    /// method and echoes the cookie; returns the answer and what the handler saw.
    async fn send(method: &str) -> (Response, Vec<(String, usize, usize)>) {
        let seen = Seen::default();
        let record = Arc::clone(&seen);
        let inner = service_fn(move |req: Request<Body>| {
            let record = Arc::clone(&record);
            async move {
                let method = req.method().to_string();
                let headers = req.headers().len();
                let cookie = req.headers().get(header::COOKIE).cloned();
                let body = req.into_body().collect().await.unwrap().to_bytes();
                record.lock().unwrap().push((method, headers, body.len()));
                let mut echo = Response::new(Body::from(format!("echo {cookie:?}")));
                echo.headers_mut()
                    .insert(header::SET_COOKIE, HeaderValue::from_static("leak=1"));
                Ok::<_, Infallible>(echo)
            }
        });
        let req = Request::builder()
            .method(method)
            .header(header::COOKIE, "session=secret")
            .body(Body::from("secret body"))
            .unwrap();
        let response = RejectTraceLayer::new()
            .layer(inner)
            .oneshot(req)
            .await
            .unwrap();
        let seen = seen.lock().unwrap().clone();
        (response, seen)
    }

    async fn text(response: Response) -> String {
        let body = response.into_body().collect().await.unwrap().to_bytes();
        String::from_utf8_lossy(&body).into_owned()
    }

    #[tokio::test]
    async fn trace_and_track_are_refused_and_nothing_of_the_request_reaches_the_inner_service() {
        for method in ["TRACE", "TRACK", "trace"] {
            let (response, seen) = send(method).await;

            assert_eq!(
                response.status(),
                StatusCode::METHOD_NOT_ALLOWED,
                "{method}"
            );
            assert_eq!(response.headers()[header::CONTENT_TYPE], PROBLEM_JSON);
            assert_eq!(
                response.headers()[ALLOW],
                "",
                "{method}: the handler took the method, so its methods are unknown"
            );
            assert!(!response.headers().contains_key(header::SET_COOKIE));
            assert_eq!(
                seen,
                [(method.to_owned(), 0, 0)],
                "{method}: a bare request"
            );
            assert!(!text(response).await.contains("secret"), "{method} echoed");
        }
    }

    #[tokio::test]
    async fn a_refusal_names_the_methods_the_route_allows_and_nothing_is_not_found() {
        let app = || {
            RejectTraceLayer::new().layer(
                Router::new().route("/", get(|| async { "home" }).post(|| async { "posted" })),
            )
        };
        let trace = |path: &str| {
            Request::builder()
                .method(Method::TRACE)
                .uri(path)
                .body(Body::empty())
                .unwrap()
        };

        let response = app().oneshot(trace("/")).await.unwrap();
        assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(response.headers()[ALLOW], "GET,HEAD,POST");
        assert_eq!(response.headers()[header::CONTENT_TYPE], PROBLEM_JSON);

        let response = app().oneshot(trace("/nothing")).await.unwrap();
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
        assert!(!response.headers().contains_key(ALLOW));

        // Inside the router (`Router::layer` wraps each route's methods and the fallback): the
        // router adds the `Allow`.
        let inside = || {
            Router::new()
                .route("/", get(|| async { "home" }).post(|| async { "posted" }))
                .fallback(|| async { StatusCode::NOT_FOUND })
                .layer(RejectTraceLayer::new())
        };
        let response = inside().oneshot(trace("/")).await.unwrap();
        assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(response.headers()[ALLOW], "GET,HEAD,POST");
        let response = inside().oneshot(trace("/nothing")).await.unwrap();
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
        assert_eq!(response.headers()[header::CONTENT_TYPE], PROBLEM_JSON);
    }

    #[tokio::test]
    async fn other_methods_reach_the_handler() {
        for method in ["GET", "POST", "OPTIONS", "DELETE"] {
            let (response, seen) = send(method).await;

            assert_eq!(response.status(), StatusCode::OK, "{method}");
            assert_eq!(seen, [(method.to_owned(), 1, 11)], "{method}");
        }
    }
}
