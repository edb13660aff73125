/* Machinery codecs (protocol/machine.c): the register's CSV, gate events
 * in JSON and CBOR (CBOR assembled byte by byte, RFC 8949), and the
 * refusals naming what is wrong. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "protocol/protocol.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define NOW 1764100000.0
#define OLDEST (NOW - 400 * 86400.0)
static char err[1024];

static void csv_reads_every_column_in_any_order(void **state) {
  (void)state;
  const char *csv = "\xef\xbb\xbf# the register\r\n"
                    "Stage,CODE,type,power_kw,owner,fuel,label,terminal,ignored\r\n"
                    "III,230102Z0001,excavator,103,\"龙运, 租赁\",diesel,green,mt-01,x\r\n"
                    "\r\n"
                    "electric,230102E0002,loader,55,,,blue,,\n";
  proto_machine_t *m = NULL;
  size_t n = 0;
  assert_int_equal(proto_machine_csv_parse(csv, strlen(csv), &m, &n, err, sizeof(err)), 0);
  assert_int_equal(n, 2);
  assert_string_equal(m[0].code, "230102Z0001");
  assert_string_equal(m[0].type, "excavator");
  assert_int_equal(m[0].stage, PROTO_STAGE_III);
  assert_true(m[0].power_kw == 103);
  assert_string_equal(m[0].owner, "龙运, 租赁");
  assert_int_equal(m[0].fuel, PROTO_FUEL_DIESEL);
  assert_string_equal(m[0].label, "green");
  assert_string_equal(m[0].terminal, "mt-01");
  assert_int_equal(m[1].stage, PROTO_STAGE_ELECTRIC);
  assert_int_equal(m[1].fuel, PROTO_FUEL_ELECTRIC); /* electric by its stage */
  assert_int_equal(m[1].line, 5);
  free(m);
}

static void csv_names_every_bad_line(void **state) {
  (void)state;
  const char *csv = "code,type,stage,power_kw,fuel\n"
                    "A1,excavator,V,100,diesel\n"
                    "A2,excavator,II,-3,diesel\n"
                    "A3,excavator,II,90,electric\n"
                    "A4,crane,IV,200,diesel\n"
                    "A4,crane,IV,200,diesel\n"
                    "a b,crane,IV,200,diesel\n";
  proto_machine_t *m = NULL;
  size_t n = 9;
  assert_int_equal(proto_machine_csv_parse(csv, strlen(csv), &m, &n, err, sizeof(err)), -EBADMSG);
  assert_null(m);
  assert_int_equal(n, 0);
  assert_non_null(strstr(err, "line 2: stage \"V\""));
  assert_non_null(strstr(err, "line 3: power_kw"));
  assert_non_null(strstr(err, "line 4: an electric machine"));
  assert_non_null(strstr(err, "line 6: machine A4 is listed twice"));
  assert_non_null(strstr(err, "line 7: code"));
  assert_null(strstr(err, "line 5"));
}

/* Beside the English, each bad line's code and values for the catalogue
 * (protocol.h "Why a parser or check refused"), the first as proto_why(). */
static void csv_reports_each_bad_line_as_a_code_with_values(void **state) {
  (void)state;
  const char *csv = "code,type,stage,power_kw\n"
                    "A1,excavator,V,100\n"
                    "A2,excavator,II,-3\n"
                    "A4,crane,IV,200\n"
                    "A4,crane,IV,200\n";
  proto_machine_t *m = NULL;
  size_t n = 0;
  assert_int_equal(proto_machine_csv_parse(csv, strlen(csv), &m, &n, err, sizeof(err)), -EBADMSG);
  const proto_why_t *w = proto_why(), *l;
  assert_int_equal(w->code, PROTO_WHY_MCSV_STAGE);
  assert_int_equal(w->line, 2);
  assert_int_equal(w->more, 2);
  assert_int_equal(w->nargs, 1);
  assert_string_equal(w->args[0], "V");
  assert_int_equal(proto_why_lines(&l), 3);
  assert_int_equal(l[1].code, PROTO_WHY_MACHINE_POWER);
  assert_int_equal(l[1].line, 3);
  assert_string_equal(l[1].args[0], "10000");
  assert_int_equal(l[2].code, PROTO_WHY_MCSV_TWICE);
  assert_int_equal(l[2].line, 5);
  assert_string_equal(l[2].args[0], "A4");
  assert_string_equal(proto_why_name(l[2].code), "mcsv_twice");
  /* a good parse forgets them */
  const char *good = "code,type,stage,power_kw\nA5,crane,IV,200\n";
  assert_int_equal(proto_machine_csv_parse(good, strlen(good), &m, &n, err, sizeof(err)), 0);
  free(m);
  assert_int_equal(proto_why()->code, PROTO_WHY_NONE);
  assert_int_equal(proto_why_lines(&l), 0);
}

static void csv_without_the_required_columns_is_refused(void **state) {
  (void)state;
  const char *csv = "code,type,power_kw\nA1,loader,50\n";
  proto_machine_t *m = NULL;
  size_t n = 0;
  assert_int_equal(proto_machine_csv_parse(csv, strlen(csv), &m, &n, err, sizeof(err)), -EBADMSG);
  assert_non_null(strstr(err, "code, type, stage and power_kw"));
}

static int json(const char *text, proto_gate_event_t *e) {
  return proto_gate_decode_json((const uint8_t *)text, strlen(text), NOW, OLDEST, e, err,
                                sizeof(err));
}

static void gate_json_decodes_the_example(void **state) {
  (void)state;
  proto_gate_event_t e;
  assert_int_equal(json("{\"gate\":\"gate-01\",\"no\":17,\"t\":1764100000,"
                        "\"code\":\"230102Z0001\",\"dir\":\"in\"}",
                        &e),
                   0);
  assert_string_equal(e.gate, "gate-01");
  assert_int_equal(e.no, 17);
  assert_int_equal(e.t, 1764100000);
  assert_string_equal(e.code, "230102Z0001");
  assert_true(e.in);
}

static void gate_json_refuses_with_the_field_named(void **state) {
  (void)state;
  proto_gate_event_t e;
  static const struct {
    const char *text, *says;
  } cases[] = {
      {"{\"gate\":\"g\",\"no\":1,\"t\":1764100000,\"code\":\"A1\"}", "\"dir\" is required"},
      {"{\"gate\":\"g\",\"no\":1,\"t\":1764100000,\"code\":\"A1\",\"dir\":\"up\"}", "\"dir\""},
      {"{\"gate\":\"g\",\"no\":0,\"t\":1764100000,\"code\":\"A1\",\"dir\":\"in\"}", "\"no\""},
      {"{\"gate\":\"g\",\"no\":1.5,\"t\":1764100000,\"code\":\"A1\",\"dir\":\"in\"}", "\"no\""},
      {"{\"gate\":\"g\",\"no\":1,\"t\":-30,\"code\":\"A1\",\"dir\":\"in\"}", "\"t\" is too old"},
      {"{\"gate\":\"g\",\"no\":1,\"t\":1764109000,\"code\":\"A1\",\"dir\":\"in\"}", "ahead"},
      {"{\"gate\":\"g\",\"no\":1,\"t\":1764100000,\"code\":\"A 1\",\"dir\":\"in\"}", "\"code\""},
      {"{\"gate\":\"g\",\"no\":1,\"t\":1764100000,\"code\":\"A1\",\"dir\":\"in\",\"x\":1}",
       "unknown field \"x\""},
      {"{\"gate\":\"g\",\"no\":1,\"no\":2}", "repeated"},
      {"[1]", "one JSON object"},
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    assert_int_equal(json(cases[i].text, &e), -EBADMSG);
    if (!strstr(err, cases[i].says))
      fail_msg("%s: got \"%s\", want \"%s\"", cases[i].text, err, cases[i].says);
  }
}

static void gate_cbor_decodes_bytes_written_by_hand(void **state) {
  (void)state;
  /* {"gate":"g1","no":300,"t":1764100000,"code":"A1","dir":"out"} */
  static const uint8_t b[] = {0xa5, 0x64, 'g',  'a',  't',  'e',  0x62, 'g',  '1',  0x62,
                              'n',  'o',  0x19, 0x01, 0x2c, 0x61, 't',  0x1a, 0x69, 0x26,
                              0x07, 0xa0, 0x64, 'c',  'o',  'd',  'e',  0x62, 'A',  '1',
                              0x63, 'd',  'i',  'r',  0x63, 'o',  'u',  't'};
  proto_gate_event_t e;
  assert_int_equal(proto_gate_decode_cbor(b, sizeof(b), NOW, OLDEST, &e, err, sizeof(err)), 0);
  assert_string_equal(e.gate, "g1");
  assert_int_equal(e.no, 300);
  assert_int_equal(e.t, 1764100000);
  assert_false(e.in);
  /* cut short anywhere: refused, never read past the end */
  for (size_t n = 0; n < sizeof(b); n++)
    assert_int_equal(proto_gate_decode_cbor(b, n, NOW, OLDEST, &e, err, sizeof(err)), -EBADMSG);
  /* a map claiming 2^32 pairs */
  static const uint8_t huge[] = {0xba, 0xff, 0xff, 0xff, 0xff};
  assert_int_equal(proto_gate_decode_cbor(huge, sizeof(huge), NOW, OLDEST, &e, err, sizeof(err)),
                   -EBADMSG);
}

static void gate_encoders_round_trip(void **state) {
  (void)state;
  proto_gate_event_t e, back;
  memset(&e, 0, sizeof(e)); /* padding too: the events are compared as bytes */
  strcpy(e.gate, "gate-01");
  e.no = 9007199254740991LL;
  e.t = 1764099000;
  strcpy(e.code, "230102Z0001");
  e.in = true;
  char text[256];
  uint8_t bin[256];
  int n = proto_gate_encode_json(&e, text, sizeof(text));
  assert_true(n > 0);
  assert_int_equal(proto_gate_decode_json((const uint8_t *)text, (size_t)n, NOW, OLDEST, &back, err,
                                          sizeof(err)),
                   0);
  assert_memory_equal(&e, &back, sizeof(e));
  n = proto_gate_encode_cbor(&e, bin, sizeof(bin));
  assert_true(n > 0);
  assert_int_equal(proto_gate_decode_cbor(bin, (size_t)n, NOW, OLDEST, &back, err, sizeof(err)), 0);
  assert_memory_equal(&e, &back, sizeof(e));
  assert_int_equal(proto_gate_encode_cbor(&e, bin, 10), -ENOSPC);
}

static void new_quantities_convert_to_hours_and_per_metre(void **state) {
  (void)state;
  double v = 90;
  assert_int_equal(proto_unit_to_canonical(PROTO_Q_ENGINE_H, "min", 3, &v), 0);
  assert_true(v == 1.5);
  v = 0.7;
  assert_int_equal(proto_unit_to_canonical(PROTO_Q_OPACITY, "m-1", 3, &v), 0);
  assert_true(v == 0.7);
  assert_int_equal(proto_quantity_from_name("engine_h"), PROTO_Q_ENGINE_H);
  assert_string_equal(proto_quantity_unit(PROTO_Q_OPACITY), "1/m");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(csv_reads_every_column_in_any_order),
      cmocka_unit_test(csv_names_every_bad_line),
      cmocka_unit_test(csv_reports_each_bad_line_as_a_code_with_values),
      cmocka_unit_test(csv_without_the_required_columns_is_refused),
      cmocka_unit_test(gate_json_decodes_the_example),
      cmocka_unit_test(gate_json_refuses_with_the_field_named),
      cmocka_unit_test(gate_cbor_decodes_bytes_written_by_hand),
      cmocka_unit_test(gate_encoders_round_trip),
      cmocka_unit_test(new_quantities_convert_to_hours_and_per_metre),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
