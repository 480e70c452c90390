//! libFuzzer shim: the checks are `p11kms_fuzz::blob` (fuzz/src/blob.rs).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| p11kms_fuzz::blob::check(data));
