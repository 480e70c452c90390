"""Bring your own key through boto3, checked by code p11kms did not write: Python
`cryptography` makes and wraps the material (RSAES-OAEP, and RFC 5649 AES key wrap
with padding under an ephemeral AES key), then proves what the HSM holds: a ciphertext
blob p11kms made is decrypted here from the documented blob format with the material
known only to this script, and an HMAC key's MAC equals Python's `hmac`. Configured by
the same environment as aws_kms.py. Exits non-zero with a message on the first failure;
prints "ok" at the end.

Asymmetric keys: the private key is made and wrapped here (PKCS#8 DER), and the public
key kept here must be GetPublicKey's, verify p11kms's signatures, encrypt what p11kms
decrypts, and agree with p11kms on ECDH secrets.

Subcommands:
  all --supported ALG[,ALG...] [--without-secp256k1]
              every key spec with every wrapping algorithm the token is expected to
              serve (the others must be refused as unsupported), the errors of
              ImportKeyMaterial and DeleteImportedKeyMaterial, and the key states
"""

import datetime
import hashlib
import hmac
import os
import struct
import sys
import time

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.keywrap import aes_key_wrap_with_padding

from aws_kms import check, expect_error, fail, kms

ALGORITHMS = ["RSAES_OAEP_SHA_1", "RSAES_OAEP_SHA_256", "RSA_AES_KEY_WRAP_SHA_1",
              "RSA_AES_KEY_WRAP_SHA_256"]
HMAC_SPECS = {"HMAC_224": (28, hashlib.sha224, "HMAC_SHA_224"),
              "HMAC_256": (32, hashlib.sha256, "HMAC_SHA_256"),
              "HMAC_384": (48, hashlib.sha384, "HMAC_SHA_384"),
              "HMAC_512": (64, hashlib.sha512, "HMAC_SHA_512")}


def wrap(public_der, algorithm, material):
    """What an importer does with the wrapping public key, in `cryptography`."""
    public = serialization.load_der_public_key(public_der)
    h = hashes.SHA256() if algorithm.endswith("SHA_256") else hashes.SHA1()
    oaep = padding.OAEP(mgf=padding.MGF1(algorithm=h), algorithm=h, label=None)
    if algorithm.startswith("RSAES_OAEP"):
        return public.encrypt(material, oaep)
    ephemeral = os.urandom(32)
    return public.encrypt(ephemeral, oaep) + aes_key_wrap_with_padding(ephemeral, material)


def external_key(spec="SYMMETRIC_DEFAULT", usage=None):
    args = {"Origin": "EXTERNAL", "KeySpec": spec}
    if usage:
        args["KeyUsage"] = usage
    meta = kms().create_key(**args)["KeyMetadata"]
    check(meta["Origin"] == "EXTERNAL" and meta["KeyState"] == "PendingImport"
          and not meta["Enabled"], f"a new EXTERNAL key: {meta}")
    check("ExpirationModel" not in meta and "ValidTo" not in meta, f"no terms yet: {meta}")
    return meta["KeyId"]


def parameters(key_id, algorithm, spec="RSA_2048"):
    p = kms().get_parameters_for_import(KeyId=key_id, WrappingAlgorithm=algorithm,
                                        WrappingKeySpec=spec)
    check(p["KeyId"].endswith(key_id), f"parameters of {key_id}: {p['KeyId']}")
    public = serialization.load_der_public_key(p["PublicKey"])
    check(public.key_size == int(spec[4:]), f"a {spec} wrapping key, not {public.key_size} bits")
    valid_for = p["ParametersValidTo"].timestamp() - time.time()
    check(23 * 3600 < valid_for <= 24 * 3600 + 60, f"valid for 24 hours: {valid_for}")
    return p


def import_material(key_id, params, algorithm, material, **terms):
    if not terms:
        terms = {"ExpirationModel": "KEY_MATERIAL_DOES_NOT_EXPIRE"}
    kms().import_key_material(KeyId=key_id, ImportToken=params["ImportToken"],
                              EncryptedKeyMaterial=wrap(params["PublicKey"], algorithm, material),
                              **terms)


def canonical(context):
    """The encryption context as docs/ciphertext-format.md encodes it."""
    out = struct.pack(">H", len(context))
    for k in sorted(context):
        kb, vb = k.encode(), context[k].encode()
        out += struct.pack(">H", len(kb)) + kb + struct.pack(">H", len(vb)) + vb
    return out


def decrypt_outside(material, blob, context):
    """Decrypts a p11kms blob with the material, from the documented format alone."""
    check(blob[:4] == b"p11\x01", f"blob magic and version: {blob[:4]!r}")
    header, iv, sealed = blob[:24], blob[24:36], blob[36:]
    return AESGCM(material).decrypt(iv, sealed, header + canonical(context))


def symmetric_round(algorithm, wrapping_spec="RSA_2048"):
    key_id = external_key()
    expect_error("KMSInvalidStateException", kms().encrypt, KeyId=key_id, Plaintext=b"x")
    params = parameters(key_id, algorithm, wrapping_spec)
    material = os.urandom(32)
    import_material(key_id, params, algorithm, material)
    meta = kms().describe_key(KeyId=key_id)["KeyMetadata"]
    check(meta["KeyState"] == "Enabled" and meta["ExpirationModel"] == "KEY_MATERIAL_DOES_NOT_EXPIRE",
          f"imported: {meta}")
    context = {"purpose": "import test", "alg": algorithm}
    secret = os.urandom(40)
    blob = kms().encrypt(KeyId=key_id, Plaintext=secret, EncryptionContext=context)["CiphertextBlob"]
    check(decrypt_outside(material, blob, context) == secret,
          f"{algorithm}: the HSM holds other material than was imported")
    back = kms().decrypt(CiphertextBlob=blob, EncryptionContext=context)["Plaintext"]
    check(back == secret, "p11kms decrypts its own blob")
    return key_id, params, material, blob, context


def hmac_round(spec, algorithm):
    length, digest, mac_algorithm = HMAC_SPECS[spec]
    key_id = external_key(spec, "GENERATE_VERIFY_MAC")
    params = parameters(key_id, algorithm)
    material = os.urandom(length)
    valid_to = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=30)
    import_material(key_id, params, algorithm, material, ExpirationModel="KEY_MATERIAL_EXPIRES",
                    ValidTo=valid_to)
    meta = kms().describe_key(KeyId=key_id)["KeyMetadata"]
    check(meta["ExpirationModel"] == "KEY_MATERIAL_EXPIRES"
          and abs(meta["ValidTo"].timestamp() - valid_to.timestamp()) < 1, f"terms: {meta}")
    message = os.urandom(77)
    mac = kms().generate_mac(KeyId=key_id, Message=message, MacAlgorithm=mac_algorithm)["Mac"]
    check(mac == hmac.new(material, message, digest).digest(),
          f"{spec} {algorithm}: the MAC is not Python's HMAC with the imported material")
    kms().verify_mac(KeyId=key_id, Message=message, MacAlgorithm=mac_algorithm, Mac=mac)
    return key_id, params, material


def hmac_errors(algorithm):
    """HMAC_256 material must be 32 to 64 bytes, and a re-import must bring the same."""
    key_id, params, material = hmac_round("HMAC_256", algorithm)
    for size in (24, 30, 31, 65, 72):
        other = external_key("HMAC_256", "GENERATE_VERIFY_MAC")
        expect_error("IncorrectKeyMaterialException", import_material, other,
                     parameters(other, algorithm), algorithm, os.urandom(size))
    expect_error("IncorrectKeyMaterialException", import_material, key_id, params, algorithm,
                 os.urandom(32))
    # A disabled key takes its material again and stays disabled.
    kms().disable_key(KeyId=key_id)
    import_material(key_id, params, algorithm, material)
    check(kms().describe_key(KeyId=key_id)["KeyMetadata"]["KeyState"] == "Disabled",
          "a re-import enables no disabled key")
    # A key pending deletion takes none.
    kms().schedule_key_deletion(KeyId=key_id, PendingWindowInDays=7)
    expect_error("KMSInvalidStateException", import_material, key_id, params, algorithm, material)


CURVES = {"ECC_NIST_P256": (ec.SECP256R1(), "ECDSA_SHA_256", hashes.SHA256()),
          "ECC_NIST_P384": (ec.SECP384R1(), "ECDSA_SHA_384", hashes.SHA384()),
          "ECC_NIST_P521": (ec.SECP521R1(), "ECDSA_SHA_512", hashes.SHA512()),
          "ECC_SECG_P256K1": (ec.SECP256K1(), "ECDSA_SHA_256", hashes.SHA256())}


def pkcs8(private):
    return private.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                 serialization.NoEncryption())


def spki(public):
    return public.public_bytes(serialization.Encoding.DER,
                               serialization.PublicFormat.SubjectPublicKeyInfo)


def import_pair(spec, usage, algorithm, private, wrapping_spec="RSA_2048"):
    """Imports `private` into a new EXTERNAL key; GetPublicKey must give its public half."""
    key_id = external_key(spec, usage)
    params = parameters(key_id, algorithm, wrapping_spec)
    import_material(key_id, params, algorithm, pkcs8(private))
    public = kms().get_public_key(KeyId=key_id)
    check(public["PublicKey"] == spki(private.public_key()),
          f"{spec} {algorithm}: GetPublicKey is not the imported key's public half")
    return key_id, params


def ec_round(spec, algorithm, wrapping_spec="RSA_2048"):
    curve, signing, h = CURVES[spec]
    private = ec.generate_private_key(curve)
    key_id, params = import_pair(spec, "SIGN_VERIFY", algorithm, private, wrapping_spec)
    message = os.urandom(50)
    sig = kms().sign(KeyId=key_id, Message=message, SigningAlgorithm=signing)["Signature"]
    private.public_key().verify(sig, message, ec.ECDSA(h))
    # A re-import of another key of the same curve is refused.
    expect_error("IncorrectKeyMaterialException", import_material, key_id, params, algorithm,
                 pkcs8(ec.generate_private_key(curve)))
    # Deleted, the pair refuses to sign or show its public key; the same key brings it back.
    kms().delete_imported_key_material(KeyId=key_id)
    expect_error("KMSInvalidStateException", kms().sign, KeyId=key_id, Message=message,
                 SigningAlgorithm=signing)
    expect_error("KMSInvalidStateException", kms().get_public_key, KeyId=key_id)
    import_material(key_id, params, algorithm, pkcs8(private))
    sig = kms().sign(KeyId=key_id, Message=message, SigningAlgorithm=signing)["Signature"]
    private.public_key().verify(sig, message, ec.ECDSA(h))
    return key_id


def ecdh_round(algorithm):
    private = ec.generate_private_key(ec.SECP384R1())
    key_id, _ = import_pair("ECC_NIST_P384", "KEY_AGREEMENT", algorithm, private)
    peer = ec.generate_private_key(ec.SECP384R1())
    shared = kms().derive_shared_secret(KeyId=key_id, KeyAgreementAlgorithm="ECDH",
                                        PublicKey=spki(peer.public_key()))["SharedSecret"]
    check(shared == peer.exchange(ec.ECDH(), private.public_key()),
          "the imported KEY_AGREEMENT key does not agree with its public half")


def rsa_round(algorithm):
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    key_id, params = import_pair("RSA_2048", "SIGN_VERIFY", algorithm, private)
    message = os.urandom(64)
    sig = kms().sign(KeyId=key_id, Message=message, SigningAlgorithm="RSASSA_PSS_SHA_256")["Signature"]
    private.public_key().verify(sig, message, padding.PSS(mgf=padding.MGF1(hashes.SHA256()),
                                                          salt_length=32), hashes.SHA256())
    expect_error("IncorrectKeyMaterialException", import_material, key_id, params, algorithm,
                 pkcs8(rsa.generate_private_key(public_exponent=65537, key_size=2048)))
    # A 3072-bit key is not RSA_2048 material.
    other = external_key("RSA_2048", "ENCRYPT_DECRYPT")
    other_params = parameters(other, algorithm)
    expect_error("IncorrectKeyMaterialException", import_material, other, other_params, algorithm,
                 pkcs8(rsa.generate_private_key(public_exponent=65537, key_size=3072)))
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    import_material(other, other_params, algorithm, pkcs8(private))
    secret = os.urandom(100)
    ct = private.public_key().encrypt(secret, padding.OAEP(mgf=padding.MGF1(hashes.SHA256()),
                                                         algorithm=hashes.SHA256(), label=None))
    back = kms().decrypt(KeyId=other, CiphertextBlob=ct, EncryptionAlgorithm="RSAES_OAEP_SHA_256")
    check(back["Plaintext"] == secret, "the imported RSA key does not decrypt for its public half")


def asymmetric(supported, secp256k1):
    aes_wrap = [a for a in supported if a.startswith("RSA_AES")]
    oaep = [a for a in supported if a.startswith("RSAES")]
    for algorithm in supported:
        ec_round("ECC_NIST_P256", algorithm)
    ecdh_round(supported[0])
    ec_round("ECC_NIST_P384", supported[-1])
    # P-521 under RSAES_OAEP needs more than a 2048-bit wrapping key, as AWS says.
    key_id = external_key("ECC_NIST_P521", "SIGN_VERIFY")
    for algorithm in oaep:
        expect_error("ValidationException", kms().get_parameters_for_import, KeyId=key_id,
                     WrappingAlgorithm=algorithm, WrappingKeySpec="RSA_2048")
    ec_round("ECC_NIST_P521", supported[0], "RSA_3072")
    if secp256k1:
        ec_round("ECC_SECG_P256K1", supported[0])
    # P-384 material is not P-256 material.
    key_id = external_key("ECC_NIST_P256", "SIGN_VERIFY")
    params = parameters(key_id, supported[0])
    expect_error("IncorrectKeyMaterialException", import_material, key_id, params, supported[0],
                 pkcs8(ec.generate_private_key(ec.SECP384R1())))
    if aes_wrap:
        rsa_round(aes_wrap[0])
    else:
        key_id = external_key("RSA_2048", "SIGN_VERIFY")
        for algorithm in ("RSA_AES_KEY_WRAP_SHA_1", "RSA_AES_KEY_WRAP_SHA_256"):
            expect_error("UnsupportedOperationException", kms().get_parameters_for_import,
                         KeyId=key_id, WrappingAlgorithm=algorithm, WrappingKeySpec="RSA_2048")


def errors(algorithm):
    key_id, params, material, blob, context = symmetric_round(algorithm)
    other = external_key()
    other_params = parameters(other, algorithm)
    # A token of another key; a token altered; material wrapped for another wrapping key.
    expect_error("InvalidImportTokenException", kms().import_key_material, KeyId=key_id,
                 ImportToken=other_params["ImportToken"],
                 EncryptedKeyMaterial=wrap(other_params["PublicKey"], algorithm, material),
                 ExpirationModel="KEY_MATERIAL_DOES_NOT_EXPIRE")
    bent = bytearray(params["ImportToken"])
    bent[20] ^= 1
    expect_error("InvalidImportTokenException", kms().import_key_material, KeyId=key_id,
                 ImportToken=bytes(bent), EncryptedKeyMaterial=wrap(params["PublicKey"], algorithm, material),
                 ExpirationModel="KEY_MATERIAL_DOES_NOT_EXPIRE")
    expect_error("InvalidCiphertextException", kms().import_key_material, KeyId=other,
                 ImportToken=other_params["ImportToken"],
                 EncryptedKeyMaterial=wrap(params["PublicKey"], algorithm, os.urandom(32)),
                 ExpirationModel="KEY_MATERIAL_DOES_NOT_EXPIRE")
    # Material of the wrong size, then other material than the key had.
    expect_error("IncorrectKeyMaterialException", import_material, other, other_params, algorithm,
                 os.urandom(16))
    expect_error("IncorrectKeyMaterialException", import_material, key_id, params, algorithm,
                 os.urandom(32))
    check(kms().describe_key(KeyId=other)["KeyMetadata"]["KeyState"] == "PendingImport",
          "a refused import leaves the key without material")
    # The terms, as AWS checks them.
    wrapped = wrap(params["PublicKey"], algorithm, material)
    now = datetime.datetime.now(datetime.timezone.utc)
    for terms in [{}, {"ExpirationModel": "KEY_MATERIAL_EXPIRES"},
                  {"ValidTo": now - datetime.timedelta(hours=1)},
                  {"ValidTo": now + datetime.timedelta(days=400)},
                  {"ExpirationModel": "KEY_MATERIAL_DOES_NOT_EXPIRE", "ValidTo": now + datetime.timedelta(days=1)}]:
        expect_error("ValidationException", kms().import_key_material, KeyId=key_id,
                     ImportToken=params["ImportToken"], EncryptedKeyMaterial=wrapped, **terms)
    # A key of another origin takes no material.
    own = kms().create_key()["KeyMetadata"]["KeyId"]
    expect_error("UnsupportedOperationException", kms().get_parameters_for_import, KeyId=own,
                 WrappingAlgorithm=algorithm, WrappingKeySpec="RSA_2048")
    expect_error("UnsupportedOperationException", kms().delete_imported_key_material, KeyId=own)
    expect_error("UnsupportedOperationException", kms().enable_key_rotation, KeyId=key_id)
    expect_error("ValidationException", kms().get_parameters_for_import, KeyId=key_id,
                 WrappingAlgorithm="RSAES_OAEP_SHA_512", WrappingKeySpec="RSA_2048")
    expect_error("UnsupportedOperationException", kms().get_parameters_for_import, KeyId=key_id,
                 WrappingAlgorithm="RSAES_PKCS1_V1_5", WrappingKeySpec="RSA_2048")
    expect_error("ValidationException", kms().get_parameters_for_import, KeyId=key_id,
                 WrappingAlgorithm=algorithm, WrappingKeySpec="RSA_1024")
    # An RSA private key is too long for RSAES_OAEP alone, as AWS says.
    rsa_key = external_key("RSA_2048", "SIGN_VERIFY")
    expect_error("ValidationException", kms().get_parameters_for_import, KeyId=rsa_key,
                 WrappingAlgorithm="RSAES_OAEP_SHA_256", WrappingKeySpec="RSA_4096")

    # Re-import with new terms; delete; the key state table; re-import restores.
    valid_to = now + datetime.timedelta(days=2)
    import_material(key_id, params, algorithm, material, ValidTo=valid_to)
    meta = kms().describe_key(KeyId=key_id)["KeyMetadata"]
    check(meta["ExpirationModel"] == "KEY_MATERIAL_EXPIRES", f"new terms: {meta}")
    kms().delete_imported_key_material(KeyId=key_id)
    meta = kms().describe_key(KeyId=key_id)["KeyMetadata"]
    check(meta["KeyState"] == "PendingImport" and "ValidTo" not in meta, f"deleted: {meta}")
    expect_error("KMSInvalidStateException", kms().decrypt, CiphertextBlob=blob, EncryptionContext=context)
    expect_error("KMSInvalidStateException", kms().encrypt, KeyId=key_id, Plaintext=b"x")
    expect_error("KMSInvalidStateException", kms().enable_key, KeyId=key_id)
    expect_error("KMSInvalidStateException", kms().create_grant, KeyId=key_id,
                 GranteePrincipal="arn:aws:iam::111122223333:role/R", Operations=["Encrypt"])
    kms().update_key_description(KeyId=key_id, Description="still manageable")
    kms().tag_resource(KeyId=key_id, Tags=[{"TagKey": "k", "TagValue": "v"}])
    kms().delete_imported_key_material(KeyId=key_id)  # no material: no effect
    import_material(key_id, params, algorithm, material)
    back = kms().decrypt(CiphertextBlob=blob, EncryptionContext=context)["Plaintext"]
    check(decrypt_outside(material, blob, context) == back, "the old blob decrypts again")
    # Scheduled for deletion from PendingImport, cancelled back to it.
    kms().delete_imported_key_material(KeyId=key_id)
    kms().schedule_key_deletion(KeyId=key_id, PendingWindowInDays=7)
    expect_error("KMSInvalidStateException", kms().get_parameters_for_import, KeyId=key_id,
                 WrappingAlgorithm=algorithm, WrappingKeySpec="RSA_2048")
    kms().cancel_key_deletion(KeyId=key_id)
    check(kms().describe_key(KeyId=key_id)["KeyMetadata"]["KeyState"] == "PendingImport",
          "a cancelled deletion of a key without material leaves it PendingImport")


def main():
    if len(sys.argv) < 4 or sys.argv[1] != "all" or sys.argv[2] != "--supported":
        fail(__doc__)
    supported = sys.argv[3].split(",")
    secp256k1 = "--without-secp256k1" not in sys.argv[4:]
    key_id = external_key()
    for algorithm in ALGORITHMS:
        if algorithm not in supported:
            expect_error("UnsupportedOperationException", kms().get_parameters_for_import,
                         KeyId=key_id, WrappingAlgorithm=algorithm, WrappingKeySpec="RSA_2048")
    for algorithm in supported:
        symmetric_round(algorithm)
        for spec in HMAC_SPECS:
            hmac_round(spec, algorithm)
    # The larger wrapping keys, once each.
    symmetric_round(supported[0], "RSA_3072")
    symmetric_round(supported[-1], "RSA_4096")
    errors(supported[0])
    hmac_errors(supported[-1])
    asymmetric(supported, secp256k1)
    print("ok")


if __name__ == "__main__":
    main()
