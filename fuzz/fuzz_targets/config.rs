//! libFuzzer shim: the checks are `p11kms_fuzz::config` (fuzz/src/config.rs).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| p11kms_fuzz::config::check(data));
