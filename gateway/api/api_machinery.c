/* The machinery endpoints of the local API (rows of the route table in
 * http.c; protocol/HTTP.md): the register, entries and exits by a person,
 * and each machine's state and daily figures.
 *
 *   GET  /api/machinery                 every machine: register, on site,
 *        [?retired=1]                   compliance, today's figures
 *   GET  /api/machinery/CODE            one machine: also its days, its
 *        [?days=N]                      moves and its audit trail
 *   POST /api/machinery                 add {"code","type","stage",...}
 *   POST /api/machinery/import          {"csv":"...","by","reason"}
 *   POST /api/machinery/CODE            change (fields given replace)
 *   POST /api/machinery/CODE/retire     {"by","reason"}
 *   POST /api/machinery/CODE/enter|leave  {"by","reason","t"}
 *
 * Writes go to storage from this thread (they wait for the writer, never
 * the loop), then the machinery daemon is told on the loop. The state
 * (on site, compliant) is the daemon's; the figures are computed here
 * from stored moves and readings with the same pure functions. */
#define LOG_MODULE "http"

#include "gateway/api/api.h"
#include "gateway/machinery/machinery.h"
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define DAYS_DEFAULT 7
#define DAYS_MAX 92
#define AUDIT_LIMIT 200
#define MOVES_LIMIT 200

static double local_midnight(double t) {
  time_t tt = (time_t)floor(t);
  struct tm tm;
  localtime_r(&tt, &tm);
  tm.tm_hour = tm.tm_min = tm.tm_sec = 0;
  tm.tm_isdst = -1;
  return (double)mktime(&tm);
}

static double next_midnight(double day) { return local_midnight(day + 36 * 3600.0); }

/* ---- figures (machinery_day(): today ends now) */

static int day_figures(const http_req_t *req, const mach_zone_t *z, const char *code,
                       const stor_machine_t *m, double day, mach_day_t *out) {
  (void)z;
  return machinery_day(req->reader, req->gw->cfg, code, m, day, fmin(next_midnight(day), sg_now()),
                       out);
}

static json_t *num_or_null(double v) { return isfinite(v) ? json_real(v) : json_null(); }

static json_t *day_json(double day, const mach_day_t *d) {
  char date[16];
  time_t t = (time_t)day;
  struct tm tm;
  localtime_r(&t, &tm);
  strftime(date, sizeof(date), "%Y-%m-%d", &tm);
  return json_pack("{s:s,s:f,s:f,s:o,s:o,s:o,s:f,s:f,s:f}", "date", date, "day", day, "onsite_h",
                   d->onsite_h, "engine_h", num_or_null(d->engine_h), "idle_share",
                   num_or_null(d->idle_share), "fuel_l", num_or_null(d->fuel_l), "t_co2", d->t_co2,
                   "nox_kg", d->nox_kg, "pm_kg", d->pm_kg);
}

/* ---- one machine as the API shows it */

static json_t *machine_json(const http_req_t *req, const mach_zone_t *z, const char *code,
                            const stor_machine_t *m, json_t *status, double today) {
  json_t *o = json_object();
  json_object_set_new(o, "code", json_string(code));
  json_object_set_new(o, "registered", json_boolean(m && m->retired == 0));
  json_object_set_new(o, "type", m ? json_string(m->m.type) : json_null());
  json_object_set_new(o, "stage", m ? json_string(proto_stage_name(m->m.stage)) : json_null());
  json_object_set_new(o, "power_kw", m ? json_real(m->m.power_kw) : json_null());
  json_object_set_new(o, "fuel", m ? json_string(proto_fuel_name(m->m.fuel)) : json_null());
  json_object_set_new(o, "owner", m ? json_string(m->m.owner) : json_null());
  json_object_set_new(o, "label", m ? json_string(m->m.label) : json_null());
  json_object_set_new(o, "terminal",
                      m && m->m.terminal[0] ? json_string(m->m.terminal) : json_null());
  json_object_set_new(o, "added", m ? json_real(m->added) : json_null());
  json_object_set_new(o, "retired", m && m->retired > 0 ? json_real(m->retired) : json_null());
  json_t *s = json_object_get(status, code);
  json_object_set_new(o, "on_site", json_boolean(json_is_true(json_object_get(s, "on_site"))));
  json_object_set_new(o, "working", json_boolean(json_is_true(json_object_get(s, "working"))));
  json_object_set_new(o, "compliant",
                      json_boolean(!s || json_is_true(json_object_get(s, "compliant"))));
  json_t *reasons = json_object_get(s, "reasons");
  json_object_set_new(o, "reasons", reasons ? json_incref(reasons) : json_array());
  json_t *text = json_object_get(s, "reasons_text");
  json_object_set_new(o, "reasons_text", text ? json_incref(text) : json_string(""));
  json_t *lm = json_object_get(s, "last_move");
  json_object_set_new(o, "last_move", lm ? json_incref(lm) : json_null());
  json_t *op = json_object_get(s, "opacity");
  json_object_set_new(o, "opacity", op ? json_incref(op) : json_null());
  mach_day_t d;
  if (day_figures(req, z, code, m, today, &d) == 0) {
    json_object_set_new(o, "hours_today", json_real(round(d.onsite_h * 100) / 100));
    json_object_set_new(o, "engine_h_today", num_or_null(d.engine_h));
    json_object_set_new(o, "fuel_l_today", num_or_null(d.fuel_l));
  }
  return o;
}

/* ---- GET /api/machinery */

typedef struct list_ctx {
  const http_req_t *req;
  const mach_zone_t *z;
  json_t *status, *arr, *seen;
  double today;
} list_ctx_t;

static int list_row(void *arg, const stor_machine_t *m) {
  list_ctx_t *l = arg;
  json_array_append_new(l->arr, machine_json(l->req, l->z, m->m.code, m, l->status, l->today));
  json_object_set_new(l->seen, m->m.code, json_true());
  return 0;
}

void api_machinery(const http_req_t *req, http_resp_t *resp) {
  json_t *status = machinery_status_json(req->gw);
  if (!status) {
    http_error(resp, 503, API_ERR_STOPPING, "the gateway is stopping");
    return;
  }
  mach_zone_t z;
  mach_zone_from_config(req->gw->cfg, &z);
  const char *ret = http_query(req, "retired");
  double now = sg_now();
  list_ctx_t l = {req, &z, status, json_array(), json_object(), local_midnight(now)};
  int rc = stor_machine_list(req->reader, ret && strcmp(ret, "1") == 0, list_row, &l);
  /* machines the gate or a person saw that are not in the register */
  const char *code;
  json_t *s;
  json_object_foreach(status, code, s) {
    if (rc == 0 && !json_object_get(l.seen, code)) {
      stor_machine_t m;
      int g = stor_machine_get(req->reader, code, &m);
      if (g == 0 && m.retired > 0 && !(ret && strcmp(ret, "1") == 0) &&
          json_is_true(json_object_get(s, "on_site")))
        json_array_append_new(l.arr, machine_json(req, &z, code, &m, status, l.today));
      else if (g == -ENOENT)
        json_array_append_new(l.arr, machine_json(req, &z, code, NULL, status, l.today));
    }
  }
  json_decref(l.seen);
  json_decref(status);
  if (rc != 0) {
    json_decref(l.arr);
    http_error(resp, 503, API_ERR_DB_QUERY, "database query failed: %s", strerror(-rc));
    http_error_sys(resp, -rc);
    return;
  }
  resp->json = json_pack(
      "{s:f,s:{s:s,s:b,s:f,s:s},s:o}", "now", now, "zone", "min_stage",
      proto_stage_name(z.min_stage), "require_registration", z.require_registration,
      "opacity_limit_per_m", z.opacity_limit, "opacity_source",
      "GB 36886-2018 clause 4 (value not confirmed: deploy/CONFIG.md)", "machines", l.arr);
}

/* ---- GET /api/machinery/CODE */

/* An audit row with the register's fields after the change as the
 * machine's own (`null` for a retirement), so that they can be shown in
 * the reader's language; `detail` keeps the stored text. */
static int audit_row(void *arg, const stor_machine_audit_t *a) {
  const proto_machine_t *m = a->has_row ? &a->row : NULL;
  json_t *o = json_pack("{s:I,s:f,s:s,s:s,s:s,s:s}", "id", (json_int_t)a->id, "t", a->t, "action",
                        a->action, "by", a->actor, "reason", a->reason, "detail", a->detail);
  json_object_set_new(o, "machine",
                      m ? json_pack("{s:s,s:s,s:f,s:s,s:s,s:s,s:s?}", "type", m->type, "stage",
                                    proto_stage_name(m->stage), "power_kw", m->power_kw, "fuel",
                                    proto_fuel_name(m->fuel), "owner", m->owner, "label", m->label,
                                    "terminal", m->terminal[0] ? m->terminal : NULL)
                        : json_null());
  json_array_append_new(arg, o);
  return 0;
}

static int move_row(void *arg, const stor_move_t *mv) {
  json_array_append_new(arg, json_pack("{s:I,s:f,s:s,s:s,s:s,s:I}", "id", (json_int_t)mv->id, "t",
                                       mv->t, "dir", mv->in ? "in" : "out", "source", mv->source,
                                       "by", mv->actor, "no", (json_int_t)mv->no));
  return 0;
}

void api_machine_detail(const http_req_t *req, http_resp_t *resp) {
  const char *code = req->tail;
  if (!proto_machine_code_ok(code)) {
    http_error(resp, 404, API_ERR_NO_MACHINE_CODE,
               "no such machine: \"%s\" is not a registration code", code);
    return;
  }
  long days = DAYS_DEFAULT;
  const char *dq = http_query(req, "days");
  if (dq) {
    char *end;
    days = strtol(dq, &end, 10);
    if (*end || days < 1 || days > DAYS_MAX) {
      http_error(resp, 400, API_ERR_DAYS_ARG, "days must be 1..%d", DAYS_MAX);
      return;
    }
  }
  stor_machine_t m;
  int rc = stor_machine_get(req->reader, code, &m);
  json_t *status = machinery_status_json(req->gw);
  if (!status) {
    http_error(resp, 503, API_ERR_STOPPING, "the gateway is stopping");
    return;
  }
  if (rc == -ENOENT && !json_object_get(status, code)) {
    json_decref(status);
    http_error(resp, 404, API_ERR_NO_MACHINE,
               "no machine %s: neither in the register nor seen on site", code);
    return;
  }
  mach_zone_t z;
  mach_zone_from_config(req->gw->cfg, &z);
  double now = sg_now(), today = local_midnight(now);
  const stor_machine_t *mp = rc == 0 ? &m : NULL;
  json_t *o = machine_json(req, &z, code, mp, status, today);
  json_decref(status);
  json_t *dayarr = json_array(), *audit = json_array(), *moves = json_array();
  double day = today;
  for (long i = 0; i < days; i++) {
    mach_day_t d;
    if (day_figures(req, &z, code, mp, day, &d) == 0)
      json_array_insert_new(dayarr, 0, day_json(day, &d));
    day = local_midnight(day - 1);
  }
  stor_machine_audit(req->reader, code, AUDIT_LIMIT, audit_row, audit);
  stor_machine_moves(req->reader, code, now - days * 86400.0, now + 3600, MOVES_LIMIT, move_row,
                     moves);
  json_object_set_new(o, "days", dayarr);
  json_object_set_new(o, "moves", moves);
  json_object_set_new(o, "audit", audit);
  json_object_set_new(
      o, "factors",
      json_pack("{s:f,s:f,s:f,s:s}", "diesel_kg_per_l", req->gw->cfg->energy_diesel_factor,
                "petrol_kg_per_l", MACH_PETROL_KG_PER_L, "load_factor", MACH_LOAD_FACTOR,
                "nox_pm_source",
                "GB 20891-2007 (China I, II) and GB 20891-2014 (III, IV) limit values by stage "
                "and power band, as g/kWh; stage 0 assumed 1.5 x stage I"));
  resp->json = o;
}

/* ---- writes */

static const char *actor_of(const json_t *b) {
  const char *by = json_string_value(json_object_get(b, "by"));
  return by && *by ? by : "api";
}

static int who_why(const json_t *b, const char *def_reason, const char **by, const char **reason,
                   http_resp_t *resp) {
  *by = actor_of(b);
  *reason = json_string_value(json_object_get(b, "reason"));
  if ((!*reason || !**reason) && def_reason)
    *reason = def_reason;
  if (!*reason || !**reason) {
    http_error(resp, 400, API_ERR_REGISTER_REASON,
               "a change to the register needs a reason a person can read later");
    return -EINVAL;
  }
  if (strlen(*by) > STOR_MACHINE_ACTOR_MAX || strlen(*reason) > STOR_MACHINE_REASON_MAX) {
    http_error(resp, 400, API_ERR_BY_REASON_LONG, "by is at most %d bytes and reason at most %d",
               STOR_MACHINE_ACTOR_MAX, STOR_MACHINE_REASON_MAX);
    return -EINVAL;
  }
  return 0;
}

static int set_text(json_t *b, const char *key, char *dst, size_t cap, http_resp_t *resp) {
  json_t *v = json_object_get(b, key);
  if (!v)
    return 0;
  const char *s = json_string_value(v);
  if (!s || strlen(s) >= cap) {
    http_error(resp, 400, API_ERR_TEXT_LONG, "%s is text of at most %zu bytes", key, cap - 1);
    return -EINVAL;
  }
  snprintf(dst, cap, "%s", s);
  return 0;
}

/* Fields of the body into `m` (those absent are left as they are). */
static int machine_from_body(const http_req_t *req, json_t *b, proto_machine_t *m,
                             http_resp_t *resp) {
  if (set_text(b, "type", m->type, sizeof(m->type), resp) ||
      set_text(b, "owner", m->owner, sizeof(m->owner), resp) ||
      set_text(b, "label", m->label, sizeof(m->label), resp) ||
      set_text(b, "terminal", m->terminal, sizeof(m->terminal), resp))
    return -EINVAL;
  json_t *st = json_object_get(b, "stage"), *kw = json_object_get(b, "power_kw");
  json_t *fu = json_object_get(b, "fuel");
  if (st) {
    int s = proto_stage_from_name(json_string_value(st));
    if (s < 0) {
      http_error(resp, 400, API_ERR_STAGE_ARG, "stage must be 0, I, II, III, IV or electric");
      return -EINVAL;
    }
    m->stage = (int8_t)s;
    if (!fu)
      m->fuel = s == PROTO_STAGE_ELECTRIC        ? PROTO_FUEL_ELECTRIC
                : m->fuel == PROTO_FUEL_ELECTRIC ? PROTO_FUEL_DIESEL
                                                 : m->fuel;
  }
  if (kw) {
    if (!json_is_number(kw)) {
      http_error(resp, 400, API_ERR_POWER_ARG, "power_kw is a number (kW)");
      return -EINVAL;
    }
    m->power_kw = json_number_value(kw);
  }
  if (fu) {
    int f = proto_fuel_from_name(json_string_value(fu));
    if (f < 0) {
      http_error(resp, 400, API_ERR_FUEL_ARG, "fuel must be diesel, petrol or electric");
      return -EINVAL;
    }
    m->fuel = (int8_t)f;
  }
  char err[256];
  if (proto_machine_check(m, err, sizeof(err)) != 0) {
    http_error_why(resp, 400, err);
    return -EINVAL;
  }
  if (m->terminal[0]) {
    /* a terminal is a `machine` device, never an equipment unit or meter:
     * its fuel then counts in machinery's carbon and nowhere else */
    gw_device_t *d = gw_device_find(req->gw, m->terminal);
    if (!d || d->conf->type != SG_DEV_MACHINE) {
      http_error(resp, 400, API_ERR_TERMINAL_TYPE,
                 "terminal %s must be a [device] with type = machine", m->terminal);
      return -EINVAL;
    }
  }
  return 0;
}

typedef struct term_ctx {
  const char *code, *terminal, *other;
} term_ctx_t;

static int term_row(void *arg, const stor_machine_t *m) {
  term_ctx_t *t = arg;
  if (strcmp(m->m.code, t->code) != 0 && strcmp(m->m.terminal, t->terminal) == 0)
    t->other = "taken";
  return t->other != NULL;
}

static bool terminal_taken(const http_req_t *req, const proto_machine_t *m) {
  term_ctx_t t = {m->code, m->terminal, NULL};
  return m->terminal[0] && stor_machine_list(req->reader, false, term_row, &t) == 0 && t.other;
}

/* Reads the stored row back, tells the daemon and answers with it. */
static void answer_row(const http_req_t *req, const char *code, unsigned status,
                       http_resp_t *resp) {
  stor_machine_t m;
  int rc = stor_machine_get(req->reader, code, &m);
  if (rc != 0) {
    http_error(resp, 503, API_ERR_READ_BACK, "stored, but cannot be read back: %s", strerror(-rc));
    http_error_sys(resp, -rc);
    return;
  }
  if (machinery_note_register(req->gw, &m) != 0) {
    http_error(resp, 503, API_ERR_STOPPING, "the gateway is stopping");
    return;
  }
  json_t *st = machinery_status_json(req->gw);
  mach_zone_t z;
  mach_zone_from_config(req->gw->cfg, &z);
  resp->json = machine_json(req, &z, code, &m, st, local_midnight(sg_now()));
  json_decref(st);
  resp->status = status;
}

static void write_error(int rc, const char *code, http_resp_t *resp) {
  if (rc == -EEXIST)
    http_error(resp, 409, API_ERR_MACHINE_EXISTS,
               "machine %s is in the register already: change it instead", code);
  else if (rc == -ENOENT)
    http_error(resp, 404, API_ERR_MACHINE_MISSING, "machine %s is not in the register", code);
  else {
    http_error(resp, 503, API_ERR_REGISTER_STORE, "the register could not be written: %s",
               strerror(-rc));
    http_error_sys(resp, -rc);
  }
}

/* POST /api/machinery */
void api_machine_add(const http_req_t *req, http_resp_t *resp) {
  json_t *b = req->body;
  const char *code = json_string_value(json_object_get(b, "code"));
  if (!json_is_object(b) || !code) {
    http_error(resp, 400, API_ERR_MACHINE_BODY,
               "send {\"code\": \"...\", \"type\": \"excavator\", \"stage\": \"III\", "
               "\"power_kw\": 103, \"fuel\": \"diesel\", \"owner\": \"...\", \"by\": \"...\"}");
    return;
  }
  proto_machine_t m;
  memset(&m, 0, sizeof(m));
  if (strlen(code) >= sizeof(m.code) || !proto_machine_code_ok(code)) {
    http_error(resp, 400, API_ERR_CODE_ARG,
               "code \"%s\" is not a registration code (1-%d of A-Z a-z 0-9 -)", code,
               PROTO_MACHINE_CODE_MAX);
    return;
  }
  snprintf(m.code, sizeof(m.code), "%s", code);
  m.stage = -1;
  if (!json_object_get(b, "type") || !json_object_get(b, "stage") ||
      !json_object_get(b, "power_kw")) {
    http_error(resp, 400, API_ERR_MACHINE_NEW, "a new machine needs type, stage and power_kw");
    return;
  }
  const char *by, *reason;
  if (machine_from_body(req, b, &m, resp) != 0 ||
      who_why(b, "added to the register", &by, &reason, resp) != 0)
    return;
  if (terminal_taken(req, &m)) {
    http_error(resp, 409, API_ERR_TERMINAL_TAKEN, "terminal %s belongs to another machine",
               m.terminal);
    return;
  }
  int rc = stor_machine_put(req->gw->db, &m, true, by, reason, sg_now());
  if (rc != 0)
    write_error(rc, m.code, resp);
  else
    answer_row(req, m.code, 201, resp);
}

static void machine_change(const http_req_t *req, const char *code, http_resp_t *resp) {
  stor_machine_t cur;
  int rc = stor_machine_get(req->reader, code, &cur);
  if (rc != 0 || cur.retired > 0) {
    write_error(rc ? rc : -ENOENT, code, resp);
    return;
  }
  const char *by, *reason;
  if (machine_from_body(req, req->body, &cur.m, resp) != 0 ||
      who_why(req->body, NULL, &by, &reason, resp) != 0)
    return;
  if (terminal_taken(req, &cur.m)) {
    http_error(resp, 409, API_ERR_TERMINAL_TAKEN, "terminal %s belongs to another machine",
               cur.m.terminal);
    return;
  }
  rc = stor_machine_put(req->gw->db, &cur.m, false, by, reason, sg_now());
  if (rc != 0)
    write_error(rc, code, resp);
  else
    answer_row(req, code, 200, resp);
}

static void machine_retire(const http_req_t *req, const char *code, http_resp_t *resp) {
  const char *by, *reason;
  if (who_why(req->body, NULL, &by, &reason, resp) != 0)
    return;
  int rc = stor_machine_retire(req->gw->db, code, by, reason, sg_now());
  if (rc != 0)
    write_error(rc, code, resp);
  else
    answer_row(req, code, 200, resp);
}

static void move_on_loop(gw_t *gw, void *arg) { gw_move_stored(gw, arg); }

static void machine_move(const http_req_t *req, const char *code, bool in, http_resp_t *resp) {
  json_t *jt = json_object_get(req->body, "t");
  double now = sg_now(), t = json_is_number(jt) ? json_number_value(jt) : now;
  if (!(t > now - (double)req->gw->cfg->raw_days * 86400.0 && t <= now + PROTO_FUTURE_MAX_S)) {
    http_error(resp, 400, API_ERR_T_ARG,
               "t is Unix seconds, not in the future and within [storage] raw_days");
    return;
  }
  const char *by = actor_of(req->body);
  if (strlen(by) > STOR_MACHINE_ACTOR_MAX) {
    http_error(resp, 400, API_ERR_BY_LONG, "by is at most %d bytes", STOR_MACHINE_ACTOR_MAX);
    return;
  }
  stor_move_t mv;
  memset(&mv, 0, sizeof(mv));
  snprintf(mv.gate, sizeof(mv.gate), "sitectl");
  snprintf(mv.code, sizeof(mv.code), "%s", code);
  mv.in = in;
  mv.t = t;
  snprintf(mv.source, sizeof(mv.source), "sitectl");
  snprintf(mv.actor, sizeof(mv.actor), "%s", by);
  mv.received = now;
  stor_move_result_t res;
  int rc = stor_move_commit(req->gw->db, &mv, &res);
  if (rc != 0) {
    http_error(resp, 503, API_ERR_MOVE_STORE, "the move could not be stored: %s", strerror(-rc));
    http_error_sys(resp, -rc);
    return;
  }
  mv.id = res.id;
  if (gw_call_on_loop(req->gw, move_on_loop, &mv) != 0) {
    http_error(resp, 503, API_ERR_STOPPING, "the gateway is stopping");
    return;
  }
  stor_machine_t m;
  bool known = stor_machine_get(req->reader, code, &m) == 0;
  json_t *st = machinery_status_json(req->gw);
  mach_zone_t z;
  mach_zone_from_config(req->gw->cfg, &z);
  resp->json = machine_json(req, &z, code, known ? &m : NULL, st, local_midnight(now));
  json_decref(st);
  resp->status = 201;
}

static void machine_import(const http_req_t *req, http_resp_t *resp) {
  const char *csv = json_string_value(json_object_get(req->body, "csv"));
  const char *by, *reason;
  if (!csv) {
    http_error(resp, 400, API_ERR_IMPORT_BODY,
               "send {\"csv\": \"code,type,stage,power_kw\\n...\", \"by\": \"...\"}");
    return;
  }
  if (who_why(req->body, "import", &by, &reason, resp) != 0)
    return;
  proto_machine_t *items = NULL;
  size_t n = 0, added = 0, changed = 0;
  char err[2048];
  int rc = proto_machine_csv_parse(csv, strlen(csv), &items, &n, err, sizeof(err));
  if (rc == -EBADMSG) {
    http_error_why(resp, 400, err);
    return;
  }
  for (size_t i = 0; rc == 0 && i < n; i++) {
    gw_device_t *d = items[i].terminal[0] ? gw_device_find(req->gw, items[i].terminal) : NULL;
    if (items[i].terminal[0] && (!d || d->conf->type != SG_DEV_MACHINE)) {
      http_error(resp, 400, API_ERR_IMPORT_TERMINAL,
                 "line %d: terminal %s must be a [device] with type = machine", items[i].line,
                 items[i].terminal);
      free(items);
      return;
    }
  }
  if (rc == 0)
    rc = stor_machine_import(req->gw->db, items, n, by, reason, sg_now(), &added, &changed);
  for (size_t i = 0; rc == 0 && i < n; i++) {
    stor_machine_t m;
    if (stor_machine_get(req->reader, items[i].code, &m) == 0)
      machinery_note_register(req->gw, &m);
  }
  free(items);
  if (rc != 0) {
    http_error(resp, 503, API_ERR_IMPORT_STORE, "the import could not be stored: %s",
               strerror(-rc));
    http_error_sys(resp, -rc);
    return;
  }
  resp->json = json_pack("{s:I,s:I}", "added", (json_int_t)added, "changed", (json_int_t)changed);
}

/* POST /api/machinery/... */
void api_machine_action(const http_req_t *req, http_resp_t *resp) {
  char code[PROTO_MACHINE_CODE_MAX + 1];
  const char *slash = strchr(req->tail, '/');
  size_t n = slash ? (size_t)(slash - req->tail) : strlen(req->tail);
  if (!json_is_object(req->body)) {
    http_error(resp, 400, API_ERR_BY_BODY, "send a JSON object with at least \"by\"");
    return;
  }
  if (!slash && strcmp(req->tail, "import") == 0) {
    machine_import(req, resp);
    return;
  }
  if (n == 0 || n >= sizeof(code)) {
    http_error(resp, 404, API_ERR_NO_ENDPOINT, "no such endpoint: %s", req->path);
    return;
  }
  memcpy(code, req->tail, n);
  code[n] = '\0';
  if (!proto_machine_code_ok(code)) {
    http_error(resp, 404, API_ERR_NOT_CODE, "\"%s\" is not a registration code", code);
    return;
  }
  if (!slash)
    machine_change(req, code, resp);
  else if (strcmp(slash, "/retire") == 0)
    machine_retire(req, code, resp);
  else if (strcmp(slash, "/enter") == 0 || strcmp(slash, "/leave") == 0)
    machine_move(req, code, slash[1] == 'e', resp);
  else
    http_error(resp, 404, API_ERR_NO_ENDPOINT_MACHINE,
               "no such endpoint: %s (retire, enter or leave)", req->path);
}

/* ---- machinery in the site's carbon figure (/api/carbon) */

typedef struct carbon_ctx {
  const http_req_t *req;
  double since, until, fuel_l, t_co2;
  int rc;
} carbon_ctx_t;

static int carbon_row(void *arg, const stor_machine_t *m) {
  carbon_ctx_t *c = arg;
  if (!m->m.terminal[0])
    return 0;
  env_sample_t *fu = NULL;
  size_t n = 0;
  c->rc =
      env_load(c->req->reader, m->m.terminal, PROTO_Q_FUEL, c->since - 86400.0, c->until, &fu, &n);
  mach_day_t d = {.engine_h = NAN, .fuel_l = mach_counter_rise(fu, n, c->since, c->until)};
  free(fu);
  mach_day_emissions(&m->m, c->req->gw->cfg->energy_diesel_factor, &d);
  if (isfinite(d.fuel_l)) {
    c->fuel_l += d.fuel_l;
    c->t_co2 += d.t_co2;
  }
  return c->rc != 0;
}

int api_machinery_carbon(const http_req_t *req, double since, double until, json_t **out) {
  carbon_ctx_t c = {req, since, until, 0, 0, 0};
  int rc = stor_machine_list(req->reader, true, carbon_row, &c);
  if (rc == 0)
    rc = c.rc;
  if (rc == 0)
    *out = json_pack("{s:f,s:f,s:s}", "fuel_l", c.fuel_l, "t_co2", c.t_co2, "formula",
                     "t_co2 = fuel_l * diesel_kg_per_l / 1000 (petrol 2.25 kg/l), machine "
                     "terminals only");
  return rc;
}

/* ---- the monthly report's part (report.c) */

typedef struct month_ctx {
  const http_req_t *req;
  mach_zone_t z;
  double since, until;
  json_t *rows;
  mach_day_t total;
  int days_on_site, machines, rc;
} month_ctx_t;

static json_t *rounded(double v, int digits) {
  double f = pow(10, digits);
  return isfinite(v) ? json_real(round(v * f) / f) : json_null();
}

static int month_row(void *arg, const stor_machine_t *m) {
  month_ctx_t *c = arg;
  if (m->added >= c->until || (m->retired > 0 && m->retired < c->since))
    return 0; /* not in the register during the month */
  mach_day_t sum = {0};
  bool eh = false, fu = false;
  int on_days = 0;
  for (double day = c->since; day < c->until && c->rc == 0; day = next_midnight(day)) {
    mach_day_t d;
    c->rc = day_figures(c->req, &c->z, m->m.code, m, day, &d);
    if (c->rc != 0)
      break;
    on_days += d.onsite_h > 0;
    sum.onsite_h += d.onsite_h;
    if (isfinite(d.engine_h)) {
      sum.engine_h += d.engine_h;
      eh = true;
    }
    if (isfinite(d.fuel_l)) {
      sum.fuel_l += d.fuel_l;
      fu = true;
    }
    sum.t_co2 += d.t_co2;
    sum.nox_kg += d.nox_kg;
    sum.pm_kg += d.pm_kg;
  }
  if (c->rc != 0)
    return 1;
  json_array_append_new(
      c->rows, json_pack("[s,s,s,o,i,o,o,o,o,o,o]", m->m.code, m->m.type,
                         proto_stage_name(m->m.stage), rounded(m->m.power_kw, 1), on_days,
                         rounded(sum.onsite_h, 1), eh ? rounded(sum.engine_h, 1) : json_null(),
                         fu ? rounded(sum.fuel_l, 1) : json_null(), rounded(sum.t_co2, 3),
                         rounded(sum.nox_kg, 2), rounded(sum.pm_kg, 3)));
  c->machines++;
  c->days_on_site += on_days;
  c->total.onsite_h += sum.onsite_h;
  c->total.engine_h += eh ? sum.engine_h : 0;
  c->total.fuel_l += fu ? sum.fuel_l : 0;
  c->total.t_co2 += sum.t_co2;
  c->total.nox_kg += sum.nox_kg;
  c->total.pm_kg += sum.pm_kg;
  return 0;
}

int machinery_report_month(gw_t *gw, stor_reader_t *rd, double since, double until, json_t *rows,
                           json_t **summary) {
  http_req_t req = {.gw = gw, .reader = rd};
  month_ctx_t c = {.req = &req, .since = since, .until = until, .rows = rows};
  mach_zone_from_config(gw->cfg, &c.z);
  int rc = stor_machine_list(rd, true, month_row, &c);
  if (rc == 0)
    rc = c.rc;
  if (rc == 0)
    *summary = json_pack("{s:i,s:i,s:f,s:f,s:f,s:f,s:f,s:f,s:s,s:f}", "machines", c.machines,
                         "machine_days", c.days_on_site, "onsite_h", c.total.onsite_h, "engine_h",
                         c.total.engine_h, "fuel_l", c.total.fuel_l, "t_co2", c.total.t_co2,
                         "nox_kg", c.total.nox_kg, "pm_kg", c.total.pm_kg, "min_stage",
                         proto_stage_name(c.z.min_stage), "load_factor", MACH_LOAD_FACTOR);
  return rc;
}
