/* The receiver's store on PostgreSQL (rx_int.h), through libpq: the one file
 * that includes libpq's header. Any number of receivers share one database;
 * what makes that safe is in the database, not in a receiver's memory:
 *
 * - a message is unique in the database: (mn, qn, pno) of frames and
 *   (mn, seq) of ledger are UNIQUE, and packets go in with
 *   INSERT ... ON CONFLICT DO NOTHING;
 * - a site's chain is verified and extended under a transaction-scoped
 *   advisory lock on its MN (pg_advisory_xact_lock), taken before the
 *   message is looked for, so two receivers never both extend a chain,
 *   and the second sees the first's commit (READ COMMITTED: each statement
 *   sees what was committed before it began);
 * - the receiver acknowledges only after its own COMMIT returned
 *   (synchronous_commit is PostgreSQL's default, on).
 *
 * A deadlock between two receivers' batches, or a unique violation lost to
 * another receiver, gives -EAGAIN: the writer runs the batch again, and
 * the message is then found as a duplicate. A lost connection gives
 * -ENOTCONN; the next begin resets it.
 *
 * The decoded tables (rxdecode.c) that grow with time, the minute and hour
 * figures, are partitioned by range of t, one partition per Beijing-time
 * month (rx_env_minute_p202611), made by the first receiver that stores a
 * row of that month, under an advisory lock so two receivers never race
 * on the DDL; retention drops whole partitions (stor_rx_prune()).
 *
 * The data segments are bytea: a frame is bytes as sent (a refused one may
 * not even be UTF-8), and a database in UTF-8 must not refuse a batch for
 * one bad byte. Other text goes through text_ok() for the same reason.
 *
 * Speed: a batch is a few round trips, not a few per message. The writer's
 * connection runs in libpq's pipeline mode with its statements prepared
 * once. pg_prefetch() takes the batch's site locks (in one statement, in
 * hash order, so two receivers never deadlock on them) and asks, in the
 * same round trip, everything decide() will ask: which QNs are stored, the
 * sites' latest minute, the seals of the hours touched and the ledger
 * around each Seq. Those answers, and what the batch itself writes, are
 * kept in a per-transaction cache (cache_*), so deciding reads no more;
 * writes are sent without waiting, and their results are read at the next
 * sync point: every PG_PIPE_MAX statements, before a read the cache cannot
 * answer, and at COMMIT. A frame insert that finds its (mn, qn, pno)
 * already there (impossible under the site lock, but the database is the
 * judge) fails the batch with -EAGAIN, and the retry finds the duplicate. */
#define LOG_MODULE "rxpg"
#include "common/common.h"
#include "protocol/protocol.h"
#include "storage/rx_int.h"
#include "storage/storage.h"

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define PG_SCHEMA_VERSION 3
#define PG_MONTHS_KNOWN 64 /* partitions this receiver knows exist */
/* The first key of the receiver's advisory locks ("SG", 0x5347): a site's
 * chain; the next one for the schema. */
#define PG_LOCK_SITE "21319"
#define PG_LOCK_SCHEMA "21320"

static const char schema[] =
    "CREATE TABLE IF NOT EXISTS rx_schema(version INTEGER NOT NULL);"
    "CREATE TABLE IF NOT EXISTS frames("
    " id BIGSERIAL PRIMARY KEY, mn TEXT NOT NULL, qn TEXT NOT NULL,"
    " pno INTEGER NOT NULL, pnum INTEGER NOT NULL, st TEXT NOT NULL, cn TEXT NOT NULL,"
    " t BIGINT, data BYTEA NOT NULL, received_ms BIGINT NOT NULL,"
    " UNIQUE(mn, qn, pno));"
    "CREATE INDEX IF NOT EXISTS frames_mn_t ON frames(mn, t);"
    "CREATE INDEX IF NOT EXISTS frames_mn_cn_t ON frames(mn, cn, t);"
    "CREATE TABLE IF NOT EXISTS ledger("
    " mn TEXT NOT NULL, seq BIGINT NOT NULL, cn TEXT NOT NULL, qn TEXT NOT NULL,"
    " prev TEXT NOT NULL, hash TEXT NOT NULL, sig TEXT NOT NULL, cert TEXT NOT NULL,"
    " state TEXT NOT NULL, received_ms BIGINT NOT NULL, PRIMARY KEY(mn, seq));"
    "CREATE INDEX IF NOT EXISTS ledger_mn_qn ON ledger(mn, qn);"
    "CREATE TABLE IF NOT EXISTS seals("
    " mn TEXT NOT NULL, hour BIGINT NOT NULL, frames BIGINT NOT NULL, digest TEXT NOT NULL,"
    " state TEXT NOT NULL, held BIGINT NOT NULL, checked_ms BIGINT NOT NULL,"
    " PRIMARY KEY(mn, hour));"
    "CREATE TABLE IF NOT EXISTS sites("
    " mn TEXT PRIMARY KEY, subject TEXT NOT NULL, first_seen BIGINT NOT NULL,"
    " last_seen BIGINT NOT NULL, connections BIGINT NOT NULL);"
    "CREATE TABLE IF NOT EXISTS refusals("
    " id BIGSERIAL PRIMARY KEY, mn TEXT NOT NULL, peer TEXT NOT NULL, reason TEXT NOT NULL,"
    " frame BYTEA NOT NULL, at_ms BIGINT NOT NULL);"
    "CREATE INDEX IF NOT EXISTS refusals_mn ON refusals(mn);";

#define PG_PIPE_MAX 512 /* statements sent before their results are read */
#define PG_KEEP_MAX 8   /* results kept from one sync point */

/* What a statement sent in the pipeline must give. */
typedef enum {
  PEND_OK,       /* success */
  PEND_INSERTED, /* success, and at least one row written (else -EAGAIN) */
  PEND_KEEP,     /* success; the result is kept for the caller */
  PEND_SYNC,     /* a sync point */
} pend_kind_t;

typedef struct pend {
  pend_kind_t kind;
  const char *what; /* static: the statement's name, for the reason */
} pend_t;

/* One answer of the per-transaction cache: found or known absent. */
typedef struct cent {
  char key[64];
  bool found;
  union {
    int64_t t;
    rx_link_t link;
    rx_seal_t seal;
  } v;
} cent_t;

typedef struct rx_pg {
  stor_rx_t base; /* first: the handle rxstore.c knows */
  PGconn *conn;
  char *uri;
  bool reset; /* the connection failed: made anew at the next begin */
  bool piped; /* in pipeline mode, statements prepared */
  pend_t pend[PG_PIPE_MAX];
  int n_pend;
  /* The transaction's cache: open addressing over `ents` (index + 1, 0
   * free), cleared at every begin and rollback. */
  cent_t *ents;
  size_t n_ents, cap_ents;
  uint32_t *slots;
  size_t n_slots;
  /* Partitions known to exist (committed), and those made in the current
   * transaction, which join them at its commit. */
  char known[PG_MONTHS_KNOWN][64];
  int n_known, next_known;
  char made[8][64];
  int n_made;
  bool migrated; /* the schema is known to be there */
} rx_pg_t;

static rx_pg_t *pg_of(stor_rx_t *x) { return (rx_pg_t *)(void *)x; }

static PGconn *conn_of(stor_rx_t *x) { return pg_of(x)->conn; }

static int64_t now_ms(void) { return (int64_t)(sg_now() * 1000.0); }

static void on_notice(void *arg, const char *msg) {
  (void)arg;
  log_debug("%s", msg); /* "relation ... already exists, skipping" and the like */
}

/* True when `s` is valid UTF-8 without NUL, which a text column takes. */
static bool text_ok(const char *s) {
  const unsigned char *p = (const unsigned char *)s;
  while (*p) {
    int n = *p < 0x80             ? 0
            : (*p & 0xE0) == 0xC0 ? 1
            : (*p & 0xF0) == 0xE0 ? 2
            : (*p & 0xF8) == 0xF0 ? 3
                                  : -1;
    if (n < 0)
      return false;
    p++;
    for (int i = 0; i < n; i++, p++)
      if ((*p & 0xC0) != 0x80)
        return false;
  }
  return true;
}

/* libpq's message on one line (it may hold "\n\tIs the server running..."). */
static void one_line(const char *msg, char *out, size_t outlen) {
  size_t n = 0;
  for (const char *p = msg; *p && n + 1 < outlen; p++) {
    char ch = *p == '\n' || *p == '\t' ? ' ' : *p;
    if (ch == ' ' && (n == 0 || out[n - 1] == ' '))
      continue;
    out[n++] = ch;
  }
  while (n > 0 && out[n - 1] == ' ')
    n--;
  out[n] = '\0';
}

/* The reason of a failed `res` (or of the connection), kept for
 * stor_rx_error(), as a negative errno. A lost connection is made anew at
 * the next begin. */
static int failure(stor_rx_t *x, PGresult *res, const char *what) {
  PGconn *c = conn_of(x);
  const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
  const char *msg = res ? PQresultErrorMessage(res) : PQerrorMessage(c);
  char one[200];
  one_line(msg && *msg ? msg : "failed", one, sizeof(one));
  snprintf(x->error, sizeof(x->error), "%.48s: %s", what, one);
  int rc = -EIO;
  if (PQstatus(c) != CONNECTION_OK || !res || (state && !strncmp(state, "08", 2)))
    rc = -ENOTCONN;
  else if (state && (!strcmp(state, "40P01") || !strcmp(state, "40001") || !strcmp(state, "23505")))
    rc = -EAGAIN; /* deadlock, serialization failure, a unique race lost */
  else if (state && !strcmp(state, "53100"))
    rc = -ENOSPC;
  if (rc == -ENOTCONN)
    pg_of(x)->reset = true;
  return rc;
}

static int params_ok(stor_rx_t *x, int n, const char *const *v, const int *bin) {
  for (int i = 0; i < n; i++)
    if (v[i] && !(bin && bin[i]) && !text_ok(v[i])) {
      snprintf(x->error, sizeof(x->error), "a parameter is not UTF-8 text");
      return -EINVAL;
    }
  return 0;
}

/* ---- the pipeline (the writer's connection) */

/* Reads the results of everything sent, up to the sync point that ends
 * the list, checking each against what it must give; the PEND_KEEP
 * results go to keep[0..n_keep-1] in order (NULL after a failure; the
 * caller clears them). Returns the first failure, or 0. */
static int drain(stor_rx_t *x, PGresult **keep, int n_keep) {
  rx_pg_t *p = pg_of(x);
  int rc = 0, k = 0;
  for (int i = 0; i < p->n_pend; i++) {
    const pend_t *e = &p->pend[i];
    PGresult *res = PQgetResult(p->conn);
    if (!res) { /* the results stopped: the connection is gone or astray */
      if (rc != -ENOTCONN)
        rc = failure(x, NULL, e->what);
      rc = -ENOTCONN;
      p->reset = true;
      break;
    }
    ExecStatusType s = PQresultStatus(res);
    if (e->kind == PEND_SYNC) {
      if (s != PGRES_PIPELINE_SYNC && !rc)
        rc = failure(x, res, "pipeline");
      PQclear(res);
      continue;
    }
    if (s == PGRES_PIPELINE_ABORTED) { /* after an earlier failure, whose reason is kept */
      if (!rc) {
        snprintf(x->error, sizeof(x->error), "%s: aborted", e->what);
        rc = -EIO;
      }
    } else if (s != PGRES_COMMAND_OK && s != PGRES_TUPLES_OK) {
      if (!rc)
        rc = failure(x, res, e->what);
    } else if (e->kind == PEND_INSERTED && atoi(PQcmdTuples(res)) == 0 && !rc) {
      snprintf(x->error, sizeof(x->error), "%s: stored meanwhile by another receiver", e->what);
      rc = -EAGAIN;
    }
    if (e->kind == PEND_KEEP && k < n_keep) {
      if (!rc) {
        keep[k] = res;
        res = NULL;
      }
      k++;
    }
    PQclear(res);
    /* the NULL that ends this statement's results */
    for (int j = 0; j < 4 && (res = PQgetResult(p->conn)) != NULL; j++)
      PQclear(res);
  }
  p->n_pend = 0;
  if (PQstatus(p->conn) != CONNECTION_OK && rc != -ENOTCONN)
    rc = failure(x, NULL, "pipeline");
  return rc;
}

/* A sync point, and the results up to it (drain()). */
static int pipe_sync(stor_rx_t *x, PGresult **keep, int n_keep) {
  rx_pg_t *p = pg_of(x);
  if (!PQpipelineSync(p->conn)) {
    p->n_pend = 0;
    return failure(x, NULL, "pipeline sync");
  }
  p->pend[p->n_pend++] = (pend_t){PEND_SYNC, "sync"};
  return drain(x, keep, n_keep);
}

/* Notes a statement sent; reads the results when PG_PIPE_MAX are out. */
static int pushed(stor_rx_t *x, int ok, pend_kind_t kind, const char *what) {
  rx_pg_t *p = pg_of(x);
  if (!ok) { /* what is still out cannot be told apart any more: start anew */
    int rc = failure(x, NULL, what);
    p->n_pend = 0;
    p->reset = true;
    return rc == -ENOTCONN ? rc : -ENOTCONN;
  }
  assert(p->n_pend < PG_PIPE_MAX - 1); /* room for the sync point that ends it */
  p->pend[p->n_pend++] = (pend_t){kind, what};
  /* PEND_KEEP answers are read by their sender's own sync point (a few at
   * most: PG_PIPE_MAX keeps room for them). */
  if (kind != PEND_KEEP && p->n_pend >= PG_PIPE_MAX - 16)
    return pipe_sync(x, NULL, 0);
  return 0;
}

/* Sends prepared statement `stmt` without waiting (`bin` marks bytea
 * parameters, with their lengths in `len`). */
static int send_prep(stor_rx_t *x, pend_kind_t kind, const char *stmt, int n, const char *const *v,
                     const int *len, const int *bin) {
  int rc = params_ok(x, n, v, bin);
  if (rc)
    return rc;
  return pushed(x, PQsendQueryPrepared(conn_of(x), stmt, n, v, len, bin, 0), kind, stmt);
}

/* Sends one statement of text `sql` without waiting; `what` is static. */
static int send_sql(stor_rx_t *x, pend_kind_t kind, const char *what, const char *sql, int n,
                    const char *const *v) {
  int rc = params_ok(x, n, v, NULL);
  if (rc)
    return rc;
  return pushed(x, PQsendQueryParams(conn_of(x), sql, n, NULL, v, NULL, NULL, 0), kind, what);
}

/* Runs `sql` with text parameters (`bin` marks which are bytea, with their
 * lengths in `len`) and waits for it (in the pipeline: after everything
 * sent before it). Returns the result (the caller clears it), or NULL with
 * *rc set. */
static PGresult *q(stor_rx_t *x, int *rc, const char *sql, int n, const char *const *v,
                   const int *len, const int *bin) {
  if ((*rc = params_ok(x, n, v, bin)) != 0)
    return NULL;
  if (pg_of(x)->piped) {
    PGresult *keep[1] = {NULL};
    *rc =
        pushed(x, PQsendQueryParams(conn_of(x), sql, n, NULL, v, len, bin, 0), PEND_KEEP, "query");
    if (*rc == 0)
      *rc = pipe_sync(x, keep, 1);
    if (*rc != 0) {
      log_debug("%s", x->error);
      PQclear(keep[0]);
      return NULL;
    }
    return keep[0];
  }
  /* Without parameters: PQexec, which also takes several statements. */
  PGresult *res =
      n ? PQexecParams(conn_of(x), sql, n, NULL, v, len, bin, 0) : PQexec(conn_of(x), sql);
  ExecStatusType s = res ? PQresultStatus(res) : PGRES_FATAL_ERROR;
  if (s == PGRES_COMMAND_OK || s == PGRES_TUPLES_OK) {
    *rc = 0;
    return res;
  }
  *rc = failure(x, res, sql);
  log_debug("%s", x->error);
  PQclear(res);
  return NULL;
}

/* Runs a statement for its effect: 0 or a negative errno. With `rows` not
 * NULL, the number of rows it changed. */
static int qx(stor_rx_t *x, const char *sql, int n, const char *const *v, int *rows) {
  int rc;
  PGresult *res = q(x, &rc, sql, n, v, NULL, NULL);
  if (res && rows)
    *rows = atoi(PQcmdTuples(res));
  PQclear(res);
  return rc;
}

#define I64(buf, v) (snprintf((buf), sizeof(buf), "%" PRId64, (int64_t)(v)), (buf))

/* ---- the transaction's cache: what pg_prefetch() asked and the batch
 * wrote, so deciding reads no more. */

static uint32_t fnv(const char *s) {
  uint32_t h = 2166136261u;
  for (; *s; s++)
    h = (h ^ (unsigned char)*s) * 16777619u;
  return h;
}

static void cache_clear(rx_pg_t *p) {
  p->n_ents = 0;
  if (p->slots)
    memset(p->slots, 0, p->n_slots * sizeof(*p->slots));
}

/* The key of kind `k` ('F' frame, 'T' last t, 'S' seal, 'L' link, 'C'
 * last chained, 'K' lock) into `out` (64 bytes): false when too long,
 * then not cached. */
static bool ckey(char *out, char k, const char *mn, const char *b) {
  int n = snprintf(out, 64, "%c%s\x1f%s", k, mn, b ? b : "");
  return n > 0 && n < 64;
}

static cent_t *cache_find(rx_pg_t *p, const char *key) {
  if (!p->n_slots)
    return NULL;
  for (size_t i = fnv(key) & (p->n_slots - 1);; i = (i + 1) & (p->n_slots - 1)) {
    uint32_t s = p->slots[i];
    if (!s)
      return NULL;
    if (!strcmp(p->ents[s - 1].key, key))
      return &p->ents[s - 1];
  }
}

/* The entry of `key`, made (not found) when new; NULL when out of memory.
 * Valid until the next cache_put(). */
static cent_t *cache_put(rx_pg_t *p, const char *key) {
  cent_t *e = cache_find(p, key);
  if (e)
    return e;
  if (p->n_ents + 1 > p->n_slots / 2) {
    size_t n = p->n_slots ? p->n_slots * 2 : 4096;
    uint32_t *s = calloc(n, sizeof(*s));
    if (!s)
      return NULL;
    free(p->slots);
    p->slots = s;
    p->n_slots = n;
    for (size_t j = 0; j < p->n_ents; j++) {
      size_t i = fnv(p->ents[j].key) & (n - 1);
      while (s[i])
        i = (i + 1) & (n - 1);
      s[i] = (uint32_t)j + 1;
    }
  }
  if (p->n_ents == p->cap_ents) {
    size_t cap = p->cap_ents ? p->cap_ents * 2 : 2048;
    cent_t *v = realloc(p->ents, cap * sizeof(*v));
    if (!v)
      return NULL;
    p->ents = v;
    p->cap_ents = cap;
  }
  e = &p->ents[p->n_ents++];
  memset(e, 0, sizeof(*e));
  snprintf(e->key, sizeof(e->key), "%s", key);
  size_t i = fnv(key) & (p->n_slots - 1);
  while (p->slots[i])
    i = (i + 1) & (p->n_slots - 1);
  p->slots[i] = (uint32_t)p->n_ents;
  return e;
}

/* The cached answer to (k, mn, b), or NULL: ask the database. */
static cent_t *cached(stor_rx_t *x, char k, const char *mn, const char *b) {
  char key[64];
  return ckey(key, k, mn, b) ? cache_find(pg_of(x), key) : NULL;
}

/* Records an answer (found or not); NULL when it cannot be kept. */
static cent_t *remember(stor_rx_t *x, char k, const char *mn, const char *b, bool found) {
  char key[64];
  cent_t *e = ckey(key, k, mn, b) ? cache_put(pg_of(x), key) : NULL;
  if (e)
    e->found = found;
  return e;
}

/* A chained link of `mn`: the last chained one if it is later. */
static void chained_to(stor_rx_t *x, const char *mn, const rx_link_t *l) {
  cent_t *c = cached(x, 'C', mn, NULL);
  if (c && (!c->found || l->seq > c->v.link.seq)) {
    c->found = true;
    c->v.link = *l;
  }
}

/* ---- the primitives */

static int migrate(stor_rx_t *x);
static int pipe_setup(stor_rx_t *x);

static int pg_begin(stor_rx_t *x) {
  rx_pg_t *p = pg_of(x);
  if (p->reset || PQstatus(p->conn) != CONNECTION_OK) {
    /* Anew, not PQreset(): a pipeline cut off mid-way leaves nothing behind. */
    PQfinish(p->conn);
    p->conn = PQconnectdb(p->uri);
    p->piped = false;
    p->n_pend = 0;
    p->reset = false;
    if (!p->conn)
      return -ENOMEM;
    if (PQstatus(p->conn) != CONNECTION_OK)
      return failure(x, NULL, "reconnect");
    PQsetNoticeProcessor(p->conn, on_notice, NULL);
    log_info("connected to the database");
  }
  int rc;
  if (!p->migrated) { /* started while the database was away */
    if ((rc = migrate(x)) != 0)
      return rc;
    p->migrated = true;
  }
  if (!p->piped && (rc = pipe_setup(x)) != 0)
    return rc;
  cache_clear(p);
  return send_sql(x, PEND_OK, "BEGIN", "BEGIN", 0, NULL);
}

static void made_known(rx_pg_t *p) {
  for (int i = 0; i < p->n_made; i++) {
    memcpy(p->known[p->next_known], p->made[i], sizeof(p->made[i]));
    p->next_known = (p->next_known + 1) % PG_MONTHS_KNOWN;
    if (p->n_known < PG_MONTHS_KNOWN)
      p->n_known++;
  }
  p->n_made = 0;
}

static int pg_commit(stor_rx_t *x) {
  rx_pg_t *p = pg_of(x);
  int rc;
  if (p->piped) {
    rc = send_sql(x, PEND_OK, "COMMIT", "COMMIT", 0, NULL);
    if (rc == 0)
      rc = pipe_sync(x, NULL, 0);
  } else {
    rc = qx(x, "COMMIT", 0, NULL, NULL);
  }
  if (rc == 0)
    made_known(p);
  p->n_made = 0;
  return rc;
}

static void pg_rollback(stor_rx_t *x) {
  rx_pg_t *p = pg_of(x);
  p->n_made = 0;
  cache_clear(p);
  char keep[sizeof(x->error)];
  memcpy(keep, x->error, sizeof(keep));
  if (PQstatus(p->conn) == CONNECTION_OK && !p->reset) {
    if (p->piped) {
      if (p->n_pend)
        pipe_sync(x, NULL, 0); /* what was still out: failed anyway */
      if (!p->reset && send_sql(x, PEND_OK, "ROLLBACK", "ROLLBACK", 0, NULL) == 0)
        pipe_sync(x, NULL, 0);
    } else {
      PQclear(PQexec(p->conn, "ROLLBACK"));
    }
  }
  memcpy(x->error, keep, sizeof(keep));
}

static int pg_lock_site(stor_rx_t *x, const char *mn) {
  if (cached(x, 'K', mn, NULL))
    return 0;
  const char *v[] = {mn};
  /* Not waited for: what is sent after it runs once the lock is held. */
  int rc = send_prep(x, PEND_OK, "lock1", 1, v, NULL, NULL);
  if (rc == 0)
    remember(x, 'K', mn, NULL, true);
  return rc;
}

static int pg_frame_exists(stor_rx_t *x, const char *mn, const char *qn) {
  cent_t *e = cached(x, 'F', mn, qn);
  if (e)
    return e->found;
  const char *v[] = {mn, qn};
  int rc;
  PGresult *res =
      q(x, &rc, "SELECT 1 FROM frames WHERE mn=$1 AND qn=$2 AND pno=1", 2, v, NULL, NULL);
  if (res) {
    rc = PQntuples(res) > 0;
    remember(x, 'F', mn, qn, rc);
  }
  PQclear(res);
  return rc;
}

static int pg_frame_same(stor_rx_t *x, const char *mn, const char *qn, int pno, const char *data,
                         size_t len) {
  char b_pno[24];
  const char *v[] = {mn, qn, I64(b_pno, pno), data};
  int lens[] = {0, 0, 0, (int)len};
  int bin[] = {0, 0, 0, 1}; /* bytea, compared by the server */
  int rc;
  PGresult *res =
      q(x, &rc, "SELECT data = $4 FROM frames WHERE mn=$1 AND qn=$2 AND pno=$3", 4, v, lens, bin);
  if (res)
    rc = PQntuples(res) > 0 && !strcmp(PQgetvalue(res, 0, 0), "t");
  PQclear(res);
  return rc;
}

/* Returns 1 at once; a row already there fails the batch at the next
 * sync point (-EAGAIN: the retry finds it). */
static int pg_frame_insert(stor_rx_t *x, const stor_rx_msg_t *m, int pno, const char *data,
                           size_t len) {
  char b_pno[24], b_pnum[24], b_t[24], b_rx[24];
  const char *v[] = {m->mn,
                     m->qn,
                     I64(b_pno, pno),
                     I64(b_pnum, m->npackets),
                     m->st,
                     m->cn,
                     m->t >= 0 ? I64(b_t, m->t) : NULL,
                     data,
                     I64(b_rx, m->rx_ms)};
  int lens[] = {0, 0, 0, 0, 0, 0, 0, (int)len, 0};
  int bin[] = {0, 0, 0, 0, 0, 0, 0, 1, 0};
  int rc = send_prep(x, PEND_INSERTED, "ins_frame", 9, v, lens, bin);
  if (rc)
    return rc;
  remember(x, 'F', m->mn, m->qn, true);
  cent_t *e = m->t >= 0 ? cached(x, 'T', m->mn, m->cn) : NULL;
  if (e && (!e->found || m->t > e->v.t)) {
    e->found = true;
    e->v.t = m->t;
  }
  return 1;
}

static int pg_frame_last_t(stor_rx_t *x, const char *mn, const char *cn, int64_t *t) {
  cent_t *e = cached(x, 'T', mn, cn);
  if (e) {
    if (e->found)
      *t = e->v.t;
    return e->found;
  }
  const char *v[] = {mn, cn};
  int rc;
  PGresult *res = q(x, &rc, "SELECT MAX(t) FROM frames WHERE mn=$1 AND cn=$2", 2, v, NULL, NULL);
  if (res) {
    rc = PQntuples(res) > 0 && !PQgetisnull(res, 0, 0);
    if (rc)
      *t = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
    if ((e = remember(x, 'T', mn, cn, rc)) && rc)
      e->v.t = *t;
  }
  PQclear(res);
  return rc;
}

/* A bytea column asked for as hex ("\x4142..."), back to bytes in `out`
 * (which has room for the text's length): the length. */
static int nibble(char c) {
  return c >= '0' && c <= '9'   ? c - '0'
         : c >= 'a' && c <= 'f' ? c - 'a' + 10
         : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                : -1;
}

static size_t unhex(const char *s, char *out) {
  if (s[0] == '\\' && s[1] == 'x')
    s += 2;
  size_t n = 0;
  for (; s[0] && s[1]; s += 2) { /* not sscanf: a backfill reads millions */
    int hi = nibble(s[0]), lo = nibble(s[1]);
    if (hi < 0 || lo < 0)
      break;
    out[n++] = (char)(hi << 4 | lo);
  }
  return n;
}

static int pg_env_frames(stor_rx_t *x, const char *mn, int64_t t0, int64_t t1, rx_data_cb cb,
                         void *arg) {
  char b0[24], b1[24];
  const char *v[] = {mn, I64(b0, t0), I64(b1, t1)};
  int rc;
  PGresult *res = q(x, &rc,
                    "SELECT data FROM frames WHERE mn=$1 AND cn IN ('2011','2051','2061') "
                    "AND t>=$2 AND t<$3 ORDER BY qn COLLATE \"C\", pno",
                    3, v, NULL, NULL);
  for (int i = 0; res && rc == 0 && i < PQntuples(res); i++) {
    const char *h = PQgetvalue(res, i, 0);
    char *d = malloc(strlen(h) / 2 + 1);
    if (!d) {
      rc = -ENOMEM;
      break;
    }
    rc = cb(arg, d, unhex(h, d));
    free(d);
  }
  PQclear(res);
  return rc;
}

/* Row `row` of `res` (seq, state, hash, prev from column `c0`) into `l`. */
static void link_at(PGresult *res, int row, int c0, rx_link_t *l) {
  l->seq = strtoull(PQgetvalue(res, row, c0), NULL, 10);
  snprintf(l->state, sizeof(l->state), "%s", PQgetvalue(res, row, c0 + 1));
  snprintf(l->hash, sizeof(l->hash), "%s", PQgetvalue(res, row, c0 + 2));
  snprintf(l->prev, sizeof(l->prev), "%s", PQgetvalue(res, row, c0 + 3));
}

static int link_row(PGresult *res, rx_link_t *l) {
  if (PQntuples(res) == 0)
    return 0;
  link_at(res, 0, 0, l);
  return 1;
}

static int pg_ledger_get(stor_rx_t *x, const char *mn, uint64_t seq, rx_link_t *out) {
  char b[24];
  I64(b, seq);
  cent_t *e = cached(x, 'L', mn, b);
  if (e) {
    if (e->found)
      *out = e->v.link;
    return e->found;
  }
  const char *v[] = {mn, b};
  int rc;
  PGresult *res = q(x, &rc, "SELECT seq, state, hash, prev FROM ledger WHERE mn=$1 AND seq=$2", 2,
                    v, NULL, NULL);
  if (res && (rc = link_row(res, out)) >= 0 && (e = remember(x, 'L', mn, b, rc)) && rc)
    e->v.link = *out;
  PQclear(res);
  return rc;
}

static int pg_ledger_last_chained(stor_rx_t *x, const char *mn, rx_link_t *out) {
  cent_t *e = cached(x, 'C', mn, NULL);
  if (e) {
    if (e->found)
      *out = e->v.link;
    return e->found;
  }
  const char *v[] = {mn};
  int rc;
  PGresult *res = q(x, &rc,
                    "SELECT seq, state, hash, prev FROM ledger WHERE mn=$1 AND state='chained' "
                    "ORDER BY seq DESC LIMIT 1",
                    1, v, NULL, NULL);
  if (res && (rc = link_row(res, out)) >= 0 && (e = remember(x, 'C', mn, NULL, rc)) && rc)
    e->v.link = *out;
  PQclear(res);
  return rc;
}

static int pg_ledger_insert(stor_rx_t *x, const stor_rx_msg_t *m, const char *state) {
  char b_seq[24], b_rx[24];
  rx_link_t l = {.seq = m->sig.seq};
  hj212_hex(m->sig.hash, 32, l.hash);
  hj212_hex(m->sig.prev, 32, l.prev);
  snprintf(l.state, sizeof(l.state), "%s", state);
  char sig[129];
  hj212_hex(m->sig.sig, 64, sig);
  const char *v[] = {m->mn,   I64(b_seq, m->sig.seq), m->cn, m->qn, l.prev, l.hash, sig, m->cert_fp,
                     l.state, I64(b_rx, m->rx_ms)};
  int rc = send_prep(x, PEND_OK, "ins_ledger", 10, v, NULL, NULL);
  if (rc)
    return rc;
  cent_t *e = remember(x, 'L', m->mn, b_seq, true);
  if (e)
    e->v.link = l;
  if (!strcmp(state, "chained"))
    chained_to(x, m->mn, &l);
  return 0;
}

static int pg_ledger_set_state(stor_rx_t *x, const char *mn, uint64_t seq, const char *state) {
  char b[24];
  const char *v[] = {state, mn, I64(b, seq)};
  int rc = send_prep(x, PEND_OK, "set_state", 3, v, NULL, NULL);
  if (rc)
    return rc;
  cent_t *e = cached(x, 'L', mn, b);
  if (e && e->found) {
    snprintf(e->v.link.state, sizeof(e->v.link.state), "%s", state);
    rx_link_t l = e->v.link;
    if (!strcmp(state, "chained"))
      chained_to(x, mn, &l);
  } else if (e) { /* cannot be (promote() read it first): ask the database next time */
    e->key[0] = '-';
  }
  return 0;
}

static void seal_at(PGresult *res, int row, int c0, int64_t hour, rx_seal_t *out) {
  out->hour = hour;
  out->frames = strtoll(PQgetvalue(res, row, c0), NULL, 10);
  snprintf(out->digest, sizeof(out->digest), "%s", PQgetvalue(res, row, c0 + 1));
  snprintf(out->state, sizeof(out->state), "%s", PQgetvalue(res, row, c0 + 2));
  out->held = strtoll(PQgetvalue(res, row, c0 + 3), NULL, 10);
}

static int pg_seal_get(stor_rx_t *x, const char *mn, int64_t hour, rx_seal_t *out) {
  char b[24];
  I64(b, hour);
  cent_t *e = cached(x, 'S', mn, b);
  if (e) {
    if (e->found)
      *out = e->v.seal;
    return e->found;
  }
  const char *v[] = {mn, b};
  int rc;
  PGresult *res = q(x, &rc, "SELECT frames, digest, state, held FROM seals WHERE mn=$1 AND hour=$2",
                    2, v, NULL, NULL);
  if (res && (rc = PQntuples(res) > 0))
    seal_at(res, 0, 0, hour, out);
  if (res && (e = remember(x, 'S', mn, b, rc)) && rc)
    e->v.seal = *out;
  PQclear(res);
  return rc;
}

static int pg_seal_put(stor_rx_t *x, const char *mn, const rx_seal_t *s) {
  char b_h[24], b_f[24], b_held[24], b_now[24];
  const char *v[] = {mn,       I64(b_h, s->hour),    I64(b_f, s->frames), s->digest,
                     s->state, I64(b_held, s->held), I64(b_now, now_ms())};
  int rc = send_prep(x, PEND_OK, "seal_put", 7, v, NULL, NULL);
  cent_t *e = rc == 0 ? remember(x, 'S', mn, b_h, true) : NULL;
  if (e)
    e->v.seal = *s;
  return rc;
}

/* A copy of `s` a text column takes: bytes that are not UTF-8 become '?'. */
static char *clean(const char *s) {
  char *c = strdup(s ? s : "");
  if (!c || text_ok(c))
    return c;
  for (unsigned char *p = (unsigned char *)c; *p; p++)
    if (*p >= 0x80)
      *p = '?';
  return c;
}

static int pg_refusal(stor_rx_t *x, const char *mn, const char *peer, const char *reason,
                      const char *frame, int64_t at_ms) {
  char b_at[24], *m = clean(mn), *p = clean(peer), *r = clean(reason);
  const char *f = frame ? frame : "";
  const char *v[] = {m, p, r, f, I64(b_at, at_ms)};
  int lens[] = {0, 0, 0, (int)strlen(f), 0};
  int bin[] = {0, 0, 0, 1, 0};
  int rc = -ENOMEM;
  if (m && p && r)
    rc = send_prep(x, PEND_OK, "refusal", 5, v, lens, bin);
  free(m);
  free(p);
  free(r);
  return rc;
}

static int pg_seen(stor_rx_t *x, const char *mn, const char *subject, int64_t at_ms) {
  char b[24];
  const char *v[] = {mn, subject, I64(b, at_ms / 1000)};
  return send_prep(x, PEND_OK, "seen", 3, v, NULL, NULL);
}

/* Makes the partition of `table` that holds `t`, unless known to exist. */
static int partition_for(stor_rx_t *x, const char *table, int64_t t) {
  rx_pg_t *p = pg_of(x);
  char ym[16], part[64];
  int64_t from = stor__rx_month_start(t, 0, ym), to = stor__rx_month_start(t, 1, NULL);
  snprintf(part, sizeof(part), "%s_p%s", table, ym);
  for (int i = 0; i < p->n_known; i++)
    if (!strcmp(p->known[i], part))
      return 0;
  for (int i = 0; i < p->n_made; i++)
    if (!strcmp(p->made[i], part))
      return 0;
  char sql[256];
  snprintf(sql, sizeof(sql),
           "CREATE TABLE IF NOT EXISTS %s PARTITION OF %s FOR VALUES FROM (%" PRId64
           ") TO (%" PRId64 ")",
           part, table, from, to);
  /* Held to the commit: another receiver making the same month waits,
   * then finds it made. */
  static const char lock[] = "SELECT pg_advisory_xact_lock(" PG_LOCK_SCHEMA ", 1)";
  int rc =
      p->piped ? send_sql(x, PEND_OK, "partition lock", lock, 0, NULL) : qx(x, lock, 0, NULL, NULL);
  if (rc == 0)
    rc = p->piped ? send_sql(x, PEND_OK, "CREATE TABLE ... PARTITION OF", sql, 0, NULL)
                  : qx(x, sql, 0, NULL, NULL);
  if (rc == 0 && p->n_made < 8)
    snprintf(p->made[p->n_made++], sizeof(p->made[0]), "%s", part);
  return rc;
}

/* The prepared statement of decoded table `t`: "r_" and its name. */
static void row_stmt(const rx_table_t *t, char *out, size_t cap) {
  snprintf(out, cap, "r_%s", t->name);
}

static int pg_row_insert(stor_rx_t *x, const rx_row_t *r) {
  char b_t[24], b_seq[24];
  if (r->table->by_month) {
    int rc = partition_for(x, r->table->name, r->t);
    if (rc < 0)
      return rc;
  }
  const char *v[RX_COLS_MAX + 4];
  int k = 0;
  v[k++] = r->mn;
  v[k++] = I64(b_t, r->t);
  if (r->table->is_signed) {
    v[k++] = I64(b_seq, r->seq);
    v[k++] = r->qn;
  }
  for (int i = 0; i < RX_COLS_MAX && r->table->cols[i].name; i++)
    v[k++] = r->v[i];
  char stmt[80];
  row_stmt(r->table, stmt, sizeof(stmt));
  /* The name in the reason must outlive this call: the table's own. */
  int rc = params_ok(x, k, v, NULL);
  if (rc == 0)
    rc = pushed(x, PQsendQueryPrepared(conn_of(x), stmt, k, v, NULL, NULL, 0), PEND_OK,
                r->table->name);
  return rc < 0 ? rc : 1;
}

/* ---- the backfill's primitives (rx_int.h) */

static int pg_backfill_lock(stor_rx_t *x) {
  int rc;
  PGresult *res =
      q(x, &rc, "SELECT pg_try_advisory_xact_lock(" PG_LOCK_SCHEMA ", 2)", 0, NULL, NULL, NULL);
  if (res)
    rc = PQntuples(res) == 1 && !strcmp(PQgetvalue(res, 0, 0), "t");
  PQclear(res);
  return rc;
}

static int pg_marks(stor_rx_t *x, rx_mark_cb cb, void *arg) {
  int rc;
  PGresult *res = q(x, &rc, "SELECT tbl, done, upto FROM rx_backfill", 0, NULL, NULL, NULL);
  for (int i = 0; res && rc == 0 && i < PQntuples(res); i++)
    rc = cb(arg, PQgetvalue(res, i, 0), strtoll(PQgetvalue(res, i, 1), NULL, 10),
            strtoll(PQgetvalue(res, i, 2), NULL, 10));
  PQclear(res);
  return rc;
}

static int pg_mark_done(stor_rx_t *x, const char *table, int64_t done) {
  char b[24];
  const char *v[] = {I64(b, done), table};
  return send_sql(x, PEND_OK, "rx_backfill", "UPDATE rx_backfill SET done=$1 WHERE tbl=$2", 2, v);
}

static int pg_stored_after(stor_rx_t *x, int64_t after, int64_t upto, const char *cns, int limit,
                           rx_packet_cb cb, void *arg) {
  char sql[1024], b0[24], b1[24], b2[24];
  snprintf(sql, sizeof(sql),
           "SELECT f.id, f.mn, f.qn, f.received_ms, f.pnum, p.pno, p.data FROM"
           " (SELECT id, mn, qn, received_ms, pnum FROM frames WHERE id>$1 AND id<=$2 AND pno=1"
           " AND cn IN (%s) ORDER BY id LIMIT $3) f"
           " JOIN frames p ON p.mn=f.mn AND p.qn=f.qn ORDER BY f.id, p.pno",
           cns);
  const char *v[] = {I64(b0, after), I64(b1, upto), I64(b2, limit)};
  int rc;
  PGresult *res = q(x, &rc, sql, 3, v, NULL, NULL);
  char *d = NULL;
  for (int i = 0; res && rc == 0 && i < PQntuples(res); i++) {
    const char *h = PQgetvalue(res, i, 6);
    if (!(d = malloc(strlen(h) / 2 + 1))) {
      rc = -ENOMEM;
      break;
    }
    rx_packet_t p = {
        .id = strtoll(PQgetvalue(res, i, 0), NULL, 10),
        .mn = PQgetvalue(res, i, 1),
        .qn = PQgetvalue(res, i, 2),
        .rx_ms = strtoll(PQgetvalue(res, i, 3), NULL, 10),
        .pnum = atoi(PQgetvalue(res, i, 4)),
        .pno = atoi(PQgetvalue(res, i, 5)),
        .data = d,
        .len = unhex(h, d),
    };
    rc = cb(arg, &p);
    free(d);
  }
  PQclear(res);
  return rc;
}

/* The backfill's bookkeeping, and a row for each decoded table new here
 * (rx_int.h RX_BACKFILL_SCHEMA), in migrate()'s transaction. */
static int backfill_marks(stor_rx_t *x) {
  int rc = qx(x, RX_BACKFILL_SCHEMA, 0, NULL, NULL);
  for (const rx_table_t *t = stor__rx_tables; rc == 0 && t->name; t++) {
    const char *v[] = {t->name};
    rc = qx(x, RX_BACKFILL_MARK, 1, v, NULL);
  }
  return rc;
}

/* The decoded tables, and the partitions of this month and the next. */
static int decoded_schema(stor_rx_t *x) {
  char sql[4096];
  for (const rx_table_t *t = stor__rx_tables; t->name; t++) {
    int rc = stor__rx_table_sql(t, true, sql, sizeof(sql));
    assert(rc > 0);
    if ((rc = qx(x, sql, 0, NULL, NULL)) != 0)
      return rc;
    int64_t now = (int64_t)sg_now();
    for (int m = 0; t->by_month && m < 2; m++)
      if ((rc = partition_for(x, t->name, stor__rx_month_start(now, m, NULL))) != 0)
        return rc;
  }
  return 0;
}

/* The primary keys of `table` and its partitions given back their plain
 * names (<relation>_pkey): made while the old table still held those
 * names, PostgreSQL named them <relation>_pkey1. Renaming the index
 * renames its constraint. */
static int pkeys_renamed(stor_rx_t *x, const char *table) {
  int rc;
  const char *v[] = {table};
  PGresult *res = q(x, &rc,
                    "SELECT ic.relname, c.relname FROM pg_index i"
                    " JOIN pg_class ic ON ic.oid=i.indexrelid JOIN pg_class c ON c.oid=i.indrelid"
                    " WHERE i.indisprimary AND ic.relname <> c.relname || '_pkey'"
                    " AND (c.oid=$1::regclass"
                    " OR c.oid IN (SELECT inhrelid FROM pg_inherits WHERE inhparent=$1::regclass))",
                    1, v, NULL, NULL);
  if (!res)
    return rc;
  char sql[256];
  for (int i = 0; rc == 0 && i < PQntuples(res); i++) {
    snprintf(sql, sizeof(sql), "ALTER INDEX %s RENAME TO %s_pkey", PQgetvalue(res, i, 0),
             PQgetvalue(res, i, 1));
    rc = qx(x, sql, 0, NULL, NULL);
  }
  PQclear(res);
  return rc;
}

/* Version 2's environment tables, one row per pollutant, made one row per
 * site and time (RX_WIDE) in migrate()'s transaction: the table and its
 * partitions renamed aside, the new table made with a partition for each
 * month the old one holds, the rows converted, the old table dropped.
 * Receivers starting together wait on the schema lock; the second finds
 * the work done. */
static int convert_v2(stor_rx_t *x) {
  char sql[4096];
  for (const rx_table_t *t = stor__rx_tables; t->name; t++) {
    if (t->shape != RX_WIDE)
      continue;
    int rc, n = 0;
    const char *v[] = {t->name};
    PGresult *res = q(x, &rc,
                      "SELECT 1 FROM information_schema.columns WHERE table_schema=current_schema()"
                      " AND table_name=$1 AND column_name='pol'",
                      1, v, NULL, NULL);
    if (!res)
      return rc;
    n = PQntuples(res);
    PQclear(res);
    if (n == 0)
      continue;
    res = q(x, &rc,
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid=i.inhrelid"
            " WHERE i.inhparent=$1::regclass",
            1, v, NULL, NULL);
    if (!res)
      return rc;
    for (int i = 0; rc == 0 && i < PQntuples(res); i++) {
      snprintf(sql, sizeof(sql), "ALTER TABLE %s RENAME TO %s_v2", PQgetvalue(res, i, 0),
               PQgetvalue(res, i, 0));
      rc = qx(x, sql, 0, NULL, NULL);
    }
    PQclear(res);
    snprintf(sql, sizeof(sql), "ALTER TABLE %s RENAME TO %s_v2", t->name, t->name);
    if (rc == 0)
      rc = qx(x, sql, 0, NULL, NULL);
    if (rc == 0) {
      rc = stor__rx_table_sql(t, true, sql, sizeof(sql));
      assert(rc > 0);
      rc = qx(x, sql, 0, NULL, NULL);
    }
    if (rc != 0)
      return rc;
    if (t->by_month) {
      snprintf(sql, sizeof(sql), "SELECT MIN(t), MAX(t) FROM %s_v2", t->name);
      if (!(res = q(x, &rc, sql, 0, NULL, NULL, NULL)))
        return rc;
      bool some = !PQgetisnull(res, 0, 0);
      int64_t lo = some ? strtoll(PQgetvalue(res, 0, 0), NULL, 10) : 0,
              hi = some ? strtoll(PQgetvalue(res, 0, 1), NULL, 10) : -1;
      PQclear(res);
      for (int64_t m = stor__rx_month_start(lo, 0, NULL); some && rc == 0 && m <= hi;
           m = stor__rx_month_start(m, 1, NULL))
        rc = partition_for(x, t->name, m);
    }
    char old[80];
    snprintf(old, sizeof(old), "%s_v2", t->name);
    int rows = 0;
    if (rc == 0) {
      rc = stor__rx_convert_sql(t, old, sql, sizeof(sql));
      assert(rc > 0);
      rc = qx(x, sql, 0, NULL, &rows);
    }
    snprintf(sql, sizeof(sql), "DROP TABLE %s", old);
    if (rc == 0)
      rc = qx(x, sql, 0, NULL, NULL);
    if (rc == 0)
      rc = pkeys_renamed(x, t->name);
    if (rc != 0)
      return rc;
    log_info("%s: converted to one row per site and time (%d rows)", t->name, rows);
  }
  return 0;
}

/* ---- a batch asked for at once */

/* A PostgreSQL array literal of text, grown as needed. */
typedef struct arr {
  char *s;
  size_t len, cap;
  int n;
  bool oom;
} arr_t;

static void arr_add(arr_t *a, const char *v) {
  size_t need = a->len + 2 * strlen(v) + 8;
  if (need > a->cap) {
    size_t cap = need * 2 > 4096 ? need * 2 : 4096;
    char *s = realloc(a->s, cap);
    if (!s) {
      a->oom = true;
      return;
    }
    a->s = s;
    a->cap = cap;
  }
  a->s[a->len++] = a->n++ ? ',' : '{';
  a->s[a->len++] = '"';
  for (; *v; v++) {
    if (*v == '"' || *v == '\\')
      a->s[a->len++] = '\\';
    a->s[a->len++] = *v;
  }
  a->s[a->len++] = '"';
  a->s[a->len] = '\0';
}

static const char *arr_text(arr_t *a) {
  if (a->n == 0)
    return "{}";
  if (a->len + 2 > a->cap)
    return NULL;
  a->s[a->len] = '}';
  a->s[a->len + 1] = '\0';
  return a->s;
}

static int cmp_str(const void *a, const void *b) {
  return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Sends statement `stmt` with the arrays `a`, the answer kept. */
static int send_arrays(stor_rx_t *x, const char *stmt, int n, arr_t *a) {
  const char *v[2];
  for (int i = 0; i < n; i++)
    if (!(v[i] = arr_text(&a[i])) || a[i].oom)
      return -ENOMEM;
  return send_prep(x, PEND_KEEP, stmt, n, v, NULL, NULL);
}

enum { A_SITES, A_FMN, A_FQN, A_TMN, A_SMN, A_SH, A_LMN, A_LSEQ, A_CMN, A_N };

/* What decide() will ask about `msgs`, cached as not found first. */
static void prefetch_keys(stor_rx_t *x, stor_rx_msg_t *const *msgs, size_t n, arr_t *a) {
  const char **mns = malloc(n * sizeof(*mns));
  size_t k = 0;
  for (size_t i = 0; i < n; i++) {
    const stor_rx_msg_t *m = msgs[i];
    if (!text_ok(m->mn) || !text_ok(m->qn) || !text_ok(m->cn))
      continue; /* asked on its own, and refused there */
    if (mns)
      mns[k++] = m->mn;
    if (remember(x, 'F', m->mn, m->qn, false)) {
      arr_add(&a[A_FMN], m->mn);
      arr_add(&a[A_FQN], m->qn);
    }
    if (!strcmp(m->cn, "2051") && !cached(x, 'T', m->mn, "2051") &&
        remember(x, 'T', m->mn, "2051", false))
      arr_add(&a[A_TMN], m->mn);
    char b[24];
    bool env = !strcmp(m->cn, "2011") || !strcmp(m->cn, "2051") || !strcmp(m->cn, "2061");
    if (env && m->t >= 0) {
      int64_t hour = m->t - ((m->t % 3600) + 3600) % 3600;
      if (!cached(x, 'S', m->mn, I64(b, hour)) && remember(x, 'S', m->mn, b, false)) {
        arr_add(&a[A_SMN], m->mn);
        arr_add(&a[A_SH], b);
      }
    }
    if (m->is_signed) {
      if (!cached(x, 'C', m->mn, NULL) && remember(x, 'C', m->mn, NULL, false))
        arr_add(&a[A_CMN], m->mn);
      for (uint64_t s = m->sig.seq ? m->sig.seq - 1 : 0; s <= m->sig.seq + 1; s++)
        if (!cached(x, 'L', m->mn, I64(b, s)) && remember(x, 'L', m->mn, b, false)) {
          arr_add(&a[A_LMN], m->mn);
          arr_add(&a[A_LSEQ], b);
        }
    }
  }
  if (mns) {
    qsort(mns, k, sizeof(*mns), cmp_str);
    for (size_t i = 0; i < k; i++)
      if (i == 0 || strcmp(mns[i], mns[i - 1]) != 0) {
        arr_add(&a[A_SITES], mns[i]);
        remember(x, 'K', mns[i], NULL, true);
      }
  }
  free(mns);
}

/* Takes the batch's site locks and asks what deciding its messages will
 * ask, in one round trip (rx_int.h prefetch). */
static int pg_prefetch(stor_rx_t *x, stor_rx_msg_t *const *msgs, size_t n) {
  rx_pg_t *p = pg_of(x);
  if (!p->piped || n == 0)
    return 0;
  arr_t a[A_N];
  memset(a, 0, sizeof(a));
  prefetch_keys(x, msgs, n, a);
  PGresult *res[PG_KEEP_MAX] = {NULL};
  int which[PG_KEEP_MAX], rc = 0, nk = 0;
  static const struct {
    const char *stmt;
    int first, n;
  } asks[] = {
      {"pre_frames", A_FMN, 2}, {"pre_last_t", A_TMN, 1},  {"pre_seals", A_SMN, 2},
      {"pre_links", A_LMN, 2},  {"pre_chained", A_CMN, 1},
  };
  if (a[A_SITES].n && (rc = send_arrays(x, "lock", 1, &a[A_SITES])) == 0)
    which[nk++] = -1; /* first: every answer after it is under the locks */
  for (int i = 0; rc == 0 && i < (int)(sizeof(asks) / sizeof(asks[0])); i++)
    if (a[asks[i].first].n &&
        (rc = send_arrays(x, asks[i].stmt, asks[i].n, &a[asks[i].first])) == 0)
      which[nk++] = i;
  if (rc == 0)
    rc = pipe_sync(x, res, nk);
  for (int r = 0; rc == 0 && r < nk; r++) {
    PGresult *s = res[r];
    for (int i = 0; s && which[r] >= 0 && i < PQntuples(s); i++) {
      const char *mn = PQgetvalue(s, i, 0);
      cent_t *e;
      switch (which[r]) {
      case 0: /* mn, qn */
        remember(x, 'F', mn, PQgetvalue(s, i, 1), true);
        break;
      case 1: /* mn, MAX(t) */
        if (!PQgetisnull(s, i, 1) && (e = remember(x, 'T', mn, "2051", true)))
          e->v.t = strtoll(PQgetvalue(s, i, 1), NULL, 10);
        break;
      case 2: /* mn, hour, frames, digest, state, held */
        if ((e = remember(x, 'S', mn, PQgetvalue(s, i, 1), true)))
          seal_at(s, i, 2, strtoll(PQgetvalue(s, i, 1), NULL, 10), &e->v.seal);
        break;
      default: /* mn, seq, state, hash, prev */
        if ((e = remember(x, which[r] == 3 ? 'L' : 'C', mn,
                          which[r] == 3 ? PQgetvalue(s, i, 1) : NULL, true)))
          link_at(s, i, 1, &e->v.link);
        break;
      }
    }
  }
  if (rc != 0)
    cache_clear(p); /* the writer rolls back */
  for (int r = 0; r < nk; r++)
    PQclear(res[r]);
  for (int i = 0; i < A_N; i++)
    free(a[i].s);
  return rc;
}

/* ---- opening */

static PGconn *connect_to(const char *uri, char *err, size_t errlen) {
  PGconn *c = PQconnectdb(uri);
  if (!c) {
    snprintf(err, errlen, "out of memory");
    return NULL;
  }
  if (PQstatus(c) != CONNECTION_OK) {
    char red[256];
    stor_rx_redact(uri, red, sizeof(red));
    snprintf(err, errlen, "cannot connect to %s: %s", red, PQerrorMessage(c));
    size_t n = strlen(err);
    while (n > 0 && err[n - 1] == '\n')
      err[--n] = '\0';
    PQfinish(c);
    return NULL;
  }
  PQsetNoticeProcessor(c, on_notice, NULL);
  return c;
}

/* Creates the tables once, whoever comes first: receivers starting
 * together take turns on an advisory lock. */
static int migrate(stor_rx_t *x) {
  int rc, version = 0;
  if ((rc = qx(x, "BEGIN", 0, NULL, NULL)) != 0 ||
      (rc = qx(x, "SELECT pg_advisory_xact_lock(" PG_LOCK_SCHEMA ", 0)", 0, NULL, NULL)) != 0 ||
      (rc = qx(x, schema, 0, NULL, NULL)) != 0 || (rc = convert_v2(x)) != 0 ||
      (rc = decoded_schema(x)) != 0 || (rc = backfill_marks(x)) != 0)
    goto fail;
  PGresult *res = q(x, &rc, "SELECT MAX(version) FROM rx_schema", 0, NULL, NULL, NULL);
  if (!res)
    goto fail;
  if (!PQgetisnull(res, 0, 0))
    version = atoi(PQgetvalue(res, 0, 0));
  PQclear(res);
  if (version > PG_SCHEMA_VERSION) {
    snprintf(x->error, sizeof(x->error),
             "the database has schema version %d, newer than this sitegate-rx (%d)", version,
             PG_SCHEMA_VERSION);
    rc = -ENOTSUP;
    goto fail;
  }
  if (version < PG_SCHEMA_VERSION &&
      (rc = qx(x, "INSERT INTO rx_schema VALUES(3)" /* PG_SCHEMA_VERSION */, 0, NULL, NULL)) != 0)
    goto fail;
  if ((rc = pg_commit(x)) != 0)
    goto fail;
  return 0;
fail:
  pg_rollback(x);
  return rc;
}

/* The writer's statements, prepared once per connection. */
static const struct {
  const char *name, *sql;
} prepared[] = {
    {"lock1", "SELECT pg_advisory_xact_lock(" PG_LOCK_SITE ", hashtext($1))"},
    /* the batch's sites in the order of their locks' keys, the same for
     * every receiver: two batches never wait on each other in a circle */
    {"lock", "SELECT count(pg_advisory_xact_lock(" PG_LOCK_SITE ", h)) FROM"
             " (SELECT DISTINCT hashtext(m) AS h FROM unnest($1::text[]) AS m ORDER BY 1) s"},
    /* OFFSET 0 keeps each lookup a probe of the index, whatever the planner
     * thinks of the array's size */
    {"pre_frames", "SELECT u.mn, u.qn FROM unnest($1::text[], $2::text[]) AS u(mn, qn)"
                   " CROSS JOIN LATERAL (SELECT 1 FROM frames f WHERE f.mn=u.mn AND f.qn=u.qn"
                   " AND f.pno=1 OFFSET 0) f"},
    {"pre_last_t", "SELECT u.mn, (SELECT MAX(t) FROM frames f WHERE f.mn=u.mn AND f.cn='2051')"
                   " FROM unnest($1::text[]) AS u(mn)"},
    {"pre_seals", "SELECT u.mn, u.h, s.frames, s.digest, s.state, s.held"
                  " FROM unnest($1::text[], $2::bigint[]) AS u(mn, h) CROSS JOIN LATERAL"
                  " (SELECT frames, digest, state, held FROM seals s WHERE s.mn=u.mn"
                  " AND s.hour=u.h OFFSET 0) s"},
    {"pre_links", "SELECT u.mn, l.seq, l.state, l.hash, l.prev"
                  " FROM unnest($1::text[], $2::bigint[]) AS u(mn, seq) CROSS JOIN LATERAL"
                  " (SELECT seq, state, hash, prev FROM ledger l WHERE l.mn=u.mn AND l.seq=u.seq"
                  " OFFSET 0) l"},
    {"pre_chained", "SELECT u.mn, l.seq, l.state, l.hash, l.prev FROM unnest($1::text[]) AS u(mn)"
                    " CROSS JOIN LATERAL (SELECT seq, state, hash, prev FROM ledger l"
                    " WHERE l.mn=u.mn AND l.state='chained' ORDER BY seq DESC LIMIT 1) l"},
    {"ins_frame", "INSERT INTO frames(mn, qn, pno, pnum, st, cn, t, data, received_ms) "
                  "VALUES($1,$2,$3,$4,$5,$6,$7,$8,$9) ON CONFLICT (mn, qn, pno) DO NOTHING"},
    {"ins_ledger", "INSERT INTO ledger(mn, seq, cn, qn, prev, hash, sig, cert, state, "
                   "received_ms) VALUES($1,$2,$3,$4,$5,$6,$7,$8,$9,$10)"},
    {"set_state", "UPDATE ledger SET state=$1 WHERE mn=$2 AND seq=$3"},
    {"seal_put", "INSERT INTO seals(mn, hour, frames, digest, state, held, checked_ms) "
                 "VALUES($1,$2,$3,$4,$5,$6,$7) ON CONFLICT (mn, hour) DO UPDATE SET "
                 "frames=EXCLUDED.frames, digest=EXCLUDED.digest, state=EXCLUDED.state, "
                 "held=EXCLUDED.held, checked_ms=EXCLUDED.checked_ms"},
    {"refusal", "INSERT INTO refusals(mn, peer, reason, frame, at_ms) VALUES($1,$2,$3,$4,$5)"},
    {"seen", "INSERT INTO sites(mn, subject, first_seen, last_seen, connections) "
             "VALUES($1,$2,$3,$3,1) ON CONFLICT (mn) DO UPDATE SET subject=$2, last_seen=$3, "
             "connections=sites.connections+1"},
};

static int prepare(stor_rx_t *x, const char *name, const char *sql) {
  PGresult *res = PQprepare(conn_of(x), name, sql, 0, NULL);
  int rc = PQresultStatus(res) == PGRES_COMMAND_OK ? 0 : failure(x, res, name);
  PQclear(res);
  return rc;
}

/* Prepares the writer's statements and enters pipeline mode. */
static int pipe_setup(stor_rx_t *x) {
  int rc = 0;
  for (size_t i = 0; rc == 0 && i < sizeof(prepared) / sizeof(prepared[0]); i++)
    rc = prepare(x, prepared[i].name, prepared[i].sql);
  for (const rx_table_t *t = stor__rx_tables; rc == 0 && t->name; t++) {
    char name[80], sql[2048];
    row_stmt(t, name, sizeof(name));
    int n = stor__rx_insert_sql(t, sql, sizeof(sql));
    assert(n > 0 && n <= RX_COLS_MAX + 4);
    rc = prepare(x, name, sql);
  }
  if (rc == 0 && !PQenterPipelineMode(conn_of(x)))
    rc = failure(x, NULL, "pipeline mode");
  if (rc == 0)
    pg_of(x)->piped = true;
  return rc;
}

static void pg_close(stor_rx_t *x) {
  rx_pg_t *p = pg_of(x);
  if (p->conn)
    PQfinish(p->conn);
  free(p->ents);
  free(p->slots);
  free(p->uri);
  free(p);
}

int stor__rx_pg_open(const char *uri, stor_rx_t **out) {
  *out = NULL;
  rx_pg_t *p = calloc(1, sizeof(*p));
  if (!p)
    return -ENOMEM;
  p->base.ops = &stor__rx_pg_ops;
  char red[256];
  stor_rx_redact(uri, red, sizeof(red));
  char *perr = NULL;
  PQconninfoOption *opts = PQconninfoParse(uri, &perr);
  if (!opts) { /* a URI libpq cannot read is a mistake to say now */
    log_err("database %s: %s", red, perr ? perr : "out of memory");
    PQfreemem(perr);
    free(p);
    return -EINVAL;
  }
  PQconninfoFree(opts);
  if (!(p->uri = strdup(uri)) || !(p->conn = PQconnectdb(uri))) {
    free(p->uri);
    free(p);
    return -ENOMEM;
  }
  /* A database away at start is an outage like any other: the receiver
   * starts, holds every acknowledgement, and the writer's first
   * transaction connects (and makes the schema) once it answers. */
  if (PQstatus(p->conn) != CONNECTION_OK) {
    const char *why = PQerrorMessage(p->conn);
    one_line(why, p->base.error, sizeof(p->base.error));
    log_err("database %s unreachable (%s): starting anyway; nothing is acknowledged until it "
            "answers",
            red, p->base.error);
    *out = &p->base;
    return 0;
  }
  PQsetNoticeProcessor(p->conn, on_notice, NULL);
  int rc = migrate(&p->base);
  if (rc != 0) {
    log_err("database schema: %s", p->base.error);
    pg_close(&p->base);
    return rc;
  }
  p->migrated = true;
  if ((rc = pipe_setup(&p->base)) != 0) { /* tried again at the first begin */
    log_warn("database: %s", p->base.error);
    p->reset = true;
  }
  *out = &p->base;
  return 0;
}

/* ---- the queries for people, on a connection of their own */

static const char sites_sql[] =
    "SELECT s.mn, s.subject, s.last_seen, s.connections,"
    " (SELECT COUNT(*) FROM frames f WHERE f.mn=s.mn),"
    " (SELECT MAX(received_ms) FROM frames f WHERE f.mn=s.mn),"
    " (SELECT COALESCE(MAX(seq), 0) FROM ledger l WHERE l.mn=s.mn AND l.state='chained'),"
    " (SELECT COUNT(*) FROM ledger l WHERE l.mn=s.mn AND l.state='pending'),"
    " (SELECT COUNT(*) FROM ledger l WHERE l.mn=s.mn AND l.state='broken'),"
    " (SELECT COUNT(*) FROM seals x WHERE x.mn=s.mn AND x.state='verified'),"
    " (SELECT COUNT(*) FROM seals x WHERE x.mn=s.mn AND x.state='incomplete'),"
    " (SELECT COUNT(*) FROM seals x WHERE x.mn=s.mn AND x.state='mismatch'),"
    " (SELECT COUNT(*) FROM refusals r WHERE r.mn=s.mn)"
    " FROM sites s ORDER BY s.mn COLLATE \"C\"";

static int64_t col(PGresult *r, int row, int c) { return strtoll(PQgetvalue(r, row, c), NULL, 10); }

/* Runs a query for people: the result, or NULL with the reason in err. */
static PGresult *ask(PGconn *c, const char *sql, int n, const char *const *v, char *err,
                     size_t errlen) {
  PGresult *res = PQexecParams(c, sql, n, NULL, v, NULL, NULL, 0);
  if (PQresultStatus(res) == PGRES_TUPLES_OK)
    return res;
  snprintf(err, errlen, "%s", PQresultErrorMessage(res));
  size_t k = strlen(err);
  while (k > 0 && err[k - 1] == '\n')
    err[--k] = '\0';
  PQclear(res);
  return NULL;
}

static int pg_sites(const char *uri, void (*cb)(void *arg, const stor_rx_site_t *s), void *arg,
                    int64_t *unknown, char *err, size_t errlen) {
  PGconn *c = connect_to(uri, err, errlen);
  if (!c)
    return -ENOENT;
  PGresult *res = ask(c, sites_sql, 0, NULL, err, errlen);
  if (!res) {
    PQfinish(c);
    return -EIO;
  }
  for (int i = 0; i < PQntuples(res); i++) {
    stor_rx_site_t s = {
        .mn = PQgetvalue(res, i, 0),
        .subject = PQgetvalue(res, i, 1),
        .last_seen = col(res, i, 2),
        .connections = col(res, i, 3),
        .frames = col(res, i, 4),
        .has_last_frame = !PQgetisnull(res, i, 5),
        .last_frame_ms = col(res, i, 5),
        .ledger_seq = col(res, i, 6),
        .ledger_pending = col(res, i, 7),
        .ledger_broken = col(res, i, 8),
        .seals_verified = col(res, i, 9),
        .seals_incomplete = col(res, i, 10),
        .seals_mismatch = col(res, i, 11),
        .refused = col(res, i, 12),
    };
    cb(arg, &s);
  }
  PQclear(res);
  res = ask(c, "SELECT COUNT(*) FROM refusals WHERE mn=''", 0, NULL, err, errlen);
  if (res) {
    *unknown = col(res, 0, 0);
    PQclear(res);
  }
  PQfinish(c);
  err[0] = '\0';
  return 0;
}

static int pg_export(const char *uri, const char *mn, int64_t since, int64_t until, const char *cn,
                     void (*cb)(void *arg, const stor_rx_frame_t *f), void *arg, char *err,
                     size_t errlen) {
  PGconn *c = connect_to(uri, err, errlen);
  if (!c)
    return -ENOENT;
  char b0[24], b1[24];
  const char *v[] = {mn, I64(b0, since), I64(b1, until), cn};
  PGresult *res = ask(c,
                      "SELECT tt, received_ms, qn, pno, pnum, st, cn, data, seq, state FROM ("
                      " SELECT COALESCE(f.t, f.received_ms/1000) AS tt, f.received_ms, f.qn,"
                      " f.pno, f.pnum, f.st, f.cn, f.data, l.seq, l.state"
                      " FROM frames f LEFT JOIN ledger l ON l.mn=f.mn AND l.qn=f.qn"
                      " WHERE f.mn=$1 AND ($4::text IS NULL OR f.cn=$4)) s"
                      " WHERE tt>=$2::bigint AND tt<$3::bigint ORDER BY tt, qn COLLATE \"C\", pno",
                      4, v, err, errlen);
  if (!res) {
    PQfinish(c);
    return -EIO;
  }
  for (int i = 0; i < PQntuples(res); i++) {
    const char *h = PQgetvalue(res, i, 7);
    char *d = malloc(strlen(h) / 2 + 1);
    if (!d)
      break;
    size_t n = unhex(h, d);
    d[n] = '\0';
    stor_rx_frame_t f = {
        .t = col(res, i, 0),
        .received_ms = col(res, i, 1),
        .qn = PQgetvalue(res, i, 2),
        .pno = (int)col(res, i, 3),
        .pnum = (int)col(res, i, 4),
        .cn = PQgetvalue(res, i, 6),
        .data = d,
        .data_len = n,
        .in_ledger = !PQgetisnull(res, i, 8),
        .ledger_seq = col(res, i, 8),
        .ledger_state = PQgetisnull(res, i, 9) ? NULL : PQgetvalue(res, i, 9),
    };
    cb(arg, &f);
    free(d);
  }
  PQclear(res);
  PQfinish(c);
  return 0;
}

static int pg_prune(const char *uri, int64_t before, const char *month,
                    void (*cb)(void *arg, const char *what, int64_t rows), void *arg, char *err,
                    size_t errlen) {
  (void)before; /* whole months: the partitions' names say which */
  PGconn *c = connect_to(uri, err, errlen);
  if (!c)
    return -ENOENT;
  int rc = 0;
  for (const rx_table_t *t = stor__rx_tables; rc == 0 && t->name; t++) {
    if (!t->by_month)
      continue;
    const char *v[] = {t->name};
    PGresult *res = ask(c,
                        "SELECT c.relname, c.reltuples::bigint FROM pg_inherits i"
                        " JOIN pg_class c ON c.oid=i.inhrelid"
                        " WHERE i.inhparent=$1::regclass ORDER BY c.relname",
                        1, v, err, errlen);
    if (!res) {
      rc = -EIO;
      break;
    }
    size_t n = strlen(t->name);
    for (int i = 0; rc == 0 && i < PQntuples(res); i++) {
      const char *part = PQgetvalue(res, i, 0);
      /* ours are <table>_pYYYYMM; anything else someone added is left alone */
      if (strlen(part) != n + 8 || strncmp(part + n, "_p", 2) != 0 ||
          strspn(part + n + 2, "0123456789") != 6 || strcmp(part + n + 2, month) >= 0)
        continue;
      char sql[160];
      snprintf(sql, sizeof(sql), "DROP TABLE %s", part);
      PGresult *d = PQexec(c, sql);
      if (PQresultStatus(d) != PGRES_COMMAND_OK) {
        snprintf(err, errlen, "%s: %s", sql, PQresultErrorMessage(d));
        rc = -EIO;
      } else {
        cb(arg, part, col(res, i, 1));
      }
      PQclear(d);
    }
    PQclear(res);
  }
  PQfinish(c);
  return rc;
}

#define QUERY_COLS_MAX 64

static bool oid_is_num(Oid t) {
  return t == 20 || t == 21 || t == 23 || t == 700 || t == 701 || t == 1700; /* pg_type.dat */
}

static int pg_query(const char *uri, const char *sql, int n, const char *const *params,
                    stor_rx_row_fn cb, void *arg, char *err, size_t errlen) {
  PGconn *c = connect_to(uri, err, errlen);
  if (!c)
    return -ENOENT;
  PGresult *res = ask(c, sql, n, params, err, errlen);
  if (!res) {
    PQfinish(c);
    return -EIO;
  }
  int ncol = PQnfields(res);
  if (ncol > QUERY_COLS_MAX)
    ncol = QUERY_COLS_MAX;
  const char *name[QUERY_COLS_MAX], *value[QUERY_COLS_MAX];
  bool num[QUERY_COLS_MAX];
  for (int i = 0; i < ncol; i++) {
    name[i] = PQfname(res, i);
    num[i] = oid_is_num(PQftype(res, i));
  }
  for (int r = 0; r < PQntuples(res); r++) {
    for (int i = 0; i < ncol; i++)
      value[i] = PQgetisnull(res, r, i) ? NULL : PQgetvalue(res, r, i);
    stor_rx_cols_t row = {ncol, name, value, num};
    if (cb(arg, &row))
      break;
  }
  PQclear(res);
  PQfinish(c);
  return 0;
}

const stor_rx_ops_t stor__rx_pg_ops = {
    .name = "PostgreSQL",
    .begin = pg_begin,
    .commit = pg_commit,
    .rollback = pg_rollback,
    .close = pg_close,
    .lock_site = pg_lock_site,
    .frame_exists = pg_frame_exists,
    .frame_same = pg_frame_same,
    .frame_insert = pg_frame_insert,
    .frame_last_t = pg_frame_last_t,
    .env_frames = pg_env_frames,
    .ledger_get = pg_ledger_get,
    .ledger_last_chained = pg_ledger_last_chained,
    .ledger_insert = pg_ledger_insert,
    .ledger_set_state = pg_ledger_set_state,
    .seal_get = pg_seal_get,
    .seal_put = pg_seal_put,
    .refusal = pg_refusal,
    .seen = pg_seen,
    .row_insert = pg_row_insert,
    .backfill_lock = pg_backfill_lock,
    .marks = pg_marks,
    .mark_done = pg_mark_done,
    .stored_after = pg_stored_after,
    .prefetch = pg_prefetch,
    .prune = pg_prune,
    .query = pg_query,
    .sites = pg_sites,
    .export_frames = pg_export,
};
