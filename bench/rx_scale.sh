#!/bin/bash
# The receiver's minute data at a province's size (issue 16, item 3):
# BENCH_RX_SCALE_SITES (3,000) sites in one PostgreSQL (a real cluster in a
# temporary folder, tests/integration/pg.sh), with the schema sitegate-rx
# itself makes (it is started once on the empty database and stopped).
#
# What is generated, inside PostgreSQL (INSERT ... SELECT generate_series):
# - the full month: the partition of the month before this one (the one
#   before that when it is February), BENCH_RX_SCALE_MINUTES (43,200: 30
#   days) minutes from its start for every site: one row per site and
#   minute, in time order (minute by minute, every site in each, as the
#   receivers store them), all nine pollutants of protocol/UPLINK.md with
#   min/avg/max and flag N (the widest row a gateway sends);
#   BENCH_RX_SCALE_ORDER=site stores each site's month together instead
#   (what CLUSTER on the key would make of a closed month), to compare the
#   month query's pages;
# - the eleven months before it: a partition each with the first
#   BENCH_RX_SCALE_OTHER (60) minutes of every site, so that the month
#   query has other full partitions to leave alone;
# - this month's and next month's partitions, as the receiver made them
#   (empty).
# Sites are named like the demo site, 230100-HRB-0001 ... (15 characters).
# Each partition is loaded in the transaction that creates it (with
# wal_level=minimal PostgreSQL then writes no WAL for it), its primary key
# built after the load and the partition attached (a CHECK of its range
# first, so the attach reads nothing); sizes are of the finished tables.
#
# Then the per-site month query, storage/rxreport.c's series_sql over the
# full month for one site, under EXPLAIN (ANALYZE, BUFFERS): the plan must
# read one partition through one range of its primary key. Its first run
# (the site's pages not yet read since the load) and the best of three
# after are reported; bytes per site-minute are the full month's heap and
# indexes (pg_total_relation_size) over its rows, and the year's estimate
# is that times 3,000 sites x 525,600 minutes. Ends with one
# `bench: rx_scale_...` line; the cluster is removed at the end. About
# 30 GB of disk at the peak (BENCH_RX_SCALE_DIR, default /tmp) and some
# tens of minutes on 2 cores; the load runs under nice.
set -u
export SITEGATE_BIN=${SITEGATE_BIN:-$(cd "$(dirname "$0")/.." && pwd)/bin}
TOP=$(cd "$(dirname "$0")/.." && pwd)
. "$TOP/tests/integration/lib.sh"
. "$TOP/tests/integration/pg.sh"
set +eE
trap 'cleanup; pg_stop' EXIT
SITES=${BENCH_RX_SCALE_SITES:-3000}
MINUTES=${BENCH_RX_SCALE_MINUTES:-43200}
OTHER=${BENCH_RX_SCALE_OTHER:-60}
SITE=${BENCH_RX_SCALE_SITE:-$((SITES / 2))} # the site the query asks for
say() { echo "rx_scale: $(date -u +%H:%M:%S) $*" >&2; }
die() {
  say "FAILED: $*"
  pg_log_tail
  exit 1
}

# ---- the cluster, set for a bulk load (the figures measured do not depend
# on these: sizes, and a query after the load)
pg_start
pg_sql "ALTER SYSTEM SET wal_level = minimal" >/dev/null
pg_sql "ALTER SYSTEM SET max_wal_senders = 0" >/dev/null
pg_sql "ALTER SYSTEM SET maintenance_work_mem = '1GB'" >/dev/null
pg_sql "ALTER SYSTEM SET max_wal_size = '4GB'" >/dev/null
pg_sql "ALTER SYSTEM SET max_parallel_maintenance_workers = 0" >/dev/null
pg_restart
# nice the whole cluster: the machine is shared
renice -n 10 -p "$(head -1 "$PG_DIR/data/postmaster.pid")" >/dev/null
say "cluster in $PG_DIR"

# ---- the schema, as sitegate-rx makes it
"$TOP/deploy/pki/make-ca.sh" "$T/pki" >/dev/null
"$TOP/deploy/pki/make-server.sh" "$T/pki" localhost >/dev/null
RX_PORT=$(free_port tcp)
"$BIN/sitegate-rx" --listen "127.0.0.1:$RX_PORT" --ca "$T/pki/ca.crt" --cert "$T/pki/server.crt" \
  --key "$T/pki/server.key" --db "$PG_URI" >"$T/rx.log" 2>&1 &
RX=$!
PIDS="$PIDS $RX"
wait_for 60 "sitegate-rx listening" grep -q "listening on" "$T/rx.log"
kill -TERM "$RX"
wait "$RX" || die "sitegate-rx: $(tail -3 "$T/rx.log")"
pg_sql "SELECT 1 FROM rx_env_minute LIMIT 0" >/dev/null || die "no rx_env_minute"

# month_of OFFSET: "FROM TO YYYYMM" of the Beijing-time month OFFSET months
# from this one
month_of() {
  local first
  first=$(TZ=Asia/Shanghai date -d "$(TZ=Asia/Shanghai date +%Y-%m-01) $1 month" +%Y-%m-01)
  echo "$(TZ=Asia/Shanghai date -d "$first" +%s)" \
    "$(TZ=Asia/Shanghai date -d "$first +1 month" +%s)" "$(TZ=Asia/Shanghai date -d "$first" +%Y%m)"
}
full=-1
[ "$(TZ=Asia/Shanghai date -d "$(TZ=Asia/Shanghai date +%Y-%m-01) -1 month" +%m)" = 02 ] && full=-2

# The columns, from the table sitegate-rx made: the reals and the flags.
cols=$(pg_sql "SELECT string_agg(column_name, ',' ORDER BY ordinal_position) FROM information_schema.columns
  WHERE table_name = 'rx_env_minute' AND column_name NOT IN ('mn', 't')")
[ -n "$cols" ] || die "no columns"
values=$(pg_sql "SELECT string_agg(CASE WHEN data_type = 'text' THEN '''N''' ELSE
  CASE WHEN column_name LIKE '%_min' THEN 'floor(20 + random() * 40) / 2'
       WHEN column_name LIKE '%_avg' THEN 'floor(40 + random() * 80) / 2'
       ELSE 'floor(80 + random() * 160) / 2' END END, ', ' ORDER BY ordinal_position)
  FROM information_schema.columns WHERE table_name = 'rx_env_minute' AND column_name NOT IN ('mn', 't')")

# The rows' order: minute by minute (time, as received), or with
# BENCH_RX_SCALE_ORDER=site each site's minutes together (as CLUSTER on the
# key would leave a closed month). Each inner series refers to the outer
# one, so the planner cannot swap the loops.
SITE_MN="'230100-HRB-' || lpad(s::text, 4, '0')"
rows_from() { # rows_from MINUTES: the FROM of the generating SELECT
  case ${BENCH_RX_SCALE_ORDER:-time} in
    time) echo "generate_series(0, $1 - 1) AS m CROSS JOIN LATERAL
      (SELECT $SITE_MN AS mn FROM generate_series(1, $SITES + 0 * m) AS s) AS site" ;;
    site) echo "(SELECT $SITE_MN AS mn FROM generate_series(1, $SITES) AS s) AS site
      CROSS JOIN LATERAL generate_series(0, $1 - 1 + 0 * length(site.mn)) AS m" ;;
  esac
}
case ${BENCH_RX_SCALE_ORDER:-time} in time | site) ;; *) die "BENCH_RX_SCALE_ORDER: time or site" ;; esac

# load OFFSET MINUTES: the partition of month OFFSET with MINUTES minutes
# of every site from its start
load() {
  read -r from to ym <<<"$(month_of "$1")"
  local p=rx_env_minute_p$ym
  pg_sql "DROP TABLE IF EXISTS $p" >/dev/null 2>&1
  nice -n 10 "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$PG_DIR" -p "$PG_PORT" -U "$PG_ROLE" -d "$PG_DB" <<SQL ||
BEGIN;
CREATE TABLE $p (LIKE rx_env_minute INCLUDING DEFAULTS);
INSERT INTO $p(mn, t, $cols)
  SELECT site.mn, $from + m * 60, $values
    FROM $(rows_from "$2");
COMMIT;
ALTER TABLE $p ADD PRIMARY KEY (mn, t);
ALTER TABLE $p ADD CONSTRAINT ${p}_range CHECK (t >= $from AND t < $to);
ALTER TABLE rx_env_minute ATTACH PARTITION $p FOR VALUES FROM ($from) TO ($to);
ALTER TABLE $p DROP CONSTRAINT ${p}_range;
ANALYZE $p;
SQL
    die "loading $p"
  echo "$p $from $to"
}

# (the sites' series refers to m, so the minutes are the outer loop and
# rows land in time order, as received; unreferenced, the planner may loop
# over sites outside, which stores each site's month together)
say "generating: $SITES sites x $MINUTES minutes in month $full, $OTHER minutes in each of the 11 before"
for k in $(seq $((full - 11)) $((full - 1))); do
  load "$k" "$OTHER" >/dev/null
done
say "the other months loaded"
t_load=$(date +%s)
read -r p from to <<<"$(load "$full" "$MINUTES")"
t_load=$(($(date +%s) - t_load))
say "$p loaded in ${t_load} s"

# ---- sizes
read -r rows heap index total mn_b <<<"$(pg_sql "SELECT (SELECT COUNT(*) FROM $p),
  pg_relation_size('$p'), pg_indexes_size('$p'), pg_total_relation_size('$p'),
  (SELECT AVG(pg_column_size(mn))::numeric(6,1) FROM (SELECT mn FROM $p LIMIT 100000) AS x)" | tr '|' ' ')"
parts=$(pg_sql "SELECT COUNT(*) FROM pg_inherits WHERE inhparent = 'rx_env_minute'::regclass")
all_rows=$(pg_sql "SELECT COUNT(*) FROM rx_env_minute")
per=$(echo "$total $rows" | awk '{printf "%.1f", $1 / $2}')
year=$(echo "$per $SITES" | awk '{printf "%.0f", $1 * $2 * 525600 / 1e9}')
# time order: the first page holds one minute of many sites
first_page=$(pg_sql "SELECT COUNT(DISTINCT t) || ' ' || COUNT(*) FROM $p WHERE ctid < '(1,0)'::tid")
[ "$SITES" -lt 100 ] || [ "${BENCH_RX_SCALE_ORDER:-time}" = site ] || [ "${first_page%% *}" = 1 ] ||
  die "rows not in time order: page 0 holds $first_page"
say "$p: $rows rows, heap $heap B, indexes $index B, mn $mn_b B a row; $parts partitions, $all_rows rows in all"

# ---- the per-site month query (storage/rxreport.c's series_sql)
mn=$(printf '230100-HRB-%04d' "$SITE")
query=$(sed -n '/^static const char series_sql\[\] =/,/;$/p' "$TOP/storage/rxreport.c" |
  sed -e '1d' -e 's/^ *"//' -e 's/" *;\{0,1\}$//' | tr -d '\n')
[ -n "$query" ] || die "series_sql not found in storage/rxreport.c"
query=${query//\$1/\'$mn\'}
query=${query//\$2/$from}
query=${query//\$3/$to}
explain() { pg_sql "EXPLAIN (ANALYZE, BUFFERS) $query"; }
explain >"$T/plan1.txt" || die "the month query"
cat "$T/plan1.txt" >&2
ms() { sed -n 's/.*Execution Time: \([0-9.]*\) ms.*/\1/p' "$1"; }
first=$(ms "$T/plan1.txt")
best=""
for i in 1 2 3; do
  explain >"$T/plan.txt"
  v=$(ms "$T/plan.txt")
  best=$(echo "${best:-$v} $v" | awk '{print ($2 < $1) ? $2 : $1}')
done
got=$(grep -c " rows=$MINUTES loops=1)" "$T/plan1.txt" || true)
scans=$(grep -Eo "on rx_env_minute_p[0-9]+" "$T/plan1.txt" | sort -u | wc -l)
# an Index Scan or a Bitmap Index Scan (the planner's choice: the site's
# rows lie one per page, minute by minute) of the partition's primary key,
# one range: the site and the month
grep -Eq "(Index Scan using|Bitmap Index Scan on) ${p}_pkey" "$T/plan1.txt" &&
  [ "$(grep -c "Index Cond: ((mn = '$mn'::text) AND (t >= $from) AND (t < $to))" "$T/plan1.txt")" = 1 ] &&
  [ "$scans" = 1 ] || die "the plan does not read one partition through one range of its key"
[ "$got" -ge 1 ] || die "the query did not return the site's $MINUTES minutes"
hits=$(sed -n 's/.*Buffers: shared \(.*\)/\1/p' "$T/plan1.txt" | head -1)
pages=$(echo "$hits" | tr ' ' '\n' | awk -F= '/^(hit|read)=/ {n += $2} END {print n + 0}')
say "plan: $scans partition ($p), one range of ${p}_pkey; buffers $hits"

echo "bench: rx_scale_sites=$SITES rx_scale_order=${BENCH_RX_SCALE_ORDER:-time} rx_scale_rows=$rows rx_scale_all_rows=$all_rows rx_scale_partitions=$parts" \
  "rx_scale_bytes_per_site_minute=$per rx_scale_heap_bytes_per_row=$(echo "$heap $rows" | awk '{printf "%.1f", $1 / $2}')" \
  "rx_scale_index_bytes_per_row=$(echo "$index $rows" | awk '{printf "%.1f", $1 / $2}') rx_scale_mn_bytes=$mn_b" \
  "rx_scale_month_query_ms=$first rx_scale_month_query_warm_ms=$best rx_scale_month_query_buffers=$pages rx_scale_load_s=$t_load" \
  "rx_scale_month_gb=$(echo "$total" | awk '{printf "%.1f", $1 / 1e9}') rx_scale_year_gb_est=$year"
