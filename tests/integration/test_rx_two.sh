# Several receivers, one truth: two sitegate-rx processes share one real
# PostgreSQL and one --listen (SO_REUSEPORT), a gateway (sitegated) uploads
# to them over TLS, and the receiver that holds its connection is killed
# with kill -9 in the middle of the stream, twice (once each). The gateway
# reconnects to the other, resends what was not acknowledged, and in the
# end every message the gateway made is stored exactly once, the signed
# chain is continuous (nothing pending, broken or refused), and nothing is
# lost: the gateway's outbox has no backlog.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/pg.sh"
REPO=$(cd "$HERE/../.." && pwd)
PKI="$REPO/deploy/pki"
MN=TEST-SITE-01
RX_PORT=$(free_port tcp)

"$PKI/make-ca.sh" "$T/pki" >/dev/null
"$PKI/make-server.sh" "$T/pki" localhost >/dev/null
"$PKI/make-gateway.sh" "$T/pki" "$MN" >/dev/null
pg_start

# start_rx NAME: receiver NAME (its log $T/rx-NAME.log) on the shared port.
declare -A RXP
start_rx() {
  "$BIN/sitegate-rx" --listen "127.0.0.1:$RX_PORT" --reuseport --ca "$T/pki/ca.crt" \
    --cert "$T/pki/server.crt" --key "$T/pki/server.key" --db "$PG_URI" >>"$T/rx-$1.log" 2>&1 &
  RXP[$1]=$!
  PIDS="$PIDS ${RXP[$1]}"
  wait_for 30 "receiver $1 listening" rx_listening "$1"
}
rx_listening() {
  alive "${RXP[$1]}" "sitegate-rx $1"
  grep -qs "listening on 127.0.0.1:$RX_PORT with SO_REUSEPORT" "$T/rx-$1.log"
}
connections() { grep -c "$MN connected from" "$T/rx-$1.log" || true; }
diagnose() {
  echo "--- /api/uplink"
  up || true
  for n in a b; do
    echo "--- receiver $n (last 15 lines)"
    tail -15 "$T/rx-$n.log"
  done
  pg_log_tail
}

up() { curl -sf "$SITECTL_URL/api/uplink"; }
up_is() { [ "$(up | json "$1" 2>/dev/null)" = True ]; }
up_wait() { wait_for "$1" "$2" up_is "$3"; }
TICKET=1000
ticket() {
  TICKET=$((TICKET + 1))
  r=$(coap post /w 50 "{\"scale\":\"wb-01\",\"no\":$TICKET,\"t\":$(now_s),\"plate\":\"黑A1$TICKET\",\"dir\":\"out\",\"gross_kg\":31800,\"tare_kg\":14200,\"net_kg\":17600,\"category\":\"engineering\",\"kind\":\"concrete\",\"dest\":\"recycling\",\"dest_name\":\"Harbin yard\"}")
  expect_code 2.01 "$r" "ticket $TICKET"
}

# holder: the receiver (a or b) holding the gateway's connection, from the
# kernel's table of established sockets.
holder() {
  local pid n
  pid=$(ss -tnpH state established "( sport = :$RX_PORT )" | grep -o 'pid=[0-9]*' | head -1 | cut -d= -f2)
  for n in a b; do
    [ -n "$pid" ] && [ "${RXP[$n]}" = "$pid" ] && HOLDER=$n && return 0
  done
  return 1
}

# kill_holder: kill -9 of the receiver holding the connection, then restart
# it (it joins the port again; the gateway may land on either).
kill_holder() {
  wait_for 30 "the gateway connected to a receiver" holder
  kill -9 "${RXP[$HOLDER]}"
  wait "${RXP[$HOLDER]}" 2>/dev/null || true
  echo "killed receiver $HOLDER (kill -9) with the gateway's connection" >&2
}

start_rx a
start_rx b
{
  printf '[device wb-01]\ntype = scale\n\n[uplink]\nhost = 127.0.0.1\nport = %s\n' "$RX_PORT"
  printf 'server_name = localhost\nca = %s\ncert = %s\nkey = %s\n' "$T/pki/ca.crt" \
    "$T/pki/gateway-$MN.crt" "$T/pki/gateway-$MN.key"
  printf 'rtd_interval_s = 1\nlag_s = 1\novertime_s = 3\nrecount = 2\nbackoff_max_s = 2\nwindow = 8\n'
} | write_conf "$T/site.conf"
start_gw "$T/site.conf"
up_wait 30 "a TLS session to one of the receivers" 'j["connected"]'

# A backlog made while the stream runs, and two kills in the middle of it.
for i in $(seq 40); do ticket; done
up_wait 60 "the upload under way" 'j["counters"]["acked"] >= 10'
kill_holder
for i in $(seq 40); do ticket; done
up_wait 60 "the gateway on the other receiver" 'j["connected"]'
start_rx "$HOLDER" # back on the port, for the next kill
up_wait 60 "more acknowledged after the first kill" 'j["counters"]["acked"] >= 50'
for i in $(seq 40); do ticket; done
kill_holder
for i in $(seq 20); do ticket; done
up_wait 90 "the backlog drained after the kills" \
  'j["connected"] and j["chain_seq"] >= 140 and j["backlog"]["signed"] == 0 and j["backlog"]["rtd"] <= 1'

# Every message the gateway made, acknowledged, stored exactly once.
sqlite3 "$T/sitegate.db" "SELECT qn FROM outbox WHERE acked_ms IS NOT NULL ORDER BY qn" >"$T/gw.qns"
pg_sql "SELECT qn FROM frames WHERE mn='$MN' AND pno=1 ORDER BY qn" >"$T/rx.all"
grep -Fxf "$T/gw.qns" "$T/rx.all" >"$T/rx.qns" || true
diff "$T/gw.qns" "$T/rx.qns" >"$T/diff" ||
  fail "outbox and receivers differ ($(wc -l <"$T/gw.qns") acknowledged): $(head -5 "$T/diff")"
[ "$(pg_sql "SELECT COUNT(*) FROM (SELECT 1 FROM frames GROUP BY mn, qn, pno HAVING COUNT(*) > 1) AS d")" = 0 ] ||
  fail "a packet is stored twice"
# The chain: continuous from Seq 1 to the gateway's last, no gap.
S=$(up | json 'j["chain_seq"]')
[ "$S" -ge 140 ] || fail "chain_seq $S: fewer signed messages than tickets"
[ "$(pg_sql "SELECT COUNT(*), MIN(seq), MAX(seq), COUNT(*) FILTER (WHERE state='chained') FROM ledger WHERE mn='$MN'")" = \
  "$S|1|$S|$S" ] || fail "ledger: $(pg_sql "SELECT state, COUNT(*), MAX(seq) FROM ledger GROUP BY state")"
"$BIN/sitegate-rx" sites --db "$PG_URI" --json >"$T/sites.json"
[ "$(json 'j["ledger_seq"], j["ledger_pending"], j["ledger_broken"], j["refused"]' <"$T/sites.json")" = \
  "($S, 0, 0, 0)" ] || fail "sites: $(cat "$T/sites.json")"
# Both receivers stored part of it.
[ "$(pg_sql "SELECT COUNT(*) FROM frames")" -gt 0 ] || fail "nothing stored"
for n in a b; do
  grep -q "$MN connected from" "$T/rx-$n.log" || fail "receiver $n never had the gateway"
done
stop_gw
for n in a b; do
  if kill -0 "${RXP[$n]}" 2>/dev/null; then
    kill -TERM "${RXP[$n]}"
    rc=0
    wait "${RXP[$n]}" || rc=$?
    [ $rc -eq 0 ] || fail "receiver $n exited $rc after SIGTERM"
  fi
done
exit 0
