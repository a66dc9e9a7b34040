//! Password hashing: argon2id with a secret pepper for everything new, and Werkzeug's legacy
//! formats verified so users imported from a Flask application keep their passwords (and are
//! upgraded at their next sign-in).
//!
//! Hashing and verifying run on dedicated threads, one per core unless configured
//! ([`HashingPool`], `GATEHOUSE_HASHING_THREADS`), each taking one password at a time; at most
//! [`HashingPool::queue`] more wait for a thread, and one beyond is refused at once
//! ([`Error::Unavailable`]: 503 with `Retry-After`) rather than left to wait out the request
//! timeout. On Linux the threads run in the idle scheduling class (`SCHED_IDLE`): they get only
//! the CPU time that no other thread wants, and a request thread that wakes up takes a core
//! from a hash at once. So a sign-in flood hashes on every core while the rest of the server
//! keeps its usual latency. A nice value (10, before) only shrinks the hash's share: with a
//! thread on every core, `/healthz` p99 under a flood grew several times over, and with a core
//! left free, sign-ins ran at half the machine's hashing limit. The cost of the idle class: when
//! other work keeps every core busy (the server's own requests, or another process), sign-ins
//! wait for it, up to the queue bound and the request timeout. `bench/run` measures both sides.
//!
//! Formats (read in one place, `StoredHash::parse`):
//! - PHC strings `$argon2id$v=19$m=…,t=…,p=…$salt$hash` (and `$argon2i$` / `$argon2d$`). Hashes
//!   Gatehouse makes carry `keyid=cGVwcGVyLTE` (the bytes `pepper-1`, [`PEPPER_KEY_ID`]): argon2
//!   mixed the [`Pepper`] into them as its secret. A hash without `keyid` was made without the
//!   pepper (before it existed, or imported) and verifies without it;
//! - Werkzeug `pbkdf2:sha256:ITERATIONS$salt$hex` and `pbkdf2:sha512:…`;
//! - Werkzeug `scrypt:N:r:p$salt$hex`;
//! - `pbkdf2-argon2id:DIGEST:ITERATIONS$salt$PHC`: a Werkzeug PBKDF2 hash of fewer than
//!   [`WEAK_PBKDF2_ITERATIONS`] iterations as `user import` stores it ([`PasswordHasher::harden`]):
//!   the PBKDF2 digest is not kept, only a peppered argon2id hash of it (the PHC string, with its
//!   `keyid`) and the PBKDF2 salt and iteration count needed to recompute the digest from a
//!   password.
//!
//! # Security
//! - New hashes use argon2id with OWASP's parameters (19 MiB, 2 passes, 1 lane) unless
//!   configured otherwise, and the pepper: a database dump alone does not allow guessing
//!   passwords offline. The pepper is a random data key sealed under the secret key (see
//!   `crate::keys`), so a secret-key change keeps every password. [`Verified::needs_rehash`] says
//!   when a stored hash is legacy, unpeppered or was made with other parameters, so the caller
//!   stores a fresh one after a successful sign-in.
//! - No weak hash rests in the database: an imported PBKDF2 hash under
//!   [`WEAK_PBKDF2_ITERATIONS`] is wrapped in peppered argon2id before it is stored.
//! - The parameters of a stored hash come from the database (an imported file, or a row written
//!   behind the application's back): [`check_cost`] bounds each parameter, so a hostile hash
//!   cannot make one verification take seconds or exhaust memory. `user import` refuses a hash
//!   over the bounds; at sign-in such a hash is a wrong password, after the work of a normal
//!   verification (the dummy's) instead of its own. A hash within the bounds but costlier than
//!   the configured one (an import from a slower scheme) still takes its own, longer time until
//!   its first successful sign-in rehashes it: by timing, it can tell that its account exists.
//! - Passwords are hashed whole: no format truncates them (argon2, PBKDF2 and scrypt take any
//!   length; the policy's maximum length bounds the work).
//! - Comparisons are constant-time. An unknown format never verifies.
//! - [`PasswordHasher::verify_dummy`] spends the same work as a real verification, for accounts
//!   that do not exist (so timing does not reveal which do).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher as _, PasswordVerifier as _, SaltString};
use argon2::{Algorithm, Argon2, KeyId, Params, ParamsBuilder, Version};
use secrecy::{ExposeSecret as _, SecretString};
use subtle::ConstantTimeEq as _;
use tokio::sync::{Semaphore, TryAcquireError};
use zeroize::Zeroizing;

use crate::error::Error;

/// Largest argon2 memory verified, in KiB (64 MiB), unless the configured cost is higher.
const MAX_ARGON2_MEMORY_KIB: u32 = 64 * 1024;
/// Most argon2 passes verified, unless the configured cost is higher.
const MAX_ARGON2_PASSES: u32 = 10;
/// Most argon2 lanes verified, unless the configured cost is higher.
const MAX_ARGON2_LANES: u32 = 8;
/// Largest PBKDF2 iteration count verified.
const MAX_PBKDF2_ITERATIONS: u64 = 2_000_000;
/// Largest scrypt `N` verified (2^20).
const MAX_SCRYPT_N: u64 = 1 << 20;
/// Largest scrypt `r` verified.
const MAX_SCRYPT_R: u64 = 16;
/// Largest scrypt `p` verified.
const MAX_SCRYPT_P: u64 = 4;
/// Largest scrypt memory (128 · N · r bytes) verified, as Werkzeug's own `maxmem` allows.
const MAX_SCRYPT_MEMORY: u64 = 132 * 1024 * 1024;

/// PBKDF2 hashes of fewer iterations are wrapped in argon2id at import.
pub const WEAK_PBKDF2_ITERATIONS: u64 = 100_000;

/// argon2's `keyid` of a hash made with the [`Pepper`]: the bytes `pepper-1` (`cGVwcGVyLTE` in
/// the PHC string).
pub const PEPPER_KEY_ID: &[u8] = b"pepper-1";

/// [`PEPPER_KEY_ID`] as a PHC string writes it (base64 without padding).
const PEPPER_KEY_ID_B64: &str = "cGVwcGVyLTE";

/// The prefix of an imported PBKDF2 hash wrapped in argon2id (see the module doc).
const WRAPPED_PBKDF2: &str = "pbkdf2-argon2id:";

/// The secret argon2 mixes into every new hash: 32 random bytes, kept sealed by `crate::keys`
/// as the data key `password_pepper`.
#[derive(Clone)]
pub struct Pepper(Arc<Zeroizing<[u8; 32]>>);

impl Pepper {
    /// The pepper `bytes` (wiped from memory when the last clone is dropped).
    pub fn new(bytes: Zeroizing<[u8; 32]>) -> Self {
        Self(Arc::new(bytes))
    }
}

impl std::fmt::Debug for Pepper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Pepper([redacted])")
    }
}

/// argon2id cost parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HashParams {
    /// Memory, in KiB.
    pub memory_kib: u32,
    /// Passes.
    pub iterations: u32,
    /// Lanes.
    pub parallelism: u32,
}

impl Default for HashParams {
    /// OWASP's recommendation for argon2id: 19 MiB, 2 passes, 1 lane.
    fn default() -> Self {
        Self {
            memory_kib: 19 * 1024,
            iterations: 2,
            parallelism: 1,
        }
    }
}

/// The outcome of a verification.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Verified {
    /// The password matches.
    pub ok: bool,
    /// It matches, but the stored hash is legacy, unpeppered or has other parameters: store a
    /// new one.
    pub needs_rehash: bool,
}

impl Verified {
    const NO: Self = Self {
        ok: false,
        needs_rehash: false,
    };
}

/// The digest of a Werkzeug PBKDF2 hash.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Digest {
    Sha256,
    Sha512,
}

impl Digest {
    fn parse(name: &str) -> Option<Self> {
        match name {
            "sha256" => Some(Self::Sha256),
            "sha512" => Some(Self::Sha512),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Sha256 => "sha256",
            Self::Sha512 => "sha512",
        }
    }

    /// Bytes of a Werkzeug hash with this digest.
    fn output_len(self) -> usize {
        match self {
            Self::Sha256 => 32,
            Self::Sha512 => 64,
        }
    }
}

/// What recomputes a PBKDF2 digest from a password.
#[derive(Clone, Copy, Debug)]
struct Pbkdf2<'a> {
    digest: Digest,
    iterations: u64,
    salt: &'a str,
}

impl Pbkdf2<'_> {
    /// The digest of `password` (the cost is bounded by [`check_cost`], before).
    fn derive(&self, password: &[u8]) -> Option<Vec<u8>> {
        let iterations = u32::try_from(self.iterations).ok()?;
        let mut out = vec![0u8; self.digest.output_len()];
        match self.digest {
            Digest::Sha256 => pbkdf2::pbkdf2_hmac::<sha2::Sha256>(
                password,
                self.salt.as_bytes(),
                iterations,
                &mut out,
            ),
            Digest::Sha512 => pbkdf2::pbkdf2_hmac::<sha2::Sha512>(
                password,
                self.salt.as_bytes(),
                iterations,
                &mut out,
            ),
        }
        Some(out)
    }
}

/// A stored password hash, read: the one place where the formats of the module doc are parsed.
/// Parsing checks the shape (names, numbers, encodings); whether the numbers make a hash that
/// can verify is [`check_cost`]'s and the verification's to say.
#[derive(Debug)]
enum StoredHash<'a> {
    /// An argon2 PHC string.
    Argon2(PasswordHash<'a>),
    /// Werkzeug `pbkdf2:…`, with its digest.
    Pbkdf2(Pbkdf2<'a>, Vec<u8>),
    /// Werkzeug `scrypt:…`.
    Scrypt {
        n: u64,
        r: u64,
        p: u64,
        salt: &'a str,
        hash: Vec<u8>,
    },
    /// `pbkdf2-argon2id:…`: a weak PBKDF2 hash wrapped at import.
    WrappedPbkdf2(Pbkdf2<'a>, PasswordHash<'a>),
}

impl<'a> StoredHash<'a> {
    fn parse(stored: &'a str) -> Option<Self> {
        if stored.starts_with("$argon2") {
            return phc(stored).map(Self::Argon2);
        }
        if let Some(rest) = stored.strip_prefix(WRAPPED_PBKDF2) {
            let (method, salt, inner) = split_legacy(rest)?;
            return Some(Self::WrappedPbkdf2(
                pbkdf2_method(method, salt)?,
                phc(inner)?,
            ));
        }
        if let Some(rest) = stored.strip_prefix("pbkdf2:") {
            let (method, salt, hash) = split_legacy(rest)?;
            let pbkdf2 = pbkdf2_method(method, salt)?;
            let hash = hex::decode(hash).ok()?;
            return (hash.len() == pbkdf2.digest.output_len())
                .then_some(Self::Pbkdf2(pbkdf2, hash));
        }
        let rest = stored.strip_prefix("scrypt:")?;
        let (method, salt, hash) = split_legacy(rest)?;
        let numbers: Vec<u64> = method
            .split(':')
            .map(|n| n.parse().ok())
            .collect::<Option<_>>()?;
        let [n, r, p] = numbers[..] else {
            return None;
        };
        let hash = hex::decode(hash).ok().filter(|h| !h.is_empty())?;
        Some(Self::Scrypt {
            n,
            r,
            p,
            salt,
            hash,
        })
    }

    /// Whether the hash was made with a pepper (this deployment's or another's).
    fn peppered(&self) -> bool {
        match self {
            Self::Argon2(h) | Self::WrappedPbkdf2(_, h) => h.params.get("keyid").is_some(),
            Self::Pbkdf2(..) | Self::Scrypt { .. } => false,
        }
    }
}

/// A PHC string with a salt and a hash.
fn phc(s: &str) -> Option<PasswordHash<'_>> {
    PasswordHash::new(s)
        .ok()
        .filter(|h| h.salt.is_some() && h.hash.is_some())
}

/// `DIGEST:ITERATIONS` of a PBKDF2 hash, with its salt.
fn pbkdf2_method<'a>(method: &str, salt: &'a str) -> Option<Pbkdf2<'a>> {
    let (digest, iterations) = method.split_once(':')?;
    let iterations: u64 = iterations.parse().ok().filter(|n| *n > 0)?;
    Some(Pbkdf2 {
        digest: Digest::parse(digest)?,
        iterations,
        salt,
    })
}

/// `method$salt$rest` → (method, salt, rest).
fn split_legacy(s: &str) -> Option<(&str, &str, &str)> {
    let mut parts = s.splitn(3, '$');
    let (method, salt, rest) = (parts.next()?, parts.next()?, parts.next()?);
    if salt.is_empty() || rest.len() > 256 {
        return None;
    }
    Some((method, salt, rest))
}

/// How many threads hash passwords, and how many hashes may wait for one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HashingPool {
    /// Hashing threads; `None`: one per core.
    pub threads: Option<usize>,
    /// Most hashes waiting for a thread at once; one more is refused ([`Error::Unavailable`]).
    pub queue: usize,
}

impl Default for HashingPool {
    /// One thread per core, and up to [`HashingPool::DEFAULT_QUEUE`] hashes waiting.
    fn default() -> Self {
        Self {
            threads: None,
            queue: Self::DEFAULT_QUEUE,
        }
    }
}

impl HashingPool {
    /// Hashes that may wait for a thread by default: about a second of work on two cores at the
    /// default cost, far more than people signing in at once, and a bound on what a flood
    /// keeps waiting.
    pub const DEFAULT_QUEUE: usize = 128;

    /// `threads` hashing threads and the default queue.
    pub fn with_threads(threads: usize) -> Self {
        Self {
            threads: Some(threads),
            ..Self::default()
        }
    }

    /// The number of hashing threads: as configured, else one per core (at least one).
    pub fn thread_count(&self) -> usize {
        self.threads
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, usize::from))
            .max(1)
    }
}

type Job = Box<dyn FnOnce() + Send>;

/// Hashes and verifies passwords off the async threads, a bounded number at a time.
#[derive(Clone, Debug)]
pub struct PasswordHasher {
    params: HashParams,
    pepper: Pepper,
    permits: Arc<Semaphore>,
    waiting: Arc<Waiting>,
    jobs: std::sync::mpsc::Sender<Job>,
    dummy: Arc<str>,
}

/// The hashes waiting for a permit, up to a bound.
#[derive(Debug)]
struct Waiting {
    now: AtomicUsize,
    most: usize,
}

/// One hash counted in [`Waiting`] until it is dropped.
struct InQueue<'a>(&'a Waiting);

impl Waiting {
    /// Counts one more waiting hash, or refuses it when the queue is full: a flood is turned
    /// away at once (503, `Retry-After`) instead of piling up until the request timeout.
    fn enter(&self) -> Result<InQueue<'_>, Error> {
        let before = self.now.fetch_add(1, Ordering::AcqRel);
        let place = InQueue(self);
        if before >= self.most {
            tracing::warn!(
                event = "hashing_queue_full",
                waiting = before,
                "too many passwords waiting to be checked: refused"
            );
            return Err(Error::Unavailable(
                "too many passwords are waiting to be checked".into(),
            ));
        }
        Ok(place)
    }
}

impl Drop for InQueue<'_> {
    fn drop(&mut self) {
        self.0.now.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Starts `n` hashing threads taking jobs from one queue; they end when every sender is gone.
/// Returns once every thread has left the normal scheduling class.
fn start_threads(n: usize) -> Result<std::sync::mpsc::Sender<Job>, Error> {
    let (tx, rx) = std::sync::mpsc::channel::<Job>();
    let rx = Arc::new(std::sync::Mutex::new(rx));
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<()>();
    for i in 0..n {
        let rx = rx.clone();
        let ready = ready_tx.clone();
        std::thread::Builder::new()
            .name(format!("gatehouse-hash-{i}"))
            .spawn(move || {
                yield_to_everything();
                let _ = ready.send(());
                drop(ready);
                loop {
                    let job = {
                        let queue = rx.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                        queue.recv()
                    };
                    match job {
                        // A panicking job loses its answer (the caller gets an error), not the
                        // thread.
                        Ok(job) => {
                            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
                        }
                        Err(_) => return,
                    }
                }
            })
            .map_err(|e| Error::Internal(anyhow::anyhow!("cannot start a hashing thread: {e}")))?;
    }
    drop(ready_tx);
    for _ in 0..n {
        ready_rx
            .recv()
            .map_err(|_| Error::Internal(anyhow::anyhow!("a hashing thread ended at its start")))?;
    }
    Ok(tx)
}

/// Moves the calling thread to Linux's `SCHED_IDLE` class: it runs only on CPU time no other
/// thread wants, and any thread of the normal class that wakes up takes its core at once
/// (a nice value only lowers its share). Best effort: a failure is logged and hashing runs at
/// normal priority. Other systems keep their normal priority.
fn yield_to_everything() {
    #[cfg(target_os = "linux")]
    {
        use thread_priority::{
            NormalThreadSchedulePolicy, ThreadPriority, ThreadSchedulePolicy,
            set_thread_priority_and_policy, thread_native_id, thread_schedule_policy,
        };
        let idle = ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Idle);
        // The crate also sets the nice value (to 0, which `SCHED_IDLE` ignores); that part may
        // fail where the process runs niced, after the class has changed: the class decides.
        let set = set_thread_priority_and_policy(thread_native_id(), ThreadPriority::Min, idle);
        if thread_schedule_policy().ok() != Some(idle) {
            tracing::warn!(event = "hash_priority_unchanged", error = ?set.err(), "cannot move a password hashing thread to the idle scheduling class");
        }
    }
}

impl PasswordHasher {
    /// A hasher with `params` and `pepper`, hashing on `pool`'s threads (each running one hash
    /// at a time) with at most `pool.queue` hashes waiting.
    pub fn new(params: HashParams, pool: HashingPool, pepper: Pepper) -> Result<Self, Error> {
        let salt = SaltString::generate(&mut OsRng);
        // A real hash of a random password, for verifications of accounts that do not exist.
        let dummy = hash_sync(
            params,
            &pepper,
            SaltString::generate(&mut OsRng).as_str().as_bytes(),
            &salt,
        )?;
        let threads = pool.thread_count();
        Ok(Self {
            params,
            pepper,
            permits: Arc::new(Semaphore::new(threads)),
            waiting: Arc::new(Waiting {
                now: AtomicUsize::new(0),
                most: pool.queue,
            }),
            jobs: start_threads(threads)?,
            dummy: dummy.into(),
        })
    }

    /// A new peppered argon2id PHC string for `password`.
    pub async fn hash(&self, password: &SecretString) -> Result<String, Error> {
        let (params, pepper) = (self.params, self.pepper.clone());
        let password = password.clone();
        self.blocking(move || {
            let salt = SaltString::generate(&mut OsRng);
            hash_sync(params, &pepper, password.expose_secret().as_bytes(), &salt)
        })
        .await
    }

    /// `stored` as it should rest in the database: a PBKDF2 hash of fewer than
    /// [`WEAK_PBKDF2_ITERATIONS`] iterations wrapped in peppered argon2id (the
    /// `pbkdf2-argon2id:` format of the module doc), anything else unchanged.
    pub async fn harden(&self, stored: &str) -> Result<String, Error> {
        let (params, pepper) = (self.params, self.pepper.clone());
        let stored = stored.to_owned();
        self.blocking(move || {
            let Some(StoredHash::Pbkdf2(pbkdf2, digest)) = StoredHash::parse(&stored) else {
                return Ok(stored);
            };
            if pbkdf2.iterations >= WEAK_PBKDF2_ITERATIONS {
                return Ok(stored);
            }
            let salt = SaltString::generate(&mut OsRng);
            let inner = hash_sync(params, &pepper, &digest, &salt)?;
            Ok(format!(
                "{WRAPPED_PBKDF2}{}:{}${}${inner}",
                pbkdf2.digest.name(),
                pbkdf2.iterations,
                pbkdf2.salt
            ))
        })
        .await
    }

    /// Whether `password` matches `stored` (any supported format).
    /// A hash whose cost is over the bounds ([`check_cost`]) never matches, and costs the work
    /// of a normal verification, not its own.
    pub async fn verify(&self, password: &SecretString, stored: &str) -> Result<Verified, Error> {
        let (params, pepper) = (self.params, self.pepper.clone());
        let password = password.clone();
        let stored = stored.to_owned();
        let dummy = self.dummy.clone();
        self.blocking(move || {
            Ok(verify_sync(
                params,
                &pepper,
                password.expose_secret(),
                &stored,
                &dummy,
            ))
        })
        .await
    }

    /// Does the work of one verification and fails, for accounts that do not exist.
    pub async fn verify_dummy(&self, password: &SecretString) -> Result<(), Error> {
        let dummy = self.dummy.clone();
        self.verify(password, &dummy).await.map(drop)
    }

    async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> Result<T, Error> + Send + 'static,
    ) -> Result<T, Error> {
        let closed = || Error::Unavailable("the password hasher is shutting down".into());
        let _permit = match self.permits.try_acquire() {
            Ok(permit) => permit,
            Err(TryAcquireError::Closed) => return Err(closed()),
            Err(TryAcquireError::NoPermits) => {
                let _place = self.waiting.enter()?;
                self.permits.acquire().await.map_err(|_| closed())?
            }
        };
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.jobs
            .send(Box::new(move || {
                let _ = tx.send(work());
            }))
            .map_err(|_| Error::Unavailable("the password hasher is shutting down".into()))?;
        rx.await
            .map_err(|_| Error::Internal(anyhow::anyhow!("a password hashing job was lost")))?
    }
}

/// Whether `stored` is a hash in a format Gatehouse verifies (checked without verifying), made
/// without a pepper: what an import accepts (another deployment's pepper stays there).
pub fn is_supported_hash(stored: &str) -> bool {
    StoredHash::parse(stored).is_some_and(|h| !h.peppered())
}

/// Whether verifying `stored` stays within what Gatehouse spends on one password; `Err` names
/// the parameter over its bound. The bounds: argon2 at most 64 MiB, 10 passes and 8 lanes (or
/// the configured cost, where that is higher, so Gatehouse's own hashes always pass); PBKDF2 at
/// most 2,000,000 iterations; scrypt at most N = 2^20, r = 16, p = 4 and 132 MiB (128 · N · r
/// bytes).
///
/// The one bound check: `user import` refuses a hash it fails, and a verification treats such a
/// stored hash as a wrong password. A hash whose format cannot be read passes here; it is
/// refused by [`is_supported_hash`] and never verifies.
pub fn check_cost(stored: &str, configured: HashParams) -> Result<(), String> {
    StoredHash::parse(stored).map_or(Ok(()), |h| cost_of(&h, configured))
}

fn cost_of(stored: &StoredHash<'_>, configured: HashParams) -> Result<(), String> {
    match stored {
        StoredHash::Argon2(h) => argon2_cost(h, configured),
        StoredHash::Pbkdf2(pbkdf2, _) => pbkdf2_cost(pbkdf2),
        StoredHash::WrappedPbkdf2(pbkdf2, inner) => {
            pbkdf2_cost(pbkdf2)?;
            argon2_cost(inner, configured)
        }
        StoredHash::Scrypt { n, r, p, .. } => {
            let (n, r, p) = (*n, *r, *p);
            if n > MAX_SCRYPT_N {
                return Err(format!("scrypt N={n} is above {MAX_SCRYPT_N}"));
            }
            if r > MAX_SCRYPT_R {
                return Err(format!("scrypt r={r} is above {MAX_SCRYPT_R}"));
            }
            if p > MAX_SCRYPT_P {
                return Err(format!("scrypt p={p} is above {MAX_SCRYPT_P}"));
            }
            let memory = n.saturating_mul(r).saturating_mul(128);
            if memory > MAX_SCRYPT_MEMORY {
                return Err(format!(
                    "scrypt memory (128 · N · r) of {} MiB is above {} MiB",
                    memory / (1024 * 1024),
                    MAX_SCRYPT_MEMORY / (1024 * 1024)
                ));
            }
            Ok(())
        }
    }
}

fn pbkdf2_cost(pbkdf2: &Pbkdf2<'_>) -> Result<(), String> {
    if pbkdf2.iterations > MAX_PBKDF2_ITERATIONS {
        return Err(format!(
            "PBKDF2 iterations {} is above {MAX_PBKDF2_ITERATIONS}",
            pbkdf2.iterations
        ));
    }
    Ok(())
}

fn argon2_cost(hash: &PasswordHash<'_>, configured: HashParams) -> Result<(), String> {
    // Parameters that do not parse make a hash that never verifies: nothing to bound.
    let Ok(params) = Params::try_from(hash) else {
        return Ok(());
    };
    let max_memory = MAX_ARGON2_MEMORY_KIB.max(configured.memory_kib);
    let max_passes = MAX_ARGON2_PASSES.max(configured.iterations);
    let max_lanes = MAX_ARGON2_LANES.max(configured.parallelism);
    if params.m_cost() > max_memory {
        return Err(format!(
            "argon2 memory m={} KiB is above {max_memory} KiB",
            params.m_cost()
        ));
    }
    if params.t_cost() > max_passes {
        return Err(format!(
            "argon2 passes t={} is above {max_passes}",
            params.t_cost()
        ));
    }
    if params.p_cost() > max_lanes {
        return Err(format!(
            "argon2 lanes p={} is above {max_lanes}",
            params.p_cost()
        ));
    }
    Ok(())
}

/// A peppered argon2id PHC string of `input` with `params` and `salt`.
fn hash_sync(
    params: HashParams,
    pepper: &Pepper,
    input: &[u8],
    salt: &SaltString,
) -> Result<String, Error> {
    let internal = |e: argon2::Error| Error::Internal(anyhow::anyhow!("argon2 parameters: {e}"));
    let p = ParamsBuilder::new()
        .m_cost(params.memory_kib)
        .t_cost(params.iterations)
        .p_cost(params.parallelism)
        .keyid(KeyId::new(PEPPER_KEY_ID).map_err(internal)?)
        .build()
        .map_err(internal)?;
    Argon2::new_with_secret(pepper.0.as_slice(), Algorithm::Argon2id, Version::V0x13, p)
        .map_err(internal)?
        .hash_password(input, salt)
        .map(|h| h.to_string())
        .map_err(|e| Error::Internal(anyhow::anyhow!("argon2: {e}")))
}

/// Verifies `password` against `stored`; a hash over the bounds gets the work of verifying
/// `dummy` (a hash with the configured cost) instead of its own, and never matches.
fn verify_sync(
    params: HashParams,
    pepper: &Pepper,
    password: &str,
    stored: &str,
    dummy: &str,
) -> Verified {
    let Some(parsed) = StoredHash::parse(stored) else {
        tracing::warn!(
            event = "unknown_password_hash",
            "a stored password hash has an unknown format"
        );
        return Verified::NO;
    };
    if let Err(over) = cost_of(&parsed, params) {
        tracing::warn!(
            event = "password_hash_over_bound",
            reason = %over,
            "a stored password hash costs more than Gatehouse verifies; treated as a wrong password"
        );
        if let Some(StoredHash::Argon2(dummy)) = StoredHash::parse(dummy) {
            let _ = argon2_matches(pepper, password.as_bytes(), &dummy);
        }
        return Verified::NO;
    }
    let password = password.as_bytes();
    let (ok, current) = match &parsed {
        StoredHash::Argon2(hash) => {
            let ok = argon2_matches(pepper, password, hash);
            let current = hash.algorithm.as_str() == "argon2id"
                && hash.params.get_decimal("m") == Some(params.memory_kib)
                && hash.params.get_decimal("t") == Some(params.iterations)
                && hash.params.get_decimal("p") == Some(params.parallelism)
                && hash.params.get("keyid").map(|k| k.as_str()) == Some(PEPPER_KEY_ID_B64);
            (ok, current)
        }
        StoredHash::Pbkdf2(pbkdf2, expected) => {
            let ok = pbkdf2
                .derive(password)
                .is_some_and(|out| bool::from(out.ct_eq(expected)));
            (ok, false)
        }
        StoredHash::WrappedPbkdf2(pbkdf2, inner) => {
            let ok = pbkdf2
                .derive(password)
                .is_some_and(|digest| argon2_matches(pepper, &digest, inner));
            (ok, false)
        }
        StoredHash::Scrypt {
            n,
            r,
            p,
            salt,
            hash,
        } => (scrypt_matches(password, *n, *r, *p, salt, hash), false),
    };
    Verified {
        ok,
        needs_rehash: ok && !current,
    }
}

/// Whether `input` matches the argon2 `hash`: with the pepper when the hash names it by its
/// `keyid`, without when it names no key; a hash naming another key never matches.
fn argon2_matches(pepper: &Pepper, input: &[u8], hash: &PasswordHash<'_>) -> bool {
    // The parameters come from the stored string; argon2 verifies with them.
    match hash.params.get("keyid").map(|k| k.as_str()) {
        None => Argon2::default().verify_password(input, hash).is_ok(),
        Some(key) if key == PEPPER_KEY_ID_B64 => Argon2::new_with_secret(
            pepper.0.as_slice(),
            Algorithm::Argon2id,
            Version::V0x13,
            Params::default(),
        )
        .is_ok_and(|argon| argon.verify_password(input, hash).is_ok()),
        Some(_) => false,
    }
}

/// Whether `password` gives `expected` under scrypt with `n`, `r`, `p` and `salt` (the cost is
/// bounded by [`check_cost`], before).
fn scrypt_matches(password: &[u8], n: u64, r: u64, p: u64, salt: &str, expected: &[u8]) -> bool {
    if !n.is_power_of_two() || n < 2 || r == 0 || p == 0 {
        return false;
    }
    let log_n = u8::try_from(n.trailing_zeros()).unwrap_or(u8::MAX);
    let (Ok(r), Ok(p)) = (u32::try_from(r), u32::try_from(p)) else {
        return false;
    };
    let Ok(params) = scrypt::Params::new(log_n, r, p, expected.len()) else {
        return false;
    };
    let mut out = vec![0u8; expected.len()];
    if scrypt::scrypt(password, salt.as_bytes(), &params, &mut out).is_err() {
        return false;
    }
    bool::from(out.ct_eq(expected))
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWORD: &str = "correct horse battery staple";

    /// Made with Werkzeug 3.1.8's `generate_password_hash` (see the module doc for the formats).
    const WERKZEUG: &[&str] = &[
        "pbkdf2:sha256:600000$erIcXD22YdJYRPRE$bc19858ec51b03483685d620a80532bc68c7a65fb2b3f924c2f5a1ac68d34016",
        "pbkdf2:sha256:1000$cVyKKW03zcFPpHTW$2e12890e79f16dcb0a2ad231388a3e48473030d94b2862f8ead28abb5e9cd406",
        "scrypt:32768:8:1$AdZ77hDAIJJbHJCT$c48f2feaa150fd017271e199b2f953c91b7108147c767d276e831143b9090ba206db60f91b0928f44995647dfe1a8990dd1621e6a410a1790e1b628dd29d2e9e",
        "scrypt:16384:8:1$7stWkE1i25j1m1Xz$51348a650e1feb3126b9fdfd2a18ae7a78df8ead686395059dea5155c3fd2062b75f01d902658e470337a6dbf084ac27cc1482f97e2956168b334a1477eb12a5",
        "pbkdf2:sha512:2000$Ot8tH2tbLzwibJ78$aafdd8bb9b8ffa6076386effdfdc2d9676cafb35b55e732c0f2134fb0a7afa23b8e85d2c338ff4cb8672bd27cde9537a49dc1aa007d5703ee6488f028c205fef",
    ];
    /// Werkzeug 3.1.8, password `pässwörd-Ünïcode`.
    const WERKZEUG_UNICODE: &str = "pbkdf2:sha256:1000$zBM9WGqq0QyQkcjX$28f6803530219dac90c92eeadfaa78f6288a4e6be15c704b654aa4ae26927df2";

    fn cheap() -> HashParams {
        HashParams {
            memory_kib: 1024,
            iterations: 1,
            parallelism: 1,
        }
    }

    fn pepper() -> Pepper {
        Pepper::new(Zeroizing::new([7; 32]))
    }

    /// `verify_sync` with the test pepper and a cheap dummy.
    fn verify(params: HashParams, password: &str, stored: &str) -> Verified {
        verify_sync(
            params,
            &pepper(),
            password,
            stored,
            &argon2id("a dummy", 64, 1, 1),
        )
    }

    /// An argon2id hash of `password` with `m` KiB, `t` passes and `p` lanes.
    fn argon2id(password: &str, m: u32, t: u32, p: u32) -> String {
        let salt = SaltString::generate(&mut OsRng);
        Argon2::new(
            Algorithm::Argon2id,
            Version::V0x13,
            Params::new(m, t, p, None).unwrap(),
        )
        .hash_password(password.as_bytes(), &salt)
        .unwrap()
        .to_string()
    }

    #[test]
    fn costs_up_to_the_bounds_pass_and_beyond_them_are_named() {
        let default = HashParams::default();
        let argon2 = |m: u32, t: u32, p: u32| {
            format!(
                "$argon2id$v=19$m={m},t={t},p={p}$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g"
            )
        };
        for within in [
            argon2(65536, 10, 8),
            format!("pbkdf2:sha256:2000000$salt${}", "00".repeat(32)),
            "scrypt:1048576:1:4$salt$00".to_owned(),
            "scrypt:131072:8:1$salt$00".to_owned(),
            "scrypt:65536:16:1$salt$00".to_owned(),
        ] {
            assert_eq!(check_cost(&within, default), Ok(()), "{within}");
        }
        for (over, named) in [
            (argon2(65537, 2, 1), "memory"),
            (argon2(4 * 1024 * 1024, 1_000_000, 1), "memory"),
            (argon2(19456, 11, 1), "passes"),
            (argon2(19456, 2, 9), "lanes"),
            (
                format!("pbkdf2:sha256:2000001$salt${}", "00".repeat(32)),
                "iterations",
            ),
            (
                format!("pbkdf2:sha512:99999999999999$salt${}", "00".repeat(64)),
                "iterations",
            ),
            ("scrypt:2097152:1:1$salt$00".to_owned(), "N="),
            ("scrypt:1024:17:1$salt$00".to_owned(), "r="),
            ("scrypt:1024:8:5$salt$00".to_owned(), "p="),
            ("scrypt:262144:8:1$salt$00".to_owned(), "memory"),
        ] {
            let reason = check_cost(&over, default).expect_err(&over);
            assert!(reason.contains(named), "{over}: {reason}");
        }
        // A configured cost above the bound raises it: Gatehouse's own hashes always verify.
        let costly = HashParams {
            memory_kib: 256 * 1024,
            iterations: 12,
            parallelism: 10,
        };
        assert_eq!(check_cost(&argon2(256 * 1024, 12, 10), costly), Ok(()));
        assert!(check_cost(&argon2(256 * 1024 + 1, 12, 10), costly).is_err());
    }

    #[test]
    fn a_correct_argon2_hash_beyond_the_bounds_never_verifies() {
        // Eleven passes over 64 KiB: cheap to make, but one pass over the bound. The hash is
        // right, so only the bound can refuse it.
        let over = argon2id(PASSWORD, 64, 11, 1);
        assert_eq!(verify(cheap(), PASSWORD, &over), Verified::NO);
        let within = argon2id(PASSWORD, 64, 10, 1);
        assert!(verify(cheap(), PASSWORD, &within).ok);
    }

    #[test]
    fn werkzeug_hashes_verify_and_ask_to_be_upgraded() {
        for stored in WERKZEUG {
            let v = verify(HashParams::default(), PASSWORD, stored);
            assert_eq!(
                v,
                Verified {
                    ok: true,
                    needs_rehash: true
                },
                "{stored}"
            );
            assert!(
                !verify(HashParams::default(), "wrong", stored).ok,
                "{stored}"
            );
        }
        assert!(verify(HashParams::default(), "pässwörd-Ünïcode", WERKZEUG_UNICODE).ok);
    }

    #[test]
    fn imports_accept_only_formats_that_can_verify() {
        for stored in WERKZEUG {
            assert!(is_supported_hash(stored), "{stored}");
        }
        assert!(is_supported_hash(
            "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g"
        ));
        for unsupported in [
            "plaintext",
            "md5$abc$def",
            "pbkdf2:sha1:1000$s$00",
            "scrypt:1:2$s$00",
            "$argon2id$broken",
            "pbkdf2:sha256:1000$salt$not-hex",
        ] {
            assert!(!is_supported_hash(unsupported), "{unsupported}");
        }
    }

    #[test]
    fn tampered_or_hostile_legacy_hashes_never_verify() {
        let tampered = WERKZEUG[1].replace("$2e12", "$2e13");
        assert!(!verify(cheap(), PASSWORD, &tampered).ok);
        let digest = "00".repeat(32);
        for hostile in [
            format!("pbkdf2:sha256:4000000000$salt${digest}"),
            format!("pbkdf2:sha256:0$salt${digest}"),
            format!("pbkdf2:md5:1000$salt${digest}"),
            "scrypt:1073741824:8:1$salt$00".to_owned(),
            "scrypt:1000:8:1$salt$00".to_owned(),
            "scrypt:16384:8$salt$00".to_owned(),
            format!(
                "pbkdf2-argon2id:sha256:4000000000$salt${}",
                argon2id("x", 64, 1, 1)
            ),
            "plaintext-password".to_owned(),
            String::new(),
        ] {
            assert!(!verify(cheap(), PASSWORD, &hostile).ok, "{hostile}");
        }
    }

    #[test]
    fn a_correct_scrypt_hash_beyond_the_memory_bound_is_refused() {
        // N = 2^18, r = 8: 256 MiB, about twice what Werkzeug itself allows. The hash is right,
        // so only the bound can refuse it.
        let params = scrypt::Params::new(18, 8, 1, 64).unwrap();
        let mut hash = [0u8; 64];
        scrypt::scrypt(PASSWORD.as_bytes(), b"saltsalt", &params, &mut hash).unwrap();
        let stored = format!("scrypt:262144:8:1$saltsalt${}", hex::encode(hash));
        assert!(!verify(cheap(), PASSWORD, &stored).ok);
        // The same construction within the bound verifies, so the test above is about the bound.
        let params = scrypt::Params::new(14, 8, 1, 64).unwrap();
        scrypt::scrypt(PASSWORD.as_bytes(), b"saltsalt", &params, &mut hash).unwrap();
        let stored = format!("scrypt:16384:8:1$saltsalt${}", hex::encode(hash));
        assert!(verify(cheap(), PASSWORD, &stored).ok);
    }

    #[tokio::test]
    async fn new_hashes_are_argon2id_phc_strings_with_owasp_parameters() {
        let hasher = PasswordHasher::new(
            HashParams::default(),
            HashingPool::with_threads(2),
            pepper(),
        )
        .unwrap();
        let secret = SecretString::from(PASSWORD);
        let stored = hasher.hash(&secret).await.unwrap();
        assert!(
            stored.starts_with("$argon2id$v=19$m=19456,t=2,p=1,keyid=cGVwcGVyLTE$"),
            "{stored}"
        );
        assert_ne!(stored, hasher.hash(&secret).await.unwrap(), "salted");
        let v = hasher.verify(&secret, &stored).await.unwrap();
        assert_eq!(
            v,
            Verified {
                ok: true,
                needs_rehash: false
            }
        );
        assert!(
            !hasher
                .verify(&SecretString::from("wrong"), &stored)
                .await
                .unwrap()
                .ok
        );
    }

    #[tokio::test]
    async fn hashes_made_with_other_parameters_ask_to_be_upgraded() {
        let old = PasswordHasher::new(cheap(), HashingPool::with_threads(1), pepper()).unwrap();
        let secret = SecretString::from(PASSWORD);
        let stored = old.hash(&secret).await.unwrap();
        let current = PasswordHasher::new(
            HashParams {
                memory_kib: 2048,
                ..cheap()
            },
            HashingPool::with_threads(1),
            pepper(),
        )
        .unwrap();
        let v = current.verify(&secret, &stored).await.unwrap();
        assert!(v.ok && v.needs_rehash);
        let wrong = current
            .verify(&SecretString::from("x"), &stored)
            .await
            .unwrap();
        assert_eq!(
            wrong,
            Verified::NO,
            "a failed verification never asks for a rehash"
        );
    }

    #[tokio::test]
    async fn the_dummy_verification_does_real_work_and_never_succeeds() {
        let hasher = PasswordHasher::new(cheap(), HashingPool::with_threads(1), pepper()).unwrap();
        assert!(hasher.dummy.starts_with("$argon2id$"));
        hasher
            .verify_dummy(&SecretString::from(PASSWORD))
            .await
            .unwrap();
    }

    /// The scheduling policy of the calling thread as the kernel reports it (field 41 of
    /// `/proc/thread-self/stat`; `SCHED_IDLE` is 5).
    #[cfg(target_os = "linux")]
    fn kernel_scheduling_policy() -> u32 {
        let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap();
        // The name (field 2) is in parentheses and may hold spaces: count from after it.
        let after_name = &stat[stat.rfind(')').unwrap() + 1..];
        after_name
            .split_whitespace()
            .nth(41 - 3)
            .unwrap()
            .parse()
            .unwrap()
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn every_hashing_thread_runs_in_the_idle_scheduling_class_and_survives_a_panic() {
        const SCHED_IDLE: u32 = 5;
        let threads = 3;
        let hasher =
            PasswordHasher::new(cheap(), HashingPool::with_threads(threads), pepper()).unwrap();
        assert_eq!(
            kernel_scheduling_policy(),
            0,
            "the caller keeps the normal class"
        );
        // Each job holds its thread until all have started, so each runs on a thread of its own.
        let all_started = Arc::new(std::sync::Barrier::new(threads));
        let jobs: Vec<_> = (0..threads)
            .map(|_| {
                let (hasher, all_started) = (hasher.clone(), all_started.clone());
                tokio::spawn(async move {
                    hasher
                        .blocking(move || {
                            all_started.wait();
                            let name = std::thread::current().name().map(str::to_owned);
                            Ok((name, kernel_scheduling_policy()))
                        })
                        .await
                })
            })
            .collect();
        let mut seen = std::collections::BTreeMap::new();
        for job in jobs {
            let (name, policy) = tokio::time::timeout(std::time::Duration::from_secs(30), job)
                .await
                .expect("every thread took a job")
                .unwrap()
                .unwrap();
            seen.insert(name.expect("a named thread"), policy);
        }
        let expected: std::collections::BTreeMap<String, u32> = (0..threads)
            .map(|i| (format!("gatehouse-hash-{i}"), SCHED_IDLE))
            .collect();
        assert_eq!(seen, expected);

        let lost = hasher
            .blocking::<()>(|| panic!("a bug in a hashing job"))
            .await;
        assert!(lost.is_err());
        assert!(
            hasher
                .hash(&SecretString::from(PASSWORD))
                .await
                .unwrap()
                .starts_with("$argon2id$"),
            "the thread is still there"
        );
    }

    #[test]
    fn by_default_there_is_a_hashing_thread_per_core() {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        assert_eq!(HashingPool::default().thread_count(), cores);
        assert_eq!(HashingPool::with_threads(0).thread_count(), 1);
    }

    #[tokio::test]
    async fn at_most_the_permitted_number_of_hashes_run_at_once() {
        let hasher = PasswordHasher::new(cheap(), HashingPool::with_threads(1), pepper()).unwrap();
        let permits = hasher.permits.clone();
        let held = permits.clone().acquire_owned().await.unwrap();
        let secret = SecretString::from(PASSWORD);
        let pending = tokio::spawn({
            let hasher = hasher.clone();
            async move { hasher.hash(&secret).await }
        });
        tokio::task::yield_now().await;
        assert!(!pending.is_finished(), "the hash waits for a permit");
        drop(held);
        assert!(pending.await.unwrap().unwrap().starts_with("$argon2id$"));
    }

    #[tokio::test]
    async fn beyond_the_queue_a_hash_is_refused_at_once_and_a_freed_place_is_taken_again() {
        let pool = HashingPool {
            threads: Some(1),
            queue: 1,
        };
        let hasher = PasswordHasher::new(cheap(), pool, pepper()).unwrap();
        let held = hasher.permits.clone().acquire_owned().await.unwrap();
        let secret = SecretString::from(PASSWORD);
        let waiting = tokio::spawn({
            let (hasher, secret) = (hasher.clone(), secret.clone());
            async move { hasher.hash(&secret).await }
        });
        tokio::task::yield_now().await;
        assert!(
            !waiting.is_finished(),
            "the first hash waits for the thread"
        );
        let refused = tokio::time::timeout(std::time::Duration::from_secs(5), hasher.hash(&secret))
            .await
            .expect("refused at once, not queued");
        assert!(
            matches!(refused, Err(Error::Unavailable(_))),
            "the second waiting hash is one too many: {refused:?}"
        );
        assert_eq!(
            hasher.waiting.now.load(Ordering::Acquire),
            1,
            "a refusal takes no place"
        );
        drop(held);
        assert!(waiting.await.unwrap().unwrap().starts_with("$argon2id$"));
        assert_eq!(hasher.waiting.now.load(Ordering::Acquire), 0);
        assert!(
            hasher.hash(&secret).await.is_ok(),
            "with a thread free, no wait"
        );
        let held = hasher.permits.clone().acquire_owned().await.unwrap();
        let waiting = tokio::spawn({
            let hasher = hasher.clone();
            async move { hasher.hash(&secret).await }
        });
        tokio::task::yield_now().await;
        assert_eq!(
            hasher.waiting.now.load(Ordering::Acquire),
            1,
            "the freed place is taken again"
        );
        drop(held);
        assert!(waiting.await.unwrap().is_ok());
    }

    #[test]
    fn the_pepper_key_id_is_written_as_its_base64() {
        use base64::Engine as _;
        assert_eq!(
            base64::engine::general_purpose::STANDARD_NO_PAD.encode(PEPPER_KEY_ID),
            PEPPER_KEY_ID_B64
        );
    }

    #[tokio::test]
    async fn new_hashes_need_the_pepper_to_verify() {
        let hasher = PasswordHasher::new(cheap(), HashingPool::with_threads(1), pepper()).unwrap();
        let secret = SecretString::from(PASSWORD);
        let stored = hasher.hash(&secret).await.unwrap();
        assert!(stored.contains(",keyid=cGVwcGVyLTE$"), "{stored}");
        let parsed = PasswordHash::new(&stored).unwrap();
        assert!(
            Argon2::default()
                .verify_password(PASSWORD.as_bytes(), &parsed)
                .is_err(),
            "plain argon2, without the secret, does not verify a peppered hash"
        );
        let elsewhere = PasswordHasher::new(
            cheap(),
            HashingPool::with_threads(1),
            Pepper::new(Zeroizing::new([8; 32])),
        )
        .unwrap();
        assert!(!elsewhere.verify(&secret, &stored).await.unwrap().ok);
        let stripped = stored.replace(",keyid=cGVwcGVyLTE", "");
        assert!(
            !hasher.verify(&secret, &stripped).await.unwrap().ok,
            "without its key id the hash is checked without the pepper, and fails"
        );
        let other_key = stored.replace("keyid=cGVwcGVyLTE", "keyid=b3RoZXI");
        assert!(
            !hasher.verify(&secret, &other_key).await.unwrap().ok,
            "an unknown key never matches"
        );
    }

    #[tokio::test]
    async fn hashes_from_before_the_pepper_verify_and_ask_to_be_upgraded() {
        let before = argon2id(PASSWORD, cheap().memory_kib, cheap().iterations, 1);
        let hasher = PasswordHasher::new(cheap(), HashingPool::with_threads(1), pepper()).unwrap();
        let v = hasher
            .verify(&SecretString::from(PASSWORD), &before)
            .await
            .unwrap();
        assert_eq!(
            v,
            Verified {
                ok: true,
                needs_rehash: true
            },
            "same parameters, no pepper"
        );
        assert_eq!(
            hasher
                .verify(&SecretString::from("wrong"), &before)
                .await
                .unwrap(),
            Verified::NO
        );
    }

    #[tokio::test]
    async fn weak_pbkdf2_hashes_are_wrapped_and_strong_ones_kept() {
        let hasher = PasswordHasher::new(cheap(), HashingPool::with_threads(1), pepper()).unwrap();
        let weak = WERKZEUG[1]; // 1,000 iterations
        let digest = weak.rsplit('$').next().unwrap();
        let wrapped = hasher.harden(weak).await.unwrap();
        assert!(
            wrapped.starts_with("pbkdf2-argon2id:sha256:1000$cVyKKW03zcFPpHTW$$argon2id$v=19$"),
            "{wrapped}"
        );
        assert!(wrapped.contains(",keyid=cGVwcGVyLTE$"), "{wrapped}");
        assert!(!wrapped.contains(digest), "the PBKDF2 digest is not kept");
        let v = hasher
            .verify(&SecretString::from(PASSWORD), &wrapped)
            .await
            .unwrap();
        assert_eq!(
            v,
            Verified {
                ok: true,
                needs_rehash: true
            }
        );
        assert!(
            !hasher
                .verify(&SecretString::from("wrong"), &wrapped)
                .await
                .unwrap()
                .ok
        );
        assert!(
            !is_supported_hash(&wrapped),
            "another deployment's pepper cannot verify it"
        );
        let sha512 = hasher.harden(WERKZEUG[4]).await.unwrap();
        assert!(
            sha512.starts_with("pbkdf2-argon2id:sha512:2000$"),
            "{sha512}"
        );
        assert!(
            hasher
                .verify(&SecretString::from(PASSWORD), &sha512)
                .await
                .unwrap()
                .ok
        );
        for kept in [WERKZEUG[0], WERKZEUG[2]] {
            assert_eq!(
                hasher.harden(kept).await.unwrap(),
                kept,
                "600,000 iterations and scrypt stay"
            );
        }
    }

    #[test]
    fn a_password_is_hashed_whole() {
        let password: String = ('a'..='z').cycle().take(100).collect();
        let hasher_params = cheap();
        let stored = hash_sync(
            hasher_params,
            &pepper(),
            password.as_bytes(),
            &SaltString::generate(&mut OsRng),
        )
        .unwrap();
        let check = |p: &str| {
            verify_sync(
                hasher_params,
                &pepper(),
                p,
                &stored,
                &argon2id("a dummy", 64, 1, 1),
            )
            .ok
        };
        assert!(check(&password));
        assert!(!check(&password[..72]));
        assert!(!check(&password[..99]));
    }
}
