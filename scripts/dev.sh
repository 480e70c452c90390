#!/usr/bin/env bash
# Runs p11kms in dev mode: installs SoftHSM2 if missing, installs the p11kms binary
# (cargo install, so `p11kms` is on your PATH for the client commands), and starts the
# daemon with its own SoftHSM2 token, dev CA, certificates and SQLite database under
# ~/.p11kms/dev (or $P11KMS_DEV_DIR). Extra arguments go to `p11kms serve --dev`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash softhsm/install.sh
cargo install --quiet --locked --path . --target-dir target
exec p11kms serve --dev "$@"
