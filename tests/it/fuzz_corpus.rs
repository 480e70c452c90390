//! The fuzz targets' corpora (fuzz/corpus/<target>/) replayed through the targets' own
//! checks (fuzz/src/, included by main.rs), on stable Rust with the rest of the suite:
//! every committed input, seeds and the regression inputs of fixed crashes alike, must
//! pass the assertions it passes under libFuzzer. The seeds named `valid-*` must also
//! still be accepted by their parser, so that a format change cannot leave a corpus
//! that stops at the first check. `the_seed_writer_makes_seeds_their_parsers_accept` makes
//! the seeds (into fuzz/corpus with `P11KMS_WRITE_FUZZ_SEEDS=1`); see docs/testing.md,
//! "Fuzzing".

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use p11kms::client::envelope::{encrypt, EncryptOptions, Suite};
use serde_json::{json, Value};

use crate::fuzz_targets::{envelope, sigv4, TARGETS};
use crate::harness::*;

fn corpus(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target)
}

/// The inputs of a corpus directory, by file name.
fn inputs(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&p).unwrap())
        })
        .collect();
    out.sort();
    out
}

fn panic_message(e: &(dyn std::any::Any + Send)) -> String {
    e.downcast_ref::<String>()
        .cloned()
        .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "(no message)".into())
}

/// Every input of every corpus, each target's assertions; all failures named at once.
/// `P11KMS_FUZZ_CORPUS=<dir>` replays `<dir>/<target>/` too (e.g. a corpus a fuzzing run
/// grew under fuzz/work/).
#[test]
fn every_corpus_input_passes_its_target() {
    let extra = std::env::var_os("P11KMS_FUZZ_CORPUS").map(PathBuf::from);
    let mut failures = Vec::new();
    let mut total = 0;
    for t in TARGETS {
        let mut files = inputs(&corpus(t.name));
        assert!(!files.is_empty(), "fuzz/corpus/{} holds no input", t.name);
        if let Some(dir) = extra
            .as_ref()
            .map(|d| d.join(t.name))
            .filter(|d| d.is_dir())
        {
            files.extend(inputs(&dir));
        }
        for (file, data) in &files {
            if let Err(e) = std::panic::catch_unwind(|| (t.check)(data)) {
                failures.push(format!("{}/{file}: {}", t.name, panic_message(&*e)));
            }
        }
        eprintln!("{}: {} inputs replayed", t.name, files.len());
        total += files.len();
    }
    assert!(
        failures.is_empty(),
        "{} of {total} corpus inputs fail their target:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// The `valid-*` seeds are still what their parser accepts.
#[test]
fn valid_seeds_are_still_accepted() {
    let mut refused = Vec::new();
    for t in TARGETS {
        let valid: Vec<_> = inputs(&corpus(t.name))
            .into_iter()
            .filter(|(name, _)| name.starts_with("valid-"))
            .collect();
        assert!(
            !valid.is_empty(),
            "fuzz/corpus/{} has no valid-* seed",
            t.name
        );
        for (name, data) in valid {
            if !(t.accepted)(&data) {
                refused.push(format!("{}/{name}", t.name));
            }
        }
    }
    assert!(
        refused.is_empty(),
        "seeds their parser now refuses (regenerate them with P11KMS_WRITE_FUZZ_SEEDS=1 if \
         the format changed on purpose):\n{}",
        refused.join("\n")
    );
}

/// Where the seed writer writes: fuzz/corpus itself when asked to remake the seeds,
/// else a directory of its own, so that every test run checks the writer without
/// touching the committed corpora.
struct Seeds {
    root: PathBuf,
    written: Vec<(&'static str, String, Vec<u8>)>,
}

impl Seeds {
    fn write(&mut self, target: &'static str, name: &str, data: &[u8]) {
        let dir = self.root.join(target);
        std::fs::create_dir_all(&dir).unwrap();
        let name = format!("valid-{name}");
        std::fs::write(dir.join(&name), data).unwrap();
        self.written.push((target, name, data.to_vec()));
    }
}

fn pretty(v: &Value) -> Vec<u8> {
    let mut text = serde_json::to_string_pretty(v).unwrap();
    text.push('\n');
    text.into_bytes()
}

/// Writes the `valid-*` seeds of every corpus, from the project's own code and tests:
/// ciphertext blobs from a daemon, envelope messages made under the fuzz keyring (and
/// published vectors for the header), policies from the policy vectors, the documented
/// and the dev-mode configuration, AWS JSON request bodies as the SDKs send them, and
/// the botocore-signed requests of the SigV4 tests; then checks that every seed made is
/// accepted by its parser and passes its target's check, and that each target got some.
/// Into a temporary directory, unless `P11KMS_WRITE_FUZZ_SEEDS=1` asks it to remake
/// the committed seeds: `P11KMS_WRITE_FUZZ_SEEDS=1 cargo nextest run --features
/// failpoints --test it the_seed_writer`.
#[tokio::test(flavor = "multi_thread")]
async fn the_seed_writer_makes_seeds_their_parsers_accept() {
    let scratch = tempfile::tempdir().unwrap();
    let remake = std::env::var("P11KMS_WRITE_FUZZ_SEEDS").is_ok_and(|v| v == "1");
    let mut seeds = Seeds {
        root: if remake {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus")
        } else {
            scratch.path().to_path_buf()
        },
        written: Vec::new(),
    };
    let mut write = |target: &'static str, name: &str, data: &[u8]| seeds.write(target, name, data);
    // Ciphertext blobs, as the daemon writes them.
    let dir = TestDir::new();
    let d = Daemon::start(&dir);
    let mut c = d.admin().await;
    let key = create_key(&mut c).await;
    for (name, plaintext, context) in [
        ("one-byte", &b"x"[..], &[][..]),
        (
            "32-bytes-context",
            &[0x5a; 32][..],
            &[("purpose", "fuzz")][..],
        ),
        (
            "4096-bytes",
            &[0xa5; 4096][..],
            &[("a", "1"), ("b", "2")][..],
        ),
    ] {
        let blob = encrypt_unscanned(&mut c, &key.key_id, plaintext, context).await;
        write("blob", name, &blob);
    }
    d.stop();

    // Envelope messages under the fuzz keyring: both suites, several frames with a
    // short final one, a final frame alone, an empty plaintext.
    let context: BTreeMap<String, String> = [("purpose".to_string(), "fuzz".to_string())].into();
    for (name, suite, frame, size) in [
        ("committing-3-frames", Suite::Committing, 64, 150),
        ("signed-3-frames", Suite::CommittingSigned, 16, 40),
        ("committing-one-final-frame", Suite::Committing, 4096, 10),
        ("signed-empty", Suite::CommittingSigned, 32, 0),
    ] {
        let plaintext: Vec<u8> = (0..size).map(|i| (i * 7 % 251) as u8).collect();
        let options = EncryptOptions {
            suite,
            frame_length: frame,
        };
        let message = encrypt(&plaintext, envelope::keyring(), &context, &options)
            .await
            .unwrap();
        write("envelope", name, &message);
        write("envelope_header", name, &message);
    }
    // The header of published messages too (other writers, other keyrings).
    let vectors: Value =
        serde_json::from_str(include_str!("../vectors/esdk/commitment-test-vectors.json")).unwrap();
    let b64 = base64::engine::general_purpose::STANDARD;
    for (i, t) in vectors["tests"]
        .as_array()
        .unwrap()
        .iter()
        .take(3)
        .enumerate()
    {
        let message = b64.decode(t["ciphertext"].as_str().unwrap()).unwrap();
        write("envelope_header", &format!("esdk-vector-{i}"), &message);
    }

    // Policies from the policy vectors: key policies with conditions, NotPrincipal,
    // NotAction, variables; identity policies with Deny.
    let cases: Value =
        serde_json::from_str(include_str!("../policy-vectors/vectors.json")).unwrap();
    let case = |id: &str| {
        cases
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["id"] == id)
            .unwrap_or_else(|| panic!("no policy vector {id}"))
            .clone()
    };
    for id in [
        "notprincipal-deny-excluded-user-allowed",
        "stringnotequals-multi-values-nor",
        "foranyvalue-deny-no-match",
        "ipaddress-in-cidr",
        "variable-no-value-negated-matches",
        "grantisforawsresource-service-call",
        "xacct-key-policy-deny-callerAccount",
        "seed3-user-admin-action",
    ] {
        write(
            "policy",
            &format!("key-{id}.json"),
            &pretty(&case(id)["key_policy"]),
        );
    }
    for id in [
        "multiple-identity-policies-deny-wins",
        "seed4-admin-decrypt-explicit-deny",
    ] {
        for (i, p) in case(id)["identity_policies"]
            .as_array()
            .unwrap()
            .iter()
            .enumerate()
        {
            write("policy", &format!("identity-{id}-{i}.json"), &pretty(p));
        }
    }

    // Configuration: dev mode's file, and the example of docs/configuration.md as it
    // is and with every optional section turned on.
    let dev = TestDir::new();
    dev.prepare();
    write(
        "config",
        "dev.toml",
        &std::fs::read(dev.dev().config_path()).unwrap(),
    );
    let doc = include_str!("../../docs/configuration.md");
    let example = doc
        .split("```toml\n")
        .nth(1)
        .and_then(|s| s.split("```").next())
        .unwrap();
    write("config", "documented.toml", example.as_bytes());
    let full: String = example
        .lines()
        .map(|l| match l.strip_prefix("# ") {
            // Commented-out settings, not prose, and pin_file where pin_env is.
            Some(setting) if setting.contains(" = ") || setting.starts_with('[') => setting,
            _ => l,
        })
        .map(|l| format!("{l}\n"))
        .collect();
    write("config", "documented-all-sections.toml", full.as_bytes());

    // AWS JSON requests: the X-Amz-Target, a newline, the body as botocore sends it.
    let key_arn = "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";
    let requests = [
        (
            "Encrypt",
            json!({"KeyId": "1234abcd-12ab-34cd-56ef-1234567890ab",
                   "Plaintext": "VGhpcyBpcyBEYXkgMSBmb3IgdGhlIEludGVybmV0IEFjcXVpc2l0aW9uIFByb2plY3Qu",
                   "EncryptionContext": {"Department": "10-1A"}, "GrantTokens": ["t1"],
                   "EncryptionAlgorithm": "SYMMETRIC_DEFAULT"}),
        ),
        (
            "Decrypt",
            json!({"CiphertextBlob": b64.encode(inputs(&corpus("blob"))[0].1.as_slice()),
                   "EncryptionContext": {"purpose": "fuzz"}, "KeyId": key_arn}),
        ),
        (
            "CreateKey",
            json!({"Description": "fuzz", "KeyUsage": "ENCRYPT_DECRYPT", "KeySpec": "SYMMETRIC_DEFAULT",
                   "Policy": serde_json::to_string(&case("ipaddress-in-cidr")["key_policy"]).unwrap(),
                   "BypassPolicyLockoutSafetyCheck": false}),
        ),
        (
            "CreateGrant",
            json!({"KeyId": key_arn, "GranteePrincipal": "arn:aws:iam::111122223333:role/App",
                   "Operations": ["Decrypt", "GenerateDataKey"], "Name": "fuzz",
                   "Constraints": {"EncryptionContextSubset": {"purpose": "fuzz"}}}),
        ),
        (
            "BatchEncrypt",
            json!({"Items": [{"KeyId": "alias/app", "Plaintext": "aGk="},
                             {"KeyId": "alias/app", "Plaintext": "aGk=", "EncryptionContext": {"a": "b"}}]}),
        ),
        (
            "GenerateDataKey",
            json!({"KeyId": "alias/app", "KeySpec": "AES_256", "EncryptionContext": {"a": "b"}}),
        ),
        (
            "TagResource",
            json!({"KeyId": key_arn, "Tags": [{"TagKey": "env", "TagValue": "prod"}]}),
        ),
        ("ListKeys", json!({"Limit": 5, "Marker": "m"})),
    ];
    for (op, body) in requests {
        let mut data = format!("TrentService.{op}\n").into_bytes();
        data.extend_from_slice(body.to_string().as_bytes());
        write("aws_json", op, &data);
    }

    // SigV4: the requests botocore signed in src/sigv4/tests.rs (an Encrypt; a path,
    // query and header that need canonicalizing; the Host from the authority).
    let date = "20261130T193503Z";
    let auth = "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20261130/us-east-1/kms/aws4_request, SignedHeaders=content-type;host;x-amz-date;x-amz-target, Signature=106c3876e1a85d63f4b851cfbc10f9ba64bb167cc0fcd965283c2c312f5a762f";
    let auth_query = "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20261130/us-east-1/kms/aws4_request, SignedHeaders=content-type;host;x-amz-date;x-amz-target;x-custom, Signature=3d0a8d758909088894b803030eb1e17f8287a9dcba9cba22d8559ade4009cbac";
    let body = r#"{"KeyId":"alias/demo","Plaintext":"aGVsbG8="}"#;
    let common = format!(
        "content-type: application/x-amz-json-1.1\nx-amz-target: TrentService.Encrypt\nx-amz-date: {date}\n"
    );
    let requests = [
        (
            "encrypt",
            format!("POST /\n{common}host: kms.example:8443\nauthorization: {auth}\n\n{body}"),
        ),
        (
            "query-and-spaces",
            format!(
                "POST /a%20b/?b=2&a=1&c=x%2Fy\n{common}x-custom:   a   b  \nhost: kms.example:8443\nauthorization: {auth_query}\n\n{{}}"
            ),
        ),
        (
            "host-from-authority",
            format!("POST https://kms.example:8443/\n{common}authorization: {auth}\n\n{body}"),
        ),
    ];
    for (name, text) in requests {
        write("sigv4", name, text.as_bytes());
    }
    // What the targets are checked with must be what these were signed with.
    assert_eq!(sigv4::SECRET, "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY");

    let mut refused = Vec::new();
    for (target, name, data) in &seeds.written {
        let t = TARGETS.iter().find(|t| t.name == *target).unwrap();
        (t.check)(data);
        if !(t.accepted)(data) {
            refused.push(format!("{target}/{name}"));
        }
    }
    assert!(
        refused.is_empty(),
        "seeds their parser refuses: {refused:?}"
    );
    for t in TARGETS {
        assert!(
            seeds.written.iter().any(|(target, ..)| *target == t.name),
            "no seed made for {}",
            t.name
        );
    }
}

async fn encrypt_unscanned(
    c: &mut p11kms::client::KmsClient,
    key_id: &str,
    plaintext: &[u8],
    context: &[(&str, &str)],
) -> Vec<u8> {
    c.encrypt(encrypt_req_unscanned(key_id, plaintext, context))
        .await
        .unwrap()
        .into_inner()
        .ciphertext_blob
}
