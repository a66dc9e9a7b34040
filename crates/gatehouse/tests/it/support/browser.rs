//! A real, headless Chromium driven over WebDriver (ChromeDriver), for the browser tests.
//!
//! When `chromium` or `chromedriver` is not installed the test is skipped with a printed
//! reason, or fails when `GATEHOUSE_TEST_REQUIRE` names `chromium`. Chromium logs its console
//! and CSP messages to `chrome_debug.log` in its profile (`--enable-logging`); screenshots go
//! to `<target>/tmp/browser/<test>/`.
//!
//! Nothing is left running: ChromeDriver starts in a process group of its own, and Chromium,
//! which it starts, joins that group; the whole group is killed when the [`Browser`] is
//! dropped, also when the test panics. Each browser has its own profile in a temporary folder,
//! removed after the kill.

use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};

use super::TestApp;
use super::require::{Service, unavailable};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// A headless Chromium session. Dropping it kills ChromeDriver and Chromium, then removes the
/// profile (fields drop in order: the driver's group before the profile).
pub(crate) struct Browser {
    pub(crate) client: Client,
    log: PathBuf,
    shots: PathBuf,
    driver: ProcessGroup,
    _profile: tempfile::TempDir,
}

/// A child process that leads its own process group; dropping it kills the whole group (the
/// child and everything it started that stayed in the group) and reaps the child.
struct ProcessGroup(Child);

impl ProcessGroup {
    /// Spawns `command` as the leader of a new process group.
    fn spawn(command: &mut Command) -> std::io::Result<Self> {
        command.process_group(0).spawn().map(Self)
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        // `kill(1)` rather than the syscall: the workspace forbids `unsafe`, and std can signal
        // a child but not its group.
        let group = format!("-{}", self.0.id());
        let _ = Command::new("kill")
            .args(["-KILL", "--", &group])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Browser {
    pub(crate) async fn start(test: &str) -> Option<Self> {
        if !Path::new(CHROMIUM).exists() || !Path::new(CHROMEDRIVER).exists() {
            unavailable(
                test,
                Service::Chromium,
                "/usr/bin/chromium or /usr/bin/chromedriver is missing",
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
        let profile = tempfile::tempdir().unwrap();
        let driver = ProcessGroup::spawn(
            Command::new(CHROMEDRIVER)
                .arg(format!("--port={port}"))
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
        )
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
            log,
            shots,
            driver,
            _profile: profile,
        })
    }

    /// The process group of ChromeDriver and the Chromium it started.
    pub(crate) fn process_group(&self) -> u32 {
        self.driver.0.id()
    }

    pub(crate) async fn screenshot(&self, name: &str) {
        let png = self.client.screenshot().await.unwrap();
        std::fs::write(self.shots.join(format!("{name}.png")), png).unwrap();
    }

    /// Waits (at most 10 s) until the page's `<h1>` reads `expected`: a click returns before
    /// the navigation it starts has finished.
    pub(crate) async fn expect_heading(&self, expected: &str) {
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
    pub(crate) fn problems(&self) -> Vec<String> {
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

    pub(crate) async fn click(&self, css: &str) {
        self.client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no {css}: {e}"))
            .click()
            .await
            .unwrap();
    }

    /// Clicks `css` (a submit button) and waits (at most 10 s) until the browser has left the
    /// page it was on: for a form whose answer shows the same heading again.
    pub(crate) async fn submit(&self, css: &str) {
        let page = self.client.find(Locator::Css("html")).await.unwrap();
        self.click(css).await;
        for _ in 0..200 {
            if page.tag_name().await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("clicking {css} did not leave the page");
    }

    pub(crate) async fn fill(&self, id: &str, text: &str) {
        self.client
            .find(Locator::Id(id))
            .await
            .unwrap_or_else(|e| panic!("no #{id}: {e}"))
            .send_keys(text)
            .await
            .unwrap();
    }

    /// The text of `css`, read again (at most 10 s) when the page it was found on was replaced
    /// before its text could be read (a navigation still finishing).
    pub(crate) async fn text_of(&self, css: &str) -> String {
        let mut last = None;
        for _ in 0..200 {
            let found = self
                .client
                .find(Locator::Css(css))
                .await
                .unwrap_or_else(|e| panic!("no {css}: {e}"));
            match found.text().await {
                Ok(text) => return text,
                Err(e) => last = Some(e),
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the text of {css} could not be read: {last:?}");
    }

    pub(crate) async fn password_sign_in(&self, app: &TestApp, email: &str, password: &str) {
        self.client
            .goto(&format!("{}/login", app.address))
            .await
            .unwrap();
        self.expect_heading("Sign in").await;
        self.fill("password-email", email).await;
        self.fill("password", password).await;
        self.click("form[action='/login/password'] button[type=submit]")
            .await;
    }
}
