//! Telemetry: log set-up, one span and one log line per request, Prometheus metrics.
//!
//! Logs are JSON lines in production and readable lines in development (`GATEHOUSE_LOG_FORMAT`),
//! filtered by `GATEHOUSE_LOG`. Every request runs inside a `request` span carrying the method,
//! the matched route template, the request ID and the client IP; when it finishes, one event
//! records the status and latency, and the metrics are updated. A response refused by a
//! permission, scope or object check (it carries an [`access::Denial`](crate::access::Denial))
//! is first logged as `access_denied` with its route template.
//!
//! # Security
//! - The span records the route *template* (`/items/{id}`), never the raw path or query, so
//!   tokens in URLs never reach the logs; unmatched paths are logged as `<unmatched>`.
//! - Header values are not logged; `Authorization`, `Cookie`, `Set-Cookie` and `X-API-Key` are
//!   additionally marked sensitive by the outermost layer.
//! - No forged lines: values can come from a request (a JWT header field in an error message, a
//!   CSP report's URI). The JSON format escapes their control characters; the text format does
//!   the same through [`EscapedFields`], so a `\n` in a value never starts a line of its own
//!   and an escape sequence never reaches the terminal.
//! - Metrics labels are the same bounded set (method, route template, status), so an attacker
//!   cannot grow the label space by requesting random paths.

use std::fmt::{self, Write as _};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::response::Response;
use gatehouse_security::{ClientIp, RequestId};
use http::Method;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use tower::{Layer, Service};
use tracing::field::{Field, Visit};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::format::{Format, Writer};
use tracing_subscriber::fmt::{FormatFields, MakeWriter};
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt as _;

use crate::access::Denial;
use crate::config::LogFormat;

/// Keeps the log writer thread alive; dropping it flushes every pending line.
#[derive(Debug)]
#[must_use = "dropping the guard stops the log writer"]
pub struct LogGuard {
    _worker: Option<tracing_appender::non_blocking::WorkerGuard>,
}

/// Installs the global log subscriber writing to standard output. Safe to call more than once
/// (later calls do nothing).
///
/// Lines are formatted on the request's thread but written by a dedicated thread in batches,
/// so a slow or contended standard output never holds up a request. The writer is lossless: if
/// its queue fills, requests wait rather than lines being dropped (security events must not be
/// lost).
pub fn init(filter: &str, format: LogFormat) -> LogGuard {
    use std::io::IsTerminal as _;

    let filter = EnvFilter::try_new(filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let ansi = std::io::stdout().is_terminal();
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(false)
        .thread_name("gatehouse-log")
        .finish(std::io::BufWriter::new(std::io::stdout()));
    let registry = tracing_subscriber::registry().with(filter);
    let result = match format {
        LogFormat::Json => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(true)
                    .with_span_list(false)
                    .with_writer(writer),
            )
            .try_init(),
        LogFormat::Text => registry.with(text_layer(writer, ansi)).try_init(),
    };
    // Already installed (tests start many apps in one process): keep the first.
    LogGuard {
        _worker: result.is_ok().then_some(guard),
    }
}

/// Installs a readable subscriber writing to standard error, for command-line tools.
pub fn init_stderr(filter: &str) {
    let filter = EnvFilter::try_new(filter).unwrap_or_else(|_| EnvFilter::new("warn"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let result = tracing_subscriber::registry()
        .with(filter)
        .with(text_layer(std::io::stderr, ansi))
        .try_init();
    drop(result);
}

/// The readable format: one line per event, its values escaped by [`EscapedFields`].
fn text_layer<S, W>(
    writer: W,
    ansi: bool,
) -> tracing_subscriber::fmt::Layer<S, EscapedFields, Format, W>
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
    W: for<'w> MakeWriter<'w> + 'static,
{
    tracing_subscriber::fmt::layer()
        .fmt_fields(EscapedFields)
        .with_target(false)
        .with_ansi(ansi)
        .with_writer(writer)
}

/// The text format's fields, written as tracing-subscriber's default writes them (the message
/// bare, then `name=value`), with every control character in a value escaped (`\n`, `\r`,
/// `\u{1b}`, …) as the JSON format escapes it. tracing-subscriber writes `%`-recorded values
/// and messages as they are, so without this a value taken from a request could end the line
/// and write a forged one after it.
#[derive(Clone, Copy, Debug, Default)]
pub struct EscapedFields;

impl<'writer> FormatFields<'writer> for EscapedFields {
    fn format_fields<R: RecordFields>(&self, writer: Writer<'writer>, fields: R) -> fmt::Result {
        let mut visitor = EscapingVisitor {
            writer,
            result: Ok(()),
            first: true,
        };
        fields.record(&mut visitor);
        visitor.result
    }
}

struct EscapingVisitor<'writer> {
    writer: Writer<'writer>,
    result: fmt::Result,
    first: bool,
}

impl EscapingVisitor<'_> {
    fn write(&mut self, field: &Field, value: &dyn fmt::Debug) -> fmt::Result {
        let name = field.name();
        if name.starts_with("log.") {
            // The `log` crate's metadata, already shown by the line's prefix.
            return Ok(());
        }
        if !std::mem::take(&mut self.first) {
            self.writer.write_char(' ')?;
        }
        if name != "message" {
            write!(self.writer, "{}=", name.strip_prefix("r#").unwrap_or(name))?;
        }
        write!(Escaping(&mut self.writer), "{value:?}")
    }
}

impl Visit for EscapingVisitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.record_debug(field, &format_args!("{value}"));
        } else {
            self.record_debug(field, &value);
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if self.result.is_ok() {
            self.result = self.write(field, value);
        }
    }
}

/// A writer that escapes control characters (and the Unicode line and paragraph separators)
/// as Rust's `escape_debug` does, and passes everything else through.
struct Escaping<'a, W>(&'a mut W);

impl<W: fmt::Write> fmt::Write for Escaping<'_, W> {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        let mut rest = text;
        while let Some(at) = rest.find(|c: char| needs_escape(c)) {
            let (plain, tail) = rest.split_at(at);
            self.0.write_str(plain)?;
            let mut chars = tail.chars();
            if let Some(c) = chars.next() {
                write!(self.0, "{}", c.escape_debug())?;
            }
            rest = chars.as_str();
        }
        self.0.write_str(rest)
    }
}

fn needs_escape(c: char) -> bool {
    c.is_control() || c == '\u{2028}' || c == '\u{2029}'
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HttpLabels {
    method: String,
    route: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    method: String,
    route: String,
}

/// The process's Prometheus metrics.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: Family<HttpLabels, Counter>,
    latency: Family<RouteLabels, Histogram>,
    csp_reports: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every metric.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("gatehouse");
        let requests = Family::<HttpLabels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests by method, route template and status",
            requests.clone(),
        );
        let latency = Family::<RouteLabels, Histogram>::new_with_constructor(|| {
            Histogram::new([
                0.000_25, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
                2.5, 5.0,
            ])
        });
        registry.register(
            "http_request_duration_seconds",
            "HTTP request latency by method and route template",
            latency.clone(),
        );
        let csp_reports = Counter::default();
        registry.register(
            "csp_reports",
            "Content-Security-Policy violation reports received",
            csp_reports.clone(),
        );
        Self {
            registry,
            requests,
            latency,
            csp_reports,
        }
    }

    fn observe(&self, method: &str, route: &str, status: u16, seconds: f64) {
        self.requests
            .get_or_create(&HttpLabels {
                method: method.to_owned(),
                route: route.to_owned(),
                status,
            })
            .inc();
        self.latency
            .get_or_create(&RouteLabels {
                method: method.to_owned(),
                route: route.to_owned(),
            })
            .observe(seconds);
    }

    /// Counts one CSP violation report.
    pub fn csp_report(&self) {
        self.csp_reports.inc();
    }

    /// The text exposition format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// The label for `method`: the standard methods by name, anything else as `OTHER`, so clients
/// cannot grow the label set with invented methods.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        Method::TRACE => "TRACE",
        Method::CONNECT => "CONNECT",
        _ => "OTHER",
    }
}

const UNMATCHED: &str = "<unmatched>";

/// Displays an optional value as itself or as nothing.
struct OrEmpty<'a, T>(Option<&'a T>);

impl<T: std::fmt::Display> std::fmt::Display for OrEmpty<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(v) => v.fmt(f),
            None => Ok(()),
        }
    }
}

/// Layer: the request span, its closing log line and the metrics.
#[derive(Clone, Debug)]
pub struct ObserveLayer {
    metrics: Arc<Metrics>,
}

impl ObserveLayer {
    /// Observes requests into `metrics`.
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Self { metrics }
    }
}

impl<S> Layer<S> for ObserveLayer {
    type Service = Observe<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Observe {
            inner,
            metrics: self.metrics.clone(),
        }
    }
}

/// The service of [`ObserveLayer`].
#[derive(Clone, Debug)]
pub struct Observe<S> {
    inner: S,
    metrics: Arc<Metrics>,
}

impl<S> Service<Request> for Observe<S>
where
    S: Service<Request, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = ObserveFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        let start = Instant::now();
        let method = method_label(req.method());
        let route = req.extensions().get::<MatchedPath>().cloned();
        let span = tracing::info_span!(
            "request",
            method,
            route = route.as_ref().map_or(UNMATCHED, MatchedPath::as_str),
            request_id = %OrEmpty(req.extensions().get::<RequestId>()),
            client_ip = %OrEmpty(req.extensions().get::<ClientIp>()),
        );
        let inner = span.in_scope(|| self.inner.call(req));
        ObserveFuture {
            inner,
            span,
            start,
            method,
            route,
            metrics: self.metrics.clone(),
        }
    }
}

pin_project_lite::pin_project! {
    /// The response future of [`Observe`].
    pub struct ObserveFuture<F> {
        #[pin]
        inner: F,
        span: tracing::Span,
        start: Instant,
        method: &'static str,
        route: Option<MatchedPath>,
        metrics: Arc<Metrics>,
    }
}

impl<F, E> Future for ObserveFuture<F>
where
    F: Future<Output = Result<Response, E>>,
{
    type Output = Result<Response, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let _entered = this.span.enter();
        let result = std::task::ready!(this.inner.poll(cx));
        if let Ok(response) = &result {
            let latency = this.start.elapsed();
            let status = response.status().as_u16();
            let route = this.route.as_ref().map_or(UNMATCHED, MatchedPath::as_str);
            // Here, not where the check refused: only this layer knows the route template.
            if let Some(denial) = response.extensions().get::<Denial>() {
                denial.log(route);
            }
            tracing::info!(
                status,
                latency_ms = latency.as_secs_f64() * 1_000.0,
                "request finished"
            );
            this.metrics
                .observe(this.method, route, status, latency.as_secs_f64());
        }
        Poll::Ready(result)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    /// What a text-format subscriber writes while `log` runs.
    fn text_output(log: impl FnOnce()) -> String {
        let buffer = Arc::new(Mutex::new(Vec::<u8>::new()));
        let writer = {
            let buffer = buffer.clone();
            move || WriteTo(buffer.clone())
        };
        let subscriber = tracing_subscriber::registry().with(text_layer(writer, false));
        tracing::subscriber::with_default(subscriber, log);
        String::from_utf8(buffer.lock().unwrap().clone()).unwrap()
    }

    struct WriteTo(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for WriteTo {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    const FORGED: &str = "x\n2030-01-01T00:00:00.000000Z  INFO event=\"sign_in\" forged";

    #[test]
    fn text_logs_escape_control_characters_in_every_value() {
        let out = text_output(|| {
            let span = tracing::info_span!("request", route = %FORGED);
            let _entered = span.enter();
            tracing::info!(reason = %FORGED, debug = ?FORGED, bell = "\u{7}\u{1b}[31m", color = %"\u{1b}[31mred", "refused: {FORGED}");
        });

        assert_eq!(out.lines().count(), 1, "{out}");
        assert_eq!(out.matches(r"x\n2030").count(), 4, "{out}");
        assert!(out.contains(r#"bell="\u{7}\u{1b}[31m""#), "{out}");
        assert!(out.contains(r"color=\u{1b}[31mred"), "{out}");
        assert!(!out.contains('\u{1b}'), "{out}");
    }

    #[test]
    fn text_logs_keep_the_default_layout() {
        let out = text_output(|| {
            let span = tracing::info_span!("request", method = "GET", route = "/items/{id}");
            let _entered = span.enter();
            tracing::info!(status = 200, who = %"ann", "request finished");
        });

        assert!(
            out.contains(
                r#"request{method="GET" route="/items/{id}"}: request finished status=200 who=ann"#
            ),
            "{out}"
        );
    }

    #[test]
    fn log_lines_are_stamped_in_utc() {
        let out = text_output(|| tracing::info!("tick"));
        let stamp = out.split_whitespace().next().unwrap_or_default();
        let parsed =
            time::OffsetDateTime::parse(stamp, &time::format_description::well_known::Rfc3339)
                .unwrap_or_else(|e| panic!("{stamp:?} is not an RFC 3339 time: {e}"));
        assert!(stamp.ends_with('Z') && parsed.offset().is_utc(), "{out}");
    }

    #[test]
    fn metrics_encode_requests_by_route_template() {
        let m = Metrics::new();
        m.observe("GET", "/items/{id}", 200, 0.002);
        m.csp_report();
        let text = m.encode();
        assert!(
            text.contains(
                r#"gatehouse_http_requests_total{method="GET",route="/items/{id}",status="200"} 1"#
            ),
            "{text}"
        );
        assert!(text.contains("gatehouse_csp_reports_total 1"), "{text}");
    }
}
