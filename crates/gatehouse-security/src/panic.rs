//! Turns a panic in a handler into an opaque 500 problem that carries the request ID.
//!
//! [`CatchPanicLayer`] catches a panic raised while the inner service's `call` runs or while
//! its future is polled, logs it with `tracing::error!` (`event = "panic"`, the request ID and
//! the panic message when it is a string), and answers with a 500 [`Problem`] carrying the
//! request ID taken from the [`RequestId`] extension, when there is one.
//!
//! Unlike `tower_http::catch_panic`, the answer is a problem document with the request ID, so
//! the client can quote the ID and the operator can find the log line.
//!
//! # Security
//!
//! Nothing about the panic reaches the response: its message may contain data, paths or
//! internal state. The panic is caught after the inner service's state may have been left
//! half-updated (the code is not unwind safe in general); services that hold locks or shared
//! state across a panic must tolerate that, for example by not using `std::sync::Mutex`
//! poisoning as a signal.
//!
//! # Deployment caveat
//!
//! Rust's default panic hook still prints the message to stderr before this layer runs; an
//! application that logs to a collector should install its own hook. Panics are only caught
//! with `panic = "unwind"` (the default), never with `panic = "abort"`.

use std::{
    any::Any,
    future::Future,
    panic::AssertUnwindSafe,
    pin::Pin,
    task::{Context, Poll, ready},
};

use axum::{
    BoxError,
    body::Body,
    response::{IntoResponse, Response},
};
use bytes::Bytes;
use futures_util::future::{CatchUnwind, FutureExt};
use http::{Request, StatusCode};
use pin_project_lite::pin_project;
use tower::{Layer, Service};

use crate::{problem::Problem, request_id::RequestId};

/// Catches panics of the inner service and answers with a 500 [`Problem`].
///
/// See the [module docs](self).
#[derive(Clone, Debug, Default)]
pub struct CatchPanicLayer {
    _priv: (),
}

impl CatchPanicLayer {
    /// Creates the layer.
    pub fn new() -> Self {
        Self::default()
    }
}

impl<S> Layer<S> for CatchPanicLayer {
    type Service = CatchPanicService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        CatchPanicService { inner }
    }
}

/// The service built by [`CatchPanicLayer`].
#[derive(Clone, Debug)]
pub struct CatchPanicService<S> {
    inner: S,
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for CatchPanicService<S>
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
        let request_id = req.extensions().get::<RequestId>().cloned();
        let kind = match std::panic::catch_unwind(AssertUnwindSafe(|| self.inner.call(req))) {
            Ok(future) => Kind::Running {
                future: AssertUnwindSafe(future).catch_unwind(),
                request_id,
            },
            Err(panic) => Kind::Panicked {
                response: Some(panic_response(&*panic, request_id)),
            },
        };
        ResponseFuture { kind }
    }
}

pin_project! {
    /// The response future of [`CatchPanicService`].
    pub struct ResponseFuture<F> {
        #[pin]
        kind: Kind<F>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F> {
        Running {
            #[pin]
            future: CatchUnwind<AssertUnwindSafe<F>>,
            request_id: Option<RequestId>,
        },
        Panicked {
            response: Option<Response>,
        },
    }
}

impl<F> std::fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
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
            KindProj::Running { future, request_id } => match ready!(future.poll(cx)) {
                Ok(result) => Poll::Ready(result.map(|response| response.map(Body::new))),
                Err(panic) => Poll::Ready(Ok(panic_response(&*panic, request_id.take()))),
            },
            KindProj::Panicked { response } => Poll::Ready(Ok(response
                .take()
                .expect("ResponseFuture polled after completion"))),
        }
    }
}

/// Logs `panic` and builds the opaque answer.
fn panic_response(panic: &(dyn Any + Send), request_id: Option<RequestId>) -> Response {
    let message = panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str));
    tracing::error!(
        event = "panic",
        request_id = request_id.as_ref().map(RequestId::as_str),
        panic_message = message,
        "request handler panicked"
    );
    let mut problem = Problem::new(StatusCode::INTERNAL_SERVER_ERROR);
    if let Some(id) = request_id {
        problem = problem.with_request_id(id.as_str());
    }
    problem.into_response()
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use axum::{Router, routing::get};
    use http::header;
    use http_body_util::BodyExt;
    use serde_json::{Value, json};
    use tower::{ServiceExt, service_fn};

    use super::*;
    use crate::{
        problem::PROBLEM_JSON,
        request_id::{REQUEST_ID_HEADER, RequestIdLayer},
    };

    const SECRET: &str = "database password is hunter2";

    async fn panicking_handler() -> &'static str {
        panic!("{SECRET}")
    }

    fn request_with_id(id: &'static str) -> Request<Body> {
        Request::builder()
            .uri("/")
            .header(REQUEST_ID_HEADER, id)
            .body(Body::empty())
            .unwrap()
    }

    async fn assert_opaque_500(response: Response, id: &str) {
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(response.headers()[header::CONTENT_TYPE], PROBLEM_JSON);
        let body = response.into_body().collect().await.unwrap().to_bytes();
        let text = String::from_utf8(body.to_vec()).unwrap();
        assert!(!text.contains("hunter2"), "panic leaked: {text}");
        let json: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            json,
            json!({
                "type": "about:blank",
                "title": "Internal Server Error",
                "status": 500,
                "request_id": id,
            })
        );
    }

    #[tokio::test]
    async fn panicking_handler_gives_an_opaque_500_problem_with_the_request_id() {
        let app = Router::new()
            .route("/", get(panicking_handler))
            .layer(CatchPanicLayer::new())
            .layer(RequestIdLayer::new());

        let response = app.oneshot(request_with_id("req-7")).await.unwrap();

        assert_eq!(response.headers()[REQUEST_ID_HEADER], "req-7");
        assert_opaque_500(response, "req-7").await;
    }

    #[tokio::test]
    async fn panic_in_call_itself_is_caught() {
        let inner = tower::service_fn(
            |_req: Request<Body>| -> std::future::Ready<Result<Response, Infallible>> {
                panic!("{SECRET}")
            },
        );
        let service = RequestIdLayer::new().layer(CatchPanicLayer::new().layer(inner));

        let response = service.oneshot(request_with_id("req-8")).await.unwrap();

        assert_opaque_500(response, "req-8").await;
    }

    #[tokio::test]
    async fn panic_without_a_request_id_still_gives_a_500_problem() {
        let inner = service_fn(|_req: Request<Body>| async {
            if true {
                panic!("static message");
            }
            Ok::<Response, Infallible>(Response::new(Body::empty()))
        });

        let response = CatchPanicLayer::new()
            .layer(inner)
            .oneshot(Request::new(Body::empty()))
            .await
            .unwrap();

        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let body = response.into_body().collect().await.unwrap().to_bytes();
        let json: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(json.get("request_id"), None);
    }

    #[tokio::test]
    async fn normal_responses_pass_through() {
        let app = Router::new()
            .route("/", get(|| async { "fine" }))
            .layer(CatchPanicLayer::new());

        let response = app.oneshot(Request::new(Body::empty())).await.unwrap();

        assert_eq!(response.status(), StatusCode::OK);
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], b"fine");
    }
}
