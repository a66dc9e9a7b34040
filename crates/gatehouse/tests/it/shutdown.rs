//! Graceful shutdown: in-flight requests finish, new connections are refused.

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use crate::backend_agnostic;
use crate::support::spawn_app;

backend_agnostic! {
    async fn shutdown_lets_an_in_flight_request_finish(backend) {
        let mut app = spawn_app(backend).await;
        let body = r#"{"csp-report":{"document-uri":"https://gate.example/","violated-directive":"img-src"}}"#;
        let mut stream = TcpStream::connect(app.addr).await.unwrap();
        stream
            .write_all(
                format!(
                    "POST /csp-report HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/csp-report\r\nContent-Length: {}\r\nExpect: 100-continue\r\n\r\n",
                    body.len()
                )
                .as_bytes(),
            )
            .await
            .unwrap();
        // The server says `100 Continue` only once the handler reads the body: from here the
        // request is in flight.
        let mut interim = [0u8; 25];
        stream.read_exact(&mut interim).await.unwrap();
        assert!(interim.starts_with(b"HTTP/1.1 100 Continue"), "{}", String::from_utf8_lossy(&interim));
        let stopping = app.begin_shutdown();
        stream.write_all(body.as_bytes()).await.unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).await.unwrap();
        assert!(response.starts_with("HTTP/1.1 204"), "{response}");
        stopping.await.unwrap().expect("clean shutdown");
        assert!(
            TcpStream::connect(app.addr).await.is_err(),
            "new connections are refused after shutdown"
        );
    }
}
