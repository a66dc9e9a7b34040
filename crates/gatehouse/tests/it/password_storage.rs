//! How passwords rest in the database: peppered argon2id (ASVS V2.4.5), weak imported PBKDF2
//! hashes wrapped at import (V2.4.3), and passwords hashed whole, never truncated (V2.1.3).

use std::time::Duration;

use argon2::password_hash::{PasswordHash, PasswordHasher as _, PasswordVerifier as _, SaltString};
use gatehouse::identity::users::{self, NewUser};
use gatehouse::identity::{DisplayName, Email, Role};

use crate::on_every_backend;
use crate::support::visitor::Visitor;
use crate::support::{GOOD_KEY, TestApp, add_user, run_cli, spawn_instance, spawn_unlimited_app};

const EMAIL: &str = "ada@example.com";
const PASSWORD: &str = "Vermilion-Otter-42";
/// Made with Werkzeug 3.1.8 for "correct horse battery staple": 1,000 iterations.
const WEAK_PBKDF2: &str = "pbkdf2:sha256:1000$cVyKKW03zcFPpHTW$2e12890e79f16dcb0a2ad231388a3e48473030d94b2862f8ead28abb5e9cd406";
const WEAK_PBKDF2_DIGEST: &str = "2e12890e79f16dcb0a2ad231388a3e48473030d94b2862f8ead28abb5e9cd406";
const FLASK_PASSWORD: &str = "correct horse battery staple";
/// `keyid=` of a peppered hash: the bytes `pepper-1`.
const PEPPERED: &str = ",keyid=cGVwcGVyLTE$";

async fn stored_hash(app: &TestApp, email: &str) -> String {
    let user = users::find_by_email(&app.db, &Email::parse(email).unwrap())
        .await
        .unwrap()
        .expect("the user exists");
    users::password_hash(&app.db, user.id)
        .await
        .unwrap()
        .expect("a password")
}

/// Whether plain argon2 (no secret) verifies `password` against `stored`.
fn plain_argon2_verifies(password: &str, stored: &str) -> bool {
    let parsed = PasswordHash::new(stored).expect("a PHC string");
    argon2::Argon2::default()
        .verify_password(password.as_bytes(), &parsed)
        .is_ok()
}

/// Signs in with a password on the form; the status.
async fn sign_in(app: &TestApp, email: &str, password: &str) -> u16 {
    let mut v = Visitor::new(app);
    let csrf = v.csrf_from("/login").await;
    let fields = [
        ("csrf_token", csrf.as_str()),
        ("email", email),
        ("password", password),
    ];
    v.post("/login/password", &fields).await.0
}

on_every_backend! {
    async fn a_new_password_hash_is_peppered_and_plain_argon2_cannot_verify_it(backend) {
        let app = spawn_unlimited_app(backend, &[]).await;
        let out = crate::support::run_cli_with_stdin(&app.cli_env(), &["user", "add", "--email", EMAIL, "--password-stdin"], PASSWORD);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let stored = stored_hash(&app, EMAIL).await;
        assert!(stored.starts_with("$argon2id$") && stored.contains(PEPPERED), "{stored}");
        assert!(!plain_argon2_verifies(PASSWORD, &stored), "a stolen hash alone cannot be checked against guesses");
        assert_eq!(sign_in(&app, EMAIL, PASSWORD).await, 303);
        assert_eq!(stored_hash(&app, EMAIL).await, stored, "a current hash is not rehashed");
    }

    async fn a_hash_from_before_the_pepper_signs_in_and_is_rehashed_with_it(backend) {
        let app = spawn_unlimited_app(backend, &[]).await;
        // Hashed as Gatehouse did before the pepper: argon2id with the same parameters.
        let before = argon2::Argon2::default()
            .hash_password(PASSWORD.as_bytes(), &SaltString::generate(&mut argon2::password_hash::rand_core::OsRng))
            .unwrap()
            .to_string();
        assert!(before.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{before}");
        let new = NewUser { email: Email::parse(EMAIL).unwrap(), display_name: DisplayName::default(), role: Role::User };
        users::create_with_password_hash(&app.db, new, &before, &gatehouse::audit::AuditContext::cli()).await.unwrap();

        assert_eq!(sign_in(&app, EMAIL, PASSWORD).await, 303, "an old hash still verifies");
        let after = stored_hash(&app, EMAIL).await;
        assert!(after.contains(PEPPERED), "upgraded at sign-in: {after}");
        assert!(!plain_argon2_verifies(PASSWORD, &after));
        app.clock.advance(Duration::from_secs(60));
        assert_eq!(sign_in(&app, EMAIL, PASSWORD).await, 303, "and signs in after the upgrade");
    }

    async fn after_a_secret_key_change_and_reencrypt_every_password_still_signs_in(backend) {
        let app = spawn_unlimited_app(backend, &[]).await;
        add_user(&app, EMAIL).password(PASSWORD).await;
        let stored = stored_hash(&app, EMAIL).await;
        assert!(stored.contains(PEPPERED), "{stored}");
        let new_key = "a-brand-new-secret-key-0123456789abcdef0123456789";
        let mut env = app.cli_env();
        env.push(("GATEHOUSE_SECRET_KEY".into(), new_key.into()));
        env.push(("GATEHOUSE_SECRET_KEY_PREVIOUS".into(), GOOD_KEY.into()));
        let out = run_cli(&env, &["keys", "reencrypt"]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

        let restarted = spawn_instance(&app, &[("GATEHOUSE_SECRET_KEY", new_key)]).await;
        assert_eq!(sign_in(&restarted, EMAIL, PASSWORD).await, 303, "the pepper was sealed again, not lost");
        assert_eq!(stored_hash(&restarted, EMAIL).await, stored, "nothing had to be rehashed");
        restarted.clock.advance(Duration::from_secs(60));
        assert_eq!(sign_in(&restarted, EMAIL, "Wrong-Password-1").await, 401);
    }

    async fn a_weak_imported_pbkdf2_hash_rests_wrapped_in_argon2id_and_is_replaced_at_sign_in(backend) {
        let app = spawn_unlimited_app(backend, &[]).await;
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("users.jsonl");
        std::fs::write(&file, format!("{{\"email\": \"{EMAIL}\", \"role\": \"user\", \"password_hash\": \"{WEAK_PBKDF2}\"}}\n")).unwrap();
        let out = run_cli(&app.cli_env(), &["user", "import", file.to_str().unwrap()]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

        let imported = stored_hash(&app, EMAIL).await;
        assert!(!imported.contains(WEAK_PBKDF2_DIGEST), "no PBKDF2 digest rests in the database: {imported}");
        assert!(imported.starts_with("pbkdf2-argon2id:sha256:1000$cVyKKW03zcFPpHTW$$argon2id$v=19$m=19456,t=2,p=1,keyid="), "{imported}");

        assert_eq!(sign_in(&app, EMAIL, "Wrong-Password-1").await, 401);
        app.clock.advance(Duration::from_secs(60));
        assert_eq!(sign_in(&app, EMAIL, FLASK_PASSWORD).await, 303, "the Flask user keeps their password");
        let after = stored_hash(&app, EMAIL).await;
        assert!(after.starts_with("$argon2id$v=19$m=19456,t=2,p=1,keyid=cGVwcGVyLTE$"), "a plain argon2id hash after sign-in: {after}");
        app.clock.advance(Duration::from_secs(60));
        assert_eq!(sign_in(&app, EMAIL, FLASK_PASSWORD).await, 303);
    }

    async fn a_100_character_password_is_checked_whole_not_its_72_or_99_character_prefix(backend) {
        let app = spawn_unlimited_app(backend, &[]).await;
        let password: String = "Vermilion-Otter-42-lagoon-".chars().cycle().take(100).collect();
        let out = crate::support::run_cli_with_stdin(&app.cli_env(), &["user", "add", "--email", EMAIL, "--password-stdin"], &password);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        for prefix in [72, 99] {
            assert_eq!(sign_in(&app, EMAIL, &password[..prefix]).await, 401, "the first {prefix} characters alone");
            // Past the failure's delay.
            app.clock.advance(Duration::from_secs(60));
        }
        assert_eq!(sign_in(&app, EMAIL, &password).await, 303, "all 100");
    }
}
