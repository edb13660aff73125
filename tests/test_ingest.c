/* What the CoAP front answers when storage refuses (gateway/coap/ingest.c):
 * each errno's code, Max-Age, reject reason and diagnostic, by hand. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "gateway/coap/coap.h"

#include <errno.h>
#include <math.h>
#include <string.h>

#define T_MS 1795132800000LL /* 2026-11-20T00:00:00Z */

static const stor_reading_t good[2] = {{1, PROTO_Q_PM10, T_MS, 42.0}, {1, PROTO_Q_RH, T_MS, 61.0}};

static void only_a_full_queue_is_busy(void **state) {
  (void)state;
  gw_verdict_t v;
  gw_append_verdict(-EAGAIN, good, 2, &v);
  assert_int_equal(v.code, 503);
  assert_int_equal(v.why, GW_REJECT_BUSY);
  assert_string_equal(gw_reject_name(v.why), "storage_busy");
  assert_int_equal(v.max_age, 1);
  assert_string_equal(v.text, "gateway is busy; retry after Max-Age");
}

static void a_full_disk_is_503_for_a_minute(void **state) {
  (void)state;
  gw_verdict_t v;
  gw_append_verdict(-ENOSPC, good, 2, &v);
  assert_int_equal(v.code, 503);
  assert_int_equal(v.why, GW_REJECT_DISK_FULL);
  assert_int_equal(v.max_age, 60);
}

/* The review's case: -EINVAL was counted storage_busy and answered 5.00. A
 * value that is not finite in the second record is the sensor's to fix:
 * 4.00, invalid_reading, saying which record and what. */
static void an_invalid_reading_is_400_naming_the_record(void **state) {
  (void)state;
  stor_reading_t r[2] = {good[0], good[1]};
  r[1].value = NAN;
  gw_verdict_t v;
  gw_append_verdict(-EINVAL, r, 2, &v);
  assert_int_equal(v.code, 400);
  assert_int_equal(v.why, GW_REJECT_INVALID_READING);
  assert_string_equal(gw_reject_name(v.why), "invalid_reading");
  assert_int_equal(v.max_age, 0);
  assert_string_equal(v.text, "record 1 (rh at 1795132800000 ms) cannot be stored: its value is "
                              "not a finite number; fix it, resending it cannot help");
  r[1] = good[1];
  r[0].t_ms = -1;
  gw_append_verdict(-EINVAL, r, 2, &v);
  assert_int_equal(v.code, 400);
  assert_non_null(strstr(v.text, "record 0 (pm10 at -1 ms)"));
  assert_non_null(strstr(v.text, "its time is before 1970"));
  r[0] = good[0];
  r[0].quantity = PROTO_Q_COUNT;
  gw_append_verdict(-EINVAL, r, 2, &v);
  assert_non_null(strstr(v.text, "record 0 (? at"));
  assert_non_null(strstr(v.text, "its quantity is unknown"));
}

/* -EINVAL with every reading fine: the device id, the gateway's own fault
 * (the sender cannot fix it), so 5.00 like any other storage failure. */
static void storage_failures_are_500_storage_error(void **state) {
  (void)state;
  gw_verdict_t v;
  gw_append_verdict(-EIO, good, 2, &v);
  assert_int_equal(v.code, 500);
  assert_int_equal(v.why, GW_REJECT_STORAGE_ERROR);
  assert_string_equal(gw_reject_name(v.why), "storage_error");
  assert_int_equal(v.max_age, 0);
  assert_string_equal(v.text, "gateway storage failed (Input/output error); retry later");
  gw_append_verdict(-EINVAL, good, 2, &v);
  assert_int_equal(v.code, 500);
  assert_int_equal(v.why, GW_REJECT_STORAGE_ERROR);
}

static stor_ticket_t a_ticket(void) {
  stor_ticket_t t;
  memset(&t, 0, sizeof(t));
  strcpy(t.source, "scale");
  strcpy(t.type, "waste");
  strcpy(t.scale, "scale-01");
  strcpy(t.dir, "out");
  t.no = 12;
  t.t = 1795132800;
  t.net_kg = 17600;
  return t;
}

/* The review's case: a ticket the ledger can never hold got "busy;
 * resend", and the scale resent it forever. */
static void an_invalid_ticket_is_400_saying_what_is_wrong(void **state) {
  (void)state;
  char text[256];
  stor_ticket_t t = a_ticket();
  assert_int_equal(stor_ticket_check(&t, NULL, 0), 0);
  t.net_kg = 0;
  assert_int_equal(gw_ticket_refusal(-EINVAL, &t, text, sizeof(text)), 400);
  assert_string_equal(text, "ticket 12 of scale-01 cannot be stored: net weight is 0 kg; correct "
                            "it at the scale, resending it cannot help");
  t = a_ticket();
  strcpy(t.dir, "up");
  assert_int_equal(gw_ticket_refusal(-EINVAL, &t, text, sizeof(text)), 400);
  assert_non_null(strstr(text, "dir is not in or out"));
}

static void a_busy_or_stopping_ledger_is_still_503(void **state) {
  (void)state;
  char text[256];
  stor_ticket_t t = a_ticket();
  assert_int_equal(gw_ticket_refusal(-ENOMEM, &t, text, sizeof(text)), 503);
  assert_string_equal(text, "gateway is busy; resend the ticket");
  assert_int_equal(gw_ticket_refusal(-ESHUTDOWN, &t, text, sizeof(text)), 503);
  assert_string_equal(text, "gateway is stopping; resend the ticket later");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(only_a_full_queue_is_busy),
      cmocka_unit_test(a_full_disk_is_503_for_a_minute),
      cmocka_unit_test(an_invalid_reading_is_400_naming_the_record),
      cmocka_unit_test(storage_failures_are_500_storage_error),
      cmocka_unit_test(an_invalid_ticket_is_400_saying_what_is_wrong),
      cmocka_unit_test(a_busy_or_stopping_ledger_is_still_503),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
