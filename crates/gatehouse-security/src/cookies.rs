//! Reading cookies and bearer credentials from request headers, one way for every layer.
//!
//! The session layer, the CSRF layer and the API authenticator must agree on what a request
//! carries: were one to parse `Cookie` differently from another, a cookie that one of them sees
//! and the other does not would sign a user out or let a check be skipped.
//!
//! # Security
//! - `Cookie` headers are parsed as bytes. A cookie with non-ASCII bytes (set by another
//!   application on the same domain) must not hide the others in the same header, as
//!   `HeaderValue::to_str` would.
//! - [`single`] trusts a cookie only when exactly one of its name was sent: two of the same name
//!   mean someone is shadowing the real one (a sibling subdomain, or a path-scoped copy), and
//!   neither can be told apart from the other.

use http::{HeaderMap, header};

/// Every value sent for cookie `name`, in the order sent, as raw bytes with surrounding
/// whitespace trimmed.
pub fn values<'a>(headers: &'a HeaderMap, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
    headers
        .get_all(header::COOKIE)
        .iter()
        .flat_map(|value| value.as_bytes().split(|&b| b == b';'))
        .filter_map(move |pair| {
            let pair = pair.trim_ascii();
            let eq = pair.iter().position(|&b| b == b'=')?;
            let (key, value) = (&pair[..eq], &pair[eq + 1..]);
            (key.trim_ascii() == name.as_bytes()).then_some(value.trim_ascii())
        })
}

/// The value of cookie `name` when the request carries exactly one cookie of that name and its
/// value is visible ASCII; `None` otherwise (see the module's Security section).
pub fn single<'a>(headers: &'a HeaderMap, name: &'a str) -> Option<&'a str> {
    let mut found = values(headers, name);
    let value = found.next()?;
    if found.next().is_some() {
        return None;
    }
    if !value.iter().all(|b| b.is_ascii_graphic()) {
        return None;
    }
    std::str::from_utf8(value).ok()
}

/// The credential of `Authorization: Bearer <credential>` (the scheme compared
/// case-insensitively, as RFC 9110 says), if the request has a non-empty one. `Basic` and other
/// schemes do not count: browsers replay those by themselves.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    const SCHEME: &[u8] = b"bearer ";
    let value = headers.get(header::AUTHORIZATION)?.as_bytes();
    if value.len() <= SCHEME.len() || !value[..SCHEME.len()].eq_ignore_ascii_case(SCHEME) {
        return None;
    }
    let credential = std::str::from_utf8(&value[SCHEME.len()..]).ok()?.trim();
    (!credential.is_empty()).then_some(credential)
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    fn headers(cookies: &[&[u8]]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for c in cookies {
            h.append(header::COOKIE, HeaderValue::from_bytes(c).unwrap());
        }
        h
    }

    #[test]
    fn a_non_ascii_cookie_does_not_hide_the_others() {
        let h = headers(&["theme=caf\u{e9}; gatehouse=tok; b=2".as_bytes()]);
        assert!(h.get(header::COOKIE).unwrap().to_str().is_err());
        assert_eq!(single(&h, "gatehouse"), Some("tok"));
    }

    #[test]
    fn only_a_single_cookie_of_a_name_is_trusted() {
        let h = headers(&[b"a=1; gatehouse=tok; b=2"]);
        assert_eq!(single(&h, "gatehouse"), Some("tok"));
        let h = headers(&[b"a=1; gatehouse=tok", b"gatehouse=other"]);
        assert_eq!(single(&h, "gatehouse"), None);
        assert_eq!(values(&h, "gatehouse").count(), 2);
        let h = headers(&[b"xgatehouse=tok"]);
        assert_eq!(single(&h, "gatehouse"), None);
    }

    #[test]
    fn a_cookie_value_with_non_ascii_bytes_is_not_trusted() {
        let h = headers(&["gatehouse=t\u{e9}k".as_bytes()]);
        assert_eq!(single(&h, "gatehouse"), None);
    }

    #[test]
    fn bearer_credentials_need_the_scheme_and_a_value() {
        let mut h = HeaderMap::new();
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("BEARER abc "),
        );
        assert_eq!(bearer(&h), Some("abc"));
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer   "));
        assert_eq!(bearer(&h), None);
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic abc"));
        assert_eq!(bearer(&h), None);
    }
}
