/* Equipment rows (storage.h "equipment"): the command audit trail, daily
 * energy per unit, counter baselines and control state.
 *
 * The gateway owns the values and hands this file whole rows to replace,
 * so every write is an upsert of a few rows in one transaction, run as a
 * request on the writer's connection between reading batches (as alarms
 * are). Writes come every [energy] persist_s and with each command, a few
 * rows each, so statements are prepared per call. */
#define LOG_MODULE "storage"
#include "common/common.h"
#include "storage/storage_int.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

typedef struct write_req {
  stor_req_t req; /* first: the writer hands us back this pointer */
  const stor_eq_write_t *w;
} write_req_t;

#define CMD_UPSERT                                                                                 \
  "INSERT OR REPLACE INTO eq_command(id, t, unit, grp, turn_on, reason, origin, actor, note,"      \
  " attempts, result, result_t) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)"
#define DAY_UPSERT                                                                                 \
  "INSERT OR REPLACE INTO energy_day(unit, day, kwh, fuel_l, run_s, idle_s, off_s, idle_kwh)"      \
  " VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"
#define COUNTER_UPSERT                                                                             \
  "INSERT OR REPLACE INTO energy_counter(unit, quantity, value, t, rollovers, resets, jumps)"      \
  " VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7)"
#define STATE_UPSERT                                                                               \
  "INSERT OR REPLACE INTO eq_state(unit, held, ovr, ovr_on, ovr_until, ovr_t, ovr_actor,"          \
  " ovr_note) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"

static void text(sqlite3_stmt *st, int col, const char *s) {
  sqlite3_bind_text(st, col, s, -1, SQLITE_STATIC);
}

static int write_cmds(sqlite3 *db, const stor_eqcmd_t *c, size_t n) {
  sqlite3_stmt *st = NULL;
  int rc = n ? stor__prepare(db, CMD_UPSERT, &st) : 0;
  for (size_t i = 0; rc == 0 && i < n; i++) {
    sqlite3_bind_int64(st, 1, c[i].id);
    sqlite3_bind_double(st, 2, c[i].t);
    text(st, 3, c[i].unit);
    text(st, 4, c[i].grp);
    sqlite3_bind_int(st, 5, c[i].on);
    text(st, 6, c[i].reason);
    text(st, 7, c[i].origin);
    text(st, 8, c[i].actor);
    text(st, 9, c[i].note);
    sqlite3_bind_int(st, 10, c[i].attempts);
    text(st, 11, c[i].result);
    sqlite3_bind_double(st, 12, c[i].result_t);
    rc = stor__step_done(db, st, "store equipment command");
  }
  sqlite3_finalize(st);
  return rc;
}

static int write_days(sqlite3 *db, const stor_energy_row_t *d, size_t n) {
  sqlite3_stmt *st = NULL;
  int rc = n ? stor__prepare(db, DAY_UPSERT, &st) : 0;
  for (size_t i = 0; rc == 0 && i < n; i++) {
    text(st, 1, d[i].unit);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)d[i].day);
    sqlite3_bind_double(st, 3, d[i].kwh);
    sqlite3_bind_double(st, 4, d[i].fuel_l);
    sqlite3_bind_double(st, 5, d[i].run_s);
    sqlite3_bind_double(st, 6, d[i].idle_s);
    sqlite3_bind_double(st, 7, d[i].off_s);
    sqlite3_bind_double(st, 8, d[i].idle_kwh);
    rc = stor__step_done(db, st, "store daily energy");
  }
  sqlite3_finalize(st);
  return rc;
}

static int write_counters(sqlite3 *db, const stor_counter_row_t *c, size_t n) {
  sqlite3_stmt *st = NULL;
  int rc = n ? stor__prepare(db, COUNTER_UPSERT, &st) : 0;
  for (size_t i = 0; rc == 0 && i < n; i++) {
    text(st, 1, c[i].unit);
    sqlite3_bind_int(st, 2, c[i].quantity);
    sqlite3_bind_double(st, 3, c[i].value);
    sqlite3_bind_double(st, 4, c[i].t);
    sqlite3_bind_int64(st, 5, c[i].rollovers);
    sqlite3_bind_int64(st, 6, c[i].resets);
    sqlite3_bind_int64(st, 7, c[i].jumps);
    rc = stor__step_done(db, st, "store energy counter");
  }
  sqlite3_finalize(st);
  return rc;
}

static int write_states(sqlite3 *db, const stor_eqstate_t *s, size_t n) {
  sqlite3_stmt *st = NULL;
  int rc = n ? stor__prepare(db, STATE_UPSERT, &st) : 0;
  for (size_t i = 0; rc == 0 && i < n; i++) {
    text(st, 1, s[i].unit);
    sqlite3_bind_int(st, 2, s[i].held);
    sqlite3_bind_int(st, 3, s[i].ovr);
    sqlite3_bind_int(st, 4, s[i].ovr_on);
    sqlite3_bind_double(st, 5, s[i].ovr_until);
    sqlite3_bind_double(st, 6, s[i].ovr_t);
    text(st, 7, s[i].ovr_actor);
    text(st, 8, s[i].ovr_note);
    rc = stor__step_done(db, st, "store equipment state");
  }
  sqlite3_finalize(st);
  return rc;
}

/* Writer thread. */
static int64_t write_fn(stor_db_t *db, stor_req_t *req) {
  const stor_eq_write_t *w = ((write_req_t *)req)->w;
  int rc = stor__exec(db->db, "BEGIN IMMEDIATE");
  bool begun = rc == 0;
  if (rc == 0)
    rc = write_cmds(db->db, w->cmds, w->n_cmds);
  if (rc == 0)
    rc = write_days(db->db, w->days, w->n_days);
  if (rc == 0)
    rc = write_counters(db->db, w->counters, w->n_counters);
  if (rc == 0)
    rc = write_states(db->db, w->states, w->n_states);
  if (rc == 0)
    rc = stor__exec(db->db, "COMMIT");
  if (rc != 0 && begun && !sqlite3_get_autocommit(db->db))
    sqlite3_exec(db->db, "ROLLBACK", NULL, NULL, NULL);
  return rc;
}

int stor_equipment_write(stor_db_t *db, const stor_eq_write_t *w) {
  if (!db || !w)
    return -EINVAL;
  if (w->n_cmds + w->n_days + w->n_counters + w->n_states == 0)
    return 0;
  write_req_t r = {.req = {.fn = write_fn}, .w = w};
  int64_t rc = stor__request_post(db, &r.req);
  return rc < 0 ? (int)rc : 0;
}

/* ---- reading back */

static void copy_text(char *dst, size_t cap, sqlite3_stmt *st, int col) {
  const unsigned char *s = sqlite3_column_text(st, col);
  snprintf(dst, cap, "%s", s ? (const char *)s : "");
}

/* Steps `st` to the end, calling row(arg) per row; finalizes it. */
static int each_row(sqlite3 *db, sqlite3_stmt *st, int (*row)(sqlite3_stmt *st, void *arg),
                    void *arg, const char *what) {
  int rc;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    if (row(st, arg) != 0) {
      rc = SQLITE_DONE;
      break;
    }
  }
  int ret = rc == SQLITE_DONE ? 0 : stor__fail(db, rc, what);
  sqlite3_finalize(st);
  return ret;
}

static int day_row(sqlite3_stmt *st, void *arg) {
  const stor_eq_load_t *cb = arg;
  stor_energy_row_t r;
  memset(&r, 0, sizeof(r));
  copy_text(r.unit, sizeof(r.unit), st, 0);
  r.day = (double)sqlite3_column_int64(st, 1);
  r.kwh = sqlite3_column_double(st, 2);
  r.fuel_l = sqlite3_column_double(st, 3);
  r.run_s = sqlite3_column_double(st, 4);
  r.idle_s = sqlite3_column_double(st, 5);
  r.off_s = sqlite3_column_double(st, 6);
  r.idle_kwh = sqlite3_column_double(st, 7);
  return cb->day(cb->arg, &r);
}

static int counter_row(sqlite3_stmt *st, void *arg) {
  const stor_eq_load_t *cb = arg;
  stor_counter_row_t r;
  memset(&r, 0, sizeof(r));
  copy_text(r.unit, sizeof(r.unit), st, 0);
  r.quantity = sqlite3_column_int(st, 1);
  r.value = sqlite3_column_double(st, 2);
  r.t = sqlite3_column_double(st, 3);
  r.rollovers = (uint32_t)sqlite3_column_int64(st, 4);
  r.resets = (uint32_t)sqlite3_column_int64(st, 5);
  r.jumps = (uint32_t)sqlite3_column_int64(st, 6);
  return cb->counter(cb->arg, &r);
}

static int state_row(sqlite3_stmt *st, void *arg) {
  const stor_eq_load_t *cb = arg;
  stor_eqstate_t s;
  memset(&s, 0, sizeof(s));
  copy_text(s.unit, sizeof(s.unit), st, 0);
  s.held = sqlite3_column_int(st, 1);
  s.ovr = sqlite3_column_int(st, 2) != 0;
  s.ovr_on = sqlite3_column_int(st, 3) != 0;
  s.ovr_until = sqlite3_column_double(st, 4);
  s.ovr_t = sqlite3_column_double(st, 5);
  copy_text(s.ovr_actor, sizeof(s.ovr_actor), st, 6);
  copy_text(s.ovr_note, sizeof(s.ovr_note), st, 7);
  return cb->state(cb->arg, &s);
}

static int load_table(sqlite3 *db, const char *sql, int (*row)(sqlite3_stmt *, void *),
                      const stor_eq_load_t *cb, const char *what) {
  sqlite3_stmt *st = NULL;
  int rc = stor__prepare(db, sql, &st);
  return rc ? rc : each_row(db, st, row, (void *)cb, what);
}

int stor_equipment_load(stor_reader_t *r, const stor_eq_load_t *cb, int64_t *max_cmd_id) {
  sqlite3 *db = stor__reader_db(r);
  if (!db || !cb)
    return -EINVAL;
  int rc = 0;
  if (max_cmd_id)
    rc = stor__query_int(db, "SELECT coalesce(max(id), 0) FROM eq_command", max_cmd_id);
  if (rc == 0 && cb->day)
    rc = load_table(db,
                    "SELECT unit, day, kwh, fuel_l, run_s, idle_s, off_s, idle_kwh FROM energy_day"
                    " ORDER BY unit, day",
                    day_row, cb, "daily energy");
  if (rc == 0 && cb->counter)
    rc = load_table(db,
                    "SELECT unit, quantity, value, t, rollovers, resets, jumps FROM energy_counter",
                    counter_row, cb, "energy counters");
  if (rc == 0 && cb->state)
    rc = load_table(db,
                    "SELECT unit, held, ovr, ovr_on, ovr_until, ovr_t, ovr_actor, ovr_note"
                    " FROM eq_state",
                    state_row, cb, "equipment state");
  return rc;
}

typedef struct log_ctx {
  stor_eqcmd_cb cb;
  void *arg;
} log_ctx_t;

static int cmd_row(sqlite3_stmt *st, void *arg) {
  log_ctx_t *l = arg;
  stor_eqcmd_t c;
  memset(&c, 0, sizeof(c));
  c.id = sqlite3_column_int64(st, 0);
  c.t = sqlite3_column_double(st, 1);
  copy_text(c.unit, sizeof(c.unit), st, 2);
  copy_text(c.grp, sizeof(c.grp), st, 3);
  c.on = sqlite3_column_int(st, 4) != 0;
  copy_text(c.reason, sizeof(c.reason), st, 5);
  copy_text(c.origin, sizeof(c.origin), st, 6);
  copy_text(c.actor, sizeof(c.actor), st, 7);
  copy_text(c.note, sizeof(c.note), st, 8);
  c.attempts = sqlite3_column_int(st, 9);
  copy_text(c.result, sizeof(c.result), st, 10);
  c.result_t = sqlite3_column_double(st, 11);
  return l->cb(l->arg, &c);
}

int stor_equipment_log(stor_reader_t *r, double since, const char *unit, size_t limit,
                       stor_eqcmd_cb cb, void *arg) {
  sqlite3 *db = stor__reader_db(r);
  sqlite3_stmt *st = NULL;
  if (!db || !cb)
    return -EINVAL;
  int rc = stor__prepare(db,
                         "SELECT id, t, unit, grp, turn_on, reason, origin, actor, note, attempts,"
                         " result, result_t FROM eq_command WHERE t >= ?1 AND (?2 IS NULL OR"
                         " unit = ?2) ORDER BY t DESC, id DESC LIMIT ?3",
                         &st);
  if (rc != 0)
    return rc;
  sqlite3_bind_double(st, 1, since);
  if (unit)
    sqlite3_bind_text(st, 2, unit, -1, SQLITE_STATIC);
  sqlite3_bind_int64(st, 3, limit > INT64_MAX ? INT64_MAX : (sqlite3_int64)limit);
  log_ctx_t l = {cb, arg};
  return each_row(db, st, cmd_row, &l, "equipment log");
}
