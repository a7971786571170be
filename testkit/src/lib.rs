//! Test scaffolding for quickslot, kept out of the library and its
//! dependencies. Everything here uses only quickslot's public API.
//!
//! * [`fuzzing`]: the deterministic fuzz/replay harness that the cargo-fuzz
//!   targets in `fuzz/` and `tests/fuzz_replay.rs` drive;
//! * [`managers`]: scripted, counting managers for the integration tests;
//! * [`proxy`]: a fault-injecting loopback TCP proxy;
//! * `pgload` (feature `postgres`): PostgreSQL load generation and checks,
//!   shared by `tests/chaos.rs` and `examples/soak.rs`;
//! * [`pg_url`]: the server the PostgreSQL tests run against.
//!
//! Not published; no stability promise.
#![warn(missing_docs)]

pub mod fuzzing;
pub mod managers;
#[cfg(feature = "postgres")]
pub mod pgload;
pub mod proxy;

/// The server the PostgreSQL tests run against: `QUICKSLOT_PG_URL`, or
/// `None` (the caller skips) when it is unset or `QUICKSLOT_SKIP_PG=1`.
///
/// # Panics
///
/// When `CI` is set and `QUICKSLOT_PG_URL` is not (unless
/// `QUICKSLOT_SKIP_PG=1`): CI must really run these tests.
pub fn pg_url() -> Option<String> {
    if std::env::var_os("QUICKSLOT_SKIP_PG").is_some_and(|v| v == "1") {
        eprintln!("skipping: QUICKSLOT_SKIP_PG=1");
        return None;
    }
    match std::env::var("QUICKSLOT_PG_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            assert!(
                std::env::var_os("CI").is_none(),
                "QUICKSLOT_PG_URL is not set but CI is: run the PostgreSQL tests \
                 through scripts/with-postgres"
            );
            eprintln!("skipping: QUICKSLOT_PG_URL is not set (use scripts/with-postgres)");
            None
        }
    }
}
