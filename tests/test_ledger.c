/* The waste and material ledger (storage/ledger.c): durable commits with
 * idempotent resends and conflicts, corrections by reversal, sums, the
 * hash chain in its documented canonical form, and tampering with stored
 * rows (with the sqlite3 shell, as someone with the file would) found by
 * the verifier; only storage/ includes SQLite's header. Also the progress
 * history and the bill of quantities. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "protocol/protocol.h"
#include "storage/storage.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char dir[64], path[128];
static stor_db_t *db;
static stor_reader_t *rd;

static void open_db(void) {
  stor_options_t o = {.path = path, .batch_ms = 10, .queue_max = 1000, .raw_days = 31};
  assert_int_equal(stor_open(&o, &db), 0);
  assert_int_equal(stor_reader_open(path, &rd), 0);
}

static void close_db(void) {
  stor_reader_close(rd);
  rd = NULL;
  stor_close(db);
  db = NULL;
}

static int setup(void **state) {
  (void)state;
  snprintf(dir, sizeof(dir), "/tmp/sitegate-ledger.XXXXXX");
  assert_non_null(mkdtemp(dir));
  snprintf(path, sizeof(path), "%s/l.db", dir);
  open_db();
  return 0;
}

static int teardown(void **state) {
  (void)state;
  close_db();
  char cmd[160];
  snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
  assert_int_equal(system(cmd), 0);
  return 0;
}

/* The DESIGN.md example ticket. */
static stor_ticket_t example(int64_t no) {
  stor_ticket_t t;
  memset(&t, 0, sizeof(t));
  strcpy(t.source, "scale");
  strcpy(t.type, "waste");
  strcpy(t.scale, "wb-01");
  t.no = no;
  t.t = 1764100000;
  strcpy(t.plate, "黑A12345");
  strcpy(t.dir, "out");
  t.weighed = true;
  t.gross_kg = 31800;
  t.tare_kg = 14200;
  t.net_kg = 17600;
  strcpy(t.category, "engineering");
  strcpy(t.kind, "concrete");
  strcpy(t.dest, "recycling");
  strcpy(t.dest_name, "哈尔滨再生资源厂");
  return t;
}

static stor_ticket_t delivery(int64_t no, int64_t kg, bool green) {
  stor_ticket_t t;
  memset(&t, 0, sizeof(t));
  strcpy(t.source, "scale");
  strcpy(t.type, "delivery");
  strcpy(t.scale, "wb-01");
  t.no = no;
  t.t = 1764100100;
  strcpy(t.dir, "in");
  t.net_kg = kg;
  strcpy(t.material, "rebar");
  t.green_cert = green;
  return t;
}

static stor_ticket_result_t commit(const stor_ticket_t *t) {
  stor_ticket_result_t res;
  assert_int_equal(stor_ticket_commit(db, t, &res), 0);
  return res;
}

static void hex(const uint8_t h[32], char out[65]) {
  for (int i = 0; i < 32; i++)
    sprintf(out + 2 * i, "%02x", h[i]);
}

/* ---- commits */
static void a_ticket_is_stored_once_and_a_resend_finds_it(void **state) {
  (void)state;
  stor_ticket_t t = example(1042);
  stor_ticket_result_t a = commit(&t), b;
  assert_int_equal(a.status, STOR_TICKET_CREATED);
  assert_int_equal(a.id, 1);
  /* visible at once on another connection: it is committed */
  stor_ticket_t got;
  assert_int_equal(stor_ticket_get(rd, 1, &got), 0);
  assert_int_equal(got.net_kg, 17600);
  assert_string_equal(got.plate, "黑A12345");
  assert_memory_equal(got.hash, a.hash, 32);
  /* the same ticket again: same id and hash, nothing new */
  b = commit(&t);
  assert_int_equal(b.status, STOR_TICKET_SAME);
  assert_int_equal(b.id, 1);
  assert_memory_equal(b.hash, a.hash, 32);
  /* a note or who typed it does not make it another ticket */
  strcpy(t.source, "manual");
  strcpy(t.note, "retyped");
  assert_int_equal(commit(&t).status, STOR_TICKET_SAME);
  /* the same number with other content is a conflict */
  t = example(1042);
  t.net_kg = 17000;
  b = commit(&t);
  assert_int_equal(b.status, -EEXIST);
  assert_int_equal(b.id, 1);
  t = example(1042);
  strcpy(t.dest, "disposal");
  assert_int_equal(commit(&t).status, -EEXIST);
  /* another scale may use the same number */
  t = example(1042);
  strcpy(t.scale, "wb-02");
  b = commit(&t);
  assert_int_equal(b.status, STOR_TICKET_CREATED);
  assert_int_equal(b.id, 2);
  /* entries without a slip number are never matched */
  t = example(0);
  strcpy(t.source, "manual");
  t.scale[0] = '\0';
  assert_int_equal(commit(&t).id, 3);
  assert_int_equal(commit(&t).id, 4);
}

static void bad_tickets_are_refused_before_the_queue(void **state) {
  (void)state;
  stor_ticket_t t = example(1);
  stor_ticket_result_t res;
  strcpy(t.type, "rubbish");
  assert_int_equal(stor_ticket_commit(db, &t, &res), -EINVAL);
  t = example(1);
  t.net_kg = 0;
  assert_int_equal(stor_ticket_commit(db, &t, &res), -EINVAL);
  t = example(1);
  memset(t.plate, 'x', sizeof(t.plate)); /* no NUL */
  assert_int_equal(stor_ticket_commit(db, &t, &res), -EINVAL);
  t = example(1);
  t.scale[0] = '\0'; /* a number needs its scale */
  assert_int_equal(stor_ticket_commit(db, &t, &res), -EINVAL);
}

struct async {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int done;
  pthread_t caller;
  bool other_thread;
  int64_t ids[8];
};

static void on_done(void *arg, const stor_ticket_result_t *res) {
  struct async *a = arg;
  pthread_mutex_lock(&a->mu);
  a->other_thread = !pthread_equal(a->caller, pthread_self());
  if (a->done < 8)
    a->ids[a->done] = res->status == STOR_TICKET_CREATED ? res->id : -1;
  a->done++;
  pthread_cond_signal(&a->cv);
  pthread_mutex_unlock(&a->mu);
}

static void submissions_return_at_once_and_complete_on_the_writer(void **state) {
  (void)state;
  struct async a = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};
  a.caller = pthread_self();
  for (int i = 0; i < 8; i++) {
    stor_ticket_t t = example(100 + i);
    assert_int_equal(stor_ticket_submit(db, &t, on_done, &a), 0);
  }
  pthread_mutex_lock(&a.mu);
  while (a.done < 8)
    pthread_cond_wait(&a.cv, &a.mu);
  pthread_mutex_unlock(&a.mu);
  assert_true(a.other_thread);
  for (int i = 0; i < 8; i++)
    assert_int_equal(a.ids[i], i + 1); /* in submission order */
}

/* ---- corrections */
static void a_correction_reverses_and_replaces_without_touching_the_entry(void **state) {
  (void)state;
  stor_ticket_t t = example(7);
  stor_ticket_result_t orig = commit(&t), res;
  stor_ticket_t rep = example(0);
  strcpy(rep.source, "manual");
  strcpy(rep.dest, "disposal");
  strcpy(rep.dest_name, "松北填埋场");
  assert_int_equal(stor_ticket_correct(db, orig.id, &rep, "去向填错: 实为填埋", &res), 0);
  assert_int_equal(res.status, STOR_TICKET_CREATED);
  assert_int_equal(res.id, 2);
  assert_int_equal(res.id2, 3);

  stor_ticket_t got;
  assert_int_equal(stor_ticket_get(rd, 1, &got), 0); /* unchanged */
  assert_int_equal(got.net_kg, 17600);
  assert_false(got.reversal);
  assert_int_equal(stor_ticket_get(rd, 2, &got), 0);
  assert_true(got.reversal);
  assert_int_equal(got.corrects, 1);
  assert_int_equal(got.net_kg, -17600);
  assert_int_equal(got.gross_kg, -31800);
  assert_int_equal(got.t, 1764100000); /* the original's time: periods cancel */
  assert_int_equal(got.no, 0);         /* the slip number stays with the original */
  assert_string_equal(got.source, "correction");
  assert_string_equal(got.note, "去向填错: 实为填埋");
  assert_int_equal(stor_ticket_get(rd, 3, &got), 0);
  assert_false(got.reversal);
  assert_int_equal(got.corrects, 1);
  assert_string_equal(got.dest, "disposal");
  assert_memory_equal(got.hash, res.hash, 32);

  /* once only; a reversal is not corrected; unknown entries */
  assert_int_equal(stor_ticket_correct(db, 1, NULL, "again", &res), 0);
  assert_int_equal(res.status, -EALREADY);
  assert_int_equal(res.id, 2);
  assert_int_equal(stor_ticket_correct(db, 2, NULL, "undo the undo", &res), 0);
  assert_int_equal(res.status, -EINVAL);
  assert_int_equal(stor_ticket_correct(db, 99, NULL, "no such", &res), 0);
  assert_int_equal(res.status, -ENOENT);
  assert_int_equal(stor_ticket_correct(db, 1, NULL, "", &res), -EINVAL); /* a note is required */
  /* the replacement can itself be corrected (reversal only) */
  assert_int_equal(stor_ticket_correct(db, 3, NULL, "wrong truck", &res), 0);
  assert_int_equal(res.status, STOR_TICKET_CREATED);
  assert_int_equal(res.id, 4);
  assert_int_equal(res.id2, 0);
  /* the scale resending the original still finds it */
  assert_int_equal(commit(&t).status, STOR_TICKET_SAME);
}

struct sums {
  int64_t recycling, disposal, rebar, green, rows;
};

static int on_sum(void *arg, const char *type, const char *category, const char *kind,
                  const char *dest, const char *material, bool green, int64_t net_kg,
                  int64_t entries) {
  struct sums *s = arg;
  (void)category;
  (void)kind;
  s->rows += entries;
  if (strcmp(type, "waste") == 0 && strcmp(dest, "recycling") == 0)
    s->recycling += net_kg;
  if (strcmp(type, "waste") == 0 && strcmp(dest, "disposal") == 0)
    s->disposal += net_kg;
  if (strcmp(type, "delivery") == 0 && strcmp(material, "rebar") == 0) {
    s->rebar += net_kg;
    if (green)
      s->green += net_kg;
  }
  return 0;
}

static void sums_add_signed_entries_within_the_period(void **state) {
  (void)state;
  stor_ticket_t t = example(1);
  commit(&t);
  t = example(2);
  t.t += 3600;
  commit(&t);
  stor_ticket_result_t res;
  stor_ticket_t rep = example(0);
  rep.t += 3600; /* the weighing it replaces */
  strcpy(rep.dest, "disposal");
  assert_int_equal(stor_ticket_correct(db, 2, &rep, "dest", &res), 0);
  t = delivery(3, 27100, true);
  commit(&t);
  t = delivery(4, 12000, false);
  commit(&t);
  struct sums s = {0};
  assert_int_equal(stor_ledger_sums(rd, 0, INT64_MAX, on_sum, &s), 0);
  assert_int_equal(s.recycling, 17600); /* 17600 + 17600 - 17600 */
  assert_int_equal(s.disposal, 17600);
  assert_int_equal(s.rebar, 39100);
  assert_int_equal(s.green, 27100);
  assert_int_equal(s.rows, 6);
  memset(&s, 0, sizeof(s));
  assert_int_equal(stor_ledger_sums(rd, 1764100000, 1764100001, on_sum, &s), 0);
  assert_int_equal(s.recycling, 17600);
  assert_int_equal(s.rows, 1);
}

/* ---- the chain */
static void the_hash_is_sha256_of_the_previous_hash_and_the_canonical_json(void **state) {
  (void)state;
  stor_ticket_t t = example(1042);
  commit(&t);
  t = delivery(1043, 27100, true);
  commit(&t);
  stor_ticket_t e1, e2;
  assert_int_equal(stor_ticket_get(rd, 1, &e1), 0);
  assert_int_equal(stor_ticket_get(rd, 2, &e2), 0);
  /* Written out by hand from storage.h: a person can recompute it. */
  char canon[2048];
  snprintf(canon, sizeof(canon),
           "{\"id\":1,\"received_ms\":%lld,\"source\":\"scale\",\"type\":\"waste\","
           "\"scale\":\"wb-01\",\"no\":1042,\"t\":1764100000,\"plate\":\"黑A12345\","
           "\"dir\":\"out\",\"gross_kg\":31800,\"tare_kg\":14200,\"net_kg\":17600,"
           "\"category\":\"engineering\",\"kind\":\"concrete\",\"dest\":\"recycling\","
           "\"dest_name\":\"哈尔滨再生资源厂\",\"carrier\":\"\",\"material\":\"\","
           "\"green_cert\":false,\"corrects\":null,\"reversal\":false,\"note\":\"\"}",
           (long long)e1.received_ms);
  uint8_t zero[32] = {0}, buf[32 + 2048], want[32];
  memcpy(buf, zero, 32);
  memcpy(buf + 32, canon, strlen(canon));
  proto_sha256(buf, 32 + strlen(canon), NULL, 0, want);
  assert_memory_equal(e1.prev, zero, 32);
  assert_memory_equal(e1.hash, want, 32);
  assert_memory_equal(e2.prev, e1.hash, 32);
  snprintf(canon, sizeof(canon),
           "{\"id\":2,\"received_ms\":%lld,\"source\":\"scale\",\"type\":\"delivery\","
           "\"scale\":\"wb-01\",\"no\":1043,\"t\":1764100100,\"plate\":\"\",\"dir\":\"in\","
           "\"gross_kg\":null,\"tare_kg\":null,\"net_kg\":27100,\"category\":\"\",\"kind\":\"\","
           "\"dest\":\"\",\"dest_name\":\"\",\"carrier\":\"\",\"material\":\"rebar\","
           "\"green_cert\":true,\"corrects\":null,\"reversal\":false,\"note\":\"\"}",
           (long long)e2.received_ms);
  memcpy(buf, e1.hash, 32);
  memcpy(buf + 32, canon, strlen(canon));
  proto_sha256(buf, 32 + strlen(canon), NULL, 0, want);
  assert_memory_equal(e2.hash, want, 32);

  stor_verify_t v;
  assert_int_equal(stor_ledger_verify(rd, &v), 0);
  assert_int_equal(v.entries, 2);
  assert_int_equal(v.bad_id, 0);
  assert_memory_equal(v.head, e2.hash, 32);
}

/* Five entries, closed; returns the path of a copy to tamper with. */
static void five_entries(void) {
  for (int i = 1; i <= 5; i++) {
    stor_ticket_t t = example(i);
    t.net_kg += i;
    t.gross_kg += i;
    commit(&t);
  }
  stor_ticket_result_t res;
  assert_int_equal(stor_ticket_correct(db, 3, NULL, "duplicate slip", &res), 0);
  close_db(); /* checkpointed: one file */
}

/* Runs `sql` on a fresh copy of the five-entry ledger and verifies it. */
static int tamper(const char *sql, stor_verify_t *v) {
  char copy[160], cmd[900];
  snprintf(copy, sizeof(copy), "%s/tampered.db", dir);
  snprintf(cmd, sizeof(cmd), "rm -f %s %s-wal %s-shm && cp %s %s", copy, copy, copy, path, copy);
  assert_int_equal(system(cmd), 0);
  /* The sqlite3 shell (make deps installs it) reads the statement from its
   * standard input, so no quoting is needed; -bail exits non-zero on an
   * error, which it prints. */
  snprintf(cmd, sizeof(cmd), "sqlite3 -bail %s >/dev/null", copy);
  FILE *sh = popen(cmd, "w");
  assert_non_null(sh);
  fprintf(sh, "%s;\n", sql);
  int rc = pclose(sh);
  if (rc != 0)
    print_error("%s: the sqlite3 shell failed (status %d)\n", sql, rc);
  assert_int_equal(rc, 0);
  stor_reader_t *r;
  assert_int_equal(stor_reader_open(copy, &r), 0);
  rc = stor_ledger_verify(r, v);
  stor_reader_close(r);
  return rc;
}

static void expect_broken(const char *sql, int64_t bad_id, const char *why) {
  stor_verify_t v;
  int rc = tamper(sql, &v);
  if (rc != -EBADMSG || v.bad_id != bad_id || !strstr(v.reason, why))
    print_error("%s: rc %d, entry %lld: %s\n", sql, rc, (long long)v.bad_id, v.reason);
  assert_int_equal(rc, -EBADMSG);
  assert_int_equal(v.bad_id, bad_id);
  assert_non_null(strstr(v.reason, why));
}

static void verify_finds_a_changed_removed_or_inserted_entry(void **state) {
  (void)state;
  five_entries();
  stor_verify_t v;
  assert_int_equal(tamper("SELECT 1", &v), 0); /* the copy itself is intact */
  assert_int_equal(v.entries, 6);
  char h[65];
  hex(v.head, h);

  expect_broken("UPDATE ledger SET net_kg = 1600 WHERE id = 2", 2,
                "entry 2: its contents do not match its hash");
  expect_broken("UPDATE ledger SET dest = 'reuse_onsite' WHERE id = 4", 4, "do not match");
  expect_broken("UPDATE ledger SET plate = '黑B99999' WHERE id = 1", 1, "do not match");
  expect_broken("UPDATE ledger SET note = 'ok' WHERE id = 6", 6, "do not match");
  /* a changed row with its hash recomputed breaks the next link */
  expect_broken("UPDATE ledger SET hash = zeroblob(32) WHERE id = 2", 2, "do not match");
  expect_broken("UPDATE ledger SET prev = (SELECT hash FROM ledger WHERE id = 1) WHERE id = 3", 3,
                "entry 3: its link to entry 2 does not match");
  expect_broken("DELETE FROM ledger WHERE id = 3", 3, "entry 3 is missing");
  expect_broken("DELETE FROM ledger WHERE id = 6", 6,
                "ends at entry 5 but its head records 6 entries");
  expect_broken("UPDATE ledger SET id = 9 WHERE id = 6", 6, "entry 6 is missing");
  expect_broken("UPDATE ledger_head SET entries = 5", 6, "the head records 5 entries");
  expect_broken("UPDATE ledger SET hash = x'00' WHERE id = 5", 5, "not 32 bytes");
  open_db();
}

/* ---- progress and the bill of quantities */
struct prog {
  int n;
  double t[4], v[4];
};

static int on_prog(void *arg, double t, double v) {
  struct prog *p = arg;
  if (p->n < 4) {
    p->t[p->n] = t;
    p->v[p->n] = v;
  }
  p->n++;
  return 0;
}

static void progress_keeps_its_history_and_the_seed_only_once(void **state) {
  (void)state;
  bool stored;
  assert_int_equal(stor_progress_seed(db, 1000, 0.3, &stored), 0);
  assert_true(stored);
  assert_int_equal(stor_progress_seed(db, 2000, 0.35, &stored), 0);
  assert_false(stored);
  assert_int_equal(stor_progress_set(db, 3000, 0.42), 0);
  assert_int_equal(stor_progress_set(db, 3000, 1.5), -EINVAL);
  struct prog p = {0};
  assert_int_equal(stor_progress_list(rd, on_prog, &p), 0);
  assert_int_equal(p.n, 2);
  assert_true(p.t[0] == 1000 && p.v[0] == 0.3);
  assert_true(p.t[1] == 3000 && p.v[1] == 0.42);
  /* kept across a restart */
  close_db();
  open_db();
  assert_int_equal(stor_progress_seed(db, 4000, 0.1, &stored), 0);
  assert_false(stored);
  p.n = 0;
  assert_int_equal(stor_progress_list(rd, on_prog, &p), 0);
  assert_int_equal(p.n, 2);
}

static int on_boq(void *arg, const stor_boq_item_t *it, double imported) {
  char *s = arg;
  sprintf(s + strlen(s), "%s=%g@%g;", it->material, it->net_t, imported);
  return 0;
}

static void a_new_bill_of_quantities_replaces_the_old(void **state) {
  (void)state;
  stor_boq_item_t a[] = {{"rebar", 1850, "HRB400"}, {"concrete", 10000, ""}};
  assert_int_equal(stor_boq_replace(db, a, 2, 100), 0);
  char s[256] = "";
  assert_int_equal(stor_boq_list(rd, on_boq, s), 0);
  assert_string_equal(s, "concrete=10000@100;rebar=1850@100;");
  stor_boq_item_t b[] = {{"rebar", 1900, "revised"}};
  assert_int_equal(stor_boq_replace(db, b, 1, 200), 0);
  s[0] = '\0';
  assert_int_equal(stor_boq_list(rd, on_boq, s), 0);
  assert_string_equal(s, "rebar=1900@200;");
  stor_boq_item_t bad[] = {{"rebar", -1, ""}};
  assert_int_equal(stor_boq_replace(db, bad, 1, 300), -EINVAL);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(a_ticket_is_stored_once_and_a_resend_finds_it, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(bad_tickets_are_refused_before_the_queue, setup, teardown),
      cmocka_unit_test_setup_teardown(submissions_return_at_once_and_complete_on_the_writer, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(a_correction_reverses_and_replaces_without_touching_the_entry,
                                      setup, teardown),
      cmocka_unit_test_setup_teardown(sums_add_signed_entries_within_the_period, setup, teardown),
      cmocka_unit_test_setup_teardown(
          the_hash_is_sha256_of_the_previous_hash_and_the_canonical_json, setup, teardown),
      cmocka_unit_test_setup_teardown(verify_finds_a_changed_removed_or_inserted_entry, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(progress_keeps_its_history_and_the_seed_only_once, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(a_new_bill_of_quantities_replaces_the_old, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
