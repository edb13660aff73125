# Dust windows from a scripted hour of 1-min readings fed over CoAP,
# checked against figures computed by hand: the hourly PM10 mean, readings
# in fog left out, and the demo levels (warning 150, alarm 200 ug/m3).
. "$(dirname "$0")/lib.sh"
write_conf "$T/site.conf" </dev/null
start_gw "$T/site.conf"

# Yesterday 09:00-10:00 site time.
T0=$("$PY" -c '
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo
z = ZoneInfo("Asia/Shanghai")
d = datetime.now(z) - timedelta(days=1)
print(int(d.replace(hour=9, minute=0, second=0, microsecond=0).timestamp()))')

# 30 readings at 100 then 30 at 220, RH 70 except 97 %RH (fog) at 09:50 and
# 09:51. Left out, those two leave (30·100 + 28·220)/58 = 157.93 ug/m3 over
# 58 of 60 minutes: a warning (above 150), not an alarm (200).
"$PY" - "$T0" >"$T/dust.json" <<'PY'
import json, sys
t0 = int(sys.argv[1])
recs = [{"bn": "dust-01/", "n": "pm10", "t": t0, "v": 100.0}]
for i in range(60):
    if i:
        recs.append({"n": "pm10", "t": t0 + 60 * i, "v": 100.0 if i < 30 else 220.0})
    recs.append({"n": "rh", "t": t0 + 60 * i, "v": 97.0 if i in (50, 51) else 70.0})
print(json.dumps(recs, separators=(",", ":")))
PY
out=$(coap-client-openssl -B 10 -v 7 -m post -t 110 -f "$T/dust.json" \
  "coap://127.0.0.1:$COAP_PORT/r" 2>&1 || true)
code=$(printf '%s\n' "$out" | grep -o 'ACK c:[0-9]\.[0-9][0-9]' | tail -1 | cut -d: -f2)
[ "$code" = 2.04 ] || fail "dust pack: $out"
wait_for 30 "the dust readings committed (storage queue empty)" committed

"$BIN/sitectl" dust --window 1h --since "$T0" --until $((T0 + 3600)) --device dust-01 --json \
  >"$T/d.json" || fail "sitectl dust --json"
pm10() { json "[(round(w['mean'], 2), w['max'], w['samples'], w['unreliable'], w['complete'], w['level']) for w in j['windows'] if w['quantity'] == 'pm10']" <"$T/d.json"; }
[ "$(pm10)" = "[(157.93, 220.0, 60, 2, True, 'warning')]" ] || fail "hourly pm10: $(pm10)"
[ "$(json "[(w['warn'], w['alarm']) for w in j['windows'] if w['quantity'] == 'pm10']" <"$T/d.json")" = \
  "[(150.0, 200.0)]" ] || fail "demo levels: $(cat "$T/d.json")"
"$BIN/sitectl" dust --window 15m --since "$T0" --until $((T0 + 3600)) --json >"$T/d15.json" ||
  fail "sitectl dust --window 15m"
[ "$(json "[round(w['mean'], 1) for w in j['windows'] if w['quantity'] == 'pm10']" <"$T/d15.json")" = \
  "[100.0, 100.0, 220.0, 220.0]" ] || fail "15-min means: $(cat "$T/d15.json")"
"$BIN/sitectl" dust --window 1h --since "$T0" --until $((T0 + 3600)) >"$T/d.txt" || fail "sitectl dust (table)"
grep -q "预警 (> 150)" "$T/d.txt" || fail "dust table: $(cat "$T/d.txt")"
SITECTL_LANG=en "$BIN/sitectl" dust --window 1h --since "$T0" --until $((T0 + 3600)) |
  grep -q "WARNING (> 150)" || fail "dust table in English"
# the error says the windows as the help does (15m|1h)
rc=0; "$BIN/sitectl" dust --window 7m 2>"$T/err" || rc=$?
[ $rc -eq 1 ] && grep -q "窗口只能是 15m 或 1h" "$T/err" || fail "a window that is not configured: rc=$rc $(cat "$T/err")"
rc=0; SITECTL_LANG=en "$BIN/sitectl" dust --window 7m 2>"$T/err" || rc=$?
[ $rc -eq 1 ] && grep -q "15m or 1h" "$T/err" || fail "a window that is not configured (en): rc=$rc $(cat "$T/err")"
rc=0; "$BIN/sitectl" dust --window soon 2>"$T/err" || rc=$?
[ $rc -eq 2 ] && grep -q "15m 或 1h" "$T/err" || fail "a window that is no window is a usage error: rc=$rc $(cat "$T/err")"
stop_gw
