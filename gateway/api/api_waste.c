/* The waste, material and progress endpoints of the local API
 * (waste.h), on the HTTP threads with the request's read-only connection.
 *
 * Reads compute their figures from the ledger on every call (a site has
 * thousands of tickets, not millions; the sums are one grouped query).
 * Writes (a person's ticket, a correction, the bill of quantities, the
 * progress) are actions that need the token; they wait for their durable
 * commit here, on an HTTP thread, which may block (the others go on
 * answering), and then ask the loop
 * to re-evaluate the waste alarms. */
#define LOG_MODULE "http"

#include "gateway/api/api.h"
#include "gateway/waste/waste.h"
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define TICKETS_LIMIT_DEFAULT 10000
#define TICKETS_LIMIT_MAX 100000
#define MANUAL_RESOLUTION_KG 20.0 /* a slip from a scale not configured here */

static void hex32(const uint8_t h[32], char out[65]) {
  for (int i = 0; i < 32; i++)
    snprintf(out + 2 * i, 3, "%02x", h[i]);
}

static void changed(gw_t *gw) {
  /* -ECANCELED while stopping: the next start evaluates anyway */
  (void)gw_call_on_loop(gw, waste_gw_changed, NULL);
}

/* ---- reports */
void api_waste_summary(const http_req_t *req, http_resp_t *resp) {
  waste_summary_t *s = malloc(sizeof(*s));
  int rc = s ? waste_summary_compute(req->gw->cfg, req->reader, sg_now(), s) : -ENOMEM;
  if (rc != 0)
    http_error(resp, 503, API_ERR_LEDGER_READ, "cannot read the ledger: %s", strerror(-rc));
  else
    resp->json = waste_summary_json(req->gw->cfg, s);
  free(s);
}

void api_materials_summary(const http_req_t *req, http_resp_t *resp) {
  waste_summary_t *s = malloc(sizeof(*s));
  int rc = s ? waste_summary_compute(req->gw->cfg, req->reader, sg_now(), s) : -ENOMEM;
  if (rc != 0)
    http_error(resp, 503, API_ERR_LEDGER_READ, "cannot read the ledger: %s", strerror(-rc));
  else
    resp->json = waste_materials_json(req->gw->cfg, s);
  free(s);
}

/* CSV: a field with a comma, quote or line break is quoted (RFC 4180). */
struct csv {
  char *p;
  size_t len, cap;
  bool failed;
};

static void csv_raw(struct csv *c, const char *s, size_t n) {
  if (c->failed)
    return;
  if (c->len + n + 1 > c->cap) {
    size_t cap = c->cap ? c->cap : 65536;
    while (cap < c->len + n + 1)
      cap *= 2;
    char *p = realloc(c->p, cap);
    if (!p) {
      c->failed = true;
      return;
    }
    c->p = p;
    c->cap = cap;
  }
  memcpy(c->p + c->len, s, n);
  c->len += n;
  c->p[c->len] = '\0';
}

static void csv_field(struct csv *c, const char *s, bool last) {
  bool guard = api_csv_needs_guard(s);
  if (guard || strpbrk(s, ",\"\r\n")) {
    csv_raw(c, guard ? "\"'" : "\"", guard ? 2 : 1);
    for (const char *q; (q = strchr(s, '"')); s = q + 1) {
      csv_raw(c, s, (size_t)(q - s) + 1);
      csv_raw(c, "\"", 1);
    }
    csv_raw(c, s, strlen(s));
    csv_raw(c, "\"", 1);
  } else {
    csv_raw(c, s, strlen(s));
  }
  csv_raw(c, last ? "\r\n" : ",", last ? 2 : 1);
}

static const char *const csv_head[] = {
    "id",         "time",     "source",  "type",   "scale",     "no",      "plate",
    "dir",        "category", "kind",    "dest",   "dest_name", "carrier", "material",
    "green_cert", "gross_kg", "tare_kg", "net_kg", "net_t",     "counted", "discharged",
    "corrects",   "reversal", "note",    "hash"};
#define CSV_COLS (sizeof(csv_head) / sizeof(csv_head[0]))

struct list_ctx {
  json_t *arr;
  struct csv *csv;
  size_t n;
};

static int on_ticket(void *arg, const stor_ticket_t *t) {
  struct list_ctx *c = arg;
  c->n++;
  json_t *j = waste_ticket_json(t);
  if (!c->csv) {
    json_array_append_new(c->arr, j);
    return 0;
  }
  /* The CSV is the JSON's fields in the order of csv_head, with the time
   * in the site's zone (the daemon runs in it) so a person reads it. */
  char cells[CSV_COLS][64], hash[65];
  const char *val[CSV_COLS];
  time_t tt = (time_t)t->t;
  struct tm tm;
  localtime_r(&tt, &tm);
  for (size_t i = 0; i < CSV_COLS; i++) {
    json_t *v = json_object_get(j, csv_head[i]);
    val[i] = cells[i];
    cells[i][0] = '\0';
    if (json_is_string(v))
      val[i] = json_string_value(v);
    else if (json_is_integer(v))
      snprintf(cells[i], sizeof(cells[i]), "%lld", (long long)json_integer_value(v));
    else if (json_is_boolean(v))
      snprintf(cells[i], sizeof(cells[i]), "%d", json_is_true(v));
  }
  strftime(cells[1], sizeof(cells[1]), "%Y-%m-%d %H:%M:%S", &tm);
  snprintf(cells[18], sizeof(cells[18]), "%.3f", (double)t->net_kg / 1000.0);
  hex32(t->hash, hash);
  val[CSV_COLS - 1] = hash;
  for (size_t i = 0; i < CSV_COLS; i++)
    csv_field(c->csv, val[i], i + 1 == CSV_COLS);
  json_decref(j);
  return 0;
}

void api_waste_tickets(const http_req_t *req, http_resp_t *resp) {
  double since, until;
  const char *lname = http_query(req, "limit"), *format = http_query(req, "format");
  if (http_query_time(req, "since", 0, &since) ||
      http_query_time(req, "until", 4102444800.0, &until)) {
    http_error(resp, 400, API_ERR_SINCE_UNTIL_ARG, "since and until are Unix seconds");
    return;
  }
  long limit = TICKETS_LIMIT_DEFAULT;
  if (lname) {
    char *end;
    limit = strtol(lname, &end, 10);
    if (*end || limit < 1 || limit > TICKETS_LIMIT_MAX) {
      http_error(resp, 400, API_ERR_LIMIT_ARG, "limit must be 1..%d", TICKETS_LIMIT_MAX);
      return;
    }
  }
  bool csv = format && strcmp(format, "csv") == 0;
  if (format && !csv && strcmp(format, "json") != 0) {
    http_error(resp, 400, API_ERR_FORMAT_JSON_CSV, "format is json or csv");
    return;
  }
  struct csv out = {0};
  struct list_ctx c = {.arr = json_array(), .csv = csv ? &out : NULL};
  if (csv)
    for (size_t i = 0; i < CSV_COLS; i++)
      csv_field(&out, csv_head[i], i + 1 == CSV_COLS);
  int rc = stor_ticket_list(req->reader, (int64_t)ceil(since), (int64_t)ceil(until), (size_t)limit,
                            on_ticket, &c);
  if (rc != 0 || out.failed) {
    json_decref(c.arr);
    free(out.p);
    http_error(resp, 503, API_ERR_LEDGER_READ, "cannot read the ledger: %s",
               strerror(rc ? -rc : ENOMEM));
    return;
  }
  if (csv) {
    json_decref(c.arr);
    resp->text = out.p;
    resp->text_len = out.len;
    resp->content_type = "text/csv; charset=utf-8";
    return;
  }
  resp->json = json_pack("{s:f,s:f,s:b,s:o}", "since", since, "until", until, "truncated",
                         c.n == (size_t)limit, "tickets", c.arr);
}

/* ---- a person's ticket */

/* Decodes a JSON object as a person's ticket; 0 or -EBADMSG with `err`. */
static int decode_manual(const json_t *obj, double oldest, proto_ticket_t *pt, char *err,
                         size_t errlen) {
  char *text = json_dumps(obj, JSON_COMPACT);
  if (!text) {
    snprintf(err, errlen, "out of memory");
    return -ENOMEM;
  }
  double now = sg_now();
  proto_ticket_limits_t lim = {now, oldest, true};
  int rc = proto_ticket_decode_json((const uint8_t *)text, strlen(text), &lim, pt, err, errlen);
  free(text);
  return rc;
}

static double resolution_of(gw_t *gw, const char *scale) {
  gw_device_t *d = scale[0] ? gw_device_find(gw, scale) : NULL;
  return d && d->conf->type == SG_DEV_SCALE ? d->conf->resolution_kg : MANUAL_RESOLUTION_KG;
}

void api_waste_add(const http_req_t *req, http_resp_t *resp) {
  char err[256];
  proto_ticket_t pt;
  if (!json_is_object(req->body)) {
    http_error(resp, 400, API_ERR_TICKET_BODY,
               "send the ticket as a JSON object (the fields of POST /w)");
    return;
  }
  double now = sg_now();
  if (decode_manual(req->body, now - PROTO_TICKET_OLDEST_DAYS * 86400.0, &pt, err, sizeof(err)) !=
          0 ||
      proto_ticket_check_net(&pt, resolution_of(req->gw, pt.scale), err, sizeof(err)) != 0) {
    http_error(resp, 400, API_ERR_DETAIL, "%s", err);
    return;
  }
  stor_ticket_t st;
  stor_ticket_result_t res;
  stor_ticket_from_proto(&pt, "manual", &st);
  int rc = stor_ticket_commit(req->gw->db, &st, &res);
  if (rc == 0)
    rc = res.status;
  char hash[65];
  hex32(res.hash, hash);
  switch (rc) {
  case STOR_TICKET_CREATED:
  case STOR_TICKET_SAME:
    resp->status = rc == STOR_TICKET_CREATED ? 201 : 200;
    resp->json = json_pack("{s:I,s:s,s:s}", "id", (json_int_t)res.id, "hash", hash, "status",
                           rc == STOR_TICKET_CREATED ? "created" : "already_stored");
    if (rc == STOR_TICKET_CREATED)
      changed(req->gw);
    return;
  case -EEXIST:
    http_error(resp, 409, API_ERR_TICKET_CONFLICT,
               "ticket %lld of %s is stored as entry %lld with other content; correct that entry "
               "instead (sitectl waste correct %lld)",
               (long long)pt.no, pt.scale, (long long)res.id, (long long)res.id);
    return;
  default:
    http_error(resp, 503, API_ERR_TICKET_STORE, "the ticket could not be stored: %s",
               strerror(-rc));
    return;
  }
}

/* ---- corrections */

/* The fields of a stored entry as a person's ticket, for the replacement
 * to start from. */
static json_t *entry_as_ticket(const stor_ticket_t *t) {
  json_t *o = json_pack("{s:I,s:s,s:I}", "t", (json_int_t)t->t, "dir", t->dir, "net_kg",
                        (json_int_t)t->net_kg);
  if (t->plate[0])
    json_object_set_new(o, "plate", json_string(t->plate));
  if (t->weighed) {
    json_object_set_new(o, "gross_kg", json_integer((json_int_t)t->gross_kg));
    json_object_set_new(o, "tare_kg", json_integer((json_int_t)t->tare_kg));
  }
  const char *const text[][2] = {{"category", t->category}, {"kind", t->kind},
                                 {"dest", t->dest},         {"dest_name", t->dest_name},
                                 {"carrier", t->carrier},   {"material", t->material}};
  for (size_t i = 0; i < sizeof(text) / sizeof(text[0]); i++)
    if (text[i][1][0])
      json_object_set_new(o, text[i][0], json_string(text[i][1]));
  if (strcmp(t->type, "delivery") == 0)
    json_object_set_new(o, "green_cert", json_boolean(t->green_cert));
  return o;
}

void api_waste_correct(const http_req_t *req, http_resp_t *resp) {
  json_t *jid = json_object_get(req->body, "corrects");
  json_t *replace = json_object_get(req->body, "replace");
  const char *note = json_string_value(json_object_get(req->body, "note"));
  char err[256];
  if (!json_is_integer(jid) || json_integer_value(jid) < 1) {
    http_error(resp, 400, API_ERR_CORRECT_BODY,
               "say which entry: {\"corrects\": ID, \"note\": \"why\", \"replace\": "
               "{fields to change}}");
    return;
  }
  int64_t id = json_integer_value(jid);
  if (!note || !*note || strlen(note) >= STOR_TICKET_TEXT) {
    http_error(resp, 400, API_ERR_CORRECT_NOTE,
               "a correction needs a note saying why (at most 64 characters)");
    return;
  }
  if (replace && !json_is_object(replace)) {
    http_error(resp, 400, API_ERR_CORRECT_REPLACE, "replace is an object of the fields to change");
    return;
  }
  stor_ticket_t orig, st;
  int rc = stor_ticket_get(req->reader, id, &orig);
  if (rc == -ENOENT) {
    http_error(resp, 404, API_ERR_NO_ENTRY, "no ledger entry %lld", (long long)id);
    return;
  }
  if (rc != 0) {
    http_error(resp, 503, API_ERR_LEDGER_READ, "cannot read the ledger: %s", strerror(-rc));
    return;
  }
  if (orig.reversal) {
    http_error(resp, 400, API_ERR_ENTRY_REVERSAL_OF,
               "entry %lld reverses entry %lld; correct entry %lld itself", (long long)id,
               (long long)orig.corrects, (long long)orig.corrects);
    return;
  }
  if (replace) {
    proto_ticket_t pt;
    json_t *fields = entry_as_ticket(&orig);
    /* a changed direction or type drops what no longer fits */
    if (json_object_get(replace, "material")) {
      json_object_del(fields, "category");
      json_object_del(fields, "kind");
      json_object_del(fields, "dest");
    }
    if (json_object_get(replace, "category")) {
      json_object_del(fields, "material");
      json_object_del(fields, "green_cert");
    }
    json_object_update(fields, replace);
    rc = decode_manual(fields, 0, &pt, err, sizeof(err));
    json_decref(fields);
    if (rc == 0)
      rc = proto_ticket_check_net(&pt, resolution_of(req->gw, orig.scale), err, sizeof(err));
    if (rc != 0) {
      http_error(resp, 400, API_ERR_REPLACEMENT, "the replacement: %s", err);
      return;
    }
    stor_ticket_from_proto(&pt, "correction", &st);
    snprintf(st.scale, sizeof(st.scale), "%s", orig.scale);
  }
  stor_ticket_result_t res;
  rc = stor_ticket_correct(req->gw->db, id, replace ? &st : NULL, note, &res);
  if (rc == 0)
    rc = res.status;
  char hash[65];
  hex32(res.hash, hash);
  switch (rc) {
  case STOR_TICKET_CREATED:
    resp->status = 201;
    resp->json = json_pack("{s:I,s:I,s:o,s:s}", "corrects", (json_int_t)id, "reversal",
                           (json_int_t)res.id, "replacement",
                           res.id2 ? json_integer((json_int_t)res.id2) : json_null(), "hash", hash);
    changed(req->gw);
    return;
  case -EALREADY:
    http_error(resp, 409, API_ERR_CORRECTED_ALREADY,
               "entry %lld was corrected already (reversal %lld); correct its "
               "replacement instead",
               (long long)id, (long long)res.id);
    return;
  case -ENOENT:
    http_error(resp, 404, API_ERR_NO_ENTRY, "no ledger entry %lld", (long long)id);
    return;
  case -EINVAL:
    http_error(resp, 400, API_ERR_ENTRY_IS_REVERSAL,
               "entry %lld is a reversal and cannot be corrected", (long long)id);
    return;
  default:
    http_error(resp, 503, API_ERR_CORRECT_STORE, "the correction could not be stored: %s",
               strerror(-rc));
    return;
  }
}

void api_waste_verify(const http_req_t *req, http_resp_t *resp) {
  stor_verify_t v;
  int rc = stor_ledger_verify(req->reader, &v);
  if (rc != 0 && rc != -EBADMSG) {
    http_error(resp, 503, API_ERR_LEDGER_READ, "cannot read the ledger: %s", strerror(-rc));
    return;
  }
  char head[65];
  hex32(v.head, head);
  resp->json = json_pack(
      "{s:b,s:I,s:s,s:o,s:s}", "ok", rc == 0, "entries", (json_int_t)v.entries, "head", head,
      "bad_id", v.bad_id ? json_integer((json_int_t)v.bad_id) : json_null(), "reason", v.reason);
}

/* ---- the monthly disclosure */
struct disc_ctx {
  waste_totals_t w;
};

static int disc_sum(void *arg, const char *type, const char *category, const char *kind,
                    const char *dest, const char *material, bool green, int64_t net_kg,
                    int64_t entries) {
  struct disc_ctx *c = arg;
  (void)material;
  (void)green;
  (void)entries;
  if (strcmp(type, "waste") == 0)
    waste_totals_add(&c->w, proto_waste_category_from_name(category),
                     *kind ? proto_waste_kind_from_name(kind) : -1,
                     proto_waste_dest_from_name(dest), (double)net_kg / 1000.0);
  return 0;
}

static int disc_name(void *arg, const char *name, int64_t net_kg, int64_t entries) {
  if (net_kg != 0 || entries != 0)
    json_array_append_new(arg,
                          json_pack("{s:s,s:f,s:I}", "name", name, "t",
                                    round((double)net_kg) / 1000.0, "trips", (json_int_t)entries));
  return 0;
}

static json_t *t3(double v) {
  return isfinite(v) ? json_real(round(v * 1000.0) / 1000.0) : json_null();
}

void api_waste_disclosure(const http_req_t *req, http_resp_t *resp) {
  const char *month = http_query(req, "month");
  int y, m;
  char tail;
  time_t now = time(NULL);
  struct tm tm;
  localtime_r(&now, &tm);
  if (month && *month) {
    if (sscanf(month, "%4d-%2d%c", &y, &m, &tail) != 2 || y < 2000 || y > 2100 || m < 1 || m > 12) {
      http_error(resp, 400, API_ERR_MONTH_ARG, "month is YYYY-MM, like 2026-11");
      return;
    }
  } else {
    y = tm.tm_year + 1900;
    m = tm.tm_mon + 1;
  }
  /* the month in the site's zone (the daemon runs in it) */
  struct tm a = {.tm_year = y - 1900, .tm_mon = m - 1, .tm_mday = 1, .tm_isdst = -1};
  struct tm b = {.tm_year = y - 1900, .tm_mon = m, .tm_mday = 1, .tm_isdst = -1};
  int64_t since = (int64_t)mktime(&a), until = (int64_t)mktime(&b);
  struct disc_ctx c;
  waste_totals_init(&c.w);
  json_t *carriers = json_array(), *facilities = json_array();
  waste_summary_t *s = malloc(sizeof(*s));
  int rc = s ? 0 : -ENOMEM;
  if (rc == 0)
    rc = stor_ledger_sums(req->reader, since, until, disc_sum, &c);
  if (rc == 0)
    rc = stor_ledger_names(req->reader, "carrier", since, until, disc_name, carriers);
  if (rc == 0)
    rc = stor_ledger_names(req->reader, "dest_name", since, until, disc_name, facilities);
  if (rc == 0)
    rc = waste_summary_compute(req->gw->cfg, req->reader, sg_now(), s);
  if (rc != 0) {
    free(s);
    json_decref(carriers);
    json_decref(facilities);
    http_error(resp, 503, API_ERR_LEDGER_READ, "cannot read the ledger: %s", strerror(-rc));
    return;
  }
  json_t *by_cat = json_object();
  for (int k = 0; k < PROTO_CAT_COUNT; k++) {
    json_t *o = json_object();
    double total = 0;
    for (int d = 0; d < PROTO_DEST_COUNT; d++) {
      char key[32];
      snprintf(key, sizeof(key), "%s_t", proto_waste_dest_name(d));
      json_object_set_new(o, key, t3(c.w.by_cat_dest[k][d]));
      total += c.w.by_cat_dest[k][d];
    }
    json_object_set_new(o, "total_t", t3(total));
    json_object_set_new(by_cat, proto_waste_category_name(k), o);
  }
  char mname[8];
  snprintf(mname, sizeof(mname), "%04d-%02d", y, m);
  const sg_config_t *cfg = req->gw->cfg;
  resp->json = json_pack(
      "{s:{s:s,s:s},s:s,s:I,s:I,s:o,s:o,s:o,s:o,s:o,s:o,s:o,s:o,s:o,s:o,s:o,s:o,"
      "s:{s:o,s:o,s:o,s:o,s:o,s:o,s:o}}",
      "site", "id", cfg->site_id, "name", cfg->site_name, "month", mname, "since",
      (json_int_t)since, "until", (json_int_t)until, "by_category", by_cat, "generated_t",
      t3(c.w.generated_t), "discharged_t", t3(c.w.discharged_t), "excluded_t", t3(c.w.excluded_t),
      "reused_t", t3(c.w.reused_t), "recycled_t", t3(c.w.recycled_t), "backfill_t",
      t3(c.w.backfill_t), "disposed_t", t3(c.w.disposed_t), "hazardous_t", t3(c.w.hazardous_t),
      "utilisation_rate", t3(waste_utilisation(&c.w)), "carriers", carriers, "facilities",
      facilities, "to_date", "discharged_t", t3(s->w.discharged_t), "allowance_t",
      t3(s->allowance_t), "allowance_used", t3(s->allowance_used), "intensity_t_per_10k_m2",
      t3(s->intensity), "limit_t_per_10k_m2", t3(s->limit_per_10k), "utilisation_rate",
      t3(s->utilisation), "area_m2", t3(cfg->area_cast_m2 + cfg->area_prefab_m2));
  free(s);
}

/* ---- the bill of quantities */
void api_materials_boq(const http_req_t *req, http_resp_t *resp) {
  json_t *items = json_object_get(req->body, "items");
  if (!json_is_array(items)) {
    http_error(resp, 400, API_ERR_BOQ_BODY,
               "send {\"items\": [{\"material\": \"rebar\", \"net_t\": 1850, "
               "\"description\": \"...\"}, ...]}");
    return;
  }
  size_t n = json_array_size(items);
  if (n > PROTO_BOQ_ITEMS_MAX) {
    http_error(resp, 400, API_ERR_BOQ_MANY, "at most %d materials", PROTO_BOQ_ITEMS_MAX);
    return;
  }
  stor_boq_item_t *it = calloc(n ? n : 1, sizeof(*it));
  if (!it) {
    http_error(resp, 503, API_ERR_NO_MEMORY, "out of memory");
    return;
  }
  for (size_t i = 0; i < n; i++) {
    json_t *o = json_array_get(items, i);
    const char *mat = json_string_value(json_object_get(o, "material"));
    const char *desc = json_string_value(json_object_get(o, "description"));
    json_t *q = json_object_get(o, "net_t");
    bool ok = mat && *mat && strlen(mat) < sizeof(it[i].material) && json_is_number(q) &&
              json_number_value(q) > 0 && isfinite(json_number_value(q)) &&
              (!desc || strlen(desc) < sizeof(it[i].description));
    for (const char *p = mat; ok && *p; p++)
      ok = (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '_';
    for (size_t k = 0; ok && k < i; k++)
      ok = strcmp(it[k].material, mat) != 0;
    if (!ok) {
      free(it);
      http_error(resp, 400, API_ERR_BOQ_ITEM,
                 "item %zu: material is 1 to 31 of a-z 0-9 _ and listed once, net_t a number "
                 "above 0, description at most 127 bytes",
                 i);
      return;
    }
    snprintf(it[i].material, sizeof(it[i].material), "%s", mat);
    it[i].net_t = json_number_value(q);
    snprintf(it[i].description, sizeof(it[i].description), "%s", desc ? desc : "");
  }
  int rc = stor_boq_replace(req->gw->db, it, n, sg_now());
  free(it);
  if (rc != 0) {
    http_error(resp, 503, API_ERR_BOQ_STORE, "the bill of quantities could not be stored: %s",
               strerror(-rc));
    return;
  }
  resp->json = json_pack("{s:I}", "items", (json_int_t)n);
}

/* ---- construction progress */
static int on_progress(void *arg, double t, double v) {
  json_array_append_new(arg, json_pack("{s:f,s:f}", "t", t, "progress", v));
  return 0;
}

void api_site_progress_get(const http_req_t *req, http_resp_t *resp) {
  json_t *hist = json_array();
  int rc = stor_progress_list(req->reader, on_progress, hist);
  if (rc != 0) {
    json_decref(hist);
    http_error(resp, 503, API_ERR_PROGRESS_READ, "cannot read the progress: %s", strerror(-rc));
    return;
  }
  size_t n = json_array_size(hist);
  json_t *last = n ? json_array_get(hist, n - 1) : NULL;
  resp->json = json_pack(
      "{s:o,s:o,s:o}", "progress",
      last ? json_copy(json_object_get(last, "progress")) : json_real(req->gw->cfg->progress),
      "set", last ? json_copy(json_object_get(last, "t")) : json_null(), "history", hist);
}

void api_site_progress_put(const http_req_t *req, http_resp_t *resp) {
  json_t *p = json_object_get(req->body, "progress");
  double v = json_number_value(p);
  if (!json_is_number(p) || !(v >= 0 && v <= 1)) {
    http_error(resp, 400, API_ERR_PROGRESS_BODY,
               "send {\"progress\": 0.42}: the share of construction done, 0 to 1");
    return;
  }
  double now = sg_now();
  int rc = stor_progress_set(req->gw->db, now, v);
  if (rc != 0) {
    http_error(resp, 503, API_ERR_PROGRESS_STORE, "the progress could not be stored: %s",
               strerror(-rc));
    return;
  }
  changed(req->gw);
  resp->json = json_pack("{s:f,s:f}", "progress", v, "set", now);
}
