"""A master key provider for the official AWS Encryption SDK for Python that keeps its
keys in p11kms, reached over gRPC with mTLS (stubs compiled from proto/ at start with
grpcio-tools). Used by tests/it/esdk_kms.rs to show that both the message format and
the gRPC API work from another language.

Encrypted data keys follow the p11kms keyring's convention: provider id "p11kms",
provider info the key ARN, ciphertext the daemon's blob; the message's whole encryption
context (with the SDK's aws-crypto-public-key in signed suites) goes with every call.

    esdk_p11kms.py encrypt --endpoint URL --identity DIR --key-id K [--key-id K2 ...]
                           [--context k=v ...] [--frame-length N] [--signed]  < in > out
    esdk_p11kms.py decrypt --endpoint URL --identity DIR [--key-id ARN ...]
                           [--context k=v ...]                                < in > out

The first --key-id makes the data key, the others encrypt it too. On decrypt, --key-id
(key ARNs, as the message names them) limits which keys may be used; without it any
p11kms data key is tried. --context on decrypt names pairs the message's encryption
context must hold. Errors: a message on stderr and exit status 1.
"""
import argparse
import hashlib
import importlib
import importlib.metadata
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from urllib.parse import urlparse

import attr
import aws_encryption_sdk
import grpc
from aws_encryption_sdk.exceptions import (
    AWSEncryptionSDKClientError,
    DecryptKeyError,
    EncryptKeyError,
    GenerateKeyError,
)
from aws_encryption_sdk.identifiers import Algorithm, CommitmentPolicy
from aws_encryption_sdk.internal.str_ops import to_str
from aws_encryption_sdk.key_providers.base import (
    MasterKey,
    MasterKeyConfig,
    MasterKeyProvider,
    MasterKeyProviderConfig,
)
from aws_encryption_sdk.structures import DataKey, EncryptedDataKey, MasterKeyInfo

PROVIDER_ID = "p11kms"
ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
# Seconds for one call to the daemon.
TIMEOUT = 30
# Why each data key the SDK tried could not be decrypted (the SDK only says that none
# could); reported when decryption fails.
DECRYPT_FAILURES = []


def load_stubs():
    """Compiles the proto into target/interop-proto/ (once per proto text and Python
    environment) and imports the generated modules."""
    proto_root = os.path.join(ROOT, "proto")
    with open(os.path.join(proto_root, "p11kms", "v1", "kms.proto"), "rb") as f:
        digest = hashlib.sha256(f.read())
    # Generated code is tied to the protobuf runtime it was made for.
    digest.update(sys.executable.encode())
    digest.update(importlib.metadata.version("grpcio-tools").encode())
    cache = os.path.join(ROOT, "target", "interop-proto")
    out = os.path.join(cache, digest.hexdigest()[:16])
    if not os.path.isdir(out):
        os.makedirs(cache, exist_ok=True)
        work = tempfile.mkdtemp(prefix="tmp-", dir=cache)
        subprocess.run(
            [sys.executable, "-m", "grpc_tools.protoc", "-I", proto_root,
             "--python_out", work, "--grpc_python_out", work, "p11kms/v1/kms.proto"],
            check=True,
        )
        try:
            os.rename(work, out)
        except OSError:
            shutil.rmtree(work, ignore_errors=True)  # another process got there first
    sys.path.insert(0, out)
    return importlib.import_module("p11kms.v1.kms_pb2"), importlib.import_module("p11kms.v1.kms_pb2_grpc")


PB, PB_GRPC = load_stubs()


def connect(endpoint, identity):
    """An mTLS channel to the daemon. Its certificate names localhost, whatever address
    the endpoint uses."""
    url = urlparse(endpoint if "://" in endpoint else "https://" + endpoint)

    def read(name):
        with open(os.path.join(identity, name), "rb") as f:
            return f.read()

    creds = grpc.ssl_channel_credentials(
        root_certificates=read("ca.pem"), private_key=read("key.pem"), certificate_chain=read("cert.pem")
    )
    channel = grpc.secure_channel(url.netloc, creds, options=[("grpc.ssl_target_name_override", "localhost")])
    return PB_GRPC.KeyManagementServiceStub(channel)


def describe(err):
    """The daemon's error: its message starts with the AWS error name."""
    return err.details() or err.code().name


@attr.s(hash=True)
class P11kmsMasterKeyConfig(MasterKeyConfig):
    """A p11kms key: its id (key id, ARN or alias; an ARN to decrypt) and the gRPC stub
    to reach it."""

    provider_id = PROVIDER_ID
    stub = attr.ib(hash=False)


class P11kmsMasterKey(MasterKey):
    """One p11kms key as an SDK master key."""

    provider_id = PROVIDER_ID
    _config_class = P11kmsMasterKeyConfig

    def __init__(self, **kwargs):  # pylint: disable=unused-argument
        self._key_id = to_str(self.key_id)

    def _generate_data_key(self, algorithm, encryption_context=None):
        request = PB.GenerateDataKeyRequest(
            KeyId=self._key_id, EncryptionContext=encryption_context or {}, NumberOfBytes=algorithm.data_key_len
        )
        try:
            resp = self.config.stub.GenerateDataKey(request, timeout=TIMEOUT)
        except grpc.RpcError as err:
            raise GenerateKeyError("GenerateDataKey with {}: {}".format(self._key_id, describe(err))) from err
        return DataKey(
            key_provider=MasterKeyInfo(provider_id=PROVIDER_ID, key_info=resp.KeyId),
            data_key=resp.Plaintext,
            encrypted_data_key=resp.CiphertextBlob,
        )

    def _encrypt_data_key(self, data_key, algorithm, encryption_context=None):
        request = PB.EncryptRequest(
            KeyId=self._key_id, Plaintext=data_key.data_key, EncryptionContext=encryption_context or {}
        )
        try:
            resp = self.config.stub.Encrypt(request, timeout=TIMEOUT)
        except grpc.RpcError as err:
            raise EncryptKeyError("Encrypt with {}: {}".format(self._key_id, describe(err))) from err
        return EncryptedDataKey(
            key_provider=MasterKeyInfo(provider_id=PROVIDER_ID, key_info=resp.KeyId),
            encrypted_data_key=resp.CiphertextBlob,
        )

    def _decrypt_data_key(self, encrypted_data_key, algorithm, encryption_context=None):
        arn = to_str(encrypted_data_key.key_provider.key_info)
        request = PB.DecryptRequest(
            CiphertextBlob=encrypted_data_key.encrypted_data_key, EncryptionContext=encryption_context or {}, KeyId=arn
        )
        try:
            resp = self.config.stub.Decrypt(request, timeout=TIMEOUT)
        except grpc.RpcError as err:
            DECRYPT_FAILURES.append("Decrypt with {}: {}".format(arn, describe(err)))
            raise DecryptKeyError(DECRYPT_FAILURES[-1]) from err
        # The daemon must answer for the key the data key names. (The SDK checks the
        # plaintext's length.)
        if resp.KeyId != arn:
            DECRYPT_FAILURES.append("Decrypt with {} answered for {}".format(arn, resp.KeyId))
            raise DecryptKeyError(DECRYPT_FAILURES[-1])
        return DataKey(
            key_provider=encrypted_data_key.key_provider,
            data_key=resp.Plaintext,
            encrypted_data_key=encrypted_data_key.encrypted_data_key,
        )


@attr.s(hash=True)
class P11kmsProviderConfig(MasterKeyProviderConfig):
    """The stub, the keys, and whether any p11kms data key may be tried (discovery)."""

    stub = attr.ib(hash=False)
    key_ids = attr.ib(hash=True, default=attr.Factory(tuple), converter=tuple)
    discovery = attr.ib(hash=True, default=False)


class P11kmsMasterKeyProvider(MasterKeyProvider):
    """p11kms keys as an SDK master key provider. To encrypt, the first key makes the
    data key and the others encrypt it too."""

    provider_id = PROVIDER_ID
    _config_class = P11kmsProviderConfig

    def __init__(self, **kwargs):  # pylint: disable=unused-argument
        # Strict: only the configured keys decrypt. Discovery: a key is made for
        # whatever p11kms ARN a message names, and the daemon's policies decide.
        self.vend_masterkey_on_decrypt = self.config.discovery
        self.add_master_keys_from_list(self.config.key_ids)

    def _new_master_key(self, key_id):
        return P11kmsMasterKey(config=P11kmsMasterKeyConfig(key_id=key_id, stub=self.config.stub))


def pairs(items):
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit("esdk_p11kms: write the context as KEY=VALUE: {}".format(item))
        out[key] = value
    return out


def run(args):
    stub = connect(args.endpoint, args.identity)
    client = aws_encryption_sdk.EncryptionSDKClient(commitment_policy=CommitmentPolicy.REQUIRE_ENCRYPT_REQUIRE_DECRYPT)
    context = pairs(args.context)
    data = sys.stdin.buffer.read()
    if args.mode == "encrypt":
        if not args.key_id:
            raise SystemExit("esdk_p11kms: encrypt needs --key-id")
        provider = P11kmsMasterKeyProvider(stub=stub, key_ids=args.key_id)
        suite = (
            Algorithm.AES_256_GCM_HKDF_SHA512_COMMIT_KEY_ECDSA_P384
            if args.signed
            else Algorithm.AES_256_GCM_HKDF_SHA512_COMMIT_KEY
        )
        message, _ = client.encrypt(
            source=data,
            key_provider=provider,
            encryption_context=context,
            frame_length=args.frame_length,
            algorithm=suite,
        )
        sys.stdout.buffer.write(message)
    else:
        provider = P11kmsMasterKeyProvider(stub=stub, key_ids=args.key_id, discovery=not args.key_id)
        try:
            plaintext, header = client.decrypt(source=data, key_provider=provider)
        except DecryptKeyError:
            if not DECRYPT_FAILURES:  # no call was made
                DECRYPT_FAILURES.append("no p11kms data key in the message is under " + (
                    " or ".join(args.key_id) if args.key_id else "any key"))
            raise
        for key, value in context.items():
            if header.encryption_context.get(key) != value:
                raise SystemExit("esdk_p11kms: the message's encryption context lacks {}={}".format(key, value))
        sys.stdout.buffer.write(plaintext)


def main():
    parser = argparse.ArgumentParser(description="AWS Encryption SDK messages under p11kms keys")
    parser.add_argument("mode", choices=["encrypt", "decrypt"])
    parser.add_argument("--endpoint", required=True, help="https://HOST:PORT of the daemon")
    parser.add_argument("--identity", required=True, help="directory with cert.pem, key.pem, ca.pem")
    parser.add_argument("--key-id", action="append", default=[], help="repeatable; the first makes the data key")
    parser.add_argument("--context", action="append", default=[], metavar="KEY=VALUE", help="repeatable")
    parser.add_argument(
        "--frame-length", type=int, default=4096, help="plaintext bytes per frame (the SDK wants a multiple of 128)"
    )
    parser.add_argument("--signed", action="store_true", help="the ECDSA P-384 suite")
    args = parser.parse_args()
    # The SDK logs its own tracebacks when a message fails; the error below says it.
    logging.getLogger("aws_encryption_sdk").addHandler(logging.NullHandler())
    try:
        run(args)
    except (AWSEncryptionSDKClientError, grpc.RpcError, OSError) as err:
        reasons = "".join("\n  " + failure for failure in DECRYPT_FAILURES)
        sys.exit("esdk_p11kms: {}: {}{}".format(type(err).__name__, err, reasons))


if __name__ == "__main__":
    main()
