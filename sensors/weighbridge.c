/* sitesim's weighbridges: every [device ID] of type scale posts weighing
 * tickets to POST /w, as a weighbridge's ticket software does.
 *
 * What a day at the bridge looks like is a pure function of (seed, scale,
 * day), planned in plan_day(): ready-mix trucks, rebar, blocks and formwork
 * timber coming in (some with a green building-material certificate), now
 * and then a return to the supplier, and trucks going out with waste of a
 * composition that follows the construction phase (site clearance and
 * excavation spoil and piling mud early, then concrete, mortar, rebar
 * offcuts, formwork timber and packaging, decoration waste later, once in a
 * while hazardous containers), each to a believable destination. The
 * volumes come from the site configuration: design quantities per m2 of
 * floor area (below, the same factors as deploy/boq-demo.csv) spread over
 * a nominal project of PROJECT_DAYS, and construction waste at WASTE_SHARE
 * of the 300/200 t per 10,000 m2 allowance. [site] progress says how far
 * the project is, so the bridge starts with the tickets of the days behind
 * it (its memory, uploaded when it first reaches the gateway), then goes
 * on live. Run it again with the same seed and it resends the same tickets,
 * which the gateway recognises (2.04, same id).
 *
 * On purpose, like a real bridge: about one ticket in twenty is sent twice
 * (a lost acknowledgement: the gateway answers 2.04 with the same id), and
 * about one in a hundred is malformed (a net weight that does not match
 * gross - tare, a kind the gateway does not know, a missing destination),
 * which the gateway refuses with 4.00; sitesim logs each kind once. */
#include "sensors/sensors_int.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define LOG_MODULE "sitesim"

#define PROJECT_DAYS 600.0   /* nominal project length for the daily volumes */
#define HISTORY_DAYS_MAX 390 /* the gateway takes weighings up to 400 days old */
#define WASTE_SHARE 0.7      /* waste at completion, share of the allowance */
#define RESEND_SHARE 0.05
#define MALFORMED_SHARE 0.01
#define TICKETS_PER_DAY_MAX 96 /* ticket numbers are day * 100 + k */

/* Design quantities per m2 of floor area, t (a reinforced-concrete
 * residential building), and the loss each material is delivered with. */
static const struct material {
  const char *id;
  double t_per_m2;
  double loss;      /* delivered = design x (1 + loss) */
  double truck_t;   /* a typical load */
  double green;     /* share with a green building-material certificate */
  const char *from; /* supplier, the carrier of the delivery */
} materials[] = {
    {"concrete", 0.95, 0.011, 19.5, 0.6, "哈尔滨松北商砼有限公司"},
    {"rebar", 0.05, 0.022, 28.0, 0.8, "黑龙江建龙钢铁有限公司"},
    {"blocks", 0.06, 0.006, 18.0, 0.5, "哈尔滨新型墙材有限公司"},
    {"formwork_timber", 0.005, 0.055, 8.0, 0.2, "松花江木业有限公司"},
};
#define N_MATERIALS (sizeof(materials) / sizeof(materials[0]))

static const char *const carriers[] = {"哈尔滨龙运渣土运输有限公司", "黑龙江恒通运输有限公司",
                                       "松北区建筑垃圾清运队"};
static const char *const dest_names[PROTO_DEST_COUNT] = {
    [PROTO_DEST_REUSE_ONSITE] = "",
    [PROTO_DEST_RECYCLING] = "哈尔滨市建筑垃圾资源化利用中心",
    [PROTO_DEST_BACKFILL] = "呼兰区道路路基回填工程",
    [PROTO_DEST_DISPOSAL] = "哈尔滨市建筑垃圾消纳场",
};

typedef struct planned {
  double t;
  uint8_t *buf;
  size_t len;
  int cf;
  bool malformed, resend;
} planned_t;

typedef struct scale {
  sim_wb_t *wb;
  const sg_device_t *cfg;
  uint64_t key;
  sim_sess_t *sess;
  sim_sender_t tx;
  planned_t *q; /* by time */
  size_t head, n, cap;
  double planned_until;     /* local midnight after the last planned day */
  double owed[N_MATERIALS]; /* per material: tonnes planned but not yet delivered */
  bool memory_turned;
  uint32_t warned; /* reply codes logged */
} scale_t;

struct sim_wb {
  uv_loop_t *loop;
  const sim_opts_t *o;
  const sg_config_t *cfg;
  sim_coap_t *coap;
  scale_t *scales;
  size_t n;
  int open_handles;
  bool stopping;
  double allowance_t, area_m2;
  double start; /* local midnight of the project's first day */
  uint64_t next_token;
  uint64_t created, same, rejected, malformed, resends, sent;
};

/* ---- draws: every number is a hash of (scale, day, ticket, channel) */
static double u01(const scale_t *s, double day, int k, int ch) {
  uint64_t h = sim_hash(sim_hash(s->key, (uint64_t)(int64_t)day), (uint64_t)(k * 64 + ch));
  return (double)(h >> 11) * 0x1.0p-53;
}

static double between(const scale_t *s, double day, int k, int ch, double lo, double hi) {
  return lo + (hi - lo) * u01(s, day, k, ch);
}

/* A count with mean `lambda`: its whole part, plus one with the chance of
 * its fraction. */
static int count(const scale_t *s, double day, int ch, double lambda) {
  int n = (int)floor(lambda);
  return n + (u01(s, day, 0, ch) < lambda - n);
}

static double local_midnight(double t) {
  time_t tt = (time_t)t;
  struct tm tm;
  localtime_r(&tt, &tm);
  tm.tm_hour = tm.tm_min = tm.tm_sec = 0;
  tm.tm_isdst = -1;
  return (double)mktime(&tm);
}

/* ---- one day's tickets */
typedef struct day_ctx {
  scale_t *s;
  double day;   /* local midnight */
  double dayno; /* days since the epoch, for ticket numbers */
  double p;     /* construction progress on that day */
  int k;        /* tickets so far */
  proto_ticket_t *out;
  size_t cap, n;
} day_ctx_t;

static proto_ticket_t *new_ticket(day_ctx_t *c, bool in) {
  if (c->n == c->cap || c->k >= TICKETS_PER_DAY_MAX)
    return NULL;
  proto_ticket_t *t = &c->out[c->n++];
  int k = c->k++;
  memset(t, 0, sizeof(*t));
  snprintf(t->scale, sizeof(t->scale), "%s", c->s->cfg->id);
  t->no = (int64_t)c->dayno * 100 + k + 1;
  /* working hours 07:00-19:00 */
  t->t = (int64_t)(c->day + 7 * 3600 + between(c->s, c->day, k, 1, 0, 12 * 3600));
  t->dir_in = in;
  t->category = t->kind = t->dest = -1;
  static const char letters[] = "ABCDEFGHJKLMNPQRSTUVWXYZ0123456789";
  char plate[8];
  for (int i = 0; i < 5; i++)
    plate[i] = letters[(int)(u01(c->s, c->day, k, 10 + i) * 34)];
  plate[5] = '\0';
  snprintf(t->plate, sizeof(t->plate), "黑A%s", plate);
  return t;
}

/* Truck weights: tare 13-16 t, both readings in the bridge's 20 kg steps. */
static void weigh(const day_ctx_t *c, proto_ticket_t *t, double net_t) {
  int k = c->k - 1;
  int64_t step = 20;
  int64_t tare = (int64_t)llround(between(c->s, c->day, k, 2, 13000, 16000) / step) * step;
  int64_t net = (int64_t)llround(net_t * 1000.0 / step) * step;
  if (net < step)
    net = step;
  t->tare_kg = tare;
  t->gross_kg = tare + net;
  t->net_kg = net;
}

static int pick(double u, const double *shares, int n) {
  for (int i = 0; i < n - 1; i++) {
    if (u < shares[i])
      return i;
    u -= shares[i];
  }
  return n - 1;
}

/* Deliveries keep pace with the plan: each day adds its share of the
 * material to what is owed, and a truck comes whenever half a load or more
 * is owed, so the delivered total stays within a load of design x (1 +
 * loss) x days / PROJECT_DAYS (the loss rates come out as planned). */
static void deliveries(day_ctx_t *c, double n_scales) {
  double area = c->s->wb->area_m2;
  for (size_t m = 0; m < N_MATERIALS; m++) {
    const struct material *mt = &materials[m];
    c->s->owed[m] += mt->t_per_m2 * area * (1 + mt->loss) / PROJECT_DAYS / n_scales;
    while (c->s->owed[m] >= 0.5 * mt->truck_t) {
      proto_ticket_t *t = new_ticket(c, true);
      if (!t)
        return;
      t->type = PROTO_TICKET_DELIVERY;
      snprintf(t->material, sizeof(t->material), "%s", mt->id);
      t->green_cert = u01(c->s, c->day, c->k - 1, 3) < mt->green;
      snprintf(t->carrier, sizeof(t->carrier), "%s", mt->from);
      weigh(c, t, mt->truck_t * between(c->s, c->day, c->k - 1, 4, 0.8, 1.2));
      c->s->owed[m] -= (double)t->net_kg / 1000.0;
    }
  }
  /* once in a while, surplus blocks or timber go back to the supplier */
  if (u01(c->s, c->day, 0, 30) < 0.04) {
    proto_ticket_t *t = new_ticket(c, false);
    if (!t)
      return;
    size_t m = u01(c->s, c->day, 0, 31) < 0.5 ? 2 : 3;
    t->type = PROTO_TICKET_RETURN;
    snprintf(t->material, sizeof(t->material), "%s", materials[m].id);
    snprintf(t->carrier, sizeof(t->carrier), "%s", materials[m].from);
    snprintf(t->dest_name, sizeof(t->dest_name), "%s", materials[m].from);
    weigh(c, t, between(c->s, c->day, c->k - 1, 4, 1.0, 3.0));
    c->s->owed[m] += (double)t->net_kg / 1000.0; /* made up by later deliveries */
  }
}

/* Where each kind goes: reuse on site, recycling, backfill, disposal. */
static int destination(const day_ctx_t *c, int kind) {
  static const double shares[PROTO_KIND_COUNT][PROTO_DEST_COUNT] = {
      [PROTO_KIND_CONCRETE] = {0.15, 0.55, 0.20, 0.10},
      [PROTO_KIND_MORTAR] = {0.10, 0.35, 0.25, 0.30},
      [PROTO_KIND_BRICK_TILE] = {0.20, 0.50, 0.20, 0.10},
      [PROTO_KIND_METAL] = {0, 1, 0, 0},
      [PROTO_KIND_WOOD] = {0.10, 0.45, 0, 0.45},
      [PROTO_KIND_PLASTIC] = {0, 0.5, 0, 0.5},
      [PROTO_KIND_GLASS] = {0, 0.7, 0, 0.3},
      [PROTO_KIND_GYPSUM] = {0, 0.3, 0, 0.7},
      [PROTO_KIND_PACKAGING] = {0, 0.55, 0, 0.45},
      [PROTO_KIND_MIXED] = {0, 0.1, 0, 0.9},
      [PROTO_KIND_HAZARDOUS] = {0, 0, 0, 1},
  };
  return pick(u01(c->s, c->day, c->k - 1, 5), shares[kind], PROTO_DEST_COUNT);
}

static void waste_truck(day_ctx_t *c, int category, int kind, double net_t, int dest) {
  proto_ticket_t *t = new_ticket(c, false);
  if (!t)
    return;
  t->type = PROTO_TICKET_WASTE;
  t->category = (int8_t)category;
  t->kind = (int8_t)kind;
  t->dest = (int8_t)(dest >= 0 ? dest : destination(c, kind));
  snprintf(t->dest_name, sizeof(t->dest_name), "%s", dest_names[t->dest]);
  if (category == PROTO_CAT_ENGINEERING && kind == PROTO_KIND_HAZARDOUS)
    snprintf(t->dest_name, sizeof(t->dest_name), "黑龙江省危险废物处置中心");
  if (proto_waste_dest_leaves_site(t->dest))
    snprintf(t->carrier, sizeof(t->carrier), "%s",
             carriers[(int)(u01(c->s, c->day, c->k - 1, 6) * 3)]);
  weigh(c, t, net_t);
}

static void waste(day_ctx_t *c, double n_scales) {
  const scale_t *s = c->s;
  double p = c->p;
  /* construction waste: WASTE_SHARE of the allowance over the project */
  double daily_t = WASTE_SHARE * s->wb->allowance_t / PROJECT_DAYS / n_scales;
  int n = count(s, c->day, 40, daily_t / 6.0);
  for (int i = 0; i < n; i++) {
    double u = u01(s, c->day, i, 41), net;
    int cat, kind;
    if (p < 0.05 && u < 0.7) { /* site clearance */
      cat = PROTO_CAT_DEMOLITION;
      static const double kinds[] = {0.5, 0.4, 0.1};
      static const int which[] = {PROTO_KIND_CONCRETE, PROTO_KIND_BRICK_TILE, PROTO_KIND_METAL};
      kind = which[pick(u01(s, c->day, i, 42), kinds, 3)];
    } else if (p > 0.35 && u < 0.1 + 0.5 * (p - 0.35)) { /* fit-out starts */
      cat = PROTO_CAT_DECORATION;
      static const double kinds[] = {0.3, 0.4, 0.1, 0.2};
      static const int which[] = {PROTO_KIND_GYPSUM, PROTO_KIND_MIXED, PROTO_KIND_GLASS,
                                  PROTO_KIND_PACKAGING};
      kind = which[pick(u01(s, c->day, i, 42), kinds, 4)];
    } else {
      cat = PROTO_CAT_ENGINEERING;
      static const double kinds[] = {0.35, 0.10, 0.12, 0.18, 0.08, 0.02, 0.15};
      static const int which[] = {PROTO_KIND_CONCRETE, PROTO_KIND_MORTAR,    PROTO_KIND_METAL,
                                  PROTO_KIND_WOOD,     PROTO_KIND_PACKAGING, PROTO_KIND_PLASTIC,
                                  PROTO_KIND_MIXED};
      kind = which[pick(u01(s, c->day, i, 42), kinds, 7)];
    }
    switch (kind) { /* a load by density */
    case PROTO_KIND_CONCRETE:
    case PROTO_KIND_MORTAR:
    case PROTO_KIND_BRICK_TILE:
      net = between(s, c->day, i, 43, 6, 12);
      break;
    case PROTO_KIND_METAL:
      net = between(s, c->day, i, 43, 2, 6);
      break;
    case PROTO_KIND_PACKAGING:
    case PROTO_KIND_PLASTIC:
    case PROTO_KIND_GLASS:
      net = between(s, c->day, i, 43, 0.8, 2.5);
      break;
    default:
      net = between(s, c->day, i, 43, 2, 7);
      break;
    }
    waste_truck(c, cat, kind, net, -1);
  }
  /* excavation spoil and piling mud early; a little spoil later */
  double spoil_trucks = p < 0.12 ? 4.0 / n_scales : 0.05 / n_scales;
  n = count(s, c->day, 50, spoil_trucks);
  for (int i = 0; i < n; i++)
    waste_truck(c, PROTO_CAT_SPOIL, -1, between(s, c->day, i, 51, 16, 26),
                u01(s, c->day, i, 52) < 0.6 ? PROTO_DEST_BACKFILL : PROTO_DEST_DISPOSAL);
  if (p < 0.08 && u01(s, c->day, 0, 53) < 0.8 / n_scales)
    waste_truck(c, PROTO_CAT_MUD, -1, between(s, c->day, 0, 54, 8, 14), PROTO_DEST_DISPOSAL);
  /* empty paint and oil containers, about every 40 days */
  if (u01(s, c->day, 0, 55) < 0.025 / n_scales)
    waste_truck(c, PROTO_CAT_ENGINEERING, PROTO_KIND_HAZARDOUS, between(s, c->day, 0, 56, 0.2, 0.8),
                PROTO_DEST_DISPOSAL);
}

static int by_time(const void *a, const void *b) {
  const proto_ticket_t *x = a, *y = b;
  return x->t < y->t ? -1 : x->t > y->t ? 1 : x->no < y->no ? -1 : 1;
}

/* The tickets of the day starting at local midnight `day`, in time order.
 * `start` is the project's first day. */
static size_t plan_day(scale_t *s, double day, double start, proto_ticket_t *out, size_t cap) {
  double n_scales = (double)s->wb->n;
  day_ctx_t c = {.s = s, .day = day, .dayno = floor(day / 86400.0 + 0.5), .out = out, .cap = cap};
  c.p = (day - start) / 86400.0 / PROJECT_DAYS;
  deliveries(&c, n_scales);
  waste(&c, n_scales);
  qsort(out, c.n, sizeof(*out), by_time);
  return c.n;
}

/* ---- the queue of encoded tickets */
static int q_add(scale_t *s, double t, const void *buf, size_t len, int cf, bool malformed,
                 bool resend) {
  if (s->head > 0 && s->head == s->n) {
    s->head = s->n = 0;
  }
  if (s->n == s->cap) {
    if (s->head > 0) { /* reclaim the sent part */
      memmove(s->q, s->q + s->head, (s->n - s->head) * sizeof(*s->q));
      s->n -= s->head;
      s->head = 0;
    }
    if (s->n == s->cap) {
      size_t cap = s->cap ? s->cap * 2 : 1024;
      planned_t *q = realloc(s->q, cap * sizeof(*q));
      if (!q)
        return -ENOMEM;
      s->q = q;
      s->cap = cap;
    }
  }
  uint8_t *copy = malloc(len);
  if (!copy)
    return -ENOMEM;
  memcpy(copy, buf, len);
  /* time order; a resend goes first, as the bridge repeats its last */
  size_t at = resend ? s->head : s->n;
  memmove(s->q + at + 1, s->q + at, (s->n - at) * sizeof(*s->q));
  s->q[at] = (planned_t){t, copy, len, cf, malformed, resend};
  s->n++;
  return 0;
}

static void q_pop(scale_t *s) {
  free(s->q[s->head].buf);
  s->head++;
}

/* A ticket in its wire form; one in a hundred spoilt on purpose. */
static void enqueue(scale_t *s, const proto_ticket_t *t, double day, int k) {
  uint8_t buf[2048];
  bool cbor = s->wb->o->cbor || u01(s, day, k, 60) < 0.25; /* some bridges speak CBOR */
  proto_ticket_t bad = *t;
  int flaw = -1;
  if (u01(s, day, k, 61) < MALFORMED_SHARE)
    flaw = (int)(u01(s, day, k, 62) * 3);
  if (flaw == 0)
    bad.net_kg += 480; /* net does not match gross - tare */
  int len = cbor ? proto_ticket_encode_cbor(&bad, buf, sizeof(buf))
                 : proto_ticket_encode_json(&bad, (char *)buf, sizeof(buf));
  if (len < 1)
    return;
  /* The other flaws are edits of the same length on the JSON text, or a
   * CBOR ticket cut short. */
  char *at;
  if (flaw >= 1 && cbor)
    len--;
  else if (flaw == 1 && (at = strstr((char *)buf, "\"kind\":\"")))
    at[8] = 'X'; /* "Xoncrete": a kind the gateway does not know */
  else if (flaw == 1 && (at = strstr((char *)buf, "\"material\":")))
    memcpy(at + 1, "materiel", 8); /* a misspelt field */
  else if (flaw == 2 && (at = strstr((char *)buf, "\"dest\":")))
    memcpy(at + 1, "dst_", 4); /* no destination, an unknown field */
  else if (flaw == 2 && (at = strstr((char *)buf, "\"t\":")))
    at[1] = 'T'; /* no weighing time */
  q_add(s, (double)t->t, buf, (size_t)len, cbor ? 60 : 50, flaw >= 0, false);
}

/* Plans the days up to the one holding `until`. */
static void plan_until(scale_t *s, double until, double start) {
  static proto_ticket_t day[TICKETS_PER_DAY_MAX];
  while (s->planned_until <= until) {
    double d = s->planned_until;
    size_t n = plan_day(s, d, start, day, TICKETS_PER_DAY_MAX);
    for (size_t i = 0; i < n; i++)
      enqueue(s, &day[i], d, (int)i);
    s->planned_until = local_midnight(d + 36 * 3600.0); /* DST-proof next midnight */
  }
}

/* The memory (every ticket due by `now`, at the head of the queue in time
 * order) turned newest first; what is planned later stays in time order
 * behind it. Once, before the first ticket goes. */
static void turn_memory(scale_t *s, double now) {
  size_t end = s->head;
  while (end < s->n && s->q[end].t <= now)
    end++;
  for (size_t i = s->head, j = end; i + 1 < j; i++, j--) {
    planned_t tmp = s->q[i];
    s->q[i] = s->q[j - 1];
    s->q[j - 1] = tmp;
  }
  s->memory_turned = true;
}

/* ---- sending */
static void schedule(scale_t *s, uint64_t ms) { sim_sender_later(&s->tx, ms); }

static void pump(void *owner) {
  scale_t *s = owner;
  sim_wb_t *wb = s->wb;
  if (s->tx.inflight || wb->stopping)
    return;
  double now = sg_now();
  plan_until(s, now, wb->start);
  if (!s->memory_turned)
    turn_memory(s, now);
  if (s->head == s->n) {
    schedule(s, (uint64_t)((s->planned_until - now) * 1000.0) + 1000);
    return;
  }
  planned_t *p = &s->q[s->head];
  if (p->t > now) {
    schedule(s, (uint64_t)((p->t - now) * 1000.0) + 1);
    return;
  }
  int rc = sim_sender_post(&s->tx, s->sess, ++wb->next_token, "w", p->cf, p->buf, p->len);
  if (rc < 0) {
    log_err("%s: cannot send a ticket: %s", s->cfg->id, strerror(-rc));
    q_pop(s);
    schedule(s, 0);
    return;
  }
  wb->sent++;
}

static void log_once(scale_t *s, const sim_reply_t *r, const char *what) {
  uint32_t bit = 1u << ((r->code / 100 * 7 + r->code % 100) & 31);
  if (s->warned & bit)
    return;
  s->warned |= bit;
  char text[161];
  size_t n = r->len < sizeof(text) - 1 ? r->len : sizeof(text) - 1;
  memcpy(text, r->payload, n);
  text[n] = '\0';
  log_info("%s: %s ticket: gateway replied %d.%02d %s", s->cfg->id, what, r->code / 100,
           r->code % 100, text);
}

static void wb_on_reply(void *user, uint64_t token, const sim_reply_t *r) {
  scale_t *s = user;
  sim_wb_t *wb = s->wb;
  if (!sim_sender_answered(&s->tx, token))
    return;
  planned_t *p = &s->q[s->head];
  if (r->code == 201 || r->code == 204) {
    s->tx.fails = 0;
    if (r->code == 201)
      wb->created++;
    else
      wb->same++;
    if (p->malformed)
      log_warn("%s: a malformed ticket was accepted: %d.%02d", s->cfg->id, r->code / 100,
               r->code % 100);
    bool again = !p->resend && sim_hash(s->key, (uint64_t)p->t) % 1000 < RESEND_SHARE * 1000;
    double t = p->t;
    uint8_t *buf = p->buf;
    size_t len = p->len;
    int cf = p->cf;
    s->q[s->head].buf = NULL;
    q_pop(s);
    if (again) { /* the acknowledgement "got lost": the bridge sends it again */
      wb->resends++;
      q_add(s, t, buf, len, cf, false, true);
    }
    free(buf);
  } else if (r->code / 100 == 4) {
    wb->rejected++;
    if (p->malformed)
      wb->malformed++;
    log_once(s, r, p->malformed ? "a malformed" : "a");
    q_pop(s);
  } else { /* 5.03 and the like: keep it, wait */
    long age = r->max_age >= 0 ? r->max_age : 60;
    log_once(s, r, "a");
    schedule(s, (uint64_t)age * 1000);
    return;
  }
  schedule(s, 0);
}

static void wb_on_fail(void *user, uint64_t token, sim_fail_t why) {
  (void)why;
  sim_sender_failed(&((scale_t *)user)->tx, token);
}

/* ---- start and stop */
static void wb_free(sim_wb_t *wb) {
  for (size_t i = 0; i < wb->n; i++) {
    scale_t *s = &wb->scales[i];
    while (s->head < s->n)
      q_pop(s);
    free(s->q);
  }
  free(wb->scales);
  free(wb);
}

static void on_closed(uv_handle_t *h) {
  sim_wb_t *wb = ((scale_t *)h->data)->wb;
  if (--wb->open_handles == 0)
    wb_free(wb);
}

sim_wb_t *sim_wb_start(uv_loop_t *loop, const sg_config_t *cfg, const sim_target_t *base,
                       const sim_opts_t *o) {
  size_t n = 0;
  for (size_t i = 0; i < cfg->n_devices; i++)
    n += cfg->devices[i].type == SG_DEV_SCALE;
  if (n == 0)
    return NULL;
  sim_wb_t *wb = calloc(1, sizeof(*wb));
  if (!wb || !(wb->scales = calloc(n, sizeof(*wb->scales)))) {
    free(wb);
    return NULL;
  }
  wb->loop = loop;
  wb->o = o;
  wb->cfg = cfg;
  wb->area_m2 = cfg->area_cast_m2 + cfg->area_prefab_m2;
  wb->allowance_t =
      (cfg->waste_limit_cast * cfg->area_cast_m2 + cfg->waste_limit_prefab * cfg->area_prefab_m2) /
      10000.0;
  static const sim_coap_cb_t cb = {wb_on_reply, wb_on_fail, NULL, NULL};
  if (sim_coap_open(loop, &cb, wb, &wb->coap) < 0) {
    free(wb->scales);
    free(wb);
    return NULL;
  }
  double now = sg_now(), days = cfg->progress * PROJECT_DAYS;
  double start =
      local_midnight(now - (days < HISTORY_DAYS_MAX ? days : HISTORY_DAYS_MAX) * 86400.0);
  wb->start = start;
  for (size_t i = 0; i < cfg->n_devices; i++) {
    const sg_device_t *d = &cfg->devices[i];
    if (d->type != SG_DEV_SCALE)
      continue;
    scale_t *s = &wb->scales[wb->n++];
    s->wb = wb;
    s->cfg = d;
    s->key = sim_key(o->seed, d->id);
    s->planned_until = start;
    sim_sender_init(loop, &s->tx, s, pump, d->id, "a ticket", &wb->stopping);
    wb->open_handles++;
    sim_target_t t;
    sim_target_for(base, cfg, d, &t);
    s->sess = sim_sess_open(wb->coap, &t, d->id, t.secure ? d->psk : NULL, s);
    if (s->sess)
      schedule(s, 100);
  }
  log_info("%zu weighbridge%s: %.0f days of tickets behind them ([site] progress %.0f%% of "
           "%.0f days), then live",
           wb->n, wb->n == 1 ? "" : "s", (now - start) / 86400.0, 100.0 * cfg->progress,
           PROJECT_DAYS);
  return wb;
}

void sim_wb_stop(sim_wb_t *wb) {
  if (!wb || wb->stopping)
    return;
  wb->stopping = true;
  size_t left = 0;
  for (size_t i = 0; i < wb->n; i++) {
    scale_t *s = &wb->scales[i];
    left += s->n - s->head;
    uv_timer_stop(&s->tx.timer);
    uv_close((uv_handle_t *)&s->tx.timer, on_closed);
  }
  sim_coap_close(wb->coap);
  printf("sitesim: tickets sent=%llu stored=%llu resent=%llu (2.04 same id=%llu) "
         "rejected=%llu (malformed on purpose=%llu) not yet sent=%zu\n",
         (unsigned long long)wb->sent, (unsigned long long)wb->created,
         (unsigned long long)wb->resends, (unsigned long long)wb->same,
         (unsigned long long)wb->rejected, (unsigned long long)wb->malformed, left);
  if (wb->open_handles == 0)
    wb_free(wb);
}
