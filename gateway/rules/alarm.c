/* The alarm model's rules (rules.h): raise, no repeats, escalate at
 * once, de-escalate and clear only after a hold, acknowledge.
 *
 * It is pure: no loop, no storage, time passed in. The active alarms are a
 * small unordered array (a site has tens of conditions, not thousands), and
 * each event goes to one callback, which the daemon side (alarm_gw.c) uses
 * to store history and tell listeners. */

#include "gateway/rules/rules.h"
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *alarm_event_name(int ev) {
  static const char *const names[] = {
#define X(e, s) s,
      ALARM_EVENT_MAP(X)
#undef X
  };
  return ev >= 0 && ev < ALARM_EV_COUNT ? names[ev] : "?";
}

const char *alarm_level_name(int level) {
  static const char *const names[] = {"normal", "warning", "alarm"};
  return level >= 0 && level <= ALARM_ALARM ? names[level] : "?";
}

void alarm_model_init(alarm_model_t *m, int64_t next_id) {
  memset(m, 0, sizeof(*m));
  m->next_id = next_id > 0 ? next_id : 1;
}

void alarm_model_free(alarm_model_t *m) {
  free(m->active);
  free(m->better_since);
  free(m->better_level);
  memset(m, 0, sizeof(*m));
}

static ssize_t find_index(const alarm_model_t *m, const char *rule, const char *source) {
  for (size_t i = 0; i < m->n; i++)
    if (strcmp(m->active[i].rule, rule) == 0 && strcmp(m->active[i].source, source) == 0)
      return (ssize_t)i;
  return -1;
}

const stor_alarm_t *alarm_model_find(const alarm_model_t *m, const char *rule, const char *source) {
  ssize_t i = find_index(m, rule, source);
  return i < 0 ? NULL : &m->active[i];
}

const stor_alarm_t *alarm_model_get(const alarm_model_t *m, int64_t id) {
  for (size_t i = 0; i < m->n; i++)
    if (m->active[i].id == id)
      return &m->active[i];
  return NULL;
}

/* Appends a slot; returns its index or -ENOMEM / -ENOSPC. */
static ssize_t add_slot(alarm_model_t *m) {
  if (m->n >= ALARM_ACTIVE_MAX)
    return -ENOSPC;
  if (m->n == m->cap) {
    size_t cap = m->cap ? m->cap * 2 : 16;
    stor_alarm_t *a = realloc(m->active, cap * sizeof(*a));
    if (a)
      m->active = a;
    double *b = realloc(m->better_since, cap * sizeof(*b));
    if (b)
      m->better_since = b;
    int *l = realloc(m->better_level, cap * sizeof(*l));
    if (l)
      m->better_level = l;
    if (!a || !b || !l)
      return -ENOMEM;
    m->cap = cap;
  }
  size_t i = m->n++;
  memset(&m->active[i], 0, sizeof(m->active[i]));
  m->better_since[i] = 0;
  m->better_level[i] = 0;
  return (ssize_t)i;
}

static void remove_slot(alarm_model_t *m, size_t i) {
  m->n--;
  if (i != m->n) {
    m->active[i] = m->active[m->n];
    m->better_since[i] = m->better_since[m->n];
    m->better_level[i] = m->better_level[m->n];
  }
}

int alarm_model_restore(alarm_model_t *m, const stor_alarm_t *a) {
  ssize_t i = add_slot(m);
  if (i < 0)
    return (int)i;
  m->active[i] = *a;
  if (a->id >= m->next_id)
    m->next_id = a->id + 1;
  return 0;
}

static void emit(alarm_model_t *m, alarm_ev_t ev, const stor_alarm_t *a) {
  if (m->on_event)
    m->on_event(m->arg, ev, a);
}

static bool valid_name(const char *s) { return s && *s && strlen(s) <= ALARM_RULE_MAX; }

/* Copies the report's figure, limit, unit and message into `a`. */
static void take_report(stor_alarm_t *a, const alarm_cond_t *c, double now) {
  a->figure = c->figure;
  a->limit = c->limit;
  a->data_t = c->t > 0 ? c->t : now;
  a->updated = now;
  a->low_is_bad = c->low_is_bad;
  snprintf(a->unit, sizeof(a->unit), "%s", c->unit ? c->unit : "");
  if (c->message && *c->message)
    snprintf(a->message, sizeof(a->message), "%s", c->message);
  else
    snprintf(a->message, sizeof(a->message), "%s %s: %s %.1f%s%s, limit %.1f", c->rule, c->source,
             alarm_level_name(c->level), c->figure, a->unit[0] ? " " : "", a->unit, c->limit);
}

static bool worse(double a, double b, bool low_is_bad) { return low_is_bad ? a < b : a > b; }

static int64_t raise_new(alarm_model_t *m, const alarm_cond_t *c, double now) {
  ssize_t i = add_slot(m);
  if (i < 0)
    return i;
  stor_alarm_t *a = &m->active[i];
  a->id = m->next_id++;
  snprintf(a->rule, sizeof(a->rule), "%s", c->rule);
  snprintf(a->source, sizeof(a->source), "%s", c->source);
  a->level = a->peak_level = c->level;
  a->raised = now;
  take_report(a, c, now);
  a->peak = c->figure;
  emit(m, ALARM_EV_RAISED, a);
  return a->id;
}

/* A report below the active level: whether its figure is clearly on the
 * good side of the active level's limit, or of the report's own limit when
 * that is more lenient (the threshold moved: night turned to day). */
static bool qualifies(const stor_alarm_t *a, const alarm_cond_t *c) {
  double margin = c->clear_margin > 0 ? c->clear_margin : 0, lim = a->limit;
  if (isfinite(c->limit))
    lim = !isfinite(lim) ? c->limit : c->low_is_bad ? fmin(lim, c->limit) : fmax(lim, c->limit);
  if (!isfinite(c->figure) || !isfinite(lim))
    return margin == 0 || !isfinite(c->figure);
  return c->low_is_bad ? c->figure >= lim + margin : c->figure <= lim - margin;
}

int64_t alarm_model_update(alarm_model_t *m, const alarm_cond_t *c, double now) {
  if (!c || !valid_name(c->rule) || !valid_name(c->source) || c->level < ALARM_NORMAL ||
      c->level > ALARM_ALARM)
    return -EINVAL;
  ssize_t i = find_index(m, c->rule, c->source);
  if (i < 0)
    return c->level > ALARM_NORMAL ? raise_new(m, c, now) : 0;

  stor_alarm_t *a = &m->active[i];
  if (c->level >= a->level) {
    m->better_since[i] = 0; /* the hold restarts */
    bool up = c->level > a->level;
    take_report(a, c, now);
    if (worse(c->figure, a->peak, c->low_is_bad))
      a->peak = c->figure;
    if (!up)
      return a->id;
    a->level = c->level;
    if (a->level > a->peak_level)
      a->peak_level = a->level;
    a->acked = 0; /* a new severity needs a person's eyes again */
    a->acked_by[0] = a->note[0] = '\0';
    emit(m, ALARM_EV_ESCALATED, a);
    return a->id;
  }

  /* Lower than active: hysteresis. The alarm keeps the figure of its
   * level (and its message) until the lower level takes effect. */
  if (!qualifies(a, c)) {
    m->better_since[i] = 0;
    return a->id;
  }
  if (m->better_since[i] == 0) {
    m->better_since[i] = now;
    m->better_level[i] = c->level;
  } else if (c->level > m->better_level[i]) {
    m->better_level[i] = c->level;
  }
  double hold = c->hold_s == 0 ? ALARM_HOLD_S : c->hold_s < 0 ? 0 : c->hold_s;
  if (now - m->better_since[i] < hold)
    return a->id;

  int to = m->better_level[i];
  m->better_since[i] = 0;
  if (to == ALARM_NORMAL) {
    stor_alarm_t done = *a;
    done.level = ALARM_NORMAL;
    done.cleared = done.updated = now;
    done.figure = c->figure;
    done.data_t = c->t > 0 ? c->t : now;
    remove_slot(m, (size_t)i);
    emit(m, ALARM_EV_CLEARED, &done);
    return 0;
  }
  double limit = a->limit;
  take_report(a, c, now);
  a->level = to;
  a->limit = to == c->level ? c->limit : limit;
  emit(m, ALARM_EV_DEESCALATED, a);
  return a->id;
}

int alarm_model_ack(alarm_model_t *m, int64_t id, const char *by, const char *note, double now) {
  if (!by || !*by)
    return -EINVAL;
  for (size_t i = 0; i < m->n; i++) {
    stor_alarm_t *a = &m->active[i];
    if (a->id != id)
      continue;
    if (a->acked > 0)
      return -EALREADY; /* the first person's name and note stand */
    a->acked = now;
    snprintf(a->acked_by, sizeof(a->acked_by), "%s", by);
    snprintf(a->note, sizeof(a->note), "%s", note ? note : "");
    emit(m, ALARM_EV_ACKED, a);
    return 0;
  }
  return -ENOENT;
}

/* ---- the storage tally */

void alarm_tally_made(alarm_tally_t *t, int queue_rc) {
  t->made++;
  if (queue_rc != 0)
    t->lost++;
}

void alarm_tally_written(alarm_tally_t *t, size_t n, int rc, bool kept) {
  if (rc == 0) {
    t->stored += n;
    return;
  }
  t->failures++;
  if (!kept)
    t->lost += n;
}

int alarm_tally_outcome(const alarm_tally_t *now, const alarm_tally_t *then, uint64_t seq) {
  if (now->lost != then->lost)
    return -EIO;
  /* The `then->lost` events given up earlier all precede `seq`; the others
   * up to it are committed in order, so it is stored once that many are. */
  if (now->stored + then->lost >= seq)
    return 0;
  return now->failures != then->failures ? -EIO : -EINPROGRESS;
}
