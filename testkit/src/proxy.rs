//! A fault-injecting TCP proxy for the chaos tests and the soak driver.
//!
//! It listens on a loopback port and forwards every connection to one
//! upstream address. On command it can:
//!
//! * add latency to every chunk forwarded, in both directions
//!   ([`Proxy::set_latency`]);
//! * stall: stop forwarding bytes (held, not lost) until unstalled
//!   ([`Proxy::stall`] / [`Proxy::unstall`]); new connections are still
//!   accepted and stall too;
//! * cut every open connection at once ([`Proxy::cut_all`]);
//! * refuse new connections: the listening socket is closed, so a connect
//!   gets `ECONNREFUSED`, while open connections keep working
//!   ([`Proxy::refuse`] / [`Proxy::accept`]).
//!
//! Loopback only. Everything stops when the [`Proxy`] is dropped.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// What the proxy is told to do; every connection watches it.
#[derive(Debug, Clone, Default)]
struct Faults {
    latency: Duration,
    stalled: bool,
    refusing: bool,
    /// Bumped by `cut_all`: connections opened before the bump close.
    cut_generation: u64,
    shutdown: bool,
}

#[derive(Debug, Default)]
struct Counters {
    /// Connections currently forwarded.
    open: AtomicUsize,
    accepted: AtomicU64,
    cut: AtomicU64,
    upstream_failures: AtomicU64,
}

/// A running proxy. See the module documentation.
pub struct Proxy {
    addr: SocketAddr,
    faults: watch::Sender<Faults>,
    /// Whether the accept loop holds a listening socket.
    listening: watch::Receiver<bool>,
    counters: Arc<Counters>,
    task: JoinHandle<()>,
}

impl Proxy {
    /// Starts a proxy on a free loopback port forwarding to `upstream`
    /// (which must be a loopback address).
    pub async fn start(upstream: SocketAddr) -> io::Result<Proxy> {
        assert!(upstream.ip().is_loopback(), "the proxy is loopback only");
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (faults, rx) = watch::channel(Faults::default());
        let (listening_tx, listening) = watch::channel(true);
        let counters = Arc::new(Counters::default());
        let task = tokio::spawn(accept_loop(
            Some(listener),
            addr,
            upstream,
            rx,
            listening_tx,
            counters.clone(),
        ));
        Ok(Proxy {
            addr,
            faults,
            listening,
            counters,
            task,
        })
    }

    /// The address clients connect to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The port of [`addr`](Self::addr).
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Delays every forwarded chunk by `latency` (zero: none).
    pub fn set_latency(&self, latency: Duration) {
        self.faults.send_modify(|f| f.latency = latency);
    }

    /// Stops forwarding bytes in both directions on every connection, open
    /// or new, until [`unstall`](Self::unstall).
    pub fn stall(&self) {
        self.faults.send_modify(|f| f.stalled = true);
    }

    /// Forwards bytes again after [`stall`](Self::stall); the held bytes
    /// go through.
    pub fn unstall(&self) {
        self.faults.send_modify(|f| f.stalled = false);
    }

    /// Closes every open connection now (both sides see the socket close).
    pub fn cut_all(&self) {
        self.faults.send_modify(|f| f.cut_generation += 1);
    }

    /// Closes the listening socket: new connections are refused, open ones
    /// keep working. It returns once the socket is closed, so every connect
    /// that starts after it gets `ECONNREFUSED` (one the kernel accepted
    /// while it ran is closed at once, never forwarded).
    pub async fn refuse(&self) {
        self.faults.send_modify(|f| f.refusing = true);
        self.wait_listening(false).await;
    }

    /// Listens again on the same port after [`refuse`](Self::refuse);
    /// returns once it does.
    pub async fn accept(&self) {
        self.faults.send_modify(|f| f.refusing = false);
        self.wait_listening(true).await;
    }

    /// Waits until the accept loop has (or has not) a listening socket.
    ///
    /// # Panics
    ///
    /// If that takes over 5 s (the port could not be bound again).
    async fn wait_listening(&self, listening: bool) {
        let mut state = self.listening.clone();
        let waited = tokio::time::timeout(
            Duration::from_secs(5),
            state.wait_for(|&now| now == listening),
        )
        .await;
        assert!(
            waited.is_ok(),
            "proxy: the listening socket did not {} within 5 s",
            if listening { "open again" } else { "close" }
        );
    }

    /// Connections currently forwarded.
    pub fn open_connections(&self) -> usize {
        self.counters.open.load(Ordering::SeqCst)
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> u64 {
        self.counters.accepted.load(Ordering::SeqCst)
    }

    /// Connections closed by [`cut_all`](Self::cut_all) so far.
    pub fn cut_count(&self) -> u64 {
        self.counters.cut.load(Ordering::SeqCst)
    }

    /// Waits (bounded) until no connection is forwarded any more.
    pub async fn wait_idle(&self, within: Duration) -> bool {
        let end = tokio::time::Instant::now() + within;
        while self.open_connections() > 0 {
            if tokio::time::Instant::now() >= end {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        true
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.faults.send_modify(|f| f.shutdown = true);
        self.task.abort();
    }
}

async fn accept_loop(
    mut listener: Option<TcpListener>,
    addr: SocketAddr,
    upstream: SocketAddr,
    mut faults: watch::Receiver<Faults>,
    listening: watch::Sender<bool>,
    counters: Arc<Counters>,
) {
    loop {
        let state = faults.borrow_and_update().clone();
        if state.shutdown {
            return;
        }
        if state.refusing {
            // Dropping the listener makes connects fail with ECONNREFUSED.
            listener = None;
        } else if listener.is_none() {
            // Rebind the same port (SO_REUSEADDR is set by tokio on Unix);
            // retry briefly if the kernel still holds it.
            for _ in 0..100 {
                match TcpListener::bind(addr).await {
                    Ok(l) => {
                        listener = Some(l);
                        break;
                    }
                    Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
                }
            }
        }
        listening.send_if_modified(|now| {
            let changed = *now != listener.is_some();
            *now = listener.is_some();
            changed
        });
        match &listener {
            Some(l) => {
                tokio::select! {
                    accepted = l.accept() => {
                        // A connection that arrived after `refuse` was
                        // called, before this task dropped the listener, is
                        // closed at once, never forwarded.
                        if faults.borrow().refusing {
                            continue;
                        }
                        if let Ok((client, _)) = accepted {
                            counters.accepted.fetch_add(1, Ordering::SeqCst);
                            tokio::spawn(serve(client, upstream, faults.clone(), counters.clone()));
                        }
                    }
                    changed = faults.changed() => {
                        if changed.is_err() {
                            return;
                        }
                    }
                }
            }
            None => {
                if faults.changed().await.is_err() {
                    return;
                }
            }
        }
    }
}

/// Decrements the open-connection gauge however `serve` ends.
struct OpenGuard(Arc<Counters>);

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn serve(
    client: TcpStream,
    upstream: SocketAddr,
    mut faults: watch::Receiver<Faults>,
    counters: Arc<Counters>,
) {
    counters.open.fetch_add(1, Ordering::SeqCst);
    let _open = OpenGuard(counters.clone());
    let generation = faults.borrow_and_update().cut_generation;
    let mut cut = faults.clone();
    let server = tokio::select! {
        s = TcpStream::connect(upstream) => match s {
            Ok(s) => s,
            Err(_) => {
                counters.upstream_failures.fetch_add(1, Ordering::SeqCst);
                return;
            }
        },
        _ = wait_cut(&mut cut, generation) => {
            counters.cut.fetch_add(1, Ordering::SeqCst);
            return;
        }
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    tokio::select! {
        _ = pump(client_read, server_write, faults.clone()) => {}
        _ = pump(server_read, client_write, faults.clone()) => {}
        _ = wait_cut(&mut faults, generation) => {
            counters.cut.fetch_add(1, Ordering::SeqCst);
        }
    }
    // Both halves of both sockets drop here: each side sees the close.
}

/// Returns when `cut_all` was called after `generation`, or the proxy stops.
async fn wait_cut(faults: &mut watch::Receiver<Faults>, generation: u64) {
    loop {
        {
            let f = faults.borrow_and_update();
            if f.cut_generation != generation || f.shutdown {
                return;
            }
        }
        if faults.changed().await.is_err() {
            return;
        }
    }
}

/// Copies `from` to `to`, holding bytes while stalled and delaying each
/// chunk by the latency. Ends at EOF or on an error.
async fn pump(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    mut faults: watch::Receiver<Faults>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let latency = loop {
            let f = faults.borrow_and_update().clone();
            if f.shutdown {
                return;
            }
            if !f.stalled {
                break f.latency;
            }
            if faults.changed().await.is_err() {
                return;
            }
        };
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}
