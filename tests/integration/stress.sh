#!/bin/sh
# make test-stress: the whole integration suite ROUNDS times (3) back to back
# on a machine made slow on purpose, as users' machines are: a python3 that
# takes 0.5 s to start comes first on PATH (a version manager's shim, say),
# and one CPU is kept busy by a spinning process. Every round must pass.
# Closes with one "stress: N passed, N failed" line (rounds).
set -u
cd "$(dirname "$0")"
ROUNDS=${STRESS_ROUNDS:-3}
SHIM=$(mktemp -d /tmp/sitegate-stress.XXXXXX)
cat >"$SHIM/python3" <<'SH'
#!/bin/sh
sleep 0.5 # time under test: the slow interpreter start this run is for
exec /usr/bin/python3 "$@"
SH
chmod +x "$SHIM/python3"
# The spinner stops by itself after 4 hours, and is killed with this script.
timeout 14400 sh -c 'while :; do :; done' &
SPIN=$!
trap 'kill $SPIN 2>/dev/null; rm -rf "$SHIM"' EXIT
trap 'exit 130' INT TERM

passed=0; failed=0
for r in $(seq "$ROUNDS"); do
  start=$(date +%s)
  echo "stress: round $r of $ROUNDS (slow python3 first on PATH, one CPU busy)"
  if PATH="$SHIM:$PATH" ./run.sh; then
    passed=$((passed + 1))
  else
    failed=$((failed + 1))
  fi
  echo "stress: round $r took $(($(date +%s) - start)) s"
done
echo "stress: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
