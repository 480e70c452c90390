"""p11kms through AWS's own clients: boto3/botocore, the AWS CLI and the AWS Encryption
SDK's KMS keyring, configured only by the environment a user would set
(AWS_ENDPOINT_URL_KMS, AWS_CA_BUNDLE, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
AWS_REGION). Each subcommand asserts and exits non-zero with a message on the first
failure; on success it prints what the Rust test checks further.

Subcommands:
  roundtrip                 every KMS operation botocore knows, with paginators
  errors                    server errors parsed into botocore's exception classes
  cli                       the AWS CLI: files, paging flags, exit statuses
  call TARGET JSON|-        one raw signed call (p11kms-only operations), the body given or
                            on stdin (-); prints the status, error type and body
  sigv4                     tampered and badly signed requests
  encrypt KEY / decrypt     Plaintext on stdin, CiphertextBlob (base64) on stdout, and back
  expect-denied KEY         Encrypt under KEY is AccessDeniedException
  esdk-encrypt KEY          ESDK message of stdin under KEY (AWS KMS keyring) to stdout
  esdk-decrypt              ESDK message on stdin to its plaintext on stdout
"""

import base64
import datetime
import json
import os
import ssl
import subprocess
import sys
import urllib.error
import urllib.request
import uuid

import boto3
import botocore.auth
import botocore.awsrequest
import botocore.credentials
import botocore.exceptions


def kms():
    return boto3.client("kms")


def fail(msg):
    print(f"FAIL: {msg}", file=sys.stderr)
    sys.exit(1)


def check(cond, msg):
    if not cond:
        fail(msg)


def expect_error(name, fn, *args, **kwargs):
    """Calls fn; it must raise botocore's exception class for `name`."""
    client = kms()
    cls = getattr(client.exceptions, name, None)
    try:
        fn(*args, **kwargs)
    except botocore.exceptions.ClientError as e:
        code = e.response["Error"]["Code"]
        check(code == name, f"expected {name}, got {code}: {e}")
        if cls is not None:
            check(type(e).__name__ == name, f"botocore raised {type(e).__name__}, not {name}")
        check(e.response["ResponseMetadata"].get("RequestId"), "an error without a request id")
        return e
    fail(f"expected {name}, the call succeeded")


def paginate(client, op, key, **kwargs):
    items = []
    pages = 0
    for page in client.get_paginator(op).paginate(PaginationConfig={"PageSize": 1}, **kwargs):
        pages += 1
        items.extend(page[key])
    return items, pages


def roundtrip():
    c = kms()
    # (CreateKey's Tags member is not supported yet: tags come with TagResource.)
    k1 = c.create_key(Description="boto3 one")["KeyMetadata"]
    check(k1["KeyState"] == "Enabled" and k1["Enabled"], f"new key {k1}")
    check(isinstance(k1["CreationDate"], datetime.datetime), "CreationDate is not a timestamp")
    check(k1["Arn"].endswith(k1["KeyId"]) and k1["KeyManager"] == "CUSTOMER", f"{k1}")
    check(k1["EncryptionAlgorithms"] == ["SYMMETRIC_DEFAULT"], f"{k1}")
    a1, id1 = k1["Arn"], k1["KeyId"]
    k2 = c.create_key()["KeyMetadata"]
    a2, id2 = k2["Arn"], k2["KeyId"]
    check(c.describe_key(KeyId=a1)["KeyMetadata"]["Description"] == "boto3 one", "describe")

    # Aliases.
    alias = "alias/boto3-" + uuid.uuid4().hex[:8]
    c.create_alias(AliasName=alias, TargetKeyId=id1)
    check(c.describe_key(KeyId=alias)["KeyMetadata"]["Arn"] == a1, "describe by alias")

    # Cryptography.
    ctx = {"purpose": "boto3", "n": "1"}
    enc = c.encrypt(KeyId=alias, Plaintext=b"hello", EncryptionContext=ctx)
    check(enc["KeyId"] == a1 and enc["EncryptionAlgorithm"] == "SYMMETRIC_DEFAULT", f"{enc}")
    dec = c.decrypt(CiphertextBlob=enc["CiphertextBlob"], EncryptionContext=ctx)
    check(dec["Plaintext"] == b"hello" and dec["KeyId"] == a1, f"decrypt {dec}")
    dec = c.decrypt(CiphertextBlob=enc["CiphertextBlob"], EncryptionContext=ctx, KeyId=a1,
                    EncryptionAlgorithm="SYMMETRIC_DEFAULT")
    check(dec["EncryptionAlgorithm"] == "SYMMETRIC_DEFAULT", "decrypt algorithm")
    re = c.re_encrypt(CiphertextBlob=enc["CiphertextBlob"], SourceEncryptionContext=ctx,
                      DestinationKeyId=id2, DestinationEncryptionContext={"moved": "yes"})
    check(re["SourceKeyId"] == a1 and re["KeyId"] == a2, f"reencrypt {re}")
    check(c.decrypt(CiphertextBlob=re["CiphertextBlob"],
                    EncryptionContext={"moved": "yes"})["Plaintext"] == b"hello", "reencrypted")
    dk = c.generate_data_key(KeyId=id1, KeySpec="AES_256", EncryptionContext=ctx)
    check(len(dk["Plaintext"]) == 32 and dk["KeyId"] == a1, "data key")
    check(c.decrypt(CiphertextBlob=dk["CiphertextBlob"], EncryptionContext=ctx)["Plaintext"]
          == dk["Plaintext"], "data key decrypts")
    check(len(c.generate_data_key(KeyId=id1, NumberOfBytes=64)["Plaintext"]) == 64, "64 bytes")
    nk = c.generate_data_key_without_plaintext(KeyId=id1, KeySpec="AES_128")
    check("Plaintext" not in nk and nk["KeyId"] == a1, "without plaintext")
    check(len(c.decrypt(CiphertextBlob=nk["CiphertextBlob"])["Plaintext"]) == 16, "AES_128")
    check(len(c.generate_random(NumberOfBytes=17)["Plaintext"]) == 17, "random")

    # Key policy.
    policy = c.get_key_policy(KeyId=id1, PolicyName="default")["Policy"]
    check(json.loads(policy)["Statement"], "policy has statements")
    c.put_key_policy(KeyId=id1, PolicyName="default", Policy=policy)
    check(c.list_key_policies(KeyId=id1)["PolicyNames"] == ["default"], "policy names")

    # Grants.
    account = a1.split(":")[4]
    grantee = f"arn:aws:iam::{account}:role/boto3-grantee"
    grants = []
    for i in range(3):
        g = c.create_grant(KeyId=id1, GranteePrincipal=grantee, RetiringPrincipal=grantee,
                           Operations=["Encrypt", "Decrypt"], Name=f"g{i}",
                           Constraints={"EncryptionContextSubset": {"purpose": "boto3"}})
        check(len(g["GrantId"]) == 64 and g["GrantToken"], f"grant {g}")
        grants.append(g)
    listed, pages = paginate(c, "list_grants", "Grants", KeyId=id1)
    check(pages == 3 and sorted(x["GrantId"] for x in listed) == sorted(g["GrantId"] for g in grants),
          f"grants over {pages} pages: {listed}")
    one = next(x for x in listed if x["GrantId"] == grants[0]["GrantId"])
    check(one["GranteePrincipal"] == grantee and sorted(one["Operations"]) == ["Decrypt", "Encrypt"]
          and one["Constraints"]["EncryptionContextSubset"] == {"purpose": "boto3"}
          and isinstance(one["CreationDate"], datetime.datetime) and one["KeyId"] == a1, f"{one}")
    retirable = c.list_retirable_grants(RetiringPrincipal=grantee)["Grants"]
    check(len(retirable) == 3, f"retirable {retirable}")
    # A grant token makes a new grant usable at once.
    c.encrypt(KeyId=id1, Plaintext=b"x", EncryptionContext={"purpose": "boto3"},
              GrantTokens=[grants[0]["GrantToken"]])
    c.retire_grant(GrantToken=grants[0]["GrantToken"])
    c.retire_grant(KeyId=a1, GrantId=grants[1]["GrantId"])
    c.revoke_grant(KeyId=id1, GrantId=grants[2]["GrantId"])
    check(c.list_grants(KeyId=id1)["Grants"] == [], "grants gone")

    # State, description, rotation.
    c.disable_key(KeyId=id2)
    check(not c.describe_key(KeyId=id2)["KeyMetadata"]["Enabled"], "disabled")
    c.enable_key(KeyId=id2)
    c.update_key_description(KeyId=id2, Description="second")
    check(c.describe_key(KeyId=id2)["KeyMetadata"]["Description"] == "second", "description")
    c.enable_key_rotation(KeyId=id1, RotationPeriodInDays=180)
    st = c.get_key_rotation_status(KeyId=id1)
    check(st["KeyRotationEnabled"] and st["RotationPeriodInDays"] == 180, f"rotation {st}")
    check(isinstance(st.get("NextRotationDate"), datetime.datetime), f"next rotation {st}")
    c.disable_key_rotation(KeyId=id1)
    check(not c.get_key_rotation_status(KeyId=id1)["KeyRotationEnabled"], "rotation off")
    rotated = c.rotate_key_on_demand(KeyId=id1)["KeyId"]
    check(rotated in (id1, a1), f"rotate on demand: {rotated}")
    rot = c.list_key_rotations(KeyId=id1)["Rotations"]
    check(len(rot) == 1 and rot[0]["RotationType"] == "ON_DEMAND", f"rotations {rot}")
    check(isinstance(rot[0]["RotationDate"], datetime.datetime), "rotation date")
    check(c.decrypt(CiphertextBlob=enc["CiphertextBlob"], EncryptionContext=ctx)["Plaintext"]
          == b"hello", "old blob after rotation")

    # Tags.
    c.tag_resource(KeyId=id1, Tags=[{"TagKey": "team", "TagValue": "a"},
                                    {"TagKey": "env", "TagValue": "dev"}])
    tags = {t["TagKey"]: t["TagValue"] for t in c.list_resource_tags(KeyId=id1)["Tags"]}
    check(tags == {"team": "a", "env": "dev"}, f"tags {tags}")
    c.untag_resource(KeyId=id1, TagKeys=["team"])
    check([t["TagKey"] for t in c.list_resource_tags(KeyId=id1)["Tags"]] == ["env"], "untag")

    # Alias moves, listing, deletion.
    c.update_alias(AliasName=alias, TargetKeyId=id2)
    mine = c.list_aliases(KeyId=id2)["Aliases"]
    check([x["AliasName"] for x in mine] == [alias] and mine[0]["TargetKeyId"] == id2, f"{mine}")
    check(mine[0]["AliasArn"].endswith(":" + alias), f"{mine}")
    aliases, pages = paginate(c, "list_aliases", "Aliases")
    check(alias in [x["AliasName"] for x in aliases] and pages == len(aliases), "alias pages")
    c.delete_alias(AliasName=alias)
    expect_error("NotFoundException", c.describe_key, KeyId=alias)

    # ListKeys with the paginator, one key a page.
    keys, pages = paginate(c, "list_keys", "Keys")
    ids = [k["KeyId"] for k in keys]
    check(id1 in ids and id2 in ids and len(ids) == len(set(ids)) == pages, f"{pages} pages {ids}")
    check(all(k["KeyArn"].endswith(k["KeyId"]) for k in keys), "KeyArn")

    # Deletion, cancelled.
    s = c.schedule_key_deletion(KeyId=id2, PendingWindowInDays=7)
    check(s["KeyState"] == "PendingDeletion" and s["PendingWindowInDays"] == 7, f"{s}")
    check(isinstance(s["DeletionDate"], datetime.datetime), "deletion date")
    expect_error("KMSInvalidStateException", c.encrypt, KeyId=id2, Plaintext=b"x")
    check(c.cancel_key_deletion(KeyId=id2)["KeyId"] == a2, "cancel")
    check(c.describe_key(KeyId=id2)["KeyMetadata"]["KeyState"] == "Disabled", "cancelled is disabled")
    print(json.dumps({"keys": [a1, a2]}))


def errors():
    c = kms()
    key = c.create_key()["KeyMetadata"]
    other = c.create_key()["KeyMetadata"]
    blob = c.encrypt(KeyId=key["KeyId"], Plaintext=b"s", EncryptionContext={"a": "b"})["CiphertextBlob"]
    expect_error("NotFoundException", c.describe_key, KeyId=str(uuid.uuid4()))
    expect_error("NotFoundException", c.describe_key, KeyId="alias/does-not-exist")
    expect_error("InvalidCiphertextException", c.decrypt, CiphertextBlob=b"\x01" * 80)
    expect_error("InvalidCiphertextException", c.decrypt, CiphertextBlob=blob, EncryptionContext={"a": "c"})
    expect_error("IncorrectKeyException", c.decrypt, CiphertextBlob=blob, EncryptionContext={"a": "b"},
                 KeyId=other["KeyId"])
    expect_error("ValidationException", c.generate_data_key, KeyId=key["KeyId"], KeySpec="AES_256",
                 NumberOfBytes=32)
    expect_error("MalformedPolicyDocumentException", c.put_key_policy, KeyId=key["KeyId"],
                 PolicyName="default", Policy="{not json")
    expect_error("InvalidGrantTokenException", c.retire_grant, GrantToken="not-a-token")
    expect_error("InvalidAliasNameException", c.create_alias, AliasName="alias/aws/mine",
                 TargetKeyId=key["KeyId"])
    c.create_alias(AliasName="alias/err-" + key["KeyId"], TargetKeyId=key["KeyId"])
    expect_error("AlreadyExistsException", c.create_alias, AliasName="alias/err-" + key["KeyId"],
                 TargetKeyId=key["KeyId"])
    expect_error("InvalidMarkerException", c.list_keys, Marker="bogus-marker")
    expect_error("TagException", c.tag_resource, KeyId=key["KeyId"],
                 Tags=[{"TagKey": "aws:reserved", "TagValue": "x"}])
    expect_error("UnsupportedOperationException", c.create_key, KeySpec="SM2",
                 KeyUsage="SIGN_VERIFY")
    c.disable_key(KeyId=key["KeyId"])
    expect_error("DisabledException", c.encrypt, KeyId=key["KeyId"], Plaintext=b"x")
    c.schedule_key_deletion(KeyId=other["KeyId"], PendingWindowInDays=7)
    expect_error("KMSInvalidStateException", c.enable_key, KeyId=other["KeyId"])
    # An operation KMS has that p11kms does not.
    expect_error("UnknownOperationException", c.describe_custom_key_stores)
    print("ok")


def aws_cli(*args, stdin=None):
    return subprocess.run([sys.executable, "-m", "awscli", "kms", *args, "--output", "json"], input=stdin,
                          capture_output=True)


def cli(tmp):
    key = aws_cli("create-key", "--description", "from the AWS CLI")
    check(key.returncode == 0, f"create-key: {key.stderr.decode()}")
    meta = json.loads(key.stdout)["KeyMetadata"]
    plain = os.path.join(tmp, "plain.bin")
    with open(plain, "wb") as f:
        f.write(b"secret from the cli\x00\xff")
    enc = aws_cli("encrypt", "--key-id", meta["Arn"], "--plaintext", f"fileb://{plain}",
                  "--encryption-context", "app=cli")
    check(enc.returncode == 0, f"encrypt: {enc.stderr.decode()}")
    blob = base64.b64decode(json.loads(enc.stdout)["CiphertextBlob"])
    blob_file = os.path.join(tmp, "blob.bin")
    with open(blob_file, "wb") as f:
        f.write(blob)
    dec = aws_cli("decrypt", "--ciphertext-blob", f"fileb://{blob_file}", "--encryption-context",
                  "app=cli", "--query", "Plaintext", "--output", "text")
    check(dec.returncode == 0, f"decrypt: {dec.stderr.decode()}")
    check(base64.b64decode(dec.stdout.strip()) == b"secret from the cli\x00\xff", "cli round trip")
    # Paging: two items, fetched one a page, then a token to go on.
    for _ in range(2):
        aws_cli("create-key")
    page = aws_cli("list-keys", "--page-size", "1", "--max-items", "2")
    check(page.returncode == 0, f"list-keys: {page.stderr.decode()}")
    body = json.loads(page.stdout)
    check(len(body["Keys"]) == 2 and body.get("NextToken"), f"max-items: {body}")
    rest = aws_cli("list-keys", "--page-size", "1", "--starting-token", body["NextToken"])
    check(rest.returncode == 0, f"list-keys rest: {rest.stderr.decode()}")
    ids = [k["KeyId"] for k in body["Keys"] + json.loads(rest.stdout)["Keys"]]
    check(len(ids) == len(set(ids)) and meta["KeyId"] in ids, f"paged keys {ids}")
    # A service error: the exit status of a service error (255 in AWS CLI v1, 254 in
    # v2) and the error name on stderr.
    import awscli
    service_error = 255 if awscli.__version__.startswith("1.") else 254
    missing = aws_cli("describe-key", "--key-id", str(uuid.uuid4()))
    check(missing.returncode == service_error, f"describe-key of nothing exited {missing.returncode}")
    check(b"NotFoundException" in missing.stderr, missing.stderr.decode())
    print("ok")


def raw_call(target, body, *, region=None, service="kms", secret=None, mutate=None,
             when=None, content_type="application/x-amz-json-1.1"):
    """Signs and sends one request by hand; returns (status, headers, body)."""
    session = boto3.session.Session()
    creds = session.get_credentials().get_frozen_credentials()
    if secret is not None:
        creds = botocore.credentials.ReadOnlyCredentials(creds.access_key, secret, creds.token)
    url = os.environ["AWS_ENDPOINT_URL_KMS"].rstrip("/") + "/"
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    req = botocore.awsrequest.AWSRequest(method="POST", url=url, data=data, headers={
        "Content-Type": content_type, "X-Amz-Target": target})
    signer = botocore.auth.SigV4Auth(creds, service, region or session.region_name)
    if when is not None:
        # Sign as if at another time: botocore reads the clock through this function.
        real = botocore.auth.get_current_datetime
        botocore.auth.get_current_datetime = lambda: when
        try:
            signer.add_auth(req)
        finally:
            botocore.auth.get_current_datetime = real
    else:
        signer.add_auth(req)
    prepared = req.prepare()
    headers = dict(prepared.headers)
    body = prepared.body
    if mutate:
        headers, body = mutate(headers, body)
    ctx = ssl.create_default_context(cafile=os.environ["AWS_CA_BUNDLE"])
    r = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(r, context=ctx) as resp:
            return resp.status, lower(resp.headers), resp.read()
    except urllib.error.HTTPError as e:
        return e.code, lower(e.headers), e.read()


def lower(headers):
    return {k.lower(): v for k, v in headers.items()}


def expect_raw(name, status, headers, body):
    # AWS answers a request without any signature 403, the other refusals 400.
    want = 403 if name == "MissingAuthenticationToken" else 400
    check(status == want, f"{name}: status {status} {body!r}")
    check(headers.get("x-amzn-errortype", "").split(":")[0] == name,
          f"{name}: x-amzn-ErrorType {headers.get('x-amzn-errortype')} {body!r}")
    check(json.loads(body)["__type"].split("#")[-1] == name, f"{name}: body {body!r}")


def sigv4():
    target = "TrentService.GenerateRandom"
    ok = raw_call(target, {"NumberOfBytes": 8})
    check(ok[0] == 200 and len(base64.b64decode(json.loads(ok[2])["Plaintext"])) == 8, f"{ok}")
    # A signed body that is not JSON, or has a member of the wrong type.
    expect_raw("SerializationException", *raw_call(target, b'{"NumberOfBytes": '))
    status, headers, body = raw_call(target, b'{"NumberOfBytes": "lots-of-bytes"}')
    expect_raw("SerializationException", status, headers, body)
    check(b"lots-of-bytes" not in body, f"the value is echoed: {body!r}")
    expect_raw("InvalidSignatureException", *raw_call(target, {"NumberOfBytes": 8},
                                                      secret="wrong" * 8))
    expect_raw("InvalidSignatureException", *raw_call(target, {"NumberOfBytes": 8},
                                                      region="eu-north-9"))
    expect_raw("InvalidSignatureException", *raw_call(target, {"NumberOfBytes": 8}, service="s3"))
    past = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(minutes=6)
    expect_raw("InvalidSignatureException", *raw_call(target, {"NumberOfBytes": 8}, when=past))
    future = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(minutes=6)
    expect_raw("InvalidSignatureException", *raw_call(target, {"NumberOfBytes": 8}, when=future))
    # Within the window, a request signed a little earlier is accepted, as in AWS.
    near = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(minutes=3)
    check(raw_call(target, {"NumberOfBytes": 8}, when=near)[0] == 200, "3 minutes of skew")
    expect_raw("InvalidSignatureException", *raw_call(
        target, {"NumberOfBytes": 8}, mutate=lambda h, b: (h, b.replace(b"8", b"9"))))
    expect_raw("InvalidSignatureException", *raw_call(
        target, {"NumberOfBytes": 8},
        mutate=lambda h, b: ({**h, "X-Amz-Target": "TrentService.ListKeys"}, b)))
    expect_raw("MissingAuthenticationToken", *raw_call(
        target, {"NumberOfBytes": 8},
        mutate=lambda h, b: ({k: v for k, v in h.items() if k != "Authorization"}, b)))
    expect_raw("IncompleteSignature", *raw_call(
        target, {"NumberOfBytes": 8},
        mutate=lambda h, b: ({**h, "Authorization": h["Authorization"].split(", Signature")[0]}, b)))
    expect_raw("IncompleteSignature", *raw_call(
        target, {"NumberOfBytes": 8},
        mutate=lambda h, b: ({k: v for k, v in h.items() if k != "X-Amz-Date"}, b)))
    expect_raw("UnrecognizedClientException", *raw_call(
        target, {"NumberOfBytes": 8},
        mutate=lambda h, b: ({**h, "Authorization": h["Authorization"].replace(
            "Credential=" + h["Authorization"].split("Credential=")[1].split("/")[0],
            "Credential=AKIAAAAAAAAAAAAAAAAA")}, b)))
    print("ok")


def encrypt_stdin(key):
    out = kms().encrypt(KeyId=key, Plaintext=sys.stdin.buffer.read(), EncryptionContext={"via": "json"})
    sys.stdout.write(base64.b64encode(out["CiphertextBlob"]).decode())


def decrypt_stdin():
    blob = base64.b64decode(sys.stdin.buffer.read())
    sys.stdout.buffer.write(kms().decrypt(CiphertextBlob=blob, EncryptionContext={"via": "json"})["Plaintext"])


def expect_denied(key):
    expect_error("AccessDeniedException", kms().encrypt, KeyId=key, Plaintext=b"x")
    print("ok")


def esdk_encrypt(key):
    import aws_encryption_sdk
    client = aws_encryption_sdk.EncryptionSDKClient()
    provider = aws_encryption_sdk.StrictAwsKmsMasterKeyProvider(key_ids=[key])
    ct, _ = client.encrypt(source=sys.stdin.buffer.read(), key_provider=provider,
                           encryption_context={"app": "esdk"})
    sys.stdout.buffer.write(ct)


def esdk_decrypt(key):
    import aws_encryption_sdk
    client = aws_encryption_sdk.EncryptionSDKClient()
    provider = aws_encryption_sdk.StrictAwsKmsMasterKeyProvider(key_ids=[key])
    pt, header = client.decrypt(source=sys.stdin.buffer.read(), key_provider=provider)
    check(header.encryption_context.get("app") == "esdk", f"context {header.encryption_context}")
    sys.stdout.buffer.write(pt)


def main():
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "roundtrip":
        roundtrip()
    elif cmd == "errors":
        errors()
    elif cmd == "cli":
        cli(args[0])
    elif cmd == "call":
        body = sys.stdin.buffer.read() if args[1] == "-" else args[1].encode()
        status, headers, body = raw_call(args[0], body)
        print(json.dumps({"status": status, "type": headers.get("x-amzn-errortype"),
                          "body": json.loads(body) if body else None}))
    elif cmd == "sigv4":
        sigv4()
    elif cmd == "encrypt":
        encrypt_stdin(args[0])
    elif cmd == "decrypt":
        decrypt_stdin()
    elif cmd == "expect-denied":
        expect_denied(args[0])
    elif cmd == "esdk-encrypt":
        esdk_encrypt(args[0])
    elif cmd == "esdk-decrypt":
        esdk_decrypt(args[0])
    else:
        fail(f"unknown subcommand {cmd}")


if __name__ == "__main__":
    main()
