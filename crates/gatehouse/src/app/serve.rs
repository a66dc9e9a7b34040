//! Serving HTTP/1.1 with graceful shutdown.

use axum::Router;
use axum::extract::ConnectInfo;
use tokio::net::TcpListener;

/// Serves HTTP/1.1 on `listener` until `stop` turns true, then lets open requests finish.
///
/// hyper directly rather than `axum::serve`, for one setting axum does not expose: the
/// header-read timeout (`GATEHOUSE_HEADER_TIMEOUT`). Without it a client that sends its request
/// headers a byte at a time (slowloris) holds a connection and a task forever, because the
/// request timeout only starts once the headers are complete.
pub(super) async fn serve_http(
    listener: TcpListener,
    router: Router,
    header_timeout: std::time::Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(header_timeout);
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    // Usually out of file descriptors: back off instead of spinning.
                    tracing::error!(event = "accept_failed", error = %e, "cannot accept a connection");
                    tokio::time::sleep(std::time::Duration::from_millis(250)).await;
                    continue;
                }
            },
            () = until_stopped(&mut stop) => break,
        };
        let _ = stream.set_nodelay(true);
        let router = router.clone();
        let service =
            hyper::service::service_fn(move |mut req: http::Request<hyper::body::Incoming>| {
                req.extensions_mut().insert(ConnectInfo(peer));
                tower::ServiceExt::oneshot(router.clone(), req.map(axum::body::Body::new))
            });
        let connection = http.serve_connection(hyper_util::rt::TokioIo::new(stream), service);
        let mut stop = stop.clone();
        connections.spawn(async move {
            tokio::pin!(connection);
            tokio::select! {
                result = connection.as_mut() => {
                    if let Err(e) = result {
                        tracing::debug!(error = %e, "connection ended with an error");
                    }
                }
                () = until_stopped(&mut stop) => {
                    // Finish the request in flight, then close; idle connections close now.
                    connection.as_mut().graceful_shutdown();
                    let _ = connection.await;
                }
            }
        });
        while connections.try_join_next().is_some() {}
    }
    drop(listener);
    while connections.join_next().await.is_some() {}
}

/// Resolves once `stop` is true (or its sender is gone).
pub(super) async fn until_stopped(stop: &mut tokio::sync::watch::Receiver<bool>) {
    // The guard `wait_for` returns is not `Send`: drop it here, not across an await.
    let _ = stop.wait_for(|stop| *stop).await.map(drop);
}
