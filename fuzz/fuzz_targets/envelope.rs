//! The envelope message reader must never panic, whatever the bytes. Arbitrary input
//! exercises the header parser; reaching the frame reader needs a message whose data key
//! this keyring opens (seed the corpus with messages made under it: raw AES key 0x11*32,
//! namespace "fuzz", name "k").
#![no_main]

use std::sync::OnceLock;

use p11kms::client::envelope::{decrypt, DecryptOptions, RawAesKeyring};

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap_or_else(|e| panic!("no runtime: {e}"))
    })
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(keyring) = RawAesKeyring::new("fuzz", "k", &[0x11; 32]) else {
        return;
    };
    let _ = runtime().block_on(decrypt(data, &keyring, &DecryptOptions::default()));
});
