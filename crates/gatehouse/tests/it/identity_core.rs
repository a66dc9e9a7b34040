//! The one identity core, tried as an attacker would: each test here is a hole that two copies
//! of one rule once left open.

use std::time::Duration;

use serde_json::{Value, json};

use crate::on_every_backend;
use crate::support::visitor::Visitor;
use crate::support::{Backend, TestApp, add_user, run_cli, spawn_app_with, totp_code};

const EMAIL: &str = "root@example.com";
const PASSWORD: &str = "Vermilion-Otter-42";

/// An app whose admins must have MFA, with one admin (a password, MFA as `with_mfa` says):
/// the app and, with MFA, the TOTP setup key.
async fn app(
    backend: Backend,
    extra: &[(&str, &str)],
    with_mfa: bool,
) -> (TestApp, Option<String>) {
    let mut settings = vec![
        ("GATEHOUSE_SIGNIN_RATE_LIMIT", "off"),
        ("GATEHOUSE_SIGNIN_EMAIL_RATE_LIMIT", "off"),
        ("GATEHOUSE_MFA_REQUIRED_ROLES", "admin"),
    ];
    settings.extend_from_slice(extra);
    let app = spawn_app_with(backend, &settings).await;
    let admin = add_user(&app, EMAIL).role("admin").password(PASSWORD);
    let admin = if with_mfa {
        admin.mfa().await
    } else {
        admin.await
    };
    (app, admin.setup_key)
}

async fn grant(app: &TestApp, body: Value) -> (u16, Value) {
    let res = app
        .request(reqwest::Method::POST, "/api/v1/auth/token")
        .json(&body)
        .send()
        .await
        .unwrap();
    (
        res.status().as_u16(),
        res.json().await.unwrap_or(Value::Null),
    )
}

async fn get_with(app: &TestApp, path: &str, header: (&str, &str)) -> (u16, Value) {
    let res = app
        .request(reqwest::Method::GET, path)
        .header(header.0, header.1)
        .send()
        .await
        .unwrap();
    (
        res.status().as_u16(),
        res.json().await.unwrap_or(Value::Null),
    )
}

on_every_backend! {
    async fn a_role_that_requires_mfa_gets_no_api_token_without_it(backend) {
        let (app, _) = app(backend, &[], false).await;
        let (status, body) = grant(&app, json!({"grant_type": "password", "email": EMAIL, "password": PASSWORD})).await;
        assert_eq!(status, 403, "{body}");
        assert_eq!(body["error"], "mfa_enrolment_required", "{body}");
        assert!(body.get("access_token").is_none() && body.get("refresh_token").is_none());
    }

    async fn after_an_mfa_reset_no_token_or_key_of_an_admin_reaches_the_api(backend) {
        let (app, setup_key) = app(backend, &[], true).await;
        app.clock.advance(Duration::from_secs(30));
        let otp = totp_code(&app, &setup_key.unwrap(), 0);
        let (status, body) = grant(&app, json!({"grant_type": "password", "email": EMAIL, "password": PASSWORD, "otp": otp})).await;
        assert_eq!(status, 200, "{body}");
        let access = body["access_token"].as_str().unwrap().to_owned();
        let made = app
            .request(reqwest::Method::POST, "/api/v1/api-keys")
            .bearer_auth(&access)
            .json(&json!({"name": "ci", "scopes": ["items:read"]}))
            .send()
            .await
            .unwrap();
        assert_eq!(made.status(), 201);
        let key = made.json::<Value>().await.unwrap()["key"].as_str().unwrap().to_owned();
        assert_eq!(get_with(&app, "/api/v1/me", ("x-api-key", &key)).await.0, 200);

        let out = run_cli(&app.cli_env(), &["user", "reset-mfa", "--email", EMAIL]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        app.clock.advance(Duration::from_secs(6));

        let (status, body) = get_with(&app, "/api/v1/admin/users", ("x-api-key", &key)).await;
        assert_eq!(status, 403, "{body}");
        assert_eq!(body["error"], "mfa_enrolment_required");
        let (status, body) = get_with(&app, "/api/v1/me", ("authorization", &format!("Bearer {key}"))).await;
        assert_eq!((status, body["error"].as_str()), (403, Some("mfa_enrolment_required")));
        assert_eq!(get_with(&app, "/api/v1/me", ("authorization", &format!("Bearer {access}"))).await.0, 401, "the reset ended the API sign-in");
        let (status, body) = grant(&app, json!({"grant_type": "password", "email": EMAIL, "password": PASSWORD})).await;
        assert_eq!((status, body["error"].as_str()), (403, Some("mfa_enrolment_required")));        // Ending a sign-in stays possible.
        let revoked = app
            .request(reqwest::Method::POST, "/api/v1/auth/revoke")
            .header("x-api-key", &key)
            .json(&json!({"token": access}))
            .send()
            .await
            .unwrap();
        assert_eq!(revoked.status(), 200);
    }

    async fn a_right_password_does_not_reset_the_count_of_wrong_codes(backend) {
        let (app, _) = app(backend, &[("GATEHOUSE_LOCKOUT_THRESHOLD", "3")], true).await;
        let mut v = Visitor::new(&app);
        for round in 0..3 {
            app.clock.advance(Duration::from_secs(60));
            let csrf = v.csrf_from("/login").await;
            let (status, headers, _) = v.post("/login/password", &[("csrf_token", &csrf), ("email", EMAIL), ("password", PASSWORD)]).await;
            assert_eq!((status, headers["location"].to_str().unwrap()), (303, "/login/mfa"), "round {round}");
            app.clock.advance(Duration::from_secs(60));
            let csrf = v.csrf_from("/login/mfa").await;
            let (status, _, _) = v.post("/login/mfa", &[("csrf_token", &csrf), ("code", "000000")]).await;
            assert_eq!(status, 401, "round {round}");
        }
        app.clock.advance(Duration::from_secs(60));
        let csrf = v.csrf_from("/login").await;
        let (status, _, _) = v.post("/login/password", &[("csrf_token", &csrf), ("email", EMAIL), ("password", PASSWORD)]).await;
        assert_eq!(status, 429, "three wrong codes locked the address, right passwords between them or not");
        let actions: Vec<String> = gatehouse::audit::records_after(&app.db, 0, 200).await.unwrap().into_iter().map(|r| r.action).collect();
        assert!(actions.contains(&"auth.locked".to_owned()), "{actions:?}");
    }

    async fn concurrent_guesses_cannot_pass_the_lock_together(backend) {
        let (app, _) = app(backend, &[("GATEHOUSE_LOCKOUT_THRESHOLD", "3"), ("GATEHOUSE_MFA_REQUIRED_ROLES", "")], false).await;
        let guesses = (0..12).map(|i| {
            let body = json!({"grant_type": "password", "email": EMAIL, "password": format!("Wrong-Password-{i}")});
            let app = &app;
            async move { grant(app, body).await.0 }
        });
        let statuses = futures_util::future::join_all(guesses).await;
        let checked = statuses.iter().filter(|s| **s == 401).count();
        assert!(checked <= 3, "at most the threshold's worth of guesses are checked: {statuses:?}");
        assert!(statuses.iter().all(|s| *s == 401 || *s == 429), "{statuses:?}");
        let (status, _) = grant(&app, json!({"grant_type": "password", "email": EMAIL, "password": PASSWORD})).await;
        assert_eq!(status, 429, "locked: even the right password waits");
    }

    async fn concurrent_right_passwords_for_one_account_all_sign_in(backend) {
        // Each sign-in locks its address's and its client's throttle rows, and a success deletes
        // the address's: many at once must neither deadlock (a 500 on PostgreSQL) nor wait.
        let (app, _) = app(backend, &[("GATEHOUSE_LOCKOUT_THRESHOLD", "1000"), ("GATEHOUSE_MFA_REQUIRED_ROLES", ""), ("GATEHOUSE_DATABASE_MAX_CONNECTIONS", "16"), ("GATEHOUSE_RATE_LIMIT", "100000/min")], false).await;
        for wave in 0..15 {
            let sign_ins = (0..16).map(|_| {
                let body = json!({"grant_type": "password", "email": EMAIL, "password": PASSWORD});
                let app = &app;
                async move { grant(app, body).await.0 }
            });
            let statuses = futures_util::future::join_all(sign_ins).await;
            assert!(statuses.iter().all(|s| *s == 200), "wave {wave}: {statuses:?}");
        }
    }

    async fn an_ipv6_client_cannot_escape_the_throttle_by_changing_its_low_bits(backend) {
        let (app, _) = app(backend, &[("GATEHOUSE_TRUSTED_PROXIES", "127.0.0.1/32"), ("GATEHOUSE_LOCKOUT_THRESHOLD", "2")], false).await;
        let mut statuses = Vec::new();
        for i in 1..=4 {
            let mut v = Visitor::new(&app);
            let csrf = v.csrf_from("/login").await;
            // A fresh address every time: only the client's key can slow this down.
            let res = app
                .request(reqwest::Method::POST, "/login/password")
                .header("cookie", v.cookies.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("; "))
                .header("x-forwarded-for", format!("2001:db8:1:2::{i:x}"))
                .form(&[("csrf_token", csrf.as_str()), ("email", &format!("guess{i}@example.com")), ("password", "Wrong-Password-1")])
                .send()
                .await
                .unwrap();
            statuses.push(res.status().as_u16());
        }
        // The /64 tolerates two failures (the threshold) before its delays start.
        assert_eq!(statuses, [401, 401, 401, 429], "one /64 is one client");
    }

    async fn a_non_ascii_cookie_from_a_neighbour_does_not_sign_the_user_out(backend) {
        let (app, _) = app(backend, &[("GATEHOUSE_MFA_REQUIRED_ROLES", "")], false).await;
        let mut v = Visitor::new(&app);
        let csrf = v.csrf_from("/login").await;
        let (status, _, _) = v.post("/login/password", &[("csrf_token", &csrf), ("email", EMAIL), ("password", PASSWORD)]).await;
        assert_eq!(status, 303);
        let session = v.cookies["gatehouse"].clone();
        let mut header = b"theme=caf\xe9; ".to_vec();
        header.extend_from_slice(format!("gatehouse={session}").as_bytes());
        let res = app
            .request(reqwest::Method::GET, "/account")
            .header("cookie", reqwest::header::HeaderValue::from_bytes(&header).unwrap())
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200, "still signed in");
        assert!(res.text().await.unwrap().contains(EMAIL));
    }

    async fn concurrent_key_requests_cannot_pass_the_per_user_cap(backend) {
        let (app, _) = app(backend, &[("GATEHOUSE_MFA_REQUIRED_ROLES", ""), ("GATEHOUSE_API_RATE_LIMIT", "off")], false).await;
        let (status, body) = grant(&app, json!({"grant_type": "password", "email": EMAIL, "password": PASSWORD})).await;
        assert_eq!(status, 200, "{body}");
        let access = body["access_token"].as_str().unwrap().to_owned();
        let cap = gatehouse::identity::api_keys::MAX_PER_USER as usize;
        let attempts = (0..cap + 10).map(|i| {
            app.request(reqwest::Method::POST, "/api/v1/api-keys")
                .bearer_auth(&access)
                .json(&json!({"name": format!("k{i}"), "scopes": ["items:read"]}))
                .send()
        });
        let statuses: Vec<u16> = futures_util::future::join_all(attempts).await.into_iter().map(|r| r.unwrap().status().as_u16()).collect();
        let made = statuses.iter().filter(|s| **s == 201).count();
        assert_eq!(made, cap, "{statuses:?}");
        assert!(statuses.iter().all(|s| *s == 201 || *s == 409), "{statuses:?}");
    }
}
