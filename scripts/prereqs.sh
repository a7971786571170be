# Sourced by scripts/test and scripts/with-postgres: makes sure what they need
# is there, installing it when it can, or stops the sourcing script (exit 3)
# with one line on stderr, starting "prereqs: ", saying what to install.
#
#   prereq_rust      cargo with rustfmt and clippy; missing components are
#                    added with `rustup component add` when rustup is there.
#   prereq_postgres  PostgreSQL 13+ server binaries (initdb, pg_ctl, postgres,
#                    and psql), unless QUICKSLOT_PG_URL names a running server
#                    or QUICKSLOT_SKIP_PG=1 skips the PostgreSQL tests. As root
#                    with apt-get it installs the distribution's `postgresql`
#                    package when none is found, and creates the `postgres`
#                    system user (the cluster owner: the server refuses to run
#                    as root) when it is missing. Exports QUICKSLOT_PG_BINDIR.
#
# Where the server binaries are looked for, newest version first:
# $QUICKSLOT_PG_BINDIR if set (only there), `pg_config --bindir`, the
# directories matching $QUICKSLOT_PG_SEARCH (globs; default
# /usr/lib/postgresql/*/bin /usr/pgsql-*/bin) and the directory of `pg_ctl`
# on PATH. Only bash built-ins and the commands named here are used, all
# through PATH, so scripts/test-prereqs can run this against stubs.

PREREQ_PG_MIN=13
PREREQ_PG_SEARCH_DEFAULT="/usr/lib/postgresql/*/bin /usr/pgsql-*/bin"
PREREQ_PG_ALTERNATIVES="QUICKSLOT_PG_URL=postgres://USER:PASSWORD@HOST:PORT/DB to use a running server, or QUICKSLOT_SKIP_PG=1 to skip the PostgreSQL tests"

prereq_die() {
    echo "prereqs: $*" >&2
    exit 3
}

prereq_is_root() {
    [[ "$(id -u 2>/dev/null)" == 0 ]]
}

# The major version of DIR's server binaries, if DIR has a usable set.
prereq_pg_version() {
    local dir=$1 out
    [[ -n "$dir" && -x "$dir/initdb" && -x "$dir/pg_ctl" && -x "$dir/postgres" ]] || return 1
    [[ -x "$dir/psql" ]] || command -v psql >/dev/null 2>&1 || return 1
    out="$("$dir/postgres" --version 2>/dev/null)" || return 1
    # "postgres (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)": the first number.
    [[ "$out" =~ [^0-9]*([0-9]+) ]] || return 1
    echo "${BASH_REMATCH[1]}"
}

# Sets PREREQ_PG_FOUND to the newest usable directory (empty if none).
prereq_find_pg() {
    local dirs=() dir version best=0 pattern
    PREREQ_PG_FOUND=""
    if [[ -n "${QUICKSLOT_PG_BINDIR:-}" ]]; then
        dirs=("$QUICKSLOT_PG_BINDIR")
    else
        if command -v pg_config >/dev/null 2>&1; then
            dirs+=("$(pg_config --bindir 2>/dev/null || true)")
        fi
        for pattern in ${QUICKSLOT_PG_SEARCH:-$PREREQ_PG_SEARCH_DEFAULT}; do
            [[ -d "$pattern" ]] && dirs+=("$pattern")
        done
        if dir="$(command -v pg_ctl 2>/dev/null)" && [[ "$dir" == */* ]]; then
            dirs+=("${dir%/*}")
        fi
    fi
    for dir in "${dirs[@]}"; do
        version="$(prereq_pg_version "$dir")" || continue
        if ((version >= PREREQ_PG_MIN && version > best)); then
            best=$version
            PREREQ_PG_FOUND=$dir
        fi
    done
}

prereq_postgres() {
    if [[ -n "${QUICKSLOT_PG_URL:-}" || "${QUICKSLOT_SKIP_PG:-0}" == 1 ]]; then
        return 0
    fi
    prereq_find_pg
    if [[ -z "$PREREQ_PG_FOUND" && -n "${QUICKSLOT_PG_BINDIR:-}" ]]; then
        prereq_die "QUICKSLOT_PG_BINDIR=$QUICKSLOT_PG_BINDIR holds no PostgreSQL $PREREQ_PG_MIN+ server binaries (initdb, pg_ctl, postgres, psql); unset it or fix it, or set $PREREQ_PG_ALTERNATIVES"
    fi
    if [[ -z "$PREREQ_PG_FOUND" ]]; then
        if ! prereq_is_root || ! command -v apt-get >/dev/null 2>&1; then
            prereq_die "no PostgreSQL $PREREQ_PG_MIN+ server binaries found: install your distribution's PostgreSQL server package (Debian/Ubuntu: apt-get install postgresql; Fedora/RHEL: dnf install postgresql-server), or set QUICKSLOT_PG_BINDIR to its bin directory, or $PREREQ_PG_ALTERNATIVES"
        fi
        echo "prereqs: no PostgreSQL server found; installing it: apt-get install postgresql" >&2
        if ! DEBIAN_FRONTEND=noninteractive apt-get update -q ||
            ! DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends postgresql; then
            prereq_die "installing PostgreSQL failed (apt-get install postgresql, output above): install a PostgreSQL $PREREQ_PG_MIN+ server package yourself, or set $PREREQ_PG_ALTERNATIVES"
        fi
        prereq_find_pg
        if [[ -z "$PREREQ_PG_FOUND" ]]; then
            prereq_die "apt-get installed postgresql but no PostgreSQL $PREREQ_PG_MIN+ server binaries were found in ${QUICKSLOT_PG_SEARCH:-$PREREQ_PG_SEARCH_DEFAULT}: set QUICKSLOT_PG_BINDIR to their directory, or $PREREQ_PG_ALTERNATIVES"
        fi
    fi
    if prereq_is_root && ! id postgres >/dev/null 2>&1; then
        echo "prereqs: creating the 'postgres' system user to own throw-away clusters" >&2
        if ! command -v useradd >/dev/null 2>&1 ||
            ! useradd --system --user-group --no-create-home --shell /usr/sbin/nologin postgres; then
            prereq_die "running as root and there is no 'postgres' user to own the cluster, and useradd could not create it: create a system user named postgres, or run as a non-root user"
        fi
    fi
    export QUICKSLOT_PG_BINDIR="$PREREQ_PG_FOUND"
}

prereq_rust() {
    local missing=() component
    command -v cargo >/dev/null 2>&1 ||
        prereq_die "cargo not found: install the stable Rust toolchain (https://rustup.rs)"
    cargo fmt --version >/dev/null 2>&1 || missing+=(rustfmt)
    cargo clippy --version >/dev/null 2>&1 || missing+=(clippy)
    [[ ${#missing[@]} -eq 0 ]] && return 0
    command -v rustup >/dev/null 2>&1 ||
        prereq_die "cargo has no ${missing[*]}: install the ${missing[*]} component(s) of your Rust toolchain (with rustup: rustup component add ${missing[*]})"
    echo "prereqs: installing ${missing[*]}: rustup component add ${missing[*]}" >&2
    rustup component add "${missing[@]}" ||
        prereq_die "rustup component add ${missing[*]} failed (output above): install the ${missing[*]} component(s) of your Rust toolchain"
    for component in "${missing[@]}"; do
        [[ $component == rustfmt ]] && component=fmt
        cargo "$component" --version >/dev/null 2>&1 ||
            prereq_die "rustup added ${missing[*]} but cargo $component still does not run: check your Rust toolchain"
    done
}
