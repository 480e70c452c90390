"""Interop peer for tests/esdk_interop.rs: the official AWS Encryption SDK for Python
with a raw AES-256-GCM master key (namespace p11kms-test, name wrapping-key-1, key
0x11 * 32). `encrypt [signed]` and `decrypt` read stdin and write stdout."""
import sys

import aws_encryption_sdk
from aws_encryption_sdk.identifiers import Algorithm, CommitmentPolicy, EncryptionKeyType, WrappingAlgorithm
from aws_encryption_sdk.internal.crypto.wrapping_keys import WrappingKey
from aws_encryption_sdk.key_providers.raw import RawMasterKey

KEY = RawMasterKey(
    provider_id="p11kms-test",
    key_id=b"wrapping-key-1",
    wrapping_key=WrappingKey(
        wrapping_algorithm=WrappingAlgorithm.AES_256_GCM_IV12_TAG16_NO_PADDING,
        wrapping_key=b"\x11" * 32,
        wrapping_key_type=EncryptionKeyType.SYMMETRIC,
    ),
)
CLIENT = aws_encryption_sdk.EncryptionSDKClient(commitment_policy=CommitmentPolicy.REQUIRE_ENCRYPT_REQUIRE_DECRYPT)

data = sys.stdin.buffer.read()
if sys.argv[1] == "decrypt":
    plaintext, header = CLIENT.decrypt(source=data, key_provider=KEY)
    assert header.encryption_context.get("purpose") == "interop", header.encryption_context
    sys.stdout.buffer.write(plaintext)
else:
    ciphertext, _ = CLIENT.encrypt(
        source=data,
        key_provider=KEY,
        encryption_context={"purpose": "interop", "app": "p11kms"},
        frame_length=128,
        algorithm=(
            Algorithm.AES_256_GCM_HKDF_SHA512_COMMIT_KEY_ECDSA_P384
            if sys.argv[2:] == ["signed"]
            else Algorithm.AES_256_GCM_HKDF_SHA512_COMMIT_KEY
        ),
    )
    sys.stdout.buffer.write(ciphertext)
