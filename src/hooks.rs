//! [`Hook`]: user code run at fixed points of a resource's life.

use std::fmt;
use std::future::Future;
use std::pin::Pin;

use crate::error::{HookError, HookKind};
use crate::manager::ResourceInfo;

/// A boxed future returned by an async hook.
pub type HookFuture<'a> = Pin<Box<dyn Future<Output = Result<(), HookError>> + Send + 'a>>;

type SyncFn<R> = dyn Fn(&mut R, &ResourceInfo) -> Result<(), HookError> + Send + Sync;
type AsyncFn<R> = dyn for<'a> Fn(&'a mut R, &'a ResourceInfo) -> HookFuture<'a> + Send + Sync;

enum Kind<R> {
    Sync(Box<SyncFn<R>>),
    Async(Box<AsyncFn<R>>),
}

/// A function the pool runs on a resource: after it is created
/// ([`Builder::post_create`](crate::Builder::post_create)), around each
/// recycle ([`Builder::pre_recycle`](crate::Builder::pre_recycle),
/// [`Builder::post_recycle`](crate::Builder::post_recycle)).
///
/// A hook that returns an error makes the pool drop the resource, free its
/// slot and fail the acquire with [`Error::Hook`](crate::Error::Hook),
/// naming the hook. (To skip a stale resource silently and let the acquire
/// go on with a fresh one, fail [`Manager::recycle`](crate::Manager::recycle)
/// instead.)
///
/// Hooks run inside the acquire, under its deadline; dropping the acquire
/// drops a running async hook, and the resource with it.
///
/// With no hook set, a pool pays one predictable branch per acquire.
///
/// ```
/// use quickslot::{Hook, HookError, Manager, Pool};
///
/// struct Sessions;
/// impl Manager for Sessions {
///     type Resource = Vec<String>;
///     type Error = std::convert::Infallible;
///     async fn create(&self) -> Result<Vec<String>, Self::Error> { Ok(Vec::new()) }
/// }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let pool = Pool::builder(Sessions)
///     .post_create(Hook::sync(|session: &mut Vec<String>, _| {
///         session.push("SET application_name = 'api'".into());
///         Ok(())
///     }))
///     .pre_recycle(Hook::async_fn(|session: &mut Vec<String>, _| {
///         Box::pin(async move {
///             if session.len() > 100 {
///                 return Err(HookError::msg("too much session state"));
///             }
///             Ok(())
///         })
///     }))
///     .build()
///     .unwrap();
/// let session = pool.acquire().await.unwrap();
/// assert_eq!(session.len(), 1);
/// # }
/// ```
pub struct Hook<R> {
    kind: Kind<R>,
}

impl<R> Hook<R> {
    /// A synchronous hook.
    pub fn sync<F>(f: F) -> Self
    where
        F: Fn(&mut R, &ResourceInfo) -> Result<(), HookError> + Send + Sync + 'static,
    {
        Self {
            kind: Kind::Sync(Box::new(f)),
        }
    }

    /// An async hook: a function returning a boxed future
    /// (`|resource, info| Box::pin(async move { ... })`).
    pub fn async_fn<F>(f: F) -> Self
    where
        F: for<'a> Fn(&'a mut R, &'a ResourceInfo) -> HookFuture<'a> + Send + Sync + 'static,
    {
        Self {
            kind: Kind::Async(Box::new(f)),
        }
    }

    pub(crate) async fn run(
        &self,
        which: HookKind,
        resource: &mut R,
        info: &ResourceInfo,
    ) -> Result<(), (HookKind, HookError)> {
        let result = match &self.kind {
            Kind::Sync(f) => f(resource, info),
            Kind::Async(f) => f(resource, info).await,
        };
        result.map_err(|e| (which, e))
    }
}

impl<R> fmt::Debug for Hook<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.kind {
            Kind::Sync(_) => "Hook::sync(..)",
            Kind::Async(_) => "Hook::async_fn(..)",
        })
    }
}

/// A synchronous hook run on every return; see
/// [`Builder::on_release`](crate::Builder::on_release).
pub(crate) type ReleaseHook<R> = Box<SyncFn<R>>;

/// The hooks of one pool. Each is checked with one branch where it applies.
pub(crate) struct Hooks<R> {
    pub(crate) post_create: Option<Hook<R>>,
    pub(crate) pre_recycle: Option<Hook<R>>,
    pub(crate) post_recycle: Option<Hook<R>>,
    pub(crate) on_release: Option<ReleaseHook<R>>,
    /// `pre_recycle` or `post_recycle` is set: the one flag the acquire path
    /// tests.
    pub(crate) around_recycle: bool,
}

impl<R> Default for Hooks<R> {
    fn default() -> Self {
        Self {
            post_create: None,
            pre_recycle: None,
            post_recycle: None,
            on_release: None,
            around_recycle: false,
        }
    }
}

impl<R> fmt::Debug for Hooks<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hooks")
            .field("post_create", &self.post_create)
            .field("pre_recycle", &self.pre_recycle)
            .field("post_recycle", &self.post_recycle)
            .field("on_release", &self.on_release.as_ref().map(|_| ".."))
            .finish()
    }
}
