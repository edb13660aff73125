/* Energy accounting for equipment units and meters: cumulative counters
 * with their resets and rollovers, running / idle / off from power, daily
 * figures and carbon (equipment.h has the rules).
 *
 * Pure functions over plain structs: no loop, no storage. The daemon
 * (equipment.c) feeds them every ingested reading; the tests feed them
 * hand-made sequences. Days are local days of the process's TZ, which
 * gw_run() sets to [site] timezone. */

#include "gateway/equipment/equipment.h"
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

const char *eqp_run_name(int s) {
  static const char *const names[] = {"off", "idle", "running", "unknown"};
  return (unsigned)s < 4 ? names[s] : "?";
}

const char *ctr_event_name(int e) {
  static const char *const names[] = {"first", "step", "rollover", "reset", "jump", "stale"};
  return (unsigned)e < 6 ? names[e] : "?";
}

/* Shares of rated power below which a unit is off (standby: controller,
 * cab heater) and idle (powered, not working). Cranes and hoists idle on
 * their brakes and auxiliaries; a fog cannon's fan without its pump draws
 * a larger share. */
static const struct kind_threshold {
  const char *kind;
  double off_share, idle_share;
} kinds[] = {
    {"tower_crane", 0.02, 0.15},   {"hoist", 0.02, 0.10}, {"fog_cannon", 0.03, 0.25},
    {"concrete_pump", 0.02, 0.20}, {"pump", 0.03, 0.20},  {"dewatering_pump", 0.03, 0.20},
};
#define GENERAL_OFF_SHARE 0.02
#define GENERAL_IDLE_SHARE 0.15
#define UNRATED_OFF_KW 0.5
#define UNRATED_IDLE_KW 3.0

void eqp_kind_thresholds(const char *kind, double rated_kw, eqp_thresholds_t *out) {
  if (!(rated_kw > 0)) {
    out->off_kw = UNRATED_OFF_KW;
    out->idle_kw = UNRATED_IDLE_KW;
    return;
  }
  double off = GENERAL_OFF_SHARE, idle = GENERAL_IDLE_SHARE;
  for (size_t i = 0; kind && i < sizeof(kinds) / sizeof(kinds[0]); i++) {
    if (strcmp(kinds[i].kind, kind) == 0) {
      off = kinds[i].off_share;
      idle = kinds[i].idle_share;
    }
  }
  out->off_kw = off * rated_kw;
  out->idle_kw = idle * rated_kw;
}

eqp_run_t eqp_classify(const eqp_thresholds_t *th, double power_kw) {
  if (!isfinite(power_kw))
    return EQP_UNKNOWN;
  if (power_kw < th->off_kw)
    return EQP_OFF;
  return power_kw < th->idle_kw ? EQP_IDLE : EQP_RUNNING;
}

/* ---- counters */

/* The power of ten a counter showing `v` wraps at: 99,999.99 wraps at
 * 100,000, and so does 12,345 (a five-digit register). */
static double rollover_modulus(double v) { return v >= 1 ? pow(10.0, floor(log10(v)) + 1.0) : 1.0; }

static void baseline(energy_counter_t *c, double value, double t) {
  c->have = true;
  c->value = value;
  c->t = t;
}

ctr_event_t energy_counter_step(energy_counter_t *c, double value, double t, double max_per_h,
                                double *delta) {
  *delta = 0;
  if (!isfinite(value) || value < 0 || !isfinite(t))
    return CTR_STALE; /* no counter reads that: not a reading to count */
  if (!c->have) {
    baseline(c, value, t);
    return CTR_FIRST;
  }
  if (t <= c->t)
    return CTR_STALE;
  /* One minute of grace: the reading times are the meter's own clock. */
  double allowed = max_per_h > 0 ? max_per_h * ((t - c->t) / 3600.0 + 1.0 / 60.0) : INFINITY;
  if (value >= c->value) {
    double d = value - c->value;
    if (d > allowed) {
      c->jumps++;
      baseline(c, value, t);
      return CTR_JUMP;
    }
    *delta = d;
    baseline(c, value, t);
    return CTR_STEP;
  }
  double m = rollover_modulus(c->value), wrapped = m - c->value + value;
  bool rolled = max_per_h > 0 ? wrapped <= allowed : c->value >= 0.9 * m && value < 0.1 * m;
  if (rolled) {
    c->rollovers++;
    *delta = wrapped;
    baseline(c, value, t);
    return CTR_ROLLOVER;
  }
  c->resets++;
  *delta = value <= allowed ? value : 0; /* counting again from 0 */
  baseline(c, value, t);
  return CTR_RESET;
}

/* ---- days */

double energy_local_midnight(double t) {
  time_t s = (time_t)floor(t);
  struct tm tm;
  localtime_r(&s, &tm);
  tm.tm_hour = tm.tm_min = tm.tm_sec = 0;
  tm.tm_isdst = -1;
  return (double)mktime(&tm);
}

double energy_next_midnight(double t) {
  time_t s = (time_t)floor(t);
  struct tm tm;
  localtime_r(&s, &tm);
  tm.tm_hour = tm.tm_min = tm.tm_sec = 0;
  tm.tm_mday++;
  tm.tm_isdst = -1;
  return (double)mktime(&tm);
}

void energy_acc_free(energy_acc_t *a) {
  free(a->days);
  a->days = NULL;
  a->n = a->cap = 0;
}

energy_day_t *energy_acc_day(energy_acc_t *a, double t) {
  double day = energy_local_midnight(t);
  size_t lo = 0, hi = a->n;
  if (a->n && a->days[a->n - 1].day <= day) /* nearly always the last day */
    lo = a->n - 1;
  while (lo < hi) {
    size_t mid = (lo + hi) / 2;
    if (a->days[mid].day < day)
      lo = mid + 1;
    else
      hi = mid;
  }
  if (lo < a->n && a->days[lo].day == day)
    return &a->days[lo];
  if (a->n == a->cap) {
    size_t cap = a->cap ? a->cap * 2 : 8;
    energy_day_t *d = realloc(a->days, cap * sizeof(*d));
    if (!d)
      return NULL;
    a->days = d;
    a->cap = cap;
  }
  memmove(&a->days[lo + 1], &a->days[lo], (a->n - lo) * sizeof(*a->days));
  memset(&a->days[lo], 0, sizeof(*a->days));
  a->days[lo].day = day;
  a->n++;
  return &a->days[lo];
}

#define SPREAD_MAX_DAYS 1000 /* beyond, the rest goes on the last day */

/* Marks the days from the one containing `t` on as changed. */
static void mark_dirty(energy_acc_t *a, double t) {
  double day = energy_local_midnight(t);
  if (!a->dirty || day < a->dirty_from)
    a->dirty_from = day;
  a->dirty = true;
}

int energy_acc_spread(energy_acc_t *a, size_t what, double amount, double t0, double t1) {
  if (amount == 0)
    return 0;
  mark_dirty(a, t1 > t0 ? t0 : t1);
  if (!(t1 > t0)) {
    energy_day_t *d = energy_acc_day(a, t1);
    if (!d)
      return -ENOMEM;
    *(double *)((char *)d + what) += amount;
    return 0;
  }
  double left = amount, t = t0;
  for (int i = 0; left != 0; i++) {
    double next = energy_next_midnight(t);
    energy_day_t *d = energy_acc_day(a, t);
    if (!d)
      return -ENOMEM;
    double part = next >= t1 || i == SPREAD_MAX_DAYS ? left : amount * (next - t) / (t1 - t0);
    *(double *)((char *)d + what) += part;
    left -= part;
    t = next;
    if (next >= t1 || i == SPREAD_MAX_DAYS)
      break;
  }
  return 0;
}

ctr_event_t energy_acc_kwh(energy_acc_t *a, double value, double t, double max_kw) {
  double t0 = a->kwh_ctr.t, delta;
  ctr_event_t ev = energy_counter_step(&a->kwh_ctr, value, t, max_kw, &delta);
  if (ev != CTR_STALE)
    mark_dirty(a, t);
  if (delta > 0)
    energy_acc_spread(a, offsetof(energy_day_t, kwh), delta, t0, t);
  return ev;
}

ctr_event_t energy_acc_fuel(energy_acc_t *a, double value, double t, double max_l_per_h) {
  double t0 = a->fuel_ctr.t, delta;
  ctr_event_t ev = energy_counter_step(&a->fuel_ctr, value, t, max_l_per_h, &delta);
  if (ev != CTR_STALE)
    mark_dirty(a, t);
  if (delta > 0)
    energy_acc_spread(a, offsetof(energy_day_t, fuel_l), delta, t0, t);
  return ev;
}

void energy_acc_power(energy_acc_t *a, const eqp_thresholds_t *th, double power_kw, double t,
                      double max_gap_s) {
  if (!isfinite(power_kw) || !isfinite(t) || (a->have_power && t <= a->power_t))
    return;
  if (a->have_power) {
    double t0 = a->power_t, t1 = fmin(t, t0 + max_gap_s), dt = t1 - t0;
    eqp_run_t s = eqp_classify(th, a->power_kw);
    size_t what = s == EQP_RUNNING ? offsetof(energy_day_t, run_s)
                  : s == EQP_IDLE  ? offsetof(energy_day_t, idle_s)
                                   : offsetof(energy_day_t, off_s);
    energy_acc_spread(a, what, dt, t0, t1);
    if (s == EQP_IDLE)
      energy_acc_spread(a, offsetof(energy_day_t, idle_kwh), a->power_kw * dt / 3600.0, t0, t1);
  }
  a->have_power = true;
  a->power_t = t;
  a->power_kw = power_kw;
}

void energy_acc_sum(const energy_acc_t *a, double since, double until, energy_day_t *out) {
  memset(out, 0, sizeof(*out));
  out->day = since;
  for (size_t i = 0; i < a->n; i++) {
    const energy_day_t *d = &a->days[i];
    if (d->day < since || d->day >= until)
      continue;
    out->kwh += d->kwh;
    out->fuel_l += d->fuel_l;
    out->run_s += d->run_s;
    out->idle_s += d->idle_s;
    out->off_s += d->off_s;
    out->idle_kwh += d->idle_kwh;
  }
}

double carbon_t(const carbon_factors_t *f, double kwh, double fuel_l) {
  return kwh / 1000.0 * f->grid_t_per_mwh + fuel_l * f->diesel_kg_per_l / 1000.0;
}
