//! Faults on demand: a private `redis-server` per test that can be stopped and started again on
//! the same port, and a TCP proxy in front of a server that can cut every connection, refuse new
//! ones or hold them unanswered (a partition that drops packets), delay what the server
//! answers, and restore them. Nothing outlives the value that started it.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use super::require::{Service, unavailable};

/// A `redis-server` of this test's own, keeping nothing on disk.
pub(crate) struct PrivateRedis {
    port: u16,
    child: Option<Child>,
}

impl PrivateRedis {
    /// Starts one on a free port; `None` (skipped, or failed when the run requires Redis) when
    /// `redis-server` is not installed.
    pub(crate) fn start(test: &str) -> Option<Self> {
        if Command::new("redis-server")
            .arg("--version")
            .output()
            .is_err()
        {
            unavailable(test, Service::Redis, "redis-server is not installed");
            return None;
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let mut redis = Self { port, child: None };
        redis.resume();
        Some(redis)
    }

    /// `redis://127.0.0.1:PORT`.
    pub(crate) fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kills the server (as a crash would: everything it held is gone).
    pub(crate) fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts a new, empty server on the same port and waits until it answers.
    pub(crate) fn resume(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server starts");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A TCP proxy to `target` that can be cut and restored.
pub(crate) struct FaultProxy {
    /// Where clients connect.
    pub(crate) addr: SocketAddr,
    open: Arc<AtomicBool>,
    /// While set, new connections are accepted and held, never answered.
    hanging: Arc<AtomicBool>,
    /// Milliseconds added before each chunk the server sends is passed on.
    latency_ms: Arc<AtomicU64>,
    /// Bumped at each cut: every live connection ends.
    cuts: watch::Sender<u64>,
    task: tokio::task::JoinHandle<()>,
}

impl FaultProxy {
    /// Listens on a free local port and forwards to `target`.
    pub(crate) async fn start(target: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("proxy binds");
        let addr = listener.local_addr().expect("proxy address");
        let open = Arc::new(AtomicBool::new(true));
        let hanging = Arc::new(AtomicBool::new(false));
        let latency_ms = Arc::new(AtomicU64::new(0));
        let (cuts, _) = watch::channel(0u64);
        let task = tokio::spawn({
            let open = open.clone();
            let hanging = hanging.clone();
            let latency_ms = latency_ms.clone();
            let cuts = cuts.clone();
            async move {
                let mut held = Vec::new();
                while let Ok((client, _)) = listener.accept().await {
                    if hanging.load(Ordering::SeqCst) {
                        held.push(client);
                        continue;
                    }
                    held.clear();
                    if !open.load(Ordering::SeqCst) {
                        // Refused: the connection closes at once.
                        drop(client);
                        continue;
                    }
                    let mut cut = cuts.subscribe();
                    let latency_ms = latency_ms.clone();
                    tokio::spawn(async move {
                        let Ok(server) = TcpStream::connect(target).await else {
                            return;
                        };
                        let (mut from_client, to_client) = client.into_split();
                        let (from_server, mut to_server) = server.into_split();
                        let upstream = tokio::io::copy(&mut from_client, &mut to_server);
                        let downstream = forward_late(from_server, to_client, latency_ms);
                        tokio::select! {
                            _ = upstream => {}
                            _ = downstream => {}
                            _ = cut.changed() => {}
                        }
                    });
                }
            }
        });
        Self {
            addr,
            open,
            hanging,
            latency_ms,
            cuts,
            task,
        }
    }

    /// Ends every live connection and refuses new ones, as an outage would.
    pub(crate) fn cut(&self) {
        self.open.store(false, Ordering::SeqCst);
        self.cuts.send_modify(|n| *n += 1);
    }

    /// Ends every live connection and holds new ones open without a byte of answer: the
    /// database is unreachable in the way that only a timeout notices.
    pub(crate) fn hang(&self) {
        self.hanging.store(true, Ordering::SeqCst);
        self.cuts.send_modify(|n| *n += 1);
    }

    /// Delays everything the server sends from now on by `latency` (zero: none).
    pub(crate) fn delay(&self, latency: Duration) {
        let ms = u64::try_from(latency.as_millis()).unwrap_or(u64::MAX);
        self.latency_ms.store(ms, Ordering::SeqCst);
    }

    /// Lets connections through again.
    pub(crate) fn restore(&self) {
        self.hanging.store(false, Ordering::SeqCst);
        self.open.store(true, Ordering::SeqCst);
    }
}

/// Passes what the server sends on to the client, each chunk after the proxy's current latency.
async fn forward_late(
    mut from_server: tokio::net::tcp::OwnedReadHalf,
    mut to_client: tokio::net::tcp::OwnedWriteHalf,
    latency_ms: Arc<AtomicU64>,
) -> std::io::Result<()> {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = from_server.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        let delay = latency_ms.load(Ordering::SeqCst);
        if delay > 0 {
            tokio::time::sleep(Duration::from_millis(delay)).await;
        }
        to_client.write_all(&buf[..n]).await?;
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.cut();
        self.task.abort();
    }
}
