/* Construction-site noise by GB 12523-2011: the LAeq and Lmax of one window
 * and its verdict against the day or night limit (rules.h).
 *
 * The energy average is accumulated as Σ tᵢ·10^(0.1·(Lᵢ − Lref)) with Lref
 * the window's first level, so that neither very loud nor very quiet
 * windows lose digits to the exponent; LAeq = Lref + 10·lg(Σ/T). */

#include "gateway/rules/rules.h"
#include <math.h>
#include <string.h>
#include <time.h>

void noise_params_default(noise_params_t *p) {
  memset(p, 0, sizeof(*p)); /* padding too: tests compare whole structs */
  p->window_s = 1200;
  p->day_start_h = 6;
  p->night_start_h = 22;
  p->day_limit = 70;
  p->night_limit = 55;
  p->lmax_margin = 15;
  p->indoor = false;
  p->sample_s = 1;
  p->complete_share = 0.75;
  p->warn_margin = 3;
}

void noise_params_from_config(const sg_config_t *cfg, noise_params_t *p) {
  noise_params_default(p);
  p->window_s = cfg->noise_window_min * 60.0;
  p->day_start_h = cfg->noise_day_start_h;
  p->night_start_h = cfg->noise_night_start_h;
  p->day_limit = cfg->noise_day_limit;
  p->night_limit = cfg->noise_night_limit;
  p->lmax_margin = cfg->noise_lmax_margin;
  p->indoor = cfg->noise_indoor != 0;
  p->sample_s = cfg->noise_sample_s;
  p->complete_share = cfg->noise_complete_share;
  p->warn_margin = cfg->noise_warn_margin;
}

double noise_round(double db) { return isfinite(db) ? round(db * 10.0) / 10.0 : db; }

double env_local_midnight(double t) {
  time_t s = (time_t)floor(t);
  struct tm tm;
  localtime_r(&s, &tm);
  tm.tm_hour = tm.tm_min = tm.tm_sec = 0;
  tm.tm_isdst = -1;
  return (double)mktime(&tm);
}

/* The local midnight after the one at `midnight` (days are 23-25 h long
 * where clocks change). */
static double next_midnight(double midnight) {
  time_t s = (time_t)midnight;
  struct tm tm;
  localtime_r(&s, &tm);
  tm.tm_mday++;
  tm.tm_hour = tm.tm_min = tm.tm_sec = 0;
  tm.tm_isdst = -1;
  return (double)mktime(&tm);
}

double env_aligned_start(double len, double t, double *end) {
  double m = env_local_midnight(t), next = next_midnight(m);
  double start = m + floor((t - m) / len) * len;
  double e = start + len;
  if (end)
    *end = e < next ? e : next;
  return start;
}

double noise_aligned_start(const noise_params_t *p, double t, double *end) {
  return env_aligned_start(p->window_s, t, end);
}

/* Hours since local midnight, by the wall clock. */
static double local_hours(double t) {
  time_t s = (time_t)floor(t);
  struct tm tm;
  localtime_r(&s, &tm);
  return tm.tm_hour + tm.tm_min / 60.0 + (tm.tm_sec + (t - floor(t))) / 3600.0;
}

bool noise_is_night(const noise_params_t *p, double t) {
  double h = local_hours(t), d = p->day_start_h, n = p->night_start_h;
  if (d < n) /* the usual case: day in the middle of the clock */
    return !(h >= d && h < n);
  return h >= n && h < d; /* a night that does not cross midnight */
}

/* The period of [start, end). Both periods last longer than a window, so a
 * window touches both exactly when its first and last instants differ; it
 * is then judged by the stricter one (the lower limit). */
static noise_period_t window_period(const noise_params_t *p, double start, double end, double day,
                                    double night) {
  bool first = noise_is_night(p, start), last = noise_is_night(p, end - 1e-3);
  if (first == last)
    return first ? NOISE_NIGHT : NOISE_DAY;
  return night <= day ? NOISE_NIGHT : NOISE_DAY;
}

void noise_window(const noise_params_t *p, const env_sample_t *la, size_t n_la,
                  const env_sample_t *lamax, size_t n_lamax, double start, double end,
                  noise_window_t *w) {
  memset(w, 0, sizeof(*w));
  w->start = start;
  w->end = end;
  double indoor = p->indoor ? NOISE_INDOOR_DB : 0;
  double day = p->day_limit - indoor, night = p->night_limit - indoor;
  w->period = window_period(p, start, end, day, night);
  w->limit = w->period == NOISE_NIGHT ? night : day;
  w->lmax_limit = w->period == NOISE_NIGHT ? w->limit + p->lmax_margin : NAN;

  double sum = 0, ref = NAN, lmax = -INFINITY;
  for (size_t i = 0; i < n_la; i++) {
    double t = la[i].t;
    if (t < start || t >= end || !isfinite(la[i].v))
      continue;
    double next = i + 1 < n_la ? la[i + 1].t : INFINITY;
    double d = fmin(fmin(next - t, p->sample_s), end - t);
    if (d <= 0)
      continue; /* two readings at one instant: the later one counts */
    if (isnan(ref))
      ref = la[i].v;
    sum += d * pow(10.0, 0.1 * (la[i].v - ref));
    w->measured_s += d;
    w->n++;
    lmax = fmax(lmax, la[i].v);
  }
  bool have_lamax = false;
  for (size_t i = 0; i < n_lamax; i++) {
    if (lamax[i].t < start || lamax[i].t >= end || !isfinite(lamax[i].v))
      continue;
    if (!have_lamax)
      lmax = -INFINITY; /* a real Lmax reading outranks the 1-s LAeq values */
    have_lamax = true;
    lmax = fmax(lmax, lamax[i].v);
  }
  w->coverage = w->measured_s / (end - start);
  w->complete = w->coverage >= p->complete_share - 1e-9;
  w->laeq = w->measured_s > 0 ? noise_round(ref + 10.0 * log10(sum / w->measured_s)) : NAN;
  w->lmax = isfinite(lmax) ? noise_round(lmax) : NAN;

  if (w->measured_s > 0) {
    /* Incomplete: the measured energy alone, as if the rest were silent,
     * is a lower bound of the window's LAeq. */
    double over = w->complete ? w->laeq : noise_round(ref + 10.0 * log10(sum / (end - start)));
    w->laeq_over = over > w->limit;
  }
  w->lmax_over = w->period == NOISE_NIGHT && isfinite(w->lmax) && w->lmax > w->lmax_limit;
  w->verdict = w->laeq_over || w->lmax_over ? 1 : w->complete ? 0 : -1;
}
