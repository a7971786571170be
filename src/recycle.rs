//! Recycling: [`Manager::recycle`] with the recycle hooks, under
//! `recycle_timeout` and the caller's deadline.

use std::future::{poll_fn, Future};
use std::pin::{pin, Pin};
use std::task::Poll;

use crate::error::{HookError, HookKind};
use crate::manager::Manager;
use crate::shared::{Record, Shared};
use crate::timer::Deadline;

/// How a recycle in an acquire ended.
pub(crate) enum Recycled<E> {
    Ok,
    /// The manager's error, or `None` when `recycle_timeout` passed.
    Failed(Option<E>),
    Hook(HookKind, HookError),
    /// The acquire's deadline passed.
    DeadlinePassed,
}

/// Why a recycle (with its hooks) rejected a resource.
pub(crate) enum RecycleFail<E> {
    Manager(E),
    /// `recycle_timeout` passed.
    Timeout,
    Hook(HookKind, HookError),
}

/// Recycles a resource under the acquire's deadline (and
/// `recycle_timeout`), with the recycle hooks if there are any.
pub(crate) async fn recycle<M: Manager>(
    shared: &Shared<M>,
    record: &mut Record<M::Resource>,
    deadline: &mut Deadline<'_>,
) -> Recycled<M::Error> {
    if shared.hooks().around_recycle {
        return match deadline.run(Box::pin(recycle_hooked(shared, record))).await {
            Some(Ok(())) => Recycled::Ok,
            Some(Err(RecycleFail::Manager(e))) => Recycled::Failed(Some(e)),
            Some(Err(RecycleFail::Timeout)) => Recycled::Failed(None),
            Some(Err(RecycleFail::Hook(kind, e))) => Recycled::Hook(kind, e),
            None => Recycled::DeadlinePassed,
        };
    }
    let fut = shared.manager().recycle(&mut record.resource, &record.info);
    let mut fut = pin!(fut);
    // Poll once without any timer: most recycles finish at once.
    match poll_fn(|cx| Poll::Ready(fut.as_mut().poll(cx))).await {
        Poll::Ready(Ok(())) => Recycled::Ok,
        Poll::Ready(Err(e)) => Recycled::Failed(Some(e)),
        Poll::Pending => recycle_pending(shared, fut, deadline).await,
    }
}

/// The rest of a [`Manager::recycle`] whose first poll was pending: under
/// `recycle_timeout` and the acquire's deadline. (The first poll needs no
/// timer: most recycles finish at once.)
pub(crate) async fn recycle_pending<M: Manager, F>(
    shared: &Shared<M>,
    fut: Pin<&mut F>,
    deadline: &mut Deadline<'_>,
) -> Recycled<M::Error>
where
    F: Future<Output = Result<(), M::Error>>,
{
    let mut inner = Deadline::new(shared.config().recycle_timeout, shared.timers());
    let result = deadline
        .run(async {
            match inner.run(fut).await {
                Some(result) => result.map_err(Some),
                None => Err(None),
            }
        })
        .await;
    match result {
        Some(Ok(())) => Recycled::Ok,
        Some(Err(e)) => Recycled::Failed(e),
        None => Recycled::DeadlinePassed,
    }
}

/// The recycle hooks around [`Manager::recycle`], all under
/// `recycle_timeout`.
pub(crate) async fn recycle_hooked<M: Manager>(
    shared: &Shared<M>,
    record: &mut Record<M::Resource>,
) -> Result<(), RecycleFail<M::Error>> {
    let hooks = shared.hooks();
    let mut deadline = Deadline::new(shared.config().recycle_timeout, shared.timers());
    let run = async {
        if let Some(hook) = &hooks.pre_recycle {
            hook.run(HookKind::PreRecycle, &mut record.resource, &record.info)
                .await
                .map_err(|(k, e)| RecycleFail::Hook(k, e))?;
        }
        shared
            .manager()
            .recycle(&mut record.resource, &record.info)
            .await
            .map_err(RecycleFail::Manager)?;
        if let Some(hook) = &hooks.post_recycle {
            hook.run(HookKind::PostRecycle, &mut record.resource, &record.info)
                .await
                .map_err(|(k, e)| RecycleFail::Hook(k, e))?;
        }
        Ok(())
    };
    deadline.run(run).await.unwrap_or(Err(RecycleFail::Timeout))
}
