//! Production mode (`serve --config`): a bad configuration is a clear error naming the
//! field, and a good one serves the token that dev mode made.

use std::fs;

use crate::harness::*;

fn softhsm_env(dir: &TestDir) -> (String, String) {
    (
        "SOFTHSM2_CONF".into(),
        dir.dev().softhsm_conf().display().to_string(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn production_config_serves_with_a_pin_from_the_environment() {
    let dir = TestDir::new();
    let d = Daemon::start(&dir);
    let mut c = d.admin().await;
    let key = create_key(&mut c).await;
    let blob = encrypt(&mut c, &key.key_id, b"from dev mode", &[]).await;
    d.stop();

    let text = fs::read_to_string(dir.dev().config_path()).unwrap();
    let config = dir.path().join("prod.toml");
    fs::write(
        &config,
        text.replace("pin_file = \"user.pin\"", "pin_env = \"TEST_P11KMS_PIN\""),
    )
    .unwrap();
    let pin = fs::read_to_string(dir.path().join("user.pin")).unwrap();
    let (k, v) = softhsm_env(&dir);
    let d = Daemon::start_config(
        &config,
        dir.path(),
        &[(&k, &v), ("TEST_P11KMS_PIN", pin.trim())],
    )
    .unwrap();
    let mut c = d.admin().await;
    assert_eq!(decrypt(&mut c, &blob, &[]).await, b"from dev mode");
}

/// `[hsm] env` gives the module its environment: SoftHSM2 finds its token through a
/// `SOFTHSM2_CONF` set there and nowhere else, and the log names the variables once,
/// never their values.
#[tokio::test(flavor = "multi_thread")]
async fn the_module_gets_its_environment_from_the_configuration() {
    let dir = TestDir::new();
    let d = Daemon::start(&dir);
    let mut c = d.admin().await;
    let key = create_key(&mut c).await;
    let blob = encrypt(&mut c, &key.key_id, b"found by hsm.env", &[]).await;
    d.stop();

    let (k, v) = softhsm_env(&dir);
    let text = fs::read_to_string(dir.dev().config_path()).unwrap();
    let config = dir.path().join("env.toml");
    let secret = "vendor-s3cr3t-value";
    fs::write(
        &config,
        text.replace(
            "[store]",
            &format!("env = {{ {k} = {v:?}, VENDOR_TOKEN_SECRET = {secret:?} }}\n[store]"),
        ),
    )
    .unwrap();
    let d = Daemon::start_config(&config, dir.path(), &[]).unwrap();
    let mut c = d.admin().await;
    assert_eq!(decrypt(&mut c, &blob, &[]).await, b"found by hsm.env");
    let log = d.stop();
    let told: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("module's environment from hsm.env"))
        .collect();
    assert_eq!(told.len(), 1, "{log}");
    assert!(
        told[0].contains("SOFTHSM2_CONF") && told[0].contains("VENDOR_TOKEN_SECRET"),
        "{}",
        told[0]
    );
    assert!(!log.contains(secret) && !log.contains(&v), "{log}");
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_configurations_are_refused_with_the_field_named() {
    let dir = TestDir::new();
    // Make the token once so that PIN and token errors can be told apart.
    Daemon::start(&dir).stop();
    let good = fs::read_to_string(dir.dev().config_path()).unwrap();
    let (k, v) = softhsm_env(&dir);
    // Each case: the edit, and what the error must say (the field, and the value).
    let cases: Vec<(String, &[&str])> = vec![
        (good.replace("listen =", "lisen ="), &["lisen"]),
        (
            good.replace("account = \"111122223333\"", "account = \"1111\""),
            &["account"],
        ),
        (
            good.replace(
                "token_label = \"p11kms-dev\"",
                "token_label = \"no-such-token\"",
            ),
            &["hsm.token_label", "no-such-token"],
        ),
        (
            good.replace("pin_file = \"user.pin\"", "pin_file = \"missing.pin\""),
            &["hsm.pin_file", "missing.pin"],
        ),
        (
            good.replace(
                "pin_file = \"user.pin\"",
                "pin_env = \"UNSET_P11KMS_PIN_VAR\"",
            ),
            &["hsm.pin_env", "UNSET_P11KMS_PIN_VAR"],
        ),
        (
            good.replace("libsofthsm2.so", "libnothere.so"),
            &["hsm.module", "libnothere.so"],
        ),
        (
            good.replace("client_ca = \"ca.pem\"", "client_ca = \"nope.pem\""),
            &["tls", "nope.pem"],
        ),
        (
            good.replace(
                "sqlite = \"p11kms.db\"",
                "sqlite = \"/nonexistent/dir/p11kms.db\"",
            ),
            &["store.sqlite"],
        ),
        (good.replace("[store]", "[storage]"), &["storage"]),
        (
            good.replace(
                "secret_file = \"xks.secret\"",
                "secret_file = \"missing.secret\"",
            ),
            &["xks.stores[0].credentials[0].secret_file", "missing.secret"],
        ),
        (
            good.replace(
                "uri_path = \"/dev/kms/xks/v1\"",
                "uri_path = \"/dev/kms/xks/v2\"",
            ),
            &["xks.stores[0].uri_path"],
        ),
    ];
    for (i, (text, expect)) in cases.into_iter().enumerate() {
        let path = dir.path().join(format!("bad-{i}.toml"));
        fs::write(&path, text).unwrap();
        let err = Daemon::start_config(&path, dir.path(), &[(&k, &v)])
            .err()
            .unwrap_or_else(|| panic!("case {expect:?} started"));
        for e in expect {
            assert!(err.contains(e), "case {expect:?}: {err}");
        }
    }

    // A wrong PIN is a start-up error that says so.
    let wrong = dir.path().join("wrong.pin");
    fs::write(&wrong, "not-the-pin").unwrap();
    let path = dir.path().join("wrong-pin.toml");
    fs::write(
        &path,
        good.replace("pin_file = \"user.pin\"", "pin_file = \"wrong.pin\""),
    )
    .unwrap();
    let err = Daemon::start_config(&path, dir.path(), &[(&k, &v)])
        .err()
        .unwrap();
    assert!(
        err.contains("cannot log in") && err.contains("hsm.pin_file"),
        "{err}"
    );
    assert!(!err.contains("not-the-pin"), "the PIN is not echoed: {err}");
}
