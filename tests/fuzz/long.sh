#!/bin/sh
# make fuzz-long: every harness to FUZZ_RUNS executions (10 million by
# default) over its kept corpus in tests/data/fuzz_NAME, which grows with
# what it finds (commit it), then one line per harness with the executions,
# the coverage (libFuzzer's cov: edges, ft: features) and the corpus size.
# Hours on a small machine: not part of .ci/run.
set -eu
BIN=${1:?usage: long.sh FUZZ_BIN_DIR HARNESS...}
shift
RUNS=${FUZZ_RUNS:-10000000}
JOBS_LOG=$(mktemp -d /tmp/fuzz-long.XXXXXX)
trap 'rm -rf "$JOBS_LOG"' EXIT
for f in "$@"; do
  mkdir -p "tests/data/$f"
  echo "fuzz-long: $f, $RUNS executions" >&2
  start=$(date +%s)
  "$BIN/$f" -runs="$RUNS" -print_final_stats=1 -print_pcs=0 "tests/data/$f" \
    >"$JOBS_LOG/$f.log" 2>&1 || { tail -40 "$JOBS_LOG/$f.log" >&2; echo "fuzz-long: $f FAILED" >&2; exit 1; }
  end=$(date +%s)
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$JOBS_LOG/$f.log")
  cov=$(grep -o 'cov: [0-9]*' "$JOBS_LOG/$f.log" | tail -1 | cut -d' ' -f2)
  ft=$(grep -o 'ft: [0-9]*' "$JOBS_LOG/$f.log" | tail -1 | cut -d' ' -f2)
  corpus=$(find "tests/data/$f" -type f | wc -l)
  echo "fuzz-long: $f execs=$execs cov=$cov ft=$ft corpus=$corpus seconds=$((end - start))"
done
