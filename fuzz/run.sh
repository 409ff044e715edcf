#!/usr/bin/env bash
# Builds and runs the fuzz targets (docs/fuzzing.md).
#
#   fuzz/run.sh quick [SECONDS]      every target SECONDS (default 20) each,
#                                    two at a time; what `make test` runs
#   fuzz/run.sh run TARGET SECONDS   one target (or `all`, one after another)
#
# A long run starts from fuzz/corpus/TARGET (what earlier runs found, not
# committed) and the committed seeds in fuzz/seeds/TARGET; new finds go to
# the first. A quick run starts from the seeds alone, as in a fresh clone. A crash (panic, broken invariant, timeout, out of memory)
# writes its input to fuzz/artifacts/TARGET/ and fails the run.
# Built with `cargo fuzz build -s none`: stable Rust has no sanitizers, and the
# code fuzzed has no `unsafe` (dataplane/src/dpdk, the only home of it, is not
# reached). 16 codegen units: the build from scratch takes about 3.5 min on
# two cores instead of more than 5 (the whole control plane is in it), for
# slightly slower runs.
set -euo pipefail
cd "$(dirname "$0")"

TARGETS=(pipeline pipeline_seq wire config_toml keepalived restore ctl_args sync_msg)
BIN=target/x86_64-unknown-linux-gnu/release
CARGO=${CARGO:-cargo}

build() {
  local t0=$SECONDS
  $CARGO fuzz build -s none --codegen-units 16 "$@"
  echo "fuzz: built in $((SECONDS - t0)) s"
}

# run TARGET SECONDS [LOG] [CORPUS]: libFuzzer's output to LOG (or the
# terminal), new inputs to CORPUS (default corpus/TARGET).
run() {
  local t=$1 secs=$2 log=${3:-/dev/stdout} corpus=${4:-corpus/$1}
  mkdir -p "$corpus" "artifacts/$t"
  # -timeout: one input taking 10 s is a hang; -rss_limit_mb: a leak.
  # shellcheck disable=SC2086 # EXTRA_ARGS is a list of flags
  "$BIN/$t" -artifact_prefix="artifacts/$t/" -max_total_time="$secs" \
    -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 ${EXTRA_ARGS:-} \
    "$corpus" "seeds/$t" >"$log" 2>&1
}

# One summary line per target; the log's tail and the crash input on failure.
quick_one() {
  local t=$1 secs=$2 log corpus
  log=$(mktemp "/tmp/dpvs-fuzz-$t.XXXXXX")
  # From the committed seeds alone, into a corpus thrown away after: the
  # same start here as in a fresh clone (CI), whatever earlier runs found.
  corpus=$(mktemp -d "/tmp/dpvs-fuzz-corpus-$t.XXXXXX")
  trap 'rm -rf "$corpus"' RETURN
  if run "$t" "$secs" "$log" "$corpus"; then
    local runs cov
    runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo '?')
    cov=$(grep -o 'cov: [0-9]*' "$log" | tail -n 1 | grep -o '[0-9]*' || echo '?')
    echo "fuzz: $t ok: $runs runs in ${secs} s, coverage $cov, $(find "$corpus" -type f | wc -l) found + $(find "seeds/$t" -type f | wc -l) seeds"
    rm -f "$log"
  else
    echo "fuzz: $t FAILED (log $log):"
    grep -E -A12 'panicked|ERROR: libFuzzer|deadly signal' "$log" | head -n 40
    grep -E 'Test unit written' "$log" || true
    return 1
  fi
}

case ${1:-quick} in
  quick)
    secs=${2:-20}
    # A fixed seed (FUZZ_SEED, 1 by default): a commit's quick run explores
    # the same inputs in the same order wherever it runs, so `make test`
    # passes or fails alike here and in CI. Long runs stay random.
    EXTRA_ARGS="-seed=${FUZZ_SEED:-1}"
    t0=$SECONDS
    build
    # Two at a time on two cores; every target runs even if one fails.
    fail=0
    for ((i = 0; i < ${#TARGETS[@]}; i += 2)); do
      pids=()
      for t in "${TARGETS[@]:i:2}"; do
        quick_one "$t" "$secs" &
        pids+=($!)
      done
      for p in "${pids[@]}"; do wait "$p" || fail=1; done
    done
    echo "fuzz: ${#TARGETS[@]} targets in $((SECONDS - t0)) s"
    exit $fail
    ;;
  run)
    target=${2:?target (or all)}
    secs=${3:?seconds}
    if [[ $target == all ]]; then
      build
      for t in "${TARGETS[@]}"; do run "$t" "$secs"; done
    else
      build "$target"
      run "$target" "$secs"
    fi
    ;;
  *)
    echo "usage: $0 quick [SECONDS] | run TARGET|all SECONDS" >&2
    exit 2
    ;;
esac
