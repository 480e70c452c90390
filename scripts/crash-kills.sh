#!/usr/bin/env bash
# Kills the daemon with SIGKILL at random moments under mixed load (CreateKey, Encrypt,
# rotation, aliases, grants, scheduled deletions) and checks after each restart that
# nothing a client was told about is lost (tests/it/crash_points.rs).
#
#   scripts/crash-kills.sh [--release] [ROUNDS] [SEED]   (default 200 rounds, seed 24301)
#
# --release builds the daemon and the test optimised: the checks after each restart
# decrypt every ciphertext acknowledged so far, so a long run spends most of its time
# there, and a debug build makes 200 rounds take hours.
set -euo pipefail
cd "$(dirname "$0")/.."
profile=()
if [[ ${1:-} == --release ]]; then
  profile=(--release)
  shift
fi
bash softhsm/install.sh
export P11KMS_KILL_ROUNDS="${1:-200}"
export P11KMS_KILL_SEED="${2:-24301}"
test=crash_points::random_kills_under_mixed_load_lose_nothing
if command -v cargo-nextest >/dev/null 2>&1; then
  exec cargo nextest run --locked "${profile[@]}" --features failpoints --no-capture --test it "$test"
fi
exec cargo test --locked "${profile[@]}" --features failpoints --test it "$test" -- --nocapture
