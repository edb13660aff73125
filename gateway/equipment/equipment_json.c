/* The equipment API's snapshots (equipment.h "the daemon, for the API";
 * api/api_equipment.c serves them): the units and groups as they are, the
 * energy per unit, group and day, the carbon figure.
 *
 * The loop thread owns every unit's state, so each public function here is
 * called from an HTTP thread, goes onto the loop (gw_call_on_loop) to build
 * its JSON there, and hands the result back to the caller, who owns it.
 * Nothing here changes the state: these are reads, summed with energy.c's
 * arithmetic. */
#define LOG_MODULE "equipment"

#include "gateway/equipment/equipment_int.h"

#include <math.h>
#include <string.h>
#include <time.h>

static json_t *json_time(double t) { return t > 0 ? json_real(t) : json_null(); }
static json_t *json_num(double v) { return isfinite(v) ? json_real(v) : json_null(); }

json_t *equipment__unit_json(const struct equipment *eq, const unit_t *u, double now) {
  json_t *j =
      json_pack("{s:s,s:s,s:s,s:s,s:f,s:i,s:s,s:b}", "id", u->dev->id, "type",
                sg_devtype_name(u->dev->type), "group", equipment__group_name(eq, u), "kind",
                u->dev->kind, "rated_kw", u->dev->rated_kw, "priority", u->dev->priority,
                "controller", u->dev->coap, "controllable", equipment__controllable(u));
  bool known = u->known && (u->obs_ok || !equipment__controllable(u));
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
  json_t *pol = json_pack(
      "{s:f,s:f,s:f,s:f,s:f,s:i,s:f,s:s,s:b,s:s,s:s,s:f,s:f}", "peak_kw", c->peak_kw, "peak_margin",
      c->peak_margin, "min_on_min", c->min_on_min, "min_off_min", c->min_off_min, "idle_off_min",
      c->idle_off_min, "duty", c->duty, "rotate_h", c->rotate_h, "schedule", c->schedule,
      "schedule_allows_now", eqp_schedule_allows(&g->pol, equipment__local_hour(now)),
      "dust_linkage", c->dust_linkage, "dust_level", c->dust_level, "dust_min_run_min",
      c->dust_min_run_min, "freeze_c", c->freeze_c);
  return json_pack("{s:s,s:o,s:f,s:o,s:o,s:o}", "name", c->name, "members", members, "power_kw",
                   total, "policies", pol, "temp_c", json_num(g->temp_c), "dust_level",
                   c->dust_linkage[0] && g->dust_level >= 0 ? json_integer(g->dust_level)
                                                            : json_null());
}

/* A snapshot's call onto the loop: the period asked for, and the answer. */
typedef struct snap {
  double since, until;
  json_t *out;
} snap_t;

static void status_on_loop(gw_t *gw, void *arg) {
  snap_t *s = arg;
  GW_ASSERT_LOOP(gw);
  struct equipment *eq = gw->equipment;
  if (!eq)
    return;
  double now = sg_now();
  json_t *units = json_array(), *groups = json_array();
  for (size_t i = 0; i < eq->n_units; i++)
    json_array_append_new(units, equipment__unit_json(eq, &eq->units[i], now));
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
  GW_ASSERT_LOOP(gw);
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
                                           "group", equipment__group_name(eq, u), "kind",
                                           u->dev->kind, "rated_kw", u->dev->rated_kw, "days", days,
                                           "total", sum_json(&sum, &eq->factors), "counter", ctr,
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
  GW_ASSERT_LOOP(gw);
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
