//! The client's IP address, believing `Forwarded` / `X-Forwarded-For` only from trusted
//! proxies.
//!
//! [`ClientIpLayer`] starts from the TCP peer address (axum's
//! [`ConnectInfo<SocketAddr>`](axum::extract::ConnectInfo), with IPv4-mapped IPv6 addresses
//! turned into IPv4) and:
//!
//! - when the peer is not a trusted proxy, uses the peer and ignores the forwarding headers;
//! - when the peer is a trusted proxy, reads the hop list from `Forwarded` (RFC 7239, its
//!   `for=` parameters) if the request has one, else from `X-Forwarded-For`, and walks it from
//!   right to left, skipping trusted proxies: the first untrusted address is the client. An
//!   entry that cannot be read (`unknown`, an obfuscated `_name`, garbage) stops the walk at
//!   the last trusted hop reached; when every hop is trusted, the leftmost one is the client.
//!
//! The result is inserted into the request extensions as [`ClientIp`] (also an extractor) and
//! recorded as the `client_ip` field of the current tracing span, if that span declares it.
//! The TCP peer itself, and whether it is a trusted proxy, is inserted as [`Peer`]: the one
//! answer for anything else a proxy may vouch for (an identity header an authenticating proxy
//! sets, say), so that no second list or second check of the peer exists.
//! Without `ConnectInfo` (for example in a test that calls the router directly) nothing is
//! inserted.
//!
//! # Security
//!
//! Everything left of the hop appended by the first trusted proxy is written by the client and
//! can be forged, so the walk goes from the right and never returns a value from beyond an
//! entry it could not read. This relies on every trusted proxy *appending* to the header it
//! receives (or replacing it), as nginx (`$proxy_add_x_forwarded_for`), HAProxy, Envoy and the
//! cloud load balancers do.
//!
//! # Deployment caveat
//!
//! List only the proxies that actually sit in front of the server. Trusting a range that
//! includes client machines (a whole private network behind which users also connect) lets
//! those clients choose their own address and evade per-IP rate limits and audit records.
//! Behind a proxy that only sets `X-Forwarded-For` but passes a client's `Forwarded` header
//! through, the client can choose its address too, because `Forwarded` takes precedence:
//! make such a proxy strip `Forwarded`.
//!
//! The `client_ip` span field is recorded into the span that is current when this layer runs,
//! so a tracing span created by an inner layer should read [`ClientIp`] from the extensions
//! instead.

use std::{
    fmt,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    str::FromStr,
    sync::Arc,
    task::{Context, Poll},
};

use axum::extract::{ConnectInfo, FromRequestParts};
use http::{HeaderMap, HeaderName, Request, StatusCode, header, request::Parts};
use ipnet::IpNet;
use tower::{Layer, Service};

use crate::{error::Error, problem::Problem};

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// The proxies whose forwarding headers are believed. The default trusts nobody.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TrustedProxies {
    nets: Vec<IpNet>,
}

impl TrustedProxies {
    /// Trusts the given networks.
    pub fn new(nets: Vec<IpNet>) -> Self {
        Self { nets }
    }

    /// Parses a list of CIDRs (`10.0.0.0/8`, `2001:db8::/32`) and bare IP addresses (meaning
    /// `/32` or `/128`), separated by commas and/or whitespace. An empty string trusts nobody.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidProxy`] naming the first entry that is neither.
    pub fn parse(list: &str) -> Result<Self, Error> {
        list.split(|c: char| c == ',' || c.is_whitespace())
            .filter(|entry| !entry.is_empty())
            .map(|entry| {
                IpNet::from_str(entry)
                    .or_else(|_| IpAddr::from_str(entry).map(IpNet::from))
                    .map_err(|_| Error::InvalidProxy(entry.to_owned()))
            })
            .collect::<Result<_, _>>()
            .map(Self::new)
    }

    /// Whether `ip` (an IPv4-mapped IPv6 address counts as IPv4) is in a trusted network.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.nets.iter().any(|net| net.contains(&ip))
    }

    /// Whether nobody is trusted.
    pub fn is_empty(&self) -> bool {
        self.nets.is_empty()
    }

    /// Whether every IPv4 or every IPv6 address is trusted (`0.0.0.0/0`, `::/0`, or networks
    /// that add up to one of them): then any client can name its own address.
    pub fn covers_every_address(&self) -> bool {
        IpNet::aggregate(&self.nets)
            .iter()
            .any(|net| net.prefix_len() == 0)
    }
}

/// The client's IP address as determined by [`ClientIpLayer`].
///
/// As an extractor it fails with a 500 [`Problem`] when the layer is not installed or the
/// server was not started with connect info.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ClientIp(pub IpAddr);

impl ClientIp {
    /// The key every per-client rule counts this client under: an IPv4 address as it is, an
    /// IPv6 address by its `/64` network, because one host usually holds a whole `/64` and
    /// could otherwise use a fresh address for every attempt. Rate limits and sign-in throttles
    /// alike key by this, so no rule can be escaped by changing the low bits.
    pub fn key(&self) -> String {
        match self.0 {
            IpAddr::V4(v4) => v4.to_string(),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => v4.to_string(),
                None => {
                    let network = std::net::Ipv6Addr::from(u128::from(v6) & (u128::MAX << 64));
                    format!("{network}/64")
                }
            },
        }
    }
}

impl fmt::Display for ClientIp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl<S: Send + Sync> FromRequestParts<S> for ClientIp {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts.extensions.get::<Self>().copied().ok_or_else(|| {
            tracing::error!(
                "ClientIp extractor used without ClientIpLayer or without ConnectInfo<SocketAddr>"
            );
            Problem::new(StatusCode::INTERNAL_SERVER_ERROR)
                .with_detail("The client IP layer is not installed.")
        })
    }
}

/// The TCP peer of a request, and whether it is one of the trusted proxies, as
/// [`ClientIpLayer`] judged it (an IPv4-mapped IPv6 peer counts as IPv4).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Peer {
    /// The peer's address.
    pub ip: IpAddr,
    /// Whether it is in the trusted proxies: only then may headers it sets be believed.
    pub trusted_proxy: bool,
}

/// Determines the [`ClientIp`] of every request.
///
/// See the [module docs](self) for the rules.
#[derive(Clone, Debug)]
pub struct ClientIpLayer {
    proxies: Arc<TrustedProxies>,
}

impl ClientIpLayer {
    /// Creates the layer, believing forwarding headers only from `proxies`.
    pub fn new(proxies: TrustedProxies) -> Self {
        Self {
            proxies: Arc::new(proxies),
        }
    }
}

impl<S> Layer<S> for ClientIpLayer {
    type Service = ClientIpService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ClientIpService {
            inner,
            proxies: Arc::clone(&self.proxies),
        }
    }
}

/// The service built by [`ClientIpLayer`].
#[derive(Clone, Debug)]
pub struct ClientIpService<S> {
    inner: S,
    proxies: Arc<TrustedProxies>,
}

impl<S, ReqBody> Service<Request<ReqBody>> for ClientIpService<S>
where
    S: Service<Request<ReqBody>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ReqBody>) -> Self::Future {
        let peer = req
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(addr)| addr.ip().to_canonical());
        if let Some(peer) = peer {
            req.extensions_mut().insert(Peer {
                ip: peer,
                trusted_proxy: self.proxies.contains(peer),
            });
            let ip = resolve(peer, &self.proxies, req.headers());
            tracing::Span::current().record("client_ip", tracing::field::display(ip));
            req.extensions_mut().insert(ClientIp(ip));
        }
        self.inner.call(req)
    }
}

/// The client address for a request from `peer` carrying `headers`.
fn resolve(peer: IpAddr, proxies: &TrustedProxies, headers: &HeaderMap) -> IpAddr {
    if !proxies.contains(peer) {
        return peer;
    }
    let forwarded = headers.get_all(header::FORWARDED);
    if forwarded.iter().next().is_some() {
        walk(peer, proxies, forwarded.iter(), forwarded_for)
    } else {
        walk(
            peer,
            proxies,
            headers.get_all(X_FORWARDED_FOR).iter(),
            parse_node,
        )
    }
}

/// Walks the hops of `lines` from right to left, starting after the trusted `peer`.
///
/// Elements are split on every comma, quoted or not, from the right: the elements appended by
/// trusted proxies stay intact even when the client sent an unbalanced quote, and a quoted
/// comma in the client's part can only produce an unreadable element, which stops the walk.
fn walk<'a>(
    peer: IpAddr,
    proxies: &TrustedProxies,
    lines: impl DoubleEndedIterator<Item = &'a http::HeaderValue>,
    parse: fn(&str) -> Option<IpAddr>,
) -> IpAddr {
    let mut client = peer;
    for line in lines.rev() {
        let Ok(line) = line.to_str() else {
            return client;
        };
        for element in line.rsplit(',') {
            let Some(hop) = parse(element) else {
                return client;
            };
            client = hop;
            if !proxies.contains(hop) {
                return client;
            }
        }
    }
    client
}

/// The address in the `for=` parameter of one `Forwarded` element.
fn forwarded_for(element: &str) -> Option<IpAddr> {
    let mut node = None;
    for pair in element.split(';') {
        let pair = pair.trim();
        if pair.is_empty() {
            continue;
        }
        let (name, value) = pair.split_once('=')?;
        if name.trim_end().eq_ignore_ascii_case("for") {
            // A parameter may appear once per element; two `for`s make the element ambiguous.
            if node.is_some() {
                return None;
            }
            node = Some(value.trim_start());
        }
    }
    parse_node(unquote(node?)?)
}

/// The content of a quoted string, or the token itself. Quoted pairs (`\x`) never occur in a
/// node and are refused.
fn unquote(value: &str) -> Option<&str> {
    match value.strip_prefix('"') {
        Some(rest) => {
            let inner = rest.strip_suffix('"')?;
            (!inner.contains(['"', '\\'])).then_some(inner)
        }
        None => Some(value),
    }
}

/// An address from a hop: `1.2.3.4`, `1.2.3.4:port`, `[v6]`, `[v6]:port` or a bare `v6`,
/// where a port may be a number or an obfuscated `_name`. `unknown` and obfuscated node names
/// give `None`.
fn parse_node(node: &str) -> Option<IpAddr> {
    let node = node.trim();
    let ip = if let Some(rest) = node.strip_prefix('[') {
        let (addr, after) = rest.split_once(']')?;
        if !after.is_empty() && !is_port(after.strip_prefix(':')?) {
            return None;
        }
        IpAddr::V6(Ipv6Addr::from_str(addr).ok()?)
    } else if let Ok(ip) = IpAddr::from_str(node) {
        ip
    } else {
        let (addr, port) = node.rsplit_once(':')?;
        if !is_port(port) {
            return None;
        }
        IpAddr::V4(Ipv4Addr::from_str(addr).ok()?)
    };
    Some(ip.to_canonical())
}

/// A port number or an RFC 7239 obfuscated port (`_` followed by letters, digits, `.`, `_`,
/// `-`).
fn is_port(port: &str) -> bool {
    match port.strip_prefix('_') {
        Some(obfuscated) => {
            !obfuscated.is_empty()
                && obfuscated
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        }
        None => {
            (1..=5).contains(&port.len())
                && port.bytes().all(|b| b.is_ascii_digit())
                && port.parse::<u16>().is_ok()
        }
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use axum::{Router, body::Body, routing::get};
    use http::{HeaderValue, Response};
    use http_body_util::BodyExt;
    use tower::{ServiceExt, service_fn};

    use super::*;
    use crate::problem::PROBLEM_JSON;

    const PROXIES: &str = "10.0.0.0/8, 2001:db8:ffff::/48";

    #[test]
    fn trusting_every_address_is_recognised_however_it_is_written() {
        for everyone in ["0.0.0.0/0", "::/0", "10.0.0.0/8, 0.0.0.0/1, 128.0.0.0/1"] {
            let proxies = TrustedProxies::parse(everyone).unwrap();
            assert!(proxies.covers_every_address(), "{everyone}");
        }
        for some in [PROXIES, "", "0.0.0.0/1", "::/1, 10.0.0.1"] {
            let proxies = TrustedProxies::parse(some).unwrap();
            assert!(!proxies.covers_every_address(), "{some}");
        }
    }

    /// What the application sees as the client address of a request from `peer`.
    async fn client_ip(peer: &str, headers: &[(&str, &[u8])]) -> String {
        let mut req = Request::new(Body::empty());
        for (name, value) in headers {
            req.headers_mut().append(
                HeaderName::from_str(name).unwrap(),
                HeaderValue::from_bytes(value).unwrap(),
            );
        }
        let peer = SocketAddr::new(peer.parse().unwrap(), 54321);
        req.extensions_mut().insert(ConnectInfo(peer));
        send(req).await
    }

    async fn send(req: Request<Body>) -> String {
        let inner = service_fn(|req: Request<Body>| async move {
            let seen = req
                .extensions()
                .get::<ClientIp>()
                .map_or_else(|| "none".to_owned(), ClientIp::to_string);
            Ok::<_, Infallible>(Response::new(Body::from(seen)))
        });
        let layer = ClientIpLayer::new(TrustedProxies::parse(PROXIES).unwrap());
        let response = layer.layer(inner).oneshot(req).await.unwrap();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        String::from_utf8(body.to_vec()).unwrap()
    }

    #[tokio::test]
    async fn spoofed_x_forwarded_for_from_an_untrusted_peer_is_ignored() {
        let ip = client_ip("203.0.113.5", &[("x-forwarded-for", b"1.2.3.4")]).await;

        assert_eq!(ip, "203.0.113.5");
    }

    #[tokio::test]
    async fn spoofed_forwarded_from_an_untrusted_peer_is_ignored() {
        let ip = client_ip("203.0.113.5", &[("forwarded", b"for=1.2.3.4")]).await;

        assert_eq!(ip, "203.0.113.5");
    }

    #[tokio::test]
    async fn trusted_proxy_x_forwarded_for_is_believed() {
        let ip = client_ip("10.0.0.1", &[("x-forwarded-for", b"203.0.113.9")]).await;

        assert_eq!(ip, "203.0.113.9");
    }

    #[tokio::test]
    async fn chain_of_trusted_proxies_is_skipped() {
        let headers: &[(&str, &[u8])] = &[("x-forwarded-for", b"203.0.113.9, 10.0.0.3 ,10.1.2.3")];

        assert_eq!(client_ip("10.0.0.1", headers).await, "203.0.113.9");
    }

    #[tokio::test]
    async fn left_side_spoof_behind_a_trusted_proxy_is_ignored() {
        let ip = client_ip("10.0.0.1", &[("x-forwarded-for", b"6.6.6.6, 203.0.113.9")]).await;

        assert_eq!(ip, "203.0.113.9");
    }

    #[tokio::test]
    async fn several_x_forwarded_for_lines_are_read_in_order() {
        let headers: &[(&str, &[u8])] = &[
            ("x-forwarded-for", b"6.6.6.6, 198.51.100.1"),
            ("x-forwarded-for", b"203.0.113.9, 10.0.0.2"),
        ];

        assert_eq!(client_ip("10.0.0.1", headers).await, "203.0.113.9");
    }

    #[tokio::test]
    async fn x_forwarded_for_ports_and_brackets_are_understood() {
        let v4 = client_ip("10.0.0.1", &[("x-forwarded-for", b"203.0.113.9:5555")]).await;
        let v6 = client_ip("10.0.0.1", &[("x-forwarded-for", b"[2001:db8::7]:443")]).await;
        let bare_v6 = client_ip("10.0.0.1", &[("x-forwarded-for", b"2001:db8::8")]).await;

        assert_eq!(v4, "203.0.113.9");
        assert_eq!(v6, "2001:db8::7");
        assert_eq!(bare_v6, "2001:db8::8");
    }

    #[tokio::test]
    async fn forwarded_with_quoted_ipv6_and_ports_is_understood() {
        let headers: &[(&str, &[u8])] = &[(
            "forwarded",
            br#"for="[2001:db8:cafe::17]:4711";proto=https, For="[2001:db8:ffff::1]""#,
        )];

        assert_eq!(client_ip("10.0.0.1", headers).await, "2001:db8:cafe::17");
    }

    #[tokio::test]
    async fn forwarded_parameters_are_case_insensitive_and_in_any_position() {
        let headers: &[(&str, &[u8])] = &[(
            "forwarded",
            b"proto=http;FOR=192.0.2.60:8080;by=203.0.113.43",
        )];

        assert_eq!(client_ip("10.0.0.1", headers).await, "192.0.2.60");
    }

    #[tokio::test]
    async fn forwarded_lines_and_elements_are_read_in_order() {
        let headers: &[(&str, &[u8])] = &[
            ("forwarded", b"for=6.6.6.6, for=192.0.2.43"),
            ("forwarded", b"for=10.0.0.2;proto=https"),
        ];

        assert_eq!(client_ip("10.0.0.1", headers).await, "192.0.2.43");
    }

    #[tokio::test]
    async fn forwarded_takes_precedence_over_x_forwarded_for() {
        let headers: &[(&str, &[u8])] = &[
            ("x-forwarded-for", b"198.51.100.1"),
            ("forwarded", b"for=192.0.2.43"),
        ];

        assert_eq!(client_ip("10.0.0.1", headers).await, "192.0.2.43");
    }

    #[tokio::test]
    async fn unreadable_entries_stop_at_the_last_trusted_hop() {
        let cases: &[(&str, &[u8], &str)] = &[
            ("x-forwarded-for", b"unknown", "10.0.0.1"),
            ("x-forwarded-for", b"6.6.6.6, garbage, 10.0.0.2", "10.0.0.2"),
            ("x-forwarded-for", b"6.6.6.6,, 10.0.0.2", "10.0.0.2"),
            ("x-forwarded-for", b"6.6.6.6, 1.2.3.4:99999", "10.0.0.1"),
            ("x-forwarded-for", b"6.6.6.6, fe80::1%eth0", "10.0.0.1"),
            ("x-forwarded-for", b"6.6.6.6, \xff", "10.0.0.1"),
            ("forwarded", b"for=6.6.6.6, for=unknown", "10.0.0.1"),
            (
                "forwarded",
                b"for=6.6.6.6, for=_hidden, for=10.0.0.2",
                "10.0.0.2",
            ),
            ("forwarded", b"for=6.6.6.6, proto=https", "10.0.0.1"),
            (
                "forwarded",
                b"for=6.6.6.6, for=1.2.3.4;for=10.0.0.3",
                "10.0.0.1",
            ),
            ("forwarded", br#"for=6.6.6.6, for="1.2.3.4"#, "10.0.0.1"),
        ];
        for (name, value, expected) in cases {
            let ip = client_ip("10.0.0.1", &[(name, value)]).await;

            assert_eq!(ip, *expected, "{name}: {}", String::from_utf8_lossy(value));
        }
    }

    #[tokio::test]
    async fn unbalanced_quote_from_the_client_does_not_swallow_the_proxy_hop() {
        let headers: &[(&str, &[u8])] = &[("forwarded", br#"for="6.6.6.6, for=192.0.2.43"#)];

        assert_eq!(client_ip("10.0.0.1", headers).await, "192.0.2.43");
    }

    #[tokio::test]
    async fn obfuscated_port_is_accepted() {
        let headers: &[(&str, &[u8])] = &[("forwarded", br#"for="192.0.2.43:_p1""#)];

        assert_eq!(client_ip("10.0.0.1", headers).await, "192.0.2.43");
    }

    #[tokio::test]
    async fn when_every_hop_is_trusted_the_leftmost_is_the_client() {
        let ip = client_ip("10.0.0.1", &[("x-forwarded-for", b"10.0.0.5, 10.0.0.2")]).await;

        assert_eq!(ip, "10.0.0.5");
    }

    #[tokio::test]
    async fn trusted_peer_without_headers_is_the_client() {
        assert_eq!(client_ip("10.0.0.1", &[]).await, "10.0.0.1");
    }

    #[tokio::test]
    async fn ipv4_mapped_peers_are_treated_as_ipv4() {
        let trusted = client_ip("::ffff:10.0.0.1", &[("x-forwarded-for", b"203.0.113.9")]).await;
        let untrusted = client_ip("::ffff:203.0.113.5", &[("x-forwarded-for", b"1.2.3.4")]).await;

        assert_eq!(trusted, "203.0.113.9");
        assert_eq!(untrusted, "203.0.113.5");
    }

    #[tokio::test]
    async fn ipv4_mapped_hops_are_treated_as_ipv4() {
        let headers: &[(&str, &[u8])] = &[("x-forwarded-for", b"203.0.113.9, ::ffff:10.0.0.2")];

        assert_eq!(client_ip("10.0.0.1", headers).await, "203.0.113.9");
    }

    #[tokio::test]
    async fn the_peer_is_marked_trusted_only_inside_the_trusted_proxies() {
        async fn peer_of(addr: &str) -> Peer {
            let inner = service_fn(|req: Request<Body>| async move {
                Ok::<_, Infallible>(*req.extensions().get::<Peer>().unwrap())
            });
            let layer = ClientIpLayer::new(TrustedProxies::parse(PROXIES).unwrap());
            let mut req = Request::new(Body::empty());
            req.extensions_mut()
                .insert(ConnectInfo(SocketAddr::new(addr.parse().unwrap(), 4242)));
            layer.layer(inner).oneshot(req).await.unwrap()
        }

        let trusted = peer_of("::ffff:10.0.0.1").await;
        let untrusted = peer_of("203.0.113.5").await;

        assert_eq!(
            trusted,
            Peer {
                ip: "10.0.0.1".parse().unwrap(),
                trusted_proxy: true
            }
        );
        assert!(!untrusted.trusted_proxy);
    }

    #[tokio::test]
    async fn without_connect_info_nothing_is_inserted() {
        let mut req = Request::new(Body::empty());
        req.headers_mut()
            .insert(X_FORWARDED_FOR, HeaderValue::from_static("1.2.3.4"));

        assert_eq!(send(req).await, "none");
    }

    #[tokio::test]
    async fn extractor_without_the_layer_is_a_500_problem() {
        let app = Router::new().route("/", get(|ip: ClientIp| async move { ip.to_string() }));

        let response = app.oneshot(Request::new(Body::empty())).await.unwrap();

        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(response.headers()[header::CONTENT_TYPE], PROBLEM_JSON);
    }

    #[test]
    fn trusted_proxies_parse_cidrs_and_bare_addresses() {
        let proxies =
            TrustedProxies::parse(" 10.0.0.0/8,192.0.2.1\n2001:db8::1 ,, fd00::/8 ").unwrap();

        assert!(proxies.contains("10.200.0.1".parse().unwrap()));
        assert!(proxies.contains("192.0.2.1".parse().unwrap()));
        assert!(!proxies.contains("192.0.2.2".parse().unwrap()));
        assert!(proxies.contains("2001:db8::1".parse().unwrap()));
        assert!(!proxies.contains("2001:db8::2".parse().unwrap()));
        assert!(proxies.contains("fd12::1".parse().unwrap()));
        assert!(proxies.contains("::ffff:10.1.1.1".parse().unwrap()));
    }

    #[test]
    fn trusted_proxies_refuse_garbage() {
        for bad in ["10.0.0.0/33", "example.com", "10.0.0", "*"] {
            let err = TrustedProxies::parse(bad).unwrap_err();

            assert!(
                matches!(&err, Error::InvalidProxy(entry) if entry == bad),
                "{err}"
            );
        }
    }

    #[test]
    fn empty_and_default_trusted_proxies_trust_nobody() {
        let empty = TrustedProxies::parse("  ").unwrap();

        assert!(empty.is_empty());
        assert!(TrustedProxies::default().is_empty());
        assert!(!TrustedProxies::default().contains("127.0.0.1".parse().unwrap()));
    }
}
