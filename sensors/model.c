/* Believable readings for the simulated site.
 *
 * Every random quantity is a hash of (seed, device, channel, time) instead of
 * a draw from a stream, so a reading is a pure function of its inputs: two
 * runs with the same --seed give the same values at the same timestamps
 * whatever the speed, the gateway's replies or the order of events. Slow
 * variation ("random walk") is smooth value noise over a lattice in time;
 * rare events (dust episodes, night noise) are decided per time slot. The
 * only state is the energy counter, integrated from power since start.
 *
 * Shapes follow what such instruments show on a northern Chinese site in
 * winter (the demo site is in Harbin): work from 07:00 to 19:00 site time,
 * dust and noise rising with work, a cold dry continental climate. */
#include "sensors/sensors_int.h"

#include <math.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

enum channel {
  CH_TEMP_SYN = 1,
  CH_TEMP_FAST,
  CH_RH,
  CH_RH_FAST,
  CH_PRESSURE,
  CH_WIND,
  CH_WIND_FAST,
  CH_WIND_DIR,
  CH_DUST_BG,
  CH_DUST_WORK,
  CH_DUST_WALK,
  CH_DUST_JITTER,
  CH_DUST_EPISODE,
  CH_PM25_RATIO,
  CH_TSP_RATIO,
  CH_NOISE_LEVEL,
  CH_NOISE_MACHINE,
  CH_NOISE_SECOND,
  CH_NOISE_IMPULSE,
  CH_NOISE_EVENT,
  CH_LAMAX,
  CH_DUTY,
  CH_LOAD,
  CH_LOAD_JITTER,
  CH_COUNTER,
  CH_MACHINE,
  CH_OPACITY,
};

#define WORK_START_H 7.0 /* site working hours, local time */
#define WORK_END_H 19.0
#define NIGHT_START_H 22.0 /* GB 12523-2011: night is 22:00-06:00 */
#define NIGHT_END_H 6.0

static uint64_t mix64(uint64_t z) { /* splitmix64's finaliser */
  z += 0x9e3779b97f4a7c15ULL;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

uint64_t sim_hash(uint64_t a, uint64_t b) { return mix64(a ^ mix64(b)); }

uint64_t sim_key(uint64_t seed, const char *device) {
  uint64_t h = 0xcbf29ce484222325ULL; /* FNV-1a */
  for (const unsigned char *p = (const unsigned char *)device; *p; p++)
    h = (h ^ *p) * 0x100000001b3ULL;
  return sim_hash(seed, h);
}

static uint64_t draw(uint64_t key, int ch, int64_t i) {
  return sim_hash(sim_hash(key, (uint64_t)ch), (uint64_t)i);
}

static double u01(uint64_t h) { return (double)(h >> 11) * 0x1.0p-53; }

static double gauss(uint64_t h) { /* Box-Muller from one hash */
  double u1 = (double)((h >> 32) + 1) / 4294967297.0, u2 = (double)(h & 0xffffffffu) / 4294967296.0;
  return sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2);
}

/* Smooth noise: normal values on the integer lattice, smoothstep between. */
static double vnoise(uint64_t key, int ch, double x) {
  double i = floor(x), f = x - i, s = f * f * (3.0 - 2.0 * f);
  double a = gauss(draw(key, ch, (int64_t)i)), b = gauss(draw(key, ch, (int64_t)i + 1));
  return a + (b - a) * s;
}

/* Three octaves of vnoise with `period` seconds for the slowest; about
 * unit standard deviation. */
static double fbm(uint64_t key, int ch, double t, double period) {
  double x = t / period;
  return (vnoise(key, ch, x) + 0.5 * vnoise(key, ch + 100, 2 * x) +
          0.25 * vnoise(key, ch + 200, 4 * x)) /
         0.95;
}

static double clamp(double v, double lo, double hi) { return v < lo ? lo : v > hi ? hi : v; }
static double round_to(double v, double step) { return round(v / step) * step; }
static double smoothstep(double e0, double e1, double x) {
  double f = clamp((x - e0) / (e1 - e0), 0, 1);
  return f * f * (3 - 2 * f);
}

static void local_tm(double t, struct tm *tm) {
  time_t tt = (time_t)floor(t);
  localtime_r(&tt, tm);
}

double sim_local_hour(double t) {
  struct tm tm;
  local_tm(t, &tm);
  return tm.tm_hour + tm.tm_min / 60.0 + (tm.tm_sec + (t - floor(t))) / 3600.0;
}

/* 1 during work, 0 outside, half-hour ramps and a lunch dip. */
static double work_factor(double h) {
  double w = smoothstep(WORK_START_H - 0.5, WORK_START_H + 0.5, h) *
             (1 - smoothstep(WORK_END_H - 0.5, WORK_END_H + 0.5, h));
  if (h >= 12.0 && h < 13.0)
    w *= 0.6;
  return w;
}

static bool is_night(double h) { return h >= NIGHT_START_H || h < NIGHT_END_H; }

/* ---- weather: one site-wide climate that every device samples */

void sim_weather_at(uint64_t seed, double t, sim_weather_t *w) {
  uint64_t key = sim_hash(seed, 0x5eed5eedULL);
  struct tm tm;
  local_tm(t, &tm);
  double h = tm.tm_hour + tm.tm_min / 60.0 + tm.tm_sec / 3600.0;
  /* Harbin normals: January mean -17.5 C (days from about -24 to -12),
   * July +24 C, coldest around 17 January. */
  double season = cos(2 * M_PI * (tm.tm_yday - 17) / 365.25);
  double diurnal = cos(2 * M_PI * (h - 14.5) / 24.0); /* max mid-afternoon */
  double mean = 3.5 - 21.0 * season + 2.0 * fbm(key, CH_TEMP_SYN, t, 3 * 86400.0);
  w->temp = mean + 6.0 * diurnal + 0.4 * vnoise(key, CH_TEMP_FAST, t / 600.0);
  w->rh = clamp(66 - 10 * diurnal + 6 * fbm(key, CH_RH, t, 2 * 86400.0) +
                    1.5 * vnoise(key, CH_RH_FAST, t / 900.0),
                15, 98);
  /* Winter's Siberian high; station pressure at ~140 m. */
  w->pressure = 99.7 + 0.9 * season + 0.7 * fbm(key, CH_PRESSURE, t, 4 * 86400.0);
  double gust = 0.6 * vnoise(key, CH_WIND_FAST, t / 120.0);
  w->wind_speed = clamp(2.8 + 1.1 * diurnal + 1.5 * fbm(key, CH_WIND, t, 43200.0) + gust, 0, 25);
  double prevailing = 300 - 110 * (1 - season) / 2; /* NW in winter, S in summer */
  w->wind_dir = fmod(prevailing + 50 * fbm(key, CH_WIND_DIR, t, 86400.0) +
                         15 * vnoise(key, CH_WIND_FAST + 50, t / 300.0) + 720,
                     360);
  w->temp = round_to(w->temp, 0.1);
  w->rh = round_to(w->rh, 0.1);
  w->pressure = round_to(w->pressure, 0.01);
  w->wind_speed = round_to(w->wind_speed, 0.1);
  w->wind_dir = round_to(w->wind_dir, 1);
}

/* ---- dust */

/* Extra PM10 from a dust episode (earthworks, a truck on a dry haul road):
 * in each hour slot one may start, 20-60 min long, peaking at 180-300. */
static double dust_episode(uint64_t key, double t, double base) {
  int64_t slot = (int64_t)floor(t / 3600.0);
  double best = 0;
  for (int64_t k = slot - 1; k <= slot; k++) {
    double h = sim_local_hour((double)k * 3600.0 + 1800.0);
    double p = work_factor(h) > 0.5 ? 0.05 : 0.008;
    if (u01(draw(key, CH_DUST_EPISODE, k)) >= p)
      continue;
    uint64_t d = draw(key, CH_DUST_EPISODE + 300, k);
    double start = (double)k * 3600.0 + u01(d) * 3600.0;
    double len = 1200.0 + u01(mix64(d)) * 2400.0;
    double peak = 180.0 + u01(mix64(d + 1)) * 120.0;
    if (t < start || t > start + len)
      continue;
    double x = (t - start) / len; /* rise over 30%, hold, fall over 30% */
    double shape = smoothstep(0, 0.3, x) * (1 - smoothstep(0.7, 1.0, x));
    double extra = (peak - base) * shape;
    if (extra > best)
      best = extra;
  }
  return best;
}

/* ---- the history's story (sim_model_story) */

/* The local time `h` hours after local midnight of the last day whose
 * such time lies at least `back` seconds before `end`. */
static double last_local(double end, double back, double h) {
  struct tm tm;
  local_tm(end - back, &tm);
  tm.tm_hour = tm.tm_min = tm.tm_sec = 0;
  tm.tm_isdst = -1;
  double t = (double)mktime(&tm) + h * 3600.0;
  return t > end - back ? t - 86400.0 : t;
}

/* 0..1: an episode over [start, start + len], ramps of `ramp` s. */
static double episode(double t, double start, double len, double ramp) {
  if (t < start || t > start + len)
    return 0;
  return smoothstep(start, start + ramp, t) * (1 - smoothstep(start + len - ramp, start + len, t));
}

static double story_dust(const sim_model_t *m, double t) {
  double x = 0;
  if (m->story & SIM_STORY_DUST_NOW)
    x = fmax(x, episode(t, m->story_end - 5400.0, 7200.0, 600.0));
  if (m->story & SIM_STORY_DUST_PAST)
    x = fmax(x, episode(t, last_local(m->story_end, 20 * 3600.0, 10.0), 6000.0, 900.0));
  return x * (275.0 + 10.0 * vnoise(m->key, CH_DUST_EPISODE + 700, t / 120.0));
}

static double story_noise(const sim_model_t *m, double s) {
  if (!(m->story & SIM_STORY_NIGHT_NOISE))
    return 0;
  double start = last_local(m->story_end, 3 * 3600.0, 23.0 + 10.0 / 60.0);
  return s >= start && s < start + 900.0
             ? 72.0 + 1.5 * vnoise(m->key, CH_NOISE_EVENT + 700, s / 20.0)
             : 0;
}

void sim_model_story(sim_model_t *m, unsigned story, double end) {
  m->story = story;
  m->story_end = end;
}

static void report_dust(const sim_model_t *m, double t, proto_pack_t *p);
static void report_noise(sim_model_t *m, double t, proto_pack_t *p);
static void report_power(sim_model_t *m, double t, proto_pack_t *p);

static void add(proto_pack_t *p, int q, double t, double v) {
  if (p->n >= PROTO_PACK_MAX)
    return;
  p->rec[p->n].quantity = (uint8_t)q;
  p->rec[p->n].t_ms = (int64_t)llround(t * 1000.0);
  p->rec[p->n].value = v;
  p->n++;
}

static void report_dust(const sim_model_t *m, double t, proto_pack_t *p) {
  sim_weather_t w;
  struct tm tm;
  sim_weather_at(m->seed, t, &w);
  local_tm(t, &tm);
  double h = sim_local_hour(t);
  /* The city's own PM10, higher in the coal-heating season (winter). */
  double season = cos(2 * M_PI * (tm.tm_yday - 17) / 365.25);
  double bg = (32 + 12 * fmax(0, season)) * exp(0.25 * fbm(m->key, CH_DUST_BG, t, 36 * 3600.0));
  double work = 50 * work_factor(h) * (1 + 0.25 * fbm(m->key, CH_DUST_WORK, t, 3 * 3600.0));
  double wind = 1 + 0.06 * fmax(0, w.wind_speed - 4); /* wind lifts site dust */
  double wet = w.rh > 85 ? 0.8 : 1.0;
  double pm10 = (bg + fmax(work, 0) * wind * wet) *
                exp(0.12 * vnoise(m->key, CH_DUST_WALK, t / 300.0) +
                    0.04 * gauss(draw(m->key, CH_DUST_JITTER, (int64_t)t)));
  pm10 += dust_episode(m->key, t, pm10);
  pm10 = fmax(pm10, story_dust(m, t));
  double r25 = 0.5 + 0.1 * clamp(vnoise(m->key, CH_PM25_RATIO, t / 21600.0), -1, 1);
  double rtsp = 1.75 + 0.25 * clamp(vnoise(m->key, CH_TSP_RATIO, t / 21600.0), -1, 1);
  double rh = clamp(w.rh + 1.5 + 0.5 * gauss(draw(m->key, CH_RH, (int64_t)t)), 5, 100);
  add(p, PROTO_Q_TSP, t, round_to(pm10 * rtsp, 0.1));
  add(p, PROTO_Q_PM10, t, round_to(pm10, 0.1));
  add(p, PROTO_Q_PM2_5, t, round_to(pm10 * r25, 0.1));
  add(p, PROTO_Q_RH, t, round_to(rh, 0.1));
}

/* ---- noise: one LAeq,1s per second */

/* A loud event at night (a concrete truck, a breaker): in each half-hour
 * night slot one may happen, 20 s to 4 min long, at 55-75 dB(A). */
static double night_event(uint64_t key, double s) {
  int64_t slot = (int64_t)floor(s / 1800.0);
  for (int64_t k = slot - 1; k <= slot; k++) {
    if (!is_night(sim_local_hour((double)k * 1800.0 + 900.0)))
      continue;
    uint64_t d = draw(key, CH_NOISE_EVENT, k);
    if (u01(d) >= 0.08)
      continue;
    double start = (double)k * 1800.0 + u01(mix64(d)) * 1800.0;
    double len = 20.0 + u01(mix64(d + 1)) * 220.0;
    if (s >= start && s < start + len)
      return 55.0 + u01(mix64(d + 2)) * 20.0;
  }
  return 0;
}

static double noise_second(uint64_t key, double s) {
  double h = sim_local_hour(s);
  double night = clamp(46 + 2 * fbm(key, CH_NOISE_LEVEL, s, 7200.0), 42, 50);
  double quiet = is_night(h) ? night : clamp(54 + 2 * fbm(key, CH_NOISE_LEVEL, s, 3600.0), 50, 58);
  double day = clamp(66 + 3.5 * fbm(key, CH_NOISE_LEVEL + 1, s, 5400.0), 60, 72);
  double w = work_factor(h);
  double la = quiet + (day - quiet) * w;
  la += (0.6 + 1.4 * w) * vnoise(key, CH_NOISE_MACHINE, s / 45.0);
  la += (1.0 + 0.8 * w) * gauss(draw(key, CH_NOISE_SECOND, (int64_t)s));
  uint64_t imp = draw(key, CH_NOISE_IMPULSE, (int64_t)s); /* hammering, a dropped load */
  if (w > 0.5 && u01(imp) < 0.02)
    la += 6 + 8 * u01(mix64(imp));
  double ev = night_event(key, s);
  if (ev > 0)
    la = fmax(la, ev + 1.5 * gauss(mix64(imp + 7)));
  return round_to(clamp(la, 30, 120), 0.1);
}

static void report_noise(sim_model_t *m, double t, proto_pack_t *p) {
  double end = floor(t), s = floor(m->last_t) + 1, lamax = 0;
  if (end - s >= PROTO_PACK_MAX - 1) /* after a stall, only what fits */
    s = end - (PROTO_PACK_MAX - 2);
  for (; s <= end; s++) {
    double la = fmax(noise_second(m->key, s), round_to(story_noise(m, s), 0.1));
    add(p, PROTO_Q_LA, s, la);
    lamax = fmax(lamax, la);
  }
  m->last_t = end;
  if (lamax > 0) /* LAFmax over the pack: above the highest 1-s LAeq */
    add(p, PROTO_Q_LAMAX, end,
        round_to(lamax + 2.5 + 3.0 * u01(draw(m->key, CH_LAMAX, (int64_t)end)), 0.1));
}

/* ---- power: energy meters and equipment */

static bool equipment_on(const sim_model_t *m, double t) {
  if (m->always_on)
    return true;
  double w = work_factor(sim_local_hour(t));
  /* Smooth noise above a threshold gives runs of tens of minutes. */
  double duty = vnoise(m->key, CH_DUTY, t / 1500.0);
  return duty > (w > 0.3 ? -0.35 : 1.9);
}

static double power_at(const sim_model_t *m, double t, bool *on) {
  if (m->type == SG_DEV_ENERGY) { /* a distribution board: offices, lights, tools */
    double w = work_factor(sim_local_hour(t));
    double kw = m->rated_kw * (0.12 + 0.55 * w * (1 + 0.2 * fbm(m->key, CH_LOAD, t, 5400.0)) +
                               0.03 * vnoise(m->key, CH_LOAD_JITTER, t / 60.0));
    kw = fmax(kw, 0.02 * m->rated_kw);
    *on = true;
    return kw;
  }
  *on = equipment_on(m, t);
  if (!*on)
    return 0.01 * m->rated_kw; /* controller and heater standby */
  double load = 0.7 + 0.15 * vnoise(m->key, CH_LOAD, t / 300.0) +
                0.05 * vnoise(m->key, CH_LOAD_JITTER, t / 20.0);
  return m->rated_kw * clamp(load, 0.15, 1.0);
}

static void integrate_energy(sim_model_t *m, double t) {
  const double step = 10.0;
  bool on;
  double a = m->energy_t, pa = power_at(m, a, &on);
  while (a < t) {
    double b = fmin(a + step, t), pb = power_at(m, b, &on);
    m->energy_kwh += (pa + pb) / 2 * (b - a) / 3600.0;
    a = b;
    pa = pb;
  }
  m->energy_t = t;
}

static void report_power(sim_model_t *m, double t, proto_pack_t *p) {
  bool on;
  if (t > m->energy_t)
    integrate_energy(m, t);
  double kw = power_at(m, t, &on);
  add(p, PROTO_Q_POWER, t, round_to(kw, 0.1));
  add(p, PROTO_Q_ENERGY, t, round_to(m->energy_kwh, 0.01));
  add(p, PROTO_Q_ON, t, on ? 1 : 0);
}

/* ---- machine terminals (issue 17): a machine works 07:00-12:00 and
 * 13:00-19:00 site time, or all day when it is a pump or a generator set
 * (its register type says so); while it works its terminal reports the
 * engine-hour, idle-hour and fuel counters and, for a diesel or petrol
 * engine, the smoke opacity; a machine at rest reports nothing. The
 * counters are pure functions of time (hours run since MACH_EPOCH at the
 * machine's duty), so two runs agree and a counter never goes back. */
#define MACH_EPOCH 1735689600.0 /* 2025-01-01: the counters' start */
#define MACH_LOAD 0.5           /* average load, as gateway/machinery assumes */
/* Diesel at about 200 g/kWh brake-specific consumption, 0.84 kg/l. */
#define MACH_L_PER_KWH 0.24

/* Opacity of a sound engine by stage (0, I, II, III, IV), m^-1: older
 * stages smoke more; a worn engine (--smoky) five times as much. These
 * are the simulation's, not figures from a standard. */
static const double opacity_base[] = {0.9, 0.7, 0.5, 0.3, 0.12};

static bool machine_works(const sim_model_t *m, double h) {
  return m->all_day || (h >= 7.0 && h < 12.0) || (h >= 13.0 && h < 19.0);
}

/* Engine hours run up to t since MACH_EPOCH (China keeps no DST, so a
 * local day is 86400 s). */
static double machine_hours(const sim_model_t *m, double t) {
  double h = sim_local_hour(t);
  double days = floor((t - h * 3600.0 - MACH_EPOCH) / 86400.0 + 0.5);
  double per_day = m->all_day ? 24.0 : 11.0;
  double today = m->all_day ? h : clamp(h - 7.0, 0, 5) + clamp(h - 13.0, 0, 6);
  return m->duty * (fmax(days, 0) * per_day + today);
}

static void report_machine(const sim_model_t *m, double t, proto_pack_t *p) {
  if (!machine_works(m, sim_local_hour(t)))
    return;
  double run = machine_hours(m, t);
  add(p, PROTO_Q_ENGINE_H, t, round_to(m->engine_h0 + run, 0.01));
  add(p, PROTO_Q_IDLE_H, t, round_to(m->idle_share * (m->engine_h0 + run), 0.01));
  if (m->stage == PROTO_STAGE_ELECTRIC)
    return;
  add(p, PROTO_Q_FUEL, t,
      round_to(m->fuel_l0 + run * m->rated_kw * MACH_LOAD * MACH_L_PER_KWH, 0.1));
  int st = m->stage >= 0 && m->stage <= PROTO_STAGE_IV ? m->stage : PROTO_STAGE_III;
  double op = opacity_base[st] * (m->smoky ? 5.0 : 1.0) *
              (1 + 0.1 * clamp(gauss(draw(m->key, CH_OPACITY, (int64_t)floor(t))), -2.5, 2.5));
  add(p, PROTO_Q_OPACITY, t, round_to(clamp(op, 0.02, 9.0), 0.01));
}

void sim_model_machine(sim_model_t *m, const proto_machine_t *reg, bool smoky) {
  m->stage = reg ? reg->stage : PROTO_STAGE_III;
  m->rated_kw = reg && reg->power_kw > 0 ? reg->power_kw : 100;
  m->smoky = smoky;
  m->all_day = reg && (strstr(reg->type, "泵") || strstr(reg->type, "pump") ||
                       strstr(reg->type, "发电") || strstr(reg->type, "generator"));
}

/* ---- the model API */

void sim_model_init(sim_model_t *m, const sg_device_t *d, uint64_t seed, double t_start) {
  memset(m, 0, sizeof(*m));
  m->type = d->type;
  m->seed = seed;
  m->key = sim_key(seed, d->id);
  m->last_t = floor(t_start);
  m->rated_kw = d->rated_kw > 0 ? d->rated_kw : d->type == SG_DEV_ENERGY ? 200 : 30;
  m->always_on = strstr(d->kind, "pump") != NULL || strstr(d->kind, "dewater") != NULL;
  /* A counter that has run for a while: a share of rated power since a
   * fixed epoch (2025-01-01), so later starts show larger counters. */
  double since = fmax(0, t_start - 1735689600.0);
  m->energy_kwh = round_to(
      500 + 20000 * u01(draw(m->key, CH_COUNTER, 0)) + m->rated_kw * 0.2 * since / 3600.0, 0.01);
  m->energy_t = t_start;
  m->duty = 0.6 + 0.3 * u01(draw(m->key, CH_MACHINE, 0));
  m->idle_share = 0.15 + 0.2 * u01(draw(m->key, CH_MACHINE, 1));
  m->engine_h0 = round_to(800 + 4000 * u01(draw(m->key, CH_MACHINE, 2)), 0.01);
  m->fuel_l0 = round_to(5000 + 40000 * u01(draw(m->key, CH_MACHINE, 3)), 0.1);
  if (d->type == SG_DEV_MACHINE)
    sim_model_machine(m, NULL, false);
}

void sim_model_report(sim_model_t *m, const char *device, double t, proto_pack_t *p) {
  snprintf(p->device, sizeof(p->device), "%s", device);
  p->n = 0;
  switch (m->type) {
  case SG_DEV_DUST:
    report_dust(m, t, p);
    break;
  case SG_DEV_NOISE:
    report_noise(m, t, p);
    break;
  case SG_DEV_WEATHER: {
    sim_weather_t w;
    sim_weather_at(m->seed, t, &w);
    add(p, PROTO_Q_TEMP, t, w.temp);
    add(p, PROTO_Q_RH, t, w.rh);
    add(p, PROTO_Q_PRESSURE, t, w.pressure);
    add(p, PROTO_Q_WIND_SPEED, t, w.wind_speed);
    add(p, PROTO_Q_WIND_DIR, t, w.wind_dir);
    break;
  }
  case SG_DEV_ENERGY:
  case SG_DEV_EQUIPMENT:
    report_power(m, t, p);
    break;
  case SG_DEV_MACHINE:
    report_machine(m, t, p);
    break;
  case SG_DEV_SCALE:
  case SG_DEV_GATE: /* weighbridge.c and gate.c */
    break;
  }
}

/* ---- for controlled equipment (equipment.c): the unit's own work, as if
 * its controller let it run. */
double sim_model_natural_power(const sim_model_t *m, double t, bool *busy) {
  return power_at(m, t, busy);
}
