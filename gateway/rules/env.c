/* The rule engine of noise, dust and sensor health (rules.h).
 *
 * A uv_timer ticks every ENV_TICK_MS. A tick starts one evaluation on the
 * libuv threadpool (never two at once): the worker reads each device's
 * recent samples on its own read-only storage connection, judges them with
 * the pure functions of noise.c, dust.c and health.c, and fills a list of
 * conditions. Back on the loop, after_work reports them to the alarm model.
 *
 * Why a worker and not the loop or an HTTP thread: a query over an hour
 * of 1-s noise samples takes milliseconds to tens of milliseconds, which
 * the loop must not spend (it acknowledges sensors); the HTTP threads are the
 * manager's. A read-only WAL connection never blocks the writer, and the
 * worker owns it alone (one evaluation at a time), so it needs no lock.
 *
 * What each rule reports (rule names are the alarm model's):
 *   noise.laeq        sliding LAeq,20min vs the period's limit; warning
 *                     within warn_margin below it (GB 12523-2011 4.1)
 *   noise.night_lmax  Lmax in the sliding window at night vs limit + 15 (4.2)
 *   dust.<q>_short    sliding short-window mean vs its levels
 *   dust.<q>_long     sliding long-window mean vs its levels
 *   dust.<q>_exceed_day  long clock windows at alarm level today vs
 *                     [dust] max_exceed_day
 *   health.offline, health.flatline, health.range, health.clock_skew,
 *   health.interference   (health.c)
 * Incomplete windows report nothing: the alarm keeps its state.
 *
 * Late data (a sensor's backlog after an outage, `sitesim --history`): the
 * sliding windows end now, so readings that arrive minutes or days after
 * they were taken would never be judged. So for each noise and dust device
 * the engine keeps the data time through which it has judged it. When the
 * device's newest stored reading lies beyond that, further back than the
 * device's live lag, the noise and dust rules are replayed over the late
 * data every ENV_REPLAY_STEP_S of data time, each report carrying its own
 * time (alarm_cond_t.at): the backlog's exceedances are raised, cleared and
 * uploaded at the time they happened. At most ENV_REPLAY_MAX_S of data time
 * per device and tick, and replays begin while the evaluation is within
 * ENV_REPLAY_BUDGET_MS (the devices left over replay first at their next
 * evaluation); the live windows of a device wait while its replay has not
 * caught up, so one alarm's reports stay in time order. Sensor
 * health is judged live only (it is about the sensor now). */
#define LOG_MODULE "env"
#include "gateway/rules/rules.h"
#include "protocol/protocol.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ENV_FIRST_MS 3000     /* first evaluation after start */
#define ENV_RANGE_S 300.0     /* out-of-range readings count this long */
#define NOISE_CLEAR_DB 1.0    /* an LAeq alarm clears 1 dB below its limit */
#define DUST_CLEAR_SHARE 0.05 /* a dust level clears 5% below its threshold */
#define ENV_SKEW_TICKS 3      /* evaluations a clock skew must hold steady */
/* Devices judged per evaluation. A pass over a large site is spread over
 * several ticks so that its verdicts (about 13 per device, ~200 bytes each
 * with their message) stay about a MB: 10,000 devices at once took 60 MB
 * (when each carried a 256-byte message buffer). A site of up to this many
 * devices is judged whole every tick. */
#define ENV_SLICE 512
#define ENV_REPLAY_STEP_S 60.0         /* data time between two replayed evaluations */
#define ENV_REPLAY_LAG_S 120.0         /* data this recent (or 2 intervals) is live */
#define ENV_REPLAY_MAX_S (12 * 3600.0) /* data time replayed per device and tick */
/* Wall time an evaluation may spend replaying. Past this, the
 * evaluation's other devices keep their replay (and their live windows)
 * for their next evaluation, where they replay first. (When each raw read
 * went through every series' tail packs in its range, with 10,000 devices
 * sending a day late (make bench) one read took 25-50 ms and an
 * evaluation of 512 devices 25 s, a core the writer needed.) */
#define ENV_REPLAY_BUDGET_MS (ENV_TICK_MS / 4)

/* One verdict, with its strings kept; its message is in the evaluation's
 * text (most verdicts say all is normal, in a sentence shorter than the
 * 256 bytes a message may take). */
typedef struct verdict {
  char rule[ALARM_RULE_MAX + 1];
  char source[SG_ID_MAX + 1];
  char unit[16];
  size_t message; /* offset + 1 into text; 0: none */
  alarm_cond_t c;
} verdict_t;

#define ENV_MESSAGE_MAX 256

struct env {
  gw_t *gw;
  uv_timer_t timer;
  uv_work_t work;
  bool busy, stopping, timer_closed;
  noise_params_t np;
  dust_params_t dp;
  health_params_t hp;
  stor_reader_t *reader; /* the worker's; opened on first use */
  /* one evaluation: inputs set on the loop, outputs read on the loop */
  double now;
  size_t slice_begin, slice_end; /* devices of this evaluation (cfg order) */
  int64_t *last_ms;              /* receipt time per device (cfg order) */
  /* clock skew must hold steady over ENV_SKEW_TICKS evaluations: a device
   * catching up on a backlog also looks late, but less so at every tick */
  double *skew_prev;
  int *skew_runs;
  int *dust_level; /* loop thread: PM10 level per device, -1 unknown */
  /* late data (worker; cfg order): the data time through which a noise or
   * dust device has been judged (0: from its first reading on), and its
   * newest stored reading at this evaluation */
  double *judged, *newest;
  bool *deferred;         /* replay put off by the budget: first next time */
  uint64_t replay_end_ms; /* this evaluation replays until then (sg_mono_ms) */
  size_t replays;         /* replays begun in this evaluation */
  double at;              /* while replaying: the data time judged (verdicts carry it) */
  verdict_t *v;
  size_t n, cap;
  char *text; /* the verdicts' messages (say()) */
  size_t text_len, text_cap;
  int err;
};

int env_load(stor_reader_t *r, const char *device, int quantity, double since, double until,
             env_sample_t **out, size_t *n) {
  stor_point_t *pts = NULL;
  size_t np = 0;
  *out = NULL;
  *n = 0;
  int rc = stor_query(r, device, quantity, STOR_STEP_RAW, (int64_t)llround(since * 1000.0),
                      (int64_t)llround(until * 1000.0), ENV_SAMPLES_MAX, &pts, &np);
  if (rc == -ENOENT)
    return 0;
  if (rc != 0 || np == 0)
    return rc;
  env_sample_t *s = malloc(np * sizeof(*s));
  if (!s) {
    free(pts);
    return -ENOMEM;
  }
  for (size_t i = 0; i < np; i++)
    s[i] = (env_sample_t){(double)pts[i].t_ms / 1000.0, pts[i].mean};
  free(pts);
  *out = s;
  *n = np;
  return 0;
}

/* ---- verdicts (worker) */

static void say(struct env *e, verdict_t *v, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void say(struct env *e, verdict_t *v, const char *fmt, ...) {
  if (e->text_cap - e->text_len < ENV_MESSAGE_MAX) {
    size_t cap = e->text_cap ? e->text_cap * 2 : 16384;
    char *t = realloc(e->text, cap);
    if (!t)
      return; /* the verdict stands without its sentence */
    e->text = t;
    e->text_cap = cap;
  }
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(e->text + e->text_len, ENV_MESSAGE_MAX, fmt, ap);
  va_end(ap);
  if (n < 0)
    return;
  v->message = e->text_len + 1;
  e->text_len += (n < ENV_MESSAGE_MAX ? (size_t)n : ENV_MESSAGE_MAX - 1) + 1;
}

static verdict_t *add(struct env *e, const char *rule, const char *source, int level, double figure,
                      double limit, const char *unit) {
  if (e->n == e->cap) {
    size_t cap = e->cap ? e->cap * 2 : 64;
    verdict_t *v = realloc(e->v, cap * sizeof(*v));
    if (!v)
      return NULL;
    e->v = v;
    e->cap = cap;
  }
  verdict_t *v = &e->v[e->n++];
  memset(v, 0, sizeof(*v));
  snprintf(v->rule, sizeof(v->rule), "%s", rule);
  snprintf(v->source, sizeof(v->source), "%s", source);
  snprintf(v->unit, sizeof(v->unit), "%s", unit);
  v->c.level = level;
  v->c.figure = figure;
  v->c.limit = limit;
  v->c.t = e->now;
  v->c.at = e->at;
  return v;
}

static const char *period_name(noise_period_t p) { return p == NOISE_NIGHT ? "night" : "day"; }

static void judge_noise(struct env *e, const sg_device_t *d, const env_sample_t *la, size_t n_la,
                        const env_sample_t *lamax, size_t n_lamax) {
  noise_window_t w;
  double start = e->now - e->np.window_s;
  noise_window(&e->np, la, n_la, lamax, n_lamax, start, e->now, &w);
  if (w.n == 0)
    return; /* offline: health says so */
  if (w.verdict >= 0) {
    double warn = e->np.warn_margin > 0 ? w.limit - e->np.warn_margin : INFINITY;
    int level = w.laeq_over ? ALARM_ALARM : w.laeq > warn ? ALARM_WARNING : ALARM_NORMAL;
    /* the threshold of the level; when normal, the lowest one */
    double limit = level == ALARM_ALARM || !isfinite(warn) ? w.limit : warn;
    verdict_t *v = add(e, "noise.laeq", d->id, level, w.laeq, limit, "dB(A)");
    if (v) {
      v->c.clear_margin = NOISE_CLEAR_DB;
      say(e, v, "%s: LAeq of the last %.0f min %.1f dB(A) by %s, limit %.0f (GB 12523-2011)", d->id,
          e->np.window_s / 60, w.laeq, period_name(w.period), w.limit);
    }
  }
  /* Lmax is judged directly (6.2), complete or not; by day there is no
   * Lmax rule, so the report is normal and a night alarm clears. */
  if (isfinite(w.lmax)) {
    bool night = w.period == NOISE_NIGHT;
    verdict_t *v = add(e, "noise.night_lmax", d->id, w.lmax_over ? ALARM_ALARM : ALARM_NORMAL,
                       night ? w.lmax : NAN, night ? w.lmax_limit : NAN, "dB(A)");
    if (v)
      say(e, v,
          "%s: night Lmax %.1f dB(A), more than %.0f above the limit %.0f (GB 12523-2011 4.2)",
          d->id, w.lmax, e->np.lmax_margin, w.limit);
  }
}

static void judge_dust_window(struct env *e, const sg_device_t *d, int q, int wk,
                              const env_sample_t *s, size_t n, const env_sample_t *rh,
                              size_t n_rh) {
  const dust_params_t *p = &e->dp;
  if (p->warn[q][wk] <= 0 && p->alarm[q][wk] <= 0)
    return;
  dust_window_t w;
  double len = p->window_s[wk];
  dust_window(p, q, wk, s, n, rh, n_rh, d->interval_s, e->now - len, e->now, &w);
  if (w.level < 0)
    return;
  char rule[ALARM_RULE_MAX + 1];
  snprintf(rule, sizeof(rule), "dust.%s_%s", dust_quantity_name(q),
           wk == DUST_SHORT ? "short" : "long");
  /* The threshold of the level reached; when normal, the lowest one. */
  double limit = w.level == ALARM_ALARM     ? w.alarm
                 : w.level == ALARM_WARNING ? w.warn
                 : w.warn > 0               ? w.warn
                                            : w.alarm;
  verdict_t *v = add(e, rule, d->id, w.level, w.mean, limit, "ug/m3");
  if (!v)
    return;
  v->c.clear_margin = DUST_CLEAR_SHARE * limit;
  say(e, v, "%s: %s mean of the last %.0f min %.1f ug/m3, %s %.0f", d->id, dust_quantity_name(q),
      len / 60, w.mean, w.level == ALARM_ALARM ? "alarm level" : "warning level", limit);
}

/* [dust] max_exceed_day: long clock-aligned windows at alarm level since
 * local midnight, finished ones only. */
static void judge_dust_day(struct env *e, const sg_device_t *d, int q, const env_sample_t *s,
                           size_t n, const env_sample_t *rh, size_t n_rh) {
  const dust_params_t *p = &e->dp;
  if (p->max_exceed_day <= 0 || p->alarm[q][DUST_LONG] <= 0)
    return;
  double mid = env_local_midnight(e->now), end;
  int count = 0;
  for (double t = mid;; t = end) {
    double start = env_aligned_start(p->window_s[DUST_LONG], t, &end);
    if (end > e->now || start >= e->now)
      break;
    dust_window_t w;
    dust_window(p, q, DUST_LONG, s, n, rh, n_rh, d->interval_s, start, end, &w);
    count += w.level == ALARM_ALARM;
  }
  char rule[ALARM_RULE_MAX + 1];
  snprintf(rule, sizeof(rule), "dust.%s_exceed_day", dust_quantity_name(q));
  verdict_t *v = add(e, rule, d->id, count > p->max_exceed_day ? ALARM_ALARM : ALARM_NORMAL, count,
                     p->max_exceed_day, "windows");
  if (!v)
    return;
  v->c.hold_s = -1; /* the count restarts at midnight */
  say(e, v, "%s: %d %s windows at alarm level today, more than the %d allowed", d->id, count,
      dust_quantity_name(q), p->max_exceed_day);
}

static void judge_health(struct env *e, const sg_device_t *d, int q, const env_sample_t *s,
                         size_t n, double *newest) {
  double figure;
  if (n > 0 && s[n - 1].t > *newest)
    *newest = s[n - 1].t;
  /* out of range: any reading of the last few minutes */
  size_t k = n;
  while (k > 0 && s[k - 1].t >= e->now - ENV_RANGE_S)
    k--;
  double lo, hi;
  if (health_range(q, &lo, &hi)) {
    bool bad = health_out_of_range(q, s + k, n - k, &figure);
    char rule[ALARM_RULE_MAX + 1];
    snprintf(rule, sizeof(rule), "health.range.%s", proto_quantity_name(q));
    verdict_t *v = add(e, rule, d->id, bad ? ALARM_ALARM : ALARM_NORMAL, bad ? figure : NAN,
                       bad && figure < lo ? lo : hi, proto_quantity_unit(q));
    if (v) {
      v->c.hold_s = -1;
      say(e, v, "%s: %s reading %g %s is outside what the sensor can measure (%g to %g)", d->id,
          proto_quantity_name(q), figure, proto_quantity_unit(q), lo, hi);
    }
  }
}

static void judge_flatline(struct env *e, const sg_device_t *d, int q, const env_sample_t *s,
                           size_t n) {
  double run;
  bool flat = health_flatline(&e->hp, s, n, &run);
  char rule[ALARM_RULE_MAX + 1];
  snprintf(rule, sizeof(rule), "health.flatline.%s", proto_quantity_name(q));
  verdict_t *v = add(e, rule, d->id, flat ? ALARM_WARNING : ALARM_NORMAL, run / 60.0,
                     e->hp.flatline_s / 60.0, "min");
  if (v) {
    v->c.hold_s = -1;
    say(e, v, "%s: %s has read %g for %.0f min: a stuck sensor?", d->id, proto_quantity_name(q),
        n ? s[n - 1].v : NAN, run / 60.0);
  }
}

/* The first index of `s` (sorted by t) with t >= `t`. */
static size_t first_at(const env_sample_t *s, size_t n, double t) {
  size_t lo = 0, hi = n;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    if (s[mid].t < t)
      lo = mid + 1;
    else
      hi = mid;
  }
  return lo;
}

/* `s` + `i`, where `s` may be NULL (no samples; `i` is 0 then). */
static const env_sample_t *samples_at(const env_sample_t *s, size_t i) { return s ? s + i : NULL; }

/* Loads one series over [since, until). */
static env_sample_t *load_until(struct env *e, const sg_device_t *d, int q, double since,
                                double until, size_t *n) {
  env_sample_t *s = NULL;
  int rc = env_load(e->reader, d->id, q, since, until, &s, n);
  if (rc != 0 && e->err == 0)
    e->err = rc;
  return s;
}

/* Loads one series over [since, now). */
static env_sample_t *load(struct env *e, const sg_device_t *d, int q, double since, size_t *n) {
  return load_until(e, d, q, since, e->now, n);
}

/* Replays the noise or dust rules over late data (see the top of the
 * file). Returns true when the device's live windows may be judged now:
 * its replay has caught up. */
static bool replay(struct env *e, size_t di, const sg_device_t *d) {
  double newest = e->newest[di], from = e->judged[di];
  double lag = fmax(ENV_REPLAY_LAG_S, 2.0 * d->interval_s);
  double upto = fmin(newest, e->now - lag);
  if (newest <= 0 || (from > 0 && from + ENV_REPLAY_STEP_S > upto))
    return true;
  if (e->replays > 0 && sg_mono_ms() >= e->replay_end_ms) {
    e->deferred[di] = true;
    return false;
  }
  e->deferred[di] = false;
  e->replays++;
  /* A device judged from its first reading: its main series is loaded
   * from the start, which gives that reading and the samples the replay
   * needs in one read (the windows reach back at least a step before the
   * first replayed time, so they hold no sample before it). The replay
   * reads each series once, and only up to the data time it judges: a
   * day's backlog is a day of blocks to decode. */
  int mainq = d->type == SG_DEV_NOISE ? PROTO_Q_LA : PROTO_Q_PM10;
  env_sample_t *main_s = NULL;
  size_t main_n = 0;
  if (from <= 0) {
    main_s = load_until(e, d, mainq, 0, e->now, &main_n);
    if (main_n == 0 || (from = main_s[0].t) <= 0) {
      free(main_s);
      return true;
    }
  }
  if (from + ENV_REPLAY_STEP_S > upto) {
    e->judged[di] = from;
    free(main_s);
    return true;
  }
  double end = fmin(upto, from + ENV_REPLAY_MAX_S), now = e->now, first = from + ENV_REPLAY_STEP_S;
  if (d->type == SG_DEV_NOISE) {
    size_t n_la = main_n, n_mx = 0;
    env_sample_t *la =
        main_s ? main_s : load_until(e, d, PROTO_Q_LA, first - e->np.window_s, end, &n_la);
    env_sample_t *mx = load_until(e, d, PROTO_Q_LAMAX, first - e->np.window_s, end, &n_mx);
    for (double t = first; t <= end; t += ENV_REPLAY_STEP_S) {
      size_t a = first_at(la, n_la, t - e->np.window_s), b = first_at(la, n_la, t);
      size_t c = first_at(mx, n_mx, t - e->np.window_s), f = first_at(mx, n_mx, t);
      e->now = e->at = t;
      judge_noise(e, d, samples_at(la, a), b - a, samples_at(mx, c), f - c);
      e->judged[di] = t;
    }
    free(la);
    free(mx);
  } else {
    double len = e->dp.window_s[DUST_LONG], since = first - len;
    if (e->dp.max_exceed_day > 0)
      since = fmin(since, env_local_midnight(first));
    size_t n_rh = 0;
    env_sample_t *rh = load_until(e, d, PROTO_Q_RH, since, end, &n_rh);
    for (int q = 0; q < DUST_QUANTITIES; q++) {
      size_t n = 0;
      env_sample_t *s = NULL;
      if (main_s && dust_proto_quantity(q) == mainq) {
        s = main_s;
        n = main_n;
        main_s = NULL;
      } else {
        s = load_until(e, d, dust_proto_quantity(q), since, end, &n);
      }
      for (double t = first; n > 0 && t <= end; t += ENV_REPLAY_STEP_S) {
        size_t a = first_at(s, n, t - len), b = first_at(s, n, t);
        size_t c = first_at(rh, n_rh, t - len), f = first_at(rh, n_rh, t);
        e->now = e->at = t;
        for (int wk = 0; wk < DUST_WINDOWS; wk++)
          judge_dust_window(e, d, q, wk, samples_at(s, a), b - a, samples_at(rh, c), f - c);
        if (e->dp.max_exceed_day > 0)
          judge_dust_day(e, d, q, s, b, rh, f);
      }
      free(s);
    }
    free(rh);
    free(main_s); /* not a dust quantity: unused */
    for (double t = first; t <= end; t += ENV_REPLAY_STEP_S)
      e->judged[di] = t;
  }
  e->now = now;
  e->at = 0;
  return end >= upto;
}

static void judge_device(struct env *e, size_t di) {
  const sg_device_t *d = &e->gw->cfg->devices[di];
  double last = (double)e->last_ms[di] / 1000.0, silent, newest = 0;
  /* Silence counts from the start of this run for a device never heard. */
  double since_start = last > 0 ? last : e->gw->started;
  if (gw_event_driven(d)) { /* a scale or gate sends when a truck comes: its heartbeat */
    double allowed = gw_silence_allowed_s(e->hp.offline_intervals, d);
    silent = e->now - since_start;
    verdict_t *v = add(e, "health.offline", d->id, silent > allowed ? ALARM_ALARM : ALARM_NORMAL,
                       silent, allowed, "s");
    if (v) {
      v->c.hold_s = -1;
      say(e, v, "%s: no ticket or event for %.0f s (%.0f s allowed)", d->id, silent, allowed);
    }
    return;
  }
  bool off = health_offline(&e->hp, d->interval_s, since_start, e->now, &silent);
  verdict_t *v = add(e, "health.offline", d->id, off ? ALARM_ALARM : ALARM_NORMAL, silent,
                     e->hp.offline_intervals * (double)d->interval_s, "s");
  if (v) {
    v->c.hold_s = -1; /* back as soon as data is */
    say(e, v, "%s: no data for %.0f s (%d reporting intervals)", d->id, silent,
        e->hp.offline_intervals);
  }
  double span = fmax(e->hp.flatline_s, e->hp.jump_s * 2);
  bool live = true;
  if (d->type == SG_DEV_NOISE || d->type == SG_DEV_DUST)
    live = replay(e, di, d);
  size_t before = e->n;
  if (d->type == SG_DEV_NOISE) {
    size_t n_la = 0, n_mx = 0;
    env_sample_t *la = load(e, d, PROTO_Q_LA, e->now - fmax(span, e->np.window_s), &n_la);
    env_sample_t *mx = load(e, d, PROTO_Q_LAMAX, e->now - e->np.window_s, &n_mx);
    if (live) {
      size_t a = first_at(la, n_la, e->now - e->np.window_s);
      judge_noise(e, d, samples_at(la, a), n_la - a, mx, n_mx);
      if (e->n > before) /* judged live through now: late data replays from here */
        e->judged[di] = e->now;
    }
    judge_health(e, d, PROTO_Q_LA, la, n_la, &newest);
    judge_health(e, d, PROTO_Q_LAMAX, mx, n_mx, &newest);
    judge_flatline(e, d, PROTO_Q_LA, la, n_la);
    free(la);
    free(mx);
  } else if (d->type == SG_DEV_DUST) {
    double len = fmax(e->dp.window_s[DUST_LONG], span);
    double mid = env_local_midnight(e->now);
    if (e->dp.max_exceed_day > 0 && mid < e->now - len)
      len = e->now - mid;
    size_t n_rh = 0;
    env_sample_t *rh = load(e, d, PROTO_Q_RH, e->now - len, &n_rh);
    judge_health(e, d, PROTO_Q_RH, rh, n_rh, &newest);
    for (int q = 0; q < DUST_QUANTITIES; q++) {
      size_t n = 0;
      env_sample_t *s = load(e, d, dust_proto_quantity(q), e->now - len, &n);
      size_t had = e->n;
      for (int wk = 0; live && wk < DUST_WINDOWS; wk++)
        judge_dust_window(e, d, q, wk, s, n, rh, n_rh);
      if (e->n > had) /* judged live through now: late data replays from here */
        e->judged[di] = e->now;
      if (live)
        judge_dust_day(e, d, q, s, n, rh, n_rh);
      judge_health(e, d, dust_proto_quantity(q), s, n, &newest);
      if (q == DUST_PM10) {
        judge_flatline(e, d, PROTO_Q_PM10, s, n);
        double at;
        size_t k = n;
        while (k > 0 && s[k - 1].t >= e->now - 2 * e->hp.jump_s)
          k--;
        bool hit = health_interference(&e->hp, s + k, n - k, rh, n_rh, &at);
        verdict_t *iv = add(e, "health.interference", d->id, hit ? ALARM_WARNING : ALARM_NORMAL,
                            hit ? 1 : 0, 1, "");
        if (iv)
          say(e, iv,
              "%s: humidity jumped by %.0f %%RH as PM10 fell by %.0f%%: is someone "
              "spraying the station?",
              d->id, e->hp.rh_jump, e->hp.pm_drop * 100);
      }
      free(s);
    }
    free(rh);
  } else if (d->type == SG_DEV_WEATHER) {
    static const int qs[] = {PROTO_Q_TEMP, PROTO_Q_RH, PROTO_Q_PRESSURE, PROTO_Q_WIND_SPEED,
                             PROTO_Q_WIND_DIR};
    for (size_t i = 0; i < sizeof(qs) / sizeof(qs[0]); i++) {
      size_t n = 0;
      env_sample_t *s = load(e, d, qs[i], e->now - span, &n);
      judge_health(e, d, qs[i], s, n, &newest);
      if (qs[i] == PROTO_Q_TEMP)
        judge_flatline(e, d, qs[i], s, n);
      free(s);
    }
  }
  /* Clock skew needs a live device, and a steady offset. */
  double skew;
  if (!off && last > 0 && newest > 0 && d->type != SG_DEV_EQUIPMENT && d->type != SG_DEV_ENERGY) {
    bool skewed = health_clock_skew(&e->hp, last, newest, &skew);
    /* readings arrive up to one interval after they are taken */
    if (skewed && skew > 0 && skew <= d->interval_s + e->hp.skew_s)
      skewed = false;
    double tol = fmax(d->interval_s, 10);
    if (!skewed)
      e->skew_runs[di] = 0;
    else if (e->skew_runs[di] > 0 && fabs(skew - e->skew_prev[di]) <= tol)
      e->skew_runs[di]++;
    else
      e->skew_runs[di] = 1;
    e->skew_prev[di] = skew;
    if (skewed && e->skew_runs[di] < ENV_SKEW_TICKS)
      return; /* not steady yet: no verdict */
    verdict_t *sv = add(e, "health.clock_skew", d->id, skewed ? ALARM_WARNING : ALARM_NORMAL, skew,
                        e->hp.skew_s, "s");
    if (sv)
      say(e, sv, "%s: its clock is %.0f s %s the gateway's (its newest reading vs. arrival)", d->id,
          fabs(skew), skew < 0 ? "ahead of" : "behind");
  }
}

/* stor_latest's callback: the newest reading of each device into
 * `newest` (cfg order), the latest over its quantities. */
typedef struct newest_ctx {
  const sg_config_t *cfg;
  double *newest;
} newest_ctx_t;

static int on_latest(void *arg, const char *device, int quantity, int64_t t_ms, double value) {
  newest_ctx_t *c = arg;
  (void)quantity;
  (void)value;
  const sg_device_t *d = sg_config_device(c->cfg, device);
  if (d && (double)t_ms / 1000.0 > c->newest[d - c->cfg->devices])
    c->newest[d - c->cfg->devices] = (double)t_ms / 1000.0;
  return 0;
}

static int read_newest(stor_reader_t *r, const sg_config_t *cfg, double *newest) {
  for (size_t i = 0; i < cfg->n_devices; i++)
    newest[i] = 0;
  newest_ctx_t c = {cfg, newest};
  return stor_latest(r, on_latest, &c);
}

static void work_on_run(uv_work_t *w) {
  struct env *e = w->data;
  e->n = 0;
  e->err = 0;
  if (!e->reader) {
    int rc = stor_reader_open(e->gw->cfg->db_path, &e->reader);
    if (rc != 0) {
      e->err = rc;
      return;
    }
  }
  /* The slice's series read the tail once (ENV_HELD_MAX). */
  const char *names[ENV_SLICE];
  for (size_t i = e->slice_begin; i < e->slice_end; i++)
    names[i - e->slice_begin] = e->gw->cfg->devices[i].id;
  int rc = stor_reader_hold(e->reader, names, e->slice_end - e->slice_begin, ENV_HELD_MAX);
  int newest = read_newest(e->reader, e->gw->cfg, e->newest);
  if (rc != 0 || (rc = newest) != 0)
    e->err = rc;
  e->text_len = 0;
  /* The devices whose replay the budget put off go first. The first replay
   * of an evaluation runs whatever the budget, so replays always get on. */
  size_t order[ENV_SLICE], n = 0;
  for (int pass = 0; pass < 2; pass++)
    for (size_t i = e->slice_begin; i < e->slice_end; i++)
      if (e->deferred[i] == (pass == 0))
        order[n++] = i;
  e->replay_end_ms = sg_mono_ms() + ENV_REPLAY_BUDGET_MS;
  e->replays = 0;
  for (size_t k = 0; k < n; k++)
    judge_device(e, order[k]);
  stor_reader_release(e->reader);
  stor_reader_trim(e->reader); /* idle until the next tick */
}

static void env_free(struct env *e) {
  stor_reader_close(e->reader);
  free(e->last_ms);
  free(e->skew_prev);
  free(e->skew_runs);
  free(e->dust_level);
  free(e->judged);
  free(e->newest);
  free(e->deferred);
  free(e->v);
  free(e->text);
  free(e);
}

/* PM10 levels for env_dust_level(): the worst of this evaluation's
 * windows per station; a station without a complete window keeps its
 * previous level. */
static void update_dust_levels(struct env *e) {
  const sg_config_t *cfg = e->gw->cfg;
  int *seen = malloc((cfg->n_devices ? cfg->n_devices : 1) * sizeof(*seen));
  if (!seen)
    return;
  for (size_t i = 0; i < cfg->n_devices; i++)
    seen[i] = -1;
  for (size_t i = 0; i < e->n; i++) {
    const verdict_t *v = &e->v[i];
    if (v->c.at > 0) /* replayed late data: the past, not the level now */
      continue;
    if (strcmp(v->rule, "dust.pm10_short") != 0 && strcmp(v->rule, "dust.pm10_long") != 0)
      continue;
    const sg_device_t *d = sg_config_device(cfg, v->source);
    if (d && v->c.level > seen[d - cfg->devices])
      seen[d - cfg->devices] = v->c.level;
  }
  for (size_t i = 0; i < cfg->n_devices; i++)
    if (seen[i] >= 0)
      e->dust_level[i] = seen[i];
  free(seen);
}

static void work_on_done(uv_work_t *w, int status) {
  struct env *e = w->data;
  e->busy = false;
  if (e->stopping || status != 0) {
    if (e->timer_closed)
      env_free(e);
    return;
  }
  if (e->err != 0)
    log_warn("rules evaluated with errors: %s", strerror(-e->err));
  update_dust_levels(e);
  for (size_t i = 0; i < e->n; i++) {
    verdict_t *v = &e->v[i];
    v->c.rule = v->rule;
    v->c.source = v->source;
    v->c.unit = v->unit;
    v->c.message = v->message ? e->text + v->message - 1 : NULL;
    alarm_update(e->gw, &v->c);
  }
  /* The verdicts of a large site's slice (about 1.4 MB with their text for
   * 512 devices) go back to the kernel until the next evaluation: blocks
   * this size have their own mappings (sitegated.c), and an evaluation
   * holds them a fraction of the tick. */
  free(e->v);
  e->v = NULL;
  e->n = e->cap = 0;
  free(e->text);
  e->text = NULL;
  e->text_len = e->text_cap = 0;
}

static void timer_on_tick(uv_timer_t *t) {
  struct env *e = t->data;
  if (e->busy || e->stopping)
    return; /* the last evaluation is still running: skip a beat */
  e->now = sg_now();
  size_t n = e->gw->cfg->n_devices;
  e->slice_begin = e->slice_end < n ? e->slice_end : 0;
  e->slice_end = e->slice_begin + ENV_SLICE < n ? e->slice_begin + ENV_SLICE : n;
  for (size_t i = 0; i < n; i++)
    e->last_ms[i] = atomic_load(&e->gw->devices[i].last_ms);
  e->work.data = e;
  if (uv_queue_work(e->gw->loop, &e->work, work_on_run, work_on_done) == 0)
    e->busy = true;
}

static void timer_on_closed(uv_handle_t *h) {
  struct env *e = h->data;
  e->timer_closed = true;
  if (!e->busy)
    env_free(e);
}

int env_start(gw_t *gw) {
  struct env *e = calloc(1, sizeof(*e));
  if (!e)
    return -ENOMEM;
  e->gw = gw;
  size_t nd = gw->cfg->n_devices ? gw->cfg->n_devices : 1;
  e->last_ms = calloc(nd, sizeof(*e->last_ms));
  e->skew_prev = calloc(nd, sizeof(*e->skew_prev));
  e->skew_runs = calloc(nd, sizeof(*e->skew_runs));
  e->dust_level = malloc(nd * sizeof(*e->dust_level));
  e->judged = calloc(nd, sizeof(*e->judged));
  e->newest = calloc(nd, sizeof(*e->newest));
  e->deferred = calloc(nd, sizeof(*e->deferred));
  if (!e->last_ms || !e->skew_prev || !e->skew_runs || !e->dust_level || !e->judged || !e->newest ||
      !e->deferred) {
    env_free(e);
    return -ENOMEM;
  }
  for (size_t i = 0; i < nd; i++)
    e->dust_level[i] = -1;
  /* What was stored before this start was judged by the run that stored it:
   * late data is what arrives after (a short synchronous read at start-up;
   * a device with nothing stored is judged from its first reading). */
  stor_reader_t *r = NULL;
  if (stor_reader_open(gw->cfg->db_path, &r) == 0 && read_newest(r, gw->cfg, e->judged) != 0)
    log_warn("cannot read the newest readings: late data before this start is not replayed");
  stor_reader_close(r);
  noise_params_from_config(gw->cfg, &e->np);
  dust_params_from_config(gw->cfg, &e->dp);
  health_params_from_config(gw->cfg, &e->hp);
  uv_timer_init(gw->loop, &e->timer);
  e->timer.data = e;
  uv_timer_start(&e->timer, timer_on_tick, ENV_FIRST_MS, ENV_TICK_MS);
  gw->env = e;
  return 0;
}

void env_stop(gw_t *gw) {
  struct env *e = gw ? gw->env : NULL;
  if (!e)
    return;
  gw->env = NULL;
  e->stopping = true;
  uv_close((uv_handle_t *)&e->timer, timer_on_closed);
}

int env_dust_level(gw_t *gw, const char *device) {
  const struct env *e = gw ? gw->env : NULL;
  if (!e)
    return -1;
  const sg_config_t *cfg = gw->cfg;
  int worst = -1;
  for (size_t i = 0; i < cfg->n_devices; i++)
    if (cfg->devices[i].type == SG_DEV_DUST && (!device || strcmp(device, cfg->devices[i].id) == 0))
      worst = e->dust_level[i] > worst ? e->dust_level[i] : worst;
  return worst;
}
