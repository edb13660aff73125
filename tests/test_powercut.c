/* Power cuts (issue 15): kill -9 is not one, since the page cache outlives
 * the process. This test puts a SQLite VFS under storage that loses, at a
 * cut, every write not yet synced, the way SQLite's own crash tests do
 * (test6.c, "crash"), and cuts a working gateway's storage at a random
 * write or sync, hundreds of times over one database. After each cut the
 * database must open, pass PRAGMA integrity_check, hold every weighing
 * ticket whose commit was answered (a scale's 2.01), every reading a
 * committed batch held (the writer's count, and everything before a
 * stor_flush that returned), and rollups that agree with the raw rows.
 *
 * The VFS wraps the default one and becomes the default before anything
 * opens a database, so the writer's WAL buffer (storage/db.c) sits on top
 * of it as it sits on the disk. For each file it keeps the size at the
 * last sync and, for every write or truncation since, the bytes it
 * overwrote that were synced; a cut puts those back (newest first),
 * truncates to the synced size, empties the -shm (shared memory does not
 * survive a cut) and _exit()s at once, inside the write or sync it stopped
 * before, under the lock every write takes, so no thread writes after it.
 * The real sync is skipped: the model decides what a sync made durable,
 * and skipping it keeps a few hundred cuts fast.
 *
 * Only storage/ includes sqlite3.h, except this file: the VFS shim the
 * issue asks for lives in tests/ (tests/check-layout.sh allows it). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "storage/storage.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define CUTS 200             /* the issue: hundreds */
#define READINGS_PER_RUN 600 /* per child, in packs of PACK */
#define PACK 10
#define TICKET_EVERY 60 /* readings */
#define FLUSH_EVERY 150 /* readings */
#define T0 1764100000000LL
#define MAX_FILES 8

/* ---- the VFS: writes since the last sync are lost at a cut */

typedef struct undo {
  sqlite3_int64 off;
  int len;
  unsigned char *old;
} undo_t;

typedef struct tracked {
  char path[512];
  sqlite3_int64 synced_size;
  undo_t *undo;
  size_t nundo, capundo;
} tracked_t;

typedef struct pc_file {
  sqlite3_file base;
  tracked_t *tr; /* NULL: not a file we track (temporary files) */
  sqlite3_file real[];
} pc_file_t;

static sqlite3_vfs *root;
static sqlite3_vfs pc_vfs;
static pthread_mutex_t pc_mu = PTHREAD_MUTEX_INITIALIZER;
static tracked_t files[MAX_FILES];
static size_t nfiles;
static long ops_left = -1; /* writes and syncs until the cut; -1: not armed */
static int report_fd = -1; /* the child's pipe to the parent */

static sqlite3_int64 real_size(const char *path) {
  struct stat st;
  return stat(path, &st) == 0 ? (sqlite3_int64)st.st_size : 0;
}

/* With pc_mu: the file's state, made on its first open (the size on disk
 * is synced: it is what the previous cut or run left). */
static tracked_t *track(const char *path) {
  for (size_t i = 0; i < nfiles; i++)
    if (strcmp(files[i].path, path) == 0)
      return &files[i];
  if (nfiles == MAX_FILES)
    abort();
  tracked_t *t = &files[nfiles++];
  snprintf(t->path, sizeof(t->path), "%s", path);
  t->synced_size = real_size(path);
  return t;
}

static void forget_undo(tracked_t *t) {
  for (size_t i = 0; i < t->nundo; i++)
    free(t->undo[i].old);
  t->nundo = 0;
}

/* With pc_mu: keeps the synced bytes of [off, off + len) before they are
 * overwritten or truncated away. */
static int save_undo(pc_file_t *f, sqlite3_int64 off, sqlite3_int64 len) {
  tracked_t *t = f->tr;
  if (off >= t->synced_size)
    return SQLITE_OK; /* beyond the synced size: the truncation at a cut drops it */
  if (off + len > t->synced_size)
    len = t->synced_size - off;
  if (t->nundo == t->capundo) {
    size_t cap = t->capundo ? 2 * t->capundo : 64;
    undo_t *u = realloc(t->undo, cap * sizeof(*u));
    if (!u)
      return SQLITE_NOMEM;
    t->undo = u;
    t->capundo = cap;
  }
  unsigned char *old = malloc((size_t)len);
  if (!old)
    return SQLITE_NOMEM;
  int rc = f->real->pMethods->xRead(f->real, old, (int)len, off);
  if (rc != SQLITE_OK && rc != SQLITE_IOERR_SHORT_READ) {
    free(old);
    return rc;
  }
  t->undo[t->nundo++] = (undo_t){off, (int)len, old};
  return SQLITE_OK;
}

/* With pc_mu: the power goes. Every tracked file goes back to what its
 * last sync made durable; then the process ends, all threads with it. */
static void cut(void) {
  for (size_t i = 0; i < nfiles; i++) {
    tracked_t *t = &files[i];
    int fd = open(t->path, O_WRONLY);
    if (fd < 0)
      continue;
    for (size_t k = t->nundo; k-- > 0;)
      if (pwrite(fd, t->undo[k].old, (size_t)t->undo[k].len, t->undo[k].off) != t->undo[k].len)
        _exit(3);
    if (ftruncate(fd, t->synced_size) != 0)
      _exit(3);
    close(fd);
    char shm[sizeof(t->path) + 8];
    if (snprintf(shm, sizeof(shm), "%s-shm", t->path) >= (int)sizeof(shm))
      _exit(3);
    if (access(shm, F_OK) == 0 && truncate(shm, 0) != 0)
      _exit(3);
  }
  if (report_fd >= 0 && write(report_fd, "C\n", 2) != 2)
    _exit(3);
  _exit(0);
}

/* With pc_mu: counts a write or sync, cutting before the one that is due. */
static void tick(void) {
  if (ops_left > 0)
    ops_left--;
  if (ops_left == 0)
    cut();
}

static int pc_close(sqlite3_file *file) {
  pc_file_t *f = (pc_file_t *)file;
  return f->real->pMethods->xClose(f->real);
}

static int pc_read(sqlite3_file *file, void *buf, int n, sqlite3_int64 off) {
  pc_file_t *f = (pc_file_t *)file;
  return f->real->pMethods->xRead(f->real, buf, n, off);
}

static int pc_write(sqlite3_file *file, const void *buf, int n, sqlite3_int64 off) {
  pc_file_t *f = (pc_file_t *)file;
  pthread_mutex_lock(&pc_mu);
  tick();
  int rc = f->tr ? save_undo(f, off, n) : SQLITE_OK;
  if (rc == SQLITE_OK)
    rc = f->real->pMethods->xWrite(f->real, buf, n, off);
  pthread_mutex_unlock(&pc_mu);
  return rc;
}

static int pc_truncate(sqlite3_file *file, sqlite3_int64 size) {
  pc_file_t *f = (pc_file_t *)file;
  pthread_mutex_lock(&pc_mu);
  tick();
  int rc = f->tr ? save_undo(f, size, f->tr->synced_size - size) : SQLITE_OK;
  if (rc == SQLITE_OK)
    rc = f->real->pMethods->xTruncate(f->real, size);
  pthread_mutex_unlock(&pc_mu);
  return rc;
}

static int pc_sync(sqlite3_file *file, int flags) {
  pc_file_t *f = (pc_file_t *)file;
  (void)flags;
  pthread_mutex_lock(&pc_mu);
  tick();
  if (f->tr) {
    sqlite3_int64 size = 0;
    int rc = f->real->pMethods->xFileSize(f->real, &size);
    if (rc != SQLITE_OK) {
      pthread_mutex_unlock(&pc_mu);
      return rc;
    }
    f->tr->synced_size = size;
    forget_undo(f->tr);
  }
  pthread_mutex_unlock(&pc_mu);
  return SQLITE_OK;
}

static int pc_file_size(sqlite3_file *file, sqlite3_int64 *size) {
  pc_file_t *f = (pc_file_t *)file;
  return f->real->pMethods->xFileSize(f->real, size);
}

static int pc_lock(sqlite3_file *file, int l) {
  pc_file_t *f = (pc_file_t *)file;
  return f->real->pMethods->xLock(f->real, l);
}

static int pc_unlock(sqlite3_file *file, int l) {
  pc_file_t *f = (pc_file_t *)file;
  return f->real->pMethods->xUnlock(f->real, l);
}

static int pc_check_lock(sqlite3_file *file, int *out) {
  pc_file_t *f = (pc_file_t *)file;
  return f->real->pMethods->xCheckReservedLock(f->real, out);
}

static int pc_file_control(sqlite3_file *file, int op, void *arg) {
  pc_file_t *f = (pc_file_t *)file;
  return f->real->pMethods->xFileControl(f->real, op, arg);
}

static int pc_sector_size(sqlite3_file *file) {
  pc_file_t *f = (pc_file_t *)file;
  return f->real->pMethods->xSectorSize(f->real);
}

static int pc_device(sqlite3_file *file) {
  pc_file_t *f = (pc_file_t *)file;
  return f->real->pMethods->xDeviceCharacteristics(f->real);
}

static int pc_shm_map(sqlite3_file *file, int pg, int sz, int extend, void volatile **p) {
  pc_file_t *f = (pc_file_t *)file;
  return f->real->pMethods->xShmMap(f->real, pg, sz, extend, p);
}

static int pc_shm_lock(sqlite3_file *file, int off, int n, int flags) {
  pc_file_t *f = (pc_file_t *)file;
  return f->real->pMethods->xShmLock(f->real, off, n, flags);
}

static void pc_shm_barrier(sqlite3_file *file) {
  pc_file_t *f = (pc_file_t *)file;
  f->real->pMethods->xShmBarrier(f->real);
}

static int pc_shm_unmap(sqlite3_file *file, int del) {
  pc_file_t *f = (pc_file_t *)file;
  return f->real->pMethods->xShmUnmap(f->real, del);
}

/* Version 2: no xFetch, so SQLite reads through xRead and never maps the
 * file (it never writes through a mapping either way). */
static const sqlite3_io_methods pc_io = {
    .iVersion = 2,
    .xClose = pc_close,
    .xRead = pc_read,
    .xWrite = pc_write,
    .xTruncate = pc_truncate,
    .xSync = pc_sync,
    .xFileSize = pc_file_size,
    .xLock = pc_lock,
    .xUnlock = pc_unlock,
    .xCheckReservedLock = pc_check_lock,
    .xFileControl = pc_file_control,
    .xSectorSize = pc_sector_size,
    .xDeviceCharacteristics = pc_device,
    .xShmMap = pc_shm_map,
    .xShmLock = pc_shm_lock,
    .xShmBarrier = pc_shm_barrier,
    .xShmUnmap = pc_shm_unmap,
};

static int pc_open(sqlite3_vfs *vfs, sqlite3_filename name, sqlite3_file *file, int flags,
                   int *out_flags) {
  (void)vfs;
  pc_file_t *f = (pc_file_t *)file;
  memset(f, 0, sizeof(*f));
  int rc = root->xOpen(root, name, f->real, flags, out_flags);
  if (rc != SQLITE_OK)
    return rc;
  pthread_mutex_lock(&pc_mu);
  if (ops_left >= 0 && name &&
      (flags & (SQLITE_OPEN_MAIN_DB | SQLITE_OPEN_WAL | SQLITE_OPEN_MAIN_JOURNAL)))
    f->tr = track(name); /* the parent, which checks, is never cut */
  pthread_mutex_unlock(&pc_mu);
  f->base.pMethods = &pc_io;
  return SQLITE_OK;
}

static int pc_delete(sqlite3_vfs *vfs, const char *name, int sync_dir) {
  (void)vfs;
  pthread_mutex_lock(&pc_mu);
  tick();
  for (size_t i = 0; i < nfiles; i++)
    if (strcmp(files[i].path, name) == 0) {
      /* A deleted file is gone for good (its directory entry synced):
       * at a cut it stays gone. */
      forget_undo(&files[i]);
      files[i].synced_size = 0;
    }
  int rc = root->xDelete(root, name, sync_dir);
  pthread_mutex_unlock(&pc_mu);
  return rc;
}

static int pc_access(sqlite3_vfs *vfs, const char *name, int flags, int *out) {
  (void)vfs;
  return root->xAccess(root, name, flags, out);
}

static int pc_full_pathname(sqlite3_vfs *vfs, const char *name, int n, char *out) {
  (void)vfs;
  return root->xFullPathname(root, name, n, out);
}

static int pc_randomness(sqlite3_vfs *vfs, int n, char *out) {
  (void)vfs;
  return root->xRandomness(root, n, out);
}

static int pc_sleep(sqlite3_vfs *vfs, int us) {
  (void)vfs;
  return root->xSleep(root, us);
}

static int pc_current_time(sqlite3_vfs *vfs, double *out) {
  (void)vfs;
  return root->xCurrentTime(root, out);
}

static int pc_last_error(sqlite3_vfs *vfs, int n, char *out) {
  (void)vfs;
  return root->xGetLastError(root, n, out);
}

static int pc_current_time64(sqlite3_vfs *vfs, sqlite3_int64 *out) {
  (void)vfs;
  return root->xCurrentTimeInt64(root, out);
}

static void pc_register(void) {
  root = sqlite3_vfs_find(NULL);
  assert_non_null(root);
  pc_vfs = (sqlite3_vfs){
      .iVersion = 2,
      .szOsFile = (int)sizeof(pc_file_t) + root->szOsFile,
      .mxPathname = root->mxPathname,
      .zName = "powercut",
      .xOpen = pc_open,
      .xDelete = pc_delete,
      .xAccess = pc_access,
      .xFullPathname = pc_full_pathname,
      .xRandomness = pc_randomness,
      .xSleep = pc_sleep,
      .xCurrentTime = pc_current_time,
      .xGetLastError = pc_last_error,
      .xCurrentTimeInt64 = pc_current_time64,
  };
  assert_int_equal(sqlite3_vfs_register(&pc_vfs, 1), SQLITE_OK);
}

/* ---- the gateway's storage at work, until the cut */

static char dir[64], path[128];

static stor_ticket_t ticket(int64_t no) {
  stor_ticket_t t;
  memset(&t, 0, sizeof(t));
  strcpy(t.source, "scale");
  strcpy(t.type, "delivery");
  strcpy(t.scale, "wb-01");
  t.no = no;
  t.t = 1764100100;
  strcpy(t.dir, "in");
  t.net_kg = 1000 + no;
  strcpy(t.material, "rebar");
  return t;
}

static void say(const char *fmt, long long a) {
  char line[64];
  int n = snprintf(line, sizeof(line), fmt, a);
  if (write(report_fd, line, (size_t)n) != n)
    _exit(4);
}

/* The child: readings of run `run` (times T0 + (run * READINGS_PER_RUN + i)
 * s), a ticket every TICKET_EVERY, a flush every FLUSH_EVERY, reporting
 * to the parent what is promised: "R n" (readings 0..n-1 of the run are
 * committed), "T no" (ticket answered created or same). */
static void child(int run, long cut_after) {
  stor_options_t o = {.path = path, .batch_ms = 5, .queue_max = 10000, .raw_days = 3650};
  stor_db_t *db = NULL;
  uint32_t dev = 0;
  pthread_mutex_lock(&pc_mu);
  ops_left = cut_after; /* files are tracked from their first open here */
  pthread_mutex_unlock(&pc_mu);
  if (stor_open(&o, &db) != 0 || stor_device_id(db, "dust-01", &dev) != 0)
    _exit(5);
  int64_t base = (int64_t)run * READINGS_PER_RUN;
  for (int i = 0; i < READINGS_PER_RUN; i += PACK) {
    stor_reading_t r[PACK];
    for (int k = 0; k < PACK; k++)
      r[k] = (stor_reading_t){.device = dev,
                              .quantity = PROTO_Q_PM10,
                              .t_ms = T0 + (base + i + k) * 1000,
                              .value = (double)(i + k)};
    while (stor_append(db, r, PACK) == -EAGAIN)
      usleep(1000);
    if ((i + PACK) % TICKET_EVERY == 0) {
      stor_ticket_t t = ticket(base + i);
      stor_ticket_result_t res;
      if (stor_ticket_commit(db, &t, &res) == 0 && res.status >= 0)
        say("T %lld\n", base + i);
    }
    if ((i + PACK) % FLUSH_EVERY == 0 && stor_flush(db) == 0)
      say("R %lld\n", i + PACK);
    stor_stats_t st;
    stor_get_stats(db, &st);
    say("R %lld\n", (long long)st.committed);
  }
  /* A stop (SIGTERM): the queue committed, the WAL checkpointed into the
   * database file and removed; cuts land in this too. */
  stor_close(db);
  say("R %lld\n", READINGS_PER_RUN);
  /* No cut came: cut now, which finds nothing unsynced. */
  pthread_mutex_lock(&pc_mu);
  cut();
}

/* ---- checks after each cut */

static int64_t query_int(sqlite3 *db, const char *sql) {
  sqlite3_stmt *st = NULL;
  assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
  assert_int_equal(sqlite3_step(st), SQLITE_ROW);
  int64_t v = sqlite3_column_int64(st, 0);
  sqlite3_finalize(st);
  return v;
}

static void check_integrity(int cut_no) {
  sqlite3 *db = NULL;
  sqlite3_stmt *st = NULL;
  assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
  assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &st, NULL), SQLITE_OK);
  assert_int_equal(sqlite3_step(st), SQLITE_ROW);
  const char *ok = (const char *)sqlite3_column_text(st, 0);
  if (!ok || strcmp(ok, "ok") != 0)
    fail_msg("cut %d: integrity_check says %s", cut_no, ok ? ok : "(null)");
  sqlite3_finalize(st);
  /* The rollups hold exactly the raw rows (stor_open rolled up what the
   * cut left pending). */
  /* Raw readings are tail rows and blocks (the compactor moves them in
   * one transaction: a cut leaves either). */
  int64_t raw = query_int(db, "SELECT (SELECT coalesce(sum(n), 0) FROM tail) +"
                              " (SELECT coalesce(sum(n), 0) FROM block)");
  int64_t rolled = query_int(db, "SELECT coalesce(sum(n), 0) FROM roll_1m");
  int64_t counted = query_int(db, "SELECT value FROM counter WHERE name = 'raw_rows'");
  if (raw != rolled || raw != counted)
    fail_msg("cut %d: %lld raw rows, %lld rolled up, counter %lld", cut_no, (long long)raw,
             (long long)rolled, (long long)counted);
  sqlite3_close(db);
}

static void stored_after_cut_is_what_was_promised(void **state) {
  (void)state;
  unsigned seed = (unsigned)getpid();
  const char *env = getenv("POWERCUT_SEED");
  if (env)
    seed = (unsigned)strtoul(env, NULL, 10);
  srand(seed);
  long total_promised = 0;
  int tickets_promised = 0, clean_ends = 0;
  static int64_t ticket_nos[CUTS * (READINGS_PER_RUN / TICKET_EVERY)];
  for (int run = 0; run < CUTS; run++) {
    /* Anywhere in a run, from its open to its stop: a run takes some
     * 65-75 writes and syncs (each commit's WAL frames go in one write,
     * storage/db.c; the stop's checkpoint writes the database file). */
    long cut_after = 1 + rand() % 75;
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
      close(fds[0]);
      report_fd = fds[1];
      child(run, cut_after);
    }
    close(fds[1]);
    FILE *in = fdopen(fds[0], "r");
    assert_non_null(in);
    char line[64];
    long promised = 0;
    bool cut_seen = false;
    while (fgets(line, sizeof(line), in)) {
      long long v = 0;
      if (sscanf(line, "R %lld", &v) == 1 && v > promised)
        promised = (long)v;
      else if (sscanf(line, "T %lld", &v) == 1)
        ticket_nos[tickets_promised++] = v;
      else if (line[0] == 'C')
        cut_seen = true;
    }
    fclose(in);
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0 || !cut_seen)
      fail_msg("cut %d (seed %u, after %ld writes): the child ended with status %d", run, seed,
               cut_after, status);
    clean_ends += promised == READINGS_PER_RUN;
    total_promised += promised;

    /* The database opens (and recovers) through storage itself. */
    stor_options_t o = {.path = path, .batch_ms = 5, .queue_max = 10000, .raw_days = 3650};
    stor_db_t *db = NULL;
    if (stor_open(&o, &db) != 0)
      fail_msg("cut %d (seed %u, after %ld writes): storage does not open", run, seed, cut_after);
    stor_close(db);
    check_integrity(run);

    stor_reader_t *rd = NULL;
    assert_int_equal(stor_reader_open(path, &rd), 0);
    stor_point_t *p = NULL;
    size_t n = 0;
    int64_t since = T0 + (int64_t)run * READINGS_PER_RUN * 1000;
    int rc = stor_query(rd, "dust-01", PROTO_Q_PM10, STOR_STEP_RAW, since,
                        since + READINGS_PER_RUN * 1000, SIZE_MAX, &p, &n);
    if (rc == -ENOENT) /* cut before the device's id was committed */
      n = 0;
    else
      assert_int_equal(rc, 0);
    /* Committed in order, from the head of the queue: the first
     * `promised` readings of the run, each once. */
    if (n < (size_t)promised)
      fail_msg("cut %d (seed %u, after %ld writes): %zu readings stored, %ld committed", run, seed,
               cut_after, n, promised);
    for (size_t i = 0; i < n; i++)
      if (p[i].t_ms != since + (int64_t)i * 1000 || p[i].mean != (double)i)
        fail_msg("cut %d: reading %zu is t=%lld v=%g", run, i, (long long)p[i].t_ms, p[i].mean);
    free(p);
    /* Every ticket answered so far, in this run or an earlier one. */
    static bool stored[CUTS * READINGS_PER_RUN];
    memset(stored, 0, sizeof(stored));
    stor_ticket_t got;
    for (int64_t id = 1; stor_ticket_get(rd, id, &got) == 0; id++)
      if (got.no >= 0 && got.no < CUTS * READINGS_PER_RUN)
        stored[got.no] = true;
    for (int k = 0; k < tickets_promised; k++)
      if (!stored[ticket_nos[k]])
        fail_msg("cut %d (seed %u): ticket %lld was answered but is not stored", run, seed,
                 (long long)ticket_nos[k]);
    stor_reader_close(rd);
  }
  /* The runs' readings are old (T0), so the writer compacted them as they
   * came and at each stop: the cuts fell among compaction steps too. */
  sqlite3 *db = NULL;
  assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
  int64_t blocks = query_int(db, "SELECT count(*) FROM block");
  sqlite3_close(db);
  assert_true(blocks > 0);
  print_message("powercut: %d cuts (seed %u), %ld readings and %d tickets promised, all stored; "
                "%d runs cut after their last flush (in the stop)\n",
                CUTS, seed, total_promised, tickets_promised, clean_ends);
}

static int setup(void **state) {
  (void)state;
  snprintf(dir, sizeof(dir), "/tmp/test_powercut.XXXXXX");
  assert_non_null(mkdtemp(dir));
  snprintf(path, sizeof(path), "%s/site.db", dir);
  setenv("TZ", "UTC", 1);
  tzset();
  pc_register();
  return 0;
}

static int teardown(void **state) {
  (void)state;
  static const char *const suffixes[] = {"", "-wal", "-shm", ".lock"};
  char p[160];
  for (size_t i = 0; i < sizeof(suffixes) / sizeof(suffixes[0]); i++) {
    snprintf(p, sizeof(p), "%s%s", path, suffixes[i]);
    unlink(p);
  }
  rmdir(dir);
  return 0;
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(stored_after_cut_is_what_was_promised),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
