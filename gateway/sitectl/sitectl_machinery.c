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
    snprintf(out + used, cap - used, "%s%s", used ? "," : "", json_string_value(r));
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
  printf("zone: stage %s or better, registration %s, smoke at most %.2f 1/m (%s)\n",
         jstr(z, "min_stage"),
         json_is_true(json_object_get(z, "require_registration")) ? "required" : "not required",
         jnum(z, "opacity_limit_per_m"), jstr(z, "opacity_source"));
  table_t t = {.ncols = 9};
  t.right[3] = t.right[7] = t.right[8] = true;
  table_row(&t, "CODE", "TYPE", "STAGE", "KW", "ON SITE", "COMPLIANT", "REASONS", "HOURS",
            "FUEL L");
  size_t i;
  json_t *m;
  json_array_foreach(ms, i, m) {
    char kw[32], h[32], fu[32], why[128];
    reasons_text(m, why, sizeof(why));
    bool reg = json_is_true(json_object_get(m, "registered"));
    table_row(&t, jstr(m, "code"), reg ? jstr(m, "type") : "(not registered)",
              reg ? jstr(m, "stage") : "-", fmt_num(jnum(m, "power_kw"), kw, sizeof(kw)),
              json_is_true(json_object_get(m, "on_site"))
                  ? (json_is_true(json_object_get(m, "working")) ? "yes, working" : "yes")
                  : "no",
              json_is_true(json_object_get(m, "compliant")) ? "yes" : "NO", why,
              fmt_num(jnum(m, "hours_today"), h, sizeof(h)),
              fmt_num(jnum(m, "fuel_l_today"), fu, sizeof(fu)));
  }
  if (json_array_size(ms) == 0)
    printf("no machines: sitectl machine add CODE --type TYPE --stage STAGE --power-kw KW\n");
  else
    table_print(&t);
  json_decref(r);
  return 0;
}

/* ---- sitectl machine ... */

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
  printf("%s  %s\n", jstr(m, "code"), reg ? jstr(m, "type") : "NOT IN THE REGISTER");
  if (json_is_string(json_object_get(m, "stage")))
    printf("stage %s, %s kW, %s, owner %s, label %s, terminal %s\n", jstr(m, "stage"),
           fmt_num(jnum(m, "power_kw"), a, sizeof(a)), jstr(m, "fuel"),
           *jstr(m, "owner") ? jstr(m, "owner") : "-", *jstr(m, "label") ? jstr(m, "label") : "-",
           *jstr(m, "terminal") ? jstr(m, "terminal") : "-");
  printf("on site: %s; compliant: %s%s%s\n",
         json_is_true(json_object_get(m, "on_site")) ? "yes" : "no",
         json_is_true(json_object_get(m, "compliant")) ? "yes" : "NO",
         *jstr(m, "reasons_text") ? ", " : "", jstr(m, "reasons_text"));
  table_t t = {.ncols = 7};
  for (int i = 1; i < 7; i++)
    t.right[i] = true;
  table_row(&t, "DAY", "ON SITE H", "ENGINE H", "FUEL L", "T CO2", "NOX KG", "PM KG");
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
  printf("factors: %s\n", jstr(json_object_get(m, "factors"), "nox_pm_source"));
  json_t *x;
  if (json_array_size(json_object_get(m, "moves")))
    printf("\nentries and exits:\n");
  json_array_foreach(json_object_get(m, "moves"), i, x) {
    printf("  %s  %-3s  %s (%s)\n", fmt_time(jnum(x, "t"), tb, sizeof(tb)), jstr(x, "dir"),
           jstr(x, "source"), jstr(x, "by"));
  }
  if (json_array_size(json_object_get(m, "audit")))
    printf("\nregister changes:\n");
  json_array_foreach(json_object_get(m, "audit"), i, x) {
    printf("  %s  %-7s by %s: %s  [%s]\n", fmt_time(jnum(x, "t"), tb, sizeof(tb)),
           jstr(x, "action"), jstr(x, "by"), jstr(x, "reason"), jstr(x, "detail"));
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
      fprintf(stderr, "sitectl: --power-kw %s is not a number of kW\n", ctl->power_kw);
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
    printf("%s %s: on site %s, compliant %s%s%s\n", jstr(r, "code"), done,
           json_is_true(json_object_get(r, "on_site")) ? "yes" : "no",
           json_is_true(json_object_get(r, "compliant")) ? "yes" : "NO",
           strcmp(why, "-") ? " " : "", strcmp(why, "-") ? why : "");
  else
    printf("%s: %lld added, %lld changed\n", done,
           (long long)json_integer_value(json_object_get(r, "added")),
           (long long)json_integer_value(json_object_get(r, "changed")));
  json_decref(r);
  return 0;
}

static int import_file(ctl_t *ctl, const char *file) {
  FILE *f = fopen(file, "rb");
  if (!f) {
    fprintf(stderr, "sitectl: cannot read %s: %s\n", file, strerror(errno));
    return EXIT_NO;
  }
  char *buf = malloc(4 << 20);
  size_t n = buf ? fread(buf, 1, (4 << 20) - 1, f) : 0;
  bool big = buf && !feof(f);
  fclose(f);
  if (!buf || big) {
    fprintf(stderr, "sitectl: %s is larger than 4 MB\n", file);
    free(buf);
    return EXIT_NO;
  }
  buf[n] = '\0';
  json_t *b = json_object();
  json_object_set_new(b, "csv", json_stringn(buf, n));
  free(buf);
  if (!json_object_get(b, "csv")) {
    fprintf(stderr, "sitectl: %s is not UTF-8 text\n", file);
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
      fprintf(stderr, "sitectl: machine add needs --type, --stage and --power-kw\n");
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
      fprintf(stderr, "sitectl: machine change CODE --stage III ... --reason TEXT\n");
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
      fprintf(stderr, "sitectl: machine retire CODE --reason TEXT\n");
    return EXIT_USAGE;
  }
  snprintf(path, sizeof(path), "/api/machinery/%s/%s", esc, verb);
  return post(ctl, path, b, what);
}
