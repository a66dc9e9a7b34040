//! Passwordless sign-in over HTTP: magic links, one-time codes, sessions, CSRF, rate limits,
//! with mail read from the local SMTP sink.

use gatehouse::audit::{self, AuditContext};
use gatehouse::identity::Email;
use gatehouse::identity::users;

use crate::on_every_backend;
use crate::support::smtp_sink::{ReceivedMail, SmtpSink};
use crate::support::visitor::{Visitor, field};
use crate::support::{Backend, TestApp, add_user, spawn_app_with};

/// The sign-in limits are off unless a test sets them (`extra` comes last and wins).
async fn app_with_mail(backend: Backend, extra: &[(&str, &str)]) -> (TestApp, SmtpSink) {
    crate::support::spawn_app_with_mail(backend, extra).await
}

/// The link's path and query, and the one-time code, from a sign-in mail.
fn link_and_code(mail: &ReceivedMail) -> (String, String) {
    let marker = "/login/magic/verify?token=";
    let start = mail.data.find(marker).expect("a link in the mail");
    let link = mail.data[start..start + marker.len() + 43].to_owned();
    let code_marker = "enter this code on the sign-in page: ";
    let c = mail.data.find(code_marker).expect("a code in the mail") + code_marker.len();
    (link, mail.data[c..c + 8].to_owned())
}

async fn request_link(v: &mut Visitor<'_>, email: &str, next: Option<&str>) -> (u16, String) {
    let csrf = v.csrf_from("/login").await;
    let mut fields = vec![("csrf_token", csrf.as_str()), ("email", email)];
    if let Some(next) = next {
        fields.push(("next", next));
    }
    let (status, _, page) = v.post("/login/magic", &fields).await;
    (status, page)
}

/// Opens the link and confirms; returns the final response.
async fn confirm(v: &mut Visitor<'_>, link: &str) -> (u16, reqwest::header::HeaderMap, String) {
    let (status, headers, page) = v.get(link).await;
    assert_eq!(status, 200, "{page}");
    // Never sent to another site; not `no-referrer`, which makes the POST's Origin `null`.
    assert_eq!(headers["referrer-policy"], "same-origin");
    let token = field(&page, "token").unwrap();
    let csrf = field(&page, "csrf_token").unwrap();
    v.post(
        "/login/magic/verify",
        &[("csrf_token", &csrf), ("token", &token)],
    )
    .await
}

/// Removes per-response values (CSRF tokens, nonces) so two pages can be compared.
fn normalized(page: &str) -> String {
    crate::support::visitor::without_csrf_tokens(page)
}

on_every_backend! {
    async fn a_user_signs_in_with_a_magic_link_and_out_again(backend) {
        let (app, sink) = app_with_mail(backend, &[]).await;
        add_user(&app, "ada@example.com").await;
        let mut v = Visitor::new(&app);

        let (status, page) = request_link(&mut v, "Ada@Example.com", None).await;
        assert_eq!(status, 200);
        assert!(page.contains("Check your inbox"), "{page}");
        let mail = sink.wait_for("ada@example.com").await;
        let (link, _) = link_and_code(&mail);

        let (status, headers, _) = confirm(&mut v, &link).await;
        assert_eq!(status, 303);
        assert_eq!(headers["location"], "/");
        let cookie = headers.get_all("set-cookie").iter().find(|c| c.to_str().unwrap().starts_with("gatehouse=")).expect("a session cookie").to_str().unwrap().to_owned();
        for attribute in ["HttpOnly", "SameSite=Lax", "Path=/"] {
            assert!(cookie.contains(attribute), "{cookie}");
        }

        let (status, headers, page) = v.get("/").await;
        assert_eq!(status, 200);
        assert!(page.contains("ada@example.com"), "{page}");
        assert_eq!(headers["cache-control"], "no-store");
        let (_, _, account) = v.get("/account").await;
        assert!(account.contains("this device"), "{account}");

        let csrf = field(&page, "csrf_token").unwrap();
        let (status, headers, _) = v.post("/logout", &[("csrf_token", &csrf)]).await;
        assert_eq!(status, 303);
        assert!(headers["set-cookie"].to_str().unwrap().contains("Max-Age=0"));
        let (_, _, page) = v.get("/").await;
        assert!(!page.contains("ada@example.com"));
        let (status, headers, _) = v.get("/account").await;
        assert_eq!(status, 303);
        assert_eq!(headers["location"], "/login?next=%2Faccount");

        let actions: Vec<String> = audit::records_after(&app.db, 0, 100).await.unwrap().into_iter().map(|r| r.action).collect();
        assert!(actions.contains(&"auth.sign_in".to_owned()), "{actions:?}");
        assert!(actions.contains(&"auth.sign_out".to_owned()), "{actions:?}");
    }

    async fn known_and_unknown_addresses_get_the_same_answer_and_only_known_get_mail(backend) {
        let (app, sink) = app_with_mail(backend, &[]).await;
        add_user(&app, "known@example.com").await;
        let mut v = Visitor::new(&app);
        let (s1, unknown) = request_link(&mut v, "stranger@example.com", None).await;
        let (s2, known) = request_link(&mut v, "known@example.com", None).await;
        assert_eq!(s1, s2);
        assert_eq!(
            normalized(&unknown).replace("stranger@example.com", "X"),
            normalized(&known).replace("known@example.com", "X")
        );
        sink.wait_for("known@example.com").await;
        assert!(sink.messages_to("stranger@example.com").is_empty());
    }

    async fn opening_the_link_consumes_nothing_and_a_link_works_once(backend) {
        let (app, sink) = app_with_mail(backend, &[]).await;
        add_user(&app, "ada@example.com").await;
        let mut v = Visitor::new(&app);
        request_link(&mut v, "ada@example.com", None).await;
        let (link, _) = link_and_code(&sink.wait_for("ada@example.com").await);
        // A mail scanner fetching the link twice changes nothing.
        v.get(&link).await;
        v.get(&link).await;
        let (_, _, confirmation) = v.get(&link).await;
        let (status, _, _) = confirm(&mut v, &link).await;
        assert_eq!(status, 303);
        let mut other = Visitor::new(&app);
        let (status, _, page) = other.get(&link).await;
        assert_eq!(status, 400);
        assert!(page.contains("expired or was already used"), "{page}");
        let token = field(&confirmation, "token").unwrap();
        let csrf = other.csrf_from("/login").await;
        let (status, _, page) = other.post("/login/magic/verify", &[("csrf_token", &csrf), ("token", &token)]).await;
        assert_eq!(status, 400);
        assert!(page.contains("expired or was already used"), "{page}");
    }

    async fn the_confirmation_page_names_the_account_masked_as_in_the_logs(backend) {
        let (app, sink) = app_with_mail(backend, &[]).await;
        add_user(&app, "ada@example.com").await;
        let mut v = Visitor::new(&app);
        request_link(&mut v, "ada@example.com", None).await;
        let (link, _) = link_and_code(&sink.wait_for("ada@example.com").await);

        let (status, _, page) = v.get(&link).await;

        assert_eq!(status, 200, "{page}");
        assert!(page.contains("This link signs in <strong class=\"link-account\">a***@example.com</strong>"), "{page}");
        assert!(!page.contains("ada@example.com"), "{page}");
        assert!(field(&page, "switch").is_none(), "{page}");
    }

    async fn a_link_for_another_account_asks_before_switching_the_signed_in_user(backend) {
        let (app, sink) = app_with_mail(backend, &[]).await;
        add_user(&app, "bob@example.com").await;
        add_user(&app, "mallory@example.com").await;
        let mut victim = Visitor::new(&app);
        request_link(&mut victim, "bob@example.com", None).await;
        let (bob_link, _) = link_and_code(&sink.wait_for("bob@example.com").await);
        assert_eq!(confirm(&mut victim, &bob_link).await.0, 303);
        // The attacker asks for a link to their own account and gets the victim to open it.
        let mut attacker = Visitor::new(&app);
        request_link(&mut attacker, "mallory@example.com", None).await;
        let (crafted, _) = link_and_code(&sink.wait_for("mallory@example.com").await);

        let (status, headers, page) = victim.get(&crafted).await;
        assert_eq!(status, 200, "{page}");
        assert_eq!(headers["referrer-policy"], "same-origin");
        assert!(page.contains("You are signed in as <strong>bob@example.com</strong>"), "{page}");
        assert!(page.contains("m***@example.com"), "{page}");
        assert!(!page.contains("mallory@example.com"), "{page}");
        assert_eq!(field(&page, "switch").as_deref(), Some("yes"));

        // Posting the link without the switch confirmed asks again and uses nothing.
        let token = field(&page, "token").unwrap();
        let csrf = field(&page, "csrf_token").unwrap();
        let (status, headers, page) = victim.post("/login/magic/verify", &[("csrf_token", &csrf), ("token", &token)]).await;
        assert_eq!(status, 200, "{page}");
        assert!(headers.get("set-cookie").is_none(), "{headers:?}");
        assert!(page.contains("Switch account?"), "{page}");
        let (_, _, home) = victim.get("/").await;
        assert!(home.contains("bob@example.com"), "{home}");
        assert!(!home.contains("mallory@example.com"), "{home}");

        // Confirmed, it switches.
        let csrf = field(&page, "csrf_token").unwrap();
        let (status, _, _) = victim.post("/login/magic/verify", &[("csrf_token", &csrf), ("token", &token), ("switch", "yes")]).await;
        assert_eq!(status, 303);
        let (_, _, home) = victim.get("/").await;
        assert!(home.contains("mallory@example.com"), "{home}");
    }

    async fn a_link_for_the_signed_in_account_signs_in_without_asking(backend) {
        let (app, sink) = app_with_mail(backend, &[]).await;
        add_user(&app, "ada@example.com").await;
        let mut v = Visitor::new(&app);
        request_link(&mut v, "ada@example.com", None).await;
        let (first, _) = link_and_code(&sink.wait_for("ada@example.com").await);
        assert_eq!(confirm(&mut v, &first).await.0, 303);
        // Asked for elsewhere (this browser, signed in, is sent past the sign-in form).
        request_link(&mut Visitor::new(&app), "ada@example.com", None).await;
        let mails = sink.wait_for_count("ada@example.com", 2).await;
        let (second, _) = link_and_code(&mails[1]);

        let (_, _, page) = v.get(&second).await;
        assert!(page.contains("Confirm sign-in"), "{page}");
        assert!(!page.contains("You are signed in as"), "{page}");
        assert_eq!(confirm(&mut v, &second).await.0, 303);
    }

    async fn two_concurrent_uses_of_a_link_sign_in_exactly_once(backend) {
        let (app, sink) = app_with_mail(backend, &[]).await;
        add_user(&app, "ada@example.com").await;
        let mut v = Visitor::new(&app);
        request_link(&mut v, "ada@example.com", None).await;
        let (link, _) = link_and_code(&sink.wait_for("ada@example.com").await);
        let mut a = Visitor::new(&app);
        let mut b = Visitor::new(&app);
        let (_, _, page_a) = a.get(&link).await;
        let (_, _, page_b) = b.get(&link).await;
        let token = field(&page_a, "token").unwrap();
        let (csrf_a, csrf_b) = (field(&page_a, "csrf_token").unwrap(), field(&page_b, "csrf_token").unwrap());
        let form_a = [("csrf_token", csrf_a.as_str()), ("token", token.as_str())];
        let form_b = [("csrf_token", csrf_b.as_str()), ("token", token.as_str())];
        let (ra, rb) = tokio::join!(
            a.post("/login/magic/verify", &form_a),
            b.post("/login/magic/verify", &form_b),
        );
        let mut statuses = [ra.0, rb.0];
        statuses.sort_unstable();
        assert_eq!(statuses, [303, 400]);
    }

    async fn the_one_time_code_signs_in_and_five_wrong_codes_end_the_link(backend) {
        let (app, sink) = app_with_mail(backend, &[]).await;
        add_user(&app, "ada@example.com").await;
        add_user(&app, "bo@example.com").await;
        let mut v = Visitor::new(&app);
        request_link(&mut v, "ada@example.com", None).await;
        let (_, code) = link_and_code(&sink.wait_for("ada@example.com").await);
        let csrf = v.csrf_from("/login").await;
        let (status, _, _) = v.post("/login/code", &[("csrf_token", &csrf), ("email", "ada@example.com"), ("code", &code.to_lowercase())]).await;
        assert_eq!(status, 303, "codes are case-insensitive");

        let mut w = Visitor::new(&app);
        request_link(&mut w, "bo@example.com", None).await;
        let (_, code) = link_and_code(&sink.wait_for("bo@example.com").await);
        let csrf = w.csrf_from("/login").await;
        for _ in 0..5 {
            // Past the growing delay between failed sign-ins of one address.
            app.clock.advance(std::time::Duration::from_secs(60));
            let (status, _, page) = w.post("/login/code", &[("csrf_token", &csrf), ("email", "bo@example.com"), ("code", "00000000")]).await;
            assert_eq!(status, 400);
            assert!(page.contains("not right"), "{page}");
        }
        app.clock.advance(std::time::Duration::from_secs(60));
        let (status, _, _) = w.post("/login/code", &[("csrf_token", &csrf), ("email", "bo@example.com"), ("code", &code)]).await;
        assert_eq!(status, 400, "the right code no longer works after five wrong ones");
        let failed = audit::records_after(&app.db, 0, 100).await.unwrap().into_iter().filter(|r| r.action == "auth.code_failed").count();
        assert_eq!(failed, 6);
    }

    async fn next_is_followed_only_to_same_origin_paths(backend) {
        let (app, sink) = app_with_mail(backend, &[("GATEHOUSE_MAGIC_LINK_RATE_LIMIT", "off")]).await;
        add_user(&app, "ada@example.com").await;
        for (next, expected) in [("/account", "/account"), ("//evil.example/", "/"), ("https://evil.example/", "/")] {
            let mut v = Visitor::new(&app);
            request_link(&mut v, "ada@example.com", Some(next)).await;
            let mail = sink.wait_for_containing("ada@example.com", "/login/magic/verify?token=").await;
            let (link, _) = link_and_code(&mail);
            let (status, headers, _) = confirm(&mut v, &link).await;
            assert_eq!(status, 303);
            assert_eq!(headers["location"], expected, "next={next}");
            sink.clear();
        }
    }

    async fn every_sign_in_gets_a_new_session(backend) {
        let (app, sink) = app_with_mail(backend, &[]).await;
        add_user(&app, "ada@example.com").await;
        let mut v = Visitor::new(&app);
        // The attacker plants a cookie value before the victim signs in (fixation).
        v.cookies.insert("gatehouse".into(), "A".repeat(43));
        request_link(&mut v, "ada@example.com", None).await;
        let (link, _) = link_and_code(&sink.wait_for("ada@example.com").await);
        confirm(&mut v, &link).await;
        let session = v.cookies.get("gatehouse").cloned().unwrap();
        assert_ne!(session, "A".repeat(43));
        let (_, _, page) = v.get("/").await;
        assert!(page.contains("ada@example.com"));
    }

    async fn a_disabled_user_is_signed_out_at_once_and_cannot_use_a_pending_link(backend) {
        let (app, sink) = app_with_mail(backend, &[("GATEHOUSE_MAGIC_LINK_RATE_LIMIT", "off")]).await;
        add_user(&app, "ada@example.com").await;
        add_user(&app, "admin@example.com").await;
        let mut v = Visitor::new(&app);
        request_link(&mut v, "ada@example.com", None).await;
        let (link, _) = link_and_code(&sink.wait_for("ada@example.com").await);
        confirm(&mut v, &link).await;
        sink.clear();
        request_link(&mut Visitor::new(&app), "ada@example.com", None).await;
        let (pending, _) = link_and_code(&sink.wait_for("ada@example.com").await);
        users::set_role_and_status(&app.db, &Email::parse("ada@example.com").unwrap(), None, Some(gatehouse::identity::UserStatus::Disabled), &AuditContext::cli()).await.unwrap();
        let (_, _, page) = v.get("/").await;
        assert!(!page.contains("ada@example.com"), "the session stopped working");
        let mut w = Visitor::new(&app);
        let (status, _, _) = confirm(&mut w, &pending).await;
        assert_eq!(status, 400);
    }

    async fn a_signed_in_account_is_rate_limited_across_addresses(backend) {
        let (app, sink) = app_with_mail(backend, &[("GATEHOUSE_ACCOUNT_RATE_LIMIT", "4/min")]).await;
        add_user(&app, "ada@example.com").await;
        let mut v = Visitor::new(&app);
        request_link(&mut v, "ada@example.com", None).await;
        let (link, _) = link_and_code(&sink.wait_for("ada@example.com").await);
        confirm(&mut v, &link).await;
        let mut statuses = Vec::new();
        for _ in 0..6 {
            statuses.push(v.get("/account").await.0);
        }
        assert_eq!(&statuses[..4], &[200; 4], "{statuses:?}");
        assert_eq!(statuses[4], 429, "{statuses:?}");
        let (status, _, _) = Visitor::new(&app).get("/login").await;
        assert_eq!(status, 200, "anonymous visitors from the same address are not affected");
    }

    async fn a_role_change_ends_the_users_sessions(backend) {
        let (app, sink) = app_with_mail(backend, &[]).await;
        add_user(&app, "ada@example.com").await;
        let mut v = Visitor::new(&app);
        request_link(&mut v, "ada@example.com", None).await;
        let (link, _) = link_and_code(&sink.wait_for("ada@example.com").await);
        confirm(&mut v, &link).await;
        assert!(v.get("/").await.2.contains("ada@example.com"));
        let out = crate::support::run_cli(
            &app.cli_env(),
            &["user", "set-role", "--email", "ada@example.com", "--role", "manager"],
        );
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert!(String::from_utf8_lossy(&out.stdout).contains("ended 1 session"));
        let (_, _, page) = v.get("/").await;
        assert!(!page.contains("ada@example.com"), "the session from before the change is gone");
    }

    async fn a_request_with_a_bearer_credential_is_never_authenticated_by_its_cookie(backend) {
        let (app, sink) = app_with_mail(backend, &[]).await;
        add_user(&app, "ada@example.com").await;
        let mut v = Visitor::new(&app);
        request_link(&mut v, "ada@example.com", None).await;
        let (link, _) = link_and_code(&sink.wait_for("ada@example.com").await);
        confirm(&mut v, &link).await;
        let cookie = format!("gatehouse={}", v.cookies["gatehouse"]);
        let with_cookie = |bearer: bool| {
            let mut req = app.request(reqwest::Method::GET, "/").header("cookie", cookie.clone());
            if bearer {
                req = req.header("authorization", "Bearer some-api-token");
            }
            req
        };
        let page = with_cookie(false).send().await.unwrap().text().await.unwrap();
        assert!(page.contains("ada@example.com"), "the cookie alone signs in");
        let page = with_cookie(true).send().await.unwrap().text().await.unwrap();
        assert!(!page.contains("ada@example.com"), "with a bearer credential the cookie is ignored");
    }

    async fn session_cookies_are_host_prefixed_and_secure_in_production(backend) {
        let (app, sink) = app_with_mail(
            backend,
            &[
                ("GATEHOUSE_ENV", "production"),
                ("GATEHOUSE_PUBLIC_URL", "https://gate.example"),
                // The sink is on this host, so plain SMTP is allowed even in production.
                ("SMTP_HOST", "127.0.0.1"),
            ],
        )
        .await;
        add_user(&app, "ada@example.com").await;
        let mut v = Visitor::new(&app);
        request_link(&mut v, "ada@example.com", None).await;
        assert!(v.cookies.contains_key("__Host-gatehouse-csrf"));
        let mail = sink.wait_for("ada@example.com").await;
        assert!(mail.data.contains("https://gate.example/login/magic/verify?token="), "links use the public URL");
        let (link, _) = link_and_code(&mail);
        let (status, headers, _) = confirm(&mut v, &link).await;
        assert_eq!(status, 303);
        let cookie = headers
            .get_all("set-cookie")
            .iter()
            .map(|c| c.to_str().unwrap().to_owned())
            .find(|c| c.starts_with("__Host-gatehouse="))
            .expect("a __Host- session cookie");
        for attribute in ["Secure", "HttpOnly", "SameSite=Lax", "Path=/"] {
            assert!(cookie.contains(attribute), "{cookie}");
        }
        assert!(!cookie.contains("Domain="), "{cookie}");
    }

    async fn dead_sign_in_links_are_purged_after_a_day(backend) {
        let app = spawn_app_with(backend, &[]).await;
        let keys = gatehouse::keys::Keys::load(&app.db, &secrecy::SecretString::from(crate::support::GOOD_KEY), None, gatehouse::store::now()).await.unwrap();
        let email = Email::parse("ada@example.com").unwrap();
        let now = gatehouse::store::now();
        let old = gatehouse::identity::magic_links::issue(&app.db, &keys, now - time::Duration::days(2), &email, None, gatehouse::identity::magic_links::DEFAULT_LINK_LIFETIME).await.unwrap();
        let fresh = gatehouse::identity::magic_links::issue(&app.db, &keys, now, &email, None, gatehouse::identity::magic_links::DEFAULT_LINK_LIFETIME).await.unwrap();
        // The app's own housekeeping may get there first: either way, only the live link remains.
        gatehouse::identity::magic_links::purge_expired(&app.db, now).await.unwrap();
        let rows: i64 = app.db.query("SELECT COUNT(*) FROM magic_links").fetch_one().await.unwrap().get(0).unwrap();
        assert_eq!(rows, 1, "the two-day-old link is gone");
        let use_it = |t: &secrecy::SecretString| gatehouse::identity::magic_links::expose(t).to_owned();
        assert!(gatehouse::identity::magic_links::consume_token(&app.db, &keys, now, &use_it(&fresh.token)).await.unwrap().is_some(), "a live link stays");
        drop(old);
    }

    async fn sign_in_forms_refuse_missing_tokens_and_cross_site_posts(backend) {
        let (app, _sink) = app_with_mail(backend, &[]).await;
        let mut v = Visitor::new(&app);
        let csrf = v.csrf_from("/login").await;
        let (status, _, _) = v.post("/login/magic", &[("email", "a@example.com")]).await;
        assert_eq!(status, 403, "no token");
        let cross = app
            .request(reqwest::Method::POST, "/login/magic")
            .header("origin", "https://evil.example")
            .header("cookie", format!("gatehouse-csrf={}", v.cookies["gatehouse-csrf"]))
            .form(&[("csrf_token", csrf.as_str()), ("email", "a@example.com")])
            .send()
            .await
            .unwrap();
        assert_eq!(cross.status(), 403, "cross-site post");
        let (status, _, _) = v.post("/login/magic", &[("csrf_token", &csrf), ("email", "a@example.com")]).await;
        assert_eq!(status, 200, "the same form with its token passes");
    }

    async fn sign_in_attempts_are_rate_limited_per_ip(backend) {
        let (app, _sink) = app_with_mail(backend, &[("GATEHOUSE_SIGNIN_RATE_LIMIT", "3/min")]).await;
        let mut v = Visitor::new(&app);
        let csrf = v.csrf_from("/login").await;
        for _ in 0..3 {
            let (status, headers, _) = v.post("/login/magic", &[("csrf_token", &csrf), ("email", "a@example.com")]).await;
            assert_eq!(status, 200);
            assert!(headers.contains_key("ratelimit-remaining"));
        }
        let (status, headers, page) = v.post("/login/magic", &[("csrf_token", &csrf), ("email", "a@example.com")]).await;
        assert_eq!(status, 429);
        assert!(headers.contains_key("retry-after"));
        assert!(page.contains("Too Many Requests"), "{page}");
        assert_eq!(app.get("/healthz").await.status(), 200, "health checks are never limited");
    }

    async fn sign_in_attempts_are_rate_limited_per_address(backend) {
        let (app, _sink) = app_with_mail(backend, &[("GATEHOUSE_SIGNIN_EMAIL_RATE_LIMIT", "2/min")]).await;
        let mut v = Visitor::new(&app);
        let csrf = v.csrf_from("/login").await;
        let attempt = |email: &'static str| [("csrf_token", csrf.clone()), ("email", email.to_owned()), ("code", "00000000".to_owned())];
        for _ in 0..2 {
            // Past the throttle's delay (its clock is the app's; the rate limit's is real time).
            app.clock.advance(std::time::Duration::from_secs(60));
            let form = attempt("ada@example.com");
            let fields: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
            assert_eq!(v.post("/login/code", &fields).await.0, 400);
        }
        app.clock.advance(std::time::Duration::from_secs(60));
        let form = attempt("ada@example.com");
        let fields: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let (status, headers, _) = v.post("/login/code", &fields).await;
        assert_eq!(status, 429, "a third guess for the same address");
        assert!(headers.contains_key("retry-after"));
        let form = attempt("bo@example.com");
        let fields: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
        assert_eq!(v.post("/login/code", &fields).await.0, 400, "other addresses are not affected");
    }

    async fn at_most_three_sign_in_mails_per_address(backend) {
        let (app, sink) = app_with_mail(backend, &[]).await;
        add_user(&app, "ada@example.com").await;
        let mut v = Visitor::new(&app);
        let mut pages = Vec::new();
        for _ in 0..3 {
            let (status, page) = request_link(&mut v, "ada@example.com", None).await;
            assert_eq!(status, 200);
            pages.push(normalized(&page));
        }
        sink.wait_for_count("ada@example.com", 3).await;
        // Over budget the answer is the same page, and nothing is queued: the decision is made
        // before the response, so no mail can still be on its way.
        let (status, page) = request_link(&mut v, "ada@example.com", None).await;
        assert_eq!(status, 200);
        assert_eq!(normalized(&page), pages[0]);
        assert_eq!(sink.messages_to("ada@example.com").len(), 3);
    }
}

#[tokio::test]
async fn sign_in_works_with_sessions_and_rate_limits_in_redis() {
    let Some(redis) =
        crate::support::redis_url("signin::sign_in_works_with_sessions_and_rate_limits_in_redis")
    else {
        return;
    };
    let (app, sink) = app_with_mail(
        Backend::Sqlite,
        &[
            ("GATEHOUSE_REDIS_URL", &redis),
            ("GATEHOUSE_SIGNIN_RATE_LIMIT", "5/min"),
        ],
    )
    .await;
    add_user(&app, "ada@example.com").await;
    let mut v = Visitor::new(&app);
    request_link(&mut v, "ada@example.com", None).await;
    let (link, _) = link_and_code(&sink.wait_for("ada@example.com").await);
    let (status, _, _) = confirm(&mut v, &link).await;
    assert_eq!(status, 303);
    let (_, _, page) = v.get("/").await;
    assert!(page.contains("ada@example.com"), "{page}");
    let (_, headers, _) = v.get("/account").await;
    assert!(headers.contains_key("ratelimit-remaining"));
    // The session lives in Redis, not in the database.
    let rows: i64 = app
        .db
        .query("SELECT COUNT(*) FROM sessions")
        .fetch_one()
        .await
        .unwrap()
        .get(0)
        .unwrap();
    assert_eq!(rows, 0);
}

#[tokio::test]
async fn two_instances_sharing_one_redis_share_one_sign_in_budget() {
    let Some(redis) = crate::support::redis_url(
        "signin::two_instances_sharing_one_redis_share_one_sign_in_budget",
    ) else {
        return;
    };
    let prefix = format!("gh-test:{}:", uuid::Uuid::new_v4().simple());
    let settings = [
        ("GATEHOUSE_REDIS_URL", redis.as_str()),
        ("GATEHOUSE_REDIS_PREFIX", prefix.as_str()),
        ("GATEHOUSE_SIGNIN_RATE_LIMIT", "3/min"),
    ];
    let (one, _sink_one) = app_with_mail(Backend::Sqlite, &settings).await;
    let (two, _sink_two) = app_with_mail(Backend::Sqlite, &settings).await;
    let mut on_one = Visitor::new(&one);
    let mut on_two = Visitor::new(&two);
    let csrf_one = on_one.csrf_from("/login").await;
    let csrf_two = on_two.csrf_from("/login").await;
    let form_one = [
        ("csrf_token", csrf_one.as_str()),
        ("email", "a@example.com"),
    ];
    let form_two = [
        ("csrf_token", csrf_two.as_str()),
        ("email", "a@example.com"),
    ];
    assert_eq!(on_one.post("/login/magic", &form_one).await.0, 200);
    assert_eq!(on_two.post("/login/magic", &form_two).await.0, 200);
    assert_eq!(on_one.post("/login/magic", &form_one).await.0, 200);
    assert_eq!(
        on_two.post("/login/magic", &form_two).await.0,
        429,
        "the fourth attempt from one IP is refused, whichever instance gets it"
    );
}
