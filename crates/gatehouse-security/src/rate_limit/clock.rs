//! The time source of a [`Limiter`](super::Limiter), injectable so tests never sleep.

use std::fmt::Debug;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A source of the current time.
pub trait Clock: Send + Sync + Debug {
    /// The time elapsed since the UNIX epoch.
    fn now(&self) -> Duration;
}

/// The system's wall clock.
///
/// A step backwards leaves TATs in the future, so clients are limited a little longer; a step
/// forwards gives budgets back early. Both are bounded by the size of the step.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Duration {
        // Before 1970 only on a badly broken host; treating it as the epoch keeps serving.
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
    }
}

/// A clock that moves only when told to, for tests.
#[derive(Debug, Default)]
pub struct ManualClock {
    nanos: AtomicU64,
}

impl ManualClock {
    /// A clock showing `start` (since the UNIX epoch).
    pub fn new(start: Duration) -> Self {
        Self {
            nanos: AtomicU64::new(to_nanos(start)),
        }
    }

    /// Moves the clock forwards by `by`.
    pub fn advance(&self, by: Duration) {
        let by = to_nanos(by);
        // fetch_update with a saturating add never fails; the result is not needed.
        let _ = self
            .nanos
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |now| {
                Some(now.saturating_add(by))
            });
    }

    /// Sets the clock to `to` (since the UNIX epoch).
    pub fn set(&self, to: Duration) {
        self.nanos.store(to_nanos(to), Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Duration {
        Duration::from_nanos(self.nanos.load(Ordering::SeqCst))
    }
}

/// Nanoseconds in a `u64` last until the year 2554.
fn to_nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}
