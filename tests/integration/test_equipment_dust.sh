# Dust linkage end to end: a fog cannon (sitesim's controller) follows the
# environment rules' PM10 level of its station, never below the freeze
# limit, and goes off after the dust clears and its minimum run is over.
# The dust station and the thermometer are this script (coap-client posts
# their readings); sitesim runs only the cannon's controller.
. "$(dirname "$0")/lib.sh"
# This test reads sitectl's English (lib.sh makes it speak Chinese).
export SITECTL_LANG=en
F1=$(free_port udp)
export SITECTL_TOKEN=test-token
CTL="$BIN/sitectl"

write_conf "$T/site.conf" <<CONF
[http]
token = test-token

[dust]
short_min = 1
long_min = 2
pm10_short_warn = 100
pm10_short_alarm = 200
complete_share = 0.05

[device dust-x]
type = dust
insecure = yes
interval_s = 1

[device wx]
type = weather
insecure = yes

[device f1]
type = equipment
insecure = yes
group = fog
kind = fog_cannon
rated_kw = 18.5
interval_s = 5
coap = coap://127.0.0.1:$F1

[group fog]
dust_linkage = dust-x
temp_source = wx
dust_min_run_min = 0.1
min_on_min = 0.1
min_off_min = 0.1

[energy]
evaluate_s = 1
follow_s = 10
CONF

# sitesim's own file: the cannon alone (the gateway's [coap] port).
cat >"$T/sim.conf" <<CONF
[site]
id = TEST-SITE-01
[coap]
port = $COAP_PORT
dtls_port = 0
[device f1]
type = equipment
insecure = yes
group = fog
kind = fog_cannon
rated_kw = 18.5
interval_s = 5
coap = coap://127.0.0.1:$F1
[group fog]
CONF

# post DEVICE QUANTITY VALUE SECONDS: one reading a second for the last
# SECONDS seconds, in one SenML pack.
post() {
  payload=$("$PY" -c '
import json, sys, time
dev, q, v, n = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4])
recs = [{"n": q, "v": v, "t": -i} for i in range(n - 1, -1, -1)]
recs[0].update({"bn": dev + "/", "bt": round(time.time(), 3)})
print(json.dumps(recs))' "$@")
  expect_code 2.04 "$(coap post /r 110 "$payload")" "post $1 $2"
}
diagnose() {
  "$CTL" equipment || true
  "$CTL" equipment log || true
}
# f1_is PYTHON-EXPR: the expression over f1's unit JSON `u` and its group's
# `g` in /api/equipment is true. Both come from one snapshot on the loop, and
# a group's temp_c and dust_level are the inputs of its last decision.
f1_is() {
  [ "$(curl -sf "$SITECTL_URL/api/equipment" |
    json "(lambda u, g: $1)([x for x in j['units'] if x['id'] == 'f1'][0], j['groups'][0])" \
      2>/dev/null)" = True ]
}
f1_wait() { wait_for "$1" "$2" f1_is "$3"; } # f1_wait SECONDS WHAT PYTHON-EXPR

start_gw "$T/site.conf"
"$BIN/sitesim" -c "$T/sim.conf" --ignore 0 >>"$T/sim.log" 2>&1 &
SIM_PID=$!
PIDS="$PIDS $SIM_PID"
f1_wait 30 "the cannon's controller answering" "u['reachable']"

# No air temperature yet: the freeze interlock holds it off.
f1_wait 30 "f1 off for the freeze interlock without a temperature" "u['on'] is False and u['held'] == 'freeze'"

# 1 C with dust: still off.
post wx temp 1.0 1
post dust-x pm10 300 8
f1_wait 30 "a decision on 1 C and dust at warning or above that keeps f1 off" \
  "g['temp_c'] == 1.0 and (g['dust_level'] or 0) >= 1 and u['on'] is False and u['held'] == 'freeze'"
"$CTL" equipment | grep -q "fog .*dust dust-x at warning (now alarm), freeze below 2 C (air 1 C)" ||
  fail "sitectl equipment shows the interlock: $("$CTL" equipment)"

# 5 C: the cannon follows the dust.
post wx temp 5.0 1
f1_wait 30 "f1 on for dust" "u['on'] is True"
"$CTL" equipment log f1 --json | json '[e for e in j["entries"] if e["on"]][0]["reason"]' | grep -qx dust ||
  fail "switched on for dust: $("$CTL" equipment log f1)"

# The dust clears (the high readings leave the 1-minute window): off after
# the minimum run.
sleep 55 # time under test: the readings of 300 must leave the 1-minute window
post dust-x pm10 20 10
f1_wait 40 "f1 off after the dust cleared" "u['on'] is False and u['held'] == 'dust-clear'"
"$CTL" equipment log f1 | grep -q "off .*dust cleared .*policy .*followed" ||
  fail "dust-clear audited: $("$CTL" equipment log f1)"
stop_gw
kill -TERM "$SIM_PID"
wait "$SIM_PID" || fail "sitesim exited $? after SIGTERM"
