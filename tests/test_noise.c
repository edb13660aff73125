/* GB 12523-2011 windows (gateway/rules/noise.c), each case computed by hand.
 *
 * The site is in Asia/Shanghai (UTC+8, no daylight saving). MID is local
 * midnight starting 2026-11-20, so MID + h*3600 is h o'clock site time. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "gateway/rules/rules.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MID 1795104000.0 /* 2026-11-20T00:00:00+08:00 */
#define H(h) (MID + (h)*3600.0)

static int in_shanghai(void **state) {
  (void)state;
  setenv("TZ", "Asia/Shanghai", 1);
  tzset();
  return 0;
}

static env_sample_t buf[4000];

/* n one-second samples of level `db` from t. */
static size_t fill(env_sample_t *s, double t, size_t n, double db) {
  for (size_t i = 0; i < n; i++)
    s[i] = (env_sample_t){t + (double)i, db};
  return n;
}

static void judge(const noise_params_t *p, size_t n, double start, noise_window_t *w) {
  noise_window(p, buf, n, NULL, 0, start, start + 1200, w);
}

static void a_constant_level_is_its_own_laeq(void **state) {
  (void)state;
  noise_params_t p;
  noise_params_default(&p);
  noise_window_t w;
  size_t n = fill(buf, H(10), 1200, 60.0);
  judge(&p, n, H(10), &w);
  assert_int_equal(w.n, 1200);
  assert_true(w.measured_s == 1200 && w.coverage == 1.0 && w.complete);
  assert_true(w.laeq == 60.0 && w.lmax == 60.0);
  assert_int_equal(w.period, NOISE_DAY);
  assert_true(w.limit == 70 && isnan(w.lmax_limit));
  assert_int_equal(w.verdict, 0);
}

/* 600 s at 70 and 600 s at 60: 10·lg((10^7 + 10^6)/2) = 10·lg(5.5·10^6)
 * = 67.40 dB(A), not the arithmetic 65. */
static void two_levels_average_by_energy(void **state) {
  (void)state;
  noise_params_t p;
  noise_params_default(&p);
  noise_window_t w;
  size_t n = fill(buf, H(10), 600, 70.0);
  n += fill(buf + n, H(10) + 600, 600, 60.0);
  judge(&p, n, H(10), &w);
  assert_true(w.laeq == 67.4);
  assert_int_equal(w.verdict, 0);
  /* 300 s at 80 and 900 s at 50: 10·lg((300·10^8 + 900·10^5)/1200)
   * = 10·lg(2.5075·10^7) = 73.99 -> 74.0, over the day limit of 70. */
  n = fill(buf, H(10), 300, 80.0);
  n += fill(buf + n, H(10) + 300, 900, 50.0);
  judge(&p, n, H(10), &w);
  assert_true(w.laeq == 74.0);
  assert_true(w.laeq_over && !w.lmax_over);
  assert_int_equal(w.verdict, 1);
}

/* Samples weigh by the time they stand for: with sample_s = 900, a 70 dB
 * reading at +0 stands for 300 s (the next comes at +300) and a 60 dB one
 * for 900 s: 10·lg((300·10^7 + 900·10^6)/1200) = 10·lg(3.25·10^6) = 65.12. */
static void samples_weigh_by_their_duration(void **state) {
  (void)state;
  noise_params_t p;
  noise_params_default(&p);
  p.sample_s = 900;
  buf[0] = (env_sample_t){H(10), 70.0};
  buf[1] = (env_sample_t){H(10) + 300, 60.0};
  noise_window_t w;
  judge(&p, 2, H(10), &w);
  assert_true(w.measured_s == 1200 && w.complete);
  assert_true(w.laeq == 65.1);
}

/* 21:50-22:10 touches the night, so the night limit (55) judges it: a
 * steady 56 dB(A) exceeds it, and the same level at 21:30-21:50 does not. */
static void a_window_crossing_22_is_judged_by_night(void **state) {
  (void)state;
  noise_params_t p;
  noise_params_default(&p);
  noise_window_t w;
  double start = H(21) + 50 * 60;
  size_t n = fill(buf, start, 1200, 56.0);
  judge(&p, n, start, &w);
  assert_int_equal(w.period, NOISE_NIGHT);
  assert_true(w.limit == 55 && w.lmax_limit == 70);
  assert_true(w.laeq == 56.0 && w.laeq_over);
  assert_int_equal(w.verdict, 1);
  start = H(21) + 30 * 60;
  n = fill(buf, start, 1200, 56.0);
  judge(&p, n, start, &w);
  assert_int_equal(w.period, NOISE_DAY);
  assert_int_equal(w.verdict, 0);
  /* 05:50-06:10 touches the night too. */
  start = H(5) + 50 * 60;
  n = fill(buf, start, 1200, 56.0);
  judge(&p, n, start, &w);
  assert_int_equal(w.period, NOISE_NIGHT);
}

/* 800 of 1200 s measured (66.7%) is incomplete: no verdict, never
 * "compliant". 900 s (75%) is complete. */
static void an_incomplete_window_has_no_verdict(void **state) {
  (void)state;
  noise_params_t p;
  noise_params_default(&p);
  noise_window_t w;
  size_t n = fill(buf, H(23), 800, 50.0);
  judge(&p, n, H(23), &w);
  assert_false(w.complete);
  assert_true(w.laeq == 50.0); /* over the measured time */
  assert_false(w.laeq_over);   /* 50 + 10·lg(800/1200) = 48.2 proves nothing */
  assert_int_equal(w.verdict, -1);
  n = fill(buf, H(23), 900, 50.0);
  judge(&p, n, H(23), &w);
  assert_true(w.complete && w.coverage == 0.75);
  assert_int_equal(w.verdict, 0);
}

/* Half a night window at 60 dB: 60 + 10·lg(600/1200) = 56.99 > 55 even if
 * the other half were silent, so it is exceeded though incomplete. */
static void an_incomplete_window_can_still_prove_an_exceedance(void **state) {
  (void)state;
  noise_params_t p;
  noise_params_default(&p);
  noise_window_t w;
  size_t n = fill(buf, H(23), 600, 60.0);
  judge(&p, n, H(23), &w);
  assert_false(w.complete);
  assert_true(w.laeq_over);
  assert_int_equal(w.verdict, 1);
}

/* Every other second missing: half the window, incomplete. */
static void gaps_are_missing_time(void **state) {
  (void)state;
  noise_params_t p;
  noise_params_default(&p);
  for (size_t i = 0; i < 600; i++)
    buf[i] = (env_sample_t){H(10) + 2.0 * (double)i, 60.0};
  noise_window_t w;
  judge(&p, 600, H(10), &w);
  assert_true(w.measured_s == 600 && w.coverage == 0.5 && !w.complete);
}

/* At night Lmax may exceed 55 by 15: 70.0 passes, 70.5 fails (4.2) though
 * the LAeq (50) is fine. By day there is no Lmax rule. */
static void a_night_lmax_breach_is_an_exceedance(void **state) {
  (void)state;
  noise_params_t p;
  noise_params_default(&p);
  noise_window_t w;
  size_t n = fill(buf, H(2), 1200, 50.0);
  env_sample_t lamax[2] = {{H(2) + 100, 69.9}, {H(2) + 700, 70.0}};
  noise_window(&p, buf, n, lamax, 2, H(2), H(2) + 1200, &w);
  assert_true(w.lmax == 70.0 && !w.lmax_over);
  assert_int_equal(w.verdict, 0);
  lamax[1].v = 70.5;
  noise_window(&p, buf, n, lamax, 2, H(2), H(2) + 1200, &w);
  assert_true(w.lmax == 70.5 && w.lmax_over && !w.laeq_over);
  assert_int_equal(w.verdict, 1);
  /* Without lamax readings, the highest 1-s LAeq stands in. */
  buf[500].v = 71.0;
  noise_window(&p, buf, n, NULL, 0, H(2), H(2) + 1200, &w);
  assert_true(w.lmax == 71.0 && w.lmax_over);
  /* The same by day: no Lmax rule. */
  n = fill(buf, H(9), 1200, 50.0);
  lamax[0].t = H(9) + 10;
  lamax[1].t = H(9) + 20;
  noise_window(&p, buf, n, lamax, 2, H(9), H(9) + 1200, &w);
  assert_false(w.lmax_over);
  assert_int_equal(w.verdict, 0);
}

/* Indoors both limits are 10 dB lower (4.3): 65 by day exceeds 60. */
static void indoor_measurement_lowers_the_limits(void **state) {
  (void)state;
  noise_params_t p;
  noise_params_default(&p);
  p.indoor = true;
  noise_window_t w;
  size_t n = fill(buf, H(10), 1200, 65.0);
  judge(&p, n, H(10), &w);
  assert_true(w.limit == 60);
  assert_int_equal(w.verdict, 1);
  n = fill(buf, H(23), 1200, 44.0);
  judge(&p, n, H(23), &w);
  assert_true(w.limit == 45 && w.lmax_limit == 60);
  assert_int_equal(w.verdict, 0);
}

/* Verdicts compare the level at 0.1 dB, as a meter shows it: 55.04 is
 * 55.0, within the limit; 55.05 is 55.1, over. */
static void levels_are_judged_at_a_tenth_of_a_decibel(void **state) {
  (void)state;
  noise_params_t p;
  noise_params_default(&p);
  noise_window_t w;
  size_t n = fill(buf, H(23), 1200, 55.04);
  judge(&p, n, H(23), &w);
  assert_true(w.laeq == 55.0 && !w.laeq_over);
  n = fill(buf, H(23), 1200, 55.06);
  judge(&p, n, H(23), &w);
  assert_true(w.laeq == 55.1 && w.laeq_over);
}

static void windows_align_to_the_site_clock(void **state) {
  (void)state;
  noise_params_t p;
  noise_params_default(&p);
  double end;
  assert_true(noise_aligned_start(&p, H(22) + 7 * 60 + 13, &end) == H(22));
  assert_true(end == H(22) + 1200);
  assert_true(noise_aligned_start(&p, H(23) + 59 * 60 + 59, &end) == H(23) + 2400);
  assert_true(end == H(24));
  assert_true(env_local_midnight(H(13)) == MID);
  /* A 7-minute window: the day's last one is cut at midnight. */
  p.window_s = 420;
  assert_true(noise_aligned_start(&p, H(24) - 1, &end) == MID + 205 * 420.0);
  assert_true(end == H(24));
}

static void day_and_night_follow_the_configured_hours(void **state) {
  (void)state;
  noise_params_t p;
  noise_params_default(&p);
  assert_false(noise_is_night(&p, H(6)));
  assert_true(noise_is_night(&p, H(6) - 1));
  assert_true(noise_is_night(&p, H(22)));
  assert_false(noise_is_night(&p, H(22) - 1));
  p.night_start_h = 23;
  p.day_start_h = 7;
  assert_false(noise_is_night(&p, H(22) + 1800));
  assert_true(noise_is_night(&p, H(6) + 1800));
}

static void an_empty_window_has_no_figures(void **state) {
  (void)state;
  noise_params_t p;
  noise_params_default(&p);
  noise_window_t w;
  noise_window(&p, NULL, 0, NULL, 0, H(10), H(10) + 1200, &w);
  assert_true(isnan(w.laeq) && isnan(w.lmax));
  assert_int_equal(w.verdict, -1);
  /* Samples outside the window are ignored; the last is cut at its end. */
  size_t n = fill(buf, H(10) - 10, 1300, 60.0);
  judge(&p, n, H(10), &w);
  assert_int_equal(w.n, 1200);
  assert_true(w.measured_s == 1200);
}

/* [noise], [dust] and [health] keys, their defaults and their checks. */
static void the_env_sections_configure_the_rules(void **state) {
  (void)state;
  sg_config_t *c = NULL;
  char err[256];
  assert_int_equal(sg_config_parse("[site]\nid = S\n", "t.conf", &c, err, sizeof(err)), 0);
  noise_params_t p, d;
  noise_params_from_config(c, &p);
  noise_params_default(&d);
  assert_memory_equal(&p, &d, sizeof(p));
  dust_params_t dp, dd;
  dust_params_from_config(c, &dp);
  dust_params_default(&dd);
  assert_memory_equal(&dp, &dd, sizeof(dp));
  health_params_t hp, hd;
  health_params_from_config(c, &hp);
  health_params_default(&hd);
  assert_memory_equal(&hp, &hd, sizeof(hp));
  sg_config_free(c);

  assert_int_equal(sg_config_parse("[site]\nid = S\n[noise]\nindoor = 1\nnight_start = 23\n"
                                   "day_start = 7\nwindow_min = 10\n[dust]\nlong_min = 30\n"
                                   "pm10_long_alarm = 180\nmax_exceed_day = 2\n",
                                   "t.conf", &c, err, sizeof(err)),
                   0);
  noise_params_from_config(c, &p);
  assert_true(p.indoor && p.night_start_h == 23 && p.day_start_h == 7 && p.window_s == 600);
  dust_params_from_config(c, &dp);
  assert_true(dp.window_s[DUST_LONG] == 1800 && dp.alarm[DUST_PM10][DUST_LONG] == 180);
  assert_int_equal(dp.max_exceed_day, 2);
  sg_config_free(c);

  assert_int_equal(sg_config_parse("[site]\nid = S\n[dust]\npm10_long_warn = 250\n", "t.conf", &c,
                                   err, sizeof(err)),
                   -EINVAL);
  assert_string_equal(err, "t.conf:4: [dust] pm10_long_warn (250) must be below "
                           "pm10_long_alarm (200)");
  assert_int_equal(sg_config_parse("[site]\nid = S\n[noise]\nnight_limit = 10\n", "t.conf", &c, err,
                                   sizeof(err)),
                   -EINVAL);
  assert_non_null(strstr(err, "t.conf:4: [noise] night_limit"));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(a_constant_level_is_its_own_laeq),
      cmocka_unit_test(two_levels_average_by_energy),
      cmocka_unit_test(samples_weigh_by_their_duration),
      cmocka_unit_test(a_window_crossing_22_is_judged_by_night),
      cmocka_unit_test(an_incomplete_window_has_no_verdict),
      cmocka_unit_test(an_incomplete_window_can_still_prove_an_exceedance),
      cmocka_unit_test(gaps_are_missing_time),
      cmocka_unit_test(a_night_lmax_breach_is_an_exceedance),
      cmocka_unit_test(indoor_measurement_lowers_the_limits),
      cmocka_unit_test(levels_are_judged_at_a_tenth_of_a_decibel),
      cmocka_unit_test(windows_align_to_the_site_clock),
      cmocka_unit_test(day_and_night_follow_the_configured_hours),
      cmocka_unit_test(an_empty_window_has_no_figures),
      cmocka_unit_test(the_env_sections_configure_the_rules),
  };
  return cmocka_run_group_tests(tests, in_shanghai, NULL);
}
