# A schema migration that outlasts TimeoutStartSec= under a real systemd
# (../shared/tools/in-systemd, as test_systemd.sh): the installed unit,
# with TimeoutStartSec=2s, starts on a schema 6 database
# (tests/data/main-db/site-v6.db) whose raw table is grown to 2.1 M
# readings, so that moving them to the tail and rewriting it (migrations 8
# to 10) and the VACUUM (12) take several times 2 s. While it migrates,
# sitegated tells systemd what it does (STATUS=, updated every second) and
# that it is making progress (EXTEND_TIMEOUT_USEC=): the start is never
# killed, not restarted, and ends active with READY=1, every reading kept.
# How long the start took is systemd's own figure (the unit's timestamps),
# so a machine fast enough to migrate within 2 s fails the test with that
# figure instead of passing without proving anything.
#
# Run as a test, it starts itself again inside in-systemd (with
# SITEGATE_IN_SYSTEMD=1); everything it does there is thrown away with the
# overlay. Needs root.
source "$(dirname "$0")/lib.sh"
REPO=$(cd "$HERE/../.." && pwd)

[ -n "${SITEGATE_IN_SYSTEMD:-}" ] || in_systemd "$HERE/test_systemd_migrate.sh"

# ---- inside the throwaway systemd
CONF=/etc/sitegate/sitegate.conf
DBF=/var/lib/sitegate/sitegate.db
TIMEOUT_S=2
COPIES=600 # site-v6.db's 3,461 raw readings and 600 copies: 2.1 M
diagnose() {
  systemctl status sitegated --no-pager -n 0 || true
  echo "--- journal of sitegated (last 25 lines)"
  journalctl -u sitegated --no-pager -n 25 -o short-monotonic || true
}
prop() { systemctl show -p "$1" --value sitegated; }

make -s -C "$REPO" install-files BIN="$BIN" DESTDIR=/ PREFIX=/usr/local >"$T/install.log" 2>&1 ||
  fail "make install: $(tail -5 "$T/install.log")"
id sitegate >/dev/null 2>&1 || fail "make install did not create the sitegate user"
# raw_days at its most: the database's readings are from December 2026,
# and retention must not take them while the test counts them.
DB=$DBF write_conf "$CONF" </dev/null
sed -i 's/^batch_ms = .*/&\nraw_days = 3650/' "$CONF"
grep -q '^raw_days = 3650$' "$CONF" || fail "cannot set raw_days in $CONF"

# The old database, where the unit keeps it, grown with SQL: each copy of
# the raw rows an hour earlier than the last (within raw_days, older than
# the rollups' latest values).
install -d -o sitegate -g sitegate -m 750 /var/lib/sitegate
cp "$REPO/tests/data/main-db/site-v6.db" "$DBF"
sqlite3 "$DBF" "WITH RECURSIVE k(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM k WHERE i < $COPIES)
  INSERT INTO raw(series, t, v) SELECT series, t - i * 3600000, v FROM raw, k;
  UPDATE counter SET value = (SELECT count(*) FROM raw) WHERE name = 'raw_rows';" ||
  fail "cannot grow the raw table of $DBF"
chown sitegate:sitegate "$DBF"
N=$(sqlite3 "$DBF" "SELECT count(*) FROM raw")
[ "$N" = $((3461 * (COPIES + 1))) ] || fail "the grown database has $N raw readings"
echo "schema 6 database: $N readings, $(($(stat -c %s "$DBF") >> 20)) MB"

# The real unit; only the start timeout is shortened, to far less than the
# migration takes. (ASAN_OPTIONS: as in test_systemd.sh.) An ASan build
# (make asan) needs more memory for this migration than the unit's
# MemoryMax (its shadow memory and quarantine): the cgroup killed it
# mid-migration. The cap is test_systemd.sh's to check; an ASan build runs
# without it here.
mkdir -p /etc/systemd/system/sitegated.service.d
{
  printf '[Service]\nTimeoutStartSec=%ss\nEnvironment=ASAN_OPTIONS=detect_leaks=0\n' "$TIMEOUT_S"
  if ldd "$BIN/sitegated" | grep -q libasan; then echo MemoryMax=infinity; fi
} >/etc/systemd/system/sitegated.service.d/test.conf
systemctl daemon-reload
[ "$(prop TimeoutStartUSec)" = "${TIMEOUT_S}s" ] || fail "TimeoutStartUSec is $(prop TimeoutStartUSec)"

# Started without waiting, then watched: every status the daemon reports
# while it is activating is kept, and a start that systemd killed (a
# restart, a failure) fails at once.
systemctl start --no-block sitegated
: >"$T/status"
pid=""
started() {
  local st sub n
  st=$(prop ActiveState) sub=$(prop SubState) n=$(prop NRestarts)
  [ "$n" = 0 ] || fail "systemd restarted the start ($n): it was killed (state $st/$sub)"
  case $st in failed | inactive | deactivating) fail "the start ended $st/$sub" ;; esac
  p=$(prop MainPID)
  [ "$p" = 0 ] || [ -z "$pid" ] || [ "$p" = "$pid" ] || fail "the main PID changed from $pid to $p"
  [ "$p" = 0 ] || pid=$p
  prop StatusText >>"$T/status"
  [ "$st" = active ]
}
wait_for 600 "sitegated active after its migration" started
"$BIN/sitectl" status >/dev/null 2>&1 || fail "sitectl status does not answer once active (READY=1 too early?)"

# systemd's own figures: the start took longer than the timeout it gave.
t0=$(prop ExecMainStartTimestampMonotonic) t1=$(prop ActiveEnterTimestampMonotonic)
took_ms=$(((t1 - t0) / 1000))
echo "start: ${took_ms} ms with TimeoutStartSec=${TIMEOUT_S}s"
[ "$took_ms" -gt $((TIMEOUT_S * 1000)) ] ||
  fail "the start took ${took_ms} ms, within TimeoutStartSec=${TIMEOUT_S}s: this proves nothing; raise COPIES"
journalctl -u sitegated --no-pager -o cat | grep -q "schema upgraded to version 12" ||
  fail "the journal does not show the migration to schema 12"

# What it reported meanwhile: the migrations, and within one step more
# than one report (the seconds counted on), each with its extension.
echo "statuses seen while activating:"
grep -v '^$' "$T/status" | uniq | sed 's/^/  /' | head -20
grep -q '^migrating the database to schema [0-9]* of [0-9]*' "$T/status" ||
  fail "no \"migrating the database to schema N\" status while activating"
reports=$(grep '^migrating the database to schema' "$T/status" | sort -u | sed 's/ ([0-9]* s)$//' | uniq -c |
  awk '$1 > 1' | wc -l)
[ "$reports" -gt 0 ] || fail "no migration step was reported more than once (the seconds did not count on)"
# Once ready, the status is the site's.
[ "$(prop StatusText)" = "site TEST-SITE-01: 3 devices" ] || fail "status once ready: $(prop StatusText)"

# Every reading is kept (the counter, and the rows themselves after a
# clean stop, which folds the WAL in).
systemctl stop sitegated
[ "$(prop ExecMainStatus)" = 0 ] || fail "sitegated exited $(prop ExecMainStatus) at stop"
# The schema the statuses named as the last ("... schema 8 of N").
last=$(sed -n 's/^migrating the database to schema [0-9]* of \([0-9]*\).*/\1/p' "$T/status" | head -1)
[ "$(sqlite3 "$DBF" "PRAGMA user_version")" = "$last" ] ||
  fail "schema $(sqlite3 "$DBF" "PRAGMA user_version"), not $last"
kept=$(sqlite3 "$DBF" "SELECT (SELECT coalesce(sum(n), 0) FROM tail) + (SELECT coalesce(sum(n), 0) FROM block)")
[ "$kept" = "$N" ] || fail "$kept of $N readings after the migration"
[ "$(sqlite3 "$DBF" "SELECT value FROM counter WHERE name = 'raw_rows'")" = "$N" ] ||
  fail "raw_rows is $(sqlite3 "$DBF" "SELECT value FROM counter WHERE name = 'raw_rows'"), not $N"
echo "systemd: a ${took_ms} ms migration under TimeoutStartSec=${TIMEOUT_S}s: ready, not restarted, every reading kept: ok"
