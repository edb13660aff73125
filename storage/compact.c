/* The compactor: the oldest tail rows become compressed blocks (block.c),
 * one per series, in the same transaction that deletes them, so a reading
 * is always in exactly one of the two tables and a power cut at any point
 * leaves either the rows or the block (schema.c, version 8).
 *
 * Why this shape. Bytes written to flash, not bytes stored, wear a site
 * box out (issue 15). Readings arrive interleaved from every series; the
 * tail takes them in time order, so a commit appends to a few leaf pages.
 * Once they are old enough, or the tail big enough, one step reads the
 * oldest rows (a bounded number, still encoded: storage_int.h), sorts
 * them by series and writes each series' span as one block: one leaf
 * page per series per step instead of one per series per commit.
 *
 * A step merges instead of appending where it must: with blocks of the
 * series that its rows overlap (late readings, already compacted around
 * them), and with the series' last block when that has fewer than
 * STOR_BLOCK_SMALL readings (a quiet series, or a step the age started),
 * so a series does not end up as many tiny blocks. A reading found in
 * both (which the batch's check prevents) is kept once, the block's copy,
 * and counted once.
 *
 * Only rows already rolled up are compacted: a step stops short of the
 * oldest pending reading, since what is pending is read back from the
 * tail after a crash (batch.c). A step never forces rollups out early. */
#define LOG_MODULE "storage"
#include "common/common.h"
#include "storage/storage_int.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* A step's tail rows as read, still encoded: a pack of one keeps its value
 * here, a larger one its bytes in the step's byte array from `at`. They are
 * decoded a series at a time, so a step holds about 5 bytes a reading of
 * 10-reading packs (24 a pack, 4 for its place in the order, and the
 * pack's bytes) where decoded readings took 17.6, and takes three times
 * as many in about the same memory (STOR_COMPACT_BYTES): each series'
 * block is rewritten once for all of them. Packs of one, as at a quiet
 * site's pace, take 28, and a step still takes STOR_COMPACT_ROWS of
 * them (3.5 MiB; 4 before). The arrays are pages (stor__pages_alloc):
 * they go back to the kernel after the step. */
typedef struct pack_ref {
  int64_t t;
  uint32_t series, n;
  union {
    struct {
      uint32_t at, len;
    } b;      /* n > 1 */
    double v; /* n == 1 */
  } u;
} pack_ref_t;

int stor__compact_open(stor_db_t *db) {
  const struct {
    sqlite3_stmt **st;
    const char *sql;
  } stmts[] = {
      /* The block that may hold t: the last one starting at or before it. */
      {&db->s_blk_at,
       "SELECT t1, n, data, t0 FROM block WHERE series = ?1 AND t0 <= ?2 ORDER BY t0 DESC LIMIT 1"},
      /* Blocks a step may merge with, newest first. */
      {&db->s_blk_near,
       "SELECT t0, t1, n, data FROM block WHERE series = ?1 AND t0 <= ?2 ORDER BY t0 DESC"},
      {&db->s_blk_put, "INSERT INTO block(series, t0, t1, n, data) VALUES(?1, ?2, ?3, ?4, ?5)"},
      {&db->s_blk_del, "DELETE FROM block WHERE series = ?1 AND t0 = ?2"},
      {&db->s_tail_min, "SELECT t FROM tail ORDER BY t LIMIT 1"},
      {&db->s_tail_take, "SELECT series, t, data, n FROM tail WHERE t < ?1 ORDER BY t"},
      {&db->s_tail_del, "DELETE FROM tail WHERE t < ?1"},
      {&db->s_tail_all, "SELECT series, t, data FROM tail"},
      /* Every series' packs with keys in (?1, ?2]: the resend check's. */
      {&db->s_tail_span, "SELECT series, t, data FROM tail WHERE t > ?1 AND t <= ?2"},
  };
  int rc = 0;
  for (size_t i = 0; rc == 0 && i < sizeof(stmts) / sizeof(stmts[0]); i++)
    rc = stor__prepare(db->db, stmts[i].sql, stmts[i].st);
  db->tail_min_t = INT64_MAX;
  return rc;
}

void stor__compact_free(stor_db_t *db) {
  sqlite3_stmt *stmts[] = {db->s_blk_at,   db->s_blk_near, db->s_blk_put,
                           db->s_blk_del,  db->s_tail_min, db->s_tail_take,
                           db->s_tail_del, db->s_tail_all, db->s_tail_span};
  for (size_t i = 0; i < sizeof(stmts) / sizeof(stmts[0]); i++)
    sqlite3_finalize(stmts[i]);
}

int64_t stor__compact_due(stor_db_t *db, int64_t now_ms, bool all) {
  if (db->tail_min_t == INT64_MAX || db->reload)
    return 0;
  if (all)
    return INT64_MAX;
  if (db->tail_rows >= STOR_COMPACT_ROWS)
    return INT64_MAX; /* the step itself takes only the oldest rows */
  if (db->tail_min_t < now_ms - STOR_COMPACT_AGE_MS && now_ms - STOR_COMPACT_KEEP_MS > 0)
    return now_ms - STOR_COMPACT_KEEP_MS;
  return 0;
}

/* ---- packs */

ssize_t stor__pack_encode(const stor_sample_t *s, size_t n, uint8_t *buf, size_t cap) {
  if (!s || n == 0 || n > STOR_PACK_MAX || s[n - 1].t_ms - s[0].t_ms >= STOR_PACK_SPAN_MS)
    return -EINVAL;
  stor_sample_t rel[STOR_PACK_MAX];
  for (size_t i = 0; i < n; i++)
    rel[i] = (stor_sample_t){.t_ms = s[i].t_ms - s[0].t_ms, .v = s[i].v};
  return stor__block_encode(rel, n, buf, cap);
}

int stor__pack_decode(int64_t t, const void *data, size_t len, stor_sample_t *out, size_t *n) {
  if (t < 0 || t > INT64_MAX - STOR_PACK_SPAN_MS ||
      stor__block_decode(data, len, out, STOR_PACK_MAX, n, NULL) != 0 || out[0].t_ms != 0 ||
      out[*n - 1].t_ms >= STOR_PACK_SPAN_MS)
    return -EBADMSG;
  for (size_t i = 0; i < *n; i++)
    out[i].t_ms += t; /* both below 2^63 - 2^13 */
  return 0;
}

int stor__pack_column(sqlite3_stmt *st, int col, stor_sample_t *out, size_t *n) {
  int64_t t = sqlite3_column_int64(st, col);
  int type = sqlite3_column_type(st, col + 1);
  if (type == SQLITE_INTEGER || type == SQLITE_FLOAT) { /* a pack of one: its value */
    out[0] = (stor_sample_t){.t_ms = t, .v = stor__column_value(st, col + 1)};
    *n = 1;
    return t >= 0 && isfinite(out[0].v) ? SQLITE_OK : SQLITE_CORRUPT;
  }
  if (type != SQLITE_BLOB)
    return SQLITE_CORRUPT;
  const void *data = sqlite3_column_blob(st, col + 1);
  size_t len = (size_t)sqlite3_column_bytes(st, col + 1);
  return stor__pack_decode(t, data, len, out, n) == 0 ? SQLITE_OK : SQLITE_CORRUPT;
}

/* ---- blocks */

/* Whether the block read last holds a reading at t_ms. Its times only, as
 * far as t_ms, and a series' readings (in time order) one walk: decoding
 * the block whole for each series took 12% of the writer's time under
 * late readings. */
static int seen_has(stor_blk_seen_t *c, int64_t t_ms) {
  int has = stor__block_walk_to(&c->walk, t_ms);
  return has >= 0 ? has : -SQLITE_CORRUPT;
}

int stor__block_has(stor_db_t *db, stor_blk_seen_t *c, int64_t series, int64_t t_ms) {
  if (c->data && c->series == series && t_ms >= c->t0 && t_ms <= c->t1)
    return seen_has(c, t_ms);
  sqlite3_stmt *st = db->s_blk_at;
  sqlite3_bind_int64(st, 1, series);
  sqlite3_bind_int64(st, 2, t_ms);
  int rc = sqlite3_step(st), has = 0;
  if (rc == SQLITE_ROW && sqlite3_column_int64(st, 0) >= t_ms) {
    const void *data = sqlite3_column_blob(st, 2);
    size_t len = (size_t)sqlite3_column_bytes(st, 2);
    if (len > c->cap) {
      uint8_t *grown = realloc(c->data, len);
      if (!grown) {
        sqlite3_reset(st);
        return -SQLITE_NOMEM;
      }
      c->data = grown;
      c->cap = len;
    }
    if (len > 0)
      memcpy(c->data, data, len);
    c->series = series;
    c->t0 = sqlite3_column_int64(st, 3);
    c->t1 = sqlite3_column_int64(st, 0);
    has = stor__block_walk(&c->walk, c->data, len) == 0 ? seen_has(c, t_ms) : -SQLITE_CORRUPT;
    rc = has < 0 ? -has : SQLITE_OK;
  } else if (rc == SQLITE_ROW || rc == SQLITE_DONE) {
    rc = SQLITE_OK;
  }
  sqlite3_reset(st);
  return rc == SQLITE_OK ? has : -rc;
}

/* Appends samples to a growing array. */
typedef struct samples {
  stor_sample_t *s;
  size_t n, cap;
} samples_t;

static bool samples_room(samples_t *a, size_t more) {
  if (a->n + more <= a->cap)
    return true;
  size_t want = a->cap ? a->cap : 1024;
  while (want < a->n + more)
    want *= 2;
  stor_sample_t *grown = realloc(a->s, want * sizeof(*grown));
  if (!grown)
    return false;
  a->s = grown;
  a->cap = want;
  return true;
}

/* What a step's series share, so that each does not allocate its own: the
 * new samples of one series, the old ones of the blocks it merges with,
 * their merge, the blocks' keys and the encoder's output. */
typedef struct scratch {
  samples_t one, old, merged;
  int64_t *t0s;
  size_t t0_cap;
  uint8_t *buf;
  size_t buf_cap;
} scratch_t;

static void scratch_free(scratch_t *w) {
  free(w->one.s);
  free(w->old.s);
  free(w->merged.s);
  free(w->t0s);
  free(w->buf);
}

/* Writes samples s[0..n) (ascending, unique) of `series` as blocks. */
static int blocks_put(stor_db_t *db, scratch_t *w, int64_t series, const stor_sample_t *s,
                      size_t n) {
  int rc = SQLITE_OK;
  for (size_t at = 0; rc == SQLITE_OK && at < n;) {
    /* At most STOR_BLOCK_SPAN_MS, so retention can drop a block soon
     * after its readings age out, and at most STOR_BLOCK_CAP readings, in
     * pieces of equal size when a span holds more (no small remnant). */
    size_t k = 1;
    while (at + k < n && s[at + k].t_ms - s[at].t_ms <= STOR_BLOCK_SPAN_MS)
      k++;
    if (k > STOR_BLOCK_CAP) {
      size_t pieces = (k + STOR_BLOCK_CAP - 1) / STOR_BLOCK_CAP;
      k = (k + pieces - 1) / pieces;
    }
    size_t cap = 32 + k * 20; /* worst case: 10 B a time, 9 a value */
    if (cap > w->buf_cap) {
      uint8_t *grown = realloc(w->buf, cap);
      if (!grown) {
        rc = SQLITE_NOMEM;
        break;
      }
      w->buf = grown;
      w->buf_cap = cap;
    }
    ssize_t len = stor__block_encode(s + at, k, w->buf, w->buf_cap);
    if (len < 0) {
      rc = SQLITE_INTERNAL; /* the tail holds only valid readings */
      break;
    }
    sqlite3_stmt *st = db->s_blk_put;
    sqlite3_bind_int64(st, 1, series);
    sqlite3_bind_int64(st, 2, s[at].t_ms);
    sqlite3_bind_int64(st, 3, s[at + k - 1].t_ms);
    sqlite3_bind_int64(st, 4, (int64_t)k);
    sqlite3_bind_blob(st, 5, w->buf, (int)len, SQLITE_STATIC);
    rc = sqlite3_step(st);
    sqlite3_reset(st);
    rc = rc == SQLITE_DONE ? SQLITE_OK : rc;
    at += k;
  }
  return rc;
}

static int cmp_sample(const void *a, const void *b) {
  const stor_sample_t *x = a, *y = b;
  return (x->t_ms > y->t_ms) - (x->t_ms < y->t_ms);
}

/* Decodes the block in column 3 of `st`, whose readings are counted in
 * column 2, onto the end of `a`. */
static int block_append(sqlite3_stmt *st, samples_t *a) {
  const uint8_t *data = sqlite3_column_blob(st, 3);
  size_t len = (size_t)sqlite3_column_bytes(st, 3), k = 0;
  int64_t cap = sqlite3_column_int64(st, 2);
  if (cap <= 0 || cap > STOR_BLOCK_MAX)
    return SQLITE_CORRUPT;
  if (!samples_room(a, (size_t)cap))
    return SQLITE_NOMEM;
  if (stor__block_decode(data, len, a->s + a->n, (size_t)cap, &k, NULL) != 0)
    return SQLITE_CORRUPT;
  a->n += k;
  return SQLITE_OK;
}

/* Writes one series' new samples s[0..n) (ascending, unique), merged with
 * the blocks they overlap and a small last block before them. *dropped
 * counts new samples a block held already. */
static int series_compact(stor_db_t *db, scratch_t *w, int64_t series, const stor_sample_t *s,
                          size_t n, int64_t *dropped) {
  sqlite3_stmt *st = db->s_blk_near;
  samples_t *old = &w->old, *m = &w->merged;
  size_t ndel = 0;
  int rc;
  old->n = 0;
  sqlite3_bind_int64(st, 1, series);
  sqlite3_bind_int64(st, 2, s[n - 1].t_ms);
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    int64_t t1 = sqlite3_column_int64(st, 1), bn = sqlite3_column_int64(st, 2);
    bool overlaps = t1 >= s[0].t_ms;
    /* A small block is extended only while it spans little time, so that
     * retention, which drops whole blocks, is not held up by it. */
    if (!overlaps && (bn >= STOR_BLOCK_SMALL ||
                      s[n - 1].t_ms - sqlite3_column_int64(st, 0) > STOR_BLOCK_SPAN_MS))
      break;
    if (ndel == w->t0_cap) {
      size_t want = w->t0_cap ? w->t0_cap * 2 : 8;
      int64_t *grown = realloc(w->t0s, want * sizeof(*grown));
      if (!grown) {
        rc = SQLITE_NOMEM;
        break;
      }
      w->t0s = grown;
      w->t0_cap = want;
    }
    if ((rc = block_append(st, old)) != SQLITE_OK)
      break;
    w->t0s[ndel++] = sqlite3_column_int64(st, 0);
    if (!overlaps)
      break; /* the small block before the new samples: nothing older */
  }
  sqlite3_reset(st);
  if (rc != SQLITE_ROW && rc != SQLITE_DONE && rc != SQLITE_OK)
    return rc;
  rc = SQLITE_OK;
  if (ndel == 0)
    return blocks_put(db, w, series, s, n);

  for (size_t i = 0; rc == SQLITE_OK && i < ndel; i++) {
    sqlite3_bind_int64(db->s_blk_del, 1, series);
    sqlite3_bind_int64(db->s_blk_del, 2, w->t0s[i]);
    rc = sqlite3_step(db->s_blk_del);
    sqlite3_reset(db->s_blk_del);
    rc = rc == SQLITE_DONE ? SQLITE_OK : rc;
  }
  /* The old samples (each block ascending, blocks newest first: sorted
   * already when there is one) sorted, then merged with the new ones; on a
   * tie the block's copy stays. */
  m->n = 0;
  if (rc == SQLITE_OK && !samples_room(m, old->n + n))
    rc = SQLITE_NOMEM;
  if (rc == SQLITE_OK) {
    if (ndel > 1)
      qsort(old->s, old->n, sizeof(*old->s), cmp_sample);
    size_t i = 0, j = 0;
    const stor_sample_t *o = old->s;
    while (i < old->n || j < n) {
      if (j == n || (i < old->n && o[i].t_ms < s[j].t_ms)) {
        m->s[m->n++] = o[i++];
      } else if (i == old->n || s[j].t_ms < o[i].t_ms) {
        m->s[m->n++] = s[j++];
      } else {
        m->s[m->n++] = o[i++];
        j++;
        ++*dropped;
      }
    }
    rc = blocks_put(db, w, series, m->s, m->n);
  }
  return rc;
}

/* Writes the readings in w->one (ascending when `sorted`) of `series`,
 * each once. */
static int chunk_compact(stor_db_t *db, scratch_t *w, int64_t series, bool sorted,
                         int64_t *dropped) {
  samples_t *one = &w->one;
  if (!sorted) /* a late reading's pack overlaps another of the series */
    qsort(one->s, one->n, sizeof(*one->s), cmp_sample);
  size_t kept = 0;
  for (size_t k = 0; k < one->n; k++) {
    if (kept > 0 && one->s[kept - 1].t_ms == one->s[k].t_ms) {
      ++*dropped; /* in two packs, which the batch's check prevents: once */
      continue;
    }
    one->s[kept++] = one->s[k];
  }
  one->n = kept;
  return series_compact(db, w, series, one->s, one->n, dropped);
}

/* Compacts one series' packs pk[order[0..n)] (in the order read: by t),
 * decoded in chunks of about STOR_COMPACT_CHUNK readings that do not
 * overlap in time, so that a step of one series' backlog does not hold all
 * of it decoded. */
static int series_packs(stor_db_t *db, scratch_t *w, const pack_ref_t *pk, const uint32_t *order,
                        size_t n, const uint8_t *bytes, int64_t *dropped) {
  samples_t *one = &w->one;
  int64_t series = pk[order[0]].series, last = INT64_MIN; /* the latest time in one */
  bool sorted = true;
  int rc = SQLITE_OK;
  one->n = 0;
  for (size_t k = 0; rc == SQLITE_OK && k < n; k++) {
    const pack_ref_t *p = &pk[order[k]];
    if (one->n >= STOR_COMPACT_CHUNK && p->t > last) {
      rc = chunk_compact(db, w, series, sorted, dropped);
      one->n = 0;
      sorted = true;
      last = INT64_MIN;
    }
    if (rc == SQLITE_OK && !samples_room(one, p->n))
      rc = SQLITE_NOMEM;
    if (rc != SQLITE_OK)
      break;
    sorted &= p->t >= last;
    size_t got = 1;
    if (p->n == 1)
      one->s[one->n] = (stor_sample_t){.t_ms = p->t, .v = p->u.v};
    else if (stor__pack_decode(p->t, bytes + p->u.b.at, p->u.b.len, one->s + one->n, &got) != 0 ||
             got != p->n)
      rc = SQLITE_CORRUPT;
    if (rc != SQLITE_OK)
      break;
    one->n += p->n;
    if (one->s[one->n - 1].t_ms > last)
      last = one->s[one->n - 1].t_ms;
  }
  if (rc == SQLITE_OK && one->n > 0)
    rc = chunk_compact(db, w, series, sorted, dropped);
  return rc;
}

static int cmp_pack(const void *a, const void *b) {
  const pack_ref_t *x = a, *y = b;
  if (x->series != y->series)
    return x->series < y->series ? -1 : 1;
  return (x->t > y->t) - (x->t < y->t); /* the order read: the tail's key */
}

/* The packs' order by series, each series' packs in the order read: a
 * counting sort, stable, over the series ids (the series table's rowids,
 * dense). The tail gives its packs in time order, so each series' readings
 * come out ascending but where a late reading's pack overlaps another.
 * Ids far beyond the packs' count are sorted by comparison instead. NULL
 * when out of memory. */
static uint32_t *order_by_series(pack_ref_t *packs, size_t n, uint32_t max) {
  uint32_t *order = malloc(n * sizeof(*order)), *pos = NULL;
  if (!order)
    return NULL;
  if (max > 4 * n + 65536) {
    qsort(packs, n, sizeof(*packs), cmp_pack);
    for (size_t i = 0; i < n; i++)
      order[i] = (uint32_t)i;
    return order;
  }
  if (!(pos = calloc((size_t)max + 2, sizeof(*pos)))) {
    free(order);
    return NULL;
  }
  for (size_t i = 0; i < n; i++)
    pos[packs[i].series + 1]++;
  for (size_t s = 1; s <= (size_t)max + 1; s++)
    pos[s] += pos[s - 1];
  for (size_t i = 0; i < n; i++)
    order[pos[packs[i].series]++] = (uint32_t)i;
  free(pos);
  return order;
}

/* Makes room for `more` elements of `size` bytes in an array of pages,
 * `first` of them at first. */
static bool pages_room(void **a, size_t *cap, size_t n, size_t more, size_t size, size_t first) {
  if (n + more <= *cap)
    return true;
  size_t want = *cap ? *cap * 2 : first;
  while (want < n + more)
    want *= 2;
  void *grown = stor__pages_alloc(want * size);
  if (!grown)
    return false;
  if (*a)
    memcpy(grown, *a, n * size);
  stor__pages_free(*a, *cap * size);
  *a = grown;
  *cap = want;
  return true;
}

static int step_done(sqlite3_stmt *st) {
  int rc = sqlite3_step(st);
  sqlite3_reset(st);
  return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

int64_t stor__compact_step(stor_db_t *db, int64_t cut, bool brief) {
  pack_ref_t *packs = NULL;
  uint8_t *bytes = NULL;
  uint32_t *order = NULL, max_series = 0;
  size_t npacks = 0, pack_cap = 0, nbytes = 0, byte_cap = 0, nrows = 0;
  int64_t min_t = 0, dropped = 0, done = 0;
  bool found = false;
  int rc = step_done(db->s_begin);
  if (rc == SQLITE_OK)
    rc = stor__one_int(db->s_tail_min, &min_t, &found);
  if (rc != SQLITE_OK || !found || min_t >= cut)
    goto end;
  /* Only what is rolled up: the packs whose readings all lie before the
   * oldest pending one (the next rollup commit lets the rest go). */
  if (db->reload) {
    step_done(db->s_rollback);
    return -EAGAIN;
  }
  if (db->pend_series > 0 && db->pend_min_t - (STOR_PACK_SPAN_MS - 1) < cut)
    cut = db->pend_min_t - (STOR_PACK_SPAN_MS - 1);
  if (cut <= min_t)
    goto end;

  /* The rows in key order (t first) until they hold STOR_COMPACT_ROWS
   * readings and take STOR_COMPACT_BYTES of memory (a brief step: any):
   * those before the t whose rows would bring them there (all rows of one
   * t go together, min_t's whatever they take). */
  size_t budget = brief ? 0 : STOR_COMPACT_BYTES;
  sqlite3_stmt *st = db->s_tail_take;
  size_t mem = 0, t_packs = 0, t_bytes = 0, t_rows = 0; /* where this t's rows start */
  int64_t cur_t = -1;
  sqlite3_bind_int64(st, 1, cut);
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    int64_t t = sqlite3_column_int64(st, 1), n = sqlite3_column_int64(st, 3);
    int type = sqlite3_column_type(st, 2);
    size_t len = type == SQLITE_BLOB ? (size_t)sqlite3_column_bytes(st, 2) : 0;
    if (t != cur_t) {
      cur_t = t;
      t_packs = npacks;
      t_bytes = nbytes;
      t_rows = nrows;
    }
    mem += sizeof(*packs) + sizeof(*order) + len;
    if (mem >= budget && nrows >= STOR_COMPACT_ROWS && t > min_t) {
      npacks = t_packs;
      nbytes = t_bytes;
      nrows = t_rows;
      cut = t;
      break;
    }
    if (!pages_room((void **)&packs, &pack_cap, npacks, 1, sizeof(*packs), 4096) ||
        !pages_room((void **)&bytes, &byte_cap, nbytes, len, 1, 65536)) {
      rc = SQLITE_NOMEM;
      break;
    }
    pack_ref_t *pk = &packs[npacks];
    *pk = (pack_ref_t){.t = t, .series = (uint32_t)sqlite3_column_int64(st, 0), .n = (uint32_t)n};
    if (type == SQLITE_BLOB) { /* decoded, and checked, with its series */
      if (n < 2 || n > STOR_PACK_MAX) {
        rc = SQLITE_CORRUPT;
        break;
      }
      memcpy(bytes + nbytes, sqlite3_column_blob(st, 2), len);
      pk->u.b.at = (uint32_t)nbytes;
      pk->u.b.len = (uint32_t)len;
      nbytes += len;
    } else {
      stor_sample_t one;
      size_t k = 0;
      if ((rc = stor__pack_column(st, 1, &one, &k)) != SQLITE_OK || n != 1) {
        rc = SQLITE_CORRUPT;
        break;
      }
      pk->u.v = one.v;
    }
    if (pk->series > max_series)
      max_series = pk->series;
    npacks++;
    nrows += (size_t)n;
  }
  sqlite3_reset(st);
  if (rc != SQLITE_DONE && rc != SQLITE_ROW)
    goto end;
  rc = SQLITE_OK;
  if (npacks > 0 && !(order = order_by_series(packs, npacks, max_series)))
    rc = SQLITE_NOMEM;

  scratch_t w = {0};
  for (size_t i = 0, j; rc == SQLITE_OK && i < npacks; i = j) {
    for (j = i; j < npacks && packs[order[j]].series == packs[order[i]].series; j++)
      ;
    rc = series_packs(db, &w, packs, order + i, j - i, bytes, &dropped);
  }
  scratch_free(&w);
  if (rc == SQLITE_OK) {
    sqlite3_bind_int64(db->s_tail_del, 1, cut);
    rc = step_done(db->s_tail_del);
  }
  if (rc == SQLITE_OK && dropped > 0) {
    log_warn(
        "compaction: %lld readings were stored twice (tail and block, or two packs); kept once",
        (long long)dropped);
    sqlite3_bind_int64(db->s_count, 1, -dropped);
    rc = step_done(db->s_count);
  }
  done = (int64_t)nrows;

end:
  stor__pages_free(bytes, byte_cap);
  stor__pages_free(packs, pack_cap * sizeof(*packs));
  free(order);
  if (rc == SQLITE_OK)
    rc = step_done(db->s_commit);
  if (rc == SQLITE_OK)
    rc = stor__one_int(db->s_tail_min, &min_t, &found);
  if (rc != SQLITE_OK) {
    int err = stor__fail(db->db, rc, "compaction");
    if (!sqlite3_get_autocommit(db->db))
      step_done(db->s_rollback);
    return err;
  }
  db->tail_min_t = found ? min_t : INT64_MAX;
  db->tail_rows = found ? (db->tail_rows > done ? db->tail_rows - done : 0) : 0;
  db->compacted += (uint64_t)done;
  return done;
}
