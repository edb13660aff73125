/* gateway/rules: the alarm model and the environmental rules (noise, dust,
 * sensor health) that report to it. Below equipment, waste and uplink, which
 * raise alarms too; above core.
 *
 * ==== The alarm model (alarm.c pure, alarm_gw.c on the loop)
 *
 * Every rule (noise, dust, sensor health, waste, equipment, uplink) judges
 * its figure and reports a condition; the model turns the stream of
 * conditions into alarms a person sees, acknowledges and can look back on.
 *
 * HOW TO USE IT (loop thread only; from another thread go through
 * gw_call_on_loop()):
 *
 *     alarm_cond_t c = {.rule = "waste.allowance_80", .source = cfg->site_id,
 *                       .level = used > 0.8 * allowance ? ALARM_WARNING : ALARM_NORMAL,
 *                       .figure = used_t, .limit = 0.8 * allowance_t, .unit = "t",
 *                       .t = data_time};
 *     alarm_update(gw, &c);
 *
 * Report the condition every time the rule is evaluated, at level 0 too:
 * that is how an alarm clears. When a rule has no verdict (an incomplete
 * window), do not report; the alarm keeps its state. `rule` and `source`
 * together name one condition: at most one alarm is active per pair.
 *
 * The rules of the model:
 * - raise: a report with level > 0 and no active alarm for (rule, source)
 *   raises a new alarm with a new id, at once;
 * - no repeats: reports at the active level update the figure (and the
 *   peak) but make no event;
 * - escalate: a higher level takes effect at once, as an event; it also
 *   withdraws an acknowledgement (the new severity needs a person's eyes);
 * - hysteresis: a lower level (de-escalation to warning, or clearing to
 *   normal) takes effect only after it has been reported without a break
 *   for `hold_s` seconds (ALARM_HOLD_S by default) AND every report in that
 *   time had the figure at least `clear_margin` on the good side of the
 *   limit of the active level (below it; above it for `low_is_bad` rules),
 *   or of the report's own limit where that is more lenient (a limit that
 *   moved, as noise limits do at 06:00). A report without a figure (NAN)
 *   qualifies. A report that does not qualify restarts the hold. While
 *   the hold runs, the alarm keeps the figure and message of its level;
 * - acknowledge: a person acknowledges with a name and a note; it does not
 *   clear the alarm, it records that someone is on it. A cleared alarm
 *   leaves the active list whether acknowledged or not;
 * - late data: a report with `at` set is applied as at that time, so the
 *   exceedances in a backlog are alarms at their own time (env.c replays
 *   late noise and dust data this way);
 * - history: every raise, escalation, de-escalation, clearing and
 *   acknowledgement is stored (storage/alarms.c) with its time, figure,
 *   limit and, for acknowledgements, who and the note. Writes go through
 *   the storage writer thread from a libuv worker, so the loop never waits
 *   for the disk; the active set is restored from storage at start-up.
 */
#ifndef SITEGATE_GW_RULES_H
#define SITEGATE_GW_RULES_H

#include "gateway/core/core.h"
#include "storage/storage.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define ALARM_HOLD_S 300.0    /* default hold before an alarm clears or de-escalates */
#define ALARM_RULE_MAX 47     /* bytes of a rule name: "module.what", [a-z0-9._-] */
#define ALARM_ACTIVE_MAX 4096 /* alarms active at once; more is a rule's bug */

typedef enum { ALARM_NORMAL = 0, ALARM_WARNING = 1, ALARM_ALARM = 2 } alarm_level_t;

/* One evaluation of a rule. Strings are borrowed for the call only. */
typedef struct alarm_cond {
  const char *rule;    /* "noise.laeq", "dust.pm10_long", "health.offline", ... */
  const char *source;  /* the device, group or site the figure belongs to */
  int level;           /* alarm_level_t as the rule judged it */
  double figure;       /* what was measured, in `unit` */
  double limit;        /* the threshold of `level` (of the lowest level when 0) */
  const char *unit;    /* "dB(A)", "ug/m3", "s", "t"; NULL: none */
  const char *message; /* a sentence for a person; NULL: built from the rest */
  double t;            /* time the figure refers to (Unix s); 0: now */
  double clear_margin; /* hysteresis in `unit` (0: none), see above */
  double hold_s;       /* 0: ALARM_HOLD_S; < 0: lower levels take effect at once */
  bool low_is_bad;     /* the figure is bad when low (a rate below a target) */
  double at;           /* > 0: a report on data that arrived late (a sensor's backlog,
                          a replayed history), applied as at this past time (Unix s):
                          the alarm is raised, cleared and stored with that time.
                          0: now. A rule keeps the times of one (rule, source) in order. */
} alarm_cond_t;

/* What happened to an alarm; the names are the API's and the database's. */
#define ALARM_EVENT_MAP(X)                                                                         \
  X(RAISED, "raised")                                                                              \
  X(ESCALATED, "escalated")                                                                        \
  X(DEESCALATED, "deescalated")                                                                    \
  X(CLEARED, "cleared")                                                                            \
  X(ACKED, "acked")

typedef enum {
#define X(e, s) ALARM_EV_##e,
  ALARM_EVENT_MAP(X)
#undef X
      ALARM_EV_COUNT
} alarm_ev_t;

const char *alarm_event_name(int ev);    /* "raised"; "?" when out of range */
const char *alarm_level_name(int level); /* "normal", "warning", "alarm" */

/* Called for every event after the model applied it (the uplink sends
 * alarms to the authority this way). `a` is the alarm after the event; it
 * is valid during the call only. Loop thread. */
typedef void (*alarm_listener_t)(void *arg, alarm_ev_t ev, const stor_alarm_t *a);

/* ---- the daemon's side (alarm_gw.c): gw->alarms */

/* Opens the model: restores the active alarms and the next id from the
 * database (a short synchronous read at start-up). Returns 0 or -errno. */
int alarm_open(gw_t *gw);
/* Writes what is still queued (synchronously: the loop has stopped) and
 * frees the model. Call after the loop has run out. Accepts a NULL model. */
void alarm_close(gw_t *gw);

/* Reports one condition (see the rules above). Loop thread only. Returns
 * the id of the active alarm for (rule, source) after the report, 0 when
 * there is none, or -EINVAL for a condition without rule or source or with
 * a level out of range. */
int64_t alarm_update(gw_t *gw, const alarm_cond_t *c);

/* Adds a listener; at most ALARM_LISTENERS. Loop thread. Returns 0 or
 * -ENOSPC. */
#define ALARM_LISTENERS 8
int alarm_listen(gw_t *gw, alarm_listener_t fn, void *arg);

/* For the HTTP threads (they call onto the loop themselves):
 * the active alarms, newest first, as the API's JSON array; and an
 * acknowledgement, which returns once it is stored: 0, -ENOENT (no active
 * alarm with that id), -EALREADY (acknowledged already: the first name
 * and note stand until an escalation withdraws them), -EINVAL (empty
 * `by`), -EIO when the store failed,
 * -ECANCELED while stopping. */
json_t *alarm_active_json(gw_t *gw);
int alarm_ack(gw_t *gw, int64_t id, const char *by, const char *note);
/* One alarm as the API shows it (shared with the history query). */
json_t *alarm_to_json(const stor_alarm_t *a);

/* ---- the model itself (alarm.c): pure, no loop, no storage; the daemon
 * side wraps it, tests drive it directly. */
typedef struct alarm_model {
  stor_alarm_t *active; /* unordered */
  double *better_since; /* parallel: when a qualifying lower report began, 0: none */
  int *better_level;    /* parallel: the highest level reported since then */
  size_t n, cap;
  int64_t next_id;
  /* Called for every event with the alarm after it. */
  void (*on_event)(void *arg, alarm_ev_t ev, const stor_alarm_t *a);
  void *arg;
} alarm_model_t;

void alarm_model_init(alarm_model_t *m, int64_t next_id);
void alarm_model_free(alarm_model_t *m);
/* Puts a stored active alarm back (start-up). Returns 0 or -ENOMEM. */
int alarm_model_restore(alarm_model_t *m, const stor_alarm_t *a);
/* The rules above at time `now` (Unix s). Returns as alarm_update(). */
int64_t alarm_model_update(alarm_model_t *m, const alarm_cond_t *c, double now);
/* Acknowledges active alarm `id`. Returns 0, -ENOENT or -EINVAL. */
int alarm_model_ack(alarm_model_t *m, int64_t id, const char *by, const char *note, double now);
/* The active alarm of (rule, source), or NULL. */
const stor_alarm_t *alarm_model_find(const alarm_model_t *m, const char *rule, const char *source);
const stor_alarm_t *alarm_model_get(const alarm_model_t *m, int64_t id);

/* ---- what became of the events on their way to storage (alarm.c): pure;
 * alarm_gw.c keeps one tally under its mutex and an acknowledgement waits
 * on it. Each event the model makes takes the next position when it is
 * made and leaves the queue in that order, either committed (stored) or
 * given up for want of memory (lost: it could not be queued, or not put
 * back after a failed write). A failed write whose events were put back
 * leaves them queued for the next report's retry. */
typedef struct alarm_tally {
  uint64_t made;     /* events ever made: the newest one's position */
  uint64_t stored;   /* events ever committed */
  uint64_t lost;     /* events ever given up; they will never be stored */
  uint64_t failures; /* failed writes */
} alarm_tally_t;

/* One event was made; `queue_rc` is what queueing it returned (not 0: lost). */
void alarm_tally_made(alarm_tally_t *t, int queue_rc);
/* A write of `n` events returned `rc`; after a failure, `kept` says whether
 * they went back into the queue (else they are lost). */
void alarm_tally_written(alarm_tally_t *t, size_t n, int rc, bool kept);
/* The fate of the event at position `seq`, made after `then` was taken:
 * 0 committed; -EIO when events were lost since `then` (it may be one of
 * them) or, while it waits, a write failed (its retry waits for the next
 * report, too long to hold a person's request); -EINPROGRESS still queued. */
int alarm_tally_outcome(const alarm_tally_t *now, const alarm_tally_t *then, uint64_t seq);

/* ==== Environmental compliance, the figures the rules are
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
 * gw_core_open() sets to [site] timezone before any thread starts. */

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

/* Offline: not gw_is_online() (core.h). *silent_s gets the silence (INFINITY for a
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
/* A run of env_load calls over many devices (an evaluation, a month's
 * report) first holds its reader for them (stor_reader_hold), keeping at
 * most this many of their tail readings (16 bytes each: 1 MB; the series
 * beyond it are read one by one). Read one by one, each series went
 * through every series' tail packs in its range (the tail is keyed time
 * first, storage/BLOCKS.md): during make bench's 10-record packs of 10,000
 * devices a day late, the evaluations' reads took 17% of the gateway's
 * CPU, on the writer's core (core.c); with the hold 0.8%. */
#define ENV_HELD_MAX 65536

#endif
