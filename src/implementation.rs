//! Design notes: why the pool is built the way it is, what was measured, and
//! what the model checker found. Documentation only; nothing here is code.
//!
//! # Layers
//!
//! ```text
//! pool        the public face: documentation and delegations
//! guard       Pooled, the user's guard
//! acquire     the acquire state machine: fast path, wait, recycle, create
//! upkeep      the background task: min_idle, reaper, keepalive, leaks; retain
//! recycle     Manager::recycle with its hooks, under its timeouts
//! create      one create with its hook; InFlight, the background finish
//! shared      Shared (all of a pool's state, private) and the Slot/Held tokens
//! capacity    Capacity: a budget of permits shared by several pools
//! builder     Builder; config: Config and every derived flag
//! raw         the concurrency core: size, idle store, waiter line, hand-off
//! handoff     waiter records (the only unsafe code)
//! idle        the idle store (FIFO queue or LIFO stack)
//! sync        the one facade over std/loom atomics, Arc, cells and queues
//! rt          the one module naming a runtime: clock, timers, tasks, block_on
//! ```
//!
//! Each module uses only the modules below it (leaf modules such as
//! `error`, `status`, `timer`, `hooks` and `manager` sit under `shared`;
//! `rt`, under `timer`, is the only one that names Tokio or smol).
//!
//! # Capacity tokens
//!
//! A slot (one unit of capacity) leaves the core as a grant and must come
//! back exactly once. Outside the core it is only ever held in a `Slot`
//! (capacity, no resource) or a `Held` (capacity and its resource), both
//! `#[must_use]` and both freeing the slot when dropped, unwinding included.
//! A path consumes its token explicitly (parking the resource, filling the
//! slot with a new one, discarding, detaching); any other exit, including a
//! panic in a manager method, a hook or a `retain` predicate, drops the
//! resource and frees the slot. Earlier code tracked this with
//! `armed`/`recycling` flags in each path and lost a slot when user code
//! panicked on a path that had no flag.
//!
//! # Measurements behind the hot path
//!
//! All on the project's 2-core VM (AMD EPYC), ratios within one run; see
//! `BENCHMARKS.md` for the comparison with deadpool and bb8.
//!
//! * Entries are boxed once at creation: an `ArrayQueue` of 56-byte items
//!   cycled 2.6 times slower than one of pointers (54 -> 22 ns per
//!   uncontended acquire+release).
//! * `Error` has a `u64` tag: with the default layout the caller's copy of
//!   `Poll<Result<Pooled, Error>>` read bytes 1-7 across narrower stores, a
//!   store-forwarding stall of about 4 ns per acquire (28 -> 24 ns).
//! * The caller's location was once kept out of the acquire `async fn`'s
//!   arguments: two adjacent pointer-sized arguments were moved with one
//!   16-byte load over two 8-byte stores (+5 ns per acquire). It is an
//!   argument again (see below): with the arguments as they are now (the
//!   handle, a `Timeout` whose common value is a 4-byte niche, the
//!   location), the first poll loads each with the width it was stored
//!   with (rustc 1.95; checked in the annotated assembly of `uncontended
//!   quickslot-outline`, where that poll is out of line). Re-check it when
//!   the arguments change: a `repr(u64)` `Timeout` in an options struct was
//!   copied with two 16-byte loads over 8-byte stores.
//! * The unarmed `Deadline` drop is inline and branch-only: out of line it
//!   cost about 20 instructions per acquire.
//! * Deadline timers are reused per pool: a fresh `tokio::time::Sleep` per
//!   wait cost an allocation, two timer-wheel locks and a handle clone,
//!   about a quarter of a contended cycle (3,455 -> 3,259 instructions per
//!   cycle); moving a reused timer later is one CAS, and using one due
//!   before the new deadline as it is skips a reset of about 170
//!   instructions. The cache was one `ArrayQueue` per pool, which both
//!   cores popped and pushed on every wait; striped by thread (`Spares`,
//!   128 per stripe) the 2-worker 64-tasks-on-16 cell ran 1.13-1.19x
//!   faster (same run, A/B builds).
//! * Finished waiter records are kept for reuse in the same thread-striped
//!   `Spares` (64 per stripe), when nobody else holds them: a reused
//!   record keeps its event's allocation, so a wait allocates nothing. A
//!   shared cache of records (one `ArrayQueue`) had cost 6-7 % in that
//!   cell over plain allocation; striped, reuse is 1.03-1.04x faster than
//!   plain allocation there.
//! * The counters every wait writes (served after a wait, time waited) are
//!   in the per-thread stripes too, beside the acquired-at-once one.
//! * Waiting takes `event-listener`'s per-event lock in listen, notify and
//!   poll: about 400 instructions per wait more than a bare `AtomicWaker`
//!   would (2,366 vs 2,778 per contended cycle without a deadline).
//!
//! * The guard keeps the resource and the pool handle side by side
//!   (`Option<Entry>` and `Arc<Shared>`) and builds a borrowed `Held` token
//!   only when the resource leaves it. Holding one `Held<Arc<Shared>>`
//!   (an `Option<(Arc, Box)>`) in the guard made the uncontended
//!   acquire+release about 40% slower (33 -> 23-24 M cycles/s, one task,
//!   interleaved runs); the side-by-side layout got back to 27-30 M.
//!
//! Instruction counts below are callgrind's, per uncontended
//! acquire+release (`bench/scripts/callgrind-uncontended.sh`: one task, a
//! pool of one no-op resource, defaults; a bare `ArrayQueue` pop+push is 99).
//!
//! * `Held`'s drop is inline and branch-only when the token was consumed;
//!   the unknown-state drop is a cold function. Every checkout consumes one
//!   (`into_parts`), and the out-of-line drop glue of the empty token cost
//!   26 instructions per cycle (399 -> 373).
//! * The fast path comes first in the acquire future and holds little
//!   across its one await (the first poll of `Manager::recycle`, which needs
//!   the task's context): the resource's token, the recycle future and the
//!   pool handle. No `Deadline` is built unless the recycle pends (and then
//!   only its start goes on), and everything else (waiting, creating,
//!   hooks, replacing a resource) comes after it, from a `Start` value. The
//!   nested `recycle` future's drop glue, the deadline's drop flag and the
//!   moves of the `Got` loop state cost 57 instructions per cycle (356 ->
//!   299); `checked_out` inline, 17 more (373 -> 356). The slow path was a
//!   second future (`acquire_slow`) for a while; once the rest was lean, one
//!   future was as fast on the fast path (245 -> 246) and cheaper when
//!   waiting (4,121 -> 4,062 per acquire in `uncontended quickslot-wait`).
//!   That slow path does not try the idle store a second time
//!   (`Core::try_acquire_slot`): 4,170 -> 4,121.
//! * The return is one inline chain into the guard's drop glue
//!   (`Pooled::drop`, `Held::give_back`, `Held::park`, the first round of
//!   `Core::release`; the loop for waiters and re-checks stays out of line),
//!   and the guard's `Option<Entry>` is `ManuallyDrop` (its `Drop` always
//!   takes it), so the return is one call and no second test of the entry:
//!   299 -> 283.
//! * The acquire future is `acquire_within` itself. It was an enum of it
//!   and a boxed wrapper that recorded the caller's location for leak
//!   reports; now the location is an argument, stamped at checkout. The
//!   enum's drop glue and poll kept the first poll out of the caller's
//!   code: 272 -> 247 (and one allocation less per acquire with leak
//!   detection). The timeout argument is `Timeout::Pool` unless the caller
//!   gave one, so `acquire()` reads no setting (273 -> 272); one flag,
//!   `checkout_extras`, gates the lifetime, idle-time and hook tests of the
//!   fast path (281 -> 273); a recycle that went well is one test of an
//!   `Option` rather than a jump table over `Recycled` (283 -> 281).
//!   Returning that result as one `Option` of (failure, deadline start)
//!   rather than a pair of options: 247 -> 242.
//! * The acquired-at-once counter is striped per thread, each stripe on
//!   its own line; the first 16 threads (at a time) own a stripe, which
//!   they alone write, so they count with a plain load and store (one
//!   `inc` on x86) instead of a locked add. Others share 8 stripes with a
//!   locked add. The stripe is a destructor-free thread-local (one load;
//!   a second, cold thread-local gives an owned stripe back when its thread
//!   ends). Two instructions more than the locked add (242 -> 244), one
//!   locked instruction less per acquire. The counter costs 8 instructions
//!   in all (without it, 281 -> 273 at the time); a single unstriped one
//!   (as in a68e9e5) would be a few less, but one line written by every
//!   core.
//!
//! # Where a contended wait's time goes
//!
//! `perf record -e cpu-clock` of `bench`'s `one_cell quickslot 2 64 16
//! yield` (2 workers, 64 tasks on 16, hold across a yield; 2-core VM, at
//! 477ef63), shares of all samples: tokio's scheduling and waking about
//! 17 %; the waiter line (`SegQueue` push and pop) 12.6 %; the acquire
//! future 12.5 %, a quarter of it the `Arc<Shared>` clone each checkout
//! makes (a line every core writes), and the guard's drop 6.4 %, with that
//! `Arc`'s decrement; `event-listener` (listen, notify, remove, each under
//! the record's lock) 9.3 %; the deadline's timer about 8 % (of which 3 %
//! is the runtime-handle clone `Handle::try_current` makes to tell which
//! runtime a cached timer may serve: Tokio has no borrowing way to ask);
//! clock reads 7 % (the wait's start, shared by the deadline and the
//! statistics, its end for the statistics, and Tokio's own); the hand-off
//! (`hand_to_waiter`) 6.6 %. Without the deadline
//! (`acquire_timeout(None)`) the cell runs 1.10-1.13x faster.
//!
//! Per cycle, in nanoseconds of CPU time over both workers (`perf` share
//! times CPU time over cycles, same run, at 1619e2d; about 760 ns per
//! cycle in all): the deadline's timer about 62 (its `AtomicWaker`
//! registration 16, because a reused timer last served another task, so
//! Tokio clones this task's waker and drops the old one, 8 more; the
//! runtime-handle clone 13; the cache and the `poll_fn` about 25); clock
//! reads 77 (two of them the wait's start and end, the rest Tokio's own);
//! the waiter line 72; `event-listener` 32.
//!
//! What the defaults cost against tokio's `Semaphore` + `ArrayQueue`
//! (which has neither a deadline nor statistics), same run, medians of
//! paired ratios over the rounds in one VM mode (at fba8c84's pool code,
//! 6 of 10-12 rounds of 0.5 s), 64 / 256 tasks on 16: without the
//! end-of-wait clock read of the statistics 1.035x / 1.048x; with
//! `acquire_timeout(None)` 1.117x / 1.128x; without both 1.157x / 1.177x,
//! which is 0.93x / 1.01x `Semaphore` + `ArrayQueue` (1.247x / 1.165x the
//! defaults in those runs; deadpool 0.774x / 0.757x).
//!
//! # One sweep per pool instead of a timer per wait: built, measured, not kept
//!
//! Waits under the pool's `acquire_timeout` join the line in the order of
//! their deadlines, so one timer could end them all. The line is a
//! `SegQueue`, which cannot be walked, but a sweep can pop the head as the
//! compaction does: end every record whose deadline passed (a new
//! `EXPIRED` state, set by whoever popped it, like `CLOSED`), put the first
//! live one back into `front`, and sleep until its deadline. A prototype
//! did that (one task per pool, on the runtime of the first wait that
//! found none, stopping when nobody waits, with a Dekker pair between a
//! joining wait and a stopping sweep): the deadline went into the record
//! before the push, a wait with a per-call deadline longer than the pool's
//! was counted so that waits behind it (which its head position would
//! hold up) armed their own timers, and waits on another runtime armed
//! theirs too.
//!
//! It bought nothing: in six A/B runs of 64 tasks on 16 (12 to 20
//! interleaved rounds each, paired ratios over the rounds where the VM
//! stayed in one mode) its median ratio to the timer per wait was
//! 0.95-1.03x, while `acquire_timeout(None)` was 1.12-1.13x in the same
//! runs (a version with the deadline in an atomic of the record, which
//! saved the `Arc::get_mut` that setting it had cost, was one of the
//! 0.95x ones: the caller then copied the 1 KB acquire future on every
//! acquire, which the timer-per-wait build does not). The timer's own
//! work went, but a wait still had to ask which runtime it is on (the sweep task serves one runtime: one that is
//! not driven, a current-thread runtime outside `block_on`, would leave
//! waits of another runtime past their deadlines, and a paused clock is
//! per runtime), which is the same `Handle::try_current` clone; and the
//! bookkeeping (the deadline written into the record, two more shared
//! words read, a larger acquire future that the caller now copied) cost
//! about what the timer had. It also made a wait whose clock read and push
//! were far apart (a preempted thread) expire late by that gap. So the
//! timer per wait stays; what would pay is a way to know the current
//! runtime without cloning its handle, which Tokio does not offer.
//!
//! # The guard's own pool reference: measured, kept
//!
//! Every checkout clones the `Arc<Shared>` into its guard and the guard's
//! drop releases it: two `lock`-prefixed adds on one line that every core
//! writes. In the contended cell the clone's `lock xadd` alone is about
//! 17 ns of the acquire future's 79 (`perf annotate`, at fba8c84), and a
//! measurement-only build that skipped both (never released, so it leaked
//! the pool) ran 64 tasks on 16 at 1.04-1.07x and 256 on 16 at 1.04x
//! (medians of paired ratios over the rounds where the VM stayed in one
//! mode, 10-12 interleaved rounds). On the uncontended path (`bench`'s
//! `uncontended quickslot`, about 19 ns per cycle) the two `lock`-prefixed
//! operations are about 18 % of the samples, the release's `SeqCst` fence
//! (a `lock or`) another 8 %: together most of what one task pays over the
//! bare `ArrayQueue` floor.
//!
//! It stays because a release reads the pool after it publishes the
//! resource: it parks the grant (idle store or a waiter's cell), fences
//! and re-checks the waiter count (the core's Dekker pair). From that
//! moment another thread may take the resource, or a closing
//! pool may drop it. Any scheme where the pool reference travels with the
//! resource (each slot owning one `Arc`, moved between the idle entry and
//! the guard) or where the slots together hold one reference (released
//! when a closed pool's size reaches zero) lets the last pool handle's
//! close free the pool inside that window, while the releaser still reads
//! it. Closing the window needs the releaser to hold a reference of its
//! own until it is done, which is the count this would save, or an epoch
//! scheme, far more machinery than the 4-7 % it would buy.
//!
//! # What loom found
//!
//! Model 9a (a shrink racing acquires and releases) at three preemptions
//! found two bugs now fixed in `raw`: a grow that raced a shrink left the
//! pool above its maximum for good (the grow now gives its slot back while
//! the pool is too large), and a release that shed its grant could leave a
//! waiter asleep beside an idle item (a release that sheds now re-checks
//! like one that parks). Model 6 found two shedders both shedding below
//! `max_size` after a shrink (shedding is now one atomic step).
//!
//! Models 10a and 10b (shared capacity) found that a pool can close an idle
//! resource for a waiter of another pool that was served a moment before:
//! the budget's count of waiters drops only after the hand-over. The close
//! is needless but loses no unit; the models assert exactly that.
//!
//! # Shared capacity
//!
//! A [`Capacity`](crate::Capacity) is a second core with no items: its
//! slots are permits and its line holds the acquires of every member that
//! wait for one, so the fair hand-off and its proofs carry over. A member's
//! own slots and the permits are separate counts: an acquire first gets a
//! slot of its pool (its place there, bounded by `max_size`), then a
//! permit (its place across pools). Taking the permit first would let an
//! acquire hold a unit of the shared budget while its own pool is full.
//! Tying the two into one count in the core was the other option; it
//! would put a second budget check on every grow of every pool, and an
//! acquire blocked by its own pool's `max_size` would have no place in the
//! shared line. The permit rides in the `Slot` token (and so in `Held`),
//! so every departure path that frees a slot frees its permit with it.
//!
//! # Queue compaction
//!
//! Cancelled waiter records stay in the line until a release skips them. A
//! cancel that finds many of them trims the head of the line: it drops
//! cancelled records up to the first live one, which goes into a one-record
//! `front` slot that releasers serve before the queue. The first version
//! popped every record into a `Vec` and pushed the live ones back: releases
//! meanwhile found the line empty and parked, one re-check moved one grant,
//! so a waiter could sleep beside idle resources, and the live records went
//! back behind newer arrivals.
