/* sitectl's alarm, noise and dust commands: thin clients of /api/alarms,
 * /api/noise and /api/dust. Tables for a person in the site's zone;
 * --json prints the API's answer as it is. */

#include "gateway/sitectl/sitectl.h"
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

/* A --since/--until argument, or `def`. Prints the usage hint on failure. */
static int time_arg(const char *opt, const char *s, double now, double def, double *out) {
  *out = def;
  if (s && sg_parse_time(s, now, out) != 0) {
    say(stderr, "ctl.bad_time", "opt", opt, "arg", s, NULL);
    return EXIT_USAGE;
  }
  return 0;
}

/* ---- alarms */

static void alarm_rows(const ctl_t *ctl, table_t *t, json_t *alarms) {
  size_t i;
  json_t *a;
  (void)ctl;
  const msgcat_t *cat = words_cat();
  const char *lang = words_lang();
  table_row(t, M("ctl.col.id"), M("level"), M("rule"), M("source"), M("figure"), M("limit"),
            M("raised"), M("status"), M("message"));
  json_array_foreach(alarms, i, a) {
    char id[32], fig[48], lim[48], raised[32], state[128], n1[32], n2[32];
    snprintf(id, sizeof(id), "%lld", (long long)json_integer_value(json_object_get(a, "id")));
    snprintf(fig, sizeof(fig), "%s %s", fmt_num(jnum(a, "figure"), n1, sizeof(n1)),
             jstr(a, "unit"));
    snprintf(lim, sizeof(lim), "%s", fmt_num(jnum(a, "limit"), n2, sizeof(n2)));
    fmt_time(jnum(a, "raised"), raised, sizeof(raised));
    if (!json_is_true(json_object_get(a, "active"))) {
      char c[32];
      snprintf(state, sizeof(state), "%s %s", M("cleared"),
               fmt_time(jnum(a, "cleared"), c, sizeof(c)));
    } else if (json_is_true(json_object_get(a, "acked"))) {
      snprintf(state, sizeof(state), "%s %s", M("acked"), jstr(a, "acked_by"));
    } else {
      snprintf(state, sizeof(state), "%s", M("not_acked"));
    }
    char level[32], name[128], text[512];
    snprintf(level, sizeof(level), "level_%s", jstr(a, "level"));
    msgcat_alarm_t ma = {.rule = jstr(a, "rule"),
                         .source = jstr(a, "source"),
                         .unit = jstr(a, "unit"),
                         .figure = jnum(a, "figure"),
                         .limit = jnum(a, "limit"),
                         .peak = jnum(a, "peak")};
    table_row(t, id, M(level), msgcat_rule_name(cat, lang, ma.rule, name, sizeof(name)), ma.source,
              fig, lim, raised, state,
              cat ? msgcat_alarm_text(cat, lang, &ma, ma.figure, text, sizeof(text))
                  : jstr(a, "message"));
  }
}

/* sitectl alarms [--all] [--since T] */
int cmd_alarms(ctl_t *ctl, int argc, char **argv) {
  (void)argv;
  if (argc != 0)
    return EXIT_USAGE;
  json_t *r;
  int rc = fetch_zone(ctl);
  if (rc)
    return rc;
  char path[256] = "/api/alarms?active=1";
  if (ctl->all || ctl->since) {
    double now = sg_now(), since;
    if ((rc = time_arg("--since", ctl->since, now, now - 7 * 86400.0, &since)) != 0)
      return rc;
    snprintf(path, sizeof(path), "/api/alarms?active=%d&since=%.3f", ctl->all ? 0 : 1, since);
  }
  if ((rc = api_get(ctl, path, &r)) != 0)
    return rc;
  if (json_answer(ctl, r))
    return 0;
  json_t *alarms = json_object_get(r, "alarms");
  if (json_array_size(alarms) == 0) {
    say(stdout, ctl->all ? "ctl.no_alarms_period" : "ctl.no_alarms", NULL);
  } else {
    table_t t = {.ncols = 9};
    t.right[0] = t.right[4] = t.right[5] = true;
    alarm_rows(ctl, &t, alarms);
    table_print(&t);
  }
  json_decref(r);
  return 0;
}

/* Who acknowledges: --by, else $SITECTL_USER, else the login name. */
static const char *who(const ctl_t *ctl) {
  if (ctl->by && *ctl->by)
    return ctl->by;
  const char *u = getenv("SITECTL_USER");
  if (u && *u)
    return u;
  struct passwd *pw = getpwuid(getuid());
  return pw && pw->pw_name ? pw->pw_name : "unknown";
}

static int alarm_ack(ctl_t *ctl, const char *id_arg) {
  char *end;
  long long id = strtoll(id_arg, &end, 10);
  if (*end || id <= 0) {
    say(stderr, "ctl.bad_alarm_id", "arg", id_arg, NULL);
    return EXIT_USAGE;
  }
  if (!ctl->note || !*ctl->note) {
    say(stderr, "ctl.need_note", NULL);
    return EXIT_USAGE;
  }
  char path[64];
  snprintf(path, sizeof(path), "/api/alarms/%lld/ack", id);
  json_t *body = json_pack("{s:s,s:s}", "by", who(ctl), "note", ctl->note), *r;
  int rc = api_request(ctl, "POST", path, body, &r);
  json_decref(body);
  if (rc)
    return rc;
  if (ctl->json)
    print_json(r);
  else
    say(stdout, "ctl.acked", "id", id_arg, "by", jstr(r, "by"), NULL);
  json_decref(r);
  return 0;
}

static int alarm_show(ctl_t *ctl, const char *id_arg) {
  char *end, path[64];
  long long id = strtoll(id_arg, &end, 10);
  if (*end || id <= 0) {
    say(stderr, "ctl.bad_alarm_id", "arg", id_arg, NULL);
    return EXIT_USAGE;
  }
  json_t *r;
  int rc = fetch_zone(ctl);
  if (rc)
    return rc;
  snprintf(path, sizeof(path), "/api/alarms/%lld", id);
  if ((rc = api_get(ctl, path, &r)) != 0)
    return rc;
  if (json_answer(ctl, r))
    return 0;
  json_t *list = json_array();
  json_array_append(list, r);
  table_t t = {.ncols = 9};
  t.right[0] = t.right[4] = t.right[5] = true;
  alarm_rows(ctl, &t, list);
  table_print(&t);
  json_decref(list);
  printf("\n");
  table_t h = {.ncols = 6};
  h.right[3] = h.right[4] = true;
  table_row(&h, M("ctl.col.time"), M("ctl.col.event"), M("ctl.col.level"), M("figure"), M("limit"),
            M("ctl.col.by_note"));
  size_t i;
  json_t *e;
  json_array_foreach(json_object_get(r, "events"), i, e) {
    char tb[32], f[32], l[32], note[512];
    snprintf(note, sizeof(note), "%s%s%s", jstr(e, "by"), *jstr(e, "note") ? ": " : "",
             jstr(e, "note"));
    table_row(&h, fmt_time(jnum(e, "t"), tb, sizeof(tb)), MN("event", jstr(e, "event")),
              MN("level", jstr(e, "level")), fmt_num(jnum(e, "figure"), f, sizeof(f)),
              fmt_num(jnum(e, "limit"), l, sizeof(l)), note);
  }
  table_print(&h);
  json_decref(r);
  return 0;
}

/* sitectl alarm ack ID --note TEXT [--by NAME] | sitectl alarm show ID */
int cmd_alarm(ctl_t *ctl, int argc, char **argv) {
  if (argc != 2)
    return EXIT_USAGE;
  if (strcmp(argv[0], "ack") == 0)
    return alarm_ack(ctl, argv[1]);
  if (strcmp(argv[0], "show") == 0)
    return alarm_show(ctl, argv[1]);
  return EXIT_USAGE;
}

/* ---- noise and dust */

/* "?since=..&until=..&device=.." from the options; 0 or an exit status. */
static int window_query(const ctl_t *ctl, char *q, size_t cap) {
  double now = sg_now(), since, until;
  int rc = time_arg("--since", ctl->since, now, now - 86400.0, &since);
  if (rc == 0)
    rc = time_arg("--until", ctl->until, now, now, &until);
  if (rc)
    return rc;
  char dev[160] = "";
  if (ctl->device) {
    char esc[128];
    url_escape(ctl->device, esc, sizeof(esc));
    snprintf(dev, sizeof(dev), "&device=%s", esc);
  }
  snprintf(q, cap, "since=%.3f&until=%.3f%s", since, until, dev);
  return 0;
}

static const char *verdict(const json_t *w) {
  json_t *x = json_object_get(w, "exceeded");
  if (json_is_null(x))
    return M("ctl.v.incomplete");
  if (!json_is_true(x))
    return M("ctl.v.ok");
  bool l = json_is_true(json_object_get(w, "laeq_exceeded")),
       m = json_is_true(json_object_get(w, "lmax_exceeded"));
  return M(l && m ? "ctl.v.exceeded_both" : m ? "ctl.v.exceeded_lmax" : "ctl.v.exceeded");
}

static void noise_row(table_t *t, const json_t *w, bool sliding) {
  char a[32], b[32], l[32], m[32], lim[32], cov[32], n1[32], n2[32];
  fmt_time(jnum(w, "start"), a, sizeof(a));
  fmt_time(jnum(w, "end"), b, sizeof(b));
  snprintf(lim, sizeof(lim), "%s", fmt_num(jnum(w, "limit"), n1, sizeof(n1)));
  if (isfinite(jnum(w, "lmax_limit")))
    snprintf(lim + strlen(lim), sizeof(lim) - strlen(lim), " / %s",
             fmt_num(jnum(w, "lmax_limit"), n2, sizeof(n2)));
  snprintf(l, sizeof(l), "%.1f", jnum(w, "laeq"));
  snprintf(m, sizeof(m), "%.1f", jnum(w, "lmax"));
  snprintf(cov, sizeof(cov), "%.0f%%", 100 * jnum(w, "coverage"));
  table_row(t, jstr(w, "device"), a, b + 11,
            sliding ? M("ctl.now") : MN("period", jstr(w, "period")),
            isfinite(jnum(w, "laeq")) ? l : "-", isfinite(jnum(w, "lmax")) ? m : "-", lim, cov,
            verdict(w));
}

/* sitectl noise [--since T] [--until T] [--device D] */
int cmd_noise(ctl_t *ctl, int argc, char **argv) {
  (void)argv;
  if (argc != 0)
    return EXIT_USAGE;
  json_t *r;
  int rc = fetch_zone(ctl);
  if (rc)
    return rc;
  char q[512], path[600];
  if ((rc = window_query(ctl, q, sizeof(q))) != 0)
    return rc;
  snprintf(path, sizeof(path), "/api/noise?%s", q);
  if ((rc = api_get(ctl, path, &r)) != 0)
    return rc;
  if (json_answer(ctl, r))
    return 0;
  json_t *windows = json_object_get(r, "windows"), *sliding = json_object_get(r, "sliding"), *w;
  size_t i;
  if (json_array_size(windows) + json_array_size(sliding) == 0) {
    say(stdout, "ctl.no_noise_meter", NULL);
    json_decref(r);
    return 0;
  }
  table_t t = {.ncols = 9};
  t.right[4] = t.right[5] = t.right[6] = t.right[7] = true;
  table_row(&t, M("ctl.col.device"), M("ctl.col.from"), M("ctl.col.to"), M("ctl.col.period"),
            "LAeq", "Lmax", M("ctl.col.limit"), M("ctl.col.data"), M("ctl.col.verdict"));
  json_array_foreach(windows, i, w) noise_row(&t, w, false);
  json_array_foreach(sliding, i, w) noise_row(&t, w, true);
  table_print(&t);
  char mins[16];
  snprintf(mins, sizeof(mins), "%.0f", jnum(r, "window_s") / 60);
  printf("\n");
  say(stdout, "ctl.noise_foot", "min", mins, NULL);
  json_decref(r);
  return 0;
}

/* sitectl dust [--window 15m|1h] [--since T] [--until T] [--device D] */
int cmd_dust(ctl_t *ctl, int argc, char **argv) {
  (void)argv;
  if (argc != 0)
    return EXIT_USAGE;
  json_t *r;
  char q[512], path[700], win[64] = "";
  if (ctl->window) {
    /* 15m, 1h, 900s, short or long: anything else is a usage error here,
     * not a refusal by the gateway. */
    char *end;
    double v = strtod(ctl->window, &end);
    bool ok = strcmp(ctl->window, "short") == 0 || strcmp(ctl->window, "long") == 0 ||
              (end != ctl->window && v > 0 &&
               (!*end || strcmp(end, "m") == 0 || strcmp(end, "h") == 0 || strcmp(end, "s") == 0));
    if (!ok) {
      say(stderr, "ctl.bad_window", "arg", ctl->window, NULL);
      return EXIT_USAGE;
    }
    char esc[40];
    url_escape(ctl->window, esc, sizeof(esc));
    snprintf(win, sizeof(win), "&window=%s", esc);
  }
  int rc = fetch_zone(ctl);
  if (rc)
    return rc;
  if ((rc = window_query(ctl, q, sizeof(q))) != 0)
    return rc;
  snprintf(path, sizeof(path), "/api/dust?%s%s", q, win);
  if ((rc = api_get(ctl, path, &r)) != 0)
    return rc;
  if (json_answer(ctl, r))
    return 0;
  table_t t = {.ncols = 9};
  t.right[4] = t.right[5] = t.right[6] = t.right[7] = true;
  size_t i;
  json_t *w, *windows = json_object_get(r, "windows");
  if (json_array_size(windows) == 0)
    say(stdout, "ctl.no_dust", NULL);
  else
    table_row(&t, M("ctl.col.device"), M("ctl.col.quantity"), M("ctl.col.from"), M("ctl.col.to"),
              M("ctl.col.mean"), M("ctl.col.max"), M("ctl.col.fog"), M("ctl.col.data"),
              M("ctl.col.level"));
  json_array_foreach(windows, i, w) {
    char a[32], b[32], m[32], x[32], fog[32], cov[32], lv[64];
    fmt_time(jnum(w, "start"), a, sizeof(a));
    fmt_time(jnum(w, "end"), b, sizeof(b));
    snprintf(m, sizeof(m), "%.1f", jnum(w, "mean"));
    snprintf(x, sizeof(x), "%.1f", jnum(w, "max"));
    snprintf(fog, sizeof(fog), "%lld",
             (long long)json_integer_value(json_object_get(w, "unreliable")));
    snprintf(cov, sizeof(cov), "%.0f%%", 100 * jnum(w, "coverage"));
    const char *level = json_string_value(json_object_get(w, "level"));
    if (!level)
      snprintf(lv, sizeof(lv), "%s",
               json_is_true(json_object_get(w, "complete")) ? "-" : M("ctl.v.incomplete"));
    else if (strcmp(level, "normal") == 0)
      snprintf(lv, sizeof(lv), "%s", M("ctl.v.ok"));
    else
      snprintf(lv, sizeof(lv), "%s (> %.0f)",
               M(strcmp(level, "alarm") == 0 ? "ctl.v.alarm" : "ctl.v.warning"),
               strcmp(level, "alarm") == 0 ? jnum(w, "alarm") : jnum(w, "warn"));
    table_row(&t, jstr(w, "device"), MN("q", jstr(w, "quantity")), a, b + 11,
              isfinite(jnum(w, "mean")) ? m : "-", isfinite(jnum(w, "max")) ? x : "-", fog, cov,
              lv);
  }
  table_print(&t);
  json_array_foreach(json_object_get(r, "exceedances"), i, w) {
    json_t *max = json_object_get(w, "max_per_day");
    char n[24], mins[16], allowed[24];
    snprintf(mins, sizeof(mins), "%.0f", jnum(r, "long_s") / 60);
    snprintf(allowed, sizeof(allowed), "%lld", (long long)json_integer_value(max));
    say(stdout, json_is_integer(max) ? "ctl.dust_day_max" : "ctl.dust_day", "device",
        jstr(w, "device"), "q", MN("q", jstr(w, "quantity")), "n",
        fmt_int(w, "alarm_windows", n, sizeof(n)), "min", mins, "max", allowed, NULL);
  }
  char mins[16], rh[16];
  snprintf(mins, sizeof(mins), "%.0f", jnum(r, "window_s") / 60);
  snprintf(rh, sizeof(rh), "%.0f", jnum(r, "rh_unreliable"));
  printf("\n");
  say(stdout, "ctl.dust_foot", "min", mins, "rh", rh, NULL);
  json_decref(r);
  return 0;
}
