/* GET /api/screen: what the site-office screen (大屏, the dashboard's
 * #/screen) shows, in one answer that needs no token from any address.
 *
 * The TV in the site office is on the LAN, where every other read needs the
 * token (protocol/HTTP.md, "Rules for every route"); a TV has no one to type
 * it. So this route gives only what is already on the site's public board:
 * the noise and dust figures against their limits, the waste discharged
 * against the allowance, the equipment groups' power against their caps and
 * the active alarms by rule, figure and level -- no names, notes, device
 * details, tickets or actions. It is made from the same handlers the
 * dashboard reads, called with their defaults (the last 24 hours). */
#define LOG_MODULE "http"

#include "gateway/api/api.h"
#include <stdio.h>
#include <string.h>

/* One handler's JSON answer, or NULL when it failed. */
static json_t *take(const http_req_t *req, void (*handler)(const http_req_t *, http_resp_t *)) {
  http_resp_t r = {0};
  handler(req, &r);
  free(r.text);
  if (r.status >= 400 || !r.json) {
    json_decref(r.json);
    return NULL;
  }
  return r.json;
}

/* Copies the listed keys of `from` into a new object. */
static json_t *pick(const json_t *from, const char *const *keys) {
  json_t *o = json_object();
  for (; *keys; keys++) {
    json_t *v = json_object_get(from, *keys);
    if (v)
      json_object_set(o, *keys, v);
  }
  return o;
}

static json_t *pick_each(const json_t *arr, const char *const *keys) {
  json_t *out = json_array();
  size_t i;
  json_t *x;
  json_array_foreach(arr, i, x) json_array_append_new(out, pick(x, keys));
  return out;
}

void api_screen(const http_req_t *req, http_resp_t *resp) {
  static const char *const noise_keys[] = {"device",   "start",    "end",  "period",
                                           "laeq",     "limit",    "lmax", "lmax_limit",
                                           "complete", "exceeded", NULL};
  static const char *const dust_keys[] = {"device", "quantity", "start", "end", "mean",
                                          "warn",   "alarm",    "level", NULL};
  static const char *const waste_keys[] = {
      "allowance_t",      "discharged_t",     "allowance_used",     "projected_t", "alarm_share",
      "alarm_warn_share", "utilisation_rate", "utilisation_target", NULL};
  static const char *const alarm_keys[] = {"id",    "rule", "source", "level",  "figure",
                                           "limit", "unit", "peak",   "raised", NULL};
  static const char *const unit_keys[] = {"id", "group", "state", "power_kw", NULL};
  json_t *noise = take(req, api_noise), *dust = take(req, api_dust),
         *waste = take(req, api_waste_summary), *eq = take(req, api_equipment),
         *alarms = take(req, api_alarms);
  if (!noise || !dust || !waste || !eq || !alarms) {
    json_decref(noise);
    json_decref(dust);
    json_decref(waste);
    json_decref(eq);
    json_decref(alarms);
    http_error(resp, 503, API_ERR_SCREEN, "the screen's figures could not be made");
    return;
  }
  json_t *groups = json_array();
  size_t i;
  json_t *g;
  json_array_foreach(json_object_get(eq, "groups"), i, g) {
    json_t *cap = json_object_get(json_object_get(g, "policies"), "peak_kw");
    json_array_append_new(groups,
                          json_pack("{s:O,s:O,s:O*}", "name", json_object_get(g, "name"),
                                    "power_kw", json_object_get(g, "power_kw"), "cap_kw", cap));
  }
  const sg_config_t *cfg = req->gw->cfg;
  double now = sg_now();
  resp->json = json_pack(
      "{s:{s:s,s:s,s:s},s:f,s:I,s:I,s:{s:o,s:o},s:{s:o},s:o,s:{s:o,s:o},s:o}", "site", "id",
      cfg->site_id, "name", cfg->site_name, "timezone", cfg->timezone, "now", now, "devices_online",
      (json_int_t)gw_devices_online(req->gw, now), "devices_total", (json_int_t)cfg->n_devices,
      "noise", "sliding", pick_each(json_object_get(noise, "sliding"), noise_keys), "windows",
      pick_each(json_object_get(noise, "windows"), noise_keys), "dust", "windows",
      pick_each(json_object_get(dust, "windows"), dust_keys), "waste", pick(waste, waste_keys),
      "equipment", "groups", groups, "units", pick_each(json_object_get(eq, "units"), unit_keys),
      "alarms", pick_each(json_object_get(alarms, "alarms"), alarm_keys));
  json_decref(noise);
  json_decref(dust);
  json_decref(waste);
  json_decref(eq);
  json_decref(alarms);
}
