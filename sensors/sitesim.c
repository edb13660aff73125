/* sitesim: the simulated worksite, its load generator and a config helper.
 *
 * Three verbs share the program: the site mode (default) simulates the
 * devices of a site configuration; `load` drives a gateway as hard as asked
 * for benchmarks; `gen-config` prints a configuration declaring the load
 * devices. This file is the command line; the work is in site.c and load.c.
 * Exit status: 0 ok, 1 a runtime or configuration error, 2 usage. */
#include "sensors/sensors_int.h"

#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LOG_MODULE "sitesim"

static const char usage_text[] =
    "usage: sitesim -c FILE [--gateway URI] [--speed N] [--duration S | --history SPAN]\n"
    "               [--format json|cbor] [--seed N] [--ignore P]\n"
    "               [--machines CSV [--smoky CODE,...]] [-v]\n"
    "       sitesim load --gateway URI --devices N --records R --window W --ports P\n"
    "               --requests M [--duration S] [--rate RPS] [--device-prefix PFX]\n"
    "               [--psk KEY] [--format json|cbor] [--ack-timeout MS] [-v]\n"
    "       sitesim gen-config --devices N [--prefix PFX] [--port P] [--dtls-port P]\n"
    "               [--db PATH] [--http ADDR:PORT] [--psk KEY] [--interval S]\n";

static const char help_text[] =
    "\n"
    "Site mode: every dust, noise, weather, energy and equipment device of the\n"
    "site configuration FILE reports SenML packs (POST /r, CON) on its\n"
    "interval_s, each over its own CoAP session; devices with a psk use CoAPS\n"
    "(DTLS-PSK, identity = device id) on [coap] dtls_port. Scales post\n"
    "weighing tickets to POST /w.\n"
    "  -c, --config FILE   the site configuration (as sitegated reads it)\n"
    "  --gateway URI       coap://HOST[:PORT] for plain devices (psk devices use\n"
    "                      HOST and [coap] dtls_port), or coaps://HOST[:PORT] for\n"
    "                      psk devices (plain ones use [coap] port);\n"
    "                      default coap://127.0.0.1:[coap] port\n"
    "  --speed N           simulated time runs N times faster (default 1). Packs\n"
    "                      carry simulated times but never one later than the\n"
    "                      real clock: with N > 1 simulated time starts in the\n"
    "                      past, at now - S*(N-1) with --duration S, so that it\n"
    "                      reaches now when S real seconds are up and sitesim\n"
    "                      stops; without --duration it starts one simulated day\n"
    "                      back, catches up, then runs at real time until stopped\n"
    "  --history SPAN      with --speed N > 1 and no --duration: start SPAN back\n"
    "                      (48h, 2d, 3600; default one day, at most 30 days), catch\n"
    "                      up N times faster than real time, then run live: the\n"
    "                      demo's past, sent like any reading, through POST /r,\n"
    "                      with a story the rules catch: the first dust station\n"
    "                      in an episode since 90 min (on into the present), the\n"
    "                      second in one at 10:00 yesterday, the first noise\n"
    "                      meter loud from 23:10 last night\n"
    "  --duration S        stop after S real seconds (default 0: run until\n"
    "                      SIGINT or SIGTERM)\n"
    "  --format F          json (senml+json, 110, default) or cbor (senml+cbor, 112)\n"
    "  --seed N            readings are a function of seed, device and time, so\n"
    "                      runs with the same seed repeat their values (default 1)\n"
    "  --ignore P          equipment controllers (equipment units whose coap URI\n"
    "                      names this host get a CoAP server on its port: GET\n"
    "                      /state, observable, and PUT /ctl) ignore this share of\n"
    "                      the commands they get (default 0.05); the others take\n"
    "                      effect after 2 to 6 s\n"
    "  --machines CSV      the machinery register, as `sitectl machine import`\n"
    "                      takes it: a machine terminal (type machine) fitted to\n"
    "                      a machine (its terminal column) reports engine and\n"
    "                      idle hours, fuel and smoke while the machine works\n"
    "                      (07-12 and 13-19 h, pumps and generator sets all\n"
    "                      day), its smoke after its stage; the first gate\n"
    "                      reader (type gate) posts to POST /g the entry of each\n"
    "                      machine with a terminal a few days back (it stays),\n"
    "                      and a morning entry and an afternoon exit of each\n"
    "                      machine without one. Without it terminals act as a\n"
    "                      stage III 100 kW machine and the gate is quiet\n"
    "  --smoky CODE,...    these machines' engines are worn: they smoke five\n"
    "                      times their stage's usual opacity\n"
    "  -v, --verbose       debug logging, libcoap's included\n"
    "Sensors keep what the gateway has not acknowledged: after a 5.03 they wait\n"
    "Max-Age and resend, after a timeout they back off and resend; a 4.xx\n"
    "drops the pack and its diagnostic is logged once per device and code. At\n"
    "exit one line sums up: packs sent, acked, rejected, retried.\n"
    "\n"
    "load: N devices PFX0..PFX(N-1) (default prefix load-) post packs of R\n"
    "pm10 records with distinct times, W requests outstanding in total over P\n"
    "client sessions (source ports), until M requests or S seconds (at least\n"
    "one of them). --rate paces to RPS requests/s (open loop, still at most W\n"
    "outstanding). With --psk every device has its own DTLS session (identity\n"
    "= device id) and --ports is not used. --ack-timeout is the initial CoAP\n"
    "ACK timeout (default 1000 ms). Latency runs from send to response. W is\n"
    "at most 65536. Plain CoAP is sent without libcoap, to leave the CPU to\n"
    "the gateway being measured.\n"
    "The last line is machine-readable:\n"
    "  load: req_s=N records_s=N p50_ms=X p99_ms=X max_ms=X ok=N errors=N timeouts=N\n"
    "\n"
    "gen-config prints a site configuration declaring the load devices (type\n"
    "dust) for sitegated: --port is [coap] port (5683), --dtls-port is [coap]\n"
    "dtls_port (0, or port+1 with --psk), --db is [storage] path, --http is\n"
    "[http] listen, --interval is interval_s (60).\n";

static int usage(const char *fmt, const char *arg) {
  if (fmt) {
    fprintf(stderr, "sitesim: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\n");
  }
  fputs(usage_text, stderr);
  fputs("Try 'sitesim --help' for more.\n", stderr);
  return 2;
}

static bool parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *out) {
  char *end;
  if (!s || !isdigit((unsigned char)*s))
    return false;
  errno = 0;
  unsigned long long v = strtoull(s, &end, 10);
  if (errno || *end || v < min || v > max)
    return false;
  *out = v;
  return true;
}

static bool parse_dbl(const char *s, double min, double max, double *out) {
  char *end;
  if (!s || !*s)
    return false;
  errno = 0;
  double v = strtod(s, &end);
  if (errno || *end || !isfinite(v) || v < min || v > max)
    return false;
  *out = v;
  return true;
}

/* "48h", "2d", "90m", "3600" or "3600s": a span of at most 30 days (the
 * gateway keeps raw readings [storage] raw_days, 31 by default, and
 * refuses older ones). */
static bool parse_span(const char *s, double *out) {
  char *end;
  if (!s || !isdigit((unsigned char)*s))
    return false;
  errno = 0;
  double v = strtod(s, &end);
  double mult = !*end || strcmp(end, "s") == 0 ? 1
                : strcmp(end, "m") == 0        ? 60
                : strcmp(end, "h") == 0        ? 3600
                : strcmp(end, "d") == 0        ? 86400
                                               : -1;
  if (errno || mult < 0 || !isfinite(v) || v <= 0 || v * mult > 30 * 86400.0)
    return false;
  *out = v * mult;
  return true;
}

static bool parse_format(const char *s, bool *cbor) {
  if (strcmp(s, "json") == 0)
    *cbor = false;
  else if (strcmp(s, "cbor") == 0)
    *cbor = true;
  else
    return false;
  return true;
}

int sim_encode(const proto_pack_t *p, bool cbor, uint8_t *buf, size_t cap) {
  return cbor ? proto_senml_encode_cbor(p, buf, cap) : proto_senml_encode_json(p, (char *)buf, cap);
}

/* ---- site mode */

enum {
  O_GATEWAY = 256,
  O_SPEED,
  O_DURATION,
  O_FORMAT,
  O_SEED,
  O_HELP,
  O_DEVICES,
  O_RECORDS,
  O_WINDOW,
  O_PORTS,
  O_REQUESTS,
  O_RATE,
  O_PREFIX,
  O_PSK,
  O_ACK,
  O_PORT,
  O_DTLS_PORT,
  O_DB,
  O_HTTP,
  O_INTERVAL,
  O_IGNORE,
  O_MACHINES,
  O_SMOKY,
  O_HISTORY
};

static int main_site(int argc, char **argv) {
  static const struct option opts[] = {{"config", required_argument, NULL, 'c'},
                                       {"gateway", required_argument, NULL, O_GATEWAY},
                                       {"speed", required_argument, NULL, O_SPEED},
                                       {"duration", required_argument, NULL, O_DURATION},
                                       {"format", required_argument, NULL, O_FORMAT},
                                       {"seed", required_argument, NULL, O_SEED},
                                       {"verbose", no_argument, NULL, 'v'},
                                       {"help", no_argument, NULL, O_HELP},
                                       {"ignore", required_argument, NULL, O_IGNORE},
                                       {"machines", required_argument, NULL, O_MACHINES},
                                       {"smoky", required_argument, NULL, O_SMOKY},
                                       {"history", required_argument, NULL, O_HISTORY},
                                       {NULL, 0, NULL, 0}};
  sim_opts_t o = {.speed = 1, .seed = 1, .ignore = 0.05};
  int c;
  while ((c = getopt_long(argc, argv, "c:vh", opts, NULL)) != -1) {
    switch (c) {
    case 'c':
      o.config = optarg;
      break;
    case O_GATEWAY:
      o.gateway = optarg;
      break;
    case O_SPEED:
      if (!parse_dbl(optarg, 1, 1e7, &o.speed))
        return usage("--speed: \"%s\" is not a number from 1 to 10000000", optarg);
      break;
    case O_DURATION:
      if (!parse_dbl(optarg, 0, 1e9, &o.duration_s))
        return usage("--duration: \"%s\" is not a number of seconds (0: forever)", optarg);
      break;
    case O_FORMAT:
      if (!parse_format(optarg, &o.cbor))
        return usage("--format: \"%s\" is neither json nor cbor", optarg);
      break;
    case O_SEED:
      if (!parse_u64(optarg, 0, UINT64_MAX, &o.seed))
        return usage("--seed: \"%s\" is not a whole number", optarg);
      break;
    case 'v':
      o.verbose = true;
      break;
    case O_IGNORE:
      if (!parse_dbl(optarg, 0, 1, &o.ignore))
        return usage("--ignore: \"%s\" is not a share from 0 to 1", optarg);
      break;
    case O_MACHINES:
      o.machines = optarg;
      break;
    case O_SMOKY:
      o.smoky = optarg;
      break;
    case O_HISTORY:
      if (!parse_span(optarg, &o.history_s))
        return usage("--history: \"%s\" is not a span like 48h, 2d or 3600 (at most 30 days)",
                     optarg);
      break;
    case 'h':
    case O_HELP:
      fputs(usage_text, stdout);
      fputs(help_text, stdout);
      return 0;
    default:
      return usage(NULL, NULL);
    }
  }
  if (optind < argc)
    return usage("unexpected argument \"%s\"", argv[optind]);
  if (!o.config)
    return usage("-c FILE is required", NULL);
  if (o.history_s > 0 && (o.speed <= 1 || o.duration_s > 0))
    return usage("--history needs --speed above 1 and no --duration%s", "");
  if (o.verbose)
    log_threshold = LOG_LVL_DEBUG;
  return sim_site_run(&o);
}

/* ---- load */

static int main_load(int argc, char **argv) {
  static const struct option opts[] = {{"gateway", required_argument, NULL, O_GATEWAY},
                                       {"devices", required_argument, NULL, O_DEVICES},
                                       {"records", required_argument, NULL, O_RECORDS},
                                       {"window", required_argument, NULL, O_WINDOW},
                                       {"ports", required_argument, NULL, O_PORTS},
                                       {"requests", required_argument, NULL, O_REQUESTS},
                                       {"duration", required_argument, NULL, O_DURATION},
                                       {"rate", required_argument, NULL, O_RATE},
                                       {"device-prefix", required_argument, NULL, O_PREFIX},
                                       {"psk", required_argument, NULL, O_PSK},
                                       {"format", required_argument, NULL, O_FORMAT},
                                       {"ack-timeout", required_argument, NULL, O_ACK},
                                       {"verbose", no_argument, NULL, 'v'},
                                       {"help", no_argument, NULL, O_HELP},
                                       {NULL, 0, NULL, 0}};
  sim_load_opts_t o = {.prefix = "load-",
                       .devices = 1,
                       .records = 1,
                       .window = 1,
                       .ports = 1,
                       .ack_timeout_ms = 1000};
  uint64_t v;
  int c;
  optind = 1;
  while ((c = getopt_long(argc, argv, "vh", opts, NULL)) != -1) {
    switch (c) {
    case O_GATEWAY:
      o.gateway = optarg;
      break;
    case O_DEVICES:
      if (!parse_u64(optarg, 1, 1000000, &v))
        return usage("--devices: \"%s\" is not a number from 1 to 1000000", optarg);
      o.devices = (unsigned)v;
      break;
    case O_RECORDS:
      if (!parse_u64(optarg, 1, PROTO_PACK_MAX, &v))
        return usage("--records: \"%s\" is not a number from 1 to 1024", optarg);
      o.records = (unsigned)v;
      break;
    case O_WINDOW:
      if (!parse_u64(optarg, 1, 65536, &v)) /* CoAP Message IDs are 16 bits */
        return usage("--window: \"%s\" is not a number from 1 to 65536", optarg);
      o.window = (unsigned)v;
      break;
    case O_PORTS:
      if (!parse_u64(optarg, 1, 60000, &v))
        return usage("--ports: \"%s\" is not a number from 1 to 60000", optarg);
      o.ports = (unsigned)v;
      break;
    case O_REQUESTS:
      if (!parse_u64(optarg, 0, UINT64_MAX / 2, &o.requests))
        return usage("--requests: \"%s\" is not a whole number", optarg);
      break;
    case O_DURATION:
      if (!parse_dbl(optarg, 0, 1e9, &o.duration_s))
        return usage("--duration: \"%s\" is not a number of seconds", optarg);
      break;
    case O_RATE:
      if (!parse_dbl(optarg, 0, 1e8, &o.rate))
        return usage("--rate: \"%s\" is not a number of requests/s", optarg);
      break;
    case O_PREFIX:
      o.prefix = optarg;
      break;
    case O_PSK:
      o.psk = optarg;
      break;
    case O_FORMAT:
      if (!parse_format(optarg, &o.cbor))
        return usage("--format: \"%s\" is neither json nor cbor", optarg);
      break;
    case O_ACK:
      if (!parse_u64(optarg, 1000, 600000, &v)) /* libcoap 4.3.1 takes no less than 1 s */
        return usage("--ack-timeout: \"%s\" is not a number of ms from 1000 to 600000", optarg);
      o.ack_timeout_ms = (unsigned)v;
      break;
    case 'v':
      o.verbose = true;
      break;
    case 'h':
    case O_HELP:
      fputs(usage_text, stdout);
      fputs(help_text, stdout);
      return 0;
    default:
      return usage(NULL, NULL);
    }
  }
  if (optind < argc)
    return usage("unexpected argument \"%s\"", argv[optind]);
  if (!o.gateway)
    return usage("load: --gateway URI is required", NULL);
  if (o.requests == 0 && o.duration_s == 0)
    return usage("load: give --requests M or --duration S", NULL);
  if (strlen(o.prefix) + 7 > PROTO_DEVICE_MAX)
    return usage("--device-prefix: \"%s\" is too long", o.prefix);
  for (const char *p = o.prefix; *p; p++)
    if (!isalnum((unsigned char)*p) && !strchr("._-", *p))
      return usage("--device-prefix: \"%s\" may use A-Z a-z 0-9 . _ - only", o.prefix);
  if (o.psk && (!*o.psk || strlen(o.psk) > SG_PSK_MAX))
    return usage("--psk: a key is 1 to 64 bytes", NULL);
  if (o.verbose)
    log_threshold = LOG_LVL_DEBUG;
  else
    log_threshold = LOG_LVL_WARN; /* figures go to stdout; keep stderr for trouble */
  return sim_load_run(&o);
}

/* ---- gen-config */

static int main_genconf(int argc, char **argv) {
  static const struct option opts[] = {{"devices", required_argument, NULL, O_DEVICES},
                                       {"prefix", required_argument, NULL, O_PREFIX},
                                       {"port", required_argument, NULL, O_PORT},
                                       {"dtls-port", required_argument, NULL, O_DTLS_PORT},
                                       {"db", required_argument, NULL, O_DB},
                                       {"http", required_argument, NULL, O_HTTP},
                                       {"psk", required_argument, NULL, O_PSK},
                                       {"interval", required_argument, NULL, O_INTERVAL},
                                       {"help", no_argument, NULL, O_HELP},
                                       {NULL, 0, NULL, 0}};
  uint64_t devices = 0, port = 5683, dtls_port = 0, interval = 60;
  bool dtls_given = false;
  const char *prefix = "load-", *db = NULL, *http = NULL, *psk = NULL;
  int c;
  optind = 1;
  while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
    switch (c) {
    case O_DEVICES:
      if (!parse_u64(optarg, 1, 1000000, &devices))
        return usage("--devices: \"%s\" is not a number from 1 to 1000000", optarg);
      break;
    case O_PREFIX:
      prefix = optarg;
      break;
    case O_PORT:
      if (!parse_u64(optarg, 1, 65535, &port))
        return usage("--port: \"%s\" is not a port", optarg);
      break;
    case O_DTLS_PORT:
      if (!parse_u64(optarg, 0, 65535, &dtls_port))
        return usage("--dtls-port: \"%s\" is not a port (0: DTLS off)", optarg);
      dtls_given = true;
      break;
    case O_DB:
      db = optarg;
      break;
    case O_HTTP:
      http = optarg;
      break;
    case O_PSK:
      psk = optarg;
      break;
    case O_INTERVAL:
      if (!parse_u64(optarg, 1, 86400, &interval))
        return usage("--interval: \"%s\" is not a number of seconds from 1 to 86400", optarg);
      break;
    case 'h':
    case O_HELP:
      fputs(usage_text, stdout);
      fputs(help_text, stdout);
      return 0;
    default:
      return usage(NULL, NULL);
    }
  }
  if (optind < argc)
    return usage("unexpected argument \"%s\"", argv[optind]);
  if (devices == 0)
    return usage("gen-config: --devices N is required", NULL);
  if (strlen(prefix) + 7 > SG_ID_MAX)
    return usage("--prefix: \"%s\" is too long", prefix);
  for (const char *p = prefix; *p; p++)
    if (!isalnum((unsigned char)*p) && !strchr("._-", *p))
      return usage("--prefix: \"%s\" may use A-Z a-z 0-9 . _ - only", prefix);
  if (psk && (strlen(psk) < SG_PSK_MIN || strlen(psk) > SG_PSK_MAX || strpbrk(psk, "\n\r;#")))
    return usage("--psk: a key is 16 to 64 bytes without newline, ';' or '#'", NULL);
  if (!dtls_given)
    dtls_port = psk ? (port < 65535 ? port + 1 : 0) : 0;
  printf("# sitesim gen-config: %llu dust devices %s0..%s%llu for load tests.\n"
         "[site]\nid = LOAD-SITE\nname = sitesim load\ntimezone = Asia/Shanghai\n\n",
         (unsigned long long)devices, prefix, prefix, (unsigned long long)devices - 1);
  if (db)
    printf("[storage]\npath = %s\n\n", db);
  printf("[coap]\nlisten = 127.0.0.1\nport = %llu\ndtls_port = %llu\n\n", (unsigned long long)port,
         (unsigned long long)dtls_port);
  if (http)
    printf("[http]\nlisten = %s\n\n", http);
  for (uint64_t i = 0; i < devices; i++) {
    printf("[device %s%llu]\ntype = dust\ninterval_s = %llu\n", prefix, (unsigned long long)i,
           (unsigned long long)interval);
    /* without a key, the load test's plain CoAP is a choice the file says */
    if (psk)
      printf("psk = %s\n\n", psk);
    else
      printf("insecure = yes\n\n");
  }
  return fflush(stdout) == 0 ? 0 : 1;
}

int main(int argc, char **argv) {
  if (argc > 1 && strcmp(argv[1], "load") == 0)
    return main_load(argc - 1, argv + 1);
  if (argc > 1 && strcmp(argv[1], "gen-config") == 0)
    return main_genconf(argc - 1, argv + 1);
  return main_site(argc, argv);
}
