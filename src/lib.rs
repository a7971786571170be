//! # quickslot
//!
//! A fair, lock-free async resource pool: database connections or any other
//! reusable object, handed out with no lock on the acquire/release path.
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
#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]
#![deny(unsafe_code, unsafe_op_in_unsafe_fn)]
#![warn(clippy::undocumented_unsafe_blocks)]

// The layer above the core (the `pool` face over `acquire`, `upkeep`,
// `create`, `recycle` and `shared`), leaf modules, then the concurrency core
// (`raw`, `handoff`, `idle`, over the `sync` facade). The modules form a DAG:
// see the `implementation` module.
mod acquire;
mod blocking;
mod builder;
mod config;
mod create;
mod guard;
mod pool;
mod recycle;
mod shared;
mod upkeep;

mod error;
mod hooks;
mod jitter;
mod leak;
mod manager;
#[cfg(feature = "metrics")]
mod metrics;
mod status;
mod timer;

#[allow(unsafe_code)] // the waiter record's cell: see its module docs
mod handoff;
mod idle;
mod raw;
mod sync;

pub mod implementation;

#[cfg(loom)]
#[doc(hidden)]
pub mod loom_core;

#[cfg(feature = "postgres")]
pub mod postgres;

pub use crate::builder::{Builder, MAX_SIZE_LIMIT};
pub use crate::error::{
    BuildError, Cause, Error, HookError, HookKind, TimeoutPhase, TryAcquireError,
};
pub use crate::guard::Pooled;
pub use crate::hooks::{Hook, HookFuture};
pub use crate::idle::ReuseOrder;
pub use crate::manager::{Manager, ResourceInfo};
pub use crate::pool::{Drained, Pool};
pub use crate::status::{Discarded, Status};
