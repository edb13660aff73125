/* Dust at the site boundary: time-weighted averages of tsp, pm10 and pm2_5
 * over clock-aligned windows, with readings taken in fog left out, judged
 * against the configured warning and alarm levels (rules.h). */
#include "gateway/rules/rules.h"
#include "protocol/protocol.h"

#include <math.h>
#include <string.h>

static const char *const names[DUST_QUANTITIES] = {"tsp", "pm10", "pm2_5"};
static const int protos[DUST_QUANTITIES] = {PROTO_Q_TSP, PROTO_Q_PM10, PROTO_Q_PM2_5};

const char *dust_quantity_name(int dq) { return dq >= 0 && dq < DUST_QUANTITIES ? names[dq] : "?"; }

int dust_proto_quantity(int dq) { return dq >= 0 && dq < DUST_QUANTITIES ? protos[dq] : -1; }

void dust_params_default(dust_params_t *p) {
  memset(p, 0, sizeof(*p));
  p->window_s[DUST_SHORT] = 900;
  p->window_s[DUST_LONG] = 3600;
  p->warn[DUST_PM10][DUST_LONG] = 150;
  p->alarm[DUST_PM10][DUST_LONG] = 200;
  p->rh_max = 95;
  p->complete_share = 0.75;
}

void dust_params_from_config(const sg_config_t *c, dust_params_t *p) {
  dust_params_default(p);
  p->window_s[DUST_SHORT] = c->dust_short_min * 60.0;
  p->window_s[DUST_LONG] = c->dust_long_min * 60.0;
  p->warn[DUST_PM10][DUST_SHORT] = c->dust_pm10_short_warn;
  p->alarm[DUST_PM10][DUST_SHORT] = c->dust_pm10_short_alarm;
  p->warn[DUST_PM10][DUST_LONG] = c->dust_pm10_long_warn;
  p->alarm[DUST_PM10][DUST_LONG] = c->dust_pm10_long_alarm;
  p->warn[DUST_PM2_5][DUST_SHORT] = c->dust_pm2_5_short_warn;
  p->alarm[DUST_PM2_5][DUST_SHORT] = c->dust_pm2_5_short_alarm;
  p->warn[DUST_PM2_5][DUST_LONG] = c->dust_pm2_5_long_warn;
  p->alarm[DUST_PM2_5][DUST_LONG] = c->dust_pm2_5_long_alarm;
  p->warn[DUST_TSP][DUST_SHORT] = c->dust_tsp_short_warn;
  p->alarm[DUST_TSP][DUST_SHORT] = c->dust_tsp_short_alarm;
  p->warn[DUST_TSP][DUST_LONG] = c->dust_tsp_long_warn;
  p->alarm[DUST_TSP][DUST_LONG] = c->dust_tsp_long_alarm;
  p->max_exceed_day = c->dust_max_exceed_day;
  p->rh_max = c->dust_rh_max;
  p->complete_share = c->dust_complete_share;
}

/* The humidity in force at time t: the latest rh at or before t, no older
 * than `max_age`; NAN when there is none. `*k` walks forward with t. */
static double rh_at(const env_sample_t *rh, size_t n, size_t *k, double t, double max_age) {
  while (*k + 1 < n && rh[*k + 1].t <= t)
    (*k)++;
  if (n == 0 || rh[*k].t > t || t - rh[*k].t > max_age)
    return NAN;
  return rh[*k].v;
}

void dust_window(const dust_params_t *p, int dq, int wk, const env_sample_t *v, size_t n,
                 const env_sample_t *rh, size_t n_rh, double interval_s, double start, double end,
                 dust_window_t *w) {
  memset(w, 0, sizeof(*w));
  w->start = start;
  w->end = end;
  w->warn = p->warn[dq][wk];
  w->alarm = p->alarm[dq][wk];
  double sum = 0, max = -INFINITY;
  size_t k = 0;
  for (size_t i = 0; i < n; i++) {
    double t = v[i].t;
    if (t < start || t >= end || !isfinite(v[i].v))
      continue;
    w->n++;
    double h = rh_at(rh, n_rh, &k, t, 2 * interval_s);
    if (isfinite(h) && h > p->rh_max) {
      w->unreliable++;
      continue;
    }
    double next = i + 1 < n ? v[i + 1].t : INFINITY;
    double d = fmin(fmin(next - t, interval_s), end - t);
    if (d <= 0)
      continue;
    sum += d * v[i].v;
    w->measured_s += d;
    max = fmax(max, v[i].v);
  }
  w->coverage = w->measured_s / (end - start);
  w->complete = w->coverage >= p->complete_share - 1e-9;
  w->mean = w->measured_s > 0 ? sum / w->measured_s : NAN;
  w->max = isfinite(max) ? max : NAN;
  if (!w->complete || (w->warn <= 0 && w->alarm <= 0)) {
    w->level = -1;
    return;
  }
  /* Averages are judged at 0.1 ug/m3, the resolution stations report. */
  double m = round(w->mean * 10.0) / 10.0;
  w->level = w->alarm > 0 && m > w->alarm ? 2 : w->warn > 0 && m > w->warn ? 1 : 0;
}

size_t dust_count_level(const dust_window_t *w, size_t n, int level) {
  size_t c = 0;
  for (size_t i = 0; i < n; i++)
    c += w[i].level >= level;
  return c;
}
