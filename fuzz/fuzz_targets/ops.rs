//! Operation sequences among simulated tasks; see `quickslot_testkit::fuzzing::run_ops`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| quickslot_testkit::fuzzing::run_ops(data));
