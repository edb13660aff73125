/* The machinery rules as pure functions (machinery.h): presence, the
 * zone's rule, the daily figures and the emission factor table. No loop,
 * no storage: tests/test_machinery.c checks them with hand-computed cases,
 * and the daemon and the API share them, so a machine gets the same
 * verdict and the same figures wherever it is shown. */
#include "gateway/machinery/machinery.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void mach_zone_from_config(const sg_config_t *cfg, mach_zone_t *z) {
  int s = proto_stage_from_name(cfg->machinery_min_stage);
  z->min_stage = s >= 0 ? s : PROTO_STAGE_III;
  z->require_registration = cfg->machinery_require_registration != 0;
  z->opacity_limit = cfg->machinery_opacity_limit;
  z->presence_s = cfg->machinery_presence_min * 60.0;
}

bool mach_on_site(const mach_zone_t *z, bool have_move, bool move_in, double move_t,
                  double reading_t, double now) {
  bool fresh =
      reading_t > 0 && now - reading_t <= z->presence_s && (!have_move || reading_t >= move_t);
  return fresh || (have_move && move_in);
}

static void add_reason(char *out, size_t cap, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void add_reason(char *out, size_t cap, const char *fmt, ...) {
  if (!out || !cap)
    return;
  size_t used = strlen(out);
  if (used && used + 2 < cap) {
    snprintf(out + used, cap - used, "; ");
    used += 2;
  }
  va_list ap;
  va_start(ap, fmt);
  if (used < cap)
    vsnprintf(out + used, cap - used, fmt, ap);
  va_end(ap);
}

unsigned mach_judge(const mach_zone_t *z, bool registered, int stage, double opacity, char *reasons,
                    size_t cap) {
  unsigned bits = 0;
  if (reasons && cap)
    reasons[0] = '\0';
  if (!registered) {
    if (z->require_registration) {
      bits |= MACH_UNREGISTERED;
      add_reason(reasons, cap, "not in the register");
    }
  } else if (stage != PROTO_STAGE_ELECTRIC && stage < z->min_stage) {
    bits |= MACH_STAGE;
    add_reason(reasons, cap, "stage %s is below the zone's %s (GB 20891-2014)",
               proto_stage_name(stage), proto_stage_name(z->min_stage));
  }
  if (stage != PROTO_STAGE_ELECTRIC && z->opacity_limit > 0 && isfinite(opacity) &&
      opacity > z->opacity_limit) {
    bits |= MACH_SMOKE;
    add_reason(reasons, cap, "smoke %.2f 1/m is above %.2f (GB 36886-2018)", opacity,
               z->opacity_limit);
  }
  return bits;
}

typedef struct span {
  double a, b;
} span_t;

static int span_cmp(const void *x, const void *y) {
  const span_t *p = x, *q = y;
  return p->a < q->a ? -1 : p->a > q->a;
}

static void span_add(span_t *s, size_t *n, double a, double b, double from, double to) {
  a = a < from ? from : a;
  b = b > to ? to : b;
  if (b > a)
    s[(*n)++] = (span_t){a, b};
}

double mach_onsite_s(const mach_zone_t *z, bool in_before, const mach_move_t *moves, size_t n_moves,
                     const double *rt, size_t n_rt, double from, double to) {
  span_t *s = malloc((n_moves + n_rt + 1) * sizeof(*s));
  if (!s)
    return NAN;
  size_t n = 0, next_move = 0;
  bool in = in_before;
  double cursor = from;
  for (size_t i = 0; i < n_moves; i++) {
    if (in)
      span_add(s, &n, cursor, moves[i].t, from, to);
    in = moves[i].in;
    cursor = moves[i].t;
  }
  if (in)
    span_add(s, &n, cursor, to, from, to);
  for (size_t i = 0; i < n_rt; i++) {
    double end = rt[i] + z->presence_s;
    if (i + 1 < n_rt && rt[i + 1] < end)
      end = rt[i + 1];
    while (next_move < n_moves && moves[next_move].t <= rt[i])
      next_move++;
    if (next_move < n_moves && moves[next_move].t < end) /* the gate's newer word wins */
      end = moves[next_move].t;
    span_add(s, &n, rt[i], end, from, to);
  }
  qsort(s, n, sizeof(*s), span_cmp);
  double total = 0, a = 0, b = -INFINITY;
  for (size_t i = 0; i < n; i++) {
    if (s[i].a > b) {
      if (b > a)
        total += b - a;
      a = s[i].a;
      b = s[i].b;
    } else if (s[i].b > b) {
      b = s[i].b;
    }
  }
  if (n && b > a)
    total += b - a;
  free(s);
  return total;
}

double mach_counter_rise(const env_sample_t *s, size_t n, double from, double to) {
  bool have_base = false, any = false;
  double base = 0, rise = 0;
  for (size_t i = 0; i < n; i++) {
    if (s[i].t < from) {
      base = s[i].v;
      have_base = true;
      continue;
    }
    if (s[i].t >= to)
      break;
    any = true;
    if (have_base)
      rise += s[i].v >= base ? s[i].v - base : s[i].v; /* a fall: reset, counts from 0 */
    base = s[i].v;
    have_base = true;
  }
  return any ? rise : NAN;
}

/* g/kWh by stage and power band (< 37, 37-75, 75-130, >= 130 kW): the
 * limit values of GB 20891-2007 (China I, II) and GB 20891-2014 (III,
 * IV), NOx + HC where the standard limits their sum. See machinery.h.
 * Checked (deploy/CONFIG.md "What is and is not confirmed"): China I-IV
 * follow EU Stage I, II, IIIA, IIIB (dieselnet.com, China nonroad), and
 * the >= 130 kW column equals the EU limits (albonair.com: 9.2/0.54,
 * 6.0/0.2, 4.0/0.2, 2.0/0.025); the other columns are EU values from
 * memory, not checked against GB 20891's tables. */
static const mach_factor_t factor_table[PROTO_STAGE_ELECTRIC][4] = {
    [PROTO_STAGE_0] = {{16.2, 1.5}, {13.8, 1.275}, {13.8, 1.05}, {13.8, 0.81}}, /* 1.5 x I */
    [PROTO_STAGE_I] = {{10.8, 1.0}, {9.2, 0.85}, {9.2, 0.70}, {9.2, 0.54}},
    [PROTO_STAGE_II] = {{8.0, 0.8}, {7.0, 0.4}, {6.0, 0.3}, {6.0, 0.2}},
    [PROTO_STAGE_III] = {{7.5, 0.6}, {4.7, 0.4}, {4.0, 0.3}, {4.0, 0.2}},
    [PROTO_STAGE_IV] = {{4.7, 0.4}, {4.7, 0.025}, {3.3, 0.025}, {2.0, 0.025}},
};

void mach_emission_factor(int stage, double power_kw, mach_factor_t *out) {
  if (stage < 0 || stage >= PROTO_STAGE_ELECTRIC) {
    *out = (mach_factor_t){0, 0};
    return;
  }
  int band = power_kw < 37 ? 0 : power_kw < 75 ? 1 : power_kw < 130 ? 2 : 3;
  *out = factor_table[stage][band];
}

double mach_idle_share(double idle_h, double engine_h) {
  if (!isfinite(idle_h) || !isfinite(engine_h) || engine_h <= 0)
    return NAN;
  double s = idle_h / engine_h;
  return s < 0 ? 0 : s > 1 ? 1 : s;
}

void mach_day_emissions(const proto_machine_t *m, double diesel_kg_per_l, mach_day_t *d) {
  double kg_per_l = m->fuel == PROTO_FUEL_DIESEL   ? diesel_kg_per_l
                    : m->fuel == PROTO_FUEL_PETROL ? MACH_PETROL_KG_PER_L
                                                   : 0;
  d->t_co2 = isfinite(d->fuel_l) ? d->fuel_l * kg_per_l / 1000.0 : 0;
  mach_factor_t f;
  mach_emission_factor(m->stage, m->power_kw, &f);
  double kwh = isfinite(d->engine_h) ? d->engine_h * m->power_kw * MACH_LOAD_FACTOR : 0;
  d->nox_kg = kwh * f.nox_g_per_kwh / 1000.0;
  d->pm_kg = kwh * f.pm_g_per_kwh / 1000.0;
}
