//! The ciphertext-blob parser must never panic, whatever the bytes.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = p11kms::parse_blob(data);
});
