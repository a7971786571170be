//! Scoped use: [`Pool::with`] and [`Pool::with_blocking`] (Haskell
//! resource-pool's `withResource`).

use crate::error::Error;
use crate::guard::Pooled;
use crate::manager::Manager;
use crate::pool::Pool;

impl<M: Manager> Pool<M> {
    /// Runs `f` on a checked-out resource and returns it to the pool
    /// (Haskell resource-pool's `withResource`): acquires, awaits
    /// `f(&mut resource)`, gives the resource back, returns `f`'s result.
    ///
    /// If `f` panics, the resource is dropped (its state is unknown), its
    /// slot freed, and the panic goes on to the caller.
    ///
    /// ```
    /// # use quickslot::{Manager, Pool};
    /// # struct M;
    /// # impl Manager for M {
    /// #     type Resource = Vec<u8>;
    /// #     type Error = std::convert::Infallible;
    /// #     async fn create(&self) -> Result<Vec<u8>, Self::Error> { Ok(Vec::new()) }
    /// # }
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let pool = Pool::builder(M).max_size(1).build().unwrap();
    /// let len = pool
    ///     .with(async |buf: &mut Vec<u8>| {
    ///         buf.extend_from_slice(b"hello");
    ///         buf.len()
    ///     })
    ///     .await
    ///     .unwrap();
    /// assert_eq!(len, 5);
    /// assert_eq!(pool.status().idle, 1);
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// As [`acquire`](Self::acquire); `f` itself cannot fail the call (let
    /// it return a `Result`).
    ///
    /// # Cancel safety
    ///
    /// Dropped while acquiring: as [`acquire`](Self::acquire). Dropped while
    /// `f` runs: `f` is dropped mid-way, so the resource's state is unknown:
    /// it is dropped and its slot freed, as after a panic.
    pub async fn with<T>(
        &self,
        f: impl AsyncFnOnce(&mut M::Resource) -> T,
    ) -> Result<T, Error<M::Error>> {
        let mut scope = Scope(Some(self.acquire().await?));
        let out = f(scope.resource()).await;
        scope.finish();
        Ok(out)
    }

    /// The blocking twin of [`with`](Self::with): acquires with
    /// [`acquire_blocking`](Self::acquire_blocking), runs `f`, returns the
    /// resource and `f`'s result. If `f` panics, the resource is dropped and
    /// its slot freed, and the panic goes on.
    ///
    /// ```
    /// # use quickslot::{Manager, Pool};
    /// # struct M;
    /// # impl Manager for M {
    /// #     type Resource = String;
    /// #     type Error = String;
    /// #     async fn create(&self) -> Result<String, String> { Ok(String::new()) }
    /// # }
    /// let pool = Pool::builder(M).build().unwrap();
    /// let n = pool.with_blocking(|s| { s.push('x'); s.len() }).unwrap();
    /// assert_eq!(n, 1);
    /// ```
    ///
    /// # Errors
    ///
    /// As [`acquire`](Self::acquire).
    ///
    /// # Panics
    ///
    /// As [`acquire_blocking`](Self::acquire_blocking), and when `f` panics.
    #[track_caller]
    pub fn with_blocking<T>(
        &self,
        f: impl FnOnce(&mut M::Resource) -> T,
    ) -> Result<T, Error<M::Error>> {
        let mut scope = Scope(Some(self.acquire_blocking()?));
        let out = f(scope.resource());
        scope.finish();
        Ok(out)
    }
}

/// A resource lent to a scoped `with`: returned by `finish`, dropped (and
/// its slot freed) if the scope ends any other way.
struct Scope<M: Manager>(Option<Pooled<M>>);

impl<M: Manager> Scope<M> {
    fn resource(&mut self) -> &mut M::Resource {
        self.0.as_mut().expect("lent until finished")
    }

    fn finish(mut self) {
        drop(self.0.take());
    }
}

impl<M: Manager> Drop for Scope<M> {
    fn drop(&mut self) {
        if let Some(guard) = self.0.take() {
            Pooled::abandon(guard);
        }
    }
}
