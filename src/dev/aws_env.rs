//! The dev admin's AWS environment: `export NAME=value` lines that point the AWS CLI,
//! boto3 and the AWS SDKs at the dev daemon's AWS JSON listener, with the admin's access
//! key. Written to `aws-env.sh` in the dev directory (mode 0600: it holds the secret)
//! at every start, with the address of that start; the access key is kept across
//! starts.

use std::net::SocketAddr;
use std::path::PathBuf;

use zeroize::Zeroizing;

use super::files::write_private;
use super::{io_err, DevDir, DevError};

/// The region the dev configuration names.
const DEV_REGION: &str = "us-east-1";

/// An access key id and its secret, as the dev admin's environment holds them.
pub struct DevAccessKey {
    /// The access key id.
    pub id: String,
    /// The secret access key (wiped on drop).
    pub secret: Zeroizing<String>,
}

impl std::fmt::Debug for DevAccessKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DevAccessKey")
            .field("id", &self.id)
            .field("secret", &"<redacted>")
            .finish()
    }
}

impl DevDir {
    /// `aws-env.sh`: the admin's AWS environment.
    pub fn aws_env_file(&self) -> PathBuf {
        self.root.join("aws-env.sh")
    }

    /// The access key the environment file holds, if there is one.
    pub fn aws_env_key(&self) -> Option<DevAccessKey> {
        let text = Zeroizing::new(std::fs::read_to_string(self.aws_env_file()).ok()?);
        let value = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(&format!("export {name}=")))
                .map(unquote)
        };
        Some(DevAccessKey {
            id: value("AWS_ACCESS_KEY_ID")?,
            secret: Zeroizing::new(value("AWS_SECRET_ACCESS_KEY")?),
        })
    }

    /// The export lines for the listener at `addr` and the admin's `key`, written to
    /// [`Self::aws_env_file`] and returned for printing.
    pub fn write_aws_env(
        &self,
        addr: SocketAddr,
        key: &DevAccessKey,
    ) -> Result<Zeroizing<String>, DevError> {
        // Each value single-quoted for the shell: a dev directory's path may hold
        // spaces or `$(…)`, which must not run when the file is sourced.
        let lines = Zeroizing::new(format!(
            "export AWS_ENDPOINT_URL_KMS={}\n\
             export AWS_CA_BUNDLE={}\n\
             export AWS_ACCESS_KEY_ID={}\n\
             export AWS_SECRET_ACCESS_KEY={}\n\
             export AWS_REGION={DEV_REGION}\n\
             export AWS_DEFAULT_REGION={DEV_REGION}\n",
            quote(&format!("https://{addr}")),
            quote(&self.root.join("ca.pem").display().to_string()),
            quote(&key.id),
            Zeroizing::new(quote(&key.secret)).as_str(),
        ));
        let path = self.aws_env_file();
        // write_private keeps an existing file's mode: make an older file private
        // before the secret goes into it.
        if path.exists() {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
                .map_err(io_err(&path))?;
        }
        write_private(&path, lines.as_bytes())?;
        Ok(lines)
    }
}

/// `'…'` for the shell, a `'` inside written as `'\''`.
fn quote(v: &str) -> String {
    format!("'{}'", v.replace('\'', r"'\''"))
}

/// The value [`quote`] wrote (or an unquoted one, as older files hold).
fn unquote(v: &str) -> String {
    match v.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')) {
        Some(inner) => inner.replace(r"'\''", "'"),
        None => v.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_values_read_back_and_run_nothing() {
        for v in [
            "plain",
            "with space",
            "$(touch /tmp/x)",
            "it's",
            "a'b'c",
            "",
        ] {
            assert_eq!(unquote(&quote(v)), v);
            let q = quote(v);
            assert!(q.starts_with('\'') && q.ends_with('\''), "{q}");
        }
    }
}
