//! libFuzzer shim: the checks are `p11kms_fuzz::sigv4` (fuzz/src/sigv4.rs).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| p11kms_fuzz::sigv4::check(data));
