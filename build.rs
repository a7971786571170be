//! Only for the loom model check (`scripts/loom`); does nothing otherwise.
//!
//! Under `--cfg loom`, `QUICKSLOT_SEED_BUG=NAME` compiles this crate with
//! `--cfg quickslot_bug="NAME"`, which puts one known bug back into the core
//! (the names and the models that must catch each are
//! `loom_tests::SEEDED_BUGS`). Cargo reruns this script when the variable
//! changes, so switching bugs recompiles quickslot and the models only,
//! never the dependencies. The name is also passed on as the compile-time
//! variable `QUICKSLOT_BUILT_WITH_BUG` (empty for the real code), so the
//! models can check what they run against.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    if std::env::var_os("CARGO_CFG_LOOM").is_none() {
        return;
    }
    println!("cargo:rerun-if-env-changed=QUICKSLOT_SEED_BUG");
    let bug = std::env::var("QUICKSLOT_SEED_BUG").unwrap_or_default();
    if !bug.is_empty() {
        println!("cargo:rustc-cfg=quickslot_bug=\"{bug}\"");
    }
    println!("cargo:rustc-env=QUICKSLOT_BUILT_WITH_BUG={bug}");
}
