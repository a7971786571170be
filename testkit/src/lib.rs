//! Test scaffolding for quickslot, kept out of the library and its
//! dependencies. Everything here uses only quickslot's public API.
//!
//! * [`fuzzing`]: the deterministic fuzz/replay harness that the cargo-fuzz
//!   targets in `fuzz/` and `tests/fuzz_replay.rs` drive;
//! * [`managers`]: scripted, counting managers for the integration tests;
//! * [`proxy`]: a fault-injecting loopback TCP proxy;
//! * `pgload` (feature `postgres`): PostgreSQL load generation and checks,
//!   shared by `tests/chaos.rs` and `examples/soak.rs`.
//!
//! Not published; no stability promise.
#![warn(missing_docs)]

pub mod fuzzing;
pub mod managers;
#[cfg(feature = "postgres")]
pub mod pgload;
pub mod proxy;
