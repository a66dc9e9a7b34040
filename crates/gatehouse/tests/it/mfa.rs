//! Two-step sign-in over HTTP: enrolment, the second factor after every first factor, replay,
//! recovery codes, the throttle, recent sign-in for changes, required roles, the CLI reset and
//! re-encryption under a new secret key. Codes are computed from the setup key the page shows,
//! at the app's own (manual) clock.

use std::time::Duration;

use gatehouse::identity::mfa;
use gatehouse::identity::{Email, users};
use gatehouse::keys::Keys;
use secrecy::SecretString;

use crate::on_every_backend;
use crate::support::smtp_sink::SmtpSink;
use crate::support::visitor::Visitor;
use crate::support::{GOOD_KEY, TestApp, add_user, run_cli, spawn_instance, totp_code};

const EMAIL: &str = "ada@example.com";
const PASSWORD: &str = "Vermilion-Otter-42";

async fn app(backend: crate::support::Backend, extra: &[(&str, &str)]) -> (TestApp, SmtpSink) {
    let (app, sink) = crate::support::spawn_app_with_mail(backend, extra).await;
    add_user(&app, EMAIL).password(PASSWORD).await;
    (app, sink)
}

/// Password sign-in; returns the response.
async fn sign_in(v: &mut Visitor<'_>, email: &str) -> (u16, reqwest::header::HeaderMap, String) {
    let csrf = v.csrf_from("/login").await;
    v.post(
        "/login/password",
        &[
            ("csrf_token", &csrf),
            ("email", email),
            ("password", PASSWORD),
        ],
    )
    .await
}

/// Enters `code` at `/login/mfa`.
async fn second_factor(
    v: &mut Visitor<'_>,
    code: &str,
) -> (u16, reqwest::header::HeaderMap, String) {
    let csrf = v.csrf_from("/login/mfa").await;
    v.post("/login/mfa", &[("csrf_token", &csrf), ("code", code)])
        .await
}

fn between<'p>(page: &'p str, start: &str, end: &str) -> Option<&'p str> {
    let from = page.find(start)? + start.len();
    Some(&page[from..from + page[from..].find(end)?])
}

fn recovery_codes(page: &str) -> Vec<String> {
    page.split("<li><code>")
        .skip(1)
        .map(|s| s[..s.find("</code>").unwrap()].to_owned())
        .collect()
}

/// Signs in (password) and turns MFA on; returns the setup key and the recovery codes.
async fn enrol(app: &TestApp, v: &mut Visitor<'_>) -> (String, Vec<String>) {
    assert_eq!(sign_in(v, EMAIL).await.0, 303);
    let csrf = v.csrf_from("/account/mfa").await;
    let (status, _, page) = v.post("/account/mfa/setup", &[("csrf_token", &csrf)]).await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("<svg role=\"img\""), "a QR code: {page}");
    let key = between(&page, "<code id=\"setup-key\">", "</code>")
        .expect("a setup key")
        .to_owned();
    let (status, _, page) = v
        .post(
            "/account/mfa/confirm",
            &[("csrf_token", &csrf), ("code", &totp_code(app, &key, 0))],
        )
        .await;
    assert_eq!(status, 200, "{page}");
    let codes = recovery_codes(&page);
    assert_eq!(codes.len(), 10, "{page}");
    (key, codes)
}

async fn actions(app: &TestApp) -> Vec<(String, String)> {
    gatehouse::audit::records_after(&app.db, 0, 1000)
        .await
        .unwrap()
        .into_iter()
        .map(|r| (r.action, r.changes))
        .collect()
}

fn signed_in(page: &str) -> bool {
    page.contains(EMAIL)
}

on_every_backend! {
    async fn a_user_turns_on_mfa_and_a_password_alone_no_longer_signs_in(backend) {
        let (app, sink) = app(backend, &[]).await;
        let mut v = Visitor::new(&app);
        let mut elsewhere = Visitor::new(&app);
        assert_eq!(sign_in(&mut elsewhere, EMAIL).await.0, 303);
        assert_eq!(sign_in(&mut v, EMAIL).await.0, 303);
        let (_, _, page) = v.get("/account/mfa").await;
        assert!(page.contains("is <strong>off</strong>"), "{page}");

        let csrf = v.csrf_from("/account/mfa").await;
        let (_, _, page) = v.post("/account/mfa/setup", &[("csrf_token", &csrf)]).await;
        let key = between(&page, "<code id=\"setup-key\">", "</code>").unwrap().to_owned();
        let wrong = format!("{:06}", (totp_code(&app, &key, 0).parse::<u32>().unwrap() + 1) % 1_000_000);
        let (status, _, page) = v.post("/account/mfa/confirm", &[("csrf_token", &csrf), ("code", &wrong)]).await;
        assert_eq!(status, 400, "a wrong code does not turn it on");
        assert!(page.contains(&key), "the same setup key is shown again: {page}");
        let (status, _, page) = v.post("/account/mfa/confirm", &[("csrf_token", &csrf), ("code", &totp_code(&app, &key, 0))]).await;
        assert_eq!(status, 200, "{page}");
        assert_eq!(recovery_codes(&page).len(), 10);

        // The secret is sealed at rest.
        let stored: String = app.db.query("SELECT totp_secret FROM users").fetch_one().await.unwrap().get(0).unwrap();
        assert!(stored.starts_with("v1.") && !stored.contains(&key.replace(' ', "")), "{stored}");

        assert!(!signed_in(&elsewhere.get("/").await.2), "turning MFA on ends the other sessions");
        let notice = sink.wait_for_containing(EMAIL, "Two-step sign-in is on").await;
        assert!(notice.data.contains("Every other session was signed out"), "{}", notice.data);

        // Sign out; a password now leads to the second step, not to a session.
        let mut fresh = Visitor::new(&app);
        let (status, headers, _) = sign_in(&mut fresh, EMAIL).await;
        assert_eq!(status, 303);
        assert_eq!(headers["location"], "/login/mfa");
        assert!(!fresh.cookies.contains_key("gatehouse"), "no session before the second factor");
        assert!(fresh.cookies.contains_key("gatehouse-mfa"));
        assert!(!signed_in(&fresh.get("/").await.2));
        assert_eq!(fresh.get("/account").await.0, 303, "account pages stay closed");

        let (status, _, _) = second_factor(&mut fresh, &totp_code(&app, &key, 0)).await;
        assert_eq!(status, 401, "the code that turned MFA on cannot be used again");
        app.clock.advance(Duration::from_secs(30));
        let (status, headers, _) = second_factor(&mut fresh, &totp_code(&app, &key, 0)).await;
        assert_eq!(status, 303);
        assert_eq!(headers["location"], "/");
        assert!(!fresh.cookies.contains_key("gatehouse-mfa"), "the pending cookie is cleared");
        assert!(signed_in(&fresh.get("/").await.2));

        // The same code again, from another browser in the same 30 seconds: refused.
        let mut replay = Visitor::new(&app);
        sign_in(&mut replay, EMAIL).await;
        assert_eq!(second_factor(&mut replay, &totp_code(&app, &key, 0)).await.0, 401);
        assert!(!signed_in(&replay.get("/").await.2));
        let user = users::find_by_email(&app.db, &Email::parse(EMAIL).unwrap()).await.unwrap().unwrap();
        let replays = crate::support::captured_logs().into_iter().filter(|l| l["event"] == "totp_replayed" && l["user_id"] == user.id.to_string()).count();
        assert_eq!(replays, 2, "the code that turned MFA on and the one used twice are logged as replays");
        // ASVS V2.8.5: the holder is told, never with the code.
        let told = sink.wait_for_count_containing(EMAIL, "A used two-step code was tried", 2).await;
        assert!(told.iter().all(|m| !m.data.contains(&totp_code(&app, &key, 0))), "never the code");

        let log = actions(&app).await;
        assert!(log.iter().any(|(a, _)| a == "mfa.enable"), "{log:?}");
        assert!(log.iter().any(|(a, c)| a == "auth.sign_in" && c.contains("password+totp")), "{log:?}");
        assert!(log.iter().any(|(a, _)| a == "auth.mfa_failed"), "{log:?}");
    }

    async fn links_and_codes_by_mail_also_need_the_second_factor(backend) {
        let (app, sink) = app(backend, &[]).await;
        let mut v = Visitor::new(&app);
        let (key, _) = enrol(&app, &mut v).await;
        sink.wait_for(EMAIL).await;
        sink.clear();

        let mut other = Visitor::new(&app);
        let csrf = other.csrf_from("/login").await;
        other.post("/login/magic", &[("csrf_token", &csrf), ("email", EMAIL)]).await;
        let mail = sink.wait_for(EMAIL).await;
        let code_marker = "enter this code on the sign-in page: ";
        let c = mail.data.find(code_marker).unwrap() + code_marker.len();
        let code = &mail.data[c..c + 8];
        let (_, _, page) = other.get("/login").await;
        let csrf = crate::support::visitor::field(&page, "csrf_token").unwrap();
        let (status, headers, _) = other.post("/login/code", &[("csrf_token", &csrf), ("email", EMAIL), ("code", code)]).await;
        assert_eq!(status, 303);
        assert_eq!(headers["location"], "/login/mfa", "the mailed code is one factor only");
        assert!(!signed_in(&other.get("/").await.2));
        app.clock.advance(Duration::from_secs(30));
        assert_eq!(second_factor(&mut other, &totp_code(&app, &key, 0)).await.0, 303);
        assert!(signed_in(&other.get("/").await.2));

        sink.clear();
        let mut third = Visitor::new(&app);
        let csrf = third.csrf_from("/login").await;
        third.post("/login/magic", &[("csrf_token", &csrf), ("email", EMAIL), ("next", "/account")]).await;
        let mail = sink.wait_for_containing(EMAIL, "/login/magic/verify?token=").await;
        let marker = "/login/magic/verify?token=";
        let start = mail.data.find(marker).unwrap();
        let link = &mail.data[start..start + marker.len() + 43];
        let (_, _, page) = third.get(link).await;
        let token = crate::support::visitor::field(&page, "token").unwrap();
        let csrf = crate::support::visitor::field(&page, "csrf_token").unwrap();
        let (status, headers, _) = third.post("/login/magic/verify", &[("csrf_token", &csrf), ("token", &token)]).await;
        assert_eq!(status, 303);
        assert_eq!(headers["location"], "/login/mfa", "the link is one factor only");
        app.clock.advance(Duration::from_secs(30));
        let (status, headers, _) = second_factor(&mut third, &totp_code(&app, &key, 0)).await;
        assert_eq!(status, 303);
        assert_eq!(headers["location"], "/account", "`next` survives the second step");
    }

    async fn each_recovery_code_works_once_and_its_use_is_mailed(backend) {
        let (app, sink) = app(backend, &[]).await;
        let mut v = Visitor::new(&app);
        let (_, codes) = enrol(&app, &mut v).await;
        sink.wait_for(EMAIL).await;
        sink.clear();

        let mut lost_phone = Visitor::new(&app);
        sign_in(&mut lost_phone, EMAIL).await;
        // Typed loosely: lower case, a space instead of the dash.
        let typed = codes[3].to_lowercase().replace('-', " ");
        let (status, _, _) = second_factor(&mut lost_phone, &typed).await;
        assert_eq!(status, 303);
        assert!(signed_in(&lost_phone.get("/").await.2));
        let notice = sink.wait_for_containing(EMAIL, "recovery code was used").await;
        assert!(notice.data.contains("Each code works only once"), "{}", notice.data);
        let (_, _, page) = lost_phone.get("/account/mfa").await;
        assert!(page.contains("<strong>9</strong> unused recovery codes"), "{page}");

        let mut again = Visitor::new(&app);
        sign_in(&mut again, EMAIL).await;
        assert_eq!(second_factor(&mut again, &codes[3]).await.0, 401, "a spent code");
        app.clock.advance(Duration::from_secs(5)); // past the delay a failure adds
        assert_eq!(second_factor(&mut again, "ABCDE-FGHJK").await.0, 401, "a made-up code");
        app.clock.advance(Duration::from_secs(5));
        assert_eq!(second_factor(&mut again, &codes[4]).await.0, 303, "another code still works");

        // New codes replace the old ones.
        let csrf = again.csrf_from("/account/mfa").await;
        let (status, _, page) = again.post("/account/mfa/recovery-codes", &[("csrf_token", &csrf)]).await;
        assert_eq!(status, 200);
        let fresh = recovery_codes(&page);
        assert_eq!(fresh.len(), 10);
        let mut third = Visitor::new(&app);
        sign_in(&mut third, EMAIL).await;
        assert_eq!(second_factor(&mut third, &codes[5]).await.0, 401, "old codes stop working");
        app.clock.advance(Duration::from_secs(5));
        assert_eq!(second_factor(&mut third, &fresh[0]).await.0, 303);
        let log = actions(&app).await;
        assert!(log.iter().filter(|(a, _)| a == "mfa.recovery_code_used").count() == 3, "{log:?}");
        assert!(log.iter().any(|(a, _)| a == "mfa.recovery_codes_regenerated"), "{log:?}");
    }

    async fn wrong_codes_lock_the_second_step_like_wrong_passwords(backend) {
        let (app, _sink) = app(backend, &[("GATEHOUSE_LOCKOUT_THRESHOLD", "3")]).await;
        let mut v = Visitor::new(&app);
        let (key, _) = enrol(&app, &mut v).await;
        let mut attacker = Visitor::new(&app);
        sign_in(&mut attacker, EMAIL).await;
        for guess in ["000000", "111111", "222222"] {
            assert_eq!(second_factor(&mut attacker, guess).await.0, 401);
            // Wait out the growing delay between attempts; the lock is what is tested.
            app.clock.advance(Duration::from_secs(5));
        }
        let right = totp_code(&app, &key, 0);
        let (status, headers, _) = second_factor(&mut attacker, &right).await;
        assert_eq!(status, 429, "locked: even the right code is refused");
        assert!(headers.contains_key("retry-after"));
        assert!(!signed_in(&attacker.get("/").await.2));
        assert!(actions(&app).await.iter().any(|(a, _)| a == "auth.locked"));
    }

    async fn a_forged_or_expired_second_step_gets_nowhere(backend) {
        let (app, _sink) = app(backend, &[]).await;
        let mut v = Visitor::new(&app);
        let (key, _) = enrol(&app, &mut v).await;
        let mut late = Visitor::new(&app);
        sign_in(&mut late, EMAIL).await;
        let genuine = late.cookies["gatehouse-mfa"].clone();

        // Someone else's user id under the genuine MAC.
        let (payload, mac) = genuine.split_once('.').unwrap();
        let forged_payload = payload.chars().rev().collect::<String>();
        let mut forger = Visitor::new(&app);
        forger.cookies.insert("gatehouse-mfa".into(), format!("{forged_payload}.{mac}"));
        let (status, headers, _) = forger.get("/login/mfa").await;
        assert_eq!((status, headers["location"].to_str().unwrap()), (303, "/login"));

        app.clock.advance(Duration::from_secs(5 * 60));
        let csrf = late.csrf_from("/login").await;
        let (status, headers, _) = late.post("/login/mfa", &[("csrf_token", &csrf), ("code", &totp_code(&app, &key, 0))]).await;
        assert_eq!((status, headers["location"].to_str().unwrap()), (303, "/login"), "five minutes are up");
        assert!(!signed_in(&late.get("/").await.2));
    }

    async fn sensitive_changes_need_a_sign_in_from_the_last_ten_minutes(backend) {
        let (app, sink) = app(backend, &[]).await;
        let mut v = Visitor::new(&app);
        let mut elsewhere = Visitor::new(&app);
        let (key, _) = enrol(&app, &mut v).await;
        app.clock.advance(Duration::from_secs(11 * 60));

        let csrf = v.csrf_from("/account/mfa").await;
        let (status, _, page) = v.post("/account/mfa/disable", &[("csrf_token", &csrf)]).await;
        assert_eq!(status, 403, "{page}");
        assert!(page.contains("sign in again"), "{page}");
        assert_eq!(v.post("/account/mfa/recovery-codes", &[("csrf_token", &csrf)]).await.0, 403);
        let (status, _, _) = v.post("/account/password", &[("csrf_token", &csrf), ("current", PASSWORD), ("new", "Cobalt-Heron-77!"), ("confirm", "Cobalt-Heron-77!")]).await;
        assert_eq!(status, 403, "a stale session cannot change the password");
        let mut check = Visitor::new(&app);
        sign_in(&mut check, EMAIL).await;
        assert_eq!(check.get("/login/mfa").await.0, 200, "the password did not change");

        // A fresh sign-in (with the second factor) may turn MFA off; other sessions end.
        sign_in(&mut elsewhere, EMAIL).await;
        assert_eq!(second_factor(&mut elsewhere, &totp_code(&app, &key, 0)).await.0, 303);
        app.clock.advance(Duration::from_secs(30));
        let mut fresh = Visitor::new(&app);
        sign_in(&mut fresh, EMAIL).await;
        assert_eq!(second_factor(&mut fresh, &totp_code(&app, &key, 0)).await.0, 303);
        sink.clear();
        let csrf = fresh.csrf_from("/account/mfa").await;
        let (status, _, page) = fresh.post("/account/mfa/disable", &[("csrf_token", &csrf)]).await;
        assert_eq!(status, 200, "{page}");
        assert!(page.contains("is <strong>off</strong>"), "{page}");
        assert!(!signed_in(&elsewhere.get("/").await.2), "other sessions ended");
        sink.wait_for_containing(EMAIL, "Two-step sign-in was turned off").await;
        let mut after = Visitor::new(&app);
        assert_eq!(sign_in(&mut after, EMAIL).await.1["location"], "/", "a password is enough again");
        assert!(actions(&app).await.iter().any(|(a, _)| a == "mfa.disable"));
    }

    async fn a_role_that_requires_mfa_is_sent_to_enrolment_first(backend) {
        let (app, _sink) = app(backend, &[("GATEHOUSE_MFA_REQUIRED_ROLES", "admin,manager")]).await;
        add_user(&app, "root@example.com").role("admin").password(PASSWORD).await;
        let mut admin = Visitor::new(&app);
        let csrf = admin.csrf_from("/login").await;
        admin.post("/login/password", &[("csrf_token", &csrf), ("email", "root@example.com"), ("password", PASSWORD)]).await;
        let (status, headers, _) = admin.get("/").await;
        assert_eq!((status, headers["location"].to_str().unwrap()), (303, "/account/mfa"));
        assert_eq!(admin.get("/account").await.0, 303);
        let (_, _, page) = admin.get("/account/mfa").await;
        assert!(page.contains("Your role requires two-step sign-in"), "{page}");
        let csrf = crate::support::visitor::field(&page, "csrf_token").unwrap();
        let (status, _, _) = admin.post("/account/password", &[("csrf_token", &csrf), ("current", PASSWORD), ("new", "Cobalt-Heron-77!"), ("confirm", "Cobalt-Heron-77!")]).await;
        assert_eq!(status, 403, "nothing else until enrolment");

        let (_, _, page) = admin.post("/account/mfa/setup", &[("csrf_token", &csrf)]).await;
        let key = between(&page, "<code id=\"setup-key\">", "</code>").unwrap().to_owned();
        assert_eq!(admin.post("/account/mfa/confirm", &[("csrf_token", &csrf), ("code", &totp_code(&app, &key, 0))]).await.0, 200);
        let (status, _, page) = admin.get("/").await;
        assert_eq!(status, 200);
        assert!(page.contains("root@example.com"));
        let (_, _, page) = admin.get("/account/mfa").await;
        assert!(!page.contains("/account/mfa/disable"), "no way to turn it off is offered");
        let csrf = crate::support::visitor::field(&page, "csrf_token").unwrap();
        assert_eq!(admin.post("/account/mfa/disable", &[("csrf_token", &csrf)]).await.0, 403);

        // A role that does not require it is left alone.
        let mut user = Visitor::new(&app);
        sign_in(&mut user, EMAIL).await;
        assert_eq!(user.get("/").await.0, 200);
    }

    async fn an_admin_resets_lost_mfa_from_the_command_line(backend) {
        let (app, _sink) = app(backend, &[]).await;
        let mut v = Visitor::new(&app);
        enrol(&app, &mut v).await;
        let out = run_cli(&app.cli_env(), &["user", "reset-mfa", "--email", EMAIL]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert!(String::from_utf8_lossy(&out.stdout).contains("two-step sign-in is off"));
        assert!(!signed_in(&v.get("/").await.2), "the user's sessions ended");
        let mut after = Visitor::new(&app);
        assert_eq!(sign_in(&mut after, EMAIL).await.1["location"], "/");
        assert!(actions(&app).await.iter().any(|(a, _)| a == "mfa.reset"));
        let out = run_cli(&app.cli_env(), &["user", "reset-mfa", "--email", "nobody@example.com"]);
        assert!(!out.status.success());
        assert!(String::from_utf8_lossy(&out.stderr).contains("no user has the address"));
    }

    async fn after_a_secret_key_change_and_reencrypt_every_code_still_works_with_the_new_key_alone(backend) {
        let (app, _sink) = app(backend, &[]).await;
        let mut v = Visitor::new(&app);
        let (key, codes) = enrol(&app, &mut v).await;
        let new_key = "a-brand-new-secret-key-0123456789abcdef0123456789";
        let new_only = [("GATEHOUSE_SECRET_KEY".to_owned(), new_key.to_owned())];
        let out = run_cli(&[app.cli_env(), new_only.to_vec()].concat(), &["keys", "reencrypt"]);
        assert!(!out.status.success(), "without the previous key nothing opens");
        assert!(String::from_utf8_lossy(&out.stderr).contains("set GATEHOUSE_SECRET_KEY_PREVIOUS"), "{}", String::from_utf8_lossy(&out.stderr));

        let mut env = app.cli_env();
        env.push(("GATEHOUSE_SECRET_KEY".into(), new_key.into()));
        env.push(("GATEHOUSE_SECRET_KEY_PREVIOUS".into(), GOOD_KEY.into()));
        let out = run_cli(&env, &["keys", "reencrypt"]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
        for line in ["data keys: 3 sealed again", "TOTP secrets: 1 sealed again", "token signing keys: 1 sealed again", "GATEHOUSE_SECRET_KEY_PREVIOUS can be removed"] {
            assert!(stdout.contains(line), "{line:?} in {stdout}");
        }
        let out = run_cli(&env, &["keys", "reencrypt"]);
        assert!(String::from_utf8_lossy(&out.stdout).contains("TOTP secrets: 0 sealed again"), "a second run finds nothing to do");

        // Restarted with the new key alone: the recovery codes made under the old one still work,
        // and so does the authenticator.
        let restarted = spawn_instance(&app, &[("GATEHOUSE_SECRET_KEY", new_key)]).await;
        let mut after = Visitor::new(&restarted);
        assert_eq!(sign_in(&mut after, EMAIL).await.1["location"], "/login/mfa");
        let (status, headers, page) = second_factor(&mut after, &codes[0]).await;
        assert_eq!((status, headers.get("location").map(|l| l.to_str().unwrap())), (303, Some("/")), "{page}");
        let mut again = Visitor::new(&restarted);
        sign_in(&mut again, EMAIL).await;
        restarted.clock.advance(Duration::from_secs(30));
        assert_eq!(second_factor(&mut again, &totp_code(&restarted, &key, 0)).await.0, 303);
        let user = users::find_by_email(&restarted.db, &Email::parse(EMAIL).unwrap()).await.unwrap().unwrap();
        assert_eq!(mfa::remaining_recovery_codes(&restarted.db, user.id).await.unwrap(), 9);
    }

    async fn keys_reencrypt_refuses_to_finish_while_something_is_left_under_another_key(backend) {
        let (app, _sink) = app(backend, &[]).await;
        enrol(&app, &mut Visitor::new(&app)).await;
        // A TOTP secret sealed under a key that is neither the new nor the previous one.
        let stranger = Keys::sealing_only(&SecretString::from("some-third-key-0123456789abcdef0123456789abcdef"), None);
        let sealed = stranger.seal(gatehouse::keys::Purpose::Totp, b"JBSWY3DPEHPK3PXP");
        app.db.query("UPDATE users SET totp_secret = $1").bind(sealed).execute().await.unwrap();
        let mut env = app.cli_env();
        env.push(("GATEHOUSE_SECRET_KEY".into(), "a-brand-new-secret-key-0123456789abcdef0123456789".into()));
        env.push(("GATEHOUSE_SECRET_KEY_PREVIOUS".into(), GOOD_KEY.into()));
        let out = run_cli(&env, &["keys", "reencrypt"]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
        assert!(stderr.contains("TOTP secrets: 1 not sealed under GATEHOUSE_SECRET_KEY"), "{stderr}");
        assert!(stderr.contains("keep GATEHOUSE_SECRET_KEY_PREVIOUS"), "{stderr}");
        assert!(String::from_utf8_lossy(&out.stdout).contains("data keys: 3 sealed again"), "what could be sealed again was");
    }
}
