//! Request IDs: one identifier per request, shared by the logs, the error bodies and the
//! client.
//!
//! [`RequestIdLayer`] accepts a well-formed incoming `X-Request-Id` (so an ID assigned by a
//! load balancer or by the client follows the request through) and otherwise generates a UUID
//! v4. The chosen ID is inserted into the request extensions as a [`RequestId`] (also an
//! extractor), written back to the request's `X-Request-Id` header, and set on every response,
//! replacing whatever the inner service put there.
//!
//! # Security
//!
//! An incoming ID is client-controlled, so it is accepted only when it is 1 to 128 bytes of
//! ASCII letters, digits, `-`, `_`, `.` and `:`. That keeps it safe to write into logs, HTML
//! and JSON without escaping surprises (no quotes, spaces, newlines or `<`) and bounds what
//! a client can make the server store. Several `X-Request-Id` headers are treated as none.
//!
//! An accepted ID is not unique and proves nothing: a client can reuse one on purpose. Never
//! use it as a key for anything but correlating logs.
//!
//! This layer cannot panic, so it can sit outside the panic catcher and a 500 still carries
//! the ID.

use std::{
    fmt,
    future::Future,
    pin::Pin,
    task::{Context, Poll, ready},
};

use axum::extract::FromRequestParts;
use http::{HeaderMap, HeaderName, HeaderValue, Request, Response, StatusCode, request::Parts};
use pin_project_lite::pin_project;
use tower::{Layer, Service};

use crate::problem::Problem;

/// The `x-request-id` header.
pub const REQUEST_ID_HEADER: HeaderName = HeaderName::from_static("x-request-id");

/// The longest incoming request ID that is accepted, in bytes.
const MAX_LEN: usize = 128;

/// The ID of the current request, found in the request extensions once [`RequestIdLayer`]
/// has run.
///
/// As an extractor it fails with a 500 [`Problem`] when the layer is not installed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestId(HeaderValue);

impl RequestId {
    /// The ID as text.
    pub fn as_str(&self) -> &str {
        // Only ever built from validated ASCII or a UUID, so `to_str` cannot fail.
        self.0.to_str().unwrap_or_default()
    }

    /// Accepts `value` as a request ID if it is well formed.
    fn parse(value: &HeaderValue) -> Option<Self> {
        let bytes = value.as_bytes();
        let well_formed = (1..=MAX_LEN).contains(&bytes.len())
            && bytes
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'));
        well_formed.then(|| Self(value.clone()))
    }

    /// The single well-formed `X-Request-Id` of `headers`, if there is one.
    fn from_headers(headers: &HeaderMap) -> Option<Self> {
        let mut values = headers.get_all(REQUEST_ID_HEADER).into_iter();
        match (values.next(), values.next()) {
            (Some(value), None) => Self::parse(value),
            _ => None,
        }
    }

    /// A new random UUID v4.
    fn generate() -> Self {
        // `thread_rng` is a CSPRNG seeded from the OS: unpredictable IDs without a system
        // call per request (which `Uuid::new_v4` would make).
        let uuid = uuid::Builder::from_random_bytes(rand::random()).into_uuid();
        let mut buffer = uuid::Uuid::encode_buffer();
        let text = uuid.hyphenated().encode_lower(&mut buffer);
        Self(HeaderValue::from_str(text).expect("a hyphenated UUID is a valid header value"))
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl<S: Send + Sync> FromRequestParts<S> for RequestId {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts.extensions.get::<Self>().cloned().ok_or_else(|| {
            tracing::error!("RequestId extractor used on a route without RequestIdLayer");
            Problem::new(StatusCode::INTERNAL_SERVER_ERROR)
                .with_detail("The request ID layer is not installed.")
        })
    }
}

/// Assigns every request a [`RequestId`] and echoes it in the `X-Request-Id` response header.
///
/// See the [module docs](self) for the rules.
#[derive(Clone, Debug, Default)]
pub struct RequestIdLayer {
    _priv: (),
}

impl RequestIdLayer {
    /// Creates the layer.
    pub fn new() -> Self {
        Self::default()
    }
}

impl<S> Layer<S> for RequestIdLayer {
    type Service = RequestIdService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequestIdService { inner }
    }
}

/// The service built by [`RequestIdLayer`].
#[derive(Clone, Debug)]
pub struct RequestIdService<S> {
    inner: S,
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for RequestIdService<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ReqBody>) -> Self::Future {
        let id = RequestId::from_headers(req.headers()).unwrap_or_else(RequestId::generate);
        // `insert` replaces every incoming value, so the inner service sees exactly one.
        req.headers_mut().insert(REQUEST_ID_HEADER, id.0.clone());
        let header = id.0.clone();
        req.extensions_mut().insert(id);
        ResponseFuture {
            inner: self.inner.call(req),
            header: Some(header),
        }
    }
}

pin_project! {
    /// The response future of [`RequestIdService`].
    #[derive(Debug)]
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        header: Option<HeaderValue>,
    }
}

impl<F, ResBody, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<ResBody>, E>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut response = ready!(this.inner.poll(cx))?;
        if let Some(header) = this.header.take() {
            response.headers_mut().insert(REQUEST_ID_HEADER, header);
        }
        Poll::Ready(Ok(response))
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use axum::{Router, body::Body, routing::get};
    use http_body_util::BodyExt;
    use tower::{ServiceExt, service_fn};

    use super::*;
    use crate::problem::PROBLEM_JSON;

    /// A service that answers with the request ID it saw in its extensions and in its header.
    async fn echo(req: Request<Body>) -> Result<Response<Body>, Infallible> {
        let extension = req.extensions().get::<RequestId>().unwrap().to_string();
        let header = req.headers()[REQUEST_ID_HEADER]
            .to_str()
            .unwrap()
            .to_owned();
        Ok(Response::new(Body::from(format!("{extension} {header}"))))
    }

    async fn send(req: Request<Body>) -> (String, String) {
        let response = RequestIdLayer::new()
            .layer(service_fn(echo))
            .oneshot(req)
            .await
            .unwrap();
        let header = response.headers()[REQUEST_ID_HEADER]
            .to_str()
            .unwrap()
            .to_owned();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (header, String::from_utf8(body.to_vec()).unwrap())
    }

    fn with_ids(ids: &[&str]) -> Request<Body> {
        let mut req = Request::new(Body::empty());
        for id in ids {
            req.headers_mut()
                .append(REQUEST_ID_HEADER, HeaderValue::from_str(id).unwrap());
        }
        req
    }

    fn is_uuid_v4(id: &str) -> bool {
        uuid::Uuid::parse_str(id).is_ok_and(|uuid| uuid.get_version_num() == 4)
    }

    #[tokio::test]
    async fn request_without_id_gets_a_uuid_that_handler_and_client_both_see() {
        let (header, body) = send(with_ids(&[])).await;

        assert!(is_uuid_v4(&header), "{header}");
        assert_eq!(body, format!("{header} {header}"));
    }

    #[tokio::test]
    async fn generated_ids_differ_between_requests() {
        let (first, _) = send(with_ids(&[])).await;
        let (second, _) = send(with_ids(&[])).await;

        assert_ne!(first, second);
    }

    #[tokio::test]
    async fn well_formed_incoming_id_is_kept() {
        let id = "lb-1:req_42.A";

        let (header, body) = send(with_ids(&[id])).await;

        assert_eq!(header, id);
        assert_eq!(body, format!("{id} {id}"));
    }

    #[tokio::test]
    async fn id_of_exactly_128_bytes_is_kept() {
        let id = "a".repeat(128);

        let (header, _) = send(with_ids(&[&id])).await;

        assert_eq!(header, id);
    }

    #[tokio::test]
    async fn malformed_incoming_ids_are_replaced() {
        let too_long = "a".repeat(129);
        for bad in [
            "",
            "has space",
            "<script>",
            "quote\"",
            "semi;colon",
            "a/b",
            &too_long,
        ] {
            let (header, body) = send(with_ids(&[bad])).await;

            assert!(is_uuid_v4(&header), "{bad:?} was kept as {header:?}");
            assert_eq!(
                body,
                format!("{header} {header}"),
                "handler saw another id for {bad:?}"
            );
        }
    }

    #[tokio::test]
    async fn several_incoming_ids_are_all_replaced_by_one() {
        let (header, body) = send(with_ids(&["first", "second"])).await;

        assert!(is_uuid_v4(&header), "{header}");
        assert_eq!(body, format!("{header} {header}"));
    }

    #[tokio::test]
    async fn response_header_set_by_the_inner_service_is_overwritten() {
        let inner = service_fn(|_req: Request<Body>| async {
            let mut response = Response::new(Body::empty());
            response
                .headers_mut()
                .insert(REQUEST_ID_HEADER, HeaderValue::from_static("forged"));
            Ok::<_, Infallible>(response)
        });

        let response = RequestIdLayer::new()
            .layer(inner)
            .oneshot(with_ids(&["client-id"]))
            .await
            .unwrap();

        let values: Vec<_> = response
            .headers()
            .get_all(REQUEST_ID_HEADER)
            .iter()
            .collect();
        assert_eq!(values, ["client-id"]);
    }

    #[tokio::test]
    async fn extractor_works_under_the_layer() {
        let app = Router::new()
            .route("/", get(|id: RequestId| async move { id.to_string() }))
            .layer(RequestIdLayer::new());

        let response = app.oneshot(with_ids(&["abc"])).await.unwrap();

        assert_eq!(response.status(), StatusCode::OK);
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], b"abc");
    }

    #[tokio::test]
    async fn extractor_without_the_layer_is_a_500_problem() {
        let app = Router::new().route("/", get(|id: RequestId| async move { id.to_string() }));

        let response = app.oneshot(Request::new(Body::empty())).await.unwrap();

        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(response.headers()[http::header::CONTENT_TYPE], PROBLEM_JSON);
    }
}
