/* The write side: a bounded queue any thread appends to without touching
 * disk, and one writer thread that owns the read-write connection.
 *
 * The writer takes what is queued, at most batch_readings of it, as one
 * batch and commits it in one transaction (batch.c), so one fsync covers
 * a whole batch. It waits at
 * most batch_ms after the first reading of a batch arrived, less when
 * batch_readings are queued or someone flushes; under load a batch
 * therefore starts as soon as the previous commit ends.
 *
 * Two triggers, because the flash and the queue want opposite things. At
 * a site's pace every commit writes its B-tree pages to the WAL and the
 * checkpoint writes them again, whatever few readings it holds, so the
 * bytes written per reading fall with the window (bench/written.sh, four
 * runs: 825-913 at 300 readings/s with 50 ms windows, 156-237 with 5 s).
 * Under overload a long wait is what must not happen: with a 5 s window
 * and the old half-full queue as its only shortcut, saturated throughput
 * halved (the queue filled before the commit; sensors were told 5.03),
 * as the writer idled until 100,000 readings were queued and then
 * committed them in one go, while a batch of that size takes longer to
 * commit than the rest of the queue takes to fill. The depth trigger
 * keeps batches at a size one commit handles well, and the writer busy:
 * in the same runs (c) gave 70-113 k records/s against 70-119 k on a
 * gateway with 50 ms windows. A queue that filled while the writer was
 * held up (compacting, or waiting for a core) is still taken
 * batch_readings at a time: taken whole, 200,000 readings made one
 * commit of 6 s, and every pack meanwhile was told 5.03.
 *
 * The batch stays in the ring until its commit succeeds: a failed commit
 * (disk full, I/O error, busy) is rolled back and the same readings are
 * retried every second, so nothing stor_append accepted is dropped while
 * the process lives.
 *
 * Rollups and latest values are written late, and readers do not wait
 * for them (batch.c, reader.c): a reader adds the readings its series has
 * pending (tail rows newer than its latest value) to what the rollup
 * tables and `latest` hold, in one read transaction. Each write of them
 * dirties a page or more per series (3,000 series: ~350 KiB on a new
 * database), which at a site's pace cost more than the readings
 * themselves (bench/written.sh: 287 bytes written a reading at 300/s
 * when every 5 s commit wrote them). So a batch writes them only when the
 * compactor or a retention pass needs them rolled up, for stor_flush,
 * when STOR_PEND_MAX minute buckets are set aside, and at the latest
 * roll_ms (STOR_ROLL_FLUSH_MS) after the commit that left some pending;
 * never at close: the next open reads them back from the tail.
 *
 * Work that needs the connection from another thread (device ids,
 * retention on demand, test hooks) is posted as a request and runs on the
 * writer between batches; between batches the writer also runs the
 * chunked retention passes. */
#define LOG_MODULE "storage"
#include "common/common.h"
#include "protocol/protocol.h"
#include "storage/storage_int.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---- requests */

/* With mu held: appends `req` to the writer's list, unless closing. */
static int request_queue(stor_db_t *db, stor_req_t *req) {
  if (db->stopping)
    return -ESHUTDOWN;
  req->done = false;
  req->next = NULL;
  if (db->req_tail)
    db->req_tail->next = req;
  else
    db->req_head = req;
  db->req_tail = req;
  pthread_cond_signal(&db->wake);
  return 0;
}

int64_t stor__request_post(stor_db_t *db, stor_req_t *req) {
  req->on_done = NULL;
  pthread_mutex_lock(&db->mu);
  int rc = request_queue(db, req);
  while (rc == 0 && !req->done)
    pthread_cond_wait(&db->done, &db->mu);
  pthread_mutex_unlock(&db->mu);
  return rc != 0 ? rc : req->result;
}

int stor__request_submit(stor_db_t *db, stor_req_t *req) {
  pthread_mutex_lock(&db->mu);
  int rc = request_queue(db, req);
  pthread_mutex_unlock(&db->mu);
  return rc;
}

/* Records fn's result and tells whoever waits. Writer, outside mu: an
 * on_done callback must be free to post nothing and take its own locks. */
static void request_finish(stor_db_t *db, stor_req_t *req, int64_t result) {
  req->result = result;
  if (req->on_done) {
    req->on_done(db, req); /* req may be gone after this */
    return;
  }
  pthread_mutex_lock(&db->mu);
  req->done = true;
  pthread_cond_broadcast(&db->done);
  pthread_mutex_unlock(&db->mu);
}

void stor__req_complete(stor_db_t *db, stor_req_t *req, int64_t result) {
  request_finish(db, req, result);
}

/* Writer, with mu held: runs the first request without the lock. */
static void request_run(stor_db_t *db) {
  stor_req_t *req = db->req_head;
  db->req_head = req->next;
  if (!db->req_head)
    db->req_tail = NULL;
  pthread_mutex_unlock(&db->mu);
  int64_t result = req->fn(db, req);
  if (result != STOR_REQ_PENDING)
    request_finish(db, req, result);
  pthread_mutex_lock(&db->mu);
}

/* ---- the writer thread */

static double mono_ms_f(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static int64_t wall_ms(void) { return (int64_t)llround(sg_now() * 1000.0); }

/* With mu held: whether pending rollups must be written now or, with
 * `urgent` false, by the next batch. */
static bool roll_due(const stor_db_t *db, uint64_t now, bool urgent) {
  if (!db->roll_pending)
    return false;
  /* Not for stopping: what is pending is read back from the tail at the
   * next open (batch.c), and readers add it meanwhile (reader.c). */
  return db->roll_now || db->flushers > 0 || (!urgent && now >= db->roll_due);
}

/* With mu held: whether to start a batch (or, with nothing queued, a commit
 * of pending rollups alone) now. */
static bool batch_due(const stor_db_t *db, uint64_t now) {
  if (now < db->retry_at || (db->hold && !db->stopping))
    return false;
  if (db->count == 0)
    return roll_due(db, now, false);
  return db->stopping || db->flushers > 0 || db->count >= db->batch_readings ||
         now >= db->first_ms + (uint64_t)db->batch_ms;
}

/* With mu held: until when the writer may sleep. */
static uint64_t next_wake(const stor_db_t *db) {
  uint64_t at = db->next_retention, due = UINT64_MAX;
  uint64_t compact = db->next_compact_check > db->compact_failed_until ? db->next_compact_check
                                                                       : db->compact_failed_until;
  if (compact < at)
    at = compact;
  if (!db->hold || db->stopping) {
    if (db->count > 0)
      due = db->first_ms + (uint64_t)db->batch_ms;
    if (db->roll_pending) {
      uint64_t r = roll_due(db, 0, true) ? 0 : db->roll_due;
      due = r < due ? r : due;
    }
    if (due != UINT64_MAX && db->retry_at > due)
      due = db->retry_at;
  }
  return due < at ? due : at;
}

static void wait_until(stor_db_t *db, uint64_t at_ms) {
  struct timespec ts = {.tv_sec = (time_t)(at_ms / 1000),
                        .tv_nsec = (long)(at_ms % 1000) * 1000000};
  pthread_cond_timedwait(&db->wake, &db->mu, &ts);
}

/* Writer, outside mu: logs a failure once per episode (and again only when
 * the reason changes), and the recovery once. */
static void note_outcome(stor_db_t *db, int rc, size_t n) {
  if (rc == 0) {
    if (db->fail_rc != 0)
      log_info("commit succeeded again after %u failed attempts; %zu readings kept through the "
               "failure are stored",
               db->retries, n);
    db->fail_rc = 0;
    db->retries = 0;
    return;
  }
  if (rc != db->fail_rc && n == 0)
    log_err("cannot write rollups: %s; retrying every %d ms%s", db->errmsg, STOR_RETRY_MS,
            rc == -ENOSPC ? " (new readings are refused until there is room)" : "");
  else if (rc != db->fail_rc)
    log_err("cannot commit %zu readings: %s; keeping them and retrying every %d ms%s", n,
            db->errmsg, STOR_RETRY_MS,
            rc == -ENOSPC ? " (new readings are refused until there is room)" : "");
  db->fail_rc = rc;
  db->retries++;
}

const double STOR_COMMIT_BOUNDS_MS[STOR_COMMIT_BUCKETS] = {1,  2.5, 5,   10,  25,
                                                           50, 100, 250, 500, 1000};

/* Writer, before head moves past the `n` readings it committed: while they
 * are taken the loop thread writes elsewhere in the ring, so the pages
 * wholly inside them can go back to the kernel (a page of the ring holds
 * 170 readings: one page fault per 170 appends). */
static void release_taken(stor_db_t *db, size_t n) {
  size_t sz = sizeof(*db->ring), end = db->head + n;
  if (end <= db->queue_max) {
    stor__pages_release(db->ring, db->head * sz, end * sz);
  } else {
    stor__pages_release(db->ring, db->head * sz, db->queue_max * sz);
    stor__pages_release(db->ring, 0, (end - db->queue_max) * sz);
  }
  stor__batch_release(db, n);
}

/* Writer, with mu held: commits what is queued now, at most
 * batch_readings, and the pending rollups when they are due. */
static void commit_queued(stor_db_t *db) {
  size_t n = db->count < db->batch_readings ? db->count : db->batch_readings;
  uint64_t inserted = 0, dups = 0, seq = db->flush_seq;
  uint64_t began = sg_mono_ms();
  bool flush = db->roll_pending ? roll_due(db, began, false) : db->flushers > 0;
  db->taken = n;
  pthread_mutex_unlock(&db->mu);

  double t0 = mono_ms_f();
  int rc = stor__batch_commit(db, n, flush, &inserted, &dups);
  double took = mono_ms_f() - t0;
  bool pending = stor__roll_pending(db, INT64_MAX);
  note_outcome(db, rc, n);
  if (rc == 0 && n > 0)
    release_taken(db, n);

  pthread_mutex_lock(&db->mu);
  db->taken = 0;
  if (rc == 0 && flush) {
    db->flushed_seq = seq;
    db->roll_now = false;
  }
  if (!pending)
    db->roll_due = 0;
  else if (!db->roll_pending || (rc == 0 && flush))
    /* From the commit's start, not its end: with roll_ms = batch_ms the
     * next batch, which cannot start sooner, then writes them. */
    db->roll_due = began + (uint64_t)db->roll_ms;
  db->roll_pending = pending;
  if (rc == 0 && n == 0) {
    db->st.disk_full = false;
    db->retry_at = 0;
  } else if (rc == 0) {
    db->head = (db->head + n) % db->queue_max;
    db->count -= n;
    db->settled += n;
    db->st.committed += inserted;
    db->st.duplicates += dups;
    db->st.batches++;
    db->st.last_commit_ms = took;
    db->st.commit_ms_sum += took;
    for (int b = 0; b < STOR_COMMIT_BUCKETS; b++)
      db->st.commit_le[b] += took <= STOR_COMMIT_BOUNDS_MS[b];
    db->st.disk_full = false;
    db->retry_at = 0;
  } else {
    db->failures++;
    db->last_err = rc;
    db->st.disk_full = rc == -ENOSPC;
    db->retry_at = sg_mono_ms() + STOR_RETRY_MS;
  }
  pthread_cond_broadcast(&db->done);
}

/* Writer, outside mu: one step of retention, starting a pass if none is
 * running. Returns false when it must wait for a commit of pending
 * rollups: raw rows it would delete are not rolled up yet. */
static bool retention_turn(stor_db_t *db, bool start) {
  if (start) {
    stor__retention_start(db, wall_ms(), NULL);
    return true;
  }
  if (stor__roll_prepare(db) != 0 || stor__roll_pending(db, db->ret.cut_ms[0]))
    return false;
  stor__retention_step(db);
  return true;
}

/* Writer, outside mu: one compaction step over the tail rows before
 * `cut`; -EAGAIN when it must wait for a commit of pending rollups. */
static int64_t compact_turn(stor_db_t *db, int64_t cut, bool brief) {
  int64_t rc = stor__roll_prepare(db);
  if (rc == 0)
    rc = stor__compact_step(db, cut, brief);
  return rc;
}

/* ---- free pages
 *
 * A compaction step frees the tail pages its rows took, and retention the
 * blocks it drops. SQLite keeps free pages in the file and reuses them for
 * the next tail rows and blocks, so at a site's pace the free list stays a
 * small part of the file. After a burst (a backlog, or bench/run.sh's
 * saturating runs: a tail of 1.2 M readings, 10.5 MB, compacted into 2.4
 * MB of blocks) it can be most of a young file, and with auto_vacuum =
 * INCREMENTAL (schema.c) it is given back: once the free list holds
 * STOR_VACUUM_MIN_PAGES and a STOR_VACUUM_SHARE-th of the file, whenever
 * nothing is queued, STOR_VACUUM_CHUNK pages a transaction; and at close
 * all of it, whatever its size (once per stop, at most a page moved per
 * page given back: a file left for a copy, a backup or the next start
 * holds no more than it needs). Each page given back is a page moved from
 * the end of the file (written to the WAL and checkpointed), so while the
 * writer runs a smaller free list waits to be reused. */

/* Writer: whether the free list is to be given back; at close whatever
 * its size. */
static bool vacuum_due(stor_db_t *db, bool closing) {
  int64_t pages = 0, free_pages = 0;
  if (!db->incremental || stor__query_int(db->db, "PRAGMA freelist_count", &free_pages) != 0 ||
      stor__query_int(db->db, "PRAGMA page_count", &pages) != 0)
    return false;
  if (closing)
    return free_pages > 0;
  return free_pages >= db->vacuum_min && free_pages * STOR_VACUUM_SHARE >= pages;
}

/* Writer (or the closing thread): gives back `pages` free pages (0: all)
 * in one transaction. 0 or a negative errno, having rolled back. */
static int vacuum_step(stor_db_t *db, int pages) {
  char sql[96];
  snprintf(sql, sizeof(sql), "BEGIN IMMEDIATE; PRAGMA incremental_vacuum(%d); COMMIT", pages);
  int rc = sqlite3_exec(db->db, sql, NULL, NULL, NULL);
  if (rc == SQLITE_OK)
    return 0;
  int err = stor__fail(db->db, rc, "giving back free pages");
  if (!sqlite3_get_autocommit(db->db))
    sqlite3_exec(db->db, "ROLLBACK", NULL, NULL, NULL);
  return err;
}

/* Writer, outside mu: compacts the tail while `all` or while it is a step
 * long (STOR_COMPACT_ROWS readings), committing pending rollups when a
 * step must wait for them. The readings compacted or a negative errno. */
static int64_t compact_now(stor_db_t *db, bool all) {
  int64_t rc = 0, total = 0;
  for (int tries = 0; tries < 4; tries++) {
    for (;;) {
      /* At time 0 no row is old enough: only a tail a step long is due. */
      int64_t cut = stor__compact_due(db, 0, all);
      if (cut == 0 || (rc = compact_turn(db, cut, false)) <= 0)
        break;
      total += rc;
    }
    if (rc < 0 && rc != -EAGAIN)
      return rc;
    if (all ? db->tail_min_t == INT64_MAX : db->tail_rows < STOR_COMPACT_ROWS)
      return total;
    uint64_t ins = 0, dups = 0;
    if ((rc = stor__batch_commit(db, 0, true, &ins, &dups)) != 0)
      return rc;
  }
  return -EAGAIN;
}

/* Writer, at close, once everything queued is committed: a tail a step
 * long (due for a step anyway) is compacted, with the rollups it needs,
 * and then a free list worth it is given back whole. Shorter tails stay:
 * compacting 90,000 fresh readings at stop wrote 36 more bytes a reading
 * (storage_int.h). */
static void close_tidy(stor_db_t *db) {
  if (db->tail_rows >= STOR_COMPACT_ROWS) {
    int64_t rc = compact_now(db, false);
    if (rc < 0)
      log_warn("%s: compaction at close: %s; the next start goes on with it", db->path,
               strerror((int)-rc));
  }
  if (vacuum_due(db, true))
    vacuum_step(db, 0);
}

static void *writer_main(void *arg) {
  stor_db_t *db = arg;
  stor__thread_start("sg-writer", STOR_WRITER_NICE);
  unsigned close_tries = 0;
  bool retention_owed = false; /* under load, batches and retention alternate */
  bool compact_owed = false;   /* and so do batches and compaction steps */
  pthread_mutex_lock(&db->mu);
  for (;;) {
    if (db->req_head) {
      request_run(db);
      continue;
    }
    uint64_t now = sg_mono_ms();
    bool due = batch_due(db, now);
    if (!db->stopping && !db->roll_now && (db->ret.active || now >= db->next_retention) &&
        (!due || retention_owed)) {
      bool start = !db->ret.active;
      if (start)
        db->next_retention = now + STOR_RETENTION_EVERY_MS;
      retention_owed = false;
      pthread_mutex_unlock(&db->mu);
      bool went = retention_turn(db, start);
      pthread_mutex_lock(&db->mu);
      if (!went) {
        db->roll_now = true;
        db->roll_pending = true;
      }
      continue;
    }
    /* Compaction gives way to ingest: with a batch due it runs only once
     * the tail holds STOR_COMPACT_BURST readings (a burst is compacted
     * after it), a brief step after each commit. */
    if (!db->stopping && !db->roll_now && !db->ret.active && now >= db->next_compact_check &&
        now >= db->compact_failed_until &&
        (!due || (compact_owed && db->tail_rows >= STOR_COMPACT_BURST))) {
      compact_owed = false;
      int64_t cut = stor__compact_due(db, wall_ms(), false);
      if (cut == 0) {
        db->next_compact_check = now + STOR_COMPACT_CHECK_MS;
        continue;
      }
      pthread_mutex_unlock(&db->mu);
      int64_t rc = compact_turn(db, cut, due);
      pthread_mutex_lock(&db->mu);
      if (rc == 0) /* nothing it may take yet: a commit looks again */
        db->next_compact_check = sg_mono_ms() + STOR_COMPACT_CHECK_MS;
      else if (rc < 0) /* logged; the tail keeps the readings meanwhile */
        db->compact_failed_until = sg_mono_ms() + STOR_COMPACT_CHECK_MS;
      else
        db->next_vacuum_check = 0; /* it freed the rows' pages */
      continue;
    }
    /* Free pages go back when nothing is queued (above). */
    if (!due && db->count == 0 && !db->stopping && !db->ret.active && db->incremental &&
        now >= db->next_vacuum_check) {
      pthread_mutex_unlock(&db->mu);
      bool more = vacuum_due(db, false) && vacuum_step(db, STOR_VACUUM_CHUNK) == 0;
      pthread_mutex_lock(&db->mu);
      if (!more)
        db->next_vacuum_check = sg_mono_ms() + STOR_COMPACT_CHECK_MS;
      continue;
    }
    if (due) {
      commit_queued(db);
      retention_owed = true;
      compact_owed = true;
      db->next_compact_check = 0; /* the tail grew: look again (in memory, cheap) */
      if (db->stopping && db->count > 0 && ++close_tries >= STOR_CLOSE_TRIES) {
        log_err("closing with %zu readings that could not be committed", db->count);
        break;
      }
      continue;
    }
    if (db->stopping && db->count == 0)
      break;
    wait_until(db, next_wake(db));
  }
  bool tidy = db->count == 0;
  pthread_mutex_unlock(&db->mu);
  stor__retention_cancel(db, -ESHUTDOWN);
  if (tidy)
    close_tidy(db);
  pthread_mutex_lock(&db->mu);
  db->exited = true;
  pthread_cond_broadcast(&db->done);
  pthread_mutex_unlock(&db->mu);
  return NULL;
}

/* ---- the WAL through a write buffer
 *
 * SQLite writes each WAL frame as two pwrite calls, its 24-byte header and
 * its page; a batch of 10,000 series writes some 30,000 frames, and the
 * calls cost the writer more than a fifth of its time (measured in
 * schema.c). The writer's connection therefore opens the WAL through this
 * VFS, which gathers contiguous writes into STOR_WAL_BUF bytes and writes
 * them in one call. Nothing is kept from the disk longer than SQLite
 * expects: the buffer is written before every sync (a commit is durable
 * exactly as before), read of what it holds, size, truncation, file
 * control and close, and a failed write drops it, as SQLite then rolls
 * back and writes those frames again. Every other file, and every other
 * connection, is the default VFS's. */
typedef struct wal_file {
  sqlite3_file base;
  sqlite3_file *real; /* the default VFS's file, right after this struct */
  unsigned char *buf;
  sqlite3_int64 off; /* where buf[0] goes */
  int len;
} wal_file_t;

static sqlite3_vfs wal_vfs, *root_vfs;

/* stor_open's report while it runs on this thread (NULL otherwise): a
 * written buffer is work done, and some long steps write without running
 * statements (migration 12's VACUUM copies the new file back through the
 * WAL in one call). */
static _Thread_local stor_opener_t *wal_opener;

static int wal_flush(wal_file_t *f) {
  if (f->len == 0)
    return SQLITE_OK;
  int rc = f->real->pMethods->xWrite(f->real, f->buf, f->len, f->off);
  f->len = 0;
  stor__opening_tick(wal_opener);
  return rc;
}

static int wal_close(sqlite3_file *p) {
  wal_file_t *f = (wal_file_t *)p;
  int rc = wal_flush(f), rc2 = f->real->pMethods->xClose(f->real);
  free(f->buf);
  return rc != SQLITE_OK ? rc : rc2;
}

static int wal_read(sqlite3_file *p, void *out, int amt, sqlite3_int64 off) {
  wal_file_t *f = (wal_file_t *)p;
  if (f->len > 0 && off < f->off + f->len && off + amt > f->off) {
    int rc = wal_flush(f);
    if (rc != SQLITE_OK)
      return rc;
  }
  return f->real->pMethods->xRead(f->real, out, amt, off);
}

static int wal_write(sqlite3_file *p, const void *data, int amt, sqlite3_int64 off) {
  wal_file_t *f = (wal_file_t *)p;
  if (f->len > 0 && off == f->off + f->len && f->len + amt <= STOR_WAL_BUF) {
    memcpy(f->buf + f->len, data, (size_t)amt);
    f->len += amt;
    return SQLITE_OK;
  }
  int rc = wal_flush(f);
  if (rc != SQLITE_OK)
    return rc;
  if (amt >= STOR_WAL_BUF)
    return f->real->pMethods->xWrite(f->real, data, amt, off);
  memcpy(f->buf, data, (size_t)amt);
  f->off = off;
  f->len = amt;
  return SQLITE_OK;
}

static int wal_truncate(sqlite3_file *p, sqlite3_int64 size) {
  wal_file_t *f = (wal_file_t *)p;
  int rc = wal_flush(f);
  return rc != SQLITE_OK ? rc : f->real->pMethods->xTruncate(f->real, size);
}

static int wal_sync(sqlite3_file *p, int flags) {
  wal_file_t *f = (wal_file_t *)p;
  int rc = wal_flush(f);
  return rc != SQLITE_OK ? rc : f->real->pMethods->xSync(f->real, flags);
}

static int wal_size(sqlite3_file *p, sqlite3_int64 *size) {
  wal_file_t *f = (wal_file_t *)p;
  int rc = wal_flush(f);
  return rc != SQLITE_OK ? rc : f->real->pMethods->xFileSize(f->real, size);
}

static int wal_lock(sqlite3_file *p, int lock) {
  wal_file_t *f = (wal_file_t *)p;
  return f->real->pMethods->xLock(f->real, lock);
}

static int wal_unlock(sqlite3_file *p, int lock) {
  wal_file_t *f = (wal_file_t *)p;
  return f->real->pMethods->xUnlock(f->real, lock);
}

static int wal_reserved(sqlite3_file *p, int *out) {
  wal_file_t *f = (wal_file_t *)p;
  return f->real->pMethods->xCheckReservedLock(f->real, out);
}

static int wal_control(sqlite3_file *p, int op, void *arg) {
  wal_file_t *f = (wal_file_t *)p;
  int rc = wal_flush(f);
  return rc != SQLITE_OK ? rc : f->real->pMethods->xFileControl(f->real, op, arg);
}

static int wal_sector(sqlite3_file *p) {
  wal_file_t *f = (wal_file_t *)p;
  return f->real->pMethods->xSectorSize(f->real);
}

static int wal_device(sqlite3_file *p) {
  wal_file_t *f = (wal_file_t *)p;
  return f->real->pMethods->xDeviceCharacteristics(f->real);
}

static const sqlite3_io_methods wal_io = {
    .iVersion = 1,
    .xClose = wal_close,
    .xRead = wal_read,
    .xWrite = wal_write,
    .xTruncate = wal_truncate,
    .xSync = wal_sync,
    .xFileSize = wal_size,
    .xLock = wal_lock,
    .xUnlock = wal_unlock,
    .xCheckReservedLock = wal_reserved,
    .xFileControl = wal_control,
    .xSectorSize = wal_sector,
    .xDeviceCharacteristics = wal_device,
};

static int wal_open(sqlite3_vfs *vfs, const char *name, sqlite3_file *p, int flags, int *out) {
  (void)vfs;
  if (!(flags & SQLITE_OPEN_WAL)) /* the file is the default VFS's own */
    return root_vfs->xOpen(root_vfs, name, p, flags, out);
  wal_file_t *f = (wal_file_t *)p;
  memset(f, 0, sizeof(*f));
  f->real = (sqlite3_file *)(f + 1);
  if (!(f->buf = malloc(STOR_WAL_BUF)))
    return SQLITE_NOMEM;
  int rc = root_vfs->xOpen(root_vfs, name, f->real, flags, out);
  if (rc != SQLITE_OK) {
    free(f->buf);
    f->buf = NULL;
    return rc;
  }
  f->base.pMethods = &wal_io;
  return SQLITE_OK;
}

static int wal_delete(sqlite3_vfs *v, const char *name, int sync) {
  (void)v;
  return root_vfs->xDelete(root_vfs, name, sync);
}
static int wal_access(sqlite3_vfs *v, const char *name, int flags, int *out) {
  (void)v;
  return root_vfs->xAccess(root_vfs, name, flags, out);
}
static int wal_full_path(sqlite3_vfs *v, const char *name, int n, char *out) {
  (void)v;
  return root_vfs->xFullPathname(root_vfs, name, n, out);
}
static void *wal_dl_open(sqlite3_vfs *v, const char *name) {
  (void)v;
  return root_vfs->xDlOpen(root_vfs, name);
}
static void wal_dl_error(sqlite3_vfs *v, int n, char *msg) {
  (void)v;
  root_vfs->xDlError(root_vfs, n, msg);
}
static void (*wal_dl_sym(sqlite3_vfs *v, void *h, const char *sym))(void) {
  (void)v;
  return root_vfs->xDlSym(root_vfs, h, sym);
}
static void wal_dl_close(sqlite3_vfs *v, void *h) {
  (void)v;
  root_vfs->xDlClose(root_vfs, h);
}
static int wal_random(sqlite3_vfs *v, int n, char *out) {
  (void)v;
  return root_vfs->xRandomness(root_vfs, n, out);
}
static int wal_sleep(sqlite3_vfs *v, int us) {
  (void)v;
  return root_vfs->xSleep(root_vfs, us);
}
static int wal_time(sqlite3_vfs *v, double *out) {
  (void)v;
  return root_vfs->xCurrentTime(root_vfs, out);
}
static int wal_last_error(sqlite3_vfs *v, int n, char *out) {
  (void)v;
  return root_vfs->xGetLastError(root_vfs, n, out);
}
static int wal_time64(sqlite3_vfs *v, sqlite3_int64 *out) {
  (void)v;
  return root_vfs->xCurrentTimeInt64(root_vfs, out);
}

static int wal_vfs_rc = SQLITE_ERROR;
static void wal_vfs_init(void) {
  if (!(root_vfs = sqlite3_vfs_find(NULL)) || root_vfs->iVersion < 2)
    return;
  wal_vfs = (sqlite3_vfs){
      .iVersion = 2,
      .szOsFile = (int)sizeof(wal_file_t) + root_vfs->szOsFile,
      .mxPathname = root_vfs->mxPathname,
      .zName = "sitegate-wal",
      .xOpen = wal_open,
      .xDelete = wal_delete,
      .xAccess = wal_access,
      .xFullPathname = wal_full_path,
      .xDlOpen = wal_dl_open,
      .xDlError = wal_dl_error,
      .xDlSym = wal_dl_sym,
      .xDlClose = wal_dl_close,
      .xRandomness = wal_random,
      .xSleep = wal_sleep,
      .xCurrentTime = wal_time,
      .xGetLastError = wal_last_error,
      .xCurrentTimeInt64 = wal_time64,
  };
  wal_vfs_rc = sqlite3_vfs_register(&wal_vfs, 0);
}

/* The writer's VFS: "sitegate-wal", or NULL (the default) if it cannot be. */
static const char *writer_vfs(void) {
  static pthread_once_t once = PTHREAD_ONCE_INIT;
  pthread_once(&once, wal_vfs_init);
  return wal_vfs_rc == SQLITE_OK ? wal_vfs.zName : NULL;
}

/* ---- what the open is doing (stor_opening_fn) */

static void opening_call(stor_opener_t *op, uint64_t now) {
  op->last_ms = now;
  op->o.step_s = (double)(now - op->step_ms) / 1000.0;
  op->fn(op->arg, &op->o);
}

void stor__opening_step(stor_opener_t *op, int schema, const char *fmt, ...) {
  if (!op || !op->fn)
    return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(op->what, sizeof(op->what), fmt, ap);
  va_end(ap);
  op->o.what = op->what;
  op->o.schema = schema;
  op->step_ms = sg_mono_ms();
  opening_call(op, op->step_ms);
}

void stor__opening_tick(stor_opener_t *op) {
  if (!op || !op->fn || !op->o.what)
    return;
  uint64_t now = sg_mono_ms();
  if (now - op->last_ms >= (uint64_t)op->every_ms)
    opening_call(op, now);
}

/* SQLite's progress handler: 0 lets the statement go on. */
static int opening_on_progress(void *arg) {
  stor__opening_tick(arg);
  return 0;
}

/* ---- open and close */

static int set_journal_wal(stor_db_t *db) {
  sqlite3_stmt *st = NULL;
  int rc = sqlite3_prepare_v2(db->db, "PRAGMA journal_mode = WAL", -1, &st, NULL);
  if (rc == SQLITE_OK)
    rc = sqlite3_step(st);
  int ret = 0;
  if (rc != SQLITE_ROW) {
    ret = stor__fail(db->db, rc, db->path);
  } else if (strcmp((const char *)sqlite3_column_text(st, 0), "wal") != 0) {
    log_err("%s: cannot switch to WAL mode (journal_mode is %s); is it on a network file system?",
            db->path, (const char *)sqlite3_column_text(st, 0));
    ret = -EIO;
  }
  sqlite3_finalize(st);
  return ret;
}

static int open_connection(stor_db_t *db, const stor_options_t *opt) {
  char sql[256];
  int64_t pages = 0;
  int rc = sqlite3_open_v2(db->path, &db->db,
                           SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                           writer_vfs());
  if (rc != SQLITE_OK)
    return stor__fail(db->db, rc, db->path);
  sqlite3_busy_timeout(db->db, STOR_BUSY_TIMEOUT_MS);
  if ((rc = stor__query_int(db->db, "PRAGMA page_count", &pages)) != 0)
    return rc;
  /* Only a new file takes a page size (WAL mode fixes it afterwards) and
   * an auto_vacuum mode (a file that has tables keeps its own until a
   * VACUUM: schema.c's migration 12). */
  if (pages == 0 &&
      (rc = stor__exec(db->db, "PRAGMA page_size = " STR(
                                   STOR_PAGE_SIZE) "; PRAGMA auto_vacuum = INCREMENTAL")) != 0)
    return rc;
  if ((rc = set_journal_wal(db)) != 0)
    return rc;
  /* synchronous=FULL: a commit survives a power cut, at one fsync of the
   * WAL per batch. secure_delete=FAST: Debian builds with it ON, which
   * rewrites every page retention frees. Checkpoints are the
   * checkpointer's (checkpoint.c), not the commit's. */
  snprintf(sql, sizeof(sql),
           "PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON; PRAGMA cache_size = -%d;"
           "PRAGMA secure_delete = FAST; PRAGMA wal_autocheckpoint = 0;"
           "PRAGMA journal_size_limit = %d;",
           STOR_CACHE_KIB, STOR_WAL_PAGES * STOR_PAGE_SIZE);
  if ((rc = stor__exec(db->db, sql)) != 0)
    return rc;
  if (opt->max_page_count > 0) {
    snprintf(sql, sizeof(sql), "PRAGMA max_page_count = %lld", (long long)opt->max_page_count);
    rc = stor__exec(db->db, sql);
  }
  return rc;
}

static int prepare(stor_db_t *db) {
  const struct {
    sqlite3_stmt **st;
    const char *sql;
  } stmts[] = {
      {&db->s_begin, "BEGIN IMMEDIATE"},
      {&db->s_commit, "COMMIT"},
      {&db->s_rollback, "ROLLBACK"},
      {&db->s_dev_get, "SELECT id FROM device WHERE name = ?1"},
      {&db->s_dev_put, "INSERT INTO device(name) VALUES(?1)"},
  };
  int rc = 0;
  for (size_t i = 0; rc == 0 && i < sizeof(stmts) / sizeof(stmts[0]); i++)
    rc = stor__prepare(db->db, stmts[i].sql, stmts[i].st);
  return rc;
}

static int init_sync(stor_db_t *db) {
  pthread_condattr_t ca;
  int rc = pthread_condattr_init(&ca);
  if (rc == 0)
    rc = pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  if (rc == 0 && (rc = pthread_cond_init(&db->wake, &ca)) == 0) {
    if ((rc = pthread_cond_init(&db->done, NULL)) == 0) {
      if ((rc = pthread_cond_init(&db->ckpt_wake, NULL)) == 0) {
        if ((rc = pthread_mutex_init(&db->mu, NULL)) != 0)
          pthread_cond_destroy(&db->ckpt_wake);
      }
      if (rc != 0)
        pthread_cond_destroy(&db->done);
    }
    if (rc != 0)
      pthread_cond_destroy(&db->wake);
  }
  pthread_condattr_destroy(&ca);
  return -rc;
}

int stor_open(const stor_options_t *opt, stor_db_t **out) {
  int rc;
  int64_t max_device = 0;
  stor_db_t *db = NULL;
  if (!opt || !opt->path || !out || opt->batch_ms < 0 || opt->raw_days < 0 ||
      opt->max_page_count < 0 || opt->queue_max > UINT32_MAX)
    return -EINVAL;
  *out = NULL;
  if (!(db = calloc(1, sizeof(*db))))
    return -ENOMEM;
  if ((rc = init_sync(db)) != 0) {
    free(db);
    return rc;
  }
  db->sync_ready = true;
  db->batch_ms = opt->batch_ms > 0 ? opt->batch_ms : STOR_DEFAULT_BATCH_MS;
  db->queue_max = opt->queue_max > 0 ? opt->queue_max : STOR_DEFAULT_QUEUE_MAX;
  db->batch_readings = opt->batch_readings > 0 ? opt->batch_readings : STOR_DEFAULT_BATCH_READINGS;
  if (db->batch_readings > db->queue_max / 2) /* the other half fills while it commits */
    db->batch_readings = db->queue_max / 2 > 0 ? db->queue_max / 2 : 1;
  db->raw_days = opt->raw_days > 0 ? opt->raw_days : STOR_DEFAULT_RAW_DAYS;
  db->st.queue_max = db->queue_max;
  db->roll_ms = STOR_ROLL_FLUSH_MS;
  db->vacuum_min = STOR_VACUUM_MIN_PAGES;
  db->path = strdup(opt->path);
  db->ring = stor__pages_alloc(db->queue_max * sizeof(*db->ring));
  if (!db->path || !db->ring) {
    rc = -ENOMEM;
    goto fail;
  }
  /* The report of what takes long here (migrations, reading back what a
   * crash left pending), from this thread only: the writer's connection is
   * the writer thread's once it starts. */
  stor_opener_t op = {.fn = opt->on_opening,
                      .arg = opt->opening_arg,
                      .every_ms = opt->opening_ms > 0 ? opt->opening_ms : STOR_OPENING_MS};
  if ((rc = open_connection(db, opt)) != 0)
    goto fail;
  if (op.fn) {
    sqlite3_progress_handler(db->db, STOR_OPENING_VM_OPS, opening_on_progress, &op);
    wal_opener = &op;
  }
  if ((rc = stor__migrate(db->db, db->path, &op)) != 0 || (rc = prepare(db)) != 0 ||
      (rc = stor__batch_open(db)) != 0 || (rc = stor__retention_open(db)) != 0 ||
      (rc = stor__compact_open(db)) != 0 || (rc = stor__ckpt_start(db)) != 0 ||
      (rc = stor__query_int(db->db, "SELECT max(id) FROM device", &max_device)) != 0)
    goto fail;
  db->max_device = (uint32_t)max_device;
  int64_t vacuum_mode = 0;
  if ((rc = stor__query_int(db->db, "PRAGMA auto_vacuum", &vacuum_mode)) != 0)
    goto fail;
  db->incremental = vacuum_mode == 2;
  db->next_retention = sg_mono_ms() + STOR_RETENTION_FIRST_MS;
  /* What a crash left without rollups (raw rows newer than their series'
   * latest value) is rolled up now; failing that, by the writer. */
  uint64_t ins = 0, dups = 0;
  stor__opening_step(&op, 0, "reading back the readings not rolled up yet");
  if (stor__batch_commit(db, 0, true, &ins, &dups) != 0) {
    log_warn("%s: cannot write the rollups a crash left unwritten yet: %s; retrying", db->path,
             db->errmsg);
    db->roll_pending = true;
    db->roll_due = sg_mono_ms();
  }
  sqlite3_progress_handler(db->db, 0, NULL, NULL);
  wal_opener = NULL;
  if ((rc = -pthread_create(&db->thread, NULL, writer_main, db)) != 0) {
    log_err("%s: cannot start the writer thread: %s", db->path, strerror(-rc));
    goto fail;
  }
  db->started = true;
  *out = db;
  return 0;

fail:
  if (db->db)
    sqlite3_progress_handler(db->db, 0, NULL, NULL);
  wal_opener = NULL;
  stor_close(db);
  return rc;
}

void stor_close(stor_db_t *db) {
  if (!db)
    return;
  if (db->started) {
    pthread_mutex_lock(&db->mu);
    db->stopping = true;
    pthread_cond_signal(&db->wake);
    pthread_mutex_unlock(&db->mu);
    pthread_join(db->thread, NULL);
  }
  stor__ckpt_stop(db);
  if (db->started) {
    /* Leave one self-contained file behind: fold the WAL in and empty it. */
    int rc = sqlite3_wal_checkpoint_v2(db->db, NULL, SQLITE_CHECKPOINT_TRUNCATE, NULL, NULL);
    if (rc != SQLITE_OK)
      log_warn("%s: checkpoint at close: %s", db->path, sqlite3_errmsg(db->db));
  }
  sqlite3_stmt *stmts[] = {db->s_begin, db->s_commit, db->s_rollback, db->s_dev_get, db->s_dev_put};
  for (size_t i = 0; i < sizeof(stmts) / sizeof(stmts[0]); i++)
    sqlite3_finalize(stmts[i]);
  stor__batch_free(db);
  stor__retention_free(db);
  stor__compact_free(db);
  if (sqlite3_close(db->db) != SQLITE_OK)
    log_warn("%s: close: %s", db->path, sqlite3_errmsg(db->db));
  if (db->sync_ready) {
    pthread_mutex_destroy(&db->mu);
    pthread_cond_destroy(&db->wake);
    pthread_cond_destroy(&db->done);
    pthread_cond_destroy(&db->ckpt_wake);
  }
  stor__pages_free(db->ring, db->queue_max * sizeof(*db->ring));
  free(db->path);
  free(db);
}

/* ---- the loop thread's side */

/* With mu held: whether stor_append may take `r`. The queue must never hold
 * a reading a commit would refuse, or that commit would fail forever. */
static bool reading_ok(const stor_db_t *db, const stor_reading_t *r) {
  return r->device != 0 && r->device <= db->max_device && stor_reading_check(r, NULL, 0) == 0;
}

int stor_reading_check(const stor_reading_t *r, char *err, size_t errlen) {
  const char *why = r->quantity >= PROTO_Q_COUNT ? "its quantity is unknown"
                    : r->t_ms < 0                ? "its time is before 1970"
                    : !isfinite(r->value)        ? "its value is not a finite number"
                                                 : NULL;
  if (!why)
    return 0;
  if (err)
    snprintf(err, errlen, "%s", why);
  return -EINVAL;
}

int stor_append(stor_db_t *db, const stor_reading_t *r, size_t n) {
  int rc = 0;
  if (!db || !r || n == 0)
    return -EINVAL;
  pthread_mutex_lock(&db->mu);
  for (size_t i = 0; rc == 0 && i < n; i++)
    if (!reading_ok(db, &r[i]))
      rc = -EINVAL;
  if (rc != 0) {
    /* rc is -EINVAL already */
  } else if (db->st.disk_full) {
    rc = -ENOSPC;
  } else if (db->stopping || db->queue_max - db->count < n) {
    rc = -EAGAIN;
  } else {
    size_t waiting = db->count - db->taken;
    size_t tail = (db->head + db->count) % db->queue_max;
    size_t first = db->queue_max - tail < n ? db->queue_max - tail : n;
    memcpy(&db->ring[tail], r, first * sizeof(*r));
    memcpy(&db->ring[0], r + first, (n - first) * sizeof(*r));
    db->count += n;
    db->appended += n;
    if (waiting == 0)
      db->first_ms = sg_mono_ms();
    /* The writer sleeps until a batch is due; wake it when one may start
     * its clock or must start now. */
    if (waiting == 0 || (waiting < db->batch_readings && waiting + n >= db->batch_readings))
      pthread_cond_signal(&db->wake);
  }
  pthread_mutex_unlock(&db->mu);
  return rc;
}

int stor_flush(stor_db_t *db) {
  int rc = 0;
  if (!db)
    return -EINVAL;
  pthread_mutex_lock(&db->mu);
  uint64_t target = db->appended, failures = db->failures, want = ++db->flush_seq;
  db->flushers++;
  pthread_cond_signal(&db->wake);
  /* Rollups too: the commit that writes them begins after this call. */
  while (db->settled < target || (db->roll_pending && db->flushed_seq < want)) {
    if (db->failures != failures) {
      rc = db->last_err;
      break;
    }
    if (db->exited) {
      rc = -ESHUTDOWN;
      break;
    }
    pthread_cond_wait(&db->done, &db->mu);
  }
  db->flushers--;
  pthread_mutex_unlock(&db->mu);
  return rc;
}

void stor_get_stats(stor_db_t *db, stor_stats_t *st) {
  pthread_mutex_lock(&db->mu);
  *st = db->st;
  st->queued = db->count;
  pthread_mutex_unlock(&db->mu);
}

/* ---- requests */

static int64_t device_fn(stor_db_t *db, stor_req_t *req) {
  int64_t id = 0;
  sqlite3_stmt *get = db->s_dev_get, *put = db->s_dev_put;
  sqlite3_bind_text(get, 1, req->name, -1, SQLITE_STATIC);
  int rc = sqlite3_step(get);
  if (rc == SQLITE_ROW) {
    id = sqlite3_column_int64(get, 0);
    rc = SQLITE_OK;
  } else if (rc == SQLITE_DONE) {
    sqlite3_bind_text(put, 1, req->name, -1, SQLITE_STATIC);
    rc = sqlite3_step(put);
    if (rc == SQLITE_DONE) {
      id = sqlite3_last_insert_rowid(db->db);
      rc = SQLITE_OK;
    }
  }
  if (rc != SQLITE_OK)
    id = stor__fail(db->db, rc, "register device");
  else if (id <= 0 || id > UINT32_MAX)
    id = -ERANGE; /* ids are handed out in order; 4 billion devices is not a site */
  sqlite3_reset(get);
  sqlite3_reset(put);
  sqlite3_clear_bindings(get);
  sqlite3_clear_bindings(put);
  if (id > 0) {
    pthread_mutex_lock(&db->mu);
    if ((uint32_t)id > db->max_device)
      db->max_device = (uint32_t)id;
    pthread_mutex_unlock(&db->mu);
  }
  return id;
}

int stor_device_id(stor_db_t *db, const char *name, uint32_t *id) {
  if (!db || !name || !*name || strlen(name) > 255 || !id)
    return -EINVAL;
  stor_req_t req = {.fn = device_fn, .name = name};
  int64_t rc = stor__request_post(db, &req);
  if (rc < 0)
    return (int)rc;
  *id = (uint32_t)rc;
  return 0;
}

/* All of a site's devices in one transaction: one fsync, not one per device
 * (10,000 devices took 40 s to register one by one). */
static int64_t devices_fn(stor_db_t *db, stor_req_t *req) {
  int rc = sqlite3_exec(db->db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
  if (rc != SQLITE_OK)
    return stor__fail(db->db, rc, "register devices");
  int64_t result = 0;
  for (int64_t i = 0; i < req->arg && result == 0; i++) {
    stor_req_t one = {.name = req->names[i]};
    int64_t id = device_fn(db, &one);
    if (id < 0)
      result = id;
    else
      req->ids[i] = (uint32_t)id;
  }
  rc = sqlite3_exec(db->db, result == 0 ? "COMMIT" : "ROLLBACK", NULL, NULL, NULL);
  if (rc != SQLITE_OK && result == 0) {
    result = stor__fail(db->db, rc, "register devices");
    sqlite3_exec(db->db, "ROLLBACK", NULL, NULL, NULL);
  }
  return result;
}

int stor_device_ids(stor_db_t *db, const char *const *names, size_t n, uint32_t *ids) {
  if (!db || (n && (!names || !ids)))
    return -EINVAL;
  for (size_t i = 0; i < n; i++)
    if (!names[i] || !*names[i] || strlen(names[i]) > 255)
      return -EINVAL;
  if (n == 0)
    return 0;
  stor_req_t req = {.fn = devices_fn, .names = names, .ids = ids, .arg = (int64_t)n};
  int64_t rc = stor__request_post(db, &req);
  return rc < 0 ? (int)rc : 0;
}

static int64_t retention_fn(stor_db_t *db, stor_req_t *req) {
  stor__retention_start(db, req->arg, req);
  return STOR_REQ_PENDING;
}

int64_t stor_retention_run(stor_db_t *db, int64_t now_ms) {
  if (!db)
    return -EINVAL;
  stor_req_t req = {.fn = retention_fn, .arg = now_ms};
  return stor__request_post(db, &req);
}

/* ---- test hooks */

void stor__test_hold(stor_db_t *db, bool hold) {
  pthread_mutex_lock(&db->mu);
  db->hold = hold;
  pthread_cond_signal(&db->wake);
  pthread_mutex_unlock(&db->mu);
}

void stor__test_roll_ms(stor_db_t *db, int ms) {
  pthread_mutex_lock(&db->mu);
  if (db->roll_due)
    db->roll_due += (uint64_t)ms - (uint64_t)db->roll_ms;
  db->roll_ms = ms;
  pthread_cond_signal(&db->wake);
  pthread_mutex_unlock(&db->mu);
}

static int64_t max_pages_fn(stor_db_t *db, stor_req_t *req) {
  char sql[64];
  int64_t pages = 0;
  snprintf(sql, sizeof(sql), "PRAGMA max_page_count = %lld", (long long)req->arg);
  int rc = stor__query_int(db->db, sql, &pages);
  return rc != 0 ? rc : pages;
}

int64_t stor__test_set_max_page_count(stor_db_t *db, int64_t pages) {
  stor_req_t req = {.fn = max_pages_fn, .arg = pages};
  return stor__request_post(db, &req);
}

/* Compacts the whole tail, committing pending rollups first when a step
 * asks for them. */
static int64_t compact_fn(stor_db_t *db, stor_req_t *req) {
  (void)req;
  db->next_vacuum_check = 0;
  return compact_now(db, true);
}

static int64_t vacuum_min_fn(stor_db_t *db, stor_req_t *req) {
  db->vacuum_min = req->arg;
  db->next_vacuum_check = 0;
  return 0;
}

void stor__test_vacuum_min(stor_db_t *db, int64_t pages) {
  stor_req_t req = {.fn = vacuum_min_fn, .arg = pages};
  stor__request_post(db, &req);
}

int64_t stor__test_compact(stor_db_t *db) {
  stor_req_t req = {.fn = compact_fn};
  return stor__request_post(db, &req);
}

static int64_t step_fn(stor_db_t *db, stor_req_t *req) {
  uint64_t ins = 0, dups = 0; /* the rollups a step waits for, first */
  int rc = stor__batch_commit(db, 0, true, &ins, &dups);
  return rc != 0 ? rc : compact_turn(db, INT64_MAX, req->arg != 0);
}

int64_t stor__test_step(stor_db_t *db, bool brief) {
  stor_req_t req = {.fn = step_fn, .arg = brief};
  return stor__request_post(db, &req);
}
