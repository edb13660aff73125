#!/bin/bash
# Makes tests/data/main-db/site-v6.db: a database written by sitegate as
# main was before the block layout (commit ad54b59, schema version 6), for
# the block layout's migration test (issue 15: "migrate existing databases
# in place, with a test from a database made by today's main"). Run with
# SITEGATE_BIN pointing at that commit's bin/ (git archive ad54b59, make):
# the demo site (deploy/sitegate.conf, ports moved) fed 20 simulated minutes
# by sitesim, then stopped with SIGTERM, so the file is whole (no WAL).
set -eu
: "${SITEGATE_BIN:?the bin/ of commit ad54b59}"
HERE=$(cd "$(dirname "$0")" && pwd)
TOP=$(cd "$HERE/../../.." && pwd)
BENCH=main-db; . "$TOP/bench/lib.sh" # BIN, T, port, demo_conf, wait_for
demo_conf site
"$BIN/sitegated" -c "$T/site.conf" 2>"$T/gw.log" & GW=$!
wait_for 30 "sitegated answering" gw_up
"$BIN/sitesim" -c "$T/site.conf" --speed 121 --duration 10 --ignore 0 --seed 15
kill -TERM "$GW"; wait "$GW"
cp "$T/site.db" "$HERE/site-v6.db"
sqlite3 "$HERE/site-v6.db" 'PRAGMA user_version; SELECT count(*) FROM raw; SELECT count(*) FROM ledger;'
