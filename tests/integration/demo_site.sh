# Sourced by the dashboard and API tests after lib.sh: a demo-like gateway
# (deploy/sitegate.conf with the test's ports, database and a token) fed by
# sitesim: an hour of simulated past first, then live. Its floor areas are
# cut to 200 m2 each, so the weighbridge's tickets put the waste allowance
# (10 t) over its limit: an alarm to acknowledge, every run.
TOP=$(cd "$HERE/../.." && pwd)
TOKEN="it-token-$$"
CTL_PORTS=""
DEMO_MACHINES="--machines $TOP/deploy/machines-demo.csv --smoky 23010100000104"

demo_conf() { # demo_conf FILE
  sed -e "s|^path = .*|path = $T/sitegate.db|" -e "s|^# token = .*|token = $TOKEN|" \
    -e "s|^listen = 127.0.0.1:8080|listen = 127.0.0.1:$HTTP_PORT|" \
    -e "s|^listen = 0.0.0.0|listen = 127.0.0.1|" -e "s|^port = 5683|port = $COAP_PORT|" \
    -e "s|^dtls_port = 5684|dtls_port = $DTLS_PORT|" \
    -e "s|^area_cast_in_place_m2 = .*|area_cast_in_place_m2 = 200|" \
    -e "s|^area_prefab_m2 = .*|area_prefab_m2 = 200|" \
    -e "s|^# batch_ms = .*|batch_ms = 50|" \
    "$TOP/deploy/sitegate.conf" >"$1"
  for n in 1 2 3 4; do # the units' controllers, served by sitesim
    p=$(free_port udp)
    sed -i "s|127.0.0.1:570$n\$|127.0.0.1:$p|" "$1"
    CTL_PORTS="$CTL_PORTS $p"
  done
}

# controllers_up: true once sitesim (live) serves every unit's controller,
# i.e. has bound each of CTL_PORTS; fails if it has exited.
controllers_up() {
  local p
  alive "$SIM_PID" "sitesim (live)"
  for p in $CTL_PORTS; do
    [ -n "$(ss -Hlun "sport = :$p")" ] || return 1
  done
}

# waste_alarm: true once `sitectl alarms` lists a waste.allowance alarm.
waste_alarm() {
  "$BIN/sitectl" alarms --json >"$T/alarms.json" 2>&1 && grep -q '"waste.allowance"' "$T/alarms.json"
}

# start_demo: the gateway, an hour of past readings and tickets (sitesim
# --speed 360 for 10 s), then sitesim live (once it serves the units'
# controllers) and a paper ticket; returns once the waste alarm is active.
start_demo() {
  demo_conf "$T/demo.conf"
  start_gw "$T/demo.conf"
  # the demo's machinery register, and its machines in sitesim (DEMO_MACHINES)
  SITECTL_TOKEN=$TOKEN "$BIN/sitectl" --by 项目部 --reason 机械台账导入 \
    machine import "$TOP/deploy/machines-demo.csv" >/dev/null ||
    fail "sitectl machine import deploy/machines-demo.csv"
  # shellcheck disable=SC2086 # DEMO_MACHINES is a list of options
  "$BIN/sitesim" -c "$T/demo.conf" --speed 360 --duration 10 --ignore 0 $DEMO_MACHINES \
    >>"$T/sim.log" 2>&1 || fail "sitesim (backfill) failed: $(tail -5 "$T/sim.log")"
  # shellcheck disable=SC2086
  "$BIN/sitesim" -c "$T/demo.conf" --ignore 0 $DEMO_MACHINES >>"$T/sim-live.log" 2>&1 &
  SIM_PID=$!
  PIDS="$PIDS $SIM_PID"
  wait_for 60 "sitesim (live) serving the controllers on udp ports$CTL_PORTS" controllers_up
  # a paper ticket through the API: the waste alarms are evaluated on it
  SITECTL_TOKEN=$TOKEN "$BIN/sitectl" waste add dir=out category=decoration kind=mixed \
    dest=disposal net_t=8.2 dest_name=松北填埋场 --note "纸质磅单 0087" >/dev/null ||
    fail "sitectl waste add"
  wait_for 60 "a waste.allowance alarm after the tickets" waste_alarm
}
