//! What the password rules allow: any printable character, and a password for as long as its
//! owner wants it (ASVS V2.1.4, V2.1.10).

use std::time::Duration;

use crate::on_every_backend;
use crate::support::visitor::Visitor;
use crate::support::{add_user, run_cli_with_stdin, spawn_unlimited_app};

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

async fn change_password(v: &mut Visitor<'_>, current: &str, new: &str) -> (u16, String) {
    let csrf = v.csrf_from("/account/password").await;
    let (status, _, page) = v
        .post(
            "/account/password",
            &[
                ("csrf_token", &csrf),
                ("current", current),
                ("new", new),
                ("confirm", new),
            ],
        )
        .await;
    (status, page)
}

on_every_backend! {
    async fn spaces_emoji_and_any_script_are_allowed_in_passwords(backend) {
        let app = spawn_unlimited_app(backend, &[]).await;
        for (email, password, without) in [
            ("ada@example.com", "Grüne Äpfel 🍏 und 7 Birnen!", "Grüne Äpfel  und 7 Birnen!"),
            ("bo@example.com", "Москва 2024 — белые ночи!", "Москва 2024 — белые ночи"),
            ("cy@example.com", "東京タワー 333m Tokyo 🗼 #1", "東京タワー 333m Tokyo  #1"),
        ] {
            let out = run_cli_with_stdin(&app.cli_env(), &["user", "add", "--email", email, "--password-stdin"], &format!("{password}\n"));
            assert!(out.status.success(), "{password:?} refused: {}", String::from_utf8_lossy(&out.stderr));
            let mut v = Visitor::new(&app);
            assert_eq!(password_sign_in(&mut v, email, password).await, 303, "{password:?} signs in");
            let mut other = Visitor::new(&app);
            assert_eq!(password_sign_in(&mut other, email, without).await, 401, "every character of {password:?} counts");
        }
    }

    async fn a_password_never_expires_and_an_old_one_may_be_chosen_again(backend) {
        let app = spawn_unlimited_app(backend, &[]).await;
        add_user(&app, "ada@example.com").password("Vermilion-Otter-42").await;
        app.clock.advance(Duration::from_secs(3 * 365 * 24 * 3600));
        let mut v = Visitor::new(&app);
        assert_eq!(password_sign_in(&mut v, "ada@example.com", "Vermilion-Otter-42").await, 303, "three years on, the password still signs in");
        let (_, _, page) = v.get("/").await;
        assert!(page.contains("ada@example.com"), "signed in, not sent to change the password: {page}");
        let (status, page) = change_password(&mut v, "Vermilion-Otter-42", "Cobalt-Heron-77!").await;
        assert_eq!(status, 200, "{page}");
        let (status, page) = change_password(&mut v, "Cobalt-Heron-77!", "Vermilion-Otter-42").await;
        assert_eq!(status, 200, "the earlier password may be chosen again: {page}");
        let mut fresh = Visitor::new(&app);
        assert_eq!(password_sign_in(&mut fresh, "ada@example.com", "Vermilion-Otter-42").await, 303);
    }
}
