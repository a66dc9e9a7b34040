//! A first start: the one-time setup link a start with no users logs, the `/setup` page it
//! opens, and the sign-in mail `GATEHOUSE_ADMIN_EMAIL` gets.

use std::time::Duration;

use crate::on_every_backend;
use crate::support::smtp_sink::ReceivedMail;
use crate::support::visitor::{Visitor, field};
use crate::support::{
    TestApp, add_user, captured_log_text, captured_log_text_since, captured_logs, log_mark,
    spawn_app_with_mail,
};

const PASSWORD: &str = "Quiet-Lantern-Orbit-42";

/// The path and query of the setup link `app`'s start logged: the last one logged for its
/// address, since an earlier app on the same port may have logged one too.
pub(crate) fn logged_setup_link(app: &TestApp) -> String {
    let marker = format!("{}/setup?token=", app.address);
    let logs = captured_log_text();
    let start = logs
        .rfind(&marker)
        .unwrap_or_else(|| panic!("no setup link for {} in the log", app.address));
    let from = start + app.address.len();
    logs[from..from + "/setup?token=".len() + 43].to_owned()
}

/// Opens the setup link and submits the form with `fields` (the token and CSRF token added).
async fn submit_setup(
    v: &mut Visitor<'_>,
    link: &str,
    fields: &[(&str, &str)],
) -> (u16, reqwest::header::HeaderMap, String) {
    let (status, headers, page) = v.get(link).await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(headers["referrer-policy"], "same-origin");
    assert_eq!(headers["cache-control"], "no-store");
    let csrf = field(&page, "csrf_token").expect("a CSRF token");
    let token = field(&page, "token").expect("the token in the form");
    let mut all = vec![("csrf_token", csrf.as_str()), ("token", token.as_str())];
    all.extend_from_slice(fields);
    v.post("/setup", &all).await
}

fn admin_with_password(email: &str) -> [(&str, &str); 4] {
    [
        ("email", email),
        ("method", "password"),
        ("password", PASSWORD),
        ("confirm", PASSWORD),
    ]
}

/// The sign-in link's path and query in a mail.
fn sign_in_link(mail: &ReceivedMail) -> String {
    let marker = "/login/magic/verify?token=";
    let start = mail.data.find(marker).expect("a link in the mail");
    mail.data[start..start + marker.len() + 43].to_owned()
}

on_every_backend! {
    async fn a_start_without_users_logs_a_setup_link_that_makes_a_signed_in_admin(backend) {
        let (app, _sink) = spawn_app_with_mail(backend, &[]).await;
        let link = logged_setup_link(&app);
        let line = captured_logs()
            .into_iter()
            .find(|l| l["event"] == "first_admin_setup" && l["message"].as_str().is_some_and(|m| m.contains(&app.address)))
            .expect("one first_admin_setup line");
        assert_eq!(line["level"], "WARN");

        let mut v = Visitor::new(&app);
        let (status, headers, page) = submit_setup(&mut v, &link, &admin_with_password("Root@Example.com")).await;
        assert_eq!(status, 303, "{page}");
        assert_eq!(headers["location"], "/");
        let (status, _, page) = v.get("/").await;
        assert_eq!(status, 200);
        assert!(page.contains("root@example.com") && page.contains("(admin)"), "{page}");

        // The password works for a later sign-in too.
        let mut later = Visitor::new(&app);
        let csrf = later.csrf_from("/login").await;
        let (status, headers, page) = later
            .post("/login/password", &[("csrf_token", &csrf), ("email", "root@example.com"), ("password", PASSWORD)])
            .await;
        assert_eq!(status, 303, "{page}");
        assert_eq!(headers["location"], "/");

        let records = gatehouse::audit::records_after(&app.db, 0, 100).await.unwrap();
        let created = records.iter().find(|r| r.action == "user.first_admin").expect("the creation is audited");
        let changes: serde_json::Value = serde_json::from_str(&created.changes).unwrap();
        assert_eq!(changes["role"], "admin");
        assert_eq!(changes["password"], "set");
    }

    async fn a_setup_link_works_once(backend) {
        let (app, _sink) = spawn_app_with_mail(backend, &[]).await;
        let link = logged_setup_link(&app);
        let mut first = Visitor::new(&app);
        let mut second = Visitor::new(&app);
        // Both open the page while it is still open; only the first submission creates an admin.
        let (status, _, page) = second.get(&link).await;
        assert_eq!(status, 200, "{page}");
        let csrf = field(&page, "csrf_token").unwrap();
        let (status, _, _) = submit_setup(&mut first, &link, &admin_with_password("root@example.com")).await;
        assert_eq!(status, 303);

        let token = link.rsplit('=').next().unwrap();
        let (status, _, page) = second
            .post("/setup", &[("csrf_token", &csrf), ("token", token), ("email", "other@example.com"), ("method", "password"), ("password", PASSWORD), ("confirm", PASSWORD)])
            .await;
        assert_eq!(status, 410, "{page}");
        assert!(page.contains("setup is over"), "{page}");
        let (status, _, _) = second.get(&link).await;
        assert_eq!(status, 410);
        let other = gatehouse::identity::users::find_by_email(&app.db, &gatehouse::identity::Email::parse("other@example.com").unwrap()).await.unwrap();
        assert!(other.is_none(), "no second admin");
    }

    async fn a_setup_link_expires_after_ten_minutes(backend) {
        let (app, _sink) = spawn_app_with_mail(backend, &[]).await;
        let link = logged_setup_link(&app);
        let mut v = Visitor::new(&app);
        let (status, _, page) = v.get(&link).await;
        assert_eq!(status, 200, "{page}");
        let csrf = field(&page, "csrf_token").unwrap();
        let token = field(&page, "token").unwrap();

        app.clock.advance(Duration::from_secs(10 * 60));
        let (status, _, page) = v
            .post("/setup", &[("csrf_token", &csrf), ("token", &token), ("email", "root@example.com"), ("method", "password"), ("password", PASSWORD), ("confirm", PASSWORD)])
            .await;
        assert_eq!(status, 400, "{page}");
        assert!(page.contains("expired or was already used"), "{page}");
        let (status, _, _) = v.get(&link).await;
        assert_eq!(status, 400);
        let root = gatehouse::identity::users::find_by_email(&app.db, &gatehouse::identity::Email::parse("root@example.com").unwrap()).await.unwrap();
        assert!(root.is_none());
    }

    async fn the_setup_page_refuses_once_a_user_exists(backend) {
        let (app, _sink) = spawn_app_with_mail(backend, &[]).await;
        let link = logged_setup_link(&app);
        let mut v = Visitor::new(&app);
        let (status, _, page) = v.get(&link).await;
        assert_eq!(status, 200, "{page}");
        let csrf = field(&page, "csrf_token").unwrap();
        let token = field(&page, "token").unwrap();

        add_user(&app, "someone@example.com").await;
        let (status, _, page) = v.get(&link).await;
        assert_eq!(status, 410);
        assert!(page.contains("setup is over"), "{page}");
        assert!(!page.contains("name=\"password\""), "no form: {page}");
        let (status, _, _) = v
            .post("/setup", &[("csrf_token", &csrf), ("token", &token), ("email", "root@example.com"), ("method", "password"), ("password", PASSWORD), ("confirm", PASSWORD)])
            .await;
        assert_eq!(status, 410);
    }

    async fn a_weak_or_mistyped_password_uses_nothing_up(backend) {
        let (app, _sink) = spawn_app_with_mail(backend, &[]).await;
        let link = logged_setup_link(&app);
        let mut v = Visitor::new(&app);
        let (status, _, page) = submit_setup(&mut v, &link, &[("email", "root@example.com"), ("method", "password"), ("password", "short"), ("confirm", "short")]).await;
        assert_eq!(status, 422, "{page}");
        assert!(page.contains("use at least 12 characters"), "{page}");
        let (status, _, page) = submit_setup(&mut v, &link, &[("email", "root@example.com"), ("method", "password"), ("password", PASSWORD), ("confirm", "Quiet-Lantern-Orbit-43")]).await;
        assert_eq!(status, 400, "{page}");
        assert!(page.contains("not the same"), "{page}");
        let (status, _, page) = submit_setup(&mut v, &link, &admin_with_password("root@example.com")).await;
        assert_eq!(status, 303, "the link still works: {page}");
    }

    async fn the_setup_page_can_mail_the_admin_a_sign_in_link(backend) {
        let (app, sink) = spawn_app_with_mail(backend, &[]).await;
        let link = logged_setup_link(&app);
        let mut v = Visitor::new(&app);
        let (status, _, page) = submit_setup(&mut v, &link, &[("email", "root@example.com"), ("method", "mail")]).await;
        assert_eq!(status, 200, "{page}");
        assert!(page.contains("is created"), "{page}");

        let mail = sink.wait_for("root@example.com").await;
        assert!(mail.data.contains("10 minutes"), "{}", mail.data);
        let signed_in = sign_in_with(&app, &sign_in_link(&mail)).await;
        assert!(signed_in.contains("root@example.com") && signed_in.contains("(admin)"), "{signed_in}");
    }

    async fn gatehouse_admin_email_gets_a_sign_in_mail_that_signs_the_admin_in(backend) {
        let mark = log_mark();
        let (app, sink) = spawn_app_with_mail(backend, &[("GATEHOUSE_ADMIN_EMAIL", "Boss@Example.com")]).await;
        let mail = sink.wait_for("boss@example.com").await;
        assert!(mail.data.contains("10 minutes"), "{}", mail.data);
        assert!(
            !captured_log_text_since(mark).contains(&format!("{}/setup?token=", app.address)),
            "no setup link when GATEHOUSE_ADMIN_EMAIL names the admin"
        );
        let signed_in = sign_in_with(&app, &sign_in_link(&mail)).await;
        assert!(signed_in.contains("boss@example.com") && signed_in.contains("(admin)"), "{signed_in}");
    }
}

/// Opens a mailed sign-in link in a new visitor, confirms, and returns the dashboard.
async fn sign_in_with(app: &TestApp, link: &str) -> String {
    let mut v = Visitor::new(app);
    let (status, _, page) = v.get(link).await;
    assert_eq!(status, 200, "{page}");
    let csrf = field(&page, "csrf_token").unwrap();
    let token = field(&page, "token").unwrap();
    let (status, headers, page) = v
        .post(
            "/login/magic/verify",
            &[("csrf_token", &csrf), ("token", &token)],
        )
        .await;
    assert_eq!(status, 303, "{page}");
    assert_eq!(headers["location"], "/");
    let (status, _, page) = v.get("/").await;
    assert_eq!(status, 200);
    page
}

/// The whole first start in a real browser: the logged link, the setup page, the dashboard.
#[tokio::test]
async fn a_newcomer_becomes_the_signed_in_admin_in_a_real_browser() {
    let test = "first_start::a_newcomer_becomes_the_signed_in_admin_in_a_real_browser";
    let Some(browser) = crate::support::browser::Browser::start(test).await else {
        return;
    };
    let app = crate::support::spawn_app(crate::support::Backend::Sqlite).await;
    let link = logged_setup_link(&app);

    browser
        .client
        .goto(&format!("{}{link}", app.address))
        .await
        .unwrap();
    browser.expect_heading("Create the first admin").await;
    browser.screenshot("01-setup").await;
    browser.fill("email", "root@example.com").await;
    browser.fill("password", PASSWORD).await;
    browser.fill("confirm", PASSWORD).await;
    browser
        .click("form[action='/setup'] button[type=submit]")
        .await;
    browser.expect_heading("Welcome").await;
    browser.screenshot("02-signed-in").await;
    let lead = browser.text_of("p.lead").await;
    assert!(lead.contains("root@example.com (admin)"), "{lead}");

    let problems = browser.problems();
    assert!(
        problems.is_empty(),
        "console errors or CSP violations:\n{}",
        problems.join("\n")
    );
}

on_every_backend! {
    async fn production_prints_no_setup_link_and_names_gatehouse_admin_email(backend) {
        let public_url = format!("https://gate-{}.example", uuid::Uuid::new_v4().simple());
        let (app, _sink) = spawn_app_with_mail(
            backend,
            &[("GATEHOUSE_ENV", "production"), ("GATEHOUSE_PUBLIC_URL", &public_url)],
        )
        .await;
        assert!(!captured_log_text().contains(&format!("{public_url}/setup")), "no setup link in production");
        assert!(
            captured_logs().iter().any(|l| l["event"] == "first_admin_needed"
                && l["message"].as_str().is_some_and(|m| m.contains("GATEHOUSE_ADMIN_EMAIL"))),
            "the log says production needs GATEHOUSE_ADMIN_EMAIL"
        );
        let tokens: i64 = app.db.query("SELECT COUNT(*) FROM setup_tokens").fetch_one().await.unwrap().get(0).unwrap();
        assert_eq!(tokens, 0, "no setup token was issued");
    }
}
