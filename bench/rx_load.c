/* rx_load: many simulated gateways against sitegate-rx over real TLS, for
 * `make bench` (bench/rx.sh). One libuv loop holds every connection; each
 * gateway has its own certificate (CN = its MN, as the receiver demands),
 * completes the TLS 1.2 handshake, then sends `--messages` minute frames
 * (2051, one PM10 and one noise record, as a gateway's) keeping up to
 * `--window` unacknowledged, and times each from its write to its 9014.
 * With `--signed`, every message is a 6021 alarm signed on a chain of its
 * own, so the receiver verifies ECDSA and extends a chain per message.
 * `--certs K` reuses K certificates (gateway i is site i mod K).
 * Each gateway connects from its own loopback address (127.2.x.y, all of
 * 127/8 is loopback on Linux): the receiver lets at most 8 connections
 * from one address wait for their handshake (rxserver.c PREAUTH_PER_ADDR),
 * and a thousand sites are a thousand addresses.
 * With `--hold 1` the connections stay open once done ("holding" on
 * stderr) until the process is killed: the idle-connection figure.
 * With `--rate R` the load is open: R messages a second over all
 * gateways, whatever the acknowledgements do (the window still caps each
 * gateway), so the latencies are those at that offered rate, not those of
 * a queue kept full (with --window W, N gateways keep N x W messages
 * waiting, and the latency is that queue over the rate).
 * Two phases, as a receiver lives: first every gateway connects and shakes
 * hands, at most `--connecting` (64) at a time (a thousand ClientHellos at
 * once would only measure the backlog: the receiver drops a stranger
 * silent for 5 s); then, once all have, the messages. So msgs_s and the
 * latencies are those of connected gateways, and handshakes_s is given
 * apart.
 * Prints one line: `rx_load: gateways=.. acked=.. msgs_s=.. p50_ms=..
 * p99_ms=.. handshakes_s=..`; exit 1 when a gateway failed. */
#include "protocol/protocol.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <uv.h>

#define WINDOW_MAX 64
#define LINE_MAX_B 4096

typedef struct gw {
  uv_tcp_t tcp;
  uv_connect_t cr;
  proto_tls_conf_t *conf;
  proto_tls_t *tls;
  char mn[HJ212_MN_MAX + 1];
  int next, acked;
  bool ready, failed;
  char qn[WINDOW_MAX][HJ212_QN_LEN + 1];
  double at[WINDOW_MAX];
  int inflight;
  char line[LINE_MAX_B];
  size_t len;
  uint8_t prev[32];
  uint64_t seq;
} gw_t;

static struct {
  const char *host, *dir, *prefix;
  int port, gateways, messages, window, certs, connecting_max;
  bool is_signed, hold;
  proto_signer_t *signer;
  int64_t base_ms;
  double *lat;
  size_t n_lat;
  int ready, done, failed;
  int next_gw, connecting; /* the next gateway to connect, handshakes under way */
  bool sending;            /* every gateway has shaken hands (or failed) */
  double rate;             /* --rate: messages/s offered over all gateways (0: closed loop) */
  long sent;
  int rr;
  uv_timer_t tick;
  double t_ready;
  gw_t *gws;
  bool held;
  double t_first, t_last, t_start;
  uv_loop_t *loop;
} g;

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1000.0 + (double)ts.tv_nsec / 1e6;
}

static void on_written(uv_write_t *w, int status) {
  (void)status;
  free(w->data);
  free(w);
}

static int tls_send(void *arg, const uint8_t *buf, size_t len) {
  gw_t *c = arg;
  uv_write_t *w = malloc(sizeof(*w));
  char *copy = malloc(len);
  if (!w || !copy) {
    free(w);
    free(copy);
    return -ENOMEM;
  }
  memcpy(copy, buf, len);
  w->data = copy;
  uv_buf_t b = uv_buf_init(copy, (unsigned)len);
  int rc = uv_write(w, (uv_stream_t *)&c->tcp, &b, 1, on_written);
  if (rc != 0) {
    free(copy);
    free(w);
    return -EIO;
  }
  return 0;
}

static void connect_next(void);
static void send_more(gw_t *c);

/* A handshake ended (done or failed): the next gateway connects, and
 * once none is left the messages start. */
static void handshake_over(void) {
  g.connecting--;
  connect_next();
  if (!g.sending && g.next_gw == g.gateways && g.connecting == 0) {
    g.sending = true;
    g.t_ready = now_ms();
    fprintf(stderr, "rx_load: %d handshakes in %.2f s\n", g.ready, (g.t_ready - g.t_start) / 1000);
    for (int i = 0; i < g.gateways; i++)
      if (g.gws[i].ready && !g.gws[i].failed)
        send_more(&g.gws[i]);
  }
}

static void finish(gw_t *c, bool failed) {
  if (c->failed || (c->acked == g.messages && !failed))
    return;
  c->failed = failed;
  if (failed && !c->ready)
    handshake_over();
  if (failed) {
    g.failed++;
    g.done++;
    if (g.done == g.gateways)
      uv_stop(g.loop);
  }
}

/* The CP of message `i` of gateway `c`. */
static size_t make_cp(gw_t *c, int i, char *cp, size_t cap) {
  int64_t t = g.base_ms / 1000 / 60 * 60 - (int64_t)(g.messages - i) * 60;
  char dt[16];
  time_t tt = (time_t)(t + 8 * 3600);
  struct tm tm;
  gmtime_r(&tt, &tm);
  strftime(dt, sizeof(dt), "%Y%m%d%H%M%S", &tm);
  if (!g.is_signed)
    return (size_t)snprintf(cp, cap,
                            "DataTime=%s;a34002-Min=41.0,a34002-Avg=%d.5,a34002-Max=99.0,"
                            "a34002-Flag=N;LA-Min=50.1,LA-Avg=61.2,LA-Max=70.3,LA-Flag=N",
                            dt, 50 + i % 40);
  char prev[65], body[512];
  hj212_hex(c->prev, 32, prev);
  int n = snprintf(body, sizeof(body),
                   "Seq=%llu,Prev=%s,DataTime=%s,AlarmId=%d,State=on,Level=warn,Rule=noise.laeq,"
                   "Device=noise-01,PolId=LA,Value=71.20,Limit=70.00,WindowS=1200",
                   (unsigned long long)(c->seq + 1), prev, dt, i + 1);
  uint8_t hash[32], sig[64];
  proto_sha256(c->prev, 32, body, (size_t)n, hash);
  if (proto_sign(g.signer, hash, sig) != 0)
    return 0;
  char h[65], s[129];
  hj212_hex(hash, 32, h);
  hj212_hex(sig, 64, s);
  c->seq++;
  memcpy(c->prev, hash, 32);
  return (size_t)snprintf(cp, cap, "%s,Hash=%s,Sig=%s", body, h, s);
}

/* Whether gateway `c` may send a message now (its window has room). */
static bool can_send(const gw_t *c) {
  return g.sending && c->ready && !c->failed && c->inflight < g.window && c->next < g.messages;
}

/* Sends gateway c's next message: false when it failed. */
static bool send_one(gw_t *c) {
  {
    int i = c->next++;
    hj212_head_t h = {.flag = HJ212_FLAG_V2017 | HJ212_FLAG_ACK};
    hj212_qn_format(g.base_ms + i, 480, h.qn);
    snprintf(h.st, sizeof(h.st), "39");
    snprintf(h.cn, sizeof(h.cn), "%s", g.is_signed ? "6021" : "2051");
    snprintf(h.pw, sizeof(h.pw), "123456");
    snprintf(h.mn, sizeof(h.mn), "%s", c->mn);
    char cp[1024], buf[4096], err[128];
    size_t n_frames, cp_len = make_cp(c, i, cp, sizeof(cp));
    int len = hj212_encode(&h, cp, cp_len, buf, sizeof(buf), &n_frames, err, sizeof(err));
    if (len < 0 || cp_len == 0) {
      fprintf(stderr, "rx_load: %s: cannot encode: %s\n", c->mn, err);
      finish(c, true);
      return false;
    }
    int slot = 0;
    while (c->qn[slot][0])
      slot++;
    memcpy(c->qn[slot], h.qn, sizeof(c->qn[slot]));
    c->at[slot] = now_ms();
    if (g.t_first == 0)
      g.t_first = c->at[slot];
    c->inflight++;
    if (proto_tls_write(c->tls, (const uint8_t *)buf, (size_t)len) != 0) {
      finish(c, true);
      return false;
    }
  }
  return true;
}

/* Closed loop (no --rate): as many as the window lets. */
static void send_more(gw_t *c) {
  while (g.rate <= 0 && can_send(c) && send_one(c)) {
  }
}

/* Open loop (--rate R): every 5 ms, the messages due by now at R per
 * second over all gateways, round robin, each into a window with room. */
static void on_tick(uv_timer_t *tm) {
  (void)tm;
  if (!g.sending)
    return;
  double due = g.rate * (now_ms() - g.t_ready) / 1000.0;
  while ((double)g.sent < due) {
    int tried = 0;
    while (tried < g.gateways && !can_send(&g.gws[g.rr])) {
      g.rr = (g.rr + 1) % g.gateways;
      tried++;
    }
    if (tried == g.gateways)
      break; /* every window is full or every gateway done: later */
    gw_t *c = &g.gws[g.rr];
    g.rr = (g.rr + 1) % g.gateways;
    g.sent++;
    send_one(c);
  }
}

static void on_ack(gw_t *c, const char *qn) {
  for (int s = 0; s < WINDOW_MAX; s++)
    if (c->qn[s][0] && !strcmp(c->qn[s], qn)) {
      double t = now_ms();
      g.lat[g.n_lat++] = t - c->at[s];
      g.t_last = t;
      c->qn[s][0] = '\0';
      c->inflight--;
      if (++c->acked == g.messages)
        g.done++;
      send_more(c);
      return;
    }
}

static void on_line(gw_t *c) {
  static hj212_frame_t f;
  char err[128];
  if (c->len && c->line[c->len - 1] == '\r')
    c->len--;
  if (hj212_decode(c->line, c->len, &f, err, sizeof(err)) == 0 && !strcmp(f.h.cn, "9014"))
    on_ack(c, f.h.qn);
}

static void alloc_cb(uv_handle_t *h, size_t n, uv_buf_t *b) {
  (void)h;
  static char buf[64 * 1024];
  (void)n;
  *b = uv_buf_init(buf, sizeof(buf));
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b) {
  gw_t *c = s->data;
  if (n < 0) {
    if (c->acked < g.messages) {
      fprintf(stderr, "rx_load: %s: connection ended: %s\n", c->mn, uv_strerror((int)n));
      finish(c, true);
    }
    uv_read_stop(s);
    return;
  }
  if (proto_tls_feed(c->tls, (const uint8_t *)b->base, (size_t)n) != 0) {
    finish(c, true);
    return;
  }
  if (!c->ready) {
    int rc = proto_tls_handshake(c->tls, "handshake", "refused", NULL);
    if (rc == -EAGAIN)
      return;
    if (rc != 0) {
      fprintf(stderr, "rx_load: %s: %s\n", c->mn, proto_tls_error(c->tls));
      finish(c, true);
      return;
    }
    proto_tls_set_done(c->tls);
    c->ready = true;
    g.ready++;
    handshake_over();
  }
  uint8_t plain[16 * 1024];
  int r;
  while ((r = proto_tls_read(c->tls, plain, sizeof(plain))) > 0)
    for (int i = 0; i < r; i++) {
      if (plain[i] == '\n') {
        on_line(c);
        c->len = 0;
      } else if (c->len < sizeof(c->line)) {
        c->line[c->len++] = (char)plain[i];
      }
    }
  if (g.done == g.gateways && !g.hold)
    uv_stop(g.loop);
  else if (g.done == g.gateways && g.hold && !g.held) {
    g.held = true;
    fprintf(stderr, "rx_load: holding %d connections (%d failed)\n", g.gateways, g.failed);
  }
}

static void on_connect(uv_connect_t *cr, int status) {
  gw_t *c = cr->data;
  if (status != 0) {
    fprintf(stderr, "rx_load: %s: connect: %s\n", c->mn, uv_strerror(status));
    finish(c, true);
    return;
  }
  uv_tcp_nodelay(&c->tcp, 1); /* as the gateway's uplink (gateway/uplink/conn.c) */
  c->tls = proto_tls_new(c->conf, "localhost", 256 * 1024, tls_send, c);
  uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, on_read);
  proto_tls_handshake(c->tls, "handshake", "refused", NULL);
}

/* Starts the next gateway's connection, unless --connecting are under way. */
static void connect_next(void) {
  if (g.next_gw >= g.gateways || g.connecting >= g.connecting_max)
    return;
  int i = g.next_gw++;
  gw_t *c = &g.gws[i];
  g.connecting++;
  uv_tcp_init(g.loop, &c->tcp);
  c->tcp.data = c;
  c->cr.data = c;
  char src[32];
  struct sockaddr_in from, sa;
  snprintf(src, sizeof(src), "127.2.%d.%d", i / 250 % 250, i % 250 + 1);
  if (uv_ip4_addr(src, 0, &from) == 0)
    uv_tcp_bind(&c->tcp, (const struct sockaddr *)&from, 0);
  uv_ip4_addr(g.host, g.port, &sa);
  if (uv_tcp_connect(&c->cr, &c->tcp, (struct sockaddr *)&sa, on_connect) != 0)
    finish(c, true);
}

static int cmp(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
  g.host = "127.0.0.1";
  g.prefix = "LOAD";
  g.gateways = 1000;
  g.messages = 20;
  g.window = 8;
  g.connecting_max = 64;
  for (int i = 1; i + 1 < argc; i += 2) {
    const char *k = argv[i], *v = argv[i + 1];
    if (!strcmp(k, "--port"))
      g.port = atoi(v);
    else if (!strcmp(k, "--pki"))
      g.dir = v;
    else if (!strcmp(k, "--prefix"))
      g.prefix = v;
    else if (!strcmp(k, "--gateways"))
      g.gateways = atoi(v);
    else if (!strcmp(k, "--messages"))
      g.messages = atoi(v);
    else if (!strcmp(k, "--window"))
      g.window = atoi(v);
    else if (!strcmp(k, "--signed"))
      g.is_signed = !strcmp(v, "1");
    else if (!strcmp(k, "--certs"))
      g.certs = atoi(v);
    else if (!strcmp(k, "--rate"))
      g.rate = atof(v);
    else if (!strcmp(k, "--connecting"))
      g.connecting_max = atoi(v);
    else if (!strcmp(k, "--hold"))
      g.hold = !strcmp(v, "1");
  }
  if (!g.port || !g.dir || g.gateways < 1 || g.messages < 1 || g.window < 1 ||
      g.window > WINDOW_MAX || g.connecting_max < 1) {
    fprintf(stderr, "usage: rx_load --port P --pki DIR [--gateways N] [--messages M] "
                    "[--window W] [--prefix P] [--signed 0|1] [--hold 0|1] [--certs K] "
                    "[--connecting C] [--rate R]\n");
    return 2;
  }
  char err[512], ca[1024], crt[1024], key[1024];
  snprintf(ca, sizeof(ca), "%s/ca.crt", g.dir);
  snprintf(key, sizeof(key), "%s/gw.key", g.dir);
  if (g.is_signed && proto_signer_new(key, "key", &g.signer, err, sizeof(err)) != 0) {
    fprintf(stderr, "rx_load: %s\n", err);
    return 1;
  }
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  g.base_ms = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
  g.lat = calloc((size_t)g.gateways * (size_t)g.messages, sizeof(double));
  gw_t *gws = calloc((size_t)g.gateways, sizeof(*gws));
  uv_loop_t loop;
  uv_loop_init(&loop);
  g.loop = &loop;
  static const char *const names[3] = {"CA", "certificate", "key"};
  g.gws = gws;
  for (int i = 0; i < g.gateways; i++) {
    gw_t *c = &gws[i];
    snprintf(c->mn, sizeof(c->mn), "%s-%05d", g.prefix, g.certs > 0 ? i % g.certs : i);
    snprintf(crt, sizeof(crt), "%s/gateway-%s.crt", g.dir, c->mn);
    if (proto_tls_conf_new(false, ca, crt, key, names, &c->conf, err, sizeof(err)) != 0) {
      fprintf(stderr, "rx_load: %s\n", err);
      return 1;
    }
  }
  g.t_start = now_ms();
  for (int i = 0; i < g.connecting_max; i++)
    connect_next();
  if (g.rate > 0) {
    uv_timer_init(&loop, &g.tick);
    uv_timer_start(&g.tick, on_tick, 5, 5);
  }
  uv_run(&loop, UV_RUN_DEFAULT);
  qsort(g.lat, g.n_lat, sizeof(double), cmp);
  double secs = (g.t_last - g.t_first) / 1000.0;
  double p50 = g.n_lat ? g.lat[g.n_lat / 2] : 0, p99 = g.n_lat ? g.lat[g.n_lat * 99 / 100] : 0;
  double hs = (g.t_ready - g.t_start) / 1000.0;
  printf("rx_load: gateways=%d acked=%zu failed=%d msgs_s=%.0f p50_ms=%.1f p99_ms=%.1f "
         "handshakes_s=%.0f\n",
         g.gateways, g.n_lat, g.failed, secs > 0 ? (double)g.n_lat / secs : 0, p50, p99,
         hs > 0 ? g.ready / hs : 0);
  fflush(stdout);
  return g.failed ? 1 : 0;
}
