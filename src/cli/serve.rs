//! `p11kms serve`: the daemon, from a configuration file or in dev mode.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Args;
use tracing_subscriber::EnvFilter;

use p11kms::config::Config;
use p11kms::daemon;
use p11kms::dev::DevDir;

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
}

fn init_logging() {
    // Logs go to stderr so that stdout carries only the ready line and the dev hints.
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// `data_dir` is the global --data-dir: the dev directory, in dev mode.
pub(crate) fn run(
    args: ServeArgs,
    data_dir: Option<PathBuf>,
) -> Result<(), Box<dyn std::error::Error>> {
    init_logging();
    let (mut config, dev) = if args.dev {
        let dir = DevDir::at(data_dir.unwrap_or_else(DevDir::default_root));
        dir.prepare()?;
        // SoftHSM2 reads its configuration path from the environment at C_Initialize.
        // Set here, before the runtime and any other thread exist, so nothing races it.
        std::env::set_var("SOFTHSM2_CONF", dir.softhsm_conf());
        let config = Config::load(&dir.config_path())?;
        dir.init_token_if_missing(&config.module)?;
        (config, Some(dir))
    } else {
        let path = args
            .config
            .ok_or("give --config FILE for a production daemon, or --dev for dev mode")?;
        (Config::load(&path)?, None)
    };
    if let Some(listen) = args.listen {
        config.listen = listen;
    }
    let prepared = daemon::prepare(&config)?;
    let addr = prepared
        .local_addr()
        .ok_or("the listener has no local address")?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        // Signal handlers first: a supervisor may send SIGTERM or SIGHUP as soon as it
        // reads the ready line, and that must be a graceful stop or a reload, not the
        // default kill.
        let shutdown = shutdown_signal()?;
        let reload = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
        announce(addr, dev.as_ref())?;
        prepared.serve(shutdown, reload).await?;
        if let Some(dir) = &dev {
            // A stopped daemon leaves no address for the CLI to try.
            let _ = std::fs::remove_file(dir.endpoint_file());
        }
        Ok(())
    })
}

/// Prints the ready line (which tests and supervisors wait for) and, in dev mode, how to
/// call the daemon.
fn announce(addr: SocketAddr, dev: Option<&DevDir>) -> Result<(), Box<dyn std::error::Error>> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "p11kms listening on {addr}")?;
    if let Some(dir) = dev {
        dir.write_endpoint(addr)?;
        writeln!(
            out,
            "\ndev mode: everything lives in {root}\n\
             admin identity (arn:aws:iam::{acct}:root): {admin}\n\
             audit trail (one JSON line per call): {root}/audit   read it: p11kms audit tail   check it: p11kms audit verify\n\
             audit checkpoints signed in the token; public key: {root}/audit/audit-checkpoint.pub.pem\n\n\
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
            acct = p11kms::dev::DEV_ACCOUNT,
            admin = dir.admin_identity().display(),
        )?;
    }
    out.flush()?;
    Ok(())
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
