/* sitectl's equipment, energy and carbon commands: thin clients of
 * /api/equipment, /api/equipment/log, /api/equipment/UNIT/override,
 * /api/energy and /api/carbon (gateway/api/api_equipment.c). Tables for a
 * person in the site's zone; --json prints the API's answer as it is. */

#include "gateway/sitectl/sitectl.h"
#include <ctype.h>
#include <math.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *jstr(const json_t *o, const char *k) {
  const char *s = json_string_value(json_object_get(o, k));
  return s ? s : "";
}

static double jnum(const json_t *o, const char *k) {
  json_t *v = json_object_get(o, k);
  return json_is_number(v) ? json_number_value(v) : NAN;
}

static const char *num(double v, char *buf, size_t cap) { return fmt_num(v, buf, cap); }

/* A setting as the configuration has it (80 kW, 2 C), not a measured figure. */
static const char *setting(double v, char *buf, size_t cap) {
  if (!isfinite(v))
    return "?";
  snprintf(buf, cap, "%g", v);
  return buf;
}

/* fmt_time, with "-" for a time the API does not know (null). */
static const char *when(double t, char *buf, size_t cap) {
  return fmt_time(isfinite(t) ? t : 0, buf, cap);
}

/* Who acts: --by, else $SITECTL_USER, else the login name. */
static const char *who(const ctl_t *ctl) {
  if (ctl->by && *ctl->by)
    return ctl->by;
  const char *u = getenv("SITECTL_USER");
  if (u && *u)
    return u;
  struct passwd *pw = getpwuid(getuid());
  return pw && pw->pw_name ? pw->pw_name : "unknown";
}

/* "2h", "90m", "45s", "1d" or seconds; -1 when it is none of them. */
static double parse_duration(const char *s) {
  char *end;
  double v = strtod(s, &end);
  if (end == s || !isfinite(v) || v <= 0)
    return -1;
  double mult = strcmp(end, "") == 0 || strcmp(end, "s") == 0 ? 1
                : strcmp(end, "m") == 0                       ? 60
                : strcmp(end, "h") == 0                       ? 3600
                : strcmp(end, "d") == 0                       ? 86400
                                                              : -1;
  return mult < 0 ? -1 : v * mult;
}

/* ---- sitectl equipment */

static void policy_text(const json_t *g, char *out, size_t cap) {
  const json_t *p = json_object_get(g, "policies");
  size_t n = 0;
  char a[32];
  out[0] = '\0';
#define ADD(...)                                                                                   \
  do {                                                                                             \
    if (n < cap)                                                                                   \
      n += (size_t)snprintf(out + n, cap - n, "%s", n ? M("ctl.list_sep") : "");                   \
    if (n < cap)                                                                                   \
      n += (size_t)snprintf(out + n, cap - n, __VA_ARGS__);                                        \
  } while (0)
  char w[256], b[32];
  if (jnum(p, "peak_kw") > 0)
    ADD("%s",
        MF(w, sizeof(w), "ctl.eq.cap", "kw", setting(jnum(p, "peak_kw"), a, sizeof(a)), NULL));
  if (jnum(p, "idle_off_min") > 0)
    ADD("%s", MF(w, sizeof(w), "ctl.eq.idle_off", "min",
                 setting(jnum(p, "idle_off_min"), a, sizeof(a)), NULL));
  if (jnum(p, "duty") > 0) {
    snprintf(b, sizeof(b), "%.0f", jnum(p, "duty"));
    ADD("%s", MF(w, sizeof(w), "ctl.eq.duty", "n", b, "h",
                 setting(jnum(p, "rotate_h"), a, sizeof(a)), NULL));
  }
  if (strcmp(jstr(p, "schedule"), "always") != 0)
    ADD("%s", MF(w, sizeof(w),
                 json_is_true(json_object_get(p, "schedule_allows_now")) ? "ctl.eq.sched_yes"
                                                                         : "ctl.eq.sched_no",
                 "schedule", MN("sched", jstr(p, "schedule")), NULL));
  if (*jstr(p, "dust_linkage")) {
    static const char *const levels[] = {"normal", "warning", "alarm"};
    char t[32];
    double temp = jnum(g, "temp_c");
    json_t *jl = json_object_get(g, "dust_level");
    json_int_t level = json_is_integer(jl) ? json_integer_value(jl) : -1;
    const char *station = jstr(p, "dust_linkage");
    ADD("%s", MF(w, sizeof(w), "ctl.eq.dust", "station",
                 strcmp(station, "any") == 0 ? M("link_any") : station, "at",
                 MN("level", jstr(p, "dust_level")), "now",
                 level >= 0 && level <= 2 ? MN("level", levels[level]) : M("st_unknown"), "freeze",
                 setting(jnum(p, "freeze_c"), a, sizeof(a)), "air",
                 isnan(temp) ? "?" : setting(temp, t, sizeof(t)), NULL));
  }
  if (n == 0)
    ADD("%s", M("ctl.eq.metering"));
#undef ADD
}

static int equipment_show(ctl_t *ctl) {
  json_t *r;
  int rc = api_get(ctl, "/api/equipment", &r);
  if (rc)
    return rc;
  if (json_answer(ctl, r))
    return 0;
  size_t i;
  json_t *g, *u;
  table_t tg = {.ncols = 3};
  tg.right[1] = true;
  table_row(&tg, M("ctl.col.group"), M("ctl.col.power_kw"), M("ctl.col.policies"));
  json_array_foreach(json_object_get(r, "groups"), i, g) {
    char p[512], a[32];
    policy_text(g, p, sizeof(p));
    table_row(&tg, jstr(g, "name"), num(jnum(g, "power_kw"), a, sizeof(a)), p);
  }
  table_print(&tg);
  printf("\n");
  table_t t = {.ncols = 8};
  t.right[3] = t.right[4] = true;
  table_row(&t, M("ctl.col.unit"), M("ctl.col.group"), M("ctl.col.state"), M("ctl.col.power_kw"),
            M("ctl.col.run_h"), M("ctl.col.since"), M("ctl.col.control"), M("ctl.col.command"));
  json_array_foreach(json_object_get(r, "units"), i, u) {
    char kw[32], runh[32], since[32], control[400] = "-", cmd[160] = "-", until[32];
    const json_t *ovr = json_object_get(u, "override"), *pend = json_object_get(u, "pending");
    if (!json_is_true(json_object_get(u, "controllable")))
      snprintf(control, sizeof(control), "%s",
               M(strcmp(jstr(u, "type"), "energy") == 0 ? "ctl.eq.meter" : "ctl.eq.no_ctl"));
    else if (json_is_object(ovr))
      MF(control, sizeof(control), "ctl.eq.override", "on",
         M(json_is_true(json_object_get(ovr, "on")) ? "ctl.on" : "ctl.off"), "until",
         when(jnum(ovr, "until"), until, sizeof(until)), "by", jstr(ovr, "by"), "reason",
         jstr(ovr, "reason"), NULL);
    else if (json_is_string(json_object_get(u, "held")))
      MF(control, sizeof(control), "ctl.eq.held", "why", MN("why", jstr(u, "held")), NULL);
    else if (!json_is_true(json_object_get(u, "reachable")))
      snprintf(control, sizeof(control), "%s", M("ctl.eq.no_answer"));
    char tries[24];
    if (json_is_object(pend))
      MF(cmd, sizeof(cmd), "ctl.eq.pending", "on",
         M(json_is_true(json_object_get(pend, "on")) ? "ctl.on" : "ctl.off"), "why",
         MN("why", jstr(pend, "reason")), "n", fmt_int(pend, "attempts", tries, sizeof(tries)),
         NULL);
    else if (json_is_true(json_object_get(u, "not_following")))
      snprintf(cmd, sizeof(cmd), "%s", M("ctl.eq.not_following"));
    table_row(&t, jstr(u, "id"), jstr(u, "group"), MN("st", jstr(u, "state")),
              num(jnum(u, "power_kw"), kw, sizeof(kw)), num(jnum(u, "run_h"), runh, sizeof(runh)),
              when(jnum(u, "since"), since, sizeof(since)), control, cmd);
  }
  table_print(&t);
  json_decref(r);
  return 0;
}

/* sitectl equipment set UNIT on|off|auto [--for 2h] --reason TEXT */
static int equipment_set(ctl_t *ctl, const char *unit, const char *what) {
  bool clear = strcmp(what, "auto") == 0;
  if (!clear && strcmp(what, "on") != 0 && strcmp(what, "off") != 0) {
    say(stderr, "ctl.eq.on_off_auto", "arg", what, NULL);
    return EXIT_USAGE;
  }
  double for_s = 2 * 3600.0;
  if (ctl->for_ && (for_s = parse_duration(ctl->for_)) < 0) {
    say(stderr, "ctl.eq.bad_for", "arg", ctl->for_, NULL);
    return EXIT_USAGE;
  }
  if (!clear && (!ctl->reason || !*ctl->reason)) {
    say(stderr, "ctl.eq.need_reason", NULL);
    return EXIT_USAGE;
  }
  json_t *body = clear ? json_pack("{s:b,s:s,s:s}", "clear", 1, "by", who(ctl), "reason",
                                   ctl->reason ? ctl->reason : "")
                       : json_pack("{s:b,s:f,s:s,s:s}", "on", strcmp(what, "on") == 0, "for_s",
                                   for_s, "by", who(ctl), "reason", ctl->reason);
  char esc[160], path[256];
  url_escape(unit, esc, sizeof(esc));
  snprintf(path, sizeof(path), "/api/equipment/%s/override", esc);
  json_t *r;
  int rc = api_request(ctl, "POST", path, body, &r);
  json_decref(body);
  if (rc)
    return rc;
  if (ctl->json) {
    print_json(r);
  } else {
    json_t *ovr = json_object_get(r, "override"), *pend = json_object_get(r, "pending");
    char until[32];
    if (json_is_object(ovr))
      say(stdout, "ctl.eq.set", "unit", unit, "on",
          M(json_is_true(json_object_get(ovr, "on")) ? "ctl.on" : "ctl.off"), "until",
          when(jnum(ovr, "until"), until, sizeof(until)), "reason", jstr(ovr, "reason"), NULL);
    else
      say(stdout, "ctl.eq.back_auto", "unit", unit, NULL);
    if (json_is_object(pend))
      say(stdout, "ctl.eq.sent", "on",
          M(json_is_true(json_object_get(pend, "on")) ? "ctl.on" : "ctl.off"), "why",
          MN("why", jstr(pend, "reason")), "unit", unit, NULL);
  }
  json_decref(r);
  return 0;
}

/* sitectl equipment log [UNIT] [--since T] */
static int equipment_log(ctl_t *ctl, const char *unit) {
  double now = sg_now(), since = now - 86400.0;
  if (ctl->since && sg_parse_time(ctl->since, now, &since) != 0) {
    say(stderr, "ctl.bad_time", "opt", "--since", "arg", ctl->since, NULL);
    return EXIT_USAGE;
  }
  char path[256], esc[160] = "";
  if (unit)
    url_escape(unit, esc, sizeof(esc));
  snprintf(path, sizeof(path), "/api/equipment/log?since=%.3f%s%s", since, unit ? "&unit=" : "",
           esc);
  json_t *r;
  int rc = api_get(ctl, path, &r);
  if (rc)
    return rc;
  if (json_answer(ctl, r))
    return 0;
  table_t t = {.ncols = 9};
  table_row(&t, M("ctl.col.time"), M("ctl.col.unit"), M("ctl.col.group"), M("ctl.col.switch"),
            M("reason"), M("origin"), M("by"), M("result"), M("note"));
  size_t i;
  json_t *e;
  json_array_foreach(json_object_get(r, "entries"), i, e) {
    char tm[32], result[64];
    double rt = jnum(e, "result_t"), t0 = jnum(e, "t");
    long long tries = (long long)json_integer_value(json_object_get(e, "attempts"));
    char secs[24], sent[24];
    snprintf(secs, sizeof(secs), "%.0f", rt - t0);
    snprintf(sent, sizeof(sent), "%lld", tries);
    if (isfinite(rt) && tries > 0)
      MF(result, sizeof(result), "ctl.eq.result_after", "result", MN("res", jstr(e, "result")), "s",
         secs, "n", sent, NULL);
    else
      snprintf(result, sizeof(result), "%s", MN("res", jstr(e, "result")));
    table_row(&t, when(t0, tm, sizeof(tm)), jstr(e, "unit"), jstr(e, "group"),
              M(json_is_true(json_object_get(e, "on")) ? "ctl.on" : "ctl.off"),
              MN("why", jstr(e, "reason")), MN("origin", jstr(e, "origin")),
              MN("by", jstr(e, "by")), result, jstr(e, "note"));
  }
  if (json_array_size(json_object_get(r, "entries")) == 0) {
    table_discard(&t);
    say(stdout, "ctl.eq.no_commands", "since", when(since, path, sizeof(path)), NULL);
  } else
    table_print(&t);
  json_decref(r);
  return 0;
}

int cmd_equipment(ctl_t *ctl, int argc, char **argv) {
  /* The words first: a usage error is one whether or not the gateway is up. */
  bool set = argc == 3 && strcmp(argv[0], "set") == 0;
  if (argc > 0 && !set && !(strcmp(argv[0], "log") == 0 && argc <= 2))
    return EXIT_USAGE;
  if (set && strcmp(argv[2], "on") != 0 && strcmp(argv[2], "off") != 0 &&
      strcmp(argv[2], "auto") != 0) {
    say(stderr, "ctl.eq.on_off_auto", "arg", argv[2], NULL);
    return EXIT_USAGE;
  }
  int rc = fetch_zone(ctl);
  if (rc)
    return rc;
  if (argc == 0)
    return equipment_show(ctl);
  if (strcmp(argv[0], "set") == 0 && argc == 3)
    return equipment_set(ctl, argv[1], argv[2]);
  if (strcmp(argv[0], "log") == 0 && argc <= 2)
    return equipment_log(ctl, argc == 2 ? argv[1] : NULL);
  return EXIT_USAGE;
}

/* ---- sitectl energy, sitectl carbon */

/* "?since=..&until=.." from --since/--until; 0 or an exit status. */
static int period_query(const ctl_t *ctl, char *q, size_t cap) {
  double now = sg_now(), since = 0, until = 0;
  if (ctl->since && sg_parse_time(ctl->since, now, &since) != 0) {
    say(stderr, "ctl.bad_day", "opt", "--since", "arg", ctl->since, NULL);
    return EXIT_USAGE;
  }
  if (ctl->until && sg_parse_time(ctl->until, now, &until) != 0) {
    say(stderr, "ctl.bad_day", "opt", "--until", "arg", ctl->until, NULL);
    return EXIT_USAGE;
  }
  size_t n = (size_t)snprintf(q, cap, "?");
  if (ctl->since)
    n += (size_t)snprintf(q + n, n < cap ? cap - n : 0, "since=%.3f&", since);
  if (ctl->until)
    snprintf(q + n, n < cap ? cap - n : 0, "until=%.3f", until);
  return 0;
}

static void print_period(const json_t *r) {
  char a[32], b[32];
  char d1[16], d2[16];
  snprintf(d1, sizeof(d1), "%.10s", when(jnum(r, "since"), a, sizeof(a)));
  snprintf(d2, sizeof(d2), "%.10s", when(jnum(r, "until") - 1, b, sizeof(b)));
  say(stdout, "ctl.en.period", "from", d1, "to", d2, NULL);
}

/* GETs `api` for the --since/--until period, in the site's time zone. */
static int get_period(ctl_t *ctl, const char *api, json_t **r) {
  int rc = fetch_zone(ctl);
  if (rc)
    return rc;
  char q[128], path[192];
  if ((rc = period_query(ctl, q, sizeof(q))) != 0)
    return rc;
  snprintf(path, sizeof(path), "%s%s", api, q);
  return api_get(ctl, path, r);
}

int cmd_energy(ctl_t *ctl, int argc, char **argv) {
  (void)argv;
  if (argc != 0)
    return EXIT_USAGE;
  json_t *r;
  int rc = get_period(ctl, "/api/energy", &r);
  if (rc)
    return rc;
  if (json_answer(ctl, r))
    return 0;
  print_period(r);
  printf("\n");
  table_t t = {.ncols = 8};
  for (size_t c = 2; c < 8; c++)
    t.right[c] = true;
  table_row(&t, M("ctl.col.unit"), M("ctl.col.group"), "kWh", M("ctl.col.fuel_l"),
            M("ctl.col.run_h"), M("ctl.col.idle_h"), M("ctl.col.idle_kwh"),
            M("ctl.col.counter_kwh"));
  size_t i;
  json_t *u;
  char c1[32], c2[32], c3[32], c4[32], c5[32], c6[32];
  json_array_foreach(json_object_get(r, "units"), i, u) {
    const json_t *tot = json_object_get(u, "total"), *ctr = json_object_get(u, "counter");
    table_row(&t, jstr(u, "id"), *jstr(u, "group") ? jstr(u, "group") : "-",
              num(jnum(tot, "kwh"), c1, sizeof(c1)), num(jnum(tot, "fuel_l"), c2, sizeof(c2)),
              num(jnum(tot, "run_h"), c3, sizeof(c3)), num(jnum(tot, "idle_h"), c4, sizeof(c4)),
              num(jnum(tot, "idle_kwh"), c5, sizeof(c5)), num(jnum(ctr, "value"), c6, sizeof(c6)));
  }
  const json_t *tot = json_object_get(r, "total");
  table_row(&t, M("total"), "", num(jnum(tot, "kwh"), c1, sizeof(c1)),
            num(jnum(tot, "fuel_l"), c2, sizeof(c2)), num(jnum(tot, "run_h"), c3, sizeof(c3)),
            num(jnum(tot, "idle_h"), c4, sizeof(c4)), num(jnum(tot, "idle_kwh"), c5, sizeof(c5)),
            "");
  table_print(&t);
  printf("\n");
  table_t d = {.ncols = 5};
  for (size_t c = 1; c < 5; c++)
    d.right[c] = true;
  table_row(&d, M("ctl.col.day"), "kWh", M("ctl.col.fuel_l"), M("ctl.col.run_h"),
            M("ctl.col.idle_h"));
  json_t *day;
  json_array_foreach(json_object_get(r, "days"), i, day) {
    table_row(&d, jstr(day, "date"), num(jnum(day, "kwh"), c1, sizeof(c1)),
              num(jnum(day, "fuel_l"), c2, sizeof(c2)), num(jnum(day, "run_h"), c3, sizeof(c3)),
              num(jnum(day, "idle_h"), c4, sizeof(c4)));
  }
  table_print(&d);
  json_decref(r);
  return 0;
}

int cmd_carbon(ctl_t *ctl, int argc, char **argv) {
  (void)argv;
  if (argc != 0)
    return EXIT_USAGE;
  json_t *r;
  int rc = get_period(ctl, "/api/carbon", &r);
  if (rc)
    return rc;
  if (json_answer(ctl, r))
    return 0;
  const json_t *f = json_object_get(r, "factors"), *p = json_object_get(r, "period"),
               *all = json_object_get(r, "cumulative");
  char a[32], b[32], c[32], e[32], tm[32];
  char g1[24], g2[24], t1[24], k1[24], day[16];
  snprintf(g1, sizeof(g1), "%.4f", jnum(f, "grid_t_per_mwh"));
  snprintf(g2, sizeof(g2), "%.3f", jnum(f, "diesel_kg_per_l"));
  say(stdout, "ctl.co.factors", "grid", g1, "diesel", g2, NULL);
  print_period(r);
  snprintf(t1, sizeof(t1), "%.3f", jnum(p, "t_co2"));
  snprintf(k1, sizeof(k1), "%.5f", jnum(p, "kg_per_m2"));
  say(stdout, isfinite(jnum(p, "kg_per_m2")) ? "ctl.co.period_m2" : "ctl.co.period", "kwh",
      num(jnum(p, "kwh"), a, sizeof(a)), "l", num(jnum(p, "fuel_l"), b, sizeof(b)), "t", t1, "kg",
      k1, "m2", num(jnum(r, "floor_area_m2"), c, sizeof(c)), NULL);
  snprintf(day, sizeof(day), "%.10s", when(jnum(all, "since"), tm, sizeof(tm)));
  snprintf(t1, sizeof(t1), "%.3f", jnum(all, "t_co2"));
  snprintf(k1, sizeof(k1), "%.5f", jnum(all, "kg_per_m2"));
  say(stdout, isfinite(jnum(all, "kg_per_m2")) ? "ctl.co.cumulative_m2" : "ctl.co.cumulative",
      "since", day, "kwh", num(jnum(all, "kwh"), a, sizeof(a)), "l",
      num(jnum(all, "fuel_l"), b, sizeof(b)), "t", t1, "kg", k1, NULL);
  printf("\n");
  table_t d = {.ncols = 4};
  d.right[1] = d.right[2] = d.right[3] = true;
  table_row(&d, M("ctl.col.day"), "kWh", M("ctl.col.fuel_l"), "t CO₂");
  size_t i;
  json_t *x;
  json_array_foreach(json_object_get(r, "days"), i, x) {
    snprintf(e, sizeof(e), "%.3f", jnum(x, "t_co2"));
    table_row(&d, jstr(x, "date"), num(jnum(x, "kwh"), a, sizeof(a)),
              num(jnum(x, "fuel_l"), b, sizeof(b)), e);
  }
  table_print(&d);
  printf("\n");
  table_t g = {.ncols = 4};
  g.right[1] = g.right[2] = g.right[3] = true;
  table_row(&g, M("ctl.col.group"), "kWh", M("ctl.col.fuel_l"), "t CO₂");
  json_array_foreach(json_object_get(r, "groups"), i, x) {
    snprintf(e, sizeof(e), "%.3f", jnum(x, "t_co2"));
    table_row(&g, strcmp(jstr(x, "name"), "-") == 0 ? M("ctl.co.meters") : jstr(x, "name"),
              num(jnum(x, "kwh"), a, sizeof(a)), num(jnum(x, "fuel_l"), b, sizeof(b)), e);
  }
  table_print(&g);
  json_decref(r);
  return 0;
}
