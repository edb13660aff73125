/* steady DB [SERIES [PER_COMMIT [CYCLES]]]: the bytes a site box writes per
 * reading over whole compaction cycles, everything included (issue 15).
 *
 * bench/written.sh measures the daemon for 30 s on a fresh database, which
 * holds neither a compaction step nor the rollup flush that comes before
 * one. This program drives the storage (libstorage, the writer thread and
 * all) as a site at 300 readings/s with 1,000 devices x 3 quantities does:
 * SERIES series, a commit of PER_COMMIT readings (one each for PER_COMMIT
 * of the series, in turn) every 5 s of data time, times from now on. It
 * does not wait out the 5 s: each commit is started by `batch_readings`
 * (= PER_COMMIT) and the next readings are queued once it is done, so the
 * commits are those of the site, only sooner. Compaction steps come every
 * STOR_COMPACT_ROWS readings, as at that pace (an hour's age is never
 * reached first), each after the rollup flush it forces.
 *
 * It first runs CYCLES cycles of STOR_COMPACT_ROWS readings unmeasured (a
 * box that has run for a while: blocks to merge into, the file grown),
 * then CYCLES more, measured by this process's write_bytes (/proc/self/io:
 * WAL, checkpoints, the -shm file), the closing checkpoint included.
 * Prints `steady: ...` and `bench: written_steady_300=N`. */
#include "common/common.h"
#include "protocol/protocol.h"
#include "storage/storage.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define CYCLE 131072 /* storage_int.h STOR_COMPACT_ROWS: a step's readings */

static long long write_bytes(void) {
  FILE *f = fopen("/proc/self/io", "r");
  char line[128];
  long long v = -1;
  while (f && fgets(line, sizeof(line), f))
    if (sscanf(line, "write_bytes: %lld", &v) == 1)
      break;
  if (f)
    fclose(f);
  return v;
}

/* Waits until the writer has committed `want` readings since open. */
static int drained(stor_db_t *db, uint64_t want) {
  stor_stats_t st;
  for (int i = 0; i < 600000; i++) { /* 10 min: a step over a cold disk */
    stor_get_stats(db, &st);
    if (st.committed >= want && st.queued == 0)
      return 0;
    nanosleep(&(struct timespec){0, 1000000}, NULL);
  }
  fprintf(stderr, "steady: the writer did not commit %llu readings in 10 min (%llu)\n",
          (unsigned long long)want, (unsigned long long)st.committed);
  return -1;
}

int main(int argc, char **argv) {
  if (argc < 2 || argc > 5) {
    fprintf(stderr, "usage: steady DB [SERIES [PER_COMMIT [CYCLES]]]\n");
    return 2;
  }
  size_t series = argc > 2 ? strtoul(argv[2], NULL, 10) : 3000;
  size_t per = argc > 3 ? strtoul(argv[3], NULL, 10) : 1500;
  long cycles = argc > 4 ? strtol(argv[4], NULL, 10) : 2;
  if (series == 0 || per < 100 || per > series || cycles <= 0) {
    fprintf(stderr, "steady: SERIES > 0, 100 <= PER_COMMIT <= SERIES, CYCLES > 0\n");
    return 2;
  }
  stor_options_t o = {.path = argv[1],
                      .batch_ms = 5000,
                      .batch_readings = per,
                      .queue_max = 4 * per,
                      .raw_days = 31};
  stor_db_t *db;
  if (stor_open(&o, &db) != 0)
    return 1;
  char(*names)[32] = calloc(series, sizeof(*names));
  const char **np = calloc(series, sizeof(*np));
  uint32_t *ids = calloc(series, sizeof(*ids));
  stor_reading_t *r = calloc(per, sizeof(*r));
  if (!names || !np || !ids || !r)
    return 1;
  for (size_t i = 0; i < series; i++) {
    snprintf(names[i], sizeof(names[i]), "load-%05zu", i);
    np[i] = names[i];
  }
  if (stor_device_ids(db, np, series, ids) != 0)
    return 1;
  int64_t t = (int64_t)sg_now() * 1000;
  uint64_t done = 0, total = (uint64_t)(2 * cycles) * CYCLE;
  long long w0 = 0;
  size_t next = 0;
  /* STEADY_TRACE=N: a line on stderr every N readings */
  uint64_t trace = getenv("STEADY_TRACE") ? strtoull(getenv("STEADY_TRACE"), NULL, 10) : 0;
  uint64_t dlast = 0;
  long long wlast = write_bytes();
  while (done < total) {
    if (done >= (uint64_t)cycles * CYCLE && w0 == 0) {
      if (drained(db, done) != 0)
        return 1;
      w0 = write_bytes();
    }
    for (size_t k = 0; k < per; k++, next = (next + 1) % series) {
      /* PM10 with one decimal, as the demo site's dust stations send */
      double v = (double)(300 + (long)((next * 7 + done / series) % 400)) / 10.0;
      r[k] = (stor_reading_t){
          .device = ids[next], .quantity = PROTO_Q_PM10, .t_ms = t + (int64_t)k, .value = v};
    }
    while (stor_append(db, r, per) == -EAGAIN)
      nanosleep(&(struct timespec){0, 1000000}, NULL);
    done += per;
    t += 5000;
    if (drained(db, done) != 0)
      return 1;
    if (trace && done / trace != (done - per) / trace) {
      long long now = write_bytes();
      fprintf(stderr, "steady: %llu readings, %.0f B a reading since the last line\n",
              (unsigned long long)done, (double)(now - wlast) / (double)(done - dlast));
      wlast = now;
      dlast = done;
    }
  }
  stor_close(db); /* the closing checkpoint is in the figure */
  long long w = write_bytes() - w0;
  uint64_t measured = total - (uint64_t)cycles * CYCLE;
  printf("steady: series=%zu per_commit=%zu readings=%llu measured=%llu written=%lld\n", series,
         per, (unsigned long long)total, (unsigned long long)measured, w);
  printf("bench: written_steady_300=%.0f\n", (double)w / (double)measured);
  free(names);
  free(np);
  free(ids);
  free(r);
  return 0;
}
