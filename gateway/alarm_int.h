/* Private to gateway/: the one alarm model of the whole project.
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
 * - history: every raise, escalation, de-escalation, clearing and
 *   acknowledgement is stored (storage/alarms.c) with its time, figure,
 *   limit and, for acknowledgements, who and the note. Writes go through
 *   the storage writer thread from a libuv worker, so the loop never waits
 *   for the disk; the active set is restored from storage at start-up. */
#ifndef SITEGATE_ALARM_INT_H
#define SITEGATE_ALARM_INT_H

#include "gateway/gateway_int.h"
#include "storage/storage.h"

#include <stdbool.h>
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
 * alarm with that id), -EINVAL (empty `by`), -EIO when the store failed,
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

#endif
