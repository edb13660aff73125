/* The site configuration file (DESIGN.md "Site configuration").
 *
 * inih (Debian's libinih) splits the file into section/key/value; everything
 * else is the tables below: one row per key with where it is stored, its
 * range and its default. A key that is not in a table, a value out of range
 * or a missing required key stops start-up with "file:line: message".
 * Global sections fill sg_config_t; each [device ID] section fills one
 * sg_device_t. Line numbers come from our own reader wrapped around fgets,
 * since inih reports them only for the first error. The reader also sees the
 * [section] headers (begin_section), so a section is checked even when it has
 * no keys, a device gets the line of its header, and ids are not cut to
 * inih's 50-byte section names. */
#include "common/common.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <ini.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

/* OPT_STR fills a char array; OPT_PSTR sets a const char * to a copy in
 * the config's string storage (chunks that never move, below). */
typedef enum { OPT_STR, OPT_PSTR, OPT_INT, OPT_DBL, OPT_DEVTYPE, OPT_BOOL } opt_kind_t;

typedef struct opt {
  const char *section; /* "site", ...; "device" for [device ID] keys */
  const char *key;
  opt_kind_t kind;
  size_t off;  /* into sg_config_t, or sg_device_t for "device" */
  size_t size; /* OPT_STR: buffer size; OPT_PSTR: longest value + 1 */
  double min, max;
  const char *def; /* NULL: required (where it matters) or empty */
} opt_t;

#define G(f) offsetof(sg_config_t, f), sizeof(((sg_config_t *)0)->f)
#define D(f) offsetof(sg_device_t, f), sizeof(((sg_device_t *)0)->f)
#define DS(f, max) offsetof(sg_device_t, f), (max) + 1
#define GR(f) offsetof(sg_group_t, f), sizeof(((sg_group_t *)0)->f)

static const opt_t options[] = {
    /* section  key                    kind     where            min    max     default */
    {"site", "id", OPT_STR, G(site_id), 0, 0, NULL},
    {"site", "name", OPT_STR, G(site_name), 0, 0, ""},
    {"site", "timezone", OPT_STR, G(timezone), 0, 0, "Asia/Shanghai"},
    {"site", "area_cast_in_place_m2", OPT_DBL, G(area_cast_m2), 0, 1e8, "0"},
    {"site", "area_prefab_m2", OPT_DBL, G(area_prefab_m2), 0, 1e8, "0"},
    {"site", "progress", OPT_DBL, G(progress), 0, 1, "0"},
    /* WGS-84 decimal degrees; empty (the default) when not known */
    {"site", "latitude", OPT_DBL, G(latitude), -90, 90, ""},
    {"site", "longitude", OPT_DBL, G(longitude), -180, 180, ""},
    {"storage", "path", OPT_STR, G(db_path), 0, 0, "/var/lib/sitegate/sitegate.db"},
    {"storage", "raw_days", OPT_INT, G(raw_days), 1, 3650, "31"},
    {"storage", "batch_ms", OPT_INT, G(batch_ms), 1, 10000, "5000"},
    {"storage", "batch_readings", OPT_INT, G(batch_readings), 100, 5000000, "16384"},
    {"storage", "queue_max", OPT_INT, G(queue_max), 1000, 10000000, "200000"},
    {"coap", "listen", OPT_STR, G(coap_listen), 0, 0, "0.0.0.0"},
    {"coap", "port", OPT_INT, G(coap_port), 1, 65535, "5683"},
    {"coap", "dtls_port", OPT_INT, G(dtls_port), 0, 65535, "5684"},
    {"coap", "max_body", OPT_INT, G(max_body), 256, 1048576, "65536"},
    {"http", "listen", OPT_STR, G(http_listen), 0, 0, "127.0.0.1:8080"},
    {"http", "token", OPT_STR, G(http_token), 0, 0, ""},
    /* names the API answers to besides its address and localhost (DNS
     * rebinding: a browser sends the page's name as Host) */
    {"http", "hosts", OPT_STR, G(http_hosts), 0, 0, ""},
    /* the dashboard's files; empty: ../share/sitegate/web beside the program */
    {"http", "web_root", OPT_STR, G(http_web_root), 0, 0, ""},
    /* [noise]: GB 12523-2011, 建筑施工场界环境噪声排放标准. Local rules differ,
     * so hours and limits are settings (the standard's 3 lets a county move
     * the day/night boundary). Hours are local, fractional (21.5 = 21:30). */
    /* day starts (GB 12523-2011 3: 昼间 06:00-22:00) */
    {"noise", "day_start", OPT_DBL, G(noise_day_start_h), 0, 24, "6"},
    /* night starts (GB 12523-2011 3: 夜间 22:00-06:00) */
    {"noise", "night_start", OPT_DBL, G(noise_night_start_h), 0, 24, "22"},
    /* LAeq limits, dB(A) (GB 12523-2011 4.1, table 1: 70 day, 55 night) */
    {"noise", "day_limit", OPT_DBL, G(noise_day_limit), 20, 140, "70"},
    {"noise", "night_limit", OPT_DBL, G(noise_night_limit), 20, 140, "55"},
    /* night Lmax may exceed the limit by at most this, dB (GB 12523-2011 4.2) */
    {"noise", "night_lmax_margin", OPT_DBL, G(noise_lmax_margin), 0, 60, "15"},
    /* 1: measured inside a noise-sensitive building, limits - 10 dB (4.3) */
    {"noise", "indoor", OPT_INT, G(noise_indoor), 0, 1, "0"},
    /* the LAeq window, minutes (GB 12523-2011 5.4: a continuous 20 min) */
    {"noise", "window_min", OPT_INT, G(noise_window_min), 1, 60, "20"},
    /* longest time one `la` reading stands for, s (meters send 1-s LAeq) */
    {"noise", "sample_s", OPT_DBL, G(noise_sample_s), 0.1, 3600, "1"},
    /* measured share of a window below which it is incomplete, never
     * compliant (the 45-of-60-minutes habit of GB 3095-2012 data validity) */
    {"noise", "complete_share", OPT_DBL, G(noise_complete_share), 0.01, 1, "0.75"},
    /* warning this many dB below the limit (0: alarms only; project rule) */
    {"noise", "warn_margin", OPT_DBL, G(noise_warn_margin), 0, 30, "3"},
    /* [dust]: no national limit for a site boundary; the levels follow
     * published local practice (demo: PM10 hourly warning 150, alarm 200
     * ug/m3). Averages over a short and a long clock-aligned window. */
    {"dust", "short_min", OPT_INT, G(dust_short_min), 1, 1440, "15"},
    {"dust", "long_min", OPT_INT, G(dust_long_min), 1, 1440, "60"},
    /* warning and alarm levels, ug/m3; 0 leaves the level out */
    {"dust", "pm10_short_warn", OPT_DBL, G(dust_pm10_short_warn), 0, 100000, "0"},
    {"dust", "pm10_short_alarm", OPT_DBL, G(dust_pm10_short_alarm), 0, 100000, "0"},
    {"dust", "pm10_long_warn", OPT_DBL, G(dust_pm10_long_warn), 0, 100000, "150"},
    {"dust", "pm10_long_alarm", OPT_DBL, G(dust_pm10_long_alarm), 0, 100000, "200"},
    {"dust", "pm2_5_short_warn", OPT_DBL, G(dust_pm2_5_short_warn), 0, 100000, "0"},
    {"dust", "pm2_5_short_alarm", OPT_DBL, G(dust_pm2_5_short_alarm), 0, 100000, "0"},
    {"dust", "pm2_5_long_warn", OPT_DBL, G(dust_pm2_5_long_warn), 0, 100000, "0"},
    {"dust", "pm2_5_long_alarm", OPT_DBL, G(dust_pm2_5_long_alarm), 0, 100000, "0"},
    {"dust", "tsp_short_warn", OPT_DBL, G(dust_tsp_short_warn), 0, 100000, "0"},
    {"dust", "tsp_short_alarm", OPT_DBL, G(dust_tsp_short_alarm), 0, 100000, "0"},
    {"dust", "tsp_long_warn", OPT_DBL, G(dust_tsp_long_warn), 0, 100000, "0"},
    {"dust", "tsp_long_alarm", OPT_DBL, G(dust_tsp_long_alarm), 0, 100000, "0"},
    /* long windows at alarm level allowed per local day, per quantity (0: no rule) */
    {"dust", "max_exceed_day", OPT_INT, G(dust_max_exceed_day), 0, 1440, "0"},
    /* readings above this RH are unreliable (light scattering over-reads in fog) */
    {"dust", "rh_unreliable", OPT_DBL, G(dust_rh_max), 50, 100, "95"},
    {"dust", "complete_share", OPT_DBL, G(dust_complete_share), 0.01, 1, "0.75"},
    /* [health]: each check becomes an alarm (health.*) */
    /* offline after this many missed reporting intervals: the health.offline
     * alarm, and "online" in /api/status and /metrics */
    {"health", "offline_intervals", OPT_INT, G(health_offline_intervals), 1, 1000, "3"},
    /* identical readings for this long is a stuck sensor, minutes */
    {"health", "flatline_min", OPT_DBL, G(health_flatline_min), 1, 10080, "30"},
    /* newest reading time vs. time of receipt, s */
    {"health", "skew_s", OPT_DBL, G(health_skew_s), 1, 86400, "120"},
    /* interference at a dust station: RH up by rh_jump %RH while PM10 falls
     * by pm_drop of its value, both within jump_s (spraying the sensor) */
    {"health", "rh_jump", OPT_DBL, G(health_rh_jump), 1, 100, "20"},
    {"health", "pm_drop", OPT_DBL, G(health_pm_drop), 0.05, 1, "0.5"},
    {"health", "jump_s", OPT_DBL, G(health_jump_s), 10, 3600, "300"},
    /* [waste]: construction waste against the national 2020 limits, t per
     * 10,000 m2 of floor area (300 cast in place, 200 prefabricated);
     * alarms (waste.allowance) at these shares of the allowance */
    {"waste", "limit_cast_t_per_10k_m2", OPT_DBL, G(waste_limit_cast), 0, 10000, "300"},
    {"waste", "limit_prefab_t_per_10k_m2", OPT_DBL, G(waste_limit_prefab), 0, 10000, "200"},
    {"waste", "alarm_warn_share", OPT_DBL, G(waste_warn_share), 0.01, 10, "0.8"},
    {"waste", "alarm_share", OPT_DBL, G(waste_alarm_share), 0.01, 10, "1.0"},
    /* the projection to completion uses the discharge per unit of progress
     * over this many recent days, when progress rose by at least min_gain */
    {"waste", "projection_window_days", OPT_INT, G(waste_window_days), 1, 3650, "30"},
    {"waste", "projection_min_gain", OPT_DBL, G(waste_min_gain), 0.001, 1, "0.02"},
    /* resource-utilisation target, share of generated waste (2030: 55%) */
    {"waste", "utilisation_target", OPT_DBL, G(waste_util_target), 0, 1, "0.55"},
    /* 2020 loss-rate baselines per material id (as tickets and the BoQ name
     * them), percent; the target is loss_target_factor x baseline */
    {"waste", "loss_baseline_rebar_pct", OPT_DBL, G(waste_loss_rebar), 0, 100, "2.5"},
    {"waste", "loss_baseline_concrete_pct", OPT_DBL, G(waste_loss_concrete), 0, 100, "1.5"},
    {"waste", "loss_baseline_blocks_pct", OPT_DBL, G(waste_loss_blocks), 0, 100, "1.0"},
    {"waste", "loss_baseline_formwork_timber_pct", OPT_DBL, G(waste_loss_timber), 0, 100, "5.0"},
    {"waste", "loss_target_factor", OPT_DBL, G(waste_loss_target_factor), 0, 1, "0.8"},
    {"device", "type", OPT_DEVTYPE, D(type), 0, 0, NULL},
    {"device", "psk", OPT_PSTR, DS(psk, SG_PSK_MAX), 0, 0, ""},
    /* no psk: plain CoAP, which anyone on the LAN can forge (issue 13) */
    {"device", "insecure", OPT_BOOL, D(insecure), 0, 0, "no"},
    {"device", "interval_s", OPT_INT, D(interval_s), 1, 86400, "60"},
    {"device", "group", OPT_PSTR, DS(group, SG_ID_MAX), 0, 0, ""},
    {"device", "kind", OPT_PSTR, DS(kind, SG_KIND_MAX), 0, 0, ""},
    {"device", "rated_kw", OPT_DBL, D(rated_kw), 0, 100000, "0"},
    {"device", "priority", OPT_INT, D(priority), 0, 1000, "0"},
    {"device", "coap", OPT_PSTR, DS(coap, SG_URI_MAX), 0, 0, ""},
    /* scales: the division, kg (a 100 t weighbridge reads in 20 kg steps) */
    {"device", "resolution_kg", OPT_DBL, D(resolution_kg), 0.001, 1000, "20"},
    {"device", "heartbeat_s", OPT_INT, D(heartbeat_s), 0, 2592000, "0"},
    /* [energy]: carbon factors and the timing of group control
     * (gateway/equipment/equipment.h) */
    /* t CO2 per MWh of grid electricity (national average published in 2023) */
    {"energy", "grid_factor_t_per_mwh", OPT_DBL, G(energy_grid_factor), 0, 10, "0.5703"},
    /* kg CO2 per litre of diesel (GB/T 32151 defaults at 0.85 kg/l) */
    {"energy", "diesel_factor_kg_per_l", OPT_DBL, G(energy_diesel_factor), 0, 10, "2.63"},
    /* how often the group policies are evaluated, s */
    {"energy", "evaluate_s", OPT_DBL, G(energy_evaluate_s), 0.2, 3600, "5"},
    /* a unit must show the commanded state in its /state within this, s */
    {"energy", "follow_s", OPT_DBL, G(energy_follow_s), 1, 3600, "30"},
    /* commands sent (first one included) before "did not follow" */
    {"energy", "retries", OPT_INT, G(energy_retries), 1, 10, "3"},
    /* daily figures are stored this often, s (and at stop) */
    {"energy", "persist_s", OPT_DBL, G(energy_persist_s), 1, 3600, "60"},
    /* [group NAME]: equipment of one kind controlled together. Every
     * policy is off by default; they combine (gateway/equipment/equipment.h). */
    /* the group's units (default: the equipment whose group is NAME); when
     * given, it must list exactly those */
    {"group", "members", OPT_STR, GR(members), 0, 0, ""},
    /* keep the group's power under this, kW, shedding the lowest priority */
    {"group", "peak_kw", OPT_DBL, GR(peak_kw), 0, 100000, "0"},
    /* restore a shed unit only while this share of peak_kw stays free */
    {"group", "peak_margin", OPT_DBL, GR(peak_margin), 0, 0.9, "0.1"},
    /* minimum on and off times, minutes (no chattering) */
    {"group", "min_on_min", OPT_DBL, GR(min_on_min), 0, 1440, "5"},
    {"group", "min_off_min", OPT_DBL, GR(min_off_min), 0, 1440, "5"},
    /* switch off a unit idle for this long, minutes (0: never) */
    {"group", "idle_off_min", OPT_DBL, GR(idle_off_min), 0, 10080, "0"},
    /* keep this many units in service, rotating by run-hours (0: no duty) */
    {"group", "duty", OPT_INT, GR(duty), 0, 1000, "0"},
    /* swap a running unit for a resting one this many run-hours behind */
    {"group", "rotate_h", OPT_DBL, GR(rotate_h), 0.01, 10000, "8"},
    /* allowed hours: always, day or night (the [noise] periods), or local
     * ranges 07:00-12:00,13:00-19:00 */
    {"group", "schedule", OPT_STR, GR(schedule), 0, 0, "always"},
    /* fog cannons and sprays: a dust device whose PM10 they follow, or any */
    {"group", "dust_linkage", OPT_STR, GR(dust_linkage), 0, 0, ""},
    /* the dust level that switches them on: warning or alarm */
    {"group", "dust_level", OPT_STR, GR(dust_level), 0, 0, "warning"},
    /* once on for dust, run at least this long, minutes */
    {"group", "dust_min_run_min", OPT_DBL, GR(dust_min_run_min), 0, 1440, "15"},
    /* never spray below this air temperature, Cel (frozen lines, iced roads) */
    {"group", "freeze_c", OPT_DBL, GR(freeze_c), -60, 40, "2"},
    /* the weather or dust device whose temp counts (default: any) */
    {"group", "temp_source", OPT_STR, GR(temp_source), 0, 0, ""},
    /* state thresholds, kW: off below off_kw, idle below idle_kw (0: by kind) */
    {"group", "off_kw", OPT_DBL, GR(off_kw), 0, 100000, "0"},
    {"group", "idle_kw", OPT_DBL, GR(idle_kw), 0, 100000, "0"},
    /* [uplink]: HJ 212-2017 over mutual TLS to the authority's sitegate-rx
     * (protocol/UPLINK.md). Empty host: no uplink. */
    {"uplink", "host", OPT_STR, G(uplink_host), 0, 0, ""},
    {"uplink", "port", OPT_INT, G(uplink_port), 1, 65535, "9212"},
    /* the name checked against the receiver's certificate (default: host) */
    {"uplink", "server_name", OPT_STR, G(uplink_server_name), 0, 0, ""},
    /* the authority's CA (the only one trusted), this gateway's certificate
     * (subject CN = [site] id) and its EC P-256 key, which also signs the
     * ledger records (deploy/pki/) */
    {"uplink", "ca", OPT_STR, G(uplink_ca), 0, 0, ""},
    {"uplink", "cert", OPT_STR, G(uplink_cert), 0, 0, ""},
    {"uplink", "key", OPT_STR, G(uplink_key), 0, 0, ""},
    /* HJ 212 PW (access password) and ST (39: construction-site dust) */
    {"uplink", "pw", OPT_STR, G(uplink_pw), 0, 0, "123456"},
    {"uplink", "st", OPT_STR, G(uplink_st), 0, 0, "39"},
    /* what environmental data to send: rtd (2011), minute (2051), hour
     * (2061), day (2031) */
    {"uplink", "intervals", OPT_STR, G(uplink_intervals), 0, 0, "rtd minute hour day"},
    /* devices whose readings are sent (default: every dust, noise, weather) */
    {"uplink", "devices", OPT_STR, G(uplink_devices), 0, 0, ""},
    /* real-time (2011) interval, s (HJ 212's RtdInterval) */
    {"uplink", "rtd_interval_s", OPT_INT, G(uplink_rtd_s), 1, 3600, "60"},
    /* wait after a minute, hour or day ends before its frame is made, s */
    {"uplink", "lag_s", OPT_INT, G(uplink_lag_s), 0, 600, "20"},
    /* HJ 212 OverTime (s) and ReCount: resend an unacknowledged message
     * after overtime_s, at most recount times, then reconnect */
    {"uplink", "overtime_s", OPT_INT, G(uplink_overtime_s), 1, 600, "10"},
    {"uplink", "recount", OPT_INT, G(uplink_recount), 0, 10, "3"},
    /* messages sent ahead of their acknowledgements (1: one at a time) */
    {"uplink", "window", OPT_INT, G(uplink_window), 1, 1024, "64"},
    /* pending messages kept; beyond, the oldest real-time ones are dropped
     * (never minute, hour or day data, ledger records or alarms) */
    {"uplink", "outbox_max", OPT_INT, G(uplink_outbox_max), 100, 10000000, "100000"},
    /* acknowledged frames kept this long for the authority's history pulls */
    {"uplink", "keep_days", OPT_INT, G(uplink_keep_days), 1, 3650, "7"},
    /* longest wait between reconnection attempts, s (jittered, doubling) */
    {"uplink", "backoff_max_s", OPT_INT, G(uplink_backoff_max_s), 1, 3600, "300"},
    /* an alarm (uplink.down) once disconnected this long, s */
    {"uplink", "down_alarm_s", OPT_INT, G(uplink_down_alarm_s), 10, 86400, "900"},
    /* [machinery]: the zone's rule for non-road mobile machinery
     * (gateway/machinery/machinery.h); alarms machinery.unregistered,
     * machinery.stage and machinery.smoke */
    /* the lowest engine emission stage allowed (GB 20891-2014): 0, I, II,
     * III or IV; electric machines always are */
    {"machinery", "min_stage", OPT_STR, G(machinery_min_stage), 0, 0, "III"},
    /* 1: a machine on site must be in the register */
    {"machinery", "require_registration", OPT_INT, G(machinery_require_registration), 0, 1, "1"},
    /* smoke, light absorption coefficient, 1/m: meant as GB 36886-2018
     * clause 4 table 1, class II, 37 kW and more; the value is not
     * confirmed against the standard (deploy/CONFIG.md). 0: no smoke rule */
    {"machinery", "opacity_limit_per_m", OPT_DBL, G(machinery_opacity_limit), 0, 10, "0.8"},
    /* a terminal's reading keeps its machine on site this long, minutes */
    {"machinery", "presence_min", OPT_DBL, G(machinery_presence_min), 1, 1440, "15"},
};
#define N_OPTIONS (sizeof(options) / sizeof(options[0]))

static size_t opt_index(const char *section, const char *key) {
  for (size_t i = 0; i < N_OPTIONS; i++)
    if (strcmp(options[i].section, section) == 0 && strcmp(options[i].key, key) == 0)
      return i;
  return N_OPTIONS; /* not reached for the keys this file asks for */
}

bool sg_config_option(size_t i, sg_config_option_t *out) {
  static const char *const type_names[] = {
      [OPT_STR] = "string", [OPT_PSTR] = "string",         [OPT_INT] = "integer",
      [OPT_DBL] = "number", [OPT_DEVTYPE] = "device type", [OPT_BOOL] = "boolean"};
  if (i >= N_OPTIONS)
    return false;
  const opt_t *o = &options[i];
  *out =
      (sg_config_option_t){.section = o->section,
                           .key = o->key,
                           .type = type_names[o->kind],
                           .min = o->min,
                           .max = o->max,
                           .max_len = o->kind == OPT_STR || o->kind == OPT_PSTR ? o->size - 1 : 0,
                           .def = o->def};
  return true;
}

static const char *const devtype_names[] = {
    [SG_DEV_DUST] = "dust",       [SG_DEV_NOISE] = "noise",         [SG_DEV_WEATHER] = "weather",
    [SG_DEV_ENERGY] = "energy",   [SG_DEV_EQUIPMENT] = "equipment", [SG_DEV_SCALE] = "scale",
    [SG_DEV_MACHINE] = "machine", [SG_DEV_GATE] = "gate",
};

const char *sg_devtype_name(sg_devtype_t t) {
  return (unsigned)t < sizeof(devtype_names) / sizeof(devtype_names[0]) ? devtype_names[t] : "?";
}

/* Parser state shared by the reader and the handler. */
typedef struct parse {
  const char *name;        /* file name for messages */
  const char *text;        /* remaining input */
  int line;                /* line number of the line inih is handling */
  bool seen[N_OPTIONS];    /* global keys set explicitly */
  int key_line[N_OPTIONS]; /* ... and the line where */
  char cur_section[96];
  sg_device_t *cur_dev; /* the [device ID] being filled, or NULL */
  bool *dev_seen;       /* per-device keys set, N_OPTIONS per device */
  size_t dev_cap;
  sg_group_t *cur_group; /* the [group NAME] being filled, or NULL */
  bool *grp_seen;        /* per-group keys set, N_OPTIONS per group */
  size_t grp_cap;
  sg_config_t *cfg;
  char *err;
  size_t errlen;
  bool failed;
} parse_t;

static void fail(parse_t *p, int line, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void fail(parse_t *p, int line, const char *fmt, ...) {
  if (p->failed)
    return; /* the first error is the one to fix */
  p->failed = true;
  int n = snprintf(p->err, p->errlen, "%s:%d: ", p->name, line);
  if (n < 0 || (size_t)n >= p->errlen)
    return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(p->err + n, p->errlen - (size_t)n, fmt, ap);
  va_end(ap);
}

static void begin_section(parse_t *p, const char *line);

/* fgets-like reader over a string that counts lines. */
static char *reader(char *buf, int size, void *stream) {
  parse_t *p = stream;
  if (*p->text == '\0' || p->failed)
    return NULL; /* the first error is the one to fix */
  const char *nl = strchr(p->text, '\n');
  size_t len = nl ? (size_t)(nl - p->text) + 1 : strlen(p->text);
  p->line++;
  /* inih needs room for the line and "\r\n\0" */
  if (len - (nl != NULL) + 3 > (size_t)size) {
    fail(p, p->line, "line is longer than %d characters", size - 3);
    buf[0] = '\0'; /* inih sees an empty line; the error stops the parse */
  } else {
    memcpy(buf, p->text, len);
    buf[len] = '\0';
    begin_section(p, buf);
  }
  p->text += len;
  return buf;
}

static bool valid_id(const char *s) {
  size_t n = strlen(s);
  if (n == 0 || n > SG_ID_MAX)
    return false;
  for (; *s; s++)
    if (!isalnum((unsigned char)*s) && *s != '.' && *s != '_' && *s != '-')
      return false;
  return true;
}

/* ---- string storage: chunks that never move, freed with the config */

#define STRINGS_CHUNK 16384

struct sg_strings {
  struct sg_strings *next;
  size_t used;
  char text[STRINGS_CHUNK];
};

/* A copy of `s` (at most STRINGS_CHUNK bytes) that lives as long as `c`;
 * "" for an empty one. NULL when out of memory. */
static const char *strings_add(sg_config_t *c, const char *s) {
  size_t n = strlen(s) + 1;
  if (n == 1)
    return "";
  struct sg_strings *k = c->strings;
  if (!k || STRINGS_CHUNK - k->used < n) {
    if (!(k = malloc(sizeof(*k))))
      return NULL;
    k->next = c->strings;
    k->used = 0;
    c->strings = k;
  }
  char *out = memcpy(k->text + k->used, s, n);
  k->used += n;
  return out;
}

static int set_value(parse_t *p, const opt_t *o, const char *sect, void *base, const char *value) {
  char *end;
  void *where = (char *)base + o->off;
  switch (o->kind) {
  case OPT_STR:
  case OPT_PSTR:
    if (strlen(value) >= o->size) {
      fail(p, p->line, "[%s] %s: value is longer than %zu characters", sect, o->key, o->size - 1);
      return -1;
    }
    if (o->kind == OPT_STR) {
      strcpy(where, value);
    } else {
      const char *copy = strings_add(p->cfg, value);
      if (!copy) {
        fail(p, p->line, "out of memory");
        return -1;
      }
      *(const char **)where = copy;
    }
    return 0;
  case OPT_INT: {
    errno = 0;
    long v = strtol(value, &end, 10);
    if (errno || end == value || *end != '\0') {
      fail(p, p->line, "[%s] %s: \"%s\" is not a whole number", sect, o->key, value);
      return -1;
    }
    if (v < o->min || v > o->max) {
      fail(p, p->line, "[%s] %s: %ld is out of range %.0f..%.0f", sect, o->key, v, o->min, o->max);
      return -1;
    }
    *(int *)where = (int)v;
    return 0;
  }
  case OPT_DBL: {
    if (value[0] == '\0' && o->def && o->def[0] == '\0') { /* optional: not known */
      *(double *)where = NAN;
      return 0;
    }
    errno = 0;
    double v = strtod(value, &end);
    if (errno || end == value || *end != '\0' || !isfinite(v)) {
      fail(p, p->line, "[%s] %s: \"%s\" is not a number", sect, o->key, value);
      return -1;
    }
    if (v < o->min || v > o->max) {
      fail(p, p->line, "[%s] %s: %g is out of range %g..%g", sect, o->key, v, o->min, o->max);
      return -1;
    }
    *(double *)where = v;
    return 0;
  }
  case OPT_BOOL:
    if (strcmp(value, "yes") == 0 || strcmp(value, "true") == 0 || strcmp(value, "1") == 0) {
      *(bool *)where = true;
      return 0;
    }
    if (strcmp(value, "no") == 0 || strcmp(value, "false") == 0 || strcmp(value, "0") == 0) {
      *(bool *)where = false;
      return 0;
    }
    fail(p, p->line, "[%s] %s: \"%s\" is not yes or no", sect, o->key, value);
    return -1;
  case OPT_DEVTYPE:
    for (size_t i = 0; i < sizeof(devtype_names) / sizeof(devtype_names[0]); i++) {
      if (strcmp(value, devtype_names[i]) == 0) {
        *(sg_devtype_t *)where = (sg_devtype_t)i;
        return 0;
      }
    }
    fail(p, p->line,
         "[%s] %s: unknown device type \"%s\" (dust, noise, weather, energy, equipment, scale)",
         sect, o->key, value);
    return -1;
  }
  return -1;
}

static void set_defaults(parse_t *p, const char *section, void *base) {
  for (size_t i = 0; i < N_OPTIONS; i++)
    if (strcmp(options[i].section, section) == 0 && options[i].def)
      set_value(p, &options[i], section, base, options[i].def);
}

static sg_device_t *new_device(parse_t *p, const char *id) {
  sg_config_t *c = p->cfg;
  if (!valid_id(id)) {
    fail(p, p->line, "[device %s]: a device id is 1 to %d of A-Z a-z 0-9 . _ -", id, SG_ID_MAX);
    return NULL;
  }
  if (c->n_devices == p->dev_cap) {
    size_t cap = p->dev_cap ? p->dev_cap * 2 : 16;
    sg_device_t *d = realloc(c->devices, cap * sizeof(*d));
    bool *s = realloc(p->dev_seen, cap * N_OPTIONS * sizeof(*s));
    if (d)
      c->devices = d;
    if (s)
      p->dev_seen = s;
    if (!d || !s) {
      fail(p, p->line, "out of memory");
      return NULL;
    }
    p->dev_cap = cap;
  }
  sg_device_t *dev = &c->devices[c->n_devices];
  memset(dev, 0, sizeof(*dev));
  memset(&p->dev_seen[c->n_devices * N_OPTIONS], 0, N_OPTIONS * sizeof(bool));
  c->n_devices++;
  if (!(dev->id = strings_add(c, id))) {
    c->n_devices--;
    fail(p, p->line, "out of memory");
    return NULL;
  }
  dev->line = p->line;
  set_defaults(p, "device", dev);
  return dev;
}

static sg_group_t *new_group(parse_t *p, const char *name) {
  sg_config_t *c = p->cfg;
  if (!valid_id(name)) {
    fail(p, p->line, "[group %s]: a group name is 1 to %d of A-Z a-z 0-9 . _ -", name, SG_ID_MAX);
    return NULL;
  }
  for (size_t i = 0; i < c->n_groups; i++) {
    if (strcmp(c->groups[i].name, name) == 0) {
      fail(p, p->line, "[group %s] is defined twice (first at line %d)", name, c->groups[i].line);
      return NULL;
    }
  }
  if (c->n_groups == p->grp_cap) {
    size_t cap = p->grp_cap ? p->grp_cap * 2 : 8;
    sg_group_t *g = realloc(c->groups, cap * sizeof(*g));
    bool *s = realloc(p->grp_seen, cap * N_OPTIONS * sizeof(*s));
    if (g)
      c->groups = g;
    if (s)
      p->grp_seen = s;
    if (!g || !s) {
      fail(p, p->line, "out of memory");
      return NULL;
    }
    p->grp_cap = cap;
  }
  sg_group_t *g = &c->groups[c->n_groups];
  memset(g, 0, sizeof(*g));
  memset(&p->grp_seen[c->n_groups * N_OPTIONS], 0, N_OPTIONS * sizeof(bool));
  c->n_groups++;
  strcpy(g->name, name);
  g->line = p->line;
  set_defaults(p, "group", g);
  return g;
}

/* The reader calls this for every line before inih sees it; a [section]
 * header (as inih reads one) starts that section here, with its own line. */
static void begin_section(parse_t *p, const char *line) {
  const char *s = line;
  if (p->line == 1 && strncmp(s, "\xef\xbb\xbf", 3) == 0)
    s += 3; /* UTF-8 BOM, which inih skips too */
  while (isspace((unsigned char)*s))
    s++;
  if (*s != '[')
    return;
  const char *end = ++s;
  for (bool was_space = false; *end && *end != ']' && !(was_space && *end == ';'); end++)
    was_space = isspace((unsigned char)*end);
  if (*end != ']')
    return; /* inih reports the line */
  size_t n = (size_t)(end - s);
  for (end++; isspace((unsigned char)*end);)
    end++;
  if (*end && *end != ';' && *end != '#') {
    fail(p, p->line, "[%.*s]: text after a section header", (int)(n < 64 ? n : 64), s);
    return;
  }
  if (n >= sizeof(p->cur_section)) {
    fail(p, p->line, "[%.64s...]: section name is too long", s);
    return;
  }
  memcpy(p->cur_section, s, n);
  p->cur_section[n] = '\0';
  p->cur_dev = NULL;
  p->cur_group = NULL;
  if (strncmp(p->cur_section, "group ", 6) == 0) {
    const char *name = p->cur_section + 6;
    while (*name == ' ')
      name++;
    p->cur_group = new_group(p, name);
    return;
  }
  if (strcmp(p->cur_section, "group") == 0) {
    fail(p, p->line, "[group] needs a name: [group NAME]");
    return;
  }
  if (strncmp(p->cur_section, "device ", 7) == 0) {
    const char *id = p->cur_section + 7;
    while (*id == ' ')
      id++;
    p->cur_dev = new_device(p, id); /* defined twice? see check_duplicates */
    return;
  }
  if (strcmp(p->cur_section, "device") == 0) {
    fail(p, p->line, "[device] needs an id: [device ID]");
    return;
  }
  for (size_t i = 0; i < N_OPTIONS; i++)
    if (strcmp(options[i].section, p->cur_section) == 0)
      return;
  fail(p, p->line, "unknown section [%s]", p->cur_section);
}

/* A key that is written must be one: `psk =` left empty used to make the
 * device plain CoAP without a word, and a 1-byte key was accepted. */
static void check_psk(parse_t *p, const sg_device_t *d) {
  size_t n = strlen(d->psk);
  if (n == 0)
    fail(p, p->line,
         "[device %s] psk is empty: give a key of %d to %d bytes (openssl rand -hex 16), or "
         "remove the line and set insecure = yes for plain CoAP",
         d->id, SG_PSK_MIN, SG_PSK_MAX);
  else if (n < SG_PSK_MIN)
    fail(p, p->line,
         "[device %s] psk: %zu bytes is too short to resist guessing; at least %d "
         "(openssl rand -hex 16)",
         d->id, n, SG_PSK_MIN);
}

/* inih calls this once per key, after the reader has begun its section. */
static int handler(void *user, const char *isection, const char *key, const char *value) {
  parse_t *p = user;
  (void)isection; /* cut to 50 bytes by inih; p->cur_section is whole */
  if (p->failed)
    return 0;
  const char *section = p->cur_section;
  bool is_device = p->cur_dev != NULL;
  bool is_group = p->cur_group != NULL;
  const char *sect = is_device ? "device" : is_group ? "group" : section;
  for (size_t i = 0; i < N_OPTIONS; i++) {
    const opt_t *o = &options[i];
    if (strcmp(o->section, sect) != 0 || strcmp(o->key, key) != 0)
      continue;
    bool *seen =
        is_device ? &p->dev_seen[(size_t)(p->cur_dev - p->cfg->devices) * N_OPTIONS] : p->seen;
    if (is_group)
      seen = &p->grp_seen[(size_t)(p->cur_group - p->cfg->groups) * N_OPTIONS];
    if (seen[i]) {
      fail(p, p->line, "[%s] %s is set twice", section, key);
      return 0;
    }
    seen[i] = true;
    if (!is_device && !is_group)
      p->key_line[i] = p->line;
    void *base = is_device ? (void *)p->cur_dev : is_group ? (void *)p->cur_group : (void *)p->cfg;
    if (set_value(p, o, section, base, value) != 0)
      return 0;
    if (is_device && o->off == offsetof(sg_device_t, psk))
      check_psk(p, p->cur_dev);
    return 1;
  }
  bool known_section = is_device || is_group;
  for (size_t i = 0; i < N_OPTIONS && !known_section; i++)
    known_section = strcmp(options[i].section, sect) == 0;
  if (!known_section)
    fail(p, p->line, "unknown section [%s]", section);
  else
    fail(p, p->line, "unknown key \"%s\" in [%s]", key, section);
  return 0;
}

static int cmp_device(const void *a, const void *b) {
  return strcmp(((const sg_device_t *)a)->id, ((const sg_device_t *)b)->id);
}

static int cmp_device_line(const void *a, const void *b) {
  const sg_device_t *x = *(const sg_device_t *const *)a, *y = *(const sg_device_t *const *)b;
  int c = strcmp(x->id, y->id);
  return c ? c : (x->line > y->line) - (x->line < y->line);
}

/* Two [device ID] sections with one id, found through a sorted index (a
 * site may declare tens of thousands of devices: comparing each with all
 * before it took seconds). The error names the repeat nearest the top. */
static void check_duplicates(parse_t *p) {
  const sg_config_t *c = p->cfg;
  if (c->n_devices < 2)
    return;
  const sg_device_t **ix = malloc(c->n_devices * sizeof(*ix));
  if (!ix) {
    fail(p, p->line, "out of memory");
    return;
  }
  for (size_t i = 0; i < c->n_devices; i++)
    ix[i] = &c->devices[i];
  qsort(ix, c->n_devices, sizeof(*ix), cmp_device_line);
  const sg_device_t *first = NULL, *again = NULL;
  for (size_t i = 1; i < c->n_devices; i++)
    if (strcmp(ix[i - 1]->id, ix[i]->id) == 0 && (!again || ix[i]->line < again->line)) {
      first = ix[i - 1];
      again = ix[i];
    }
  if (again)
    fail(p, again->line, "[device %s] is defined twice (first at line %d)", again->id, first->line);
  free(ix);
}

/* The line that set a global key, else the end of the file. */
static int key_line(const parse_t *p, const char *section, const char *key) {
  int line = p->key_line[opt_index(section, key)];
  return line ? line : p->line;
}

/* A zone name is a TZif file under /usr/share/zoneinfo: not a directory
 * ("Asia"), not a table ("zone.tab"), not a path out of it. */
static bool valid_zone(const char *tz) {
  if (tz[0] == '\0' || tz[0] == '/' || strstr(tz, ".."))
    return false;
  char path[320];
  snprintf(path, sizeof(path), "/usr/share/zoneinfo/%s", tz);
  FILE *f = fopen(path, "rb");
  if (!f)
    return false;
  char magic[4];
  bool ok = fread(magic, 1, sizeof(magic), f) == sizeof(magic) && memcmp(magic, "TZif", 4) == 0;
  fclose(f);
  return ok;
}

/* [noise] and [dust] rules that span keys. */
static void check_env(parse_t *p) {
  const sg_config_t *c = p->cfg;
  if (c->noise_day_start_h == c->noise_night_start_h)
    fail(p, key_line(p, "noise", "night_start"),
         "[noise] day_start and night_start are the same hour");
  if (c->dust_short_min >= c->dust_long_min)
    fail(p, key_line(p, "dust", "long_min"), "[dust] long_min must be longer than short_min");
  const struct {
    const char *warn, *alarm;
    double w, a;
  } levels[] = {
      {"pm10_short_warn", "pm10_short_alarm", c->dust_pm10_short_warn, c->dust_pm10_short_alarm},
      {"pm10_long_warn", "pm10_long_alarm", c->dust_pm10_long_warn, c->dust_pm10_long_alarm},
      {"pm2_5_short_warn", "pm2_5_short_alarm", c->dust_pm2_5_short_warn,
       c->dust_pm2_5_short_alarm},
      {"pm2_5_long_warn", "pm2_5_long_alarm", c->dust_pm2_5_long_warn, c->dust_pm2_5_long_alarm},
      {"tsp_short_warn", "tsp_short_alarm", c->dust_tsp_short_warn, c->dust_tsp_short_alarm},
      {"tsp_long_warn", "tsp_long_alarm", c->dust_tsp_long_warn, c->dust_tsp_long_alarm},
  };
  for (size_t i = 0; i < sizeof(levels) / sizeof(levels[0]); i++)
    if (levels[i].w > 0 && levels[i].a > 0 && levels[i].w >= levels[i].a)
      fail(p, key_line(p, "dust", levels[i].warn), "[dust] %s (%g) must be below %s (%g)",
           levels[i].warn, levels[i].w, levels[i].alarm, levels[i].a);
}

/* A group's members as written: ids separated by commas or spaces. Calls
 * fn for each; stops and returns false when fn does. */
static bool each_member(const char *list, bool (*fn)(void *arg, const char *id), void *arg) {
  char id[SG_ID_MAX + 2];
  for (const char *s = list; *s;) {
    s += strspn(s, ", \t");
    size_t n = strcspn(s, ", \t");
    if (n == 0)
      break;
    snprintf(id, sizeof(id), "%.*s", (int)(n < sizeof(id) - 1 ? n : sizeof(id) - 1), s);
    if (!fn(arg, id))
      return false;
    s += n;
  }
  return true;
}

typedef struct member_check {
  parse_t *p;
  const sg_group_t *g;
  size_t n;
} member_check_t;

static bool check_member(void *arg, const char *id) {
  member_check_t *m = arg;
  const sg_group_t *g = m->g;
  const sg_device_t *d = NULL;
  for (size_t i = 0; i < m->p->cfg->n_devices && !d; i++)
    if (strcmp(m->p->cfg->devices[i].id, id) == 0)
      d = &m->p->cfg->devices[i];
  if (!d)
    fail(m->p, g->line, "[group %s] members: no [device %s]", g->name, id);
  else if (d->type != SG_DEV_EQUIPMENT)
    fail(m->p, g->line, "[group %s] members: %s is %s, not equipment", g->name, id,
         sg_devtype_name(d->type));
  else if (strcmp(d->group, g->name) != 0)
    fail(m->p, g->line, "[group %s] members: %s has group = %s", g->name, id, d->group);
  m->n++;
  return !m->p->failed;
}

static bool member_listed(void *arg, const char *id) { return strcmp(arg, id) != 0; }

/* A device id of one of `types` (a bit per sg_devtype_t), or NULL. */
static const sg_device_t *device_of(const sg_config_t *c, const char *id, unsigned types) {
  for (size_t i = 0; i < c->n_devices; i++)
    if (strcmp(c->devices[i].id, id) == 0)
      return types & (1u << c->devices[i].type) ? &c->devices[i] : NULL;
  return NULL;
}

/* [group NAME] rules that span keys and sections. */
static void check_groups(parse_t *p) {
  sg_config_t *c = p->cfg;
  for (size_t i = 0; i < c->n_devices && !p->failed; i++) {
    const sg_device_t *d = &c->devices[i];
    if (d->type == SG_DEV_EQUIPMENT && !sg_config_group(c, d->group))
      fail(p, d->line, "[device %s] group = %s: there is no [group %s]", d->id, d->group, d->group);
  }
  for (size_t i = 0; i < c->n_groups && !p->failed; i++) {
    const sg_group_t *g = &c->groups[i];
    double from[8], to[8];
    if (g->members[0]) {
      member_check_t m = {p, g, 0};
      each_member(g->members, check_member, &m);
      for (size_t k = 0; k < c->n_devices && !p->failed; k++) {
        const sg_device_t *d = &c->devices[k];
        if (d->type == SG_DEV_EQUIPMENT && strcmp(d->group, g->name) == 0 &&
            each_member(g->members, member_listed, (void *)d->id))
          fail(p, g->line, "[group %s] members: %s (group = %s) is not listed", g->name, d->id,
               g->name);
      }
    }
    if (p->failed)
      break;
    if (sg_schedule_parse(g->schedule, c->noise_day_start_h, c->noise_night_start_h, from, to, 8) <
        0)
      fail(p, g->line,
           "[group %s] schedule: \"%s\" is not always, day, night or ranges like "
           "07:00-12:00,13:00-19:00",
           g->name, g->schedule);
    else if (strcmp(g->dust_level, "warning") != 0 && strcmp(g->dust_level, "alarm") != 0)
      fail(p, g->line, "[group %s] dust_level: \"%s\" is not warning or alarm", g->name,
           g->dust_level);
    else if (g->dust_linkage[0] && strcmp(g->dust_linkage, "any") != 0 &&
             !device_of(c, g->dust_linkage, 1u << SG_DEV_DUST))
      fail(p, g->line, "[group %s] dust_linkage: \"%s\" is not a dust device (or any)", g->name,
           g->dust_linkage);
    else if (g->temp_source[0] &&
             !device_of(c, g->temp_source, 1u << SG_DEV_WEATHER | 1u << SG_DEV_DUST))
      fail(p, g->line, "[group %s] temp_source: \"%s\" is not a weather or dust device", g->name,
           g->temp_source);
    else if (g->idle_kw > 0 && g->off_kw >= g->idle_kw)
      fail(p, g->line, "[group %s] off_kw (%g) must be below idle_kw (%g)", g->name, g->off_kw,
           g->idle_kw);
  }
}

int sg_uplink_intervals(const char *s) {
  static const struct {
    const char *name, *cn;
    int bit;
  } kinds[] = {{"rtd", "2011", SG_UPLINK_RTD},
               {"minute", "2051", SG_UPLINK_MINUTE},
               {"hour", "2061", SG_UPLINK_HOUR},
               {"day", "2031", SG_UPLINK_DAY}};
  int bits = 0;
  for (const char *p = s; *p;) {
    p += strspn(p, ", \t");
    size_t n = strcspn(p, ", \t");
    if (n == 0)
      break;
    int bit = 0;
    for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++)
      if ((strlen(kinds[i].name) == n && strncmp(p, kinds[i].name, n) == 0) ||
          (n == 4 && strncmp(p, kinds[i].cn, 4) == 0))
        bit = kinds[i].bit;
    if (!bit)
      return -EINVAL;
    bits |= bit;
    p += n;
  }
  return bits;
}

static bool uplink_device(void *arg, const char *id) {
  parse_t *p = arg;
  const sg_device_t *d =
      device_of(p->cfg, id, 1u << SG_DEV_DUST | 1u << SG_DEV_NOISE | 1u << SG_DEV_WEATHER);
  if (!d)
    fail(p, key_line(p, "uplink", "devices"),
         "[uplink] devices: \"%s\" is not a dust, noise or weather device", id);
  return d != NULL;
}

/* 1-`max` letters and digits (HJ 212 ST and PW). */
static bool hj212_word(const char *s, size_t max) {
  size_t n = strlen(s);
  if (n == 0 || n > max)
    return false;
  for (; *s; s++)
    if (!isalnum((unsigned char)*s))
      return false;
  return true;
}

/* [machinery] min_stage: a stage a rule can name (electric needs none). */
static void check_machinery(parse_t *p) {
  static const char *const stages[] = {"0", "I", "II", "III", "IV"};
  const char *s = p->cfg->machinery_min_stage;
  for (size_t i = 0; i < sizeof(stages) / sizeof(stages[0]); i++)
    if (strcmp(s, stages[i]) == 0)
      return;
  fail(p, key_line(p, "machinery", "min_stage"),
       "[machinery] min_stage: \"%s\" is not 0, I, II, III or IV (GB 20891-2014)", s);
}

/* [uplink]: the files it needs, and values that go into every frame. */
static void check_uplink(parse_t *p) {
  const sg_config_t *c = p->cfg;
  if (sg_uplink_intervals(c->uplink_intervals) < 0)
    fail(p, key_line(p, "uplink", "intervals"),
         "[uplink] intervals: \"%s\" is not a list of rtd, minute, hour, day", c->uplink_intervals);
  else if (!hj212_word(c->uplink_st, 5))
    fail(p, key_line(p, "uplink", "st"), "[uplink] st: 1 to 5 letters or digits (HJ 212 ST)");
  else if (!hj212_word(c->uplink_pw, 9))
    fail(p, key_line(p, "uplink", "pw"), "[uplink] pw: 1 to 9 letters or digits (HJ 212 PW)");
  else
    each_member(c->uplink_devices, uplink_device, p);
  if (p->failed || c->uplink_host[0] == '\0')
    return;
  const struct {
    const char *key, *value;
  } files[] = {{"ca", c->uplink_ca}, {"cert", c->uplink_cert}, {"key", c->uplink_key}};
  for (size_t i = 0; i < sizeof(files) / sizeof(files[0]) && !p->failed; i++)
    if (files[i].value[0] == '\0')
      fail(p, key_line(p, "uplink", "host"), "[uplink] %s is required with host (deploy/pki/)",
           files[i].key);
  if (!p->failed && strlen(c->site_id) > 27) /* HJ 212-2017 table 3: MN is at most 27 */
    fail(p, key_line(p, "site", "id"), "[site] id: at most 27 characters to be an HJ 212 MN");
}

int sg_parse_listen(const char *s, struct sockaddr_storage *ss, bool *loopback) {
  char host[64];
  const char *colon = strrchr(s, ':');
  if (!colon || colon == s || (size_t)(colon - s) >= sizeof(host))
    return -EINVAL;
  char *end;
  long port = strtol(colon + 1, &end, 10);
  if (*end || port < 1 || port > 65535)
    return -EINVAL;
  memcpy(host, s, (size_t)(colon - s));
  host[colon - s] = '\0';
  memset(ss, 0, sizeof(*ss));
  struct sockaddr_in *v4 = (struct sockaddr_in *)ss;
  struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)ss;
  if (inet_pton(AF_INET, host, &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons((uint16_t)port);
    *loopback = (ntohl(v4->sin_addr.s_addr) >> 24) == 127;
    return 0;
  }
  size_t hl = strlen(host);
  if (hl > 2 && host[0] == '[' && host[hl - 1] == ']') {
    host[hl - 1] = '\0';
    if (inet_pton(AF_INET6, host + 1, &v6->sin6_addr) == 1) {
      v6->sin6_family = AF_INET6;
      v6->sin6_port = htons((uint16_t)port);
      *loopback = IN6_IS_ADDR_LOOPBACK(&v6->sin6_addr);
      return 0;
    }
  }
  return -EINVAL;
}

/* The listeners' addresses, checked here so that --check-config refuses
 * what start-up would: the HTTP API off loopback serves the site's
 * controls to the LAN, so it needs a token (DESIGN.md). */
static void check_listen(parse_t *p) {
  const sg_config_t *c = p->cfg;
  struct sockaddr_storage ss;
  unsigned char a[16];
  bool loopback = false;
  if (inet_pton(AF_INET, c->coap_listen, a) != 1 && inet_pton(AF_INET6, c->coap_listen, a) != 1)
    fail(p, key_line(p, "coap", "listen"), "[coap] listen: \"%s\" is not an IPv4 or IPv6 address",
         c->coap_listen);
  else if (sg_parse_listen(c->http_listen, &ss, &loopback) != 0)
    fail(p, key_line(p, "http", "listen"),
         "[http] listen: \"%s\" is not ADDRESS:PORT (like 127.0.0.1:8080 or [::1]:8080)",
         c->http_listen);
  else if (!loopback && c->http_token[0] == '\0')
    fail(p, key_line(p, "http", "listen"),
         "[http] listen %s is not loopback: set [http] token first", c->http_listen);
}

/* Checks that need the whole file: required keys, cross-key rules. */
static void check_whole(parse_t *p) {
  sg_config_t *c = p->cfg;
  if (c->site_id[0] == '\0')
    fail(p, key_line(p, "site", "id"), "[site] id is required (the site's MN for uploads)");
  else if (!valid_id(c->site_id))
    fail(p, key_line(p, "site", "id"), "[site] id: \"%s\" must be 1 to %d of A-Z a-z 0-9 . _ -",
         c->site_id, SG_ID_MAX);
  if (!valid_zone(c->timezone))
    fail(p, key_line(p, "site", "timezone"),
         "[site] timezone: \"%s\" is not an IANA zone name (like Asia/Shanghai)", c->timezone);
  if (isnan(c->latitude) != isnan(c->longitude))
    fail(p, key_line(p, "site", isnan(c->latitude) ? "longitude" : "latitude"),
         "[site] latitude and longitude go together: set both or neither");
  check_env(p);
  for (size_t i = 0; i < c->n_devices && !p->failed; i++) {
    sg_device_t *d = &c->devices[i];
    bool *seen = &p->dev_seen[i * N_OPTIONS];
    if (!seen[opt_index("device", "type")])
      fail(p, d->line, "[device %s] has no type", d->id);
    if (d->type == SG_DEV_EQUIPMENT && d->group[0] == '\0')
      fail(p, d->line, "[device %s] is equipment and needs a group", d->id);
    if (d->type != SG_DEV_EQUIPMENT && (d->group[0] || d->coap[0] || d->kind[0]))
      fail(p, d->line, "[device %s]: group, kind and coap are for equipment only", d->id);
    if (d->psk[0] && d->insecure)
      fail(p, d->line, "[device %s] has a psk and insecure = yes: choose one", d->id);
  }
  if (!p->failed)
    check_groups(p);
  if (!p->failed)
    check_uplink(p);
  if (!p->failed)
    check_listen(p);
  if (!p->failed)
    check_machinery(p);
}

int sg_config_parse(const char *text, const char *name, sg_config_t **out, char *err,
                    size_t errlen) {
  sg_config_t *c = calloc(1, sizeof(*c));
  parse_t p = {.name = name, .text = text, .cfg = c, .err = err, .errlen = errlen};
  *out = NULL;
  if (errlen)
    err[0] = '\0';
  if (!c)
    return -ENOMEM;
  snprintf(c->path, sizeof(c->path), "%s", name);
  set_defaults(&p, "site", c);
  set_defaults(&p, "storage", c);
  set_defaults(&p, "coap", c);
  set_defaults(&p, "http", c);
  set_defaults(&p, "noise", c);
  set_defaults(&p, "dust", c);
  set_defaults(&p, "health", c);
  set_defaults(&p, "waste", c);
  set_defaults(&p, "energy", c);
  set_defaults(&p, "uplink", c);
  set_defaults(&p, "machinery", c);
  /* Continuation lines would let a typo swallow the next key silently. */
  ini_allow_multiline = false;
  ini_max_line = 1024;
  /* A later error must not hide the first (inih keeps the first line only). */
  ini_stop_on_first_error = true;
  int rc = ini_parse_stream(reader, &p, handler, &p);
  if (rc != 0 && !p.failed)
    fail(&p, rc > 0 ? rc : p.line, "not a key = value line or [section] header");
  if (!p.failed)
    check_duplicates(&p);
  if (!p.failed)
    check_whole(&p);
  free(p.dev_seen);
  free(p.grp_seen);
  if (p.failed) {
    sg_config_free(c);
    return -EINVAL;
  }
  /* The array doubled as devices were read, to 16,384 entries for 10,000:
   * the tail is never touched, so it was address space rather than
   * resident memory (glibc maps blocks this size, and grows them with
   * mremap), but the daemon keeps it for its life. */
  if (c->n_devices && c->n_devices < p.dev_cap) {
    sg_device_t *d = realloc(c->devices, c->n_devices * sizeof(*d));
    if (d)
      c->devices = d;
  }
  if (c->n_devices) /* devices is NULL without any, and qsort wants a pointer */
    qsort(c->devices, c->n_devices, sizeof(*c->devices), cmp_device);
  *out = c;
  return 0;
}

int sg_config_load(const char *path, sg_config_t **out, char *err, size_t errlen) {
  *out = NULL;
  FILE *f = fopen(path, "r");
  if (!f) {
    int e = errno;
    snprintf(err, errlen, "%s: %s", path, strerror(e));
    return -e;
  }
  char *text = NULL;
  size_t len = 0, cap = 0;
  int rc = 0;
  for (;;) {
    if (len + 4096 + 1 > cap) {
      cap = cap ? cap * 2 : 16384;
      char *t = realloc(text, cap);
      if (!t) {
        rc = -ENOMEM;
        break;
      }
      text = t;
    }
    size_t n = fread(text + len, 1, cap - len - 1, f);
    len += n;
    if (n == 0)
      break;
  }
  if (rc == 0 && ferror(f))
    rc = -EIO;
  fclose(f);
  if (rc == 0 && memchr(text, '\0', len))
    rc = -EINVAL;
  if (rc != 0) {
    snprintf(err, errlen, "%s: %s", path, rc == -EINVAL ? "binary file" : strerror(-rc));
    free(text);
    return rc;
  }
  text[len] = '\0';
  rc = sg_config_parse(text, path, out, err, errlen);
  free(text);
  return rc;
}

void sg_config_free(sg_config_t *cfg) {
  if (!cfg)
    return;
  free(cfg->devices);
  free(cfg->groups);
  for (struct sg_strings *k = cfg->strings, *next; k; k = next) {
    next = k->next;
    free(k);
  }
  free(cfg);
}

int sg_config_check_keys(const sg_config_t *cfg, char *err, size_t errlen) {
  for (size_t i = 0; i < cfg->n_devices; i++) {
    const sg_device_t *d = &cfg->devices[i];
    if (d->psk[0] || d->insecure)
      continue;
    snprintf(err, errlen,
             "%s:%d: [device %s] has no psk: give it a key (CoAPS; %d to %d bytes, openssl rand "
             "-hex 16), or set insecure = yes to accept plain CoAP, which anyone on the network "
             "can forge",
             cfg->path, d->line, d->id, SG_PSK_MIN, SG_PSK_MAX);
    return -EPERM;
  }
  return 0;
}

const sg_device_t *sg_config_device(const sg_config_t *cfg, const char *id) {
  sg_device_t key = {.id = id};
  if (cfg->n_devices == 0)
    return NULL;
  return bsearch(&key, cfg->devices, cfg->n_devices, sizeof(key), cmp_device);
}

static void dump_value(FILE *f, const opt_t *o, const void *base) {
  const void *where = (const char *)base + o->off;
  const char *text = o->kind == OPT_STR    ? (const char *)where
                     : o->kind == OPT_PSTR ? *(const char *const *)where
                                           : NULL;
  if (strcmp(o->key, "psk") == 0 && !*text)
    return; /* `psk =` written empty is refused: the dump must parse back */
  if (strcmp(o->key, "psk") == 0 || strcmp(o->key, "token") == 0) {
    fprintf(f, "%s = %s\n", o->key, *text ? "(set)" : "");
    return;
  }
  switch (o->kind) {
  case OPT_STR:
  case OPT_PSTR:
    fprintf(f, "%s = %s\n", o->key, text);
    break;
  case OPT_INT:
    fprintf(f, "%s = %d\n", o->key, *(const int *)where);
    break;
  case OPT_DBL:
    if (isnan(*(const double *)where))
      fprintf(f, "%s =\n", o->key);
    else
      fprintf(f, "%s = %.15g\n", o->key, *(const double *)where); /* %g drops digits */
    break;
  case OPT_DEVTYPE:
    fprintf(f, "%s = %s\n", o->key, sg_devtype_name(*(const sg_devtype_t *)where));
    break;
  case OPT_BOOL:
    fprintf(f, "%s = %s\n", o->key, *(const bool *)where ? "yes" : "no");
    break;
  }
}

void sg_config_dump(const sg_config_t *cfg, void *file) {
  FILE *f = file;
  const char *last = "";
  for (size_t i = 0; i < N_OPTIONS; i++) {
    if (strcmp(options[i].section, "device") == 0 || strcmp(options[i].section, "group") == 0)
      continue;
    if (strcmp(options[i].section, last) != 0) {
      fprintf(f, "%s[%s]\n", *last ? "\n" : "", options[i].section);
      last = options[i].section;
    }
    dump_value(f, &options[i], cfg);
  }
  for (size_t d = 0; d < cfg->n_devices; d++) {
    fprintf(f, "\n[device %s]\n", cfg->devices[d].id);
    for (size_t i = 0; i < N_OPTIONS; i++)
      if (strcmp(options[i].section, "device") == 0)
        dump_value(f, &options[i], &cfg->devices[d]);
  }
  for (size_t g = 0; g < cfg->n_groups; g++) {
    fprintf(f, "\n[group %s]\n", cfg->groups[g].name);
    for (size_t i = 0; i < N_OPTIONS; i++)
      if (strcmp(options[i].section, "group") == 0)
        dump_value(f, &options[i], &cfg->groups[g]);
  }
}

const sg_group_t *sg_config_group(const sg_config_t *cfg, const char *name) {
  for (size_t i = 0; i < cfg->n_groups; i++)
    if (strcmp(cfg->groups[i].name, name) == 0)
      return &cfg->groups[i];
  return NULL;
}

/* "HH" or "HH:MM" as fractional hours 0..24; the end of the text in *end. */
static bool parse_hour(const char *s, const char **end, double *h) {
  if (!isdigit((unsigned char)s[0]))
    return false;
  int hh = 0, mm = 0, n = 0;
  while (isdigit((unsigned char)s[n]) && n < 2)
    hh = hh * 10 + (s[n++] - '0');
  if (s[n] == ':') {
    if (!isdigit((unsigned char)s[n + 1]) || !isdigit((unsigned char)s[n + 2]))
      return false;
    mm = (s[n + 1] - '0') * 10 + (s[n + 2] - '0');
    n += 3;
  }
  if (hh > 24 || mm > 59 || (hh == 24 && mm > 0))
    return false;
  *h = hh + mm / 60.0;
  *end = s + n;
  return true;
}

int sg_schedule_parse(const char *s, double day_start_h, double night_start_h, double *from,
                      double *to, int max) {
  if (strcmp(s, "always") == 0 || s[0] == '\0')
    return 0;
  if (strcmp(s, "day") == 0 || strcmp(s, "night") == 0) {
    if (max < 1)
      return -EINVAL;
    bool day = s[0] == 'd';
    from[0] = day ? day_start_h : night_start_h;
    to[0] = day ? night_start_h : day_start_h;
    return 1;
  }
  int n = 0;
  const char *p = s;
  for (;;) {
    while (*p == ' ')
      p++;
    double a, b;
    if (n == max || !parse_hour(p, &p, &a) || *p++ != '-' || !parse_hour(p, &p, &b) || a == b)
      return -EINVAL;
    from[n] = a;
    to[n] = b;
    n++;
    while (*p == ' ')
      p++;
    if (*p == '\0')
      return n;
    if (*p++ != ',')
      return -EINVAL;
  }
}
