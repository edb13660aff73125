/* The waste and material figures (gateway/waste/waste.c), each against numbers
 * worked out by hand in the comments, and the bill-of-quantities reader
 * naming its bad lines. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "gateway/waste/waste.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define EPS 1e-9
#define assert_near(a, b) assert_true(fabs((a) - (b)) < EPS * (1 + fabs(b)))

/* The demo site: 38,000 m2 cast in place, 24,000 m2 prefabricated. */
static const waste_site_t demo = {38000, 24000, 300, 200};

static void allowance_of_a_mixed_site_weights_both_limits_by_area(void **state) {
  (void)state;
  /* (300 * 38,000 + 200 * 24,000) / 10,000 = 1,140 + 480 = 1,620 t */
  assert_near(waste_allowance_t(&demo), 1620.0);
  /* 1,620 t over 62,000 m2 = 261.29... t per 10,000 m2 */
  assert_near(waste_limit_per_10k(&demo), 1620.0 / 6.2);
  /* 37.8 t over 6.2 units of 10,000 m2 = 6.0968 t per 10,000 m2 */
  assert_near(waste_intensity(&demo, 37.8), 37.8 / 6.2);
}

static void allowance_of_single_type_sites_is_the_plain_limit(void **state) {
  (void)state;
  waste_site_t cast = {10000, 0, 300, 200}, prefab = {0, 25000, 300, 200};
  assert_near(waste_allowance_t(&cast), 300.0);
  assert_near(waste_limit_per_10k(&cast), 300.0);
  assert_near(waste_allowance_t(&prefab), 500.0); /* 200 * 2.5 */
  assert_near(waste_limit_per_10k(&prefab), 200.0);
  waste_site_t local = {10000, 10000, 250, 150}; /* stricter local limits */
  assert_near(waste_allowance_t(&local), 400.0);
  assert_near(waste_limit_per_10k(&local), 200.0);
}

static void a_site_without_floor_area_has_no_intensity(void **state) {
  (void)state;
  waste_site_t none = {0, 0, 300, 200};
  assert_near(waste_allowance_t(&none), 0.0);
  assert_true(isnan(waste_limit_per_10k(&none)));
  assert_true(isnan(waste_intensity(&none, 12.0)));
}

/* Seven tickets of every sort:
 *   engineering concrete  recycling     17.6
 *   engineering concrete  reuse_onsite   5.0
 *   demolition  brick_tile backfill     12.0
 *   decoration  mixed     disposal       8.2
 *   decoration  hazardous disposal       0.4  (excluded)
 *   spoil       -         backfill      23.0  (excluded)
 *   mud         -         disposal      15.0  (excluded)
 * generated  = 17.6 + 5.0 + 12.0 + 8.2 = 42.8
 * discharged = 17.6 + 12.0 + 8.2       = 37.8 (reuse on site stays)
 * excluded   = 0.4 + 23.0 + 15.0       = 38.4
 * utilisation = (5.0 + 17.6 + 12.0) / 42.8 = 34.6 / 42.8 = 0.80841... */
static void add_mixed_tickets(waste_totals_t *t) {
  waste_totals_add(t, PROTO_CAT_ENGINEERING, PROTO_KIND_CONCRETE, PROTO_DEST_RECYCLING, 17.6);
  waste_totals_add(t, PROTO_CAT_ENGINEERING, PROTO_KIND_CONCRETE, PROTO_DEST_REUSE_ONSITE, 5.0);
  waste_totals_add(t, PROTO_CAT_DEMOLITION, PROTO_KIND_BRICK_TILE, PROTO_DEST_BACKFILL, 12.0);
  waste_totals_add(t, PROTO_CAT_DECORATION, PROTO_KIND_MIXED, PROTO_DEST_DISPOSAL, 8.2);
  waste_totals_add(t, PROTO_CAT_DECORATION, PROTO_KIND_HAZARDOUS, PROTO_DEST_DISPOSAL, 0.4);
  waste_totals_add(t, PROTO_CAT_SPOIL, -1, PROTO_DEST_BACKFILL, 23.0);
  waste_totals_add(t, PROTO_CAT_MUD, -1, PROTO_DEST_DISPOSAL, 15.0);
}

static void totals_split_generated_discharged_and_excluded(void **state) {
  (void)state;
  waste_totals_t t;
  waste_totals_init(&t);
  add_mixed_tickets(&t);
  assert_int_equal(t.tickets, 7);
  assert_near(t.generated_t, 42.8);
  assert_near(t.discharged_t, 37.8);
  assert_near(t.excluded_t, 38.4);
  assert_near(t.reused_t, 5.0);
  assert_near(t.recycled_t, 17.6);
  assert_near(t.backfill_t, 12.0);
  assert_near(t.disposed_t, 8.2);
  assert_near(t.spoil_t, 23.0);
  assert_near(t.mud_t, 15.0);
  assert_near(t.hazardous_t, 0.4);
  assert_near(t.by_cat_dest[PROTO_CAT_ENGINEERING][PROTO_DEST_REUSE_ONSITE], 5.0);
  assert_near(t.by_cat_dest[PROTO_CAT_DECORATION][PROTO_DEST_DISPOSAL], 8.6); /* 8.2 + 0.4 */
  assert_near(t.by_cat_dest[PROTO_CAT_SPOIL][PROTO_DEST_BACKFILL], 23.0);
  /* parts add up */
  assert_near(t.reused_t + t.recycled_t + t.backfill_t + t.disposed_t, t.generated_t);
  assert_near(t.generated_t - t.reused_t, t.discharged_t);
  /* against the demo allowance: 37.8 / 1,620 = 2.333 % */
  assert_near(t.discharged_t / waste_allowance_t(&demo), 37.8 / 1620.0);
}

static void utilisation_counts_reuse_recycling_and_backfill(void **state) {
  (void)state;
  waste_totals_t t;
  waste_totals_init(&t);
  add_mixed_tickets(&t);
  assert_near(waste_utilisation(&t), 34.6 / 42.8);
  assert_near(waste_kind_utilisation(&t, PROTO_KIND_CONCRETE), 1.0);    /* 22.6 / 22.6 */
  assert_near(waste_kind_utilisation(&t, PROTO_KIND_BRICK_TILE), 1.0);  /* 12 / 12 */
  assert_near(waste_kind_utilisation(&t, PROTO_KIND_MIXED), 0.0);       /* 0 / 8.2 */
  assert_true(isnan(waste_kind_utilisation(&t, PROTO_KIND_HAZARDOUS))); /* not counted */
  assert_true(isnan(waste_kind_utilisation(&t, PROTO_KIND_GLASS)));     /* none */
  assert_true(waste_utilisation(&t) > WASTE_UTILISATION_TARGET);
}

static void all_excluded_tickets_leave_nothing_to_count(void **state) {
  (void)state;
  waste_totals_t t;
  waste_totals_init(&t);
  waste_totals_add(&t, PROTO_CAT_SPOIL, -1, PROTO_DEST_BACKFILL, 31.5);
  waste_totals_add(&t, PROTO_CAT_MUD, -1, PROTO_DEST_DISPOSAL, 18.0);
  waste_totals_add(&t, PROTO_CAT_ENGINEERING, PROTO_KIND_HAZARDOUS, PROTO_DEST_DISPOSAL, 0.25);
  assert_near(t.generated_t, 0.0);
  assert_near(t.discharged_t, 0.0);
  assert_near(t.excluded_t, 49.75);
  assert_true(isnan(waste_utilisation(&t)));
  assert_near(waste_intensity(&demo, t.discharged_t), 0.0);
}

static void a_compensating_entry_moves_a_ticket_between_destinations(void **state) {
  (void)state;
  waste_totals_t t;
  waste_totals_init(&t);
  /* ticket 1 said recycling; the reversal takes it back, the replacement
   * says disposal. Net: 17.6 t disposed, nothing recycled. */
  waste_totals_add(&t, PROTO_CAT_ENGINEERING, PROTO_KIND_CONCRETE, PROTO_DEST_RECYCLING, 17.6);
  waste_totals_add(&t, PROTO_CAT_ENGINEERING, PROTO_KIND_CONCRETE, PROTO_DEST_RECYCLING, -17.6);
  waste_totals_add(&t, PROTO_CAT_ENGINEERING, PROTO_KIND_CONCRETE, PROTO_DEST_DISPOSAL, 17.6);
  assert_int_equal(t.tickets, 3);
  assert_near(t.generated_t, 17.6);
  assert_near(t.discharged_t, 17.6);
  assert_near(t.recycled_t, 0.0);
  assert_near(t.disposed_t, 17.6);
  assert_near(waste_utilisation(&t), 0.0);
  /* a reversal alone cancels the ticket */
  waste_totals_init(&t);
  waste_totals_add(&t, PROTO_CAT_DEMOLITION, PROTO_KIND_METAL, PROTO_DEST_RECYCLING, 3.0);
  waste_totals_add(&t, PROTO_CAT_DEMOLITION, PROTO_KIND_METAL, PROTO_DEST_RECYCLING, -3.0);
  assert_near(t.generated_t, 0.0);
  assert_true(isnan(waste_utilisation(&t)));
}

static void totals_ignore_values_out_of_range(void **state) {
  (void)state;
  waste_totals_t t;
  waste_totals_init(&t);
  waste_totals_add(&t, PROTO_CAT_COUNT, 0, 0, 1.0);
  waste_totals_add(&t, 0, PROTO_KIND_COUNT, 0, 1.0);
  waste_totals_add(&t, 0, 0, -1, 1.0);
  waste_totals_add(&t, PROTO_CAT_ENGINEERING, 0, 0, NAN);
  assert_int_equal(t.tickets, 0);
}

static void projection_scales_the_recent_rate_to_the_remaining_work(void **state) {
  (void)state;
  bool window;
  /* 680 t discharged at 42 %; the last 30 days discharged 150 t while
   * progress went up 0.05: 3,000 t per unit of progress.
   * projected = 680 + (1 - 0.42) * 3,000 = 680 + 1,740 = 2,420 t,
   * over the demo's 1,620 t allowance. */
  waste_projection_in_t in = {680, 0.42, 150, 0.05, 0.02};
  assert_near(waste_projection_t(&in, &window), 2420.0);
  assert_true(window);
  assert_true(waste_projection_t(&in, NULL) > waste_allowance_t(&demo));
  /* too little progress in the window: the average to date,
   * 680 / 0.42 = 1,619.05 t per unit; projected = 680 + 0.58 * 1,619.05
   * = 1,619.05 t, just inside the allowance */
  in.window_gain = 0.01;
  assert_near(waste_projection_t(&in, &window), 680.0 / 0.42);
  assert_false(window);
  assert_true(waste_projection_t(&in, NULL) < waste_allowance_t(&demo));
}

static void projection_needs_progress_and_stops_at_completion(void **state) {
  (void)state;
  waste_projection_in_t in = {100, 0, 50, 0, 0.02};
  assert_true(isnan(waste_projection_t(&in, NULL)));
  in.progress = 1.0;
  in.window_gain = 0.1;
  assert_near(waste_projection_t(&in, NULL), 100.0);
  in.progress = 0.5; /* nothing discharged recently, real progress: no more to come */
  in.window_discharged_t = 0;
  assert_near(waste_projection_t(&in, NULL), 100.0);
}

static void allowance_levels_are_warning_at_80_and_alarm_at_100_percent(void **state) {
  (void)state;
  assert_int_equal(waste_allowance_level(0.79, 0.8, 1.0), 0);
  assert_int_equal(waste_allowance_level(0.8, 0.8, 1.0), 1);
  assert_int_equal(waste_allowance_level(0.999, 0.8, 1.0), 1);
  assert_int_equal(waste_allowance_level(1.0, 0.8, 1.0), 2);
  assert_int_equal(waste_allowance_level(NAN, 0.8, 1.0), 0);
}

static void loss_rate_takes_returns_off_the_deliveries(void **state) {
  (void)state;
  /* rebar: 1,920 t delivered, 12 t returned, 1,850 t in the design:
   * (1,920 - 12 - 1,850) / 1,850 = 58 / 1,850 = 3.135 %, over the 2.5 %
   * baseline and its 2.0 % target */
  assert_near(material_loss_rate(1920, 12, 1850), 58.0 / 1850.0);
  /* ready-mix concrete: 10,150 t against 10,000 t: 1.5 % */
  assert_near(material_loss_rate(10150, 0, 10000), 0.015);
  /* less delivered than designed (so far): negative */
  assert_near(material_loss_rate(900, 0, 1000), -0.1);
  assert_true(isnan(material_loss_rate(10, 0, 0)));
  /* before completion, against the design quantity to date: 3,100 t of
   * rebar at 42 % progress is 1,302 t; 1,340 delivered, 5 returned:
   * (1,340 - 5 - 1,302) / 1,302 = 33 / 1,302 = 2.53 % */
  assert_near(material_loss_rate(1340, 5, 3100 * 0.42), 33.0 / 1302.0);
  /* green share by mass: 700 of 1,920 t = 36.46 % */
  assert_near(material_green_share(700, 1920), 700.0 / 1920.0);
  assert_true(isnan(material_green_share(0, 0)));
}

/* ---- bill of quantities */
static proto_boq_item_t *items;
static size_t n_items;
static char err[4096];

static int parse(const char *text) {
  free(items);
  items = NULL;
  return proto_boq_parse(text, strlen(text), &items, &n_items, err, sizeof(err));
}

static void boq_reads_a_spreadsheet_export(void **state) {
  (void)state;
  const char *csv = "\xef\xbb\xbf"
                    "序号,Material,Description,Unit,Net_Qty,备注\r\n"
                    "# structure\r\n"
                    "1,rebar,\"HRB400 钢筋, 含箍筋\",t,1850.5,\r\n"
                    "\r\n"
                    "2,ready_mix,\"C30 商品混凝土 (\"\"泵送\"\")\",t,10000,\r\n"
                    "3,blocks,加气块,kg,420000,\r\n"
                    "4,formwork_timber,\"多层板\nand battens\",t,95,x\r\n"
                    "5 , glass , , t , 12.25 ,";
  int rc = parse(csv);
  if (rc)
    print_error("%s\n", err);
  assert_int_equal(rc, 0);
  assert_int_equal(n_items, 5);
  assert_string_equal(items[0].material, "rebar");
  assert_near(items[0].net_t, 1850.5);
  assert_string_equal(items[0].description, "HRB400 钢筋, 含箍筋");
  assert_int_equal(items[0].line, 3);
  assert_string_equal(items[1].description, "C30 商品混凝土 (\"泵送\")");
  assert_int_equal(items[1].line, 5);
  assert_near(items[2].net_t, 420.0); /* kg to t */
  assert_string_equal(items[3].description, "多层板\nand battens");
  assert_int_equal(items[3].line, 7);
  assert_string_equal(items[4].material, "glass");
  assert_near(items[4].net_t, 12.25);
  assert_int_equal(items[4].line, 9); /* the quoted line break counted */
}

static void boq_names_every_bad_line(void **state) {
  (void)state;
  const char *csv = "material,unit,net_qty\n" /* 1 */
                    "rebar,t,1850\n"          /* 2 */
                    "ready_mix,m3,4200\n"     /* 3: unit */
                    "blocks,t,\"12,5\"\n"     /* 4: decimal comma */
                    "钢筋,t,10\n"             /* 5: material id */
                    "rebar,t,20\n"            /* 6: again */
                    "timber,t,-3\n"           /* 7: negative */
                    "glass,t\n"               /* 8: short */
                    "gypsum,t,\"4\"x\n"       /* 9: junk after a quote */
                    "plastic,t,\"7\n";        /* 10: never closed */
  assert_int_equal(parse(csv), -EBADMSG);
  static const char *const want[] = {
      "line 3: unit \"m3\" of ready_mix: give quantities in t or kg",
      "line 4: net_qty \"12,5\" of blocks is not a number",
      "line 5: material \"钢筋\" must be 1 to 31 of a-z 0-9 _",
      "line 6: rebar is listed again (first at line 2)",
      "line 7: net_qty -3 of timber must be more than 0",
      "line 8: has 2 fields; the header has column \"net_qty\" at field 3",
      "line 9: a quoted field is not closed properly",
      "line 10: a quoted field is not closed properly",
  };
  for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
    if (!strstr(err, want[i]))
      print_error("missing \"%s\" in:\n%s\n", want[i], err);
    assert_non_null(strstr(err, want[i]));
  }
  assert_null(strstr(err, "line 2:"));
  assert_null(items);
}

static void boq_needs_a_header_with_the_three_columns(void **state) {
  (void)state;
  assert_int_equal(parse("rebar,t,1850\n"), -EBADMSG);
  assert_non_null(strstr(err, "line 1: the header must name the columns material, unit and "
                              "net_qty"));
  assert_int_equal(parse("material,unit,qty\nrebar,t,1\n"), -EBADMSG);
  assert_non_null(strstr(err, "\"net_qty\" is missing"));
  assert_int_equal(parse("material,unit,net_qty,unit\n"), -EBADMSG);
  assert_non_null(strstr(err, "column \"unit\" appears twice"));
  assert_int_equal(parse(""), -EBADMSG);
  assert_non_null(strstr(err, "no header"));
  assert_int_equal(parse("material,unit,net_qty\n"), 0);
  assert_int_equal(n_items, 0);
  assert_int_equal(parse("material,unit,net_qty\nrebar,t,1\0junk"), 0); /* strlen stops */
  char bin[] = "material,unit,net_qty\nreb\0ar,t,1\n";
  free(items);
  items = NULL;
  assert_int_equal(proto_boq_parse(bin, sizeof(bin) - 1, &items, &n_items, err, sizeof(err)),
                   -EBADMSG);
  assert_non_null(strstr(err, "line 2: holds a NUL byte"));
}

static void boq_stops_naming_lines_after_twenty(void **state) {
  (void)state;
  char csv[8192] = "material,unit,net_qty\n";
  for (int i = 0; i < 30; i++)
    strcat(csv, "x,m3,1\n");
  assert_int_equal(parse(csv), -EBADMSG);
  assert_non_null(strstr(err, "line 21:"));
  assert_null(strstr(err, "line 22:"));
  assert_non_null(strstr(err, "... and 10 more bad lines"));
  char small[16];
  assert_int_equal(proto_boq_parse(csv, strlen(csv), &items, &n_items, small, sizeof(small)),
                   -EBADMSG);
  assert_true(strlen(small) < sizeof(small));
  free(items);
  items = NULL;
}

/* Hand-computed: 8 tickets of 10, 12, 11, 9, 10, 13, 10 and one of 170 t
 * (a typo): sorted 9 10 10 10 11 12 13 170, median (10 + 11) / 2 = 10.5,
 * times 8 = 84 t, where the plain sum is 245 t. */
static void recent_discharge_is_robust_to_one_outlier(void **state) {
  (void)state;
  double nets[] = {10, 12, 11, 9, 10, 13, 10, 170};
  assert_float_equal(waste_robust_discharge_t(nets, 8), 84.0, 1e-9);
  /* 14 t instead of 170 t: the same 84 t, the outlier weighs as one ticket. */
  double same[] = {10, 12, 11, 9, 10, 13, 10, 14};
  assert_float_equal(waste_robust_discharge_t(same, 8), 84.0, 1e-9);
}

/* Odd count: 5 tickets 8, 20, 9, 10, 11: median 10, times 5 = 50 t. Fewer
 * than five: the plain sum, 3 + 4 = 7 t. */
static void recent_discharge_takes_the_median_or_the_plain_sum_when_few(void **state) {
  (void)state;
  double five[] = {8, 20, 9, 10, 11};
  assert_float_equal(waste_robust_discharge_t(five, 5), 50.0, 1e-9);
  double two[] = {3, 4};
  assert_float_equal(waste_robust_discharge_t(two, 2), 7.0, 1e-9);
  assert_float_equal(waste_robust_discharge_t(NULL, 0), 0.0, 1e-9);
}

/* Rebar: baseline 2.5%, target 2.0%. 1.5% within, 2.2% over the target,
 * 3.0% over the baseline; -4.0% (less delivered than the design quantity
 * for the progress) cannot be judged, where it used to read 达标. */
static void a_negative_loss_rate_is_not_judged_compliant(void **state) {
  (void)state;
  assert_string_equal(material_loss_status(0.015, 0.025, 0.02), "within_target");
  assert_string_equal(material_loss_status(0.022, 0.025, 0.02), "over_target");
  assert_string_equal(material_loss_status(0.030, 0.025, 0.02), "over_baseline");
  assert_string_equal(material_loss_status(-0.04, 0.025, 0.02), "not_yet_judgeable");
  assert_string_equal(material_loss_status(NAN, 0.025, 0.02), "no_design_quantity");
  assert_string_equal(material_loss_status(0.01, NAN, NAN), "no_baseline");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(recent_discharge_is_robust_to_one_outlier),
      cmocka_unit_test(a_negative_loss_rate_is_not_judged_compliant),
      cmocka_unit_test(recent_discharge_takes_the_median_or_the_plain_sum_when_few),
      cmocka_unit_test(allowance_of_a_mixed_site_weights_both_limits_by_area),
      cmocka_unit_test(allowance_of_single_type_sites_is_the_plain_limit),
      cmocka_unit_test(a_site_without_floor_area_has_no_intensity),
      cmocka_unit_test(totals_split_generated_discharged_and_excluded),
      cmocka_unit_test(utilisation_counts_reuse_recycling_and_backfill),
      cmocka_unit_test(all_excluded_tickets_leave_nothing_to_count),
      cmocka_unit_test(a_compensating_entry_moves_a_ticket_between_destinations),
      cmocka_unit_test(totals_ignore_values_out_of_range),
      cmocka_unit_test(projection_scales_the_recent_rate_to_the_remaining_work),
      cmocka_unit_test(projection_needs_progress_and_stops_at_completion),
      cmocka_unit_test(allowance_levels_are_warning_at_80_and_alarm_at_100_percent),
      cmocka_unit_test(loss_rate_takes_returns_off_the_deliveries),
      cmocka_unit_test(boq_reads_a_spreadsheet_export),
      cmocka_unit_test(boq_names_every_bad_line),
      cmocka_unit_test(boq_needs_a_header_with_the_three_columns),
      cmocka_unit_test(boq_stops_naming_lines_after_twenty),
  };
  int rc = cmocka_run_group_tests(tests, NULL, NULL);
  free(items);
  return rc;
}
