/* Equipment energy and group control in the daemon (equipment.h has the
 * rules; energy.c and equipment_policy.c the arithmetic; equipment_int.h
 * the state and the other files of the daemon).
 *
 * This file is the life cycle and the evaluation: open builds a unit per
 * equipment unit and energy meter and a group per [group], restores them
 * from storage, listens to core's packs and starts observing the
 * controllers; then a timer every [energy] evaluate_s re-registers the
 * observations that are due, confirms or retries commands in flight,
 * decides every group (eqp_decide) and sends what changed, and queues the
 * figures to storage every persist_s. Dust levels are the environment
 * rules' latest PM10 level per station (env_dust_level(): the worse of its
 * short and long sliding windows); a fog cannon's minimum run keeps it
 * from chattering on their edge. Everything runs on the loop thread but
 * for the last write, which equipment_free makes after the loop ran out. */
#define LOG_MODULE "equipment"

#include "gateway/equipment/equipment_int.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define FIRST_TICK_MS 1000
#define TEMP_STALE_S 900.0 /* an older air temperature is no temperature */

/* ---- helpers */

double equipment__local_hour(double t) {
  time_t s = (time_t)t;
  struct tm tm;
  localtime_r(&s, &tm);
  return tm.tm_hour + tm.tm_min / 60.0 + tm.tm_sec / 3600.0;
}

unit_t *equipment__unit_by_id(struct equipment *eq, const char *id) {
  const sg_device_t *d = sg_config_device(eq->cfg, id);
  if (!d)
    return NULL;
  int k = eq->unit_of[d - eq->cfg->devices];
  return k >= 0 ? &eq->units[k] : NULL;
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
                    .controllable = equipment__controllable(u) && now >= u->quiet_until,
                    .known = u->known && (u->obs_ok || !equipment__controllable(u)),
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

void equipment__decide_group(struct equipment *eq, group_t *g, double now) {
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
  eqp_env_t env = {.now = now,
                   .local_h = equipment__local_hour(now),
                   .dust_level = g->dust_level,
                   .temp_c = g->temp_c};
  eqp_decide(&g->pol, v, g->n, &env, plan);
  for (size_t i = 0; i < g->n; i++) {
    unit_t *u = &eq->units[g->members[i]];
    bool dirty = false;
    if (plan[i].ovr_expired) {
      if (!u->ovr_cleared) {
        log_info("%s: the manual override (%s) has expired", u->dev->id, u->ovr_on ? "on" : "off");
        equipment__audit_note(eq, u, u->ovr_on, "override-expired", "override", "expired", now);
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
      equipment__queue_state(eq, u);
    if (plan[i].command)
      equipment__send_command(u, plan[i].on, plan[i].reason, now);
  }
  free(v);
  free(plan);
}

static void on_tick(uv_timer_t *t) {
  struct equipment *eq = t->data;
  double now = sg_now();
  GW_ASSERT_LOOP(eq->gw);
  equipment__observe_due(eq, now);
  equipment__check_pending(eq, now);
  for (size_t g = 0; g < eq->n_groups; g++)
    equipment__decide_group(eq, &eq->groups[g], now);
  if (now >= eq->next_persist) {
    eq->next_persist = now + eq->cfg->energy_persist_s;
    equipment__persist(eq);
  }
}

/* ---- start and stop */

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
  equipment__persist_free(eq);
  free(eq);
}

int equipment_open(gw_t *gw) {
  GW_ASSERT_LOOP(gw);
  struct equipment *eq = calloc(1, sizeof(*eq));
  if (!eq)
    return -ENOMEM;
  int rc = equipment__persist_init(eq);
  if (rc != 0) {
    free(eq);
    return rc;
  }
  eq->gw = gw;
  eq->cfg = gw->cfg;
  eq->factors = (carbon_factors_t){gw->cfg->energy_grid_factor, gw->cfg->energy_diesel_factor};
  eq->area_m2 = gw->cfg->area_cast_m2 + gw->cfg->area_prefab_m2;
  rc = build(eq);
  if (rc == 0)
    rc = equipment__restore(eq);
  if (rc == 0)
    rc = gw_on_pack(gw, equipment__on_pack, eq);
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
    controlled += equipment__controllable(&eq->units[i]);
    if (equipment__controllable(&eq->units[i]))
      equipment__observe(&eq->units[i], sg_now());
  }
  log_info("%zu groups, %zu units under control, %zu metered", eq->n_groups, controlled,
           eq->n_units);
  return 0;
}

void equipment_stop(gw_t *gw) {
  GW_ASSERT_LOOP(gw);
  struct equipment *eq = gw->equipment;
  if (!eq || eq->stopping)
    return;
  eq->stopping = true;
  if (eq->tick_open)
    uv_close((uv_handle_t *)&eq->tick, NULL);
  eq->tick_open = false;
}

void equipment_free(gw_t *gw) {
  GW_ASSERT_LOOP(gw); /* the thread of the loop, which has run out */
  struct equipment *eq = gw->equipment;
  if (!eq)
    return;
  gw->equipment = NULL;
  /* The loop has run out: no worker runs. Store what is left, here. */
  equipment__persist_flush(eq);
  free_eq(eq);
}
