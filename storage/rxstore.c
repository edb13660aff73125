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
 * The backfill (stor_rx_backfill()) is decided here too: frames stored
 * before their decoded table existed are rebuilt into messages and decoded
 * as decide() decodes a new one, a bounded step per transaction, its place
 * kept per table in rx_backfill.
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
#include <stdint.h>
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

/* ---- the backfill (storage.h stor_rx_backfill()) */

#define BACKFILL_SPAN 20000 /* frame ids looked at in one step, whatever they hold */
#define BACKFILL_PACKETS 64 /* the receiver collects no more packets of a message */
#define BACKFILL_TABLES 64

typedef struct bf_table {
  const rx_table_t *t;
  int64_t done, upto;
} bf_table_t;

typedef struct backfill {
  stor_rx_t *x;
  stor_rx_backfill_t *out;
  bf_table_t tab[BACKFILL_TABLES];
  int n_tab;
  /* the message being collected: its first packet's id, its packets */
  int64_t id, rx_ms;
  char mn[HJ212_MN_MAX + 1], qn[HJ212_QN_MAX + 1];
  int pnum, got;
  bool bad;
  char *seg[BACKFILL_PACKETS];
  size_t len[BACKFILL_PACKETS];
  int64_t seen, last_id; /* messages looked at, the last one's id */
} backfill_t;

static int bf_on_mark(void *arg, const char *table, int64_t done, int64_t upto) {
  backfill_t *b = arg;
  for (const rx_table_t *t = stor__rx_tables; t->name; t++)
    if (!strcmp(t->name, table) && b->n_tab < BACKFILL_TABLES)
      b->tab[b->n_tab++] = (bf_table_t){t, done, upto};
  return 0; /* a table this receiver does not know: not its to decode */
}

/* A decoded row, stored when its table still lacks the message's rows. */
static int bf_on_row(void *arg, const rx_row_t *r) {
  backfill_t *b = arg;
  for (int i = 0; i < b->n_tab; i++)
    if (b->tab[i].t == r->table && b->tab[i].done < b->id && b->id <= b->tab[i].upto) {
      int rc = b->x->ops->row_insert(b->x, r);
      if (rc < 0)
        return rc;
      b->out->rows++;
    }
  return 0;
}

/* Decodes the message collected, as decide() does once it is stored: a
 * signed one only when the ledger holds its Seq with its Hash (it was
 * verified when it came; a record the receiver refused is not stored). */
static int bf_message(backfill_t *b) {
  stor_rx_msg_t m;
  memset(&m, 0, sizeof(m));
  char err[192];
  int rc = b->bad || b->got != b->pnum ? -EBADMSG : 0;
  if (rc)
    snprintf(err, sizeof(err), "%d of its %d packets stored in order", b->got, b->pnum);
  else
    rc = stor__rx_rebuild((const char *const *)b->seg, b->len, b->got, &m, err, sizeof(err));
  if (rc == -EBADMSG) {
    log_warn("%s: QN %s (frame %lld) cannot be rebuilt (%s): not decoded, its frames keep it",
             b->mn, b->qn, (long long)b->id, err);
    b->out->skipped++;
    return 0;
  }
  if (rc < 0)
    return rc;
  snprintf(m.mn, sizeof(m.mn), "%s", b->mn); /* the keys as stored */
  snprintf(m.qn, sizeof(m.qn), "%s", b->qn);
  m.rx_ms = b->rx_ms;
  if (hj212_cn_is_signed(m.cn) &&
      hj212_signed_parse(m.cp, m.cp_len, &m.sig, err, sizeof(err)) == 0) {
    rx_link_t l;
    char hash[65];
    hj212_hex(m.sig.hash, 32, hash);
    rc = b->x->ops->ledger_get(b->x, m.mn, m.sig.seq, &l);
    m.is_signed = rc == 1 && strcasecmp(l.hash, hash) == 0;
  }
  if (rc >= 0)
    rc = stor__rx_decode(&m, bf_on_row, b);
  free(m.packets);
  free(m.cp);
  if (rc >= 0)
    b->out->messages++;
  return rc < 0 ? rc : 0;
}

/* The message collected is complete (or cut off): decode it, start anew. */
static int bf_flush(backfill_t *b) {
  int rc = 0;
  if (b->id) {
    b->seen++;
    b->last_id = b->id;
    rc = bf_message(b);
  }
  for (int i = 0; i < b->got; i++)
    free(b->seg[i]);
  b->got = 0;
  b->bad = false;
  b->id = 0;
  return rc;
}

static int bf_on_packet(void *arg, const rx_packet_t *p) {
  backfill_t *b = arg;
  int rc = 0;
  if (p->id != b->id) {
    if ((rc = bf_flush(b)) != 0)
      return rc;
    b->id = p->id;
    b->rx_ms = p->rx_ms;
    b->pnum = p->pnum;
    snprintf(b->mn, sizeof(b->mn), "%s", p->mn);
    snprintf(b->qn, sizeof(b->qn), "%s", p->qn);
  }
  if (p->pno != b->got + 1 || b->got >= BACKFILL_PACKETS) {
    b->bad = true;
    return 0;
  }
  if (!(b->seg[b->got] = malloc(p->len ? p->len : 1)))
    return -ENOMEM;
  memcpy(b->seg[b->got], p->data, p->len);
  b->len[b->got++] = p->len;
  return 0;
}

/* The step inside its transaction. */
static int backfill_step(backfill_t *b, int max_messages) {
  stor_rx_t *x = b->x;
  int rc = x->ops->backfill_lock(x);
  if (rc == 0) {
    snprintf(x->error, sizeof(x->error), "another receiver is running the backfill");
    return -EBUSY;
  }
  if (rc < 0 || (rc = x->ops->marks(x, bf_on_mark, b)) < 0)
    return rc;
  int64_t lo = INT64_MAX, top = 0;
  char cns[512] = "";
  size_t len = 0;
  for (int i = 0; i < b->n_tab; i++) {
    const bf_table_t *e = &b->tab[i];
    top = e->upto > top ? e->upto : top;
    if (e->done >= e->upto)
      continue;
    lo = e->done < lo ? e->done : lo;
    char lit[16];
    snprintf(lit, sizeof(lit), "'%s'", e->t->cn);
    if (!strstr(cns, lit) && len + strlen(lit) + 2 < sizeof(cns))
      len += (size_t)snprintf(cns + len, sizeof(cns) - len, "%s%s", len ? "," : "", lit);
  }
  b->out->upto = top;
  if (lo == INT64_MAX) {
    b->out->done = top;
    b->out->finished = true;
    return 0;
  }
  int64_t hi = top - lo > BACKFILL_SPAN ? lo + BACKFILL_SPAN : top;
  if ((rc = x->ops->stored_after(x, lo, hi, cns, max_messages, bf_on_packet, b)) < 0 ||
      (rc = bf_flush(b)) < 0)
    return rc;
  /* Every message up to `to` is decoded: all of (lo, hi], or up to the
   * last when the step was full. */
  int64_t to = b->seen >= max_messages ? b->last_id : hi, least = top;
  b->out->finished = true;
  for (int i = 0; i < b->n_tab; i++) {
    bf_table_t *e = &b->tab[i];
    int64_t done = to > e->upto ? e->upto : to;
    if (e->done < done) {
      if ((rc = x->ops->mark_done(x, e->t->name, done)) < 0)
        return rc;
      e->done = done;
    }
    if (e->done < e->upto) {
      b->out->finished = false;
      least = e->done < least ? e->done : least;
    }
  }
  b->out->done = least;
  return 0;
}

int stor_rx_backfill(stor_rx_t *x, int max_messages, stor_rx_backfill_t *out) {
  memset(out, 0, sizeof(*out));
  backfill_t *b = calloc(1, sizeof(*b));
  if (!b)
    return -ENOMEM;
  b->x = x;
  b->out = out;
  int rc = stor_rx_begin(x);
  if (rc == 0)
    rc = backfill_step(b, max_messages > 0 ? max_messages : 1);
  for (int i = 0; i < b->got; i++)
    free(b->seg[i]);
  free(b);
  if (rc == 0)
    rc = stor_rx_commit(x);
  if (rc != 0) {
    stor_rx_rollback(x);
    out->messages = out->rows = 0;
    out->finished = false;
  }
  return rc;
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
