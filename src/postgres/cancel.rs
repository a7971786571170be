//! Cancel on drop: a query future dropped before it completed gets its
//! statement cancelled, and the connection is not used again until the
//! server has finished with it.
//!
//! # How
//!
//! Each guarded method of [`Client`](super::Client) and
//! [`Transaction`](super::Transaction) runs its `tokio_postgres` future
//! under an [`OpGuard`]. When the future is dropped mid-flight, the guard
//! (synchronously, in `Drop`):
//!
//! 1. queues a *probe* on the connection: an empty simple query, whose
//!    answer comes back only after the server has finished (or abandoned)
//!    everything queued before it, the dropped statement included;
//! 2. spawns a *drain* task that sends a cancel request for the backend and
//!    waits for the probe's answer, sending the request again (50 ms, then
//!    doubling to 1 s) while the probe is not back, as several dropped
//!    statements may be queued; all within the manager's recycle timeout.
//!    No request is sent while another guarded call of the connection is
//!    in flight (a holder sharing the client between futures): it could be
//!    the statement stopped. The drain then just waits.
//!
//! Until every drain of a connection has finished, the guarded methods wait
//! before sending anything, and `PgManager::recycle` waits before handing the
//! connection out. A drain that fails marks the connection broken: it is
//! discarded when it comes back to the pool, or on its next checkout.
//!
//! # Why the cancel request must be confirmed
//!
//! A cancel request is a separate connection to the server that names the
//! backend; the server signals the backend, which cancels *whatever it is
//! running when the signal arrives*, and ignores it when idle.
//! `tokio_postgres`'s `CancelToken::cancel_query` returns as soon as the
//! request is written, before the server has signalled anyone. If the
//! dropped statement ends on its own in the meantime, the signal lands on
//! the *next* statement of the connection: in a test that issues a query
//! right after `cancel_query` returns, the query was cancelled 192 times out
//! of 200. libpq and pgjdbc wait for the server to close the cancel
//! connection, which it does only after signalling. The drain does the same
//! ([`EofOnShutdown`]): once the cancel is confirmed that way and the probe
//! has come back, no signal can still be on its way, so the connection is
//! clean whatever the dropped statement did.
//!
//! A cancel request goes the way its connection went: over TLS with the
//! manager's connector when the connection uses TLS (with `sslmode=prefer`
//! and a real connector, the server is asked once per connection, from
//! `pg_stat_ssl`), else over a plain socket of our own to the connection's
//! host. Where the confirmation is impossible (a TLS connection whose
//! server then declines TLS for the cancel request, or a plain connection
//! whose host cannot be told from the configuration) the cancel is sent
//! unconfirmed and the connection is discarded after its probe comes back,
//! so a stray signal can hit no one.

use std::any::TypeId;
use std::fmt;
use std::future::Future;
use std::io;
use std::path::PathBuf;
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll, Waker};
use std::time::Duration;

use futures_core::Stream;
use pin_project_lite::pin_project;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_postgres::config::{Host, SslMode};
use tokio_postgres::tls::{ChannelBinding, MakeTlsConnect, NoTlsStream, TlsConnect, TlsStream};
use tokio_postgres::{CancelToken, Config, NoTls, SimpleQueryStream, Socket};

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// How a cancel request went.
#[derive(Debug)]
pub(crate) enum CancelSent {
    /// The server closed the cancel connection: it has signalled the
    /// backend (or found nothing to signal).
    Confirmed,
    /// Sent, but the server's processing of it could not be observed.
    Unconfirmed,
    /// Nothing was sent (the cancel connection could not be opened).
    NotSent(io::Error),
    /// It failed after the connection was opened: it may have been sent.
    Failed(tokio_postgres::Error),
}

/// Sends the cancel request for one connection's backend.
pub(crate) type Canceller = Arc<dyn Fn(CancelToken) -> BoxFuture<CancelSent> + Send + Sync>;

/// Where a connection's backend listens, for a cancel request over a
/// socket of our own.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Target {
    Tcp(String, u16),
    #[cfg(unix)]
    Unix(PathBuf, u16),
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Tcp(host, port) if host.contains(':') => write!(f, "[{host}]:{port}"),
            Target::Tcp(host, port) => write!(f, "{host}:{port}"),
            #[cfg(unix)]
            Target::Unix(dir, port) => write!(f, "{}:{port}", dir.display()),
        }
    }
}

/// Which configured host a connection is on.
///
/// The cancel token knows (it keeps the address the connection used) but
/// does not say. Its `cancel_query` asks its TLS connector for a connector
/// for that host's name before it opens anything, so a connector that
/// notes the name and then fails tells us the name at no cost, and nothing
/// is sent. The name is then matched against the configuration.
pub(crate) async fn resolve_target(config: &Config, token: &CancelToken) -> Option<Target> {
    let seen = Arc::new(Mutex::new(None));
    let _ = token.cancel_query(NameSpy(seen.clone())).await;
    let name = lock(&seen).take()?;
    target_for(config, &name)
}

/// The host of `config` whose TLS name is `name` (`""` for a Unix socket
/// or a bare `hostaddr`), when exactly one host matches.
pub(crate) fn target_for(config: &Config, name: &str) -> Option<Target> {
    let hosts = config.get_hosts();
    let addrs = config.get_hostaddrs();
    let ports = config.get_ports();
    let count = hosts.len().max(addrs.len());
    let mut found: Option<Target> = None;
    for i in 0..count {
        let tls_name = match hosts.get(i) {
            Some(Host::Tcp(host)) => host.as_str(),
            _ => "",
        };
        if tls_name != name {
            continue;
        }
        let port = ports
            .get(i)
            .or_else(|| ports.first())
            .copied()
            .unwrap_or(5432);
        let target = match (addrs.get(i), hosts.get(i)) {
            (Some(addr), _) => Target::Tcp(addr.to_string(), port),
            (None, Some(Host::Tcp(host))) => Target::Tcp(host.clone(), port),
            #[cfg(unix)]
            (None, Some(Host::Unix(dir))) => Target::Unix(dir.clone(), port),
            (None, None) => continue,
        };
        match &found {
            Some(other) if *other != target => return None,
            _ => found = Some(target),
        }
    }
    found
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A TLS connector that records the host name it is asked for and fails.
struct NameSpy(Arc<Mutex<Option<String>>>);

#[derive(Debug)]
struct SpyError;

impl fmt::Display for SpyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("host name noted; nothing sent")
    }
}

impl std::error::Error for SpyError {}

impl MakeTlsConnect<Socket> for NameSpy {
    type Stream = NoTlsStream;
    type TlsConnect = NoTls;
    type Error = SpyError;

    fn make_tls_connect(&mut self, domain: &str) -> Result<NoTls, SpyError> {
        *lock(&self.0) = Some(domain.to_owned());
        Err(SpyError)
    }
}

/// Whether a connection made with `config` and a connector of type `T`
/// may or may not use TLS, so that only the server can tell
/// (`sslmode=prefer` with a real connector).
pub(crate) fn tls_undecided<T: 'static>(config: &Config) -> bool {
    TypeId::of::<T>() != TypeId::of::<NoTls>() && config.get_ssl_mode() == SslMode::Prefer
}

/// How cancel requests reach a connection's backend; `tls_in_use` is what
/// the server said when [`tls_undecided`].
pub(crate) fn canceller<T>(
    tls: T,
    config: &Config,
    target: Option<Target>,
    tls_in_use: Option<bool>,
) -> Canceller
where
    T: MakeTlsConnect<Socket> + Clone + Send + Sync + 'static,
    T::Stream: Send + Sync + 'static,
    T::TlsConnect: Send + Sync,
    <T::TlsConnect as TlsConnect<Socket>>::Future: Send,
{
    let plain = TypeId::of::<T>() == TypeId::of::<NoTls>()
        || config.get_ssl_mode() == SslMode::Disable
        || tls_in_use == Some(false);
    let timeout = config.get_connect_timeout().copied();
    Arc::new(move |token: CancelToken| -> BoxFuture<CancelSent> {
        match (plain, &target) {
            (true, Some(target)) => Box::pin(cancel_plain(token, target.clone(), timeout)),
            (true, None) => {
                let tls = tls.clone();
                Box::pin(async move {
                    match token.cancel_query(tls).await {
                        Ok(()) => CancelSent::Unconfirmed,
                        Err(e) => CancelSent::Failed(e),
                    }
                })
            }
            (false, _) => {
                let engaged = Arc::new(AtomicBool::new(false));
                let tls = ConfirmTls {
                    inner: tls.clone(),
                    engaged: engaged.clone(),
                };
                Box::pin(async move {
                    match token.cancel_query(tls).await {
                        Ok(()) if engaged.load(Ordering::Acquire) => CancelSent::Confirmed,
                        Ok(()) => CancelSent::Unconfirmed,
                        Err(e) => CancelSent::Failed(e),
                    }
                })
            }
        }
    })
}

/// A cancel request without TLS over a socket of our own, confirmed by the
/// server closing it.
async fn cancel_plain(token: CancelToken, target: Target, timeout: Option<Duration>) -> CancelSent {
    let connect = async {
        match &target {
            Target::Tcp(host, port) => tokio::net::TcpStream::connect((host.as_str(), *port))
                .await
                .map(PlainStream::Tcp),
            #[cfg(unix)]
            Target::Unix(dir, port) => {
                tokio::net::UnixStream::connect(dir.join(format!(".s.PGSQL.{port}")))
                    .await
                    .map(PlainStream::Unix)
            }
        }
    };
    let stream = match timeout {
        Some(limit) => match tokio::time::timeout(limit, connect).await {
            Ok(result) => result,
            Err(_) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "connecting to send a cancel request timed out",
            )),
        },
        None => connect.await,
    };
    let stream = match stream {
        Ok(stream) => stream,
        Err(e) => return CancelSent::NotSent(e),
    };
    match token
        .cancel_query_raw(EofOnShutdown::new(stream), NoTls)
        .await
    {
        Ok(()) => CancelSent::Confirmed,
        Err(e) => CancelSent::Failed(e),
    }
}

/// A plain socket to the server.
enum PlainStream {
    Tcp(tokio::net::TcpStream),
    #[cfg(unix)]
    Unix(tokio::net::UnixStream),
}

impl AsyncRead for PlainStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            PlainStream::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            #[cfg(unix)]
            PlainStream::Unix(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for PlainStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            PlainStream::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            #[cfg(unix)]
            PlainStream::Unix(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            PlainStream::Tcp(s) => Pin::new(s).poll_flush(cx),
            #[cfg(unix)]
            PlainStream::Unix(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            PlainStream::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            #[cfg(unix)]
            PlainStream::Unix(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

/// A stream whose `poll_shutdown` also waits until the peer closes its
/// side: the server closes a cancel connection only after it has
/// signalled the backend.
pub(crate) struct EofOnShutdown<S> {
    inner: S,
    shut: bool,
}

impl<S> EofOnShutdown<S> {
    fn new(inner: S) -> Self {
        Self { inner, shut: false }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for EofOnShutdown<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for EofOnShutdown<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if !self.shut {
            ready!(Pin::new(&mut self.inner).poll_shutdown(cx))?;
            self.shut = true;
        }
        let mut scratch = [0u8; 64];
        loop {
            let mut buf = ReadBuf::new(&mut scratch);
            match ready!(Pin::new(&mut self.inner).poll_read(cx, &mut buf)) {
                Ok(()) if buf.filled().is_empty() => return Poll::Ready(Ok(())),
                Ok(()) => {}
                // A reset or a TLS stream cut without close_notify: the
                // server has closed all the same.
                Err(_) => return Poll::Ready(Ok(())),
            }
        }
    }
}

impl<S: TlsStream + Unpin> TlsStream for EofOnShutdown<S> {
    fn channel_binding(&self) -> ChannelBinding {
        self.inner.channel_binding()
    }
}

/// The manager's TLS connector, with streams that confirm a cancel
/// request, and a flag set when TLS was actually negotiated.
struct ConfirmTls<T> {
    inner: T,
    engaged: Arc<AtomicBool>,
}

impl<T: MakeTlsConnect<Socket>> MakeTlsConnect<Socket> for ConfirmTls<T> {
    type Stream = EofOnShutdown<T::Stream>;
    type TlsConnect = ConfirmConnect<T::TlsConnect>;
    type Error = T::Error;

    fn make_tls_connect(&mut self, domain: &str) -> Result<Self::TlsConnect, T::Error> {
        Ok(ConfirmConnect {
            inner: self.inner.make_tls_connect(domain)?,
            engaged: self.engaged.clone(),
        })
    }
}

struct ConfirmConnect<C> {
    inner: C,
    engaged: Arc<AtomicBool>,
}

impl<C: TlsConnect<Socket>> TlsConnect<Socket> for ConfirmConnect<C> {
    type Stream = EofOnShutdown<C::Stream>;
    type Error = C::Error;
    type Future = ConfirmFuture<C::Future>;

    fn connect(self, stream: Socket) -> Self::Future {
        ConfirmFuture {
            inner: self.inner.connect(stream),
            engaged: self.engaged,
        }
    }
}

pin_project! {
    struct ConfirmFuture<F> {
        #[pin]
        inner: F,
        engaged: Arc<AtomicBool>,
    }
}

impl<F, S, E> Future for ConfirmFuture<F>
where
    F: Future<Output = Result<S, E>>,
{
    type Output = Result<EofOnShutdown<S>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let stream = ready!(this.inner.poll(cx))?;
        this.engaged.store(true, Ordering::Release);
        Poll::Ready(Ok(EofOnShutdown::new(stream)))
    }
}

/// Why a connection was found unusable after a dropped query.
#[derive(Debug)]
pub(crate) enum Unclean {
    /// The probe failed: the connection is gone or out of step.
    Probe(tokio_postgres::Error),
    /// The cancel request may have been sent, unconfirmed.
    Unconfirmed,
    /// The cancel request failed after it may have been sent.
    Cancel(tokio_postgres::Error),
    /// The drain did not finish within the recycle timeout.
    Timeout(Duration),
    /// The probe could not even be queued.
    NoProbe,
}

/// How long a drain waits for its probe before it sends the cancel request
/// again, doubling up to [`LAST_RESEND`].
const FIRST_RESEND: Duration = Duration::from_millis(50);
const LAST_RESEND: Duration = Duration::from_secs(1);

/// Reads the probe's answer to its end: `Ok` once the server has processed
/// it, which it does only after everything queued before it.
async fn finish_probe(
    probe: &mut Pin<Box<SimpleQueryStream>>,
) -> Result<(), tokio_postgres::Error> {
    loop {
        match std::future::poll_fn(|cx| probe.as_mut().poll_next(cx)).await {
            None => return Ok(()),
            Some(Ok(_)) => {}
            // The server answered with an error (the probe was cancelled,
            // or ran in an aborted transaction): it has processed it.
            Some(Err(e)) if e.as_db_error().is_some() => return Ok(()),
            Some(Err(e)) => return Err(e),
        }
    }
}

/// A dropped operation's drain, not started yet (no runtime at the drop).
struct Drain {
    probe: Pin<Box<SimpleQueryStream>>,
    token: CancelToken,
}

#[derive(Default)]
struct State {
    /// Drains spawned and not finished.
    running: usize,
    /// Drains waiting for a runtime.
    deferred: Vec<Drain>,
    /// Why the connection is to be discarded, once known.
    unclean: Option<Arc<Unclean>>,
}

/// Per-connection cancel-on-drop state, shared with the drain tasks.
pub(crate) struct Hygiene {
    /// A drain is running or deferred (read without the lock on every
    /// guarded call).
    dirty: AtomicBool,
    /// The connection is to be discarded.
    broken: AtomicBool,
    /// Guarded calls in flight, not dropped.
    live: AtomicUsize,
    state: Mutex<State>,
    done: tokio::sync::Notify,
    /// `None` when cancel on drop is off: drains only wait.
    canceller: Option<Canceller>,
    bound: Duration,
}

impl fmt::Debug for Hygiene {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hygiene")
            .field("dirty", &self.dirty.load(Ordering::Relaxed))
            .field("broken", &self.broken.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl Hygiene {
    pub(crate) fn new(canceller: Option<Canceller>, bound: Duration) -> Arc<Self> {
        Arc::new(Self {
            dirty: AtomicBool::new(false),
            broken: AtomicBool::new(false),
            live: AtomicUsize::new(0),
            state: Mutex::new(State::default()),
            done: tokio::sync::Notify::new(),
            canceller,
            bound,
        })
    }

    /// The connection must not be reused.
    pub(crate) fn is_broken(&self) -> bool {
        self.broken.load(Ordering::Acquire)
    }

    /// A dropped query is still being cleared.
    pub(crate) fn is_dirty(&self) -> bool {
        self.dirty.load(Ordering::Acquire)
    }

    /// Why the connection is broken, if it is.
    pub(crate) fn unclean(&self) -> Option<Arc<Unclean>> {
        lock(&self.state).unclean.clone()
    }

    fn mark_broken(&self, st: &mut State, why: Unclean) {
        if st.unclean.is_none() {
            st.unclean = Some(Arc::new(why));
        }
        self.broken.store(true, Ordering::Release);
    }

    /// Waits until every drain of this connection has finished (bounded by
    /// the recycle timeout); `Err` when the connection is to be discarded.
    pub(crate) async fn settle(self: &Arc<Self>) -> Result<(), Arc<Unclean>> {
        // A connection already known broken is not waited for again.
        if self.is_dirty() && !self.is_broken() {
            self.settle_slow().await;
        }
        match self.is_broken() {
            false => Ok(()),
            true => Err(self.unclean().unwrap_or_else(|| Arc::new(Unclean::NoProbe))),
        }
    }

    async fn settle_slow(self: &Arc<Self>) {
        let wait = async {
            loop {
                let mut notified = pin!(self.done.notified());
                notified.as_mut().enable();
                {
                    let mut st = lock(&self.state);
                    let deferred = std::mem::take(&mut st.deferred);
                    st.running += deferred.len();
                    for drain in deferred {
                        tokio::spawn(self.clone().run(drain));
                    }
                    if st.running == 0 {
                        self.dirty.store(false, Ordering::Release);
                        return;
                    }
                }
                notified.await;
            }
        };
        if tokio::time::timeout(self.bound, wait).await.is_err() {
            let mut st = lock(&self.state);
            self.mark_broken(&mut st, Unclean::Timeout(self.bound));
        }
    }

    /// Called by a guard whose operation was dropped mid-flight.
    fn abandoned(self: &Arc<Self>, client: &tokio_postgres::Client) {
        if client.is_closed() {
            return;
        }
        let probe = {
            let mut queued = pin!(client.simple_query_raw(""));
            match queued
                .as_mut()
                .poll(&mut Context::from_waker(Waker::noop()))
            {
                Poll::Ready(Ok(stream)) => Some(Box::pin(stream)),
                _ => None,
            }
        };
        let mut st = lock(&self.state);
        let Some(probe) = probe else {
            self.mark_broken(&mut st, Unclean::NoProbe);
            return;
        };
        let drain = Drain {
            probe,
            token: client.cancel_token(),
        };
        self.dirty.store(true, Ordering::Release);
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                st.running += 1;
                drop(st);
                runtime.spawn(self.clone().run(drain));
            }
            Err(_) => st.deferred.push(drain),
        }
    }

    /// One drain: cancel, then wait for the probe.
    async fn run(self: Arc<Self>, drain: Drain) {
        let Drain { mut probe, token } = drain;
        let work = async {
            // A cancel request stops whatever the backend runs when it
            // arrives; several dropped statements may be queued, so it is
            // sent again until the probe comes back. Each is confirmed
            // before the next step, so none can outlive the drain. None is
            // sent while a call of the holder is in flight on the
            // connection: it could be the one stopped.
            let mut wait = FIRST_RESEND;
            let mut doubt: Option<Unclean> = None;
            loop {
                let canceller = self.canceller.as_ref();
                if let Some(canceller) =
                    canceller.filter(|_| self.live.load(Ordering::Acquire) == 0)
                {
                    match canceller(token.clone()).await {
                        CancelSent::Confirmed => {}
                        CancelSent::NotSent(e) => tracing::debug!(
                            target: "quickslot::postgres",
                            error = %e,
                            "the cancel request for a dropped query could not be sent"
                        ),
                        CancelSent::Unconfirmed => {
                            doubt.get_or_insert(Unclean::Unconfirmed);
                        }
                        CancelSent::Failed(e) => {
                            doubt.get_or_insert(Unclean::Cancel(e));
                        }
                    }
                }
                match tokio::time::timeout(wait, finish_probe(&mut probe)).await {
                    Ok(Ok(())) => break doubt.map_or(Ok(()), Err),
                    Ok(Err(e)) => break Err(Unclean::Probe(e)),
                    Err(_) => wait = (wait * 2).min(LAST_RESEND),
                }
            }
        };
        let outcome = match tokio::time::timeout(self.bound, work).await {
            Ok(outcome) => outcome,
            Err(_) => Err(Unclean::Timeout(self.bound)),
        };
        let mut st = lock(&self.state);
        st.running -= 1;
        if let Err(why) = outcome {
            tracing::debug!(
                target: "quickslot::postgres",
                reason = ?why,
                "connection discarded after a dropped query"
            );
            self.mark_broken(&mut st, why);
        }
        drop(st);
        self.done.notify_waiters();
    }
}

/// Runs `fut` (a `tokio_postgres` call on `client`) so that dropping it
/// before it completes cancels the statement (see the module
/// documentation); first waits for any earlier dropped call to be cleared.
pub(crate) async fn guarded<F: Future>(
    hygiene: &Arc<Hygiene>,
    client: &tokio_postgres::Client,
    fut: F,
) -> F::Output {
    // A connection found broken is still used by its holder (a
    // `tokio_postgres::Error` cannot be made here); the pool discards it
    // when it comes back.
    let _ = hygiene.settle().await;
    hygiene.live.fetch_add(1, Ordering::AcqRel);
    let mut guard = OpGuard {
        hygiene,
        client,
        armed: true,
    };
    let out = fut.await;
    guard.armed = false;
    out
}

/// Marks a call in flight; see [`guarded`].
struct OpGuard<'a> {
    hygiene: &'a Arc<Hygiene>,
    client: &'a tokio_postgres::Client,
    armed: bool,
}

impl Drop for OpGuard<'_> {
    fn drop(&mut self) {
        self.hygiene.live.fetch_sub(1, Ordering::AcqRel);
        if self.armed {
            self.hygiene.abandoned(self.client);
        }
    }
}
