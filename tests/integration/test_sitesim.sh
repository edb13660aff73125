# sitesim against the real gateway: a simulated site fills every device's
# quantities with believable values, and the load generator's packs are all
# acknowledged and stored.
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
