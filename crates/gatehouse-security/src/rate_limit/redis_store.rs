//! The shared store: one atomic Lua script per decision in Redis.

use std::fmt;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::sync::OnceCell;

use super::{Decision, Quota};
use crate::Error;

/// The GCRA decision of [`Quota::decide`](super::Quota) for one key, atomically.
///
/// Times are whole microseconds (below 2^53 until the year 2255, so exact in Lua's doubles).
/// Numbers are written with `%.0f` because Lua 5.1 turns a 16-digit number into `1.7e+15`.
/// The key expires when its TAT passes, since an absent key behaves the same.
const GCRA_SCRIPT: &str = r"
-- KEYS[1]: the key. ARGV[1]: now in microseconds since the UNIX epoch, or '' for this
-- server's TIME. ARGV[2]: the emission interval T. ARGV[3]: the window limit * T.
-- Returns {allowed (0 or 1), remaining, reset_after, retry_after}, durations in microseconds.
local now
if ARGV[1] == '' then
  local time = redis.call('TIME')
  now = tonumber(time[1]) * 1000000 + tonumber(time[2])
else
  now = tonumber(ARGV[1])
end
local interval = tonumber(ARGV[2])
local window = tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then
  tat = now
end
local ahead = tat + interval - now
if ahead <= window then
  redis.call('SET', KEYS[1], string.format('%.0f', now + ahead),
    'PX', string.format('%.0f', math.ceil(ahead / 1000)))
  return {1, math.floor((window - ahead) / interval), ahead, 0}
end
return {0, 0, tat - now, ahead - window}
";

/// One compiled script (its SHA-1 computed once) for every store.
static SCRIPT: LazyLock<redis::Script> = LazyLock::new(|| redis::Script::new(GCRA_SCRIPT));

/// Where the Redis store reads the time.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RedisTime {
    /// Redis's `TIME`, inside the script: one clock for every instance, so a skewed instance
    /// cannot shift other clients' budgets. The [`Limiter`](super::Limiter)'s clock is not
    /// used.
    #[default]
    Server,
    /// The [`Limiter`](super::Limiter)'s clock, passed to the script: lets tests drive Redis
    /// with a [`ManualClock`](super::ManualClock). In production, instances' clocks must be
    /// NTP-synchronised.
    Caller,
}

/// Rate-limit state in Redis, shared by every instance that uses the same server and key
/// prefix.
///
/// Each decision is one `EVALSHA` of a Lua script (loaded on first use) that reads the key's
/// TAT, decides, and writes the new TAT with a TTL equal to the reset time, atomically. The
/// connection is opened on the first decision rather than at construction, so the
/// application starts while Redis is down (each rule's [`FailurePolicy`](super::FailurePolicy)
/// then applies), and is re-established after it drops. Every decision, connecting included,
/// is bounded by a timeout (250 ms unless [`RedisStore::with_timeout`] says otherwise), so a
/// stalled Redis delays requests by at most that much.
///
/// Clones share the connection.
#[derive(Clone)]
pub struct RedisStore {
    client: redis::Client,
    connection: Arc<OnceCell<ConnectionManager>>,
    key_prefix: Arc<str>,
    timeout: Duration,
    time: RedisTime,
}

impl RedisStore {
    /// A store over `client`, with keys `<key_prefix><limiter key>` (for example the prefix
    /// `gatehouse:rl:` and the key `login:192.0.2.1`). Does not connect yet.
    pub fn new(client: redis::Client, key_prefix: impl Into<String>) -> Self {
        Self {
            client,
            connection: Arc::new(OnceCell::new()),
            key_prefix: Arc::from(key_prefix.into()),
            timeout: Duration::from_millis(250),
            time: RedisTime::default(),
        }
    }

    /// Bounds each decision, connecting included, to `timeout`.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Chooses where the time comes from ([`RedisTime::Server`] by default).
    pub fn with_time(mut self, time: RedisTime) -> Self {
        self.time = time;
        self
    }

    pub(super) async fn check(
        &self,
        key: &str,
        quota: &Quota,
        now: u64,
    ) -> Result<Decision, Error> {
        let reply = tokio::time::timeout(self.timeout, self.run_script(key, quota, now))
            .await
            .map_err(|_| {
                Error::RateLimitStore(format!("Redis did not answer within {:?}", self.timeout))
            })?
            .map_err(|error| Error::RateLimitStore(format!("Redis: {error}")))?;
        let (allowed, remaining, reset_after, retry_after) = reply;
        let micros = |value: i64| Duration::from_micros(u64::try_from(value).unwrap_or(0));
        Ok(Decision {
            allowed: allowed == 1,
            limit: quota.limit(),
            remaining: u32::try_from(remaining).unwrap_or(0),
            reset_after: micros(reset_after),
            retry_after: (allowed != 1).then(|| micros(retry_after)),
        })
    }

    async fn run_script(
        &self,
        key: &str,
        quota: &Quota,
        now: u64,
    ) -> redis::RedisResult<(i64, i64, i64, i64)> {
        let mut connection = self
            .connection
            .get_or_try_init(|| {
                // No retries inside the manager: the caller's timeout bounds the attempt, and
                // the next decision tries again.
                let config = ConnectionManagerConfig::new()
                    .set_number_of_retries(0)
                    .set_connection_timeout(self.timeout)
                    .set_response_timeout(self.timeout);
                ConnectionManager::new_with_config(self.client.clone(), config)
            })
            .await?
            .clone();
        let now = match self.time {
            RedisTime::Server => String::new(),
            RedisTime::Caller => now.to_string(),
        };
        let mut full_key = String::with_capacity(self.key_prefix.len() + key.len());
        full_key.push_str(&self.key_prefix);
        full_key.push_str(key);
        SCRIPT
            .key(full_key)
            .arg(now)
            .arg(quota.interval_us)
            .arg(quota.window_us())
            .invoke_async(&mut connection)
            .await
    }
}

impl fmt::Debug for RedisStore {
    /// Without the client: its connection info may hold a password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore")
            .field("key_prefix", &self.key_prefix)
            .field("timeout", &self.timeout)
            .field("time", &self.time)
            .field("connected", &self.connection.initialized())
            .finish_non_exhaustive()
    }
}
