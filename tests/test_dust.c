/* Dust windows (gateway/rules/dust.c) and the sensor health checks
 * (gateway/rules/health.c), each case computed by hand. Site time is
 * Asia/Shanghai; MID is local midnight starting 2026-11-20. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "gateway/core/core.h"
#include "gateway/rules/rules.h"
#include "protocol/protocol.h"

#include <math.h>
#include <stdlib.h>
#include <time.h>

#define MID 1795104000.0 /* 2026-11-20T00:00:00+08:00 */
#define H(h) (MID + (h)*3600.0)

static int in_shanghai(void **state) {
  (void)state;
  setenv("TZ", "Asia/Shanghai", 1);
  tzset();
  return 0;
}

static env_sample_t pm[200], rh[200];

/* n readings every `step` s from t, of value v. */
static size_t fill(env_sample_t *s, double t, double step, size_t n, double v) {
  for (size_t i = 0; i < n; i++)
    s[i] = (env_sample_t){t + step * (double)i, v};
  return n;
}

/* An hour of 1-min readings: 30 at 100 and 30 at 200 average 150, which
 * is not above the warning level of 150; one more at 200 (31/29) gives
 * (31·200 + 29·100)/60 = 151.7, a warning; all at 201 is an alarm. */
static void hourly_pm10_meets_the_demo_levels(void **state) {
  (void)state;
  dust_params_t p;
  dust_params_default(&p);
  dust_window_t w;
  size_t n = fill(pm, H(9), 60, 30, 100);
  n += fill(pm + n, H(9) + 1800, 60, 30, 200);
  dust_window(&p, DUST_PM10, DUST_LONG, pm, n, NULL, 0, 60, H(9), H(10), &w);
  assert_int_equal(w.n, 60);
  assert_true(w.complete && w.coverage == 1.0);
  assert_true(w.mean == 150.0 && w.max == 200.0);
  assert_true(w.warn == 150 && w.alarm == 200);
  assert_int_equal(w.level, 0);
  pm[29].v = 200;
  dust_window(&p, DUST_PM10, DUST_LONG, pm, n, NULL, 0, 60, H(9), H(10), &w);
  assert_true(fabs(w.mean - 151.6667) < 1e-3);
  assert_int_equal(w.level, 1);
  fill(pm, H(9), 60, 60, 201);
  dust_window(&p, DUST_PM10, DUST_LONG, pm, 60, NULL, 0, 60, H(9), H(10), &w);
  assert_int_equal(w.level, 2);
}

/* A 15-min window with levels set: 15 readings, the mean over it. */
static void short_windows_use_their_own_levels(void **state) {
  (void)state;
  dust_params_t p;
  dust_params_default(&p);
  dust_window_t w;
  size_t n = fill(pm, H(9), 60, 15, 120);
  dust_window(&p, DUST_PM10, DUST_SHORT, pm, n, NULL, 0, 60, H(9), H(9) + 900, &w);
  assert_true(w.complete && w.mean == 120);
  assert_int_equal(w.level, -1); /* no short levels by default */
  p.warn[DUST_PM10][DUST_SHORT] = 100;
  p.alarm[DUST_PM10][DUST_SHORT] = 250;
  dust_window(&p, DUST_PM10, DUST_SHORT, pm, n, NULL, 0, 60, H(9), H(9) + 900, &w);
  assert_int_equal(w.level, 1);
}

/* Readings every 2 min on a 1-min station stand for 1 min each: 30 of 60
 * minutes measured, incomplete, no level even though the mean is 300. */
static void an_incomplete_dust_window_has_no_level(void **state) {
  (void)state;
  dust_params_t p;
  dust_params_default(&p);
  dust_window_t w;
  size_t n = fill(pm, H(9), 120, 30, 300);
  dust_window(&p, DUST_PM10, DUST_LONG, pm, n, NULL, 0, 60, H(9), H(10), &w);
  assert_true(w.measured_s == 1800 && !w.complete);
  assert_true(w.mean == 300);
  assert_int_equal(w.level, -1);
}

/* In fog (RH 96 > 95) ten readings of 400 are flagged and left out: the
 * mean is over the other 50 at 100, and 50 of 60 minutes is complete. */
static void readings_in_fog_are_flagged_and_left_out(void **state) {
  (void)state;
  dust_params_t p;
  dust_params_default(&p);
  dust_window_t w;
  size_t n = fill(pm, H(6), 60, 60, 100);
  fill(rh, H(6), 60, 60, 80);
  for (size_t i = 20; i < 30; i++) {
    pm[i].v = 400;
    rh[i].v = 96;
  }
  dust_window(&p, DUST_PM10, DUST_LONG, pm, n, rh, 60, 60, H(6), H(7), &w);
  assert_int_equal(w.n, 60);
  assert_int_equal(w.unreliable, 10);
  assert_true(w.measured_s == 3000 && w.complete);
  assert_true(w.mean == 100 && w.max == 100);
  assert_int_equal(w.level, 0);
  /* RH of exactly 95 is still reliable. */
  for (size_t i = 20; i < 30; i++)
    rh[i].v = 95;
  dust_window(&p, DUST_PM10, DUST_LONG, pm, n, rh, 60, 60, H(6), H(7), &w);
  assert_int_equal(w.unreliable, 0);
  /* (50·100 + 10·400)/60 = 150: exactly the warning level, not above. */
  assert_true(w.mean == 150);
  /* A stale humidity (older than two intervals) does not flag anything. */
  rh[0] = (env_sample_t){H(6) - 600, 99};
  dust_window(&p, DUST_PM10, DUST_LONG, pm, 5, rh, 1, 60, H(6), H(7), &w);
  assert_int_equal(w.unreliable, 0);
}

/* A day of hourly windows, 3 at alarm level and 2 at warning. */
static void exceedances_are_counted_per_level(void **state) {
  (void)state;
  dust_window_t w[24] = {0};
  int levels[24] = {0, 0, 0, 0, 0, 0, 0, 1, 2, 2, 1, 0, 0, 2, 0, 0, -1, -1, 0, 0, 0, 0, 0, 0};
  for (int i = 0; i < 24; i++)
    w[i].level = levels[i];
  assert_int_equal(dust_count_level(w, 24, 2), 3);
  assert_int_equal(dust_count_level(w, 24, 1), 5);
}

static void dust_quantities_map_to_protocol_names(void **state) {
  (void)state;
  assert_string_equal(dust_quantity_name(DUST_PM10), "pm10");
  assert_string_equal(dust_quantity_name(DUST_PM2_5), "pm2_5");
  assert_int_equal(dust_proto_quantity(DUST_TSP), PROTO_Q_TSP);
  assert_int_equal(dust_proto_quantity(7), -1);
}

/* ---- health */

/* interval 10 s, 3 intervals: 30 s of silence is fine, 31 s is offline. */
static void a_device_silent_for_n_intervals_is_offline(void **state) {
  (void)state;
  health_params_t p;
  health_params_default(&p);
  double silent;
  assert_false(health_offline(&p, 10, H(9), H(9) + 30, &silent));
  assert_true(silent == 30);
  assert_true(health_offline(&p, 10, H(9), H(9) + 31, &silent));
  assert_true(health_offline(&p, 10, 0, H(9), &silent)); /* never heard from */
}

/* [health] offline_intervals = 5 and a device reporting every 60 s: online
 * up to 300 s of silence, offline from 301 s. "online" in /api/status and
 * /metrics (gw_device_online) and the health.offline alarm agree at every
 * second around the limit; the old fixed 3 intervals would say offline at
 * 181 s. */
static void online_follows_the_configured_offline_intervals(void **state) {
  (void)state;
  static const char text[] = "[site]\nid = S\n[health]\noffline_intervals = 5\n"
                             "[device d1]\ntype = dust\ninterval_s = 60\n";
  sg_config_t *cfg = NULL;
  char err[256];
  assert_int_equal(sg_config_parse(text, "t.conf", &cfg, err, sizeof(err)), 0);
  gw_device_t dev = {.conf = &cfg->devices[0]};
  gw_t gw = {.cfg = cfg, .devices = &dev};
  health_params_t p;
  health_params_from_config(cfg, &p);
  atomic_store(&dev.last_ms, (int64_t)(H(9) * 1000));

  assert_true(gw_is_online(5, 60, H(9), H(9) + 300));
  assert_false(gw_is_online(5, 60, H(9), H(9) + 301));
  assert_false(gw_is_online(5, 60, 0, H(9))); /* never heard from */
  assert_true(gw_device_online(&gw, &dev, H(9) + 181));
  assert_true(gw_device_online(&gw, &dev, H(9) + 300));
  assert_false(gw_device_online(&gw, &dev, H(9) + 301));
  for (int s = 0; s <= 400; s++) {
    double silent;
    bool off = health_offline(&p, 60, H(9), H(9) + s, &silent);
    assert_true(gw_device_online(&gw, &dev, H(9) + s) == !off);
    assert_int_equal(gw_devices_online(&gw, H(9) + s), s <= 300);
  }
  atomic_store(&dev.last_ms, 0);
  assert_int_equal(gw_devices_online(&gw, H(9)), 0);
  sg_config_free(cfg);
}

/* A device's refusals by reason live in a table made at its first
 * refusal (most of 10,000 devices are never refused): before it every
 * reason reads 0, after it each reason counts its own and `rejects` the
 * total. */
static void a_devices_refusals_are_counted_by_reason(void **state) {
  (void)state;
  gw_device_t dev = {0};
  for (int k = 0; k < GW_REJECT_COUNT; k++)
    assert_int_equal(gw_device_rejects_by(&dev, k), 0);
  gw_device_reject(&dev, GW_REJECT_BUSY);
  gw_device_reject(&dev, GW_REJECT_BUSY);
  gw_device_reject(&dev, GW_REJECT_FORMAT);
  assert_int_equal(atomic_load(&dev.rejects), 3);
  for (int k = 0; k < GW_REJECT_COUNT; k++)
    assert_int_equal(gw_device_rejects_by(&dev, k), k == GW_REJECT_BUSY     ? 2
                                                    : k == GW_REJECT_FORMAT ? 1
                                                                            : 0);
  free((void *)atomic_load(&dev.reject_by));
}

/* A weighbridge sends when a truck comes: a quiet night (hours after its
 * last ticket, on an interval_s of 60) is online; a day of silence, or its
 * own heartbeat_s, is not. Never heard: silent since the gateway started. */
static void a_scale_is_judged_by_its_heartbeat_not_an_interval(void **state) {
  (void)state;
  const char *text = "[site]\nid = S\ntimezone = Asia/Shanghai\n"
                     "[device wb]\ntype = scale\ninterval_s = 60\n"
                     "[device wb2]\ntype = scale\nheartbeat_s = 7200\n";
  sg_config_t *cfg = NULL;
  char err[256];
  assert_int_equal(sg_config_parse(text, "t.conf", &cfg, err, sizeof(err)), 0);
  gw_device_t dev[2] = {{.conf = &cfg->devices[0]}, {.conf = &cfg->devices[1]}};
  gw_t gw = {.cfg = cfg, .devices = dev, .started = H(6)};
  assert_true(gw_event_driven(dev[0].conf));
  assert_true(gw_silence_allowed_s(3, dev[0].conf) == 86400);
  assert_true(gw_silence_allowed_s(3, dev[1].conf) == 7200);
  atomic_store(&dev[0].last_ms, (int64_t)(H(18) * 1000));
  assert_true(gw_device_online(&gw, &dev[0], H(18) + 3 * 60 + 1)); /* the old 3 x 60 s */
  assert_true(gw_device_online(&gw, &dev[0], H(18) + 12 * 3600));  /* the night */
  assert_false(gw_device_online(&gw, &dev[0], H(18) + 86401));
  assert_true(gw_device_online(&gw, &dev[1], H(6) + 7200)); /* never heard: since start */
  assert_false(gw_device_online(&gw, &dev[1], H(6) + 7201));
  sg_config_free(cfg);
}

/* 31 identical readings a minute apart: a 30-min run, a flatline; one
 * different value at the end breaks it. */
static void identical_readings_for_the_set_time_are_a_flatline(void **state) {
  (void)state;
  health_params_t p;
  health_params_default(&p);
  double run;
  size_t n = fill(pm, H(9), 60, 31, 42.0);
  assert_true(health_flatline(&p, pm, n, &run));
  assert_true(run == 1800);
  assert_false(health_flatline(&p, pm, 30, &run)); /* 29 min */
  pm[n] = (env_sample_t){H(9) + 31 * 60, 42.1};
  assert_false(health_flatline(&p, pm, n + 1, &run));
  assert_true(run == 0);
}

static void readings_outside_the_physical_range_are_faults(void **state) {
  (void)state;
  double bad = 0;
  env_sample_t s[3] = {{H(9), 50}, {H(9) + 1, 150}, {H(9) + 2, 60}};
  assert_true(health_out_of_range(PROTO_Q_LA, s, 3, &bad));
  assert_true(bad == 150);
  assert_false(health_out_of_range(PROTO_Q_PM10, s, 3, &bad));
  s[1].v = -1;
  assert_true(health_out_of_range(PROTO_Q_PM10, s, 3, &bad));
  s[1].v = 101;
  assert_true(health_out_of_range(PROTO_Q_RH, s, 3, &bad));
  assert_false(health_out_of_range(PROTO_Q_ENERGY, s, 3, &bad)); /* no range */
}

/* Received at 09:00:00, newest reading 09:03:00: the clock runs 180 s
 * ahead, beyond 120 s. 60 s behind is within. */
static void a_clock_off_by_more_than_the_limit_is_skew(void **state) {
  (void)state;
  health_params_t p;
  health_params_default(&p);
  double skew;
  assert_true(health_clock_skew(&p, H(9), H(9) + 180, &skew));
  assert_true(skew == -180);
  assert_false(health_clock_skew(&p, H(9), H(9) - 60, &skew));
  assert_false(health_clock_skew(&p, H(9), 0, &skew)); /* nothing stored */
}

/* PM10 80 -> 30 (a 62% fall) while RH 60 -> 85 (+25) within two minutes:
 * someone sprayed the station. Rain (RH up, PM down slowly) is not. */
static void an_rh_jump_with_a_pm_drop_is_interference(void **state) {
  (void)state;
  health_params_t p;
  health_params_default(&p);
  double at = 0;
  size_t n = fill(pm, H(10), 60, 10, 80);
  fill(rh, H(10), 60, 10, 60);
  assert_false(health_interference(&p, pm, n, rh, n, &at));
  for (size_t i = 6; i < 10; i++) {
    pm[i].v = 30;
    rh[i].v = 85;
  }
  assert_true(health_interference(&p, pm, n, rh, n, &at));
  assert_true(at == H(10) + 360);
  /* The same change spread over an hour is weather. */
  for (size_t i = 0; i < 10; i++) {
    pm[i] = (env_sample_t){H(10) + 600.0 * (double)i, 80 - 5.0 * (double)i};
    rh[i] = (env_sample_t){H(10) + 600.0 * (double)i, 60 + 3.0 * (double)i};
  }
  assert_false(health_interference(&p, pm, 10, rh, 10, &at));
  /* An RH jump alone (PM steady) is not interference either. */
  fill(pm, H(10), 60, 10, 80);
  fill(rh, H(10), 60, 5, 60);
  fill(rh + 5, H(10) + 300, 60, 5, 90);
  assert_false(health_interference(&p, pm, 10, rh, 10, &at));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(hourly_pm10_meets_the_demo_levels),
      cmocka_unit_test(short_windows_use_their_own_levels),
      cmocka_unit_test(an_incomplete_dust_window_has_no_level),
      cmocka_unit_test(readings_in_fog_are_flagged_and_left_out),
      cmocka_unit_test(exceedances_are_counted_per_level),
      cmocka_unit_test(dust_quantities_map_to_protocol_names),
      cmocka_unit_test(a_device_silent_for_n_intervals_is_offline),
      cmocka_unit_test(online_follows_the_configured_offline_intervals),
      cmocka_unit_test(a_devices_refusals_are_counted_by_reason),
      cmocka_unit_test(a_scale_is_judged_by_its_heartbeat_not_an_interval),
      cmocka_unit_test(identical_readings_for_the_set_time_are_a_flatline),
      cmocka_unit_test(readings_outside_the_physical_range_are_faults),
      cmocka_unit_test(a_clock_off_by_more_than_the_limit_is_skew),
      cmocka_unit_test(an_rh_jump_with_a_pm_drop_is_interference),
  };
  return cmocka_run_group_tests(tests, in_shanghai, NULL);
}
