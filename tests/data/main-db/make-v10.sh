#!/bin/bash
# Makes tests/data/main-db/site-v10.db: a database written by sitegate as
# main was before rollup rows left out derivable columns (commit f096d04,
# schema version 10), for migration 11's test (tests/test_storage.c). Run
# with SITEGATE_BIN pointing at that commit's bin/ (git archive f096d04,
# make): the demo site (deploy/sitegate.conf, ports moved) fed the last
# 400 simulated minutes in 60 s by sitesim (--speed 400), then stopped
# with SIGTERM, so the file is whole (no WAL). The writer writes pending
# rollups once STOR_PEND_MAX (16,384) minute and hour buckets are set
# aside (48 series: about 340 minutes in), so the test sees rollup rows of
# one reading and of many, of levels with their energy sums, and the
# readings after them pending in the tail.
set -eu
: "${SITEGATE_BIN:?the bin/ of commit f096d04}"
HERE=$(cd "$(dirname "$0")" && pwd)
TOP=$(cd "$HERE/../../.." && pwd)
BENCH=main-db; . "$TOP/bench/lib.sh" # BIN, T, port, demo_conf, wait_for
demo_conf site
"$BIN/sitegated" -c "$T/site.conf" 2>"$T/gw.log" & GW=$!
wait_for 30 "sitegated answering" gw_up
"$BIN/sitesim" -c "$T/site.conf" --speed 400 --duration 60 --ignore 0 --seed 16
kill -TERM "$GW"; wait "$GW"
cp "$T/site.db" "$HERE/site-v10.db"
sqlite3 "$HERE/site-v10.db" 'PRAGMA user_version; SELECT count(*) FROM tail;
  SELECT count(*), sum(n) FROM block; SELECT count(*) FROM ledger;'
