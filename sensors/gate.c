/* sitesim's gate readers: every [device ID] of type gate posts the
 * machinery's entries and exits to POST /g (protocol/COAP.md), as a
 * number-plate or label reader at the site gate does.
 *
 * Which machines pass is the register given with --machines. A machine
 * with a terminal lives on site: it came in through the gate a few days
 * ago (one entry, resent at every start and recognised by the gateway:
 * 2.04, the same event) and stays, working by day. A machine without a
 * terminal (a truck crane, say) visits: it comes in each morning and
 * leaves each afternoon. What a day holds is a pure function of (seed,
 * gate, machine, day), and an event's number is (day, machine, direction),
 * so a second run sends the same events under the same numbers. Events up
 * to now go at once (the reader's memory), later ones when they are due.
 * Only the first gate reads; a second would see the same machines twice. */
#include "sensors/sensors_int.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define LOG_MODULE "sitesim"

#define VISIT_DAYS 2 /* days of visits behind the reader at start */

typedef struct gate_ev {
  proto_gate_event_t e;
} gate_ev_t;

struct sim_gate {
  uv_loop_t *loop;
  const sim_opts_t *o;
  const sg_device_t *dev;
  const proto_machine_t *m; /* the register, the caller's */
  size_t n_m;
  uint64_t key;
  sim_coap_t *coap;
  sim_sess_t *sess;
  sim_sender_t tx;
  gate_ev_t *q; /* q[head, n), by time */
  size_t head, n, cap;
  double planned_until; /* local midnight after the last planned day */
  bool stopping;
  uint64_t next_token;
  uint32_t warned;
  uint64_t sent, created, same, rejected;
};

static double local_midnight(double t) {
  time_t tt = (time_t)t;
  struct tm tm;
  localtime_r(&tt, &tm);
  tm.tm_hour = tm.tm_min = tm.tm_sec = 0;
  tm.tm_isdst = -1;
  return (double)mktime(&tm);
}

static double u01(const sim_gate_t *g, size_t machine, double day, int ch) {
  uint64_t h = sim_hash(sim_hash(g->key, machine * 16 + (uint64_t)ch), (uint64_t)(int64_t)day);
  return (double)(h >> 11) * 0x1.0p-53;
}

static int q_add(sim_gate_t *g, const proto_gate_event_t *e) {
  if (g->n == g->cap) {
    size_t cap = g->cap ? g->cap * 2 : 64;
    gate_ev_t *q = realloc(g->q, cap * sizeof(*q));
    if (!q)
      return -ENOMEM;
    g->q = q;
    g->cap = cap;
  }
  size_t at = g->n; /* keep time order */
  while (at > g->head && g->q[at - 1].e.t > e->t)
    at--;
  memmove(g->q + at + 1, g->q + at, (g->n - at) * sizeof(*g->q));
  g->q[at].e = *e;
  g->n++;
  return 0;
}

static void event(sim_gate_t *g, size_t i, double day, bool in, double t) {
  proto_gate_event_t e = {.t = (int64_t)t, .in = in};
  snprintf(e.gate, sizeof(e.gate), "%s", g->dev->id);
  snprintf(e.code, sizeof(e.code), "%s", g->m[i].code);
  /* (day, machine, direction): the same event has the same number */
  e.no = (int64_t)floor(day / 86400.0) * 10000 + (int64_t)i * 2 + (in ? 0 : 1);
  q_add(g, &e);
}

/* The events of local day `day` (its midnight). A resident machine's one
 * entry is on the day it came, 1 to 3 days before the first planned day. */
static void plan_day(sim_gate_t *g, double day, double first_day) {
  for (size_t i = 0; i < g->n_m; i++) {
    const proto_machine_t *m = &g->m[i];
    if (m->terminal[0]) {
      if (day == first_day) {
        double came = local_midnight(day - (1 + floor(3 * u01(g, i, 0, 0))) * 86400.0 + 43200.0);
        event(g, i, came, true, came + 6.5 * 3600 + 3600 * u01(g, i, came, 1));
      }
      continue;
    }
    event(g, i, day, true, day + 7.5 * 3600 + 3600 * u01(g, i, day, 2));
    event(g, i, day, false, day + 16 * 3600 + 3600 * u01(g, i, day, 3));
  }
}

static void plan_until(sim_gate_t *g, double until, double first_day) {
  while (g->planned_until <= until) {
    plan_day(g, g->planned_until, first_day);
    g->planned_until = local_midnight(g->planned_until + 36 * 3600.0);
  }
}

static void schedule(sim_gate_t *g, uint64_t ms) { sim_sender_later(&g->tx, ms); }

static void pump(void *owner) {
  sim_gate_t *g = owner;
  if (g->tx.inflight || g->stopping)
    return;
  double now = sg_now();
  plan_until(g, now, -1);
  if (g->head == g->n) {
    schedule(g, (uint64_t)((g->planned_until - now) * 1000.0) + 1000);
    return;
  }
  const proto_gate_event_t *e = &g->q[g->head].e;
  if ((double)e->t > now) {
    schedule(g, (uint64_t)(((double)e->t - now) * 1000.0) + 1);
    return;
  }
  uint8_t buf[512];
  int len = g->o->cbor ? proto_gate_encode_cbor(e, buf, sizeof(buf))
                       : proto_gate_encode_json(e, (char *)buf, sizeof(buf));
  int rc = len > 0 ? sim_sender_post(&g->tx, g->sess, ++g->next_token, "g", g->o->cbor ? 60 : 50,
                                     buf, (size_t)len)
                   : -EMSGSIZE;
  if (rc < 0) {
    log_err("%s: cannot send an event of %s: %s", g->dev->id, e->code, strerror(-rc));
    g->head++;
    schedule(g, 0);
    return;
  }
  g->sent++;
}

static void gate_on_reply(void *user, uint64_t token, const sim_reply_t *r) {
  sim_gate_t *g = user;
  if (!sim_sender_answered(&g->tx, token))
    return;
  if (r->code / 100 == 2 || r->code / 100 == 4) {
    g->tx.fails = 0;
    g->created += r->code == 201;
    g->same += r->code == 204;
    uint32_t bit = 1u << ((r->code / 100 * 7 + r->code % 100) & 31);
    if (r->code / 100 == 4 && !(g->warned & bit)) {
      g->warned |= bit;
      log_warn("%s: the gateway refused an event of %s: %d.%02d %.*s", g->dev->id,
               g->q[g->head].e.code, r->code / 100, r->code % 100,
               (int)(r->len < 160 ? r->len : 160), (const char *)r->payload);
    }
    g->rejected += r->code / 100 == 4;
    g->head++;
    schedule(g, 0);
    return;
  }
  long age = r->max_age >= 0 ? r->max_age : 60; /* 5.03: keep it, wait */
  schedule(g, (uint64_t)age * 1000);
}

static void gate_on_fail(void *user, uint64_t token, sim_fail_t why) {
  (void)why;
  sim_sender_failed(&((sim_gate_t *)user)->tx, token);
}

sim_gate_t *sim_gate_start(uv_loop_t *loop, const sg_config_t *cfg, const sim_target_t *base,
                           const sim_opts_t *o, const proto_machine_t *m, size_t n_m) {
  const sg_device_t *dev = NULL;
  for (size_t i = 0; i < cfg->n_devices && !dev; i++)
    if (cfg->devices[i].type == SG_DEV_GATE)
      dev = &cfg->devices[i];
  if (!dev || n_m == 0)
    return NULL;
  sim_gate_t *g = calloc(1, sizeof(*g));
  if (!g)
    return NULL;
  g->loop = loop;
  g->o = o;
  g->dev = dev;
  g->m = m;
  g->n_m = n_m;
  g->key = sim_key(o->seed, dev->id);
  static const sim_coap_cb_t cb = {gate_on_reply, gate_on_fail, NULL, NULL};
  if (sim_coap_open(loop, &cb, g, &g->coap) < 0) {
    free(g);
    return NULL;
  }
  sim_sender_init(loop, &g->tx, g, pump, dev->id, "an event", &g->stopping);
  double first = local_midnight(sg_now() - VISIT_DAYS * 86400.0 + 43200.0);
  g->planned_until = first;
  plan_day(g, first, first);
  g->planned_until = local_midnight(first + 36 * 3600.0);
  sim_target_t t;
  sim_target_for(base, cfg, dev, &t);
  g->sess = sim_sess_open(g->coap, &t, dev->id, t.secure ? dev->psk : NULL, g);
  if (g->sess)
    schedule(g, 100);
  log_info("%s: a gate reader for %zu machines", dev->id, n_m);
  return g;
}

static void gate_on_closed(uv_handle_t *h) {
  sim_gate_t *g = h->data;
  free(g->q);
  free(g);
}

void sim_gate_stop(sim_gate_t *g) {
  if (!g || g->stopping)
    return;
  g->stopping = true;
  uv_timer_stop(&g->tx.timer);
  sim_coap_close(g->coap);
  printf("sitesim: gate events sent=%llu stored=%llu (2.04 same event=%llu) rejected=%llu "
         "not yet sent=%zu\n",
         (unsigned long long)g->sent, (unsigned long long)g->created, (unsigned long long)g->same,
         (unsigned long long)g->rejected, g->n - g->head);
  uv_close((uv_handle_t *)&g->tx.timer, gate_on_closed);
}
