# The backfill (protocol/RX-SCHEMA.md "Frames stored before their tables"):
# frames stored before the decoded tables existed get their rows afterwards,
# exactly those a receiver decodes as they come.
#
# A site uploads over TLS (OpenSSL's s_client) minute, hour and day figures
# and signed records of every kind (a split one among them), its chain
# with a gap (pending, then chained), a record broken once its gap closed
# and one pending at the end; what the receiver decoded as they came is
# kept. Then every decoded row and the backfill's bookkeeping are deleted,
# as in a database made before the tables: `sitegate-rx backfill --step 2`
# gives them all back (several steps, a split message among them), equal
# row for row, the ledger and its verification states untouched, and names
# a stored frame that is no data segment, leaving it. Deleted
# again, a receiver's start gives them back by itself while idle; a second
# start decodes nothing. On PostgreSQL the command waits its turn while the
# backfill's lock is held elsewhere. Last, the version-2 fixture (tests/data/rx-v2/)
# with its decoded tables dropped and its version set back to 1 (a
# database from before the decoded tables) gets the rows that the same
# fixture gets when converted with its own.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/pg.sh"
rx_backend # RX_DB=sqlite (default) or pg: the receiver's back end
REPO=$(cd "$HERE/../.." && pwd)
MN=HLJ-HRB-0007

make_pki "$T/pki" "$MN"
KEY="$T/pki/gateway-$MN.key"

# ---- the upload: every kind of message the receiver decodes
cat >"$T/mk.py" <<'PY'
import sys
from hj212 import frame, head, signed

mn, key = sys.argv[1], sys.argv[2]
out = sys.stdout.buffer
ZERO = "0" * 64
def plain(qn, cn, cp):
    out.write(frame(head(mn, qn, cn) + cp + "&&"))
plain("20261120212000001", "2051", "DataTime=20261120212000;a34002-Min=80.1,a34002-Avg=88.5,"
      "a34002-Max=97.0,a34002-Flag=N;LA-Avg=63.2,LA-Max=71.4,LA-Flag=N;a01001-Avg=-18.5,a01001-Flag=N")
plain("20261120212100001", "2051", "DataTime=20261120212100;a34002-Avg=91.0,a34002-Flag=N;"
      "a99999-Avg=5.0,a99999-Flag=N")  # a pollutant without columns
plain("20261120212200001", "2051", "DataTime=20261120212200;a34002-Flag=B;LA-Avg=x,LA-Flag=D")
plain("20261120212300001", "2051", "a34002-Avg=70.0")  # no DataTime: no row
plain("20261120220000001", "2061", "DataTime=20261120210000;a34002-Avg=89.9,a34002-Flag=N;"
      "LA-Avg=62.0,LA-Max=75.5,LA-Flag=N")
plain("20261121000500001", "2031", "DataTime=20261120000000;a34002-Avg=77.7,a34002-Flag=N")
plain("20261120212400001", "2011", "DataTime=20261120212400;a34002-Rtd=88.0,a34002-Flag=N")
seq, h = 0, {0: ZERO}
def rec(qn, cn, body, sep=",", seq_no=None, prev=None):
    global seq
    s = seq_no if seq_no is not None else seq + 1
    fr, hh = signed(key, mn, qn, cn, str(s), prev if prev is not None else h[s - 1], body, sep)
    h[s] = hh
    seq = max(seq, s)
    out.write(fr)
rec("20261120213000001", "6011", "DataTime=20261120213000,LedgerId=11,Source=scale,Scale=wb-01,"
    "TicketNo=1042,Plate=黑A12345,Category=engineering,Kind=concrete,GrossKg=31800,TareKg=14200,"
    "NetKg=17600,Dest=recycling,DestName=Harbin%20recycling%2C%20yard%202")
rec("20261120213000002", "6012", "DataTime=20261120213100,Scale=wb-01,TicketNo=1043,"
    "Plate=黑A54321,Material=rebar,GreenCert=1,Dir=in,GrossKg=42100,TareKg=15000,NetKg=27100")
eq = ";".join("EqId=eq-%02d,EnergyKwh=%d.5,FuelL=%d.0,RunS=%d" % (i, 40 * i, 3 * i, 1000 * i)
              for i in range(1, 41))
rec("20261120213000003", "6031", "DataTime=20261120000000,EnergyKwh=1520.5,FuelL=310.2,"
    "CarbonKg=1683.0,EfGrid=0.5703,EfFuel=2.63;" + eq, ";")  # split in packets
rec("20261120213000004", "6051", "DataTime=20261120080000,AuditId=3,Code=HRB-EX-0042,Action=add,"
    "Stage=IV,PowerKw=118.5,Fuel=diesel,Label=green,Terminal=T-88,Type=excavator,Owner=Longjiang,"
    "By=admin,Reason=new%20on%20site")
rec("20261120213000005", "6052", "DataTime=20261120081500,MoveId=9,Code=HRB-EX-0042,Dir=in,"
    "Source=gate,Gate=gate-01,GateNo=311,By=gate")
mach = ";".join("Code=HRB-EX-%04d,Registered=%d,Stage=IV,PowerKw=118.5,OnsiteH=9.5,EngineH=%d.25,"
                "IdleShare=0.21,FuelL=%d.5,Co2Kg=%d.3,NoxKg=0.41,PmKg=0.012" % (i, i % 2, i, 10 * i, 30 * i)
                for i in range(40, 44))
rec("20261120213000006", "6053", "DataTime=20261120000000,Machines=4,FuelL=210.0,Co2Kg=552.3,"
    "EfFuel=2.63;" + mach, ";")
rec("20261120213000007", "6061", "DataTime=20261120000000,Name=%E6%B5%8B%E8%AF%95%E5%B7%A5%E5%9C%B0,"
    "AreaCastM2=400,AreaPrefabM2=400,Lat=45.8032,Lon=126.535")
alarm = "AlarmId=417,State=on,Level=alarm,Rule=noise.night_lmax,Device=noise-01,PolId=LA,Value=58.3,Limit=55,WindowS=1200"
# a gap: 9 before 8 (pending, then chained); 11 with a Prev that is not
# 10's (pending, broken once 10 closes its gap); 13 after a gap never filled
fr8, h[8] = signed(key, mn, "20261120221500008", "6021", "8", h[7], "DataTime=20261120221500," + alarm)
rec("20261120221500009", "6021", "DataTime=20261120223500," + alarm.replace("on,", "off,"),
    seq_no=9, prev=h[8])
out.write(fr8)
rec("20261120224000011", "6021", "DataTime=20261120224000," + alarm, seq_no=11, prev=h[8])
rec("20261120224000010", "6021", "DataTime=20261120223900," + alarm, seq_no=10, prev=h[9])
rec("20261120225000013", "6021", "DataTime=20261120225000," + alarm, seq_no=13, prev=h[11])
PY
PYTHONPATH="$HERE" "$PY" "$T/mk.py" "$MN" "$KEY" >"$T/upload.txt" || fail "making the frames"
[ "$(grep -c "PNUM=" "$T/upload.txt")" -ge 2 ] || fail "nothing split: $(grep -c "" "$T/upload.txt") frames"
LAST_QN=20261120225000013

RX_PORT=$(free_port tcp)
METRICS_PORT=$(free_port tcp)
RX_LOG="$T/rx.log"
diagnose() { echo "--- sitegate-rx log (last 20 lines)"; tail -20 "$RX_LOG"; }
start_rx() {
  "$BIN/sitegate-rx" --listen "127.0.0.1:$RX_PORT" --ca "$T/pki/ca.crt" --cert "$T/pki/server.crt" \
    --key "$T/pki/server.key" --db "$RX_TARGET" --metrics "127.0.0.1:$METRICS_PORT" >>"$RX_LOG" 2>&1 &
  RX_PID=$!
  PIDS="$PIDS $RX_PID"
  wait_for 60 "sitegate-rx listening (start $1)" rx_listening "$1"
}
rx_listening() {
  alive "$RX_PID" "sitegate-rx" || { tail -5 "$RX_LOG" >&2; return 1; }
  [ "$(grep -c "listening on" "$RX_LOG")" -ge "$1" ]
}
stop_rx() {
  kill -TERM "$RX_PID"
  rc=0
  wait "$RX_PID" || rc=$?
  [ $rc -eq 0 ] || fail "sitegate-rx exited $rc: $(tail -3 "$RX_LOG")"
}

start_rx 1
rx_send "$RX_PORT" "$MN" "$T/upload.txt" "$T/answer"
all_acked() { grep -q "QN=$LAST_QN;ST=91;CN=9014" "$T/answer"; }
wait_for 60 "the 9014 of the last record (one connection is answered in order)" all_acked
rx_send_end
[ "$(grep -c "CN=9014" "$T/answer")" = 19 ] || fail "acknowledged: $(grep -c "CN=9014" "$T/answer") of 19: $(cat "$T/answer")"
stop_rx

# ---- what the receiver decoded as the messages came
TABLES=$(rx_sql "SELECT tbl FROM rx_backfill ORDER BY tbl")
[ "$(echo "$TABLES" | wc -l)" -ge 13 ] || fail "rx_backfill: $(rx_sql "SELECT * FROM rx_backfill")"
dump() { # dump FILE: every decoded row, the ledger and what its records decode to
  local tb
  for tb in $TABLES; do
    echo "== $tb"
    rx_sql "SELECT * FROM $tb" | sort
  done >"$1"
  { echo "== ledger"; rx_sql "SELECT mn, seq, cn, qn, prev, hash, sig, cert, state, received_ms FROM ledger" | sort
    echo "== states"; rx_sql "SELECT l.seq, l.state, COUNT(*) FROM ledger l JOIN (
      SELECT mn, seq FROM rx_waste UNION ALL SELECT mn, seq FROM rx_deliveries
      UNION ALL SELECT mn, seq FROM rx_alarms UNION ALL SELECT mn, seq FROM rx_energy_equipment
      UNION ALL SELECT mn, seq FROM rx_machinery_day_machine UNION ALL SELECT mn, seq FROM rx_site_profile) d
      ON d.mn = l.mn AND d.seq = l.seq GROUP BY l.seq, l.state" | sort -n; } >>"$1"
}
dump "$T/live"
rows() { rx_sql "SELECT COUNT(*) FROM $1"; }
[ "$(rows rx_env_minute)" = 3 ] && [ "$(rows rx_env_hour)" = 1 ] && [ "$(rows rx_env_day)" = 1 ] &&
  [ "$(rows rx_energy_equipment)" = 40 ] && [ "$(rows rx_machinery_day_machine)" = 4 ] &&
  [ "$(rows rx_alarms)" = 5 ] && [ "$(rows rx_site_profile)" = 1 ] || fail "decoded as they came: $(cat "$T/live")"
for s in "8|chained" "11|broken" "13|pending"; do
  grep -q "^$s|1\$" "$T/live" || fail "no $s record among the decoded ones: $(sed -n '/== states/,$p' "$T/live")"
done

forget() { # every decoded row and the backfill's bookkeeping gone, as before the tables
  local tb
  for tb in $TABLES; do rx_sql "DELETE FROM $tb"; done
  rx_sql "DROP TABLE rx_backfill"
  [ "$(rows rx_alarms)" = 0 ] || fail "rows left"
}
same() { # same WHAT: the decoded rows and the ledger are those decoded as they came
  dump "$T/now"
  diff "$T/live" "$T/now" >"$T/diff" || fail "$1: $(head -20 "$T/diff")"
}

# ---- the command, in steps of two messages; a stored frame that is no
# data segment (a damaged database) is named and left, the rest decoded
forget
case ${RX_DB:-sqlite} in
  pg) bad="convert_to('QN=20261120230000999;CN=2051;CP=&&DataTime', 'UTF8')" ;;
  *) bad="CAST('QN=20261120230000999;CN=2051;CP=&&DataTime' AS BLOB)" ;;
esac
rx_sql "INSERT INTO frames(mn, qn, pno, pnum, st, cn, t, data, received_ms)
  VALUES('$MN', '20261120230000999', 1, 1, '39', '2051', NULL, $bad, 0)"
"$BIN/sitegate-rx" backfill --db "$RX_TARGET" --step 2 >"$T/backfill.out" 2>"$T/backfill.err" ||
  fail "backfill failed: $(cat "$T/backfill.err")"
# the 19 messages but the 2011, which no table takes: 18 decoded
grep -q "^backfill: done: 18 stored messages decoded ([0-9]* rows, 1 not rebuilt)" "$T/backfill.out" ||
  fail "backfill: $(cat "$T/backfill.out" "$T/backfill.err")"
grep -q "$MN: QN 20261120230000999 (frame [0-9]*) cannot be rebuilt (packet 1: .*): not decoded" \
  "$T/backfill.err" || fail "the damaged frame not named: $(cat "$T/backfill.err")"
[ "$(grep -c "^backfill: up to frame" "$T/backfill.out")" -ge 1 ] || fail "no progress: $(cat "$T/backfill.out")"
same "after sitegate-rx backfill"
[ "$(rx_sql "SELECT COUNT(*) FROM rx_backfill WHERE done <> upto OR upto = 0")" = 0 ] ||
  fail "bookkeeping: $(rx_sql "SELECT * FROM rx_backfill")"
"$BIN/sitegate-rx" backfill --db "$RX_TARGET" >"$T/backfill2.out" 2>&1 || fail "backfill again failed"
grep -q "^backfill: done: 0 stored messages decoded" "$T/backfill2.out" ||
  fail "decoded again: $(cat "$T/backfill2.out")"

# ---- a receiver's start does it while idle; the next start has nothing to do
forget
marks_before=$(rx_sql "SELECT COUNT(*) FROM frames")
start_rx 2
backfilled() { grep -q "backfill: done: 18 stored messages decoded" "$RX_LOG"; }
wait_for 60 "the receiver's backfill done" backfilled
metric() { curl -sf "http://127.0.0.1:$METRICS_PORT/metrics" | awk -v m="$1" '$1 == m { print $2 }'; }
[ "$(metric sitegate_rx_backfill_messages_total)" = 18 ] && [ "$(metric sitegate_rx_backfill_left)" = 0 ] ||
  fail "metrics: $(curl -sf "http://127.0.0.1:$METRICS_PORT/metrics" | grep backfill)"
stop_rx
same "after a receiver's start"
rx_sql "SELECT * FROM rx_backfill ORDER BY tbl" >"$T/marks1"
idle_before=$(grep -c "backfill: nothing to decode" "$RX_LOG" || true) # the first start's
start_rx 3
nothing() { [ "$(grep -c "backfill: nothing to decode" "$RX_LOG")" = $((idle_before + 1)) ]; }
wait_for 60 "the third start's backfill finding nothing" nothing
stop_rx
same "after a second start"
rx_sql "SELECT * FROM rx_backfill ORDER BY tbl" >"$T/marks2"
cmp -s "$T/marks1" "$T/marks2" || fail "the bookkeeping changed: $(diff "$T/marks1" "$T/marks2")"
[ "$(rx_sql "SELECT COUNT(*) FROM frames")" = "$marks_before" ] || fail "frames changed"
grep -q "ERROR: AddressSanitizer\|runtime error" "$RX_LOG" && fail "sanitizer report"

# ---- PostgreSQL: receivers and the command sharing a database take turns
# (the step's advisory lock); held here by a psql session, the command
# waits, decodes nothing meanwhile, and ends once it is released
if [ "${RX_DB:-sqlite}" = pg ]; then
  forget
  mkfifo "$T/psql.in"
  "$PG_BIN/psql" -X -q -At -h "$PG_DIR" -p "$PG_PORT" -U "$PG_ROLE" -d "$PG_DB" <"$T/psql.in" \
    >"$T/psql.out" 2>&1 &
  PSQL_PID=$!
  PIDS="$PIDS $PSQL_PID"
  exec 4>"$T/psql.in"
  echo "BEGIN; SELECT pg_advisory_xact_lock(21320, 2);" >&4
  held() { [ "$(pg_sql "SELECT COUNT(*) FROM pg_locks WHERE locktype = 'advisory' AND classid = 21320
    AND objid = 2 AND granted")" = 1 ]; }
  wait_for 30 "psql holding the backfill's lock" held
  "$BIN/sitegate-rx" backfill --db "$RX_TARGET" >"$T/turns.out" 2>"$T/turns.err" &
  BF_PID=$!
  PIDS="$PIDS $BF_PID"
  waiting() { alive "$BF_PID" "sitegate-rx backfill" && grep -q "taking turns" "$T/turns.err"; }
  wait_for 30 "sitegate-rx backfill waiting for its turn" waiting
  [ "$(rows rx_alarms)" = 0 ] || fail "decoded while another held the lock"
  echo "COMMIT;" >&4
  exec 4>&-
  wait "$BF_PID" || fail "backfill after its turn: $(cat "$T/turns.err")"
  grep -q "^backfill: done: 18 stored messages decoded" "$T/turns.out" || fail "turns: $(cat "$T/turns.out")"
  same "after taking turns"
  wait "$PSQL_PID" || true
fi

# ---- a database from before the decoded tables: the version-2 fixture with
# them dropped and version 1, against the same fixture converted with its own
DATA="$REPO/tests/data/rx-v2"
use_db() { # use_db NAME: RX_TARGET and rx_sql on a database of its own, the fixture in it
  case ${RX_DB:-sqlite} in
    pg)
      PG_DB=$1
      "$PG_BIN/createdb" -h "$PG_DIR" -p "$PG_PORT" -U "$PG_ROLE" "$PG_DB" || fail "createdb $1"
      RX_TARGET="postgresql://$PG_ROLE@/$PG_DB?host=$PG_DIR&port=$PG_PORT"
      "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$PG_DIR" -p "$PG_PORT" -U "$PG_ROLE" -d "$PG_DB" \
        -f "$DATA/rx-v2-pg.sql" >"$T/restore.log" 2>&1 || fail "restore: $(tail -3 "$T/restore.log")"
      ;;
    *)
      RX_TARGET="$T/$1.db"
      cp "$DATA/rx-v2.db" "$RX_TARGET"
      ;;
  esac
}
use_db v2_converted
TABLES=$(rx_sql "SELECT tbl FROM rx_backfill ORDER BY tbl" 2>/dev/null || true)
[ -z "$TABLES" ] || fail "the fixture has rx_backfill"
"$BIN/sitegate-rx" backfill --db "$RX_TARGET" >"$T/v2a.out" 2>&1 || fail "backfill of the fixture: $(cat "$T/v2a.out")"
grep -q "rx_env_minute: converted" "$T/v2a.out" || fail "not converted: $(cat "$T/v2a.out")"
TABLES=$(rx_sql "SELECT tbl FROM rx_backfill ORDER BY tbl")
dump "$T/live"
[ "$(rows rx_env_minute)" -ge 3 ] && [ "$(rows rx_site_profile)" = 1 ] || fail "the fixture: $(cat "$T/live")"
use_db v1
for tb in $TABLES; do rx_sql "DROP TABLE IF EXISTS $tb"; done
case ${RX_DB:-sqlite} in
  pg) rx_sql "DELETE FROM rx_schema; INSERT INTO rx_schema VALUES(1)" ;;
  *) rx_sql "PRAGMA user_version=1" ;;
esac
"$BIN/sitegate-rx" backfill --db "$RX_TARGET" >"$T/v1.out" 2>&1 || fail "backfill of version 1: $(cat "$T/v1.out")"
grep -q "converted" "$T/v1.out" && fail "version 1 converted: $(cat "$T/v1.out")"
same "a version-1 database backfilled against the version-2 fixture converted"
exit 0
