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

/* Each back end's open: 0 or a negative errno, the reason logged. */
int stor__rx_sqlite_open(const char *path, stor_rx_t **out);
int stor__rx_pg_open(const char *uri, stor_rx_t **out);
extern const stor_rx_ops_t stor__rx_sqlite_ops, stor__rx_pg_ops;

#endif
