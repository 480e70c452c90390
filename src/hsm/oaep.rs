//! RSAES-OAEP decoding (RFC 8017, 7.1.2 step 3) for tokens whose CKM_RSA_PKCS_OAEP
//! takes SHA-1 only (SoftHSM2 refuses other hashes with CKR_ARGUMENTS_BAD): the token
//! still does the private-key operation, as CKM_RSA_X_509, and p11kms decodes its
//! output here. Every way a decoding can fail gives the same None, after the same work,
//! so that callers cannot tell a bad first byte from a bad label hash or padding
//! (Manger's attack needs exactly that difference).

use subtle::{Choice, ConditionallySelectable, ConstantTimeEq};
use zeroize::Zeroizing;

use super::OaepHash;

fn hash(h: OaepHash, parts: &[&[u8]]) -> Vec<u8> {
    use aws_lc_rs::digest;
    let alg = match h {
        OaepHash::Sha1 => &digest::SHA1_FOR_LEGACY_USE_ONLY,
        OaepHash::Sha256 => &digest::SHA256,
    };
    let mut ctx = digest::Context::new(alg);
    for p in parts {
        ctx.update(p);
    }
    ctx.finish().as_ref().to_vec()
}

/// MGF1 (RFC 8017, B.2.1) of `seed`, `len` bytes.
fn mgf1(h: OaepHash, seed: &[u8], len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + h.len());
    let mut counter: u32 = 0;
    while out.len() < len {
        out.extend_from_slice(&hash(h, &[seed, &counter.to_be_bytes()]));
        counter = counter.wrapping_add(1);
    }
    out.truncate(len);
    out
}

/// The message inside the encoded block `em` (the raw RSA output, as long as the
/// modulus), with an empty label; None when it is not a valid OAEP encoding.
pub(crate) fn decode(em: &[u8], h: OaepHash) -> Option<Vec<u8>> {
    let h_len = h.len();
    // Public facts (the modulus length), not secret-dependent.
    if em.len() < 2 * h_len + 2 {
        return None;
    }
    let (y, rest) = em.split_first()?;
    let (masked_seed, masked_db) = rest.split_at(h_len);
    // The seed and the masks give DB (and the message) back: wiped with it.
    let seed_mask = Zeroizing::new(mgf1(h, masked_db, h_len));
    let seed: Zeroizing<Vec<u8>> = Zeroizing::new(
        masked_seed
            .iter()
            .zip(seed_mask.iter())
            .map(|(a, b)| a ^ b)
            .collect(),
    );
    let db_mask = Zeroizing::new(mgf1(h, &seed, masked_db.len()));
    let db: Zeroizing<Vec<u8>> = Zeroizing::new(
        masked_db
            .iter()
            .zip(db_mask.iter())
            .map(|(a, b)| a ^ b)
            .collect(),
    );
    let (l_hash, padded) = db.split_at(h_len);
    let mut good = y.ct_eq(&0) & l_hash.ct_eq(&hash(h, &[]));
    // PS (zeros), then 0x01, then the message: find the 0x01 without branching on it.
    let mut looking = Choice::from(1);
    let mut bad_padding = Choice::from(0);
    let mut index = 0u32;
    for (i, b) in padded.iter().enumerate() {
        let (is_zero, is_one) = (b.ct_eq(&0), b.ct_eq(&1));
        index.conditional_assign(&u32::try_from(i).ok()?, looking & is_one);
        bad_padding |= looking & !is_zero & !is_one;
        looking &= !is_one;
    }
    good &= !looking & !bad_padding;
    if bool::from(good) {
        padded
            .get(usize::try_from(index).ok()? + 1..)
            .map(<[u8]>::to_vec)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lc_rs::rsa::{
        KeySize, OaepPublicEncryptingKey, PrivateDecryptingKey, OAEP_SHA1_MGF1SHA1,
        OAEP_SHA256_MGF1SHA256,
    };
    use num_bigint::BigUint;

    #[test]
    fn decodes_what_aws_lc_encodes_and_refuses_changed_blocks() {
        let key = PrivateDecryptingKey::generate(KeySize::Rsa2048).unwrap();
        let public = OaepPublicEncryptingKey::new(key.public_key()).unwrap();
        let (n, d) = rsa_n_d(&key);
        for (alg, h) in [
            (&OAEP_SHA1_MGF1SHA1, OaepHash::Sha1),
            (&OAEP_SHA256_MGF1SHA256, OaepHash::Sha256),
        ] {
            for len in [0usize, 1, 100, public.max_plaintext_size(alg)] {
                let msg: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
                let mut buf = vec![0u8; public.ciphertext_size()];
                let ct = public.encrypt(alg, &msg, &mut buf, None).unwrap().to_vec();
                // What CKM_RSA_X_509 returns: c^d mod n, as long as the modulus.
                let m = BigUint::from_bytes_be(&ct).modpow(&d, &n).to_bytes_be();
                let mut em = vec![0u8; ct.len() - m.len()];
                em.extend_from_slice(&m);
                assert_eq!(decode(&em, h).unwrap(), msg);
                for i in [0, 1, 40, em.len() - 1] {
                    let mut bad = em.clone();
                    bad[i] ^= 0x01;
                    assert!(decode(&bad, h).is_none(), "byte {i} changed");
                }
                let other = if h == OaepHash::Sha1 {
                    OaepHash::Sha256
                } else {
                    OaepHash::Sha1
                };
                assert!(decode(&em, other).is_none());
            }
        }
        assert!(decode(&[0u8; 10], OaepHash::Sha256).is_none());
    }

    proptest::proptest! {
        #[test]
        fn any_block_decodes_or_is_refused_without_panicking(
            em in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..600),
        ) {
            for h in [OaepHash::Sha1, OaepHash::Sha256] {
                // A random block all but never has the label hash: refused, no panic.
                proptest::prop_assert!(decode(&em, h).is_none());
            }
        }
    }

    /// An encoded block (RFC 8017 7.1.1 step 2) of `db` (lHash || PS || 0x01 || M, or a
    /// damaged one) with `seed`, and first byte `y`: what decoding must take apart.
    fn encode(h: OaepHash, k: usize, y: u8, seed: &[u8], db: &[u8]) -> Vec<u8> {
        assert_eq!(db.len(), k - h.len() - 1);
        let masked_db: Vec<u8> = db
            .iter()
            .zip(mgf1(h, seed, db.len()))
            .map(|(a, b)| a ^ b)
            .collect();
        let masked_seed: Vec<u8> = seed
            .iter()
            .zip(mgf1(h, &masked_db, h.len()))
            .map(|(a, b)| a ^ b)
            .collect();
        let mut em = vec![y];
        em.extend(masked_seed);
        em.extend(masked_db);
        em
    }

    proptest::proptest! {
        #[test]
        fn only_a_well_formed_block_decodes(
            msg in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..60),
            seed in proptest::collection::vec(proptest::prelude::any::<u8>(), 32),
            damage in 0usize..5,
            at in proptest::prelude::any::<usize>(),
        ) {
            let (h, k) = (OaepHash::Sha256, 128usize);
            let ps = k - msg.len() - 2 * h.len() - 2;
            let mut db = hash(h, &[]);
            db.extend(std::iter::repeat_n(0u8, ps));
            db.push(1);
            db.extend_from_slice(&msg);
            let mut y = 0u8;
            match damage {
                0 => {}
                1 => y = 1 + (at % 255) as u8,
                2 => db[at % h.len()] ^= 0x80,
                // No 0x01 anywhere: zeros to the end (a 0x01 in the message would
                // rightly be taken as the separator).
                3 => db[h.len()..].iter_mut().for_each(|b| *b = 0),
                _ => {
                    // A nonzero byte before the 0x01 (or the 0x01 made another value).
                    let i = h.len() + at % (ps + 1);
                    db[i] = 2 + (at % 200) as u8;
                }
            }
            let em = encode(h, k, y, &seed, &db);
            let got = decode(&em, h);
            if damage == 0 {
                proptest::prop_assert_eq!(got, Some(msg));
            } else {
                proptest::prop_assert!(got.is_none(), "damage {} decoded", damage);
            }
        }
    }

    /// n and d from the key's PKCS#8 (RFC 8017 A.1.2 inside RFC 5208).
    fn rsa_n_d(key: &PrivateDecryptingKey) -> (BigUint, BigUint) {
        use aws_lc_rs::encoding::AsDer;
        let der: aws_lc_rs::encoding::Pkcs8V1Der<'static> = key.as_der().unwrap();
        let inner = yasna::parse_der(der.as_ref(), |r| {
            r.read_sequence(|r| {
                r.next().read_u8()?;
                r.next().read_der()?;
                r.next().read_bytes()
            })
        })
        .unwrap();
        yasna::parse_der(&inner, |r| {
            r.read_sequence(|r| {
                r.next().read_u8()?;
                let n = r.next().read_bigint_bytes()?.0;
                r.next().read_bigint_bytes()?;
                let d = r.next().read_bigint_bytes()?.0;
                for _ in 0..5 {
                    r.next().read_bigint_bytes()?;
                }
                Ok((BigUint::from_bytes_be(&n), BigUint::from_bytes_be(&d)))
            })
        })
        .unwrap()
    }
}
