# sitegated's start-up contract and sitectl's exit statuses.
. "$(dirname "$0")/lib.sh"
write_conf "$T/site.conf" </dev/null
"$BIN/sitegated" --check-config -c "$T/site.conf" >"$T/dump" 2>&1 || fail "--check-config on a good file"
grep -q "^id = TEST-SITE-01" "$T/dump" || fail "--check-config prints the settings"
grep -q "secret-dust-02-key-0001" "$T/dump" && fail "--check-config printed a psk"

printf '[site]\nid = X\n[coap]\nprot = 5683\n' >"$T/bad.conf"
rc=0; out=$("$BIN/sitegated" -c "$T/bad.conf" 2>&1) || rc=$?
[ $rc -eq 78 ] || fail "an unknown key must stop start-up with 78 (EX_CONFIG), got $rc"
[ "$out" = "$T/bad.conf:4: unknown key \"prot\" in [coap]" ] || fail "message: $out"
rc=0; "$BIN/sitegated" -c "$T/missing.conf" 2>"$T/err" || rc=$?
[ $rc -eq 78 ] && grep -q "missing.conf" "$T/err" || fail "missing file: rc=$rc (want 78, EX_CONFIG) $(cat "$T/err")"
rc=0; "$BIN/sitegated" 2>/dev/null || rc=$?
[ $rc -eq 2 ] || fail "no -c is a usage error (2), got $rc"

# A port in use is a one-line reason and a non-zero exit.
start_gw "$T/site.conf"
DB=$T/other.db write_conf "$T/same-ports.conf" </dev/null
rc=0; out=$(timeout 10 "$BIN/sitegated" -c "$T/same-ports.conf" 2>&1) || rc=$?
[ $rc -ne 0 ] || fail "a second gateway on the same ports must not start"
echo "$out" | grep -q "port $COAP_PORT" || fail "reason should name the port: $out"

# A second gateway on the same database (other ports) stops before it opens
# it, naming the first one's PID.
write_conf "$T/same-db.conf" </dev/null
sed -i "s|^port = .*|port = $(free_port udp)|; s|^dtls_port = .*|dtls_port = 0|; s|^listen = 127.0.0.1:.*|listen = 127.0.0.1:$(free_port tcp)|" "$T/same-db.conf"
rc=0; out=$(timeout 10 "$BIN/sitegated" -c "$T/same-db.conf" 2>&1) || rc=$?
[ $rc -eq 1 ] || fail "a second gateway on the same database must not start (rc=$rc)"
echo "$out" | grep -q "in use by process $GW_PID" || fail "reason should name PID $GW_PID: $out"

# A LAN bind without a token is refused.
LAN_HTTP=$(free_port tcp)
LAN_COAP=$(free_port udp)
sed "s|^listen = 127.0.0.1:.*|listen = 0.0.0.0:$LAN_HTTP|" "$T/site.conf" |
  sed "s|^port = .*|port = $LAN_COAP|; s|^dtls_port = .*|dtls_port = 0|; s|^path = .*|path = $T/lan.db|" >"$T/lan.conf"
rc=0; out=$(timeout 10 "$BIN/sitegated" -c "$T/lan.conf" 2>&1) || rc=$?
[ $rc -ne 0 ] && echo "$out" | grep -q "token" || fail "LAN bind without token: rc=$rc $out"
rc=0; out=$("$BIN/sitegated" --check-config -c "$T/lan.conf" 2>&1) || rc=$?
[ $rc -eq 78 ] && echo "$out" | grep -q "lan.conf:[0-9]*: \[http\] listen.*token" ||
  fail "--check-config must refuse what start-up refuses: rc=$rc $out"

# --check-config refuses, with the key's line, what start-up would fail on
# (issue 13): a database in a missing folder, an address this machine does
# not have, a port another program holds. A port the running gateway of
# this database holds is only a warning (it is checking its own file).
check_refuses() { # check_refuses FILE PATTERN WHAT
  rc=0; out=$("$BIN/sitegated" --check-config -c "$1" 2>&1) || rc=$?
  [ $rc -eq 78 ] && echo "$out" | grep -q "$2" || fail "--check-config on $3: rc=$rc $out"
}
sed "s|^path = .*|path = $T/no/such/folder/x.db|" "$T/site.conf" >"$T/nodir.conf"
check_refuses "$T/nodir.conf" "nodir.conf:[0-9]*: \[storage\] path .*folder $T/no/such/folder does not exist" \
  "a database in a missing folder"
sed "s|^listen = 127.0.0.1$|listen = 192.0.2.55|" "$T/site.conf" | sed "s|^path = .*|path = $T/x.db|" >"$T/noaddr.conf"
check_refuses "$T/noaddr.conf" "noaddr.conf:[0-9]*: .*192.0.2.55.*not one of this machine's" \
  "an address this machine does not have"
BUSY=$(free_port udp)
"$PY" -c 'import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", int(sys.argv[1])))
open(sys.argv[2], "w").close(); time.sleep(60)  # holds the port until killed' "$BUSY" "$T/busy" &
BUSY_PID=$!
PIDS="$PIDS $BUSY_PID"
wait_for 10 "another program holding UDP port $BUSY" test -e "$T/busy"
sed "s|^port = .*|port = $BUSY|; s|^path = .*|path = $T/x.db|" "$T/site.conf" >"$T/busy.conf"
check_refuses "$T/busy.conf" "busy.conf:[0-9]*: \[coap\] port $BUSY on 127.0.0.1 (UDP) is in use by another program" \
  "a port another program holds"
kill "$BUSY_PID"
out=$("$BIN/sitegated" --check-config -c "$T/site.conf" 2>&1) ||
  fail "--check-config of the running gateway's own file: $out"
echo "$out" | grep -q "in use, by the running sitegated (pid $GW_PID)" ||
  fail "the running gateway's ports should be a warning naming it: $out"

# sitectl: 0 ok, 1 the gateway said no, 2 usage, 3 unreachable.
"$BIN/sitectl" status >/dev/null || fail "sitectl status"
rc=0; "$BIN/sitectl" readings nosuch pm10 2>"$T/err" || rc=$?
[ $rc -eq 1 ] && grep -q "nosuch" "$T/err" || fail "unknown device: rc=$rc $(cat "$T/err")"
rc=0; "$BIN/sitectl" readings dust-01 2>/dev/null || rc=$?
[ $rc -eq 2 ] || fail "missing argument: rc=$rc"
rc=0; "$BIN/sitectl" readings dust-01 pm10 --since yesterday 2>/dev/null || rc=$?
[ $rc -eq 2 ] || fail "bad --since: rc=$rc"
out=$("$BIN/sitectl" readings dust-01 pm10 --since 2026-11-20T21:20 --until 2026-11-20T22:00+08:00 --json) ||
  fail "sitectl readings with ISO times exited $?"
printf '%s\n' "$out" | json 'round(j["until"] - j["since"])' | grep -qx 2400 || fail "ISO times in the site zone: $out"
stop_gw
rc=0; "$BIN/sitectl" status 2>"$T/err" || rc=$?
[ $rc -eq 3 ] && grep -q "无法连接网关" "$T/err" || fail "gateway down: rc=$rc"
# A usage error is 2 whether the gateway is up or not, and says so in the
# catalogue's words (checked before anything is asked of the gateway).
for words in "dust --window soon" "noise --since yesterday" "energy --until x" \
  "waste add foo" "equipment set c1 maybe --reason r" "site progress 2" "readings dust-01 pm25" \
  "alarm ack x --note n" "report extra" "status extra" "nosuch"; do
  rc=0
  # shellcheck disable=SC2086
  "$BIN/sitectl" $words 2>"$T/err" || rc=$?
  [ $rc -eq 2 ] || fail "sitectl $words: exit $rc, want 2 (usage): $(cat "$T/err")"
  grep -q "无法连接网关 http" "$T/err" && fail "sitectl $words asked the gateway: $(cat "$T/err")"
done
SITECTL_LANG=en "$BIN/sitectl" nosuch 2>&1 | grep -q '^usage: sitectl' || fail "usage in English"
"$BIN/sitectl" nosuch 2>&1 | grep -q '^用法: sitectl' || fail "usage in Chinese"
