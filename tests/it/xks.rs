//! p11kms as an AWS external key store proxy (the XKS proxy API), called the way the
//! specification's own test client calls it: curl signing with `--aws-sigv4` (an
//! independent SigV4 implementation), on the AWS JSON listener under a store's URI
//! path. Round trips with and without AAD, the integrity value recomputed here,
//! tampering refused, each error name and status of the specification that a request
//! can provoke, usage restricted per external key, key state and key policy honoured,
//! and the audit record that joins with AWS's request id.

use std::io::Write as _;
use std::process::{Command, Stdio};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use p11kms::proto;
use serde_json::{json, Value};

use crate::harness::*;

const PREFIX: &str = "/store1/kms/xks/v1";
const ACCESS_KEY_ID: &str = "XKSTESTACCESSKEYID234567";
const SECRET: &str = "bm90LWEtcmVhbC1zZWNyZXQtYnV0LWxvbmctZW5vdWdoLXRvLXBhc3M=";
const STORE_PRINCIPAL: &str = "arn:aws:iam::111122223333:user/xks-store";

/// A daemon serving one store with four external keys: `both`, `enc-only`,
/// `dec-only`, and `none` (no usage at all), behind aliases made after start.
struct Xks {
    dir: TestDir,
    daemon: Daemon,
}

impl Xks {
    async fn start() -> (Self, KmsAdmin) {
        Self::start_in(TestDir::new()).await
    }

    /// Same, in `dir` (made ready for a daemon here).
    async fn start_in(dir: TestDir) -> (Self, KmsAdmin) {
        dir.prepare();
        std::fs::write(dir.path().join("xks.secret"), format!("{SECRET}\n")).unwrap();
        crate::secrets_scan::issued_secret(SECRET);
        dir.append_config(&format!(
            r#"
[[xks.stores]]
uri_path = "{PREFIX}"
principal = "{STORE_PRINCIPAL}"

[[xks.stores.credentials]]
access_key_id = "{ACCESS_KEY_ID}"
secret_file = "xks.secret"

[[xks.stores.keys]]
id = "both"
key = "alias/xks-both"

[[xks.stores.keys]]
id = "enc-only"
key = "alias/xks-enc"
usage = ["ENCRYPT"]

[[xks.stores.keys]]
id = "dec-only"
key = "alias/xks-dec"
usage = ["DECRYPT"]

[[xks.stores.keys]]
id = "none"
key = "alias/xks-none"
usage = []

[[xks.stores.keys]]
id = "missing"
key = "alias/xks-missing"
"#
        ));
        let daemon = Daemon::start(&dir);
        let mut admin = daemon.admin().await;
        let mut keys = Vec::new();
        for alias in [
            "alias/xks-both",
            "alias/xks-enc",
            "alias/xks-dec",
            "alias/xks-none",
        ] {
            let k = create_key(&mut admin).await;
            admin
                .create_alias(proto::CreateAliasRequest {
                    alias_name: alias.into(),
                    target_key_id: k.key_id.clone(),
                })
                .await
                .unwrap();
            keys.push(k.key_id);
        }
        put_identity_policy(
            &mut admin,
            STORE_PRINCIPAL,
            "xks",
            allow(&["kms:Encrypt", "kms:Decrypt", "kms:DescribeKey"]),
        )
        .await;
        (Self { dir, daemon }, KmsAdmin { admin, keys })
    }

    /// POSTs `body` (or sends `method`) to `path` under the store, signed by curl with
    /// `user` ("id:secret"); the status and the JSON answer (Null when empty).
    fn call_as(&self, method: &str, path: &str, body: &str, user: &str) -> (u16, Value, String) {
        Curl {
            port: self.daemon.xks_addr().port(),
            dir: self.dir.path(),
            region: "us-east-1",
            user,
            client: None,
        }
        .call(method, path, body)
        .unwrap_or_else(|e| panic!("curl got no answer: {e}"))
    }

    fn call(&self, path: &str, body: &Value) -> (u16, Value) {
        let (s, v, _) = self.call_as(
            "POST",
            &format!("{PREFIX}{path}"),
            &body.to_string(),
            &format!("{ACCESS_KEY_ID}:{SECRET}"),
        );
        (s, v)
    }

    fn encrypt(&self, key: &str, plaintext: &[u8], aad: Option<&[u8]>, cdiv: bool) -> (u16, Value) {
        crate::secrets_scan::sent_plaintext(plaintext);
        let mut body = json!({
            "requestMetadata": metadata("Encrypt", "req-enc"),
            "plaintext": B64.encode(plaintext),
            "encryptionAlgorithm": "AES_GCM",
        });
        if let Some(a) = aad {
            body["additionalAuthenticatedData"] = B64.encode(a).into();
        }
        if cdiv {
            body["ciphertextDataIntegrityValueAlgorithm"] = "SHA_256".into();
        }
        self.call(&format!("/keys/{key}/encrypt"), &body)
    }

    /// Decrypts what `encrypt` answered, with `aad` and optional edits of the parts.
    fn decrypt(&self, key: &str, sealed: &Value, aad: Option<&[u8]>) -> (u16, Value) {
        let mut body = json!({
            "requestMetadata": metadata("Decrypt", "req-dec"),
            "ciphertext": sealed["ciphertext"],
            "initializationVector": sealed["initializationVector"],
            "authenticationTag": sealed["authenticationTag"],
            "encryptionAlgorithm": "AES_GCM",
        });
        if !sealed["ciphertextMetadata"].is_null() {
            body["ciphertextMetadata"] = sealed["ciphertextMetadata"].clone();
        }
        if let Some(a) = aad {
            body["additionalAuthenticatedData"] = B64.encode(a).into();
        }
        self.call(&format!("/keys/{key}/decrypt"), &body)
    }
}

struct KmsAdmin {
    admin: p11kms::client::KmsClient,
    keys: Vec<String>,
}

/// A call made by curl: to the listener on `port` (the server certificate checked
/// against `dir`/ca.pem), signed for `region` as `user` ("id:secret"), with a client
/// certificate and key when `client` names them.
struct Curl<'a> {
    port: u16,
    dir: &'a std::path::Path,
    region: &'a str,
    user: &'a str,
    client: Option<(&'a std::path::Path, &'a std::path::Path)>,
}

impl Curl<'_> {
    /// The status and the JSON answer (Null when empty); Err with curl's complaint when
    /// no HTTP answer came (a refused handshake).
    fn call(&self, method: &str, path: &str, body: &str) -> Result<(u16, Value, String), String> {
        let config = self.dir.join("curl.conf");
        // The credential goes to curl in a file, not in its arguments.
        std::fs::write(&config, format!("user = \"{}\"\n", self.user)).unwrap();
        let url = format!("https://localhost:{}{path}", self.port);
        let mut cmd = Command::new("curl");
        cmd.args(["-sS", "--resolve"])
            .arg(format!("localhost:{}:127.0.0.1", self.port))
            .arg("-K")
            .arg(&config)
            .args(["--cacert"])
            .arg(self.dir.join("ca.pem"));
        if let Some((cert, key)) = self.client {
            cmd.arg("--cert").arg(cert).arg("--key").arg(key);
        }
        let mut child = cmd
            .arg("--aws-sigv4")
            .arg(format!("aws:amz:{}:kms-xks-proxy", self.region))
            .args([
                "-H",
                "Content-Type: application/json",
                "-X",
                method,
                "--data-binary",
                "@-",
                "-w",
                "\n%{http_code}",
                &url,
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("curl");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(body.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        let text = String::from_utf8(out.stdout).unwrap();
        let (answer, code) = text.rsplit_once('\n').unwrap_or(("", &text));
        let stderr = String::from_utf8_lossy(&out.stderr);
        let status: u16 = code
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("curl: {text:?} {stderr}"));
        if status == 0 {
            return Err(format!("{} {stderr}", out.status));
        }
        let value = if answer.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(answer).unwrap_or_else(|e| panic!("{e}: {answer}"))
        };
        Ok((status, value, answer.to_owned()))
    }
}

fn metadata(op: &str, id: &str) -> Value {
    json!({
        "awsPrincipalArn": "arn:aws:iam::444455556666:role/app",
        "kmsKeyArn": "arn:aws:kms:us-east-1:444455556666:key/00000000-1111-2222-3333-444444444444",
        "kmsOperation": op,
        "kmsRequestId": id,
        "kmsViaService": "ebs",
    })
}

fn error_name(v: &Value) -> &str {
    v["errorName"].as_str().unwrap_or("<none>")
}

fn b64(v: &Value) -> Vec<u8> {
    B64.decode(v.as_str().unwrap()).unwrap()
}

fn sha256(parts: &[&[u8]]) -> Vec<u8> {
    // Python's hashlib, not the daemon's digest, recomputes the integrity value.
    let hex: String = parts
        .iter()
        .flat_map(|p| p.iter())
        .map(|b| format!("{b:02x}"))
        .collect();
    let out = Command::new(python_bin())
        .args([
            "-c",
            "import hashlib,sys; print(hashlib.sha256(bytes.fromhex(sys.argv[1])).hexdigest())",
            &hex,
        ])
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    (0..64)
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}

#[tokio::test]
async fn aws_kms_calls_reach_p11kms_keys_through_the_external_key_store_api() {
    let (x, _admin) = Xks::start().await;

    // GetHealthStatus: compact JSON (the specification's test client greps it).
    let (_, _, raw) = x.call_as(
        "POST",
        &format!("{PREFIX}/health"),
        &json!({"requestMetadata": {"kmsOperation": "KmsHealthCheck", "kmsRequestId": "h-1"}})
            .to_string(),
        &format!("{ACCESS_KEY_ID}:{SECRET}"),
    );
    assert!(raw.contains(r#""healthStatus":"ACTIVE""#), "{raw}");
    let (s, h) = x.call(
        "/health",
        &json!({"requestMetadata": {"kmsOperation": "KmsHealthCheck", "kmsRequestId": "h-2"}}),
    );
    assert_eq!(s, 200);
    assert_eq!(h["xksProxyFleetSize"], 1);
    assert_eq!(h["ekmFleetDetails"].as_array().unwrap().len(), 1);

    // GetKeyMetadata: the usage the store allows.
    for (key, usage) in [
        ("both", json!(["ENCRYPT", "DECRYPT"])),
        ("enc-only", json!(["ENCRYPT"])),
        ("dec-only", json!(["DECRYPT"])),
        ("none", json!([])),
    ] {
        let (s, m) = x.call(
            &format!("/keys/{key}/metadata"),
            &json!({"requestMetadata": metadata("CreateKey", "m-1")}),
        );
        assert_eq!(s, 200, "{key}: {m}");
        assert_eq!(
            m,
            json!({"keySpec": "AES_256", "keyUsage": usage, "keyStatus": "ENABLED"})
        );
    }

    // Round trips, without and with AAD, and at the specification's sizes.
    let big_aad = vec![7u8; 8192];
    for (plaintext, aad) in [
        (b"xks round trip without aad".to_vec(), None),
        (
            b"xks round trip with an aad".to_vec(),
            Some(&b"project=nile"[..]),
        ),
        (vec![0x5a; 4096], Some(&big_aad[..])),
    ] {
        let (s, sealed) = x.encrypt("both", &plaintext, aad, false);
        assert_eq!(s, 200, "{sealed}");
        assert_eq!(b64(&sealed["ciphertext"]).len(), plaintext.len());
        assert_eq!(b64(&sealed["initializationVector"]).len(), 12);
        assert_eq!(b64(&sealed["authenticationTag"]).len(), 16);
        assert!(b64(&sealed["ciphertextMetadata"]).len() <= 20);
        assert!(sealed.get("ciphertextDataIntegrityValue").is_none());
        let (s, opened) = x.decrypt("both", &sealed, aad);
        assert_eq!(s, 200, "{opened}");
        assert_eq!(b64(&opened["plaintext"]), plaintext);
    }

    // The integrity value, recomputed outside the daemon.
    let aad = b"department=marketing";
    let (s, sealed) = x.encrypt("both", b"integrity checked plaintext", Some(aad), true);
    assert_eq!(s, 200, "{sealed}");
    let expected = sha256(&[
        aad,
        &b64(&sealed["ciphertextMetadata"]),
        &b64(&sealed["initializationVector"]),
        &b64(&sealed["ciphertext"]),
        &b64(&sealed["authenticationTag"]),
    ]);
    assert_eq!(b64(&sealed["ciphertextDataIntegrityValue"]), expected);

    // Tampering: each part, the AAD (other, missing) and the metadata.
    let (_, good) = x.encrypt("both", b"tamper with me, if you can", Some(aad), false);
    let flip = |field: &str| {
        let mut v = good.clone();
        let mut b = b64(&v[field]);
        b[0] ^= 1;
        v[field] = B64.encode(b).into();
        v
    };
    for (what, sealed, aad) in [
        ("ciphertext", flip("ciphertext"), Some(&aad[..])),
        ("iv", flip("initializationVector"), Some(&aad[..])),
        ("tag", flip("authenticationTag"), Some(&aad[..])),
        ("metadata", flip("ciphertextMetadata"), Some(&aad[..])),
        ("other aad", good.clone(), Some(&b"department=sales"[..])),
        ("no aad", good.clone(), None),
    ] {
        let (s, e) = x.decrypt("both", &sealed, aad);
        assert_eq!(
            (s, error_name(&e)),
            (400, "InvalidCiphertextException"),
            "{what}: {e}"
        );
    }
    let mut no_meta = good.clone();
    no_meta["ciphertextMetadata"] = Value::Null;
    let (s, e) = x.decrypt("both", &no_meta, Some(aad));
    assert_eq!(
        (s, error_name(&e)),
        (400, "InvalidCiphertextException"),
        "{e}"
    );
}

#[tokio::test]
async fn each_refusal_has_the_specifications_name_and_status() {
    let (x, mut a) = Xks::start().await;
    let user = format!("{ACCESS_KEY_ID}:{SECRET}");
    let health =
        json!({"requestMetadata": {"kmsOperation": "KmsHealthCheck", "kmsRequestId": "h"}})
            .to_string();

    // Authentication: another secret, an access key nobody configured.
    for who in [
        format!("{ACCESS_KEY_ID}:Invalid{SECRET}"),
        format!("Invalid{ACCESS_KEY_ID}:{SECRET}"),
    ] {
        let (s, e, _) = x.call_as("POST", &format!("{PREFIX}/health"), &health, &who);
        assert_eq!(
            (s, error_name(&e)),
            (401, "AuthenticationFailedException"),
            "{e}"
        );
    }
    // Paths and methods.
    let (s, e, _) = x.call_as("POST", "/store1/invalid/kms/xks/v1/health", &health, &user);
    assert_eq!((s, error_name(&e)), (404, "InvalidUriPathException"));
    for method in ["GET", "PUT", "DELETE"] {
        let (s, _, _) = x.call_as(method, &format!("{PREFIX}/health"), "", &user);
        assert_eq!(s, 405, "{method}");
    }
    // Unknown members (AWS KMS may add some) are ignored.
    let (s, h) = x.call(
        "/health",
        &json!({"requestMetadata": {"kmsOperation": "KmsHealthCheck", "kmsRequestId": "u", "futureField": 1}, "other": true}),
    );
    assert_eq!(s, 200, "{h}");
    // Members the specification requires, values it does not allow, sizes over ours.
    let mut no_principal = metadata("Encrypt", "no-principal");
    no_principal
        .as_object_mut()
        .unwrap()
        .remove("awsPrincipalArn");
    let (s, e) = x.call(
        "/keys/both/encrypt",
        &json!({"requestMetadata": no_principal, "plaintext": "AAAA", "encryptionAlgorithm": "AES_GCM"}),
    );
    assert_eq!((s, error_name(&e)), (400, "ValidationException"), "{e}");
    for (field, value) in [
        ("encryptionAlgorithm", "AES_CBC"),
        ("ciphertextDataIntegrityValueAlgorithm", "MD5"),
    ] {
        let mut body = json!({"requestMetadata": metadata("Encrypt", "v"), "plaintext": "AAAA", "encryptionAlgorithm": "AES_GCM"});
        body[field] = value.into();
        let (s, e) = x.call("/keys/both/encrypt", &body);
        assert_eq!(
            (s, error_name(&e)),
            (400, "ValidationException"),
            "{field}: {e}"
        );
    }
    let (s, e) = x.encrypt(
        "both",
        b"an AAD over 16 KiB is refused",
        Some(&vec![1; 16 * 1024 + 1]),
        false,
    );
    assert_eq!(
        (s, error_name(&e)),
        (501, "UnsupportedOperationException"),
        "{e}"
    );
    let (_, sealed) = x.encrypt("both", b"wrong lengths of IV and tag", None, false);
    for (field, len) in [("initializationVector", 16), ("authenticationTag", 12)] {
        let mut v = sealed.clone();
        v[field] = B64.encode(vec![0u8; len]).into();
        let (s, e) = x.decrypt("both", &v, None);
        assert_eq!(
            (s, error_name(&e)),
            (400, "InvalidCiphertextException"),
            "{field}: {e}"
        );
    }
    // Bodies.
    for body in [json!({}), json!({"requestMetadata": {}})] {
        let (s, e) = x.call("/health", &body);
        assert_eq!((s, error_name(&e)), (400, "ValidationException"), "{body}");
    }
    let (s, e) = x.call(
        "/keys/both/encrypt",
        &json!({"requestMetadata": metadata("Encrypt", "no-plaintext"), "encryptionAlgorithm": "AES_GCM"}),
    );
    assert_eq!((s, error_name(&e)), (400, "ValidationException"), "{e}");
    let (s, e) = x.call(
        "/keys/both/encrypt",
        &json!({"requestMetadata": metadata("Encrypt", "v"), "plaintext": "not base64!", "encryptionAlgorithm": "AES_GCM"}),
    );
    assert_eq!((s, error_name(&e)), (400, "ValidationException"), "{e}");
    // Keys the store does not have, or whose p11kms key does not exist.
    for key in ["non_existing_key", "missing"] {
        let (s, e) = x.call(
            &format!("/keys/{key}/metadata"),
            &json!({"requestMetadata": metadata("CreateKey", "k")}),
        );
        assert_eq!(
            (s, error_name(&e)),
            (404, "KeyNotFoundException"),
            "{key}: {e}"
        );
    }
    // Usage, as the store restricts it.
    let (s, sealed) = x.encrypt("enc-only", b"encrypt only, never decrypt", None, false);
    assert_eq!(s, 200);
    let (s, e) = x.decrypt("enc-only", &sealed, None);
    assert_eq!(
        (s, error_name(&e)),
        (400, "InvalidKeyUsageException"),
        "{e}"
    );
    let (s, e) = x.encrypt("enc-only", b"encrypt only, with integrity", None, true);
    assert_eq!(
        (s, error_name(&e)),
        (400, "InvalidKeyUsageException"),
        "{e}"
    );
    for key in ["dec-only", "none"] {
        let (s, e) = x.encrypt(key, b"this key may not encrypt", None, false);
        assert_eq!(
            (s, error_name(&e)),
            (400, "InvalidKeyUsageException"),
            "{key}: {e}"
        );
    }
    // Key state: a disabled key answers DISABLED and refuses to work.
    let (s, sealed) = x.encrypt("both", b"sealed before the key was disabled", None, false);
    assert_eq!(s, 200);
    a.admin
        .disable_key(proto::DisableKeyRequest {
            key_id: a.keys[0].clone(),
        })
        .await
        .unwrap();
    let (_, m) = x.call(
        "/keys/both/metadata",
        &json!({"requestMetadata": metadata("DescribeKey", "d")}),
    );
    assert_eq!(m["keyStatus"], "DISABLED");
    let (s, e) = x.encrypt("both", b"refused while disabled", None, false);
    assert_eq!((s, error_name(&e)), (400, "InvalidStateException"), "{e}");
    let (s, e) = x.decrypt("both", &sealed, None);
    assert_eq!((s, error_name(&e)), (400, "InvalidStateException"), "{e}");
    // Key policy: a key whose policy does not let IAM policies grant access refuses
    // the store's principal.
    let enc_key = a.keys[1].clone();
    let only_root = json!({"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow",
        "Principal": {"AWS": "arn:aws:iam::111122223333:user/admin-only"},
        "Action": "kms:*",
        "Resource": "*"
    }, {
        "Effect": "Allow",
        "Principal": {"AWS": root_of("111122223333")},
        "Action": ["kms:PutKeyPolicy", "kms:GetKeyPolicy"],
        "Resource": "*"
    }]});
    put_key_policy(&mut a.admin, &enc_key, only_root.to_string())
        .await
        .unwrap();
    let (s, e) = x.encrypt("enc-only", b"the key policy says no", None, false);
    assert_eq!((s, error_name(&e)), (403, "AccessDeniedException"), "{e}");
    // The store's usage comes before policy: a decrypt the store never allows is
    // InvalidKeyUsageException even where the policy would refuse it too.
    let (s, e) = x.decrypt("enc-only", &sealed, None);
    assert_eq!(
        (s, error_name(&e)),
        (400, "InvalidKeyUsageException"),
        "{e}"
    );
    // GetHealthStatus is not a policy matter: it answers while policies deny the store.
    put_identity_policy(
        &mut a.admin,
        STORE_PRINCIPAL,
        "xks",
        json!({"Version": "2012-10-17", "Statement": [{"Effect": "Deny", "Action": "kms:*", "Resource": "*"}]}),
    )
    .await;
    let (s, e) = x.encrypt("dec-only", b"denied by identity policy", None, false);
    assert_eq!(
        (s, error_name(&e)),
        (400, "InvalidKeyUsageException"),
        "{e}"
    );
    let (s, h) = x.call(
        "/health",
        &json!({"requestMetadata": {"kmsOperation": "KmsHealthCheck", "kmsRequestId": "p"}}),
    );
    assert_eq!(s, 200, "{h}");

    // Every call above is in the trail, with AWS's request id to join on.
    let trail = audit_records(&x.dir);
    let xks: Vec<&Value> = trail
        .iter()
        .filter(|r| {
            r["eventName"]
                .as_str()
                .is_some_and(|n| n.starts_with("Xks"))
        })
        .collect();
    assert!(
        xks.iter().any(|r| r["eventName"] == "XksEncrypt"
            && r["requestParameters"]["kmsRequestId"] == "req-enc"
            && r["requestParameters"]["externalKeyId"] == "enc-only"
            && r["errorCode"] == "AccessDeniedException"),
        "{xks:#?}"
    );
    // The precise reason of each authentication failure is kept.
    for code in ["InvalidSignatureException", "UnrecognizedClientException"] {
        assert!(
            xks.iter()
                .any(|r| r["eventName"] == "XksGetHealthStatus" && r["errorCode"] == code),
            "{code}"
        );
    }
    // A body refused for a missing member, or that does not decode at all, still
    // carries AWS's request id.
    for id in ["no-principal", "no-plaintext"] {
        assert!(
            xks.iter().any(|r| r["errorCode"] == "ValidationException"
                && r["requestParameters"]["kmsRequestId"] == id),
            "{id}"
        );
    }
    assert!(
        xks.iter().all(|r| r["p11kms"]["transport"] == "xks"),
        "{xks:#?}"
    );
}

/// Every record of the daemon's trail so far.
fn audit_records(dir: &TestDir) -> Vec<Value> {
    let mut out = Vec::new();
    let mut files: Vec<_> = std::fs::read_dir(dir.path().join("audit"))
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "jsonl"))
        .collect();
    files.sort();
    for f in files {
        for line in std::fs::read_to_string(f).unwrap().lines() {
            out.push(serde_json::from_str(line).unwrap());
        }
    }
    out
}

/// Dev mode serves one store, makes the key behind it once, and writes what AWS's test
/// client reads; the credential and the key survive a restart.
// Multi-threaded: the admin's connection task must run while `stop` blocks, to take
// the daemon's GOAWAY.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_mode_serves_a_store_ready_for_the_specifications_test_client() {
    let dir = TestDir::new();
    let on = [("P11KMS_DEV_XKS", "on")];
    let env_of = |dir: &TestDir| -> std::collections::HashMap<String, String> {
        let text = std::fs::read_to_string(dir.path().join("xks-env.sh")).unwrap();
        text.lines()
            .filter_map(|l| l.strip_prefix("export ")?.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.trim_matches('\'').to_owned()))
            .collect()
    };
    let mut first = None;
    for round in 0..2 {
        let daemon = Daemon::start_with(&dir, &on);
        let env = env_of(&dir);
        crate::secrets_scan::issued_secret(&env["SIGV4_SECRET_ACCESS_KEY"]);
        assert_eq!(
            env["XKS_PROXY_HOST"],
            format!("localhost:{}", daemon.xks_addr().port())
        );
        let x = Xks {
            dir: TestDir::new(),
            daemon,
        };
        std::fs::copy(dir.path().join("ca.pem"), x.dir.path().join("ca.pem")).unwrap();
        let user = format!(
            "{}:{}",
            env["SIGV4_ACCESS_KEY_ID"], env["SIGV4_SECRET_ACCESS_KEY"]
        );
        let base = format!("/{}/kms/xks/v1", env["URI_PREFIX"]);
        let call = |path: &str, body: Value| {
            let (s, v, _) = x.call_as("POST", &format!("{base}{path}"), &body.to_string(), &user);
            (s, v)
        };
        let (s, h) = call(
            "/health",
            json!({"requestMetadata": {"kmsOperation": "KmsHealthCheck", "kmsRequestId": "d"}}),
        );
        assert_eq!(
            (s, h["ekmFleetDetails"][0]["healthStatus"].as_str()),
            (200, Some("ACTIVE"))
        );
        for (var, usage) in [
            ("KEY_ID", json!(["ENCRYPT", "DECRYPT"])),
            ("ENCRYPT_ONLY_KEY_ID", json!(["ENCRYPT"])),
            ("DECRYPT_ONLY_KEY_ID", json!(["DECRYPT"])),
            ("IMPOTENT_KEY_ID", json!([])),
        ] {
            let (s, m) = call(
                &format!("/keys/{}/metadata", env[var]),
                json!({"requestMetadata": metadata("CreateKey", "d")}),
            );
            assert_eq!((s, &m["keyUsage"]), (200, &usage), "{var}: {m}");
        }
        let plaintext = b"dev mode external key store";
        crate::secrets_scan::sent_plaintext(plaintext);
        let (s, sealed) = call(
            &format!("/keys/{}/encrypt", env["KEY_ID"]),
            json!({"requestMetadata": metadata("Encrypt", "d"), "plaintext": B64.encode(plaintext), "encryptionAlgorithm": "AES_GCM"}),
        );
        assert_eq!(s, 200, "{sealed}");
        let (s, opened) = call(
            &format!("/keys/{}/decrypt", env["KEY_ID"]),
            json!({"requestMetadata": metadata("Decrypt", "d"), "encryptionAlgorithm": "AES_GCM",
                   "ciphertext": sealed["ciphertext"], "initializationVector": sealed["initializationVector"],
                   "authenticationTag": sealed["authenticationTag"], "ciphertextMetadata": sealed["ciphertextMetadata"]}),
        );
        assert_eq!((s, b64(&opened["plaintext"])), (200, plaintext.to_vec()));
        // Signed as AWS KMS signs (host and x-amz-date only, the content type not
        // signed), as curl does not.
        let host = format!("localhost:{}", x.daemon.xks_addr().port());
        let path = format!("{base}/keys/{}/metadata", env["KEY_ID"]);
        let body = json!({"requestMetadata": metadata("DescribeKey", "kms-style")}).to_string();
        let headers = Signer::xks_from_dev_dir(dir.path()).sign_xks(&host, &path, body.as_bytes());
        let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let a = crate::aws_json::send_to(
            &x.daemon,
            x.daemon.xks_addr(),
            crate::aws_json::Http::One,
            hyper::Method::POST,
            &path,
            &headers,
            http_body_util::BodyExt::boxed(http_body_util::Full::new(hyper::body::Bytes::from(
                body,
            ))),
        )
        .await;
        assert_eq!(
            (a.status.as_u16(), &a.body["keyStatus"]),
            (200, &json!("ENABLED")),
            "{:?}",
            a.body
        );
        // One key, made at the first start only; the same credential after a restart.
        let mut admin = x.daemon.admin().await;
        let keys = list_key_ids(&mut admin).await;
        drop(admin);
        assert_eq!(keys.len(), 1, "{keys:?}");
        let seen = (env["SIGV4_ACCESS_KEY_ID"].clone(), keys[0].clone());
        match &first {
            None => first = Some(seen),
            Some(f) => assert_eq!(f, &seen, "round {round}"),
        }
        x.daemon.stop();
    }
}

/// requestMetadata reaches policy conditions: an identity policy lets the store's
/// principal encrypt for one AWS KMS key and one AWS caller only.
#[tokio::test]
async fn policies_can_bind_an_external_key_to_one_aws_kms_key_and_caller() {
    let (x, mut a) = Xks::start().await;
    let allowed_key = "arn:aws:kms:eu-west-1:444455556666:key/11111111-2222-3333-4444-555555555555";
    let allowed_caller = "arn:aws:iam::444455556666:role/app";
    put_identity_policy(
        &mut a.admin,
        STORE_PRINCIPAL,
        "xks",
        json!({"Version": "2012-10-17", "Statement": [{
            "Effect": "Allow",
            "Action": ["kms:Encrypt", "kms:Decrypt", "kms:DescribeKey"],
            "Resource": "*",
            "Condition": {
                "StringEquals": {
                    "p11kms:XksKmsKeyArn": allowed_key,
                    "p11kms:XksAwsPrincipalArn": allowed_caller,
                    "p11kms:XksUriPath": PREFIX,
                    "p11kms:XksExternalKeyId": "both"
                }
            }
        }]}),
    )
    .await;
    let plaintext = b"bound to one AWS KMS key";
    crate::secrets_scan::sent_plaintext(plaintext);
    let body = |key_arn: &str, caller: &str| {
        json!({
            "requestMetadata": {
                "awsPrincipalArn": caller, "kmsKeyArn": key_arn,
                "kmsOperation": "Encrypt", "kmsRequestId": "c",
            },
            "plaintext": B64.encode(plaintext),
            "encryptionAlgorithm": "AES_GCM",
        })
    };
    let (s, e) = x.call("/keys/both/encrypt", &body(allowed_key, allowed_caller));
    assert_eq!(s, 200, "{e}");
    for (key_arn, caller) in [
        (
            "arn:aws:kms:eu-west-1:444455556666:key/99999999-2222-3333-4444-555555555555",
            allowed_caller,
        ),
        (allowed_key, "arn:aws:iam::777788889999:role/intruder"),
    ] {
        let (s, e) = x.call("/keys/both/encrypt", &body(key_arn, caller));
        assert_eq!(
            (s, error_name(&e)),
            (403, "AccessDeniedException"),
            "{key_arn} {caller}: {e}"
        );
    }
    // Another external key of the store is not covered by the policy.
    let (s, e) = x.call("/keys/enc-only/encrypt", &body(allowed_key, allowed_caller));
    assert_eq!((s, error_name(&e)), (403, "AccessDeniedException"), "{e}");
}

/// Ciphertexts outlive a rotation (the material version travels in the metadata), and
/// one made under a key is refused, not tried, once the external key's alias names
/// another key.
#[tokio::test]
async fn ciphertexts_survive_rotation_and_are_bound_to_their_key() {
    let (x, mut a) = Xks::start().await;
    let (s, before) = x.encrypt("both", b"sealed before the rotation", None, false);
    assert_eq!(s, 200);
    a.admin
        .rotate_key_on_demand(proto::RotateKeyOnDemandRequest {
            key_id: a.keys[0].clone(),
        })
        .await
        .unwrap();
    let (s, after) = x.encrypt("both", b"sealed after the rotation!", None, false);
    assert_eq!(s, 200);
    assert_ne!(
        before["ciphertextMetadata"], after["ciphertextMetadata"],
        "a new material version"
    );
    for (sealed, text) in [
        (&before, &b"sealed before the rotation"[..]),
        (&after, b"sealed after the rotation!"),
    ] {
        let (s, opened) = x.decrypt("both", sealed, None);
        assert_eq!(
            (s, b64(&opened["plaintext"])),
            (200, text.to_vec()),
            "{opened}"
        );
    }
    // The alias behind `both` now names the decrypt-only external key's p11kms key.
    a.admin
        .update_alias(proto::UpdateAliasRequest {
            alias_name: "alias/xks-both".into(),
            target_key_id: a.keys[2].clone(),
        })
        .await
        .unwrap();
    let (s, e) = x.decrypt("both", &before, None);
    assert_eq!(
        (s, error_name(&e)),
        (400, "InvalidCiphertextException"),
        "{e}"
    );
    assert!(
        e["errorMessage"]
            .as_str()
            .unwrap()
            .contains("another p11kms key"),
        "{e}"
    );
}

/// A key's `p11kms:xks-usage` tag narrows what the store allows, for GetKeyMetadata
/// and for use alike; without it, the store's usage applies again.
#[tokio::test]
async fn a_key_tag_narrows_the_usage_the_store_allows() {
    let (x, mut a) = Xks::start().await;
    let key = a.keys[0].clone();
    let metadata_usage = |x: &Xks| {
        x.call(
            "/keys/both/metadata",
            &json!({"requestMetadata": metadata("DescribeKey", "t")}),
        )
        .1["keyUsage"]
            .clone()
    };
    let (s, sealed) = x.encrypt("both", b"sealed before the tag was set", None, false);
    assert_eq!(s, 200);
    for (value, usage, encrypts, decrypts) in [
        ("ENCRYPT", json!(["ENCRYPT"]), true, false),
        ("DECRYPT", json!(["DECRYPT"]), false, true),
        ("NONE", json!([]), false, false),
    ] {
        a.admin
            .tag_resource(proto::TagResourceRequest {
                key_id: key.clone(),
                tags: vec![proto::Tag {
                    tag_key: "p11kms:xks-usage".into(),
                    tag_value: value.into(),
                }],
            })
            .await
            .unwrap();
        assert_eq!(metadata_usage(&x), usage, "{value}");
        let (s, e) = x.encrypt("both", b"encrypt under a tagged key", None, false);
        assert_eq!(s == 200, encrypts, "{value}: {e}");
        if !encrypts {
            assert_eq!(error_name(&e), "InvalidKeyUsageException");
        }
        let (s, e) = x.decrypt("both", &sealed, None);
        assert_eq!(s == 200, decrypts, "{value}: {e}");
        if !decrypts {
            assert_eq!(error_name(&e), "InvalidKeyUsageException");
        }
    }
    // The tag cannot widen what the store allows: enc-only stays encrypt-only.
    a.admin
        .tag_resource(proto::TagResourceRequest {
            key_id: a.keys[1].clone(),
            tags: vec![proto::Tag {
                tag_key: "p11kms:xks-usage".into(),
                tag_value: "ENCRYPT_DECRYPT".into(),
            }],
        })
        .await
        .unwrap();
    let (_, m) = x.call(
        "/keys/enc-only/metadata",
        &json!({"requestMetadata": metadata("DescribeKey", "t")}),
    );
    assert_eq!(m["keyUsage"], json!(["ENCRYPT"]));
    a.admin
        .untag_resource(proto::UntagResourceRequest {
            key_id: key.clone(),
            tag_keys: vec!["p11kms:xks-usage".into()],
        })
        .await
        .unwrap();
    assert_eq!(metadata_usage(&x), json!(["ENCRYPT", "DECRYPT"]));
}

/// A test CA standing in for Amazon Trust Services, and client certificates under it
/// and under another CA, written as PEM files into `dir`: `(cert, key)` paths by name.
fn client_certificates(
    dir: &std::path::Path,
) -> std::collections::HashMap<&'static str, (std::path::PathBuf, std::path::PathBuf)> {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    let ca = |cn: &str| {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::default();
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.distinguished_name.push(DnType::CommonName, cn);
        let cert = p.self_signed(&key).unwrap();
        (cert.pem(), Issuer::new(p, key))
    };
    let (ats_pem, ats) = ca("Test stand-in for Amazon Root CA 1");
    let (_, foreign) = ca("Some other root");
    std::fs::write(dir.join("ats.pem"), ats_pem).unwrap();
    let mut out = std::collections::HashMap::new();
    for (name, cn, issuer, expired) in [
        ("good", "cks.kms.eu-west-1.amazonaws.com", &ats, false),
        ("expired", "cks.kms.eu-west-1.amazonaws.com", &ats, true),
        (
            "other-region",
            "cks.kms.us-east-1.amazonaws.com",
            &ats,
            false,
        ),
        (
            "foreign",
            "cks.kms.eu-west-1.amazonaws.com",
            &foreign,
            false,
        ),
    ] {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::default();
        p.distinguished_name = rcgen::DistinguishedName::new();
        p.distinguished_name.push(DnType::CommonName, cn);
        if expired {
            p.not_before = rcgen::date_time_ymd(2020, 1, 1);
            p.not_after = rcgen::date_time_ymd(2021, 1, 1);
        }
        let cert = p.signed_by(&key, issuer).unwrap();
        let (c, k) = (
            dir.join(format!("{name}.crt")),
            dir.join(format!("{name}.key")),
        );
        std::fs::write(&c, cert.pem()).unwrap();
        std::fs::write(&k, key.serialize_pem()).unwrap();
        out.insert(name, (c, k));
    }
    out
}

/// The stores' own listener with mutual TLS, as the specification asks of a proxy:
/// the handshake ends unless the client certificate chains to the configured CA and
/// carries the configured subject name (by default AWS KMS's in the store's region);
/// an expired certificate, one of another region, one from another CA, or none at all
/// gets no answer. With a good certificate, SigV4 still decides, for the store's
/// region (eu-west-1 here, not the daemon's us-east-1). AWS KMS's own API is not served
/// on that listener, and the store is not served on the AWS API listener.
#[tokio::test]
async fn mutual_tls_admits_only_aws_kms_of_the_stores_region() {
    let dir = TestDir::new();
    dir.prepare();
    std::fs::write(dir.path().join("xks.secret"), format!("{SECRET}\n")).unwrap();
    crate::secrets_scan::issued_secret(SECRET);
    let certs = client_certificates(dir.path());
    let xks: toml::Table = toml::from_str(&format!(
        r#"
listen = "127.0.0.1:7881"
client_ca = "ats.pem"

[[stores]]
uri_path = "{PREFIX}"
region = "eu-west-1"
principal = "{STORE_PRINCIPAL}"

[[stores.credentials]]
access_key_id = "{ACCESS_KEY_ID}"
secret_file = "xks.secret"
"#
    ))
    .unwrap();
    dir.edit_config(|t| {
        t.insert("xks".into(), toml::Value::Table(xks));
    });
    let daemon = Daemon::start(&dir);
    let user = format!("{ACCESS_KEY_ID}:{SECRET}");
    let health =
        json!({"requestMetadata": {"kmsOperation": "KmsHealthCheck", "kmsRequestId": "m"}})
            .to_string();
    let curl = |client: Option<&str>, region: &'static str| Curl {
        port: daemon.xks_addr().port(),
        dir: dir.path(),
        region,
        user: &user,
        client: client.map(|c| (certs[c].0.as_path(), certs[c].1.as_path())),
    };
    let path = format!("{PREFIX}/health");
    let (s, v, _) = curl(Some("good"), "eu-west-1")
        .call("POST", &path, &health)
        .unwrap();
    assert_eq!(
        (s, v["ekmFleetDetails"][0]["healthStatus"].as_str()),
        (200, Some("ACTIVE")),
        "{v}"
    );
    // The right certificate, signed for another region: SigV4 refuses.
    let (s, v, _) = curl(Some("good"), "us-east-1")
        .call("POST", &path, &health)
        .unwrap();
    assert_eq!((s, error_name(&v)), (401, "AuthenticationFailedException"));
    for refused in [None, Some("expired"), Some("other-region"), Some("foreign")] {
        let got = curl(refused, "eu-west-1").call("POST", &path, &health);
        assert!(got.is_err(), "{refused:?} was answered: {got:?}");
    }
    // Still serving after the refusals.
    let (s, _, _) = curl(Some("good"), "eu-west-1")
        .call(
            "POST",
            &format!("{PREFIX}/keys/nope/metadata"),
            &json!({"requestMetadata": metadata("DescribeKey", "m")}).to_string(),
        )
        .unwrap();
    assert_eq!(s, 404);
    // Each API on its own listener.
    let (s, v, _) = curl(Some("good"), "eu-west-1")
        .call("POST", "/", r#"{"Limit":1}"#)
        .unwrap();
    assert_eq!((s, error_name(&v)), (404, "InvalidUriPathException"), "{v}");
    let on_aws_api = Curl {
        port: daemon.aws_api_addr().port(),
        dir: dir.path(),
        region: "eu-west-1",
        user: &user,
        client: None,
    }
    .call("POST", &path, &health)
    .unwrap();
    assert_eq!(on_aws_api.0, 400, "{on_aws_api:?}");
    assert!(
        on_aws_api.2.contains("UnknownOperationException"),
        "{on_aws_api:?}"
    );
    daemon.stop();
}

/// The specification's credential rotation without a restart: a second credential is
/// added to the store's configuration and the daemon told to reload (SIGHUP); both
/// sign; the old one is removed and a reload later it is refused. A configuration that
/// does not load keeps the stores as they were.
#[tokio::test]
async fn credentials_rotate_without_a_restart() {
    const NEW_ID: &str = "XKSROTATEDACCESSKEY234567";
    const NEW_SECRET: &str = "cm90YXRlZC1zZWNyZXQtbG9uZy1lbm91Z2gtZm9yLWF3cy1rbXM=";
    let (x, _) = Xks::start().await;
    crate::secrets_scan::issued_secret(NEW_SECRET);
    std::fs::write(x.dir.path().join("xks-new.secret"), NEW_SECRET).unwrap();
    let old = format!("{ACCESS_KEY_ID}:{SECRET}");
    let new = format!("{NEW_ID}:{NEW_SECRET}");
    let body = json!({"requestMetadata": {"kmsOperation": "KmsHealthCheck", "kmsRequestId": "r"}})
        .to_string();
    let status = |user: &str| {
        x.call_as("POST", &format!("{PREFIX}/health"), &body, user)
            .0
    };
    assert_eq!((status(&old), status(&new)), (200, 401));
    let edit_credentials = |edit: &dyn Fn(&mut Vec<toml::Value>)| {
        x.dir.edit_config(|t| {
            let stores = t["xks"]["stores"].as_array_mut().unwrap();
            let store = stores
                .iter_mut()
                .find(|s| s["uri_path"].as_str() == Some(PREFIX))
                .unwrap();
            edit(store["credentials"].as_array_mut().unwrap());
        })
    };
    edit_credentials(&|c| {
        let mut added = toml::Table::new();
        added.insert("access_key_id".into(), NEW_ID.into());
        added.insert("secret_file".into(), "xks-new.secret".into());
        c.push(added.into());
    });
    x.daemon.reload();
    eventually("the new credential signs", || async { status(&new) == 200 }).await;
    assert_eq!(status(&old), 200);
    // A secret file that breaks the configuration: nothing changes.
    std::fs::write(x.dir.path().join("xks-new.secret"), "short").unwrap();
    edit_credentials(&|c| c.retain(|c| c["access_key_id"].as_str() == Some(NEW_ID)));
    x.daemon.reload();
    eventually("the failed reload is logged", || async {
        x.daemon.log().contains("external key stores not reloaded")
    })
    .await;
    assert_eq!((status(&old), status(&new)), (200, 200));
    std::fs::write(x.dir.path().join("xks-new.secret"), NEW_SECRET).unwrap();
    x.daemon.reload();
    eventually("the old credential is refused", || async {
        status(&old) == 401
    })
    .await;
    assert_eq!(status(&new), 200);
}

/// The HSM's faults as the specification names them: a call that hangs past the
/// daemon's HSM deadline is DependencyTimeoutException (503), the token then marked
/// down answers InternalException (500) at once and health UNAVAILABLE, and service
/// and health come back by themselves once the token answers again.
#[tokio::test(flavor = "multi_thread")]
async fn hsm_faults_answer_dependency_timeout_then_internal_and_heal() {
    let dir = TestDir::new();
    let control = dir.use_shim(0);
    dir.edit_config(|t| {
        let hsm = t["hsm"].as_table_mut().unwrap();
        hsm.insert("call_timeout_ms".into(), 400.into());
        hsm.insert("health_check_ms".into(), 200.into());
        hsm.insert("inline_sessions".into(), 0.into());
    });
    let (x, _) = Xks::start_in(dir).await;
    let health = || {
        let (s, v) = x.call(
            "/health",
            &json!({"requestMetadata": {"kmsOperation": "KmsHealthCheck", "kmsRequestId": "h"}}),
        );
        assert_eq!(s, 200, "{v}");
        v["ekmFleetDetails"][0]["healthStatus"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    assert_eq!(x.encrypt("both", b"before", None, false).0, 200);
    assert_eq!(health(), "ACTIVE");

    control.set("hang C_Encrypt\n").unwrap();
    let started = std::time::Instant::now();
    let (s, v) = x.encrypt("both", b"hung", None, false);
    assert_eq!(
        (s, error_name(&v)),
        (503, "DependencyTimeoutException"),
        "{v}"
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    // The token is marked down: refused at once, as a failure of the key manager.
    eventually("the token is marked down", || async {
        let (s, v) = x.encrypt("both", b"down", None, false);
        (s, error_name(&v)) == (500, "InternalException")
    })
    .await;
    assert_eq!(health(), "UNAVAILABLE");

    control.clear().unwrap();
    eventually("service resumes", || async {
        x.encrypt("both", b"after", None, false).0 == 200
    })
    .await;
    eventually("health is ACTIVE again", || async { health() == "ACTIVE" }).await;
}

/// A store's request quota, as the specification allows per URI path: a second's worth
/// of requests at once, then ThrottlingException (429), each refusal still recorded;
/// the quota refills with time.
#[tokio::test]
async fn a_store_over_its_quota_is_throttled() {
    let dir = TestDir::new();
    dir.prepare();
    std::fs::write(dir.path().join("xks.secret"), format!("{SECRET}\n")).unwrap();
    crate::secrets_scan::issued_secret(SECRET);
    let xks: toml::Table = toml::from_str(&format!(
        r#"
listen = "127.0.0.1:7881"

[[stores]]
uri_path = "{PREFIX}"
principal = "{STORE_PRINCIPAL}"
max_requests_per_second = 2

[[stores.credentials]]
access_key_id = "{ACCESS_KEY_ID}"
secret_file = "xks.secret"
"#
    ))
    .unwrap();
    dir.edit_config(|t| {
        t.insert("xks".into(), toml::Value::Table(xks));
    });
    let x = Xks {
        daemon: Daemon::start(&dir),
        dir,
    };
    let health =
        json!({"requestMetadata": {"kmsOperation": "KmsHealthCheck", "kmsRequestId": "q"}});
    // 16 calls in a row outrun a quota of 2 a second unless each takes over 400 ms.
    let answers: Vec<(u16, Value)> = (0..16).map(|_| x.call("/health", &health)).collect();
    let ok = answers.iter().filter(|(s, _)| *s == 200).count();
    let throttled = answers
        .iter()
        .filter(|(s, v)| (*s, error_name(v)) == (429, "ThrottlingException"))
        .count();
    assert_eq!(ok + throttled, 16, "{answers:?}");
    assert!((2..16).contains(&ok), "{ok} of 16 served: {answers:?}");
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    assert_eq!(x.call("/health", &health).0, 200);
    eventually("the throttled requests are recorded", || async {
        audit_records(&x.dir)
            .iter()
            .filter(|r| r["errorCode"] == "LimitExceededException")
            .count()
            == throttled
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn only_symmetric_encryption_keys_back_an_external_key() {
    let (x, mut a) = Xks::start().await;
    let hmac = a
        .admin
        .create_key(proto::CreateKeyRequest {
            key_spec: "HMAC_256".into(),
            key_usage: "GENERATE_VERIFY_MAC".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .key_metadata
        .unwrap();
    a.admin
        .update_alias(proto::UpdateAliasRequest {
            alias_name: "alias/xks-both".into(),
            target_key_id: hmac.key_id,
        })
        .await
        .unwrap();
    let (s, m) = x.call(
        "/keys/both/metadata",
        &json!({"requestMetadata": metadata("DescribeKey", "t")}),
    );
    assert_eq!(
        (s, error_name(&m)),
        (400, "InvalidKeyUsageException"),
        "{m}"
    );
    let (s, e) = x.encrypt("both", b"not under an HMAC key", None, false);
    assert_eq!(
        (s, error_name(&e)),
        (400, "InvalidKeyUsageException"),
        "{e}"
    );
}
