//! What the logs say: security events carry what an operator needs and nothing secret, and no
//! value a request carries can forge a line.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

use crate::backend_agnostic;
use crate::support::visitor::{Visitor, field};
use crate::support::{
    ServedBinary, add_user, api_token, captured_log_text, captured_logs, env_of, spawn_app_with,
    spawn_unlimited_app,
};

const PASSWORD: &str = "Vermilion-Otter-42";

/// The `access_denied` events logged for the request with this ID.
fn denials(request_id: &str) -> Vec<Value> {
    captured_logs()
        .into_iter()
        .filter(|l| l["event"] == "access_denied" && l["span"]["request_id"] == request_id)
        .collect()
}

/// Sends `req`; its status and request ID.
async fn send(req: reqwest::RequestBuilder) -> (u16, String) {
    let res = req.send().await.unwrap();
    let id = res.headers()["x-request-id"].to_str().unwrap().to_owned();
    (res.status().as_u16(), id)
}

/// The one `access_denied` event of a refused request, with the fields it must have.
fn the_denial(request_id: &str, user_id: &str, route: &str, permission: &str, check: &str) {
    let found = denials(request_id);
    assert_eq!(found.len(), 1, "one access_denied event: {found:#?}");
    let event = &found[0];
    assert_eq!(event["user_id"], user_id, "{event}");
    assert_eq!(event["route"], route, "{event}");
    assert_eq!(event["permission"], permission, "{event}");
    assert_eq!(event["check"], check, "{event}");
}

backend_agnostic! {
    async fn every_refused_permission_scope_or_object_check_is_one_access_denied_event(backend) {
        let app = spawn_unlimited_app(backend, &[]).await;
        let ada = add_user(&app, "ada@example.com").password(PASSWORD).await.id.to_string();
        let root = add_user(&app, "root@example.com").role("admin").password(PASSWORD).await.id.to_string();
        let user_token = api_token(&app, "ada@example.com", PASSWORD).await;
        let admin_token = api_token(&app, "root@example.com", PASSWORD).await;
        let made: Value = app.request(reqwest::Method::POST, "/api/v1/api-keys").bearer_auth(&user_token)
            .json(&json!({"name": "reader", "scopes": ["items:read"]})).send().await.unwrap().json().await.unwrap();
        let key = made["key"].as_str().expect("a key").to_owned();

        // The role's permission.
        let (status, id) = send(app.request(reqwest::Method::GET, "/api/v1/admin/users").bearer_auth(&user_token)).await;
        assert_eq!(status, 403);
        the_denial(&id, &ada, "/api/v1/admin/users", "users.read", "role");

        // The object: an admin's own account.
        let (status, id) = send(app.request(reqwest::Method::PATCH, &format!("/api/v1/admin/users/{root}"))
            .bearer_auth(&admin_token).json(&json!({"role": "user"}))).await;
        assert_eq!(status, 403);
        the_denial(&id, &root, "/api/v1/admin/users/{id}", "users.manage", "object");

        // The API key's scope, and an action only an access token may take.
        let (status, id) = send(app.request(reqwest::Method::POST, "/api/v1/items").header("x-api-key", &key)
            .json(&json!({"name": "Desk lamp", "description": "Brass, 40 cm."}))).await;
        assert_eq!(status, 403);
        the_denial(&id, &ada, "/api/v1/items", "items:write", "credential");
        let (status, id) = send(app.request(reqwest::Method::GET, "/api/v1/api-keys").bearer_auth(&key)).await;
        assert_eq!(status, 403);
        the_denial(&id, &ada, "/api/v1/api-keys", "api_keys.own", "credential");

        // Allowed requests log none.
        let (status, id) = send(app.request(reqwest::Method::GET, "/api/v1/items").header("x-api-key", &key)).await;
        assert_eq!(status, 200);
        assert!(denials(&id).is_empty());

        let logs = captured_log_text();
        for secret in [key.as_str(), &user_token, &admin_token, "Brass, 40 cm."] {
            assert!(!logs.contains(secret), "{secret} reached the log");
        }
    }

    async fn a_page_refused_until_mfa_enrolment_is_an_access_denied_event(backend) {
        let app = spawn_app_with(backend, &[("GATEHOUSE_MFA_REQUIRED_ROLES", "admin")]).await;
        let root = add_user(&app, "root@example.com").role("admin").password(PASSWORD).await.id.to_string();
        let mut admin = Visitor::new(&app);
        let csrf = admin.csrf_from("/login").await;
        admin.post("/login/password", &[("csrf_token", &csrf), ("email", "root@example.com"), ("password", PASSWORD)]).await;
        let (_, _, page) = admin.get("/account/mfa").await;
        let csrf = field(&page, "csrf_token").unwrap();

        let (status, headers, page) = admin.post("/account/password", &[("csrf_token", &csrf), ("current", PASSWORD), ("new", "Cobalt-Heron-77!"), ("confirm", "Cobalt-Heron-77!")]).await;

        assert_eq!(status, 403, "{page}");
        assert!(page.contains("<html"), "an HTML error page: {page}");
        let id = headers["x-request-id"].to_str().unwrap();
        the_denial(id, &root, "/account/password", "mfa_enrolment", "role");
        assert!(!captured_log_text().contains("Cobalt-Heron-77!"));
    }
}

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

/// Waits (at most 10 s) until a captured log line satisfies `found`: some lines are written by
/// the mail task after the request has been answered.
async fn wait_for_log(what: &str, found: impl Fn(&Value) -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !captured_logs().iter().any(&found) {
        assert!(
            std::time::Instant::now() < deadline,
            "no log line {what} within 10 s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

backend_agnostic! {
    // V7.1.2: in production, every line about an address (links asked for by a known and an
    // unknown address, a failed sign-in, a reset, the mails sent) names it masked; no address,
    // password, link token or code appears in the log.
    async fn production_logs_mask_addresses_and_carry_no_password_token_or_code(backend) {
        // A domain of this test's own: the log is shared by every test in the process.
        let domain = format!("{}.example", uuid::Uuid::new_v4().simple());
        let ada = format!("ada@{domain}");
        let stranger = format!("stranger@{domain}");
        let (app, sink) = crate::support::spawn_app_with_mail(
            backend,
            &[
                ("GATEHOUSE_ENV", "production"),
                ("GATEHOUSE_PUBLIC_URL", "https://gate.example"),
                ("GATEHOUSE_MAGIC_LINK_RATE_LIMIT", "off"),
            ],
        )
        .await;
        add_user(&app, &ada).password(PASSWORD).await;
        let mut v = Visitor::new(&app);
        for email in [&ada, &stranger] {
            let csrf = v.csrf_from("/login").await;
            v.post("/login/magic", &[("csrf_token", &csrf), ("email", email)]).await;
            let csrf = v.csrf_from("/password/forgot").await;
            v.post("/password/forgot", &[("csrf_token", &csrf), ("email", email)]).await;
        }
        let wrong = "Wrong-Password-Heron-31";
        let csrf = v.csrf_from("/login").await;
        let (status, _, _) = v.post("/login/password", &[("csrf_token", &csrf), ("email", &ada), ("password", wrong)]).await;
        assert_eq!(status, 401);
        // The failure's delay, waited out.
        app.clock.advance(std::time::Duration::from_secs(60));
        let csrf = v.csrf_from("/login").await;
        let (status, _, _) = v.post("/login/password", &[("csrf_token", &csrf), ("email", &ada), ("password", PASSWORD)]).await;
        assert_eq!(status, 303);
        let mails = sink.wait_for_count(&ada, 2).await;
        let mut secrets = vec![PASSWORD.to_owned(), wrong.to_owned()];
        for mail in &mails {
            for marker in ["/login/magic/verify?token=", "/password/reset?token="] {
                if let Some(at) = mail.data.find(marker) {
                    secrets.push(mail.data[at + marker.len()..at + marker.len() + 43].to_owned());
                }
            }
            let marker = "enter this code on the sign-in page: ";
            if let Some(at) = mail.data.find(marker) {
                secrets.push(mail.data[at + marker.len()..at + marker.len() + 8].to_owned());
            }
        }
        assert_eq!(secrets.len(), 5, "two tokens and a code from the mails");

        let masked_ada = format!("a***@{domain}");
        let masked_stranger = format!("s***@{domain}");
        for (event, to) in [
            ("magic_link_sent", &masked_ada),
            ("magic_link_not_allowed", &masked_stranger),
            ("password_reset_sent", &masked_ada),
            ("password_reset_unknown", &masked_stranger),
            ("sign_in_failed", &masked_ada),
            ("mail_sent", &masked_ada),
        ] {
            wait_for_log(event, |l| l["event"] == event && l["to"] == to.as_str()).await;
        }
        let logs = captured_log_text();
        for address in [&ada, &stranger] {
            assert!(!logs.to_lowercase().contains(address.as_str()), "{address} reached the log unmasked");
        }
        for secret in &secrets {
            assert!(!logs.contains(secret.as_str()), "{secret} reached the log");
        }
    }
}
