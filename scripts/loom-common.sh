# Shared by scripts/loom, scripts/loom-seeded and scripts/loom-deep (sourced).
#
# All loom builds go to one target directory, built with `--cfg loom` and the
# scripts/loom-rustc wrapper, so switching between the real core and a seeded
# bug only recompiles quickslot and the models, never the dependencies.

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export CARGO_TARGET_DIR="${QUICKSLOT_LOOM_TARGET:-$ROOT/target/loom}"
export RUSTFLAGS="--cfg loom"
export RUSTC_WRAPPER="$ROOT/scripts/loom-rustc"
export QUICKSLOT_BUG_STAMP="$CARGO_TARGET_DIR/quickslot-bug"
unset CARGO_ENCODED_RUSTFLAGS

# Every model in loom-tests/tests/models.rs, in order.
LOOM_MODELS=(
    m1_holder_and_waiter
    m2_two_waiters_two_releases
    m2_two_waiters_two_releases_lifo
    m3_granted_waiter_dropped
    m4_cancel_racing_grant
    m5_failed_create_frees_slot
    m5b_cancelled_create_frees_slot
    m6_close_racing_waiters_and_release
    m7_try_acquire_racing_acquire_and_release
    m8_broken_on_return_racing_waiter
    m9a_shrink_racing_acquire_and_release
    m9b_grow_racing_waiter
)

# Forgets how quickslot was built in the loom target directory, so that the
# next build compiles it again (with whatever QUICKSLOT_SEED_BUG says then).
loom_forget_quickslot() {
    rm -rf "$CARGO_TARGET_DIR"/release/.fingerprint/quickslot-*
    rm -f "$QUICKSLOT_BUG_STAMP"
}

# loom_build BUG: builds the models against quickslot with seeded bug BUG
# ("none" for the real code) and checks that this is what got built.
loom_build() {
    local bug="$1" built
    if [[ "$bug" == none ]]; then
        unset QUICKSLOT_SEED_BUG
    else
        export QUICKSLOT_SEED_BUG="$bug"
    fi
    built="$(cat "$QUICKSLOT_BUG_STAMP" 2>/dev/null || echo unknown)"
    if [[ "$built" != "$bug" ]]; then
        loom_forget_quickslot
    fi
    (cd "$ROOT" && cargo test -p loom-tests --release --test models --no-run)
    built="$(cat "$QUICKSLOT_BUG_STAMP" 2>/dev/null || echo unknown)"
    if [[ "$built" != "$bug" ]]; then
        echo "loom: built quickslot with seeded bug '$built', wanted '$bug'" >&2
        return 1
    fi
}
