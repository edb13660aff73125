#!/bin/bash
# Makes tests/data/main-db/site-v6.db: a database written by sitegate as
# main was before the block layout (commit ad54b59, schema version 6), for
# the block layout's migration test (issue 15: "migrate existing databases
# in place, with a test from a database made by today's main"). Run with
# SITEGATE_BIN pointing at that commit's bin/ (git archive ad54b59, make):
# the demo site (deploy/sitegate.conf, ports moved) fed 20 simulated minutes
# by sitesim, then stopped with SIGTERM, so the file is whole (no WAL).
set -eu
BIN=${SITEGATE_BIN:?the bin/ of commit ad54b59}
HERE=$(cd "$(dirname "$0")" && pwd)
TOP=$(cd "$HERE/../../.." && pwd)
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
port() { /usr/bin/python3 -c 'import socket,sys; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM if sys.argv[1]=="udp" else socket.SOCK_STREAM); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' "$1"; }
PC=$(port udp); PD=$(port udp); PH=$(port tcp)
sed -e "s|^path = .*|path = $T/site.db|" -e "s|^# token = .*|token = make-$$|" \
  -e "s|^listen = 127.0.0.1:8080|listen = 127.0.0.1:$PH|" \
  -e "s|^listen = 0.0.0.0|listen = 127.0.0.1|" -e "s|^port = 5683|port = $PC|" \
  -e "s|^dtls_port = 5684|dtls_port = $PD|" "$TOP/deploy/sitegate.conf" >"$T/site.conf"
for n in 1 2 3 4; do sed -i "s|127.0.0.1:570$n\$|127.0.0.1:$(port udp)|" "$T/site.conf"; done
"$BIN/sitegated" -c "$T/site.conf" 2>"$T/gw.log" & GW=$!
for _ in $(seq 200); do curl -sf "http://127.0.0.1:$PH/api/status" >/dev/null && break; sleep 0.05; done
"$BIN/sitesim" -c "$T/site.conf" --speed 121 --duration 10 --ignore 0 --seed 15
kill -TERM "$GW"; wait "$GW"
cp "$T/site.db" "$HERE/site-v6.db"
sqlite3 "$HERE/site-v6.db" 'PRAGMA user_version; SELECT count(*) FROM raw; SELECT count(*) FROM ledger;'
