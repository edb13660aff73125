#!/bin/bash
# The uplink's backlog drain rate: a gateway whose outbox holds N minute
# frames (bench/outbox_fill.c, as after an outage) connects to a local
# sitegate-rx over TLS 1.2 on loopback; the rate is N over the time from the
# connection to an empty backlog, every message stored by the receiver with
# synchronous=FULL and acknowledged with 9014. Prints its figures and ends
# with one `bench: uplink_drain_records_s=... ` line; never fails the build.
set -eu
BENCH=uplink; . "$(dirname "$0")/lib.sh"
N=${BENCH_UPLINK_RECORDS:-40000}
WINDOW=${BENCH_UPLINK_WINDOW:-64}
MN=BENCH-SITE-01
now_ms() { date +%s%3N; }

"$TOP/deploy/pki/make-ca.sh" "$T/pki" >/dev/null
"$TOP/deploy/pki/make-server.sh" "$T/pki" localhost >/dev/null
"$TOP/deploy/pki/make-gateway.sh" "$T/pki" "$MN" >/dev/null
RX=$(port tcp)
PH=$(port tcp)
PC=$(port udp)
cat >"$T/gw.conf" <<CONF
[site]
id = $MN
[storage]
path = $T/gw.db
[coap]
listen = 127.0.0.1
port = $PC
dtls_port = 0
[http]
listen = 127.0.0.1:$PH
[uplink]
host = 127.0.0.1
port = $RX
server_name = localhost
ca = $T/pki/ca.crt
cert = $T/pki/gateway-$MN.crt
key = $T/pki/gateway-$MN.key
intervals = minute hour day
window = $WINDOW
CONF
"$BIN/outbox_fill" "$T/gw.db" "$MN" "$N"
"$BIN/sitegate-rx" --listen "127.0.0.1:$RX" --ca "$T/pki/ca.crt" --cert "$T/pki/server.crt" \
  --key "$T/pki/server.key" --db "$T/rx.db" -q 2>"$T/rx.log" &
RXP=$!
PIDS="$PIDS $RXP"
sleep 0.3
"$BIN/sitegated" -c "$T/gw.conf" 2>"$T/gw.log" &
GW=$!
PIDS="$PIDS $GW"
# Polled cheaply (one curl, one grep, four times a second): the poller must
# not take the CPU the two programs measured need.
up() { curl -sf "http://127.0.0.1:$PH/api/uplink" || echo '{}'; }
t0=""
for i in $(seq 600); do
  up | grep -q '"connected":true' && { t0=$(now_ms); break; }
  sleep 0.05
done
[ -n "$t0" ] || { echo "uplink bench: no connection"; tail -5 "$T/gw.log"; echo "bench: uplink_drain_records_s=0"; exit 0; }
t1=""
for i in $(seq 1200); do
  up | grep -q '"backlog":{"rtd":0,"minute":0,' && { t1=$(now_ms); break; }
  sleep 0.25
done
[ -n "$t1" ] || { echo "uplink bench: the backlog did not drain in 300 s"; echo "bench: uplink_drain_records_s=0"; exit 0; }
cpu() { awk -v hz="$(getconf CLK_TCK)" '{ printf "%.1f", ($14 + $15) / hz }' "/proc/$1/stat"; }
cpu_gw=$(cpu "$GW")
cpu_rx=$(cpu "$RXP")
kill -TERM "$GW"
wait "$GW" || true
stored=$(sqlite3 "$T/rx.db" "SELECT COUNT(*) FROM frames WHERE cn='2051'")
rate=$(awk -v n="$N" -v ms="$((t1 - t0))" 'BEGIN { printf "%d", (ms > 0 ? n * 1000 / ms : 0) }')
echo "uplink: $N minute frames over TLS on loopback, window $WINDOW: drained in $((t1 - t0)) ms," \
  "$rate records/s; the receiver stored $stored; CPU s: sitegated $cpu_gw, sitegate-rx $cpu_rx"
echo "bench: uplink_drain_records_s=$rate"
