#!/bin/bash
# make.sh VERSION: makes tests/data/main-db/site-vVERSION.db, a database
# written by sitegate as main was at an older schema version, for the
# migration tests in tests/test_storage.c (issue 15: "migrate existing
# databases in place, with a test from a database made by today's main").
# Run with SITEGATE_BIN pointing at that commit's bin/ (git archive COMMIT,
# make): the demo site (deploy/sitegate.conf, ports moved) fed simulated
# minutes by sitesim, then stopped with SIGTERM, so the file is whole (no
# WAL).
#   6: commit ad54b59, before the block layout; 20 simulated minutes
#      (--speed 121).
#   9: commit d23709d, before packed tail rows; the last 80 simulated
#      minutes in 40 s (--speed 121). The writer compacts what is over 30
#      minutes old into blocks meanwhile; the rest stays in the tail, the
#      last minutes of it not rolled up yet (rollups are written at the
#      latest 10 minutes on, never at close), so the test sees blocks,
#      tail rows and pending readings.
#   10: commit f096d04, before rollup rows left out derivable columns; the
#      last 400 simulated minutes in 60 s (--speed 400). The writer writes
#      pending rollups once STOR_PEND_MAX (16,384) minute and hour buckets
#      are set aside (48 series: about 340 minutes in), so the test sees
#      rollup rows of one reading and of many, of levels with their energy
#      sums, and the readings after them pending in the tail.
set -eu
case "${1:-}" in
  6) commit=ad54b59 speed=121 seconds=10 seed=15 count='SELECT count(*) FROM raw;' ;;
  9) commit=d23709d speed=121 seconds=40 seed=15 count='SELECT count(*) FROM tail; SELECT count(*), sum(n) FROM block;' ;;
  10) commit=f096d04 speed=400 seconds=60 seed=16 count='SELECT count(*) FROM tail; SELECT count(*), sum(n) FROM block;' ;;
  *) echo "usage: make.sh 6|9|10" >&2; exit 2 ;;
esac
: "${SITEGATE_BIN:?the bin/ of commit $commit}"
HERE=$(cd "$(dirname "$0")" && pwd)
TOP=$(cd "$HERE/../../.." && pwd)
BENCH=main-db; . "$TOP/bench/lib.sh" # BIN, T, port, demo_conf, wait_for
demo_conf site
"$BIN/sitegated" -c "$T/site.conf" 2>"$T/gw.log" & GW=$!
wait_for 30 "sitegated answering" gw_up
"$BIN/sitesim" -c "$T/site.conf" --speed "$speed" --duration "$seconds" --ignore 0 --seed "$seed"
kill -TERM "$GW"; wait "$GW"
cp "$T/site.db" "$HERE/site-v$1.db"
sqlite3 "$HERE/site-v$1.db" "PRAGMA user_version; $count SELECT count(*) FROM ledger;"
