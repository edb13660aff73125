/* The waste and material ledger in the daemon (waste.h).
 *
 * Tickets reach the ledger through core (gw_ticket_submit), whose commits
 * come back to the loop by core's posts; every change to the ledger reaches
 * this room through core's ledger listener, which asks for an evaluation.
 *
 * Figures and alarms: waste_summary_compute() reads the ledger's sums,
 * the progress history and the bill of quantities on the caller's reader
 * connection and applies the arithmetic of waste.c. The alarms
 * (waste.allowance at 80% and 100% of the allowance, waste.projection when
 * the projection to completion exceeds it) are evaluated on a libuv worker
 * with its own reader, after every change and every WASTE_TICK_MS, and
 * reported to the alarm model on the loop. */
#define LOG_MODULE "waste"

#include "gateway/rules/rules.h"
#include "gateway/waste/waste.h"
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define WASTE_FIRST_MS 2000 /* first evaluation after start */

struct waste_gw {
  gw_t *gw;
  uv_timer_t timer;
  uv_work_t work;
  bool started, stopping, busy, dirty;
  stor_reader_t *reader; /* the worker's */
  int err;               /* worker's result */
  waste_summary_t sum;   /* worker's output, read on the loop after it */
};

static void evaluate_soon(struct waste_gw *wg);

/* ---- the figures */
#define WINDOW_TICKETS_MAX 20000 /* tickets of the projection's window listed one by one */

struct window_tickets {
  double *nets; /* t, discharged tickets only */
  size_t n, cap;
};

static int on_window_ticket(void *arg, const stor_ticket_t *t) {
  struct window_tickets *w = arg;
  if (strcmp(t->type, "waste") != 0)
    return 0;
  waste_totals_t one;
  waste_totals_init(&one);
  waste_totals_add(&one, proto_waste_category_from_name(t->category),
                   t->kind[0] ? proto_waste_kind_from_name(t->kind) : -1,
                   proto_waste_dest_from_name(t->dest), (double)t->net_kg / 1000.0);
  if (one.discharged_t != 0 && w->n < w->cap)
    w->nets[w->n++] = one.discharged_t;
  return w->n == w->cap;
}
struct sum_ctx {
  const sg_config_t *cfg;
  waste_summary_t *s;
  double discharged; /* window pass: discharged only */
  bool window_pass;
};

static waste_material_t *material_slot(waste_summary_t *s, const char *name) {
  for (size_t i = 0; i < s->n_mat; i++)
    if (strcmp(s->mat[i].material, name) == 0)
      return &s->mat[i];
  if (s->n_mat == WASTE_MATERIALS_MAX)
    return NULL;
  waste_material_t *m = &s->mat[s->n_mat++];
  memset(m, 0, sizeof(*m));
  snprintf(m->material, sizeof(m->material), "%s", name);
  m->design_t = NAN;
  return m;
}

static int on_sum(void *arg, const char *type, const char *category, const char *kind,
                  const char *dest, const char *material, bool green, int64_t net_kg,
                  int64_t entries) {
  struct sum_ctx *c = arg;
  waste_summary_t *s = c->s;
  double t = (double)net_kg / 1000.0;
  if (c->window_pass) {
    if (strcmp(type, "waste") != 0)
      return 0;
    waste_totals_t w;
    waste_totals_init(&w);
    waste_totals_add(&w, proto_waste_category_from_name(category),
                     *kind ? proto_waste_kind_from_name(kind) : -1,
                     proto_waste_dest_from_name(dest), t);
    c->discharged += w.discharged_t;
    return 0;
  }
  s->entries += entries;
  if (strcmp(type, "waste") == 0) {
    waste_totals_add(&s->w, proto_waste_category_from_name(category),
                     *kind ? proto_waste_kind_from_name(kind) : -1,
                     proto_waste_dest_from_name(dest), t);
    return 0;
  }
  waste_material_t *m = material_slot(s, material);
  if (!m)
    return 0;
  if (strcmp(type, "delivery") == 0) {
    m->delivered_t += t;
    s->delivered_t += t;
    if (green) {
      m->green_t += t;
      s->green_t += t;
    }
  } else if (strcmp(type, "return") == 0) {
    m->returned_t += t;
  }
  return 0;
}

struct prog_ctx {
  double window_start;
  double first_t, first_v; /* the oldest value */
  double then_t, then_v;   /* the newest at or before the window start */
  double last_t, last_v;   /* the newest */
  int n;
};

static int on_progress(void *arg, double t, double v) {
  struct prog_ctx *p = arg;
  if (p->n++ == 0) {
    p->first_t = t;
    p->first_v = v;
  }
  if (t <= p->window_start) {
    p->then_t = t;
    p->then_v = v;
  }
  p->last_t = t;
  p->last_v = v;
  return 0;
}

static int on_boq(void *arg, const stor_boq_item_t *it, double imported) {
  waste_summary_t *s = arg;
  waste_material_t *m = material_slot(s, it->material);
  if (m) {
    m->design_t = it->net_t;
    snprintf(m->description, sizeof(m->description), "%s", it->description);
  }
  s->boq_imported = imported;
  return 0;
}

/* The 2020 baseline of a material id, as a share; NAN when none is set. */
static double baseline_of(const sg_config_t *cfg, const char *m) {
  if (strcmp(m, "rebar") == 0)
    return cfg->waste_loss_rebar / 100.0;
  if (strcmp(m, "concrete") == 0)
    return cfg->waste_loss_concrete / 100.0;
  if (strcmp(m, "blocks") == 0)
    return cfg->waste_loss_blocks / 100.0;
  if (strcmp(m, "formwork_timber") == 0)
    return cfg->waste_loss_timber / 100.0;
  return NAN;
}

int waste_summary_compute(const sg_config_t *cfg, stor_reader_t *r, double now,
                          waste_summary_t *s) {
  memset(s, 0, sizeof(*s));
  s->now = now;
  s->site = (waste_site_t){cfg->area_cast_m2, cfg->area_prefab_m2, cfg->waste_limit_cast,
                           cfg->waste_limit_prefab};
  waste_totals_init(&s->w);
  struct sum_ctx c = {.cfg = cfg, .s = s};
  int rc = stor_ledger_sums(r, 0, INT64_MAX, on_sum, &c);
  if (rc != 0)
    return rc;
  s->allowance_t = waste_allowance_t(&s->site);
  s->limit_per_10k = waste_limit_per_10k(&s->site);
  s->intensity = waste_intensity(&s->site, s->w.discharged_t);
  s->allowance_used = s->allowance_t > 0 ? s->w.discharged_t / s->allowance_t : NAN;
  s->utilisation = waste_utilisation(&s->w);

  /* progress and the window: the value in force at the window's start,
   * or the first one stored when the window reaches back before it */
  struct prog_ctx p = {.window_start = now - cfg->waste_window_days * 86400.0};
  if ((rc = stor_progress_list(r, on_progress, &p)) != 0)
    return rc;
  if (p.n == 0) {
    s->progress = cfg->progress;
    s->window_start = p.window_start;
    s->window_gain = 0;
  } else {
    s->progress = p.last_v;
    s->progress_t = p.last_t;
    bool before = p.then_t > 0;
    s->window_start = before ? p.window_start : p.first_t;
    s->window_gain = p.last_v - (before ? p.then_v : p.first_v);
  }
  struct sum_ctx wc = {.cfg = cfg, .s = s, .window_pass = true};
  int64_t ws = (int64_t)floor(s->window_start);
  if ((rc = stor_ledger_sums(r, ws, INT64_MAX, on_sum, &wc)) != 0)
    return rc;
  s->window_discharged_t = wc.discharged;
  /* The rate robust to an outlier: the window's tickets one by one
   * (waste_robust_discharge_t()); the plain sum stays when they cannot be
   * listed (more than the cap, or a read error: it was read just above). */
  struct window_tickets wt = {.cap = WINDOW_TICKETS_MAX};
  wt.nets = malloc(wt.cap * sizeof(*wt.nets));
  if (wt.nets && stor_ticket_list(r, ws, INT64_MAX, wt.cap, on_window_ticket, &wt) == 0 &&
      wt.n < wt.cap) {
    s->window_sum_t = s->window_discharged_t;
    s->window_tickets = (long)wt.n;
    s->window_discharged_t = waste_robust_discharge_t(wt.nets, wt.n);
  }
  free(wt.nets);
  waste_projection_in_t in = {s->w.discharged_t, s->progress, s->window_discharged_t,
                              s->window_gain, cfg->waste_min_gain};
  s->projected_t = waste_projection_t(&in, &s->used_window);

  /* materials */
  if ((rc = stor_boq_list(r, on_boq, s)) != 0)
    return rc;
  for (size_t i = 0; i < s->n_mat; i++) {
    waste_material_t *m = &s->mat[i];
    m->loss_rate = material_loss_rate(m->delivered_t, m->returned_t, m->design_t);
    m->design_to_date_t = m->design_t * (s->progress < 1 ? s->progress : 1);
    m->loss_to_date = material_loss_rate(m->delivered_t, m->returned_t, m->design_to_date_t);
    m->baseline = baseline_of(cfg, m->material);
    m->target = m->baseline * cfg->waste_loss_target_factor;
  }
  s->green_share = material_green_share(s->green_t, s->delivered_t);
  return 0;
}

/* ---- JSON */

/* Tonnes to the kilogram, so sums of signed rows print clean; NAN is null. */
static json_t *jt(double v) {
  return isfinite(v) ? json_real(round(v * 1000.0) / 1000.0) : json_null();
}
static json_t *jshare(double v) {
  return isfinite(v) ? json_real(round(v * 1e6) / 1e6) : json_null();
}

json_t *waste_summary_json(const sg_config_t *cfg, const waste_summary_t *s) {
  const waste_totals_t *w = &s->w;
  json_t *by_cat = json_object();
  for (int c = 0; c < PROTO_CAT_COUNT; c++) {
    json_t *o = json_object();
    double total = 0;
    for (int d = 0; d < PROTO_DEST_COUNT; d++) {
      char key[32];
      snprintf(key, sizeof(key), "%s_t", proto_waste_dest_name(d));
      json_object_set_new(o, key, jt(w->by_cat_dest[c][d]));
      total += w->by_cat_dest[c][d];
    }
    json_object_set_new(o, "total_t", jt(total));
    json_object_set_new(o, "excluded", json_boolean(proto_waste_category_excluded(c)));
    json_object_set_new(by_cat, proto_waste_category_name(c), o);
  }
  json_t *by_kind = json_object();
  for (int k = 0; k < PROTO_KIND_COUNT; k++) {
    if (k == PROTO_KIND_HAZARDOUS)
      continue; /* reported apart, not construction waste */
    json_object_set_new(by_kind, proto_waste_kind_name(k),
                        json_pack("{s:o,s:o,s:o}", "generated_t", jt(w->kind_generated[k]),
                                  "utilised_t", jt(w->kind_utilised[k]), "utilisation_rate",
                                  jshare(waste_kind_utilisation(w, k))));
  }
  json_t *proj = json_pack(
      "{s:o,s:o,s:s,s:i,s:o,s:o,s:o,s:s,s:I,s:o}", "progress", jshare(s->progress), "progress_set",
      s->progress_t > 0 ? json_real(s->progress_t) : json_null(), "method",
      !isfinite(s->projected_t) ? "none"
      : s->used_window          ? "recent_rate"
                                : "average_to_date",
      "window_days", cfg->waste_window_days, "window_start", json_real(floor(s->window_start)),
      "window_discharged_t", jt(s->window_discharged_t), "window_progress_gain",
      jshare(s->window_gain), "window_basis",
      s->window_tickets >= WASTE_ROBUST_MIN_TICKETS ? "median_ticket" : "sum", "window_tickets",
      (json_int_t)s->window_tickets, "window_sum_t", jt(s->window_sum_t));
  return json_pack(
      "{s:o,s:o,s:o,s:o,s:o,s:o,s:o,s:o,s:o,s:o,s:o,s:o,s:o,s:o,s:o,s:o,s:o,s:o,s:o,s:o,"
      "s:o,s:o,s:o,s:o,s:I,s:o,s:o,s:o,s:f}",
      "discharged_t", jt(w->discharged_t), "generated_t", jt(w->generated_t), "reused_t",
      jt(w->reused_t), "recycled_t", jt(w->recycled_t), "backfill_t", jt(w->backfill_t),
      "disposed_t", jt(w->disposed_t), "excluded_t", jt(w->excluded_t), "spoil_t", jt(w->spoil_t),
      "mud_t", jt(w->mud_t), "hazardous_t", jt(w->hazardous_t), "allowance_t", jt(s->allowance_t),
      "intensity_t_per_10k_m2", jt(s->intensity), "limit_t_per_10k_m2", jt(s->limit_per_10k),
      "allowance_used", jshare(s->allowance_used), "projected_t", jt(s->projected_t),
      "utilisation_rate", jshare(s->utilisation), "utilisation_target",
      jshare(cfg->waste_util_target), "area_cast_in_place_m2", json_real(cfg->area_cast_m2),
      "area_prefab_m2", json_real(cfg->area_prefab_m2), "limit_cast_t_per_10k_m2",
      json_real(cfg->waste_limit_cast), "limit_prefab_t_per_10k_m2",
      json_real(cfg->waste_limit_prefab), "alarm_warn_share", jshare(cfg->waste_warn_share),
      "alarm_share", jshare(cfg->waste_alarm_share), "projection", proj, "entries",
      (json_int_t)s->entries, "by_category", by_cat, "by_kind", by_kind, "site",
      json_pack("{s:s,s:s}", "id", cfg->site_id, "name", cfg->site_name), "now", s->now);
}

static const char *loss_status(const waste_material_t *m) {
  double loss = isfinite(m->loss_to_date) ? m->loss_to_date : m->loss_rate;
  return material_loss_status(loss, m->baseline, m->target);
}

json_t *waste_materials_json(const sg_config_t *cfg, const waste_summary_t *s) {
  json_t *arr = json_array();
  for (size_t i = 0; i < s->n_mat; i++) {
    const waste_material_t *m = &s->mat[i];
    json_array_append_new(
        arr, json_pack("{s:s,s:s,s:o,s:o,s:o,s:o,s:o,s:o,s:o,s:o,s:o,s:s,s:o,s:o}", "material",
                       m->material, "description", m->description, "delivered_t",
                       jt(m->delivered_t), "returned_t", jt(m->returned_t), "design_t",
                       jt(m->design_t), "loss_rate", jshare(m->loss_rate), "design_to_date_t",
                       jt(m->design_to_date_t), "loss_rate_to_date", jshare(m->loss_to_date),
                       "baseline_rate", jshare(m->baseline), "target_rate", jshare(m->target),
                       "green_t", jt(m->green_t), "status", loss_status(m), "green_share",
                       jshare(material_green_share(m->green_t, m->delivered_t)), "consumed_t",
                       jt(m->delivered_t - m->returned_t)));
  }
  return json_pack("{s:o,s:o,s:o,s:o,s:o,s:f,s:o}", "materials", arr, "progress",
                   jshare(s->progress), "delivered_t", jt(s->delivered_t), "green_t",
                   jt(s->green_t), "green_share", jshare(s->green_share), "loss_target_factor",
                   cfg->waste_loss_target_factor, "boq_imported",
                   s->boq_imported > 0 ? json_real(s->boq_imported) : json_null());
}

static void hex32(const uint8_t h[32], char out[65]) {
  static const char digits[] = "0123456789abcdef";
  for (int i = 0; i < 32; i++) {
    out[2 * i] = digits[h[i] >> 4];
    out[2 * i + 1] = digits[h[i] & 15];
  }
  out[64] = '\0';
}

json_t *waste_ticket_json(const stor_ticket_t *t) {
  char hash[65];
  hex32(t->hash, hash);
  int cat = proto_waste_category_from_name(t->category);
  int kind = t->kind[0] ? proto_waste_kind_from_name(t->kind) : -1;
  int dest = proto_waste_dest_from_name(t->dest);
  bool waste = strcmp(t->type, "waste") == 0;
  bool counted =
      waste && cat >= 0 && !proto_waste_category_excluded(cat) && kind != PROTO_KIND_HAZARDOUS;
  bool discharged = counted && proto_waste_dest_leaves_site(dest);
#define STR_OR_NULL(s) ((s)[0] ? json_string(s) : json_null())
  return json_pack(
      "{s:I,s:I,s:f,s:s,s:s,s:o,s:o,s:s,s:s,s:o,s:o,s:I,s:f,s:o,s:o,s:o,s:s,s:s,s:o,s:b,s:o,"
      "s:b,s:s,s:b,s:b,s:s}",
      "id", (json_int_t)t->id, "t", (json_int_t)t->t, "received", (double)t->received_ms / 1000.0,
      "source", t->source, "type", t->type, "scale", STR_OR_NULL(t->scale), "no",
      t->no > 0 ? json_integer((json_int_t)t->no) : json_null(), "plate", t->plate, "dir", t->dir,
      "gross_kg", t->weighed ? json_integer((json_int_t)t->gross_kg) : json_null(), "tare_kg",
      t->weighed ? json_integer((json_int_t)t->tare_kg) : json_null(), "net_kg",
      (json_int_t)t->net_kg, "net_t", (double)t->net_kg / 1000.0, "category",
      STR_OR_NULL(t->category), "kind", STR_OR_NULL(t->kind), "dest", STR_OR_NULL(t->dest),
      "dest_name", t->dest_name, "carrier", t->carrier, "material", STR_OR_NULL(t->material),
      "green_cert", t->green_cert, "corrects",
      t->corrects > 0 ? json_integer((json_int_t)t->corrects) : json_null(), "reversal",
      t->reversal, "note", t->note, "counted", counted, "discharged", discharged, "hash", hash);
#undef STR_OR_NULL
}

/* ---- alarms */
static void report_alarms(struct waste_gw *wg) {
  const sg_config_t *cfg = wg->gw->cfg;
  const waste_summary_t *s = &wg->sum;
  char msg[256];
  if (!(s->allowance_t > 0))
    return; /* no floor area configured: no verdict */
  int level =
      waste_allowance_level(s->allowance_used, cfg->waste_warn_share, cfg->waste_alarm_share);
  snprintf(msg, sizeof(msg),
           "construction waste discharged %.1f t is %.1f%% of the site's allowance of %.1f t "
           "(%.1f t per 10,000 m2)",
           s->w.discharged_t, 100.0 * s->allowance_used, s->allowance_t, s->limit_per_10k);
  alarm_cond_t c = {.rule = "waste.allowance",
                    .source = cfg->site_id,
                    .level = level,
                    .figure = s->w.discharged_t,
                    .limit =
                        (level == ALARM_ALARM ? cfg->waste_alarm_share : cfg->waste_warn_share) *
                        s->allowance_t,
                    .unit = "t",
                    .message = msg,
                    .t = s->now,
                    .hold_s = -1}; /* discharge only falls by correction: clear at once */
  alarm_update(wg->gw, &c);
  if (!isfinite(s->projected_t))
    return;
  snprintf(msg, sizeof(msg),
           "projected to completion: %.1f t of construction waste (%.0f%% done, %s), over the "
           "allowance of %.1f t",
           s->projected_t, 100.0 * s->progress,
           s->used_window ? "at the recent rate" : "at the average rate to date", s->allowance_t);
  alarm_cond_t p = {.rule = "waste.projection",
                    .source = cfg->site_id,
                    .level = s->projected_t > s->allowance_t ? ALARM_WARNING : ALARM_NORMAL,
                    .figure = s->projected_t,
                    .limit = s->allowance_t,
                    .unit = "t",
                    .message = s->projected_t > s->allowance_t ? msg : NULL,
                    .t = s->now,
                    .clear_margin = 0.01 * s->allowance_t};
  alarm_update(wg->gw, &p);
}

static void work_on_run(uv_work_t *w) {
  struct waste_gw *wg = w->data;
  wg->err = 0;
  if (!wg->reader && (wg->err = stor_reader_open(wg->gw->cfg->db_path, &wg->reader)) != 0)
    return;
  wg->err = waste_summary_compute(wg->gw->cfg, wg->reader, sg_now(), &wg->sum);
}

static void work_on_done(uv_work_t *w, int status) {
  struct waste_gw *wg = w->data;
  wg->busy = false;
  if (wg->stopping || status != 0)
    return;
  if (wg->err != 0)
    log_warn("waste figures not evaluated: %s", strerror(-wg->err));
  else
    report_alarms(wg);
  if (wg->dirty)
    evaluate_soon(wg);
}

static void evaluate_soon(struct waste_gw *wg) {
  if (wg->stopping)
    return;
  if (wg->busy) {
    wg->dirty = true; /* once more when this one is done */
    return;
  }
  wg->dirty = false;
  wg->work.data = wg;
  if (uv_queue_work(wg->gw->loop, &wg->work, work_on_run, work_on_done) == 0)
    wg->busy = true;
}

static void timer_on_tick(uv_timer_t *t) { evaluate_soon(t->data); }

/* Core's ledger listener: a ticket committed, or the API changed the ledger. */
static void on_ledger_changed(void *arg) {
  struct waste_gw *wg = arg;
  if (!wg->stopping)
    evaluate_soon(wg);
}

void waste_gw_changed(gw_t *gw, void *arg) {
  (void)arg;
  if (gw->waste)
    evaluate_soon(gw->waste);
}

/* ---- life cycle */
int waste_gw_open(gw_t *gw) {
  const sg_config_t *cfg = gw->cfg;
  bool seeded = false;
  int rc = stor_progress_seed(gw->db, sg_now(), cfg->progress, &seeded);
  if (rc != 0) {
    log_err("cannot store the initial progress: %s", strerror(-rc));
    return rc;
  }
  if (seeded)
    log_info("construction progress starts at %.0f%% ([site] progress); later changes: sitectl "
             "site progress",
             100.0 * cfg->progress);
  struct waste_gw *wg = calloc(1, sizeof(*wg));
  if (!wg)
    return -ENOMEM;
  wg->gw = gw;
  if (gw_on_ledger(gw, on_ledger_changed, wg) != 0) {
    free(wg);
    return -ENOMEM;
  }
  uv_timer_init(gw->loop, &wg->timer);
  wg->timer.data = wg;
  uv_timer_start(&wg->timer, timer_on_tick, WASTE_FIRST_MS, WASTE_TICK_MS);
  wg->started = true;
  gw->waste = wg;
  return 0;
}

void waste_gw_stop(gw_t *gw) {
  struct waste_gw *wg = gw ? gw->waste : NULL;
  if (!wg || wg->stopping)
    return;
  wg->stopping = true;
  uv_close((uv_handle_t *)&wg->timer, NULL);
}

void waste_gw_free(gw_t *gw) {
  struct waste_gw *wg = gw ? gw->waste : NULL;
  if (!wg)
    return;
  gw->waste = NULL;
  stor_reader_close(wg->reader);
  free(wg);
}
