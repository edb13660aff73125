/* The read side: one read-only connection per thread. In WAL mode a reader
 * sees the last committed state and neither waits for the writer nor holds
 * it up; each call resets its statements before returning, so no snapshot
 * outlives a call (an open one would keep the checkpoint from finishing). */
#define LOG_MODULE "storage"
#include "common/common.h"
#include "storage/storage_int.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

struct stor_reader {
  sqlite3 *db;
  sqlite3_stmt *s_find, *s_points[4], *s_latest, *s_count, *s_pages, *s_page_size;
  sqlite3_stmt *s_begin, *s_end, *s_blk_first, *s_tail_next,
      *s_tail; /* raw: s_points[0] is blocks */
};

#define ROLL_SELECT(table)                                                                         \
  "SELECT t, n, vmin, vmax, vsum, esum FROM " table                                                \
  " WHERE series = ?1 AND t >= ?2 AND t < ?3 ORDER BY t LIMIT ?4"

static int prepare(stor_reader_t *r) {
  const struct {
    sqlite3_stmt **st;
    const char *sql;
  } stmts[] = {
      /* No row: unknown device. A NULL series: known device, no such data. */
      {&r->s_find, "SELECT d.id, s.id FROM device d"
                   " LEFT JOIN series s ON s.device = d.id AND s.quantity = ?2 WHERE d.name = ?1"},
      /* Raw readings are blocks and tail rows (schema.c, version 8): the
       * blocks from the one holding `since`, and the series' tail rows one
       * slot at a time (s_tail_next finds the next slot that has any). */
      {&r->s_points[STOR_STEP_RAW], "SELECT t1, n, data FROM block"
                                    " WHERE series = ?1 AND t0 >= ?2 AND t0 < ?3 ORDER BY t0"},
      {&r->s_blk_first,
       "SELECT t0 FROM block WHERE series = ?1 AND t0 <= ?2 ORDER BY t0 DESC LIMIT 1"},
      {&r->s_tail_next, "SELECT slot FROM tail WHERE slot >= ?1 ORDER BY slot LIMIT 1"},
      {&r->s_begin, "BEGIN"},
      {&r->s_end, "COMMIT"},
      {&r->s_points[STOR_STEP_1M], ROLL_SELECT("roll_1m")},
      {&r->s_points[STOR_STEP_1H], ROLL_SELECT("roll_1h")},
      {&r->s_points[STOR_STEP_1D], ROLL_SELECT("roll_1d")},
      {&r->s_tail, "SELECT t, v FROM tail WHERE slot = ?1 AND series = ?2 AND t >= ?3 AND t < ?4"
                   " ORDER BY t"},
      {&r->s_latest, "SELECT d.name, s.quantity, l.t, l.v FROM latest l"
                     " JOIN series s ON s.id = l.series JOIN device d ON d.id = s.device"
                     " ORDER BY d.name, s.quantity"},
      {&r->s_count, "SELECT value FROM counter WHERE name = 'raw_rows'"},
      {&r->s_pages, "PRAGMA page_count"},
      {&r->s_page_size, "PRAGMA page_size"},
  };
  int rc = 0;
  for (size_t i = 0; rc == 0 && i < sizeof(stmts) / sizeof(stmts[0]); i++)
    rc = stor__prepare(r->db, stmts[i].sql, stmts[i].st);
  return rc;
}

int stor_reader_open(const char *path, stor_reader_t **out) {
  int rc;
  stor_reader_t *r = NULL;
  if (!path || !out)
    return -EINVAL;
  *out = NULL;
  if (!(r = calloc(1, sizeof(*r))))
    return -ENOMEM;
  int src = sqlite3_open_v2(path, &r->db, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, NULL);
  if (src != SQLITE_OK) {
    rc = stor__fail(r->db, src, path);
    goto fail;
  }
  sqlite3_busy_timeout(r->db, STOR_BUSY_TIMEOUT_MS);
  if ((rc = stor__exec(r->db, "PRAGMA cache_size = -" STR(STOR_READER_CACHE_KIB))) != 0 ||
      (rc = stor__check_version(r->db, path)) != 0 || (rc = prepare(r)) != 0)
    goto fail;
  *out = r;
  return 0;

fail:
  stor_reader_close(r);
  return rc;
}

void stor_reader_close(stor_reader_t *r) {
  if (!r)
    return;
  sqlite3_stmt *stmts[] = {r->s_find,      r->s_points[0], r->s_points[1], r->s_points[2],
                           r->s_points[3], r->s_latest,    r->s_count,     r->s_pages,
                           r->s_page_size, r->s_begin,     r->s_end,       r->s_blk_first,
                           r->s_tail_next, r->s_tail};
  for (size_t i = 0; i < sizeof(stmts) / sizeof(stmts[0]); i++)
    sqlite3_finalize(stmts[i]);
  sqlite3_close(r->db);
  free(r);
}

sqlite3 *stor__reader_db(stor_reader_t *r) { return r ? r->db : NULL; }

/* The series of (device, quantity): 0 with *series 0 when the device is
 * known but has no such data, -ENOENT when the device is unknown. */
static int find_series(stor_reader_t *r, const char *device, int quantity, int64_t *series) {
  sqlite3_stmt *st = r->s_find;
  sqlite3_bind_text(st, 1, device, -1, SQLITE_STATIC);
  sqlite3_bind_int(st, 2, quantity);
  int rc = sqlite3_step(st), ret = 0;
  if (rc == SQLITE_ROW)
    *series = sqlite3_column_int64(st, 1); /* NULL reads as 0 */
  else if (rc == SQLITE_DONE)
    ret = -ENOENT;
  else
    ret = stor__fail(r->db, rc, "query");
  sqlite3_reset(st);
  sqlite3_clear_bindings(st);
  return ret;
}

static int64_t ceil_div(int64_t a, int64_t b) { return a / b + (a % b > 0); }

static void read_point(sqlite3_stmt *st, stor_step_t step, stor_point_t *p) {
  if (step == STOR_STEP_RAW) {
    double v = stor__column_value(st, 1);
    *p = (stor_point_t){.t_ms = sqlite3_column_int64(st, 0), .n = 1, .min = v, .max = v, .mean = v};
    return;
  }
  p->t_ms = sqlite3_column_int64(st, 0) * 1000;
  p->n = (uint32_t)sqlite3_column_int64(st, 1);
  p->min = sqlite3_column_double(st, 2) / STOR_ROLL_SCALE;
  p->max = sqlite3_column_double(st, 3) / STOR_ROLL_SCALE;
  if (sqlite3_column_type(st, 5) != SQLITE_NULL) /* a level: energy mean */
    p->mean = 10.0 * log10(sqlite3_column_double(st, 5) / p->n);
  else
    p->mean = sqlite3_column_double(st, 4) / STOR_ROLL_SCALE / p->n;
}

/* A growing array of points. */
typedef struct pts {
  stor_point_t *p;
  size_t n, cap;
} pts_t;

static bool pts_push(pts_t *a, int64_t t_ms, double v) {
  if (a->n == a->cap) {
    size_t want = a->cap ? a->cap * 2 : 64;
    stor_point_t *grown = realloc(a->p, want * sizeof(*grown));
    if (!grown)
      return false;
    a->p = grown;
    a->cap = want;
  }
  a->p[a->n++] = (stor_point_t){.t_ms = t_ms, .n = 1, .min = v, .max = v, .mean = v};
  return true;
}

/* The series' tail rows in [since, until), ascending. */
static int tail_rows(stor_reader_t *r, int64_t series, int64_t since, int64_t until, pts_t *out) {
  int64_t slot = since >> STOR_SLOT_SHIFT, last = (until - 1) >> STOR_SLOT_SHIFT;
  int rc = SQLITE_OK;
  while (rc == SQLITE_OK && slot <= last) {
    sqlite3_bind_int64(r->s_tail_next, 1, slot);
    rc = sqlite3_step(r->s_tail_next);
    bool found = rc == SQLITE_ROW;
    if (found)
      slot = sqlite3_column_int64(r->s_tail_next, 0);
    sqlite3_reset(r->s_tail_next);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
      break;
    rc = SQLITE_OK;
    if (!found || slot > last)
      break;
    sqlite3_stmt *st = r->s_tail;
    sqlite3_bind_int64(st, 1, slot);
    sqlite3_bind_int64(st, 2, series);
    sqlite3_bind_int64(st, 3, since);
    sqlite3_bind_int64(st, 4, until);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW)
      if (!pts_push(out, sqlite3_column_int64(st, 0), stor__column_value(st, 1))) {
        rc = SQLITE_NOMEM;
        break;
      }
    sqlite3_reset(st);
    rc = rc == SQLITE_DONE ? SQLITE_OK : rc;
    slot++;
  }
  return rc;
}

/* Raw readings: the blocks overlapping [since, until) merged with the tail
 * rows, in one read transaction (the compactor moves rows from one to the
 * other), at most `limit`. */
static int raw_points(stor_reader_t *r, int64_t series, int64_t since, int64_t until, size_t limit,
                      pts_t *out) {
  pts_t tail = {0};
  stor_sample_t *s = NULL;
  size_t ti = 0;
  int rc = sqlite3_step(r->s_begin);
  sqlite3_reset(r->s_begin);
  rc = rc == SQLITE_DONE ? SQLITE_OK : rc;
  if (rc == SQLITE_OK)
    rc = tail_rows(r, series, since, until, &tail);
  int64_t from = since;
  if (rc == SQLITE_OK) {
    sqlite3_bind_int64(r->s_blk_first, 1, series);
    sqlite3_bind_int64(r->s_blk_first, 2, since);
    rc = sqlite3_step(r->s_blk_first);
    if (rc == SQLITE_ROW)
      from = sqlite3_column_int64(r->s_blk_first, 0);
    sqlite3_reset(r->s_blk_first);
    rc = rc == SQLITE_ROW || rc == SQLITE_DONE ? SQLITE_OK : rc;
  }
  sqlite3_stmt *st = r->s_points[STOR_STEP_RAW];
  if (rc == SQLITE_OK) {
    sqlite3_bind_int64(st, 1, series);
    sqlite3_bind_int64(st, 2, from);
    sqlite3_bind_int64(st, 3, until);
    while (out->n < limit && (rc = sqlite3_step(st)) == SQLITE_ROW) {
      if (sqlite3_column_int64(st, 0) < since)
        continue;
      int64_t bn = sqlite3_column_int64(st, 1);
      size_t k = 0;
      free(s);
      if (bn <= 0 || bn > STOR_BLOCK_MAX || !(s = malloc((size_t)bn * sizeof(*s)))) {
        s = NULL;
        rc = bn <= 0 || bn > STOR_BLOCK_MAX ? SQLITE_CORRUPT : SQLITE_NOMEM;
        break;
      }
      if (stor__block_decode(sqlite3_column_blob(st, 2), (size_t)sqlite3_column_bytes(st, 2), s,
                             (size_t)bn, &k, NULL) != 0) {
        rc = SQLITE_CORRUPT;
        break;
      }
      for (size_t i = 0; i < k && out->n < limit; i++) {
        if (s[i].t_ms < since || s[i].t_ms >= until)
          continue;
        for (; rc == SQLITE_ROW && ti < tail.n && tail.p[ti].t_ms < s[i].t_ms && out->n < limit;
             ti++)
          if (!pts_push(out, tail.p[ti].t_ms, tail.p[ti].min))
            rc = SQLITE_NOMEM;
        if (rc == SQLITE_NOMEM)
          break;
        if (ti < tail.n && tail.p[ti].t_ms == s[i].t_ms)
          ti++; /* in both: once (the compactor keeps the block's) */
        if (out->n < limit && !pts_push(out, s[i].t_ms, s[i].v)) {
          rc = SQLITE_NOMEM;
          break;
        }
      }
      if (rc == SQLITE_NOMEM)
        break;
    }
    sqlite3_reset(st);
    rc = rc == SQLITE_DONE || rc == SQLITE_ROW ? SQLITE_OK : rc;
  }
  while (rc == SQLITE_OK && ti < tail.n && out->n < limit)
    if (!pts_push(out, tail.p[ti].t_ms, tail.p[ti].min))
      rc = SQLITE_NOMEM;
    else
      ti++;
  free(s);
  free(tail.p);
  int end = sqlite3_step(r->s_end);
  sqlite3_reset(r->s_end);
  if (rc == SQLITE_OK && end != SQLITE_DONE)
    rc = end;
  return rc;
}

int stor_query(stor_reader_t *r, const char *device, int quantity, stor_step_t step,
               int64_t since_ms, int64_t until_ms, size_t limit, stor_point_t **out, size_t *n) {
  int rc;
  int64_t series = 0;
  stor_point_t *pts = NULL;
  size_t have = 0, cap = 0;
  if (!r || !device || !out || !n || step < STOR_STEP_RAW || step > STOR_STEP_1D)
    return -EINVAL;
  *out = NULL;
  *n = 0;
  if ((rc = find_series(r, device, quantity, &series)) != 0 || series == 0 || limit == 0 ||
      since_ms >= until_ms)
    return rc;

  if (step == STOR_STEP_RAW) {
    pts_t got = {0};
    int src = raw_points(r, series, since_ms, until_ms, limit, &got);
    if (src != SQLITE_OK) {
      free(got.p);
      return src == SQLITE_NOMEM ? -ENOMEM : stor__fail(r->db, src, "query");
    }
    *out = got.p;
    *n = got.n;
    if (!got.n) {
      free(got.p);
      *out = NULL;
    }
    return 0;
  }
  sqlite3_stmt *st = r->s_points[step];
  int64_t div = step == STOR_STEP_RAW ? 1 : 1000; /* rollups keep seconds */
  sqlite3_bind_int64(st, 1, series);
  sqlite3_bind_int64(st, 2, ceil_div(since_ms, div));
  sqlite3_bind_int64(st, 3, ceil_div(until_ms, div));
  sqlite3_bind_int64(st, 4, limit > INT64_MAX ? INT64_MAX : (int64_t)limit);
  int src;
  while ((src = sqlite3_step(st)) == SQLITE_ROW) {
    if (have == cap) {
      size_t want = cap ? cap * 2 : 64;
      stor_point_t *grown = realloc(pts, want * sizeof(*pts));
      if (!grown) {
        rc = -ENOMEM;
        break;
      }
      pts = grown;
      cap = want;
    }
    read_point(st, step, &pts[have++]);
  }
  if (rc == 0 && src != SQLITE_DONE)
    rc = stor__fail(r->db, src, "query");
  sqlite3_reset(st);
  if (rc != 0) {
    free(pts);
    return rc;
  }
  *out = have ? pts : NULL;
  if (!have)
    free(pts);
  *n = have;
  return 0;
}

int stor_latest(stor_reader_t *r, stor_latest_cb cb, void *arg) {
  if (!r || !cb)
    return -EINVAL;
  sqlite3_stmt *st = r->s_latest;
  int rc;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    if (cb(arg, (const char *)sqlite3_column_text(st, 0), sqlite3_column_int(st, 1),
           sqlite3_column_int64(st, 2), sqlite3_column_double(st, 3)) != 0) {
      rc = SQLITE_DONE;
      break;
    }
  }
  int ret = rc == SQLITE_DONE ? 0 : stor__fail(r->db, rc, "latest");
  sqlite3_reset(st);
  return ret;
}

static int one_int(stor_reader_t *r, sqlite3_stmt *st, int64_t *v) {
  int rc = sqlite3_step(st), ret = 0;
  if (rc == SQLITE_ROW)
    *v = sqlite3_column_int64(st, 0);
  else
    ret = stor__fail(r->db, rc == SQLITE_DONE ? SQLITE_CORRUPT : rc, "counts");
  sqlite3_reset(st);
  return ret;
}

int stor_reader_counts(stor_reader_t *r, int64_t *raw_rows, int64_t *db_bytes) {
  int64_t rows = 0, pages = 0, size = 0;
  if (!r)
    return -EINVAL;
  int rc = one_int(r, r->s_count, &rows);
  if (rc == 0)
    rc = one_int(r, r->s_pages, &pages);
  if (rc == 0)
    rc = one_int(r, r->s_page_size, &size);
  if (rc == 0 && raw_rows)
    *raw_rows = rows;
  if (rc == 0 && db_bytes)
    *db_bytes = pages * size;
  return rc;
}
