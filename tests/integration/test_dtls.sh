# CoAPS with DTLS-PSK: the identity is the device id and its key comes from
# the config; a wrong key never gets through, an identity may only send for
# itself.
. "$(dirname "$0")/lib.sh"
write_conf "$T/site.conf" </dev/null
start_gw "$T/site.conf"

# A crafted identity (issue 13, item 6) is logged escaped, and counted;
# first, since such lines come at most once per 10 s.
r=$(coaps $'evil\x1b[2J\ncrit forged' secret-dust-02-key-0001 /r 110 '[{"bn":"dust-02/","n":"pm10","v":99.5}]')
case "$r" in 2.*) fail "a crafted identity was accepted: $r" ;; esac
wait_for 10 "the crafted identity in the log" grep -q 'unknown identity "evil\\x1b\[2J\\x0acrit forged"' "$T/gw.log"
grep -q $'\x1b' "$T/gw.log" && fail "a raw escape byte reached the log"
curl -sf "$SITECTL_URL/metrics" | grep -q '^sitegate_dtls_handshakes_failed_total [1-9]' ||
  fail "failed handshakes not counted in /metrics"


r=$(coaps dust-02 secret-dust-02-key-0001 /r 110 '[{"bn":"dust-02/","n":"pm10","v":88.5}]')
expect_code 2.04 "$r" "DTLS pack with the right key"
r=$(coaps dust-02 wrong-key /r 110 '[{"bn":"dust-02/","n":"pm10","v":99.5}]')
case "$r" in 2.*) fail "a wrong key was accepted: $r" ;; esac
r=$(coaps nobody secret-dust-02-key-0001 /r 110 '[{"bn":"dust-02/","n":"pm10","v":99.5}]')
case "$r" in 2.*) fail "an unknown identity was accepted: $r" ;; esac
r=$(coaps dust-02 secret-dust-02-key-0001 /r 110 '[{"bn":"dust-01/","n":"pm10","v":77.5}]')
expect_code 4.03 "$r" "identity dust-02 sending for dust-01"

wait_for 30 "the accepted reading committed (storage queue empty)" committed
"$BIN/sitectl" readings dust-02 pm10 --since -10m --json >"$T/r.json"
[ "$(json '[p["v"] for p in j["points"]]' <"$T/r.json")" = "[88.5]" ] ||
  fail "only the authenticated reading is stored: $(cat "$T/r.json")"
"$BIN/sitectl" readings dust-01 pm10 --since -10m --json >"$T/r.json"
[ "$(json 'len(j["points"])' <"$T/r.json")" = 0 ] || fail "dust-01 got a reading from dust-02"
stop_gw
