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
 * one bad byte. Other text goes through text_ok() for the same reason. */
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

#define PG_SCHEMA_VERSION 2
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

typedef struct rx_pg {
  stor_rx_t base; /* first: the handle rxstore.c knows */
  PGconn *conn;
  /* Partitions known to exist (committed), and those made in the current
   * transaction, which join them at its commit. */
  char known[PG_MONTHS_KNOWN][64];
  int n_known, next_known;
  char made[8][64];
  int n_made;
  bool migrated; /* the schema is known to be there */
} rx_pg_t;

static PGconn *conn_of(stor_rx_t *x) { return ((rx_pg_t *)(void *)x)->conn; }

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
 * stor_rx_error(), as a negative errno. */
static int failure(stor_rx_t *x, PGresult *res, const char *what) {
  PGconn *c = conn_of(x);
  const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
  const char *msg = res ? PQresultErrorMessage(res) : PQerrorMessage(c);
  char one[200];
  one_line(msg && *msg ? msg : "failed", one, sizeof(one));
  snprintf(x->error, sizeof(x->error), "%.48s: %s", what, one);
  if (PQstatus(c) != CONNECTION_OK)
    return -ENOTCONN;
  if (state && (!strcmp(state, "40P01") || !strcmp(state, "40001") || !strcmp(state, "23505")))
    return -EAGAIN; /* deadlock, serialization failure, a unique race lost */
  if (state && !strncmp(state, "08", 2))
    return -ENOTCONN;
  if (state && !strcmp(state, "53100"))
    return -ENOSPC;
  return -EIO;
}

/* Runs `sql` with text parameters (`bin` marks which are bytea, with their
 * lengths in `len`). Returns the result (the caller clears it), or NULL
 * with *rc set. */
static PGresult *q(stor_rx_t *x, int *rc, const char *sql, int n, const char *const *v,
                   const int *len, const int *bin) {
  for (int i = 0; i < n; i++)
    if (v[i] && !(bin && bin[i]) && !text_ok(v[i])) {
      snprintf(x->error, sizeof(x->error), "a parameter is not UTF-8 text");
      *rc = -EINVAL;
      return NULL;
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

/* ---- the primitives */

static int migrate(stor_rx_t *x);

static int pg_begin(stor_rx_t *x) {
  rx_pg_t *p = (rx_pg_t *)(void *)x;
  if (PQstatus(p->conn) != CONNECTION_OK) {
    PQreset(p->conn);
    if (PQstatus(p->conn) != CONNECTION_OK)
      return failure(x, NULL, "reconnect");
    PQsetNoticeProcessor(p->conn, on_notice, NULL);
    log_info("reconnected to the database");
  }
  if (!p->migrated) { /* started while the database was away */
    int rc = migrate(x);
    if (rc != 0)
      return rc;
    p->migrated = true;
  }
  return qx(x, "BEGIN", 0, NULL, NULL);
}

static int pg_commit(stor_rx_t *x) {
  rx_pg_t *p = (rx_pg_t *)(void *)x;
  int rc = qx(x, "COMMIT", 0, NULL, NULL);
  for (int i = 0; rc == 0 && i < p->n_made; i++) {
    memcpy(p->known[p->next_known], p->made[i], sizeof(p->made[i]));
    p->next_known = (p->next_known + 1) % PG_MONTHS_KNOWN;
    if (p->n_known < PG_MONTHS_KNOWN)
      p->n_known++;
  }
  p->n_made = 0;
  return rc;
}

static void pg_rollback(stor_rx_t *x) {
  ((rx_pg_t *)(void *)x)->n_made = 0;
  char keep[sizeof(x->error)];
  memcpy(keep, x->error, sizeof(keep));
  if (PQstatus(conn_of(x)) == CONNECTION_OK)
    PQclear(PQexec(conn_of(x), "ROLLBACK"));
  memcpy(x->error, keep, sizeof(keep));
}

static int pg_lock_site(stor_rx_t *x, const char *mn) {
  const char *v[] = {mn};
  return qx(x, "SELECT pg_advisory_xact_lock(" PG_LOCK_SITE ", hashtext($1))", 1, v, NULL);
}

static int pg_frame_exists(stor_rx_t *x, const char *mn, const char *qn) {
  const char *v[] = {mn, qn};
  int rc;
  PGresult *res =
      q(x, &rc, "SELECT 1 FROM frames WHERE mn=$1 AND qn=$2 AND pno=1", 2, v, NULL, NULL);
  if (res)
    rc = PQntuples(res) > 0;
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
  int rc;
  PGresult *res = q(x, &rc,
                    "INSERT INTO frames(mn, qn, pno, pnum, st, cn, t, data, received_ms) "
                    "VALUES($1,$2,$3,$4,$5,$6,$7,$8,$9) ON CONFLICT (mn, qn, pno) DO NOTHING",
                    9, v, lens, bin);
  if (res)
    rc = atoi(PQcmdTuples(res)) > 0;
  PQclear(res);
  return rc;
}

static int pg_frame_last_t(stor_rx_t *x, const char *mn, const char *cn, int64_t *t) {
  const char *v[] = {mn, cn};
  int rc;
  PGresult *res = q(x, &rc, "SELECT MAX(t) FROM frames WHERE mn=$1 AND cn=$2", 2, v, NULL, NULL);
  if (res) {
    rc = PQntuples(res) > 0 && !PQgetisnull(res, 0, 0);
    if (rc)
      *t = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
  }
  PQclear(res);
  return rc;
}

/* A bytea column asked for as hex ("\x4142..."), back to bytes in `out`
 * (which has room for the text's length): the length. */
static size_t unhex(const char *s, char *out) {
  if (s[0] == '\\' && s[1] == 'x')
    s += 2;
  size_t n = 0;
  for (; s[0] && s[1]; s += 2) {
    unsigned v;
    if (sscanf(s, "%2x", &v) != 1)
      break;
    out[n++] = (char)v;
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

static int link_row(PGresult *res, rx_link_t *l) {
  if (PQntuples(res) == 0)
    return 0;
  l->seq = strtoull(PQgetvalue(res, 0, 0), NULL, 10);
  snprintf(l->state, sizeof(l->state), "%s", PQgetvalue(res, 0, 1));
  snprintf(l->hash, sizeof(l->hash), "%s", PQgetvalue(res, 0, 2));
  snprintf(l->prev, sizeof(l->prev), "%s", PQgetvalue(res, 0, 3));
  return 1;
}

static int pg_ledger_get(stor_rx_t *x, const char *mn, uint64_t seq, rx_link_t *out) {
  char b[24];
  const char *v[] = {mn, I64(b, seq)};
  int rc;
  PGresult *res = q(x, &rc, "SELECT seq, state, hash, prev FROM ledger WHERE mn=$1 AND seq=$2", 2,
                    v, NULL, NULL);
  if (res)
    rc = link_row(res, out);
  PQclear(res);
  return rc;
}

static int pg_ledger_last_chained(stor_rx_t *x, const char *mn, rx_link_t *out) {
  const char *v[] = {mn};
  int rc;
  PGresult *res = q(x, &rc,
                    "SELECT seq, state, hash, prev FROM ledger WHERE mn=$1 AND state='chained' "
                    "ORDER BY seq DESC LIMIT 1",
                    1, v, NULL, NULL);
  if (res)
    rc = link_row(res, out);
  PQclear(res);
  return rc;
}

static int pg_ledger_insert(stor_rx_t *x, const stor_rx_msg_t *m, const char *state) {
  char hash[65], prev[65], sig[129], b_seq[24], b_rx[24];
  hj212_hex(m->sig.hash, 32, hash);
  hj212_hex(m->sig.prev, 32, prev);
  hj212_hex(m->sig.sig, 64, sig);
  const char *v[] = {m->mn, I64(b_seq, m->sig.seq), m->cn, m->qn, prev, hash, sig, m->cert_fp,
                     state, I64(b_rx, m->rx_ms)};
  return qx(x,
            "INSERT INTO ledger(mn, seq, cn, qn, prev, hash, sig, cert, state, received_ms) "
            "VALUES($1,$2,$3,$4,$5,$6,$7,$8,$9,$10)",
            10, v, NULL);
}

static int pg_ledger_set_state(stor_rx_t *x, const char *mn, uint64_t seq, const char *state) {
  char b[24];
  const char *v[] = {state, mn, I64(b, seq)};
  return qx(x, "UPDATE ledger SET state=$1 WHERE mn=$2 AND seq=$3", 3, v, NULL);
}

static int pg_seal_get(stor_rx_t *x, const char *mn, int64_t hour, rx_seal_t *out) {
  char b[24];
  const char *v[] = {mn, I64(b, hour)};
  int rc;
  PGresult *res = q(x, &rc, "SELECT frames, digest, state, held FROM seals WHERE mn=$1 AND hour=$2",
                    2, v, NULL, NULL);
  if (res && (rc = PQntuples(res) > 0)) {
    out->hour = hour;
    out->frames = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
    snprintf(out->digest, sizeof(out->digest), "%s", PQgetvalue(res, 0, 1));
    snprintf(out->state, sizeof(out->state), "%s", PQgetvalue(res, 0, 2));
    out->held = strtoll(PQgetvalue(res, 0, 3), NULL, 10);
  }
  PQclear(res);
  return rc;
}

static int pg_seal_put(stor_rx_t *x, const char *mn, const rx_seal_t *s) {
  char b_h[24], b_f[24], b_held[24], b_now[24];
  const char *v[] = {mn,       I64(b_h, s->hour),    I64(b_f, s->frames), s->digest,
                     s->state, I64(b_held, s->held), I64(b_now, now_ms())};
  return qx(x,
            "INSERT INTO seals(mn, hour, frames, digest, state, held, checked_ms) "
            "VALUES($1,$2,$3,$4,$5,$6,$7) ON CONFLICT (mn, hour) DO UPDATE SET "
            "frames=EXCLUDED.frames, digest=EXCLUDED.digest, state=EXCLUDED.state, "
            "held=EXCLUDED.held, checked_ms=EXCLUDED.checked_ms",
            7, v, NULL);
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
  if (m && p && r) {
    PGresult *res = q(x, &rc,
                      "INSERT INTO refusals(mn, peer, reason, frame, at_ms) "
                      "VALUES($1,$2,$3,$4,$5)",
                      5, v, lens, bin);
    PQclear(res);
  }
  free(m);
  free(p);
  free(r);
  return rc;
}

static int pg_seen(stor_rx_t *x, const char *mn, const char *subject, int64_t at_ms) {
  char b[24];
  const char *v[] = {mn, subject, I64(b, at_ms / 1000)};
  return qx(x,
            "INSERT INTO sites(mn, subject, first_seen, last_seen, connections) "
            "VALUES($1,$2,$3,$3,1) ON CONFLICT (mn) DO UPDATE SET subject=$2, last_seen=$3, "
            "connections=sites.connections+1",
            3, v, NULL);
}

/* Makes the partition of `table` that holds `t`, unless known to exist. */
static int partition_for(stor_rx_t *x, const char *table, int64_t t) {
  rx_pg_t *p = (rx_pg_t *)(void *)x;
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
  int rc = qx(x, "SELECT pg_advisory_xact_lock(" PG_LOCK_SCHEMA ", 1)", 0, NULL, NULL);
  if (rc == 0 && (rc = qx(x, sql, 0, NULL, NULL)) == 0 && p->n_made < 8)
    snprintf(p->made[p->n_made++], sizeof(p->made[0]), "%s", part);
  return rc;
}

static int pg_row_insert(stor_rx_t *x, const rx_row_t *r) {
  char sql[2048], b_t[24], b_seq[24];
  int n = stor__rx_insert_sql(r->table, sql, sizeof(sql));
  assert(n > 0 && n <= RX_COLS_MAX + 4);
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
  for (int i = 0; k < n; i++)
    v[k++] = r->v[i];
  int rows = 0;
  int rc = qx(x, sql, n, v, &rows);
  return rc < 0 ? rc : rows > 0;
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
      (rc = qx(x, schema, 0, NULL, NULL)) != 0 || (rc = decoded_schema(x)) != 0)
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
      (rc = qx(x, "INSERT INTO rx_schema VALUES(2)" /* PG_SCHEMA_VERSION */, 0, NULL, NULL)) != 0)
    goto fail;
  if ((rc = pg_commit(x)) != 0)
    goto fail;
  return 0;
fail:
  pg_rollback(x);
  return rc;
}

static void pg_close(stor_rx_t *x) {
  rx_pg_t *p = (rx_pg_t *)(void *)x;
  if (p->conn)
    PQfinish(p->conn);
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
  if (!(p->conn = PQconnectdb(uri))) {
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
    .prune = pg_prune,
    .query = pg_query,
    .sites = pg_sites,
    .export_frames = pg_export,
};
