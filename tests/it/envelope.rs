//! Envelope encryption against the daemon: the p11kms keyring (generator and extra
//! keys, strict and discovery), the context reaching key policies, the caching manager,
//! async streams, and `p11kms encrypt-file` / `decrypt-file`.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Output;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use p11kms::client::cache::CacheLimits;
use p11kms::client::envelope::{
    decrypt, decrypt_stream, encrypt, encrypt_stream, BoxFuture, CachingMaterialsManager,
    DecryptOptions, DecryptionMaterials, EncryptOptions, EncryptedDataKey, EncryptionMaterials,
    EnvelopeError, Keyring, KmsKeyring, MessageHeader, Suite, KMS_PROVIDER_ID,
};
use p11kms::proto;

use crate::harness::*;

fn context(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn data(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 7 % 251) as u8).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_message_under_two_keys_decrypts_with_either_alone() {
    let dir = TestDir::new();
    let d = Daemon::start(&dir);
    let mut admin = d.admin().await;
    let a = create_key(&mut admin).await.arn;
    let b = create_key(&mut admin).await.arn;
    let ctx = context(&[("site", "both")]);
    let pt = data(10_000);
    for suite in [Suite::Committing, Suite::CommittingSigned] {
        let opts = EncryptOptions {
            suite,
            frame_length: 4096,
        };
        let both = KmsKeyring::new(admin.clone(), a.clone(), vec![b.clone()]);
        let msg = encrypt(&pt, &both, &ctx, &opts).await.unwrap();
        let head = MessageHeader::read(&msg[..], &DecryptOptions::default()).unwrap();
        let infos: Vec<_> = head
            .header()
            .edks
            .iter()
            .map(|e| {
                (
                    e.provider_id.as_str(),
                    String::from_utf8(e.provider_info.clone()).unwrap(),
                )
            })
            .collect();
        assert_eq!(
            infos,
            [(KMS_PROVIDER_ID, a.clone()), (KMS_PROVIDER_ID, b.clone())]
        );
        for key in [&a, &b] {
            let only = KmsKeyring::new(admin.clone(), key.clone(), vec![]);
            let (out, c) = decrypt(&msg, &only, &DecryptOptions::default())
                .await
                .unwrap();
            assert_eq!(out.expose(), &pt[..], "{suite:?} with {key}");
            assert_eq!(c["site"], "both");
        }
    }

    // Key A switched off: discovery falls through to B; a keyring limited to A fails
    // with the daemon's error name.
    let msg = encrypt(
        &pt,
        &KmsKeyring::new(admin.clone(), a.clone(), vec![b.clone()]),
        &ctx,
        &EncryptOptions::default(),
    )
    .await
    .unwrap();
    admin
        .disable_key(proto::DisableKeyRequest { key_id: a.clone() })
        .await
        .unwrap();
    let (out, _) = decrypt(
        &msg,
        &KmsKeyring::discovery(admin.clone()),
        &DecryptOptions::default(),
    )
    .await
    .unwrap();
    assert_eq!(out.expose(), &pt[..]);
    let err = decrypt(
        &msg,
        &KmsKeyring::new(admin.clone(), a.clone(), vec![]),
        &DecryptOptions::default(),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(&err, EnvelopeError::KeyringFailed(m) if m.contains("DisabledException")),
        "{err:?}"
    );
    // A generator that is disabled cannot encrypt.
    let err = encrypt(
        &pt,
        &KmsKeyring::new(admin.clone(), a.clone(), vec![]),
        &ctx,
        &EncryptOptions::default(),
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("GenerateDataKey"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_message_context_reaches_the_daemons_policies() {
    let dir = TestDir::new();
    let d = Daemon::start(&dir);
    let mut admin = d.admin().await;
    let key = create_key(&mut admin).await.arn;
    let app = role(ACCOUNT, "billing");
    put_identity_policy(
        &mut admin,
        &app,
        "billing-only",
        serde_json::json!({"Version": "2012-10-17", "Statement": [{
            "Effect": "Allow",
            "Action": ["kms:GenerateDataKey", "kms:Decrypt"],
            "Resource": "*",
            "Condition": {"StringEquals": {"kms:EncryptionContext:app": "billing"}}
        }]}),
    )
    .await;
    let client = d.client_as(&app).await;
    let keyring = KmsKeyring::new(client, key, vec![]);
    let msg = encrypt(
        b"invoice",
        &keyring,
        &context(&[("app", "billing")]),
        &EncryptOptions::default(),
    )
    .await
    .unwrap();
    let (pt, _) = decrypt(&msg, &keyring, &DecryptOptions::default())
        .await
        .unwrap();
    assert_eq!(pt.expose(), b"invoice");
    let err = encrypt(
        b"x",
        &keyring,
        &context(&[("app", "payroll")]),
        &EncryptOptions::default(),
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("AccessDeniedException"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_edk_relabelled_to_another_key_is_refused() {
    let dir = TestDir::new();
    let d = Daemon::start(&dir);
    let mut admin = d.admin().await;
    let a = create_key(&mut admin).await.arn;
    let b = create_key(&mut admin).await.arn;
    let ring = KmsKeyring::discovery(admin.clone());
    let msg = encrypt(
        b"secret",
        &KmsKeyring::new(admin.clone(), a.clone(), vec![]),
        &BTreeMap::new(),
        &EncryptOptions::default(),
    )
    .await
    .unwrap();
    // Same length, so the header still parses: only the key name changes.
    let forged = replace(&msg, a.as_bytes(), b.as_bytes());
    let err = decrypt(&forged, &ring, &DecryptOptions::default())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("IncorrectKeyException"), "{err}");
}

fn replace(hay: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let at = hay
        .windows(from.len())
        .position(|w| w == from)
        .expect("pattern present");
    let mut out = hay.to_vec();
    out[at..at + from.len()].copy_from_slice(to);
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn the_cache_saves_daemon_calls_and_counts_them() {
    /// The p11kms keyring, counting the times the cache lets a request through to it.
    struct Counting {
        inner: KmsKeyring,
        encrypts: AtomicUsize,
        decrypts: AtomicUsize,
    }
    impl Keyring for Counting {
        fn on_encrypt(
            &self,
            m: EncryptionMaterials,
        ) -> BoxFuture<'_, Result<EncryptionMaterials, EnvelopeError>> {
            self.encrypts.fetch_add(1, Ordering::SeqCst);
            self.inner.on_encrypt(m)
        }
        fn on_decrypt<'a>(
            &'a self,
            m: DecryptionMaterials,
            edks: &'a [EncryptedDataKey],
        ) -> BoxFuture<'a, Result<DecryptionMaterials, EnvelopeError>> {
            self.decrypts.fetch_add(1, Ordering::SeqCst);
            self.inner.on_decrypt(m, edks)
        }
    }

    let dir = TestDir::new();
    let d = Daemon::start(&dir);
    let mut admin = d.admin().await;
    let key = create_key(&mut admin).await.arn;
    let limits = CacheLimits {
        max_messages: 3,
        ..CacheLimits::default()
    };
    let counting = Arc::new(Counting {
        inner: KmsKeyring::new(admin.clone(), key, vec![]),
        encrypts: AtomicUsize::new(0),
        decrypts: AtomicUsize::new(0),
    });
    let cache = CachingMaterialsManager::new(counting.clone(), "test", limits);
    let ctx = context(&[("tenant", "a")]);
    let mut messages = Vec::new();
    for i in 0..4u8 {
        messages.push(
            encrypt(&[i; 100], &cache, &ctx, &EncryptOptions::default())
                .await
                .unwrap(),
        );
    }
    let s = cache.encrypt_stats();
    assert_eq!((s.hits, s.misses), (2, 2), "3 messages per data key");
    assert_eq!(
        counting.encrypts.load(Ordering::SeqCst),
        2,
        "GenerateDataKey calls"
    );
    for (i, m) in messages.iter().enumerate() {
        let (pt, _) = decrypt(m, &cache, &DecryptOptions::default())
            .await
            .unwrap();
        assert_eq!(pt.expose(), &[i as u8; 100][..]);
    }
    // Two data keys, each unwrapped once.
    let s = cache.decrypt_stats();
    assert_eq!((s.hits, s.misses), (2, 2));
    assert_eq!(counting.decrypts.load(Ordering::SeqCst), 2, "Decrypt calls");
}

#[tokio::test(flavor = "multi_thread")]
async fn async_streams_use_the_daemon_keyring() {
    let dir = TestDir::new();
    let d = Daemon::start(&dir);
    let mut admin = d.admin().await;
    let key = create_key(&mut admin).await.arn;
    let ring = KmsKeyring::new(admin.clone(), key, vec![]);
    let pt = data(300_000);
    let ctx = context(&[("stream", "yes")]);
    let opts = EncryptOptions {
        suite: Suite::CommittingSigned,
        frame_length: 1000,
    };
    let msg = encrypt_stream(
        std::io::Cursor::new(pt.clone()),
        Vec::new(),
        &ring,
        &ctx,
        &opts,
    )
    .await
    .unwrap();
    let expect = DecryptOptions {
        expected_context: ctx.clone(),
        ..DecryptOptions::default()
    };
    let (out, c) = decrypt_stream(std::io::Cursor::new(msg), Vec::new(), &ring, &expect)
        .await
        .unwrap();
    assert_eq!(out, pt);
    assert_eq!(c["stream"], "yes");
}

fn cli(dir: &Path, args: &[&str], stdin: &[u8]) -> Output {
    run_cli(dir, args, stdin)
}

#[track_caller]
fn ok(o: &Output) -> Vec<u8> {
    assert!(
        o.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    o.stdout.clone()
}

#[track_caller]
fn fails(o: &Output, needle: &str) {
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "succeeded");
    assert!(err.contains(needle), "stderr: {err}");
}

/// The CLI's temporary output files left in `dir`.
fn leftovers(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("p11kms-tmp"))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn encrypt_file_and_decrypt_file_round_trip_and_never_leave_partial_output() {
    let dir = TestDir::new();
    let d = Daemon::start(&dir);
    let mut admin = d.admin().await;
    let key = create_key(&mut admin).await.arn;
    let work = tempfile::tempdir().unwrap();
    let p = |n: &str| work.path().join(n);
    let s = |n: &str| p(n).to_str().unwrap().to_owned();
    let pt = data(200_000);
    std::fs::write(p("pt"), &pt).unwrap();
    for (suite, frame) in [("committing", "65536"), ("signed", "1000")] {
        ok(&cli(
            dir.path(),
            &[
                "encrypt-file",
                &s("pt"),
                &s("ct"),
                "--key-id",
                &key,
                "-c",
                "app=files",
                "--suite",
                suite,
                "--frame-length",
                frame,
                "--force",
            ],
            b"",
        ));
        ok(&cli(
            dir.path(),
            &[
                "decrypt-file",
                &s("ct"),
                &s("out"),
                "-c",
                "app=files",
                "--force",
            ],
            b"",
        ));
        assert_eq!(std::fs::read(p("out")).unwrap(), pt, "{suite}");
    }
    // Never overwrites without --force.
    fails(
        &cli(dir.path(), &["decrypt-file", &s("ct"), &s("out")], b""),
        "exists; pass --force",
    );
    // A context the message lacks.
    fails(
        &cli(
            dir.path(),
            &["decrypt-file", &s("ct"), &s("other"), "-c", "app=else"],
            b"",
        ),
        "\"app\"",
    );
    // A damaged last frame: nothing appears at the destination, and no temp file stays.
    let mut ct = std::fs::read(p("ct")).unwrap();
    let n = ct.len();
    ct[n - 200] ^= 1;
    std::fs::write(p("bad"), &ct).unwrap();
    fails(
        &cli(
            dir.path(),
            &["decrypt-file", &s("bad"), &s("restored")],
            b"",
        ),
        "does not authenticate",
    );
    assert!(!p("restored").exists());
    // Truncated: the same.
    std::fs::write(p("short"), &ct[..n / 2]).unwrap();
    fails(
        &cli(
            dir.path(),
            &["decrypt-file", &s("short"), &s("restored")],
            b"",
        ),
        "truncated",
    );
    assert!(!p("restored").exists());
    assert!(
        leftovers(work.path()).is_empty(),
        "{:?}",
        leftovers(work.path())
    );
    // Pipes: stdin to stdout, both ways.
    let msg = ok(&cli(
        dir.path(),
        &["encrypt-file", "-", "-", "--key-id", &key],
        b"through pipes",
    ));
    assert_eq!(
        ok(&cli(dir.path(), &["decrypt-file", "-", "-"], &msg)),
        b"through pipes"
    );
}
