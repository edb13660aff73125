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

demo_conf week
"$BIN/sitegated" -c "$T/week.conf" 2>"$T/gw.log" & GW=$!; PIDS="$PIDS $GW"
wait_for 30 "sitegated answering" gw_up
# A week in SECONDS_ real seconds: simulated time starts 7 days back.
speed=$((604800 / SECONDS_ + 1))
"$BIN/sitesim" -c "$T/week.conf" --speed "$speed" --duration "$SECONDS_" --ignore 0 >"$T/sim.log" 2>&1 || true
wait_for 60 "the queue committed" drained
rows=$(status raw_readings)
kill -TERM "$GW"; wait "$GW" || true
bytes=$(stat -c %s "$T/week.db")
bpr=$(awk -v b="$bytes" -v r="$rows" 'BEGIN { printf "%.1f", (r > 0 ? b / r : 0) }')
echo "a simulated week of the demo site: $rows readings, database $bytes bytes: $bpr bytes a reading (target 8)"
echo "  sitesim: $(tail -1 "$T/sim.log")"
# Where the bytes go, a table or index a line (SQLite's dbstat, when the
# sqlite3 shell has it), and the free pages.
if command -v sqlite3 >/dev/null 2>&1; then
  sqlite3 "$T/week.db" "SELECT printf('  %-22s %10d bytes %6.2f a reading', name, SUM(pgsize), SUM(pgsize) * 1.0 / $rows) FROM dbstat GROUP BY name ORDER BY SUM(pgsize) DESC LIMIT 12" 2>/dev/null || true
  sqlite3 "$T/week.db" "SELECT printf('  %-22s %10d bytes', 'free pages', freelist_count * page_size) FROM pragma_freelist_count, pragma_page_size" 2>/dev/null || true
fi
[ -z "${WEEK_KEEP:-}" ] || cp "$T/week.db" "$WEEK_KEEP"
echo "bench: bytes_per_reading_week=$bpr"
