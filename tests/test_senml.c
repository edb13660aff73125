/* SenML codec (protocol/senml.c, protocol/quantity.c): times, units, base
 * fields, every kind of rejection with its record and field, CBOR edge cases
 * (NaN, half floats, indefinite lengths, truncation) and encoder round trips.
 *
 * CBOR inputs are assembled byte by byte here (RFC 8949), not with libcbor,
 * so the decoder is checked against the standard and not against itself. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "protocol/protocol.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NOW 1764100000.0 /* 2025-11-25T19:46:40Z */
#define HORIZON (31 * 86400.0)
#define NOW_MS ((int64_t)NOW * 1000)

static const proto_limits_t lim = {NOW, NOW - HORIZON};
static proto_pack_t pack;
static char err[512];

/* ---- helpers */
static int json(const char *text) {
  strcpy(err, "untouched");
  return proto_senml_decode_json((const uint8_t *)text, strlen(text), &lim, &pack, err,
                                 sizeof(err));
}

/* Decodes `text`, which must be accepted. */
static void json_ok(const char *text) {
  int rc = json(text);
  if (rc != 0)
    print_error("rejected: %s\n--- input ---\n%s\n", err, text);
  assert_int_equal(rc, 0);
}

/* Decodes `text`, which must be rejected with a message holding `frag`. */
static void json_bad(const char *text, const char *frag) {
  int rc = json(text);
  if (rc != -EBADMSG || strstr(err, frag) == NULL)
    print_error("rc %d, \"%s\", want \"%s\"\n--- input ---\n%s\n", rc, err, frag, text);
  assert_int_equal(rc, -EBADMSG);
  assert_non_null(strstr(err, frag));
  assert_null(strchr(err, '\n'));
}

/* A CBOR writer for test inputs: heads per RFC 8949 section 3. */
struct cb {
  uint8_t b[65536];
  size_t n;
};

static void cb_byte(struct cb *c, uint8_t v) {
  assert_true(c->n < sizeof(c->b));
  c->b[c->n++] = v;
}

/* Appends bytes written in hex; spaces are for the reader. */
static void cb_bytes(struct cb *c, const char *hex) {
  unsigned v;
  for (; *hex != '\0'; hex++) {
    if (*hex == ' ')
      continue;
    assert_int_equal(sscanf(hex, "%2x", &v), 1);
    cb_byte(c, (uint8_t)v);
    hex++;
  }
}

static void cb_head(struct cb *c, unsigned major, uint64_t v) {
  int n = v < 24 ? 0 : v <= 0xff ? 1 : v <= 0xffff ? 2 : v <= 0xffffffff ? 4 : 8;
  unsigned ai = n == 0 ? (unsigned)v : n == 1 ? 24 : n == 2 ? 25 : n == 4 ? 26 : 27;
  cb_byte(c, (uint8_t)(major << 5 | ai));
  for (int i = n - 1; i >= 0; i--)
    cb_byte(c, (uint8_t)(v >> (8 * i)));
}

static void cb_int(struct cb *c, int64_t v) {
  if (v >= 0)
    cb_head(c, 0, (uint64_t)v);
  else
    cb_head(c, 1, (uint64_t)(-1 - v));
}

static void cb_text(struct cb *c, const char *s) {
  cb_head(c, 3, strlen(s));
  for (; *s; s++)
    cb_byte(c, (uint8_t)*s);
}

static void cb_f64(struct cb *c, double d) {
  uint64_t u;
  memcpy(&u, &d, sizeof(u));
  cb_byte(c, 0xfb);
  for (int i = 7; i >= 0; i--)
    cb_byte(c, (uint8_t)(u >> (8 * i)));
}

/* RFC 8428 section 6 labels */
enum { BN = -2, BT = -3, BU = -4, BV = -5, N = 0, U = 1, V = 2, VS = 3, VB = 4, S = 5, T = 6 };

/* [{bn: "dust-01/", n: "pm10", v: <raw CBOR value>}] */
static void cb_pm10(struct cb *c, const char *value_hex) {
  c->n = 0;
  cb_head(c, 4, 1);
  cb_head(c, 5, 3);
  cb_int(c, BN);
  cb_text(c, "dust-01/");
  cb_int(c, N);
  cb_text(c, "pm10");
  cb_int(c, V);
  cb_bytes(c, value_hex);
}

static int cbor(const struct cb *c) {
  strcpy(err, "untouched");
  return proto_senml_decode_cbor(c->b, c->n, &lim, &pack, err, sizeof(err));
}

static void cbor_ok(const struct cb *c) {
  int rc = cbor(c);
  if (rc != 0)
    print_error("rejected: %s\n", err);
  assert_int_equal(rc, 0);
}

static void cbor_bad(const struct cb *c, const char *frag) {
  int rc = cbor(c);
  if (rc != -EBADMSG || strstr(err, frag) == NULL)
    print_error("rc %d, \"%s\", want \"%s\"\n", rc, err, frag);
  assert_int_equal(rc, -EBADMSG);
  assert_non_null(strstr(err, frag));
  assert_null(strchr(err, '\n'));
}

/* ---- times */
static void decode_adds_record_time_to_base_time(void **state) {
  (void)state;
  json_ok("[{\"bn\":\"dust-01/\",\"bt\":1764099000,\"n\":\"pm10\",\"v\":12.5},"
          "{\"n\":\"pm10\",\"t\":60,\"v\":13},{\"bt\":1764099500,\"n\":\"pm10\",\"t\":-0.25,"
          "\"v\":14}]");
  assert_string_equal(pack.device, "dust-01");
  assert_int_equal(pack.n, 3);
  assert_int_equal(pack.rec[0].t_ms, INT64_C(1764099000000));
  assert_int_equal(pack.rec[1].t_ms, INT64_C(1764099060000));
  assert_int_equal(pack.rec[2].t_ms, INT64_C(1764099499750));
  assert_int_equal(pack.rec[0].quantity, PROTO_Q_PM10);
  assert_true(pack.rec[0].value == 12.5 && pack.rec[1].value == 13 && pack.rec[2].value == 14);
}

static void decode_treats_times_below_2_pow_28_as_relative_to_now(void **state) {
  (void)state;
  json_ok("[{\"bn\":\"d/\",\"bt\":-100,\"n\":\"pm10\",\"t\":40,\"v\":1},"
          "{\"n\":\"tsp\",\"t\":-10.5,\"v\":2},{\"bt\":0,\"n\":\"la\",\"t\":120,\"v\":60}]");
  assert_int_equal(pack.n, 3);
  assert_int_equal(pack.rec[0].t_ms, NOW_MS - 60000);
  assert_int_equal(pack.rec[1].t_ms, NOW_MS - 110500);
  assert_int_equal(pack.rec[2].t_ms, NOW_MS + 120000);
}

static void decode_reads_times_from_2_pow_28_on_as_unix_seconds(void **state) {
  (void)state;
  const proto_limits_t all = {NOW, 0};
  const char *at = "[{\"bn\":\"d/\",\"n\":\"pm10\",\"t\":268435456,\"v\":1}]";
  const char *below = "[{\"bn\":\"d/\",\"n\":\"pm10\",\"t\":268435455,\"v\":1}]";
  assert_int_equal(
      proto_senml_decode_json((const uint8_t *)at, strlen(at), &all, &pack, err, sizeof(err)), 0);
  assert_int_equal(pack.rec[0].t_ms, INT64_C(268435456000));
  /* One second less is relative: now + 8.5 years, refused as future. */
  assert_int_equal(
      proto_senml_decode_json((const uint8_t *)below, strlen(below), &all, &pack, err, sizeof(err)),
      -EBADMSG);
  assert_non_null(strstr(err, "in the future"));
  json_ok("[{\"bn\":\"d/\",\"n\":\"pm10\",\"t\":1764099999.123,\"v\":1}]");
  assert_int_equal(pack.rec[0].t_ms, INT64_C(1764099999123));
}

static void decode_uses_now_for_a_record_without_time(void **state) {
  (void)state;
  json_ok("[{\"bn\":\"d/\",\"n\":\"temp\",\"v\":21.5}]");
  assert_int_equal(pack.n, 1);
  assert_int_equal(pack.rec[0].t_ms, NOW_MS);
}

static void decode_rounds_times_to_the_nearest_millisecond(void **state) {
  (void)state;
  json_ok("[{\"bn\":\"d/\",\"n\":\"pm10\",\"t\":1764099000.0004,\"v\":1},"
          "{\"n\":\"pm10\",\"t\":1764099000.0006,\"v\":1},{\"n\":\"pm10\",\"t\":-0.0016,\"v\":1}]");
  assert_int_equal(pack.rec[0].t_ms, INT64_C(1764099000000));
  assert_int_equal(pack.rec[1].t_ms, INT64_C(1764099000001));
  assert_int_equal(pack.rec[2].t_ms, NOW_MS - 2);
}

static void decode_rejects_time_more_than_five_minutes_in_the_future(void **state) {
  (void)state;
  json_ok("[{\"bn\":\"d/\",\"n\":\"pm10\",\"t\":1764100300,\"v\":1},"
          "{\"n\":\"tsp\",\"t\":300,\"v\":2}]");
  assert_int_equal(pack.rec[0].t_ms, NOW_MS + 300000);
  assert_int_equal(pack.rec[1].t_ms, NOW_MS + 300000);
  json_bad("[{\"bn\":\"d/\",\"n\":\"pm10\",\"v\":1},{\"n\":\"pm10\",\"t\":1764100300.5,\"v\":1}]",
           "record 1: time 1764100300.5 (2025-11-25T19:51:40Z) is more than 5 minutes in the "
           "future");
  json_bad("[{\"bn\":\"d/\",\"n\":\"pm10\",\"t\":301,\"v\":1}]",
           "record 0: time 1764100301 (2025-11-25T19:51:41Z) is more than 5 minutes in the future");
}

static void decode_rejects_time_older_than_the_horizon(void **state) {
  (void)state;
  json_ok("[{\"bn\":\"d/\",\"n\":\"pm10\",\"t\":1761421600,\"v\":1}]"); /* exactly 31 days */
  assert_int_equal(pack.rec[0].t_ms, INT64_C(1761421600000));
  json_bad("[{\"bn\":\"d/\",\"n\":\"pm10\",\"t\":1761421599.9,\"v\":1}]",
           "record 0: time 1761421599.9 (2025-10-25T19:46:39Z) is older than the retention "
           "horizon 1761421600 (2025-10-25T19:46:40Z)");
  json_bad("[{\"bn\":\"d/\",\"n\":\"pm10\",\"v\":1},{\"n\":\"pm10\",\"t\":-2678401,\"v\":1}]",
           "record 1: time 1761421599 ");
}

/* ---- units */
static void check_unit(const char *q, const char *unit, double v, double want) {
  char text[256];
  snprintf(text, sizeof(text), "[{\"bn\":\"d/\",\"n\":\"%s\",\"u\":\"%s\",\"v\":%.17g}]", q, unit,
           v);
  json_ok(text);
  if (fabs(pack.rec[0].value - want) > 1e-9 * fmax(1.0, fabs(want)))
    print_error("%s %.17g %s: got %.17g, want %.17g\n", q, v, unit, pack.rec[0].value, want);
  assert_true(fabs(pack.rec[0].value - want) <= 1e-9 * fmax(1.0, fabs(want)));
}

static void decode_converts_units_of_every_dimension(void **state) {
  (void)state;
  check_unit("pm10", "mg/m3", 0.05, 50);
  check_unit("tsp", "kg/m3", 1e-7, 100);
  check_unit("pm2_5", "ug/m3", 35, 35);
  check_unit("temp", "K", 293.15, 20);
  check_unit("temp", "degF", 68, 20);
  check_unit("temp", "degF", -40, -40);
  check_unit("rh", "/", 0.55, 55);
  check_unit("rh", "%", 40, 40);
  check_unit("pressure", "Pa", 101325, 101.325);
  check_unit("pressure", "hPa", 1013.25, 101.325);
  check_unit("pressure", "mbar", 1013.25, 101.325);
  check_unit("pressure", "bar", 1.01325, 101.325);
  check_unit("wind_speed", "km/h", 36, 10);
  check_unit("wind_dir", "rad", M_PI / 2, 90);
  check_unit("la", "dBA", 65.5, 65.5);
  check_unit("lamax", "dB", 80, 80);
  check_unit("power", "W", 1500, 1.5);
  check_unit("power", "MW", 0.002, 2);
  check_unit("energy", "Wh", 2500, 2.5);
  check_unit("energy", "MWh", 1.5, 1500);
  check_unit("energy", "J", 3.6e6, 1);
  check_unit("fuel", "ml", 500, 0.5);
  check_unit("fuel", "L", 3, 3);
  check_unit("fuel", "m3", 0.2, 200);
}

static void decode_keeps_values_in_canonical_units_unchanged(void **state) {
  (void)state;
  for (int q = 0; q < PROTO_Q_COUNT; q++) {
    if (q == PROTO_Q_ON)
      continue;
    check_unit(proto_quantity_name(q), proto_quantity_unit(q), 12.34, 12.34);
    assert_true(pack.rec[0].value == 12.34);
    assert_int_equal(pack.rec[0].quantity, q);
  }
}

static void decode_applies_base_unit_until_a_record_names_its_own(void **state) {
  (void)state;
  json_ok("[{\"bn\":\"gen-01/\",\"bu\":\"W\",\"n\":\"power\",\"v\":1000},"
          "{\"n\":\"power\",\"t\":-1,\"v\":2000},{\"n\":\"power\",\"t\":-2,\"u\":\"kW\",\"v\":3},"
          "{\"bu\":\"MW\",\"n\":\"power\",\"t\":-3,\"v\":0.004}]");
  assert_int_equal(pack.n, 4);
  assert_true(pack.rec[0].value == 1 && pack.rec[1].value == 2 && pack.rec[2].value == 3);
  assert_true(fabs(pack.rec[3].value - 4) < 1e-12);
}

static void decode_adds_base_value_before_converting(void **state) {
  (void)state;
  json_ok("[{\"bn\":\"d/\",\"bv\":1000,\"n\":\"energy\",\"u\":\"Wh\",\"v\":500},"
          "{\"n\":\"energy\",\"t\":-60,\"u\":\"Wh\",\"v\":-250}]");
  assert_true(pack.rec[0].value == 1.5);
  assert_true(pack.rec[1].value == 0.75);
}

static void decode_rejects_pack_with_unknown_unit(void **state) {
  (void)state;
  json_bad("[{\"bn\":\"d/\",\"n\":\"temp\",\"v\":20},{\"n\":\"temp\",\"t\":-1,\"u\":\"kg\","
           "\"v\":20}]",
           "record 1: unit \"kg\" is not a unit of temp (Cel); use one of Cel, K, degF");
}

static void decode_rejects_unit_of_another_dimension(void **state) {
  (void)state;
  json_bad("[{\"bn\":\"d/\",\"n\":\"pm10\",\"u\":\"kW\",\"v\":20}]",
           "record 0: unit \"kW\" is not a unit of pm10 (ug/m3); use one of ug/m3, mg/m3, kg/m3");
  json_bad("[{\"bn\":\"d/\",\"bu\":\"Cel\",\"n\":\"temp\",\"v\":20},{\"n\":\"rh\",\"v\":50}]",
           "record 1: base unit (bu) \"Cel\" is not a unit of rh (%RH)");
  json_bad("[{\"bn\":\"d/\",\"n\":\"on\",\"u\":\"kW\",\"vb\":true}]",
           "record 0: unit \"kW\" given for on");
}

/* ---- base name and device */
static void decode_rejects_pack_without_base_name(void **state) {
  (void)state;
  json_bad("[{\"n\":\"pm10\",\"v\":20}]", "record 0: missing base name (bn) \"DEVICE/\"");
  assert_string_equal(err, "record 0: missing base name (bn) \"DEVICE/\"");
  struct cb c = {.n = 0};
  cb_bytes(&c, "81a2");
  cb_int(&c, N);
  cb_text(&c, "pm10");
  cb_int(&c, V);
  cb_int(&c, 20);
  cbor_bad(&c, "record 0: missing base name (bn) \"DEVICE/\"");
}

static void decode_rejects_base_names_that_are_not_device_slash(void **state) {
  (void)state;
  char long_id[PROTO_DEVICE_MAX + 3], max_id[PROTO_DEVICE_MAX + 2];
  memset(long_id, 'x', PROTO_DEVICE_MAX + 1);
  strcpy(long_id + PROTO_DEVICE_MAX + 1, "/");
  memset(max_id, 'x', PROTO_DEVICE_MAX);
  memcpy(max_id, "A.b_c-9", 7);
  strcpy(max_id + PROTO_DEVICE_MAX, "/");
  const char *bad[] = {"dust-01",        "/",    "dust 01/", "dust-01/pm10", "a/b/",
                       "dust\\u00e901/", long_id};
  char text[256];
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    snprintf(text, sizeof(text), "[{\"bn\":\"%s\",\"n\":\"pm10\",\"v\":1}]", bad[i]);
    json_bad(text, "record 0: base name (bn) \"");
    assert_non_null(strstr(err, "is not \"DEVICE/\""));
  }
  snprintf(text, sizeof(text), "[{\"bn\":\"%s\",\"n\":\"pm10\",\"v\":1}]", max_id);
  json_ok(text);
  max_id[PROTO_DEVICE_MAX] = '\0';
  assert_string_equal(pack.device, max_id);
}

static void decode_rejects_base_name_of_another_device_mid_pack(void **state) {
  (void)state;
  json_bad("[{\"bn\":\"dust-01/\",\"n\":\"pm10\",\"v\":1},{\"n\":\"tsp\",\"v\":2},"
           "{\"bn\":\"dust-02/\",\"n\":\"pm10\",\"v\":3}]",
           "record 2: base name (bn) \"dust-02/\" names another device than \"dust-01/\"");
}

static void decode_accepts_the_same_base_name_repeated(void **state) {
  (void)state;
  json_ok("[{\"bn\":\"dust-01/\",\"n\":\"pm10\",\"v\":1},{\"bn\":\"dust-01/\",\"n\":\"tsp\","
          "\"v\":2}]");
  assert_int_equal(pack.n, 2);
  assert_string_equal(pack.device, "dust-01");
}

/* ---- values */
static void decode_rejects_nan_and_infinity_in_cbor(void **state) {
  (void)state;
  const char *bad[] = {
      "fb7ff8000000000000", /* float64 NaN */
      "fb7ff0000000000000", /* float64 +Inf */
      "fbfff0000000000000", /* float64 -Inf */
      "fa7fc00000",         /* float32 NaN */
      "fa7f800000",         /* float32 +Inf */
      "f97e00",             /* float16 NaN */
      "f97c00",             /* float16 +Inf */
      "f9fc00",             /* float16 -Inf */
  };
  struct cb c;
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    cb_pm10(&c, bad[i]);
    cbor_bad(&c, "record 0: field \"v\" (value) is not a finite number");
  }
  cb_pm10(&c, "f93e00"); /* float16 1.5 */
  cbor_ok(&c);
  assert_true(pack.rec[0].value == 1.5);
  cb_pm10(&c, "fa3fc00000"); /* float32 1.5 */
  cbor_ok(&c);
  assert_true(pack.rec[0].value == 1.5);
  /* NaN in a time, too */
  c.n = 0;
  cb_bytes(&c, "81a4");
  cb_int(&c, BN);
  cb_text(&c, "d/");
  cb_int(&c, N);
  cb_text(&c, "pm10");
  cb_int(&c, V);
  cb_int(&c, 1);
  cb_int(&c, T);
  cb_bytes(&c, "f97e00");
  cbor_bad(&c, "record 0: field \"t\" (time) is not a finite number");
}

static void decode_rejects_missing_value_and_name(void **state) {
  (void)state;
  json_bad("[{\"bn\":\"d/\",\"n\":\"pm10\",\"v\":1},{\"n\":\"tsp\",\"t\":-1}]",
           "record 1: missing value (\"v\") for tsp");
  json_bad("[{\"bn\":\"d/\",\"n\":\"on\"}]", "record 0: missing value (\"vb\") for on");
  json_bad("[{\"bn\":\"d/\",\"bt\":1764099000},{\"n\":\"pm10\",\"v\":1}]",
           "record 0: missing name (\"n\"), one of: tsp, pm10,");
  json_bad("[{\"bn\":\"d/\",\"n\":\"pm10\",\"v\":1,\"vb\":true}]",
           "record 0: both \"v\" and \"vb\"");
}

static void decode_rejects_unknown_quantity(void **state) {
  (void)state;
  json_bad("[{\"bn\":\"d/\",\"n\":\"pm10\",\"v\":1},{\"n\":\"tsp\",\"v\":1},{\"n\":\"pm25\","
           "\"v\":1}]",
           "record 2: unknown quantity \"pm25\" (known: tsp, pm10, pm2_5, temp, rh, pressure, "
           "wind_speed, wind_dir, la, lamax, power, energy, fuel, on, engine_h, opacity, idle_h)");
  assert_string_equal(err, "record 2: unknown quantity \"pm25\" (known: tsp, pm10, pm2_5, temp, "
                           "rh, pressure, wind_speed, wind_dir, la, lamax, power, energy, fuel, "
                           "on, engine_h, opacity, idle_h)");
  json_bad("[{\"bn\":\"d/\",\"n\":\"dust-01/pm10\",\"v\":1}]", "unknown quantity \"dust-01/pm10\"");
}

static void decode_takes_vb_for_on(void **state) {
  (void)state;
  json_ok("[{\"bn\":\"pump-1/\",\"n\":\"on\",\"vb\":true},{\"n\":\"on\",\"t\":-1,\"vb\":false},"
          "{\"n\":\"on\",\"t\":-2,\"v\":1},{\"n\":\"on\",\"t\":-3,\"v\":0}]");
  assert_int_equal(pack.n, 4);
  assert_int_equal(pack.rec[0].quantity, PROTO_Q_ON);
  assert_true(pack.rec[0].value == 1 && pack.rec[1].value == 0);
  assert_true(pack.rec[2].value == 1 && pack.rec[3].value == 0);
  json_bad("[{\"bn\":\"d/\",\"n\":\"on\",\"v\":0.5}]", "record 0: value 0.5 for on");
  json_bad("[{\"bn\":\"d/\",\"n\":\"pm10\",\"vb\":true}]",
           "record 0: boolean value (\"vb\") for pm10, which takes a number in \"v\"");
  struct cb c = {.n = 0};
  cb_bytes(&c, "81a3");
  cb_int(&c, BN);
  cb_text(&c, "d/");
  cb_int(&c, N);
  cb_text(&c, "on");
  cb_int(&c, VB);
  cb_bytes(&c, "f5");
  cbor_ok(&c);
  assert_true(pack.rec[0].value == 1);
}

static void decode_rejects_string_data_and_sum_values(void **state) {
  (void)state;
  json_bad("[{\"bn\":\"d/\",\"n\":\"pm10\",\"vs\":\"12\"}]",
           "record 0: string value (vs) is not supported");
  json_bad("[{\"bn\":\"d/\",\"n\":\"pm10\",\"vd\":\"AA\"}]",
           "record 0: data value (vd) is not supported");
  json_bad("[{\"bn\":\"d/\",\"n\":\"energy\",\"s\":12}]", "record 0: sum (s) is not supported");
  json_bad("[{\"bn\":\"d/\",\"bs\":1,\"n\":\"energy\",\"v\":12}]",
           "record 0: base sum (bs) is not supported");
  struct cb c = {.n = 0};
  cb_bytes(&c, "81a3");
  cb_int(&c, BN);
  cb_text(&c, "d/");
  cb_int(&c, N);
  cb_text(&c, "energy");
  cb_int(&c, S);
  cb_int(&c, 5);
  cbor_bad(&c, "record 0: sum (s) is not supported");
}

static void decode_rejects_wrong_types_naming_the_field(void **state) {
  (void)state;
  json_bad("[{\"bn\":\"d/\",\"n\":\"pm10\",\"v\":\"12\"}]",
           "record 0: field \"v\" (value) must be a number, not a string");
  json_bad("[{\"bn\":5,\"n\":\"pm10\",\"v\":12}]",
           "record 0: field \"bn\" (base name) must be a string, not a number");
  json_bad("[{\"bn\":\"d/\",\"n\":\"on\",\"vb\":\"true\"}]",
           "record 0: field \"vb\" (boolean value) must be true or false, not a string");
  json_bad("[{\"bn\":\"d/\",\"n\":\"pm10\",\"v\":1,\"t\":null}]",
           "record 0: field \"t\" (time) must be a number, not null");
  json_bad("[{\"bn\":\"d/\",\"n\":[\"pm10\"],\"v\":1}]",
           "record 0: field \"n\" (name) must be a string, not an array");
  struct cb c;
  cb_pm10(&c, "623132"); /* "12" */
  cbor_bad(&c, "record 0: field \"v\" (value) must be a number, not a text string");
  cb_pm10(&c, "c11a69260000"); /* tag 1 (epoch time) */
  cbor_bad(&c, "record 0: field \"v\" (value) must be a number, not a tagged item");
}

static void decode_rejects_non_array_packs_and_non_object_records(void **state) {
  (void)state;
  json_bad("{\"bn\":\"d/\",\"n\":\"pm10\",\"v\":1}",
           "a SenML pack is a JSON array of records, not an object");
  json_bad("[{\"bn\":\"d/\",\"n\":\"pm10\",\"v\":1},1]", "record 1: not an object but a number");
  struct cb c = {.n = 0};
  cb_bytes(&c, "a0");
  cbor_bad(&c, "a SenML pack is a CBOR array of records, not a map");
  c.n = 0;
  cb_bytes(&c, "8161");
  cb_bytes(&c, "78");
  cbor_bad(&c, "record 0: not a map but a text string");
  c.n = 0;
  cb_bytes(&c, "81a1f5f5");
  cbor_bad(&c, "record 0: map key is a boolean, not a SenML label");
}

/* ---- pack shape */
static void decode_rejects_duplicate_records(void **state) {
  (void)state;
  json_bad("[{\"bn\":\"d/\",\"n\":\"pm10\",\"t\":-5,\"v\":1},{\"n\":\"tsp\",\"t\":-5,\"v\":1},"
           "{\"n\":\"pm10\",\"t\":-5,\"v\":2}]",
           "record 2: duplicate of record 0 (pm10 at 1764099995 ");
  /* The same instant written as a relative and as an absolute time */
  json_bad("[{\"bn\":\"d/\",\"n\":\"pm10\",\"t\":-5,\"v\":1},"
           "{\"n\":\"pm10\",\"t\":1764099995,\"v\":2}]",
           "record 1: duplicate of record 0");
  json_ok(
      "[{\"bn\":\"d/\",\"n\":\"pm10\",\"t\":-5,\"v\":1},{\"n\":\"pm10\",\"t\":-4.999,\"v\":1}]");
}

/* A pack of `n` pm10 records one second apart, then `extra` (may be ""). */
static char *json_series(int n, const char *extra) {
  size_t cap = (size_t)n * 64 + 256;
  char *text = malloc(cap);
  assert_non_null(text);
  size_t o =
      (size_t)snprintf(text, cap, "[{\"bn\":\"d/\",\"bt\":1764099000,\"n\":\"pm10\",\"v\":0}");
  for (int i = 1; i < n; i++)
    o += (size_t)snprintf(text + o, cap - o, ",{\"n\":\"pm10\",\"t\":%d,\"v\":%d}", i, i);
  snprintf(text + o, cap - o, "%s]", extra);
  return text;
}

static void decode_rejects_duplicates_in_a_large_pack(void **state) {
  (void)state;
  char *text =
      json_series(40, ",{\"n\":\"tsp\",\"t\":17,\"v\":1},{\"n\":\"pm10\",\"t\":17,\"v\":1}");
  json_bad(text, "record 41: duplicate of record 17");
  free(text);
}

static void decode_accepts_a_pack_of_the_maximum_size(void **state) {
  (void)state;
  char *text = json_series(PROTO_PACK_MAX, "");
  json_ok(text);
  free(text);
  assert_int_equal(pack.n, PROTO_PACK_MAX);
  assert_int_equal(pack.rec[PROTO_PACK_MAX - 1].t_ms, INT64_C(1764099000000) + 1023000);
}

static void decode_rejects_pack_with_too_many_records(void **state) {
  (void)state;
  char *text = json_series(PROTO_PACK_MAX + 1, "");
  json_bad(text, "pack has 1025 records, more than 1024");
  free(text);
  struct cb c = {.n = 0};
  cb_bytes(&c, "990401"); /* array of 1025, data never comes */
  cbor_bad(&c, "pack has 1025 records, more than 1024");
  c.n = 0;
  cb_bytes(&c, "9bffffffffffffffff");
  cbor_bad(&c, "more than 1024");
  c.n = 0;
  cb_bytes(&c, "9f");
  for (int i = 0; i <= PROTO_PACK_MAX; i++) {
    cb_head(&c, 5, i == 0 ? 4 : 3);
    if (i == 0) {
      cb_int(&c, BN);
      cb_text(&c, "d/");
    }
    cb_int(&c, N);
    cb_text(&c, "pm10");
    cb_int(&c, T);
    cb_int(&c, -i);
    cb_int(&c, V);
    cb_int(&c, i);
  }
  cb_bytes(&c, "ff");
  cbor_bad(&c, "pack has more than 1024 records");
}

static void decode_rejects_empty_pack(void **state) {
  (void)state;
  json_bad("[]", "empty pack");
  assert_string_equal(err, "empty pack");
  json_bad(" [ ] ", "empty pack");
  struct cb c = {.n = 0};
  cb_bytes(&c, "80");
  cbor_bad(&c, "empty pack");
  c.n = 0;
  cb_bytes(&c, "9fff");
  cbor_bad(&c, "empty pack");
  assert_int_equal(proto_senml_decode_json((const uint8_t *)"", 0, &lim, &pack, err, sizeof(err)),
                   -EBADMSG);
  assert_int_equal(proto_senml_decode_cbor((const uint8_t *)"", 0, &lim, &pack, err, sizeof(err)),
                   -EBADMSG);
}

/* ---- labels */
static void decode_rejects_must_understand_labels(void **state) {
  (void)state;
  json_bad("[{\"bn\":\"d/\",\"n\":\"pm10\",\"v\":1},{\"n\":\"tsp\",\"v\":1,\"foo_\":1}]",
           "record 1: field \"foo_\" must be understood (RFC 8428 4.4) and is not supported");
  struct cb c;
  cb_pm10(&c, "01");
  c.b[1] = 0xa4; /* one more pair */
  cb_text(&c, "ct_");
  cb_int(&c, 60);
  cbor_bad(&c, "record 0: field \"ct_\" must be understood");
  /* The same label as an indefinite-length string: "c" "t_" */
  cb_pm10(&c, "01");
  c.b[1] = 0xa4;
  cb_bytes(&c, "7f61636274 5fff");
  cb_int(&c, 60);
  cbor_bad(&c, "record 0: field \"ct_\" must be understood");
}

static void decode_ignores_other_unknown_labels(void **state) {
  (void)state;
  json_ok("[{\"bn\":\"d/\",\"bver\":10,\"n\":\"pm10\",\"v\":1,\"ut\":60,\"foo\":{\"a_\":[1,2]}}]");
  assert_int_equal(pack.n, 1);
  assert_true(pack.rec[0].value == 1);
  struct cb c;
  cb_pm10(&c, "01");
  c.b[1] = 0xa7;
  cb_int(&c, 23); /* unregistered label: [1, {2: 3}, tag 1 (5), [_ 1], (_ "a" "b")] */
  cb_bytes(&c, "8501a10203c1059f01ff7f61616162ff");
  cb_int(&c, -23);
  cb_bytes(&c, "bf6178f4ff"); /* {_ "x": false} */
  cb_text(&c, "foo");
  cb_bytes(&c, "5f4101ff"); /* (_ h'01') */
  cb_int(&c, 1000);
  cb_bytes(&c, "80");
  cbor_ok(&c);
  assert_int_equal(pack.n, 1);
  assert_true(pack.rec[0].value == 1);
}

static void decode_rejects_newer_senml_version(void **state) {
  (void)state;
  json_bad("[{\"bn\":\"d/\",\"bver\":11,\"n\":\"pm10\",\"v\":1}]",
           "record 0: base version (bver) 11 is newer than SenML version 10");
}

static void decode_rejects_duplicate_json_keys(void **state) {
  (void)state;
  json_bad("[{\"bn\":\"d/\",\"n\":\"pm10\",\"v\":1,\"v\":2}]", "duplicate object key");
}

static void decode_rejects_repeated_cbor_labels(void **state) {
  (void)state;
  struct cb c;
  cb_pm10(&c, "01");
  c.b[1] = 0xa4;
  cb_int(&c, V);
  cb_int(&c, 2);
  cbor_bad(&c, "record 0: field \"v\" appears twice");
  /* A text label and its integer form are the same field. */
  cb_pm10(&c, "01");
  c.b[1] = 0xa4;
  cb_text(&c, "v");
  cb_int(&c, 2);
  cbor_bad(&c, "record 0: field \"v\" appears twice");
}

/* ---- syntax */
static void decode_reports_json_syntax_error_with_line_and_column(void **state) {
  (void)state;
  json_bad("[{\"bn\":\"d/\",\n \"n\":\"pm10\",\n  \"v\":12,}]", "invalid JSON at line 3, column");
  assert_non_null(strstr(err, "line 3, column 10:"));
  json_bad("[{\"bn\":\"d/\",\"n\":\"pm10\",\"v\":1}] x", "invalid JSON at line 1, column 32:");
  json_bad("[{\"bn\":\"d/\",\"n\":\"pm10\",\"v\":1}", "invalid JSON at line 1");
  json_bad("[{\"bn\":\"d/\",\"n\":\"p\n", "invalid JSON at line ");
}

static void decode_error_messages_stay_on_one_line(void **state) {
  (void)state;
  json_bad("[{\"bn\":\"d/\",\"n\":\"pm\\n25\\\"\",\"v\":1}]", "unknown quantity \"pm\\x0a25\\\"\"");
  json_bad("[{\"bn\":\"d/\",\"n\":"
           "\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\",\"v\":1}]",
           "unknown quantity \"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa...\"");
}

static void decode_writes_errors_within_small_buffers(void **state) {
  (void)state;
  const char *text = "[{\"n\":\"pm10\",\"v\":20}]";
  char small[8];
  memset(small, 'x', sizeof(small));
  assert_int_equal(proto_senml_decode_json((const uint8_t *)text, strlen(text), &lim, &pack, small,
                                           sizeof(small)),
                   -EBADMSG);
  assert_string_equal(small, "record ");
  small[0] = 'x';
  assert_int_equal(
      proto_senml_decode_json((const uint8_t *)text, strlen(text), &lim, &pack, small, 1),
      -EBADMSG);
  assert_int_equal(small[0], '\0');
  assert_int_equal(
      proto_senml_decode_json((const uint8_t *)text, strlen(text), &lim, &pack, NULL, 0), -EBADMSG);
}

/* ---- CBOR structure */
static void decode_reads_cbor_with_indefinite_lengths(void **state) {
  (void)state;
  struct cb c = {.n = 0};
  /* [_ {_ -2: (_ "dust" "-01/"), 0: (_ "pm" "10"), 2: 12.5, -3: 1764099000}, {0: "tsp", 2: 3}] */
  cb_bytes(&c, "9fbf21");
  cb_bytes(&c, "7f6464757374642d30312fff");
  cb_bytes(&c, "007f62706d623130ff");
  cb_bytes(&c, "02f94a40");
  cb_int(&c, BT);
  cb_int(&c, 1764099000);
  cb_bytes(&c, "ff");
  cb_bytes(&c, "a200");
  cb_text(&c, "tsp");
  cb_bytes(&c, "0203ff");
  cbor_ok(&c);
  assert_string_equal(pack.device, "dust-01");
  assert_int_equal(pack.n, 2);
  assert_int_equal(pack.rec[0].quantity, PROTO_Q_PM10);
  assert_true(pack.rec[0].value == 12.5);
  assert_int_equal(pack.rec[1].t_ms, INT64_C(1764099000000));
  assert_int_equal(pack.rec[1].quantity, PROTO_Q_TSP);
}

static void decode_reads_cbor_text_labels(void **state) {
  (void)state;
  struct cb c = {.n = 0};
  cb_bytes(&c, "d9d9f7"); /* self-described CBOR, RFC 8949 3.4.6 */
  cb_bytes(&c, "81a4");
  cb_text(&c, "bn");
  cb_text(&c, "d/");
  cb_text(&c, "n");
  cb_text(&c, "temp");
  cb_text(&c, "u");
  cb_text(&c, "K");
  cb_text(&c, "v");
  cb_f64(&c, 273.15);
  cbor_ok(&c);
  assert_true(fabs(pack.rec[0].value) < 1e-9);
}

static void decode_rejects_malformed_cbor(void **state) {
  (void)state;
  struct cb c;
  cb_pm10(&c, "01ff");
  cbor_bad(&c, "trailing data after the pack at byte 20");
  cb_pm10(&c, "1c");
  cbor_bad(&c, "malformed CBOR at byte 19");
  cb_pm10(&c, "ff");
  cbor_bad(&c, "malformed CBOR at byte 19: break where a value belongs");
  c.n = 0;
  cb_bytes(&c, "81a1ff");
  cbor_bad(&c, "malformed CBOR at byte 2: break inside a definite-length map");
  c.n = 0; /* [{-2: "d/", 0: (_ "p" 1)}]: a text string with an integer chunk */
  cb_bytes(&c, "81a2 21 62642f 00 7f 6170 01 ff");
  cbor_bad(&c, "malformed CBOR at byte 10: an indefinite-length string holds another kind");
  cb_pm10(&c, "01"); /* the same in a value being skipped */
  c.b[1] = 0xa4;
  cb_int(&c, 99);
  cb_bytes(&c, "7f 6161 01 ff");
  cbor_bad(&c, "malformed CBOR at byte 25: an indefinite-length string holds another kind");
  cb_pm10(&c, "01");
  c.b[1] = 0xa4;
  cb_int(&c, 99);
  cb_bytes(&c, "82 01 ff"); /* break inside a definite array being skipped */
  cbor_bad(&c, "break inside a definite-length item");
  cb_pm10(&c, "01");
  c.b[1] = 0xa4;
  cb_int(&c, 99);
  cb_bytes(&c, "bf 21 ff"); /* {_ -2: } */
  cbor_bad(&c, "malformed CBOR at byte 24: an indefinite-length map ends with a key and no value");
  cb_pm10(&c, "01");
  c.b[1] = 0xa4;
  cb_int(&c, 99);
  cb_bytes(&c, "9a ffffffff"); /* skipped array claiming 2^32 - 1 items */
  cbor_bad(&c, "truncated CBOR at byte");
  cb_pm10(&c, "01");
  c.b[1] = 0xa4;
  cb_int(&c, 99);
  cb_bytes(&c, "bb 8000000000000000 01 ff"); /* 2^63 pairs: twice that is 0 in 64 bits */
  cbor_bad(&c, "truncated CBOR at byte 33");
  cb_pm10(&c, "01");
  c.b[1] = 0xa4;
  cb_int(&c, 99);
  for (int i = 0; i < 20; i++)
    cb_bytes(&c, "81");
  cb_bytes(&c, "01");
  cbor_bad(&c, "nested more than 16 levels deep");
}

static void decode_rejects_text_that_is_not_utf8_in_cbor(void **state) {
  (void)state;
  const char *bad[] = {"63 6374a1", "62 c0af", "63 eda080", "64 f4908080", "62 e282", "61 ff"};
  struct cb c;
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    cb_pm10(&c, "01"); /* even as an unknown label, which would be ignored */
    c.b[1] = 0xa4;
    cb_bytes(&c, bad[i]);
    cb_int(&c, 60);
    cbor_bad(&c, "malformed CBOR at byte 20: a text string that is not UTF-8");
  }
  cb_pm10(&c, "01");
  c.b[1] = 0xa4;
  cb_bytes(&c, "6a 63c3a9e282acf09f9880"); /* "cé€😀" */
  cb_int(&c, 60);
  cbor_ok(&c);
}

/* Every prefix of a valid pack is refused, none read past its end (each
 * copy is allocated to its exact length for the address sanitizer). */
static void decode_rejects_every_truncated_prefix_of_a_cbor_pack(void **state) {
  (void)state;
  struct cb c = {.n = 0};
  cb_bytes(&c, "83a5");
  cb_int(&c, BN);
  cb_text(&c, "noise-01/");
  cb_int(&c, BT);
  cb_f64(&c, 1764099000.25);
  cb_int(&c, N);
  cb_text(&c, "la");
  cb_int(&c, V);
  cb_bytes(&c, "fa42830000"); /* 65.5 */
  cb_int(&c, 42);
  cb_bytes(&c, "82a1017f6161ff9f40ff"); /* [{1: (_ "a")}, [_ h'']] */
  cb_bytes(&c, "bf");
  cb_int(&c, N);
  cb_bytes(&c, "7f656c616d6178ff"); /* (_ "lamax") */
  cb_int(&c, T);
  cb_int(&c, 1);
  cb_int(&c, V);
  cb_bytes(&c, "f95380"); /* 60.0 */
  cb_bytes(&c, "ff");
  cb_bytes(&c, "a3");
  cb_int(&c, N);
  cb_text(&c, "on");
  cb_int(&c, T);
  cb_int(&c, -300);
  cb_int(&c, VB);
  cb_bytes(&c, "f4");
  cbor_ok(&c);
  assert_int_equal(pack.n, 3);
  for (size_t len = 0; len < c.n; len++) {
    uint8_t *copy = malloc(len ? len : 1);
    assert_non_null(copy);
    memcpy(copy, c.b, len);
    int rc = proto_senml_decode_cbor(copy, len, &lim, &pack, err, sizeof(err));
    free(copy);
    if (rc != -EBADMSG)
      print_error("prefix of %zu bytes: rc %d\n", len, rc);
    assert_int_equal(rc, -EBADMSG);
    if (len > 0 && strstr(err, "truncated CBOR at byte") == NULL)
      print_error("prefix of %zu bytes: \"%s\"\n", len, err);
    assert_true(len == 0 || strstr(err, "truncated CBOR at byte") != NULL);
  }
}

/* ---- encoders */
static void fill_sample(proto_pack_t *p) {
  memset(p, 0, sizeof(*p));
  strcpy(p->device, "site_a.dust-01");
  const struct {
    int q;
    int64_t dt_ms;
    double v;
  } rows[] = {
      {PROTO_Q_PM10, 0, 12.3},
      {PROTO_Q_PM2_5, 0, 0.1},
      {PROTO_Q_TSP, 0, 1e-7},
      {PROTO_Q_TEMP, -1500, -3},
      {PROTO_Q_RH, 1, 55.55},
      {PROTO_Q_PRESSURE, 250, 101.325},
      {PROTO_Q_LA, -60000, 65.4321},
      {PROTO_Q_ENERGY, 7, 123456789.125},
      {PROTO_Q_ON, 0, 1},
      {PROTO_Q_ON, -1, 0},
      {PROTO_Q_POWER, 299999, 1e300},
      {PROTO_Q_FUEL, -999, 1.0 / 3},
  };
  for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
    p->rec[i].quantity = (uint8_t)rows[i].q;
    p->rec[i].t_ms = INT64_C(1764099000123) + rows[i].dt_ms;
    p->rec[i].value = rows[i].v;
  }
  p->n = sizeof(rows) / sizeof(rows[0]);
}

static void assert_same_pack(const proto_pack_t *a, const proto_pack_t *b) {
  assert_string_equal(a->device, b->device);
  assert_int_equal(a->n, b->n);
  for (size_t i = 0; i < a->n; i++) {
    assert_int_equal(a->rec[i].quantity, b->rec[i].quantity);
    assert_int_equal(a->rec[i].t_ms, b->rec[i].t_ms);
    if (a->rec[i].value != b->rec[i].value)
      print_error("record %zu: %.17g != %.17g\n", i, a->rec[i].value, b->rec[i].value);
    assert_true(a->rec[i].value == b->rec[i].value);
  }
}

static proto_pack_t sample;

static void encode_json_round_trips_a_pack(void **state) {
  (void)state;
  char buf[4096];
  fill_sample(&sample);
  int n = proto_senml_encode_json(&sample, buf, sizeof(buf));
  assert_true(n > 0);
  assert_int_equal(strlen(buf), n);
  json_ok(buf);
  assert_same_pack(&sample, &pack);
}

static void encode_cbor_round_trips_a_pack(void **state) {
  (void)state;
  uint8_t buf[4096];
  fill_sample(&sample);
  int n = proto_senml_encode_cbor(&sample, buf, sizeof(buf));
  assert_true(n > 0);
  assert_int_equal(proto_senml_decode_cbor(buf, (size_t)n, &lim, &pack, err, sizeof(err)), 0);
  assert_same_pack(&sample, &pack);
}

static void encode_json_writes_base_name_base_time_and_relative_times(void **state) {
  (void)state;
  char buf[256];
  proto_pack_t *p = &sample;
  memset(p, 0, sizeof(*p));
  strcpy(p->device, "dust-01");
  p->n = 3;
  p->rec[0] = (proto_record_t){PROTO_Q_PM10, INT64_C(1764099000500), 12.5};
  p->rec[1] = (proto_record_t){PROTO_Q_ON, INT64_C(1764099001750), 1};
  p->rec[2] = (proto_record_t){PROTO_Q_TEMP, INT64_C(1764098999000), -0.25};
  int n = proto_senml_encode_json(p, buf, sizeof(buf));
  assert_int_equal(n, strlen(buf));
  assert_string_equal(buf, "[{\"bn\":\"dust-01/\",\"bt\":1764099000.5,\"n\":\"pm10\",\"v\":12.5},"
                           "{\"n\":\"on\",\"t\":1.25,\"vb\":true},"
                           "{\"n\":\"temp\",\"t\":-1.5,\"v\":-0.25}]");
}

/* The encoder writes numbers by hand: each value must come out as the
 * shortest of %.15g..%.17g that reads back the same (what it printed
 * before), and each time as seconds with no trailing zeros. */
static void encode_json_writes_numbers_as_printf_would(void **state) {
  (void)state;
  static const double values[] = {
      30,   -5,  1,    123456789012345, 999999999999999,       -1e14, 1e15, 1e16, 12.5, -0.25, 0.1,
      1e-7, 0.0, -0.0, 5e-324,          1.7976931348623157e308};
  static const int64_t dts[] = {1, 10, 100, 1000, 1050, 1005, -7, -70, -700, -123456};
  char buf[512], want[512], num[40];
  proto_pack_t *p = &sample;
  for (size_t i = 0; i < sizeof(values) / sizeof(values[0]); i++) {
    memset(p, 0, sizeof(*p));
    strcpy(p->device, "dust-01");
    p->n = 2;
    p->rec[0] = (proto_record_t){PROTO_Q_PM10, INT64_C(1764099000000), values[i]};
    p->rec[1] = (proto_record_t){PROTO_Q_PM10, INT64_C(1764099000000) + dts[i % 10], 1};
    for (int prec = 15; prec <= 17; prec++) {
      snprintf(num, sizeof(num), "%.*g", prec, values[i]);
      if (prec == 17 || strtod(num, NULL) == values[i])
        break;
    }
    int64_t dt = dts[i % 10], a = dt < 0 ? -dt : dt;
    char t[32];
    int tl = snprintf(t, sizeof(t), "%s%lld.%03lld", dt < 0 ? "-" : "", (long long)(a / 1000),
                      (long long)(a % 1000));
    while (t[tl - 1] == '0')
      t[--tl] = '\0';
    if (t[tl - 1] == '.')
      t[--tl] = '\0';
    snprintf(want, sizeof(want),
             "[{\"bn\":\"dust-01/\",\"bt\":1764099000,\"n\":\"pm10\",\"v\":%s},"
             "{\"n\":\"pm10\",\"t\":%s,\"v\":1}]",
             num, t);
    int n = proto_senml_encode_json(p, buf, sizeof(buf));
    assert_int_equal(n, strlen(want));
    assert_string_equal(buf, want);
    json_ok(buf);
    if (values[i] != pack.rec[0].value) /* -0 reads back as 0: the same value */
      fail_msg("value %.17g read back as %.17g", values[i], pack.rec[0].value);
  }
}

static void encode_returns_enospc_when_the_buffer_is_too_small(void **state) {
  (void)state;
  char text[4096];
  uint8_t bin[4096];
  fill_sample(&sample);
  int jn = proto_senml_encode_json(&sample, text, sizeof(text));
  int cn = proto_senml_encode_cbor(&sample, bin, sizeof(bin));
  assert_true(jn > 0 && cn > 0);
  for (int cap = 0; cap <= jn; cap++) {
    char *b = malloc((size_t)cap + 1);
    assert_int_equal(proto_senml_encode_json(&sample, b, (size_t)cap), -ENOSPC);
    free(b);
  }
  assert_int_equal(proto_senml_encode_json(&sample, text, (size_t)jn + 1), jn);
  for (int cap = 0; cap < cn; cap++) {
    uint8_t *b = malloc((size_t)cap + 1);
    assert_int_equal(proto_senml_encode_cbor(&sample, b, (size_t)cap), -ENOSPC);
    free(b);
  }
  assert_int_equal(proto_senml_encode_cbor(&sample, bin, (size_t)cn), cn);
}

static void encode_rejects_packs_senml_cannot_carry(void **state) {
  (void)state;
  char text[4096];
  uint8_t bin[4096];
  fill_sample(&sample);
  sample.n = 0;
  assert_int_equal(proto_senml_encode_json(&sample, text, sizeof(text)), -EINVAL);
  fill_sample(&sample);
  strcpy(sample.device, "bad/id");
  assert_int_equal(proto_senml_encode_cbor(&sample, bin, sizeof(bin)), -EINVAL);
  fill_sample(&sample);
  sample.rec[3].t_ms = 1000; /* 1970: would read back as relative */
  assert_int_equal(proto_senml_encode_json(&sample, text, sizeof(text)), -EINVAL);
  fill_sample(&sample);
  sample.rec[2].value = NAN;
  assert_int_equal(proto_senml_encode_cbor(&sample, bin, sizeof(bin)), -EINVAL);
  fill_sample(&sample);
  sample.rec[1].quantity = PROTO_Q_COUNT;
  assert_int_equal(proto_senml_encode_json(&sample, text, sizeof(text)), -EINVAL);
}

/* ---- quantities */
static void quantity_names_and_units_come_from_the_map(void **state) {
  (void)state;
  for (int q = 0; q < PROTO_Q_COUNT; q++)
    assert_int_equal(proto_quantity_from_name(proto_quantity_name(q)), q);
  assert_string_equal(proto_quantity_name(PROTO_Q_PM2_5), "pm2_5");
  assert_string_equal(proto_quantity_unit(PROTO_Q_PRESSURE), "kPa");
  assert_int_equal(proto_quantity_from_name("pm25"), -1);
  assert_int_equal(proto_quantity_from_name(NULL), -1);
  assert_null(proto_quantity_name(PROTO_Q_COUNT));
  assert_null(proto_quantity_unit(-1));
  assert_null(proto_quantity_units(PROTO_Q_COUNT));
  assert_true(proto_quantity_is_level(PROTO_Q_LA));
  assert_false(proto_quantity_is_level(PROTO_Q_LAMAX));
  assert_false(proto_quantity_is_level(PROTO_Q_COUNT));
}

static void every_unit_offered_in_messages_converts(void **state) {
  (void)state;
  for (int q = 0; q < PROTO_Q_COUNT; q++) {
    double v = 1;
    if (q == PROTO_Q_ON) {
      assert_int_equal(proto_unit_to_canonical(q, "vb", 2, &v), -EINVAL);
      continue;
    }
    /* The canonical unit is offered and converts as the identity. */
    const char *canon = proto_quantity_unit(q);
    assert_int_equal(proto_unit_to_canonical(q, canon, strlen(canon), &v), 0);
    assert_true(v == 1);
    const char *list = proto_quantity_units(q);
    assert_true(strncmp(list, canon, strlen(canon)) == 0);
    for (const char *u = list; *u != '\0';) {
      size_t len = strcspn(u, ",");
      v = 1;
      if (proto_unit_to_canonical(q, u, len, &v) != 0)
        print_error("%s: \"%.*s\" does not convert\n", proto_quantity_name(q), (int)len, u);
      assert_int_equal(proto_unit_to_canonical(q, u, len, &v), 0);
      u += len;
      u += strspn(u, ", ");
    }
  }
  double v = 1;
  assert_int_equal(proto_unit_to_canonical(PROTO_Q_TEMP, "Cel", 2, &v), -EINVAL); /* "Ce" */
  assert_int_equal(proto_unit_to_canonical(PROTO_Q_TEMP, "kPa", 3, &v), -EINVAL);
  assert_int_equal(proto_unit_to_canonical(PROTO_Q_COUNT, "kPa", 3, &v), -EINVAL);
}

/* ---- the jsmn decoder against jansson's (the oracle it replaced): the
 * same verdict, values bit for bit and message, except the reason after
 * "invalid JSON at line L, column C: " (tests/fuzz/fuzz_senml_diff.c does
 * this with arbitrary bytes). */
#define SYNTAX "invalid JSON at line "

static int agree_n(const char *text, size_t len) {
  static proto_pack_t mine, oracle;
  char e1[512], e2[512];
  int r1 = proto_senml_decode_json((const uint8_t *)text, len, &lim, &mine, e1, sizeof(e1));
  int r2 =
      proto_senml_decode_json_jansson((const uint8_t *)text, len, &lim, &oracle, e2, sizeof(e2));
  if (r1 != r2)
    print_error("verdicts differ: jsmn %d \"%s\", jansson %d \"%s\"\n--- input ---\n%.300s\n", r1,
                r1 ? e1 : "", r2, r2 ? e2 : "", text);
  assert_int_equal(r1, r2);
  if (r1 == 0) {
    assert_string_equal(mine.device, oracle.device);
    assert_int_equal(mine.n, oracle.n);
    for (size_t i = 0; i < mine.n; i++) {
      assert_int_equal(mine.rec[i].quantity, oracle.rec[i].quantity);
      assert_int_equal(mine.rec[i].t_ms, oracle.rec[i].t_ms);
      assert_memory_equal(&mine.rec[i].value, &oracle.rec[i].value, sizeof(double));
    }
    pack = mine;
    return 0;
  }
  bool s1 = strncmp(e1, SYNTAX, strlen(SYNTAX)) == 0, s2 = strncmp(e2, SYNTAX, strlen(SYNTAX)) == 0;
  if (s1 != s2 || (!s1 && strcmp(e1, e2) != 0))
    print_error("messages differ:\n jsmn    %s\n jansson %s\n--- input ---\n%.300s\n", e1, e2,
                text);
  assert_true(s1 == s2);
  if (!s1)
    assert_string_equal(e1, e2);
  strcpy(err, e1);
  return r1;
}

static int agree(const char *text) { return agree_n(text, strlen(text)); }

#define REC "{\"bn\":\"d/\",\"n\":\"pm10\",\"v\":12"

static void json_decoders_agree_on_strings_and_escapes(void **state) {
  (void)state;
  assert_int_equal(agree("[{\"b\\u006e\":\"d\\/\",\"\\u006E\":\"pm\\u0031\\u0030\",\"v\":1}]"), 0);
  assert_string_equal(pack.device, "d");
  assert_int_equal(agree("[" REC ",\"x\":\"\\ud83d\\ude00 \\u00e9\\\"\\\\\\b\\f\\n\\r\\t\"}]"), 0);
  assert_int_equal(agree("[" REC ",\"\\u00e9_\":1}]"), -EBADMSG); /* must understand, quoted */
  assert_non_null(strstr(err, "\\xc3\\xa9_"));
  assert_int_equal(agree("[" REC ",\"u\":\"\\u00b5g/m3\"}]"), -EBADMSG); /* not our unit */
  assert_non_null(strstr(err, "unit \"\\xc2\\xb5g/m3\" is not a unit of pm10"));
  const char *syntax[] = {
      "[" REC ",\"x\":\"\\u0000\"}]",
      "[" REC ",\"\\u0000\":1}]",
      "[" REC ",\"x\":\"\\ud800\"}]",
      "[" REC ",\"x\":\"\\udc00\"}]",
      "[" REC ",\"x\":\"\\ud800\\u0041\"}]",
      "[" REC ",\"x\":\"\\ud800x\"}]",
      "[" REC ",\"x\":\"a\tb\"}]",
      "[" REC ",\"x\":\"\\x\"}]",
      "[" REC ",\"x\":\"\\u12g4\"}]",
      "[" REC ",\"x\":\"\xc3\"}]",
      "[" REC ",\"x\":\"\xc0\xaf\"}]",
      "[" REC ",\"x\":\"\xed\xa0\x80\"}]",
      "[" REC ",\"x\":\"\xf4\x90\x80\x80\"}]",
      "[" REC ",\"x\":\"\x7f\"}]\xff",
  };
  for (size_t i = 0; i < sizeof(syntax) / sizeof(syntax[0]); i++)
    assert_int_equal(agree(syntax[i]), -EBADMSG);
}

static void json_decoders_agree_on_numbers(void **state) {
  (void)state;
  const char *ok[] = {"-0",
                      "-0.0",
                      "0",
                      "0.0",
                      "1e2",
                      "1E+2",
                      "12.5e-1",
                      "1e-400",
                      "-1e-400",
                      "9007199254740993",
                      "123456789012345678",
                      "-9223372036854775808",
                      "0.1",
                      "1764100000.5",
                      "3.14159265358979323846",
                      "1234567890123456.5",
                      "0.000000000000000000000001",
                      "100000000000000000000.0"};
  char buf[256];
  for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
    snprintf(buf, sizeof(buf), "[{\"bn\":\"d/\",\"n\":\"temp\",\"v\":%s,\"x\":%s}]", ok[i], ok[i]);
    assert_int_equal(agree(buf), 0);
  }
  const char *bad[] = {"01",
                       "-",
                       "1.",
                       ".5",
                       "+1",
                       "1e",
                       "1e+",
                       "-01",
                       "0x10",
                       "1e400",
                       "-1e400",
                       "9223372036854775808",
                       "-9223372036854775809",
                       "NaN",
                       "Infinity",
                       "tru",
                       "nul",
                       "falsey",
                       "1.5.2",
                       "--1"};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    snprintf(buf, sizeof(buf), "[{\"bn\":\"d/\",\"n\":\"temp\",\"v\":1,\"x\":%s}]", bad[i]);
    assert_int_equal(agree(buf), -EBADMSG);
    assert_non_null(strstr(err, SYNTAX));
  }
  /* Values of a wrong type name the type as jansson did. */
  assert_int_equal(agree("[{\"bn\":\"d/\",\"n\":\"temp\",\"v\":null}]"), -EBADMSG);
  assert_int_equal(agree("[{\"bn\":\"d/\",\"n\":\"temp\",\"v\":[1]}]"), -EBADMSG);
  assert_int_equal(agree("[{\"bn\":\"d/\",\"n\":\"temp\",\"v\":{}}]"), -EBADMSG);
  assert_int_equal(agree("[{\"bn\":\"d/\",\"n\":\"temp\",\"v\":true}]"), -EBADMSG);
  assert_int_equal(agree("[{\"bn\":\"d/\",\"n\":\"temp\",\"v\":\"1\"}]"), -EBADMSG);
  assert_int_equal(agree("[{\"bn\":\"d/\",\"n\":1,\"v\":1}]"), -EBADMSG);
}

static void json_decoders_agree_on_structure(void **state) {
  (void)state;
  const char *cases[] = {
      "",
      " ",
      "[]",
      "{}",
      "{\"a\":1}",
      "[1]",
      "[\"x\"]",
      "[null]",
      "[[]]",
      "1",
      "\"x\"",
      "true",
      "[1,]",
      "[,1]",
      "[1 2]",
      "{\"a\" 1}",
      "{\"a\":}",
      "{\"a\":1,}",
      "{,}",
      "{\"a\"}",
      "{1:2}",
      "[1:2]",
      "[{\"a\":1]",
      "[}",
      "[" REC "}] [1]",
      "[" REC "}]  \r\n\t",
      "[" REC "}],",
      "[" REC ",\"v\":13}]",
      "[" REC ",\"\\u0076\":13}]",
      "[" REC ",\"x\":{\"a\":1,\"a\":2}}]",
      "[" REC ",\"x\":[{\"a\":1},{\"a\":2}]}]",
      "[" REC "},7]",
      "[" REC "},[]]",
      "\xef\xbb\xbf[" REC "}]",
      "[" REC ",\"bn\":\"e/\"}]",
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
    (void)agree(cases[i]);
  assert_int_equal(agree("[" REC "}] x"), -EBADMSG);
  assert_non_null(strstr(err, "invalid JSON at line 1, column 33:")); /* the x */
  assert_int_equal(agree("[" REC ",\n\"x\":[1,]}]"), -EBADMSG);
  assert_non_null(strstr(err, "invalid JSON at line 2, column 8:"));
}

/* Objects past 16 keys go through the hash table; packs past 256 tokens
 * through heap-allocated tokens. */
static void json_decoders_agree_on_large_objects_and_packs(void **state) {
  (void)state;
  static char buf[1 << 20];
  for (int dup = 0; dup <= 1; dup++) {
    size_t o = (size_t)sprintf(buf, "[" REC ",\"x\":{");
    for (int k = 0; k < 3000; k++)
      o += (size_t)sprintf(buf + o, "%s\"k%d\":%d", k ? "," : "", k, k);
    o += (size_t)sprintf(buf + o, dup ? ",\"k\\u0031\\u0037\":0}}]" : "}}]");
    assert_int_equal(agree_n(buf, o), dup ? -EBADMSG : 0);
  }
  size_t o = (size_t)sprintf(buf, "[");
  for (int r = 0; r < PROTO_PACK_MAX; r++)
    o += (size_t)sprintf(buf + o, "%s{%s\"n\":\"temp\",\"t\":%d,\"v\":%d.5}", r ? "," : "",
                         r ? "" : "\"bn\":\"d/\",\"bt\":1764100000,", -r, r);
  o += (size_t)sprintf(buf + o, "]");
  assert_int_equal(agree_n(buf, o), 0);
  assert_int_equal(pack.n, PROTO_PACK_MAX);
}

/* jansson's limit: a value nested in 2048 containers is refused. */
static void json_decoders_agree_on_nesting_depth(void **state) {
  (void)state;
  static char buf[3 * 2100 + 200];
  const int depths[] = {2045, 2046, 2047, 2048};
  for (size_t d = 0; d < sizeof(depths) / sizeof(depths[0]); d++) {
    for (int scalar = 0; scalar <= 1; scalar++) {
      size_t o = (size_t)sprintf(buf, "[" REC ",\"x\":");
      for (int i = 0; i < depths[d]; i++)
        buf[o++] = '[';
      if (scalar)
        buf[o++] = '1';
      for (int i = 0; i < depths[d]; i++)
        buf[o++] = ']';
      o += (size_t)sprintf(buf + o, "}]");
      int rc = agree_n(buf, o);
      /* the array and the record add 2 containers around x */
      assert_int_equal(rc, depths[d] + 2 + scalar > 2048 ? -EBADMSG : 0);
    }
  }
}

/* jansson takes one NUL byte after a number as if it were not there (its
 * lexer's look-ahead); every NUL byte is a syntax error to jsmn's decoder,
 * as to RFC 8259. The one deliberate difference. */
static void json_decoder_refuses_every_nul_byte(void **state) {
  (void)state;
  const char text[] = "[{\"bn\":\"d/\",\"n\":\"pm10\",\"v\":2\0}]";
  assert_int_equal(proto_senml_decode_json((const uint8_t *)text, sizeof(text) - 1, &lim, &pack,
                                           err, sizeof(err)),
                   -EBADMSG);
  assert_string_equal(err, "invalid JSON at line 1, column 29: a NUL byte");
  assert_int_equal(proto_senml_decode_json_jansson((const uint8_t *)text, sizeof(text) - 1, &lim,
                                                   &pack, err, sizeof(err)),
                   0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(json_decoders_agree_on_strings_and_escapes),
      cmocka_unit_test(json_decoders_agree_on_numbers),
      cmocka_unit_test(json_decoders_agree_on_structure),
      cmocka_unit_test(json_decoders_agree_on_large_objects_and_packs),
      cmocka_unit_test(json_decoders_agree_on_nesting_depth),
      cmocka_unit_test(json_decoder_refuses_every_nul_byte),
      cmocka_unit_test(decode_adds_record_time_to_base_time),
      cmocka_unit_test(decode_treats_times_below_2_pow_28_as_relative_to_now),
      cmocka_unit_test(decode_reads_times_from_2_pow_28_on_as_unix_seconds),
      cmocka_unit_test(decode_uses_now_for_a_record_without_time),
      cmocka_unit_test(decode_rounds_times_to_the_nearest_millisecond),
      cmocka_unit_test(decode_rejects_time_more_than_five_minutes_in_the_future),
      cmocka_unit_test(decode_rejects_time_older_than_the_horizon),
      cmocka_unit_test(decode_converts_units_of_every_dimension),
      cmocka_unit_test(decode_keeps_values_in_canonical_units_unchanged),
      cmocka_unit_test(decode_applies_base_unit_until_a_record_names_its_own),
      cmocka_unit_test(decode_adds_base_value_before_converting),
      cmocka_unit_test(decode_rejects_pack_with_unknown_unit),
      cmocka_unit_test(decode_rejects_unit_of_another_dimension),
      cmocka_unit_test(decode_rejects_pack_without_base_name),
      cmocka_unit_test(decode_rejects_base_names_that_are_not_device_slash),
      cmocka_unit_test(decode_rejects_base_name_of_another_device_mid_pack),
      cmocka_unit_test(decode_accepts_the_same_base_name_repeated),
      cmocka_unit_test(decode_rejects_nan_and_infinity_in_cbor),
      cmocka_unit_test(decode_rejects_missing_value_and_name),
      cmocka_unit_test(decode_rejects_unknown_quantity),
      cmocka_unit_test(decode_takes_vb_for_on),
      cmocka_unit_test(decode_rejects_string_data_and_sum_values),
      cmocka_unit_test(decode_rejects_wrong_types_naming_the_field),
      cmocka_unit_test(decode_rejects_non_array_packs_and_non_object_records),
      cmocka_unit_test(decode_rejects_duplicate_records),
      cmocka_unit_test(decode_rejects_duplicates_in_a_large_pack),
      cmocka_unit_test(decode_accepts_a_pack_of_the_maximum_size),
      cmocka_unit_test(decode_rejects_pack_with_too_many_records),
      cmocka_unit_test(decode_rejects_empty_pack),
      cmocka_unit_test(decode_rejects_must_understand_labels),
      cmocka_unit_test(decode_ignores_other_unknown_labels),
      cmocka_unit_test(decode_rejects_newer_senml_version),
      cmocka_unit_test(decode_rejects_duplicate_json_keys),
      cmocka_unit_test(decode_rejects_repeated_cbor_labels),
      cmocka_unit_test(decode_reports_json_syntax_error_with_line_and_column),
      cmocka_unit_test(decode_error_messages_stay_on_one_line),
      cmocka_unit_test(decode_writes_errors_within_small_buffers),
      cmocka_unit_test(decode_reads_cbor_with_indefinite_lengths),
      cmocka_unit_test(decode_reads_cbor_text_labels),
      cmocka_unit_test(decode_rejects_malformed_cbor),
      cmocka_unit_test(decode_rejects_text_that_is_not_utf8_in_cbor),
      cmocka_unit_test(decode_rejects_every_truncated_prefix_of_a_cbor_pack),
      cmocka_unit_test(encode_json_round_trips_a_pack),
      cmocka_unit_test(encode_cbor_round_trips_a_pack),
      cmocka_unit_test(encode_json_writes_base_name_base_time_and_relative_times),
      cmocka_unit_test(encode_json_writes_numbers_as_printf_would),
      cmocka_unit_test(encode_returns_enospc_when_the_buffer_is_too_small),
      cmocka_unit_test(encode_rejects_packs_senml_cannot_carry),
      cmocka_unit_test(quantity_names_and_units_come_from_the_map),
      cmocka_unit_test(every_unit_offered_in_messages_converts),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
