/* CSV cells a spreadsheet would run as formulas (gateway/api/csv.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "gateway/api/api.h"

static void csv_guard_catches_every_formula_lead(void **state) {
  (void)state;
  static const char *const bad[] = {"=HYPERLINK(\"http://x\",\"t\")",
                                    "+cmd|' /C calc'!A0",
                                    "-2+3+cmd|' /C calc'!A0",
                                    "@SUM(1+1)*cmd|' /C calc'!A0",
                                    "\t=1+1",
                                    "\r=1+1",
                                    "=",
                                    "-",
                                    "+1+1",
                                    "-1e3=1"};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
    if (!api_csv_needs_guard(bad[i]))
      fail_msg("not guarded: %s", bad[i]);
}

static void csv_guard_leaves_numbers_and_text_alone(void **state) {
  (void)state;
  static const char *const ok[] = {"-17600", "-17.6", "+3", "1e5", "-1.5e-3",
                                   "龙运",   "a=b",   "",   "0",   "hazardous"};
  for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++)
    if (api_csv_needs_guard(ok[i]))
      fail_msg("guarded: %s", ok[i]);
  assert_false(api_csv_needs_guard(NULL));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(csv_guard_catches_every_formula_lead),
      cmocka_unit_test(csv_guard_leaves_numbers_and_text_alone),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
