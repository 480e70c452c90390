//! libFuzzer shim: the checks are `p11kms_fuzz::aws_json` (fuzz/src/aws_json.rs).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| p11kms_fuzz::aws_json::check(data));
