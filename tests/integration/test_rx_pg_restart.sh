# The receiver rides out a PostgreSQL restart: a gateway (sitegated)
# uploads to one sitegate-rx on a real PostgreSQL, which is restarted
# (pg_ctl stop -m fast, start) in the middle of the stream. The receiver
# does not crash, holds its acknowledgements while the database is away,
# reconnects, and in the end every message the gateway made is stored
# exactly once, the signed chain is continuous and the outbox is empty.
# Then a receiver started while PostgreSQL is down starts all the same,
# says so (log, /metrics), acknowledges nothing, and catches up once the
# database is back.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/pg.sh"
. "$(dirname "$0")/uplink_lib.sh"
MN=TEST-SITE-01
RX_PORT=$(free_port tcp)
METRICS_PORT=$(free_port tcp)

make_pki "$T/pki" "$MN"
pg_start

# start_rx NAME: receiver NAME (its log $T/rx-NAME.log).
declare -A RXP
start_rx() {
  "$BIN/sitegate-rx" --listen "127.0.0.1:$RX_PORT" --reuseport --metrics "127.0.0.1:$METRICS_PORT" \
    --ca "$T/pki/ca.crt" \
    --cert "$T/pki/server.crt" --key "$T/pki/server.key" --db "$PG_URI" >>"$T/rx-$1.log" 2>&1 &
  RXP[$1]=$!
  PIDS="$PIDS ${RXP[$1]}"
  wait_for 30 "receiver $1 listening" rx_listening "$1"
}
rx_listening() {
  alive "${RXP[$1]}" "sitegate-rx $1"
  grep -qs "listening on 127.0.0.1:$RX_PORT with SO_REUSEPORT" "$T/rx-$1.log"
}
diagnose() {
  echo "--- /api/uplink"
  up || true
  for n in a b; do
    echo "--- receiver $n (last 15 lines)"
    tail -15 "$T/rx-$n.log" 2>/dev/null || true
  done
  pg_log_tail
}


start_rx a
uplink_conf "$T/site.conf" "$MN" "$T/pki" "window = 8"
start_gw "$T/site.conf"
up_wait 30 "a TLS session to the receiver" 'j["connected"]'

for i in $(seq 30); do ticket; done
up_wait 60 "the upload under way" 'j["counters"]["acked"] >= 10'
# The database goes away with messages in flight, and tickets keep coming.
as_pg "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -m fast -s stop || fail "pg_ctl stop failed"
for i in $(seq 20); do ticket; done
lost() { alive "${RXP[a]}" "sitegate-rx"; grep -q "database connection lost" "$T/rx-a.log"; }
wait_for 30 "the receiver noticing the database is gone" lost
acked=$(up | json 'j["counters"]["acked"]')
pg_ctl_start
for i in $(seq 20); do ticket; done
back() { alive "${RXP[a]}" "sitegate-rx"; grep -q "database connection back" "$T/rx-a.log"; }
wait_for 60 "the receiver reconnected to the database" back
up_wait 90 "the backlog drained after the restart" \
  "j['connected'] and j['backlog']['signed'] == 0 and j['backlog']['rtd'] <= 1 and j['counters']['acked'] > $acked and j['chain_seq'] >= 70"

sqlite3 "$T/sitegate.db" "SELECT qn FROM outbox WHERE acked_ms IS NOT NULL ORDER BY qn" >"$T/gw.qns"
pg_sql "SELECT qn FROM frames WHERE mn='$MN' AND pno=1 ORDER BY qn" >"$T/rx.all"
grep -Fxf "$T/gw.qns" "$T/rx.all" >"$T/rx.qns" || true
diff "$T/gw.qns" "$T/rx.qns" >"$T/diff" ||
  fail "outbox and receiver differ ($(wc -l <"$T/gw.qns") acknowledged): $(head -5 "$T/diff")"
[ "$(pg_sql "SELECT COUNT(*) FROM (SELECT 1 FROM frames GROUP BY mn, qn, pno HAVING COUNT(*) > 1) AS d")" = 0 ] ||
  fail "a packet is stored twice"
S=$(up | json 'j["chain_seq"]')
[ "$S" -ge 70 ] || fail "chain_seq $S: fewer signed messages than tickets"
"$BIN/sitegate-rx" sites --db "$PG_URI" --json >"$T/sites.json"
[ "$(json 'j["ledger_seq"], j["ledger_pending"], j["ledger_broken"], j["refused"]' <"$T/sites.json")" = \
  "($S, 0, 0, 0)" ] || fail "sites: $(cat "$T/sites.json")"
curl -sf "http://127.0.0.1:$METRICS_PORT/metrics" >"$T/metrics.txt" || fail "no /metrics"
grep -q '^sitegate_rx_db_up 1$' "$T/metrics.txt" || fail "db_up: $(cat "$T/metrics.txt")"
grep -Eq '^sitegate_rx_db_reconnects_total [1-9]' "$T/metrics.txt" ||
  fail "the reconnection is not counted: $(cat "$T/metrics.txt")"

# ---- a receiver started while the database is down
kill -TERM "${RXP[a]}"
rc=0
wait "${RXP[a]}" || rc=$?
[ $rc -eq 0 ] || fail "the receiver exited $rc after SIGTERM"
up_wait 30 "the gateway noticing the receiver stopped" 'not j["connected"]'
as_pg "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -m fast -s stop || fail "pg_ctl stop failed"
start_rx b
grep -q "unreachable .*starting anyway" "$T/rx-b.log" || fail "the receiver did not say the database is away"
db_down() { curl -sf "http://127.0.0.1:$METRICS_PORT/metrics" | grep -q '^sitegate_rx_db_up 0$'; }
wait_for 30 "/metrics saying the database is down" db_down
up_wait 30 "a TLS session to the receiver without its database" 'j["connected"]'
acked=$(up | json 'j["counters"]["acked"]')
sent=$(up | json 'j["counters"]["sent"]')
resent=$(up | json 'j["counters"]["resent"]')
for i in $(seq 10); do ticket; done
# (window = 8: eight go out, and are sent again for want of an acknowledgement)
up_wait 30 "the tickets sent to the receiver without its database, then sent again" \
  "j['counters']['sent'] >= $sent + 8 and j['counters']['resent'] > $resent"
[ "$(up | json 'j["counters"]["acked"]')" = "$acked" ] || fail "acknowledged without a database: $(up)"
pg_ctl_start
up_wait 90 "the backlog drained once the database is back" \
  "j['connected'] and j['backlog']['signed'] == 0 and j['counters']['acked'] >= $acked + 10"
S=$(up | json 'j["chain_seq"]')
"$BIN/sitegate-rx" sites --db "$PG_URI" --json >"$T/sites.json"
[ "$(json 'j["ledger_seq"], j["ledger_pending"], j["ledger_broken"], j["refused"]' <"$T/sites.json")" = \
  "($S, 0, 0, 0)" ] || fail "sites after starting without the database: $(cat "$T/sites.json")"
[ "$(pg_sql "SELECT COUNT(*) FROM rx_waste w JOIN ledger l USING (mn, seq) WHERE l.state='chained'")" = \
  "$(pg_sql "SELECT COUNT(*) FROM ledger WHERE cn='6011'")" ] || fail "tickets not all decoded"
curl -sf "http://127.0.0.1:$METRICS_PORT/metrics" | grep -q '^sitegate_rx_db_up 1$' || fail "db_up after"
stop_gw
kill -TERM "${RXP[b]}"
rc=0
wait "${RXP[b]}" || rc=$?
[ $rc -eq 0 ] || fail "the receiver exited $rc after SIGTERM"
exit 0
