/* The monthly site report (GET /api/report?month=YYYY-MM[&format=json|html|csv&table=NAME]):
 * what a supervisor checks once a month, in Chinese, from the same figures
 * the rules and the other endpoints use.
 *
 * The report is built once as JSON: for each of its six parts (noise,
 * dust, alarms, waste, materials, energy and carbon) a few summary
 * sentences and tables of plain rows. The printable HTML page (the one
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
} report_t;

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

/* The Chinese a supervisor reads for the ids the API uses. */
static const char *zh(const char *id) {
  static const char *const names[][2] = {
      {"tsp", "TSP"},
      {"pm10", "PM10"},
      {"pm2_5", "PM2.5"},
      {"alarm", "告警"},
      {"warning", "预警"},
      {"normal", "正常"},
      {"rebar", "钢筋"},
      {"concrete", "混凝土"},
      {"blocks", "砌块"},
      {"formwork_timber", "模板木材"},
      {"within_target", "达到目标"},
      {"over_target", "超过目标"},
      {"over_baseline", "超过基准"},
      {"no_design_quantity", "无设计量"},
      {"not_yet_judgeable", "尚不能判定"},
      {"no_baseline", "无基准"},
      {"noise.laeq", "噪声 LAeq 超标"},
      {"noise.night_lmax", "夜间最大声级超标"},
      {"dust.pm10_long", "PM10 小时均值"},
      {"dust.pm10_short", "PM10 15 分钟均值"},
      {"dust.pm2_5_long", "PM2.5 小时均值"},
      {"dust.tsp_long", "TSP 小时均值"},
      {"health.offline", "设备离线"},
      {"health.clock_skew", "设备时钟偏差"},
      {"health.interference", "扬尘监测受干扰"},
      {"waste.allowance", "建筑垃圾排放限额"},
      {"waste.projection", "预计排放超限额"},
      {"equipment.no_follow", "设备未执行指令"},
      {"uplink.down", "数据上传中断"},
      {"machinery.unregistered", "非道路移动机械未登记"},
      {"machinery.stage", "非道路移动机械排放阶段不达标"},
      {"machinery.smoke", "非道路移动机械排气烟度超标"},
  };
  for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
    if (strcmp(names[i][0], id) == 0)
      return names[i][1];
  return id;
}

static json_t *part(report_t *r, const char *name, const char *title) {
  json_t *lines = json_array();
  json_array_append_new(r->parts,
                        json_pack("{s:s,s:s,s:o}", "name", name, "title", title, "lines", lines));
  return lines;
}

static void line(json_t *lines, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void line(json_t *lines, const char *fmt, ...) {
  char buf[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof(buf), fmt, ap);
  va_end(ap);
  json_array_append_new(lines, json_string(buf));
}

/* A table: columns as "key|中文标题" strings, NULL-terminated. Returns its
 * rows array. */
static json_t *table(report_t *r, const char *part_name, const char *name, const char *title,
                     const char *const *cols) {
  json_t *c = json_array(), *rows = json_array();
  for (; *cols; cols++) {
    const char *bar = strchr(*cols, '|');
    json_array_append_new(
        c, json_pack("{s:s%,s:s}", "key", *cols, (size_t)(bar - *cols), "title", bar + 1));
  }
  json_array_append_new(r->tables,
                        json_pack("{s:s,s:s,s:s,s:o,s:o}", "name", name, "part", part_name, "title",
                                  title, "columns", c, "rows", rows));
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
  static const char *const pcols[] = {"device|监测点",
                                      "period|时段",
                                      "limit|LAeq 限值 dB(A)",
                                      "windows|窗口数",
                                      "complete|完整窗口",
                                      "compliant|达标窗口",
                                      "exceeded|超标窗口",
                                      "incomplete|数据不足",
                                      "rate|达标率 %",
                                      "laeq_max|最高 LAeq dB(A)",
                                      "lmax_over|夜间 Lmax 超标",
                                      NULL};
  static const char *const wcols[] = {"device|监测点",     "start|开始",
                                      "end|结束",          "period|时段",
                                      "laeq|LAeq dB(A)",   "limit|限值 dB(A)",
                                      "lmax|Lmax dB(A)",   "lmax_limit|Lmax 限值 dB(A)",
                                      "coverage|覆盖率 %", NULL};
  json_t *lines = part(r, "noise", "一、施工场界噪声（GB 12523-2011）");
  json_t *prow = table(r, "noise", "noise_periods", "各监测点分时段达标情况", pcols);
  json_t *wrow = table(r, "noise", "noise_exceeded", "超标窗口明细", wcols);
  line(lines,
       "按 GB 12523-2011 以 20 分钟等效声级 LAeq 评价：昼间（%02.0f:00-%02.0f:00）限值 %.0f "
       "dB(A)，夜间限值 %.0f dB(A)，夜间最大声级不得超过限值 %.0f dB；测量时间不足窗口 %.0f%% "
       "的窗口为数据不足，不判为达标。",
       p.day_start_h, p.night_start_h, p.day_limit, p.night_limit, p.lmax_margin,
       p.complete_share * 100);
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
          json_array_append_new(wrow,
                                json_pack("[s,o,o,s,o,o,o,o,o]", d->id, ltime(w.start),
                                          ltime(w.end), w.period == NOISE_NIGHT ? "夜间" : "昼间",
                                          num(w.laeq, 1), num(w.limit, 0), num(w.lmax, 1),
                                          num(w.lmax_limit, 0), num(w.coverage * 100, 0)));
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
          prow,
          json_pack("[s,s,o,I,I,I,I,I,o,o,o]", d->id, per == NOISE_NIGHT ? "夜间" : "昼间",
                    num(lim, 0), (json_int_t)a->windows, (json_int_t)a->complete,
                    (json_int_t)a->compliant, (json_int_t)a->exceeded, (json_int_t)a->incomplete,
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
      line(lines, "本工地未配置噪声监测点。");
    else
      line(lines, "本月 %ld 个监测点共有完整窗口 %ld 个，达标 %ld 个（%.1f%%），超标 %ld 个。",
           meters, all_complete, all_compliant,
           all_complete ? 100.0 * all_compliant / all_complete : 0.0, all_exceeded);
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

static void episode_flush(json_t *rows, const char *dev, const char *q, episode_t *e) {
  if (e->windows && json_array_size(rows) < REPORT_ROWS_MAX)
    json_array_append_new(rows, json_pack("[s,s,o,o,o,o,s]", dev, q, ltime(e->start), ltime(e->end),
                                          num((e->end - e->start) / 3600, 1), num(e->peak, 1),
                                          e->level == 2 ? "告警" : "预警"));
  memset(e, 0, sizeof(*e));
}

static int report_dust(report_t *r) {
  const sg_config_t *cfg = r->gw->cfg;
  dust_params_t p;
  dust_params_from_config(cfg, &p);
  static const char *const scols[] = {"device|监测点",
                                      "quantity|参数",
                                      "windows|小时窗口",
                                      "mean|月均值 µg/m³",
                                      "max|最高小时均值 µg/m³",
                                      "warn|预警线",
                                      "alarm|告警线",
                                      "warn_windows|达预警窗口",
                                      "alarm_windows|达告警窗口",
                                      "unreliable|高湿剔除读数",
                                      NULL};
  static const char *const ecols[] = {
      "device|监测点",  "quantity|参数",           "start|开始", "end|结束",
      "hours|持续小时", "peak|最高小时均值 µg/m³", "level|等级", NULL};
  json_t *lines = part(r, "dust", "二、扬尘（PM10、PM2.5、TSP）");
  json_t *srow = table(r, "dust", "dust_stations", "各监测点小时均值统计", scols);
  json_t *erow = table(r, "dust", "dust_episodes", "扬尘超标过程（连续达预警及以上的小时）", ecols);
  double len = p.window_s[DUST_LONG];
  line(lines,
       "按整点对齐的 %.0f 分钟均值评价；相对湿度高于 %.0f%% 时的读数不可靠，已剔除并计数。"
       "PM10 小时均值预警 %.0f µg/m³、告警 %.0f µg/m³（按地方做法，见配置 [dust]）。",
       len / 60, p.rh_max, p.warn[DUST_PM10][DUST_LONG], p.alarm[DUST_PM10][DUST_LONG]);
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
              episode_flush(erow, d->id, zh(dust_quantity_name(q)), &e), episodes++;
            if (!e.windows)
              e.start = w.start;
            e.end = w.end;
            e.windows++;
            e.peak = fmax(e.peak, w.mean);
            e.level = w.level > e.level ? w.level : e.level;
          } else if (e.windows) {
            episode_flush(erow, d->id, zh(dust_quantity_name(q)), &e);
            episodes++;
          }
        }
        free(v);
        free(rh);
        day = next;
      }
      if (e.windows) {
        episode_flush(erow, d->id, zh(dust_quantity_name(q)), &e);
        episodes++;
      }
      alarm_windows += nalarm;
      double wl = p.warn[q][DUST_LONG], al = p.alarm[q][DUST_LONG];
      json_array_append_new(srow, json_pack("[s,s,I,o,o,o,o,I,I,I]", d->id,
                                            zh(dust_quantity_name(q)), (json_int_t)windows,
                                            windows ? num(sum / windows, 1) : json_null(),
                                            num(max, 1), wl > 0 ? num(wl, 0) : json_null(),
                                            al > 0 ? num(al, 0) : json_null(), (json_int_t)nwarn,
                                            (json_int_t)nalarm, (json_int_t)unreliable));
    }
  }
  if (rc == 0)
    line(lines, "本月扬尘超标过程 %ld 次，达告警线的小时窗口 %ld 个。", episodes, alarm_windows);
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
  msgcat_rule_name(r->cat, "zh", a->rule, name, sizeof(name));
  msgcat_alarm_text(r->cat, "zh", &ma, a->peak, text, sizeof(text));
  json_array_append_new(
      rows, json_pack("[I,s,s,s,o,o,o,o,o,s,o,s,s]", (json_int_t)a->id, name, a->source,
                      zh(alarm_level_name(a->peak_level)), num(a->peak, 1), num(a->limit, 1),
                      ltime(a->raised), ltime(a->cleared), num((end - a->raised) / 60, 0),
                      a->acked > 0 ? a->acked_by : "", ltime(a->acked), a->note, text));
  return 0;
}

static int report_alarms(report_t *r) {
  static const char *const cols[] = {"id|编号",           "rule|规则",
                                     "source|对象",       "level|最高等级",
                                     "peak|最差数值",     "limit|限值",
                                     "raised|发生",       "cleared|消除",
                                     "minutes|持续分钟",  "acked_by|确认人",
                                     "acked_at|确认时间", "note|处理说明",
                                     "message|说明",      NULL};
  json_t *lines = part(r, "alarms", "三、告警及处理");
  json_t *rows = table(r, "alarms", "alarms", "本月告警及处理", cols);
  int rc = stor_alarm_history(r->rd, r->since, false, REPORT_ROWS_MAX, on_alarm, r);
  if (rc != 0)
    return rc;
  long n = (long)json_array_size(rows), acked = 0, alarms = 0;
  size_t i;
  json_t *row;
  json_array_foreach(rows, i, row) {
    alarms += strcmp(json_string_value(json_array_get(row, 3)), zh("alarm")) == 0;
    acked += json_is_string(json_array_get(row, 10));
  }
  line(lines, "本月发生或持续的告警 %ld 条，其中达告警级 %ld 条，已由人员确认并说明处理 %ld 条。",
       n, alarms, acked);
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
        arg, json_pack("[s,o,I]", name, num((double)net_kg / 1000.0, 2), (json_int_t)entries));
  return 0;
}

static int report_waste(report_t *r) {
  static const char *const ccols[] = {"category|类别",      "reuse_onsite|现场利用 t",
                                      "recycling|资源化 t", "backfill|回填 t",
                                      "disposal|处置 t",    "total|合计 t",
                                      "counted|计入排放量", NULL};
  static const char *const fcols[] = {"name|消纳场所", "t|吨", "trips|车次", NULL};
  static const char *const kcols[] = {"name|运输单位", "t|吨", "trips|车次", NULL};
  static const char *const cat_zh[] = {"工程渣土", "工程泥浆", "工程垃圾", "拆除垃圾", "装修垃圾"};
  json_t *lines = part(r, "waste", "四、建筑垃圾排放与资源化利用");
  json_t *crow = table(r, "waste", "waste_categories", "本月建筑垃圾按类别与去向", ccols);
  json_t *frow = table(r, "waste", "waste_facilities", "本月消纳场所", fcols);
  json_t *krow = table(r, "waste", "waste_carriers", "本月运输单位", kcols);
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
    const char *zh = name;
    static const char *const ids[] = {"spoil", "mud", "engineering", "demolition", "decoration"};
    for (size_t j = 0; j < sizeof(ids) / sizeof(ids[0]); j++)
      if (strcmp(ids[j], name) == 0)
        zh = cat_zh[j];
    json_t *row = json_pack("[s]", zh);
    double total = 0;
    for (int d = 0; d < PROTO_DEST_COUNT; d++) {
      json_array_append_new(row, num(a.w.by_cat_dest[k][d], 2));
      total += a.w.by_cat_dest[k][d];
    }
    json_array_append_new(row, num(total, 2));
    bool counted = strcmp(name, "spoil") != 0 && strcmp(name, "mud") != 0;
    json_array_append_new(row, json_string(counted ? "是" : "否"));
    json_array_append_new(crow, row);
  }
  double util = waste_utilisation(&a.w);
  line(lines,
       "本月产生建筑垃圾 %.2f t（不含工程渣土、泥浆 %.2f t），排放 %.2f t，现场利用 %.2f t、"
       "资源化 %.2f t、回填 %.2f t、处置 %.2f t，资源化利用率 %.1f%%（目标 %.0f%%）。",
       a.w.generated_t, a.w.excluded_t, a.w.discharged_t, a.w.reused_t, a.w.recycled_t,
       a.w.backfill_t, a.w.disposed_t, isfinite(util) ? util * 100 : 0.0,
       r->gw->cfg->waste_util_target * 100);
  line(lines,
       "开工至今排放 %.1f t，限额 %.0f t（按现浇 %.0f t/万m²、装配式 %.0f t/万m² 计），已用 "
       "%.1f%%；排放强度 %.1f t/万m²（限值 %.1f）；按施工进度 %.0f%% 预计竣工时排放 %.0f t。",
       sum->w.discharged_t, sum->allowance_t, r->gw->cfg->waste_limit_cast,
       r->gw->cfg->waste_limit_prefab, sum->allowance_used * 100, sum->intensity,
       sum->limit_per_10k, sum->progress * 100, sum->projected_t);
  free(sum);

  /* materials: the month's deliveries, and loss rates to date */
  static const char *const mcols[] = {
      "material|材料",        "delivered|本月进场 t",       "returned|本月退场 t",
      "green|其中绿色建材 t", "green_share|绿色建材占比 %", NULL};
  static const char *const lcols[] = {
      "material|材料", "delivered|累计进场 t", "design|设计量 t", "loss_rate|损耗率 %",
      "target|目标 %", "baseline|2020 基准 %", "status|状态",     NULL};
  json_t *mlines = part(r, "materials", "五、主要材料");
  json_t *mrow = table(r, "materials", "materials_month", "本月材料进场", mcols);
  json_t *lrow = table(r, "materials", "materials_loss", "开工至今材料损耗率", lcols);
  const char *mat;
  json_t *m;
  double delivered = 0, green = 0;
  json_object_foreach(a.deliveries, mat, m) {
    double dt = json_real_value(json_array_get(m, 0)), gt = json_real_value(json_array_get(m, 2));
    delivered += dt;
    green += gt;
    json_array_append_new(mrow, json_pack("[s,o,o,o,o]", zh(mat), num(dt, 2),
                                          num(json_real_value(json_array_get(m, 1)), 2), num(gt, 2),
                                          dt > 0 ? num(gt / dt * 100, 1) : json_null()));
  }
  json_decref(a.deliveries);
  line(mlines, "本月材料进场 %.1f t，其中绿色建材 %.1f t（%.1f%%）。", delivered, green,
       delivered > 0 ? green / delivered * 100 : 0.0);
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
          json_pack("[s,o,o,o,o,o,s]", zh(json_string_value(json_object_get(x, "material"))),
                    num(json_number_value(json_object_get(x, "delivered_t")), 1),
                    json_is_number(json_object_get(x, "design_t"))
                        ? num(json_number_value(json_object_get(x, "design_t")), 1)
                        : json_null(),
                    json_is_number(rate) ? num(json_number_value(rate) * 100, 2) : json_null(),
                    num(json_number_value(json_object_get(x, "target_rate")) * 100, 2),
                    num(json_number_value(json_object_get(x, "baseline_rate")) * 100, 2),
                    zh(json_string_value(json_object_get(x, "status")))));
    }
    json_decref(mj);
  }
  free(s2);
  return rc;
}

/* ---- energy and carbon (equipment.c's figures, taken on the loop) */
static int report_energy(report_t *r) {
  static const char *const ucols[] = {
      "unit|设备/电表",        "group|设备组",       "kwh|电量 kWh",
      "fuel_l|柴油 L",         "run_h|运行小时",     "idle_h|空转小时",
      "idle_kwh|空转电量 kWh", "t_co2|碳排放 t CO₂", NULL};
  static const char *const dcols[] = {"date|日期", "kwh|电量 kWh", "fuel_l|柴油 L",
                                      "t_co2|碳排放 t CO₂", NULL};
  json_t *lines = part(r, "energy", "六、能耗与碳排放");
  json_t *urow = table(r, "energy", "energy_units", "本月各设备能耗", ucols);
  json_t *drow = table(r, "energy", "carbon_days", "每日能耗与碳排放", dcols);
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
  line(lines,
       "本月用电 %.1f kWh、柴油 %.1f L，折合碳排放 %.3f t CO₂，单位建筑面积 %.4f kg CO₂/m²。"
       "计算：t CO₂ = kWh / 1000 × %.4f t/MWh + L × %.2f kg/L / "
       "1000（电网排放因子、柴油排放因子见配置 "
       "[energy]）。",
       json_number_value(json_object_get(per, "kwh")),
       json_number_value(json_object_get(per, "fuel_l")),
       json_number_value(json_object_get(per, "t_co2")),
       json_number_value(json_object_get(per, "kg_per_m2")),
       json_number_value(json_object_get(f, "grid_t_per_mwh")),
       json_number_value(json_object_get(f, "diesel_kg_per_l")));
  json_decref(e);
  json_decref(c);
  return 0;
}

/* ---- non-road mobile machinery: per machine over the month */
static int report_machinery(report_t *r) {
  static const char *const cols[] = {"code|环保登记编码",    "type|机械类型", "stage|排放阶段",
                                     "power_kw|额定功率 kW", "days|在场天数", "onsite_h|在场小时",
                                     "engine_h|发动机小时",  "fuel_l|油耗 L", "t_co2|碳排放 t CO₂",
                                     "nox_kg|NOx kg",        "pm_kg|PM kg",   NULL};
  json_t *lines = part(r, "machinery", "七、非道路移动机械");
  json_t *rows = table(r, "machinery", "machinery", "本月非道路移动机械", cols);
  double until = env_local_midnight(r->until - 1) + DAY_S;
  if (env_local_midnight(until) != until)
    until = env_local_midnight(until + 3 * 3600);
  json_t *s = NULL;
  int rc = machinery_report_month(r->gw, r->rd, r->since, until, rows, &s);
  if (rc != 0)
    return rc;
  line(lines,
       "本月登记机械 %d 台，在场合计 %d 台·天、%.1f 小时，发动机 %.1f 小时，油耗 %.1f L，"
       "折合碳排放 %.3f t CO₂（柴油排放因子同第六部分，机械油耗不计入设备能耗，只计一次）。",
       (int)json_integer_value(json_object_get(s, "machines")),
       (int)json_integer_value(json_object_get(s, "machine_days")),
       json_number_value(json_object_get(s, "onsite_h")),
       json_number_value(json_object_get(s, "engine_h")),
       json_number_value(json_object_get(s, "fuel_l")),
       json_number_value(json_object_get(s, "t_co2")));
  line(lines,
       "估算 NOx %.2f kg、PM %.3f kg：发动机小时 × 额定功率 × 负荷系数 %.1f × 排放因子（按排放阶段"
       "与功率段取 GB 20891-2007、GB 20891-2014 限值，国零阶段按第一阶段 1.5 倍估计）。"
       "本区允许的最低排放阶段：%s。",
       json_number_value(json_object_get(s, "nox_kg")),
       json_number_value(json_object_get(s, "pm_kg")),
       json_number_value(json_object_get(s, "load_factor")),
       json_string_value(json_object_get(s, "min_stage")));
  json_decref(s);
  return 0;
}

int report_build(gw_t *gw, stor_reader_t *rd, int y, int m, json_t **out) {
  struct tm a = {.tm_year = y - 1900, .tm_mon = m - 1, .tm_mday = 1, .tm_isdst = -1};
  struct tm b = {.tm_year = y - 1900, .tm_mon = m, .tm_mday = 1, .tm_isdst = -1};
  double now = sg_now();
  report_t r = {.gw = gw, .rd = rd, .since = (double)mktime(&a), .until = (double)mktime(&b)};
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
    log_warn("report without the catalogue, alarms by rule name: %s", err);
  int rc = report_noise(&r);
  if (rc == 0)
    rc = report_dust(&r);
  if (rc == 0)
    rc = report_alarms(&r);
  if (rc == 0)
    rc = report_waste(&r);
  if (rc == 0)
    rc = report_energy(&r);
  if (rc == 0)
    rc = report_machinery(&r);
  msgcat_free(r.cat);
  if (rc != 0) {
    json_decref(r.parts);
    json_decref(r.tables);
    return rc;
  }
  char month[8];
  snprintf(month, sizeof(month), "%04d-%02d", y, m);
  const sg_config_t *cfg = gw->cfg;
  *out = json_pack("{s:{s:s,s:s,s:s},s:s,s:f,s:f,s:f,s:b,s:f,s:o,s:o}", "site", "id", cfg->site_id,
                   "name", cfg->site_name, "timezone", cfg->timezone, "month", month, "since",
                   r.since, "until", r.until, "month_end", month_end, "partial",
                   r.until < month_end, "generated", now, "parts", r.parts, "tables", r.tables);
  return 0;
}
