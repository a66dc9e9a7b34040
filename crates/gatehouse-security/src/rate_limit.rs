//! Rate limiting with GCRA (the generic cell rate algorithm), in memory or in Redis.
//!
//! - [`Quota`]: `limit` requests per `period`. GCRA spaces requests by the emission interval
//!   `T = period / limit` and tolerates a burst: `limit` requests may arrive at once, then one
//!   every `T`. Each key keeps one number, its theoretical arrival time (TAT); a request is
//!   allowed when `TAT + T - now <= limit × T`, and then moves the TAT to `max(TAT, now) + T`.
//!   (The tolerance is `period - T`, computed as `(limit - 1) × T` so that rounding `T` to a
//!   whole microsecond never grants an extra request.) A refused request changes nothing, so a
//!   client that keeps hammering gets back in as soon as `Retry-After` says.
//! - [`Store`]: where the TATs live, chosen once at startup: a bounded, sharded
//!   [`MemoryStore`] (one instance), or a [`RedisStore`] shared by every instance, where one
//!   atomic Lua script makes each decision.
//! - [`Limiter`]: a store and a [`Clock`]; [`Limiter::check`] makes one decision for one key.
//!   Application code that limits by something only a handler knows (a submitted email) calls
//!   it and renders the result with [`decision_headers`] and [`too_many_requests`].
//! - [`RateLimitLayer`]: an ordered list of [`Rule`]s, each keyed by the client IP or by a
//!   (hashed) header, matched by path prefix and method, with its own [`FailurePolicy`].
//!
//! Every applicable rule is checked and the most restrictive decision is answered: allowed
//! responses carry `RateLimit-Limit`, `RateLimit-Remaining` and `RateLimit-Reset` (whole
//! seconds, rounded up) and the same values as `X-RateLimit-*`; a refusal is a `429` problem
//! with `Retry-After` and the same headers, and the inner service is not called.
//!
//! Written here rather than taken from `governor`/`tower_governor`: those keep state in
//! process memory only, and the Redis store must run the same algorithm atomically in one
//! script; sharing one GCRA definition between both stores keeps their behaviour identical,
//! which the tests check by running the same suite over both.
//!
//! # Security
//!
//! - **Keys.** [`KeySource::ClientIp`] relies on [`ClientIpLayer`](crate::ClientIpLayer)
//!   running outside this layer with the right trusted proxies: a wrongly trusted proxy lets
//!   clients pick their own address and so their own budget. IPv6 clients are keyed by their
//!   `/64` network, because one host usually holds a whole `/64` and could otherwise use a fresh
//!   address per request. [`KeySource::Header`] keys are the SHA-256 of the header value, so a
//!   credential is never stored or sent to Redis in the clear; an unsalted hash of a
//!   low-entropy secret (a Basic-auth password) can still be guessed offline by someone who
//!   reads the store, so key on high-entropy credentials (API keys, tokens).
//! - **Header keys are chosen by the client.** This layer runs before authentication, so a
//!   client can send a new header value per request and get a new budget; a header rule limits
//!   a *legitimate* subject, and must be paired with a per-IP rule that bounds everybody.
//! - **Memory bound.** The memory store holds at most `max_keys` keys, and always has room for
//!   a new one: keys whose TAT has passed carry no information (a fresh key behaves the same)
//!   and are evicted first; when every key is still live, the least recently used goes. A table
//!   full of attacker-chosen keys (one per submitted address, say) therefore never turns a new,
//!   legitimate client away (no `503`, whatever the rule's [`FailurePolicy`]). The cost: a
//!   client limited long ago and silent since can lose its state once `max_keys` newer keys
//!   have been used. Every request, a refused one too, marks its key as used, so a client that
//!   keeps trying stays at the recent end; pushing out someone else's key takes `max_keys`
//!   requests with other keys in between, which the per-IP rules count too. Counters that
//!   must survive a flood (failed sign-ins and locks) belong in a database, not here.
//! - **Logs.** A refusal logs `event = "rate_limited"` with the rule name, never the key (an
//!   IP address or an email address is personal data).
//!
//! # Deployment caveats
//!
//! - The memory store counts per instance: behind a load balancer with `n` instances a client
//!   gets up to `n` times the quota. Use Redis when running more than one instance.
//! - The Redis store takes the time from the Redis server by default ([`RedisTime::Server`]),
//!   so instances' clocks do not matter. With [`RedisTime::Caller`] the instances' clocks must
//!   be NTP-synchronised: an instance whose clock runs ahead writes TATs in the future and so
//!   refuses, on every instance, clients it should allow, for as long as it is ahead.
//! - Place the layer after `ClientIpLayer` and give it the paths the router sees (before any
//!   path rewriting); prefixes match whole segments, so `/login` covers `/login/magic` but not
//!   `/loginx`.

mod clock;
mod layer;
mod memory;
mod redis_store;

use std::sync::Arc;
use std::time::Duration;

use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};

pub use clock::{Clock, ManualClock, SystemClock};
pub use layer::{ExtensionKey, FailurePolicy, KeySource, RateLimit, RateLimitLayer, Rule};
pub use memory::MemoryStore;
pub use redis_store::{RedisStore, RedisTime};

use crate::{Error, Problem};

const RATELIMIT_LIMIT: HeaderName = HeaderName::from_static("ratelimit-limit");
const RATELIMIT_REMAINING: HeaderName = HeaderName::from_static("ratelimit-remaining");
const RATELIMIT_RESET: HeaderName = HeaderName::from_static("ratelimit-reset");
const X_RATELIMIT_LIMIT: HeaderName = HeaderName::from_static("x-ratelimit-limit");
const X_RATELIMIT_REMAINING: HeaderName = HeaderName::from_static("x-ratelimit-remaining");
const X_RATELIMIT_RESET: HeaderName = HeaderName::from_static("x-ratelimit-reset");

/// `limit` requests per `period`: a burst of `limit`, then one request per `period / limit`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Quota {
    limit: u32,
    period: Duration,
    /// The emission interval `T` in microseconds, the resolution both stores work in.
    interval_us: u64,
}

impl Quota {
    /// `limit` requests per `period`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidQuota`] when `limit` or `period` is zero, or `period / limit` is less
    /// than a microsecond.
    pub fn new(limit: u32, period: Duration) -> Result<Self, Error> {
        let period_us = u64::try_from(period.as_micros()).unwrap_or(u64::MAX);
        let interval_us = period_us.checked_div(u64::from(limit)).unwrap_or(0);
        if interval_us == 0 {
            return Err(Error::InvalidQuota { limit, period });
        }
        Ok(Self {
            limit,
            period,
            interval_us,
        })
    }

    /// The requests allowed at once (and per period).
    pub fn limit(&self) -> u32 {
        self.limit
    }

    /// The period.
    pub fn period(&self) -> Duration {
        self.period
    }

    /// The emission interval `T = period / limit` (whole microseconds): after a burst, one
    /// request is allowed per `T`.
    pub fn emission_interval(&self) -> Duration {
        Duration::from_micros(self.interval_us)
    }

    /// `limit × T`: how far ahead of now a key's TAT may be after an allowed request.
    fn window_us(&self) -> u64 {
        // Cannot overflow: interval_us = period_us / limit.
        self.interval_us * u64::from(self.limit)
    }

    /// The GCRA decision for a key whose stored TAT is `stored_tat` (`None`: unknown key),
    /// at `now` (µs). Returns the decision and, when allowed, the TAT to store.
    ///
    /// The Lua script of the Redis store is the same computation; keep them in step.
    fn decide(&self, stored_tat: Option<u64>, now: u64) -> (Decision, Option<u64>) {
        let tat = stored_tat.map_or(now, |tat| tat.max(now));
        let new_tat = tat.saturating_add(self.interval_us);
        let ahead = new_tat - now;
        let window = self.window_us();
        if ahead <= window {
            let remaining = (window - ahead) / self.interval_us;
            let decision = Decision {
                allowed: true,
                limit: self.limit,
                remaining: u32::try_from(remaining).unwrap_or(u32::MAX),
                reset_after: Duration::from_micros(ahead),
                retry_after: None,
            };
            (decision, Some(new_tat))
        } else {
            let decision = Decision {
                allowed: false,
                limit: self.limit,
                remaining: 0,
                reset_after: Duration::from_micros(tat - now),
                retry_after: Some(Duration::from_micros(ahead - window)),
            };
            (decision, None)
        }
    }
}

/// The outcome of one [`Limiter::check`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    /// Whether the request may proceed.
    pub allowed: bool,
    /// The quota's limit.
    pub limit: u32,
    /// The requests that would be allowed right now, after this one.
    pub remaining: u32,
    /// How long until the key's whole budget is back.
    pub reset_after: Duration,
    /// When refused: how long until one request would be allowed.
    pub retry_after: Option<Duration>,
}

impl Decision {
    /// Whether `self` should be answered rather than `other`: any refusal beats an allowance,
    /// the longer wait beats the shorter, and the smaller remaining budget beats the larger.
    fn is_more_restrictive_than(&self, other: &Self) -> bool {
        match (self.allowed, other.allowed) {
            (false, true) => true,
            (true, false) => false,
            (false, false) => self.retry_after > other.retry_after,
            (true, true) => {
                self.remaining < other.remaining
                    || (self.remaining == other.remaining && self.reset_after > other.reset_after)
            }
        }
    }
}

/// Where the rate-limit state lives, chosen once at startup.
#[derive(Clone, Debug)]
pub enum Store {
    /// In this process: fast, bounded, per instance.
    Memory(MemoryStore),
    /// In Redis: shared by every instance (boxed: a Redis client with TLS support is large).
    Redis(Box<RedisStore>),
}

impl From<MemoryStore> for Store {
    fn from(store: MemoryStore) -> Self {
        Self::Memory(store)
    }
}

impl From<RedisStore> for Store {
    fn from(store: RedisStore) -> Self {
        Self::Redis(Box::new(store))
    }
}

/// Makes rate-limit decisions: a [`Store`] and a [`Clock`]. Cheap to clone (clones share the
/// state).
#[derive(Clone, Debug)]
pub struct Limiter {
    store: Store,
    clock: Arc<dyn Clock>,
}

impl Limiter {
    /// A limiter over `store`, reading the time from `clock` (a [`ManualClock`] in tests).
    pub fn new(store: impl Into<Store>, clock: Arc<dyn Clock>) -> Self {
        Self {
            store: store.into(),
            clock,
        }
    }

    /// A limiter over `store` with the [`SystemClock`].
    pub fn with_system_clock(store: impl Into<Store>) -> Self {
        Self::new(store, Arc::new(SystemClock))
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Decides whether one more request for `key` fits `quota`, and counts it if so.
    ///
    /// `key` is used as given: callers namespace their keys (the layer uses
    /// `<rule name>:<client key>`), and must not pass raw secrets.
    ///
    /// # Errors
    ///
    /// [`Error::RateLimitStore`] when Redis fails or does not answer in time (the memory store
    /// always decides). Callers decide whether that allows or refuses the request.
    pub async fn check(&self, key: &str, quota: &Quota) -> Result<Decision, Error> {
        let now = self.clock.now();
        let now_us = u64::try_from(now.as_micros()).unwrap_or(u64::MAX);
        match &self.store {
            Store::Memory(store) => Ok(store.check(key, quota, now_us)),
            Store::Redis(store) => store.check(key, quota, now_us).await,
        }
    }
}

/// Whole seconds, rounded up: a client told to wait `0` after being refused would retry at
/// once and be refused again.
fn ceil_secs(duration: Duration) -> u64 {
    duration.as_secs() + u64::from(duration.subsec_nanos() > 0)
}

/// `1 second`, `12 seconds`.
fn seconds(count: u64) -> String {
    if count == 1 {
        "1 second".to_owned()
    } else {
        format!("{count} seconds")
    }
}

/// Sets `RateLimit-Limit`, `RateLimit-Remaining`, `RateLimit-Reset` (seconds until the whole
/// budget is back, rounded up) and their `X-RateLimit-*` twins from `decision`, replacing any
/// previous values.
pub fn decision_headers(decision: &Decision, headers: &mut HeaderMap) {
    let limit = HeaderValue::from(decision.limit);
    let remaining = HeaderValue::from(decision.remaining);
    let reset = HeaderValue::from(ceil_secs(decision.reset_after));
    headers.reserve(6);
    headers.insert(X_RATELIMIT_LIMIT, limit.clone());
    headers.insert(X_RATELIMIT_REMAINING, remaining.clone());
    headers.insert(X_RATELIMIT_RESET, reset.clone());
    headers.insert(RATELIMIT_LIMIT, limit);
    headers.insert(RATELIMIT_REMAINING, remaining);
    headers.insert(RATELIMIT_RESET, reset);
}

/// The refusal for `decision`: a `429 Too Many Requests` problem saying when to retry, with
/// `Retry-After` (whole seconds, rounded up) and the [`decision_headers`].
///
/// The [`Problem`] is in the response extensions, so an application layer can render it as an
/// HTML page for forms.
pub fn too_many_requests(decision: &Decision) -> Response {
    // A refused decision always has a wait; an allowed one passed here by mistake still gets
    // a valid answer.
    let retry_after = ceil_secs(decision.retry_after.unwrap_or(Duration::ZERO)).max(1);
    let mut response = Problem::new(StatusCode::TOO_MANY_REQUESTS)
        .with_title("Too Many Requests")
        .with_detail(format!(
            "Too many requests. Retry in {}.",
            seconds(retry_after)
        ))
        .into_response();
    let headers = response.headers_mut();
    decision_headers(decision, headers);
    headers.insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
    response
}

/// The answer when a rule's store failed and its policy is [`FailurePolicy::Deny`]: a `503`
/// problem that says nothing about the store, with a `Retry-After` of one emission interval
/// (between 1 and 60 seconds).
fn store_unavailable(quota: &Quota) -> Response {
    let retry_after = ceil_secs(quota.emission_interval()).clamp(1, 60);
    let mut response = Problem::new(StatusCode::SERVICE_UNAVAILABLE)
        .with_detail(format!(
            "The service cannot accept this request right now. Retry in {}.",
            seconds(retry_after)
        ))
        .into_response();
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
    response
}

#[cfg(test)]
mod tests;
