/* One group commit: the queued readings in a single transaction, with
 * the rollups and latest values they are owed.
 *
 * The batch is sorted by (series, t, arrival) first. Each series then
 * arrives as one ascending run, in the raw table's key order, which keeps
 * the B-tree work on the same few pages and lets rollups be summed in
 * memory with one open bucket at a time.
 *
 * Resends must be found without paying for it on every reading: a reading
 * newer than anything stored for its series (the usual case) cannot be
 * one and goes in through multi-row inserts; an older one is inserted
 * alone with OR IGNORE and sqlite3_changes() says whether it was new. Only
 * readings that were actually inserted are rolled up, so a resend is
 * never counted twice; within a batch the first arrival of a (device,
 * quantity, t) wins, as across batches.
 *
 * Rollups and latest values are deferred. With 10,000 series nearly every
 * series of a batch took its own upserts into roll_1m, roll_1h, roll_1d
 * and latest, batch after batch (a quarter to a third of the writer's
 * CPU, measured in schema.c). A reading newer than what its series has
 * rolled up is summed into a pending minute bucket in memory instead, and
 * a commit writes all pending buckets when db.c says (at the latest
 * STOR_ROLL_FLUSH_MS later; before compaction and retention; for
 * stor_flush): one upsert per minute, hour and day touched, hours and
 * days summed from the minute buckets, and the series' latest value. A
 * reading no newer than that (a late one) is rolled up at once, as before.
 * Readers, on their own connections, see a reading in raw, in rollups and
 * in latest values at its commit: they add the pending tail rows (t >
 * latest.t) to the tables' rows themselves (reader.c).
 *
 * What makes deferring safe is an invariant every commit keeps: the rollup
 * tables hold exactly the raw rows of a series with t <= latest.t, since
 * latest is written with the rollups and only by the writer of pending
 * buckets. The pending readings are therefore the raw rows with
 * t > latest.t: after a crash, a power cut or a failed commit they are read
 * back from raw (reload) and written by the next commit that writes
 * rollups, the first one at open. Raw is the truth. */
#define LOG_MODULE "storage"
#include "common/common.h"
#include "protocol/protocol.h"
#include "storage/storage_int.h"

#include <assert.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Schema version 11's rule (schema.c): vmax NULL when it is vmin, vsum
 * NULL when n and vmin (and vmax) give it. The update reads the row's
 * columns as STOR_ROLL_VMAX and STOR_ROLL_VSUM do and writes them by the
 * same rule; SQLite's UPDATE sees the old row in every expression. */
#define ROLL_NEW_N "(n + ?3)"
#define ROLL_NEW_MIN "min(vmin, ?4)"
#define ROLL_NEW_MAX "max(" STOR_ROLL_VMAX ", ?5)"
#define ROLL_NEW_SUM "(" STOR_ROLL_VSUM " + ?6)"
#define ROLL_UPSERT(table)                                                                         \
  "INSERT INTO " table "(series, t, n, vmin, vmax, vsum, esum) VALUES(?1, ?2, ?3, ?4,"             \
  " CASE WHEN ?5 = ?4 THEN NULL ELSE ?5 END,"                                                      \
  " CASE WHEN (?3 = 1 AND ?6 = ?4) OR (?3 = 2 AND ?6 = ?4 + ?5) THEN NULL ELSE ?6 END, ?7)"        \
  " ON CONFLICT(t, series) DO UPDATE SET n = " ROLL_NEW_N ", vmin = " ROLL_NEW_MIN ","             \
  " vmax = CASE WHEN " ROLL_NEW_MAX " = " ROLL_NEW_MIN " THEN NULL ELSE " ROLL_NEW_MAX " END,"     \
  " vsum = CASE WHEN (" ROLL_NEW_N " = 1 AND " ROLL_NEW_SUM " = " ROLL_NEW_MIN ") OR (" ROLL_NEW_N \
  " = 2 AND " ROLL_NEW_SUM " = " ROLL_NEW_MIN " + " ROLL_NEW_MAX ")"                               \
  " THEN NULL ELSE " ROLL_NEW_SUM " END, esum = esum + excluded.esum"

/* The open bucket of each step of the current series: late readings, and
 * a series' pending buckets when they are written. */
typedef struct run {
  int64_t series; /* 0: none yet */
  bool level;
  stor_bucket_t b[STOR_ROLLUPS];
} run_t;

enum { ST_NEW, ST_CHECK, ST_INSERTED, ST_DUP };

int stor__batch_open(stor_db_t *db) {
  const struct {
    sqlite3_stmt **st;
    const char *sql;
  } stmts[] = {
      {&db->s_roll[0], ROLL_UPSERT("roll_1m")},
      {&db->s_roll[1], ROLL_UPSERT("roll_1h")},
      {&db->s_roll[2], ROLL_UPSERT("roll_1d")},
      {&db->s_latest, "INSERT INTO latest(series, t, v) VALUES(?1, ?2, ?3) ON CONFLICT(series)"
                      " DO UPDATE SET t = excluded.t, v = excluded.v WHERE excluded.t > latest.t"},
      {&db->s_count, "UPDATE counter SET value = value + ?1 WHERE name = 'raw_rows'"},
      /* Readers scan the tail for pending readings from here (schema.c,
       * version 10); raw_rows' page, written with it. */
      {&db->s_pend_from, "UPDATE counter SET value = ?1 WHERE name = 'pending_from'"},
      /* max(t) of the tail scans it: only for a series the cache should
       * have had (a new one has no rows). A pack's last reading is not
       * later than its t + STOR_PACK_SPAN_MS - 1: too late a max_t costs
       * only checks. */
      {&db->s_series_get,
       "SELECT id, nullif(max(coalesce((SELECT max(t) + " STR(
           STOR_PACK_SPAN_MS) " - 1 FROM tail WHERE series = s.id), -1),"
                              " coalesce((SELECT t1 FROM block WHERE series = s.id ORDER BY t0 "
                              "DESC LIMIT 1), -1)), -1),"
                              " (SELECT t FROM latest WHERE series = s.id) FROM series s"
                              " WHERE device = ?1 AND quantity = ?2"},
      {&db->s_series_put, "INSERT INTO series(device, quantity) VALUES(?1, ?2)"},
      {&db->s_series_all, "SELECT id, device, quantity,"
                          " (SELECT t1 FROM block WHERE series = s.id ORDER BY t0 DESC LIMIT 1),"
                          " (SELECT t FROM latest WHERE series = s.id) FROM series s ORDER BY id"},
      {&db->s_pend_rows, "SELECT t, data FROM tail WHERE series = ?1 AND t > ?2 - " STR(
                             STOR_PACK_SPAN_MS) " ORDER BY t"},
  };
  int rc = 0;
  for (size_t i = 0; rc == 0 && i < sizeof(stmts) / sizeof(stmts[0]); i++)
    rc = stor__prepare(db->db, stmts[i].sql, stmts[i].st);
  /* OR IGNORE: with it a multi-row insert needs no statement journal, and
   * these rows are known to be new anyway. */
  char sql[64 + (1 << (STOR_MULTI_SHIFT - 1)) * 10];
  for (int k = 0; rc == 0 && k < STOR_MULTI_SHIFT; k++) {
    size_t len =
        (size_t)snprintf(sql, sizeof(sql), "INSERT OR IGNORE INTO tail(t, series, n, data) VALUES");
    for (int row = 0; row < 1 << k; row++)
      len += (size_t)snprintf(sql + len, sizeof(sql) - len, "%s(?,?,?,?)", row ? "," : "");
    rc = stor__prepare(db->db, sql, &db->s_raw_multi[k]);
  }
  /* A batch is at most batch_readings (db.c's commit_queued), so the
   * arrays need no more: sized by queue_max, a queue that had ever been
   * committed whole kept 9 bytes a queued reading mapped. */
  if (rc == 0) {
    db->order = stor__pages_alloc(db->batch_readings * sizeof(*db->order));
    db->sid = stor__pages_alloc(db->batch_readings * sizeof(*db->sid));
    db->state = stor__pages_alloc(db->batch_readings * sizeof(*db->state));
    if (!db->order || !db->sid || !db->state)
      rc = -ENOMEM;
  }
  /* Whatever a crash left pending is read back by the first commit. */
  db->reload = true;
  db->pend_min_t = INT64_MAX;
  return rc;
}

void stor__batch_free(stor_db_t *db) {
  sqlite3_stmt *stmts[] = {db->s_roll[0],   db->s_roll[1],    db->s_roll[2],    db->s_latest,
                           db->s_count,     db->s_series_get, db->s_series_put, db->s_series_all,
                           db->s_pend_rows, db->s_pend_from};
  for (size_t i = 0; i < sizeof(stmts) / sizeof(stmts[0]); i++)
    sqlite3_finalize(stmts[i]);
  for (int k = 0; k < STOR_MULTI_SHIFT; k++)
    sqlite3_finalize(db->s_raw_multi[k]);
  stor__pages_free(db->order, db->batch_readings * sizeof(*db->order));
  stor__pages_free(db->sid, db->batch_readings * sizeof(*db->sid));
  stor__pages_free(db->state, db->batch_readings * sizeof(*db->state));
  free(db->pend);
  free(db->cnt);
  free(db->series.slots);
  free(db->series.ser);
}

/* ---- days: local midnight, cached because mktime takes the TZ lock and
 * walks the zone rules */

/* The local day [*start, *end) that `s` (Unix seconds) lies in. A day that
 * mktime cannot make sense of is not cached and taken as [start, s + 1). */
static void day_of(stor_db_t *db, int64_t s, int64_t *start, int64_t *end) {
  stor_day_t *c = &db->days[(uint64_t)stor__floor_div(s, 86400) % STOR_DAY_CACHE];
  if (c->start < c->end && c->start <= s && s < c->end) {
    *start = c->start;
    *end = c->end;
    return;
  }
  if (stor__local_day(s, start, end)) {
    c->start = *start;
    c->end = *end;
  }
}

int64_t stor__day_start(stor_db_t *db, int64_t s) {
  int64_t start, end;
  day_of(db, s, &start, &end);
  return start;
}

/* ---- series */

static size_t slot_of(const stor_series_map_t *m, uint64_t key) {
  return (size_t)((key * 0x9E3779B97F4A7C15ull) >> 20) & (m->cap - 1);
}

/* The slot of `key`, or the empty one where it would go; cap > 0. */
static stor_series_slot_t *map_slot(const stor_series_map_t *m, uint64_t key) {
  size_t i = slot_of(m, key);
  while (m->slots[i].key && m->slots[i].key != key)
    i = (i + 1) & (m->cap - 1);
  return &m->slots[i];
}

static bool map_find(const stor_series_map_t *m, uint64_t key, uint32_t *idx) {
  if (m->cap == 0)
    return false;
  const stor_series_slot_t *sl = map_slot(m, key);
  *idx = sl->idx;
  return sl->key != 0;
}

/* Adds `e` under `key` (not present yet); false when out of memory. */
static bool map_add(stor_series_map_t *m, uint64_t key, const stor_series_t *e, uint32_t *idx) {
  if ((m->used + 1) * 2 > m->cap) {
    stor_series_map_t g = {.cap = m->cap ? m->cap * 2 : 1024};
    if (!(g.slots = calloc(g.cap, sizeof(*g.slots))))
      return false;
    for (size_t i = 0; i < m->cap; i++)
      if (m->slots[i].key)
        *map_slot(&g, m->slots[i].key) = m->slots[i];
    free(m->slots);
    m->slots = g.slots;
    m->cap = g.cap;
  }
  if (m->used == m->ser_cap) {
    size_t want = m->ser_cap ? m->ser_cap * 2 : 256;
    stor_series_t *grown = realloc(m->ser, want * sizeof(*grown));
    if (!grown)
      return false;
    m->ser = grown;
    m->ser_cap = want;
  }
  stor_series_slot_t *sl = map_slot(m, key);
  sl->key = key;
  sl->idx = *idx = (uint32_t)m->used;
  m->ser[m->used++] = *e;
  return true;
}

static uint64_t series_key(uint32_t device, uint8_t quantity) {
  return ((uint64_t)device << 8 | quantity) + 1;
}

/* ---- buckets */

static int step_done(sqlite3_stmt *st) {
  int rc = sqlite3_step(st);
  sqlite3_reset(st);
  return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

/* Adds a reading; `e` is its 10^(0.1 v) for a level, else 0. */
static void bucket_add(stor_bucket_t *b, double v, double e) {
  b->n++;
  b->min = v < b->min ? v : b->min;
  b->max = v > b->max ? v : b->max;
  b->sum += v;
  b->esum += e;
}

/* Adds bucket `s` to `d`, which starts at `t` when it is empty. */
static void bucket_merge(stor_bucket_t *d, const stor_bucket_t *s, int64_t t) {
  if (d->n == 0) {
    *d = *s;
    d->t = t;
    return;
  }
  d->n += s->n;
  d->min = s->min < d->min ? s->min : d->min;
  d->max = s->max > d->max ? s->max : d->max;
  d->sum += s->sum;
  d->esum += s->esum;
}

/* Adds bucket `b` of `series` to its row of step `step` (0 minute, 1 hour,
 * 2 day), creating the row when it is the first. */
static int bucket_write(stor_db_t *db, int step, int64_t series, bool level,
                        const stor_bucket_t *b) {
  sqlite3_stmt *st = db->s_roll[step];
  sqlite3_bind_int64(st, 1, series);
  sqlite3_bind_int64(st, 2, b->t);
  sqlite3_bind_int64(st, 3, b->n);
  /* In hundredths (storage_int.h, STOR_ROLL_SCALE). */
  sqlite3_bind_double(st, 4, b->min * STOR_ROLL_SCALE);
  sqlite3_bind_double(st, 5, b->max * STOR_ROLL_SCALE);
  sqlite3_bind_double(st, 6, b->sum * STOR_ROLL_SCALE);
  if (level)
    sqlite3_bind_double(st, 7, b->esum); /* GB 12523-2011: energy, not arithmetic, mean */
  else
    sqlite3_bind_null(st, 7);
  return step_done(st);
}

/* Writes what the current run left open. */
static int run_flush(stor_db_t *db, run_t *run) {
  int rc = SQLITE_OK;
  for (int k = 0; rc == SQLITE_OK && k < STOR_ROLLUPS; k++)
    if (run->b[k].n > 0)
      rc = bucket_write(db, k, run->series, run->level, &run->b[k]);
  memset(run->b, 0, sizeof(run->b));
  return rc;
}

/* A late reading, rolled up at once into the run of its series. */
static int run_add(stor_db_t *db, run_t *run, int64_t t_ms, double v) {
  int64_t s = stor__floor_div(t_ms, 1000);
  int64_t starts[STOR_ROLLUPS] = {stor__floor_div(s, 60) * 60, stor__floor_div(s, 3600) * 3600,
                                  stor__day_start(db, s)};
  double e = run->level ? pow(10.0, 0.1 * v) : 0;
  int rc = SQLITE_OK;
  for (int k = 0; rc == SQLITE_OK && k < STOR_ROLLUPS; k++) {
    stor_bucket_t *b = &run->b[k];
    if (b->n > 0 && b->t != starts[k]) {
      rc = bucket_write(db, k, run->series, run->level, b);
      b->n = 0;
    }
    if (b->n == 0)
      *b = (stor_bucket_t){.t = starts[k], .min = v, .max = v};
    bucket_add(b, v, e);
  }
  return rc;
}

/* A single late reading, rolled up at once. */
static int late_write(stor_db_t *db, const stor_series_t *se, int64_t t_ms, double v) {
  run_t run = {.series = se->id, .level = se->level};
  int rc = run_add(db, &run, t_ms, v);
  return rc == SQLITE_OK ? run_flush(db, &run) : rc;
}

/* ---- pending readings: newer than what their series rolled up */

bool stor__roll_pending(const stor_db_t *db, int64_t before_ms) {
  return db->reload || (db->pend_series > 0 && db->pend_min_t < before_ms);
}

static int pend_cmp(const void *a, const void *b) {
  const stor_pend_t *x = a, *y = b;
  if (x->idx != y->idx)
    return x->idx < y->idx ? -1 : 1;
  if (x->b.t != y->b.t)
    return x->b.t < y->b.t ? -1 : 1;
  return (x->b.day > y->b.day) - (x->b.day < y->b.day);
}

static bool bucket_before(const stor_bucket_t *a, const stor_bucket_t *b) {
  return a->t < b->t || (a->t == b->t && a->day <= b->day);
}

/* Writes series `se`'s pending buckets (p[0..k), sorted, and its open one)
 * into the minute, hour and day rows, one upsert per row, and its latest
 * value; it has then rolled up everything stored. Hours and days are sums
 * of its minutes: a minute lies in one hour, and in one day since a minute
 * cut by a local midnight is two buckets. */
static int series_flush(stor_db_t *db, stor_series_t *se, const stor_pend_t *p, size_t k) {
  run_t run = {.series = se->id, .level = se->level};
  stor_bucket_t *m = &run.b[0], *h = &run.b[1], *d = &run.b[2];
  bool open = se->open.n > 0;
  int rc = SQLITE_OK;
  for (size_t j = 0; rc == SQLITE_OK && (j < k || open);) {
    const stor_bucket_t *b;
    if (j < k && (!open || bucket_before(&p[j].b, &se->open))) {
      b = &p[j++].b;
    } else {
      b = &se->open;
      open = false;
    }
    int64_t hour = stor__floor_div(b->t, 3600) * 3600;
    if (m->n > 0 && (m->t != b->t || m->day != b->day)) {
      rc = bucket_write(db, 0, se->id, se->level, m);
      m->n = 0;
    }
    if (rc == SQLITE_OK && h->n > 0 && h->t != hour) {
      rc = bucket_write(db, 1, se->id, se->level, h);
      h->n = 0;
    }
    if (rc == SQLITE_OK && d->n > 0 && d->t != b->day) {
      rc = bucket_write(db, 2, se->id, se->level, d);
      d->n = 0;
    }
    bucket_merge(m, b, b->t);
    bucket_merge(h, b, hour);
    bucket_merge(d, b, b->day);
  }
  if (rc == SQLITE_OK)
    rc = run_flush(db, &run);
  if (rc == SQLITE_OK) {
    sqlite3_bind_int64(db->s_latest, 1, se->id);
    sqlite3_bind_int64(db->s_latest, 2, se->new_t);
    sqlite3_bind_double(db->s_latest, 3, se->new_v);
    rc = step_done(db->s_latest);
  }
  if (rc == SQLITE_OK) {
    se->rolled_t = se->new_t; /* pending readings are newer than rolled_t */
    se->pending = false;
    se->open.n = 0;
  }
  return rc;
}

/* Writes everything pending, series by series. */
static int pend_flush(stor_db_t *db) {
  if (db->npend > 1)
    qsort(db->pend, db->npend, sizeof(*db->pend), pend_cmp);
  int rc = SQLITE_OK;
  size_t j = 0;
  for (uint32_t i = 0; rc == SQLITE_OK && i < db->series.used; i++) {
    size_t k = j;
    while (k < db->npend && db->pend[k].idx == i)
      k++;
    if (db->series.ser[i].pending)
      rc = series_flush(db, &db->series.ser[i], db->pend + j, k - j);
    j = k;
  }
  if (rc == SQLITE_OK) {
    db->npend = 0;
    db->pend_series = 0;
    db->pend_min_t = INT64_MAX;
  }
  return rc;
}

/* Whether one more bucket can be set aside (growing the room up to
 * STOR_PEND_MAX). */
static bool pend_room(stor_db_t *db) {
  if (db->npend < db->pend_cap)
    return true;
  if (db->pend_cap >= STOR_PEND_MAX)
    return false;
  size_t want = db->pend_cap ? db->pend_cap * 2 : 256;
  stor_pend_t *grown = realloc(db->pend, want * sizeof(*grown));
  if (!grown)
    return false;
  db->pend = grown;
  db->pend_cap = want;
  return true;
}

/* Adds a reading newer than what series `idx` rolled up to its open
 * minute, first setting the open one aside when the reading is not in it
 * (writing everything when there is no room for it). */
static int pend_add(stor_db_t *db, uint32_t idx, int64_t t_ms, double v) {
  stor_series_t *se = &db->series.ser[idx];
  stor_bucket_t *b = &se->open;
  int64_t s = stor__floor_div(t_ms, 1000), minute = stor__floor_div(s, 60) * 60;
  int rc = SQLITE_OK;
  if (b->n == 0 || b->t != minute || s < b->day || s >= b->day_end) {
    if (b->n > 0 && !pend_room(db)) {
      if ((rc = pend_flush(db)) != SQLITE_OK)
        return rc;
      if (t_ms <= se->rolled_t) /* older than one written now: late after all */
        return late_write(db, se, t_ms, v);
    }
    if (b->n > 0)
      db->pend[db->npend++] = (stor_pend_t){.idx = idx, .b = *b};
    int64_t day, day_end;
    day_of(db, s, &day, &day_end);
    *b = (stor_bucket_t){.t = minute, .day = day, .day_end = day_end, .min = v, .max = v};
  }
  bucket_add(b, v, se->level ? pow(10.0, 0.1 * v) : 0);
  if (!se->pending) {
    se->pending = true;
    se->new_t = t_ms;
    se->new_v = v;
    db->pend_series++;
  } else if (t_ms > se->new_t) {
    se->new_t = t_ms;
    se->new_v = v;
  }
  if (t_ms < db->pend_min_t)
    db->pend_min_t = t_ms;
  return rc;
}

/* Reads the readings series `idx` has pending back from raw. */
static int pend_load(stor_db_t *db, uint32_t idx) {
  sqlite3_stmt *st = db->s_pend_rows;
  sqlite3_bind_int64(st, 1, db->series.ser[idx].id);
  sqlite3_bind_int64(st, 2,
                     db->series.ser[idx].rolled_t == INT64_MIN ? INT64_MIN + STOR_PACK_SPAN_MS
                                                               : db->series.ser[idx].rolled_t);
  int64_t rolled = db->series.ser[idx].rolled_t;
  int rc;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    stor_sample_t p[STOR_PACK_MAX];
    size_t k = 0;
    if ((rc = stor__pack_column(st, 0, p, &k)) != SQLITE_OK)
      break;
    for (size_t i = 0; rc == SQLITE_OK && i < k; i++)
      if (p[i].t_ms > rolled)
        rc = pend_add(db, idx, p[i].t_ms, p[i].v);
    if (rc != SQLITE_OK)
      break;
  }
  sqlite3_reset(st);
  return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

static void forget(stor_db_t *db) {
  stor_series_map_t *m = &db->series;
  if (m->slots)
    memset(m->slots, 0, m->cap * sizeof(*m->slots));
  m->used = 0;
  db->npend = 0;
  db->pend_series = 0;
  db->pend_min_t = INT64_MAX;
  db->reload = true;
}

/* Reads every series back, with what it has pending (tail rows newer than
 * its latest value; the compactor takes only rows rolled up, so none is
 * in a block): at open, and after a commit failed. One pass over the tail
 * in key order gives each series' pending rows and its newest tail row. */
static int reload(stor_db_t *db) {
  forget(db);
  sqlite3_stmt *st = db->s_series_all;
  uint32_t *by_id = NULL; /* series id -> index into ser */
  size_t by_cap = 0;
  int rc;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    int64_t id = sqlite3_column_int64(st, 0), device = sqlite3_column_int64(st, 1);
    int quantity = sqlite3_column_int(st, 2);
    if (id <= 0 || id > UINT32_MAX || device <= 0 || device > UINT32_MAX || quantity < 0 ||
        quantity > UINT8_MAX) {
      rc = SQLITE_CORRUPT;
      break;
    }
    stor_series_t e = {.id = (uint32_t)id,
                       .level = proto_quantity_is_level(quantity),
                       .max_t = INT64_MIN,
                       .rolled_t = INT64_MIN};
    if (sqlite3_column_type(st, 3) != SQLITE_NULL)
      e.max_t = sqlite3_column_int64(st, 3);
    if (sqlite3_column_type(st, 4) != SQLITE_NULL)
      e.rolled_t = sqlite3_column_int64(st, 4);
    uint32_t idx;
    if (!map_add(&db->series, series_key((uint32_t)device, (uint8_t)quantity), &e, &idx)) {
      rc = SQLITE_NOMEM;
      break;
    }
    if ((size_t)id >= by_cap) {
      size_t want = ((size_t)id + 1) * 2;
      uint32_t *grown = realloc(by_id, want * sizeof(*grown));
      if (!grown) {
        rc = SQLITE_NOMEM;
        break;
      }
      memset(grown + by_cap, 0xff, (want - by_cap) * sizeof(*grown));
      by_id = grown;
      by_cap = want;
    }
    by_id[id] = idx;
  }
  sqlite3_reset(st);
  if (rc != SQLITE_DONE) {
    free(by_id);
    return rc;
  }
  st = db->s_tail_all;
  int64_t rows = 0, min_t = INT64_MAX;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    int64_t id = sqlite3_column_int64(st, 0);
    stor_sample_t p[STOR_PACK_MAX];
    size_t k = 0;
    if (id <= 0 || (size_t)id >= by_cap || by_id[id] == UINT32_MAX) {
      rc = SQLITE_CORRUPT; /* a tail row of no series */
      break;
    }
    if ((rc = stor__pack_column(st, 1, p, &k)) != SQLITE_OK)
      break;
    if (rows == 0)
      min_t = p[0].t_ms; /* key order: the oldest row first */
    rows += (int64_t)k;
    stor_series_t *se = &db->series.ser[by_id[id]];
    if (p[k - 1].t_ms > se->max_t)
      se->max_t = p[k - 1].t_ms;
    for (size_t i = 0; rc == SQLITE_OK && i < k; i++)
      if (p[i].t_ms > se->rolled_t)
        rc = pend_add(db, by_id[id], p[i].t_ms, p[i].v);
    if (rc != SQLITE_OK)
      break;
  }
  sqlite3_reset(st);
  free(by_id);
  if (rc != SQLITE_DONE && rc != SQLITE_ROW)
    return rc;
  if (rc == SQLITE_ROW)
    return SQLITE_CORRUPT;
  db->tail_rows = rows;
  db->tail_min_t = min_t;
  db->reload = false;
  if (db->pend_series > 0)
    log_info("%zu series have readings not rolled up yet; rolling them up from the tail",
             db->pend_series);
  return SQLITE_OK;
}

/* The series of (device, quantity), created in the open transaction when
 * new. Returns a SQLite result code. */
static int series_get(stor_db_t *db, uint32_t device, uint8_t quantity, uint32_t *idx) {
  uint64_t key = series_key(device, quantity);
  if (map_find(&db->series, key, idx))
    return SQLITE_OK;
  stor_series_t e = {
      .level = proto_quantity_is_level(quantity), .max_t = INT64_MIN, .rolled_t = INT64_MIN};
  int64_t id = 0;
  sqlite3_stmt *get = db->s_series_get, *put = db->s_series_put;
  sqlite3_bind_int64(get, 1, device);
  sqlite3_bind_int(get, 2, quantity);
  int rc = sqlite3_step(get);
  if (rc == SQLITE_ROW) {
    id = sqlite3_column_int64(get, 0);
    if (sqlite3_column_type(get, 1) != SQLITE_NULL)
      e.max_t = sqlite3_column_int64(get, 1);
    if (sqlite3_column_type(get, 2) != SQLITE_NULL)
      e.rolled_t = sqlite3_column_int64(get, 2);
    rc = SQLITE_OK;
  } else if (rc == SQLITE_DONE) {
    sqlite3_bind_int64(put, 1, device);
    sqlite3_bind_int(put, 2, quantity);
    if ((rc = sqlite3_step(put)) == SQLITE_DONE) {
      id = sqlite3_last_insert_rowid(db->db);
      rc = SQLITE_OK;
    }
    sqlite3_reset(put);
  }
  sqlite3_reset(get);
  if (rc == SQLITE_OK && (id <= 0 || id > UINT32_MAX))
    rc = SQLITE_RANGE;
  e.id = (uint32_t)id;
  if (rc == SQLITE_OK && !map_add(&db->series, key, &e, idx))
    rc = SQLITE_NOMEM;
  /* Every stored series was loaded with what it has pending; one found
   * here is new, but should it not be, its pending readings are read. */
  if (rc == SQLITE_OK && e.max_t > e.rolled_t)
    rc = pend_load(db, *idx);
  return rc;
}

/* ---- the batch */

typedef struct sort_ctx {
  const stor_reading_t *ring;
  size_t head, cap;
} sort_ctx_t;

static const stor_reading_t *at(const sort_ctx_t *c, uint32_t off) {
  return &c->ring[(c->head + off) % c->cap];
}

/* Orders one series' readings by (t, arrival). */
static int time_cmp(const void *a, const void *b, void *arg) {
  const sort_ctx_t *c = arg;
  uint32_t ia = *(const uint32_t *)a, ib = *(const uint32_t *)b;
  int64_t ta = at(c, ia)->t_ms, tb = at(c, ib)->t_ms;
  if (ta != tb)
    return ta < tb ? -1 : 1;
  return ia < ib ? -1 : ia > ib; /* arrival order: the first copy wins */
}

/* Pass 1: the series of every reading, and the batch in db->order sorted
 * by (series, t, arrival): a counting sort on the series (their index
 * order is their id order, the raw table's key order), then each series'
 * few readings by time, in place when they are few (they mostly arrive in
 * order). db->sid ends up in sorted order. */
static int sort_batch(stor_db_t *db, const sort_ctx_t *c, size_t n) {
  const stor_reading_t *prev = NULL;
  uint32_t idx = 0;
  for (size_t i = 0; i < n; i++) {
    const stor_reading_t *r = at(c, (uint32_t)i);
    if (!prev || prev->device != r->device || prev->quantity != r->quantity) {
      int rc = series_get(db, r->device, r->quantity, &idx);
      if (rc != SQLITE_OK)
        return rc;
    }
    db->sid[i] = idx;
    prev = r;
  }
  size_t ns = db->series.used;
  if (ns + 1 > db->cnt_cap) {
    size_t want = (ns + 1) * 2;
    uint32_t *grown = realloc(db->cnt, want * sizeof(*grown));
    if (!grown)
      return SQLITE_NOMEM;
    db->cnt = grown;
    db->cnt_cap = want;
  }
  memset(db->cnt, 0, (ns + 1) * sizeof(*db->cnt));
  for (size_t i = 0; i < n; i++)
    db->cnt[db->sid[i] + 1]++;
  for (size_t k = 0; k < ns; k++)
    db->cnt[k + 1] += db->cnt[k];
  for (size_t i = 0; i < n; i++) /* stable: arrival order within a series */
    db->order[db->cnt[db->sid[i]]++] = (uint32_t)i;
  /* cnt[k] is now the end of series k's readings. */
  for (size_t k = 0, from = 0; k < ns; from = db->cnt[k++]) {
    size_t to = db->cnt[k];
    for (size_t j = from; j < to; j++)
      db->sid[j] = (uint32_t)k;
    uint32_t *o = db->order + from;
    size_t m = to - from;
    if (m > 32) {
      qsort_r(o, m, sizeof(*o), time_cmp, (void *)c);
      continue;
    }
    for (size_t j = 1; j < m; j++) { /* insertion: nearly always in order already */
      uint32_t x = o[j];
      size_t h = j;
      while (h > 0 && time_cmp(&o[h - 1], &x, (void *)c) > 0) {
        o[h] = o[h - 1];
        h--;
      }
      o[h] = x;
    }
  }
  return SQLITE_OK;
}

/* Pass 2: whether each reading is certainly new (ST_NEW), a copy of an
 * earlier one in this batch (ST_DUP) or must be checked against the table
 * (ST_CHECK). */
static void classify(stor_db_t *db, const sort_ctx_t *c, size_t n) {
  const stor_reading_t *prev = NULL;
  for (size_t i = 0; i < n; i++) {
    const stor_reading_t *r = at(c, db->order[i]);
    stor_series_t *se = &db->series.ser[db->sid[i]];
    if (i > 0 && db->sid[i - 1] == db->sid[i] && prev->t_ms == r->t_ms) {
      db->state[i] = ST_DUP;
    } else if (r->t_ms > se->max_t) {
      db->state[i] = ST_NEW;
      se->max_t = r->t_ms; /* the run ascends */
    } else {
      db->state[i] = ST_CHECK;
    }
    prev = r;
  }
}

/* ---- pass 3: the tail rows */

/* Packs staged for a multi-row insert (at most STAGE_ROWS); their bytes
 * lie in buf. */
#define STAGE_ROWS (1 << (STOR_MULTI_SHIFT - 1))
typedef struct stage {
  size_t n;
  int64_t t[STAGE_ROWS], series[STAGE_ROWS];
  uint32_t count[STAGE_ROWS];
  size_t off[STAGE_ROWS], len[STAGE_ROWS];
  double v[STAGE_ROWS]; /* a pack of one: its value, bound as such */
  uint8_t *buf;
  size_t used, cap;
} stage_t;

/* Inserts the first k staged packs (a power of two) and drops them. */
static int stage_insert(stor_db_t *db, stage_t *sg, int shift) {
  size_t k = (size_t)1 << shift;
  sqlite3_stmt *st = db->s_raw_multi[shift];
  for (size_t j = 0; j < k; j++) {
    sqlite3_bind_int64(st, (int)(4 * j + 1), sg->t[j]);
    sqlite3_bind_int64(st, (int)(4 * j + 2), sg->series[j]);
    sqlite3_bind_int64(st, (int)(4 * j + 3), sg->count[j]);
    if (sg->count[j] == 1)
      stor__bind_value(st, (int)(4 * j + 4), sg->v[j]);
    else
      sqlite3_bind_blob(st, (int)(4 * j + 4), sg->buf + sg->off[j], (int)sg->len[j], SQLITE_STATIC);
  }
  int rc = step_done(st);
  /* Pass 3 found none of these readings stored, so no pack of the series
   * starts at its t; anything else is a bug that the retry (with the
   * series cache rebuilt) must not repeat. */
  if (rc == SQLITE_OK && sqlite3_changes(db->db) != (int)k)
    rc = SQLITE_INTERNAL;
  sqlite3_clear_bindings(st);
  if (rc == SQLITE_OK) {
    size_t rest = sg->n - k;
    memmove(sg->t, sg->t + k, rest * sizeof(*sg->t));
    memmove(sg->series, sg->series + k, rest * sizeof(*sg->series));
    memmove(sg->count, sg->count + k, rest * sizeof(*sg->count));
    memmove(sg->off, sg->off + k, rest * sizeof(*sg->off));
    memmove(sg->len, sg->len + k, rest * sizeof(*sg->len));
    memmove(sg->v, sg->v + k, rest * sizeof(*sg->v));
    sg->n = rest;
    if (rest == 0)
      sg->used = 0;
  }
  return rc;
}

/* Inserts every staged pack, in statements of 32, 16 ... 1 rows. */
static int stage_flush(stor_db_t *db, stage_t *sg) {
  int rc = SQLITE_OK;
  for (int shift = STOR_MULTI_SHIFT - 1; rc == SQLITE_OK && sg->n > 0; shift--)
    while (rc == SQLITE_OK && sg->n >= (size_t)1 << shift)
      rc = stage_insert(db, sg, shift);
  return rc;
}

/* Stages the pack of series `series`'s samples p[0..k). */
static int stage_add(stor_db_t *db, stage_t *sg, int64_t series, const stor_sample_t *p, size_t k) {
  if (sg->used + STOR_PACK_BYTES(k) > sg->cap) {
    size_t want = sg->cap ? sg->cap * 2 : 16384;
    while (want < sg->used + STOR_PACK_BYTES(k))
      want *= 2;
    uint8_t *grown = realloc(sg->buf, want);
    if (!grown)
      return SQLITE_NOMEM;
    sg->buf = grown;
    sg->cap = want;
  }
  /* One reading is its value alone: 2 bytes for 56.3 where a pack of one
   * takes 5 (most packs at a site's pace). */
  ssize_t len = k == 1 ? 0 : stor__pack_encode(p, k, sg->buf + sg->used, sg->cap - sg->used);
  if (len < 0)
    return SQLITE_INTERNAL; /* stor_append takes finite values at times >= 0 only */
  sg->v[sg->n] = p[0].v;
  sg->t[sg->n] = p[0].t_ms;
  sg->series[sg->n] = series;
  sg->count[sg->n] = (uint32_t)k;
  sg->off[sg->n] = sg->used;
  sg->len[sg->n] = (size_t)len;
  sg->used += (size_t)len;
  sg->n++;
  return sg->n == STAGE_ROWS ? stage_insert(db, sg, STOR_MULTI_SHIFT - 1) : SQLITE_OK;
}

/* A reading the resend check looks for in the tail: its series, its time
 * and its place in the batch's order. */
typedef struct chk {
  int64_t series, t;
  size_t i;
} chk_t;

static int chk_cmp(const void *a, const void *b) {
  const chk_t *x = a, *y = b;
  if (x->series != y->series)
    return (x->series > y->series) - (x->series < y->series);
  return (x->t > y->t) - (x->t < y->t);
}

/* The first of k[0..n) (sorted) not before (series, t). */
static size_t chk_lower(const chk_t *k, size_t n, int64_t series, int64_t t) {
  size_t lo = 0, hi = n;
  chk_t key = {.series = series, .t = t};
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    if (chk_cmp(&k[mid], &key) < 0)
      lo = mid + 1;
    else
      hi = mid;
  }
  return lo;
}

/* Marks ST_DUP the readings k[0..n) (sorted by series and time) that a
 * tail row with key t in (lo, hi] holds. */
static int tail_scan(stor_db_t *db, const chk_t *k, size_t n, int64_t lo, int64_t hi) {
  sqlite3_stmt *st = db->s_tail_span;
  sqlite3_bind_int64(st, 1, lo);
  sqlite3_bind_int64(st, 2, hi);
  int rc;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    int64_t series = sqlite3_column_int64(st, 0), t = sqlite3_column_int64(st, 1);
    /* Most rows are other series' packs: decoded only when one of the
     * readings looked for may lie in this pack's span. */
    size_t j = chk_lower(k, n, series, t);
    if (j == n || k[j].series != series || k[j].t >= t + STOR_PACK_SPAN_MS)
      continue;
    stor_sample_t p[STOR_PACK_MAX];
    size_t m = 0;
    if ((rc = stor__pack_column(st, 1, p, &m)) != SQLITE_OK)
      break;
    /* Both ascend: one merge. */
    for (size_t a = 0; a < m && j < n && k[j].series == series;) {
      if (p[a].t_ms < k[j].t) {
        a++;
      } else {
        if (p[a].t_ms == k[j].t)
          db->state[k[j].i] = ST_DUP;
        j++;
      }
    }
  }
  sqlite3_reset(st);
  return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

/* The resend check's tail part for readings k[0..n) (sorted by series and
 * time; found in no block, marked ST_INSERTED): those a tail row holds
 * become ST_DUP. The packs that may hold a reading at t have keys in
 * (t - STOR_PACK_SPAN_MS, t]; those windows, merged, are each read once
 * for the whole batch. (A query a series, as before, read every series'
 * packs in the window each time: tail keys start with t. A batch of 16,384
 * resends to 10,000 series took 24 s.) Each series' windows are merged
 * first, in its readings' order, so only those spans are sorted. */
typedef struct span {
  int64_t lo, hi;
} span_t;

static int span_cmp(const void *a, const void *b) {
  const span_t *x = a, *y = b;
  return (x->lo > y->lo) - (x->lo < y->lo);
}

static int tail_find(stor_db_t *db, const chk_t *k, size_t n) {
  span_t *sp = malloc(n * sizeof(*sp));
  if (!sp)
    return SQLITE_NOMEM;
  /* Times are >= 0 (stor_append), so t - STOR_PACK_SPAN_MS cannot wrap. */
  size_t ns = 0;
  for (size_t i = 0; i < n; i++) {
    if (ns > 0 && k[i - 1].series == k[i].series && k[i].t - STOR_PACK_SPAN_MS <= sp[ns - 1].hi)
      sp[ns - 1].hi = k[i].t;
    else
      sp[ns++] = (span_t){k[i].t - STOR_PACK_SPAN_MS, k[i].t};
  }
  if (ns > 1)
    qsort(sp, ns, sizeof(*sp), span_cmp);
  int rc = SQLITE_OK;
  span_t w = sp[0];
  for (size_t i = 1; rc == SQLITE_OK && i <= ns; i++) {
    if (i < ns && sp[i].lo <= w.hi) {
      if (sp[i].hi > w.hi)
        w.hi = sp[i].hi;
      continue;
    }
    rc = tail_scan(db, k, n, w.lo, w.hi);
    if (i < ns)
      w = sp[i];
  }
  free(sp);
  return rc;
}

/* Pass 3: the tail rows. A reading not newer than what its series has
 * stored (a resend or a late reading) is looked for in the blocks and the
 * tail first; then each series' new readings go in as packs, in time
 * order, each of at most STOR_PACK_MAX readings within STOR_PACK_SPAN_MS
 * (one pack a series a commit at a site's pace). */
static int insert_raw(stor_db_t *db, const sort_ctx_t *c, size_t n) {
  stage_t sg = {0};
  chk_t *k = NULL; /* at most n, made at the first check */
  size_t nk = 0;
  stor_blk_seen_t seen = {0};
  int rc = SQLITE_OK;
  for (size_t i = 0; rc == SQLITE_OK && i < n; i++) {
    if (db->state[i] != ST_CHECK)
      continue;
    int64_t series = db->series.ser[db->sid[i]].id, t = at(c, db->order[i])->t_ms;
    int has = stor__block_has(db, &seen, series, t);
    if (has < 0) {
      rc = -has;
    } else if (has) {
      db->state[i] = ST_DUP;
    } else if (!k && !(k = malloc(n * sizeof(*k)))) {
      rc = SQLITE_NOMEM;
    } else {
      k[nk++] = (chk_t){.series = series, .t = t, .i = i};
      db->state[i] = ST_INSERTED;
    }
  }
  free(seen.data);
  if (rc == SQLITE_OK && nk > 0) {
    /* In the batch's order, by series and time (series index order is id
     * order, sort_batch): sorted only where that does not hold. */
    for (size_t j = 1; j < nk; j++)
      if (chk_cmp(&k[j - 1], &k[j]) > 0) {
        qsort(k, nk, sizeof(*k), chk_cmp);
        break;
      }
    rc = tail_find(db, k, nk);
  }
  free(k);
  for (size_t from = 0, to; rc == SQLITE_OK && from < n; from = to) {
    uint32_t sid = db->sid[from];
    int64_t series = db->series.ser[sid].id;
    for (to = from; to < n && db->sid[to] == sid; to++)
      ;
    stor_sample_t p[STOR_PACK_MAX];
    size_t m = 0;
    for (size_t i = from; rc == SQLITE_OK && i < to; i++) {
      if (db->state[i] == ST_DUP)
        continue;
      const stor_reading_t *r = at(c, db->order[i]);
      if (m > 0 && (m == STOR_PACK_MAX || r->t_ms - p[0].t_ms >= STOR_PACK_SPAN_MS)) {
        rc = stage_add(db, &sg, series, p, m);
        m = 0;
      }
      p[m++] = (stor_sample_t){.t_ms = r->t_ms, .v = r->value};
    }
    if (rc == SQLITE_OK && m > 0)
      rc = stage_add(db, &sg, series, p, m);
  }
  if (rc == SQLITE_OK)
    rc = stage_flush(db, &sg);
  free(sg.buf);
  return rc;
}

/* Pass 4: what was inserted is pending, or, when its series has rolled up
 * newer readings already (a late reading), rolled up at once. */
static int aggregate(stor_db_t *db, const sort_ctx_t *c, size_t n, uint64_t *inserted,
                     uint64_t *dups) {
  run_t run = {0};
  int rc = SQLITE_OK;
  for (size_t i = 0; rc == SQLITE_OK && i < n; i++) {
    if (db->state[i] == ST_DUP) {
      ++*dups; /* a resend: stored already, counted already */
      continue;
    }
    const stor_reading_t *r = at(c, db->order[i]);
    const stor_series_t *se = &db->series.ser[db->sid[i]];
    ++*inserted;
    if (r->t_ms < db->tail_min_t)
      db->tail_min_t = r->t_ms;
    if (r->t_ms > se->rolled_t) {
      rc = pend_add(db, db->sid[i], r->t_ms, r->value);
      continue;
    }
    if (run.series != se->id) {
      if (run.series)
        rc = run_flush(db, &run);
      run.series = se->id;
      run.level = se->level;
    }
    if (rc == SQLITE_OK)
      rc = run_add(db, &run, r->t_ms, r->value);
  }
  if (rc == SQLITE_OK && run.series)
    rc = run_flush(db, &run);
  if (rc == SQLITE_OK && *inserted > 0) {
    db->tail_rows += (int64_t)*inserted;
    sqlite3_bind_int64(db->s_count, 1, (int64_t)*inserted);
    rc = step_done(db->s_count);
  }
  /* Only a commit that stores readings can make one pending; a commit
   * that writes rollups leaves an earlier value, still at or before
   * whatever is pending. */
  if (rc == SQLITE_OK && *inserted > 0) {
    sqlite3_bind_int64(db->s_pend_from, 1, db->pend_min_t);
    rc = step_done(db->s_pend_from);
  }
  return rc;
}

int stor__batch_commit(stor_db_t *db, size_t n, bool flush, uint64_t *inserted, uint64_t *dups) {
  sort_ctx_t c = {.ring = db->ring, .head = db->head, .cap = db->queue_max};
  assert(n <= db->batch_readings); /* the arrays' size */
  *inserted = *dups = 0;
  int rc = step_done(db->s_begin);
  if (rc == SQLITE_OK && db->reload)
    rc = reload(db);
  if (rc == SQLITE_OK && n > 0 && (rc = sort_batch(db, &c, n)) == SQLITE_OK)
    classify(db, &c, n);
  if (rc == SQLITE_OK && n > 0)
    rc = insert_raw(db, &c, n);
  if (rc == SQLITE_OK && n > 0)
    rc = aggregate(db, &c, n, inserted, dups);
  if (rc == SQLITE_OK && flush && db->pend_series > 0)
    rc = pend_flush(db);
  if (rc == SQLITE_OK)
    rc = step_done(db->s_commit);
  if (rc == SQLITE_OK)
    return 0;

  snprintf(db->errmsg, sizeof(db->errmsg), "%s",
           rc == SQLITE_INTERNAL ? "raw rows out of step with the series cache"
                                 : sqlite3_errmsg(db->db));
  if (!sqlite3_get_autocommit(db->db))
    step_done(db->s_rollback);
  /* Series made in this transaction are gone, the newest times of the
   * others may be too, and what was pending is partly written and partly
   * not: read it all back from the tables next time. */
  forget(db);
  *inserted = *dups = 0;
  return stor__err(db->db, rc);
}

void stor__batch_release(stor_db_t *db, size_t n) {
  /* The first pages stay: every batch uses them. */
  size_t keep = STOR_BATCH_KEEP;
  if (n > keep) {
    stor__pages_release(db->order, keep * sizeof(*db->order), n * sizeof(*db->order));
    stor__pages_release(db->sid, keep * sizeof(*db->sid), n * sizeof(*db->sid));
    stor__pages_release(db->state, keep * sizeof(*db->state), n * sizeof(*db->state));
  }
}

int stor__roll_prepare(stor_db_t *db) {
  if (!db->reload)
    return 0;
  /* Reading only, unless so much is pending that some is written. */
  int rc = step_done(db->s_begin);
  if (rc == SQLITE_OK)
    rc = reload(db);
  if (rc == SQLITE_OK)
    rc = step_done(db->s_commit);
  if (rc == SQLITE_OK)
    return 0;
  if (!sqlite3_get_autocommit(db->db))
    step_done(db->s_rollback);
  forget(db);
  return stor__err(db->db, rc);
}
