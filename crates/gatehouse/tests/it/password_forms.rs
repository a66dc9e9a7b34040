//! What the password forms tell people and their password managers: a common password that
//! signs in is flagged for a change (ASVS V2.1.7), every field carries the `autocomplete` value
//! password managers need (V2.1.11), and every new password gets the strength meter and every
//! password the show control (V2.1.8, V2.1.12; the browser test drives them).

use std::collections::HashMap;
use std::time::Duration;

use crate::on_every_backend;
use crate::support::smtp_sink::SmtpSink;
use crate::support::visitor::{Visitor, field};
use crate::support::{TestApp, add_user, spawn_app_with_mail, totp_code};

const EMAIL: &str = "ada@example.com";
/// On the list of common passwords (`iloveyou` with digits around it), yet long enough for the
/// policy's length: a password set before the list was checked, or imported.
const COMMON: &str = "iloveyou2024";
const UNCOMMON: &str = "Vermilion-Otter-42";

async fn password_sign_in(
    v: &mut Visitor<'_>,
    password: &str,
) -> (u16, reqwest::header::HeaderMap, String) {
    let csrf = v.csrf_from("/login").await;
    v.post(
        "/login/password",
        &[
            ("csrf_token", &csrf),
            ("email", EMAIL),
            ("password", password),
        ],
    )
    .await
}

async fn app(backend: crate::support::Backend) -> (TestApp, SmtpSink) {
    spawn_app_with_mail(backend, &[]).await
}

async fn token_answer(app: &TestApp, password: &str) -> serde_json::Value {
    let res = app
        .request(reqwest::Method::POST, "/api/v1/auth/token")
        .json(&serde_json::json!({"grant_type": "password", "email": EMAIL, "password": password}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    res.json().await.unwrap()
}

on_every_backend! {
    async fn a_common_password_signs_in_and_the_account_page_says_to_change_it(backend) {
        let (app, _sink) = app(backend).await;
        add_user(&app, EMAIL).password(COMMON).await;
        let mut v = Visitor::new(&app);
        let (status, headers, _) = password_sign_in(&mut v, COMMON).await;
        assert_eq!(status, 303, "a right password signs in, common or not");
        assert_eq!(headers["location"], "/account?notice=common-password");
        let (status, _, page) = v.get("/account?notice=common-password").await;
        assert_eq!(status, 200);
        assert!(page.contains("on a list of common passwords"), "{page}");
        assert!(page.contains("<a class=\"button\" href=\"/account/password\">Change your password now</a>"), "{page}");
        // The notice leads to a form that works: the change is accepted at once.
        let csrf = v.csrf_from("/account/password").await;
        let (status, _, page) = v.post("/account/password", &[("csrf_token", &csrf), ("current", COMMON), ("new", UNCOMMON), ("confirm", UNCOMMON)]).await;
        assert_eq!(status, 200, "{page}");
        app.clock.advance(Duration::from_secs(60));
        let mut w = Visitor::new(&app);
        let (status, headers, _) = password_sign_in(&mut w, UNCOMMON).await;
        assert_eq!(status, 303);
        assert_eq!(headers["location"], "/", "no notice for an uncommon password");
        let (_, _, page) = w.get("/account").await;
        assert!(!page.contains("common passwords"), "{page}");
    }

    async fn a_common_password_is_flagged_after_the_second_factor_too(backend) {
        let (app, _sink) = app(backend).await;
        let ada = add_user(&app, EMAIL).password(COMMON).mfa().await;
        let mut v = Visitor::new(&app);
        let (status, headers, _) = password_sign_in(&mut v, COMMON).await;
        assert_eq!((status, &headers["location"]), (303, &"/login/mfa".parse::<reqwest::header::HeaderValue>().unwrap()));
        app.clock.advance(Duration::from_secs(30));
        let code = totp_code(&app, ada.setup_key.as_deref().unwrap(), 0);
        let csrf = v.csrf_from("/login/mfa").await;
        let (status, headers, page) = v.post("/login/mfa", &[("csrf_token", &csrf), ("code", &code)]).await;
        assert_eq!(status, 303, "{page}");
        assert_eq!(headers["location"], "/account?notice=common-password");
    }

    async fn the_password_grant_says_when_the_password_is_common(backend) {
        let (app, _sink) = app(backend).await;
        add_user(&app, EMAIL).password(COMMON).await;
        let common = token_answer(&app, COMMON).await;
        assert_eq!(common["password_change_advised"], true, "{common}");
        assert!(common["access_token"].is_string(), "it still signs in");
        let refreshed = app
            .request(reqwest::Method::POST, "/api/v1/auth/token")
            .json(&serde_json::json!({"grant_type": "refresh_token", "refresh_token": common["refresh_token"]}))
            .send()
            .await
            .unwrap();
        let refreshed: serde_json::Value = refreshed.json().await.unwrap();
        assert_eq!(refreshed["password_change_advised"], false, "{refreshed}");

        add_user(&app, "bo@example.com").password(UNCOMMON).await;
        let res = app
            .request(reqwest::Method::POST, "/api/v1/auth/token")
            .json(&serde_json::json!({"grant_type": "password", "email": "bo@example.com", "password": UNCOMMON}))
            .send()
            .await
            .unwrap();
        let uncommon: serde_json::Value = res.json().await.unwrap();
        assert_eq!(uncommon["password_change_advised"], false, "{uncommon}");

        let spec: serde_json::Value = app.get("/api/v1/openapi.json").await.json().await.unwrap();
        let schema = &spec["components"]["schemas"]["TokenResponse"];
        assert_eq!(schema["properties"]["password_change_advised"]["type"], "boolean", "{schema}");
        assert!(schema["required"].as_array().unwrap().iter().any(|r| r == "password_change_advised"), "{schema}");
    }

    async fn every_form_field_tells_password_managers_what_it_holds(backend) {
        // What each field of each form must say, by form action and field name.
        let expected: HashMap<(&str, &str), &str> = HashMap::from([
            (("/login/magic", "email"), "email"),
            (("/login/password", "email"), "username"),
            (("/login/password", "password"), "current-password"),
            (("/login/code", "code"), "one-time-code"),
            (("/login/mfa", "code"), "one-time-code"),
            (("/password/forgot", "email"), "email"),
            (("/password/reset", "new"), "new-password"),
            (("/password/reset", "confirm"), "new-password"),
            (("/account/password", "current"), "current-password"),
            (("/account/password", "new"), "new-password"),
            (("/account/password", "confirm"), "new-password"),
            (("/account/mfa/confirm", "code"), "one-time-code"),
            (("/setup", "email"), "username"),
            (("/setup", "password"), "new-password"),
            (("/setup", "confirm"), "new-password"),
        ]);
        let mut pages: Vec<(String, String)> = Vec::new();

        // The first start's setup page, before any user exists.
        let (fresh, _fresh_sink) = app(backend).await;
        let link = crate::first_start::logged_setup_link(&fresh);
        let mut v = Visitor::new(&fresh);
        pages.push((link.clone(), v.get(&link).await.2));

        let (app, sink) = app(backend).await;
        add_user(&app, EMAIL).password(UNCOMMON).await;
        let mut v = Visitor::new(&app);
        pages.push(("/login".into(), v.get("/login").await.2));
        let csrf = v.csrf_from("/login").await;
        pages.push(("/login/magic (sent)".into(), v.post("/login/magic", &[("csrf_token", &csrf), ("email", EMAIL)]).await.2));
        pages.push(("/password/forgot".into(), v.get("/password/forgot").await.2));
        let csrf = v.csrf_from("/password/forgot").await;
        v.post("/password/forgot", &[("csrf_token", &csrf), ("email", EMAIL)]).await;
        let marker = "/password/reset?token=";
        let mail = sink.wait_for_count(EMAIL, 2).await.into_iter().find(|m| m.data.contains(marker)).expect("a reset mail");
        let start = mail.data.find(marker).unwrap();
        let reset = mail.data[start..start + marker.len() + 43].to_owned();
        pages.push((reset.clone(), v.get(&reset).await.2));
        assert_eq!(password_sign_in(&mut v, UNCOMMON).await.0, 303);
        pages.push(("/account/password".into(), v.get("/account/password").await.2));
        let csrf = v.csrf_from("/account/mfa").await;
        pages.push(("/account/mfa (setup)".into(), v.post("/account/mfa/setup", &[("csrf_token", &csrf)]).await.2));

        add_user(&app, "bo@example.com").password(UNCOMMON).mfa().await;
        let mut w = Visitor::new(&app);
        let csrf = w.csrf_from("/login").await;
        let (status, _, _) = w.post("/login/password", &[("csrf_token", &csrf), ("email", "bo@example.com"), ("password", UNCOMMON)]).await;
        assert_eq!(status, 303);
        pages.push(("/login/mfa".into(), w.get("/login/mfa").await.2));

        let mut seen = std::collections::HashSet::new();
        for (page_name, page) in &pages {
            assert!(field(page, "csrf_token").is_some(), "{page_name} is a page with forms: {page}");
            for (action, inputs) in forms(page) {
                for input in inputs {
                    let kind = input.get("type").map_or("text", String::as_str);
                    let name = input.get("name").map_or("", String::as_str);
                    let credential = matches!(kind, "password" | "email") || name == "code";
                    if !credential {
                        continue;
                    }
                    let want = expected.get(&(action.as_str(), name)).unwrap_or_else(|| {
                        panic!("{page_name}: the field {name:?} of the form {action} has no expected autocomplete value in this test")
                    });
                    assert_eq!(input.get("autocomplete").map(String::as_str), Some(*want), "{page_name}: {action} {name}");
                    seen.insert((action.clone(), name.to_owned()));
                    if kind == "password" {
                        // The show control (every password field) and the strength meter (every
                        // new password but its confirmation) come from the password script.
                        assert!(page.contains("<script src=\"/static/password."), "{page_name} loads the password script");
                        let new_password = *want == "new-password" && name != "confirm";
                        assert_eq!(input.contains_key("data-strength"), new_password, "{page_name}: {action} {name}");
                    }
                }
            }
        }
        for (action, name) in expected.keys() {
            assert!(seen.contains(&((*action).to_owned(), (*name).to_owned())), "no page showed the field {name} of {action}");
        }
    }
}

/// Each form of `page`: its action and the attributes of each of its `<input>`s.
fn forms(page: &str) -> Vec<(String, Vec<HashMap<String, String>>)> {
    let mut out = Vec::new();
    let mut rest = page;
    while let Some(start) = rest.find("<form") {
        let form = &rest[start..];
        let end = form.find("</form>").expect("a closed form");
        let body = &form[..end];
        let action = attributes(body).remove("action").unwrap_or_default();
        let mut inputs = Vec::new();
        let mut scan = body;
        while let Some(i) = scan.find("<input") {
            inputs.push(attributes(&scan[i..]));
            scan = &scan[i + 6..];
        }
        out.push((action, inputs));
        rest = &form[end..];
    }
    out
}

/// The attributes of the tag `tag` starts with (`name="value"`, or a bare name).
fn attributes(tag: &str) -> HashMap<String, String> {
    let inner = &tag[..tag.find('>').expect("a closed tag")];
    let mut attrs = HashMap::new();
    let mut rest = inner.trim_start_matches('<');
    rest = rest.trim_start_matches(|c: char| c.is_ascii_alphanumeric());
    loop {
        rest = rest.trim_start();
        if rest.is_empty() {
            return attrs;
        }
        let name_end = rest
            .find(|c: char| c == '=' || c.is_whitespace())
            .unwrap_or(rest.len());
        let name = rest[..name_end].to_owned();
        rest = &rest[name_end..];
        if let Some(after) = rest.strip_prefix("=\"") {
            let close = after.find('"').expect("a closed attribute value");
            attrs.insert(name, after[..close].to_owned());
            rest = &after[close + 1..];
        } else {
            attrs.insert(name, String::new());
        }
    }
}
