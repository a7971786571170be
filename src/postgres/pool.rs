//! What a pool of [`PgManager`]s adds to [`crate::Pool`].

use tokio_postgres::tls::{MakeTlsConnect, TlsConnect};
use tokio_postgres::Socket;

use super::listener::{Listener, ListenerOptions};
use super::manager::PgManager;

/// Methods of PostgreSQL pools (cargo feature `postgres`).
impl<T> crate::Pool<PgManager<T>>
where
    T: MakeTlsConnect<Socket> + Clone + Send + Sync + 'static,
    T::Stream: Send + Sync + 'static,
    T::TlsConnect: Send + Sync,
    <T::TlsConnect as TlsConnect<Socket>>::Future: Send,
{
    /// Replaces every connection while traffic keeps flowing (HikariCP's
    /// `softEvictConnections`): the idle ones are dropped now, the
    /// checked-out ones when they come back, and new ones are made as
    /// needed. Returns how many idle connections were dropped.
    ///
    /// Useful after rotating credentials (with a
    /// [`password_provider`](PgManager::password_provider)), after a
    /// failover, or after a migration that cached plans or session state
    /// should not survive. An acquire racing with it never gets an evicted
    /// connection and sees no error: the checkout check rejects it and the
    /// pool makes another.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run(pool: quickslot::postgres::Pool) -> Result<(), Box<dyn std::error::Error>> {
    /// // The password was just rotated; the provider returns the new one.
    /// let dropped = pool.soft_evict();
    /// println!("{dropped} idle connections dropped");
    /// let client = pool.acquire().await?; // a new connection
    /// # Ok(())
    /// # }
    /// ```
    pub fn soft_evict(&self) -> usize {
        let current = self.manager().soft_evict();
        self.retain(|client, _| client.generation() >= current)
    }

    /// A [`Listener`] on its own connection, made like the pool's (same
    /// configuration, TLS, credentials provider and `after_connect` hooks),
    /// outside the pool: it never takes one of the pool's slots.
    ///
    /// Must be called inside a Tokio runtime (the listener's task is
    /// spawned on it).
    ///
    /// # Panics
    ///
    /// Outside a Tokio runtime.
    pub fn listener(&self) -> Listener {
        self.manager().listener()
    }

    /// [`listener`](Self::listener) with options.
    ///
    /// # Panics
    ///
    /// Outside a Tokio runtime.
    pub fn listener_with(&self, options: ListenerOptions) -> Listener {
        self.manager().listener_with(options)
    }
}
