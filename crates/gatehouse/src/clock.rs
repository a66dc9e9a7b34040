//! The time source, injectable so tests move time instead of sleeping.

use std::fmt::Debug;
use std::sync::{Arc, Mutex};

use time::OffsetDateTime;

/// Tells the time. [`SystemClock`] in production, [`ManualClock`] in tests.
pub trait Clock: Send + Sync + Debug {
    /// Now, in UTC, cut to microseconds (what both databases store exactly).
    fn now(&self) -> OffsetDateTime;
}

/// The system's clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> OffsetDateTime {
        crate::store::now()
    }
}

/// A clock that only moves when told to.
#[derive(Clone, Debug)]
pub struct ManualClock(Arc<Mutex<OffsetDateTime>>);

impl ManualClock {
    /// Starts at the current system time.
    pub fn new() -> Self {
        Self(Arc::new(Mutex::new(crate::store::now())))
    }

    /// Moves the clock forward.
    pub fn advance(&self, by: std::time::Duration) {
        let mut now = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *now += by;
    }
}

impl Default for ManualClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for ManualClock {
    fn now(&self) -> OffsetDateTime {
        *self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}
