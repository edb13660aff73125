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
# the demo's uplink: a local sitegate-rx with a PKI from deploy/pki
MN=$(sed -n 's/^id = //p' "$T/demo.conf" | head -1)
RX_PORT=$(free_port tcp)
make_pki "$T/pki" "$MN"
printf '\n[uplink]\nhost = 127.0.0.1\nport = %s\nserver_name = localhost\nca = %s\ncert = %s\nkey = %s\n' \
  "$RX_PORT" "$T/pki/ca.crt" "$T/pki/gateway-$MN.crt" "$T/pki/gateway-$MN.key" >>"$T/demo.conf"
"$BIN/sitegate-rx" --listen "127.0.0.1:$RX_PORT" --ca "$T/pki/ca.crt" --cert "$T/pki/server.crt" \
  --key "$T/pki/server.key" --db "$T/rx.db" >"$T/rx.log" 2>&1 &
RX_PID=$!
PIDS="$PIDS $RX_PID"
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
# newest first, one at a time: the last days' tickets are there at once
# (the first one stored is the newest of its memory) and the memory goes
# back in time from there
"$BIN/sitectl" waste tickets --since -400d --json >"$T/t.json" || fail "sitectl waste tickets"
echo "history: $(json 'len(j["tickets"])' <"$T/t.json") tickets uploaded after $(($(date +%s) - t0)) s"
json 'len(j["tickets"]) > 0' <"$T/t.json" | grep -qx True || fail "no ticket uploaded"
# (in arrival order: ids; a resend of a ticket keeps its id)
json 'min(j["tickets"], key=lambda k: k["id"])["t"] == max(k["t"] for k in j["tickets"] if k["t"] < '"$t0"')' \
  <"$T/t.json" | grep -qx True || fail "the first ticket uploaded is not the newest of the bridge's memory"
json 'all(a["t"] >= b["t"] for a, b in zip(sorted(j["tickets"], key=lambda k: k["id"]), sorted(j["tickets"], key=lambda k: k["id"])[1:]) if b["t"] < '"$t0"')' <"$T/t.json" |
  grep -qx True || fail "the weighbridge's memory did not arrive newest first"

# the history's alarms, raised by the gateway's rules from the late data at
# their own times (sitesim's story: dust-02 at 10:00 yesterday, noise-01
# from 23:10 last night, both over and cleared; dust-01 since 90 min, on)
has_alarm() { # has_alarm RULE SOURCE PYTHON-EXPR-ON-a
  curl -sf "$SITECTL_URL/api/alarms?active=0&since=$((t0 - 49 * 3600))" >"$T/ah.json" &&
    json "any(a['rule'] == '$1' and a['source'] == '$2' and ($3) for a in j['alarms'])" <"$T/ah.json" | grep -qx True
}
wait_for 60 "dust-02's alarm of yesterday, raised and cleared then" has_alarm dust.pm10_long dust-02 \
  "a['raised'] < $t0 - 10 * 3600 and a['cleared'] and a['cleared'] < $t0 - 10 * 3600"
wait_for 60 "noise-01's night alarm, raised and cleared in the past" has_alarm noise.laeq noise-01 \
  "a['raised'] < $t0 - 3 * 3600 and a['cleared'] and a['cleared'] < $t0"
wait_for 60 "dust-01's alarm raised in the last 90 min and still on" has_alarm dust.pm10_long dust-01 \
  "$t0 - 5400 < a['raised'] < $t0 - 300 and not a['cleared']"
# a person acknowledges it (the demo script does the same)
id=$(json "[a['id'] for a in j['alarms'] if a['source'] == 'dust-01' and a['rule'] == 'dust.pm10_long' and not a['cleared']][0]" <"$T/ah.json")
SITECTL_TOKEN=$TOKEN "$BIN/sitectl" alarm ack "$id" --by 值班员 --note 已开启雾炮并洒水 >/dev/null ||
  fail "sitectl alarm ack $id"
"$BIN/sitectl" alarm show "$id" --json | json 'j["acked_by"] == "值班员" and j["level"] == "alarm"' |
  grep -qx True || fail "alarm $id is not acknowledged: $("$BIN/sitectl" alarm show "$id" --json)"

# past uploads: the receiver holds the history's alarms (6021, with their
# past DataTime) and the weighbridge's signed tickets (6011). Minute and
# hour frames (2051/2061) start at the gateway's first start: the uplink
# does not make them for periods before it (UPLINK.md), so none of the
# history's are uploaded.
rx_has() { # rx_has CN PYTHON-EXPR-ON-r: one record of CN matches
  "$BIN/sitegate-rx" export --db "$T/rx.db" --site "$MN" --since $((t0 - 400 * 86400)) --cn "$1" --json \
    >"$T/rx-$1.json" 2>/dev/null &&
    "$PY" -c 'import json,sys
rs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
sys.exit(0 if any(eval(sys.argv[2]) for r in rs) else 1)' "$T/rx-$1.json" "$2"
}
wait_for 120 "the receiver holding a 6021 of yesterday's dust alarm" rx_has 6021 \
  "r.get('time', 0) < $t0 - 10 * 3600"
wait_for 120 "the receiver holding the history's tickets (6011)" rx_has 6011 \
  "r.get('time', 0) < $t0"
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
# no ticket lost: the gateway holds every one the bridge saw stored (2.01),
# and the one in flight at the stop at most
stored=$(sed -n 's/.*tickets sent=[0-9]* stored=\([0-9]*\).*/\1/p' "$T/sim.log")
[ -n "$stored" ] || fail "no ticket summary in sitesim's log: $(tail -3 "$T/sim.log")"
have=$("$BIN/sitectl" waste tickets --since -400d --json | json 'len({(k["scale"], k["no"]) for k in j["tickets"]})')
[ "$have" -ge "$stored" ] && [ "$have" -le $((stored + 1)) ] ||
  fail "the gateway holds $have tickets, the weighbridge saw $stored stored"
stop_gw
echo "demo history: 48 hours of readings, windows, alarms, tickets and uploads before the first look"
