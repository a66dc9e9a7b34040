//! The in-process store: a bounded, sharded table of TATs.

use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasher, RandomState};
use std::sync::{Arc, Mutex, PoisonError};

use super::{Decision, Quota};
use crate::Error;

/// Shards are added only once each can hold this many keys, so a small table (as in tests)
/// is one shard and its bound is exact.
const MIN_KEYS_PER_SHARD: usize = 1024;
/// Enough shards that threads rarely wait on each other's lock.
const MAX_SHARDS: usize = 64;

/// Rate-limit state in this process: at most `max_keys` keys, split over up to 64 shards,
/// each a `Mutex<HashMap>`.
///
/// A key whose TAT has passed is equivalent to an absent key, so it is evicted when its shard
/// needs room. When a shard is full of live keys, a new key is refused with
/// [`Error::RateLimitStoreFull`] (the rule's failure policy decides) while the keys already
/// present keep their state: see the module's `# Security` section. Sharding means a shard can
/// be full slightly before the whole table is; shard selection uses a per-process random hash
/// key, so clients cannot aim at one shard.
///
/// Clones share the same table.
#[derive(Clone)]
pub struct MemoryStore {
    inner: Arc<Inner>,
}

struct Inner {
    shards: Box<[Mutex<Shard>]>,
    keys_per_shard: usize,
    hasher: RandomState,
}

#[derive(Default)]
struct Shard {
    tats: HashMap<Box<str>, u64>,
    /// No key in this shard has a TAT below this, so no sweep is needed before `now` reaches
    /// it. Stays valid between sweeps because inserts lower it and updates only raise TATs.
    /// This keeps a shard full of live keys from costing a full scan per request.
    earliest_tat: u64,
}

impl Shard {
    /// Removes the keys whose TAT has passed.
    fn evict_expired(&mut self, now: u64) {
        if now < self.earliest_tat {
            return;
        }
        let mut earliest = u64::MAX;
        self.tats.retain(|_, tat| {
            let live = *tat > now;
            if live {
                earliest = earliest.min(*tat);
            }
            live
        });
        self.earliest_tat = earliest;
    }
}

impl MemoryStore {
    /// A store holding at most `max_keys` keys (at least 1), for example 100 000 (a few MB).
    pub fn new(max_keys: usize) -> Self {
        let max_keys = max_keys.max(1);
        let shard_count = (max_keys / MIN_KEYS_PER_SHARD)
            .next_power_of_two()
            .min(MAX_SHARDS);
        let shards = (0..shard_count)
            .map(|_| Mutex::new(Shard::default()))
            .collect();
        Self {
            inner: Arc::new(Inner {
                shards,
                keys_per_shard: max_keys / shard_count,
                hasher: RandomState::new(),
            }),
        }
    }

    /// The number of keys held, expired ones included until they are evicted.
    pub fn len(&self) -> usize {
        self.inner
            .shards
            .iter()
            .map(|shard| lock(shard).tats.len())
            .sum()
    }

    /// Whether no key is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The most keys this store holds (a multiple of the shard count, at most the `max_keys`
    /// given to [`MemoryStore::new`]).
    pub fn capacity(&self) -> usize {
        self.inner.keys_per_shard * self.inner.shards.len()
    }

    pub(super) fn check(&self, key: &str, quota: &Quota, now: u64) -> Result<Decision, Error> {
        let inner = &*self.inner;
        // The shard count is a power of two, so masking picks a shard uniformly.
        let index = (inner.hasher.hash_one(key) as usize) & (inner.shards.len() - 1);
        let mut shard = lock(&inner.shards[index]);

        if let Some(tat) = shard.tats.get_mut(key) {
            let (decision, new_tat) = quota.decide(Some(*tat), now);
            if let Some(new_tat) = new_tat {
                *tat = new_tat;
            }
            return Ok(decision);
        }

        let (decision, new_tat) = quota.decide(None, now);
        let Some(new_tat) = new_tat else {
            return Ok(decision);
        };
        if shard.tats.len() >= inner.keys_per_shard {
            shard.evict_expired(now);
            if shard.tats.len() >= inner.keys_per_shard {
                return Err(Error::RateLimitStoreFull);
            }
        }
        shard.tats.insert(key.into(), new_tat);
        shard.earliest_tat = shard.earliest_tat.min(new_tat);
        Ok(decision)
    }

    /// The keys held, for tests that check what is stored.
    #[cfg(test)]
    pub(super) fn keys(&self) -> Vec<String> {
        self.inner
            .shards
            .iter()
            .flat_map(|shard| {
                lock(shard)
                    .tats
                    .keys()
                    .map(|k| k.to_string())
                    .collect::<Vec<_>>()
            })
            .collect()
    }
}

/// The critical sections cannot panic, but if one ever did the table is still consistent (a
/// TAT is one `u64` write), so a poisoned lock is used rather than failing every request.
fn lock(shard: &Mutex<Shard>) -> std::sync::MutexGuard<'_, Shard> {
    shard.lock().unwrap_or_else(PoisonError::into_inner)
}

impl fmt::Debug for MemoryStore {
    /// Sizes only: the keys are client addresses and hashed credentials.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryStore")
            .field("shards", &self.inner.shards.len())
            .field("capacity", &self.capacity())
            .finish_non_exhaustive()
    }
}
