/* sitectl's shared helpers: the HTTP client, time parsing and printing, and
 * aligned tables. Commands live in sitectl*.c files. */

#include "gateway/sitectl/sitectl.h"
#include <ctype.h>
#include <curl/curl.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <wchar.h>

/* ---- words */
static struct {
  msgcat_t *cat;
  const char *lang;
  const ctl_t *ctl; /* for the gateway's catalogue when none is installed */
  bool tried;
} words = {.lang = "zh"};

/* The catalogue installed beside the program: bin/sitectl finds
 * share/sitegate/web/messages.json, as sitegated finds its web root. */
static msgcat_t *local_catalogue(void) {
  char exe[4096], path[4200];
  ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
  if (n <= 0)
    return NULL;
  exe[n] = '\0';
  char *slash = strrchr(exe, '/');
  if (!slash)
    return NULL;
  *slash = '\0';
  snprintf(path, sizeof(path), "%s/../share/sitegate/web/messages.json", exe);
  msgcat_t *c = NULL;
  if (msgcat_load(path, &c, NULL, 0) != 0)
    return NULL;
  return c;
}

void words_init(const ctl_t *ctl, const char *lang_opt) {
  static const char *const envs[] = {"SITECTL_LANG", "LC_ALL", "LC_MESSAGES", "LANG"};
  const char *wish = lang_opt;
  for (size_t i = 0; i < sizeof(envs) / sizeof(envs[0]) && !(wish && *wish); i++)
    wish = getenv(envs[i]);
  words.lang = msgcat_lang(wish);
  words.ctl = ctl;
  words.cat = local_catalogue();
}

void words_free(void) {
  msgcat_free(words.cat);
  words.cat = NULL;
}

const char *words_lang(void) { return words.lang; }

const msgcat_t *words_cat(void) {
  if (!words.cat && !words.tried && words.ctl) {
    words.tried = true; /* once: a gateway that is not there is said once */
    json_t *j;
    if (api_get_quiet(words.ctl, "/messages.json", &j) == 0)
      msgcat_from_json(j, &words.cat);
  }
  return words.cat;
}

const char *M(const char *key) { return msgcat_get(words_cat(), words.lang, key); }

const char *SYS(int e) {
  static char buf[160];
  return msgcat_errno_text(words_cat(), words.lang, e, buf, sizeof(buf));
}

const char *MN(const char *prefix, const char *id) {
  return msgcat_name(words_cat(), words.lang, prefix, id ? id : "");
}

static char *vfill(char *buf, size_t len, const char *key, va_list ap) {
  const char *names[16], *values[16];
  size_t n = 0;
  for (const char *name; n < 16 && (name = va_arg(ap, const char *)) != NULL; n++) {
    names[n] = name;
    values[n] = va_arg(ap, const char *);
  }
  return msgcat_fill(M(key), names, values, n, buf, len);
}

char *MF(char *buf, size_t len, const char *key, ...) {
  va_list ap;
  va_start(ap, key);
  vfill(buf, len, key, ap);
  va_end(ap);
  return buf;
}

void say(FILE *f, const char *key, ...) {
  char buf[2048];
  va_list ap;
  va_start(ap, key);
  vfill(buf, sizeof(buf), key, ap);
  va_end(ap);
  fprintf(f, "%s%s\n", f == stderr ? "sitectl: " : "", buf);
}

/* ---- HTTP */
typedef struct buf {
  char *p;
  size_t len;
} buf_t;

static size_t on_body(char *data, size_t size, size_t n, void *arg) {
  buf_t *b = arg;
  char *p = realloc(b->p, b->len + size * n + 1);
  if (!p)
    return 0;
  memcpy(p + b->len, data, size * n);
  b->len += size * n;
  p[b->len] = '\0';
  b->p = p;
  return size * n;
}

/* curl's failure in the person's words (curl_easy_strerror is English). */
static const char *curl_why(CURLcode cc) {
  static char other[64];
  switch (cc) {
  case CURLE_COULDNT_CONNECT:
    return M("net.refused");
  case CURLE_OPERATION_TIMEDOUT:
    return M("net.timeout");
  case CURLE_COULDNT_RESOLVE_HOST:
    return M("net.resolve");
  case CURLE_RECV_ERROR:
  case CURLE_SEND_ERROR:
  case CURLE_GOT_NOTHING:
    return M("net.broken");
  default: {
    char num[16];
    snprintf(num, sizeof(num), "%d", (int)cc);
    const char *one[1] = {"1"}, *v[1] = {num};
    return msgcat_fill(M("net.other"), one, v, 1, other, sizeof(other));
  }
  }
}

/* One HTTP exchange with the gateway: the body lands in `body`, the status
 * in `status`. Returns 0, or EXIT_UNREACHABLE after saying why (unless
 * `quiet`). */
static int perform(const ctl_t *ctl, const char *method, const char *path, const json_t *body_in,
                   long timeout_s, buf_t *body, long *status, bool quiet) {
  char url[1024];
  snprintf(url, sizeof(url), "%s%s", ctl->url, path);
  CURL *h = curl_easy_init();
  if (!h)
    return EXIT_NO;
  struct curl_slist *hdrs = NULL;
  const char *token = getenv("SITECTL_TOKEN");
  if (token && *token) {
    char auth[256];
    snprintf(auth, sizeof(auth), "Authorization: Bearer %s", token);
    hdrs = curl_slist_append(hdrs, auth);
  }
  char *payload = NULL;
  if (body_in) {
    payload = json_dumps(body_in, JSON_COMPACT);
    hdrs = curl_slist_append(hdrs, "Content-Type: application/json");
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, payload ? payload : "");
  }
  curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
  curl_easy_setopt(h, CURLOPT_URL, url);
  curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
  curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(h, CURLOPT_WRITEDATA, body);
  curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, 5L);
  curl_easy_setopt(h, CURLOPT_TIMEOUT, timeout_s);
  curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
  CURLcode cc = curl_easy_perform(h);
  *status = 0;
  curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, status);
  curl_slist_free_all(hdrs);
  curl_easy_cleanup(h);
  free(payload);
  if (cc != CURLE_OK) {
    words.tried = true; /* no catalogue to fetch from a gateway that is not there */
    if (!quiet)
      say(stderr, "ctl.unreachable", "url", ctl->url, "why", curl_why(cc), NULL);
    return EXIT_UNREACHABLE;
  }
  return 0;
}

/* "err.<code>" of one refusal (or of one bad line: {"code", "args"}) with
 * its args as {1}, {2}, ...; the args' errno named by "sys" said as the
 * catalogue's "sys.<code>". False for a code this catalogue does not know. */
static bool one_refusal(const json_t *j, char *out, size_t len) {
  const char *ecode = json_string_value(json_object_get(j, "code"));
  char key[80];
  snprintf(key, sizeof(key), "err.%s", ecode ? ecode : "");
  const char *tmpl = ecode ? M(key) : key;
  if (tmpl == key || strcmp(tmpl, key) == 0)
    return false;
  json_t *args = json_object_get(j, "args");
  const char *names[9] = {"1", "2", "3", "4", "5", "6", "7", "8", "9"}, *values[9];
  size_t n = 0;
  for (; n < 9 && n < json_array_size(args); n++)
    values[n] = json_string_value(json_array_get(args, n));
  json_t *sys = json_object_get(j, "sys");
  json_int_t at = json_integer_value(json_object_get(sys, "arg"));
  char skey[48], errno_s[24], sys_text[160];
  if (sys && at >= 1 && (size_t)at <= n) {
    snprintf(skey, sizeof(skey), "sys.%s", json_string_value(json_object_get(sys, "code")));
    snprintf(errno_s, sizeof(errno_s), "%" JSON_INTEGER_FORMAT,
             json_integer_value(json_object_get(sys, "errno")));
    const char *st = M(skey);
    if (strcmp(st, skey) == 0)
      st = M("sys.other");
    const char *one[1] = {"1"}, *num[1] = {errno_s};
    values[at - 1] = msgcat_fill(st, one, num, 1, sys_text, sizeof(sys_text));
  }
  msgcat_fill(tmpl, names, values, n, out, len);
  return true;
}

/* The refusal in the person's language (protocol/HTTP.md "Errors"): a
 * register CSV's bad lines one per line ("lines", "more" beyond them). */
static bool refusal_text(const json_t *j, char *out, size_t len) {
  json_t *lines = json_object_get(j, "lines");
  if (json_array_size(lines) == 0)
    return one_refusal(j, out, len);
  size_t used = 0;
  out[0] = '\0';
  for (size_t i = 0; i < json_array_size(lines) && used + 1 < len; i++) {
    json_t *l = json_array_get(lines, i);
    char one[1024], ls[24], ms[24];
    if (!one_refusal(l, one, sizeof(one)))
      return false;
    json_int_t more =
        i + 1 == json_array_size(lines) ? json_integer_value(json_object_get(j, "more")) : 0;
    snprintf(ls, sizeof(ls), "%" JSON_INTEGER_FORMAT,
             json_integer_value(json_object_get(l, "line")));
    snprintf(ms, sizeof(ms), "%" JSON_INTEGER_FORMAT, more);
    const char *ln[3] = {"line", "text", "more"}, *lv[3] = {ls, one, ms};
    char row[1200];
    msgcat_fill(M(more > 0 ? "err.at_line_more" : "err.at_line"), ln, lv, 3, row, sizeof(row));
    used += (size_t)snprintf(out + used, len - used, "%s%s", i ? "\n" : "", row);
    if (used >= len)
      used = len - 1;
  }
  return true;
}

/* The gateway's {"error": "..."} for a refused request: EXIT_NO after
 * printing it, or EXIT_UNREACHABLE when the answer is not the gateway's. */
static int said_no(const ctl_t *ctl, const buf_t *body, long status) {
  if (status == 401) {
    /* The gateway cannot tell a wrong token from none; sitectl can. */
    const char *token = getenv("SITECTL_TOKEN");
    say(stderr, token && *token ? "ctl.token_refused" : "ctl.token_needed", NULL);
    return EXIT_NO;
  }
  json_t *j = body->p ? json_loads(body->p, 0, NULL) : NULL;
  const char *msg = json_string_value(json_object_get(j, "error"));
  /* The refusal in the person's language: the catalogue's "err.<code>"
   * with the gateway's args as {1}, {2}, ...; the gateway's English only
   * for a code this catalogue does not know (an older sitectl). */
  char text[4096];
  if (refusal_text(j, text, sizeof(text)))
    msg = text;
  char code[16];
  snprintf(code, sizeof(code), "%ld", status);
  if (j)
    say(stderr, "ctl.said_no", "why", msg ? msg : M("ctl.no_reason"), NULL);
  else
    say(stderr, "ctl.not_json", "url", ctl->url, "status", code, NULL);
  json_decref(j);
  return j ? EXIT_NO : EXIT_UNREACHABLE;
}

int api_get_quiet(const ctl_t *ctl, const char *path, json_t **out) {
  buf_t body = {0};
  long status;
  *out = NULL;
  int rc = perform(ctl, "GET", path, NULL, 10L, &body, &status, true);
  if (rc == 0 && (status != 200 || !body.p || !(*out = json_loads(body.p, 0, NULL))))
    rc = EXIT_NO;
  free(body.p);
  return rc;
}

int api_get(const ctl_t *ctl, const char *path, json_t **out) {
  return api_request(ctl, "GET", path, NULL, out);
}

int api_request(const ctl_t *ctl, const char *method, const char *path, const json_t *body_in,
                json_t **out) {
  buf_t body = {0};
  long status;
  *out = NULL;
  int rc = perform(ctl, method, path, body_in, 60L, &body, &status, false);
  if (rc == 0 && status >= 400) {
    rc = said_no(ctl, &body, status);
  } else if (rc == 0 && (!body.p || !(*out = json_loads(body.p, 0, NULL)))) {
    char code[16];
    snprintf(code, sizeof(code), "%ld", status);
    say(stderr, "ctl.not_json", "url", ctl->url, "status", code, NULL);
    rc = EXIT_UNREACHABLE;
  }
  free(body.p);
  return rc;
}

int api_get_text(const ctl_t *ctl, const char *path, char **out, size_t *len) {
  buf_t body = {0};
  long status;
  *out = NULL;
  *len = 0;
  int rc = perform(ctl, "GET", path, NULL, 120L, &body, &status, false);
  if (rc == 0 && status != 200)
    rc = said_no(ctl, &body, status);
  if (rc == 0) {
    *out = body.p;
    *len = body.len;
  } else {
    free(body.p);
  }
  return rc;
}

void print_json(const json_t *j) {
  char *s = json_dumps(j, JSON_INDENT(2) | JSON_REAL_PRECISION(SG_JSON_DIGITS));
  if (s)
    printf("%s\n", s);
  free(s);
}

bool json_answer(const ctl_t *ctl, json_t *j) {
  if (!ctl->json)
    return false;
  print_json(j);
  json_decref(j);
  return true;
}

/* ---- times */
void use_site_zone(const ctl_t *ctl) {
  if (ctl->timezone[0]) {
    setenv("TZ", ctl->timezone, 1);
    tzset();
  }
}

const char *fmt_time(double t, char *buf, size_t cap) {
  if (t <= 0)
    return "-";
  time_t s = (time_t)t;
  struct tm tm;
  localtime_r(&s, &tm);
  strftime(buf, cap, "%Y-%m-%d %H:%M:%S", &tm);
  return buf;
}

/* ---- aligned tables: cells are UTF-8, widths count display columns so
 * Chinese names line up. */

static int display_width(const char *s) {
  mbstate_t st;
  memset(&st, 0, sizeof(st));
  int w = 0;
  wchar_t wc;
  size_t n;
  while ((n = mbrtowc(&wc, s, MB_CUR_MAX, &st)) != 0 && n != (size_t)-1 && n != (size_t)-2) {
    int cw = wcwidth(wc);
    w += cw > 0 ? cw : 0;
    s += n;
  }
  return w;
}

void table_row(table_t *t, ...) {
  va_list ap;
  va_start(ap, t);
  if (t->nrows == t->cap) {
    t->cap = t->cap ? t->cap * 2 : 64;
    t->cells = realloc(t->cells, t->cap * t->ncols * sizeof(char *));
  }
  for (size_t c = 0; c < t->ncols; c++) {
    const char *s = va_arg(ap, const char *);
    t->cells[t->nrows * t->ncols + c] = strdup(s ? s : "");
  }
  va_end(ap);
  t->nrows++;
}

void table_discard(table_t *t) {
  for (size_t i = 0; i < t->nrows * t->ncols; i++)
    free(t->cells[i]);
  free(t->cells);
  t->cells = NULL;
  t->nrows = t->cap = 0;
}

void table_print(table_t *t) {
  int width[TBL_MAX_COLS] = {0};
  for (size_t i = 0; i < t->nrows * t->ncols; i++) {
    int w = display_width(t->cells[i]);
    if (w > width[i % t->ncols])
      width[i % t->ncols] = w;
  }
  for (size_t r = 0; r < t->nrows; r++) {
    for (size_t c = 0; c < t->ncols; c++) {
      const char *s = t->cells[r * t->ncols + c];
      int pad = width[c] - display_width(s);
      bool last = c + 1 == t->ncols;
      if (t->right[c])
        printf("%*s%s%s", pad, "", s, last ? "" : "  ");
      else
        printf("%s%*s", s, last ? 0 : pad + 2, "");
    }
    printf("\n");
  }
  for (size_t i = 0; i < t->nrows * t->ncols; i++)
    free(t->cells[i]);
  free(t->cells);
}

/* One decimal for every figure, so that a column reads alike ("1.0" beside
 * "1.5", "609.1" beside "37.1"); beyond a million, whole numbers. */
const char *fmt_num(double v, char *buf, size_t cap) {
  if (!isfinite(v))
    return "-";
  if (fabs(v) >= 1e6)
    snprintf(buf, cap, "%.0f", v);
  else
    snprintf(buf, cap, "%.1f", v);
  return buf;
}

const char *unit_shown(const char *senml) {
  static const char *const map[][2] = {{"ug/m3", "µg/m³"}, {"Cel", "°C"}, {"deg", "°"},
                                       {"%RH", "%"},       {"l", "L"},    {"1/m", "m⁻¹"}};
  for (size_t i = 0; senml && i < sizeof(map) / sizeof(map[0]); i++)
    if (strcmp(senml, map[i][0]) == 0)
      return map[i][1];
  return senml ? senml : "";
}

const char *fmt_int(const json_t *o, const char *key, char *buf, size_t cap) {
  snprintf(buf, cap, "%lld", (long long)json_integer_value(json_object_get(o, key)));
  return buf;
}

int fetch_zone(ctl_t *ctl) {
  json_t *st;
  int rc = fetch_status(ctl, &st);
  json_decref(st);
  return rc;
}

int fetch_status(ctl_t *ctl, json_t **st) {
  int rc = api_get(ctl, "/api/status", st);
  if (rc == 0) {
    const char *tz = json_string_value(json_object_get(json_object_get(*st, "site"), "timezone"));
    snprintf(ctl->timezone, sizeof(ctl->timezone), "%s", tz ? tz : "");
    use_site_zone(ctl);
  }
  return rc;
}

int url_escape(const char *in, char *out, size_t cap) {
  char *e = curl_easy_escape(NULL, in, 0);
  if (!e)
    return -ENOMEM;
  snprintf(out, cap, "%s", e);
  curl_free(e);
  return 0;
}
