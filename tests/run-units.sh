#!/bin/sh
# Runs each cmocka test program given on the command line and closes with
# one "N passed, N failed" line over all of them. Exit 1 if any failed.
# UNIT_RUNNER, when set, runs each (make test-arm64: qemu-aarch64).
passed=0; failed=0; broken=""
for t in "$@"; do
  out=$($UNIT_RUNNER "$t" 2>&1); rc=$?
  printf '%s\n' "$out"
  p=$(printf '%s\n' "$out" | sed -n 's/^\[  PASSED  \] \([0-9]*\) test.*/\1/p' | tail -1)
  f=$(printf '%s\n' "$out" | sed -n 's/^\[  FAILED  \] \([0-9]*\) test.*/\1/p' | tail -1)
  passed=$((passed + ${p:-0})); failed=$((failed + ${f:-0}))
  if [ $rc -ne 0 ] && [ -z "$f" ]; then failed=$((failed + 1)); broken="$broken $t"; fi
done
[ -n "$broken" ] && echo "units: crashed or failed to start:$broken"
echo "units: $passed passed, $failed failed"
[ $failed -eq 0 ]
