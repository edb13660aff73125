/* gateway/api: the local HTTP API, the dashboard's files, /metrics and the
 * monthly report, on libmicrohttpd's threads. The top room: it reads every
 * part (their snapshots, through gw_call_on_loop) and no part calls it. */
#ifndef SITEGATE_GW_API_H
#define SITEGATE_GW_API_H

#include "gateway/core/core.h"

#include <jansson.h>
#include <sys/types.h>

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
  const char *content_type; /* with text or stream: "text/csv; charset=utf-8", ... */
  /* or a body made while it is sent (libmicrohttpd's content reader: the
   * bytes put in buf, MHD_CONTENT_READER_END_OF_STREAM at the end, or
   * END_WITH_ERROR), with its state, freed by stream_free once sent */
  ssize_t (*stream)(void *arg, uint64_t pos, char *buf, size_t max);
  void *stream_arg;
  void (*stream_free)(void *arg);
} http_resp_t;

typedef void (*http_handler_t)(const http_req_t *req, http_resp_t *resp);

/* A query-string argument, or NULL. */
const char *http_query(const http_req_t *req, const char *name);
/* A query argument as Unix seconds; `def` when absent. Returns 0 or -EINVAL. */
int http_query_time(const http_req_t *req, const char *name, double def, double *out);
/* The API's refusals, each a stable code (protocol/HTTP.md "Errors") with
 * the catalogue's "err.<code>" in Chinese and English
 * (gateway/web/messages.json; tests/test_msgcat.c holds both). */
#define API_ERROR_MAP(X)                                                                           \
  X(ACK_LONG, "ack_long")                                                                          \
  X(ACK_STORE, "ack_store")                                                                        \
  X(ACK_WHO, "ack_who")                                                                            \
  X(ACKED_ALREADY, "acked_already")                                                                \
  X(ACTIVE_ARG, "active_arg")                                                                      \
  X(BAD_HOST, "bad_host")                                                                          \
  X(BODY_JSON, "body_json")                                                                        \
  X(BODY_LARGE, "body_large")                                                                      \
  X(BOQ_BODY, "boq_body")                                                                          \
  X(BOQ_ITEM, "boq_item")                                                                          \
  X(BOQ_MANY, "boq_many")                                                                          \
  X(BOQ_STORE, "boq_store")                                                                        \
  X(BY_BODY, "by_body")                                                                            \
  X(BY_LONG, "by_long")                                                                            \
  X(BY_REASON_LONG, "by_reason_long")                                                              \
  X(CANNOT_READ, "cannot_read")                                                                    \
  X(CODE_ARG, "code_arg")                                                                          \
  X(CORRECT_BODY, "correct_body")                                                                  \
  X(CORRECT_NOTE, "correct_note")                                                                  \
  X(CORRECT_REPLACE, "correct_replace")                                                            \
  X(CORRECT_STORE, "correct_store")                                                                \
  X(CORRECTED_ALREADY, "corrected_already")                                                        \
  X(DAYS_ARG, "days_arg")                                                                          \
  X(DB_QUERY, "db_query")                                                                          \
  X(DB_READ, "db_read")                                                                            \
  X(DETAIL, "detail")                                                                              \
  X(ENTRY_IS_REVERSAL, "entry_is_reversal")                                                        \
  X(ENTRY_REVERSAL_OF, "entry_reversal_of")                                                        \
  X(FORMAT_JSON_CSV, "format_json_csv")                                                            \
  X(FORMAT_REPORT, "format_report")                                                                \
  X(FUEL_ARG, "fuel_arg")                                                                          \
  X(IMPORT_BODY, "import_body")                                                                    \
  X(IMPORT_STORE, "import_store")                                                                  \
  X(IMPORT_TERMINAL, "import_terminal")                                                            \
  X(LEDGER_READ, "ledger_read")                                                                    \
  X(LIMIT_ARG, "limit_arg")                                                                        \
  X(MACHINE_BODY, "machine_body")                                                                  \
  X(MACHINE_EXISTS, "machine_exists")                                                              \
  X(MACHINE_MISSING, "machine_missing")                                                            \
  X(MACHINE_NEW, "machine_new")                                                                    \
  X(METHOD, "method")                                                                              \
  X(MONTH_ARG, "month_arg")                                                                        \
  X(MONTH_FUTURE, "month_future")                                                                  \
  X(MOVE_STORE, "move_store")                                                                      \
  X(NO_ACTIVE_ALARM, "no_active_alarm")                                                            \
  X(NO_ALARM, "no_alarm")                                                                          \
  X(NO_DASHBOARD, "no_dashboard")                                                                  \
  X(NO_ENDPOINT, "no_endpoint")                                                                    \
  X(NO_ENDPOINT_ACK, "no_endpoint_ack")                                                            \
  X(NO_ENDPOINT_ALARM, "no_endpoint_alarm")                                                        \
  X(NO_ENDPOINT_MACHINE, "no_endpoint_machine")                                                    \
  X(NO_ENDPOINT_OVERRIDE, "no_endpoint_override")                                                  \
  X(NO_CONTROLLER, "no_controller")                                                                \
  X(NO_ENTRY, "no_entry")                                                                          \
  X(NO_EQUIPMENT_UNIT, "no_equipment_unit")                                                        \
  X(NO_FILE, "no_file")                                                                            \
  X(NO_FILE_NAMED, "no_file_named")                                                                \
  X(NO_FILE_WHY, "no_file_why")                                                                    \
  X(NO_MACHINE, "no_machine")                                                                      \
  X(NO_MACHINE_CODE, "no_machine_code")                                                            \
  X(NO_MEMORY, "no_memory")                                                                        \
  X(NOT_CODE, "not_code")                                                                          \
  X(NOTE_TEXT, "note_text")                                                                        \
  X(OUTBOX, "outbox")                                                                              \
  X(OVERRIDE_BODY, "override_body")                                                                \
  X(OVERRIDE_FAIL, "override_fail")                                                                \
  X(OVERRIDE_FOR, "override_for")                                                                  \
  X(OVERRIDE_LONG, "override_long")                                                                \
  X(OVERRIDE_REASON, "override_reason")                                                            \
  X(POWER_ARG, "power_arg")                                                                        \
  X(PROGRESS_BODY, "progress_body")                                                                \
  X(PROGRESS_READ, "progress_read")                                                                \
  X(PROGRESS_STORE, "progress_store")                                                              \
  X(READ_BACK, "read_back")                                                                        \
  X(READINGS_ARGS, "readings_args")                                                                \
  X(REGISTER_REASON, "register_reason")                                                            \
  X(REGISTER_STORE, "register_store")                                                              \
  X(REPLACEMENT, "replacement")                                                                    \
  X(REPORT_FAIL, "report_fail")                                                                    \
  X(REPORT_NO_TABLE, "report_no_table")                                                            \
  X(REPORT_TABLE_ARG, "report_table_arg")                                                          \
  X(SCREEN, "screen")                                                                              \
  X(SINCE_ARG, "since_arg")                                                                        \
  X(SINCE_UNTIL_ARG, "since_until_arg")                                                            \
  X(SPAN_LONG, "span_long")                                                                        \
  X(STAGE_ARG, "stage_arg")                                                                        \
  X(STEP_ARG, "step_arg")                                                                          \
  X(STOPPING, "stopping")                                                                          \
  X(T_ARG, "t_arg")                                                                                \
  X(TERMINAL_TAKEN, "terminal_taken")                                                              \
  X(TERMINAL_TYPE, "terminal_type")                                                                \
  X(TEXT_LONG, "text_long")                                                                        \
  X(TICKET_BODY, "ticket_body")                                                                    \
  X(TICKET_CONFLICT, "ticket_conflict")                                                            \
  X(TICKET_STORE, "ticket_store")                                                                  \
  X(TOKEN_ACTION, "token_action")                                                                  \
  X(TOKEN_READ, "token_read")                                                                      \
  X(UNKNOWN_DEVICE, "unknown_device")                                                              \
  X(UNKNOWN_QUANTITY, "unknown_quantity")                                                          \
  X(UNKNOWN_UNIT, "unknown_unit")                                                                  \
  X(UNTIL_BEFORE, "until_before")                                                                  \
  X(WINDOW_ARG, "window_arg")

typedef enum {
#define X(e, s) API_ERR_##e,
  API_ERROR_MAP(X)
#undef X
      API_ERR_COUNT
} api_err_t;

const char *api_error_code(api_err_t e); /* "no_active_alarm"; "?" out of range */

/* Sets resp to {"error": message, "code": code, "args": [...]} with the
 * status: `message` is `fmt` in English (for scripts and logs), `args`
 * the values of its conversions as text, in order, which the catalogue's
 * "err.<code>" names {1}, {2}, ...: sitectl and the dashboard show that,
 * in the person's language. */
void http_error(http_resp_t *resp, unsigned status, api_err_t code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* After http_error() whose last value is strerror(-rc): names that value
 * in "sys" ({"arg": its place in args, "code": "eio", "errno": 5}) so that
 * clients show the catalogue's "sys.<code>" ("sys.other" with the number)
 * in its place. http_sys_name(): "eio", ...; "other" for an errno the
 * catalogue does not name. */
void http_error_sys(http_resp_t *resp, int rc);
const char *http_sys_name(int e);
/* The same for a refusal of a protocol/ parser or check, just made on this
 * thread: `code` and `args` are proto_why()'s (protocol.h), and a CSV's
 * first bad line is "line" (its others counted in "more"); `message` is
 * the parser's English. */
void http_error_why(http_resp_t *resp, unsigned status, const char *message);

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
