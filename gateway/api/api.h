/* gateway/api: the local HTTP API, the dashboard's files, /metrics and the
 * monthly report, on libmicrohttpd's threads. The top room: it reads every
 * part (their snapshots, through gw_call_on_loop) and no part calls it. */
#ifndef SITEGATE_GW_API_H
#define SITEGATE_GW_API_H

#include "gateway/core/core.h"

#include <jansson.h>

/* Local HTTP API (http.c), on a pool of libmicrohttpd threads; each request
 * borrows a read-only storage connection. Endpoints are rows of the route
 * table in http.c; a handler fills `resp` and may live in any gateway file.
 * Handlers run concurrently, on several threads: no statics, and anything
 * shared is atomic, under its own lock, or reached by gw_call_on_loop. */
int http_start(gw_t *gw, struct http_api **out);
/* Stops serving and joins every handler thread; after it no handler runs.
 * Accepts NULL. */
void http_stop(struct http_api *h);

typedef struct http_req {
  gw_t *gw;
  stor_reader_t *reader; /* read-only, lent to this request's thread until it returns */
  const char *method;
  const char *path; /* "/api/alarms/12/ack" */
  const char *tail; /* for prefix routes: what follows the prefix ("12/ack") */
  json_t *body;     /* parsed JSON body of POST/PUT, or NULL */
  void *conn;       /* for http_query() */
} http_req_t;

typedef struct http_resp {
  unsigned status; /* 200 unless set */
  json_t *json;    /* the body as JSON (owned, sent compact), or */
  char *text;      /* a malloc'ed body of another type */
  size_t text_len;
  const char *content_type; /* with text: "text/csv; charset=utf-8", ... */
} http_resp_t;

typedef void (*http_handler_t)(const http_req_t *req, http_resp_t *resp);

/* A query-string argument, or NULL. */
const char *http_query(const http_req_t *req, const char *name);
/* A query argument as Unix seconds; `def` when absent. Returns 0 or -EINVAL. */
int http_query_time(const http_req_t *req, const char *name, double def, double *out);
/* Sets resp to {"error": message} with the status. */
void http_error(http_resp_t *resp, unsigned status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Handlers of the alarm, noise and dust endpoints (api_env.c). */
void api_alarms(const http_req_t *req, http_resp_t *resp);
void api_alarm_detail(const http_req_t *req, http_resp_t *resp);
void api_alarm_ack(const http_req_t *req, http_resp_t *resp);
void api_noise(const http_req_t *req, http_resp_t *resp);
void api_dust(const http_req_t *req, http_resp_t *resp);

/* Handlers of the equipment, energy and carbon endpoints (api_equipment.c). */
void api_equipment(const http_req_t *req, http_resp_t *resp);
void api_equipment_log(const http_req_t *req, http_resp_t *resp);
void api_equipment_override(const http_req_t *req, http_resp_t *resp);
void api_energy(const http_req_t *req, http_resp_t *resp);
void api_carbon(const http_req_t *req, http_resp_t *resp);

/* Handlers of the waste, materials and progress endpoints (api_waste.c). */
void api_waste_summary(const http_req_t *req, http_resp_t *resp);
void api_waste_tickets(const http_req_t *req, http_resp_t *resp);
void api_waste_add(const http_req_t *req, http_resp_t *resp);
void api_waste_correct(const http_req_t *req, http_resp_t *resp);
void api_waste_verify(const http_req_t *req, http_resp_t *resp);
void api_waste_disclosure(const http_req_t *req, http_resp_t *resp);
void api_materials_summary(const http_req_t *req, http_resp_t *resp);
void api_materials_boq(const http_req_t *req, http_resp_t *resp);
void api_site_progress_get(const http_req_t *req, http_resp_t *resp);
void api_site_progress_put(const http_req_t *req, http_resp_t *resp);

/* The machinery endpoints (api_machinery.c). */
void api_machinery(const http_req_t *req, http_resp_t *resp);
void api_machine_detail(const http_req_t *req, http_resp_t *resp);
void api_machine_add(const http_req_t *req, http_resp_t *resp);
void api_machine_action(const http_req_t *req, http_resp_t *resp);
/* The monthly report's machinery table (api_machinery.c): appends to
 * `rows` one row per machine in the register during [since, until) (code,
 * type, stage, kW, days on site, hours on site, engine hours, fuel l,
 * t CO2, NOx kg, PM kg) and gives the totals in *summary (the caller's).
 * 0 or -errno. */
int machinery_report_month(gw_t *gw, stor_reader_t *rd, double since, double until, json_t *rows,
                           json_t **summary);
/* The machines' fuel and t CO2 over [since, until), for /api/carbon: 0
 * with {"fuel_l","t_co2","formula"} in *out (the caller's), or -errno. */
int api_machinery_carbon(const http_req_t *req, double since, double until, json_t **out);

/* GET /api/uplink (api_uplink.c). */
void api_uplink(const http_req_t *req, http_resp_t *resp);

/* ---- the dashboard, metrics and reports (web.c, api_metrics.c, report.c) */
/* The folder the dashboard's files are served from: [http] web_root, or
 * ../share/sitegate/web beside the running program. */
const char *web_root(const sg_config_t *cfg);
void api_web_file(const http_req_t *req, http_resp_t *resp);
void api_metrics(const http_req_t *req, http_resp_t *resp);
/* GET /api/report?month=YYYY-MM[&format=json|html|csv&table=NAME] (report.c,
 * report_html.c): the monthly site report. */
void api_report(const http_req_t *req, http_resp_t *resp);
/* GET /api/screen (api_screen.c): the site-office screen's figures, a
 * public subset of the dashboard's, readable without the token. */
void api_screen(const http_req_t *req, http_resp_t *resp);
/* The report of month m of year y as JSON (*out, owned by the caller), in
 * `lang` ("en", else Chinese): 0, -ERANGE for a month that has not begun,
 * or -errno. */
int report_build(gw_t *gw, stor_reader_t *rd, int y, int m, const char *lang, json_t **out);

/* CSV exports (csv.c): true when cell `s` starts with = + - @, a tab or a
 * carriage return and is not a plain signed number, so that a spreadsheet
 * would run it as a formula (OWASP CSV injection); the caller writes a
 * leading apostrophe. Pure, any thread. */
bool api_csv_needs_guard(const char *s);

/* True when the request header Host (`host[:port]`, `[v6]:port`) names
 * this gateway: an IP literal, `localhost`, or one of `names` (commas or
 * spaces, [http] hosts), case-insensitive. Pure, any thread. */
bool http_host_ok(const char *host, const char *names);
/* `addr` (a struct sockaddr) is 127.0.0.0/8, ::1 or ::ffff:127.x. */
bool http_addr_is_loopback(const void *addr);
/* The token rule: every action; every read but the dashboard's files (and
 * the site-office screen's public figures, `web_file` too) from a client
 * that is not loopback (an unknown address, NULL, counts as not). */
bool http_needs_token(bool action, bool web_file, const void *client_addr);
/* True for the routes anyone may read (the `web_file` of http_needs_token):
 * the dashboard's files and GET /api/screen. Pure, any thread. */
bool http_route_public(const char *method, const char *url);

#endif
