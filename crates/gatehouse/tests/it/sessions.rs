//! Sessions: one suite over every store present (SQLite, PostgreSQL, Redis), time moved by an
//! injected clock.

use std::sync::Arc;
use std::time::Duration;

use gatehouse::clock::ManualClock;
use gatehouse::identity::sessions::{
    RedisSessions, SessionConfig, SessionMeta, SessionStore, Sessions,
};
use uuid::Uuid;

use crate::support::{Backend, TestApp, add_user, redis_url, spawn_app};

const MINUTE: Duration = Duration::from_secs(60);
const SECOND: Duration = Duration::from_secs(1);

#[derive(Clone, Copy, Debug)]
pub(crate) enum Store {
    Sqlite,
    Postgres,
    Redis,
}

pub(crate) struct Fixture {
    pub(crate) sessions: Sessions,
    pub(crate) clock: ManualClock,
    pub(crate) alice: Uuid,
    pub(crate) bob: Uuid,
    _app: TestApp,
}

/// Sessions on `store` with `config`, and two users; `None` (with a printed reason) when the
/// store is not available here.
pub(crate) async fn fixture(store: Store, test: &str, config: SessionConfig) -> Option<Fixture> {
    let backend = match store {
        Store::Postgres => Backend::Postgres,
        Store::Sqlite | Store::Redis => Backend::Sqlite,
    };
    if !backend.available(test) {
        return None;
    }
    let app = spawn_app(backend).await;
    let session_store = match store {
        Store::Sqlite | Store::Postgres => SessionStore::Database(app.db.clone()),
        Store::Redis => {
            let url = redis_url(test)?;
            let client = redis::Client::open(url).unwrap();
            let prefix = format!("gh-test:{}:", Uuid::new_v4().simple());
            SessionStore::Redis(RedisSessions::new(&client, &prefix))
        }
    };
    let clock = ManualClock::new();
    let alice = add_user(&app, "alice@example.com").await.id;
    let bob = add_user(&app, "bob@example.com").await.id;
    Some(Fixture {
        sessions: Sessions::new(session_store, config, Arc::new(clock.clone())),
        clock,
        alice,
        bob,
        _app: app,
    })
}

fn meta() -> SessionMeta {
    SessionMeta {
        client_ip: Some("203.0.113.9".parse().unwrap()),
        user_agent: Some("Mozilla/5.0 (X11; Linux x86_64) Firefox/140.0".into()),
    }
}

/// Runs each body once per session store: `sqlite`, `postgres`, `redis`.
macro_rules! on_every_session_store {
    ($(async fn $name:ident($f:ident, $config:expr) $body:block)*) => {$(
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            async fn run(store: Store) {
                let test = concat!("sessions::", stringify!($name));
                let Some($f) = fixture(store, test, $config).await else { return };
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
    async fn a_session_is_found_by_its_token_only(f, SessionConfig::default()) {
        let (token, session) = f.sessions.create(f.alice, &meta()).await.unwrap();
        let loaded = f.sessions.load(token.expose()).await.unwrap().expect("session");
        assert_eq!(loaded.user_id, f.alice);
        assert_eq!(loaded.client_ip.as_deref(), Some("203.0.113.9"));
        assert!(loaded.user_agent.unwrap().contains("Firefox"));
        // What the store holds is not a usable cookie.
        assert!(f.sessions.load(&session.id_hash).await.unwrap().is_none());
        assert!(f.sessions.load("not-a-token").await.unwrap().is_none());
    }

    async fn an_idle_session_ends_after_the_idle_timeout(f, SessionConfig::default()) {
        let (token, _) = f.sessions.create(f.alice, &meta()).await.unwrap();
        f.clock.advance(30 * MINUTE - SECOND);
        assert!(f.sessions.load(token.expose()).await.unwrap().is_some(), "alive one second before 30 idle minutes");
        f.clock.advance(2 * SECOND);
        assert!(f.sessions.load(token.expose()).await.unwrap().is_none(), "gone one second after");
        assert!(f.sessions.list(f.alice).await.unwrap().is_empty());
    }

    async fn activity_keeps_a_session_alive_until_the_absolute_lifetime(f, SessionConfig::default()) {
        let (token, _) = f.sessions.create(f.alice, &meta()).await.unwrap();
        // Active every 25 minutes: never idle for 30.
        for _ in 0..28 {
            f.clock.advance(25 * MINUTE);
            let s = f.sessions.load(token.expose()).await.unwrap().expect("still alive");
            f.sessions.touch(s).await.unwrap();
        }
        f.clock.advance(20 * MINUTE - SECOND);
        let s = f.sessions.load(token.expose()).await.unwrap().expect("alive one second before 12 hours");
        f.sessions.touch(s).await.unwrap();
        f.clock.advance(2 * SECOND);
        assert!(
            f.sessions.load(token.expose()).await.unwrap().is_none(),
            "12 hours after sign-in the session ends, however active"
        );
    }

    async fn last_seen_is_written_at_most_once_per_interval(f, SessionConfig::default()) {
        let (token, created) = f.sessions.create(f.alice, &meta()).await.unwrap();
        f.clock.advance(Duration::from_secs(30));
        let s = f.sessions.load(token.expose()).await.unwrap().unwrap();
        f.sessions.touch(s).await.unwrap();
        let s = f.sessions.load(token.expose()).await.unwrap().unwrap();
        assert_eq!(s.last_seen_at, created.last_seen_at, "no write within the interval");
        f.clock.advance(Duration::from_secs(31));
        f.sessions.touch(s).await.unwrap();
        let s = f.sessions.load(token.expose()).await.unwrap().unwrap();
        assert!(s.last_seen_at > created.last_seen_at);
    }

    async fn max_sessions_per_user_revokes_the_oldest(f, SessionConfig { max_per_user: Some(1), ..SessionConfig::default() }) {
        let (first, _) = f.sessions.create(f.alice, &meta()).await.unwrap();
        f.clock.advance(Duration::from_secs(1));
        let (second, _) = f.sessions.create(f.alice, &meta()).await.unwrap();
        assert!(f.sessions.load(first.expose()).await.unwrap().is_none(), "the oldest is revoked");
        assert!(f.sessions.load(second.expose()).await.unwrap().is_some());
        let (bobs, _) = f.sessions.create(f.bob, &meta()).await.unwrap();
        assert!(f.sessions.load(second.expose()).await.unwrap().is_some(), "other users are not affected");
        assert!(f.sessions.load(bobs.expose()).await.unwrap().is_some());
    }

    async fn a_user_revokes_their_own_sessions_only(f, SessionConfig::default()) {
        let (alices, alice_session) = f.sessions.create(f.alice, &meta()).await.unwrap();
        let (bobs, bob_session) = f.sessions.create(f.bob, &meta()).await.unwrap();
        assert!(!f.sessions.revoke(f.alice, &bob_session.id_hash).await.unwrap());
        assert!(f.sessions.load(bobs.expose()).await.unwrap().is_some());
        assert!(f.sessions.revoke(f.alice, &alice_session.id_hash).await.unwrap());
        assert!(f.sessions.load(alices.expose()).await.unwrap().is_none());
    }

    async fn sign_out_everywhere_keeps_only_the_current_session(f, SessionConfig::default()) {
        let (current, current_session) = f.sessions.create(f.alice, &meta()).await.unwrap();
        let (other1, _) = f.sessions.create(f.alice, &meta()).await.unwrap();
        let (other2, _) = f.sessions.create(f.alice, &meta()).await.unwrap();
        assert_eq!(f.sessions.list(f.alice).await.unwrap().len(), 3);
        let ended = f.sessions.revoke_all(f.alice, Some(&current_session.id_hash)).await.unwrap();
        assert_eq!(ended, 2);
        assert!(f.sessions.load(current.expose()).await.unwrap().is_some());
        assert!(f.sessions.load(other1.expose()).await.unwrap().is_none());
        assert!(f.sessions.load(other2.expose()).await.unwrap().is_none());
        assert_eq!(f.sessions.revoke_all(f.alice, None).await.unwrap(), 1);
        assert!(f.sessions.load(current.expose()).await.unwrap().is_none());
    }

    async fn rotation_invalidates_the_old_token_and_changes_the_csrf_secret(f, SessionConfig::default()) {
        let (old, old_session) = f.sessions.create(f.alice, &meta()).await.unwrap();
        let (new, new_session) = f.sessions.rotate(&old_session, &meta()).await.unwrap();
        assert!(f.sessions.load(old.expose()).await.unwrap().is_none(), "a fixated token is worthless");
        let loaded = f.sessions.load(new.expose()).await.unwrap().unwrap();
        assert_eq!(loaded.user_id, f.alice);
        assert_ne!(new_session.csrf_secret, old_session.csrf_secret);
        assert_ne!(new_session.id_hash, old_session.id_hash);
    }

    async fn a_revoked_session_is_not_brought_back_by_a_late_touch(f, SessionConfig::default()) {
        let (token, session) = f.sessions.create(f.alice, &meta()).await.unwrap();
        let loaded = f.sessions.load(token.expose()).await.unwrap().unwrap();
        assert!(f.sessions.revoke(f.alice, &session.id_hash).await.unwrap());
        f.clock.advance(Duration::from_secs(120));
        f.sessions.touch(loaded).await.unwrap();
        assert!(f.sessions.load(token.expose()).await.unwrap().is_none());
    }

    async fn expired_sessions_are_purged(f, SessionConfig::default()) {
        let (old, _) = f.sessions.create(f.alice, &meta()).await.unwrap();
        f.clock.advance(29 * MINUTE);
        let (fresh, _) = f.sessions.create(f.bob, &meta()).await.unwrap();
        f.clock.advance(2 * MINUTE);
        let purged = f.sessions.purge_expired().await.unwrap();
        // Redis expires its keys by itself; the database needs the purge.
        assert!(purged <= 1);
        assert!(f.sessions.load(old.expose()).await.unwrap().is_none());
        assert!(f.sessions.load(fresh.expose()).await.unwrap().is_some(), "live sessions stay");
    }

    async fn the_session_list_shows_where_each_session_came_from(f, SessionConfig::default()) {
        f.sessions.create(f.alice, &meta()).await.unwrap();
        f.clock.advance(Duration::from_secs(1));
        f.sessions
            .create(f.alice, &SessionMeta { client_ip: Some("198.51.100.2".parse().unwrap()), user_agent: Some("curl/8.0".into()) })
            .await
            .unwrap();
        let list = f.sessions.list(f.alice).await.unwrap();
        assert_eq!(list.len(), 2);
        assert_eq!(list[0].client_ip.as_deref(), Some("203.0.113.9"), "oldest first");
        assert_eq!(list[1].user_agent.as_deref(), Some("curl/8.0"));
    }
}
