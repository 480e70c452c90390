//! The `p11kms` binary: the daemon (`p11kms serve`) and the client CLI in one.

// `println!` panics, with a backtrace, when stdout's reader has gone away; output goes
// through `cli::io`, which returns the error instead (see `cli::io::print_line`).
#![deny(clippy::print_stdout)]

mod cli;

use std::io::Write as _;
use std::process::ExitCode;

use clap::Parser;

/// The daemon's allocator. Under load glibc's malloc took about a seventh of the
/// daemon's CPU (arena locks contended between the runtime's and the HSM's threads,
/// `malloc_consolidate`); mimalloc's thread-local heaps do not contend. Built with
/// `no_thp`: on a host with transparent huge pages always on, its regions otherwise
/// took about 40% more memory. Built with `override` too: the binary exports malloc
/// and free, so that the PKCS#11 module (SoftHSM2 and the OpenSSL under it allocate on
/// every call) allocates with mimalloc as well; with glibc's, their malloc and free
/// were about 2 µs of each Encrypt. Measured with benches/throughput.rs:
/// docs/DESIGN.md, "The allocator".
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    // A client command whose reader went away (`p11kms key list | head -1`) stops
    // quietly, as any Unix tool upstream of `head` does. The daemon still reports it:
    // its stdout closing before it has announced itself is worth a line in its log.
    let quiet_broken_pipe = !matches!(cli.command, cli::Command::Serve(_));
    match cli::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if quiet_broken_pipe && cli::io::is_broken_pipe(e.as_ref()) => {
            ExitCode::from(cli::io::BROKEN_PIPE_STATUS)
        }
        Err(e) => {
            let mut msg = format!("error: {e}");
            let mut cur = e.source();
            while let Some(c) = cur {
                msg.push_str(&format!("\n  caused by: {c}"));
                cur = c.source();
            }
            // Not eprintln!, which panics when stderr is closed too; the status says it.
            let _ = writeln!(std::io::stderr().lock(), "{msg}");
            ExitCode::FAILURE
        }
    }
}
