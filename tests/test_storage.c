/* Storage (storage/): group commit, resends, rollups with hand-computed
 * figures, local-midnight days, deferred rollups (their bound, a crash
 * before they are written, hours and days summed from minutes), retention,
 * a full disk, close, reopening and refusing files it must not touch. Every test works on a real
 * SQLite file in a fresh temporary directory, removed afterwards. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "common/common.h"
#include "protocol/protocol.h"
#include "storage/storage.h"
#include "storage/storage_int.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define T0 1767225600000LL /* 2026-01-01T00:00:00Z */
#define MIN_MS 60000LL
#define HOUR_MS 3600000LL
#define DAY_MS 86400000LL

typedef struct fx {
  char dir[64];
  char path[96];
  stor_db_t *db;
  stor_reader_t *rd;
} fx_t;

static int fx_setup(void **state) {
  fx_t *f = calloc(1, sizeof(*f));
  assert_non_null(f);
  snprintf(f->dir, sizeof(f->dir), "/tmp/test_storage.XXXXXX");
  assert_non_null(mkdtemp(f->dir));
  snprintf(f->path, sizeof(f->path), "%s/site.db", f->dir);
  setenv("TZ", "UTC", 1);
  tzset();
  *state = f;
  return 0;
}

static int fx_teardown(void **state) {
  fx_t *f = *state;
  static const char *const suffixes[] = {"", "-wal", "-shm", "-journal"};
  char p[128];
  stor_reader_close(f->rd);
  stor_close(f->db);
  for (size_t i = 0; i < sizeof(suffixes) / sizeof(suffixes[0]); i++) {
    snprintf(p, sizeof(p), "%s%s", f->path, suffixes[i]);
    unlink(p);
  }
  rmdir(f->dir);
  free(f);
  setenv("TZ", "UTC", 1);
  tzset();
  log_threshold = LOG_LVL_INFO;
  return 0;
}

static stor_options_t defaults(const fx_t *f) {
  return (stor_options_t){.path = f->path, .batch_ms = 20, .queue_max = 10000, .raw_days = 3650};
}

static void open_with(fx_t *f, const stor_options_t *o) {
  assert_null(f->db);
  assert_int_equal(stor_open(o, &f->db), 0);
  assert_non_null(f->db);
}

static void open_db(fx_t *f) {
  stor_options_t o = defaults(f);
  open_with(f, &o);
}

static void close_db(fx_t *f) {
  stor_close(f->db);
  f->db = NULL;
}

static stor_reader_t *reader(fx_t *f) {
  if (!f->rd)
    assert_int_equal(stor_reader_open(f->path, &f->rd), 0);
  return f->rd;
}

static uint32_t dev(fx_t *f, const char *name) {
  uint32_t id = 0;
  assert_int_equal(stor_device_id(f->db, name, &id), 0);
  assert_true(id > 0);
  return id;
}

static stor_reading_t rd(uint32_t device, int q, int64_t t_ms, double v) {
  return (stor_reading_t){.device = device, .quantity = (uint8_t)q, .t_ms = t_ms, .value = v};
}

/* r[0..n): device d's PM10, one a second from T0, valued 0, 1, 2 ... */
static void pm10_seconds(stor_reading_t *r, int n, uint32_t d) {
  for (int i = 0; i < n; i++)
    r[i] = rd(d, PROTO_Q_PM10, T0 + i * 1000, i);
}

static void append1(fx_t *f, stor_reading_t r) { assert_int_equal(stor_append(f->db, &r, 1), 0); }

/* Points of a series over [since, until); the caller frees them. */
static stor_point_t *query(fx_t *f, const char *device, int q, stor_step_t step, int64_t since,
                           int64_t until, size_t *n) {
  stor_point_t *p = NULL;
  assert_int_equal(stor_query(reader(f), device, q, step, since, until, SIZE_MAX, &p, n), 0);
  assert_true((*n == 0) == (p == NULL));
  return p;
}

static size_t count_raw(fx_t *f, const char *device, int q) {
  size_t n = 0;
  free(query(f, device, q, STOR_STEP_RAW, 0, INT64_MAX, &n));
  return n;
}

static void check_point(const stor_point_t *p, int64_t t_ms, uint32_t n, double min, double max,
                        double mean) {
  if (p->t_ms != t_ms || p->n != n || fabs(p->min - min) > 1e-9 || fabs(p->max - max) > 1e-9 ||
      fabs(p->mean - mean) > 0.005)
    print_error("point t=%lld n=%u min=%g max=%g mean=%g; want t=%lld n=%u min=%g max=%g "
                "mean=%g\n",
                (long long)p->t_ms, p->n, p->min, p->max, p->mean, (long long)t_ms, n, min, max,
                mean);
  assert_int_equal(p->t_ms, t_ms);
  assert_int_equal(p->n, n);
  assert_true(fabs(p->min - min) <= 1e-9);
  assert_true(fabs(p->max - max) <= 1e-9);
  assert_true(fabs(p->mean - mean) <= 0.005);
}

static stor_stats_t stats(fx_t *f) {
  stor_stats_t st;
  stor_get_stats(f->db, &st);
  return st;
}

static void sleep_ms(int ms) {
  struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000};
  nanosleep(&ts, NULL);
}

/* Waits until `n` readings are committed (without stor_flush, which would
 * also write their rollups). */
static void wait_committed(fx_t *f, uint64_t n) {
  for (int waited = 0; stats(f).committed < n && waited < 10000; waited++)
    sleep_ms(1);
  assert_int_equal(stats(f).committed, n);
}

static uint32_t sum_n(fx_t *f, const char *device, int q, stor_step_t step) {
  size_t n = 0;
  uint32_t total = 0;
  stor_point_t *p = query(f, device, q, step, 0, INT64_MAX, &n);
  for (size_t i = 0; i < n; i++)
    total += p[i].n;
  free(p);
  return total;
}

/* ---- ingest */

static void devices_registered_together_get_the_ids_they_get_one_by_one(void **state) {
  fx_t *f = *state;
  open_db(f);
  uint32_t known = dev(f, "dust-02");
  const char *names[] = {"dust-01", "dust-02", "noise-01"};
  uint32_t ids[3] = {0};
  assert_int_equal(stor_device_ids(f->db, names, 3, ids), 0);
  assert_int_equal(ids[1], known);
  assert_true(ids[0] > 0 && ids[2] > 0 && ids[0] != ids[2] && ids[0] != known);
  assert_int_equal(dev(f, "dust-01"), ids[0]);
  assert_int_equal(dev(f, "noise-01"), ids[2]);
  /* All or none: a bad name registers nothing. */
  const char *bad[] = {"weather-01", ""};
  uint32_t none[2] = {0};
  assert_int_equal(stor_device_ids(f->db, bad, 2, none), -EINVAL);
  assert_int_equal(none[0], 0);
  close_db(f);
}

static void appended_readings_are_queryable_after_flush(void **state) {
  fx_t *f = *state;
  open_db(f);
  uint32_t d = dev(f, "dust-01");
  /* Whole, hundredths, thousandths, negative and large values all come
   * back exactly, whichever way they are stored. */
  const double v[] = {10.5, 20.25, 30, 101.325, -5.5, 123456789.123};
  stor_reading_t r[6];
  for (int i = 0; i < 6; i++)
    r[i] = rd(d, PROTO_Q_PM10, T0 + i * 1000, v[i]);
  assert_int_equal(stor_append(f->db, r, 6), 0);
  assert_int_equal(stor_flush(f->db), 0);

  size_t n = 0;
  stor_point_t *p = query(f, "dust-01", PROTO_Q_PM10, STOR_STEP_RAW, T0, T0 + MIN_MS, &n);
  assert_int_equal(n, 6);
  for (int i = 0; i < 6; i++) {
    assert_int_equal(p[i].t_ms, T0 + i * 1000);
    assert_int_equal(p[i].n, 1);
    assert_true(p[i].min == v[i] && p[i].max == v[i] && p[i].mean == v[i]);
  }
  free(p);
  stor_stats_t st = stats(f);
  assert_int_equal(st.committed, 6);
  assert_int_equal(st.queued, 0);
  assert_false(st.disk_full);
}

static void a_batch_waits_at_most_batch_ms_and_takes_all_readings_queued_meanwhile(void **state) {
  fx_t *f = *state;
  stor_options_t o = defaults(f);
  o.batch_ms = 1000;
  open_with(f, &o);
  uint32_t d = dev(f, "dust-01");
  /* The first reading starts a 1 s clock; the others come 100 and 200 ms
   * later and ride in the same batch. No flush: the writer commits by
   * itself once the second is up, not before. */
  uint64_t start = sg_mono_ms();
  for (int i = 0; i < 3; i++) {
    if (i)
      sleep_ms(100);
    append1(f, rd(d, PROTO_Q_PM10, T0 + i * 1000, i));
  }
  assert_int_equal(stats(f).committed, 0);
  while (stats(f).committed < 3 && sg_mono_ms() - start < 10000)
    sleep_ms(5);
  uint64_t took = sg_mono_ms() - start;
  stor_stats_t st = stats(f);
  assert_int_equal(st.committed, 3);
  assert_int_equal(st.batches, 1);
  assert_true(took >= 990); /* the clock is the writer's: a lower bound */
}

/* The write budget's two triggers (db.c): a window long enough that no
 * test could outwait it, and a depth that starts the commit at once. */
static void a_batch_starts_before_batch_ms_once_batch_readings_are_queued(void **state) {
  fx_t *f = *state;
  stor_options_t o = defaults(f);
  o.batch_ms = 600000;
  o.batch_readings = 100;
  open_with(f, &o);
  uint32_t d = dev(f, "dust-01");
  stor_reading_t r[99];
  pm10_seconds(r, 99, d);
  assert_int_equal(stor_append(f->db, r, 99), 0);
  /* 99 wait for the window (10 minutes): nothing may commit meanwhile. */
  assert_int_equal(stats(f).committed, 0);
  append1(f, rd(d, PROTO_Q_PM10, T0 + 99 * 1000, 99));
  wait_committed(f, 100); /* 10 s at most, against the 10-minute window */
  stor_stats_t st = stats(f);
  assert_int_equal(st.batches, 1);
  assert_int_equal(st.queued, 0);
}

static void batch_readings_above_half_the_queue_is_taken_as_half(void **state) {
  fx_t *f = *state;
  stor_options_t o = defaults(f);
  o.batch_ms = 600000;
  o.queue_max = 1000;
  o.batch_readings = 5000; /* never reachable: 1000 fit the queue */
  open_with(f, &o);
  uint32_t d = dev(f, "dust-01");
  stor_reading_t r[500];
  pm10_seconds(r, 500, d);
  assert_int_equal(stor_append(f->db, r, 500), 0);
  wait_committed(f, 500);
  assert_int_equal(stats(f).batches, 1);
}

/* A backlog that built up while the writer was held (compacting, or
 * waiting for a core) is taken batch_readings at a time, not whole: one
 * commit of the whole queue kept every sender on 5.03 for its length. */
static void a_backlog_is_committed_batch_readings_at_a_time(void **state) {
  fx_t *f = *state;
  stor_options_t o = defaults(f);
  o.batch_ms = 600000;
  o.queue_max = 1000;
  o.batch_readings = 100;
  open_with(f, &o);
  uint32_t d = dev(f, "dust-01");
  stor_reading_t r[450];
  pm10_seconds(r, 450, d);
  stor__test_hold(f->db, true);
  assert_int_equal(stor_append(f->db, r, 450), 0);
  assert_int_equal(stats(f).queued, 450);
  stor__test_hold(f->db, false);
  /* 4 x 100 at once; the last 50 wait for the 10-minute window or a flush */
  wait_committed(f, 400);
  assert_int_equal(stor_flush(f->db), 0);
  stor_stats_t st = stats(f);
  assert_int_equal(st.committed, 450);
  assert_int_equal(st.batches, 5);
  assert_int_equal(st.queued, 0);
}

static void append_refuses_a_call_that_does_not_fit_whole_with_eagain(void **state) {
  fx_t *f = *state;
  stor_options_t o = defaults(f);
  o.queue_max = 8;
  open_with(f, &o);
  uint32_t d = dev(f, "dust-01");
  stor_reading_t r[5];
  stor__test_hold(f->db, true);
  pm10_seconds(r, 5, d);
  assert_int_equal(stor_append(f->db, r, 5), 0);
  for (int i = 0; i < 4; i++)
    r[i] = rd(d, PROTO_Q_PM10, T0 + (10 + i) * 1000, i);
  assert_int_equal(stor_append(f->db, r, 4), -EAGAIN);
  assert_int_equal(stats(f).queued, 5);
  for (int i = 0; i < 3; i++)
    r[i] = rd(d, PROTO_Q_PM10, T0 + (20 + i) * 1000, i);
  assert_int_equal(stor_append(f->db, r, 3), 0);
  assert_int_equal(stats(f).queued, 8);
  r[0] = rd(d, PROTO_Q_PM10, T0 + 30 * 1000, 0);
  assert_int_equal(stor_append(f->db, r, 1), -EAGAIN);
  stor__test_hold(f->db, false);
  assert_int_equal(stor_flush(f->db), 0);

  size_t n = 0;
  stor_point_t *p = query(f, "dust-01", PROTO_Q_PM10, STOR_STEP_RAW, 0, INT64_MAX, &n);
  assert_int_equal(n, 8);
  for (size_t i = 0; i < n; i++) /* nothing of the refused calls */
    assert_true(p[i].t_ms < T0 + 10000 || (p[i].t_ms >= T0 + 20000 && p[i].t_ms < T0 + 30000));
  free(p);
}

static void append_rejects_readings_a_commit_could_not_store(void **state) {
  fx_t *f = *state;
  open_db(f);
  uint32_t d = dev(f, "dust-01");
  stor_reading_t ok = rd(d, PROTO_Q_PM10, T0, 1);
  stor_reading_t bad[] = {rd(0, PROTO_Q_PM10, T0, 1),   rd(d + 1, PROTO_Q_PM10, T0, 1),
                          rd(d, PROTO_Q_COUNT, T0, 1),  rd(d, PROTO_Q_PM10, -1, 1),
                          rd(d, PROTO_Q_PM10, T0, NAN), rd(d, PROTO_Q_PM10, T0, INFINITY)};
  assert_int_equal(stor_append(f->db, &ok, 0), -EINVAL);
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    stor_reading_t pair[2] = {ok, bad[i]};
    assert_int_equal(stor_append(f->db, pair, 2), -EINVAL); /* all or none */
  }
  assert_int_equal(stats(f).queued, 0);
  assert_int_equal(stor_flush(f->db), 0);
  assert_int_equal(count_raw(f, "dust-01", PROTO_Q_PM10), 0);
}

static void resent_readings_are_ignored_and_not_counted_twice(void **state) {
  fx_t *f = *state;
  open_db(f);
  uint32_t d = dev(f, "dust-01");
  append1(f, rd(d, PROTO_Q_PM10, T0, 10));
  append1(f, rd(d, PROTO_Q_PM10, T0 + 10000, 20));
  assert_int_equal(stor_flush(f->db), 0);
  /* Both again (with other values), one new, and the new one twice in the
   * same batch: the first arrival wins. */
  stor_reading_t again[] = {rd(d, PROTO_Q_PM10, T0, 99), rd(d, PROTO_Q_PM10, T0 + 10000, 99),
                            rd(d, PROTO_Q_PM10, T0 + 20000, 30),
                            rd(d, PROTO_Q_PM10, T0 + 20000, 77)};
  assert_int_equal(stor_append(f->db, again, 4), 0);
  assert_int_equal(stor_flush(f->db), 0);

  stor_stats_t st = stats(f);
  assert_int_equal(st.committed, 3);
  assert_int_equal(st.duplicates, 3);
  size_t n = 0;
  stor_point_t *p = query(f, "dust-01", PROTO_Q_PM10, STOR_STEP_RAW, 0, INT64_MAX, &n);
  assert_int_equal(n, 3);
  assert_true(p[0].mean == 10 && p[1].mean == 20 && p[2].mean == 30);
  free(p);
  const stor_step_t steps[] = {STOR_STEP_1M, STOR_STEP_1H, STOR_STEP_1D};
  for (size_t i = 0; i < 3; i++) {
    p = query(f, "dust-01", PROTO_Q_PM10, steps[i], 0, INT64_MAX, &n);
    assert_int_equal(n, 1);
    check_point(&p[0], T0, 3, 10, 30, 20);
    free(p);
  }
  int64_t rows = 0;
  assert_int_equal(stor_reader_counts(reader(f), &rows, NULL), 0);
  assert_int_equal(rows, 3);
}

/* ---- rollups */

static void rollups_hold_hand_computed_minute_hour_and_day_figures(void **state) {
  fx_t *f = *state;
  open_db(f);
  uint32_t dust = dev(f, "dust-01"), noise = dev(f, "noise-01");
  /* Across two batches, so that buckets are merged in the table too. */
  append1(f, rd(dust, PROTO_Q_PM10, T0 + 5000, 10.5));
  append1(f, rd(noise, PROTO_Q_LA, T0, 60));
  assert_int_equal(stor_flush(f->db), 0);
  stor_reading_t r[] = {
      rd(dust, PROTO_Q_PM10, T0 + 50000, 20),
      rd(dust, PROTO_Q_PM10, T0 + 59 * MIN_MS + 59000, 30), /* 00:59:59 */
      rd(dust, PROTO_Q_PM10, T0 + HOUR_MS, 40),             /* 01:00:00 */
      rd(dust, PROTO_Q_PM10, T0 + DAY_MS, 50),              /* the next day */
      rd(noise, PROTO_Q_LA, T0 + 30000, 70),
      rd(noise, PROTO_Q_LA, T0 + MIN_MS, 50),
  };
  assert_int_equal(stor_append(f->db, r, sizeof(r) / sizeof(r[0])), 0);
  assert_int_equal(stor_flush(f->db), 0);

  size_t n = 0;
  stor_point_t *p = query(f, "dust-01", PROTO_Q_PM10, STOR_STEP_1M, 0, INT64_MAX, &n);
  assert_int_equal(n, 4);
  check_point(&p[0], T0, 2, 10.5, 20, 15.25);
  check_point(&p[1], T0 + 59 * MIN_MS, 1, 30, 30, 30);
  check_point(&p[2], T0 + HOUR_MS, 1, 40, 40, 40);
  check_point(&p[3], T0 + DAY_MS, 1, 50, 50, 50);
  free(p);
  p = query(f, "dust-01", PROTO_Q_PM10, STOR_STEP_1H, 0, INT64_MAX, &n);
  assert_int_equal(n, 3);
  check_point(&p[0], T0, 3, 10.5, 30, 60.5 / 3);
  check_point(&p[1], T0 + HOUR_MS, 1, 40, 40, 40);
  check_point(&p[2], T0 + DAY_MS, 1, 50, 50, 50);
  free(p);
  p = query(f, "dust-01", PROTO_Q_PM10, STOR_STEP_1D, 0, INT64_MAX, &n);
  assert_int_equal(n, 2);
  check_point(&p[0], T0, 4, 10.5, 40, 25.125);
  check_point(&p[1], T0 + DAY_MS, 1, 50, 50, 50);
  free(p);

  /* la is a level: 60 and 70 dB for equal time average to
   * 10 lg((10^6 + 10^7) / 2) = 67.40 dB, not 65. */
  p = query(f, "noise-01", PROTO_Q_LA, STOR_STEP_1M, 0, INT64_MAX, &n);
  assert_int_equal(n, 2);
  check_point(&p[0], T0, 2, 60, 70, 67.40);
  check_point(&p[1], T0 + MIN_MS, 1, 50, 50, 50);
  free(p);
  p = query(f, "noise-01", PROTO_Q_LA, STOR_STEP_1H, 0, INT64_MAX, &n);
  assert_int_equal(n, 1);
  check_point(&p[0], T0, 3, 50, 70, 10 * log10((1e6 + 1e7 + 1e5) / 3)); /* 65.68 */
  free(p);

  /* Bounds: a bucket is in when since <= start < until. */
  p = query(f, "dust-01", PROTO_Q_PM10, STOR_STEP_1M, T0 + 1, T0 + HOUR_MS + 1, &n);
  assert_int_equal(n, 2);
  check_point(&p[0], T0 + 59 * MIN_MS, 1, 30, 30, 30);
  check_point(&p[1], T0 + HOUR_MS, 1, 40, 40, 40);
  free(p);
  stor_point_t *lim = NULL;
  assert_int_equal(
      stor_query(reader(f), "dust-01", PROTO_Q_PM10, STOR_STEP_RAW, 0, INT64_MAX, 2, &lim, &n), 0);
  assert_int_equal(n, 2); /* the oldest two */
  assert_int_equal(lim[0].t_ms, T0 + 5000);
  assert_int_equal(lim[1].t_ms, T0 + 50000);
  free(lim);
}

static void day_buckets_start_at_local_midnight(void **state) {
  fx_t *f = *state;
  setenv("TZ", "Asia/Shanghai", 1); /* UTC+8, no daylight saving */
  tzset();
  open_db(f);
  uint32_t d = dev(f, "dust-01");
  const int64_t mar1_16z = 1772380800000LL;            /* 2026-03-01T16:00Z = 03-02 00:00 CST */
  append1(f, rd(d, PROTO_Q_PM10, mar1_16z - 1000, 1)); /* 23:59:59 CST on 03-01 */
  append1(f, rd(d, PROTO_Q_PM10, mar1_16z, 2));
  append1(f, rd(d, PROTO_Q_PM10, mar1_16z + DAY_MS - 1000, 3));
  assert_int_equal(stor_flush(f->db), 0);

  size_t n = 0;
  stor_point_t *p = query(f, "dust-01", PROTO_Q_PM10, STOR_STEP_1D, 0, INT64_MAX, &n);
  assert_int_equal(n, 2);
  check_point(&p[0], mar1_16z - DAY_MS, 1, 1, 1, 1);
  check_point(&p[1], mar1_16z, 2, 2, 3, 2.5);
  free(p);
  /* Hours stay UTC multiples. */
  p = query(f, "dust-01", PROTO_Q_PM10, STOR_STEP_1H, 0, INT64_MAX, &n);
  assert_int_equal(n, 3);
  assert_int_equal(p[0].t_ms, mar1_16z - HOUR_MS);
  free(p);
}

/* ---- retention */

/* ---- the block layout (compact.c) */

/* Runs `sql` (statements that return nothing) on the file at `path`. */
static void db_exec(const char *path, const char *sql) {
  sqlite3 *db = NULL;
  assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
  assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
  assert_int_equal(sqlite3_close(db), SQLITE_OK);
}

static int64_t db_int(const char *path, const char *sql) {
  sqlite3 *db = NULL;
  sqlite3_stmt *st = NULL;
  assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
  assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
  assert_int_equal(sqlite3_step(st), SQLITE_ROW);
  int64_t v = sqlite3_column_int64(st, 0);
  sqlite3_finalize(st);
  sqlite3_close(db);
  return v;
}

/* Every series' readings, as stor_query gives them, against `want`. */
typedef struct want_row {
  char device[64];
  int q;
  int64_t t;
  double v;
} want_row_t;

static void check_all_readings(fx_t *f, const want_row_t *w, size_t nw) {
  for (size_t i = 0; i < nw;) {
    size_t j = i;
    while (j < nw && strcmp(w[j].device, w[i].device) == 0 && w[j].q == w[i].q)
      j++;
    size_t n = 0;
    stor_point_t *p = query(f, w[i].device, w[i].q, STOR_STEP_RAW, 0, INT64_MAX, &n);
    if (n != j - i)
      fail_msg("%s quantity %d: %zu readings, want %zu", w[i].device, w[i].q, n, j - i);
    for (size_t k = 0; k < n; k++)
      if (p[k].t_ms != w[i + k].t || p[k].mean != w[i + k].v)
        fail_msg("%s quantity %d reading %zu: t=%lld v=%.17g, want t=%lld v=%.17g", w[i].device,
                 w[i].q, k, (long long)p[k].t_ms, p[k].mean, (long long)w[i + k].t, w[i + k].v);
    free(p);
    i = j;
  }
}

/* Copies tests/data/main-db/site-vVERSION.db (made by make.sh VERSION)
 * to the fixture's path, and checks it is that version. */
static void old_database(fx_t *f, int version) {
  char cmd[256];
  snprintf(cmd, sizeof(cmd), "cp tests/data/main-db/site-v%d.db %s", version, f->path);
  assert_int_equal(system(cmd), 0);
  assert_int_equal(db_int(f->path, "PRAGMA user_version"), version);
}

/* The `n` readings an old database keeps one a row in `table` (raw, or
 * tail before packs), in check_all_readings' order, in an array with
 * `spare` more entries; the caller frees it. */
static want_row_t *old_readings(const char *path, const char *table, size_t n, size_t spare) {
  want_row_t *w = calloc(n + spare, sizeof(*w));
  assert_non_null(w);
  sqlite3 *old = NULL;
  sqlite3_stmt *st = NULL;
  char sql[256];
  snprintf(sql, sizeof(sql),
           "SELECT d.name, s.quantity, r.t, r.v FROM %s r JOIN series s ON s.id = r.series"
           " JOIN device d ON d.id = s.device ORDER BY d.name, s.quantity, r.t",
           table);
  assert_int_equal(sqlite3_open_v2(path, &old, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
  assert_int_equal(sqlite3_prepare_v2(old, sql, -1, &st, NULL), SQLITE_OK);
  size_t k = 0;
  for (; sqlite3_step(st) == SQLITE_ROW; k++) {
    if (k >= n)
      continue; /* counted: fails below */
    snprintf(w[k].device, sizeof(w[k].device), "%s", (const char *)sqlite3_column_text(st, 0));
    w[k].q = sqlite3_column_int(st, 1);
    w[k].t = sqlite3_column_int64(st, 2);
    w[k].v = stor__column_value(st, 3);
  }
  sqlite3_finalize(st);
  sqlite3_close(old);
  assert_int_equal(k, n);
  return w;
}

static const char *const ROLL_SUM =
    "SELECT (SELECT count(*) || ' ' || total(n) || ' ' || total(" STOR_ROLL_VSUM ") || ' ' ||"
    " total(vmin) || ' ' || total(" STOR_ROLL_VMAX ") || ' ' || total(esum) FROM roll_1m) || '|' ||"
    " (SELECT count(*) || ' ' || total(n) || ' ' || total(" STOR_ROLL_VSUM
    ") FROM roll_1h) || '|' ||"
    " (SELECT count(*) || ' ' || total(n) || ' ' || total(" STOR_ROLL_VSUM
    ") FROM roll_1d) || '|' ||"
    " (SELECT count(*) || ' ' || total(t) || ' ' || total(v) FROM latest)";

static char *db_text(const char *path, const char *sql) {
  sqlite3 *db = NULL;
  sqlite3_stmt *st = NULL;
  assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
  assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
  assert_int_equal(sqlite3_step(st), SQLITE_ROW);
  char *v = strdup((const char *)sqlite3_column_text(st, 0));
  sqlite3_finalize(st);
  sqlite3_close(db);
  return v;
}

/* tests/data/main-db/site-v6.db was written by main before the block
 * layout (schema 6, raw rows): opened, it migrates in place; every series
 * reads the same readings before and after compaction, the rollups,
 * latest values and counter are untouched and the ledger's chain holds. */
static void a_schema_6_database_migrates_in_place_and_reads_the_same(void **state) {
  fx_t *f = *state;
  old_database(f, 6);
  int64_t nraw = db_int(f->path, "SELECT count(*) FROM raw");
  assert_int_equal(nraw, 3461);
  char *rolls = db_text(f->path, ROLL_SUM);
  char *ledger = db_text(f->path, "SELECT count(*) || ' ' || hex(hash) FROM ledger_head");
  size_t nw = (size_t)nraw;
  want_row_t *w = old_readings(f->path, "raw", nw, 0);

  open_db(f); /* migrates */
  assert_int_equal(db_int(f->path, "PRAGMA user_version"), stor__schema_version());
  assert_int_equal(db_int(f->path, "PRAGMA auto_vacuum"), 2);
  /* Version 10's packs: whatever the writer has not compacted yet is a
   * pack of the one reading of its row. */
  assert_int_equal(db_int(f->path, "SELECT count(*) FROM tail WHERE n != 1"), 0);
  check_all_readings(f, w, nw);
  /* Compacted: the writer starts on them at once (they are old), the rest
   * now. */
  assert_true(stor__test_compact(f->db) >= 0);
  assert_int_equal(db_int(f->path, "SELECT count(*) FROM tail"), 0);
  check_all_readings(f, w, nw);
  close_db(f);
  check_all_readings(f, w, nw);
  assert_int_equal(db_int(f->path, "SELECT count(*) FROM tail"), 0);
  assert_int_equal(db_int(f->path, "SELECT sum(n) FROM block"), nraw);
  assert_int_equal(db_int(f->path, "SELECT value FROM counter WHERE name = 'raw_rows'"), nraw);
  assert_int_equal(db_int(f->path, "SELECT count(*) FROM sqlite_schema WHERE name = 'raw'"), 0);
  char *rolls2 = db_text(f->path, ROLL_SUM);
  assert_string_equal(rolls2, rolls);
  char *ledger2 = db_text(f->path, "SELECT count(*) || ' ' || hex(hash) FROM ledger_head");
  assert_string_equal(ledger2, ledger);
  stor_verify_t v;
  assert_int_equal(stor_ledger_verify(reader(f), &v), 0);
  assert_true(v.entries > 0);
  free(rolls);
  free(rolls2);
  free(ledger);
  free(ledger2);
  free(w);
}

/* What stor_open reported (stor_opening_fn), each call copied. */
typedef struct opening_call {
  char what[128];
  int schema;
  double step_s;
} opening_call_t;
typedef struct openings {
  opening_call_t call[4096];
  size_t n, dropped;
} openings_t;

/* Records the call and does nothing else. */
static void record_opening(void *arg, const stor_opening_t *o) {
  openings_t *r = arg;
  if (r->n == sizeof(r->call) / sizeof(r->call[0])) {
    r->dropped++;
    return;
  }
  snprintf(r->call[r->n].what, sizeof(r->call[0].what), "%s", o->what);
  r->call[r->n].schema = o->schema;
  r->call[r->n].step_s = o->step_s;
  r->n++;
}

/* site-v6.db with its raw rows copied `copies` times, each copy an hour
 * earlier than the one before (older than the rollups' latest values, so
 * nothing is rolled up at open, and within raw_days). */
static void grow_raw(const char *path, int copies) {
  char sql[512];
  snprintf(sql, sizeof(sql),
           "WITH RECURSIVE k(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM k WHERE i < %d)"
           " INSERT INTO raw(series, t, v) SELECT series, t - i * 3600000, v FROM raw, k;"
           "UPDATE counter SET value = (SELECT count(*) FROM raw) WHERE name = 'raw_rows'",
           copies);
  db_exec(path, sql);
}

/* Opening a schema 6 database with a caller's report: each migration is
 * reported as it begins, in order, then migration 12's VACUUM and reading
 * back what is pending; within a step that works longer than opening_ms
 * (migration 8 moving 200,000 readings) it is called again, never sooner
 * than opening_ms after the last call; and the callback, which does
 * nothing, changes nothing: every reading, rollup and the ledger read as
 * before. */
static void an_open_reports_each_migration_and_the_work_within_it(void **state) {
  fx_t *f = *state;
  old_database(f, 6);
  grow_raw(f->path, 57);
  int64_t nraw = db_int(f->path, "SELECT count(*) FROM raw");
  assert_int_equal(nraw, 3461 * 58);
  char *rolls = db_text(f->path, ROLL_SUM);
  char *ledger = db_text(f->path, "SELECT count(*) || ' ' || hex(hash) FROM ledger_head");
  want_row_t *w = old_readings(f->path, "raw", (size_t)nraw, 0);

  static openings_t r;
  memset(&r, 0, sizeof(r));
  stor_options_t o = defaults(f);
  o.on_opening = record_opening;
  o.opening_arg = &r;
  o.opening_ms = 1;
  open_with(f, &o);
  assert_int_equal(db_int(f->path, "PRAGMA user_version"), stor__schema_version());
  assert_int_equal(stor__schema_version(), 13); /* the steps below */

  /* The steps, each reported first with step_s 0. */
  static const char *const steps[] = {
      "migrating the database to schema 7 of 13",
      "migrating the database to schema 8 of 13",
      "migrating the database to schema 9 of 13",
      "migrating the database to schema 10 of 13",
      "migrating the database to schema 11 of 13",
      "migrating the database to schema 12 of 13",
      "migrating the database to schema 12 of 13: rewriting the file (VACUUM, ",
      "migrating the database to schema 13 of 13",
      "reading back the readings not rolled up yet",
  };
  static const int schemas[] = {7, 8, 9, 10, 11, 12, 12, 13, 0};
  size_t k = 0, in_8 = 0;
  assert_true(r.n > 0);
  assert_int_equal(r.dropped, 0);
  for (size_t i = 0; i < r.n; i++) {
    const opening_call_t *c = &r.call[i];
    bool next = k + 1 < sizeof(steps) / sizeof(steps[0]) &&
                strncmp(c->what, steps[k + 1], strlen(steps[k + 1])) == 0;
    if (i == 0 || next) {
      if (i > 0)
        k++;
      if (strncmp(c->what, steps[k], strlen(steps[k])) != 0 || c->step_s != 0)
        fail_msg("call %zu: \"%s\" at %.3f s, want step %zu \"%s\" at 0", i, c->what, c->step_s, k,
                 steps[k]);
    } else {
      if (strncmp(c->what, steps[k], strlen(steps[k])) != 0)
        fail_msg("call %zu: \"%s\" within step \"%s\"", i, c->what, steps[k]);
      if (llround(c->step_s * 1000) < llround(r.call[i - 1].step_s * 1000) + 1) /* ms */
        fail_msg("call %zu (\"%s\") at %.3f s, less than opening_ms after the last (%.3f s)", i,
                 c->what, c->step_s, r.call[i - 1].step_s);
      in_8 += k == 1;
    }
    if (c->schema != schemas[k])
      fail_msg("call %zu (\"%s\"): schema %d, want %d", i, c->what, c->schema, schemas[k]);
  }
  if (k != sizeof(steps) / sizeof(steps[0]) - 1)
    fail_msg("the report ended at step %zu (\"%s\")", k, steps[k]);
  if (in_8 == 0)
    fail_msg("migration 8 (moving %lld readings) was not reported while it worked",
             (long long)nraw);
  print_message("opening reported %zu calls, %zu within migration 8\n", r.n, in_8);

  check_all_readings(f, w, (size_t)nraw);
  close_db(f);
  check_all_readings(f, w, (size_t)nraw);
  char *rolls2 = db_text(f->path, ROLL_SUM);
  assert_string_equal(rolls2, rolls);
  char *ledger2 = db_text(f->path, "SELECT count(*) || ' ' || hex(hash) FROM ledger_head");
  assert_string_equal(ledger2, ledger);
  assert_int_equal(db_int(f->path, "SELECT value FROM counter WHERE name = 'raw_rows'"), nraw);
  char *ok = db_text(f->path, "PRAGMA integrity_check");
  assert_string_equal(ok, "ok");
  free(ok);
  free(rolls);
  free(rolls2);
  free(ledger);
  free(ledger2);
  free(w);
}

/* tests/data/main-db/site-v9.db was written by main before packed tail
 * rows (schema 9, one tail row a reading; make.sh 9): its 15,136 readings
 * are all in the tail and none is rolled up yet (the writer writes
 * rollups at the latest 10 minutes on, never at close). Opened, each row
 * becomes a pack of one; every series reads the same readings, a resend of
 * a migrated reading is a duplicate, the first commit rolls them all up,
 * and compaction makes blocks of them. */
static void a_schema_9_database_migrates_to_packs_and_reads_the_same(void **state) {
  fx_t *f = *state;
  old_database(f, 9);
  int64_t nraw = db_int(f->path, "SELECT count(*) FROM tail");
  assert_int_equal(nraw, 15136);
  assert_int_equal(db_int(f->path, "SELECT count(*) FROM latest"), 0);
  char *ledger = db_text(f->path, "SELECT count(*) || ' ' || hex(hash) FROM ledger_head");
  size_t nw = (size_t)nraw;
  want_row_t *w = old_readings(f->path, "tail", nw, 1);

  open_db(f); /* migrates */
  assert_int_equal(db_int(f->path, "PRAGMA user_version"), stor__schema_version());
  assert_int_equal(db_int(f->path, "SELECT count(*) FROM tail WHERE n != 1"), 0);
  check_all_readings(f, w, nw);
  /* Resends of the first and the last migrated reading, and one new. */
  uint32_t d0 = dev(f, w[0].device), d1 = dev(f, w[nw - 1].device);
  append1(f, rd(d0, w[0].q, w[0].t, 1));
  append1(f, rd(d1, w[nw - 1].q, w[nw - 1].t, 1));
  append1(f, rd(d1, w[nw - 1].q, w[nw - 1].t + 1, w[nw - 1].v));
  assert_int_equal(stor_flush(f->db), 0);
  stor_stats_t sst;
  stor_get_stats(f->db, &sst);
  assert_int_equal(sst.committed, 1);
  assert_int_equal(sst.duplicates, 2);
  /* stor_flush wrote every pending rollup: each migrated reading once. */
  assert_int_equal(db_int(f->path, "SELECT sum(n) FROM roll_1m"), nraw + 1);
  assert_int_equal(db_int(f->path, "SELECT sum(n) FROM roll_1d"), nraw + 1);
  assert_int_equal(db_int(f->path, "SELECT value FROM counter WHERE name = 'raw_rows'"), nraw + 1);
  w[nw] = w[nw - 1]; /* the new reading: its series' last */
  w[nw].t++;
  nw++;
  check_all_readings(f, w, nw);
  assert_true(stor__test_compact(f->db) >= 0);
  assert_int_equal(db_int(f->path, "SELECT count(*) FROM tail"), 0);
  check_all_readings(f, w, nw);
  close_db(f);
  assert_int_equal(db_int(f->path, "SELECT sum(n) FROM block"), nraw + 1);
  assert_int_equal(db_int(f->path, "SELECT value FROM counter WHERE name = 'raw_rows'"), nraw + 1);
  char *ledger2 = db_text(f->path, "SELECT count(*) || ' ' || hex(hash) FROM ledger_head");
  assert_string_equal(ledger2, ledger);
  stor_verify_t v;
  assert_int_equal(stor_ledger_verify(reader(f), &v), 0);
  assert_true(v.entries > 0);
  free(ledger);
  free(ledger2);
  free(w);
}

/* Resends and late readings against blocks: a resend of a compacted
 * reading is a duplicate (not stored, not counted, not rolled up twice);
 * a late reading into a compacted span is stored once, read in order and
 * merged into its block at the next compaction. */
static void late_readings_and_resends_into_compacted_spans_are_stored_once(void **state) {
  fx_t *f = *state;
  open_db(f);
  uint32_t d = dev(f, "dust-01");
  for (int i = 0; i < 100; i++)
    if (i % 10 != 5) /* gaps for late readings */
      append1(f, rd(d, PROTO_Q_PM10, T0 + i * 1000LL, 10 + i));
  assert_int_equal(stor_flush(f->db), 0);
  assert_true(stor__test_compact(f->db) >= 0);
  assert_int_equal(db_int(f->path, "SELECT count(*) FROM tail"), 0);
  /* Resends of compacted readings, late readings into the span, and the
   * same late reading twice in one batch. */
  append1(f, rd(d, PROTO_Q_PM10, T0 + 3000, 99));  /* resend */
  append1(f, rd(d, PROTO_Q_PM10, T0 + 99000, 99)); /* resend, the block's last */
  append1(f, rd(d, PROTO_Q_PM10, T0 + 5000, 15));  /* late */
  append1(f, rd(d, PROTO_Q_PM10, T0 + 55000, 65)); /* late */
  append1(f, rd(d, PROTO_Q_PM10, T0 + 55000, 77)); /* its resend: the first wins */
  assert_int_equal(stor_flush(f->db), 0);
  stor_stats_t st;
  stor_get_stats(f->db, &st);
  assert_int_equal(st.committed, 92);
  assert_int_equal(st.duplicates, 3);
  for (int round = 0; round < 2; round++) {
    size_t n = 0;
    stor_point_t *p = query(f, "dust-01", PROTO_Q_PM10, STOR_STEP_RAW, T0, T0 + HOUR_MS, &n);
    assert_int_equal(n, 92);
    size_t k = 0;
    for (int i = 0; i < 100; i++) {
      if (i % 10 == 5 && i != 5 && i != 55)
        continue;
      assert_int_equal(p[k].t_ms, T0 + i * 1000LL);
      assert_true(p[k].mean == 10 + i);
      k++;
    }
    free(p);
    /* A window that starts inside a block and ends inside another. */
    p = query(f, "dust-01", PROTO_Q_PM10, STOR_STEP_RAW, T0 + 4000, T0 + 7000, &n);
    assert_int_equal(n, 3);
    assert_int_equal(p[0].t_ms, T0 + 4000);
    assert_int_equal(p[1].t_ms, T0 + 5000);
    assert_int_equal(p[2].t_ms, T0 + 6000);
    free(p);
    p = query(f, "dust-01", PROTO_Q_PM10, STOR_STEP_1H, T0, T0 + HOUR_MS, &n);
    assert_int_equal(n, 1);
    assert_int_equal(p[0].n, 92);
    free(p);
    if (round == 0) /* then merged into the block */
      assert_true(stor__test_compact(f->db) >= 0);
  }
  assert_int_equal(db_int(f->path, "SELECT count(*) FROM tail"), 0);
  assert_int_equal(db_int(f->path, "SELECT count(*) FROM block"), 1);
  assert_int_equal(db_int(f->path, "SELECT sum(n) FROM block"), 92);
  assert_int_equal(db_int(f->path, "SELECT value FROM counter WHERE name = 'raw_rows'"), 92);
  /* A resend of a merged-in late reading is still a duplicate, after a
   * reopen too (the cache of what is stored is read back). */
  close_db(f);
  open_db(f);
  append1(f, rd(d, PROTO_Q_PM10, T0 + 55000, 1));
  append1(f, rd(d, PROTO_Q_PM10, T0 + 100000, 110)); /* new, after the block */
  assert_int_equal(stor_flush(f->db), 0);
  stor_get_stats(f->db, &st);
  assert_int_equal(st.committed, 1);
  assert_int_equal(st.duplicates, 1);
  assert_int_equal(count_raw(f, "dust-01", PROTO_Q_PM10), 93);
}

static void check_integrity(fx_t *f) {
  char *ok = db_text(f->path, "PRAGMA integrity_check");
  assert_string_equal(ok, "ok");
  free(ok);
}

/* Blocks hold at most STOR_BLOCK_CAP readings, a span with more split in
 * equal pieces, so a late reading rewrites a bounded block. A series'
 * backlog longer than a step decodes at a time (STOR_COMPACT_CHUNK) is
 * compacted whole, in order, in chunks. */
static void blocks_stay_within_their_cap_and_a_backlog_compacts_in_chunks(void **state) {
  fx_t *f = *state;
  open_db(f);
  uint32_t d = dev(f, "dust-01"), e = dev(f, "noise-01");
  enum { SPAN = 3 * STOR_BLOCK_CAP, BACKLOG = STOR_COMPACT_CHUNK + 5000, PART = 5000 };
  static stor_reading_t r[PART];
  /* Twenty minutes ago: the compactor leaves rows this young in the tail
   * until asked (stor__test_compact). SPAN readings 100 ms apart, a late
   * one left out of the middle; a backlog of another series after them,
   * 10 ms apart. */
  const int64_t t0 = ((int64_t)time(NULL) - 1200) * 1000, b0 = t0 + SPAN * 100LL;
  for (int from = 0; from < SPAN; from += PART) {
    size_t n = 0;
    for (int i = from; i < SPAN && i < from + PART; i++)
      if (i != SPAN / 2)
        r[n++] = rd(d, PROTO_Q_PM10, t0 + i * 100LL, i % 90);
    assert_int_equal(stor_append(f->db, r, n), 0);
    assert_int_equal(stor_flush(f->db), 0);
  }
  assert_true(stor__test_compact(f->db) >= 0);
  assert_int_equal(db_int(f->path, "SELECT count(*) FROM block"), 3);
  assert_int_equal(db_int(f->path, "SELECT min(n) FROM block"), STOR_BLOCK_CAP - 1);
  assert_int_equal(db_int(f->path, "SELECT max(n) FROM block"), STOR_BLOCK_CAP);
  append1(f, rd(d, PROTO_Q_PM10, t0 + SPAN / 2 * 100LL, 7)); /* late, into a full block */
  assert_int_equal(stor_flush(f->db), 0);
  assert_true(stor__test_compact(f->db) >= 0);
  assert_int_equal(db_int(f->path, "SELECT count(*) FROM block"), 4);
  assert_true(db_int(f->path, "SELECT max(n) FROM block") <= STOR_BLOCK_CAP);
  assert_int_equal(db_int(f->path, "SELECT sum(n) FROM block"), SPAN);
  size_t n = 0;
  stor_point_t *p = query(f, "dust-01", PROTO_Q_PM10, STOR_STEP_RAW, t0, b0, &n);
  assert_int_equal(n, SPAN);
  for (int i = 0; i < SPAN; i++) {
    assert_int_equal(p[i].t_ms, t0 + i * 100LL);
    assert_true(p[i].mean == (i == SPAN / 2 ? 7 : i % 90));
  }
  free(p);

  for (int from = 0; from < BACKLOG; from += PART) {
    size_t k = 0;
    for (int i = from; i < BACKLOG && i < from + PART; i++)
      r[k++] = rd(e, PROTO_Q_LA, b0 + i * 10LL, 40 + i % 30);
    assert_int_equal(stor_append(f->db, r, k), 0);
    assert_int_equal(stor_flush(f->db), 0);
  }
  assert_int_equal(db_int(f->path, "SELECT sum(n) FROM tail"), BACKLOG); /* one step's */
  assert_true(stor__test_compact(f->db) >= 0);
  assert_int_equal(db_int(f->path, "SELECT count(*) FROM tail"), 0);
  assert_true(db_int(f->path, "SELECT max(n) FROM block") <= STOR_BLOCK_CAP);
  assert_int_equal(db_int(f->path, "SELECT sum(n) FROM block"), SPAN + BACKLOG);
  p = query(f, "noise-01", PROTO_Q_LA, STOR_STEP_RAW, b0, b0 + HOUR_MS, &n);
  assert_int_equal(n, BACKLOG);
  for (int i = 0; i < BACKLOG; i++) {
    assert_int_equal(p[i].t_ms, b0 + i * 10LL);
    assert_true(p[i].mean == 40 + i % 30);
  }
  free(p);
  check_integrity(f);
}

/* One batch of resends and late readings for many series, some into
 * blocks and some into tail packs that share their time windows with
 * other series' packs: each reading is still stored once, the first value
 * kept, and the counts say so. (The tail check reads each window once for
 * the whole batch.) */
static void a_batch_of_resends_for_many_series_stores_each_reading_once(void **state) {
  fx_t *f = *state;
  open_db(f);
  enum { DEVICES = 150, EACH = 60, COMPACTED = 20, GAP = 7 }; /* 9,000: one queue */
  uint32_t ids[DEVICES];
  char name[32];
  for (int k = 0; k < DEVICES; k++) {
    snprintf(name, sizeof(name), "dust-%03d", k);
    ids[k] = dev(f, name);
  }
  /* Ten minutes ago: the compactor leaves rows this young in the tail
   * until asked (stor__test_compact). */
  int64_t t0 = ((int64_t)time(NULL) - 600) * 1000;
#define AT(i, k) (t0 + (i)*1000LL + (k))
  /* The first 20 s of every series in blocks, the rest in packs of one
   * commit each 10 s, every 7th reading left out. */
  for (int i = 0; i < EACH; i++) {
    for (int k = 0; k < DEVICES; k++)
      if (i < COMPACTED || i % GAP != 0)
        append1(f, rd(ids[k], PROTO_Q_PM10, AT(i, k), 10 + i));
    if (i == COMPACTED - 1) {
      assert_int_equal(stor_flush(f->db), 0);
      assert_true(stor__test_compact(f->db) >= 0);
      assert_int_equal(db_int(f->path, "SELECT count(*) FROM tail"), 0);
      assert_int_equal(db_int(f->path, "SELECT count(*) FROM block"), DEVICES);
    } else if (i % 10 == 9) {
      assert_int_equal(stor_flush(f->db), 0);
    }
  }
  assert_int_equal(stor_flush(f->db), 0);
  assert_int_equal(db_int(f->path, "SELECT count(*) FROM block"), DEVICES);
  assert_true(db_int(f->path, "SELECT count(*) FROM tail") >= 4 * DEVICES);
  stor_stats_t st;
  stor_get_stats(f->db, &st);
  uint64_t committed = st.committed, dups = st.duplicates;
  /* Everything again but the tail packs' first readings (so a pack must
   * be found by a reading inside it), newest first, with other values:
   * the gaps are late readings, the rest resends. Queued whole (the
   * writer held: it may be compacting meanwhile), then committed in
   * batches of 5,000. */
  int gaps = 0, resent = 0;
  stor__test_hold(f->db, true);
  for (int i = EACH - 1; i >= 0; i--) {
    if (i >= COMPACTED && i % 10 == 0)
      continue;
    bool late = i >= COMPACTED && i % GAP == 0;
    gaps += late;
    resent += !late;
    for (int k = 0; k < DEVICES; k++)
      append1(f, rd(ids[k], PROTO_Q_PM10, AT(i, k), 500 + i));
  }
  stor__test_hold(f->db, false);
  assert_int_equal(stor_flush(f->db), 0);
  stor_get_stats(f->db, &st);
  assert_int_equal(st.committed - committed, (uint64_t)gaps * DEVICES);
  assert_int_equal(st.duplicates - dups, (uint64_t)resent * DEVICES);
  for (int k = 0; k < DEVICES; k += 37) {
    snprintf(name, sizeof(name), "dust-%03d", k);
    size_t n = 0;
    stor_point_t *p = query(f, name, PROTO_Q_PM10, STOR_STEP_RAW, t0, t0 + HOUR_MS, &n);
    assert_int_equal(n, EACH);
    for (int i = 0; i < EACH; i++) {
      assert_int_equal(p[i].t_ms, AT(i, k));
      bool late = i >= COMPACTED && i % GAP == 0;
      assert_true(p[i].mean == (late ? 500 + i : 10 + i));
    }
    free(p);
  }
#undef AT
  assert_int_equal(db_int(f->path, "SELECT value FROM counter WHERE name = 'raw_rows'"),
                   EACH * DEVICES);
}

/* Blocks are at most STOR_BLOCK_MAX readings; a series' blocks never
 * overlap, and many series compacted in one step each read back whole. */
/* Series ids far beyond a step's packs (a site that once had very many
 * series): the step orders its packs by comparison instead of counting
 * (compact.c, order_by_series), and every reading is read back, each
 * series' ascending. */
static void compaction_orders_the_packs_of_far_series_ids_too(void **state) {
  fx_t *f = *state;
  open_db(f);
  uint32_t low = dev(f, "noise-01");
  dev(f, "noise-02");
  close_db(f);
  char sql[160];
  snprintf(sql, sizeof(sql),
           "INSERT INTO series(id, device, quantity) SELECT CASE name WHEN 'noise-01' THEN 1"
           " ELSE 1000000 END, id, %d FROM device WHERE name IN ('noise-01', 'noise-02')",
           PROTO_Q_LA);
  db_exec(f->path, sql);
  open_db(f);
  uint32_t far = dev(f, "noise-02");
  enum { EACH = 300 };
  for (int i = 0; i < EACH; i++) { /* interleaved, in packs of 1 to 3 */
    stor_reading_t r[2] = {rd(low, PROTO_Q_LA, T0 + i * 1000LL, 40 + i % 7),
                           rd(far, PROTO_Q_LA, T0 + i * 1000LL + 1, 50 + i % 5)};
    assert_int_equal(stor_append(f->db, r, 2), 0);
    if (i % 3 == 2)
      wait_committed(f, (uint64_t)(i + 1) * 2);
  }
  assert_int_equal(stor_flush(f->db), 0);
  assert_true(stor__test_compact(f->db) >= 0);
  assert_int_equal(db_int(f->path, "SELECT count(*) FROM tail"), 0);
  assert_int_equal(db_int(f->path, "SELECT min(series) || max(series) FROM block"), 11000000);
  static const char *const names[] = {"noise-01", "noise-02"};
  for (int k = 0; k < 2; k++) {
    size_t n = 0;
    stor_point_t *p = query(f, names[k], PROTO_Q_LA, STOR_STEP_RAW, T0, T0 + DAY_MS, &n);
    assert_int_equal(n, EACH);
    for (int i = 0; i < EACH; i++) {
      assert_int_equal(p[i].t_ms, T0 + i * 1000LL + k);
      assert_true(p[i].mean == (k ? 50 + i % 5 : 40 + i % 7));
    }
    free(p);
  }
}

static void compaction_of_many_series_reads_back_every_reading(void **state) {
  fx_t *f = *state;
  open_db(f);
  enum { DEVICES = 50, EACH = 400 };
  uint32_t ids[DEVICES];
  char name[32];
  for (int k = 0; k < DEVICES; k++) {
    snprintf(name, sizeof(name), "noise-%02d", k);
    ids[k] = dev(f, name);
  }
  for (int i = 0; i < EACH; i++) { /* interleaved, as they arrive */
    for (int k = 0; k < DEVICES; k++)
      append1(f, rd(ids[k], PROTO_Q_LA, T0 + i * 1000LL + k, 40 + (i * 7 + k) % 300 / 10.0));
    if (i % 100 == 99)
      wait_committed(f, (uint64_t)(i + 1) * DEVICES);
  }
  assert_int_equal(stor_flush(f->db), 0);
  /* The writer compacts them as they come (they are old), the rest now. */
  assert_true(stor__test_compact(f->db) >= 0);
  assert_int_equal(db_int(f->path, "SELECT count(*) FROM tail"), 0);
  for (int k = 0; k < DEVICES; k++) {
    snprintf(name, sizeof(name), "noise-%02d", k);
    size_t n = 0;
    stor_point_t *p = query(f, name, PROTO_Q_LA, STOR_STEP_RAW, T0, T0 + DAY_MS, &n);
    assert_int_equal(n, EACH);
    for (int i = 0; i < EACH; i++) {
      assert_int_equal(p[i].t_ms, T0 + i * 1000LL + k);
      assert_true(p[i].mean == 40 + (i * 7 + k) % 300 / 10.0);
    }
    free(p);
    /* With a limit: the first readings. */
    p = NULL;
    assert_int_equal(
        stor_query(reader(f), name, PROTO_Q_LA, STOR_STEP_RAW, T0 + 10000, T0 + DAY_MS, 5, &p, &n),
        0);
    assert_int_equal(n, 5);
    assert_int_equal(p[0].t_ms, T0 + 10000 + k);
    free(p);
  }
  assert_int_equal(db_int(f->path, "SELECT count(*) FROM block"), DEVICES);
}

/* ---- free pages (db.c): a compaction step frees the tail pages of its
 * rows; a free list that is a large share of the file goes back */

/* Waits until PRAGMA freelist_count is below `below` (10 s at most). */
static void wait_freelist_below(fx_t *f, int64_t below) {
  for (int waited = 0; db_int(f->path, "PRAGMA freelist_count") >= below && waited < 10000;
       waited++)
    sleep_ms(1);
  int64_t left = db_int(f->path, "PRAGMA freelist_count");
  if (left >= below)
    fail_msg("the free list still holds %lld pages, want fewer than %lld", (long long)left,
             (long long)below);
}

/* `n` devices named dev-K, registered together, into ids[]. */
static void many_devices(fx_t *f, uint32_t *ids, int n) {
  char(*names)[16] = calloc((size_t)n, sizeof(*names));
  const char **ptrs = calloc((size_t)n, sizeof(*ptrs));
  assert_true(names && ptrs);
  for (int k = 0; k < n; k++) {
    snprintf(names[k], sizeof(names[k]), "dev-%d", k);
    ptrs[k] = names[k];
  }
  assert_int_equal(stor_device_ids(f->db, ptrs, (size_t)n, ids), 0);
  free(names);
  free(ptrs);
}

/* A new file gives free pages back (auto_vacuum = INCREMENTAL): once a
 * compaction step has freed a tail's pages and they are a large share of
 * the file, the writer gives them back while nothing is queued, and every
 * reading reads back. */
static void free_pages_go_back_when_the_writer_is_idle(void **state) {
  fx_t *f = *state;
  open_db(f);
  assert_int_equal(db_int(f->path, "PRAGMA auto_vacuum"), 2);
  stor__test_vacuum_min(f->db, INT64_MAX); /* none given back until below */
  enum { DEVICES = 500, EACH = 40 };
  uint32_t ids[DEVICES];
  many_devices(f, ids, DEVICES);
  for (int i = 0; i < EACH; i++) { /* a commit each: tail rows of one reading */
    stor_reading_t r[DEVICES];
    for (int k = 0; k < DEVICES; k++)
      r[k] = rd(ids[k], PROTO_Q_PM10, T0 + i * 1000LL + k, (i * 7 + k) % 300 / 10.0);
    assert_int_equal(stor_append(f->db, r, DEVICES), 0);
    wait_committed(f, (uint64_t)(i + 1) * DEVICES);
  }
  assert_true(stor__test_compact(f->db) >= 0);
  int64_t pages = db_int(f->path, "PRAGMA page_count");
  int64_t freed = db_int(f->path, "PRAGMA freelist_count");
  assert_true(freed >= 64 && freed * STOR_VACUUM_SHARE >= pages);

  stor__test_vacuum_min(f->db, 64);
  wait_freelist_below(f, 64);
  int64_t left = db_int(f->path, "PRAGMA freelist_count");
  assert_true(db_int(f->path, "PRAGMA page_count") <= pages - (freed - left));
  check_integrity(f);
  for (int k = 0; k < DEVICES; k += 99) {
    char name[16];
    snprintf(name, sizeof(name), "dev-%d", k);
    size_t n = 0;
    stor_point_t *p = query(f, name, PROTO_Q_PM10, STOR_STEP_RAW, 0, INT64_MAX, &n);
    assert_int_equal(n, EACH);
    for (int i = 0; i < EACH; i++)
      assert_true(p[i].t_ms == T0 + i * 1000LL + k && p[i].mean == (i * 7 + k) % 300 / 10.0);
    free(p);
  }
  close_db(f);
  assert_int_equal(db_int(f->path, "SELECT sum(n) FROM block"), DEVICES * EACH);
}

/* A brief step (the writer's, with a batch waiting) takes about
 * STOR_COMPACT_ROWS readings, as many as make a step due, so it holds
 * commits up for less time; a step with nothing waiting takes as many as
 * fit in STOR_COMPACT_BYTES, here the whole tail. */
static void a_brief_step_takes_only_the_readings_that_make_a_step_due(void **state) {
  fx_t *f = *state;
  open_db(f);
  stor__test_roll_ms(f->db, 3600 * 1000); /* pending: the writer leaves them */
  uint32_t d = dev(f, "dust-01");
  enum { N = STOR_COMPACT_ROWS + 20000, PART = 5000 };
  static stor_reading_t r[PART];
  /* 10 ms apart (packs of STOR_PACK_MAX), ending a minute ago. */
  const int64_t t0 = ((int64_t)time(NULL) - 60) * 1000 - N * 10LL;
  for (int from = 0; from < N; from += PART) {
    size_t n = 0;
    for (int i = from; i < N && i < from + PART; i++)
      r[n++] = rd(d, PROTO_Q_PM10, t0 + i * 10LL, i % 90);
    assert_int_equal(stor_append(f->db, r, n), 0);
    wait_committed(f, (uint64_t)from + n); /* not stor_flush: it rolls up */
  }
  assert_int_equal(db_int(f->path, "SELECT sum(n) FROM tail"), N);
  assert_true(stor__test_step(f->db, true) > 0);
  int64_t left = db_int(f->path, "SELECT sum(n) FROM tail");
  assert_true(left > N - STOR_COMPACT_ROWS - STOR_PACK_MAX);
  assert_true(left <= N - STOR_COMPACT_ROWS);
  assert_int_equal(db_int(f->path, "SELECT sum(n) FROM block"), N - left);
  assert_true(stor__test_step(f->db, false) > 0);
  assert_int_equal(db_int(f->path, "SELECT count(*) FROM tail"), 0);
  assert_int_equal(db_int(f->path, "SELECT sum(n) FROM block"), N);
  size_t n = 0;
  stor_point_t *p = query(f, "dust-01", PROTO_Q_PM10, STOR_STEP_RAW, t0, t0 + N * 10LL, &n);
  assert_int_equal(n, N);
  for (int i = 0; i < N; i++) {
    assert_int_equal(p[i].t_ms, t0 + i * 10LL);
    assert_true(p[i].mean == i % 90);
  }
  free(p);
  check_integrity(f);
}

/* At close, a tail a compaction step long (due for one anyway) is
 * compacted, its pending rollups written first, and the pages it took are
 * given back: the file holds no free page. A shorter tail stays. */
static void close_compacts_a_tail_a_step_long_and_gives_its_pages_back(void **state) {
  fx_t *f = *state;
  stor_options_t o = defaults(f);
  o.queue_max = 200000;
  open_with(f, &o);
  stor__test_vacuum_min(f->db, 64);
  enum { DEVICES = 1000, EACH = STOR_COMPACT_ROWS / DEVICES + 1 };
  uint32_t *ids = calloc(DEVICES, sizeof(*ids));
  assert_non_null(ids);
  many_devices(f, ids, DEVICES);
  /* The last minutes: too young for the age trigger; not rolled up yet,
   * so the writer cannot compact them before close. */
  const int64_t t0 = (int64_t)(sg_now() - EACH - 60) * 1000;
  for (int i = 0; i < EACH; i++) {
    stor_reading_t r[DEVICES];
    for (int k = 0; k < DEVICES; k++)
      r[k] = rd(ids[k], PROTO_Q_PM10, t0 + i * 1000LL, (i + k) % 50);
    assert_int_equal(stor_append(f->db, r, DEVICES), 0);
    if (i % 10 == 9)
      wait_committed(f, (uint64_t)(i + 1) * DEVICES);
  }
  wait_committed(f, (uint64_t)EACH * DEVICES);
  assert_int_equal(db_int(f->path, "SELECT sum(n) FROM tail"), EACH * DEVICES);
  assert_int_equal(db_int(f->path, "SELECT count(*) FROM latest"), 0);
  close_db(f);

  assert_true(db_int(f->path, "SELECT coalesce(sum(n), 0) FROM tail") < STOR_COMPACT_ROWS);
  assert_int_equal(db_int(f->path, "SELECT coalesce(sum(n), 0) FROM tail") +
                       db_int(f->path, "SELECT sum(n) FROM block"),
                   EACH * DEVICES);
  assert_int_equal(db_int(f->path, "SELECT count(*) FROM latest"), DEVICES);
  assert_int_equal(db_int(f->path, "PRAGMA freelist_count"), 0);
  check_integrity(f);
  assert_int_equal(count_raw(f, "dev-0", PROTO_Q_PM10), EACH);
  assert_int_equal(count_raw(f, "dev-999", PROTO_Q_PM10), EACH);
  free(ids);
}

/* At close the free list goes back whatever its share of the file (while
 * the writer runs, only once it is a quarter of it): here the writer
 * compacts old readings on its own and frees their tail pages, in a file
 * that devices with long names make large. */
static void close_gives_free_pages_back_whatever_their_share(void **state) {
  fx_t *f = *state;
  open_db(f);
  stor__test_vacuum_min(f->db, INT64_MAX);
  enum { DEVICES = 2000, OLD = 40, BALLAST = 10000 };
  uint32_t ids[DEVICES];
  many_devices(f, ids, DEVICES);
  {
    char(*names)[201] = calloc(BALLAST, sizeof(*names));
    const char **ptrs = calloc(BALLAST, sizeof(*ptrs));
    uint32_t *bids = calloc(BALLAST, sizeof(*bids));
    assert_true(names && ptrs && bids);
    for (int k = 0; k < BALLAST; k++) {
      snprintf(names[k], sizeof(names[k]), "%0200d", k);
      ptrs[k] = names[k];
    }
    assert_int_equal(stor_device_ids(f->db, ptrs, BALLAST, bids), 0);
    free(names);
    free(ptrs);
    free(bids);
  }
  stor_reading_t r[DEVICES];
  for (int i = 0; i < OLD; i++) { /* a commit each: tail rows of one reading */
    for (int k = 0; k < DEVICES; k++)
      r[k] = rd(ids[k], PROTO_Q_PM10, T0 + i * 1000LL, k % 100);
    assert_int_equal(stor_append(f->db, r, DEVICES), 0);
    wait_committed(f, (uint64_t)(i + 1) * DEVICES);
  }
  assert_int_equal(stor_flush(f->db), 0); /* rolled up: the writer compacts them (old) */
  for (int waited = 0; db_int(f->path, "SELECT count(*) FROM tail") > 0; waited++) {
    if (waited >= 10000)
      fail_msg("the writer did not compact the old readings");
    sleep_ms(1);
  }
  int64_t pages = db_int(f->path, "PRAGMA page_count");
  int64_t freed = db_int(f->path, "PRAGMA freelist_count");
  assert_true(freed >= 64 && freed * STOR_VACUUM_SHARE < pages);
  stor__test_vacuum_min(f->db, 64);
  close_db(f);
  assert_int_equal(db_int(f->path, "PRAGMA freelist_count"), 0);
  assert_true(db_int(f->path, "PRAGMA page_count") <= pages - freed);
  assert_int_equal(db_int(f->path, "SELECT sum(n) FROM block"), OLD * DEVICES);
  check_integrity(f);
}

static void retention_deletes_old_raw_rows_and_keeps_rollups(void **state) {
  fx_t *f = *state;
  stor_options_t o = defaults(f);
  o.raw_days = 31;
  open_with(f, &o);
  uint32_t d = dev(f, "dust-01");
  const int64_t now = (int64_t)(sg_now() / 60) * 60 * 1000;
  const int64_t old = now - 40 * DAY_MS, ancient = now - 401 * DAY_MS, recent = now - DAY_MS;
  /* More old rows than one retention transaction deletes. */
  enum { OLD = STOR_RETENTION_CHUNK + 904 };
  stor_reading_t r[100];
  for (int i = 0; i < OLD; i += 100) {
    for (int j = 0; j < 100; j++)
      r[j] = rd(d, PROTO_Q_PM10, old + (int64_t)(i + j) * 1000, 1);
    assert_int_equal(stor_append(f->db, r, 100), 0);
    assert_int_equal(stor_flush(f->db), 0);
  }
  append1(f, rd(d, PROTO_Q_PM10, ancient, 7));
  append1(f, rd(d, PROTO_Q_PM10, recent, 2));
  append1(f, rd(d, PROTO_Q_PM10, recent + 1000, 3));
  assert_int_equal(stor_flush(f->db), 0);
  assert_int_equal(count_raw(f, "dust-01", PROTO_Q_PM10), OLD + 3);

  assert_int_equal(stor_retention_run(f->db, now), OLD + 1);
  size_t n = 0;
  stor_point_t *p = query(f, "dust-01", PROTO_Q_PM10, STOR_STEP_RAW, 0, INT64_MAX, &n);
  assert_int_equal(n, 2);
  assert_int_equal(p[0].t_ms, recent);
  free(p);
  int64_t rows = 0;
  assert_int_equal(stor_reader_counts(reader(f), &rows, NULL), 0);
  assert_int_equal(rows, 2);

  /* Minute rollups stay 400 days: the 40-day-old ones are all there, the
   * 401-day-old one is gone; hours and days stay. */
  p = query(f, "dust-01", PROTO_Q_PM10, STOR_STEP_1M, 0, INT64_MAX, &n);
  uint32_t old_minutes = 0;
  for (size_t i = 0; i < n; i++) {
    assert_true(p[i].t_ms > ancient);
    old_minutes += p[i].t_ms < recent ? p[i].n : 0;
  }
  assert_int_equal(old_minutes, OLD);
  free(p);
  p = query(f, "dust-01", PROTO_Q_PM10, STOR_STEP_1H, 0, INT64_MAX, &n);
  assert_true(n >= 3);
  assert_int_equal(p[0].t_ms, ancient / HOUR_MS * HOUR_MS);
  free(p);
  p = query(f, "dust-01", PROTO_Q_PM10, STOR_STEP_1D, 0, INT64_MAX, &n);
  assert_true(n >= 3);
  check_point(&p[0], ancient / DAY_MS * DAY_MS, 1, 7, 7, 7);
  free(p);

  assert_int_equal(stor_retention_run(f->db, now), 0); /* nothing left to do */
}

/* Minute rollups are keyed (t, series) (schema 13): retention deletes the
 * oldest of every series together, in transactions of at most
 * STOR_RETENTION_CHUNK rows, and a bound between two rows of one minute
 * (one series' row deleted, the next series' kept) loses none and keeps
 * none too many. */
static void retention_deletes_old_minutes_of_every_series_in_chunks(void **state) {
  fx_t *f = *state;
  stor_options_t o = defaults(f);
  o.raw_days = 31;
  open_with(f, &o);
  static const char *const names[] = {"dust-01", "dust-02", "noise-01"};
  const int64_t now = (int64_t)(sg_now() / 60) * 60 * 1000;
  const int64_t ancient = now - 420 * DAY_MS, kept = now - 399 * DAY_MS;
  enum { MINUTES = 1999 }; /* 3 x 1999 rows: two chunks, the bound inside a minute */
  stor_reading_t r[3];
  for (int i = 0; i < MINUTES; i++) {
    for (int k = 0; k < 3; k++)
      r[k] = rd(dev(f, names[k]), k == 2 ? PROTO_Q_LA : PROTO_Q_PM10, ancient + i * 60000LL, i);
    assert_int_equal(stor_append(f->db, r, 3), 0);
  }
  for (int k = 0; k < 3; k++)
    append1(f, rd(dev(f, names[k]), k == 2 ? PROTO_Q_LA : PROTO_Q_PM10, kept, 5));
  assert_int_equal(stor_flush(f->db), 0);
  assert_int_equal(db_int(f->path, "SELECT count(*) FROM roll_1m"), 3 * MINUTES + 3);
  assert_true(3 * MINUTES > STOR_RETENTION_CHUNK && STOR_RETENTION_CHUNK % 3 != 0);

  /* Every raw reading is older than raw_days. */
  assert_int_equal(stor_retention_run(f->db, now), 3 * MINUTES + 3);
  assert_int_equal(db_int(f->path, "SELECT count(*) FROM roll_1m"), 3);
  for (int k = 0; k < 3; k++) {
    size_t n = 0;
    stor_point_t *p =
        query(f, names[k], k == 2 ? PROTO_Q_LA : PROTO_Q_PM10, STOR_STEP_1M, 0, INT64_MAX, &n);
    assert_int_equal(n, 1);
    check_point(&p[0], kept, 1, 5, 5, 5);
    free(p);
    /* Hours stay. */
    p = query(f, names[k], k == 2 ? PROTO_Q_LA : PROTO_Q_PM10, STOR_STEP_1H, 0, INT64_MAX, &n);
    assert_int_equal(p[0].t_ms, ancient / HOUR_MS * HOUR_MS);
    free(p);
  }
}

static void retention_writes_pending_rollups_before_deleting_their_raw_rows(void **state) {
  fx_t *f = *state;
  stor_options_t o = defaults(f);
  o.raw_days = 31;
  open_with(f, &o);
  stor__test_roll_ms(f->db, 3600 * 1000);
  uint32_t d = dev(f, "dust-01");
  const int64_t now = (int64_t)(sg_now() / 60) * 60 * 1000, old = now - 40 * DAY_MS;
  stor_reading_t r[100];
  for (int i = 0; i < 100; i++)
    r[i] = rd(d, PROTO_Q_PM10, old + i * 1000, i);
  assert_int_equal(stor_append(f->db, r, 100), 0);
  wait_committed(f, 100);
  /* Pending: not in roll_1m yet, but readers add them from the tail. */
  assert_int_equal(db_int(f->path, "SELECT count(*) FROM roll_1m"), 0);
  assert_int_equal(sum_n(f, "dust-01", PROTO_Q_PM10, STOR_STEP_1M), 100);
  assert_int_equal(stor_retention_run(f->db, now), 100);
  assert_int_equal(count_raw(f, "dust-01", PROTO_Q_PM10), 0);
  const stor_step_t steps[] = {STOR_STEP_1M, STOR_STEP_1H, STOR_STEP_1D};
  for (size_t k = 0; k < 3; k++)
    assert_int_equal(sum_n(f, "dust-01", PROTO_Q_PM10, steps[k]), 100);
}

/* ---- failures */

static void disk_full_refuses_appends_keeps_accepted_readings_and_resumes(void **state) {
  fx_t *f = *state;
  open_db(f);
  uint32_t ids[4];
  for (int i = 0; i < 4; i++) {
    char name[32];
    snprintf(name, sizeof(name), "dust-%02d", i);
    ids[i] = dev(f, name);
  }
  close_db(f);
  int64_t bytes = 0;
  assert_int_equal(stor_reader_open(f->path, &f->rd), 0);
  assert_int_equal(stor_reader_counts(f->rd, NULL, &bytes), 0);
  stor_reader_close(f->rd);
  f->rd = NULL;

  stor_options_t o = defaults(f);
  o.max_page_count = bytes / STOR_PAGE_SIZE + 40;
  open_with(f, &o);
  log_threshold = 0; /* the failure is expected; keep the output readable */
  int64_t accepted = 0, t = T0;
  int rc = 0;
  while (accepted < 1000000) {
    stor_reading_t r[10];
    for (int j = 0; j < 10; j++, t += 1000)
      r[j] = rd(ids[j % 4], PROTO_Q_PM10, t, 50.5 + j);
    if ((rc = stor_append(f->db, r, 10)) != 0)
      break;
    accepted += 10;
    stor_flush(f->db); /* -ENOSPC once the commit fails; the readings stay queued */
  }
  assert_int_equal(rc, -ENOSPC);
  stor_stats_t st = stats(f);
  assert_true(st.disk_full);
  assert_true(st.queued > 0);

  /* Room again: the writer's next retry (within a second) commits
   * everything by itself. */
  assert_true(stor__test_set_max_page_count(f->db, 1000000) >= 1000000);
  for (int waited = 0; (stats(f).disk_full || stats(f).queued) && waited < 10000; waited += 20)
    sleep_ms(20);
  st = stats(f);
  assert_false(st.disk_full);
  assert_int_equal(st.queued, 0);
  stor_reading_t more = rd(ids[0], PROTO_Q_PM10, t, 1);
  assert_int_equal(stor_append(f->db, &more, 1), 0);
  assert_int_equal(stor_flush(f->db), 0);
  log_threshold = LOG_LVL_INFO;

  size_t total = 0;
  for (int i = 0; i < 4; i++) {
    char name[32];
    snprintf(name, sizeof(name), "dust-%02d", i);
    total += count_raw(f, name, PROTO_Q_PM10);
  }
  assert_int_equal(total, accepted + 1);
  int64_t rows = 0;
  assert_int_equal(stor_reader_counts(reader(f), &rows, NULL), 0);
  assert_int_equal(rows, accepted + 1);
  assert_int_equal(stats(f).committed, accepted + 1);
  /* Rollups too: what was pending when commits began to fail was read
   * back from raw and written once. */
  const stor_step_t steps[] = {STOR_STEP_1M, STOR_STEP_1H, STOR_STEP_1D};
  for (size_t k = 0; k < 3; k++) {
    uint32_t rolled = 0;
    for (int i = 0; i < 4; i++) {
      char name[32];
      snprintf(name, sizeof(name), "dust-%02d", i);
      rolled += sum_n(f, name, PROTO_Q_PM10, steps[k]);
    }
    assert_int_equal(rolled, accepted + 1);
  }
}

static void close_commits_everything_queued(void **state) {
  fx_t *f = *state;
  stor_options_t o = defaults(f);
  o.batch_ms = 60000;
  open_with(f, &o);
  uint32_t d = dev(f, "dust-01");
  stor__test_hold(f->db, true); /* nothing commits before the close */
  for (int i = 0; i < 100; i++)
    append1(f, rd(d, PROTO_Q_PM10, T0 + i * 1000, i));
  assert_int_equal(stats(f).committed, 0);
  close_db(f);
  /* The close folded the WAL into the file: one self-contained file. */
  char wal[128];
  snprintf(wal, sizeof(wal), "%s-wal", f->path);
  assert_int_not_equal(access(wal, F_OK), 0);
  assert_int_equal(count_raw(f, "dust-01", PROTO_Q_PM10), 100);
  assert_int_equal(sum_n(f, "dust-01", PROTO_Q_PM10, STOR_STEP_1M), 100); /* rollups too */
}

/* user_version is the big-endian 32-bit integer at offset 60 of the
 * database header (SQLite file format, section 1.3). */
static int file_user_version(const char *path, int set) {
  FILE *fp = fopen(path, set >= 0 ? "r+b" : "rb");
  unsigned char b[4] = {0};
  assert_non_null(fp);
  assert_int_equal(fseek(fp, 60, SEEK_SET), 0);
  if (set >= 0) {
    b[0] = (unsigned char)(set >> 24), b[1] = (unsigned char)(set >> 16);
    b[2] = (unsigned char)(set >> 8), b[3] = (unsigned char)set;
    assert_int_equal(fwrite(b, 1, 4, fp), 4);
  } else {
    assert_int_equal(fread(b, 1, 4, fp), 4);
  }
  fclose(fp);
  return (int)((uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3]);
}

static void reopening_keeps_data_device_ids_and_schema_version(void **state) {
  fx_t *f = *state;
  open_db(f);
  uint32_t a = dev(f, "dust-01"), b = dev(f, "noise-01");
  assert_int_equal(dev(f, "dust-01"), a);
  append1(f, rd(a, PROTO_Q_PM10, T0, 12.5));
  append1(f, rd(b, PROTO_Q_LA, T0, 55.5));
  close_db(f);
  assert_int_equal(file_user_version(f->path, -1), stor__schema_version());

  open_db(f);
  assert_int_equal(dev(f, "noise-01"), b);
  assert_int_equal(dev(f, "dust-01"), a);
  assert_true(dev(f, "weather-01") > b);
  /* The same readings again are resends of stored ones. */
  append1(f, rd(a, PROTO_Q_PM10, T0, 99));
  append1(f, rd(b, PROTO_Q_LA, T0 + 1000, 56.5));
  assert_int_equal(stor_flush(f->db), 0);
  assert_int_equal(stats(f).duplicates, 1);
  size_t n = 0;
  stor_point_t *p = query(f, "dust-01", PROTO_Q_PM10, STOR_STEP_RAW, 0, INT64_MAX, &n);
  assert_int_equal(n, 1);
  assert_true(p[0].mean == 12.5);
  free(p);
  assert_int_equal(count_raw(f, "noise-01", PROTO_Q_LA), 2);
  close_db(f);
  assert_int_equal(file_user_version(f->path, -1), stor__schema_version());
}

static void a_database_from_a_newer_version_is_refused(void **state) {
  fx_t *f = *state;
  open_db(f);
  close_db(f);
  file_user_version(f->path, stor__schema_version() + 1);
  log_threshold = 0;
  stor_options_t o = defaults(f);
  assert_int_equal(stor_open(&o, &f->db), -ENOTSUP);
  assert_null(f->db);
  assert_int_equal(stor_reader_open(f->path, &f->rd), -ENOTSUP);
  assert_null(f->rd);
  /* Nothing was changed on the way. */
  assert_int_equal(file_user_version(f->path, -1), stor__schema_version() + 1);
}

static void files_that_are_not_databases_or_cannot_be_opened_are_refused(void **state) {
  fx_t *f = *state;
  FILE *fp = fopen(f->path, "wb");
  assert_non_null(fp);
  for (int i = 0; i < 256; i++)
    fputs("not a database, ", fp);
  fclose(fp);
  log_threshold = 0;
  stor_options_t o = defaults(f);
  assert_int_equal(stor_open(&o, &f->db), -EIO);
  assert_null(f->db);
  char missing[160];
  snprintf(missing, sizeof(missing), "%s/no/such/dir/site.db", f->dir);
  o.path = missing;
  assert_int_equal(stor_open(&o, &f->db), -ENOENT);
  assert_int_equal(stor_reader_open(missing, &f->rd), -ENOENT);
}

/* ---- reading back */

static void query_on_an_unknown_device_returns_enoent(void **state) {
  fx_t *f = *state;
  open_db(f);
  uint32_t d = dev(f, "dust-01");
  append1(f, rd(d, PROTO_Q_PM10, T0, 1));
  assert_int_equal(stor_flush(f->db), 0);
  stor_point_t *p = (stor_point_t *)&p;
  size_t n = 99;
  assert_int_equal(
      stor_query(reader(f), "dust-99", PROTO_Q_PM10, STOR_STEP_RAW, 0, INT64_MAX, 10, &p, &n),
      -ENOENT);
  assert_null(p);
  assert_int_equal(n, 0);
  /* A known device without that quantity has no points, which is no error. */
  assert_int_equal(
      stor_query(reader(f), "dust-01", PROTO_Q_TSP, STOR_STEP_1M, 0, INT64_MAX, 10, &p, &n), 0);
  assert_null(p);
  assert_int_equal(n, 0);
}

typedef struct seen {
  int calls;
  char device[4][16];
  int quantity[4];
  int64_t t[4];
  double v[4];
  int stop_after;
} seen_t;

static int on_latest(void *arg, const char *device, int quantity, int64_t t_ms, double value) {
  seen_t *s = arg;
  if (s->calls < 4) {
    snprintf(s->device[s->calls], sizeof(s->device[0]), "%s", device);
    s->quantity[s->calls] = quantity;
    s->t[s->calls] = t_ms;
    s->v[s->calls] = value;
  }
  s->calls++;
  return s->stop_after && s->calls >= s->stop_after;
}

static void latest_gives_the_newest_reading_of_each_series(void **state) {
  fx_t *f = *state;
  open_db(f);
  uint32_t n1 = dev(f, "noise-01"), d1 = dev(f, "dust-01");
  append1(f, rd(n1, PROTO_Q_LA, T0 + 2000, 62.5));
  append1(f, rd(d1, PROTO_Q_PM10, T0, 40));
  append1(f, rd(d1, PROTO_Q_TSP, T0, 80));
  assert_int_equal(stor_flush(f->db), 0);
  /* A late, older reading is stored but is not the latest. */
  append1(f, rd(n1, PROTO_Q_LA, T0 + 1000, 99));
  append1(f, rd(d1, PROTO_Q_PM10, T0 + 5000, 41));
  assert_int_equal(stor_flush(f->db), 0);

  seen_t s = {0};
  assert_int_equal(stor_latest(reader(f), on_latest, &s), 0);
  assert_int_equal(s.calls, 3);
  assert_string_equal(s.device[0], "dust-01"); /* by device, then quantity */
  assert_int_equal(s.quantity[0], PROTO_Q_TSP);
  assert_int_equal(s.quantity[1], PROTO_Q_PM10);
  assert_int_equal(s.t[1], T0 + 5000);
  assert_true(s.v[1] == 41);
  assert_string_equal(s.device[2], "noise-01");
  assert_int_equal(s.t[2], T0 + 2000);
  assert_true(s.v[2] == 62.5);

  seen_t stop = {.stop_after = 1};
  assert_int_equal(stor_latest(reader(f), on_latest, &stop), 0);
  assert_int_equal(stop.calls, 1);
}

static void reader_counts_give_stored_rows_and_file_bytes(void **state) {
  fx_t *f = *state;
  open_db(f);
  uint32_t d = dev(f, "dust-01");
  for (int i = 0; i < 250; i++)
    append1(f, rd(d, PROTO_Q_PM10, T0 + i * 1000, i / 10.0));
  assert_int_equal(stor_flush(f->db), 0);
  int64_t rows = -1, bytes = -1;
  assert_int_equal(stor_reader_counts(reader(f), &rows, &bytes), 0);
  assert_int_equal(rows, 250);
  assert_true(bytes > 0);
  assert_int_equal(bytes % STOR_PAGE_SIZE, 0);
}

/* ---- deferred rollups (batch.c): written late (compaction, retention,
 * stor_flush, STOR_ROLL_FLUSH_MS) or from raw after a crash, and read at
 * once: readers add the pending tail rows (reader.c) */

static void rollups_and_latest_are_read_at_the_commit_while_their_rows_are_pending(void **state) {
  fx_t *f = *state;
  open_db(f);
  uint32_t d = dev(f, "dust-01");
  uint32_t noise = dev(f, "noise-01");
  stor_reading_t r[] = {rd(d, PROTO_Q_PM10, T0, 10), rd(d, PROTO_Q_PM10, T0 + 1000, 20),
                        rd(noise, PROTO_Q_LA, T0, 60)};
  assert_int_equal(stor_append(f->db, r, 3), 0);
  wait_committed(f, 3);
  /* Nothing written to the rollup tables or latest yet ... */
  assert_int_equal(db_int(f->path, "SELECT count(*) FROM roll_1m"), 0);
  assert_int_equal(db_int(f->path, "SELECT count(*) FROM latest"), 0);
  /* ... and every reader sees them all the same. */
  size_t n = 0;
  stor_point_t *p = query(f, "dust-01", PROTO_Q_PM10, STOR_STEP_1M, 0, INT64_MAX, &n);
  assert_int_equal(n, 1);
  check_point(&p[0], T0, 2, 10, 20, 15);
  free(p);
  seen_t s = {0};
  assert_int_equal(stor_latest(reader(f), on_latest, &s), 0);
  assert_int_equal(s.calls, 2);
  assert_int_equal(s.t[0], T0 + 1000);
  assert_true(s.v[0] == 20);

  /* Written (stor_flush), then one more pending reading in the same
   * minute, hour and day: one point each, the table's row and the tail's
   * reading together. */
  assert_int_equal(stor_flush(f->db), 0);
  assert_int_equal(db_int(f->path, "SELECT sum(n) FROM roll_1m"), 3);
  stor_reading_t more[] = {rd(d, PROTO_Q_PM10, T0 + 2000, 60),
                           rd(noise, PROTO_Q_LA, T0 + 1000, 70)};
  assert_int_equal(stor_append(f->db, more, 2), 0);
  wait_committed(f, 5);
  const stor_step_t steps[] = {STOR_STEP_1M, STOR_STEP_1H, STOR_STEP_1D};
  for (size_t k = 0; k < 3; k++) {
    p = query(f, "dust-01", PROTO_Q_PM10, steps[k], 0, INT64_MAX, &n);
    assert_int_equal(n, 1);
    check_point(&p[0], k == 2 ? p[0].t_ms : T0, 3, 10, 60, 30);
    free(p);
    p = query(f, "noise-01", PROTO_Q_LA, steps[k], 0, INT64_MAX, &n);
    assert_int_equal(n, 1);
    check_point(&p[0], k == 2 ? p[0].t_ms : T0, 2, 60, 70, 10 * log10((1e6 + 1e7) / 2));
    free(p);
  }
  /* A range that starts after the bucket does not get the tail's part. */
  p = query(f, "dust-01", PROTO_Q_PM10, STOR_STEP_1M, T0 + 1, INT64_MAX, &n);
  assert_int_equal(n, 0);
  free(p);
  memset(&s, 0, sizeof(s));
  assert_int_equal(stor_latest(reader(f), on_latest, &s), 0);
  assert_int_equal(s.calls, 2);
  assert_int_equal(s.t[0], T0 + 2000);
  assert_true(s.v[0] == 60);
  assert_int_equal(s.t[1], T0 + 1000);
  /* Closing leaves them pending; the next open writes them, once. */
  close_db(f);
  assert_int_equal(db_int(f->path, "SELECT sum(n) FROM roll_1m"), 3);
  open_db(f);
  assert_int_equal(db_int(f->path, "SELECT sum(n) FROM roll_1m"), 5);
  p = query(f, "dust-01", PROTO_Q_PM10, STOR_STEP_1H, 0, INT64_MAX, &n);
  assert_int_equal(n, 1);
  check_point(&p[0], T0, 3, 10, 60, 30);
  free(p);
}

static void rollups_a_crash_left_unwritten_are_written_from_raw_at_open(void **state) {
  fx_t *f = *state;
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    /* The gateway until a kill -9: some readings rolled up, then more
     * committed (with a resend) whose rollups are still pending. */
    stor_options_t o = defaults(f);
    stor_db_t *db = NULL;
    uint32_t dust = 0, noise = 0;
    if (stor_open(&o, &db) != 0 || stor_device_id(db, "dust-01", &dust) != 0 ||
        stor_device_id(db, "noise-01", &noise) != 0)
      _exit(10);
    stor_reading_t first[] = {rd(dust, PROTO_Q_PM10, T0 + 5000, 10.5),
                              rd(noise, PROTO_Q_LA, T0, 60)};
    if (stor_append(db, first, 2) != 0 || stor_flush(db) != 0)
      _exit(11);
    stor__test_roll_ms(db, 3600 * 1000);
    stor_reading_t more[] = {
        rd(dust, PROTO_Q_PM10, T0 + 50000, 20), /* the minute, hour and day written above */
        rd(dust, PROTO_Q_PM10, T0 + 59 * MIN_MS + 59000, 30),
        rd(dust, PROTO_Q_PM10, T0 + HOUR_MS, 40),
        rd(dust, PROTO_Q_PM10, T0 + DAY_MS, 50),
        rd(dust, PROTO_Q_PM10, T0 + 5000, 99),   /* a resend */
        rd(dust, PROTO_Q_PM10, T0 + 1000, 30.5), /* late: rolled up at once */
        rd(noise, PROTO_Q_LA, T0 + 30000, 70),
        rd(noise, PROTO_Q_LA, T0 + MIN_MS, 50),
    };
    if (stor_append(db, more, sizeof(more) / sizeof(more[0])) != 0)
      _exit(12);
    stor_stats_t st = {0};
    for (int waited = 0; st.committed + st.duplicates < 10 && waited < 10000; waited++) {
      stor_get_stats(db, &st);
      sleep_ms(1);
    }
    _exit(st.committed == 9 && st.duplicates == 1 ? 0 : 13); /* no stor_close */
  }
  int status = 0;
  assert_int_equal(waitpid(pid, &status, 0), pid);
  assert_true(WIFEXITED(status));
  assert_int_equal(WEXITSTATUS(status), 0);

  /* What the crash left in the tables: every raw row, the rollups of the
   * first two readings and the late one, the latest values of the first
   * two. Readers add the pending rest from the tail. */
  assert_int_equal(count_raw(f, "dust-01", PROTO_Q_PM10), 6);
  assert_int_equal(count_raw(f, "noise-01", PROTO_Q_LA), 3);
  assert_int_equal(db_int(f->path, "SELECT sum(n) FROM roll_1m"), 3);
  assert_int_equal(db_int(f->path, "SELECT max(t) FROM latest"), T0 + 5000);
  assert_int_equal(sum_n(f, "dust-01", PROTO_Q_PM10, STOR_STEP_1M), 6);
  assert_int_equal(sum_n(f, "noise-01", PROTO_Q_LA, STOR_STEP_1D), 3);
  seen_t s = {0};
  assert_int_equal(stor_latest(reader(f), on_latest, &s), 0);
  assert_int_equal(s.t[0], T0 + DAY_MS);
  assert_int_equal(s.t[1], T0 + MIN_MS);

  /* Opening rolls the rest up from raw, once, before anything else. */
  open_db(f);
  for (int pass = 0; pass < 2; pass++) {
    size_t n = 0;
    stor_point_t *p = query(f, "dust-01", PROTO_Q_PM10, STOR_STEP_1M, 0, INT64_MAX, &n);
    assert_int_equal(n, 4);
    check_point(&p[0], T0, 3, 10.5, 30.5, 61.0 / 3);
    check_point(&p[1], T0 + 59 * MIN_MS, 1, 30, 30, 30);
    check_point(&p[2], T0 + HOUR_MS, 1, 40, 40, 40);
    check_point(&p[3], T0 + DAY_MS, 1, 50, 50, 50);
    free(p);
    p = query(f, "dust-01", PROTO_Q_PM10, STOR_STEP_1H, 0, INT64_MAX, &n);
    assert_int_equal(n, 3);
    check_point(&p[0], T0, 4, 10.5, 30.5, 91.0 / 4);
    free(p);
    p = query(f, "dust-01", PROTO_Q_PM10, STOR_STEP_1D, 0, INT64_MAX, &n);
    assert_int_equal(n, 2);
    check_point(&p[0], T0, 5, 10.5, 40, 131.0 / 5);
    check_point(&p[1], T0 + DAY_MS, 1, 50, 50, 50);
    free(p);
    p = query(f, "noise-01", PROTO_Q_LA, STOR_STEP_1M, 0, INT64_MAX, &n);
    assert_int_equal(n, 2);
    check_point(&p[0], T0, 2, 60, 70, 67.40);
    free(p);
    p = query(f, "noise-01", PROTO_Q_LA, STOR_STEP_1H, 0, INT64_MAX, &n);
    assert_int_equal(n, 1);
    check_point(&p[0], T0, 3, 50, 70, 10 * log10((1e6 + 1e7 + 1e5) / 3));
    free(p);
    seen_t l = {0};
    assert_int_equal(stor_latest(reader(f), on_latest, &l), 0);
    assert_int_equal(l.calls, 2);
    assert_int_equal(l.t[0], T0 + DAY_MS);
    assert_true(l.v[0] == 50);
    assert_int_equal(l.t[1], T0 + MIN_MS);
    int64_t rows = 0;
    assert_int_equal(stor_reader_counts(reader(f), &rows, NULL), 0);
    assert_int_equal(rows, 9);
    /* Opening wrote them: the tables alone hold them now, once. */
    assert_int_equal(db_int(f->path, "SELECT sum(n) FROM roll_1m"), 9);
    /* Opening again finds nothing pending and counts nothing twice. */
    close_db(f);
    open_db(f);
  }
}

/* Figures of one step's buckets computed straight from readings, the way
 * the writer once did for every reading. */
typedef struct want {
  int64_t t;
  uint32_t n;
  double min, max, sum, esum;
} want_t;

static int64_t local_midnight(int64_t s) {
  time_t tt = (time_t)s;
  struct tm tm;
  localtime_r(&tt, &tm);
  tm.tm_hour = tm.tm_min = tm.tm_sec = 0;
  tm.tm_isdst = -1;
  return (int64_t)mktime(&tm);
}

static void check_buckets(fx_t *f, const char *device, int q, const stor_reading_t *r, size_t nr) {
  bool level = proto_quantity_is_level(q);
  const stor_step_t steps[] = {STOR_STEP_1M, STOR_STEP_1H, STOR_STEP_1D};
  for (int k = 0; k < 3; k++) {
    want_t *w = calloc(nr, sizeof(*w));
    size_t nw = 0;
    assert_non_null(w);
    for (size_t i = 0; i < nr; i++) {
      int64_t s = r[i].t_ms / 1000;
      int64_t t = k == 0 ? s / 60 * 60 : k == 1 ? s / 3600 * 3600 : local_midnight(s);
      size_t j = 0;
      while (j < nw && w[j].t != t)
        j++;
      if (j == nw)
        w[nw++] = (want_t){.t = t, .min = r[i].value, .max = r[i].value};
      w[j].n++;
      w[j].min = fmin(w[j].min, r[i].value);
      w[j].max = fmax(w[j].max, r[i].value);
      w[j].sum += r[i].value;
      w[j].esum += pow(10.0, 0.1 * r[i].value);
    }
    size_t n = 0;
    stor_point_t *p = query(f, device, q, steps[k], 0, INT64_MAX, &n);
    assert_int_equal(n, nw); /* readings come in time order: so do buckets */
    for (size_t j = 0; j < nw; j++) {
      double mean = level ? 10 * log10(w[j].esum / w[j].n) : w[j].sum / w[j].n;
      if (p[j].t_ms != w[j].t * 1000 || p[j].n != w[j].n || p[j].min != w[j].min ||
          p[j].max != w[j].max || fabs(p[j].mean - mean) > 1e-9 * fabs(mean))
        print_error("%s step %d bucket %zu: t=%lld n=%u min=%g max=%g mean=%.12g; want t=%lld "
                    "n=%u min=%g max=%g mean=%.12g\n",
                    device, k, j, (long long)p[j].t_ms, p[j].n, p[j].min, p[j].max, p[j].mean,
                    (long long)w[j].t * 1000, w[j].n, w[j].min, w[j].max, mean);
      assert_int_equal(p[j].t_ms, w[j].t * 1000);
      assert_int_equal(p[j].n, w[j].n);
      assert_true(p[j].min == w[j].min && p[j].max == w[j].max);
      assert_true(fabs(p[j].mean - mean) <= 1e-9 * fabs(mean));
    }
    free(p);
    free(w);
  }
}

/* Four hours of readings every 7 s around a local midnight, for a level
 * (energy means) and a dust figure, arriving out of order in chunks: some
 * rolled up by stor_flush between chunks, some still pending when the next
 * chunk comes, one chunk late (older than what was rolled up, so rolled up
 * at once), resends among them. */
static void hours_and_days_summed_from_minutes_equal_those_from_readings(fx_t *f,
                                                                         int64_t midnight_s) {
  open_db(f);
  stor__test_roll_ms(f->db, 3600 * 1000);
  uint32_t noise = dev(f, "noise-01"), dust = dev(f, "dust-01");
  enum { N = 4 * 3600 / 7, CHUNKS = 8 };
  stor_reading_t *la = calloc(N, sizeof(*la)), *pm = calloc(N, sizeof(*pm));
  assert_non_null(la);
  assert_non_null(pm);
  unsigned seed = 7;
  for (int i = 0; i < N; i++) {
    int64_t t = (midnight_s - 2 * 3600) * 1000 + (int64_t)i * 7000 + 250;
    seed = seed * 1103515245 + 12345;
    la[i] = rd(noise, PROTO_Q_LA, t, 35 + (seed >> 16) % 600 / 10.0);
    pm[i] = rd(dust, PROTO_Q_PM10, t, (seed >> 8) % 10000 / 100.0);
  }
  const int order[CHUNKS] = {0, 1, 2, 4, 5, 3, 6, 7}; /* chunk 3 late */
  const bool flush_after[CHUNKS] = {true, false, true, true, false, false, true, false};
  uint64_t expect = 0;
  for (int c = 0; c < CHUNKS; c++) {
    int from = order[c] * N / CHUNKS, to = (order[c] + 1) * N / CHUNKS;
    stor_reading_t batch[2 * N / CHUNKS + 8];
    int k = 0;
    for (int i = from; i < to; i++) {
      batch[k++] = la[i];
      batch[k++] = pm[i];
    }
    for (int i = k - 1; i > 0; i--) { /* shuffled */
      seed = seed * 1103515245 + 12345;
      int j = (int)((seed >> 16) % (unsigned)(i + 1));
      stor_reading_t tmp = batch[i];
      batch[i] = batch[j];
      batch[j] = tmp;
    }
    if (c > 0) { /* resends of the chunk before, other values */
      int prev = order[c - 1] * N / CHUNKS;
      batch[k] = la[prev];
      batch[k++].value = 1;
      batch[k] = pm[prev + 3];
      batch[k++].value = 1;
    }
    assert_int_equal(stor_append(f->db, batch, (size_t)k), 0);
    expect += (uint64_t)(2 * (to - from));
    if (flush_after[c])
      assert_int_equal(stor_flush(f->db), 0);
    else
      wait_committed(f, expect);
  }
  assert_int_equal(stor_flush(f->db), 0);
  assert_int_equal(stats(f).duplicates, 2 * (CHUNKS - 1));
  check_buckets(f, "noise-01", PROTO_Q_LA, la, N);
  check_buckets(f, "dust-01", PROTO_Q_PM10, pm, N);
  free(la);
  free(pm);
}

static void hours_and_days_from_minutes_across_a_half_hour_zone_midnight(void **state) {
  setenv("TZ", "Asia/Kolkata", 1); /* UTC+5:30: hours straddle local days */
  tzset();
  hours_and_days_summed_from_minutes_equal_those_from_readings(*state, 1767292200); /* 2026-01-02 */
}

static void hours_and_days_from_minutes_when_a_midnight_cuts_a_minute(void **state) {
  setenv("TZ", "Africa/Monrovia", 1); /* UTC-0:44:30 until 1972 */
  tzset();
  hours_and_days_summed_from_minutes_equal_those_from_readings(*state, 44585070); /* 1971-06-01 */
}

/* ---- threads */

typedef struct producer {
  stor_db_t *db;
  uint32_t device;
  int count;
} producer_t;

static void *produce(void *arg) {
  producer_t *p = arg;
  stor_reading_t r[10];
  for (int i = 0; i < p->count; i += 10) {
    for (int j = 0; j < 10; j++)
      r[j] = rd(p->device, PROTO_Q_PM10, T0 + (int64_t)(i + j) * 1000, (i + j) % 500 / 10.0);
    int rc;
    while ((rc = stor_append(p->db, r, 10)) == -EAGAIN)
      sleep_ms(1);
    if (rc != 0)
      return (void *)1;
  }
  return NULL;
}

static void readings_appended_from_several_threads_are_all_stored(void **state) {
  fx_t *f = *state;
  stor_options_t o = defaults(f);
  o.queue_max = 1000; /* small, so that producers meet a full queue */
  open_with(f, &o);
  enum { THREADS = 4, EACH = 20000 };
  pthread_t th[THREADS];
  producer_t p[THREADS];
  for (int i = 0; i < THREADS; i++) {
    char name[32];
    snprintf(name, sizeof(name), "dust-%02d", i);
    p[i] = (producer_t){.db = f->db, .device = dev(f, name), .count = EACH};
    assert_int_equal(pthread_create(&th[i], NULL, produce, &p[i]), 0);
  }
  for (int i = 0; i < THREADS; i++) {
    void *ret = (void *)1;
    pthread_join(th[i], &ret);
    assert_null(ret);
  }
  assert_int_equal(stor_flush(f->db), 0);
  assert_int_equal(stats(f).committed, THREADS * EACH);
  for (int i = 0; i < THREADS; i++) {
    char name[32];
    snprintf(name, sizeof(name), "dust-%02d", i);
    assert_int_equal(count_raw(f, name, PROTO_Q_PM10), EACH);
  }
}

/* Appends rs[0..n) as one commit (the writer held meanwhile) and waits
 * until it has settled: committed or found to be duplicates. */
static void commit_one(fx_t *f, const stor_reading_t *rs, size_t n) {
  stor_stats_t before = stats(f);
  stor__test_hold(f->db, true);
  assert_int_equal(stor_append(f->db, rs, n), 0);
  stor__test_hold(f->db, false);
  for (int waited = 0; waited < 10000; waited++) {
    stor_stats_t now = stats(f);
    if (now.committed + now.duplicates >= before.committed + before.duplicates + n)
      return;
    sleep_ms(1);
  }
  fail_msg("a commit of %zu readings did not settle", n);
}

/* Packs (schema 10): one tail row per series per commit, worked out by
 * hand. Resends are found in a pack, in a late reading's own pack that
 * overlaps another in time, and in blocks; a commit's readings spanning
 * STOR_PACK_SPAN_MS or more are two packs. Times are recent, so that the
 * writer does not compact on its own. */
static void a_commit_stores_a_pack_per_series_and_resends_stay_single(void **state) {
  fx_t *f = *state;
  stor_options_t o = defaults(f);
  open_with(f, &o);
  stor__test_roll_ms(f->db, 3600 * 1000); /* pending: stor_latest reads the packs */
  const int64_t b = (int64_t)(sg_now() / 60) * 60 * 1000 - 600 * 1000;
  uint32_t d = dev(f, "dust-01"), e = dev(f, "dust-02");
  stor_reading_t r[16];
  /* 1: b+0..4 s of dust-01 and one reading of dust-02: two packs. */
  for (int i = 0; i < 5; i++)
    r[i] = rd(d, PROTO_Q_PM10, b + i * 1000, 10 + i);
  r[5] = rd(e, PROTO_Q_PM10, b, 99);
  commit_one(f, r, 6);
  assert_int_equal(db_int(f->path, "SELECT count(*) FROM tail"), 2);
  assert_int_equal(db_int(f->path, "SELECT sum(n) FROM tail"), 6);
  /* 2: b+5..9 s, and b+2 s again (a resend: in pack 1). */
  for (int i = 0; i < 5; i++)
    r[i] = rd(d, PROTO_Q_PM10, b + (5 + i) * 1000, 15 + i);
  r[5] = rd(d, PROTO_Q_PM10, b + 2000, 77);
  commit_one(f, r, 6);
  /* 3: b+7.5 s (late, between pack 2's readings), b+7 s (a resend, in
   * pack 2) and b+12 s (new): one pack of two at b+7.5 s. */
  r[0] = rd(d, PROTO_Q_PM10, b + 7500, 17.5);
  r[1] = rd(d, PROTO_Q_PM10, b + 7000, 77);
  r[2] = rd(d, PROTO_Q_PM10, b + 12000, 22);
  commit_one(f, r, 3);
  /* 4: b+7.5 s again (in pack 3, which overlaps pack 2) and b+20 s. */
  r[0] = rd(d, PROTO_Q_PM10, b + 7500, 77);
  r[1] = rd(d, PROTO_Q_PM10, b + 20000, 30);
  commit_one(f, r, 2);
  /* 5: b+30..40 s: 30..38 s lie within 8,192 ms of 30 s, 39 and 40 s
   * start a second pack. */
  for (int i = 0; i < 11; i++)
    r[i] = rd(d, PROTO_Q_PM10, b + (30 + i) * 1000, 40 + i);
  commit_one(f, r, 11);
  stor_stats_t st = stats(f);
  assert_int_equal(st.committed, 6 + 5 + 2 + 1 + 11);
  assert_int_equal(st.duplicates, 3);
  assert_int_equal(db_int(f->path, "SELECT count(*) FROM tail"), 7);
  assert_int_equal(db_int(f->path, "SELECT sum(n) FROM tail"), 25);
  char sql[512];
  snprintf(sql, sizeof(sql),
           "SELECT group_concat(at || ':' || n, ' ') FROM (SELECT t - %lld AS at, n FROM tail"
           " WHERE series = (SELECT s.id FROM series s JOIN device v ON v.id = s.device"
           " WHERE v.name = 'dust-01') ORDER BY t)",
           (long long)b);
  char *packs = db_text(f->path, sql);
  assert_string_equal(packs, "0:5 5000:5 7500:2 20000:1 30000:9 39000:2");
  free(packs);
  /* A pack of one is its value (hundredths), the others the codec's bytes. */
  packs = db_text(f->path, "SELECT group_concat(n || typeof(data), ' ') FROM"
                           " (SELECT n, data FROM tail ORDER BY t, series)");
  assert_string_equal(packs, "5blob 1integer 5blob 2blob 1integer 9blob 2blob");
  free(packs);

  /* What dust-01 reads: the first copy of each time, in time order. */
  const int64_t at_ms[] = {0,     1000,  2000,  3000,  4000,  5000,  6000,  7000,
                           7500,  8000,  9000,  12000, 20000, 30000, 31000, 32000,
                           33000, 34000, 35000, 36000, 37000, 38000, 39000, 40000};
  const double want_v[] = {10, 11, 12, 13, 14, 15, 16, 17, 17.5, 18, 19, 22,
                           30, 40, 41, 42, 43, 44, 45, 46, 47,   48, 49, 50};
  for (int round = 0; round < 2; round++) {
    size_t n = 0;
    stor_point_t *p = query(f, "dust-01", PROTO_Q_PM10, STOR_STEP_RAW, b, b + 60000, &n);
    assert_int_equal(n, 24);
    for (size_t i = 0; i < n; i++) {
      assert_int_equal(p[i].t_ms, b + at_ms[i]);
      assert_true(p[i].mean == want_v[i]);
    }
    free(p);
    /* Two overlapping packs give one reading each, in order. */
    p = query(f, "dust-01", PROTO_Q_PM10, STOR_STEP_RAW, b + 6500, b + 8000, &n);
    assert_int_equal(n, 2);
    assert_int_equal(p[0].t_ms, b + 7000);
    assert_int_equal(p[1].t_ms, b + 7500);
    free(p);
    assert_int_equal(sum_n(f, "dust-01", PROTO_Q_PM10, STOR_STEP_1M), 24);
    if (round == 0) {
      /* The newest reading is a pack's last, not its t. */
      seen_t seen = {0};
      assert_int_equal(stor_latest(reader(f), on_latest, &seen), 0);
      assert_int_equal(seen.calls, 2);
      assert_int_equal(seen.t[0], b + 40000);
      assert_true(seen.v[0] == 50);
      assert_int_equal(seen.t[1], b);
      assert_true(seen.v[1] == 99);
      assert_true(stor__test_compact(f->db) >= 0);
      assert_int_equal(db_int(f->path, "SELECT count(*) FROM tail"), 0);
      assert_int_equal(db_int(f->path, "SELECT sum(n) FROM block"), 25);
    }
  }
  /* Resends of compacted readings that were in overlapping packs and in
   * a commit's second pack, and one new reading. */
  r[0] = rd(d, PROTO_Q_PM10, b + 7500, 1);
  r[1] = rd(d, PROTO_Q_PM10, b + 39000, 1);
  r[2] = rd(d, PROTO_Q_PM10, b + 41000, 51);
  commit_one(f, r, 3);
  st = stats(f);
  assert_int_equal(st.duplicates, 5);
  assert_int_equal(count_raw(f, "dust-01", PROTO_Q_PM10), 25);
  assert_int_equal(db_int(f->path, "SELECT value FROM counter WHERE name = 'raw_rows'"), 26);
}

/* counter.pending_from, worked out by hand: every commit that stores
 * readings writes the oldest pending one (newer than its series'
 * latest.t), a commit of rollups alone leaves it, and readers scan the
 * tail from there: a quiet series' old pending reading is still found. */
/* Every query below of a device's quantity q, as one array of points, a
 * point with t_ms -1 after each query's answer (the caller frees it). */
static stor_point_t *answers(fx_t *f, const char *device, int q, size_t *n) {
  static const struct {
    stor_step_t step;
    int64_t since, until;
  } ask[] = {{STOR_STEP_RAW, 0, INT64_MAX},
             {STOR_STEP_RAW, T0 + 4000, T0 + 7000},
             {STOR_STEP_RAW, T0 + 99500, T0 + 130000},
             {STOR_STEP_1M, 0, INT64_MAX},
             {STOR_STEP_1H, T0, T0 + HOUR_MS},
             {STOR_STEP_1D, 0, INT64_MAX}};
  stor_point_t *all = NULL;
  *n = 0;
  for (size_t i = 0; i < sizeof(ask) / sizeof(ask[0]); i++) {
    size_t k = 0;
    stor_point_t *p = query(f, device, q, ask[i].step, ask[i].since, ask[i].until, &k);
    all = realloc(all, (*n + k + 1) * sizeof(*all));
    assert_non_null(all);
    if (k > 0)
      memcpy(all + *n, p, k * sizeof(*p));
    all[*n + k] = (stor_point_t){.t_ms = -1};
    *n += k + 1;
    free(p);
  }
  return all;
}

static void check_same_answers(fx_t *f, const char *device, int q, const stor_point_t *want,
                               size_t nw) {
  size_t n = 0;
  stor_point_t *got = answers(f, device, q, &n);
  if (n != nw)
    print_error("%s: %zu points within the hold, %zu without one\n", device, n, nw);
  assert_int_equal(n, nw);
  for (size_t i = 0; i < n; i++) {
    const stor_point_t *g = &got[i], *w = &want[i];
    if (g->t_ms != w->t_ms || g->n != w->n || g->min != w->min || g->max != w->max ||
        g->mean != w->mean)
      print_error("%s: point %zu within the hold t=%lld n=%u mean=%g, without one t=%lld n=%u "
                  "mean=%g\n",
                  device, i, (long long)g->t_ms, g->n, g->mean, (long long)w->t_ms, w->n, w->mean);
    assert_true(g->t_ms == w->t_ms && g->n == w->n && g->min == w->min && g->max == w->max &&
                g->mean == w->mean);
  }
  free(got);
}

/* stor_reader_hold: queries within a hold answer exactly as without one,
 * for held series (from the one read of the tail), for series the
 * max_samples bound leaves out and for series not asked for, raw and
 * rolled up, with readings in blocks, late readings in the tail and
 * rollups pending; and they keep the hold's snapshot while the writer
 * commits. */
static void queries_within_a_hold_answer_as_without_and_keep_its_snapshot(void **state) {
  fx_t *f = *state;
  open_db(f);
  uint32_t a = dev(f, "dust-a"), b = dev(f, "dust-b"), c = dev(f, "dust-c");
  /* a: 100 s compacted into a block with gaps, then late readings into the
   * gaps and newer ones, in the tail; b and c: tail packs only, a later
   * commit's packs starting before an earlier one's end. */
  for (int i = 0; i < 100; i++)
    if (i % 10 != 5)
      append1(f, rd(a, PROTO_Q_PM10, T0 + i * 1000LL, 10 + i));
  assert_int_equal(stor_flush(f->db), 0);
  assert_true(stor__test_compact(f->db) >= 0);
  uint64_t committed = stats(f).committed;
  for (int i = 0; i < 100; i++) {
    stor_reading_t r[] = {rd(a, PROTO_Q_PM10, T0 + (i % 10 == 5 ? i : 100 + i) * 1000LL, i),
                          rd(b, PROTO_Q_PM10, T0 + i * 2000LL, 200 + i),
                          rd(c, PROTO_Q_TSP, T0 + i * 1500LL, 300 + i)};
    assert_int_equal(stor_append(f->db, r, 3), 0);
    if (i % 50 == 49) {
      committed += 150;
      wait_committed(f, committed);
    }
  }
  for (int i = 0; i < 30; i++) /* late, between b's readings, in a commit of their own */
    append1(f, rd(b, PROTO_Q_PM10, T0 + i * 2000LL + 1000, 500 + i));
  committed += 30;
  wait_committed(f, committed);
  assert_true(db_int(f->path, "SELECT count(*) FROM tail") > 0);

  const char *const devs[] = {"dust-a", "dust-b", "dust-c"};
  const int qs[] = {PROTO_Q_PM10, PROTO_Q_PM10, PROTO_Q_TSP};
  stor_point_t *want[3];
  size_t nw[3];
  for (int i = 0; i < 3; i++)
    want[i] = answers(f, devs[i], qs[i], &nw[i]);
  assert_true(nw[0] > 100 && nw[1] > 100 && nw[2] > 100);
  seen_t s0 = {0};
  assert_int_equal(stor_latest(reader(f), on_latest, &s0), 0);

  /* a and b held whole; then a bound that leaves a out (100 tail
   * readings) and keeps b (130); then one that keeps neither. c is not
   * asked for, nor is an unknown device; b is asked for twice. */
  const char *const hold[] = {"dust-b", "nobody", "dust-a", "dust-b"};
  const size_t bounds[] = {SIZE_MAX, 130, 0};
  for (size_t k = 0; k < sizeof(bounds) / sizeof(bounds[0]); k++) {
    assert_int_equal(stor_reader_hold(reader(f), hold, 4, bounds[k]), 0);
    assert_int_equal(stor_reader_hold(reader(f), hold, 4, bounds[k]), -EBUSY);
    for (int i = 0; i < 3; i++)
      check_same_answers(f, devs[i], qs[i], want[i], nw[i]);
    seen_t s = {0};
    assert_int_equal(stor_latest(reader(f), on_latest, &s), 0);
    assert_memory_equal(&s, &s0, sizeof(s));
    if (k == 0) { /* a commit while held: not seen till the release */
      append1(f, rd(b, PROTO_Q_PM10, T0 + 500000, 1));
      wait_committed(f, ++committed);
      check_same_answers(f, "dust-b", PROTO_Q_PM10, want[1], nw[1]);
    }
    stor_reader_release(reader(f));
    stor_reader_release(reader(f)); /* nothing held: nothing done */
    if (k == 0) {
      size_t n = 0;
      free(query(f, "dust-b", PROTO_Q_PM10, STOR_STEP_RAW, T0 + 500000, INT64_MAX, &n));
      assert_int_equal(n, 1);
      free(want[1]);
      want[1] = answers(f, "dust-b", PROTO_Q_PM10, &nw[1]);
      memset(&s0, 0, sizeof(s0));
      assert_int_equal(stor_latest(reader(f), on_latest, &s0), 0);
    }
  }
  /* A hold of no device: the snapshot alone. */
  assert_int_equal(stor_reader_hold(reader(f), NULL, 0, SIZE_MAX), 0);
  check_same_answers(f, "dust-c", PROTO_Q_TSP, want[2], nw[2]);
  stor_reader_release(reader(f));
  assert_int_equal(stor_reader_hold(reader(f), NULL, 1, SIZE_MAX), -EINVAL);
  for (int i = 0; i < 3; i++)
    free(want[i]);
}

static void readers_find_pending_readings_from_the_oldest_one(void **state) {
  fx_t *f = *state;
  open_db(f);
  stor__test_roll_ms(f->db, 3600 * 1000);
  const int64_t b = (int64_t)(sg_now() / 60) * 60 * 1000 - 600 * 1000;
  uint32_t a = dev(f, "dust-01"), c = dev(f, "dust-02");
  const char *const from = "SELECT value FROM counter WHERE name = 'pending_from'";
  stor_reading_t r[2] = {rd(a, PROTO_Q_PM10, b, 10)};
  commit_one(f, r, 1);
  assert_int_equal(db_int(f->path, from), b);
  /* dust-02, 100 s later, in two commits: dust-01's stays the oldest. */
  r[0] = rd(c, PROTO_Q_PM10, b + 100000, 20);
  commit_one(f, r, 1);
  r[0] = rd(c, PROTO_Q_PM10, b + 160000, 21);
  commit_one(f, r, 1);
  assert_int_equal(db_int(f->path, from), b);
  seen_t seen = {0};
  assert_int_equal(stor_latest(reader(f), on_latest, &seen), 0);
  assert_int_equal(seen.calls, 2);
  assert_int_equal(seen.t[0], b);
  assert_int_equal(seen.t[1], b + 160000);
  assert_int_equal(sum_n(f, "dust-01", PROTO_Q_PM10, STOR_STEP_1M), 1);
  assert_int_equal(sum_n(f, "dust-02", PROTO_Q_PM10, STOR_STEP_1M), 2);
  /* Rollups written: nothing pending, and the value stays. */
  assert_int_equal(stor_flush(f->db), 0);
  assert_int_equal(db_int(f->path, from), b);
  /* dust-02 alone sends: its reading is the oldest pending one now, and
   * dust-01's comes from its latest row. */
  r[0] = rd(c, PROTO_Q_PM10, b + 200000, 22);
  r[1] = rd(a, PROTO_Q_PM10, b - 5000, 9); /* late: rolled up at once */
  commit_one(f, r, 2);
  assert_int_equal(db_int(f->path, from), b + 200000);
  memset(&seen, 0, sizeof(seen));
  assert_int_equal(stor_latest(reader(f), on_latest, &seen), 0);
  assert_int_equal(seen.calls, 2);
  assert_int_equal(seen.t[0], b);
  assert_true(seen.v[0] == 10);
  assert_int_equal(seen.t[1], b + 200000);
  assert_int_equal(sum_n(f, "dust-01", PROTO_Q_PM10, STOR_STEP_1M), 2);
  assert_int_equal(sum_n(f, "dust-02", PROTO_Q_PM10, STOR_STEP_1M), 3);
  assert_int_equal(count_raw(f, "dust-01", PROTO_Q_PM10), 2);
}

/* Every row of rollup table `table` as text, each column's value exact
 * (%!.17g), as readers see them: through STOR_ROLL_VMAX and STOR_ROLL_VSUM
 * when `derived` (schema 11), else the columns as they are. */
static char *rollup_rows(const char *path, const char *table, bool derived) {
  char sql[1024];
  snprintf(sql, sizeof(sql),
           "SELECT count(*) || ':' || coalesce(group_concat(r, ';'), '') FROM (SELECT"
           " printf('%%d %%d %%d %%!.17g %%!.17g %%!.17g %%!.17g', series, t, n, vmin, %s, %s,"
           " esum) AS r FROM %s ORDER BY series, t)",
           derived ? STOR_ROLL_VMAX : "vmax", derived ? STOR_ROLL_VSUM : "vsum", table);
  return db_text(path, sql);
}

static const char *const BLOCK_ROWS =
    "SELECT count(*) || ':' || coalesce(group_concat(r, ';'), '') FROM (SELECT series || ' ' ||"
    " t0 || ' ' || t1 || ' ' || n || ' ' || hex(data) AS r FROM block ORDER BY series, t0)";

/* tests/data/main-db/site-v10.db was written by main before rollup rows
 * left out derivable columns and blocks moved to a rowid table (schema
 * 10; make.sh 10). Migrated, its rollup rows read the same value for
 * value, vmax and vsum left out where vmin gives them, and its blocks are
 * the same; opened, a late reading into a migrated minute of one reading
 * is added to it, and every reading reads back. */
static void a_schema_10_database_migrates_rollups_and_reads_the_same(void **state) {
  fx_t *f = *state;
  static const char *const tables[] = {"roll_1m", "roll_1h", "roll_1d"};
  char *before[3];
  old_database(f, 10);
  assert_true(db_int(f->path, "SELECT count(*) FROM roll_1m") > 10000);
  assert_true(db_int(f->path, "SELECT count(*) FROM roll_1m WHERE n = 1") > 100);
  assert_true(db_int(f->path, "SELECT count(*) FROM roll_1m WHERE n > 2") > 100);
  assert_true(db_int(f->path, "SELECT count(*) FROM roll_1m WHERE esum IS NOT NULL") > 100);
  assert_true(db_int(f->path, "SELECT count(*) FROM block") > 10);
  for (int i = 0; i < 3; i++)
    before[i] = rollup_rows(f->path, tables[i], false);
  char *blocks = db_text(f->path, BLOCK_ROWS);
  /* A minute of one reading of a series that is no level, and its value. */
  char *one = db_text(f->path, "SELECT d.name || ' ' || s.quantity || ' ' || r.t || ' ' ||"
                               " printf('%!.17g', r.vmin / 100) FROM roll_1m r"
                               " JOIN series s ON s.id = r.series JOIN device d ON d.id = s.device"
                               " WHERE r.n = 1 AND r.esum IS NULL ORDER BY r.series, r.t LIMIT 1");
  char name[64];
  int q = 0;
  long long minute = 0;
  double v = 0;
  assert_int_equal(sscanf(one, "%63s %d %lld %lf", name, &q, &minute, &v), 4);
  free(one);
  int64_t nraw = db_int(f->path, "SELECT value FROM counter WHERE name = 'raw_rows'");

  /* The migration alone, before a writer rolls up the pending readings:
   * version 12 rewrites the file so that it can give free pages back, and
   * version 13 moves the rollups to new tables, which leaves the old
   * tables' pages free (given back at the writer's close, below). */
  assert_int_equal(db_int(f->path, "PRAGMA auto_vacuum"), 0);
  sqlite3 *db = NULL;
  assert_int_equal(sqlite3_open_v2(f->path, &db, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
  assert_int_equal(stor__migrate(db, f->path, NULL), 0);
  sqlite3_close(db);
  assert_int_equal(db_int(f->path, "PRAGMA user_version"), stor__schema_version());
  assert_int_equal(db_int(f->path, "PRAGMA auto_vacuum"), 2);
  check_integrity(f);
  for (int i = 0; i < 3; i++) {
    char *after = rollup_rows(f->path, tables[i], true);
    if (strcmp(after, before[i]) != 0)
      fail_msg("%s: the rows read otherwise after the migration", tables[i]);
    free(after);
    free(before[i]);
  }
  char *blocks2 = db_text(f->path, BLOCK_ROWS);
  assert_string_equal(blocks2, blocks);
  free(blocks);
  free(blocks2);
  assert_true(db_int(f->path, "SELECT count(*) FROM roll_1m WHERE vmax IS NULL") > 100);
  assert_true(db_int(f->path, "SELECT count(*) FROM roll_1m WHERE vsum IS NULL") > 100);
  assert_int_equal(db_int(f->path, "SELECT count(*) FROM roll_1m WHERE n > 2 AND vsum IS NULL"), 0);
  assert_int_equal(db_int(f->path, "SELECT count(*) FROM roll_1m WHERE vmax = vmin"), 0);

  open_db(f);
  /* A late reading 7 ms into that minute, 10 above its reading: the minute
   * holds both, its sum written again. */
  size_t n = 0;
  int64_t t_ms = (int64_t)minute * 1000;
  append1(f, rd(dev(f, name), q, t_ms + 7, v + 10));
  assert_int_equal(stor_flush(f->db), 0);
  stor_point_t *p = query(f, name, q, STOR_STEP_1M, t_ms, t_ms + 60000, &n);
  assert_int_equal(n, 1);
  assert_int_equal(p[0].n, 2);
  assert_true(p[0].min == v && p[0].max == v + 10);
  assert_true(fabs(p[0].mean - (v + 5)) < 1e-9);
  free(p);
  assert_true(stor__test_compact(f->db) >= 0);
  close_db(f);
  assert_int_equal(db_int(f->path, "PRAGMA freelist_count"), 0);
  assert_int_equal(db_int(f->path, "SELECT value FROM counter WHERE name = 'raw_rows'"), nraw + 1);
  assert_int_equal(db_int(f->path, "SELECT coalesce(sum(n), 0) FROM block") +
                       db_int(f->path, "SELECT coalesce(sum(n), 0) FROM tail"),
                   nraw + 1);
  char *ok = db_text(f->path, "PRAGMA integrity_check");
  assert_string_equal(ok, "ok");
  free(ok);
}

/* A file with less than STOR_VACUUM_ROOM times its size free beside it is
 * migrated without the VACUUM (which would fill the disk before failing):
 * it keeps auto_vacuum off, opens, and stores as before. With just enough
 * room it is rewritten. */
static void a_file_without_room_to_vacuum_at_start_is_migrated_without(void **state) {
  fx_t *f = *state;
  old_database(f, 10);
  int64_t size = db_int(f->path, "PRAGMA page_count") * db_int(f->path, "PRAGMA page_size");
  stor__test_vacuum_room(STOR_VACUUM_ROOM * size - 1);
  open_db(f);
  stor__test_vacuum_room(-1);
  assert_int_equal(db_int(f->path, "PRAGMA user_version"), stor__schema_version());
  assert_int_equal(db_int(f->path, "PRAGMA auto_vacuum"), 0);
  int64_t nraw = db_int(f->path, "SELECT value FROM counter WHERE name = 'raw_rows'");
  append1(f, rd(dev(f, "dust-01"), PROTO_Q_PM10, 1000, 42.0));
  assert_int_equal(stor_flush(f->db), 0);
  close_db(f);
  assert_int_equal(db_int(f->path, "SELECT value FROM counter WHERE name = 'raw_rows'"), nraw + 1);
  char *ok = db_text(f->path, "PRAGMA integrity_check");
  assert_string_equal(ok, "ok");
  free(ok);

  old_database(f, 10);
  stor__test_vacuum_room(STOR_VACUUM_ROOM * size);
  open_db(f);
  stor__test_vacuum_room(-1);
  close_db(f);
  assert_int_equal(db_int(f->path, "PRAGMA auto_vacuum"), 2);
}

int main(void) {
  const struct CMUnitTest tests[] = {
#define T(name) cmocka_unit_test_setup_teardown(name, fx_setup, fx_teardown)
      T(devices_registered_together_get_the_ids_they_get_one_by_one),
      T(appended_readings_are_queryable_after_flush),
      T(a_batch_waits_at_most_batch_ms_and_takes_all_readings_queued_meanwhile),
      T(a_batch_starts_before_batch_ms_once_batch_readings_are_queued),
      T(batch_readings_above_half_the_queue_is_taken_as_half),
      T(a_backlog_is_committed_batch_readings_at_a_time),
      T(append_refuses_a_call_that_does_not_fit_whole_with_eagain),
      T(append_rejects_readings_a_commit_could_not_store),
      T(resent_readings_are_ignored_and_not_counted_twice),
      T(rollups_hold_hand_computed_minute_hour_and_day_figures),
      T(day_buckets_start_at_local_midnight),
      T(rollups_and_latest_are_read_at_the_commit_while_their_rows_are_pending),
      T(rollups_a_crash_left_unwritten_are_written_from_raw_at_open),
      T(hours_and_days_from_minutes_across_a_half_hour_zone_midnight),
      T(hours_and_days_from_minutes_when_a_midnight_cuts_a_minute),
      T(a_schema_6_database_migrates_in_place_and_reads_the_same),
      T(an_open_reports_each_migration_and_the_work_within_it),
      T(a_schema_9_database_migrates_to_packs_and_reads_the_same),
      T(a_schema_10_database_migrates_rollups_and_reads_the_same),
      T(a_file_without_room_to_vacuum_at_start_is_migrated_without),
      T(a_commit_stores_a_pack_per_series_and_resends_stay_single),
      T(queries_within_a_hold_answer_as_without_and_keep_its_snapshot),
      T(readers_find_pending_readings_from_the_oldest_one),
      T(late_readings_and_resends_into_compacted_spans_are_stored_once),
      T(blocks_stay_within_their_cap_and_a_backlog_compacts_in_chunks),
      T(a_batch_of_resends_for_many_series_stores_each_reading_once),
      T(compaction_orders_the_packs_of_far_series_ids_too),
      T(compaction_of_many_series_reads_back_every_reading),
      T(free_pages_go_back_when_the_writer_is_idle),
      T(a_brief_step_takes_only_the_readings_that_make_a_step_due),
      T(close_compacts_a_tail_a_step_long_and_gives_its_pages_back),
      T(close_gives_free_pages_back_whatever_their_share),
      T(retention_deletes_old_raw_rows_and_keeps_rollups),
      T(retention_deletes_old_minutes_of_every_series_in_chunks),
      T(retention_writes_pending_rollups_before_deleting_their_raw_rows),
      T(disk_full_refuses_appends_keeps_accepted_readings_and_resumes),
      T(close_commits_everything_queued),
      T(reopening_keeps_data_device_ids_and_schema_version),
      T(a_database_from_a_newer_version_is_refused),
      T(files_that_are_not_databases_or_cannot_be_opened_are_refused),
      T(query_on_an_unknown_device_returns_enoent),
      T(latest_gives_the_newest_reading_of_each_series),
      T(reader_counts_give_stored_rows_and_file_bytes),
      T(readings_appended_from_several_threads_are_all_stored),
#undef T
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
