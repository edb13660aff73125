# Plain CoAP ingest through libcoap's own client: every reply code of the
# contract, and what is accepted is stored and readable through sitectl.
. "$(dirname "$0")/lib.sh"
write_conf "$T/site.conf" </dev/null
start_gw "$T/site.conf"
now=$(now_s)

r=$(coap post /r 110 "[{\"bn\":\"dust-01/\",\"bt\":$now,\"n\":\"pm10\",\"v\":56.3},{\"n\":\"pm2_5\",\"v\":31.5}]")
expect_code 2.04 "$r" "SenML JSON pack"
# Times keep their milliseconds, here half a second apart (SenML times are
# seconds as a number, RFC 8428 section 4.5.3).
r=$(coap post /r 110 "[{\"bn\":\"dust-01/\",\"bt\":$((now - 10)).875,\"n\":\"pm2_5\",\"v\":30},{\"n\":\"pm2_5\",\"t\":-0.5,\"v\":31}]")
expect_code 2.04 "$r" "SenML JSON pack with milliseconds"
r=$(coap post /r 50 "[{\"bn\":\"dust-01/\",\"bt\":$((now - 60)),\"n\":\"pm10\",\"v\":0.0612,\"u\":\"mg/m3\"}]")
expect_code 2.04 "$r" "JSON (50) pack in mg/m3"
# SenML CBOR: [{-2:"noise-01/", -3:now, 0:"la", 2:63.5}] (RFC 8428 section 6 labels)
cbor="$T/pack.cbor"
"$PY" - "$now" "$cbor" <<'PY'
import struct, sys
now, path = int(sys.argv[1]), sys.argv[2]
def text(s): b = s.encode(); return bytes([0x60 + len(b)]) + b
pack = bytes([0x81, 0xa4]) + b'\x21' + text("noise-01/") + b'\x22' + b'\x1a' + struct.pack(">I", now) \
     + b'\x00' + text("la") + b'\x02' + b'\xfb' + struct.pack(">d", 63.5)
open(path, "wb").write(pack)
PY
out=$(coap-client-openssl -B 5 -v 7 -m post -t 112 -f "$cbor" "coap://127.0.0.1:$COAP_PORT/r" 2>&1 || true)
expect_code 2.04 "$(code_and_payload "$out")" "SenML CBOR pack"

r=$(coap post /r 110 '[{"bn":"crane-99/","n":"power","v":1}]')
expect_code 4.03 "$r" "unknown device"
case "$r" in *crane-99*) ;; *) fail "4.03 should name the device: $r" ;; esac
r=$(coap post /r 110 '[{"bn":"dust-01/","n":"pm10","v":5,"u":"kg"}]')
expect_code 4.00 "$r" "unit of another dimension"
case "$r" in *record*) ;; *) fail "4.00 should name the record: $r" ;; esac
r=$(coap post /r 110 "[{\"bn\":\"dust-01/\",\"t\":$((now + 3600)),\"n\":\"pm10\",\"v\":5}]")
expect_code 4.00 "$r" "time an hour in the future"
r=$(coap post /r 110 '[{"bn":"dust-01/","n":"pm10","v":5}')
expect_code 4.00 "$r" "truncated JSON"
r=$(coap post /r 0 'pm10=5')
expect_code 4.15 "$r" "text/plain payload"
r=$(coap post /r 110 '[{"bn":"dust-02/","n":"pm10","v":5}]')
expect_code 4.03 "$r" "device with a key over plain CoAP"
"$PY" -c 'import json; print(json.dumps([{"bn":"dust-01/","n":"pm10","v":1.0,"t":-i} for i in range(3000)]))' >"$T/big.json"
out=$(coap-client-openssl -B 10 -v 7 -m post -t 110 -f "$T/big.json" "coap://127.0.0.1:$COAP_PORT/r" 2>&1 || true)
expect_code 4.13 "$(code_and_payload "$out")" "a 160 kB pack"

wk=$(coap-client-openssl -B 5 -m get "coap://127.0.0.1:$COAP_PORT/.well-known/core" 2>&1)
case "$wk" in *"</r>"*ct=*) ;; *) fail "/.well-known/core does not list </r>: $wk" ;; esac

# What was accepted is stored, converted to canonical units (a 2.04 is a
# promise to commit within a batch window: wait for the commit).
wait_for 30 "the accepted readings committed (storage queue empty)" committed
"$BIN/sitectl" readings dust-01 pm10 --since -10m --json >"$T/r.json" || fail "sitectl readings"
[ "$(json 'len(j["points"])' <"$T/r.json")" = 2 ] || fail "dust-01 pm10: $(cat "$T/r.json")"
[ "$(json 'sorted(round(p["v"], 3) for p in j["points"])' <"$T/r.json")" = "[56.3, 61.2]" ] ||
  fail "mg/m3 not converted: $(cat "$T/r.json")"
[ "$(json 'j["unit"]' <"$T/r.json")" = "ug/m3" ] || fail "unit"
# Both through sitectl and the API: the times as sent, to the millisecond.
ms='sorted(round(p["t"] % 1, 3) for p in j["points"] if p["v"] in (30, 31))'
"$BIN/sitectl" readings dust-01 pm2_5 --since -10m --json >"$T/ms.json" || fail "sitectl readings pm2_5"
[ "$(json "$ms" <"$T/ms.json")" = "[0.375, 0.875]" ] || fail "milliseconds lost: $(cat "$T/ms.json")"
curl -sf "$SITECTL_URL/api/readings?device=dust-01&quantity=pm2_5&since=$((now - 600))" >"$T/ms.json" ||
  fail "GET /api/readings"
[ "$(json "$ms" <"$T/ms.json")" = "[0.375, 0.875]" ] || fail "milliseconds lost in the API: $(cat "$T/ms.json")"
"$BIN/sitectl" readings noise-01 la --since -10m --json >"$T/la.json" || fail "sitectl readings noise-01 la"
json 'j["points"][0]["v"]' <"$T/la.json" | grep -qx 63.5 || fail "CBOR reading not stored: $(cat "$T/la.json")"
# The person's table has a header and the values.
"$BIN/sitectl" readings dust-01 pm10 --since -10m >"$T/r.txt" || fail "sitectl readings (table)"
grep -q "56\.3$" "$T/r.txt" || fail "table output: $(cat "$T/r.txt")"
"$BIN/sitectl" status --json >"$T/s.json" || fail "sitectl status --json"
[ "$(json 'j["ingest"]["rejects"]["unknown_device"]' <"$T/s.json")" = 1 ] || fail "reject counter"
[ "$(json '[d["online"] for d in j["devices"] if d["id"]=="dust-01"][0]' <"$T/s.json")" = True ] ||
  fail "dust-01 should be online"
"$BIN/sitectl" status >"$T/s.txt" || fail "sitectl status"
grep -q "测试工地" "$T/s.txt" || fail "status table shows the site name: $(cat "$T/s.txt")"
stop_gw
