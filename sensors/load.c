/* `sitesim load`: a CoAP load generator for benchmarks of the gateway.
 *
 * N virtual dust devices post SenML packs of R records as CON requests to
 * POST /r, W requests outstanding in total over P client sessions (P source
 * ports), until M requests or S seconds. Latency is measured per request,
 * from coap_send to the response, on the monotonic clock, into a bounded
 * log-linear histogram (1.6% resolution).
 *
 * The window: libcoap 4.3.1 sends at most NSTART CON requests per session
 * (RFC 7252 4.8, default 1) and holds further ones in the session's
 * delayqueue, sending one each time a response frees a place. A window of W
 * over P sessions therefore sets NSTART = ceil(W/P) on every session and
 * hands out requests only to sessions with a free place (a FIFO of free
 * places, so with P > W requests rotate over all P ports): nothing waits in
 * libcoap's queue and exactly W requests are on the wire.
 *
 * Plain CoAP goes through rawcoap.c rather than libcoap: the generator
 * shares the cores with the gateway it measures, and through libcoap it
 * spent more CPU per request than the gateway's CoAP layer does. DTLS
 * (--psk) goes through libcoap (coapio.c). Nothing here allocates per
 * request. */
#include "sensors/sensors_int.h"

#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#define LOG_MODULE "sitesim"

#define DRAIN_MS 2000      /* after the last request, wait this long for answers */
#define HANDSHAKE_MS 10000 /* DTLS: start when no more sessions came up for this long */
#define HIST_SUB 64        /* histogram buckets per power of two */
#define HIST_N (HIST_SUB * 2 + HIST_SUB * 40)

typedef struct load load_t;

typedef struct lsess {
  load_t *l;
  sim_sess_t *s;
  uint32_t dev; /* with --psk, the device this session is (its identity) */
  bool up;
} lsess_t;

typedef struct lslot {
  uint64_t t0; /* uv_hrtime() at send; 0 when free */
  uint32_t seq, sess;
} lslot_t;

struct load {
  uv_loop_t loop;
  const sim_load_opts_t *o;
  sim_coap_t *coap; /* DTLS */
  sim_raw_t *raw;   /* plain CoAP */
  sim_target_t target;
  char where[160];
  int cf;
  lsess_t *sess;
  uint32_t nsess, per_sess, n_up;
  uint32_t hs_seen;     /* DTLS: sessions up at the last look, and since when */
  uint64_t hs_since_ms; /* (uv_now) */
  uint32_t *freeq;      /* FIFO of sessions with a free place, one entry each */
  size_t fq_head, fq_count, fq_cap;
  lslot_t *slots;
  uint32_t *free_slots, n_free;
  char (*names)[PROTO_DEVICE_MAX + 1];
  uint32_t *dev_ctr, next_dev;
  int64_t base_ms, step_ms;
  uint64_t sent, done, ok, errors, timeouts, outstanding;
  uint64_t t_start, t_stop;
  double max_lag_s;
  uint32_t seq;
  uint32_t warned4, warned5;
  bool started, stopping, finished, failed;
  uv_timer_t tick, end, drain, handshake;
  uv_signal_t sigint, sigterm;
  uint64_t hist[HIST_N];
  uint64_t max_us, sum_us;
};

static proto_pack_t lpack;
static uint8_t lbuf[SIM_PAYLOAD_MAX * 8];

/* ---- latency histogram: exact below HIST_SUB*2 us, then HIST_SUB buckets
 * per power of two */

static unsigned hist_index(uint64_t us) {
  if (us < 2 * HIST_SUB)
    return (unsigned)us;
  unsigned e = 63u - (unsigned)__builtin_clzll(us); /* >= 7 */
  unsigned idx = 2 * HIST_SUB + (e - 7) * HIST_SUB + (unsigned)((us >> (e - 6)) & (HIST_SUB - 1));
  return idx < HIST_N ? idx : HIST_N - 1;
}

static double hist_value(unsigned idx) { /* the middle of the bucket, us */
  if (idx < 2 * HIST_SUB)
    return idx;
  unsigned e = (idx - 2 * HIST_SUB) / HIST_SUB + 7, sub = (idx - 2 * HIST_SUB) % HIST_SUB;
  double lo = ldexp(1.0, (int)e) + sub * ldexp(1.0, (int)e - 6);
  return lo + ldexp(1.0, (int)e - 7);
}

static double hist_quantile(const load_t *l, double q, uint64_t n) {
  if (n == 0)
    return 0;
  uint64_t want = (uint64_t)ceil(q * (double)n), seen = 0;
  for (unsigned i = 0; i < HIST_N; i++) {
    seen += l->hist[i];
    if (seen >= want && l->hist[i]) {
      double v = hist_value(i);
      return v > (double)l->max_us ? (double)l->max_us : v;
    }
  }
  return (double)l->max_us;
}

/* ---- free places and slots */

static void fq_push(load_t *l, uint32_t s) {
  l->freeq[(l->fq_head + l->fq_count) % l->fq_cap] = s;
  l->fq_count++;
}

static uint32_t fq_pop(load_t *l) {
  uint32_t s = l->freeq[l->fq_head];
  l->fq_head = (l->fq_head + 1) % l->fq_cap;
  l->fq_count--;
  return s;
}

static void load_finish(load_t *l);

static void complete(load_t *l, uint32_t slot) {
  lslot_t *sl = &l->slots[slot];
  fq_push(l, sl->sess);
  sl->t0 = 0;
  l->free_slots[l->n_free++] = slot;
  l->outstanding--;
  l->done++;
  l->t_stop = uv_hrtime();
  if (l->o->requests && l->sent >= l->o->requests && l->outstanding == 0)
    l->stopping = true;
  if (l->stopping && l->outstanding == 0)
    load_finish(l);
}

static lslot_t *slot_of(load_t *l, uint64_t token, uint32_t *slot) {
  *slot = (uint32_t)(token >> 32);
  if (*slot >= l->o->window)
    return NULL;
  lslot_t *sl = &l->slots[*slot];
  return sl->t0 && sl->seq == (uint32_t)token ? sl : NULL;
}

/* ---- sending */

static void build_pack(load_t *l, uint32_t dev) {
  const sim_load_opts_t *o = l->o;
  memcpy(lpack.device, l->names[dev], sizeof(lpack.device));
  lpack.n = o->records;
  int64_t t = l->base_ms + (int64_t)l->dev_ctr[dev] * o->records * l->step_ms;
  for (unsigned j = 0; j < o->records; j++, t += l->step_ms) {
    lpack.rec[j].quantity = PROTO_Q_PM10;
    lpack.rec[j].t_ms = t;
    lpack.rec[j].value = 30.0 + (double)((l->dev_ctr[dev] * 7 + j) % 120);
  }
  l->dev_ctr[dev]++;
}

static uint64_t allowed(const load_t *l, uint64_t now) {
  return (uint64_t)floor(l->o->rate * (double)(now - l->t_start) / 1e9) + 1;
}

static void pump(load_t *l) {
  const sim_load_opts_t *o = l->o;
  if (!l->started || l->stopping)
    return;
  uint64_t now = uv_hrtime(), may = o->rate > 0 ? allowed(l, now) : UINT64_MAX;
  if (o->requests && may > o->requests)
    may = o->requests;
  while (l->sent < may && l->n_free > 0 && l->fq_count > 0) {
    uint32_t si = fq_pop(l), slot = l->free_slots[--l->n_free];
    uint32_t dev = o->psk ? l->sess[si].dev : l->next_dev++ % o->devices;
    build_pack(l, dev);
    int len = sim_encode(&lpack, o->cbor, lbuf, sizeof(lbuf));
    uint64_t token = (uint64_t)slot << 32 | ++l->seq;
    lslot_t *sl = &l->slots[slot];
    sl->t0 = uv_hrtime();
    sl->seq = l->seq;
    sl->sess = si;
    int rc = len < 0  ? len
             : l->raw ? sim_raw_post(l->raw, si, token, "r", l->cf, lbuf, (size_t)len)
                      : sim_sess_post(l->sess[si].s, token, l->cf, lbuf, (size_t)len);
    if (rc < 0) {
      log_err("load: cannot send to %s (%s): is the gateway running?", l->where, strerror(-rc));
      l->failed = true;
      sl->t0 = 0;
      l->free_slots[l->n_free++] = slot;
      fq_push(l, si);
      l->stopping = true;
      if (l->outstanding == 0)
        load_finish(l);
      return;
    }
    l->outstanding++;
    l->sent++;
  }
  if (o->rate > 0 && may > l->sent) {
    double lag = (double)(may - l->sent) / o->rate;
    if (lag > l->max_lag_s)
      l->max_lag_s = lag;
  }
  if (o->requests && l->sent >= o->requests && l->outstanding == 0) {
    l->stopping = true;
    load_finish(l);
  }
}

static void after_io(void *arg) { pump(arg); }

static void on_tick(uv_timer_t *h) { pump(h->data); }

/* ---- replies */

static void warn_code(load_t *l, const sim_reply_t *r) {
  uint32_t *seen = r->code / 100 == 4 ? &l->warned4 : &l->warned5;
  uint32_t bit = 1u << (r->code % 100 & 31);
  if (*seen & bit)
    return;
  *seen |= bit;
  log_warn("load: gateway replied %d.%02d: %.*s", r->code / 100, r->code % 100,
           (int)(r->len < 200 ? r->len : 200), r->payload ? (const char *)r->payload : "");
}

static void load_on_reply(void *user, uint64_t token, const sim_reply_t *r) {
  load_t *l = ((lsess_t *)user)->l;
  uint32_t slot;
  lslot_t *sl = slot_of(l, token, &slot);
  if (!sl)
    return;
  uint64_t us = (uv_hrtime() - sl->t0) / 1000;
  l->hist[hist_index(us)]++;
  l->sum_us += us;
  if (us > l->max_us)
    l->max_us = us;
  if (r->code / 100 == 2) {
    l->ok++;
  } else {
    l->errors++;
    warn_code(l, r);
  }
  complete(l, slot);
}

static void load_on_fail(void *user, uint64_t token, sim_fail_t why) {
  load_t *l = ((lsess_t *)user)->l;
  uint32_t slot;
  if (!slot_of(l, token, &slot))
    return;
  if (why == SIM_FAIL_TIMEOUT || why == SIM_FAIL_UNREACHABLE)
    l->timeouts++;
  else
    l->errors++;
  complete(l, slot);
}

static void on_link(void *user, bool up) {
  lsess_t *ls = user;
  load_t *l = ls->l;
  if (up && !ls->up)
    l->n_up++;
  else if (!up && ls->up)
    l->n_up--;
  ls->up = up;
}

/* ---- start and stop */

static void on_closed(uv_handle_t *h) { (void)h; }

static void load_finish(load_t *l) {
  if (l->finished)
    return;
  l->finished = true;
  l->stopping = true;
  if (!l->t_stop)
    l->t_stop = uv_hrtime();
  uv_close((uv_handle_t *)&l->tick, on_closed);
  uv_close((uv_handle_t *)&l->end, on_closed);
  uv_close((uv_handle_t *)&l->drain, on_closed);
  uv_close((uv_handle_t *)&l->handshake, on_closed);
  uv_close((uv_handle_t *)&l->sigint, on_closed);
  uv_close((uv_handle_t *)&l->sigterm, on_closed);
  sim_coap_close(l->coap);
  l->coap = NULL;
  sim_raw_close(l->raw);
  l->raw = NULL;
}

static void on_drain(uv_timer_t *h) {
  load_t *l = h->data;
  l->timeouts += l->outstanding; /* never answered: count them as timeouts */
  l->outstanding = 0;
  load_finish(l);
}

static void load_stop(load_t *l) {
  if (l->stopping && !l->finished) {
    if (uv_is_active((uv_handle_t *)&l->drain)) {
      on_drain(&l->drain); /* a second signal: stop waiting */
      return;
    }
  }
  l->stopping = true;
  uv_timer_stop(&l->tick);
  uv_timer_stop(&l->end);
  if (l->outstanding == 0)
    load_finish(l);
  else
    uv_timer_start(&l->drain, on_drain, DRAIN_MS, 0);
}

static void on_end(uv_timer_t *h) { load_stop(h->data); }

static void on_signal(uv_signal_t *h, int signum) {
  (void)signum;
  load_stop(h->data);
}

static void load_go(load_t *l) {
  uv_timer_stop(&l->handshake);
  l->started = true;
  l->t_start = uv_hrtime();
  if (l->o->duration_s > 0)
    uv_timer_start(&l->end, on_end, (uint64_t)llround(l->o->duration_s * 1000.0), 0);
  if (l->o->rate > 0)
    uv_timer_start(&l->tick, on_tick, 1, 1);
  pump(l);
}

/* DTLS: requests start once every session has finished its handshake, so
 * handshakes do not count as request latency; or once none has come up for
 * HANDSHAKE_MS (a slow gateway, a sanitizer build, takes its time with a
 * thousand handshakes at once: progress, not a fixed time, is waited for). */
static void on_handshake_tick(uv_timer_t *h) {
  load_t *l = h->data;
  uint64_t now = uv_now(&l->loop);
  if (l->n_up != l->hs_seen) {
    l->hs_seen = l->n_up;
    l->hs_since_ms = now;
  }
  if (l->n_up == l->nsess || now >= (uint64_t)HANDSHAKE_MS + l->hs_since_ms) {
    if (l->n_up == 0) {
      log_err("load: no DTLS session to %s came up in %d ms (is --psk the devices' key?)", l->where,
              HANDSHAKE_MS);
      l->failed = true;
      load_finish(l);
      return;
    }
    if (l->n_up < l->nsess)
      log_warn("load: %u of %u DTLS sessions up, none more in %d ms; starting anyway", l->n_up,
               l->nsess, HANDSHAKE_MS);
    load_go(l);
  }
}

/* Timestamps: each device's records follow one another from a day ago, at
 * a step that keeps the expected number of them within that day, so that no
 * record repeats another and none lies in the future. With whole-second
 * steps every time of a run has the same millisecond part, drawn at start,
 * so that runs one after the other against the same gateway (benchmarks)
 * almost never repeat each other's readings either. */
static void plan_times(load_t *l) {
  const sim_load_opts_t *o = l->o;
  double reqs = (double)o->requests;
  if (reqs == 0)
    reqs = (o->rate > 0 ? o->rate : 200000.0) * (o->duration_s > 0 ? o->duration_s : 3600.0);
  double per_dev = ceil(reqs / o->devices) * o->records;
  double step = floor(86400000.0 / (per_dev > 1 ? per_dev : 1));
  l->step_ms = step < 1 ? 1 : step > 1000 ? 1000 : (int64_t)step;
  l->base_ms = ((int64_t)sg_now() - 86400) * 1000 + (int64_t)(uv_hrtime() % 999) + 1;
}

static void raise_fd_limit(uint32_t need) {
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur >= need + 64)
    return;
  rl.rlim_cur = rl.rlim_max < need + 64 ? rl.rlim_max : need + 64;
  if (setrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur < need + 16)
    log_warn("load: %u sessions need more file descriptors than the limit (%llu)", need,
             (unsigned long long)rl.rlim_cur);
}

static int load_start(load_t *l) {
  const sim_load_opts_t *o = l->o;
  char err[300];
  if (sim_target_parse(o->gateway, o->psk ? 5684 : 5683, &l->target, err, sizeof(err)) != 0) {
    log_err("--gateway %s", err);
    return -EINVAL;
  }
  if (o->psk && !l->target.secure) {
    log_err("--psk needs a coaps:// gateway");
    return -EINVAL;
  }
  sim_target_str(&l->target, l->where, sizeof(l->where));
  /* Over DTLS the identity is the device: one session per device. */
  l->nsess = o->psk ? o->devices : o->ports;
  if (o->psk && o->ports != o->devices)
    log_info("load: --psk: one DTLS session per device, %u sessions", l->nsess);
  l->per_sess = (o->window + l->nsess - 1) / l->nsess;
  l->fq_cap = (size_t)l->nsess * l->per_sess;
  l->sess = calloc(l->nsess, sizeof(*l->sess));
  l->freeq = calloc(l->fq_cap, sizeof(*l->freeq));
  l->slots = calloc(o->window, sizeof(*l->slots));
  l->free_slots = calloc(o->window, sizeof(*l->free_slots));
  l->names = calloc(o->devices, sizeof(*l->names));
  l->dev_ctr = calloc(o->devices, sizeof(*l->dev_ctr));
  if (!l->sess || !l->freeq || !l->slots || !l->free_slots || !l->names || !l->dev_ctr)
    return -ENOMEM;
  for (uint32_t i = 0; i < o->devices; i++)
    snprintf(l->names[i], sizeof(l->names[i]), "%s%u", o->prefix, i);
  for (uint32_t i = 0; i < o->window; i++)
    l->free_slots[l->n_free++] = o->window - 1 - i;
  for (uint32_t k = 0; k < l->per_sess; k++)
    for (uint32_t i = 0; i < l->nsess; i++)
      fq_push(l, i);
  plan_times(l);
  raise_fd_limit(l->nsess);
  static const sim_coap_cb_t cb = {load_on_reply, load_on_fail, on_link, after_io};
  int rcvbuf = l->per_sess > 32 ? (int)(l->per_sess * 2048 + 65536) : 0;
  for (uint32_t i = 0; i < l->nsess; i++) {
    l->sess[i].l = l;
    l->sess[i].dev = i % o->devices;
  }
  if (!o->psk) {
    void **users = calloc(l->nsess, sizeof(*users));
    if (!users)
      return -ENOMEM;
    for (uint32_t i = 0; i < l->nsess; i++)
      users[i] = &l->sess[i];
    int rc = sim_raw_open(&l->loop, &l->target, l->nsess, o->window, o->ack_timeout_ms, rcvbuf, &cb,
                          l, users, &l->raw);
    free(users);
    if (rc < 0)
      return rc;
    l->n_up = l->nsess;
  } else {
    int rc = sim_coap_open(&l->loop, &cb, l, &l->coap);
    if (rc < 0)
      return rc;
    sim_coap_fast_prng(uv_hrtime());
  }
  for (uint32_t i = 0; i < l->nsess && l->coap; i++) {
    lsess_t *ls = &l->sess[i];
    ls->s = sim_sess_open(l->coap, &l->target, l->names[ls->dev], o->psk, ls);
    if (!ls->s)
      return -EIO;
    ls->up = sim_sess_ready(ls->s);
    l->n_up += ls->up;
    sim_sess_tune(ls->s, l->per_sess, o->ack_timeout_ms, 0);
    if (rcvbuf && sim_sess_rcvbuf(ls->s, rcvbuf) < 0)
      log_warn("load: cannot size the receive buffer of session %u; a window of %u per "
               "session may overflow it",
               i, l->per_sess);
  }
  uv_signal_start(&l->sigint, on_signal, SIGINT);
  uv_signal_start(&l->sigterm, on_signal, SIGTERM);
  log_info("load: %u devices, %u records per pack, window %u over %u sessions (%u each) to %s%s",
           o->devices, o->records, o->window, l->nsess, l->per_sess, l->where,
           o->rate > 0 ? ", paced" : "");
  if (l->n_up == l->nsess) {
    load_go(l);
  } else {
    l->t_start = l->hs_since_ms = uv_now(&l->loop);
    l->hs_seen = l->n_up;
    uv_timer_start(&l->handshake, on_handshake_tick, 10, 10);
  }
  return 0;
}

static void report(const load_t *l) {
  const sim_load_opts_t *o = l->o;
  double secs = l->t_stop > l->t_start ? (double)(l->t_stop - l->t_start) / 1e9 : 0;
  uint64_t n = 0;
  for (unsigned i = 0; i < HIST_N; i++)
    n += l->hist[i];
  double req_s = secs > 0 ? (double)l->done / secs : 0;
  double rec_s = secs > 0 ? (double)l->ok * o->records / secs : 0;
  double p50 = hist_quantile(l, 0.50, n) / 1000.0, p99 = hist_quantile(l, 0.99, n) / 1000.0;
  double max = (double)l->max_us / 1000.0;
  printf("load: %llu requests in %.3f s to %s: %.0f requests/s, %.0f records/s\n",
         (unsigned long long)l->done, secs, l->where, req_s, rec_s);
  printf("load: latency p50 %.3f ms, p99 %.3f ms, max %.3f ms, mean %.3f ms (%llu answered)\n", p50,
         p99, max, n ? (double)l->sum_us / (double)n / 1000.0 : 0, (unsigned long long)n);
  printf("load: %llu ok, %llu other replies, %llu timeouts", (unsigned long long)l->ok,
         (unsigned long long)l->errors, (unsigned long long)l->timeouts);
  if (o->rate > 0)
    printf(", schedule lag up to %.1f ms", l->max_lag_s * 1000.0);
  printf("\nload: req_s=%.0f records_s=%.0f p50_ms=%.3f p99_ms=%.3f max_ms=%.3f ok=%llu "
         "errors=%llu timeouts=%llu\n",
         req_s, rec_s, p50, p99, max, (unsigned long long)l->ok, (unsigned long long)l->errors,
         (unsigned long long)l->timeouts);
  fflush(stdout);
}

int sim_load_run(const sim_load_opts_t *o) {
  load_t *l = calloc(1, sizeof(*l));
  if (!l)
    return 1;
  l->o = o;
  l->cf = o->cbor ? SIM_CF_SENML_CBOR : SIM_CF_SENML_JSON;
  uv_loop_init(&l->loop);
  uv_timer_init(&l->loop, &l->tick);
  uv_timer_init(&l->loop, &l->end);
  uv_timer_init(&l->loop, &l->drain);
  uv_timer_init(&l->loop, &l->handshake);
  uv_signal_init(&l->loop, &l->sigint);
  uv_signal_init(&l->loop, &l->sigterm);
  l->tick.data = l->end.data = l->drain.data = l->handshake.data = l;
  l->sigint.data = l->sigterm.data = l;
  int rc = load_start(l);
  if (rc < 0)
    load_finish(l);
  uv_run(&l->loop, UV_RUN_DEFAULT);
  int lc = uv_loop_close(&l->loop);
  if (lc != 0)
    log_err("loop closed with handles open: %s", uv_strerror(lc));
  if (rc == 0 && l->started)
    report(l);
  if (rc == 0 && l->started && l->ok == 0) {
    log_err("load: %s acknowledged none of the requests", l->where);
    l->failed = true;
  }
  free(l->sess);
  free(l->freeq);
  free(l->slots);
  free(l->free_slots);
  free(l->names);
  free(l->dev_ctr);
  bool failed = l->failed;
  free(l);
  return rc == 0 && lc == 0 && !failed ? 0 : 1;
}
