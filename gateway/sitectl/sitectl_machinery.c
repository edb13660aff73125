/* sitectl's machinery commands: thin clients of /api/machinery
 * (gateway/api/api_machinery.c). Tables for a person in the site's zone;
 * --json prints the API's answer (for `machines`, its list of machines).
 * Every change sends who (--by, $SITECTL_USER or the login name) and why
 * (--reason) for the register's audit trail, with $SITECTL_TOKEN. */

#include "gateway/sitectl/sitectl.h"
#include <errno.h>
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

static const char *who(const ctl_t *ctl) {
  if (ctl->by && *ctl->by)
    return ctl->by;
  const char *u = getenv("SITECTL_USER");
  if (u && *u)
    return u;
  struct passwd *pw = getpwuid(getuid());
  return pw && pw->pw_name ? pw->pw_name : "unknown";
}

static void reasons_text(const json_t *m, char *out, size_t cap) {
  out[0] = '\0';
  size_t i;
  json_t *r;
  json_array_foreach(json_object_get(m, "reasons"), i, r) {
    size_t used = strlen(out);
    snprintf(out + used, cap - used, "%s%s", used ? M("ctl.list_sep") : "",
             MN("mach_why", json_string_value(r))); /* unregistered, stage, smoke */
  }
  if (!out[0])
    snprintf(out, cap, "-");
}

/* ---- sitectl machines */

int cmd_machines(ctl_t *ctl, int argc, char **argv) {
  (void)argv;
  if (argc != 0)
    return EXIT_USAGE;
  json_t *r;
  int rc = api_get(ctl, "/api/machinery", &r);
  if (rc != 0)
    return rc;
  json_t *ms = json_object_get(r, "machines");
  if (ctl->json) {
    print_json(ms);
    json_decref(r);
    return 0;
  }
  json_t *z = json_object_get(r, "zone");
  char lim[32];
  snprintf(lim, sizeof(lim), "%.2f", jnum(z, "opacity_limit_per_m"));
  say(stdout, "ctl.mach.zone", "stage", MN("mach_stage", jstr(z, "min_stage")), "reg",
      M(json_is_true(json_object_get(z, "require_registration")) ? "ctl.mach.required"
                                                                 : "ctl.mach.not_required"),
      "limit", lim, "source", M("ctl.mach.opacity_source"), NULL);
  table_t t = {.ncols = 9};
  t.right[3] = t.right[7] = t.right[8] = true;
  table_row(&t, M("rep.col.code"), M("rep.col.type"), M("rep.col.stage"), "kW",
            M("ctl.mach.on_site"), M("ctl.mach.compliant"), M("ctl.mach.reasons"),
            M("ctl.mach.hours_today"), M("ctl.mach.fuel_today"));
  size_t i;
  json_t *m;
  json_array_foreach(ms, i, m) {
    char kw[32], h[32], fu[32], why[128];
    reasons_text(m, why, sizeof(why));
    bool reg = json_is_true(json_object_get(m, "registered"));
    table_row(&t, jstr(m, "code"), reg ? jstr(m, "type") : M("ctl.mach.not_registered"),
              reg ? MN("mach_stage", jstr(m, "stage")) : "-",
              fmt_num(jnum(m, "power_kw"), kw, sizeof(kw)),
              M(json_is_true(json_object_get(m, "on_site"))
                    ? (json_is_true(json_object_get(m, "working")) ? "ctl.mach.working" : "yes")
                    : "no"),
              M(json_is_true(json_object_get(m, "compliant")) ? "yes" : "ctl.mach.no_caps"), why,
              fmt_num(jnum(m, "hours_today"), h, sizeof(h)),
              fmt_num(jnum(m, "fuel_l_today"), fu, sizeof(fu)));
  }
  if (json_array_size(ms) == 0) {
    table_discard(&t);
    say(stdout, "ctl.mach.none", NULL);
  } else
    table_print(&t);
  json_decref(r);
  return 0;
}

/* ---- sitectl machine ... */

/* A register row's fields (GET /api/machinery/CODE: the machine, or an
 * audit row's `machine`) in the reader's language. */
static char *register_text(json_t *m, char *buf, size_t len) {
  char kw[32];
  const char *owner = jstr(m, "owner"), *label = jstr(m, "label"), *term = jstr(m, "terminal");
  return MF(buf, len, "ctl.mach.detail", "stage", MN("mach_stage", jstr(m, "stage")), "kw",
            fmt_num(jnum(m, "power_kw"), kw, sizeof(kw)), "fuel", MN("mach_fuel", jstr(m, "fuel")),
            "owner", *owner ? owner : "-", "label", *label ? MN("mach_label", label) : "-",
            "terminal", *term ? term : "-", NULL);
}

static int show(ctl_t *ctl, const char *code) {
  char path[128], esc[96];
  if (url_escape(code, esc, sizeof(esc)) != 0)
    return EXIT_USAGE;
  snprintf(path, sizeof(path), "/api/machinery/%s", esc);
  json_t *m;
  int rc = fetch_zone(ctl);
  if (rc == 0)
    rc = api_get(ctl, path, &m);
  if (rc != 0)
    return rc;
  if (json_answer(ctl, m))
    return 0;
  char a[32], b[32], c[32], d[32], e[32], f[32], tb[32];
  bool reg = json_is_true(json_object_get(m, "registered"));
  printf("%s  %s\n", jstr(m, "code"), reg ? jstr(m, "type") : M("ctl.mach.not_in_register"));
  char line[1024];
  if (json_is_string(json_object_get(m, "stage")))
    printf("%s\n", register_text(m, line, sizeof(line)));
  say(stdout, "ctl.mach.state", "on_site",
      M(json_is_true(json_object_get(m, "on_site")) ? "yes" : "no"), "compliant",
      M(json_is_true(json_object_get(m, "compliant")) ? "yes" : "ctl.mach.no_caps"), "why",
      jstr(m, "reasons_text"), NULL);
  table_t t = {.ncols = 7};
  for (int i = 1; i < 7; i++)
    t.right[i] = true;
  table_row(&t, M("ctl.col.day"), M("rep.col.onsite_h"), M("rep.col.engine_h"),
            M("rep.col.fuel_any"), "t CO₂", "NOx kg", "PM kg");
  size_t i;
  json_t *day;
  json_array_foreach(json_object_get(m, "days"), i, day) {
    table_row(&t, jstr(day, "date"), fmt_num(jnum(day, "onsite_h"), a, sizeof(a)),
              fmt_num(jnum(day, "engine_h"), b, sizeof(b)),
              fmt_num(jnum(day, "fuel_l"), c, sizeof(c)), fmt_num(jnum(day, "t_co2"), d, sizeof(d)),
              fmt_num(jnum(day, "nox_kg"), e, sizeof(e)),
              fmt_num(jnum(day, "pm_kg"), f, sizeof(f)));
  }
  table_print(&t);
  say(stdout, "ctl.mach.factors", "source", M("ctl.mach.nox_pm_source"), NULL);
  json_t *x;
  if (json_array_size(json_object_get(m, "moves")))
    printf("\n%s\n", M("ctl.mach.moves"));
  json_array_foreach(json_object_get(m, "moves"), i, x) {
    printf("  %s  %s  %s (%s)\n", fmt_time(jnum(x, "t"), tb, sizeof(tb)), MN("dir", jstr(x, "dir")),
           MN("mach_src", jstr(x, "source")), jstr(x, "by"));
  }
  if (json_array_size(json_object_get(m, "audit")))
    printf("\n%s\n", M("ctl.mach.audit"));
  json_array_foreach(json_object_get(m, "audit"), i, x) {
    printf("  %s  %s\n", fmt_time(jnum(x, "t"), tb, sizeof(tb)),
           MF(line, sizeof(line), "ctl.mach.audit_line", "action",
              MN("mach_act", jstr(x, "action")), "by", jstr(x, "by"), "reason", jstr(x, "reason"),
              NULL));
    json_t *row = json_object_get(x, "machine");
    if (json_is_object(row))
      printf("      %s %s\n", jstr(row, "type"), register_text(row, line, sizeof(line)));
  }
  json_decref(m);
  return 0;
}

/* The register's fields from the options into `b`; false on a bad one. */
static bool fields(const ctl_t *ctl, json_t *b) {
  if (ctl->type)
    json_object_set_new(b, "type", json_string(ctl->type));
  if (ctl->stage)
    json_object_set_new(b, "stage", json_string(ctl->stage));
  if (ctl->power_kw) {
    char *end;
    double kw = strtod(ctl->power_kw, &end);
    if (end == ctl->power_kw || *end || !isfinite(kw)) {
      say(stderr, "ctl.mach.bad_kw", "arg", ctl->power_kw, NULL);
      return false;
    }
    json_object_set_new(b, "power_kw", json_real(kw));
  }
  if (ctl->fuel)
    json_object_set_new(b, "fuel", json_string(ctl->fuel));
  if (ctl->owner)
    json_object_set_new(b, "owner", json_string(ctl->owner));
  if (ctl->label)
    json_object_set_new(b, "label", json_string(ctl->label));
  if (ctl->terminal)
    json_object_set_new(b, "terminal", json_string(ctl->terminal));
  return true;
}

static int post(ctl_t *ctl, const char *path, json_t *b, const char *done) {
  json_object_set_new(b, "by", json_string(who(ctl)));
  if (ctl->reason)
    json_object_set_new(b, "reason", json_string(ctl->reason));
  json_t *r;
  int rc = api_request(ctl, "POST", path, b, &r);
  json_decref(b);
  if (rc != 0)
    return rc;
  if (json_answer(ctl, r))
    return 0;
  char why[128];
  reasons_text(r, why, sizeof(why));
  if (json_is_string(json_object_get(r, "code")))
    say(stdout, "ctl.mach.done", "code", jstr(r, "code"), "done", MN("ctl.mach", done), "on_site",
        M(json_is_true(json_object_get(r, "on_site")) ? "yes" : "no"), "compliant",
        M(json_is_true(json_object_get(r, "compliant")) ? "yes" : "ctl.mach.no_caps"), "why",
        strcmp(why, "-") ? why : "", NULL);
  else {
    char a[24], c[24];
    say(stdout, "ctl.mach.imported", "added", fmt_int(r, "added", a, sizeof(a)), "changed",
        fmt_int(r, "changed", c, sizeof(c)), NULL);
  }
  json_decref(r);
  return 0;
}

static int import_file(ctl_t *ctl, const char *file) {
  FILE *f = fopen(file, "rb");
  if (!f) {
    say(stderr, "ctl.cannot_read", "file", file, "why", SYS(errno), NULL);
    return EXIT_NO;
  }
  char *buf = malloc(4 << 20);
  size_t n = buf ? fread(buf, 1, (4 << 20) - 1, f) : 0;
  bool big = buf && !feof(f);
  fclose(f);
  if (!buf || big) {
    say(stderr, "ctl.mach.too_big", "file", file, NULL);
    free(buf);
    return EXIT_NO;
  }
  buf[n] = '\0';
  json_t *b = json_object();
  json_object_set_new(b, "csv", json_stringn(buf, n));
  free(buf);
  if (!json_object_get(b, "csv")) {
    say(stderr, "ctl.mach.not_utf8", "file", file, NULL);
    json_decref(b);
    return EXIT_NO;
  }
  return post(ctl, "/api/machinery/import", b, "imported");
}

int cmd_machine(ctl_t *ctl, int argc, char **argv) {
  if (argc != 2)
    return EXIT_USAGE;
  const char *verb = argv[0], *code = argv[1];
  if (strcmp(verb, "import") == 0)
    return import_file(ctl, code);
  char path[160], esc[96];
  if (url_escape(code, esc, sizeof(esc)) != 0)
    return EXIT_USAGE;
  if (strcmp(verb, "show") == 0)
    return show(ctl, code);
  json_t *b = json_object();
  if (strcmp(verb, "add") == 0) {
    if (!ctl->type || !ctl->stage || !ctl->power_kw) {
      json_decref(b);
      say(stderr, "ctl.mach.add_needs", NULL);
      return EXIT_USAGE;
    }
    json_object_set_new(b, "code", json_string(code));
    if (!fields(ctl, b)) {
      json_decref(b);
      return EXIT_USAGE;
    }
    return post(ctl, "/api/machinery", b, "added");
  }
  if (strcmp(verb, "change") == 0) {
    if (!fields(ctl, b) || json_object_size(b) == 0 || !ctl->reason) {
      json_decref(b);
      fprintf(stderr, "%s: sitectl machine change CODE --stage III ... --reason TEXT\n",
              M("ctl.usage"));
      return EXIT_USAGE;
    }
    snprintf(path, sizeof(path), "/api/machinery/%s", esc);
    return post(ctl, path, b, "changed");
  }
  const char *what = strcmp(verb, "retire") == 0  ? "retired"
                     : strcmp(verb, "enter") == 0 ? "entered"
                     : strcmp(verb, "leave") == 0 ? "left"
                                                  : NULL;
  if (!what || (what[0] == 'r' && !ctl->reason)) {
    json_decref(b);
    if (what)
      fprintf(stderr, "%s: sitectl machine retire CODE --reason TEXT\n", M("ctl.usage"));
    return EXIT_USAGE;
  }
  snprintf(path, sizeof(path), "/api/machinery/%s/%s", esc, verb);
  return post(ctl, path, b, what);
}
