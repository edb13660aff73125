/* sitegate-rx's /metrics: Prometheus text over plain HTTP on the loop.
 *
 * `--metrics HOST:PORT` (off by default; meant for loopback or the
 * operators' network, it shows counts and never a frame or a secret).
 * A scraper's request is read up to its blank line; GET /metrics gets the
 * counters the server and the writer keep (rx_counters_t), anything else
 * 404, and the connection is closed after the answer (HTTP/1.0). Loop
 * thread only; a client struct is freed in its close callback. */
#define LOG_MODULE "rx"
#include "authority/rx.h"
#include "common/common.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#define REQ_MAX 2048

struct rx_metrics {
  uv_tcp_t listener;
  rx_counters_fn fill;
  void *arg;
};

typedef struct mclient {
  uv_tcp_t tcp;
  uv_write_t wr;
  rx_metrics_t *m;
  char req[REQ_MAX];
  size_t len;
  char *out;
} mclient_t;

#define RX_REFUSAL_NAME(e, s) s,
const char *const RX_REFUSAL_NAMES[RX_REFUSAL_N] = {RX_REFUSAL_KINDS(RX_REFUSAL_NAME)};

#define RX_SIGNIN_NAME(e, s) s,
const char *const RX_SIGNIN_NAMES[RX_SIGNIN_N] = {RX_SIGNIN_OUTCOMES(RX_SIGNIN_NAME)};

const double RX_COMMIT_BOUNDS_MS[RX_COMMIT_BUCKETS] = {1, 2, 5, 10, 25, 50, 100, 250, 1000, 5000};

static void client_on_closed(uv_handle_t *h) {
  mclient_t *c = h->data;
  free(c->out);
  free(c);
}

static void client_on_written(uv_write_t *w, int status) {
  (void)status;
  mclient_t *c = w->data;
  uv_close((uv_handle_t *)&c->tcp, client_on_closed);
}

/* Appends to a growing buffer; gives up quietly when out of memory. */
typedef struct sbuf {
  char *p;
  size_t len, cap;
} sbuf_t;

__attribute__((format(printf, 2, 3))) static void put(sbuf_t *b, const char *fmt, ...) {
  va_list ap;
  for (int pass = 0; pass < 2 && b->p; pass++) {
    va_start(ap, fmt);
    int n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
    va_end(ap);
    if (n < 0)
      return;
    if ((size_t)n < b->cap - b->len) {
      b->len += (size_t)n;
      return;
    }
    char *q = realloc(b->p, b->cap * 2 + (size_t)n);
    if (!q)
      return;
    b->p = q;
    b->cap = b->cap * 2 + (size_t)n;
  }
}

static void counter(sbuf_t *b, const char *name, const char *help, uint64_t v) {
  put(b, "# HELP %s %s\n# TYPE %s counter\n%s %llu\n", name, help, name, name,
      (unsigned long long)v);
}

static void gauge(sbuf_t *b, const char *name, const char *help, double v) {
  put(b, "# HELP %s %s\n# TYPE %s gauge\n%s %g\n", name, help, name, name, v);
}

char *rx_metrics_format(const rx_counters_t *k) {
  sbuf_t b = {malloc(4096), 0, 4096};
  if (!b.p)
    return NULL;
  b.p[0] = '\0';
  counter(&b, "sitegate_rx_connections_total", "TCP connections accepted.", k->accepted);
  gauge(&b, "sitegate_rx_connections", "Connections open now.", k->open);
  gauge(&b, "sitegate_rx_connections_pending", "Connections open without a TLS handshake yet.",
        (double)k->strangers);
  counter(&b, "sitegate_rx_connections_dropped_total",
          "Connections closed before a handshake for the limits on them: over 8 from one address, "
          "the oldest evicted for a newer one, silent for 5 s, or slower than --handshake.",
          k->stranger_drops);
  counter(&b, "sitegate_rx_handshakes_total",
          "TLS handshakes completed (client certificate verified).", k->handshakes);
  counter(&b, "sitegate_rx_frames_total", "HJ 212 frames read.", k->frames);
  put(&b, "# HELP sitegate_rx_messages_total Messages decided, by outcome.\n"
          "# TYPE sitegate_rx_messages_total counter\n");
  static const char *const outcomes[] = {"stored", "duplicate", "refused", "failed"};
  for (int i = 0; i < 4; i++)
    put(&b, "sitegate_rx_messages_total{outcome=\"%s\"} %llu\n", outcomes[i],
        (unsigned long long)k->messages[i]);
  put(&b, "# HELP sitegate_rx_refusals_total Frames and connections refused, by reason.\n"
          "# TYPE sitegate_rx_refusals_total counter\n");
  for (int i = 0; i < RX_REFUSAL_N; i++)
    put(&b, "sitegate_rx_refusals_total{reason=\"%s\"} %llu\n", RX_REFUSAL_NAMES[i],
        (unsigned long long)k->refused_by[i]);
  counter(&b, "sitegate_rx_acks_total", "9014 acknowledgements sent.", k->acks);
  gauge(&b, "sitegate_rx_queue", "Messages and records waiting for the writer.",
        (double)k->waiting);
  counter(&b, "sitegate_rx_db_batches_total", "Transactions committed.", k->w.batches);
  counter(&b, "sitegate_rx_db_retries_total",
          "Batches the database asked again for (a deadlock, a race lost to another receiver).",
          k->w.retries);
  counter(&b, "sitegate_rx_db_errors_total", "Batches not stored (the gateways resend).",
          k->w.errors);
  counter(&b, "sitegate_rx_db_reconnects_total", "Connections to the database lost and made again.",
          k->w.reconnects);
  gauge(&b, "sitegate_rx_db_up", "1 while the database connection works.", k->w.lost ? 0 : 1);
  counter(&b, "sitegate_rx_backfill_messages_total",
          "Stored messages decoded afterwards (frames stored before their decoded tables).",
          k->w.backfill_messages);
  gauge(&b, "sitegate_rx_backfill_left",
        "Frame ids the backfill has still to look at (0 when it is done).",
        (double)k->w.backfill_left);
  put(&b, "# HELP sitegate_rx_commit_seconds Duration of a batch, begin to commit.\n"
          "# TYPE sitegate_rx_commit_seconds histogram\n");
  for (int i = 0; i < RX_COMMIT_BUCKETS; i++)
    put(&b, "sitegate_rx_commit_seconds_bucket{le=\"%g\"} %llu\n", RX_COMMIT_BOUNDS_MS[i] / 1000.0,
        (unsigned long long)k->w.commit_le[i]);
  put(&b, "sitegate_rx_commit_seconds_bucket{le=\"+Inf\"} %llu\n",
      (unsigned long long)k->w.batches);
  put(&b, "sitegate_rx_commit_seconds_sum %g\nsitegate_rx_commit_seconds_count %llu\n",
      k->w.commit_ms_sum / 1000.0, (unsigned long long)k->w.batches);
  if (k->console) {
    put(&b, "# HELP sitegate_rx_console_signins_total Console sign-ins, by outcome (limited: "
            "refused for too many failures from the address or for the account).\n"
            "# TYPE sitegate_rx_console_signins_total counter\n");
    for (int i = 0; i < RX_SIGNIN_N; i++)
      put(&b, "sitegate_rx_console_signins_total{outcome=\"%s\"} %llu\n", RX_SIGNIN_NAMES[i],
          (unsigned long long)k->signins[i]);
  }
  return b.p;
}

static void answer(mclient_t *c) {
  uv_read_stop((uv_stream_t *)&c->tcp);
  char *body = NULL;
  const char *status = "404 Not Found";
  if (!strncmp(c->req, "GET /metrics ", 13) || !strncmp(c->req, "GET /metrics?", 13)) {
    rx_counters_t k;
    memset(&k, 0, sizeof(k));
    c->m->fill(c->m->arg, &k);
    body = rx_metrics_format(&k);
    status = body ? "200 OK" : "500 Internal Server Error";
  }
  size_t blen = body ? strlen(body) : 0;
  size_t cap = blen + 160;
  c->out = malloc(cap);
  if (!c->out) {
    free(body);
    uv_close((uv_handle_t *)&c->tcp, client_on_closed);
    return;
  }
  int n = snprintf(c->out, cap,
                   "HTTP/1.0 %s\r\nContent-Type: text/plain; version=0.0.4\r\n"
                   "Content-Length: %zu\r\nConnection: close\r\n\r\n%s",
                   status, blen, body ? body : "");
  free(body);
  uv_buf_t buf = uv_buf_init(c->out, (unsigned)n);
  c->wr.data = c;
  if (uv_write(&c->wr, (uv_stream_t *)&c->tcp, &buf, 1, client_on_written) != 0)
    uv_close((uv_handle_t *)&c->tcp, client_on_closed);
}

static void client_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf) {
  (void)hint;
  mclient_t *c = h->data;
  *buf = uv_buf_init(c->req + c->len, (unsigned)(REQ_MAX - 1 - c->len));
}

static void client_on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf) {
  (void)buf;
  mclient_t *c = s->data;
  if (n < 0 || (n == 0 && c->len >= REQ_MAX - 1)) {
    uv_close((uv_handle_t *)&c->tcp, client_on_closed);
    return;
  }
  c->len += (size_t)n;
  c->req[c->len] = '\0';
  if (strstr(c->req, "\r\n\r\n") || strstr(c->req, "\n\n") || c->len >= REQ_MAX - 1)
    answer(c);
}

static void metrics_on_connection(uv_stream_t *l, int status) {
  rx_metrics_t *m = l->data;
  if (status != 0)
    return;
  mclient_t *c = calloc(1, sizeof(*c));
  if (!c)
    return;
  c->m = m;
  uv_tcp_init(l->loop, &c->tcp);
  c->tcp.data = c;
  if (uv_accept(l, (uv_stream_t *)&c->tcp) != 0) {
    uv_close((uv_handle_t *)&c->tcp, client_on_closed);
    return;
  }
  uv_read_start((uv_stream_t *)&c->tcp, client_alloc, client_on_read);
}

static void metrics_on_closed(uv_handle_t *h) { free(h->data); }

int rx_metrics_start(void *loop, const struct sockaddr *sa, rx_counters_fn fill, void *arg,
                     rx_metrics_t **out) {
  *out = NULL;
  rx_metrics_t *m = calloc(1, sizeof(*m));
  if (!m)
    return UV_ENOMEM;
  m->fill = fill;
  m->arg = arg;
  uv_tcp_init(loop, &m->listener);
  m->listener.data = m;
  int rc = uv_tcp_bind(&m->listener, sa, 0);
  if (rc == 0)
    rc = uv_listen((uv_stream_t *)&m->listener, 64, metrics_on_connection);
  if (rc != 0) {
    uv_close((uv_handle_t *)&m->listener, metrics_on_closed);
    return rc;
  }
  *out = m;
  return 0;
}

void rx_metrics_stop(rx_metrics_t *m) {
  if (m)
    uv_close((uv_handle_t *)&m->listener, metrics_on_closed);
}
