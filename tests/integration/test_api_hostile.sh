# The API on a hostile LAN (issue 13, item 4): a slowloris (sockets sending
# a header byte a second, which used to hold every connection: the idle
# timeout restarts on each byte) is cut after HTTP_HEADERS_S (10 s) while
# sitectl status keeps answering within 5 s; one address holds at most 16
# connections; a Host that is not this gateway is 421 (DNS rebinding);
# actions need the token. Reads off loopback need it too: loopback is all
# these tests may use, so that rule is held by tests/test_http.c.
. "$(dirname "$0")/lib.sh"
export SITECTL_TOKEN=hostile-test-token
write_conf "$T/site.conf" </dev/null
sed -i "s|^listen = 127.0.0.1:$HTTP_PORT|listen = 127.0.0.1:$HTTP_PORT\ntoken = $SITECTL_TOKEN\nhosts = sitegate.site.lan|" "$T/site.conf"
start_gw "$T/site.conf"
U="http://127.0.0.1:$HTTP_PORT"

# 1. Host: DNS rebinding sends the attacker's name.
code() { curl -s -o /dev/null -w '%{http_code}' "$@"; }
[ "$(code -H 'Host: evil.example' "$U/api/status")" = 421 ] || fail "Host: evil.example was answered"
[ "$(code -H "Host: evil.example:$HTTP_PORT" "$U/metrics")" = 421 ] || fail "evil.example:port answered"
[ "$(code -H "Host: localhost:$HTTP_PORT" "$U/api/status")" = 200 ] || fail "localhost refused"
[ "$(code -H "Host: SiteGate.Site.LAN:$HTTP_PORT" "$U/api/status")" = 200 ] || fail "[http] hosts name refused"
[ "$(code -H "Host: [::1]:$HTTP_PORT" "$U/api/status")" = 200 ] || fail "[::1] refused"
[ "$(code "$U/api/status")" = 200 ] || fail "a loopback read needs nothing"
[ "$(code -X PUT -d '{"progress":0.5}' "$U/api/site/progress")" = 401 ] || fail "an action without token"

# 2. Slowloris: 120 sockets from 8 addresses (15 each, under the per-address
# limit) trickling a byte a second for up to 40 s, while sitectl must answer.
"$PY" "$HERE/slowloris.py" "$HTTP_PORT" 120 15 40 >"$T/slow.json" &
SLOW=$!
PIDS="$PIDS $SLOW"
t0=$(now_s)
n=0
while kill -0 "$SLOW" 2>/dev/null && [ $(($(now_s) - t0)) -lt 45 ]; do
  timeout 5 "$BIN/sitectl" status >/dev/null || fail "sitectl status did not answer within 5 s during the slowloris"
  n=$((n + 1))
  sleep 1 # time under test: a probe a second, across the flood's 40 s
done
wait "$SLOW" || fail "the slowloris client failed"
cat "$T/slow.json"
[ "$n" -ge 5 ] || fail "sitectl was probed $n times only"
[ "$(json 'j["connected"]' <"$T/slow.json")" -ge 100 ] || fail "the flood did not connect: $(cat "$T/slow.json")"
[ "$(json 'j["open_at_end"]' <"$T/slow.json")" = 0 ] || fail "slow sockets were never cut: $(cat "$T/slow.json")"
# Cut at 10 s, by a watchdog that looks once a second; 25 s on a loaded machine.
"$PY" -c 'import json,sys; j=json.load(open(sys.argv[1])); sys.exit(0 if j["last_close_s"] < 25 else 1)' "$T/slow.json" ||
  fail "slow sockets were cut late: $(cat "$T/slow.json")"
slow=$(curl -sf "$U/metrics" | sed -n 's/^sitegate_http_refused_total{reason="slow"} //p')
[ "${slow:-0}" -ge 100 ] || fail "cut connections not counted in /metrics: ${slow:-none}"
curl -sf "$U/metrics" | grep -q '^sitegate_http_refused_total{reason="host"} 2$' || fail "421s not counted"

# 3. One address: at most 16 connections; the rest are closed at once.
"$PY" "$HERE/slowloris.py" "$HTTP_PORT" 24 24 3 >"$T/one.json"
cat "$T/one.json"
"$PY" -c 'import json,sys; j=json.load(open(sys.argv[1])); sys.exit(0 if j["closed_early"] + j["refused"] >= 8 else 1)' "$T/one.json" ||
  fail "one address held more than 16 connections: $(cat "$T/one.json")"
timeout 5 "$BIN/sitectl" status >/dev/null || fail "sitectl after the floods"
stop_gw
echo "ok test_api_hostile"
