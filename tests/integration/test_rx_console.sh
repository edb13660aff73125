#!/bin/bash
# The supervision console (sitegate-rx --http) in a real browser: a
# gateway uploads to the receiver (a waste ticket, dust readings), staff
# sign in with an account made by `sitegate-rx passwd`, the site table
# shows the site, its name and its waste per 10,000 m² from the site
# profile (6061), and its ticket, sorting and filtering work, the site's
# page draws its minute PM10, lists its ledger and draws a month of hourly
# PM10 and noise (frames 2061 of last month, sent to the receiver as the
# gateway would after a stop: the gateway itself makes hour frames only for
# hours after its first start), the CSV export holds the site; nothing is readable without signing in. Debian's Chromium, driven
# by playwright-core (tests/browser/console.test.mjs); screenshots to
# $SHOTS (default build/screenshots). Runs on both back ends.
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/lib.sh"
. "$HERE/pg.sh"
. "$HERE/uplink_lib.sh"
rx_backend # RX_DB=sqlite (default) or pg: the receiver's back end
TOP=$(cd "$HERE/../.." && pwd)
MN=TEST-SITE-01
RX_PORT=$(free_port tcp)
CONSOLE_PORT=$(free_port tcp)
CONSOLE="http://127.0.0.1:$CONSOLE_PORT"

browser_ready
[ -f "$(dirname "$BIN")/share/sitegate-rx/web/index.html" ] || fail "no console beside $BIN: run make"

make_pki "$T/pki" "$MN"

# ---- accounts: a short password is refused, a good one is hashed (yescrypt)
echo short | "$BIN/sitegate-rx" passwd --users "$T/users" inspector 2>"$T/passwd.err" &&
  fail "a 5-character password was accepted"
grep -q "at least 10" "$T/passwd.err" || fail "passwd: $(cat "$T/passwd.err")"
echo 'correct horse 42' | "$BIN/sitegate-rx" passwd --users "$T/users" inspector || fail "passwd failed"
echo 'another one 1234' | "$BIN/sitegate-rx" passwd --users "$T/users" auditor || fail "passwd failed"
grep -Eq '^inspector:\$y\$' "$T/users" || fail "not a yescrypt hash: $(cat "$T/users")"
grep -q 'correct horse' "$T/users" && fail "the password is in the file"

# ---- off loopback without accounts: refused at start
"$BIN/sitegate-rx" --listen "127.0.0.1:$RX_PORT" --http "0.0.0.0:$CONSOLE_PORT" --ca "$T/pki/ca.crt" \
  --cert "$T/pki/server.crt" --key "$T/pki/server.key" --db "$T/refused.db" >"$T/refused.log" 2>&1 &&
  fail "a console off loopback started without accounts"
grep -q "needs --users" "$T/refused.log" || fail "no reason: $(cat "$T/refused.log")"

RX_LOG="$T/rx.log"
"$BIN/sitegate-rx" --listen "127.0.0.1:$RX_PORT" --http "127.0.0.1:$CONSOLE_PORT" --users "$T/users" \
  --ca "$T/pki/ca.crt" --cert "$T/pki/server.crt" --key "$T/pki/server.key" --db "$RX_TARGET" \
  >"$RX_LOG" 2>&1 &
RX_PID=$!
PIDS="$PIDS $RX_PID"
rx_up() { alive "$RX_PID" sitegate-rx; grep -q "supervision console on" "$RX_LOG"; }
wait_for 30 "the receiver and its console" rx_up
diagnose() { echo "--- sitegate-rx log"; tail -20 "$RX_LOG"; }

# ---- nothing readable without signing in
for path in /api/sites /api/sites.csv "/api/site?mn=$MN" /api/me; do
  code=$(curl -s -o /dev/null -w '%{http_code}' "$CONSOLE$path")
  [ "$code" = 401 ] || fail "$path answered $code without signing in"
done
code=$(curl -s -o /dev/null -w '%{http_code}' -H 'Content-Type: application/json' \
  -d '{"user":"inspector","password":"wrong password"}' "$CONSOLE/api/login")
[ "$code" = 401 ] || fail "a wrong password answered $code"
code=$(curl -s -o /dev/null -w '%{http_code}' -H 'Content-Type: application/json' \
  -d '{"user":"nobody","password":"correct horse 42"}' "$CONSOLE/api/login")
[ "$code" = 401 ] || fail "an unknown user answered $code"
code=$(curl -s -o /dev/null -w '%{http_code}' --cookie "rxsid=$(printf '%064d' 0)" "$CONSOLE/api/sites")
[ "$code" = 401 ] || fail "a made-up session answered $code"

# ---- last month's hours (2061) of the site, over TLS with its certificate:
# 72 hours from the first of last month (Beijing time), PM10 and LA over and
# under their limits.
cat >"$T/hours.py" <<'PY'
import datetime, sys
from hj212 import frame
mn = sys.argv[1]
bj = datetime.timezone(datetime.timedelta(hours=8))
now = datetime.datetime.now(bj)
first = (now.replace(day=1, hour=0, minute=0, second=0, microsecond=0) - datetime.timedelta(days=1)).replace(day=1)
print(first.strftime("%Y-%m"), file=sys.stderr)
for k in range(72):
    h = first + datetime.timedelta(hours=k)
    qn = (h + datetime.timedelta(hours=1)).strftime("%Y%m%d%H%M%S") + "001"
    cp = (f"DataTime={h.strftime('%Y%m%d%H%M%S')};a34002-Avg={100 + (k % 6) * 25:.1f},a34002-Flag=N;"
          f"LA-Avg={48 + (k % 4) * 6:.1f},LA-Max={60 + (k % 4) * 6:.1f},LA-Flag=N")
    d = f"QN={qn};ST=39;CN=2061;PW=123456;MN={mn};Flag=5;CP=&&{cp}&&".encode()
    sys.stdout.buffer.write(frame(d))
PY
PYTHONPATH="$HERE" "$PY" "$T/hours.py" "$MN" >"$T/hours.txt" 2>"$T/prev_month" || fail "making the hour frames"
PREV_MONTH=$(cat "$T/prev_month")
rx_send "$RX_PORT" "$MN" "$T/hours.txt" "$T/hours.answer"
hours_in() { [ "$(rx_sql "SELECT COUNT(*) FROM rx_env_hour WHERE mn='$MN' AND a34002_avg IS NOT NULL AND la_avg IS NOT NULL")" = 72 ]; }
wait_for 60 "72 hours of last month ($PREV_MONTH) decoded at the receiver" hours_in
rx_send_end

# ---- a site that uploads: a ticket, dust readings (minute frames follow)
uplink_conf "$T/site.conf" "$MN" "$T/pki"
# the site profile (6061): 400 + 400 m², so the ticket's 17.6 t is 220 t
# per 10,000 m² against 250, and a position
sed -i "s/^id = $MN$/id = $MN\narea_cast_in_place_m2 = 400\narea_prefab_m2 = 400\nlatitude = 45.8032\nlongitude = 126.535/" "$T/site.conf"
start_gw "$T/site.conf"
up_wait 30 "a TLS session to the receiver" 'j["connected"]'
for v in 61.5 75.5 88.5; do
  coap post /r 50 "[{\"bn\":\"dust-01/\",\"n\":\"pm10\",\"v\":$v}]" >/dev/null
done
ticket
up_wait 30 "the ticket acknowledged" 'j["backlog"]["signed"] == 0 and j["chain_seq"] >= 1'
minute_in() { [ "$(rx_sql "SELECT COUNT(*) FROM rx_env_minute WHERE mn='$MN' AND a34002_avg IS NOT NULL")" -ge 1 ]; }
# (the minute's frame comes once the minute has ended: time passes here by design)
wait_for 90 "a minute of PM10 decoded at the receiver" minute_in

# ---- signed in: the API and the CSV
curl -sf -c "$T/jar" -H 'Content-Type: application/json' \
  -d '{"user":"inspector","password":"correct horse 42"}' "$CONSOLE/api/login" >/dev/null || fail "sign-in failed"
grep -q "rxsid" "$T/jar" || fail "no session cookie"
curl -sf -b "$T/jar" "$CONSOLE/api/sites" >"$T/sites.json" || fail "/api/sites"
[ "$(json '[(s["mn"], s["waste_kg"], s["recycled_kg"], s["broken"]) for s in j["sites"]]' <"$T/sites.json")" = \
  "[('$MN', 17600, 17600, 0)]" ] || fail "/api/sites: $(cat "$T/sites.json")"
# (numbers compared as numbers: SQLite gives 400.0 where PostgreSQL gives 400)
[ "$(json '[(s["name"], s["area_cast_m2"] == 400, s["area_prefab_m2"] == 400,
  abs(s["latitude"] - 45.8032) < 1e-9, abs(s["longitude"] - 126.535) < 1e-9, s["discharged_kg"]) for s in j["sites"]]' <"$T/sites.json")" = \
  "[('测试工地', True, True, True, True, 17600)]" ] || fail "the site profile in /api/sites: $(cat "$T/sites.json")"
curl -sf -b "$T/jar" "$CONSOLE/api/sites.csv" >"$T/sites.csv" || fail "/api/sites.csv"
head -1 "$T/sites.csv" | grep -q "^mn,subject," || fail "CSV header: $(head -1 "$T/sites.csv")"
grep -q "^$MN," "$T/sites.csv" || fail "CSV rows: $(cat "$T/sites.csv")"
code=$(curl -s -o /dev/null -w '%{http_code}' -b "$T/jar" "$CONSOLE/api/sites?month=2026-13")
[ "$code" = 400 ] || fail "a bad month answered $code"
curl -sf -b "$T/jar" "$CONSOLE/api/site?mn=$MN&month=$PREV_MONTH" >"$T/site.json" || fail "/api/site"
[ "$(json '(j["month"], len(j["hours"]), j["hours"][0]["t"] == j["t0"], j["hours"][5]["a34002_avg"] == 225,
  j["hours"][3]["la_avg"] == 66)' <"$T/site.json")" = "('$PREV_MONTH', 72, True, True, True)" ] ||
  fail "last month's hours in /api/site: $(head -c 600 "$T/site.json")"
code=$(curl -s -o /dev/null -w '%{http_code}' -b "$T/jar" "$CONSOLE/api/site?mn=$MN&month=2026-1")
[ "$code" = 400 ] || fail "a bad month of a site answered $code"
code=$(curl -s -o /dev/null -w '%{http_code}' -b "$T/jar" "$CONSOLE/../../etc/passwd")
[ "$code" = 404 ] || fail "a path outside the pages answered $code"

# ---- in the browser
SHOTS=${SHOTS:-$TOP/build/screenshots}
# timeout: a guard against a hung browser, not a pace (each wait in the
# page has its own deadline); a busy 2-core machine needs minutes.
CONSOLE_URL=$CONSOLE MN=$MN PREV_MONTH=$PREV_MONTH SHOTS="$SHOTS" timeout 900 node "$B/console.test.mjs" ||
  fail "the browser test failed"
echo "console: screenshots in $SHOTS"

stop_gw
kill -TERM "$RX_PID"
rc=0
wait "$RX_PID" || rc=$?
[ $rc -eq 0 ] || fail "sitegate-rx exited $rc after SIGTERM"
grep -q "ERROR: AddressSanitizer\|runtime error" "$RX_LOG" && fail "sanitizer report"
exit 0
