//! The create path: one create under `create_timeout` with its
//! `post_create` hook, and [`InFlight`], a create started by an acquire that
//! finishes in the background if the acquire gives up on it.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use crate::error::{HookError, HookKind};
use crate::jitter::jittered;
use crate::manager::{Manager, ResourceInfo};
use crate::rt;
use crate::shared::{Entry, Reason, Record, Shared, Slot};
use crate::status::{Counter, Stats};
use crate::sync::Arc;
use crate::timer::Deadline;

/// Why a create gave no resource.
pub(crate) enum CreateFail<E> {
    Manager(E),
    /// `create_timeout` passed.
    Timeout,
    Hook(HookKind, HookError),
}

/// Decrements the creating gauge when a create ends or is dropped.
struct CreatingGauge<'a>(&'a Stats);

impl Drop for CreatingGauge<'_> {
    fn drop(&mut self) {
        self.0.creating(-1);
    }
}

/// Creates one resource under `create_timeout`, and runs `post_create`.
/// The caller holds the slot.
pub(crate) async fn create<M: Manager>(
    shared: &Shared<M>,
) -> Result<Entry<M::Resource>, CreateFail<M::Error>> {
    let config = shared.config();
    let stats = shared.stats();
    stats.creating(1);
    let _creating = CreatingGauge(stats);
    #[cfg(feature = "metrics")]
    let started = rt::now();
    let mut deadline = Deadline::new(config.create_timeout, shared.timers());
    let created = deadline
        .run(async {
            let resource = shared
                .manager()
                .create()
                .await
                .map_err(CreateFail::Manager)?;
            let lifetime = config.max_lifetime.map(jittered);
            let info = ResourceInfo::new(shared.next_id(), rt::now(), lifetime);
            let mut entry = Record::new(resource, info);
            if let Some(hook) = &shared.hooks().post_create {
                if let Err((kind, e)) = hook
                    .run(HookKind::PostCreate, &mut entry.resource, &entry.info)
                    .await
                {
                    shared.count_discard(Reason::Hook(kind), &entry.info);
                    shared.manager().detach(&mut entry.resource);
                    return Err(CreateFail::Hook(kind, e));
                }
            }
            Ok(entry)
        })
        .await
        .unwrap_or(Err(CreateFail::Timeout));
    #[cfg(feature = "metrics")]
    if let Some(m) = shared.metrics() {
        m.create_time.record(started.elapsed());
    }
    match &created {
        Ok(_) => {
            stats.add(Counter::Created, 1);
            let id = created.as_ref().map_or(0, |entry| entry.info.id);
            tracing::debug!(target: "quickslot", pool = %config.name, resource = id, "resource created");
        }
        Err(fail) => {
            stats.add(Counter::CreateErrors, 1);
            trace_failure(&config.name, fail);
        }
    }
    created
}

#[cold]
fn trace_failure<E: std::fmt::Display>(pool: &str, fail: &CreateFail<E>) {
    match fail {
        CreateFail::Manager(e) => {
            tracing::warn!(target: "quickslot", pool, error = %e, "create failed");
        }
        CreateFail::Timeout => tracing::warn!(
            target: "quickslot",
            pool,
            "create failed: create_timeout passed",
        ),
        CreateFail::Hook(kind, e) => tracing::warn!(
            target: "quickslot",
            pool,
            hook = %kind,
            error = %e,
            "create failed: hook failed",
        ),
    }
}

type CreateFuture<M> = Pin<
    Box<
        dyn Future<
                Output = Result<Entry<<M as Manager>::Resource>, CreateFail<<M as Manager>::Error>>,
            > + Send,
    >,
>;

/// What an [`InFlight`] create gives back: its outcome and the slot.
pub(crate) type Created<M> = (
    Result<Entry<<M as Manager>::Resource>, CreateFail<<M as Manager>::Error>>,
    Slot<M, Arc<Shared<M>>>,
);

/// A create started by an acquire. It holds the acquire's slot while it
/// runs and hands it back with the outcome. If the acquire gives up on it
/// (its deadline passed, or its future was dropped), the create is not
/// thrown away: it finishes in a background task, bounded by
/// `create_timeout` or else `acquire_timeout`, and its resource goes to the
/// next waiter (or idle), or its slot is freed. So a stalled server sees at
/// most `max_size` connection attempts at a time, not a new one for every
/// acquire that times out. With neither timeout, where no runtime takes a
/// task (see [`rt::spawn`]), or when the create itself panicked, the create
/// is dropped and its slot freed at once.
pub(crate) struct InFlight<M: Manager> {
    slot: Option<Slot<M, Arc<Shared<M>>>>,
    /// Where the background finish goes: the runtime the create started
    /// on (its future may hold that runtime's timers or sockets).
    home: rt::TaskHome,
    /// `None` once finished, or once a poll of it panicked: a future that
    /// panicked is never polled again.
    fut: Option<CreateFuture<M>>,
}

impl<M: Manager> InFlight<M> {
    pub(crate) fn new(slot: Slot<M, Arc<Shared<M>>>) -> Self {
        let owned = slot.handle().clone();
        Self {
            slot: Some(slot),
            home: rt::TaskHome::here(),
            fut: Some(Box::pin(async move { create(&owned).await })),
        }
    }
}

impl<M: Manager> Future for InFlight<M> {
    type Output = Created<M>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Created<M>> {
        // Out of `self` while polled: if the poll panics, the future is
        // dropped as the panic unwinds and `fut` stays `None`.
        let mut fut = self.fut.take().expect("polled after completion");
        match fut.as_mut().poll(cx) {
            Poll::Ready(out) => {
                let slot = self.slot.take().expect("held until finished");
                Poll::Ready((out, slot))
            }
            Poll::Pending => {
                self.fut = Some(fut);
                Poll::Pending
            }
        }
    }
}

impl<M: Manager> Drop for InFlight<M> {
    fn drop(&mut self) {
        let (Some(fut), Some(slot)) = (self.fut.take(), self.slot.take()) else {
            // Finished, or its poll panicked: the slot (if still here) is
            // freed as it drops.
            return;
        };
        let config = slot.shared().config();
        let bound = config.create_timeout.or(config.acquire_timeout);
        let (Some(bound), false) = (bound, std::thread::panicking()) else {
            return;
        };
        let pool = config.name.clone();
        // The task owns the slot: it is freed if the task is dropped
        // unfinished, never runs (a runtime shutting down drops it) or is
        // not spawned (no runtime here: dropped at once).
        let spawned = self.home.spawn(async move {
            match rt::timeout(bound, fut).await {
                Some(Ok(entry)) => slot.fill(entry).park(),
                // Counted and traced by `create` (a timeout here is not).
                _ => drop(slot),
            }
        });
        if spawned {
            tracing::debug!(
                target: "quickslot",
                pool = %pool,
                "create abandoned by its acquire: finishing it in the background",
            );
        }
    }
}
