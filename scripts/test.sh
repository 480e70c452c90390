#!/usr/bin/env bash
# Runs every test: formatting and lints, unit and property tests, and the integration
# tests that start real daemons on fresh SoftHSM2 tokens; then the core integration tests
# a second time on kryoptic, a second PKCS#11 implementation. Installs SoftHSM2 and
# PostgreSQL (whose store's tests start throw-away clusters) if missing, and builds
# kryoptic once (kryoptic/build.sh, cached in target/kryoptic).
set -euo pipefail
cd "$(dirname "$0")/.."
bash softhsm/install.sh
# The PostgreSQL store's tests start throw-away clusters (initdb, pg_ctl).
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && ! command -v initdb >/dev/null 2>&1; then
  bash scripts/apt-install.sh postgresql
fi
# The first run is on SoftHSM2 whatever the caller's shell says.
unset P11KMS_TEST_TOKEN
P11KMS_KRYOPTIC_MODULE="$(bash kryoptic/build.sh)"
export P11KMS_KRYOPTIC_MODULE
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
# The core integration tests on kryoptic: the same tests, the token chosen by the
# daemon's configuration (tests/it/harness.rs, `test_token`). The modules are named
# here; token::dev_mode_refuses_… is left out, it reads SoftHSM2's token directory.
core="crypto lifecycle restart concurrency aliases grants blob_mutations iv_budget audit_checkpoint shim token_answers asymmetric import"
core_tests="token::key_material_is_a_sensitive_non_extractable_token_object token::the_audit_checkpoint_key_is_a_sensitive_non_extractable_token_object"
if command -v cargo-nextest >/dev/null 2>&1; then
  cargo nextest run --locked --no-fail-fast --features failpoints
  filter="test(/^($(echo "$core" | tr ' ' '|'))::/)"
  for t in $core_tests; do filter="$filter | test(=$t)"; done
  P11KMS_TEST_TOKEN=kryoptic cargo nextest run --locked --no-fail-fast --features failpoints \
    --test it -E "$filter"
else
  cargo test --locked --no-fail-fast --features failpoints
  # libtest filters are substrings: "crypto::" matches the module crypto only.
  # shellcheck disable=SC2046
  P11KMS_TEST_TOKEN=kryoptic cargo test --locked --no-fail-fast --features failpoints \
    --test it -- $(for m in $core; do printf '%s:: ' "$m"; done) $core_tests
fi
