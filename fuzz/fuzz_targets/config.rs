//! Arbitrary builder input; see `quickslot_testkit::fuzzing::run_config`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| quickslot_testkit::fuzzing::run_config(data));
