/* gateway/machinery: non-road mobile machinery (非道路移动机械) on the site
 * (issue 17): the register's machines, whether each is on site, the
 * zone's rule and each machine's daily figures.
 *
 * Two layers, so that every decision can be tested without a loop:
 *
 *   machinery_rule.c   pure: presence, the zone's rule, the daily figures
 *                      and the emission factor table
 *   machinery.c        the daemon: holds every machine's state on the
 *                      loop, fed by the register (the API tells it of
 *                      changes), entries and exits (core's move listener:
 *                      POST /g and `sitectl machine enter|leave`) and the
 *                      terminals' readings (core's pack listener), and
 *                      reports the rule to the alarm model
 *   api/api_machinery.c  the HTTP API (sitectl machine, machines)
 *
 * ---- On site
 * The latest evidence wins. A gate's entry or exit says where the machine
 * is from its time on; a terminal's reading newer than the last gate
 * event says it is on site and working, for [machinery] presence_min
 * after the reading. A machine whose terminal has gone quiet falls back
 * to what the gate last said (so one that entered and whose terminal
 * stops is still on site until it leaves).
 *
 * ---- The zone's rule ([machinery], cities' high-emission zones)
 * A machine on site breaks it when:
 *   machinery.unregistered  it is not in the register (or retired) and
 *                           require_registration is 1;
 *   machinery.stage         its engine stage (GB 20891-2014) is below
 *                           min_stage; electric machines never are;
 *   machinery.smoke         its terminal's latest smoke opacity is above
 *                           opacity_limit_per_m (GB 36886-2018 clause 4,
 *                           table 1; the default 0.80 m⁻¹ is meant as
 *                           class II for 37 kW and more, NOT confirmed
 *                           against the standard: deploy/CONFIG.md).
 * Each is an alarm (level alarm, source the registration code) through the
 * one alarm model. It clears at once (no hold) when the machine leaves the
 * site or is corrected (registered, its stage changed, a reading at or
 * under the limit): the condition is a fact, not a noisy figure.
 *
 * ---- Daily figures, per machine and local day
 *   hours on site  the union of gate intervals (entry to exit) and
 *                  reading intervals (a reading covers the time to the
 *                  next one, at most presence_min), inside the day;
 *   engine hours   the rise of the terminal's `engine_h` counter over the
 *                  day; fuel (l) the rise of its `fuel` counter. A counter
 *                  that goes down was reset: the new value is the rise;
 *   idle share     the rise of `idle_h` (engine hours idling) over that of
 *                  `engine_h`, where the terminal reports idle hours;
 *   t CO2          fuel_l x [energy] diesel_factor_kg_per_l / 1000 for
 *                  diesel (the carbon figure's factor), petrol at
 *                  MACH_PETROL_KG_PER_L. A terminal is a device of type
 *                  `machine`, never an equipment unit or energy meter, so
 *                  its fuel is in the equipment room's carbon figure not
 *                  at all, and the site's carbon adds machinery's once
 *                  (/api/carbon "machinery");
 *   NOx, PM (kg)   engine hours x rated power x MACH_LOAD_FACTOR x the
 *                  factor of its stage and power band (g/kWh,
 *                  mach_emission_factor(): the source is named there). */
#ifndef SITEGATE_GW_MACHINERY_H
#define SITEGATE_GW_MACHINERY_H

#include "gateway/core/core.h"
#include "gateway/rules/rules.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

/* ======================================================================
 * ---- pure (machinery_rule.c) */

/* GB/T 32151 defaults for motor gasoline (44.80 GJ/t, 18.90 tC/TJ, 98%
 * oxidised: 3.043 t CO2 per t) at 0.74 kg/l. */
#define MACH_PETROL_KG_PER_L 2.25
/* Average load over engine hours: an assumption of this gateway (no
 * terminal reports load), applied to every machine. */
#define MACH_LOAD_FACTOR 0.5

typedef struct mach_zone {
  int min_stage;             /* proto_stage_t, PROTO_STAGE_0..IV */
  bool require_registration; /* unregistered machines break the rule */
  double opacity_limit;      /* 1/m; 0: no smoke rule */
  double presence_s;         /* how long a terminal's reading counts */
} mach_zone_t;

/* From [machinery]. */
void mach_zone_from_config(const sg_config_t *cfg, mach_zone_t *z);

/* Whether a machine is on site at `now` (see "On site" above): the last
 * gate event (have_move, move_in, move_t) and the last terminal reading
 * (reading_t, 0: none). */
bool mach_on_site(const mach_zone_t *z, bool have_move, bool move_in, double move_t,
                  double reading_t, double now);

/* What a machine breaks, a bit per rule. */
enum { MACH_UNREGISTERED = 1, MACH_STAGE = 2, MACH_SMOKE = 4 };
/* Judges a machine on site: registered (in the register, not retired)
 * with its stage; `opacity` its latest smoke reading (NAN: none). Returns
 * the bits; `reasons` gets a sentence per bit, "; " between (may be NULL). */
unsigned mach_judge(const mach_zone_t *z, bool registered, int stage, double opacity, char *reasons,
                    size_t cap);

/* One gate event, for the figures. */
typedef struct mach_move {
  double t;
  bool in;
} mach_move_t;

/* Seconds on site in [from, to): `in_before` is where the gate left the
 * machine before `from`; moves[] (sorted, inside [from, to)) change it;
 * readings rt[] (sorted; those before `from` count for the time they
 * reach into it) each cover the time to the next one, at most presence_s.
 * The union of both, never more than to - from. */
double mach_onsite_s(const mach_zone_t *z, bool in_before, const mach_move_t *moves, size_t n_moves,
                     const double *rt, size_t n_rt, double from, double to);

/* The rise of a cumulative counter over [from, to): samples sorted by t;
 * the last one before `from` is the baseline (else the first inside). A
 * fall is a reset, the new value being the rise since. NAN without a
 * sample inside. */
double mach_counter_rise(const env_sample_t *s, size_t n, double from, double to);

typedef struct mach_factor {
  double nox_g_per_kwh, pm_g_per_kwh;
} mach_factor_t;
/* The emission factor of an engine of `stage` rated `power_kw`. Source:
 * the limit values of GB 20891 for the stage and power band, used as
 * factors (an engine meets its limit at most, so these estimate from
 * above): China I and II from GB 20891-2007, III and IV from GB
 * 20891-2014; stage 0 (no limit) is assumed at 1.5 x stage I; electric
 * is 0. Bands: < 37, 37-75, 75-130, >= 130 kW (the standard's 19-37,
 * 37-75, 75-130, 130-560 rows; NOx is the NOx + HC limit where the
 * standard limits their sum). */
void mach_emission_factor(int stage, double power_kw, mach_factor_t *out);

typedef struct mach_day {
  double onsite_h;
  double engine_h, fuel_l; /* NAN: no terminal readings that day */
  double idle_share;       /* idle_h rise / engine_h rise; NAN unless the terminal says */
  double t_co2;            /* from fuel; 0 without */
  double nox_kg, pm_kg;    /* from engine hours; 0 without */
} mach_day_t;
/* idle / engine hours, 0..1; NAN when either is unknown or engine_h is 0. */
double mach_idle_share(double idle_h, double engine_h);
/* The day's t CO2, NOx and PM from its engine hours and fuel for a
 * machine of `m`'s stage, power and fuel; `diesel_kg_per_l` is [energy]
 * diesel_factor_kg_per_l. Fills t_co2, nox_kg and pm_kg of `d`. */
void mach_day_emissions(const proto_machine_t *m, double diesel_kg_per_l, mach_day_t *d);

/* ======================================================================
 * ---- a day's figures from storage (machinery_days.c). Any thread, with
 * the caller's reader `rd`; 0 or -errno. */

/* Machine `code`'s figures over [day, end) (`end` now for today; `m` NULL
 * for a machine not in the register: no emissions without its stage). */
int machinery_day(stor_reader_t *rd, const sg_config_t *cfg, const char *code,
                  const stor_machine_t *m, double day, double end, mach_day_t *out);
/* cb(arg, code, m, d) for every machine that was on site or ran its engine
 * in [day, end): those in the register that day (retired later too), then
 * those only seen (m NULL). cb returns non-zero to stop. */
typedef int (*mach_days_cb)(void *arg, const char *code, const stor_machine_t *m,
                            const mach_day_t *d);
int machinery_days(stor_reader_t *rd, const sg_config_t *cfg, double day, double end,
                   mach_days_cb cb, void *arg);

/* ======================================================================
 * ---- the daemon (machinery.c). Loop thread, but where said. */

/* Starts: reads the register, the last moves and the terminals' latest
 * readings (a short synchronous read at start-up, as alarm_open), listens
 * to packs and moves, judges every machine. After alarm_open. 0 or -errno. */
int machinery_open(gw_t *gw);
void machinery_stop(gw_t *gw); /* closes the timer; the loop runs once more */
void machinery_free(gw_t *gw); /* after the loop has run out */

/* For the HTTP threads (they go onto the loop themselves): the register
 * changed (`m` as stored now; retired when m->retired != 0). 0 or
 * -ECANCELED while stopping. */
int machinery_note_register(gw_t *gw, const stor_machine_t *m);
/* Every machine the daemon knows, registered or only seen, as
 * {"CODE":{"registered","on_site","working","compliant","reasons":[...],
 * "last_move":{"t","in","source"}|null,"last_reading_t","opacity"}}; the
 * caller owns it. NULL while stopping. */
json_t *machinery_status_json(gw_t *gw);

#endif
