# Quiet DTLS devices under a flood (issue 13): libcoap 4.3.1 keeps a
# bounded number of sessions without a reference per endpoint, counting
# handshakes past the cookie, and at that bound frees the least recently
# used whenever a packet comes from a new address. So a machine on the LAN
# that answers the cookie and goes no further made quiet devices lose their
# sessions between posts, and their next post went unanswered. 150 devices
# keep DTLS sessions, each quiet about 10 s between posts, while such
# ClientHellos come from new ports at 25 a second: every post must be
# answered, and no device may need a second handshake.
. "$(dirname "$0")/lib.sh"
KEY=idle-test-load-key-0001
LPORT=$(free_port udp)
LDTLS=$(free_port udp)
LHTTP=$(free_port tcp)
"$BIN/sitesim" gen-config --devices 150 --port "$LPORT" --dtls-port "$LDTLS" --psk "$KEY" \
  --db "$T/idle.db" --http "127.0.0.1:$LHTTP" >"$T/idle.conf"
export SITECTL_URL="http://127.0.0.1:$LHTTP"
start_gw "$T/idle.conf"

dtls() { curl -sf "$SITECTL_URL/api/status" | json "j['dtls']['$1']"; }
sent() { [ -s "$T/sent" ] && [ "$(cat "$T/sent")" -ge "$1" ]; }

"$PY" "$HERE/dtls_flood.py" 127.0.0.1 "$LDTLS" 25 "$T/stop" "$T/sent" cookie &
FLOOD_PID=$!
PIDS="$PIDS $FLOOD_PID"
wait_for 60 "the flood's first ClientHello" sent 1
# 150 sessions, 15 posts a second in all: each session posts about every
# 10 s and is quiet in between, while 250 new addresses come.
out=$("$BIN/sitesim" load --gateway "coaps://127.0.0.1:$LDTLS/r" --devices 150 --records 1 \
  --window 150 --requests 600 --rate 15 --psk "$KEY" 2>&1 | tee "$T/load.log" | tail -1)
alive "$FLOOD_PID" "the flood"
case "$out" in "load: req_s="*" ok=600 errors=0 timeouts=0") ;; *) grep -v ' info ' "$T/load.log" | tail -20; fail "posts of idle DTLS devices lost during the flood: $out ($(cat "$T/sent") ClientHellos sent, $(dtls completed) handshakes completed)" ;; esac
n=$(dtls completed)
[ "$n" -eq 150 ] || fail "150 devices needed $n handshakes: sessions were dropped"
touch "$T/stop"
wait "$FLOOD_PID" || fail "the flood script failed"
echo "dtls idle: 600 posts of 150 idle DTLS sessions answered, $n handshakes, $(cat "$T/sent") ClientHellos sent"
stop_gw
