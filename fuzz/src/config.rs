//! The configuration file (`Config::parse`: TOML into the file's shape, then the
//! validation that names the field at fault). Whatever the text, it answers without
//! panicking, the same way twice, and a configuration it accepts is one the daemon can
//! start with: every number inside the bounds docs/configuration.md gives, every path
//! absolute (relative ones resolved against the file's directory), and the benchmark
//! echo off (it is never read from a file).

use std::path::Path;
use std::time::Duration;

/// Where the text is said to come from: its directory resolves relative paths.
const FILE: &str = "/etc/p11kms/p11kms.toml";

fn in_range(what: &str, v: Duration, lo: Duration, hi: Duration) {
    assert!(
        lo <= v && v <= hi,
        "{what} = {v:?}, outside {lo:?}..={hi:?}"
    );
}

fn absolute(what: &str, p: &Path) {
    assert!(p.is_absolute(), "{what} = {p:?} is not absolute");
}

/// See the module doc.
pub fn check(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let parsed = p11kms::Config::parse(text, Path::new(FILE));
    let again = p11kms::Config::parse(text, Path::new(FILE));
    assert_eq!(
        format!("{parsed:?}"),
        format!("{again:?}"),
        "the same text parsed two ways"
    );
    let Ok(c) = parsed else {
        return;
    };
    let secs = Duration::from_secs;
    let ms = Duration::from_millis;
    assert!((1..=256).contains(&c.pool.sessions), "hsm.sessions");
    assert!(c.pool.inline_sessions <= 256, "hsm.inline_sessions");
    in_range("hsm.call_timeout", c.pool.call_timeout, ms(10), ms(600_000));
    in_range("hsm.health_check", c.pool.health_check, ms(10), ms(600_000));
    in_range(
        "tls.max_connection_age",
        c.max_connection_age,
        secs(1),
        secs(604_800),
    );
    in_range("shutdown_timeout", c.shutdown_timeout, secs(0), secs(3600));
    in_range(
        "lifecycle.sweep_interval",
        c.sweep_interval,
        secs(1),
        secs(86_400),
    );
    assert!(
        (1..=1u64 << 32).contains(&c.max_encryptions_per_material),
        "limits.max_encryptions_per_material"
    );
    assert!(!c.bench_echo, "the benchmark echo turned on by a file");

    let mut paths = vec![
        ("tls.cert", c.tls_cert.as_path()),
        ("tls.key", c.tls_key.as_path()),
        ("tls.client_ca", c.tls_client_ca.as_path()),
        ("hsm.module", c.module.as_path()),
    ];
    match &c.store {
        p11kms::StoreBackend::Sqlite(p) => paths.push(("store.sqlite", p.as_path())),
        p11kms::StoreBackend::Postgres {
            url,
            password,
            pool_size,
            tls,
        } => {
            // A password never rides in the URL; the pool is bounded.
            let parsed: Result<tokio_postgres::Config, _> = url.parse();
            assert!(
                parsed.is_ok_and(|p| p.get_password().is_none()),
                "store.postgres"
            );
            assert!((1..=1024).contains(pool_size), "store.pool_size");
            if let p11kms::PasswordSource::File(p) = password {
                paths.push(("store.password_file", p.as_path()));
            }
            if let Some(t) = tls {
                paths.push(("store.tls_ca_file", t.ca.as_path()));
                if let Some((cert, key)) = &t.client {
                    paths.push(("store.tls_cert_file", cert.as_path()));
                    paths.push(("store.tls_key_file", key.as_path()));
                }
            }
        }
    }
    paths.extend(
        c.tls_client_crl
            .iter()
            .map(|p| ("tls.client_crl", p.as_path())),
    );
    paths.extend(
        c.clock_offset_file
            .as_deref()
            .map(|p| ("lifecycle.clock_offset_file", p)),
    );
    if let Some(a) = &c.audit {
        assert!(a.max_file_bytes >= 4096, "audit.max_file_bytes");
        assert!(
            (1..=1_000_000).contains(&a.checkpoint.every_records),
            "audit.checkpoint_records"
        );
        in_range(
            "audit.checkpoint_secs",
            a.checkpoint.every,
            secs(1),
            secs(86_400),
        );
        paths.push(("audit.dir", a.dir.as_path()));
        paths.push((
            "audit.checkpoint_public_key",
            a.checkpoint.public_key_file.as_path(),
        ));
    }
    if let Some(tls) = c.metrics.as_ref().and_then(|m| m.tls.as_ref()) {
        paths.push(("metrics.tls_cert", tls.cert.as_path()));
        paths.push(("metrics.tls_key", tls.key.as_path()));
    }
    for (what, p) in paths {
        absolute(what, p);
    }
    // PinSource is not exported; its Debug form shows a file's path.
    let pin = format!("{:?}", c.pin);
    if let Some(path) = pin.strip_prefix("File(\"") {
        assert!(
            path.starts_with('/'),
            "hsm.pin_file = {pin} is not absolute"
        );
    }
}

/// True when `data` is a valid configuration (the `valid-*` seeds must stay so).
pub fn accepted(data: &[u8]) -> bool {
    std::str::from_utf8(data).is_ok_and(|text| p11kms::Config::parse(text, Path::new(FILE)).is_ok())
}
