#!/bin/bash
# The write budget (issue 15): bytes the gateway writes to disk per reading,
# WAL, checkpoints and the checkpoint at exit included, at a real site's
# pace. For each rate a fresh sitegated with 3,000 series (sitesim load
# sends one quantity, so 3,000 devices stand for 1,000 devices x 3
# quantities) takes a paced load for WRITTEN_SECONDS; the figure is the
# daemon's write_bytes (/proc/PID/io, the block layer's count of bytes
# dirtied) from the moment it is ready to its exit after SIGTERM (read
# from the shell that reaped it), over the readings it stored. This is 30 s
# of ingest on a box that has run before: start-up (schema, device
# ids) is left out, and so are the rows of its 3,000 series, which a site
# makes once in its life (the first readings of a fresh database made them
# in the measured run: 16 of the 80 bytes a reading at 300/s on 7 Dec
# 2026). Every commit's WAL frames, the checkpoints, the -shm file and the
# closing checkpoint are in. Two costs of the long run are not, since 30 s
# holds neither: the rollup and latest-value flush (every 10 minutes) and
# compaction (every 131,072 readings or hour); bench/steady.c measures the
# whole (written_steady_300). The baseline, in the same run, is the same
# load with `batch_ms = 50` (main's window before issue 15). Prints its
# figures and one `bench: written_per_reading_300=...
# written_per_reading_3000=... written_baseline_300=...
# written_baseline_3000=...` line; never fails the build. Other [storage]
# lines can be tried with BENCH_STORAGE_EXTRA="batch_ms = 10000".
set -eu
BENCH=written; . "$(dirname "$0")/lib.sh"
SECONDS_=${WRITTEN_SECONDS:-30}
DEVICES=${WRITTEN_DEVICES:-3000}
wbytes() { awk '/^write_bytes:/ {print $2}' "/proc/$1/io"; }

measure() { # measure RATE [STORAGE-LINE]: prints bytes written per reading
  rate=$1 extra=${2:-${BENCH_STORAGE_EXTRA:-}}
  rm -f "$T"/w.db*
  PC=$(port udp); PH=$(port tcp)
  "$BIN/sitesim" gen-config --devices "$DEVICES" --prefix load- --port "$PC" --db "$T/w.db" \
    --http "127.0.0.1:$PH" >"$T/w.conf"
  if [ -n "$extra" ]; then
    sed -i "/^\[storage\]/a $extra" "$T/w.conf"
  fi
  # Start-up (schema, device ids) is left out: a first start makes the
  # database and stops, so that those pages are not in the WAL the
  # measured run's closing checkpoint writes back. The series rows are
  # made then too, by SQL (sitesim load sends PM10, quantity 1 in
  # protocol.h's list): no warm-up reading, since sitesim load's times
  # start a day back and a tail row left from a warm-up would start a
  # compaction in the measured run at once.
  "$BIN/sitegated" -c "$T/w.conf" 2>"$T/gw0-$rate.log" & gw=$!; PIDS="$PIDS $gw"
  wait_for 30 "sitegated answering" gw_up
  kill -TERM "$gw"; wait "$gw" || true
  sqlite3 "$T/w.db" "INSERT INTO series(device, quantity) SELECT id, 1 FROM device"
  # A shell runs it and, once it has reaped it, reads its own counters:
  # the kernel adds a reaped child's I/O to its parent's, so the figure
  # holds everything up to the daemon's last write at exit (sampling the
  # daemon's own /proc file until it vanished missed its closing
  # checkpoint whenever that fell in the last 20 ms: 65 or 117 bytes a
  # reading for the same build).
  rm -f "$T/io-$rate" "$T/gw.pid"
  sh -c '"$1" -c "$2" 2>"$3" & echo $! >"$4"; wait $!; cat /proc/$$/io >"$5"' sh \
    "$BIN/sitegated" "$T/w.conf" "$T/gw-$rate.log" "$T/gw.pid" "$T/io-$rate" & sh=$!
  PIDS="$PIDS $sh"
  wait_for 10 "sitegated started" test -s "$T/gw.pid"
  gw=$(cat "$T/gw.pid"); PIDS="$PIDS $gw"
  wait_for 30 "sitegated answering" gw_up
  rows0=$(status raw_readings)
  w0=$(wbytes "$gw")
  out=$("$BIN/sitesim" load --gateway "coap://127.0.0.1:$PC/r" --devices "$DEVICES" --records 1 \
    --window 64 --ports 16 --rate "$rate" --duration "$SECONDS_" \
    --requests "$((rate * SECONDS_))" 2>&1 | grep '^load:' | tail -1) || true
  wait_for 60 "the queue committed" drained
  rows=$(($(status raw_readings) - rows0))
  # Everything up to its exit, the checkpoint stor_close runs included.
  kill -TERM "$gw"
  wait "$sh" || true
  w1=$(awk '/^write_bytes:/ {print $2}' "$T/io-$rate")
  echo "  $rate readings/s for ${SECONDS_} s, ${extra:-default [storage]}: $out" >&2
  echo "    stored $rows readings, wrote $((w1 - w0)) bytes" >&2
  awk -v b="$((w1 - w0))" -v r="$rows" 'BEGIN { printf "%.0f", (r > 0 ? b / r : 0) }'
}

echo "written per reading, ${DEVICES} series:"
b300=$(measure 300 "batch_ms = 50")
w300=$(measure 300)
b3000=$(measure 3000 "batch_ms = 50")
w3000=$(measure 3000)
echo "    bytes written per reading: $w300 at 300/s, $w3000 at 3,000/s (targets 60 and 30);" \
  "baseline (batch_ms = 50) $b300 and $b3000"
echo "bench: written_per_reading_300=$w300 written_per_reading_3000=$w3000" \
  "written_baseline_300=$b300 written_baseline_3000=$b3000"
