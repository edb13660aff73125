/* The machinery rules (gateway/machinery/machinery_rule.c) with
 * hand-computed cases: presence, the zone's rule, hours on site, counter
 * rises with a reset, and the day's t CO2, NOx and PM. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "gateway/machinery/machinery.h"

#include <math.h>
#include <string.h>

static const mach_zone_t zone = {.min_stage = PROTO_STAGE_III,
                                 .require_registration = true,
                                 .opacity_limit = 0.80,
                                 .presence_s = 900};

static void near(double got, double want) {
  if (!(fabs(got - want) <= 1e-9 * (1 + fabs(want))))
    fail_msg("got %.12g, want %.12g", got, want);
}

static void latest_evidence_says_whether_a_machine_is_on_site(void **state) {
  (void)state;
  /* a terminal alone: on site for 15 minutes after its reading */
  assert_true(mach_on_site(&zone, false, false, 0, 1000, 1100));
  assert_true(mach_on_site(&zone, false, false, 0, 1000, 1900));
  assert_false(mach_on_site(&zone, false, false, 0, 1000, 1901));
  /* a gate alone: in until it leaves, however long */
  assert_true(mach_on_site(&zone, true, true, 1000, 0, 500000));
  assert_false(mach_on_site(&zone, true, false, 1000, 0, 1001));
  /* the exit is newer than the reading: gone */
  assert_false(mach_on_site(&zone, true, false, 2000, 1900, 2100));
  /* a reading after the exit: back and working */
  assert_true(mach_on_site(&zone, true, false, 2000, 2100, 2200));
  /* entered, terminal quiet for an hour: still on site */
  assert_true(mach_on_site(&zone, true, true, 1000, 1200, 5000));
}

static void the_zone_rule_names_what_a_machine_breaks(void **state) {
  (void)state;
  char why[256];
  assert_int_equal(mach_judge(&zone, true, PROTO_STAGE_II, NAN, why, sizeof(why)), MACH_STAGE);
  assert_string_equal(why, "stage II is below the zone's III (GB 20891-2014)");
  assert_int_equal(mach_judge(&zone, true, PROTO_STAGE_III, NAN, why, sizeof(why)), 0);
  assert_string_equal(why, "");
  assert_int_equal(mach_judge(&zone, true, PROTO_STAGE_0, 0.81, why, sizeof(why)),
                   MACH_STAGE | MACH_SMOKE);
  assert_string_equal(why, "stage 0 is below the zone's III (GB 20891-2014); smoke 0.81 1/m is "
                           "above 0.80 (GB 36886-2018)");
  /* at the limit is not above it */
  assert_int_equal(mach_judge(&zone, true, PROTO_STAGE_IV, 0.80, NULL, 0), 0);
  /* electric: no stage, no smoke */
  assert_int_equal(mach_judge(&zone, true, PROTO_STAGE_ELECTRIC, 2.0, NULL, 0), 0);
  /* unregistered: its stage is not known, its smoke is */
  assert_int_equal(mach_judge(&zone, false, -1, NAN, NULL, 0), MACH_UNREGISTERED);
  assert_int_equal(mach_judge(&zone, false, -1, 1.2, NULL, 0), MACH_UNREGISTERED | MACH_SMOKE);
  mach_zone_t lax = zone;
  lax.require_registration = false;
  lax.opacity_limit = 0;
  assert_int_equal(mach_judge(&lax, false, -1, 3.0, NULL, 0), 0);
}

static void hours_on_site_are_the_union_of_gate_and_terminal(void **state) {
  (void)state;
  /* in 01:00, out 02:00: 3600 s */
  mach_move_t mv[] = {{3600, true}, {7200, false}};
  near(mach_onsite_s(&zone, false, mv, 2, NULL, 0, 0, 86400), 3600);
  /* readings at 7000 (inside: cut by the next at 7300 and the exit at
   * 7200) and 7300 (after the exit: covers 15 min to 8200) add 900 s */
  double rt[] = {7000, 7300};
  near(mach_onsite_s(&zone, false, mv, 2, rt, 2, 0, 86400), 4500);
  /* on site since yesterday, no event today: the whole day */
  near(mach_onsite_s(&zone, true, NULL, 0, NULL, 0, 0, 86400), 86400);
  /* a reading from before the day reaches 300 s into it */
  double before[] = {-600};
  near(mach_onsite_s(&zone, false, NULL, 0, before, 1, 0, 86400), 300);
  /* entered at 23:00: one hour, cut at midnight */
  mach_move_t late[] = {{82800, true}};
  near(mach_onsite_s(&zone, false, late, 1, NULL, 0, 0, 86400), 3600);
}

static void counters_rise_over_the_day_and_survive_a_reset(void **state) {
  (void)state;
  env_sample_t s[] = {{-100, 1000}, {100, 1002}, {200, 1005.5}, {300, 2}, {90000, 10}};
  /* 2 + 3.5 + 2 (reset: counts again from 0) */
  near(mach_counter_rise(s, 5, 0, 86400), 7.5);
  /* no baseline before the day: the first reading inside is */
  near(mach_counter_rise(s + 1, 4, 0, 86400), 5.5);
  assert_true(isnan(mach_counter_rise(s, 1, 0, 86400)));
  /* 1.5 of 6 engine hours idling: a quarter */
  near(mach_idle_share(1.5, 6), 0.25);
  assert_true(isnan(mach_idle_share(NAN, 6)) && isnan(mach_idle_share(1, 0)));
}

static void the_day_counts_co2_with_the_diesel_factor_and_nox_pm_by_stage(void **state) {
  (void)state;
  proto_machine_t m = {.code = "A1",
                       .type = "excavator",
                       .stage = PROTO_STAGE_III,
                       .power_kw = 103,
                       .fuel = PROTO_FUEL_DIESEL};
  mach_day_t d = {.onsite_h = 8, .engine_h = 6, .fuel_l = 42};
  mach_day_emissions(&m, 2.63, &d);
  near(d.t_co2, 42 * 2.63 / 1000); /* 0.11046 t */
  /* 75-130 kW, stage III: 4.0 g/kWh NOx + HC, 0.3 PM; 6 h x 103 kW x 0.5 = 309 kWh */
  near(d.nox_kg, 1.236);
  near(d.pm_kg, 0.0927);
  m.stage = PROTO_STAGE_ELECTRIC;
  m.fuel = PROTO_FUEL_ELECTRIC;
  mach_day_emissions(&m, 2.63, &d);
  near(d.t_co2 + d.nox_kg + d.pm_kg, 0);
  mach_factor_t f;
  mach_emission_factor(PROTO_STAGE_IV, 200, &f);
  near(f.nox_g_per_kwh, 2.0);
  near(f.pm_g_per_kwh, 0.025);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(latest_evidence_says_whether_a_machine_is_on_site),
      cmocka_unit_test(the_zone_rule_names_what_a_machine_breaks),
      cmocka_unit_test(hours_on_site_are_the_union_of_gate_and_terminal),
      cmocka_unit_test(counters_rise_over_the_day_and_survive_a_reset),
      cmocka_unit_test(the_day_counts_co2_with_the_diesel_factor_and_nox_pm_by_stage),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
