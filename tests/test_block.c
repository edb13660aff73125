/* Unit tests of the compressed block codec (storage/block.c). The expected
 * bytes are worked out by hand from the format at the top of block.c; the
 * IEEE 754 bit patterns are the doubles' (0.001 is 0x3F50624DD2F1A9FC).
 * Version 1's vectors stay: databases hold such blocks, and the encoder
 * still writes them when asked for their mode. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "storage/storage_int.h"
#include "tests/fuzz/block_least.h"

#include <errno.h>
#include <math.h>
#include <string.h>

/* The block in want's mode (its first byte) is `want`; in version 2 the
 * encoder's own choice is that mode too. */
static void expect_bytes(const stor_sample_t *s, size_t n, const uint8_t *want, size_t want_len) {
  uint8_t buf[256];
  ssize_t len = stor__block_encode_mode(s, n, want[0], buf, sizeof(buf));
  assert_int_equal(len, (ssize_t)want_len);
  assert_memory_equal(buf, want, want_len);
  assert_int_equal(stor__block_size(s, n, buf[0]), want_len);
  if (want[0] >> 4 == 2) {
    assert_int_equal(stor__block_encode(s, n, buf, sizeof(buf)), (ssize_t)want_len);
    assert_memory_equal(buf, want, want_len);
  }
  /* and back */
  stor_sample_t out[16];
  size_t got = 0;
  int mode = -1;
  assert_int_equal(stor__block_decode(buf, (size_t)len, out, 16, &got, &mode), 0);
  assert_int_equal(got, n);
  assert_int_equal(mode, buf[0]);
  for (size_t i = 0; i < n; i++) {
    assert_int_equal(out[i].t_ms, s[i].t_ms);
    assert_memory_equal(&out[i].v, &s[i].v, sizeof(double));
  }
}

static void scaled_block_of_three_readings_a_second_apart_is_eleven_bytes(void **state) {
  (void)state;
  const stor_sample_t s[] = {{1000, 56.3}, {2000, 56.4}, {3000, 56.2}};
  const uint8_t want[] = {
      0x10,       /* version 1, scaled */
      0x03,       /* n */
      0xd0, 0x0f, /* t0 1000: zigzag 2000 = 0x7d0, LEB128 0x50|0x80, 0x0f */
      0xd0, 0x0f, /* t1 - t0 = 1000 */
      0x00,       /* delta-of-delta 0 */
      0xfc, 0x57, /* 5630 hundredths: zigzag 11260 = 0x2bfc: 0x7c|0x80, 0x57 */
      0x14,       /* +10: zigzag 20 */
      0x27,       /* -20: zigzag 39 */
  };
  expect_bytes(s, 3, want, sizeof(want));
}

static void values_not_exact_in_hundredths_are_xor_coded(void **state) {
  (void)state;
  const stor_sample_t s[] = {{0, 0.001}, {1000, 0.002}, {2000, 0.002}};
  const uint8_t want[] = {
      0x11,                                           /* version 1, XOR */
      0x03, 0x00, 0xd0, 0x0f, 0x00,                   /* n 3, t0 0, +1000, dod 0 */
      0x3f, 0x50, 0x62, 0x4d, 0xd2, 0xf1, 0xa9, 0xfc, /* 0.001 */
      0x11, 0x30, /* XOR 0x0030000000000000: 1 leading zero byte, 1 significant */
      0x00,       /* the same value again */
  };
  expect_bytes(s, 3, want, sizeof(want));
}

static void irregular_times_and_negative_values_round_trip(void **state) {
  (void)state;
  /* delta 500 then 2000 then 1: dods +1500 and -1999 */
  const stor_sample_t s[] = {
      {1764100000000, -12.5}, {1764100000500, 0}, {1764100002500, 1e6}, {1764100002501, -0.01}};
  uint8_t buf[64];
  ssize_t len = stor__block_encode(s, 4, buf, sizeof(buf));
  assert_true(len > 0);
  assert_int_equal(buf[0], STOR_BLOCK_SCALED2);
  stor_sample_t out[4];
  size_t n = 0;
  assert_int_equal(stor__block_decode(buf, (size_t)len, out, 4, &n, NULL), 0);
  assert_int_equal(n, 4);
  for (int i = 0; i < 4; i++) {
    assert_int_equal(out[i].t_ms, s[i].t_ms);
    assert_true(out[i].v == s[i].v);
  }
}

static void negative_zero_keeps_its_sign_in_xor_mode(void **state) {
  (void)state;
  const stor_sample_t s[] = {{0, -0.0}};
  int64_t h;
  assert_false(stor__block_hundredths(-0.0, &h)); /* 0 hundredths would lose the sign */
  const uint8_t want[] = {0x11, 0x01, 0x00, 0x80, 0, 0, 0, 0, 0, 0, 0};
  expect_bytes(s, 1, want, sizeof(want));
}

static void a_series_a_second_apart_costs_about_three_bytes_a_reading(void **state) {
  (void)state;
  enum { N = 3600 };
  static stor_sample_t s[N];
  static uint8_t buf[N * 12];
  for (int i = 0; i < N; i++) /* one-decimal values wandering between 30 and 100 */
    s[i] = (stor_sample_t){1764100000000 + i * 1000, 30 + (double)((i * 37) % 700) / 10};
  ssize_t len = stor__block_encode(s, N, buf, sizeof(buf));
  assert_true(len > 0);
  assert_true(len <= 3 * N + 16); /* times 1 byte, value deltas 2, and the head */
}

static void encoder_refuses_what_cannot_be_a_block(void **state) {
  (void)state;
  uint8_t buf[64];
  const stor_sample_t same_t[] = {{1000, 1}, {1000, 2}};
  const stor_sample_t back[] = {{2000, 1}, {1000, 2}};
  const stor_sample_t neg[] = {{-1, 1}};
  const stor_sample_t nan[] = {{0, NAN}};
  assert_int_equal(stor__block_encode(same_t, 2, buf, sizeof(buf)), -EINVAL);
  assert_int_equal(stor__block_encode(back, 2, buf, sizeof(buf)), -EINVAL);
  assert_int_equal(stor__block_encode(neg, 1, buf, sizeof(buf)), -EINVAL);
  assert_int_equal(stor__block_encode(nan, 1, buf, sizeof(buf)), -EINVAL);
  assert_int_equal(stor__block_encode(same_t, 0, buf, sizeof(buf)), -EINVAL);
  const stor_sample_t third[] = {{0, 1.0 / 3}};
  assert_int_equal(stor__block_encode_mode(third, 1, STOR_BLOCK_SCALED, buf, sizeof(buf)), -EINVAL);
  assert_int_equal(stor__block_encode(third, 1, buf, 5), -ENOSPC); /* needs 11 */
}

static void decoder_refuses_damaged_blocks(void **state) {
  (void)state;
  stor_sample_t out[8];
  size_t n = 0;
  const uint8_t ok[] = {0x10, 0x02, 0x00, 0x02, 0x00, 0x02};
  assert_int_equal(stor__block_decode(ok, sizeof(ok), out, 8, &n, NULL), 0);
  assert_int_equal(n, 2);
  assert_true(out[1].t_ms == 1 && out[1].v == 0.01);
  struct {
    const char *why;
    uint8_t b[16];
    size_t len;
  } bad[] = {
      {"empty", {0}, 0},
      {"version 3", {0x30, 0x01, 0x00, 0x00}, 4},
      {"mode 2 in version 1", {0x12, 0x01, 0x00, 0x00}, 4},
      {"mode 3", {0x23, 0x01, 0x00, 0x00}, 4},
      {"a run past the block", {0x20, 0x03, 0x00, 0x02, 0x00, 0x05, 0x00, 0x00, 0x00}, 9},
      {"a run cut short", {0x20, 0x04, 0x00, 0x02, 0x00, 0x00, 0x00, 0x00, 0, 0, 0, 0}, 12},
      {"dec: g 0", {0x22, 0x02, 0x00, 0x02, 0x00, 0x00, 0x02, 0x00}, 8},
      {"dec: g not the deltas' divisor", {0x22, 0x02, 0x00, 0x02, 0x01, 0x00, 0x04, 0x00}, 8},
      {"dec: g for no delta", {0x22, 0x02, 0x00, 0x02, 0x02, 0x00, 0x00, 0x00}, 8},
      {"dec: flag 2", {0x22, 0x01, 0x00, 0x01, 0x00, 0x02, 0x00}, 7},
      {"dec: codes all 0", {0x22, 0x01, 0x00, 0x01, 0x00, 0x01, 0x00}, 7},
      {"dec: +1 written long", {0x22, 0x01, 0x00, 0x01, 0x00, 0x01, 0x03, 0x02}, 8},
      {"dec: unused code bits", {0x22, 0x01, 0x00, 0x01, 0x00, 0x01, 0x05}, 7},
      {"dec: no double (0 - 1 ulp)", {0x22, 0x01, 0x00, 0x01, 0x00, 0x01, 0x02}, 7},
      {"dec: codes truncated",
       {0x22, 0x05, 0x00, 0x02, 0x00, 0x01, 0x00, 0, 0, 0, 0, 0x01, 0x01},
       13},
      {"no readings", {0x10, 0x00}, 2},
      {"truncated", {0x10, 0x02, 0x00, 0x02, 0x00}, 5},
      {"trailing byte", {0x10, 0x01, 0x00, 0x00, 0x00}, 5},
      {"overlong varint", {0x10, 0x81, 0x00, 0x00, 0x00}, 5},
      {"negative time", {0x10, 0x01, 0x01, 0x00}, 4},
      {"same time twice", {0x10, 0x02, 0x00, 0x00, 0x00, 0x00}, 6},
      {"time going back", {0x10, 0x03, 0x00, 0x04, 0x05, 0x00, 0x00, 0x00}, 8},
      {"xor: infinity", {0x11, 0x01, 0x00, 0x7f, 0xf0, 0, 0, 0, 0, 0, 0}, 11},
      {"xor: zero first byte",
       {0x11, 0x02, 0x00, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0x12, 0x00, 0x01},
       15},
      {"xor: 9 bytes", {0x11, 0x02, 0x00, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0x09}, 13},
      /* 9007199254740963 hundredths: / 100 and back * 100 is another number */
      {"inexact hundredths",
       {0x10, 0x01, 0x00, 0xc6, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x1f},
       11},
  };
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    int rc = stor__block_decode(bad[i].b, bad[i].len, out, 8, &n, NULL);
    if (rc != -EBADMSG)
      fail_msg("%s: decoded with %d", bad[i].why, rc);
  }
  /* More readings than the caller has room for is not damage. */
  assert_int_equal(stor__block_decode(ok, sizeof(ok), out, 1, &n, NULL), -ENOSPC);
}

/* Version 2: a steady pace is a run of delta-of-deltas 0, one varint. */
static void steady_times_are_runs_in_version_2(void **state) {
  (void)state;
  const stor_sample_t s[] = {{1000, 1}, {2000, 1}, {3000, 1}, {4000, 1}, {4500, 1}, {5000, 1}};
  const uint8_t want[] = {
      0x20,                /* version 2, scaled */
      0x06,                /* n */
      0xd0, 0x0f,          /* t0 1000 */
      0xd0, 0x0f,          /* +1000 */
      0x00, 0x01,          /* delta-of-delta 0, and 1 more: 3000, 4000 */
      0xe7, 0x07,          /* -500: zigzag 999 = 0x3e7: 0x67|0x80, 0x07 */
      0x00, 0x00,          /* 0, no more: 5000 */
      0xc8, 0x01,          /* 100 hundredths: zigzag 200 */
      0,    0,    0, 0, 0, /* the same five times */
  };
  expect_bytes(s, 6, want, sizeof(want));
}

/* The resend check's walk through the times (runs, irregular deltas and a
 * version 1 block): ascending questions are one walk, an earlier one
 * starts it over, and every answer is the decoded block's. */
static void a_walk_through_the_times_answers_as_the_decoded_block(void **state) {
  (void)state;
  const stor_sample_t s[] = {{1000, 1}, {2000, 1}, {3000, 1}, {4000, 1}, {4500, 1}, {5000, 1}};
  uint8_t buf[64];
  ssize_t len = stor__block_encode(s, 6, buf, sizeof(buf));
  assert_true(len > 0 && buf[0] >> 4 == 2);
  const uint8_t v1[] = {0x10, 0x02, 0x00, 0x02, 0x00, 0x02}; /* times 0 and 1 */
  static const struct {
    int64_t t;
    int has;
  } ask[] = {{999, 0},  {1000, 1}, {1000, 1}, {2500, 0}, {3000, 1}, {4000, 1}, {4200, 0},
             {2000, 1}, {1500, 0}, {4500, 1}, {5000, 1}, {5001, 0}, {0, 0},    {5000, 1}};
  stor_blk_walk_t w;
  assert_int_equal(stor__block_walk(&w, buf, (size_t)len), 0);
  for (size_t i = 0; i < sizeof(ask) / sizeof(ask[0]); i++)
    assert_int_equal(stor__block_walk_to(&w, ask[i].t), ask[i].has);
  assert_int_equal(stor__block_walk(&w, v1, sizeof(v1)), 0);
  assert_int_equal(stor__block_walk_to(&w, 1), 1);
  assert_int_equal(stor__block_walk_to(&w, 0), 1);
  assert_int_equal(stor__block_walk_to(&w, 2), 0);
  /* Damaged times: a delta that does not ascend. */
  const uint8_t bad[] = {0x10, 0x03, 0x00, 0x02, 0x03, 0x00, 0x00, 0x00};
  assert_int_equal(stor__block_walk(&w, bad, sizeof(bad)), 0);
  assert_int_equal(stor__block_walk_to(&w, 5), -EBADMSG);
  assert_int_equal(stor__block_walk(&w, bad, 1), -EBADMSG);
}

/* Decimal values as arithmetic leaves them: 449 * 0.1 is 44.900000000000006,
 * the double after 44.9 (bit pattern + 1); 0.1 * 3 likewise after 0.3. */
static void decimals_a_unit_off_are_tenths_and_two_bits(void **state) {
  (void)state;
  const stor_sample_t s[] = {{1000, 449 * 0.1}, {2000, 45.0}, {3000, 44.8}, {4000, 0.1 * 3}};
  const uint8_t want[] = {
      0x22,       /* version 2, decimal */
      0x04,       /* n */
      0xd0, 0x0f, /* t0 1000 */
      0xd0, 0x0f, /* +1000 */
      0x00, 0x01, /* a run of two delta-of-deltas 0 */
      0x0a,       /* g: q 4490 4500 4480 30, deltas +10 -20 -4450: 10 */
      0x94, 0x46, /* q0 4490: zigzag 8980 = 0x2314: 0x14|0x80, 0x46 */
      0x02,       /* +1 (x 10) */
      0x03,       /* -2 */
      0xf9, 0x06, /* -445: zigzag 889 = 0x379: 0x79|0x80, 0x06 */
      0x01,       /* corrections follow */
      0x41,       /* codes 1 0 0 1 from bit 0: +1 for the first and the last */
  };
  expect_bytes(s, 4, want, sizeof(want));
}

/* A float32 0.1 (a CBOR half or single from a device) is 107,374,182 units
 * above the double 0.1: an escaped correction. */
static void a_correction_beyond_one_unit_is_escaped(void **state) {
  (void)state;
  const stor_sample_t s[] = {{0, (double)0.1f}, {1000, 0.2}};
  const uint8_t want[] = {
      0x22,                   /* version 2, decimal */
      0x02, 0x00, 0xd0, 0x0f, /* n 2, t0 0, +1000 */
      0x0a,                   /* g 10: q 10 then 20 */
      0x14,                   /* q0 10: zigzag 20 */
      0x02,                   /* +1 (x 10) */
      0x01, 0x03,             /* corrections: code 3, then 0 */
      0xcc, 0x99, 0xb3, 0x66, /* 0x06666666: zigzag 0x0ccccccc in LEB128 */
  };
  uint8_t buf[64];
  assert_int_equal(stor__block_encode_mode(s, 2, STOR_BLOCK_DEC, buf, sizeof(buf)),
                   (ssize_t)sizeof(want));
  assert_memory_equal(buf, want, sizeof(want));
  stor_sample_t out[2];
  size_t n = 0;
  int mode = 0;
  assert_int_equal(stor__block_decode(want, sizeof(want), out, 2, &n, &mode), 0);
  assert_int_equal(mode, STOR_BLOCK_DEC);
  assert_int_equal(n, 2);
  assert_memory_equal(&out[0].v, &s[0].v, sizeof(double));
  assert_memory_equal(&out[1].v, &s[1].v, sizeof(double));
}

/* The demo's noise meter: one-decimal levels once a second, most a unit
 * off hundredths. About a byte and a quarter a reading (version 1: 7.5). */
static void a_noise_meter_second_by_second_costs_under_two_bytes_a_reading(void **state) {
  (void)state;
  enum { N = 3600 };
  static stor_sample_t s[N];
  static uint8_t buf[N * 20];
  for (int i = 0; i < N; i++) /* tenths between 40 and 46.3, as 0.1 * k */
    s[i] = (stor_sample_t){1764100000000 + i * 1000, (400 + (i * 37) % 64) * 0.1};
  ssize_t len = stor__block_encode(s, N, buf, sizeof(buf));
  assert_true(len > 0);
  assert_int_equal(buf[0], STOR_BLOCK_DEC);
  assert_true(len <= 2 * N);
  assert_true(stor__block_size(s, N, STOR_BLOCK_XOR) > 5 * N);
  stor_sample_t out[N];
  size_t n = 0;
  assert_int_equal(stor__block_decode(buf, (size_t)len, out, N, &n, NULL), 0);
  assert_int_equal(n, N);
  for (int i = 0; i < N; i++)
    assert_memory_equal(&out[i], &s[i], sizeof(s[i]));
}

/* A tail row's pack (compact.c): the block codec with times made relative
 * to the row's t, so a commit's five readings of a 1 Hz series cost a few
 * bytes each and no absolute time. */
static void a_pack_is_a_block_with_times_from_its_row(void **state) {
  (void)state;
  const int64_t t = 1765000000000; /* the row's t */
  const stor_sample_t s[] = {{t, 20.5}, {t + 1000, 20.75}, {t + 2000, 21.0}};
  const uint8_t want[] = {
      0x20,       /* version 2, scaled */
      0x03,       /* n */
      0x00,       /* t0 - t = 0 */
      0xd0, 0x0f, /* +1000: zigzag 2000 */
      0x00, 0x00, /* delta-of-delta 0, a run of 1 */
      0x84, 0x20, /* 2050 hundredths: zigzag 4100 = 0x1004: 0x04|0x80, 0x20 */
      0x32,       /* +25: zigzag 50 */
      0x32,       /* +25 */
  };
  uint8_t buf[STOR_PACK_BYTES(3)];
  ssize_t len = stor__pack_encode(s, 3, buf, sizeof(buf));
  assert_int_equal(len, (ssize_t)sizeof(want));
  assert_memory_equal(buf, want, sizeof(want));
  stor_sample_t out[STOR_PACK_MAX];
  size_t n = 0;
  assert_int_equal(stor__pack_decode(t, buf, (size_t)len, out, &n), 0);
  assert_int_equal(n, 3);
  for (size_t i = 0; i < n; i++) {
    assert_int_equal(out[i].t_ms, s[i].t_ms);
    assert_true(out[i].v == s[i].v);
  }
  /* The same bytes under another row's t are readings at that t. */
  assert_int_equal(stor__pack_decode(5000, buf, (size_t)len, out, &n), 0);
  assert_int_equal(out[0].t_ms, 5000);
  assert_int_equal(out[2].t_ms, 7000);
  /* One reading: header, n 1, time 0 and the value. */
  const uint8_t one[] = {0x20, 0x01, 0x00, 0x84, 0x20};
  assert_int_equal(stor__pack_encode(s, 1, buf, sizeof(buf)), (ssize_t)sizeof(one));
  assert_memory_equal(buf, one, sizeof(one));
}

static void packs_keep_to_their_span_and_size(void **state) {
  (void)state;
  stor_sample_t s[STOR_PACK_MAX + 1];
  for (size_t i = 0; i <= STOR_PACK_MAX; i++)
    s[i] = (stor_sample_t){.t_ms = 1000 + (int64_t)i * 10, .v = 1};
  uint8_t buf[STOR_PACK_BYTES(STOR_PACK_MAX + 1)];
  assert_true(stor__pack_encode(s, STOR_PACK_MAX, buf, sizeof(buf)) > 0);
  assert_int_equal(stor__pack_encode(s, STOR_PACK_MAX + 1, buf, sizeof(buf)), -EINVAL);
  /* The last reading STOR_PACK_SPAN_MS after the first: not one pack. */
  const stor_sample_t wide[] = {{0, 1}, {STOR_PACK_SPAN_MS - 1, 2}, {STOR_PACK_SPAN_MS, 3}};
  assert_true(stor__pack_encode(wide, 2, buf, sizeof(buf)) > 0);
  assert_int_equal(stor__pack_encode(wide, 3, buf, sizeof(buf)), -EINVAL);
  /* A block that is no pack: its first time is not the row's, or a
   * reading lies past the span. */
  stor_sample_t out[STOR_PACK_MAX];
  size_t n = 0;
  ssize_t len = stor__block_encode(wide + 1, 1, buf, sizeof(buf));
  assert_true(len > 0);
  assert_int_equal(stor__pack_decode(0, buf, (size_t)len, out, &n), -EBADMSG);
  len = stor__block_encode(wide, 3, buf, sizeof(buf));
  assert_int_equal(stor__pack_decode(0, buf, (size_t)len, out, &n), -EBADMSG);
  len = stor__block_encode(wide, 2, buf, sizeof(buf));
  assert_int_equal(stor__pack_decode(0, buf, (size_t)len, out, &n), 0);
  /* A row time whose readings would overflow, or before 1970. */
  assert_int_equal(stor__pack_decode(INT64_MAX - 10, buf, (size_t)len, out, &n), -EBADMSG);
  assert_int_equal(stor__pack_decode(-1, buf, (size_t)len, out, &n), -EBADMSG);
}

/* Whole numbers in steps of 7 (sitesim load's values move so): the
 * hundredths' deltas share 700, so the decimal mode writes them a byte each
 * where the scaled mode takes two; with the divisor's own two bytes it is
 * still the smaller from five readings on. */
static void whole_numbers_in_steps_of_seven_are_decimal_mode_with_divisor_700(void **state) {
  (void)state;
  const stor_sample_t s[] = {{0, 30.0}, {1000, 37.0}, {2000, 44.0}, {3000, 51.0}, {4000, 58.0}};
  const uint8_t want[] = {
      0x22,                   /* version 2, decimal */
      0x05,                   /* n */
      0x00,                   /* t0 0 */
      0xd0, 0x0f,             /* +1000 */
      0x00, 0x02,             /* a run of three delta-of-deltas 0 */
      0xbc, 0x05,             /* g 700 = 0x2bc: 0x3c|0x80, 0x05 */
      0xf0, 0x2e,             /* q0 3000: zigzag 6000 = 0x1770: 0x70|0x80, 0x2e */
      0x02,                   /* +1 (x 700) */
      0x02, 0x02, 0x02, 0x00, /* no corrections */
  };
  expect_bytes(s, 5, want, sizeof(want));
  /* The scaled mode, which would have been one byte longer: each +700 is
   * zigzag 1400 = 0x578, two bytes 0xf8 0x0a. */
  assert_int_equal(stor__block_size(s, 5, STOR_BLOCK_SCALED2), sizeof(want) + 1);
  /* Three readings: the scaled mode (6 value bytes against 7). */
  uint8_t buf[64];
  ssize_t len = stor__block_encode(s, 3, buf, sizeof(buf));
  assert_int_equal(len, stor__block_size(s, 3, STOR_BLOCK_SCALED2));
  assert_int_equal(buf[0], STOR_BLOCK_SCALED2);
  assert_int_equal(stor__block_size(s, 3, STOR_BLOCK_DEC), (size_t)len + 1);
}

/* stor__block_encode works the three modes' sizes out in one pass instead
 * of encoding in each: its bytes must be those of the mode with the fewest
 * (the first of SCALED2, DEC and XOR2 on a tie), which stor__block_size
 * measures by encoding. Blocks of every kind of value the modes split on:
 * whole numbers, hundredths, tenths a unit in the last place off, escaped
 * corrections, -0, values beyond hundredths' 2^53, and arbitrary doubles. */
static void the_encoder_writes_the_smallest_of_the_three_modes(void **state) {
  (void)state;
  enum { N = 300, KINDS = 9 };
  static stor_sample_t s[N];
  static uint8_t buf[32 + N * 20], want[32 + N * 20];
  int chosen[3] = {0};
  uint64_t x = 88172645463325252u; /* xorshift64 */
  for (int round = 0; round < 400; round++) {
    int kind = round % KINDS;
    size_t n = 1 + (size_t)(round * 37 % N);
    int64_t t = 0;
    for (size_t i = 0; i < n; i++) {
      x ^= x << 13, x ^= x >> 7, x ^= x << 17;
      t += 1 + (int64_t)(x % 4 == 0 ? x % 5000 : 1000);
      int64_t k = (int64_t)(x >> 40) % 2000 - 1000;
      double v;
      switch (kind) {
      case 0:
        v = 30.0 + (double)(k % 120);
        break; /* whole */
      case 1:
        v = (double)k / 100.0;
        break; /* hundredths */
      case 2:
        v = (double)(400 + k % 64) * 0.1;
        break; /* tenths, a unit off */
      case 3:
        v = i % 5 == 0 ? (double)(float)(k * 0.1) : k * 0.1;
        break; /* escapes */
      case 4:
        v = i % 7 == 0 ? -0.0 : (double)k;
        break; /* -0: no hundredths */
      case 5:
        v = i % 11 == 0 ? 1e300 : (double)k * 0.5;
        break; /* beyond 2^53 / 100 */
      case 6:
        v = (double)(k % 3) * 1000.0;
        break; /* few levels */
      case 7:
        v = 20.0;
        break; /* constant */
      default: {
        uint64_t bits = x * 0x9E3779B97F4A7C15u;
        memcpy(&v, &bits, sizeof(v));
        if (!isfinite(v))
          v = (double)k;
      }
      }
      s[i] = (stor_sample_t){.t_ms = t, .v = v};
    }
    size_t best;
    int pick = block_least(s, n, &best);
    assert_true(pick >= 0);
    chosen[pick]++;
    assert_int_equal(stor__block_encode_mode(s, n, block_modes[pick], want, sizeof(want)),
                     (ssize_t)best);
    assert_int_equal(stor__block_encode(s, n, buf, sizeof(buf)), (ssize_t)best);
    assert_memory_equal(buf, want, best);
    /* Counting only, and a buffer a byte short. */
    assert_int_equal(stor__block_encode(s, n, NULL, 0), -ENOSPC);
    assert_int_equal(stor__block_encode(s, n, buf, best - 1), -ENOSPC);
  }
  for (int m = 0; m < 3; m++)
    assert_true(chosen[m] > 0); /* each mode was the smallest somewhere */
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(scaled_block_of_three_readings_a_second_apart_is_eleven_bytes),
      cmocka_unit_test(values_not_exact_in_hundredths_are_xor_coded),
      cmocka_unit_test(irregular_times_and_negative_values_round_trip),
      cmocka_unit_test(steady_times_are_runs_in_version_2),
      cmocka_unit_test(a_walk_through_the_times_answers_as_the_decoded_block),
      cmocka_unit_test(decimals_a_unit_off_are_tenths_and_two_bits),
      cmocka_unit_test(a_correction_beyond_one_unit_is_escaped),
      cmocka_unit_test(a_noise_meter_second_by_second_costs_under_two_bytes_a_reading),
      cmocka_unit_test(negative_zero_keeps_its_sign_in_xor_mode),
      cmocka_unit_test(a_series_a_second_apart_costs_about_three_bytes_a_reading),
      cmocka_unit_test(encoder_refuses_what_cannot_be_a_block),
      cmocka_unit_test(decoder_refuses_damaged_blocks),
      cmocka_unit_test(a_pack_is_a_block_with_times_from_its_row),
      cmocka_unit_test(packs_keep_to_their_span_and_size),
      cmocka_unit_test(whole_numbers_in_steps_of_seven_are_decimal_mode_with_divisor_700),
      cmocka_unit_test(the_encoder_writes_the_smallest_of_the_three_modes),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
