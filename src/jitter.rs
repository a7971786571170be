//! Random jitter, so that many resources or pools do not act in lockstep.

use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

/// A random number in [0, 1). Std's `RandomState` gives each call fresh
/// keys (seeded from the OS once per thread); enough for jitter.
pub(crate) fn random_unit() -> f64 {
    let x = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    (x >> 11) as f64 / (1u64 << 53) as f64
}

/// A resource's own lifetime: `max_lifetime` scaled by a factor in
/// [0.9, 1.0], drawn once at creation.
pub(crate) fn jittered(max_lifetime: Duration) -> Duration {
    max_lifetime.mul_f64(0.9 + random_unit() / 10.0)
}
