//! Body-size limit (413 before reading) and the request timeout.

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use crate::backend_agnostic;
use crate::support::spawn_app_with;

/// Sends `head` on a raw connection and reads until the server closes or `limit` passes.
async fn raw_exchange(addr: std::net::SocketAddr, head: &str) -> (TcpStream, String) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 8192];
    let n = tokio::time::timeout(std::time::Duration::from_secs(10), stream.read(&mut buf))
        .await
        .expect("the server answered")
        .unwrap();
    (stream, String::from_utf8_lossy(&buf[..n]).into_owned())
}

backend_agnostic! {
    async fn an_oversized_content_length_is_refused_before_the_body_is_sent(backend) {
        let app = spawn_app_with(backend, &[("GATEHOUSE_BODY_LIMIT", "64KiB")]).await;
        // Announce 10 MiB and send none of it: the 413 must come anyway.
        let (_stream, response) = raw_exchange(
            app.addr,
            "POST /csp-report HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/csp-report\r\nContent-Length: 10485760\r\n\r\n",
        )
        .await;
        assert!(response.starts_with("HTTP/1.1 413"), "{response}");
        assert!(response.contains("application/problem+json"), "{response}");
    }

    async fn a_body_within_the_limit_is_read(backend) {
        let app = spawn_app_with(backend, &[("GATEHOUSE_BODY_LIMIT", "64KiB")]).await;
        let res = app
            .request(reqwest::Method::POST, "/csp-report")
            .header("content-type", "application/csp-report")
            .body(r#"{"csp-report":{"document-uri":"https://gate.example/","violated-directive":"script-src"}}"#)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 204);
    }

    async fn a_request_that_takes_too_long_is_cut_off(backend) {
        let app = spawn_app_with(backend, &[("GATEHOUSE_REQUEST_TIMEOUT", "1s")]).await;
        // A body that never arrives (a slow-loris upload) cannot hold the request forever.
        let started = std::time::Instant::now();
        let (_stream, response) = raw_exchange(
            app.addr,
            "POST /csp-report HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/csp-report\r\nContent-Length: 100\r\n\r\n{",
        )
        .await;
        assert!(response.starts_with("HTTP/1.1 503"), "{response}");
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
    }

    async fn a_client_that_never_finishes_its_headers_is_disconnected(backend) {
        let app = spawn_app_with(backend, &[("GATEHOUSE_HEADER_TIMEOUT", "1s")]).await;
        // Slowloris: a request line and one header, then nothing.
        let mut stream = TcpStream::connect(app.addr).await.unwrap();
        stream.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n").await.unwrap();
        let mut rest = Vec::new();
        let closed = tokio::time::timeout(
            std::time::Duration::from_secs(5),
            stream.read_to_end(&mut rest),
        )
        .await;
        assert!(closed.is_ok(), "the server kept a half-sent request open");
        let text = String::from_utf8_lossy(&rest);
        assert!(!text.contains("200 OK"), "{text}");
    }
}
