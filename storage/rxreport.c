/* The supervision console's questions over the receiver's database
 * (storage.h "the supervision console's questions"): each one SQL text
 * that SQLite and PostgreSQL both take ($1.. parameters, COUNT, SUM,
 * COALESCE, integer arithmetic), run by the back end's query primitive on
 * a connection of its own, so the console's threads never touch the
 * writer's. The tables are protocol/RX-SCHEMA.md's. */
#include "storage/rx_int.h"
#include "storage/storage.h"

#include <inttypes.h>
#include <stdio.h>

/* Day is 06:00-22:00 Beijing time (GB 12523-2011 3.8): seconds into the
 * Beijing day in [21600, 79200). A noise or dust alarm counts once however
 * often it escalated (its AlarmId). The waste allowance is the project's
 * (300 t per 10,000 m² cast in place, 200 prefab), so discharged_kg is
 * everything up to the month's end, counted as the gateway counts it
 * (README "Construction waste": construction waste, spoil, mud and
 * hazardous kinds aside, that left the site); the areas and name are the
 * latest site profile (6061) received. */
static const char sites_sql[] =
    "SELECT s.mn, s.subject, s.last_seen,"
    " (SELECT MAX(received_ms) FROM frames f WHERE f.mn=s.mn) AS last_frame_ms,"
    " (SELECT COALESCE(MAX(seq), 0) FROM ledger l WHERE l.mn=s.mn AND l.state='chained')"
    " AS chained_seq,"
    " (SELECT COUNT(*) FROM ledger l WHERE l.mn=s.mn AND l.state='pending') AS pending,"
    " (SELECT COUNT(*) FROM ledger l WHERE l.mn=s.mn AND l.state='broken') AS broken,"
    " (SELECT COUNT(*) FROM seals x WHERE x.mn=s.mn AND x.state='verified') AS seals_verified,"
    " (SELECT COUNT(*) FROM seals x WHERE x.mn=s.mn AND x.state='incomplete')"
    " AS seals_incomplete,"
    " (SELECT COUNT(*) FROM seals x WHERE x.mn=s.mn AND x.state='mismatch') AS seals_mismatch,"
    " (SELECT COUNT(DISTINCT alarm_id) FROM rx_alarms a WHERE a.mn=s.mn AND a.t>=$1 AND a.t<$2"
    " AND a.state='on' AND a.rule LIKE 'noise.%' AND ((a.t + 28800) % 86400) BETWEEN 21600 AND "
    "79199) AS noise_day,"
    " (SELECT COUNT(DISTINCT alarm_id) FROM rx_alarms a WHERE a.mn=s.mn AND a.t>=$1 AND a.t<$2"
    " AND a.state='on' AND a.rule LIKE 'noise.%' AND NOT ((a.t + 28800) % 86400) BETWEEN 21600 AND "
    "79199) AS noise_night,"
    " (SELECT COUNT(DISTINCT alarm_id) FROM rx_alarms a WHERE a.mn=s.mn AND a.t>=$1 AND a.t<$2"
    " AND a.state='on' AND a.rule LIKE 'dust.%') AS dust_episodes,"
    " (SELECT SUM(net_kg) FROM rx_waste w WHERE w.mn=s.mn AND w.t>=$1 AND w.t<$2) AS waste_kg,"
    " (SELECT SUM(net_kg) FROM rx_waste w WHERE w.mn=s.mn AND w.t>=$1 AND w.t<$2"
    " AND w.dest IN ('reuse_onsite', 'recycling', 'backfill')) AS recycled_kg,"
    " (SELECT SUM(net_kg) FROM rx_waste w WHERE w.mn=s.mn AND w.t<$2"
    " AND w.category NOT IN ('spoil', 'mud') AND COALESCE(w.kind, '') <> 'hazardous'"
    " AND w.dest IN ('recycling', 'backfill', 'disposal')) AS discharged_kg,"
    " (SELECT p.name FROM rx_site_profile p WHERE p.mn=s.mn ORDER BY p.seq DESC LIMIT 1) AS name,"
    " (SELECT p.area_cast_m2 FROM rx_site_profile p WHERE p.mn=s.mn ORDER BY p.seq DESC LIMIT 1)"
    " AS area_cast_m2,"
    " (SELECT p.area_prefab_m2 FROM rx_site_profile p WHERE p.mn=s.mn ORDER BY p.seq DESC LIMIT 1)"
    " AS area_prefab_m2,"
    " (SELECT p.latitude FROM rx_site_profile p WHERE p.mn=s.mn ORDER BY p.seq DESC LIMIT 1)"
    " AS latitude,"
    " (SELECT p.longitude FROM rx_site_profile p WHERE p.mn=s.mn ORDER BY p.seq DESC LIMIT 1)"
    " AS longitude,"
    " (SELECT SUM(energy_kwh) FROM rx_energy e WHERE e.mn=s.mn AND e.t>=$1 AND e.t<$2) AS "
    "energy_kwh,"
    " (SELECT SUM(carbon_kg) FROM rx_energy e WHERE e.mn=s.mn AND e.t>=$1 AND e.t<$2) AS carbon_kg,"
    " (SELECT COUNT(*) FROM refusals r WHERE r.mn=s.mn) AS refused"
    " FROM sites s ORDER BY s.mn";

/* A site's minutes of PM10 and noise: one index range of (mn, t) in the
 * partitions of the months it covers (bench/rx_scale.sh times a month). */
static const char series_sql[] =
    "SELECT t, a34002_avg, a34002_max, a34002_flag, la_avg, la_max, la_flag FROM rx_env_minute"
    " WHERE mn=$1 AND t>=$2 AND t<$3 ORDER BY t";

/* The same figures of a site's hours (rx_env_hour): a month is at most
 * 744 rows, where its minutes would be 44,640 on as many pages. */
static const char hours_sql[] =
    "SELECT t, a34002_avg, a34002_max, a34002_flag, la_avg, la_max, la_flag FROM rx_env_hour"
    " WHERE mn=$1 AND t>=$2 AND t<$3 ORDER BY t";

static const char ledger_sql[] =
    "SELECT l.seq, l.cn, l.qn, l.state, l.received_ms,"
    " COALESCE(w.t, d.t, a.t, e.t, p.t) AS t,"
    " COALESCE(w.net_kg, d.net_kg) AS net_kg, COALESCE(w.plate, d.plate) AS plate,"
    " w.category, w.dest, d.material, a.rule, a.state AS alarm_state, a.level, a.value,"
    " a.limit_value, e.energy_kwh, e.carbon_kg, p.name AS site_name, p.area_cast_m2,"
    " p.area_prefab_m2"
    " FROM ledger l"
    " LEFT JOIN rx_waste w ON w.mn=l.mn AND w.seq=l.seq"
    " LEFT JOIN rx_deliveries d ON d.mn=l.mn AND d.seq=l.seq"
    " LEFT JOIN rx_alarms a ON a.mn=l.mn AND a.seq=l.seq"
    " LEFT JOIN rx_energy e ON e.mn=l.mn AND e.seq=l.seq"
    " LEFT JOIN rx_site_profile p ON p.mn=l.mn AND p.seq=l.seq"
    " WHERE l.mn=$1 ORDER BY l.seq DESC LIMIT $2";

#define I64(buf, v) (snprintf((buf), sizeof(buf), "%" PRId64, (int64_t)(v)), (buf))

static int run(const char *target, const char *sql, int n, const char *const *v, stor_rx_row_fn cb,
               void *arg, char *err, size_t errlen) {
  err[0] = '\0';
  return stor__rx_ops_for(target)->query(target, sql, n, v, cb, arg, err, errlen);
}

int stor_rx_report_sites(const char *target, int64_t t0, int64_t t1, stor_rx_row_fn cb, void *arg,
                         char *err, size_t errlen) {
  char a[24], b[24];
  const char *v[] = {I64(a, t0), I64(b, t1)};
  return run(target, sites_sql, 2, v, cb, arg, err, errlen);
}

int stor_rx_report_series(const char *target, const char *mn, int64_t t0, int64_t t1,
                          stor_rx_row_fn cb, void *arg, char *err, size_t errlen) {
  char a[24], b[24];
  const char *v[] = {mn, I64(a, t0), I64(b, t1)};
  return run(target, series_sql, 3, v, cb, arg, err, errlen);
}

int stor_rx_report_hours(const char *target, const char *mn, int64_t t0, int64_t t1,
                         stor_rx_row_fn cb, void *arg, char *err, size_t errlen) {
  char a[24], b[24];
  const char *v[] = {mn, I64(a, t0), I64(b, t1)};
  return run(target, hours_sql, 3, v, cb, arg, err, errlen);
}

int stor_rx_report_ledger(const char *target, const char *mn, int limit, stor_rx_row_fn cb,
                          void *arg, char *err, size_t errlen) {
  char a[24];
  const char *v[] = {mn, I64(a, limit)};
  return run(target, ledger_sql, 2, v, cb, arg, err, errlen);
}
