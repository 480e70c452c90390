#!/usr/bin/env bash
# Fuzzes the parsers of untrusted bytes (docs/testing.md, "Fuzzing"): each target of
# fuzz/ for SECONDS (default 60), one after the other, then prints per target the
# executions, the coverage reached, the corpus size and the crashes. Exits non-zero when
# a target crashed; libFuzzer leaves the input under fuzz/artifacts/<target>/.
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]
#
# It needs cargo-fuzz (`cargo install cargo-fuzz --locked`). With a nightly toolchain it
# builds with AddressSanitizer, whose interceptors also show libFuzzer the operands of
# memcmp: what lets it guess JSON member names, operators and header names. Without
# one, it builds on the default (stable) toolchain with `--sanitizer none`, which
# stable rustc accepts: still coverage-guided, but blind to those comparisons, so the
# dictionaries (fuzz/dict) and seeds matter more. Without cargo-fuzz (the CI machine),
# it replays every committed corpus input through the same checks with `cargo test`
# instead (tests/it/fuzz_corpus.rs), says so, and fails on any failing input.
#
# A run reads the committed seeds (fuzz/corpus/<target>, never written) and grows
# fuzz/work/<target> (not committed); a replay includes fuzz/work when present.
#
# Environment: P11KMS_FUZZ_MODE=replay forces the replay; P11KMS_FUZZ_TOOLCHAIN and
# P11KMS_FUZZ_SANITIZER override the choice above (e.g. nightly and none);
# P11KMS_FUZZ_ARGS adds libFuzzer options. Run it under `nice -n 19` on a shared machine.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=60
if [[ $# -gt 0 && $1 =~ ^[0-9]+$ ]]; then
  seconds=$1
  shift
fi
all_targets=(blob envelope envelope_header policy config aws_json sigv4)
targets=("$@")
if [[ ${#targets[@]} -eq 0 ]]; then
  targets=("${all_targets[@]}")
fi
for t in "${targets[@]}"; do
  if [[ ! -f fuzz/fuzz_targets/$t.rs ]]; then
    echo "scripts/fuzz.sh: no target '$t' (targets: ${all_targets[*]})" >&2
    exit 2
  fi
done

mode=${P11KMS_FUZZ_MODE:-fuzz}
if [[ $mode == fuzz ]] && ! cargo fuzz --version >/dev/null 2>&1; then
  echo "scripts/fuzz.sh: cargo-fuzz is not installed (cargo install cargo-fuzz --locked)." >&2
  mode=replay
fi
if [[ $mode == replay ]]; then
  echo "scripts/fuzz.sh: NOT FUZZING: replaying every committed corpus (and fuzz/work, if any) through the targets' checks instead." >&2
  if [[ -d fuzz/work ]]; then
    export P11KMS_FUZZ_CORPUS="$PWD/fuzz/work"
  fi
  exec cargo test --locked --test it fuzz_corpus:: -- --nocapture
fi

if [[ -z ${P11KMS_FUZZ_TOOLCHAIN+x} ]] && rustup run nightly rustc --version >/dev/null 2>&1; then
  toolchain=nightly
else
  toolchain=${P11KMS_FUZZ_TOOLCHAIN:-}
fi
if [[ $toolchain == nightly ]]; then
  sanitizer=${P11KMS_FUZZ_SANITIZER:-address}
else
  sanitizer=${P11KMS_FUZZ_SANITIZER:-none}
fi
cargo_fuzz=(cargo ${toolchain:+"+$toolchain"} fuzz)
echo "scripts/fuzz.sh: ${cargo_fuzz[*]}, sanitizer $sanitizer, ${seconds}s per target" >&2
for t in "${targets[@]}"; do
  (cd fuzz && "${cargo_fuzz[@]}" build -s "$sanitizer" "$t")
done

summary=()
failed=0
for t in "${targets[@]}"; do
  mkdir -p "fuzz/work/$t" "fuzz/artifacts/$t"
  log="fuzz/work/$t.log"
  dict=()
  if [[ -f fuzz/dict/$t.dict ]]; then
    dict=("-dict=dict/$t.dict")
  fi
  echo "scripts/fuzz.sh: $t for ${seconds}s (log: $log)" >&2
  set +e
  # shellcheck disable=SC2086 # P11KMS_FUZZ_ARGS is a list of options
  (cd fuzz && "${cargo_fuzz[@]}" run -s "$sanitizer" "$t" "work/$t" "corpus/$t" -- \
    -max_total_time="$seconds" -print_final_stats=1 -timeout=10 -rss_limit_mb=2048 \
    "${dict[@]}" ${P11KMS_FUZZ_ARGS:-}) >"$log" 2>&1
  rc=$?
  set -e
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  speed=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  last=$(grep -E '^#[0-9]+' "$log" | tail -1 || true)
  cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last")
  ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")
  corp=$(sed -n 's/.* corp: \([0-9]*\).*/\1/p' <<<"$last")
  crashes=0
  if [[ $rc -ne 0 ]]; then
    crashes=1
    failed=1
    artifact=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -1)
    echo "scripts/fuzz.sh: $t FAILED (exit $rc); input: ${artifact:-none, see $log}" >&2
    grep -m5 -E "panicked at|ERROR: libFuzzer|SUMMARY|^error" "$log" >&2 || tail -5 "$log" >&2
  fi
  summary+=("$(printf '%-16s %12s %8s %6s %7s %7s %7s' "$t" "${execs:-?}" "${speed:-?}" \
    "${cov:-?}" "${ft:-?}" "${corp:-?}" "$crashes")")
done

printf '%-16s %12s %8s %6s %7s %7s %7s\n' target executions exec/s cov ft corpus crashes
printf '%s\n' "${summary[@]}"
exit "$failed"
