//! The crate's one error type, returned by the constructors that validate configuration.
//!
//! Every variant is a configuration mistake detected at startup; none is produced while
//! serving a request (request-time failures are answered with a [`Problem`](crate::Problem)).
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
}
