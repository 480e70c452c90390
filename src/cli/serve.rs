//! `p11kms serve`: the daemon, from a configuration file or in dev mode.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Args;
use tracing_subscriber::EnvFilter;

use p11kms::{prepare_daemon, AwsApiConfig, Config, DevDir, MetricsConfig};

#[derive(Args, Debug)]
pub(crate) struct ServeArgs {
    /// Zero-configuration dev mode: SoftHSM2 token, dev CA and certificates, SQLite, all
    /// in the data directory, created on first start and reused afterwards.
    #[arg(long, conflicts_with = "config")]
    dev: bool,
    /// Production configuration file (see README, "Configuration").
    #[arg(long)]
    config: Option<PathBuf>,
    /// Listen address, overriding the configuration (port 0 picks a free port).
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Address of the metrics and health listener (/metrics, /healthz, /readyz),
    /// overriding `[metrics] listen`; turns the listener on when the configuration has
    /// no `[metrics]` table. Port 0 picks a free port.
    #[arg(long)]
    metrics_listen: Option<SocketAddr>,
    /// Address of the AWS JSON listener (the AWS CLI and SDKs), overriding
    /// `[aws_api] listen`; turns the listener on when the configuration has no
    /// `[aws_api]` table. Port 0 picks a free port.
    #[arg(long)]
    aws_api_listen: Option<SocketAddr>,
    /// Address of the external key stores' own listener, overriding `[xks] listen`;
    /// gives the `[[xks.stores]]` their own listener when the configuration serves
    /// them on the AWS API listener. Port 0 picks a free port.
    #[arg(long)]
    xks_listen: Option<SocketAddr>,
    /// Log lines as human-readable text, or as one JSON object per line with the
    /// request's span fields (request_id, operation, principal, …).
    #[arg(long, value_enum, env = "P11KMS_LOG_FORMAT", default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// For `cargo bench --bench throughput` only: answer every call with its own request
    /// on both API listeners, to measure the transport's ceiling.
    #[arg(long, hide = true)]
    bench_echo: bool,
}

/// How log lines are written.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LogFormat {
    /// Human-readable text.
    Text,
    /// One JSON object per line.
    Json,
}

fn init_logging(format: LogFormat) {
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    // Logs go to stderr so that stdout carries only the ready lines and the dev hints.
    // Colour only for a person at a terminal: escape codes in a log file or a pipe are
    // noise to every reader, and formatting them costs each request's span its share.
    let text = tracing_subscriber::fmt::layer()
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    let logs = tracing_subscriber::registry().with(log_filter());
    let _ = match format {
        LogFormat::Text => logs.with(text).try_init(),
        // The current span's fields (request_id first of all) go into every line logged
        // inside a request, so a log search by request id finds all of them.
        LogFormat::Json => logs
            .with(text.json().with_current_span(true).with_span_list(false))
            .try_init(),
    };
}

/// The log filter RUST_LOG sets ("info" when it is unset or does not parse). Targets
/// and levels alone, the usual kind, make a `Targets` filter, which keeps nothing per
/// span; `EnvFilter`, needed only for span and field directives (`[request]=debug`),
/// takes a lock shared by every thread at each entry to and exit from a span: several
/// per request, measurable at tens of thousands of requests a second.
fn log_filter() -> Box<dyn tracing_subscriber::Layer<tracing_subscriber::Registry> + Send + Sync> {
    let directives = std::env::var("RUST_LOG")
        .ok()
        .filter(|d| !d.trim().is_empty())
        .unwrap_or_else(|| "info".to_owned());
    if !directives.contains(['[', ']', '{', '}']) {
        if let Ok(targets) = directives.parse::<tracing_subscriber::filter::Targets>() {
            return Box::new(targets);
        }
    }
    Box::new(EnvFilter::try_new(&directives).unwrap_or_else(|_| EnvFilter::new("info")))
}

/// `data_dir` is the global --data-dir: the dev directory, in dev mode.
pub(crate) fn run(
    args: ServeArgs,
    data_dir: Option<PathBuf>,
) -> Result<(), Box<dyn std::error::Error>> {
    init_logging(args.log_format);
    raise_open_files_limit();
    let (mut config, dev) = if args.dev {
        let dir = DevDir::at(data_dir.unwrap_or_else(DevDir::default_root));
        dir.prepare()?;
        // SoftHSM2 reads its configuration path from the environment at C_Initialize.
        // Set here, before the runtime and any other thread exist, so nothing races it.
        std::env::set_var("SOFTHSM2_CONF", dir.softhsm_conf());
        let config = Config::load(&dir.config_path())?;
        dir.init_token_if_missing(&config.module, &config.module_env)?;
        (config, Some(dir))
    } else {
        let path = args
            .config
            .ok_or("give --config FILE for a production daemon, or --dev for dev mode")?;
        (Config::load(&path)?, None)
    };
    config.bench_echo = args.bench_echo;
    if let Some(listen) = args.listen {
        config.listen = listen;
    }
    if let Some(listen) = args.metrics_listen {
        let tls = config.metrics.take().and_then(|m| m.tls);
        config.metrics = Some(MetricsConfig { listen, tls });
    } else if dev.is_some() && config.metrics.is_none() {
        // A dev directory made before metrics existed: dev mode always serves them.
        config.metrics = Some(MetricsConfig {
            listen: p11kms::DEV_METRICS_LISTEN.parse()?,
            tls: None,
        });
    }
    if let Some(listen) = args.aws_api_listen {
        // Only the address changes; the rest of an [aws_api] table stands.
        let require_client_certificate = config
            .aws_api
            .as_ref()
            .is_some_and(|a| a.require_client_certificate);
        config.aws_api = Some(AwsApiConfig {
            listen,
            require_client_certificate,
        });
    } else if dev.is_some() && config.aws_api.is_none() {
        // A dev directory made before the AWS JSON listener existed.
        config.aws_api = Some(AwsApiConfig {
            listen: p11kms::DEV_AWS_API_LISTEN.parse()?,
            require_client_certificate: false,
        });
    }
    if let Some(listen) = args.xks_listen {
        if config.xks.is_empty() {
            return Err("--xks-listen: the configuration has no [[xks.stores]] to serve".into());
        }
        // Only the address changes; a certificate or mutual TLS of [xks] stands.
        match &mut config.xks_listener {
            Some(l) => l.listen = listen,
            None => {
                config.xks_listener = Some(p11kms::XksListenerConfig {
                    listen,
                    cert: None,
                    client_auth: None,
                })
            }
        }
    }
    let prepared = prepare_daemon(&config)?;
    let aws_api_url = prepared.aws_api_addr().map(|a| format!("https://{a}"));
    let xks_url = prepared.xks_addr().map(|a| format!("https://{a}"));
    let addr = prepared
        .local_addr()
        .ok_or("the listener has no local address")?;
    let metrics_url = prepared.metrics_addr().map(|(a, tls)| {
        let scheme = if tls { "https" } else { "http" };
        format!("{scheme}://{a}/metrics")
    });
    // One worker more than the cores: the caller that writes an audit batch blocks its
    // worker for the write and fsync (see audit::AuditTrail), and the other calls must
    // keep every core busy meanwhile.
    let cores = std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cores + 1)
        .enable_all()
        .build()?;
    let stopped = rt.block_on(async {
        // Signal handlers first: a supervisor may send SIGTERM or SIGHUP as soon as it
        // reads the ready line, and that must be a graceful stop or a reload, not the
        // default kill.
        let shutdown = shutdown_signal()?;
        let reload = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
        // Dev mode: the admin's AWS environment, for the AWS CLI and SDKs.
        let aws_env = match (&dev, prepared.aws_api_addr()) {
            (Some(dir), Some(aws_addr)) => {
                let admin = format!("arn:aws:iam::{}:root", p11kms::DEV_ACCOUNT);
                let key = prepared.dev_access_key(&admin, dir.aws_env_key()).await?;
                Some(dir.write_aws_env(aws_addr, &key)?)
            }
            _ => None,
        };
        // Dev mode: the external key store, with the keys its test client expects.
        let dev_store = config
            .xks
            .iter()
            .find(|s| s.uri_path == format!("/{}/kms/xks/v1", p11kms::DEV_XKS_PREFIX));
        // P11KMS_DEV_XKS=off: no key made for it (test suites that count keys and records
        // from the first call on); the store is still served.
        let dev_store =
            dev_store.filter(|_| std::env::var_os("P11KMS_DEV_XKS").is_none_or(|v| v != "off"));
        let xks_addr = prepared.xks_addr().or(prepared.aws_api_addr());
        let xks_env = match (&dev, xks_addr, dev_store) {
            (Some(dir), Some(xks_addr), Some(store)) => {
                prepared.dev_xks_key(&store.principal.to_string()).await?;
                match store.credentials.first() {
                    Some(c) => {
                        Some(dir.write_xks_env(xks_addr, store.region(), &c.access_key_id)?)
                    }
                    None => None,
                }
            }
            _ => None,
        };
        announce(
            addr,
            metrics_url.as_deref(),
            aws_api_url.as_deref(),
            xks_url.as_deref(),
            dev.as_ref(),
            aws_env.as_deref().map(String::as_str),
            xks_env.as_deref().map(String::as_str),
        )?;
        Ok::<_, Box<dyn std::error::Error>>(prepared.serve(shutdown, reload).await?)
    })?;
    if let Some(dir) = &dev {
        // A stopped daemon leaves no address for the CLI to try.
        let _ = std::fs::remove_file(dir.endpoint_file());
    }
    // Calls still running past the shutdown deadline are cancelled here; each queues
    // its RequestCanceled record as it is dropped, before the trail is closed.
    rt.shutdown_timeout(std::time::Duration::from_secs(5));
    stopped.close();
    Ok(())
}

/// Prints the metrics and AWS JSON lines, then the ready line (which tests and
/// supervisors wait for: once it is out, every listener is bound) and, in dev mode, how
/// to call the daemon.
fn announce(
    addr: SocketAddr,
    metrics_url: Option<&str>,
    aws_api_url: Option<&str>,
    xks_url: Option<&str>,
    dev: Option<&DevDir>,
    aws_env: Option<&str>,
    xks_env: Option<&str>,
) -> Result<(), Box<dyn std::error::Error>> {
    let mut out = std::io::stdout().lock();
    if let Some(url) = metrics_url {
        writeln!(out, "p11kms metrics on {url}")?;
    }
    if let Some(url) = aws_api_url {
        writeln!(out, "p11kms AWS API on {url}")?;
    }
    if let Some(url) = xks_url {
        writeln!(out, "p11kms XKS proxy on {url}")?;
    }
    writeln!(out, "p11kms listening on {addr}")?;
    if let Some(dir) = dev {
        dir.write_endpoint(addr)?;
        writeln!(
            out,
            "\ndev mode: everything lives in {root}\n\
             admin identity (arn:aws:iam::{acct}:root): {admin}\n\
             audit trail (one JSON line per call): {root}/audit   read it: p11kms audit tail   check it: p11kms audit verify\n\
             audit checkpoints signed in the token; public key: {root}/audit/audit-checkpoint.pub.pem\n\
             metrics: {metrics}   (health: /healthz, /readyz)\n\
             AWS KMS API (AWS JSON 1.1, SigV4): {aws_api}   CA bundle: {root}/ca.pem\n\n\
             In another terminal:\n\
             \x20 p11kms key create --description demo\n\
             \x20 echo -n 'my secret' | p11kms encrypt --key-id <KeyId> > secret.b64\n\
             \x20 p11kms decrypt --in secret.b64\n\
                          \x20 p11kms dev issue-cert --principal arn:aws:iam::{acct}:role/App --out ./app-id\n\
             \x20 p11kms --identity ./app-id key list      # AccessDenied: App has no policy yet\n\
             \x20 echo '{{\"Statement\":[{{\"Effect\":\"Allow\",\"Action\":\"kms:*\",\"Resource\":\"*\"}}]}}' \\\n\
             \x20   | p11kms policy put --principal arn:aws:iam::{acct}:role/App --name all-kms --file -\n\
             \x20 p11kms --identity ./app-id key list\n",
            root = dir.root().display(),
            acct = p11kms::DEV_ACCOUNT,
            admin = dir.admin_identity().display(),
            metrics = metrics_url.unwrap_or("off"),
            aws_api = aws_api_url.unwrap_or("off"),
        )?;
        if let Some(env) = aws_env {
            writeln!(
                out,
                "The AWS CLI and SDKs, as the admin (these lines are also in {file}):\n\
                 {env}\
                 \x20 aws kms list-keys\n\
                 \x20 aws kms encrypt --key-id <KeyId> --plaintext fileb://secret.txt\n",
                file = dir.aws_env_file().display(),
            )?;
        }
        if let Some(env) = xks_env {
            writeln!(
                out,
                "External key store (XKS proxy API, SigV4 service kms-xks-proxy) on {on},\n\
                 for AWS's curl-based test client (aws-samples/aws-kms-xksproxy-test-client;\n\
                 these lines are also in {file}):\n\
                 {env}\
                 \x20 ./test-xks-proxy -a\n\
                 or by hand:\n\
                 \x20 curl --aws-sigv4 \"aws:amz:$REGION:kms-xks-proxy\" --user \"$SIGV4_ACCESS_KEY_ID:$SIGV4_SECRET_ACCESS_KEY\" \\\n\
                 \x20   -H 'Content-Type: application/json' \\\n\
                 \x20   -d '{{\"requestMetadata\":{{\"kmsOperation\":\"KmsHealthCheck\",\"kmsRequestId\":\"1\"}}}}' \\\n\
                 \x20   https://$XKS_PROXY_HOST/$URI_PREFIX/kms/xks/v1/health\n",
                file = dir.xks_env_file().display(),
                on = xks_url.unwrap_or("the AWS API listener"),
            )?;
        }
    }
    out.flush()?;
    Ok(())
}

/// Raises the soft limit on open files to the hard limit. Each connection, and each TLS
/// handshake in progress, holds a descriptor; systemd and most shells start services
/// with a soft limit of 1024 under a far higher hard one, which a few hundred silent
/// sockets and a thousand idle clients would exhaust (accept then fails with EMFILE).
/// The hard limit stays the operator's to set (`LimitNOFILE=`).
fn raise_open_files_limit() {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => tracing::info!(limit, "open files limit"),
        Err(e) => tracing::warn!(error = %e, "cannot raise the open files limit"),
    }
}

/// Registers SIGINT and SIGTERM now; the future completes on either.
fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut int = signal(SignalKind::interrupt())?;
    let mut term = signal(SignalKind::terminate())?;
    Ok(async move {
        tokio::select! {
            _ = int.recv() => {},
            _ = term.recv() => {},
        }
        tracing::info!("shutting down: finishing in-flight requests");
    })
}
