# Shared by the bench scripts (sh): `BENCH=NAME; . "$(dirname "$0")/lib.sh"` sets
# BIN (the programs, SITEGATE_BIN or ../bin), TOP (the project), PY, a
# temporary folder T (/tmp/sitegate-bench-NAME.*) removed on exit with every
# process listed in PIDS, port udp|tcp (a free loopback port, from the
# kernel), status KEY (a figure of /api/status's storage object from
# the gateway on port $PH), wait_for (a poll with a deadline), gw_up and
# drained (conditions for it), and demo_conf (the demo site on free ports).
TOP=${TOP:-$(cd "$(dirname "$0")/.." && pwd)} # a script outside bench/ sets it
BIN=${SITEGATE_BIN:-$TOP/bin}
T=$(mktemp -d "/tmp/sitegate-bench-${BENCH:?}.XXXXXX")
PY=/usr/bin/python3 # Debian's, by path: as the tests (tests/integration/lib.sh)
PIDS=""
cleanup() {
  for p in $PIDS; do kill -9 "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$T"
}
trap cleanup EXIT
port() { "$PY" "$TOP/tests/integration/free_port.py" "$1" "$T/ports"; }
status() {
  curl -sf "http://127.0.0.1:$PH/api/status" | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["storage"][sys.argv[1]])' "$1"
}
# wait_for SECONDS WHAT CMD...: runs CMD every 0.1 s until it succeeds; if
# it has not within SECONDS, says that WHAT did not happen and exits 1 (a
# figure measured on a gateway that never came up would be a wrong one).
wait_for() {
  wf_secs=$1 wf_what=$2
  shift 2
  wf_end=$(($(date +%s) + wf_secs))
  until "$@"; do
    if [ "$(date +%s)" -ge "$wf_end" ]; then
      echo "bench $BENCH: $wf_what did not happen within $wf_secs s" >&2
      exit 1
    fi
    sleep 0.1
  done
}
# gw_up [PORT]: the gateway on PORT ($PH) answers /api/status.
gw_up() { curl -sf "http://127.0.0.1:${1:-$PH}/api/status" >/dev/null; }
# drained: the gateway on $PH has committed everything it took.
drained() { [ "$(status queued)" = 0 ]; }
# demo_conf NAME: the demo site (deploy/sitegate.conf) as $T/NAME.conf, its
# ports, database ($T/NAME.db) and the units' controllers (sitesim serves
# them) moved to free ones and a token set; sets PC, PD and PH.
demo_conf() {
  PC=$(port udp); PD=$(port udp); PH=$(port tcp)
  sed -e "s|^path = .*|path = $T/$1.db|" -e "s|^# token = .*|token = bench-$$|" \
    -e "s|^listen = 127.0.0.1:8080|listen = 127.0.0.1:$PH|" \
    -e "s|^listen = 0.0.0.0|listen = 127.0.0.1|" -e "s|^port = 5683|port = $PC|" \
    -e "s|^dtls_port = 5684|dtls_port = $PD|" "$TOP/deploy/sitegate.conf" >"$T/$1.conf"
  for n in 1 2 3 4; do
    sed -i "s|127.0.0.1:570$n\$|127.0.0.1:$(port udp)|" "$T/$1.conf"
  done
}
