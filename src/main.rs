//! The `p11kms` binary: the daemon (`p11kms serve`) and the client CLI in one.

mod cli;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    match cli::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let mut msg = format!("error: {e}");
            let mut cur = e.source();
            while let Some(c) = cur {
                msg.push_str(&format!("\n  caused by: {c}"));
                cur = c.source();
            }
            eprintln!("{msg}");
            ExitCode::FAILURE
        }
    }
}
