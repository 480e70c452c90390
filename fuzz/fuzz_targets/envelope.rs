//! The envelope message reader must never panic, whatever the bytes: the header parser,
//! and the body reader behind a keyring that accepts any message (fixed data key).
#![no_main]

use p11kms::client::envelope::{decrypt, DecryptOptions, RawAesKeyring};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let keyring = match RawAesKeyring::new("fuzz", "k", &[0x11; 32]) {
        Ok(k) => k,
        Err(_) => return,
    };
    let Ok(rt) = tokio::runtime::Builder::new_current_thread().build() else {
        return;
    };
    let _ = rt.block_on(decrypt(data, &keyring, &DecryptOptions::default()));
});
