//! `p11kms encrypt-file` / `decrypt-file`: envelope encryption of files and pipes in the
//! AWS Encryption SDK message format. Only the data key meets the daemon; the bulk data
//! is encrypted here, one frame in memory at a time.
//!
//! Output to a file goes to a temporary file beside it, moved into place only once the
//! whole message has been written (encrypt) or has authenticated to its end (decrypt):
//! a failure never leaves a partial or unauthenticated file. Output to `-` (stdout)
//! streams: frames reach stdout as each authenticates, and a failure exits non-zero.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufReader, BufWriter, IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};

use p11kms::client::envelope::{
    copy_wiped, decrypt_chunk, encrypt_chunk, DecryptOptions, EncryptionRequest, Encryptor,
    KmsKeyring, MaterialsManager, MessageHeader, Suite, MAX_EDKS,
};

use super::io::{parse_pair, AtomicFile, PipeWatch};
use super::Conn;

type CliResult = Result<(), Box<dyn std::error::Error>>;

/// Files at least this large get a progress bar on a terminal.
const PROGRESS_FROM: u64 = 8 << 20;

#[derive(Args, Debug)]
pub(crate) struct EncryptFileArgs {
    /// Plaintext file, or - for stdin.
    input: PathBuf,
    /// Where to write the message, or - for stdout.
    output: PathBuf,
    /// Key id, key ARN, alias name or alias ARN. The first makes the data key; each
    /// further one encrypts the same data key, so that any of them can decrypt.
    #[arg(long = "key-id", required = true)]
    key_ids: Vec<String>,
    /// Encryption context pair KEY=VALUE (repeatable).
    #[arg(long = "context", short = 'c', value_parser = parse_pair)]
    context: Vec<(String, String)>,
    /// Algorithm suite.
    #[arg(long, value_enum, default_value_t = SuiteArg::Committing)]
    suite: SuiteArg,
    /// Plaintext bytes per frame.
    #[arg(long, default_value_t = 65536, value_parser = clap::value_parser!(u32).range(1..))]
    frame_length: u32,
    /// Grant token (repeatable).
    #[arg(long = "grant-token")]
    grant_tokens: Vec<String>,
    /// Replace the output file if it exists.
    #[arg(long)]
    force: bool,
    /// No progress bar.
    #[arg(long, short = 'q')]
    quiet: bool,
}

#[derive(Args, Debug)]
pub(crate) struct DecryptFileArgs {
    /// Message file, or - for stdin.
    input: PathBuf,
    /// Where to write the plaintext, or - for stdout.
    output: PathBuf,
    /// Only these keys may decrypt (key id or key ARN; repeatable). Default: any p11kms
    /// key the message names, as the daemon's policies allow.
    #[arg(long = "key-id")]
    key_ids: Vec<String>,
    /// KEY=VALUE pair the message's encryption context must contain (repeatable).
    #[arg(long = "context", short = 'c', value_parser = parse_pair)]
    context: Vec<(String, String)>,
    /// Refuse messages with more encrypted data keys than this.
    #[arg(long, default_value_t = MAX_EDKS)]
    max_edks: usize,
    /// Grant token (repeatable).
    #[arg(long = "grant-token")]
    grant_tokens: Vec<String>,
    /// Replace the output file if it exists.
    #[arg(long)]
    force: bool,
    /// No progress bar.
    #[arg(long, short = 'q')]
    quiet: bool,
}

/// The suites, by their short names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum SuiteArg {
    /// AES_256_GCM_HKDF_SHA512_COMMIT_KEY.
    Committing,
    /// AES_256_GCM_HKDF_SHA512_COMMIT_KEY_ECDSA_P384.
    Signed,
}

fn is_stdio(p: &Path) -> bool {
    p == Path::new("-")
}

fn open_input(path: &Path) -> io::Result<(Box<dyn Read + Send>, Option<u64>)> {
    if is_stdio(path) {
        return Ok((Box::new(io::stdin()), None));
    }
    let f = File::open(path)?;
    let len = f.metadata().ok().filter(|m| m.is_file()).map(|m| m.len());
    Ok((Box::new(f), len))
}

/// The destination: stdout, or a file committed only on success.
enum Output {
    Stdout,
    File(AtomicFile),
}

impl Output {
    fn create(path: &Path, force: bool) -> io::Result<Self> {
        if is_stdio(path) {
            Ok(Self::Stdout)
        } else {
            AtomicFile::create(path, force).map(Self::File)
        }
    }

    /// Streams `write` into the destination, committing the file only if it succeeds.
    /// `buffered` adds a write buffer: for ciphertext; plaintext is written unbuffered,
    /// in frame-sized pieces, so that no buffer of ours keeps a copy.
    fn write_with(
        self,
        buffered: bool,
        write: impl FnOnce(&mut dyn Write) -> Result<(), Box<dyn std::error::Error>>,
    ) -> CliResult {
        let run = |sink: &mut dyn Write| -> CliResult {
            if buffered {
                let mut out = BufWriter::with_capacity(1 << 16, sink);
                write(&mut out)?;
                out.flush()?;
            } else {
                write(sink)?;
                sink.flush()?;
            }
            Ok(())
        };
        match self {
            Self::Stdout => {
                let mut out = PipeWatch::new(io::stdout().lock());
                let r = run(&mut out);
                // The encryptor reports a failed write as text; a closed stdout must
                // still reach `main` as `BrokenPipe`, for a quiet exit.
                if r.is_err() && out.broken() {
                    return Err(io::Error::from(io::ErrorKind::BrokenPipe).into());
                }
                r
            }
            Self::File(mut f) => {
                run(f.file())?;
                f.commit()?;
                Ok(())
            }
        }
    }
}

fn runtime() -> io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
}

pub(crate) fn encrypt_file(conn: &Conn, a: EncryptFileArgs) -> CliResult {
    let (input, len) = open_input(&a.input)?;
    let output = Output::create(&a.output, a.force)?;
    let context: BTreeMap<String, String> = a.context.into_iter().collect();
    let suite = match a.suite {
        SuiteArg::Committing => Suite::Committing,
        SuiteArg::Signed => Suite::CommittingSigned,
    };
    let rt = runtime()?;
    let materials = rt.block_on(async {
        let client = super::client_cmds::client(conn).await?;
        let mut keys = a.key_ids.into_iter();
        let generator = keys.next().ok_or("--key-id is required")?;
        let keyring =
            KmsKeyring::new(client, generator, keys.collect()).with_grant_tokens(a.grant_tokens);
        let m = keyring
            .encryption_materials(EncryptionRequest {
                context: &context,
                suite,
                plaintext_length: len,
            })
            .await?;
        Ok::<_, Box<dyn std::error::Error>>(m)
    })?;
    let mut input = Progress::new(input, len, a.quiet);
    let chunk = encrypt_chunk(a.frame_length);
    output.write_with(true, |out| {
        let mut enc = Encryptor::new(out, materials, a.frame_length)?;
        copy_wiped(&mut input, &mut enc, chunk)?;
        enc.finish()?;
        Ok(())
    })
}

pub(crate) fn decrypt_file(conn: &Conn, a: DecryptFileArgs) -> CliResult {
    let (input, len) = open_input(&a.input)?;
    let output = Output::create(&a.output, a.force)?;
    let options = DecryptOptions {
        max_edks: a.max_edks,
        expected_context: a.context.into_iter().collect(),
        ..DecryptOptions::default()
    };
    // A buffer of several frames: most frames then decrypt straight out of it.
    let input = BufReader::with_capacity(1 << 20, Progress::new(input, len, a.quiet));
    let head = MessageHeader::read(input, &options)?;
    let rt = runtime()?;
    let materials = rt.block_on(async {
        let client = super::client_cmds::client(conn).await?;
        let mut keys = a.key_ids.into_iter();
        let keyring = match keys.next() {
            Some(first) => KmsKeyring::new(client, first, keys.collect()),
            None => KmsKeyring::discovery(client),
        }
        .with_grant_tokens(a.grant_tokens);
        let m = keyring.decryption_materials(head.request()).await?;
        Ok::<_, Box<dyn std::error::Error>>(m)
    })?;
    let chunk = decrypt_chunk(head.header().frame_length);
    let mut dec = head.into_decryptor(materials)?;
    output.write_with(false, |out| {
        copy_wiped(&mut dec, out, chunk)?;
        Ok(())
    })
}

/// Counts bytes read and, on a terminal, redraws a one-line progress bar on stderr.
struct Progress<R> {
    inner: R,
    total: Option<u64>,
    done: u64,
    started: Instant,
    last: Instant,
    show: bool,
}

impl<R: Read> Progress<R> {
    fn new(inner: R, total: Option<u64>, quiet: bool) -> Self {
        let large = total.is_none_or(|t| t >= PROGRESS_FROM);
        let now = Instant::now();
        Self {
            inner,
            total,
            done: 0,
            started: now,
            last: now,
            show: !quiet && large && io::stderr().is_terminal(),
        }
    }
}

impl<R> Progress<R> {
    fn draw(&self) {
        let mib = |b: u64| b as f64 / (1u64 << 20) as f64;
        let secs = self.started.elapsed().as_secs_f64().max(1e-3);
        let rate = mib(self.done) / secs;
        let line = match self.total {
            Some(t) if t > 0 => {
                let frac = self.done as f64 / t as f64;
                let filled = (frac * 30.0) as usize;
                format!(
                    "[{}{}] {:5.1}% {:.1}/{:.1} MiB {:.0} MiB/s",
                    "#".repeat(filled.min(30)),
                    " ".repeat(30 - filled.min(30)),
                    frac * 100.0,
                    mib(self.done),
                    mib(t),
                    rate
                )
            }
            _ => format!("{:.1} MiB {:.0} MiB/s", mib(self.done), rate),
        };
        eprint!("\r{line}");
    }

    /// Draws the last state and ends the line.
    fn done(&mut self) {
        if self.show {
            self.draw();
            eprintln!();
            self.show = false;
        }
    }
}

impl<R> Drop for Progress<R> {
    fn drop(&mut self) {
        // The last state, and end the line, however the command ended.
        self.done();
    }
}

impl<R: Read> Read for Progress<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.done += n as u64;
        if self.show && self.last.elapsed() >= Duration::from_millis(200) {
            self.last = Instant::now();
            self.draw();
        }
        Ok(n)
    }
}
