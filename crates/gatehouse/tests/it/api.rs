//! API access over HTTP: the password and refresh-token grants, bearer tokens and what is
//! refused (tampered, foreign, expired, revoked), refresh-token reuse, MFA on the API, the JWKS
//! and key rotation.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use gatehouse::keys::Keys;
use secrecy::SecretString;
use serde_json::{Value, json};

use crate::on_every_backend;
use crate::support::{
    GOOD_KEY, TestApp, add_user, run_cli, run_cli_with_stdin, spawn_app_with, totp_code,
};

const EMAIL: &str = "ada@example.com";
const PASSWORD: &str = "Vermilion-Otter-42";

pub(crate) async fn app(backend: crate::support::Backend) -> TestApp {
    let app = spawn_app_with(
        backend,
        &[
            ("GATEHOUSE_SIGNIN_RATE_LIMIT", "off"),
            ("GATEHOUSE_SIGNIN_EMAIL_RATE_LIMIT", "off"),
        ],
    )
    .await;
    add_user(&app, EMAIL)
        .role("manager")
        .password(PASSWORD)
        .await;
    app
}

pub(crate) async fn grant(app: &TestApp, body: Value) -> (u16, reqwest::header::HeaderMap, Value) {
    let res = app
        .request(reqwest::Method::POST, "/api/v1/auth/token")
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    let headers = res.headers().clone();
    (status, headers, res.json().await.unwrap_or(Value::Null))
}

pub(crate) async fn password_grant(app: &TestApp) -> Value {
    let (status, _, body) = grant(
        app,
        json!({"grant_type": "password", "email": EMAIL, "password": PASSWORD}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    body
}

pub(crate) async fn me(app: &TestApp, token: &str) -> (u16, reqwest::header::HeaderMap, Value) {
    let res = app
        .request(reqwest::Method::GET, "/api/v1/me")
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    let headers = res.headers().clone();
    (status, headers, res.json().await.unwrap_or(Value::Null))
}

pub(crate) fn parts(token: &str) -> (Value, Value, String) {
    let mut it = token.split('.');
    let header =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(it.next().unwrap()).unwrap()).unwrap();
    let claims =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(it.next().unwrap()).unwrap()).unwrap();
    (header, claims, it.next().unwrap().to_owned())
}

/// The app's current signing key, read from the database with the app's secret key.
async fn our_signing_key(app: &TestApp) -> jsonwebtoken::EncodingKey {
    let sealed: String = app
        .db
        .query("SELECT private_sealed FROM signing_keys ORDER BY created_at DESC LIMIT 1")
        .fetch_one()
        .await
        .unwrap()
        .get(0)
        .unwrap();
    let keys = Keys::sealing_only(&SecretString::from(GOOD_KEY), None);
    let pkcs8 = keys
        .open(gatehouse::keys::Purpose::SigningKeys, &sealed)
        .unwrap()
        .plaintext;
    jsonwebtoken::EncodingKey::from_ed_der(&pkcs8)
}

fn join(header: &Value, claims: &Value, signature: &str) -> String {
    format!(
        "{}.{}.{signature}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    )
}

on_every_backend! {
    async fn the_password_grant_gives_tokens_that_open_the_api(backend) {
        let app = app(backend).await;
        let body = password_grant(&app).await;
        assert_eq!(body["token_type"], "Bearer");
        assert_eq!(body["expires_in"], 900);
        let access = body["access_token"].as_str().unwrap();
        assert!(body["refresh_token"].as_str().unwrap().starts_with("grt_"));
        let (header, claims, _) = parts(access);
        assert_eq!(header["alg"], "EdDSA");
        assert!(header["kid"].is_string());
        assert_eq!(claims["aud"], "gatehouse-api");
        assert_eq!(claims["iss"], app.address);
        assert_eq!(claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(), 900);

        let (status, headers, me_body) = me(&app, access).await;
        assert_eq!(status, 200, "{me_body}");
        assert_eq!(me_body["email"], EMAIL);
        assert_eq!(me_body["role"], "manager");
        assert_eq!(headers["cache-control"], "no-store");

        let res = app.get("/api/v1/me").await;
        assert_eq!(res.status(), 401);
        assert!(res.headers()["www-authenticate"].to_str().unwrap().starts_with("Bearer"));
        let problem: Value = res.json().await.unwrap();
        assert_eq!(problem["status"], 401);

        let records = gatehouse::audit::records_after(&app.db, 0, 100).await.unwrap();
        assert!(records.iter().any(|r| r.action == "auth.sign_in" && r.changes.contains("api_password")));
    }

    async fn wrong_credentials_get_the_same_answer_for_known_and_unknown_accounts(backend) {
        let app = app(backend).await;
        let (s1, h1, mut wrong) = grant(&app, json!({"grant_type": "password", "email": EMAIL, "password": "Not-The-Password-1"})).await;
        let (s2, h2, mut unknown) = grant(&app, json!({"grant_type": "password", "email": "nobody@example.com", "password": "Not-The-Password-1"})).await;
        assert_eq!((s1, s2), (401, 401));
        assert_eq!(h1["www-authenticate"], h2["www-authenticate"]);
        wrong["request_id"] = Value::Null;
        unknown["request_id"] = Value::Null;
        assert_eq!(wrong, unknown);
        let (status, _, _) = grant(&app, json!({"grant_type": "password", "email": EMAIL, "password": PASSWORD, "admin": true})).await;
        assert_eq!(status, 422, "unknown fields are refused");
        let (status, _, _) = grant(&app, json!({"grant_type": "refresh_token", "refresh_token": "grt_x", "email": EMAIL})).await;
        assert_eq!(status, 422, "a field of the other grant is refused");
        let (status, _, _) = grant(&app, json!({"grant_type": "client_credentials"})).await;
        assert_eq!(status, 422);
        let res = app.request(reqwest::Method::POST, "/api/v1/auth/token").header("content-type", "text/plain").body("grant_type=password").send().await.unwrap();
        assert_eq!(res.status(), 415);
    }

    async fn tampered_foreign_and_expired_tokens_are_refused(backend) {
        let app = app(backend).await;
        let body = password_grant(&app).await;
        let access = body["access_token"].as_str().unwrap().to_owned();
        let (header, claims, signature) = parts(&access);
        assert_eq!(me(&app, &access).await.0, 200);

        // alg: none, with and without the signature.
        let mut none = header.clone();
        none["alg"] = json!("none");
        assert_eq!(me(&app, &join(&none, &claims, "")).await.0, 401, "alg none");
        assert_eq!(me(&app, &join(&none, &claims, &signature)).await.0, 401, "alg none, old signature");

        // HS256 keyed with the published public key (the classic algorithm confusion).
        let jwks: Value = app.get("/.well-known/jwks.json").await.json().await.unwrap();
        let public = URL_SAFE_NO_PAD.decode(jwks["keys"][0]["x"].as_str().unwrap()).unwrap();
        let mut hs = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
        hs.kid = header["kid"].as_str().map(str::to_owned);
        let confused = jsonwebtoken::encode(&hs, &claims, &jsonwebtoken::EncodingKey::from_secret(&public)).unwrap();
        assert_eq!(me(&app, &confused).await.0, 401, "HS256 with the public key");

        // An edited payload under the genuine signature.
        let mut edited = claims.clone();
        edited["sub"] = json!(uuid::Uuid::new_v4().to_string());
        assert_eq!(me(&app, &join(&header, &edited, &signature)).await.0, 401, "edited payload");

        // Another Ed25519 key claiming the same kid.
        let rng = ring::rand::SystemRandom::new();
        let foreign = ring::signature::Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
        let mut ed = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
        ed.kid = header["kid"].as_str().map(str::to_owned);
        let forged = jsonwebtoken::encode(&ed, &claims, &jsonwebtoken::EncodingKey::from_ed_der(foreign.as_ref())).unwrap();
        assert_eq!(me(&app, &forged).await.0, 401, "another key");

        // Our own key, with claims changed one at a time.
        let ours = our_signing_key(&app).await;
        let sign = |claims: &Value| jsonwebtoken::encode(&ed, claims, &ours).unwrap();
        assert_eq!(me(&app, &sign(&claims)).await.0, 200, "control: our key and the same claims work");
        for (claim, value) in [("iss", json!("https://elsewhere.example")), ("aud", json!("another-api")), ("exp", json!(claims["iat"]))] {
            let mut changed = claims.clone();
            changed[claim] = value;
            assert_eq!(me(&app, &sign(&changed)).await.0, 401, "another {claim}");
        }
        for claim in ["iss", "aud", "exp", "sub", "sid"] {
            let mut missing = claims.clone();
            missing.as_object_mut().unwrap().remove(claim);
            assert_eq!(me(&app, &sign(&missing)).await.0, 401, "without {claim}");
        }

        // Expiry, by the app's clock.
        app.clock.advance(Duration::from_secs(899));
        assert_eq!(me(&app, &access).await.0, 200, "valid for its whole lifetime");
        app.clock.advance(Duration::from_secs(1));
        let (status, headers, _) = me(&app, &access).await;
        assert_eq!(status, 401, "expired");
        assert!(headers["www-authenticate"].to_str().unwrap().contains("invalid_token"));
    }

    async fn refresh_tokens_rotate_and_a_reused_one_revokes_its_sign_in(backend) {
        let app = app(backend).await;
        let first = password_grant(&app).await;
        let r1 = first["refresh_token"].as_str().unwrap().to_owned();
        let (status, _, second) = grant(&app, json!({"grant_type": "refresh_token", "refresh_token": r1})).await;
        assert_eq!(status, 200, "{second}");
        let r2 = second["refresh_token"].as_str().unwrap().to_owned();
        assert_ne!(r1, r2, "a new refresh token each time");
        let a2 = second["access_token"].as_str().unwrap().to_owned();
        assert_eq!(me(&app, &a2).await.0, 200);

        // Another sign-in of the same user is a separate family.
        let other = password_grant(&app).await;

        // r1 was spent: presenting it again revokes the whole family.
        let (status, _, body) = grant(&app, json!({"grant_type": "refresh_token", "refresh_token": r1})).await;
        assert_eq!(status, 401, "{body}");
        let (status, _, _) = grant(&app, json!({"grant_type": "refresh_token", "refresh_token": r2})).await;
        assert_eq!(status, 401, "the unspent successor died with its family");
        assert_eq!(me(&app, &a2).await.0, 401, "and so did the family's access token");
        assert_eq!(me(&app, other["access_token"].as_str().unwrap()).await.0, 200, "other sign-ins stay");
        let records = gatehouse::audit::records_after(&app.db, 0, 100).await.unwrap();
        assert!(records.iter().any(|r| r.action == "auth.refresh_token_reused"));

        let (status, _, _) = grant(&app, json!({"grant_type": "refresh_token", "refresh_token": "grt_made-up"})).await;
        assert_eq!(status, 401);
    }

    async fn revoking_a_token_ends_its_sign_in(backend) {
        let app = app(backend).await;
        let body = password_grant(&app).await;
        let res = app.request(reqwest::Method::POST, "/api/v1/auth/revoke").json(&json!({"token": body["refresh_token"]})).send().await.unwrap();
        assert_eq!(res.status(), 200);
        assert_eq!(me(&app, body["access_token"].as_str().unwrap()).await.0, 401);
        let (status, _, _) = grant(&app, json!({"grant_type": "refresh_token", "refresh_token": body["refresh_token"]})).await;
        assert_eq!(status, 401);

        // By its access token, too; an unknown token gets the same 200.
        let body = password_grant(&app).await;
        let res = app.request(reqwest::Method::POST, "/api/v1/auth/revoke").json(&json!({"token": body["access_token"]})).send().await.unwrap();
        assert_eq!(res.status(), 200);
        assert_eq!(me(&app, body["access_token"].as_str().unwrap()).await.0, 401);
        let res = app.request(reqwest::Method::POST, "/api/v1/auth/revoke").json(&json!({"token": "nonsense"})).send().await.unwrap();
        assert_eq!(res.status(), 200);
    }

    async fn a_disabled_user_or_a_role_change_ends_api_access_within_five_seconds(backend) {
        let app = app(backend).await;
        let body = password_grant(&app).await;
        let access = body["access_token"].as_str().unwrap();
        assert_eq!(me(&app, access).await.0, 200);
        let out = run_cli(&app.cli_env(), &["user", "set-role", "--email", EMAIL, "--role", "user"]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        // The CLI is another process: this instance trusts what it checked for at most 5 s.
        app.clock.advance(Duration::from_secs(5));
        assert_eq!(me(&app, access).await.0, 401, "a role change revokes API sign-ins");
        let (status, _, _) = grant(&app, json!({"grant_type": "refresh_token", "refresh_token": body["refresh_token"]})).await;
        assert_eq!(status, 401);

        let body = password_grant(&app).await;
        let access = body["access_token"].as_str().unwrap();
        assert_eq!(me(&app, access).await.2["role"], "user");
        // Disabled by SQL, behind the CLI's back: the status is still read on every request.
        app.db.query("UPDATE users SET status = 'disabled'").execute().await.unwrap();
        app.clock.advance(Duration::from_secs(4));
        assert_eq!(me(&app, access).await.0, 200, "trusted for up to 5 s after it was checked");
        app.clock.advance(Duration::from_secs(1));
        assert_eq!(me(&app, access).await.0, 401);
    }

    async fn an_mfa_user_must_send_a_code_with_the_password(backend) {
        let app = app(backend).await;
        let email = "mfa@example.com";
        let user = add_user(&app, email).password(PASSWORD).mfa().await;
        let key = user.setup_key.unwrap();

        let (status, _, body) = grant(&app, json!({"grant_type": "password", "email": email, "password": PASSWORD})).await;
        assert_eq!(status, 401);
        assert_eq!(body["error"], "mfa_required", "{body}");
        app.clock.advance(Duration::from_secs(30));
        let (status, _, body) = grant(&app, json!({"grant_type": "password", "email": email, "password": PASSWORD, "otp": "000000"})).await;
        assert_eq!(status, 401, "{body}");
        app.clock.advance(Duration::from_secs(5));
        let current = totp_code(&app, &key, 0);
        let (status, _, body) = grant(&app, json!({"grant_type": "password", "email": email, "password": PASSWORD, "otp": current})).await;
        assert_eq!(status, 200, "{body}");
        app.clock.advance(Duration::from_secs(5));
        let (status, _, _) = grant(&app, json!({"grant_type": "password", "email": email, "password": PASSWORD, "otp": current})).await;
        assert_eq!(status, 401, "the same code twice");
    }

    async fn a_session_cookie_opens_the_api_with_the_csrf_token_for_changes(backend) {
        let app = app(backend).await;
        let mut v = crate::support::visitor::Visitor::new(&app);
        let csrf = v.csrf_from("/login").await;
        let (status, _, _) = v.post("/login/password", &[("csrf_token", &csrf), ("email", EMAIL), ("password", PASSWORD)]).await;
        assert_eq!(status, 303);
        let cookies: String = v.cookies.iter().map(|(k, v)| format!("{k}={v}; ")).collect();
        let with_cookie = |method| app.request(method, "/api/v1/items").header("cookie", &cookies);
        let me = app.request(reqwest::Method::GET, "/api/v1/me").header("cookie", &cookies).send().await.unwrap();
        assert_eq!(me.status(), 200, "a page's script reads the API with its session");
        assert!(me.text().await.unwrap().contains(EMAIL));
        // A change needs the session's CSRF token in a header, as a form needs it in a field.
        let item = json!({"name": "From a page", "description": "Made by a page script"});
        let refused = with_cookie(reqwest::Method::POST).json(&item).send().await.unwrap();
        assert_eq!(refused.status(), 403, "a cross-site script cannot use the cookie to change anything");
        // The token a page's script reads from the page's `<meta name="csrf-token">`.
        let (_, _, page) = v.get("/account").await;
        let marker = "<meta name=\"csrf-token\" content=\"";
        let start = page.find(marker).expect("the page names its CSRF token for scripts") + marker.len();
        let token = page[start..start + page[start..].find('"').unwrap()].replace("&#x2f;", "/").replace("&#x3d;", "=");
        let made = with_cookie(reqwest::Method::POST).header("X-CSRF-Token", token).json(&item).send().await.unwrap();
        assert_eq!(made.status(), 201);
        // A request that carries a bearer credential is never authenticated by its cookie.
        let bearer = app.request(reqwest::Method::GET, "/api/v1/me").header("cookie", &cookies).bearer_auth("not-a-token").send().await.unwrap();
        assert_eq!(bearer.status(), 401);
    }

    async fn signing_out_everywhere_else_ends_api_sign_ins_too(backend) {
        let app = app(backend).await;
        let body = password_grant(&app).await;
        let access = body["access_token"].as_str().unwrap();
        let mut v = crate::support::visitor::Visitor::new(&app);
        let csrf = v.csrf_from("/login").await;
        v.post("/login/password", &[("csrf_token", &csrf), ("email", EMAIL), ("password", PASSWORD)]).await;
        assert_eq!(me(&app, access).await.0, 200);
        let csrf = v.csrf_from("/account").await;
        let (status, _, _) = v.post("/account/sessions/revoke-others", &[("csrf_token", &csrf)]).await;
        assert_eq!(status, 303);
        assert_eq!(me(&app, access).await.0, 401);
        let (status, _, _) = grant(&app, json!({"grant_type": "refresh_token", "refresh_token": body["refresh_token"]})).await;
        assert_eq!(status, 401);
    }
}

on_every_backend! {
    async fn api_requests_are_limited_per_user_whatever_the_token(backend) {
        let app = spawn_app_with(backend, &[
            ("GATEHOUSE_SIGNIN_RATE_LIMIT", "off"),
            ("GATEHOUSE_SIGNIN_EMAIL_RATE_LIMIT", "off"),
            ("GATEHOUSE_API_RATE_LIMIT", "3/min"),
        ]).await;
        add_user(&app, EMAIL).password(PASSWORD).await;
        let first = password_grant(&app).await;
        let second = password_grant(&app).await;
        let (a, b) = (first["access_token"].as_str().unwrap(), second["access_token"].as_str().unwrap());
        assert_eq!(me(&app, a).await.0, 200);
        assert_eq!(me(&app, b).await.0, 200);
        assert_eq!(me(&app, a).await.0, 200);
        let (status, headers, _) = me(&app, b).await;
        assert_eq!(status, 429, "the fourth request of the same user, with another token");
        assert!(headers.contains_key("retry-after"));
    }

    async fn password_grants_beyond_the_hashing_queue_are_refused_at_once_with_503_and_retry_after(backend) {
        // One hashing thread and no place to wait: while one password is checked, every other
        // sign-in is turned away. Hashes of 10 passes keep each check long enough for the
        // requests below to overlap it.
        let costly = [("GATEHOUSE_ARGON2_ITERATIONS", "10")];
        let app = spawn_app_with(backend, &[
            ("GATEHOUSE_SIGNIN_RATE_LIMIT", "off"),
            ("GATEHOUSE_SIGNIN_EMAIL_RATE_LIMIT", "off"),
            ("GATEHOUSE_LOCKOUT_THRESHOLD", "1000"),
            ("GATEHOUSE_HASHING_THREADS", "1"),
            ("GATEHOUSE_HASHING_QUEUE", "0"),
            costly[0],
        ]).await;
        let mut env = app.cli_env();
        env.extend(costly.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
        let out = run_cli_with_stdin(&env, &["user", "add", "--email", EMAIL, "--password-stdin"], PASSWORD);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

        let body = json!({"grant_type": "password", "email": EMAIL, "password": PASSWORD});
        let mut flood = tokio::task::JoinSet::new();
        for _ in 0..12 {
            let request = app.request(reqwest::Method::POST, "/api/v1/auth/token").json(&body);
            flood.spawn(async move {
                let res = request.send().await.unwrap();
                let (status, headers) = (res.status().as_u16(), res.headers().clone());
                (status, headers, res.json::<Value>().await.unwrap_or(Value::Null))
            });
        }
        let answers = flood.join_all().await;
        let statuses: Vec<u16> = answers.iter().map(|(status, _, _)| *status).collect();
        assert!(statuses.iter().all(|s| *s == 200 || *s == 503), "{statuses:?}");
        assert!(statuses.contains(&200), "the password being checked signs in: {statuses:?}");
        assert!(statuses.contains(&503), "the others are refused: {statuses:?}");
        for (_, headers, problem) in answers.iter().filter(|(status, _, _)| *status == 503) {
            assert!(headers.contains_key("retry-after"));
            assert_eq!(problem["status"], 503, "{problem}");
        }
        assert_eq!(app.get("/healthz").await.status(), 200);
        let (status, _, _) = grant(&app, body).await;
        assert_eq!(status, 200, "once the thread is free, a sign-in passes again");
    }
}
