//! Clients with several endpoints (`--endpoint a,b`): a dead endpoint is skipped, and
//! when the daemon in use dies, calls go on to the next one, through the library and
//! through the CLI. Two daemons here share a dev CA (so one identity is trusted by
//! both) but not their keys, which tells which one answered.

use p11kms::client::{connect, Identity};
use p11kms::proto;

use crate::harness::*;

/// A dev directory whose CA, server certificate and admin identity are `from`'s.
fn sharing_ca(from: &TestDir) -> TestDir {
    let dir = TestDir::new();
    for f in ["ca.pem", "ca.key", "server.pem", "server.key"] {
        std::fs::copy(from.path().join(f), dir.path().join(f)).unwrap();
    }
    let (src, dst) = (from.dev().admin_identity(), dir.dev().admin_identity());
    std::fs::create_dir_all(&dst).unwrap();
    for f in ["cert.pem", "key.pem", "ca.pem"] {
        std::fs::copy(src.join(f), dst.join(f)).unwrap();
    }
    dir.prepare();
    dir
}

/// A local port nothing listens on.
fn dead_endpoint() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    drop(l);
    format!("https://127.0.0.1:{port}")
}

#[tokio::test(flavor = "multi_thread")]
async fn calls_go_to_the_next_daemon_when_one_is_down_or_dies() {
    let a_dir = TestDir::new();
    a_dir.prepare();
    let b_dir = sharing_ca(&a_dir);
    let a = Daemon::start(&a_dir);
    let b = Daemon::start(&b_dir);
    let identity = Identity::from_dir(&a_dir.dev().admin_identity()).unwrap();
    let on_a = create_key(&mut a.admin().await).await.key_id;
    let on_b = create_key(&mut b.admin().await).await.key_id;

    // A dead first endpoint: skipped at connect and by every call.
    let mut c = connect(&format!("{},{}", dead_endpoint(), a.endpoint()), &identity)
        .await
        .unwrap();
    assert_eq!(list_key_ids(&mut c).await, vec![on_a.clone()]);
    let blob = encrypt(&mut c, &on_a, b"through a", &[]).await;
    assert_eq!(decrypt(&mut c, &blob, &[]).await, b"through a");

    // A dies: the same client goes on with B, for calls that may be repeated and,
    // once A refuses connections, for CreateKey too.
    let a_endpoint = a.endpoint();
    let mut c = connect(&format!("{a_endpoint},{}", b.endpoint()), &identity)
        .await
        .unwrap();
    assert_eq!(list_key_ids(&mut c).await, vec![on_a.clone()]);
    a.crash();
    assert_eq!(list_key_ids(&mut c).await, vec![on_b.clone()]);
    let blob = encrypt(&mut c, &on_b, b"through b", &[]).await;
    assert_eq!(decrypt(&mut c, &blob, &[]).await, b"through b");
    let made = c
        .create_key(proto::CreateKeyRequest::default())
        .await
        .unwrap()
        .into_inner()
        .key_metadata
        .unwrap()
        .key_id;
    let mut on_b_now = vec![on_b.clone(), made];
    on_b_now.sort();
    let mut listed = list_key_ids(&mut c).await;
    listed.sort();
    assert_eq!(listed, on_b_now);

    // The CLI takes the same list.
    let out = run_cli(
        b_dir.path(),
        &[
            "--endpoint",
            &format!("{a_endpoint},{}", b.endpoint()),
            "key",
            "list",
        ],
        b"",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains(&on_b));
    b.stop();
}
