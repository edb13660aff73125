#!/bin/bash
# `make demo` opens on a living site: sitesim --history 48h sends the demo
# site's last 48 hours through the gateway's normal CoAP path (POST /r and
# /w, timestamps in the past, within [storage] raw_days) before it goes on
# live, so the noise and dust pages, `sitectl dust` and the limit lines have
# data at the first look. Nothing is written to the database behind the
# gateway's back: what is there came in as readings.
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/lib.sh"
. "$HERE/demo_site.sh"

demo_conf "$T/demo.conf"
start_gw "$T/demo.conf"
t0=$(date +%s)
"$BIN/sitesim" -c "$T/demo.conf" --speed 2880 --history 48h --ignore 0 >"$T/sim.log" 2>&1 &
SIM_PID=$!
PIDS="$PIDS $SIM_PID"
# caught up: the newest dust reading is from the last few minutes
caught_up() {
  alive "$SIM_PID" "sitesim --history"
  "$BIN/sitectl" readings dust-01 pm10 --since -3m --json >"$T/r.json" &&
    json 'len(j["points"]) > 0' <"$T/r.json" | grep -qx True
}
wait_for 300 "sitesim catching up 48 hours of the demo site" caught_up
echo "history: 48 h caught up in $(($(date +%s) - t0)) s"

# the oldest hours are there: dust at -47 h, noise windows through the two days
"$BIN/sitectl" readings dust-01 pm10 --since -48h --until -47h --json |
  json 'len(j["points"]) >= 50' | grep -qx True || fail "no dust readings 47 hours back"
"$BIN/sitectl" noise --since -48h --json >"$T/n.json" || fail "sitectl noise"
# (144 windows of 20 min in 48 h; the first and the one at catch-up may be part-filled)
n=$(json 'len([w for w in j["windows"] if w["device"] == "noise-01" and w["exceeded"] is not None])' <"$T/n.json")
[ "$n" -ge 130 ] || fail "$n complete noise windows in 48 h, want at least 130"
# the first hour is not empty: the dust command and page have hours to show
out=$("$BIN/sitectl" dust --since -6h) || fail "sitectl dust"
printf '%s\n' "$out" | grep -q "该时段内没有扬尘读数" && fail "sitectl dust says there are no readings: $out"
"$BIN/sitectl" dust --since -6h --json | json 'len([w for w in j["windows"] if w["mean"] is not None]) >= 30' |
  grep -qx True || fail "fewer than 30 hourly dust windows in the last 6 h"
# equipment and energy of the past two days, and the weighbridge's tickets
"$BIN/sitectl" energy --since -2d --json | json 'j["total"]["kwh"] > 0' | grep -qx True ||
  fail "no energy in the last two days"
# the weighbridge uploads its memory of the project (months of tickets)
# oldest first, one at a time: the ledger grows from the start
"$BIN/sitectl" waste tickets --json >"$T/t.json" || fail "sitectl waste tickets"
echo "history: $(json 'len(j["tickets"])' <"$T/t.json") tickets uploaded after $(($(date +%s) - t0)) s"
json 'len(j["tickets"]) > 0' <"$T/t.json" | grep -qx True || fail "no ticket uploaded"
# nothing was refused on the way in but the weighbridge's deliberate faults
# (a ticket in a hundred is malformed: bad_pack or invalid_ticket)
curl -sf "$SITECTL_URL/api/status" |
  json '{k: v for k, v in j["ingest"]["rejects"].items() if v and k not in ("invalid_ticket", "bad_pack")}' |
  grep -qx '{}' || fail "readings refused while catching up: $(curl -sf "$SITECTL_URL/api/status" | head -c 600)"
# and then it is live: sitesim keeps running
alive "$SIM_PID" "sitesim after the history"
kill "$SIM_PID"
wait "$SIM_PID" || true
no_sanitizer_report "$T/sim.log" sitesim
stop_gw
echo "demo history: 48 hours of readings, windows and tickets before the first look"
