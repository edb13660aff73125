/* Making the uplink's messages (uplink.h), on a libuv worker thread.
 *
 * A pass looks at what is due at `now` and makes it, oldest first:
 * the 2081 of this start, ledger entries (6011/6012) and alarm events
 * (6021) not yet made, the machinery register's changes (6051) and entries
 * and exits (6052) not yet made, the site profile (6061) at the first
 * start and whenever it changes, the real-time frame (2011) of the latest tick, the
 * minute, hour and day frames (2051/2061/2031) of every period that ended
 * `lag_s` ago, the daily energy and carbon summary (6031) and the
 * machinery's day (6053); all of it goes
 * into the outbox in one transaction together with the cursors that say
 * how far each kind has been made and the signing chain's head. Then the
 * hours whose frames are all made are sealed (6041) in a second
 * transaction, since a seal's digest is computed over what the outbox holds
 * for that hour. If a transaction fails, nothing of it happened: the pass's
 * in-memory state is dropped and reloaded from the database next time.
 *
 * Environmental data come from the storage rollups: one site per MN, so for
 * each pollutant the frame carries one station. Dust and noise take the
 * station with the highest value over the period (the worst boundary, the
 * figure a regulator acts on); weather takes the first station, in id
 * order, that has data (UPLINK.md "Which station"). */
#define LOG_MODULE "uplink"
#include "gateway/uplink/uplink.h"
#include "protocol/protocol.h"
#include "storage/storage.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define PASS_MAX 400                /* messages made in one pass; the next pass goes on */
#define CATCHUP_S (7 * 86400)       /* minute and hour frames made after a stop, at most */
#define CATCHUP_DAYS_S (31 * 86400) /* day frames and energy summaries, at most */
#define SEALS_PER_PASS 48
#define RETENTION_EVERY_S 3600.0
#define CP_MAX (64 * 1024) /* a message's CP before splitting (6031 with many units) */
/* The machinery's day (6053) waits this long after the day for the
 * terminals' last readings, as the energy summary waits for its figures. */
#define MACH_DAY_WAIT_S 600
/* The site profile's fields (6061): a name of 127 bytes escaped may grow
 * to 3 times that, plus areas and coordinates. */
#define PROFILE_MAX UPLINK_PROFILE_MAX

static uplink_machine_days_fn machine_days; /* uplink_set_machine_days() */

void uplink_set_machine_days(uplink_machine_days_fn fn) { machine_days = fn; }

/* HJ 212-2017 appendix B codes for our quantities; `worst`: the station
 * with the highest value stands for the site. */
static const struct pollutant {
  int q;
  const char *code;
  int decimals;
  bool worst;
} pollutants[] = {
    {PROTO_Q_TSP, "a34001", 1, true},
    {PROTO_Q_PM10, "a34002", 1, true},
    {PROTO_Q_PM2_5, "a34004", 1, true},
    {PROTO_Q_TEMP, "a01001", 1, false},
    {PROTO_Q_RH, "a01002", 1, false},
    {PROTO_Q_PRESSURE, "a01006", 2, false},
    {PROTO_Q_WIND_SPEED, "a01007", 1, false},
    {PROTO_Q_WIND_DIR, "a01008", 0, false},
    {PROTO_Q_LA, "LA", 1, true},
};
#define N_POLLUTANTS (sizeof(pollutants) / sizeof(pollutants[0]))

enum { K_RTD, K_MINUTE, K_HOUR, K_DAY };

typedef struct pass_msg {
  stor_ob_msg_t m;
  char *frames;
} pass_msg_t;

struct uplink_builder {
  gw_t *gw;
  const sg_config_t *cfg;
  stor_reader_t *rd;
  gtls_signer_t *signer;
  int bits; /* SG_UPLINK_* */
  char (*dev)[SG_ID_MAX + 1];
  int *dev_interval; /* each station's reporting interval, s */
  size_t n_dev;
  bool *has; /* n_dev x N_POLLUTANTS: the series exists */
  /* what has been made, as stored (reloaded after a failed pass) */
  bool loaded, restart_made;
  int64_t next_rtd, next_minute, next_hour, next_day, next_seal, next_energy, next_mach_day;
  int64_t ledger_id, alarm_seq;
  int64_t mach_audit_id, mach_move_id; /* machinery: the last audit row and move made */
  int64_t chain_seq;
  uint8_t chain_hash[32];
  char profile[PROFILE_MAX]; /* the 6061's fields as last made ("" none yet) */
  int64_t last_qn_ms;
  double next_retention;
  /* this pass */
  pass_msg_t *msgs;
  size_t n, cap;
  char *cp; /* CP_MAX */
  char error[192];
};

/* ---- small helpers */

static int unhex(const char *s, uint8_t *out, size_t n) {
  if (strlen(s) != 2 * n)
    return -EINVAL;
  for (size_t i = 0; i < n; i++) {
    unsigned v;
    if (sscanf(s + 2 * i, "%2x", &v) != 1)
      return -EINVAL;
    out[i] = (uint8_t)v;
  }
  return 0;
}

void uplink_datatime(int64_t t, char out[15]) {
  char qn[HJ212_QN_LEN + 1];
  hj212_qn_format(t * 1000, UPLINK_BEIJING_MIN, qn);
  memcpy(out, qn, 14);
  out[14] = '\0';
}

int64_t uplink_parse_datatime(const char *s) {
  if (strlen(s) < 14)
    return -1;
  int v[6];
  static const int at[] = {0, 4, 6, 8, 10, 12}, len[] = {4, 2, 2, 2, 2, 2};
  for (int i = 0; i < 6; i++) {
    v[i] = 0;
    for (int k = 0; k < len[i]; k++) {
      char c = s[at[i] + k];
      if (c < '0' || c > '9')
        return -1;
      v[i] = v[i] * 10 + (c - '0');
    }
  }
  if (v[1] < 1 || v[1] > 12 || v[2] < 1 || v[2] > 31 || v[3] > 23 || v[4] > 59 || v[5] > 60)
    return -1;
  struct tm tm;
  memset(&tm, 0, sizeof(tm));
  tm.tm_year = v[0] - 1900;
  tm.tm_mon = v[1] - 1;
  tm.tm_mday = v[2];
  tm.tm_hour = v[3];
  tm.tm_min = v[4];
  tm.tm_sec = v[5];
  return (int64_t)timegm(&tm) - UPLINK_BEIJING_MIN * 60;
}

/* Local midnight at or before `t`, and the next one (the process's TZ is
 * the site's: gw_run sets it). */
static int64_t local_midnight(int64_t t, int add_days) {
  time_t s = (time_t)t;
  struct tm tm;
  localtime_r(&s, &tm);
  tm.tm_hour = tm.tm_min = tm.tm_sec = 0;
  tm.tm_mday += add_days;
  tm.tm_isdst = -1;
  return (int64_t)mktime(&tm);
}

static int64_t floor_to(int64_t t, int64_t step) { return t - ((t % step) + step) % step; }

/* A QN never used before: Unix ms of now, or one more than the last. */
static int64_t next_qn(uplink_builder_t *b, double now) {
  int64_t ms = (int64_t)(now * 1000.0);
  if (ms <= b->last_qn_ms)
    ms = b->last_qn_ms + 1;
  b->last_qn_ms = ms;
  return ms;
}

/* Appends printf output to the pass's CP at *len; false when it is full. */
static bool cp_add(uplink_builder_t *b, size_t *len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static bool cp_add(uplink_builder_t *b, size_t *len, const char *fmt, ...) {
  if (*len >= CP_MAX)
    return false;
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(b->cp + *len, CP_MAX - *len, fmt, ap);
  va_end(ap);
  if (n < 0 || (size_t)n >= CP_MAX - *len) {
    *len = CP_MAX;
    return false;
  }
  *len += (size_t)n;
  return true;
}

/* Appends ",Key=<escaped text>" (text as UPLINK.md's free text). */
static bool cp_text(uplink_builder_t *b, size_t *len, const char *sep, const char *key,
                    const char *text) {
  char esc[4 * 257];
  if (hj212_escape(text, esc, sizeof(esc)) < 0)
    return false;
  return cp_add(b, len, "%s%s=%s", sep, key, esc);
}

/* ---- the pass's messages */

/* Encodes CP b->cp[0, len) as message `cn` and appends it to the pass. */
static int pass_add(uplink_builder_t *b, const char *cn, int cls, int64_t t, int64_t seq,
                    size_t len, double now) {
  if (len >= CP_MAX) {
    snprintf(b->error, sizeof(b->error), "CN %s: message too long", cn);
    return -EMSGSIZE;
  }
  if (b->n == b->cap) {
    size_t cap = b->cap ? b->cap * 2 : 64;
    pass_msg_t *p = realloc(b->msgs, cap * sizeof(*p));
    if (!p)
      return -ENOMEM;
    b->msgs = p;
    b->cap = cap;
  }
  const sg_config_t *cfg = b->cfg;
  hj212_head_t h;
  memset(&h, 0, sizeof(h));
  int64_t qn_ms = next_qn(b, now);
  hj212_qn_format(qn_ms, UPLINK_BEIJING_MIN, h.qn);
  snprintf(h.st, sizeof(h.st), "%.5s", cfg->uplink_st);
  snprintf(h.cn, sizeof(h.cn), "%s", cn);
  snprintf(h.pw, sizeof(h.pw), "%.9s", cfg->uplink_pw);
  snprintf(h.mn, sizeof(h.mn), "%.27s", cfg->site_id);
  h.flag = HJ212_FLAG_V2017 | HJ212_FLAG_ACK;
  size_t cap = (len / 700 + 2) * (HJ212_FRAME_MAX + 2);
  char *buf = malloc(cap);
  if (!buf)
    return -ENOMEM;
  size_t nframes;
  char err[160];
  int n = hj212_encode(&h, b->cp, len, buf, cap, &nframes, err, sizeof(err));
  if (n < 0) {
    snprintf(b->error, sizeof(b->error), "CN %s: %s", cn, err[0] ? err : strerror(-n));
    free(buf);
    return n;
  }
  pass_msg_t *pm = &b->msgs[b->n++];
  memset(pm, 0, sizeof(*pm));
  pm->frames = buf;
  stor_ob_msg_t *m = &pm->m;
  snprintf(m->qn, sizeof(m->qn), "%s", h.qn);
  snprintf(m->cn, sizeof(m->cn), "%s", cn);
  m->cls = cls;
  m->t = t;
  m->seq = seq;
  m->frames = buf;
  m->frames_len = (size_t)n;
  m->made_ms = (int64_t)(now * 1000.0);
  return 0;
}

static void pass_clear(uplink_builder_t *b) {
  for (size_t i = 0; i < b->n; i++)
    free(b->msgs[i].frames);
  b->n = 0;
}

/* Makes the CP so far (b->cp[0, len), starting "DataTime=...") a signed
 * message: "Seq=N,Prev=<hex>," in front, "<sep>Hash=..,Sig=.." behind. */
static int pass_add_signed(uplink_builder_t *b, const char *cn, int64_t t, size_t len, char sep,
                           double now) {
  if (len + 300 >= CP_MAX) {
    snprintf(b->error, sizeof(b->error), "CN %s: message too long", cn);
    return -EMSGSIZE;
  }
  char head[128], prev[65];
  hj212_hex(b->chain_hash, 32, prev);
  int64_t seq = b->chain_seq + 1;
  int hn = snprintf(head, sizeof(head), "Seq=%lld,Prev=%s,", (long long)seq, prev);
  memmove(b->cp + hn, b->cp, len);
  memcpy(b->cp, head, (size_t)hn);
  len += (size_t)hn;
  uint8_t hash[32], sig[64];
  proto_sha256(b->chain_hash, 32, b->cp, len, hash);
  if (gtls_sign(b->signer, hash, sig) != 0) {
    snprintf(b->error, sizeof(b->error), "CN %s: signing failed", cn);
    return -EIO;
  }
  char hh[65], sh[129];
  hj212_hex(hash, 32, hh);
  hj212_hex(sig, 64, sh);
  cp_add(b, &len, "%cHash=%s,Sig=%s", sep, hh, sh);
  int rc = pass_add(b, cn, STOR_OB_SIGNED, t, seq, len, now);
  if (rc == 0) {
    b->chain_seq = seq;
    memcpy(b->chain_hash, hash, 32);
  }
  return rc;
}

/* ---- sources: which stations have which pollutants */

static int on_series(void *arg, const char *device, int quantity, int64_t t_ms, double value) {
  (void)t_ms;
  (void)value;
  uplink_builder_t *b = arg;
  for (size_t d = 0; d < b->n_dev; d++) {
    if (strcmp(b->dev[d], device) != 0)
      continue;
    for (size_t p = 0; p < N_POLLUTANTS; p++)
      if (pollutants[p].q == quantity)
        b->has[d * N_POLLUTANTS + p] = true;
  }
  return 0;
}

static bool add_device(void *arg, const char *id, size_t n) {
  uplink_builder_t *b = arg;
  snprintf(b->dev[b->n_dev], SG_ID_MAX + 1, "%.*s", (int)n, id);
  const sg_device_t *d = sg_config_device(b->cfg, b->dev[b->n_dev]);
  b->dev_interval[b->n_dev++] = d ? d->interval_s : 60;
  return true;
}

static int sources_open(uplink_builder_t *b) {
  const sg_config_t *cfg = b->cfg;
  size_t max = cfg->n_devices + 1;
  b->dev = calloc(max, sizeof(*b->dev));
  b->has = calloc(max * N_POLLUTANTS, sizeof(*b->has));
  b->dev_interval = calloc(max, sizeof(*b->dev_interval));
  if (!b->dev || !b->has || !b->dev_interval)
    return -ENOMEM;
  if (cfg->uplink_devices[0]) {
    for (const char *s = cfg->uplink_devices; *s && b->n_dev < cfg->n_devices;) {
      s += strspn(s, ", \t");
      size_t n = strcspn(s, ", \t");
      if (n)
        add_device(b, s, n);
      s += n;
    }
  } else {
    for (size_t i = 0; i < cfg->n_devices; i++) {
      sg_devtype_t t = cfg->devices[i].type;
      if (t == SG_DEV_DUST || t == SG_DEV_NOISE || t == SG_DEV_WEATHER)
        add_device(b, cfg->devices[i].id, strlen(cfg->devices[i].id));
    }
  }
  return 0;
}

/* ---- environmental frames */

typedef struct figure {
  bool have;
  double min, avg, max;
} figure_t;

/* One station's figure for pollutant p over the period. */
static int station_figure(uplink_builder_t *b, size_t d, size_t p, int kind, int64_t t0, int64_t t1,
                          figure_t *f) {
  static const stor_step_t steps[] = {STOR_STEP_RAW, STOR_STEP_1M, STOR_STEP_1H, STOR_STEP_1D};
  stor_point_t *pts = NULL;
  size_t n = 0;
  int64_t since = t0 * 1000, until = t1 * 1000;
  if (kind == K_RTD) {
    /* The latest reading in (t0, t1], looking back at least one and a half
     * of the station's reporting intervals: a station that reports every
     * minute still has a current value in a 30-s real-time frame. */
    int64_t back = (int64_t)(1.5 * b->dev_interval[d]);
    if (t1 - back < t0)
      since = (t1 - back) * 1000;
    since += 1;
    until += 1;
  }
  int rc = stor_query(b->rd, b->dev[d], pollutants[p].q, steps[kind], since, until,
                      kind == K_RTD ? 100000 : 4, &pts, &n);
  f->have = false;
  if (rc == 0 && n > 0) {
    const stor_point_t *pt = &pts[n - 1];
    f->have = true;
    f->min = kind == K_RTD ? pt->mean : pt->min;
    f->avg = pt->mean;
    f->max = kind == K_RTD ? pt->mean : pt->max;
  }
  free(pts);
  return rc == -ENOENT ? 0 : rc;
}

/* Makes the 2011/2051/2061/2031 of [t0, t1) (for 2011, the tick t1).
 * Nothing is made when no station has any of the pollutants. */
static int make_env(uplink_builder_t *b, int kind, int64_t t0, int64_t t1, double now) {
  static const char *const cns[] = {"2011", "2051", "2061", "2031"};
  static const int classes[] = {STOR_OB_RTD, STOR_OB_MINUTE, STOR_OB_HOUR, STOR_OB_DAY};
  int64_t data_t = kind == K_RTD ? t1 : t0;
  char dt[15];
  uplink_datatime(data_t, dt);
  size_t len = 0, records = 0;
  cp_add(b, &len, "DataTime=%s", dt);
  for (size_t p = 0; p < N_POLLUTANTS; p++) {
    const struct pollutant *pol = &pollutants[p];
    figure_t best = {0};
    bool any = false;
    for (size_t d = 0; d < b->n_dev; d++) {
      if (!b->has[d * N_POLLUTANTS + p])
        continue;
      any = true;
      figure_t f;
      int rc = station_figure(b, d, p, kind, t0, t1, &f);
      if (rc != 0)
        return rc;
      if (f.have && (!best.have || (pol->worst && f.avg > best.avg)))
        best = f;
      if (best.have && !pol->worst)
        break;
    }
    if (!any)
      continue;
    records++;
    int dp = pol->decimals;
    if (!best.have)
      cp_add(b, &len, ";%s-Flag=B", pol->code);
    else if (kind == K_RTD)
      cp_add(b, &len, ";%s-Rtd=%.*f,%s-Flag=N", pol->code, dp, best.avg, pol->code);
    else
      cp_add(b, &len, ";%s-Min=%.*f,%s-Avg=%.*f,%s-Max=%.*f,%s-Flag=N", pol->code, dp, best.min,
             pol->code, dp, best.avg, pol->code, dp, best.max, pol->code);
  }
  if (records == 0)
    return 0;
  return pass_add(b, cns[kind], classes[kind], data_t, 0, len, now);
}

/* ---- signed messages from the ledger, the alarms and the energy */

static int make_ticket(uplink_builder_t *b, const stor_ticket_t *t, double now) {
  size_t len = 0;
  char dt[15];
  uplink_datatime(t->t, dt);
  bool waste = strcmp(t->type, "waste") == 0;
  cp_add(b, &len, "DataTime=%s,LedgerId=%lld,Source=%s", dt, (long long)t->id, t->source);
  if (t->scale[0])
    cp_add(b, &len, ",Scale=%s", t->scale);
  if (t->no > 0)
    cp_add(b, &len, ",TicketNo=%lld", (long long)t->no);
  if (t->plate[0])
    cp_text(b, &len, ",", "Plate", t->plate);
  if (waste) {
    cp_add(b, &len, ",Category=%s", t->category);
    if (t->kind[0])
      cp_add(b, &len, ",Kind=%s", t->kind);
  } else {
    cp_add(b, &len, ",Material=%s,GreenCert=%d,Dir=%s", t->material, t->green_cert ? 1 : 0, t->dir);
  }
  if (t->weighed)
    cp_add(b, &len, ",GrossKg=%lld,TareKg=%lld", (long long)t->gross_kg, (long long)t->tare_kg);
  cp_add(b, &len, ",NetKg=%lld", (long long)t->net_kg);
  if (waste && t->dest[0])
    cp_add(b, &len, ",Dest=%s", t->dest);
  if (t->corrects)
    cp_add(b, &len, ",Corrects=%lld,Reversal=%d", (long long)t->corrects, t->reversal ? 1 : 0);
  /* Free text: a record each, so no record outgrows a packet. */
  if (t->dest_name[0])
    cp_text(b, &len, ";", "DestName", t->dest_name);
  if (t->carrier[0])
    cp_text(b, &len, ";", "Carrier", t->carrier);
  if (t->note[0])
    cp_text(b, &len, ";", "Note", t->note);
  char lh[65];
  hj212_hex(t->hash, 32, lh);
  cp_add(b, &len, ";LedgerHash=%s", lh);
  return pass_add_signed(b, waste ? "6011" : "6012", t->t, len, ',', now);
}

/* The pollutant code of an alarm rule, or NULL. */
static const char *rule_polid(const char *rule) {
  if (strncmp(rule, "noise.", 6) == 0)
    return "LA";
  if (strncmp(rule, "waste.", 6) == 0)
    return "Waste";
  const char *last = strrchr(rule, '.');
  const char *name = strncmp(rule, "dust.", 5) == 0 ? rule + 5 : last ? last + 1 : rule;
  for (size_t p = 0; p < N_POLLUTANTS; p++) {
    const char *q = proto_quantity_name(pollutants[p].q);
    size_t n = strlen(q);
    if (strncmp(name, q, n) == 0 && (name[n] == '\0' || name[n] == '_'))
      return pollutants[p].code;
  }
  return NULL;
}

/* The averaging window of a rule, s (0: a single reading or none). */
static int rule_window_s(const sg_config_t *cfg, const char *rule) {
  size_t n = strlen(rule);
  if (strcmp(rule, "noise.laeq") == 0)
    return cfg->noise_window_min * 60;
  if (strncmp(rule, "dust.", 5) == 0 && n > 6 && strcmp(rule + n - 6, "_short") == 0)
    return cfg->dust_short_min * 60;
  if (strncmp(rule, "dust.", 5) == 0 && n > 5 && strcmp(rule + n - 5, "_long") == 0)
    return cfg->dust_long_min * 60;
  return 0;
}

typedef struct alarm_pass {
  uplink_builder_t *b;
  double now;
  int rc;
  size_t made;
} alarm_pass_t;

/* HJ 212 keys and values allow [A-Za-z0-9._-] for our ids; anything else
 * in a rule or source (never expected) is escaped. */
static int on_alarm_event(void *arg, const stor_ob_alarm_ev_t *e) {
  alarm_pass_t *ap = arg;
  uplink_builder_t *b = ap->b;
  b->alarm_seq = e->seq;
  if (e->kind > 3) /* acknowledgements stay on site */
    return 0;
  bool on = e->kind != 3;
  int level = on ? e->level : e->peak_level;
  size_t len = 0;
  char dt[15];
  uplink_datatime((int64_t)floor(e->t), dt);
  cp_add(b, &len, "DataTime=%s,AlarmId=%lld,State=%s,Level=%s", dt, (long long)e->alarm,
         on ? "on" : "off", level >= 2 ? "alarm" : "warn");
  cp_text(b, &len, ",", "Rule", e->rule);
  cp_text(b, &len, ",", "Device", e->source);
  const char *pol = rule_polid(e->rule);
  if (pol)
    cp_add(b, &len, ",PolId=%s", pol);
  if (isfinite(e->figure))
    cp_add(b, &len, ",Value=%.2f", e->figure);
  if (isfinite(e->limit))
    cp_add(b, &len, ",Limit=%.2f", e->limit);
  cp_add(b, &len, ",WindowS=%d", rule_window_s(b->cfg, e->rule));
  if ((ap->rc = pass_add_signed(b, "6021", (int64_t)floor(e->t), len, ',', ap->now)) != 0)
    return 1;
  ap->made++;
  return 0;
}

typedef struct energy_pass {
  stor_energy_row_t *rows;
  size_t n, cap;
} energy_pass_t;

static int on_energy_row(void *arg, const stor_energy_row_t *row) {
  energy_pass_t *e = arg;
  if (e->n == e->cap) {
    size_t cap = e->cap ? e->cap * 2 : 16;
    stor_energy_row_t *p = realloc(e->rows, cap * sizeof(*p));
    if (!p)
      return 1;
    e->rows = p;
    e->cap = cap;
  }
  e->rows[e->n++] = *row;
  return 0;
}

/* 6031 of local day [day, next): the site's totals, then one record per
 * unit. CarbonKg is computed from the figures as printed, so the authority
 * recomputes exactly what we send. */
static int make_energy(uplink_builder_t *b, int64_t day, double now) {
  energy_pass_t e = {0};
  int rc = stor_outbox_energy_day(b->rd, day, on_energy_row, &e);
  if (rc != 0 || e.n == 0) {
    free(e.rows);
    return rc;
  }
  double kwh = 0, fuel = 0;
  for (size_t i = 0; i < e.n; i++) {
    kwh += e.rows[i].kwh;
    fuel += e.rows[i].fuel_l;
  }
  char k[32], f[32], g[32], d[32];
  snprintf(k, sizeof(k), "%.1f", kwh);
  snprintf(f, sizeof(f), "%.1f", fuel);
  snprintf(g, sizeof(g), "%.4f", b->cfg->energy_grid_factor); /* t/MWh = kg/kWh */
  snprintf(d, sizeof(d), "%.4f", b->cfg->energy_diesel_factor);
  double carbon = strtod(k, NULL) * strtod(g, NULL) + strtod(f, NULL) * strtod(d, NULL);
  char dt[15];
  uplink_datatime(day, dt);
  size_t len = 0;
  cp_add(b, &len, "DataTime=%s,EnergyKwh=%s,FuelL=%s,CarbonKg=%.1f,EfGrid=%s,EfFuel=%s", dt, k, f,
         carbon, g, d);
  for (size_t i = 0; i < e.n; i++)
    cp_add(b, &len, ";EqId=%s,EnergyKwh=%.1f,FuelL=%.1f,RunS=%.0f", e.rows[i].unit, e.rows[i].kwh,
           e.rows[i].fuel_l, e.rows[i].run_s);
  free(e.rows);
  return pass_add_signed(b, "6031", day, len, ';', now);
}

/* ---- machinery (6051 register changes, 6052 entries and exits) */

typedef struct mach_pass {
  uplink_builder_t *b;
  double now;
  int rc;
} mach_pass_t;

/* 6051: one change to the register, the row as it was after it. */
static int on_mach_audit(void *arg, const stor_machine_audit_t *a) {
  mach_pass_t *mp = arg;
  uplink_builder_t *b = mp->b;
  size_t len = 0;
  char dt[15];
  uplink_datatime((int64_t)floor(a->t), dt);
  cp_add(b, &len, "DataTime=%s,AuditId=%lld,Code=%s,Action=%s", dt, (long long)a->id, a->code,
         a->action);
  if (a->has_row) {
    const proto_machine_t *m = &a->row;
    cp_add(b, &len, ",Stage=%s,PowerKw=%.1f,Fuel=%s", proto_stage_name(m->stage), m->power_kw,
           proto_fuel_name(m->fuel));
    if (m->label[0])
      cp_add(b, &len, ",Label=%s", m->label);
    if (m->terminal[0])
      cp_add(b, &len, ",Terminal=%s", m->terminal);
    cp_text(b, &len, ";", "Type", m->type);
    if (m->owner[0])
      cp_text(b, &len, ";", "Owner", m->owner);
  }
  cp_text(b, &len, ";", "By", a->actor);
  cp_text(b, &len, ";", "Reason", a->reason);
  if ((mp->rc = pass_add_signed(b, "6051", (int64_t)floor(a->t), len, ';', mp->now)) != 0)
    return 1;
  b->mach_audit_id = a->id;
  return 0;
}

/* 6052: a machine through the gate, or entered by a person. */
static int on_mach_move(void *arg, const stor_move_t *mv) {
  mach_pass_t *mp = arg;
  uplink_builder_t *b = mp->b;
  size_t len = 0;
  char dt[15];
  uplink_datatime((int64_t)floor(mv->t), dt);
  cp_add(b, &len, "DataTime=%s,MoveId=%lld,Code=%s,Dir=%s,Source=%s", dt, (long long)mv->id,
         mv->code, mv->in ? "in" : "out", mv->source);
  if (mv->no > 0)
    cp_add(b, &len, ",Gate=%s,GateNo=%lld", mv->gate, (long long)mv->no);
  cp_text(b, &len, ";", "By", mv->actor);
  if ((mp->rc = pass_add_signed(b, "6052", (int64_t)floor(mv->t), len, ';', mp->now)) != 0)
    return 1;
  b->mach_move_id = mv->id;
  return 0;
}

typedef struct mach_days_acc {
  uplink_builder_t *b;
  size_t len, n;
  double fuel_l, co2_kg;
} mach_days_acc_t;

/* One record per machine: ";Code=..,Stage=..,...". Figures the terminal
 * did not give are left out. */
static int on_mach_day(void *arg, const uplink_machine_day_t *d) {
  mach_days_acc_t *a = arg;
  uplink_builder_t *b = a->b;
  size_t *len = &a->len;
  cp_add(b, len, ";Code=%s", d->code);
  if (d->stage)
    cp_add(b, len, ",Stage=%s,PowerKw=%.1f", d->stage, d->power_kw);
  else
    cp_add(b, len, ",Registered=0");
  cp_add(b, len, ",OnsiteH=%.2f", d->onsite_h);
  if (isfinite(d->engine_h))
    cp_add(b, len, ",EngineH=%.2f", d->engine_h);
  if (isfinite(d->idle_share))
    cp_add(b, len, ",IdleShare=%.2f", d->idle_share);
  if (isfinite(d->fuel_l)) {
    cp_add(b, len, ",FuelL=%.1f", d->fuel_l);
    a->fuel_l += d->fuel_l;
  }
  cp_add(b, len, ",Co2Kg=%.1f,NoxKg=%.3f,PmKg=%.4f", d->t_co2 * 1000.0, d->nox_kg, d->pm_kg);
  a->co2_kg += d->t_co2 * 1000.0;
  a->n++;
  return *len >= CP_MAX;
}

/* 6053 of local day [day, end): the site's machinery in sum, then one
 * record per machine on site or working; nothing when there was none. */
static int make_mach_day(uplink_builder_t *b, int64_t day, int64_t end, double now) {
  /* the machines' records first, behind room for the head */
  const size_t head_room = 160;
  mach_days_acc_t a = {.b = b, .len = head_room};
  int rc = machine_days(b->rd, b->cfg, day, end, on_mach_day, &a);
  if (rc != 0 || a.n == 0)
    return rc;
  if (a.len >= CP_MAX) {
    snprintf(b->error, sizeof(b->error), "CN 6053: message too long");
    return -EMSGSIZE;
  }
  char dt[15], head[160];
  uplink_datatime(day, dt);
  int hn =
      snprintf(head, sizeof(head), "DataTime=%s,Machines=%zu,FuelL=%.1f,Co2Kg=%.1f,EfFuel=%.4f", dt,
               a.n, a.fuel_l, a.co2_kg, b->cfg->energy_diesel_factor);
  memmove(b->cp + hn, b->cp + head_room, a.len - head_room);
  memcpy(b->cp, head, (size_t)hn);
  return pass_add_signed(b, "6053", day, a.len - head_room + (size_t)hn, ';', now);
}

static int make_machinery(uplink_builder_t *b, double now) {
  mach_pass_t mp = {.b = b, .now = now};
  size_t room = b->n < PASS_MAX ? PASS_MAX - b->n : 0;
  int rc = stor_machine_audit_after(b->rd, b->mach_audit_id, room / 2, on_mach_audit, &mp);
  if (rc == 0 && mp.rc == 0 && b->n < PASS_MAX)
    rc = stor_machine_moves_after(b->rd, b->mach_move_id, PASS_MAX - b->n, on_mach_move, &mp);
  return rc ? rc : mp.rc;
}

/* ---- the site profile (6061) */

int uplink_profile_fields(const sg_config_t *cfg, char *out, size_t cap) {
  char esc[PROFILE_MAX];
  if (hj212_escape(cfg->site_name, esc, sizeof(esc)) < 0)
    return -EMSGSIZE;
  int n = snprintf(out, cap, "Name=%s,AreaCastM2=%.1f,AreaPrefabM2=%.1f", esc, cfg->area_cast_m2,
                   cfg->area_prefab_m2);
  if (n > 0 && (size_t)n < cap && !isnan(cfg->latitude) && !isnan(cfg->longitude))
    n += snprintf(out + n, cap - (size_t)n, ",Lat=%.6f,Lon=%.6f", cfg->latitude, cfg->longitude);
  return n > 0 && (size_t)n < cap ? 0 : -EMSGSIZE;
}

/* A 6061 when the profile differs from the last one made (none at the
 * first start); b->profile is stored with the cursors. */
static int make_profile(uplink_builder_t *b, double now) {
  char f[PROFILE_MAX];
  int rc = uplink_profile_fields(b->cfg, f, sizeof(f));
  if (rc != 0) {
    snprintf(b->error, sizeof(b->error), "CN 6061: the site profile is too long");
    return rc;
  }
  if (strcmp(f, b->profile) == 0)
    return 0;
  int64_t t = (int64_t)now;
  char dt[15];
  uplink_datatime(t, dt);
  size_t len = 0;
  cp_add(b, &len, "DataTime=%s,%s", dt, f);
  if ((rc = pass_add_signed(b, "6061", t, len, ',', now)) == 0)
    memcpy(b->profile, f, sizeof(f));
  return rc;
}

/* ---- state */

static int64_t get_or(uplink_builder_t *b, const char *name, int64_t def) {
  int64_t v;
  return stor_outbox_get(b->rd, name, &v, NULL, 0) == 0 ? v : def;
}

static int load(uplink_builder_t *b, double now) {
  int64_t t = (int64_t)now;
  int rtd = b->cfg->uplink_rtd_s;
  b->next_rtd = get_or(b, "next_rtd", floor_to(t, rtd) + rtd);
  b->next_minute = get_or(b, "next_minute", floor_to(t, 60));
  b->next_hour = get_or(b, "next_hour", floor_to(t, 3600));
  b->next_day = get_or(b, "next_day", local_midnight(t, 0));
  b->next_seal = get_or(b, "next_seal", floor_to(t, 3600));
  b->next_energy = get_or(b, "next_energy", local_midnight(t, 0));
  b->ledger_id = get_or(b, "ledger_id", 0);
  b->alarm_seq = get_or(b, "alarm_seq", 0);
  b->mach_audit_id = get_or(b, "mach_audit_id", 0);
  b->next_mach_day = get_or(b, "next_mach_day", local_midnight(t, 0));
  b->mach_move_id = get_or(b, "mach_move_id", 0);
  b->chain_seq = get_or(b, "chain_seq", 0);
  memset(b->chain_hash, 0, 32);
  if (stor_outbox_get(b->rd, "profile", NULL, b->profile, sizeof(b->profile)) != 0)
    b->profile[0] = '\0';
  char h[80];
  if (stor_outbox_get(b->rd, "chain_hash", NULL, h, sizeof(h)) == 0 &&
      unhex(h, b->chain_hash, 32) != 0) {
    snprintf(b->error, sizeof(b->error), "outbox state: chain_hash is not 64 hex digits");
    return -EIO;
  }
  stor_ob_stats_t st;
  int rc = stor_outbox_stats(b->rd, &st);
  if (rc != 0)
    return rc;
  if (st.last_qn[0]) { /* QNs go on after the last one, whatever the clock says */
    int64_t s = uplink_parse_datatime(st.last_qn);
    if (s >= 0)
      b->last_qn_ms = s * 1000 + atoi(st.last_qn + 14);
  }
  /* Cursors never start further back than the catch-up limits. */
  int64_t min_t = t - CATCHUP_S;
  if (b->next_minute < min_t)
    b->next_minute = floor_to(min_t, 60);
  if (b->next_hour < min_t)
    b->next_hour = floor_to(min_t, 3600);
  if (b->next_seal < min_t)
    b->next_seal = floor_to(min_t, 3600);
  if (b->next_day < t - CATCHUP_DAYS_S)
    b->next_day = local_midnight(t - CATCHUP_DAYS_S, 0);
  if (b->next_energy < t - CATCHUP_DAYS_S)
    b->next_energy = local_midnight(t - CATCHUP_DAYS_S, 0);
  if (b->next_mach_day < t - CATCHUP_DAYS_S)
    b->next_mach_day = local_midnight(t - CATCHUP_DAYS_S, 0);
  b->loaded = true;
  return 0;
}

/* Stores the pass's messages with the cursors as they now stand. */
static int store(uplink_builder_t *b, uplink_build_result_t *res) {
  char hh[65];
  hj212_hex(b->chain_hash, 32, hh);
  const stor_ob_var_t vars[] = {
      {.name = "next_rtd", .i = b->next_rtd},
      {.name = "next_minute", .i = b->next_minute},
      {.name = "next_hour", .i = b->next_hour},
      {.name = "next_day", .i = b->next_day},
      {.name = "next_seal", .i = b->next_seal},
      {.name = "next_energy", .i = b->next_energy},
      {.name = "ledger_id", .i = b->ledger_id},
      {.name = "alarm_seq", .i = b->alarm_seq},
      {.name = "mach_audit_id", .i = b->mach_audit_id},
      {.name = "mach_move_id", .i = b->mach_move_id},
      {.name = "next_mach_day", .i = b->next_mach_day},
      {.name = "chain_seq", .i = b->chain_seq},
      {.name = "chain_hash", .s = hh},
      {.name = "profile", .s = b->profile},
  };
  stor_ob_msg_t *m = b->n ? calloc(b->n, sizeof(*m)) : NULL;
  if (b->n && !m)
    return -ENOMEM;
  for (size_t i = 0; i < b->n; i++)
    m[i] = b->msgs[i].m;
  stor_ob_added_t a;
  int rc = stor_outbox_add(b->gw->db, m, b->n, vars, sizeof(vars) / sizeof(vars[0]),
                           b->cfg->uplink_outbox_max, &a);
  free(m);
  if (rc == 0) {
    res->made += b->n;
    res->dropped += a.dropped;
    res->over = res->over || a.over;
  } else {
    snprintf(b->error, sizeof(b->error), "the outbox refused %zu messages: %s", b->n,
             strerror(-rc));
  }
  pass_clear(b);
  return rc;
}

/* ---- a pass */

/* How long after a period ends its frame is made, s: `lag_s`, but never
 * less than the storage's batch window and a second, since a reading
 * acknowledged in a period's last moment is read only once committed (at
 * most batch_ms later), and a frame made before would say Flag=B for a
 * minute that had data. */
static int64_t frame_lag(const sg_config_t *cfg) {
  int64_t commit = ((int64_t)cfg->batch_ms + 999) / 1000 + 1;
  return cfg->uplink_lag_s > commit ? cfg->uplink_lag_s : commit;
}

static int make_due(uplink_builder_t *b, double now) {
  const sg_config_t *cfg = b->cfg;
  int64_t t = (int64_t)now, lag = frame_lag(cfg);
  int rc = 0;
  if (!b->restart_made) {
    char dt[15], rt[15];
    uplink_datatime(t, dt);
    uplink_datatime((int64_t)b->gw->started, rt);
    size_t len = 0;
    cp_add(b, &len, "DataTime=%s;RestartTime=%s", dt, rt);
    if ((rc = pass_add(b, "2081", STOR_OB_OTHER, t, 0, len, now)) != 0)
      return rc;
  }
  /* The site profile, first of the signed records of a start. */
  if ((rc = make_profile(b, now)) != 0)
    return rc;
  /* Ledger entries, in chain order. */
  for (int k = 0; k < 200 && b->n < PASS_MAX; k++) {
    stor_ticket_t tk;
    rc = stor_ticket_get(b->rd, b->ledger_id + 1, &tk);
    if (rc == -ENOENT) {
      rc = 0;
      break;
    }
    if (rc != 0 || (rc = make_ticket(b, &tk, now)) != 0)
      return rc;
    b->ledger_id = tk.id;
  }
  /* Alarm events. */
  alarm_pass_t ap = {.b = b, .now = now};
  if ((rc = stor_outbox_alarm_events(b->rd, b->alarm_seq, 200, on_alarm_event, &ap)) != 0)
    return rc;
  if (ap.rc != 0)
    return ap.rc;
  /* The machinery register's changes and the machines' entries and exits. */
  if ((rc = make_machinery(b, now)) != 0)
    return rc;
  /* Real-time data: the latest tick only (real time is not caught up). */
  int64_t rtd = cfg->uplink_rtd_s;
  if (t >= b->next_rtd) {
    int64_t tick = floor_to(t, rtd);
    if ((b->bits & SG_UPLINK_RTD) && (rc = make_env(b, K_RTD, tick - rtd, tick, now)) != 0)
      return rc;
    b->next_rtd = tick + rtd;
  }
  while (b->next_minute + 60 + lag <= t && b->n < PASS_MAX) {
    if ((b->bits & SG_UPLINK_MINUTE) &&
        (rc = make_env(b, K_MINUTE, b->next_minute, b->next_minute + 60, now)) != 0)
      return rc;
    b->next_minute += 60;
  }
  while (b->next_hour + 3600 + lag <= t && b->n < PASS_MAX) {
    if ((b->bits & SG_UPLINK_HOUR) &&
        (rc = make_env(b, K_HOUR, b->next_hour, b->next_hour + 3600, now)) != 0)
      return rc;
    b->next_hour += 3600;
  }
  for (;;) {
    int64_t end = local_midnight(b->next_day + 43200, 1); /* noon keeps DST days right */
    if (end + lag > t || b->n >= PASS_MAX)
      break;
    if ((b->bits & SG_UPLINK_DAY) && (rc = make_env(b, K_DAY, b->next_day, end, now)) != 0)
      return rc;
    b->next_day = end;
  }
  /* Daily energy once the equipment has stored its last figures of the day. */
  for (;;) {
    int64_t end = local_midnight(b->next_energy + 43200, 1);
    if (end + lag + 2 * (int64_t)cfg->energy_persist_s > t || b->n >= PASS_MAX)
      break;
    if ((rc = make_energy(b, b->next_energy, now)) != 0)
      return rc;
    b->next_energy = end;
  }
  /* The machinery's day, once the terminals have had time to report. */
  for (;;) {
    int64_t end = local_midnight(b->next_mach_day + 43200, 1);
    if (end + lag + MACH_DAY_WAIT_S > t || b->n >= PASS_MAX)
      break;
    if (machine_days && (rc = make_mach_day(b, b->next_mach_day, end, now)) != 0)
      return rc;
    b->next_mach_day = end;
  }
  return 0;
}

/* The 6041 of each hour whose frames are all made. */
static int make_seals(uplink_builder_t *b, double now, uplink_build_result_t *res);

typedef struct digest_acc {
  char *buf;
  size_t len, cap;
  int64_t frames;
  int rc;
} digest_acc_t;

/* Appends each packet's data segment ("##NNNN" and the CRC cut off), with
 * CRLF, in the order the outbox gives them (QN order, PNO order within). */
static int on_env_frame(void *arg, const stor_ob_msg_t *m) {
  digest_acc_t *d = arg;
  const char *p = m->frames, *end = m->frames + m->frames_len;
  while (p < end) {
    const char *eol = memchr(p, '\n', (size_t)(end - p));
    if (!eol)
      eol = end;
    size_t line = (size_t)(eol - p);
    if (line > 0 && p[line - 1] == '\r')
      line--;
    if (line >= 10) {
      size_t n = line - 10; /* "##NNNN" and 4 CRC digits */
      if (d->len + n + 2 > d->cap) {
        size_t cap = (d->len + n + 2) * 2;
        char *q = realloc(d->buf, cap);
        if (!q) {
          d->rc = -ENOMEM;
          return 1;
        }
        d->buf = q;
        d->cap = cap;
      }
      memcpy(d->buf + d->len, p + 6, n);
      memcpy(d->buf + d->len + n, "\r\n", 2);
      d->len += n + 2;
      d->frames++;
    }
    p = eol + 1;
  }
  return 0;
}

static int make_seals(uplink_builder_t *b, double now, uplink_build_result_t *res) {
  const sg_config_t *cfg = b->cfg;
  if (!(b->bits & (SG_UPLINK_RTD | SG_UPLINK_MINUTE | SG_UPLINK_HOUR)))
    return 0;
  int64_t t = (int64_t)now, before = b->next_seal;
  for (int k = 0; k < SEALS_PER_PASS; k++) {
    int64_t h = b->next_seal, end = h + 3600;
    if (end + frame_lag(cfg) > t || b->next_minute < end || b->next_hour < end || b->next_rtd < end)
      break;
    digest_acc_t d = {0};
    int rc = stor_outbox_env_frames(b->rd, h, end, on_env_frame, &d);
    if (rc == 0)
      rc = d.rc;
    if (rc == 0 && d.frames > 0) {
      uint8_t dg[32];
      char dh[65], dt[15];
      proto_sha256(d.buf, d.len, NULL, 0, dg);
      hj212_hex(dg, 32, dh);
      uplink_datatime(h, dt);
      size_t len = 0;
      cp_add(b, &len, "DataTime=%s,Frames=%lld,Digest=%s", dt, (long long)d.frames, dh);
      rc = pass_add_signed(b, "6041", h, len, ',', now);
    }
    free(d.buf);
    if (rc != 0)
      return rc;
    b->next_seal = end;
  }
  return b->n || b->next_seal != before ? store(b, res) : 0;
}

void uplink_builder_run(uplink_builder_t *b, double now, uplink_build_result_t *res) {
  memset(res, 0, sizeof(*res));
  b->error[0] = '\0';
  int rc = 0;
  if (!b->rd && (rc = stor_reader_open(b->cfg->db_path, &b->rd)) != 0)
    snprintf(b->error, sizeof(b->error), "cannot read the database: %s", strerror(-rc));
  if (rc == 0 && !b->loaded)
    rc = load(b, now);
  if (rc == 0) {
    memset(b->has, 0, b->cfg->n_devices * N_POLLUTANTS * sizeof(*b->has));
    rc = stor_latest(b->rd, on_series, b);
  }
  if (rc == 0)
    rc = make_due(b, now);
  if (rc == 0)
    rc = store(b, res);
  if (rc == 0)
    b->restart_made = true;
  if (rc == 0)
    rc = make_seals(b, now, res);
  if (rc == 0 && now >= b->next_retention) {
    b->next_retention = now + RETENTION_EVERY_S;
    int64_t n = stor_outbox_retention(b->gw->db,
                                      (int64_t)((now - b->cfg->uplink_keep_days * 86400.0) * 1000));
    if (n > 0)
      log_info("outbox: %lld acknowledged frames older than %d days deleted", (long long)n,
               b->cfg->uplink_keep_days);
  }
  if (rc != 0) {
    pass_clear(b);
    b->loaded = false; /* the cursors and the chain as stored, next pass */
    res->err = rc;
    snprintf(res->error, sizeof(res->error), "%s",
             b->error[0] ? b->error : strerror(rc < 0 ? -rc : rc));
  }
  res->chain_seq = b->chain_seq;
}

int uplink_builder_new(gw_t *gw, uplink_builder_t **out, char *err, size_t errlen) {
  *out = NULL;
  uplink_builder_t *b = calloc(1, sizeof(*b));
  if (!b)
    return -ENOMEM;
  b->gw = gw;
  b->cfg = gw->cfg;
  b->bits = sg_uplink_intervals(gw->cfg->uplink_intervals);
  b->cp = malloc(CP_MAX);
  int rc = b->cp ? sources_open(b) : -ENOMEM;
  if (rc == 0)
    rc = gtls_signer_new(gw->cfg->uplink_key, &b->signer, err, errlen);
  if (rc != 0) {
    if (rc == -ENOMEM)
      snprintf(err, errlen, "out of memory");
    uplink_builder_free(b);
    return rc;
  }
  *out = b;
  return 0;
}

void uplink_builder_free(uplink_builder_t *b) {
  if (!b)
    return;
  pass_clear(b);
  free(b->msgs);
  stor_reader_close(b->rd);
  gtls_signer_free(b->signer);
  free(b->dev);
  free(b->dev_interval);
  free(b->has);
  free(b->cp);
  free(b);
}
