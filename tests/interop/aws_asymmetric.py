"""Asymmetric and HMAC keys through boto3, checked by code p11kms did not write: Python
`cryptography` verifies every signature with the public key from GetPublicKey, computes
the ECDH secret from its own private key, and signs messages that p11kms must refuse;
OpenSSL verifies a signature of each key type. Configured by the same environment as
aws_kms.py. Exits non-zero with a message on the first failure; prints "ok" at the end.

Subcommands:
  all [--without-secp256k1]
              every key spec and algorithm, RAW and DIGEST, and the errors; with the
              flag, the token has no secp256k1 and CreateKey must say so
"""

import base64
import hashlib
import json
import os
import subprocess
import sys
import tempfile

import botocore.exceptions
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils

from aws_kms import check, expect_error, fail, kms

HASHES = {"256": (hashes.SHA256, hashlib.sha256), "384": (hashes.SHA384, hashlib.sha384),
          "512": (hashes.SHA512, hashlib.sha512)}
RSA_ALGS = [f"RSASSA_{p}_SHA_{h}" for p in ("PSS", "PKCS1_V1_5") for h in ("256", "384", "512")]
ECC = {"ECC_NIST_P256": ("ECDSA_SHA_256", ec.SECP256R1()),
       "ECC_NIST_P384": ("ECDSA_SHA_384", ec.SECP384R1()),
       "ECC_NIST_P521": ("ECDSA_SHA_512", ec.SECP521R1()),
       "ECC_SECG_P256K1": ("ECDSA_SHA_256", ec.SECP256K1())}


def create(spec, usage):
    meta = kms().create_key(KeySpec=spec, KeyUsage=usage)["KeyMetadata"]
    check(meta["KeySpec"] == spec and meta["KeyUsage"] == usage, f"metadata {meta}")
    return meta


def public_key(key_id):
    out = kms().get_public_key(KeyId=key_id)
    return out, serialization.load_der_public_key(out["PublicKey"])


def local_verify(pub, alg, message, signature, prehashed=False):
    """Verifies with `cryptography`; raises InvalidSignature when it does not verify."""
    h = HASHES[alg[-3:]][0]()
    algo = utils.Prehashed(h) if prehashed else h
    if alg.startswith("ECDSA"):
        pub.verify(signature, message, ec.ECDSA(algo))
    elif "PSS" in alg:
        pub.verify(signature, message, padding.PSS(mgf=padding.MGF1(h), salt_length=h.digest_size), algo)
    else:
        pub.verify(signature, message, padding.PKCS1v15(), algo)


def openssl_verify(pub_der, alg, message, signature):
    """`openssl dgst -verify` over the message with the DER public key."""
    with tempfile.TemporaryDirectory() as d:
        paths = {n: os.path.join(d, n) for n in ("pub.der", "msg", "sig")}
        for name, data in (("pub.der", pub_der), ("msg", message), ("sig", signature)):
            with open(paths[name], "wb") as f:
                f.write(data)
        cmd = ["openssl", "dgst", "-sha" + alg[-3:], "-keyform", "DER", "-verify", paths["pub.der"]]
        if "PSS" in alg:
            cmd += ["-sigopt", "rsa_padding_mode:pss", "-sigopt", "rsa_pss_saltlen:digest"]
        cmd += ["-signature", paths["sig"], paths["msg"]]
        r = subprocess.run(cmd, capture_output=True)
        check(r.returncode == 0 and b"Verified OK" in r.stdout, f"openssl {alg}: {r.stdout} {r.stderr}")


def sign_both_ways(key_id, pub, pub_der, alg):
    message = os.urandom(100) + b"p11kms"
    digest = HASHES[alg[-3:]][1](message).digest()
    raw = kms().sign(KeyId=key_id, Message=message, SigningAlgorithm=alg)
    check(raw["SigningAlgorithm"] == alg and raw["KeyId"].endswith(key_id), f"sign answer {raw}")
    local_verify(pub, alg, message, raw["Signature"])
    pre = kms().sign(KeyId=key_id, Message=digest, MessageType="DIGEST", SigningAlgorithm=alg)
    local_verify(pub, alg, digest, pre["Signature"], prehashed=True)
    # A DIGEST signature is a signature of the message: both verify either way.
    local_verify(pub, alg, message, pre["Signature"])
    for sig in (raw["Signature"], pre["Signature"]):
        ok = kms().verify(KeyId=key_id, Message=message, Signature=sig, SigningAlgorithm=alg)
        check(ok["SignatureValid"] is True, f"verify {ok}")
        ok = kms().verify(KeyId=key_id, Message=digest, MessageType="DIGEST", Signature=sig, SigningAlgorithm=alg)
        check(ok["SignatureValid"] is True, f"verify digest {ok}")
    expect_error("KMSInvalidSignatureException", kms().verify, KeyId=key_id, Message=message + b"!",
                 Signature=raw["Signature"], SigningAlgorithm=alg)
    bad = bytearray(raw["Signature"])
    bad[-1] ^= 1
    expect_error("KMSInvalidSignatureException", kms().verify, KeyId=key_id, Message=message,
                 Signature=bytes(bad), SigningAlgorithm=alg)
    expect_error("ValidationException", kms().sign, KeyId=key_id, Message=digest[:-1],
                 MessageType="DIGEST", SigningAlgorithm=alg)
    return message, raw["Signature"]


def rsa_signing():
    for spec in ("RSA_2048", "RSA_3072", "RSA_4096"):
        meta = create(spec, "SIGN_VERIFY")
        check(meta["SigningAlgorithms"] == RSA_ALGS, f"algorithms {meta}")
        check("EncryptionAlgorithms" not in meta, f"no encryption algorithms {meta}")
        out, pub = public_key(meta["KeyId"])
        check(pub.key_size == int(spec[4:]), f"size {pub.key_size}")
        check(out["SigningAlgorithms"] == RSA_ALGS and out["KeyUsage"] == "SIGN_VERIFY", f"{out}")
        for alg in RSA_ALGS:
            message, sig = sign_both_ways(meta["KeyId"], pub, out["PublicKey"], alg)
            if spec == "RSA_2048":
                openssl_verify(out["PublicKey"], alg, message, sig)
        # ECDSA is not an RSA algorithm.
        expect_error("InvalidKeyUsageException", kms().sign, KeyId=meta["KeyId"], Message=b"m",
                     SigningAlgorithm="ECDSA_SHA_256")
        # A signature made by another key (ours, outside) does not verify.
        other = rsa.generate_private_key(public_exponent=65537, key_size=int(spec[4:]))
        forged = other.sign(b"forged", padding.PKCS1v15(), hashes.SHA256())
        expect_error("KMSInvalidSignatureException", kms().verify, KeyId=meta["KeyId"], Message=b"forged",
                     Signature=forged, SigningAlgorithm="RSASSA_PKCS1_V1_5_SHA_256")


WITHOUT_SECP256K1 = "--without-secp256k1" in sys.argv


def ecc_signing():
    for spec, (alg, curve) in ECC.items():
        if spec == "ECC_SECG_P256K1" and WITHOUT_SECP256K1:
            expect_error("UnsupportedOperationException", kms().create_key, KeySpec=spec, KeyUsage="SIGN_VERIFY")
            continue
        meta = create(spec, "SIGN_VERIFY")
        check(meta["SigningAlgorithms"] == [alg], f"algorithms {meta}")
        out, pub = public_key(meta["KeyId"])
        check(pub.curve.name == curve.name, f"curve {pub.curve.name}")
        message, sig = sign_both_ways(meta["KeyId"], pub, out["PublicKey"], alg)
        openssl_verify(out["PublicKey"], alg, message, sig)
        other = ec.generate_private_key(curve)
        forged = other.sign(message, ec.ECDSA(HASHES[alg[-3:]][0]()))
        expect_error("KMSInvalidSignatureException", kms().verify, KeyId=meta["KeyId"], Message=message,
                     Signature=forged, SigningAlgorithm=alg)
        expect_error("KMSInvalidSignatureException", kms().verify, KeyId=meta["KeyId"], Message=message,
                     Signature=b"\x30\x02\x01", SigningAlgorithm=alg)
        expect_error("InvalidKeyUsageException", kms().sign, KeyId=meta["KeyId"], Message=b"m",
                     SigningAlgorithm="RSASSA_PSS_SHA_256")
        expect_error("InvalidKeyUsageException", kms().encrypt, KeyId=meta["KeyId"], Plaintext=b"m")


def hmac_keys():
    for bits in ("224", "256", "384", "512"):
        spec, alg = f"HMAC_{bits}", f"HMAC_SHA_{bits}"
        meta = create(spec, "GENERATE_VERIFY_MAC")
        check(meta["MacAlgorithms"] == [alg], f"mac algorithms {meta}")
        key_id = meta["KeyId"]
        mac = kms().generate_mac(KeyId=key_id, Message=b"hello", MacAlgorithm=alg)
        check(len(mac["Mac"]) == int(bits) // 8, f"length {len(mac['Mac'])}")
        again = kms().generate_mac(KeyId=key_id, Message=b"hello", MacAlgorithm=alg)
        check(again["Mac"] == mac["Mac"], "MACs are stable")
        other = kms().generate_mac(KeyId=key_id, Message=b"hellp", MacAlgorithm=alg)
        check(other["Mac"] != mac["Mac"], "another message, another MAC")
        ok = kms().verify_mac(KeyId=key_id, Message=b"hello", Mac=mac["Mac"], MacAlgorithm=alg)
        check(ok["MacValid"] is True and ok["MacAlgorithm"] == alg, f"{ok}")
        expect_error("KMSInvalidMacException", kms().verify_mac, KeyId=key_id, Message=b"hellp",
                     Mac=mac["Mac"], MacAlgorithm=alg)
        bad = bytearray(mac["Mac"])
        bad[0] ^= 0x80
        expect_error("KMSInvalidMacException", kms().verify_mac, KeyId=key_id, Message=b"hello",
                     Mac=bytes(bad), MacAlgorithm=alg)
        expect_error("KMSInvalidMacException", kms().verify_mac, KeyId=key_id, Message=b"hello",
                     Mac=mac["Mac"][:-1], MacAlgorithm=alg)
        wrong = "HMAC_SHA_256" if bits != "256" else "HMAC_SHA_512"
        expect_error("InvalidKeyUsageException", kms().generate_mac, KeyId=key_id, Message=b"m",
                     MacAlgorithm=wrong)
        expect_error("UnsupportedOperationException", kms().get_public_key, KeyId=key_id)
        expect_error("InvalidKeyUsageException", kms().generate_data_key, KeyId=key_id, KeySpec="AES_256")
    # Two keys of one spec have different material.
    a = create("HMAC_256", "GENERATE_VERIFY_MAC")["KeyId"]
    b = create("HMAC_256", "GENERATE_VERIFY_MAC")["KeyId"]
    ma = kms().generate_mac(KeyId=a, Message=b"x", MacAlgorithm="HMAC_SHA_256")["Mac"]
    mb = kms().generate_mac(KeyId=b, Message=b"x", MacAlgorithm="HMAC_SHA_256")["Mac"]
    check(ma != mb, "two HMAC keys, two MACs")


def key_agreement():
    for spec, (_, curve) in ECC.items():
        if spec == "ECC_SECG_P256K1":
            expect_error("ValidationException", kms().create_key, KeySpec=spec, KeyUsage="KEY_AGREEMENT")
            continue
        meta = create(spec, "KEY_AGREEMENT")
        check(meta["KeyAgreementAlgorithms"] == ["ECDH"], f"{meta}")
        out, pub = public_key(meta["KeyId"])
        check(out["KeyAgreementAlgorithms"] == ["ECDH"], f"{out}")
        mine = ec.generate_private_key(curve)
        mine_der = mine.public_key().public_bytes(serialization.Encoding.DER,
                                                  serialization.PublicFormat.SubjectPublicKeyInfo)
        got = kms().derive_shared_secret(KeyId=meta["KeyId"], KeyAgreementAlgorithm="ECDH", PublicKey=mine_der)
        want = mine.exchange(ec.ECDH(), pub)
        check(got["SharedSecret"] == want, f"{spec}: shared secrets differ")
        check(got["KeyOrigin"] == "AWS_KMS" and got["KeyAgreementAlgorithm"] == "ECDH", f"{got}")
        # A key on another curve, and bytes that are no key at all.
        other = ec.generate_private_key(ec.SECP384R1() if spec != "ECC_NIST_P384" else ec.SECP256R1())
        other_der = other.public_key().public_bytes(serialization.Encoding.DER,
                                                    serialization.PublicFormat.SubjectPublicKeyInfo)
        expect_error("ValidationException", kms().derive_shared_secret, KeyId=meta["KeyId"],
                     KeyAgreementAlgorithm="ECDH", PublicKey=other_der)
        expect_error("ValidationException", kms().derive_shared_secret, KeyId=meta["KeyId"],
                     KeyAgreementAlgorithm="ECDH", PublicKey=b"not a key")
        # A point off the curve (the last byte of y changed), many times over: refused
        # before the token sees it, and the token stays up for the next call.
        off = bytearray(mine_der)
        off[-1] ^= 0x01
        for _ in range(6):
            expect_error("ValidationException", kms().derive_shared_secret, KeyId=meta["KeyId"],
                         KeyAgreementAlgorithm="ECDH", PublicKey=bytes(off))
        again = kms().derive_shared_secret(KeyId=meta["KeyId"], KeyAgreementAlgorithm="ECDH", PublicKey=mine_der)
        check(again["SharedSecret"] == want, "ECDH works after the refusals")
        expect_error("InvalidKeyUsageException", kms().sign, KeyId=meta["KeyId"], Message=b"m",
                     SigningAlgorithm="ECDSA_SHA_256")


def openssl_oaep_encrypt(pub_der, hash_name, plaintext):
    """`openssl pkeyutl -encrypt` with RSA-OAEP (MGF1 with the same hash) to the DER key."""
    with tempfile.TemporaryDirectory() as d:
        key, msg = os.path.join(d, "pub.der"), os.path.join(d, "msg")
        with open(key, "wb") as f:
            f.write(pub_der)
        with open(msg, "wb") as f:
            f.write(plaintext)
        r = subprocess.run(["openssl", "pkeyutl", "-encrypt", "-pubin", "-keyform", "DER", "-inkey", key,
                            "-pkeyopt", "rsa_padding_mode:oaep", "-pkeyopt", f"rsa_oaep_md:{hash_name}",
                            "-pkeyopt", f"rsa_mgf1_md:{hash_name}", "-in", msg], capture_output=True)
        check(r.returncode == 0, f"openssl pkeyutl: {r.stderr}")
        return r.stdout


def rsa_encryption():
    for spec in ("RSA_2048", "RSA_3072", "RSA_4096"):
        bits = int(spec[4:])
        meta = create(spec, "ENCRYPT_DECRYPT")
        key_id = meta["KeyId"]
        check(meta["EncryptionAlgorithms"] == ["RSAES_OAEP_SHA_1", "RSAES_OAEP_SHA_256"], f"{meta}")
        check("SigningAlgorithms" not in meta, f"{meta}")
        out, pub = public_key(key_id)
        # Not below the modulus, and all zeros: bad ciphertexts, which must leave RSA
        # decryption working for everyone (the decrypts below).
        for bad in (b"\xff" * (bits // 8), b"\x00" * (bits // 8)):
            for alg in ("RSAES_OAEP_SHA_1", "RSAES_OAEP_SHA_256"):
                expect_error("InvalidCiphertextException", kms().decrypt, KeyId=key_id, CiphertextBlob=bad,
                             EncryptionAlgorithm=alg)
        for alg, h, name in (("RSAES_OAEP_SHA_1", hashes.SHA1, "sha1"), ("RSAES_OAEP_SHA_256", hashes.SHA256, "sha256")):
            limit = bits // 8 - 2 * h.digest_size - 2
            oaep = padding.OAEP(mgf=padding.MGF1(algorithm=h()), algorithm=h(), label=None)
            for size in (1, limit):
                message = os.urandom(size)
                ct = pub.encrypt(message, oaep)
                got = kms().decrypt(KeyId=key_id, CiphertextBlob=ct, EncryptionAlgorithm=alg)
                check(got["Plaintext"] == message and got["EncryptionAlgorithm"] == alg, f"{spec} {alg} {size}")
                enc = kms().encrypt(KeyId=key_id, Plaintext=message, EncryptionAlgorithm=alg)
                check(len(enc["CiphertextBlob"]) == bits // 8, "a raw OAEP ciphertext")
                back = kms().decrypt(KeyId=key_id, CiphertextBlob=enc["CiphertextBlob"], EncryptionAlgorithm=alg)
                check(back["Plaintext"] == message, "round trip")
            expect_error("ValidationException", kms().encrypt, KeyId=key_id, Plaintext=os.urandom(limit + 1),
                         EncryptionAlgorithm=alg)
            if spec == "RSA_2048":
                ct = openssl_oaep_encrypt(out["PublicKey"], name, b"from openssl")
                got = kms().decrypt(KeyId=key_id, CiphertextBlob=ct, EncryptionAlgorithm=alg)
                check(got["Plaintext"] == b"from openssl", "openssl ciphertext")
                # The other hash does not decrypt it.
                other = "RSAES_OAEP_SHA_256" if alg == "RSAES_OAEP_SHA_1" else "RSAES_OAEP_SHA_1"
                expect_error("InvalidCiphertextException", kms().decrypt, KeyId=key_id, CiphertextBlob=ct,
                             EncryptionAlgorithm=other)
        ct = pub.encrypt(b"x", padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None))
        expect_error("ValidationException", kms().decrypt, CiphertextBlob=ct, EncryptionAlgorithm="RSAES_OAEP_SHA_256")
        expect_error("InvalidCiphertextException", kms().decrypt, KeyId=key_id, CiphertextBlob=ct[:-1],
                     EncryptionAlgorithm="RSAES_OAEP_SHA_256")
        expect_error("ValidationException", kms().encrypt, KeyId=key_id, Plaintext=b"x",
                     EncryptionAlgorithm="RSAES_OAEP_SHA_256", EncryptionContext={"a": "b"})
        expect_error("InvalidKeyUsageException", kms().encrypt, KeyId=key_id, Plaintext=b"x")
        expect_error("InvalidKeyUsageException", kms().sign, KeyId=key_id, Message=b"x",
                     SigningAlgorithm="RSASSA_PSS_SHA_256")
    sym = kms().create_key()["KeyMetadata"]["KeyId"]
    expect_error("InvalidKeyUsageException", kms().encrypt, KeyId=sym, Plaintext=b"x",
                 EncryptionAlgorithm="RSAES_OAEP_SHA_1")
    # ReEncrypt from an RSA key to a symmetric one, and back to another RSA key.
    rsa_a = create("RSA_2048", "ENCRYPT_DECRYPT")["KeyId"]
    rsa_b = create("RSA_3072", "ENCRYPT_DECRYPT")["KeyId"]
    _, pub_a = public_key(rsa_a)
    ct = pub_a.encrypt(b"moved", padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None))
    moved = kms().re_encrypt(CiphertextBlob=ct, SourceKeyId=rsa_a, SourceEncryptionAlgorithm="RSAES_OAEP_SHA_256",
                             DestinationKeyId=sym, DestinationEncryptionContext={"to": "sym"})
    check(moved["SourceEncryptionAlgorithm"] == "RSAES_OAEP_SHA_256"
          and moved["DestinationEncryptionAlgorithm"] == "SYMMETRIC_DEFAULT", f"{moved}")
    check(kms().decrypt(CiphertextBlob=moved["CiphertextBlob"], EncryptionContext={"to": "sym"})["Plaintext"] == b"moved",
          "ReEncrypt from RSA")
    back = kms().re_encrypt(CiphertextBlob=moved["CiphertextBlob"], SourceEncryptionContext={"to": "sym"},
                            DestinationKeyId=rsa_b, DestinationEncryptionAlgorithm="RSAES_OAEP_SHA_1")
    check(len(back["CiphertextBlob"]) == 384 and back["KeyId"].endswith(rsa_b), "ReEncrypt to RSA")
    got = kms().decrypt(KeyId=rsa_b, CiphertextBlob=back["CiphertextBlob"], EncryptionAlgorithm="RSAES_OAEP_SHA_1")
    check(got["Plaintext"] == b"moved", "the RSA destination decrypts")
    expect_error("ValidationException", kms().re_encrypt, CiphertextBlob=ct, SourceEncryptionAlgorithm="RSAES_OAEP_SHA_256",
                 DestinationKeyId=sym)


def data_key_pairs():
    sym = kms().create_key()["KeyMetadata"]["KeyId"]
    ctx = {"purpose": "pairs"}
    for spec in ("RSA_2048", "RSA_3072", "RSA_4096", "ECC_NIST_P256", "ECC_NIST_P384", "ECC_NIST_P521",
                 "ECC_SECG_P256K1"):
        out = kms().generate_data_key_pair(KeyId=sym, KeyPairSpec=spec, EncryptionContext=ctx)
        check(out["KeyPairSpec"] == spec and out["KeyId"].endswith(sym), f"{out['KeyPairSpec']}")
        private = serialization.load_der_private_key(out["PrivateKeyPlaintext"], password=None)
        public = serialization.load_der_public_key(out["PublicKey"])
        check(private.public_key().public_numbers() == public.public_numbers(), f"{spec}: the halves match")
        if spec.startswith("RSA"):
            check(public.key_size == int(spec[4:]), f"{spec} size")
            sig = private.sign(b"pair", padding.PKCS1v15(), hashes.SHA256())
            public.verify(sig, b"pair", padding.PKCS1v15(), hashes.SHA256())
        else:
            check(public.curve.name == ECC[spec][1].name, f"{spec} curve")
            sig = private.sign(b"pair", ec.ECDSA(hashes.SHA256()))
            public.verify(sig, b"pair", ec.ECDSA(hashes.SHA256()))
        back = kms().decrypt(CiphertextBlob=out["PrivateKeyCiphertextBlob"], EncryptionContext=ctx)
        check(back["Plaintext"] == out["PrivateKeyPlaintext"], f"{spec}: the blob holds the private key")
        expect_error("InvalidCiphertextException", kms().decrypt, CiphertextBlob=out["PrivateKeyCiphertextBlob"])
    bare = kms().generate_data_key_pair_without_plaintext(KeyId=sym, KeyPairSpec="ECC_NIST_P256",
                                                          EncryptionContext=ctx)
    check("PrivateKeyPlaintext" not in bare, "no plaintext private key")
    private = serialization.load_der_private_key(
        kms().decrypt(CiphertextBlob=bare["PrivateKeyCiphertextBlob"], EncryptionContext=ctx)["Plaintext"],
        password=None)
    check(private.public_key().public_bytes(serialization.Encoding.DER,
                                            serialization.PublicFormat.SubjectPublicKeyInfo) == bare["PublicKey"],
          "the encrypted private key matches the public key")
    signer = create("ECC_NIST_P256", "SIGN_VERIFY")["KeyId"]
    expect_error("InvalidKeyUsageException", kms().generate_data_key_pair, KeyId=signer, KeyPairSpec="RSA_2048")
    expect_error("ValidationException", kms().generate_data_key_pair, KeyId=sym, KeyPairSpec="RSA_1024")
    expect_error("UnsupportedOperationException", kms().generate_data_key_pair, KeyId=sym, KeyPairSpec="SM2")


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=")


def jwt_tokens():
    """ES256 and RS256 JWTs signed through p11kms, checked by PyJWT with the public key."""
    import jwt
    for spec, alg, kms_alg in (("ECC_NIST_P256", "ES256", "ECDSA_SHA_256"),
                               ("RSA_2048", "RS256", "RSASSA_PKCS1_V1_5_SHA_256"),
                               ("RSA_3072", "PS256", "RSASSA_PSS_SHA_256")):
        key_id = create(spec, "SIGN_VERIFY")["KeyId"]
        header = b64url(json.dumps({"alg": alg, "typ": "JWT", "kid": key_id}).encode())
        claims = {"sub": "p11kms", "iat": 1_700_000_000, "aud": "tests"}
        body = b64url(json.dumps(claims).encode())
        signing_input = header + b"." + body
        sig = kms().sign(KeyId=key_id, Message=signing_input, SigningAlgorithm=kms_alg)["Signature"]
        if alg == "ES256":
            # JWS carries ECDSA as r || s; AWS (and p11kms) return DER.
            r, s_ = utils.decode_dss_signature(sig)
            sig = r.to_bytes(32, "big") + s_.to_bytes(32, "big")
        token = (signing_input + b"." + b64url(sig)).decode()
        pem = serialization.load_der_public_key(kms().get_public_key(KeyId=key_id)["PublicKey"]).public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        got = jwt.decode(token, pem, algorithms=[alg], audience="tests")
        check(got == claims, f"{alg}: {got}")
        tampered = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
        try:
            jwt.decode(tampered, pem, algorithms=[alg], audience="tests")
            fail(f"{alg}: a tampered token verified")
        except jwt.InvalidSignatureError:
            pass


def errors():
    expect_error("ValidationException", kms().create_key, KeySpec="HMAC_256")
    expect_error("ValidationException", kms().create_key, KeySpec="RSA_2048", KeyUsage="GENERATE_VERIFY_MAC")
    expect_error("ValidationException", kms().create_key, KeySpec="ECC_NIST_P256", KeyUsage="ENCRYPT_DECRYPT")
    expect_error("ValidationException", kms().create_key, KeySpec="SYMMETRIC_DEFAULT", KeyUsage="SIGN_VERIFY")
    sym = kms().create_key()["KeyMetadata"]["KeyId"]
    expect_error("InvalidKeyUsageException", kms().sign, KeyId=sym, Message=b"m", SigningAlgorithm="ECDSA_SHA_256")
    expect_error("InvalidKeyUsageException", kms().generate_mac, KeyId=sym, Message=b"m", MacAlgorithm="HMAC_SHA_256")
    expect_error("UnsupportedOperationException", kms().get_public_key, KeyId=sym)
    signer = create("ECC_NIST_P256", "SIGN_VERIFY")["KeyId"]
    for fn, kwargs in ((kms().enable_key_rotation, {}), (kms().rotate_key_on_demand, {}),
                       (kms().get_key_rotation_status, {})):
        expect_error("UnsupportedOperationException", fn, KeyId=signer, **kwargs)
    expect_error("ValidationException", kms().sign, KeyId=signer, Message=b"m", SigningAlgorithm="NOPE")
    expect_error("ValidationException", kms().sign, KeyId=signer, Message=b"m" * 4097,
                 SigningAlgorithm="ECDSA_SHA_256")
    kms().disable_key(KeyId=signer)
    expect_error("DisabledException", kms().sign, KeyId=signer, Message=b"m", SigningAlgorithm="ECDSA_SHA_256")
    kms().enable_key(KeyId=signer)
    kms().sign(KeyId=signer, Message=b"m" * 4096, SigningAlgorithm="ECDSA_SHA_256")


def main():
    cmd = sys.argv[1]
    if cmd == "all":
        errors()
        hmac_keys()
        ecc_signing()
        key_agreement()
        rsa_signing()
        rsa_encryption()
        data_key_pairs()
        jwt_tokens()
    else:
        fail(f"unknown subcommand {cmd}")
    print("ok")


if __name__ == "__main__":
    main()
