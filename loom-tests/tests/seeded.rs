//! Checks for the seeded-bug pass of `scripts/loom`: the table
//! `loom_tests::SEEDED_BUGS` matches the code, and the quickslot under test
//! was built with the bug the script asked for.
#![cfg(loom)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use loom_tests::SEEDED_BUGS;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src/") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The quoted names after each `quickslot_bug = ` in `text`.
fn switch_names(text: &str) -> BTreeSet<String> {
    text.split("quickslot_bug = \"")
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .map(str::to_owned)
        .collect()
}

#[test]
fn table_matches_the_switches_and_the_models() {
    let table: BTreeSet<String> = SEEDED_BUGS.iter().map(|b| b.name.to_owned()).collect();
    assert_eq!(table.len(), SEEDED_BUGS.len(), "a bug is listed twice");

    let mut files = Vec::new();
    rust_files(&repo().join("src"), &mut files);
    let mut in_src = BTreeSet::new();
    for file in &files {
        in_src.extend(switch_names(&std::fs::read_to_string(file).expect("read")));
    }
    assert_eq!(
        table, in_src,
        "SEEDED_BUGS vs the cfg(quickslot_bug) switches in src/"
    );

    let manifest = std::fs::read_to_string(repo().join("Cargo.toml")).expect("Cargo.toml");
    let values = manifest
        .split("cfg(quickslot_bug, values(")
        .nth(1)
        .and_then(|rest| rest.split(')').next())
        .expect("check-cfg for quickslot_bug in Cargo.toml");
    let declared: BTreeSet<String> = values
        .split(',')
        .map(|v| v.trim().trim_matches('"').to_owned())
        .collect();
    assert_eq!(
        table, declared,
        "SEEDED_BUGS vs Cargo.toml's check-cfg values"
    );

    let models =
        std::fs::read_to_string(repo().join("loom-tests/tests/models.rs")).expect("models");
    for bug in SEEDED_BUGS {
        assert!(!bug.caught_by.is_empty(), "{}: no catcher", bug.name);
        for model in bug.caught_by {
            assert!(
                models.contains(&format!("#[test]\nfn {model}()")),
                "{}: no model {model} in tests/models.rs",
                bug.name
            );
        }
    }
}

#[test]
fn built_with_the_requested_bug() {
    let wanted = std::env::var("QUICKSLOT_SEED_BUG").unwrap_or_default();
    assert_eq!(
        quickslot::SEEDED_BUG,
        wanted,
        "quickslot was built with seeded bug {:?}, QUICKSLOT_SEED_BUG asks for {wanted:?}",
        quickslot::SEEDED_BUG
    );
}
