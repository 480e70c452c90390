#!/usr/bin/env python3
# Usage: scripts/gen-audit-trail.py DIR N  (then: p11kms audit verify --public-key DIR/audit-checkpoint.pub.pem DIR)
# Builds a 1M-record trail with a signed checkpoint every 10,000 records and a final one,
# in the daemon's format, signed with a software P-256 key (python `cryptography`).
import hashlib, json, base64, sys, os
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives import hashes, serialization
out = sys.argv[1]; n = int(sys.argv[2])
os.makedirs(out, exist_ok=True)
key = ec.generate_private_key(ec.SECP256R1())
pub = key.public_key()
spki = pub.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
open(f"{out}/audit-checkpoint.pub.pem", "wb").write(pub.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
fp = "sha256:" + hashlib.sha256(spki).hexdigest()
head = ""; lines = 0; seq = 0
f = open(f"{out}/p11kms-audit-000001.jsonl", "w")
def emit(d):
    global head, lines
    d["previousHash"] = head
    s = json.dumps(d, separators=(",", ":"), sort_keys=True)
    f.write(s + "\n"); head = hashlib.sha256(s.encode()).hexdigest(); lines += 1
def checkpoint(reason):
    global seq
    seq += 1
    t = "2026-11-30T12:00:00Z"
    text = f"p11kms-audit-checkpoint/1\nsequence={seq}\nrecords={lines}\nhead={head}\ntime={t}\nreason={reason}"
    sig = key.sign(text.encode(), ec.ECDSA(hashes.SHA256()))
    emit({"eventVersion":"1.08","eventTime":t,"eventSource":"p11kms","eventName":"Checkpoint","eventType":"P11kmsCheckpoint",
          "checkpoint":{"format":"p11kms-audit-checkpoint/1","sequence":seq,"records":lines,"head":head,"reason":reason,
                        "keyFingerprint":fp,"signatureAlgorithm":"ECDSA_SHA_256","signature":base64.b64encode(sig).decode()}})
tmpl = {"eventName":"Encrypt","eventSource":"kms.amazonaws.com","eventTime":"2026-11-30T12:00:00Z","eventType":"AwsApiCall","eventVersion":"1.08",
 "p11kms":{"authorizations":[{"action":"kms:Encrypt","deciding":["Enable IAM User Permissions"],"decision":"Allow","resource":"arn:aws:kms:us-east-1:111122223333:key/0c9e4a2f-1111-2222-3333-444455556666"}],
 "decidingStatements":["Enable IAM User Permissions"],"decision":"Allow","latencyMicros":812,"transport":"grpc","viaService":None},
 "requestParameters":{"encryptionAlgorithm":"SYMMETRIC_DEFAULT","encryptionContext":{"tenant":"blue"},"keyId":"0c9e4a2f-1111-2222-3333-444455556666"},
 "resources":[{"ARN":"arn:aws:kms:us-east-1:111122223333:key/0c9e4a2f-1111-2222-3333-444455556666","accountId":"111122223333","type":"AWS::KMS::Key"}],
 "sourceIPAddress":"127.0.0.1","userIdentity":{"accountId":"111122223333","arn":"arn:aws:iam::111122223333:role/App","type":"AssumedRole"}}
for i in range(n):
    tmpl["requestID"] = f"00000000-0000-4000-8000-{i:012d}"
    emit(tmpl)
    if (i + 1) % 10000 == 0 and i + 1 < n:
        checkpoint("records")
checkpoint("shutdown")
f.close()
print(lines, seq)
