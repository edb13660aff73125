/* Equipment energy and group control (gateway/equipment/energy.c,
 * gateway/equipment/equipment_policy.c, [group] in common/config.c): counters with
 * resets and rollovers, running / idle / off and daily figures, carbon,
 * and every group policy as table-driven cases of the pure decision, plus
 * a simulated week of duty rotation. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "gateway/equipment/equipment.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define EPS 1e-9
#define assert_near(a, b)                                                                          \
  assert_true(fabs((double)(a) - (double)(b)) < 1e-6 * (1 + fabs((double)(b))))

/* 2026-11-20 00:00 in Harbin (UTC+8). */
#define MIDNIGHT 1795104000.0
#define T0 (MIDNIGHT + 10 * 3600.0) /* 10:00 */

static int setup_tz(void **state) {
  (void)state;
  setenv("TZ", "Asia/Shanghai", 1);
  tzset();
  return 0;
}

/* ======================================================================
 * ---- counters */

static void counter_counts_rises_and_ignores_resends(void **state) {
  (void)state;
  energy_counter_t c = {0};
  double d;
  assert_int_equal(energy_counter_step(&c, 1000.0, T0, 75, &d), CTR_FIRST);
  assert_near(d, 0);
  assert_int_equal(energy_counter_step(&c, 1000.5, T0 + 30, 75, &d), CTR_STEP);
  assert_near(d, 0.5);
  assert_int_equal(energy_counter_step(&c, 1000.5, T0 + 30, 75, &d), CTR_STALE);
  assert_int_equal(energy_counter_step(&c, 999.0, T0 + 10, 75, &d), CTR_STALE);
  assert_near(d, 0);
  assert_int_equal(energy_counter_step(&c, 1000.5, T0 + 60, 75, &d), CTR_STEP);
  assert_near(d, 0);
  assert_int_equal(energy_counter_step(&c, NAN, T0 + 90, 75, &d), CTR_STALE);
  assert_int_equal(energy_counter_step(&c, -1, T0 + 90, 75, &d), CTR_STALE);
}

static void counter_reset_counts_from_zero(void **state) {
  (void)state;
  energy_counter_t c = {0};
  double d;
  energy_counter_step(&c, 12345.6, T0, 75, &d);
  /* Power-cycled meter: 0.4 kWh since it restarted, within what 75 kW draws in 60 s */
  assert_int_equal(energy_counter_step(&c, 0.4, T0 + 60, 75, &d), CTR_RESET);
  assert_near(d, 0.4);
  assert_int_equal(c.resets, 1);
  assert_int_equal(energy_counter_step(&c, 1.0, T0 + 90, 75, &d), CTR_STEP);
  assert_near(d, 0.6);
  /* A replaced meter that starts at 5,000: counting restarts, nothing counted */
  assert_int_equal(energy_counter_step(&c, 0.9, T0 + 100, 75, &d), CTR_RESET);
  energy_counter_step(&c, 1.0, T0 + 120, 75, &d);
  assert_int_equal(energy_counter_step(&c, 5000.0, T0 + 150, 75, &d), CTR_JUMP);
  assert_near(d, 0);
  assert_int_equal(energy_counter_step(&c, 5000.3, T0 + 180, 75, &d), CTR_STEP);
  assert_near(d, 0.3);
  assert_int_equal(c.jumps, 1);
}

static void counter_rollover_wraps_at_the_register_width(void **state) {
  (void)state;
  energy_counter_t c = {0};
  double d;
  energy_counter_step(&c, 99999.2, T0, 75, &d);
  /* 99,999.2 -> 100,000 (0.8) -> 0.3: 1.1 kWh in 60 s at 75 kW (max 1.875 + grace) */
  assert_int_equal(energy_counter_step(&c, 0.3, T0 + 60, 75, &d), CTR_ROLLOVER);
  assert_near(d, 1.1);
  assert_int_equal(c.rollovers, 1);
  /* An unbounded counter (no rating) rolls over only from the top tenth to the bottom one */
  energy_counter_t u = {0};
  energy_counter_step(&u, 999950.0, T0, 0, &d);
  assert_int_equal(energy_counter_step(&u, 20.0, T0 + 60, 0, &d), CTR_ROLLOVER);
  assert_near(d, 70.0);
  energy_counter_step(&u, 5000.0, T0 + 120, 0, &d);
  assert_int_equal(energy_counter_step(&u, 20.0, T0 + 180, 0, &d), CTR_RESET);
  assert_near(d, 20.0);
}

static void counter_bounds_a_long_gap_by_the_time_it_spans(void **state) {
  (void)state;
  energy_counter_t c = {0};
  double d;
  energy_counter_step(&c, 100.0, T0, 75, &d);
  /* Offline for two hours: 120 kWh is within 1.5 x 75 x 2 h = 225 */
  assert_int_equal(energy_counter_step(&c, 220.0, T0 + 7200, 75, &d), CTR_STEP);
  assert_near(d, 120.0);
  /* ... but 300 kWh in 10 minutes is not */
  assert_int_equal(energy_counter_step(&c, 520.0, T0 + 7800, 75, &d), CTR_JUMP);
}

/* ======================================================================
 * ---- states, days, carbon */

static void states_follow_the_kind_thresholds(void **state) {
  (void)state;
  eqp_thresholds_t th;
  eqp_kind_thresholds("tower_crane", 75, &th); /* off < 1.5 kW, idle < 11.25 kW */
  assert_near(th.off_kw, 1.5);
  assert_near(th.idle_kw, 11.25);
  assert_int_equal(eqp_classify(&th, 0.7), EQP_OFF);
  assert_int_equal(eqp_classify(&th, 8.0), EQP_IDLE);
  assert_int_equal(eqp_classify(&th, 11.25), EQP_RUNNING);
  assert_int_equal(eqp_classify(&th, NAN), EQP_UNKNOWN);
  eqp_kind_thresholds("hoist", 33, &th);
  assert_near(th.idle_kw, 3.3);
  eqp_kind_thresholds("no-such-kind", 100, &th);
  assert_near(th.off_kw, 2.0);
  assert_near(th.idle_kw, 15.0);
  eqp_kind_thresholds("tower_crane", 0, &th);
  assert_near(th.off_kw, 0.5);
  assert_near(th.idle_kw, 3.0);
}

static void power_readings_give_state_time_and_idle_energy(void **state) {
  (void)state;
  eqp_thresholds_t th = {1.5, 11.25};
  energy_acc_t a = {0};
  energy_acc_power(&a, &th, 50.0, T0, 120);       /* running from 10:00 */
  energy_acc_power(&a, &th, 8.0, T0 + 60, 120);   /* 60 s running, then idle */
  energy_acc_power(&a, &th, 0.5, T0 + 90, 120);   /* 30 s idle at 8 kW */
  energy_acc_power(&a, &th, 50.0, T0 + 690, 120); /* off: a 600 s gap counts 120 */
  energy_acc_power(&a, &th, 40.0, T0 + 600, 120); /* older than the last: ignored */
  assert_int_equal(a.n, 1);
  assert_near(a.days[0].day, MIDNIGHT);
  assert_near(a.days[0].run_s, 60);
  assert_near(a.days[0].idle_s, 30);
  assert_near(a.days[0].off_s, 120);
  assert_near(a.days[0].idle_kwh, 8.0 * 30 / 3600);
  energy_acc_free(&a);
}

static void energy_across_midnight_is_split_by_time(void **state) {
  (void)state;
  energy_acc_t a = {0};
  /* 23:50 -> 00:20 next day, 30 kWh: 10 minutes before midnight, 20 after */
  double t0 = MIDNIGHT + 86400 - 600;
  assert_int_equal(energy_acc_kwh(&a, 500.0, t0, 100), CTR_FIRST);
  assert_int_equal(energy_acc_kwh(&a, 530.0, t0 + 1800, 100), CTR_STEP);
  assert_int_equal(a.n, 1 + 1);
  assert_near(a.days[0].day, MIDNIGHT);
  assert_near(a.days[0].kwh, 10.0);
  assert_near(a.days[1].day, MIDNIGHT + 86400);
  assert_near(a.days[1].kwh, 20.0);
  /* fuel goes into the same days */
  energy_acc_fuel(&a, 10.0, t0, 30);
  energy_acc_fuel(&a, 16.0, t0 + 1800, 30);
  assert_near(a.days[0].fuel_l, 2.0);
  assert_near(a.days[1].fuel_l, 4.0);
  energy_day_t sum;
  energy_acc_sum(&a, MIDNIGHT, MIDNIGHT + 2 * 86400, &sum);
  assert_near(sum.kwh, 30.0);
  assert_near(sum.fuel_l, 6.0);
  energy_acc_sum(&a, MIDNIGHT + 86400, MIDNIGHT + 2 * 86400, &sum);
  assert_near(sum.kwh, 20.0);
  /* an earlier day arriving late is inserted in order */
  energy_day_t *d = energy_acc_day(&a, MIDNIGHT - 3600);
  assert_non_null(d);
  assert_int_equal(a.n, 3);
  assert_near(a.days[0].day, MIDNIGHT - 86400);
  assert_near(a.days[1].kwh, 10.0);
  energy_acc_free(&a);
}

static void carbon_is_grid_and_diesel_factors(void **state) {
  (void)state;
  carbon_factors_t f = {CARBON_GRID_T_PER_MWH, CARBON_DIESEL_KG_PER_L};
  /* 1,234.5 kWh x 0.5703 t/MWh = 0.70403535 t; 80 l x 2.63 kg/l = 0.2104 t */
  assert_near(carbon_t(&f, 1234.5, 0), 0.70403535);
  assert_near(carbon_t(&f, 0, 80), 0.2104);
  assert_near(carbon_t(&f, 1234.5, 80), 0.91443535);
  /* per m2 of the demo site's 62,000 m2: 0.91443535 t = 914.43535 kg -> 0.014749 kg/m2 */
  assert_near(carbon_t(&f, 1234.5, 80) * 1000 / 62000, 0.0147489573);
}

/* ======================================================================
 * ---- the policies, table-driven */

/* The table's macros give defaults that a case then overrides by name:
 * exactly what designated initializers allow, so GCC's warning about it
 * is off for this file. */
#pragma GCC diagnostic ignored "-Woverride-init"

#undef MIN /* sys/param.h's, through uv.h */
#define MIN 60.0
#define H 3600.0

/* A known, controllable unit; `since_ago` seconds since its last switch. */
#define UNIT(name, prio, rated, is_on, kw, since_ago)                                              \
  {                                                                                                \
    .id = name, .priority = prio, .rated_kw = rated, .controllable = true, .known = true,          \
    .on = is_on, .power_kw = kw, .run = (is_on) ? EQP_RUNNING : EQP_OFF,                           \
    .since = T0 - (since_ago), .run_h = 0                                                          \
  }

/* The defaults of [group]: min on/off 5 min, margin 10%, rotate 8 h. */
#define POLICY(...)                                                                                \
  {                                                                                                \
    .peak_margin = 0.1, .min_on_s = 5 * MIN, .min_off_s = 5 * MIN, .rotate_h = 8, .dust_level = 1, \
    .dust_min_run_s = 15 * MIN, .freeze_c = 2, __VA_ARGS__                                         \
  }

#define ENV(...)                                                                                   \
  { .now = T0, .local_h = 10, .dust_level = -1, .temp_c = NAN, __VA_ARGS__ }

typedef struct want {
  bool on;
  const char *reason; /* NULL: no command */
  eqp_hold_t held;
} want_t;

typedef struct pcase {
  const char *name;
  eqp_policy_t pol;
  eqp_env_t env;
  size_t n;
  eqp_unit_t u[4];
  want_t want[4];
} pcase_t;

#define ON                                                                                         \
  { true, NULL, EQP_HOLD_NONE }
#define OFF                                                                                        \
  { false, NULL, EQP_HOLD_NONE }

static const pcase_t cases[] = {
    /* ---- peak_kw */
    {"cap not exceeded: nothing changes",
     POLICY(.peak_kw = 150),
     ENV(),
     2,
     {UNIT("a", 1, 75, true, 60, H), UNIT("b", 2, 75, true, 60, H)},
     {ON, ON}},
    {"cap exceeded: the lowest priority goes",
     POLICY(.peak_kw = 150),
     ENV(),
     3,
     {UNIT("a", 1, 75, true, 70, H), UNIT("b", 2, 75, true, 70, H), UNIT("c", 3, 75, true, 40, H)},
     {{false, "peak-cap", EQP_HOLD_CAP}, ON, ON}},
    {"priority order: as many as needed, least important first",
     POLICY(.peak_kw = 100),
     ENV(),
     3,
     {UNIT("c", 3, 75, true, 60, H), UNIT("b", 2, 75, true, 50, H), UNIT("a", 1, 75, true, 30, H)},
     {ON, {false, "peak-cap", EQP_HOLD_CAP}, {false, "peak-cap", EQP_HOLD_CAP}}},
    {"equal priority: the larger load goes first",
     POLICY(.peak_kw = 120),
     ENV(),
     3,
     {UNIT("a", 1, 75, true, 40, H), UNIT("b", 1, 75, true, 60, H), UNIT("c", 5, 75, true, 50, H)},
     {ON, {false, "peak-cap", EQP_HOLD_CAP}, ON}},
    {"min on: a unit just started is shed after the others",
     POLICY(.peak_kw = 120),
     ENV(),
     3,
     {UNIT("a", 1, 75, true, 50, 1 * MIN), UNIT("b", 2, 75, true, 50, H),
      UNIT("c", 3, 75, true, 50, H)},
     {ON, {false, "peak-cap", EQP_HOLD_CAP}, ON}},
    {"min on: the cap still wins when nothing else helps",
     POLICY(.peak_kw = 100),
     ENV(),
     2,
     {UNIT("a", 1, 75, true, 70, 1 * MIN), UNIT("b", 2, 75, true, 70, 1 * MIN)},
     {{false, "peak-cap", EQP_HOLD_CAP}, ON}},
    {"hysteresis: no restore inside the margin (60 + 50 > 108)",
     POLICY(.peak_kw = 120),
     ENV(),
     2,
     {{.id = "a",
       .priority = 1,
       .rated_kw = 50,
       .controllable = true,
       .known = true,
       .since = T0 - H,
       .held = EQP_HOLD_CAP},
      UNIT("b", 2, 75, true, 60, H)},
     {{false, NULL, EQP_HOLD_CAP}, ON}},
    {"hysteresis: restore once the margin is free (50 + 50 <= 108)",
     POLICY(.peak_kw = 120),
     ENV(),
     2,
     {{.id = "a",
       .priority = 1,
       .rated_kw = 50,
       .controllable = true,
       .known = true,
       .since = T0 - H,
       .held = EQP_HOLD_CAP},
      UNIT("b", 2, 75, true, 50, H)},
     {{true, "peak-restore", EQP_HOLD_NONE}, ON}},
    {"min off: a shed unit waits before it is restored",
     POLICY(.peak_kw = 120),
     ENV(),
     2,
     {{.id = "a",
       .priority = 1,
       .rated_kw = 50,
       .controllable = true,
       .known = true,
       .since = T0 - 2 * MIN,
       .held = EQP_HOLD_CAP},
      UNIT("b", 2, 75, true, 20, H)},
     {{false, NULL, EQP_HOLD_CAP}, ON}},
    {"restore: the most important first, while it fits",
     POLICY(.peak_kw = 100),
     ENV(),
     3,
     {{.id = "a",
       .priority = 1,
       .rated_kw = 40,
       .controllable = true,
       .known = true,
       .since = T0 - H,
       .held = EQP_HOLD_CAP},
      {.id = "b",
       .priority = 3,
       .rated_kw = 40,
       .controllable = true,
       .known = true,
       .since = T0 - H,
       .held = EQP_HOLD_CAP},
      UNIT("c", 2, 75, true, 30, H)},
     {{false, NULL, EQP_HOLD_CAP}, {true, "peak-restore", EQP_HOLD_NONE}, ON}},
    {"restore counts what the unit drew when it last ran, not its rating",
     POLICY(.peak_kw = 100),
     ENV(),
     2,
     {{.id = "a",
       .priority = 1,
       .rated_kw = 75,
       .expect_kw = 40,
       .controllable = true,
       .known = true,
       .since = T0 - H,
       .held = EQP_HOLD_CAP},
      UNIT("b", 2, 75, true, 50, H)},
     {{true, "peak-restore", EQP_HOLD_NONE}, ON}},
    {"priority: a held unit takes the place of a less important one",
     POLICY(.peak_kw = 100),
     ENV(),
     3,
     {{.id = "a",
       .priority = 3,
       .rated_kw = 50,
       .controllable = true,
       .known = true,
       .since = T0 - H,
       .held = EQP_HOLD_CAP},
      UNIT("b", 1, 75, true, 60, H),
      UNIT("c", 2, 75, true, 30, H)},
     {{true, "peak-restore", EQP_HOLD_NONE}, {false, "peak-cap", EQP_HOLD_CAP}, ON}},
    {"priority: not one inside its minimum on time",
     POLICY(.peak_kw = 100),
     ENV(),
     2,
     {{.id = "a",
       .priority = 3,
       .rated_kw = 50,
       .controllable = true,
       .known = true,
       .since = T0 - H,
       .held = EQP_HOLD_CAP},
      UNIT("b", 1, 75, true, 60, 1 * MIN)},
     {{false, NULL, EQP_HOLD_CAP}, ON}},
    {"priority: never a more important one",
     POLICY(.peak_kw = 100),
     ENV(),
     2,
     {{.id = "a",
       .priority = 1,
       .rated_kw = 50,
       .controllable = true,
       .known = true,
       .since = T0 - H,
       .held = EQP_HOLD_CAP},
      UNIT("b", 3, 75, true, 60, H)},
     {{false, NULL, EQP_HOLD_CAP}, ON}},
    {"a unit its operator switched off stays off",
     POLICY(.peak_kw = 100),
     ENV(),
     2,
     {UNIT("a", 1, 40, false, 0, H), UNIT("b", 2, 75, true, 10, H)},
     {OFF, ON}},
    {"a command in flight counts as done",
     POLICY(.peak_kw = 100),
     ENV(),
     2,
     {{.id = "a",
       .priority = 1,
       .rated_kw = 75,
       .controllable = true,
       .known = true,
       .on = true,
       .power_kw = 70,
       .run = EQP_RUNNING,
       .since = T0 - 10,
       .pending = true,
       .pending_on = false},
      UNIT("b", 2, 75, true, 70, H)},
     {OFF, ON}},
    {"a unit of unknown state counts but is not commanded",
     POLICY(.peak_kw = 100),
     ENV(),
     2,
     {{.id = "a", .priority = 1, .rated_kw = 75, .controllable = true, .power_kw = 80},
      UNIT("b", 2, 75, true, 50, H)},
     {OFF, {false, "peak-cap", EQP_HOLD_CAP}}},
    {"a unit without a controller counts but is not commanded",
     POLICY(.peak_kw = 100),
     ENV(),
     2,
     {{.id = "a", .priority = 1, .rated_kw = 75, .known = true, .on = true, .power_kw = 80},
      UNIT("b", 2, 75, true, 50, H)},
     {ON, {false, "peak-cap", EQP_HOLD_CAP}}},
    /* ---- idle_off_min */
    {"idle for long enough: off; not yet: on",
     POLICY(.idle_off_s = 20 * MIN),
     ENV(),
     2,
     {{.id = "a",
       .rated_kw = 75,
       .controllable = true,
       .known = true,
       .on = true,
       .power_kw = 8,
       .run = EQP_IDLE,
       .since = T0 - H,
       .idle_since = T0 - 25 * MIN},
      {.id = "b",
       .rated_kw = 75,
       .controllable = true,
       .known = true,
       .on = true,
       .power_kw = 8,
       .run = EQP_IDLE,
       .since = T0 - H,
       .idle_since = T0 - 10 * MIN}},
     {{false, "idle", EQP_HOLD_IDLE}, ON}},
    {"idle: the minimum on time holds",
     POLICY(.idle_off_s = 1 * MIN),
     ENV(),
     1,
     {{.id = "a",
       .rated_kw = 75,
       .controllable = true,
       .known = true,
       .on = true,
       .power_kw = 8,
       .run = EQP_IDLE,
       .since = T0 - 2 * MIN,
       .idle_since = T0 - 2 * MIN}},
     {ON}},
    {"demand brings a parked unit back, not one its operator switched off",
     POLICY(.idle_off_s = 20 * MIN),
     ENV(),
     3,
     {{.id = "a",
       .controllable = true,
       .known = true,
       .since = T0 - H,
       .demand = true,
       .held = EQP_HOLD_IDLE},
      {.id = "b", .controllable = true, .known = true, .since = T0 - H, .held = EQP_HOLD_IDLE},
      {.id = "c", .controllable = true, .known = true, .since = T0 - H, .demand = true}},
     {{true, "demand", EQP_HOLD_NONE}, {false, NULL, EQP_HOLD_IDLE}, OFF}},
    /* ---- schedule */
    {"schedule: off at night even inside the minimum on time",
     POLICY(.n_ranges = 1, .from_h = {6}, .to_h = {22}),
     ENV(.local_h = 22.5),
     2,
     {UNIT("a", 1, 75, true, 50, 1 * MIN), UNIT("b", 1, 75, false, 0, H)},
     {{false, "schedule", EQP_HOLD_SCHEDULE}, OFF}},
    {"schedule: back on in the morning, only what it switched off",
     POLICY(.n_ranges = 1, .from_h = {6}, .to_h = {22}),
     ENV(.local_h = 6.1),
     2,
     {{.id = "a",
       .controllable = true,
       .known = true,
       .since = T0 - 8 * H,
       .held = EQP_HOLD_SCHEDULE},
      UNIT("b", 1, 75, false, 0, H)},
     {{true, "schedule", EQP_HOLD_NONE}, OFF}},
    {"schedule: a range across midnight",
     POLICY(.n_ranges = 2, .from_h = {22, 12}, .to_h = {2, 13}),
     ENV(.local_h = 1.5),
     1,
     {UNIT("a", 1, 75, true, 50, H)},
     {ON}},
    /* ---- dust_linkage */
    {"freeze interlock: nothing sprays below 2 C, whatever the dust",
     POLICY(.dust_linked = true),
     ENV(.dust_level = 2, .temp_c = 1.5),
     2,
     {UNIT("a", 0, 18.5, true, 17, 1 * MIN), UNIT("b", 0, 18.5, false, 0, H)},
     {{false, "freeze", EQP_HOLD_FREEZE}, {false, NULL, EQP_HOLD_FREEZE}}},
    {"freeze interlock: no temperature is no spraying",
     POLICY(.dust_linked = true),
     ENV(.dust_level = 1),
     1,
     {UNIT("a", 0, 18.5, false, 0, H)},
     {{false, NULL, EQP_HOLD_FREEZE}}},
    {"dust at warning: every fog cannon on",
     POLICY(.dust_linked = true),
     ENV(.dust_level = 1, .temp_c = 5),
     2,
     {UNIT("a", 0, 18.5, false, 0, H), UNIT("b", 0, 18.5, true, 17, H)},
     {{true, "dust", EQP_HOLD_NONE}, ON}},
    {"dust at warning, linkage at alarm: nothing",
     POLICY(.dust_linked = true, .dust_level = 2),
     ENV(.dust_level = 1, .temp_c = 5),
     1,
     {UNIT("a", 0, 18.5, false, 0, H)},
     {{false, NULL, EQP_HOLD_DUST}}},
    {"dust cleared: off after the minimum run",
     POLICY(.dust_linked = true),
     ENV(.dust_level = 0, .temp_c = 5),
     2,
     {UNIT("a", 0, 18.5, true, 17, 5 * MIN), UNIT("b", 0, 18.5, true, 17, 20 * MIN)},
     {ON, {false, "dust-clear", EQP_HOLD_DUST}}},
    {"dust: the cap still applies",
     POLICY(.dust_linked = true, .peak_kw = 30),
     ENV(.dust_level = 2, .temp_c = 5),
     2,
     {UNIT("a", 1, 18.5, false, 0, H), UNIT("b", 2, 18.5, false, 0, H)},
     {{false, NULL, EQP_HOLD_CAP}, {true, "dust", EQP_HOLD_NONE}}},
    /* ---- duty */
    {"duty 2 of 3: the two with the fewest run-hours start",
     POLICY(.duty = 2),
     ENV(),
     3,
     {{.id = "a", .controllable = true, .known = true, .since = T0 - H, .run_h = 10},
      {.id = "b", .controllable = true, .known = true, .since = T0 - H, .run_h = 5},
      {.id = "c", .controllable = true, .known = true, .since = T0 - H, .run_h = 7}},
     {{false, NULL, EQP_HOLD_DUTY}, {true, "duty", EQP_HOLD_NONE}, {true, "duty", EQP_HOLD_NONE}}},
    {"duty 2 of 3 running: the one with the most run-hours stops",
     POLICY(.duty = 2),
     ENV(),
     3,
     {{.id = "a",
       .controllable = true,
       .known = true,
       .on = true,
       .run = EQP_RUNNING,
       .since = T0 - H,
       .run_h = 10},
      {.id = "b",
       .controllable = true,
       .known = true,
       .on = true,
       .run = EQP_RUNNING,
       .since = T0 - H,
       .run_h = 5},
      {.id = "c",
       .controllable = true,
       .known = true,
       .on = true,
       .run = EQP_RUNNING,
       .since = T0 - H,
       .run_h = 7}},
     {{false, "duty", EQP_HOLD_DUTY}, ON, ON}},
    {"duty rotation: 8 run-hours ahead swaps",
     POLICY(.duty = 2),
     ENV(),
     3,
     {{.id = "a",
       .controllable = true,
       .known = true,
       .on = true,
       .run = EQP_RUNNING,
       .since = T0 - H,
       .run_h = 20},
      {.id = "b",
       .controllable = true,
       .known = true,
       .on = true,
       .run = EQP_RUNNING,
       .since = T0 - H,
       .run_h = 15},
      {.id = "c",
       .controllable = true,
       .known = true,
       .since = T0 - H,
       .run_h = 11,
       .held = EQP_HOLD_DUTY}},
     {{false, "duty-rotation", EQP_HOLD_DUTY}, ON, {true, "duty-rotation", EQP_HOLD_NONE}}},
    {"duty rotation: not before the lead is 8 run-hours",
     POLICY(.duty = 2),
     ENV(),
     3,
     {{.id = "a",
       .controllable = true,
       .known = true,
       .on = true,
       .run = EQP_RUNNING,
       .since = T0 - H,
       .run_h = 20},
      {.id = "b",
       .controllable = true,
       .known = true,
       .on = true,
       .run = EQP_RUNNING,
       .since = T0 - H,
       .run_h = 15},
      {.id = "c",
       .controllable = true,
       .known = true,
       .since = T0 - H,
       .run_h = 13,
       .held = EQP_HOLD_DUTY}},
     {ON, ON, {false, NULL, EQP_HOLD_DUTY}}},
    {"duty: a unit parked idle still counts as in service",
     POLICY(.duty = 1, .idle_off_s = 20 * MIN),
     ENV(),
     2,
     {{.id = "a", .controllable = true, .known = true, .since = T0 - H, .held = EQP_HOLD_IDLE},
      {.id = "b", .controllable = true, .known = true, .since = T0 - H, .held = EQP_HOLD_DUTY}},
     {{false, NULL, EQP_HOLD_IDLE}, {false, NULL, EQP_HOLD_DUTY}}},
    /* ---- overrides */
    {"override on wins over the cap; the others make room",
     POLICY(.peak_kw = 100),
     ENV(),
     2,
     {{.id = "a",
       .priority = 1,
       .rated_kw = 70,
       .controllable = true,
       .known = true,
       .since = T0 - 30,
       .held = EQP_HOLD_CAP,
       .ovr = true,
       .ovr_on = true,
       .ovr_until = T0 + 2 * H},
      UNIT("b", 2, 75, true, 70, H)},
     {{true, "override", EQP_HOLD_NONE}, {false, "peak-cap", EQP_HOLD_CAP}}},
    {"override off wins over duty, which starts another",
     POLICY(.duty = 1),
     ENV(),
     2,
     {{.id = "a",
       .controllable = true,
       .known = true,
       .on = true,
       .run = EQP_RUNNING,
       .since = T0 - 30,
       .ovr = true,
       .ovr_on = false,
       .ovr_until = T0 + 1},
      {.id = "b", .controllable = true, .known = true, .since = T0 - H, .held = EQP_HOLD_DUTY}},
     {{false, "override", EQP_HOLD_OVERRIDE}, {true, "duty", EQP_HOLD_NONE}}},
    {"override expired: what it held off comes back",
     POLICY(),
     ENV(),
     1,
     {{.id = "a",
       .controllable = true,
       .known = true,
       .since = T0 - 2 * H,
       .held = EQP_HOLD_OVERRIDE,
       .ovr = true,
       .ovr_on = false,
       .ovr_until = T0}},
     {{true, "override-expired", EQP_HOLD_NONE}}},
    {"override expired: a dust group switches the unit off again",
     POLICY(.dust_linked = true),
     ENV(.dust_level = 0, .temp_c = 5),
     1,
     {{.id = "a",
       .controllable = true,
       .known = true,
       .on = true,
       .run = EQP_RUNNING,
       .since = T0 - H,
       .ovr = true,
       .ovr_on = true,
       .ovr_until = T0 - 1}},
     {{false, "dust-clear", EQP_HOLD_DUST}}},
};

static void policies_decide_each_table_case(void **state) {
  (void)state;
  for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
    const pcase_t *c = &cases[k];
    eqp_plan_t plan[4];
    eqp_decide(&c->pol, c->u, c->n, &c->env, plan);
    for (size_t i = 0; i < c->n; i++) {
      const want_t *w = &c->want[i];
      bool command = w->reason != NULL;
      bool ok = plan[i].on == w->on && plan[i].command == command && plan[i].held == w->held &&
                (!command || (plan[i].reason && strcmp(plan[i].reason, w->reason) == 0));
      if (!ok)
        fail_msg("case \"%s\", unit %s: got on=%d command=%d reason=%s held=%s; wanted on=%d "
                 "command=%d reason=%s held=%s",
                 c->name, c->u[i].id, plan[i].on, plan[i].command,
                 plan[i].reason ? plan[i].reason : "-", eqp_hold_name(plan[i].held), w->on, command,
                 w->reason ? w->reason : "-", eqp_hold_name(w->held));
    }
  }
}

static void override_expiry_is_reported_to_the_caller(void **state) {
  (void)state;
  eqp_policy_t p = POLICY();
  eqp_unit_t u[2] = {{.id = "a",
                      .controllable = true,
                      .known = true,
                      .on = true,
                      .ovr = true,
                      .ovr_on = true,
                      .ovr_until = T0},
                     {.id = "b",
                      .controllable = true,
                      .known = true,
                      .on = true,
                      .ovr = true,
                      .ovr_on = true,
                      .ovr_until = T0 + 1}};
  eqp_env_t env = ENV();
  eqp_plan_t plan[2];
  eqp_decide(&p, u, 2, &env, plan);
  assert_true(plan[0].ovr_expired);
  assert_false(plan[1].ovr_expired);
  assert_false(plan[0].command); /* forced on, and nothing switches it off */
}

static void schedule_day_follows_the_noise_periods(void **state) {
  (void)state;
  eqp_policy_t p = {0};
  p.n_ranges = sg_schedule_parse("day", 6, 22, p.from_h, p.to_h, EQP_SCHEDULE_MAX);
  assert_int_equal(p.n_ranges, 1);
  assert_true(eqp_schedule_allows(&p, 6.0));
  assert_true(eqp_schedule_allows(&p, 21.99));
  assert_false(eqp_schedule_allows(&p, 22.0));
  assert_false(eqp_schedule_allows(&p, 3.0));
  p.n_ranges = sg_schedule_parse("night", 6, 22, p.from_h, p.to_h, EQP_SCHEDULE_MAX);
  assert_true(eqp_schedule_allows(&p, 23.0));
  assert_false(eqp_schedule_allows(&p, 12.0));
  p.n_ranges = sg_schedule_parse("07:30-12, 13:00-19:00", 6, 22, p.from_h, p.to_h, 8);
  assert_int_equal(p.n_ranges, 2);
  assert_near(p.from_h[0], 7.5);
  assert_false(eqp_schedule_allows(&p, 12.5));
  assert_true(eqp_schedule_allows(&p, 18.9));
  assert_int_equal(sg_schedule_parse("always", 6, 22, p.from_h, p.to_h, 8), 0);
  static const char *const bad[] = {"07-07",    "25-3",   "7:3-8",    "7-8,",
                                    "7-8;9-10", "nights", "7-8,9-10", "-8"};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    int max = i == 6 ? 1 : 8; /* too many ranges */
    if (sg_schedule_parse(bad[i], 6, 22, p.from_h, p.to_h, max) != -EINVAL)
      fail_msg("schedule \"%s\" should be refused", bad[i]);
  }
}

/* A week of duty 2 of 3, evaluated every 5 minutes, units following at
 * once: run-hours stay within the rotation lead of each other, and
 * nothing chatters. */
static void duty_rotation_is_fair_over_a_simulated_week(void **state) {
  (void)state;
  eqp_policy_t p = POLICY(.duty = 2, .rotate_h = 8);
  eqp_unit_t u[3] = {
      {.id = "hoist-a", .controllable = true, .known = true, .run_h = 3.0},
      {.id = "hoist-b", .controllable = true, .known = true},
      {.id = "hoist-c", .controllable = true, .known = true, .run_h = 1.0},
  };
  const double step = 5 * MIN;
  int switches = 0;
  double max_spread = 0;
  for (double t = T0; t < T0 + 7 * 86400; t += step) {
    eqp_env_t env = ENV(.now = t);
    eqp_plan_t plan[3];
    eqp_decide(&p, u, 3, &env, plan);
    int on = 0;
    for (int i = 0; i < 3; i++) {
      u[i].held = plan[i].held;
      if (plan[i].command) {
        u[i].on = plan[i].on;
        u[i].since = t;
        u[i].run = plan[i].on ? EQP_RUNNING : EQP_OFF;
        switches++;
      }
      on += u[i].on;
    }
    assert_int_equal(on, 2);
    for (int i = 0; i < 3; i++)
      u[i].run_h += u[i].on ? step / H : 0;
    double lo = fmin(u[0].run_h, fmin(u[1].run_h, u[2].run_h));
    double hi = fmax(u[0].run_h, fmax(u[1].run_h, u[2].run_h));
    if (t > T0 + 86400)
      max_spread = fmax(max_spread, hi - lo);
  }
  /* 2 x 168 h shared by 3: 112 h each plus what they started with */
  for (int i = 0; i < 3; i++)
    assert_true(fabs(u[i].run_h - (112.0 + 4.0 / 3)) < 8.0);
  assert_true(max_spread <= 8.0 + step / H + EPS);
  /* Two starts, then swaps of two switches each: the lead grows 1 h per
   * hour, so about one swap every 12 h (14 in the week; measured 30
   * switches). Not more than one every 4 h, not fewer than one a day. */
  assert_true(switches <= 2 + 2 * 7 * 6);
  assert_true(switches >= 2 + 2 * 7);
}

/* A cap with a load that swings around it: the hysteresis band and the
 * minimum times keep the switching rare. */
static void cap_does_not_chatter_under_a_swinging_load(void **state) {
  (void)state;
  eqp_policy_t p = POLICY(.peak_kw = 150);
  eqp_unit_t u[3] = {UNIT("c1", 1, 75, true, 0, H), UNIT("c2", 2, 75, true, 0, H),
                     UNIT("c3", 3, 75, true, 0, H)};
  int switches = 0;
  for (int k = 0; k < 24 * 60 * 2; k++) { /* every 30 s for a day */
    double t = T0 + k * 30.0;
    for (int i = 0; i < 3; i++) /* each running unit draws 40..70 kW */
      u[i].power_kw = u[i].on ? 55 + 15 * sin(t / 400.0 + i) : 0.7;
    eqp_env_t env = ENV(.now = t);
    eqp_plan_t plan[3];
    eqp_decide(&p, u, 3, &env, plan);
    double total = 0;
    for (int i = 0; i < 3; i++) {
      u[i].held = plan[i].held;
      if (plan[i].command) {
        u[i].on = plan[i].on;
        u[i].since = t;
        switches++;
        u[i].power_kw = u[i].on ? 55 + 15 * sin(t / 400.0 + i) : 0.7;
      }
      total += u[i].power_kw;
    }
    assert_true(total <= 150 + 3 * 0.7);
    assert_true(u[2].on); /* the most important never goes */
  }
  /* at most one switch per unit per min_on + min_off */
  assert_true(switches <= 2 * 24 * 60 / 10);
}

/* ======================================================================
 * ---- [group] configuration */

static const char *const base_conf = "[site]\nid = S\n"
                                     "[device c1]\ntype = equipment\ngroup = cranes\n"
                                     "kind = tower_crane\nrated_kw = 75\n"
                                     "[device c2]\ntype = equipment\ngroup = cranes\n"
                                     "[device d1]\ntype = dust\n"
                                     "[device w1]\ntype = weather\n";

static int parse_with(const char *extra, char *err, size_t errlen, sg_config_t **out) {
  char text[4096];
  snprintf(text, sizeof(text), "%s%s", base_conf, extra);
  return sg_config_parse(text, "t.conf", out, err, errlen);
}

static void group_sections_parse_with_defaults(void **state) {
  (void)state;
  char err[256];
  sg_config_t *c;
  assert_int_equal(parse_with("[group cranes]\npeak_kw = 120\nschedule = day\n"
                              "[energy]\ngrid_factor_t_per_mwh = 0.6\n",
                              err, sizeof(err), &c),
                   0);
  assert_int_equal(c->n_groups, 1);
  const sg_group_t *g = sg_config_group(c, "cranes");
  assert_non_null(g);
  assert_near(g->peak_kw, 120);
  assert_near(g->peak_margin, 0.1);
  assert_near(g->min_on_min, 5);
  assert_near(g->freeze_c, 2);
  assert_string_equal(g->dust_level, "warning");
  assert_near(c->energy_grid_factor, 0.6);
  assert_near(c->energy_diesel_factor, 2.63);
  eqp_policy_t p;
  eqp_policy_from_config(c, g, &p);
  assert_int_equal(p.n_ranges, 1);
  assert_near(p.from_h[0], 6);
  assert_near(p.to_h[0], 22);
  assert_near(p.min_off_s, 300);
  assert_null(sg_config_group(c, "hoists"));
  sg_config_free(c);
  /* members, when given, are exactly the group's units */
  assert_int_equal(parse_with("[group cranes]\nmembers = c2, c1\n", err, sizeof(err), &c), 0);
  sg_config_free(c);
}

static void group_errors_name_the_line_and_the_fix(void **state) {
  (void)state;
  static const struct {
    const char *extra, *msg;
  } bad[] = {
      {"", "t.conf:3: [device c1] group = cranes: there is no [group cranes]"},
      {"[group cranes]\nmembers = c1 c3\n", "t.conf:15: [group cranes] members: no [device c3]"},
      {"[group cranes]\nmembers = c1 d1\n", "members: d1 is dust, not equipment"},
      {"[group cranes]\nmembers = c1\n", "members: c2 (group = cranes) is not listed"},
      {"[group cranes]\n[group cranes]\n", "t.conf:16: [group cranes] is defined twice"},
      {"[group cranes]\nschedule = nights\n", "schedule: \"nights\" is not always"},
      {"[group cranes]\ndust_linkage = w1\n", "dust_linkage: \"w1\" is not a dust device"},
      {"[group cranes]\ntemp_source = c1\n", "temp_source: \"c1\" is not a weather"},
      {"[group cranes]\ndust_level = high\n", "dust_level: \"high\" is not warning or alarm"},
      {"[group cranes]\noff_kw = 5\nidle_kw = 4\n", "off_kw (5) must be below idle_kw (4)"},
      {"[group cranes]\npeak_kw = -1\n", "t.conf:16: [group cranes] peak_kw: -1 is out of range"},
      {"[group cranes]\nfrobnicate = 1\n", "unknown key \"frobnicate\" in [group cranes]"},
      {"[group]\n", "t.conf:15: [group] needs a name"},
      {"[group cranes]\n[group x/y]\n", "[group x/y]: a group name is 1 to"},
      {"[group cranes]\n[energy]\nretries = 0\n", "[energy] retries: 0 is out of range"},
  };
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    char err[256];
    sg_config_t *c = NULL;
    assert_int_equal(parse_with(bad[i].extra, err, sizeof(err), &c), -EINVAL);
    assert_null(c);
    if (!strstr(err, bad[i].msg))
      fail_msg("case %zu: got \"%s\", wanted \"%s\"", i, err, bad[i].msg);
  }
}

static void group_dump_parses_back(void **state) {
  (void)state;
  char err[256];
  sg_config_t *a, *b;
  assert_int_equal(parse_with("[group cranes]\npeak_kw = 130.5\nduty = 1\n"
                              "schedule = 07:00-12:00,13:00-19:00\ndust_linkage = any\n",
                              err, sizeof(err), &a),
                   0);
  char *text = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&text, &len);
  sg_config_dump(a, f);
  fclose(f);
  assert_non_null(strstr(text, "[group cranes]\nmembers = \npeak_kw = 130.5\n"));
  assert_int_equal(sg_config_parse(text, "dump", &b, err, sizeof(err)), 0);
  assert_near(b->groups[0].peak_kw, 130.5);
  assert_int_equal(b->groups[0].duty, 1);
  assert_string_equal(b->groups[0].schedule, "07:00-12:00,13:00-19:00");
  free(text);
  sg_config_free(a);
  sg_config_free(b);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(counter_counts_rises_and_ignores_resends),
      cmocka_unit_test(counter_reset_counts_from_zero),
      cmocka_unit_test(counter_rollover_wraps_at_the_register_width),
      cmocka_unit_test(counter_bounds_a_long_gap_by_the_time_it_spans),
      cmocka_unit_test(states_follow_the_kind_thresholds),
      cmocka_unit_test(power_readings_give_state_time_and_idle_energy),
      cmocka_unit_test(energy_across_midnight_is_split_by_time),
      cmocka_unit_test(carbon_is_grid_and_diesel_factors),
      cmocka_unit_test(policies_decide_each_table_case),
      cmocka_unit_test(override_expiry_is_reported_to_the_caller),
      cmocka_unit_test(schedule_day_follows_the_noise_periods),
      cmocka_unit_test(duty_rotation_is_fair_over_a_simulated_week),
      cmocka_unit_test(cap_does_not_chatter_under_a_swinging_load),
      cmocka_unit_test(group_sections_parse_with_defaults),
      cmocka_unit_test(group_errors_name_the_line_and_the_fix),
      cmocka_unit_test(group_dump_parses_back),
  };
  return cmocka_run_group_tests(tests, setup_tz, NULL);
}
