#!/usr/bin/env bash
# Kills the daemon with SIGKILL at random moments under mixed load (CreateKey, Encrypt,
# rotation, aliases, grants, scheduled deletions) and checks after each restart that
# nothing a client was told about is lost (tests/it/crash_points.rs).
#
#   scripts/crash-kills.sh [--release] [--replicas] [ROUNDS] [SEED]
#                                       (default 200 rounds, seed 24301)
#
# --replicas runs two daemons on one PostgreSQL database and one token instead, and
# kills one of them at random each round while the client goes on with the other
# (tests/it/crash_points.rs, random_kills_of_one_of_two_replicas_lose_nothing).
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
test=crash_points::random_kills_under_mixed_load_lose_nothing
if [[ ${1:-} == --replicas ]]; then
  test=crash_points::random_kills_of_one_of_two_replicas_lose_nothing
  shift
  if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && ! command -v initdb >/dev/null 2>&1; then
    bash scripts/apt-install.sh postgresql
  fi
fi
bash softhsm/install.sh
export P11KMS_KILL_ROUNDS="${1:-200}"
export P11KMS_REPLICA_KILL_ROUNDS="${1:-200}"
export P11KMS_KILL_SEED="${2:-24301}"
if command -v cargo-nextest >/dev/null 2>&1; then
  exec cargo nextest run --locked "${profile[@]}" --features failpoints --no-capture --test it "$test"
fi
exec cargo test --locked "${profile[@]}" --features failpoints --test it "$test" -- --nocapture
