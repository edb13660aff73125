#!/bin/sh
# Runs every tests/integration/test_*.sh (each starts and stops its own
# servers) and closes with one "N passed, N failed" line. A test of the
# receiver that calls rx_backend (tests/integration/pg.sh) runs twice: on
# SQLite, then with RX_DB=pg on a PostgreSQL of its own.
cd "$(dirname "$0")"
passed=0; failed=0; names=""
run() { # run NAME BACKEND
  start=$(date +%s)
  if out=$(RX_DB=$2 bash "$1" 2>&1); then
    passed=$((passed + 1)); echo "ok   $1${3:-} ($(( $(date +%s) - start ))s)"
  else
    failed=$((failed + 1)); names="$names $1${3:-}"
    # where it failed first (lib.sh's FAIL lines name file:line), then
    # the end of what it printed (the logs' tails come last)
    echo "FAIL $1${3:-}"
    printf '%s\n' "$out" | grep -E '^FAIL |^     in |^     called from ' | sed 's/^/     /'
    printf '%s\n' "$out" | sed 's/^/     /' | tail -40
  fi
}
for t in test_*.sh; do
  run "$t" sqlite
  grep -q '^rx_backend' "$t" && run "$t" pg " (RX_DB=pg)"
done
[ -n "$names" ] && echo "integration: failed:$names"
echo "integration: $passed passed, $failed failed"
[ $failed -eq 0 ]
