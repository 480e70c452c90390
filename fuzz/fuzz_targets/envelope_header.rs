//! libFuzzer shim: the checks are `p11kms_fuzz::envelope_header` (fuzz/src/envelope_header.rs).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| p11kms_fuzz::envelope_header::check(data));
