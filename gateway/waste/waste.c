/* The construction-waste and material figures (formulas in
 * gateway/waste/waste.h).
 *
 * Pure functions: no loop, no storage, no allocation.
 * The API handlers (gateway/api/api_waste.c) feed them the ledger's sums; the
 * tests feed them hand-computed cases. A figure that cannot be computed
 * (no floor area, nothing generated, no progress) is NAN, which the API
 * shows as null, never as 0. */

#include "gateway/waste/waste.h"
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- the allowance */
double waste_allowance_t(const waste_site_t *s) {
  return (s->limit_cast * s->area_cast_m2 + s->limit_prefab * s->area_prefab_m2) /
         WASTE_AREA_UNIT_M2;
}

double waste_limit_per_10k(const waste_site_t *s) {
  double area = s->area_cast_m2 + s->area_prefab_m2;
  return area > 0 ? waste_allowance_t(s) / area * WASTE_AREA_UNIT_M2 : NAN;
}

double waste_intensity(const waste_site_t *s, double discharged_t) {
  double area = s->area_cast_m2 + s->area_prefab_m2;
  return area > 0 ? discharged_t / area * WASTE_AREA_UNIT_M2 : NAN;
}

/* ---- totals */
void waste_totals_init(waste_totals_t *t) { memset(t, 0, sizeof(*t)); }

void waste_totals_add(waste_totals_t *t, int category, int kind, int dest, double net_t) {
  if (category < 0 || category >= PROTO_CAT_COUNT || dest < 0 || dest >= PROTO_DEST_COUNT ||
      kind < -1 || kind >= PROTO_KIND_COUNT || !isfinite(net_t))
    return;
  t->tickets++;
  t->by_cat_dest[category][dest] += net_t;
  if (category == PROTO_CAT_SPOIL) {
    t->spoil_t += net_t;
    t->excluded_t += net_t;
    return;
  }
  if (category == PROTO_CAT_MUD) {
    t->mud_t += net_t;
    t->excluded_t += net_t;
    return;
  }
  if (kind == PROTO_KIND_HAZARDOUS) { /* tracked, but not construction waste */
    t->hazardous_t += net_t;
    t->excluded_t += net_t;
    return;
  }
  t->generated_t += net_t;
  if (kind >= 0)
    t->kind_generated[kind] += net_t;
  switch (dest) {
  case PROTO_DEST_REUSE_ONSITE:
    t->reused_t += net_t;
    break;
  case PROTO_DEST_RECYCLING:
    t->recycled_t += net_t;
    break;
  case PROTO_DEST_BACKFILL:
    t->backfill_t += net_t;
    break;
  case PROTO_DEST_DISPOSAL:
    t->disposed_t += net_t;
    break;
  }
  if (dest != PROTO_DEST_DISPOSAL && kind >= 0)
    t->kind_utilised[kind] += net_t;
  if (proto_waste_dest_leaves_site(dest))
    t->discharged_t += net_t;
}

/* Sums of signed rows are exact to float noise; a total that is zero to
 * within a gram counts as nothing. */
#define TONNE_EPS 1e-6

double waste_utilisation(const waste_totals_t *t) {
  if (t->generated_t <= TONNE_EPS)
    return NAN;
  return (t->reused_t + t->recycled_t + t->backfill_t) / t->generated_t;
}

double waste_kind_utilisation(const waste_totals_t *t, int kind) {
  if (kind < 0 || kind >= PROTO_KIND_COUNT || t->kind_generated[kind] <= TONNE_EPS)
    return NAN;
  return t->kind_utilised[kind] / t->kind_generated[kind];
}

/* ---- projection */
double waste_projection_t(const waste_projection_in_t *in, bool *used_window) {
  if (used_window)
    *used_window = false;
  double p = in->progress;
  if (!isfinite(p) || p <= 0)
    return NAN;
  if (p >= 1)
    return in->discharged_t;
  double rate; /* tonnes per unit of progress */
  if (in->window_gain >= in->min_gain && in->window_gain > 0 && in->window_discharged_t >= 0) {
    rate = in->window_discharged_t / in->window_gain;
    if (used_window)
      *used_window = true;
  } else {
    rate = in->discharged_t / p;
  }
  return in->discharged_t + (1 - p) * rate;
}

const char *material_loss_status(double loss, double baseline, double target) {
  if (!isfinite(loss))
    return "no_design_quantity";
  if (loss < 0)
    return "not_yet_judgeable";
  if (!isfinite(baseline))
    return "no_baseline";
  if (loss > baseline)
    return "over_baseline";
  if (loss > target)
    return "over_target";
  return "within_target";
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

double waste_robust_discharge_t(double *nets, size_t n) {
  double sum = 0;
  for (size_t i = 0; i < n; i++)
    sum += nets[i];
  if (n < WASTE_ROBUST_MIN_TICKETS)
    return sum;
  qsort(nets, n, sizeof(*nets), cmp_double);
  double median = n % 2 ? nets[n / 2] : (nets[n / 2 - 1] + nets[n / 2]) / 2;
  return median * (double)n;
}

int waste_allowance_level(double allowance_used, double warn_share, double alarm_share) {
  if (!isfinite(allowance_used))
    return 0;
  if (allowance_used >= alarm_share)
    return 2;
  if (allowance_used >= warn_share)
    return 1;
  return 0;
}

/* ---- materials */
double material_loss_rate(double delivered_t, double returned_t, double design_t) {
  if (!(design_t > 0))
    return NAN;
  return (delivered_t - returned_t - design_t) / design_t;
}

double material_green_share(double green_t, double delivered_t) {
  return delivered_t > TONNE_EPS ? green_t / delivered_t : NAN;
}
