/* sitectl: the site manager's command line, a thin client of the gateway's
 * local HTTP API (DESIGN.md "Manager interface").
 *
 * Every command prints an aligned table for a person (times in the site's
 * zone) or, with --json, the API's own JSON. Exit status: 0 ok, 1 the
 * gateway said no, 2 usage, 3 the gateway is not reachable. */

#include "gateway/sitectl/sitectl.h"
#include <ctype.h>
#include <curl/curl.h>
#include <getopt.h>
#include <locale.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- commands */
static int cmd_status(ctl_t *ctl, int argc, char **argv) {
  (void)argv;
  if (argc != 0)
    return EXIT_USAGE;
  json_t *st;
  int rc = fetch_status(ctl, &st);
  if (rc)
    return rc;
  if (json_answer(ctl, st))
    return 0;
  json_t *site = json_object_get(st, "site"), *ing = json_object_get(st, "ingest"),
         *sto = json_object_get(st, "storage");
  char t1[32], t2[32];
  double up = json_number_value(json_object_get(st, "uptime_s"));
  char a[32], b[32], c[32], d[32], line[1024];
  say(stdout, "ctl.st.site", "id", json_string_value(json_object_get(site, "id")), "name",
      json_string_value(json_object_get(site, "name")), "zone", ctl->timezone, NULL);
  snprintf(a, sizeof(a), "%d", (int)(up / 86400));
  snprintf(b, sizeof(b), "%02d", (int)fmod(up / 3600, 24));
  snprintf(c, sizeof(c), "%02d", (int)fmod(up / 60, 60));
  say(stdout, "ctl.st.gateway", "version", json_string_value(json_object_get(st, "version")), "d",
      a, "h", b, "m", c, "now",
      fmt_time(json_number_value(json_object_get(st, "now")), t1, sizeof(t1)), NULL);
  say(stdout, "ctl.st.devices", "online", fmt_int(st, "devices_online", a, sizeof(a)), "total",
      fmt_int(st, "devices_total", b, sizeof(b)), NULL);
  MF(line, sizeof(line), "ctl.st.ingest", "requests", fmt_int(ing, "requests", a, sizeof(a)),
     "records", fmt_int(ing, "records", b, sizeof(b)), NULL);
  const char *k;
  json_t *v;
  json_object_foreach(json_object_get(ing, "rejects"), k, v) {
    if (json_integer_value(v)) /* each reject reason in the site manager's words */
      snprintf(line + strlen(line), sizeof(line) - strlen(line), "%s%lld %s", M("ctl.list_sep"),
               (long long)json_integer_value(v), MN("reject", k));
  }
  printf("%s\n", line);
  json_t *dtls = json_object_get(st, "dtls");
  if (dtls)
    say(stdout, "ctl.st.dtls", "completed", fmt_int(dtls, "completed", a, sizeof(a)), "abandoned",
        fmt_int(dtls, "abandoned", b, sizeof(b)), "failed", fmt_int(dtls, "failed", c, sizeof(c)),
        "pending", fmt_int(dtls, "pending", d, sizeof(d)), "pending_max",
        fmt_int(dtls, "pending_max", t2, sizeof(t2)), NULL);
  snprintf(a, sizeof(a), "%.1f",
           (double)json_integer_value(json_object_get(sto, "db_bytes")) / 1e6);
  snprintf(d, sizeof(d), "%.1f", json_number_value(json_object_get(sto, "last_commit_ms")));
  say(stdout, "ctl.st.storage", "readings", fmt_int(sto, "raw_readings", b, sizeof(b)), "mb", a,
      "queued", fmt_int(sto, "queued", c, sizeof(c)), "queue_max",
      fmt_int(sto, "queue_max", t2, sizeof(t2)), "commit_ms", d, "full",
      json_is_true(json_object_get(sto, "disk_full")) ? M("ctl.st.disk_full") : "", NULL);
  printf("\n");
  table_t t = {.ncols = 7};
  t.right[4] = t.right[5] = true;
  table_row(&t, M("ctl.col.device"), M("ctl.col.type"), M("ctl.col.state"), M("ctl.col.last_seen"),
            M("ctl.col.readings"), M("ctl.col.rejected"), M("ctl.col.latest"));
  size_t i;
  json_array_foreach(json_object_get(st, "devices"), i, v) {
    char latest[512] = "", n1[32], n2[32], num[32];
    size_t used = 0;
    json_t *pt;
    json_object_foreach(json_object_get(v, "latest"), k, pt) {
      int q = proto_quantity_from_name(k);
      double val = json_number_value(json_object_get(pt, "v"));
      const char *shown = q == PROTO_Q_ON ? M(val != 0 ? "yes" : "no") /* vb: a boolean */
                                          : fmt_num(val, num, sizeof(num));
      const char *unit = q >= 0 && q != PROTO_Q_ON ? unit_shown(proto_quantity_unit(q)) : "";
      used += (size_t)snprintf(latest + used, used < sizeof(latest) ? sizeof(latest) - used : 0,
                               "%s%s=%s%s%s", used ? " " : "", MN("q", k), shown, *unit ? " " : "",
                               unit);
      if (used >= sizeof(latest))
        break;
    }
    /* A scale or gate sends tickets and events, not readings: count those. */
    const char *type = json_string_value(json_object_get(v, "type"));
    char packs[24];
    if (type && (strcmp(type, "scale") == 0 || strcmp(type, "gate") == 0))
      MF(n1, sizeof(n1), strcmp(type, "scale") == 0 ? "ctl.n_tickets" : "ctl.n_events", "n",
         fmt_int(v, "packs", packs, sizeof(packs)), NULL);
    else
      snprintf(n1, sizeof(n1), "%lld",
               (long long)json_integer_value(json_object_get(v, "records")));
    snprintf(n2, sizeof(n2), "%lld", (long long)json_integer_value(json_object_get(v, "rejects")));
    table_row(&t, json_string_value(json_object_get(v, "id")),
              MN("devtype", json_string_value(json_object_get(v, "type"))),
              M(json_is_true(json_object_get(v, "online")) ? "ctl.online" : "ctl.offline"),
              fmt_time(json_number_value(json_object_get(v, "last_seen")), t2, sizeof(t2)), n1, n2,
              latest);
  }
  table_print(&t);
  json_decref(st);
  return 0;
}

/* An unknown quantity, with the known one it most likely meant: the same
 * name without its underscores ("pm25" for pm2_5), else the whole list. */
static int unknown_quantity(const char *name) {
  char bare[64], want[64];
  size_t n = 0;
  for (const char *p = name; *p && n + 1 < sizeof(bare); p++)
    if (*p != '_' && *p != '.')
      bare[n++] = (char)tolower((unsigned char)*p);
  bare[n] = '\0';
  char line[1024];
  size_t o = strlen(MF(line, sizeof(line), "ctl.unknown_quantity", "name", name, NULL));
  for (int q = 0; proto_quantity_name(q); q++) {
    n = 0;
    for (const char *p = proto_quantity_name(q); *p && n + 1 < sizeof(want); p++)
      if (*p != '_')
        want[n++] = *p;
    want[n] = '\0';
    if (strcmp(bare, want) == 0) {
      MF(line + o, sizeof(line) - o, "ctl.did_you_mean", "name", proto_quantity_name(q), NULL);
      fprintf(stderr, "sitectl: %s\n", line);
      return EXIT_USAGE;
    }
  }
  o += strlen(MF(line + o, sizeof(line) - o, "ctl.one_of", NULL));
  for (int q = 0; proto_quantity_name(q) && o < sizeof(line); q++)
    o += (size_t)snprintf(line + o, sizeof(line) - o, " %s", proto_quantity_name(q));
  fprintf(stderr, "sitectl: %s\n", line);
  return EXIT_USAGE;
}

static int cmd_readings(ctl_t *ctl, int argc, char **argv) {
  if (argc != 2)
    return EXIT_USAGE;
  if (proto_quantity_from_name(argv[1]) < 0)
    return unknown_quantity(argv[1]);
  json_t *r;
  int rc = fetch_zone(ctl);
  if (rc)
    return rc;
  double now = sg_now(), since = now - 3600, until = now + 1;
  if (ctl->since && sg_parse_time(ctl->since, now, &since) != 0) {
    say(stderr, "ctl.bad_time", "opt", "--since", "arg", ctl->since, NULL);
    return EXIT_USAGE;
  }
  if (ctl->until && sg_parse_time(ctl->until, now, &until) != 0) {
    say(stderr, "ctl.bad_time", "opt", "--until", "arg", ctl->until, NULL);
    return EXIT_USAGE;
  }
  char dev[256], q[128], path[768];
  url_escape(argv[0], dev, sizeof(dev));
  url_escape(argv[1], q, sizeof(q));
  snprintf(path, sizeof(path), "/api/readings?device=%s&quantity=%s&since=%.3f&until=%.3f&step=%s",
           dev, q, since, until, ctl->step ? ctl->step : "raw");
  if ((rc = api_get(ctl, path, &r)) != 0)
    return rc;
  if (json_answer(ctl, r))
    return 0;
  const char *unit = json_string_value(json_object_get(r, "unit"));
  bool raw = strcmp(json_string_value(json_object_get(r, "step")), "raw") == 0;
  json_t *pts = json_object_get(r, "points"), *p;
  table_t t = {.ncols = raw ? 2 : 5};
  for (size_t c = 1; c < t.ncols; c++)
    t.right[c] = true;
  char head[128], tb[32], a[32], b[32], c2[32], d[32];
  MF(head, sizeof(head), raw ? "ctl.col.value" : "ctl.col.mean_of", "q", MN("q", argv[1]), "unit",
     unit_shown(unit), NULL);
  if (raw)
    table_row(&t, M("ctl.col.time"), head);
  else
    table_row(&t, M("ctl.col.from"), M("ctl.col.n"), M("ctl.col.min"), head, M("ctl.col.max"));
  size_t i;
  json_array_foreach(pts, i, p) {
    const char *tm = fmt_time(json_number_value(json_object_get(p, "t")), tb, sizeof(tb));
    if (raw) {
      table_row(&t, tm, fmt_num(json_number_value(json_object_get(p, "v")), a, sizeof(a)));
    } else {
      snprintf(d, sizeof(d), "%lld", (long long)json_integer_value(json_object_get(p, "n")));
      table_row(&t, tm, d, fmt_num(json_number_value(json_object_get(p, "min")), a, sizeof(a)),
                fmt_num(json_number_value(json_object_get(p, "mean")), b, sizeof(b)),
                fmt_num(json_number_value(json_object_get(p, "max")), c2, sizeof(c2)));
    }
  }
  if (json_array_size(pts) == 0) {
    table_discard(&t);
    say(stdout, "ctl.no_readings", "q", MN("q", argv[1]), "device", argv[0], NULL);
  } else
    table_print(&t);
  if (json_is_true(json_object_get(r, "truncated")))
    say(stdout, "ctl.truncated", NULL);
  json_decref(r);
  return 0;
}

/* Each command's syntax (the same in every language) and what it does
 * (the catalogue's "ctl.use.<key>"). */
static const struct command {
  const char *name;
  int (*run)(ctl_t *ctl, int argc, char **argv);
  const char *syntax, *key;
} commands[] = {
    {"status", cmd_status, "status", "status"},
    {"readings", cmd_readings,
     "readings DEVICE QUANTITY [--since T] [--until T] [--step raw|1m|1h|1d]", "readings"},
    {"alarms", cmd_alarms, "alarms [--all [--since T]]", "alarms"},
    {"alarm", cmd_alarm, "alarm ack ID --note TEXT [--by NAME] | alarm show ID", "alarm"},
    {"noise", cmd_noise, "noise [--since T] [--until T] [--device D]", "noise"},
    {"dust", cmd_dust, "dust [--window 15m|1h] [--since T] [--until T] [--device D]", "dust"},
    {"waste", cmd_waste, "waste summary|tickets|add|correct|verify|disclosure|help", "waste"},
    {"materials", cmd_materials, "materials summary | materials import FILE.csv", "materials"},
    {"site", cmd_site, "site progress [0.42]", "site"},
    {"equipment", cmd_equipment, "equipment [log [UNIT]] [--since T]", "equipment"},
    {"equipment", cmd_equipment, "equipment set UNIT on|off|auto --reason TEXT [--for 2h]",
     "equipment_set"},
    {"energy", cmd_energy, "energy [--since T] [--until T]", "energy"},
    {"carbon", cmd_carbon, "carbon [--since T] [--until T]", "carbon"},
    {"machines", cmd_machines, "machines", "machines"},
    {"machine", cmd_machine,
     "machine add CODE --type T --stage 0|I|II|III|IV|electric --power-kw KW [--fuel F] [--owner "
     "N]",
     "machine_add"},
    {"machine", cmd_machine,
     "machine show CODE | change CODE ... --reason R | retire CODE --reason R | enter|leave CODE "
     "| import FILE.csv",
     "machine"},
    {"uplink", cmd_uplink, "uplink", "uplink"},
    {"report", cmd_report, "report [--month YYYY-MM] [--out report.html | --csv TABLE]", "report"},
    {"metrics", cmd_metrics, "metrics", "metrics"},
};

static void usage(FILE *f) {
  fprintf(f, "%s: sitectl [-u URL] [--json] [--lang zh|en] COMMAND ...\n\n%s:\n", M("ctl.usage"),
          M("ctl.commands"));
  for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
    char key[64];
    snprintf(key, sizeof(key), "ctl.use.%s", commands[i].key);
    fprintf(f, "  %s\n      %s\n", commands[i].syntax, M(key));
  }
  fprintf(f, "\n%s:\n%s\n", M("ctl.options"), M("ctl.options_text"));
}

int main(int argc, char **argv) {
  static const struct option longopts[] = {
      {"url", required_argument, NULL, 'u'},    {"json", no_argument, NULL, 'j'},
      {"since", required_argument, NULL, 's'},  {"until", required_argument, NULL, 't'},
      {"step", required_argument, NULL, 'p'},   {"note", required_argument, NULL, 'N'},
      {"by", required_argument, NULL, 'B'},     {"all", no_argument, NULL, 'A'},
      {"device", required_argument, NULL, 'D'}, {"window", required_argument, NULL, 'W'},
      {"csv", no_argument, NULL, 'C'},          {"month", required_argument, NULL, 'M'},
      {"for", required_argument, NULL, 'F'},    {"reason", required_argument, NULL, 'R'},
      {"help", no_argument, NULL, 'h'},         {"out", required_argument, NULL, 'O'},
      {"output", required_argument, NULL, 'O'}, {"type", required_argument, NULL, 1},
      {"stage", required_argument, NULL, 2},    {"power-kw", required_argument, NULL, 3},
      {"fuel", required_argument, NULL, 4},     {"owner", required_argument, NULL, 5},
      {"label", required_argument, NULL, 6},    {"terminal", required_argument, NULL, 7},
      {"lang", required_argument, NULL, 8},     {NULL, 0, NULL, 0}};
  ctl_t ctl = {0};
  const char *lang = NULL;
  setlocale(LC_CTYPE, "C.UTF-8");
  ctl.url = getenv("SITECTL_URL");
  if (!ctl.url || !*ctl.url)
    ctl.url = "http://127.0.0.1:8080";
  /* The language first, so that even a usage error is said in it. */
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--lang") == 0 && i + 1 < argc)
      lang = argv[i + 1];
    else if (strncmp(argv[i], "--lang=", 7) == 0)
      lang = argv[i] + 7;
  }
  words_init(&ctl, lang);
  int c;
  while ((c = getopt_long(argc, argv, "u:h", longopts, NULL)) != -1) {
    switch (c) {
    case 'u':
      ctl.url = optarg;
      break;
    case 'j':
      ctl.json = true;
      break;
    case 's':
      ctl.since = optarg;
      break;
    case 't':
      ctl.until = optarg;
      break;
    case 'p':
      ctl.step = optarg;
      break;
    case 'N':
      ctl.note = optarg;
      break;
    case 'B':
      ctl.by = optarg;
      break;
    case 'A':
      ctl.all = true;
      break;
    case 'D':
      ctl.device = optarg;
      break;
    case 'W':
      ctl.window = optarg;
      break;
    case 'C':
      ctl.csv = true;
      break;
    case 'M':
      ctl.month = optarg;
      break;
    case 'F':
      ctl.for_ = optarg;
      break;
    case 'R':
      ctl.reason = optarg;
      break;
    case 'O':
      ctl.out = optarg;
      break;
    case 1:
      ctl.type = optarg;
      break;
    case 2:
      ctl.stage = optarg;
      break;
    case 3:
      ctl.power_kw = optarg;
      break;
    case 4:
      ctl.fuel = optarg;
      break;
    case 5:
      ctl.owner = optarg;
      break;
    case 6:
      ctl.label = optarg;
      break;
    case 7:
      ctl.terminal = optarg;
      break;
    case 8:
      lang = optarg;
      break;
    case 'h':
      usage(stdout);
      words_free();
      return 0;
    default:
      usage(stderr);
      words_free();
      return EXIT_USAGE;
    }
  }
  /* GNU getopt permutes: options may also follow the command's words. */
  char **words = argv + optind;
  int nw = argc - optind;
  if (nw == 0) {
    usage(stderr);
    words_free();
    return EXIT_USAGE;
  }
  size_t len = strlen(ctl.url);
  char url[512];
  snprintf(url, sizeof(url), "%.*s", (int)(len && ctl.url[len - 1] == '/' ? len - 1 : len),
           ctl.url);
  ctl.url = url;
  /* Malformed times are usage errors before any command asks the gateway
   * (each command reads them again in the site's zone). */
  const char *const times[][2] = {{"--since", ctl.since}, {"--until", ctl.until}};
  for (size_t i = 0; i < 2; i++) {
    double t;
    if (times[i][1] && sg_parse_time(times[i][1], sg_now(), &t) != 0) {
      say(stderr, "ctl.bad_time", "opt", times[i][0], "arg", times[i][1], NULL);
      words_free();
      return EXIT_USAGE;
    }
  }
  for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
    if (strcmp(words[0], commands[i].name) != 0)
      continue;
    curl_global_init(CURL_GLOBAL_DEFAULT);
    int rc = commands[i].run(&ctl, nw - 1, words + 1);
    if (rc == EXIT_USAGE) /* every syntax of the command */
      for (size_t k = 0; k < sizeof(commands) / sizeof(commands[0]); k++)
        if (strcmp(commands[k].name, words[0]) == 0)
          fprintf(stderr, "%s: sitectl %s\n", M("ctl.usage"), commands[k].syntax);
    curl_global_cleanup();
    words_free();
    return rc;
  }
  say(stderr, "ctl.unknown_command", "command", words[0], NULL);
  usage(stderr);
  words_free();
  return EXIT_USAGE;
}
