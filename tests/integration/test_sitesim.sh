# sitesim against the real gateway: a simulated site fills every device's
# quantities with believable values, the load generator's packs are all
# acknowledged and stored, and with a machinery register (--machines) a
# machine terminal reports and a gate reader brings the machines in.
. "$(dirname "$0")/lib.sh"
write_conf "$T/site.conf" <<'CONF'

[device weather-01]
type = weather
insecure = yes

[device em-site]
type = energy
insecure = yes
CONF
start_gw "$T/site.conf"

# Ten minutes of site time in five seconds (sitesim starts in the past and
# reaches now when it stops).
"$BIN/sitesim" -c "$T/site.conf" --speed 120 --duration 5 >"$T/sim.log" 2>&1 ||
  fail "sitesim exited non-zero: $(tail -3 "$T/sim.log")"
grep -q "acked" "$T/sim.log" || fail "no summary line: $(tail -3 "$T/sim.log")"
wait_for 30 "sitesim's readings committed (storage queue empty)" committed

check() { # check DEVICE QUANTITY MIN MAX: readings exist and lie in [MIN, MAX]
  "$BIN/sitectl" readings "$1" "$2" --since -30m --json >"$T/r.json" || fail "sitectl readings $1 $2"
  n=$(json 'len(j["points"])' <"$T/r.json")
  [ "$n" -gt 0 ] || fail "no $2 from $1"
  out=$(json "[p['v'] for p in j['points'] if not ($3 <= p['v'] <= $4)][:3]" <"$T/r.json")
  [ "$out" = "[]" ] || fail "$1 $2 outside $3..$4: $out"
}
check dust-01 pm10 1 2000
check dust-01 pm2_5 1 1500
check dust-02 pm10 1 2000 # over DTLS
check noise-01 la 25 120
check weather-01 temp -50 45
check weather-01 rh 0 100
check em-site power 0 5000
check em-site energy 0 1e9
"$BIN/sitectl" status --json >"$T/s.json" || fail "sitectl status --json"
out=$(json '[d["id"] for d in j["devices"] if not d["online"]]' <"$T/s.json")
[ "$out" = "[]" ] || fail "every simulated device should be online, these are not: $out"

# The load generator: every request acknowledged and every record stored.
DB=$T/load.db
LOAD_COAP=$(free_port udp)
LOAD_HTTP=$(free_port tcp)
"$BIN/sitesim" gen-config --devices 50 --port "$LOAD_COAP" --db "$T/load.db" \
  --http "127.0.0.1:$LOAD_HTTP" >"$T/load.conf"
stop_gw
LPORT=$(sed -n 's/^port = //p' "$T/load.conf" | head -1)
export SITECTL_URL="http://$(sed -n 's/^listen = \(127.*\)/\1/p' "$T/load.conf" | tail -1)"
start_gw "$T/load.conf"
out=$("$BIN/sitesim" load --gateway "coap://127.0.0.1:$LPORT/r" --devices 50 --records 10 \
  --window 16 --ports 4 --requests 2000 2>&1 | tail -1)
case "$out" in "load: req_s="*" ok=2000 errors=0 timeouts=0") ;; *) fail "load: $out" ;; esac
wait_for 60 "the load's 20,000 records committed (storage queue empty)" committed
"$BIN/sitectl" status --json >"$T/s.json" || fail "sitectl status --json"
n=$(json 'j["storage"]["raw_readings"]' <"$T/s.json")
[ "$n" = 20000 ] || fail "20,000 records acknowledged, $n stored"
stop_gw

# Machines (issue 17): with the register (--machines) the pump's terminal
# reports all day (engine hours, fuel, smoke), --smoky makes it smoke over
# the limit, and the gate reader brings it in (a few days back) through
# POST /g; a second run resends the same gate events (2.04, stored once).
export SITECTL_URL="http://127.0.0.1:$HTTP_PORT"
DB=$T/mach.db write_conf "$T/mach.conf" <<'CONF'
[http]
token = test-token

[device mt-01]
type = machine
interval_s = 10
insecure = yes

[device gate-01]
type = gate
insecure = yes
CONF
start_gw "$T/mach.conf"
printf 'code,type,stage,power_kw,terminal\nT-PUMP-1,排水泵,III,55,mt-01\nT-CRANE-1,汽车起重机,IV,200,\n' \
  >"$T/machines.csv"
SITECTL_TOKEN=test-token "$BIN/sitectl" --reason test machine import "$T/machines.csv" >/dev/null ||
  fail "sitectl machine import"
for run in 1 2; do
  "$BIN/sitesim" -c "$T/mach.conf" --speed 60 --duration 4 --machines "$T/machines.csv" \
    --smoky T-PUMP-1 >"$T/sim-m$run.log" 2>&1 || fail "sitesim --machines: $(tail -3 "$T/sim-m$run.log")"
done
grep -q "gate events sent=[1-9][0-9]* stored=[1-9]" "$T/sim-m1.log" || fail "gate, run 1: $(tail -2 "$T/sim-m1.log")"
grep -q "stored=0 (2.04 same event=[1-9]" "$T/sim-m2.log" || fail "gate, run 2: $(tail -2 "$T/sim-m2.log")"
wait_for 30 "sitesim's machine readings committed" committed
check mt-01 engine_h 1 1e6
check mt-01 fuel 1 1e7
check mt-01 opacity 1.1 9 # stage III's 0.3 m-1, five times: above the 0.8 limit
"$BIN/sitectl" machines --json >"$T/m.json" || fail "sitectl machines --json"
json '[(m["code"], m["on_site"], m["reasons"]) for m in j if m["code"] == "T-PUMP-1"]' <"$T/m.json" |
  grep -qx "\[('T-PUMP-1', True, \['smoke'\])\]" || fail "the pump on site and smoking: $(cat "$T/m.json")"
curl -sf "$SITECTL_URL/api/machinery/T-PUMP-1?days=14" | json '[m["source"] for m in j["moves"]]' | grep -q gate ||
  fail "the pump's entry through the gate"
stop_gw
