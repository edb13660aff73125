/* Commands to the equipment controllers (equipment_int.h): the policies'
 * switches and a person's override, sent as PUT /ctl through the CoAP
 * front, and what becomes of them.
 *
 * A command is confirmed when the unit's /state shows the state it asked
 * for (observe.c hands each observed state to equipment__confirm), or, for
 * a unit already in that state, by its 2.04. Not confirmed within
 * follow_s, it is sent again, up to [energy] retries commands; then the
 * unit "did not follow": alarm equipment.no_follow on the unit, and no
 * command goes to it for QUIET_FOLLOWS x follow_s. The alarm clears as
 * soon as the unit shows the state last asked for. Every command, and
 * every switch the gateway did not make, is a row of the audit trail
 * (queued to persist.c as it changes). The override is here because it
 * is a person's command: the API's call lands on the loop, sets or clears
 * it, and has the group decided again at once. */
#define LOG_MODULE "equipment"

#include "gateway/equipment/equipment_int.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#define QUIET_FOLLOWS 4 /* after "did not follow": follow_s x this without commands */
#define NO_FOLLOW_RULE "equipment.no_follow"

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

void equipment__audit_note(struct equipment *eq, const unit_t *u, bool on, const char *reason,
                           const char *origin, const char *result, double now) {
  stor_eqcmd_t c = {.id = eq->next_cmd_id++, .t = now, .on = on, .attempts = 0, .result_t = now};
  snprintf(c.unit, sizeof(c.unit), "%s", u->dev->id);
  snprintf(c.grp, sizeof(c.grp), "%s", equipment__group_name(eq, u));
  snprintf(c.reason, sizeof(c.reason), "%s", reason);
  snprintf(c.origin, sizeof(c.origin), "%s", origin);
  snprintf(c.result, sizeof(c.result), "%s", result);
  if (strcmp(origin, "override") == 0) {
    snprintf(c.actor, sizeof(c.actor), "%s", u->ovr_actor);
    snprintf(c.note, sizeof(c.note), "%s", u->ovr_note);
  }
  equipment__queue_cmd(eq, &c);
}

static void finish_cmd(struct equipment *eq, unit_t *u, const char *result, double now) {
  snprintf(u->cmd.result, sizeof(u->cmd.result), "%s", result);
  u->cmd.result_t = now;
  u->pending = false;
  equipment__queue_cmd(eq, &u->cmd);
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

void equipment__send_command(unit_t *u, bool on, const char *reason, double now) {
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
  snprintf(u->cmd.grp, sizeof(u->cmd.grp), "%s", equipment__group_name(eq, u));
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
  log_info("%s (%s): switch %s, %s", u->dev->id, equipment__group_name(eq, u), on ? "on" : "off",
           reason);
  equipment__queue_cmd(eq, &u->cmd);
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
  GW_ASSERT_LOOP(u->eq->gw);
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

void equipment__check_pending(struct equipment *eq, double now) {
  GW_ASSERT_LOOP(eq->gw);
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
    equipment__queue_cmd(eq, &u->cmd);
    transmit(u);
  }
}

/* ---- confirmation by the observed /state */

void equipment__confirm(unit_t *u, bool on, bool changed, double now) {
  struct equipment *eq = u->eq;
  if (u->pending && on == u->pending_on) {
    finish_cmd(eq, u, "followed", now);
  } else if (changed && !u->pending && u->wanted && on == u->want_on &&
             strcmp(u->cmd.result, "followed") != 0) {
    finish_cmd(eq, u, "followed-late", now); /* after it was given up */
    report_no_follow(eq, u, ALARM_NORMAL, now);
  } else if (changed && !u->pending) {
    /* Switched at the unit: its operator has it now. */
    log_info("%s: switched %s at the unit", u->dev->id, on ? "on" : "off");
    equipment__audit_note(eq, u, on, "at the unit", "local", "done", now);
    u->wanted = false;
    if (u->held != EQP_HOLD_NONE) {
      u->held = EQP_HOLD_NONE;
      equipment__queue_state(eq, u);
    }
  }
  if (u->not_following && (!u->wanted || on == u->want_on))
    report_no_follow(eq, u, ALARM_NORMAL, now);
}

/* ---- the manual override */

/* equipment_override's call onto the loop. */
typedef struct ovr_call {
  const char *unit, *by, *reason;
  int mode;
  double for_s;
  json_t *out;
  int rc;
  char *err;
  size_t errlen;
} ovr_call_t;

static void override_on_loop(gw_t *gw, void *arg) {
  ovr_call_t *s = arg;
  struct equipment *eq = gw->equipment;
  GW_ASSERT_LOOP(gw);
  if (!eq || eq->stopping) {
    s->rc = -ECANCELED;
    return;
  }
  unit_t *u = equipment__unit_by_id(eq, s->unit);
  if (!u || u->dev->type != SG_DEV_EQUIPMENT) {
    snprintf(s->err, s->errlen, "no equipment unit \"%s\"", s->unit);
    s->rc = -ENOENT;
    return;
  }
  if (!equipment__controllable(u)) {
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
      equipment__audit_note(eq, u, u->ovr_on, "override-cleared", "override", "cleared", now);
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
      equipment__send_command(u, u->ovr_on, "override", now);
  }
  equipment__queue_state(eq, u);
  equipment__decide_group(eq, &eq->groups[u->group], now);
  if (s->mode < 0 && u->ovr && !u->known) {
    u->ovr = false; /* no decision without a state: drop it here */
    u->ovr_cleared = false;
    equipment__queue_state(eq, u);
  }
  s->out = equipment__unit_json(eq, u, now);
  s->rc = 0;
}

int equipment_override(gw_t *gw, const char *unit, int mode, double for_s, const char *by,
                       const char *reason, json_t **out, char *err, size_t errlen) {
  ovr_call_t s = {.unit = unit,
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
