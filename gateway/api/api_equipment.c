/* The equipment, energy and carbon endpoints of the local API (rows of the
 * route table in http.c; the figures are equipment.c's, taken on the loop).
 *
 *   GET  /api/equipment                  every unit and group, live
 *   GET  /api/equipment/log              the command audit trail (storage)
 *        ?since=UNIX&unit=ID&limit=N
 *   POST /api/equipment/UNIT/override    {"on":true|false,"for_s":7200,
 *        "reason":"...","by":"..."} or {"clear":true,"by":"...","reason":"..."}
 *                                        (an action: needs the token)
 *   GET  /api/energy?since=UNIX&until=UNIX   per unit per local day, per
 *        group, per day, in total and cumulative
 *   GET  /api/carbon?since=UNIX&until=UNIX   t CO2 per day, per group, for
 *        the period and cumulative, per m2 of floor area
 * since and until are widened to whole local days; the default is the last
 * 7 days, today included. */
#define LOG_MODULE "http"

#include "gateway/api/api.h"
#include "gateway/equipment/equipment.h"
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LOG_LIMIT_DEFAULT 200
#define LOG_LIMIT_MAX 10000
#define DEFAULT_DAYS 7
#define OVERRIDE_MIN_S 60.0

void api_equipment(const http_req_t *req, http_resp_t *resp) {
  json_t *j = equipment_status_json(req->gw);
  if (!j) {
    http_error(resp, 503, API_ERR_STOPPING, "the gateway is stopping");
    return;
  }
  resp->json = j;
}

static int on_log_row(void *arg, const stor_eqcmd_t *c) {
  json_array_append_new(arg, json_pack("{s:I,s:f,s:s,s:s,s:b,s:s,s:s,s:s,s:s,s:i,s:s,s:o}", "id",
                                       (json_int_t)c->id, "t", c->t, "unit", c->unit, "group",
                                       c->grp, "on", c->on, "reason", c->reason, "origin",
                                       c->origin, "by", c->actor, "note", c->note, "attempts",
                                       c->attempts, "result", c->result, "result_t",
                                       c->result_t > 0 ? json_real(c->result_t) : json_null()));
  return 0;
}

void api_equipment_log(const http_req_t *req, http_resp_t *resp) {
  double now = sg_now(), since;
  if (http_query_time(req, "since", now - 86400.0, &since) != 0) {
    http_error(resp, 400, API_ERR_SINCE_ARG, "since is Unix seconds");
    return;
  }
  const char *unit = http_query(req, "unit"), *lname = http_query(req, "limit");
  if (unit && *unit && !gw_device_find(req->gw, unit)) {
    http_error(resp, 404, API_ERR_UNKNOWN_UNIT, "unknown unit \"%s\"", unit);
    return;
  }
  long limit = LOG_LIMIT_DEFAULT;
  if (lname) {
    char *end;
    limit = strtol(lname, &end, 10);
    if (*end || limit < 1 || limit > LOG_LIMIT_MAX) {
      http_error(resp, 400, API_ERR_LIMIT_ARG, "limit must be 1..%d", LOG_LIMIT_MAX);
      return;
    }
  }
  json_t *entries = json_array();
  int rc = stor_equipment_log(req->reader, since, unit && *unit ? unit : NULL, (size_t)limit,
                              on_log_row, entries);
  if (rc != 0) {
    json_decref(entries);
    http_error(resp, 503, API_ERR_DB_QUERY, "database query failed: %s", strerror(-rc));
    return;
  }
  resp->json = json_pack("{s:f,s:o,s:o}", "since", since, "unit",
                         unit && *unit ? json_string(unit) : json_null(), "entries", entries);
}

/* POST /api/equipment/UNIT/override */
void api_equipment_override(const http_req_t *req, http_resp_t *resp) {
  char unit[SG_ID_MAX + 1];
  const char *slash = strchr(req->tail, '/');
  size_t n = slash ? (size_t)(slash - req->tail) : 0;
  if (!slash || n == 0 || n > SG_ID_MAX || strcmp(slash, "/override") != 0) {
    http_error(resp, 404, API_ERR_NO_ENDPOINT_OVERRIDE,
               "no such endpoint: %s (POST /api/equipment/UNIT/override)", req->path);
    return;
  }
  memcpy(unit, req->tail, n);
  unit[n] = '\0';
  json_t *b = req->body;
  json_t *jon = json_object_get(b, "on"), *jfor = json_object_get(b, "for_s");
  const char *reason = json_string_value(json_object_get(b, "reason"));
  const char *by = json_string_value(json_object_get(b, "by"));
  bool clear = json_is_true(json_object_get(b, "clear"));
  if (!json_is_object(b) || (!clear && !json_is_boolean(jon))) {
    http_error(resp, 400, API_ERR_OVERRIDE_BODY,
               "send {\"on\": true|false, \"for_s\": 7200, \"reason\": \"...\", \"by\": \"...\"} "
               "or {\"clear\": true, \"by\": \"...\"}");
    return;
  }
  double for_s = json_is_number(jfor) ? json_number_value(jfor) : NAN;
  if (!clear && !(for_s >= OVERRIDE_MIN_S && for_s <= EQP_OVERRIDE_MAX_S)) {
    http_error(resp, 400, API_ERR_OVERRIDE_FOR,
               "for_s must be %.0f to %.0f seconds (1 minute to a week)", OVERRIDE_MIN_S,
               EQP_OVERRIDE_MAX_S);
    return;
  }
  if (!clear && (!reason || !*reason)) {
    http_error(resp, 400, API_ERR_OVERRIDE_REASON,
               "an override needs a reason a person can read later");
    return;
  }
  if ((reason && strlen(reason) > 255) || (by && strlen(by) > 63)) {
    http_error(resp, 400, API_ERR_OVERRIDE_LONG, "reason is at most 255 bytes and by at most 63");
    return;
  }
  char err[256];
  json_t *out = NULL;
  int rc = equipment_override(req->gw, unit,
                              clear               ? -1
                              : json_is_true(jon) ? 1
                                                  : 0,
                              for_s, by && *by ? by : "api", reason ? reason : "", &out, err,
                              sizeof(err));
  switch (rc) {
  case 0:
    resp->json = out;
    return;
  case -ENOENT: /* equipment.h: no such unit, or no controller */
    http_error(resp, 404, API_ERR_NO_EQUIPMENT_UNIT, "no equipment unit \"%s\"", unit);
    return;
  case -EPERM:
    http_error(resp, 409, API_ERR_NO_CONTROLLER,
               "%s has no controller (no coap key in its [device] section)", unit);
    return;
  case -ECANCELED:
    http_error(resp, 503, API_ERR_STOPPING, "the gateway is stopping");
    return;
  default:
    http_error(resp, 503, API_ERR_DETAIL, "%s", err[0] ? err : strerror(-rc));
    return;
  }
}

/* since and until from the query, widened to whole local days. */
static int period(const http_req_t *req, http_resp_t *resp, double *since, double *until) {
  double now = sg_now(), today = energy_local_midnight(now);
  double def_since = today - (DEFAULT_DAYS - 1) * 86400.0;
  if (http_query_time(req, "since", def_since, since) != 0 ||
      http_query_time(req, "until", energy_next_midnight(now), until) != 0) {
    http_error(resp, 400, API_ERR_SINCE_UNTIL_ARG, "since and until are Unix seconds");
    return -EINVAL;
  }
  *since = energy_local_midnight(*since);
  if (energy_local_midnight(*until) != *until)
    *until = energy_next_midnight(*until);
  if (*until <= *since) {
    http_error(resp, 400, API_ERR_UNTIL_BEFORE, "until must be later than since");
    return -EINVAL;
  }
  return 0;
}

void api_energy(const http_req_t *req, http_resp_t *resp) {
  double since, until;
  if (period(req, resp, &since, &until) != 0)
    return;
  json_t *j = equipment_energy_json(req->gw, since, until);
  if (!j) {
    http_error(resp, 503, API_ERR_STOPPING, "the gateway is stopping");
    return;
  }
  resp->json = j;
}

void api_carbon(const http_req_t *req, http_resp_t *resp) {
  double since, until;
  if (period(req, resp, &since, &until) != 0)
    return;
  json_t *j = equipment_carbon_json(req->gw, since, until);
  if (!j) {
    http_error(resp, 503, API_ERR_STOPPING, "the gateway is stopping");
    return;
  }
  /* Machinery terminals are not equipment units: their fuel is in no
   * figure above, and is added here once (gateway/machinery/machinery.h). */
  json_t *mach = NULL;
  int rc = api_machinery_carbon(req, since, until, &mach);
  if (rc != 0) {
    json_decref(j);
    http_error(resp, 503, API_ERR_DB_QUERY, "database query failed: %s", strerror(-rc));
    return;
  }
  double equip = json_number_value(json_object_get(json_object_get(j, "period"), "t_co2"));
  json_object_set_new(j, "site_t_co2",
                      json_real(equip + json_number_value(json_object_get(mach, "t_co2"))));
  json_object_set_new(j, "machinery", mach);
  resp->json = j;
}
