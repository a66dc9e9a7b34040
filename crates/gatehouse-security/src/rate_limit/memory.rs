//! The in-process store: a bounded, sharded table of TATs, kept in order of last use.

use std::fmt;
use std::hash::{BuildHasher, RandomState};
use std::sync::{Arc, Mutex, PoisonError};

use hashlink::LinkedHashMap;

use super::{Decision, Quota};

/// Shards are added only once each can hold this many keys, so a small table (as in tests)
/// is one shard and its bound is exact.
const MIN_KEYS_PER_SHARD: usize = 1024;
/// Enough shards that threads rarely wait on each other's lock.
const MAX_SHARDS: usize = 64;

/// Rate-limit state in this process: at most `max_keys` keys, split over up to 64 shards,
/// each a `Mutex` over a hash map kept in order of last use.
///
/// The table is never "full" for a new key: when its shard has no room, the keys whose TAT
/// has passed are evicted first (they carry no information: a fresh key behaves the same),
/// and if that frees nothing, the least recently used key. So memory stays bounded and a new
/// client is always decided on, never refused or waved through because of the table: see the
/// module's `# Security` section for what that costs. Sharding means a shard can evict
/// slightly before the whole table is full; shard selection uses a per-process random hash
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

struct Shard {
    /// Each key's TAT, least recently used first.
    tats: LinkedHashMap<Box<str>, u64, RandomState>,
    /// No key in this shard has a TAT below this, so no sweep is needed before `now` reaches
    /// it. Stays valid between sweeps because inserts lower it, updates only raise TATs and
    /// evictions only remove keys. This keeps a shard full of live keys from costing a full
    /// scan per request.
    earliest_tat: u64,
}

impl Default for Shard {
    fn default() -> Self {
        Self {
            tats: LinkedHashMap::with_hasher(RandomState::new()),
            earliest_tat: 0,
        }
    }
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

    /// Makes room for one more key: the expired keys go first, else the least recently used.
    fn make_room(&mut self, now: u64, keys_per_shard: usize) {
        if self.tats.len() < keys_per_shard {
            return;
        }
        self.evict_expired(now);
        while self.tats.len() >= keys_per_shard {
            self.tats.pop_front();
        }
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

    pub(super) fn check(&self, key: &str, quota: &Quota, now: u64) -> Decision {
        let inner = &*self.inner;
        // The shard count is a power of two, so masking picks a shard uniformly.
        let index = (inner.hasher.hash_one(key) as usize) & (inner.shards.len() - 1);
        let mut shard = lock(&inner.shards[index]);

        // Every request counts as a use, a refused one too: a client that keeps hammering
        // while limited stays at the recent end and is the last to be evicted.
        if let Some(tat) = shard.tats.to_back(key) {
            let (decision, new_tat) = quota.decide(Some(*tat), now);
            if let Some(new_tat) = new_tat {
                *tat = new_tat;
            }
            return decision;
        }

        let (decision, new_tat) = quota.decide(None, now);
        let Some(new_tat) = new_tat else {
            return decision;
        };
        shard.make_room(now, inner.keys_per_shard);
        shard.tats.insert(key.into(), new_tat);
        shard.earliest_tat = shard.earliest_tat.min(new_tat);
        decision
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
