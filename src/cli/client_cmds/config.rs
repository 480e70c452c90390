//! `p11kms config …`: encrypted values for configuration files, and rendering them.

use std::path::{Path, PathBuf};

use p11kms::client::config::{encrypt_value, render, Format};
use p11kms::client::KmsClient;

use super::CliResult;
use crate::cli::io::{print_line, read_input, write_output, write_private_atomically};
use crate::cli::ConfigCmd;

pub(super) async fn run(c: &mut KmsClient, cmd: ConfigCmd) -> CliResult {
    match cmd {
        ConfigCmd::EncryptValue {
            key_id,
            context,
            input,
        } => {
            let mut value = read_input(&input)?;
            // A value typed or echoed into stdin ends with a newline that is not part of it.
            if value.last() == Some(&b'\n') {
                value.pop();
            }
            let ctx = context.into_iter().collect();
            let p = encrypt_value(c, &key_id, &value, &ctx).await?;
            print_line(&p)?;
            Ok(())
        }
        ConfigCmd::Render { file, out, force } => render_file(c, &file, out, force).await,
    }
}

async fn render_file(
    c: &mut KmsClient,
    file: &Path,
    out: Option<PathBuf>,
    force: bool,
) -> CliResult {
    let text = std::fs::read_to_string(file)?;
    let rendered = render(c, &text, Format::from_path(file)).await?;
    match out {
        None => write_output(Path::new("-"), rendered.as_bytes())?,
        Some(path) => write_private_atomically(&path, rendered.as_bytes(), force)?,
    }
    Ok(())
}
