/* The group policies as one pure function (equipment.h has the rules
 * and their order).
 *
 * eqp_decide() starts from every unit as it is (or as its command in
 * flight will leave it) and lets each rule refine the plan in turn. Three
 * flags per unit carry the earlier rules' verdicts to the later ones:
 * `fixed` (an override or an unknown state: nobody touches it), `blocked`
 * (schedule, freeze or cleared dust: it must stay off) and, for duty
 * groups, whether a unit is in service. Everything else is the plan
 * itself, so a table of cases in tests/test_equipment.c covers each rule
 * and their combinations without a loop or a clock. */

#include "gateway/equipment/equipment.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

const char *eqp_hold_name(int h) {
  static const char *const names[] = {"",         "peak-cap",   "idle",   "duty",
                                      "schedule", "dust-clear", "freeze", "override"};
  return (unsigned)h < sizeof(names) / sizeof(names[0]) ? names[h] : "?";
}

bool eqp_schedule_allows(const eqp_policy_t *p, double h) {
  if (p->n_ranges == 0)
    return true;
  for (int i = 0; i < p->n_ranges; i++) {
    double a = p->from_h[i], b = p->to_h[i];
    if (a < b ? h >= a && h < b : h >= a || h < b)
      return true;
  }
  return false;
}

void eqp_policy_from_config(const sg_config_t *cfg, const sg_group_t *g, eqp_policy_t *p) {
  memset(p, 0, sizeof(*p));
  p->peak_kw = g->peak_kw;
  p->peak_margin = g->peak_margin;
  p->min_on_s = g->min_on_min * 60.0;
  p->min_off_s = g->min_off_min * 60.0;
  p->idle_off_s = g->idle_off_min * 60.0;
  p->duty = g->duty;
  p->rotate_h = g->rotate_h;
  int n = sg_schedule_parse(g->schedule, cfg->noise_day_start_h, cfg->noise_night_start_h,
                            p->from_h, p->to_h, EQP_SCHEDULE_MAX);
  p->n_ranges = n > 0 ? n : 0; /* checked when the file was read */
  p->dust_linked = g->dust_linkage[0] != '\0';
  p->dust_level = strcmp(g->dust_level, "alarm") == 0 ? 2 : 1;
  p->dust_min_run_s = g->dust_min_run_min * 60.0;
  p->freeze_c = g->freeze_c;
}

/* ---- one decision */

typedef struct ctx {
  const eqp_policy_t *p;
  const eqp_unit_t *u;
  size_t n;
  double now;
  eqp_plan_t *out;
  bool *cur;     /* on now, or as the command in flight leaves it */
  bool *fixed;   /* override or unknown: no rule touches it */
  bool *blocked; /* must stay off: schedule, freeze, cleared dust, duty */
} ctx_t;

static bool has_been(double since, double now, double s) { return since <= 0 || now - since >= s; }

static bool past_min_on(const ctx_t *c, size_t i) {
  return has_been(c->u[i].since, c->now, c->p->min_on_s);
}

static bool past_min_off(const ctx_t *c, size_t i) {
  return has_been(c->u[i].since, c->now, c->p->min_off_s);
}

static void plan_on(ctx_t *c, size_t i, const char *reason) {
  c->out[i].on = true;
  c->out[i].held = EQP_HOLD_NONE;
  c->out[i].reason = reason;
}

static void plan_off(ctx_t *c, size_t i, eqp_hold_t held, const char *reason) {
  c->out[i].on = false;
  c->out[i].held = held;
  c->out[i].reason = reason;
}

static bool free_unit(const ctx_t *c, size_t i) { return !c->fixed[i] && !c->blocked[i]; }

/* 1. manual overrides */
static void rule_override(ctx_t *c) {
  for (size_t i = 0; i < c->n; i++) {
    const eqp_unit_t *u = &c->u[i];
    if (c->fixed[i] || !u->ovr)
      continue;
    if (u->ovr_until > c->now) {
      if (u->ovr_on)
        plan_on(c, i, "override");
      else
        plan_off(c, i, EQP_HOLD_OVERRIDE, "override");
      c->fixed[i] = true;
      continue;
    }
    c->out[i].ovr_expired = true;
    if (!c->cur[i] && u->held == EQP_HOLD_OVERRIDE)
      plan_on(c, i, "override-expired"); /* released; later rules may still hold it */
  }
}

/* 2. allowed hours */
static void rule_schedule(ctx_t *c, const eqp_env_t *env) {
  if (c->p->n_ranges == 0)
    return;
  bool allowed = eqp_schedule_allows(c->p, env->local_h);
  for (size_t i = 0; i < c->n; i++) {
    if (c->fixed[i])
      continue;
    if (!allowed) {
      if (c->out[i].on)
        plan_off(c, i, EQP_HOLD_SCHEDULE, "schedule");
      c->blocked[i] = true;
    } else if (!c->out[i].on && c->out[i].held == EQP_HOLD_SCHEDULE) {
      plan_on(c, i, "schedule");
    }
  }
}

/* 3. fog cannons and sprays. Returns whether dust wants them running. */
static bool rule_dust(ctx_t *c, const eqp_env_t *env) {
  const eqp_policy_t *p = c->p;
  bool freeze = isnan(env->temp_c) || env->temp_c < p->freeze_c;
  bool up = !freeze && env->dust_level >= p->dust_level;
  for (size_t i = 0; i < c->n; i++) {
    if (!free_unit(c, i))
      continue;
    const eqp_unit_t *u = &c->u[i];
    if (freeze) {
      if (c->out[i].on)
        plan_off(c, i, EQP_HOLD_FREEZE, "freeze");
      else
        c->out[i].held = EQP_HOLD_FREEZE;
      c->blocked[i] = true;
    } else if (up) {
      plan_on(c, i, "dust");
    } else if (c->out[i].on) {
      /* Just asked to start, or not yet run its minimum: keep it going. */
      bool starting = !c->cur[i] || (u->pending && u->pending_on);
      if (!starting && has_been(u->since, c->now, p->dust_min_run_s)) {
        plan_off(c, i, EQP_HOLD_DUST, "dust-clear");
        c->blocked[i] = true;
      }
    } else {
      c->out[i].held = EQP_HOLD_DUST;
      c->blocked[i] = true;
    }
  }
  return up;
}

static bool in_service(const ctx_t *c, size_t i) {
  return c->out[i].on || c->out[i].held == EQP_HOLD_IDLE;
}

/* Which in-service unit duty takes out first: one only planned on (no
 * command yet), then one parked idle, then the running one with the most
 * run-hours that has had its minimum on time. SIZE_MAX when none may go. */
static size_t duty_pick_out(const ctx_t *c) {
  size_t best = SIZE_MAX;
  int best_rank = 0;
  for (size_t i = 0; i < c->n; i++) {
    if (!free_unit(c, i) || !in_service(c, i))
      continue;
    int rank = c->out[i].on && !c->cur[i] ? 3 : !c->out[i].on ? 2 : past_min_on(c, i) ? 1 : 0;
    if (rank == 0)
      continue;
    if (best == SIZE_MAX || rank > best_rank ||
        (rank == best_rank && c->u[i].run_h > c->u[best].run_h)) {
      best = i;
      best_rank = rank;
    }
  }
  return best;
}

/* The resting unit with the fewest run-hours that may start. */
static size_t duty_pick_in(const ctx_t *c) {
  size_t best = SIZE_MAX;
  for (size_t i = 0; i < c->n; i++) {
    if (!free_unit(c, i) || in_service(c, i) || !past_min_off(c, i))
      continue;
    if (best == SIZE_MAX || c->u[i].run_h < c->u[best].run_h)
      best = i;
  }
  return best;
}

/* The running unit with the most run-hours that may stop. */
static size_t duty_pick_rotate_out(const ctx_t *c) {
  size_t best = SIZE_MAX;
  for (size_t i = 0; i < c->n; i++) {
    if (!free_unit(c, i) || !c->out[i].on || !c->cur[i] || !past_min_on(c, i))
      continue;
    if (best == SIZE_MAX || c->u[i].run_h > c->u[best].run_h)
      best = i;
  }
  return best;
}

/* 4. N in service, rotated by run-hours */
static void rule_duty(ctx_t *c) {
  int count = 0;
  for (size_t i = 0; i < c->n; i++)
    count += in_service(c, i) && (c->u[i].known || c->u[i].pending);
  while (count > c->p->duty) {
    size_t i = duty_pick_out(c);
    if (i == SIZE_MAX)
      break;
    plan_off(c, i, EQP_HOLD_DUTY, "duty");
    count--;
  }
  while (count < c->p->duty) {
    size_t i = duty_pick_in(c);
    if (i == SIZE_MAX)
      break;
    plan_on(c, i, "duty");
    count++;
  }
  for (size_t k = 0; k < c->n; k++) {
    size_t a = duty_pick_in(c), b = duty_pick_rotate_out(c);
    if (a == SIZE_MAX || b == SIZE_MAX || c->u[b].run_h - c->u[a].run_h < c->p->rotate_h)
      break;
    plan_on(c, a, "duty-rotation");
    plan_off(c, b, EQP_HOLD_DUTY, "duty-rotation");
  }
  /* Out of service stays out: no later rule may start it. */
  for (size_t i = 0; i < c->n; i++) {
    if (free_unit(c, i) && !in_service(c, i)) {
      c->out[i].held = EQP_HOLD_DUTY;
      c->blocked[i] = true;
    }
  }
}

/* 5. idle units off, back on when their controller reports demand */
static void rule_idle(ctx_t *c) {
  for (size_t i = 0; i < c->n; i++) {
    const eqp_unit_t *u = &c->u[i];
    if (!free_unit(c, i))
      continue;
    bool running_now = c->out[i].on && c->cur[i] && u->on && !u->pending;
    if (running_now && u->run == EQP_IDLE && u->idle_since > 0 &&
        c->now - u->idle_since >= c->p->idle_off_s && past_min_on(c, i))
      plan_off(c, i, EQP_HOLD_IDLE, "idle");
    else if (!c->out[i].on && c->out[i].held == EQP_HOLD_IDLE && u->demand)
      plan_on(c, i, "demand");
  }
}

/* What unit i draws in the plan: its measured power while it runs, its
 * rating (else its last power) when it is being switched on. */
static double expected_kw(const ctx_t *c, size_t i) {
  const eqp_unit_t *u = &c->u[i];
  double measured = isfinite(u->power_kw) ? u->power_kw : 0;
  if (!u->known && !u->pending)
    return measured; /* not ours to decide, but it counts */
  if (!c->out[i].on)
    return 0;
  if (c->cur[i] && u->on && !u->pending)
    return measured;
  return u->expect_kw > 0 ? u->expect_kw : u->rated_kw > 0 ? u->rated_kw : measured;
}

static int cmp_restore(const eqp_unit_t *a, const eqp_unit_t *b) {
  if (a->priority != b->priority)
    return a->priority > b->priority ? -1 : 1; /* most important first */
  if (a->run_h != b->run_h)
    return a->run_h < b->run_h ? -1 : 1;
  return strcmp(a->id, b->id);
}

static int cmp_shed(const eqp_unit_t *a, const eqp_unit_t *b) {
  if (a->priority != b->priority)
    return a->priority < b->priority ? -1 : 1; /* least important first */
  double pa = isfinite(a->power_kw) ? a->power_kw : 0, pb = isfinite(b->power_kw) ? b->power_kw : 0;
  if (pa != pb)
    return pa > pb ? -1 : 1; /* the larger load first */
  return strcmp(a->id, b->id);
}

/* The next unit in `cmp` order among those `ok` accepts and not yet done. */
static size_t next_unit(const ctx_t *c, const bool *done, bool (*ok)(const ctx_t *, size_t),
                        int (*cmp)(const eqp_unit_t *, const eqp_unit_t *)) {
  size_t best = SIZE_MAX;
  for (size_t i = 0; i < c->n; i++)
    if (!done[i] && ok(c, i) && (best == SIZE_MAX || cmp(&c->u[i], &c->u[best]) < 0))
      best = i;
  return best;
}

static bool is_turn_on(const ctx_t *c, size_t i) {
  return !c->fixed[i] && c->out[i].on && !c->cur[i];
}

static bool is_running(const ctx_t *c, size_t i) {
  return !c->fixed[i] && c->out[i].on && c->cur[i];
}

static bool is_running_past_min_on(const ctx_t *c, size_t i) {
  return is_running(c, i) && past_min_on(c, i);
}

/* Makes room for turn-on candidate i by switching off running units less
 * important than it (past their minimum on time, the least important
 * first) when that is enough to fit it under `below`. Returns whether it
 * did; *total is the plan's power after it. */
static bool preempt(ctx_t *c, size_t i, double *total, double below, bool *mark) {
  double e = expected_kw(c, i), freed = 0;
  memset(mark, 0, c->n * sizeof(*mark));
  size_t k;
  while (*total - freed + e > below &&
         (k = next_unit(c, mark, is_running_past_min_on, cmp_shed)) != SIZE_MAX) {
    mark[k] = true;
    if (c->u[k].priority >= c->u[i].priority)
      break; /* the rest are at least as important */
    freed += expected_kw(c, k);
  }
  if (*total - freed + e > below)
    return false;
  for (k = 0; k < c->n; k++)
    if (mark[k] && c->u[k].priority < c->u[i].priority)
      plan_off(c, k, EQP_HOLD_CAP, "peak-cap");
  *total += e - freed;
  return true;
}

/* 6. the group's power under peak_kw */
static void rule_cap(ctx_t *c, bool *done, bool *mark) {
  const eqp_policy_t *p = c->p;
  double total = 0;
  for (size_t i = 0; i < c->n; i++)
    if (!is_turn_on(c, i))
      total += expected_kw(c, i);
  double restore_below = p->peak_kw * (1.0 - p->peak_margin);
  memset(done, 0, c->n * sizeof(*done));
  for (size_t i; (i = next_unit(c, done, is_turn_on, cmp_restore)) != SIZE_MAX;) {
    done[i] = true;
    double e = expected_kw(c, i);
    if (total + e <= restore_below)
      total += e;
    else if (!preempt(c, i, &total, restore_below, mark))
      plan_off(c, i, EQP_HOLD_CAP, NULL);
  }
  /* Shedding: first those past their minimum on time, then, if the cap is
   * still exceeded, the others. */
  bool (*const passes[2])(const ctx_t *, size_t) = {is_running_past_min_on, is_running};
  memset(done, 0, c->n * sizeof(*done));
  for (int pass = 0; pass < 2 && total > p->peak_kw; pass++) {
    for (size_t i;
         total > p->peak_kw && (i = next_unit(c, done, passes[pass], cmp_shed)) != SIZE_MAX;) {
      done[i] = true;
      total -= expected_kw(c, i);
      plan_off(c, i, EQP_HOLD_CAP, "peak-cap");
    }
  }
}

void eqp_decide(const eqp_policy_t *p, const eqp_unit_t *u, size_t n, const eqp_env_t *env,
                eqp_plan_t *out) {
  bool *flags = calloc(n ? 5 * n : 1, sizeof(*flags));
  ctx_t c = {.p = p, .u = u, .n = n, .now = env->now, .out = out};
  for (size_t i = 0; i < n; i++) {
    bool cur = u[i].pending ? u[i].pending_on : u[i].on;
    out[i] = (eqp_plan_t){.on = cur, .held = cur ? EQP_HOLD_NONE : u[i].held};
  }
  if (!flags)
    return; /* out of memory: no change this time */
  c.cur = flags;
  c.fixed = flags + n;
  c.blocked = flags + 2 * n;
  bool *scratch = flags + 3 * n;
  for (size_t i = 0; i < n; i++) {
    c.cur[i] = out[i].on;
    c.fixed[i] = !u[i].controllable || (!u[i].known && !u[i].pending);
  }
  rule_override(&c);
  rule_schedule(&c, env);
  bool dust_up = true;
  if (p->dust_linked)
    dust_up = rule_dust(&c, env);
  if (p->duty > 0 && dust_up)
    rule_duty(&c);
  if (p->idle_off_s > 0)
    rule_idle(&c);
  /* Units the cap shed come back once nothing else holds them (a duty
   * group's come back through duty). */
  for (size_t i = 0; i < n; i++)
    if (free_unit(&c, i) && !out[i].on && out[i].held == EQP_HOLD_CAP && p->duty == 0)
      plan_on(&c, i, "peak-restore");
  /* Minimum off time: a unit to be switched on waits for it (overrides do
   * not); it keeps the hold it had, so it comes back next time. */
  for (size_t i = 0; i < n; i++) {
    if (!c.fixed[i] && out[i].on && !c.cur[i] && !past_min_off(&c, i)) {
      out[i].on = false;
      out[i].held = u[i].held != EQP_HOLD_NONE ? u[i].held : out[i].held;
    }
  }
  if (p->peak_kw > 0)
    rule_cap(&c, scratch, scratch + n);
  for (size_t i = 0; i < n; i++) {
    bool unknown = !u[i].controllable || (!u[i].known && !u[i].pending);
    out[i].command = !unknown && out[i].on != c.cur[i];
    if (out[i].on)
      out[i].held = EQP_HOLD_NONE;
    if (!out[i].command)
      out[i].reason = NULL;
  }
  free(flags);
}
