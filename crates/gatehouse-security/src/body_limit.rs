//! Request body size limit that refuses a too-large `Content-Length` before reading a byte.
//!
//! tower-http's `RequestBodyLimitLayer` changes the request body type, which an axum `Router`
//! cannot take as a route layer; this layer keeps `axum::body::Body` (wrapping it in
//! `http_body_util::Limited`), so it composes with `Router::layer`.
//!
//! - A declared `Content-Length` above the limit: `413` problem at once, the inner service is
//!   never called and the body is never read.
//! - A body without a length (chunked) is counted while it streams; reading past the limit fails,
//!   which axum's body extractors answer with `413`.
//!
//! # Security
//! Assumes the HTTP server (hyper) has already rejected a malformed or duplicated
//! `Content-Length`. Routes that accept large uploads must be given their own, larger limit and
//! stream to disk; this layer protects everything else from memory exhaustion.

use std::task::{Context, Poll};

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use futures_util::future::Either;
use http::{Request, StatusCode};
use tower::{Layer, Service};

use crate::Problem;

/// Applies [`BodyLimit`] to a service.
#[derive(Clone, Copy, Debug)]
pub struct BodyLimitLayer {
    limit: usize,
}

impl BodyLimitLayer {
    /// Limits request bodies to `limit` bytes.
    pub fn new(limit: usize) -> Self {
        Self { limit }
    }
}

impl<S> Layer<S> for BodyLimitLayer {
    type Service = BodyLimit<S>;

    fn layer(&self, inner: S) -> Self::Service {
        BodyLimit {
            inner,
            limit: self.limit,
        }
    }
}

/// The service of [`BodyLimitLayer`].
#[derive(Clone, Debug)]
pub struct BodyLimit<S> {
    inner: S,
    limit: usize,
}

impl<S> Service<Request<Body>> for BodyLimit<S>
where
    S: Service<Request<Body>, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = Either<std::future::Ready<Result<Response, S::Error>>, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        let declared = req
            .headers()
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|len| len > self.limit as u64) {
            let problem = Problem::new(StatusCode::PAYLOAD_TOO_LARGE).with_detail(format!(
                "the request body is larger than the {} bytes this endpoint accepts",
                self.limit
            ));
            return Either::Left(std::future::ready(Ok(problem.into_response())));
        }
        let limit = self.limit;
        let req = req.map(|body| Body::new(http_body_util::Limited::new(body, limit)));
        Either::Right(self.inner.call(req))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::Router;
    use axum::body::Bytes;
    use axum::routing::post;
    use http_body_util::BodyExt as _;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use tower::ServiceExt as _;

    fn app(reached: Arc<AtomicBool>) -> Router {
        Router::new()
            .route(
                "/",
                post(move |body: Bytes| {
                    let reached = reached.clone();
                    async move {
                        reached.store(true, Ordering::SeqCst);
                        body.len().to_string()
                    }
                }),
            )
            .layer(BodyLimitLayer::new(16))
    }

    #[tokio::test]
    async fn a_declared_oversized_body_is_refused_before_the_handler() {
        let reached = Arc::new(AtomicBool::new(false));
        let res = app(reached.clone())
            .oneshot(
                Request::post("/")
                    .header("content-length", "17")
                    .body(Body::from(vec![b'a'; 17]))
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert!(!reached.load(Ordering::SeqCst), "the handler ran");
        assert_eq!(res.headers()["content-type"], crate::problem::PROBLEM_JSON);
    }

    #[tokio::test]
    async fn a_streamed_body_is_cut_at_the_limit() {
        let reached = Arc::new(AtomicBool::new(false));
        let chunks = futures_util::stream::iter(vec![
            Ok::<_, std::io::Error>(Bytes::from_static(b"0123456789")),
            Ok(Bytes::from_static(b"0123456789")),
        ]);
        let res = app(reached.clone())
            .oneshot(Request::post("/").body(Body::from_stream(chunks)).unwrap())
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::PAYLOAD_TOO_LARGE);
    }

    #[tokio::test]
    async fn a_body_within_the_limit_passes() {
        let reached = Arc::new(AtomicBool::new(false));
        let res = app(reached.clone())
            .oneshot(Request::post("/").body(Body::from("small")).unwrap())
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        let body = res.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], b"5");
    }
}
