# A real PostgreSQL for one test, sourced after lib.sh: the receiver's tests
# run against it when RX_DB=pg (rx_backend below), and the tests of several
# receivers need it.
#
# pg_start makes a cluster with initdb in a temporary folder of its own and
# starts it with pg_ctl on a free port, listening on a unix socket in that
# folder only (no TCP at all); pg_stop stops it (immediate) and removes the
# folder, and runs on exit, also on failure. PostgreSQL refuses to run as
# root: as root the cluster belongs to the system user $PG_OS_USER (Debian's
# package makes `postgres`; else `nobody`), commands run through runuser;
# as anyone else, as that user.
PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
PG_DIR=""
PG_PORT=""
PG_URI=""
PG_ROLE=sitegate
PG_DB=sitegate_rx
if [ "$(id -u)" = 0 ]; then
  PG_OS_USER=${PG_OS_USER:-$(getent passwd postgres >/dev/null && echo postgres || echo nobody)}
  as_pg() { (cd / && runuser -u "$PG_OS_USER" -- "$@"); }
else
  PG_OS_USER=$(id -un)
  as_pg() { "$@"; }
fi

pg_stop() {
  [ -n "$PG_DIR" ] || return 0
  as_pg "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -m immediate stop >/dev/null 2>&1 || true
  rm -rf "$PG_DIR"
  PG_DIR=""
}
# lib.sh's cleanup stops what the test started; then the cluster goes.
trap 'cleanup; pg_stop' EXIT

pg_log_tail() {
  [ -n "$PG_DIR" ] && [ -f "$PG_DIR/log" ] || return 0
  echo "--- postgresql log (last 15 lines)" >&2
  tail -15 "$PG_DIR/log" >&2
}

# pg_ready: the server accepts connections on its socket.
pg_ready() { "$PG_BIN/pg_isready" -q -h "$PG_DIR" -p "$PG_PORT" -U "$PG_ROLE" -d postgres; }

pg_ctl_start() {
  as_pg "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/log" -s \
    -o "-p $PG_PORT -k $PG_DIR -c listen_addresses=''" start ||
    { pg_log_tail; fail "pg_ctl start failed"; }
  wait_for 60 "PostgreSQL accepting connections on $PG_DIR" pg_ready
}

# pg_start: a new cluster with an empty database $PG_DB; sets PG_URI.
pg_start() {
  [ -x "$PG_BIN/initdb" ] || fail "no $PG_BIN/initdb: make deps (apt-get install postgresql-15)"
  PG_DIR=$(mktemp -d /tmp/sitegate-pg.XXXXXX)
  chown "$PG_OS_USER" "$PG_DIR"
  PG_PORT=$(free_port tcp)
  as_pg "$PG_BIN/initdb" -D "$PG_DIR/data" -U "$PG_ROLE" --auth=trust -E UTF8 --locale=C \
    --no-sync >"$PG_DIR/initdb.log" 2>&1 || { cat "$PG_DIR/initdb.log" >&2; fail "initdb failed"; }
  pg_ctl_start
  "$PG_BIN/createdb" -h "$PG_DIR" -p "$PG_PORT" -U "$PG_ROLE" "$PG_DB" || fail "createdb failed"
  PG_URI="postgresql://$PG_ROLE@/$PG_DB?host=$PG_DIR&port=$PG_PORT"
}

# pg_restart: a fast stop (connections cut) and a start of the same cluster.
pg_restart() {
  as_pg "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -m fast -s stop || fail "pg_ctl stop failed"
  pg_ctl_start
}

# pg_sql SQL: runs SQL on the test's database, rows as unaligned text.
pg_sql() {
  "$PG_BIN/psql" -X -q -At -v ON_ERROR_STOP=1 -h "$PG_DIR" -p "$PG_PORT" -U "$PG_ROLE" \
    -d "$PG_DB" -c "$1"
}

# rx_backend: reads RX_DB (sqlite, the default, or pg) and sets RX_TARGET,
# what sitegate-rx's --db gets, starting PostgreSQL when it is pg.
# rx_sql SQL then runs SQL on the receiver's database, either way.
rx_backend() {
  case ${RX_DB:-sqlite} in
    sqlite) RX_TARGET="$T/rx.db" ;;
    pg)
      pg_start
      RX_TARGET=$PG_URI
      ;;
    *) fail "RX_DB=$RX_DB: want sqlite or pg" ;;
  esac
}
rx_sql() {
  case ${RX_DB:-sqlite} in
    pg) pg_sql "$1" ;;
    *) sqlite3 "$RX_TARGET" "$1" ;;
  esac
}
