#!/bin/bash
# The console's sign-in slows guessing down (authority/rxconsole.c): after
# 10 failed sign-ins for one account within 15 minutes, that account's
# sign-in gets 429 with Retry-After and a message saying why, even with
# the right password, while another account still signs in; after 20 from
# one address, every sign-in from it does. /metrics counts each outcome.
# (Counted in memory, the same on both back ends: run on SQLite.)
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/lib.sh"
RX_PORT=$(free_port tcp)
CONSOLE_PORT=$(free_port tcp)
METRICS_PORT=$(free_port tcp)
CONSOLE="http://127.0.0.1:$CONSOLE_PORT"

make_pki "$T/pki"
echo 'correct horse 42' | "$BIN/sitegate-rx" passwd --users "$T/users" inspector || fail "passwd failed"
echo 'another one 1234' | "$BIN/sitegate-rx" passwd --users "$T/users" auditor || fail "passwd failed"

RX_LOG="$T/rx.log"
"$BIN/sitegate-rx" --listen "127.0.0.1:$RX_PORT" --http "127.0.0.1:$CONSOLE_PORT" --users "$T/users" \
  --metrics "127.0.0.1:$METRICS_PORT" --ca "$T/pki/ca.crt" --cert "$T/pki/server.crt" \
  --key "$T/pki/server.key" --db "$T/rx.db" >"$RX_LOG" 2>&1 &
RX_PID=$!
PIDS="$PIDS $RX_PID"
rx_up() { alive "$RX_PID" sitegate-rx; grep -q "supervision console on" "$RX_LOG"; }
wait_for 30 "the receiver and its console" rx_up
diagnose() { echo "--- sitegate-rx log"; tail -20 "$RX_LOG"; }

# login USER PASSWORD: the HTTP status; the body in $T/body, headers in $T/head
login() {
  curl -s -o "$T/body" -D "$T/head" -w '%{http_code}' -H 'Content-Type: application/json' \
    -d "{\"user\":\"$1\",\"password\":\"$2\"}" "$CONSOLE/api/login"
}
signins() { # signins OUTCOME: the counter's value
  curl -sf "http://127.0.0.1:$METRICS_PORT/metrics" |
    awk -v k="sitegate_rx_console_signins_total{outcome=\"$1\"}" '$1 == k { print $2 }'
}

# ---- one account: 10 wrong passwords, then even the right one waits
for i in $(seq 1 10); do
  code=$(login inspector "wrong password $i")
  [ "$code" = 401 ] || fail "wrong password $i answered $code"
done
code=$(login inspector 'correct horse 42')
[ "$code" = 429 ] || fail "the 11th sign-in for the account answered $code: $(cat "$T/body")"
grep -q '"too_many"' "$T/body" || fail "429 without its code: $(cat "$T/body")"
grep -q 'for this account: try again in 15 min' "$T/body" || fail "429 without why: $(cat "$T/body")"
retry=$(sed -n 's/^Retry-After: \([0-9]*\).*/\1/ip' "$T/head")
[ -n "$retry" ] && [ "$retry" -gt 0 ] && [ "$retry" -le 900 ] || fail "Retry-After: '$retry'"
grep -q "too many failed sign-ins for this account" "$RX_LOG" || fail "the log does not say why"
# another account, from the same address (10 failures so far of its 20)
code=$(login auditor 'another one 1234')
[ "$code" = 200 ] || fail "another account answered $code: $(cat "$T/body")"

# ---- one address: 10 more failures (names that do not exist), then nobody from it
for i in $(seq 1 10); do
  code=$(login "nobody$i" "guess $i")
  [ "$code" = 401 ] || fail "unknown user $i answered $code"
done
code=$(login auditor 'another one 1234')
[ "$code" = 429 ] || fail "a sign-in from an address with 20 failures answered $code"
grep -q 'from this address: try again in' "$T/body" || fail "429 without why: $(cat "$T/body")"

# ---- /metrics counts each outcome
[ "$(signins ok)" = 1 ] || fail "signed in: $(signins ok)"
[ "$(signins bad)" = 20 ] || fail "failed: $(signins bad)"
[ "$(signins limited_account)" = 1 ] || fail "limited by account: $(signins limited_account)"
[ "$(signins limited_address)" = 1 ] || fail "limited by address: $(signins limited_address)"
echo "ok: console sign-in limited per account and per address, counted in /metrics"
