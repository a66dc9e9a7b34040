//! Passkeys over HTTP with a software authenticator (`support::passkey`): registration from the
//! account page, a discoverable sign-in with no address typed, a passkey as the second factor,
//! single-use five-minute ceremonies, other users' and other origins' answers, recent sign-in,
//! audit records and notices. Each test runs on every store that keeps ceremony state: the
//! database (SQLite, PostgreSQL) and Redis.
//!
//! The app's public URL is `http://localhost:PORT` (a relying-party ID must be a name).

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::passkey::SoftPasskey;
use crate::support::smtp_sink::SmtpSink;
use crate::support::visitor::Visitor;
use crate::support::{Backend, TestApp, add_user, spawn_app_with_mail, totp_code};

const ADA: &str = "ada@example.com";
const BOB: &str = "bob@example.com";
const PASSWORD: &str = "Vermilion-Otter-42";

/// Where ceremony state is kept (with the sessions).
use crate::support::SessionStore as Store;

/// An app on `store` whose public URL is `http://localhost:PORT`, with mail, and Ada (password);
/// `None` when the store is not here.
async fn app(store: Store, test: &str) -> Option<(TestApp, SmtpSink)> {
    app_with(store, test, &[]).await
}

/// [`app`], with the settings `extra` besides.
async fn app_with(store: Store, test: &str, extra: &[(&str, &str)]) -> Option<(TestApp, SmtpSink)> {
    let (backend, redis) = store.settings(test)?;
    let mut env = vec![("GATEHOUSE_PUBLIC_URL", "http://localhost:0")];
    env.extend_from_slice(extra);
    env.extend(redis.iter().map(|(k, v)| (*k, v.as_str())));
    let (app, sink) = spawn_app_with_mail(backend, &env).await;
    add_user(&app, ADA).password(PASSWORD).await;
    Some((app, sink))
}

/// Runs each body once per store: `sqlite`, `postgres`, `redis`.
macro_rules! on_every_store {
    ($(async fn $name:ident($app:ident, $sink:ident) $body:block)*) => {$(
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            async fn run(store: Store) {
                let test = concat!("passkeys::", stringify!($name));
                let Some(($app, $sink)) = app(store, test).await else { return };
                $body
            }

            #[tokio::test]
            async fn sqlite() { run(Store::Sqlite).await }

            #[tokio::test]
            async fn postgres() { run(Store::Postgres).await }

            #[tokio::test]
            async fn redis() { run(Store::Redis).await }
        }
    )*};
}

fn origin(app: &TestApp) -> String {
    format!("http://localhost:{}", app.addr.port())
}

async fn password_sign_in(v: &mut Visitor<'_>, email: &str) -> (u16, reqwest::header::HeaderMap) {
    let csrf = v.csrf_from("/login").await;
    let (status, headers, _) = v
        .post(
            "/login/password",
            &[
                ("csrf_token", &csrf),
                ("email", email),
                ("password", PASSWORD),
            ],
        )
        .await;
    (status, headers)
}

/// Adds `key` to the signed-in visitor's account as `name`: the finish call's status and answer.
async fn register(v: &mut Visitor<'_>, key: &mut SoftPasskey, name: &str) -> (u16, Value) {
    register_from(v, key, name, "/account").await
}

/// [`register`], with the CSRF token of the page `page` (the one the widget is on).
async fn register_from(
    v: &mut Visitor<'_>,
    key: &mut SoftPasskey,
    name: &str,
    page: &str,
) -> (u16, Value) {
    let csrf = v.csrf_from(page).await;
    let (status, _, challenge) = v
        .post_json("/account/passkeys/start", &csrf, &json!({}))
        .await;
    if status != 200 {
        return (status, challenge);
    }
    let credential = key.register(&challenge["publicKey"]);
    let body = json!({ "ceremony": challenge["ceremony"], "name": name, "credential": credential });
    let (status, _, answer) = v.post_json("/account/passkeys/finish", &csrf, &body).await;
    (status, answer)
}

/// Starts a discoverable sign-in: the CSRF token and the challenge.
async fn sign_in_challenge(v: &mut Visitor<'_>) -> (String, Value) {
    let csrf = v.csrf_from("/login").await;
    let (status, _, challenge) = v.post_json("/login/passkey/start", &csrf, &json!({})).await;
    assert_eq!(status, 200, "{challenge}");
    assert!(
        challenge["publicKey"]
            .get("allowCredentials")
            .is_none_or(|a| a.as_array().is_none_or(Vec::is_empty)),
        "a discoverable sign-in names no credential: {challenge}"
    );
    (csrf, challenge)
}

async fn finish_sign_in(
    v: &mut Visitor<'_>,
    csrf: &str,
    ceremony: &Value,
    credential: &Value,
) -> (u16, Value) {
    let body = json!({ "ceremony": ceremony, "credential": credential });
    let (status, _, answer) = v.post_json("/login/passkey/finish", csrf, &body).await;
    (status, answer)
}

/// Signs in with `key`, no address typed: the finish call's status and answer.
async fn passkey_sign_in(v: &mut Visitor<'_>, key: &mut SoftPasskey) -> (u16, Value) {
    let (csrf, challenge) = sign_in_challenge(v).await;
    let credential = key.assert(&challenge["publicKey"]);
    finish_sign_in(v, &csrf, &challenge["ceremony"], &credential).await
}

/// With a pending sign-in, answers the second-factor ceremony with `key`.
async fn passkey_second_factor(v: &mut Visitor<'_>, key: &mut SoftPasskey) -> (u16, Value) {
    let csrf = v.csrf_from("/login/mfa").await;
    let (status, _, challenge) = v
        .post_json("/login/mfa/passkey/start", &csrf, &json!({}))
        .await;
    assert_eq!(status, 200, "{challenge}");
    let credential = key.assert(&challenge["publicKey"]);
    let body = json!({ "ceremony": challenge["ceremony"], "credential": credential });
    let (status, _, answer) = v.post_json("/login/mfa/passkey/finish", &csrf, &body).await;
    (status, answer)
}

async fn actions(app: &TestApp) -> Vec<(String, String)> {
    gatehouse::audit::records_after(&app.db, 0, 1000)
        .await
        .unwrap()
        .into_iter()
        .map(|r| (r.action, r.changes))
        .collect()
}

async fn signed_in_as(v: &mut Visitor<'_>, email: &str) -> bool {
    v.get("/").await.2.contains(email)
}

/// A signed-in visitor of Ada's with a passkey registered.
async fn ada_with_passkey<'a>(app: &'a TestApp) -> (Visitor<'a>, SoftPasskey) {
    let mut v = Visitor::new(app);
    assert_eq!(password_sign_in(&mut v, ADA).await.0, 303);
    let mut key = SoftPasskey::new(&origin(app));
    let (status, answer) = register(&mut v, &mut key, "Work laptop").await;
    assert_eq!(status, 201, "{answer}");
    (v, key)
}

on_every_store! {
    async fn a_passkey_is_registered_and_signs_in_with_no_address_typed(app, sink) {
        let (mut v, mut key) = ada_with_passkey(&app).await;
        let (_, _, page) = v.get("/account").await;
        assert!(page.contains("Work laptop") && page.contains("never"), "listed, never used: {page}");
        sink.wait_for_containing(ADA, "A passkey was added to your Gatehouse account").await;
        assert!(actions(&app).await.iter().any(|(a, c)| a == "passkey.register" && c.contains("Work laptop")));

        let mut fresh = Visitor::new(&app);
        let (status, answer) = passkey_sign_in(&mut fresh, &mut key).await;
        assert_eq!(status, 200, "{answer}");
        assert_eq!(answer["redirect"], "/");
        assert!(signed_in_as(&mut fresh, ADA).await);
        let log = actions(&app).await;
        assert!(log.iter().any(|(a, c)| a == "auth.sign_in" && c.contains("\"method\":\"passkey\"")), "{log:?}");
        let (_, _, page) = fresh.get("/account").await;
        assert!(!page.contains("never"), "the last use is shown: {page}");
    }

    async fn a_passkey_with_user_verification_is_both_factors_or_the_second_one(app, sink) {
        let _ = sink;
        let bob = add_user(&app, BOB).password(PASSWORD).mfa().await;
        let key_text = bob.setup_key.clone().unwrap();
        let mut v = Visitor::new(&app);
        assert_eq!(password_sign_in(&mut v, BOB).await.1["location"], "/login/mfa");
        let csrf = v.csrf_from("/login/mfa").await;
        let (status, _, _) = v.post("/login/mfa", &[("csrf_token", &csrf), ("code", &totp_code(&app, &key_text, 1))]).await;
        assert_eq!(status, 303);
        let mut key = SoftPasskey::new(&origin(&app));
        assert_eq!(register(&mut v, &mut key, "Phone").await.0, 201);

        // With no address typed, the passkey alone signs in a user with MFA.
        let mut fresh = Visitor::new(&app);
        let (status, answer) = passkey_sign_in(&mut fresh, &mut key).await;
        assert_eq!(status, 200, "{answer}");
        assert!(signed_in_as(&mut fresh, BOB).await);
        assert!(!fresh.cookies.contains_key("gatehouse-mfa"));

        // After a password, the second-factor page offers the passkey in place of a code.
        let mut second = Visitor::new(&app);
        assert_eq!(password_sign_in(&mut second, BOB).await.1["location"], "/login/mfa");
        let (_, _, page) = second.get("/login/mfa").await;
        assert!(page.contains("Use a passkey"), "{page}");
        let (status, answer) = passkey_second_factor(&mut second, &mut key).await;
        assert_eq!(status, 200, "{answer}");
        assert!(signed_in_as(&mut second, BOB).await);
        assert!(!second.cookies.contains_key("gatehouse-mfa"), "the pending sign-in is over");
        let log = actions(&app).await;
        assert!(log.iter().any(|(a, c)| a == "auth.sign_in" && c.contains("password+passkey")), "{log:?}");

        // A passkey without user verification is neither.
        key.user_verified = false;
        let mut weak = Visitor::new(&app);
        assert_eq!(passkey_sign_in(&mut weak, &mut key).await.0, 401);
        assert!(!signed_in_as(&mut weak, BOB).await);
        // Past the throttle's delay after that failure.
        app.clock.advance(Duration::from_secs(60));
        assert_eq!(password_sign_in(&mut weak, BOB).await.1["location"], "/login/mfa");
        assert_eq!(passkey_second_factor(&mut weak, &mut key).await.0, 401);
        assert!(!signed_in_as(&mut weak, BOB).await);
        assert!(actions(&app).await.iter().any(|(a, c)| a == "auth.passkey_failed" && c.contains("passkey")));
    }

    async fn a_ceremony_works_once_and_for_five_minutes(app, sink) {
        let _ = sink;
        let (_, mut key) = ada_with_passkey(&app).await;
        let mut v = Visitor::new(&app);
        let (csrf, challenge) = sign_in_challenge(&mut v).await;
        let credential = key.assert(&challenge["publicKey"]);
        assert_eq!(finish_sign_in(&mut v, &csrf, &challenge["ceremony"], &credential).await.0, 200);

        // The same answer again, from another browser: the ceremony is spent.
        let mut replay = Visitor::new(&app);
        let csrf = replay.csrf_from("/login").await;
        let (status, answer) = finish_sign_in(&mut replay, &csrf, &challenge["ceremony"], &credential).await;
        assert_eq!(status, 401, "{answer}");
        assert!(!signed_in_as(&mut replay, ADA).await);

        // A fresh answer to a spent ceremony (past the throttle's delay): still refused.
        app.clock.advance(Duration::from_secs(60));
        let again = key.assert(&challenge["publicKey"]);
        assert_eq!(finish_sign_in(&mut replay, &csrf, &challenge["ceremony"], &again).await.0, 401);

        // An answer after five minutes: refused; just before: accepted.
        let (csrf, late) = sign_in_challenge(&mut replay).await;
        app.clock.advance(Duration::from_secs(5 * 60));
        let credential = key.assert(&late["publicKey"]);
        assert_eq!(finish_sign_in(&mut replay, &csrf, &late["ceremony"], &credential).await.0, 401);
        let (csrf, timely) = sign_in_challenge(&mut replay).await;
        app.clock.advance(Duration::from_secs(5 * 60 - 1));
        let credential = key.assert(&timely["publicKey"]);
        assert_eq!(finish_sign_in(&mut replay, &csrf, &timely["ceremony"], &credential).await.0, 200);

        // An answer to another ceremony's challenge is refused.
        app.clock.advance(Duration::from_secs(60));
        let mut mixed = Visitor::new(&app);
        let (csrf, first) = sign_in_challenge(&mut mixed).await;
        let (_, second) = sign_in_challenge(&mut mixed).await;
        let credential = key.assert(&first["publicKey"]);
        assert_eq!(finish_sign_in(&mut mixed, &csrf, &second["ceremony"], &credential).await.0, 401);

        // A registration ceremony cannot be finished twice either.
        app.clock.advance(Duration::from_secs(60));
        let mut ada = Visitor::new(&app);
        password_sign_in(&mut ada, ADA).await;
        let csrf = ada.csrf_from("/account").await;
        let (_, _, challenge) = ada.post_json("/account/passkeys/start", &csrf, &json!({})).await;
        let mut other = SoftPasskey::new(&origin(&app));
        let body = json!({ "ceremony": challenge["ceremony"], "name": "Tablet", "credential": other.register(&challenge["publicKey"]) });
        assert_eq!(ada.post_json("/account/passkeys/finish", &csrf, &body).await.0, 201);
        let mut third = SoftPasskey::new(&origin(&app));
        let body = json!({ "ceremony": challenge["ceremony"], "name": "Tablet", "credential": third.register(&challenge["publicKey"]) });
        assert_eq!(ada.post_json("/account/passkeys/finish", &csrf, &body).await.0, 400);
    }

    async fn answers_for_another_origin_account_or_counter_get_nowhere(app, sink) {
        let _ = sink;
        let (_, mut ada_key) = ada_with_passkey(&app).await;
        let bob_user = add_user(&app, BOB).password(PASSWORD).mfa().await;
        let bob_totp = bob_user.setup_key.clone().unwrap();

        // Another origin (a phishing site relaying the challenge): refused.
        ada_key.origin = format!("http://evil.localhost:{}", app.addr.port());
        let mut v = Visitor::new(&app);
        assert_eq!(passkey_sign_in(&mut v, &mut ada_key).await.0, 401);
        assert!(!signed_in_as(&mut v, ADA).await);
        ada_key.origin = origin(&app);

        // Ada's passkey claiming to be Bob's account (the user handle): refused.
        app.clock.advance(Duration::from_secs(60));
        let bob_id = bob_user.id;
        let saved = ada_key.user_handle.clone();
        ada_key.user_handle = bob_id.as_bytes().to_vec();
        assert_eq!(passkey_sign_in(&mut v, &mut ada_key).await.0, 401);
        assert!(!signed_in_as(&mut v, BOB).await && !signed_in_as(&mut v, ADA).await);
        ada_key.user_handle = saved;

        // Ada's passkey as the second factor of Bob's password: refused (not his).
        let mut bob = Visitor::new(&app);
        assert_eq!(password_sign_in(&mut bob, BOB).await.1["location"], "/login/mfa");
        let csrf = bob.csrf_from("/login/mfa").await;
        let (status, _, challenge) = bob.post_json("/login/mfa/passkey/start", &csrf, &json!({})).await;
        assert_eq!(status, 404, "Bob has no passkey to offer: {challenge}");
        let mut bob_key = SoftPasskey::new(&origin(&app));
        {
            let mut b = Visitor::new(&app);
            password_sign_in(&mut b, BOB).await;
            let csrf = b.csrf_from("/login/mfa").await;
            b.post("/login/mfa", &[("csrf_token", &csrf), ("code", &totp_code(&app, &bob_totp, 1))]).await;
            assert_eq!(register(&mut b, &mut bob_key, "Bob's key").await.0, 201);
        }
        let (status, _, challenge) = bob.post_json("/login/mfa/passkey/start", &csrf, &json!({})).await;
        assert_eq!(status, 200);
        let credential = ada_key.assert(&challenge["publicKey"]);
        let body = json!({ "ceremony": challenge["ceremony"], "credential": credential });
        assert_eq!(bob.post_json("/login/mfa/passkey/finish", &csrf, &body).await.0, 401);
        assert!(!signed_in_as(&mut bob, BOB).await);

        // The same credential registered by another account: refused (one account per key).
        app.clock.advance(Duration::from_secs(60));
        let mut bob_signed_in = Visitor::new(&app);
        password_sign_in(&mut bob_signed_in, BOB).await;
        let csrf = bob_signed_in.csrf_from("/login/mfa").await;
        bob_signed_in.post("/login/mfa", &[("csrf_token", &csrf), ("code", &totp_code(&app, &bob_totp, 1))]).await;
        assert!(signed_in_as(&mut bob_signed_in, BOB).await);
        let handle = ada_key.user_handle.clone();
        assert_eq!(register(&mut bob_signed_in, &mut ada_key, "Stolen").await.0, 409);
        ada_key.user_handle = handle;

        // A counter that goes back (a cloned authenticator): refused.
        let mut v = Visitor::new(&app);
        assert_eq!(passkey_sign_in(&mut v, &mut ada_key).await.0, 200);
        ada_key.counter -= 2;
        let mut clone = Visitor::new(&app);
        assert_eq!(passkey_sign_in(&mut clone, &mut ada_key).await.0, 401);
        assert!(!signed_in_as(&mut clone, ADA).await);
    }

    async fn adding_and_removing_need_a_recent_sign_in_and_are_audited_and_mailed(app, sink) {
        let (mut v, mut key) = ada_with_passkey(&app).await;
        app.clock.advance(Duration::from_secs(11 * 60));
        let (_, _, page) = v.get("/account").await;
        assert!(page.contains("sign in again before adding or removing a passkey"), "{page}");
        let id = app.db.query("SELECT id FROM passkeys").fetch_one().await.unwrap().uuid(0).unwrap().to_string();
        let csrf = v.csrf_from("/account").await;
        let (status, _, _) = v.post("/account/passkeys/remove", &[("csrf_token", &csrf), ("id", &id)]).await;
        assert_eq!(status, 403, "a stale sign-in cannot remove a passkey");
        let (status, _, _) = v.post_json("/account/passkeys/start", &csrf, &json!({})).await;
        assert_eq!(status, 403, "nor add one");
        assert_eq!(passkey_sign_in(&mut Visitor::new(&app), &mut key).await.0, 200, "still there");

        // A fresh sign-in (the passkey itself) may remove it.
        let mut fresh = Visitor::new(&app);
        passkey_sign_in(&mut fresh, &mut key).await;
        sink.clear();
        let csrf = fresh.csrf_from("/account").await;
        let (status, headers, _) = fresh.post("/account/passkeys/remove", &[("csrf_token", &csrf), ("id", &id)]).await;
        assert_eq!(status, 303);
        assert_eq!(headers["location"], "/account?notice=passkey-removed");
        sink.wait_for_containing(ADA, "A passkey was removed from your Gatehouse account").await;
        assert!(actions(&app).await.iter().any(|(a, c)| a == "passkey.remove" && c.contains("Work laptop")));
        let mut after = Visitor::new(&app);
        assert_eq!(passkey_sign_in(&mut after, &mut key).await.0, 401, "a removed passkey signs no one in");

        // Someone else's passkey cannot be removed.
        let (_, _) = ada_with_passkey(&app).await;
        let id = app.db.query("SELECT id FROM passkeys").fetch_one().await.unwrap().uuid(0).unwrap().to_string();
        add_user(&app, BOB).password(PASSWORD).await;
        let mut bob = Visitor::new(&app);
        password_sign_in(&mut bob, BOB).await;
        let csrf = bob.csrf_from("/account").await;
        assert_eq!(bob.post("/account/passkeys/remove", &[("csrf_token", &csrf), ("id", &id)]).await.0, 404);
        assert_eq!(app.db.query("SELECT COUNT(*) FROM passkeys").fetch_one().await.unwrap().get::<i64>(0).unwrap(), 1);
    }
}

/// A role that requires MFA takes a passkey as the MFA: the user who must enrol may add one
/// instead of TOTP, and is then let in; after a password the passkey is then the second factor
/// (a password alone no longer opens the account), and a passkey sign-in is both factors. Run
/// on both databases (the passkeys are stored there).
async fn a_role_that_requires_mfa_accepts_a_passkey(store: Store) {
    let test = "passkeys::a_role_that_requires_mfa_accepts_a_passkey";
    let Some((app, _sink)) =
        app_with(store, test, &[("GATEHOUSE_MFA_REQUIRED_ROLES", "user")]).await
    else {
        return;
    };
    let mut v = Visitor::new(&app);
    assert_eq!(password_sign_in(&mut v, ADA).await.0, 303);
    let (status, headers, _) = v.get("/").await;
    assert_eq!(
        (status, &headers["location"]),
        (303, &"/account/mfa".parse().unwrap()),
        "enrolment first"
    );
    let (_, _, page) = v.get("/account/mfa").await;
    assert!(
        page.contains("data-passkey=\"register\""),
        "a passkey is offered at enrolment: {page}"
    );

    let mut key = SoftPasskey::new(&origin(&app));
    let (status, answer) = register_from(&mut v, &mut key, "Phone", "/account/mfa").await;
    assert_eq!(
        status, 201,
        "a user who must enrol may add a passkey: {answer}"
    );
    assert_eq!(
        v.get("/").await.0,
        200,
        "the passkey meets the role's requirement"
    );
    assert!(v.get("/account/mfa").await.2.contains("id=\"passkey-mfa\""));

    // A password alone no longer opens the account: the passkey is asked for after it.
    let mut later = Visitor::new(&app);
    assert_eq!(
        password_sign_in(&mut later, ADA).await.1["location"],
        "/login/mfa"
    );
    assert!(!signed_in_as(&mut later, ADA).await);
    let (status, answer) = passkey_second_factor(&mut later, &mut key).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(later.get("/").await.0, 200);

    // Nor does a password alone get API tokens (the grant's second factor is a TOTP code).
    let res = app
        .request(reqwest::Method::POST, "/api/v1/auth/token")
        .json(&json!({"grant_type": "password", "email": ADA, "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    assert_eq!(res.json::<Value>().await.unwrap()["error"], "mfa_required");

    // A passkey sign-in is both factors: straight in, no enrolment.
    let mut fresh = Visitor::new(&app);
    assert_eq!(passkey_sign_in(&mut fresh, &mut key).await.0, 200);
    assert_eq!(fresh.get("/").await.0, 200);
}

mod a_role_that_requires_mfa_accepts_a_passkey {
    use super::*;

    #[tokio::test]
    async fn sqlite() {
        a_role_that_requires_mfa_accepts_a_passkey(Store::Sqlite).await;
    }

    #[tokio::test]
    async fn postgres() {
        a_role_that_requires_mfa_accepts_a_passkey(Store::Postgres).await;
    }
}

#[tokio::test]
async fn passkey_calls_need_the_csrf_token_and_an_ip_address_host_turns_passkeys_off() {
    let Some((app, _sink)) = app(Store::Sqlite, "passkeys::csrf").await else {
        return;
    };
    let mut v = Visitor::new(&app);
    v.csrf_from("/login").await;
    let (status, _, _) = v
        .post_json("/login/passkey/start", "forged", &json!({}))
        .await;
    assert_eq!(
        status, 403,
        "a JSON call without the page's token is refused"
    );
    let csrf = v.csrf_from("/login").await;
    let (status, _, answer) = v
        .post_json(
            "/login/passkey/finish",
            &csrf,
            &json!({ "ceremony": "x", "credential": {} }),
        )
        .await;
    assert!(
        (400..500).contains(&status),
        "malformed answers are the client's error: {status} {answer}"
    );
    let mut key = SoftPasskey::new(&origin(&app));
    key.user_handle = vec![1; 16];
    let credential = key.assert(&json!({ "challenge": "AAAA" }));
    let (status, _) = finish_sign_in(&mut v, &csrf, &json!("not-a-ceremony"), &credential).await;
    assert_eq!(status, 401, "an unknown ceremony");

    let plain = crate::support::spawn_unlimited_app(Backend::Sqlite, &[]).await;
    let mut v = Visitor::new(&plain);
    let (_, _, page) = v.get("/login").await;
    assert!(
        !page.contains("passkey"),
        "no passkey button where the public URL is an address: {page}"
    );
    let csrf = v.csrf_from("/login").await;
    assert_eq!(
        v.post_json("/login/passkey/start", &csrf, &json!({}))
            .await
            .0,
        503
    );
}

/// ChromeDriver's WebAuthn extension: adds a virtual authenticator to the session (a platform
/// authenticator that keeps resident keys and verifies its user, as a laptop's fingerprint
/// reader does).
#[derive(Debug)]
struct AddVirtualAuthenticator;

impl fantoccini::wd::WebDriverCompatibleCommand for AddVirtualAuthenticator {
    fn endpoint(
        &self,
        base_url: &url::Url,
        session_id: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base_url.join(&format!(
            "session/{}/webauthn/authenticator",
            session_id.unwrap_or_default()
        ))
    }

    fn method_and_body(&self, _: &url::Url) -> (http::Method, Option<String>) {
        let body = json!({
            "protocol": "ctap2",
            "transport": "internal",
            "hasResidentKey": true,
            "hasUserVerification": true,
            "isUserVerified": true,
            "automaticPresenceSimulation": true,
        });
        (http::Method::POST, Some(body.to_string()))
    }
}

/// Waits (at most 10 s) until `css` matches an element whose text contains `text`.
async fn expect_text(browser: &crate::support::browser::Browser, css: &str, text: &str) {
    let mut last = String::new();
    for _ in 0..200 {
        if let Ok(element) = browser.client.find(fantoccini::Locator::Css(css)).await {
            last = element.text().await.unwrap_or_default();
            if last.contains(text) {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("expected {text:?} in {css}, found {last:?}");
}

#[tokio::test]
async fn passkeys_work_end_to_end_in_chromium() {
    let test = "passkeys::passkeys_work_end_to_end_in_chromium";
    let Some(browser) = crate::support::browser::Browser::start(test).await else {
        return;
    };
    let (app, sink) = spawn_app_with_mail(
        Backend::Sqlite,
        &[("GATEHOUSE_PUBLIC_URL", "http://localhost:0")],
    )
    .await;
    let ada = add_user(&app, ADA)
        .name("Ada")
        .password(PASSWORD)
        .mfa()
        .await;
    let setup_key = ada.setup_key.unwrap();
    let base = origin(&app);
    let b = &browser.client;
    b.issue_cmd(AddVirtualAuthenticator)
        .await
        .expect("a virtual authenticator");

    // Password and TOTP code, then a passkey from the account page.
    b.goto(&format!("{base}/login")).await.unwrap();
    browser.expect_heading("Sign in").await;
    browser.fill("password-email", ADA).await;
    browser.fill("password", PASSWORD).await;
    browser
        .click("form[action='/login/password'] button[type=submit]")
        .await;
    browser.expect_heading("Two-step sign-in").await;
    browser.fill("code", &totp_code(&app, &setup_key, 1)).await;
    browser
        .click("form[action='/login/mfa'] button[type=submit]")
        .await;
    browser.expect_heading("Welcome, Ada").await;
    b.goto(&format!("{base}/account")).await.unwrap();
    browser.expect_heading("Your account").await;
    browser.fill("passkey-name", "Laptop").await;
    browser.click("#passkey-add").await;
    expect_text(&browser, "#passkeys", "Laptop").await;
    browser.screenshot("01-passkey-added").await;
    sink.wait_for_containing(ADA, "A passkey was added").await;

    // Signed out, the passkey signs in with no address typed, and is both factors.
    browser.click("form[action='/logout'] button").await;
    browser
        .expect_heading("Your team's items and documents, behind a proper gate.")
        .await;
    b.goto(&format!("{base}/login")).await.unwrap();
    browser.expect_heading("Sign in").await;
    browser.click("#passkey-sign-in").await;
    browser.expect_heading("Welcome, Ada").await;
    browser.screenshot("02-signed-in-with-passkey").await;

    // After a password, the passkey in place of the code.
    browser.click("form[action='/logout'] button").await;
    browser
        .expect_heading("Your team's items and documents, behind a proper gate.")
        .await;
    b.goto(&format!("{base}/login")).await.unwrap();
    browser.expect_heading("Sign in").await;
    browser.fill("password-email", ADA).await;
    browser.fill("password", PASSWORD).await;
    browser
        .click("form[action='/login/password'] button[type=submit]")
        .await;
    browser.expect_heading("Two-step sign-in").await;
    browser.click("#passkey-second-factor").await;
    browser.expect_heading("Welcome, Ada").await;

    // Removed from the account page, it signs in no more.
    b.goto(&format!("{base}/account")).await.unwrap();
    browser
        .click("form[action='/account/passkeys/remove'] button")
        .await;
    expect_text(&browser, "main", "The passkey was removed.").await;
    sink.wait_for_containing(ADA, "A passkey was removed").await;
    browser.click("form[action='/logout'] button").await;
    browser
        .expect_heading("Your team's items and documents, behind a proper gate.")
        .await;
    b.goto(&format!("{base}/login")).await.unwrap();
    browser.expect_heading("Sign in").await;
    browser.click("#passkey-sign-in").await;
    expect_text(
        &browser,
        "[data-passkey=sign-in] [data-passkey-message]",
        "did not sign you in",
    )
    .await;
    browser.screenshot("03-removed-passkey-refused").await;

    // A browser without WebAuthn is told so, in words (the script run again without it).
    b.execute(
        "Object.defineProperty(window, 'PublicKeyCredential', { value: undefined, configurable: true }); \
         const s = document.createElement('script'); \
         s.src = document.querySelector(\"script[src*='passkeys']\").src; \
         document.head.appendChild(s); return null;",
        vec![],
    )
    .await
    .unwrap();
    expect_text(
        &browser,
        "[data-passkey=sign-in] [data-passkey-message]",
        "This browser cannot use passkeys",
    )
    .await;
    browser.screenshot("04-no-webauthn").await;
    let log = actions(&app).await;
    assert!(
        log.iter()
            .any(|(a, c)| a == "auth.sign_in" && c.contains("\"method\":\"passkey\"")),
        "{log:?}"
    );
    assert!(
        log.iter()
            .any(|(a, c)| a == "auth.sign_in" && c.contains("password+passkey")),
        "{log:?}"
    );
    assert!(log.iter().any(|(a, _)| a == "passkey.remove"), "{log:?}");

    let problems = browser.problems();
    assert!(
        problems.is_empty(),
        "console errors or CSP violations:\n{}",
        problems.join("\n")
    );
}
