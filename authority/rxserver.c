/* sitegate-rx's server: gateways over mutual TLS on one libuv loop.
 *
 * Each connection is a uv_tcp_t and an rx_tls_t; bytes read are fed to TLS,
 * the handshake advances with every read, and decrypted bytes are cut into
 * lines, one HJ 212 frame each. A frame is decoded, must carry the MN of the
 * connection's certificate and a QN; the packets of a split message are
 * collected by QN; signed records are checked (Hash, then Sig with the
 * certificate's key) before the message goes to the writer thread. The
 * writer's decision comes back through rx_done() and only then is 9014 sent.
 *
 * Refused frames get no answer (UPLINK.md): they are logged, counted and
 * recorded with their reason. Nothing here blocks: the database is the
 * writer's, and a connection stops being read while the writer is far
 * behind. A connection struct is freed when its handle is closed and the
 * writer holds no message of it (a reference count, loop thread only).
 *
 * Connections that have not shaken hands are strangers, and the port faces
 * the internet (issue 13): a stranger gets its TLS state only with its first
 * bytes (an mbedTLS session holds 33 KB of buffers), must say something
 * within PREAUTH_SILENT_MS and finish within --handshake, may be one of at
 * most PREAUTH_PER_ADDR from its address, and when strangers fill their
 * share (or --max-conn) the oldest stranger makes room for the newest (the
 * oldest we have not answered yet, while there is one), so idle sockets
 * cannot keep a real gateway out. Gateways that have shaken
 * hands are never evicted. What strangers cost is summed up in one log
 * line at most every PREAUTH_LOG_EVERY_MS, and freed memory is handed back
 * to the system (malloc_trim) once they are gone. A failed handshake is
 * logged and stored as a refusal, but only the first TLSFAIL_BURST in each
 * PREAUTH_LOG_EVERY_MS: the rest are counted (in /metrics) and summed up
 * in one line and one row, so garbage handshakes from the internet cannot
 * fill the log or the database. */
#define LOG_MODULE "rx"
#include "authority/rx.h"
#include "common/common.h"

#include <errno.h>
#include <malloc.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sysexits.h>
#include <unistd.h>
#include <uv.h>

#define LINE_MAX_BYTES (HJ212_FRAME_MAX + 64) /* a longer line is not a frame */
#define PARTIAL_MAX 4                         /* split messages being collected per connection */
#define PNUM_ASSEMBLE_MAX 64                  /* packets in one message we collect (64 KB) */
#define WRITE_QUEUE_MAX (1024 * 1024)         /* bytes queued to a peer that does not read */
#define PAUSE_AT 5000                         /* undecided messages at which reading stops */
#define RESUME_AT 1000
#define PREAUTH_PER_ADDR 8         /* strangers (no handshake yet) from one address */
#define PREAUTH_SHARE 4            /* strangers may hold 1/PREAUTH_SHARE of --max-conn */
#define PREAUTH_MIN 16             /* ... but at least this many */
#define PREAUTH_SILENT_MS 5000     /* a stranger that has sent nothing by then goes */
#define PREAUTH_LOG_EVERY_MS 10000 /* the strangers' summary line */
#define TLSFAIL_BURST 10           /* failed handshakes stored one by one per summary period */
#define TRIM_AFTER_FREED 64        /* connections freed before memory is handed back */
#define STRANGER_BUCKETS 4096      /* the strangers' address hash */
#define ACCEPT_BURST 64            /* connections accepted per turn of the loop */

typedef struct partial {
  char qn[HJ212_QN_MAX + 1];
  int pnum, got;
  char *seg[PNUM_ASSEMBLE_MAX]; /* data segment of each PNO */
  char *cp[PNUM_ASSEMBLE_MAX];
} partial_t;

typedef struct server server_t;

typedef struct conn {
  uv_tcp_t tcp;
  uv_shutdown_t shutdown;
  server_t *srv;
  rx_tls_t *tls;
  char peer[64];
  char ip[48]; /* the peer's address alone, for the per-address limit */
  char mn[HJ212_MN_MAX + 1];
  char pw[HJ212_PW_MAX + 1];
  bool handshaken, closing, handle_closed, paused;
  bool stranger; /* counted in srv->n_strangers: open, no handshake yet */
  /* while a stranger: on srv's queue of strangers (oldest first) and in its
   * address's bucket */
  struct conn *sprev, *snext, *bprev, *bnext;
  unsigned bucket;
  int queue;    /* 0 not answered yet, 1 answered */
  bool evicted; /* no longer counted in srv->n_conns, its handle closing */
  int refs;
  uint64_t start_ms, last_ms, closing_ms;
  char line[LINE_MAX_BYTES];
  size_t line_len;
  bool skipping; /* inside an over-long line */
  partial_t partial[PARTIAL_MAX];
  unsigned stored, refused;
  struct conn *prev, *next;
} conn_t;

struct server {
  const rx_options_t *opt;
  uv_loop_t *loop;
  uv_tcp_t listener;
  uv_timer_t sweep;
  uv_check_t turn; /* after each poll: the accept budget is renewed */
  int burst;       /* accepted in this turn */
  bool held;       /* a connection waits in the kernel for the next turn */
  uv_signal_t sig_term, sig_int;
  rx_tls_server_t *tls;
  rx_store_t *store;
  conn_t *conns;
  int n_conns, n_paused;
  int64_t last_qn_ms;
  bool stopping;
  uint64_t accepted, handshakes, frames, refused, acks;
  uint64_t refused_by[RX_REFUSAL_N];
  uint64_t outcomes[4]; /* messages decided, by stor_rx_outcome_t */
  /* strangers: open now; and, since the last summary line, refused (too
   * many from one address), evicted (the oldest, to make room), silent
   * (nothing said in time) and slow (no handshake in time) */
  int n_strangers;
  /* the strangers, oldest first: [0] those we have not answered yet (no
   * ClientHello), [1] those whose handshake we have answered */
  conn_t *st_head[2], *st_tail[2];
  conn_t *st_bucket[STRANGER_BUCKETS]; /* the strangers, by address */
  uint64_t st_refused, st_evicted, st_silent, st_slow, st_logged_ms;
  uint64_t stranger_drops; /* all of those, since start */
  /* failed handshakes in this summary period: stored one by one, and
   * only counted (past TLSFAIL_BURST), with the last such peer */
  uint64_t tf_stored, tf_counted, tf_since_ms;
  char tf_peer[64];
  unsigned freed_since_trim;
  rx_metrics_t *metrics;
  rx_console_t *console;
};

static hj212_frame_t frame; /* loop thread only */

static void conn_close(conn_t *c, const char *why);

/* ---- connection lifetime */

static void conn_unref(conn_t *c) {
  if (--c->refs > 0)
    return;
  for (int i = 0; i < PARTIAL_MAX; i++)
    for (int k = 0; k < PNUM_ASSEMBLE_MAX; k++) {
      free(c->partial[i].seg[k]);
      free(c->partial[i].cp[k]);
    }
  c->srv->freed_since_trim++;
  free(c);
}

static void conn_on_closed(uv_handle_t *h) {
  conn_t *c = h->data;
  server_t *s = c->srv;
  if (c->prev)
    c->prev->next = c->next;
  else
    s->conns = c->next;
  if (c->next)
    c->next->prev = c->prev;
  if (!c->evicted)
    s->n_conns--;
  if (c->paused)
    s->n_paused--;
  rx_tls_free(c->tls);
  c->tls = NULL;
  conn_unref(c);
}

/* FNV-1a of the peer's address: its bucket among the strangers. */
static unsigned addr_bucket(const char *ip) {
  uint32_t h = 2166136261u;
  for (; *ip; ip++)
    h = (h ^ (uint8_t)*ip) * 16777619u;
  return h % STRANGER_BUCKETS;
}

/* How many strangers there are from c's address (c not among them). */
static int strangers_from(const server_t *s, const conn_t *c) {
  int n = 0;
  for (const conn_t *p = s->st_bucket[addr_bucket(c->ip)]; p; p = p->bnext)
    n += !strcmp(p->ip, c->ip);
  return n;
}

static void queue_in(server_t *s, conn_t *c, int q) {
  c->queue = q;
  c->sprev = s->st_tail[q];
  c->snext = NULL;
  if (s->st_tail[q])
    s->st_tail[q]->snext = c;
  else
    s->st_head[q] = c;
  s->st_tail[q] = c;
}

static void queue_out(server_t *s, conn_t *c) {
  int q = c->queue;
  if (c->sprev)
    c->sprev->snext = c->snext;
  else
    s->st_head[q] = c->snext;
  if (c->snext)
    c->snext->sprev = c->sprev;
  else
    s->st_tail[q] = c->sprev;
}

static void stranger_add(server_t *s, conn_t *c) {
  c->stranger = true;
  s->n_strangers++;
  queue_in(s, c, 0);
  c->bucket = addr_bucket(c->ip);
  c->bprev = NULL;
  c->bnext = s->st_bucket[c->bucket];
  if (c->bnext)
    c->bnext->bprev = c;
  s->st_bucket[c->bucket] = c;
}

/* A stranger we answer (a ClientHello that made us speak) is evicted only
 * when no silent one is left: a real gateway mid-handshake outlives the
 * crowd's idle sockets however fast they come. */
static void stranger_answered(conn_t *c) {
  if (c->stranger && c->queue == 0) {
    queue_out(c->srv, c);
    queue_in(c->srv, c, 1);
  }
}

static void stranger_gone(conn_t *c) {
  if (!c->stranger)
    return;
  server_t *s = c->srv;
  c->stranger = false;
  s->n_strangers--;
  queue_out(s, c);
  if (c->bprev)
    c->bprev->bnext = c->bnext;
  else
    s->st_bucket[c->bucket] = c->bnext;
  if (c->bnext)
    c->bnext->bprev = c->bprev;
}

static void conn_close_handle(conn_t *c) {
  if (c->handle_closed)
    return;
  stranger_gone(c);
  c->closing = true;
  c->handle_closed = true;
  uv_close((uv_handle_t *)&c->tcp, conn_on_closed);
}

static void conn_on_shutdown(uv_shutdown_t *req, int status) {
  (void)status;
  conn_close_handle(req->data);
}

/* Stops reading, says close_notify when the session is up, lets queued
 * bytes go out, then closes. */
static void conn_close(conn_t *c, const char *why) {
  if (c->closing)
    return;
  if (c->handshaken)
    log_info("%s (%s) disconnected: %s; %u stored, %u refused", c->mn, c->peer, why, c->stored,
             c->refused);
  else if (why)
    log_info("%s disconnected before a handshake: %s", c->peer, why);
  stranger_gone(c);
  if (c->handshaken && c->tls)
    rx_tls_close_notify(c->tls);
  c->closing = true;
  c->closing_ms = sg_mono_ms();
  uv_read_stop((uv_stream_t *)&c->tcp);
  c->shutdown.data = c;
  if (uv_shutdown(&c->shutdown, (uv_stream_t *)&c->tcp, conn_on_shutdown) != 0)
    conn_close_handle(c);
}

/* ---- writing */

typedef struct wreq {
  uv_write_t req;
  conn_t *c;
  char data[];
} wreq_t;

static void conn_on_written(uv_write_t *req, int status) {
  wreq_t *w = (wreq_t *)req;
  conn_t *c = w->c;
  if (status < 0 && !c->closing)
    conn_close(c, uv_strerror(status));
  conn_unref(c);
  free(w);
}

/* rx_tls's send callback: queues ciphertext on the socket. */
static int conn_send(void *arg, const uint8_t *buf, size_t len) {
  conn_t *c = arg;
  if (c->handle_closed)
    return -EPIPE;
  if (uv_stream_get_write_queue_size((uv_stream_t *)&c->tcp) > WRITE_QUEUE_MAX)
    return -ENOBUFS;
  wreq_t *w = malloc(sizeof(*w) + len);
  if (!w)
    return -ENOMEM;
  memcpy(w->data, buf, len);
  w->c = c;
  uv_buf_t b = uv_buf_init(w->data, (unsigned)len);
  int rc = uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1, conn_on_written);
  if (rc != 0) {
    free(w);
    return rc;
  }
  c->refs++;
  stranger_answered(c);
  return 0;
}

/* A fresh QN for a message of ours: Beijing time, never the same twice. */
static void next_qn(server_t *s, char qn[HJ212_QN_LEN + 1]) {
  int64_t ms = (int64_t)(sg_now() * 1000.0);
  if (ms <= s->last_qn_ms)
    ms = s->last_qn_ms + 1;
  s->last_qn_ms = ms;
  hj212_qn_format(ms, RX_BEIJING_MIN, qn);
}

/* Sends one message (CP `cp`) to the gateway. */
static void conn_reply(conn_t *c, const char *qn, const char *st, const char *cn, int flag,
                       const char *cp) {
  if (c->closing)
    return;
  hj212_head_t h;
  memset(&h, 0, sizeof(h));
  snprintf(h.qn, sizeof(h.qn), "%s", qn);
  snprintf(h.st, sizeof(h.st), "%s", st);
  snprintf(h.cn, sizeof(h.cn), "%s", cn);
  snprintf(h.pw, sizeof(h.pw), "%s", c->pw[0] ? c->pw : "123456");
  snprintf(h.mn, sizeof(h.mn), "%s", c->mn);
  h.flag = flag;
  char buf[HJ212_FRAME_MAX + 1], err[160];
  size_t n;
  int len = hj212_encode(&h, cp, strlen(cp), buf, sizeof(buf), &n, err, sizeof(err));
  if (len < 0) {
    log_err("%s: cannot encode CN %s: %s", c->mn, cn, err);
    return;
  }
  if (rx_tls_write(c->tls, (const uint8_t *)buf, (size_t)len) != 0)
    conn_close(c, rx_tls_error(c->tls));
}

static void datatime(int64_t t, char out[15]) {
  char qn[HJ212_QN_LEN + 1];
  hj212_qn_format(t * 1000, RX_BEIJING_MIN, qn);
  memcpy(out, qn, 14);
  out[14] = '\0';
}

/* ---- refusing */

static void refuse(conn_t *c, rx_refusal_t why, const char *line, size_t len, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
static void refuse(conn_t *c, rx_refusal_t why, const char *line, size_t len, const char *fmt,
                   ...) {
  char reason[256];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(reason, sizeof(reason), fmt, ap);
  va_end(ap);
  c->refused++;
  c->srv->refused++;
  c->srv->refused_by[why]++;
  log_warn("%s (%s): refused: %s", c->handshaken ? c->mn : "-", c->peer, reason);
  rx_store_refusal(c->srv->store, c->mn, c->peer, reason, line, len);
}

/* A failed handshake: the first TLSFAIL_BURST of a summary period are
 * logged and stored one by one, the rest only counted (tls_failed_log). */
static void tls_failed(server_t *s, const char *peer, const char *err) {
  s->refused++;
  s->refused_by[RX_REFUSED_TLS]++;
  if (!s->tf_stored && !s->tf_counted)
    s->tf_since_ms = sg_mono_ms();
  if (s->tf_stored < TLSFAIL_BURST) {
    s->tf_stored++;
    log_warn("%s: TLS handshake failed: %s", peer, err);
    rx_store_refusal(s->store, "", peer, err, NULL, 0);
  } else {
    s->tf_counted++;
    snprintf(s->tf_peer, sizeof(s->tf_peer), "%s", peer);
  }
}

/* The period's summary, from the sweep: one line and one refusal row for
 * the failed handshakes not stored one by one. */
static void tls_failed_log(server_t *s, uint64_t now) {
  if ((!s->tf_stored && !s->tf_counted) || now - s->tf_since_ms < PREAUTH_LOG_EVERY_MS)
    return;
  if (s->tf_counted) {
    char reason[256];
    snprintf(reason, sizeof(reason),
             "%llu more TLS handshakes failed in %llu s (the last from %s), counted, not "
             "stored one by one",
             (unsigned long long)s->tf_counted,
             (unsigned long long)(now - s->tf_since_ms + 999) / 1000, s->tf_peer);
    log_warn("%s", reason);
    rx_store_refusal(s->store, "", "-", reason, NULL, 0);
  }
  s->tf_stored = s->tf_counted = 0;
}

/* ---- messages */

static stor_rx_msg_t *msg_new(conn_t *c) {
  stor_rx_msg_t *m = calloc(1, sizeof(*m));
  if (!m)
    return NULL;
  snprintf(m->mn, sizeof(m->mn), "%s", c->mn);
  snprintf(m->qn, sizeof(m->qn), "%s", frame.h.qn);
  snprintf(m->cn, sizeof(m->cn), "%s", frame.h.cn);
  snprintf(m->st, sizeof(m->st), "%s", frame.h.st);
  snprintf(m->pw, sizeof(m->pw), "%s", frame.h.pw);
  snprintf(m->cert_fp, sizeof(m->cert_fp), "%s", rx_tls_peer_fingerprint(c->tls));
  m->flag = frame.h.flag;
  m->rx_ms = (int64_t)(sg_now() * 1000.0);
  m->t = -1;
  m->pull_begin = m->pull_end = -1;
  return m;
}

/* Verifies a signed message, then hands it to the writer. Takes `m`. */
static void msg_submit(conn_t *c, stor_rx_msg_t *m, const char *line, size_t len) {
  if (hj212_cn_is_signed(m->cn)) {
    char err[192];
    if (hj212_signed_parse(m->cp, m->cp_len, &m->sig, err, sizeof(err)) != 0 ||
        rx_signed_verify(rx_tls_peer_key(c->tls), m->cp, m->cp_len, &m->sig, err, sizeof(err)) !=
            0) {
      refuse(c, RX_REFUSED_SIGNATURE, line, len, "QN %s CN %s: %s", m->qn, m->cn, err);
      rx_msg_free(m);
      return;
    }
    m->is_signed = true;
  }
  m->owner = c;
  c->refs++;
  server_t *s = c->srv;
  if (rx_store_submit(s->store, m) >= PAUSE_AT && !c->paused) {
    c->paused = true;
    s->n_paused++;
    uv_read_stop((uv_stream_t *)&c->tcp);
    log_warn("%s: the database is behind, reading paused", c->mn);
  }
}

/* A message in one frame. */
static void single(conn_t *c, const char *line, size_t len) {
  stor_rx_msg_t *m = msg_new(c);
  if (!m)
    return;
  const char *dt = hj212_get(&frame, 0, "DataTime");
  m->t = dt ? hj212_datatime(dt, RX_BEIJING_MIN) : -1;
  m->npackets = 1;
  m->packets = malloc(frame.data_len + 3);
  m->cp = strdup(frame.cp);
  if (!m->packets || !m->cp) {
    rx_msg_free(m);
    return;
  }
  memcpy(m->packets, line + 6, frame.data_len);
  memcpy(m->packets + frame.data_len, "\r\n", 3);
  m->packets_len = frame.data_len + 2;
  m->cp_len = frame.cp_len;
  msg_submit(c, m, line, len);
}

static void partial_clear(partial_t *p) {
  for (int k = 0; k < PNUM_ASSEMBLE_MAX; k++) {
    free(p->seg[k]);
    free(p->cp[k]);
    p->seg[k] = p->cp[k] = NULL;
  }
  p->qn[0] = '\0';
  p->pnum = p->got = 0;
}

/* One packet of a split message; when it is the last one missing, the
 * message is assembled and submitted. */
static void packet(conn_t *c, const char *line, size_t len) {
  int pnum = frame.h.pnum, pno = frame.h.pno;
  if (pnum > PNUM_ASSEMBLE_MAX) {
    refuse(c, RX_REFUSED_SPLIT, line, len, "QN %s has %d packets, more than the %d we collect",
           frame.h.qn, pnum, PNUM_ASSEMBLE_MAX);
    return;
  }
  partial_t *p = NULL, *free_slot = NULL;
  for (int i = 0; i < PARTIAL_MAX; i++) {
    if (!strcmp(c->partial[i].qn, frame.h.qn))
      p = &c->partial[i];
    else if (!c->partial[i].qn[0] && !free_slot)
      free_slot = &c->partial[i];
  }
  if (!p) {
    if (!free_slot) {
      refuse(c, RX_REFUSED_SPLIT, line, len, "QN %s: already collecting %d split messages",
             frame.h.qn, PARTIAL_MAX);
      return;
    }
    p = free_slot;
    snprintf(p->qn, sizeof(p->qn), "%s", frame.h.qn);
    p->pnum = pnum;
  }
  if (p->pnum != pnum) {
    refuse(c, RX_REFUSED_SPLIT, line, len, "QN %s: PNUM %d, earlier packets said %d", frame.h.qn,
           pnum, p->pnum);
    return;
  }
  if (!p->seg[pno - 1]) {
    p->seg[pno - 1] = strndup(line + 6, frame.data_len);
    p->cp[pno - 1] = strdup(frame.cp);
    if (!p->seg[pno - 1] || !p->cp[pno - 1]) {
      partial_clear(p);
      return;
    }
    p->got++;
  }
  if (p->got < p->pnum)
    return;
  /* Complete: the first packet gives the header and DataTime. */
  char first[HJ212_FRAME_MAX + 8], err[160];
  size_t flen = strlen(p->seg[0]);
  int n =
      snprintf(first, sizeof(first), "##%04zu%s%04X", flen, p->seg[0], hj212_crc(p->seg[0], flen));
  if (hj212_decode(first, (size_t)n, &frame, err, sizeof(err)) != 0) {
    partial_clear(p); /* cannot happen: it was decoded when it came */
    return;
  }
  stor_rx_msg_t *m = msg_new(c);
  size_t plen = 0, clen = 0;
  for (int k = 0; k < p->pnum; k++) {
    plen += strlen(p->seg[k]) + 2;
    clen += strlen(p->cp[k]) + 1;
  }
  if (m) {
    m->packets = malloc(plen + 1);
    m->cp = malloc(clen + 1);
  }
  if (!m || !m->packets || !m->cp) {
    rx_msg_free(m);
    partial_clear(p);
    return;
  }
  const char *dt = hj212_get(&frame, 0, "DataTime");
  m->t = dt ? hj212_datatime(dt, RX_BEIJING_MIN) : -1;
  m->npackets = p->pnum;
  for (int k = 0; k < p->pnum; k++) {
    size_t sl = strlen(p->seg[k]), cl = strlen(p->cp[k]);
    memcpy(m->packets + m->packets_len, p->seg[k], sl);
    memcpy(m->packets + m->packets_len + sl, "\r\n", 2);
    m->packets_len += sl + 2;
    if (k > 0)
      m->cp[m->cp_len++] = ';';
    memcpy(m->cp + m->cp_len, p->cp[k], cl);
    m->cp_len += cl;
  }
  m->packets[m->packets_len] = '\0';
  m->cp[m->cp_len] = '\0';
  partial_clear(p);
  msg_submit(c, m, line, len);
}

/* One line from the gateway. */
static void conn_line(conn_t *c, const char *line, size_t len) {
  if (len > 0 && line[len - 1] == '\r')
    len--;
  if (len == 0)
    return;
  c->srv->frames++;
  char err[192];
  if (hj212_decode(line, len, &frame, err, sizeof(err)) != 0) {
    refuse(c, RX_REFUSED_FRAME, line, len, "%s", err);
    return;
  }
  if (strcmp(frame.h.mn, c->mn) != 0) {
    refuse(c, RX_REFUSED_MN, line, len, "frame for MN %s on the connection of MN %s", frame.h.mn,
           c->mn);
    return;
  }
  if (frame.h.qn[0] == '\0') {
    refuse(c, RX_REFUSED_NO_QN, line, len,
           "no QN: the frame can be neither acknowledged nor de-duplicated");
    return;
  }
  if (frame.h.pw[0])
    snprintf(c->pw, sizeof(c->pw), "%s", frame.h.pw);
  const char *cn = frame.h.cn;
  if (!strcmp(cn, "9011") || !strcmp(cn, "9012") || !strcmp(cn, "9014")) {
    const char *v = hj212_get(&frame, -1, !strcmp(cn, "9011") ? "QnRtn" : "ExeRtn");
    log_info("%s: %s for our QN %s%s%s", c->mn, cn, frame.h.qn, v ? ", result " : "", v ? v : "");
    return;
  }
  if (!strcmp(cn, "1013")) { /* the gateway asks for the time */
    char qn[HJ212_QN_LEN + 1], cp[64], now[15];
    next_qn(c->srv, qn);
    datatime((int64_t)sg_now(), now);
    snprintf(cp, sizeof(cp), "SystemTime=%s", now);
    conn_reply(c, qn, "39", "1012", HJ212_FLAG_V2017 | HJ212_FLAG_ACK, cp);
    return;
  }
  if (frame.h.pnum > 0)
    packet(c, line, len);
  else
    single(c, line, len);
}

/* Decrypted bytes: cut into lines. */
static void conn_bytes(conn_t *c, const uint8_t *buf, size_t n) {
  for (size_t i = 0; i < n && !c->closing; i++) {
    char ch = (char)buf[i];
    if (ch == '\n') {
      if (c->skipping)
        c->skipping = false;
      else
        conn_line(c, c->line, c->line_len);
      c->line_len = 0;
      continue;
    }
    if (c->skipping)
      continue;
    if (c->line_len == sizeof(c->line)) {
      refuse(c, RX_REFUSED_LINE, c->line, c->line_len, "line over %d bytes is not a frame",
             LINE_MAX_BYTES);
      c->skipping = true;
      c->line_len = 0;
      continue;
    }
    c->line[c->line_len++] = ch;
  }
}

/* ---- reading */

static void conn_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  (void)h;
  (void)suggested;
  static char space[64 * 1024]; /* consumed before the next read: one loop */
  *buf = uv_buf_init(space, sizeof(space));
}

static void conn_handshaken(conn_t *c) {
  server_t *s = c->srv;
  c->handshaken = true;
  stranger_gone(c);
  s->handshakes++;
  snprintf(c->mn, sizeof(c->mn), "%s", rx_tls_peer_cn(c->tls));
  log_info("%s connected from %s (%s)", c->mn, c->peer, rx_tls_peer_subject(c->tls));
  rx_store_seen(s->store, c->mn, rx_tls_peer_subject(c->tls));
}

static void conn_on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf) {
  conn_t *c = stream->data;
  if (nread == 0)
    return;
  if (nread < 0) {
    conn_close(c, nread == UV_EOF ? "the gateway closed the connection" : uv_strerror((int)nread));
    return;
  }
  c->last_ms = sg_mono_ms();
  if (!c->tls && !(c->tls = rx_tls_new(c->srv->tls, conn_send, c))) {
    conn_close(c, "out of memory for its TLS session");
    return;
  }
  if (rx_tls_feed(c->tls, (const uint8_t *)buf->base, (size_t)nread) != 0) {
    conn_close(c, "too much unprocessed TLS input");
    return;
  }
  if (!c->handshaken) {
    int rc = rx_tls_handshake(c->tls);
    if (rc == -EAGAIN)
      return;
    if (rc != 0) {
      tls_failed(c->srv, c->peer, rx_tls_error(c->tls));
      conn_close(c, "handshake failed");
      return;
    }
    conn_handshaken(c);
  }
  static uint8_t plain[16 * 1024];
  while (!c->closing) {
    int n = rx_tls_read(c->tls, plain, sizeof(plain));
    if (n == 0)
      break;
    if (n < 0) {
      conn_close(c, n == -ECONNRESET ? "close_notify" : rx_tls_error(c->tls));
      break;
    }
    conn_bytes(c, plain, (size_t)n);
  }
}

/* Whether new connection `c` may stay (see the file's head): not when its
 * address already has PREAUTH_PER_ADDR strangers; when strangers hold their
 * share, or all of --max-conn, the oldest stranger goes to make room; with
 * no stranger to evict at --max-conn, `c` goes. Closes `c` when not. */
static bool admit(server_t *s, conn_t *c) {
  int share = s->opt->max_conn / PREAUTH_SHARE;
  if (share < PREAUTH_MIN)
    share = PREAUTH_MIN;
  conn_t *oldest = s->st_head[0] ? s->st_head[0] : s->st_head[1];
  if (strangers_from(s, c) >= PREAUTH_PER_ADDR) {
    s->st_refused++;
    s->stranger_drops++;
    conn_close_handle(c);
    return false;
  }
  bool full = s->n_conns - 1 >= s->opt->max_conn; /* c is counted already */
  if (oldest && (full || s->n_strangers >= share)) {
    s->st_evicted++;
    s->stranger_drops++;
    conn_close_handle(oldest); /* its count is freed now, its handle on the next turn */
    s->n_conns--;
    oldest->evicted = true;
    return true;
  }
  if (full) {
    log_warn("%s refused: already %d connections, all with gateways (--max-conn)", c->peer,
             s->n_conns - 1);
    conn_close_handle(c);
    return false;
  }
  return true;
}

static void on_connection(uv_stream_t *listener, int status) {
  server_t *s = listener->data;
  if (status < 0) {
    log_warn("accept: %s", uv_strerror(status));
    return;
  }
  /* libuv accepts for as long as connections wait: a crowd that reconnects
   * at once would keep the loop here, evicting strangers whose first bytes
   * it never got to read, a real gateway's ClientHello among them. Past
   * ACCEPT_BURST in one turn, the connection is left to the kernel (libuv
   * stops watching the listener until it is accepted) and taken at the
   * turn's end, after the reads. */
  if (s->burst >= ACCEPT_BURST) {
    s->held = true;
    return;
  }
  s->burst++;
  conn_t *c = calloc(1, sizeof(*c));
  if (!c)
    return;
  c->srv = s;
  c->refs = 1; /* the handle */
  uv_tcp_init(s->loop, &c->tcp);
  c->tcp.data = c;
  c->next = s->conns;
  if (s->conns)
    s->conns->prev = c;
  s->conns = c;
  s->n_conns++;
  if (uv_accept(listener, (uv_stream_t *)&c->tcp) != 0) {
    conn_close_handle(c);
    return;
  }
  s->accepted++;
  struct sockaddr_storage sa;
  int salen = sizeof(sa);
  snprintf(c->peer, sizeof(c->peer), "?");
  if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&sa, &salen) == 0) {
    char ip[48];
    if (sa.ss_family == AF_INET6) {
      uv_ip6_name((struct sockaddr_in6 *)&sa, ip, sizeof(ip));
      snprintf(c->peer, sizeof(c->peer), "[%s]:%d", ip,
               ntohs(((struct sockaddr_in6 *)&sa)->sin6_port));
    } else {
      uv_ip4_name((struct sockaddr_in *)&sa, ip, sizeof(ip));
      snprintf(c->peer, sizeof(c->peer), "%s:%d", ip, ntohs(((struct sockaddr_in *)&sa)->sin_port));
    }
    snprintf(c->ip, sizeof(c->ip), "%s", ip);
  }
  if (!admit(s, c))
    return;
  uv_tcp_nodelay(&c->tcp, 1);
  c->start_ms = c->last_ms = sg_mono_ms();
  stranger_add(s, c);
  uv_read_start((uv_stream_t *)&c->tcp, conn_alloc, conn_on_read);
}

static void on_turn(uv_check_t *h) {
  server_t *s = h->data;
  s->burst = 0;
  if (s->held && !s->stopping) {
    s->held = false;
    on_connection((uv_stream_t *)&s->listener, 0);
  }
}

/* ---- the writer's decisions */

static void rx_done(void *arg, stor_rx_msg_t *m) {
  server_t *s = arg;
  conn_t *c = m->owner;
  if ((unsigned)m->outcome < 4)
    s->outcomes[m->outcome]++;
  if (!c->closing) {
    switch (m->outcome) {
    case STOR_RX_STORED:
    case STOR_RX_DUPLICATE:
      if (m->outcome == STOR_RX_STORED)
        c->stored++;
      else
        log_info("%s: QN %s is a duplicate: acknowledged again, stored once", c->mn, m->qn);
      if (m->flag >= 0 && (m->flag & HJ212_FLAG_ACK)) {
        conn_reply(c, m->qn, "91", "9014", HJ212_FLAG_V2017, "");
        s->acks++;
      }
      break;
    case STOR_RX_REFUSED:
      refuse(c, m->refusal && !strcmp(m->refusal, "seal") ? RX_REFUSED_SEAL : RX_REFUSED_CHAIN,
             m->packets, m->packets_len, "QN %s CN %s: %s", m->qn, m->cn, m->reason);
      break;
    case STOR_RX_FAILED:
      log_warn("%s: QN %s not stored (%s): no acknowledgement", c->mn, m->qn, m->reason);
      break;
    }
    if (m->gap_begin) {
      char qn[HJ212_QN_LEN + 1], cp[96];
      next_qn(s, qn);
      snprintf(cp, sizeof(cp), "BeginSeq=%llu,EndSeq=%llu", (unsigned long long)m->gap_begin,
               (unsigned long long)m->gap_end);
      log_warn("%s: ledger gap, pulling Seq %llu-%llu", c->mn, (unsigned long long)m->gap_begin,
               (unsigned long long)m->gap_end);
      conn_reply(c, qn, "39", "6081", HJ212_FLAG_V2017 | HJ212_FLAG_ACK, cp);
    }
    if (m->pull_cns[0]) {
      char b[15], e[15];
      datatime(m->pull_begin, b);
      datatime(m->pull_end, e);
      char cns[sizeof(m->pull_cns)];
      snprintf(cns, sizeof(cns), "%s", m->pull_cns);
      for (char *save = NULL, *cn = strtok_r(cns, ",", &save); cn;
           cn = strtok_r(NULL, ",", &save)) {
        char qn[HJ212_QN_LEN + 1], cp[96];
        next_qn(s, qn);
        snprintf(cp, sizeof(cp), "BeginTime=%s,EndTime=%s", b, e);
        log_info("%s: pulling CN %s %s-%s", c->mn, cn, b, e);
        conn_reply(c, qn, "39", cn, HJ212_FLAG_V2017 | HJ212_FLAG_ACK, cp);
      }
    }
  }
  if (s->n_paused > 0 && rx_store_waiting(s->store) <= RESUME_AT) {
    for (conn_t *p = s->conns; p; p = p->next)
      if (p->paused && !p->closing) {
        p->paused = false;
        s->n_paused--;
        uv_read_start((uv_stream_t *)&p->tcp, conn_alloc, conn_on_read);
      }
  }
  m->owner = NULL;
  rx_msg_free(m);
  conn_unref(c);
}

/* ---- timers, signals, start and stop */

/* The strangers' summary: at most one line every PREAUTH_LOG_EVERY_MS, and
 * only when some were turned away since the last. */
static void strangers_log(server_t *s, uint64_t now) {
  uint64_t n = s->st_refused + s->st_evicted + s->st_silent + s->st_slow;
  if (!n || (s->st_logged_ms && now - s->st_logged_ms < PREAUTH_LOG_EVERY_MS))
    return;
  log_warn("connections without a TLS handshake closed since the last line: %llu refused (over "
           "%d from one address), %llu evicted (the oldest, for a newer one), %llu silent for %d "
           "s, %llu not done in %d s; %d such open now",
           (unsigned long long)s->st_refused, PREAUTH_PER_ADDR, (unsigned long long)s->st_evicted,
           (unsigned long long)s->st_silent, PREAUTH_SILENT_MS / 1000,
           (unsigned long long)s->st_slow, s->opt->handshake_s, s->n_strangers);
  s->st_refused = s->st_evicted = s->st_silent = s->st_slow = 0;
  s->st_logged_ms = now;
}

static void on_sweep(uv_timer_t *t) {
  server_t *s = t->data;
  uint64_t now = sg_mono_ms();
  for (conn_t *c = s->conns, *next; c; c = next) {
    next = c->next;
    if (c->closing) {
      if (now - c->closing_ms > 5000)
        conn_close_handle(c); /* the peer does not take our last bytes */
    } else if (!c->handshaken && !c->tls && now - c->start_ms > PREAUTH_SILENT_MS) {
      s->st_silent++;
      s->stranger_drops++;
      conn_close(c, NULL);
    } else if (!c->handshaken && now - c->start_ms > (uint64_t)s->opt->handshake_s * 1000) {
      s->st_slow++;
      s->stranger_drops++;
      conn_close(c, NULL);
    } else if (now - c->last_ms > (uint64_t)s->opt->idle_s * 1000) {
      conn_close(c, "idle");
    }
  }
  strangers_log(s, now);
  tls_failed_log(s, now);
  /* glibc keeps freed memory for the next malloc; after a crowd has gone
   * it would stay with the process (185 MB after 4,200 idle sockets). */
  if (s->freed_since_trim >= TRIM_AFTER_FREED) {
    s->freed_since_trim = 0;
    malloc_trim(0);
  }
}

static void on_signal(uv_signal_t *sig, int signum) {
  server_t *s = sig->data;
  if (s->stopping)
    return;
  s->stopping = true;
  rx_notify_stopping();
  log_info("signal %d: stopping; %llu connections, %llu frames, %llu acknowledged, %llu refused",
           signum, (unsigned long long)s->accepted, (unsigned long long)s->frames,
           (unsigned long long)s->acks, (unsigned long long)s->refused);
  uv_close((uv_handle_t *)&s->listener, NULL);
  rx_metrics_stop(s->metrics);
  s->metrics = NULL;
  uv_close((uv_handle_t *)&s->sweep, NULL);
  uv_close((uv_handle_t *)&s->turn, NULL);
  uv_close((uv_handle_t *)&s->sig_term, NULL);
  uv_close((uv_handle_t *)&s->sig_int, NULL);
  for (conn_t *c = s->conns; c; c = c->next)
    conn_close(c, "the receiver is stopping");
  for (conn_t *c = s->conns; c; c = c->next)
    conn_close_handle(c);
}

/* Binds with SO_REUSEPORT, so that several receivers on this machine
 * listen on one address and the kernel spreads the connections among
 * them (libuv 1.44 cannot set it on Linux). Returns 0 or a libuv error. */
static int bind_reuseport(uv_tcp_t *tcp, const struct sockaddr_storage *sa) {
  int fd = socket(sa->ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1, rc = 0;
  if (fd < 0)
    return uv_translate_sys_error(errno);
  socklen_t len =
      sa->ss_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
  if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
      setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0 ||
      bind(fd, (const struct sockaddr *)sa, len) != 0)
    rc = uv_translate_sys_error(errno);
  if (rc == 0 && (rc = uv_tcp_open(tcp, fd)) == 0)
    return 0;
  close(fd);
  return rc;
}

/* HOST:PORT (an IPv4 address, or [IPv6]) into `sa`: 0 or -EINVAL, logged
 * with `what` (the option). */
static int parse_addr(const char *what, const char *listen, struct sockaddr_storage *sa) {
  char host[64];
  const char *colon = strrchr(listen, ':');
  if (!colon || colon == listen || (size_t)(colon - listen) >= sizeof(host)) {
    log_err("%s %s: want HOST:PORT", what, listen);
    return -EINVAL;
  }
  memcpy(host, listen, (size_t)(colon - listen));
  host[colon - listen] = '\0';
  char *end;
  long port = strtol(colon + 1, &end, 10);
  if (*end || port < 1 || port > 65535) {
    log_err("%s %s: bad port", what, listen);
    return -EINVAL;
  }
  int rc;
  if (host[0] == '[' && host[strlen(host) - 1] == ']') {
    host[strlen(host) - 1] = '\0';
    rc = uv_ip6_addr(host + 1, (int)port, (struct sockaddr_in6 *)sa);
  } else {
    rc = uv_ip4_addr(host, (int)port, (struct sockaddr_in *)sa);
  }
  if (rc != 0) {
    log_err("%s %s: not an IP address", what, listen);
    return -EINVAL;
  }
  return 0;
}

static void fill_counters(void *arg, rx_counters_t *k) {
  server_t *s = arg;
  k->accepted = s->accepted;
  k->open = (uint64_t)s->n_conns;
  k->handshakes = s->handshakes;
  k->frames = s->frames;
  k->refused = s->refused;
  memcpy(k->refused_by, s->refused_by, sizeof(k->refused_by));
  k->acks = s->acks;
  k->strangers = (uint64_t)s->n_strangers;
  k->stranger_drops = s->stranger_drops;
  memcpy(k->messages, s->outcomes, sizeof(k->messages));
  k->waiting = rx_store_waiting(s->store);
  rx_store_stats(s->store, &k->w);
  k->console = s->console != NULL;
  if (s->console)
    rx_console_stats(s->console, k->signins);
}

static int start_metrics(server_t *s, const char *listen) {
  struct sockaddr_storage sa;
  if (parse_addr("--metrics", listen, &sa) != 0)
    return -EINVAL;
  int rc = rx_metrics_start(s->loop, (struct sockaddr *)&sa, fill_counters, s, &s->metrics);
  if (rc != 0)
    log_err("cannot serve /metrics on %s: %s", listen, uv_strerror(rc));
  else
    log_info("metrics on http://%s/metrics", listen);
  return rc;
}

static int start_console(server_t *s, const rx_options_t *o) {
  struct sockaddr_storage sa;
  if (parse_addr("--http", o->http, &sa) != 0)
    return -EINVAL;
  int rc = rx_console_start((struct sockaddr *)&sa, o->db, o->users, o->web, &s->console);
  if (rc == 0)
    log_info("supervision console on http://%s/%s", o->http,
             o->users ? " (staff sign in)" : " (loopback, no sign-in)");
  return rc;
}

static int bind_listener(server_t *s, const char *listen) {
  struct sockaddr_storage sa;
  int rc;
  if (parse_addr("--listen", listen, &sa) != 0)
    return -EINVAL;
  uv_tcp_init(s->loop, &s->listener);
  s->listener.data = s;
  if (s->opt->reuseport)
    rc = bind_reuseport(&s->listener, &sa);
  else
    rc = uv_tcp_bind(&s->listener, (struct sockaddr *)&sa, 0);
  if (rc != 0 || (rc = uv_listen((uv_stream_t *)&s->listener, 511, on_connection)) != 0) {
    log_err("cannot listen on %s: %s", listen, uv_strerror(rc));
    uv_close((uv_handle_t *)&s->listener, NULL);
    return rc;
  }
  return 0;
}

int rx_serve(const rx_options_t *o) {
  signal(SIGPIPE, SIG_IGN);
  server_t s;
  memset(&s, 0, sizeof(s));
  s.opt = o;
  char err[512];
  if (rx_tls_server_new(o->ca, o->cert, o->key, &s.tls, err, sizeof(err)) != 0) {
    /* a missing or unreadable CA, certificate or key: restarting cannot
     * fix it (the unit's RestartPreventExitStatus) */
    log_err("cannot start: %s", err);
    return EX_CONFIG;
  }
  uv_loop_t loop;
  int rc = uv_loop_init(&loop);
  if (rc != 0) {
    log_err("cannot start the event loop: %s", uv_strerror(rc));
    rx_tls_server_free(s.tls);
    return 1;
  }
  s.loop = &loop;
  int status = 1;
  if (rx_store_open(o->db, &loop, rx_done, &s, &s.store) != 0) {
    char db[256];
    stor_rx_redact(o->db, db, sizeof(db));
    log_err("cannot start: database %s", db);
    goto out;
  }
  if (bind_listener(&s, o->listen) != 0) {
    rx_store_close(s.store);
    goto out;
  }
  if (o->metrics && start_metrics(&s, o->metrics) != 0) {
    uv_close((uv_handle_t *)&s.listener, NULL);
    rx_store_close(s.store);
    goto out;
  }
  if (o->http && start_console(&s, o) != 0) {
    if (s.metrics)
      rx_metrics_stop(s.metrics);
    uv_close((uv_handle_t *)&s.listener, NULL);
    rx_store_close(s.store);
    goto out;
  }
  uv_timer_init(&loop, &s.sweep);
  s.sweep.data = &s;
  uv_timer_start(&s.sweep, on_sweep, 1000, 1000);
  uv_check_init(&loop, &s.turn);
  s.turn.data = &s;
  uv_check_start(&s.turn, on_turn);
  uv_signal_init(&loop, &s.sig_term);
  uv_signal_init(&loop, &s.sig_int);
  s.sig_term.data = s.sig_int.data = &s;
  uv_signal_start(&s.sig_term, on_signal, SIGTERM);
  uv_signal_start(&s.sig_int, on_signal, SIGINT);
  char db[256];
  stor_rx_redact(o->db, db, sizeof(db)); /* a URI's password stays out of the log */
  log_info("listening on %s%s (TLS 1.2, client certificates from %s), database %s (%s)", o->listen,
           o->reuseport ? " with SO_REUSEPORT" : "", o->ca, db, rx_store_backend(s.store));
  char ready[128];
  snprintf(ready, sizeof(ready), "listening on %s, database %s", o->listen,
           rx_store_backend(s.store));
  rx_notify_ready(&loop, ready);
  uv_run(&loop, UV_RUN_DEFAULT);
  rx_console_stop(s.console);
  rx_store_close(s.store); /* decides what is left; no connection is open to answer */
  status = 0;
out:
  uv_run(&loop, UV_RUN_DEFAULT);
  rc = uv_loop_close(&loop);
  if (rc != 0) {
    log_err("event loop closed with open handles: %s", uv_strerror(rc));
    status = 1;
  }
  rx_tls_server_free(s.tls);
  return status;
}
