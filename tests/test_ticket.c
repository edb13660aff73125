/* Weighing-ticket codec (protocol/ticket.c): the DESIGN.md example in both
 * formats, UTF-8 plates, what each kind of ticket needs, every refusal with
 * the field it names, the net-weight check against a scale's resolution,
 * and round trips through both encoders.
 *
 * CBOR inputs are assembled byte by byte (RFC 8949), not with libcbor, so
 * the decoder is checked against the standard and not against itself. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "protocol/protocol.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NOW 1764100000.0
static const proto_ticket_limits_t lim = {NOW, NOW - 366 * 86400.0, false};
static const proto_ticket_limits_t manual = {NOW, NOW - 366 * 86400.0, true};
static proto_ticket_t tk;
static char err[512];

#define EXAMPLE                                                                                    \
  "{\"scale\":\"wb-01\",\"no\":1042,\"t\":1764100000,\"plate\":\"黑A12345\",\"dir\":\"out\","     \
  "\"gross_kg\":31800,\"tare_kg\":14200,\"net_kg\":17600,\"category\":\"engineering\","            \
  "\"kind\":\"concrete\",\"dest\":\"recycling\",\"dest_name\":\"哈尔滨再生资源厂\"}"

static int json_with(const proto_ticket_limits_t *l, const char *text) {
  strcpy(err, "untouched");
  return proto_ticket_decode_json((const uint8_t *)text, strlen(text), l, &tk, err, sizeof(err));
}

static void json_ok(const char *text) {
  int rc = json_with(&lim, text);
  if (rc != 0)
    print_error("rejected: %s\n--- input ---\n%s\n", err, text);
  assert_int_equal(rc, 0);
}

static void bad_with(const proto_ticket_limits_t *l, const char *text, const char *frag) {
  int rc = json_with(l, text);
  if (rc != -EBADMSG || strstr(err, frag) == NULL)
    print_error("rc %d, \"%s\", want \"%s\"\n--- input ---\n%s\n", rc, err, frag, text);
  assert_int_equal(rc, -EBADMSG);
  assert_non_null(strstr(err, frag));
  assert_null(strchr(err, '\n'));
}
static void json_bad(const char *text, const char *frag) { bad_with(&lim, text, frag); }

/* The example with one field replaced ("key":value) or removed (value NULL). */
static const char *example_with(const char *key, const char *value) {
  static char buf[1024];
  char pat[64];
  snprintf(pat, sizeof(pat), "\"%s\":", key);
  const char *at = strstr(EXAMPLE, pat);
  if (!at) { /* a new field goes in front */
    snprintf(buf, sizeof(buf), "{\"%s\":%s,%s", key, value, EXAMPLE + 1);
    return buf;
  }
  const char *end = at + strlen(pat);
  if (*end == '"')
    end = strchr(end + 1, '"') + 1;
  else
    end += strcspn(end, ",}");
  size_t pre = (size_t)(at - EXAMPLE);
  if (value)
    snprintf(buf, sizeof(buf), "%.*s\"%s\":%s%s", (int)pre, EXAMPLE, key, value, end);
  else if (*end == ',')
    snprintf(buf, sizeof(buf), "%.*s%s", (int)pre, EXAMPLE, end + 1);
  else
    snprintf(buf, sizeof(buf), "%.*s%s", (int)pre - 1, EXAMPLE, end);
  return buf;
}

/* ---- a CBOR writer for inputs: heads per RFC 8949 section 3 */
struct cb {
  uint8_t b[4096];
  size_t n;
};
static void cb_byte(struct cb *c, uint8_t v) {
  assert_true(c->n < sizeof(c->b));
  c->b[c->n++] = v;
}
static void cb_bytes(struct cb *c, const char *hex) {
  unsigned v;
  for (; *hex; hex++) {
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
static void cb_text(struct cb *c, const char *s) {
  cb_head(c, 3, strlen(s));
  for (; *s; s++)
    cb_byte(c, (uint8_t)*s);
}
static void cb_kv_text(struct cb *c, const char *k, const char *v) {
  cb_text(c, k);
  cb_text(c, v);
}
static void cb_kv_uint(struct cb *c, const char *k, uint64_t v) {
  cb_text(c, k);
  cb_head(c, 0, v);
}

/* The example as a CBOR map of `extra` + 12 pairs; callers add `extra`. */
static void cb_example(struct cb *c, unsigned extra) {
  c->n = 0;
  cb_head(c, 5, 12 + extra);
  cb_kv_text(c, "scale", "wb-01");
  cb_kv_uint(c, "no", 1042);
  cb_kv_uint(c, "t", 1764100000);
  cb_kv_text(c, "plate", "黑A12345");
  cb_kv_text(c, "dir", "out");
  cb_kv_uint(c, "gross_kg", 31800);
  cb_kv_uint(c, "tare_kg", 14200);
  cb_kv_uint(c, "net_kg", 17600);
  cb_kv_text(c, "category", "engineering");
  cb_kv_text(c, "kind", "concrete");
  cb_kv_text(c, "dest", "recycling");
  cb_kv_text(c, "dest_name", "哈尔滨再生资源厂");
}

static int cbor(const struct cb *c) {
  strcpy(err, "untouched");
  return proto_ticket_decode_cbor(c->b, c->n, &lim, &tk, err, sizeof(err));
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

static void check_example(const proto_ticket_t *t) {
  assert_string_equal(t->scale, "wb-01");
  assert_int_equal(t->no, 1042);
  assert_int_equal(t->t, 1764100000);
  assert_string_equal(t->plate, "黑A12345");
  assert_false(t->dir_in);
  assert_int_equal(t->type, PROTO_TICKET_WASTE);
  assert_int_equal(t->gross_kg, 31800);
  assert_int_equal(t->tare_kg, 14200);
  assert_int_equal(t->net_kg, 17600);
  assert_int_equal(t->category, PROTO_CAT_ENGINEERING);
  assert_int_equal(t->kind, PROTO_KIND_CONCRETE);
  assert_int_equal(t->dest, PROTO_DEST_RECYCLING);
  assert_string_equal(t->dest_name, "哈尔滨再生资源厂");
  assert_string_equal(t->carrier, "");
  assert_string_equal(t->material, "");
}

/* ---- accepted */
static void decode_json_reads_the_design_example(void **state) {
  (void)state;
  json_ok(EXAMPLE);
  check_example(&tk);
}

static void decode_cbor_reads_the_design_example(void **state) {
  (void)state;
  struct cb c;
  cb_example(&c, 0);
  cbor_ok(&c);
  check_example(&tk);
}

static void decode_cbor_takes_indefinite_maps_and_the_self_described_tag(void **state) {
  (void)state;
  struct cb c;
  cb_example(&c, 0);
  c.b[0] = 0xbf; /* the same pairs in an indefinite-length map */
  cb_byte(&c, 0xff);
  cbor_ok(&c);
  check_example(&tk);
  struct cb d = {.n = 0};
  cb_bytes(&d, "d9 d9f7"); /* tag 55799 */
  memcpy(d.b + d.n, c.b, c.n);
  d.n += c.n;
  cbor_ok(&d);
  check_example(&tk);
}

static void decode_accepts_whole_kilograms_written_as_reals(void **state) {
  (void)state;
  json_ok(example_with("net_kg", "17600.0"));
  assert_int_equal(tk.net_kg, 17600);
  struct cb c;
  cb_example(&c, 1);
  cb_text(&c, "carrier");
  cb_text(&c, "龙江运输");
  cbor_ok(&c);
  assert_string_equal(tk.carrier, "龙江运输");
  /* a platform scale's ticket with net_kg as a half float: 2048.0 is f9 6800 */
  c.n = 0;
  cb_head(&c, 5, 9);
  cb_kv_text(&c, "scale", "ps-01");
  cb_kv_uint(&c, "no", 3);
  cb_kv_uint(&c, "t", 1764099000);
  cb_kv_text(&c, "dir", "out");
  cb_kv_uint(&c, "gross_kg", 2048);
  cb_kv_uint(&c, "tare_kg", 0);
  cb_text(&c, "net_kg");
  cb_bytes(&c, "f9 6800");
  cb_kv_text(&c, "category", "mud");
  cb_kv_text(&c, "dest", "disposal");
  cbor_ok(&c);
  assert_int_equal(tk.net_kg, 2048);
}

static void decode_reads_a_delivery_with_its_green_certificate(void **state) {
  (void)state;
  json_ok("{\"scale\":\"wb-01\",\"no\":1043,\"t\":1764100100,\"plate\":\"黑A54321\",\"dir\":\"in\","
          "\"gross_kg\":42100,\"tare_kg\":15000,\"net_kg\":27100,\"material\":\"rebar\","
          "\"green_cert\":true}");
  assert_true(tk.dir_in);
  assert_int_equal(tk.type, PROTO_TICKET_DELIVERY);
  assert_string_equal(tk.material, "rebar");
  assert_true(tk.green_cert);
  assert_int_equal(tk.category, -1);
  assert_int_equal(tk.dest, -1);
}

static void decode_reads_a_return_to_the_supplier(void **state) {
  (void)state;
  const char *ret = "{\"scale\":\"wb-01\",\"no\":1044,\"dir\":\"out\",\"gross_kg\":16000,"
                    "\"tare_kg\":14000,\"net_kg\":2000,\"material\":\"blocks\"}";
  json_bad(ret, "field \"t\" is required"); /* a scale's resend must compare equal */
  assert_int_equal(json_with(&manual, ret), 0);
  assert_int_equal(tk.type, PROTO_TICKET_RETURN);
  assert_int_equal(tk.t, (int64_t)NOW); /* a person's entry: time of entry */
}

static void decode_lets_spoil_and_mud_go_without_a_kind(void **state) {
  (void)state;
  json_ok("{\"scale\":\"wb-01\",\"no\":5,\"t\":1764090000,\"dir\":\"out\",\"gross_kg\":38000,"
          "\"tare_kg\":"
          "15000,\"net_kg\":23000,\"category\":\"spoil\",\"dest\":\"backfill\"}");
  assert_int_equal(tk.category, PROTO_CAT_SPOIL);
  assert_int_equal(tk.kind, -1);
}

static void manual_entries_may_omit_scale_number_and_weights_and_carry_a_note(void **state) {
  (void)state;
  int rc =
      json_with(&manual, "{\"dir\":\"out\",\"net_kg\":8200,\"category\":\"decoration\","
                         "\"kind\":\"gypsum\",\"dest\":\"disposal\",\"note\":\"纸质磅单 0087\"}");
  if (rc)
    print_error("%s\n", err);
  assert_int_equal(rc, 0);
  assert_string_equal(tk.scale, "");
  assert_int_equal(tk.no, 0);
  assert_int_equal(tk.gross_kg, -1);
  assert_string_equal(tk.note, "纸质磅单 0087");
  bad_with(&manual,
           "{\"scale\":\"wb-01\",\"dir\":\"out\",\"net_kg\":8200,\"category\":\"spoil\","
           "\"dest\":\"backfill\"}",
           "\"scale\" and \"no\" go together");
  json_bad(example_with("note", "\"hi\""), "field \"note\" is for entries made by a person");
}

/* ---- refused, each naming its field */
static void decode_refuses_unknown_and_repeated_fields(void **state) {
  (void)state;
  json_bad(example_with("dest_nam", "\"x\""), "unknown field \"dest_nam\"");
  json_bad("{\"no\":1,\"no\":2}", "duplicate");
  struct cb c;
  cb_example(&c, 1);
  cb_kv_uint(&c, "no", 1043);
  cbor_bad(&c, "field \"no\" appears twice");
}

static void decode_refuses_missing_fields_of_a_scale_ticket(void **state) {
  (void)state;
  json_bad(example_with("scale", NULL), "field \"scale\" is required");
  json_bad(example_with("no", NULL), "field \"no\" is required");
  json_bad(example_with("tare_kg", NULL), "field \"tare_kg\" is required");
  json_bad(example_with("dest", NULL), "field \"dest\" is required for waste");
  json_bad(example_with("category", NULL), "needs \"category\" (waste) or \"material\"");
  const char *no_kind = example_with("kind", NULL);
  json_bad(no_kind, "field \"kind\" is required for engineering waste");
}

static void decode_refuses_fractional_or_implausible_weights(void **state) {
  (void)state;
  json_bad(example_with("net_kg", "17600.5"), "must be a whole number of kilograms");
  json_bad(example_with("net_kg", "0"), "out of range 1..100000 kg");
  json_bad(example_with("net_kg", "170000"),
           "out of range 1..100000 kg"); /* a 170 t truck is a typo */
  json_bad(example_with("gross_kg", "250000"), "out of range 0..100000 kg");
  json_bad(example_with("tare_kg", "-5"), "out of range");
  json_bad(example_with("tare_kg", "40000"), "tare_kg 40000 is more than gross_kg 31800");
  json_bad(example_with("net_kg", "\"17600\""), "field \"net_kg\" must be a whole number, not a "
                                                "string");
  json_bad(example_with("net_kg", "1e300"), "out of range");
}

static void
decode_refuses_unknown_categories_kinds_and_destinations_listing_the_known(void **state) {
  (void)state;
  json_bad(example_with("category", "\"rubbish\""),
           "field \"category\": \"rubbish\" is not one of spoil, mud, engineering, demolition, "
           "decoration");
  json_bad(example_with("kind", "\"bricks\""), "\"bricks\" is not one of concrete, mortar, "
                                               "brick_tile");
  json_bad(example_with("dest", "\"landfill\""),
           "is not one of reuse_onsite, recycling, backfill, disposal");
  json_bad(example_with("dir", "\"up\""), "\"up\" is not \"in\" (a delivery) or \"out\"");
}

static void decode_refuses_fields_that_do_not_fit_the_kind_of_ticket(void **state) {
  (void)state;
  json_bad(example_with("dir", "\"in\""), "dir \"in\" is a material delivery and needs");
  json_bad(example_with("material", "\"rebar\""), "not both");
  json_bad(example_with("green_cert", "true"), "field \"green_cert\" is for deliveries");
  json_bad("{\"scale\":\"wb-01\",\"no\":1,\"t\":1764090000,\"dir\":\"in\",\"gross_kg\":3,\"tare_"
           "kg\":1,\"net_kg\":"
           "2,\"material\":\"rebar\",\"dest\":\"recycling\"}",
           "field \"dest\" is for waste leaving the site, not for a delivery");
  json_bad(example_with("material", "\"Rebar!\""), "must be 1 to 31 of a-z 0-9 _");
}

static void decode_refuses_bad_times(void **state) {
  (void)state;
  json_bad(example_with("t", "1764103600"), "3600 s in the future");
  json_bad(example_with("t", "1000"), "must be absolute Unix seconds");
  json_bad(example_with("t", "1700000000"), "the oldest weighing accepted");
  json_bad(example_with("t", "\"today\""), "field \"t\" must be Unix seconds, not a string");
}

static void decode_refuses_bad_text(void **state) {
  (void)state;
  json_bad(example_with("plate", "\"黑A\\n12345\""), "field \"plate\": \"黑A\\x0a12345\" holds a "
                                                     "control character");
  json_bad(example_with("plate", "\"黑A\\u000012345\""), "holds a control character");
  json_bad(example_with("plate", "\"黑A123456789012345\""), "longer than 16 characters");
  json_bad(example_with("scale", "\"wb 01\""), "must be 1 to 47 of A-Z a-z 0-9 . _ -");
  json_bad(example_with("plate", "12345"), "field \"plate\" must be a string, not a number");
  json_bad(example_with("plate", "null"), "not null");
  json_bad(example_with("plate", "[1]"), "not an array");
  /* 64 Chinese characters fit; 65 do not */
  char name[1024] = "\"", *p = name + 1;
  for (int i = 0; i < 65; i++)
    p += sprintf(p, "垃");
  strcpy(p, "\"");
  json_bad(example_with("dest_name", name), "longer than 64 characters");
  p -= strlen("垃");
  strcpy(p, "\"");
  json_ok(example_with("dest_name", name));
  assert_int_equal(strlen(tk.dest_name), 64 * 3);
}

static void decode_refuses_what_is_not_one_object(void **state) {
  (void)state;
  json_bad("", "no data");
  json_bad("[1,2]", "a ticket is a JSON object, not an array");
  json_bad("{\"scale\":", "invalid JSON at line 1");
  json_bad("{}", "is required");
  struct cb c = {.n = 0};
  cb_bytes(&c, "82 01 02");
  cbor_bad(&c, "a ticket is a CBOR map, not an array");
  c.n = 0;
  cb_bytes(&c, "a0");
  cbor_bad(&c, "field \"scale\" is required");
}

static void decode_cbor_refuses_malformed_input(void **state) {
  (void)state;
  struct cb c;
  cb_example(&c, 0);
  c.n -= 3;
  cbor_bad(&c, "truncated CBOR");
  cb_example(&c, 0);
  cb_byte(&c, 0x00);
  cbor_bad(&c, "trailing data after the ticket");
  cb_example(&c, 1);
  cb_text(&c, "plate2");
  cb_bytes(&c, "62 c3 28"); /* "\xc3(" is not UTF-8 */
  cbor_bad(&c, "field \"plate2\" is not valid UTF-8");
  cb_example(&c, 1);
  cb_bytes(&c, "62 ff fe 01"); /* a key that is not UTF-8 */
  cbor_bad(&c, "not UTF-8");
  cb_example(&c, 1);
  cb_text(&c, "carrier");
  cb_bytes(&c, "7f 61 61 ff"); /* indefinite-length text */
  cbor_bad(&c, "indefinite-length text strings are not accepted");
  cb_example(&c, 1);
  cb_kv_text(&c, "carrier", "x");
  c.b[0] = 0xbf;
  cbor_bad(&c, "truncated CBOR"); /* no break */
  cb_example(&c, 1);
  cb_bytes(&c, "01 02");
  cbor_bad(&c, "field names are text strings, not a number");
  cb_example(&c, 1);
  cb_text(&c, "carrier");
  cb_bytes(&c, "a1 01 02");
  cbor_bad(&c, "field \"carrier\" must be a string, not a map");
  cb_example(&c, 1);
  cb_text(&c, "no");
  cb_bytes(&c, "1b ffffffffffffffff");
  cbor_bad(&c, "field \"no\" appears twice");
  c.n = 0;
  cb_bytes(&c, "a1 62 6e6f 1b ffffffffffffffff");
  cbor_bad(&c, "field \"no\" is out of range 1..9007199254740991");
  c.n = 0;
  cb_bytes(&c, "a1 7b ffffffffffffffff 61"); /* a key claiming 2^64-1 bytes */
  cbor_bad(&c, "truncated CBOR");
  c.n = 0;
  cb_bytes(&c, "bb ffffffffffffffff"); /* a map claiming 2^64-1 pairs */
  cbor_bad(&c, "truncated CBOR");
  c.n = 0;
  cb_bytes(&c, "fc");
  cbor_bad(&c, "malformed CBOR at byte 0");
}

/* ---- the net weight */
static void check_net_allows_the_scale_resolution_and_no_more(void **state) {
  (void)state;
  json_ok(example_with("net_kg", "17620"));
  assert_int_equal(proto_ticket_check_net(&tk, 20, err, sizeof(err)), 0);
  json_ok(example_with("net_kg", "17580"));
  assert_int_equal(proto_ticket_check_net(&tk, 20, err, sizeof(err)), 0);
  json_ok(example_with("net_kg", "17650"));
  assert_int_equal(proto_ticket_check_net(&tk, 20, err, sizeof(err)), -EBADMSG);
  assert_non_null(strstr(err, "net_kg 17650 is not gross_kg - tare_kg = 17600 within the scale's "
                              "resolution of 20 kg"));
  assert_int_equal(proto_ticket_check_net(&tk, 50, err, sizeof(err)), 0);
}

/* ---- encoders */
static void encoders_round_trip_every_kind_of_ticket(void **state) {
  (void)state;
  static const char *const inputs[] = {
      EXAMPLE,
      "{\"scale\":\"wb-01\",\"no\":7,\"t\":1764000000,\"dir\":\"in\",\"gross_kg\":42100,"
      "\"tare_kg\":15000,\"net_kg\":27100,\"material\":\"ready_mix\",\"green_cert\":true,"
      "\"carrier\":\"商砼 \\\"A\\\" 站\"}",
      "{\"scale\":\"wb-02\",\"no\":9007199254740991,\"t\":1764099999,\"dir\":\"out\",\"gross_kg\":"
      "16000,"
      "\"tare_kg\":14000,\"net_kg\":2000,\"material\":\"blocks\",\"dest_name\":\"供应商\"}",
  };
  char text[2048];
  uint8_t bin[2048];
  for (size_t i = 0; i < sizeof(inputs) / sizeof(inputs[0]); i++) {
    json_ok(inputs[i]);
    proto_ticket_t first = tk;
    int n = proto_ticket_encode_json(&first, text, sizeof(text));
    assert_true(n > 0);
    assert_int_equal(strlen(text), (size_t)n);
    json_ok(text);
    assert_memory_equal(&tk, &first, sizeof(tk));
    n = proto_ticket_encode_cbor(&first, bin, sizeof(bin));
    assert_true(n > 0);
    assert_int_equal(proto_ticket_decode_cbor(bin, (size_t)n, &lim, &tk, err, sizeof(err)), 0);
    assert_memory_equal(&tk, &first, sizeof(tk));
    assert_int_equal(proto_ticket_encode_json(&first, text, 20), -ENOSPC);
    assert_int_equal(proto_ticket_encode_cbor(&first, bin, 20), -ENOSPC);
  }
}

static void messages_fit_small_buffers(void **state) {
  (void)state;
  char small[8];
  const char *bad = example_with("kind", "\"bricks\"");
  assert_int_equal(
      proto_ticket_decode_json((const uint8_t *)bad, strlen(bad), &lim, &tk, small, sizeof(small)),
      -EBADMSG);
  assert_true(strlen(small) < sizeof(small));
}

static void names_come_from_the_maps(void **state) {
  (void)state;
  assert_string_equal(proto_waste_category_name(PROTO_CAT_MUD), "mud");
  assert_int_equal(proto_waste_kind_from_name("brick_tile"), PROTO_KIND_BRICK_TILE);
  assert_int_equal(proto_waste_dest_from_name("reuse_onsite"), PROTO_DEST_REUSE_ONSITE);
  assert_int_equal(proto_waste_dest_from_name("reuse"), -1);
  assert_null(proto_waste_kind_name(PROTO_KIND_COUNT));
  assert_true(proto_waste_category_excluded(PROTO_CAT_SPOIL));
  assert_false(proto_waste_category_excluded(PROTO_CAT_DEMOLITION));
  assert_false(proto_waste_dest_leaves_site(PROTO_DEST_REUSE_ONSITE));
  assert_true(proto_waste_dest_leaves_site(PROTO_DEST_BACKFILL));
  assert_string_equal(proto_ticket_type_name(PROTO_TICKET_RETURN), "return");
}

/* Beside the English, the refusal's code and values for the catalogue. */
static void a_refusal_names_its_code_and_values(void **state) {
  (void)state;
  assert_int_equal(
      json_with(&lim, "{\"scale\":\"s1\",\"no\":1,\"t\":1760000000,\"dir\":\"out\","
                      "\"gross_kg\":1000,\"tare_kg\":2000,\"net_kg\":500,"
                      "\"category\":\"decoration\",\"kind\":\"mixed\",\"dest\":\"disposal\"}"),
      -EBADMSG);
  const proto_why_t *w = proto_why();
  assert_int_equal(w->code, PROTO_WHY_TICKET_TARE_GROSS);
  assert_int_equal(w->nargs, 2);
  assert_string_equal(w->args[0], "2000");
  assert_string_equal(w->args[1], "1000");
  assert_int_equal(json_with(&lim, "{\"dir\":7}"), -EBADMSG);
  assert_int_equal(proto_why()->code, PROTO_WHY_TICKET_TYPE_DIR);
  assert_string_equal(proto_why()->args[0], "dir");
  proto_ticket_t t = {.gross_kg = 3000, .tare_kg = 1000, .net_kg = 1500};
  char e[200];
  assert_int_equal(proto_ticket_check_net(&t, 20, e, sizeof(e)), -EBADMSG);
  assert_int_equal(proto_why()->code, PROTO_WHY_TICKET_NET);
  assert_string_equal(proto_why()->args[1], "2000");
  t.net_kg = 2000;
  assert_int_equal(proto_ticket_check_net(&t, 20, e, sizeof(e)), 0);
  assert_int_equal(proto_why()->code, PROTO_WHY_NONE);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(decode_json_reads_the_design_example),
      cmocka_unit_test(a_refusal_names_its_code_and_values),
      cmocka_unit_test(decode_cbor_reads_the_design_example),
      cmocka_unit_test(decode_cbor_takes_indefinite_maps_and_the_self_described_tag),
      cmocka_unit_test(decode_accepts_whole_kilograms_written_as_reals),
      cmocka_unit_test(decode_reads_a_delivery_with_its_green_certificate),
      cmocka_unit_test(decode_reads_a_return_to_the_supplier),
      cmocka_unit_test(decode_lets_spoil_and_mud_go_without_a_kind),
      cmocka_unit_test(manual_entries_may_omit_scale_number_and_weights_and_carry_a_note),
      cmocka_unit_test(decode_refuses_unknown_and_repeated_fields),
      cmocka_unit_test(decode_refuses_missing_fields_of_a_scale_ticket),
      cmocka_unit_test(decode_refuses_fractional_or_implausible_weights),
      cmocka_unit_test(decode_refuses_unknown_categories_kinds_and_destinations_listing_the_known),
      cmocka_unit_test(decode_refuses_fields_that_do_not_fit_the_kind_of_ticket),
      cmocka_unit_test(decode_refuses_bad_times),
      cmocka_unit_test(decode_refuses_bad_text),
      cmocka_unit_test(decode_refuses_what_is_not_one_object),
      cmocka_unit_test(decode_cbor_refuses_malformed_input),
      cmocka_unit_test(check_net_allows_the_scale_resolution_and_no_more),
      cmocka_unit_test(encoders_round_trip_every_kind_of_ticket),
      cmocka_unit_test(messages_fit_small_buffers),
      cmocka_unit_test(names_come_from_the_maps),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
