/* sitegate-rx's supervision console: the authority's staff see every
 * site at a glance (which breaks which rule, which is silent, whose chain
 * is broken) and a page per site, served with libmicrohttpd like the site
 * gateway's dashboard, on threads of its own (`--http HOST:PORT`).
 *
 * The pages (authority/web/, installed to share/sitegate-rx/web) ask
 * three JSON questions, each answered by storage's console queries on a
 * database connection of their own (never the writer's): /api/sites (the
 * month's table), /api/site (a site's minutes of the last hours, its
 * hours of a month and its ledger) and /api/sites.csv. Staff sign in with
 * accounts from `--users FILE` (lines "name:hash", the hash from
 * libxcrypt's crypt(3), yescrypt by default, made by `sitegate-rx
 * passwd`); a session is a random cookie that expires after SESSION_S.
 * Without --users the console is open, which is allowed on a loopback
 * address only (rx_console_start refuses otherwise).
 *
 * Guessing is slowed down: failed sign-ins are counted per source address
 * and per account name over SIGNIN_WINDOW_S, and past SIGNIN_FAILS_ADDR
 * from one address, or SIGNIN_FAILS_USER for one account from anywhere,
 * a sign-in gets 429 with Retry-After (the password is not even hashed)
 * until the window that counted them has passed. The per-account limit is
 * higher than a typist needs and lower than a guesser wants; an address
 * that fills it for someone else's account locks that account for at
 * most SIGNIN_WINDOW_S, and the log and /metrics say so. */
#define LOG_MODULE "console"
#include "authority/rx.h"
#include "common/common.h"
#include "storage/storage.h"

#include <arpa/inet.h>
#include <crypt.h>
#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#define SESSION_S (8 * 3600) /* a signed-in session lasts a working day */
#define SESSIONS_MAX 256
#define USERS_MAX 256
#define BODY_MAX 4096
#define LEDGER_ROWS 200
#define SERIES_HOURS_MAX (24 * 31)
#define BEIJING_S (8 * 3600)
#define SIGNIN_WINDOW_S 900  /* failed sign-ins are counted over 15 minutes */
#define SIGNIN_FAILS_ADDR 20 /* ... at most this many from one address */
#define SIGNIN_FAILS_USER 10 /* ... and for one account, from any address */
#define SIGNIN_BUCKETS 1024  /* addresses and accounts counted at once */

typedef struct session {
  char token[65];
  char user[64];
  time_t expires;
} session_t;

/* Failed sign-ins of one address ("a" + address) or one account ("u" +
 * name) since `since`. */
typedef struct fails {
  char key[72];
  time_t since;
  int n;
} fails_t;

typedef struct user {
  char name[64];
  char hash[256];
} user_t;

struct rx_console {
  struct MHD_Daemon *mhd;
  char db[1024];
  char root[PATH_MAX];
  bool open; /* no accounts: loopback only */
  user_t users[USERS_MAX];
  int n_users;
  pthread_mutex_t mu;
  session_t sessions[SESSIONS_MAX];
  fails_t fails[SIGNIN_BUCKETS];
  uint64_t signins[RX_SIGNIN_N]; /* by rx_signin_t, under mu */
};

/* ---- accounts and sessions */

static int load_users(rx_console_t *c, const char *path) {
  FILE *f = fopen(path, "r");
  if (!f) {
    log_err("--users %s: %s", path, strerror(errno));
    return -errno;
  }
  char line[512];
  int lineno = 0;
  while (fgets(line, sizeof(line), f)) {
    lineno++;
    line[strcspn(line, "\r\n")] = '\0';
    if (!line[0] || line[0] == '#')
      continue;
    char *colon = strchr(line, ':');
    if (!colon || colon == line || (size_t)(colon - line) >= sizeof(c->users[0].name) ||
        strlen(colon + 1) >= sizeof(c->users[0].hash) || colon[1] != '$') {
      log_err("--users %s:%d: want name:$hash (sitegate-rx passwd makes them)", path, lineno);
      fclose(f);
      return -EINVAL;
    }
    if (c->n_users == USERS_MAX) {
      log_err("--users %s: more than %d accounts", path, USERS_MAX);
      fclose(f);
      return -E2BIG;
    }
    user_t *u = &c->users[c->n_users++];
    snprintf(u->name, sizeof(u->name), "%.*s", (int)(colon - line), line);
    snprintf(u->hash, sizeof(u->hash), "%s", colon + 1);
  }
  fclose(f);
  if (c->n_users == 0) {
    log_err("--users %s has no account", path);
    return -EINVAL;
  }
  return 0;
}

static bool same(const char *a, const char *b) { /* constant time for equal lengths */
  size_t n = strlen(a);
  if (n != strlen(b))
    return false;
  unsigned char d = 0;
  for (size_t i = 0; i < n; i++)
    d |= (unsigned char)(a[i] ^ b[i]);
  return d == 0;
}

/* An unknown name is hashed too, against the first account's setting (the
 * same algorithm and cost as the others), so that how long the answer
 * takes does not tell which names exist. */
static bool password_ok(const rx_console_t *c, const char *user, const char *password) {
  const char *hash = NULL;
  for (int i = 0; i < c->n_users && !hash; i++)
    if (strcmp(c->users[i].name, user) == 0)
      hash = c->users[i].hash;
  const char *setting = hash ? hash : c->n_users > 0 ? c->users[0].hash : NULL;
  struct crypt_data *cd = setting ? calloc(1, sizeof(*cd)) : NULL;
  if (!cd)
    return false;
  const char *h = crypt_r(password, setting, cd);
  bool ok = hash && h && h[0] != '*' && same(h, hash);
  free(cd);
  return ok;
}

static int session_new(rx_console_t *c, const char *user, char token[65]) {
  unsigned char r[32];
  if (getrandom(r, sizeof(r), 0) != (ssize_t)sizeof(r))
    return -EIO;
  for (int i = 0; i < 32; i++)
    snprintf(token + 2 * i, 3, "%02x", r[i]);
  time_t now = time(NULL);
  pthread_mutex_lock(&c->mu);
  session_t *slot = &c->sessions[0];
  for (int i = 0; i < SESSIONS_MAX; i++) {
    if (c->sessions[i].expires < now) {
      slot = &c->sessions[i];
      break;
    }
    if (c->sessions[i].expires < slot->expires)
      slot = &c->sessions[i]; /* all taken: the oldest goes */
  }
  snprintf(slot->token, sizeof(slot->token), "%s", token);
  snprintf(slot->user, sizeof(slot->user), "%s", user);
  slot->expires = now + SESSION_S;
  pthread_mutex_unlock(&c->mu);
  return 0;
}

/* The signed-in user of the request's cookie into `user`, or false. */
static bool session_user(rx_console_t *c, struct MHD_Connection *conn, char *user, size_t len,
                         bool end) {
  const char *tok = MHD_lookup_connection_value(conn, MHD_COOKIE_KIND, "rxsid");
  if (!tok || strlen(tok) != 64)
    return false;
  bool ok = false;
  time_t now = time(NULL);
  pthread_mutex_lock(&c->mu);
  for (int i = 0; i < SESSIONS_MAX; i++)
    if (c->sessions[i].expires >= now && same(c->sessions[i].token, tok)) {
      snprintf(user, len, "%s", c->sessions[i].user);
      if (end)
        c->sessions[i].expires = 0;
      ok = true;
    }
  pthread_mutex_unlock(&c->mu);
  return ok;
}

/* ---- responses */

/* `cookie` is a Set-Cookie value, or "Retry-After: N" for that header. */
static enum MHD_Result send_buf(struct MHD_Connection *conn, unsigned status, const char *type,
                                char *body, size_t len, const char *cookie) {
  struct MHD_Response *r = MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE);
  if (!r) {
    free(body);
    return MHD_NO;
  }
  MHD_add_response_header(r, "Content-Type", type);
  MHD_add_response_header(r, "Cache-Control", "no-store");
  MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
  MHD_add_response_header(r, "Content-Security-Policy",
                          "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'");
  if (cookie && !strncmp(cookie, "Retry-After: ", 13))
    MHD_add_response_header(r, "Retry-After", cookie + 13);
  else if (cookie)
    MHD_add_response_header(r, "Set-Cookie", cookie);
  enum MHD_Result ok = MHD_queue_response(conn, status, r);
  MHD_destroy_response(r);
  return ok;
}

static enum MHD_Result send_json(struct MHD_Connection *conn, unsigned status, json_t *j,
                                 const char *cookie) {
  char *s = json_dumps(j, JSON_COMPACT);
  json_decref(j);
  if (!s)
    return MHD_NO;
  return send_buf(conn, status, "application/json; charset=utf-8", s, strlen(s), cookie);
}

static enum MHD_Result send_error(struct MHD_Connection *conn, unsigned status, const char *code,
                                  const char *msg) {
  return send_json(conn, status, json_pack("{s:s, s:s}", "error", code, "message", msg), NULL);
}

/* ---- rows to JSON and CSV */

static json_t *value_json(const char *v, bool num) {
  if (!v)
    return json_null();
  if (!num)
    return json_string(v);
  char *end;
  long long i = strtoll(v, &end, 10);
  if (!*end)
    return json_integer(i);
  double d = strtod(v, &end);
  return *end ? json_string(v) : json_real(d);
}

static int row_to_json(void *arg, const stor_rx_cols_t *row) {
  json_t *o = json_object();
  for (int i = 0; i < row->n; i++)
    json_object_set_new(o, row->name[i], value_json(row->value[i], row->is_num[i]));
  json_array_append_new(arg, o);
  return 0;
}

typedef struct csv {
  char *buf;
  size_t len, cap;
  bool head;
} csv_t;

static void csv_put(csv_t *c, const char *s, size_t n) {
  if (c->len + n + 1 > c->cap) {
    size_t cap = (c->len + n + 1) * 2;
    char *p = realloc(c->buf, cap);
    if (!p)
      return;
    c->buf = p;
    c->cap = cap;
  }
  memcpy(c->buf + c->len, s, n);
  c->len += n;
}

/* One cell: quoted when it must be; text that a spreadsheet would take for
 * a formula gets a leading ' (OWASP CSV injection). */
static void csv_cell(csv_t *c, const char *v, bool num) {
  if (!v)
    return;
  bool formula = !num && strchr("=+-@\t\r", v[0]) && v[0];
  bool quote = formula || strpbrk(v, ",\"\r\n");
  if (quote)
    csv_put(c, "\"", 1);
  if (formula)
    csv_put(c, "'", 1);
  for (const char *p = v; *p; p++)
    csv_put(c, *p == '"' ? "\"\"" : p, *p == '"' ? 2 : 1);
  if (quote)
    csv_put(c, "\"", 1);
}

static int row_to_csv(void *arg, const stor_rx_cols_t *row) {
  csv_t *c = arg;
  if (!c->head) {
    for (int i = 0; i < row->n; i++) {
      if (i)
        csv_put(c, ",", 1);
      csv_cell(c, row->name[i], false);
    }
    csv_put(c, "\r\n", 2);
    c->head = true;
  }
  for (int i = 0; i < row->n; i++) {
    if (i)
      csv_put(c, ",", 1);
    csv_cell(c, row->value[i], row->is_num[i]);
  }
  csv_put(c, "\r\n", 2);
  return 0;
}

/* ---- the questions */

/* The Beijing-time month "YYYY-MM" (or this one, when NULL) as [t0, t1). */
static int month_range(const char *m, int64_t *t0, int64_t *t1, char out[16]) {
  int y, mo;
  if (m) {
    if (strlen(m) != 7 || sscanf(m, "%4d-%2d", &y, &mo) != 2 || mo < 1 || mo > 12 || y < 2000 ||
        y > 9999)
      return -EINVAL;
  } else {
    time_t now = time(NULL) + BEIJING_S;
    struct tm tm;
    gmtime_r(&now, &tm);
    y = tm.tm_year + 1900;
    mo = tm.tm_mon + 1;
  }
  struct tm a = {.tm_year = y - 1900, .tm_mon = mo - 1, .tm_mday = 1};
  struct tm b = {.tm_year = y - 1900 + (mo == 12), .tm_mon = mo % 12, .tm_mday = 1};
  *t0 = (int64_t)timegm(&a) - BEIJING_S;
  *t1 = (int64_t)timegm(&b) - BEIJING_S;
  snprintf(out, 16, "%04d-%02d", y % 10000, mo % 100);
  return 0;
}

static enum MHD_Result api_sites(rx_console_t *c, struct MHD_Connection *conn, bool csv) {
  int64_t t0, t1;
  char month[16], err[512];
  if (month_range(MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "month"), &t0, &t1,
                  month) != 0)
    return send_error(conn, 400, "bad_month", "month must be YYYY-MM");
  if (csv) {
    csv_t out = {0};
    if (stor_rx_report_sites(c->db, t0, t1, row_to_csv, &out, err, sizeof(err)) != 0) {
      free(out.buf);
      return send_error(conn, 503, "database", err);
    }
    return send_buf(conn, 200, "text/csv; charset=utf-8", out.buf ? out.buf : strdup(""), out.len,
                    NULL);
  }
  json_t *rows = json_array();
  if (stor_rx_report_sites(c->db, t0, t1, row_to_json, rows, err, sizeof(err)) != 0) {
    json_decref(rows);
    return send_error(conn, 503, "database", err);
  }
  return send_json(conn, 200,
                   json_pack("{s:s, s:I, s:I, s:I, s:o}", "month", month, "t0", (json_int_t)t0,
                             "t1", (json_int_t)t1, "now", (json_int_t)time(NULL), "sites", rows),
                   NULL);
}

static enum MHD_Result api_site(rx_console_t *c, struct MHD_Connection *conn) {
  const char *mn = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "mn");
  const char *h = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "hours");
  int hours = h ? atoi(h) : 24;
  int64_t m0, m1;
  char month[16];
  if (!mn || !*mn || strlen(mn) > HJ212_MN_MAX)
    return send_error(conn, 400, "bad_site", "mn is the site's MN");
  if (hours < 1 || hours > SERIES_HOURS_MAX)
    return send_error(conn, 400, "bad_hours", "hours is 1 to 744");
  if (month_range(MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "month"), &m0, &m1,
                  month) != 0)
    return send_error(conn, 400, "bad_month", "month must be YYYY-MM");
  char err[512];
  int64_t now = (int64_t)time(NULL);
  json_t *series = json_array(), *month_rows = json_array(), *ledger = json_array();
  if (stor_rx_report_series(c->db, mn, now - hours * 3600, now + 60, row_to_json, series, err,
                            sizeof(err)) != 0 ||
      stor_rx_report_hours(c->db, mn, m0, m1, row_to_json, month_rows, err, sizeof(err)) != 0 ||
      stor_rx_report_ledger(c->db, mn, LEDGER_ROWS, row_to_json, ledger, err, sizeof(err)) != 0) {
    json_decref(series);
    json_decref(month_rows);
    json_decref(ledger);
    return send_error(conn, 503, "database", err);
  }
  return send_json(conn, 200,
                   json_pack("{s:s, s:I, s:o, s:s, s:I, s:I, s:o, s:o}", "mn", mn, "now",
                             (json_int_t)now, "series", series, "month", month, "t0",
                             (json_int_t)m0, "t1", (json_int_t)m1, "hours", month_rows, "ledger",
                             ledger),
                   NULL);
}

/* ---- sign-in */

typedef struct upload {
  char body[BODY_MAX + 1];
  size_t len;
  bool too_big;
} upload_t;

/* The counter of `key` in its current window; with `make`, a new one
 * when there is none (in a free or expired slot, else the oldest's).
 * NULL when none. Under c->mu. */
static fails_t *fails_of(rx_console_t *c, const char *key, time_t now, bool make) {
  fails_t *slot = NULL;
  bool slot_free = false;
  for (int i = 0; i < SIGNIN_BUCKETS; i++) {
    fails_t *f = &c->fails[i];
    bool live = f->n > 0 && now - f->since < SIGNIN_WINDOW_S;
    if (live && !strcmp(f->key, key))
      return f;
    if (!live && !slot_free) {
      slot = f;
      slot_free = true;
    } else if (live && !slot_free && (!slot || f->since < slot->since)) {
      slot = f;
    }
  }
  if (!make)
    return NULL;
  snprintf(slot->key, sizeof(slot->key), "%s", key);
  slot->since = now;
  slot->n = 0;
  return slot;
}

/* The client's address as text into `out` (INET6_ADDRSTRLEN). */
static void client_addr(struct MHD_Connection *conn, char *out, size_t len) {
  const union MHD_ConnectionInfo *ci =
      MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
  const struct sockaddr *sa = ci ? ci->client_addr : NULL;
  snprintf(out, len, "?");
  if (sa && sa->sa_family == AF_INET)
    inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, out, (socklen_t)len);
  else if (sa && sa->sa_family == AF_INET6)
    inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, out, (socklen_t)len);
}

static void count_signin(rx_console_t *c, rx_signin_t what) {
  pthread_mutex_lock(&c->mu);
  c->signins[what]++;
  pthread_mutex_unlock(&c->mu);
}

void rx_console_stats(rx_console_t *c, uint64_t signins[RX_SIGNIN_N]) {
  pthread_mutex_lock(&c->mu);
  memcpy(signins, c->signins, sizeof(c->signins));
  pthread_mutex_unlock(&c->mu);
}

/* 0 when `user` may try to sign in from `addr` now, else the seconds to
 * wait, with *what saying which limit. */
static long signin_wait(rx_console_t *c, const char *addr, const char *user, rx_signin_t *what) {
  char ka[72], ku[72];
  snprintf(ka, sizeof(ka), "a%s", addr);
  snprintf(ku, sizeof(ku), "u%.64s", user);
  time_t now = time(NULL);
  long wait = 0;
  pthread_mutex_lock(&c->mu);
  const fails_t *fa = fails_of(c, ka, now, false), *fu = fails_of(c, ku, now, false);
  if (fa && fa->n >= SIGNIN_FAILS_ADDR) {
    wait = (long)(fa->since + SIGNIN_WINDOW_S - now);
    *what = RX_SIGNIN_LIMITED_ADDRESS;
  } else if (fu && fu->n >= SIGNIN_FAILS_USER) {
    wait = (long)(fu->since + SIGNIN_WINDOW_S - now);
    *what = RX_SIGNIN_LIMITED_ACCOUNT;
  }
  pthread_mutex_unlock(&c->mu);
  return wait > 0 ? wait : 0;
}

static void signin_failed(rx_console_t *c, const char *addr, const char *user) {
  char ka[72], ku[72];
  snprintf(ka, sizeof(ka), "a%s", addr);
  snprintf(ku, sizeof(ku), "u%.64s", user);
  time_t now = time(NULL);
  pthread_mutex_lock(&c->mu);
  fails_t *f = fails_of(c, ka, now, true);
  f->n++;
  f = fails_of(c, ku, now, true);
  f->n++;
  c->signins[RX_SIGNIN_BAD]++;
  pthread_mutex_unlock(&c->mu);
}

static enum MHD_Result api_login(rx_console_t *c, struct MHD_Connection *conn, upload_t *u) {
  if (u->too_big)
    return send_error(conn, 413, "too_big", "request too large");
  u->body[u->len] = '\0';
  json_t *j = json_loads(u->body, 0, NULL);
  const char *user = json_string_value(json_object_get(j, "user"));
  const char *pw = json_string_value(json_object_get(j, "password"));
  char token[65], addr[INET6_ADDRSTRLEN + 1];
  client_addr(conn, addr, sizeof(addr));
  rx_signin_t what = RX_SIGNIN_BAD;
  long wait = signin_wait(c, addr, user ? user : "", &what);
  if (wait > 0) {
    count_signin(c, what);
    bool by_addr = what == RX_SIGNIN_LIMITED_ADDRESS;
    log_warn("sign-in for \"%.32s\" from %s refused: too many failed sign-ins %s (%d in %d min)",
             user ? user : "", addr, by_addr ? "from this address" : "for this account",
             by_addr ? SIGNIN_FAILS_ADDR : SIGNIN_FAILS_USER, SIGNIN_WINDOW_S / 60);
    json_decref(j);
    char msg[160], retry[40];
    snprintf(msg, sizeof(msg), "too many failed sign-ins %s: try again in %ld min",
             by_addr ? "from this address" : "for this account", (wait + 59) / 60);
    snprintf(retry, sizeof(retry), "Retry-After: %ld", wait);
    return send_json(conn, 429,
                     json_pack("{s:s, s:s, s:I}", "error", "too_many", "message", msg,
                               "retry_after", (json_int_t)wait),
                     retry);
  }
  if (!user || !pw || !password_ok(c, user, pw)) {
    signin_failed(c, addr, user ? user : "");
    log_warn("sign-in refused for \"%.32s\" from %s", user ? user : "", addr);
    json_decref(j);
    return send_error(conn, 401, "bad_login", "wrong user name or password");
  }
  if (session_new(c, user, token) != 0) {
    json_decref(j);
    return send_error(conn, 500, "random", "no randomness for a session");
  }
  count_signin(c, RX_SIGNIN_OK);
  log_info("%s signed in from %s", user, addr);
  char cookie[160];
  snprintf(cookie, sizeof(cookie), "rxsid=%s; Path=/; HttpOnly; SameSite=Strict; Max-Age=%d", token,
           SESSION_S);
  enum MHD_Result r = send_json(conn, 200, json_pack("{s:s}", "user", user), cookie);
  json_decref(j);
  return r;
}

/* ---- static files */

static const char *type_of(const char *path) {
  const char *dot = strrchr(path, '.');
  if (!dot)
    return "application/octet-stream";
  if (!strcmp(dot, ".html"))
    return "text/html; charset=utf-8";
  if (!strcmp(dot, ".js"))
    return "text/javascript; charset=utf-8";
  if (!strcmp(dot, ".css"))
    return "text/css; charset=utf-8";
  if (!strcmp(dot, ".json"))
    return "application/json; charset=utf-8";
  return "application/octet-stream";
}

static enum MHD_Result send_file(rx_console_t *c, struct MHD_Connection *conn, const char *url) {
  if (!strcmp(url, "/"))
    url = "/index.html";
  if (strstr(url, "..") || strspn(url + 1, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                           "0123456789._-/") != strlen(url + 1))
    return send_error(conn, 404, "not_found", "no such page");
  char path[PATH_MAX + 256];
  snprintf(path, sizeof(path), "%s%s", c->root, url);
  FILE *f = fopen(path, "rb");
  if (!f)
    return send_error(conn, 404, "not_found", "no such page");
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  char *buf = n >= 0 ? malloc((size_t)n + 1) : NULL;
  if (!buf || fread(buf, 1, (size_t)n, f) != (size_t)n) {
    free(buf);
    fclose(f);
    return send_error(conn, 500, "read", "cannot read the page");
  }
  fclose(f);
  return send_buf(conn, 200, type_of(path), buf, (size_t)n, NULL);
}

/* ---- dispatch */

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *data,
                                  size_t *data_size, void **req_cls) {
  (void)version;
  rx_console_t *c = cls;
  bool post = !strcmp(method, "POST");
  if (post && !*req_cls) { /* the first call: headers only */
    upload_t *u = calloc(1, sizeof(*u));
    if (!u)
      return MHD_NO;
    *req_cls = u;
    return MHD_YES;
  }
  if (post && *data_size) {
    upload_t *u = *req_cls;
    if (u->len + *data_size > BODY_MAX)
      u->too_big = true;
    else
      memcpy(u->body + u->len, data, *data_size);
    if (!u->too_big)
      u->len += *data_size;
    *data_size = 0;
    return MHD_YES;
  }
  if (strncmp(url, "/api/", 5) != 0)
    return strcmp(method, "GET") ? send_error(conn, 405, "method", "GET only")
                                 : send_file(c, conn, url);
  if (post && !strcmp(url, "/api/login"))
    return api_login(c, conn, *req_cls);
  char user[64] = "";
  bool in = c->open || session_user(c, conn, user, sizeof(user), false);
  if (post && !strcmp(url, "/api/logout")) {
    session_user(c, conn, user, sizeof(user), true);
    return send_json(conn, 200, json_object(),
                     "rxsid=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0");
  }
  if (!in)
    return send_error(conn, 401, "sign_in", "sign in first");
  if (strcmp(method, "GET") != 0)
    return send_error(conn, 405, "method", "GET only");
  if (!strcmp(url, "/api/me"))
    return send_json(conn, 200, json_pack("{s:s, s:b}", "user", user, "open", c->open), NULL);
  if (!strcmp(url, "/api/sites"))
    return api_sites(c, conn, false);
  if (!strcmp(url, "/api/sites.csv"))
    return api_sites(c, conn, true);
  if (!strcmp(url, "/api/site"))
    return api_site(c, conn);
  return send_error(conn, 404, "not_found", "no such question");
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **req_cls,
                         enum MHD_RequestTerminationCode toe) {
  (void)cls, (void)conn, (void)toe;
  free(*req_cls);
  *req_cls = NULL;
}

/* ---- start and stop */

static bool is_loopback(const struct sockaddr *sa) {
  if (sa->sa_family == AF_INET)
    return (ntohl(((const struct sockaddr_in *)sa)->sin_addr.s_addr) >> 24) == 127;
  if (sa->sa_family == AF_INET6)
    return IN6_IS_ADDR_LOOPBACK(&((const struct sockaddr_in6 *)sa)->sin6_addr);
  return false;
}

static void default_root(char *out, size_t len) {
  char exe[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
  if (n <= 0) {
    snprintf(out, len, "share/sitegate-rx/web");
    return;
  }
  exe[n] = '\0';
  char *slash = strrchr(exe, '/');
  if (slash)
    *slash = '\0';
  snprintf(out, len, "%.*s/../share/sitegate-rx/web", PATH_MAX - 32, exe);
}

int rx_console_start(const struct sockaddr *sa, const char *db, const char *users, const char *web,
                     rx_console_t **out) {
  *out = NULL;
  rx_console_t *c = calloc(1, sizeof(*c));
  if (!c)
    return -ENOMEM;
  pthread_mutex_init(&c->mu, NULL);
  snprintf(c->db, sizeof(c->db), "%s", db);
  if (web)
    snprintf(c->root, sizeof(c->root), "%s", web);
  else
    default_root(c->root, sizeof(c->root));
  int rc = 0;
  if (users) {
    rc = load_users(c, users);
  } else if (!is_loopback(sa)) {
    log_err("--http off loopback needs --users: nothing is readable without signing in");
    rc = -EACCES;
  } else {
    c->open = true;
  }
  if (rc == 0) {
    c->mhd = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL_LINUX_ONLY |
                                  (sa->sa_family == AF_INET6 ? MHD_USE_IPv6 : 0),
                              0, NULL, NULL, on_request, c, MHD_OPTION_SOCK_ADDR, sa,
                              MHD_OPTION_THREAD_POOL_SIZE, 2u, MHD_OPTION_CONNECTION_TIMEOUT, 30u,
                              MHD_OPTION_CONNECTION_LIMIT, 256u, MHD_OPTION_NOTIFY_COMPLETED,
                              on_completed, c, MHD_OPTION_END);
    if (!c->mhd) {
      log_err("cannot serve the console: is another program using its address?");
      rc = -EADDRINUSE;
    }
  }
  if (rc != 0) {
    rx_console_stop(c);
    return rc;
  }
  *out = c;
  return 0;
}

void rx_console_stop(rx_console_t *c) {
  if (!c)
    return;
  if (c->mhd)
    MHD_stop_daemon(c->mhd);
  pthread_mutex_destroy(&c->mu);
  free(c);
}

/* ---- sitegate-rx passwd */

int rx_console_passwd(const char *users, const char *name, const char *password) {
  if (!*name || strlen(name) >= 64 || strpbrk(name, ":\r\n \t")) {
    fprintf(stderr, "sitegate-rx: a user name is 1-63 characters, no ':' or blanks\n");
    return -EINVAL;
  }
  if (strlen(password) < 10) {
    fprintf(stderr, "sitegate-rx: a password needs at least 10 characters\n");
    return -EINVAL;
  }
  char salt[CRYPT_GENSALT_OUTPUT_SIZE];
  struct crypt_data *cd = calloc(1, sizeof(*cd));
  if (!cd)
    return -ENOMEM;
  const char *h = NULL;
  if (crypt_gensalt_rn(NULL, 0, NULL, 0, salt, sizeof(salt)))
    h = crypt_r(password, salt, cd);
  if (!h || h[0] == '*') {
    fprintf(stderr, "sitegate-rx: cannot hash the password: %s\n", strerror(errno));
    free(cd);
    return -EIO;
  }
  /* The file again, without NAME's old line, with its new one. */
  char tmp[PATH_MAX];
  snprintf(tmp, sizeof(tmp), "%s.new", users);
  FILE *in = fopen(users, "r"), *outf = fopen(tmp, "w");
  if (!outf) {
    fprintf(stderr, "sitegate-rx: cannot write %s: %s\n", tmp, strerror(errno));
    if (in)
      fclose(in);
    free(cd);
    return -EIO;
  }
  char line[512];
  size_t n = strlen(name);
  while (in && fgets(line, sizeof(line), in))
    if (!(strncmp(line, name, n) == 0 && line[n] == ':'))
      fputs(line, outf);
  fprintf(outf, "%s:%s\n", name, h);
  free(cd);
  if (in)
    fclose(in);
  if (fclose(outf) != 0 || rename(tmp, users) != 0) {
    fprintf(stderr, "sitegate-rx: cannot write %s: %s\n", users, strerror(errno));
    return -EIO;
  }
  return 0;
}
