/* The machinery daemon (machinery.h): every machine's state on the loop,
 * and the zone's rule reported to the alarm model.
 *
 * A machine is known by its registration code from three sides: the
 * register (read at start, then told of each change by the API), the gate
 * (core's move listener: POST /g and `sitectl machine enter|leave`) and
 * its terminal (core's pack listener, for devices of type `machine` the
 * register names as a machine's terminal). Whatever changes, the machine
 * is judged again (mach_on_site, mach_judge) and each of its three
 * conditions reported, at level 0 too, which is how an alarm clears. A
 * timer judges every machine once a minute, for terminals that went quiet.
 *
 * Everything here is the loop thread's; the HTTP threads come through
 * gw_call_on_loop. */
#define LOG_MODULE "machinery"

#include "gateway/machinery/machinery.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TICK_MS 60000

typedef struct mach {
  char code[PROTO_MACHINE_CODE_MAX + 1];
  bool registered; /* in the register and not retired */
  proto_machine_t m;
  bool have_move, move_in;
  double move_t;
  char move_source[16];
  double reading_t; /* the terminal's latest reading, 0: none */
  double opacity;   /* its latest smoke reading, NAN: none */
  double opacity_t;
  unsigned bits; /* what it broke when last judged */
  bool on_site;
  char reasons[256];
} mach_t;

struct machinery {
  gw_t *gw;
  mach_zone_t zone;
  mach_t *m;
  size_t n, cap;
  uv_timer_t tick;
  bool tick_open;
};

static mach_t *find(struct machinery *mc, const char *code) {
  for (size_t i = 0; i < mc->n; i++)
    if (strcmp(mc->m[i].code, code) == 0)
      return &mc->m[i];
  return NULL;
}

static mach_t *find_or_add(struct machinery *mc, const char *code) {
  mach_t *x = find(mc, code);
  if (x)
    return x;
  if (mc->n == mc->cap) {
    size_t cap = mc->cap ? mc->cap * 2 : 16;
    mach_t *g = realloc(mc->m, cap * sizeof(*g));
    if (!g)
      return NULL;
    mc->m = g;
    mc->cap = cap;
  }
  x = &mc->m[mc->n++];
  memset(x, 0, sizeof(*x));
  snprintf(x->code, sizeof(x->code), "%s", code);
  x->opacity = NAN;
  return x;
}

static mach_t *by_terminal(struct machinery *mc, const char *device) {
  for (size_t i = 0; i < mc->n; i++)
    if (mc->m[i].registered && strcmp(mc->m[i].m.terminal, device) == 0)
      return &mc->m[i];
  return NULL;
}

static void report(gw_t *gw, const mach_t *x, const char *rule, bool broken, double figure,
                   double limit, const char *unit, const char *message) {
  alarm_cond_t c = {.rule = rule,
                    .source = x->code,
                    .level = broken ? ALARM_ALARM : ALARM_NORMAL,
                    .figure = figure,
                    .limit = limit,
                    .unit = unit,
                    .message = broken ? message : NULL,
                    .hold_s = -1};
  alarm_update(gw, &c);
}

/* Judges one machine and reports its three conditions. */
static void judge(struct machinery *mc, mach_t *x, double now) {
  x->on_site = mach_on_site(&mc->zone, x->have_move, x->move_in, x->move_t, x->reading_t, now);
  x->bits = x->on_site ? mach_judge(&mc->zone, x->registered, x->registered ? x->m.stage : -1,
                                    x->opacity, x->reasons, sizeof(x->reasons))
                       : 0;
  if (!x->on_site)
    x->reasons[0] = '\0';
  char msg[256];
  snprintf(msg, sizeof(msg), "machine %s on site is not in the register", x->code);
  report(mc->gw, x, "machinery.unregistered", x->bits & MACH_UNREGISTERED, NAN, NAN, NULL, msg);
  snprintf(msg, sizeof(msg), "machine %s on site is stage %s, below the zone's %s", x->code,
           x->registered ? proto_stage_name(x->m.stage) : "?",
           proto_stage_name(mc->zone.min_stage));
  report(mc->gw, x, "machinery.stage", x->bits & MACH_STAGE, NAN, NAN, NULL, msg);
  snprintf(msg, sizeof(msg), "machine %s smokes: %.2f 1/m above %.2f (GB 36886-2018)", x->code,
           x->opacity, mc->zone.opacity_limit);
  /* Off site the figure does not count: NAN lets the alarm clear at once. */
  report(mc->gw, x, "machinery.smoke", x->bits & MACH_SMOKE, x->on_site ? x->opacity : NAN,
         mc->zone.opacity_limit, "1/m", msg);
}

static void judge_all(struct machinery *mc) {
  double now = sg_now();
  for (size_t i = 0; i < mc->n; i++)
    judge(mc, &mc->m[i], now);
}

static void on_tick(uv_timer_t *t) { judge_all(t->data); }

/* ---- what the others say */

static void take_register(struct machinery *mc, const stor_machine_t *sm) {
  mach_t *x = find_or_add(mc, sm->m.code);
  if (!x) {
    log_err("out of memory for machine %s", sm->m.code);
    return;
  }
  x->m = sm->m;
  x->registered = sm->retired == 0;
}

static void take_move(struct machinery *mc, const stor_move_t *mv) {
  mach_t *x = find_or_add(mc, mv->code);
  if (!x || (x->have_move && mv->t < x->move_t))
    return; /* an older event sent late changes nothing now */
  x->have_move = true;
  x->move_in = mv->in;
  x->move_t = mv->t;
  snprintf(x->move_source, sizeof(x->move_source), "%s", mv->source);
}

static void on_move(void *arg, const stor_move_t *mv) {
  struct machinery *mc = arg;
  take_move(mc, mv);
  mach_t *x = find(mc, mv->code);
  if (x)
    judge(mc, x, sg_now());
}

static void take_reading(mach_t *x, int quantity, double t, double v) {
  if (t > x->reading_t)
    x->reading_t = t;
  if (quantity == PROTO_Q_OPACITY && t >= x->opacity_t) {
    x->opacity = v;
    x->opacity_t = t;
  }
}

static void on_pack(void *arg, const gw_device_t *dev, const proto_pack_t *p) {
  struct machinery *mc = arg;
  if (dev->conf->type != SG_DEV_MACHINE)
    return;
  mach_t *x = by_terminal(mc, dev->conf->id);
  if (!x) {
    log_debug("terminal %s is not named by any machine in the register", dev->conf->id);
    return;
  }
  for (size_t i = 0; i < p->n; i++)
    take_reading(x, p->rec[i].quantity, (double)p->rec[i].t_ms / 1000.0, p->rec[i].value);
  judge(mc, x, sg_now());
}

typedef struct note_arg {
  const stor_machine_t *m;
} note_arg_t;

static void note_on_loop(gw_t *gw, void *arg) {
  GW_ASSERT_LOOP(gw);
  struct machinery *mc = gw->machinery;
  const note_arg_t *a = arg;
  if (!mc)
    return;
  take_register(mc, a->m);
  mach_t *x = find(mc, a->m->m.code);
  if (x)
    judge(mc, x, sg_now());
}

int machinery_note_register(gw_t *gw, const stor_machine_t *m) {
  note_arg_t a = {m};
  return gw_call_on_loop(gw, note_on_loop, &a);
}

/* ---- the API's snapshot */

typedef struct snap {
  json_t *out;
} snap_t;

static json_t *time_or_null(double t) { return t > 0 ? json_real(t) : json_null(); }

static void status_on_loop(gw_t *gw, void *arg) {
  GW_ASSERT_LOOP(gw);
  snap_t *s = arg;
  struct machinery *mc = gw->machinery;
  if (!mc)
    return;
  double now = sg_now();
  json_t *o = json_object();
  for (size_t i = 0; i < mc->n; i++) {
    mach_t *x = &mc->m[i];
    judge(mc, x, now); /* a quiet terminal may have expired since the tick */
    json_t *reasons = json_array();
    static const char *const rules[] = {"unregistered", "stage", "smoke"};
    for (int b = 0; b < 3; b++)
      if (x->bits & (1u << b))
        json_array_append_new(reasons, json_string(rules[b]));
    bool fresh = x->reading_t > 0 && now - x->reading_t <= mc->zone.presence_s;
    json_object_set_new(o, x->code,
                        json_pack("{s:b,s:b,s:b,s:b,s:o,s:s,s:o,s:o,s:o}", "registered",
                                  x->registered, "on_site", x->on_site, "working",
                                  x->on_site && fresh, "compliant", x->bits == 0, "reasons",
                                  reasons, "reasons_text", x->reasons, "last_move",
                                  x->have_move ? json_pack("{s:f,s:b,s:s}", "t", x->move_t, "in",
                                                           x->move_in, "source", x->move_source)
                                               : json_null(),
                                  "last_reading_t", time_or_null(x->reading_t), "opacity",
                                  isfinite(x->opacity) ? json_real(x->opacity) : json_null()));
  }
  s->out = o;
}

json_t *machinery_status_json(gw_t *gw) {
  snap_t s = {0};
  if (gw_call_on_loop(gw, status_on_loop, &s) != 0)
    return NULL;
  return s.out;
}

/* ---- life cycle */

static int restore_machine(void *arg, const stor_machine_t *m) {
  take_register(arg, m);
  return 0;
}

static int restore_move(void *arg, const stor_move_t *mv) {
  take_move(arg, mv);
  return 0;
}

static int restore_latest(void *arg, const char *device, int quantity, int64_t t_ms, double value) {
  struct machinery *mc = arg;
  const sg_device_t *d = sg_config_device(mc->gw->cfg, device);
  mach_t *x = d && d->type == SG_DEV_MACHINE ? by_terminal(mc, device) : NULL;
  if (x)
    take_reading(x, quantity, (double)t_ms / 1000.0, value);
  return 0;
}

int machinery_open(gw_t *gw) {
  GW_ASSERT_LOOP(gw);
  struct machinery *mc = calloc(1, sizeof(*mc));
  if (!mc)
    return -ENOMEM;
  mc->gw = gw;
  mach_zone_from_config(gw->cfg, &mc->zone);
  stor_reader_t *r = NULL;
  int rc = stor_reader_open(gw->cfg->db_path, &r);
  if (rc == 0)
    rc = stor_machine_list(r, true, restore_machine, mc);
  if (rc == 0)
    rc = stor_machine_last_moves(r, restore_move, mc);
  if (rc == 0)
    rc = stor_latest(r, restore_latest, mc);
  stor_reader_close(r);
  if (rc == 0)
    rc = gw_on_pack(gw, on_pack, mc);
  if (rc == 0)
    rc = gw_on_move(gw, on_move, mc);
  if (rc != 0) {
    log_err("cannot start the machinery register: %s", strerror(-rc));
    free(mc->m);
    free(mc);
    return rc;
  }
  gw->machinery = mc;
  uv_timer_init(gw->loop, &mc->tick);
  mc->tick.data = mc;
  mc->tick_open = true;
  uv_timer_start(&mc->tick, on_tick, TICK_MS, TICK_MS);
  judge_all(mc);
  log_info("%zu machines known, lowest stage allowed %s", mc->n,
           proto_stage_name(mc->zone.min_stage));
  return 0;
}

void machinery_stop(gw_t *gw) {
  struct machinery *mc = gw->machinery;
  if (mc && mc->tick_open) {
    uv_close((uv_handle_t *)&mc->tick, NULL);
    mc->tick_open = false;
  }
}

void machinery_free(gw_t *gw) {
  struct machinery *mc = gw->machinery;
  if (!mc)
    return;
  gw->machinery = NULL;
  free(mc->m);
  free(mc);
}
