//! The crate's one error type.
//!
//! Almost every variant is a configuration mistake detected at startup by a validating
//! constructor. The exceptions are the rate-limit store variants, which a [`Limiter`] returns
//! while serving (the layer turns them into its failure policy). Request-time refusals are
//! answered with a [`Problem`](crate::Problem), not an error.
//!
//! [`Limiter`]: crate::rate_limit::Limiter
//!
//! # Security
//!
//! The constructors refuse settings that would silently weaken a protection (a `null` CORS
//! origin, a credentialed wildcard, an unparseable trusted proxy) instead of guessing what was
//! meant, so an application that propagates these errors fails fast at startup.

/// A configuration value this crate refuses.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Returned by [`TrustedProxies::parse`](crate::TrustedProxies::parse) when an entry is
    /// neither a CIDR (`10.0.0.0/8`, `2001:db8::/32`) nor a bare IP address. Holds the entry.
    #[error("invalid trusted proxy {0:?}: expected an IP address or a CIDR such as 10.0.0.0/8")]
    InvalidProxy(String),

    /// Returned by [`CorsPolicy::new`](crate::CorsPolicy::new) when an origin is not exactly
    /// `*` or `scheme://host[:port]` (scheme `http` or `https`, lower-case host, no default
    /// port, no path, not even `/`, no query, fragment or userinfo), or when `*` is listed
    /// together with other origins. Holds the offending entry.
    #[error(
        "invalid CORS origin {0:?}: expected `*` alone, or scheme://host[:port] with scheme http or https, \
         a lower-case host, no default port and nothing after the host or port"
    )]
    InvalidOrigin(String),

    /// Returned by [`CorsPolicy::new`](crate::CorsPolicy::new) when the list contains `null`:
    /// sandboxed iframes, `file:` pages and some redirects all send `Origin: null`, so allowing
    /// it would allow any attacker page that sandboxes itself.
    #[error("the CORS origin `null` is never allowed: any sandboxed page can send it")]
    NullOrigin,

    /// Returned by [`CorsPolicy::new`](crate::CorsPolicy::new) when the origin list is `*` and
    /// credentials are allowed: that would let every website make authenticated requests.
    #[error("the CORS origin `*` cannot be combined with allow_credentials; list the origins")]
    WildcardWithCredentials,

    /// Returned by [`SecurityHeadersLayer::try_new`](crate::SecurityHeadersLayer::try_new) when
    /// the CSP report URI is empty or contains whitespace, `;`, `,` or a non-ASCII character,
    /// any of which would let it alter or break the policy. Holds the URI.
    #[error("invalid CSP report URI {0:?}: it must be visible ASCII without spaces, `;` or `,`")]
    InvalidReportUri(String),

    /// Returned by [`Quota::new`](crate::rate_limit::Quota::new) when the limit or the period
    /// is zero, or when `period / limit` is shorter than the one-microsecond resolution of the
    /// rate limiter.
    #[error(
        "invalid rate-limit quota of {limit} per {period:?}: both must be positive and \
         period / limit at least 1 µs"
    )]
    InvalidQuota {
        /// The requests allowed per period.
        limit: u32,
        /// The period.
        period: std::time::Duration,
    },

    /// Returned by [`Rule::new`](crate::rate_limit::Rule::new) for a name that is empty, longer
    /// than 64 bytes or not made of ASCII letters, digits, `-`, `_` and `.` (names prefix the
    /// stored keys, so a `:` could make two rules share keys), and by
    /// [`RateLimitLayer::new`](crate::rate_limit::RateLimitLayer::new) for a name used twice.
    /// Holds the name.
    #[error(
        "invalid rate-limit rule name {0:?}: use 1 to 64 ASCII letters, digits, `-`, `_` or `.`, \
         each name once"
    )]
    InvalidRuleName(String),

    /// The exception to "configuration mistakes only": produced while serving, by
    /// [`Limiter::check`](crate::rate_limit::Limiter::check) when the Redis store did not answer
    /// in time or failed. The layer answers it with the rule's
    /// [`FailurePolicy`](crate::rate_limit::FailurePolicy) (a `503` problem or a pass), never
    /// with this message. Holds a description without keys or credentials.
    #[error("rate-limit store failed: {0}")]
    RateLimitStore(String),

    /// Returned by [`CsrfLayer::try_new`](crate::CsrfLayer::try_new) when an allowed origin is
    /// `*`, `null`, or not `scheme://host[:port]` as browsers send it (the rules of
    /// [`CorsPolicy::new`](crate::CorsPolicy::new)): it would match any site, or never match.
    /// Holds the entry.
    #[error(
        "invalid CSRF allowed origin {0:?}: expected scheme://host[:port] exactly as browsers send it; \
         `*` and `null` are never allowed"
    )]
    InvalidCsrfOrigin(String),
}
