#!/bin/bash
# The receiver at an authority's scale (issue 16): BENCH_RX_GATEWAYS (1,000)
# simulated gateways over TLS 1.2 (bench/rx_load.c, one certificate each)
# against sitegate-rx on loopback, each sending BENCH_RX_MESSAGES minute
# frames, for one receiver on SQLite, one on PostgreSQL (a real cluster,
# tests/integration/pg.sh) and two on PostgreSQL sharing --listen with
# SO_REUSEPORT. The gateways connect first (handshakes_s), then send; each
# set-up is run twice: with up to BENCH_RX_WINDOW unacknowledged per
# gateway as fast as acknowledgements come (msgs_s: what the receiver can
# take; its p99 is only that queue, N x W messages, over the rate:
# *_queue_p99_ms), and at BENCH_RX_RATE (5,000) messages a second offered
# (the p99 from write to 9014 at that rate: *_p99_ms). Then where a message's
# time goes: the receiver's CPU per message, the commit per batch (from
# /metrics) and, from a run of signed 6021s, what ECDSA verification and
# the chain add. The two PostgreSQL set-ups again with each receiver held
# to BENCH_RX_CAP (0.1) of a core by a CPU cgroup: on two cores the
# uncapped ratio measures the cores (two receivers, the database and the
# load tool share them), the capped one whether a second receiver adds
# throughput against the one database. Then BENCH_RX_IDLE (10,000) idle
# TLS connections and the receiver's peak RSS. Ends with one `bench: rx_...`
# line; never fails the build.
set -u
export SITEGATE_BIN=${SITEGATE_BIN:-$(cd "$(dirname "$0")/.." && pwd)/bin}
TOP=$(cd "$(dirname "$0")/.." && pwd)
. "$TOP/tests/integration/lib.sh"
. "$TOP/tests/integration/pg.sh"
set +eE
trap 'cleanup; pg_stop; uncap' EXIT
N=${BENCH_RX_GATEWAYS:-1000}
M=${BENCH_RX_MESSAGES:-20}
W=${BENCH_RX_WINDOW:-8}
RATE=${BENCH_RX_RATE:-5000}
IDLE=${BENCH_RX_IDLE:-10000}
CAP=${BENCH_RX_CAP:-0.1}
# CPU cgroups for (3'): a writable v1 `cpu` or v2 hierarchy with the cpu
# controller, else none.
CG_ROOT=""
if [ -w /sys/fs/cgroup/cpu/cgroup.procs ]; then
  CG_ROOT=/sys/fs/cgroup/cpu CG_V=1
elif [ -w /sys/fs/cgroup/cgroup.subtree_control ] && grep -qw cpu /sys/fs/cgroup/cgroup.controllers; then
  CG_ROOT=/sys/fs/cgroup CG_V=2
fi
CGS=""
cap() { # cap NAME: moves receiver NAME into a cgroup of its own held to CAP cores
  local g=$CG_ROOT/sitegate-bench-rx-$$-$1 q
  q=$(awk -v c="$CAP" 'BEGIN { printf "%d", c * 100000 }')
  mkdir "$g" || return 1
  CGS="$CGS $g"
  if [ "$CG_V" = 1 ]; then
    echo 100000 >"$g/cpu.cfs_period_us" && echo "$q" >"$g/cpu.cfs_quota_us"
  else
    echo "$q 100000" >"$g/cpu.max"
  fi && echo "${RXP[$1]}" >"$g/cgroup.procs"
}
throttled() { # throttled: periods the capped receivers were held back in, of all
  local g n=0 t=0
  for g in $CGS; do
    n=$((n + $(awk '$1 == "nr_periods" { print $2 }' "$g/cpu.stat")))
    t=$((t + $(awk '$1 == "nr_throttled" { print $2 }' "$g/cpu.stat")))
  done
  echo "$t of $n"
}
uncap() { # the receivers are gone by now; an empty group can be removed
  local g
  for g in $CGS; do rmdir "$g" 2>/dev/null; done
  CGS=""
}
PKI=${BENCH_RX_PKI:-$TOP/build/bench-rx-pki}
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

# ---- certificates: one per gateway (CN = its MN), one shared key, kept
# between runs (making 1,000 takes a while)
mkdir -p "$PKI"
[ -f "$PKI/ca.crt" ] || "$TOP/deploy/pki/make-ca.sh" "$PKI" >/dev/null
[ -f "$PKI/server.crt" ] || "$TOP/deploy/pki/make-server.sh" "$PKI" localhost >/dev/null
[ -f "$PKI/gw.key" ] || openssl ecparam -name prime256v1 -genkey -noout -out "$PKI/gw.key" 2>/dev/null
make_certs() { # make_certs PREFIX COUNT (two at a time: one openssl each)
  seq 0 $(($2 - 1)) | while read -r i; do
    mn=$(printf '%s-%05d' "$1" "$i")
    [ -f "$PKI/gateway-$mn.crt" ] || echo "$mn"
  done | xargs -r -P 2 -I{} openssl req -new -x509 -key "$PKI/gw.key" \
    -subj "/O=sitegate gateway/CN={}" -CA "$PKI/ca.crt" -CAkey "$PKI/ca.key" -days 825 -sha256 \
    -addext "basicConstraints=critical,CA:FALSE" -addext "keyUsage=critical,digitalSignature" \
    -addext "extendedKeyUsage=clientAuth" -out "$PKI/gateway-{}.crt" 2>/dev/null
}
t0=$(date +%s)
make_certs LOAD "$N"
echo "rx: certificates ready in $(($(date +%s) - t0)) s ($PKI)"

RX_PORT=$(free_port tcp)
declare -A RXP
start_rx() { # start_rx NAME DB [extra options]
  local name=$1 db=$2
  shift 2
  MPORT[$name]=$(free_port tcp)
  "$BIN/sitegate-rx" --listen "127.0.0.1:$RX_PORT" --reuseport --metrics "127.0.0.1:${MPORT[$name]}" \
    --max-conn 30000 --idle 3600 --handshake 120 -q \
    --ca "$PKI/ca.crt" --cert "$PKI/server.crt" --key "$PKI/server.key" --db "$db" "$@" \
    >>"$T/rx-$name.log" 2>&1 &
  RXP[$name]=$!
  PIDS="$PIDS ${RXP[$name]}"
  wait_for 60 "receiver $name up" rx_ready "$name"
}
rx_ready() { metric_of "$1" sitegate_rx_db_up >/dev/null; }
declare -A MPORT
metric_of() { # metric_of NAME METRIC: its value (summed over label sets)
  curl -sf "http://127.0.0.1:${MPORT[$1]}/metrics" |
    awk -v m="$2" '$1 == m || index($1, m "{") == 1 { s += $2; n++ } END { if (n) print s; else exit 1 }'
}
stop_rx() {
  kill -TERM "${RXP[$1]}" 2>/dev/null
  wait "${RXP[$1]}" 2>/dev/null
}
cpu_s() { # the receiver's user + system CPU seconds so far
  awk -v hz="$(getconf CLK_TCK)" '{ print ($14 + $15) / hz }' "/proc/$1/stat"
}
field() { sed -n "s/.*[ ]$1=\([0-9.]*\).*/\1/p" <<<"$2" | head -1; }

# run NAME PREFIX SIGNED OFFERED RECEIVERS...: one load run (OFFERED
# messages/s, 0: as fast as acknowledged); prints rx_load's line and sets
# MSGS_S, P99, HS_S (handshakes/s), CPU_US (receiver CPU per message,
# handshakes included), COMMIT_MS and BATCH (messages per committed
# batch, the handshakes' own batches included) from the first receiver.
run() {
  local name=$1 prefix=$2 signed=$3 offered=$4
  shift 4
  local c0=0 r
  for r in "$@"; do c0=$(awk -v a="$c0" -v b="$(cpu_s "${RXP[$r]}")" 'BEGIN { print a + b }'); done
  local b0 s0
  b0=$(metric_of "$1" sitegate_rx_db_batches_total)
  s0=$(metric_of "$1" sitegate_rx_commit_seconds_sum)
  out=$("$BIN/rx_load" --port "$RX_PORT" --pki "$PKI" --prefix "$prefix" --gateways "$N" \
    --messages "$M" --window "$W" --signed "$signed" --rate "$offered" 2>"$T/load-$name.err")
  echo "rx: $name: $out"
  grep -v "handshakes in" "$T/load-$name.err" | head -3
  local c1=0
  for r in "$@"; do c1=$(awk -v a="$c1" -v b="$(cpu_s "${RXP[$r]}")" 'BEGIN { print a + b }'); done
  local acked b1 s1
  acked=$(field acked "$out")
  MSGS_S=$(field msgs_s "$out")
  P99=$(field p99_ms "$out")
  HS_S=$(field handshakes_s "$out")
  b1=$(metric_of "$1" sitegate_rx_db_batches_total)
  s1=$(metric_of "$1" sitegate_rx_commit_seconds_sum)
  CPU_US=$(awk -v a="$c0" -v b="$c1" -v n="${acked:-0}" 'BEGIN { if (n > 0) printf "%.0f", (b - a) * 1e6 / n; else print 0 }')
  COMMIT_MS=$(awk -v a="$s0" -v b="$s1" -v x="$b0" -v y="$b1" 'BEGIN { if (y > x) printf "%.2f", (b - a) * 1000 / (y - x); else print 0 }')
  BATCH=$(awk -v x="$b0" -v y="$b1" -v n="${acked:-0}" -v k="$#" 'BEGIN { if (y > x) printf "%.1f", n / k / (y - x); else print 0 }')
}

# (1) one receiver on SQLite
start_rx sq "$T/rx.db"
run sqlite LOAD 0 0 sq
sq_rate=$MSGS_S sq_qp99=$P99 sq_cpu=$CPU_US sq_commit=$COMMIT_MS sq_batch=$BATCH
run sqlite-rate LOAD 0 "$RATE" sq
sq_p99=$P99
stop_rx sq

# (2) one receiver on PostgreSQL; then signed messages, for ECDSA's share
pg_start
start_rx pg1 "$PG_URI"
run pg1 LOAD 0 0 pg1
pg_rate=$MSGS_S pg_qp99=$P99 pg_cpu=$CPU_US pg_commit=$COMMIT_MS pg_batch=$BATCH hs=$HS_S
run pg1-rate LOAD 0 "$RATE" pg1
pg_p99=$P99 pg_at=$MSGS_S
run pg1-signed LOAD 1 0 pg1
sig_rate=$MSGS_S sig_cpu=$CPU_US
stop_rx pg1

# (3) two receivers on PostgreSQL, one --listen (SO_REUSEPORT); a new
# database so the gateways' QNs are new
pg_sql "CREATE DATABASE rx2" >/dev/null
URI2="postgresql://$PG_ROLE@/rx2?host=$PG_DIR&port=$PG_PORT"
start_rx pgA "$URI2"
start_rx pgB "$URI2"
run pg2 LOAD 0 0 pgA pgB
two_rate=$MSGS_S two_qp99=$P99
run pg2-rate LOAD 0 "$RATE" pgA pgB
two_p99=$P99
stop_rx pgA
stop_rx pgB
ratio=$(awk -v a="$two_rate" -v b="$pg_rate" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print 0 }')

# (3') the same two set-ups with each receiver held to CAP of a core by a
# CPU cgroup (quota per 100 ms period), so that the box's other work (the
# database, the load tool) is not what a second receiver competes with:
# on two cores (3) shows the cores, this shows whether a second receiver
# against the one database adds what the first one takes. Needs a
# writable cgroup file system (v1 `cpu` or v2 with the cpu controller);
# without one the figures are 0.
cap1_rate=0 cap2_rate=0 cap_ratio=0
if [ -n "$CG_ROOT" ]; then
  pg_sql "CREATE DATABASE rx3" >/dev/null
  pg_sql "CREATE DATABASE rx4" >/dev/null
  start_rx c1 "postgresql://$PG_ROLE@/rx3?host=$PG_DIR&port=$PG_PORT"
  if cap c1; then
    run pg1-capped LOAD 0 0 c1
    cap1_rate=$MSGS_S
  fi
  stop_rx c1
  URI4="postgresql://$PG_ROLE@/rx4?host=$PG_DIR&port=$PG_PORT"
  start_rx cA "$URI4"
  start_rx cB "$URI4"
  if cap cA && cap cB; then
    run pg2-capped LOAD 0 0 cA cB
    cap2_rate=$MSGS_S
  fi
  echo "rx: in both capped runs the receivers were held back in $(throttled) 100 ms periods"
  stop_rx cA
  stop_rx cB
  uncap
  cap_ratio=$(awk -v a="$cap2_rate" -v b="$cap1_rate" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print 0 }')
  echo "rx: each receiver held to $CAP of a core: one $cap1_rate, two $cap2_rate messages/s (${cap_ratio}x)"
else
  echo "rx: no writable CPU cgroup here: the capped runs (3') are not made"
fi
ecdsa_us=$(awk -v a="$sig_cpu" -v b="$pg_cpu" 'BEGIN { printf "%.0f", a - b }')

# (4) idle connections: handshakes only, then held; the receiver's peak RSS
idle_rss=0
if [ "$IDLE" -gt 0 ]; then
  start_rx idle "$PG_URI"
  "$BIN/rx_load" --port "$RX_PORT" --pki "$PKI" --prefix LOAD --certs "$N" --gateways "$IDLE" \
    --messages 1 --window 1 --hold 1 >"$T/idle.out" 2>"$T/idle.err" &
  LP=$!
  PIDS="$PIDS $LP"
  held() { grep -q "holding" "$T/idle.err"; }
  wait_for 600 "$IDLE connections held" held
  open=$(metric_of idle sitegate_rx_connections)
  idle_rss=$(awk '/VmHWM/ { printf "%.0f", $2 / 1024 }' "/proc/${RXP[idle]}/status")
  echo "rx: $open connections held, receiver peak RSS ${idle_rss} MB"
  kill "$LP" 2>/dev/null
  stop_rx idle
fi

echo "rx: where a message's time goes (PostgreSQL, one receiver): ${pg_cpu} us of receiver CPU per" \
  "minute frame (TLS, framing, decoding, libpq), ${ecdsa_us} us more per signed record (ECDSA" \
  "verification and the chain); a batch takes ${pg_commit} ms from BEGIN to COMMIT for" \
  "${pg_batch} messages"
check() { awk -v v="$2" -v t="$3" "BEGIN { exit !(v $4 t) }" && echo "  ok    $1" || echo "  MISS  $1"; }
check "two receivers >= 1.6 x one ($ratio)" "$ratio" 1.6 ">="
check "two receivers >= 1.6 x one, each held to $CAP of a core ($cap_ratio)" "$cap_ratio" 1.6 ">="
check "PostgreSQL >= 5000 messages/s ($pg_rate)" "$pg_rate" 5000 ">="
check "PostgreSQL p99 < 100 ms at $RATE messages/s offered ($pg_p99, $pg_at acknowledged/s)" "$pg_p99" 100 "<"
[ "$IDLE" -gt 0 ] && check "$IDLE idle connections < 1024 MB RSS ($idle_rss)" "$idle_rss" 1024 "<"
echo "bench: rx_gateways=$N rx_rate=$RATE rx_handshakes_s=$hs rx_sqlite_msgs_s=$sq_rate" \
  "rx_sqlite_p99_ms=$sq_p99 rx_sqlite_queue_p99_ms=$sq_qp99 rx_pg_msgs_s=$pg_rate" \
  "rx_pg_p99_ms=$pg_p99 rx_pg_queue_p99_ms=$pg_qp99 rx_pg2_msgs_s=$two_rate rx_pg2_p99_ms=$two_p99" \
  "rx_pg2_queue_p99_ms=$two_qp99 rx_pg2_ratio=$ratio rx_cap=$CAP rx_pg1_capped_msgs_s=$cap1_rate" \
  "rx_pg2_capped_msgs_s=$cap2_rate rx_pg2_capped_ratio=$cap_ratio" \
  "rx_pg_signed_msgs_s=$sig_rate rx_cpu_us_per_msg=$pg_cpu rx_ecdsa_chain_us_per_msg=$ecdsa_us" \
  "rx_pg_commit_ms=$pg_commit rx_pg_msgs_per_batch=$pg_batch rx_sqlite_cpu_us_per_msg=$sq_cpu" \
  "rx_sqlite_commit_ms=$sq_commit rx_sqlite_msgs_per_batch=$sq_batch rx_idle_conns=$IDLE rx_idle_rss_mb=$idle_rss"
exit 0
