/* The monthly site report (GET /api/report?month=YYYY-MM[&format=json|html|csv&table=NAME]):
 * what a supervisor checks once a month, in Chinese, from the same figures
 * the rules and the other endpoints use.
 *
 * The report is built once as JSON: for each of its parts (noise, dust,
 * alarms, waste, materials, energy and carbon, machinery) a few summary
 * sentences and tables of plain rows, in Chinese or, when asked, English:
 * every sentence, title and word comes from the catalogue
 * (gateway/web/messages.json, keys "rep.*" and the dashboard's names), so
 * the two languages say the same figures. The printable HTML page (the one
 * `sitectl report --out` saves and the dashboard frames) and the CSV of any
 * one table are renderings of that JSON, so the three never disagree.
 *
 * Noise and dust windows are judged day by day from the stored samples with
 * the rule engine's pure functions (a month of 1-s noise samples at once
 * would be 40 MB); the month is the site's (the daemon runs in its zone)
 * and ends now when it is the current one. */
#define LOG_MODULE "http"

#include "common/msgcat.h"
#include "gateway/api/api.h"
#include "gateway/equipment/equipment.h"
#include "gateway/rules/rules.h"
#include "gateway/waste/waste.h"
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define REPORT_ROWS_MAX 2000 /* rows of a list (exceeded windows, alarms) */
#define DAY_S 86400.0

typedef struct report {
  gw_t *gw;
  stor_reader_t *rd;
  double since, until; /* the month, until cut at now */
  json_t *parts;       /* [{name, title, lines: [...]}] */
  json_t *tables;      /* [{name, part, title, columns: [...], rows: [[...]]}] */
  msgcat_t *cat;       /* the dashboard's catalogue (messages.json), or NULL */
  const char *lang;    /* "zh" or "en" */
  char ring[24][64];   /* figures formatted for one sentence (F()) */
  unsigned next;
} report_t;

/* The catalogue's text of `key`, and the name of `id` in a family. */
static const char *T(const report_t *r, const char *key) {
  return msgcat_get(r->cat, r->lang, key);
}

static const char *NM(const report_t *r, const char *prefix, const char *id) {
  return msgcat_name(r->cat, r->lang, prefix, id);
}

/* A figure formatted into the report's ring of buffers: valid until 24
 * more have been made, enough for any one sentence. */
static const char *F(report_t *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static const char *F(report_t *r, const char *fmt, ...) {
  char *b = r->ring[r->next++ % (sizeof(r->ring) / sizeof(r->ring[0]))];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(b, sizeof(r->ring[0]), fmt, ap);
  va_end(ap);
  return b;
}

static json_t *num(double v, int digits) {
  if (!isfinite(v))
    return json_null();
  double f = pow(10, digits);
  return json_real(round(v * f) / f);
}

static json_t *ltime(double t) {
  if (t <= 0)
    return json_null();
  char buf[32];
  time_t s = (time_t)t;
  struct tm tm;
  localtime_r(&s, &tm);
  strftime(buf, sizeof(buf), "%Y-%m-%d %H:%M", &tm);
  return json_string(buf);
}

/* A part, titled by the catalogue's "rep.<name>.title". */
static json_t *part(report_t *r, const char *name) {
  char key[64];
  snprintf(key, sizeof(key), "rep.%s.title", name);
  json_t *lines = json_array();
  json_array_append_new(
      r->parts, json_pack("{s:s,s:s,s:o}", "name", name, "title", T(r, key), "lines", lines));
  return lines;
}

/* A sentence: the catalogue's text of `key` with its placeholders filled
 * from (name, value) pairs ended by NULL. */
static void say(report_t *r, json_t *lines, const char *key, ...) __attribute__((sentinel));
static void say(report_t *r, json_t *lines, const char *key, ...) {
  const char *names[16], *values[16];
  size_t n = 0;
  va_list ap;
  va_start(ap, key);
  for (const char *name; n < 16 && (name = va_arg(ap, const char *)) != NULL; n++) {
    names[n] = name;
    values[n] = va_arg(ap, const char *);
  }
  va_end(ap);
  char buf[1024];
  msgcat_fill(T(r, key), names, values, n, buf, sizeof(buf));
  json_array_append_new(lines, json_string(buf));
}

/* A table titled by "rep.<name>"; its columns are keys (the CSV's header)
 * titled by "rep.col.<key>", or "key|catalogue key" where a column's title
 * differs from the shared one. NULL-terminated. Returns its rows array. */
static json_t *table(report_t *r, const char *part_name, const char *name,
                     const char *const *cols) {
  json_t *c = json_array(), *rows = json_array();
  char key[96];
  for (; *cols; cols++) {
    const char *bar = strchr(*cols, '|');
    size_t klen = bar ? (size_t)(bar - *cols) : strlen(*cols);
    if (bar)
      snprintf(key, sizeof(key), "%s", bar + 1);
    else
      snprintf(key, sizeof(key), "rep.col.%s", *cols);
    json_array_append_new(c, json_pack("{s:s%,s:s}", "key", *cols, klen, "title", T(r, key)));
  }
  snprintf(key, sizeof(key), "rep.%s", name);
  json_array_append_new(r->tables,
                        json_pack("{s:s,s:s,s:s,s:o,s:o}", "name", name, "part", part_name, "title",
                                  T(r, key), "columns", c, "rows", rows));
  return rows;
}

/* ---- noise: every clock-aligned window of the month, day by day */
typedef struct noise_acc {
  long windows, complete, compliant, exceeded, incomplete, lmax_over;
  double laeq_max;
} noise_acc_t;

static int report_noise(report_t *r) {
  const sg_config_t *cfg = r->gw->cfg;
  noise_params_t p;
  noise_params_from_config(cfg, &p);
  static const char *const pcols[] = {"device",   "period",     "limit|rep.col.laeq_limit",
                                      "windows",  "complete",   "compliant",
                                      "exceeded", "incomplete", "rate",
                                      "laeq_max", "lmax_over",  NULL};
  static const char *const wcols[] = {"device", "start", "end",        "period",   "laeq",
                                      "limit",  "lmax",  "lmax_limit", "coverage", NULL};
  json_t *lines = part(r, "noise");
  json_t *prow = table(r, "noise", "noise_periods", pcols);
  json_t *wrow = table(r, "noise", "noise_exceeded", wcols);
  say(r, lines, "rep.noise.rule", "day_start", F(r, "%02.0f:00", p.day_start_h), "night_start",
      F(r, "%02.0f:00", p.night_start_h), "day", F(r, "%.0f", p.day_limit), "night",
      F(r, "%.0f", p.night_limit), "margin", F(r, "%.0f", p.lmax_margin), "share",
      F(r, "%.0f", p.complete_share * 100), NULL);
  long all_complete = 0, all_compliant = 0, all_exceeded = 0, meters = 0;
  int rc = 0;
  for (size_t i = 0; i < cfg->n_devices && rc == 0; i++) {
    const sg_device_t *d = &cfg->devices[i];
    if (d->type != SG_DEV_NOISE)
      continue;
    meters++;
    noise_acc_t acc[2];
    memset(acc, 0, sizeof(acc));
    acc[0].laeq_max = acc[1].laeq_max = NAN;
    for (double day = r->since; day < r->until && rc == 0;) {
      double next = env_local_midnight(day + DAY_S + 3600); /* DST-proof */
      double day_end = fmin(r->until, next);
      env_sample_t *la = NULL, *mx = NULL;
      size_t n_la = 0, n_mx = 0;
      if ((rc = env_load(r->rd, d->id, PROTO_Q_LA, day, day_end, &la, &n_la)) == 0)
        rc = env_load(r->rd, d->id, PROTO_Q_LAMAX, day, day_end, &mx, &n_mx);
      for (double t = day, end; rc == 0 && n_la && t < day_end; t = end) {
        double start = noise_aligned_start(&p, t, &end);
        if (end > day_end)
          break;
        noise_window_t w;
        noise_window(&p, la, n_la, mx, n_mx, start, end, &w);
        if (w.n == 0)
          continue;
        noise_acc_t *a = &acc[w.period];
        a->windows++;
        a->complete += w.complete;
        a->compliant += w.verdict == 0;
        a->exceeded += w.verdict == 1;
        a->incomplete += w.verdict == -1;
        a->lmax_over += w.lmax_over;
        if (isfinite(w.laeq) && !(w.laeq <= a->laeq_max))
          a->laeq_max = w.laeq;
        if (w.verdict == 1 && json_array_size(wrow) < REPORT_ROWS_MAX)
          json_array_append_new(
              wrow, json_pack("[s,o,o,s,o,o,o,o,o]", d->id, ltime(w.start), ltime(w.end),
                              T(r, w.period == NOISE_NIGHT ? "period_night" : "period_day"),
                              num(w.laeq, 1), num(w.limit, 0), num(w.lmax, 1), num(w.lmax_limit, 0),
                              num(w.coverage * 100, 0)));
      }
      free(la);
      free(mx);
      day = next;
    }
    for (int per = 0; per < 2; per++) {
      noise_acc_t *a = &acc[per];
      double lim = per == NOISE_NIGHT ? p.night_limit : p.day_limit;
      if (p.indoor)
        lim -= NOISE_INDOOR_DB;
      json_array_append_new(
          prow, json_pack("[s,s,o,I,I,I,I,I,o,o,o]", d->id,
                          T(r, per == NOISE_NIGHT ? "period_night" : "period_day"), num(lim, 0),
                          (json_int_t)a->windows, (json_int_t)a->complete, (json_int_t)a->compliant,
                          (json_int_t)a->exceeded, (json_int_t)a->incomplete,
                          a->complete ? num(100.0 * a->compliant / a->complete, 1) : json_null(),
                          num(a->laeq_max, 1),
                          per == NOISE_NIGHT ? json_integer(a->lmax_over) : json_null()));
      all_complete += a->complete;
      all_compliant += a->compliant;
      all_exceeded += a->exceeded;
    }
  }
  if (rc == 0) {
    if (meters == 0)
      say(r, lines, "rep.noise.no_meters", NULL);
    else if (all_complete == 0) /* no share of nothing: "0 compliant (0.0%)" misleads */
      say(r, lines, "rep.noise.no_windows", "meters", F(r, "%ld", meters), NULL);
    else
      say(r, lines, "rep.noise.summary", "meters", F(r, "%ld", meters), "complete",
          F(r, "%ld", all_complete), "compliant", F(r, "%ld", all_compliant), "share",
          F(r, "%.1f", 100.0 * all_compliant / all_complete), "exceeded", F(r, "%ld", all_exceeded),
          NULL);
  }
  return rc;
}

/* ---- dust: hourly windows, episodes of consecutive windows at warning
 * or above */
typedef struct episode {
  double start, end, peak;
  int level;
  long windows;
} episode_t;

static void episode_flush(const report_t *r, json_t *rows, const char *dev, const char *q,
                          episode_t *e) {
  if (e->windows && json_array_size(rows) < REPORT_ROWS_MAX)
    json_array_append_new(rows, json_pack("[s,s,o,o,o,o,s]", dev, q, ltime(e->start), ltime(e->end),
                                          num((e->end - e->start) / 3600, 1), num(e->peak, 1),
                                          T(r, e->level == 2 ? "level_alarm" : "level_warning")));
  memset(e, 0, sizeof(*e));
}

static int report_dust(report_t *r) {
  const sg_config_t *cfg = r->gw->cfg;
  dust_params_t p;
  dust_params_from_config(cfg, &p);
  static const char *const scols[] = {"device",
                                      "quantity",
                                      "windows|rep.col.hour_windows",
                                      "mean|rep.col.month_mean",
                                      "max|rep.col.hour_max",
                                      "warn|rep.col.warn_line",
                                      "alarm|rep.col.alarm_line",
                                      "warn_windows",
                                      "alarm_windows",
                                      "unreliable",
                                      NULL};
  static const char *const ecols[] = {
      "device", "quantity", "start", "end", "hours", "peak|rep.col.hour_max", "level", NULL};
  json_t *lines = part(r, "dust");
  json_t *srow = table(r, "dust", "dust_stations", scols);
  json_t *erow = table(r, "dust", "dust_episodes", ecols);
  double len = p.window_s[DUST_LONG];
  say(r, lines, "rep.dust.rule", "minutes", F(r, "%.0f", len / 60), "rh", F(r, "%.0f", p.rh_max),
      "warn", F(r, "%.0f", p.warn[DUST_PM10][DUST_LONG]), "alarm",
      F(r, "%.0f", p.alarm[DUST_PM10][DUST_LONG]), NULL);
  long episodes = 0, alarm_windows = 0;
  int rc = 0;
  for (size_t i = 0; i < cfg->n_devices && rc == 0; i++) {
    const sg_device_t *d = &cfg->devices[i];
    if (d->type != SG_DEV_DUST)
      continue;
    for (int q = 0; q < DUST_QUANTITIES && rc == 0; q++) {
      long windows = 0, nwarn = 0, nalarm = 0, unreliable = 0;
      double sum = 0, max = NAN;
      episode_t e = {0};
      for (double day = r->since; day < r->until && rc == 0;) {
        double next = env_local_midnight(day + DAY_S + 3600);
        double day_end = fmin(r->until, next);
        env_sample_t *v = NULL, *rh = NULL;
        size_t n = 0, n_rh = 0;
        if ((rc = env_load(r->rd, d->id, dust_proto_quantity(q), day, day_end, &v, &n)) == 0)
          rc = env_load(r->rd, d->id, PROTO_Q_RH, day, day_end, &rh, &n_rh);
        for (double t = day, end; rc == 0 && n && t < day_end; t = end) {
          double start = env_aligned_start(len, t, &end);
          if (end > day_end)
            break;
          dust_window_t w;
          dust_window(&p, q, DUST_LONG, v, n, rh, n_rh, d->interval_s, start, end, &w);
          unreliable += (long)w.unreliable;
          if (!isfinite(w.mean))
            continue;
          windows++;
          sum += w.mean;
          if (!(w.mean <= max))
            max = w.mean;
          nwarn += w.level >= 1;
          nalarm += w.level == 2;
          if (w.level >= 1) {
            if (e.windows && e.end != w.start)
              episode_flush(r, erow, d->id, NM(r, "q", dust_quantity_name(q)), &e), episodes++;
            if (!e.windows)
              e.start = w.start;
            e.end = w.end;
            e.windows++;
            e.peak = fmax(e.peak, w.mean);
            e.level = w.level > e.level ? w.level : e.level;
          } else if (e.windows) {
            episode_flush(r, erow, d->id, NM(r, "q", dust_quantity_name(q)), &e);
            episodes++;
          }
        }
        free(v);
        free(rh);
        day = next;
      }
      if (e.windows) {
        episode_flush(r, erow, d->id, NM(r, "q", dust_quantity_name(q)), &e);
        episodes++;
      }
      alarm_windows += nalarm;
      double wl = p.warn[q][DUST_LONG], al = p.alarm[q][DUST_LONG];
      json_array_append_new(srow, json_pack("[s,s,I,o,o,o,o,I,I,I]", d->id,
                                            NM(r, "q", dust_quantity_name(q)), (json_int_t)windows,
                                            windows ? num(sum / windows, 1) : json_null(),
                                            num(max, 1), wl > 0 ? num(wl, 0) : json_null(),
                                            al > 0 ? num(al, 0) : json_null(), (json_int_t)nwarn,
                                            (json_int_t)nalarm, (json_int_t)unreliable));
    }
  }
  if (rc == 0)
    say(r, lines, "rep.dust.summary", "episodes", F(r, "%ld", episodes), "windows",
        F(r, "%ld", alarm_windows), NULL);
  return rc;
}

/* ---- alarms raised or active in the month, and how they were handled */
static int on_alarm(void *arg, const stor_alarm_t *a) {
  report_t *r = arg;
  if (a->raised >= r->until || (a->cleared > 0 && a->cleared < r->since))
    return 0;
  json_t *rows = json_object_get(json_array_get(r->tables, json_array_size(r->tables) - 1), "rows");
  if (json_array_size(rows) >= REPORT_ROWS_MAX)
    return 0;
  double end = a->cleared > 0 ? a->cleared : r->until;
  /* Named and told from the stored parts through the catalogue; the
   * sentence uses the worst figure, as the column beside it. */
  char name[128], text[512];
  msgcat_alarm_t ma = {.rule = a->rule,
                       .source = a->source,
                       .unit = a->unit,
                       .figure = a->figure,
                       .limit = a->limit,
                       .peak = a->peak};
  msgcat_rule_name(r->cat, r->lang, a->rule, name, sizeof(name));
  msgcat_alarm_text(r->cat, r->lang, &ma, a->peak, text, sizeof(text));
  json_array_append_new(rows,
                        json_pack("[I,s,s,s,o,o,o,o,o,s,o,s,s]", (json_int_t)a->id, name, a->source,
                                  NM(r, "level", alarm_level_name(a->peak_level)), num(a->peak, 1),
                                  num(a->limit, 1), ltime(a->raised), ltime(a->cleared),
                                  num((end - a->raised) / 60, 0), a->acked > 0 ? a->acked_by : "",
                                  ltime(a->acked), a->note, text));
  return 0;
}

static int report_alarms(report_t *r) {
  static const char *const cols[] = {"id",      "rule",     "source",   "level|rep.col.peak_level",
                                     "peak",    "limit",    "raised",   "cleared",
                                     "minutes", "acked_by", "acked_at", "note",
                                     "message", NULL};
  json_t *lines = part(r, "alarms");
  json_t *rows = table(r, "alarms", "alarms", cols);
  int rc = stor_alarm_history(r->rd, r->since, false, REPORT_ROWS_MAX, on_alarm, r);
  if (rc != 0)
    return rc;
  long n = (long)json_array_size(rows), acked = 0, alarms = 0;
  size_t i;
  json_t *row;
  json_array_foreach(rows, i, row) {
    alarms += strcmp(json_string_value(json_array_get(row, 3)), T(r, "level_alarm")) == 0;
    acked += json_is_string(json_array_get(row, 10));
  }
  say(r, lines, "rep.alarms.summary", "n", F(r, "%ld", n), "alarms", F(r, "%ld", alarms), "acked",
      F(r, "%ld", acked), NULL);
  return 0;
}

/* ---- waste and materials of the month, and to date */
typedef struct ledger_acc {
  waste_totals_t w;
  json_t *deliveries; /* {material: [delivered_t, returned_t, green_t]} */
} ledger_acc_t;

static int ledger_sum(void *arg, const char *type, const char *category, const char *kind,
                      const char *dest, const char *material, bool green, int64_t net_kg,
                      int64_t entries) {
  ledger_acc_t *a = arg;
  (void)entries;
  double t = (double)net_kg / 1000.0;
  if (strcmp(type, "waste") == 0) {
    waste_totals_add(&a->w, proto_waste_category_from_name(category),
                     *kind ? proto_waste_kind_from_name(kind) : -1,
                     proto_waste_dest_from_name(dest), t);
  } else if (*material) {
    json_t *m = json_object_get(a->deliveries, material);
    if (!m) {
      m = json_pack("[f,f,f]", 0.0, 0.0, 0.0);
      json_object_set_new(a->deliveries, material, m);
    }
    int k = strcmp(type, "return") == 0 ? 1 : 0;
    json_array_set_new(m, (size_t)k, json_real(json_real_value(json_array_get(m, (size_t)k)) + t));
    if (green && k == 0)
      json_array_set_new(m, 2, json_real(json_real_value(json_array_get(m, 2)) + t));
  }
  return 0;
}

static int on_name(void *arg, const char *name, int64_t net_kg, int64_t entries) {
  if (net_kg != 0 || entries != 0)
    json_array_append_new(
        arg, json_pack("[s,o,I]", name, num((double)net_kg / 1000.0, 1), (json_int_t)entries));
  return 0;
}

static int report_waste(report_t *r) {
  static const char *const ccols[] = {"category", "reuse_onsite", "recycling", "backfill",
                                      "disposal", "total",        "counted",   NULL};
  static const char *const fcols[] = {"name|rep.col.facility", "t", "trips", NULL};
  static const char *const kcols[] = {"name|rep.col.carrier", "t", "trips", NULL};
  json_t *lines = part(r, "waste");
  json_t *crow = table(r, "waste", "waste_categories", ccols);
  json_t *frow = table(r, "waste", "waste_facilities", fcols);
  json_t *krow = table(r, "waste", "waste_carriers", kcols);
  ledger_acc_t a;
  waste_totals_init(&a.w);
  a.deliveries = json_object();
  int64_t s = (int64_t)r->since, u = (int64_t)ceil(r->until);
  int rc = stor_ledger_sums(r->rd, s, u, ledger_sum, &a);
  if (rc == 0)
    rc = stor_ledger_names(r->rd, "dest_name", s, u, on_name, frow);
  if (rc == 0)
    rc = stor_ledger_names(r->rd, "carrier", s, u, on_name, krow);
  waste_summary_t *sum = malloc(sizeof(*sum));
  if (rc == 0)
    rc = sum ? waste_summary_compute(r->gw->cfg, r->rd, sg_now(), sum) : -ENOMEM;
  if (rc != 0) {
    free(sum);
    json_decref(a.deliveries);
    return rc;
  }
  for (int k = 0; k < PROTO_CAT_COUNT; k++) {
    const char *name = proto_waste_category_name(k);
    json_t *row = json_pack("[s]", NM(r, "cat", name));
    double total = 0;
    for (int d = 0; d < PROTO_DEST_COUNT; d++) {
      json_array_append_new(row, num(a.w.by_cat_dest[k][d], 1));
      total += a.w.by_cat_dest[k][d];
    }
    json_array_append_new(row, num(total, 1));
    bool counted = strcmp(name, "spoil") != 0 && strcmp(name, "mud") != 0;
    json_array_append_new(row, json_string(T(r, counted ? "yes" : "no")));
    json_array_append_new(crow, row);
  }
  double util = waste_utilisation(&a.w);
  /* Tonnes to one decimal everywhere in the report (a weighbridge's 10 kg
   * is 0.01 t, below what a monthly account needs to show). */
  say(r, lines, "rep.waste.month", "generated", F(r, "%.1f", a.w.generated_t), "excluded",
      F(r, "%.1f", a.w.excluded_t), "discharged", F(r, "%.1f", a.w.discharged_t), "reused",
      F(r, "%.1f", a.w.reused_t), "recycled", F(r, "%.1f", a.w.recycled_t), "backfill",
      F(r, "%.1f", a.w.backfill_t), "disposed", F(r, "%.1f", a.w.disposed_t), "util",
      isfinite(util) ? F(r, "%.1f", util * 100) : "–", "target",
      F(r, "%.0f", r->gw->cfg->waste_util_target * 100), NULL);
  say(r, lines, "rep.waste.to_date", "discharged", F(r, "%.1f", sum->w.discharged_t), "allowance",
      F(r, "%.1f", sum->allowance_t), "cast", F(r, "%.0f", r->gw->cfg->waste_limit_cast), "prefab",
      F(r, "%.0f", r->gw->cfg->waste_limit_prefab), "used", F(r, "%.1f", sum->allowance_used * 100),
      "intensity", F(r, "%.1f", sum->intensity), "limit", F(r, "%.1f", sum->limit_per_10k),
      "progress", F(r, "%.0f", sum->progress * 100), "projected", F(r, "%.1f", sum->projected_t),
      NULL);
  free(sum);

  /* materials: the month's deliveries, and loss rates to date */
  static const char *const mcols[] = {
      "material", "delivered|rep.col.delivered_month", "returned", "green", "green_share", NULL};
  static const char *const lcols[] = {"material", "delivered|rep.col.delivered_to_date",
                                      "design",   "loss_rate",
                                      "target",   "baseline",
                                      "status",   NULL};
  json_t *mlines = part(r, "materials");
  json_t *mrow = table(r, "materials", "materials_month", mcols);
  json_t *lrow = table(r, "materials", "materials_loss", lcols);
  const char *mat;
  json_t *m;
  double delivered = 0, green = 0;
  json_object_foreach(a.deliveries, mat, m) {
    double dt = json_real_value(json_array_get(m, 0)), gt = json_real_value(json_array_get(m, 2));
    delivered += dt;
    green += gt;
    json_array_append_new(mrow, json_pack("[s,o,o,o,o]", NM(r, "mat", mat), num(dt, 1),
                                          num(json_real_value(json_array_get(m, 1)), 1), num(gt, 1),
                                          dt > 0 ? num(gt / dt * 100, 1) : json_null()));
  }
  json_decref(a.deliveries);
  if (delivered > 0)
    say(r, mlines, "rep.materials.month", "delivered", F(r, "%.1f", delivered), "green",
        F(r, "%.1f", green), "share", F(r, "%.1f", green / delivered * 100), NULL);
  else
    say(r, mlines, "rep.materials.none", NULL);
  waste_summary_t *s2 = malloc(sizeof(*s2));
  rc = s2 ? waste_summary_compute(r->gw->cfg, r->rd, sg_now(), s2) : -ENOMEM;
  if (rc == 0) {
    json_t *mj = waste_materials_json(r->gw->cfg, s2);
    size_t i;
    json_t *x;
    json_array_foreach(json_object_get(mj, "materials"), i, x) {
      json_t *rate = json_object_get(x, "loss_rate_to_date");
      if (json_is_null(rate) || !rate)
        rate = json_object_get(x, "loss_rate");
      json_array_append_new(
          lrow,
          json_pack("[s,o,o,o,o,o,s]",
                    NM(r, "mat", json_string_value(json_object_get(x, "material"))),
                    num(json_number_value(json_object_get(x, "delivered_t")), 1),
                    json_is_number(json_object_get(x, "design_t"))
                        ? num(json_number_value(json_object_get(x, "design_t")), 1)
                        : json_null(),
                    json_is_number(rate) ? num(json_number_value(rate) * 100, 2) : json_null(),
                    num(json_number_value(json_object_get(x, "target_rate")) * 100, 2),
                    num(json_number_value(json_object_get(x, "baseline_rate")) * 100, 2),
                    NM(r, "st", json_string_value(json_object_get(x, "status")))));
    }
    json_decref(mj);
  }
  free(s2);
  return rc;
}

/* ---- energy and carbon (equipment.c's figures, taken on the loop) */
static int report_energy(report_t *r) {
  static const char *const ucols[] = {"unit",   "group",    "kwh",   "fuel_l", "run_h",
                                      "idle_h", "idle_kwh", "t_co2", NULL};
  static const char *const dcols[] = {"date", "kwh", "fuel_l", "t_co2", NULL};
  json_t *lines = part(r, "energy");
  json_t *urow = table(r, "energy", "energy_units", ucols);
  json_t *drow = table(r, "energy", "carbon_days", dcols);
  /* whole local days: the current one is counted to now */
  double until = env_local_midnight(r->until - 1) + DAY_S;
  if (env_local_midnight(until) != until)
    until = env_local_midnight(until + 3 * 3600);
  json_t *e = equipment_energy_json(r->gw, r->since, until);
  json_t *c = equipment_carbon_json(r->gw, r->since, until);
  if (!e || !c) {
    json_decref(e);
    json_decref(c);
    return -ECANCELED;
  }
  size_t i;
  json_t *x;
  json_array_foreach(json_object_get(e, "units"), i, x) {
    json_t *t = json_object_get(x, "total");
    const char *g = json_string_value(json_object_get(x, "group"));
    json_array_append_new(
        urow, json_pack("[s,s,o,o,o,o,o,o]", json_string_value(json_object_get(x, "id")),
                        g && *g ? g : "-", num(json_number_value(json_object_get(t, "kwh")), 1),
                        num(json_number_value(json_object_get(t, "fuel_l")), 1),
                        num(json_number_value(json_object_get(t, "run_h")), 1),
                        num(json_number_value(json_object_get(t, "idle_h")), 1),
                        num(json_number_value(json_object_get(t, "idle_kwh")), 1),
                        num(json_number_value(json_object_get(t, "t_co2")), 3)));
  }
  json_array_foreach(json_object_get(c, "days"), i, x) {
    json_array_append_new(drow,
                          json_pack("[s,o,o,o]", json_string_value(json_object_get(x, "date")),
                                    num(json_number_value(json_object_get(x, "kwh")), 1),
                                    num(json_number_value(json_object_get(x, "fuel_l")), 1),
                                    num(json_number_value(json_object_get(x, "t_co2")), 3)));
  }
  json_t *per = json_object_get(c, "period"), *f = json_object_get(c, "factors");
  say(r, lines, "rep.energy.summary", "kwh",
      F(r, "%.1f", json_number_value(json_object_get(per, "kwh"))), "fuel",
      F(r, "%.1f", json_number_value(json_object_get(per, "fuel_l"))), "t_co2",
      F(r, "%.3f", json_number_value(json_object_get(per, "t_co2"))), "kg_m2",
      F(r, "%.4f", json_number_value(json_object_get(per, "kg_per_m2"))), "grid",
      F(r, "%.4f", json_number_value(json_object_get(f, "grid_t_per_mwh"))), "diesel",
      F(r, "%.2f", json_number_value(json_object_get(f, "diesel_kg_per_l"))), NULL);
  json_decref(e);
  json_decref(c);
  return 0;
}

/* ---- non-road mobile machinery: per machine over the month */
static int report_machinery(report_t *r) {
  static const char *const cols[] = {"code",  "type",     "stage",    "power_kw",
                                     "days",  "onsite_h", "engine_h", "fuel_l|rep.col.fuel_any",
                                     "t_co2", "nox_kg",   "pm_kg",    NULL};
  json_t *lines = part(r, "machinery");
  json_t *rows = table(r, "machinery", "machinery", cols);
  double until = env_local_midnight(r->until - 1) + DAY_S;
  if (env_local_midnight(until) != until)
    until = env_local_midnight(until + 3 * 3600);
  json_t *s = NULL;
  int rc = machinery_report_month(r->gw, r->rd, r->since, until, rows, &s);
  if (rc != 0)
    return rc;
  /* The stage "electric" is a word; the others are the standard's numerals. */
  size_t i;
  json_t *row;
  json_array_foreach(rows, i, row) {
    const char *st = json_string_value(json_array_get(row, 2));
    if (st)
      json_array_set_new(row, 2, json_string(NM(r, "stage", st)));
  }
  const char *min_stage = json_string_value(json_object_get(s, "min_stage"));
  say(r, lines, "rep.machinery.summary", "machines",
      F(r, "%d", (int)json_integer_value(json_object_get(s, "machines"))), "days",
      F(r, "%d", (int)json_integer_value(json_object_get(s, "machine_days"))), "onsite",
      F(r, "%.1f", json_number_value(json_object_get(s, "onsite_h"))), "engine",
      F(r, "%.1f", json_number_value(json_object_get(s, "engine_h"))), "fuel",
      F(r, "%.1f", json_number_value(json_object_get(s, "fuel_l"))), "t_co2",
      F(r, "%.3f", json_number_value(json_object_get(s, "t_co2"))), NULL);
  say(r, lines, "rep.machinery.factors", "nox",
      F(r, "%.2f", json_number_value(json_object_get(s, "nox_kg"))), "pm",
      F(r, "%.3f", json_number_value(json_object_get(s, "pm_kg"))), "load",
      F(r, "%.1f", json_number_value(json_object_get(s, "load_factor"))), "min_stage",
      NM(r, "stage", min_stage ? min_stage : "-"), NULL);
  json_decref(s);
  return 0;
}

/* The noise and dust parts read each meter's and station's samples day by
 * day: their reads hold the reader (ENV_HELD_MAX), which reads the tail
 * (today's readings) once for all of them. Without the hold the report
 * still comes, each read going through the tail itself. */
static int report_env(report_t *r) {
  const sg_config_t *cfg = r->gw->cfg;
  const char **names = malloc((cfg->n_devices ? cfg->n_devices : 1) * sizeof(*names));
  size_t n = 0;
  for (size_t i = 0; names && i < cfg->n_devices; i++)
    if (cfg->devices[i].type == SG_DEV_NOISE || cfg->devices[i].type == SG_DEV_DUST)
      names[n++] = cfg->devices[i].id;
  int held = names ? stor_reader_hold(r->rd, names, n, ENV_HELD_MAX) : -ENOMEM;
  if (held != 0)
    log_warn("month report: reading the tail per series (%s)", strerror(-held));
  int rc = report_noise(r);
  if (rc == 0)
    rc = report_dust(r);
  stor_reader_release(r->rd);
  free(names);
  return rc;
}

int report_build(gw_t *gw, stor_reader_t *rd, int y, int m, const char *lang, json_t **out) {
  struct tm a = {.tm_year = y - 1900, .tm_mon = m - 1, .tm_mday = 1, .tm_isdst = -1};
  struct tm b = {.tm_year = y - 1900, .tm_mon = m, .tm_mday = 1, .tm_isdst = -1};
  double now = sg_now();
  report_t r = {.gw = gw,
                .rd = rd,
                .since = (double)mktime(&a),
                .until = (double)mktime(&b),
                .lang = msgcat_lang(lang)};
  double month_end = r.until;
  if (r.until > now)
    r.until = now;
  *out = NULL;
  if (r.since >= now)
    return -ERANGE;
  r.parts = json_array();
  r.tables = json_array();
  char path[PATH_MAX], err[256];
  snprintf(path, sizeof(path), "%s/messages.json", web_root(gw->cfg));
  if (msgcat_load(path, &r.cat, err, sizeof(err)) != 0)
    log_warn("report without the catalogue, in its keys: %s", err);
  int rc = report_env(&r);
  if (rc == 0)
    rc = report_alarms(&r);
  if (rc == 0)
    rc = report_waste(&r);
  if (rc == 0)
    rc = report_energy(&r);
  if (rc == 0)
    rc = report_machinery(&r);
  if (rc != 0) {
    msgcat_free(r.cat);
    json_decref(r.parts);
    json_decref(r.tables);
    return rc;
  }
  char month[8];
  snprintf(month, sizeof(month), "%04d-%02d", y, m);
  const sg_config_t *cfg = gw->cfg;
  /* The page's own words (title, period line, signatures) for the HTML. */
  char gen_words[256];
  json_t *words = json_object();
  static const char *const page_keys[] = {"title", "site_id", "period",   "partial",  "generated",
                                          "none",  "sign_pm", "sign_sup", "sign_date"};
  for (size_t i = 0; i < sizeof(page_keys) / sizeof(page_keys[0]); i++) {
    snprintf(gen_words, sizeof(gen_words), "rep.page.%s", page_keys[i]);
    json_object_set_new(words, page_keys[i], json_string(T(&r, gen_words)));
  }
  *out = json_pack("{s:{s:s,s:s,s:s},s:s,s:s,s:f,s:f,s:f,s:b,s:f,s:o,s:o,s:o}", "site", "id",
                   cfg->site_id, "name", cfg->site_name, "timezone", cfg->timezone, "month", month,
                   "lang", r.lang, "since", r.since, "until", r.until, "month_end", month_end,
                   "partial", r.until < month_end, "generated", now, "words", words, "parts",
                   r.parts, "tables", r.tables);
  msgcat_free(r.cat);
  return 0;
}
