# SIGTERM while the API is busy: every endpoint that calls onto the loop
# (/api/alarms, /api/equipment, /api/energy, /api/carbon, /api/uplink,
# /metrics) is hammered by curl loops while sitegated drains, so requests
# arrive before, during and after the loop stops taking calls. Each cycle
# must end with exit 0 (the loop closed with no handle left open) and no
# sanitizer report; run it on the ASan build to find the races it is for:
#
#   SHUTDOWN_CYCLES=50 SITEGATE_BIN=$PWD/build-asan/bin bash tests/integration/test_shutdown.sh
#
# SHUTDOWN_CYCLES (default 10) is how many start-hammer-SIGTERM cycles run;
# SHUTDOWN_REQUESTS (default 40) bounds each curl loop.
. "$(dirname "$0")/lib.sh"
CYCLES=${SHUTDOWN_CYCLES:-10}
REQUESTS=${SHUTDOWN_REQUESTS:-40}
REPO=$(cd "$HERE/../.." && pwd)
PKI="$REPO/deploy/pki"
MN=TEST-SITE-01

# /api/uplink calls onto the loop only with an uplink configured: one to a
# port nobody listens on (it retries in the background, which is more for
# the shutdown to stop).
"$PKI/make-ca.sh" "$T/pki" >/dev/null
"$PKI/make-gateway.sh" "$T/pki" "$MN" >/dev/null
write_conf "$T/site.conf" <<CONF
[device meter-01]
type = equipment
insecure = yes
group = cranes
kind = tower_crane
rated_kw = 40
interval_s = 5

[group cranes]
members = meter-01
peak_kw = 100

[uplink]
host = 127.0.0.1
port = $(free_port tcp)
server_name = localhost
ca = $T/pki/ca.crt
cert = $T/pki/gateway-$MN.crt
key = $T/pki/gateway-$MN.key
backoff_max_s = 1
CONF

ENDPOINTS="/api/alarms /api/equipment /api/energy /api/carbon /api/uplink /metrics"

# hammer PATH OUT: at most $REQUESTS requests, one after another, each
# HTTP status appended to OUT, until one is refused (000: the gateway has
# gone).
hammer() {
  local i code
  for ((i = 0; i < REQUESTS; i++)); do
    code=$(curl -s -o /dev/null --max-time 10 -w '%{http_code}' "$SITECTL_URL$1" 2>/dev/null) || true
    echo "${code:-000}" >>"$2"
    [ "${code:-000}" != 000 ] || break
  done
}

# answered N: at least N answers (or refusals) recorded.
answered() { [ "$(cat "$T"/codes.* 2>/dev/null | wc -l)" -ge "$1" ]; }

for ((cycle = 1; cycle <= CYCLES; cycle++)); do
  start_gw "$T/site.conf"
  rm -f "$T"/codes.*
  hammers=""
  n=0
  for ep in $ENDPOINTS; do
    n=$((n + 1))
    hammer "$ep" "$T/codes.$n" &
    hammers="$hammers $!"
  done
  PIDS="$PIDS $hammers"
  # SIGTERM once the hammers are running, with most of their requests
  # still to come.
  wait_for 30 "cycle $cycle: the first answers to the hammers" answered 12
  stop_gw
  for p in $hammers; do wait "$p"; done
  grep -q "left open" "$T/gw.log" && fail "cycle $cycle: a handle was left open at exit"
  ok=$(cat "$T"/codes.* | grep -c '^200$' || true)
  stopping=$(cat "$T"/codes.* | grep -c '^503$' || true)
  refused=$(cat "$T"/codes.* | grep -c '^000$' || true)
  other=$(cat "$T"/codes.* | grep -vc '^200$\|^503$\|^000$' || true)
  [ "$other" -eq 0 ] || fail "cycle $cycle: unexpected answers: $(cat "$T"/codes.* | sort | uniq -c)"
  total_ok=$((${total_ok:-0} + ok))
  total_503=$((${total_503:-0} + stopping))
  total_000=$((${total_000:-0} + refused))
done
no_sanitizer_report "$T/gw.log" sitegated
echo "shutdown: $CYCLES SIGTERM cycles under load, all exit 0, no sanitizer report;" \
  "requests: $total_ok answered 200, $total_503 answered 503 while stopping, $total_000 refused after exit"
