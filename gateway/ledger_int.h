/* Private to gateway/: the waste and material ledger in the daemon.
 *
 * waste_gw.c joins the storage ledger (storage.h) to the loop: ticket
 * commits complete on the storage writer thread and come back to the loop
 * through one uv_async_t; it seeds [site] progress into the database once,
 * computes the figures (waste_int.h) from the ledger's sums, and reports
 * the waste alarms (alarm_int.h) from a libuv worker after every change
 * and every WASTE_TICK_MS. coapfront.c takes POST /w; api_waste.c serves
 * the manager's endpoints. */
#ifndef SITEGATE_LEDGER_INT_H
#define SITEGATE_LEDGER_INT_H

#include "gateway/gateway_int.h"
#include "gateway/waste_int.h"

#define WASTE_TICK_MS (10 * 60 * 1000) /* alarms re-evaluated at least this often */
#define WASTE_MATERIALS_MAX 64         /* materials reported; more is not a site */
#define WASTE_OLDEST_DAYS 400          /* weighings older than this are refused */

/* ---- life cycle (gateway.c) */
/* Seeds the configured progress (first start only), starts the completion
 * handle and the alarm timer. Returns 0 or a negative errno. */
int waste_gw_open(gw_t *gw);
/* Loop thread, when stopping: no more completions are delivered, handles
 * close (the loop must run once more). Accepts a gateway without it. */
void waste_gw_stop(gw_t *gw);
/* After stor_close() (no writer callbacks can come any more): frees it,
 * telling each undelivered completion's owner with a NULL result. */
void waste_gw_free(gw_t *gw);

/* ---- commits from the loop */
/* Called on the loop thread with the result; `res` is NULL when the
 * gateway stopped before the result could be delivered (free your state,
 * touch nothing else). */
typedef void (*waste_done_fn)(void *arg, const stor_ticket_result_t *res);
/* Queues `t` for a durable commit; `done` follows on the loop thread.
 * Loop thread only. Returns 0, or a negative errno (done is not called). */
int waste_gw_submit(gw_t *gw, const stor_ticket_t *t, waste_done_fn done, void *arg);
/* The ledger or the progress changed: re-evaluate the waste alarms soon.
 * Loop thread (the HTTP threads go through gw_call_on_loop). */
void waste_gw_changed(gw_t *gw, void *arg);

/* A decoded ticket as a ledger entry; `source` is "scale" or "manual". */
void waste_ticket_to_stor(const proto_ticket_t *p, const char *source, stor_ticket_t *out);

/* ---- the figures from the ledger (any thread with its own reader) */
typedef struct waste_material {
  char material[32];
  double delivered_t, returned_t, green_t;
  double design_t;  /* NAN without a BoQ line */
  double loss_rate; /* NAN without a design quantity */
  /* While the work goes on, delivered is compared with the design quantity
   * of the work done so far, design_t x progress (an estimate: it assumes a
   * material is used in step with progress); the status judges this one
   * until progress reaches 1. */
  double design_to_date_t, loss_to_date;
  double baseline; /* 2020 baseline as a share; NAN when none configured */
  double target;   /* loss_target_factor x baseline */
  char description[128];
} waste_material_t;

typedef struct waste_summary {
  double now;
  waste_site_t site;
  double allowance_t, limit_per_10k, intensity, allowance_used;
  waste_totals_t w;
  double utilisation;
  int64_t entries;
  /* projection */
  double progress, progress_t; /* latest value and when it was set (0: config) */
  double projected_t;
  bool used_window;
  double window_start, window_discharged_t, window_gain;
  /* materials */
  size_t n_mat;
  waste_material_t mat[WASTE_MATERIALS_MAX];
  double delivered_t, green_t, green_share;
  double boq_imported; /* 0: no bill of quantities */
} waste_summary_t;

/* Computes every figure at `now` (Unix s) from the ledger through `r`.
 * Returns 0 or a negative errno. */
int waste_summary_compute(const sg_config_t *cfg, stor_reader_t *r, double now,
                          waste_summary_t *out);
json_t *waste_summary_json(const sg_config_t *cfg, const waste_summary_t *s);
json_t *waste_materials_json(const sg_config_t *cfg, const waste_summary_t *s);
/* A ledger entry as the API shows it. */
json_t *waste_ticket_json(const stor_ticket_t *t);

/* ---- endpoints (api_waste.c) */
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

#endif
