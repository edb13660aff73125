/* Private to gateway/: environmental compliance, the figures the rules are
 * written in (DESIGN.md "The figures the rules are written in").
 *
 * The computations are pure functions over samples (noise.c, dust.c,
 * health.c): no loop, no storage, testable with hand-computed cases. The
 * rule engine (env.c) feeds them stored samples on a worker thread and
 * reports the verdicts to the alarm model; the API (api_env.c) feeds them
 * the same stored samples on the HTTP threads, so a window gets the same
 * verdict whether its data came live or was backfilled.
 *
 * Local time: windows are aligned to the site's clock and day and night are
 * site-local, through localtime_r()/mktime() in the process's TZ, which
 * gw_run() sets to [site] timezone before any thread starts. */
#ifndef SITEGATE_ENV_INT_H
#define SITEGATE_ENV_INT_H

#include "common/common.h"

#include <stdbool.h>
#include <stddef.h>

/* One stored reading: t in Unix seconds, v in the canonical unit. */
typedef struct env_sample {
  double t;
  double v;
} env_sample_t;

/* ======================================================================
 * ---- noise, GB 12523-2011 (noise.c)
 *
 * LAeq,T = 10·lg((1/T)·Σ tᵢ·10^(0.1·Lᵢ)) over the measured time T = Σ tᵢ,
 * never an arithmetic mean. Sample i (a 1-s LAeq from the meter, quantity
 * `la`) stands for the time from its timestamp to the next sample's, at
 * most `sample_s`: a gap is missing time, not a longer sample. A window
 * holds the samples with start <= t < end; the last one's time is cut at
 * the window's end.
 *
 * Lmax is the highest `lamax` reading in the window; from a meter that
 * sends none, the highest `la` (a lower bound of the true Lmax). */
typedef enum { NOISE_DAY = 0, NOISE_NIGHT = 1 } noise_period_t;

typedef struct noise_params {
  double window_s;       /* 1200: a continuous 20 min (GB 12523-2011 5.4) */
  double day_start_h;    /* 6: day is 06:00-22:00 (GB 12523-2011 3, 昼间) */
  double night_start_h;  /* 22: night is 22:00-06:00 (GB 12523-2011 3, 夜间) */
  double day_limit;      /* 70 dB(A) (GB 12523-2011 4.1, table 1) */
  double night_limit;    /* 55 dB(A) (GB 12523-2011 4.1, table 1) */
  double lmax_margin;    /* 15 dB(A): night Lmax <= limit + 15 (GB 12523-2011 4.2) */
  bool indoor;           /* measured indoors: both limits - 10 dB (GB 12523-2011 4.3) */
  double sample_s;       /* longest time one `la` reading stands for (1 s) */
  double complete_share; /* 0.75: less measured time is an incomplete window */
  double warn_margin;    /* warning this far below the limit (3 dB; 0: none) */
} noise_params_t;

#define NOISE_INDOOR_DB 10.0 /* GB 12523-2011 4.3 */

typedef struct noise_window {
  double start, end;     /* Unix s, [start, end) */
  noise_period_t period; /* the stricter period the window touches */
  size_t n;              /* `la` samples */
  double measured_s;     /* Σ tᵢ */
  double coverage;       /* measured_s / (end - start) */
  bool complete;         /* coverage >= complete_share */
  double laeq;           /* over the measured time, 0.1 dB; NAN without samples */
  double lmax;           /* 0.1 dB; NAN without samples */
  double limit;          /* LAeq limit of `period`, indoor applied */
  double lmax_limit;     /* night: limit + lmax_margin; NAN by day (no Lmax rule) */
  bool laeq_over;        /* complete and laeq > limit, or incomplete and the
                            measured energy alone, spread over the whole
                            window, is already over the limit */
  bool lmax_over;        /* night and lmax > lmax_limit (judged directly, 6.2) */
  int verdict;           /* 1 exceeded (laeq_over or lmax_over), 0 compliant
                            (complete and neither), -1 unknown (incomplete) */
} noise_window_t;

/* The defaults above. */
void noise_params_default(noise_params_t *p);
/* From the site configuration's [noise] section. */
void noise_params_from_config(const sg_config_t *cfg, noise_params_t *p);

/* Whether local time `t` is in the night period. */
bool noise_is_night(const noise_params_t *p, double t);

/* Judges one window [start, end) over `la` samples (sorted by time, any
 * range: those outside the window are skipped) and `lamax` samples (may be
 * NULL/0). */
void noise_window(const noise_params_t *p, const env_sample_t *la, size_t n_la,
                  const env_sample_t *lamax, size_t n_lamax, double start, double end,
                  noise_window_t *out);

/* The start of the clock-aligned window that contains `t`: windows start at
 * local midnight and every window_s after it (a day's last window is cut at
 * the next midnight when window_s does not divide the day). *end gets its
 * end. */
double noise_aligned_start(const noise_params_t *p, double t, double *end);

/* Rounds to 0.1 dB, as a sound level meter shows a level; verdicts compare
 * the rounded figure with the limit. */
double noise_round(double db);

/* ======================================================================
 * ---- dust (dust.c)
 *
 * Averages of pm10, pm2_5 and tsp over a window are arithmetic means
 * weighted by time: reading i stands for the time to the next reading, at
 * most the device's interval_s. A reading taken at a relative humidity
 * above rh_max is unreliable (light-scattering sensors over-read in fog and
 * mist): it is counted and left out of the average. A window whose reliable
 * time is below complete_share of its length has no level. No national
 * limit exists for a site's boundary; the levels are configuration (the demo
 * uses published local practice: PM10 hourly warning 150, alarm 200 ug/m3). */
enum { DUST_TSP = 0, DUST_PM10 = 1, DUST_PM2_5 = 2, DUST_QUANTITIES = 3 };
enum { DUST_SHORT = 0, DUST_LONG = 1, DUST_WINDOWS = 2 };

typedef struct dust_params {
  double window_s[DUST_WINDOWS];               /* 900 and 3600 */
  double warn[DUST_QUANTITIES][DUST_WINDOWS];  /* ug/m3; 0: no warning level */
  double alarm[DUST_QUANTITIES][DUST_WINDOWS]; /* ug/m3; 0: no alarm level */
  int max_exceed_day;    /* long windows at alarm level allowed per local day; 0: no rule */
  double rh_max;         /* 95 %RH */
  double complete_share; /* 0.75 */
} dust_params_t;

typedef struct dust_window {
  double start, end;
  size_t n;          /* readings in the window */
  size_t unreliable; /* of them, taken above rh_max */
  double measured_s; /* reliable time */
  double coverage;
  bool complete;
  double mean;        /* ug/m3 over reliable readings; NAN without */
  double max;         /* highest reliable reading; NAN without */
  int level;          /* 0 normal, 1 warning, 2 alarm; -1 incomplete or no levels */
  double warn, alarm; /* the levels applied (0: none) */
} dust_window_t;

void dust_params_default(dust_params_t *p);
void dust_params_from_config(const sg_config_t *cfg, dust_params_t *p);
const char *dust_quantity_name(int dq); /* "tsp", "pm10", "pm2_5" */
int dust_proto_quantity(int dq);        /* PROTO_Q_* */

/* Judges one window [start, end) of quantity `dq` with window kind `wk`
 * (for its levels). `rh` (sorted, may be NULL/0) gives the humidity: a
 * reading takes the latest rh at or before it, no older than 2 intervals
 * (none: reliable). `interval_s` is the device's reporting interval. */
void dust_window(const dust_params_t *p, int dq, int wk, const env_sample_t *v, size_t n,
                 const env_sample_t *rh, size_t n_rh, double interval_s, double start, double end,
                 dust_window_t *out);

/* The clock-aligned window of length `len` s containing `t` (from local
 * midnight, as noise_aligned_start). */
double env_aligned_start(double len, double t, double *end);

/* The local midnight at or before `t`. */
double env_local_midnight(double t);

/* Counts the windows at level >= `level`. */
size_t dust_count_level(const dust_window_t *w, size_t n, int level);

/* ======================================================================
 * ---- sensor health (health.c)
 *
 * Every check works on one device's samples and returns whether it fires,
 * with its figure. */
typedef struct health_params {
  int offline_intervals; /* offline after this many missed intervals (3) */
  double flatline_s;     /* identical values this long is a stuck sensor (1800) */
  double skew_s;         /* newest reading time vs. receipt time (120) */
  double rh_jump;        /* interference: RH up by this much (20 %RH) ... */
  double pm_drop;        /* ... while PM10 falls by this share (0.5) ... */
  double jump_s;         /* ... within this time (300 s) */
} health_params_t;

void health_params_default(health_params_t *p);
void health_params_from_config(const sg_config_t *cfg, health_params_t *p);

/* Online: a pack arrived within offline_intervals × interval_s before
 * `now`; `last` is the receipt time of the last pack (0: never). The one
 * definition of online: /api/status and /metrics (gw_device_online) and the
 * health.offline alarm all use it, with [health] offline_intervals. */
bool health_online(int offline_intervals, double interval_s, double last, double now);
/* Offline: not health_online(). *silent_s gets the silence (INFINITY for a
 * device never heard from). */
bool health_offline(const health_params_t *p, double interval_s, double last, double now,
                    double *silent_s);
/* Flatline: the newest run of identical values lasts >= flatline_s (and has
 * at least 3 readings). *run_s gets the run's length. */
bool health_flatline(const health_params_t *p, const env_sample_t *s, size_t n, double *run_s);
/* Out of the physical range of quantity `q` (PROTO_Q_*): the first reading
 * outside it, in *bad. Quantities without a range never fire. */
bool health_out_of_range(int q, const env_sample_t *s, size_t n, double *bad);
/* The physical range of `q`; false when it has none. */
bool health_range(int q, double *lo, double *hi);
/* Clock skew: |receipt − newest reading time| > skew_s, for a device whose
 * last pack arrived at `receipt` and whose newest stored reading is `newest`.
 * *skew_s gets receipt − newest. */
bool health_clock_skew(const health_params_t *p, double receipt, double newest, double *skew_s);
/* Interference at a dust station: within jump_s, RH rises by >= rh_jump
 * while PM10 falls by >= pm_drop of its earlier value (someone spraying the
 * sensor). Scans `pm` and `rh` (sorted); *at gets the time it happened. */
bool health_interference(const health_params_t *p, const env_sample_t *pm, size_t n_pm,
                         const env_sample_t *rh, size_t n_rh, double *at);

/* ======================================================================
 * ---- the rule engine (env.c) and what the API shares with it */
struct gw;
struct stor_reader;

/* Starts the rules on the loop: every ENV_TICK_MS a worker reads the
 * recent samples of every device on its own read-only connection, judges
 * them with the functions above and hands the verdicts back to the loop,
 * which reports them to the alarm model. Returns 0 or -errno. */
#define ENV_TICK_MS 10000
int env_start(struct gw *gw);
/* Stops the timer; a running evaluation finishes and is dropped. The loop
 * must run once more to close the handle. Idempotent; NULL-safe. */
void env_stop(struct gw *gw);

/* The PM10 level of dust station `device` (NULL: the worst over every
 * station) from the latest evaluation, the worse of its short and long
 * sliding windows: 0 normal, 1 warning, 2 alarm, -1 unknown (no station,
 * no levels configured, or no complete window yet). Loop thread; for the
 * equipment groups' dust linkage. */
int env_dust_level(struct gw *gw, const char *device);

/* Raw samples of (device, quantity) with since <= t < until (Unix s), at
 * most ENV_SAMPLES_MAX. *out is malloc'ed (NULL when none); 0 or -errno
 * (a device that never stored anything is 0 samples). */
#define ENV_SAMPLES_MAX 400000
int env_load(struct stor_reader *r, const char *device, int quantity, double since, double until,
             env_sample_t **out, size_t *n);

#endif
