# A receiver database of schema version 2, made by sitegate-rx as main was
# before the wide environment tables (tests/data/rx-v2/make.sh: rx-v2.db,
# or rx-v2-pg.sql with RX_DB=pg), opened by this one: rx_env_minute,
# rx_env_hour and rx_env_day become one row per site and time with every
# figure the old rows held in its column, a pollutant without columns is
# left out (its frame keeps it), frames and ledger are untouched, the
# version is 3, and a second start converts nothing.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/pg.sh"
rx_backend # RX_DB=sqlite (default) or pg: the receiver's back end
REPO=$(cd "$HERE/../.." && pwd)
DATA="$REPO/tests/data/rx-v2"
CODES="a34001 a34002 a34004 a01001 a01002 a01006 a01007 a01008 LA"

case ${RX_DB:-sqlite} in
  pg) "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$PG_DIR" -p "$PG_PORT" -U "$PG_ROLE" -d "$PG_DB" \
    -f "$DATA/rx-v2-pg.sql" >"$T/restore.log" 2>&1 || fail "restore: $(tail -3 "$T/restore.log")" ;;
  *) cp "$DATA/rx-v2.db" "$RX_TARGET" ;;
esac
version() {
  case ${RX_DB:-sqlite} in
    pg) pg_sql "SELECT MAX(version) FROM rx_schema" ;;
    *) sqlite3 "$RX_TARGET" "PRAGMA user_version" ;;
  esac
}
[ "$(version)" = 2 ] || fail "the fixture is not version 2: $(version)"
# a pollutant this receiver has no columns for, as an older one stored it
rx_sql "INSERT INTO rx_env_minute(mn, t, pol, vavg, flag)
  SELECT mn, t, 'a99999', 5, 'N' FROM rx_env_minute WHERE pol = 'a34002' LIMIT 1"

# The old rows of the known codes, as text: what the new columns must give
# back (PostgreSQL's are now 4-byte reals: the old doubles as such).
old_rows() { # old_rows TABLE
  rx_sql "SELECT mn, t, pol, CAST(vmin AS REAL), CAST(vavg AS REAL), CAST(vmax AS REAL), flag FROM $1
    WHERE pol IN ('${CODES// /\', \'}') ORDER BY mn, t, pol"
}
# The new rows unpivoted to the old shape (a code whose four columns are NULL
# was not in the frame).
new_rows() { # new_rows TABLE
  local sql="" c l
  for c in $CODES; do
    l=$(echo "$c" | tr '[:upper:]' '[:lower:]')
    [ -n "$sql" ] && sql="$sql UNION ALL "
    sql="$sql SELECT mn, t, '$c' AS pol, ${l}_min, ${l}_avg, ${l}_max, ${l}_flag FROM $1
      WHERE ${l}_min IS NOT NULL OR ${l}_avg IS NOT NULL OR ${l}_max IS NOT NULL OR ${l}_flag IS NOT NULL"
  done
  rx_sql "SELECT * FROM ($sql) AS x ORDER BY mn, t, pol"
}
for tb in rx_env_minute rx_env_hour rx_env_day; do
  old_rows "$tb" >"$T/$tb.old"
  rx_sql "SELECT COUNT(DISTINCT mn || '/' || t) FROM $tb WHERE pol <> 'a99999'" >"$T/$tb.keys"
done
[ "$(wc -l <"$T/rx_env_minute.old")" -ge 6 ] || fail "the fixture holds too few minutes: $(cat "$T/rx_env_minute.old")"
frames=$(rx_sql "SELECT COUNT(*) FROM frames")
ledger=$(rx_sql "SELECT COUNT(*) || '/' || MAX(seq) FROM ledger")

make_pki "$T/pki"
RX_PORT=$(free_port tcp)
RX_LOG="$T/rx.log"
run_rx() { # run_rx N: the Nth start, listening, then stopped with SIGTERM
  "$BIN/sitegate-rx" --listen "127.0.0.1:$RX_PORT" --ca "$T/pki/ca.crt" \
    --cert "$T/pki/server.crt" --key "$T/pki/server.key" --db "$RX_TARGET" >>"$RX_LOG" 2>&1 &
  RX_PID=$!
  PIDS="$PIDS $RX_PID"
  wait_for 60 "sitegate-rx listening (start $1)" rx_listening "$1"
  kill -TERM "$RX_PID"
  rc=0
  wait "$RX_PID" || rc=$?
  [ $rc -eq 0 ] || fail "sitegate-rx exited $rc: $(tail -3 "$RX_LOG")"
}
rx_listening() {
  alive "$RX_PID" "sitegate-rx" || { tail -5 "$RX_LOG" >&2; return 1; }
  [ "$(grep -c "listening on" "$RX_LOG")" -ge "$1" ]
}
run_rx 1
[ "$(version)" = 3 ] || fail "version after the conversion: $(version)"
for tb in rx_env_minute rx_env_hour rx_env_day; do
  grep -q "$tb: converted to one row per site and time" "$RX_LOG" || fail "$tb not converted: $(tail -5 "$RX_LOG")"
  new_rows "$tb" >"$T/$tb.new"
  diff "$T/$tb.old" "$T/$tb.new" >"$T/$tb.diff" || fail "$tb converted: $(head -5 "$T/$tb.diff")"
  [ "$(rx_sql "SELECT COUNT(*) FROM $tb")" = "$(cat "$T/$tb.keys")" ] ||
    fail "$tb: $(rx_sql "SELECT COUNT(*) FROM $tb") rows for $(cat "$T/$tb.keys") sites and times"
done
[ "$(rx_sql "SELECT COUNT(*) FROM rx_env_minute WHERE la_flag = 'N' AND la_avg IS NOT NULL")" -ge 1 ] ||
  fail "no noise minute: $(rx_sql "SELECT * FROM rx_env_minute")"
[ "$(rx_sql "SELECT COUNT(*) FROM frames")" = "$frames" ] || fail "frames changed"
[ "$(rx_sql "SELECT COUNT(*) || '/' || MAX(seq) FROM ledger")" = "$ledger" ] || fail "ledger changed"
if [ "${RX_DB:-sqlite}" = pg ]; then # the months kept their partitions; nothing of version 2 is left
  month=$(TZ=Asia/Shanghai date -d "@$(rx_sql "SELECT MIN(t) FROM rx_env_minute")" +%Y%m)
  [ "$(pg_sql "SELECT DISTINCT tableoid::regclass FROM rx_env_minute")" = "rx_env_minute_p$month" ] ||
    fail "minutes not in their month's partition: $(pg_sql "SELECT DISTINCT tableoid::regclass FROM rx_env_minute")"
  [ "$(pg_sql "SELECT COUNT(*) FROM pg_class WHERE relname LIKE 'rx_env_%_v2'")" = 0 ] ||
    fail "version 2 tables left: $(pg_sql "SELECT relname FROM pg_class WHERE relname LIKE 'rx_env_%_v2'")"
  # the primary keys have their plain names again (made while the old
  # tables held them, they were <relation>_pkey1)
  odd=$(pg_sql "SELECT c.relname || ':' || ic.relname FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid
    JOIN pg_class c ON c.oid = i.indrelid WHERE i.indisprimary AND c.relname LIKE 'rx_env_%'
    AND ic.relname <> c.relname || '_pkey'")
  [ -z "$odd" ] || fail "primary keys not named <relation>_pkey: $odd"
  for ix in rx_env_minute_pkey rx_env_hour_pkey rx_env_day_pkey "rx_env_minute_p${month}_pkey"; do
    [ "$(pg_sql "SELECT COUNT(*) FROM pg_class WHERE relname = '$ix' AND relkind IN ('i', 'I')")" = 1 ] ||
      fail "no index $ix: $(pg_sql "SELECT relname FROM pg_class WHERE relname LIKE 'rx_env_%pkey%'")"
  done
else
  [ "$(sqlite3 "$RX_TARGET" "SELECT COUNT(*) FROM sqlite_master WHERE name LIKE 'rx_env_%_v2'")" = 0 ] ||
    fail "version 2 tables left"
fi

# ---- a second start converts nothing and changes nothing
rx_sql "SELECT * FROM rx_env_minute ORDER BY mn, t" >"$T/after1"
run_rx 2
[ "$(grep -c "converted to one row per site and time" "$RX_LOG")" = 3 ] || fail "converted again"
rx_sql "SELECT * FROM rx_env_minute ORDER BY mn, t" >"$T/after2"
cmp -s "$T/after1" "$T/after2" || fail "the second start changed rx_env_minute"
grep -q "ERROR: AddressSanitizer\|runtime error" "$RX_LOG" && fail "sanitizer report"
exit 0
