/* Sensor health: the checks that tell a broken, stuck, mis-set or tampered
 * sensor from a real reading (rules.h). Each is a pure function over one
 * device's samples; the rule engine turns a firing check into an alarm. */
#include "gateway/rules/rules.h"
#include "protocol/protocol.h"

#include <math.h>
#include <string.h>

void health_params_default(health_params_t *p) {
  memset(p, 0, sizeof(*p)); /* padding too: tests compare whole structs */
  p->offline_intervals = 3;
  p->flatline_s = 1800;
  p->skew_s = 120;
  p->rh_jump = 20;
  p->pm_drop = 0.5;
  p->jump_s = 300;
}

void health_params_from_config(const sg_config_t *c, health_params_t *p) {
  health_params_default(p);
  p->offline_intervals = c->health_offline_intervals;
  p->flatline_s = c->health_flatline_min * 60.0;
  p->skew_s = c->health_skew_s;
  p->rh_jump = c->health_rh_jump;
  p->pm_drop = c->health_pm_drop;
  p->jump_s = c->health_jump_s;
}

bool health_offline(const health_params_t *p, double interval_s, double last, double now,
                    double *silent_s) {
  *silent_s = last > 0 ? now - last : INFINITY;
  return !gw_is_online(p->offline_intervals, interval_s, last, now);
}

bool health_flatline(const health_params_t *p, const env_sample_t *s, size_t n, double *run_s) {
  *run_s = 0;
  if (n == 0)
    return false;
  size_t first = n - 1;
  while (first > 0 && s[first - 1].v == s[n - 1].v)
    first--;
  *run_s = s[n - 1].t - s[first].t;
  return n - first >= 3 && *run_s >= p->flatline_s;
}

/* What the instruments can measure at all; a reading outside is a fault,
 * not weather. Light-scattering dust monitors span 0-10 mg/m3 at most;
 * class 1/2 sound level meters 20-140 dB; RH 0-100 %. */
bool health_range(int q, double *lo, double *hi) {
  switch (q) {
  case PROTO_Q_TSP:
  case PROTO_Q_PM10:
  case PROTO_Q_PM2_5:
    *lo = 0, *hi = 10000;
    return true;
  case PROTO_Q_LA:
  case PROTO_Q_LAMAX:
    *lo = 20, *hi = 140;
    return true;
  case PROTO_Q_RH:
    *lo = 0, *hi = 100;
    return true;
  case PROTO_Q_TEMP:
    *lo = -60, *hi = 70; /* Harbin's record low is -38.1 C */
    return true;
  case PROTO_Q_WIND_SPEED:
    *lo = 0, *hi = 75;
    return true;
  case PROTO_Q_WIND_DIR:
    *lo = 0, *hi = 360;
    return true;
  case PROTO_Q_PRESSURE:
    *lo = 50, *hi = 110;
    return true;
  default:
    return false;
  }
}

bool health_out_of_range(int q, const env_sample_t *s, size_t n, double *bad) {
  double lo, hi;
  if (!health_range(q, &lo, &hi))
    return false;
  for (size_t i = 0; i < n; i++) {
    if (!(s[i].v >= lo && s[i].v <= hi)) {
      *bad = s[i].v;
      return true;
    }
  }
  return false;
}

bool health_clock_skew(const health_params_t *p, double receipt, double newest, double *skew_s) {
  *skew_s = receipt - newest;
  return receipt > 0 && newest > 0 && fabs(*skew_s) > p->skew_s;
}

/* The latest sample at or before t, or NULL; `*k` walks forward with t. */
static const env_sample_t *at_or_before(const env_sample_t *s, size_t n, size_t *k, double t) {
  while (*k + 1 < n && s[*k + 1].t <= t)
    (*k)++;
  return n && s[*k].t <= t ? &s[*k] : NULL;
}

bool health_interference(const health_params_t *p, const env_sample_t *pm, size_t n_pm,
                         const env_sample_t *rh, size_t n_rh, double *at) {
  /* For each pm reading j, look back over readings i within jump_s: a fall
   * by pm_drop together with an RH rise by rh_jump over the same span. */
  size_t kj = 0;
  for (size_t j = 1; j < n_pm; j++) {
    const env_sample_t *rj = at_or_before(rh, n_rh, &kj, pm[j].t);
    if (!rj)
      continue;
    for (size_t i = j; i-- > 0 && pm[j].t - pm[i].t <= p->jump_s;) {
      if (pm[i].v <= 0 || pm[j].v > pm[i].v * (1 - p->pm_drop))
        continue;
      size_t ki = 0; /* i walks backwards: search from the start */
      const env_sample_t *ri = at_or_before(rh, n_rh, &ki, pm[i].t);
      if (ri && rj->v - ri->v >= p->rh_jump) {
        *at = pm[j].t;
        return true;
      }
    }
  }
  return false;
}
