//! The back channel: the HTTP requests Gatehouse itself makes to a service its settings name
//! (the access proxy's signing keys, `identity::upstream`; an OpenID provider's discovery
//! document, keys and token endpoint, `identity::oidc`, which hands this client to the
//! `openidconnect` crate as its HTTP client). One small client over hyper and rustls, both
//! already in the tree through the database, mail and Redis clients, with every rule for such
//! a request in this one place.
//!
//! Written here rather than taken from a general HTTP client because each of those rules would
//! otherwise be a default to turn off (redirects, proxy variables, unbounded bodies), and a
//! second TLS stack would join the tree.
//!
//! # Security
//! - **https only in production.** An `http://` URL is refused unless the client was made for
//!   development ([`Outbound::new`]); certificates are checked against the Mozilla roots
//!   (`webpki-roots`) and the host name, whatever the operating system trusts.
//! - **Timeouts.** Connecting (name lookup included) has [`CONNECT_TIMEOUT`], and the whole
//!   exchange [`TOTAL_TIMEOUT`]: a slow or silent server never holds a request of ours longer.
//! - **No redirects.** A 3xx answer is an error: the URL the operator configured is the one
//!   asked, never one the answer names.
//! - **No proxy.** `HTTP_PROXY`, `HTTPS_PROXY`, `ALL_PROXY` and `NO_PROXY` are never read: the
//!   connection goes straight to the named host, so an environment variable cannot route the
//!   keys Gatehouse trusts through someone else.
//! - **Bounded answers.** A body larger than [`MAX_BODY`] is refused before it is all read.
//! - Only URLs from the settings (and the endpoints a configured OpenID provider's discovery
//!   document names) are fetched, never one a request names (no SSRF surface).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full, Limited};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_rustls::rustls::{self, ClientConfig, RootCertStore};
use url::{Host, Position, Url};

/// Longest time to reach the server (name lookup and TCP connection).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// Longest time for the whole exchange, connection included.
pub const TOTAL_TIMEOUT: Duration = Duration::from_secs(5);

/// Largest answer read, in bytes.
pub const MAX_BODY: usize = 256 * 1024;

/// Why a back-channel request gave nothing usable. The messages name the URL's host at most.
#[derive(Debug, thiserror::Error)]
pub enum OutboundError {
    /// The URL is not `https://` (or `http://` in development) with a host.
    #[error("`{0}` cannot be fetched: only https:// URLs with a host are (http:// in development)")]
    Refused(String),
    /// Connecting, the TLS handshake or HTTP failed.
    #[error("{host}: {reason}")]
    Failed {
        /// The host asked.
        host: String,
        /// What failed.
        reason: String,
    },
    /// The exchange took longer than its timeout.
    #[error("{0}: no answer within the timeout")]
    Timeout(String),
    /// The server answered with a redirect, which is never followed.
    #[error("{host}: answered {status}, a redirect, which is not followed")]
    Redirect {
        /// The host asked.
        host: String,
        /// The status.
        status: u16,
    },
    /// The server answered with another status than 200.
    #[error("{host}: answered {status}")]
    Status {
        /// The host asked.
        host: String,
        /// The status.
        status: u16,
    },
    /// The answer was longer than [`MAX_BODY`].
    #[error("{0}: the answer is larger than {MAX_BODY} bytes")]
    TooLarge(String),
    /// The answer is not the JSON expected.
    #[error("{host}: the answer is not the JSON expected: {reason}")]
    Json {
        /// The host asked.
        host: String,
        /// The parser's message.
        reason: String,
    },
}

/// The back-channel client. Cheap to clone.
#[derive(Clone)]
pub struct Outbound {
    allow_http: bool,
    connect_timeout: Duration,
    total_timeout: Duration,
    tls: TlsConnector,
}

impl std::fmt::Debug for Outbound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbound")
            .field("allow_http", &self.allow_http)
            .field("connect_timeout", &self.connect_timeout)
            .field("total_timeout", &self.total_timeout)
            .finish_non_exhaustive()
    }
}

impl Outbound {
    /// A client; `allow_http` (development only) also lets it fetch `http://` URLs.
    pub fn new(allow_http: bool) -> Self {
        let mut roots = RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("ring supports the default TLS versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Self {
            allow_http,
            connect_timeout: CONNECT_TIMEOUT,
            total_timeout: TOTAL_TIMEOUT,
            tls: TlsConnector::from(Arc::new(config)),
        }
    }

    /// The same client with other timeouts (tests).
    pub fn with_timeouts(mut self, connect: Duration, total: Duration) -> Self {
        self.connect_timeout = connect;
        self.total_timeout = total;
        self
    }

    /// `GET url`, expecting `200` and a JSON body of type `T`.
    pub async fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        url: &Url,
    ) -> Result<T, OutboundError> {
        let request = http::Request::get(url.as_str())
            .header(http::header::ACCEPT, "application/json")
            .body(Vec::new())
            .map_err(|_| OutboundError::Refused(url.as_str().to_owned()))?;
        let response = self.send(request).await?;
        let host = url.host_str().unwrap_or_default().to_owned();
        if response.status() != http::StatusCode::OK {
            return Err(OutboundError::Status {
                host,
                status: response.status().as_u16(),
            });
        }
        serde_json::from_slice(response.body()).map_err(|e| OutboundError::Json {
            host,
            reason: e.to_string(),
        })
    }

    /// Sends `request` (its URI absolute) under every rule of this module, and returns the
    /// answer whatever its status (a provider's error is the caller's to read), except a
    /// redirect, which is an error. The OpenID Connect client sends its requests through here
    /// (`identity::oidc`).
    pub async fn send(
        &self,
        request: http::Request<Vec<u8>>,
    ) -> Result<http::Response<Vec<u8>>, OutboundError> {
        let url = Url::parse(&request.uri().to_string())
            .map_err(|_| OutboundError::Refused(request.uri().to_string()))?;
        let host = url.host_str().unwrap_or_default().to_owned();
        tokio::time::timeout(self.total_timeout, self.send_within(&url, request))
            .await
            .map_err(|_| OutboundError::Timeout(host))?
    }

    async fn send_within(
        &self,
        url: &Url,
        request: http::Request<Vec<u8>>,
    ) -> Result<http::Response<Vec<u8>>, OutboundError> {
        let refused = || OutboundError::Refused(url.as_str().to_owned());
        let secure = match url.scheme() {
            "https" => true,
            "http" if self.allow_http => false,
            _ => return Err(refused()),
        };
        let host = match url.host().ok_or_else(refused)? {
            Host::Domain(name) => name.to_owned(),
            Host::Ipv4(ip) => ip.to_string(),
            Host::Ipv6(ip) => ip.to_string(),
        };
        let port = url.port_or_known_default().ok_or_else(refused)?;
        let failed = |reason: String| OutboundError::Failed {
            host: host.clone(),
            reason,
        };
        // Straight to the host: no proxy variable is consulted (see the module's Security).
        let tcp = tokio::time::timeout(
            self.connect_timeout,
            TcpStream::connect((host.as_str(), port)),
        )
        .await
        .map_err(|_| OutboundError::Timeout(host.clone()))?
        .map_err(|e| failed(format!("cannot connect: {e}")))?;
        if secure {
            let name = ServerName::try_from(host.clone())
                .map_err(|_| failed("not a name TLS can check".into()))?;
            let tls = self
                .tls
                .connect(name, tcp)
                .await
                .map_err(|e| failed(format!("TLS: {e}")))?;
            self.exchange(TokioIo::new(tls), url, &host, request).await
        } else {
            self.exchange(TokioIo::new(tcp), url, &host, request).await
        }
    }

    /// One HTTP/1.1 request over `io`, its answer's body read up to [`MAX_BODY`].
    async fn exchange<IO>(
        &self,
        io: IO,
        url: &Url,
        host: &str,
        request: http::Request<Vec<u8>>,
    ) -> Result<http::Response<Vec<u8>>, OutboundError>
    where
        IO: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    {
        let failed = |reason: String| OutboundError::Failed {
            host: host.to_owned(),
            reason,
        };
        let (mut sender, connection) = hyper::client::conn::http1::handshake(io)
            .await
            .map_err(|e| failed(format!("HTTP: {e}")))?;
        // The connection is driven beside the request, never longer than the exchange may take.
        tokio::spawn(tokio::time::timeout(self.total_timeout, connection));
        let (mut parts, body) = request.into_parts();
        parts.uri = url[Position::BeforePath..Position::AfterQuery]
            .parse()
            .map_err(|e| failed(format!("HTTP: {e}")))?;
        let headers = &mut parts.headers;
        let authority =
            http::HeaderValue::from_str(&url[Position::BeforeHost..Position::AfterPort])
                .map_err(|e| failed(format!("HTTP: {e}")))?;
        headers.insert(http::header::HOST, authority);
        headers
            .entry(http::header::USER_AGENT)
            .or_insert(http::HeaderValue::from_static("gatehouse"));
        let request = http::Request::from_parts(parts, Full::new(Bytes::from(body)));
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| failed(format!("HTTP: {e}")))?;
        let status = response.status();
        if status.is_redirection() {
            return Err(OutboundError::Redirect {
                host: host.to_owned(),
                status: status.as_u16(),
            });
        }
        let too_large = response
            .headers()
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            .is_some_and(|n| n > MAX_BODY as u64);
        if too_large {
            return Err(OutboundError::TooLarge(host.to_owned()));
        }
        let (parts, body) = response.into_parts();
        let body = Limited::new(body, MAX_BODY)
            .collect()
            .await
            .map(|body| body.to_bytes())
            .map_err(|e| {
                if e.is::<http_body_util::LengthLimitError>() {
                    OutboundError::TooLarge(host.to_owned())
                } else {
                    failed(format!("HTTP: {e}"))
                }
            })?;
        Ok(http::Response::from_parts(parts, body.to_vec()))
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    use tokio::net::TcpListener;

    use super::*;

    /// A server on port 0 that answers every connection with `answer` (or nothing, when
    /// `None`); its URL.
    async fn server(answer: Option<&'static str>) -> Url {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let Ok((mut socket, _)) = listener.accept().await else {
                    return;
                };
                tokio::spawn(async move {
                    let mut buf = [0u8; 4096];
                    let _ = socket.read(&mut buf).await;
                    match answer {
                        Some(answer) => {
                            let _ = socket.write_all(answer.as_bytes()).await;
                        }
                        // Hold the connection open, answering nothing.
                        None => {
                            let _ = socket.read(&mut buf).await;
                        }
                    }
                });
            }
        });
        Url::parse(&format!("http://{addr}/certs")).unwrap()
    }

    fn dev() -> Outbound {
        Outbound::new(true)
    }

    #[tokio::test]
    async fn a_json_answer_is_read() {
        let url = server(Some(
            "HTTP/1.1 200 OK\r\ncontent-length: 11\r\n\r\n{\"keys\":[]}",
        ))
        .await;

        let got: serde_json::Value = dev().get_json(&url).await.unwrap();

        assert_eq!(got, serde_json::json!({"keys": []}));
    }

    #[tokio::test]
    async fn http_is_refused_outside_development() {
        let url = server(Some(
            "HTTP/1.1 200 OK\r\ncontent-length: 11\r\n\r\n{\"keys\":[]}",
        ))
        .await;

        let err = Outbound::new(false)
            .get_json::<serde_json::Value>(&url)
            .await
            .unwrap_err();

        assert!(matches!(err, OutboundError::Refused(_)), "{err}");
        let file = Url::parse("file:///etc/passwd").unwrap();
        assert!(matches!(
            dev().get_json::<serde_json::Value>(&file).await,
            Err(OutboundError::Refused(_))
        ));
    }

    #[tokio::test]
    async fn redirects_are_not_followed() {
        let url = server(Some(
            "HTTP/1.1 302 Found\r\nlocation: http://203.0.113.1/evil\r\ncontent-length: 0\r\n\r\n",
        ))
        .await;

        let err = dev().get_json::<serde_json::Value>(&url).await.unwrap_err();

        assert!(
            matches!(err, OutboundError::Redirect { status: 302, .. }),
            "{err}"
        );
    }

    #[tokio::test]
    async fn a_silent_server_times_out() {
        let url = server(None).await;
        let client = dev().with_timeouts(Duration::from_millis(200), Duration::from_millis(300));

        let err = client
            .get_json::<serde_json::Value>(&url)
            .await
            .unwrap_err();

        assert!(matches!(err, OutboundError::Timeout(_)), "{err}");
    }

    #[tokio::test]
    async fn an_oversized_answer_is_refused() {
        let url = server(Some(
            "HTTP/1.1 200 OK\r\ncontent-length: 99999999\r\n\r\n{}",
        ))
        .await;

        let err = dev().get_json::<serde_json::Value>(&url).await.unwrap_err();

        assert!(matches!(err, OutboundError::TooLarge(_)), "{err}");
    }
}
