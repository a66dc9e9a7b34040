//! The shared state every handler reaches, built once by `app::Application::build`.
//!
//! The transports (`web/`, `api/`) read it; no domain imports it: a domain service takes the
//! narrow parts it uses (the identity services, for one, are [`crate::identity::Identity`]).

use std::sync::Arc;

use gatehouse_security::Limiter;

use crate::clock::Clock;
use crate::config::Settings;
use crate::identity::passwords::PasswordHasher;
use crate::identity::sessions::Sessions;
use crate::keys::Keys;
use crate::mail::Mailer;
use crate::store::Db;
use crate::telemetry::Metrics;
use crate::views::Assets;
use crate::views::Templates;

/// What every handler can reach. One reference count to clone: axum clones the state for every
/// extraction and the service stack for every request.
#[derive(Clone, Debug)]
pub struct AppState(pub(crate) Arc<AppStateInner>);

impl std::ops::Deref for AppState {
    type Target = AppStateInner;

    fn deref(&self) -> &AppStateInner {
        &self.0
    }
}

/// The fields of [`AppState`].
#[derive(Debug)]
pub struct AppStateInner {
    /// The configuration.
    pub settings: Arc<Settings>,
    /// The database.
    pub db: Db,
    /// Redis, when configured (behind an `Arc`: cloning a client copies its connection info).
    pub redis: Option<Arc<redis::Client>>,
    /// Parsed templates.
    pub templates: Arc<Templates>,
    /// Embedded static files.
    pub assets: Arc<Assets>,
    /// Prometheus metrics.
    pub metrics: Arc<Metrics>,
    /// Keys derived from the secret key.
    pub keys: Arc<Keys>,
    /// API token signing keys.
    pub tokens: Arc<crate::identity::tokens::KeyRing>,
    /// Access tokens checked in the last few seconds.
    pub access_cache: Arc<crate::identity::tokens::AccessCache>,
    /// Outgoing mail.
    pub mailer: Mailer,
    /// Sessions (database or Redis).
    pub sessions: Sessions,
    /// Rate limits (memory or Redis), for rules only a handler can key (an email address).
    pub limiter: Limiter,
    /// The time source.
    pub clock: Arc<dyn Clock>,
    /// Password hashing, one permit per core.
    pub passwords: PasswordHasher,
    /// The identity services: every sign-in, credential and account change goes through them.
    pub identity: crate::identity::Identity,
}
