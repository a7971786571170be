//! Replays the committed fuzz corpus and a few thousand seeded inputs
//! through the fuzz harness, on the stable toolchain and without cargo-fuzz.
//!
//! `cargo test --test fuzz_replay` (add `--features postgres` for the
//! `pg_config` target). The harness is `quickslot_testkit::fuzzing`. Inputs
//! that once crashed a target are kept below as named regression tests.

use std::fs;
use std::path::Path;

use quickslot_testkit::fuzzing::{run_config, run_ops};

/// Runs `target` on every file of `fuzz/corpus/<name>/`, and returns how
/// many there were.
fn replay_corpus(name: &str, target: fn(&[u8])) -> usize {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(name);
    let mut files: Vec<_> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|entry| entry.expect("a directory entry").path())
        .collect();
    files.sort();
    for file in &files {
        let data = fs::read(file).expect("a corpus file");
        let result = std::panic::catch_unwind(|| target(&data));
        if let Err(panic) = result {
            eprintln!("corpus file {} failed", file.display());
            std::panic::resume_unwind(panic);
        }
    }
    files.len()
}

/// xorshift64*: a fixed-seed generator, so the random inputs are the same
/// on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn bytes(&mut self, max_len: usize) -> Vec<u8> {
        let len = (self.next() % (max_len as u64 + 1)) as usize;
        (0..len).map(|_| self.next() as u8).collect()
    }
}

/// Runs `target` on `count` inputs of up to `max_len` bytes from `seed`.
fn replay_random(seed: u64, count: usize, max_len: usize, target: fn(&[u8])) {
    let mut rng = Rng(seed);
    for i in 0..count {
        let data = rng.bytes(max_len);
        let result = std::panic::catch_unwind(|| target(&data));
        if let Err(panic) = result {
            eprintln!("random input {i} of seed {seed:#x} failed: {data:?}");
            std::panic::resume_unwind(panic);
        }
    }
}

#[test]
fn ops_corpus() {
    assert!(replay_corpus("ops", run_ops) > 0, "the ops corpus is empty");
}

#[test]
fn config_corpus() {
    assert!(
        replay_corpus("config", run_config) > 0,
        "the config corpus is empty"
    );
}

#[test]
fn ops_random_seeds() {
    replay_random(0x5eed_0001, 3000, 600, run_ops);
}

#[test]
fn config_random_seeds() {
    replay_random(0x5eed_0002, 3000, 64, run_config);
}

#[cfg(feature = "postgres")]
#[test]
fn pg_config_corpus() {
    use quickslot_testkit::fuzzing::run_pg_config;
    assert!(
        replay_corpus("pg_config", run_pg_config) > 0,
        "the pg_config corpus is empty"
    );
}

#[cfg(feature = "postgres")]
#[test]
fn pg_config_random_seeds() {
    replay_random(
        0x5eed_0003,
        3000,
        96,
        quickslot_testkit::fuzzing::run_pg_config,
    );
}

#[test]
fn empty_inputs() {
    run_ops(&[]);
    run_config(&[]);
}

// ----- regressions: inputs that once failed a target -----

/// `PGHOSTADDR=::1` with no `PGHOST`: the configuration has an address and
/// no host name, which the harness first took for a missing host (found by
/// the random seeds of `pg_config_random_seeds`).
#[cfg(feature = "postgres")]
#[test]
fn pg_config_hostaddr_without_host() {
    quickslot_testkit::fuzzing::run_pg_config(&[
        243, 52, 198, 42, 216, 24, 37, 132, 191, 78, 54, 111, 197, 16, 223, 39, 170, 134, 23,
    ]);
}

/// A resource returned after 90 % of `max_lifetime` but before all of it:
/// the pool dropped it as expired because each resource's lifetime is
/// `max_lifetime` with jitter (0.9 to 1.0), which the harness first ignored
/// (found by the `ops` target after jittered lifetimes landed). The harness
/// now reads `ResourceInfo::lifetime` and checks it lies in that range.
#[test]
fn ops_return_with_jittered_lifetime() {
    quickslot_testkit::fuzzing::run_ops(&[
        252, 252, 0, 40, 38, 17, 0, 3, 0, 114, 172, 178, 178, 178, 41, 178, 178, 175, 178, 178,
        178, 178, 0, 10, 10, 10, 178, 35, 125, 0, 0, 47, 0, 45, 8, 0, 10, 10, 10, 178, 35, 125,
        106, 175, 35, 125, 172, 178, 178, 178, 63, 0, 0, 1, 242, 255, 255, 255, 255, 208, 255, 210,
        8, 0, 0, 0, 47, 0, 45, 8, 0, 10, 10, 10, 178, 35, 125, 106, 118, 178, 172, 178, 178, 178,
        178, 178, 178, 175, 178, 178, 178, 178, 178, 35, 1, 73, 36, 146, 73, 36, 146, 75, 178, 255,
        230, 10, 69, 5, 38, 35, 64, 0, 194, 191, 220, 191, 191, 192, 255, 255, 1, 0, 0, 0, 47, 0,
        45, 8, 0, 10, 10, 10, 178, 35, 125, 106, 118, 0, 0, 47, 0, 45, 178, 175, 178, 178, 178,
        178, 0, 10, 10, 10, 178, 35, 125, 106, 118, 178, 172, 178, 229, 178, 63, 0, 0, 1, 9, 0, 0,
        0, 0, 47, 17, 0, 3, 0, 114, 252, 34, 178, 178, 178, 178, 178, 175, 178, 178, 178, 178, 178,
        35, 1, 73, 36, 146, 73, 36, 146, 75, 178, 255, 230, 10, 69, 5, 38, 35, 64, 0, 194, 191, 63,
        191, 191, 192, 255, 255, 1, 0, 0, 0, 47, 0, 45, 8, 0, 34, 34, 34, 34, 34, 23, 1, 0, 0, 0,
        0, 0, 0, 47, 0, 45, 178, 175, 178, 178, 178, 178, 0, 10, 10, 10, 178, 35, 125, 106, 118,
        178, 172, 178, 178, 178, 63, 0, 0, 1, 9, 0, 0, 0, 0, 47, 0, 45, 8, 0, 0, 0, 47, 0, 45, 8,
        0, 10, 10, 10, 178, 35, 125, 106, 118, 178, 172, 178, 178, 178, 178, 178, 178, 175, 178,
        178, 178, 178, 178, 35, 1, 73, 36, 146, 73, 36, 146, 75, 178, 255, 230, 10, 69, 5, 38, 35,
        64, 0, 194, 191, 220, 191, 191, 192, 255, 255, 1, 0, 0, 0, 47, 0, 45, 8, 0, 10, 10, 10,
        178, 35, 125, 106, 118, 0, 0, 47, 0, 45, 178, 175, 178, 178, 178, 178, 0, 10, 10, 10, 178,
        35, 125, 106, 118, 178, 172, 178, 229, 178, 63, 0, 0, 1, 9, 0, 0, 0, 0, 47, 0, 45, 8, 0,
        10, 10, 10, 178, 35, 125, 106, 118, 178, 172, 135, 178, 178, 178, 178, 178, 178, 178, 178,
        178, 178, 178, 175, 35, 125, 106, 118, 178, 10, 10, 172, 10, 178, 35, 125, 106, 118, 0, 0,
        47, 0, 45, 8, 0, 10, 10, 10, 178, 35, 125, 106, 118, 178, 172, 178, 178, 178, 41, 178, 178,
        175, 178, 178, 178, 178, 0, 10, 10, 10, 178, 35, 125, 0, 0, 47, 0, 45, 8, 0, 10, 10, 10,
        178, 35, 125, 106, 175, 35, 125, 172, 178, 178, 178, 63, 0, 0, 1, 9, 0, 0, 0, 0, 47, 0, 45,
        8, 0, 0, 0, 47, 0, 45, 8, 0, 10, 10, 10, 178, 35, 125, 106, 118, 178, 172, 178, 178, 178,
        178, 178, 178, 175, 178, 178, 178, 178, 178, 35, 1, 73, 36, 146, 73, 36, 146, 75, 178, 255,
        230, 10, 69, 5, 38, 35, 64, 0, 194, 191, 220, 191, 191, 192, 255, 255, 1, 0, 0, 0, 47, 0,
        45, 8, 0, 10, 10, 10, 178, 35, 125, 106, 118, 0, 0, 47, 0, 45, 178, 175, 178, 178, 178,
        178, 0, 10, 10, 10, 178, 35, 125, 106, 118, 178, 172, 178, 229, 178, 63, 0, 0, 1, 9, 0, 0,
        0, 0, 47, 0, 45, 8, 0, 10, 10, 10, 178, 35, 125, 106, 118, 178, 172, 135, 178, 178, 178,
        178, 178, 178, 178, 178, 178, 178, 178, 175, 35, 125, 106, 118, 178, 10, 10, 172, 10, 178,
        35, 125, 106, 118, 0, 0, 47, 0, 45, 8, 0, 10, 10, 10, 178, 35, 125, 106, 118, 178, 172,
        178, 178, 178, 41, 178, 178, 175, 178, 178, 178, 178, 0, 10, 10, 10, 178, 35, 125, 0, 0,
        47, 0, 45, 8, 0, 10, 10, 10, 178, 35, 125, 106, 175, 106, 178, 178, 178, 0, 10, 10, 10, 0,
        45, 8, 0, 10, 10, 10, 178, 58, 154, 202, 0, 35, 125, 106, 118, 178, 172, 135, 178, 178,
        178, 178, 178, 178, 178, 178, 178, 178, 178, 175, 35, 125, 106, 118, 178, 10, 10, 172, 10,
        178, 35, 125, 106, 118, 0, 0, 47, 0, 45, 8, 0, 10, 10, 10, 178, 35, 125, 106, 118, 178,
        172, 178, 178, 178, 41, 178, 178, 175, 178, 178, 178, 178, 0, 10, 10, 10, 178, 35, 125, 0,
        0, 47, 0, 45, 8, 0, 10, 10, 10, 178, 35, 125, 106, 175, 106, 178, 178, 178, 0, 10, 10, 10,
        16, 47, 16, 0, 34, 0, 34, 34,
    ]);
}
