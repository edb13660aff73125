/* SQLite at the boundary: result codes become negative errnos here and
 * nowhere else, and raw values get their compact encoding here, so the
 * writer and the readers agree on both. */
#define LOG_MODULE "storage"
#include "common/common.h"
#include "storage/storage_int.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

int stor__err(sqlite3 *db, int rc) {
  switch (rc & 0xff) {
  case SQLITE_OK:
  case SQLITE_ROW:
  case SQLITE_DONE:
    return 0;
  case SQLITE_FULL:
    return -ENOSPC;
  case SQLITE_BUSY:
  case SQLITE_LOCKED:
    return -EBUSY;
  case SQLITE_NOMEM:
    return -ENOMEM;
  case SQLITE_READONLY:
    return -EROFS;
  case SQLITE_PERM:
  case SQLITE_AUTH:
    return -EACCES;
  case SQLITE_CANTOPEN: {
    /* The OS said why (ENOENT for a missing directory, EACCES...). */
    int e = db ? sqlite3_system_errno(db) : 0;
    return e > 0 ? -e : -EACCES;
  }
  case SQLITE_INTERRUPT:
    return -EINTR;
  case SQLITE_TOOBIG:
    return -E2BIG;
  case SQLITE_CONSTRAINT:
    return -EEXIST;
  case SQLITE_SCHEMA:
    return -EAGAIN;
  case SQLITE_MISUSE:
  case SQLITE_RANGE:
    return -EINVAL;
  case SQLITE_CORRUPT:
  case SQLITE_NOTADB:
  case SQLITE_IOERR:
  case SQLITE_PROTOCOL:
  default:
    return -EIO;
  }
}

int stor__fail(sqlite3 *db, int rc, const char *what) {
  const char *msg = db ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
  switch (rc & 0xff) {
  case SQLITE_CORRUPT:
  case SQLITE_NOTADB:
    log_err("%s: %s: the database file is damaged or not a database; restore it from a backup "
            "or move it away to start empty",
            what, msg);
    break;
  default:
    log_err("%s: %s", what, msg);
  }
  return stor__err(db, rc);
}

int stor__prepare(sqlite3 *db, const char *sql, sqlite3_stmt **st) {
  int rc = sqlite3_prepare_v3(db, sql, -1, SQLITE_PREPARE_PERSISTENT, st, NULL);
  if (rc != SQLITE_OK)
    return stor__fail(db, rc, "prepare");
  return 0;
}

int stor__exec(sqlite3 *db, const char *sql) {
  int rc = sqlite3_exec(db, sql, NULL, NULL, NULL);
  if (rc != SQLITE_OK)
    return stor__fail(db, rc, sql);
  return 0;
}

int stor__step_done(sqlite3 *db, sqlite3_stmt *st, const char *what) {
  int rc = sqlite3_step(st);
  sqlite3_reset(st);
  sqlite3_clear_bindings(st);
  return rc == SQLITE_DONE ? 0 : stor__fail(db, rc, what);
}

int stor__one_int(sqlite3_stmt *st, int64_t *v, bool *found) {
  int rc = sqlite3_step(st);
  if (found)
    *found = rc == SQLITE_ROW;
  if (rc == SQLITE_ROW)
    *v = sqlite3_column_int64(st, 0);
  sqlite3_reset(st);
  return rc == SQLITE_ROW || rc == SQLITE_DONE ? SQLITE_OK : rc;
}

int stor__query_int(sqlite3 *db, const char *sql, int64_t *v) {
  sqlite3_stmt *st = NULL;
  int rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);
  if (rc == SQLITE_OK) {
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
      *v = sqlite3_column_int64(st, 0);
      rc = SQLITE_OK;
    } else if (rc == SQLITE_DONE) {
      *v = 0;
      rc = SQLITE_OK;
    }
  }
  int ret = rc == SQLITE_OK ? 0 : stor__fail(db, rc, sql);
  sqlite3_finalize(st);
  return ret;
}

int stor__cmp_i64(const void *a, const void *b) {
  int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
  return (x > y) - (x < y);
}

/* Beyond 2^53 / 100 a double has no hundredths to keep. */
#define CENTI_MAX 9.0e13

void stor__bind_value(sqlite3_stmt *st, int col, double v) {
  if (fabs(v) < CENTI_MAX) {
    int64_t c = llround(v * 100.0);
    /* Exact by construction: the reader divides the same way. (-0.0 comes
     * back as 0.0.) */
    if ((double)c / 100.0 == v) {
      sqlite3_bind_int64(st, col, c);
      return;
    }
  }
  sqlite3_bind_double(st, col, v);
}

double stor__column_value(sqlite3_stmt *st, int col) {
  if (sqlite3_column_type(st, col) == SQLITE_INTEGER)
    return (double)sqlite3_column_int64(st, col) / 100.0;
  return sqlite3_column_double(st, col);
}

void *stor__pages_alloc(size_t bytes) {
  void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  return p == MAP_FAILED ? NULL : p;
}

void stor__pages_free(void *base, size_t bytes) {
  if (base)
    munmap(base, bytes);
}

void stor__pages_release(void *base, size_t from, size_t to) {
  static size_t page;
  if (!page)
    page = (size_t)sysconf(_SC_PAGESIZE);
  from = (from + page - 1) / page * page;
  to = to / page * page;
  if (to > from)
    madvise((char *)base + from, to - from, MADV_DONTNEED);
}

void stor__thread_start(const char *name, int nice) {
  pthread_setname_np(pthread_self(), name); /* top -H, perf, /proc/PID/task */
  /* Linux: a thread's nice value is its own (setpriority on its tid). A
   * sandbox may forbid it (EPERM from a seccomp filter): not allowed here,
   * said once for every thread. */
  static atomic_bool told;
  if (setpriority(PRIO_PROCESS, (id_t)gettid(), nice) == 0)
    return;
  if (errno == EPERM || errno == EACCES) {
    if (!atomic_exchange(&told, true))
      log_info("thread priorities are not allowed here (%s): storage threads keep the default",
               strerror(errno));
  } else {
    log_debug("cannot set the nice value of a storage thread to %d: %s", nice, strerror(errno));
  }
}

int64_t stor__floor_div(int64_t a, int64_t b) { return a / b - (a % b < 0); }

bool stor__local_day(int64_t s, int64_t *start, int64_t *end) {
  time_t tt = (time_t)s;
  struct tm tm, next;
  localtime_r(&tt, &tm);
  tm.tm_hour = tm.tm_min = tm.tm_sec = 0;
  tm.tm_isdst = -1;
  next = tm;
  next.tm_mday++;
  int64_t a = (int64_t)mktime(&tm), b = (int64_t)mktime(&next);
  if (a <= s && s < b) {
    *start = a;
    *end = b;
    return true;
  }
  *start = a <= s ? a : s;
  *end = s + 1;
  return false;
}
