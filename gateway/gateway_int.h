/* Private to gateway/: the daemon's shared state and the parts' entry points.
 *
 * Threads: the loop thread owns everything here except the counters and the
 * per-device `last_ms`, which the HTTP threads read; those are C11 atomics
 * written by the loop thread only. */
#ifndef SITEGATE_GATEWAY_INT_H
#define SITEGATE_GATEWAY_INT_H

#include "gateway/gateway.h"
#include "protocol/protocol.h"
#include "storage/storage.h"

#include <jansson.h>
#include <stdatomic.h>
#include <uv.h>

/* Why a request was refused: X(enum, metric label). The labels are
 * /metrics' and /api/status' contract: README's table of refusals. */
#define GW_REJECT_MAP(X)                                                                           \
  X(BAD_PACK, "bad_pack")                                                                          \
  X(UNKNOWN_DEVICE, "unknown_device")                                                              \
  X(IDENTITY, "identity_mismatch")                                                                 \
  X(NEEDS_DTLS, "needs_dtls")                                                                      \
  X(TOO_LARGE, "too_large")                                                                        \
  X(FORMAT, "unsupported_format")                                                                  \
  X(INVALID_READING, "invalid_reading")                                                            \
  X(INVALID_TICKET, "invalid_ticket")                                                              \
  X(BUSY, "storage_busy")                                                                          \
  X(DISK_FULL, "disk_full")                                                                        \
  X(STORAGE_ERROR, "storage_error")

typedef enum {
#define X(e, s) GW_REJECT_##e,
  GW_REJECT_MAP(X)
#undef X
      GW_REJECT_COUNT
} gw_reject_t;

const char *gw_reject_name(gw_reject_t r);

typedef struct gw_device {
  const sg_device_t *conf;
  uint32_t db_id;
  _Atomic int64_t last_ms; /* receipt time of its last accepted pack, 0: never */
  _Atomic uint64_t packs, records, rejects;
} gw_device_t;

typedef struct gw_counters {
  _Atomic uint64_t requests, records;
  _Atomic uint64_t rejects[GW_REJECT_COUNT];
} gw_counters_t;

struct coap_front;
struct http_api;
struct loop_calls;
struct alarms;
struct env;
struct waste_gw;
struct uplink;
struct equipment;

struct gw {
  uv_loop_t *loop;
  const sg_config_t *cfg;
  stor_db_t *db;
  gw_device_t *devices; /* parallel to cfg->devices (sorted by id) */
  gw_counters_t counters;
  double started; /* Unix seconds */
  struct coap_front *coap;
  struct http_api *http;
  uv_signal_t sig_term, sig_int;
  uv_timer_t lag_timer; /* watches the loop for blocking work */
  uv_work_t pool_start; /* starts libuv's threads before they are placed */
  uint64_t lag_expected_ms;
  _Atomic uint64_t lag_max_ms; /* the longest the loop was late, since start */
  struct loop_calls *calls;
  struct alarms *alarms;       /* the alarm model (alarm_int.h), loop thread */
  struct env *env;             /* noise, dust and health rules (env_int.h) */
  struct waste_gw *waste;      /* the waste and material ledger (ledger_int.h) */
  struct uplink *uplink;       /* to the authority (uplink_int.h); NULL without [uplink] host */
  struct equipment *equipment; /* energy and group control (equipment_int.h) */
};

/* Runs fn(gw, arg) on the loop thread and waits until it has returned: the
 * way an HTTP thread acts on loop-owned state (acknowledging an alarm,
 * overriding a unit). Any number of threads may wait at once; `arg` is the
 * caller's and only fn touches it. Returns 0, or -ECANCELED when the loop is
 * stopping (fn did not run). Safe until http_stop() has returned, also
 * during the shutdown drain. Never call it from the loop thread. */
int gw_call_on_loop(gw_t *gw, void (*fn)(gw_t *gw, void *arg), void *arg);

/* The registry entry of a device id, or NULL. */
gw_device_t *gw_device_find(gw_t *gw, const char *id);
/* Whether `d` reported within [health] offline_intervals of its interval
 * before `now` (health_online, as the health.offline alarm judges it).
 * Any thread: it reads the atomic last_ms. */
bool gw_device_online(const gw_t *gw, const gw_device_t *d, double now);
/* How many configured devices are online at `now`. Any thread. */
size_t gw_devices_online(const gw_t *gw, double now);

/* How the CoAP front answers a refusal from storage (ingest.c, pure). */
typedef struct gw_verdict {
  int code;         /* the CoAP code as three digits (RFC 7252 12.1.2): 400, 500, 503 */
  gw_reject_t why;  /* the reason it is counted under */
  unsigned max_age; /* the Max-Age option in s; 0: none */
  char text[256];   /* the diagnostic payload */
} gw_verdict_t;
/* stor_append() refused readings r[0..n) with `rc` (not 0): -EAGAIN is
 * busy and -ENOSPC disk full (both 5.03 with Max-Age), -EINVAL for a
 * reading that can never be stored is 4.00 invalid_reading naming it, any
 * other errno 5.00 storage_error. */
void gw_append_verdict(int rc, const stor_reading_t *r, size_t n, gw_verdict_t *v);
/* waste_gw_submit() refused ticket `t` with `rc` (not 0). Returns 400 for a
 * ticket the ledger can never hold (invalid_ticket), with what is wrong in
 * `text`; else 503 (resend) with the reason. */
int gw_ticket_refusal(int rc, const stor_ticket_t *t, char *text, size_t cap);

/* CoAP front (coapfront.c): binds UDP and DTLS, serves POST /r. */
int coapfront_start(gw_t *gw, struct coap_front **out);
/* Stops answering and frees it; its libuv handles close asynchronously, so
 * the loop must run once more. Accepts NULL. */
void coapfront_stop(struct coap_front *cf);

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

/* ---- equipment (equipment.c, api_equipment.c; equipment_int.h has the
 * rules). Ingest hands every accepted pack to equipment_on_pack(), which
 * keeps the energy accounts and the live power of units and meters, and
 * the air temperature. Loop thread. */
void equipment_on_pack(gw_t *gw, const gw_device_t *dev, const proto_pack_t *p);
int equipment_open(gw_t *gw);  /* after alarm_open and coapfront_start */
void equipment_stop(gw_t *gw); /* before coapfront_stop; the loop runs once more */
void equipment_free(gw_t *gw); /* after the loop has run out: stores what is left */
void api_equipment(const http_req_t *req, http_resp_t *resp);
void api_equipment_log(const http_req_t *req, http_resp_t *resp);
void api_equipment_override(const http_req_t *req, http_resp_t *resp);
void api_energy(const http_req_t *req, http_resp_t *resp);
void api_carbon(const http_req_t *req, http_resp_t *resp);

/* ---- the gateway as a CoAP client of equipment controllers (coapfront.c,
 * DESIGN.md "Southbound CoAP contract"): GET /state observed (RFC 7641),
 * PUT /ctl {"on":false,"reason":"peak-cap"} as CON, retransmitted by
 * libcoap. `uri` is the unit's `coap` key: coap://HOST[:PORT][/BASE], the
 * resources being BASE/state and BASE/ctl. Loop thread only; callbacks run
 * on the loop and may send again; none runs after coapfront_stop(). */
typedef struct coapfront_state {
  bool on;
  double power_kw; /* NAN when the controller does not say */
  int demand;      /* 1 the operator asks for the unit, 0 not, -1 not said */
} coapfront_state_t;
/* A notification (st != NULL, err 0) or a failed observation (st NULL,
 * err -ETIMEDOUT, -ECONNREFUSED, -EPROTO for an error code or -EBADMSG for
 * a payload that is not a state): observe again later. */
typedef void (*coapfront_state_cb)(void *arg, const coapfront_state_t *st, int err);
/* A command's answer: 0 (2.xx), -EPROTO (4.xx, 5.xx: `code` as 404),
 * -ETIMEDOUT (no ACK after the retransmissions) or -ECONNREFUSED (RST). */
typedef void (*coapfront_done_cb)(void *arg, uint64_t tag, int result, int code);
/* Registers (again, with the same token: RFC 7641 3.3.1) an observation
 * of uri's /state. Returns 0, -EINVAL for a URI it cannot use (logged),
 * -ENOMEM or -EIO. */
int coapfront_observe(struct coap_front *cf, const char *uri, coapfront_state_cb cb, void *arg);
/* Sends PUT /ctl; cb(arg, tag, ...) is called once, unless the front stops
 * first. Returns 0 or as coapfront_observe. */
int coapfront_command(struct coap_front *cf, const char *uri, bool on, const char *reason,
                      coapfront_done_cb cb, void *arg, uint64_t tag);

/* ---- the dashboard, metrics and reports (web.c, api_metrics.c, report.c) */
/* The folder the dashboard's files are served from: [http] web_root, or
 * ../share/sitegate/web beside the running program. */
const char *web_root(const sg_config_t *cfg);
void api_web_file(const http_req_t *req, http_resp_t *resp);
void api_metrics(const http_req_t *req, http_resp_t *resp);
/* GET /api/report?month=YYYY-MM[&format=json|html|csv&table=NAME] (report.c,
 * report_html.c): the monthly site report. */
void api_report(const http_req_t *req, http_resp_t *resp);
/* The report of month m of year y as JSON (*out, owned by the caller):
 * 0, -ERANGE for a month that has not begun, or -errno. */
int report_build(gw_t *gw, stor_reader_t *rd, int y, int m, json_t **out);

#endif
