//! The raw PKCS#11 limit of the signing calls: C_Sign of 32 bytes with ECDSA P-256
//! (CKM_ECDSA over them as a SHA-256 digest: SoftHSM2 has no CKM_ECDSA_SHA256, so the
//! daemon hashes and signs this way too), RSA-2048 PKCS#1 v1.5 (CKM_SHA256_RSA_PKCS) and
//! HMAC-SHA-256 (CKM_SHA256_HMAC), from `threads` threads, each with its own session and
//! a session copy of the key, on the same token the daemon uses.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use cryptoki::context::Pkcs11;
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::Session;
use cryptoki::types::Ulong;
use p11kms::DevDir;

use super::{secs, BoxResult};

/// What is signed.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Signer {
    /// ECDSA P-256 of a SHA-256 digest.
    EcdsaP256,
    /// RSA-2048 PKCS#1 v1.5 with SHA-256.
    Rsa2048,
    /// HMAC-SHA-256.
    Hmac256,
}

impl Signer {
    pub(crate) const ALL: [Signer; 3] = [Signer::EcdsaP256, Signer::Rsa2048, Signer::Hmac256];

    fn mechanism(self) -> Mechanism<'static> {
        match self {
            Self::EcdsaP256 => Mechanism::Ecdsa,
            Self::Rsa2048 => Mechanism::Sha256RsaPkcs,
            Self::Hmac256 => Mechanism::Sha256Hmac,
        }
    }

    /// The signing key, made in the token (private half only for the pairs).
    fn make(self, s: &Session) -> BoxResult<(ObjectHandle, Option<ObjectHandle>)> {
        let private = [
            Attribute::Token(true),
            Attribute::Private(true),
            Attribute::Sensitive(true),
            Attribute::Extractable(false),
            Attribute::Sign(true),
            Attribute::Label(b"bench-sign".to_vec()),
        ];
        Ok(match self {
            Self::EcdsaP256 => {
                let public = [
                    Attribute::Token(true),
                    Attribute::EcParams(vec![
                        0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07,
                    ]),
                    Attribute::Verify(true),
                ];
                let (pubk, k) =
                    s.generate_key_pair(&Mechanism::EccKeyPairGen, &public, &private)?;
                (k, Some(pubk))
            }
            Self::Rsa2048 => {
                let public = [
                    Attribute::Token(true),
                    Attribute::ModulusBits(Ulong::from(2048u64)),
                    Attribute::PublicExponent(vec![1, 0, 1]),
                    Attribute::Verify(true),
                ];
                let (pubk, k) =
                    s.generate_key_pair(&Mechanism::RsaPkcsKeyPairGen, &public, &private)?;
                (k, Some(pubk))
            }
            Self::Hmac256 => {
                let mut t = private.to_vec();
                t.extend([
                    Attribute::Class(ObjectClass::SECRET_KEY),
                    Attribute::KeyType(KeyType::GENERIC_SECRET),
                    Attribute::ValueLen(Ulong::from(32u64)),
                    Attribute::Verify(true),
                ]);
                (s.generate_key(&Mechanism::GenericSecretKeyGen, &t)?, None)
            }
        })
    }
}

fn run(
    ctx: &Pkcs11,
    slot: cryptoki::slot::Slot,
    key: ObjectHandle,
    signer: Signer,
    threads: usize,
) -> BoxResult<f64> {
    let stop = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicU64::new(0));
    let mut handles = Vec::new();
    for _ in 0..threads {
        let s: Session = ctx.open_rw_session(slot)?;
        let (stop, count) = (Arc::clone(&stop), Arc::clone(&count));
        handles.push(std::thread::spawn(
            move || -> Result<(), cryptoki::error::Error> {
                let key = s.copy_object(key, &[Attribute::Token(false)])?;
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    s.sign(&signer.mechanism(), key, &[7u8; 32])?;
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

/// (signer, threads, calls/s) for 1 and `threads` threads.
pub(crate) fn baseline(dir: &DevDir, threads: usize) -> BoxResult<Vec<(Signer, usize, f64)>> {
    let (ctx, slot, s) = super::raw::open_dev_token(dir)?;
    let mut out = Vec::new();
    for signer in Signer::ALL {
        let (key, public) = signer.make(&s)?;
        for n in [1, threads] {
            out.push((signer, n, run(&ctx, slot, key, signer, n)?));
        }
        s.destroy_object(key)?;
        if let Some(p) = public {
            s.destroy_object(p)?;
        }
    }
    drop(s);
    ctx.finalize()?;
    Ok(out)
}
