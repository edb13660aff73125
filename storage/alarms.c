/* Alarms and their history (storage.h "alarms"; the model is
 * gateway/rules/alarm.c).
 *
 * Table `alarm` holds each alarm's latest state, one row per id (the
 * model hands ids out); `alarm_event` holds every event in order. A write
 * is a request on the writer's connection: it runs between reading batches
 * in its own transaction, so an alarm is as durable as a committed batch
 * and never interleaves with one. Alarms are rare (a few per hour), so the
 * statements are prepared per call rather than kept. */
#define LOG_MODULE "storage"
#include "common/common.h"
#include "storage/storage_int.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

typedef struct write_req {
  stor_req_t req; /* first: the writer hands us back this pointer */
  const stor_alarm_event_t *ev;
  size_t n;
} write_req_t;

#define ALARM_UPSERT                                                                               \
  "INSERT INTO alarm(id, rule, source, level, peak_level, figure, lim, peak, unit, message,"       \
  " data_t, raised, updated, cleared, acked, acked_by, note, low_is_bad)"                          \
  " VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18)"       \
  " ON CONFLICT(id) DO UPDATE SET level = ?4, peak_level = ?5, figure = ?6, lim = ?7, peak = ?8,"  \
  " unit = ?9, message = ?10, data_t = ?11, updated = ?13, cleared = ?14, acked = ?15,"            \
  " acked_by = ?16, note = ?17"

#define EVENT_INSERT                                                                               \
  "INSERT INTO alarm_event(alarm, t, kind, level, figure, lim, by, note)"                          \
  " VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"

/* NAN has no SQL form: it is stored as NULL and read back as NAN. */
static void bind_real(sqlite3_stmt *st, int col, double v) {
  if (isfinite(v))
    sqlite3_bind_double(st, col, v);
  else
    sqlite3_bind_null(st, col);
}

static double column_real(sqlite3_stmt *st, int col) {
  return sqlite3_column_type(st, col) == SQLITE_NULL ? NAN : sqlite3_column_double(st, col);
}

static void bind_alarm(sqlite3_stmt *st, const stor_alarm_t *a) {
  sqlite3_bind_int64(st, 1, a->id);
  sqlite3_bind_text(st, 2, a->rule, -1, SQLITE_STATIC);
  sqlite3_bind_text(st, 3, a->source, -1, SQLITE_STATIC);
  sqlite3_bind_int(st, 4, a->level);
  sqlite3_bind_int(st, 5, a->peak_level);
  bind_real(st, 6, a->figure);
  bind_real(st, 7, a->limit);
  bind_real(st, 8, a->peak);
  sqlite3_bind_text(st, 9, a->unit, -1, SQLITE_STATIC);
  sqlite3_bind_text(st, 10, a->message, -1, SQLITE_STATIC);
  sqlite3_bind_double(st, 11, a->data_t);
  sqlite3_bind_double(st, 12, a->raised);
  sqlite3_bind_double(st, 13, a->updated);
  sqlite3_bind_double(st, 14, a->cleared);
  sqlite3_bind_double(st, 15, a->acked);
  sqlite3_bind_text(st, 16, a->acked_by, -1, SQLITE_STATIC);
  sqlite3_bind_text(st, 17, a->note, -1, SQLITE_STATIC);
  sqlite3_bind_int(st, 18, a->low_is_bad);
}

/* Writer thread. */
static int64_t write_fn(stor_db_t *db, stor_req_t *req) {
  write_req_t *w = (write_req_t *)req;
  sqlite3_stmt *up = NULL, *ev = NULL;
  int rc = stor__prepare(db->db, ALARM_UPSERT, &up);
  if (rc == 0)
    rc = stor__prepare(db->db, EVENT_INSERT, &ev);
  if (rc == 0)
    rc = stor__exec(db->db, "BEGIN IMMEDIATE");
  bool begun = rc == 0;
  for (size_t i = 0; rc == 0 && i < w->n; i++) {
    const stor_alarm_event_t *e = &w->ev[i];
    const stor_alarm_t *a = &e->alarm;
    bind_alarm(up, a);
    if ((rc = stor__step_done(db->db, up, "store alarm")) != 0)
      break;
    bool ack = e->kind == 4; /* acknowledged: who and why */
    sqlite3_bind_int64(ev, 1, a->id);
    sqlite3_bind_double(ev, 2, e->t);
    sqlite3_bind_int(ev, 3, e->kind);
    sqlite3_bind_int(ev, 4, a->level);
    bind_real(ev, 5, a->figure);
    bind_real(ev, 6, a->limit);
    sqlite3_bind_text(ev, 7, ack ? a->acked_by : "", -1, SQLITE_STATIC);
    sqlite3_bind_text(ev, 8, ack ? a->note : "", -1, SQLITE_STATIC);
    rc = stor__step_done(db->db, ev, "store alarm event");
  }
  if (rc == 0)
    rc = stor__exec(db->db, "COMMIT");
  if (rc != 0 && begun && !sqlite3_get_autocommit(db->db))
    sqlite3_exec(db->db, "ROLLBACK", NULL, NULL, NULL);
  sqlite3_finalize(up);
  sqlite3_finalize(ev);
  return rc;
}

int stor_alarm_write(stor_db_t *db, const stor_alarm_event_t *ev, size_t n) {
  if (!db || (!ev && n))
    return -EINVAL;
  if (n == 0)
    return 0;
  write_req_t w = {.req = {.fn = write_fn}, .ev = ev, .n = n};
  int64_t rc = stor__request_post(db, &w.req);
  return rc < 0 ? (int)rc : 0;
}

/* ---- reading back */

#define ALARM_COLUMNS                                                                              \
  "id, rule, source, level, peak_level, figure, lim, peak, unit, message, data_t, raised,"         \
  " updated, cleared, acked, acked_by, note, low_is_bad"

static void copy_text(char *dst, size_t cap, sqlite3_stmt *st, int col) {
  const unsigned char *s = sqlite3_column_text(st, col);
  snprintf(dst, cap, "%s", s ? (const char *)s : "");
}

static void read_alarm(sqlite3_stmt *st, stor_alarm_t *a) {
  memset(a, 0, sizeof(*a));
  a->id = sqlite3_column_int64(st, 0);
  copy_text(a->rule, sizeof(a->rule), st, 1);
  copy_text(a->source, sizeof(a->source), st, 2);
  a->level = sqlite3_column_int(st, 3);
  a->peak_level = sqlite3_column_int(st, 4);
  a->figure = column_real(st, 5);
  a->limit = column_real(st, 6);
  a->peak = column_real(st, 7);
  copy_text(a->unit, sizeof(a->unit), st, 8);
  copy_text(a->message, sizeof(a->message), st, 9);
  a->data_t = sqlite3_column_double(st, 10);
  a->raised = sqlite3_column_double(st, 11);
  a->updated = sqlite3_column_double(st, 12);
  a->cleared = sqlite3_column_double(st, 13);
  a->acked = sqlite3_column_double(st, 14);
  copy_text(a->acked_by, sizeof(a->acked_by), st, 15);
  copy_text(a->note, sizeof(a->note), st, 16);
  a->low_is_bad = sqlite3_column_int(st, 17) != 0;
}

/* Runs a prepared alarm query, calling cb per row. */
static int each_alarm(sqlite3 *db, sqlite3_stmt *st, stor_alarm_cb cb, void *arg) {
  int rc;
  stor_alarm_t a;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    read_alarm(st, &a);
    if (cb(arg, &a) != 0) {
      rc = SQLITE_DONE;
      break;
    }
  }
  int ret = rc == SQLITE_DONE ? 0 : stor__fail(db, rc, "alarms");
  sqlite3_finalize(st);
  return ret;
}

int stor_alarm_active(stor_reader_t *r, stor_alarm_cb cb, void *arg, int64_t *max_id) {
  sqlite3 *db = stor__reader_db(r);
  sqlite3_stmt *st = NULL;
  if (!db || !cb)
    return -EINVAL;
  int rc = 0;
  if (max_id && (rc = stor__query_int(db, "SELECT coalesce(max(id), 0) FROM alarm", max_id)) != 0)
    return rc;
  if ((rc = stor__prepare(db, "SELECT " ALARM_COLUMNS " FROM alarm WHERE cleared = 0 ORDER BY id",
                          &st)) != 0)
    return rc;
  return each_alarm(db, st, cb, arg);
}

int stor_alarm_history(stor_reader_t *r, double since, bool active_only, size_t limit,
                       stor_alarm_cb cb, void *arg) {
  sqlite3 *db = stor__reader_db(r);
  sqlite3_stmt *st = NULL;
  if (!db || !cb)
    return -EINVAL;
  int rc = stor__prepare(db,
                         "SELECT " ALARM_COLUMNS " FROM alarm WHERE updated >= ?1"
                         " AND (?2 = 0 OR cleared = 0) ORDER BY id DESC LIMIT ?3",
                         &st);
  if (rc != 0)
    return rc;
  sqlite3_bind_double(st, 1, since);
  sqlite3_bind_int(st, 2, active_only);
  sqlite3_bind_int64(st, 3, limit > INT64_MAX ? INT64_MAX : (int64_t)limit);
  return each_alarm(db, st, cb, arg);
}

static int copy_out(void *arg, const stor_alarm_t *a) {
  *(stor_alarm_t *)arg = *a;
  return 1;
}

int stor_alarm_get(stor_reader_t *r, int64_t id, stor_alarm_t *out) {
  sqlite3 *db = stor__reader_db(r);
  sqlite3_stmt *st = NULL;
  if (!db || !out)
    return -EINVAL;
  int rc = stor__prepare(db, "SELECT " ALARM_COLUMNS " FROM alarm WHERE id = ?1", &st);
  if (rc != 0)
    return rc;
  sqlite3_bind_int64(st, 1, id);
  out->id = 0;
  rc = each_alarm(db, st, copy_out, out);
  return rc == 0 && out->id != id ? -ENOENT : rc;
}

int stor_alarm_events(stor_reader_t *r, int64_t id, stor_alarm_event_cb cb, void *arg) {
  sqlite3 *db = stor__reader_db(r);
  sqlite3_stmt *st = NULL;
  if (!db || !cb)
    return -EINVAL;
  int rc = stor__prepare(db,
                         "SELECT kind, t, level, figure, lim, by, note FROM alarm_event"
                         " WHERE alarm = ?1 ORDER BY seq",
                         &st);
  if (rc != 0)
    return rc;
  sqlite3_bind_int64(st, 1, id);
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    if (cb(arg, sqlite3_column_int(st, 0), sqlite3_column_double(st, 1), sqlite3_column_int(st, 2),
           column_real(st, 3), column_real(st, 4), (const char *)sqlite3_column_text(st, 5),
           (const char *)sqlite3_column_text(st, 6))) {
      rc = SQLITE_DONE;
      break;
    }
  }
  int ret = rc == SQLITE_DONE ? 0 : stor__fail(db, rc, "alarm events");
  sqlite3_finalize(st);
  return ret;
}
