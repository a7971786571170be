//! [`Listener`]: `LISTEN`/`NOTIFY` on a dedicated connection that comes
//! back by itself.

use std::fmt;
use std::future::{poll_fn, Future};
use std::pin::{pin, Pin};
use std::task::{Context, Poll};
use std::time::Duration;

use futures_core::Stream;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_postgres::tls::{MakeTlsConnect, TlsConnect};
use tokio_postgres::{AsyncMessage, Connection, Notification, Socket};

use super::manager::{describe_server, Chain, Opened, PgError, PgManager};

/// How a [`Listener`] reconnects and checks its connection.
///
/// ```
/// use std::time::Duration;
/// use quickslot::postgres::ListenerOptions;
///
/// let options = ListenerOptions::default()
///     .reconnect_backoff(Duration::from_millis(100), Duration::from_secs(5))
///     .ping_interval(Some(Duration::from_secs(10)));
/// assert_eq!(options.max_backoff(), Duration::from_secs(5));
/// ```
#[derive(Debug, Clone)]
pub struct ListenerOptions {
    min_backoff: Duration,
    max_backoff: Duration,
    ping_interval: Option<Duration>,
    timeout: Duration,
}

impl Default for ListenerOptions {
    /// The first reconnect at once, then after 50 ms doubling to at most
    /// 1 s (each with up to 20 % jitter); a ping every 30 s; 10 s for a
    /// connect or a ping to answer.
    fn default() -> Self {
        Self {
            min_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_secs(1),
            ping_interval: Some(Duration::from_secs(30)),
            timeout: Duration::from_secs(10),
        }
    }
}

impl ListenerOptions {
    /// The pause before the second reconnect attempt of an outage, doubled
    /// after each failed one up to `max` (the first attempt is immediate).
    ///
    /// # Panics
    ///
    /// When `min` is zero or larger than `max`.
    pub fn reconnect_backoff(mut self, min: Duration, max: Duration) -> Self {
        assert!(
            !min.is_zero() && min <= max,
            "reconnect_backoff needs 0 < min <= max"
        );
        self.min_backoff = min;
        self.max_backoff = max;
        self
    }

    /// How often an idle listener checks its connection with an empty
    /// query, so a connection that died silently (a dropped network path)
    /// is noticed; `None` never checks. Default 30 s.
    ///
    /// # Panics
    ///
    /// When the interval is zero.
    pub fn ping_interval(mut self, interval: Option<Duration>) -> Self {
        assert!(
            interval != Some(Duration::ZERO),
            "ping_interval must not be zero"
        );
        self.ping_interval = interval;
        self
    }

    /// How long a connect (with its `after_connect` hooks and
    /// subscriptions) or a ping may take before the attempt counts as
    /// failed. Default 10 s.
    ///
    /// # Panics
    ///
    /// When `timeout` is zero.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        assert!(!timeout.is_zero(), "timeout must not be zero");
        self.timeout = timeout;
        self
    }

    /// The first pause between reconnect attempts.
    pub fn min_backoff(&self) -> Duration {
        self.min_backoff
    }

    /// The longest pause between reconnect attempts.
    pub fn max_backoff(&self) -> Duration {
        self.max_backoff
    }
}

/// What a [`Listener`] yields.
#[derive(Debug)]
#[non_exhaustive]
pub enum ListenerEvent {
    /// A notification on one of the channels listened to.
    Notification(Notification),
    /// The connection was lost (the error, when there was one). Notifications
    /// sent from now until the next [`Reconnected`](Self::Reconnected) are
    /// not delivered.
    Disconnected(Option<tokio_postgres::Error>),
    /// The connection is back and every channel subscribed again.
    /// Notifications sent during the gap were **missed**: re-read whatever
    /// state they signal. Also sent after the first connection when it
    /// needed more than one attempt.
    Reconnected(Gap),
}

/// A span of time during which a [`Listener`] was not subscribed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Gap {
    /// When the connection was found lost (or the listener was created).
    pub lost_at: Instant,
    /// When every channel was subscribed again.
    pub restored_at: Instant,
    /// How many connection attempts it took.
    pub attempts: u32,
}

impl Gap {
    /// How long notifications may have been missed.
    pub fn duration(&self) -> Duration {
        self.restored_at.saturating_duration_since(self.lost_at)
    }
}

/// Why a [`Listener`] command failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum ListenerError {
    /// The listener has shut down.
    Closed,
    /// The channel name holds a NUL character.
    InvalidChannel,
    /// The server rejected the command (its error is the `source()`).
    Server(tokio_postgres::Error),
}

impl fmt::Display for ListenerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ListenerError::Closed => f.write_str("the listener has shut down"),
            ListenerError::InvalidChannel => {
                f.write_str("a channel name cannot hold a NUL character")
            }
            ListenerError::Server(_) => f.write_str("the server rejected the listener command"),
        }
    }
}

impl std::error::Error for ListenerError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ListenerError::Server(e) => Some(e),
            _ => None,
        }
    }
}

type Reply = oneshot::Sender<Result<(), ListenerError>>;

enum Command {
    Listen(String, Reply),
    Unlisten(String, Reply),
    UnlistenAll(Reply),
    Close,
}

/// `LISTEN`/`NOTIFY` on a dedicated connection, made by the manager like the
/// pool's connections but outside the pool.
///
/// It [`listen`](Self::listen)s to channels and yields
/// [`ListenerEvent`]s as a [`Stream`] (or with [`recv`](Self::recv)):
/// notifications in the order the server sent them, none lost while
/// connected (they are buffered without limit until read). When the
/// connection is lost (the backend terminated, the server restarted, a ping
/// unanswered) it yields [`ListenerEvent::Disconnected`], reconnects with
/// backoff ([`ListenerOptions`]), subscribes every channel again, and yields
/// [`ListenerEvent::Reconnected`] with the [`Gap`] during which
/// notifications were missed.
///
/// Dropping it, or [`close`](Self::close), shuts the connection.
///
/// # Examples
///
/// ```no_run
/// use quickslot::postgres::{ListenerEvent, PgManager};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let pool = PgManager::from_env()?.pool_builder().build()?;
/// let mut listener = pool.listener();
/// listener.listen("jobs").await?;
/// while let Some(event) = listener.recv().await {
///     match event {
///         ListenerEvent::Notification(n) => println!("{}: {}", n.channel(), n.payload()),
///         ListenerEvent::Reconnected(gap) => {
///             println!("missed up to {:?} of notifications; rescanning", gap.duration())
///         }
///         _ => {}
///     }
/// }
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct Listener {
    commands: mpsc::UnboundedSender<Command>,
    events: mpsc::UnboundedReceiver<ListenerEvent>,
    task: tokio::task::JoinHandle<()>,
}

impl fmt::Debug for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Command::Listen(c, _) => f.debug_tuple("Listen").field(c).finish(),
            Command::Unlisten(c, _) => f.debug_tuple("Unlisten").field(c).finish(),
            Command::UnlistenAll(_) => f.write_str("UnlistenAll"),
            Command::Close => f.write_str("Close"),
        }
    }
}

impl<T> PgManager<T>
where
    T: MakeTlsConnect<Socket> + Clone + Send + Sync + 'static,
    T::Stream: Send + Sync + 'static,
    T::TlsConnect: Send + Sync,
    <T::TlsConnect as TlsConnect<Socket>>::Future: Send,
{
    /// A [`Listener`] with default [`ListenerOptions`], on its own
    /// connection made like this manager's (configuration, TLS, credentials
    /// provider, `after_connect` hooks). It connects in the background.
    ///
    /// # Panics
    ///
    /// Outside a Tokio runtime (its task is spawned on the current one).
    pub fn listener(&self) -> Listener {
        self.listener_with(ListenerOptions::default())
    }

    /// [`listener`](Self::listener) with options.
    ///
    /// # Panics
    ///
    /// Outside a Tokio runtime.
    pub fn listener_with(&self, options: ListenerOptions) -> Listener {
        let (commands, command_rx) = mpsc::unbounded_channel();
        let (event_tx, events) = mpsc::unbounded_channel();
        let task = tokio::spawn(run(self.clone_shared(), options, command_rx, event_tx));
        Listener {
            commands,
            events,
            task,
        }
    }
}

impl Listener {
    async fn command(&self, make: impl FnOnce(Reply) -> Command) -> Result<(), ListenerError> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(make(reply))
            .map_err(|_| ListenerError::Closed)?;
        answer.await.unwrap_or(Err(ListenerError::Closed))
    }

    /// Subscribes to `channel` (the exact name given to `NOTIFY` or
    /// `pg_notify`, case and all: it is quoted). Resolves once the server
    /// confirmed it; while the listener is reconnecting, that is once it is
    /// back. Listening to a channel twice is a no-op.
    ///
    /// # Errors
    ///
    /// [`ListenerError::Server`] when the server rejects the name (an empty
    /// one, say), [`ListenerError::InvalidChannel`] for a NUL in it,
    /// [`ListenerError::Closed`] after [`close`](Self::close).
    ///
    /// # Cancel safety
    ///
    /// Dropping the future does not undo the subscription: it is made all
    /// the same.
    pub async fn listen(&self, channel: &str) -> Result<(), ListenerError> {
        if channel.contains('\0') {
            return Err(ListenerError::InvalidChannel);
        }
        let channel = channel.to_owned();
        self.command(|reply| Command::Listen(channel, reply)).await
    }

    /// Stops listening to `channel` (a no-op if not listening).
    ///
    /// # Errors
    ///
    /// As [`listen`](Self::listen).
    ///
    /// # Cancel safety
    ///
    /// Dropping the future does not stop the unsubscription.
    pub async fn unlisten(&self, channel: &str) -> Result<(), ListenerError> {
        if channel.contains('\0') {
            return Err(ListenerError::InvalidChannel);
        }
        let channel = channel.to_owned();
        self.command(|reply| Command::Unlisten(channel, reply))
            .await
    }

    /// Stops listening to every channel.
    ///
    /// # Errors
    ///
    /// [`ListenerError::Closed`] after [`close`](Self::close);
    /// [`ListenerError::Server`] if the server rejects `UNLISTEN *`.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future does not stop the unsubscription.
    pub async fn unlisten_all(&self) -> Result<(), ListenerError> {
        self.command(Command::UnlistenAll).await
    }

    /// The next event; `None` once the listener has shut down.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: an event not returned stays for the next call.
    pub async fn recv(&mut self) -> Option<ListenerEvent> {
        self.events.recv().await
    }

    /// Shuts the listener down: closes its connection (which unsubscribes
    /// everything) and waits for its task to end. Events not read yet are
    /// dropped.
    pub async fn close(self) {
        let _ = self.commands.send(Command::Close);
        let _ = self.task.await;
    }
}

impl Stream for Listener {
    type Item = ListenerEvent;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<ListenerEvent>> {
        self.get_mut().events.poll_recv(cx)
    }
}

fn quote(channel: &str) -> String {
    format!("\"{}\"", channel.replace('"', "\"\""))
}

/// What ended a session.
struct Lost(Option<tokio_postgres::Error>);

/// Forwards the connection's notifications until it needs to wait;
/// `Ready` when the connection has ended.
fn pump<S, U>(
    conn: &mut Connection<S, U>,
    events: &mpsc::UnboundedSender<ListenerEvent>,
    cx: &mut Context<'_>,
) -> Poll<Lost>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    U: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    loop {
        match conn.poll_message(cx) {
            Poll::Ready(Some(Ok(AsyncMessage::Notification(n)))) => {
                // The receiver gone means the listener is being dropped;
                // the command channel says so next.
                let _ = events.send(ListenerEvent::Notification(n));
            }
            Poll::Ready(Some(Ok(AsyncMessage::Notice(notice)))) => tracing::debug!(
                target: "quickslot::postgres",
                notice = %notice,
                "listener connection notice"
            ),
            Poll::Ready(Some(Ok(_))) => {}
            Poll::Ready(Some(Err(e))) => return Poll::Ready(Lost(Some(e))),
            Poll::Ready(None) => return Poll::Ready(Lost(None)),
            Poll::Pending => return Poll::Pending,
        }
    }
}

/// Runs `fut` (a request on the connection's client) while driving the
/// connection.
async fn drive<S, U, F>(
    conn: &mut Connection<S, U>,
    events: &mpsc::UnboundedSender<ListenerEvent>,
    fut: F,
) -> Result<F::Output, Lost>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    U: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    F: Future,
{
    let mut fut = pin!(fut);
    poll_fn(|cx| {
        if let Poll::Ready(out) = fut.as_mut().poll(cx) {
            return Poll::Ready(Ok(out));
        }
        match pump(conn, events, cx) {
            Poll::Ready(lost) => Poll::Ready(Err(lost)),
            Poll::Pending => Poll::Pending,
        }
    })
    .await
}

/// The listener's state across connections.
struct Subscriptions {
    /// In subscription order.
    channels: Vec<String>,
    /// `listen` calls waiting for their channel to be subscribed (made
    /// while disconnected, or cut short by a lost connection).
    waiting: Vec<(String, Reply)>,
}

impl Subscriptions {
    /// Handles a command while disconnected; `false` on `Close`.
    fn offline(&mut self, command: Option<Command>) -> bool {
        match command {
            None | Some(Command::Close) => return false,
            Some(Command::Listen(channel, reply)) => {
                if !self.channels.contains(&channel) {
                    self.channels.push(channel.clone());
                }
                self.waiting.push((channel, reply));
            }
            Some(Command::Unlisten(channel, reply)) => {
                self.channels.retain(|c| *c != channel);
                self.settle_waiting(&channel, || Ok(()));
                let _ = reply.send(Ok(()));
            }
            Some(Command::UnlistenAll(reply)) => {
                self.channels.clear();
                for (_, waiting) in self.waiting.drain(..) {
                    let _ = waiting.send(Ok(()));
                }
                let _ = reply.send(Ok(()));
            }
        }
        true
    }

    /// Answers every `listen` call waiting on `channel`.
    fn settle_waiting(
        &mut self,
        channel: &str,
        mut answer: impl FnMut() -> Result<(), ListenerError>,
    ) {
        let mut i = 0;
        while i < self.waiting.len() {
            if self.waiting[i].0 == channel {
                let (_, reply) = self.waiting.swap_remove(i);
                let _ = reply.send(answer());
            } else {
                i += 1;
            }
        }
    }
}

/// Waits `delay` while handling commands offline; `false` on `Close`.
async fn pause(
    delay: Duration,
    commands: &mut mpsc::UnboundedReceiver<Command>,
    subs: &mut Subscriptions,
) -> bool {
    offline_while(tokio::time::sleep(delay), commands, subs)
        .await
        .is_some()
}

/// Runs `fut` while handling commands offline; `None` on `Close`.
async fn offline_while<F: Future>(
    fut: F,
    commands: &mut mpsc::UnboundedReceiver<Command>,
    subs: &mut Subscriptions,
) -> Option<F::Output> {
    let mut fut = pin!(fut);
    loop {
        let next = poll_fn(|cx| {
            if let Poll::Ready(out) = fut.as_mut().poll(cx) {
                return Poll::Ready(Ok(out));
            }
            commands.poll_recv(cx).map(Err)
        })
        .await;
        match next {
            Ok(out) => return Some(out),
            Err(command) => {
                if !subs.offline(command) {
                    return None;
                }
            }
        }
    }
}

/// A pause drawn from `base` with up to 20 % jitter either way.
fn jittered(base: Duration) -> Duration {
    use std::hash::{BuildHasher, Hasher};
    let noise = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    // 0.8 ..= 1.2
    let factor = 0.8 + (noise % 4001) as f64 / 10_000.0;
    base.mul_f64(factor)
}

/// Subscribes every channel on a new connection, answering the waiting
/// `listen` calls. `Err` when the connection failed.
async fn subscribe_all<S, U>(
    client: &tokio_postgres::Client,
    conn: &mut Connection<S, U>,
    events: &mpsc::UnboundedSender<ListenerEvent>,
    subs: &mut Subscriptions,
) -> Result<(), Lost>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    U: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    // One statement each: a multi-statement string is one implicit
    // transaction, so one bad name would undo every subscription.
    let mut i = 0;
    while i < subs.channels.len() {
        let sql = format!("LISTEN {}", quote(&subs.channels[i]));
        match drive(conn, events, client.batch_execute(&sql)).await? {
            Ok(()) => {
                let channel = subs.channels[i].clone();
                subs.settle_waiting(&channel, || Ok(()));
                i += 1;
            }
            Err(e) if e.as_db_error().is_some() => {
                let channel = subs.channels.remove(i);
                tracing::warn!(
                    target: "quickslot::postgres",
                    channel = %channel,
                    error = %Chain(&e),
                    "the server rejected a listener channel; it is dropped"
                );
                let mut error = Some(e);
                subs.settle_waiting(&channel, || {
                    Err(error
                        .take()
                        .map_or(ListenerError::Closed, ListenerError::Server))
                });
            }
            Err(e) => return Err(Lost(Some(e))),
        }
    }
    Ok(())
}

/// The listener's task: connect, subscribe, pump; on loss, report, back
/// off and do it again.
async fn run<T>(
    manager: PgManager<T>,
    options: ListenerOptions,
    mut commands: mpsc::UnboundedReceiver<Command>,
    events: mpsc::UnboundedSender<ListenerEvent>,
) where
    T: MakeTlsConnect<Socket> + Clone + Send + Sync + 'static,
    T::Stream: Send + Sync + 'static,
    T::TlsConnect: Send + Sync,
    <T::TlsConnect as TlsConnect<Socket>>::Future: Send,
{
    let pool = manager.log_name();
    let mut subs = Subscriptions {
        channels: Vec::new(),
        waiting: Vec::new(),
    };
    let mut lost_at = Instant::now();
    let mut attempts: u32 = 0;
    let mut backoff = Duration::ZERO;
    let mut ever_connected = false;
    loop {
        if !backoff.is_zero() && !pause(jittered(backoff), &mut commands, &mut subs).await {
            return;
        }
        attempts = attempts.saturating_add(1);
        let connecting = async {
            let Opened {
                client,
                mut connection,
                config,
                target,
                ..
            } = manager.open().await?;
            match drive(&mut connection, &events, manager.run_hooks(&client)).await {
                Ok(hooks) => hooks?,
                Err(Lost(Some(e))) => return Err(PgError::Recycle(e)),
                Err(Lost(None)) => return Err(PgError::Closed),
            }
            Ok((
                client,
                connection,
                describe_server(&config, target.as_ref()),
            ))
        };
        let connected = offline_while(
            tokio::time::timeout(options.timeout, connecting),
            &mut commands,
            &mut subs,
        )
        .await;
        let (client, mut connection, server) = match connected {
            None => return,
            Some(Ok(Ok(connected))) => connected,
            Some(Ok(Err(error))) => {
                log_attempt(&pool, attempts, &error);
                backoff = next_backoff(backoff, &options);
                continue;
            }
            Some(Err(_)) => {
                log_attempt(&pool, attempts, &PgError::RecycleTimeout(options.timeout));
                backoff = next_backoff(backoff, &options);
                continue;
            }
        };
        let subscribed = tokio::time::timeout(
            options.timeout,
            subscribe_all(&client, &mut connection, &events, &mut subs),
        )
        .await;
        match subscribed {
            Ok(Ok(())) => {}
            Ok(Err(Lost(e))) => {
                let error = e.map_or(PgError::Closed, PgError::Recycle);
                log_attempt(&pool, attempts, &error);
                backoff = next_backoff(backoff, &options);
                continue;
            }
            Err(_) => {
                log_attempt(&pool, attempts, &PgError::RecycleTimeout(options.timeout));
                backoff = next_backoff(backoff, &options);
                continue;
            }
        }
        if ever_connected || attempts > 1 {
            let gap = Gap {
                lost_at,
                restored_at: Instant::now(),
                attempts,
            };
            tracing::info!(
                target: "quickslot::postgres",
                pool = %pool,
                server = %server,
                gap = ?gap.duration(),
                attempts,
                "listener reconnected; notifications sent during the gap were missed"
            );
            let _ = events.send(ListenerEvent::Reconnected(gap));
        }
        ever_connected = true;
        attempts = 0;
        let session = session(
            &client,
            &mut connection,
            &events,
            &mut commands,
            &mut subs,
            &options,
        )
        .await;
        let Some(Lost(error)) = session else {
            return;
        };
        drop(client);
        drop(connection);
        lost_at = Instant::now();
        tracing::warn!(
            target: "quickslot::postgres",
            pool = %pool,
            server = %server,
            error = error.as_ref().map(|e| Chain(e).to_string()),
            "listener connection lost; reconnecting"
        );
        let _ = events.send(ListenerEvent::Disconnected(error));
        // The first attempt after a loss is immediate.
        backoff = Duration::ZERO;
    }
}

fn next_backoff(current: Duration, options: &ListenerOptions) -> Duration {
    if current.is_zero() {
        options.min_backoff
    } else {
        (current * 2).min(options.max_backoff)
    }
}

fn log_attempt(pool: &str, attempts: u32, error: &PgError) {
    if attempts <= 1 {
        tracing::warn!(
            target: "quickslot::postgres",
            pool = %pool,
            error = %Chain(error),
            "listener could not connect; retrying with backoff"
        );
    } else {
        tracing::debug!(
            target: "quickslot::postgres",
            pool = %pool,
            attempts,
            error = %Chain(error),
            "listener could not connect; retrying with backoff"
        );
    }
}

/// How a command on the connection went.
enum Ran {
    Done(Result<(), tokio_postgres::Error>),
    Lost(Lost),
}

/// Runs `sql` on the connection within the timeout; errors other than the
/// server's count as a lost connection.
async fn run_sql<S, U>(
    client: &tokio_postgres::Client,
    conn: &mut Connection<S, U>,
    events: &mpsc::UnboundedSender<ListenerEvent>,
    sql: &str,
    timeout: Duration,
) -> Ran
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    U: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    match tokio::time::timeout(timeout, drive(conn, events, client.batch_execute(sql))).await {
        Ok(Ok(Ok(()))) => Ran::Done(Ok(())),
        Ok(Ok(Err(e))) if e.as_db_error().is_some() => Ran::Done(Err(e)),
        Ok(Ok(Err(e))) => Ran::Lost(Lost(Some(e))),
        Ok(Err(lost)) => Ran::Lost(lost),
        Err(_) => Ran::Lost(Lost(None)),
    }
}

/// One connected session; `None` on `Close`, else why it ended.
async fn session<S, U>(
    client: &tokio_postgres::Client,
    conn: &mut Connection<S, U>,
    events: &mpsc::UnboundedSender<ListenerEvent>,
    commands: &mut mpsc::UnboundedReceiver<Command>,
    subs: &mut Subscriptions,
    options: &ListenerOptions,
) -> Option<Lost>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    U: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    enum Next {
        Lost(Lost),
        Command(Option<Command>),
        Ping,
    }
    let far = Duration::from_secs(365 * 24 * 3600);
    let interval = options.ping_interval.unwrap_or(far);
    let mut ping = pin!(tokio::time::sleep(interval));
    loop {
        let next = poll_fn(|cx| {
            if let Poll::Ready(lost) = pump(conn, events, cx) {
                return Poll::Ready(Next::Lost(lost));
            }
            if let Poll::Ready(command) = commands.poll_recv(cx) {
                return Poll::Ready(Next::Command(command));
            }
            if ping.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Next::Ping);
            }
            Poll::Pending
        })
        .await;
        let timeout = options.timeout;
        match next {
            Next::Lost(lost) => return Some(lost),
            Next::Command(None | Some(Command::Close)) => return None,
            Next::Ping => {
                if let Ran::Lost(lost) = run_sql(client, conn, events, "", timeout).await {
                    return Some(lost);
                }
            }
            Next::Command(Some(Command::Listen(channel, reply))) => {
                if subs.channels.contains(&channel) {
                    let _ = reply.send(Ok(()));
                    continue;
                }
                let sql = format!("LISTEN {}", quote(&channel));
                subs.channels.push(channel.clone());
                match run_sql(client, conn, events, &sql, timeout).await {
                    Ran::Done(Ok(())) => {
                        let _ = reply.send(Ok(()));
                    }
                    Ran::Done(Err(e)) => {
                        subs.channels.retain(|c| *c != channel);
                        let _ = reply.send(Err(ListenerError::Server(e)));
                    }
                    Ran::Lost(lost) => {
                        // Answered once subscribed after the reconnect.
                        subs.waiting.push((channel, reply));
                        return Some(lost);
                    }
                }
            }
            Next::Command(Some(Command::Unlisten(channel, reply))) => {
                subs.channels.retain(|c| *c != channel);
                let sql = format!("UNLISTEN {}", quote(&channel));
                match run_sql(client, conn, events, &sql, timeout).await {
                    Ran::Done(result) => {
                        let _ = reply.send(result.map_err(ListenerError::Server));
                    }
                    Ran::Lost(lost) => {
                        // A new connection starts with no subscriptions.
                        let _ = reply.send(Ok(()));
                        return Some(lost);
                    }
                }
            }
            Next::Command(Some(Command::UnlistenAll(reply))) => {
                subs.channels.clear();
                match run_sql(client, conn, events, "UNLISTEN *", timeout).await {
                    Ran::Done(result) => {
                        let _ = reply.send(result.map_err(ListenerError::Server));
                    }
                    Ran::Lost(lost) => {
                        let _ = reply.send(Ok(()));
                        return Some(lost);
                    }
                }
            }
        }
        ping.as_mut().reset(Instant::now() + interval);
    }
}
