//! The raw PKCS#11 limit: C_Encrypt AES-256-GCM of 32 bytes through cryptoki on a
//! SoftHSM2 token, from 1 and N threads, each with its own session, on the token key
//! and on a session copy of it.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::mechanism::aead::GcmParams;
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::types::{AuthPin, Ulong};
use p11kms::DevDir;

use super::{secs, BoxResult};

fn pin(dir: &DevDir, name: &str) -> BoxResult<String> {
    Ok(std::fs::read_to_string(dir.root().join(name))?
        .trim()
        .to_owned())
}

/// Raw C_Encrypt calls per second with `threads` threads, each with its own session.
fn raw_encrypt(
    ctx: &Pkcs11,
    slot: cryptoki::slot::Slot,
    key: ObjectHandle,
    threads: usize,
    copy: bool,
) -> BoxResult<f64> {
    let stop = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicU64::new(0));
    let mut handles = Vec::new();
    for _ in 0..threads {
        let s: Session = ctx.open_rw_session(slot)?;
        let (stop, count) = (Arc::clone(&stop), Arc::clone(&count));
        handles.push(std::thread::spawn(
            move || -> Result<(), cryptoki::error::Error> {
                let key = if copy {
                    s.copy_object(key, &[Attribute::Token(false)])?
                } else {
                    key
                };
                let mut n = 0u64;
                let mut iv = [0u8; 12];
                while !stop.load(Ordering::Relaxed) {
                    iv[..8].copy_from_slice(&n.to_be_bytes());
                    let mut iv_buf = iv;
                    let params = GcmParams::new(&mut iv_buf, b"aad", Ulong::from(128u64))?;
                    s.encrypt(&Mechanism::AesGcm(params), key, &[7u8; 32])?;
                    n += 1;
                }
                count.fetch_add(n, Ordering::Relaxed);
                Ok(())
            },
        ));
    }
    let t = Instant::now();
    std::thread::sleep(secs());
    stop.store(true, Ordering::Relaxed);
    for h in handles {
        h.join().map_err(|_| "thread panicked")??;
    }
    Ok(count.load(Ordering::Relaxed) as f64 / t.elapsed().as_secs_f64())
}

/// The dev directory's SoftHSM2 token, initialised if needed: the module, its slot and
/// a logged-in session (for the raw figures of this file and `raw_sign`).
pub(crate) fn open_dev_token(dir: &DevDir) -> BoxResult<(Pkcs11, cryptoki::slot::Slot, Session)> {
    // Single-threaded at this point: nothing else reads the environment.
    std::env::set_var("SOFTHSM2_CONF", dir.softhsm_conf());
    let module = p11kms::softhsm_module()?;
    dir.init_token_if_missing(&module, &Default::default())?;
    let ctx = Pkcs11::new(&module)?;
    ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))?;
    let slot = ctx
        .get_slots_with_initialized_token()?
        .into_iter()
        .find(|s| {
            ctx.get_token_info(*s)
                .map(|t| t.label().trim_end() == p11kms::DEV_TOKEN_LABEL)
                .unwrap_or(false)
        })
        .ok_or("no dev token")?;
    let s = ctx.open_rw_session(slot)?;
    s.login(UserType::User, Some(&AuthPin::from(pin(dir, "user.pin")?)))?;
    Ok((ctx, slot, s))
}

/// (name, threads, session copy, calls/s) for 1 and `threads` threads, token key and copy.
pub(crate) fn baseline(dir: &DevDir, threads: usize) -> BoxResult<Vec<(String, usize, bool, f64)>> {
    let (ctx, slot, s) = open_dev_token(dir)?;
    let key = s.generate_key(
        &Mechanism::AesKeyGen,
        &[
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::KeyType(KeyType::AES),
            Attribute::ValueLen(Ulong::from(32u64)),
            Attribute::Token(true),
            Attribute::Private(true),
            Attribute::Sensitive(true),
            Attribute::Extractable(false),
            Attribute::Encrypt(true),
            Attribute::Decrypt(true),
            Attribute::Label(b"bench".to_vec()),
        ],
    )?;
    let mut out = Vec::new();
    for copy in [false, true] {
        for n in [1, threads] {
            let name = format!(
                "raw C_Encrypt, {}, {n} thread{}",
                if copy { "session copy" } else { "token key" },
                if n == 1 { "" } else { "s" }
            );
            out.push((name, n, copy, raw_encrypt(&ctx, slot, key, n, copy)?));
        }
    }
    s.destroy_object(key)?;
    drop(s);
    ctx.finalize()?;
    Ok(out)
}
