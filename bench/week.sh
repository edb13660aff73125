#!/bin/bash
# Database bytes per reading for a simulated week of the demo site (issue
# 15: at most 8, rollups and every table included): sitegated with
# deploy/sitegate.conf (its ports, database and controllers moved to free
# ones, a token set), fed one simulated week by sitesim at WEEK_SPEED times
# real time, then stopped with SIGTERM (the close checkpoints the WAL into
# the file). The figure is the file's size over the raw readings stored.
# Prints its figures and one `bench: bytes_per_reading_week=...` line;
# never fails the build.
set -eu
BENCH=week; . "$(dirname "$0")/lib.sh"
SECONDS_=${WEEK_SECONDS:-60}

PC=$(port udp); PD=$(port udp); PH=$(port tcp)
sed -e "s|^path = .*|path = $T/week.db|" -e "s|^# token = .*|token = bench-$$|" \
  -e "s|^listen = 127.0.0.1:8080|listen = 127.0.0.1:$PH|" \
  -e "s|^listen = 0.0.0.0|listen = 127.0.0.1|" -e "s|^port = 5683|port = $PC|" \
  -e "s|^dtls_port = 5684|dtls_port = $PD|" "$TOP/deploy/sitegate.conf" >"$T/week.conf"
for n in 1 2 3 4; do # the units' controllers, served by sitesim
  sed -i "s|127.0.0.1:570$n\$|127.0.0.1:$(port udp)|" "$T/week.conf"
done
"$BIN/sitegated" -c "$T/week.conf" 2>"$T/gw.log" & GW=$!; PIDS="$PIDS $GW"
for _ in $(seq 200); do curl -sf "http://127.0.0.1:$PH/api/status" >/dev/null && break; sleep 0.05; done
# A week in SECONDS_ real seconds: simulated time starts 7 days back.
speed=$((604800 / SECONDS_ + 1))
"$BIN/sitesim" -c "$T/week.conf" --speed "$speed" --duration "$SECONDS_" --ignore 0 >"$T/sim.log" 2>&1 || true
for _ in $(seq 100); do [ "$(status queued)" = 0 ] && break; sleep 0.1; done
rows=$(status raw_readings)
kill -TERM "$GW"; wait "$GW" || true
bytes=$(stat -c %s "$T/week.db")
bpr=$(awk -v b="$bytes" -v r="$rows" 'BEGIN { printf "%.1f", (r > 0 ? b / r : 0) }')
echo "a simulated week of the demo site: $rows readings, database $bytes bytes: $bpr bytes a reading (target 8)"
echo "  sitesim: $(tail -1 "$T/sim.log")"
echo "bench: bytes_per_reading_week=$bpr"
