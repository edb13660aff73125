/* The API of alarms, noise and dust (DESIGN.md "Manager interface"), on
 * the HTTP threads.
 *
 * Active alarms come from the model on the loop (a copy through
 * gw_call_on_loop), history from storage on the request's read-only
 * connection. Noise and dust windows are computed here from stored samples
 * with the same pure functions the rule engine uses, so a window reads the
 * same whether its data came live or was backfilled. */
#define LOG_MODULE "http"
#include "gateway/api/api.h"
#include "gateway/rules/rules.h"
#include "protocol/protocol.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define ALARM_HISTORY_DAYS 7 /* default reach of ?active=0 */
#define ALARM_LIST_MAX 1000  /* alarms in one answer */

/* ---- alarms */

static int add_alarm(void *arg, const stor_alarm_t *a) {
  json_array_append_new(arg, alarm_to_json(a));
  return 0;
}

/* GET /api/alarms?active=1|0&since=T: the active alarms (the default,
 * live from the model), or every alarm updated since T from storage. */
void api_alarms(const http_req_t *req, http_resp_t *resp) {
  const char *act = http_query(req, "active");
  bool active = !act || strcmp(act, "0") != 0;
  if (act && strcmp(act, "0") != 0 && strcmp(act, "1") != 0) {
    http_error(resp, 400, API_ERR_ACTIVE_ARG, "active is 1 (active alarms) or 0 (history)");
    return;
  }
  double now = sg_now(), since;
  if (http_query_time(req, "since", active ? 0 : now - ALARM_HISTORY_DAYS * 86400.0, &since)) {
    http_error(resp, 400, API_ERR_SINCE_ARG, "since is Unix seconds");
    return;
  }
  json_t *list;
  if (active && since == 0) {
    if (!(list = alarm_active_json(req->gw))) {
      http_error(resp, 503, API_ERR_STOPPING, "the gateway is stopping");
      return;
    }
  } else {
    list = json_array();
    int rc = stor_alarm_history(req->reader, since, active, ALARM_LIST_MAX, add_alarm, list);
    if (rc != 0) {
      json_decref(list);
      http_error(resp, 503, API_ERR_DB_QUERY, "database query failed: %s", strerror(-rc));
      return;
    }
  }
  resp->json = json_pack("{s:b,s:f,s:o}", "active", active, "now", now, "alarms", list);
}

/* The alarm id at the start of `tail`, and what follows it. */
static int parse_id(const char *tail, int64_t *id, const char **rest) {
  char *end;
  long long v = strtoll(tail, &end, 10);
  if (end == tail || v <= 0)
    return -EINVAL;
  *id = v;
  *rest = end;
  return 0;
}

static int add_event(void *arg, int kind, double t, int level, double figure, double limit,
                     const char *by, const char *note) {
  json_array_append_new(arg,
                        json_pack("{s:s,s:f,s:s,s:o,s:o,s:s,s:s}", "event", alarm_event_name(kind),
                                  "t", t, "level", alarm_level_name(level), "figure",
                                  isfinite(figure) ? json_real(figure) : json_null(), "limit",
                                  isfinite(limit) ? json_real(limit) : json_null(), "by",
                                  by ? by : "", "note", note ? note : ""));
  return 0;
}

/* GET /api/alarms/ID: one alarm with its history of events. */
void api_alarm_detail(const http_req_t *req, http_resp_t *resp) {
  int64_t id;
  const char *rest;
  if (parse_id(req->tail, &id, &rest) != 0 || *rest) {
    http_error(resp, 404, API_ERR_NO_ENDPOINT_ALARM,
               "no such endpoint: %s (an alarm is /api/alarms/ID)", req->path);
    return;
  }
  stor_alarm_t a;
  int rc = stor_alarm_get(req->reader, id, &a);
  if (rc == -ENOENT) {
    http_error(resp, 404, API_ERR_NO_ALARM, "no alarm %lld", (long long)id);
    return;
  }
  json_t *events = json_array();
  if (rc == 0)
    rc = stor_alarm_events(req->reader, id, add_event, events);
  if (rc != 0) {
    json_decref(events);
    http_error(resp, 503, API_ERR_DB_QUERY, "database query failed: %s", strerror(-rc));
    return;
  }
  json_t *alarm = alarm_to_json(&a);
  json_object_set_new(alarm, "events", events);
  resp->json = alarm;
}

/* POST /api/alarms/ID/ack {"by": "...", "note": "..."}: answered once the
 * acknowledgement is stored. */
void api_alarm_ack(const http_req_t *req, http_resp_t *resp) {
  int64_t id;
  const char *rest;
  if (parse_id(req->tail, &id, &rest) != 0 || strcmp(rest, "/ack") != 0) {
    http_error(resp, 404, API_ERR_NO_ENDPOINT_ACK,
               "no such endpoint: %s (acknowledge with POST /api/alarms/ID/ack)", req->path);
    return;
  }
  const char *by = json_string_value(json_object_get(req->body, "by"));
  json_t *jnote = json_object_get(req->body, "note");
  const char *note = json_string_value(jnote);
  if (!by || !*by) {
    http_error(resp, 400, API_ERR_ACK_WHO,
               "say who acknowledges: {\"by\": \"name\", \"note\": \"...\"}");
    return;
  }
  if (strlen(by) >= sizeof(((stor_alarm_t *)0)->acked_by) ||
      (note && strlen(note) >= sizeof(((stor_alarm_t *)0)->note))) {
    http_error(resp, 400, API_ERR_ACK_LONG, "by is at most 63 bytes and note at most 255");
    return;
  }
  if (jnote && !note) {
    http_error(resp, 400, API_ERR_NOTE_TEXT, "note is a string");
    return;
  }
  int rc = alarm_ack(req->gw, id, by, note ? note : "");
  switch (rc) {
  case 0:
    resp->json = json_pack("{s:I,s:b,s:s,s:s}", "id", (json_int_t)id, "acked", 1, "by", by, "note",
                           note ? note : "");
    return;
  case -ENOENT:
    http_error(resp, 404, API_ERR_NO_ACTIVE_ALARM,
               "no active alarm %lld (cleared alarms need no acknowledgement)", (long long)id);
    return;
  case -EALREADY:
    http_error(resp, 409, API_ERR_ACKED_ALREADY,
               "alarm %lld is acknowledged already; the first name and note stand "
               "(see GET /api/alarms/ or sitectl alarms)",
               (long long)id);
    return;
  case -ECANCELED:
    http_error(resp, 503, API_ERR_STOPPING, "the gateway is stopping");
    return;
  default:
    http_error(resp, 503, API_ERR_ACK_STORE, "the acknowledgement could not be stored: %s",
               strerror(-rc));
    return;
  }
}

/* ---- noise and dust windows */

#define ENV_QUERY_MAX_S (2 * 86400.0) /* longest period one query may cover */

static json_t *num_or_null(double v) { return isfinite(v) ? json_real(v) : json_null(); }

/* since/until/device of a window query; `def_since` when since is absent. */
static int window_args(const http_req_t *req, http_resp_t *resp, double def_span, double *since,
                       double *until, const char **device) {
  double now = sg_now();
  if (http_query_time(req, "since", now - def_span, since) ||
      http_query_time(req, "until", now, until)) {
    http_error(resp, 400, API_ERR_SINCE_UNTIL_ARG, "since and until are Unix seconds");
    return -1;
  }
  if (*until > now)
    *until = now; /* windows still running are left out */
  if (*until <= *since) {
    http_error(resp, 400, API_ERR_UNTIL_BEFORE, "until must be later than since");
    return -1;
  }
  if (*until - *since > ENV_QUERY_MAX_S) {
    http_error(resp, 400, API_ERR_SPAN_LONG, "at most %.0f hours per query; narrow since/until",
               ENV_QUERY_MAX_S / 3600);
    return -1;
  }
  *device = http_query(req, "device");
  if (*device && **device && !gw_device_find(req->gw, *device)) {
    http_error(resp, 404, API_ERR_UNKNOWN_DEVICE, "unknown device \"%s\"", *device);
    return -1;
  }
  if (*device && !**device)
    *device = NULL;
  return 0;
}

static json_t *noise_json(const char *device, const noise_window_t *w) {
  return json_pack(
      "{s:s,s:f,s:f,s:s,s:o,s:o,s:f,s:o,s:b,s:f,s:I,s:o,s:b,s:b}", "device", device, "start",
      w->start, "end", w->end, "period", w->period == NOISE_NIGHT ? "night" : "day", "laeq",
      num_or_null(w->laeq), "lmax", num_or_null(w->lmax), "limit", w->limit, "lmax_limit",
      num_or_null(w->lmax_limit), "complete", w->complete, "coverage", w->coverage, "samples",
      (json_int_t)w->n, "exceeded", w->verdict < 0 ? json_null() : json_boolean(w->verdict > 0),
      "laeq_exceeded", w->laeq_over, "lmax_exceeded", w->lmax_over);
}

/* GET /api/noise?since=T&until=T&device=D: the clock-aligned windows of
 * every noise meter that end in [since, until] and hold a sample, and each
 * meter's sliding window ending now. `exceeded` is null for an incomplete
 * window that proves nothing: it is never reported compliant. */
void api_noise(const http_req_t *req, http_resp_t *resp) {
  const sg_config_t *cfg = req->gw->cfg;
  double since, until, now = sg_now();
  const char *only;
  if (window_args(req, resp, 86400.0, &since, &until, &only) != 0)
    return;
  noise_params_t p;
  noise_params_from_config(cfg, &p);
  json_t *windows = json_array(), *sliding = json_array();
  double first = noise_aligned_start(&p, since, NULL);
  int rc = 0;
  for (size_t i = 0; i < cfg->n_devices && rc == 0; i++) {
    const sg_device_t *d = &cfg->devices[i];
    if (d->type != SG_DEV_NOISE || (only && strcmp(only, d->id) != 0))
      continue;
    env_sample_t *la = NULL, *mx = NULL;
    size_t n_la = 0, n_mx = 0;
    double from = fmin(first, now - p.window_s);
    if ((rc = env_load(req->reader, d->id, PROTO_Q_LA, from, now, &la, &n_la)) == 0)
      rc = env_load(req->reader, d->id, PROTO_Q_LAMAX, from, now, &mx, &n_mx);
    noise_window_t w;
    for (double t = first, end; rc == 0 && t < until; t = end) {
      double start = noise_aligned_start(&p, t, &end);
      if (end > until)
        break;
      noise_window(&p, la, n_la, mx, n_mx, start, end, &w);
      if (w.n > 0)
        json_array_append_new(windows, noise_json(d->id, &w));
    }
    if (rc == 0) {
      noise_window(&p, la, n_la, mx, n_mx, now - p.window_s, now, &w);
      json_array_append_new(sliding, noise_json(d->id, &w));
    }
    free(la);
    free(mx);
  }
  if (rc != 0) {
    json_decref(windows);
    json_decref(sliding);
    http_error(resp, 503, API_ERR_DB_QUERY, "database query failed: %s", strerror(-rc));
    return;
  }
  resp->json =
      json_pack("{s:f,s:f,s:f,s:{s:f,s:f,s:f,s:f,s:f,s:b,s:f,s:f},s:o,s:o}", "since", since,
                "until", until, "window_s", p.window_s, "rules", "day_start_h", p.day_start_h,
                "night_start_h", p.night_start_h, "day_limit", p.day_limit, "night_limit",
                p.night_limit, "lmax_margin", p.lmax_margin, "indoor", p.indoor, "complete_share",
                p.complete_share, "sample_s", p.sample_s, "windows", windows, "sliding", sliding);
}

/* "15m", "1h", "900s", "short", "long" -> the dust window kind, or -1. */
static int dust_kind(const dust_params_t *p, const char *s) {
  if (!s || !*s || strcmp(s, "long") == 0)
    return DUST_LONG;
  if (strcmp(s, "short") == 0)
    return DUST_SHORT;
  char *end;
  double v = strtod(s, &end);
  double mult = strcmp(end, "h") == 0            ? 3600
                : strcmp(end, "m") == 0 || !*end ? 60
                : strcmp(end, "s") == 0          ? 1
                                                 : -1;
  for (int k = 0; mult > 0 && k < DUST_WINDOWS; k++)
    if (fabs(v * mult - p->window_s[k]) < 0.5)
      return k;
  return -1;
}

static const char *dust_level_name(int level) {
  return level == 2 ? "alarm" : level == 1 ? "warning" : level == 0 ? "normal" : NULL;
}

/* GET /api/dust?window=15m|1h&since=T&until=T&device=D: clock-aligned
 * windows of every dust station and quantity, and how many long windows
 * reached the alarm level on the day `until` falls in. */
void api_dust(const http_req_t *req, http_resp_t *resp) {
  const sg_config_t *cfg = req->gw->cfg;
  dust_params_t p;
  dust_params_from_config(cfg, &p);
  int wk = dust_kind(&p, http_query(req, "window"));
  if (wk < 0) {
    /* Said as the help says it: 15m or 1h ([dust] short_min, long_min). */
    char w[2][16];
    for (int k = 0; k < 2; k++) {
      double m = p.window_s[k] / 60;
      if (fmod(m, 60) == 0)
        snprintf(w[k], sizeof(w[k]), "%.0fh", m / 60);
      else
        snprintf(w[k], sizeof(w[k]), "%.0fm", m);
    }
    http_error(resp, 400, API_ERR_WINDOW_ARG, "window is %s or %s ([dust] short_min and long_min)",
               w[DUST_SHORT], w[DUST_LONG]);
    return;
  }
  double since, until;
  const char *only;
  if (window_args(req, resp, 86400.0, &since, &until, &only) != 0)
    return;
  double len = p.window_s[wk], first = env_aligned_start(len, since, NULL);
  double mid = env_local_midnight(until - 1e-3);
  double from = fmin(first, mid);
  json_t *windows = json_array(), *days = json_array();
  int rc = 0;
  for (size_t i = 0; i < cfg->n_devices && rc == 0; i++) {
    const sg_device_t *d = &cfg->devices[i];
    if (d->type != SG_DEV_DUST || (only && strcmp(only, d->id) != 0))
      continue;
    env_sample_t *rh = NULL;
    size_t n_rh = 0;
    rc = env_load(req->reader, d->id, PROTO_Q_RH, from, until, &rh, &n_rh);
    for (int q = 0; q < DUST_QUANTITIES && rc == 0; q++) {
      env_sample_t *s = NULL;
      size_t n = 0;
      if ((rc = env_load(req->reader, d->id, dust_proto_quantity(q), from, until, &s, &n)) != 0)
        break;
      dust_window_t w;
      for (double t = first, end; t < until; t = end) {
        double start = env_aligned_start(len, t, &end);
        if (end > until)
          break;
        dust_window(&p, q, wk, s, n, rh, n_rh, d->interval_s, start, end, &w);
        if (w.n == 0)
          continue;
        const char *lv = dust_level_name(w.level);
        json_array_append_new(
            windows,
            json_pack("{s:s,s:s,s:f,s:f,s:o,s:o,s:I,s:I,s:f,s:b,s:o,s:o,s:o}", "device", d->id,
                      "quantity", dust_quantity_name(q), "start", w.start, "end", w.end, "mean",
                      num_or_null(w.mean), "max", num_or_null(w.max), "samples", (json_int_t)w.n,
                      "unreliable", (json_int_t)w.unreliable, "coverage", w.coverage, "complete",
                      w.complete, "level", lv ? json_string(lv) : json_null(), "warn",
                      w.warn > 0 ? json_real(w.warn) : json_null(), "alarm",
                      w.alarm > 0 ? json_real(w.alarm) : json_null()));
      }
      /* The day's count of long windows at alarm level. */
      if (p.alarm[q][DUST_LONG] > 0) {
        int count = 0;
        for (double t = mid, end;; t = end) {
          double start = env_aligned_start(p.window_s[DUST_LONG], t, &end);
          if (end > until)
            break;
          dust_window(&p, q, DUST_LONG, s, n, rh, n_rh, d->interval_s, start, end, &w);
          count += w.level == 2;
        }
        json_array_append_new(
            days,
            json_pack("{s:s,s:s,s:f,s:i,s:o}", "device", d->id, "quantity", dust_quantity_name(q),
                      "day", mid, "alarm_windows", count, "max_per_day",
                      p.max_exceed_day > 0 ? json_integer(p.max_exceed_day) : json_null()));
      }
      free(s);
    }
    free(rh);
  }
  if (rc != 0) {
    json_decref(windows);
    json_decref(days);
    http_error(resp, 503, API_ERR_DB_QUERY, "database query failed: %s", strerror(-rc));
    return;
  }
  resp->json =
      json_pack("{s:s,s:f,s:f,s:f,s:f,s:f,s:o,s:o}", "window", wk == DUST_SHORT ? "short" : "long",
                "window_s", len, "long_s", p.window_s[DUST_LONG], "since", since, "until", until,
                "rh_unreliable", p.rh_max, "windows", windows, "exceedances", days);
}
