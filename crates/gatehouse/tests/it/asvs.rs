//! OWASP ASVS 4.0.3 rows that the code met and no test asserted, each asserted here as an
//! attacker would find it: a session cookie kept after sign-out and replayed (V3.3.1), the
//! database read for mailed secrets (V2.7.5, V2.6.2), the mailed secrets' format (V2.7.6).
//! Rows whose test fits another module's subject are asserted there, named in the test's
//! comment (`faults`: V4.1.5; `logging`: V7.1.2).

use std::collections::BTreeSet;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

use crate::support::smtp_sink::ReceivedMail;
use crate::support::visitor::{Visitor, field};
use crate::support::{
    Backend, TestApp, add_user, redis_url, spawn_app_with_mail, spawn_unlimited_app,
};

const EMAIL: &str = "ada@example.com";
const PASSWORD: &str = "Vermilion-Otter-42";
const ADMIN: &str = "root@example.com";
/// Crockford's base32, the mailed code's and the recovery codes' documented alphabet.
const CROCKFORD: &str = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";

async fn sign_in(v: &mut Visitor<'_>, email: &str) -> u16 {
    let csrf = v.csrf_from("/login").await;
    let (status, _, _) = v
        .post(
            "/login/password",
            &[
                ("csrf_token", &csrf),
                ("email", email),
                ("password", PASSWORD),
            ],
        )
        .await;
    status
}

/// Every cookie `v` holds, as a `Cookie` header: what an attacker who copied them would send.
fn copied_cookies(v: &Visitor<'_>) -> String {
    v.cookies
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("; ")
}

/// What `cookie` opens: the account page's status and body, and the API's `/me` status.
async fn replay(app: &TestApp, cookie: &str) -> (u16, String, u16) {
    let page = app
        .request(reqwest::Method::GET, "/account")
        .header("cookie", cookie)
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    let status = page.status().as_u16();
    let body = page.text().await.unwrap();
    let me = app
        .request(reqwest::Method::GET, "/api/v1/me")
        .header("cookie", cookie)
        .send()
        .await
        .unwrap();
    (status, body, me.status().as_u16())
}

/// `cookie` still opens the account page and the API.
async fn assert_opens(app: &TestApp, cookie: &str) {
    let (page, body, api) = replay(app, cookie).await;
    assert_eq!((page, api), (200, 200), "{body}");
    assert!(body.contains(EMAIL), "{body}");
}

/// `cookie`, replayed, opens nothing: the page sends to the sign-in form, the API answers 401.
async fn assert_refused(app: &TestApp, cookie: &str, after: &str) {
    let (page, body, api) = replay(app, cookie).await;
    assert_eq!(
        page, 303,
        "after {after}, the old cookie opens the account page: {body}"
    );
    assert!(!body.contains(EMAIL), "after {after}: {body}");
    assert_eq!(api, 401, "after {after}, the old cookie opens the API");
    let home = app
        .request(reqwest::Method::GET, "/")
        .header("cookie", cookie)
        .header("accept", "text/html")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        !home.contains(EMAIL),
        "after {after}, the home page: {home}"
    );
}

/// The `id` of the first session on the account page that is not this device's.
fn other_session_id(account_page: &str) -> String {
    account_page
        .split("<tr>")
        .filter(|row| row.contains("/account/sessions/revoke") && !row.contains("this device"))
        .find_map(|row| field(row, "id"))
        .unwrap_or_else(|| panic!("no other session on {account_page}"))
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

#[derive(Clone, Copy, Debug)]
enum SessionStore {
    Sqlite,
    Postgres,
    Redis,
}

/// An app keeping its sessions in `store`; `None` (with a printed reason, or a failure when the
/// run requires it) when the store is not here.
async fn app_with_sessions_in(store: SessionStore, test: &str) -> Option<TestApp> {
    Some(match store {
        SessionStore::Sqlite => spawn_unlimited_app(Backend::Sqlite, &[]).await,
        SessionStore::Postgres => {
            if !Backend::Postgres.available(test) {
                return None;
            }
            spawn_unlimited_app(Backend::Postgres, &[]).await
        }
        SessionStore::Redis => {
            let url = redis_url(test)?;
            spawn_unlimited_app(Backend::Sqlite, &[("GATEHOUSE_REDIS_URL", &url)]).await
        }
    })
}

/// Runs each body once per session store: `sqlite`, `postgres` and `redis` (sessions in Redis).
macro_rules! on_every_session_store {
    ($(async fn $name:ident($app:ident) $body:block)*) => {$(
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            async fn run(store: SessionStore) {
                let test = concat!("asvs::", stringify!($name), "::", "run");
                let Some($app) = app_with_sessions_in(store, test).await else { return };
                $body
            }

            #[tokio::test]
            async fn sqlite() { run(SessionStore::Sqlite).await }

            #[tokio::test]
            async fn postgres() { run(SessionStore::Postgres).await }

            #[tokio::test]
            async fn redis() { run(SessionStore::Redis).await }
        }
    )*};
}

on_every_session_store! {
    // V3.3.1: sign-out, a session ended from the account page (one, or all others) and an
    // administrator's change each leave the old cookie worthless when it is replayed; the
    // administrator's change ends the API sign-in too (its refresh token and access token).
    async fn a_cookie_kept_after_sign_out_or_revocation_opens_nothing_when_replayed(app) {
        let ada = add_user(&app, EMAIL).password(PASSWORD).await.id;
        add_user(&app, ADMIN).role("admin").password(PASSWORD).await;

        // Sign-out.
        let mut v = Visitor::new(&app);
        assert_eq!(sign_in(&mut v, EMAIL).await, 303);
        let copied = copied_cookies(&v);
        assert_opens(&app, &copied).await;
        let csrf = v.csrf_from("/account").await;
        assert_eq!(v.post("/logout", &[("csrf_token", &csrf)]).await.0, 303);
        assert_refused(&app, &copied, "sign-out").await;

        // One session ended from another device's account page.
        let mut phone = Visitor::new(&app);
        assert_eq!(sign_in(&mut phone, EMAIL).await, 303);
        let copied = copied_cookies(&phone);
        let mut laptop = Visitor::new(&app);
        assert_eq!(sign_in(&mut laptop, EMAIL).await, 303);
        assert_opens(&app, &copied).await;
        let (_, _, page) = laptop.get("/account").await;
        let id = other_session_id(&page);
        let csrf = field(&page, "csrf_token").unwrap();
        let (status, _, _) = laptop.post("/account/sessions/revoke", &[("csrf_token", &csrf), ("id", &id)]).await;
        assert_eq!(status, 303);
        assert_refused(&app, &copied, "ending that session").await;
        assert_opens(&app, &copied_cookies(&laptop)).await;

        // Every other session ended at once.
        let mut phone = Visitor::new(&app);
        assert_eq!(sign_in(&mut phone, EMAIL).await, 303);
        let copied = copied_cookies(&phone);
        assert_opens(&app, &copied).await;
        let csrf = laptop.csrf_from("/account").await;
        let (status, _, _) = laptop.post("/account/sessions/revoke-others", &[("csrf_token", &csrf)]).await;
        assert_eq!(status, 303);
        assert_refused(&app, &copied, "signing out everywhere else").await;

        // An administrator's change of the user: sessions and API sign-ins end.
        let mut phone = Visitor::new(&app);
        assert_eq!(sign_in(&mut phone, EMAIL).await, 303);
        let copied = copied_cookies(&phone);
        assert_opens(&app, &copied).await;
        let (status, tokens) = grant(&app, json!({"grant_type": "password", "email": EMAIL, "password": PASSWORD})).await;
        assert_eq!(status, 200, "{tokens}");
        let (status, admin) = grant(&app, json!({"grant_type": "password", "email": ADMIN, "password": PASSWORD})).await;
        assert_eq!(status, 200, "{admin}");
        let changed = app.request(reqwest::Method::PATCH, &format!("/api/v1/admin/users/{ada}"))
            .bearer_auth(admin["access_token"].as_str().unwrap())
            .json(&json!({"role": "manager"}))
            .send().await.unwrap();
        assert_eq!(changed.status(), 200);
        assert_refused(&app, &copied, "an administrator's change").await;
        let (status, body) = grant(&app, json!({"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]})).await;
        assert_eq!(status, 401, "the refresh token from before the change: {body}");
        let me = app.request(reqwest::Method::GET, "/api/v1/me")
            .bearer_auth(tokens["access_token"].as_str().unwrap())
            .send().await.unwrap();
        assert_eq!(me.status(), 401, "the access token from before the change");
    }
}

/// The token of the first `marker…` link in `text` (43 characters: 256 bits in base64url).
fn token_after(text: &str, marker: &str) -> String {
    let start = text
        .find(marker)
        .unwrap_or_else(|| panic!("no {marker} in {text}"))
        + marker.len();
    text[start..start + 43].to_owned()
}

/// The sign-in link's token and the one-time code of a sign-in mail.
fn link_token_and_code(mail: &ReceivedMail) -> (String, String) {
    let token = token_after(&mail.data, "/login/magic/verify?token=");
    let marker = "enter this code on the sign-in page: ";
    let at = mail.data.find(marker).expect("a code in the mail") + marker.len();
    (token, mail.data[at..at + 8].to_owned())
}

async fn ask_for_link(v: &mut Visitor<'_>, email: &str) {
    let csrf = v.csrf_from("/login").await;
    let (status, _, page) = v
        .post("/login/magic", &[("csrf_token", &csrf), ("email", email)])
        .await;
    assert_eq!(status, 200, "{page}");
}

async fn ask_for_reset(v: &mut Visitor<'_>, email: &str) {
    let csrf = v.csrf_from("/password/forgot").await;
    let (status, _, page) = v
        .post(
            "/password/forgot",
            &[("csrf_token", &csrf), ("email", email)],
        )
        .await;
    assert_eq!(status, 200, "{page}");
}

/// Signs in and turns two-step sign-in on through the pages; the recovery codes shown.
async fn recovery_codes_of(app: &TestApp, v: &mut Visitor<'_>) -> Vec<String> {
    assert_eq!(sign_in(v, EMAIL).await, 303);
    let csrf = v.csrf_from("/account/mfa").await;
    let (status, _, page) = v.post("/account/mfa/setup", &[("csrf_token", &csrf)]).await;
    assert_eq!(status, 200, "{page}");
    let marker = "<code id=\"setup-key\">";
    let from = page.find(marker).expect("a setup key") + marker.len();
    let key = page[from..from + page[from..].find("</code>").unwrap()].to_owned();
    let code = crate::support::totp_code(app, &key, 0);
    let (status, _, page) = v
        .post(
            "/account/mfa/confirm",
            &[("csrf_token", &csrf), ("code", &code)],
        )
        .await;
    assert_eq!(status, 200, "{page}");
    page.split("<li><code>")
        .skip(1)
        .map(|s| s[..s.find("</code>").unwrap()].to_owned())
        .collect()
}

/// Every value of every column of `table`, as text, read straight from the database.
async fn stored_values(app: &TestApp, table: &str) -> Vec<(String, String)> {
    let columns_sql = app.db.dialect().pick(
        "SELECT name FROM pragma_table_info($1) ORDER BY cid",
        "SELECT column_name::TEXT FROM information_schema.columns WHERE table_name = $1 ORDER BY ordinal_position",
    );
    let columns: Vec<String> = app
        .db
        .query(columns_sql)
        .bind(table)
        .fetch_all()
        .await
        .unwrap()
        .iter()
        .map(|r| r.get::<String>(0).unwrap())
        .collect();
    assert!(!columns.is_empty(), "no table {table}");
    let mut values = Vec::new();
    for column in columns {
        let sql = format!("SELECT CAST({column} AS TEXT) FROM {table}");
        for row in app.db.query(&sql).fetch_all().await.unwrap() {
            if let Some(value) = row.get::<Option<String>>(0).unwrap() {
                values.push((format!("{table}.{column}"), value));
            }
        }
    }
    values
}

/// What a database must not hold of `secret`: the secret itself, and its plain SHA-256 in hex or
/// base64 (a digest anyone can compute from the mail).
fn unkeyed_forms(secret: &str) -> Vec<String> {
    let digest = Sha256::digest(secret.as_bytes());
    vec![
        secret.to_owned(),
        hex::encode(digest),
        STANDARD.encode(digest),
        STANDARD_NO_PAD.encode(digest),
        URL_SAFE.encode(digest),
        URL_SAFE_NO_PAD.encode(digest),
    ]
}

crate::on_every_backend! {
    // V2.7.5 and V2.6.2: of the sign-in link, its one-time code, the reset link, the setup link
    // and the recovery codes, the database holds neither the value nor its plain SHA-256, only
    // a MAC-length keyed digest.
    async fn only_keyed_macs_of_mailed_tokens_codes_and_recovery_codes_are_stored(backend) {
        let (app, sink) = spawn_app_with_mail(backend, &[("GATEHOUSE_MAGIC_LINK_RATE_LIMIT", "off")]).await;
        // A start without users logs a setup link.
        let setup = crate::first_start::logged_setup_link(&app)["/setup?token=".len()..].to_owned();
        add_user(&app, EMAIL).password(PASSWORD).await;
        let mut v = Visitor::new(&app);
        ask_for_link(&mut v, EMAIL).await;
        let (link, code) = link_token_and_code(&sink.wait_for(EMAIL).await);
        sink.clear();
        ask_for_reset(&mut v, EMAIL).await;
        let reset = token_after(&sink.wait_for(EMAIL).await.data, "/password/reset?token=");
        let recovery = recovery_codes_of(&app, &mut Visitor::new(&app)).await;
        assert_eq!(recovery.len(), 10);

        let mut secrets = vec![setup, link, code, reset];
        for shown in &recovery {
            secrets.push(shown.clone());
            secrets.push(shown.replace('-', ""));
        }
        let mut stored = Vec::new();
        for (table, rows) in [("setup_tokens", 1), ("magic_links", 1), ("password_resets", 1), ("recovery_codes", 10)] {
            let values = stored_values(&app, table).await;
            let column = if table == "recovery_codes" { "code_mac" } else { "token_hash" };
            let macs: Vec<&String> = values.iter().filter(|(c, _)| *c == format!("{table}.{column}")).map(|(_, v)| v).collect();
            assert_eq!(macs.len(), rows, "{table}: {values:?}");
            stored.extend(values);
        }
        for (column, value) in &stored {
            if column.ends_with(".token_hash") || column.ends_with(".code_mac") {
                assert!(
                    value.len() == 64 && value.bytes().all(|b| b.is_ascii_hexdigit()),
                    "{column} holds {value:?}, not an HMAC-SHA256"
                );
            }
            for secret in &secrets {
                for form in unkeyed_forms(secret) {
                    assert!(
                        !value.to_lowercase().contains(&form.to_lowercase()),
                        "{column} holds {form:?}, the secret {secret:?} or its unkeyed SHA-256"
                    );
                }
            }
        }
    }
}

crate::backend_agnostic! {
    // V2.7.6: the mailed one-time code is 8 characters of Crockford base32 (40 bits, at least
    // 20) drawing on the whole alphabet, the link's token 43 characters of base64url (256 bits,
    // at least 128), and no two mails carry the same.
    async fn mailed_codes_and_link_tokens_have_the_documented_alphabet_and_length(backend) {
        let (app, sink) = spawn_app_with_mail(backend, &[("GATEHOUSE_MAGIC_LINK_RATE_LIMIT", "off")]).await;
        add_user(&app, EMAIL).await;
        const MAILS: usize = 10;
        for _ in 0..MAILS {
            ask_for_link(&mut Visitor::new(&app), EMAIL).await;
        }
        let received = sink.wait_for_count(EMAIL, MAILS).await;
        let mut codes = BTreeSet::new();
        let mut symbols = BTreeSet::new();
        let mut tokens = BTreeSet::new();
        for mail in &received {
            let (token, code) = link_token_and_code(mail);
            assert!(code.chars().all(|c| CROCKFORD.contains(c)), "{code:?} is not Crockford base32");
            let after = mail.data[mail.data.find(&code).unwrap() + code.len()..].chars().next();
            assert!(!after.is_some_and(|c| c.is_ascii_alphanumeric()), "the code is longer than 8: {code:?}{after:?}");
            let bits = code.len() as f64 * (CROCKFORD.len() as f64).log2();
            assert!(bits >= 20.0 && code.len() == 8, "{code:?}: {bits} bits");
            let raw = URL_SAFE_NO_PAD.decode(&token).unwrap_or_else(|e| panic!("{token:?} is not base64url: {e}"));
            assert!(raw.len() * 8 >= 128 && raw.len() == 32, "{token:?}: {} bits", raw.len() * 8);
            let after = mail.data[mail.data.find(&token).unwrap() + token.len()..].chars().next();
            assert!(!after.is_some_and(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'), "the token is longer than 43");
            symbols.extend(code.chars());
            codes.insert(code);
            tokens.insert(token);
        }
        assert_eq!(codes.len(), MAILS, "every mail its own code: {codes:?}");
        // 80 characters drawn evenly from 32 show fewer than 21 of them once in 10^8 runs; a
        // smaller alphabet (digits, hex) shows at most 16.
        assert!(symbols.len() >= 21, "the codes draw on {} symbols only: {codes:?}", symbols.len());
        assert_eq!(tokens.len(), MAILS, "every mail its own token");
    }
}
