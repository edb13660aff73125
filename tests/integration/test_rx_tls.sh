# sitegate-rx over real TLS on loopback, driven by OpenSSL's s_client (a TLS
# stack we did not write) with certificates from deploy/pki: the handshake
# (TLS 1.2, ECDHE-ECDSA with AES-GCM, the server's name checked), 9014 acks,
# refusals (another CA, another MN, a bad CRC, a tampered or foreign-signed
# ledger record), de-duplication, split messages, the ledger chain with a
# gap and its pull, an hourly seal, `check`, `sites` and `export`.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/pg.sh"
rx_backend # RX_DB=sqlite (default) or pg: the receiver's back end
REPO=$(cd "$HERE/../.." && pwd)
PKI="$REPO/deploy/pki"
RX_PORT=$(free_port tcp)
METRICS_PORT=$(free_port tcp)
MN=HLJ-HRB-0001
OTHER=HLJ-HRB-0002

make_pki "$T/pki" "$MN" "$OTHER"
make_pki "$T/evil" "$MN"
"$PKI/make-gateway.sh" "$T/pki" "$MN" | grep -q "exists, kept" || fail "make-gateway.sh is not idempotent"

# Frames as a gateway would make them (CRC of HJ 212-2017 Appendix A, signed
# records as protocol/UPLINK.md says, signed by OpenSSL with the gateway key).
cat >"$T/mk.py" <<'PY'
import hashlib, sys

from hj212 import frame, head, signed


cmd, args = sys.argv[1], sys.argv[2:]
out = sys.stdout.buffer
if cmd == "plain":            # MN QN CN CP
    out.write(frame(head(*args[:3]) + args[3] + "&&"))
elif cmd == "raw":            # DATA: a data segment as given
    out.write(frame(args[0]))
elif cmd == "tamper":         # FILE OLD NEW QN: the first frame, altered, with a fresh QN and CRC
    line = open(args[0], "rb").read().split(b"\r\n")[0]
    d = line[6:-4].decode().replace(args[1], args[2])
    d = "QN=" + args[3] + d[d.index(";"):]
    out.write(frame(d))
elif cmd == "signed":         # KEY MN QN CN SEQ PREV BODY SEP -> frames; the Hash on stderr
    frames, h = signed(*args)
    out.write(frames)
    print(h, file=sys.stderr)
elif cmd == "digest":         # FILE... -> "FRAMES DIGEST" of their 2011/2051/2061 frames
    segs = []
    for f in args:
        for line in open(f, "rb").read().split(b"\r\n"):
            if line:
                d = line[6:-4]
                fields = dict(x.split(b"=", 1) for x in d.split(b";CP=")[0].split(b";"))
                if fields[b"CN"] in (b"2011", b"2051", b"2061"):
                    segs.append((fields[b"QN"], d))
    segs.sort()
    print(len(segs), hashlib.sha256(b"".join(d + b"\r\n" for _, d in segs)).hexdigest().upper())
PY
mk() { PYTHONPATH="$HERE" "$PY" "$T/mk.py" "$@"; }

RX_LOG="$T/rx.log"
"$BIN/sitegate-rx" --listen "127.0.0.1:$RX_PORT" --ca "$T/pki/ca.crt" --cert "$T/pki/server.crt" \
  --key "$T/pki/server.key" --db "$RX_TARGET" --metrics "127.0.0.1:$METRICS_PORT" >"$RX_LOG" 2>&1 &
RX_PID=$!
PIDS="$PIDS $RX_PID"
rx_listening() {
  kill -0 "$RX_PID" 2>/dev/null || { cat "$RX_LOG" >&2; fail "sitegate-rx exited at start"; }
  grep -q "listening on" "$RX_LOG"
}
wait_for 30 "sitegate-rx saying \"listening on\"" rx_listening

# send DIR NAME FILE WHAT COND...: sends FILE's frames over TLS as gateway
# NAME of the PKI in DIR and keeps the connection open until COND holds
# (COND reads the answer so far, $T/answer: the receiver's frames and
# s_client's complaints), then closes it. Fails saying WHAT did not happen
# if COND does not hold within 30 s.
SPID=""
send() {
  local dir=$1 name=$2 file=$3 what=$4
  shift 4
  rm -f "$T/in" "$T/answer"
  mkfifo "$T/in"
  timeout 60 openssl s_client -quiet -no_ign_eof \
    -connect "127.0.0.1:$RX_PORT" -servername localhost \
    -cert "$dir/gateway-$name.crt" -key "$dir/gateway-$name.key" \
    -CAfile "$T/pki/ca.crt" -verify_return_error -verify_hostname localhost <"$T/in" >"$T/answer" 2>&1 &
  SPID=$!
  PIDS="$PIDS $SPID"
  exec 3>"$T/in"
  cat "$file" >&3 || true # s_client may be gone already (a refused handshake)
  wait_for 30 "$what" "$@"
  exec 3>&-
  wait "$SPID" || true
}
rxfail() {
  echo "--- sitegate-rx log (last 20 lines)" >&2
  tail -20 "$RX_LOG" >&2
  fail "$@"
}
ack_of() { echo "QN=$1;ST=91;CN=9014;PW=123456;MN=$MN;Flag=4;CP=&&&&"; }
acked() { printf '%s\n' "$1" | grep -q "$(ack_of "$2")"; }
# answered PATTERN...: (a send COND) true once the answer so far has a line
# with each PATTERN; fails at once if s_client ended without.
answered() {
  local ended=0 p
  kill -0 "$SPID" 2>/dev/null || ended=1
  for p; do
    if ! grep -q "$p" "$T/answer"; then
      [ $ended = 0 ] || rxfail "s_client ended without an answer with \"$p\": $(cat "$T/answer")"
      return 1
    fi
  done
}
# ended: (a send COND) true once s_client has ended by itself.
ended() { ! kill -0 "$SPID" 2>/dev/null; }
# A frame the receiver already holds, sent after frames that must NOT be
# answered: its 9014 comes after anything the receiver says about the frames
# before it (one connection is answered in order), so once it is in, nothing
# more is coming. The receiver acknowledges it again and stores it once.
SENTINEL_QN=20261120212000123

# ---- the handshake, seen from OpenSSL
out=$(echo | timeout 10 openssl s_client -connect "127.0.0.1:$RX_PORT" -servername localhost \
  -cert "$T/pki/gateway-$MN.crt" -key "$T/pki/gateway-$MN.key" -CAfile "$T/pki/ca.crt" \
  -verify_hostname localhost 2>&1) || true
printf '%s\n' "$out" | grep -q "Protocol *: TLSv1.2" || rxfail "not TLS 1.2: $out"
printf '%s\n' "$out" | grep -Eq "Cipher is ECDHE-ECDSA-AES(128|256)-GCM-SHA(256|384)" ||
  rxfail "not ECDHE-ECDSA with AES-GCM: $out"
printf '%s\n' "$out" | grep -q "Verify return code: 0 (ok)" || rxfail "server certificate: $out"
out=$(echo | timeout 10 openssl s_client -connect "127.0.0.1:$RX_PORT" \
  -cert "$T/pki/gateway-$MN.crt" -key "$T/pki/gateway-$MN.key" -CAfile "$T/pki/ca.crt" \
  -verify_hostname rx.elsewhere.example -verify_return_error 2>&1) || true
printf '%s\n' "$out" | grep -q "hostname mismatch" || rxfail "a wrong host name passed: $out"
out=$(echo | timeout 10 openssl s_client -tls1_1 -connect "127.0.0.1:$RX_PORT" \
  -cert "$T/pki/gateway-$MN.crt" -key "$T/pki/gateway-$MN.key" 2>&1) || true
printf '%s\n' "$out" | grep -q "Cipher is (NONE)" || rxfail "TLS 1.1 was accepted: $out"

# ---- a minute frame is acknowledged with 9014 and the same QN
mk plain "$MN" 20261120212000123 2051 \
  "DataTime=20261120212000;a34002-Min=80.1,a34002-Avg=88.5,a34002-Max=97.0,a34002-Flag=N;LA-Avg=63.2,LA-Flag=N" \
  >"$T/m1.txt"
send "$T/pki" "$MN" "$T/m1.txt" "a 9014 for the minute frame" answered "$(ack_of 20261120212000123)"
r=$(cat "$T/answer")
acked "$r" 20261120212000123 || rxfail "no 9014 for a minute frame: $r"

# ---- the same frame again: acknowledged again, stored once
send "$T/pki" "$MN" "$T/m1.txt" "a 9014 for the resent frame" answered "$(ack_of 20261120212000123)"
r=$(cat "$T/answer")
acked "$r" 20261120212000123 || rxfail "no 9014 for a resent frame: $r"
grep -q "QN 20261120212000123 is a duplicate" "$RX_LOG" || rxfail "duplicate not recognised"

# ---- a certificate from another CA never gets a session
send "$T/evil" "$MN" "$T/m1.txt" "s_client ending (its certificate refused)" ended
r=$(cat "$T/answer")
printf '%s\n' "$r" | grep -q "CN=9014" && rxfail "a gateway of another CA was acknowledged: $r"
refused_cert() { grep -q "TLS handshake failed: client certificate refused" "$RX_LOG"; }
wait_for 10 "a log of the refused certificate" refused_cert

# ---- a frame for another MN, a bad CRC, a frame without QN: refused, unanswered
mk plain "$OTHER" 20261120212100123 2051 "DataTime=20261120212100;a34002-Avg=70.0" >"$T/other.txt"
printf '##0101QN=20160801085857223;ST=32;CN=1062;PW=100000;MN=010000A8900016F000169DC0;Flag=5;CP=&&RtdInterval=30&&1C81\r\n' \
  >"$T/badcrc.txt"
mk raw "ST=39;CN=2051;PW=123456;MN=$MN;Flag=5;CP=&&DataTime=20261120212200&&" >"$T/noqn.txt"
cat "$T/other.txt" "$T/badcrc.txt" "$T/noqn.txt" "$T/m1.txt" >"$T/refused.txt" # m1: the sentinel
send "$T/pki" "$MN" "$T/refused.txt" "the 9014 of the sentinel after the refused frames" \
  answered "$(ack_of $SENTINEL_QN)"
r=$(grep -v "$(ack_of $SENTINEL_QN)" "$T/answer" || true)
printf '%s\n' "$r" | grep -q "CN=9014" && rxfail "a refused frame was acknowledged: $r"
grep -q "refused: frame for MN $OTHER on the connection of MN $MN" "$RX_LOG" ||
  rxfail "the frame for another MN was not refused"
grep -q "refused: CRC 1C81 expected 1C80" "$RX_LOG" || rxfail "the bad CRC was not refused"
grep -q "refused: no QN" "$RX_LOG" || rxfail "the frame without QN was not refused"

# ---- a QN reused for other content (issue 13, item 5): refused, unanswered
# (acknowledging it would drop it unseen); the first stays as it was
REUSED=20261119212300123
mk plain "$MN" $REUSED 2081 "DataTime=20261119212300;RestartTime=20261119212000" >"$T/q1.txt"
mk plain "$MN" $REUSED 2081 "DataTime=20261119212300;RestartTime=20261119211000" >"$T/q2.txt"
send "$T/pki" "$MN" "$T/q1.txt" "a 9014 for the first use of the QN" answered "$(ack_of $REUSED)"
cat "$T/q2.txt" "$T/m1.txt" >"$T/reused.txt" # m1: the sentinel
send "$T/pki" "$MN" "$T/reused.txt" "the 9014 of the sentinel after a reused QN" \
  answered "$(ack_of $SENTINEL_QN)"
acked "$(cat "$T/answer")" $REUSED && rxfail "a reused QN with other content was acknowledged"
grep -q "refused: QN $REUSED CN 2081: QN $REUSED is already stored with other content (packet 1 differs)" \
  "$RX_LOG" || rxfail "the reused QN was not refused with its reason"
send "$T/pki" "$MN" "$T/q1.txt" "a 9014 for the first content resent" answered "$(ack_of $REUSED)"

# ---- signed ledger records: a chain of three, one of them split in packets
ZERO=0000000000000000000000000000000000000000000000000000000000000000
KEY="$T/pki/gateway-$MN.key"
mk signed "$KEY" "$MN" 20261120213000001 6011 1 $ZERO \
  "DataTime=20261120213000,Scale=wb-01,TicketNo=1042,Plate=黑A12345,Category=engineering,Kind=concrete,GrossKg=31800,TareKg=14200,NetKg=17600,Dest=recycling,DestName=Harbin%20recycling%2C%20yard%202" \
  , >"$T/l1.txt" 2>"$T/h1"
mk signed "$KEY" "$MN" 20261120213000002 6012 2 "$(cat "$T/h1")" \
  "DataTime=20261120213100,Scale=wb-01,TicketNo=1043,Plate=黑A54321,Material=rebar,GreenCert=1,GrossKg=42100,TareKg=15000,NetKg=27100" \
  , >"$T/l2.txt" 2>"$T/h2"
eq=$("$PY" -c 'print(";".join("EqId=eq-%02d,EnergyKwh=%d.5,FuelL=%d.0,RunS=%d" % (i, 40 * i, 3 * i, 1000 * i) for i in range(1, 41)))')
mk signed "$KEY" "$MN" 20261120213000003 6031 3 "$(cat "$T/h2")" \
  "DataTime=20261120000000,EnergyKwh=1520.5,FuelL=310.2,CarbonKg=1683.0,EfGrid=0.5703,EfFuel=2.63;$eq" \
  ";" >"$T/l3.txt" 2>"$T/h3"
[ "$(grep -c "PNUM=" "$T/l3.txt")" -ge 2 ] || fail "the daily summary did not split: $(cat "$T/l3.txt")"
cat "$T/l1.txt" "$T/l2.txt" "$T/l3.txt" "$T/m1.txt" >"$T/ledger.txt" # m1: the sentinel
send "$T/pki" "$MN" "$T/ledger.txt" "the 9014 of the sentinel after the ledger records" \
  answered "$(ack_of $SENTINEL_QN)"
r=$(cat "$T/answer")
for qn in 20261120213000001 20261120213000002 20261120213000003; do
  acked "$r" $qn || rxfail "ledger record $qn not acknowledged: $r"
done
[ "$(printf '%s\n' "$r" | grep -c "QN=20261120213000003;ST=91;CN=9014")" = 1 ] ||
  rxfail "a split message must be acknowledged once: $r"

# A record whose Hash does not match (tampered after signing), one signed by
# another site's key, and one that does not continue the chain: refused.
mk tamper "$T/l1.txt" NetKg=17600 NetKg=1760 20261120213000009 >"$T/tampered.txt"
mk signed "$T/pki/gateway-$OTHER.key" "$MN" 20261120213000010 6021 4 "$(cat "$T/h3")" \
  "DataTime=20261120221500,AlarmId=417,State=on,Level=alarm,Rule=noise-night-laeq,Device=noise-01,PolId=LA,Value=58.3,Limit=55,WindowS=1200" \
  , >"$T/foreign.txt" 2>/dev/null
mk signed "$KEY" "$MN" 20261120213000011 6021 4 "$(cat "$T/h1")" \
  "DataTime=20261120221500,AlarmId=417,State=on,Level=alarm,Rule=noise-night-laeq,Device=noise-01,PolId=LA,Value=58.3,Limit=55,WindowS=1200" \
  , >"$T/broken.txt" 2>/dev/null
cat "$T/tampered.txt" "$T/foreign.txt" "$T/broken.txt" "$T/m1.txt" >"$T/bad-ledger.txt" # m1: the sentinel
send "$T/pki" "$MN" "$T/bad-ledger.txt" "the 9014 of the sentinel after the bad ledger records" \
  answered "$(ack_of $SENTINEL_QN)"
r=$(grep -v "$(ack_of $SENTINEL_QN)" "$T/answer" || true)
printf '%s\n' "$r" | grep -q "CN=9014" && rxfail "a bad ledger record was acknowledged: $r"
grep -q "Hash of Seq 1 does not match" "$RX_LOG" || rxfail "tampered record not refused"
grep -q "Sig of Seq 4 does not verify" "$RX_LOG" || rxfail "foreign signature not refused"
grep -q "chain broken: Prev of Seq 4 is not the Hash of Seq 3" "$RX_LOG" ||
  rxfail "broken chain not refused"

# A gap: Seq 5 arrives before Seq 4. It is stored (pending) and acknowledged,
# and the receiver asks for Seq 4 with a 6081 pull; once Seq 4 comes, both
# are chained.
mk signed "$KEY" "$MN" 20261120213000012 6021 4 "$(cat "$T/h3")" \
  "DataTime=20261120221500,AlarmId=417,State=on,Level=alarm,Rule=noise-night-laeq,Device=noise-01,PolId=LA,Value=58.3,Limit=55,WindowS=1200" \
  , >"$T/l4.txt" 2>"$T/h4"
mk signed "$KEY" "$MN" 20261120213000013 6021 5 "$(cat "$T/h4")" \
  "DataTime=20261120223500,AlarmId=417,State=off,Level=alarm,Rule=noise-night-laeq,Device=noise-01,PolId=LA,Value=52.1,Limit=55,WindowS=1200" \
  , >"$T/l5.txt" 2>"$T/h5"
send "$T/pki" "$MN" "$T/l5.txt" "a 9014 and a 6081 pull for the record after a gap" \
  answered "$(ack_of 20261120213000013)" "CN=6081;PW=123456;MN=$MN;Flag=5;CP=&&BeginSeq=4,EndSeq=4&&"
r=$(cat "$T/answer")
acked "$r" 20261120213000013 || rxfail "record after a gap not acknowledged: $r"
printf '%s\n' "$r" | grep -q "CN=6081;PW=123456;MN=$MN;Flag=5;CP=&&BeginSeq=4,EndSeq=4&&" ||
  rxfail "no 6081 pull for the gap: $r"
"$BIN/sitegate-rx" sites --db "$RX_TARGET" --json >"$T/sites.json"
[ "$(json 'j["ledger_seq"], j["ledger_pending"]' <"$T/sites.json")" = "(3, 1)" ] ||
  rxfail "ledger before the gap closes: $(cat "$T/sites.json")"
send "$T/pki" "$MN" "$T/l4.txt" "a 9014 for the pulled record" answered "$(ack_of 20261120213000012)"
r=$(cat "$T/answer")
acked "$r" 20261120213000012 || rxfail "the pulled record was not acknowledged: $r"
"$BIN/sitegate-rx" sites --db "$RX_TARGET" --json >"$T/sites.json"
[ "$(json 'j["ledger_seq"], j["ledger_pending"]' <"$T/sites.json")" = "(5, 0)" ] ||
  rxfail "ledger after the gap closed: $(cat "$T/sites.json")"

# ---- an hourly seal over the hour's frames: incomplete, pulled, verified
mk plain "$MN" 20261120220100001 2051 "DataTime=20261120220000;a34002-Avg=91.0,a34002-Flag=N" >"$T/e1.txt"
mk plain "$MN" 20261120220200001 2051 "DataTime=20261120220100;a34002-Avg=93.5,a34002-Flag=N" >"$T/e2.txt"
mk plain "$MN" 20261120230000001 2061 "DataTime=20261120220000;a34002-Avg=92.2,a34002-Flag=N" >"$T/e3.txt"
set -- $(mk digest "$T/e1.txt" "$T/e2.txt" "$T/e3.txt")
mk signed "$KEY" "$MN" 20261120230500001 6041 6 "$(cat "$T/h5")" \
  "DataTime=20261120220000,Frames=$1,Digest=$2" , >"$T/seal.txt" 2>"$T/h6"
cat "$T/e1.txt" "$T/e3.txt" "$T/seal.txt" >"$T/hour.txt" # e2 is "lost"
send "$T/pki" "$MN" "$T/hour.txt" "a 9014 for the seal and the pulls of the missing minutes and hour" \
  answered "$(ack_of 20261120230500001)" \
  "CN=2051;PW=123456;MN=$MN;Flag=5;CP=&&BeginTime=20261120212100,EndTime=20261120215900&&" \
  "CN=2011;PW=123456;MN=$MN;Flag=5;CP=&&BeginTime=20261120220000,EndTime=20261120225959&&"
r=$(cat "$T/answer")
acked "$r" 20261120230500001 || rxfail "seal not acknowledged: $r"
printf '%s\n' "$r" | grep -q "CN=2051;PW=123456;MN=$MN;Flag=5;CP=&&BeginTime=20261120212100,EndTime=20261120215900&&" ||
  rxfail "no pull for the minutes missing since 21:20: $r"
printf '%s\n' "$r" | grep -q "CN=2011;PW=123456;MN=$MN;Flag=5;CP=&&BeginTime=20261120220000,EndTime=20261120225959&&" ||
  rxfail "no pull for the incompletely sealed hour: $r"
"$BIN/sitegate-rx" sites --db "$RX_TARGET" --json >"$T/sites.json"
[ "$(json 'j["seals_incomplete"]' <"$T/sites.json")" = 1 ] || rxfail "seal: $(cat "$T/sites.json")"
send "$T/pki" "$MN" "$T/e2.txt" "a 9014 for the pulled frame" answered "$(ack_of 20261120220200001)"
r=$(cat "$T/answer")
acked "$r" 20261120220200001 || rxfail "pulled frame not acknowledged: $r"
"$BIN/sitegate-rx" sites --db "$RX_TARGET" --json >"$T/sites.json"
[ "$(json 'j["seals_verified"], j["seals_incomplete"], j["seals_mismatch"]' <"$T/sites.json")" = "(1, 0, 0)" ] ||
  rxfail "seal not verified once the hour was complete: $(cat "$T/sites.json")"

# ---- sites and export show what arrived
"$BIN/sitegate-rx" sites --db "$RX_TARGET" >"$T/sites.txt"
grep -q "^$MN " "$T/sites.txt" || rxfail "sites: $(cat "$T/sites.txt")"
grep -q "^$OTHER " "$T/sites.txt" && rxfail "a site that never connected is listed"
# 6 refused frames and ledger records, and the reused QN
[ "$(json 'j["refused"] == 7' <"$T/sites.json")" = True ] || rxfail "refusals: $(cat "$T/sites.json")"
"$BIN/sitegate-rx" export --db "$RX_TARGET" --site "$MN" --since 2026-11-20T21:00 --until 2026-11-20T22:00 \
  >"$T/export.csv"
[ "$(grep -c ",$MN,20261120212000123,2051,minute data," "$T/export.csv")" = 1 ] ||
  rxfail "the duplicate must be stored once: $(cat "$T/export.csv")"
"$BIN/sitegate-rx" export --db "$RX_TARGET" --site "$MN" --since 2026-11-20 --cn 6011 --json >"$T/export.json"
[ "$(json 'j["records"][0]["Plate"], j["ledger_seq"], j["ledger_state"]' <"$T/export.json")" = \
  "('黑A12345', 1, 'chained')" ] || rxfail "export of the waste ticket: $(cat "$T/export.json")"
"$BIN/sitegate-rx" export --db "$RX_TARGET" --site "$OTHER" --since 0000000000 >"$T/other.csv"
[ "$(wc -l <"$T/other.csv")" = 1 ] || rxfail "frames for $OTHER were stored: $(cat "$T/other.csv")"

# ---- check: one line per frame
cat "$T/m1.txt" "$T/badcrc.txt" "$T/noqn.txt" "$T/l1.txt" "$T/tampered.txt" >"$T/check.txt"
printf '##0004\r\n' >>"$T/check.txt"
"$BIN/sitegate-rx" check "$T/check.txt" >"$T/check.out" 2>/dev/null && fail "check exited 0 with bad frames"
cat >"$T/check.want" <<EOF
ok CN=2051 ST=39 MN=$MN
bad: CRC 1C81 expected 1C80
ok CN=2051 ST=39 MN=$MN
ok CN=6011 ST=39 MN=$MN
bad: Hash of Seq 1 does not match SHA-256(Prev || record)
bad: too short (6 bytes)
EOF
diff "$T/check.want" "$T/check.out" >&2 || fail "check output differs"
"$BIN/sitegate-rx" check --cert "$T/pki/gateway-$OTHER.crt" "$T/l1.txt" >"$T/check.out" 2>/dev/null &&
  fail "check --cert accepted a signature by another key"
grep -q "bad: Sig of Seq 1 does not verify" "$T/check.out" || fail "check --cert: $(cat "$T/check.out")"
"$BIN/sitegate-rx" check --cert "$T/pki/gateway-$MN.crt" "$T/l1.txt" >/dev/null 2>&1 ||
  fail "check --cert refused a good signature"

# ---- /metrics counts what happened
curl -sf "http://127.0.0.1:$METRICS_PORT/metrics" >"$T/metrics.txt" || rxfail "no /metrics"
metric() { "$PY" -c '
import sys
for l in open(sys.argv[1]):
    if l.startswith(sys.argv[2] + " "):
        print(int(float(l.split()[1])))' "$T/metrics.txt" "$1"; }
# 10 messages, and the first use of the reused QN
[ "$(metric 'sitegate_rx_messages_total{outcome="stored"}')" = 11 ] || rxfail "stored: $(cat "$T/metrics.txt")"
[ "$(metric 'sitegate_rx_messages_total{outcome="duplicate"}')" -ge 4 ] || rxfail "duplicates: $(cat "$T/metrics.txt")"
# refusals by reason: the other CA's certificate, the other MN, the bad CRC,
# the frame without QN, the tampered and foreign-signed records, the broken chain
refusals() { metric "sitegate_rx_refusals_total{reason=\"$1\"}"; }
[ "$(refusals tls)" -ge 1 ] && [ "$(refusals mn)" -ge 1 ] && [ "$(refusals frame)" -ge 1 ] &&
  [ "$(refusals no_qn)" -ge 1 ] && [ "$(refusals signature)" -ge 2 ] && [ "$(refusals chain)" -ge 1 ] &&
  [ "$(refusals seal)" = 0 ] || rxfail "refusals by reason: $(grep refusals "$T/metrics.txt")"
[ "$(metric sitegate_rx_db_batches_total)" -ge 1 ] || rxfail "batches: $(cat "$T/metrics.txt")"
[ "$(metric sitegate_rx_commit_seconds_count)" = "$(metric sitegate_rx_db_batches_total)" ] ||
  rxfail "commit histogram: $(cat "$T/metrics.txt")"
[ "$(metric sitegate_rx_db_up)" = 1 ] || rxfail "db_up: $(cat "$T/metrics.txt")"
code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$METRICS_PORT/other")
[ "$code" = 404 ] || rxfail "/other answered $code"

# ---- a clean stop
kill -TERM "$RX_PID"
rc=0
wait "$RX_PID" || rc=$?
[ $rc -eq 0 ] || rxfail "sitegate-rx exited $rc after SIGTERM"
grep -q "ERROR: AddressSanitizer\|runtime error" "$RX_LOG" && rxfail "sanitizer report"
exit 0
