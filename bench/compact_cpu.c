/* compact_cpu [SERIES [FIRST [ROUNDS [PER_ROUND]]]]: the writer's CPU a reading,
 * not wall-clock (issue 15, "≥ 300,000 records/s sustained": on a shared
 * 2-core box throughput moves with the other loads, CPU time much less).
 *
 * A fresh database in a temporary folder gets SERIES devices (10,000, as
 * bench/run.sh's (c)); each round appends readings a device in 10-record
 * packs, with sitesim load's values (whole numbers) and times 1 s apart,
 * commits them and their rollups (stor_flush), then compacts the whole
 * tail (stor__test_compact). The first round's FIRST (100) readings a
 * device are the first (c) run's and are not counted; each of the
 * ROUNDS - 1 (15) rounds after it, PER_ROUND (10) readings a device (about a
 * gateway's step of 131,072 readings), starts its times 53 ms after the
 * one before, over the same seconds, as bench/run.sh's runs each start a
 * day back: every series' step then merges its readings into the series'
 * block, which grows by PER_ROUND a round, as the bench's steps after its
 * first (c) run do. The same is done with values that decimal arithmetic
 * leaves a unit in the last place off (the demo site's: the codec's
 * decimal mode). For each it prints commit_ns, the writer's CPU a reading
 * for the commits (the process's CPU less this thread's, which only
 * queues), and compact_ns, the CPU a reading for the compaction (this
 * thread waits), then the codec alone on one core, encode_ns and
 * decode_ns a reading of blocks of 1,000. Ends with one `compact:` line of
 * the figures. */
#include "common/common.h"
#include "protocol/protocol.h"
#include "storage/storage.h"
#include "storage/storage_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

static double thread_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static double process_ns(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return ((double)ru.ru_utime.tv_sec + (double)ru.ru_stime.tv_sec) * 1e9 +
         ((double)ru.ru_utime.tv_usec + (double)ru.ru_stime.tv_usec) * 1e3;
}

/* The CPU of every thread but this one. */
static double others_ns(void) { return process_ns() - thread_ns(); }

static double value_of(bool decimal, long ctr, unsigned j) {
  long k = (ctr * 7 + (long)j) % 120;
  return decimal ? (double)(300 + k) * 0.1 : 30.0 + (double)k; /* 30.1 is 301 * 0.1 */
}

static int run(bool decimal, long series, long first, long rounds, long per_round,
               double *commit_ns, double *compact_ns) {
  char dir[] = "/tmp/compact_cpu.XXXXXX", path[64];
  if (!mkdtemp(dir))
    return -1;
  snprintf(path, sizeof(path), "%s/bench.db", dir);
  stor_options_t o = {
      .path = path, .batch_ms = 200, .batch_readings = 16384, .queue_max = 1 << 20, .raw_days = 31};
  stor_db_t *db = NULL;
  uint32_t *ids = calloc((size_t)series, sizeof(*ids));
  char **names = calloc((size_t)series, sizeof(*names));
  long *ctr = calloc((size_t)series, sizeof(*ctr));
  int rc = !ids || !names || !ctr || stor_open(&o, &db) != 0 ? -1 : 0;
  for (long i = 0; rc == 0 && i < series; i++) {
    names[i] = malloc(32);
    rc = names[i] ? 0 : -1;
    if (rc == 0)
      snprintf(names[i], 32, "load-%ld", i);
  }
  if (rc == 0)
    rc = stor_device_ids(db, (const char *const *)names, (size_t)series, ids);
  /* Ten minutes back: the writer compacts by age an hour on, and here only
   * stor__test_compact may, so that each part is counted where it runs. */
  int64_t base = ((int64_t)sg_now() - 600) * 1000 + 123;
  double c_ns = 0, k_ns = 0, c_n = 0, k_n = 0;
  for (long r = 0; rc == 0 && r < rounds; r++) {
    double before = others_ns();
    long packs = (r == 0 ? first : per_round) / 10;
    for (long p = 0; rc == 0 && p < packs; p++) {
      for (long d = 0; rc == 0 && d < series; d++) {
        stor_reading_t pack[10];
        for (unsigned j = 0; j < 10; j++)
          pack[j] = (stor_reading_t){.device = ids[d],
                                     .quantity = PROTO_Q_PM10,
                                     .t_ms = base + r * 53 + (p * 10 + j) * 1000,
                                     .value = value_of(decimal, ctr[d], j)};
        ctr[d]++;
        while ((rc = stor_append(db, pack, 10)) == -EAGAIN)
          usleep(1000); /* the queue is full: the writer commits */
      }
    }
    if (rc == 0)
      rc = stor_flush(db);
    double mid = others_ns();
    int64_t done = rc == 0 ? stor__test_compact(db) : -1;
    double after = others_ns();
    if (done < 0) {
      fprintf(stderr, "compact_cpu: compaction failed (%lld)\n", (long long)done);
      rc = -1;
      break;
    }
    if (r > 0) { /* the first round makes the blocks the others merge into */
      c_ns += mid - before;
      c_n += (double)(series * packs * 10);
      k_ns += after - mid;
      k_n += (double)done;
    }
  }
  stor_close(db);
  for (long i = 0; names && i < series; i++)
    free(names[i]);
  free(names);
  free(ids);
  free(ctr);
  unlink(path);
  char side[80];
  snprintf(side, sizeof(side), "%s-wal", path);
  unlink(side);
  snprintf(side, sizeof(side), "%s-shm", path);
  unlink(side);
  snprintf(side, sizeof(side), "%s.lock", path);
  unlink(side);
  rmdir(dir);
  *commit_ns = c_n > 0 ? c_ns / c_n : 0;
  *compact_ns = k_n > 0 ? k_ns / k_n : 0;
  return rc;
}

/* The codec alone: blocks of 1,000 readings, encoded and decoded many
 * times on this thread. */
static void codec(bool decimal, double *enc_ns, double *dec_ns) {
  enum { N = 1000, REPS = 2000 };
  static stor_sample_t s[N], back[N];
  static uint8_t buf[32 + N * 20];
  for (int i = 0; i < N; i++)
    s[i] =
        (stor_sample_t){.t_ms = 1700000000000 + i * 1000, .v = value_of(decimal, i / 10, i % 10)};
  ssize_t len = 0, total = 0;
  double t0 = thread_ns();
  for (int r = 0; r < REPS; r++)
    total += len = stor__block_encode(s, N, buf, sizeof(buf));
  double t1 = thread_ns();
  size_t n = 0;
  for (int r = 0; r < REPS && len > 0; r++)
    total += stor__block_decode(buf, (size_t)len, back, N, &n, NULL);
  double t2 = thread_ns();
  if (len <= 0 || n != N || memcmp(back, s, sizeof(s)) != 0 || total == 0)
    fprintf(stderr, "compact_cpu: the codec did not give back its block\n");
  *enc_ns = (t1 - t0) / (double)(N * REPS);
  *dec_ns = (t2 - t1) / (double)(N * REPS);
}

int main(int argc, char **argv) {
  long series = argc > 1 ? strtol(argv[1], NULL, 10) : 10000;
  long first = argc > 2 ? strtol(argv[2], NULL, 10) : 100;
  long rounds = argc > 3 ? strtol(argv[3], NULL, 10) : 16;
  long per_round = argc > 4 ? strtol(argv[4], NULL, 10) : 10;
  if (series <= 0 || first < 10 || rounds < 2 || rounds > 18 || per_round < 10 ||
      per_round > first) {
    fprintf(stderr,
            "usage: compact_cpu [SERIES [FIRST >= 10 [ROUNDS 2..18 [PER_ROUND 10..FIRST]]]]\n");
    return 2;
  }
  log_threshold = LOG_LVL_WARN;
  double f[2][4];
  for (int d = 0; d < 2; d++) {
    if (run(d, series, first, rounds, per_round, &f[d][0], &f[d][1]) != 0) {
      fprintf(stderr, "compact_cpu: the %s run failed\n", d ? "decimal" : "whole-number");
      return 1;
    }
    codec(d, &f[d][2], &f[d][3]);
    printf("%-13s commit %.0f ns, compaction %.0f ns, encode %.1f ns, decode %.1f ns a reading\n",
           d ? "decimal:" : "whole number:", f[d][0], f[d][1], f[d][2], f[d][3]);
  }
  printf("compact: commit_ns=%.0f compact_ns=%.0f encode_ns=%.1f decode_ns=%.1f "
         "commit_dec_ns=%.0f compact_dec_ns=%.0f encode_dec_ns=%.1f decode_dec_ns=%.1f\n",
         f[0][0], f[0][1], f[0][2], f[0][3], f[1][0], f[1][1], f[1][2], f[1][3]);
  return 0;
}
