/* common: what every sitegate program shares: logging, clocks and the site
 * configuration file (INI, DESIGN.md "Site configuration").
 *
 * The configuration is described by tables in config.c (one row per key,
 * with its range and default), so parsing, range checks, defaults and
 * `--check-config` all come from one place. */
#ifndef SITEGATE_COMMON_H
#define SITEGATE_COMMON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- logging (Redis style: the level is checked before arguments are
 * evaluated). Lines go to stderr; under systemd they carry the <N> priority
 * prefix the journal understands. Secrets never reach a log line. */
enum { LOG_LVL_ERR = 3, LOG_LVL_WARN = 4, LOG_LVL_INFO = 6, LOG_LVL_DEBUG = 7 };
extern int log_threshold;
void log_write(int lvl, const char *module, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
#define LOG_AT(lvl, ...)                                                                           \
  do {                                                                                             \
    if ((lvl) <= log_threshold)                                                                    \
      log_write((lvl), LOG_MODULE, __VA_ARGS__);                                                   \
  } while (0)
#define log_err(...) LOG_AT(LOG_LVL_ERR, __VA_ARGS__)
#define log_warn(...) LOG_AT(LOG_LVL_WARN, __VA_ARGS__)
#define log_info(...) LOG_AT(LOG_LVL_INFO, __VA_ARGS__)
#define log_debug(...) LOG_AT(LOG_LVL_DEBUG, __VA_ARGS__)

/* ---- clocks */
double sg_now(void);       /* wall clock, Unix seconds with fraction */
uint64_t sg_mono_ms(void); /* monotonic milliseconds, for intervals */

/* Parses a time argument: Unix seconds (9+ digits), relative to `now`
 * (-2h, -30m, -45s, -1d, -1w) or ISO 8601 (2026-11-20T21:20[:SS], a date
 * alone, a space for T), local to the process's TZ unless it ends in Z or
 * +hh:mm. Returns 0 and *out in Unix seconds, or -EINVAL. */
int sg_parse_time(const char *s, double now, double *out);

/* ---- site configuration */
#define SG_ID_MAX 47  /* device, group and site ids: [A-Za-z0-9._-] */
#define SG_PSK_MAX 64 /* DTLS pre-shared key bytes */
/* The shortest key accepted, bytes: 128 bits if every byte were random
 * (RFC 9257 4: an external PSK needs at least 128 bits of entropy; NIST
 * SP 800-57 part 1 table 2: 128-bit strength). Text keys carry less per
 * byte, so CONFIG.md asks for `openssl rand -hex 16` (32 characters). */
#define SG_PSK_MIN 16
#define SG_KIND_MAX 31 /* an equipment kind: crane, hoist, pump ... */
#define SG_URI_MAX 127 /* an equipment controller's coap:// URI */

/* Significant digits of a real in the JSON the gateway writes: a time in
 * Unix seconds to the millisecond needs 13 (10 before the point until
 * 2286, 3 after); with 10 a reading's time lost its milliseconds. 13
 * still hides binary arithmetic's last bits (0.0612 mg/m3 is
 * 61.199999999999996 ug/m3: 61.2). */
#define SG_JSON_DIGITS 13

typedef enum {
  SG_DEV_DUST,
  SG_DEV_NOISE,
  SG_DEV_WEATHER,
  SG_DEV_ENERGY,
  SG_DEV_EQUIPMENT,
  SG_DEV_SCALE,
  SG_DEV_MACHINE, /* a machinery monitoring terminal (engine hours, fuel, smoke) */
  SG_DEV_GATE,    /* a gate reader posting machinery entries and exits to /g */
} sg_devtype_t;

typedef struct sg_device {
  const char *id; /* 1..SG_ID_MAX bytes, in the config's own storage */
  sg_devtype_t type;
  /* Strings most devices leave empty point into the config's own storage
   * ("" when unset): a site of 10,000 sensors would otherwise carry 2.4 MB
   * of empty equipment fields (and its ids, inline, 0.4 MB of padding). */
  const char *psk; /* SG_PSK_MIN..SG_PSK_MAX bytes, or "" with insecure set */
  bool insecure;   /* no key: plain CoAP from anyone who can reach the port */
  int interval_s;  /* expected reporting interval */
  /* equipment only */
  const char *group; /* up to SG_ID_MAX */
  const char *kind;  /* up to SG_KIND_MAX */
  double rated_kw;
  int priority;
  const char *coap; /* the controller's URI, up to SG_URI_MAX */
  /* scale only */
  double resolution_kg; /* the scale's division: net = gross - tare within it */
  int heartbeat_s;      /* event-driven devices: the longest normal silence (0: a day) */
  int line;             /* line of its [device ID] header, for messages */
} sg_device_t;

/* One [group NAME] section: equipment units of one kind controlled together
 * (keys and meanings in config.c; the policies in gateway/equipment/equipment.h). */
typedef struct sg_group {
  char name[SG_ID_MAX + 1];
  char members[512];           /* device ids as written, separated by commas or spaces */
  double peak_kw, peak_margin; /* cap on the group's power (0: none), restore band */
  double min_on_min, min_off_min;
  double idle_off_min;              /* 0: not used */
  int duty;                         /* units kept in service (0: not used) */
  double rotate_h;                  /* run-hour lead that swaps a running unit for a resting one */
  char schedule[128];               /* always, day, night or HH:MM-HH:MM[,...] */
  char dust_linkage[SG_ID_MAX + 1]; /* "": none; a dust device id; "any" */
  char dust_level[16];              /* warning or alarm */
  double dust_min_run_min, freeze_c;
  char temp_source[SG_ID_MAX + 1]; /* "": any weather or dust device with temp */
  double off_kw, idle_kw;          /* state thresholds; 0: from the kind */
  int line;                        /* of its header */
} sg_group_t;

typedef struct sg_config {
  char path[256];
  /* [site] */
  char site_id[SG_ID_MAX + 1];
  char site_name[128];
  char timezone[64];
  double area_cast_m2, area_prefab_m2, progress;
  double latitude, longitude; /* WGS-84 degrees; NAN when not known */
  /* [storage] */
  char db_path[256];
  int raw_days, batch_ms, batch_readings, queue_max;
  /* [coap] */
  char coap_listen[64];
  int coap_port, dtls_port, max_body;
  /* [http] */
  char http_listen[64]; /* host:port */
  char http_token[128];
  char http_hosts[256];    /* more names for the Host check, commas or spaces */
  char http_web_root[256]; /* "": ../share/sitegate/web beside the program */
  /* [noise] GB 12523-2011; meanings and clauses in config.c */
  double noise_day_start_h, noise_night_start_h, noise_day_limit, noise_night_limit;
  double noise_lmax_margin, noise_sample_s, noise_complete_share, noise_warn_margin;
  int noise_window_min, noise_indoor;
  /* [dust] windows and levels per quantity, ug/m3 (0: level not used) */
  int dust_short_min, dust_long_min, dust_max_exceed_day;
  double dust_rh_max, dust_complete_share;
  double dust_pm10_short_warn, dust_pm10_short_alarm, dust_pm10_long_warn, dust_pm10_long_alarm;
  double dust_pm2_5_short_warn, dust_pm2_5_short_alarm;
  double dust_pm2_5_long_warn, dust_pm2_5_long_alarm;
  double dust_tsp_short_warn, dust_tsp_short_alarm, dust_tsp_long_warn, dust_tsp_long_alarm;
  /* [health] sensor health rules */
  int health_offline_intervals;
  double health_flatline_min, health_skew_s, health_rh_jump, health_pm_drop, health_jump_s;
  /* [waste] limits (t per 10,000 m2), alarm shares of the allowance, the
   * projection's window, and the 2020 material-loss baselines (percent) */
  double waste_limit_cast, waste_limit_prefab, waste_warn_share, waste_alarm_share;
  int waste_window_days;
  double waste_min_gain, waste_util_target, waste_loss_target_factor;
  double waste_loss_rebar, waste_loss_concrete, waste_loss_blocks, waste_loss_timber;
  /* devices, sorted by id (sg_config_device() searches them) */
  sg_device_t *devices;
  size_t n_devices;
  /* [energy] carbon factors and the group control's timing */
  double energy_grid_factor, energy_diesel_factor;
  double energy_evaluate_s, energy_follow_s, energy_persist_s;
  int energy_retries;
  /* equipment groups, in file order (sg_config_group() finds one) */
  sg_group_t *groups;
  size_t n_groups;
  /* [uplink] to the authority (gateway/uplink*.c, protocol/UPLINK.md);
   * off while host is empty. Meanings in config.c. */
  char uplink_host[256], uplink_server_name[256];
  int uplink_port;
  char uplink_ca[256], uplink_cert[256], uplink_key[256];
  char uplink_pw[16], uplink_st[8];
  char uplink_intervals[64]; /* "rtd minute hour day", parsed by sg_uplink_intervals() */
  char uplink_devices[512];  /* "": every dust, noise and weather device */
  int uplink_rtd_s, uplink_lag_s, uplink_overtime_s, uplink_recount, uplink_window;
  int uplink_outbox_max, uplink_keep_days, uplink_backoff_max_s, uplink_down_alarm_s;
  /* [machinery] the zone's rule for non-road mobile machinery (meanings in
   * config.c; the rule in gateway/machinery/machinery.h) */
  char machinery_min_stage[16]; /* 0, I, II, III or IV */
  int machinery_require_registration;
  double machinery_opacity_limit, machinery_presence_min;
  struct sg_strings *strings; /* what the devices' string pointers point into */
} sg_config_t;

/* [uplink] intervals: a bit per kind of environmental data to send. */
enum { SG_UPLINK_RTD = 1, SG_UPLINK_MINUTE = 2, SG_UPLINK_HOUR = 4, SG_UPLINK_DAY = 8 };
/* Parses "rtd minute hour day" (or the CNs 2011 2051 2061 2031; commas or
 * spaces between). Returns the bits, or -EINVAL. */
int sg_uplink_intervals(const char *s);

/* "HOST:PORT" (an IPv4 address) or "[IPv6]:PORT" into a socket address;
 * `loopback` says whether it is 127/8 or ::1. Returns 0 or -EINVAL. */
struct sockaddr_storage;
int sg_parse_listen(const char *s, struct sockaddr_storage *ss, bool *loopback);

/* Reads and checks FILE. On success returns 0 and a config the caller frees
 * with sg_config_free(). On failure returns -EINVAL (or -errno when the file
 * cannot be read) and writes "file:line: message" into err. */
int sg_config_load(const char *path, sg_config_t **out, char *err, size_t errlen);
/* The same from a string (tests, fuzzing); `name` stands for the file name
 * in messages. */
int sg_config_parse(const char *text, const char *name, sg_config_t **out, char *err,
                    size_t errlen);
void sg_config_free(sg_config_t *cfg);
const sg_device_t *sg_config_device(const sg_config_t *cfg, const char *id);
const sg_group_t *sg_config_group(const sg_config_t *cfg, const char *name);
/* A [group] schedule: "always" (or empty) gives 0 ranges; "day" and
 * "night" the noise periods from day_start_h and night_start_h; otherwise
 * local ranges "07:00-12:00,13:00-19:00" (HH or HH:MM; from > to spans
 * midnight). Fills from[i], to[i] (hours) and returns how many, at most
 * `max`, or -EINVAL. */
int sg_schedule_parse(const char *s, double day_start_h, double night_start_h, double *from,
                      double *to, int max);
const char *sg_devtype_name(sg_devtype_t t);
/* One row of the option table, read-only, for the configuration reference
 * (deploy/CONFIG.md, which tests/test_config_doc.c holds against it). */
typedef struct sg_config_option {
  const char *section; /* "site", ...; "device" and "group" for [device ID], [group NAME] */
  const char *key;
  const char *type; /* "string", "integer", "number" or "device type" */
  double min, max;  /* integers and numbers */
  size_t max_len;   /* strings: the longest value, in bytes */
  const char *def;  /* as written in the table; NULL: required */
} sg_config_option_t;
/* Fills *out with row `i` of the table (file order, grouped by section).
 * Returns false, leaving *out alone, when `i` is past the last row. */
bool sg_config_option(size_t i, sg_config_option_t *out);

/* The gateway's rule on keys (issue 13, "secure by default"): every device
 * may post readings, a scale tickets to the append-only ledger, so each
 * needs a `psk` or a written `insecure = yes`. Kept out of sg_config_parse
 * so that a file can be read (sitesim, tests) before it is served; sitegated
 * calls it for --check-config and at start-up. Returns 0, or -EPERM with
 * "file:line: message" in `err`. */
int sg_config_check_keys(const sg_config_t *cfg, char *err, size_t errlen);

/* Writes every key with its value (defaults included) as INI to `f`;
 * secrets are shown as "(set)". */
void sg_config_dump(const sg_config_t *cfg, void *file);

#endif
