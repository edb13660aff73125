#!/bin/bash
# Makes tests/data/rx-v2/rx-v2.db: a receiver database written by
# sitegate-rx as main was before the wide environment tables (commit
# 6e012f5, schema version 2: rx_env_minute, rx_env_hour and rx_env_day one
# row per pollutant), for the conversion test in test_rx_migrate.sh. Run
# with SITEGATE_BIN pointing at that commit's bin/ (git archive 6e012f5,
# make): the test site uploads to it over TLS for a few minutes of dust,
# noise and temperature readings, then both stop with SIGTERM, so the file
# is whole (no WAL). With RX_DB=pg the same on PostgreSQL
# (tests/integration/pg.sh), kept as rx-v2-pg.sql (pg_dump, plain SQL).
OUT=$(cd "$(dirname "$0")" && pwd)
. "$OUT/../../integration/lib.sh"
. "$OUT/../../integration/pg.sh"
. "$OUT/../../integration/uplink_lib.sh"
rx_backend
MN=TEST-SITE-01
RX_PORT=$(free_port tcp)
make_pki "$T/pki" "$MN"
"$BIN/sitegate-rx" --listen "127.0.0.1:$RX_PORT" --ca "$T/pki/ca.crt" --cert "$T/pki/server.crt" \
  --key "$T/pki/server.key" --db "$RX_TARGET" >"$T/rx.log" 2>&1 &
RX=$!
PIDS="$PIDS $RX"
wait_for 30 "sitegate-rx listening" grep -q "listening on" "$T/rx.log"
uplink_conf "$T/site.conf" "$MN" "$T/pki"
start_gw "$T/site.conf"
minutes() { [ "$(rx_sql "SELECT COUNT(DISTINCT t) FROM rx_env_minute WHERE pol='LA' AND flag='N'")" -ge "$1" ]; }
# fed N: one dust and one noise reading more, then whether the receiver
# holds N minutes with noise (wait_for calls it every 0.1 s: the readings
# come that often until the minutes are there).
i=0
fed() {
  i=$((i + 1))
  r=$(coap post /r 50 "[{\"bn\":\"dust-01/\",\"n\":\"pm10\",\"v\":$((60 + i % 40)).5},{\"n\":\"temp\",\"v\":-18.5}]")
  case $r in 2.*) ;; *) fail "dust reading: $r" ;; esac
  r=$(coap post /r 50 "[{\"bn\":\"noise-01/\",\"n\":\"la\",\"v\":6$((i % 10)).5}]")
  case $r in 2.*) ;; *) fail "noise reading: $r" ;; esac
  minutes "$1"
}
wait_for 300 "3 minutes of dust and noise stored at the receiver" fed 3
ticket
up_wait 30 "everything acknowledged" 'j["backlog"]["signed"] == 0'
kill -TERM "$GW_PID"; wait "$GW_PID" || true
kill -TERM "$RX"; wait "$RX" || true
if [ "${RX_DB:-sqlite}" = pg ]; then
  "$PG_BIN/pg_dump" --no-owner --no-privileges -h "$PG_DIR" -p "$PG_PORT" -U "$PG_ROLE" "$PG_DB" \
    >"$OUT/rx-v2-pg.sql"
  rx_sql "SELECT MAX(version) FROM rx_schema; SELECT pol, COUNT(*) FROM rx_env_minute GROUP BY pol"
  exit 0
fi
cp "$T/rx.db" "$OUT/rx-v2.db"
sqlite3 "$OUT/rx-v2.db" 'PRAGMA user_version; SELECT pol, COUNT(*) FROM rx_env_minute GROUP BY pol; SELECT COUNT(*) FROM frames;'
