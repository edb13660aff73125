# The uplink, sitegated to sitegate-rx over real TLS on loopback, with
# certificates from deploy/pki: frames and signed ledger records arrive and
# are acknowledged; the receiver stopped for a while and restarted gets
# everything exactly once and in outbox order; kill -9 of the gateway in the
# middle of an upload loses nothing; a gap in the ledger chain is pulled
# (6081) and filled with the original messages; a gateway with a
# certificate from another CA, one whose frames carry another MN and one
# that expects another server name get nothing acknowledged.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/pg.sh"
. "$(dirname "$0")/uplink_lib.sh"
rx_backend # RX_DB=sqlite (default) or pg: the receiver's back end
MN=TEST-SITE-01
RX_PORT=$(free_port tcp)

make_pki "$T/pki" "$MN"
make_pki "$T/evil" "$MN"

RX_LOG="$T/rx.log"
RX_PID=""
start_rx() {
  "$BIN/sitegate-rx" --listen "127.0.0.1:$RX_PORT" --ca "$T/pki/ca.crt" \
    --cert "$T/pki/server.crt" --key "$T/pki/server.key" --db "$RX_TARGET" >>"$RX_LOG" 2>&1 &
  RX_PID=$!
  PIDS="$PIDS $RX_PID"
  wait_for 30 "sitegate-rx listening (start $1)" rx_listening "$1"
}
rx_listening() { # rx_listening N: the receiver's Nth start is listening
  alive "$RX_PID" "sitegate-rx"
  [ "$(grep -c "listening on" "$RX_LOG")" -ge "$1" ]
}
stop_rx() {
  kill -TERM "$RX_PID"
  rc=0
  wait "$RX_PID" || rc=$?
  [ $rc -eq 0 ] || fail "sitegate-rx exited $rc after SIGTERM"
}
diagnose() {
  echo "--- /api/uplink"
  up || true
  echo "--- sitegate-rx log (last 20 lines)"
  tail -20 "$RX_LOG"
}

reading() { # reading PM10: one dust reading now
  coap post /r 50 "[{\"bn\":\"dust-01/\",\"n\":\"pm10\",\"v\":$1},{\"n\":\"temp\",\"v\":-18.5}]" >/dev/null
}
# chain_ok: the receiver holds the gateway's whole chain, continuous, with
# nothing refused.
chain_ok() {
  s=$(up | json 'j["chain_seq"]')
  "$BIN/sitegate-rx" sites --db "$RX_TARGET" --json | grep "\"$MN\"" >"$T/sites.json"
  [ "$(json 'j["ledger_seq"], j["ledger_pending"], j["ledger_broken"], j["refused"]' <"$T/sites.json")" = \
    "($s, 0, 0, 0)" ]
}

# in_order: every message the gateway's outbox holds reached the receiver
# once, and the receiver stored them first in outbox order.
in_order() {
  sqlite3 "$T/sitegate.db" "SELECT qn FROM outbox WHERE acked_ms IS NOT NULL ORDER BY id" >"$T/gw.qns"
  rx_sql "SELECT qn FROM frames WHERE mn='$MN' AND pno=1 ORDER BY id" >"$T/rx.all"
  grep -Fxf "$T/gw.qns" "$T/rx.all" >"$T/rx.qns" || true
  diff "$T/gw.qns" "$T/rx.qns" >"$T/order.diff" ||
    fail "$1: outbox and receiver differ ($(wc -l <"$T/gw.qns") made): $(head -5 "$T/order.diff")"
  dups=$(rx_sql "SELECT COUNT(*) FROM (SELECT qn FROM frames WHERE mn='$MN' GROUP BY qn, pno HAVING COUNT(*) > 1) AS d")
  [ "$dups" = 0 ] || fail "$1: $dups messages stored twice"
}

start_rx 1
uplink_conf "$T/site.conf" "$MN" "$T/pki"
start_gw "$T/site.conf"

# ---- connected over TLS 1.2 with ECDHE-ECDSA and AES-GCM; frames acknowledged
up_wait 30 "a TLS session to the receiver" 'j["connected"]'
[ "$(up | json 'j["cipher"]')" != None ] || fail "no cipher"
up | json 'j["cipher"]' | grep -Eq '^TLS-ECDHE-ECDSA-WITH-AES-(128|256)-GCM-SHA(256|384)$' ||
  fail "cipher: $(up)"
grep -q "$MN connected from" "$RX_LOG" || fail "the receiver did not see $MN"
reading 81.5
reading 83.5
ticket
up_wait 30 "4 messages acknowledged and no signed backlog" 'j["counters"]["acked"] >= 4 and j["backlog"]["signed"] == 0'
# A real-time frame (2011) is the tick's: one made at a tick just before
# the readings arrived says a34002-Flag=B (no data at that tick); the next
# tick's carries them.
exported() { "$BIN/sitegate-rx" export --db "$RX_TARGET" --site "$MN" --since -10m --json >"$T/export.json"; }
pm10_2011() { exported && grep -q '"a34002-Rtd":"8[13].5"' "$T/export.json"; }
wait_for 30 "a 2011 with the PM10 posted at the receiver" pm10_2011
grep -q '"cn":"2081"' "$T/export.json" || fail "no restart (2081): $(head -3 "$T/export.json")"
grep -q '"a01001-Rtd":"-18.5"' "$T/export.json" || fail "no temperature in a 2011"
"$PY" - "$T/export.json" <<'PY' || fail "the waste ticket as exported"
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
t = [r for r in rows if r["cn"] == "6011"]
assert len(t) == 1 and t[0]["ledger_state"] == "chained", t
r = t[0]["records"]
assert r[0]["Plate"] == "黑A11001" and r[0]["NetKg"] == "17600" and r[0]["Seq"] == "2", r
p = [r for r in rows if r["cn"] == "6061"]  # the site profile, first of the chain
assert len(p) == 1 and p[0]["ledger_state"] == "chained", p
assert p[0]["records"][0]["Seq"] == "1" and p[0]["records"][0]["Name"] == "测试工地", p
assert "Lat" not in p[0]["records"][0], p
assert r[1]["DestName"] == "Harbin yard%3B gate 2", r
assert len(r[2]["LedgerHash"]) == 64, r
PY
# the same ticket decoded (rx_waste), free text unescaped, with the chain's verdict
[ "$(rx_sql "SELECT w.plate, w.net_kg, w.dest, w.dest_name, l.state FROM rx_waste w
  JOIN ledger l USING (mn, seq) WHERE w.mn='$MN'")" = "黑A11001|17600|recycling|Harbin yard; gate 2|chained" ] ||
  fail "the ticket decoded: $(rx_sql "SELECT * FROM rx_waste")"
# the site profile decoded (rx_site_profile): no coordinates configured
# (numbers cast: SQLite writes REAL 0 as 0.0, PostgreSQL as 0)
[ "$(rx_sql "SELECT p.seq, p.name, CAST(p.area_cast_m2 AS INTEGER), CAST(p.area_prefab_m2 AS INTEGER),
  CASE WHEN p.latitude IS NULL AND p.longitude IS NULL THEN 'none' ELSE 'set' END, l.state
  FROM rx_site_profile p JOIN ledger l USING (mn, seq) WHERE p.mn='$MN'")" = "1|测试工地|0|0|none|chained" ] ||
  fail "the site profile decoded: $(rx_sql "SELECT * FROM rx_site_profile")"
SITECTL_LANG=en "$BIN/sitectl" uplink >"$T/sitectl.txt" || fail "sitectl uplink failed"
grep -q "connected since" "$T/sitectl.txt" || fail "sitectl uplink: $(cat "$T/sitectl.txt")"

# ---- the receiver stopped for a while: the outbox keeps everything, then
# drains it in order once the receiver is back
stop_rx
up_wait 30 "the gateway noticing the receiver stopped" 'not j["connected"]'
for i in 1 2 3 4 5 6 7 8; do ticket; done
reading 90.5
# (three real-time frames take three rtd_interval_s: time passes here by design)
up_wait 20 "a backlog of 8 tickets and 3 real-time frames while the receiver is down" \
  'j["backlog"]["signed"] >= 8 and j["backlog"]["rtd"] >= 3'
SITECTL_LANG=en "$BIN/sitectl" uplink | grep -q "backlog .*signed [0-9]" || fail "sitectl uplink shows no backlog"
"$BIN/sitectl" uplink | grep -q "待发 .*签名记录 [0-9]" || fail "sitectl uplink in Chinese: $("$BIN/sitectl" uplink)"
up | json 'j["last_error"]' | grep -q "connect\|closed" || fail "no last error: $(up)"
start_rx 2
up_wait 60 "the backlog drained" 'j["connected"] and j["backlog"]["signed"] == 0 and j["backlog"]["rtd"] <= 1'
in_order "after the outage"
# (a wait: the gateway may sign another message meanwhile, an alarm say)
wait_for 30 "the receiver holding the whole chain after the outage" chain_ok

# ---- kill -9 in the middle of an upload: nothing is lost
stop_rx
up_wait 30 "the gateway noticing the receiver stopped" 'not j["connected"]'
stop_gw
uplink_conf "$T/site.conf" "$MN" "$T/pki" "window = 1"
start_gw "$T/site.conf"
for i in $(seq 150); do ticket; done
up_wait 30 "a backlog of 150 before the kill" 'j["backlog"]["signed"] >= 150'
start_rx 3
up_wait 60 "the upload started" 'j["counters"]["acked"] >= 5'
# Freeze the receiver: what is in flight now stays unacknowledged, and the
# tickets that follow cannot be acknowledged, however fast the upload was.
kill -STOP "$RX_PID"
for i in 1 2 3 4 5; do ticket; done
kill -9 "$GW_PID"
wait "$GW_PID" 2>/dev/null || true
kill -CONT "$RX_PID"
left=$(sqlite3 "$T/sitegate.db" "SELECT COUNT(*) FROM outbox WHERE acked_ms IS NULL AND cn='6011'")
[ "$left" -ge 5 ] || fail "the tickets made while the receiver was frozen are not all left ($left left)"
uplink_conf "$T/site.conf" "$MN" "$T/pki"
start_gw "$T/site.conf"
up_wait 60 "the backlog drained after kill -9" 'j["connected"] and j["backlog"]["signed"] == 0 and j["backlog"]["rtd"] <= 1'
in_order "after kill -9"
wait_for 30 "the receiver holding the whole chain after kill -9" chain_ok

# ---- the decoded data: every stored ticket has its row, every minute frame
# its row (one per site and minute, a column per pollutant and figure), in
# the same transactions as the frames
minutes_decoded() {
  f=$(rx_sql "SELECT COUNT(*) FROM frames WHERE mn='$MN' AND cn='2051' AND data LIKE '%a34002-%'")
  d=$(rx_sql "SELECT COUNT(*) FROM rx_env_minute WHERE mn='$MN' AND a34002_flag IS NOT NULL")
  [ "$f" -gt 0 ] && [ "$f" = "$d" ]
}
# (minute frames come once a minute has ended: time passes here by design)
wait_for 70 "minute frames decoded into rx_env_minute" minutes_decoded
[ "$(rx_sql "SELECT COUNT(*) FROM ledger l LEFT JOIN rx_waste w USING (mn, seq)
  WHERE l.mn='$MN' AND l.cn='6011' AND w.seq IS NULL")" = 0 ] || fail "a ticket without its rx_waste row"
[ "$(rx_sql "SELECT COUNT(*) FROM rx_waste WHERE mn='$MN'")" = \
  "$(rx_sql "SELECT COUNT(*) FROM ledger WHERE mn='$MN' AND cn='6011'")" ] || fail "rx_waste rows that are not tickets"
[ "$(rx_sql "SELECT COUNT(*) FROM rx_env_minute WHERE mn='$MN' AND a34002_flag='N'
  AND a34002_min <= a34002_avg AND a34002_avg <= a34002_max AND a34002_max IN (81.5, 83.5, 90.5)")" -ge 1 ] ||
  fail "no measured minute: $(rx_sql "SELECT * FROM rx_env_minute WHERE a34002_flag IS NOT NULL")"
# the temperature the readings carried, in its own column of the same rows
[ "$(rx_sql "SELECT COUNT(*) FROM rx_env_minute WHERE mn='$MN' AND a01001_avg = -18.5")" -ge 1 ] ||
  fail "no temperature column: $(rx_sql "SELECT t, a01001_avg, a01001_flag FROM rx_env_minute")"
if [ "${RX_DB:-sqlite}" = pg ]; then # one partition per Beijing-time month, rows in it
  month=$(TZ=Asia/Shanghai date +%Y%m)
  [ "$(pg_sql "SELECT DISTINCT tableoid::regclass FROM rx_env_minute")" = "rx_env_minute_p$month" ] ||
    fail "minute rows not in this month's partition: $(pg_sql "SELECT DISTINCT tableoid::regclass FROM rx_env_minute")"
  [ "$(pg_sql "SELECT COUNT(*) FROM pg_inherits WHERE inhparent='rx_env_minute'::regclass")" -ge 2 ] ||
    fail "next month's partition not made ahead"
fi

# ---- a gap in the chain at the receiver: it pulls Seq with 6081 and the
# gateway answers with the original messages
stop_rx
S=$(up | json 'j["chain_seq"]')
[ "$S" -ge 60 ] || fail "chain_seq $S"
rx_sql "DELETE FROM frames WHERE qn IN (SELECT qn FROM ledger WHERE mn='$MN' AND seq > $S - 10);
  DELETE FROM ledger WHERE mn='$MN' AND seq > $S - 10;"
start_rx 4
ticket
up_wait 60 "a pull answered" 'j["backlog"]["signed"] == 0 and j["counters"]["pulls"] >= 1'
gap_filled() { grep -q "ledger gap, pulling Seq $((S - 9))-$S" "$RX_LOG" && chain_ok; }
wait_for 60 "the gap Seq $((S - 9))-$S pulled and filled" gap_filled
stop_gw

# ---- another gateway with a certificate from another CA: refused
uplink_conf "$T/evil.conf" "$MN" "$T/evil"
sed -i "s|^path = .*|path = $T/evil.db|" "$T/evil.conf"
start_gw "$T/evil.conf"
up_wait 30 "two failed attempts" 'j["counters"]["connects"] >= 2 and j["last_error"] is not None'
[ "$(up | json 'j["connected"], j["counters"]["acked"], j["counters"]["handshakes"]')" = \
  "(False, 0, 0)" ] || fail "a gateway of another CA got a session: $(up)"
grep -q "TLS handshake failed: client certificate refused" "$RX_LOG" ||
  fail "the receiver did not refuse the other CA's certificate"
stop_gw

# ---- frames for another MN (the certificate is for TEST-SITE-01): refused
uplink_conf "$T/other.conf" OTHER-SITE-02 "$T/pki"
sed -i "s|^path = .*|path = $T/other.db|" "$T/other.conf"
start_gw "$T/other.conf"
up_wait 30 "the other MN's gateway sending" 'j["connected"] and j["counters"]["sent"] >= 2'
# A refused frame gets no answer: the gateway sends it again after its
# overtime_s, having waited that long for an acknowledgement that did not come.
grep_refused() { grep -q "refused: frame for MN OTHER-SITE-02 on the connection of MN $MN" "$RX_LOG"; }
wait_for 30 "the receiver refusing the frames for another MN" grep_refused
up_wait 30 "the gateway sending again for want of an acknowledgement" 'j["counters"]["resent"] >= 1'
[ "$(up | json 'j["counters"]["acked"]')" = 0 ] || fail "a frame for another MN was acknowledged"
[ "$("$BIN/sitegate-rx" export --db "$RX_TARGET" --site OTHER-SITE-02 --since 0000000000 | wc -l)" = 1 ] ||
  fail "frames for another MN were stored"
grep -q "is for $MN, not for this site" "$T/gw.log" || fail "the gateway did not warn about its certificate"
stop_gw

# ---- the receiver's name is checked against its certificate
uplink_conf "$T/name.conf" "$MN" "$T/pki" "server_name = rx.elsewhere.example"
sed -i "0,/^server_name = localhost$/{/^server_name = localhost$/d}" "$T/name.conf"
sed -i "s|^path = .*|path = $T/name.db|" "$T/name.conf"
start_gw "$T/name.conf"
up_wait 30 "the receiver with another name refused" 'j["last_error"] is not None and "certificate is refused" in j["last_error"]'
up | json 'j["last_error"]' | grep -qi "CN mismatch\|name" || fail "name check: $(up)"
stop_gw

stop_rx

# ---- retention: decoded minute figures of months before those kept go
# (PostgreSQL: whole partitions), this month's stay; frames stay
old=$(($(date +%s) - 400 * 86400))
old_month=$(TZ=Asia/Shanghai date -d "@$old" +%Y%m)
[ "${RX_DB:-sqlite}" = pg ] && pg_sql "CREATE TABLE rx_env_minute_p$old_month PARTITION OF rx_env_minute
  FOR VALUES FROM ($old) TO ($((old + 60)))"
rx_sql "INSERT INTO rx_env_minute(mn, t, a34002_avg, a34002_flag) VALUES('$MN', $old, 1, 'N')"
kept=$(rx_sql "SELECT COUNT(*) FROM rx_env_minute WHERE t > $old")
frames=$(rx_sql "SELECT COUNT(*) FROM frames")
"$BIN/sitegate-rx" prune --db "$RX_TARGET" --keep-months 3 >"$T/prune.txt" || fail "prune failed"
[ "$(rx_sql "SELECT COUNT(*) FROM rx_env_minute WHERE t = $old")" = 0 ] ||
  fail "prune left the old minute: $(cat "$T/prune.txt")"
[ "$(rx_sql "SELECT COUNT(*) FROM rx_env_minute")" = "$kept" ] || fail "prune removed this month's minutes"
[ "$(rx_sql "SELECT COUNT(*) FROM frames")" = "$frames" ] || fail "prune removed frames"
if [ "${RX_DB:-sqlite}" = pg ]; then
  grep -q "^rx_env_minute_p$old_month: " "$T/prune.txt" || fail "no partition dropped: $(cat "$T/prune.txt")"
  [ "$(pg_sql "SELECT to_regclass('rx_env_minute_p$old_month') IS NULL")" = t ] || fail "partition still there"
fi
"$BIN/sitegate-rx" prune --db "$RX_TARGET" 2>"$T/prune.err" && fail "prune without --keep-months succeeded"
grep -q "needs --keep-months" "$T/prune.err" || fail "prune usage: $(cat "$T/prune.err")"
grep -q "ERROR: AddressSanitizer\|runtime error" "$T/gw.log" "$RX_LOG" && fail "sanitizer report"
exit 0
