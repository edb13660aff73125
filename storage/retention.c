/* Retention: what is kept, and deleting the rest without stalling ingest.
 *
 * Policy: raw readings are kept raw_days (31 by default; the decoders
 * accept a sensor's backlog back to the same horizon), per-minute rollups
 * STOR_MINUTE_DAYS (400: a year of minute detail plus a month to compare
 * with), hourly and daily rollups, devices, series and latest values
 * forever (a series' daily rows are a few kB per year).
 *
 * A pass visits the series in id order and deletes, per series, the
 * blocks wholly older than the cut (a block straddling it stays until it
 * is wholly old: raw readings are kept *at least* raw_days) through the
 * blocks' (series, t0) index; then the minute rollups older than their
 * cut, of every series at once, from the start of roll_1m (keyed (t,
 * series), schema.c version 13): a range delete, no scan. Its last step
 * deletes the tail rows older than the cut (rare: the compactor keeps the
 * tail young). It runs as many short
 * transactions of at most STOR_RETENTION_CHUNK rows and STOR_RETENTION_SERIES
 * series, one between two batches, so a reading never waits behind more
 * than one of them. The writer starts a pass an hour after the last one;
 * stor_retention_run() starts one at once and waits for its end. */
#define LOG_MODULE "storage"
#include "common/common.h"
#include "storage/storage_int.h"

#include <errno.h>
#include <stdio.h>

int stor__retention_open(stor_db_t *db) {
  const struct {
    sqlite3_stmt **st;
    const char *sql;
  } stmts[] = {
      {&db->s_next_series, "SELECT id FROM series WHERE id >= ?1 ORDER BY id LIMIT 1"},
      /* The t of the (limit + 1)th oldest row: rows before it are `limit`. */
      {&db->s_bound[0],
       "SELECT t0 FROM block WHERE series = ?1 AND t0 < ?2 ORDER BY t0 LIMIT 1 OFFSET ?3"},
      /* The key of the (limit + 1)th oldest minute row before the cut. */
      {&db->s_bound[1],
       "SELECT t, series FROM roll_1m WHERE t < ?2 ORDER BY t, series LIMIT 1 OFFSET ?3"},
      {&db->s_delete[0], "DELETE FROM block WHERE series = ?1 AND t0 < ?2 AND t1 < ?3 RETURNING n"},
      {&db->s_delete[1], "DELETE FROM roll_1m WHERE (t, series) < (?2, ?1)"},
  };
  int rc = 0;
  for (size_t i = 0; rc == 0 && i < sizeof(stmts) / sizeof(stmts[0]); i++)
    rc = stor__prepare(db->db, stmts[i].sql, stmts[i].st);
  return rc;
}

void stor__retention_free(stor_db_t *db) {
  sqlite3_stmt *stmts[] = {db->s_next_series, db->s_bound[0], db->s_bound[1], db->s_delete[0],
                           db->s_delete[1]};
  for (size_t i = 0; i < sizeof(stmts) / sizeof(stmts[0]); i++)
    sqlite3_finalize(stmts[i]);
}

void stor__retention_start(stor_db_t *db, int64_t now_ms, stor_req_t *req) {
  /* A pass already running gives way; its caller learns what it did. */
  if (db->ret.active && db->ret.req)
    stor__req_complete(db, db->ret.req, db->ret.deleted);
  db->ret.active = true;
  db->ret.cut_ms[0] = now_ms - (int64_t)db->raw_days * 86400000;
  db->ret.cut_ms[1] = now_ms / 1000 - (int64_t)STOR_MINUTE_DAYS * 86400;
  db->ret.series = 0;
  db->ret.table = 0;
  db->ret.deleted = 0;
  db->ret.req = req;
}

void stor__retention_cancel(stor_db_t *db, int64_t result) {
  if (db->ret.active && db->ret.req)
    stor__req_complete(db, db->ret.req, result);
  db->ret.active = false;
  db->ret.req = NULL;
}

/* Deletes at most `budget` rows older than `cut` from `table`: 0 the
 * blocks of one series, 1 the minute rollups of every series (`series`
 * unused); *more says whether older rows remain. */
static int delete_some(stor_db_t *db, int table, int64_t series, int64_t cut, int64_t budget,
                       int64_t *deleted, bool *more) {
  sqlite3_stmt *bound = db->s_bound[table], *del = db->s_delete[table];
  if (table == 0)
    sqlite3_bind_int64(bound, 1, series);
  sqlite3_bind_int64(bound, 2, cut);
  /* Blocks: a budget of rows is about budget / 64 blocks. */
  sqlite3_bind_int64(bound, 3, table == 0 ? 1 + budget / 64 : budget);
  int64_t upto = cut, upto_series = 0; /* minutes: every row before (cut, 0) */
  int rc = sqlite3_step(bound);
  *more = rc == SQLITE_ROW;
  if (rc == SQLITE_ROW) {
    upto = sqlite3_column_int64(bound, 0);
    if (table == 1)
      upto_series = sqlite3_column_int64(bound, 1);
    rc = SQLITE_DONE;
  }
  sqlite3_reset(bound);
  if (rc == SQLITE_DONE) {
    sqlite3_bind_int64(del, 1, table == 0 ? series : upto_series);
    sqlite3_bind_int64(del, 2, upto);
    if (table == 0)
      sqlite3_bind_int64(del, 3, cut);
    *deleted = 0;
    while ((rc = sqlite3_step(del)) == SQLITE_ROW)
      *deleted += sqlite3_column_int64(del, 0); /* a block's readings */
    if (table == 1)
      *deleted = sqlite3_changes64(db->db);
    sqlite3_reset(del);
  }
  return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

/* Finds the next series to visit, at or after db->ret.series;
 * *found is false when the pass has seen them all. */
static int next_series(stor_db_t *db, int64_t from, int64_t *id, bool *found) {
  sqlite3_bind_int64(db->s_next_series, 1, from);
  int rc = sqlite3_step(db->s_next_series);
  *found = rc == SQLITE_ROW;
  if (rc == SQLITE_ROW)
    *id = sqlite3_column_int64(db->s_next_series, 0);
  sqlite3_reset(db->s_next_series);
  return rc == SQLITE_ROW || rc == SQLITE_DONE ? SQLITE_OK : rc;
}

static int step_done(sqlite3_stmt *st) {
  int rc = sqlite3_step(st);
  sqlite3_reset(st);
  return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

void stor__retention_step(stor_db_t *db) {
  int64_t budget = STOR_RETENTION_CHUNK, raw_deleted = 0;
  int64_t series = db->ret.series;
  int table = db->ret.table, visited = 0;
  bool found = true;
  int rc = step_done(db->s_begin);
  /* Table 0: each series' blocks; then table 1: every series' minutes. */
  while (rc == SQLITE_OK && table == 0 && budget > 0 && visited < STOR_RETENTION_SERIES) {
    int64_t id = 0, deleted = 0;
    bool more = false;
    if ((rc = next_series(db, series, &id, &found)) != SQLITE_OK)
      break;
    if (!found) {
      table = 1;
      break;
    }
    rc = delete_some(db, 0, id, db->ret.cut_ms[0], budget, &deleted, &more);
    budget -= deleted;
    raw_deleted += deleted;
    series = more ? id : id + 1; /* more: the budget is spent, resume here next time */
    visited += !more;
  }
  found = true;
  if (rc == SQLITE_OK && table == 1 && budget > 0) {
    int64_t deleted = 0;
    bool more = false;
    rc = delete_some(db, 1, 0, db->ret.cut_ms[1], budget, &deleted, &more);
    found = more;
  }
  if (rc == SQLITE_OK && !found) {
    /* The pass's end: tail rows whose readings are all older than the
     * cut (a pack's lie within STOR_PACK_SPAN_MS of its t). */
    char sql[128];
    int64_t cut = db->ret.cut_ms[0] - (STOR_PACK_SPAN_MS - 1);
    int64_t gone = 0;
    snprintf(sql, sizeof(sql), "SELECT coalesce(sum(n), 0) FROM tail WHERE t < %lld",
             (long long)cut);
    rc = stor__query_int(db->db, sql, &gone) == 0 ? SQLITE_OK : SQLITE_ERROR;
    if (rc == SQLITE_OK && gone > 0) {
      snprintf(sql, sizeof(sql), "DELETE FROM tail WHERE t < %lld", (long long)cut);
      rc = sqlite3_exec(db->db, sql, NULL, NULL, NULL);
    }
    if (rc == SQLITE_OK) {
      raw_deleted += gone;
      db->tail_rows = db->tail_rows > gone ? db->tail_rows - gone : 0;
      if (gone > 0)
        db->reload = true; /* the tail's oldest row is read again */
    }
  }
  if (rc == SQLITE_OK && raw_deleted > 0) {
    sqlite3_bind_int64(db->s_count, 1, -raw_deleted);
    rc = step_done(db->s_count);
  }
  if (rc == SQLITE_OK)
    rc = step_done(db->s_commit);
  if (rc != SQLITE_OK) {
    int err = stor__fail(db->db, rc, "retention");
    if (!sqlite3_get_autocommit(db->db))
      step_done(db->s_rollback);
    stor__retention_cancel(db, err); /* the next hourly pass tries again */
    return;
  }
  db->ret.series = series;
  db->ret.table = table;
  db->ret.deleted += raw_deleted;
  if (!found) {
    if (db->ret.deleted > 0)
      log_info("retention: deleted %lld raw readings older than %d days",
               (long long)db->ret.deleted, db->raw_days);
    stor__retention_cancel(db, db->ret.deleted);
  }
}
