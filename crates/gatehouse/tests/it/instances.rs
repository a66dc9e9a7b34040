//! Two instances behind one load balancer, sharing PostgreSQL and Redis: a user, a token or a
//! limit seen by one is seen by the other, and concurrent writes through both keep one audit
//! chain. (Signing keys rotated on one and published by both: `signing_keys.rs`.)

use std::time::Duration;

use serde_json::{Value, json};

use crate::api::grant;
use crate::support::smtp_sink::SmtpSink;
use crate::support::visitor::{Visitor, field};
use crate::support::{
    Backend, TestApp, add_user, api_token, assert_audit_chain_verifies, redis_url, run_cli,
    spawn_app_with, spawn_instance,
};

const EMAIL: &str = "ada@example.com";
const PASSWORD: &str = "Vermilion-Otter-42";

/// Two instances over one fresh PostgreSQL database and one Redis (same key prefix), with the
/// same `extra` settings; `None` (skipped, or failed when required) without PostgreSQL or
/// Redis.
async fn pair(test: &str, extra: &[(&str, &str)]) -> Option<(TestApp, TestApp)> {
    if !Backend::Postgres.available(test) {
        return None;
    }
    let redis = redis_url(test)?;
    let prefix = format!("gh-test:{}:", uuid::Uuid::new_v4().simple());
    let mut settings = vec![
        ("GATEHOUSE_REDIS_URL", redis.as_str()),
        ("GATEHOUSE_REDIS_PREFIX", prefix.as_str()),
        ("GATEHOUSE_SIGNIN_EMAIL_RATE_LIMIT", "off"),
        // What users reach behind the load balancer: both instances issue and accept its tokens.
        ("GATEHOUSE_PUBLIC_URL", "http://gatehouse.test"),
    ];
    settings.extend_from_slice(extra);
    let one = spawn_app_with(Backend::Postgres, &settings).await;
    let two = spawn_instance(&one, &settings).await;
    Some((one, two))
}

/// A visitor of `app` holding `other`'s cookies: the same browser, sent to the other instance.
fn same_browser<'a>(app: &'a TestApp, other: &Visitor<'_>) -> Visitor<'a> {
    let mut v = Visitor::new(app);
    v.cookies = other.cookies.clone();
    v
}

async fn sign_in(v: &mut Visitor<'_>, password: &str) -> u16 {
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
    .0
}

async fn me(app: &TestApp, token: &str) -> u16 {
    app.request(reqwest::Method::GET, "/api/v1/me")
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn sessions_tokens_and_a_cli_change_hold_on_both_instances() {
    let Some((one, two)) = pair(
        "instances::sessions_tokens_and_a_cli_change_hold_on_both_instances",
        &[],
    )
    .await
    else {
        return;
    };
    add_user(&one, EMAIL).password(PASSWORD).await;
    let mut browser = Visitor::new(&one);
    assert_eq!(sign_in(&mut browser, PASSWORD).await, 303);
    let mut on_two = same_browser(&two, &browser);
    assert_eq!(
        on_two.get("/account").await.0,
        200,
        "the session made on one opens pages on two"
    );
    let token = api_token(&one, EMAIL, PASSWORD).await;
    assert_eq!(me(&two, &token).await, 200);

    // Signing out everywhere else on two ends another session made on one.
    let mut other = Visitor::new(&one);
    assert_eq!(sign_in(&mut other, PASSWORD).await, 303);
    let csrf = on_two.csrf_from("/account").await;
    assert_eq!(
        on_two
            .post("/account/sessions/revoke-others", &[("csrf_token", &csrf)])
            .await
            .0,
        303
    );
    assert_eq!(
        other.get("/account").await.0,
        303,
        "signed out on one by a change on two"
    );

    // A change made with the command line reaches both within the 5-second window.
    let token = api_token(&two, EMAIL, PASSWORD).await;
    assert_eq!((me(&one, &token).await, me(&two, &token).await), (200, 200));
    let out = run_cli(&one.cli_env(), &["user", "disable", "--email", EMAIL]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for app in [&one, &two] {
        app.clock.advance(Duration::from_secs(6));
    }
    assert_eq!(
        (me(&one, &token).await, me(&two, &token).await),
        (401, 401),
        "disabled everywhere"
    );
    assert_eq!(same_browser(&one, &on_two).get("/account").await.0, 303);
    assert_eq!(on_two.get("/account").await.0, 303);
}

#[tokio::test]
async fn a_refresh_token_replayed_on_the_other_instance_revokes_the_sign_in() {
    let Some((one, two)) = pair(
        "instances::a_refresh_token_replayed_on_the_other_instance_revokes_the_sign_in",
        &[],
    )
    .await
    else {
        return;
    };
    add_user(&one, EMAIL).password(PASSWORD).await;
    let (_, _, first) = grant(
        &one,
        json!({"grant_type": "password", "email": EMAIL, "password": PASSWORD}),
    )
    .await;
    let (status, _, second) = grant(
        &one,
        json!({"grant_type": "refresh_token", "refresh_token": first["refresh_token"]}),
    )
    .await;
    assert_eq!(status, 200);
    let (status, _, _) = grant(
        &two,
        json!({"grant_type": "refresh_token", "refresh_token": first["refresh_token"]}),
    )
    .await;
    assert_eq!(status, 401, "a spent token, replayed on the other instance");
    let (status, _, _) = grant(
        &one,
        json!({"grant_type": "refresh_token", "refresh_token": second["refresh_token"]}),
    )
    .await;
    assert_eq!(status, 401, "its family is revoked on both");
    assert_eq!(
        me(&two, second["access_token"].as_str().unwrap()).await,
        401
    );
}

#[tokio::test]
async fn wrong_passwords_split_over_both_instances_count_towards_one_lock() {
    let Some((one, two)) = pair(
        "instances::wrong_passwords_split_over_both_instances_count_towards_one_lock",
        &[
            ("GATEHOUSE_LOCKOUT_THRESHOLD", "4"),
            ("GATEHOUSE_SIGNIN_RATE_LIMIT", "off"),
        ],
    )
    .await
    else {
        return;
    };
    add_user(&one, EMAIL).password(PASSWORD).await;
    let wrong = |i: usize| json!({"grant_type": "password", "email": EMAIL, "password": format!("Wrong-Password-{i}")});
    let mut statuses = Vec::new();
    for i in 0..4 {
        statuses.push(
            grant(if i % 2 == 0 { &one } else { &two }, wrong(i))
                .await
                .0,
        );
        // Past the growing delay after each failure, well within the lock's window.
        for app in [&one, &two] {
            app.clock.advance(Duration::from_secs(30));
        }
    }
    assert_eq!(statuses, [401, 401, 401, 401]);
    let right = json!({"grant_type": "password", "email": EMAIL, "password": PASSWORD});
    assert_eq!(
        (
            grant(&one, right.clone()).await.0,
            grant(&two, right).await.0
        ),
        (429, 429),
        "locked on both"
    );
}

#[tokio::test]
async fn the_request_rate_limit_is_one_budget_across_instances() {
    let Some((one, two)) = pair(
        "instances::the_request_rate_limit_is_one_budget_across_instances",
        &[("GATEHOUSE_RATE_LIMIT", "6/min")],
    )
    .await
    else {
        return;
    };
    let mut statuses = Vec::new();
    for i in 0..8 {
        statuses.push(
            (if i % 2 == 0 { &one } else { &two })
                .get("/login")
                .await
                .status()
                .as_u16(),
        );
    }
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        6,
        "{statuses:?}"
    );
    assert_eq!(&statuses[6..], [429, 429]);
}

#[tokio::test]
async fn fifty_concurrent_writes_through_both_instances_keep_one_audit_chain() {
    let Some((one, two)) = pair(
        "instances::fifty_concurrent_writes_through_both_instances_keep_one_audit_chain",
        &[
            ("GATEHOUSE_API_RATE_LIMIT", "off"),
            ("GATEHOUSE_RATE_LIMIT", "off"),
        ],
    )
    .await
    else {
        return;
    };
    add_user(&one, EMAIL).password(PASSWORD).await;
    let token = api_token(&one, EMAIL, PASSWORD).await;
    let writes = (0..50).map(|i| {
        let app = if i % 2 == 0 { &one } else { &two };
        let token = token.clone();
        async move {
            app.request(reqwest::Method::POST, "/api/v1/items")
                .bearer_auth(token)
                .json(&json!({"name": format!("Item {i}"), "description": "Written through either instance"}))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    });
    let statuses = futures_util::future::join_all(writes).await;
    assert!(statuses.iter().all(|s| *s == 201), "{statuses:?}");
    let list: Value = two
        .request(reqwest::Method::GET, "/api/v1/items?limit=100")
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["items"].as_array().map(Vec::len), Some(50), "{list}");
    assert_audit_chain_verifies(&one.cli_env());
}

#[tokio::test]
async fn a_sign_in_link_asked_for_on_one_instance_works_on_the_other() {
    let test = "instances::a_sign_in_link_asked_for_on_one_instance_works_on_the_other";
    let sink = SmtpSink::start().await;
    let port = sink.port.to_string();
    let mail = [
        ("SMTP_HOST", "127.0.0.1"),
        ("SMTP_PORT", port.as_str()),
        ("SMTP_TLS", "none"),
    ];
    let Some((one, two)) = pair(test, &mail).await else {
        return;
    };
    add_user(&one, EMAIL).await;
    let mut asking = Visitor::new(&one);
    let csrf = asking.csrf_from("/login").await;
    assert_eq!(
        asking
            .post("/login/magic", &[("csrf_token", &csrf), ("email", EMAIL)])
            .await
            .0,
        200
    );
    let mail = sink.wait_for(EMAIL).await;
    let marker = "/login/magic/verify?token=";
    let start = mail.data.find(marker).expect("a link in the mail");
    let link = &mail.data[start..start + marker.len() + 43];

    let mut opening = Visitor::new(&two);
    let (status, _, page) = opening.get(link).await;
    assert_eq!(status, 200, "{page}");
    let fields = [
        ("csrf_token", field(&page, "csrf_token").unwrap()),
        ("token", field(&page, "token").unwrap()),
    ];
    let fields: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (status, headers, _) = opening.post("/login/magic/verify", &fields).await;
    assert_eq!(
        (status, &headers["location"]),
        (303, &reqwest::header::HeaderValue::from_static("/"))
    );
    assert_eq!(
        same_browser(&one, &opening).get("/account").await.0,
        200,
        "and the session works on both"
    );
}
