//! Prints `loom_tests::SEEDED_BUGS` for `scripts/loom`: one line per seeded
//! bug, its name then the models that must catch it, separated by spaces.

#[cfg(loom)]
fn main() {
    for bug in loom_tests::SEEDED_BUGS {
        println!("{} {}", bug.name, bug.caught_by.join(" "));
    }
}

#[cfg(not(loom))]
fn main() {
    eprintln!("seeded_bugs: build with RUSTFLAGS=\"--cfg loom\" (scripts/loom does)");
    std::process::exit(2);
}
