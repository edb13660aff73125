/* What the equipment daemon hears (equipment_int.h): each controller's
 * observed /state, the authority on whether a unit is on, its power and
 * its operator's demand; and every pack the CoAP front accepted (core's
 * pack listener), whose counters and power feed each unit's energy
 * account (energy.c) and whose air temperatures, from weather and dust
 * stations, feed the freeze interlock.
 *
 * Both only record: a /state is handed to command.c to confirm commands,
 * and the groups are decided on the next tick (equipment.c), never from
 * here, so a burst of packs costs no decisions. */
#define LOG_MODULE "equipment"

#include "gateway/equipment/equipment_int.h"

#include <errno.h>
#include <math.h>
#include <string.h>

#define OBSERVE_REFRESH_S 120.0 /* register the /state observation again */
#define OBSERVE_RETRY_S 10.0    /* after an observation failed */

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

/* ---- what the controllers say */

static void on_state(void *arg, const coapfront_state_t *st, int err) {
  unit_t *u = arg;
  struct equipment *eq = u->eq;
  GW_ASSERT_LOOP(eq->gw);
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
  equipment__confirm(u, st->on, changed, now);
}

void equipment__observe(unit_t *u, double now) {
  u->obs_sent = now;
  int rc = coapfront_observe(u->eq->gw->coap, u->dev->coap, on_state, u);
  /* A URI it cannot use is the config's fault and stays so. A host name
   * that does not resolve comes later, to on_state as -EHOSTUNREACH, and is
   * retried like a controller that does not answer: DNS on a site's link
   * comes and goes, and a passing failure must not end control. */
  if (rc == -EINVAL) {
    log_err("%s is not under control: fix its coap key and restart", u->dev->id);
    u->ctl_bad = true;
  } else if (rc != 0) {
    log_debug("%s: cannot observe %s: %s", u->dev->id, u->dev->coap, strerror(-rc));
  }
}

void equipment__observe_due(struct equipment *eq, double now) {
  for (size_t i = 0; i < eq->n_units; i++) {
    unit_t *u = &eq->units[i];
    if (!equipment__controllable(u))
      continue;
    double every = u->obs_ok ? OBSERVE_REFRESH_S : OBSERVE_RETRY_S;
    if (now - u->obs_sent >= every)
      equipment__observe(u, now);
  }
}

/* ---- what the sensors say (ingest) */

void equipment__on_pack(void *arg, const gw_device_t *dev, const proto_pack_t *p) {
  struct equipment *eq = arg;
  GW_ASSERT_LOOP(eq->gw);
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
      if (!equipment__controllable(u) && t >= u->power_t) {
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
