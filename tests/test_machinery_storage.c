/* Machinery rows in storage (storage/machinery.c): the register with its
 * audit trail, the import in one transaction, and entries and exits, a
 * gate's resend recognised by (gate, no). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "common/common.h"
#include "protocol/protocol.h"
#include "storage/storage.h"

#include <errno.h>
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

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(register_changes_are_audited_with_who_and_why, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(import_adds_and_changes_in_one_go, setup, teardown),
      cmocka_unit_test_setup_teardown(gate_resend_is_stored_once_and_other_content_conflicts, setup,
                                      teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
