#!/usr/bin/env bash
# Soak: mixed load (Encrypt, Decrypt, GenerateDataKey, grants, rotation) on one
# dev daemon for MINUTES (default 30), sampling its resident memory, open descriptors
# and latency; fails on any error, on memory grown 10% or more after the warm-up, or on
# descriptors that drift (benches/throughput/soak.rs).
#
#   scripts/soak.sh [MINUTES] [CALLS_PER_SECOND]     (default 30 minutes, 1500 calls/s)
set -euo pipefail
cd "$(dirname "$0")/.."
bash softhsm/install.sh
export SOAK_SECS=$(( ${1:-30} * 60 ))
export SOAK_RATE="${2:-1500}"
export SOAK_SAMPLE_SECS="${SOAK_SAMPLE_SECS:-30}"
BENCH_ONLY=soak exec cargo bench --locked --bench throughput
