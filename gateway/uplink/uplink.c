/* The uplink on the loop (uplink_int.h): one TLS connection to the
 * authority's sitegate-rx, fed from the outbox.
 *
 * Connecting is libuv all the way (uv_getaddrinfo, uv_tcp_connect, reads
 * and writes), with the TLS session in tls.c fed from read events, so the
 * loop never blocks. Once the handshake is done the outbox is sent in id
 * order with up to `window` messages awaiting their 9014; an acknowledged
 * message is marked in the database by a worker in batches (a lost mark
 * only means a resend, which the receiver de-duplicates). A message not
 * acknowledged within OverTime is sent again, at most ReCount times; then
 * the connection is dropped and made again after a jittered, doubling
 * back-off. Reconnecting starts again from the oldest pending message, so
 * what the receiver stores first is always in outbox order.
 *
 * Workers (libuv's pool) do every database access: the builder
 * (uplink_build.c) once a second, fetching the next pending rows, marking
 * acknowledgements and reading the frames a pull asks for; each has its own
 * read-only connection and at most one job in flight. Their results come
 * back on the loop, where a result for an older connection is dropped. */
#define LOG_MODULE "uplink"
#include "gateway/rules/rules.h"
#include "gateway/uplink/uplink.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define TICK_MS 250
#define BUILD_EVERY_MS 1000
#define FETCH_BATCH 512                       /* pending rows read at a time */
#define WRITE_QUEUE_MAX (1024 * 1024)         /* bytes queued to the socket before we wait */
#define LINE_MAX_BYTES (HJ212_FRAME_MAX + 64) /* a longer line is not a frame */
#define BACKOFF_MIN_MS 1000
#define CONNECT_TIMEOUT_MS 20000 /* TCP connect and TLS handshake together */
#define PULL_MAX_ROWS 20000      /* messages one pull may return */
#define PULLS_QUEUED_MAX 64
#define ALARM_EVERY_MS 10000

typedef struct item {
  int64_t id;
  char qn[24], cn[8];
  int cls;
  char *frames;
  size_t len;
  uint64_t sent_ms;
  int sends;
  bool acked;
} item_t;

typedef struct uplink uplink_t;

typedef struct conn {
  uv_tcp_t tcp;
  uv_connect_t connect;
  uv_shutdown_t shutdown;
  uplink_t *up;
  gtls_t *tls;
  int refs;
  bool handshaken, closing, handle_closed;
  char line[LINE_MAX_BYTES];
  size_t line_len;
  bool skipping;
} conn_t;

typedef struct pull {
  char qn[HJ212_QN_MAX + 1], cn[HJ212_CN_MAX + 1];
  int64_t begin, end; /* DataTime (Unix s) or Seq */
  struct pull *next;
} pull_t;

struct uplink {
  gw_t *gw;
  const sg_config_t *cfg;
  gtls_conf_t *tls;
  uplink_builder_t *builder;
  const char *server_name;
  char mn[HJ212_MN_MAX + 1];
  uv_timer_t tick;
  uv_getaddrinfo_t resolve;
  struct addrinfo *addrs, *next_addr;
  conn_t *conn;
  bool stopping;
  uint64_t gen; /* connection generation: results for an older one are dropped */
  uint64_t state_ms, retry_at_ms, backoff_ms, last_build_ms, last_alarm_ms, down_ms;
  uplink_status_t st;
  /* the send queue: q[head, n) in id order, q[head, next) sent */
  item_t *q;
  size_t head, n, cap, next;
  int64_t fetched_id;
  bool caught_up;
  /* workers */
  uv_work_t build_work;
  bool build_busy;
  uplink_build_result_t build_res;
  uv_work_t fetch_work;
  bool fetch_busy;
  stor_reader_t *fetch_rd;
  uint64_t fetch_gen;
  int64_t fetch_after;
  item_t *fetched;
  size_t n_fetched, cap_fetched;
  int fetch_rc;
  uv_work_t ack_work;
  bool ack_busy;
  int64_t *acks, *ack_job; /* acknowledged, not yet marked; being marked */
  size_t n_acks, cap_acks, n_ack_job, cap_ack_job;
  int ack_rc;
  uv_work_t pull_work;
  bool pull_busy;
  stor_reader_t *pull_rd;
  pull_t *pulls, *cur_pull;
  size_t n_pulls;
  uint64_t pull_gen;
  char *pull_buf;
  size_t pull_len, pull_cap;
  int64_t pull_rows;
  int pull_rc;
};

static hj212_frame_t frame; /* loop thread only */

static void pump(uplink_t *up);
static void conn_close(conn_t *c);

/* ---- status */

static void set_state(uplink_t *up, uplink_state_t s) {
  if (up->st.state == s)
    return;
  up->st.state = s;
  up->st.state_since = sg_now();
  up->state_ms = sg_mono_ms();
}

static void say_error(uplink_t *up, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void say_error(uplink_t *up, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(up->st.last_error, sizeof(up->st.last_error), fmt, ap);
  va_end(ap);
  up->st.last_error_t = sg_now();
  log_warn("%s", up->st.last_error);
}

/* ---- the send queue */

static void item_free(item_t *it) {
  free(it->frames);
  it->frames = NULL;
}

static void queue_clear(uplink_t *up) {
  for (size_t i = up->head; i < up->n; i++)
    item_free(&up->q[i]);
  up->head = up->n = up->next = 0;
  up->st.inflight = 0;
  up->fetched_id = 0;
  up->caught_up = false;
}

/* Drops acknowledged items from the front, and moves the rest down when
 * half the array is behind us. */
static void queue_compact(uplink_t *up) {
  while (up->head < up->next && up->q[up->head].acked)
    item_free(&up->q[up->head++]);
  if (up->head == up->n) {
    up->head = up->n = up->next = 0;
  } else if (up->head > up->cap / 2) {
    memmove(up->q, up->q + up->head, (up->n - up->head) * sizeof(*up->q));
    up->n -= up->head;
    up->next -= up->head;
    up->head = 0;
  }
}

static int queue_push(uplink_t *up, const item_t *it) {
  if (up->n == up->cap) {
    size_t cap = up->cap ? up->cap * 2 : 1024;
    item_t *p = realloc(up->q, cap * sizeof(*p));
    if (!p)
      return -ENOMEM;
    up->q = p;
    up->cap = cap;
  }
  up->q[up->n++] = *it;
  return 0;
}

static bool id_in(const int64_t *ids, size_t n, int64_t id) {
  for (size_t i = 0; i < n; i++)
    if (ids[i] == id)
      return true;
  return false;
}

/* ---- the connection */

typedef struct wreq {
  uv_write_t req;
  conn_t *c;
  char data[];
} wreq_t;

static void conn_unref(conn_t *c) {
  if (--c->refs > 0)
    return;
  gtls_free(c->tls);
  free(c);
}

static void conn_on_closed(uv_handle_t *h) { conn_unref(h->data); }

static void conn_close_handle(conn_t *c) {
  if (c->handle_closed)
    return;
  c->handle_closed = true;
  uv_close((uv_handle_t *)&c->tcp, conn_on_closed);
}

static void conn_on_shutdown(uv_shutdown_t *req, int status) {
  (void)status;
  conn_close_handle(req->data);
}

/* Says close_notify when the session is up, lets queued bytes go, closes.
 * The uplink forgets the connection at once. */
static void conn_close(conn_t *c) {
  if (c->closing)
    return;
  c->closing = true;
  if (c->up->conn == c)
    c->up->conn = NULL;
  if (c->handshaken && c->tls)
    gtls_close_notify(c->tls);
  uv_read_stop((uv_stream_t *)&c->tcp);
  c->shutdown.data = c;
  if (uv_shutdown(&c->shutdown, (uv_stream_t *)&c->tcp, conn_on_shutdown) != 0)
    conn_close_handle(c);
}

static uint64_t jitter(uint64_t ms) {
  return ms / 2 + (uint64_t)((double)(ms / 2) * ((double)rand() / RAND_MAX));
}

/* Gives up on the connection (or the attempt): says why, then waits a
 * jittered back-off before the next attempt. */
static void up_fail(uplink_t *up, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void up_fail(uplink_t *up, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(up->st.last_error, sizeof(up->st.last_error), fmt, ap);
  va_end(ap);
  up->st.last_error_t = sg_now();
  if (up->conn)
    conn_close(up->conn);
  if (up->addrs) {
    uv_freeaddrinfo(up->addrs);
    up->addrs = up->next_addr = NULL;
  }
  if (up->st.state == UPLINK_READY) {
    up->down_ms = sg_mono_ms();
    up->st.down_since = sg_now();
  }
  queue_clear(up);
  up->gen++;
  set_state(up, UPLINK_IDLE);
  uint64_t wait = jitter(up->backoff_ms);
  up->retry_at_ms = sg_mono_ms() + wait;
  log_warn("%s; next attempt in %.1f s", up->st.last_error, (double)wait / 1000.0);
  up->backoff_ms *= 2;
  if (up->backoff_ms > (uint64_t)up->cfg->uplink_backoff_max_s * 1000)
    up->backoff_ms = (uint64_t)up->cfg->uplink_backoff_max_s * 1000;
}

static void conn_on_written(uv_write_t *req, int status) {
  wreq_t *w = (wreq_t *)req;
  conn_t *c = w->c;
  uplink_t *up = c->up;
  bool current = up->conn == c;
  free(w);
  if (status < 0 && current)
    up_fail(up, "writing to %s: %s", up->cfg->uplink_host, uv_strerror(status));
  conn_unref(c);
  if (current && !up->stopping)
    pump(up);
}

/* gtls's send callback: queues ciphertext on the socket. */
static int conn_send(void *arg, const uint8_t *buf, size_t len) {
  conn_t *c = arg;
  if (c->handle_closed || c->closing)
    return -EPIPE;
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
  return 0;
}

static int up_write(uplink_t *up, const char *buf, size_t len) {
  conn_t *c = up->conn;
  if (!c)
    return -ENOTCONN;
  if (gtls_write(c->tls, (const uint8_t *)buf, len) != 0) {
    up_fail(up, "%s", gtls_error(c->tls));
    return -EPROTO;
  }
  return 0;
}

/* A reply of ours (9011, 9012) or a request (1013). */
static void up_send_msg(uplink_t *up, const char *qn, const char *st, const char *cn, int flag,
                        const char *cp) {
  hj212_head_t h;
  memset(&h, 0, sizeof(h));
  snprintf(h.qn, sizeof(h.qn), "%s", qn);
  snprintf(h.st, sizeof(h.st), "%s", st);
  snprintf(h.cn, sizeof(h.cn), "%s", cn);
  snprintf(h.pw, sizeof(h.pw), "%.9s", up->cfg->uplink_pw);
  snprintf(h.mn, sizeof(h.mn), "%s", up->mn);
  h.flag = flag;
  char buf[HJ212_FRAME_MAX + 1], err[160];
  size_t n;
  int len = hj212_encode(&h, cp, strlen(cp), buf, sizeof(buf), &n, err, sizeof(err));
  if (len < 0) {
    log_err("cannot encode CN %s: %s", cn, err);
    return;
  }
  up_write(up, buf, (size_t)len);
}

static void reply(uplink_t *up, const char *qn, const char *cn, const char *cp) {
  up_send_msg(up, qn, "91", cn, HJ212_FLAG_V2017, cp);
}

/* ---- sending the outbox */

static void send_item(uplink_t *up, item_t *it) {
  it->sends++;
  it->sent_ms = sg_mono_ms();
  if (it->sends > 1)
    up->st.resent++;
  else
    up->st.sent++;
  up_write(up, it->frames, it->len);
}

static void fetch_start(uplink_t *up);

static void pump(uplink_t *up) {
  if (up->st.state != UPLINK_READY || !up->conn)
    return;
  size_t window = (size_t)up->cfg->uplink_window;
  while (up->st.inflight < window && up->next < up->n && up->conn &&
         uv_stream_get_write_queue_size((uv_stream_t *)&up->conn->tcp) < WRITE_QUEUE_MAX) {
    item_t *it = &up->q[up->next++];
    up->st.inflight++;
    send_item(up, it);
  }
  if (up->conn && !up->caught_up && up->n - up->next < FETCH_BATCH / 2 + window)
    fetch_start(up);
}

/* A 9014 with `qn`: the message it acknowledges leaves the window. */
static void acked(uplink_t *up, const char *qn) {
  for (size_t i = up->head; i < up->next; i++) {
    item_t *it = &up->q[i];
    if (it->acked || strcmp(it->qn, qn) != 0)
      continue;
    it->acked = true;
    up->st.inflight--;
    up->st.acked++;
    up->st.last_ack_t = sg_now();
    up->backoff_ms = BACKOFF_MIN_MS;
    if (up->n_acks == up->cap_acks) {
      size_t cap = up->cap_acks ? up->cap_acks * 2 : 256;
      int64_t *p = realloc(up->acks, cap * sizeof(*p));
      if (!p)
        return; /* it stays pending in the database: resent, de-duplicated */
      up->acks = p;
      up->cap_acks = cap;
    }
    up->acks[up->n_acks++] = it->id;
    queue_compact(up);
    pump(up);
    return;
  }
  log_debug("9014 for QN %s, which is not waiting (a pulled frame or a repeat)", qn);
}

/* OverTime and ReCount (HJ 212-2017 6.4): resend, then give up on the
 * connection. */
static void check_overtime(uplink_t *up) {
  uint64_t now = sg_mono_ms(), over = (uint64_t)up->cfg->uplink_overtime_s * 1000;
  for (size_t i = up->head; i < up->next && up->st.state == UPLINK_READY; i++) {
    item_t *it = &up->q[i];
    if (it->acked || now - it->sent_ms < over)
      continue;
    if (it->sends > up->cfg->uplink_recount) {
      up_fail(up, "QN %s (CN %s) not acknowledged after %d sends", it->qn, it->cn, it->sends);
      return;
    }
    log_info("QN %s (CN %s) not acknowledged in %d s: sending it again", it->qn, it->cn,
             up->cfg->uplink_overtime_s);
    send_item(up, it);
  }
}

/* ---- workers: fetching pending rows */

static int on_pending(void *arg, const stor_ob_msg_t *m) {
  uplink_t *up = arg;
  if (up->n_fetched == up->cap_fetched) {
    size_t cap = up->cap_fetched ? up->cap_fetched * 2 : FETCH_BATCH;
    item_t *p = realloc(up->fetched, cap * sizeof(*p));
    if (!p) {
      up->fetch_rc = -ENOMEM;
      return 1;
    }
    up->fetched = p;
    up->cap_fetched = cap;
  }
  item_t *it = &up->fetched[up->n_fetched];
  memset(it, 0, sizeof(*it));
  it->id = m->id;
  snprintf(it->qn, sizeof(it->qn), "%s", m->qn);
  snprintf(it->cn, sizeof(it->cn), "%s", m->cn);
  it->cls = m->cls;
  it->frames = malloc(m->frames_len);
  if (!it->frames) {
    up->fetch_rc = -ENOMEM;
    return 1;
  }
  memcpy(it->frames, m->frames, m->frames_len);
  it->len = m->frames_len;
  up->n_fetched++;
  return 0;
}

static void fetch_on_run(uv_work_t *w) {
  uplink_t *up = w->data;
  up->fetch_rc = 0;
  if (!up->fetch_rd && (up->fetch_rc = stor_reader_open(up->cfg->db_path, &up->fetch_rd)) != 0)
    return;
  int rc = stor_outbox_pending(up->fetch_rd, up->fetch_after, FETCH_BATCH, on_pending, up);
  if (up->fetch_rc == 0)
    up->fetch_rc = rc;
}

static void fetch_on_done(uv_work_t *w, int status) {
  uplink_t *up = w->data;
  up->fetch_busy = false;
  bool current = status == 0 && !up->stopping && up->fetch_gen == up->gen &&
                 up->st.state == UPLINK_READY && up->fetch_rc == 0;
  if (up->fetch_rc != 0 && !up->stopping)
    say_error(up, "reading the outbox: %s", strerror(-up->fetch_rc));
  size_t used = 0;
  for (size_t i = 0; i < up->n_fetched; i++) {
    item_t *it = &up->fetched[i];
    /* Acknowledged already, its mark not yet committed: not again. */
    bool skip = !current || id_in(up->acks, up->n_acks, it->id) ||
                id_in(up->ack_job, up->n_ack_job, it->id);
    if (current && it->id > up->fetched_id)
      up->fetched_id = it->id;
    if (skip || queue_push(up, it) != 0)
      item_free(it);
    else
      used++;
  }
  if (current && up->n_fetched < FETCH_BATCH)
    up->caught_up = true;
  up->n_fetched = 0;
  (void)used;
  if (current)
    pump(up);
}

static void fetch_start(uplink_t *up) {
  if (up->fetch_busy || up->stopping)
    return;
  up->fetch_gen = up->gen;
  up->fetch_after = up->fetched_id;
  up->fetch_work.data = up;
  up->fetch_busy = uv_queue_work(up->gw->loop, &up->fetch_work, fetch_on_run, fetch_on_done) == 0;
}

/* ---- workers: marking acknowledgements */

static void ack_on_run(uv_work_t *w) {
  uplink_t *up = w->data;
  up->ack_rc =
      stor_outbox_ack(up->gw->db, up->ack_job, up->n_ack_job, (int64_t)(sg_now() * 1000.0), NULL);
}

static void ack_start(uplink_t *up);

static void ack_on_done(uv_work_t *w, int status) {
  uplink_t *up = w->data;
  up->ack_busy = false;
  if (status != 0 || up->ack_rc != 0) {
    if (!up->stopping)
      say_error(up, "marking %zu acknowledgements: %s (they will be resent)", up->n_ack_job,
                strerror(up->ack_rc ? -up->ack_rc : ECANCELED));
  }
  up->n_ack_job = 0;
  if (!up->stopping)
    ack_start(up);
}

static void ack_start(uplink_t *up) {
  if (up->ack_busy || up->n_acks == 0 || up->stopping)
    return;
  /* The two arrays swap places, each with its capacity. */
  int64_t *t = up->ack_job;
  size_t cap = up->cap_ack_job;
  up->ack_job = up->acks;
  up->cap_ack_job = up->cap_acks;
  up->n_ack_job = up->n_acks;
  up->acks = t;
  up->cap_acks = cap;
  up->n_acks = 0;
  up->ack_work.data = up;
  up->ack_busy = uv_queue_work(up->gw->loop, &up->ack_work, ack_on_run, ack_on_done) == 0;
}

/* ---- workers: the authority's pulls */

static int on_pulled(void *arg, const stor_ob_msg_t *m) {
  uplink_t *up = arg;
  if (up->pull_len + m->frames_len > up->pull_cap) {
    size_t cap = (up->pull_len + m->frames_len) * 2;
    char *p = realloc(up->pull_buf, cap);
    if (!p) {
      up->pull_rc = -ENOMEM;
      return 1;
    }
    up->pull_buf = p;
    up->pull_cap = cap;
  }
  memcpy(up->pull_buf + up->pull_len, m->frames, m->frames_len);
  up->pull_len += m->frames_len;
  up->pull_rows++;
  return 0;
}

static void pull_on_run(uv_work_t *w) {
  uplink_t *up = w->data;
  const pull_t *p = up->cur_pull;
  up->pull_rc = 0;
  up->pull_len = 0;
  up->pull_rows = 0;
  if (!up->pull_rd && (up->pull_rc = stor_reader_open(up->cfg->db_path, &up->pull_rd)) != 0)
    return;
  int rc =
      strcmp(p->cn, "6081") == 0
          ? stor_outbox_by_seq(up->pull_rd, p->begin, p->end, PULL_MAX_ROWS, on_pulled, up)
          : stor_outbox_history(up->pull_rd, p->cn, p->begin, p->end, PULL_MAX_ROWS, on_pulled, up);
  if (up->pull_rc == 0)
    up->pull_rc = rc;
}

static void pull_start(uplink_t *up);

/* 9011 (ready), the original frames byte for byte, 9012 (done, or 100: no
 * data). */
static void pull_on_done(uv_work_t *w, int status) {
  uplink_t *up = w->data;
  pull_t *p = up->cur_pull;
  up->pull_busy = false;
  up->cur_pull = NULL;
  if (status == 0 && !up->stopping && up->pull_gen == up->gen && up->st.state == UPLINK_READY) {
    up->st.pulls++;
    log_info("pull CN %s %lld-%lld (QN %s): %lld messages", p->cn, (long long)p->begin,
             (long long)p->end, p->qn, (long long)up->pull_rows);
    reply(up, p->qn, "9011", "QnRtn=1");
    if (up->pull_rc == 0 && up->pull_len > 0)
      up_write(up, up->pull_buf, up->pull_len);
    reply(up, p->qn, "9012",
          up->pull_rc != 0    ? "ExeRtn=2"
          : up->pull_rows > 0 ? "ExeRtn=1"
                              : "ExeRtn=100");
  }
  free(p);
  if (up->pull_cap > (1u << 22)) { /* do not keep a big pull's buffer */
    free(up->pull_buf);
    up->pull_buf = NULL;
    up->pull_cap = 0;
  }
  pull_start(up);
}

static void pull_start(uplink_t *up) {
  if (up->pull_busy || !up->pulls || up->stopping)
    return;
  up->cur_pull = up->pulls;
  up->pulls = up->pulls->next;
  up->n_pulls--;
  up->pull_gen = up->gen;
  up->pull_work.data = up;
  up->pull_busy = uv_queue_work(up->gw->loop, &up->pull_work, pull_on_run, pull_on_done) == 0;
  if (!up->pull_busy) {
    free(up->cur_pull);
    up->cur_pull = NULL;
  }
}

static void pulls_clear(uplink_t *up) {
  for (pull_t *p = up->pulls, *next; p; p = next) {
    next = p->next;
    free(p);
  }
  up->pulls = NULL;
  up->n_pulls = 0;
}

static void pull_queue(uplink_t *up, const char *a, const char *b) {
  bool by_seq = strcmp(frame.h.cn, "6081") == 0;
  const char *va = hj212_get(&frame, -1, a), *vb = hj212_get(&frame, -1, b);
  int64_t begin = -1, end = -1;
  if (va && vb) {
    begin = by_seq ? strtoll(va, NULL, 10) : uplink_parse_datatime(va);
    end = by_seq ? strtoll(vb, NULL, 10) : uplink_parse_datatime(vb);
  }
  if (begin < 0 || end < begin || up->n_pulls >= PULLS_QUEUED_MAX) {
    log_warn("pull CN %s (QN %s) refused: %s", frame.h.cn, frame.h.qn,
             begin < 0 || end < begin ? "no valid range" : "too many pulls queued");
    reply(up, frame.h.qn, "9011", "QnRtn=2");
    return;
  }
  pull_t *p = calloc(1, sizeof(*p));
  if (!p)
    return;
  snprintf(p->qn, sizeof(p->qn), "%s", frame.h.qn);
  snprintf(p->cn, sizeof(p->cn), "%s", frame.h.cn);
  p->begin = begin;
  p->end = end;
  pull_t **tail = &up->pulls;
  while (*tail)
    tail = &(*tail)->next;
  *tail = p;
  up->n_pulls++;
  pull_start(up);
}

/* ---- what the authority says */

static void on_line(uplink_t *up, const char *line, size_t len) {
  if (len > 0 && line[len - 1] == '\r')
    len--;
  if (len == 0)
    return;
  char err[192];
  if (hj212_decode(line, len, &frame, err, sizeof(err)) != 0) {
    log_warn("from the receiver, not a frame: %s", err);
    return;
  }
  if (strcmp(frame.h.mn, up->mn) != 0) {
    log_warn("from the receiver, a frame for MN %s (we are %s): ignored", frame.h.mn, up->mn);
    return;
  }
  const char *cn = frame.h.cn;
  if (!strcmp(cn, "9014")) {
    acked(up, frame.h.qn);
  } else if (!strcmp(cn, "2011") || !strcmp(cn, "2051") || !strcmp(cn, "2061") ||
             !strcmp(cn, "2031")) {
    pull_queue(up, "BeginTime", "EndTime");
  } else if (!strcmp(cn, "6081")) {
    pull_queue(up, "BeginSeq", "EndSeq");
  } else if (!strcmp(cn, "1012")) {
    /* Time calibration: we report the offset and keep our clock, which
     * the OS sets (NTP); changing it under running timers is not ours. */
    const char *v = hj212_get(&frame, -1, "SystemTime");
    int64_t t = v ? uplink_parse_datatime(v) : -1;
    if (t < 0) {
      reply(up, frame.h.qn, "9011", "QnRtn=2");
      return;
    }
    up->st.clock_offset_s = (double)t - sg_now();
    up->st.clock_known = true;
    if (fabs(up->st.clock_offset_s) > 5)
      log_warn("the authority's clock is %+.0f s from ours: check the gateway's time source",
               up->st.clock_offset_s);
    reply(up, frame.h.qn, "9011", "QnRtn=1");
    reply(up, frame.h.qn, "9012", "ExeRtn=1");
  } else if (!strcmp(cn, "9011") || !strcmp(cn, "9012") || !strcmp(cn, "9013")) {
    log_debug("CN %s for QN %s", cn, frame.h.qn);
  } else {
    log_info("CN %s from the receiver is not one we answer: refused", cn);
    reply(up, frame.h.qn, "9011", "QnRtn=2");
  }
}

static void conn_bytes(uplink_t *up, conn_t *c, const uint8_t *buf, size_t n) {
  for (size_t i = 0; i < n && up->conn == c; i++) {
    char ch = (char)buf[i];
    if (ch == '\n') {
      if (!c->skipping)
        on_line(up, c->line, c->line_len);
      c->skipping = false;
      c->line_len = 0;
    } else if (!c->skipping) {
      if (c->line_len == sizeof(c->line)) {
        log_warn("from the receiver, a line over %d bytes: skipped", LINE_MAX_BYTES);
        c->skipping = true;
      } else {
        c->line[c->line_len++] = ch;
      }
    }
  }
}

/* ---- connecting */

static void on_ready(uplink_t *up) {
  conn_t *c = up->conn;
  c->handshaken = true;
  up->st.handshakes++;
  snprintf(up->st.cipher, sizeof(up->st.cipher), "%s", gtls_cipher(c->tls));
  set_state(up, UPLINK_READY);
  up->st.connected_since = sg_now();
  up->gen++;
  queue_clear(up);
  pulls_clear(up);
  log_info("connected to %s:%d (%s, TLS 1.2 %s)", up->cfg->uplink_host, up->cfg->uplink_port,
           up->server_name, up->st.cipher);
  /* Ask for the time (the answer is a 1012). */
  char qn[HJ212_QN_LEN + 1];
  hj212_qn_format((int64_t)(sg_now() * 1000.0), UPLINK_BEIJING_MIN, qn);
  up_send_msg(up, qn, up->cfg->uplink_st, "1013", HJ212_FLAG_V2017, "");
  pump(up);
}

static void conn_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  (void)h;
  (void)suggested;
  static char space[64 * 1024]; /* consumed before the next read: one loop */
  *buf = uv_buf_init(space, sizeof(space));
}

static void conn_on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
  conn_t *c = s->data;
  uplink_t *up = c->up;
  if (nread == 0 || up->conn != c)
    return;
  if (nread < 0) {
    up_fail(up, "%s:%d: %s", up->cfg->uplink_host, up->cfg->uplink_port,
            nread == UV_EOF ? (c->handshaken ? "the receiver closed the connection"
                                             : "the receiver closed the connection in the "
                                               "handshake (is our certificate from its CA?)")
                            : uv_strerror((int)nread));
    return;
  }
  if (gtls_feed(c->tls, (const uint8_t *)buf->base, (size_t)nread) != 0) {
    up_fail(up, "too much unprocessed TLS input from the receiver");
    return;
  }
  if (!c->handshaken) {
    int rc = gtls_handshake(c->tls);
    if (rc == -EAGAIN)
      return;
    if (rc != 0) {
      up_fail(up, "TLS with %s:%d: %s", up->cfg->uplink_host, up->cfg->uplink_port,
              gtls_error(c->tls));
      return;
    }
    on_ready(up);
    if (up->conn != c)
      return;
  }
  static uint8_t plain[16 * 1024];
  while (up->conn == c) {
    int n = gtls_read(c->tls, plain, sizeof(plain));
    if (n == 0)
      break;
    if (n < 0) {
      up_fail(up, "%s:%d: %s", up->cfg->uplink_host, up->cfg->uplink_port,
              n == -ECONNRESET ? "the receiver closed the session" : gtls_error(c->tls));
      break;
    }
    conn_bytes(up, c, plain, (size_t)n);
  }
}

static void connect_next(uplink_t *up);

static void conn_on_connect(uv_connect_t *req, int status) {
  conn_t *c = req->data;
  uplink_t *up = c->up;
  if (up->conn != c)
    return; /* given up meanwhile; its handle is closing */
  if (status < 0) {
    snprintf(up->st.last_error, sizeof(up->st.last_error), "cannot connect to %.100s:%d: %s",
             up->cfg->uplink_host, up->cfg->uplink_port, uv_strerror(status));
    up->st.last_error_t = sg_now();
    conn_close(c);
    connect_next(up);
    return;
  }
  uv_tcp_nodelay(&c->tcp, 1);
  c->tls = gtls_new(up->tls, up->server_name, conn_send, c);
  if (!c->tls) {
    up_fail(up, "out of memory for a TLS session");
    return;
  }
  set_state(up, UPLINK_HANDSHAKE);
  uv_read_start((uv_stream_t *)&c->tcp, conn_alloc, conn_on_read);
  if (gtls_handshake(c->tls) == -EPROTO) /* sends the ClientHello */
    up_fail(up, "TLS: %s", gtls_error(c->tls));
}

/* Tries the next address the name resolved to. */
static void connect_next(uplink_t *up) {
  struct addrinfo *a = up->next_addr;
  if (!a) {
    char why[UPLINK_ERROR_MAX];
    snprintf(why, sizeof(why), "%s", up->st.last_error);
    up_fail(up, "%s", why[0] ? why : "no address to connect to");
    return;
  }
  up->next_addr = a->ai_next;
  conn_t *c = calloc(1, sizeof(*c));
  if (!c) {
    up_fail(up, "out of memory");
    return;
  }
  c->up = up;
  c->refs = 1; /* the handle */
  uv_tcp_init(up->gw->loop, &c->tcp);
  c->tcp.data = c;
  c->connect.data = c;
  up->conn = c;
  up->st.connects++;
  set_state(up, UPLINK_CONNECTING);
  int rc = uv_tcp_connect(&c->connect, &c->tcp, a->ai_addr, conn_on_connect);
  if (rc != 0) {
    snprintf(up->st.last_error, sizeof(up->st.last_error), "cannot connect to %.100s:%d: %s",
             up->cfg->uplink_host, up->cfg->uplink_port, uv_strerror(rc));
    conn_close(c);
    connect_next(up);
  }
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res) {
  uplink_t *up = req->data;
  if (up->stopping || status == UV_ECANCELED) {
    uv_freeaddrinfo(res);
    return;
  }
  if (status < 0) {
    up_fail(up, "cannot resolve %s: %s", up->cfg->uplink_host, uv_strerror(status));
    return;
  }
  up->addrs = up->next_addr = res;
  up->st.last_error[0] = '\0';
  connect_next(up);
}

static void start_connect(uplink_t *up) {
  char port[8];
  snprintf(port, sizeof(port), "%d", up->cfg->uplink_port);
  struct addrinfo hints;
  memset(&hints, 0, sizeof(hints));
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  up->resolve.data = up;
  set_state(up, UPLINK_RESOLVING);
  int rc =
      uv_getaddrinfo(up->gw->loop, &up->resolve, on_resolved, up->cfg->uplink_host, port, &hints);
  if (rc != 0)
    up_fail(up, "cannot resolve %s: %s", up->cfg->uplink_host, uv_strerror(rc));
}

/* ---- the builder */

static void build_on_run(uv_work_t *w) {
  uplink_t *up = w->data;
  uplink_builder_run(up->builder, sg_now(), &up->build_res);
}

static void build_on_done(uv_work_t *w, int status) {
  uplink_t *up = w->data;
  up->build_busy = false;
  if (status != 0 || up->stopping)
    return;
  const uplink_build_result_t *r = &up->build_res;
  up->st.chain_seq = r->chain_seq;
  if (r->err != 0) {
    up->st.build_failures++;
    say_error(up, "making messages: %s (retried)", r->error);
  }
  if (r->dropped)
    log_warn("outbox over %d messages: the %zu oldest real-time frames dropped",
             up->cfg->uplink_outbox_max, r->dropped);
  if (r->over && !up->st.over)
    log_err("outbox over %d messages with no real-time frame left to drop: keeping everything",
            up->cfg->uplink_outbox_max);
  up->st.over = r->over;
  if (r->made) {
    up->st.made += r->made;
    up->caught_up = false;
    pump(up);
  }
}

/* ---- the tick */

static void report_down(uplink_t *up, uint64_t now) {
  if (now - up->last_alarm_ms < ALARM_EVERY_MS)
    return;
  up->last_alarm_ms = now;
  double down = up->st.state == UPLINK_READY ? 0 : (double)(now - up->down_ms) / 1000.0;
  double lim = up->cfg->uplink_down_alarm_s;
  alarm_cond_t c = {.rule = "uplink.down",
                    .source = up->cfg->site_id,
                    .level = down >= 4 * lim ? ALARM_ALARM
                             : down >= lim   ? ALARM_WARNING
                                             : ALARM_NORMAL,
                    .figure = down,
                    .limit = down >= 4 * lim ? 4 * lim : lim,
                    .unit = "s",
                    .hold_s = -1};
  char msg[256];
  if (c.level) {
    snprintf(msg, sizeof(msg), "no connection to the authority for %.0f min (%.180s)", down / 60,
             up->st.last_error[0] ? up->st.last_error : "never connected");
    c.message = msg;
  }
  alarm_update(up->gw, &c);
}

static void on_tick(uv_timer_t *t) {
  uplink_t *up = t->data;
  uint64_t now = sg_mono_ms();
  if (!up->build_busy && now - up->last_build_ms >= BUILD_EVERY_MS) {
    up->last_build_ms = now;
    up->build_work.data = up;
    up->build_busy = uv_queue_work(up->gw->loop, &up->build_work, build_on_run, build_on_done) == 0;
  }
  switch (up->st.state) {
  case UPLINK_IDLE:
    if (now >= up->retry_at_ms)
      start_connect(up);
    break;
  case UPLINK_CONNECTING:
  case UPLINK_HANDSHAKE:
    if (now - up->state_ms > CONNECT_TIMEOUT_MS)
      up_fail(up, "%s:%d: no TLS session within %d s", up->cfg->uplink_host, up->cfg->uplink_port,
              CONNECT_TIMEOUT_MS / 1000);
    break;
  case UPLINK_READY:
    check_overtime(up);
    pump(up);
    break;
  case UPLINK_RESOLVING:
    break;
  }
  ack_start(up);
  report_down(up, now);
}

/* ---- life cycle */

int uplink_start(gw_t *gw) {
  const sg_config_t *cfg = gw->cfg;
  if (!cfg->uplink_host[0]) {
    log_info("no [uplink] host: nothing is sent to an authority");
    return 0;
  }
  uplink_t *up = calloc(1, sizeof(*up));
  if (!up)
    return -ENOMEM;
  up->gw = gw;
  up->cfg = cfg;
  snprintf(up->mn, sizeof(up->mn), "%.27s", cfg->site_id);
  up->server_name = cfg->uplink_server_name[0] ? cfg->uplink_server_name : cfg->uplink_host;
  char err[512];
  int rc =
      gtls_conf_new(cfg->uplink_ca, cfg->uplink_cert, cfg->uplink_key, &up->tls, err, sizeof(err));
  if (rc == 0)
    rc = uplink_builder_new(gw, &up->builder, err, sizeof(err));
  if (rc != 0) {
    log_err("cannot start the uplink: %s", err);
    gtls_conf_free(up->tls);
    free(up);
    return rc;
  }
  if (strcmp(gtls_conf_cn(up->tls), cfg->site_id) != 0)
    log_warn("[uplink] cert %s is for %s, not for this site (%s): the receiver will refuse our "
             "frames",
             cfg->uplink_cert, gtls_conf_cn(up->tls), cfg->site_id);
  srand((unsigned)(sg_mono_ms() ^ (uint64_t)getpid()));
  up->backoff_ms = BACKOFF_MIN_MS;
  up->down_ms = sg_mono_ms();
  up->st.down_since = sg_now();
  up->st.state_since = sg_now();
  uv_timer_init(gw->loop, &up->tick);
  up->tick.data = up;
  uv_timer_start(&up->tick, on_tick, 0, TICK_MS);
  gw->uplink = up;
  log_info("uplink to %s:%d (name %s) as MN %s; outbox bound %d", cfg->uplink_host,
           cfg->uplink_port, up->server_name, up->mn, cfg->uplink_outbox_max);
  return 0;
}

void uplink_stop(gw_t *gw) {
  uplink_t *up = gw->uplink;
  if (!up || up->stopping)
    return;
  up->stopping = true;
  uv_close((uv_handle_t *)&up->tick, NULL);
  if (up->st.state == UPLINK_RESOLVING)
    uv_cancel((uv_req_t *)&up->resolve);
  if (up->conn)
    conn_close(up->conn);
  if (up->addrs) {
    uv_freeaddrinfo(up->addrs);
    up->addrs = up->next_addr = NULL;
  }
  queue_clear(up);
  pulls_clear(up);
  set_state(up, UPLINK_IDLE);
  log_info("uplink stopped: %llu sent, %llu resent, %llu acknowledged",
           (unsigned long long)up->st.sent, (unsigned long long)up->st.resent,
           (unsigned long long)up->st.acked);
}

void uplink_free(gw_t *gw) {
  uplink_t *up = gw->uplink;
  if (!up)
    return;
  /* Acknowledgements not yet marked: mark them now (the writer still runs). */
  if (up->n_acks)
    stor_outbox_ack(gw->db, up->acks, up->n_acks, (int64_t)(sg_now() * 1000.0), NULL);
  uplink_builder_free(up->builder);
  stor_reader_close(up->fetch_rd);
  stor_reader_close(up->pull_rd);
  gtls_conf_free(up->tls);
  free(up->q);
  free(up->fetched);
  free(up->acks);
  free(up->ack_job);
  free(up->pull_buf);
  free(up);
  gw->uplink = NULL;
}

/* ---- the snapshot GET /api/uplink shows */

const char *uplink_state_name(uplink_state_t s) {
  static const char *const names[] = {"disconnected", "resolving", "connecting", "handshake",
                                      "connected"};
  return (unsigned)s < sizeof(names) / sizeof(names[0]) ? names[s] : "?";
}

static void snapshot(gw_t *gw, void *arg) {
  if (gw->uplink)
    *(uplink_status_t *)arg = gw->uplink->st;
}

int uplink_status(gw_t *gw, uplink_status_t *out) {
  memset(out, 0, sizeof(*out));
  if (!gw->cfg->uplink_host[0])
    return -ENOENT;
  return gw_call_on_loop(gw, snapshot, out);
}
