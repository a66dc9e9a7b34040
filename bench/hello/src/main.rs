//! `bench-hello`: a bare axum server with no middleware at all.
//!
//! This is the baseline Gatehouse is compared with by `bench/run`: both
//! servers answer the same routes (`GET /`, `GET /healthz`, and
//! `GET|POST /api/v1/items`, here a fixed JSON page of 20 items and an echo
//! with `201`: no database, no authentication) on loopback,
//! `wrk` drives each in turn, and the harness reports Gatehouse's throughput
//! as a ratio of this one's. Keep it minimal: anything added here hides the
//! cost of what Gatehouse adds.
//!
//! Usage: `bench-hello [ADDR]`. The address is the first argument, else the
//! `HELLO_LISTEN` environment variable, else `127.0.0.1:0` (any free port).
//! Once bound it prints `listening on ADDR` (the real address) on stdout.

use std::io::Write;

use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::{Router, routing::get};

/// `GET /`: the smallest useful response.
async fn hello() -> &'static str {
    "Hello, world!"
}

/// `GET /healthz`: what the harness polls before it starts measuring.
async fn healthz() -> &'static str {
    "ok"
}

/// `GET /api/v1/items`: a page of 20 items, the shape Gatehouse answers, built once.
async fn items(
    axum::extract::State(page): axum::extract::State<&'static str>,
) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], page)
}

/// `POST /api/v1/items`: the body back, as a created item.
async fn create_item(body: axum::body::Bytes) -> impl IntoResponse {
    (
        StatusCode::CREATED,
        [(header::CONTENT_TYPE, "application/json")],
        body,
    )
}

fn items_page() -> &'static str {
    let items: Vec<String> = (0..20)
        .map(|i| {
            format!(
                r#"{{"id":"00000000-0000-4000-8000-{i:012}","owner_id":"00000000-0000-4000-8000-000000000000","name":"Item {i}","description":"A benchmark item.","created_at":"2026-01-01T00:00:00Z","updated_at":"2026-01-01T00:00:00Z","version":1}}"#
            )
        })
        .collect();
    Box::leak(format!(r#"{{"items":[{}],"next_cursor":null}}"#, items.join(",")).into_boxed_str())
}

fn listen_addr() -> String {
    std::env::args()
        .nth(1)
        .or_else(|| std::env::var("HELLO_LISTEN").ok())
        .filter(|addr| !addr.trim().is_empty())
        .unwrap_or_else(|| "127.0.0.1:0".to_owned())
}

fn main() -> std::io::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(serve(listen_addr()))
}

async fn serve(addr: String) -> std::io::Result<()> {
    let app = Router::new()
        .route("/", get(hello))
        .route("/healthz", get(healthz))
        .route("/api/v1/items", get(items).post(create_item))
        .with_state(items_page());

    let listener = tokio::net::TcpListener::bind(&addr).await.map_err(|err| {
        std::io::Error::new(err.kind(), format!("cannot listen on {addr}: {err}"))
    })?;
    let bound = listener.local_addr()?;
    {
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "listening on {bound}")?;
        stdout.flush()?;
    }

    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown_signal())
        .await
}

/// Resolves on Ctrl-C or SIGTERM, so the harness can stop the server cleanly.
async fn shutdown_signal() {
    let ctrl_c = async {
        // If the handler cannot be installed, only SIGTERM (or a kill) stops us.
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };

    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();

    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
}
