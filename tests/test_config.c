/* Site configuration (common/config.c): defaults, every kind of error with
 * its file:line, device lookup, loading from disk and the dump. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "common/common.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define NAME "site.conf"

/* Parses `text`, which must be accepted. */
static sg_config_t *parse_ok(const char *text) {
  char err[512] = "untouched";
  sg_config_t *cfg = (sg_config_t *)1;
  int rc = sg_config_parse(text, NAME, &cfg, err, sizeof(err));
  if (rc != 0)
    print_error("rejected: %s\n--- input ---\n%s\n---\n", err, text);
  assert_int_equal(rc, 0);
  assert_non_null(cfg);
  assert_string_equal(err, "");
  return cfg;
}

/* Parses `text`, which must be rejected with "site.conf:LINE: " followed by a
 * message holding every one of the NULL-terminated fragments. */
static void check_error(const char *text, int line, ...) {
  char err[512] = "untouched";
  sg_config_t *cfg = (sg_config_t *)1;
  int rc = sg_config_parse(text, NAME, &cfg, err, sizeof(err));
  if (rc == 0)
    sg_config_free(cfg);
  if (rc != -EINVAL)
    print_error("accepted or wrong code %d\n--- input ---\n%s\n---\n", rc, text);
  assert_int_equal(rc, -EINVAL);
  assert_null(cfg);

  char prefix[64];
  snprintf(prefix, sizeof(prefix), NAME ":%d: ", line);
  if (strncmp(err, prefix, strlen(prefix)) != 0)
    print_error("want prefix \"%s\", got \"%s\"\n", prefix, err);
  assert_true(strncmp(err, prefix, strlen(prefix)) == 0);

  va_list ap;
  va_start(ap, line);
  for (const char *frag; (frag = va_arg(ap, const char *)) != NULL;) {
    if (!strstr(err + strlen(prefix), frag))
      print_error("\"%s\" does not mention \"%s\"\n", err, frag);
    assert_non_null(strstr(err + strlen(prefix), frag));
  }
  va_end(ap);
}

/* ---- defaults and values */

static void config_fills_every_default_when_keys_are_absent(void **state) {
  (void)state;
  sg_config_t *c = parse_ok("[site]\n"
                            "id = S1\n"
                            "[device d1]\n"
                            "type = dust\n");
  assert_string_equal(c->path, NAME);
  assert_string_equal(c->site_id, "S1");
  assert_string_equal(c->site_name, "");
  assert_string_equal(c->timezone, "Asia/Shanghai");
  assert_true(c->area_cast_m2 == 0 && c->area_prefab_m2 == 0 && c->progress == 0);
  assert_true(isnan(c->latitude) && isnan(c->longitude)); /* not known */
  assert_string_equal(c->db_path, "/var/lib/sitegate/sitegate.db");
  assert_int_equal(c->raw_days, 31);
  assert_int_equal(c->batch_ms, 5000);
  assert_int_equal(c->batch_readings, 16384);
  assert_string_equal(c->coap_listen, "0.0.0.0");
  assert_int_equal(c->coap_port, 5683);
  assert_int_equal(c->dtls_port, 5684);
  assert_string_equal(c->http_listen, "127.0.0.1:8080");
  assert_string_equal(c->http_token, "");
  assert_int_equal(c->n_devices, 1);
  const sg_device_t *d = &c->devices[0];
  assert_string_equal(d->id, "d1");
  assert_int_equal(d->type, SG_DEV_DUST);
  assert_string_equal(d->psk, "");
  assert_int_equal(d->interval_s, 60);
  assert_string_equal(d->group, "");
  assert_int_equal(d->line, 3);
  sg_config_free(c);
}

static void config_reads_every_key_it_is_given(void **state) {
  (void)state;
  sg_config_t *c = parse_ok("[site]\n"
                            "id = MN-4401.a_b\n"
                            "name = Tower 3\n"
                            "timezone = Europe/Berlin\n"
                            "area_cast_in_place_m2 = 12000.5\n"
                            "area_prefab_m2 = 800\n"
                            "progress = 0.25\n"
                            "[storage]\n"
                            "path = /tmp/x.db\n"
                            "raw_days = 7\n"
                            "batch_ms = 1000\n"
                            "batch_readings = 4096\n"
                            "queue_max = 5000\n"
                            "[coap]\n"
                            "listen = ::\n"
                            "port = 1\n"
                            "dtls_port = 0\n"
                            "max_body = 256\n"
                            "[http]\n"
                            "listen = 0.0.0.0:80\n"
                            "token = tok\n"
                            "[device crane-1]\n"
                            "type = equipment\n"
                            "psk = 0123456789abcdef\n"
                            "interval_s = 86400\n"
                            "group = cranes\n"
                            "kind = tower_crane\n"
                            "rated_kw = 75.5\n"
                            "priority = 1000\n"
                            "coap = coap://10.0.0.9/relay\n"
                            "[group cranes]\n");
  assert_string_equal(c->site_id, "MN-4401.a_b");
  assert_string_equal(c->site_name, "Tower 3");
  assert_string_equal(c->timezone, "Europe/Berlin");
  assert_true(c->area_cast_m2 == 12000.5);
  assert_true(c->area_prefab_m2 == 800);
  assert_true(c->progress == 0.25);
  assert_string_equal(c->db_path, "/tmp/x.db");
  assert_int_equal(c->raw_days, 7);
  assert_int_equal(c->batch_ms, 1000);
  assert_int_equal(c->batch_readings, 4096);
  assert_int_equal(c->queue_max, 5000);
  assert_string_equal(c->coap_listen, "::");
  assert_int_equal(c->coap_port, 1);
  assert_int_equal(c->dtls_port, 0);
  assert_int_equal(c->max_body, 256);
  assert_string_equal(c->http_listen, "0.0.0.0:80");
  assert_string_equal(c->http_token, "tok");
  assert_int_equal(c->n_devices, 1);
  const sg_device_t *d = &c->devices[0];
  assert_string_equal(d->id, "crane-1");
  assert_int_equal(d->type, SG_DEV_EQUIPMENT);
  assert_string_equal(d->psk, "0123456789abcdef");
  assert_int_equal(d->interval_s, 86400);
  assert_string_equal(d->group, "cranes");
  assert_string_equal(d->kind, "tower_crane");
  assert_true(d->rated_kw == 75.5);
  assert_int_equal(d->priority, 1000);
  assert_string_equal(d->coap, "coap://10.0.0.9/relay");
  assert_int_equal(d->line, 22);
  sg_config_free(c);
}

static void config_reads_every_device_type_by_name(void **state) {
  (void)state;
  static const struct {
    const char *name;
    sg_devtype_t type;
  } types[] = {{"dust", SG_DEV_DUST},           {"noise", SG_DEV_NOISE},
               {"weather", SG_DEV_WEATHER},     {"energy", SG_DEV_ENERGY},
               {"equipment", SG_DEV_EQUIPMENT}, {"scale", SG_DEV_SCALE}};
  for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
    char text[256];
    snprintf(text, sizeof(text), "[site]\nid = S\n[device x]\ntype = %s\n%s", types[i].name,
             types[i].type == SG_DEV_EQUIPMENT ? "group = g\n[group g]\n" : "");
    sg_config_t *c = parse_ok(text);
    assert_int_equal(c->devices[0].type, types[i].type);
    assert_string_equal(sg_devtype_name(types[i].type), types[i].name);
    sg_config_free(c);
  }
  assert_string_equal(sg_devtype_name((sg_devtype_t)99), "?");
}

static void config_keeps_utf8_site_name_intact(void **state) {
  (void)state;
  const char *name = "\xe5\x8c\x97\xe4\xba\xac\xe6\x9c\x9d\xe9\x98\xb3 \xe5\xb7\xa5\xe5\x9c\xb0 "
                     "\xe2\x84\x96"
                     "3 \xc3\xa9t\xc3\xa9";
  char text[256];
  snprintf(text, sizeof(text), "[site]\nid = S\nname = %s\n", name);
  sg_config_t *c = parse_ok(text);
  assert_string_equal(c->site_name, name);
  sg_config_free(c);
}

static void config_accepts_a_utf8_byte_order_mark_and_crlf_lines(void **state) {
  (void)state;
  sg_config_t *c = parse_ok("\xef\xbb\xbf[site]\r\nid = S\r\n\r\n[storage]\r\nraw_days = 9\r\n");
  assert_string_equal(c->site_id, "S");
  assert_int_equal(c->raw_days, 9);
  sg_config_free(c);
}

static void config_ignores_comments_and_blank_lines(void **state) {
  (void)state;
  sg_config_t *c = parse_ok("# sitegate\n"
                            "; a site\n"
                            "\n"
                            "   \n"
                            "[site]  ; the site\n"
                            "  # indented comment\n"
                            "id = S ; inline comment\n"
                            "\t; tab then comment\n"
                            "[coap]\n"
                            "port = 6000\n"
                            "#port = 1\n"
                            ";port = 2\n");
  assert_string_equal(c->site_id, "S");
  assert_int_equal(c->coap_port, 6000);
  sg_config_free(c);
  /* Comment and blank lines still count for line numbers. */
  check_error("# one\n"
              "\n"
              "; three\n"
              "[site]\n"
              "id = S\n"
              "  # six\n"
              "bogus = 1\n",
              7, "bogus", "[site]", NULL);
}

/* ---- errors, each at its line and naming what is wrong */

static void config_rejects_missing_site_id(void **state) {
  (void)state;
  /* No line carries the key, so the message points at the end of the file. */
  check_error("[site]\n"
              "name = x\n"
              "[coap]\n"
              "port = 5683\n",
              4, "[site] id", "required", NULL);
  check_error("[site]\nid =\n", 2, "[site] id", "required", NULL);
  check_error("", 0, "[site] id", "required", NULL);
}

/* Start-up refuses these, so the file check (and --check-config) does too. */
static void config_rejects_lan_http_listen_without_token_at_its_line(void **state) {
  (void)state;
  check_error("[site]\nid = S\n[http]\nlisten = 0.0.0.0:8080\n", 4, "[http] listen 0.0.0.0:8080",
              "not loopback", "token", NULL);
  check_error("[site]\nid = S\n[http]\nlisten = 8080\n", 4, "ADDRESS:PORT", NULL);
  check_error("[site]\nid = S\n[coap]\nlisten = any\n", 4, "[coap] listen", "\"any\"", NULL);
  sg_config_free(parse_ok("[site]\nid = S\n[http]\nlisten = 0.0.0.0:8080\ntoken = t0ken\n"));
  sg_config_free(parse_ok("[site]\nid = S\n[http]\nlisten = [::1]:8080\n"));
}

static void config_rejects_site_id_with_bad_characters_at_its_line(void **state) {
  (void)state;
  check_error("[site]\n"
              "id = MN 44\n"
              "name = x\n",
              2, "[site] id", "MN 44", NULL);
  check_error("[site]\nid = 012345678901234567890123456789012345678901234567\n", 2, "[site] id",
              NULL);
}

static void config_rejects_unknown_section_with_its_header_line(void **state) {
  (void)state;
  check_error("[site]\n"
              "id = S\n"
              "\n"
              "[stroage]\n"
              "path = /x\n",
              4, "unknown section", "[stroage]", NULL);
  /* Also when the section has no keys at all. */
  check_error("[site]\n"
              "id = S\n"
              "[uplnk]\n",
              3, "unknown section", "[uplnk]", NULL);
}

static void config_rejects_unknown_key_with_its_line(void **state) {
  (void)state;
  check_error("[site]\n"
              "id = S\n"
              "[coap]\n"
              "port = 5683\n"
              "prot = 5683\n",
              5, "unknown key", "\"prot\"", "[coap]", NULL);
  /* A device key in a global section is just as unknown. */
  check_error("[site]\nid = S\ntype = dust\n", 3, "unknown key", "\"type\"", "[site]", NULL);
  /* And a global key in a device. */
  check_error("[site]\nid = S\n[device d]\ntype = dust\nport = 1\n", 5, "unknown key", "\"port\"",
              "[device d]", NULL);
}

static void config_rejects_key_outside_any_section(void **state) {
  (void)state;
  check_error("id = S\n[site]\nid = S\n", 1, "[]", NULL);
}

static void config_rejects_value_out_of_range_with_its_line(void **state) {
  (void)state;
  check_error("[site]\nid = S\n[coap]\nport = 70000\n", 4, "[coap] port", "70000", "1..65535",
              NULL);
  check_error("[site]\nid = S\n[storage]\nraw_days = 0\n", 4, "[storage] raw_days", "out of range",
              NULL);
  check_error("[site]\nid = S\n[storage]\nbatch_ms = -5\n", 4, "[storage] batch_ms", "out of range",
              NULL);
  check_error("[site]\nid = S\nprogress = 1.5\n", 3, "[site] progress", "out of range", NULL);
  check_error("[site]\nid = S\n[device d]\ntype = dust\ninterval_s = 0\n", 5,
              "[device d] interval_s", "out of range", NULL);
  check_error("[site]\nid = S\n[coap]\nport = 99999999999999999999\n", 4, "[coap] port", NULL);
  /* The bounds themselves are allowed. */
  sg_config_t *c = parse_ok("[site]\nid = S\nprogress = 1\n[coap]\nport = 65535\n[storage]\n"
                            "raw_days = 3650\nbatch_ms = 1\n");
  assert_int_equal(c->coap_port, 65535);
  assert_int_equal(c->raw_days, 3650);
  assert_int_equal(c->batch_ms, 1);
  assert_true(c->progress == 1);
  sg_config_free(c);
}

/* WGS-84 decimal degrees, both or neither; empty is "not known". */
static void config_reads_site_coordinates_in_range_and_together(void **state) {
  (void)state;
  sg_config_t *c = parse_ok("[site]\nid = S\nlatitude = 45.8032\nlongitude = -126.535\n");
  assert_true(c->latitude == 45.8032 && c->longitude == -126.535);
  sg_config_free(c);
  c = parse_ok("[site]\nid = S\nlatitude =\nlongitude =\n");
  assert_true(isnan(c->latitude) && isnan(c->longitude));
  sg_config_free(c);
  check_error("[site]\nid = S\nlatitude = 90.5\nlongitude = 1\n", 3, "[site] latitude",
              "out of range", NULL);
  check_error("[site]\nid = S\nlatitude = 1\nlongitude = -181\n", 4, "[site] longitude",
              "out of range", NULL);
  check_error("[site]\nid = S\nlatitude = 45.8\n", 3, "latitude and longitude go together", NULL);
  check_error("[site]\nid = S\nlatitude =\nlongitude = 126.5\n", 4, "set both or neither", NULL);
  check_error("[site]\nid = S\nprogress =\n", 3, "[site] progress", "not a number", NULL);
}

static void config_rejects_value_that_is_not_a_number(void **state) {
  (void)state;
  check_error("[site]\nid = S\n[storage]\nraw_days = many\n", 4, "[storage] raw_days", "\"many\"",
              "not a whole number", NULL);
  check_error("[site]\nid = S\n[storage]\nraw_days =\n", 4, "[storage] raw_days",
              "not a whole number", NULL);
  check_error("[site]\nid = S\n[storage]\nraw_days = 1.5\n", 4, "[storage] raw_days",
              "not a whole number", NULL);
  check_error("[site]\nid = S\nprogress = half\n", 3, "[site] progress", "not a number", NULL);
  check_error("[site]\nid = S\nprogress = nan\n", 3, "[site] progress", "not a number", NULL);
  check_error("[site]\nid = S\narea_prefab_m2 = inf\n", 3, "[site] area_prefab_m2", "not a number",
              NULL);
}

static void config_rejects_trailing_junk_after_a_number(void **state) {
  (void)state;
  check_error("[site]\nid = S\n[storage]\nbatch_ms = 50ms\n", 4, "[storage] batch_ms", "\"50ms\"",
              NULL);
  check_error("[site]\nid = S\n[coap]\nport = 0x10\n", 4, "[coap] port", NULL);
  check_error("[site]\nid = S\narea_prefab_m2 = 10m2\n", 3, "[site] area_prefab_m2", "\"10m2\"",
              NULL);
  check_error("[site]\nid = S\n[device d]\ntype = dust\ninterval_s = 60 s\n", 5,
              "[device d] interval_s", NULL);
}

static void config_rejects_a_line_that_is_not_key_value(void **state) {
  (void)state;
  check_error("[site]\n"
              "id = S\n"
              "port 5683\n",
              3, "not a key = value line", NULL);
  check_error("[site]\n"
              "id = S\n"
              "[coap\n"
              "port = 5683\n",
              3, "not a key = value line", NULL);
}

static void config_rejects_text_after_a_section_header(void **state) {
  (void)state;
  /* inih would drop "port = 1" silently. */
  check_error("[site]\nid = S\n[coap] port = 1\n", 3, "[coap]", NULL);
}

static void config_reports_the_first_error_when_later_lines_are_wrong_too(void **state) {
  (void)state;
  check_error("[site]\n"
              "id = S\n"
              "no equals sign here\n"
              "bogus = 1\n",
              3, "not a key = value line", NULL);
  check_error("[site]\n"
              "id = S\n"
              "bogus = 1\n"
              "no equals sign here\n",
              3, "unknown key", "\"bogus\"", NULL);
}

static void config_rejects_duplicate_key_at_its_second_line(void **state) {
  (void)state;
  check_error("[site]\n"
              "id = S\n"
              "[storage]\n"
              "raw_days = 10\n"
              "raw_days = 20\n",
              5, "[storage] raw_days", "twice", NULL);
  /* Also when the section is opened again further down. */
  check_error("[site]\nid = S\n[coap]\nport = 1\n[http]\nlisten = x\n[coap]\nport = 2\n", 8,
              "[coap] port", "twice", NULL);
  check_error("[site]\nid = S\n[device d]\ntype = dust\ntype = noise\n", 5, "[device d] type",
              "twice", NULL);
}

static void config_rejects_device_defined_twice_naming_the_first_line(void **state) {
  (void)state;
  check_error("[site]\n"
              "id = S\n"
              "\n"
              "[device pump]\n"
              "type = energy\n"
              "[device fan]\n"
              "type = energy\n"
              "\n"
              "[device pump]\n"
              "type = noise\n",
              9, "[device pump]", "twice", "line 4", NULL);
  /* Right after each other, without another section in between. */
  check_error("[site]\n"
              "id = S\n"
              "[device pump]\n"
              "type = energy\n"
              "[device pump]\n"
              "interval_s = 5\n",
              5, "[device pump]", "twice", "line 3", NULL);
}

static void config_rejects_device_without_type_at_its_header_line(void **state) {
  (void)state;
  check_error("[site]\n"
              "id = S\n"
              "[device a]\n"
              "type = dust\n"
              "\n"
              "[device b]\n"
              "# no type\n"
              "interval_s = 30\n",
              6, "[device b]", "no type", NULL);
  /* A device section with no keys at all is not silently dropped. */
  check_error("[site]\n"
              "id = S\n"
              "[device lonely]\n"
              "[device a]\n"
              "type = dust\n",
              3, "[device lonely]", "no type", NULL);
}

static void config_rejects_unknown_device_type_at_its_line(void **state) {
  (void)state;
  check_error("[site]\n"
              "id = S\n"
              "[device d]\n"
              "interval_s = 5\n"
              "type = drill\n",
              5, "[device d] type", "\"drill\"", "unknown device type", NULL);
  check_error("[site]\nid = S\n[device d]\ntype = Dust\n", 4, "\"Dust\"", NULL);
}

static void config_rejects_equipment_without_group(void **state) {
  (void)state;
  check_error("[site]\n"
              "id = S\n"
              "[device crane]\n"
              "type = equipment\n"
              "rated_kw = 50\n",
              3, "[device crane]", "equipment", "group", NULL);
}

static void config_rejects_group_on_a_device_that_is_not_equipment(void **state) {
  (void)state;
  check_error("[site]\n"
              "id = S\n"
              "[device meter]\n"
              "type = energy\n"
              "group = cranes\n",
              3, "[device meter]", "group", "equipment only", NULL);
  check_error("[site]\nid = S\n[device m]\ntype = noise\nkind = pump\n", 3, "[device m]",
              "equipment only", NULL);
  check_error("[site]\nid = S\n[device m]\ntype = noise\ncoap = coap://x/y\n", 3, "[device m]",
              "equipment only", NULL);
}

static void config_rejects_bad_device_ids_at_the_header_line(void **state) {
  (void)state;
  check_error("[site]\nid = S\n[device a/b]\ntype = dust\n", 3, "[device a/b]", "device id", NULL);
  check_error("[site]\nid = S\n[device ]\ntype = dust\n", 3, "device id", NULL);
  check_error("[site]\nid = S\n[device \xe5\xa1\x94]\ntype = dust\n", 3, "device id", NULL);
  /* 48 characters, one more than SG_ID_MAX. */
  check_error("[site]\nid = S\n"
              "[device 012345678901234567890123456789012345678901234567]\n"
              "type = dust\n",
              3, "012345678901234567890123456789012345678901234567", "device id", NULL);
  /* No id at all: device keys must not land in the global settings. */
  check_error("[site]\nid = S\n[device]\ncoap = coap://x/y\n", 3, "[device]", NULL);
}

static void config_accepts_device_id_of_the_full_length(void **state) {
  (void)state;
  const char *id = "01234567890123456789012345678901234567890123456"; /* 47 */
  assert_int_equal(strlen(id), SG_ID_MAX);
  char text[256];
  snprintf(text, sizeof(text), "[site]\nid = S\n[device %s]\ntype = scale\n", id);
  sg_config_t *c = parse_ok(text);
  assert_int_equal(c->n_devices, 1);
  assert_string_equal(c->devices[0].id, id);
  assert_ptr_equal(sg_config_device(c, id), &c->devices[0]);
  assert_string_equal(c->site_id, "S");
  sg_config_free(c);
}

static void config_rejects_timezone_that_is_not_an_iana_zone_at_its_line(void **state) {
  (void)state;
  static const char *const bad[] = {"Mars/Olympus_Mons", "Asia",           ".",
                                    "../../etc/passwd",  "/Asia/Shanghai", "zone.tab"};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    char text[256];
    snprintf(text, sizeof(text), "[site]\nid = S\ntimezone = %s\nname = x\n[coap]\nport = 1\n",
             bad[i]);
    check_error(text, 3, "[site] timezone", bad[i], NULL);
  }
  check_error("[site]\nid = S\ntimezone =\n", 3, "[site] timezone", NULL);
  sg_config_t *c = parse_ok("[site]\nid = S\ntimezone = America/Argentina/Buenos_Aires\n");
  assert_string_equal(c->timezone, "America/Argentina/Buenos_Aires");
  sg_config_free(c);
  c = parse_ok("[site]\nid = S\ntimezone = UTC\n");
  sg_config_free(c);
}

static void config_rejects_overlong_line_with_its_line(void **state) {
  (void)state;
  /* 1021 characters is the limit (inih's 1024-byte buffer less "\r\n\0"). */
  char text[4096];
  char fill[1100];
  memset(fill, 'x', sizeof(fill));
  fill[1019] = '\0'; /* "# " + fill: 1021 characters */
  snprintf(text, sizeof(text), "[site]\nid = S\n# %s\nname = y\n", fill);
  sg_config_t *c = parse_ok(text);
  assert_string_equal(c->site_name, "y");
  sg_config_free(c);
  /* No newline at the end: the same limit. */
  snprintf(text, sizeof(text), "[site]\nid = S\n# %s", fill);
  c = parse_ok(text);
  sg_config_free(c);

  snprintf(text, sizeof(text), "[site]\nid = S\n# %sx\nname = y\n", fill);
  check_error(text, 3, "longer than 1021", NULL);
  snprintf(text, sizeof(text), "[site]\nid = S\n# %sx", fill);
  check_error(text, 3, "longer than 1021", NULL);
  snprintf(text, sizeof(text), "[site]\nid = S\n\nname = %s%s\n", fill, fill);
  check_error(text, 4, "longer than 1021", NULL);
}

static void config_rejects_string_value_too_long_for_its_field(void **state) {
  (void)state;
  char text[512], name[200];
  memset(name, 'n', sizeof(name));
  name[128] = '\0'; /* site_name holds 127 */
  snprintf(text, sizeof(text), "[site]\nid = S\nname = %s\n", name);
  check_error(text, 3, "[site] name", "longer than 127", NULL);
  name[127] = '\0';
  snprintf(text, sizeof(text), "[site]\nid = S\nname = %s\n", name);
  sg_config_t *c = parse_ok(text);
  assert_string_equal(c->site_name, name);
  sg_config_free(c);
  char psk[80];
  memset(psk, 'k', sizeof(psk));
  psk[65] = '\0';
  snprintf(text, sizeof(text), "[site]\nid = S\n[device d]\ntype = dust\npsk = %s\n", psk);
  check_error(text, 5, "[device d] psk", "longer than 64", NULL);
}

static void config_error_message_is_cut_to_the_buffer(void **state) {
  (void)state;
  char err[16];
  memset(err, '#', sizeof(err));
  sg_config_t *cfg = NULL;
  assert_int_equal(sg_config_parse("[site]\nid = S\nbogus_key_with_a_long_name = 1\n", NAME, &cfg,
                                   err, sizeof(err)),
                   -EINVAL);
  assert_null(cfg);
  assert_int_equal(strlen(err), sizeof(err) - 1);
  assert_memory_equal(err, NAME ":3: ", 12);
  /* No buffer at all is allowed too. */
  assert_int_equal(sg_config_parse("[x]\n", NAME, &cfg, NULL, 0), -EINVAL);
  assert_null(cfg);
}

/* ---- devices */

static void config_sorts_devices_and_finds_them_by_id(void **state) {
  (void)state;
  sg_config_t *c = parse_ok("[site]\nid = S\n"
                            "[device noise-2]\ntype = noise\n"
                            "[device dust-1]\ntype = dust\ninterval_s = 10\n"
                            "[device Z]\ntype = weather\n"
                            "[device noise-10]\ntype = noise\n"
                            "[device crane]\ntype = equipment\ngroup = g\n"
                            "[group g]\n");
  assert_int_equal(c->n_devices, 5);
  static const char *const order[] = {"Z", "crane", "dust-1", "noise-10", "noise-2"};
  for (size_t i = 0; i < c->n_devices; i++) {
    assert_string_equal(c->devices[i].id, order[i]);
    assert_ptr_equal(sg_config_device(c, order[i]), &c->devices[i]);
  }
  const sg_device_t *d = sg_config_device(c, "dust-1");
  assert_non_null(d);
  assert_int_equal(d->type, SG_DEV_DUST);
  assert_int_equal(d->interval_s, 10);
  assert_int_equal(d->line, 5);
  assert_int_equal(sg_config_device(c, "crane")->line, 12);
  assert_null(sg_config_device(c, "dust-2"));
  assert_null(sg_config_device(c, "z"));
  assert_null(sg_config_device(c, ""));
  assert_null(sg_config_device(c, "noise-10-and-a-lot-more-characters-than-an-id-may-have"));
  sg_config_free(c);

  c = parse_ok("[site]\nid = S\n");
  assert_int_equal(c->n_devices, 0);
  assert_null(sg_config_device(c, "dust-1"));
  sg_config_free(c);
}

static void config_holds_many_devices(void **state) {
  (void)state;
  size_t cap = 200 * 40;
  char *text = malloc(cap);
  assert_non_null(text);
  size_t len = (size_t)snprintf(text, cap, "[site]\nid = S\n");
  for (int i = 99; i >= 0; i--)
    len += (size_t)snprintf(text + len, cap - len, "[device dev%03d]\ntype = energy\n", i);
  sg_config_t *c = parse_ok(text);
  free(text);
  assert_int_equal(c->n_devices, 100);
  for (int i = 0; i < 100; i++) {
    char id[16];
    snprintf(id, sizeof(id), "dev%03d", i);
    assert_ptr_equal(sg_config_device(c, id), &c->devices[i]);
    assert_int_equal(c->devices[i].line, 3 + 2 * (99 - i));
  }
  sg_config_free(c);
}

/* ---- loading from a file */

static void config_load_reports_missing_file_with_its_path(void **state) {
  (void)state;
  char err[512] = "untouched";
  sg_config_t *cfg = (sg_config_t *)1;
  const char *path = "/nonexistent/sitegate-test/sitegate.conf";
  assert_int_equal(sg_config_load(path, &cfg, err, sizeof(err)), -ENOENT);
  assert_null(cfg);
  assert_non_null(strstr(err, path));
  assert_non_null(strstr(err, strerror(ENOENT)));
}

/* Writes text to a fresh temporary file; its name goes into path. */
static void write_temp(char *path, size_t size, const char *text, size_t len) {
  snprintf(path, size, "%s/test_config_XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
  int fd = mkstemp(path);
  assert_true(fd >= 0);
  assert_int_equal(write(fd, text, len), (ssize_t)len);
  assert_int_equal(close(fd), 0);
}

static void config_load_reads_a_file_and_names_it_in_errors(void **state) {
  (void)state;
  char path[256], err[512];
  sg_config_t *cfg = NULL;
  /* Bigger than the loader's first buffer, so it has to grow. */
  size_t cap = 64 * 1024, len = 0;
  char *text = malloc(cap);
  assert_non_null(text);
  len += (size_t)snprintf(text + len, cap - len, "[site]\nid = FILE-1\n");
  while (len < 40000)
    len += (size_t)snprintf(text + len, cap - len, "# padding padding padding padding\n");
  len += (size_t)snprintf(text + len, cap - len, "[coap]\nport = 7000\n");
  write_temp(path, sizeof(path), text, len);
  assert_int_equal(sg_config_load(path, &cfg, err, sizeof(err)), 0);
  assert_non_null(cfg);
  assert_string_equal(cfg->path, path);
  assert_string_equal(cfg->site_id, "FILE-1");
  assert_int_equal(cfg->coap_port, 7000);
  sg_config_free(cfg);
  unlink(path);

  len += (size_t)snprintf(text + len, cap - len, "prot = 1\n");
  int line = 0;
  for (size_t i = 0; i < len; i++)
    line += text[i] == '\n';
  write_temp(path, sizeof(path), text, len);
  free(text);
  assert_int_equal(sg_config_load(path, &cfg, err, sizeof(err)), -EINVAL);
  assert_null(cfg);
  char prefix[300];
  snprintf(prefix, sizeof(prefix), "%s:%d: ", path, line);
  assert_true(strncmp(err, prefix, strlen(prefix)) == 0);
  assert_non_null(strstr(err, "\"prot\""));
  unlink(path);
}

static void config_load_rejects_a_binary_file(void **state) {
  (void)state;
  char path[256], err[512];
  sg_config_t *cfg = (sg_config_t *)1;
  write_temp(path, sizeof(path), "[site]\nid = S\0\n", 15);
  assert_int_equal(sg_config_load(path, &cfg, err, sizeof(err)), -EINVAL);
  assert_null(cfg);
  assert_non_null(strstr(err, path));
  unlink(path);
}

/* ---- dump */

static char *dump(const sg_config_t *c) {
  char *buf = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&buf, &len);
  assert_non_null(f);
  sg_config_dump(c, f);
  assert_int_equal(fclose(f), 0);
  assert_non_null(buf);
  return buf;
}

static void config_dump_never_prints_a_psk_or_token(void **state) {
  (void)state;
  sg_config_t *c = parse_ok("[site]\nid = S\n"
                            "[http]\ntoken = Secret-Token-42\n"
                            "[device a]\ntype = dust\npsk = Psk-Alpha-0001-0002-0003\n"
                            "[device b]\ntype = noise\n");
  char *out = dump(c);
  assert_null(strstr(out, "Secret-Token-42"));
  assert_null(strstr(out, "Psk-Alpha-0001-0002-0003"));
  assert_non_null(strstr(out, "[http]\nlisten = 127.0.0.1:8080\ntoken = (set)\n"));
  assert_non_null(strstr(out, "[device a]\ntype = dust\npsk = (set)\ninsecure = no\n"));
  assert_non_null(strstr(out, "[device b]\ntype = noise\ninsecure = no\n"));
  assert_non_null(strstr(out, "raw_days = 31\n"));
  free(out);
  sg_config_free(c);
}

static void config_dump_parses_back_to_the_same_values(void **state) {
  (void)state;
  sg_config_t *a = parse_ok("[site]\nid = S\nname = Block 7\narea_cast_in_place_m2 = 12345678.9\n"
                            "progress = 0.123456789\n"
                            "[storage]\nraw_days = 90\n"
                            "[device crane]\ntype = equipment\ngroup = g1\nkind = hoist\n"
                            "rated_kw = 37.25\npriority = 3\ncoap = coap://[fe80::1]/r\n"
                            "[device d]\ntype = dust\ninterval_s = 15\n"
                            "[group g1]\n");
  char *out = dump(a);
  sg_config_t *b = parse_ok(out);
  free(out);
  assert_string_equal(b->site_name, a->site_name);
  assert_true(b->area_cast_m2 == a->area_cast_m2);
  assert_true(b->progress == a->progress);
  assert_int_equal(b->raw_days, 90);
  assert_string_equal(b->db_path, a->db_path);
  assert_int_equal(b->n_devices, 2);
  for (size_t i = 0; i < 2; i++) {
    const sg_device_t *x = &a->devices[i], *y = &b->devices[i];
    assert_string_equal(x->id, y->id);
    assert_int_equal(x->type, y->type);
    assert_int_equal(x->interval_s, y->interval_s);
    assert_string_equal(x->group, y->group);
    assert_string_equal(x->kind, y->kind);
    assert_true(x->rated_kw == y->rated_kw);
    assert_int_equal(x->priority, y->priority);
    assert_string_equal(x->coap, y->coap);
  }
  sg_config_free(a);
  sg_config_free(b);
}

static void config_uplink_is_off_by_default_with_hj212_defaults(void **state) {
  (void)state;
  sg_config_t *c = parse_ok("[site]\nid = S\n");
  assert_string_equal(c->uplink_host, "");
  assert_int_equal(c->uplink_port, 9212);
  assert_string_equal(c->uplink_pw, "123456");
  assert_string_equal(c->uplink_st, "39");
  assert_int_equal(sg_uplink_intervals(c->uplink_intervals),
                   SG_UPLINK_RTD | SG_UPLINK_MINUTE | SG_UPLINK_HOUR | SG_UPLINK_DAY);
  assert_int_equal(c->uplink_outbox_max, 100000);
  sg_config_free(c);
  assert_int_equal(sg_uplink_intervals("2051, hour"), SG_UPLINK_MINUTE | SG_UPLINK_HOUR);
  assert_int_equal(sg_uplink_intervals(""), 0);
  assert_int_equal(sg_uplink_intervals("minute weekly"), -EINVAL);
}

static void config_rejects_uplink_without_keys_bad_lists_and_long_mn(void **state) {
  (void)state;
  check_error("[site]\nid = S\n[uplink]\nhost = rx.example\nca = ca.crt\n", 4,
              "[uplink] cert is required with host", NULL);
  check_error("[site]\nid = S\n[uplink]\nintervals = minute, weekly\n", 4, "[uplink] intervals",
              "weekly", NULL);
  check_error("[site]\nid = S\n[uplink]\nst = 3 9\n", 4, "[uplink] st", NULL);
  check_error("[site]\nid = S\n[device n]\ntype = noise\n[device e]\ntype = energy\n"
              "[uplink]\ndevices = n, e\n",
              8, "[uplink] devices: \"e\" is not a dust, noise or weather device", NULL);
  check_error("[site]\nid = S-0123456789-0123456789-0123456789\n[uplink]\nhost = h\nca = a\n"
              "cert = b\nkey = c\n",
              2, "at most 27 characters", NULL);
}

/* issue 13: `psk =` left empty made a device plain CoAP without a word,
 * and a 1-byte key was accepted. */
static void config_refuses_an_empty_or_short_psk_at_its_line(void **state) {
  (void)state;
  check_error("[site]\nid = S\n[device wb-01]\ntype = scale\npsk =\n", 5,
              "[device wb-01] psk is empty", "insecure = yes", NULL);
  check_error("[site]\nid = S\n[device wb-01]\ntype = scale\npsk = k\n", 5,
              "[device wb-01] psk: 1 bytes is too short", "at least 16", NULL);
  check_error("[site]\nid = S\n[device d]\ntype = dust\npsk = 0123456789abcde\n", 5,
              "[device d] psk: 15 bytes", NULL);
  check_error("[site]\nid = S\n[device d]\ntype = dust\npsk = 0123456789abcdef\n"
              "insecure = yes\n",
              3, "[device d] has a psk and insecure = yes", NULL);
  check_error("[site]\nid = S\n[device d]\ntype = dust\ninsecure = maybe\n", 5,
              "[device d] insecure: \"maybe\" is not yes or no", NULL);
  sg_config_t *c = parse_ok("[site]\nid = S\n[device d]\ntype = dust\npsk = 0123456789abcdef\n");
  assert_string_equal(c->devices[0].psk, "0123456789abcdef");
  assert_false(c->devices[0].insecure);
  sg_config_free(c);
}

static void config_keys_need_a_psk_or_insecure_for_every_device(void **state) {
  (void)state;
  char err[512];
  sg_config_t *c = parse_ok("[site]\nid = S\n[device d]\ntype = dust\npsk = 0123456789abcdef\n"
                            "[device n]\ntype = noise\ninsecure = yes\n"
                            "[device wb-01]\ntype = scale\n");
  assert_int_equal(sg_config_check_keys(c, err, sizeof(err)), -EPERM);
  assert_non_null(strstr(err, NAME ":9: [device wb-01] has no psk"));
  assert_non_null(strstr(err, "insecure = yes"));
  sg_config_free(c);
  c = parse_ok("[site]\nid = S\n[device d]\ntype = dust\npsk = 0123456789abcdef\n"
               "[device n]\ntype = noise\ninsecure = yes\n");
  assert_int_equal(sg_config_check_keys(c, err, sizeof(err)), 0);
  assert_true(sg_config_device(c, "n")->insecure);
  sg_config_free(c);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(config_uplink_is_off_by_default_with_hj212_defaults),
      cmocka_unit_test(config_refuses_an_empty_or_short_psk_at_its_line),
      cmocka_unit_test(config_keys_need_a_psk_or_insecure_for_every_device),
      cmocka_unit_test(config_rejects_uplink_without_keys_bad_lists_and_long_mn),
      cmocka_unit_test(config_fills_every_default_when_keys_are_absent),
      cmocka_unit_test(config_reads_every_key_it_is_given),
      cmocka_unit_test(config_reads_every_device_type_by_name),
      cmocka_unit_test(config_keeps_utf8_site_name_intact),
      cmocka_unit_test(config_accepts_a_utf8_byte_order_mark_and_crlf_lines),
      cmocka_unit_test(config_ignores_comments_and_blank_lines),
      cmocka_unit_test(config_rejects_missing_site_id),
      cmocka_unit_test(config_rejects_lan_http_listen_without_token_at_its_line),
      cmocka_unit_test(config_rejects_site_id_with_bad_characters_at_its_line),
      cmocka_unit_test(config_rejects_unknown_section_with_its_header_line),
      cmocka_unit_test(config_rejects_unknown_key_with_its_line),
      cmocka_unit_test(config_rejects_key_outside_any_section),
      cmocka_unit_test(config_rejects_value_out_of_range_with_its_line),
      cmocka_unit_test(config_reads_site_coordinates_in_range_and_together),
      cmocka_unit_test(config_rejects_value_that_is_not_a_number),
      cmocka_unit_test(config_rejects_trailing_junk_after_a_number),
      cmocka_unit_test(config_rejects_a_line_that_is_not_key_value),
      cmocka_unit_test(config_rejects_text_after_a_section_header),
      cmocka_unit_test(config_reports_the_first_error_when_later_lines_are_wrong_too),
      cmocka_unit_test(config_rejects_duplicate_key_at_its_second_line),
      cmocka_unit_test(config_rejects_device_defined_twice_naming_the_first_line),
      cmocka_unit_test(config_rejects_device_without_type_at_its_header_line),
      cmocka_unit_test(config_rejects_unknown_device_type_at_its_line),
      cmocka_unit_test(config_rejects_equipment_without_group),
      cmocka_unit_test(config_rejects_group_on_a_device_that_is_not_equipment),
      cmocka_unit_test(config_rejects_bad_device_ids_at_the_header_line),
      cmocka_unit_test(config_accepts_device_id_of_the_full_length),
      cmocka_unit_test(config_rejects_timezone_that_is_not_an_iana_zone_at_its_line),
      cmocka_unit_test(config_rejects_overlong_line_with_its_line),
      cmocka_unit_test(config_rejects_string_value_too_long_for_its_field),
      cmocka_unit_test(config_error_message_is_cut_to_the_buffer),
      cmocka_unit_test(config_sorts_devices_and_finds_them_by_id),
      cmocka_unit_test(config_holds_many_devices),
      cmocka_unit_test(config_load_reports_missing_file_with_its_path),
      cmocka_unit_test(config_load_reads_a_file_and_names_it_in_errors),
      cmocka_unit_test(config_load_rejects_a_binary_file),
      cmocka_unit_test(config_dump_never_prints_a_psk_or_token),
      cmocka_unit_test(config_dump_parses_back_to_the_same_values),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
