# Several receivers, one truth: two sitegate-rx processes share one real
# PostgreSQL and one --listen (SO_REUSEPORT), a gateway (sitegated) uploads
# to them over TLS, and the receiver that holds its connection is killed
# with kill -9 in the middle of the stream, twice (once each). The gateway
# reconnects to the other, resends what was not acknowledged, and in the
# end every message the gateway made is stored exactly once, the signed
# chain is continuous (nothing pending, broken or refused), and nothing is
# lost: the gateway's outbox has no backlog.
# Then a race: one site's chain of 30 signed records sent at once over two
# connections to two receivers (s_client, another site's certificate):
# every record is acknowledged on both, stored once, chained once.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/pg.sh"
. "$(dirname "$0")/uplink_lib.sh"
MN=TEST-SITE-01
RX_PORT=$(free_port tcp)

RACE=TEST-SITE-02
make_pki "$T/pki" "$MN" "$RACE"
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
uplink_conf "$T/site.conf" "$MN" "$T/pki" "window = 8"
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

# ---- the race: one chain, two receivers at once
cat >"$T/chain.py" <<'PY'
import hashlib, subprocess, sys
from hj212 import der_to_raw, frame
key, mn, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
prev = "0" * 64
for seq in range(1, n + 1):
    canon = f"Seq={seq},Prev={prev},DataTime=20261120{seq:02d}0000,AlarmId={seq},State=on,Level=warn,Rule=dust.pm10,Device=dust-01,PolId=a34002,Value=160,Limit=150,WindowS=3600"
    msg = bytes.fromhex(prev) + canon.encode()
    h = hashlib.sha256(msg).hexdigest().upper()
    der = subprocess.run(["openssl", "dgst", "-sha256", "-sign", key], input=msg,
                         capture_output=True, check=True).stdout
    d = f"QN=202611201200{seq:05d};ST=39;CN=6021;PW=123456;MN={mn};Flag=5;CP=&&{canon},Hash={h},Sig={der_to_raw(der).hex().upper()}&&".encode()
    sys.stdout.buffer.write(frame(d))
    prev = h
PY
PYTHONPATH="$HERE" "$PY" "$T/chain.py" "$T/pki/gateway-$RACE.key" "$RACE" 30 >"$T/chain.txt"
RX_PORT2=$(free_port tcp)
"$BIN/sitegate-rx" --listen "127.0.0.1:$RX_PORT2" --ca "$T/pki/ca.crt" --cert "$T/pki/server.crt" \
  --key "$T/pki/server.key" --db "$PG_URI" >>"$T/rx-c.log" 2>&1 &
RXP[c]=$!
PIDS="$PIDS ${RXP[c]}"
c_listening() { alive "${RXP[c]}" "sitegate-rx c"; grep -qs "listening on" "$T/rx-c.log"; }
wait_for 30 "receiver c listening" c_listening
for n in a b; do kill -0 "${RXP[$n]}" 2>/dev/null || start_rx "$n"; done
# race PORT NAME: sends the chain over one connection and keeps it open
# (its input, fifo NAME, is closed by the test) to collect the answers.
race() {
  mkfifo "$T/$2.in"
  timeout 120 openssl s_client -quiet -no_ign_eof -connect "127.0.0.1:$1" -servername localhost \
    -cert "$T/pki/gateway-$RACE.crt" -key "$T/pki/gateway-$RACE.key" -CAfile "$T/pki/ca.crt" \
    <"$T/$2.in" >"$T/$2.answer" 2>&1 &
  PIDS="$PIDS $!"
}
race "$RX_PORT" r1
race "$RX_PORT2" r2
exec 4>"$T/r1.in" 5>"$T/r2.in"
cat "$T/chain.txt" >&4 &
cat "$T/chain.txt" >&5
wait $! || true
all_acked() { [ "$(grep -c "CN=9014;PW=123456;MN=$RACE" "$T/$1.answer")" -ge 30 ]; }
wait_for 60 "30 acknowledgements on the first connection" all_acked r1
wait_for 60 "30 acknowledgements on the second connection" all_acked r2
exec 4>&- 5>&-
grep -q "CN=6081" "$T/r1.answer" "$T/r2.answer" && fail "a receiver saw a gap in a chain sent in order"
[ "$(pg_sql "SELECT COUNT(*), COUNT(DISTINCT seq), MAX(seq), COUNT(*) FILTER (WHERE state='chained') FROM ledger WHERE mn='$RACE'")" = \
  "30|30|30|30" ] || fail "the raced chain: $(pg_sql "SELECT state, COUNT(*) FROM ledger WHERE mn='$RACE' GROUP BY state")"
[ "$(pg_sql "SELECT COUNT(*) FROM frames WHERE mn='$RACE'")" = 30 ] || fail "the raced frames are not stored once each"
[ "$(pg_sql "SELECT COUNT(*) FROM refusals WHERE mn='$RACE'")" = 0 ] ||
  fail "refused in the race: $(pg_sql "SELECT reason FROM refusals WHERE mn='$RACE' LIMIT 3")"
dups=$(cat "$T"/rx-*.log | grep -c "QN 202611201200[0-9]* is a duplicate" || true)
echo "race: 60 sends, 30 stored, $dups acknowledged as duplicates" >&2
[ "$dups" -eq 30 ] || fail "the race: $dups duplicates, wanted 30 (each record stored by one receiver)"

for n in a b c; do
  if kill -0 "${RXP[$n]}" 2>/dev/null; then
    kill -TERM "${RXP[$n]}"
    rc=0
    wait "${RXP[$n]}" || rc=$?
    [ $rc -eq 0 ] || fail "receiver $n exited $rc after SIGTERM"
  fi
done
exit 0
