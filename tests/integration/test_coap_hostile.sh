# The LAN throws things at the CoAP port (issue 13, items 5 and 6):
# - timeless packs of one device in one millisecond: each 2.04 is a reading
#   stored (the second is not taken for a resend of the first);
# - a flood of unsolicited RSTs: counted, and said in one line per 10 s,
#   not one alert line each.
. "$(dirname "$0")/lib.sh"
write_conf "$T/site.conf" </dev/null
start_gw "$T/site.conf"

# 300 packs sent at once: the gateway reads dozens in one millisecond.
read -r ok answered < <("$PY" "$HERE/coap_burst.py" "$COAP_PORT" packs 300)
[ "$answered" -ge 250 ] || fail "only $answered of 300 packs answered"
[ "$ok" -ge 250 ] || fail "only $ok of 300 packs got 2.04"
count() { "$BIN/sitectl" readings dust-01 pm10 --since -1h --json | json 'len(j["points"])'; }
stored_all() { committed && [ "$(count)" = "$ok" ]; }
wait_for 30 "the $ok acknowledged timeless readings all stored (stored: $(count))" stored_all
dups=$(curl -sf "$SITECTL_URL/api/status" | json 'j["storage"]["duplicates"]')
[ "$dups" = 0 ] || fail "$dups acknowledged readings were dropped as resends"

# 500 RSTs for messages the gateway never sent.
"$PY" "$HERE/coap_burst.py" "$COAP_PORT" rst 500
wait_for 30 "the resets summed up in the log" grep -q 'unexpected CoAP resets (RST) in the last' "$T/gw.log"
n=$(grep -c 'RST' "$T/gw.log")
[ "$n" -le 2 ] || fail "$n log lines about RSTs for one burst"
grep -q 'got RST' "$T/gw.log" && fail "libcoap's per-RST alert reached the log"
total=$(grep -o '[0-9]* unexpected CoAP resets' "$T/gw.log" | awk '{s += $1} END {print s}')
[ "$total" = 500 ] || fail "the log counts $total resets, 500 were sent"
stop_gw
