//! What the logs say: security events carry what an operator needs and nothing secret, and no
//! value a request carries can forge a line.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::json;

use crate::support::{ServedBinary, env_of};

/// A JWT whose header's `alg` holds a newline and then a line made to look like a log line.
fn jwt_with_forged_line(forged: &str) -> String {
    let header = json!({"alg": format!("x\n{forged}"), "typ": "JWT"}).to_string();
    format!("{}.e30.c2ln", URL_SAFE_NO_PAD.encode(header))
}

#[tokio::test]
async fn a_forged_line_in_a_jwt_header_stays_inside_its_line_in_the_text_log() {
    let server = ServedBinary::start(&env_of(&[
        ("GATEHOUSE_LOG_FORMAT", "text"),
        ("GATEHOUSE_LISTEN", "127.0.0.1:0"),
    ]));
    let listening = server.wait_for_line("Gatehouse is listening").await;
    let address = listening
        .split("address=")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no address in {listening:?}"))
        .to_owned();
    let forged = "2030-01-01T00:00:00.000000Z  INFO event=sign_in user=root@example.com forged";

    let res = reqwest::Client::new()
        .get(format!("http://{address}/api/v1/me"))
        .bearer_auth(jwt_with_forged_line(forged))
        .send()
        .await
        .unwrap();

    assert_eq!(res.status(), 401);
    let refused = server.wait_for_line("bearer token refused").await;
    assert!(refused.contains(r"x\n2030-01-01T00:00:00"), "{refused}");
    let lines = server.lines();
    assert!(
        !lines.iter().any(|l| l.starts_with("2030-01-01")),
        "a forged line:\n{}",
        lines.join("\n")
    );
}
