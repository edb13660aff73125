/* The receiver's store inside storage/ (storage.h "the receiver's store"):
 * the back ends' interface, for rxstore.c, rxsqlite.c and rxpg.c only.
 *
 * rxstore.c decides (duplicates, the signed chain and its gaps, hourly
 * seals, missed minutes) once, over the small primitives below; each back
 * end implements them and nothing else: SQLite (rxsqlite.c, one file, one
 * writer) and PostgreSQL (rxpg.c, any number of receivers sharing one
 * database, each message unique in the database and each site's chain
 * worked on under a lock held in the database until the commit).
 *
 * Every primitive runs inside the batch's transaction on the writer
 * thread and returns 0 (or 1 where it says "found"), or a negative errno
 * with the reason kept for stor_rx_error(): -EAGAIN when the database
 * asks for the transaction again (a deadlock or a race another receiver
 * won: the caller rolls back and retries the batch), -ENOTCONN when the
 * connection is lost (the back end reconnects at the next begin). */
#ifndef SITEGATE_RX_INT_H
#define SITEGATE_RX_INT_H

#include "storage/storage.h"

#include <stdint.h>

#define RX_LOCKED_MAX 64 /* sites locked in one transaction, remembered */

/* One link of a site's chain as stored. */
typedef struct rx_link {
  uint64_t seq;
  char state[16]; /* "chained", "pending", "broken" */
  char hash[65], prev[65];
} rx_link_t;

/* One hourly seal as stored. */
typedef struct rx_seal {
  int64_t hour; /* Unix s, start of the hour */
  int64_t frames, held;
  char digest[65];
  char state[16]; /* "verified", "incomplete", "mismatch" */
} rx_seal_t;

typedef int (*rx_data_cb)(void *arg, const char *data, size_t len);

/* ---- decoded data (rxdecode.c): what the authority asks questions about,
 * one table per kind of record, filled in the transaction that stores the
 * frame. The tables below are the whole description: the schema (both back
 * ends), the insert and the decoding come from them, so a record kind is
 * one entry (protocol/RX-SCHEMA.md is the contract for people). */
typedef enum {
  RX_TEXT,
  RX_INT,
  RX_REAL,
  RX_REAL4, /* PostgreSQL REAL (4 bytes, ~7 digits; out of its range: NULL), SQLite REAL */
} rx_type_t;
typedef enum {
  RX_WHOLE, /* one row per message; a key is looked for in every record, first found */
  RX_EACH,  /* one row per record after the first that has the first column's key */
  RX_WIDE,  /* one row per message, a column per pollutant and figure: each key is a
               whole CP key ("a34002-Avg") looked for in every record; no row when
               none of them is there. A pollutant without columns stays in the frame */
} rx_shape_t;
#define RX_COLS_MAX 40
typedef struct rx_col {
  const char *name, *key; /* SQL column, CP key */
  rx_type_t type;
} rx_col_t;
typedef struct rx_table {
  const char *name, *cn;
  rx_shape_t shape;
  bool is_signed;             /* has seq and qn after mn and t (the ledger's (mn, seq)) */
  bool by_month;              /* PostgreSQL: partitioned by range of t, a partition per month */
  const char *key;            /* the primary key's columns after mn */
  rx_col_t cols[RX_COLS_MAX]; /* up to the first with name NULL */
} rx_table_t;
extern const rx_table_t stor__rx_tables[]; /* up to the first with name NULL */

/* One decoded row: v[i] is the text of cols[i] (NULL: SQL NULL), numbers
 * already checked and written plainly. Valid during the callback only. */
typedef struct rx_row {
  const rx_table_t *table;
  const char *mn, *qn;
  int64_t t;   /* DataTime, Unix seconds */
  int64_t seq; /* signed tables */
  const char *v[RX_COLS_MAX];
} rx_row_t;
typedef int (*rx_row_cb)(void *arg, const rx_row_t *r);

/* Decodes `m` (its CN, DataTime, reassembled CP) into rows for every table
 * of its CN, each passed to `cb`. What the gateway sent wrong (a number
 * that is not one, bytes that are not UTF-8, an escape that is not %XX)
 * becomes NULL or '?', never a refusal: the frame is authentic and stored
 * whatever it says. A message without DataTime has no rows. Returns 0,
 * -ENOMEM, or cb's first non-zero return. Pure: no database. */
int stor__rx_decode(const stor_rx_msg_t *m, rx_row_cb cb, void *arg);
/* CREATE TABLE (and index) statements of `t` for PostgreSQL (`pg`) or
 * SQLite into `out`: the length, or -ENOSPC. */
int stor__rx_table_sql(const rx_table_t *t, bool pg, char *out, size_t cap);
/* The INSERT of a row of `t` with parameters $1 (mn), $2 (t), [$3 seq, $4
 * qn,] then one per column, ON CONFLICT DO NOTHING (both back ends take
 * this text), into `out`: the number of parameters, or -ENOSPC. */
int stor__rx_insert_sql(const rx_table_t *t, char *out, size_t cap);
/* Schema version 2 kept the RX_WIDE tables one row per pollutant (mn, t,
 * pol, vmin, vavg, vmax, flag): the INSERT ... SELECT that converts such a
 * table named `old` into `t` (a row per (mn, t); a pollutant `t` has no
 * column for is left out, its frame keeps it), into `out`: the length, or
 * -ENOSPC. Both back ends take this text. */
int stor__rx_convert_sql(const rx_table_t *t, const char *old, char *out, size_t cap);

/* ---- the backfill (rxstore.c stor_rx_backfill()): frames stored before a
 * decoded table existed (an older receiver, or one without that table's
 * decoder) are decoded afterwards, in bounded steps. rx_backfill keeps, per
 * decoded table, `upto`: the last frame id stored before the table was
 * made (what may lack its rows), and `done`: up to which id its frames are
 * decoded. A table new to a database gets its row in the open's
 * transaction (done 0, upto MAX(frames.id)); frames stored after that are
 * decoded as they arrive. Both back ends take this text. */
#define RX_BACKFILL_SCHEMA                                                                         \
  "CREATE TABLE IF NOT EXISTS rx_backfill(tbl TEXT PRIMARY KEY, done BIGINT NOT NULL,"             \
  " upto BIGINT NOT NULL)"
/* $1: the table's name. WHERE true: SQLite reads ON CONFLICT after a bare
 * FROM as a join's ON. */
#define RX_BACKFILL_MARK                                                                           \
  "INSERT INTO rx_backfill(tbl, done, upto) SELECT CAST($1 AS TEXT), 0, COALESCE(MAX(id), 0)"      \
  " FROM frames WHERE true ON CONFLICT DO NOTHING"

/* One packet of a stored message, as frames holds it. */
typedef struct rx_packet {
  int64_t id; /* frames.id of the message's first packet */
  const char *mn, *qn;
  int64_t rx_ms;
  int pno, pnum;
  const char *data; /* the data segment, `len` bytes */
  size_t len;
} rx_packet_t;
typedef int (*rx_packet_cb)(void *arg, const rx_packet_t *p);
typedef int (*rx_mark_cb)(void *arg, const char *table, int64_t done, int64_t upto);

/* Rebuilds `m` from its stored data segments `segs` (PNO 1..n, `lens[i]`
 * bytes each) as the receiver assembled it when it came: QN, ST, CN, PW,
 * MN and Flag of the first packet, DataTime of its first record (-1 when
 * none), the packets each followed by CRLF, and the packets' CPs joined by
 * ';'. m->packets and m->cp are malloc'ed (rx_msg_free-able; freed here on
 * failure). Returns 0, -EBADMSG with the reason in `err` (a segment that is
 * not a frame's, a PNO out of place), or -ENOMEM. Pure: no database. */
int stor__rx_rebuild(const char *const *segs, const size_t *lens, int n, stor_rx_msg_t *m,
                     char *err, size_t errlen);

typedef struct stor_rx_ops {
  const char *name; /* "SQLite", "PostgreSQL" */
  int (*begin)(stor_rx_t *x);
  int (*commit)(stor_rx_t *x);
  void (*rollback)(stor_rx_t *x);
  void (*close)(stor_rx_t *x);
  /* Holds site `mn` until the end of the transaction (SQLite: a no-op,
   * BEGIN IMMEDIATE holds the whole file). */
  int (*lock_site)(stor_rx_t *x, const char *mn);
  /* 1 when (mn, qn) is stored, else 0. */
  int (*frame_exists)(stor_rx_t *x, const char *mn, const char *qn);
  /* 1 when packet `pno` of (mn, qn) is stored with data segment `data`
   * (`len` bytes), 0 when it is stored with another or not at all. */
  int (*frame_same)(stor_rx_t *x, const char *mn, const char *qn, int pno, const char *data,
                    size_t len);
  /* Stores packet `pno` of `m` (its data segment `data`, `len` bytes):
   * 1 stored, 0 when (mn, qn, pno) was there already. */
  int (*frame_insert)(stor_rx_t *x, const stor_rx_msg_t *m, int pno, const char *data, size_t len);
  /* The latest t of site `mn`'s frames of CN `cn`: 1 with *t, 0 none. */
  int (*frame_last_t)(stor_rx_t *x, const char *mn, const char *cn, int64_t *t);
  /* The data segments of mn's 2011/2051/2061 frames with t0 <= t < t1, in
   * QN (bytewise) and PNO order. */
  int (*env_frames)(stor_rx_t *x, const char *mn, int64_t t0, int64_t t1, rx_data_cb cb, void *arg);
  int (*ledger_get)(stor_rx_t *x, const char *mn, uint64_t seq, rx_link_t *out); /* 1 / 0 */
  int (*ledger_last_chained)(stor_rx_t *x, const char *mn, rx_link_t *out);      /* 1 / 0 */
  int (*ledger_insert)(stor_rx_t *x, const stor_rx_msg_t *m, const char *state);
  int (*ledger_set_state)(stor_rx_t *x, const char *mn, uint64_t seq, const char *state);
  int (*seal_get)(stor_rx_t *x, const char *mn, int64_t hour, rx_seal_t *out); /* 1 / 0 */
  int (*seal_put)(stor_rx_t *x, const char *mn, const rx_seal_t *s); /* insert or replace */
  int (*refusal)(stor_rx_t *x, const char *mn, const char *peer, const char *reason,
                 const char *frame, int64_t at_ms);
  int (*seen)(stor_rx_t *x, const char *mn, const char *subject, int64_t at_ms);
  /* Stores one decoded row: 1 stored, 0 when its key was there already
   * (PostgreSQL: 1, the write is checked at the commit). */
  int (*row_insert)(stor_rx_t *x, const rx_row_t *r);
  /* The backfill's primitives, inside its transaction. `backfill_lock`:
   * 1 when this connection may run a step now, 0 when another receiver is
   * running one (PostgreSQL: a lock held to the end of the transaction;
   * SQLite: always 1, BEGIN IMMEDIATE holds the file). `marks`: every row
   * of rx_backfill to `cb`. `mark_done`: sets a table's done. */
  int (*backfill_lock)(stor_rx_t *x);
  int (*marks)(stor_rx_t *x, rx_mark_cb cb, void *arg);
  int (*mark_done)(stor_rx_t *x, const char *table, int64_t done);
  /* The packets of at most `limit` messages whose first packet has
   * after < id <= upto and a CN of `cns` (an SQL list of literals,
   * "'2051','6011'", made from stor__rx_tables), in id and PNO order. */
  int (*stored_after)(stor_rx_t *x, int64_t after, int64_t upto, const char *cns, int limit,
                      rx_packet_cb cb, void *arg);
  /* Optional (NULL: none): right after begin, takes the locks of the
   * sites of `msgs` and answers at once what deciding them will ask, so
   * that the primitives above answer from memory. A back end whose writes
   * return before the database has answered (PostgreSQL's pipeline)
   * reports their failures at a later call or at the commit, which fail
   * the whole batch. */
  int (*prefetch)(stor_rx_t *x, stor_rx_msg_t *const *msgs, size_t n);
  /* Retention (storage.h stor_rx_prune()): removes the decoded rows of
   * by_month tables with t < `before` (PostgreSQL: drops the partitions of
   * months before `month`, "YYYYMM"), on a connection of its own. */
  int (*prune)(const char *target, int64_t before, const char *month,
               void (*cb)(void *arg, const char *what, int64_t rows), void *arg, char *err,
               size_t errlen);
  /* Runs read-only `sql` with text parameters on a connection of its own
   * (rxreport.c's questions), each row to `cb`. */
  int (*query)(const char *target, const char *sql, int n, const char *const *params,
               stor_rx_row_fn cb, void *arg, char *err, size_t errlen);
  /* The read-only queries of storage.h, on a connection of their own. */
  int (*sites)(const char *target, void (*cb)(void *arg, const stor_rx_site_t *s), void *arg,
               int64_t *unknown, char *err, size_t errlen);
  int (*export_frames)(const char *target, const char *mn, int64_t since, int64_t until,
                       const char *cn, void (*cb)(void *arg, const stor_rx_frame_t *f), void *arg,
                       char *err, size_t errlen);
} stor_rx_ops_t;

/* The head of every back end's handle (its first member). */
struct stor_rx {
  const stor_rx_ops_t *ops;
  char error[256]; /* the last failure's reason, for stor_rx_error() */
  /* Sites locked in the current transaction (lock_site once per site). */
  char locked[RX_LOCKED_MAX][HJ212_MN_MAX + 1];
  int n_locked;
};

/* Unix seconds of the start of the Beijing-time month `months` after the
 * one holding `t` (negative: before), and when `name` is not NULL its
 * "YYYYMM" there (16 bytes). */
int64_t stor__rx_month_start(int64_t t, int months, char *name);

/* Each back end's open: 0 or a negative errno, the reason logged. */
int stor__rx_sqlite_open(const char *path, stor_rx_t **out);
int stor__rx_pg_open(const char *uri, stor_rx_t **out);
extern const stor_rx_ops_t stor__rx_sqlite_ops, stor__rx_pg_ops;
const stor_rx_ops_t *stor__rx_ops_for(const char *target);

#endif
