//! Client certificate revocation: `tls.client_crl` refuses revoked certificates at the
//! handshake, SIGHUP re-reads the CRLs for new connections, a bad CRL at reload keeps the
//! previous one in force, and a bad CRL at start-up is an error naming the field.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use p11kms::client::{connect, error_name, ClientError, Identity};
use p11kms::DevCa;

use crate::harness::*;

/// What a new connection through `identity` gets from one ListKeys call.
enum Outcome {
    /// The call was answered (with keys or with a KMS error).
    Answered(Result<(), tonic::Status>),
    /// The connection was refused by TLS: no KMS error, a transport failure.
    Refused(String),
}

async fn call_new_connection(d: &Daemon, identity: &Path) -> Outcome {
    match connect(&d.endpoint(), &Identity::from_dir(identity).unwrap()).await {
        Err(e) => {
            assert!(matches!(e, ClientError::Transport { .. }), "{e:?}");
            Outcome::Refused(format!("{e:?}"))
        }
        // TLS 1.3 may let the client finish its handshake before the server's refusal
        // arrives: then the first call fails at the transport, never with a vault answer.
        Ok(mut c) => match c.list_keys(p11kms::proto::ListKeysRequest::default()).await {
            Ok(_) => Outcome::Answered(Ok(())),
            Err(st) if error_name(&st).is_none() => {
                assert!(
                    std::error::Error::source(&st).is_some(),
                    "a transport failure, not a handler's status: {st:?}"
                );
                Outcome::Refused(format!("{st:?}"))
            }
            Err(st) => Outcome::Answered(Err(st)),
        },
    }
}

/// A new connection through `identity` works: ListKeys and DescribeKey succeed.
async fn works(d: &Daemon, identity: &Path, key_id: &str) {
    match call_new_connection(d, identity).await {
        Outcome::Answered(Ok(())) => {}
        Outcome::Answered(Err(st)) => panic!("{}: {st:?}", identity.display()),
        Outcome::Refused(e) => panic!("{} refused: {e}", identity.display()),
    }
    describe(&mut d.connect_dir(identity).await, key_id).await;
}

/// A new connection through `identity` is refused at the handshake.
async fn refused(d: &Daemon, identity: &Path) {
    match call_new_connection(d, identity).await {
        Outcome::Refused(_) => {}
        Outcome::Answered(r) => panic!("{} was not refused: {r:?}", identity.display()),
    }
}

/// Polls until a new connection through `identity` is refused (the reload is
/// asynchronous), failing after 10 s.
async fn until_refused(d: &Daemon, identity: &Path) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match call_new_connection(d, identity).await {
            Outcome::Refused(_) => return,
            Outcome::Answered(Err(st)) => panic!("{}: {st:?}", identity.display()),
            Outcome::Answered(Ok(())) => {}
        }
        assert!(
            Instant::now() < deadline,
            "{} still accepted 10 s after SIGHUP:\n{}",
            identity.display(),
            d.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Polls the daemon's log until it contains every one of `parts` on one line.
async fn until_logged(d: &Daemon, parts: &[&str]) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(line) = d
            .log()
            .lines()
            .find(|l| parts.iter().all(|p| l.contains(p)))
        {
            return line.to_owned();
        }
        assert!(
            Instant::now() < deadline,
            "no log line with {parts:?} within 10 s:\n{}",
            d.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn set_client_crl(dir: &TestDir, value: toml::Value) {
    dir.edit_config(|c| {
        c["tls"]
            .as_table_mut()
            .unwrap()
            .insert("client_crl".into(), value);
    });
}

/// A prepared dev directory whose `tls.client_crl` (given as `value`) names
/// `clients-crl.pem`, a CRL that revokes nothing yet; with the dev CA, the identities
/// of roles A and B, and the CRL's path.
fn with_empty_crl(value: toml::Value) -> (TestDir, DevCa, PathBuf, PathBuf, PathBuf) {
    let dir = TestDir::new();
    dir.prepare();
    let ca = dir.dev().ca().unwrap();
    let a = identity_for(dir.path(), Some(&role(ACCOUNT, "A")));
    let b = identity_for(dir.path(), Some(&role(ACCOUNT, "B")));
    let crl = dir.path().join("clients-crl.pem");
    ca.write_crl(&[], &crl).unwrap();
    set_client_crl(&dir, value);
    (dir, ca, a, b, crl)
}

#[tokio::test(flavor = "multi_thread")]
async fn revoked_certificates_are_refused_from_the_next_reload_on() {
    // Relative to the configuration file, like the other TLS paths; the list form.
    let (dir, ca, a, b, crl) = with_empty_crl(toml::Value::Array(vec!["clients-crl.pem".into()]));

    // (1) A CRL that revokes nothing: everyone is served.
    let d = Daemon::start(&dir);
    let mut admin = d.admin().await;
    let key = create_key(&mut admin).await;
    for principal in [role(ACCOUNT, "A"), role(ACCOUNT, "B")] {
        put_identity_policy(
            &mut admin,
            &principal,
            "read",
            allow(&["kms:ListKeys", "kms:DescribeKey"]),
        )
        .await;
    }
    works(&d, &a, &key.key_id).await;
    works(&d, &b, &key.key_id).await;

    // (2) B's certificate revoked, then SIGHUP: B's new connections are refused at the
    // handshake, A's still work.
    ca.write_crl(&[&b.join("cert.pem")], &crl).unwrap();
    d.reload();
    until_refused(&d, &b).await;
    works(&d, &a, &key.key_id).await;
    describe(&mut admin, &key.key_id).await;

    // (3) A reload that cannot read the CRL keeps the previous one: B stays refused, A
    // stays served, and the log says which file is wrong.
    std::fs::write(&crl, "this is not a CRL\n").unwrap();
    d.reload();
    let line = until_logged(&d, &["TLS reload failed", "clients-crl.pem"]).await;
    assert!(line.contains("WARN"), "{line}");
    assert!(line.contains("tls.client_crl"), "{line}");
    refused(&d, &b).await;
    works(&d, &a, &key.key_id).await;

    // A good CRL again (revoking nothing) lets B back in: reloads keep working after a
    // failed one.
    ca.write_crl(&[], &crl).unwrap();
    // Step (2) logged a reload already: wait for one more.
    let reloaded = |d: &Daemon| d.log().matches("TLS configuration reloaded").count();
    let before = reloaded(&d);
    d.reload();
    let deadline = Instant::now() + Duration::from_secs(10);
    while reloaded(&d) == before {
        assert!(Instant::now() < deadline, "no second reload:\n{}", d.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    works(&d, &b, &key.key_id).await;
    d.stop();

    // (4) At start-up a missing, invalid or ambiguous CRL is an error naming the field
    // and the file.
    let config = dir.dev().config_path();
    let softhsm = dir.dev().softhsm_conf().display().to_string();
    let revoke_b = dir.path().join("revoke-b.pem");
    ca.write_crl(&[&b.join("cert.pem")], &revoke_b).unwrap();
    std::fs::write(dir.path().join("garbage.pem"), "not a CRL either\n").unwrap();
    let cases: Vec<(toml::Value, &[&str])> = vec![
        ("missing-crl.pem".into(), &["missing-crl.pem"]),
        ("garbage.pem".into(), &["garbage.pem"]),
        (
            // Two full CRLs of one CA: rustls would use only the first, hiding B's
            // revocation.
            toml::Value::Array(vec!["clients-crl.pem".into(), "revoke-b.pem".into()]),
            &["revoke-b.pem", "clients-crl.pem", "one CRL per CA"],
        ),
    ];
    for (value, expect) in cases {
        set_client_crl(&dir, value.clone());
        let err = Daemon::start_config(&config, dir.path(), &[("SOFTHSM2_CONF", &softhsm)])
            .err()
            .unwrap_or_else(|| panic!("started with client_crl = {value}"));
        assert!(err.contains("tls.client_crl"), "{value}: {err}");
        for e in expect {
            assert!(err.contains(e), "{value}: {err}");
        }
    }
}

/// A connection opened before its certificate was revoked does not outlive
/// `tls.max_connection_age_secs`: the server asks it to reconnect, and the new
/// handshake meets the current CRL. Other clients reconnect and carry on.
#[tokio::test(flavor = "multi_thread")]
async fn a_connection_opened_before_revocation_ends_within_its_maximum_age() {
    let (dir, ca, a, b, crl) = with_empty_crl("clients-crl.pem".into());
    dir.edit_config(|c| {
        c["tls"]
            .as_table_mut()
            .unwrap()
            .insert("max_connection_age_secs".into(), 1.into());
    });
    let d = Daemon::start(&dir);
    let mut admin = d.admin().await;
    for principal in [role(ACCOUNT, "A"), role(ACCOUNT, "B")] {
        put_identity_policy(&mut admin, &principal, "read", allow(&["kms:ListKeys"])).await;
    }
    let (mut ca_client, mut cb_client) = (d.connect_dir(&a).await, d.connect_dir(&b).await);
    let list = || p11kms::proto::ListKeysRequest::default();
    ca_client.list_keys(list()).await.unwrap();
    cb_client.list_keys(list()).await.unwrap();

    ca.write_crl(&[&b.join("cert.pem")], &crl).unwrap();
    d.reload();
    until_refused(&d, &b).await;
    // B's own, older connection stops working once it has aged out.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        match cb_client.list_keys(list()).await {
            Ok(_) => {}
            Err(st) => {
                assert!(error_name(&st).is_none(), "not a KMS answer: {st:?}");
                break;
            }
        }
        assert!(
            Instant::now() < deadline,
            "B's old connection still served 15 s after its revocation"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // A's client reconnects through the same ageing and is still served.
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(700)).await;
        let mut tries = 0;
        while let Err(st) = ca_client.list_keys(list()).await {
            // A call that meets the GOAWAY may fail once; the reconnect serves the next.
            tries += 1;
            assert!(tries < 5, "A is no longer served: {st:?}");
        }
    }
}
