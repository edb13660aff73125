/* The message catalogue (common/msgcat.c) and the catalogue itself
 * (gateway/web/messages.json): every key in both languages, every alarm
 * the gateway raises with a sentence, Chinese sentences free of English. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "common/msgcat.h"
#include "gateway/api/api.h"
#include "gateway/core/core.h"
#include "gateway/equipment/equipment.h"
#include "gateway/rules/rules.h"
#include "protocol/protocol.h"
#include <ctype.h>
#include <jansson.h>
#include <math.h>
#include <regex.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#define CATALOGUE "gateway/web/messages.json"

static msgcat_t *cat;

static int load(void **state) {
  (void)state;
  char err[256] = "";
  int rc = msgcat_load(CATALOGUE, &cat, err, sizeof(err));
  if (rc != 0)
    fprintf(stderr, "%s\n", err);
  return rc;
}

static int unload(void **state) {
  (void)state;
  msgcat_free(cat);
  return 0;
}

/* Every rule name the rooms raise (rules/env.c, waste_gw.c, command.c,
 * uplink.c), with the quantities health rules are made for. */
static const char *const rules[] = {
    "noise.laeq",           "noise.night_lmax",      "dust.pm10_long",      "dust.pm10_short",
    "dust.pm2_5_long",      "dust.pm2_5_short",      "dust.tsp_long",       "dust.tsp_short",
    "dust.pm10_exceed_day", "dust.pm2_5_exceed_day", "health.offline",      "health.clock_skew",
    "health.interference",  "health.range.pm2_5",    "health.flatline.la",  "health.range.temp",
    "waste.allowance",      "waste.projection",      "equipment.no_follow", "uplink.down",
};

static void every_key_is_in_both_languages_with_the_same_placeholders(void **state) {
  (void)state;
  char err[256] = "";
  int faults = msgcat_check(cat, err, sizeof(err));
  if (faults)
    fprintf(stderr, "%d faults, e.g. %s\n", faults, err);
  assert_int_equal(faults, 0);
}

/* A lower-case Latin word of 3+ letters in a Chinese sentence is English
 * (or a raw code): "dB", "LAeq", "PM10", "GB" are the standards' own. */
static bool has_english(const char *s) {
  int run = 0;
  for (const char *p = s; *p; p++) {
    run = islower((unsigned char)*p) || *p == '_' ? run + 1 : 0;
    if (run >= 3)
      return true;
  }
  return false;
}

static void check_alarm_sentences(const char *rule) {
  msgcat_alarm_t a = {
      .rule = rule, .source = "N1", .unit = "t", .figure = 72.5, .limit = 70, .peak = 80};
  char zh[512], en[512], name[128];
  msgcat_alarm_text(cat, "zh", &a, a.figure, zh, sizeof(zh));
  msgcat_alarm_text(cat, "en", &a, a.figure, en, sizeof(en));
  msgcat_rule_name(cat, "zh", rule, name, sizeof(name));
  if (has_english(zh) || has_english(name) || strchr(zh, '{') || strchr(en, '{') ||
      strcmp(zh, en) == 0 || strcmp(name, rule) == 0)
    fail_msg("%s: \"%s\" / \"%s\" / \"%s\"", rule, name, zh, en);
}

/* Every Chinese text of the catalogue (the report's sentences, sitectl's
 * words, the dashboard's labels) is free of English once what a person
 * types or reads as a name is set aside: {placeholders}, the config's
 * [section] key, --options, $ENVIRONMENT_NAMES, key=value, a word to type
 * in full-width brackets（on）, file names and
 * URLs, the programs' own names and the standards' Lmax; a "*_help" text
 * is a command's syntax and is skipped. */
/* Every refusal of the HTTP API (api.h's API_ERROR_MAP) reads in both
 * languages, "err.<code>" (sitectl and the dashboard render it). */
static void every_api_error_has_a_chinese_and_an_english_text(void **state) {
  (void)state;
  for (int e = 0; e < API_ERR_COUNT; e++) {
    char key[80];
    snprintf(key, sizeof(key), "err.%s", api_error_code(e));
    const char *zh = msgcat_get(cat, "zh", key), *en = msgcat_get(cat, "en", key);
    if (zh == key || en == key || strcmp(zh, key) == 0 || strcmp(en, key) == 0)
      fail_msg("%s has no text in the catalogue", key);
  }
  assert_string_equal(api_error_code(API_ERR_COUNT), "?");
}

static void every_chinese_text_is_free_of_english(void **state) {
  (void)state;
  static const char *const names =
      "\\{[a-z_0-9]+\\}|\\[[a-z_]+\\]( [a-z_]+)?|--?[a-z][a-z0-9-]*|\\$?[A-Z][A-Z0-9_]+"
      "|[A-Za-z0-9_.-]*\\.(conf|csv|html|json)|[a-z_]+=[^ ]*|（[a-z_|-]+）|[a-z]+://[^ "
      "）]*|sitegated|sitectl( [a-z|]+)*|sitesim|Lmax"
      "|Prometheus|Unix|[a-z]+ (help|summary|import|add|set|log)";
  regex_t re;
  assert_int_equal(regcomp(&re, names, REG_EXTENDED), 0);
  json_error_t e;
  json_t *root = json_load_file(CATALOGUE, 0, &e);
  assert_non_null(root);
  const char *key;
  json_t *v;
  int bad = 0;
  json_object_foreach(json_object_get(root, "zh"), key, v) {
    size_t klen = strlen(key);
    if (klen > 5 && strcmp(key + klen - 5, "_help") == 0)
      continue; /* a command's syntax: what a person types, in any language */
    char buf[4096];
    snprintf(buf, sizeof(buf), "%s", json_string_value(v));
    regmatch_t m;
    while (regexec(&re, buf, 1, &m, 0) == 0 && m.rm_eo > m.rm_so)
      memset(buf + m.rm_so, ' ', (size_t)(m.rm_eo - m.rm_so));
    if (has_english(buf)) {
      fprintf(stderr, "English in zh \"%s\": %s\n", key, json_string_value(v));
      bad++;
    }
  }
  regfree(&re);
  json_decref(root);
  assert_int_equal(bad, 0);
}

static void every_alarm_reads_as_a_chinese_sentence_and_an_english_one(void **state) {
  (void)state;
  for (size_t i = 0; i < sizeof(rules) / sizeof(rules[0]); i++)
    check_alarm_sentences(rules[i]);
}

/* The machinery page (page_machinery.js) and its rule's alarms
 * (machinery.c): each code it shows has a Chinese name. */
static void every_machinery_alarm_and_code_reads_in_chinese(void **state) {
  (void)state;
  static const char *const alarms[] = {"machinery.unregistered", "machinery.stage",
                                       "machinery.smoke"};
  for (size_t i = 0; i < sizeof(alarms) / sizeof(alarms[0]); i++)
    check_alarm_sentences(alarms[i]);
  static const char *const names[][2] = {
      {"mach_stage", "0"},          {"mach_stage", "I"},     {"mach_stage", "II"},
      {"mach_stage", "III"},        {"mach_stage", "IV"},    {"mach_stage", "electric"},
      {"mach_fuel", "diesel"},      {"mach_fuel", "petrol"}, {"mach_fuel", "electric"},
      {"mach_why", "unregistered"}, {"mach_why", "stage"},   {"mach_why", "smoke"},
      {"mach_src", "gate"},         {"mach_src", "sitectl"}, {"mach_act", "add"},
      {"mach_act", "change"},       {"mach_act", "import"},  {"mach_act", "retire"}};
  for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
    const char *zh = msgcat_name(cat, "zh", names[i][0], names[i][1]);
    if (strcmp(zh, names[i][1]) == 0 || has_english(zh))
      fail_msg("no Chinese name for %s_%s", names[i][0], names[i][1]);
  }
}

/* The equipment page shows holds, reasons and results by name: each code
 * the policies and the commands write has one in both languages. */
static void every_equipment_code_has_a_name(void **state) {
  (void)state;
  static const char *const reasons[] = {/* equipment_policy.c's plan_on/plan_off, command.c */
                                        "demand",           "dust",         "duty",
                                        "duty-rotation",    "override",     "override-expired",
                                        "override-cleared", "peak-restore", "schedule",
                                        "at the unit"};
  static const char *const results[] = {/* command.c and equipment.c */
                                        "sent",    "followed",   "followed-late", "not-followed",
                                        "refused", "superseded", "no-answer",     "done",
                                        "cleared", "expired"};
  /* Chinese must name each (an English name may be the code itself; every
   * key is in both languages, as every_key_is_in_both_languages checks). */
  for (int h = EQP_HOLD_CAP; h <= EQP_HOLD_OVERRIDE; h++)
    if (strcmp(msgcat_name(cat, "zh", "why", eqp_hold_name(h)), eqp_hold_name(h)) == 0)
      fail_msg("no name for the hold %s", eqp_hold_name(h));
  for (size_t i = 0; i < sizeof(reasons) / sizeof(reasons[0]); i++)
    if (strcmp(msgcat_name(cat, "zh", "why", reasons[i]), reasons[i]) == 0)
      fail_msg("no name for the reason %s", reasons[i]);
  for (size_t i = 0; i < sizeof(results) / sizeof(results[0]); i++)
    if (strcmp(msgcat_name(cat, "zh", "res", results[i]), results[i]) == 0)
      fail_msg("no name for the result %s", results[i]);
}

/* sitectl status and the dashboard name every reject counter, every alarm
 * event and every device type in the site manager's words. */
static void every_reject_event_device_type_and_quantity_has_a_name(void **state) {
  (void)state;
  for (int r = 0; r < GW_REJECT_COUNT; r++)
    if (strcmp(msgcat_name(cat, "zh", "reject", gw_reject_name(r)), gw_reject_name(r)) == 0)
      fail_msg("no name for the reject reason %s", gw_reject_name(r));
  for (int e = 0; e < ALARM_EV_COUNT; e++)
    if (strcmp(msgcat_name(cat, "zh", "event", alarm_event_name(e)), alarm_event_name(e)) == 0)
      fail_msg("no name for the alarm event %s", alarm_event_name(e));
  for (int t = 0; t <= SG_DEV_GATE; t++)
    if (strcmp(msgcat_name(cat, "zh", "devtype", sg_devtype_name(t)), sg_devtype_name(t)) == 0)
      fail_msg("no name for the device type %s", sg_devtype_name(t));
  for (int q = 0; q < PROTO_Q_COUNT; q++)
    if (strcmp(msgcat_name(cat, "zh", "q", proto_quantity_name(q)), proto_quantity_name(q)) == 0)
      fail_msg("no name for the quantity %s", proto_quantity_name(q));
}

static void alarm_sentence_is_built_from_its_stored_parts(void **state) {
  (void)state;
  msgcat_alarm_t a = {.rule = "noise.laeq",
                      .source = "N1",
                      .unit = "dB(A)",
                      .figure = 72.5,
                      .limit = 70,
                      .peak = 75.25};
  char buf[256];
  assert_string_equal(msgcat_alarm_text(cat, "zh", &a, a.figure, buf, sizeof(buf)),
                      "N1：20 分钟 LAeq 72.5 dB(A)，限值 70 dB(A)（GB 12523-2011）");
  assert_string_equal(msgcat_alarm_text(cat, "en", &a, a.peak, buf, sizeof(buf)),
                      "N1: 20-min LAeq 75.2 dB(A), limit 70 dB(A) (GB 12523-2011)");
  msgcat_alarm_t d = {.rule = "dust.pm2_5_short", .source = "D1", .figure = NAN, .limit = 75};
  assert_string_equal(msgcat_alarm_text(cat, "zh", &d, d.figure, buf, sizeof(buf)),
                      "D1：PM2.5 15 分钟均值 – µg/m³，限值 75 µg/m³");
  assert_string_equal(msgcat_rule_name(cat, "en", "health.range.rh", buf, sizeof(buf)),
                      "Out of range: humidity");
}

static void a_missing_key_falls_back_to_chinese_then_to_itself(void **state) {
  (void)state;
  assert_string_equal(msgcat_get(cat, "en", "no_such_key"), "no_such_key");
  assert_string_equal(msgcat_get(NULL, "zh", "ok"), "ok");
  assert_string_equal(msgcat_name(cat, "zh", "kind", "mixed"), "混合");
  assert_string_equal(msgcat_name(cat, "zh", "kind", "unobtainium"), "unobtainium");
  assert_string_equal(msgcat_lang("en_GB.UTF-8"), "en");
  assert_string_equal(msgcat_lang(NULL), "zh");
  assert_string_equal(msgcat_lang("C.UTF-8"), "zh");
}

static void fill_leaves_unknown_placeholders_and_cuts_at_the_buffer(void **state) {
  (void)state;
  const char *names[] = {"a"}, *values[] = {"xyz"};
  char buf[8];
  assert_string_equal(msgcat_fill("{a}-{b}", names, values, 1, buf, sizeof(buf)), "xyz-{b}");
  assert_string_equal(msgcat_fill("{a}{a}{a}", names, values, 1, buf, sizeof(buf)), "xyzxyzx");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(every_key_is_in_both_languages_with_the_same_placeholders),
      cmocka_unit_test(every_chinese_text_is_free_of_english),
      cmocka_unit_test(every_api_error_has_a_chinese_and_an_english_text),
      cmocka_unit_test(every_alarm_reads_as_a_chinese_sentence_and_an_english_one),
      cmocka_unit_test(every_machinery_alarm_and_code_reads_in_chinese),
      cmocka_unit_test(every_equipment_code_has_a_name),
      cmocka_unit_test(every_reject_event_device_type_and_quantity_has_a_name),
      cmocka_unit_test(alarm_sentence_is_built_from_its_stored_parts),
      cmocka_unit_test(a_missing_key_falls_back_to_chinese_then_to_itself),
      cmocka_unit_test(fill_leaves_unknown_placeholders_and_cuts_at_the_buffer),
  };
  return cmocka_run_group_tests(tests, load, unload);
}
