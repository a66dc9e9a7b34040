//! The pages in a real browser: headless Chromium driven over WebDriver (ChromeDriver).
//!
//! Skipped, with a printed reason, when `chromium` or `chromedriver` is not installed (`.ci/run`
//! installs both). Chromium logs its console and CSP messages to `chrome_debug.log` in its
//! profile (`--enable-logging`), which the test checks after proving, with a deliberate CSP
//! violation, that such messages do show up there; screenshots of every page go to
//! `<target>/tmp/browser/<test>/`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use gatehouse::audit::AuditContext;
use gatehouse::identity::users::{self, NewUser};
use gatehouse::identity::{DisplayName, Email, Role};

use crate::helpers::{Backend, skip, spawn_app_with};
use crate::smtp_sink::SmtpSink;

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// A headless Chromium session; the driver is stopped on drop.
struct Browser {
    client: Client,
    driver: Child,
    log: PathBuf,
    shots: PathBuf,
    _profile: tempfile::TempDir,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

impl Browser {
    async fn start(test: &str) -> Option<Self> {
        if !Path::new(CHROMIUM).exists() || !Path::new(CHROMEDRIVER).exists() {
            skip(
                test,
                "chromium and chromium-driver are not installed (.ci/run installs them)",
            );
            return None;
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let shots = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join("browser")
            .join(test.replace("::", "-"));
        std::fs::create_dir_all(&shots).unwrap();
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        // Wait (bounded) for the driver to listen: it is another process, no clock to inject.
        let mut ready = false;
        for _ in 0..200 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                ready = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(ready, "chromedriver did not listen within 10 s");
        let profile = tempfile::tempdir().unwrap();
        let log = profile.path().join("chrome_debug.log");
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            serde_json::json!({
                "binary": CHROMIUM,
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--disable-background-networking", "--disable-component-update",
                    "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
                    "--enable-logging", "--log-level=0", "--v=0", "--window-size=1280,900",
                    format!("--user-data-dir={}", profile.path().display()),
                ],
            }),
        );
        let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
            .expect("a Chromium session");
        Some(Self {
            client,
            driver,
            log,
            shots,
            _profile: profile,
        })
    }

    async fn screenshot(&self, name: &str) {
        let png = self.client.screenshot().await.unwrap();
        std::fs::write(self.shots.join(format!("{name}.png")), png).unwrap();
    }

    /// Waits (at most 10 s) until the page's `<h1>` reads `expected`: a click returns before
    /// the navigation it starts has finished.
    async fn expect_heading(&self, expected: &str) {
        let mut last = String::new();
        for _ in 0..200 {
            if let Ok(h1) = self.client.find(Locator::Css("h1")).await {
                if let Ok(text) = h1.text().await {
                    if text == expected {
                        return;
                    }
                    last = text;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("expected the heading {expected:?}, the page shows {last:?}");
    }

    /// Console errors and CSP refusals Chromium logged; the log is kept beside the screenshots.
    fn problems(&self) -> Vec<String> {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let _ = std::fs::write(self.shots.join("chrome_debug.log"), &log);
        log.lines()
            .filter(|l| {
                l.contains("Content Security Policy")
                    || (l.contains(":CONSOLE") && l.to_ascii_lowercase().contains("error"))
            })
            .map(str::to_owned)
            .collect()
    }
}

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
    users::create(
        &app.db,
        NewUser {
            email: Email::parse("ada@example.com").unwrap(),
            display_name: DisplayName::parse("Ada").unwrap(),
            role: Role::User,
        },
        &AuditContext::cli(),
    )
    .await
    .unwrap();
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

impl Browser {
    async fn click(&self, css: &str) {
        self.client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no {css}: {e}"))
            .click()
            .await
            .unwrap();
    }

    async fn fill(&self, id: &str, text: &str) {
        self.client
            .find(Locator::Id(id))
            .await
            .unwrap_or_else(|e| panic!("no #{id}: {e}"))
            .send_keys(text)
            .await
            .unwrap();
    }

    async fn text_of(&self, css: &str) -> String {
        self.client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no {css}: {e}"))
            .text()
            .await
            .unwrap()
    }

    async fn password_sign_in(&self, app: &crate::helpers::TestApp, email: &str, password: &str) {
        self.client
            .goto(&format!("{}/login", app.address))
            .await
            .unwrap();
        self.expect_heading("Sign in").await;
        self.fill("password-email", email).await;
        self.fill("password", password).await;
        self.click("form[action='/login/password'] button").await;
    }
}

/// The TOTP code of a setup key (as the page shows it) at the app's clock.
fn totp_code(app: &crate::helpers::TestApp, setup_key: &str) -> String {
    use gatehouse::clock::Clock as _;
    let secret = totp_rs::Secret::Encoded(setup_key.replace(' ', ""))
        .to_bytes()
        .expect("a base32 setup key");
    let totp = totp_rs::TOTP::new_unchecked(
        totp_rs::Algorithm::SHA1,
        6,
        1,
        30,
        secret,
        None,
        String::new(),
    );
    totp.generate(u64::try_from(app.clock.now().unix_timestamp()).unwrap())
}

#[tokio::test]
async fn a_user_sets_up_two_step_sign_in_in_a_real_browser() {
    let test = "browser::a_user_sets_up_two_step_sign_in_in_a_real_browser";
    let Some(browser) = Browser::start(test).await else {
        return;
    };
    let app = spawn_app_with(Backend::Sqlite, &[("GATEHOUSE_SIGNIN_RATE_LIMIT", "off")]).await;
    let password = "Vermilion-Otter-42";
    let out = crate::helpers::run_cli_with_stdin(
        &app.cli_env(),
        &[
            "user",
            "add",
            "--email",
            "ada@example.com",
            "--name",
            "Ada",
            "--password-stdin",
        ],
        password,
    );
    assert!(out.status.success());
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
    browser.fill("code", &totp_code(&app, &setup_key)).await;
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
    browser.fill("code", &totp_code(&app, &setup_key)).await;
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
