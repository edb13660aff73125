/* Equipment energy and group control in the daemon (equipment_int.h has
 * the rules; energy.c and equipment_policy.c the arithmetic).
 *
 * Everything here runs on the loop thread:
 *   - every accepted pack comes through core's pack listener (on_pack): counters
 *     and power feed each unit's energy account; the latest power, and the
 *     air temperature of weather and dust stations, feed the policies;
 *   - each controller's /state is observed through the CoAP front: the
 *     authoritative on/off of a unit, its power and its operator's demand;
 *   - a timer every [energy] evaluate_s confirms or retries commands in
 *     flight, then decides every group (eqp_decide) and sends what changed
 *     as PUT /ctl;
 *   - dust levels are the environment rules' latest PM10 level per station
 *     (env_dust_level(): the worse of its short and long sliding windows);
 *     a fog cannon's minimum run keeps it from chattering on their edge.
 *
 * Commands: a command is confirmed when the unit's /state shows the state
 * it asked for (or, for a unit already in that state, by its 2.04). Not
 * confirmed within follow_s, it is sent again, up to [energy] retries
 * commands; then the unit "did not follow": alarm equipment.no_follow on
 * the unit, and no command goes to it for QUIET_FOLLOWS x follow_s. The
 * alarm clears as soon as the unit shows the state last asked for.
 *
 * Storage: audit rows, holds and overrides are queued as they change;
 * daily figures and counters every persist_s. A libuv worker writes the
 * queue (stor_equipment_write waits for the writer, which the loop must
 * never do); a failed write goes back to the head of the queue and is
 * retried with the next one. At stop, what is left is written from the
 * stopping thread. The state comes back from storage at start-up. */
#define LOG_MODULE "equipment"

#include "gateway/equipment/equipment.h"
#include "gateway/rules/rules.h"
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define FIRST_TICK_MS 1000
#define OBSERVE_REFRESH_S 120.0 /* register the /state observation again */
#define OBSERVE_RETRY_S 10.0    /* after an observation failed */
#define TEMP_STALE_S 900.0      /* an older air temperature is no temperature */
#define QUIET_FOLLOWS 4         /* after "did not follow": follow_s x this without commands */
#define NO_FOLLOW_RULE "equipment.no_follow"

typedef struct unit {
  struct equipment *eq;
  const sg_device_t *dev;
  int group; /* index into eq->groups; -1 for energy meters */
  eqp_thresholds_t th;
  energy_acc_t acc;
  double run_s; /* over every day: run-hours */
  /* what the unit is */
  bool known, on;
  bool obs_ok;     /* the /state observation answers */
  bool obs_warned; /* its failure has been logged */
  bool ctl_bad;    /* its URI cannot be used (logged by the front): not controlled */
  double obs_sent; /* last registration, Unix s */
  double power_kw; /* latest, from /state or a reading */
  double power_t;  /* its time */
  double run_kw;   /* average power while running (exponential, recent) */
  double since;    /* last observed switch; 0: unknown */
  eqp_run_t run;
  double idle_since; /* start of the current idle run; 0: not idle */
  int demand;        /* -1 unknown */
  /* what the gateway does with it */
  eqp_hold_t held;
  bool ovr, ovr_on;
  bool ovr_cleared; /* by a person: its expiry is not worth a row */
  double ovr_until, ovr_t;
  char ovr_actor[64], ovr_note[256];
  bool pending, pending_on; /* a command waiting for its confirmation */
  double cmd_t, cmd_first_t;
  stor_eqcmd_t cmd;     /* the audit row of the last command */
  bool wanted, want_on; /* the last state the gateway asked for */
  double quiet_until;
  bool not_following; /* its alarm is raised */
} unit_t;

typedef struct group {
  const sg_group_t *cfg;
  eqp_policy_t pol;
  size_t *members; /* into eq->units */
  size_t n;
  double temp_c; /* what the last decision saw */
  int dust_level;
} group_t;

/* Rows waiting for the storage writer. */
typedef struct wq {
  stor_eqcmd_t *cmds;
  size_t n_cmds, cap_cmds;
  stor_energy_row_t *days;
  size_t n_days, cap_days;
  stor_counter_row_t *ctrs;
  size_t n_ctrs, cap_ctrs;
  stor_eqstate_t *states;
  size_t n_states, cap_states;
} wq_t;

struct equipment {
  gw_t *gw;
  const sg_config_t *cfg;
  unit_t *units; /* equipment and energy meters */
  size_t n_units;
  int *unit_of; /* per configured device: its unit, or -1 */
  group_t *groups;
  size_t n_groups;
  double *temp, *temp_t; /* per configured device: latest air temperature */
  carbon_factors_t factors;
  double area_m2;
  int64_t next_cmd_id;
  double next_persist;
  uv_timer_t tick;
  bool tick_open, stopping;
  /* the storage worker */
  uv_work_t work;
  bool busy, failed; /* loop, and the worker before it ends */
  pthread_mutex_t mu;
  wq_t q; /* under mu */
};

/* ---- the storage queue */

#define WQ_PUSH(arr, n, cap, item)                                                                 \
  do {                                                                                             \
    if ((n) == (cap)) {                                                                            \
      size_t c_ = (cap) ? (cap)*2 : 16;                                                            \
      void *p_ = realloc((arr), c_ * sizeof(*(arr)));                                              \
      if (!p_)                                                                                     \
        break;                                                                                     \
      (arr) = p_;                                                                                  \
      (cap) = c_;                                                                                  \
    }                                                                                              \
    (arr)[(n)++] = (item);                                                                         \
  } while (0)

static void wq_free(wq_t *q) {
  free(q->cmds);
  free(q->days);
  free(q->ctrs);
  free(q->states);
  memset(q, 0, sizeof(*q));
}

/* Puts `head` in front of `q` (a failed write, retried before newer rows). */
static void wq_prepend(wq_t *q, wq_t *head) {
  wq_t all = *head;
  memset(head, 0, sizeof(*head));
  for (size_t i = 0; i < q->n_cmds; i++)
    WQ_PUSH(all.cmds, all.n_cmds, all.cap_cmds, q->cmds[i]);
  for (size_t i = 0; i < q->n_days; i++)
    WQ_PUSH(all.days, all.n_days, all.cap_days, q->days[i]);
  for (size_t i = 0; i < q->n_ctrs; i++)
    WQ_PUSH(all.ctrs, all.n_ctrs, all.cap_ctrs, q->ctrs[i]);
  for (size_t i = 0; i < q->n_states; i++)
    WQ_PUSH(all.states, all.n_states, all.cap_states, q->states[i]);
  wq_free(q);
  *q = all;
}

static int wq_write(stor_db_t *db, const wq_t *q) {
  stor_eq_write_t w = {q->cmds, q->n_cmds, q->days,   q->n_days,
                       q->ctrs, q->n_ctrs, q->states, q->n_states};
  return stor_equipment_write(db, &w);
}

static void work_on_run(uv_work_t *w) {
  struct equipment *eq = w->data;
  pthread_mutex_lock(&eq->mu);
  wq_t batch = eq->q;
  memset(&eq->q, 0, sizeof(eq->q));
  pthread_mutex_unlock(&eq->mu);
  int rc = wq_write(eq->gw->db, &batch);
  eq->failed = rc != 0;
  if (rc != 0) {
    log_err("cannot store equipment rows: %s; retrying with the next ones", strerror(-rc));
    pthread_mutex_lock(&eq->mu);
    wq_prepend(&eq->q, &batch);
    pthread_mutex_unlock(&eq->mu);
  }
  wq_free(&batch);
}

static void kick(struct equipment *eq);

static void work_on_done(uv_work_t *w, int status) {
  struct equipment *eq = w->data;
  (void)status;
  eq->busy = false;
  if (!eq->failed)
    kick(eq); /* rows queued while it wrote */
}

static void kick(struct equipment *eq) {
  pthread_mutex_lock(&eq->mu);
  bool any = eq->q.n_cmds + eq->q.n_days + eq->q.n_ctrs + eq->q.n_states > 0;
  pthread_mutex_unlock(&eq->mu);
  if (eq->busy || !any)
    return;
  eq->work.data = eq;
  eq->busy = uv_queue_work(eq->gw->loop, &eq->work, work_on_run, work_on_done) == 0;
}

static void queue_cmd(struct equipment *eq, const stor_eqcmd_t *c) {
  pthread_mutex_lock(&eq->mu);
  WQ_PUSH(eq->q.cmds, eq->q.n_cmds, eq->q.cap_cmds, *c);
  pthread_mutex_unlock(&eq->mu);
  kick(eq);
}

static stor_eqstate_t state_row(const unit_t *u) {
  stor_eqstate_t s = {.held = (int)u->held,
                      .ovr = u->ovr,
                      .ovr_on = u->ovr_on,
                      .ovr_until = u->ovr_until,
                      .ovr_t = u->ovr_t};
  snprintf(s.unit, sizeof(s.unit), "%s", u->dev->id);
  snprintf(s.ovr_actor, sizeof(s.ovr_actor), "%s", u->ovr_actor);
  snprintf(s.ovr_note, sizeof(s.ovr_note), "%s", u->ovr_note);
  return s;
}

static void queue_state(struct equipment *eq, const unit_t *u) {
  stor_eqstate_t s = state_row(u);
  pthread_mutex_lock(&eq->mu);
  WQ_PUSH(eq->q.states, eq->q.n_states, eq->q.cap_states, s);
  pthread_mutex_unlock(&eq->mu);
  kick(eq);
}

static stor_counter_row_t counter_row(const unit_t *u, int q, const energy_counter_t *c) {
  stor_counter_row_t r = {.quantity = q,
                          .value = c->value,
                          .t = c->t,
                          .rollovers = c->rollovers,
                          .resets = c->resets,
                          .jumps = c->jumps};
  snprintf(r.unit, sizeof(r.unit), "%s", u->dev->id);
  return r;
}

/* The days and counters changed since they were last queued, into q. */
static void collect_energy(struct equipment *eq, wq_t *q) {
  for (size_t i = 0; i < eq->n_units; i++) {
    unit_t *u = &eq->units[i];
    if (!u->acc.dirty)
      continue;
    for (size_t k = 0; k < u->acc.n; k++) {
      const energy_day_t *d = &u->acc.days[k];
      if (d->day < u->acc.dirty_from)
        continue;
      stor_energy_row_t r = {.day = d->day,
                             .kwh = d->kwh,
                             .fuel_l = d->fuel_l,
                             .run_s = d->run_s,
                             .idle_s = d->idle_s,
                             .off_s = d->off_s,
                             .idle_kwh = d->idle_kwh};
      snprintf(r.unit, sizeof(r.unit), "%s", u->dev->id);
      WQ_PUSH(q->days, q->n_days, q->cap_days, r);
    }
    if (u->acc.kwh_ctr.have)
      WQ_PUSH(q->ctrs, q->n_ctrs, q->cap_ctrs, counter_row(u, PROTO_Q_ENERGY, &u->acc.kwh_ctr));
    if (u->acc.fuel_ctr.have)
      WQ_PUSH(q->ctrs, q->n_ctrs, q->cap_ctrs, counter_row(u, PROTO_Q_FUEL, &u->acc.fuel_ctr));
    u->acc.dirty = false;
  }
}

static void persist(struct equipment *eq) {
  wq_t q = {0};
  collect_energy(eq, &q);
  pthread_mutex_lock(&eq->mu);
  for (size_t i = 0; i < q.n_days; i++)
    WQ_PUSH(eq->q.days, eq->q.n_days, eq->q.cap_days, q.days[i]);
  for (size_t i = 0; i < q.n_ctrs; i++)
    WQ_PUSH(eq->q.ctrs, eq->q.n_ctrs, eq->q.cap_ctrs, q.ctrs[i]);
  pthread_mutex_unlock(&eq->mu);
  wq_free(&q);
  kick(eq);
}

/* ---- helpers */

static double local_hour(double t) {
  time_t s = (time_t)t;
  struct tm tm;
  localtime_r(&s, &tm);
  return tm.tm_hour + tm.tm_min / 60.0 + tm.tm_sec / 3600.0;
}

static unit_t *unit_by_id(struct equipment *eq, const char *id) {
  const sg_device_t *d = sg_config_device(eq->cfg, id);
  if (!d)
    return NULL;
  int k = eq->unit_of[d - eq->cfg->devices];
  return k >= 0 ? &eq->units[k] : NULL;
}

static const char *group_name(const struct equipment *eq, const unit_t *u) {
  return u->group >= 0 ? eq->groups[u->group].cfg->name : "";
}

static bool controllable(const unit_t *u) {
  return u->group >= 0 && u->dev->coap[0] != '\0' && !u->ctl_bad;
}

/* The live power and the run state from it. */
static void set_power(unit_t *u, double kw, double t) {
  if (!isfinite(kw) || t < u->power_t)
    return;
  u->power_kw = kw;
  u->power_t = t;
  eqp_run_t run = eqp_classify(&u->th, kw);
  if (u->known && !u->on)
    run = EQP_OFF;
  if (run == EQP_RUNNING)
    u->run_kw = u->run_kw > 0 ? 0.8 * u->run_kw + 0.2 * kw : kw;
  if (run == EQP_IDLE && u->run != EQP_IDLE)
    u->idle_since = t;
  else if (run != EQP_IDLE)
    u->idle_since = 0;
  u->run = run;
}

/* ---- alarms */

static void report_no_follow(struct equipment *eq, unit_t *u, int level, double now) {
  char msg[256];
  if (level)
    snprintf(msg, sizeof(msg),
             "%s did not follow \"%s\" (%s): %d commands in %.0f s, it still "
             "reports %s",
             u->dev->id, u->want_on ? "on" : "off", u->cmd.reason, u->cmd.attempts,
             now - u->cmd_first_t, u->on ? "on" : "off");
  else
    snprintf(msg, sizeof(msg), "%s follows again (%s)", u->dev->id, u->on ? "on" : "off");
  alarm_cond_t c = {.rule = NO_FOLLOW_RULE,
                    .source = u->dev->id,
                    .level = level,
                    .figure = level ? now - u->cmd_first_t : 0,
                    .limit = eq->cfg->energy_follow_s * eq->cfg->energy_retries,
                    .unit = "s",
                    .message = msg,
                    .t = now,
                    .hold_s = -1};
  alarm_update(eq->gw, &c);
  u->not_following = level > 0;
}

/* ---- the audit trail */

/* A row that is not a command (a switch made at the unit, an override
 * cleared): written as it is. */
static void audit_note(struct equipment *eq, const unit_t *u, bool on, const char *reason,
                       const char *origin, const char *result, double now) {
  stor_eqcmd_t c = {.id = eq->next_cmd_id++, .t = now, .on = on, .attempts = 0, .result_t = now};
  snprintf(c.unit, sizeof(c.unit), "%s", u->dev->id);
  snprintf(c.grp, sizeof(c.grp), "%s", group_name(eq, u));
  snprintf(c.reason, sizeof(c.reason), "%s", reason);
  snprintf(c.origin, sizeof(c.origin), "%s", origin);
  snprintf(c.result, sizeof(c.result), "%s", result);
  if (strcmp(origin, "override") == 0) {
    snprintf(c.actor, sizeof(c.actor), "%s", u->ovr_actor);
    snprintf(c.note, sizeof(c.note), "%s", u->ovr_note);
  }
  queue_cmd(eq, &c);
}

static void finish_cmd(struct equipment *eq, unit_t *u, const char *result, double now) {
  snprintf(u->cmd.result, sizeof(u->cmd.result), "%s", result);
  u->cmd.result_t = now;
  u->pending = false;
  queue_cmd(eq, &u->cmd);
  if (u->not_following && strcmp(result, "followed") == 0)
    report_no_follow(eq, u, ALARM_NORMAL, now);
}

/* ---- commands */

static void cmd_on_done(void *arg, uint64_t tag, int result, int code);

static int transmit(unit_t *u) {
  int rc = coapfront_command(u->eq->gw->coap, u->dev->coap, u->pending_on, u->cmd.reason,
                             cmd_on_done, u, (uint64_t)u->cmd.id);
  if (rc != 0)
    log_err("%s: cannot send the command: %s", u->dev->id, strerror(-rc));
  return rc;
}

static void send_command(unit_t *u, bool on, const char *reason, double now) {
  struct equipment *eq = u->eq;
  if (u->pending)
    finish_cmd(eq, u, "superseded", now);
  bool ovr = strcmp(reason, "override") == 0;
  memset(&u->cmd, 0, sizeof(u->cmd));
  u->cmd.id = eq->next_cmd_id++;
  u->cmd.t = now;
  u->cmd.on = on;
  u->cmd.attempts = 1;
  snprintf(u->cmd.unit, sizeof(u->cmd.unit), "%s", u->dev->id);
  snprintf(u->cmd.grp, sizeof(u->cmd.grp), "%s", group_name(eq, u));
  snprintf(u->cmd.reason, sizeof(u->cmd.reason), "%s", reason);
  snprintf(u->cmd.origin, sizeof(u->cmd.origin), "%s", ovr ? "override" : "policy");
  snprintf(u->cmd.result, sizeof(u->cmd.result), "sent");
  if (ovr) {
    snprintf(u->cmd.actor, sizeof(u->cmd.actor), "%s", u->ovr_actor);
    snprintf(u->cmd.note, sizeof(u->cmd.note), "%s", u->ovr_note);
  }
  u->pending = true;
  u->pending_on = on;
  u->cmd_t = u->cmd_first_t = now;
  u->wanted = true;
  u->want_on = on;
  log_info("%s (%s): switch %s, %s", u->dev->id, group_name(eq, u), on ? "on" : "off", reason);
  queue_cmd(eq, &u->cmd);
  if (transmit(u) != 0)
    finish_cmd(eq, u, "no-answer", now);
}

/* Stops commanding a unit that did not follow, and says so. */
static void give_up(unit_t *u, const char *result, double now) {
  struct equipment *eq = u->eq;
  log_warn("%s: did not follow \"%s\" (%s) after %d commands", u->dev->id,
           u->pending_on ? "on" : "off", u->cmd.reason, u->cmd.attempts);
  finish_cmd(eq, u, result, now);
  u->quiet_until = now + QUIET_FOLLOWS * eq->cfg->energy_follow_s;
  report_no_follow(eq, u, ALARM_ALARM, now);
}

/* The controller's answer to PUT /ctl. A unit already in the state asked
 * for notifies no change: its 2.04 confirms it. A refusal (4.xx, 5.xx)
 * will not change by sending again. No answer is left to the follow
 * timeout, which sends again. */
static void cmd_on_done(void *arg, uint64_t tag, int result, int code) {
  unit_t *u = arg;
  if (!u->pending || (uint64_t)u->cmd.id != tag || u->eq->stopping)
    return;
  double now = sg_now();
  if (result == 0) {
    if (u->known && u->obs_ok && u->on == u->pending_on)
      finish_cmd(u->eq, u, "followed", now);
  } else if (result == -EPROTO) {
    log_warn("%s: its controller refused the command (%d.%02d)", u->dev->id, code / 100,
             code % 100);
    give_up(u, "refused", now);
  } else {
    log_debug("%s: command %lld: %s", u->dev->id, (long long)u->cmd.id, strerror(-result));
  }
}

/* Commands in flight: confirmed by now, sent again, or given up. */
static void check_pending(struct equipment *eq, double now) {
  for (size_t i = 0; i < eq->n_units; i++) {
    unit_t *u = &eq->units[i];
    if (!u->pending || now - u->cmd_t < eq->cfg->energy_follow_s)
      continue;
    if (u->cmd.attempts >= eq->cfg->energy_retries) {
      give_up(u, "not-followed", now);
      continue;
    }
    u->cmd.attempts++;
    u->cmd_t = now;
    log_info("%s: no sign of \"%s\" yet, sending again (%d of %d)", u->dev->id,
             u->pending_on ? "on" : "off", u->cmd.attempts, eq->cfg->energy_retries);
    queue_cmd(eq, &u->cmd);
    transmit(u);
  }
}

/* ---- what the controllers say */

static void on_state(void *arg, const coapfront_state_t *st, int err) {
  unit_t *u = arg;
  struct equipment *eq = u->eq;
  if (eq->stopping)
    return;
  double now = sg_now();
  if (!st) {
    if (u->obs_ok || !u->obs_warned)
      log_warn("%s: its controller %s %s", u->dev->id, u->dev->coap,
               err == -EPROTO    ? "answers /state with an error"
               : err == -EBADMSG ? "sends a /state that is not {\"on\":...}"
                                 : "does not answer");
    u->obs_ok = false;
    u->obs_warned = true;
    return;
  }
  if (!u->obs_ok)
    log_info("%s: controller %s answers: %s", u->dev->id, u->dev->coap, st->on ? "on" : "off");
  u->obs_ok = true;
  u->obs_warned = false;
  bool changed = u->known && st->on != u->on;
  u->known = true;
  u->on = st->on;
  u->demand = st->demand;
  if (changed)
    u->since = now;
  if (isfinite(st->power_kw))
    set_power(u, st->power_kw, now);
  if (!st->on) {
    u->run = EQP_OFF;
    u->idle_since = 0;
  }
  if (u->pending && st->on == u->pending_on) {
    finish_cmd(eq, u, "followed", now);
  } else if (changed && !u->pending && u->wanted && st->on == u->want_on &&
             strcmp(u->cmd.result, "followed") != 0) {
    finish_cmd(eq, u, "followed-late", now); /* after it was given up */
    report_no_follow(eq, u, ALARM_NORMAL, now);
  } else if (changed && !u->pending) {
    /* Switched at the unit: its operator has it now. */
    log_info("%s: switched %s at the unit", u->dev->id, st->on ? "on" : "off");
    audit_note(eq, u, st->on, "at the unit", "local", "done", now);
    u->wanted = false;
    if (u->held != EQP_HOLD_NONE) {
      u->held = EQP_HOLD_NONE;
      queue_state(eq, u);
    }
  }
  if (u->not_following && (!u->wanted || st->on == u->want_on))
    report_no_follow(eq, u, ALARM_NORMAL, now);
}

static void observe(unit_t *u, double now) {
  u->obs_sent = now;
  int rc = coapfront_observe(u->eq->gw->coap, u->dev->coap, on_state, u);
  if (rc == -EINVAL) { /* a URI it cannot use, or a host name that does not resolve */
    log_err("%s is not under control: fix its coap key and restart", u->dev->id);
    u->ctl_bad = true;
  } else if (rc != 0) {
    log_debug("%s: cannot observe %s: %s", u->dev->id, u->dev->coap, strerror(-rc));
  }
}

/* ---- what the sensors say (ingest) */

/* Core's pack listener: every pack the CoAP front accepted. */
static void on_pack(void *arg, const gw_device_t *dev, const proto_pack_t *p) {
  struct equipment *eq = arg;
  if (eq->stopping)
    return;
  size_t di = (size_t)(dev->conf - eq->cfg->devices);
  int k = eq->unit_of[di];
  unit_t *u = k >= 0 ? &eq->units[k] : NULL;
  double max_kw = u && u->dev->rated_kw > 0 ? u->dev->rated_kw * ENERGY_PLAUSIBLE_FACTOR : 0;
  for (size_t i = 0; i < p->n; i++) {
    const proto_record_t *r = &p->rec[i];
    double t = (double)r->t_ms / 1000.0, v = r->value;
    if (r->quantity == PROTO_Q_TEMP &&
        (dev->conf->type == SG_DEV_WEATHER || dev->conf->type == SG_DEV_DUST)) {
      if (t >= eq->temp_t[di]) {
        eq->temp[di] = v;
        eq->temp_t[di] = t;
      }
    }
    if (!u)
      continue;
    switch (r->quantity) {
    case PROTO_Q_ENERGY: {
      ctr_event_t ev = energy_acc_kwh(&u->acc, v, t, max_kw);
      if (ev == CTR_RESET || ev == CTR_ROLLOVER || ev == CTR_JUMP)
        log_info("%s: energy counter %s at %.2f kWh", u->dev->id, ctr_event_name(ev), v);
      break;
    }
    case PROTO_Q_FUEL: {
      ctr_event_t ev = energy_acc_fuel(&u->acc, v, t, max_kw * ENERGY_FUEL_L_PER_KWH);
      if (ev == CTR_RESET || ev == CTR_ROLLOVER || ev == CTR_JUMP)
        log_info("%s: fuel counter %s at %.1f l", u->dev->id, ctr_event_name(ev), v);
      break;
    }
    case PROTO_Q_POWER: {
      double gap = 2.0 * u->dev->interval_s;
      if (u->acc.have_power && t > u->acc.power_t &&
          eqp_classify(&u->th, u->acc.power_kw) == EQP_RUNNING)
        u->run_s += fmin(t - u->acc.power_t, gap);
      energy_acc_power(&u->acc, &u->th, v, t, gap);
      set_power(u, v, t);
      break;
    }
    case PROTO_Q_ON:
      /* A unit without a controller says it here; a controller's /state
       * is the authority for the others. */
      if (!controllable(u) && t >= u->power_t) {
        if (u->known && (v != 0) != u->on)
          u->since = t;
        u->known = true;
        u->on = v != 0;
      }
      break;
    default:
      break;
    }
  }
}

/* The linked dust level of a group: its station's, or the worst of all;
 * -1 while the rules have no complete window. */
static int group_dust(const struct equipment *eq, const group_t *g) {
  const char *link = g->cfg->dust_linkage;
  return env_dust_level(eq->gw, strcmp(link, "any") == 0 ? NULL : link);
}

/* The group's air temperature: its temp_source's, else the newest of the
 * weather stations, else of the dust stations; NAN when none is fresh. */
static double group_temp(const struct equipment *eq, const group_t *g, double now) {
  const sg_config_t *cfg = eq->cfg;
  const char *src = g->cfg->temp_source;
  double best_t = 0, temp = NAN;
  for (int pass = 0; pass < 2 && isnan(temp); pass++) {
    sg_devtype_t want = pass == 0 ? SG_DEV_WEATHER : SG_DEV_DUST;
    for (size_t i = 0; i < cfg->n_devices; i++) {
      const sg_device_t *d = &cfg->devices[i];
      bool eligible = src[0] ? strcmp(d->id, src) == 0 : d->type == want;
      if (eligible && eq->temp_t[i] > best_t && now - eq->temp_t[i] <= TEMP_STALE_S) {
        best_t = eq->temp_t[i];
        temp = eq->temp[i];
      }
    }
  }
  return temp;
}

/* ---- deciding */

static void unit_view(const unit_t *u, double now, eqp_unit_t *v) {
  *v = (eqp_unit_t){.id = u->dev->id,
                    .priority = u->dev->priority,
                    .rated_kw = u->dev->rated_kw,
                    .expect_kw = u->run_kw,
                    .controllable = controllable(u) && now >= u->quiet_until,
                    .known = u->known && (u->obs_ok || !controllable(u)),
                    .on = u->on,
                    .power_kw = u->power_t > 0 ? u->power_kw : NAN,
                    .run = u->run,
                    .since = u->pending ? fmax(u->since, u->cmd_first_t) : u->since,
                    .idle_since = u->idle_since,
                    .run_h = u->run_s / 3600.0,
                    .demand = u->demand == 1,
                    .held = u->held,
                    .pending = u->pending,
                    .pending_on = u->pending_on,
                    .ovr = u->ovr,
                    .ovr_on = u->ovr_on,
                    .ovr_until = u->ovr_until};
}

static void decide_group(struct equipment *eq, group_t *g, double now) {
  eqp_unit_t *v = calloc(g->n ? g->n : 1, sizeof(*v));
  eqp_plan_t *plan = calloc(g->n ? g->n : 1, sizeof(*plan));
  if (!v || !plan) {
    free(v);
    free(plan);
    return;
  }
  for (size_t i = 0; i < g->n; i++)
    unit_view(&eq->units[g->members[i]], now, &v[i]);
  g->temp_c = group_temp(eq, g, now);
  g->dust_level = group_dust(eq, g);
  eqp_env_t env = {
      .now = now, .local_h = local_hour(now), .dust_level = g->dust_level, .temp_c = g->temp_c};
  eqp_decide(&g->pol, v, g->n, &env, plan);
  for (size_t i = 0; i < g->n; i++) {
    unit_t *u = &eq->units[g->members[i]];
    bool dirty = false;
    if (plan[i].ovr_expired) {
      if (!u->ovr_cleared) {
        log_info("%s: the manual override (%s) has expired", u->dev->id, u->ovr_on ? "on" : "off");
        audit_note(eq, u, u->ovr_on, "override-expired", "override", "expired", now);
      }
      u->ovr = false;
      u->ovr_cleared = false;
      dirty = true;
    }
    if (plan[i].held != u->held && v[i].controllable) {
      u->held = plan[i].held;
      dirty = true;
    }
    if (dirty)
      queue_state(eq, u);
    if (plan[i].command)
      send_command(u, plan[i].on, plan[i].reason, now);
  }
  free(v);
  free(plan);
}

static void on_tick(uv_timer_t *t) {
  struct equipment *eq = t->data;
  double now = sg_now();
  for (size_t i = 0; i < eq->n_units; i++) {
    unit_t *u = &eq->units[i];
    if (!controllable(u))
      continue;
    double every = u->obs_ok ? OBSERVE_REFRESH_S : OBSERVE_RETRY_S;
    if (now - u->obs_sent >= every)
      observe(u, now);
  }
  check_pending(eq, now);
  for (size_t g = 0; g < eq->n_groups; g++)
    decide_group(eq, &eq->groups[g], now);
  if (now >= eq->next_persist) {
    eq->next_persist = now + eq->cfg->energy_persist_s;
    persist(eq);
  }
}

/* ---- start and stop */

static int restore_day(void *arg, const stor_energy_row_t *r) {
  struct equipment *eq = arg;
  unit_t *u = unit_by_id(eq, r->unit);
  energy_day_t *d = u ? energy_acc_day(&u->acc, r->day + 1) : NULL;
  if (!d)
    return 0; /* a unit no longer configured */
  *d = (energy_day_t){.day = d->day,
                      .kwh = r->kwh,
                      .fuel_l = r->fuel_l,
                      .run_s = r->run_s,
                      .idle_s = r->idle_s,
                      .off_s = r->off_s,
                      .idle_kwh = r->idle_kwh};
  u->run_s += r->run_s;
  return 0;
}

static int restore_counter(void *arg, const stor_counter_row_t *r) {
  unit_t *u = unit_by_id(arg, r->unit);
  energy_counter_t *c = !u                              ? NULL
                        : r->quantity == PROTO_Q_ENERGY ? &u->acc.kwh_ctr
                        : r->quantity == PROTO_Q_FUEL   ? &u->acc.fuel_ctr
                                                        : NULL;
  if (c)
    *c = (energy_counter_t){.have = true,
                            .value = r->value,
                            .t = r->t,
                            .rollovers = r->rollovers,
                            .resets = r->resets,
                            .jumps = r->jumps};
  return 0;
}

static int restore_state(void *arg, const stor_eqstate_t *s) {
  unit_t *u = unit_by_id(arg, s->unit);
  if (!u || u->group < 0)
    return 0;
  u->held = s->held >= EQP_HOLD_NONE && s->held <= EQP_HOLD_OVERRIDE ? (eqp_hold_t)s->held
                                                                     : EQP_HOLD_NONE;
  u->ovr = s->ovr;
  u->ovr_on = s->ovr_on;
  u->ovr_until = s->ovr_until;
  u->ovr_t = s->ovr_t;
  snprintf(u->ovr_actor, sizeof(u->ovr_actor), "%s", s->ovr_actor);
  snprintf(u->ovr_note, sizeof(u->ovr_note), "%s", s->ovr_note);
  return 0;
}

static int restore(struct equipment *eq) {
  stor_reader_t *r = NULL;
  int64_t max_id = 0;
  stor_eq_load_t cb = {restore_day, restore_counter, restore_state, eq};
  int rc = stor_reader_open(eq->cfg->db_path, &r);
  if (rc == 0)
    rc = stor_equipment_load(r, &cb, &max_id);
  stor_reader_close(r);
  if (rc != 0) {
    log_err("cannot read the equipment state in %s: %s", eq->cfg->db_path, strerror(-rc));
    return rc;
  }
  eq->next_cmd_id = max_id + 1;
  for (size_t i = 0; i < eq->n_units; i++)
    eq->units[i].acc.dirty = false;
  return 0;
}

static int build(struct equipment *eq) {
  const sg_config_t *cfg = eq->cfg;
  size_t nd = cfg->n_devices ? cfg->n_devices : 1, nu = 1;
  /* A unit is ~1.2 kB: only equipment and energy meters get one (a site of
   * 10,000 dust stations took 12 MB of units). */
  for (size_t i = 0; i < cfg->n_devices; i++)
    nu += cfg->devices[i].type == SG_DEV_EQUIPMENT || cfg->devices[i].type == SG_DEV_ENERGY;
  eq->unit_of = malloc(nd * sizeof(*eq->unit_of));
  eq->temp = calloc(nd, sizeof(*eq->temp));
  eq->temp_t = calloc(nd, sizeof(*eq->temp_t));
  eq->units = calloc(nu, sizeof(*eq->units));
  eq->groups = calloc(cfg->n_groups ? cfg->n_groups : 1, sizeof(*eq->groups));
  if (!eq->unit_of || !eq->temp || !eq->temp_t || !eq->units || !eq->groups)
    return -ENOMEM;
  eq->n_groups = cfg->n_groups;
  for (size_t g = 0; g < cfg->n_groups; g++) {
    group_t *gr = &eq->groups[g];
    gr->cfg = &cfg->groups[g];
    eqp_policy_from_config(cfg, gr->cfg, &gr->pol);
    gr->members = calloc(nd, sizeof(*gr->members));
    if (!gr->members)
      return -ENOMEM;
  }
  for (size_t i = 0; i < cfg->n_devices; i++) {
    const sg_device_t *d = &cfg->devices[i];
    eq->unit_of[i] = -1;
    if (d->type != SG_DEV_EQUIPMENT && d->type != SG_DEV_ENERGY)
      continue;
    unit_t *u = &eq->units[eq->n_units];
    eq->unit_of[i] = (int)eq->n_units++;
    u->eq = eq;
    u->dev = d;
    u->group = -1;
    u->demand = -1;
    u->run = EQP_UNKNOWN;
    u->power_kw = NAN;
    eqp_kind_thresholds(d->kind, d->rated_kw, &u->th);
    const sg_group_t *gc = d->type == SG_DEV_EQUIPMENT ? sg_config_group(cfg, d->group) : NULL;
    if (!gc)
      continue;
    group_t *gr = &eq->groups[gc - cfg->groups];
    u->group = (int)(gc - cfg->groups);
    gr->members[gr->n++] = (size_t)(u - eq->units);
    if (gc->off_kw > 0 || gc->idle_kw > 0) {
      if (gc->off_kw > 0)
        u->th.off_kw = gc->off_kw;
      if (gc->idle_kw > 0)
        u->th.idle_kw = gc->idle_kw;
    }
  }
  return 0;
}

static void free_eq(struct equipment *eq) {
  if (!eq)
    return;
  for (size_t i = 0; i < eq->n_units; i++)
    energy_acc_free(&eq->units[i].acc);
  for (size_t g = 0; g < eq->n_groups; g++)
    free(eq->groups[g].members);
  free(eq->groups);
  free(eq->units);
  free(eq->unit_of);
  free(eq->temp);
  free(eq->temp_t);
  wq_free(&eq->q);
  pthread_mutex_destroy(&eq->mu);
  free(eq);
}

int equipment_open(gw_t *gw) {
  struct equipment *eq = calloc(1, sizeof(*eq));
  if (!eq)
    return -ENOMEM;
  pthread_mutex_init(&eq->mu, NULL);
  eq->gw = gw;
  eq->cfg = gw->cfg;
  eq->factors = (carbon_factors_t){gw->cfg->energy_grid_factor, gw->cfg->energy_diesel_factor};
  eq->area_m2 = gw->cfg->area_cast_m2 + gw->cfg->area_prefab_m2;
  int rc = build(eq);
  if (rc == 0)
    rc = restore(eq);
  if (rc == 0)
    rc = gw_on_pack(gw, on_pack, eq);
  if (rc != 0) {
    free_eq(eq);
    return rc;
  }
  eq->next_persist = sg_now() + gw->cfg->energy_persist_s;
  uv_timer_init(gw->loop, &eq->tick);
  eq->tick.data = eq;
  eq->tick_open = true;
  uint64_t every = (uint64_t)llround(gw->cfg->energy_evaluate_s * 1000.0);
  uv_timer_start(&eq->tick, on_tick, FIRST_TICK_MS, every ? every : 1);
  gw->equipment = eq;
  size_t controlled = 0;
  for (size_t i = 0; i < eq->n_units; i++) {
    controlled += controllable(&eq->units[i]);
    if (controllable(&eq->units[i]))
      observe(&eq->units[i], sg_now());
  }
  log_info("%zu groups, %zu units under control, %zu metered", eq->n_groups, controlled,
           eq->n_units);
  return 0;
}

void equipment_stop(gw_t *gw) {
  struct equipment *eq = gw->equipment;
  if (!eq || eq->stopping)
    return;
  eq->stopping = true;
  if (eq->tick_open)
    uv_close((uv_handle_t *)&eq->tick, NULL);
  eq->tick_open = false;
}

void equipment_free(gw_t *gw) {
  struct equipment *eq = gw->equipment;
  if (!eq)
    return;
  gw->equipment = NULL;
  /* The loop has run out: no worker runs. Store what is left, here. */
  wq_t rest = {0};
  collect_energy(eq, &rest);
  pthread_mutex_lock(&eq->mu);
  wq_prepend(&rest, &eq->q); /* queued rows first, then the last figures */
  pthread_mutex_unlock(&eq->mu);
  int rc = wq_write(gw->db, &rest);
  if (rc != 0)
    log_err("cannot store the last equipment rows: %s", strerror(-rc));
  wq_free(&rest);
  free_eq(eq);
}

/* ======================================================================
 * ---- snapshots for the API (built on the loop, handed to an HTTP thread) */

static json_t *json_time(double t) { return t > 0 ? json_real(t) : json_null(); }
static json_t *json_num(double v) { return isfinite(v) ? json_real(v) : json_null(); }

static json_t *unit_json(const struct equipment *eq, const unit_t *u, double now) {
  json_t *j = json_pack("{s:s,s:s,s:s,s:s,s:f,s:i,s:s,s:b}", "id", u->dev->id, "type",
                        sg_devtype_name(u->dev->type), "group", group_name(eq, u), "kind",
                        u->dev->kind, "rated_kw", u->dev->rated_kw, "priority", u->dev->priority,
                        "controller", u->dev->coap, "controllable", controllable(u));
  bool known = u->known && (u->obs_ok || !controllable(u));
  const char *state = !known && u->run == EQP_UNKNOWN ? "unknown"
                      : known && !u->on               ? "off"
                                                      : eqp_run_name(u->run);
  json_object_set_new(j, "state", json_string(state));
  json_object_set_new(j, "on", known ? json_boolean(u->on) : json_null());
  json_object_set_new(j, "reachable", json_boolean(u->obs_ok));
  json_object_set_new(j, "power_kw", json_num(u->power_kw));
  json_object_set_new(j, "power_t", json_time(u->power_t));
  json_object_set_new(j, "since", json_time(u->since));
  json_object_set_new(j, "idle_since", json_time(u->idle_since));
  json_object_set_new(j, "run_h", json_real(u->run_s / 3600.0));
  json_object_set_new(j, "demand", u->demand < 0 ? json_null() : json_boolean(u->demand));
  json_object_set_new(j, "held", u->held ? json_string(eqp_hold_name(u->held)) : json_null());
  json_object_set_new(j, "override",
                      u->ovr ? json_pack("{s:b,s:f,s:f,s:s,s:s}", "on", u->ovr_on, "until",
                                         u->ovr_until, "set", u->ovr_t, "by", u->ovr_actor,
                                         "reason", u->ovr_note)
                             : json_null());
  json_object_set_new(j, "pending",
                      u->pending ? json_pack("{s:I,s:b,s:s,s:f,s:i}", "id", (json_int_t)u->cmd.id,
                                             "on", u->pending_on, "reason", u->cmd.reason, "sent",
                                             u->cmd_first_t, "attempts", u->cmd.attempts)
                                 : json_null());
  json_object_set_new(j, "not_following", json_boolean(u->not_following));
  json_object_set_new(j, "quiet_until",
                      u->quiet_until > now ? json_real(u->quiet_until) : json_null());
  return j;
}

static json_t *group_json(const struct equipment *eq, const group_t *g, double now) {
  const sg_group_t *c = g->cfg;
  json_t *members = json_array();
  double total = 0;
  for (size_t i = 0; i < g->n; i++) {
    const unit_t *u = &eq->units[g->members[i]];
    json_array_append_new(members, json_string(u->dev->id));
    total += isfinite(u->power_kw) ? u->power_kw : 0;
  }
  json_t *pol = json_pack("{s:f,s:f,s:f,s:f,s:f,s:i,s:f,s:s,s:b,s:s,s:s,s:f,s:f}", "peak_kw",
                          c->peak_kw, "peak_margin", c->peak_margin, "min_on_min", c->min_on_min,
                          "min_off_min", c->min_off_min, "idle_off_min", c->idle_off_min, "duty",
                          c->duty, "rotate_h", c->rotate_h, "schedule", c->schedule,
                          "schedule_allows_now", eqp_schedule_allows(&g->pol, local_hour(now)),
                          "dust_linkage", c->dust_linkage, "dust_level", c->dust_level,
                          "dust_min_run_min", c->dust_min_run_min, "freeze_c", c->freeze_c);
  return json_pack("{s:s,s:o,s:f,s:o,s:o,s:o}", "name", c->name, "members", members, "power_kw",
                   total, "policies", pol, "temp_c", json_num(g->temp_c), "dust_level",
                   c->dust_linkage[0] && g->dust_level >= 0 ? json_integer(g->dust_level)
                                                            : json_null());
}

typedef struct snap {
  double since, until;
  json_t *out;
  /* override */
  const char *unit, *by, *reason;
  int mode;
  double for_s;
  int rc;
  char *err;
  size_t errlen;
} snap_t;

static void status_on_loop(gw_t *gw, void *arg) {
  snap_t *s = arg;
  struct equipment *eq = gw->equipment;
  if (!eq)
    return;
  double now = sg_now();
  json_t *units = json_array(), *groups = json_array();
  for (size_t i = 0; i < eq->n_units; i++)
    json_array_append_new(units, unit_json(eq, &eq->units[i], now));
  for (size_t g = 0; g < eq->n_groups; g++)
    json_array_append_new(groups, group_json(eq, &eq->groups[g], now));
  s->out = json_pack("{s:f,s:o,s:o}", "now", now, "groups", groups, "units", units);
}

json_t *equipment_status_json(gw_t *gw) {
  snap_t s = {0};
  if (gw_call_on_loop(gw, status_on_loop, &s) != 0)
    return NULL;
  return s.out;
}

static json_t *day_json(const energy_day_t *d) {
  char date[16];
  time_t t = (time_t)d->day;
  struct tm tm;
  localtime_r(&t, &tm);
  strftime(date, sizeof(date), "%Y-%m-%d", &tm);
  return json_pack("{s:f,s:s,s:f,s:f,s:f,s:f,s:f,s:f}", "day", d->day, "date", date, "kwh", d->kwh,
                   "fuel_l", d->fuel_l, "run_h", d->run_s / 3600.0, "idle_h", d->idle_s / 3600.0,
                   "off_h", d->off_s / 3600.0, "idle_kwh", d->idle_kwh);
}

static void day_add(energy_day_t *to, const energy_day_t *d) {
  to->kwh += d->kwh;
  to->fuel_l += d->fuel_l;
  to->run_s += d->run_s;
  to->idle_s += d->idle_s;
  to->off_s += d->off_s;
  to->idle_kwh += d->idle_kwh;
}

static json_t *sum_json(const energy_day_t *d, const carbon_factors_t *f) {
  json_t *j = day_json(d);
  json_object_del(j, "day");
  json_object_del(j, "date");
  json_object_set_new(j, "t_co2", json_real(carbon_t(f, d->kwh, d->fuel_l)));
  return j;
}

/* Site totals per day over [since, until), into a sorted, merged list. */
static json_t *site_days(const struct equipment *eq, double since, double until) {
  energy_acc_t site = {0};
  for (size_t i = 0; i < eq->n_units; i++) {
    const energy_acc_t *a = &eq->units[i].acc;
    for (size_t k = 0; k < a->n; k++) {
      if (a->days[k].day < since || a->days[k].day >= until)
        continue;
      energy_day_t *d = energy_acc_day(&site, a->days[k].day + 1);
      if (d)
        day_add(d, &a->days[k]);
    }
  }
  json_t *days = json_array();
  for (size_t k = 0; k < site.n; k++) {
    json_t *j = day_json(&site.days[k]);
    json_object_set_new(j, "t_co2",
                        json_real(carbon_t(&eq->factors, site.days[k].kwh, site.days[k].fuel_l)));
    json_array_append_new(days, j);
  }
  energy_acc_free(&site);
  return days;
}

static json_t *factors_json(const struct equipment *eq) {
  return json_pack("{s:f,s:f,s:s}", "grid_t_per_mwh", eq->factors.grid_t_per_mwh, "diesel_kg_per_l",
                   eq->factors.diesel_kg_per_l, "formula",
                   "t_co2 = kwh / 1000 * grid_t_per_mwh + fuel_l * diesel_kg_per_l / 1000");
}

/* Per group (and "-" for the energy meters) over [since, until). */
static json_t *groups_json(const struct equipment *eq, double since, double until) {
  json_t *out = json_array();
  for (int g = -1; g < (int)eq->n_groups; g++) {
    energy_day_t sum = {0};
    bool any = false;
    for (size_t i = 0; i < eq->n_units; i++) {
      const unit_t *u = &eq->units[i];
      if (u->group != g)
        continue;
      energy_day_t d;
      energy_acc_sum(&u->acc, since, until, &d);
      day_add(&sum, &d);
      any = true;
    }
    if (!any)
      continue;
    json_t *j = sum_json(&sum, &eq->factors);
    json_object_set_new(j, "name", json_string(g < 0 ? "-" : eq->groups[g].cfg->name));
    json_array_append_new(out, j);
  }
  return out;
}

static void cumulative(const struct equipment *eq, energy_day_t *all, double *first) {
  memset(all, 0, sizeof(*all));
  *first = 0;
  for (size_t i = 0; i < eq->n_units; i++) {
    const energy_acc_t *a = &eq->units[i].acc;
    for (size_t k = 0; k < a->n; k++) {
      day_add(all, &a->days[k]);
      if (*first == 0 || a->days[k].day < *first)
        *first = a->days[k].day;
    }
  }
}

static json_t *per_m2(const struct equipment *eq, double t_co2) {
  return eq->area_m2 > 0 ? json_real(t_co2 * 1000.0 / eq->area_m2) : json_null();
}

static void energy_on_loop(gw_t *gw, void *arg) {
  snap_t *s = arg;
  struct equipment *eq = gw->equipment;
  if (!eq)
    return;
  json_t *units = json_array();
  energy_day_t period = {0};
  for (size_t i = 0; i < eq->n_units; i++) {
    const unit_t *u = &eq->units[i];
    json_t *days = json_array();
    for (size_t k = 0; k < u->acc.n; k++)
      if (u->acc.days[k].day >= s->since && u->acc.days[k].day < s->until)
        json_array_append_new(days, day_json(&u->acc.days[k]));
    energy_day_t sum;
    energy_acc_sum(&u->acc, s->since, s->until, &sum);
    day_add(&period, &sum);
    const energy_counter_t *c = &u->acc.kwh_ctr;
    json_t *ctr =
        c->have ? json_pack("{s:f,s:f,s:i,s:i,s:i}", "value", c->value, "t", c->t, "rollovers",
                            (int)c->rollovers, "resets", (int)c->resets, "jumps", (int)c->jumps)
                : json_null();
    json_array_append_new(units, json_pack("{s:s,s:s,s:s,s:s,s:f,s:o,s:o,s:o,s:f}", "id",
                                           u->dev->id, "type", sg_devtype_name(u->dev->type),
                                           "group", group_name(eq, u), "kind", u->dev->kind,
                                           "rated_kw", u->dev->rated_kw, "days", days, "total",
                                           sum_json(&sum, &eq->factors), "counter", ctr,
                                           "run_h_total", u->run_s / 3600.0));
  }
  energy_day_t all;
  double first;
  cumulative(eq, &all, &first);
  s->out = json_pack("{s:f,s:f,s:o,s:o,s:o,s:o,s:o,s:o}", "since", s->since, "until", s->until,
                     "factors", factors_json(eq), "units", units, "groups",
                     groups_json(eq, s->since, s->until), "days", site_days(eq, s->since, s->until),
                     "total", sum_json(&period, &eq->factors), "cumulative",
                     sum_json(&all, &eq->factors));
  json_object_set_new(json_object_get(s->out, "cumulative"), "since", json_time(first));
}

json_t *equipment_energy_json(gw_t *gw, double since, double until) {
  snap_t s = {.since = since, .until = until};
  if (gw_call_on_loop(gw, energy_on_loop, &s) != 0)
    return NULL;
  return s.out;
}

static void carbon_on_loop(gw_t *gw, void *arg) {
  snap_t *s = arg;
  struct equipment *eq = gw->equipment;
  if (!eq)
    return;
  energy_day_t period = {0}, all;
  for (size_t i = 0; i < eq->n_units; i++) {
    energy_day_t d;
    energy_acc_sum(&eq->units[i].acc, s->since, s->until, &d);
    day_add(&period, &d);
  }
  double first;
  cumulative(eq, &all, &first);
  double t_period = carbon_t(&eq->factors, period.kwh, period.fuel_l);
  double t_all = carbon_t(&eq->factors, all.kwh, all.fuel_l);
  json_t *days = site_days(eq, s->since, s->until), *d;
  size_t i;
  json_array_foreach(days, i, d) { /* energy has the state times; carbon needs none */
    json_object_del(d, "run_h");
    json_object_del(d, "idle_h");
    json_object_del(d, "off_h");
    json_object_del(d, "idle_kwh");
  }
  s->out = json_pack("{s:f,s:f,s:o,s:o,s:o,s:o,s:{s:f,s:f,s:f,s:o},s:{s:o,s:f,s:f,s:f,s:o}}",
                     "since", s->since, "until", s->until, "factors", factors_json(eq),
                     "floor_area_m2", eq->area_m2 > 0 ? json_real(eq->area_m2) : json_null(),
                     "days", days, "groups", groups_json(eq, s->since, s->until), "period", "kwh",
                     period.kwh, "fuel_l", period.fuel_l, "t_co2", t_period, "kg_per_m2",
                     per_m2(eq, t_period), "cumulative", "since", json_time(first), "kwh", all.kwh,
                     "fuel_l", all.fuel_l, "t_co2", t_all, "kg_per_m2", per_m2(eq, t_all));
}

json_t *equipment_carbon_json(gw_t *gw, double since, double until) {
  snap_t s = {.since = since, .until = until};
  if (gw_call_on_loop(gw, carbon_on_loop, &s) != 0)
    return NULL;
  return s.out;
}

static void override_on_loop(gw_t *gw, void *arg) {
  snap_t *s = arg;
  struct equipment *eq = gw->equipment;
  if (!eq || eq->stopping) {
    s->rc = -ECANCELED;
    return;
  }
  unit_t *u = unit_by_id(eq, s->unit);
  if (!u || u->dev->type != SG_DEV_EQUIPMENT) {
    snprintf(s->err, s->errlen, "no equipment unit \"%s\"", s->unit);
    s->rc = -ENOENT;
    return;
  }
  if (!controllable(u)) {
    snprintf(s->err, s->errlen, "%s has no controller (no coap key in its [device] section)",
             u->dev->id);
    s->rc = -EPERM;
    return;
  }
  double now = sg_now();
  if (s->mode < 0) {
    if (u->ovr) {
      log_info("%s: manual override cleared by %s", u->dev->id, s->by);
      snprintf(u->ovr_actor, sizeof(u->ovr_actor), "%s", s->by);
      snprintf(u->ovr_note, sizeof(u->ovr_note), "%s", s->reason);
      audit_note(eq, u, u->ovr_on, "override-cleared", "override", "cleared", now);
      /* Released as at expiry: the policies decide, starting now. */
      u->ovr_until = now;
      u->ovr_cleared = true;
    }
  } else {
    u->ovr = true;
    u->ovr_cleared = false;
    u->ovr_on = s->mode == 1;
    u->ovr_until = now + s->for_s;
    u->ovr_t = now;
    snprintf(u->ovr_actor, sizeof(u->ovr_actor), "%s", s->by);
    snprintf(u->ovr_note, sizeof(u->ovr_note), "%s", s->reason);
    log_info("%s: manual override %s for %.0f s by %s: %s", u->dev->id, u->ovr_on ? "on" : "off",
             s->for_s, s->by, s->reason);
    /* Sent even when the unit is already so: the person's command is
     * audited, and its 2.04 confirms it. */
    if (u->known && u->obs_ok && u->on == u->ovr_on && !u->pending)
      send_command(u, u->ovr_on, "override", now);
  }
  queue_state(eq, u);
  decide_group(eq, &eq->groups[u->group], now);
  if (s->mode < 0 && u->ovr && !u->known) {
    u->ovr = false; /* no decision without a state: drop it here */
    u->ovr_cleared = false;
    queue_state(eq, u);
  }
  s->out = unit_json(eq, u, now);
  s->rc = 0;
}

int equipment_override(gw_t *gw, const char *unit, int mode, double for_s, const char *by,
                       const char *reason, json_t **out, char *err, size_t errlen) {
  snap_t s = {.unit = unit,
              .mode = mode,
              .for_s = fmin(for_s, EQP_OVERRIDE_MAX_S),
              .by = by,
              .reason = reason,
              .err = err,
              .errlen = errlen};
  err[0] = '\0';
  *out = NULL;
  if (gw_call_on_loop(gw, override_on_loop, &s) != 0)
    s.rc = -ECANCELED;
  if (s.rc == -ECANCELED)
    snprintf(err, errlen, "the gateway is stopping");
  if (s.rc == 0)
    *out = s.out;
  else
    json_decref(s.out);
  return s.rc;
}
