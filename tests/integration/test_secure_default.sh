# Secure by default (issue 13, item 3): the shipped config gives every
# device a key; a device without one needs a written `insecure = yes`, which
# start-up warns about; an empty or short psk stops --check-config and
# start-up with file:line; a keyed scale cannot be written over plain CoAP
# (the attack: 3,000 forged tickets into the ledger); ticket text that a
# spreadsheet would run comes out of every CSV export as text.
. "$(dirname "$0")/lib.sh"
G="$BIN/sitegated"

# 1. The shipped and demo config: every device has a key of 16 bytes or more.
# --check-config also binds the listeners and looks for the database's
# folder (created by systemd's StateDirectory=): this machine's own, here.
sed "s|^path = .*|path = $T/shipped.db|; s|^port = .*|port = $COAP_PORT|; s|^dtls_port = .*|dtls_port = $DTLS_PORT|; s|^listen = 127.0.0.1:8080|listen = 127.0.0.1:$HTTP_PORT|" \
  "$HERE/../../deploy/sitegate.conf" >"$T/shipped.conf"
"$G" --check-config -c "$T/shipped.conf" >"$T/dump" 2>"$T/err" ||
  fail "deploy/sitegate.conf refused: $(cat "$T/err")"
"$PY" - "$HERE/../../deploy/sitegate.conf" <<'PY' || fail "a device in deploy/sitegate.conf has no key"
import re, sys
text = open(sys.argv[1]).read()
for block in re.split(r'\n(?=\[)', text):
    m = re.match(r'\[device ([^\]]+)\]', block)
    if m:
        psk = re.search(r'^psk = (.*)$', block, re.M)
        assert psk and len(psk.group(1)) >= 16, m.group(1)
PY

# 2. Keys that --check-config and start-up refuse, each naming file:line.
refused() { # refused WHAT EXPECTED-TEXT: the config on stdin is refused by both
  cat >"$T/bad.conf"
  "$G" --check-config -c "$T/bad.conf" >/dev/null 2>"$T/err" && fail "$1: --check-config passed"
  grep -q -- "$2" "$T/err" || fail "$1: --check-config said: $(cat "$T/err")"
  "$G" -c "$T/bad.conf" >/dev/null 2>"$T/err2" && fail "$1: sitegated started"
  grep -q -- "$2" "$T/err2" || fail "$1: start-up said: $(cat "$T/err2")"
}
printf '[site]\nid = S\n[device wb-01]\ntype = scale\n' |
  refused "a scale with no key" "bad.conf:3: \[device wb-01\] has no psk.*insecure = yes"
printf '[site]\nid = S\n[device wb-01]\ntype = scale\npsk =\n' |
  refused "an empty psk" "bad.conf:5: \[device wb-01\] psk is empty"
printf '[site]\nid = S\n[device wb-01]\ntype = scale\npsk = k\n' |
  refused "a 1-byte psk" "bad.conf:5: \[device wb-01\] psk: 1 bytes is too short.*at least 16"

# 3. A running gateway: wb-01 has a key, wb-02 is insecure on purpose.
write_conf "$T/site.conf" <<'CONF'
[device wb-01]
type = scale
psk = wb-01-key-0123456789

[device wb-02]
type = scale
insecure = yes
CONF
export SITECTL_TOKEN=secure-test-token
sed -i "s|^listen = 127.0.0.1:$HTTP_PORT|listen = 127.0.0.1:$HTTP_PORT\ntoken = $SITECTL_TOKEN|" "$T/site.conf"
start_gw "$T/site.conf"
grep -q "3 devices without a key (insecure = yes: dust-01, noise-01, wb-02)" "$T/gw.log" ||
  fail "no start-up warning about the insecure devices"

now=$(now_s)
tk() { # tk SCALE NO DEST_NAME
  printf '{"scale":"%s","no":%s,"t":%s,"dir":"out","gross_kg":31800,"tare_kg":14200,"net_kg":17600,"category":"engineering","kind":"concrete","dest":"recycling","dest_name":"%s"}' \
    "$1" "$2" "$((now - 60))" "$3"
}
# The attack: a forged ticket for the keyed scale over plain CoAP.
r=$(coap post /w 50 "$(tk wb-01 1 forged)")
expect_code 4.03 "$r" "a plain-CoAP ticket for a keyed scale"
case "$r" in *needs_dtls* | *"must use CoAPS"*) ;; *) fail "the refusal does not say why: $r" ;; esac
# The same scale over CoAPS with its key is stored (separate 2.01).
out=$(coap-client-openssl -B 15 -v 7 -u wb-01 -k wb-01-key-0123456789 -m post -t 50 \
  -e "$(tk wb-01 2 '=HYPERLINK(\"http://evil.example\",\"x\")')" \
  "coaps://127.0.0.1:$DTLS_PORT/w" 2>&1) || true
printf '%s\n' "$out" | grep -q ' c:2.01' || fail "the keyed scale over CoAPS was not stored: $out"
# The insecure scale still works over plain CoAP: its owner chose so.
r=$(coap post /w 50 "$(tk wb-02 1 '@SUM(1+1)')")
case "$r" in 2.0[14]* | none*) ;; *) fail "the insecure scale was refused: $r" ;; esac
entries() { [ "$(curl -sf "$SITECTL_URL/api/waste/tickets?since=0" | json 'len(j["tickets"])' 2>/dev/null)" = "$1" ]; }
wait_for 30 "two tickets in the ledger" entries 2

# 4. CSV: the formula text is a text cell, behind an apostrophe.
curl -sf "$SITECTL_URL/api/waste/tickets?since=0&format=csv" >"$T/t.csv" || fail "no CSV"
grep -q "forged" "$T/t.csv" && fail "the forged ticket reached the ledger"
grep -q "\"'=HYPERLINK(" "$T/t.csv" || fail "=HYPERLINK not neutralised: $(cat "$T/t.csv")"
grep -q "\"'@SUM(1+1)\"" "$T/t.csv" || fail "@SUM not neutralised: $(cat "$T/t.csv")"
grep -q ",=\|,@\|,+\|,-[^0-9]" "$T/t.csv" && fail "a cell starts with a formula character: $(cat "$T/t.csv")"
stop_gw
echo "ok test_secure_default"
