//! The pages in a real browser: headless Chromium driven over WebDriver (ChromeDriver).
//!
//! Skipped, with a printed reason, when `chromium` or `chromedriver` is not installed (or
//! failed, when `GATEHOUSE_TEST_REQUIRE` names `chromium`; `.ci/run` installs both). The tests
//! check Chromium's log for console errors and CSP refusals, after proving, with a deliberate
//! CSP violation, that such messages do show up there.

use std::time::Duration;

use fantoccini::Locator;

use crate::support::browser::Browser;
use crate::support::smtp_sink::SmtpSink;
use crate::support::{Backend, add_user, spawn_app_with, totp_code};

#[tokio::test]
async fn a_user_signs_in_with_a_magic_link_in_a_real_browser() {
    let test = "browser::a_user_signs_in_with_a_magic_link_in_a_real_browser";
    let Some(browser) = Browser::start(test).await else {
        return;
    };
    let sink = SmtpSink::start().await;
    let port = sink.port.to_string();
    let app = spawn_app_with(
        Backend::Sqlite,
        &[
            ("SMTP_HOST", "127.0.0.1"),
            ("SMTP_PORT", &port),
            ("SMTP_TLS", "none"),
            ("GATEHOUSE_METRICS_LISTEN", "127.0.0.1:0"),
        ],
    )
    .await;
    add_user(&app, "ada@example.com").name("Ada").await;
    let b = &browser.client;

    b.goto(&format!("{}/", app.address)).await.unwrap();
    browser.screenshot("01-home").await;
    b.find(Locator::LinkText("Sign in"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    browser.expect_heading("Sign in").await;
    browser.screenshot("02-login").await;

    b.find(Locator::Id("email"))
        .await
        .unwrap()
        .send_keys("ada@example.com")
        .await
        .unwrap();
    b.find(Locator::Css("form.form button[type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    browser.expect_heading("Check your inbox").await;
    browser.screenshot("03-check-inbox").await;

    let mail = sink.wait_for("ada@example.com").await;
    let start = mail
        .data
        .find("/login/magic/verify?token=")
        .expect("a link in the mail");
    let link = &mail.data[start..start + "/login/magic/verify?token=".len() + 43];
    b.goto(&format!("{}{link}", app.address)).await.unwrap();
    browser.expect_heading("Confirm sign-in").await;
    browser.screenshot("04-confirm").await;
    b.find(Locator::Css("form.form button[type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    browser.expect_heading("Welcome, Ada").await;
    browser.screenshot("05-dashboard").await;

    b.find(Locator::LinkText("Account"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    browser.expect_heading("Your account").await;
    let sessions = b
        .find(Locator::Css("table.table tbody"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(sessions.contains("this device"), "{sessions}");
    assert!(sessions.contains("127.0.0.1"), "{sessions}");
    browser.screenshot("06-account").await;

    b.find(Locator::Css("button.link-button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    browser
        .expect_heading("Your team's items and documents, behind a proper gate.")
        .await;
    let signed_out = b.find(Locator::LinkText("Sign in")).await;
    assert!(
        signed_out.is_ok(),
        "after sign-out the page offers to sign in again"
    );
    browser.screenshot("07-signed-out").await;

    let problems = browser.problems();
    assert!(
        problems.is_empty(),
        "console errors or CSP violations:\n{}",
        problems.join("\n")
    );
    let metrics = reqwest::get(format!("http://{}/metrics", app.metrics_addr.unwrap()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("gatehouse_csp_reports_total 0"),
        "{metrics}"
    );

    // Control: an inline script without the nonce must be refused, and the refusal must show up
    // in the log the check above reads (otherwise that check could never fail).
    b.execute(
        "const s = document.createElement('script'); s.textContent = 'window.injected = 1'; document.body.appendChild(s); return null;",
        vec![],
    )
    .await
    .unwrap();
    let injected = b
        .execute("return window.injected === 1;", vec![])
        .await
        .unwrap();
    assert_eq!(
        injected,
        serde_json::Value::Bool(false),
        "the CSP let an inline script run"
    );
    let mut seen = Vec::new();
    for _ in 0..100 {
        seen = browser.problems();
        if !seen.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        seen.iter().any(|l| l.contains("Content Security Policy")),
        "a CSP violation did not reach Chromium's log, so the check above proves nothing: {seen:?}"
    );
}

#[tokio::test]
async fn a_user_sets_up_two_step_sign_in_in_a_real_browser() {
    let test = "browser::a_user_sets_up_two_step_sign_in_in_a_real_browser";
    let Some(browser) = Browser::start(test).await else {
        return;
    };
    let app = spawn_app_with(Backend::Sqlite, &[("GATEHOUSE_SIGNIN_RATE_LIMIT", "off")]).await;
    let password = "Vermilion-Otter-42";
    add_user(&app, "ada@example.com")
        .name("Ada")
        .password(password)
        .await;
    let b = &browser.client;

    browser
        .password_sign_in(&app, "ada@example.com", password)
        .await;
    browser.expect_heading("Welcome, Ada").await;
    b.goto(&format!("{}/account/mfa", app.address))
        .await
        .unwrap();
    browser.expect_heading("Two-step sign-in").await;
    browser.screenshot("01-mfa-off").await;
    browser
        .click("form[action='/account/mfa/setup'] button")
        .await;
    browser.expect_heading("Two-step sign-in").await;
    let mut setup_key = String::new();
    for _ in 0..200 {
        if let Ok(key) = b.find(Locator::Id("setup-key")).await {
            setup_key = key.text().await.unwrap();
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!setup_key.is_empty(), "the page shows a setup key");
    let qr = b.find(Locator::Css(".qr svg")).await.unwrap();
    assert!(
        qr.rectangle().await.unwrap().2 >= 150.0,
        "the QR code is drawn"
    );
    browser.screenshot("02-scan-the-code").await;
    browser.fill("code", &totp_code(&app, &setup_key, 0)).await;
    browser
        .click("form[action='/account/mfa/confirm'] button")
        .await;
    let mut codes = Vec::new();
    for _ in 0..200 {
        if let Ok(found) = b.find_all(Locator::Css("ul.codes code")).await {
            if !found.is_empty() {
                for c in found {
                    codes.push(c.text().await.unwrap());
                }
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(codes.len(), 10, "ten recovery codes are shown once");
    browser.screenshot("03-recovery-codes").await;

    // Sign out, then in again: the password leads to the second step.
    browser.click("button.link-button").await;
    browser
        .expect_heading("Your team's items and documents, behind a proper gate.")
        .await;
    browser
        .password_sign_in(&app, "ada@example.com", password)
        .await;
    browser.expect_heading("Two-step sign-in").await;
    browser.screenshot("04-second-step").await;
    app.clock.advance(Duration::from_secs(30));
    browser.fill("code", &totp_code(&app, &setup_key, 0)).await;
    browser.click("form[action='/login/mfa'] button").await;
    browser.expect_heading("Welcome, Ada").await;
    browser.screenshot("05-signed-in-with-totp").await;

    // And with a recovery code instead of the app.
    browser.click("button.link-button").await;
    browser
        .expect_heading("Your team's items and documents, behind a proper gate.")
        .await;
    browser
        .password_sign_in(&app, "ada@example.com", password)
        .await;
    browser.expect_heading("Two-step sign-in").await;
    browser.fill("code", &codes[0]).await;
    browser.click("form[action='/login/mfa'] button").await;
    browser.expect_heading("Welcome, Ada").await;
    b.goto(&format!("{}/account/mfa", app.address))
        .await
        .unwrap();
    browser.expect_heading("Two-step sign-in").await;
    let status = browser.text_of("section").await;
    assert!(
        status.contains("You have 9 unused recovery codes"),
        "{status}"
    );
    browser.screenshot("06-nine-codes-left").await;

    let problems = browser.problems();
    assert!(
        problems.is_empty(),
        "console errors or CSP violations:\n{}",
        problems.join("\n")
    );
}

#[tokio::test]
async fn right_passwords_between_wrong_codes_do_not_hold_off_the_lock_in_a_real_browser() {
    let test =
        "browser::right_passwords_between_wrong_codes_do_not_hold_off_the_lock_in_a_real_browser";
    let Some(browser) = Browser::start(test).await else {
        return;
    };
    let app = spawn_app_with(
        Backend::Sqlite,
        &[
            ("GATEHOUSE_SIGNIN_RATE_LIMIT", "off"),
            ("GATEHOUSE_LOCKOUT_THRESHOLD", "3"),
        ],
    )
    .await;
    let password = "Vermilion-Otter-42";
    add_user(&app, "ada@example.com")
        .name("Ada")
        .password(password)
        .mfa()
        .await;
    for round in 0..3 {
        app.clock.advance(Duration::from_secs(60));
        browser
            .password_sign_in(&app, "ada@example.com", password)
            .await;
        browser.expect_heading("Two-step sign-in").await;
        app.clock.advance(Duration::from_secs(60));
        browser.fill("code", "000000").await;
        browser.submit("form[action='/login/mfa'] button").await;
        browser.expect_heading("Two-step sign-in").await;
        let page = browser.text_of("main").await;
        assert!(
            page.contains("That code is not right"),
            "round {round}: {page}"
        );
    }
    browser.screenshot("01-third-wrong-code").await;
    app.clock.advance(Duration::from_secs(60));
    browser
        .password_sign_in(&app, "ada@example.com", password)
        .await;
    let mut page = String::new();
    for _ in 0..100 {
        page = browser.text_of("main").await;
        if page.contains("Too many failed sign-ins") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        page.contains("Too many failed sign-ins"),
        "the right password waits out the lock the wrong codes set: {page}"
    );
    browser.screenshot("02-locked").await;
}

#[tokio::test]
async fn a_neighbours_non_ascii_cookie_does_not_sign_the_user_out_in_a_real_browser() {
    let test =
        "browser::a_neighbours_non_ascii_cookie_does_not_sign_the_user_out_in_a_real_browser";
    let Some(browser) = Browser::start(test).await else {
        return;
    };
    let app = spawn_app_with(Backend::Sqlite, &[("GATEHOUSE_SIGNIN_RATE_LIMIT", "off")]).await;
    let password = "Vermilion-Otter-42";
    add_user(&app, "ada@example.com")
        .name("Ada")
        .password(password)
        .await;
    let b = &browser.client;
    browser
        .password_sign_in(&app, "ada@example.com", password)
        .await;
    browser.expect_heading("Welcome, Ada").await;
    // What another application on the same host may set: a cookie whose value is not ASCII,
    // which the browser then sends in the same `Cookie` header as the session's.
    b.execute("document.cookie = 'theme=caf\\u00e9; path=/';", vec![])
        .await
        .unwrap();
    let cookies = b.execute("return document.cookie;", vec![]).await.unwrap();
    assert!(
        cookies.as_str().unwrap_or_default().contains("theme=caf"),
        "the browser keeps the neighbour's cookie: {cookies}"
    );
    b.goto(&format!("{}/account", app.address)).await.unwrap();
    browser.expect_heading("Your account").await;
    browser.screenshot("01-still-signed-in").await;
}

/// The processes of group `group` that are still running (`pid name`); killed ones that only
/// wait to be reaped by init (zombies) do not count.
fn running_in_group(group: u32) -> Vec<String> {
    let mut running = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // `pid (name) state ppid pgrp …`; the name may hold spaces and parentheses.
        let Some((head, tail)) = stat.rsplit_once(") ") else {
            continue;
        };
        let fields: Vec<&str> = tail.split_whitespace().collect();
        if fields.len() > 2 && fields[0] != "Z" && fields[2] == group.to_string() {
            running.push(head.replacen(" (", " ", 1));
        }
    }
    running
}

#[test]
fn a_browser_test_that_panics_leaves_no_chromium_running() {
    let test = "browser::a_browser_test_that_panics_leaves_no_chromium_running";
    // A test of its own on a thread of its own, as the harness runs one: it opens a page, then
    // fails.
    let (started, group) = std::sync::mpsc::channel();
    let failed = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let Some(browser) = Browser::start(test).await else {
                return;
            };
            started.send(browser.process_group()).unwrap();
            browser
                .client
                .goto("data:text/html,<h1>Open</h1>")
                .await
                .unwrap();
            panic!("a deliberate failure with the browser open");
        });
    })
    .join();
    let Ok(group) = group.recv() else {
        return; // Chromium is not installed here (the reason is printed).
    };
    assert!(failed.is_err(), "the inner test failed");
    // The kill is sent while the failure unwinds; the processes may take a moment to die.
    let mut running = Vec::new();
    for _ in 0..100 {
        running = running_in_group(group);
        if running.is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        running.is_empty(),
        "ChromeDriver's process group {group} outlived its test: {running:?}"
    );
}

#[tokio::test]
async fn a_link_for_another_account_asks_before_switching_in_a_real_browser() {
    let test = "browser::a_link_for_another_account_asks_before_switching_in_a_real_browser";
    let Some(browser) = Browser::start(test).await else {
        return;
    };
    let sink = SmtpSink::start().await;
    let port = sink.port.to_string();
    let app = spawn_app_with(
        Backend::Sqlite,
        &[
            ("SMTP_HOST", "127.0.0.1"),
            ("SMTP_PORT", &port),
            ("SMTP_TLS", "none"),
        ],
    )
    .await;
    let password = "Vermilion-Otter-42";
    add_user(&app, "bob@example.com")
        .name("Bob")
        .password(password)
        .await;
    add_user(&app, "mallory@example.com").name("Mallory").await;
    browser
        .password_sign_in(&app, "bob@example.com", password)
        .await;
    browser.expect_heading("Welcome, Bob").await;
    // Someone else asks for a link to their own account and gets Bob to open it.
    let mut attacker = crate::support::visitor::Visitor::new(&app);
    let csrf = attacker.csrf_from("/login").await;
    attacker
        .post(
            "/login/magic",
            &[("csrf_token", &csrf), ("email", "mallory@example.com")],
        )
        .await;
    let mail = sink.wait_for("mallory@example.com").await;
    let start = mail
        .data
        .find("/login/magic/verify?token=")
        .expect("a link in the mail");
    let link = &mail.data[start..start + "/login/magic/verify?token=".len() + 43];

    browser
        .client
        .goto(&format!("{}{link}", app.address))
        .await
        .unwrap();

    browser.expect_heading("Switch account?").await;
    browser.screenshot("01-switch-account").await;
    let question = browser.text_of("section.narrow").await;
    assert!(
        question.contains("You are signed in as bob@example.com"),
        "{question}"
    );
    assert!(question.contains("m***@example.com"), "{question}");
    assert!(!question.contains("mallory@example.com"), "{question}");
    browser.click("a[href='/']").await;
    browser.expect_heading("Welcome, Bob").await;

    browser
        .client
        .goto(&format!("{}{link}", app.address))
        .await
        .unwrap();
    browser.expect_heading("Switch account?").await;
    browser.click("form.form button[type=submit]").await;
    browser.expect_heading("Welcome, Mallory").await;
    browser.screenshot("02-switched").await;

    let problems = browser.problems();
    assert!(
        problems.is_empty(),
        "console errors or CSP violations:\n{}",
        problems.join("\n")
    );
}

/// Evaluates `expression` on the page.
async fn js(browser: &Browser, expression: &str) -> serde_json::Value {
    browser
        .client
        .execute(&format!("return {expression};"), vec![])
        .await
        .unwrap()
}

#[tokio::test]
async fn new_password_fields_have_a_strength_meter_and_a_show_control_in_a_real_browser() {
    let test =
        "browser::new_password_fields_have_a_strength_meter_and_a_show_control_in_a_real_browser";
    let Some(browser) = Browser::start(test).await else {
        return;
    };
    let app = crate::support::spawn_unlimited_app(Backend::Sqlite, &[]).await;
    let password = "Vermilion-Otter-42";
    add_user(&app, "ada@example.com")
        .name("Ada")
        .password(password)
        .await;
    browser
        .password_sign_in(&app, "ada@example.com", password)
        .await;
    browser.expect_heading("Welcome, Ada").await;
    browser
        .client
        .goto(&format!("{}/account/password", app.address))
        .await
        .unwrap();
    browser.expect_heading("Change your password").await;
    browser.screenshot("01-password-form").await;

    let score = "document.getElementById('new-strength').value";
    let label = "document.getElementById('new-strength-text').textContent";
    assert_eq!(js(&browser, score).await, 0, "the meter is there, empty");
    browser.fill("new", "abcdef").await;
    assert_eq!(js(&browser, score).await, 0);
    assert_eq!(js(&browser, label).await, "Strength: Too short");
    browser.fill("new", "ghijkl").await;
    assert_eq!(
        js(&browser, score).await,
        1,
        "twelve characters in a run are weak"
    );
    browser.fill("new", " vermilion otter lagoon 42").await;
    assert_eq!(js(&browser, score).await, 4);
    assert_eq!(js(&browser, label).await, "Strength: Strong");
    browser.screenshot("02-strong").await;

    let kind = "document.getElementById('new').type";
    assert_eq!(js(&browser, kind).await, "password");
    browser.click("#new-show").await;
    assert_eq!(js(&browser, kind).await, "text", "shown as typed");
    assert_eq!(
        js(
            &browser,
            "document.getElementById('new-show').getAttribute('aria-pressed')"
        )
        .await,
        "true"
    );
    browser.screenshot("03-shown").await;
    browser.click("#new-show").await;
    assert_eq!(js(&browser, kind).await, "password", "hidden again");
    for other in ["current", "confirm"] {
        assert_eq!(
            js(
                &browser,
                &format!("document.getElementById('{other}-show') !== null")
            )
            .await,
            true,
            "{other} has a show control too"
        );
    }
    assert_eq!(
        js(
            &browser,
            "document.getElementById('confirm-strength') === null"
        )
        .await,
        true,
        "the meter is for the new password, not its confirmation"
    );

    let problems = browser.problems();
    assert!(
        problems.is_empty(),
        "console errors or CSP violations:\n{}",
        problems.join("\n")
    );
}
