//! PostgreSQL connection strings and `PG*` variables; see
//! `quickslot_testkit::fuzzing::run_pg_config`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| quickslot_testkit::fuzzing::run_pg_config(data));
