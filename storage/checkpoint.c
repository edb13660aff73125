/* The checkpointer: copies committed WAL pages back into the database file
 * on a thread and connection of its own.
 *
 * SQLite's automatic checkpoint runs inside the commit that crosses the
 * threshold, on the writer, where it costs as much as the commit itself (a
 * read and a write of every page plus an fsync of the database file); on
 * its own thread it overlaps the next batch instead (measured in schema.c).
 * The writer's WAL hook wakes it once the WAL holds STOR_WAL_PAGES pages.
 * A PASSIVE checkpoint never blocks the writer, so under sustained load it
 * may trail it; past STOR_WAL_HARD_PAGES the writer checkpoints itself
 * before going on, which bounds the WAL. The WAL file is trimmed back to
 * STOR_WAL_PAGES when it restarts (journal_size_limit). */
#define LOG_MODULE "storage"
#include "common/common.h"
#include "storage/storage_int.h"

#include <errno.h>
#include <string.h>

/* The writer's WAL hook, after each commit, on the writer thread. */
static int on_wal(void *arg, sqlite3 *conn, const char *name, int pages) {
  stor_db_t *db = arg;
  (void)name;
  if (pages >= STOR_WAL_HARD_PAGES) {
    /* SQLITE_BUSY here means the checkpointer is at it: fine. */
    sqlite3_wal_checkpoint_v2(conn, NULL, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
  } else if (pages >= STOR_WAL_PAGES) {
    pthread_mutex_lock(&db->mu);
    db->ckpt_due = true;
    pthread_cond_signal(&db->ckpt_wake);
    pthread_mutex_unlock(&db->mu);
  }
  return SQLITE_OK;
}

static void *ckpt_main(void *arg) {
  stor_db_t *db = arg;
  stor__thread_start("sg-checkpoint", STOR_CKPT_NICE);
  int failing = SQLITE_OK;
  pthread_mutex_lock(&db->mu);
  for (;;) {
    while (!db->ckpt_due && !db->ckpt_stop)
      pthread_cond_wait(&db->ckpt_wake, &db->mu);
    if (db->ckpt_stop)
      break;
    db->ckpt_due = false;
    pthread_mutex_unlock(&db->mu);
    int rc = sqlite3_wal_checkpoint_v2(db->ckpt_db, NULL, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
    /* BUSY: the writer is checkpointing itself. Anything else is logged
     * once; the WAL keeps the data safe meanwhile. */
    if (rc != SQLITE_OK && rc != SQLITE_BUSY && rc != failing)
      log_warn("%s: checkpoint: %s", db->path, sqlite3_errmsg(db->ckpt_db));
    failing = rc == SQLITE_BUSY ? failing : rc;
    pthread_mutex_lock(&db->mu);
  }
  pthread_mutex_unlock(&db->mu);
  return NULL;
}

int stor__ckpt_start(stor_db_t *db) {
  int rc =
      sqlite3_open_v2(db->path, &db->ckpt_db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL);
  if (rc != SQLITE_OK)
    return stor__fail(db->ckpt_db, rc, db->path);
  sqlite3_busy_timeout(db->ckpt_db, STOR_BUSY_TIMEOUT_MS);
  /* The checkpoint syncs the database file as this connection says. It
   * copies pages through a buffer of its own, so its page cache stays
   * small. */
  if ((rc = stor__exec(db->ckpt_db, "PRAGMA synchronous = FULL; PRAGMA cache_size = 16")) != 0)
    return rc;
  if ((rc = -pthread_create(&db->ckpt_thread, NULL, ckpt_main, db)) != 0) {
    log_err("%s: cannot start the checkpoint thread: %s", db->path, strerror(-rc));
    return rc;
  }
  db->ckpt_started = true;
  sqlite3_wal_hook(db->db, on_wal, db);
  return 0;
}

void stor__ckpt_stop(stor_db_t *db) {
  if (db->ckpt_started) {
    pthread_mutex_lock(&db->mu);
    db->ckpt_stop = true;
    pthread_cond_signal(&db->ckpt_wake);
    pthread_mutex_unlock(&db->mu);
    pthread_join(db->ckpt_thread, NULL);
    db->ckpt_started = false;
  }
  if (db->db)
    sqlite3_wal_hook(db->db, NULL, NULL);
  sqlite3_close(db->ckpt_db);
  db->ckpt_db = NULL;
}
