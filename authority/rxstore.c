/* The receiver's database: the one file of sitegate-rx that includes
 * sqlite3.h.
 *
 * A writer thread owns the read-write connection. The loop hands it whole
 * messages (all packets of a QN), already checked for CRC, MN and
 * signatures; the writer takes everything queued, decides each message in
 * one transaction (duplicate? next in the chain? a gap? does a seal match?),
 * commits with synchronous=FULL, and only then passes the messages back to
 * the loop, which acknowledges them. So a 9014 always means "on disk", and a
 * crash before the commit just means the gateway resends.
 *
 * Schema (PRAGMA user_version 1):
 *   frames   one row per packet: (mn, qn, pno) is unique, the data segment
 *            as sent, DataTime as Unix seconds
 *   ledger   one row per signed message: (mn, seq) with prev, hash, sig and
 *            state 'chained' (continuous from Seq 1), 'pending' (after a
 *            gap) or 'broken' (its Prev did not match when the gap closed)
 *   seals    one row per hourly seal: 'verified', 'incomplete', 'mismatch'
 *   sites    every MN that completed a handshake
 *   refusals every refused frame or connection, with its reason */
#define LOG_MODULE "rxstore"
#include "authority/rx.h"
#include "common/common.h"

#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <uv.h>

#define RX_SCHEMA_VERSION 1

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

typedef enum { JOB_MSG, JOB_REFUSAL, JOB_SEEN } job_kind_t;

typedef struct job {
  job_kind_t kind;
  rx_msg_t *m;
  char mn[HJ212_MN_MAX + 1];
  char peer[64];
  char *text;  /* refusal reason or subject */
  char *frame; /* refusal: the frame, NUL-terminated */
  int64_t at_ms;
  struct job *next;
} job_t;

struct rx_store {
  sqlite3 *db;
  pthread_t thread;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  job_t *head, **tail;
  size_t waiting;
  bool stop, started;
  rx_msg_t **done; /* decided, for the loop */
  size_t n_done, cap_done;
  uv_async_t async;
  rx_done_fn done_fn;
  void *done_arg;
};

static int64_t now_ms(void) { return (int64_t)(sg_now() * 1000.0); }

void rx_msg_free(rx_msg_t *m) {
  if (!m)
    return;
  free(m->packets);
  free(m->cp);
  free(m);
}

int64_t rx_datatime(const char *s) {
  size_t n = strlen(s);
  if (n != 14 && n != 17)
    return -1;
  for (size_t i = 0; i < n; i++)
    if (s[i] < '0' || s[i] > '9')
      return -1;
  struct tm tm;
  memset(&tm, 0, sizeof(tm));
  int v[6];
  static const int at[] = {0, 4, 6, 8, 10, 12}, len[] = {4, 2, 2, 2, 2, 2};
  for (int i = 0; i < 6; i++) {
    v[i] = 0;
    for (int k = 0; k < len[i]; k++)
      v[i] = v[i] * 10 + (s[at[i] + k] - '0');
  }
  if (v[1] < 1 || v[1] > 12 || v[2] < 1 || v[2] > 31 || v[3] > 23 || v[4] > 59 || v[5] > 60)
    return -1;
  tm.tm_year = v[0] - 1900;
  tm.tm_mon = v[1] - 1;
  tm.tm_mday = v[2];
  tm.tm_hour = v[3];
  tm.tm_min = v[4];
  tm.tm_sec = v[5];
  return (int64_t)timegm(&tm) - RX_BEIJING_MIN * 60;
}

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

/* ---- deciding one message (writer thread, inside a transaction) */

typedef struct chain_pos {
  uint64_t seq; /* 0: none yet */
  char hash[65];
} chain_pos_t;

static int last_chained(sqlite3 *db, const char *mn, chain_pos_t *c) {
  sqlite3_stmt *st = prep(db,
                          "SELECT seq, hash FROM ledger WHERE mn=? AND state='chained' "
                          "ORDER BY seq DESC LIMIT 1",
                          "s", mn);
  if (!st)
    return SQLITE_ERROR;
  int rc = sqlite3_step(st);
  c->seq = 0;
  memset(c->hash, '0', 64);
  c->hash[64] = '\0';
  if (rc == SQLITE_ROW) {
    c->seq = (uint64_t)sqlite3_column_int64(st, 0);
    snprintf(c->hash, sizeof(c->hash), "%s", (const char *)sqlite3_column_text(st, 1));
    rc = SQLITE_DONE;
  }
  sqlite3_finalize(st);
  return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

/* Stored state and hash of (mn, seq): returns SQLITE_ROW with them,
 * SQLITE_DONE when absent. */
static int ledger_get(sqlite3 *db, const char *mn, uint64_t seq, char state[16], char hash[65],
                      char prev[65]) {
  sqlite3_stmt *st =
      prep(db, "SELECT state, hash, prev FROM ledger WHERE mn=? AND seq=?", "si", mn, (int64_t)seq);
  if (!st)
    return SQLITE_ERROR;
  int rc = sqlite3_step(st);
  if (rc == SQLITE_ROW) {
    snprintf(state, 16, "%s", (const char *)sqlite3_column_text(st, 0));
    snprintf(hash, 65, "%s", (const char *)sqlite3_column_text(st, 1));
    snprintf(prev, 65, "%s", (const char *)sqlite3_column_text(st, 2));
  }
  sqlite3_finalize(st);
  return rc;
}

/* After Seq `seq` became chained with `hash`: pending records that continue
 * it become chained too, or broken when their Prev does not match. */
static int promote(sqlite3 *db, const char *mn, uint64_t seq, const char *hash) {
  char cur[65];
  snprintf(cur, sizeof(cur), "%s", hash);
  for (uint64_t next = seq + 1;; next++) {
    char state[16], h[65], prev[65];
    int rc = ledger_get(db, mn, next, state, h, prev);
    if (rc == SQLITE_DONE)
      return SQLITE_OK;
    if (rc != SQLITE_ROW)
      return rc;
    if (strcmp(state, "pending") != 0)
      return SQLITE_OK;
    bool ok = strcasecmp(prev, cur) == 0;
    if (!ok)
      log_err("%s: Seq %llu does not continue the chain (its Prev is not the Hash of Seq %llu)", mn,
              (unsigned long long)next, (unsigned long long)(next - 1));
    rc = run(prep(db, "UPDATE ledger SET state=? WHERE mn=? AND seq=?", "ssi",
                  ok ? "chained" : "broken", mn, (int64_t)next));
    if (rc != SQLITE_DONE)
      return rc;
    if (!ok)
      return SQLITE_OK;
    snprintf(cur, sizeof(cur), "%s", h);
  }
}

/* Decides the chain position of a signed message. Returns SQLITE_OK with
 * `state` set ("chained"/"pending") or m->outcome set to DUPLICATE/REFUSED,
 * or an SQLite error. */
static int chain_check(sqlite3 *db, rx_msg_t *m, const char **state) {
  char hash[65], prev[65], s[16], h[65], p[65];
  hj212_hex(m->sig.hash, 32, hash);
  hj212_hex(m->sig.prev, 32, prev);
  uint64_t seq = m->sig.seq;
  int rc = ledger_get(db, m->mn, seq, s, h, p);
  if (rc == SQLITE_ROW) {
    if (strcasecmp(h, hash) == 0) {
      m->outcome = RX_DUPLICATE;
    } else {
      m->outcome = RX_REFUSED;
      snprintf(m->reason, sizeof(m->reason),
               "Seq %llu is already stored with another Hash (a fork of the chain)",
               (unsigned long long)seq);
    }
    return SQLITE_OK;
  }
  if (rc != SQLITE_DONE)
    return rc;
  chain_pos_t last;
  if ((rc = last_chained(db, m->mn, &last)) != SQLITE_OK)
    return rc;
  if (seq == last.seq + 1) {
    if (strcasecmp(prev, last.hash) != 0) {
      m->outcome = RX_REFUSED;
      snprintf(m->reason, sizeof(m->reason),
               "chain broken: Prev of Seq %llu is not the Hash of Seq %llu",
               (unsigned long long)seq, (unsigned long long)last.seq);
      return SQLITE_OK;
    }
    *state = "chained";
    return SQLITE_OK;
  }
  /* A gap (seq <= last.seq cannot happen: chained records are contiguous
   * and this Seq is not stored). Check against a pending predecessor. */
  rc = ledger_get(db, m->mn, seq - 1, s, h, p);
  if (rc == SQLITE_ROW && strcasecmp(h, prev) != 0) {
    m->outcome = RX_REFUSED;
    snprintf(m->reason, sizeof(m->reason),
             "chain broken: Prev of Seq %llu is not the Hash of Seq %llu", (unsigned long long)seq,
             (unsigned long long)(seq - 1));
    return SQLITE_OK;
  }
  if (rc != SQLITE_ROW && rc != SQLITE_DONE)
    return rc;
  /* Pull what is missing between the chained end and this one. */
  uint64_t end = seq - 1;
  while (end > last.seq) {
    int r2 = ledger_get(db, m->mn, end, s, h, p);
    if (r2 == SQLITE_DONE)
      break;
    if (r2 != SQLITE_ROW)
      return r2;
    end--;
  }
  if (end > last.seq) {
    m->gap_begin = last.seq + 1;
    m->gap_end = end;
  }
  *state = "pending";
  return SQLITE_OK;
}

/* Recomputes a seal over the stored 2011/2051/2061 frames of its hour. */
static int seal_check(sqlite3 *db, const char *mn, int64_t hour, int64_t frames, const char *digest,
                      const char **state, int64_t *held) {
  sqlite3_stmt *st = prep(db,
                          "SELECT data FROM frames WHERE mn=? AND cn IN ('2011','2051','2061') "
                          "AND t>=? AND t<? ORDER BY qn, pno",
                          "sii", mn, hour, hour + 3600);
  if (!st)
    return SQLITE_ERROR;
  size_t len = 0, cap = 0;
  char *buf = NULL;
  int rc;
  *held = 0;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    size_t n = (size_t)sqlite3_column_bytes(st, 0);
    if (len + n + 2 > cap) {
      cap = (len + n + 2) * 2;
      char *p = realloc(buf, cap);
      if (!p) {
        rc = SQLITE_NOMEM;
        break;
      }
      buf = p;
    }
    memcpy(buf + len, sqlite3_column_text(st, 0), n);
    memcpy(buf + len + n, "\r\n", 2);
    len += n + 2;
    (*held)++;
  }
  sqlite3_finalize(st);
  if (rc != SQLITE_DONE) {
    free(buf);
    return rc;
  }
  uint8_t d[32];
  char dh[65];
  proto_sha256(buf, len, NULL, 0, d);
  free(buf);
  hj212_hex(d, 32, dh);
  if (*held == frames && strcasecmp(dh, digest) == 0)
    *state = "verified";
  else if (*held < frames)
    *state = "incomplete";
  else
    *state = "mismatch";
  return SQLITE_OK;
}

static int seal_store(sqlite3 *db, rx_msg_t *m) {
  const char *dt = NULL, *fr = NULL, *dg = NULL;
  static hj212_frame_t f; /* writer thread only */
  char line[HJ212_FRAME_MAX + 8], err[128];
  const char *eol = strstr(m->packets, "\r\n");
  size_t dlen = eol ? (size_t)(eol - m->packets) : 0;
  int n = snprintf(line, sizeof(line), "##%04zu%.*s%04X", dlen, (int)dlen, m->packets,
                   hj212_crc(m->packets, dlen));
  if (n > 0 && hj212_decode(line, (size_t)n, &f, err, sizeof(err)) == 0) {
    dt = hj212_get(&f, -1, "DataTime");
    fr = hj212_get(&f, -1, "Frames");
    dg = hj212_get(&f, -1, "Digest");
  }
  int64_t hour = dt ? rx_datatime(dt) : -1;
  if (hour < 0 || !fr || !dg || strlen(dg) != 64 || hour % 3600 != 0) {
    m->outcome = RX_REFUSED;
    snprintf(m->reason, sizeof(m->reason),
             "seal needs DataTime at the start of an hour, Frames and a 64-hex Digest");
    return SQLITE_OK;
  }
  const char *state;
  int64_t held;
  int rc = seal_check(db, m->mn, hour, strtoll(fr, NULL, 10), dg, &state, &held);
  if (rc != SQLITE_OK)
    return rc;
  if (strcmp(state, "mismatch") == 0)
    log_err("%s: seal of hour %s does not match the %lld frames stored (it says %s frames)", m->mn,
            dt, (long long)held, fr);
  else if (strcmp(state, "incomplete") == 0)
    log_warn("%s: seal of hour %s covers %s frames, %lld stored: pulling the hour", m->mn, dt, fr,
             (long long)held);
  if (strcmp(state, "incomplete") == 0) {
    snprintf(m->pull_cns, sizeof(m->pull_cns), "2011,2051,2061");
    m->pull_begin = hour;
    m->pull_end = hour + 3599;
  }
  return run(prep(db,
                  "INSERT OR REPLACE INTO seals(mn, hour, frames, digest, state, held, checked_ms) "
                  "VALUES(?,?,?,?,?,?,?)",
                  "siissii", m->mn, hour, (int64_t)strtoll(fr, NULL, 10), dg, state, held,
                  now_ms())) == SQLITE_DONE
             ? SQLITE_OK
             : SQLITE_ERROR;
}

/* An environmental frame arrived for an hour whose seal was incomplete:
 * check it again. */
static int seal_recheck(sqlite3 *db, const char *mn, int64_t t) {
  int64_t hour = t - ((t % 3600) + 3600) % 3600;
  sqlite3_stmt *st =
      prep(db, "SELECT frames, digest FROM seals WHERE mn=? AND hour=? AND state='incomplete'",
           "si", mn, hour);
  if (!st)
    return SQLITE_ERROR;
  int rc = sqlite3_step(st);
  if (rc != SQLITE_ROW) {
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? SQLITE_OK : rc;
  }
  int64_t frames = sqlite3_column_int64(st, 0);
  char digest[65];
  snprintf(digest, sizeof(digest), "%s", (const char *)sqlite3_column_text(st, 1));
  sqlite3_finalize(st);
  const char *state;
  int64_t held;
  if ((rc = seal_check(db, mn, hour, frames, digest, &state, &held)) != SQLITE_OK)
    return rc;
  if (strcmp(state, "incomplete") != 0) {
    char qn[HJ212_QN_LEN + 1];
    hj212_qn_format(hour * 1000, RX_BEIJING_MIN, qn);
    qn[14] = '\0';
    log_info("%s: seal of hour %s is now %s", mn, qn, state);
  }
  return run(prep(db, "UPDATE seals SET state=?, held=?, checked_ms=? WHERE mn=? AND hour=?",
                  "siisi", state, held, now_ms(), mn, hour)) == SQLITE_DONE
             ? SQLITE_OK
             : SQLITE_ERROR;
}

/* A minute-data frame later than the latest stored one by more than a
 * minute: ask for what lies between. */
static int minute_gap(sqlite3 *db, rx_msg_t *m) {
  sqlite3_stmt *st = prep(db, "SELECT MAX(t) FROM frames WHERE mn=? AND cn='2051'", "s", m->mn);
  if (!st)
    return SQLITE_ERROR;
  int rc = sqlite3_step(st);
  if (rc == SQLITE_ROW && sqlite3_column_type(st, 0) != SQLITE_NULL) {
    int64_t last = sqlite3_column_int64(st, 0);
    if (m->t > last + 60) {
      snprintf(m->pull_cns, sizeof(m->pull_cns), "2051");
      m->pull_begin = last + 60;
      m->pull_end = m->t - 60;
    }
    rc = SQLITE_DONE;
  }
  sqlite3_finalize(st);
  return rc == SQLITE_ROW || rc == SQLITE_DONE ? SQLITE_OK : rc;
}

static int is_env(const char *cn) {
  return !strcmp(cn, "2011") || !strcmp(cn, "2051") || !strcmp(cn, "2061");
}

static int decide(sqlite3 *db, rx_msg_t *m) {
  int rc = run(prep(db, "SELECT 1 FROM frames WHERE mn=? AND qn=? AND pno=1", "ss", m->mn, m->qn));
  if (rc == SQLITE_ROW) {
    m->outcome = RX_DUPLICATE;
    return SQLITE_OK;
  }
  if (rc != SQLITE_DONE)
    return rc;
  const char *state = NULL;
  if (m->is_signed) {
    if ((rc = chain_check(db, m, &state)) != SQLITE_OK)
      return rc;
    if (m->outcome != RX_STORED)
      return SQLITE_OK;
  }
  if (!strcmp(m->cn, "2051") && m->t >= 0 && (rc = minute_gap(db, m)) != SQLITE_OK)
    return rc;
  /* The packets, one row each. */
  const char *p = m->packets;
  for (int pno = 1; pno <= m->npackets; pno++) {
    const char *eol = strstr(p, "\r\n");
    if (!eol)
      return SQLITE_MISUSE;
    sqlite3_stmt *st =
        prep(db,
             "INSERT INTO frames(mn, qn, pno, pnum, st, cn, t, data, received_ms) "
             "VALUES(?,?,?,?,?,?,?,?,?)",
             "ssiiss", m->mn, m->qn, (int64_t)pno, (int64_t)m->npackets, m->st, m->cn);
    if (!st)
      return SQLITE_ERROR;
    if (m->t >= 0)
      sqlite3_bind_int64(st, 7, m->t);
    sqlite3_bind_text(st, 8, p, (int)(eol - p), SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, 9, m->rx_ms);
    if ((rc = run(st)) != SQLITE_DONE)
      return rc;
    p = eol + 2;
  }
  if (m->is_signed) {
    char hash[65], prev[65], sig[129];
    hj212_hex(m->sig.hash, 32, hash);
    hj212_hex(m->sig.prev, 32, prev);
    hj212_hex(m->sig.sig, 64, sig);
    rc = run(prep(db,
                  "INSERT INTO ledger(mn, seq, cn, qn, prev, hash, sig, cert, state, received_ms) "
                  "VALUES(?,?,?,?,?,?,?,?,?,?)",
                  "sisssssssi", m->mn, (int64_t)m->sig.seq, m->cn, m->qn, prev, hash, sig,
                  m->cert_fp, state, m->rx_ms));
    if (rc != SQLITE_DONE)
      return rc;
    if (!strcmp(state, "chained") && (rc = promote(db, m->mn, m->sig.seq, hash)) != SQLITE_OK)
      return rc;
    if (!strcmp(m->cn, "6041") && (rc = seal_store(db, m)) != SQLITE_OK)
      return rc;
  }
  if (is_env(m->cn) && m->t >= 0 && (rc = seal_recheck(db, m->mn, m->t)) != SQLITE_OK)
    return rc;
  m->outcome = RX_STORED;
  return SQLITE_OK;
}

/* ---- the writer thread */

static int apply(sqlite3 *db, job_t *j) {
  switch (j->kind) {
  case JOB_MSG:
    j->m->outcome = RX_STORED;
    return decide(db, j->m);
  case JOB_REFUSAL:
    return run(prep(db, "INSERT INTO refusals(mn, peer, reason, frame, at_ms) VALUES(?,?,?,?,?)",
                    "ssssi", j->mn, j->peer, j->text, j->frame ? j->frame : "", j->at_ms)) ==
                   SQLITE_DONE
               ? SQLITE_OK
               : SQLITE_ERROR;
  case JOB_SEEN:
    return run(prep(db,
                    "INSERT INTO sites(mn, subject, first_seen, last_seen, connections) "
                    "VALUES(?1,?2,?3,?3,1) ON CONFLICT(mn) DO UPDATE SET subject=?2, "
                    "last_seen=?3, connections=connections+1",
                    "ssi", j->mn, j->text, j->at_ms / 1000)) == SQLITE_DONE
               ? SQLITE_OK
               : SQLITE_ERROR;
  }
  return SQLITE_MISUSE;
}

static void job_free(job_t *j) {
  free(j->text);
  free(j->frame);
  free(j);
}

static void hand_back(rx_store_t *st, job_t *list) {
  pthread_mutex_lock(&st->mu);
  for (job_t *j = list; j; j = j->next) {
    if (j->kind != JOB_MSG)
      continue;
    if (st->n_done == st->cap_done) {
      size_t cap = st->cap_done ? st->cap_done * 2 : 64;
      rx_msg_t **p = realloc(st->done, cap * sizeof(*p));
      if (!p) /* cannot happen in practice; the message is lost unacknowledged */
        abort();
      st->done = p;
      st->cap_done = cap;
    }
    st->done[st->n_done++] = j->m;
    j->m = NULL;
  }
  pthread_mutex_unlock(&st->mu);
  uv_async_send(&st->async);
  for (job_t *j = list, *next; j; j = next) {
    next = j->next;
    job_free(j);
  }
}

static void *writer_main(void *arg) {
  rx_store_t *st = arg;
  for (;;) {
    pthread_mutex_lock(&st->mu);
    while (!st->head && !st->stop)
      pthread_cond_wait(&st->cv, &st->mu);
    job_t *list = st->head;
    st->head = NULL;
    st->tail = &st->head;
    bool stop = st->stop;
    pthread_mutex_unlock(&st->mu);
    if (!list && stop)
      break;
    int rc = exec(st->db, "BEGIN IMMEDIATE");
    for (job_t *j = list; j && rc == SQLITE_OK; j = j->next)
      rc = apply(st->db, j);
    if (rc == SQLITE_OK)
      rc = exec(st->db, "COMMIT");
    if (rc != SQLITE_OK) {
      log_err("batch not stored (%s): the gateways will resend", sqlite3_errstr(rc));
      exec(st->db, "ROLLBACK");
      for (job_t *j = list; j; j = j->next)
        if (j->kind == JOB_MSG) {
          j->m->outcome = RX_FAILED;
          snprintf(j->m->reason, sizeof(j->m->reason), "database: %s", sqlite3_errstr(rc));
        }
    }
    size_t n = 0;
    for (job_t *j = list; j; j = j->next)
      n++;
    pthread_mutex_lock(&st->mu);
    st->waiting -= n;
    pthread_mutex_unlock(&st->mu);
    hand_back(st, list);
  }
  return NULL;
}

static void store_on_async(uv_async_t *a) {
  rx_store_t *st = a->data;
  pthread_mutex_lock(&st->mu);
  rx_msg_t **list = st->done;
  size_t n = st->n_done;
  st->done = NULL;
  st->n_done = st->cap_done = 0;
  pthread_mutex_unlock(&st->mu);
  for (size_t i = 0; i < n; i++)
    st->done_fn(st->done_arg, list[i]);
  free(list);
}

static void enqueue(rx_store_t *st, job_t *j) {
  pthread_mutex_lock(&st->mu);
  *st->tail = j;
  st->tail = &j->next;
  st->waiting++;
  pthread_cond_signal(&st->cv);
  pthread_mutex_unlock(&st->mu);
}

size_t rx_store_waiting(rx_store_t *st) {
  pthread_mutex_lock(&st->mu);
  size_t n = st->waiting;
  pthread_mutex_unlock(&st->mu);
  return n;
}

size_t rx_store_submit(rx_store_t *st, rx_msg_t *m) {
  job_t *j = calloc(1, sizeof(*j));
  if (!j) {
    m->outcome = RX_FAILED;
    snprintf(m->reason, sizeof(m->reason), "out of memory");
    st->done_fn(st->done_arg, m);
    return 0;
  }
  j->kind = JOB_MSG;
  j->m = m;
  enqueue(st, j);
  pthread_mutex_lock(&st->mu);
  size_t n = st->waiting;
  pthread_mutex_unlock(&st->mu);
  return n;
}

void rx_store_refusal(rx_store_t *st, const char *mn, const char *peer, const char *reason,
                      const char *frame, size_t frame_len) {
  job_t *j = calloc(1, sizeof(*j));
  if (!j)
    return;
  j->kind = JOB_REFUSAL;
  snprintf(j->mn, sizeof(j->mn), "%s", mn ? mn : "");
  snprintf(j->peer, sizeof(j->peer), "%s", peer ? peer : "");
  j->text = strdup(reason);
  if (frame && frame_len) {
    size_t n = frame_len > 2048 ? 2048 : frame_len; /* enough to see what it was */
    j->frame = malloc(n + 1);
    if (j->frame) {
      memcpy(j->frame, frame, n);
      j->frame[n] = '\0';
    }
  }
  j->at_ms = now_ms();
  if (!j->text) {
    job_free(j);
    return;
  }
  enqueue(st, j);
}

void rx_store_seen(rx_store_t *st, const char *mn, const char *subject) {
  job_t *j = calloc(1, sizeof(*j));
  if (!j)
    return;
  j->kind = JOB_SEEN;
  snprintf(j->mn, sizeof(j->mn), "%s", mn);
  j->text = strdup(subject);
  j->at_ms = now_ms();
  if (!j->text) {
    job_free(j);
    return;
  }
  enqueue(st, j);
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
  *out = db;
  return SQLITE_OK;
fail:
  log_err("database %s: %s", path, sqlite3_errstr(rc));
  sqlite3_close(db);
  return rc;
}

int rx_store_open(const char *path, void *loop, rx_done_fn done, void *arg, rx_store_t **out) {
  *out = NULL;
  rx_store_t *st = calloc(1, sizeof(*st));
  if (!st)
    return -ENOMEM;
  st->tail = &st->head;
  st->done_fn = done;
  st->done_arg = arg;
  if (open_db(path, &st->db) != SQLITE_OK) {
    free(st);
    return -EIO;
  }
  pthread_mutex_init(&st->mu, NULL);
  pthread_cond_init(&st->cv, NULL);
  uv_async_init(loop, &st->async, store_on_async);
  st->async.data = st;
  /* The loop ends when the server's own handles are closed; what the writer
   * decides after that is handed over by rx_store_close(). */
  uv_unref((uv_handle_t *)&st->async);
  if (pthread_create(&st->thread, NULL, writer_main, st) != 0) {
    log_err("cannot start the writer thread");
    st->stop = true;
    rx_store_close(st);
    return -EAGAIN;
  }
  st->started = true;
  *out = st;
  return 0;
}

static void store_on_closed(uv_handle_t *h) {
  rx_store_t *st = h->data;
  pthread_mutex_destroy(&st->mu);
  pthread_cond_destroy(&st->cv);
  free(st);
}

void rx_store_close(rx_store_t *st) {
  if (!st)
    return;
  pthread_mutex_lock(&st->mu);
  st->stop = true;
  pthread_cond_signal(&st->cv);
  pthread_mutex_unlock(&st->mu);
  if (st->started)
    pthread_join(st->thread, NULL);
  store_on_async(&st->async); /* the last decisions, so no message leaks */
  sqlite3_close(st->db);
  st->db = NULL;
  uv_close((uv_handle_t *)&st->async, store_on_closed);
}

/* ---- read-only queries for people */

static int open_ro(const char *path, sqlite3 **db) {
  int rc = sqlite3_open_v2(path, db, SQLITE_OPEN_READONLY, NULL);
  if (rc != SQLITE_OK) {
    fprintf(stderr, "sitegate-rx: cannot open %s: %s\n", path,
            *db ? sqlite3_errmsg(*db) : sqlite3_errstr(rc));
    sqlite3_close(*db);
    *db = NULL;
    return -ENOENT;
  }
  sqlite3_busy_timeout(*db, 5000);
  return 0;
}

static void iso(int64_t t, char *out, size_t len) {
  time_t s = (time_t)(t + RX_BEIJING_MIN * 60);
  struct tm tm;
  gmtime_r(&s, &tm);
  strftime(out, len, "%Y-%m-%dT%H:%M:%S+08:00", &tm);
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

int rx_query_sites(const char *path, bool json) {
  sqlite3 *db;
  if (open_ro(path, &db) != 0)
    return -ENOENT;
  sqlite3_stmt *st = NULL;
  if (sqlite3_prepare_v2(db, sites_sql, -1, &st, NULL) != SQLITE_OK) {
    fprintf(stderr, "sitegate-rx: %s: %s\n", path, sqlite3_errmsg(db));
    sqlite3_close(db);
    return -EIO;
  }
  if (!json)
    printf("%-27s %8s %-25s %9s %7s %7s %-24s %s\n", "MN", "frames", "last frame", "ledger",
           "pending", "broken", "seals ok/incomplete/bad", "refused");
  int rc;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    const char *mn = (const char *)sqlite3_column_text(st, 0);
    int64_t last_ms = sqlite3_column_int64(st, 5);
    if (json) {
      json_t *o = json_pack("{s:s, s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}", "mn",
                            mn, "subject", (const char *)sqlite3_column_text(st, 1), "last_seen",
                            (json_int_t)sqlite3_column_int64(st, 2), "connections",
                            (json_int_t)sqlite3_column_int64(st, 3), "frames",
                            (json_int_t)sqlite3_column_int64(st, 4), "last_frame",
                            (json_int_t)(last_ms / 1000), "ledger_seq",
                            (json_int_t)sqlite3_column_int64(st, 6), "ledger_pending",
                            (json_int_t)sqlite3_column_int64(st, 7), "ledger_broken",
                            (json_int_t)sqlite3_column_int64(st, 8), "seals_verified",
                            (json_int_t)sqlite3_column_int64(st, 9), "seals_incomplete",
                            (json_int_t)sqlite3_column_int64(st, 10), "seals_mismatch",
                            (json_int_t)sqlite3_column_int64(st, 11));
      json_object_set_new(o, "refused", json_integer(sqlite3_column_int64(st, 12)));
      char *s = json_dumps(o, JSON_COMPACT);
      if (s)
        puts(s);
      free(s);
      json_decref(o);
    } else {
      char when[40] = "-";
      if (sqlite3_column_type(st, 5) != SQLITE_NULL)
        iso(last_ms / 1000, when, sizeof(when));
      char seals[40];
      snprintf(seals, sizeof(seals), "%lld/%lld/%lld", (long long)sqlite3_column_int64(st, 9),
               (long long)sqlite3_column_int64(st, 10), (long long)sqlite3_column_int64(st, 11));
      printf("%-27s %8lld %-25s %9lld %7lld %7lld %-24s %lld\n", mn,
             (long long)sqlite3_column_int64(st, 4), when, (long long)sqlite3_column_int64(st, 6),
             (long long)sqlite3_column_int64(st, 7), (long long)sqlite3_column_int64(st, 8), seals,
             (long long)sqlite3_column_int64(st, 12));
    }
  }
  sqlite3_finalize(st);
  /* Refusals that never reached a site (a failed handshake). */
  if (!json && sqlite3_prepare_v2(db, "SELECT COUNT(*) FROM refusals WHERE mn=''", -1, &st, NULL) ==
                   SQLITE_OK) {
    if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_int64(st, 0) > 0)
      printf("(%lld connections refused before a site was known)\n",
             (long long)sqlite3_column_int64(st, 0));
    sqlite3_finalize(st);
  }
  sqlite3_close(db);
  return rc == SQLITE_DONE ? 0 : -EIO;
}

/* CP of a stored data segment, for export: decoded again from the bytes. */
static int cp_of(const char *data, size_t len, hj212_frame_t *f) {
  char line[HJ212_FRAME_MAX + 8], err[128];
  if (len > HJ212_DATA_MAX)
    return -EINVAL;
  int n =
      snprintf(line, sizeof(line), "##%04zu%.*s%04X", len, (int)len, data, hj212_crc(data, len));
  return hj212_decode(line, (size_t)n, f, err, sizeof(err));
}

static void csv_field(const char *s) {
  putchar('"');
  for (; *s; s++) {
    if (*s == '"')
      putchar('"');
    putchar(*s);
  }
  putchar('"');
}

int rx_query_export(const char *path, const char *mn, int64_t since, int64_t until, const char *cn,
                    bool json) {
  sqlite3 *db;
  if (open_ro(path, &db) != 0)
    return -ENOENT;
  sqlite3_stmt *st = NULL;
  const char *sql =
      "SELECT COALESCE(f.t, f.received_ms/1000) AS tt, f.received_ms, f.qn, f.pno, f.pnum, f.st,"
      " f.cn, f.data, l.seq, l.state FROM frames f LEFT JOIN ledger l ON l.mn=f.mn AND l.qn=f.qn"
      " WHERE f.mn=?1 AND tt>=?2 AND tt<?3 AND (?4 IS NULL OR f.cn=?4) ORDER BY tt, f.qn, f.pno";
  if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) {
    fprintf(stderr, "sitegate-rx: %s: %s\n", path, sqlite3_errmsg(db));
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
  static hj212_frame_t f;
  if (!json)
    printf("time,received,mn,qn,cn,what,pno,pnum,ledger_seq,ledger_state,cp\n");
  int rc;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    int64_t t = sqlite3_column_int64(st, 0), rx = sqlite3_column_int64(st, 1);
    const char *qn = (const char *)sqlite3_column_text(st, 2);
    int pno = sqlite3_column_int(st, 3), pnum = sqlite3_column_int(st, 4);
    const char *c = (const char *)sqlite3_column_text(st, 6);
    const char *data = (const char *)sqlite3_column_text(st, 7);
    size_t dlen = (size_t)sqlite3_column_bytes(st, 7);
    bool ledger = sqlite3_column_type(st, 8) != SQLITE_NULL;
    const char *what = hj212_cn_name(c);
    bool ok = cp_of(data, dlen, &f) == 0;
    if (json) {
      json_t *o =
          json_pack("{s:I, s:I, s:s, s:s, s:s, s:i, s:i}", "t", (json_int_t)t, "received",
                    (json_int_t)(rx / 1000), "mn", mn, "qn", qn, "cn", c, "pno", pno, "pnum", pnum);
      if (what)
        json_object_set_new(o, "what", json_string(what));
      if (ledger) {
        json_object_set_new(o, "ledger_seq", json_integer(sqlite3_column_int64(st, 8)));
        json_object_set_new(o, "ledger_state",
                            json_string((const char *)sqlite3_column_text(st, 9)));
      }
      json_t *recs = json_array();
      for (size_t i = 0; ok && i < f.n_pairs; i++) {
        while (json_array_size(recs) <= f.pair[i].record)
          json_array_append_new(recs, json_object());
        json_object_set_new(json_array_get(recs, f.pair[i].record), hj212_key(&f, i),
                            json_string(hj212_value(&f, i)));
      }
      json_object_set_new(o, "records", recs);
      json_object_set_new(o, "cp", json_string(ok ? f.cp : ""));
      char *s = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
      if (s)
        puts(s);
      free(s);
      json_decref(o);
    } else {
      char a[40], b[40];
      iso(t, a, sizeof(a));
      iso(rx / 1000, b, sizeof(b));
      printf("%s,%s,%s,%s,%s,%s,%d,%d,", a, b, mn, qn, c, what ? what : "", pno, pnum);
      if (ledger)
        printf("%lld,%s,", (long long)sqlite3_column_int64(st, 8), sqlite3_column_text(st, 9));
      else
        printf(",,");
      csv_field(ok ? f.cp : "");
      putchar('\n');
    }
  }
  sqlite3_finalize(st);
  sqlite3_close(db);
  return rc == SQLITE_DONE ? 0 : -EIO;
}
