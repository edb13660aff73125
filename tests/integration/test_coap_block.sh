# Block1 uploads (RFC 7959; issue 13, item 5): the body is what the blocks
# held, whatever Size1 says. A Size1 that lies is 4.00 and nothing is
# stored; no Size1 is fine; blocks out of order are 4.08; too large is 4.13
# with Size1; libcoap's own client uploading in blocks gets 2.04, for a
# pack and for a ticket (whose answer comes once it is committed).
. "$(dirname "$0")/lib.sh"
write_conf "$T/site.conf" <<'CONF'
[device wb-01]
type = scale
insecure = yes
CONF
start_gw "$T/site.conf"
now=$(now_s)

# pack N FILE: a SenML pack of N pm10 readings of dust-01 (about 50 bytes
# each), one a second back from now.
pack() {
  "$PY" -c 'import json, sys
n, now = int(sys.argv[1]), int(sys.argv[2])
print(json.dumps([{"bn": "dust-01/", "bt": now - n, "n": "pm10", "v": 1.5, "t": 0}] +
                 [{"n": "pm10", "v": 1.5 + i, "t": i} for i in range(1, n)]))' "$1" "$now" >"$2"
}
block() { "$PY" "$HERE/coap_block.py" "$COAP_PORT" r 110 "$@"; }
stored() { # stored N: dust-01 holds N pm10 readings
  [ "$(curl -sf "$SITECTL_URL/api/status" | json 'j["storage"]["queued"]')" = 0 ] &&
    [ "$("$BIN/sitectl" readings dust-01 pm10 --since -1h --json | json 'len(j["points"])')" = "$1" ]
}

pack 60 "$T/p60.json" # about 1.2 kB: five blocks of 256 bytes
size=$(stat -c %s "$T/p60.json")
[ "$size" -gt 1024 ] || fail "the pack is too small for five blocks: $size bytes"

# No Size1: the body is every block, not the first alone.
expect_code 2.04 "$(block "$T/p60.json" 4 none)" "a block-wise pack without Size1"
wait_for 30 "the 60 readings of the pack without Size1" stored 60

# Size1 that lies, smaller or larger: refused whole, nothing stored.
pack 50 "$T/p50.json"
r=$(block "$T/p50.json" 4 200)
expect_code 4.00 "$r" "a Size1 smaller than the body"
case "$r" in *"Size1 said 200 bytes but the blocks held $(stat -c %s "$T/p50.json")"*) ;; *) fail "the 4.00 should say why: $r" ;; esac
expect_code 4.00 "$(block "$T/p50.json" 4 5000)" "a Size1 larger than the body"
# Out of order: 4.08, nothing stored.
expect_code 4.08 "$(block "$T/p50.json" 4 none skip)" "block 1 left out"
# The truth: stored.
expect_code 2.04 "$(block "$T/p50.json" 4 "$(stat -c %s "$T/p50.json")")" "a true Size1"
# Larger than [coap] max_body (65,536) with no Size1 to say so: 4.13 with Size1.
pack 30 "$T/p30.json"
{ printf '%70000s' ''; cat "$T/p30.json"; } >"$T/big.json" # JSON may lead with white space
r=$(block "$T/big.json" 6 none)
expect_code 4.13 "$r" "a 70 kB body in blocks without Size1"

case "$r" in *"larger than the 65536 allowed"*) ;; *) fail "the 4.13 should say why: $r" ;; esac

# libcoap's own client, in blocks of 64 bytes.
out=$(coap-client-openssl -B 10 -v 7 -b 64 -m post -t 110 -f "$T/p30.json" "coap://127.0.0.1:$COAP_PORT/r" 2>&1 || true)
expect_code 2.04 "$(code_and_payload "$out")" "coap-client's block-wise upload"

# The packs share their seconds (a reading stored again is ignored): 60
# distinct, and the last block of the pack without Size1 (60.5) is among them.
wait_for 30 "every accepted reading, and none of the refused uploads" stored 60
"$BIN/sitectl" readings dust-01 pm10 --since -1h --json >"$T/r.json"
[ "$(json 'max(p["v"] for p in j["points"])' <"$T/r.json")" = 60.5 ] ||
  fail "the last block of the pack without Size1 is missing: $(head -c 300 "$T/r.json")"
# A ticket (POST /w, answered separately once committed) in blocks of 16
# bytes: 2.01, and the same ticket again 2.04.
printf '{"scale":"wb-01","no":77,"t":%s,"plate":"A12345","dir":"out","gross_kg":31800,"tare_kg":14200,"net_kg":17600,"category":"engineering","kind":"concrete","dest":"recycling","dest_name":"Harbin yard; gate 2"}' \
  "$now" >"$T/t.json"
out=$(coap-client-openssl -B 10 -v 7 -b 16 -m post -t 50 -f "$T/t.json" "coap://127.0.0.1:$COAP_PORT/w" 2>&1 || true)
expect_code 2.01 "$(code_and_payload "$out")" "a ticket in blocks"
out=$(coap-client-openssl -B 10 -v 7 -b 16 -m post -t 50 -f "$T/t.json" "coap://127.0.0.1:$COAP_PORT/w" 2>&1 || true)
expect_code 2.04 "$(code_and_payload "$out")" "the same ticket in blocks again"
[ "$(curl -sf "$SITECTL_URL/api/waste/tickets" | json 'len(j["tickets"])')" = 1 ] ||
  fail "the ticket in blocks is not stored once"
stop_gw
