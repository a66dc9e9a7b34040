//! Security notices and audited reads, as the user and the auditor see them: a sign-in from a
//! new device is mailed and one from a known device is not (ASVS V2.2.3), new recovery codes and
//! an administrator's MFA reset are mailed (V2.5.5), and a manager's or admin's reads of other
//! people's records leave audit records while reading your own leaves none (V8.3.5).
//!
//! Mail is read from the local SMTP sink. The sender delivers in order, so once a later mail has
//! arrived every earlier one has too: "no mail" is asserted by sending a marker mail after the
//! step and finding it the only new one.

use gatehouse::audit;
use serde_json::{Value, json};

use crate::on_every_backend;
use crate::support::smtp_sink::{ReceivedMail, SmtpSink};
use crate::support::visitor::{Visitor, field};
use crate::support::{Backend, TestApp, add_user, api_token, run_cli, totp_code};

const EMAIL: &str = "ada@example.com";
const PASSWORD: &str = "Vermilion-Otter-42";
const NEW_DEVICE: &str = "New sign-in to your Gatehouse account";

async fn app(backend: Backend) -> (TestApp, SmtpSink) {
    let (app, sink) = crate::support::spawn_app_with_mail(backend, &[]).await;
    add_user(&app, EMAIL).password(PASSWORD).await;
    (app, sink)
}

/// Signs `v` in with the password form; the status and where it goes.
async fn password_sign_in(v: &mut Visitor<'_>) -> (u16, String) {
    let csrf = v.csrf_from("/login").await;
    let (status, headers, _) = v
        .post(
            "/login/password",
            &[
                ("csrf_token", &csrf),
                ("email", EMAIL),
                ("password", PASSWORD),
            ],
        )
        .await;
    let location = headers
        .get("location")
        .map(|l| l.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (status, location)
}

async fn sign_out(v: &mut Visitor<'_>) {
    let csrf = v.csrf_from("/account").await;
    assert_eq!(v.post("/logout", &[("csrf_token", &csrf)]).await.0, 303);
}

/// Asks for a sign-in link, whose mail is a marker: once it has arrived, every mail queued
/// before it has too. Returns every mail to the user so far, the marker last.
async fn mails_up_to_a_marker(app: &TestApp, sink: &SmtpSink) -> Vec<ReceivedMail> {
    let before = sink.messages_to(EMAIL).len();
    let mut v = Visitor::new(app);
    let csrf = v.csrf_from("/login").await;
    assert_eq!(
        v.post("/login/magic", &[("csrf_token", &csrf), ("email", EMAIL)])
            .await
            .0,
        200
    );
    let all = sink.wait_for_count(EMAIL, before + 1).await;
    assert!(
        all.last()
            .unwrap()
            .data
            .contains("/login/magic/verify?token="),
        "the marker is the newest mail"
    );
    all
}

fn new_device_mails(mails: &[ReceivedMail]) -> Vec<&ReceivedMail> {
    mails
        .iter()
        .filter(|m| m.data.contains(NEW_DEVICE))
        .collect()
}

fn sign_in_records(records: &[audit::AuditRecord]) -> Vec<Value> {
    records
        .iter()
        .filter(|r| r.action == "auth.sign_in")
        .map(|r| serde_json::from_str(&r.changes).unwrap())
        .collect()
}

async fn records(app: &TestApp) -> Vec<audit::AuditRecord> {
    audit::records_after(&app.db, 0, 10_000).await.unwrap()
}

fn set_cookie<'h>(headers: &'h reqwest::header::HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all("set-cookie")
        .iter()
        .map(|c| c.to_str().unwrap())
        .find(|c| c.starts_with(&format!("{name}=")))
}

on_every_backend! {
    async fn a_sign_in_from_a_new_browser_is_mailed_and_one_from_a_known_browser_is_not(backend) {
        let (app, sink) = app(backend).await;

        // The account's first sign-in: its first device, nothing to compare with, no alarm.
        let mut laptop = Visitor::with_user_agent(&app, "Laptop Browser/1.0");
        let csrf = laptop.csrf_from("/login").await;
        let (status, headers, _) = laptop
            .post("/login/password", &[("csrf_token", &csrf), ("email", EMAIL), ("password", PASSWORD)])
            .await;
        assert_eq!(status, 303);
        let cookie = set_cookie(&headers, "gatehouse-device").expect("a device cookie");
        for attribute in ["HttpOnly", "SameSite=Lax", "Path=/", "Max-Age=34560000"] {
            assert!(cookie.contains(attribute), "{cookie}");
        }
        let device = laptop.cookies["gatehouse-device"].clone();
        assert_eq!(device.len(), 43, "256 random bits");
        let stored: String = app.db.query("SELECT device_hash FROM known_devices").fetch_one().await.unwrap().get(0).unwrap();
        assert!(!stored.contains(&device), "only a keyed hash of the device is kept");

        // The same browser again: known, no mail.
        sign_out(&mut laptop).await;
        assert_eq!(password_sign_in(&mut laptop).await, (303, "/".to_owned()));
        assert_eq!(laptop.cookies["gatehouse-device"], device, "the same device token, renewed");
        let mails = mails_up_to_a_marker(&app, &sink).await;
        assert!(new_device_mails(&mails).is_empty(), "no notice for the first or a known device");

        // Another browser: a new device, mailed with when, where from and what it called itself.
        let agent = "Evil <script>alert(1)</script> Browser/6.6";
        let mut stranger = Visitor::with_user_agent(&app, agent);
        assert_eq!(password_sign_in(&mut stranger).await.0, 303);
        let mail = sink.wait_for_count(EMAIL, mails.len() + 1).await.pop().unwrap();
        assert!(mail.data.contains(NEW_DEVICE), "{}", mail.data);
        assert!(mail.data.contains("From the address: 127.0.0.1"), "{}", mail.data);
        assert!(mail.data.contains("(UTC)"), "{}", mail.data);
        assert!(mail.data.contains("If this was not you, change your password"), "{}", mail.data);
        assert!(mail.data.contains(&format!("\"{agent}\"")), "the agent, quoted, in the text body: {}", mail.data);
        assert!(
            mail.data.contains("Evil &lt;script&gt;alert(1)&lt;&#x2f;script&gt; Browser&#x2f;6.6"),
            "the agent escaped in the HTML body: {}",
            mail.data
        );
        assert!(!mail.data.contains(&stranger.cookies["gatehouse-device"]), "never the cookie");

        // That browser is known now, and so is the first: no more notices.
        sign_out(&mut stranger).await;
        assert_eq!(password_sign_in(&mut stranger).await.0, 303);
        sign_out(&mut laptop).await;
        assert_eq!(password_sign_in(&mut laptop).await.0, 303);
        let all = mails_up_to_a_marker(&app, &sink).await;
        assert_eq!(new_device_mails(&all).len(), 1, "one notice, for the one new device");

        // The audit trail says which sign-in was from a new device.
        let flags: Vec<Value> = sign_in_records(&records(&app).await).iter().map(|c| c["new_device"].clone()).collect();
        assert_eq!(flags, [json!(false), json!(false), json!(true), json!(false), json!(false)]);
    }

    async fn a_user_agent_in_the_notice_is_cut_to_two_hundred_characters(backend) {
        let (app, sink) = app(backend).await;
        assert_eq!(password_sign_in(&mut Visitor::new(&app)).await.0, 303);
        let long = format!("Agent/{}", "x".repeat(1000));
        assert_eq!(password_sign_in(&mut Visitor::with_user_agent(&app, &long)).await.0, 303);
        let mail = sink.wait_for(EMAIL).await;
        let shown = &long[..200];
        assert!(mail.data.contains(&format!("\"{shown}\"")), "{}", mail.data);
        assert!(!mail.data.contains(&long[..201]), "at most 200 characters");
    }

    async fn a_new_device_is_told_only_after_every_factor_whichever_the_first(backend) {
        let (app, sink) = crate::support::spawn_app_with_mail(backend, &[]).await;
        let key = add_user(&app, EMAIL).mfa().await.setup_key.unwrap();
        // First device: a link, then the authenticator.
        let mut first = Visitor::new(&app);
        link_then_code(&app, &sink, &mut first, &key).await;
        // A new device, by link and authenticator: told once the sign-in is complete.
        let mut second = Visitor::with_user_agent(&app, "Tablet/2.0");
        link_then_code(&app, &sink, &mut second, &key).await;
        let mails = sink.wait_for_count(EMAIL, 3).await;
        let notice = mails.last().unwrap();
        assert!(notice.data.contains(NEW_DEVICE) && notice.data.contains("\"Tablet/2.0\""), "{}", notice.data);
        let sign_ins = sign_in_records(&records(&app).await);
        assert_eq!(
            sign_ins,
            [json!({"method": "magic_link+totp", "new_device": false}), json!({"method": "magic_link+totp", "new_device": true})]
        );
    }

    async fn a_new_api_client_is_mailed_and_a_known_one_is_not(backend) {
        let (app, sink) = app(backend).await;
        let grant = |agent: &'static str| {
            app.request(reqwest::Method::POST, "/api/v1/auth/token")
                .header("user-agent", agent)
                .json(&json!({"grant_type": "password", "email": EMAIL, "password": PASSWORD}))
                .send()
        };
        assert_eq!(grant("nightly-export/1.0").await.unwrap().status(), 200);
        assert_eq!(grant("nightly-export/1.0").await.unwrap().status(), 200);
        let mails = mails_up_to_a_marker(&app, &sink).await;
        assert!(new_device_mails(&mails).is_empty(), "the first client, then the same one");

        assert_eq!(grant("curl/8.5.0").await.unwrap().status(), 200);
        let mail = sink.wait_for_count(EMAIL, mails.len() + 1).await.pop().unwrap();
        assert!(mail.data.contains(NEW_DEVICE) && mail.data.contains("\"curl/8.5.0\""), "{}", mail.data);
        assert_eq!(grant("curl/8.5.0").await.unwrap().status(), 200);
        let all = mails_up_to_a_marker(&app, &sink).await;
        assert_eq!(new_device_mails(&all).len(), 1);
    }

    async fn at_most_twenty_devices_are_remembered_and_the_least_recent_is_forgotten(backend) {
        let (app, sink) = app(backend).await;
        let mut oldest = Visitor::new(&app);
        assert_eq!(password_sign_in(&mut oldest).await.0, 303);
        let mut others = Vec::new();
        for _ in 0..20 {
            app.clock.advance(std::time::Duration::from_secs(1));
            let mut v = Visitor::new(&app);
            assert_eq!(password_sign_in(&mut v).await.0, 303);
            others.push(v);
        }
        let count: i64 = app.db.query("SELECT COUNT(*) FROM known_devices").fetch_one().await.unwrap().get(0).unwrap();
        assert_eq!(count, 20);
        let before = sink.wait_for_count(EMAIL, 20).await.len();
        // The first browser was forgotten: it is new again.
        sign_out(&mut oldest).await;
        assert_eq!(password_sign_in(&mut oldest).await.0, 303);
        let mail = sink.wait_for_count(EMAIL, before + 1).await.pop().unwrap();
        assert!(mail.data.contains(NEW_DEVICE));
    }

    async fn new_recovery_codes_are_mailed_without_the_codes(backend) {
        let (app, sink) = app(backend).await;
        let mut v = Visitor::new(&app);
        assert_eq!(password_sign_in(&mut v).await.0, 303);
        let csrf = v.csrf_from("/account/mfa").await;
        let (_, _, page) = v.post("/account/mfa/setup", &[("csrf_token", &csrf)]).await;
        let key = between(&page, "<code id=\"setup-key\">", "</code>").to_owned();
        let code = totp_code(&app, &key, 0);
        assert_eq!(v.post("/account/mfa/confirm", &[("csrf_token", &csrf), ("code", &code)]).await.0, 200);
        let enabled = sink.wait_for_count(EMAIL, 1).await;
        assert!(enabled[0].data.contains("Two-step sign-in is on"));

        let (status, _, page) = v.post("/account/mfa/recovery-codes", &[("csrf_token", &csrf)]).await;
        assert_eq!(status, 200, "{page}");
        let codes: Vec<String> = page
            .split("<li><code>")
            .skip(1)
            .map(|s| s[..s.find("</code>").unwrap()].to_owned())
            .collect();
        assert_eq!(codes.len(), 10, "{page}");
        let mail = sink.wait_for_count(EMAIL, 2).await.pop().unwrap();
        assert!(mail.data.contains("New recovery codes were made for your Gatehouse account"), "{}", mail.data);
        assert!(mail.data.contains("From the address: 127.0.0.1"), "{}", mail.data);
        for code in &codes {
            assert!(!mail.data.contains(code.as_str()), "a code in the mail: {code}");
            assert!(!mail.data.contains(&code.replace('-', "")), "a code in the mail: {code}");
        }
    }

    async fn an_administrators_mfa_reset_is_mailed_to_the_user(backend) {
        let (app, sink) = crate::support::spawn_app_with_mail(backend, &[]).await;
        add_user(&app, EMAIL).mfa().await;
        // The command sends with its own mailer, through the same SMTP relay as the server.
        let mut env = app.cli_env();
        for (name, value) in [("SMTP_HOST", "127.0.0.1".to_owned()), ("SMTP_PORT", sink.port.to_string()), ("SMTP_TLS", "none".to_owned())] {
            env.push((name.to_owned(), value));
        }
        // Run off the test's runtime, which must keep serving the sink meanwhile.
        let out = tokio::task::spawn_blocking(move || run_cli(&env, &["user", "reset-mfa", "--email", EMAIL])).await.unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let mail = sink.wait_for(EMAIL).await;
        assert!(mail.data.contains("An administrator turned off two-step sign-in for your Gatehouse account"), "{}", mail.data);
        assert!(mail.data.contains("From the address: the command line"), "{}", mail.data);
        assert!(mail.data.contains("If this was not you, tell your administrator"), "{}", mail.data);
    }
}

/// Signs `v` in with a mailed link and the authenticator's code.
async fn link_then_code(app: &TestApp, sink: &SmtpSink, v: &mut Visitor<'_>, key: &str) {
    let before = sink.messages_to(EMAIL).len();
    let csrf = v.csrf_from("/login").await;
    v.post("/login/magic", &[("csrf_token", &csrf), ("email", EMAIL)])
        .await;
    let mail = sink.wait_for_count(EMAIL, before + 1).await.pop().unwrap();
    let marker = "/login/magic/verify?token=";
    let start = mail.data.find(marker).expect("a link");
    let link = mail.data[start..start + marker.len() + 43].to_owned();
    let (_, _, page) = v.get(&link).await;
    let token = field(&page, "token").unwrap();
    let csrf = field(&page, "csrf_token").unwrap();
    let (status, headers, _) = v
        .post(
            "/login/magic/verify",
            &[("csrf_token", &csrf), ("token", &token)],
        )
        .await;
    assert_eq!(
        (status, headers["location"].to_str().unwrap()),
        (303, "/login/mfa")
    );
    assert!(
        set_cookie(&headers, "gatehouse-device").is_none(),
        "no device is remembered before the second factor"
    );
    // A fresh time step: the step the enrolment used, or the previous sign-in, cannot be replayed.
    app.clock.advance(std::time::Duration::from_secs(30));
    let csrf = v.csrf_from("/login/mfa").await;
    let (status, headers, page) = v
        .post(
            "/login/mfa",
            &[("csrf_token", &csrf), ("code", &totp_code(app, key, 0))],
        )
        .await;
    assert_eq!(status, 303, "{page}");
    assert!(set_cookie(&headers, "gatehouse-device").is_some());
}

fn between<'p>(page: &'p str, start: &str, end: &str) -> &'p str {
    let from = page.find(start).expect("the start marker") + start.len();
    &page[from..from + page[from..].find(end).expect("the end marker")]
}

/// Creates a user with `role` and returns an access token for them.
async fn token_for(app: &TestApp, email: &str, role: &str) -> String {
    add_user(app, email).role(role).password(PASSWORD).await;
    api_token(app, email, PASSWORD).await
}

async fn get(app: &TestApp, token: &str, path: &str) -> Value {
    let res = app
        .request(reqwest::Method::GET, path)
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "{path}");
    res.json().await.unwrap()
}

/// The audit records of `action` written after record `after`.
async fn new_records(app: &TestApp, after: i64, action: &str) -> Vec<audit::AuditRecord> {
    audit::records_after(&app.db, after, 10_000)
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.action == action)
        .collect()
}

async fn last_id(app: &TestApp) -> i64 {
    audit::head(&app.db).await.unwrap().map_or(0, |(id, _)| id)
}

on_every_backend! {
    async fn a_manager_reading_someone_elses_item_is_audited_and_reading_their_own_is_not(backend) {
        let app = crate::support::spawn_unlimited_app(backend, &[]).await;
        let owner = token_for(&app, "owner@example.com", "user").await;
        let manager = token_for(&app, "boss@example.com", "manager").await;
        let create = |token: &str, name: &str| {
            app.request(reqwest::Method::POST, "/api/v1/items")
                .bearer_auth(token.to_owned())
                .json(&json!({"name": name, "description": "A fine thing."}))
                .send()
        };
        let theirs: Value = create(&owner, "Their lamp").await.unwrap().json().await.unwrap();
        let mine: Value = create(&manager, "My desk").await.unwrap().json().await.unwrap();
        let owner_id = theirs["owner_id"].as_str().unwrap().to_owned();
        let theirs_id = theirs["id"].as_str().unwrap().to_owned();

        // Their own item, their own list: nothing.
        let start = last_id(&app).await;
        get(&app, &owner, &format!("/api/v1/items/{theirs_id}")).await;
        get(&app, &owner, "/api/v1/items").await;
        get(&app, &manager, &format!("/api/v1/items/{}", mine["id"].as_str().unwrap())).await;
        get(&app, &manager, "/api/v1/items?q=desk").await;
        assert_eq!(last_id(&app).await, start, "reading your own records writes nothing");

        // The manager reads the user's item: one record naming it, its owner and the reader.
        get(&app, &manager, &format!("/api/v1/items/{theirs_id}")).await;
        let reads = new_records(&app, start, "item.read").await;
        assert_eq!(reads.len(), 1);
        let manager_id = get(&app, &manager, "/api/v1/me").await["id"].as_str().unwrap().to_owned();
        assert_eq!(reads[0].actor, format!("user:{manager_id}"));
        assert_eq!(reads[0].entity_id.as_deref(), Some(theirs_id.as_str()));
        assert_eq!(reads[0].client_ip.as_deref(), Some("127.0.0.1"));
        assert!(reads[0].request_id.is_some());
        let changes: Value = serde_json::from_str(&reads[0].changes).unwrap();
        assert_eq!(changes["owner_id"], owner_id.as_str());

        // A list with everyone's items: one record for the request, with its filter and count.
        let at = last_id(&app).await;
        let page = get(&app, &manager, "/api/v1/items?limit=50&q=a").await;
        assert_eq!(page["items"].as_array().unwrap().len(), 2);
        let lists = new_records(&app, at, "item.list").await;
        assert_eq!(lists.len(), 1, "one record per request, not per row");
        assert_eq!(last_id(&app).await, lists[0].id, "and nothing else");
        let changes: Value = serde_json::from_str(&lists[0].changes).unwrap();
        assert_eq!(changes, json!({"filter": {"q": "a", "cursor": null, "limit": 50}, "count": 2, "others": 1}));

        // The page equivalent: opening someone's item to edit it.
        let at = last_id(&app).await;
        add_user(&app, "pages@example.com").role("manager").password(PASSWORD).await;
        let mut v = Visitor::new(&app);
        let csrf = v.csrf_from("/login").await;
        v.post("/login/password", &[("csrf_token", &csrf), ("email", "pages@example.com"), ("password", PASSWORD)]).await;
        let after_sign_in = last_id(&app).await;
        assert_eq!(v.get(&format!("/items/{theirs_id}/edit")).await.0, 200);
        assert_eq!(new_records(&app, after_sign_in, "item.read").await.len(), 1);
        let after_edit = last_id(&app).await;
        assert_eq!(v.get("/items").await.0, 200);
        assert_eq!(new_records(&app, after_edit, "item.list").await.len(), 1);
        assert!(new_records(&app, at, "item.read").await.iter().all(|r| r.entity_id.as_deref() == Some(theirs_id.as_str())));
    }

    async fn an_admins_reads_of_other_users_are_audited_and_of_themselves_are_not(backend) {
        let app = crate::support::spawn_unlimited_app(backend, &[]).await;
        let admin = token_for(&app, "root@example.com", "admin").await;
        let ada = add_user(&app, EMAIL).await;
        let me = get(&app, &admin, "/api/v1/me").await["id"].as_str().unwrap().to_owned();

        let start = last_id(&app).await;
        get(&app, &admin, &format!("/api/v1/admin/users/{me}")).await;
        assert_eq!(last_id(&app).await, start, "reading yourself writes nothing");

        let shown = get(&app, &admin, &format!("/api/v1/admin/users/{}", ada.id)).await;
        assert_eq!(shown["email"], EMAIL);
        let reads = new_records(&app, start, "user.read").await;
        assert_eq!(reads.len(), 1);
        assert_eq!(reads[0].entity_id.as_deref(), Some(ada.id.to_string().as_str()));
        assert_eq!(reads[0].actor, format!("user:{me}"));

        let at = last_id(&app).await;
        let all = get(&app, &admin, "/api/v1/admin/users").await;
        assert_eq!(all["users"].as_array().unwrap().len(), 2);
        let lists = new_records(&app, at, "user.list").await;
        assert_eq!(lists.len(), 1, "one record for the list");
        let changes: Value = serde_json::from_str(&lists[0].changes).unwrap();
        assert_eq!(changes["count"], 2);
        assert_eq!(changes["others"], 1);
    }
}
