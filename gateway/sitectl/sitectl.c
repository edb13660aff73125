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
  printf("site       %s  %s (%s)\n", json_string_value(json_object_get(site, "id")),
         json_string_value(json_object_get(site, "name")), ctl->timezone);
  printf("gateway    sitegated %s, up %dd %02dh %02dm, now %s\n",
         json_string_value(json_object_get(st, "version")), (int)(up / 86400),
         (int)fmod(up / 3600, 24), (int)fmod(up / 60, 60),
         fmt_time(json_number_value(json_object_get(st, "now")), t1, sizeof(t1)));
  printf("devices    %lld of %lld online\n",
         (long long)json_integer_value(json_object_get(st, "devices_online")),
         (long long)json_integer_value(json_object_get(st, "devices_total")));
  printf("ingest     %lld requests, %lld readings accepted",
         (long long)json_integer_value(json_object_get(ing, "requests")),
         (long long)json_integer_value(json_object_get(ing, "records")));
  const char *k;
  json_t *v;
  json_object_foreach(json_object_get(ing, "rejects"), k, v) {
    if (json_integer_value(v))
      printf(", %lld %s", (long long)json_integer_value(v), k);
  }
  json_t *dtls = json_object_get(st, "dtls");
  if (dtls)
    printf("\ndtls       %lld handshakes completed, %lld abandoned, %lld failed, %lld pending of "
           "%lld",
           (long long)json_integer_value(json_object_get(dtls, "completed")),
           (long long)json_integer_value(json_object_get(dtls, "abandoned")),
           (long long)json_integer_value(json_object_get(dtls, "failed")),
           (long long)json_integer_value(json_object_get(dtls, "pending")),
           (long long)json_integer_value(json_object_get(dtls, "pending_max")));
  printf("\nstorage    %lld readings stored, %.1f MB, queue %lld/%lld, last commit %.1f ms%s\n",
         (long long)json_integer_value(json_object_get(sto, "raw_readings")),
         (double)json_integer_value(json_object_get(sto, "db_bytes")) / 1e6,
         (long long)json_integer_value(json_object_get(sto, "queued")),
         (long long)json_integer_value(json_object_get(sto, "queue_max")),
         json_number_value(json_object_get(sto, "last_commit_ms")),
         json_is_true(json_object_get(sto, "disk_full")) ? ", DISK FULL" : "");
  printf("\n");
  table_t t = {.ncols = 7};
  t.right[4] = t.right[5] = true;
  table_row(&t, "DEVICE", "TYPE", "STATE", "LAST SEEN", "READINGS", "REJECTED", "LATEST");
  size_t i;
  json_array_foreach(json_object_get(st, "devices"), i, v) {
    char latest[512] = "", n1[32], n2[32], num[32];
    size_t used = 0;
    json_t *pt;
    json_object_foreach(json_object_get(v, "latest"), k, pt) {
      int q = proto_quantity_from_name(k);
      double val = json_number_value(json_object_get(pt, "v"));
      const char *shown = q == PROTO_Q_ON ? (val != 0 ? "yes" : "no") /* vb: a boolean */
                                          : fmt_num(val, num, sizeof(num));
      const char *unit = q >= 0 && q != PROTO_Q_ON ? proto_quantity_unit(q) : "";
      used += (size_t)snprintf(latest + used, used < sizeof(latest) ? sizeof(latest) - used : 0,
                               "%s%s=%s%s%s", used ? " " : "", k, shown, *unit ? " " : "", unit);
      if (used >= sizeof(latest))
        break;
    }
    snprintf(n1, sizeof(n1), "%lld", (long long)json_integer_value(json_object_get(v, "records")));
    snprintf(n2, sizeof(n2), "%lld", (long long)json_integer_value(json_object_get(v, "rejects")));
    table_row(&t, json_string_value(json_object_get(v, "id")),
              json_string_value(json_object_get(v, "type")),
              json_is_true(json_object_get(v, "online")) ? "online" : "OFFLINE",
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
  fprintf(stderr, "sitectl: unknown quantity \"%s\"", name);
  for (int q = 0; proto_quantity_name(q); q++) {
    n = 0;
    for (const char *p = proto_quantity_name(q); *p && n + 1 < sizeof(want); p++)
      if (*p != '_')
        want[n++] = *p;
    want[n] = '\0';
    if (strcmp(bare, want) == 0) {
      fprintf(stderr, ": did you mean %s?\n", proto_quantity_name(q));
      return EXIT_USAGE;
    }
  }
  fputs("; one of:", stderr);
  for (int q = 0; proto_quantity_name(q); q++)
    fprintf(stderr, " %s", proto_quantity_name(q));
  fputc('\n', stderr);
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
    fprintf(stderr, "sitectl: --since \"%s\": use 2026-11-20T21:20, -2h or Unix seconds\n",
            ctl->since);
    return EXIT_USAGE;
  }
  if (ctl->until && sg_parse_time(ctl->until, now, &until) != 0) {
    fprintf(stderr, "sitectl: --until \"%s\": use 2026-11-20T21:20, -2h or Unix seconds\n",
            ctl->until);
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
  char head[64], tb[32], a[32], b[32], c2[32], d[32];
  snprintf(head, sizeof(head), raw ? "%s (%s)" : "MEAN %s (%s)", argv[1], unit);
  if (raw)
    table_row(&t, "TIME", head);
  else
    table_row(&t, "FROM", "N", "MIN", head, "MAX");
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
  if (json_array_size(pts) == 0)
    printf("no readings of %s from %s in that period\n", argv[1], argv[0]);
  else
    table_print(&t);
  if (json_is_true(json_object_get(r, "truncated")))
    printf("(more readings exist: narrow --since/--until or use --step 1m)\n");
  json_decref(r);
  return 0;
}

static const struct command {
  const char *name;
  int (*run)(ctl_t *ctl, int argc, char **argv);
  const char *usage;
} commands[] = {
    {"status", cmd_status, "status                      gateway, storage and devices at a glance"},
    {"readings", cmd_readings,
     "readings DEVICE QUANTITY    readings [--since T] [--until T] [--step raw|1m|1h|1d]"},
    {"alarms", cmd_alarms,
     "alarms                      active alarms; --all [--since T]: history too"},
    {"alarm", cmd_alarm,
     "alarm ack ID --note TEXT    acknowledge [--by NAME] ($SITECTL_TOKEN); alarm show ID"},
    {"noise", cmd_noise,
     "noise                       GB 12523-2011 LAeq windows [--since T] [--until T] [--device D]"},
    {"dust", cmd_dust,
     "dust                        dust averages [--window 15m|1h] [--since T] [--device D]"},
    {"waste", cmd_waste,
     "waste summary|tickets|add|correct|verify|disclosure   construction-waste ledger (waste "
     "help)"},
    {"materials", cmd_materials,
     "materials summary|import FILE.csv   deliveries, loss rates against the BoQ, green share"},
    {"site", cmd_site,
     "site progress [0.42]        construction progress (setting needs the token)"},
    {"equipment", cmd_equipment,
     "equipment [log [UNIT]]      units, groups, policies; the command audit trail [--since T]"},
    {"equipment", cmd_equipment,
     "equipment set UNIT on|off|auto --reason TEXT [--for 2h]   manual override (token)"},
    {"energy", cmd_energy,
     "energy                      kWh, fuel, run/idle hours per unit and day"},
    {"carbon", cmd_carbon,
     "carbon                      t CO2 per day, group, period, cumulative, m2"},
    {"machines", cmd_machines,
     "machines                    non-road machinery: register, on site, compliance, today"},
    {"machine", cmd_machine,
     "machine add CODE --type T --stage 0|I|II|III|IV|electric --power-kw KW [--fuel F] "
     "[--owner N]   (token)"},
    {"machine", cmd_machine,
     "machine show CODE | change CODE ... --reason R | retire CODE --reason R | enter|leave "
     "CODE | import FILE.csv"},
    {"uplink", cmd_uplink,
     "uplink                      connection to the authority, outbox backlog, last ack, drops"},
    {"report", cmd_report,
     "report [--month YYYY-MM] [--out report.html | --csv TABLE]   the monthly site report"},
    {"metrics", cmd_metrics, "metrics                     the gateway's Prometheus metrics"},
};

static void usage(FILE *f) {
  fprintf(f, "usage: sitectl [-u URL] [--json] COMMAND ...\n\ncommands:\n");
  for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
    fprintf(f, "  %s\n", commands[i].usage);
  fprintf(f, "\noptions:\n"
             "  -u, --url URL   the gateway (default $SITECTL_URL, else http://127.0.0.1:8080)\n"
             "  --json          machine-readable output (the API's JSON)\n"
             "  --since T, --until T   2026-11-20T21:20 (site time), -2h, -30m or Unix seconds\n"
             "exit status: 0 ok, 1 the gateway said no, 2 usage, 3 gateway not reachable\n");
}

int main(int argc, char **argv) {
  static const struct option longopts[] = {{"url", required_argument, NULL, 'u'},
                                           {"json", no_argument, NULL, 'j'},
                                           {"since", required_argument, NULL, 's'},
                                           {"until", required_argument, NULL, 't'},
                                           {"step", required_argument, NULL, 'p'},
                                           {"note", required_argument, NULL, 'N'},
                                           {"by", required_argument, NULL, 'B'},
                                           {"all", no_argument, NULL, 'A'},
                                           {"device", required_argument, NULL, 'D'},
                                           {"window", required_argument, NULL, 'W'},
                                           {"csv", no_argument, NULL, 'C'},
                                           {"month", required_argument, NULL, 'M'},
                                           {"for", required_argument, NULL, 'F'},
                                           {"reason", required_argument, NULL, 'R'},
                                           {"help", no_argument, NULL, 'h'},
                                           {"out", required_argument, NULL, 'O'},
                                           {"output", required_argument, NULL, 'O'},
                                           {"type", required_argument, NULL, 1},
                                           {"stage", required_argument, NULL, 2},
                                           {"power-kw", required_argument, NULL, 3},
                                           {"fuel", required_argument, NULL, 4},
                                           {"owner", required_argument, NULL, 5},
                                           {"label", required_argument, NULL, 6},
                                           {"terminal", required_argument, NULL, 7},
                                           {NULL, 0, NULL, 0}};
  ctl_t ctl = {0};
  setlocale(LC_CTYPE, "C.UTF-8");
  ctl.url = getenv("SITECTL_URL");
  if (!ctl.url || !*ctl.url)
    ctl.url = "http://127.0.0.1:8080";
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
    case 'h':
      usage(stdout);
      return 0;
    default:
      usage(stderr);
      return EXIT_USAGE;
    }
  }
  /* GNU getopt permutes: options may also follow the command's words. */
  char **words = argv + optind;
  int nw = argc - optind;
  if (nw == 0) {
    usage(stderr);
    return EXIT_USAGE;
  }
  size_t len = strlen(ctl.url);
  char url[512];
  snprintf(url, sizeof(url), "%.*s", (int)(len && ctl.url[len - 1] == '/' ? len - 1 : len),
           ctl.url);
  ctl.url = url;
  for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
    if (strcmp(words[0], commands[i].name) != 0)
      continue;
    curl_global_init(CURL_GLOBAL_DEFAULT);
    int rc = commands[i].run(&ctl, nw - 1, words + 1);
    curl_global_cleanup();
    if (rc == EXIT_USAGE)
      fprintf(stderr, "usage: sitectl %s\n", commands[i].usage);
    return rc;
  }
  fprintf(stderr, "sitectl: unknown command \"%s\"\n", words[0]);
  usage(stderr);
  return EXIT_USAGE;
}
