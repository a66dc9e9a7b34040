//! Identity from an upstream access proxy: Cloudflare Access's signed assertion (against a
//! local certs endpoint, `support::access_proxy`) and an authenticating proxy's header from a
//! trusted peer. The person a proxy names signs in through the one pipeline: MFA, the allowlist,
//! the session and the audit record as any first factor.

use std::time::Duration;

use gatehouse::identity::{Email, users};
use serde_json::{Value, json};

use crate::support::SessionStore as Store;
use crate::support::access_proxy::{AccessProxy, TestKey};
use crate::support::visitor::{Visitor, field};
use crate::support::{
    Backend, TestApp, add_user, captured_log_text, spawn_unlimited_app, totp_code,
};
use crate::{backend_agnostic, on_every_backend};

const ASSERTION: &str = "cf-access-jwt-assertion";
const ADA: &str = "ada@example.com";
const BO: &str = "bo@example.com";

/// An app behind `proxy`, with `extra` settings.
async fn behind(proxy: &AccessProxy, backend: Backend, extra: &[(&str, &str)]) -> TestApp {
    let settings = proxy.settings();
    let mut env: Vec<(&str, &str)> = settings.iter().map(|(k, v)| (*k, v.as_str())).collect();
    env.extend_from_slice(extra);
    spawn_unlimited_app(backend, &env).await
}

/// `GET path` with only these headers (no cookie).
async fn get_with(app: &TestApp, path: &str, headers: &[(&str, &str)]) -> reqwest::Response {
    let mut request = app
        .request(reqwest::Method::GET, path)
        .header("accept", "text/html");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.send().await.unwrap()
}

/// The session cookie a response sets, if any.
fn session_cookie(res: &reqwest::Response) -> Option<String> {
    res.headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap())
        .find(|v| v.starts_with("gatehouse=") && !v.starts_with("gatehouse=;"))
        .map(str::to_owned)
}

/// Who the visitor's session is, as `/api/v1/me` says (`None`: not signed in).
async fn me(v: &mut Visitor<'_>) -> Option<String> {
    let (status, _, body) = v.get("/api/v1/me").await;
    (status == 200).then(|| {
        serde_json::from_str::<Value>(&body).unwrap()["email"]
            .as_str()
            .unwrap()
            .to_owned()
    })
}

/// The audit records' (action, changes).
async fn audit(app: &TestApp) -> Vec<(String, String)> {
    gatehouse::audit::records_after(&app.db, 0, 1000)
        .await
        .unwrap()
        .into_iter()
        .map(|r| (r.action, r.changes))
        .collect()
}

/// A visitor whose every request carries `proxy`'s valid assertion for `email`.
fn visitor_as<'a>(app: &'a TestApp, proxy: &AccessProxy, email: &str) -> Visitor<'a> {
    let mut v = Visitor::new(app);
    v.headers
        .insert(ASSERTION.into(), proxy.assertion(app, email));
    v
}

/// An app behind `proxy` keeping its sessions in `store`; `None` (with a printed reason) when
/// the store is not here.
async fn behind_with_sessions_in(proxy: &AccessProxy, store: Store, test: &str) -> Option<TestApp> {
    let (backend, redis) = store.settings(test)?;
    let env: Vec<(&str, &str)> = redis.iter().map(|(k, v)| (*k, v.as_str())).collect();
    Some(behind(proxy, backend, &env).await)
}

/// Runs each body once per session store: `sqlite`, `postgres`, `redis`.
macro_rules! on_every_session_store {
    ($(async fn $name:ident($proxy:ident, $app:ident) $body:block)*) => {$(
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            async fn run(store: Store) {
                let test = concat!("upstream::", stringify!($name), "::run");
                let $proxy = AccessProxy::start().await;
                let Some($app) = behind_with_sessions_in(&$proxy, store, test).await else { return };
                $body
            }

            #[tokio::test]
            async fn sqlite() { run(Store::Sqlite).await }

            #[tokio::test]
            async fn postgres() { run(Store::Postgres).await }

            #[tokio::test]
            async fn redis() { run(Store::Redis).await }
        }
    )*};
}

on_every_session_store! {
    async fn a_valid_assertion_signs_its_person_in_once_through_the_pipeline(proxy, app) {
        add_user(&app, ADA).await;
        let mut v = visitor_as(&app, &proxy, ADA);

        let (status, headers, _) = v.get("/items?page=2").await;

        assert_eq!(status, 303, "signed in, then back to the page asked for");
        assert_eq!(headers["location"], "/items?page=2");
        assert_eq!(headers["cache-control"], "no-store");
        assert_eq!(me(&mut v).await.as_deref(), Some(ADA));
        let (status, _, _) = v.get("/items").await;
        assert_eq!(status, 200, "the session serves the next pages");
        let sign_ins: Vec<String> = audit(&app)
            .await
            .into_iter()
            .filter(|(a, _)| a == "auth.sign_in")
            .map(|(_, c)| c)
            .collect();
        assert_eq!(sign_ins.len(), 1, "{sign_ins:?}");
        assert!(sign_ins[0].contains("\"method\":\"cloudflare_access\""), "{sign_ins:?}");
    }

    async fn a_session_ends_when_the_proxy_names_another_person(proxy, app) {
        add_user(&app, ADA).await;
        add_user(&app, BO).await;
        let mut v = visitor_as(&app, &proxy, ADA);
        assert_eq!(v.get("/").await.0, 303);
        let adas_cookies = v.cookies.clone();

        v.headers.insert(ASSERTION.into(), proxy.assertion(&app, BO));
        let (status, _, _) = v.get("/").await;

        assert_eq!(status, 303, "Bo is signed in instead");
        assert_eq!(me(&mut v).await.as_deref(), Some(BO));
        let mut replay = visitor_as(&app, &proxy, ADA);
        replay.cookies = adas_cookies;
        assert_eq!(replay.get("/items").await.0, 303, "Ada's old session was ended: a new sign-in");
        assert!(
            audit(&app).await.iter().any(|(a, c)| a == "auth.sign_out" && c.contains("upstream_identity_changed")),
            "the ended session is audited"
        );
    }
}

backend_agnostic! {
    async fn requests_without_a_valid_assertion_get_401_and_no_session(backend) {
        let proxy = AccessProxy::start().await;
        let app = behind(&proxy, backend, &[]).await;
        add_user(&app, ADA).await;
        let good = proxy.token(&app, ADA);
        let cases: Vec<(&str, Vec<(&str, String)>)> = vec![
            ("no assertion", vec![]),
            ("the email header alone", vec![("cf-access-authenticated-user-email", ADA.into())]),
            ("garbage", vec![(ASSERTION, "not.a.jwt".into())]),
            ("signed by another key under key-a's kid", vec![(ASSERTION, good.clone().signed_by(TestKey::B).sign())]),
            ("expired", vec![(ASSERTION, good.clone().shifted(-3600).sign())]),
            ("not valid yet", vec![(ASSERTION, good.clone().shifted(3600).sign())]),
            ("another application's aud", vec![(ASSERTION, good.clone().claim("aud", json!(["another-app"])).sign())]),
            ("another team's iss", vec![(ASSERTION, good.clone().claim("iss", json!("https://evil.cloudflareaccess.com")).sign())]),
            ("no exp", vec![(ASSERTION, good.clone().claim("exp", Value::Null).sign())]),
            ("alg none", vec![(ASSERTION, good.unsigned())]),
            ("HS256 with the public key", vec![(ASSERTION, good.hs256_with_the_public_key())]),
            ("no kid", vec![(ASSERTION, good.clone().kid(None).sign())]),
            ("an unknown kid", vec![(ASSERTION, good.clone().kid(Some("key-z")).sign())]),
            ("twice", vec![(ASSERTION, good.sign()), (ASSERTION, good.sign())]),
        ];
        for (case, headers) in cases {
            let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
            for path in ["/", "/items", "/api/v1/me", "/login"] {
                let res = get_with(&app, path, &headers).await;
                assert_eq!(res.status(), 401, "{case} at {path}");
                assert!(session_cookie(&res).is_none(), "{case} at {path}: no session");
            }
        }
        assert!(!audit(&app).await.iter().any(|(a, _)| a == "auth.sign_in"));

        // The same checks pass the good assertion: the refusals above are the checks' doing.
        let res = get_with(&app, "/", &[(ASSERTION, &good.sign())]).await;
        assert_eq!(res.status(), 303);
        let cookie = session_cookie(&res).expect("a session");
        // A session cookie without the assertion opens nothing either.
        let pair = cookie.split(';').next().unwrap().to_owned();
        let res = get_with(&app, "/items", &[("cookie", &pair)]).await;
        assert_eq!(res.status(), 401);
        let res = get_with(&app, "/items", &[("cookie", &pair), (ASSERTION, &good.sign())]).await;
        assert_eq!(res.status(), 200);
        // Probes and the static files need no assertion.
        assert_eq!(get_with(&app, "/healthz", &[]).await.status(), 200);
        // The assertion is a credential until it expires: no log line holds one.
        let logs = captured_log_text();
        let signature = good.sign().rsplit('.').next().unwrap().to_owned();
        assert!(!logs.contains(&signature), "an assertion reached the log");
    }

    async fn an_unknown_kid_refreshes_the_keys_once_and_a_rotated_key_is_then_accepted(backend) {
        let proxy = AccessProxy::start().await;
        let app = behind(&proxy, backend, &[]).await;
        add_user(&app, ADA).await;
        assert_eq!(get_with(&app, "/", &[(ASSERTION, &proxy.assertion(&app, ADA))]).await.status(), 303);
        assert_eq!(proxy.fetches(), 1);

        // Cloudflare rotates: key B appears. Right after a fetch, unknown kids (rotated or
        // forged, however many) fetch nothing more.
        proxy.publish(&[TestKey::A, TestKey::B]);
        let by_b = proxy.token(&app, ADA).signed_by(TestKey::B).kid(Some(TestKey::B.kid()));
        for kid in ["key-b", "forged-1", "forged-2"] {
            let token = by_b.clone().kid(Some(kid)).sign();
            assert_eq!(get_with(&app, "/", &[(ASSERTION, &token)]).await.status(), 401, "{kid}");
        }
        assert_eq!(proxy.fetches(), 1, "refreshes are rate-limited");

        // Later, the unknown kid refreshes the set once, and the new key signs in.
        app.clock.advance(Duration::from_secs(31));
        let res = get_with(&app, "/", &[(ASSERTION, &by_b.clone().shifted(31).sign())]).await;
        assert_eq!(res.status(), 303, "the rotated key is accepted");
        assert_eq!(proxy.fetches(), 2);
        assert_eq!(get_with(&app, "/", &[(ASSERTION, &by_b.shifted(31).sign())]).await.status(), 303);
        assert_eq!(proxy.fetches(), 2, "a known key fetches nothing");
    }

    async fn keys_past_their_lifetime_are_never_used_when_they_cannot_be_fetched_again(backend) {
        let proxy = AccessProxy::start().await;
        let app = behind(&proxy, backend, &[]).await;
        add_user(&app, ADA).await;
        let mut v = visitor_as(&app, &proxy, ADA);
        assert_eq!(v.get("/").await.0, 303);
        assert_eq!(v.get("/items").await.0, 200);

        // An hour later the endpoint is down: the old keys are not trusted any longer.
        proxy.go_down();
        app.clock.advance(Duration::from_secs(3601));
        v.headers.insert(ASSERTION.into(), proxy.assertion(&app, ADA));
        let (status, headers, _) = v.get("/items").await;

        assert_eq!(status, 503);
        assert_eq!(headers["retry-after"], "30");
    }

    async fn an_api_request_whose_session_is_another_persons_is_refused_and_the_session_ends(backend) {
        let proxy = AccessProxy::start().await;
        let app = behind(&proxy, backend, &[]).await;
        add_user(&app, ADA).await;
        add_user(&app, BO).await;
        let mut v = visitor_as(&app, &proxy, ADA);
        assert_eq!(v.get("/").await.0, 303);
        assert_eq!(me(&mut v).await.as_deref(), Some(ADA));
        let adas_cookies = v.cookies.clone();

        v.headers.insert(ASSERTION.into(), proxy.assertion(&app, BO));
        let (status, headers, _) = v.get("/api/v1/me").await;

        assert_eq!(status, 401, "the API signs no one in");
        assert!(headers.get_all("set-cookie").iter().any(|c| c.to_str().unwrap().starts_with("gatehouse=;")));
        v.headers.insert(ASSERTION.into(), proxy.assertion(&app, ADA));
        v.cookies = adas_cookies;
        assert_eq!(me(&mut v).await, None, "Ada's session ended, even replayed with her assertion");
    }

    async fn a_service_token_without_an_email_opens_no_page(backend) {
        let proxy = AccessProxy::start().await;
        let app = behind(&proxy, backend, &[]).await;
        let service = proxy
            .token(&app, ADA)
            .claim("email", Value::Null)
            .claim("common_name", json!("0a1b2c.access"))
            .sign();

        let res = get_with(&app, "/", &[(ASSERTION, &service)]).await;

        assert_eq!(res.status(), 403);
        assert!(session_cookie(&res).is_none());
        // The API still answers by its own credential rules (none here: 401 asking for one).
        let res = get_with(&app, "/api/v1/me", &[(ASSERTION, &service)]).await;
        assert_eq!(res.status(), 401);
        assert!(res.headers()["www-authenticate"].to_str().unwrap().starts_with("Bearer"));
    }

    async fn sign_out_behind_cloudflare_access_ends_the_access_session_too(backend) {
        let proxy = AccessProxy::start().await;
        let app = behind(&proxy, backend, &[]).await;
        add_user(&app, ADA).await;
        let mut v = visitor_as(&app, &proxy, ADA);
        assert_eq!(v.get("/").await.0, 303);
        let csrf = v.csrf_from("/account").await;

        let (status, headers, _) = v.post("/logout", &[("csrf_token", &csrf)]).await;

        assert_eq!(status, 303);
        assert_eq!(headers["location"], "/cdn-cgi/access/logout");
    }

    async fn the_identity_header_is_believed_only_from_a_trusted_proxy(backend) {
        // The test client connects from 127.0.0.1.
        let untrusted = spawn_unlimited_app(
            backend,
            &[
                ("GATEHOUSE_UPSTREAM_IDENTITY", "trusted_header"),
                ("GATEHOUSE_TRUSTED_PROXIES", "10.0.0.0/8"),
            ],
        )
        .await;
        add_user(&untrusted, ADA).await;
        let res = get_with(&untrusted, "/account", &[("x-forwarded-email", ADA)]).await;
        assert_eq!(res.status(), 303);
        assert_eq!(res.headers()["location"], "/login?next=%2Faccount", "ignored: still anonymous");
        assert!(session_cookie(&res).is_none());
        assert!(!audit(&untrusted).await.iter().any(|(a, _)| a == "auth.sign_in"));

        let trusted = spawn_unlimited_app(
            backend,
            &[
                ("GATEHOUSE_UPSTREAM_IDENTITY", "trusted_header"),
                ("GATEHOUSE_UPSTREAM_IDENTITY_HEADER", "Remote-Email"),
                ("GATEHOUSE_TRUSTED_PROXIES", "127.0.0.1"),
            ],
        )
        .await;
        add_user(&trusted, ADA).await;
        let mut v = Visitor::new(&trusted);
        v.headers.insert("x-forwarded-email".into(), BO.into());
        assert_eq!(me(&mut v).await, None, "only the configured header counts");
        v.headers.clear();
        v.headers.insert("remote-email".into(), ADA.into());
        let (status, headers, _) = v.get("/account").await;
        assert_eq!(status, 303);
        assert_eq!(headers["location"], "/account");
        assert_eq!(v.get("/account").await.0, 200);
        assert_eq!(me(&mut v).await.as_deref(), Some(ADA));
        assert!(audit(&trusted).await.iter().any(|(a, c)| a == "auth.sign_in" && c.contains("trusted_header")));
        // A value that is no address is refused, with no session.
        let res = get_with(&trusted, "/", &[("remote-email", "ada@example.com, bo@example.com")]).await;
        assert_eq!(res.status(), 401);
        assert!(session_cookie(&res).is_none());
    }
}

on_every_backend! {
    async fn a_user_with_mfa_still_gives_the_second_factor(backend) {
        let proxy = AccessProxy::start().await;
        let app = behind(&proxy, backend, &[]).await;
        let ada = add_user(&app, ADA).mfa().await;
        let mut v = visitor_as(&app, &proxy, ADA);

        let (status, headers, _) = v.get("/items").await;
        assert_eq!(status, 303);
        assert_eq!(headers["location"], "/login/mfa", "the second factor first");
        assert_eq!(me(&mut v).await, None, "no session from the proxy alone");
        let (status, _, page) = v.get("/login/mfa").await;
        assert_eq!(status, 200, "{page}");
        let csrf = field(&page, "csrf_token").unwrap();
        // The enrolment used this step's code: the next step's.
        app.clock.advance(Duration::from_secs(30));
        let code = totp_code(&app, ada.setup_key.as_deref().unwrap(), 0);

        let (status, headers, _) = v.post("/login/mfa", &[("csrf_token", &csrf), ("code", &code)]).await;

        assert_eq!(status, 303);
        assert_eq!(headers["location"], "/items");
        assert_eq!(me(&mut v).await.as_deref(), Some(ADA));
        assert!(audit(&app).await.iter().any(|(a, c)| a == "auth.sign_in" && c.contains("cloudflare_access+totp")));
    }

    async fn an_allowed_domain_gets_an_account_and_other_addresses_are_refused(backend) {
        let proxy = AccessProxy::start().await;
        let app = behind(&proxy, backend, &[("GATEHOUSE_ALLOWED_DOMAINS", "example.com")]).await;
        add_user(&app, "off@elsewhere.org").await;
        users::set_role_and_status(
            &app.db,
            &Email::parse("off@elsewhere.org").unwrap(),
            None,
            Some(gatehouse::identity::UserStatus::Disabled),
            &gatehouse::audit::AuditContext::cli(),
        )
        .await
        .unwrap();

        let mut newcomer = visitor_as(&app, &proxy, "new@example.com");
        assert_eq!(newcomer.get("/").await.0, 303);
        assert_eq!(me(&mut newcomer).await.as_deref(), Some("new@example.com"));
        let user = users::find_by_email(&app.db, &Email::parse("new@example.com").unwrap())
            .await
            .unwrap()
            .expect("an account was made");
        assert_eq!(user.role.as_str(), "user");

        for refused in ["stranger@elsewhere.org", "off@elsewhere.org"] {
            let res = get_with(&app, "/", &[(ASSERTION, &proxy.assertion(&app, refused))]).await;
            assert_eq!(res.status(), 403, "{refused}");
            assert!(session_cookie(&res).is_none(), "{refused}");
        }
        assert!(
            users::find_by_email(&app.db, &Email::parse("stranger@elsewhere.org").unwrap()).await.unwrap().is_none(),
            "no account outside the allowed domains"
        );
    }
}
