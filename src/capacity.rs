//! Shared capacity: one budget of slots that several pools draw from.
//!
//! # Design
//!
//! A [`Capacity`] is a [`Core`] with no items: its slots are *permits*, its
//! line holds the acquires of every member pool that wait for one, in
//! arrival order, and its fair hand-off gives a returned permit to the
//! oldest of them, whichever pool it came from. The core's proofs (the
//! loom models of `loom-tests`) carry over unchanged.
//!
//! A member pool keeps its own core, its own `max_size`, idle resources and
//! line. Its *local* slots and the budget's permits are separate counts:
//!
//! * every live resource of a member (idle, checked out, or being created)
//!   holds one local slot and one permit;
//! * an acquire that got a local slot (from a grow or a hand-off) but no
//!   permit waits in the budget's line, still holding the local slot: the
//!   slot is its place in its own pool (at most `max_size` creates there),
//!   the permit its place across pools. Such slots are not counted in the
//!   member's [`Status::size`](crate::Status::size) (`awaiting_permit`);
//! * a permit comes back when a resource leaves its pool for good (every
//!   departure path drops the slot token that carries it, see
//!   [`Slot`](crate::shared::Slot)), or when such a waiting acquire is
//!   served by an idle resource of its own pool instead.
//!
//! # Taking idle resources of other pools
//!
//! The budget can be exhausted by resources that sit idle in one pool while
//! another pool's acquires wait. Two sides make sure a waiter and an idle
//! resource never miss each other (Dekker's pattern, as in the core):
//!
//! * a waiter registers in the budget's line (a `SeqCst` increment and
//!   fence), then asks every other member to drop one idle resource
//!   ([`Member::reclaim_idle`]);
//! * a member that parks a resource issues a `SeqCst` fence, then looks at
//!   the budget's line: if anyone waits and the grace period is zero, it
//!   drops one idle resource itself.
//!
//! With a grace period, only resources idle for at least that long are
//! taken: a waiter that finds none eligible tries again when the oldest
//! becomes eligible (at the latest one grace period later). A member never
//! gives up resources while its own acquires wait or below its `min_idle`.
//!
//! A member hands its own idle resources to its own acquires that wait for
//! a permit first: it notifies them (`item_parked`) when it parks a
//! resource, with the same fence-then-look order.

use std::fmt;
use std::time::Duration;

use crate::rt::Instant;

use crate::handoff::Grant;
use crate::idle::ReuseOrder;
use crate::raw::Core;
use crate::sync::{Arc, AtomicU64, Ordering, Registered, SegQueue, StdArc};

/// A budget of slots shared by several pools: each pool keeps its own
/// `max_size`, idle resources and line, and every create in any of them
/// also takes one unit of the shared budget, so the pools together never
/// hold more than [`max`](Self::max) resources.
///
/// A unit freed in one pool goes to the acquire that has waited longest
/// for one across all the pools (fair across pools, not per pool). When
/// the budget is spent and an acquire waits, a resource idle in another
/// pool is closed to make room, once it has been idle for the
/// [`idle_grace`](Self::idle_grace) period (zero by default: at once).
///
/// A unit comes back when its pool drops the resource. A resource whose
/// close finishes later, elsewhere, is still open for that moment: a
/// PostgreSQL connection's socket is closed by its I/O task after the
/// client is dropped, and its server backend exits after that, so while
/// units move between pools the server may briefly count a closing
/// backend beside the one that replaced it. Leave a little headroom below
/// the server's own limit (`max_connections` less its reserved slots).
///
/// A cheap [`Clone`] handle; pass it to
/// [`Builder::capacity`](crate::Builder::capacity) of every member pool.
///
/// ```
/// # use quickslot::{Capacity, Manager, Pool};
/// # struct Conn;
/// # impl Manager for Conn {
/// #     type Resource = ();
/// #     type Error = std::convert::Infallible;
/// #     async fn create(&self) -> Result<(), Self::Error> { Ok(()) }
/// # }
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// // The server allows 8 connections; each tenant's pool may use up to 6.
/// let budget = Capacity::new(8);
/// let a = Pool::builder(Conn).max_size(6).capacity(&budget).build().unwrap();
/// let b = Pool::builder(Conn).max_size(6).capacity(&budget).build().unwrap();
///
/// let held: Vec<_> = futures::future::join_all((0..6).map(|_| a.acquire())).await;
/// assert_eq!(budget.in_use(), 6);
/// // Tenant `b` gets the two units left...
/// let (b1, b2) = (b.acquire().await.unwrap(), b.acquire().await.unwrap());
/// assert_eq!(budget.in_use(), 8);
/// // ...and when `a`'s resources go idle, `b` may take their units.
/// drop(held);
/// let b3 = b.acquire().await.unwrap();
/// assert_eq!(a.status().size + b.status().size, 8);
/// # drop((b1, b2, b3));
/// # }
/// ```
#[derive(Clone)]
pub struct Capacity {
    budget: Arc<Budget>,
}

impl Capacity {
    /// A budget of `max` units. A pool built with a budget of zero is an
    /// error ([`BuildError::ZeroCapacity`](crate::BuildError::ZeroCapacity)).
    pub fn new(max: usize) -> Self {
        Self {
            budget: Arc::new(Budget::new(max)),
        }
    }

    /// The budget: how many resources the member pools may hold together.
    pub fn max(&self) -> usize {
        self.budget.permits.max_size()
    }

    /// How many units are taken: live resources and creates in flight, over
    /// every member pool.
    pub fn in_use(&self) -> usize {
        self.budget.permits.size()
    }

    /// How many acquires (of any member pool) wait for a unit.
    pub fn waiting(&self) -> usize {
        self.budget.permits.waiting()
    }

    /// How long a resource must have been idle before an acquire of another
    /// pool may close it to take its unit.
    pub fn idle_grace(&self) -> Duration {
        self.budget.grace()
    }

    /// Sets [`idle_grace`](Self::idle_grace), for every member pool, from
    /// their next wait on.
    ///
    /// Zero (the default) gives a waiting pool any idle resource at once:
    /// the budget goes where the demand is, at the price of closing and
    /// reopening resources when tenants take turns. A grace period keeps
    /// the resources of a tenant between two bursts.
    ///
    /// A waiting acquire looks again when a resource's grace period ends,
    /// on a timer: built without a runtime feature (`tokio` or `smol`), it
    /// only takes resources already past their grace period when it starts
    /// to wait (or when it is woken for another reason).
    pub fn set_idle_grace(&self, grace: Duration) {
        let nanos = u64::try_from(grace.as_nanos()).unwrap_or(u64::MAX);
        // Relaxed: a setting read by later waits; no other data hangs on it.
        self.budget.grace_nanos.store(nanos, Ordering::Relaxed);
    }

    pub(crate) fn budget(&self) -> &Arc<Budget> {
        &self.budget
    }
}

impl fmt::Debug for Capacity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Capacity")
            .field("max", &self.max())
            .field("in_use", &self.in_use())
            .field("waiting", &self.waiting())
            .field("idle_grace", &self.idle_grace())
            .finish()
    }
}

/// The state behind a [`Capacity`].
pub(crate) struct Budget {
    /// Slots are permits; it never holds an item.
    permits: Core<std::convert::Infallible>,
    /// The member pools, for taking idle resources.
    members: SegQueue<Registered<dyn Member>>,
    /// Gives each member an id.
    next_member: AtomicU64,
    grace_nanos: AtomicU64,
}

impl Budget {
    fn new(max: usize) -> Self {
        Self {
            // The idle store is never used (no items); it needs one place.
            permits: Core::with_sink(max, max.max(1), ReuseOrder::Fifo, crate::raw::JustDrop),
            members: SegQueue::new(),
            next_member: AtomicU64::new(0),
            grace_nanos: AtomicU64::new(0),
        }
    }

    pub(crate) fn grace(&self) -> Duration {
        // Relaxed: see `set_idle_grace`.
        Duration::from_nanos(self.grace_nanos.load(Ordering::Relaxed))
    }

    /// How many acquires wait for a permit. `SeqCst` (in the core): read
    /// after a member's fence (see the module docs).
    pub(crate) fn waiting(&self) -> usize {
        self.permits.waiting()
    }

    /// A permit, if one is free and nobody waits for one.
    pub(crate) fn try_take(&self) -> bool {
        if self.permits.waiting() > 0 {
            return false;
        }
        // No items: a permit is a grow.
        self.permits.try_grow().is_ok()
    }

    /// Returns a permit: to the oldest waiter of any member, else free.
    pub(crate) fn give_back(&self) {
        self.permits.release(Grant::Slot);
    }

    /// The core whose slots are the permits (for a waiter's record).
    pub(crate) fn permits(&self) -> &Core<std::convert::Infallible> {
        &self.permits
    }

    /// After a waiter queued in the line (the fence is in the core's
    /// `register`): asks the other members for an idle resource; see
    /// [`reclaim_for`](Self::reclaim_for).
    pub(crate) fn queued(&self, asker: u64) -> Option<Instant> {
        #[cfg(not(quickslot_bug = "no_reclaim_look"))]
        let again = self.reclaim_for(asker);
        #[cfg(quickslot_bug = "no_reclaim_look")]
        let again = {
            let _ = asker;
            None
        };
        again
    }

    /// A new id for a member pool.
    pub(crate) fn member_id(&self) -> u64 {
        // Relaxed: only uniqueness matters, which the RMW gives.
        self.next_member.fetch_add(1, Ordering::Relaxed)
    }

    /// Adds a member pool.
    pub(crate) fn join(&self, member: Registered<dyn Member>) {
        self.members.push(member);
    }

    /// Removes a member pool (it closed). Lock-free: one pass that puts
    /// every other entry back; a concurrent reclaim may miss a member for
    /// that instant, which costs it nothing but a chance.
    pub(crate) fn leave(&self, id: u64) {
        self.each_member(|member| member.member_id() != id);
    }

    /// Visits each member once, in turn (pop, look, push back), leaving out
    /// the dropped ones and those `keep` says go. Lock-free; a concurrent
    /// visit may miss a member for the instant it is out.
    fn each_member(&self, mut keep: impl FnMut(&dyn Member) -> bool) {
        for _ in 0..self.members.len() {
            let Some(entry) = self.members.pop() else {
                break;
            };
            // A dropped pool is left out.
            let Some(member) = crate::sync::registered_get(&entry) else {
                continue;
            };
            if keep(&*member) {
                self.members.push(entry);
            }
        }
    }

    /// Asks each member other than `asker` to close one idle resource
    /// (idle for at least `grace`), until one did. `Some(at)`: none could,
    /// but one may at `at`, when a resource's grace period is over.
    pub(crate) fn reclaim_for(&self, asker: u64) -> Option<Instant> {
        let grace = self.grace();
        let mut next: Option<Instant> = None;
        let mut done = false;
        self.each_member(|member| {
            if !done && member.member_id() != asker {
                match member.reclaim_idle(grace) {
                    Reclaim::Done => done = true,
                    Reclaim::NotBefore(at) => next = Some(next.map_or(at, |n| n.min(at))),
                    Reclaim::Nothing => {}
                }
            }
            true
        });
        if done {
            None
        } else {
            next
        }
    }
}

/// What [`Member::reclaim_idle`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reclaim {
    /// Closed one idle resource: its permit went to the budget's line.
    Done,
    /// Its oldest idle resource is within its grace period until then.
    NotBefore(Instant),
    /// Nothing it may give up.
    Nothing,
}

/// A member pool, as the budget sees it.
pub(crate) trait Member: Send + Sync {
    fn member_id(&self) -> u64;

    /// Closes one idle resource that has been idle for at least `grace`,
    /// unless the pool's own acquires wait or it would leave fewer than
    /// `min_idle` idle.
    fn reclaim_idle(&self, grace: Duration) -> Reclaim;
}

/// Registers `member` with the budget. Normal builds keep a weak
/// reference; see [`Registered`].
#[cfg(not(loom))]
pub(crate) fn registration<T: Member + 'static>(member: &Arc<T>) -> Registered<dyn Member> {
    let strong: StdArc<dyn Member> = member.clone();
    StdArc::downgrade(&strong)
}

/// Under loom (no `Weak`): a strong reference, dropped when the pool
/// closes ([`Budget::leave`]).
#[cfg(loom)]
pub(crate) fn registration<T: Member + 'static>(member: &Arc<T>) -> Registered<dyn Member> {
    struct Strong<T>(Arc<T>);
    impl<T: Member> Member for Strong<T> {
        fn member_id(&self) -> u64 {
            self.0.member_id()
        }
        fn reclaim_idle(&self, grace: Duration) -> Reclaim {
            self.0.reclaim_idle(grace)
        }
    }
    StdArc::new(Strong(member.clone()))
}
