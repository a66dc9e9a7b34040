//! Concurrent requests against the rules that must hold under them: the one-time code's
//! attempt counter.

use gatehouse::clock::Clock as _;
use gatehouse::identity::Email;
use gatehouse::identity::magic_links::{self, CodeOutcome, MAX_CODE_ATTEMPTS};
use tokio::task::JoinSet;

use crate::on_every_backend;
use crate::support::visitor::Visitor;
use crate::support::{TestApp, add_user, spawn_app_with, spawn_app_with_mail};

/// The link's one-time code, from a sign-in mail.
fn code_in(mail: &str) -> String {
    let marker = "enter this code on the sign-in page: ";
    let c = mail.find(marker).expect("a code in the mail") + marker.len();
    mail[c..c + 8].to_owned()
}

/// The failed attempts counted against `email`'s link.
async fn failed_attempts(app: &TestApp, email: &str) -> i64 {
    let row = app
        .db
        .query("SELECT failed_attempts FROM magic_links WHERE email = $1")
        .bind(email)
        .fetch_one()
        .await
        .unwrap();
    i64::from(row.get::<i32>(0).unwrap())
}

on_every_backend! {
    async fn twenty_concurrent_wrong_codes_count_at_most_five_and_end_the_link(backend) {
        let app = spawn_app_with(backend, &[]).await;
        let keys = gatehouse::keys::Keys::load(&app.db, &secrecy::SecretString::from(crate::support::GOOD_KEY), None, gatehouse::store::now()).await.unwrap();
        let email = Email::parse("ada@example.com").unwrap();
        let now = gatehouse::store::now();
        let link = magic_links::issue(&app.db, &keys, now, &email, None, magic_links::DEFAULT_LINK_LIFETIME).await.unwrap();
        let code = magic_links::expose(&link.code).to_owned();
        let wrong = if code == "00000000" { "11111111" } else { "00000000" };

        let mut guesses = JoinSet::new();
        for _ in 0..20 {
            let (db, keys, email) = (app.db.clone(), keys.clone(), email.clone());
            guesses.spawn(async move { magic_links::consume_code(&db, &keys, now, &email, wrong).await });
        }
        while let Some(outcome) = guesses.join_next().await {
            assert_eq!(outcome.unwrap().unwrap(), CodeOutcome::Rejected);
        }

        assert_eq!(failed_attempts(&app, "ada@example.com").await, MAX_CODE_ATTEMPTS, "every guess counted, none beyond the limit");
        let right = magic_links::consume_code(&app.db, &keys, now, &email, &code).await.unwrap();
        assert_eq!(right, CodeOutcome::Rejected, "the right code no longer works");
    }

    async fn concurrent_wrong_codes_over_http_end_the_link_after_five(backend) {
        let (app, sink) = spawn_app_with_mail(backend, &[]).await;
        add_user(&app, "ada@example.com").await;
        let mut v = Visitor::new(&app);
        let csrf = v.csrf_from("/login").await;
        v.post("/login/magic", &[("csrf_token", &csrf), ("email", "ada@example.com")]).await;
        let code = code_in(&sink.wait_for("ada@example.com").await.data);
        let wrong = if code == "00000000" { "11111111" } else { "00000000" };

        // Rounds of four concurrent guesses, the app's clock fixed within a round, until the
        // link has counted its five: how many of a round get past the address's delay (the rest
        // are 429s) depends on timing, so at most five rounds, and never more than eight guesses
        // counted against the address, below its lock (ten).
        let mut visitors = Vec::new();
        for _ in 0..4 {
            let mut w = Visitor::new(&app);
            let csrf = w.csrf_from("/login").await;
            visitors.push((w, csrf));
        }
        for _ in 0..5 {
            let round = visitors.iter_mut().map(|(w, csrf)| async move {
                let form = [("csrf_token", csrf.as_str()), ("email", "ada@example.com"), ("code", wrong)];
                w.post("/login/code", &form).await.0
            });
            for status in futures_util::future::join_all(round).await {
                assert!(status == 400 || status == 429, "{status}");
            }
            // Past the throttle's growing delay.
            app.clock.advance(std::time::Duration::from_secs(60));
            if failed_attempts(&app, "ada@example.com").await >= MAX_CODE_ATTEMPTS {
                break;
            }
        }

        assert!(failed_attempts(&app, "ada@example.com").await <= MAX_CODE_ATTEMPTS);
        let (w, csrf) = &mut visitors[0];
        let (status, _, _) = w.post("/login/code", &[("csrf_token", csrf.as_str()), ("email", "ada@example.com"), ("code", &code)]).await;
        assert_eq!(status, 400, "the right code no longer works (now {})", app.clock.now());
        assert_eq!(failed_attempts(&app, "ada@example.com").await, MAX_CODE_ATTEMPTS);
    }
}
