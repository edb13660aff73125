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
BIN=${SITEGATE_BIN:-$(cd "$(dirname "$0")/.." && pwd)/bin}
TOP=$(cd "$(dirname "$0")/.." && pwd)
SECONDS_=${WEEK_SECONDS:-60}
T=$(mktemp -d /tmp/sitegate-bench-week.XXXXXX)
PY=/usr/bin/python3 # Debian's, by path: as the tests (tests/integration/lib.sh)
PIDS=""
cleanup() {
  for p in $PIDS; do kill -9 "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$T"
}
trap cleanup EXIT
port() {
  "$PY" -c 'import socket,sys; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM if sys.argv[1]=="udp" else socket.SOCK_STREAM); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' "$1"
}
status() { # status KEY: a number from /api/status's storage object
  curl -sf "http://127.0.0.1:$PH/api/status" | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["storage"][sys.argv[1]])' "$1"
}

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
PIDS=""
bytes=$(stat -c %s "$T/week.db")
bpr=$(awk -v b="$bytes" -v r="$rows" 'BEGIN { printf "%.1f", (r > 0 ? b / r : 0) }')
echo "a simulated week of the demo site: $rows readings, database $bytes bytes: $bpr bytes a reading (target 8)"
echo "  sitesim: $(tail -1 "$T/sim.log")"
echo "bench: bytes_per_reading_week=$bpr"
