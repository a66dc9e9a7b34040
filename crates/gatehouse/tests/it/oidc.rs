//! Sign-in with an OpenID Connect provider, driven over HTTP through a local provider
//! (`support::oidc_provider`) whose knobs break one thing at a time, plus one run against an
//! independent provider implementation (`oauth2-mock-server`, started by `.ci/run`).

use std::time::Duration;

use crate::support::oidc_provider::{Signing, TestProvider};
use crate::support::visitor::{Visitor, field};
use crate::support::{
    Backend, Service, TestApp, add_user, redis_url, spawn_unlimited_app, totp_code, unavailable,
};
use crate::{backend_agnostic, on_every_backend};

const PASSWORD: &str = "a long enough password for tests";

/// A Gatehouse whose provider `test` is `provider`, with `extra` settings.
async fn app_with(backend: Backend, provider: &TestProvider, extra: &[(&str, &str)]) -> TestApp {
    app_named(backend, provider, "test", extra).await
}

async fn app_named(
    backend: Backend,
    provider: &TestProvider,
    name: &str,
    extra: &[(&str, &str)],
) -> TestApp {
    let settings = provider.settings(name);
    let mut env: Vec<(&str, &str)> = settings
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    env.extend_from_slice(extra);
    spawn_unlimited_app(backend, &env).await
}

fn location(headers: &reqwest::header::HeaderMap) -> String {
    headers
        .get("location")
        .expect("a redirect")
        .to_str()
        .unwrap()
        .to_owned()
}

/// The provider's authorization URL on the page a start answers (a form's `POST` cannot be
/// redirected to another origin under `form-action 'self'`: the page moves on by itself).
fn continue_url(answer: &(u16, reqwest::header::HeaderMap, String)) -> String {
    let (status, headers, page) = answer;
    assert_eq!(*status, 200, "{page}");
    assert_eq!(headers["cache-control"], "no-store");
    let marker = "id=\"continue\" href=\"";
    let from = page.find(marker).expect("a link to the provider") + marker.len();
    let to = &page[from..from + page[from..].find('"').unwrap()];
    assert!(
        page.contains(&format!(
            "<meta http-equiv=\"refresh\" content=\"0; url={to}\">"
        )),
        "{page}"
    );
    to.replace("&amp;", "&")
        .replace("&#x2f;", "/")
        .replace("&#x3d;", "=")
}

/// Clicks "Sign in with …" and returns the provider's authorization URL.
async fn start(visitor: &mut Visitor<'_>, name: &str, next: Option<&str>) -> String {
    let csrf = visitor.csrf_from("/login").await;
    let mut form = vec![("csrf_token", csrf.as_str())];
    if let Some(next) = next {
        form.push(("next", next));
    }
    let answer = visitor
        .post(&format!("/auth/oidc/{name}/start"), &form)
        .await;
    continue_url(&answer)
}

/// Follows the authorization URL through the provider (which consents at once) and returns the
/// callback's path on the app.
async fn through_provider(app: &TestApp, authorize: &str) -> String {
    let res = app.client.get(authorize).send().await.unwrap();
    assert!(res.status().is_redirection(), "{}", res.status());
    let back = location(res.headers());
    back.strip_prefix(&app.address)
        .unwrap_or_else(|| panic!("the provider sends the browser back to Gatehouse: {back}"))
        .to_owned()
}

/// A whole sign-in: start, provider, callback; the callback's answer.
async fn sign_in(
    app: &TestApp,
    visitor: &mut Visitor<'_>,
    name: &str,
) -> (u16, reqwest::header::HeaderMap, String) {
    let authorize = start(visitor, name, None).await;
    let callback = through_provider(app, &authorize).await;
    visitor.get(&callback).await
}

fn signed_in(visitor: &Visitor<'_>) -> bool {
    visitor.cookies.contains_key("gatehouse")
}

async fn audit_actions(app: &TestApp) -> Vec<(String, String)> {
    app.db
        .query("SELECT action, changes FROM audit_log ORDER BY id")
        .fetch_all()
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0).unwrap(), r.get(1).unwrap()))
        .collect()
}

async fn linked_identities(app: &TestApp) -> i64 {
    app.db
        .query("SELECT COUNT(*) FROM oidc_identities")
        .fetch_one()
        .await
        .unwrap()
        .get(0)
        .unwrap()
}

/// Asserts a refused callback: its status, a page that says `says`, no session.
fn assert_refused(
    answer: &(u16, reqwest::header::HeaderMap, String),
    visitor: &Visitor<'_>,
    status: u16,
    says: &str,
) {
    let (got, _, page) = answer;
    assert_eq!(*got, status, "{page}");
    assert!(page.contains(says), "the page says {says:?}: {page}");
    assert!(!signed_in(visitor), "no session");
}

on_every_backend! {
    async fn a_user_signs_in_with_the_provider_and_the_identity_is_linked_and_audited(backend) {
        let provider = TestProvider::start().await;
        let app = app_with(backend, &provider, &[]).await;
        add_user(&app, "person@example.com").await;
        let mut visitor = Visitor::new(&app);
        let (status, headers, page) = sign_in(&app, &mut visitor, "test").await;
        assert_eq!(status, 303, "{page}");
        assert_eq!(location(&headers), "/");
        assert!(signed_in(&visitor));
        assert!(!visitor.cookies.contains_key("gatehouse-oidc"), "the flow cookie is cleared");
        let (status, _, account) = visitor.get("/account").await;
        assert_eq!(status, 200);
        assert!(account.contains("id=\"linked-identities\"") && account.contains("Test ID"), "{account}");
        let actions = audit_actions(&app).await;
        assert!(actions.iter().any(|(a, c)| a == "oidc.link" && c.contains("\"automatic\":true")), "{actions:?}");
        assert!(actions.iter().any(|(a, c)| a == "auth.sign_in" && c.contains("oidc:test")), "{actions:?}");

        // The second time, the identity is found by (issuer, subject), not by address.
        provider.set(|k| k.email = Some("renamed@example.com".into()));
        let mut again = Visitor::new(&app);
        let (status, _, page) = sign_in(&app, &mut again, "test").await;
        assert_eq!(status, 303, "{page}");
        assert_eq!(linked_identities(&app).await, 1);
        // The pipeline's device rule: this second browser is a new device of the user's.
        let actions = audit_actions(&app).await;
        assert!(
            actions.iter().any(|(a, c)| a == "auth.sign_in" && c.contains("oidc:test") && c.contains("\"new_device\":true")),
            "{actions:?}"
        );
    }

    async fn a_tampered_or_failing_id_token_is_refused_with_a_clear_page(backend) {
        let provider = TestProvider::start().await;
        let app = app_with(backend, &provider, &[]).await;
        add_user(&app, "person@example.com").await;
        type Break = fn(&mut crate::support::oidc_provider::Knobs);
        let cases: [(&str, Break); 10] = [
            ("wrong nonce", |k| k.nonce = Some("another-nonce".into())),
            ("wrong audience", |k| k.audience = Some("another-client".into())),
            ("an untrusted second audience", |k| k.extra_audience = Some("another-client".into())),
            ("authorized for another party", |k| k.azp = Some("another-client".into())),
            ("wrong issuer", |k| k.issuer = Some("https://evil.example".into())),
            ("expired", |k| k.expires_in = -60),
            ("issued ten minutes in the future", |k| {
                k.issued_in = 600;
                k.expires_in = 900;
            }),
            ("alg none", |k| k.signing = Signing::None),
            ("HS256 with the client secret", |k| k.signing = Signing::Hs256WithClientSecret),
            ("token endpoint error", |k| k.token_error = true),
        ];
        for (case, break_it) in cases {
            provider.set(|k| *k = Default::default());
            provider.set(break_it);
            let mut visitor = Visitor::new(&app);
            let answer = sign_in(&app, &mut visitor, "test").await;
            assert_eq!(answer.0, 400, "{case}: refused, never a 500");
            assert_refused(&answer, &visitor, 400, "did not confirm who you are");
        }
        assert_eq!(linked_identities(&app).await, 0);
        let failures = audit_actions(&app).await.into_iter().filter(|(a, _)| a == "auth.oidc_failed").count();
        assert_eq!(failures, 10, "every refusal is audited");
    }

    async fn a_rotated_key_is_fetched_once_and_made_up_key_ids_do_not_hammer_the_provider(backend) {
        let provider = TestProvider::start().await;
        let app = app_with(backend, &provider, &[]).await;
        add_user(&app, "person@example.com").await;
        let (status, _, _) = sign_in(&app, &mut Visitor::new(&app), "test").await;
        assert_eq!(status, 303);
        assert_eq!(provider.jwks_fetches(), 1);

        // The provider rotates to its second key between two sign-ins.
        provider.set(|k| k.key = 1);
        let (status, _, page) = sign_in(&app, &mut Visitor::new(&app), "test").await;
        assert_eq!(status, 303, "a rotated key is fetched on its unknown kid: {page}");
        assert_eq!(provider.jwks_fetches(), 2);

        // Tokens with made-up key IDs: refused, and at most one refresh a minute.
        provider.set(|k| k.kid = Some("made-up".into()));
        let mut visitor = Visitor::new(&app);
        let answer = sign_in(&app, &mut visitor, "test").await;
        assert_refused(&answer, &visitor, 400, "did not confirm who you are");
        assert_eq!(provider.jwks_fetches(), 2, "no refresh within a minute of the last");
        app.clock.advance(Duration::from_secs(61));
        let mut visitor = Visitor::new(&app);
        let answer = sign_in(&app, &mut visitor, "test").await;
        assert_refused(&answer, &visitor, 400, "did not confirm who you are");
        assert_eq!(provider.jwks_fetches(), 3, "one refresh, a minute later");
    }

    async fn an_unverified_address_or_one_outside_the_allowed_domains_gets_no_account(backend) {
        let provider = TestProvider::start().await;
        let app = app_with(backend, &provider, &[("GATEHOUSE_OIDC_TEST_ALLOWED_DOMAINS", "corp.example")]).await;
        add_user(&app, "person@example.com").await;
        // An existing user's address, but not verified by the provider: no link.
        provider.set(|k| k.email_verified = false);
        let mut visitor = Visitor::new(&app);
        let answer = sign_in(&app, &mut visitor, "test").await;
        assert_refused(&answer, &visitor, 403, "Sign in with an email link first");
        // A verified address outside the allowed domains that is nobody's: no account.
        provider.set(|k| {
            k.email_verified = true;
            k.subject = "subject-2".into();
            k.email = Some("stranger@elsewhere.example".into());
        });
        let mut visitor = Visitor::new(&app);
        let answer = sign_in(&app, &mut visitor, "test").await;
        assert_refused(&answer, &visitor, 403, "No account here is linked");
        assert_eq!(linked_identities(&app).await, 0);
        // In an allowed domain: a new user with role `user`.
        provider.set(|k| k.email = Some("new@corp.example".into()));
        let mut visitor = Visitor::new(&app);
        let (status, _, page) = sign_in(&app, &mut visitor, "test").await;
        assert_eq!(status, 303, "{page}");
        let role: String = app.db.query("SELECT role FROM users WHERE email = $1").bind("new@corp.example")
            .fetch_one().await.unwrap().get(0).unwrap();
        assert_eq!(role, "user");
    }

    async fn a_google_account_outside_the_allowed_workspace_domains_gets_no_account(backend) {
        let provider = TestProvider::start().await;
        let app = app_named(backend, &provider, "google", &[("GATEHOUSE_OIDC_GOOGLE_ALLOWED_DOMAINS", "corp.example")]).await;
        provider.set(|k| k.email = Some("alice@corp.example".into()));
        for hd in [None, Some("other.example")] {
            provider.set(|k| k.hd = hd.map(str::to_owned));
            let mut visitor = Visitor::new(&app);
            let answer = sign_in(&app, &mut visitor, "google").await;
            assert_refused(&answer, &visitor, 403, "No account here is linked");
        }
        assert_eq!(linked_identities(&app).await, 0);
        provider.set(|k| k.hd = Some("corp.example".into()));
        let mut visitor = Visitor::new(&app);
        let (status, _, page) = sign_in(&app, &mut visitor, "google").await;
        assert_eq!(status, 303, "{page}");
    }

    async fn a_state_is_single_use_bound_to_its_browser_and_expires(backend) {
        let provider = TestProvider::start().await;
        let app = app_with(backend, &provider, &[]).await;
        add_user(&app, "person@example.com").await;
        assert_state_rules(&app).await;
    }

    async fn an_mfa_user_gives_the_second_factor_after_the_provider(backend) {
        let provider = TestProvider::start().await;
        let app = app_with(backend, &provider, &[]).await;
        let user = add_user(&app, "person@example.com").mfa().await;
        let mut visitor = Visitor::new(&app);
        let (status, headers, _) = sign_in(&app, &mut visitor, "test").await;
        assert_eq!(status, 303);
        assert_eq!(location(&headers), "/login/mfa");
        assert!(!signed_in(&visitor), "no session from the provider alone");
        let csrf = visitor.csrf_from("/login/mfa").await;
        // The code of the enrolment is used; the next one signs in.
        app.clock.advance(Duration::from_secs(30));
        let code = totp_code(&app, user.setup_key.as_deref().unwrap(), 0);
        let (status, _, page) = visitor.post("/login/mfa", &[("csrf_token", &csrf), ("code", &code)]).await;
        assert_eq!(status, 303, "{page}");
        assert!(signed_in(&visitor));
        let actions = audit_actions(&app).await;
        assert!(actions.iter().any(|(a, c)| a == "auth.sign_in" && c.contains("oidc:test+totp")), "{actions:?}");
    }

    async fn linking_needs_a_proven_account_and_unlinking_keeps_a_way_in(backend) {
        let provider = TestProvider::start().await;
        let app = app_with(backend, &provider, &[]).await;
        add_user(&app, "owner@example.com").password(PASSWORD).await;
        // The provider's address is nobody's here: a first sign-in is refused.
        provider.set(|k| k.email = Some("someone@gmail.example".into()));
        let mut stranger = Visitor::new(&app);
        let answer = sign_in(&app, &mut stranger, "test").await;
        assert_refused(&answer, &stranger, 403, "then link Test ID from your account page");

        // The owner proves the account (password), then links from /account.
        let mut owner = Visitor::new(&app);
        let csrf = owner.csrf_from("/login").await;
        let (status, _, _) = owner.post("/login/password", &[("csrf_token", &csrf), ("email", "owner@example.com"), ("password", PASSWORD)]).await;
        assert_eq!(status, 303);
        let csrf = owner.csrf_from("/account").await;
        let answer = owner.post("/account/identities/link", &[("csrf_token", &csrf), ("provider", "test")]).await;
        let callback = through_provider(&app, &continue_url(&answer)).await;
        let (status, headers, page) = owner.get(&callback).await;
        assert_eq!(status, 303, "{page}");
        assert_eq!(location(&headers), "/account?notice=linked");
        let (_, _, account) = owner.get("/account").await;
        assert!(account.contains("someone@gmail.example"), "{account}");
        assert!(audit_actions(&app).await.iter().any(|(a, c)| a == "oidc.link" && c.contains("\"automatic\":false")));

        // Now the identity signs the owner in.
        let mut later = Visitor::new(&app);
        let (status, _, _) = sign_in(&app, &mut later, "test").await;
        assert_eq!(status, 303);

        // The same identity cannot be linked to a second account.
        add_user(&app, "other@example.com").password(PASSWORD).await;
        let mut other = Visitor::new(&app);
        let csrf = other.csrf_from("/login").await;
        other.post("/login/password", &[("csrf_token", &csrf), ("email", "other@example.com"), ("password", PASSWORD)]).await;
        let csrf = other.csrf_from("/account").await;
        let answer = other.post("/account/identities/link", &[("csrf_token", &csrf), ("provider", "test")]).await;
        let callback = through_provider(&app, &continue_url(&answer)).await;
        let answer = other.get(&callback).await;
        assert_eq!(answer.0, 409, "{}", answer.2);
        assert!(answer.2.contains("already linked to another account"));

        // The owner has a password: unlinking is allowed, and audited.
        let id = field(&account, "id").expect("an unlink form");
        let csrf = owner.csrf_from("/account").await;
        let (status, headers, page) = owner.post("/account/identities/unlink", &[("csrf_token", &csrf), ("id", &id)]).await;
        assert_eq!(status, 303, "{page}");
        assert_eq!(location(&headers), "/account?notice=unlinked");
        assert_eq!(linked_identities(&app).await, 0);
        assert!(audit_actions(&app).await.iter().any(|(a, _)| a == "oidc.unlink"));
    }

    async fn the_last_way_in_cannot_be_unlinked_and_stale_sign_ins_cannot_link(backend) {
        let provider = TestProvider::start().await;
        let app = app_with(backend, &provider, &[]).await;
        add_user(&app, "person@example.com").await;
        let mut visitor = Visitor::new(&app);
        let (status, _, _) = sign_in(&app, &mut visitor, "test").await;
        assert_eq!(status, 303);
        let (_, _, account) = visitor.get("/account").await;
        let id = field(&account, "id").expect("an unlink form");
        let csrf = visitor.csrf_from("/account").await;
        let (status, _, page) = visitor.post("/account/identities/unlink", &[("csrf_token", &csrf), ("id", &id)]).await;
        assert_eq!(status, 409, "no password, one identity: {page}");
        assert!(page.contains("last way to sign in"));
        assert_eq!(linked_identities(&app).await, 1);

        app.clock.advance(Duration::from_secs(11 * 60));
        let csrf = visitor.csrf_from("/account").await;
        let (status, _, _) = visitor.post("/account/identities/unlink", &[("csrf_token", &csrf), ("id", &id)]).await;
        assert_eq!(status, 403, "unlinking needs a recent sign-in");
        let (status, _, page) = visitor.post("/account/identities/link", &[("csrf_token", &csrf), ("provider", "test")]).await;
        assert_eq!(status, 403, "linking needs a recent sign-in: {page}");
    }
}

/// The state rules, on whichever session store `app` has.
async fn assert_state_rules(app: &TestApp) {
    // Replayed: the callback URL of a finished sign-in signs nobody in again.
    let mut visitor = Visitor::new(app);
    let authorize = start(&mut visitor, "test", None).await;
    let callback = through_provider(app, &authorize).await;
    let (status, _, _) = visitor.get(&callback).await;
    assert_eq!(status, 303);
    let mut replayer = Visitor::new(app);
    replayer.cookies = visitor.cookies.clone();
    replayer.cookies.remove("gatehouse");
    let answer = replayer.get(&callback).await;
    assert_refused(&answer, &replayer, 400, "expired, was already used");

    // Another browser's callback (login CSRF): refused, and the state is gone for both.
    let mut victim = Visitor::new(app);
    let mut attacker = Visitor::new(app);
    let authorize = start(&mut attacker, "test", None).await;
    let callback = through_provider(app, &authorize).await;
    let answer = victim.get(&callback).await;
    assert_refused(&answer, &victim, 400, "started in another browser");
    let answer = attacker.get(&callback).await;
    assert_refused(&answer, &attacker, 400, "expired");

    // A tampered state: refused, never a 500.
    let mut visitor = Visitor::new(app);
    let authorize = start(&mut visitor, "test", None).await;
    let callback = through_provider(app, &authorize).await;
    let tampered = callback.replace("state=", "state=x");
    let answer = visitor.get(&tampered).await;
    assert_refused(&answer, &visitor, 400, "expired");

    // Ten minutes is all a flow gets.
    let mut visitor = Visitor::new(app);
    let authorize = start(&mut visitor, "test", None).await;
    let callback = through_provider(app, &authorize).await;
    app.clock.advance(Duration::from_secs(601));
    let answer = visitor.get(&callback).await;
    assert_refused(&answer, &visitor, 400, "expired");
}

#[tokio::test]
async fn the_flow_state_lives_in_redis_when_sessions_do() {
    let Some(redis) = redis_url("oidc::the_flow_state_lives_in_redis_when_sessions_do") else {
        return;
    };
    let provider = TestProvider::start().await;
    let app = app_with(
        Backend::Sqlite,
        &provider,
        &[("GATEHOUSE_REDIS_URL", &redis)],
    )
    .await;
    add_user(&app, "person@example.com").await;
    let pending: i64 = app
        .db
        .query("SELECT COUNT(*) FROM pending_flows")
        .fetch_one()
        .await
        .unwrap()
        .get(0)
        .unwrap();
    assert_eq!(pending, 0);
    assert_state_rules(&app).await;
    let pending: i64 = app
        .db
        .query("SELECT COUNT(*) FROM pending_flows")
        .fetch_one()
        .await
        .unwrap()
        .get(0)
        .unwrap();
    assert_eq!(
        pending, 0,
        "with Redis, nothing of the flows is in the database"
    );
}

backend_agnostic! {
    async fn the_sign_in_page_has_one_button_per_provider_and_the_seed_names_configure_google(backend) {
        let provider = TestProvider::start().await;
        let app = app_with(backend, &provider, &[]).await;
        let (_, _, page) = Visitor::new(&app).get("/login").await;
        assert_eq!(page.matches("action=\"/auth/oidc/").count(), 1, "{page}");
        assert!(page.contains("Sign in with Test ID"));
        let plain = crate::support::spawn_app(backend).await;
        let (_, _, page) = Visitor::new(&plain).get("/login").await;
        assert!(!page.contains("/auth/oidc/"), "no provider, no button");
        let seeded = crate::support::spawn_app_with(backend, &[("GOOGLE_CLIENT_ID", "seed-id"), ("GOOGLE_CLIENT_SECRET", "seed-secret")]).await;
        let (_, _, page) = Visitor::new(&seeded).get("/login").await;
        assert!(page.contains("action=\"/auth/oidc/google/start\"") && page.contains("Sign in with Google"), "{page}");
    }

    async fn cancelling_at_the_provider_is_a_clear_page(backend) {
        let provider = TestProvider::start().await;
        let app = app_with(backend, &provider, &[]).await;
        provider.set(|k| k.deny = true);
        let mut visitor = Visitor::new(&app);
        let answer = sign_in(&app, &mut visitor, "test").await;
        assert_refused(&answer, &visitor, 403, "was cancelled");
        // A bare error with no state at all is the same page, never a 500.
        let answer = visitor.get("/auth/oidc/test/callback?error=access_denied").await;
        assert_refused(&answer, &visitor, 403, "was cancelled");
        let answer = visitor.get("/auth/oidc/test/callback").await;
        assert_refused(&answer, &visitor, 400, "expired");
        let answer = visitor.get("/auth/oidc/nope/callback?code=x&state=y").await;
        assert_eq!(answer.0, 404);
    }

    async fn a_redirecting_discovery_document_is_not_followed(backend) {
        let provider = TestProvider::start().await;
        provider.set(|k| k.redirect_discovery = true);
        let app = app_with(backend, &provider, &[]).await;
        let mut visitor = Visitor::new(&app);
        let csrf = visitor.csrf_from("/login").await;
        let (status, _, page) = visitor.post("/auth/oidc/test/start", &[("csrf_token", &csrf)]).await;
        assert_eq!(status, 502, "{page}");
        assert!(page.contains("cannot be reached right now"));
    }

    async fn a_provider_that_does_not_answer_is_given_up_on(backend) {
        let provider = TestProvider::start().await;
        let app = app_with(backend, &provider, &[]).await;
        add_user(&app, "person@example.com").await;
        provider.set(|k| k.token_hangs = true);
        let mut visitor = Visitor::new(&app);
        let started = std::time::Instant::now();
        let answer = sign_in(&app, &mut visitor, "test").await;
        assert_refused(&answer, &visitor, 502, "cannot be reached right now");
        assert!(started.elapsed() < Duration::from_secs(20), "the back channel's timeout, not the request's");
    }

    async fn next_is_followed_only_to_a_path_of_this_site(backend) {
        let provider = TestProvider::start().await;
        let app = app_with(backend, &provider, &[]).await;
        add_user(&app, "person@example.com").await;
        for (next, lands) in [("/account", "/account"), ("//evil.example/", "/"), ("https://evil.example/", "/")] {
            let mut visitor = Visitor::new(&app);
            let authorize = start(&mut visitor, "test", Some(next)).await;
            let callback = through_provider(&app, &authorize).await;
            let (status, headers, _) = visitor.get(&callback).await;
            assert_eq!(status, 303);
            assert_eq!(location(&headers), lands, "next={next}");
        }
    }
}

/// The interop run: the same flow against an independent implementation (`oauth2-mock-server`,
/// which `.ci/run` installs from npm and starts), whose issuer `GATEHOUSE_TEST_OIDC_INTEROP_URL`
/// names. It signs RS256 tokens with its own keys and names the person in `sub`; its tokens
/// carry no address, so the identity is linked from the account page.
#[tokio::test]
async fn signs_in_against_an_independent_provider() {
    let test = "oidc::signs_in_against_an_independent_provider";
    let Some(issuer) = std::env::var("GATEHOUSE_TEST_OIDC_INTEROP_URL")
        .ok()
        .filter(|v| !v.is_empty())
    else {
        unavailable(
            test,
            Service::OidcInterop,
            "GATEHOUSE_TEST_OIDC_INTEROP_URL is not set",
        );
        return;
    };
    let issuer = issuer.trim_end_matches('/').to_owned();
    let app = spawn_unlimited_app(
        Backend::Sqlite,
        &[
            ("GATEHOUSE_OIDC_PROVIDERS", "mock"),
            ("GATEHOUSE_OIDC_MOCK_ISSUER", &issuer),
            ("GATEHOUSE_OIDC_MOCK_CLIENT_ID", "gatehouse"),
            ("GATEHOUSE_OIDC_MOCK_CLIENT_SECRET", "interop-secret"),
        ],
    )
    .await;
    add_user(&app, "owner@example.com").password(PASSWORD).await;
    let mut owner = Visitor::new(&app);
    let csrf = owner.csrf_from("/login").await;
    owner
        .post(
            "/login/password",
            &[
                ("csrf_token", &csrf),
                ("email", "owner@example.com"),
                ("password", PASSWORD),
            ],
        )
        .await;
    let csrf = owner.csrf_from("/account").await;
    let answer = owner
        .post(
            "/account/identities/link",
            &[("csrf_token", &csrf), ("provider", "mock")],
        )
        .await;
    let callback = through_provider(&app, &continue_url(&answer)).await;
    let (status, headers, page) = owner.get(&callback).await;
    assert_eq!(status, 303, "{page}");
    assert_eq!(location(&headers), "/account?notice=linked");

    // Signed out, the provider's identity signs the owner in.
    let mut later = Visitor::new(&app);
    let (status, _, page) = sign_in(&app, &mut later, "mock").await;
    assert_eq!(status, 303, "{page}");
    assert!(signed_in(&later));
    let (_, _, account) = later.get("/account").await;
    assert!(account.contains("owner@example.com"));
}

/// The whole flow in Chromium: the button, the provider, back signed in; no console error or
/// CSP violation on the way (the page's `form-action` must not stop the hop to the provider).
#[tokio::test]
async fn a_user_signs_in_with_the_provider_in_a_real_browser() {
    let test = "oidc::a_user_signs_in_with_the_provider_in_a_real_browser";
    let Some(browser) = crate::support::browser::Browser::start(test).await else {
        return;
    };
    let provider = TestProvider::start().await;
    let app = app_with(Backend::Sqlite, &provider, &[]).await;
    add_user(&app, "person@example.com").name("Pat").await;
    browser
        .client
        .goto(&format!("{}/login", app.address))
        .await
        .unwrap();
    browser.expect_heading("Sign in").await;
    browser.screenshot("01-login").await;
    browser.click("#sign-in-with-test").await;
    browser.expect_heading("Welcome, Pat").await;
    browser.screenshot("02-signed-in").await;
    let problems = browser.problems();
    assert!(
        problems.is_empty(),
        "console errors or CSP violations:\n{}",
        problems.join("\n")
    );
}
