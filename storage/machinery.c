/* Machinery rows (storage.h "non-road mobile machinery"): the register,
 * its audit trail and the entries and exits.
 *
 * Every write is a request on the writer's connection (as the ledger's
 * are), one transaction each: a register change and its audit row commit
 * together, so the trail can never miss a change. A gate's event is
 * looked up by (gate, no) in the same transaction that would insert it,
 * which is what makes a resend idempotent: the same content is SAME, other
 * content -EEXIST. The register is small and written by people, so
 * statements are prepared per call. */
#define LOG_MODULE "storage"
#include "common/common.h"
#include "storage/storage_int.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void text(sqlite3_stmt *st, int col, const char *s) {
  sqlite3_bind_text(st, col, s, -1, SQLITE_STATIC);
}

static void copy_text(char *dst, size_t cap, sqlite3_stmt *st, int col) {
  const unsigned char *s = sqlite3_column_text(st, col);
  snprintf(dst, cap, "%s", s ? (const char *)s : "");
}

/* Writer thread: BEGIN IMMEDIATE, fn, COMMIT (or ROLLBACK). */
static int in_transaction(sqlite3 *db, int (*fn)(sqlite3 *db, void *arg), void *arg) {
  int rc = stor__exec(db, "BEGIN IMMEDIATE");
  if (rc != 0)
    return rc;
  rc = fn(db, arg);
  if (rc == 0)
    rc = stor__exec(db, "COMMIT");
  if (rc != 0 && !sqlite3_get_autocommit(db))
    sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
  return rc;
}

/* ---- the register */

typedef struct put_req {
  stor_req_t req; /* first */
  const proto_machine_t *items;
  size_t n;
  bool add, import;
  const char *actor, *reason, *code; /* code: retire */
  double t;
  size_t added, changed;
} put_req_t;

static void describe(const proto_machine_t *m, char *out, size_t cap) {
  snprintf(out, cap, "type=%s stage=%s power_kw=%g fuel=%s owner=%s label=%s terminal=%s", m->type,
           proto_stage_name(m->stage), m->power_kw, proto_fuel_name(m->fuel), m->owner, m->label,
           m->terminal);
}

/* An audit row; `m` the register's row after the change (NULL: none,
 * a retirement). */
static int audit(sqlite3 *db, double t, const char *code, const char *action, const char *actor,
                 const char *reason, const char *detail, const proto_machine_t *m) {
  sqlite3_stmt *st = NULL;
  int rc = stor__prepare(
      db,
      "INSERT INTO machine_audit(t, code, action, actor, reason, detail, type, stage, power_kw,"
      " fuel, owner, label, terminal) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12,"
      " ?13)",
      &st);
  if (rc == 0) {
    sqlite3_bind_double(st, 1, t);
    text(st, 2, code);
    text(st, 3, action);
    text(st, 4, actor);
    text(st, 5, reason);
    text(st, 6, detail);
    if (m) { /* unbound parameters are NULL */
      text(st, 7, m->type);
      sqlite3_bind_int(st, 8, m->stage);
      sqlite3_bind_double(st, 9, m->power_kw);
      sqlite3_bind_int(st, 10, m->fuel);
      text(st, 11, m->owner);
      text(st, 12, m->label);
      text(st, 13, m->terminal);
    }
    rc = stor__step_done(db, st, "store machine audit");
  }
  sqlite3_finalize(st);
  return rc;
}

/* 1 in the register, 2 retired, 0 absent; or -errno. */
static int machine_state(sqlite3 *db, const char *code) {
  sqlite3_stmt *st = NULL;
  int rc = stor__prepare(db, "SELECT retired IS NOT NULL FROM machine WHERE code = ?1", &st);
  if (rc != 0)
    return rc;
  text(st, 1, code);
  int s = sqlite3_step(st);
  rc = s == SQLITE_ROW    ? (sqlite3_column_int(st, 0) ? 2 : 1)
       : s == SQLITE_DONE ? 0
                          : stor__fail(db, s, "read machine");
  sqlite3_finalize(st);
  return rc;
}

static int put_one(sqlite3 *db, const put_req_t *r, const proto_machine_t *m, bool add,
                   const char *action) {
  int state = machine_state(db, m->code);
  if (state < 0)
    return state;
  if (add && state == 1)
    return -EEXIST;
  if (!add && state != 1)
    return -ENOENT;
  sqlite3_stmt *st = NULL;
  int rc = stor__prepare(
      db,
      "INSERT INTO machine(code, type, stage, power_kw, fuel, owner, label, terminal, added,"
      " changed, retired) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?9, NULL)"
      " ON CONFLICT(code) DO UPDATE SET type = ?2, stage = ?3, power_kw = ?4, fuel = ?5,"
      " owner = ?6, label = ?7, terminal = ?8, changed = ?9,"
      " added = CASE WHEN retired IS NULL THEN added ELSE ?9 END, retired = NULL",
      &st);
  if (rc == 0) {
    text(st, 1, m->code);
    text(st, 2, m->type);
    sqlite3_bind_int(st, 3, m->stage);
    sqlite3_bind_double(st, 4, m->power_kw);
    sqlite3_bind_int(st, 5, m->fuel);
    text(st, 6, m->owner);
    text(st, 7, m->label);
    text(st, 8, m->terminal);
    sqlite3_bind_double(st, 9, r->t);
    rc = stor__step_done(db, st, "store machine");
  }
  sqlite3_finalize(st);
  char detail[512];
  describe(m, detail, sizeof(detail));
  return rc ? rc : audit(db, r->t, m->code, action, r->actor, r->reason, detail, m);
}

static int put_all(sqlite3 *db, void *arg) {
  put_req_t *r = arg;
  int rc = 0;
  for (size_t i = 0; rc == 0 && i < r->n; i++) {
    const proto_machine_t *m = &r->items[i];
    if (r->import) {
      int state = machine_state(db, m->code);
      if (state < 0)
        return state;
      rc = put_one(db, r, m, state != 1, "import");
      if (rc == 0 && state == 1)
        r->changed++;
      else if (rc == 0)
        r->added++;
    } else {
      rc = put_one(db, r, m, r->add, r->add ? "add" : "change");
    }
  }
  return rc;
}

static int64_t put_fn(stor_db_t *db, stor_req_t *req) {
  return in_transaction(db->db, put_all, req);
}

static bool who_ok(const char *actor, const char *reason) {
  return actor && *actor && strlen(actor) <= STOR_MACHINE_ACTOR_MAX && reason &&
         strlen(reason) <= STOR_MACHINE_REASON_MAX;
}

int stor_machine_put(stor_db_t *db, const proto_machine_t *m, bool add, const char *actor,
                     const char *reason, double t) {
  if (!db || !m || proto_machine_check(m, NULL, 0) != 0 || !who_ok(actor, reason))
    return -EINVAL;
  put_req_t r = {.req = {.fn = put_fn},
                 .items = m,
                 .n = 1,
                 .add = add,
                 .actor = actor,
                 .reason = reason,
                 .t = t};
  return (int)stor__request_post(db, &r.req);
}

int stor_machine_import(stor_db_t *db, const proto_machine_t *items, size_t n, const char *actor,
                        const char *reason, double t, size_t *added, size_t *changed) {
  if (!db || (n && !items) || !who_ok(actor, reason))
    return -EINVAL;
  for (size_t i = 0; i < n; i++)
    if (proto_machine_check(&items[i], NULL, 0) != 0)
      return -EINVAL;
  put_req_t r = {.req = {.fn = put_fn},
                 .items = items,
                 .n = n,
                 .import = true,
                 .actor = actor,
                 .reason = reason,
                 .t = t};
  int rc = (int)stor__request_post(db, &r.req);
  if (added)
    *added = rc == 0 ? r.added : 0;
  if (changed)
    *changed = rc == 0 ? r.changed : 0;
  return rc;
}

static int retire_tx(sqlite3 *db, void *arg) {
  put_req_t *r = arg;
  int state = machine_state(db, r->code);
  if (state != 1)
    return state < 0 ? state : -ENOENT;
  sqlite3_stmt *st = NULL;
  int rc = stor__prepare(db, "UPDATE machine SET retired = ?2, changed = ?2 WHERE code = ?1", &st);
  if (rc == 0) {
    text(st, 1, r->code);
    sqlite3_bind_double(st, 2, r->t);
    rc = stor__step_done(db, st, "retire machine");
  }
  sqlite3_finalize(st);
  return rc ? rc : audit(db, r->t, r->code, "retire", r->actor, r->reason, "retired", NULL);
}

static int64_t retire_fn(stor_db_t *db, stor_req_t *req) {
  return in_transaction(db->db, retire_tx, req);
}

int stor_machine_retire(stor_db_t *db, const char *code, const char *actor, const char *reason,
                        double t) {
  if (!db || !code || !proto_machine_code_ok(code) || !who_ok(actor, reason))
    return -EINVAL;
  put_req_t r = {.req = {.fn = retire_fn}, .code = code, .actor = actor, .reason = reason, .t = t};
  return (int)stor__request_post(db, &r.req);
}

/* ---- entries and exits */

typedef struct move_req {
  stor_req_t req; /* first */
  stor_move_t mv;
  stor_move_result_t res;
  stor_move_cb cb;
  void *arg;
} move_req_t;

/* A stored gate event with the same (gate, no): SAME or -EEXIST, its id;
 * 0 when there is none. */
static int move_lookup(sqlite3 *db, move_req_t *r) {
  sqlite3_stmt *st = NULL;
  int rc = stor__prepare(
      db, "SELECT id, code, dir_in, t FROM machine_move WHERE gate = ?1 AND no = ?2", &st);
  if (rc != 0)
    return rc;
  text(st, 1, r->mv.gate);
  sqlite3_bind_int64(st, 2, r->mv.no);
  int s = sqlite3_step(st);
  if (s == SQLITE_ROW) {
    r->res.id = sqlite3_column_int64(st, 0);
    const char *code = (const char *)sqlite3_column_text(st, 1);
    bool same = code && strcmp(code, r->mv.code) == 0 &&
                (sqlite3_column_int(st, 2) != 0) == r->mv.in &&
                sqlite3_column_double(st, 3) == r->mv.t;
    r->res.status = same ? STOR_MOVE_SAME : -EEXIST;
  } else if (s != SQLITE_DONE) {
    rc = stor__fail(db, s, "read machine move");
  }
  sqlite3_finalize(st);
  return rc;
}

static int move_tx(sqlite3 *db, void *arg) {
  move_req_t *r = arg;
  r->res.status = 0;
  int rc = r->mv.no > 0 ? move_lookup(db, r) : 0;
  if (rc != 0 || r->res.status != 0)
    return rc;
  sqlite3_stmt *st = NULL;
  rc = stor__prepare(db,
                     "INSERT INTO machine_move(gate, no, code, dir_in, t, source, actor, received)"
                     " VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                     &st);
  if (rc == 0) {
    text(st, 1, r->mv.gate);
    if (r->mv.no > 0)
      sqlite3_bind_int64(st, 2, r->mv.no);
    text(st, 3, r->mv.code);
    sqlite3_bind_int(st, 4, r->mv.in);
    sqlite3_bind_double(st, 5, r->mv.t);
    text(st, 6, r->mv.source);
    text(st, 7, r->mv.actor);
    sqlite3_bind_double(st, 8, r->mv.received);
    rc = stor__step_done(db, st, "store machine move");
  }
  sqlite3_finalize(st);
  if (rc == 0) {
    r->res.status = STOR_MOVE_CREATED;
    r->res.id = sqlite3_last_insert_rowid(db);
  }
  return rc;
}

static int64_t move_fn(stor_db_t *db, stor_req_t *req) {
  move_req_t *r = (move_req_t *)req;
  int rc = in_transaction(db->db, move_tx, r);
  if (rc != 0)
    r->res.status = rc;
  r->mv.id = r->res.id;
  return rc;
}

static void move_done(stor_db_t *db, stor_req_t *req) {
  (void)db;
  move_req_t *r = (move_req_t *)req;
  r->cb(r->arg, &r->mv, &r->res);
  free(r);
}

static bool move_ok(const stor_move_t *mv) {
  return mv && proto_machine_code_ok(mv->code) && mv->gate[0] && mv->no >= 0 && isfinite(mv->t) &&
         mv->t > 0;
}

int stor_move_commit(stor_db_t *db, const stor_move_t *mv, stor_move_result_t *res) {
  if (!db || !move_ok(mv) || !res)
    return -EINVAL;
  move_req_t r = {.req = {.fn = move_fn}, .mv = *mv};
  int rc = (int)stor__request_post(db, &r.req);
  *res = r.res;
  return rc;
}

int stor_move_submit(stor_db_t *db, const stor_move_t *mv, stor_move_cb cb, void *arg) {
  if (!db || !move_ok(mv) || !cb)
    return -EINVAL;
  move_req_t *r = calloc(1, sizeof(*r));
  if (!r)
    return -ENOMEM;
  r->req.fn = move_fn;
  r->req.on_done = move_done;
  r->mv = *mv;
  r->cb = cb;
  r->arg = arg;
  int rc = stor__request_submit(db, &r->req);
  if (rc != 0)
    free(r);
  return rc;
}

/* ---- reading back */

static int each(stor_reader_t *r, const char *sql, int (*bind)(sqlite3_stmt *st, const void *a),
                const void *bind_arg, int (*row)(sqlite3_stmt *st, void *arg), void *arg,
                const char *what) {
  sqlite3 *db = stor__reader_db(r);
  sqlite3_stmt *st = NULL;
  if (!db)
    return -EINVAL;
  int rc = stor__prepare(db, sql, &st);
  if (rc != 0)
    return rc;
  if (bind)
    bind(st, bind_arg);
  int s;
  while ((s = sqlite3_step(st)) == SQLITE_ROW)
    if (row(st, arg) != 0) {
      s = SQLITE_DONE;
      break;
    }
  rc = s == SQLITE_DONE ? 0 : stor__fail(db, s, what);
  sqlite3_finalize(st);
  return rc;
}

#define MACHINE_COLS                                                                               \
  "code, type, stage, power_kw, fuel, owner, label, terminal, added, changed,"                     \
  " coalesce(retired, 0)"

static void machine_from_row(sqlite3_stmt *st, stor_machine_t *out) {
  memset(out, 0, sizeof(*out));
  copy_text(out->m.code, sizeof(out->m.code), st, 0);
  copy_text(out->m.type, sizeof(out->m.type), st, 1);
  out->m.stage = (int8_t)sqlite3_column_int(st, 2);
  out->m.power_kw = sqlite3_column_double(st, 3);
  out->m.fuel = (int8_t)sqlite3_column_int(st, 4);
  copy_text(out->m.owner, sizeof(out->m.owner), st, 5);
  copy_text(out->m.label, sizeof(out->m.label), st, 6);
  copy_text(out->m.terminal, sizeof(out->m.terminal), st, 7);
  out->added = sqlite3_column_double(st, 8);
  out->changed = sqlite3_column_double(st, 9);
  out->retired = sqlite3_column_double(st, 10);
}

typedef struct list_ctx {
  stor_machine_cb cb;
  void *arg;
} list_ctx_t;

static int machine_row(sqlite3_stmt *st, void *arg) {
  list_ctx_t *l = arg;
  stor_machine_t m;
  machine_from_row(st, &m);
  return l->cb(l->arg, &m);
}

int stor_machine_list(stor_reader_t *r, bool retired, stor_machine_cb cb, void *arg) {
  list_ctx_t l = {cb, arg};
  return each(r,
              retired ? "SELECT " MACHINE_COLS " FROM machine ORDER BY code"
                      : "SELECT " MACHINE_COLS " FROM machine WHERE retired IS NULL ORDER BY code",
              NULL, NULL, machine_row, &l, "machine register");
}

static int bind_code(sqlite3_stmt *st, const void *a) {
  if (a)
    sqlite3_bind_text(st, 1, a, -1, SQLITE_STATIC);
  return 0;
}

static int one_machine(void *arg, const stor_machine_t *m) {
  stor_machine_t *out = arg;
  *out = *m;
  out->m.line = 1; /* found */
  return 1;
}

int stor_machine_get(stor_reader_t *r, const char *code, stor_machine_t *out) {
  if (!code || !out)
    return -EINVAL;
  memset(out, 0, sizeof(*out));
  list_ctx_t l = {one_machine, out};
  int rc = each(r, "SELECT " MACHINE_COLS " FROM machine WHERE code = ?1", bind_code, code,
                machine_row, &l, "machine");
  if (rc == 0 && out->m.line == 0)
    return -ENOENT;
  out->m.line = 0;
  return rc;
}

typedef struct audit_ctx {
  int (*cb)(void *arg, const stor_machine_audit_t *a);
  void *arg;
} audit_ctx_t;

static int audit_row(sqlite3_stmt *st, void *arg) {
  audit_ctx_t *c = arg;
  stor_machine_audit_t a;
  memset(&a, 0, sizeof(a));
  a.id = sqlite3_column_int64(st, 0);
  a.t = sqlite3_column_double(st, 1);
  copy_text(a.code, sizeof(a.code), st, 2);
  copy_text(a.action, sizeof(a.action), st, 3);
  copy_text(a.actor, sizeof(a.actor), st, 4);
  copy_text(a.reason, sizeof(a.reason), st, 5);
  copy_text(a.detail, sizeof(a.detail), st, 6);
  if (sqlite3_column_count(st) > 7 && sqlite3_column_type(st, 8) != SQLITE_NULL) {
    a.has_row = true;
    snprintf(a.row.code, sizeof(a.row.code), "%s", a.code);
    copy_text(a.row.type, sizeof(a.row.type), st, 7);
    a.row.stage = sqlite3_column_int(st, 8);
    a.row.power_kw = sqlite3_column_double(st, 9);
    a.row.fuel = sqlite3_column_int(st, 10);
    copy_text(a.row.owner, sizeof(a.row.owner), st, 11);
    copy_text(a.row.label, sizeof(a.row.label), st, 12);
    copy_text(a.row.terminal, sizeof(a.row.terminal), st, 13);
  }
  return c->cb(c->arg, &a);
}

typedef struct q_args {
  const char *code;
  double since, until;
  int64_t limit;
} q_args_t;

static int bind_q(sqlite3_stmt *st, const void *a) {
  const q_args_t *q = a;
  if (q->code)
    sqlite3_bind_text(st, 1, q->code, -1, SQLITE_STATIC);
  sqlite3_bind_double(st, 2, q->since);
  sqlite3_bind_double(st, 3, q->until);
  sqlite3_bind_int64(st, 4, q->limit);
  return 0;
}

int stor_machine_audit(stor_reader_t *r, const char *code, size_t limit,
                       int (*cb)(void *arg, const stor_machine_audit_t *a), void *arg) {
  audit_ctx_t c = {cb, arg};
  q_args_t q = {code, 0, 0, limit > INT64_MAX ? INT64_MAX : (int64_t)limit};
  return each(r,
              "SELECT id, t, code, action, actor, reason, detail, type, stage, power_kw, fuel,"
              " owner, label, terminal FROM machine_audit"
              " WHERE (?1 IS NULL OR code = ?1) ORDER BY t DESC, id DESC LIMIT ?4",
              bind_q, &q, audit_row, &c, "machine audit");
}

typedef struct move_ctx {
  stor_move_row_cb cb;
  void *arg;
} move_ctx_t;

static int move_row(sqlite3_stmt *st, void *arg) {
  move_ctx_t *c = arg;
  stor_move_t mv;
  memset(&mv, 0, sizeof(mv));
  mv.id = sqlite3_column_int64(st, 0);
  copy_text(mv.gate, sizeof(mv.gate), st, 1);
  mv.no = sqlite3_column_int64(st, 2);
  copy_text(mv.code, sizeof(mv.code), st, 3);
  mv.in = sqlite3_column_int(st, 4) != 0;
  mv.t = sqlite3_column_double(st, 5);
  copy_text(mv.source, sizeof(mv.source), st, 6);
  copy_text(mv.actor, sizeof(mv.actor), st, 7);
  mv.received = sqlite3_column_double(st, 8);
  return c->cb(c->arg, &mv);
}

#define MOVE_COLS "id, gate, coalesce(no, 0), code, dir_in, t, source, actor, received"

int stor_machine_moves(stor_reader_t *r, const char *code, double since, double until, size_t limit,
                       stor_move_row_cb cb, void *arg) {
  move_ctx_t c = {cb, arg};
  q_args_t q = {code, since, until, limit > INT64_MAX ? INT64_MAX : (int64_t)limit};
  return each(r,
              "SELECT " MOVE_COLS " FROM machine_move WHERE (?1 IS NULL OR code = ?1)"
              " AND t >= ?2 AND t < ?3 ORDER BY t, id LIMIT ?4",
              bind_q, &q, move_row, &c, "machine moves");
}

static int bind_after(sqlite3_stmt *st, const void *a) {
  const q_args_t *q = a;
  sqlite3_bind_double(st, 1, q->since);
  sqlite3_bind_int64(st, 2, q->limit);
  return 0;
}

int stor_machine_audit_after(stor_reader_t *r, int64_t after, size_t limit,
                             int (*cb)(void *arg, const stor_machine_audit_t *a), void *arg) {
  audit_ctx_t c = {cb, arg};
  q_args_t q = {NULL, (double)after, 0, limit > INT64_MAX ? INT64_MAX : (int64_t)limit};
  return each(r,
              "SELECT id, t, code, action, actor, reason, detail, type, stage, power_kw, fuel,"
              " owner, label, terminal FROM machine_audit WHERE id > ?1 ORDER BY id LIMIT ?2",
              bind_after, &q, audit_row, &c, "machine audit");
}

int stor_machine_moves_after(stor_reader_t *r, int64_t after, size_t limit, stor_move_row_cb cb,
                             void *arg) {
  move_ctx_t c = {cb, arg};
  q_args_t q = {NULL, (double)after, 0, limit > INT64_MAX ? INT64_MAX : (int64_t)limit};
  return each(r, "SELECT " MOVE_COLS " FROM machine_move WHERE id > ?1 ORDER BY id LIMIT ?2",
              bind_after, &q, move_row, &c, "machine moves");
}

int stor_machine_last_moves(stor_reader_t *r, stor_move_row_cb cb, void *arg) {
  move_ctx_t c = {cb, arg};
  return each(r,
              "SELECT " MOVE_COLS " FROM (SELECT *, row_number() OVER (PARTITION BY code"
              " ORDER BY t DESC, id DESC) AS rn FROM machine_move) WHERE rn = 1 ORDER BY code",
              NULL, NULL, move_row, &c, "machine last moves");
}
