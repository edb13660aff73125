/* The read side: one read-only connection per thread. In WAL mode a reader
 * sees the last committed state and neither waits for the writer nor holds
 * it up; each call resets its statements before returning, so no snapshot
 * outlives a call (an open one would keep the checkpoint from finishing),
 * but for a hold's (stor_reader_hold), which its caller keeps short.
 *
 * The writer writes rollups and latest values late (batch.c, db.c): the
 * tables hold exactly a series' readings with t <= latest.t, and the newer
 * ones are pending, in the tail. A rollup query or stor_latest therefore
 * adds the pending tail rows to the tables' rows, in the same read
 * transaction, so a reading is in every answer from its commit on. */
#define LOG_MODULE "storage"
#include "common/common.h"
#include "protocol/protocol.h"
#include "storage/storage_int.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct stor_reader {
  sqlite3 *db;
  sqlite3_stmt *s_find, *s_points[4], *s_latest, *s_count, *s_pages, *s_page_size;
  sqlite3_stmt *s_begin, *s_end, *s_blk_first, *s_tail; /* raw: s_points[0] is blocks */
  sqlite3_stmt *s_rolled, *s_tail_all, *s_pend_from;
  sqlite3_stmt *s_span[4];  /* a rollup table's first and last bucket in a range */
  sqlite3_stmt *s_next_day; /* roll_1d's next bucket start */
  sqlite3_stmt *s_dev_series;
  int64_t day0, day1; /* the last local day looked up, [day0, day1) in seconds */
  /* stor_reader_hold: the read transaction that queries share till
   * stor_reader_release, and the tail readings of the held series: those
   * of series h_ids[k] (ascending) are h_s[h_at[k] .. h_at[k + 1]),
   * ascending. */
  bool held;
  int64_t *h_ids;
  size_t *h_at, n_held;
  stor_sample_t *h_s;
};

/* Rollup tables are keyed (t, series) (schema.c, version 13): a series'
 * buckets are looked up one by one, between the first and the last bucket
 * any series has in the range. */
#define ROLL_SELECT(table)                                                                         \
  "SELECT n, vmin, " STOR_ROLL_VMAX ", " STOR_ROLL_VSUM ", esum FROM " table                       \
  " WHERE t = ?2 AND series = ?1"
#define ROLL_SPAN(table)                                                                           \
  "SELECT (SELECT t FROM " table " WHERE t >= ?1 AND t < ?2 ORDER BY t LIMIT 1),"                  \
  " (SELECT t FROM " table " WHERE t >= ?1 AND t < ?2 ORDER BY t DESC LIMIT 1)"

static int prepare(stor_reader_t *r) {
  const struct {
    sqlite3_stmt **st;
    const char *sql;
  } stmts[] = {
      /* No row: unknown device. A NULL series: known device, no such data. */
      {&r->s_find, "SELECT d.id, s.id FROM device d"
                   " LEFT JOIN series s ON s.device = d.id AND s.quantity = ?2 WHERE d.name = ?1"},
      /* Raw readings are blocks and tail rows (schema.c, versions 8 and
       * 10): the blocks from the one holding `since`, and the series'
       * packs that may hold readings in [since, until). */
      {&r->s_points[STOR_STEP_RAW], "SELECT t1, n, data FROM block"
                                    " WHERE series = ?1 AND t0 >= ?2 AND t0 < ?3 ORDER BY t0"},
      {&r->s_blk_first,
       "SELECT t0 FROM block WHERE series = ?1 AND t0 <= ?2 ORDER BY t0 DESC LIMIT 1"},
      {&r->s_begin, "BEGIN"},
      {&r->s_end, "COMMIT"},
      {&r->s_points[STOR_STEP_1M], ROLL_SELECT("roll_1m")},
      {&r->s_points[STOR_STEP_1H], ROLL_SELECT("roll_1h")},
      {&r->s_points[STOR_STEP_1D], ROLL_SELECT("roll_1d")},
      {&r->s_span[STOR_STEP_1M], ROLL_SPAN("roll_1m")},
      {&r->s_span[STOR_STEP_1H], ROLL_SPAN("roll_1h")},
      {&r->s_span[STOR_STEP_1D], ROLL_SPAN("roll_1d")},
      {&r->s_next_day, "SELECT t FROM roll_1d WHERE t > ?1 ORDER BY t LIMIT 1"},
      {&r->s_tail, "SELECT t, data FROM tail WHERE t > ?2 - " STR(
                       STOR_PACK_SPAN_MS) " AND t < ?3 AND series = ?1"},
      /* Every series, for stor_latest: with its latest row if it has one,
       * and the tail rows newer than it. */
      {&r->s_latest, "SELECT s.id, d.name, s.quantity, l.t, l.v FROM series s"
                     " JOIN device d ON d.id = s.device LEFT JOIN latest l ON l.series = s.id"
                     " ORDER BY d.name, s.quantity"},
      {&r->s_rolled, "SELECT t FROM latest WHERE series = ?1"},
      /* The packs that may hold pending readings: those ending at or
       * after counter.pending_from (schema.c, version 10). */
      {&r->s_tail_all, "SELECT series, t, data FROM tail WHERE t > ?1 - " STR(STOR_PACK_SPAN_MS)},
      {&r->s_pend_from, "SELECT value FROM counter WHERE name = 'pending_from'"},
      {&r->s_dev_series,
       "SELECT s.id FROM series s JOIN device d ON d.id = s.device WHERE d.name = ?1"},
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
  stor_reader_release(r);
  sqlite3_stmt *stmts[] = {
      r->s_find,    r->s_points[0], r->s_points[1], r->s_points[2], r->s_points[3], r->s_latest,
      r->s_count,   r->s_pages,     r->s_page_size, r->s_begin,     r->s_end,       r->s_blk_first,
      r->s_tail,    r->s_rolled,    r->s_tail_all,  r->s_pend_from, r->s_span[1],   r->s_span[2],
      r->s_span[3], r->s_next_day,  r->s_dev_series};
  for (size_t i = 0; i < sizeof(stmts) / sizeof(stmts[0]); i++)
    sqlite3_finalize(stmts[i]);
  sqlite3_close(r->db);
  free(r);
}

void stor_reader_trim(stor_reader_t *r) {
  if (r)
    sqlite3_db_release_memory(r->db);
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

/* A growing array of points. */
typedef struct pts {
  stor_point_t *p;
  size_t n, cap;
} pts_t;

/* The next point of `a`, room made; NULL when there is no memory. */
static stor_point_t *pts_next(pts_t *a) {
  if (a->n == a->cap) {
    size_t want = a->cap ? a->cap * 2 : 64;
    stor_point_t *grown = realloc(a->p, want * sizeof(*grown));
    if (!grown)
      return NULL;
    a->p = grown;
    a->cap = want;
  }
  return &a->p[a->n++];
}

static bool pts_push(pts_t *a, int64_t t_ms, double v) {
  stor_point_t *p = pts_next(a);
  if (p)
    *p = (stor_point_t){.t_ms = t_ms, .n = 1, .min = v, .max = v, .mean = v};
  return p != NULL;
}

/* Begins the read transaction that a query's several statements share (the
 * compactor moves rows between the tail and the blocks meanwhile); within
 * a hold, the hold's. */
static int read_begin(stor_reader_t *r) {
  if (r->held)
    return SQLITE_OK;
  int rc = sqlite3_step(r->s_begin);
  sqlite3_reset(r->s_begin);
  return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

/* Ends it: `rc`, or the end's error when rc is SQLITE_OK. */
static int read_end(stor_reader_t *r, int rc) {
  if (r->held)
    return rc;
  int end = sqlite3_step(r->s_end);
  sqlite3_reset(r->s_end);
  return rc == SQLITE_OK && end != SQLITE_DONE ? end : rc;
}

static int cmp_point(const void *a, const void *b) {
  const stor_point_t *x = a, *y = b;
  return (x->t_ms > y->t_ms) - (x->t_ms < y->t_ms);
}

/* counter.pending_from in the open read transaction: no pending reading
 * is older (the tail's start when the row is missing). */
static int pending_from(stor_reader_t *r, int64_t *from) {
  *from = INT64_MIN;
  return stor__one_int(r->s_pend_from, from, NULL);
}

/* Held series k's tail readings in [since, until). */
static int held_rows(stor_reader_t *r, size_t k, int64_t since, int64_t until, pts_t *out) {
  const stor_sample_t *s = r->h_s + r->h_at[k], *end = r->h_s + r->h_at[k + 1];
  size_t lo = 0, hi = (size_t)(end - s);
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    if (s[mid].t_ms < since)
      lo = mid + 1;
    else
      hi = mid;
  }
  for (s += lo; s < end && s->t_ms < until; s++)
    if (!pts_push(out, s->t_ms, s->v))
      return SQLITE_NOMEM;
  return SQLITE_OK;
}

/* The series' tail readings in [since, until), ascending (its packs may
 * overlap in time when late readings came): a held series' from memory,
 * another's from the packs in the range, every series' (the tail is keyed
 * time first). */
static int tail_rows(stor_reader_t *r, int64_t series, int64_t since, int64_t until, pts_t *out) {
  const int64_t *h =
      r->n_held ? bsearch(&series, r->h_ids, r->n_held, sizeof(*r->h_ids), stor__cmp_i64) : NULL;
  if (h)
    return held_rows(r, (size_t)(h - r->h_ids), since, until, out);
  sqlite3_stmt *st = r->s_tail;
  size_t first = out->n;
  bool sorted = true;
  int rc;
  sqlite3_bind_int64(st, 1, series);
  sqlite3_bind_int64(st, 2,
                     since < INT64_MIN + STOR_PACK_SPAN_MS ? INT64_MIN + STOR_PACK_SPAN_MS : since);
  sqlite3_bind_int64(st, 3, until);
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    stor_sample_t p[STOR_PACK_MAX];
    size_t k = 0;
    if ((rc = stor__pack_column(st, 0, p, &k)) != SQLITE_OK)
      break;
    rc = SQLITE_ROW;
    for (size_t i = 0; rc == SQLITE_ROW && i < k; i++) {
      if (p[i].t_ms < since || p[i].t_ms >= until)
        continue;
      if (out->n > first && out->p[out->n - 1].t_ms > p[i].t_ms)
        sorted = false;
      if (!pts_push(out, p[i].t_ms, p[i].v))
        rc = SQLITE_NOMEM;
    }
    if (rc != SQLITE_ROW)
      break;
  }
  sqlite3_reset(st);
  if (rc != SQLITE_DONE)
    return rc;
  if (!sorted)
    qsort(out->p + first, out->n - first, sizeof(*out->p), cmp_point);
  return SQLITE_OK;
}

/* ---- holds */

/* One pass over the whole tail: the readings of each of the n series
 * ids[] (ascending) counted into at[i] (fill false), or copied to h_s at
 * at[i], which moves on past them (fill). */
static int held_scan(stor_reader_t *r, const int64_t *ids, size_t n, size_t *at, bool fill) {
  sqlite3_stmt *st = r->s_tail_all;
  sqlite3_bind_int64(st, 1, INT64_MIN + STOR_PACK_SPAN_MS);
  int rc;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    int64_t id = sqlite3_column_int64(st, 0);
    const int64_t *k = bsearch(&id, ids, n, sizeof(*ids), stor__cmp_i64);
    if (!k)
      continue;
    stor_sample_t p[STOR_PACK_MAX];
    size_t m = 0;
    if ((rc = stor__pack_column(st, 1, p, &m)) != SQLITE_OK)
      break;
    size_t i = (size_t)(k - ids);
    if (fill)
      memcpy(r->h_s + at[i], p, m * sizeof(*p));
    at[i] += m;
  }
  sqlite3_reset(st);
  return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

/* The ids of the devices' series into r->h_ids (ascending, once each). */
static int held_ids(stor_reader_t *r, const char *const *devices, size_t n) {
  sqlite3_stmt *st = r->s_dev_series;
  size_t cap = 0;
  int rc = SQLITE_OK;
  for (size_t i = 0; rc == SQLITE_OK && i < n; i++) {
    sqlite3_bind_text(st, 1, devices[i], -1, SQLITE_STATIC);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
      if (r->n_held == cap) {
        size_t want = cap ? cap * 2 : 64;
        int64_t *grown = realloc(r->h_ids, want * sizeof(*grown));
        if (!grown) {
          rc = SQLITE_NOMEM;
          break;
        }
        r->h_ids = grown;
        cap = want;
      }
      r->h_ids[r->n_held++] = sqlite3_column_int64(st, 0);
    }
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    rc = rc == SQLITE_DONE ? SQLITE_OK : rc;
  }
  if (rc != SQLITE_OK || r->n_held == 0)
    return rc;
  qsort(r->h_ids, r->n_held, sizeof(*r->h_ids), stor__cmp_i64);
  size_t k = 1;
  for (size_t i = 1; i < r->n_held; i++)
    if (r->h_ids[i] != r->h_ids[k - 1])
      r->h_ids[k++] = r->h_ids[i];
  r->n_held = k;
  return SQLITE_OK;
}

/* The held series' tail readings: counted, the series beyond max_samples
 * left out, then read into one array (two passes over the tail, which the
 * hold's transaction keeps as it was). */
static int held_load(stor_reader_t *r, size_t max_samples) {
  size_t n = r->n_held, *at = calloc(n + 1, sizeof(*at));
  if (!(r->h_at = at))
    return SQLITE_NOMEM;
  int rc = held_scan(r, r->h_ids, n, at + 1, false); /* counts in at[1..n] */
  if (rc != SQLITE_OK)
    return rc;
  size_t kept = 0, total = 0;
  for (size_t i = 0; i < n; i++) {
    size_t c = at[i + 1];
    if (c > max_samples - total)
      continue; /* read from the tail's packs, as without a hold */
    r->h_ids[kept] = r->h_ids[i];
    at[kept + 1] = total; /* its start: the fill moves it to its end */
    total += c;
    kept++;
  }
  r->n_held = kept;
  if (total == 0)
    return SQLITE_OK;
  if (!(r->h_s = malloc(total * sizeof(*r->h_s))))
    return SQLITE_NOMEM;
  if ((rc = held_scan(r, r->h_ids, kept, at + 1, true)) != SQLITE_OK)
    return rc;
  /* A series' packs may overlap in time (late readings), never in
   * readings; stor_sample_t starts with its t. */
  for (size_t i = 0; i < kept; i++)
    qsort(r->h_s + at[i], at[i + 1] - at[i], sizeof(*r->h_s), stor__cmp_i64);
  return SQLITE_OK;
}

int stor_reader_hold(stor_reader_t *r, const char *const *devices, size_t n, size_t max_samples) {
  if (!r || (n > 0 && !devices))
    return -EINVAL;
  if (r->held)
    return -EBUSY;
  int rc = read_begin(r);
  if (rc == SQLITE_OK) {
    r->held = true;
    rc = held_ids(r, devices, n);
  }
  if (rc == SQLITE_OK && r->n_held > 0)
    rc = held_load(r, max_samples);
  if (rc == SQLITE_OK)
    return 0;
  int err = rc == SQLITE_NOMEM ? -ENOMEM : stor__fail(r->db, rc, "hold");
  stor_reader_release(r);
  return err;
}

void stor_reader_release(stor_reader_t *r) {
  if (!r)
    return;
  free(r->h_ids);
  free(r->h_at);
  free(r->h_s);
  r->h_ids = NULL;
  r->h_at = NULL;
  r->h_s = NULL;
  r->n_held = 0;
  if (r->held) {
    r->held = false;
    read_end(r, SQLITE_OK);
  }
}

/* Raw readings: the blocks overlapping [since, until) merged with the tail
 * rows, in one read transaction (the compactor moves rows from one to the
 * other), at most `limit`. */
static int raw_points(stor_reader_t *r, int64_t series, int64_t since, int64_t until, size_t limit,
                      pts_t *out) {
  pts_t tail = {0};
  stor_sample_t *s = NULL;
  size_t ti = 0;
  int rc = read_begin(r);
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
  return read_end(r, rc);
}

/* ---- rollups: the tables' rows plus what is pending in the tail */

/* The local midnight at or before `s`, as the writer reckons it
 * (batch.c's day_of, with a one-day cache). */
static int64_t day_start(stor_reader_t *r, int64_t s) {
  if (r->day0 < r->day1 && r->day0 <= s && s < r->day1)
    return r->day0;
  int64_t a, b;
  if (stor__local_day(s, &a, &b)) {
    r->day0 = a;
    r->day1 = b;
  }
  return a;
}

/* One bucket as a rollup row keeps it (values times STOR_ROLL_SCALE). */
typedef struct acc {
  int64_t t; /* start, Unix seconds */
  int64_t n;
  double vmin, vmax, vsum, esum;
  bool level;
} acc_t;

static void acc_point(const acc_t *a, stor_point_t *p) {
  p->t_ms = a->t * 1000;
  p->n = (uint32_t)a->n;
  p->min = a->vmin / STOR_ROLL_SCALE;
  p->max = a->vmax / STOR_ROLL_SCALE;
  if (a->level) /* an energy mean (GB 12523-2011) */
    p->mean = 10.0 * log10(a->esum / (double)a->n);
  else
    p->mean = a->vsum / STOR_ROLL_SCALE / (double)a->n;
}

/* Adds `b` into `a` (same bucket). */
static void acc_merge(acc_t *a, const acc_t *b) {
  a->n += b->n;
  a->vmin = b->vmin < a->vmin ? b->vmin : a->vmin;
  a->vmax = b->vmax > a->vmax ? b->vmax : a->vmax;
  a->vsum += b->vsum;
  a->esum += b->esum;
}

static bool pts_add(pts_t *a, const acc_t *x) {
  stor_point_t *p = pts_next(a);
  if (p)
    acc_point(x, p);
  return p != NULL;
}

/* The pending readings (tail rows newer than the series' latest value)
 * whose bucket of `step` starts in [lo, hi) seconds, summed per bucket into
 * *out (ascending; *n of them). */
static int pending_buckets(stor_reader_t *r, int64_t series, bool level, stor_step_t step,
                           int64_t lo, int64_t hi, acc_t **out, size_t *n) {
  int64_t rolled = INT64_MIN;
  *out = NULL;
  *n = 0;
  sqlite3_bind_int64(r->s_rolled, 1, series);
  int rc = stor__one_int(r->s_rolled, &rolled, NULL);
  if (rc != SQLITE_OK)
    return rc;
  /* A reading is at or after its bucket's start, and within a day (25 h
   * at a clock change) of it. */
  int64_t span = step == STOR_STEP_1M ? 60 : step == STOR_STEP_1H ? 3600 : 25 * 3600;
  int64_t from = lo * 1000, to = hi > INT64_MAX / 1000 - span ? INT64_MAX : (hi + span) * 1000;
  if (rolled != INT64_MIN && rolled + 1 > from)
    from = rolled + 1;
  int64_t oldest;
  if ((rc = pending_from(r, &oldest)) != SQLITE_OK)
    return rc;
  if (oldest > from) /* nothing older is pending: a quiet series' old latest.t */
    from = oldest;
  if (from >= to)
    return SQLITE_OK;
  pts_t rows = {0};
  if ((rc = tail_rows(r, series, from, to, &rows)) != SQLITE_OK) {
    free(rows.p);
    return rc;
  }
  acc_t *b = rows.n ? malloc(rows.n * sizeof(*b)) : NULL;
  if (rows.n && !b) {
    free(rows.p);
    return SQLITE_NOMEM;
  }
  size_t k = 0;
  for (size_t i = 0; i < rows.n; i++) {
    int64_t sec = stor__floor_div(rows.p[i].t_ms, 1000);
    int64_t t = step == STOR_STEP_1M   ? stor__floor_div(sec, 60) * 60
                : step == STOR_STEP_1H ? stor__floor_div(sec, 3600) * 3600
                                       : day_start(r, sec);
    if (t < lo || t >= hi)
      continue;
    double v = rows.p[i].min, sv = v * STOR_ROLL_SCALE;
    acc_t x = {.t = t,
               .n = 1,
               .vmin = sv,
               .vmax = sv,
               .vsum = sv,
               .esum = level ? pow(10.0, 0.1 * v) : 0,
               .level = level};
    if (k > 0 && b[k - 1].t == t)
      acc_merge(&b[k - 1], &x);
    else
      b[k++] = x; /* the rows ascend, so do their buckets */
  }
  free(rows.p);
  *out = b;
  *n = k;
  return SQLITE_OK;
}

/* The first and last bucket start of `step`'s table in [lo, hi) seconds,
 * of any series; *b > *e when it has none. */
static int roll_span(stor_reader_t *r, stor_step_t step, int64_t lo, int64_t hi, int64_t *b,
                     int64_t *e) {
  sqlite3_stmt *st = r->s_span[step];
  sqlite3_bind_int64(st, 1, lo);
  sqlite3_bind_int64(st, 2, hi);
  int rc = sqlite3_step(st);
  *b = 1;
  *e = 0;
  if (rc == SQLITE_ROW && sqlite3_column_type(st, 0) != SQLITE_NULL) {
    *b = sqlite3_column_int64(st, 0);
    *e = sqlite3_column_int64(st, 1);
  }
  sqlite3_reset(st);
  return rc == SQLITE_ROW || rc == SQLITE_DONE ? SQLITE_OK : rc;
}

/* *t becomes the start of the next bucket of `step` that a row may have:
 * minutes and hours are UTC multiples of 60 and 3600 s (batch.c); days
 * start at local midnight as the writer saw it, so the next day is the
 * next start the table holds. */
static int bucket_next(stor_reader_t *r, stor_step_t step, int64_t *t) {
  if (step != STOR_STEP_1D) {
    *t += step == STOR_STEP_1M ? 60 : 3600;
    return SQLITE_OK;
  }
  sqlite3_bind_int64(r->s_next_day, 1, *t);
  *t = INT64_MAX; /* no later day */
  return stor__one_int(r->s_next_day, t, NULL);
}

/* The series' row of the bucket starting at *t or of the next one that
 * has one, up to `last`: SQLITE_ROW with *x, or SQLITE_DONE. */
static int roll_row(stor_reader_t *r, stor_step_t step, int64_t series, int64_t *t, int64_t last,
                    acc_t *x) {
  sqlite3_stmt *st = r->s_points[step];
  int rc = SQLITE_OK;
  while (rc == SQLITE_OK && *t <= last) {
    sqlite3_bind_int64(st, 1, series);
    sqlite3_bind_int64(st, 2, *t);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
      *x = (acc_t){.t = *t,
                   .n = sqlite3_column_int64(st, 0),
                   .vmin = sqlite3_column_double(st, 1),
                   .vmax = sqlite3_column_double(st, 2),
                   .vsum = sqlite3_column_double(st, 3),
                   .esum = sqlite3_column_double(st, 4),
                   .level = sqlite3_column_type(st, 4) != SQLITE_NULL};
    sqlite3_reset(st);
    if (rc == SQLITE_DONE)
      rc = bucket_next(r, step, t);
  }
  return rc == SQLITE_OK ? SQLITE_DONE : rc;
}

/* Rollup points of `step` starting in [since, until), at most `limit`:
 * the table's rows merged with the pending buckets, in one read
 * transaction. */
static int roll_points(stor_reader_t *r, int64_t series, bool level, stor_step_t step,
                       int64_t since, int64_t until, size_t limit, pts_t *out) {
  int64_t lo = ceil_div(since, 1000), hi = ceil_div(until, 1000); /* rollups keep seconds */
  int64_t t = 1, last = 0;
  acc_t *pend = NULL;
  size_t np = 0, pi = 0;
  int rc = read_begin(r);
  if (rc == SQLITE_OK)
    rc = pending_buckets(r, series, level, step, lo, hi, &pend, &np);
  if (rc == SQLITE_OK)
    rc = roll_span(r, step, lo, hi, &t, &last);
  if (rc == SQLITE_OK) {
    acc_t x;
    while (out->n < limit && (rc = roll_row(r, step, series, &t, last, &x)) == SQLITE_ROW) {
      if ((rc = bucket_next(r, step, &t)) != SQLITE_OK)
        break;
      for (; pi < np && pend[pi].t < x.t && out->n < limit; pi++)
        if (!pts_add(out, &pend[pi]))
          break;
      if (pi < np && pend[pi].t < x.t && out->n < limit) {
        rc = SQLITE_NOMEM;
        break;
      }
      if (pi < np && pend[pi].t == x.t)
        acc_merge(&x, &pend[pi++]);
      if (out->n < limit && !pts_add(out, &x)) {
        rc = SQLITE_NOMEM;
        break;
      }
    }
    rc = rc == SQLITE_DONE || rc == SQLITE_ROW ? SQLITE_OK : rc;
  }
  for (; rc == SQLITE_OK && pi < np && out->n < limit; pi++)
    if (!pts_add(out, &pend[pi]))
      rc = SQLITE_NOMEM;
  free(pend);
  return read_end(r, rc);
}

int stor_query(stor_reader_t *r, const char *device, int quantity, stor_step_t step,
               int64_t since_ms, int64_t until_ms, size_t limit, stor_point_t **out, size_t *n) {
  int rc;
  int64_t series = 0;
  if (!r || !device || !out || !n || step < STOR_STEP_RAW || step > STOR_STEP_1D)
    return -EINVAL;
  *out = NULL;
  *n = 0;
  if ((rc = find_series(r, device, quantity, &series)) != 0 || series == 0 || limit == 0 ||
      since_ms >= until_ms)
    return rc;

  pts_t got = {0};
  int src = step == STOR_STEP_RAW ? raw_points(r, series, since_ms, until_ms, limit, &got)
                                  : roll_points(r, series, proto_quantity_is_level(quantity), step,
                                                since_ms, until_ms, limit, &got);
  if (src != SQLITE_OK) {
    free(got.p);
    return src == SQLITE_NOMEM ? -ENOMEM : stor__fail(r->db, src, "query");
  }
  *out = got.n ? got.p : NULL;
  if (!got.n)
    free(got.p);
  *n = got.n;
  return 0;
}

/* The newest tail row of each series, indexed by series id. */
typedef struct newest {
  int64_t t; /* INT64_MIN: none */
  double v;
} newest_t;

static int tail_newest(stor_reader_t *r, newest_t **out, size_t *n) {
  newest_t *a = NULL;
  size_t cap = 0;
  int rc;
  int64_t oldest;
  if ((rc = pending_from(r, &oldest)) != SQLITE_OK)
    return rc;
  sqlite3_stmt *st = r->s_tail_all;
  sqlite3_bind_int64(
      st, 1, oldest < INT64_MIN + STOR_PACK_SPAN_MS ? INT64_MIN + STOR_PACK_SPAN_MS : oldest);
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    int64_t id = sqlite3_column_int64(st, 0), t = sqlite3_column_int64(st, 1);
    if (id <= 0 || id > UINT32_MAX) {
      rc = SQLITE_CORRUPT;
      break;
    }
    if ((size_t)id >= cap) {
      size_t want = ((size_t)id + 1) * 2;
      newest_t *grown = realloc(a, want * sizeof(*grown));
      if (!grown) {
        rc = SQLITE_NOMEM;
        break;
      }
      for (size_t k = cap; k < want; k++)
        grown[k].t = INT64_MIN;
      a = grown;
      cap = want;
    }
    if (a[id].t != INT64_MIN && t <= a[id].t - (STOR_PACK_SPAN_MS - 1))
      continue; /* every reading of this pack is older */
    stor_sample_t p[STOR_PACK_MAX];
    size_t k = 0;
    if ((rc = stor__pack_column(st, 1, p, &k)) != SQLITE_OK)
      break;
    if (p[k - 1].t_ms > a[id].t)
      a[id] = (newest_t){.t = p[k - 1].t_ms, .v = p[k - 1].v};
  }
  sqlite3_reset(st);
  if (rc != SQLITE_DONE) {
    free(a);
    return rc;
  }
  *out = a;
  *n = cap;
  return SQLITE_OK;
}

int stor_latest(stor_reader_t *r, stor_latest_cb cb, void *arg) {
  if (!r || !cb)
    return -EINVAL;
  /* latest rows and the tail rows newer than them (pending), in one read
   * transaction: one pass over the packs from counter.pending_from. */
  newest_t *tail = NULL;
  size_t ntail = 0;
  int rc = read_begin(r);
  if (rc == SQLITE_OK)
    rc = tail_newest(r, &tail, &ntail);
  sqlite3_stmt *st = r->s_latest;
  while (rc == SQLITE_OK || rc == SQLITE_ROW) {
    if ((rc = sqlite3_step(st)) != SQLITE_ROW)
      break;
    int64_t id = sqlite3_column_int64(st, 0), t = INT64_MIN;
    double v = 0;
    if (sqlite3_column_type(st, 3) != SQLITE_NULL) {
      t = sqlite3_column_int64(st, 3);
      v = sqlite3_column_double(st, 4);
    }
    if (id > 0 && (size_t)id < ntail && tail[id].t > t) {
      t = tail[id].t;
      v = tail[id].v;
    }
    if (t == INT64_MIN)
      continue; /* a series with no reading yet */
    if (cb(arg, (const char *)sqlite3_column_text(st, 1), sqlite3_column_int(st, 2), t, v) != 0) {
      rc = SQLITE_DONE;
      break;
    }
  }
  sqlite3_reset(st);
  free(tail);
  rc = read_end(r, rc == SQLITE_DONE ? SQLITE_OK : rc);
  return rc == SQLITE_OK ? 0 : stor__fail(r->db, rc, "latest");
}

/* stor__one_int, a missing row being damage. */
static int one_int(stor_reader_t *r, sqlite3_stmt *st, int64_t *v) {
  bool found = false;
  int rc = stor__one_int(st, v, &found);
  if (rc == SQLITE_OK && !found)
    rc = SQLITE_CORRUPT;
  return rc == SQLITE_OK ? 0 : stor__fail(r->db, rc, "counts");
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
