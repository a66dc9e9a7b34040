//! Value parsers shared by the settings table: sizes, durations, rates, booleans, lists, URLs.
//!
//! Each returns `None` (or an `Err` message) on a value it cannot use; the table turns that into
//! an error naming the variable and the form it expects.

use std::fmt;
use std::time::Duration;

use url::Url;

/// A number of events per period.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rate {
    /// Events allowed per period (also the burst).
    pub limit: u32,
    /// The period.
    pub period: Duration,
}

impl Rate {
    /// `limit` per `period`.
    pub const fn new(limit: u32, period: Duration) -> Self {
        Self { limit, period }
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}s", self.limit, self.period.as_secs())
    }
}

/// Parses a byte size: a plain number of bytes, or a number with `K`, `KiB`, `M`, `MiB`, `G`,
/// `GiB` (powers of 1024, as the seeds' `16 * 1024 * 1024`).
pub fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, unit) = s.split_at(split);
    let n: u64 = digits.parse().ok()?;
    let factor: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        _ => return None,
    };
    n.checked_mul(factor)
}

/// Parses a duration in seconds (`30`) or with a unit (`30s`, `5m`, `500ms`, `1h`, `30d`).
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, unit) = s.split_at(split);
    let n: u64 = digits.parse().ok()?;
    match unit.trim() {
        "" | "s" => Some(Duration::from_secs(n)),
        "ms" => Some(Duration::from_millis(n)),
        "m" | "min" => Some(Duration::from_secs(n.checked_mul(60)?)),
        "h" => Some(Duration::from_secs(n.checked_mul(3600)?)),
        "d" => Some(Duration::from_secs(n.checked_mul(24 * 3600)?)),
        _ => None,
    }
}

/// Parses `N/period` (`100/min`, `5/60s`, `3/15min`, `10/s`, `1000/h`) or `off` (`Some(None)`).
pub fn parse_rate(s: &str) -> Option<Option<Rate>> {
    let s = s.trim();
    if s.eq_ignore_ascii_case("off") {
        return Some(None);
    }
    let (n, period) = s.split_once('/')?;
    let limit: u32 = n.trim().parse().ok().filter(|n| *n > 0)?;
    let period = period.trim();
    let period = if period.starts_with(|c: char| c.is_ascii_digit()) {
        parse_duration(period)?
    } else {
        parse_duration(&format!("1{period}"))?
    };
    (!period.is_zero()).then_some(Some(Rate::new(limit, period)))
}

/// `1`/`true`/`yes`/`on` or `0`/`false`/`no`/`off`.
pub(super) fn parse_bool(s: &str) -> Option<bool> {
    match s.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Some(true),
        "0" | "false" | "no" | "off" => Some(false),
        _ => None,
    }
}

/// A list separated by commas or white space, without empty items.
pub(super) fn split_list(s: &str) -> Vec<String> {
    s.split([',', ' ', '\n', '\t'])
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(str::to_owned)
        .collect()
}

/// The base URL of every link: http(s), a host, nothing that would be copied into links wrongly.
pub(super) fn parse_public_url(v: &str) -> Result<Url, String> {
    let url = Url::parse(v.trim()).map_err(|e| format!("is not a URL ({e})"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err("must be an http:// or https:// address with a host".into());
    }
    if url.query().is_some() || url.fragment().is_some() || !url.username().is_empty() {
        return Err("must not carry a query, fragment or user name".into());
    }
    Ok(url)
}

/// A rate for display: `100/60s`, or `off`.
pub(super) fn show_rate(rate: Option<Rate>) -> String {
    rate.map_or_else(|| "off".to_owned(), |r| r.to_string())
}

/// A store-error policy for display.
pub(super) fn show_policy(deny: bool) -> String {
    if deny { "deny" } else { "allow" }.to_owned()
}

/// A duration for display, in whole seconds.
pub(super) fn show_secs(d: Duration) -> String {
    format!("{}s", d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse() {
        assert_eq!(
            parse_rate("100/min"),
            Some(Some(Rate::new(100, Duration::from_secs(60))))
        );
        assert_eq!(
            parse_rate("3/15min"),
            Some(Some(Rate::new(3, Duration::from_secs(900))))
        );
        assert_eq!(
            parse_rate("10/s"),
            Some(Some(Rate::new(10, Duration::from_secs(1))))
        );
        assert_eq!(parse_rate("off"), Some(None));
        assert_eq!(parse_rate("0/min"), None);
        assert_eq!(parse_rate("lots"), None);
    }

    #[test]
    fn sizes_and_durations_parse() {
        assert_eq!(parse_size("16777216"), Some(16 << 20));
        assert_eq!(parse_size("16MiB"), Some(16 << 20));
        assert_eq!(parse_size("64k"), Some(64 << 10));
        assert_eq!(parse_size("12 parsecs"), None);
        assert_eq!(parse_duration("30"), Some(Duration::from_secs(30)));
        assert_eq!(parse_duration("5m"), Some(Duration::from_secs(300)));
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("soon"), None);
    }

    #[test]
    fn durations_in_days_parse_as_the_refresh_token_default_is_written() {
        assert_eq!(
            parse_duration("30d"),
            Some(Duration::from_secs(30 * 24 * 3600))
        );
        assert_eq!(
            parse_rate("1000/d"),
            Some(Some(Rate::new(1000, Duration::from_secs(24 * 3600))))
        );
    }
}
