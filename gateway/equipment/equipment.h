/* gateway/equipment: equipment energy, group control and the site's carbon
 * figure (issue 5; DESIGN.md "Southbound CoAP contract" for /state and /ctl,
 * "Site configuration" for [group NAME]).
 *
 * Three layers, so that every decision can be tested without a loop:
 *
 *   energy.c            pure: counters (resets, rollovers), running / idle /
 *                       off from power, per-day accumulators, carbon
 *   equipment_policy.c  pure: the group policies, one function of the units'
 *                       state, the environment and the time
 *   the daemon          feeds both from ingest and from the controllers'
 *                       observed /state, sends the commands through the
 *                       CoAP front, confirms them, raises "did not follow"
 *                       alarms, keeps the audit trail (equipment_int.h:
 *                       equipment.c, observe.c, command.c, persist.c,
 *                       equipment_json.c)
 *   api/api_equipment.c the HTTP API (sitectl equipment / energy / carbon)
 *
 * ---- Energy, per unit (and per `energy` meter)
 * kWh come from the cumulative `energy` counter, never from integrating
 * power: the difference of consecutive readings, attributed to the local
 * days the interval spans (in proportion to time). A counter that goes
 * down is a rollover when wrapping at the next power of ten above the last
 * value explains it within what the unit can draw (rated_kw x time x 1.5),
 * else a reset (meter power-cycled or replaced: it counts again from 0, so
 * the new value is the energy since). A rise larger than the unit can
 * draw is a meter swap or a bad reading: the counter restarts from it and
 * the interval counts nothing. `fuel` (l, cumulative) is handled the same.
 *
 * Running / idle / off come from each `power` reading against the unit's
 * thresholds (per kind of equipment, fractions of rated_kw, see
 * eqp_kind_thresholds(); [group] off_kw and idle_kw override them). A
 * reading stands for the time to the next one, at most two reporting
 * intervals (a longer gap is unknown time). Idle energy is the power held
 * over the idle time (an estimate; daily kWh come from the counter).
 *
 * ---- Carbon (DESIGN.md "Uplink": daily energy/carbon summaries)
 *   t CO2 = kWh / 1000 x grid factor (t/MWh, default 0.5703, the national
 *           average grid emission factor published in 2023)
 *         + litres x diesel factor (kg/l, default 2.63) / 1000
 * Site electricity is the sum of every `energy` meter and every equipment
 * unit: an `energy` meter is taken to measure loads no unit measures. */
#ifndef SITEGATE_GW_EQUIPMENT_H
#define SITEGATE_GW_EQUIPMENT_H

#include "gateway/coap/coap.h"
#include "gateway/core/core.h"
#include "gateway/rules/rules.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ======================================================================
 * ---- energy accounting (energy.c), pure */

#define CARBON_GRID_T_PER_MWH 0.5703 /* national grid average, published 2023 */
/* GB/T 32151 defaults for diesel (42.652 GJ/t, 20.20 tC/TJ, 98% oxidised:
 * 3.096 t CO2 per t) at 0.85 kg/l. */
#define CARBON_DIESEL_KG_PER_L 2.63
#define ENERGY_PLAUSIBLE_FACTOR 1.5 /* a counter may rise at most 1.5 x rated */
#define ENERGY_FUEL_L_PER_KWH 0.35  /* diesel engines at full load, for plausibility */

typedef enum { EQP_OFF = 0, EQP_IDLE = 1, EQP_RUNNING = 2, EQP_UNKNOWN = 3 } eqp_run_t;
const char *eqp_run_name(int s); /* "off", "idle", "running", "unknown" */

typedef struct eqp_thresholds {
  double off_kw;  /* below: off (controller and heater standby) */
  double idle_kw; /* below (and not off): idle, powered but not working */
} eqp_thresholds_t;

/* The thresholds of a kind of equipment ("tower_crane", "hoist",
 * "fog_cannon", ...; an unknown kind gets the general ones) rated at
 * `rated_kw`. A unit without a rating gets 0.5 kW and 3 kW. */
void eqp_kind_thresholds(const char *kind, double rated_kw, eqp_thresholds_t *out);
eqp_run_t eqp_classify(const eqp_thresholds_t *th, double power_kw);

/* What one counter reading meant. */
typedef enum {
  CTR_FIRST,    /* the first reading: a baseline, no energy */
  CTR_STEP,     /* an ordinary rise (or no change) */
  CTR_ROLLOVER, /* wrapped at a power of ten */
  CTR_RESET,    /* went down: counting again from 0 */
  CTR_JUMP,     /* rose more than the unit can draw: baseline again */
  CTR_STALE,    /* not newer than the last reading (a resend): ignored */
} ctr_event_t;
const char *ctr_event_name(int e);

typedef struct energy_counter {
  bool have;
  double value, t; /* the last reading */
  uint32_t rollovers, resets, jumps;
} energy_counter_t;

/* Takes reading `value` at `t` (Unix s). `max_per_h` is the most the
 * counter can rise per hour (<= 0: no bound). *delta gets the amount to
 * count for the interval since the last reading (0 unless STEP, ROLLOVER
 * or RESET). */
ctr_event_t energy_counter_step(energy_counter_t *c, double value, double t, double max_per_h,
                                double *delta);

/* One unit's figures for one local day. */
typedef struct energy_day {
  double day; /* local midnight, Unix s */
  double kwh, fuel_l;
  double run_s, idle_s, off_s; /* time in each state */
  double idle_kwh;             /* energy while idle */
} energy_day_t;

/* A unit's accounting: counters, the last power reading and its days. */
typedef struct energy_acc {
  energy_counter_t kwh_ctr, fuel_ctr;
  bool have_power;
  double power_t, power_kw; /* the last power reading */
  energy_day_t *days;       /* sorted by day, oldest first */
  size_t n, cap;
  bool dirty;        /* changed since the caller last stored it ... */
  double dirty_from; /* ... from this day on (local midnight) */
} energy_acc_t;

void energy_acc_free(energy_acc_t *a);
/* The row of the local day containing `t`, created when missing; NULL
 * when out of memory. */
energy_day_t *energy_acc_day(energy_acc_t *a, double t);
/* Counts `amount` of `what` (offsetof a double of energy_day_t) spread over
 * [t0, t1] by local day, in proportion to time. Returns 0 or -ENOMEM. */
int energy_acc_spread(energy_acc_t *a, size_t what, double amount, double t0, double t1);
/* An `energy` counter reading; `max_kw` bounds its rise (<= 0: none). */
ctr_event_t energy_acc_kwh(energy_acc_t *a, double value, double t, double max_kw);
/* A `fuel` counter reading in litres; `max_l_per_h` as max_kw. */
ctr_event_t energy_acc_fuel(energy_acc_t *a, double value, double t, double max_l_per_h);
/* A `power` reading: the time since the last one (at most `max_gap_s`) is
 * counted in the state of the last one, and idle energy with its power. A
 * reading not newer than the last is ignored. */
void energy_acc_power(energy_acc_t *a, const eqp_thresholds_t *th, double power_kw, double t,
                      double max_gap_s);
/* Sums over days with since <= day < until into *out (day = since). */
void energy_acc_sum(const energy_acc_t *a, double since, double until, energy_day_t *out);

/* The local midnight at or before `t`, and the next one (process TZ). */
double energy_local_midnight(double t);
double energy_next_midnight(double t);

typedef struct carbon_factors {
  double grid_t_per_mwh;  /* t CO2 per MWh of electricity */
  double diesel_kg_per_l; /* kg CO2 per litre of diesel */
} carbon_factors_t;

/* t CO2 of `kwh` of electricity and `fuel_l` litres of diesel. */
double carbon_t(const carbon_factors_t *f, double kwh, double fuel_l);

/* ======================================================================
 * ---- group policies (equipment_policy.c), pure
 *
 * eqp_decide() takes a group's units as they are and returns what each
 * should be, with the reason, applying in this order (an earlier rule's
 * verdict binds the later ones):
 *
 *  1. manual override: an active one sets the unit, nothing else touches
 *     it; an expired one is dropped (a unit the override held off is
 *     released to the policies below, which normally switch it back on);
 *  2. schedule: outside the allowed hours every unit goes off ("schedule";
 *     minimum on time does not hold a unit against a legal limit), and
 *     comes back on when they begin again;
 *  3. dust linkage (fog cannons, sprays): below the freeze limit, or with
 *     no air temperature, every unit is off ("freeze"); otherwise while the
 *     linked dust figure is at the linkage level or above, every unit is
 *     on ("dust"), and after it clears a unit goes off ("dust-clear") once
 *     it has run for the minimum run;
 *  4. duty N: N units in service, those with the fewest run-hours; a
 *     running unit is swapped for a resting one when it has run `rotate_h`
 *     hours more ("duty-rotation"). A unit parked by idle_off counts as in
 *     service (it is the duty's pick, only without work);
 *  5. idle_off: a unit idle for that long goes off ("idle"); it comes back
 *     on when its controller reports demand ("demand");
 *  6. peak_kw: units to be switched on are taken, most important first,
 *     only while the group's power plus theirs (what each drew when it last
 *     ran, else its rating) stays under peak_kw x (1 - peak_margin): the
 *     hysteresis band that keeps a restored unit from pushing the group
 *     straight back over. A unit that does not fit takes the place of less
 *     important running units when switching those off makes it fit (they
 *     have had their minimum on time). Then, while
 *     the running units draw more than peak_kw, the least important are
 *     switched off ("peak-cap"): lowest priority first, the larger load
 *     first among equals; units past their minimum on time before the
 *     others, but the cap wins in the end (a breaker does not wait).
 *
 * Minimum on and off times: no rule but the override, the schedule, the
 * freeze interlock and the cap switches off a unit that has been on for
 * less than min_on_s, and nothing but an override switches on a unit off
 * for less than min_off_s.
 *
 * Who switches on what: the gateway switches on a unit only when it
 * switched it off itself (the unit is "held" by a policy whose reason has
 * gone), when a policy exists to run units (duty, dust linkage) or by an
 * override. A unit its operator switched off stays off. A unit whose
 * state is not known (no /state yet) is left alone but its power counts. */

typedef enum {
  EQP_HOLD_NONE = 0,
  EQP_HOLD_CAP,
  EQP_HOLD_IDLE,
  EQP_HOLD_DUTY,
  EQP_HOLD_SCHEDULE,
  EQP_HOLD_DUST,
  EQP_HOLD_FREEZE,
  EQP_HOLD_OVERRIDE,
} eqp_hold_t;
const char *eqp_hold_name(int h); /* "", "peak-cap", "idle", ... (the off reasons) */

#define EQP_SCHEDULE_MAX 8 /* allowed ranges in one schedule */

typedef struct eqp_policy {
  double peak_kw;     /* 0: no cap */
  double peak_margin; /* share of peak_kw kept free before restoring */
  double min_on_s, min_off_s;
  double idle_off_s; /* 0: not used */
  int duty;          /* units in service; 0: not used */
  double rotate_h;   /* run-hour lead that triggers a swap */
  int n_ranges;      /* allowed local hours [from, to); 0: always */
  double from_h[EQP_SCHEDULE_MAX], to_h[EQP_SCHEDULE_MAX];
  bool dust_linked;
  int dust_level; /* 1 warning, 2 alarm */
  double dust_min_run_s;
  double freeze_c;
} eqp_policy_t;

typedef struct eqp_unit {
  const char *id;
  int priority;      /* larger is more important */
  double rated_kw;   /* its rating */
  double expect_kw;  /* what it draws running (recent); 0: unknown, rated_kw counts */
  bool controllable; /* has a controller (coap URI) */
  bool known;        /* its state has been observed */
  bool on;           /* observed */
  double power_kw;   /* latest */
  eqp_run_t run;     /* from power_kw */
  double since;      /* last switch (observed, or commanded), Unix s; 0: unknown */
  double idle_since; /* start of the current idle run; 0: not idle */
  double run_h;      /* cumulative running hours */
  bool demand;       /* the controller asks to be switched on */
  eqp_hold_t held;   /* why the gateway keeps it off */
  bool pending;      /* a command is in flight ... */
  bool pending_on;   /* ... to this state */
  bool ovr;          /* a manual override exists ... */
  bool ovr_on;       /* ... for this state ... */
  double ovr_until;  /* ... until then (Unix s) */
} eqp_unit_t;

typedef struct eqp_env {
  double now;     /* Unix s */
  double local_h; /* local hour of `now`, 0..24 */
  int dust_level; /* of the linked figure: 0 normal, 1 warning, 2 alarm; -1 unknown */
  double temp_c;  /* air temperature; NAN when unknown */
} eqp_env_t;

typedef struct eqp_plan {
  bool on;            /* what the unit should be */
  eqp_hold_t held;    /* why it is kept off (NONE when on or not the gateway's doing) */
  const char *reason; /* of the command; NULL without one */
  bool command;       /* on differs from the unit's state (or pending command) */
  bool ovr_expired;   /* the override is over: the caller drops it */
} eqp_plan_t;

/* Decides for the `n` units of a group (see above); out has n entries. */
void eqp_decide(const eqp_policy_t *p, const eqp_unit_t *u, size_t n, const eqp_env_t *env,
                eqp_plan_t *out);

/* Whether local hour `h` is inside the policy's allowed hours. A range
 * with from > to spans midnight (22-6). */
bool eqp_schedule_allows(const eqp_policy_t *p, double h);

/* The policy of configured group `g`; the noise periods come from cfg. */
void eqp_policy_from_config(const sg_config_t *cfg, const sg_group_t *g, eqp_policy_t *p);

/* ======================================================================
 * ---- the daemon (equipment_json.c, command.c), for the API (api_equipment.c)
 *
 * The loop thread owns every unit's state; these are called from the HTTP
 * thread and go onto the loop themselves (gw_call_on_loop), returning a
 * JSON snapshot the caller owns, or NULL while the gateway stops. Field
 * names are the API's (DESIGN.md "Manager interface"). */
struct gw;

json_t *equipment_status_json(struct gw *gw);
/* Per unit and day, per group, per day and in total over local days
 * since <= day < until, and cumulative over every stored day. */
json_t *equipment_energy_json(struct gw *gw, double since, double until);
json_t *equipment_carbon_json(struct gw *gw, double since, double until);

/* Sets (mode 1 on, 0 off) or clears (mode -1) the manual override of
 * `unit` for `for_s` seconds (at most a week), by `by` for `reason`; the
 * group is decided again at once. Returns 0 with the unit as the API shows
 * it in *out (the caller's), or -ENOENT (no such unit), -EPERM (not
 * controllable: no coap), -ECANCELED while stopping; `err` says why. */
#define EQP_OVERRIDE_MAX_S (7 * 86400.0)
int equipment_override(struct gw *gw, const char *unit, int mode, double for_s, const char *by,
                       const char *reason, json_t **out, char *err, size_t errlen);

/* ---- life cycle (equipment.c). Every accepted pack reaches it through
 * core's pack listener: the energy accounts, the live power of units and
 * meters, and the air temperature. Loop thread. */
int equipment_open(gw_t *gw);  /* after alarm_open and coapfront_start */
void equipment_stop(gw_t *gw); /* before coapfront_stop; the loop runs once more */
void equipment_free(gw_t *gw); /* after the loop has run out: stores what is left */

#endif
