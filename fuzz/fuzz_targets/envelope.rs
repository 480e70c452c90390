//! libFuzzer shim: the checks are `p11kms_fuzz::envelope` (fuzz/src/envelope.rs).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| p11kms_fuzz::envelope::check(data));
