/* The waste and material ledger (storage.h "waste and material ledger"):
 * append-only, hash-chained entries, committed one by one and durably
 * before anyone is told they are stored.
 *
 * Writes run on the writer thread, which owns the read-write connection,
 * as requests between reading batches: each ticket is its own BEGIN
 * IMMEDIATE ... COMMIT with synchronous=FULL, so when the completion
 * callback runs the entry has been fsynced. The loop thread must never
 * wait for that, so a submission is queued without waiting (post_async())
 * and the result comes back through the caller's callback, on the writer
 * thread; the gateway hands it to its loop with a uv_async_t. Storage
 * itself knows nothing of libuv.
 *
 * The chain: hash_N = SHA-256(hash_{N-1} || canonical_N), hash_0 all
 * zeros. canonical_N is rebuilt from the stored columns by the verifier,
 * so a changed column, a removed or inserted row, or a row cut off the end
 * (ledger_head keeps the count and last hash) is found. SHA-256 is
 * protocol's proto_sha256() (mbedTLS's, behind protocol/tlspipe.c), the same
 * implementation the uplink signs with; storage/ includes no mbedTLS header.
 * Someone who rewrites every later row and
 * the head defeats a local check by design: the authority holds the
 * hashes it was sent (protocol/UPLINK.md "Signed records"). */
#define LOG_MODULE "storage"
#include "common/common.h"
#include "protocol/protocol.h"
#include "storage/storage_int.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CANON_MAX 8192 /* the longest canonical entry is about 2.5 KB */

/* ---- the canonical form: compact JSON, every field, this order, integers
 * only; absent numbers are null, absent text "". It is what gets hashed,
 * so it never changes for a stored entry. */
struct cbuf {
  char *p;
  size_t cap, len;
  bool full;
};

static void c_put(struct cbuf *b, const char *s, size_t n) {
  if (b->full || b->cap - b->len < n + 1) {
    b->full = true;
    return;
  }
  memcpy(b->p + b->len, s, n);
  b->len += n;
  b->p[b->len] = '\0';
}

static void c_key(struct cbuf *b, const char *key) {
  char tmp[40];
  int n = snprintf(tmp, sizeof(tmp), "%s\"%s\":", b->len > 1 ? "," : "", key);
  c_put(b, tmp, (size_t)n);
}

static void c_int(struct cbuf *b, const char *key, int64_t v, bool present) {
  char tmp[32];
  c_key(b, key);
  int n = present ? snprintf(tmp, sizeof(tmp), "%" PRId64, v) : snprintf(tmp, sizeof(tmp), "null");
  c_put(b, tmp, (size_t)n);
}

static void c_bool(struct cbuf *b, const char *key, bool v) {
  c_key(b, key);
  c_put(b, v ? "true" : "false", v ? 4 : 5);
}

/* JSON string: quote and backslash escaped, control bytes as \u00XX,
 * everything else (UTF-8) as it is. */
static void c_str(struct cbuf *b, const char *key, const char *s) {
  c_key(b, key);
  c_put(b, "\"", 1);
  for (; *s; s++) {
    unsigned char ch = (unsigned char)*s;
    char esc[8];
    if (ch == '"' || ch == '\\') {
      esc[0] = '\\';
      esc[1] = (char)ch;
      c_put(b, esc, 2);
    } else if (ch < 0x20) {
      snprintf(esc, sizeof(esc), "\\u%04x", ch);
      c_put(b, esc, 6);
    } else {
      c_put(b, s, 1);
    }
  }
  c_put(b, "\"", 1);
}

/* Writes the canonical form of `t` (with its id and received_ms) into buf;
 * returns its length, or -E2BIG. */
static int canonical(const stor_ticket_t *t, char *buf, size_t cap) {
  struct cbuf b = {buf, cap, 0, false};
  c_put(&b, "{", 1);
  c_int(&b, "id", t->id, true);
  c_int(&b, "received_ms", t->received_ms, true);
  c_str(&b, "source", t->source);
  c_str(&b, "type", t->type);
  c_str(&b, "scale", t->scale);
  c_int(&b, "no", t->no, t->no > 0);
  c_int(&b, "t", t->t, true);
  c_str(&b, "plate", t->plate);
  c_str(&b, "dir", t->dir);
  c_int(&b, "gross_kg", t->gross_kg, t->weighed);
  c_int(&b, "tare_kg", t->tare_kg, t->weighed);
  c_int(&b, "net_kg", t->net_kg, true);
  c_str(&b, "category", t->category);
  c_str(&b, "kind", t->kind);
  c_str(&b, "dest", t->dest);
  c_str(&b, "dest_name", t->dest_name);
  c_str(&b, "carrier", t->carrier);
  c_str(&b, "material", t->material);
  c_bool(&b, "green_cert", t->green_cert);
  c_int(&b, "corrects", t->corrects, t->corrects > 0);
  c_bool(&b, "reversal", t->reversal);
  c_str(&b, "note", t->note);
  c_put(&b, "}", 1);
  return b.full ? -E2BIG : (int)b.len;
}

/* The hash of entry `t` over `prev`, as the writer and the verifier
 * compute it. */
static int entry_hash(const stor_ticket_t *t, const uint8_t prev[32], uint8_t out[32]) {
  static _Thread_local char canon[CANON_MAX];
  int n = canonical(t, canon, sizeof(canon));
  if (n < 0)
    return n;
  proto_sha256(prev, 32, canon, (size_t)n, out);
  return 0;
}

/* ---- rows */
#define COLS                                                                                       \
  "id, received_ms, source, type, scale, no, t, plate, dir, gross_kg, tare_kg, net_kg,"            \
  " category, kind, dest, dest_name, carrier, material, green_cert, corrects, reversal, note,"     \
  " prev, hash"
#define INSERT_SQL                                                                                 \
  "INSERT INTO ledger(" COLS ") VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13,"    \
  " ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22, ?23, ?24)"

static void text_col(sqlite3_stmt *st, int col, char *out, size_t cap) {
  const unsigned char *s = sqlite3_column_text(st, col);
  snprintf(out, cap, "%s", s ? (const char *)s : "");
}

static void blob_col(sqlite3_stmt *st, int col, uint8_t out[32]) {
  const void *p = sqlite3_column_blob(st, col);
  int n = sqlite3_column_bytes(st, col);
  memset(out, 0, 32);
  if (p)
    memcpy(out, p, n < 32 ? (size_t)n : 32);
}

/* Fills `t` from a row selected as COLS. Returns false when the row cannot
 * be a ledger entry (a hash that is not 32 bytes: someone changed it). */
static bool row_read(sqlite3_stmt *st, stor_ticket_t *t) {
  memset(t, 0, sizeof(*t));
  t->id = sqlite3_column_int64(st, 0);
  t->received_ms = sqlite3_column_int64(st, 1);
  text_col(st, 2, t->source, sizeof(t->source));
  text_col(st, 3, t->type, sizeof(t->type));
  text_col(st, 4, t->scale, sizeof(t->scale));
  t->no = sqlite3_column_type(st, 5) == SQLITE_NULL ? 0 : sqlite3_column_int64(st, 5);
  t->t = sqlite3_column_int64(st, 6);
  text_col(st, 7, t->plate, sizeof(t->plate));
  text_col(st, 8, t->dir, sizeof(t->dir));
  t->weighed = sqlite3_column_type(st, 9) != SQLITE_NULL;
  t->gross_kg = sqlite3_column_int64(st, 9);
  t->tare_kg = sqlite3_column_int64(st, 10);
  t->net_kg = sqlite3_column_int64(st, 11);
  text_col(st, 12, t->category, sizeof(t->category));
  text_col(st, 13, t->kind, sizeof(t->kind));
  text_col(st, 14, t->dest, sizeof(t->dest));
  text_col(st, 15, t->dest_name, sizeof(t->dest_name));
  text_col(st, 16, t->carrier, sizeof(t->carrier));
  text_col(st, 17, t->material, sizeof(t->material));
  t->green_cert = sqlite3_column_int(st, 18) != 0;
  t->corrects = sqlite3_column_type(st, 19) == SQLITE_NULL ? 0 : sqlite3_column_int64(st, 19);
  t->reversal = sqlite3_column_int(st, 20) != 0;
  text_col(st, 21, t->note, sizeof(t->note));
  blob_col(st, 22, t->prev);
  blob_col(st, 23, t->hash);
  return sqlite3_column_bytes(st, 22) == 32 && sqlite3_column_bytes(st, 23) == 32;
}

static void bind_text(sqlite3_stmt *st, int col, const char *s) {
  sqlite3_bind_text(st, col, s, -1, SQLITE_STATIC);
}

static void row_bind(sqlite3_stmt *st, const stor_ticket_t *t) {
  sqlite3_bind_int64(st, 1, t->id);
  sqlite3_bind_int64(st, 2, t->received_ms);
  bind_text(st, 3, t->source);
  bind_text(st, 4, t->type);
  bind_text(st, 5, t->scale);
  if (t->no > 0)
    sqlite3_bind_int64(st, 6, t->no);
  else
    sqlite3_bind_null(st, 6);
  sqlite3_bind_int64(st, 7, t->t);
  bind_text(st, 8, t->plate);
  bind_text(st, 9, t->dir);
  if (t->weighed) {
    sqlite3_bind_int64(st, 10, t->gross_kg);
    sqlite3_bind_int64(st, 11, t->tare_kg);
  } else {
    sqlite3_bind_null(st, 10);
    sqlite3_bind_null(st, 11);
  }
  sqlite3_bind_int64(st, 12, t->net_kg);
  bind_text(st, 13, t->category);
  bind_text(st, 14, t->kind);
  bind_text(st, 15, t->dest);
  bind_text(st, 16, t->dest_name);
  bind_text(st, 17, t->carrier);
  bind_text(st, 18, t->material);
  sqlite3_bind_int(st, 19, t->green_cert);
  if (t->corrects > 0)
    sqlite3_bind_int64(st, 20, t->corrects);
  else
    sqlite3_bind_null(st, 20);
  sqlite3_bind_int(st, 21, t->reversal);
  bind_text(st, 22, t->note);
  sqlite3_bind_blob(st, 23, t->prev, 32, SQLITE_STATIC);
  sqlite3_bind_blob(st, 24, t->hash, 32, SQLITE_STATIC);
}

/* What a resend must repeat to be the same ticket: everything the scale
 * or the person said. Who entered it and the note are not the ticket. */
static bool same_content(const stor_ticket_t *a, const stor_ticket_t *b) {
  return strcmp(a->type, b->type) == 0 && strcmp(a->scale, b->scale) == 0 && a->no == b->no &&
         a->t == b->t && strcmp(a->plate, b->plate) == 0 && strcmp(a->dir, b->dir) == 0 &&
         a->weighed == b->weighed &&
         (!a->weighed || (a->gross_kg == b->gross_kg && a->tare_kg == b->tare_kg)) &&
         a->net_kg == b->net_kg && strcmp(a->category, b->category) == 0 &&
         strcmp(a->kind, b->kind) == 0 && strcmp(a->dest, b->dest) == 0 &&
         strcmp(a->dest_name, b->dest_name) == 0 && strcmp(a->carrier, b->carrier) == 0 &&
         strcmp(a->material, b->material) == 0 && a->green_cert == b->green_cert;
}

static bool terminated(const char *s, size_t cap) { return memchr(s, '\0', cap) != NULL; }

/* A ticket the schema can hold: the checks the decoder already made are
 * the caller's; these keep a bad struct from reaching the chain. */
int stor_ticket_check(const stor_ticket_t *t, char *err, size_t errlen) {
  bool texts = terminated(t->source, sizeof(t->source)) && terminated(t->type, sizeof(t->type)) &&
               terminated(t->scale, sizeof(t->scale)) && terminated(t->plate, sizeof(t->plate)) &&
               terminated(t->dir, sizeof(t->dir)) && terminated(t->category, sizeof(t->category)) &&
               terminated(t->kind, sizeof(t->kind)) && terminated(t->dest, sizeof(t->dest)) &&
               terminated(t->dest_name, sizeof(t->dest_name)) &&
               terminated(t->carrier, sizeof(t->carrier)) &&
               terminated(t->material, sizeof(t->material)) && terminated(t->note, sizeof(t->note));
  /* strcmp only once every text is known to end */
  bool type_ok = texts && (strcmp(t->type, "waste") == 0 || strcmp(t->type, "delivery") == 0 ||
                           strcmp(t->type, "return") == 0);
  bool dir_ok = texts && (strcmp(t->dir, "in") == 0 || strcmp(t->dir, "out") == 0);
  const char *why = !texts                       ? "a text field is longer than the ledger holds"
                    : !type_ok                   ? "type is not waste, delivery or return"
                    : !dir_ok                    ? "dir is not in or out"
                    : t->net_kg == 0             ? "net weight is 0 kg"
                    : t->no < 0                  ? "ticket number is negative"
                    : t->t < 0                   ? "weighing time is before 1970"
                    : t->no != 0 && !t->scale[0] ? "a numbered ticket needs its scale"
                                                 : NULL;
  if (!why)
    return 0;
  if (err)
    snprintf(err, errlen, "%s", why);
  return -EINVAL;
}

/* ---- writer side */
typedef struct job {
  stor_req_t req; /* first: the writer hands this pointer back */
  bool correct;
  int64_t corrects;
  bool has_ticket;
  stor_ticket_t t;
  char note[STOR_TICKET_TEXT];
  stor_ticket_cb cb;
  void *arg;
} job_t;

static int step_done(sqlite3 *db, sqlite3_stmt *st, const char *what) {
  int rc = sqlite3_step(st);
  return rc == SQLITE_DONE ? 0 : stor__fail(db, rc, what);
}

/* Writer, inside a transaction: gives `t` the next id, chains and inserts
 * it, and moves the head. */
static int append(sqlite3 *db, stor_ticket_t *t) {
  sqlite3_stmt *head = NULL, *ins = NULL, *upd = NULL;
  int rc = stor__prepare(db, "SELECT entries, hash FROM ledger_head WHERE one = 1", &head);
  if (rc == 0) {
    int src = sqlite3_step(head);
    if (src != SQLITE_ROW)
      rc = src == SQLITE_DONE ? -EIO : stor__fail(db, src, "ledger head");
  }
  if (rc == 0) {
    t->id = sqlite3_column_int64(head, 0) + 1;
    blob_col(head, 1, t->prev);
    t->received_ms = (int64_t)llround(sg_now() * 1000.0);
    rc = entry_hash(t, t->prev, t->hash);
  }
  if (rc == 0 && (rc = stor__prepare(db, INSERT_SQL, &ins)) == 0) {
    row_bind(ins, t);
    rc = step_done(db, ins, "append to the ledger");
  }
  if (rc == 0 && (rc = stor__prepare(db,
                                     "UPDATE ledger_head SET entries = ?1, hash = ?2"
                                     " WHERE one = 1",
                                     &upd)) == 0) {
    sqlite3_bind_int64(upd, 1, t->id);
    sqlite3_bind_blob(upd, 2, t->hash, 32, SQLITE_STATIC);
    rc = step_done(db, upd, "ledger head");
  }
  sqlite3_finalize(head);
  sqlite3_finalize(ins);
  sqlite3_finalize(upd);
  return rc;
}

/* Writer: the entry with `id`, or with (scale, no) when scale is set.
 * Returns 1 found, 0 not found, or a negative errno. */
static int find(sqlite3 *db, int64_t id, const char *scale, int64_t no, stor_ticket_t *out) {
  sqlite3_stmt *st = NULL;
  int rc = stor__prepare(db,
                         scale ? "SELECT " COLS " FROM ledger WHERE scale = ?1 AND no = ?2"
                               : "SELECT " COLS " FROM ledger WHERE id = ?1",
                         &st);
  if (rc != 0)
    return rc;
  if (scale) {
    bind_text(st, 1, scale);
    sqlite3_bind_int64(st, 2, no);
  } else {
    sqlite3_bind_int64(st, 1, id);
  }
  int src = sqlite3_step(st);
  if (src == SQLITE_ROW)
    rc = row_read(st, out) ? 1 : -EIO;
  else if (src == SQLITE_DONE)
    rc = 0;
  else
    rc = stor__fail(db, src, "ledger lookup");
  sqlite3_finalize(st);
  return rc;
}

static void do_submit(sqlite3 *db, job_t *j, stor_ticket_result_t *res) {
  stor_ticket_t *old = malloc(sizeof(*old));
  int rc = old ? stor__exec(db, "BEGIN IMMEDIATE") : -ENOMEM;
  int found = 0;
  if (rc == 0 && j->t.scale[0] && j->t.no > 0 &&
      (found = find(db, 0, j->t.scale, j->t.no, old)) < 0)
    rc = found;
  if (rc == 0 && found) {
    res->status = same_content(old, &j->t) ? STOR_TICKET_SAME : -EEXIST;
    res->id = old->id;
    memcpy(res->hash, old->hash, 32);
    rc = stor__exec(db, "ROLLBACK"); /* nothing was written */
  } else if (rc == 0) {
    if ((rc = append(db, &j->t)) == 0 && (rc = stor__exec(db, "COMMIT")) == 0) {
      res->status = STOR_TICKET_CREATED;
      res->id = j->t.id;
      memcpy(res->hash, j->t.hash, 32);
    }
  }
  if (rc != 0) {
    if (!sqlite3_get_autocommit(db))
      sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
    res->status = rc;
  }
  free(old);
}

/* Writer: the reversal of `id` already stored, 0 if none, or -errno. */
static int64_t reversal_of(sqlite3 *db, int64_t id) {
  sqlite3_stmt *st = NULL;
  int64_t rc = stor__prepare(db, "SELECT id FROM ledger WHERE corrects = ?1 AND reversal = 1", &st);
  if (rc != 0)
    return rc;
  sqlite3_bind_int64(st, 1, id);
  int src = sqlite3_step(st);
  rc = src == SQLITE_ROW    ? sqlite3_column_int64(st, 0)
       : src == SQLITE_DONE ? 0
                            : stor__fail(db, src, "ledger lookup");
  sqlite3_finalize(st);
  return rc;
}

static void do_correct(sqlite3 *db, job_t *j, stor_ticket_result_t *res) {
  stor_ticket_t *rev = malloc(sizeof(*rev));
  int rc = rev ? stor__exec(db, "BEGIN IMMEDIATE") : -ENOMEM;
  int found = 0;
  int64_t done = 0;
  if (rc == 0 && (found = find(db, j->corrects, NULL, 0, rev)) < 0)
    rc = found;
  if (rc == 0 && !found) {
    res->status = -ENOENT;
  } else if (rc == 0 && rev->reversal) {
    res->status = -EINVAL;
    res->id = rev->corrects;
  } else if (rc == 0 && (done = reversal_of(db, j->corrects)) != 0) {
    if (done < 0) {
      rc = (int)done;
    } else {
      res->status = -EALREADY;
      res->id = done;
    }
  } else if (rc == 0) {
    /* the reversal: the entry with every weight negated, at its time */
    snprintf(rev->source, sizeof(rev->source), "correction");
    rev->no = 0;
    rev->gross_kg = -rev->gross_kg;
    rev->tare_kg = -rev->tare_kg;
    rev->net_kg = -rev->net_kg;
    rev->corrects = j->corrects;
    rev->reversal = true;
    snprintf(rev->note, sizeof(rev->note), "%s", j->note);
    if ((rc = append(db, rev)) == 0) {
      res->id = rev->id;
      memcpy(res->hash, rev->hash, 32);
    }
    if (rc == 0 && j->has_ticket) {
      stor_ticket_t *rep = &j->t;
      snprintf(rep->source, sizeof(rep->source), "correction");
      rep->no = 0; /* the slip number stays with the original */
      rep->corrects = j->corrects;
      rep->reversal = false;
      snprintf(rep->note, sizeof(rep->note), "%s", j->note);
      if ((rc = append(db, rep)) == 0) {
        res->id2 = rep->id;
        memcpy(res->hash, rep->hash, 32);
      }
    }
    if (rc == 0 && (rc = stor__exec(db, "COMMIT")) == 0)
      res->status = STOR_TICKET_CREATED;
  }
  if (rc != 0)
    res->status = rc;
  if (!sqlite3_get_autocommit(db))
    sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
  free(rev);
}

static int64_t job_fn(stor_db_t *db, stor_req_t *req) {
  job_t *j = (job_t *)req;
  stor_ticket_result_t res;
  memset(&res, 0, sizeof(res));
  if (j->correct)
    do_correct(db->db, j, &res);
  else
    do_submit(db->db, j, &res);
  if (res.status < 0 && res.status != -EEXIST && res.status != -ENOENT && res.status != -EALREADY &&
      res.status != -EINVAL)
    log_err("ledger: entry not stored: %s", strerror(-res.status));
  j->cb(j->arg, &res);
  free(j);
  /* The job is gone; tell request_run() not to touch it. */
  return STOR_REQ_PENDING;
}

/* Queues `req` for the writer without waiting: request_post() in db.c
 * without its wait, under the same lock and rules (storage_int.h: the
 * request list is under mu). The request completes itself (job_fn()). */
static int post_async(stor_db_t *db, stor_req_t *req) {
  int rc = 0;
  pthread_mutex_lock(&db->mu);
  if (db->stopping || db->exited) {
    rc = -ESHUTDOWN;
  } else {
    req->done = false;
    req->next = NULL;
    if (db->req_tail)
      db->req_tail->next = req;
    else
      db->req_head = req;
    db->req_tail = req;
    pthread_cond_signal(&db->wake);
  }
  pthread_mutex_unlock(&db->mu);
  return rc;
}

static int submit(stor_db_t *db, job_t *j) {
  j->req.fn = job_fn;
  int rc = post_async(db, &j->req);
  if (rc != 0)
    free(j);
  return rc;
}

int stor_ticket_submit(stor_db_t *db, const stor_ticket_t *t, stor_ticket_cb cb, void *arg) {
  if (!db || !t || !cb || stor_ticket_check(t, NULL, 0) != 0)
    return -EINVAL;
  job_t *j = calloc(1, sizeof(*j));
  if (!j)
    return -ENOMEM;
  j->t = *t;
  j->has_ticket = true;
  j->cb = cb;
  j->arg = arg;
  return submit(db, j);
}

int stor_ticket_correct_submit(stor_db_t *db, int64_t id, const stor_ticket_t *replacement,
                               const char *note, stor_ticket_cb cb, void *arg) {
  if (!db || id <= 0 || !note || !*note || strlen(note) >= STOR_TICKET_TEXT || !cb ||
      (replacement && stor_ticket_check(replacement, NULL, 0) != 0))
    return -EINVAL;
  job_t *j = calloc(1, sizeof(*j));
  if (!j)
    return -ENOMEM;
  j->correct = true;
  j->corrects = id;
  if (replacement) {
    j->t = *replacement;
    j->has_ticket = true;
  }
  snprintf(j->note, sizeof(j->note), "%s", note);
  j->cb = cb;
  j->arg = arg;
  return submit(db, j);
}

/* ---- waiting for a result */
typedef struct waiter {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  bool done;
  stor_ticket_result_t res;
} waiter_t;

static void waiter_on_done(void *arg, const stor_ticket_result_t *res) {
  waiter_t *w = arg;
  pthread_mutex_lock(&w->mu);
  w->res = *res;
  w->done = true;
  pthread_cond_signal(&w->cv);
  pthread_mutex_unlock(&w->mu);
}

static int wait_for(waiter_t *w, int rc, stor_ticket_result_t *res) {
  pthread_mutex_lock(&w->mu);
  while (rc == 0 && !w->done)
    pthread_cond_wait(&w->cv, &w->mu);
  pthread_mutex_unlock(&w->mu);
  pthread_mutex_destroy(&w->mu);
  pthread_cond_destroy(&w->cv);
  if (rc == 0)
    *res = w->res;
  return rc;
}

int stor_ticket_commit(stor_db_t *db, const stor_ticket_t *t, stor_ticket_result_t *res) {
  waiter_t w = {.done = false};
  pthread_mutex_init(&w.mu, NULL);
  pthread_cond_init(&w.cv, NULL);
  return wait_for(&w, stor_ticket_submit(db, t, waiter_on_done, &w), res);
}

int stor_ticket_correct(stor_db_t *db, int64_t id, const stor_ticket_t *replacement,
                        const char *note, stor_ticket_result_t *res) {
  waiter_t w = {.done = false};
  pthread_mutex_init(&w.mu, NULL);
  pthread_cond_init(&w.cv, NULL);
  return wait_for(&w, stor_ticket_correct_submit(db, id, replacement, note, waiter_on_done, &w),
                  res);
}

/* ---- progress and bill of quantities: small writes that wait */
typedef struct small_req {
  stor_req_t req; /* first */
  double t, value;
  bool seed_only, stored;
  const stor_boq_item_t *items;
  size_t n;
} small_req_t;

static int64_t progress_fn(stor_db_t *db, stor_req_t *req) {
  small_req_t *r = (small_req_t *)req;
  sqlite3_stmt *st = NULL;
  int64_t count = 0;
  int rc = stor__exec(db->db, "BEGIN IMMEDIATE");
  if (rc == 0 && r->seed_only)
    rc = stor__query_int(db->db, "SELECT count(*) FROM progress", &count);
  if (rc == 0 && count == 0 &&
      (rc = stor__prepare(db->db, "INSERT INTO progress(t, value) VALUES(?1, ?2)", &st)) == 0) {
    sqlite3_bind_double(st, 1, r->t);
    sqlite3_bind_double(st, 2, r->value);
    rc = step_done(db->db, st, "store progress");
    r->stored = rc == 0;
  }
  sqlite3_finalize(st);
  if (rc == 0)
    rc = stor__exec(db->db, "COMMIT");
  if (rc != 0 && !sqlite3_get_autocommit(db->db))
    sqlite3_exec(db->db, "ROLLBACK", NULL, NULL, NULL);
  return rc;
}

int stor_progress_set(stor_db_t *db, double t, double progress) {
  if (!db || !isfinite(t) || !(progress >= 0 && progress <= 1))
    return -EINVAL;
  small_req_t r = {.req = {.fn = progress_fn}, .t = t, .value = progress};
  return (int)stor__request_post(db, &r.req);
}

int stor_progress_seed(stor_db_t *db, double t, double progress, bool *stored) {
  if (!db || !isfinite(t) || !(progress >= 0 && progress <= 1))
    return -EINVAL;
  small_req_t r = {.req = {.fn = progress_fn}, .t = t, .value = progress, .seed_only = true};
  int rc = (int)stor__request_post(db, &r.req);
  if (stored)
    *stored = rc == 0 && r.stored;
  return rc;
}

static int64_t boq_fn(stor_db_t *db, stor_req_t *req) {
  small_req_t *r = (small_req_t *)req;
  sqlite3_stmt *st = NULL;
  int rc = stor__exec(db->db, "BEGIN IMMEDIATE");
  if (rc == 0)
    rc = stor__exec(db->db, "DELETE FROM boq");
  if (rc == 0)
    rc = stor__prepare(db->db,
                       "INSERT INTO boq(material, net_t, description, imported)"
                       " VALUES(?1, ?2, ?3, ?4)",
                       &st);
  for (size_t i = 0; rc == 0 && i < r->n; i++) {
    bind_text(st, 1, r->items[i].material);
    sqlite3_bind_double(st, 2, r->items[i].net_t);
    bind_text(st, 3, r->items[i].description);
    sqlite3_bind_double(st, 4, r->t);
    rc = step_done(db->db, st, "store the bill of quantities");
    sqlite3_reset(st);
  }
  sqlite3_finalize(st);
  if (rc == 0)
    rc = stor__exec(db->db, "COMMIT");
  if (rc != 0 && !sqlite3_get_autocommit(db->db))
    sqlite3_exec(db->db, "ROLLBACK", NULL, NULL, NULL);
  return rc;
}

int stor_boq_replace(stor_db_t *db, const stor_boq_item_t *items, size_t n, double t) {
  if (!db || (n && !items))
    return -EINVAL;
  for (size_t i = 0; i < n; i++)
    if (!terminated(items[i].material, sizeof(items[i].material)) || !items[i].material[0] ||
        !terminated(items[i].description, sizeof(items[i].description)) || !(items[i].net_t > 0) ||
        !isfinite(items[i].net_t))
      return -EINVAL;
  small_req_t r = {.req = {.fn = boq_fn}, .t = t, .items = items, .n = n};
  return (int)stor__request_post(db, &r.req);
}

/* ---- reads */
static int reader_stmt(stor_reader_t *r, const char *sql, sqlite3_stmt **st) {
  sqlite3 *db = stor__reader_db(r);
  return db ? stor__prepare(db, sql, st) : -EINVAL;
}

/* Steps `st` to the end; for each row, `row` returns non-zero to stop. */
static int each_row(stor_reader_t *r, sqlite3_stmt *st, int (*row)(sqlite3_stmt *st, void *ctx),
                    void *ctx, const char *what) {
  int rc = 0, src;
  while ((src = sqlite3_step(st)) == SQLITE_ROW)
    if ((rc = row(st, ctx)) != 0)
      break;
  if (rc == 0 && src != SQLITE_DONE && src != SQLITE_ROW)
    rc = stor__fail(stor__reader_db(r), src, what);
  sqlite3_finalize(st);
  return rc > 0 ? 0 : rc;
}

struct list_ctx {
  stor_ticket_row_cb cb;
  void *arg;
  stor_ticket_t t;
};

static int list_row(sqlite3_stmt *st, void *p) {
  struct list_ctx *c = p;
  row_read(st, &c->t);
  return c->cb(c->arg, &c->t) ? 1 : 0;
}

int stor_ticket_list(stor_reader_t *r, int64_t since_t, int64_t until_t, size_t limit,
                     stor_ticket_row_cb cb, void *arg) {
  sqlite3_stmt *st = NULL;
  int rc = reader_stmt(r,
                       "SELECT " COLS " FROM ledger WHERE t >= ?1 AND t < ?2 ORDER BY id"
                       " LIMIT ?3",
                       &st);
  if (rc != 0)
    return rc;
  sqlite3_bind_int64(st, 1, since_t);
  sqlite3_bind_int64(st, 2, until_t);
  sqlite3_bind_int64(st, 3, limit > INT64_MAX ? INT64_MAX : (int64_t)limit);
  struct list_ctx *c = malloc(sizeof(*c));
  if (!c) {
    sqlite3_finalize(st);
    return -ENOMEM;
  }
  c->cb = cb;
  c->arg = arg;
  rc = each_row(r, st, list_row, c, "list ledger entries");
  free(c);
  return rc;
}

int stor_ticket_get(stor_reader_t *r, int64_t id, stor_ticket_t *out) {
  sqlite3_stmt *st = NULL;
  int rc = reader_stmt(r, "SELECT " COLS " FROM ledger WHERE id = ?1", &st);
  if (rc != 0)
    return rc;
  sqlite3_bind_int64(st, 1, id);
  int src = sqlite3_step(st);
  if (src == SQLITE_ROW)
    rc = row_read(st, out) ? 0 : -EIO;
  else if (src == SQLITE_DONE)
    rc = -ENOENT;
  else
    rc = stor__fail(stor__reader_db(r), src, "ledger entry");
  sqlite3_finalize(st);
  return rc;
}

struct sum_ctx {
  stor_ledger_sum_cb cb;
  void *arg;
};

static const char *col_text(sqlite3_stmt *st, int col) {
  const unsigned char *s = sqlite3_column_text(st, col);
  return s ? (const char *)s : "";
}

static int sum_row(sqlite3_stmt *st, void *p) {
  struct sum_ctx *c = p;
  return c->cb(c->arg, col_text(st, 0), col_text(st, 1), col_text(st, 2), col_text(st, 3),
               col_text(st, 4), sqlite3_column_int(st, 5) != 0, sqlite3_column_int64(st, 6),
               sqlite3_column_int64(st, 7))
             ? 1
             : 0;
}

int stor_ledger_sums(stor_reader_t *r, int64_t since_t, int64_t until_t, stor_ledger_sum_cb cb,
                     void *arg) {
  sqlite3_stmt *st = NULL;
  int rc = reader_stmt(r,
                       "SELECT type, category, kind, dest, material, green_cert, sum(net_kg),"
                       " count(*) FROM ledger WHERE t >= ?1 AND t < ?2"
                       " GROUP BY type, category, kind, dest, material, green_cert",
                       &st);
  if (rc != 0)
    return rc;
  sqlite3_bind_int64(st, 1, since_t);
  sqlite3_bind_int64(st, 2, until_t);
  struct sum_ctx c = {cb, arg};
  return each_row(r, st, sum_row, &c, "ledger sums");
}

struct name_ctx {
  stor_ledger_name_cb cb;
  void *arg;
};

static int name_row(sqlite3_stmt *st, void *p) {
  struct name_ctx *c = p;
  return c->cb(c->arg, col_text(st, 0), sqlite3_column_int64(st, 1), sqlite3_column_int64(st, 2))
             ? 1
             : 0;
}

int stor_ledger_names(stor_reader_t *r, const char *what, int64_t since_t, int64_t until_t,
                      stor_ledger_name_cb cb, void *arg) {
  const char *sql;
  if (what && strcmp(what, "carrier") == 0)
    sql = "SELECT carrier, sum(net_kg), sum(1 - 2 * reversal) FROM ledger"
          " WHERE type = 'waste' AND dest != 'reuse_onsite' AND t >= ?1 AND t < ?2"
          " GROUP BY carrier ORDER BY 2 DESC";
  else if (what && strcmp(what, "dest_name") == 0)
    sql = "SELECT dest_name, sum(net_kg), sum(1 - 2 * reversal) FROM ledger"
          " WHERE type = 'waste' AND dest != 'reuse_onsite' AND t >= ?1 AND t < ?2"
          " GROUP BY dest_name ORDER BY 2 DESC";
  else
    return -EINVAL;
  sqlite3_stmt *st = NULL;
  int rc = reader_stmt(r, sql, &st);
  if (rc != 0)
    return rc;
  sqlite3_bind_int64(st, 1, since_t);
  sqlite3_bind_int64(st, 2, until_t);
  struct name_ctx c = {cb, arg};
  return each_row(r, st, name_row, &c, "ledger names");
}

/* ---- verification */
__attribute__((format(printf, 3, 4))) static int broken(stor_verify_t *v, int64_t id,
                                                        const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(v->reason, sizeof(v->reason), fmt, ap);
  va_end(ap);
  v->bad_id = id;
  return -EBADMSG;
}

static int verify_rows(sqlite3 *db, stor_verify_t *v) {
  sqlite3_stmt *st = NULL;
  stor_ticket_t *t = malloc(sizeof(*t));
  int rc = t ? stor__prepare(db, "SELECT " COLS " FROM ledger ORDER BY id", &st) : -ENOMEM;
  int src = SQLITE_DONE;
  uint8_t want[32];
  while (rc == 0 && (src = sqlite3_step(st)) == SQLITE_ROW) {
    bool whole = row_read(st, t);
    int64_t expect = v->entries + 1;
    if (t->id != expect)
      rc = broken(v, expect,
                  t->id > expect ? "entry %" PRId64 " is missing (the next entry is %" PRId64 ")"
                                 : "entry %" PRId64 " is out of order (found %" PRId64 ")",
                  expect, t->id);
    else if (!whole)
      rc = broken(v, t->id, "entry %" PRId64 ": its stored hashes are not 32 bytes", t->id);
    else if (memcmp(t->prev, v->head, 32) != 0)
      rc = broken(v, t->id,
                  "entry %" PRId64 ": its link to entry %" PRId64
                  " does not match (an entry before it was changed, removed or inserted)",
                  t->id, t->id - 1);
    else if ((rc = entry_hash(t, t->prev, want)) == 0 && memcmp(want, t->hash, 32) != 0)
      rc = broken(v, t->id,
                  "entry %" PRId64 ": its contents do not match its hash (it was changed after "
                  "it was written)",
                  t->id);
    if (rc == 0) {
      memcpy(v->head, t->hash, 32);
      v->entries++;
    }
  }
  if (rc == 0 && src != SQLITE_DONE)
    rc = stor__fail(db, src, "read the ledger");
  sqlite3_finalize(st);
  free(t);
  return rc;
}

static int verify_head(sqlite3 *db, stor_verify_t *v) {
  sqlite3_stmt *st = NULL;
  int rc = stor__prepare(db, "SELECT entries, hash FROM ledger_head WHERE one = 1", &st);
  if (rc != 0)
    return rc;
  int src = sqlite3_step(st);
  if (src != SQLITE_ROW) {
    rc = src == SQLITE_DONE ? broken(v, v->entries + 1, "the ledger head is missing")
                            : stor__fail(db, src, "ledger head");
  } else {
    int64_t n = sqlite3_column_int64(st, 0);
    uint8_t h[32];
    blob_col(st, 1, h);
    if (n > v->entries)
      rc = broken(v, v->entries + 1,
                  "the ledger ends at entry %" PRId64 " but its head records %" PRId64
                  " entries (entries were removed from the end)",
                  v->entries, n);
    else if (n < v->entries)
      rc = broken(v, n + 1,
                  "the head records %" PRId64 " entries but the ledger holds %" PRId64
                  " (entries were added outside sitegate)",
                  n, v->entries);
    else if (memcmp(h, v->head, 32) != 0)
      rc = broken(v, n, "the ledger head's hash does not match entry %" PRId64, n);
  }
  sqlite3_finalize(st);
  return rc;
}

int stor_ledger_verify(stor_reader_t *r, stor_verify_t *out) {
  sqlite3 *db = stor__reader_db(r);
  if (!db || !out)
    return -EINVAL;
  memset(out, 0, sizeof(*out));
  /* One read transaction: the rows and the head from the same snapshot. */
  int rc = stor__exec(db, "BEGIN");
  if (rc != 0)
    return rc;
  rc = verify_rows(db, out);
  if (rc == 0)
    rc = verify_head(db, out);
  sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
  return rc;
}

/* ---- progress and BoQ reads */
struct prog_ctx {
  stor_progress_cb cb;
  void *arg;
};

static int prog_row(sqlite3_stmt *st, void *p) {
  struct prog_ctx *c = p;
  return c->cb(c->arg, sqlite3_column_double(st, 0), sqlite3_column_double(st, 1)) ? 1 : 0;
}

int stor_progress_list(stor_reader_t *r, stor_progress_cb cb, void *arg) {
  sqlite3_stmt *st = NULL;
  int rc = reader_stmt(r, "SELECT t, value FROM progress ORDER BY seq", &st);
  if (rc != 0)
    return rc;
  struct prog_ctx c = {cb, arg};
  return each_row(r, st, prog_row, &c, "progress");
}

struct boq_ctx {
  stor_boq_cb cb;
  void *arg;
};

static int boq_row(sqlite3_stmt *st, void *p) {
  struct boq_ctx *c = p;
  stor_boq_item_t it;
  memset(&it, 0, sizeof(it));
  text_col(st, 0, it.material, sizeof(it.material));
  it.net_t = sqlite3_column_double(st, 1);
  text_col(st, 2, it.description, sizeof(it.description));
  return c->cb(c->arg, &it, sqlite3_column_double(st, 3)) ? 1 : 0;
}

int stor_boq_list(stor_reader_t *r, stor_boq_cb cb, void *arg) {
  sqlite3_stmt *st = NULL;
  int rc = reader_stmt(r,
                       "SELECT material, net_t, description, imported FROM boq"
                       " ORDER BY material",
                       &st);
  if (rc != 0)
    return rc;
  struct boq_ctx c = {cb, arg};
  return each_row(r, st, boq_row, &c, "bill of quantities");
}

void stor_ticket_from_proto(const proto_ticket_t *p, const char *source, stor_ticket_t *out) {
  memset(out, 0, sizeof(*out));
  snprintf(out->source, sizeof(out->source), "%s", source);
  snprintf(out->type, sizeof(out->type), "%s", proto_ticket_type_name(p->type));
  snprintf(out->scale, sizeof(out->scale), "%s", p->scale);
  out->no = p->no;
  out->t = p->t;
  snprintf(out->plate, sizeof(out->plate), "%s", p->plate);
  snprintf(out->dir, sizeof(out->dir), "%s", p->dir_in ? "in" : "out");
  out->weighed = p->gross_kg >= 0 && p->tare_kg >= 0;
  out->gross_kg = out->weighed ? p->gross_kg : 0;
  out->tare_kg = out->weighed ? p->tare_kg : 0;
  out->net_kg = p->net_kg;
  if (p->category >= 0)
    snprintf(out->category, sizeof(out->category), "%s", proto_waste_category_name(p->category));
  if (p->kind >= 0)
    snprintf(out->kind, sizeof(out->kind), "%s", proto_waste_kind_name(p->kind));
  if (p->dest >= 0)
    snprintf(out->dest, sizeof(out->dest), "%s", proto_waste_dest_name(p->dest));
  snprintf(out->dest_name, sizeof(out->dest_name), "%s", p->dest_name);
  snprintf(out->carrier, sizeof(out->carrier), "%s", p->carrier);
  snprintf(out->material, sizeof(out->material), "%s", p->material);
  out->green_cert = p->green_cert;
  snprintf(out->note, sizeof(out->note), "%s", p->note);
}
