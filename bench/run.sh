#!/bin/bash
# make bench: ingest figures measured in one run on loopback, each against a
# baseline from the same run (issue 2):
#   (a) coap_bare, a libcoap server on the same libuv integration that only
#       answers 2.04: the ceiling;
#   (b) sitegated ingesting 1-record packs, durable, with 10,000 registered
#       devices; (b') the same from 1,000 distinct client endpoints;
#   (c) sitegated ingesting 10-record packs;
#   latency at a paced 10,000 requests/s; sitegated's peak RSS; database
#   bytes per stored reading;
#   (c) and the paced latency again on a gateway with main's old 50 ms
#   batch window, the baseline for the write budget's longer one;
#   (d) the uplink's drain; (e) bytes written per reading at 300 and 3,000
#   readings/s, against the 50 ms window (bench/written.sh), and at 300/s
#   over whole compaction cycles (bench/steady.c); (f) database
#   bytes per reading for a simulated week of the demo site (bench/week.sh);
#   (g) reads over a month of the demo site (bench/month.sh); (h) the
#   writer's CPU a reading for commits and compaction (bench/compact_cpu.c).
# Prints the figures and ends with one `bench: key=value ...` line. It never
# fails the build on a missed target; it says so.
set -eu
BENCH=run; . "$(dirname "$0")/lib.sh"
REQUESTS=${BENCH_REQUESTS:-200000}

field() { # field NAME LINE: value of NAME=... in a `load:` line
  printf '%s\n' "$2" | tr ' ' '\n' | sed -n "s/^$1=//p"
}
load() { # load URI ARGS...: runs the generator, prints its figures, returns its load: line
  uri=$1; shift
  out=$("$BIN/sitesim" load --gateway "$uri" "$@" 2>&1) || { echo "$out" >&2; return 1; }
  printf '%s\n' "$out" | grep '^load:' | tail -1
}

echo "bench: $(nproc) cores, $(date -u +%Y-%m-%dT%H:%MZ)"

# (a) the ceiling, running beside the gateway (idle while the gateway is
# measured, and the other way round).
PA=$(port udp)
"$BIN/coap_bare" "$PA" & PIDS="$PIDS $!"
sleep 0.3

# (b), (c): the gateway, 10,000 devices, durable storage.
PC=$(port udp); PH=$(port tcp)
"$BIN/sitesim" gen-config --devices 10000 --prefix load- --port "$PC" --db "$T/bench.db" \
  --http "127.0.0.1:$PH" >"$T/bench.conf"
"$BIN/sitegated" -c "$T/bench.conf" 2>"$T/gw.log" & GW=$!; PIDS="$PIDS $GW"
wait_for 30 "sitegated answering" gw_up
G="coap://127.0.0.1:$PC/r"
settle() { # waits until the gateway's queue is empty (at most 30 s, else says so), then 1 s more
  end=$(($(date +%s) + 30))
  until [ "$(status queued)" = 0 ]; do
    [ "$(date +%s)" -lt "$end" ] || { echo "    (the queue was not empty after 30 s: $(status queued) readings)"; break; }
    sleep 0.1
  done
  sleep 1
}
# (a) and (b) alternate three times and the medians are compared: on two
# shared cores one run of either moves by up to 20% with where the
# scheduler puts the load generator. The three (b) runs together store
# REQUESTS readings, so (c) finds the database as it did after one run.
median() { printf '%s\n' "$@" | sort -n | sed -n 2p; }
A=""; B=""
for i in 1 2 3; do
  bare=$(load "coap://127.0.0.1:$PA/r" --devices 1000 --records 1 --window 64 --ports 64 --requests "$((REQUESTS / 3))")
  echo "(a) bare libcoap server:          $bare"
  ing1=$(load "$G" --devices 10000 --records 1 --window 64 --ports 64 --requests "$((REQUESTS / 3))")
  echo "(b) sitegated, 1-record packs:    $ing1"
  A="$A $(field req_s "$bare")"; B="$B $(field req_s "$ing1")"
done
# shellcheck disable=SC2086 # word splitting wanted
bare_req=$(median $A); req1=$(median $B)
echo "    medians: (a) $bare_req, (b) $req1 requests/s"
# The (b) runs stamp their readings from a day back, so from the second run
# on every reading is older than what its series holds: the writer checks
# each for a resend. The slowest commit so far, from /metrics' histogram
# (the bound of the first bucket that holds every commit; inf when not even
# the 1 s bucket does): a schema-10 check once took 24 s a batch.
settle
slowest=$(curl -sf "http://127.0.0.1:$PH/metrics" | awk -F'[="} ]+' '
  /^sitegate_storage_commit_seconds_bucket/ { le[++n] = $2; c[n] = $NF }
  END { for (i = 1; i <= n; i++) if (c[i] == c[n]) { print (le[i] == "+Inf" ? "inf" : le[i] * 1000); exit } }')
echo "    slowest commit of the (b) runs: at most ${slowest} ms"
# Sensors that batch send SenML CBOR (RFC 8428 section 6), the format made
# for them; the same packs as SenML JSON (decoded with jsmn, no tree) are
# json10_records_s, to be within 85% of CBOR (issue 15). These runs
# saturate the writer, so a run's figure depends on the state the run
# before left:
# - one that began on the backlog of the run before found the queue
#   (queue_max readings) full and was answered 5.03 where the other's packs
#   were queued (the JSON run, right after CBOR's 1,000,000 readings and
#   with half its packs, stored 60,169 a second against CBOR's 112,738);
# - the first saturated run finds a short tail; after it the tail holds
#   more than four compaction steps and the writer compacts between
#   commits, and each later run stores about half as much a second
#   (records/s, four runs: 140,071 CBOR, then 66,162 and 64,670 JSON and
#   69,656 CBOR). (Since then the writer compacts between commits only
#   once the tail holds 16 steps, STOR_COMPACT_BURST, and the runs' tail
#   grows towards it.)
# So a first run, not counted, brings the writer to the state the measured
# ones share; each run starts on an empty queue and sends the same packs,
# in the order CBOR, JSON, JSON, CBOR, and each figure is the mean of its
# format's two runs.
settle
warm=$(load "$G" --devices 10000 --records 10 --window 64 --ports 64 --format cbor --requests "$((REQUESTS / 2))")
echo "(c) first run, not counted:       $warm"
ing10_runs=""; ing10j_runs=""
for f in cbor json json cbor; do
  settle
  out=$(load "$G" --devices 10000 --records 10 --window 64 --ports 64 --format "$f" --requests "$((REQUESTS / 2))")
  if [ "$f" = cbor ]; then
    echo "(c) sitegated, 10-record CBOR:    $out"; ing10_runs="$ing10_runs $(field records_s "$out")"
  else
    echo "    the same as SenML JSON:       $out"; ing10j_runs="$ing10j_runs $(field records_s "$out")"
  fi
done
mean() { printf '%s\n' "$@" | awk '{ s += $1; n++ } END { printf "%.0f", n ? s / n : 0 }'; }
# (b') too starts on an empty queue: after the runs above the writer may
# still hold queue_max readings, and every request would be answered 5.03.
settle
ing1k=$(load "$G" --devices 10000 --records 1 --window 64 --ports 1000 --requests "$REQUESTS")
echo "(b') 1,000 client endpoints:      $ing1k"
# Latency at a steady 10,000 requests/s, not in the wake of the runs above:
# it starts once their backlog is committed.
settle
paced=$(load "$G" --devices 10000 --records 1 --window 256 --ports 64 --rate 10000 --requests 100000)
echo "    paced at 10,000 requests/s:   $paced"

# Everything acknowledged is committed before we count and weigh it.
settle
rows=$(curl -sf "http://127.0.0.1:$PH/api/status" | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["storage"]["raw_readings"])')
rss_kb=$(awk '/^VmHWM/ {print $2}' "/proc/$GW/status")
kill -TERM "$GW"; wait "$GW" || true
db_bytes=$(stat -c %s "$T/bench.db")

# The baseline for (c) and the paced latency: the same gateway with main's
# old 50 ms window (batch_ms), in the same run, so that the write budget's
# longer window is seen not to cost saturated throughput or p99 (issue 15).
PC0=$(port udp); PH0=$(port tcp)
"$BIN/sitesim" gen-config --devices 10000 --prefix load- --port "$PC0" --db "$T/base.db" \
  --http "127.0.0.1:$PH0" >"$T/base.conf"
sed -i '/^\[storage\]/a batch_ms = 50' "$T/base.conf"
"$BIN/sitegated" -c "$T/base.conf" 2>"$T/gw0.log" & GW0=$!; PIDS="$PIDS $GW0"
wait_for 30 "the baseline sitegated answering" gw_up "$PH0"
# As for (c): a first run not counted, then one on an empty queue.
PH_MAIN=$PH; PH=$PH0
warm=$(load "coap://127.0.0.1:$PC0/r" --devices 10000 --records 10 --window 64 --ports 64 --format cbor --requests "$((REQUESTS / 2))")
echo "(c) batch_ms = 50, not counted:   $warm"
settle
ing10b=$(load "coap://127.0.0.1:$PC0/r" --devices 10000 --records 10 --window 64 --ports 64 --format cbor --requests "$((REQUESTS / 2))")
echo "(c) again with batch_ms = 50:     $ing10b"
settle; PH=$PH_MAIN
pacedb=$(load "coap://127.0.0.1:$PC0/r" --devices 10000 --records 1 --window 256 --ports 64 --rate 10000 --requests 100000)
echo "    paced, batch_ms = 50:         $pacedb"
rss0_kb=$(awk '/^VmHWM/ {print $2}' "/proc/$GW0/status")
kill -TERM "$GW0"; wait "$GW0" || true
rec10b=$(field records_s "$ing10b"); p99b=$(field p99_ms "$pacedb")

# shellcheck disable=SC2086 # word splitting wanted
rec10=$(mean $ing10_runs)
p99=$(field p99_ms "$paced"); req1k=$(field req_s "$ing1k")
ratio=$(awk -v a="$req1" -v b="$bare_req" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }')
rss_mb=$(awk -v k="$rss_kb" 'BEGIN { printf "%.1f", k / 1024 }')
bpr=$(awk -v b="$db_bytes" -v r="$rows" 'BEGIN { printf "%.1f", (r > 0 ? b / r : 0) }')
echo
echo "stored readings $rows, database $db_bytes bytes; peak RSS ${rss_kb} kB"
check() { awk -v v="$2" -v t="$3" "BEGIN { exit !(v $4 t) }" && echo "  ok    $1" || echo "  MISS  $1"; }
check "ingest1 >= 0.7 x bare ($ratio)" "$ratio" 0.7 ">="
check "ingest10 >= 300000 records/s ($rec10)" "$rec10" 300000 ">="
check "p99 < 2 ms at 10k req/s ($p99)" "$p99" 2 "<"
# One run of either moves by up to 20% on two shared cores.
check "ingest10 >= 0.8 x with batch_ms = 50 ($rec10 against $rec10b)" "$rec10" "$(awk -v c="$rec10b" 'BEGIN { print 0.8 * c }')" ">="
check "p99 <= with batch_ms = 50 + 0.5 ms ($p99 against $p99b)" "$p99" "$(awk -v c="$p99b" 'BEGIN { print c + 0.5 }')" "<="
rss0_mb=$(awk -v k="$rss0_kb" 'BEGIN { printf "%.1f", k / 1024 }')
check "RSS < 32 MB ($rss_mb; with batch_ms = 50, after (c) and the paced run only: $rss0_mb)" "$rss_mb" 32 "<"
check "<= 4 bytes per reading (issue 15; $bpr)" "$bpr" 4 "<="
check "the (b) runs' resends committed in at most 1 s a batch (${slowest} ms)" "${slowest/inf/1e9}" 1000 "<="
# shellcheck disable=SC2086 # word splitting wanted
rec10j=$(mean $ing10j_runs)
check "json10 >= 0.85 x ingest10 ($rec10j)" "$rec10j" "$(awk -v c="$rec10" 'BEGIN { print 0.85 * c }')" ">="
# The decoders alone, one core, no network (bench/senml_decode.c).
dec=$("$BIN/senml_decode" 2>&1) || true
printf '%s\n' "$dec" | grep -v '^senml:' || true
jsmn_dec=$(printf '%s\n' "$dec" | sed -n 's/^senml: json_jsmn_records_s=\([0-9]*\).*/\1/p')
# (d) the uplink's backlog drain over TLS on loopback (bench/uplink.sh prints
# its own figures; its bench: line is folded into ours).
up_out=$(SITEGATE_BIN="$BIN" bash "$(dirname "$0")/uplink.sh" 2>&1) || true
printf '%s\n' "$up_out" | grep -v '^bench:' || true
drain=$(printf '%s\n' "$up_out" | sed -n 's/^bench: uplink_drain_records_s=//p' | tail -1)
# (e) the write budget: bytes written per reading at a site's pace, each
# against main's old 50 ms window in the same run (bench/written.sh, a
# fresh gateway per rate; issue 15).
wr_out=$(SITEGATE_BIN="$BIN" bash "$(dirname "$0")/written.sh" 2>&1) || true
printf '%s\n' "$wr_out" | grep -v '^bench:' || true
wfield() { printf '%s\n' "$wr_out" | grep '^bench:' | tail -1 | tr ' ' '\n' | sed -n "s/^$1=//p"; }
w300=$(wfield written_per_reading_300); w3000=$(wfield written_per_reading_3000)
wb300=$(wfield written_baseline_300); wb3000=$(wfield written_baseline_3000)
check "<= 60 bytes written per reading at 300/s (${w300:-?}; batch_ms = 50: ${wb300:-?})" "${w300:-1e9}" 60 "<="
check "<= 30 bytes written per reading at 3,000/s (${w3000:-?}; batch_ms = 50: ${wb3000:-?})" "${w3000:-1e9}" 30 "<="
check "fewer bytes written than with 50 ms windows at 300/s" "${w300:-1e9}" "${wb300:-0}" "<"
check "fewer bytes written than with 50 ms windows at 3,000/s" "${w3000:-1e9}" "${wb3000:-0}" "<"
# (e') the same pace over whole compaction cycles, with the rollup flush
# and the compaction steps the 30 s above never reach, on a database that
# has run for a while (bench/steady.c: storage alone, no daemon).
st_out=$("$BIN/steady" "$T/steady.db" 3000 1500 4 2>&1) || true
printf '%s\n' "$st_out" | grep -v '^bench:' || true
wst=$(printf '%s\n' "$st_out" | sed -n 's/^bench: written_steady_300=//p' | tail -1)
check "<= 60 bytes written per reading at 300/s over whole compaction cycles (${wst:-?})" "${wst:-1e9}" 60 "<="
# (f) database bytes per reading for a simulated week of the demo site,
# every table included (bench/week.sh; issue 15: at most 8).
wk_out=$(SITEGATE_BIN="$BIN" bash "$(dirname "$0")/week.sh" 2>&1) || true
printf '%s\n' "$wk_out" | grep -v '^bench:' || true
bprw=$(printf '%s\n' "$wk_out" | sed -n 's/^bench: bytes_per_reading_week=//p' | tail -1)
check "<= 8 bytes per reading for a week of the demo site (${bprw:-?})" "${bprw:-1e9}" 8 "<="
# (g) reads over a month of the demo site: sitectl readings --step 1m and
# raw over 30 days, and the month's report (bench/month.sh; issue 15: no
# slower than the row layout, which is measured by running month.sh with
# SITEGATE_BIN at such a build).
mo_out=$(SITEGATE_BIN="$BIN" bash "$(dirname "$0")/month.sh" 2>&1) || true
printf '%s\n' "$mo_out" | grep -v '^bench:' || true
mfield() { printf '%s\n' "$mo_out" | grep '^bench:' | tail -1 | tr ' ' '\n' | sed -n "s/^$1=//p"; }
step1m=$(mfield step1m_30d_ms); raw30=$(mfield raw_30d_ms); repm=$(mfield report_month_ms)
# (h) the writer's CPU a reading, commits and compaction steps apart, for
# 10,000 series whose steps merge into their blocks as after the first (c)
# run, and the block codec alone (bench/compact_cpu.c): CPU time, not
# wall-clock, so that builds compare on a shared box (issue 15's (c) target
# needs the writer under about 3.3 us a reading in all).
cpu_out=$("$BIN/compact_cpu" 2>&1) || true
printf '%s\n' "$cpu_out" | sed 's/^/    /'
echo "bench: bare_req_s=$bare_req ingest1_req_s=$req1 ratio=$ratio ingest10_records_s=$rec10 ingest10_batch50_records_s=$rec10b p99_ms_at_10k=$p99 p99_batch50_ms_at_10k=$p99b rss_mb=$rss_mb rss_batch50_mb=$rss0_mb bytes_per_reading=$bpr late_commit_max_ms=${slowest:-0} ingest1_1000ports_req_s=$req1k ingest10_json_records_s=$rec10j json10_records_s=$rec10j json10_decode_records_s=${jsmn_dec:-0} uplink_drain_records_s=${drain:-0} written_per_reading_300=${w300:-0} written_per_reading_3000=${w3000:-0} written_baseline_300=${wb300:-0} written_baseline_3000=${wb3000:-0} written_steady_300=${wst:-0} bytes_per_reading_week=${bprw:-0} step1m_30d_ms=${step1m:-0} raw_30d_ms=${raw30:-0} report_month_ms=${repm:-0}"
