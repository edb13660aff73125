#!/bin/bash
# Makes tests/data/main-db/site-v9.db: a database written by sitegate as
# main was before packed tail rows (commit d23709d, schema version 9), for
# migration 10's test (tests/test_storage.c). Run with SITEGATE_BIN
# pointing at that commit's bin/ (git archive d23709d, make): the demo site
# (deploy/sitegate.conf, ports moved) fed the last 80 simulated minutes in
# 40 s by sitesim (--speed 121), then stopped with SIGTERM, so the file is
# whole (no WAL). The writer compacts what is over 30 minutes old into
# blocks meanwhile; the rest stays in the tail, the last minutes of it not
# rolled up yet (rollups are written at the latest 10 minutes on, never at
# close), so the test sees blocks, tail rows and pending readings.
set -eu
: "${SITEGATE_BIN:?the bin/ of commit d23709d}"
HERE=$(cd "$(dirname "$0")" && pwd)
TOP=$(cd "$HERE/../../.." && pwd)
BENCH=main-db; . "$TOP/bench/lib.sh" # BIN, T, port, demo_conf, wait_for
demo_conf site
"$BIN/sitegated" -c "$T/site.conf" 2>"$T/gw.log" & GW=$!
wait_for 30 "sitegated answering" gw_up
"$BIN/sitesim" -c "$T/site.conf" --speed 121 --duration 40 --ignore 0 --seed 15
kill -TERM "$GW"; wait "$GW"
cp "$T/site.db" "$HERE/site-v9.db"
sqlite3 "$HERE/site-v9.db" 'PRAGMA user_version; SELECT count(*) FROM tail;
  SELECT count(*), sum(n) FROM block; SELECT count(*) FROM ledger;'
