#!/usr/bin/env bash
# Runs every test: formatting and lints, unit and property tests, and the integration
# tests that start real daemons on fresh SoftHSM2 tokens. Installs SoftHSM2 if missing.
set -euo pipefail
cd "$(dirname "$0")/.."
bash softhsm/install.sh
for tool in fmt clippy; do
  if ! cargo "$tool" --version >/dev/null 2>&1; then
    echo "scripts/test.sh: 'cargo $tool' is missing; install it with: rustup component add $([ "$tool" = fmt ] && echo rustfmt || echo clippy)" >&2
    exit 1
  fi
done
# The interop tests run the official AWS Encryption SDK for Python.
P11KMS_PYTHON="$(bash scripts/python-deps.sh)"
export P11KMS_PYTHON
cargo fmt --all -- --check
# The `failpoints` feature compiles in the crash points that tests/it/crash_points.rs
# stops the daemon at; a release build (`cargo install`, dev.sh) leaves them out.
cargo clippy --locked --all-targets --features failpoints -- -D warnings
if command -v cargo-nextest >/dev/null 2>&1; then
  cargo nextest run --locked --no-fail-fast --features failpoints
else
  cargo test --locked --no-fail-fast --features failpoints
fi
