//! The `gatehouse` binary: production fail-fast, `config check`, user management.

use crate::on_every_backend;
use crate::support::{GOOD_KEY, ServedBinary, add_user, env_of, run_cli, spawn_app};

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs `gatehouse serve` in production with `extra` settings on a throwaway data dir.
fn serve_in_production(extra: &[(&str, &str)]) -> std::process::Output {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().display().to_string();
    let mut env = env_of(&[
        ("GATEHOUSE_ENV", "production"),
        ("GATEHOUSE_LISTEN", "127.0.0.1:0"),
        ("GATEHOUSE_DATA_DIR", &data),
        ("GATEHOUSE_SECRET_KEY", GOOD_KEY),
        ("GATEHOUSE_PUBLIC_URL", "https://gate.example"),
        ("SMTP_HOST", "smtp.example"),
    ]);
    for (k, v) in extra {
        env.retain(|(name, _)| name != k);
        if !v.is_empty() {
            env.push(((*k).into(), (*v).into()));
        }
    }
    run_cli(&env, &["serve"])
}

#[test]
fn production_refuses_to_start_without_a_secret_key() {
    let out = serve_in_production(&[("GATEHOUSE_SECRET_KEY", "")]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("GATEHOUSE_SECRET_KEY: is not set"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn production_refuses_to_start_with_a_short_secret_key() {
    let out = serve_in_production(&[("GATEHOUSE_SECRET_KEY", "short-key")]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("GATEHOUSE_SECRET_KEY: is 9 bytes long"),
        "{}",
        stderr(&out)
    );
    assert!(
        !stderr(&out).contains("short-key"),
        "the key itself is never printed"
    );
}

#[test]
fn production_refuses_to_start_on_a_plain_http_public_url() {
    let out = serve_in_production(&[("GATEHOUSE_PUBLIC_URL", "http://gate.example")]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("GATEHOUSE_PUBLIC_URL"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn production_refuses_to_start_on_wildcard_cors_with_credentials() {
    let out = serve_in_production(&[("GATEHOUSE_CORS_ORIGINS", "*")]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("GATEHOUSE_CORS_ORIGINS"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn flask_names_reach_the_same_checks() {
    let out = serve_in_production(&[
        ("GATEHOUSE_ENV", ""),
        ("FLASK_ENV", "production"),
        ("GATEHOUSE_SECRET_KEY", ""),
        ("SECRET_KEY", "tiny"),
    ]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("GATEHOUSE_SECRET_KEY: is 4 bytes long"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn invalid_values_are_all_reported_before_anything_starts() {
    let out = run_cli(
        &env_of(&[
            ("GATEHOUSE_LISTEN", "nowhere"),
            ("MAX_CONTENT_LENGTH", "huge"),
        ]),
        &["serve"],
    );
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("GATEHOUSE_LISTEN") && err.contains("MAX_CONTENT_LENGTH"),
        "{err}"
    );
}

/// Valid but dangerous: every address trusted as a proxy, development mode and `/metrics` open
/// to the network.
const RISKY: &[(&str, &str)] = &[
    ("GATEHOUSE_TRUSTED_PROXIES", "10.0.0.0/8, 0.0.0.0/0"),
    ("GATEHOUSE_LISTEN", "0.0.0.0:0"),
    ("GATEHOUSE_METRICS_LISTEN", "0.0.0.0:0"),
];

const RISKY_WARNINGS: [&str; 3] = [
    "GATEHOUSE_TRUSTED_PROXIES: trusts every address",
    "GATEHOUSE_LISTEN: development mode listens on `0.0.0.0:0`",
    "GATEHOUSE_METRICS_LISTEN: `/metrics` listens on `0.0.0.0:0`",
];

#[test]
fn config_check_warns_about_dangerous_but_valid_choices() {
    let dir = tempfile::tempdir().unwrap();
    let mut env = env_of(RISKY);
    env.push((
        "GATEHOUSE_DATA_DIR".into(),
        dir.path().display().to_string(),
    ));

    let out = run_cli(&env, &["config", "check"]);

    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let warnings = &text[text.find("\nWarnings:").expect("a warnings section")..];
    for warning in RISKY_WARNINGS {
        assert!(warnings.contains(warning), "{warning:?} missing:\n{text}");
    }
    let safe = run_cli(
        &env_of(&[("GATEHOUSE_DATA_DIR", &dir.path().display().to_string())]),
        &["config", "check"],
    );
    for warning in RISKY_WARNINGS {
        let setting = warning.split(':').next().unwrap();
        assert!(
            !stdout(&safe).contains(&format!("- {setting}:")),
            "{}",
            stdout(&safe)
        );
    }
}

#[tokio::test]
async fn serve_logs_the_same_warnings_at_start() {
    let mut env = env_of(RISKY);
    env.push(("GATEHOUSE_LOG_FORMAT".into(), "json".into()));
    let server = ServedBinary::start(&env);

    server.wait_for_line("Gatehouse is listening").await;

    let warnings: Vec<String> = server
        .lines()
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|l| l["event"] == "config_warning")
        .map(|l| {
            format!(
                "{}: {}",
                l["setting"].as_str().unwrap(),
                l["message"].as_str().unwrap()
            )
        })
        .collect();
    for warning in RISKY_WARNINGS {
        assert!(
            warnings.iter().any(|w| w.starts_with(warning)),
            "{warning:?} not logged: {warnings:#?}"
        );
    }
}

#[test]
fn config_check_redacts_secrets_and_fails_on_production_problems() {
    let env = env_of(&[
        ("GATEHOUSE_ENV", "production"),
        ("GATEHOUSE_SECRET_KEY", "short-but-secret"),
        (
            "GATEHOUSE_DATABASE_URL",
            "postgres://app:db-password-1@db.internal/app",
        ),
        ("SMTP_PASSWORD", "smtp-password-2"),
    ]);
    let out = run_cli(&env, &["config", "check"]);
    assert!(!out.status.success());
    let text = stdout(&out);
    for secret in ["short-but-secret", "db-password-1", "smtp-password-2"] {
        assert!(!text.contains(secret), "{secret} printed:\n{text}");
    }
    assert!(text.contains("[redacted]"), "{text}");
    assert!(text.contains("GATEHOUSE_SECRET_KEY"), "{text}");
    assert!(text.contains("GATEHOUSE_PUBLIC_URL"), "{text}");
    assert!(
        text.contains("sslmode=verify-full"),
        "the TLS refusal is shown:\n{text}"
    );
}

#[test]
fn config_check_passes_a_sound_production_configuration() {
    let env = env_of(&[
        ("SMTP_HOST", "smtp.example"),
        ("GATEHOUSE_ENV", "production"),
        ("GATEHOUSE_SECRET_KEY", GOOD_KEY),
        ("GATEHOUSE_PUBLIC_URL", "https://gate.example"),
    ]);
    let out = run_cli(&env, &["config", "check"]);
    assert!(out.status.success(), "{}", stdout(&out));
    assert!(stdout(&out).contains("No production problems."));
}

#[test]
fn config_check_in_development_lists_problems_without_failing_unless_asked() {
    let out = run_cli(&[], &["config", "check"]);
    assert!(out.status.success());
    assert!(stdout(&out).contains("GATEHOUSE_SECRET_KEY"));
    let strict = run_cli(&[], &["config", "check", "--production"]);
    assert!(!strict.status.success());
}

#[test]
fn config_reference_prints_every_setting_even_when_the_configuration_is_invalid() {
    let out = run_cli(
        &env_of(&[("GATEHOUSE_LISTEN", "nowhere")]),
        &["config", "reference"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert_eq!(text, gatehouse::config::reference_markdown());
    assert!(
        text.contains("| `GATEHOUSE_SECRET_KEY` 🔒 (aliases `SECRET_KEY`, `FLASK_SECRET_KEY`) |"),
        "{text}"
    );
}

on_every_backend! {
    async fn users_are_added_and_listed_from_the_command_line(backend) {
        let app = spawn_app(backend).await;
        let env = app.cli_env();
        let out = run_cli(&env, &["user", "add", "--email", "Ada@Example.com", "--role", "manager", "--name", "Ada"]);
        assert!(out.status.success(), "{}", stderr(&out));
        let list = run_cli(&env, &["user", "list", "--json"]);
        assert!(list.status.success(), "{}", stderr(&list));
        let rows: Vec<serde_json::Value> = stdout(&list)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0]["email"], "ada@example.com");
        assert_eq!(rows[0]["role"], "manager");
        assert_eq!(rows[0]["display_name"], "Ada");
        let table = stdout(&run_cli(&env, &["user", "list"]));
        assert!(table.contains("ada@example.com"), "{table}");
    }

    async fn an_email_is_unique_whatever_its_case(backend) {
        let app = spawn_app(backend).await;
        let env = app.cli_env();
        assert!(run_cli(&env, &["user", "add", "--email", "bo@example.com", "--role", "user"]).status.success());
        let dup = run_cli(&env, &["user", "add", "--email", "BO@EXAMPLE.COM", "--role", "admin"]);
        assert!(!dup.status.success());
        assert!(stderr(&dup).contains("already exists"), "{}", stderr(&dup));
    }

    async fn bad_user_input_gets_a_clear_error(backend) {
        let app = spawn_app(backend).await;
        let env = app.cli_env();
        let bad_role = run_cli(&env, &["user", "add", "--email", "c@example.com", "--role", "root"]);
        assert!(!bad_role.status.success());
        assert!(stderr(&bad_role).contains("use admin, manager or user"), "{}", stderr(&bad_role));
        let bad_email = run_cli(&env, &["user", "add", "--email", "not-an-email", "--role", "user"]);
        assert!(!bad_email.status.success());
        assert!(stderr(&bad_email).contains("not a valid email"), "{}", stderr(&bad_email));
    }

    async fn the_last_active_admin_cannot_be_demoted_or_disabled(backend) {
        let app = spawn_app(backend).await;
        let env = app.cli_env();
        add_user(&app, "root@example.com").role("admin").await;
        let demote = run_cli(&env, &["user", "set-role", "--email", "root@example.com", "--role", "user"]);
        assert!(!demote.status.success());
        assert!(stderr(&demote).contains("last active admin"), "{}", stderr(&demote));
        let disable = run_cli(&env, &["user", "disable", "--email", "root@example.com"]);
        assert!(!disable.status.success());
        add_user(&app, "second@example.com").role("admin").await;
        let demote = run_cli(&env, &["user", "set-role", "--email", "root@example.com", "--role", "user"]);
        assert!(demote.status.success(), "{}", stderr(&demote));
    }

    async fn the_admin_email_setting_creates_the_first_admin_once(backend) {
        let app = crate::support::spawn_app_with(backend, &[("GATEHOUSE_ADMIN_EMAIL", "First@Example.com")]).await;
        let list = stdout(&run_cli(&app.cli_env(), &["user", "list", "--json"]));
        let rows: Vec<serde_json::Value> = list.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0]["email"], "first@example.com");
        assert_eq!(rows[0]["role"], "admin");
        // A later start with another address on a non-empty database creates nobody.
        let mut env = app.cli_env();
        env.push(("GATEHOUSE_ADMIN_EMAIL".into(), "other@example.com".into()));
        let users = gatehouse::identity::users::list(&app.db).await.unwrap();
        assert_eq!(users.len(), 1);
        let created = gatehouse::identity::users::bootstrap_admin(
            &app.db,
            gatehouse::identity::Email::parse("other@example.com").unwrap(),
            &gatehouse::audit::AuditContext::system(),
        )
        .await
        .unwrap();
        assert!(created.is_none());
    }
}

#[tokio::test]
async fn the_library_refuses_a_production_configuration_with_problems_too() {
    let dir = tempfile::tempdir().unwrap();
    let settings = gatehouse::config::Settings::load(&gatehouse::config::Sources {
        env: env_of(&[
            ("GATEHOUSE_ENV", "production"),
            ("GATEHOUSE_LISTEN", "127.0.0.1:0"),
            ("GATEHOUSE_DATA_DIR", dir.path().to_str().unwrap()),
            ("GATEHOUSE_SECRET_KEY", "short"),
            ("GATEHOUSE_PUBLIC_URL", "https://gate.example"),
        ])
        .into_iter()
        .collect(),
        config_file: None,
        dotenv_file: None,
    })
    .unwrap();
    let err = gatehouse::Application::build(settings).await.unwrap_err();
    assert!(err.to_string().contains("GATEHOUSE_SECRET_KEY"), "{err}");
}

#[test]
fn config_check_says_where_each_value_came_from() {
    let out = run_cli(
        &env_of(&[("GATEHOUSE_LISTEN", "127.0.0.1:9999")]),
        &["config", "check"],
    );
    let text = stdout(&out);
    let listen = text
        .lines()
        .find(|l| l.contains("GATEHOUSE_LISTEN"))
        .unwrap();
    assert!(
        listen.contains("127.0.0.1:9999") && listen.contains("(environment)"),
        "{listen}"
    );
    let env = text.lines().find(|l| l.contains("GATEHOUSE_ENV")).unwrap();
    assert!(env.contains("(default)"), "{env}");
}

#[test]
fn production_refuses_to_start_without_smtp() {
    let out = serve_in_production(&[("SMTP_HOST", "")]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("SMTP_HOST: is not set"),
        "{}",
        stderr(&out)
    );
}

on_every_backend! {
    async fn an_allowlist_file_is_imported_once_and_audited(backend) {
        let app = spawn_app(backend).await;
        let env = app.cli_env();
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("users.json");
        std::fs::write(&file, r#"{"users": [{"email": "Ada@Example.com", "name": "Ada", "role": "manager"}, "bo@example.com"]}"#).unwrap();
        let path = file.to_str().unwrap();
        let out = run_cli(&env, &["allowlist", "import", path]);
        assert!(out.status.success(), "{}", stderr(&out));
        assert!(stdout(&out).contains("2 users created, 0 already existed"), "{}", stdout(&out));
        let again = run_cli(&env, &["allowlist", "import", path]);
        assert!(stdout(&again).contains("0 users created, 2 already existed"), "{}", stdout(&again));
        let list = stdout(&run_cli(&env, &["user", "list", "--json"]));
        assert!(list.contains("\"email\":\"ada@example.com\"") && list.contains("\"role\":\"manager\""), "{list}");
        let actions: Vec<String> = gatehouse::audit::records_after(&app.db, 0, 100).await.unwrap().into_iter().map(|r| r.action).collect();
        assert_eq!(actions.iter().filter(|a| *a == "allowlist.import").count(), 2);
        assert_eq!(actions.iter().filter(|a| *a == "user.create").count(), 2);
    }

    async fn an_allowlist_with_a_bad_entry_imports_nothing(backend) {
        let app = spawn_app(backend).await;
        let env = app.cli_env();
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("users.json");
        std::fs::write(&file, r#"["good@example.com", "not-an-address"]"#).unwrap();
        let out = run_cli(&env, &["allowlist", "import", file.to_str().unwrap()]);
        assert!(!out.status.success());
        assert!(stderr(&out).contains("entry 2"), "{}", stderr(&out));
        assert!(stderr(&out).contains("nothing was imported"), "{}", stderr(&out));
        assert!(gatehouse::identity::users::list(&app.db).await.unwrap().is_empty());
    }
}
