//! libFuzzer shim: the checks are `p11kms_fuzz::policy` (fuzz/src/policy.rs).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| p11kms_fuzz::policy::check(data));
