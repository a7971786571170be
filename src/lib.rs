//! # quickslot
//!
//! A fair, lock-free async resource pool: database connections or any other
//! reusable object, handed out with no lock on the acquire/release fast path
//! (a waiting acquire parks on its own `event-listener` event, whose
//! operations take that event's lock).
//!
//! * Idle resources sit in a `crossbeam_queue::ArrayQueue` (or a lock-free
//!   stack for LIFO reuse); counts are atomics; waiting uses
//!   `event-listener`, and only when someone actually waits.
//! * **Fair direct hand-off**: while anyone waits, a returned resource goes
//!   straight to the longest waiter. The obvious lock-free design (pop, or
//!   wait and retry) lets running tasks barge past sleeping ones, which
//!   collapses throughput and the latency tail as soon as tasks outnumber
//!   resources.
//! * **Cancel safe**: dropping an acquire at any point loses no resource,
//!   no slot and no hand-off.
//! * **Typed errors**: a failed create is returned at once, a timeout names
//!   its phase and the last error seen.
//! * **Async and blocking on one line**: [`Pool::acquire`] and
//!   [`Pool::acquire_blocking`] (plain threads, `spawn_blocking`) wait in the
//!   same FIFO line; [`Pool::with`] and [`Pool::with_blocking`] scope a use.
//! * **No capacity lost to panics**: a panic in user code on any pool path
//!   drops the resource it touched and frees its slot.
//! * **Overload control**: [`Builder::max_waiters`] bounds the line, and
//!   [`Builder::fail_fast_when_late`] refuses at once an acquire that would
//!   wait past its deadline.
//! * **One budget for many pools**: a [`Capacity`] shared by per-tenant (or
//!   per-shard) pools caps their sum, gives a freed unit to the longest
//!   waiter across them, and lets a busy pool take the units of idle ones.
//! * **For pool crates**: [`unmanaged::Pool`] for objects you make yourself,
//!   any printable `Manager::Error`, [`Manager::detach`], [`Pool::downgrade`],
//!   [`ResourceInfo::id`]. How it is built: [`implementation`].
//! * Checked with `loom` (see `loom-tests/`) and fuzzed (see `fuzz/`).
//!
//! ```
//! use quickslot::{Manager, Pool};
//!
//! struct Connector;
//!
//! impl Manager for Connector {
//!     type Resource = String;
//!     type Error = std::io::Error;
//!
//!     async fn create(&self) -> Result<String, std::io::Error> {
//!         Ok(String::from("a connection"))
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let pool = Pool::builder(Connector).max_size(8).build().unwrap();
//! let conn = pool.acquire().await.unwrap();
//! assert_eq!(conn.as_str(), "a connection");
//! # }
//! ```
//!
//! # Cargo features
//!
//! `tokio` is on by default; the rest are off.
//!
//! | feature | what it adds |
//! |---|---|
//! | `tokio` (default) | [Tokio](https://docs.rs/tokio) for every timer (deadlines, create and recycle timeouts, `drain`), the background upkeep task and the background finish of abandoned creates (on the current runtime), and blocking acquires (on the current runtime, or a small one of the crate's own); [`Instant`] is `tokio::time::Instant`, so a paused Tokio clock applies to the pool |
//! | `smol` | the same on [smol](https://docs.rs/smol) / [async-io](https://docs.rs/async-io): `async_io::Timer`, tasks on smol's global executor, `async_io::block_on`; all work under any executor. Use it with `default-features = false` for a build without Tokio. With `tokio` on too, Tokio serves what happens inside a Tokio runtime and smol the rest (blocking acquires outside a runtime still use Tokio's, which runs managers of both kinds; a pool built outside a runtime starts its upkeep at its first create) |
//! | neither | a pool for any executor without timers or tasks: `acquire` (no deadline), `try_acquire`, release, `close`, `resize`, `status`, `retain`, blocking acquires (on a thread-parking `block_on`). The default `acquire_timeout` is `None`, `build` refuses with [`BuildError::NeedsRuntime`] every setting that needs a timer or a task (see [Without a runtime feature](Builder#without-a-runtime-feature)), and the methods that take a deadline (`acquire_timeout`, `acquire_blocking_timeout`, `drain`) are not there |
//! | `postgres` | (implies `tokio`) the [`tokio-postgres`](https://docs.rs/tokio-postgres) adapter, module `postgres` (connection manager, statement cache, tracked transactions, `PG*` environment parsing) |
//! | `sqlite` | (implies `tokio`) the [`rusqlite`](https://docs.rs/rusqlite) adapter, module `sqlite`, with SQLite compiled in (checked settings such as WAL and the busy timeout, in-memory databases, `interact` on Tokio's blocking pool) |
//! | `diesel` | (implies `tokio`) the [Diesel](https://docs.rs/diesel) adapter, module `diesel` (a manager for any Diesel connection type, `interact` on Tokio's blocking pool, r2d2's defaults and a migration table); enables no Diesel backend |
//! | `metrics` | gauges and histograms through the [`metrics`](https://docs.rs/metrics) facade (see [Metrics](#metrics)) and `Pool::publish_metrics` |
//!
//! Items that need a feature say so in their documentation.
//!
//! # Metrics
//!
//! With the `metrics` feature, every pool built with
//! [`Builder::metrics`]`(true)` (the default) records these through the
//! `metrics` facade, each with one label, `pool`, set to the pool's
//! [`Builder::name`] (default `"quickslot"`):
//!
//! | name | kind | what |
//! |---|---|---|
//! | `quickslot_size` | gauge | live resources plus creates in flight |
//! | `quickslot_idle` | gauge | idle resources |
//! | `quickslot_in_use` | gauge | checked-out resources |
//! | `quickslot_waiting` | gauge | acquires waiting in line |
//! | `quickslot_acquire_wait_seconds` | histogram | time an acquire waited in line |
//! | `quickslot_create_seconds` | histogram | time a create took (failed ones too) |
//! | `quickslot_hold_seconds` | histogram | time a resource was checked out |
//!
//! Gauges are published by the pool's background upkeep task each round (at
//! most every second while the feature is on) and whenever you call
//! `Pool::publish_metrics` (only then in a build without a runtime feature,
//! which has no background task); histograms are recorded as things happen. The
//! metric handles are registered when the pool is built, so install the
//! recorder before building the pool.
#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]
#![deny(unsafe_code, unsafe_op_in_unsafe_fn)]
#![warn(clippy::undocumented_unsafe_blocks)]
// Items behind a cargo feature say so in their documentation, not with
// `doc(cfg)`: that attribute needs nightly's `feature(doc_cfg)`, and these
// docs must build on stable with `--cfg docsrs` as docs.rs passes it
// (scripts/test checks that).

// The layer above the core (the `pool` face over `acquire`, `upkeep`,
// `create`, `recycle` and `shared`), leaf modules, then the concurrency core
// (`raw`, `handoff`, `idle`, over the `sync` facade). The modules form a DAG:
// see the `implementation` module.
mod acquire;
mod blocking;
mod builder;
mod capacity;
mod config;
mod create;
mod guard;
mod pool;
mod recycle;
mod scoped;
mod shared;
mod upkeep;

mod error;
mod hooks;
mod jitter;
mod leak;
mod manager;
#[cfg(feature = "metrics")]
mod metrics;
mod rt;
mod status;
mod timer;

#[allow(unsafe_code)] // the waiter record's cell: see its module docs
mod handoff;
mod idle;
mod raw;
mod sync;

pub mod implementation;
pub mod unmanaged;

#[cfg(loom)]
#[doc(hidden)]
pub mod loom_core;

#[cfg(feature = "postgres")]
pub mod postgres;

#[cfg(feature = "sqlite")]
pub mod sqlite;

#[cfg(feature = "diesel")]
pub mod diesel;

pub use crate::builder::{Builder, MAX_SIZE_LIMIT};
pub use crate::capacity::Capacity;
pub use crate::error::{
    BuildError, Cause, Error, HookError, HookKind, TimeoutPhase, TryAcquireError,
};
pub use crate::guard::Pooled;
pub use crate::hooks::{Hook, HookFuture};
pub use crate::idle::ReuseOrder;
pub use crate::manager::{Manager, ResourceInfo};
#[cfg(any(feature = "tokio", feature = "smol"))]
pub use crate::pool::Drained;
pub use crate::pool::Pool;
#[cfg(not(loom))]
pub use crate::pool::WeakPool;
pub use crate::rt::Instant;
pub use crate::status::{Discarded, Status};

/// The seeded bug this loom build carries (`""` for the real code), set by
/// `build.rs` from `QUICKSLOT_SEED_BUG`; the loom models check it.
#[cfg(loom)]
#[doc(hidden)]
pub const SEEDED_BUG: &str = env!("QUICKSLOT_BUILT_WITH_BUG");
