/* The alarm model (gateway/rules/alarm.c): raise, no repeats, escalation,
 * hysteresis on the way down, acknowledgement, and the events each makes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "gateway/rules/rules.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define T0 1795132800.0 /* 2026-11-20T00:00:00Z */

typedef struct seen {
  int n;
  alarm_ev_t ev[32];
  stor_alarm_t a[32];
} seen_t;

static void on_event(void *arg, alarm_ev_t ev, const stor_alarm_t *a) {
  seen_t *s = arg;
  if (s->n < 32) {
    s->ev[s->n] = ev;
    s->a[s->n] = *a;
  }
  s->n++;
}

typedef struct fixture {
  alarm_model_t m;
  seen_t seen;
} fixture_t;

static int setup(void **state) {
  static fixture_t f;
  memset(&f, 0, sizeof(f));
  alarm_model_init(&f.m, 1);
  f.m.on_event = on_event;
  f.m.arg = &f.seen;
  *state = &f;
  return 0;
}

static int teardown(void **state) {
  fixture_t *f = *state;
  alarm_model_free(&f->m);
  return 0;
}

/* PM10 hourly: warning 150, alarm 200, clear 10 below the level's limit. */
static int64_t pm10(fixture_t *f, double figure, double now) {
  int level = figure >= 200 ? ALARM_ALARM : figure >= 150 ? ALARM_WARNING : ALARM_NORMAL;
  alarm_cond_t c = {.rule = "dust.pm10_long",
                    .source = "dust-01",
                    .level = level,
                    .figure = figure,
                    .limit = level == ALARM_ALARM ? 200 : 150,
                    .unit = "ug/m3",
                    .t = now,
                    .clear_margin = 10,
                    .hold_s = 300};
  return alarm_model_update(&f->m, &c, now);
}

static void a_normal_report_raises_nothing(void **state) {
  fixture_t *f = *state;
  assert_int_equal(pm10(f, 80, T0), 0);
  assert_int_equal(f->seen.n, 0);
  assert_int_equal(f->m.n, 0);
}

static void a_warning_raises_once_and_repeats_make_no_event(void **state) {
  fixture_t *f = *state;
  int64_t id = pm10(f, 160, T0);
  assert_true(id > 0);
  assert_int_equal(f->seen.n, 1);
  assert_int_equal(f->seen.ev[0], ALARM_EV_RAISED);
  assert_int_equal(f->seen.a[0].level, ALARM_WARNING);
  assert_true(f->seen.a[0].figure == 160 && f->seen.a[0].limit == 150);
  assert_string_equal(f->seen.a[0].unit, "ug/m3");
  assert_string_equal(f->seen.a[0].rule, "dust.pm10_long");
  assert_string_equal(f->seen.a[0].source, "dust-01");
  assert_true(strstr(f->seen.a[0].message, "160.0 ug/m3") != NULL);
  assert_int_equal(pm10(f, 170, T0 + 10), id);
  assert_int_equal(pm10(f, 165, T0 + 20), id);
  assert_int_equal(f->seen.n, 1);
  const stor_alarm_t *a = alarm_model_get(&f->m, id);
  assert_non_null(a);
  assert_true(a->figure == 165 && a->peak == 170);
}

static void a_higher_level_escalates_at_once_and_withdraws_the_ack(void **state) {
  fixture_t *f = *state;
  int64_t id = pm10(f, 160, T0);
  assert_int_equal(alarm_model_ack(&f->m, id, "wang.lei", "water cart sent", T0 + 5), 0);
  assert_int_equal(f->seen.ev[1], ALARM_EV_ACKED);
  assert_string_equal(f->seen.a[1].acked_by, "wang.lei");
  assert_string_equal(f->seen.a[1].note, "water cart sent");
  assert_true(f->seen.a[1].acked == T0 + 5);
  /* a second acknowledgement does not replace the first person's name */
  assert_int_equal(alarm_model_ack(&f->m, id, "root", "", T0 + 6), -EALREADY);
  assert_string_equal(alarm_model_find(&f->m, "dust.pm10_long", "dust-01")->acked_by, "wang.lei");
  assert_int_equal(f->seen.n, 2);
  assert_int_equal(pm10(f, 230, T0 + 10), id);
  assert_int_equal(f->seen.n, 3);
  assert_int_equal(f->seen.ev[2], ALARM_EV_ESCALATED);
  assert_int_equal(f->seen.a[2].level, ALARM_ALARM);
  assert_true(f->seen.a[2].limit == 200);
  assert_true(f->seen.a[2].acked == 0);
  assert_int_equal(f->seen.a[2].peak_level, ALARM_ALARM);
}

static void clearing_needs_the_hold_time_below_the_margin(void **state) {
  fixture_t *f = *state;
  int64_t id = pm10(f, 160, T0);
  /* 145 is normal by level but not 10 below the 150 limit: no progress. */
  assert_int_equal(pm10(f, 145, T0 + 60), id);
  assert_int_equal(pm10(f, 145, T0 + 600), id);
  assert_int_equal(f->seen.n, 1);
  /* 139 qualifies; the hold starts at T0+700 and needs 300 s. */
  assert_int_equal(pm10(f, 139, T0 + 700), id);
  assert_int_equal(pm10(f, 130, T0 + 999), id);
  assert_int_equal(f->seen.n, 1);
  assert_int_equal(pm10(f, 120, T0 + 1000), 0);
  assert_int_equal(f->seen.n, 2);
  assert_int_equal(f->seen.ev[1], ALARM_EV_CLEARED);
  assert_int_equal(f->seen.a[1].level, ALARM_NORMAL);
  assert_true(f->seen.a[1].cleared == T0 + 1000);
  assert_int_equal(f->seen.a[1].id, id);
  assert_int_equal(f->m.n, 0);
  /* The same condition later is a new alarm with a new id. */
  int64_t id2 = pm10(f, 155, T0 + 2000);
  assert_true(id2 > id);
  assert_int_equal(f->seen.ev[2], ALARM_EV_RAISED);
}

static void a_bad_report_during_the_hold_restarts_it(void **state) {
  fixture_t *f = *state;
  int64_t id = pm10(f, 160, T0);
  pm10(f, 100, T0 + 100);
  pm10(f, 151, T0 + 300); /* back at warning: hold restarts */
  pm10(f, 100, T0 + 350);
  assert_int_equal(pm10(f, 100, T0 + 500), id); /* 150 s into the new hold */
  assert_int_equal(f->seen.n, 1);
  assert_int_equal(pm10(f, 100, T0 + 650), 0);
  assert_int_equal(f->seen.ev[1], ALARM_EV_CLEARED);
}

static void an_alarm_deescalates_to_warning_after_the_hold(void **state) {
  fixture_t *f = *state;
  int64_t id = pm10(f, 250, T0);
  assert_int_equal(f->seen.a[0].level, ALARM_ALARM);
  pm10(f, 195, T0 + 10); /* warning by level, but within 10 of 200 */
  pm10(f, 185, T0 + 20); /* qualifies: hold from T0+20 */
  assert_int_equal(f->seen.n, 1);
  assert_int_equal(pm10(f, 180, T0 + 320), id);
  assert_int_equal(f->seen.n, 2);
  assert_int_equal(f->seen.ev[1], ALARM_EV_DEESCALATED);
  assert_int_equal(f->seen.a[1].level, ALARM_WARNING);
  assert_true(f->seen.a[1].limit == 150);
  assert_int_equal(f->seen.a[1].peak_level, ALARM_ALARM);
  assert_true(f->seen.a[1].peak == 250);
}

static void a_mixed_hold_goes_down_to_the_highest_level_reported(void **state) {
  fixture_t *f = *state;
  int64_t id = pm10(f, 250, T0);
  pm10(f, 100, T0 + 10);
  pm10(f, 170, T0 + 100); /* a warning in the hold: down to warning, not clear */
  assert_int_equal(pm10(f, 100, T0 + 310), id);
  assert_int_equal(f->seen.ev[1], ALARM_EV_DEESCALATED);
  assert_int_equal(f->seen.a[1].level, ALARM_WARNING);
}

static void a_negative_hold_clears_at_once(void **state) {
  fixture_t *f = *state;
  alarm_cond_t c = {.rule = "health.offline",
                    .source = "noise-01",
                    .level = 2,
                    .figure = 40,
                    .limit = 30,
                    .unit = "s",
                    .hold_s = -1};
  int64_t id = alarm_model_update(&f->m, &c, T0);
  assert_true(id > 0);
  c.level = 0;
  c.figure = 0;
  assert_int_equal(alarm_model_update(&f->m, &c, T0 + 1), 0);
  assert_int_equal(f->seen.ev[1], ALARM_EV_CLEARED);
}

/* Raised at night against 55; in the morning the limit is 70 and 60 dB is
 * normal: the alarm clears against the new limit. */
static void a_limit_that_moves_clears_against_the_new_one(void **state) {
  fixture_t *f = *state;
  alarm_cond_t c = {.rule = "noise.laeq",
                    .source = "noise-01",
                    .level = 2,
                    .figure = 60,
                    .limit = 55,
                    .clear_margin = 1,
                    .hold_s = 300};
  int64_t id = alarm_model_update(&f->m, &c, T0);
  c.level = 0;
  c.limit = 70;
  assert_int_equal(alarm_model_update(&f->m, &c, T0 + 10), id);
  assert_int_equal(alarm_model_update(&f->m, &c, T0 + 310), 0);
  assert_int_equal(f->seen.ev[1], ALARM_EV_CLEARED);
}

static void low_is_bad_rules_clear_above_the_limit(void **state) {
  fixture_t *f = *state;
  alarm_cond_t c = {.rule = "waste.reuse_rate",
                    .source = "SITE",
                    .level = 1,
                    .figure = 0.40,
                    .limit = 0.55,
                    .clear_margin = 0.02,
                    .hold_s = -1,
                    .low_is_bad = true};
  int64_t id = alarm_model_update(&f->m, &c, T0);
  c.figure = 0.30;
  alarm_model_update(&f->m, &c, T0 + 1);
  assert_true(alarm_model_get(&f->m, id)->peak == 0.30);
  c.level = 0;
  c.figure = 0.56; /* not 0.02 above 0.55 */
  assert_int_equal(alarm_model_update(&f->m, &c, T0 + 2), id);
  c.figure = 0.58;
  assert_int_equal(alarm_model_update(&f->m, &c, T0 + 3), 0);
}

static void conditions_are_kept_apart_by_rule_and_source(void **state) {
  fixture_t *f = *state;
  alarm_cond_t c = {
      .rule = "noise.laeq", .source = "noise-01", .level = 2, .figure = 60, .limit = 55};
  int64_t a = alarm_model_update(&f->m, &c, T0);
  c.source = "noise-02";
  int64_t b = alarm_model_update(&f->m, &c, T0);
  c.rule = "noise.night_lmax";
  int64_t d = alarm_model_update(&f->m, &c, T0);
  assert_true(a > 0 && b > a && d > b);
  assert_int_equal(f->m.n, 3);
  assert_non_null(alarm_model_find(&f->m, "noise.laeq", "noise-02"));
  assert_null(alarm_model_find(&f->m, "noise.laeq", "noise-03"));
}

static void bad_conditions_are_refused(void **state) {
  fixture_t *f = *state;
  alarm_cond_t c = {.rule = "noise.laeq", .source = "noise-01", .level = 3};
  assert_int_equal(alarm_model_update(&f->m, &c, T0), -EINVAL);
  c.level = 1;
  c.rule = "";
  assert_int_equal(alarm_model_update(&f->m, &c, T0), -EINVAL);
  c.rule = "noise.laeq";
  c.source = NULL;
  assert_int_equal(alarm_model_update(&f->m, &c, T0), -EINVAL);
  assert_int_equal(f->seen.n, 0);
}

static void ack_needs_a_person_and_an_active_alarm(void **state) {
  fixture_t *f = *state;
  int64_t id = pm10(f, 160, T0);
  assert_int_equal(alarm_model_ack(&f->m, id, "", "x", T0), -EINVAL);
  assert_int_equal(alarm_model_ack(&f->m, id + 1, "li", "x", T0), -ENOENT);
  assert_int_equal(alarm_model_ack(&f->m, id, "li", NULL, T0), 0);
  assert_string_equal(alarm_model_get(&f->m, id)->note, "");
  /* An acknowledged alarm still clears by the rules and then leaves. */
  pm10(f, 100, T0 + 10);
  assert_int_equal(pm10(f, 100, T0 + 400), 0);
  assert_int_equal(alarm_model_ack(&f->m, id, "li", "late", T0 + 500), -ENOENT);
}

static void restored_alarms_continue_and_ids_go_on(void **state) {
  fixture_t *f = *state;
  stor_alarm_t a = {.id = 41,
                    .rule = "dust.pm10_long",
                    .source = "dust-01",
                    .level = 1,
                    .figure = 160,
                    .limit = 150,
                    .peak = 160,
                    .raised = T0 - 100};
  assert_int_equal(alarm_model_restore(&f->m, &a), 0);
  assert_int_equal(pm10(f, 170, T0), 41); /* no new alarm, no event */
  assert_int_equal(f->seen.n, 0);
  alarm_cond_t c = {
      .rule = "noise.laeq", .source = "noise-01", .level = 2, .figure = 60, .limit = 55};
  assert_int_equal(alarm_model_update(&f->m, &c, T0), 42);
}

static void names_of_events_and_levels(void **state) {
  (void)state;
  assert_string_equal(alarm_event_name(ALARM_EV_RAISED), "raised");
  assert_string_equal(alarm_event_name(ALARM_EV_ACKED), "acked");
  assert_string_equal(alarm_event_name(99), "?");
  assert_string_equal(alarm_level_name(2), "alarm");
  assert_string_equal(alarm_level_name(1), "warning");
}

/* ---- the stored side (storage/alarms.c) */

static int collect(void *arg, const stor_alarm_t *a) {
  seen_t *s = arg;
  if (s->n < 32)
    s->a[s->n] = *a;
  s->n++;
  return 0;
}

typedef struct events {
  int n;
  int kind[8];
  char by[8][64], note[8][256];
  double figure[8];
} events_t;

static int collect_event(void *arg, int kind, double t, int level, double figure, double limit,
                         const char *by, const char *note) {
  events_t *e = arg;
  (void)t;
  (void)level;
  (void)limit;
  if (e->n < 8) {
    e->kind[e->n] = kind;
    e->figure[e->n] = figure;
    snprintf(e->by[e->n], sizeof(e->by[0]), "%s", by);
    snprintf(e->note[e->n], sizeof(e->note[0]), "%s", note);
  }
  e->n++;
  return 0;
}

/* The model's events, written as the daemon writes them, read back: the
 * active set for a restart, the history and each alarm's events. */
static void events_are_stored_and_read_back_in_order(void **state) {
  fixture_t *f = *state;
  char dir[] = "/tmp/sitegate-alarm.XXXXXX", path[256];
  assert_non_null(mkdtemp(dir));
  snprintf(path, sizeof(path), "%s/a.db", dir);
  stor_options_t o = {.path = path, .batch_ms = 10};
  stor_db_t *db = NULL;
  assert_int_equal(stor_open(&o, &db), 0);

  int64_t id = pm10(f, 160, T0);
  alarm_model_ack(&f->m, id, "wang.lei", "water cart sent", T0 + 5);
  pm10(f, 230, T0 + 10);
  alarm_cond_t c = {.rule = "health.offline",
                    .source = "noise-01",
                    .level = 2,
                    .figure = NAN,
                    .limit = 30,
                    .unit = "s",
                    .hold_s = -1};
  int64_t id2 = alarm_model_update(&f->m, &c, T0 + 20);
  c.level = 0;
  alarm_model_update(&f->m, &c, T0 + 30); /* cleared at once */
  assert_int_equal(f->seen.n, 5);
  stor_alarm_event_t ev[5];
  for (int i = 0; i < 5; i++)
    ev[i] = (stor_alarm_event_t){.alarm = f->seen.a[i], .kind = (int)f->seen.ev[i], .t = T0 + i};
  assert_int_equal(stor_alarm_write(db, ev, 3), 0);
  assert_int_equal(stor_alarm_write(db, ev + 3, 2), 0);

  stor_reader_t *r = NULL;
  assert_int_equal(stor_reader_open(path, &r), 0);
  seen_t got = {0};
  int64_t max_id = 0;
  assert_int_equal(stor_alarm_active(r, collect, &got, &max_id), 0);
  assert_int_equal(got.n, 1);
  assert_int_equal(max_id, id2);
  assert_int_equal(got.a[0].id, id);
  assert_int_equal(got.a[0].level, ALARM_ALARM);
  assert_true(got.a[0].figure == 230 && got.a[0].peak == 230 && got.a[0].limit == 200);
  assert_true(got.a[0].acked == 0); /* the escalation withdrew it */
  assert_string_equal(got.a[0].unit, "ug/m3");

  memset(&got, 0, sizeof(got));
  assert_int_equal(stor_alarm_history(r, 0, false, 10, collect, &got), 0);
  assert_int_equal(got.n, 2);
  assert_int_equal(got.a[0].id, id2); /* newest first */
  assert_true(got.a[0].cleared == T0 + 30 && isnan(got.a[0].figure));

  events_t e = {0};
  assert_int_equal(stor_alarm_events(r, id, collect_event, &e), 0);
  assert_int_equal(e.n, 3);
  assert_int_equal(e.kind[0], ALARM_EV_RAISED);
  assert_int_equal(e.kind[1], ALARM_EV_ACKED);
  assert_string_equal(e.by[1], "wang.lei");
  assert_string_equal(e.note[1], "water cart sent");
  assert_int_equal(e.kind[2], ALARM_EV_ESCALATED);
  assert_string_equal(e.by[2], "");
  assert_true(e.figure[2] == 230);

  stor_alarm_t one;
  assert_int_equal(stor_alarm_get(r, id2, &one), 0);
  assert_string_equal(one.rule, "health.offline");
  assert_int_equal(stor_alarm_get(r, 999, &one), -ENOENT);

  /* A restarted model goes on from the stored state. */
  alarm_model_t m2;
  alarm_model_init(&m2, 1);
  memset(&got, 0, sizeof(got));
  assert_int_equal(stor_alarm_active(r, collect, &got, &max_id), 0);
  assert_int_equal(alarm_model_restore(&m2, &got.a[0]), 0);
  if (max_id >= m2.next_id)
    m2.next_id = max_id + 1;
  assert_int_equal(m2.next_id, id2 + 1);
  assert_non_null(alarm_model_find(&m2, "dust.pm10_long", "dust-01"));
  alarm_model_free(&m2);

  stor_reader_close(r);
  stor_close(db);
  char cmd[300];
  snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
  assert_int_equal(system(cmd), 0);
}

/* ---- the storage tally: what an acknowledgement waiting for its event is told */

/* Two events wait; the acknowledgement is the third. One write of all
 * three commits it. */
static void an_event_is_stored_once_all_before_it_are_committed(void **state) {
  (void)state;
  alarm_tally_t t = {0};
  alarm_tally_made(&t, 0);
  alarm_tally_made(&t, 0);
  alarm_tally_t then = t;
  alarm_tally_made(&t, 0);
  assert_int_equal(t.made, 3);
  assert_int_equal(alarm_tally_outcome(&t, &then, 3), -EINPROGRESS);
  alarm_tally_written(&t, 2, 0, false); /* the two before it */
  assert_int_equal(alarm_tally_outcome(&t, &then, 3), -EINPROGRESS);
  alarm_tally_written(&t, 1, 0, false);
  assert_int_equal(t.stored, 3);
  assert_int_equal(alarm_tally_outcome(&t, &then, 3), 0);
}

/* The review's case: the write of events 1-3 fails and they cannot be put
 * back; they were counted stored, so the acknowledgement (3) was answered
 * as stored although it is gone. Now they are lost: 3 made, 0 stored, 3
 * lost, and the acknowledgement is told -EIO, also after event 4 is
 * committed (the old count would then have reached 4 >= 3). */
static void events_that_cannot_be_put_back_are_lost_not_stored(void **state) {
  (void)state;
  alarm_tally_t t = {0};
  alarm_tally_made(&t, 0);
  alarm_tally_made(&t, 0);
  alarm_tally_t then = t;
  alarm_tally_made(&t, 0);
  alarm_tally_written(&t, 3, -EIO, false);
  assert_int_equal(t.stored, 0);
  assert_int_equal(t.lost, 3);
  assert_int_equal(t.failures, 1);
  assert_int_equal(alarm_tally_outcome(&t, &then, 3), -EIO);
  alarm_tally_made(&t, 0);
  alarm_tally_written(&t, 1, 0, false);
  assert_int_equal(t.stored, 1);
  assert_int_equal(alarm_tally_outcome(&t, &then, 3), -EIO);
}

/* A failed write whose events were put back: -EIO to a waiter (the retry
 * comes with the next report), but nothing is lost, and once the retry
 * commits them they count as stored. */
static void a_failed_write_that_was_put_back_is_retried(void **state) {
  (void)state;
  alarm_tally_t t = {0};
  alarm_tally_t then = t;
  alarm_tally_made(&t, 0);
  alarm_tally_written(&t, 1, -EIO, true);
  assert_int_equal(t.lost, 0);
  assert_int_equal(t.stored, 0);
  assert_int_equal(alarm_tally_outcome(&t, &then, 1), -EIO);
  alarm_tally_written(&t, 1, 0, false);
  assert_int_equal(t.stored, 1);
  assert_int_equal(alarm_tally_outcome(&t, &then, 1), 0);
}

/* An event that could not even be queued is lost at once. An event lost
 * before the acknowledgement was made does not taint it: event 1 lost,
 * the acknowledgement is 2 and is stored once 1 event is committed. */
static void an_event_that_cannot_be_queued_is_lost(void **state) {
  (void)state;
  alarm_tally_t t = {0};
  alarm_tally_t then = t;
  alarm_tally_made(&t, -ENOMEM);
  assert_int_equal(t.made, 1);
  assert_int_equal(t.lost, 1);
  assert_int_equal(alarm_tally_outcome(&t, &then, 1), -EIO);
  then = t;
  alarm_tally_made(&t, 0);
  assert_int_equal(alarm_tally_outcome(&t, &then, 2), -EINPROGRESS);
  alarm_tally_written(&t, 1, 0, false);
  assert_int_equal(alarm_tally_outcome(&t, &then, 2), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(an_event_is_stored_once_all_before_it_are_committed),
      cmocka_unit_test(events_that_cannot_be_put_back_are_lost_not_stored),
      cmocka_unit_test(a_failed_write_that_was_put_back_is_retried),
      cmocka_unit_test(an_event_that_cannot_be_queued_is_lost),
      cmocka_unit_test_setup_teardown(a_normal_report_raises_nothing, setup, teardown),
      cmocka_unit_test_setup_teardown(a_warning_raises_once_and_repeats_make_no_event, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(a_higher_level_escalates_at_once_and_withdraws_the_ack, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(clearing_needs_the_hold_time_below_the_margin, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(a_bad_report_during_the_hold_restarts_it, setup, teardown),
      cmocka_unit_test_setup_teardown(an_alarm_deescalates_to_warning_after_the_hold, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(a_mixed_hold_goes_down_to_the_highest_level_reported, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(a_negative_hold_clears_at_once, setup, teardown),
      cmocka_unit_test_setup_teardown(low_is_bad_rules_clear_above_the_limit, setup, teardown),
      cmocka_unit_test_setup_teardown(a_limit_that_moves_clears_against_the_new_one, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(conditions_are_kept_apart_by_rule_and_source, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(bad_conditions_are_refused, setup, teardown),
      cmocka_unit_test_setup_teardown(ack_needs_a_person_and_an_active_alarm, setup, teardown),
      cmocka_unit_test_setup_teardown(restored_alarms_continue_and_ids_go_on, setup, teardown),
      cmocka_unit_test(names_of_events_and_levels),
      cmocka_unit_test_setup_teardown(events_are_stored_and_read_back_in_order, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
