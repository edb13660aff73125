# A DTLS handshake flood (issue 13, item 1): ClientHellos from ever new
# source ports that never finish the handshake (what spoofed ones look like)
# must not lock real devices out. The flood runs at 25 a second, above the
# 20 a second that locked out libcoap's default table of 100; while it runs,
# every DTLS post of a real device gets its 2.04 within coap-client's 5 s
# wait, and the flood shows in /api/status, /metrics, sitectl status and
# the log.
. "$(dirname "$0")/lib.sh"
write_conf "$T/site.conf" </dev/null
start_gw "$T/site.conf"

dtls() { curl -sf "$SITECTL_URL/api/status" | json "j['dtls']['$1']"; }
at_least() { [ "$(dtls "$1")" -ge "$2" ]; }
sent() { [ -s "$T/sent" ] && [ "$(cat "$T/sent")" -ge "$1" ]; }

"$PY" "$HERE/dtls_flood.py" 127.0.0.1 "$DTLS_PORT" 25 "$T/stop" "$T/sent" &
FLOOD_PID=$!
PIDS="$PIDS $FLOOD_PID"
# Past libcoap's default of 100 pending: with it, from here on every new
# handshake was ignored.
wait_for 60 "the flood's 150th ClientHello" sent 150
wait_for 30 "150 handshakes pending" at_least pending 150

# 12 real posts while the flood goes on, each from a new source port (a new
# handshake), each waited for at most 5 s (coap-client -B 5).
for i in $(seq 1 12); do
  r=$(coaps dust-02 secret-dust-02-key-0001 /r 110 "[{\"bn\":\"dust-02/\",\"n\":\"pm10\",\"v\":$i.5}]")
  expect_code 2.04 "$r" "DTLS post $i during the flood ($(cat "$T/sent") ClientHellos sent)"
done
alive "$FLOOD_PID" "the flood"
[ "$(dtls completed)" -ge 12 ] || fail "12 handshakes completed, counted $(dtls completed)"

# The first abandoned handshakes are freed 30 s after they began, when
# another ClientHello comes: then they are counted and logged.
wait_for 90 "abandoned handshakes counted" at_least abandoned 1
wait_for 30 "the flood in the log" grep -q 'DTLS: [0-9]* handshakes abandoned since the last line' "$T/gw.log"
curl -sf "$SITECTL_URL/metrics" >"$T/metrics"
grep -q '^sitegate_dtls_handshakes_total{outcome="begun"} [0-9][0-9][0-9]' "$T/metrics" ||
  fail "the flood's handshakes not in /metrics: $(grep dtls "$T/metrics")"
grep -q '^sitegate_dtls_handshakes_total{outcome="abandoned"} [1-9]' "$T/metrics" ||
  fail "abandoned handshakes not in /metrics: $(grep dtls "$T/metrics")"
grep -q '^sitegate_dtls_handshakes_pending [1-9][0-9][0-9]' "$T/metrics" ||
  fail "pending handshakes not in /metrics: $(grep dtls "$T/metrics")"
SITECTL_LANG=en "$BIN/sitectl" status >"$T/status"
grep -q '^dtls .* handshakes completed, [1-9][0-9]* abandoned, .* pending of 1024' "$T/status" ||
  fail "sitectl status does not show the flood: $(cat "$T/status")"
# Bounded: one line per 10 s at most, however many ClientHellos.
n=$(grep -c 'DTLS: .*handshakes' "$T/gw.log")
[ "$n" -le 3 ] || fail "$n flood lines in the log: not rate-limited"
touch "$T/stop"
wait "$FLOOD_PID" || fail "the flood script failed"
echo "dtls flood: $(cat "$T/sent") ClientHellos sent, $(dtls pending) pending, $(dtls abandoned) abandoned, $(dtls completed) completed"
stop_gw
