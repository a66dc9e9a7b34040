//! Passwords from the command line: set with the policy enforced, or imported with their
//! Werkzeug hashes, which keep verifying.

use gatehouse::identity::{Email, users};
use secrecy::SecretString;

use crate::on_every_backend;
use crate::support::{add_user, app_hasher, run_cli, run_cli_with_stdin, spawn_app};

/// Made with Werkzeug 3.1.8 for "correct horse battery staple".
const WERKZEUG_PBKDF2: &str = "pbkdf2:sha256:1000$cVyKKW03zcFPpHTW$2e12890e79f16dcb0a2ad231388a3e48473030d94b2862f8ead28abb5e9cd406";
const WERKZEUG_SCRYPT: &str = "scrypt:16384:8:1$7stWkE1i25j1m1Xz$51348a650e1feb3126b9fdfd2a18ae7a78df8ead686395059dea5155c3fd2062b75f01d902658e470337a6dbf084ac27cc1482f97e2956168b334a1477eb12a5";

async fn stored_hash(app: &crate::support::TestApp, email: &str) -> Option<String> {
    let user = users::find_by_email(&app.db, &Email::parse(email).unwrap())
        .await
        .unwrap()
        .expect("the user exists");
    users::password_hash(&app.db, user.id).await.unwrap()
}

/// The argon2id hash of the review: 4 GiB of memory and a million passes (a made-up hash; only
/// its parameters matter).
const COSTLY_ARGON2: &str = "$argon2id$v=19$m=4194304,t=1000000,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g";

fn text(out: &[u8]) -> String {
    String::from_utf8_lossy(out).into_owned()
}

on_every_backend! {
    async fn a_user_added_with_a_password_gets_an_argon2id_hash_of_it(backend) {
        let app = spawn_app(backend).await;
        let out = run_cli_with_stdin(&app.cli_env(), &["user", "add", "--email", "ada@example.com", "--role", "admin", "--password-stdin"], "Vermilion-Otter-42\n");
        assert!(out.status.success(), "{}", text(&out.stderr));
        let hash = stored_hash(&app, "ada@example.com").await.expect("a password hash");
        assert!(hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1,keyid=cGVwcGVyLTE$"), "{hash}");
        assert!(!hash.contains("Vermilion"));
        let hasher = app_hasher(&app).await;
        assert!(hasher.verify(&SecretString::from("Vermilion-Otter-42"), &hash).await.unwrap().ok, "the trailing newline is not part of the password");
        let records = gatehouse::audit::records_after(&app.db, 0, 10).await.unwrap();
        assert!(records[0].changes.contains("\"password\":\"set\""), "{}", records[0].changes);
        assert!(!records[0].changes.contains("argon2"), "the hash never reaches the audit log");
    }

    async fn the_password_settings_shape_new_hashes_and_the_policy(backend) {
        let app = spawn_app(backend).await;
        let mut env = app.cli_env();
        env.push(("GATEHOUSE_ARGON2_MEMORY_KIB".into(), "8192".into()));
        env.push(("GATEHOUSE_PASSWORD_MIN_LENGTH".into(), "8".into()));
        let out = run_cli_with_stdin(&env, &["user", "add", "--email", "ada@example.com", "--password-stdin"], "Vx7!kqzp");
        assert!(out.status.success(), "seed 004's eight characters pass at min length 8: {}", text(&out.stderr));
        let hash = stored_hash(&app, "ada@example.com").await.unwrap();
        assert!(hash.starts_with("$argon2id$v=19$m=8192,t=2,p=1,keyid=cGVwcGVyLTE$"), "{hash}");
    }

    async fn a_weak_password_is_refused_with_every_reason_and_nothing_is_created(backend) {
        let app = spawn_app(backend).await;
        let mut seed_004 = app.cli_env();
        seed_004.push(("GATEHOUSE_PASSWORD_REQUIRE_CLASSES".into(), "true".into()));
        let out = run_cli_with_stdin(&seed_004, &["user", "add", "--email", "ada@example.com", "--password-stdin"], "password\n");
        assert!(!out.status.success());
        let err = text(&out.stderr);
        for reason in ["at least 12", "upper-case", "digit", "symbol", "less common"] {
            assert!(err.contains(reason), "{reason} missing from {err}");
        }
        let out = run_cli_with_stdin(&app.cli_env(), &["user", "add", "--email", "ada@example.com", "--password-stdin"], "password\n");
        assert!(!out.status.success());
        let err = text(&out.stderr);
        assert!(err.contains("at least 12") && err.contains("less common"), "{err}");
        for composition in ["upper-case", "digit", "symbol"] {
            assert!(!err.contains(composition), "no composition rules by default: {err}");
        }
        assert!(users::list(&app.db).await.unwrap().is_empty());
    }

    async fn by_default_a_long_password_without_classes_is_accepted_and_seed_004s_rules_are_a_setting(backend) {
        let app = spawn_app(backend).await;
        let plain = "vermilion otter lagoon\n";
        let mut seed_004 = app.cli_env();
        seed_004.push(("GATEHOUSE_PASSWORD_REQUIRE_CLASSES".into(), "true".into()));
        let out = run_cli_with_stdin(&seed_004, &["user", "add", "--email", "ada@example.com", "--password-stdin"], plain);
        assert!(!out.status.success(), "seed 004's rules refuse it");
        assert!(text(&out.stderr).contains("upper-case"), "{}", text(&out.stderr));
        let out = run_cli_with_stdin(&app.cli_env(), &["user", "add", "--email", "ada@example.com", "--password-stdin"], plain);
        assert!(out.status.success(), "ASVS V2.1.9: no composition rules by default: {}", text(&out.stderr));
    }

    async fn users_imported_from_flask_keep_their_werkzeug_passwords(backend) {
        let app = spawn_app(backend).await;
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("users.jsonl");
        std::fs::write(&file, format!(
            "{{\"email\": \"ada@example.com\", \"role\": \"manager\", \"password_hash\": \"{WERKZEUG_PBKDF2}\"}}\n{{\"email\": \"bo@example.com\", \"role\": \"user\", \"password_hash\": \"{WERKZEUG_SCRYPT}\", \"name\": \"Bo\"}}\n"
        )).unwrap();
        let out = run_cli(&app.cli_env(), &["user", "import", file.to_str().unwrap()]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        assert!(text(&out.stdout).contains("2 users created"));
        let hasher = app_hasher(&app).await;
        for email in ["ada@example.com", "bo@example.com"] {
            let hash = stored_hash(&app, email).await.unwrap();
            let v = hasher.verify(&SecretString::from("correct horse battery staple"), &hash).await.unwrap();
            assert!(v.ok && v.needs_rehash, "{email}: {v:?}");
        }
        let again = run_cli(&app.cli_env(), &["user", "import", file.to_str().unwrap()]);
        assert!(text(&again.stdout).contains("0 users created, 2 already existed"));
    }

    async fn an_import_with_an_unverifiable_hash_imports_nothing(backend) {
        let app = spawn_app(backend).await;
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("users.csv");
        std::fs::write(&file, format!("email,role,password_hash\nada@example.com,user,{WERKZEUG_PBKDF2}\nbo@example.com,user,md5$00$00\n")).unwrap();
        let out = run_cli(&app.cli_env(), &["user", "import", file.to_str().unwrap()]);
        assert!(!out.status.success());
        assert!(text(&out.stderr).contains("line 3"), "{}", text(&out.stderr));
        assert!(users::list(&app.db).await.unwrap().is_empty(), "nothing was imported");
    }

    async fn an_import_with_a_hash_over_the_cost_bounds_names_the_line_and_imports_nothing(backend) {
        let app = spawn_app(backend).await;
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("users.jsonl");
        std::fs::write(&file, format!(
            "{{\"email\": \"ada@example.com\", \"role\": \"user\", \"password_hash\": \"{WERKZEUG_PBKDF2}\"}}\n{{\"email\": \"bo@example.com\", \"role\": \"user\", \"password_hash\": \"{COSTLY_ARGON2}\"}}\n"
        )).unwrap();
        let out = run_cli(&app.cli_env(), &["user", "import", file.to_str().unwrap()]);
        assert!(!out.status.success());
        let err = text(&out.stderr);
        assert!(err.contains("line 2: bo@example.com") && err.contains("memory"), "{err}");
        assert!(users::list(&app.db).await.unwrap().is_empty(), "nothing was imported");
    }
}

/// An app whose sign-in limits are off (these tests make many attempts from one address).
async fn unlimited_app(backend: crate::support::Backend) -> crate::support::TestApp {
    crate::support::spawn_app_with(
        backend,
        &[
            ("GATEHOUSE_SIGNIN_RATE_LIMIT", "off"),
            ("GATEHOUSE_SIGNIN_EMAIL_RATE_LIMIT", "off"),
        ],
    )
    .await
}

/// The seconds a failed password sign-in for `email` takes, from the form's submission to the
/// answer.
async fn timed_failure(v: &mut crate::support::visitor::Visitor<'_>, email: &str) -> f64 {
    let csrf = v.csrf_from("/login").await;
    let fields = [
        ("csrf_token", csrf.as_str()),
        ("email", email),
        ("password", "Wrong-Password-1"),
    ];
    let started = std::time::Instant::now();
    let (status, _, _) = v.post("/login/password", &fields).await;
    let elapsed = started.elapsed().as_secs_f64();
    assert_eq!(status, 401, "{email}");
    elapsed
}

async fn password_sign_in(
    v: &mut crate::support::visitor::Visitor<'_>,
    email: &str,
    password: &str,
) -> (u16, reqwest::header::HeaderMap, String) {
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
}

on_every_backend! {
    async fn a_user_signs_in_with_their_password(backend) {
        let app = unlimited_app(backend).await;
        add_user(&app, "ada@example.com").password("Vermilion-Otter-42").await;
        let mut v = crate::support::visitor::Visitor::new(&app);
        let (status, headers, _) = password_sign_in(&mut v, "ada@example.com", "Vermilion-Otter-42").await;
        assert_eq!(status, 303);
        assert_eq!(headers["location"], "/");
        let (_, _, page) = v.get("/").await;
        assert!(page.contains("ada@example.com"), "{page}");
        let records = gatehouse::audit::records_after(&app.db, 0, 100).await.unwrap();
        assert!(records.iter().any(|r| r.action == "auth.sign_in" && r.changes.contains("password")));
    }

    async fn a_wrong_password_and_an_unknown_address_get_the_same_answer(backend) {
        let app = unlimited_app(backend).await;
        add_user(&app, "ada@example.com").password("Vermilion-Otter-42").await;
        let mut v = crate::support::visitor::Visitor::new(&app);
        let (s1, _, wrong) = password_sign_in(&mut v, "ada@example.com", "Wrong-Password-1").await;
        let (s2, _, unknown) = password_sign_in(&mut v, "nobody@example.com", "Wrong-Password-1").await;
        assert_eq!((s1, s2), (401, 401));
        let strip = |page: &str, email: &str| {
            crate::support::visitor::without_csrf_tokens(&page.replace(email, "X"))
        };
        assert_eq!(strip(&wrong, "ada@example.com"), strip(&unknown, "nobody@example.com"));
        assert!(!wrong.contains("Wrong-Password-1"), "the password is never echoed");
        let failed = gatehouse::audit::records_after(&app.db, 0, 100).await.unwrap().into_iter().filter(|r| r.action == "auth.password_failed").count();
        assert_eq!(failed, 2);
    }

    async fn unknown_addresses_take_as_long_as_wrong_passwords(backend) {
        // Pairs of attempts, one wrong password and one unknown address, each address's first
        // failure only (later ones are throttled before any hashing). Within a pair the two run
        // back to back, in alternating order, so a change in the machine's load during the test
        // weighs on both alike; the median of the pairs' ratios ignores the pairs a burst of
        // load hit. It must be within 15% of 1: a 1.3× gap fails (checked by slowing one path on
        // purpose), the noise of a loaded machine does not.
        const WARM_UP: usize = 3;
        const PAIRS: usize = 41;
        const TOLERANCE: f64 = 1.15;
        let app = crate::support::spawn_app_with(backend, &[
            ("GATEHOUSE_RATE_LIMIT", "off"),
            ("GATEHOUSE_SIGNIN_RATE_LIMIT", "off"),
            ("GATEHOUSE_SIGNIN_EMAIL_RATE_LIMIT", "off"),
            ("GATEHOUSE_LOCKOUT_THRESHOLD", "1000"),
        ]).await;
        let hash = app_hasher(&app).await.hash(&SecretString::from("Vermilion-Otter-42")).await.unwrap();
        for i in 0..WARM_UP + PAIRS {
            let new = users::NewUser {
                email: Email::parse(&format!("ada{i}@example.com")).unwrap(),
                display_name: gatehouse::identity::DisplayName::parse("").unwrap(),
                role: gatehouse::identity::Role::User,
            };
            users::create_with_password_hash(&app.db, new, &hash, &gatehouse::audit::AuditContext::cli()).await.unwrap();
        }
        let mut v = crate::support::visitor::Visitor::new(&app);
        let mut ratios = Vec::new();
        let (mut known, mut unknown) = (Vec::new(), Vec::new());
        for i in 0..WARM_UP + PAIRS {
            let (k, u) = if i % 2 == 0 {
                let k = timed_failure(&mut v, &format!("ada{i}@example.com")).await;
                (k, timed_failure(&mut v, &format!("nobody{i}@example.com")).await)
            } else {
                let u = timed_failure(&mut v, &format!("nobody{i}@example.com")).await;
                (timed_failure(&mut v, &format!("ada{i}@example.com")).await, u)
            };
            if i >= WARM_UP {
                ratios.push(u / k);
                known.push(k);
                unknown.push(u);
            }
        }
        let median = |samples: &mut Vec<f64>| {
            samples.sort_by(f64::total_cmp);
            samples[samples.len() / 2]
        };
        let ratio = median(&mut ratios);
        let (known, unknown) = (median(&mut known), median(&mut unknown));
        println!("unknown/known: median ratio {ratio:.3}; medians {:.1} ms unknown, {:.1} ms known", unknown * 1e3, known * 1e3);
        assert!(
            (1.0 / TOLERANCE..TOLERANCE).contains(&ratio),
            "timing tells unknown addresses from wrong passwords: median ratio {ratio:.3} (unknown {:.1} ms, known {:.1} ms)",
            unknown * 1e3,
            known * 1e3
        );
    }

    async fn after_a_failure_the_next_attempt_waits_for_known_and_unknown_addresses_alike(backend) {
        let app = unlimited_app(backend).await;
        add_user(&app, "ada@example.com").password("Vermilion-Otter-42").await;
        let mut v = crate::support::visitor::Visitor::new(&app);
        assert_eq!(password_sign_in(&mut v, "ada@example.com", "Wrong-Password-1").await.0, 401);
        let (status, headers, known) = password_sign_in(&mut v, "ada@example.com", "Vermilion-Otter-42").await;
        assert_eq!(status, 429, "even the right password waits");
        assert!(headers.contains_key("retry-after"));
        assert_eq!(password_sign_in(&mut v, "nobody@example.com", "Wrong-Password-1").await.0, 401);
        let (status, _, unknown) = password_sign_in(&mut v, "nobody@example.com", "Wrong-Password-1").await;
        assert_eq!(status, 429);
        assert!(known.contains("Too many failed sign-ins") && unknown.contains("Too many failed sign-ins"));
    }

    async fn reaching_the_threshold_locks_the_address_and_is_audited(backend) {
        let app = crate::support::spawn_app_with(backend, &[
            ("GATEHOUSE_SIGNIN_RATE_LIMIT", "off"),
            ("GATEHOUSE_SIGNIN_EMAIL_RATE_LIMIT", "off"),
            ("GATEHOUSE_LOCKOUT_THRESHOLD", "1"),
        ]).await;
        add_user(&app, "ada@example.com").password("Vermilion-Otter-42").await;
        let mut v = crate::support::visitor::Visitor::new(&app);
        assert_eq!(password_sign_in(&mut v, "ada@example.com", "Wrong-Password-1").await.0, 401);
        let (status, headers, _) = password_sign_in(&mut v, "ada@example.com", "Vermilion-Otter-42").await;
        assert_eq!(status, 429);
        let retry: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
        assert!(retry > 800, "locked for the lock duration (15 minutes): {retry}");
        let actions: Vec<String> = gatehouse::audit::records_after(&app.db, 0, 100).await.unwrap().into_iter().map(|r| r.action).collect();
        assert!(actions.contains(&"auth.locked".to_owned()), "{actions:?}");
    }

    async fn quiet_failure_counts_and_dead_reset_tokens_are_purged(backend) {
        use gatehouse::identity::throttle::{self, ThrottleConfig};
        let app = spawn_app(backend).await;
        let config = ThrottleConfig::default();
        let keys = throttle::keys(&config, &Email::parse("ada@example.com").unwrap(), &gatehouse_security::ClientIp("203.0.113.9".parse().unwrap()));
        let t0 = gatehouse::store::now();
        let _counted = throttle::reserve(&app.db, &config, keys, t0).await.unwrap().unwrap();
        assert_eq!(throttle::purge_quiet(&app.db, &config, t0).await.unwrap(), 0, "recent counts stay");
        let later = t0 + time::Duration::hours(1);
        assert_eq!(throttle::purge_quiet(&app.db, &config, later).await.unwrap(), 2, "both keys, quiet for an hour");

        add_user(&app, "bo@example.com").password("Vermilion-Otter-42").await;
        let bo = users::find_by_email(&app.db, &Email::parse("bo@example.com").unwrap()).await.unwrap().unwrap();
        let old = t0 - time::Duration::days(3);
        app.db.query("INSERT INTO password_resets (token_hash, user_id, created_at, expires_at) VALUES ('h', $1, $2, $2)")
            .bind_uuid(bo.id).bind_time(old).execute().await.unwrap();
        assert_eq!(gatehouse::identity::password_reset::purge_expired(&app.db, t0).await.unwrap(), 1);
    }

    async fn delays_grow_then_lock_and_a_quiet_key_starts_over(backend) {
        use gatehouse::identity::throttle::{self, ThrottleConfig};
        let app = spawn_app(backend).await;
        let config = ThrottleConfig { lock_threshold: 4, lock_duration: std::time::Duration::from_secs(900) };
        let keys = throttle::keys(&config, &Email::parse("ada@example.com").unwrap(), &gatehouse_security::ClientIp("203.0.113.9".parse().unwrap()));
        let email_key = || keys[..1].to_vec();
        let t0 = gatehouse::store::now();
        let secs = |s: i64| t0 + time::Duration::seconds(s);
        // A wrong attempt let through is counted and sets its delay; a refused one says how long
        // to wait.
        let attempt = |keys: Vec<throttle::Key>, at| {
            let db = app.db.clone();
            async move {
                match throttle::reserve(&db, &config, keys, at).await.unwrap() {
                    Ok(counted) => {
                        let locked = counted.locked();
                        counted.fail(&db, &config, at).await.unwrap();
                        Ok(locked)
                    }
                    Err(wait) => Err(wait.as_secs()),
                }
            }
        };
        assert_eq!(attempt(email_key(), t0).await, Ok(false));
        assert_eq!(attempt(email_key(), t0).await, Err(1), "a refused attempt is not counted");
        assert_eq!(attempt(email_key(), secs(1)).await, Ok(false));
        assert_eq!(attempt(email_key(), secs(1)).await, Err(2));
        assert_eq!(attempt(email_key(), secs(3)).await, Ok(false));
        assert_eq!(attempt(email_key(), secs(3)).await, Err(4));
        assert_eq!(attempt(email_key(), secs(7)).await, Ok(true), "the fourth failure locks");
        assert_eq!(attempt(email_key(), secs(7)).await, Err(900));
        // Attempts in flight count before their outcome: the threshold's worth at once lock the
        // address, and no more get through.
        let quiet = secs(7 + 900);
        let mut in_flight = Vec::new();
        for _ in 0..4 {
            in_flight.push(throttle::reserve(&app.db, &config, email_key(), quiet).await.unwrap().expect("let through"));
        }
        assert!(throttle::reserve(&app.db, &config, email_key(), quiet).await.unwrap().is_err(), "a fifth in flight is refused");
        assert!(in_flight.last().unwrap().locked());
        for counted in in_flight {
            counted.refund(&app.db, quiet).await.unwrap();
        }
        // Quiet for longer than the lock: the next failure counts as the first.
        assert_eq!(attempt(email_key(), secs(7 + 1800)).await, Ok(false));
        assert_eq!(attempt(email_key(), secs(7 + 1800)).await, Err(1));
        // A right factor gives its attempt back and leaves no delay; the last factor clears.
        let right = throttle::reserve(&app.db, &config, email_key(), secs(7 + 1801)).await.unwrap().unwrap();
        right.refund(&app.db, secs(7 + 1801)).await.unwrap();
        assert_eq!(attempt(email_key(), secs(7 + 1801)).await, Ok(false), "no delay after a right factor");
        assert_eq!(attempt(email_key(), secs(7 + 1801)).await, Err(2), "but the failures before it still count");
        let last = throttle::reserve(&app.db, &config, email_key(), secs(7 + 1803)).await.unwrap().unwrap();
        last.succeed(&app.db, secs(7 + 1803)).await.unwrap();
        assert_eq!(attempt(email_key(), secs(7 + 1803)).await, Ok(false));
        assert_eq!(attempt(email_key(), secs(7 + 1803)).await, Err(1), "a success cleared the count");
        // The IP key tolerates `threshold` failures before delaying.
        let ip_key = || keys[1..].to_vec();
        for i in 0..4 {
            assert_eq!(attempt(ip_key(), secs(i)).await, Ok(false));
        }
        assert_eq!(attempt(ip_key(), secs(4)).await, Ok(false), "within the IP's grace");
        assert_eq!(attempt(ip_key(), secs(4)).await, Err(1));
    }

    async fn a_werkzeug_password_signs_in_and_is_upgraded_to_argon2id(backend) {
        let app = unlimited_app(backend).await;
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("users.jsonl");
        std::fs::write(&file, format!("{{\"email\": \"ada@example.com\", \"role\": \"user\", \"password_hash\": \"{WERKZEUG_PBKDF2}\"}}\n")).unwrap();
        assert!(run_cli(&app.cli_env(), &["user", "import", file.to_str().unwrap()]).status.success());
        let mut v = crate::support::visitor::Visitor::new(&app);
        let (status, _, _) = password_sign_in(&mut v, "ada@example.com", "correct horse battery staple").await;
        assert_eq!(status, 303, "a Flask user keeps their password");
        let hash = stored_hash(&app, "ada@example.com").await.unwrap();
        assert!(hash.starts_with("$argon2id$"), "upgraded at sign-in: {hash}");
        let mut w = crate::support::visitor::Visitor::new(&app);
        let (status, _, _) = password_sign_in(&mut w, "ada@example.com", "correct horse battery staple").await;
        assert_eq!(status, 303, "and it still works after the upgrade");
    }

    async fn a_stored_hash_over_the_cost_bounds_is_a_wrong_password(backend) {
        use argon2::password_hash::{PasswordHasher as _, SaltString, rand_core::OsRng};
        let app = unlimited_app(backend).await;
        // Written behind the import's back, as a restored backup or a hand-made row would be.
        let store = |email: &'static str, hash: String| {
            let db = app.db.clone();
            async move {
                let new = users::NewUser {
                    email: Email::parse(email).unwrap(),
                    display_name: gatehouse::identity::DisplayName::parse("").unwrap(),
                    role: gatehouse::identity::Role::User,
                };
                users::create_with_password_hash(&db, new, &hash, &gatehouse::audit::AuditContext::cli()).await.unwrap();
            }
        };
        // The right password's hash, with one pass more than the bound: only the bound refuses it.
        let params = argon2::Params::new(64, 11, 1, None).unwrap();
        let over = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params)
            .hash_password(b"Vermilion-Otter-42", &SaltString::generate(&mut OsRng))
            .unwrap()
            .to_string();
        store("ada@example.com", over).await;
        // A million passes: about a minute of work if it were verified.
        store("bo@example.com", "$argon2id$v=19$m=64,t=1000000,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g".into()).await;
        let mut v = crate::support::visitor::Visitor::new(&app);
        let (status, _, _) = password_sign_in(&mut v, "ada@example.com", "Vermilion-Otter-42").await;
        assert_eq!(status, 401, "a hash over the bounds never matches");
        let answered = tokio::time::timeout(
            std::time::Duration::from_secs(20),
            password_sign_in(&mut v, "bo@example.com", "Vermilion-Otter-42"),
        ).await;
        let (status, _, _) = answered.expect("answered after a normal verification's work, not the hash's own");
        assert_eq!(status, 401);
        let failed = gatehouse::audit::records_after(&app.db, 0, 100).await.unwrap().into_iter().filter(|r| r.action == "auth.password_failed").count();
        assert_eq!(failed, 2, "both are failed sign-ins, as a wrong password is");
    }

    async fn a_disabled_user_cannot_sign_in_with_a_password(backend) {
        let app = unlimited_app(backend).await;
        add_user(&app, "ada@example.com").password("Vermilion-Otter-42").await;
        assert!(run_cli(&app.cli_env(), &["user", "disable", "--email", "ada@example.com"]).status.success());
        let mut v = crate::support::visitor::Visitor::new(&app);
        let (status, _, _) = password_sign_in(&mut v, "ada@example.com", "Vermilion-Otter-42").await;
        assert_eq!(status, 401);
    }
}

on_every_backend! {
    async fn a_user_changes_their_password_and_their_other_sessions_end(backend) {
        let sink = crate::support::smtp_sink::SmtpSink::start().await;
        let port = sink.port.to_string();
        let app = crate::support::spawn_app_with(backend, &[
            ("GATEHOUSE_SIGNIN_RATE_LIMIT", "off"),
            ("GATEHOUSE_SIGNIN_EMAIL_RATE_LIMIT", "off"),
            ("SMTP_HOST", "127.0.0.1"),
            ("SMTP_PORT", port.as_str()),
            ("SMTP_TLS", "none"),
        ]).await;
        add_user(&app, "ada@example.com").password("Vermilion-Otter-42").await;
        let mut here = crate::support::visitor::Visitor::new(&app);
        let mut elsewhere = crate::support::visitor::Visitor::new(&app);
        assert_eq!(password_sign_in(&mut here, "ada@example.com", "Vermilion-Otter-42").await.0, 303);
        assert_eq!(password_sign_in(&mut elsewhere, "ada@example.com", "Vermilion-Otter-42").await.0, 303);

        let csrf = here.csrf_from("/account/password").await;
        let (status, _, page) = here.post("/account/password", &[("csrf_token", &csrf), ("current", "Vermilion-Otter-42"), ("new", "Cobalt-Heron-77!"), ("confirm", "Cobalt-Heron-77!")]).await;
        assert_eq!(status, 200, "{page}");
        assert!(page.contains("Your password is saved"), "{page}");

        assert!(here.get("/").await.2.contains("ada@example.com"), "this session stays");
        assert!(!elsewhere.get("/").await.2.contains("ada@example.com"), "the other session ended");
        let mut fresh = crate::support::visitor::Visitor::new(&app);
        assert_eq!(password_sign_in(&mut fresh, "ada@example.com", "Cobalt-Heron-77!").await.0, 303);
        let mut old = crate::support::visitor::Visitor::new(&app);
        assert_eq!(password_sign_in(&mut old, "ada@example.com", "Vermilion-Otter-42").await.0, 401);

        let notice = sink.wait_for_containing("ada@example.com", "Your Gatehouse password was changed").await;
        assert!(!notice.data.contains("Cobalt-Heron"), "the password is never mailed");
        let actions: Vec<String> = gatehouse::audit::records_after(&app.db, 0, 100).await.unwrap().into_iter().map(|r| r.action).collect();
        assert!(actions.contains(&"user.password_change".to_owned()), "{actions:?}");
    }

    async fn a_wrong_current_password_or_a_weak_new_one_changes_nothing(backend) {
        let app = unlimited_app(backend).await;
        add_user(&app, "ada@example.com").password("Vermilion-Otter-42").await;
        let mut v = crate::support::visitor::Visitor::new(&app);
        assert_eq!(password_sign_in(&mut v, "ada@example.com", "Vermilion-Otter-42").await.0, 303);
        let before = stored_hash(&app, "ada@example.com").await;
        let csrf = v.csrf_from("/account/password").await;
        let (status, _, page) = v.post("/account/password", &[("csrf_token", &csrf), ("current", "Not-My-Password-1"), ("new", "Cobalt-Heron-77!"), ("confirm", "Cobalt-Heron-77!")]).await;
        assert_eq!(status, 400);
        assert!(page.contains("current password is not right"), "{page}");
        let (status, _, page) = v.post("/account/password", &[("csrf_token", &csrf), ("current", "Vermilion-Otter-42"), ("new", "password"), ("confirm", "password")]).await;
        assert_eq!(status, 422);
        assert!(page.contains("at least 12") && page.contains("less common"), "{page}");
        let (status, _, _) = v.post("/account/password", &[("csrf_token", &csrf), ("current", "Vermilion-Otter-42"), ("new", "Cobalt-Heron-77!"), ("confirm", "Cobalt-Heron-78!")]).await;
        assert_eq!(status, 400, "the two new passwords differ");
        assert_eq!(stored_hash(&app, "ada@example.com").await, before);
    }
}

async fn app_with_sink(
    backend: crate::support::Backend,
    extra: &[(&str, &str)],
) -> (crate::support::TestApp, crate::support::smtp_sink::SmtpSink) {
    crate::support::spawn_app_with_mail(backend, extra).await
}

async fn ask_for_reset(v: &mut crate::support::visitor::Visitor<'_>, email: &str) -> (u16, String) {
    let csrf = v.csrf_from("/password/forgot").await;
    let (status, _, page) = v
        .post(
            "/password/forgot",
            &[("csrf_token", &csrf), ("email", email)],
        )
        .await;
    (status, page)
}

fn reset_link(mail: &crate::support::smtp_sink::ReceivedMail) -> String {
    let marker = "/password/reset?token=";
    let start = mail.data.find(marker).expect("a reset link");
    mail.data[start..start + marker.len() + 43].to_owned()
}

async fn choose(
    v: &mut crate::support::visitor::Visitor<'_>,
    link: &str,
    new: &str,
) -> (u16, String) {
    let (status, headers, page) = v.get(link).await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(headers["referrer-policy"], "same-origin");
    let token = crate::support::visitor::field(&page, "token").unwrap();
    let csrf = crate::support::visitor::field(&page, "csrf_token").unwrap();
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

on_every_backend! {
    async fn a_forgotten_password_is_reset_by_mail_and_the_lock_and_sessions_end(backend) {
        let (app, sink) = app_with_sink(backend, &[("GATEHOUSE_LOCKOUT_THRESHOLD", "1")]).await;
        add_user(&app, "ada@example.com").password("Vermilion-Otter-42").await;
        let mut old_session = crate::support::visitor::Visitor::new(&app);
        assert_eq!(password_sign_in(&mut old_session, "ada@example.com", "Vermilion-Otter-42").await.0, 303);
        // An attacker locks the address (threshold 1: locked for 15 minutes).
        let mut attacker = crate::support::visitor::Visitor::new(&app);
        password_sign_in(&mut attacker, "ada@example.com", "Guess-Number-1").await;
        assert_eq!(password_sign_in(&mut attacker, "ada@example.com", "Vermilion-Otter-42").await.0, 429);

        let mut v = crate::support::visitor::Visitor::new(&app);
        let (status, page) = ask_for_reset(&mut v, "ada@example.com").await;
        assert_eq!(status, 200);
        assert!(page.contains("a reset link is on its way"), "{page}");
        let link = reset_link(&sink.wait_for("ada@example.com").await);
        let (status, page) = choose(&mut v, &link, "Cobalt-Heron-77!").await;
        assert_eq!(status, 200, "{page}");
        assert!(page.contains("Your password is reset"), "{page}");

        assert!(!old_session.get("/").await.2.contains("ada@example.com"), "every session ended");
        let mut fresh = crate::support::visitor::Visitor::new(&app);
        assert_eq!(password_sign_in(&mut fresh, "ada@example.com", "Cobalt-Heron-77!").await.0, 303, "the reset cleared the lock");
        let (status, _) = choose(&mut crate::support::visitor::Visitor::new(&app), &link, "Another-Heron-88!").await;
        assert_eq!(status, 400, "a reset link works once");
        let actions: Vec<String> = gatehouse::audit::records_after(&app.db, 0, 100).await.unwrap().into_iter().map(|r| r.action).collect();
        assert!(actions.contains(&"user.password_reset".to_owned()), "{actions:?}");
    }

    async fn unknown_addresses_get_the_same_reset_answer_and_no_mail(backend) {
        let (app, sink) = app_with_sink(backend, &[]).await;
        add_user(&app, "ada@example.com").password("Vermilion-Otter-42").await;
        let mut v = crate::support::visitor::Visitor::new(&app);
        let (s1, unknown) = ask_for_reset(&mut v, "nobody@example.com").await;
        let (s2, known) = ask_for_reset(&mut v, "ada@example.com").await;
        assert_eq!(s1, s2);
        let strip = |page: &str, email: &str| crate::support::visitor::without_csrf_tokens(&page.replace(email, "X"));
        assert_eq!(strip(&unknown, "nobody@example.com"), strip(&known, "ada@example.com"));
        sink.wait_for("ada@example.com").await;
        assert!(sink.messages_to("nobody@example.com").is_empty());
        let requests = gatehouse::audit::records_after(&app.db, 0, 100).await.unwrap().into_iter().filter(|r| r.action == "auth.password_reset_requested").count();
        assert_eq!(requests, 2, "every request is audited, known address or not");
    }

    async fn a_weak_new_password_does_not_use_up_the_reset_link(backend) {
        let (app, sink) = app_with_sink(backend, &[]).await;
        add_user(&app, "ada@example.com").password("Vermilion-Otter-42").await;
        let mut v = crate::support::visitor::Visitor::new(&app);
        ask_for_reset(&mut v, "ada@example.com").await;
        let link = reset_link(&sink.wait_for("ada@example.com").await);
        let (status, page) = choose(&mut v, &link, "password").await;
        assert_eq!(status, 422);
        assert!(page.contains("less common"), "{page}");
        let (status, _) = choose(&mut v, &link, "Cobalt-Heron-77!").await;
        assert_eq!(status, 200);
    }
}
