/* The receiver's store on SQLite (rx_int.h): one file, one writer (the
 * receiver's writer thread), the decisions made in rxstore.c over the
 * primitives here. BEGIN IMMEDIATE takes the file's write lock for the
 * whole batch, so a site needs no lock of its own, and synchronous=FULL
 * makes a commit durable before the receiver acknowledges. The queries for
 * people open their own read-only connection.
 *
 * Schema (PRAGMA user_version 1):
 *   frames   one row per packet: (mn, qn, pno) is unique, the data segment
 *            as sent, DataTime as Unix seconds
 *   ledger   one row per signed message: (mn, seq) with prev, hash, sig and
 *            state 'chained' (continuous from Seq 1), 'pending' (after a
 *            gap) or 'broken' (its Prev did not match when the gap closed)
 *   seals    one row per hourly seal: 'verified', 'incomplete', 'mismatch'
 *   sites    every MN that completed a handshake
 *   refusals every refused frame or connection, with its reason
 *   rx_*     (version 2) the decoded data, from rxdecode.c's table
 *            (protocol/RX-SCHEMA.md); version 3 makes the environment
 *            tables one row per site and time (RX_WIDE), converted at open
 *   rx_backfill per decoded table, which frames may lack its rows and how far
 *            the backfill has decoded them (rx_int.h, rxstore.c) */
#define LOG_MODULE "rxstore"
#include "common/common.h"
#include "protocol/protocol.h"
#include "storage/rx_int.h"
#include "storage/storage.h"
#include "storage/storage_int.h"

#include <assert.h>
#include <errno.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define BEIJING_MIN 480 /* HJ 212 times are Beijing time, UTC+8 */
#define RX_SCHEMA_VERSION 3

static const char schema[] =
    "CREATE TABLE IF NOT EXISTS frames("
    " id INTEGER PRIMARY KEY, mn TEXT NOT NULL, qn TEXT NOT NULL,"
    " pno INTEGER NOT NULL, pnum INTEGER NOT NULL, st TEXT NOT NULL, cn TEXT NOT NULL,"
    " t INTEGER, data TEXT NOT NULL, received_ms INTEGER NOT NULL,"
    " UNIQUE(mn, qn, pno));"
    "CREATE INDEX IF NOT EXISTS frames_mn_t ON frames(mn, t);"
    "CREATE INDEX IF NOT EXISTS frames_mn_cn_t ON frames(mn, cn, t);"
    "CREATE TABLE IF NOT EXISTS ledger("
    " mn TEXT NOT NULL, seq INTEGER NOT NULL, cn TEXT NOT NULL, qn TEXT NOT NULL,"
    " prev TEXT NOT NULL, hash TEXT NOT NULL, sig TEXT NOT NULL, cert TEXT NOT NULL,"
    " state TEXT NOT NULL, received_ms INTEGER NOT NULL, PRIMARY KEY(mn, seq));"
    "CREATE TABLE IF NOT EXISTS seals("
    " mn TEXT NOT NULL, hour INTEGER NOT NULL, frames INTEGER NOT NULL, digest TEXT NOT NULL,"
    " state TEXT NOT NULL, held INTEGER NOT NULL, checked_ms INTEGER NOT NULL,"
    " PRIMARY KEY(mn, hour));"
    "CREATE TABLE IF NOT EXISTS sites("
    " mn TEXT PRIMARY KEY, subject TEXT NOT NULL, first_seen INTEGER NOT NULL,"
    " last_seen INTEGER NOT NULL, connections INTEGER NOT NULL);"
    "CREATE TABLE IF NOT EXISTS refusals("
    " id INTEGER PRIMARY KEY, mn TEXT NOT NULL, peer TEXT NOT NULL, reason TEXT NOT NULL,"
    " frame TEXT NOT NULL, at_ms INTEGER NOT NULL);"
    "CREATE INDEX IF NOT EXISTS refusals_mn ON refusals(mn);";

#define SQ_TABLES_MAX 64 /* decoded tables whose INSERT is kept prepared */

typedef struct rx_sqlite {
  stor_rx_t base; /* first: the handle rxstore.c knows */
  sqlite3 *db;
  /* each decoded table's INSERT, prepared at its first row (a backfill
   * inserts hundreds of thousands) */
  sqlite3_stmt *row_st[SQ_TABLES_MAX];
} rx_sqlite_t;

static int64_t now_ms(void) { return (int64_t)(sg_now() * 1000.0); }

/* ---- small SQL helpers (the writer's connection) */

static int exec(sqlite3 *db, const char *sql) {
  char *msg = NULL;
  int rc = sqlite3_exec(db, sql, NULL, NULL, &msg);
  if (rc != SQLITE_OK) {
    log_err("%s: %s", sql, msg ? msg : sqlite3_errstr(rc));
    sqlite3_free(msg);
  }
  return rc;
}

/* Prepares `sql` and binds text (s), integer (i) arguments as `types` says. */
static sqlite3_stmt *prep(sqlite3 *db, const char *sql, const char *types, ...) {
  sqlite3_stmt *st = NULL;
  if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) {
    log_err("prepare: %s: %s", sqlite3_errmsg(db), sql);
    return NULL;
  }
  va_list ap;
  va_start(ap, types);
  for (int i = 0; types[i]; i++) {
    if (types[i] == 's')
      sqlite3_bind_text(st, i + 1, va_arg(ap, const char *), -1, SQLITE_TRANSIENT);
    else
      sqlite3_bind_int64(st, i + 1, va_arg(ap, int64_t));
  }
  va_end(ap);
  return st;
}

/* Runs a statement made by prep() to completion. Returns SQLITE_DONE/ROW
 * (the first step's result) or an error, and finalizes it. */
static int run(sqlite3_stmt *st) {
  if (!st)
    return SQLITE_ERROR;
  int rc = sqlite3_step(st);
  if (rc != SQLITE_DONE && rc != SQLITE_ROW)
    log_err("step: %s", sqlite3_errmsg(sqlite3_db_handle(st)));
  sqlite3_finalize(st);
  return rc;
}

/* ---- the primitives (rx_int.h), on the writer's connection */

static sqlite3 *db_of(stor_rx_t *x) { return ((rx_sqlite_t *)(void *)x)->db; }

/* Keeps `rc`'s reason for stor_rx_error() and turns it into 0 or a
 * negative errno. */
static int result(stor_rx_t *x, int rc) {
  if (rc == SQLITE_OK || rc == SQLITE_DONE || rc == SQLITE_ROW)
    return 0;
  rx_sqlite_t *q = (rx_sqlite_t *)(void *)x;
  snprintf(x->error, sizeof(x->error), "%s", sqlite3_errmsg(q->db));
  int e = stor__err(q->db, rc);
  return e ? e : -EIO;
}

/* Runs `st` (from prep) for one row: 1 with the row's statement kept for
 * the caller to read and finalize, 0 when none (finalized), or a negative
 * errno. */
static int row(stor_rx_t *x, sqlite3_stmt *st) {
  if (!st)
    return result(x, SQLITE_ERROR);
  int rc = sqlite3_step(st);
  if (rc == SQLITE_ROW)
    return 1;
  sqlite3_finalize(st);
  return result(x, rc);
}

static int sq_exec(stor_rx_t *x, sqlite3_stmt *st) {
  if (!st)
    return result(x, SQLITE_ERROR);
  return result(x, run(st));
}

static int sq_lock_site(stor_rx_t *x, const char *mn) {
  (void)x, (void)mn; /* BEGIN IMMEDIATE holds the whole file */
  return 0;
}

static int sq_frame_exists(stor_rx_t *x, const char *mn, const char *qn) {
  sqlite3_stmt *st =
      prep(db_of(x), "SELECT 1 FROM frames WHERE mn=? AND qn=? AND pno=1", "ss", mn, qn);
  int rc = row(x, st);
  if (rc == 1)
    sqlite3_finalize(st); /* row() leaves a row's statement to its reader */
  return rc;
}

static int sq_frame_same(stor_rx_t *x, const char *mn, const char *qn, int pno, const char *data,
                         size_t len) {
  sqlite3_stmt *st = prep(db_of(x), "SELECT data FROM frames WHERE mn=? AND qn=? AND pno=?", "ssi",
                          mn, qn, (int64_t)pno);
  int rc = row(x, st);
  if (rc == 1) {
    const void *d = sqlite3_column_blob(st, 0);
    rc = (size_t)sqlite3_column_bytes(st, 0) == len && (len == 0 || memcmp(d, data, len) == 0);
    sqlite3_finalize(st);
  }
  return rc;
}

static int sq_frame_insert(stor_rx_t *x, const stor_rx_msg_t *m, int pno, const char *data,
                           size_t len) {
  sqlite3_stmt *st = prep(db_of(x),
                          "INSERT OR IGNORE INTO frames(mn, qn, pno, pnum, st, cn, t, data, "
                          "received_ms) VALUES(?,?,?,?,?,?,?,?,?)",
                          "ssiiss", m->mn, m->qn, (int64_t)pno, (int64_t)m->npackets, m->st, m->cn);
  if (!st)
    return result(x, SQLITE_ERROR);
  if (m->t >= 0)
    sqlite3_bind_int64(st, 7, m->t);
  sqlite3_bind_text(st, 8, data, (int)len, SQLITE_TRANSIENT);
  sqlite3_bind_int64(st, 9, m->rx_ms);
  int rc = sq_exec(x, st);
  return rc < 0 ? rc : sqlite3_changes(db_of(x)) > 0;
}

static int sq_frame_last_t(stor_rx_t *x, const char *mn, const char *cn, int64_t *t) {
  sqlite3_stmt *st = prep(db_of(x), "SELECT MAX(t) FROM frames WHERE mn=? AND cn=?", "ss", mn, cn);
  int rc = row(x, st);
  if (rc != 1)
    return rc;
  rc = sqlite3_column_type(st, 0) != SQLITE_NULL;
  *t = sqlite3_column_int64(st, 0);
  sqlite3_finalize(st);
  return rc;
}

static int sq_env_frames(stor_rx_t *x, const char *mn, int64_t t0, int64_t t1, rx_data_cb cb,
                         void *arg) {
  sqlite3_stmt *st = prep(db_of(x),
                          "SELECT data FROM frames WHERE mn=? AND cn IN ('2011','2051','2061') "
                          "AND t>=? AND t<? ORDER BY qn, pno",
                          "sii", mn, t0, t1);
  if (!st)
    return result(x, SQLITE_ERROR);
  int rc, e = 0;
  while (e == 0 && (rc = sqlite3_step(st)) == SQLITE_ROW)
    e = cb(arg, (const char *)sqlite3_column_text(st, 0), (size_t)sqlite3_column_bytes(st, 0));
  if (e == 0 && rc != SQLITE_DONE)
    e = result(x, rc);
  sqlite3_finalize(st);
  return e;
}

static void link_from(sqlite3_stmt *st, rx_link_t *l) {
  l->seq = (uint64_t)sqlite3_column_int64(st, 0);
  snprintf(l->state, sizeof(l->state), "%s", (const char *)sqlite3_column_text(st, 1));
  snprintf(l->hash, sizeof(l->hash), "%s", (const char *)sqlite3_column_text(st, 2));
  snprintf(l->prev, sizeof(l->prev), "%s", (const char *)sqlite3_column_text(st, 3));
  sqlite3_finalize(st);
}

static int sq_ledger_get(stor_rx_t *x, const char *mn, uint64_t seq, rx_link_t *out) {
  sqlite3_stmt *st =
      prep(db_of(x), "SELECT seq, state, hash, prev FROM ledger WHERE mn=? AND seq=?", "si", mn,
           (int64_t)seq);
  int rc = row(x, st);
  if (rc == 1)
    link_from(st, out);
  return rc;
}

static int sq_ledger_last_chained(stor_rx_t *x, const char *mn, rx_link_t *out) {
  sqlite3_stmt *st = prep(db_of(x),
                          "SELECT seq, state, hash, prev FROM ledger WHERE mn=? AND "
                          "state='chained' ORDER BY seq DESC LIMIT 1",
                          "s", mn);
  int rc = row(x, st);
  if (rc == 1)
    link_from(st, out);
  return rc;
}

static int sq_ledger_insert(stor_rx_t *x, const stor_rx_msg_t *m, const char *state) {
  char hash[65], prev[65], sig[129];
  hj212_hex(m->sig.hash, 32, hash);
  hj212_hex(m->sig.prev, 32, prev);
  hj212_hex(m->sig.sig, 64, sig);
  return sq_exec(x, prep(db_of(x),
                         "INSERT INTO ledger(mn, seq, cn, qn, prev, hash, sig, cert, state, "
                         "received_ms) VALUES(?,?,?,?,?,?,?,?,?,?)",
                         "sisssssssi", m->mn, (int64_t)m->sig.seq, m->cn, m->qn, prev, hash, sig,
                         m->cert_fp, state, m->rx_ms));
}

static int sq_ledger_set_state(stor_rx_t *x, const char *mn, uint64_t seq, const char *state) {
  return sq_exec(x, prep(db_of(x), "UPDATE ledger SET state=? WHERE mn=? AND seq=?", "ssi", state,
                         mn, (int64_t)seq));
}

static int sq_seal_get(stor_rx_t *x, const char *mn, int64_t hour, rx_seal_t *out) {
  sqlite3_stmt *st =
      prep(db_of(x), "SELECT frames, digest, state, held FROM seals WHERE mn=? AND hour=?", "si",
           mn, hour);
  int rc = row(x, st);
  if (rc != 1)
    return rc;
  out->hour = hour;
  out->frames = sqlite3_column_int64(st, 0);
  snprintf(out->digest, sizeof(out->digest), "%s", (const char *)sqlite3_column_text(st, 1));
  snprintf(out->state, sizeof(out->state), "%s", (const char *)sqlite3_column_text(st, 2));
  out->held = sqlite3_column_int64(st, 3);
  sqlite3_finalize(st);
  return 1;
}

static int sq_seal_put(stor_rx_t *x, const char *mn, const rx_seal_t *s) {
  return sq_exec(x,
                 prep(db_of(x),
                      "INSERT OR REPLACE INTO seals(mn, hour, frames, digest, state, held, "
                      "checked_ms) VALUES(?,?,?,?,?,?,?)",
                      "siissii", mn, s->hour, s->frames, s->digest, s->state, s->held, now_ms()));
}

static int sq_row_insert(stor_rx_t *x, const rx_row_t *r) {
  rx_sqlite_t *q = (rx_sqlite_t *)(void *)x;
  size_t k = (size_t)(r->table - stor__rx_tables);
  assert(k < SQ_TABLES_MAX);
  sqlite3_stmt *st = q->row_st[k];
  if (!st) {
    char sql[2048];
    int n = stor__rx_insert_sql(r->table, sql, sizeof(sql));
    assert(n > 0);
    if (sqlite3_prepare_v3(q->db, sql, -1, SQLITE_PREPARE_PERSISTENT, &st, NULL) != SQLITE_OK) {
      log_err("prepare: %s: %s", sqlite3_errmsg(q->db), sql);
      return result(x, SQLITE_ERROR);
    }
    q->row_st[k] = st;
  }
  int n = sqlite3_bind_parameter_count(st), p = 3;
  sqlite3_bind_text(st, 1, r->mn, -1, SQLITE_TRANSIENT);
  sqlite3_bind_int64(st, 2, r->t);
  if (r->table->is_signed) {
    sqlite3_bind_int64(st, p++, r->seq);
    sqlite3_bind_text(st, p++, r->qn, -1, SQLITE_TRANSIENT);
  }
  for (int i = 0; p <= n; i++, p++)
    if (r->v[i])
      sqlite3_bind_text(st, p, r->v[i], -1, SQLITE_TRANSIENT);
  int rc = sqlite3_step(st);
  if (rc != SQLITE_DONE) {
    log_err("step: %s", sqlite3_errmsg(q->db));
    rc = result(x, rc);
  } else {
    rc = sqlite3_changes(q->db) > 0;
  }
  sqlite3_reset(st);
  sqlite3_clear_bindings(st); /* NULL for the next row's missing values */
  return rc;
}

/* ---- the backfill's primitives (rx_int.h) */

static int sq_backfill_lock(stor_rx_t *x) {
  (void)x; /* BEGIN IMMEDIATE holds the whole file */
  return 1;
}

static int sq_marks(stor_rx_t *x, rx_mark_cb cb, void *arg) {
  sqlite3_stmt *st = prep(db_of(x), "SELECT tbl, done, upto FROM rx_backfill", "");
  if (!st)
    return result(x, SQLITE_ERROR);
  int rc, e = 0;
  while (e == 0 && (rc = sqlite3_step(st)) == SQLITE_ROW)
    e = cb(arg, (const char *)sqlite3_column_text(st, 0), sqlite3_column_int64(st, 1),
           sqlite3_column_int64(st, 2));
  if (e == 0 && rc != SQLITE_DONE)
    e = result(x, rc);
  sqlite3_finalize(st);
  return e;
}

static int sq_mark_done(stor_rx_t *x, const char *table, int64_t done) {
  return sq_exec(x, prep(db_of(x), "UPDATE rx_backfill SET done=? WHERE tbl=?", "is", done, table));
}

static int sq_stored_after(stor_rx_t *x, int64_t after, int64_t upto, const char *cns, int limit,
                           rx_packet_cb cb, void *arg) {
  char sql[1024];
  snprintf(sql, sizeof(sql),
           "SELECT f.id, f.mn, f.qn, f.received_ms, f.pnum, p.pno, p.data FROM"
           " (SELECT id, mn, qn, received_ms, pnum FROM frames WHERE id>? AND id<=? AND pno=1"
           " AND cn IN (%s) ORDER BY id LIMIT ?) f"
           " JOIN frames p ON p.mn=f.mn AND p.qn=f.qn ORDER BY f.id, p.pno",
           cns);
  sqlite3_stmt *st = prep(db_of(x), sql, "iii", after, upto, (int64_t)limit);
  if (!st)
    return result(x, SQLITE_ERROR);
  int rc, e = 0;
  while (e == 0 && (rc = sqlite3_step(st)) == SQLITE_ROW) {
    rx_packet_t p = {
        .id = sqlite3_column_int64(st, 0),
        .mn = (const char *)sqlite3_column_text(st, 1),
        .qn = (const char *)sqlite3_column_text(st, 2),
        .rx_ms = sqlite3_column_int64(st, 3),
        .pnum = sqlite3_column_int(st, 4),
        .pno = sqlite3_column_int(st, 5),
        .data = (const char *)sqlite3_column_blob(st, 6),
        .len = (size_t)sqlite3_column_bytes(st, 6),
    };
    e = cb(arg, &p);
  }
  if (e == 0 && rc != SQLITE_DONE)
    e = result(x, rc);
  sqlite3_finalize(st);
  return e;
}

/* The backfill's bookkeeping, and a row for each decoded table new here
 * (rx_int.h RX_BACKFILL_SCHEMA). */
static int backfill_marks(sqlite3 *db) {
  int rc = exec(db, RX_BACKFILL_SCHEMA);
  for (const rx_table_t *t = stor__rx_tables; rc == SQLITE_OK && t->name; t++) {
    sqlite3_stmt *st = prep(db, RX_BACKFILL_MARK, "s", t->name);
    rc = run(st);
    rc = rc == SQLITE_DONE ? SQLITE_OK : rc;
  }
  return rc;
}

/* The decoded tables (schema version 2), from rxdecode.c's table. */
static int decoded_schema(sqlite3 *db) {
  char sql[4096];
  for (const rx_table_t *t = stor__rx_tables; t->name; t++) {
    int rc = stor__rx_table_sql(t, false, sql, sizeof(sql));
    assert(rc > 0);
    if ((rc = exec(db, sql)) != SQLITE_OK)
      return rc;
  }
  return SQLITE_OK;
}

/* Version 2's environment tables, one row per pollutant, made one row per
 * site and time (RX_WIDE) in the open's transaction: renamed aside, the
 * new table made, the rows converted, the old table dropped. */
static int convert_v2(sqlite3 *db) {
  char sql[4096], old[80];
  for (const rx_table_t *t = stor__rx_tables; t->name; t++) {
    if (t->shape != RX_WIDE)
      continue;
    sqlite3_stmt *st =
        prep(db, "SELECT COUNT(*) FROM pragma_table_info(?) WHERE name='pol'", "s", t->name);
    if (!st)
      return SQLITE_ERROR;
    int has_pol = sqlite3_step(st) == SQLITE_ROW && sqlite3_column_int(st, 0) > 0;
    sqlite3_finalize(st);
    if (!has_pol)
      continue;
    snprintf(old, sizeof(old), "%s_v2", t->name);
    snprintf(sql, sizeof(sql), "ALTER TABLE %s RENAME TO %s", t->name, old);
    int rc = exec(db, sql);
    if (rc == SQLITE_OK) {
      rc = stor__rx_table_sql(t, false, sql, sizeof(sql));
      assert(rc > 0);
      rc = exec(db, sql);
    }
    if (rc == SQLITE_OK) {
      rc = stor__rx_convert_sql(t, old, sql, sizeof(sql));
      assert(rc > 0);
      rc = exec(db, sql);
    }
    int rows = sqlite3_changes(db);
    snprintf(sql, sizeof(sql), "DROP TABLE %s", old);
    if (rc == SQLITE_OK)
      rc = exec(db, sql);
    if (rc != SQLITE_OK)
      return rc;
    log_info("%s: converted to one row per site and time (%d rows)", t->name, rows);
  }
  return SQLITE_OK;
}

static int sq_begin(stor_rx_t *x) { return result(x, exec(db_of(x), "BEGIN IMMEDIATE")); }

static int sq_commit(stor_rx_t *x) { return result(x, exec(db_of(x), "COMMIT")); }

static void sq_rollback(stor_rx_t *x) { exec(db_of(x), "ROLLBACK"); }

static int sq_refusal(stor_rx_t *x, const char *mn, const char *peer, const char *reason,
                      const char *frame, int64_t at_ms) {
  return sq_exec(x, prep(db_of(x),
                         "INSERT INTO refusals(mn, peer, reason, frame, at_ms) VALUES(?,?,?,?,?)",
                         "ssssi", mn, peer, reason, frame ? frame : "", at_ms));
}

static int sq_seen(stor_rx_t *x, const char *mn, const char *subject, int64_t at_ms) {
  return sq_exec(x, prep(db_of(x),
                         "INSERT INTO sites(mn, subject, first_seen, last_seen, connections) "
                         "VALUES(?1,?2,?3,?3,1) ON CONFLICT(mn) DO UPDATE SET subject=?2, "
                         "last_seen=?3, connections=connections+1",
                         "ssi", mn, subject, at_ms / 1000));
}

static int open_db(const char *path, sqlite3 **out) {
  sqlite3 *db = NULL;
  int rc = sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL);
  if (rc != SQLITE_OK) {
    log_err("open %s: %s", path, db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
    sqlite3_close(db);
    return rc;
  }
  sqlite3_busy_timeout(db, 5000);
  if ((rc = exec(db, "PRAGMA journal_mode=WAL")) != SQLITE_OK ||
      (rc = exec(db, "PRAGMA synchronous=FULL")) != SQLITE_OK)
    goto fail;
  sqlite3_stmt *st = NULL;
  int version = 0;
  if (sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &st, NULL) == SQLITE_OK &&
      sqlite3_step(st) == SQLITE_ROW)
    version = sqlite3_column_int(st, 0);
  sqlite3_finalize(st);
  if (version > RX_SCHEMA_VERSION) {
    log_err("%s has schema version %d, newer than this sitegate-rx (%d)", path, version,
            RX_SCHEMA_VERSION);
    rc = SQLITE_ERROR;
    goto fail;
  }
  if (version < 1) {
    if ((rc = exec(db, "BEGIN")) != SQLITE_OK || (rc = exec(db, schema)) != SQLITE_OK ||
        (rc = exec(db, "PRAGMA user_version=1")) != SQLITE_OK || (rc = exec(db, "COMMIT")))
      goto fail;
  }
  /* Version 2 adds the decoded tables (what was stored before stays frames
   * only: sitegate-rx export still shows it); version 3 makes the
   * environment ones wide (convert_v2; a failure leaves the file as it
   * was). They are made at every open
   * (IF NOT EXISTS), as on PostgreSQL, so that a table added to the list
   * later (rx_site_profile) exists in a database made before it. */
  if ((rc = exec(db, "BEGIN")) != SQLITE_OK || (rc = convert_v2(db)) != SQLITE_OK ||
      (rc = decoded_schema(db)) != SQLITE_OK || (rc = backfill_marks(db)) != SQLITE_OK ||
      (rc = exec(db, "PRAGMA user_version=3")) != SQLITE_OK || (rc = exec(db, "COMMIT"))) {
    exec(db, "ROLLBACK");
    goto fail;
  }
  *out = db;
  return SQLITE_OK;
fail:
  log_err("database %s: %s", path, sqlite3_errstr(rc));
  sqlite3_close(db);
  return rc;
}

static void sq_close(stor_rx_t *x) {
  rx_sqlite_t *q = (rx_sqlite_t *)(void *)x;
  for (int i = 0; i < SQ_TABLES_MAX; i++)
    sqlite3_finalize(q->row_st[i]);
  sqlite3_close(q->db);
  free(q);
}

int stor__rx_sqlite_open(const char *path, stor_rx_t **out) {
  *out = NULL;
  rx_sqlite_t *q = calloc(1, sizeof(*q));
  if (!q)
    return -ENOMEM;
  q->base.ops = &stor__rx_sqlite_ops;
  if (open_db(path, &q->db) != SQLITE_OK) {
    free(q);
    return -EIO;
  }
  *out = &q->base;
  return 0;
}

/* ---- read-only queries for people */

static int open_ro(const char *path, sqlite3 **db, char *err, size_t errlen) {
  int rc = sqlite3_open_v2(path, db, SQLITE_OPEN_READONLY, NULL);
  if (rc != SQLITE_OK) {
    snprintf(err, errlen, "cannot open %s: %s", path,
             *db ? sqlite3_errmsg(*db) : sqlite3_errstr(rc));
    sqlite3_close(*db);
    *db = NULL;
    return -ENOENT;
  }
  sqlite3_busy_timeout(*db, 5000);
  return 0;
}

static const char sites_sql[] =
    "SELECT s.mn, s.subject, s.last_seen, s.connections,"
    " (SELECT COUNT(*) FROM frames f WHERE f.mn=s.mn),"
    " (SELECT MAX(received_ms) FROM frames f WHERE f.mn=s.mn),"
    " (SELECT MAX(seq) FROM ledger l WHERE l.mn=s.mn AND l.state='chained'),"
    " (SELECT COUNT(*) FROM ledger l WHERE l.mn=s.mn AND l.state='pending'),"
    " (SELECT COUNT(*) FROM ledger l WHERE l.mn=s.mn AND l.state='broken'),"
    " (SELECT COUNT(*) FROM seals x WHERE x.mn=s.mn AND x.state='verified'),"
    " (SELECT COUNT(*) FROM seals x WHERE x.mn=s.mn AND x.state='incomplete'),"
    " (SELECT COUNT(*) FROM seals x WHERE x.mn=s.mn AND x.state='mismatch'),"
    " (SELECT COUNT(*) FROM refusals r WHERE r.mn=s.mn)"
    " FROM sites s ORDER BY s.mn";

static int sq_sites(const char *path, void (*cb)(void *arg, const stor_rx_site_t *s), void *arg,
                    int64_t *unknown, char *err, size_t errlen) {
  sqlite3 *db;
  if (open_ro(path, &db, err, errlen) != 0)
    return -ENOENT;
  sqlite3_stmt *st = NULL;
  if (sqlite3_prepare_v2(db, sites_sql, -1, &st, NULL) != SQLITE_OK) {
    snprintf(err, errlen, "%s: %s", path, sqlite3_errmsg(db));
    sqlite3_close(db);
    return -EIO;
  }
  int rc;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    stor_rx_site_t s = {
        .mn = (const char *)sqlite3_column_text(st, 0),
        .subject = (const char *)sqlite3_column_text(st, 1),
        .last_seen = sqlite3_column_int64(st, 2),
        .connections = sqlite3_column_int64(st, 3),
        .frames = sqlite3_column_int64(st, 4),
        .has_last_frame = sqlite3_column_type(st, 5) != SQLITE_NULL,
        .last_frame_ms = sqlite3_column_int64(st, 5),
        .ledger_seq = sqlite3_column_int64(st, 6),
        .ledger_pending = sqlite3_column_int64(st, 7),
        .ledger_broken = sqlite3_column_int64(st, 8),
        .seals_verified = sqlite3_column_int64(st, 9),
        .seals_incomplete = sqlite3_column_int64(st, 10),
        .seals_mismatch = sqlite3_column_int64(st, 11),
        .refused = sqlite3_column_int64(st, 12),
    };
    cb(arg, &s);
  }
  sqlite3_finalize(st);
  /* Refusals that never reached a site (a failed handshake). */
  if (sqlite3_prepare_v2(db, "SELECT COUNT(*) FROM refusals WHERE mn=''", -1, &st, NULL) ==
      SQLITE_OK) {
    if (sqlite3_step(st) == SQLITE_ROW)
      *unknown = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
  }
  sqlite3_close(db);
  return rc == SQLITE_DONE ? 0 : -EIO;
}

static int sq_export(const char *path, const char *mn, int64_t since, int64_t until, const char *cn,
                     void (*cb)(void *arg, const stor_rx_frame_t *f), void *arg, char *err,
                     size_t errlen) {
  sqlite3 *db;
  if (open_ro(path, &db, err, errlen) != 0)
    return -ENOENT;
  sqlite3_stmt *st = NULL;
  const char *sql =
      "SELECT COALESCE(f.t, f.received_ms/1000) AS tt, f.received_ms, f.qn, f.pno, f.pnum, f.st,"
      " f.cn, f.data, l.seq, l.state FROM frames f LEFT JOIN ledger l ON l.mn=f.mn AND l.qn=f.qn"
      " WHERE f.mn=?1 AND tt>=?2 AND tt<?3 AND (?4 IS NULL OR f.cn=?4) ORDER BY tt, f.qn, f.pno";
  if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) {
    snprintf(err, errlen, "%s: %s", path, sqlite3_errmsg(db));
    sqlite3_close(db);
    return -EIO;
  }
  sqlite3_bind_text(st, 1, mn, -1, SQLITE_STATIC);
  sqlite3_bind_int64(st, 2, since);
  sqlite3_bind_int64(st, 3, until);
  if (cn)
    sqlite3_bind_text(st, 4, cn, -1, SQLITE_STATIC);
  else
    sqlite3_bind_null(st, 4);
  int rc;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    stor_rx_frame_t f = {
        .t = sqlite3_column_int64(st, 0),
        .received_ms = sqlite3_column_int64(st, 1),
        .qn = (const char *)sqlite3_column_text(st, 2),
        .pno = sqlite3_column_int(st, 3),
        .pnum = sqlite3_column_int(st, 4),
        .cn = (const char *)sqlite3_column_text(st, 6),
        .data = (const char *)sqlite3_column_text(st, 7),
        .data_len = (size_t)sqlite3_column_bytes(st, 7),
        .in_ledger = sqlite3_column_type(st, 8) != SQLITE_NULL,
        .ledger_seq = sqlite3_column_int64(st, 8),
        .ledger_state = (const char *)sqlite3_column_text(st, 9),
    };
    cb(arg, &f);
  }
  sqlite3_finalize(st);
  sqlite3_close(db);
  return rc == SQLITE_DONE ? 0 : -EIO;
}

static int sq_prune(const char *path, int64_t before, const char *month,
                    void (*cb)(void *arg, const char *what, int64_t rows), void *arg, char *err,
                    size_t errlen) {
  (void)month;
  sqlite3 *db = NULL;
  if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL) != SQLITE_OK) {
    snprintf(err, errlen, "cannot open %s: %s", path, db ? sqlite3_errmsg(db) : "out of memory");
    sqlite3_close(db);
    return -ENOENT;
  }
  sqlite3_busy_timeout(db, 5000);
  int rc = 0;
  for (const rx_table_t *t = stor__rx_tables; rc == 0 && t->name; t++) {
    if (!t->by_month)
      continue;
    char sql[128];
    snprintf(sql, sizeof(sql), "DELETE FROM %s WHERE t < ?", t->name);
    sqlite3_stmt *st = prep(db, sql, "i", before);
    if (run(st) != SQLITE_DONE) {
      snprintf(err, errlen, "%s: %s", sql, sqlite3_errmsg(db));
      rc = -EIO;
    } else {
      cb(arg, t->name, sqlite3_changes(db));
    }
  }
  sqlite3_close(db);
  return rc;
}

#define QUERY_COLS_MAX 64

static int sq_query(const char *path, const char *sql, int n, const char *const *params,
                    stor_rx_row_fn cb, void *arg, char *err, size_t errlen) {
  sqlite3 *db;
  if (open_ro(path, &db, err, errlen) != 0)
    return -ENOENT;
  sqlite3_stmt *st = NULL;
  if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) {
    snprintf(err, errlen, "%s: %s", path, sqlite3_errmsg(db));
    sqlite3_close(db);
    return -EIO;
  }
  for (int i = 0; i < n; i++)
    sqlite3_bind_text(st, i + 1, params[i], -1, SQLITE_TRANSIENT);
  int ncol = sqlite3_column_count(st), rc, stop = 0;
  if (ncol > QUERY_COLS_MAX)
    ncol = QUERY_COLS_MAX;
  const char *name[QUERY_COLS_MAX], *value[QUERY_COLS_MAX];
  bool num[QUERY_COLS_MAX];
  for (int i = 0; i < ncol; i++)
    name[i] = sqlite3_column_name(st, i);
  while (!stop && (rc = sqlite3_step(st)) == SQLITE_ROW) {
    for (int i = 0; i < ncol; i++) {
      int ty = sqlite3_column_type(st, i);
      num[i] = ty == SQLITE_INTEGER || ty == SQLITE_FLOAT;
      value[i] = ty == SQLITE_NULL ? NULL : (const char *)sqlite3_column_text(st, i);
    }
    stor_rx_cols_t row = {ncol, name, value, num};
    stop = cb(arg, &row);
  }
  if (!stop && rc != SQLITE_DONE)
    snprintf(err, errlen, "%s", sqlite3_errmsg(db));
  sqlite3_finalize(st);
  sqlite3_close(db);
  return stop || rc == SQLITE_DONE ? 0 : -EIO;
}

const stor_rx_ops_t stor__rx_sqlite_ops = {
    .name = "SQLite",
    .begin = sq_begin,
    .commit = sq_commit,
    .rollback = sq_rollback,
    .close = sq_close,
    .lock_site = sq_lock_site,
    .frame_exists = sq_frame_exists,
    .frame_same = sq_frame_same,
    .frame_insert = sq_frame_insert,
    .frame_last_t = sq_frame_last_t,
    .env_frames = sq_env_frames,
    .ledger_get = sq_ledger_get,
    .ledger_last_chained = sq_ledger_last_chained,
    .ledger_insert = sq_ledger_insert,
    .ledger_set_state = sq_ledger_set_state,
    .seal_get = sq_seal_get,
    .seal_put = sq_seal_put,
    .refusal = sq_refusal,
    .seen = sq_seen,
    .row_insert = sq_row_insert,
    .backfill_lock = sq_backfill_lock,
    .marks = sq_marks,
    .mark_done = sq_mark_done,
    .stored_after = sq_stored_after,
    .prune = sq_prune,
    .query = sq_query,
    .sites = sq_sites,
    .export_frames = sq_export,
};
