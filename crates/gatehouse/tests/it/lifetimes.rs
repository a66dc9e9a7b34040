//! Lifetimes on the injected clock, as a user sees them: sign-in links and their one-time codes
//! (10 minutes), reset links (1 hour), sessions (30 minutes idle, 12 hours in all), each
//! working one second before its end and refused one second after; and ending other sessions,
//! which needs a sign-in from the last ten minutes.

use std::time::Duration;

use crate::on_every_backend;
use crate::support::smtp_sink::{ReceivedMail, SmtpSink};
use crate::support::visitor::{Visitor, field};
use crate::support::{Backend, TestApp, add_user};

const PASSWORD: &str = "Vermilion-Otter-42";
const SECOND: Duration = Duration::from_secs(1);
const MINUTE: Duration = Duration::from_secs(60);

/// An app whose mail goes to a sink, without the per-address mail budget (tests here ask for
/// several links for one address).
async fn app_with_mail(backend: Backend, extra: &[(&str, &str)]) -> (TestApp, SmtpSink) {
    let mut env = vec![("GATEHOUSE_MAGIC_LINK_RATE_LIMIT", "off")];
    env.extend_from_slice(extra);
    crate::support::spawn_app_with_mail(backend, &env).await
}

/// The `nth` mail to `email` (counting from 1) that carries `marker`: other mails (notices)
/// may come between.
async fn nth_mail_with(sink: &SmtpSink, email: &str, marker: &str, nth: usize) -> ReceivedMail {
    for count in 1.. {
        let mut with: Vec<ReceivedMail> = sink
            .wait_for_count(email, count)
            .await
            .into_iter()
            .filter(|m| m.data.contains(marker))
            .collect();
        if with.len() >= nth {
            return with.swap_remove(nth - 1);
        }
    }
    unreachable!("waiting for a mail panics after 10 s")
}

/// The path of the link that starts with `marker` in `mail`.
fn link(mail: &ReceivedMail, marker: &str) -> String {
    let start = mail.data.find(marker).expect("a link in the mail");
    mail.data[start..start + marker.len() + 43].to_owned()
}

/// The one-time code of a sign-in mail.
fn code(mail: &ReceivedMail) -> String {
    let marker = "enter this code on the sign-in page: ";
    let at = mail.data.find(marker).expect("a code in the mail") + marker.len();
    mail.data[at..at + 8].to_owned()
}

/// Asks for a sign-in mail to `email` and returns it (the `nth` to that address) with the page
/// that answered.
async fn sign_in_mail(
    v: &mut Visitor<'_>,
    sink: &SmtpSink,
    email: &str,
    nth: usize,
) -> (ReceivedMail, String) {
    let csrf = v.csrf_from("/login").await;
    let (status, _, page) = v
        .post("/login/magic", &[("csrf_token", &csrf), ("email", email)])
        .await;
    assert_eq!(status, 200, "{page}");
    (
        nth_mail_with(sink, email, "/login/magic/verify?token=", nth).await,
        page,
    )
}

/// Opens a sign-in link and presses its button: the status of the answer (303 signed in).
async fn use_sign_in_link(v: &mut Visitor<'_>, link: &str) -> u16 {
    let (status, _, page) = v.get(link).await;
    let (Some(token), Some(csrf)) = (field(&page, "token"), field(&page, "csrf_token")) else {
        assert!(page.contains("expired or was already used"), "{page}");
        return status;
    };
    v.post(
        "/login/magic/verify",
        &[("csrf_token", &csrf), ("token", &token)],
    )
    .await
    .0
}

async fn use_code(v: &mut Visitor<'_>, email: &str, code: &str) -> u16 {
    let csrf = v.csrf_from("/login").await;
    v.post(
        "/login/code",
        &[("csrf_token", &csrf), ("email", email), ("code", code)],
    )
    .await
    .0
}

/// Asks for a reset mail to `email` and returns it (the `nth`) with the page that answered.
async fn reset_mail(
    v: &mut Visitor<'_>,
    sink: &SmtpSink,
    email: &str,
    nth: usize,
) -> (ReceivedMail, String) {
    let csrf = v.csrf_from("/password/forgot").await;
    let (status, _, page) = v
        .post(
            "/password/forgot",
            &[("csrf_token", &csrf), ("email", email)],
        )
        .await;
    assert_eq!(status, 200, "{page}");
    (
        nth_mail_with(sink, email, "/password/reset?token=", nth).await,
        page,
    )
}

/// Chooses a new password with a reset link: the status and page of the answer.
async fn use_reset_link(v: &mut Visitor<'_>, link: &str, new: &str) -> (u16, String) {
    let (status, _, page) = v.get(link).await;
    let (Some(token), Some(csrf)) = (field(&page, "token"), field(&page, "csrf_token")) else {
        return (status, page);
    };
    let (status, _, page) = v
        .post(
            "/password/reset",
            &[
                ("csrf_token", &csrf),
                ("token", &token),
                ("new", new),
                ("confirm", new),
            ],
        )
        .await;
    (status, page)
}

async fn password_sign_in(v: &mut Visitor<'_>, email: &str, password: &str) -> u16 {
    let csrf = v.csrf_from("/login").await;
    v.post(
        "/login/password",
        &[
            ("csrf_token", &csrf),
            ("email", email),
            ("password", password),
        ],
    )
    .await
    .0
}

/// Whether the visitor's session still opens the account page.
async fn signed_in(v: &mut Visitor<'_>) -> bool {
    let (status, headers, _) = v.get("/account").await;
    match status {
        200 => true,
        303 => {
            assert_eq!(headers["location"], "/login?next=%2Faccount");
            false
        }
        other => panic!("unexpected status {other}"),
    }
}

on_every_backend! {
    async fn a_sign_in_link_works_until_ten_minutes_and_not_a_second_longer(backend) {
        let (app, sink) = app_with_mail(backend, &[]).await;
        add_user(&app, "ada@example.com").await;
        let mut v = Visitor::new(&app);
        let (mail, page) = sign_in_mail(&mut v, &sink, "ada@example.com", 1).await;
        assert!(page.contains("It works once, for 10 minutes."), "{page}");
        assert!(mail.data.contains("it works once, for 10 minutes"), "{}", mail.data);
        app.clock.advance(10 * MINUTE - SECOND);
        assert_eq!(use_sign_in_link(&mut v, &link(&mail, "/login/magic/verify?token=")).await, 303, "one second before its end");
        assert!(signed_in(&mut v).await);

        let mut w = Visitor::new(&app);
        let (mail, _) = sign_in_mail(&mut w, &sink, "ada@example.com", 2).await;
        app.clock.advance(10 * MINUTE + SECOND);
        assert_eq!(use_sign_in_link(&mut w, &link(&mail, "/login/magic/verify?token=")).await, 400, "one second after its end");
        assert!(!signed_in(&mut w).await);
    }

    async fn a_mailed_code_works_until_ten_minutes_and_not_a_second_longer(backend) {
        let (app, sink) = app_with_mail(backend, &[]).await;
        add_user(&app, "ada@example.com").await;
        let mut v = Visitor::new(&app);
        let (mail, _) = sign_in_mail(&mut v, &sink, "ada@example.com", 1).await;
        app.clock.advance(10 * MINUTE - SECOND);
        assert_eq!(use_code(&mut v, "ada@example.com", &code(&mail)).await, 303, "one second before its end");
        assert!(signed_in(&mut v).await);

        let mut w = Visitor::new(&app);
        let (mail, _) = sign_in_mail(&mut w, &sink, "ada@example.com", 2).await;
        app.clock.advance(10 * MINUTE + SECOND);
        assert_eq!(use_code(&mut w, "ada@example.com", &code(&mail)).await, 400, "one second after its end");
        assert!(!signed_in(&mut w).await);
    }

    async fn seed_000s_fifteen_minute_links_are_a_setting_told_on_the_page_and_in_the_mail(backend) {
        let (app, sink) = app_with_mail(backend, &[("GATEHOUSE_SIGN_IN_LINK_LIFETIME", "15m")]).await;
        add_user(&app, "ada@example.com").await;
        let mut v = Visitor::new(&app);
        let (mail, page) = sign_in_mail(&mut v, &sink, "ada@example.com", 1).await;
        assert!(page.contains("It works once, for 15 minutes."), "{page}");
        assert!(mail.data.contains("it works once, for 15 minutes"), "{}", mail.data);
        app.clock.advance(15 * MINUTE - SECOND);
        assert_eq!(use_code(&mut v, "ada@example.com", &code(&mail)).await, 303);

        let mut w = Visitor::new(&app);
        let (mail, _) = sign_in_mail(&mut w, &sink, "ada@example.com", 2).await;
        app.clock.advance(15 * MINUTE + SECOND);
        assert_eq!(use_sign_in_link(&mut w, &link(&mail, "/login/magic/verify?token=")).await, 400);
    }

    async fn a_reset_link_works_until_one_hour_and_not_a_second_longer(backend) {
        let (app, sink) = app_with_mail(backend, &[]).await;
        add_user(&app, "ada@example.com").password(PASSWORD).await;
        let mut v = Visitor::new(&app);
        let (mail, page) = reset_mail(&mut v, &sink, "ada@example.com", 1).await;
        assert!(page.contains("It works once, for 1 hour."), "{page}");
        assert!(mail.data.contains("it works once, for 1 hour"), "{}", mail.data);
        app.clock.advance(60 * MINUTE - SECOND);
        let (status, page) = use_reset_link(&mut v, &link(&mail, "/password/reset?token="), "Cobalt-Heron-77!").await;
        assert_eq!(status, 200, "one second before its end: {page}");
        assert!(page.contains("Your password is reset"), "{page}");

        let (mail, _) = reset_mail(&mut v, &sink, "ada@example.com", 2).await;
        app.clock.advance(60 * MINUTE + SECOND);
        let (status, page) = use_reset_link(&mut v, &link(&mail, "/password/reset?token="), "Another-Heron-88!").await;
        assert_eq!(status, 400, "one second after its end: {page}");
        assert!(page.contains("expired"), "{page}");
        assert_eq!(password_sign_in(&mut Visitor::new(&app), "ada@example.com", "Cobalt-Heron-77!").await, 303, "the password stayed");
    }

    async fn seed_004s_day_long_reset_links_are_a_setting_told_on_the_page_and_in_the_mail(backend) {
        let (app, sink) = app_with_mail(backend, &[("GATEHOUSE_PASSWORD_RESET_LIFETIME", "24h")]).await;
        add_user(&app, "ada@example.com").password(PASSWORD).await;
        let mut v = Visitor::new(&app);
        let (mail, page) = reset_mail(&mut v, &sink, "ada@example.com", 1).await;
        assert!(page.contains("It works once, for 24 hours."), "{page}");
        assert!(mail.data.contains("it works once, for 24 hours"), "{}", mail.data);
        app.clock.advance(24 * 60 * MINUTE - SECOND);
        let (status, page) = use_reset_link(&mut v, &link(&mail, "/password/reset?token="), "Cobalt-Heron-77!").await;
        assert_eq!(status, 200, "{page}");
    }
}

/// Signs in by password in a new visitor.
async fn signed_in_visitor(app: &TestApp) -> Visitor<'_> {
    let mut v = Visitor::new(app);
    assert_eq!(
        password_sign_in(&mut v, "ada@example.com", PASSWORD).await,
        303
    );
    v
}

/// A session idle for 30 minutes less a second works (and is used); idle for 30 minutes and a
/// second, it is gone.
async fn a_session_ends_after_thirty_idle_minutes(app: &TestApp) {
    add_user(app, "ada@example.com").password(PASSWORD).await;
    let mut v = signed_in_visitor(app).await;
    app.clock.advance(30 * MINUTE - SECOND);
    assert!(
        signed_in(&mut v).await,
        "idle one second less than 30 minutes"
    );
    app.clock.advance(30 * MINUTE - SECOND);
    assert!(
        signed_in(&mut v).await,
        "the last request counts, not the sign-in"
    );
    app.clock.advance(30 * MINUTE + SECOND);
    assert!(
        !signed_in(&mut v).await,
        "idle one second more than 30 minutes"
    );
}

/// A session used every 25 minutes works until 12 hours less a second after its sign-in and is
/// gone a second after 12 hours.
async fn an_active_session_ends_twelve_hours_after_sign_in(app: &TestApp) {
    add_user(app, "ada@example.com").password(PASSWORD).await;
    let mut v = signed_in_visitor(app).await;
    for _ in 0..28 {
        app.clock.advance(25 * MINUTE);
        assert!(signed_in(&mut v).await);
    }
    app.clock.advance(20 * MINUTE - SECOND);
    assert!(
        signed_in(&mut v).await,
        "12 hours less a second after sign-in"
    );
    app.clock.advance(2 * SECOND);
    assert!(
        !signed_in(&mut v).await,
        "12 hours and a second after sign-in, however active"
    );
}

on_every_backend! {
    async fn a_session_idle_for_thirty_minutes_ends(backend) {
        let app = crate::support::spawn_unlimited_app(backend, &[]).await;
        a_session_ends_after_thirty_idle_minutes(&app).await;
    }

    async fn an_active_session_ends_twelve_hours_after_its_sign_in(backend) {
        let app = crate::support::spawn_unlimited_app(backend, &[]).await;
        an_active_session_ends_twelve_hours_after_sign_in(&app).await;
    }
}

/// The app with sessions in Redis, or `None` when there is no Redis here.
async fn app_with_redis_sessions(test: &str) -> Option<TestApp> {
    let redis = crate::support::redis_url(test)?;
    Some(
        crate::support::spawn_unlimited_app(Backend::Sqlite, &[("GATEHOUSE_REDIS_URL", &redis)])
            .await,
    )
}

#[tokio::test]
async fn a_session_in_redis_idle_for_thirty_minutes_ends() {
    if let Some(app) =
        app_with_redis_sessions("lifetimes::a_session_in_redis_idle_for_thirty_minutes_ends").await
    {
        a_session_ends_after_thirty_idle_minutes(&app).await;
    }
}

#[tokio::test]
async fn an_active_session_in_redis_ends_twelve_hours_after_its_sign_in() {
    if let Some(app) = app_with_redis_sessions(
        "lifetimes::an_active_session_in_redis_ends_twelve_hours_after_its_sign_in",
    )
    .await
    {
        an_active_session_ends_twelve_hours_after_sign_in(&app).await;
    }
}

/// The session ids in the rows of an account page that are not "this device".
fn other_session_ids(account: &str) -> Vec<String> {
    account
        .split("<tr>")
        .filter(|row| !row.contains("this device"))
        .filter_map(|row| field(row, "id"))
        .collect()
}

on_every_backend! {
    async fn ending_other_sessions_needs_a_sign_in_from_the_last_ten_minutes(backend) {
        let app = crate::support::spawn_unlimited_app(backend, &[]).await;
        add_user(&app, "ada@example.com").password(PASSWORD).await;
        let mut thief = signed_in_visitor(&app).await;
        let mut owner = signed_in_visitor(&app).await;
        let (_, _, page) = thief.get("/account").await;
        let owners = other_session_ids(&page);
        assert_eq!(owners.len(), 1, "{page}");

        app.clock.advance(10 * MINUTE + SECOND);
        assert!(signed_in(&mut owner).await);
        let (status, _, page) = thief.get("/account").await;
        assert_eq!(status, 200);
        assert!(page.contains("sign in again before ending your other sessions"), "{page}");
        assert!(other_session_ids(&page).is_empty(), "no button to end another session: {page}");
        let csrf = field(&page, "csrf_token").unwrap();
        let (status, _, page) = thief.post("/account/sessions/revoke", &[("csrf_token", &csrf), ("id", &owners[0])]).await;
        assert_eq!(status, 403, "{page}");
        assert!(page.contains("sign in again before ending your other sessions"), "{page}");
        let (status, _, page) = thief.post("/account/sessions/revoke-others", &[("csrf_token", &csrf)]).await;
        assert_eq!(status, 403, "{page}");
        assert!(signed_in(&mut owner).await, "a session more than ten minutes old cannot end the others");
        let actions: Vec<String> = gatehouse::audit::records_after(&app.db, 0, 100).await.unwrap().into_iter().map(|r| r.action).collect();
        assert!(!actions.iter().any(|a| a.starts_with("session.revoke")), "{actions:?}");

        // Signing in again, with the password, is what it takes.
        let (status, _, _) = thief.post("/logout", &[("csrf_token", &csrf)]).await;
        assert_eq!(status, 303);
        assert_eq!(password_sign_in(&mut thief, "ada@example.com", PASSWORD).await, 303);
        let csrf = thief.csrf_from("/account").await;
        let (status, _, _) = thief.post("/account/sessions/revoke", &[("csrf_token", &csrf), ("id", &owners[0])]).await;
        assert_eq!(status, 303);
        assert!(!signed_in(&mut owner).await, "ended after a fresh sign-in");

        let mut other = signed_in_visitor(&app).await;
        app.clock.advance(10 * MINUTE - SECOND);
        let (status, _, _) = thief.post("/account/sessions/revoke-others", &[("csrf_token", &csrf)]).await;
        assert_eq!(status, 303, "ten minutes less a second after the sign-in");
        assert!(!signed_in(&mut other).await);
    }

    async fn signing_out_never_needs_a_recent_sign_in(backend) {
        let app = crate::support::spawn_unlimited_app(backend, &[]).await;
        add_user(&app, "ada@example.com").password(PASSWORD).await;
        let mut v = signed_in_visitor(&app).await;
        app.clock.advance(20 * MINUTE);
        let (_, _, page) = v.get("/account").await;
        let csrf = field(&page, "csrf_token").unwrap();
        let this = page.split("<tr>").find(|row| row.contains("this device")).and_then(|row| field(row, "id")).expect("a sign-out button");
        let (status, headers, _) = v.post("/account/sessions/revoke", &[("csrf_token", &csrf), ("id", &this)]).await;
        assert_eq!(status, 303);
        assert_eq!(headers["location"], "/");
        assert!(!signed_in(&mut v).await);
    }
}
