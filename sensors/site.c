/* The site mode of sitesim: every dust, noise, weather, energy and equipment
 * device of the site configuration becomes a simulated sensor with its own
 * CoAP session (its own source port), reporting SenML packs to POST /r on
 * its interval, over CoAPS with its PSK when it has one.
 *
 * A sensor behaves like the real ones in DESIGN.md: one CON in flight, a
 * backlog of packs it has made but not yet delivered, resend of the same
 * pack after a 5.03 (once Max-Age has passed) or a timeout, and a rejected
 * pack (4.xx) dropped with its diagnostic logged once.
 *
 * Simulated time: sim(e) = min(t0 + e * speed, wall0 + e) where e is the real
 * time since start. At speed 1, t0 = wall0. Faster, t0 lies in the past so
 * that simulated time reaches the real clock exactly when --duration runs
 * out (or after one simulated day without --duration, then runs live): the
 * gateway refuses packs more than 5 minutes ahead of its clock, so a pack is
 * never stamped later than now. */
#include "sensors/sensors_int.h"

#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LOG_MODULE "sitesim"

#define BACKLOG_MAX 2048        /* packs a sensor keeps while the gateway is away */
#define DRAIN_MS 3000           /* at stop, how long to wait for packs in flight */
#define DEFAULT_MAX_AGE_S 60    /* RFC 7252 5.10.5: Max-Age default */
#define CATCHUP_SPAN_S 86400.0  /* faster than real time without --duration */
#define REPORTS_PER_WAKEUP 2000 /* bounds the work of one timer callback */

typedef struct site site_t;

typedef struct pack {
  uint8_t *buf;
  size_t len;
} pack_t;

typedef struct dev {
  site_t *site;
  const sg_device_t *cfg;
  sim_model_t model;
  sim_sess_t *sess;
  uv_timer_t report; /* the next report on the simulated schedule */
  uv_timer_t retry;  /* backoff, or 0 ms to send the next pack */
  double next_t;     /* simulated time of the next report */
  pack_t q[BACKLOG_MAX];
  size_t head, count;
  bool inflight, waiting, head_sent, warned_full, warned_tls;
  uint64_t token;            /* of the pack in flight */
  unsigned fails;            /* consecutive failures, for the backoff */
  uint32_t warned4, warned5; /* reply codes 4.xx / 5.xx already logged */
  sim_unit_t *unit;          /* its controller (equipment.c); NULL: none */
} sensor_t;

struct site {
  uv_loop_t loop;
  const sim_opts_t *o;
  sg_config_t *cfg;
  sim_coap_t *coap;
  sensor_t *devs;
  size_t n;
  uv_signal_t sigint, sigterm;
  uv_timer_t end, drain;
  uint64_t hr0;
  double wall0, t0;
  bool stopping, finished, down;
  int cf;
  char where[160];      /* gateway URI, for messages */
  char where_dtls[160]; /* the same for devices with a psk */
  uint64_t next_token;
  uint64_t made, sent, acked, rejected, retried, dropped;
  sim_wb_t *wb;         /* the scales (weighbridge.c) */
  sim_ctl_t *ctl;       /* the equipment controllers (equipment.c) */
  sim_gate_t *gate;     /* the gate reader (gate.c) */
  proto_machine_t *reg; /* --machines: the register */
  size_t n_reg;
};

static proto_pack_t scratch, chunk; /* one thread: the packs being built */

/* ---- simulated time */

static double elapsed(const site_t *s) { return (double)(uv_hrtime() - s->hr0) / 1e9; }

static double sim_now(const site_t *s) {
  double e = elapsed(s), a = s->t0 + e * s->o->speed, b = s->wall0 + e;
  return a < b ? a : b;
}

static double site_clock(void *arg) { return sim_now(arg); }

/* Real seconds since start at which simulated time reaches T. */
static double real_at(const site_t *s, double T) {
  double speed = s->o->speed;
  if (speed > 1) {
    double e_switch = (s->wall0 - s->t0) / (speed - 1);
    if (T <= s->t0 + e_switch * speed)
      return (T - s->t0) / speed;
  }
  return T - s->wall0;
}

/* ---- the backlog */

static void q_drop_oldest(sensor_t *d) {
  size_t i = d->inflight ? (d->head + 1) % BACKLOG_MAX : d->head;
  free(d->q[i].buf);
  if (i == d->head) {
    d->head = (d->head + 1) % BACKLOG_MAX;
    d->head_sent = false;
  } else { /* close the gap behind the pack in flight */
    d->q[i] = d->q[d->head];
    d->head = i;
  }
  d->count--;
  d->site->dropped++;
  if (!d->warned_full) {
    d->warned_full = true;
    log_warn("%s: backlog full (%d packs), dropping the oldest", d->cfg->id, BACKLOG_MAX);
  }
}

static void q_push(sensor_t *d, const uint8_t *buf, size_t len) {
  uint8_t *copy = malloc(len);
  if (!copy) {
    d->site->dropped++;
    return;
  }
  memcpy(copy, buf, len);
  if (d->count == BACKLOG_MAX)
    q_drop_oldest(d);
  d->q[(d->head + d->count) % BACKLOG_MAX] = (pack_t){copy, len};
  d->count++;
  d->site->made++;
}

static void q_pop(sensor_t *d) {
  free(d->q[d->head].buf);
  d->q[d->head] = (pack_t){NULL, 0};
  d->head = (d->head + 1) % BACKLOG_MAX;
  d->count--;
  d->head_sent = false;
}

/* Encodes `p` into packs of at most SIM_PAYLOAD_MAX bytes: a noise meter's
 * minute of 1-s samples does not fit one datagram in JSON. */
static void enqueue(sensor_t *d, const proto_pack_t *p) {
  static uint8_t buf[SIM_PAYLOAD_MAX * 2];
  size_t i = 0;
  while (i < p->n) {
    size_t k = p->n - i;
    int len;
    for (;;) {
      memcpy(chunk.device, p->device, sizeof(chunk.device));
      memcpy(chunk.rec, &p->rec[i], k * sizeof(chunk.rec[0]));
      chunk.n = k;
      len = sim_encode(&chunk, d->site->o->cbor, buf, sizeof(buf));
      if ((len >= 0 && len <= SIM_PAYLOAD_MAX) || k == 1)
        break;
      size_t guess = len > 0 ? k * SIM_PAYLOAD_MAX * 9 / 10 / (size_t)len : k / 2;
      k = guess >= k ? k - 1 : guess > 0 ? guess : 1;
    }
    if (len < 0 || len > SIM_PAYLOAD_MAX) {
      log_err("%s: cannot encode a pack (%s)", d->cfg->id, strerror(len < 0 ? -len : EMSGSIZE));
      return;
    }
    q_push(d, buf, (size_t)len);
    i += k;
  }
}

/* ---- sending */

static void dev_on_retry(uv_timer_t *h);

static void dev_pump(sensor_t *d) {
  site_t *s = d->site;
  if (d->inflight || d->waiting || d->count == 0 || s->stopping)
    return;
  const pack_t *pk = &d->q[d->head];
  uint64_t token = ++s->next_token;
  int rc = sim_sess_post(d->sess, token, s->cf, pk->buf, pk->len);
  if (rc < 0) {
    log_err("%s: cannot send a pack: %s", d->cfg->id, strerror(-rc));
    d->waiting = true;
    uv_timer_start(&d->retry, dev_on_retry, SIM_RETRY_MAX_MS, 0);
    return;
  }
  if (d->head_sent)
    s->retried++;
  d->head_sent = true;
  d->inflight = true;
  d->token = token;
  s->sent++;
}

static void dev_on_retry(uv_timer_t *h) {
  sensor_t *d = h->data;
  d->waiting = false;
  dev_pump(d);
}

/* From libcoap's callbacks: send again from the loop, after `ms`. */
static void dev_later(sensor_t *d, uint64_t ms) {
  d->waiting = true;
  uv_timer_start(&d->retry, dev_on_retry, ms, 0);
}

static void site_finish(site_t *s);

static void settle(sensor_t *d) {
  site_t *s = d->site;
  d->inflight = false;
  if (!s->stopping)
    return;
  for (size_t i = 0; i < s->n; i++)
    if (s->devs[i].inflight)
      return;
  site_finish(s);
}

static const char *fail_text(sim_fail_t why) {
  switch (why) {
  case SIM_FAIL_TIMEOUT:
    return "no answer";
  case SIM_FAIL_RESET:
    return "reset";
  case SIM_FAIL_UNREACHABLE:
    return "unreachable";
  case SIM_FAIL_TLS:
    return "DTLS handshake failed";
  }
  return "?";
}

static void dev_on_fail(void *user, uint64_t token, sim_fail_t why) {
  sensor_t *d = user;
  site_t *s = d->site;
  if (!d->inflight || token != d->token)
    return;
  if (why == SIM_FAIL_TLS) { /* this device's key, most likely */
    if (!d->warned_tls)
      log_warn("%s: DTLS handshake with %s failed (is its psk the gateway's?); it keeps its "
               "packs and retries",
               d->cfg->id, s->where_dtls);
    d->warned_tls = true;
  } else if (!s->down) {
    s->down = true;
    log_warn("gateway %s: %s (%s); sensors keep their packs and retry", s->where, fail_text(why),
             d->cfg->id);
  } else {
    log_debug("%s: %s", d->cfg->id, fail_text(why));
  }
  dev_later(d, sim_backoff_ms(&d->fails));
  settle(d);
}

/* Once per device and code: "dust-01: 4.00 record 3: ..." */
static void warn_once(sensor_t *d, const sim_reply_t *r) {
  uint32_t *seen = r->code / 100 == 4 ? &d->warned4 : &d->warned5;
  uint32_t bit = 1u << (r->code % 100 & 31);
  if (*seen & bit)
    return;
  *seen |= bit;
  char text[201];
  size_t n = r->len < sizeof(text) - 1 ? r->len : sizeof(text) - 1;
  for (size_t i = 0; i < n; i++)
    text[i] = r->payload[i] >= 0x20 && r->payload[i] != 0x7f ? (char)r->payload[i] : '.';
  text[n] = '\0';
  log_warn("%s: gateway replied %d.%02d%s%s", d->cfg->id, r->code / 100, r->code % 100,
           n ? ": " : "", text);
}

static void dev_on_reply(void *user, uint64_t token, const sim_reply_t *r) {
  sensor_t *d = user;
  site_t *s = d->site;
  if (!d->inflight || token != d->token)
    return;
  if (r->code / 100 == 2) {
    s->acked++;
    q_pop(d);
    d->fails = 0;
    d->warned_tls = false;
    if (s->down) {
      s->down = false;
      log_info("gateway %s answers again", s->where);
    }
    if (d->count > 0)
      dev_later(d, 0);
  } else if (r->code == 503) {
    long age = r->max_age >= 0 ? r->max_age : DEFAULT_MAX_AGE_S;
    if (!(d->warned5 & (1u << 3)))
      log_info("%s: gateway busy (5.03), waiting %ld s before resending", d->cfg->id, age);
    d->warned5 |= 1u << 3;
    dev_later(d, (uint64_t)age * 1000);
  } else if (r->code / 100 == 4) {
    s->rejected++;
    warn_once(d, r);
    q_pop(d);
    if (d->count > 0)
      dev_later(d, 0);
  } else { /* 5.00 and other surprises: keep the pack, back off */
    warn_once(d, r);
    dev_later(d, sim_backoff_ms(&d->fails));
  }
  settle(d);
}

static void dev_on_link(void *user, bool up) {
  sensor_t *d = user;
  log_debug("%s: DTLS session %s", d->cfg->id, up ? "up" : "down");
}

/* ---- the reporting schedule */

static void dev_on_report(uv_timer_t *h) {
  sensor_t *d = h->data;
  site_t *s = d->site;
  double now = sim_now(s);
  for (int i = 0; i < REPORTS_PER_WAKEUP && d->next_t <= now; i++) {
    if (d->unit) /* what it draws follows its controller */
      sim_unit_report(d->unit, &d->model, d->cfg->id, d->next_t, &scratch);
    else
      sim_model_report(&d->model, d->cfg->id, d->next_t, &scratch);
    if (scratch.n > 0)
      enqueue(d, &scratch);
    d->next_t += d->cfg->interval_s;
  }
  dev_pump(d);
  double ms = ceil((real_at(s, d->next_t) - elapsed(s)) * 1000.0);
  uv_timer_start(&d->report, dev_on_report, ms > 0 ? (uint64_t)ms : 0, 0);
}

/* ---- start and stop */

static void on_closed(uv_handle_t *h) { (void)h; }

static void site_finish(site_t *s) {
  if (s->finished)
    return;
  s->finished = true;
  for (size_t i = 0; i < s->n; i++) {
    uv_close((uv_handle_t *)&s->devs[i].report, on_closed);
    uv_close((uv_handle_t *)&s->devs[i].retry, on_closed);
  }
  uv_close((uv_handle_t *)&s->sigint, on_closed);
  uv_close((uv_handle_t *)&s->sigterm, on_closed);
  uv_close((uv_handle_t *)&s->end, on_closed);
  uv_close((uv_handle_t *)&s->drain, on_closed);
  sim_wb_stop(s->wb);
  s->wb = NULL;
  sim_gate_stop(s->gate);
  s->gate = NULL;
  sim_ctl_stop(s->ctl);
  s->ctl = NULL;
  sim_coap_close(s->coap);
  s->coap = NULL;
}

static void on_drain_timeout(uv_timer_t *h) { site_finish(h->data); }

static void site_stop(site_t *s, const char *why) {
  if (s->stopping) {
    site_finish(s);
    return;
  }
  s->stopping = true;
  log_info("stopping: %s", why);
  bool inflight = false;
  for (size_t i = 0; i < s->n; i++) {
    uv_timer_stop(&s->devs[i].report);
    uv_timer_stop(&s->devs[i].retry);
    inflight |= s->devs[i].inflight;
  }
  uv_timer_stop(&s->end);
  if (!inflight)
    site_finish(s);
  else
    uv_timer_start(&s->drain, on_drain_timeout, DRAIN_MS, 0);
}

static void on_signal(uv_signal_t *h, int signum) {
  site_stop(h->data, signum == SIGINT ? "SIGINT" : "SIGTERM");
}

static void on_end(uv_timer_t *h) {
  site_t *s = h->data;
  site_stop(s, s->o->speed > 1 ? "simulated time has reached now" : "duration reached");
}

static bool simulated(sg_devtype_t t) { return t != SG_DEV_SCALE && t != SG_DEV_GATE; }

/* --machines: the register as CSV, as `sitectl machine import` takes it. */
static int load_machines(site_t *s, const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f) {
    log_err("--machines %s: %s", path, strerror(errno));
    return -errno;
  }
  char *text = NULL;
  size_t len = 0, cap = 0, got;
  int rc = 0;
  do {
    if (len + 4096 > cap) {
      char *p = realloc(text, cap = cap ? cap * 2 : 65536);
      if (!p) {
        rc = -ENOMEM;
        break;
      }
      text = p;
    }
    got = fread(text + len, 1, cap - len, f);
    len += got;
  } while (got > 0 && len < 8u << 20);
  fclose(f);
  char err[1024] = "";
  if (rc == 0)
    rc = proto_machine_csv_parse(text, len, &s->reg, &s->n_reg, err, sizeof(err));
  if (rc != 0)
    log_err("--machines %s: %s", path, err[0] ? err : strerror(-rc));
  free(text);
  return rc;
}

/* Whether `code` is one of --smoky's comma-separated codes. */
static bool smoky(const char *list, const char *code) {
  size_t n = strlen(code);
  for (const char *p = list; p && *p;) {
    const char *end = strchr(p, ',');
    size_t k = end ? (size_t)(end - p) : strlen(p);
    if (k == n && strncmp(p, code, n) == 0)
      return true;
    p = end ? end + 1 : NULL;
  }
  return false;
}

/* The register's machine whose terminal is `device`, or NULL. */
static const proto_machine_t *fitted_to(const site_t *s, const char *device) {
  for (size_t i = 0; i < s->n_reg; i++)
    if (strcmp(s->reg[i].terminal, device) == 0)
      return &s->reg[i];
  return NULL;
}

static int site_start(site_t *s) {
  char err[300], uri[200];
  sim_target_t base;
  const sim_opts_t *o = s->o;
  if (o->gateway)
    snprintf(uri, sizeof(uri), "%s", o->gateway);
  else
    snprintf(uri, sizeof(uri), "coap://127.0.0.1:%d", s->cfg->coap_port);
  if (sim_target_parse(uri, (uint16_t)s->cfg->coap_port, &base, err, sizeof(err)) != 0) {
    log_err("--gateway %s", err);
    return -EINVAL;
  }
  sim_target_str(&base, s->where, sizeof(s->where));
  static const sim_coap_cb_t cb = {dev_on_reply, dev_on_fail, dev_on_link, NULL};
  int rc = sim_coap_open(&s->loop, &cb, s, &s->coap);
  if (rc < 0)
    return rc;
  s->hr0 = uv_hrtime();
  s->wall0 = sg_now();
  s->t0 = s->wall0;
  if (o->speed > 1)
    s->t0 -= o->duration_s > 0  ? o->duration_s * (o->speed - 1)
             : o->history_s > 0 ? o->history_s
                                : CATCHUP_SPAN_S;
  if (o->machines && (rc = load_machines(s, o->machines)) != 0)
    return rc;
  if ((rc = sim_ctl_start(&s->loop, s->cfg, o->seed, o->ignore, site_clock, s, &s->ctl)) != 0)
    return rc;
  size_t sessions = 0, n_dust = 0, dust_seen = 0, noise_seen = 0;
  for (size_t i = 0; i < s->cfg->n_devices; i++)
    n_dust += s->cfg->devices[i].type == SG_DEV_DUST;
  for (size_t i = 0; i < s->cfg->n_devices; i++) {
    const sg_device_t *c = &s->cfg->devices[i];
    if (!simulated(c->type))
      continue; /* scales: weighbridge.c */
    sensor_t *d = &s->devs[s->n++];
    d->site = s;
    d->cfg = c;
    uv_timer_init(&s->loop, &d->report);
    uv_timer_init(&s->loop, &d->retry);
    d->report.data = d->retry.data = d;
    sim_target_t t;
    sim_target_for(&base, s->cfg, c, &t);
    if (t.secure)
      sim_target_str(&t, s->where_dtls, sizeof(s->where_dtls));
    d->sess = sim_sess_open(s->coap, &t, c->id, t.secure ? c->psk : NULL, d);
    if (!d->sess)
      return -EIO;
    sessions++;
    sim_model_init(&d->model, c, o->seed, s->t0);
    /* --history's story (sensors_int.h): the first dust station's episode
     * runs on into the present, the second's (or the first's too) lies
     * yesterday; the first noise meter has a loud night. */
    if (o->history_s > 0 && o->speed > 1) {
      unsigned story = 0;
      if (c->type == SG_DEV_DUST && dust_seen++ == 0)
        story = SIM_STORY_DUST_NOW | (n_dust == 1 ? SIM_STORY_DUST_PAST : 0);
      else if (c->type == SG_DEV_DUST && dust_seen == 2)
        story = SIM_STORY_DUST_PAST;
      else if (c->type == SG_DEV_NOISE && noise_seen++ == 0)
        story = SIM_STORY_NIGHT_NOISE;
      sim_model_story(&d->model, story, s->wall0);
    }
    if (c->type == SG_DEV_MACHINE) {
      const proto_machine_t *m = fitted_to(s, c->id);
      sim_model_machine(&d->model, m, m && smoky(o->smoky, m->code));
    }
    if ((d->unit = sim_ctl_unit(s->ctl, c->id)) != NULL)
      sim_unit_bind(d->unit, &d->model);
    /* Each sensor keeps its own phase within the interval, as real ones do. */
    double iv = c->interval_s;
    double phase = (double)(d->model.key % (uint64_t)(c->interval_s * 1000)) / 1000.0;
    d->next_t = floor((s->t0 - phase) / iv) * iv + phase + iv;
    double ms = ceil((real_at(s, d->next_t) - elapsed(s)) * 1000.0);
    uv_timer_start(&d->report, dev_on_report, ms > 0 ? (uint64_t)ms : 0, 0);
  }
  s->wb = sim_wb_start(&s->loop, s->cfg, &base, o);
  s->gate = sim_gate_start(&s->loop, s->cfg, &base, o, s->reg, s->n_reg);
  if (sessions == 0 && !s->wb && !s->gate) {
    log_err("%s: no dust, noise, weather, energy or equipment device to simulate", s->cfg->path);
    return -EINVAL;
  }
  uv_signal_start(&s->sigint, on_signal, SIGINT);
  uv_signal_start(&s->sigterm, on_signal, SIGTERM);
  if (o->duration_s > 0)
    uv_timer_start(&s->end, on_end, (uint64_t)llround(o->duration_s * 1000.0), 0);
  log_info("%zu simulated devices reporting to %s, %s, speed %g%s", sessions, s->where,
           o->cbor ? "senml+cbor" : "senml+json", o->speed,
           o->speed > 1 ? " (simulated time starts in the past)" : "");
  return 0;
}

int sim_site_run(const sim_opts_t *o) {
  char err[512];
  site_t *s = calloc(1, sizeof(*s));
  if (!s)
    return 1;
  s->o = o;
  s->cf = o->cbor ? SIM_CF_SENML_CBOR : SIM_CF_SENML_JSON;
  if (sg_config_load(o->config, &s->cfg, err, sizeof(err)) != 0) {
    fprintf(stderr, "%s\n", err);
    free(s);
    return 1;
  }
  /* Work hours and day/night are the site's. */
  setenv("TZ", s->cfg->timezone, 1);
  tzset();
  s->devs = calloc(s->cfg->n_devices ? s->cfg->n_devices : 1, sizeof(*s->devs));
  uv_loop_init(&s->loop);
  uv_signal_init(&s->loop, &s->sigint);
  uv_signal_init(&s->loop, &s->sigterm);
  uv_timer_init(&s->loop, &s->end);
  uv_timer_init(&s->loop, &s->drain);
  s->sigint.data = s->sigterm.data = s->end.data = s->drain.data = s;
  int rc = s->devs ? site_start(s) : -ENOMEM;
  if (rc < 0) {
    s->stopping = true;
    site_finish(s);
  }
  uv_run(&s->loop, UV_RUN_DEFAULT);
  int lc = uv_loop_close(&s->loop);
  if (lc != 0)
    log_err("loop closed with handles open: %s", uv_strerror(lc));
  size_t backlog = 0;
  for (size_t i = 0; i < s->n; i++) {
    sensor_t *d = &s->devs[i];
    backlog += d->count;
    while (d->count > 0)
      q_pop(d);
  }
  if (rc == 0)
    printf("sitesim: packs sent=%llu acked=%llu rejected=%llu retried=%llu "
           "(made=%llu backlog=%zu dropped=%llu)\n",
           (unsigned long long)s->sent, (unsigned long long)s->acked,
           (unsigned long long)s->rejected, (unsigned long long)s->retried,
           (unsigned long long)s->made, backlog, (unsigned long long)s->dropped);
  free(s->devs);
  free(s->reg);
  sg_config_free(s->cfg);
  free(s);
  return rc == 0 && lc == 0 ? 0 : 1;
}
