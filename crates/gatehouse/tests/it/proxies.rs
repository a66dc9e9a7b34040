//! The client IP behind proxies: forwarding headers are believed only from trusted proxies.

use crate::backend_agnostic;
use crate::support::{request_log, spawn_app_with};

async fn logged_client_ip(app: &crate::support::TestApp, xff: &str) -> String {
    let res = app
        .request(reqwest::Method::GET, "/healthz")
        .header("x-forwarded-for", xff)
        .send()
        .await
        .unwrap();
    let id = res.headers()["x-request-id"].to_str().unwrap().to_owned();
    request_log(&id)["span"]["client_ip"]
        .as_str()
        .unwrap()
        .to_owned()
}

backend_agnostic! {
    async fn a_spoofed_forwarded_for_from_an_untrusted_peer_is_ignored(backend) {
        // The test client connects from 127.0.0.1, which is not in the trusted list.
        let app = spawn_app_with(backend, &[("GATEHOUSE_TRUSTED_PROXIES", "10.0.0.0/8")]).await;
        assert_eq!(logged_client_ip(&app, "203.0.113.7").await, "127.0.0.1");
        let forwarded = app
            .request(reqwest::Method::GET, "/healthz")
            .header("forwarded", "for=198.51.100.4")
            .send()
            .await
            .unwrap();
        let id = forwarded.headers()["x-request-id"].to_str().unwrap().to_owned();
        assert_eq!(request_log(&id)["span"]["client_ip"], "127.0.0.1");
    }

    async fn a_trusted_proxy_is_believed_walking_right_to_left(backend) {
        let app = spawn_app_with(
            backend,
            &[("GATEHOUSE_TRUSTED_PROXIES", "127.0.0.1, 10.0.0.0/8")],
        )
        .await;
        assert_eq!(logged_client_ip(&app, "203.0.113.7").await, "203.0.113.7");
        // The leftmost entry was written by the client itself: only the hop the trusted
        // proxies saw counts.
        assert_eq!(
            logged_client_ip(&app, "6.6.6.6, 203.0.113.7, 10.1.2.3").await,
            "203.0.113.7"
        );
    }
}
