//! The tower layer: rules matched by path and method, keyed by client IP or header.

use std::borrow::Cow;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use axum::response::Response;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use futures_util::future::{BoxFuture, Either};
use http::{HeaderName, Method, Request};
use sha2::{Digest as _, Sha256};
use tower::{Layer, Service};

use super::{
    Decision, Limiter, Quota, RATELIMIT_LIMIT, decision_headers, store_unavailable,
    too_many_requests,
};
use crate::{ClientIp, Error};

/// What a rule does when its store fails (Redis unreachable or slow; the memory store always
/// decides).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailurePolicy {
    /// The rule is skipped: availability first (fits a global per-IP rule).
    Allow,
    /// The request is refused with a `503` problem and `Retry-After`: protection first (fits
    /// sign-in and mail-sending rules, where an unlimited attacker does harm).
    Deny,
}

/// What a rule counts requests by.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeySource {
    /// The [`ClientIp`] request extension (IPv6 addresses by their `/64`). A request without
    /// it is not counted by the rule, and the first such request logs a warning, since it means
    /// `ClientIpLayer` is missing or misplaced.
    ClientIp,
    /// The SHA-256 of this header's value (for example `Authorization`, to limit API
    /// subjects). A request without the header is not counted by the rule.
    Header(HeaderName),
    /// A key the application derives from the request's extensions, such as the signed-in
    /// account an authentication layer placed there (so this layer must sit inside that one).
    /// A request for which it gives `None` is not counted by the rule.
    Extension(ExtensionKey),
}

/// Derives a rate-limit key from a request's extensions.
type DeriveKey = dyn Fn(&http::Extensions) -> Option<String> + Send + Sync;

/// The function behind [`KeySource::Extension`].
#[derive(Clone)]
pub struct ExtensionKey(Arc<DeriveKey>);

impl ExtensionKey {
    /// Keys requests by `key(extensions)`.
    pub fn new(key: impl Fn(&http::Extensions) -> Option<String> + Send + Sync + 'static) -> Self {
        Self(Arc::new(key))
    }
}

impl std::fmt::Debug for ExtensionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ExtensionKey(..)")
    }
}

impl PartialEq for ExtensionKey {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for ExtensionKey {}

/// One rate limit: a named quota, what it counts by, which requests it covers, and what to do
/// when its store fails.
#[derive(Clone, Debug)]
pub struct Rule {
    name: Cow<'static, str>,
    quota: Quota,
    key: KeySource,
    path_prefixes: Vec<Cow<'static, str>>,
    methods: Option<Vec<Method>>,
    on_store_error: FailurePolicy,
}

impl Rule {
    /// A rule covering every request (narrow it with [`Rule::path_prefix`] and
    /// [`Rule::methods`]). The name prefixes the rule's keys, appears in logs, and must be 1
    /// to 64 ASCII letters, digits, `-`, `_` or `.`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidRuleName`] for any other name.
    pub fn new(
        name: impl Into<Cow<'static, str>>,
        quota: Quota,
        key: KeySource,
        on_store_error: FailurePolicy,
    ) -> Result<Self, Error> {
        let name = name.into();
        let valid = (1..=64).contains(&name.len())
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        if !valid {
            return Err(Error::InvalidRuleName(name.into_owned()));
        }
        Ok(Self {
            name,
            quota,
            key,
            path_prefixes: Vec::new(),
            methods: None,
            on_store_error,
        })
    }

    /// Limits the rule to paths under `prefix`, by whole segments: `/login` covers `/login`
    /// and `/login/magic` but not `/loginx`; `/api/` covers `/api/items` but not `/api`.
    /// Called more than once, the rule covers every prefix given (with one shared budget).
    pub fn path_prefix(mut self, prefix: impl Into<Cow<'static, str>>) -> Self {
        self.path_prefixes.push(prefix.into());
        self
    }

    /// Limits the rule to these methods.
    pub fn methods(mut self, methods: impl IntoIterator<Item = Method>) -> Self {
        self.methods = Some(methods.into_iter().collect());
        self
    }

    /// The name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The quota.
    pub fn quota(&self) -> &Quota {
        &self.quota
    }

    /// Whether the rule covers a request with this method and path.
    pub fn applies_to(&self, method: &Method, path: &str) -> bool {
        let method_matches = self.methods.as_ref().is_none_or(|m| m.contains(method));
        let path_matches = self.path_prefixes.is_empty()
            || self.path_prefixes.iter().any(|prefix| {
                path.strip_prefix(&**prefix).is_some_and(|rest| {
                    rest.is_empty() || rest.starts_with('/') || prefix.ends_with('/')
                })
            });
        method_matches && path_matches
    }

    /// `<name>:<client key>`, or `None` when the request has nothing to count it by.
    fn key_for<B>(&self, req: &Request<B>, warned: &AtomicBool) -> Option<String> {
        let mut key = String::with_capacity(self.name.len() + 48);
        key.push_str(&self.name);
        key.push(':');
        match &self.key {
            KeySource::ClientIp => {
                let Some(client) = req.extensions().get::<ClientIp>() else {
                    if !warned.swap(true, Ordering::Relaxed) {
                        tracing::warn!(
                            event = "rate_limit_no_client_ip",
                            rule = %self.name,
                            "a request has no client IP, so this per-IP rate limit does not \
                             apply to it; is ClientIpLayer outside the rate-limit layer?"
                        );
                    }
                    return None;
                };
                key.push_str(&client.key());
            }
            KeySource::Header(name) => {
                let value = req.headers().get(name)?;
                URL_SAFE_NO_PAD.encode_string(Sha256::digest(value.as_bytes()), &mut key);
            }
            KeySource::Extension(derive) => key.push_str(&(derive.0)(req.extensions())?),
        }
        Some(key)
    }
}

/// Applies [`RateLimit`]: the [`Rule`]s in order, with one [`Limiter`], except on exempt
/// paths.
#[derive(Clone, Debug)]
pub struct RateLimitLayer {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    limiter: Limiter,
    rules: Vec<RuleState>,
    exempt: Vec<Cow<'static, str>>,
}

#[derive(Debug)]
struct RuleState {
    rule: Rule,
    /// Whether the missing-client-IP warning was logged: once per rule is enough to spot the
    /// misconfiguration, and per request would flood the log.
    warned: AtomicBool,
}

impl RateLimitLayer {
    /// A layer checking `rules` with `limiter`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidRuleName`] when two rules have the same name (they would share keys).
    pub fn new(limiter: Limiter, rules: Vec<Rule>) -> Result<Self, Error> {
        for (index, rule) in rules.iter().enumerate() {
            if rules[..index].iter().any(|other| other.name == rule.name) {
                return Err(Error::InvalidRuleName(rule.name.clone().into_owned()));
            }
        }
        let rules = rules
            .into_iter()
            .map(|rule| RuleState {
                rule,
                warned: AtomicBool::new(false),
            })
            .collect();
        Ok(Self {
            shared: Arc::new(Shared {
                limiter,
                rules,
                exempt: Vec::new(),
            }),
        })
    }

    /// Never limits requests whose path is exactly one of `paths` (for example `/healthz`
    /// and `/readyz`). Replaces any previous list.
    pub fn exempt<P>(self, paths: impl IntoIterator<Item = P>) -> Self
    where
        P: Into<Cow<'static, str>>,
    {
        let shared = Arc::unwrap_or_clone(self.shared);
        Self {
            shared: Arc::new(Shared {
                exempt: paths.into_iter().map(Into::into).collect(),
                ..shared
            }),
        }
    }
}

impl Clone for Shared {
    fn clone(&self) -> Self {
        Self {
            limiter: self.limiter.clone(),
            rules: self
                .rules
                .iter()
                .map(|state| RuleState {
                    rule: state.rule.clone(),
                    warned: AtomicBool::new(state.warned.load(Ordering::Relaxed)),
                })
                .collect(),
            exempt: self.exempt.clone(),
        }
    }
}

impl<S> Layer<S> for RateLimitLayer {
    type Service = RateLimit<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RateLimit {
            inner,
            shared: Arc::clone(&self.shared),
        }
    }
}

/// The service of [`RateLimitLayer`].
#[derive(Clone, Debug)]
pub struct RateLimit<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S, B> Service<Request<B>> for RateLimit<S>
where
    S: Service<Request<B>, Response = Response> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = Response;
    type Error = S::Error;
    type Future = Either<S::Future, BoxFuture<'static, Result<Response, S::Error>>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let shared = &self.shared;
        let path = req.uri().path();
        // Exempt and unmatched requests go straight through: no allocation, no store access.
        if shared.exempt.iter().any(|exempt| exempt == path) {
            return Either::Left(self.inner.call(req));
        }
        let mut checks = Vec::new();
        for (index, state) in shared.rules.iter().enumerate() {
            if state.rule.applies_to(req.method(), path) {
                if let Some(key) = state.rule.key_for(&req, &state.warned) {
                    checks.push((index, key));
                }
            }
        }
        if checks.is_empty() {
            return Either::Left(self.inner.call(req));
        }

        // The clone that was driven to readiness serves this request.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let shared = Arc::clone(shared);
        Either::Right(Box::pin(async move {
            let mut verdict: Option<(usize, Decision)> = None;
            for (index, key) in checks {
                let rule = &shared.rules[index].rule;
                match shared.limiter.check(&key, &rule.quota).await {
                    Ok(decision) => {
                        if verdict
                            .as_ref()
                            .is_none_or(|(_, current)| decision.is_more_restrictive_than(current))
                        {
                            verdict = Some((index, decision));
                        }
                    }
                    Err(error) => {
                        tracing::warn!(
                            event = "rate_limit_store_error",
                            rule = %rule.name,
                            policy = ?rule.on_store_error,
                            %error,
                            "the rate-limit store failed; applying the rule's failure policy"
                        );
                        if rule.on_store_error == FailurePolicy::Deny {
                            return Ok(store_unavailable(&rule.quota));
                        }
                    }
                }
            }

            if let Some((index, decision)) = &verdict {
                if !decision.allowed {
                    tracing::info!(
                        event = "rate_limited",
                        rule = %shared.rules[*index].rule.name,
                        "request refused by a rate limit"
                    );
                    return Ok(too_many_requests(decision));
                }
            }

            let mut response = inner.call(req).await?;
            // A handler that applied its own, more specific limit (an email address) has set
            // these headers already; they describe that limit better.
            if let Some((_, decision)) = verdict {
                if !response.headers().contains_key(RATELIMIT_LIMIT) {
                    decision_headers(&decision, response.headers_mut());
                }
            }
            Ok(response)
        }))
    }
}
