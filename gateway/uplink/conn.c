/* The uplink's connection to the authority's sitegate-rx (uplink_int.h,
 * "conn.c"): resolve, TCP connect, the TLS session, line framing, writes,
 * and the back-off between attempts.
 *
 * It is libuv all the way (uv_getaddrinfo, uv_tcp_connect, reads and
 * writes) with the TLS session of tls.c fed from read events, so the loop
 * never blocks. A connection is a refcounted up_conn_t (its handle and each
 * queued write hold a reference) because the uplink forgets it the moment
 * it gives up while libuv still owns its handle and requests. This file
 * knows nothing of the window or the pulls: what happens on the connection
 * goes to uplink.c's uplink__on_* hooks, so the state machine of connecting
 * reads in one place. */
#define LOG_MODULE "uplink"
#include "gateway/uplink/uplink_int.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define WRITE_QUEUE_MAX (1024 * 1024)         /* bytes queued to the socket before we wait */
#define LINE_MAX_BYTES (HJ212_FRAME_MAX + 64) /* a longer line is not a frame */
#define BACKOFF_MIN_MS 1000
#define CONNECT_TIMEOUT_MS 20000 /* TCP connect and TLS handshake together */

struct up_conn {
  uv_tcp_t tcp;
  uv_connect_t connect;
  uv_shutdown_t shutdown;
  uplink_t *up;
  gtls_t *tls;
  int refs;
  bool handshaken, closing, handle_closed;
  char line[LINE_MAX_BYTES];
  size_t line_len;
  bool skipping; /* the rest of an over-long line */
};

typedef struct wreq {
  uv_write_t req;
  up_conn_t *c;
  char data[];
} wreq_t;

static void set_state(up_link_t *l, uplink_state_t s) {
  if (l->state == s)
    return;
  l->state = s;
  l->state_since = sg_now();
  l->state_ms = sg_mono_ms();
}

/* ---- the connection's life */

static void conn_unref(up_conn_t *c) {
  if (--c->refs > 0)
    return;
  gtls_free(c->tls);
  free(c);
}

static void conn_on_closed(uv_handle_t *h) { conn_unref(h->data); }

static void conn_close_handle(up_conn_t *c) {
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
static void conn_close(up_conn_t *c) {
  if (c->closing)
    return;
  c->closing = true;
  if (c->up->link.conn == c)
    c->up->link.conn = NULL;
  if (c->handshaken && c->tls)
    gtls_close_notify(c->tls);
  uv_read_stop((uv_stream_t *)&c->tcp);
  c->shutdown.data = c;
  if (uv_shutdown(&c->shutdown, (uv_stream_t *)&c->tcp, conn_on_shutdown) != 0)
    conn_close_handle(c);
}

static void free_addrs(up_link_t *l) {
  if (l->addrs) {
    uv_freeaddrinfo(l->addrs);
    l->addrs = l->next_addr = NULL;
  }
}

static uint64_t jitter(uint64_t ms) {
  return ms / 2 + (uint64_t)((double)(ms / 2) * ((double)rand() / RAND_MAX));
}

void uplink__fail(uplink_t *up, const char *fmt, ...) {
  up_link_t *l = &up->link;
  va_list ap;
  va_start(ap, fmt);
  uplink__set_error_v(up, fmt, ap);
  va_end(ap);
  if (l->conn)
    conn_close(l->conn);
  free_addrs(l);
  if (l->state == UPLINK_READY) {
    l->down_ms = sg_mono_ms();
    l->down_since = sg_now();
  }
  uplink__on_lost(up);
  l->gen++;
  set_state(l, UPLINK_IDLE);
  uint64_t wait = jitter(l->backoff_ms);
  l->retry_at_ms = sg_mono_ms() + wait;
  log_warn("%s; next attempt in %.1f s", up->last_error, (double)wait / 1000.0);
  l->backoff_ms *= 2;
  if (l->backoff_ms > (uint64_t)up->cfg->uplink_backoff_max_s * 1000)
    l->backoff_ms = (uint64_t)up->cfg->uplink_backoff_max_s * 1000;
}

void uplink__backoff_reset(uplink_t *up) { up->link.backoff_ms = BACKOFF_MIN_MS; }

/* ---- writing */

static void conn_on_written(uv_write_t *req, int status) {
  wreq_t *w = (wreq_t *)req;
  up_conn_t *c = w->c;
  uplink_t *up = c->up;
  bool current = up->link.conn == c;
  free(w);
  if (status < 0 && current)
    uplink__fail(up, "writing to %s: %s", up->cfg->uplink_host, uv_strerror(status));
  conn_unref(c);
  if (current && !up->stopping)
    uplink__on_writable(up);
}

/* gtls's send callback: queues ciphertext on the socket. */
static int conn_send(void *arg, const uint8_t *buf, size_t len) {
  up_conn_t *c = arg;
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

bool uplink__can_write(const uplink_t *up) {
  const up_conn_t *c = up->link.conn;
  return c && uv_stream_get_write_queue_size((const uv_stream_t *)&c->tcp) < WRITE_QUEUE_MAX;
}

int uplink__write(uplink_t *up, const char *buf, size_t len) {
  up_conn_t *c = up->link.conn;
  if (!c)
    return -ENOTCONN;
  if (gtls_write(c->tls, (const uint8_t *)buf, len) != 0) {
    uplink__fail(up, "%s", gtls_error(c->tls));
    return -EPROTO;
  }
  return 0;
}

void uplink__send_msg(uplink_t *up, const char *qn, const char *st, const char *cn, int flag,
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
  uplink__write(up, buf, (size_t)len);
}

void uplink__reply(uplink_t *up, const char *qn, const char *cn, const char *cp) {
  uplink__send_msg(up, qn, "91", cn, HJ212_FLAG_V2017, cp);
}

/* ---- reading: TLS records to lines */

/* Splits the plaintext on LF (UPLINK.md "Transport"); stops as soon as a
 * line's handler has let go of this connection. */
static void conn_bytes(uplink_t *up, up_conn_t *c, const uint8_t *buf, size_t n) {
  for (size_t i = 0; i < n && up->link.conn == c; i++) {
    char ch = (char)buf[i];
    if (ch == '\n') {
      if (!c->skipping)
        uplink__on_line(up, c->line, c->line_len);
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

static void on_handshaken(uplink_t *up, up_conn_t *c) {
  up_link_t *l = &up->link;
  c->handshaken = true;
  l->handshakes++;
  snprintf(l->cipher, sizeof(l->cipher), "%s", gtls_cipher(c->tls));
  set_state(l, UPLINK_READY);
  l->connected_since = sg_now();
  l->gen++;
  log_info("connected to %s:%d (%s, TLS 1.2 %s)", up->cfg->uplink_host, up->cfg->uplink_port,
           l->server_name, l->cipher);
  uplink__on_connected(up);
}

static void conn_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  (void)h;
  (void)suggested;
  static char space[64 * 1024]; /* consumed before the next read: one loop */
  *buf = uv_buf_init(space, sizeof(space));
}

static void conn_on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
  up_conn_t *c = s->data;
  uplink_t *up = c->up;
  const sg_config_t *cfg = up->cfg;
  if (nread == 0 || up->link.conn != c)
    return;
  if (nread < 0) {
    uplink__fail(up, "%s:%d: %s", cfg->uplink_host, cfg->uplink_port,
                 nread == UV_EOF ? (c->handshaken ? "the receiver closed the connection"
                                                  : "the receiver closed the connection in the "
                                                    "handshake (is our certificate from its CA?)")
                                 : uv_strerror((int)nread));
    return;
  }
  if (gtls_feed(c->tls, (const uint8_t *)buf->base, (size_t)nread) != 0) {
    uplink__fail(up, "too much unprocessed TLS input from the receiver");
    return;
  }
  if (!c->handshaken) {
    int rc = gtls_handshake(c->tls);
    if (rc == -EAGAIN)
      return;
    if (rc != 0) {
      uplink__fail(up, "TLS with %s:%d: %s", cfg->uplink_host, cfg->uplink_port,
                   gtls_error(c->tls));
      return;
    }
    on_handshaken(up, c);
    if (up->link.conn != c)
      return;
  }
  static uint8_t plain[16 * 1024];
  while (up->link.conn == c) {
    int n = gtls_read(c->tls, plain, sizeof(plain));
    if (n == 0)
      break;
    if (n < 0) {
      uplink__fail(up, "%s:%d: %s", cfg->uplink_host, cfg->uplink_port,
                   n == -ECONNRESET ? "the receiver closed the session" : gtls_error(c->tls));
      break;
    }
    conn_bytes(up, c, plain, (size_t)n);
  }
}

/* ---- connecting */

static void connect_next(uplink_t *up);

static void conn_on_connect(uv_connect_t *req, int status) {
  up_conn_t *c = req->data;
  uplink_t *up = c->up;
  if (up->link.conn != c)
    return; /* given up meanwhile; its handle is closing */
  if (status < 0) {
    uplink__set_error(up, "cannot connect to %.100s:%d: %s", up->cfg->uplink_host,
                      up->cfg->uplink_port, uv_strerror(status));
    conn_close(c);
    connect_next(up);
    return;
  }
  uv_tcp_nodelay(&c->tcp, 1);
  c->tls = gtls_new(up->link.tls, up->link.server_name, conn_send, c);
  if (!c->tls) {
    uplink__fail(up, "out of memory for a TLS session");
    return;
  }
  set_state(&up->link, UPLINK_HANDSHAKE);
  uv_read_start((uv_stream_t *)&c->tcp, conn_alloc, conn_on_read);
  if (gtls_handshake(c->tls) == -EPROTO) /* sends the ClientHello */
    uplink__fail(up, "TLS: %s", gtls_error(c->tls));
}

/* Tries the next address the name resolved to; when none is left, fails
 * with the last attempt's reason. */
static void connect_next(uplink_t *up) {
  up_link_t *l = &up->link;
  struct addrinfo *a = l->next_addr;
  if (!a) {
    char why[UPLINK_ERROR_MAX];
    snprintf(why, sizeof(why), "%s", up->last_error);
    uplink__fail(up, "%s", why[0] ? why : "no address to connect to");
    return;
  }
  l->next_addr = a->ai_next;
  up_conn_t *c = calloc(1, sizeof(*c));
  if (!c) {
    uplink__fail(up, "out of memory");
    return;
  }
  c->up = up;
  c->refs = 1; /* the handle */
  uv_tcp_init(up->gw->loop, &c->tcp);
  c->tcp.data = c;
  c->connect.data = c;
  l->conn = c;
  l->connects++;
  set_state(l, UPLINK_CONNECTING);
  int rc = uv_tcp_connect(&c->connect, &c->tcp, a->ai_addr, conn_on_connect);
  if (rc != 0) {
    uplink__set_error(up, "cannot connect to %.100s:%d: %s", up->cfg->uplink_host,
                      up->cfg->uplink_port, uv_strerror(rc));
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
    uplink__fail(up, "cannot resolve %s: %s", up->cfg->uplink_host, uv_strerror(status));
    return;
  }
  up->link.addrs = up->link.next_addr = res;
  up->last_error[0] = '\0';
  connect_next(up);
}

static void start_connect(uplink_t *up) {
  char port[8];
  snprintf(port, sizeof(port), "%d", up->cfg->uplink_port);
  struct addrinfo hints;
  memset(&hints, 0, sizeof(hints));
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  up->link.resolve.data = up;
  set_state(&up->link, UPLINK_RESOLVING);
  int rc = uv_getaddrinfo(up->gw->loop, &up->link.resolve, on_resolved, up->cfg->uplink_host, port,
                          &hints);
  if (rc != 0)
    uplink__fail(up, "cannot resolve %s: %s", up->cfg->uplink_host, uv_strerror(rc));
}

/* ---- for uplink.c */

int uplink__link_open(uplink_t *up, char *err, size_t errlen) {
  const sg_config_t *cfg = up->cfg;
  up_link_t *l = &up->link;
  l->server_name = cfg->uplink_server_name[0] ? cfg->uplink_server_name : cfg->uplink_host;
  int rc = gtls_conf_new(cfg->uplink_ca, cfg->uplink_cert, cfg->uplink_key, &l->tls, err, errlen);
  if (rc != 0)
    return rc;
  if (strcmp(gtls_conf_cn(l->tls), cfg->site_id) != 0)
    log_warn("[uplink] cert %s is for %s, not for this site (%s): the receiver will refuse our "
             "frames",
             cfg->uplink_cert, gtls_conf_cn(l->tls), cfg->site_id);
  l->backoff_ms = BACKOFF_MIN_MS;
  l->down_ms = sg_mono_ms();
  l->down_since = sg_now();
  l->state_since = sg_now();
  return 0;
}

void uplink__link_tick(uplink_t *up, uint64_t now) {
  up_link_t *l = &up->link;
  switch (l->state) {
  case UPLINK_IDLE:
    if (now >= l->retry_at_ms)
      start_connect(up);
    break;
  case UPLINK_CONNECTING:
  case UPLINK_HANDSHAKE:
    if (now - l->state_ms > CONNECT_TIMEOUT_MS)
      uplink__fail(up, "%s:%d: no TLS session within %d s", up->cfg->uplink_host,
                   up->cfg->uplink_port, CONNECT_TIMEOUT_MS / 1000);
    break;
  case UPLINK_READY:
  case UPLINK_RESOLVING:
    break;
  }
}

void uplink__link_close(uplink_t *up) {
  up_link_t *l = &up->link;
  if (l->state == UPLINK_RESOLVING)
    uv_cancel((uv_req_t *)&l->resolve);
  if (l->conn)
    conn_close(l->conn);
  free_addrs(l);
  set_state(l, UPLINK_IDLE);
}

void uplink__link_free(uplink_t *up) {
  gtls_conf_free(up->link.tls);
  up->link.tls = NULL;
}
