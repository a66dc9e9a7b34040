//! Token signing keys through their life: published before they sign, read by every instance
//! with no traffic, rotated by hand (also in development) or on a schedule, and retired keys
//! published until their last token has expired.

use std::time::Duration;

use gatehouse::identity::tokens::{PUBLICATION_DELAY, RELOAD_EVERY};
use serde_json::Value;

use crate::api::{app, me, parts, password_grant};
use crate::on_every_backend;
use crate::support::{TestApp, run_cli, spawn_app_with, spawn_instance};

/// The `kid`s of the published key set.
async fn published(app: &TestApp) -> Vec<String> {
    let res = app.get("/.well-known/jwks.json").await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["cache-control"], "public, max-age=300");
    let jwks: Value = res.json().await.unwrap();
    jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_owned())
        .collect()
}

/// Waits (real time, bounded, polling gently: the key set is rate-limited like every route) until
/// the published key set has `n` keys: the instance's key upkeep runs on its own, with no
/// request asking for it.
async fn until_published(app: &TestApp, n: usize) -> Vec<String> {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let kids = published(app).await;
        if kids.len() == n || std::time::Instant::now() > deadline {
            return kids;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn kid(token: &Value) -> String {
    parts(token["access_token"].as_str().unwrap()).0["kid"]
        .as_str()
        .unwrap()
        .to_owned()
}

fn rotated_kid(out: &std::process::Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
        .split_whitespace()
        .nth(3)
        .unwrap()
        .trim_end_matches(':')
        .to_owned()
}

on_every_backend! {
    async fn a_rotated_key_is_published_at_once_signs_after_the_cache_lifetime_and_retires_after_its_last_token(backend) {
        let app = app(backend).await;
        let before = password_grant(&app).await;
        let old = kid(&before);
        assert_eq!(published(&app).await, vec![old.clone()]);

        let out = run_cli(&app.cli_env(), &["keys", "rotate"]);
        let new = rotated_kid(&out);
        assert!(String::from_utf8_lossy(&out.stdout).contains("signs from"), "{}", String::from_utf8_lossy(&out.stdout));
        // No token request: the instance reads the keys on its own.
        app.clock.advance(RELOAD_EVERY);
        assert_eq!(until_published(&app, 2).await, [new.clone(), old.clone()], "published without traffic, newest first");
        assert_eq!(kid(&password_grant(&app).await), old, "a relying party may still hold the old key set: the new key does not sign yet");

        // The command reads the system clock, the app its own: a margin for the seconds between.
        app.clock.advance(PUBLICATION_DELAY - RELOAD_EVERY + Duration::from_secs(30));
        let after = password_grant(&app).await;
        assert_eq!(kid(&after), new, "after the publication delay the new key signs");
        assert_eq!(me(&app, before["access_token"].as_str().unwrap()).await.0, 200, "tokens of the old key keep working");
        assert_eq!(published(&app).await, [new.clone(), old.clone()]);

        // The last token of the old key was signed just before the switch and lives 15 minutes.
        app.clock.advance(Duration::from_secs(14 * 60));
        assert_eq!(published(&app).await, [new.clone(), old.clone()], "published while a token it signed lives");
        app.clock.advance(Duration::from_secs(62));
        assert_eq!(published(&app).await, vec![new.clone()], "gone once its last token has expired");
        let records = gatehouse::audit::records_after(&app.db, 0, 100).await.unwrap();
        assert!(records.iter().any(|r| r.action == "keys.rotate" && r.entity_id.as_deref() == Some(new.as_str())));
    }

    async fn keys_rotate_works_in_development_with_the_kept_key_and_refuses_another_key(backend) {
        let app = spawn_app_with(backend, &[("GATEHOUSE_SECRET_KEY", "")]).await;
        let first = published(&app).await;
        let env: Vec<_> = app.cli_env().into_iter().filter(|(k, _)| k != "GATEHOUSE_SECRET_KEY").collect();
        let new = rotated_kid(&run_cli(&env, &["keys", "rotate"]));
        app.clock.advance(RELOAD_EVERY);
        assert_eq!(until_published(&app, 2).await, [new, first[0].clone()]);

        let mut wrong = env.clone();
        wrong.push(("GATEHOUSE_SECRET_KEY".into(), "not-the-key-of-this-database-0123456789abcdef".into()));
        let out = run_cli(&wrong, &["keys", "rotate"]);
        assert!(!out.status.success(), "a key the servers cannot open is never made");
        assert!(String::from_utf8_lossy(&out.stderr).contains("GATEHOUSE_SECRET_KEY is not the key this database was sealed under"), "{}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(stored_keys(&app).await, 2);
    }

    async fn automatic_rotation_makes_one_key_per_period_across_instances(backend) {
        let rotation = [("GATEHOUSE_SIGNING_KEY_ROTATION", "1h")];
        let one = spawn_app_with(backend, &rotation).await;
        let two = spawn_instance(&one, &rotation).await;
        let first = published(&one).await;
        assert_eq!(published(&two).await, first, "the second instance uses the first key");
        app_clocks_advance(&[&one, &two], Duration::from_secs(3600) + RELOAD_EVERY);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while stored_keys(&one).await < 2 && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // Both instances have had their turn: the one that came second found the new key.
        app_clocks_advance(&[&one, &two], RELOAD_EVERY);
        let kids = until_published(&one, 2).await;
        assert_eq!(kids.len(), 2, "a new key after the period: {kids:?}");
        assert_eq!(until_published(&two, 2).await, kids);
        assert_eq!(stored_keys(&one).await, 2, "one instance rotated, the other read its key");
        let records = gatehouse::audit::records_after(&one.db, 0, 100).await.unwrap();
        assert_eq!(records.iter().filter(|r| r.action == "keys.rotate").count(), 1);
    }
}

async fn stored_keys(app: &TestApp) -> i64 {
    app.db
        .query("SELECT COUNT(*) FROM signing_keys")
        .fetch_one()
        .await
        .unwrap()
        .get(0)
        .unwrap()
}

fn app_clocks_advance(apps: &[&TestApp], by: Duration) {
    for app in apps {
        app.clock.advance(by);
    }
}
