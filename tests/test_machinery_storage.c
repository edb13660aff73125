/* Machinery rows in storage (storage/machinery.c): the register with its
 * audit trail, the import in one transaction, and entries and exits, a
 * gate's resend recognised by (gate, no); what the uplink reads of them
 * (the audit's rows in columns, moves after an id) and a day's figures of
 * every machine from them (gateway/machinery/machinery_days.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "common/common.h"
#include "gateway/machinery/machinery.h"
#include "protocol/protocol.h"
#include "storage/storage.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct fx {
  char dir[64], path[96];
  stor_db_t *db;
  stor_reader_t *r;
} fx_t;

static int setup(void **state) {
  fx_t *f = calloc(1, sizeof(*f));
  snprintf(f->dir, sizeof(f->dir), "/tmp/sitegate-mach.XXXXXX");
  assert_non_null(mkdtemp(f->dir));
  snprintf(f->path, sizeof(f->path), "%s/t.db", f->dir);
  stor_options_t o = {.path = f->path, .batch_ms = 20, .queue_max = 10000, .raw_days = 31};
  assert_int_equal(stor_open(&o, &f->db), 0);
  assert_int_equal(stor_reader_open(f->path, &f->r), 0);
  *state = f;
  return 0;
}

static int teardown(void **state) {
  fx_t *f = *state;
  stor_reader_close(f->r);
  stor_close(f->db);
  char p[128];
  const char *suffix[] = {"", "-wal", "-shm"};
  for (int i = 0; i < 3; i++) {
    snprintf(p, sizeof(p), "%s%s", f->path, suffix[i]);
    unlink(p);
  }
  rmdir(f->dir);
  free(f);
  return 0;
}

static proto_machine_t machine(const char *code, int stage, double kw) {
  proto_machine_t m;
  memset(&m, 0, sizeof(m));
  snprintf(m.code, sizeof(m.code), "%s", code);
  snprintf(m.type, sizeof(m.type), "excavator");
  m.stage = (int8_t)stage;
  m.power_kw = kw;
  m.fuel = stage == PROTO_STAGE_ELECTRIC ? PROTO_FUEL_ELECTRIC : PROTO_FUEL_DIESEL;
  return m;
}

static int count_machine(void *arg, const stor_machine_t *m) {
  (void)m;
  ++*(int *)arg;
  return 0;
}

static int count_audit(void *arg, const stor_machine_audit_t *a) {
  (void)a;
  ++*(int *)arg;
  return 0;
}

static void register_changes_are_audited_with_who_and_why(void **state) {
  fx_t *f = *state;
  proto_machine_t m = machine("A1", PROTO_STAGE_II, 75);
  assert_int_equal(stor_machine_put(f->db, &m, true, "wang", "arrived for piling", 100), 0);
  assert_int_equal(stor_machine_put(f->db, &m, true, "wang", "again", 101), -EEXIST);
  proto_machine_t other = machine("B2", PROTO_STAGE_III, 90);
  assert_int_equal(stor_machine_put(f->db, &other, false, "wang", "no such", 102), -ENOENT);
  m.stage = PROTO_STAGE_III;
  assert_int_equal(stor_machine_put(f->db, &m, false, "li", "engine replaced", 200), 0);
  stor_machine_t got;
  assert_int_equal(stor_machine_get(f->r, "A1", &got), 0);
  assert_int_equal(got.m.stage, PROTO_STAGE_III);
  assert_true(got.added == 100 && got.changed == 200 && got.retired == 0);
  assert_int_equal(stor_machine_retire(f->db, "A1", "li", "left the project", 300), 0);
  assert_int_equal(stor_machine_retire(f->db, "A1", "li", "twice", 301), -ENOENT);
  int n = 0;
  assert_int_equal(stor_machine_list(f->r, false, count_machine, &n), 0);
  assert_int_equal(n, 0);
  assert_int_equal(stor_machine_list(f->r, true, count_machine, &n), 0);
  assert_int_equal(n, 1);
  assert_int_equal(stor_machine_get(f->r, "A1", &got), 0);
  assert_true(got.retired == 300);
  assert_int_equal(stor_machine_get(f->r, "ZZ", &got), -ENOENT);
  n = 0;
  assert_int_equal(stor_machine_audit(f->r, "A1", 100, count_audit, &n), 0);
  assert_int_equal(n, 3);
  /* a retired code may come back */
  assert_int_equal(stor_machine_put(f->db, &m, true, "wang", "back", 400), 0);
  assert_int_equal(stor_machine_get(f->r, "A1", &got), 0);
  assert_true(got.retired == 0 && got.added == 400);
}

static void import_adds_and_changes_in_one_go(void **state) {
  fx_t *f = *state;
  proto_machine_t m = machine("A1", PROTO_STAGE_II, 75);
  assert_int_equal(stor_machine_put(f->db, &m, true, "wang", "first", 100), 0);
  proto_machine_t items[2] = {machine("A1", PROTO_STAGE_IV, 75),
                              machine("E9", PROTO_STAGE_ELECTRIC, 40)};
  size_t added = 9, changed = 9;
  assert_int_equal(
      stor_machine_import(f->db, items, 2, "wang", "ledger of 12-01", 200, &added, &changed), 0);
  assert_int_equal(added, 1);
  assert_int_equal(changed, 1);
  stor_machine_t got;
  assert_int_equal(stor_machine_get(f->r, "A1", &got), 0);
  assert_int_equal(got.m.stage, PROTO_STAGE_IV);
  assert_int_equal(stor_machine_get(f->r, "E9", &got), 0);
}

static stor_move_t move(const char *gate, int64_t no, const char *code, bool in, double t) {
  stor_move_t mv;
  memset(&mv, 0, sizeof(mv));
  snprintf(mv.gate, sizeof(mv.gate), "%s", gate);
  mv.no = no;
  snprintf(mv.code, sizeof(mv.code), "%s", code);
  mv.in = in;
  mv.t = t;
  snprintf(mv.source, sizeof(mv.source), "gate");
  mv.received = t;
  return mv;
}

static int last_move(void *arg, const stor_move_t *mv) {
  stor_move_t *out = arg;
  out[strcmp(mv->code, "A1") == 0 ? 0 : 1] = *mv;
  return 0;
}

static void gate_resend_is_stored_once_and_other_content_conflicts(void **state) {
  fx_t *f = *state;
  stor_move_result_t res;
  stor_move_t a = move("gate-01", 7, "A1", true, 1000);
  assert_int_equal(stor_move_commit(f->db, &a, &res), 0);
  assert_int_equal(res.status, STOR_MOVE_CREATED);
  int64_t id = res.id;
  assert_int_equal(stor_move_commit(f->db, &a, &res), 0);
  assert_int_equal(res.status, STOR_MOVE_SAME);
  assert_int_equal(res.id, id);
  stor_move_t b = move("gate-01", 7, "A1", false, 1000);
  assert_int_equal(stor_move_commit(f->db, &b, &res), 0);
  assert_int_equal(res.status, -EEXIST);
  assert_int_equal(res.id, id);
  /* a person's moves have no number and are always new */
  stor_move_t c = move("sitectl", 0, "A1", false, 2000), d = move("sitectl", 0, "B2", true, 1500);
  assert_int_equal(stor_move_commit(f->db, &c, &res), 0);
  assert_int_equal(stor_move_commit(f->db, &c, &res), 0);
  assert_int_equal(res.status, STOR_MOVE_CREATED);
  assert_int_equal(stor_move_commit(f->db, &d, &res), 0);
  stor_move_t last[2];
  memset(last, 0, sizeof(last));
  assert_int_equal(stor_machine_last_moves(f->r, last_move, last), 0);
  assert_false(last[0].in);
  assert_true(last[0].t == 2000);
  assert_true(last[1].in);
  assert_string_equal(last[1].code, "B2");
}

static int keep_audit(void *arg, const stor_machine_audit_t *a) {
  stor_machine_audit_t *out = arg;
  for (int i = 0; i < 4; i++)
    if (out[i].id == 0) {
      out[i] = *a;
      return 0;
    }
  fail_msg("more than 4 audit rows");
  return 1;
}

static int count_move(void *arg, const stor_move_t *mv) {
  (void)mv;
  ++*(int *)arg;
  return 0;
}

/* The uplink reads changes and moves after its cursor, in the order
 * stored, each change with the register's row as it was after it. */
static void uplink_reads_changes_with_their_rows_and_moves_after_an_id(void **state) {
  fx_t *f = *state;
  proto_machine_t m = machine("A1", PROTO_STAGE_II, 75);
  assert_int_equal(stor_machine_put(f->db, &m, true, "wang", "arrived", 100), 0);
  m.stage = PROTO_STAGE_III;
  assert_int_equal(stor_machine_put(f->db, &m, false, "wang", "new engine", 200), 0);
  assert_int_equal(stor_machine_retire(f->db, "A1", "li", "left", 300), 0);
  stor_machine_audit_t a[4];
  memset(a, 0, sizeof(a));
  assert_int_equal(stor_machine_audit_after(f->r, 0, 10, keep_audit, a), 0);
  assert_string_equal(a[0].action, "add");
  assert_true(a[0].has_row && a[0].row.stage == PROTO_STAGE_II && a[0].row.power_kw == 75);
  assert_true(a[1].has_row && a[1].row.stage == PROTO_STAGE_III);
  assert_string_equal(a[2].action, "retire");
  assert_false(a[2].has_row);
  assert_int_equal(a[3].id, 0);
  int64_t added = a[0].id;
  memset(a, 0, sizeof(a));
  assert_int_equal(stor_machine_audit_after(f->r, added, 1, keep_audit, a), 0);
  assert_string_equal(a[0].action, "change"); /* after the first, at most one */
  assert_int_equal(a[1].id, 0);
  stor_move_result_t res;
  stor_move_t x = move("gate-01", 1, "A1", true, 400), y = move("gate-01", 2, "A1", false, 500);
  assert_int_equal(stor_move_commit(f->db, &x, &res), 0);
  int64_t first = res.id;
  assert_int_equal(stor_move_commit(f->db, &y, &res), 0);
  int n = 0;
  assert_int_equal(stor_machine_moves_after(f->r, 0, 10, count_move, &n), 0);
  assert_int_equal(n, 2);
  n = 0;
  assert_int_equal(stor_machine_moves_after(f->r, first, 10, count_move, &n), 0);
  assert_int_equal(n, 1);
}

typedef struct day_row {
  char code[32];
  bool registered;
  double onsite_h, nox_kg;
} day_row_t;

static int keep_day(void *arg, const char *code, const stor_machine_t *m, const mach_day_t *d) {
  day_row_t *out = arg;
  for (int i = 0; i < 4; i++)
    if (!out[i].code[0]) {
      snprintf(out[i].code, sizeof(out[i].code), "%s", code);
      out[i].registered = m != NULL;
      out[i].onsite_h = d->onsite_h;
      out[i].nox_kg = d->nox_kg;
      return 0;
    }
  fail_msg("more than 4 machines");
  return 1;
}

/* 2026-11-21 (Beijing): A1 through the gate 08:00-17:00 (9 h), B2 not in
 * the register, in by hand 10:00-11:30, A3 registered and never there; the
 * day before, A1 was registered. Hand-computed: A1 9 h, B2 1.5 h, A3 not
 * reported; no terminal, so no engine hours and no NOx. */
static void a_day_reports_each_machine_on_site_once(void **state) {
  fx_t *f = *state;
  setenv("TZ", "Asia/Shanghai", 1);
  tzset();
  const double day = 1795190400; /* 2026-11-21T00:00:00+08:00 */
  sg_config_t *cfg;
  char err[256];
  assert_int_equal(sg_config_parse("[site]\nid = UT\n", "ut.conf", &cfg, err, sizeof(err)), 0);
  proto_machine_t a1 = machine("A1", PROTO_STAGE_II, 75), a3 = machine("A3", PROTO_STAGE_IV, 90);
  assert_int_equal(stor_machine_put(f->db, &a1, true, "wang", "arrived", day - 86400), 0);
  assert_int_equal(stor_machine_put(f->db, &a3, true, "wang", "arrived", day - 86400), 0);
  stor_move_result_t res;
  stor_move_t mv[] = {move("gate-01", 1, "A1", true, day + 8 * 3600),
                      move("gate-01", 2, "A1", false, day + 17 * 3600),
                      move("sitectl", 0, "B2", true, day + 10 * 3600),
                      move("sitectl", 0, "B2", false, day + 11.5 * 3600),
                      move("gate-01", 3, "A1", true, day + 86400 + 3600)}; /* the next day */
  for (size_t i = 0; i < sizeof(mv) / sizeof(mv[0]); i++)
    assert_int_equal(stor_move_commit(f->db, &mv[i], &res), 0);
  day_row_t rows[4];
  memset(rows, 0, sizeof(rows));
  assert_int_equal(machinery_days(f->r, cfg, day, day + 86400, keep_day, rows), 0);
  assert_string_equal(rows[0].code, "A1");
  assert_true(rows[0].registered);
  assert_true(fabs(rows[0].onsite_h - 9) < 1e-9);
  assert_true(rows[0].nox_kg == 0);
  assert_string_equal(rows[1].code, "B2");
  assert_false(rows[1].registered);
  assert_true(fabs(rows[1].onsite_h - 1.5) < 1e-9);
  assert_string_equal(rows[2].code, "");
  sg_config_free(cfg);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(register_changes_are_audited_with_who_and_why, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(import_adds_and_changes_in_one_go, setup, teardown),
      cmocka_unit_test_setup_teardown(gate_resend_is_stored_once_and_other_content_conflicts, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(uplink_reads_changes_with_their_rows_and_moves_after_an_id,
                                      setup, teardown),
      cmocka_unit_test_setup_teardown(a_day_reports_each_machine_on_site_once, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
