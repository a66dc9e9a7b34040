//! The `gatehouse` binary, run as an operator would.

/// Runs the `gatehouse` binary with exactly `env` (plus PATH) and `args`.
pub(crate) fn run_cli(env: &[(String, String)], args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_gatehouse"))
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .current_dir(std::env::temp_dir())
        .output()
        .expect("the gatehouse binary runs")
}

/// Like [`run_cli`], with `input` on standard input.
pub(crate) fn run_cli_with_stdin(
    env: &[(String, String)],
    args: &[&str],
    input: &str,
) -> std::process::Output {
    use std::io::Write as _;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_gatehouse"))
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .current_dir(std::env::temp_dir())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("the gatehouse binary runs");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

/// Pairs of `&str` as owned environment entries.
pub(crate) fn env_of(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// Runs `gatehouse audit verify` against `env`'s database and fails the test unless the chain
/// verifies.
pub(crate) fn assert_audit_chain_verifies(env: &[(String, String)]) {
    let out = run_cli(env, &["audit", "verify"]);
    assert!(
        out.status.success(),
        "the audit chain does not verify: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `gatehouse serve` running as its own process, as an operator starts it, with its standard
/// output collected line by line. Killed when dropped.
pub(crate) struct ServedBinary {
    child: std::process::Child,
    lines: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    _data: tempfile::TempDir,
}

impl ServedBinary {
    /// Starts `gatehouse serve` with exactly `env` (plus PATH and a fresh data directory).
    pub(crate) fn start(env: &[(String, String)]) -> Self {
        use std::io::BufRead as _;
        let data = tempfile::tempdir().unwrap();
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_gatehouse"))
            .arg("serve")
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("GATEHOUSE_DATA_DIR", data.path())
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .current_dir(std::env::temp_dir())
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit())
            .spawn()
            .expect("the gatehouse binary runs");
        let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let stdout = child.stdout.take().unwrap();
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                sink.lock().unwrap().push(line);
            }
        });
        Self {
            child,
            lines,
            _data: data,
        }
    }

    /// Waits (at most 60 s) for an output line containing `needle`, and returns it.
    pub(crate) async fn wait_for_line(&self, needle: &str) -> String {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            if let Some(line) = self.lines().into_iter().find(|l| l.contains(needle)) {
                return line;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no line containing {needle:?} within 60 s:\n{}",
                self.lines().join("\n")
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    /// Every line written so far.
    pub(crate) fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }
}

impl ServedBinary {
    /// Kills the server at once (SIGKILL: no shutdown, no flushing), as a crash would.
    pub(crate) fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ServedBinary {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
