/* The receiver's store (storage.h "the receiver's store"): which back end a
 * target names, and the decisions, written once for every back end.
 *
 * The receiver's writer thread (authority/rxwriter.c) hands whole messages
 * (all packets of a QN), already checked for CRC, MN and signatures; here
 * each is decided inside the batch's transaction (duplicate? next in the
 * chain? a gap? does a seal match? a missed minute?) through the back end's
 * primitives (rx_int.h), under a lock on its site that the database holds
 * until the commit. The writer acknowledges only after the commit, so a
 * 9014 always means "stored", and a crash before it just means a resend.
 *
 * The back ends: a file name is SQLite (rxsqlite.c); a libpq connection URI
 * (postgresql://... or postgres://...) is PostgreSQL (rxpg.c), which any
 * number of receivers can share. */
#define LOG_MODULE "rxstore"
#include "common/common.h"
#include "protocol/protocol.h"
#include "storage/rx_int.h"
#include "storage/storage.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define BEIJING_MIN 480 /* HJ 212 times are Beijing time, UTC+8 */

bool stor_rx_is_pg(const char *target) {
  return !strncmp(target, "postgresql://", 13) || !strncmp(target, "postgres://", 11);
}

const stor_rx_ops_t *stor__rx_ops_for(const char *target) {
  return stor_rx_is_pg(target) ? &stor__rx_pg_ops : &stor__rx_sqlite_ops;
}

void stor_rx_redact(const char *target, char *out, size_t outlen) {
  /* postgresql://user:secret@host/db -> postgresql://user:***@host/db */
  const char *scheme = strstr(target, "://");
  const char *at = scheme ? strchr(scheme + 3, '@') : NULL;
  const char *colon = at ? memchr(scheme + 3, ':', (size_t)(at - scheme - 3)) : NULL;
  if (!stor_rx_is_pg(target) || !colon) {
    snprintf(out, outlen, "%s", target);
    return;
  }
  snprintf(out, outlen, "%.*s:***%s", (int)(colon - target), target, at);
}

/* ---- deciding one message (writer thread, inside a transaction) */

static int lock_site(stor_rx_t *x, const char *mn) {
  for (int i = 0; i < x->n_locked; i++)
    if (!strcmp(x->locked[i], mn))
      return 0;
  int rc = x->ops->lock_site(x, mn);
  if (rc == 0 && x->n_locked < RX_LOCKED_MAX)
    snprintf(x->locked[x->n_locked++], sizeof(x->locked[0]), "%s", mn);
  return rc;
}

/* After Seq `seq` became chained with `hash`: pending records that continue
 * it become chained too, or broken when their Prev does not match. */
static int promote(stor_rx_t *x, const char *mn, uint64_t seq, const char *hash) {
  char cur[65];
  snprintf(cur, sizeof(cur), "%s", hash);
  for (uint64_t next = seq + 1;; next++) {
    rx_link_t l;
    int rc = x->ops->ledger_get(x, mn, next, &l);
    if (rc <= 0)
      return rc;
    if (strcmp(l.state, "pending") != 0)
      return 0;
    bool ok = strcasecmp(l.prev, cur) == 0;
    if (!ok)
      log_err("%s: Seq %llu does not continue the chain (its Prev is not the Hash of Seq %llu)", mn,
              (unsigned long long)next, (unsigned long long)(next - 1));
    if ((rc = x->ops->ledger_set_state(x, mn, next, ok ? "chained" : "broken")) != 0)
      return rc;
    if (!ok)
      return 0;
    snprintf(cur, sizeof(cur), "%s", l.hash);
  }
}

/* Refuses `m` with `fmt`, which prints `a` and may print `b`. */
static void refuse(stor_rx_msg_t *m, const char *fmt, unsigned long long a, unsigned long long b) {
  m->outcome = STOR_RX_REFUSED;
  m->refusal = "chain";
  snprintf(m->reason, sizeof(m->reason), fmt, a, b);
}

/* Decides the chain position of a signed message: 0 with `state` set
 * ("chained"/"pending") or m->outcome set to DUPLICATE/REFUSED, or a
 * negative errno. */
static int chain_check(stor_rx_t *x, stor_rx_msg_t *m, const char **state) {
  char hash[65], prev[65];
  hj212_hex(m->sig.hash, 32, hash);
  hj212_hex(m->sig.prev, 32, prev);
  uint64_t seq = m->sig.seq;
  rx_link_t l;
  int rc = x->ops->ledger_get(x, m->mn, seq, &l);
  if (rc < 0)
    return rc;
  if (rc == 1) {
    if (strcasecmp(l.hash, hash) == 0)
      m->outcome = STOR_RX_DUPLICATE;
    else
      refuse(m, "Seq %llu is already stored with another Hash (a fork of the chain)", seq, 0);
    return 0;
  }
  rx_link_t last = {.seq = 0};
  memset(last.hash, '0', 64);
  last.hash[64] = '\0';
  if ((rc = x->ops->ledger_last_chained(x, m->mn, &last)) < 0)
    return rc;
  if (seq == last.seq + 1) {
    if (strcasecmp(prev, last.hash) != 0) {
      refuse(m, "chain broken: Prev of Seq %llu is not the Hash of Seq %llu", seq, last.seq);
      return 0;
    }
    *state = "chained";
    return 0;
  }
  /* A gap (seq <= last.seq cannot happen: chained records are contiguous
   * and this Seq is not stored). Check against a pending predecessor. */
  if ((rc = x->ops->ledger_get(x, m->mn, seq - 1, &l)) < 0)
    return rc;
  if (rc == 1 && strcasecmp(l.hash, prev) != 0) {
    refuse(m, "chain broken: Prev of Seq %llu is not the Hash of Seq %llu", seq, seq - 1);
    return 0;
  }
  /* Pull what is missing between the chained end and this one. */
  uint64_t end = seq - 1;
  while (end > last.seq) {
    if ((rc = x->ops->ledger_get(x, m->mn, end, &l)) < 0)
      return rc;
    if (rc == 0)
      break;
    end--;
  }
  if (end > last.seq) {
    m->gap_begin = last.seq + 1;
    m->gap_end = end;
  }
  *state = "pending";
  return 0;
}

typedef struct seal_buf {
  char *buf;
  size_t len, cap;
  int64_t n;
} seal_buf_t;

static int seal_add(void *arg, const char *data, size_t n) {
  seal_buf_t *b = arg;
  if (b->len + n + 2 > b->cap) {
    size_t cap = (b->len + n + 2) * 2;
    char *p = realloc(b->buf, cap);
    if (!p)
      return -ENOMEM;
    b->buf = p;
    b->cap = cap;
  }
  memcpy(b->buf + b->len, data, n);
  memcpy(b->buf + b->len + n, "\r\n", 2);
  b->len += n + 2;
  b->n++;
  return 0;
}

/* Recomputes seal `s` over the stored 2011/2051/2061 frames of its hour:
 * sets s->held and s->state. */
static int seal_check(stor_rx_t *x, const char *mn, rx_seal_t *s) {
  seal_buf_t b = {0};
  int rc = x->ops->env_frames(x, mn, s->hour, s->hour + 3600, seal_add, &b);
  if (rc < 0) {
    free(b.buf);
    return rc;
  }
  uint8_t d[32];
  char dh[65];
  proto_sha256(b.buf ? b.buf : "", b.len, NULL, 0, d);
  free(b.buf);
  hj212_hex(d, 32, dh);
  s->held = b.n;
  if (b.n == s->frames && strcasecmp(dh, s->digest) == 0)
    snprintf(s->state, sizeof(s->state), "verified");
  else if (b.n < s->frames)
    snprintf(s->state, sizeof(s->state), "incomplete");
  else
    snprintf(s->state, sizeof(s->state), "mismatch");
  return 0;
}

static int seal_store(stor_rx_t *x, stor_rx_msg_t *m) {
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
    m->refusal = "seal";
    snprintf(m->reason, sizeof(m->reason),
             "seal needs DataTime at the start of an hour, Frames and a 64-hex Digest");
    return 0;
  }
  rx_seal_t s = {.hour = hour, .frames = strtoll(fr, NULL, 10)};
  snprintf(s.digest, sizeof(s.digest), "%s", dg);
  int rc = seal_check(x, m->mn, &s);
  if (rc < 0)
    return rc;
  if (strcmp(s.state, "mismatch") == 0)
    log_err("%s: seal of hour %s does not match the %lld frames stored (it says %s frames)", m->mn,
            dt, (long long)s.held, fr);
  else if (strcmp(s.state, "incomplete") == 0)
    log_warn("%s: seal of hour %s covers %s frames, %lld stored: pulling the hour", m->mn, dt, fr,
             (long long)s.held);
  if (strcmp(s.state, "incomplete") == 0) {
    snprintf(m->pull_cns, sizeof(m->pull_cns), "2011,2051,2061");
    m->pull_begin = hour;
    m->pull_end = hour + 3599;
  }
  return x->ops->seal_put(x, m->mn, &s);
}

/* An environmental frame arrived for an hour whose seal was incomplete:
 * check it again. */
static int seal_recheck(stor_rx_t *x, const char *mn, int64_t t) {
  rx_seal_t s;
  int64_t hour = t - ((t % 3600) + 3600) % 3600;
  int rc = x->ops->seal_get(x, mn, hour, &s);
  if (rc <= 0 || strcmp(s.state, "incomplete") != 0)
    return rc < 0 ? rc : 0;
  if ((rc = seal_check(x, mn, &s)) < 0)
    return rc;
  if (strcmp(s.state, "incomplete") != 0) {
    char qn[HJ212_QN_LEN + 1];
    hj212_qn_format(hour * 1000, BEIJING_MIN, qn);
    qn[14] = '\0';
    log_info("%s: seal of hour %s is now %s", mn, qn, s.state);
  }
  return x->ops->seal_put(x, mn, &s);
}

/* A minute-data frame later than the latest stored one by more than a
 * minute: ask for what lies between. */
static int minute_gap(stor_rx_t *x, stor_rx_msg_t *m) {
  int64_t last;
  int rc = x->ops->frame_last_t(x, m->mn, "2051", &last);
  if (rc == 1 && m->t > last + 60) {
    snprintf(m->pull_cns, sizeof(m->pull_cns), "2051");
    m->pull_begin = last + 60;
    m->pull_end = m->t - 60;
  }
  return rc < 0 ? rc : 0;
}

static bool is_env(const char *cn) {
  return !strcmp(cn, "2011") || !strcmp(cn, "2051") || !strcmp(cn, "2061");
}

static int store_packets(stor_rx_t *x, stor_rx_msg_t *m) {
  const char *p = m->packets;
  int stored = 0;
  for (int pno = 1; pno <= m->npackets; pno++) {
    const char *eol = strstr(p, "\r\n");
    if (!eol)
      return -EINVAL;
    int rc = x->ops->frame_insert(x, m, pno, p, (size_t)(eol - p));
    if (rc < 0)
      return rc;
    stored += rc;
    p = eol + 2;
  }
  return stored;
}

static int insert_row(void *arg, const rx_row_t *r) {
  stor_rx_t *x = arg;
  int rc = x->ops->row_insert(x, r);
  return rc < 0 ? rc : 0;
}

/* Compares `m` with what is stored under its QN: *differs is 0 when every
 * packet is stored as it came, else the PNO of the first that is not.
 * Returns 0 or a negative errno. */
static int same_packets(stor_rx_t *x, stor_rx_msg_t *m, int *differs) {
  const char *p = m->packets;
  *differs = 0;
  for (int pno = 1; pno <= m->npackets; pno++) {
    const char *eol = strstr(p, "\r\n");
    if (!eol)
      return -EINVAL;
    int rc = x->ops->frame_same(x, m->mn, m->qn, pno, p, (size_t)(eol - p));
    if (rc < 0)
      return rc;
    if (rc == 0) {
      *differs = pno;
      return 0;
    }
    p = eol + 2;
  }
  return 0;
}

static int decide(stor_rx_t *x, stor_rx_msg_t *m) {
  int rc = lock_site(x, m->mn);
  if (rc < 0 || (rc = x->ops->frame_exists(x, m->mn, m->qn)) < 0)
    return rc;
  if (rc == 1) {
    /* A QN names one message (UPLINK.md): the same QN with other bytes is
     * not a resend, and acknowledging it would drop it unseen. */
    int differs = 0;
    if ((rc = same_packets(x, m, &differs)) < 0)
      return rc;
    if (!differs)
      m->outcome = STOR_RX_DUPLICATE;
    else
      refuse(m,
             "QN %llu is already stored with other content (packet %llu differs): a QN names one "
             "message, never acknowledged",
             strtoull(m->qn, NULL, 10), (unsigned long long)differs);
    return 0;
  }
  const char *state = NULL;
  if (m->is_signed) {
    if ((rc = chain_check(x, m, &state)) < 0)
      return rc;
    if (m->outcome != STOR_RX_STORED)
      return 0;
  }
  if (!strcmp(m->cn, "2051") && m->t >= 0 && (rc = minute_gap(x, m)) < 0)
    return rc;
  if ((rc = store_packets(x, m)) < 0)
    return rc;
  if (rc == 0) { /* under the site's lock this cannot be: say so, store nothing twice */
    log_warn("%s: QN %s appeared while it was being decided", m->mn, m->qn);
    m->outcome = STOR_RX_DUPLICATE;
    return 0;
  }
  if (m->is_signed) {
    char hash[65];
    hj212_hex(m->sig.hash, 32, hash);
    if ((rc = x->ops->ledger_insert(x, m, state)) < 0)
      return rc;
    if (!strcmp(state, "chained") && (rc = promote(x, m->mn, m->sig.seq, hash)) < 0)
      return rc;
    if (!strcmp(m->cn, "6041") && (rc = seal_store(x, m)) < 0)
      return rc;
  }
  if (is_env(m->cn) && m->t >= 0 && (rc = seal_recheck(x, m->mn, m->t)) < 0)
    return rc;
  if ((rc = stor__rx_decode(m, insert_row, x)) < 0)
    return rc;
  m->outcome = STOR_RX_STORED;
  return 0;
}

int64_t stor__rx_month_start(int64_t t, int months, char *name) {
  time_t lt = (time_t)(t + BEIJING_MIN * 60);
  struct tm tm;
  gmtime_r(&lt, &tm);
  int m = tm.tm_year * 12 + tm.tm_mon + months;
  struct tm s = {.tm_year = m / 12, .tm_mon = m % 12, .tm_mday = 1};
  if (s.tm_mon < 0) {
    s.tm_mon += 12;
    s.tm_year--;
  }
  if (name)
    snprintf(name, 16, "%04d%02d", (s.tm_year + 1900) % 10000, (s.tm_mon + 1) % 100);
  return (int64_t)timegm(&s) - BEIJING_MIN * 60;
}

/* ---- the public functions: dispatch to the back end */

int stor_rx_open(const char *target, stor_rx_t **out) {
  *out = NULL;
  return stor_rx_is_pg(target) ? stor__rx_pg_open(target, out) : stor__rx_sqlite_open(target, out);
}

void stor_rx_close(stor_rx_t *x) {
  if (x)
    x->ops->close(x);
}

int stor_rx_begin(stor_rx_t *x) {
  x->n_locked = 0;
  return x->ops->begin(x);
}

int stor_rx_prefetch(stor_rx_t *x, stor_rx_msg_t *const *msgs, size_t n) {
  return x->ops->prefetch ? x->ops->prefetch(x, msgs, n) : 0;
}

int stor_rx_commit(stor_rx_t *x) { return x->ops->commit(x); }

void stor_rx_rollback(stor_rx_t *x) { x->ops->rollback(x); }

const char *stor_rx_error(const stor_rx_t *x) { return x->error[0] ? x->error : "not an error"; }

const char *stor_rx_backend(const stor_rx_t *x) { return x->ops->name; }

int stor_rx_decide(stor_rx_t *x, stor_rx_msg_t *m) {
  /* A batch the database asked to retry decides its messages again. */
  m->outcome = STOR_RX_STORED;
  m->reason[0] = '\0';
  m->refusal = NULL;
  m->gap_begin = m->gap_end = 0;
  m->pull_cns[0] = '\0';
  return decide(x, m);
}

int stor_rx_refusal(stor_rx_t *x, const char *mn, const char *peer, const char *reason,
                    const char *frame, int64_t at_ms) {
  return x->ops->refusal(x, mn, peer, reason, frame, at_ms);
}

int stor_rx_seen(stor_rx_t *x, const char *mn, const char *subject, int64_t at_ms) {
  return x->ops->seen(x, mn, subject, at_ms);
}

int stor_rx_prune(const char *target, int keep_months, int64_t now,
                  void (*cb)(void *arg, const char *what, int64_t rows), void *arg, char *err,
                  size_t errlen) {
  err[0] = '\0';
  char month[16];
  int64_t before = stor__rx_month_start(now, -keep_months, month);
  return stor__rx_ops_for(target)->prune(target, before, month, cb, arg, err, errlen);
}

int stor_rx_sites(const char *target, void (*cb)(void *arg, const stor_rx_site_t *s), void *arg,
                  int64_t *unknown, char *err, size_t errlen) {
  err[0] = '\0';
  *unknown = 0;
  return stor__rx_ops_for(target)->sites(target, cb, arg, unknown, err, errlen);
}

int stor_rx_export(const char *target, const char *mn, int64_t since, int64_t until, const char *cn,
                   void (*cb)(void *arg, const stor_rx_frame_t *f), void *arg, char *err,
                   size_t errlen) {
  err[0] = '\0';
  return stor__rx_ops_for(target)->export_frames(target, mn, since, until, cn, cb, arg, err,
                                                 errlen);
}
