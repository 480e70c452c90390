#!/usr/bin/env bash
# Runs AWS's own XKS proxy test client (aws-samples/aws-kms-xksproxy-test-client, curl
# and bash, at a pinned commit) against the dev daemon's external key store: every
# suite, including the encrypt-only, decrypt-only and no-usage keys (-a).
#
#   scripts/xks-test-client.sh        (starts a dev daemon in a temporary directory)
#
# Needs network access to clone the client once (kept in target/xks-test-client; set
# P11KMS_XKS_CLIENT_REPO to clone from another place, e.g. a local mirror), and
# curl, jq, xxd and uuidgen (uuid-runtime). Not part of .ci/run, which must not depend
# on GitHub; tests/it/xks.rs covers the same ground with curl in CI.
set -euo pipefail
cd "$(dirname "$0")/.."
commit=5982a4b0fb78536496c13088d7da43e1f09442a5
client=target/xks-test-client
if [[ ! -d $client/.git ]]; then
  git clone -q "${P11KMS_XKS_CLIENT_REPO:-https://github.com/aws-samples/aws-kms-xksproxy-test-client}" "$client"
fi
git -C "$client" checkout -q "$commit"
command -v uuidgen >/dev/null || bash scripts/apt-install.sh uuid-runtime
cargo build -q --bin p11kms
export P11KMS_DEV_DIR
P11KMS_DEV_DIR=$(mktemp -d)/dev
out=$(mktemp)
./target/debug/p11kms serve --dev >"$out" 2>"$out.err" &
daemon=$!
trap 'kill $daemon 2>/dev/null; wait $daemon 2>/dev/null; rm -rf "$(dirname "$P11KMS_DEV_DIR")" "$out" "$out.err"' EXIT
for _ in $(seq 1 100); do
  [[ -f $P11KMS_DEV_DIR/xks-env.sh ]] && grep -q "listening on" "$out" && break
  sleep 0.2
done
# shellcheck disable=SC1091 # written by the daemon at start
. "$P11KMS_DEV_DIR/xks-env.sh"
export ANSI_ESCAPE=0
cd "$client"
./test-xks-proxy -a
