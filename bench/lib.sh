# Shared by the bench scripts (sh): `BENCH=NAME; . "$(dirname "$0")/lib.sh"` sets
# BIN (the programs, SITEGATE_BIN or ../bin), TOP (the project), PY, a
# temporary folder T (/tmp/sitegate-bench-NAME.*) removed on exit with every
# process listed in PIDS, port udp|tcp (a free loopback port, from the
# kernel) and status KEY (a figure of /api/status's storage object from
# the gateway on port $PH).
TOP=$(cd "$(dirname "$0")/.." && pwd)
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
port() {
  "$PY" -c 'import socket,sys; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM if sys.argv[1]=="udp" else socket.SOCK_STREAM); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' "$1"
}
status() {
  curl -sf "http://127.0.0.1:$PH/api/status" | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["storage"][sys.argv[1]])' "$1"
}
