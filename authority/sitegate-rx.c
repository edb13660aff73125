/* sitegate-rx: the supervision authority's receiver (DESIGN.md "Programs").
 *
 * `serve` (the default verb) runs the TLS server (rxserver.c); `check`
 * reads captured frames, one per line, and says for each whether it is a
 * well-formed HJ 212 frame; `sites` and `export` show a person what arrived,
 * from the database on read-only connections (safe while the server runs);
 * `prune` and `backfill` look after the decoded tables.
 * The options are a table, so parsing and --help come from one place. */
#define LOG_MODULE "sitegate-rx"
#include "authority/rx.h"
#include "common/common.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/types.h>
#include <time.h>

static const char usage[] =
    "usage:\n"
    "  sitegate-rx [serve] --ca CA.crt --cert SERVER.crt --key SERVER.key [options]\n"
    "      Receives HJ 212-2017 frames from gateways over TLS 1.2 with client\n"
    "      certificates from CA.crt (deploy/pki/). A gateway's certificate CN is its\n"
    "      site's MN; frames for another MN are refused (logged, counted, no answer).\n"
    "      Stored messages are acknowledged with 9014 (protocol/UPLINK.md).\n"
    "      --listen HOST:PORT  address to listen on (0.0.0.0:9212; [::]:9212 for IPv6)\n"
    "      --db FILE|URI       SQLite database file, created if missing (sitegate-rx.db), or\n"
    "                          a PostgreSQL connection URI (postgresql://USER@HOST/DB...),\n"
    "                          which any number of receivers may share\n"
    "      --reuseport         SO_REUSEPORT: several receivers on this machine share --listen\n"
    "      --metrics HOST:PORT serve GET /metrics (Prometheus text, plain HTTP) there\n"
    "      --http HOST:PORT    serve the supervision console there (libmicrohttpd)\n"
    "      --users FILE        its staff accounts (sitegate-rx passwd); required off loopback\n"
    "      --web DIR           its pages (../share/sitegate-rx/web beside the program)\n"
    "      --max-conn N        connections at once (4096)\n"
    "      --idle S            close a connection silent for S seconds (600)\n"
    "      --handshake S       close one without a TLS handshake after S seconds (30)\n"
    "      -v, -q              more (debug) or less (warnings only) logging\n"
    "  sitegate-rx check [--cert GATEWAY.crt] FILE\n"
    "      Reads frames, one per line (FILE - for stdin), and prints for each\n"
    "      \"ok CN=.. ST=.. MN=..\" or \"bad: <reason>\". Signed extension records in one\n"
    "      frame have their Hash checked, and their Sig with --cert. Exit 0 when all\n"
    "      are ok, 1 when any is bad.\n"
    "  sitegate-rx sites [--db FILE|URI] [--json]\n"
    "      Every site that connected: frames, last frame, ledger chain, seals, refusals.\n"
    "  sitegate-rx export --site MN --since T [--until T] [--cn CN] [--db FILE|URI] [--json]\n"
    "      What arrived from MN with DataTime (else arrival) in [since, until), as CSV\n"
    "      (time,received,mn,qn,cn,what,pno,pnum,ledger_seq,ledger_state,cp) or, with\n"
    "      --json, one JSON object per line with the CP's records. T is Unix seconds,\n"
    "      relative (-2h, -30m, -1d) or ISO 8601 in Beijing time unless it has a zone.\n"
    "  sitegate-rx prune --keep-months N [--db FILE|URI]\n"
    "      Retention: removes the decoded minute and hour figures older than the N\n"
    "      Beijing-time months before this one (PostgreSQL drops their monthly\n"
    "      partitions); frames, the ledger and seals are kept (protocol/RX-SCHEMA.md).\n"
    "  sitegate-rx backfill [--db FILE|URI] [--step N]\n"
    "      Decodes, to the end, the frames stored before their decoded tables existed\n"
    "      (an older sitegate-rx), N messages (5000) per transaction, printing progress.\n"
    "      A receiver does the same by itself while no upload waits (protocol/RX-SCHEMA.md);\n"
    "      this is for a stopped one. On PostgreSQL it may run beside receivers.\n"
    "  sitegate-rx passwd --users FILE NAME\n"
    "      Sets NAME's console password (read from stdin, 10 characters or more),\n"
    "      hashed with crypt(3) (yescrypt), in FILE, made when missing.\n"
    "Exit status: 0 ok, 1 failure (the message says why), 2 usage.\n";

/* ---- options: one table for every verb */
typedef struct opts {
  rx_options_t rx;
  const char *site, *since, *until, *cn, *gw_cert;
  bool json;
  int keep_months;
  int step;
  int verbosity;
} opts_t;

typedef struct opt_def {
  const char *name;
  size_t off;        /* in opts_t */
  char kind;         /* s: string, i: int, b: flag */
  int min, max;      /* ints */
  const char *verbs; /* where it is allowed */
} opt_def_t;

#define O(field) offsetof(opts_t, field)
static const opt_def_t opt_defs[] = {
    /* name          where              kind min  max     verbs */
    {"--listen", O(rx.listen), 's', 0, 0, "serve"},
    {"--ca", O(rx.ca), 's', 0, 0, "serve"},
    {"--cert", O(rx.cert), 's', 0, 0, "serve"},
    {"--key", O(rx.key), 's', 0, 0, "serve"},
    {"--db", O(rx.db), 's', 0, 0, "serve sites export prune backfill"},
    {"--max-conn", O(rx.max_conn), 'i', 1, 1000000, "serve"},
    {"--idle", O(rx.idle_s), 'i', 5, 86400, "serve"},
    {"--handshake", O(rx.handshake_s), 'i', 1, 600, "serve"},
    {"--reuseport", O(rx.reuseport), 'b', 0, 0, "serve"},
    {"--metrics", O(rx.metrics), 's', 0, 0, "serve"},
    {"--http", O(rx.http), 's', 0, 0, "serve"},
    {"--users", O(rx.users), 's', 0, 0, "serve passwd"},
    {"--web", O(rx.web), 's', 0, 0, "serve"},
    {"--site", O(site), 's', 0, 0, "export"},
    {"--since", O(since), 's', 0, 0, "export"},
    {"--until", O(until), 's', 0, 0, "export"},
    {"--cn", O(cn), 's', 0, 0, "export"},
    {"--json", O(json), 'b', 0, 0, "sites export"},
    {"--keep-months", O(keep_months), 'i', 0, 1200, "prune"},
    {"--step", O(step), 'i', 1, 1000000, "backfill"},
};

static int usage_error(const char *fmt, const char *arg) {
  fprintf(stderr, "sitegate-rx: ");
  fprintf(stderr, fmt, arg);
  fprintf(stderr, "\n(sitegate-rx --help for usage)\n");
  return 2;
}

static bool verb_has(const char *verbs, const char *verb) {
  size_t n = strlen(verb);
  for (const char *p = verbs; (p = strstr(p, verb)) != NULL; p += n)
    if ((p == verbs || p[-1] == ' ') && (p[n] == '\0' || p[n] == ' '))
      return true;
  return false;
}

/* Parses argv[first..] into `o`; positional arguments go to `pos`. */
static int parse(int argc, char **argv, int first, const char *verb, opts_t *o, const char **pos,
                 int *npos, int maxpos) {
  *npos = 0;
  for (int i = first; i < argc; i++) {
    const char *a = argv[i];
    if (!strcmp(a, "-v")) {
      o->verbosity = 1;
      continue;
    }
    if (!strcmp(a, "-q")) {
      o->verbosity = -1;
      continue;
    }
    if (!strcmp(verb, "check") && !strcmp(a, "--cert")) {
      if (i + 1 >= argc)
        return usage_error("%s needs a value", a);
      o->gw_cert = argv[++i];
      continue;
    }
    if (a[0] != '-' || !strcmp(a, "-")) {
      if (*npos >= maxpos)
        return usage_error("unexpected argument \"%s\"", a);
      pos[(*npos)++] = a;
      continue;
    }
    const opt_def_t *d = NULL;
    for (size_t k = 0; k < sizeof(opt_defs) / sizeof(opt_defs[0]); k++)
      if (!strcmp(opt_defs[k].name, a))
        d = &opt_defs[k];
    if (!d)
      return usage_error("unknown option %s", a);
    if (!verb_has(d->verbs, verb))
      return usage_error("%s does not apply here", a);
    char *where = (char *)o + d->off;
    if (d->kind == 'b') {
      *(bool *)(void *)where = true;
      continue;
    }
    if (i + 1 >= argc)
      return usage_error("%s needs a value", a);
    const char *v = argv[++i];
    if (d->kind == 's') {
      *(const char **)(void *)where = v;
    } else {
      char *end;
      long n = strtol(v, &end, 10);
      if (*end || n < d->min || n > d->max)
        return usage_error("bad number for %s", a);
      *(int *)(void *)where = (int)n;
    }
  }
  return 0;
}

/* ---- check */

static int check_file(const char *path, const char *gw_cert) {
  FILE *f = strcmp(path, "-") ? fopen(path, "rb") : stdin;
  if (!f) {
    fprintf(stderr, "sitegate-rx: cannot read %s: %s\n", path, strerror(errno));
    return 1;
  }
  rx_pubkey_t *key = NULL;
  char err[512];
  if (gw_cert && rx_pubkey_load(gw_cert, &key, err, sizeof(err)) != 0) {
    fprintf(stderr, "sitegate-rx: %s\n", err);
    if (f != stdin)
      fclose(f);
    return 1;
  }
  static hj212_frame_t fr;
  char *line = NULL;
  size_t cap = 0;
  ssize_t n;
  unsigned long ok = 0, bad = 0;
  while ((n = getline(&line, &cap, f)) > 0) {
    size_t len = (size_t)n;
    while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
      len--;
    if (len == 0)
      continue;
    if (hj212_decode(line, len, &fr, err, sizeof(err)) != 0) {
      printf("bad: %s\n", err);
      bad++;
      continue;
    }
    if (hj212_cn_is_signed(fr.h.cn) && fr.h.pnum == 0) {
      hj212_signed_t s;
      if (hj212_signed_parse(fr.cp, fr.cp_len, &s, err, sizeof(err)) != 0 ||
          rx_signed_verify(key, fr.cp, fr.cp_len, &s, err, sizeof(err)) != 0) {
        printf("bad: %s\n", err);
        bad++;
        continue;
      }
    }
    printf("ok CN=%s ST=%s MN=%s", fr.h.cn, fr.h.st, fr.h.mn);
    if (fr.h.pnum)
      printf(" PNO=%d/%d", fr.h.pno, fr.h.pnum);
    putchar('\n');
    ok++;
  }
  free(line);
  rx_pubkey_free(key);
  if (f != stdin)
    fclose(f);
  fflush(stdout);
  fprintf(stderr, "check: %lu ok, %lu bad\n", ok, bad);
  return bad ? 1 : 0;
}

/* ---- prune */

static void on_pruned(void *arg, const char *what, int64_t rows) {
  (void)arg;
  printf("%s: %lld rows removed\n", what, (long long)rows);
}

static int prune(const char *db, int keep_months) {
  char err[512];
  if (stor_rx_prune(db, keep_months, (int64_t)sg_now(), on_pruned, NULL, err, sizeof(err)) != 0) {
    fprintf(stderr, "sitegate-rx: prune: %s\n", err[0] ? err : "failed");
    return 1;
  }
  return 0;
}

/* ---- backfill */

static int backfill(const char *db, int step) {
  /* One writer per SQLite file: a receiver running on it does this itself. */
  int lock_fd = -1;
  if (!stor_rx_is_pg(db) && stor_lock(db, &lock_fd, NULL) != 0) {
    fprintf(stderr,
            "sitegate-rx: backfill: %s is in use (a receiver on it decodes the old frames "
            "itself while idle)\n",
            db);
    return 1;
  }
  stor_rx_t *x = NULL;
  if (stor_rx_open(db, &x) != 0) {
    fprintf(stderr, "sitegate-rx: backfill: cannot open the database (see the log above)\n");
    stor_unlock(lock_fd);
    return 1;
  }
  stor_rx_backfill_t b;
  long long messages = 0, rows = 0, skipped = 0;
  int rc, busy = 0;
  double last = 0;
  for (;;) {
    rc = stor_rx_backfill(x, step, &b);
    if (rc == -EBUSY) { /* a receiver sharing the database is in a step: after it */
      if (busy++ == 0)
        fprintf(stderr, "backfill: a receiver is running a step; taking turns with it\n");
      struct timespec ts = {0, 100 * 1000000L};
      nanosleep(&ts, NULL);
      continue;
    }
    if (rc != 0)
      break;
    messages += b.messages;
    rows += b.rows;
    skipped += b.skipped;
    if (b.finished)
      break;
    if (sg_now() - last >= 1.0) {
      printf("backfill: up to frame %lld of %lld, %lld messages decoded\n", (long long)b.done,
             (long long)b.upto, messages);
      fflush(stdout);
      last = sg_now();
    }
  }
  if (rc != 0)
    fprintf(stderr, "sitegate-rx: backfill: %s\n", stor_rx_error(x));
  else
    printf("backfill: done: %lld stored messages decoded (%lld rows, %lld not rebuilt)\n", messages,
           rows, skipped);
  stor_rx_close(x);
  stor_unlock(lock_fd);
  return rc == 0 ? 0 : 1;
}

/* ---- main */

static void raise_fd_limit(void) {
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
}

int main(int argc, char **argv) {
  opts_t o;
  memset(&o, 0, sizeof(o));
  o.rx.listen = "0.0.0.0:9212";
  o.rx.db = "sitegate-rx.db";
  o.rx.max_conn = 4096;
  o.rx.idle_s = 600;
  o.rx.handshake_s = 30;
  o.keep_months = -1;
  for (int i = 1; i < argc; i++)
    if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
      fputs(usage, stdout);
      return 0;
    }
  const char *verb = "serve";
  int first = 1;
  if (argc > 1 && argv[1][0] != '-') {
    verb = argv[1];
    first = 2;
  }
  if (strcmp(verb, "serve") && strcmp(verb, "check") && strcmp(verb, "sites") &&
      strcmp(verb, "export") && strcmp(verb, "prune") && strcmp(verb, "passwd") &&
      strcmp(verb, "backfill"))
    return usage_error("unknown command \"%s\"", verb);
  const char *pos[1];
  int npos;
  int rc = parse(argc, argv, first, verb, &o, pos, &npos,
                 !strcmp(verb, "check") || !strcmp(verb, "passwd") ? 1 : 0);
  if (rc != 0)
    return rc;
  log_threshold = o.verbosity > 0 ? LOG_LVL_DEBUG : o.verbosity < 0 ? LOG_LVL_WARN : LOG_LVL_INFO;

  if (!strcmp(verb, "check")) {
    if (npos != 1)
      return usage_error("%s", "check needs a FILE (- for stdin)");
    return check_file(pos[0], o.gw_cert);
  }
  if (!strcmp(verb, "sites"))
    return rx_query_sites(o.rx.db, o.json) == 0 ? 0 : 1;
  if (!strcmp(verb, "passwd")) {
    if (npos != 1 || !o.rx.users)
      return usage_error("%s", "passwd needs --users FILE and a NAME");
    char pw[256];
    if (!fgets(pw, sizeof(pw), stdin))
      return usage_error("%s", "passwd reads the password from stdin");
    pw[strcspn(pw, "\r\n")] = '\0';
    return rx_console_passwd(o.rx.users, pos[0], pw) == 0 ? 0 : 1;
  }
  if (!strcmp(verb, "prune")) {
    if (o.keep_months < 0)
      return usage_error("%s", "prune needs --keep-months N");
    return prune(o.rx.db, o.keep_months);
  }
  if (!strcmp(verb, "backfill"))
    return backfill(o.rx.db, o.step ? o.step : 5000);
  if (!strcmp(verb, "export")) {
    if (!o.site || !o.since)
      return usage_error("%s", "export needs --site MN and --since T");
    /* HJ 212 times are Beijing time: so are times typed without a zone. */
    setenv("TZ", "Asia/Shanghai", 1);
    double now = sg_now(), since, until = 9e15;
    if (sg_parse_time(o.since, now, &since) != 0)
      return usage_error("bad time for --since: %s", o.since);
    if (o.until && sg_parse_time(o.until, now, &until) != 0)
      return usage_error("bad time for --until: %s", o.until);
    return rx_query_export(o.rx.db, o.site, (int64_t)since, (int64_t)until, o.cn, o.json) == 0 ? 0
                                                                                               : 1;
  }
  if (!o.rx.ca || !o.rx.cert || !o.rx.key)
    return usage_error("%s", "serve needs --ca, --cert and --key (deploy/pki/ makes them)");
  /* One receiver per SQLite file, refused before anything opens it; any
   * number share a PostgreSQL database (its locks keep them apart). */
  int lock_fd = -1;
  if (!stor_rx_is_pg(o.rx.db) && stor_lock(o.rx.db, &lock_fd, NULL) != 0)
    return 1;
  raise_fd_limit();
  rc = rx_serve(&o.rx);
  stor_unlock(lock_fd);
  return rc;
}
