/* gateway/waste: construction waste and materials.
 *
 * ==== The ledger in the daemon
 *
 * waste_gw.c joins the storage ledger (storage.h) to the loop: ticket
 * commits come back to the loop through core (gw_ticket_submit), which
 * tells this room through its ledger listener; it seeds [site] progress into the database once,
 * computes the figures (below) from the ledger's sums, and reports
 * the waste alarms (rules.h) from a libuv worker after every change
 * and every WASTE_TICK_MS. The CoAP front takes POST /w; api/api_waste.c
 * serves the manager's endpoints.
 *
 * ==== The construction-waste and material figures.
 *
 * Everything here is pure arithmetic over sums the ledger gives
 * (waste.c), so each formula is tested with hand-computed cases
 * (tests/test_waste.c). The formulas, with DESIGN.md "The figures":
 *
 *   allowance_t   = (L_cast * A_cast + L_prefab * A_prefab) / 10,000
 *                   L_cast 300, L_prefab 200 t per 10,000 m2 by default
 *   limit         = allowance_t / (A_cast + A_prefab) * 10,000  (the site's
 *                   area-weighted limit, t per 10,000 m2)
 *   generated_t   = net of every waste ticket of the counted categories
 *                   (engineering, demolition, decoration), whatever its
 *                   destination, hazardous kinds left out
 *   excluded_t    = spoil + mud + hazardous (reported apart)
 *   discharged_t  = generated_t less what was reused on site: what left the
 *                   site for recycling, backfill or disposal
 *   intensity     = discharged_t / (A_cast + A_prefab) * 10,000
 *   allowance_used = discharged_t / allowance_t
 *   utilisation   = (reused on site + recycled + backfill) / generated_t,
 *                   overall and per kind, against the 55% target
 *   projected_t   = discharged_t + (1 - p) * r, p = [site] progress, r the
 *                   recent tonnes per unit of progress: the discharge over
 *                   the last window divided by the progress gained in it,
 *                   or discharged_t / p when too little progress was made
 *                   in the window to divide by
 *   loss rate     = (delivered - returned - design net) / design net per
 *                   material, against its 2020 baseline; target 0.8 x baseline
 *   green share   = green-certified delivered t / delivered t
 *
 * A correction is a reversal with negated weights (storage/ledger.c), so
 * every sum above simply adds signed rows.
 */
#ifndef SITEGATE_GW_WASTE_H
#define SITEGATE_GW_WASTE_H

#include "gateway/core/core.h"
#include "gateway/rules/rules.h"

#include <stdbool.h>
#include <stddef.h>

#define WASTE_AREA_UNIT_M2 10000.0       /* limits are per 10,000 m2 of floor area */
#define WASTE_LIMIT_CAST_DEFAULT 300.0   /* t / 10,000 m2, new (cast-in-place) buildings */
#define WASTE_LIMIT_PREFAB_DEFAULT 200.0 /* t / 10,000 m2, prefabricated buildings */
#define WASTE_UTILISATION_TARGET 0.55    /* resource-utilisation target for 2030 */
#define WASTE_LOSS_TARGET_FACTOR 0.8     /* loss-rate target: 0.8 x the 2020 baseline */

/* ---- the allowance */
typedef struct waste_site {
  double area_cast_m2, area_prefab_m2;
  double limit_cast, limit_prefab; /* t per 10,000 m2 */
} waste_site_t;

double waste_allowance_t(const waste_site_t *s);
/* The area-weighted limit in t per 10,000 m2; NAN without floor area. */
double waste_limit_per_10k(const waste_site_t *s);
/* t per 10,000 m2; NAN without floor area. */
double waste_intensity(const waste_site_t *s, double discharged_t);

/* ---- totals over ledger rows */
typedef struct waste_totals {
  double generated_t, discharged_t, excluded_t;
  double reused_t, recycled_t, backfill_t, disposed_t;   /* parts of generated_t */
  double spoil_t, mud_t, hazardous_t;                    /* parts of excluded_t */
  double by_cat_dest[PROTO_CAT_COUNT][PROTO_DEST_COUNT]; /* every waste ticket, t */
  double kind_generated[PROTO_KIND_COUNT];               /* counted categories only */
  double kind_utilised[PROTO_KIND_COUNT]; /* ... of it reused, recycled or backfilled */
  long tickets;                           /* waste rows added */
} waste_totals_t;

void waste_totals_init(waste_totals_t *t);
/* Adds `net_t` (negative for a reversal) of one category/kind/destination;
 * kind is -1 for spoil or mud without one. Out-of-range values are
 * ignored (they cannot come out of the decoder). */
void waste_totals_add(waste_totals_t *t, int category, int kind, int dest, double net_t);
/* (reused + recycled + backfill) / generated; NAN when nothing was generated. */
double waste_utilisation(const waste_totals_t *t);
double waste_kind_utilisation(const waste_totals_t *t, int kind);

/* ---- projection to completion */
typedef struct waste_projection_in {
  double discharged_t;        /* to date */
  double progress;            /* share of construction done, 0-1 */
  double window_discharged_t; /* discharged within the recent window */
  double window_gain;         /* progress gained within that window */
  double min_gain;            /* below this gain the window rate is not used */
} waste_projection_in_t;

/* projected_t as above; NAN while progress is 0 (nothing to scale by).
 * *used_window says which rate it used (may be NULL). */
double waste_projection_t(const waste_projection_in_t *in, bool *used_window);

/* The discharge of the recent window as the projection uses it: the
 * median of its tickets' net weights times their number, so one outlier
 * (five test tickets of 170 t, a typo) moves it by at most one median
 * ticket. `nets` (t, discharged tickets of the window, reversals negative)
 * is sorted in place. Below WASTE_ROBUST_MIN_TICKETS tickets, the plain
 * sum (nothing to be robust with). */
#define WASTE_ROBUST_MIN_TICKETS 5
double waste_robust_discharge_t(double *nets, size_t n);

/* ---- alarms: 0 normal, 1 warning, 2 alarm */
int waste_allowance_level(double allowance_used, double warn_share, double alarm_share);

/* ---- materials */
/* (delivered - returned - design) / design; NAN without a design quantity. */
double material_loss_rate(double delivered_t, double returned_t, double design_t);
/* The verdict on a loss rate, as the API's "status": "no_design_quantity"
 * (NAN), "not_yet_judgeable" (negative: less consumed than the design
 * quantity for the progress made, so deliveries lag the estimate and no
 * loss can honestly be stated yet), "no_baseline", "over_baseline",
 * "over_target" or "within_target". */
const char *material_loss_status(double loss, double baseline, double target);
/* green / delivered; NAN when nothing was delivered. */
double material_green_share(double green_t, double delivered_t);

#define WASTE_TICK_MS (10 * 60 * 1000) /* alarms re-evaluated at least this often */
#define WASTE_MATERIALS_MAX 64         /* materials reported; more is not a site */

/* ---- life cycle (gateway.c) */
/* Seeds the configured progress (first start only), starts the completion
 * handle and the alarm timer. Returns 0 or a negative errno. */
int waste_gw_open(gw_t *gw);
/* Loop thread, when stopping: no more completions are delivered, handles
 * close (the loop must run once more). Accepts a gateway without it. */
void waste_gw_stop(gw_t *gw);
/* After the loop has run out: frees it. */
void waste_gw_free(gw_t *gw);

/* The ledger or the progress changed: re-evaluate the waste alarms soon.
 * Loop thread (the HTTP threads go through gw_call_on_loop). */
void waste_gw_changed(gw_t *gw, void *arg);

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
  double window_sum_t; /* the plain sum; window_discharged_t is robust (median x tickets) */
  long window_tickets; /* discharged tickets in the window */
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

#endif
