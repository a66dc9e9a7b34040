//! Refuses `TRACE` and `TRACK` requests.
//!
//! [`RejectTraceLayer`] answers `TRACE` and `TRACK` (compared case-insensitively) with a 405
//! [`Problem`] without calling the inner service; other methods pass through.
//!
//! # Security
//!
//! `TRACE` echoes the request back, including cookies and authorization headers, which
//! cross-site tracing attacks use to read credentials that are otherwise hidden from scripts;
//! `TRACK` is its IIS equivalent. An application has no use for either. The 405 carries no
//! `Allow` header because this layer does not know the methods of the target route.

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
use http::{Method, Request, StatusCode};
use pin_project_lite::pin_project;
use tower::{Layer, Service};

use crate::problem::Problem;

/// Answers `TRACE` and `TRACK` requests with 405 Method Not Allowed.
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
        let kind = if is_trace(req.method()) {
            Kind::Rejected {
                response: Some(Problem::new(StatusCode::METHOD_NOT_ALLOWED).into_response()),
            }
        } else {
            Kind::Passed {
                future: self.inner.call(req),
            }
        };
        ResponseFuture { kind }
    }
}

fn is_trace(method: &Method) -> bool {
    let method = method.as_str();
    method.eq_ignore_ascii_case("TRACE") || method.eq_ignore_ascii_case("TRACK")
}

pin_project! {
    /// The response future of [`RejectTraceService`].
    #[derive(Debug)]
    pub struct ResponseFuture<F> {
        #[pin]
        kind: Kind<F>,
    }
}

pin_project! {
    #[project = KindProj]
    #[derive(Debug)]
    enum Kind<F> {
        Passed {
            #[pin]
            future: F,
        },
        Rejected {
            response: Option<Response>,
        },
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
        match self.project().kind.project() {
            KindProj::Passed { future } => {
                Poll::Ready(ready!(future.poll(cx)).map(|response| response.map(Body::new)))
            }
            KindProj::Rejected { response } => Poll::Ready(Ok(response
                .take()
                .expect("ResponseFuture polled after completion"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::{
        convert::Infallible,
        sync::{
            Arc,
            atomic::{AtomicUsize, Ordering},
        },
    };

    use http::header;
    use tower::{ServiceExt, service_fn};

    use super::*;
    use crate::problem::PROBLEM_JSON;

    /// Sends a request with `method` and reports the status and whether the handler ran.
    async fn send(method: &str) -> (StatusCode, Option<String>, usize) {
        let calls = Arc::new(AtomicUsize::new(0));
        let seen = Arc::clone(&calls);
        let inner = service_fn(move |_req: Request<Body>| {
            seen.fetch_add(1, Ordering::SeqCst);
            async { Ok::<_, Infallible>(Response::new(Body::from("echo"))) }
        });
        let req = Request::builder()
            .method(method)
            .body(Body::empty())
            .unwrap();

        let response = RejectTraceLayer::new()
            .layer(inner)
            .oneshot(req)
            .await
            .unwrap();

        let content_type = response
            .headers()
            .get(header::CONTENT_TYPE)
            .map(|value| value.to_str().unwrap().to_owned());
        (
            response.status(),
            content_type,
            calls.load(Ordering::SeqCst),
        )
    }

    #[tokio::test]
    async fn trace_and_track_are_refused_before_the_handler() {
        for method in ["TRACE", "TRACK", "trace"] {
            let (status, content_type, calls) = send(method).await;

            assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{method}");
            assert_eq!(content_type.as_deref(), Some(PROBLEM_JSON), "{method}");
            assert_eq!(calls, 0, "{method} reached the handler");
        }
    }

    #[tokio::test]
    async fn other_methods_reach_the_handler() {
        for method in ["GET", "POST", "OPTIONS", "DELETE"] {
            let (status, _, calls) = send(method).await;

            assert_eq!(status, StatusCode::OK, "{method}");
            assert_eq!(calls, 1, "{method}");
        }
    }
}
