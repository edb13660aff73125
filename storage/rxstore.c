/* The receiver's database (storage.h "the receiver's store"): the SQLite
 * backend of sitegate-rx's store, behind the stor_rx_* functions.
 *
 * The receiver's writer thread (authority/rxwriter.c) owns the read-write
 * connection. The loop hands it whole messages (all packets of a QN),
 * already checked for CRC, MN and signatures; the writer takes everything
 * queued, decides each message here in one transaction (duplicate? next in
 * the chain? a gap? does a seal match?), commits with synchronous=FULL, and
 * only then passes the messages back to the loop, which acknowledges them.
 * So a 9014 always means "on disk", and a crash before the commit just
 * means the gateway resends. The queries for people open their own
 * read-only connection and hand rows to a callback; the receiver prints.
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
#include "common/common.h"
#include "protocol/protocol.h"
#include "storage/storage.h"
#include "storage/storage_int.h"

#include <errno.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define BEIJING_MIN 480 /* HJ 212 times are Beijing time, UTC+8 */
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

struct stor_rx {
  sqlite3 *db;
  int rc; /* the last failure's SQLite code */
};

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
static int chain_check(sqlite3 *db, stor_rx_msg_t *m, const char **state) {
  char hash[65], prev[65], s[16], h[65], p[65];
  hj212_hex(m->sig.hash, 32, hash);
  hj212_hex(m->sig.prev, 32, prev);
  uint64_t seq = m->sig.seq;
  int rc = ledger_get(db, m->mn, seq, s, h, p);
  if (rc == SQLITE_ROW) {
    if (strcasecmp(h, hash) == 0) {
      m->outcome = STOR_RX_DUPLICATE;
    } else {
      m->outcome = STOR_RX_REFUSED;
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
      m->outcome = STOR_RX_REFUSED;
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
    m->outcome = STOR_RX_REFUSED;
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

static int seal_store(sqlite3 *db, stor_rx_msg_t *m) {
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
  int64_t hour = dt ? hj212_datatime(dt, BEIJING_MIN) : -1;
  if (hour < 0 || !fr || !dg || strlen(dg) != 64 || hour % 3600 != 0) {
    m->outcome = STOR_RX_REFUSED;
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
    hj212_qn_format(hour * 1000, BEIJING_MIN, qn);
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
static int minute_gap(sqlite3 *db, stor_rx_msg_t *m) {
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

static int decide(sqlite3 *db, stor_rx_msg_t *m) {
  int rc = run(prep(db, "SELECT 1 FROM frames WHERE mn=? AND qn=? AND pno=1", "ss", m->mn, m->qn));
  if (rc == SQLITE_ROW) {
    m->outcome = STOR_RX_DUPLICATE;
    return SQLITE_OK;
  }
  if (rc != SQLITE_DONE)
    return rc;
  const char *state = NULL;
  if (m->is_signed) {
    if ((rc = chain_check(db, m, &state)) != SQLITE_OK)
      return rc;
    if (m->outcome != STOR_RX_STORED)
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
  m->outcome = STOR_RX_STORED;
  return SQLITE_OK;
}

/* ---- the writer's connection */

/* Keeps `rc` for stor_rx_error() and turns it into 0 or a negative errno. */
static int result(stor_rx_t *x, int rc) {
  if (rc == SQLITE_OK)
    return 0;
  x->rc = rc;
  int e = stor__err(x->db, rc);
  return e ? e : -EIO;
}

int stor_rx_begin(stor_rx_t *x) { return result(x, exec(x->db, "BEGIN IMMEDIATE")); }

int stor_rx_commit(stor_rx_t *x) { return result(x, exec(x->db, "COMMIT")); }

void stor_rx_rollback(stor_rx_t *x) { exec(x->db, "ROLLBACK"); }

const char *stor_rx_error(const stor_rx_t *x) { return sqlite3_errstr(x->rc); }

int stor_rx_decide(stor_rx_t *x, stor_rx_msg_t *m) {
  m->outcome = STOR_RX_STORED;
  return result(x, decide(x->db, m));
}

int stor_rx_refusal(stor_rx_t *x, const char *mn, const char *peer, const char *reason,
                    const char *frame, int64_t at_ms) {
  int rc = run(prep(x->db, "INSERT INTO refusals(mn, peer, reason, frame, at_ms) VALUES(?,?,?,?,?)",
                    "ssssi", mn, peer, reason, frame ? frame : "", at_ms));
  return result(x, rc == SQLITE_DONE ? SQLITE_OK : SQLITE_ERROR);
}

int stor_rx_seen(stor_rx_t *x, const char *mn, const char *subject, int64_t at_ms) {
  int rc = run(prep(x->db,
                    "INSERT INTO sites(mn, subject, first_seen, last_seen, connections) "
                    "VALUES(?1,?2,?3,?3,1) ON CONFLICT(mn) DO UPDATE SET subject=?2, "
                    "last_seen=?3, connections=connections+1",
                    "ssi", mn, subject, at_ms / 1000));
  return result(x, rc == SQLITE_DONE ? SQLITE_OK : SQLITE_ERROR);
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

int stor_rx_open(const char *path, stor_rx_t **out) {
  *out = NULL;
  stor_rx_t *x = calloc(1, sizeof(*x));
  if (!x)
    return -ENOMEM;
  int rc = open_db(path, &x->db);
  if (rc != SQLITE_OK) {
    free(x);
    return -EIO;
  }
  *out = x;
  return 0;
}

void stor_rx_close(stor_rx_t *x) {
  if (!x)
    return;
  sqlite3_close(x->db);
  free(x);
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

int stor_rx_sites(const char *path, void (*cb)(void *arg, const stor_rx_site_t *s), void *arg,
                  int64_t *unknown, char *err, size_t errlen) {
  sqlite3 *db;
  err[0] = '\0';
  *unknown = 0;
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

int stor_rx_export(const char *path, const char *mn, int64_t since, int64_t until, const char *cn,
                   void (*cb)(void *arg, const stor_rx_frame_t *f), void *arg, char *err,
                   size_t errlen) {
  sqlite3 *db;
  err[0] = '\0';
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
