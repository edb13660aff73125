/* sg_parse_time: the time arguments of sitectl and sitegate-rx. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>
#include <string.h>

#include "common/common.h"

#include <errno.h>
#include <stdlib.h>
#include <time.h>

static const double NOW = 1795132800.0; /* 2026-11-20T00:00:00Z */

static int in_shanghai(void **state) {
  (void)state;
  setenv("TZ", "Asia/Shanghai", 1);
  tzset();
  return 0;
}

static void relative_times_count_back_from_now(void **state) {
  (void)state;
  double t;
  assert_int_equal(sg_parse_time("-2h", NOW, &t), 0);
  assert_true(t == NOW - 7200);
  assert_int_equal(sg_parse_time("-30m", NOW, &t), 0);
  assert_true(t == NOW - 1800);
  assert_int_equal(sg_parse_time("-45s", NOW, &t), 0);
  assert_true(t == NOW - 45);
  assert_int_equal(sg_parse_time("-1d", NOW, &t), 0);
  assert_true(t == NOW - 86400);
  assert_int_equal(sg_parse_time("-1.5h", NOW, &t), 0);
  assert_true(t == NOW - 5400);
}

static void unix_seconds_are_taken_as_they_are(void **state) {
  (void)state;
  double t;
  assert_int_equal(sg_parse_time("1795180800", NOW, &t), 0);
  assert_true(t == 1795180800.0);
}

static void iso_time_without_zone_is_site_local(void **state) {
  (void)state;
  double t;
  /* 2026-11-20T21:20 in Shanghai (UTC+8) is 13:20Z. */
  assert_int_equal(sg_parse_time("2026-11-20T21:20", NOW, &t), 0);
  assert_true(t == NOW + 13 * 3600 + 20 * 60);
  assert_int_equal(sg_parse_time("2026-11-20 21:20:30", NOW, &t), 0);
  assert_true(t == NOW + 13 * 3600 + 20 * 60 + 30);
  assert_int_equal(sg_parse_time("2026-11-21", NOW, &t), 0);
  assert_true(t == NOW + 16 * 3600);
}

static void iso_time_with_zone_uses_that_zone(void **state) {
  (void)state;
  double t;
  assert_int_equal(sg_parse_time("2026-11-20T21:20Z", NOW, &t), 0);
  assert_true(t == NOW + 21 * 3600 + 20 * 60);
  assert_int_equal(sg_parse_time("2026-11-20T21:20+08:00", NOW, &t), 0);
  assert_true(t == NOW + 13 * 3600 + 20 * 60);
  assert_int_equal(sg_parse_time("2026-11-20T21:20-05:00", NOW, &t), 0);
  assert_true(t == NOW + 26 * 3600 + 20 * 60);
}

static void nonsense_is_refused(void **state) {
  (void)state;
  static const char *const bad[] = {"",
                                    "yesterday",
                                    "-2x",
                                    "-h",
                                    "2026-13-01",
                                    "2026-11-20T25:00",
                                    "2026-11-20T21:20+8",
                                    "1795",
                                    "2026-11-20T21:20 junk",
                                    "2026-02-30T10:00",
                                    "2026-02-29",
                                    "2026-04-31"};
  double t;
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    if (sg_parse_time(bad[i], NOW, &t) != -EINVAL)
      fail_msg("\"%s\" was accepted", bad[i]);
  }
}

static void the_29th_of_february_is_a_day_in_leap_years_only(void **state) {
  (void)state;
  double t;
  assert_int_equal(sg_parse_time("2028-02-29T10:00", NOW, &t), 0);
  assert_int_equal(sg_parse_time("2000-02-29", NOW, &t), 0);
  assert_int_equal(sg_parse_time("2100-02-29", NOW, &t), -EINVAL);
}

/* Found by fuzz_http: 400 digits are "Unix seconds" of infinity. */
static void a_number_too_large_to_be_finite_is_refused(void **state) {
  (void)state;
  char big[402];
  double t;
  memset(big, '1', 400);
  big[400] = '\0';
  assert_int_equal(sg_parse_time(big, NOW, &t), -EINVAL);
  big[0] = '-';
  big[400] = 'd';
  big[401] = '\0';
  assert_int_equal(sg_parse_time(big, NOW, &t), -EINVAL);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(relative_times_count_back_from_now),
      cmocka_unit_test(unix_seconds_are_taken_as_they_are),
      cmocka_unit_test(iso_time_without_zone_is_site_local),
      cmocka_unit_test(iso_time_with_zone_uses_that_zone),
      cmocka_unit_test(nonsense_is_refused),
      cmocka_unit_test(the_29th_of_february_is_a_day_in_leap_years_only),
      cmocka_unit_test(a_number_too_large_to_be_finite_is_refused),
  };
  return cmocka_run_group_tests(tests, in_shanghai, NULL);
}
