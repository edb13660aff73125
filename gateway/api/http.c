/* The local HTTP API (DESIGN.md "Manager interface"): JSON for sitectl and
 * the dashboard.
 *
 * libmicrohttpd runs it on a pool of HTTP_THREADS threads of its own, so a
 * slow query never stalls the CoAP loop, and one slow request (an action
 * waiting for its commit or fsync, an acknowledgement waiting up to 30 s,
 * a call onto a busy loop) never stalls the others: each pool thread
 * accepts new connections while another is blocked. A handler may run on
 * any of them at the same time as another handler, so handlers keep their
 * state on the stack or in the request: no statics. Storage read
 * connections are single-thread (storage.h), so a request borrows one from
 * a small pool for its duration (reader_take). The loop's live figures
 * (counters, last-seen times) are atomics; storage statistics come from
 * stor_get_stats, which is thread-safe; loop-owned state is reached through
 * gw_call_on_loop, which takes any number of waiters. Reading needs nothing
 * on loopback; a non-loopback bind needs [http] token (checked at start-up).
 *
 * A keep-alive connection stays with the pool thread that accepted it: its
 * next request waits if that thread is blocked. sitectl and curl open a
 * connection per request; the dashboard's browser may open another.
 *
 * The site LAN is hostile (issue 13): libmicrohttpd's CONNECTION_TIMEOUT is
 * one of inactivity, which every byte restarts, so 200 sockets sending a
 * header byte a second held every connection. A watchdog thread cuts a
 * connection whose headers take longer than HTTP_HEADERS_S, or whose body
 * longer than HTTP_BODY_S (shutdown(2): libmicrohttpd sees the stream end
 * and closes it itself); one address may hold HTTP_PER_IP_MAX connections.
 * Off loopback every read needs the token as actions do, and a Host that is
 * not this gateway is 421 (DNS rebinding). Each refusal is counted. */
#define LOG_MODULE "http"

#include "common/msgcat.h"
#include "gateway/api/api.h"
#include "gateway/coap/coap.h"
#include "gateway/uplink/uplink.h"
#include "gateway/waste/waste.h"
#include <arpa/inet.h>
#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <microhttpd.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>

#define SITEGATE_VERSION "0.1.0"
#define READINGS_LIMIT_DEFAULT 10000
#define READINGS_LIMIT_MAX 100000

/* libmicrohttpd's threads: one blocked request leaves the others three.
 * Each may hold a storage read connection (512 KiB of page cache) while it
 * answers, so the pool is small; readers are opened when first needed. */
#define HTTP_THREADS 4
/* A streamed answer (/api/status) is made this many bytes at a time. */
#define HTTP_STREAM_BLOCK (16 * 1024)

/* Slow clients (above): a request's headers must arrive within
 * HTTP_HEADERS_S of the connection (or of its previous answer), its body
 * within HTTP_BODY_S of its headers. Apache's mod_reqtimeout defaults are
 * 20-40 s for headers at 500 bytes/s; ours are a few hundred bytes from
 * the same site, so 10 s is generous. */
#define HTTP_HEADERS_S 10
#define HTTP_BODY_S 30
#define HTTP_CONN_MAX 256  /* connections in all */
#define HTTP_PER_IP_MAX 16 /* from one address: a browser opens at most 6 */

typedef enum { PHASE_HEADERS, PHASE_BODY, PHASE_HANDLING } phase_t;

/* One open connection, as the watchdog sees it (under http_api.tmu). */
typedef struct track {
  struct track *prev, *next;
  int fd;
  uint64_t since_ms; /* when the current phase began */
  phase_t phase;
  bool cut;
} track_t;

struct http_api {
  gw_t *gw;
  struct MHD_Daemon *mhd;
  /* under mu: read connections not lent to a request */
  pthread_mutex_t mu;
  pthread_cond_t cv;
  stor_reader_t *idle[HTTP_THREADS];
  size_t n_idle, n_open;
  /* under tmu: open connections, and the watchdog that cuts slow ones */
  pthread_mutex_t tmu;
  pthread_cond_t tcv;
  track_t *tracks;
  bool stopping, watching;
  pthread_t watch;
  uint64_t cut_logged_ms, cut_unlogged;
};

/* Lends a read connection to the calling thread until reader_give(); opens
 * one when none is idle and fewer than HTTP_THREADS are open. A thread
 * answers one request at a time, so waiting here is for a slow open only.
 * Returns 0 or the negative errno of stor_reader_open. */
static int reader_take(struct http_api *h, stor_reader_t **out) {
  int rc = 0;
  pthread_mutex_lock(&h->mu);
  while (h->n_idle == 0 && h->n_open == HTTP_THREADS)
    pthread_cond_wait(&h->cv, &h->mu);
  if (h->n_idle > 0) {
    *out = h->idle[--h->n_idle];
    pthread_mutex_unlock(&h->mu);
    return 0;
  }
  h->n_open++;
  pthread_mutex_unlock(&h->mu);
  rc = stor_reader_open(h->gw->cfg->db_path, out); /* outside mu: it reads the file */
  if (rc != 0) {
    pthread_mutex_lock(&h->mu);
    h->n_open--;
    pthread_cond_signal(&h->cv);
    pthread_mutex_unlock(&h->mu);
  }
  return rc;
}

static void reader_give(struct http_api *h, stor_reader_t *r) {
  /* An idle reader keeps no cache: four of them held 2 MB between the
   * requests (a dashboard's poll reads its pages again from the kernel's
   * page cache, a fraction of a millisecond). */
  stor_reader_trim(r);
  pthread_mutex_lock(&h->mu);
  assert(h->n_idle < HTTP_THREADS);
  h->idle[h->n_idle++] = r;
  pthread_cond_signal(&h->cv);
  pthread_mutex_unlock(&h->mu);
}

const char *api_error_code(api_err_t e) {
  static const char *const codes[] = {
#define X(e, s) s,
      API_ERROR_MAP(X)
#undef X
  };
  return (int)e >= 0 && e < API_ERR_COUNT ? codes[e] : "?";
}

/* Text a person may have sent (a Host header) need not be UTF-8. */
static json_t *text_or_mark(const char *s) {
  json_t *j = json_string(s);
  return j ? j : json_string("?");
}

static void arg_put(void *arg, const char *val) { json_array_append_new(arg, text_or_mark(val)); }

/* The values of `fmt`'s conversions, each formatted alone, in order. */
static json_t *error_args(const char *fmt, va_list ap) {
  json_t *args = json_array();
  if (args)
    proto_fmt_values(fmt, ap, arg_put, args);
  return args;
}

void http_error(http_resp_t *resp, unsigned status, api_err_t code, const char *fmt, ...) {
  char msg[512];
  va_list ap, ap2;
  va_start(ap, fmt);
  va_copy(ap2, ap);
  vsnprintf(msg, sizeof(msg), fmt, ap);
  va_end(ap);
  json_t *args = error_args(fmt, ap2);
  va_end(ap2);
  json_decref(resp->json);
  resp->status = status;
  resp->json = json_pack("{s:o,s:s,s:o}", "error", text_or_mark(msg), "code", api_error_code(code),
                         "args", args ? args : json_array());
}

const char *http_sys_name(int e) { return msgcat_errno_name(e); }

void http_error_sys(http_resp_t *resp, int rc) {
  json_t *args = json_object_get(resp->json, "args");
  if (!json_is_array(args) || json_array_size(args) == 0)
    return;
  json_object_set_new(resp->json, "sys",
                      json_pack("{s:I,s:s,s:I}", "arg", (json_int_t)json_array_size(args), "code",
                                http_sys_name(rc), "errno", (json_int_t)(rc < 0 ? -rc : rc)));
}

void http_error_why(http_resp_t *resp, unsigned status, const char *message) {
  const proto_why_t *w = proto_why();
  json_t *args = json_array();
  for (int i = 0; args && i < w->nargs; i++)
    json_array_append_new(args, text_or_mark(w->args[i]));
  json_decref(resp->json);
  resp->status = status;
  resp->json = json_pack("{s:o,s:s,s:o}", "error", text_or_mark(message), "code",
                         proto_why_name(w->code), "args", args ? args : json_array());
  if (resp->json && w->line > 0) {
    json_object_set_new(resp->json, "line", json_integer(w->line));
    json_object_set_new(resp->json, "more", json_integer(w->more));
    const proto_why_t *l;
    int n = proto_why_lines(&l);
    json_t *lines = json_array();
    for (int i = 0; lines && i < n; i++) {
      json_t *la = json_array();
      for (int k = 0; la && k < l[i].nargs; k++)
        json_array_append_new(la, text_or_mark(l[i].args[k]));
      json_array_append_new(lines,
                            json_pack("{s:i,s:s,s:o}", "line", l[i].line, "code",
                                      proto_why_name(l[i].code), "args", la ? la : json_array()));
    }
    if (lines) /* every bad line listed, "more" beyond them */
      json_object_set_new(resp->json, "lines", lines);
    json_object_set_new(resp->json, "more", json_integer(w->more - (n > 0 ? n - 1 : 0)));
  }
  if (resp->json && w->code == PROTO_WHY_NONE) /* err.detail: {1} is the sentence */
    json_array_append_new(json_object_get(resp->json, "args"), text_or_mark(message));
}

const char *http_query(const http_req_t *req, const char *name) {
  return MHD_lookup_connection_value(req->conn, MHD_GET_ARGUMENT_KIND, name);
}

int http_query_time(const http_req_t *req, const char *name, double def, double *out) {
  const char *v = http_query(req, name);
  if (!v || !*v) {
    *out = def;
    return 0;
  }
  char *end;
  double t = strtod(v, &end);
  if (*end != '\0' || !isfinite(t) || t < 0 || t > 4102444800.0) /* 2100-01-01 */
    return -EINVAL;
  *out = t;
  return 0;
}

/* The latest value of each series, gathered flat and sorted by device so
 * that /api/status can stream one device at a time: a site of 10,000
 * devices must not build its 2.5 MB answer in memory, let alone a JSON tree
 * of it (the gateway's RSS target is 32 MB). */
typedef struct latest_row {
  size_t dev; /* index in cfg->devices */
  int quantity;
  int64_t t_ms;
  double value;
} latest_row_t;

typedef struct latest_set {
  const sg_config_t *cfg;
  latest_row_t *rows;
  size_t n, cap;
  bool unsorted; /* a row came before the one it follows */
} latest_set_t;

static int cmp_latest(const void *a, const void *b) {
  const latest_row_t *x = a, *y = b;
  if (x->dev != y->dev)
    return x->dev < y->dev ? -1 : 1;
  return x->quantity - y->quantity;
}

static int on_latest(void *arg, const char *device, int quantity, int64_t t_ms, double value) {
  latest_set_t *ls = arg;
  const sg_device_t *d = sg_config_device(ls->cfg, device);
  if (!d || !proto_quantity_name(quantity))
    return 0; /* a device no longer configured */
  if (ls->n == ls->cap) {
    size_t cap = ls->cap ? ls->cap * 2 : 256;
    latest_row_t *r = realloc(ls->rows, cap * sizeof(*r));
    if (!r)
      return 1;
    ls->rows = r;
    ls->cap = cap;
  }
  ls->rows[ls->n] = (latest_row_t){(size_t)(d - ls->cfg->devices), quantity, t_ms, value};
  if (ls->n && cmp_latest(&ls->rows[ls->n - 1], &ls->rows[ls->n]) > 0)
    ls->unsorted = true;
  ls->n++;
  return 0;
}

/* One device of /api/status at most: its id, type and counters, every
 * refusal reason and every quantity (each value at most 25 bytes). */
#define STATUS_DEVICE_MAX (256 + SG_ID_MAX + GW_REJECT_COUNT * 48 + PROTO_Q_COUNT * (32 + 2 * 25))

/* /api/status as it is sent: the head (gateway and storage, made when the
 * request came), then one device after another, each made when the
 * connection can take it, then "]}". `piece` is the text made but not yet
 * sent (the head first, then dev_text). */
typedef struct status_stream {
  gw_t *gw;
  double now;
  latest_set_t ls;
  size_t dev, r; /* the next device, and its first row in ls */
  char *head;    /* malloc'ed */
  const char *piece;
  size_t piece_len, piece_off;
  bool ended; /* "]}" made */
  char dev_text[STATUS_DEVICE_MAX];
} status_stream_t;

static void status_stream_free(void *arg) {
  status_stream_t *s = arg;
  free(s->ls.rows);
  free(s->head);
  free(s);
}

/* Appends to a device's text (sized for the worst case, STATUS_DEVICE_MAX;
 * *n past the end says it was not). */
__attribute__((format(printf, 3, 4))) static void put(char *buf, size_t *n, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  size_t room = *n < STATUS_DEVICE_MAX ? STATUS_DEVICE_MAX - *n : 0;
  int k = vsnprintf(buf + *n, room, fmt, ap);
  va_end(ap);
  *n += k > 0 ? (size_t)k : 0;
}

/* A number as jansson writes a real with JSON_REAL_PRECISION(SG_JSON_DIGITS) (".0"
 * after an integral one), or null. */
static void put_real(char *buf, size_t *n, double v) {
  if (!isfinite(v)) {
    put(buf, n, "null");
    return;
  }
  char num[32];
  snprintf(num, sizeof(num), "%.*g", SG_JSON_DIGITS, v);
  put(buf, n, "%s%s", num, strpbrk(num, ".e") ? "" : ".0");
}

static void put_time(char *buf, size_t *n, int64_t ms) {
  if (ms)
    put_real(buf, n, (double)ms / 1000.0);
  else
    put(buf, n, "null");
}

/* The next device's object, with a leading comma after the first, written
 * with snprintf (ids and names are [A-Za-z0-9._-]: nothing to escape): as
 * a jansson tree it cost a bench's /api/status polls 15-30 s of CPU. The
 * length, or 0 when it did not fit. */
static size_t status_device(status_stream_t *s) {
  gw_t *gw = s->gw;
  size_t i = s->dev++, n = 0;
  char *b = s->dev_text;
  const gw_device_t *d = &gw->devices[i];
  put(b, &n, "%s{\"id\":\"%s\",\"type\":\"%s\",\"interval_s\":%d,\"last_seen\":", i ? "," : "",
      d->conf->id, sg_devtype_name(d->conf->type), d->conf->interval_s);
  put_time(b, &n, atomic_load(&d->last_ms));
  put(b, &n, ",\"online\":%s,\"packs\":%" PRIu64 ",\"records\":%" PRIu64 ",\"rejects\":%" PRIu64,
      gw_device_online(gw, d, s->now) ? "true" : "false", (uint64_t)atomic_load(&d->packs),
      (uint64_t)atomic_load(&d->records), (uint64_t)atomic_load(&d->rejects));
  put(b, &n, ",\"reject_reasons\":{"); /* those that happened */
  const char *sep = "";
  for (int k = 0; k < GW_REJECT_COUNT; k++) {
    uint64_t c = gw_device_rejects_by(d, k);
    if (c) {
      put(b, &n, "%s\"%s\":%" PRIu64, sep, gw_reject_name(k), c);
      sep = ",";
    }
  }
  put(b, &n, "},\"latest\":{");
  sep = "";
  for (; s->r < s->ls.n && s->ls.rows[s->r].dev == i; s->r++) {
    const latest_row_t *l = &s->ls.rows[s->r];
    put(b, &n, "%s\"%s\":{\"t\":", sep, proto_quantity_name(l->quantity));
    put_time(b, &n, l->t_ms);
    put(b, &n, ",\"v\":");
    put_real(b, &n, l->value);
    put(b, &n, "}");
    sep = ",";
  }
  put(b, &n, "}}");
  return n < STATUS_DEVICE_MAX ? n : 0;
}

/* libmicrohttpd's content reader: fills `buf` with what comes next. */
static ssize_t status_read(void *arg, uint64_t pos, char *buf, size_t max) {
  (void)pos;
  status_stream_t *s = arg;
  size_t put = 0;
  while (put < max) {
    if (s->piece_off == s->piece_len) {
      s->piece_off = s->piece_len = 0;
      if (s->dev < s->gw->cfg->n_devices) {
        s->piece = s->dev_text;
        s->piece_len = status_device(s);
        if (!s->piece_len)
          return MHD_CONTENT_READER_END_WITH_ERROR; /* STATUS_DEVICE_MAX is wrong */
      } else if (!s->ended) {
        s->piece = "]}";
        s->piece_len = 2;
        s->ended = true;
      } else
        break;
    }
    size_t n = s->piece_len - s->piece_off;
    if (n > max - put)
      n = max - put;
    memcpy(buf + put, s->piece + s->piece_off, n);
    s->piece_off += n;
    put += n;
  }
  return put ? (ssize_t)put : MHD_CONTENT_READER_END_OF_STREAM;
}

static void api_status(const http_req_t *req, http_resp_t *resp) {
  gw_t *gw = req->gw;
  const sg_config_t *cfg = gw->cfg;
  status_stream_t *s = calloc(1, sizeof(*s));
  if (!s) {
    http_error(resp, 503, API_ERR_NO_MEMORY, "out of memory");
    return;
  }
  s->gw = gw;
  s->now = sg_now();
  s->ls.cfg = cfg;
  stor_stats_t st;
  stor_get_stats(gw->db, &st);
  int64_t raw_rows = -1, db_bytes = -1;
  stor_reader_counts(req->reader, &raw_rows, &db_bytes);
  stor_latest(req->reader, on_latest, &s->ls);
  /* stor_latest gives them by device name, the order of cfg->devices when
   * both compare bytes: then no sort (glibc's takes a copy of the rows). */
  if (s->ls.unsorted)
    qsort(s->ls.rows, s->ls.n, sizeof(*s->ls.rows), cmp_latest);

  double now = s->now;
  size_t online = gw_devices_online(gw, now);
  json_t *rejects = json_object();
  for (int i = 0; i < GW_REJECT_COUNT; i++)
    json_object_set_new(rejects, gw_reject_name(i),
                        json_integer((json_int_t)atomic_load(&gw->counters.rejects[i])));
  json_t *head = json_pack(
      "{s:{s:s,s:s,s:s},s:s,s:f,s:f,s:f,s:{s:I,s:I,s:o},"
      "s:{s:I,s:I,s:I,s:I,s:I,s:f,s:b,s:I,s:I},s:I,s:I}",
      "site", "id", cfg->site_id, "name", cfg->site_name, "timezone", cfg->timezone, "version",
      SITEGATE_VERSION, "now", now, "started", gw->started, "uptime_s", now - gw->started, "ingest",
      "requests", (json_int_t)atomic_load(&gw->counters.requests), "records",
      (json_int_t)atomic_load(&gw->counters.records), "rejects", rejects, "storage", "queued",
      (json_int_t)st.queued, "queue_max", (json_int_t)st.queue_max, "committed",
      (json_int_t)st.committed, "duplicates", (json_int_t)st.duplicates, "batches",
      (json_int_t)st.batches, "last_commit_ms", st.last_commit_ms, "disk_full", st.disk_full,
      "raw_readings", (json_int_t)raw_rows, "db_bytes", (json_int_t)db_bytes, "devices_total",
      (json_int_t)cfg->n_devices, "devices_online", (json_int_t)online);
  json_object_set_new(head, "loop_lag_max_ms",
                      json_integer((json_int_t)atomic_load(&gw->lag_max_ms)));
  const gw_counters_t *c = &gw->counters;
  json_object_set_new(
      head, "dtls",
      json_pack("{s:I,s:I,s:I,s:I,s:I,s:i}", "begun", (json_int_t)atomic_load(&c->dtls_begun),
                "completed", (json_int_t)atomic_load(&c->dtls_completed), "abandoned",
                (json_int_t)atomic_load(&c->dtls_abandoned), "failed",
                (json_int_t)atomic_load(&c->dtls_failed), "pending",
                (json_int_t)atomic_load(&c->dtls_pending), "pending_max", GW_DTLS_MAX_HANDSHAKES));
  char *head_text = json_dumps(head, JSON_COMPACT | JSON_REAL_PRECISION(SG_JSON_DIGITS));
  json_decref(head);
  /* {...head...,"devices":[ then the devices, then ]} */
  size_t n = head_text ? strlen(head_text) : 0;
  s->head = n ? malloc(n + sizeof(",\"devices\":[")) : NULL;
  if (!s->head) {
    free(head_text);
    status_stream_free(s);
    http_error(resp, 503, API_ERR_NO_MEMORY, "out of memory");
    return;
  }
  memcpy(s->head, head_text, n - 1);
  memcpy(s->head + n - 1, ",\"devices\":[", sizeof(",\"devices\":["));
  s->piece = s->head;
  s->piece_len = strlen(s->head);
  free(head_text);
  resp->stream = status_read;
  resp->stream_arg = s;
  resp->stream_free = status_stream_free;
  resp->content_type = "application/json; charset=utf-8";
}

static void api_readings(const http_req_t *req, http_resp_t *resp) {
  static const char *const step_names[] = {"raw", "1m", "1h", "1d"};
  const char *device = http_query(req, "device");
  const char *qname = http_query(req, "quantity");
  const char *sname = http_query(req, "step");
  const char *lname = http_query(req, "limit");
  if (!device || !*device || !qname || !*qname) {
    http_error(resp, 400, API_ERR_READINGS_ARGS,
               "device and quantity are required, e.g. ?device=dust-01&quantity=pm10");
    return;
  }
  if (!gw_device_find(req->gw, device)) {
    http_error(resp, 404, API_ERR_UNKNOWN_DEVICE, "unknown device \"%s\"", device);
    return;
  }
  int q = proto_quantity_from_name(qname);
  if (q < 0) {
    http_error(resp, 400, API_ERR_UNKNOWN_QUANTITY, "unknown quantity \"%s\"", qname);
    return;
  }
  stor_step_t step = STOR_STEP_RAW;
  if (sname && *sname) {
    size_t i = 0;
    while (i < 4 && strcmp(sname, step_names[i]) != 0)
      i++;
    if (i == 4) {
      http_error(resp, 400, API_ERR_STEP_ARG, "step \"%s\" is not one of raw, 1m, 1h, 1d", sname);
      return;
    }
    step = (stor_step_t)i;
  }
  long limit = READINGS_LIMIT_DEFAULT;
  if (lname) {
    char *end;
    limit = strtol(lname, &end, 10);
    if (*end || limit < 1 || limit > READINGS_LIMIT_MAX) {
      http_error(resp, 400, API_ERR_LIMIT_ARG, "limit must be 1..%d", READINGS_LIMIT_MAX);
      return;
    }
  }
  double now = sg_now(), since, until;
  if (http_query_time(req, "since", now - 3600.0, &since) ||
      http_query_time(req, "until", now + 1.0, &until)) {
    http_error(resp, 400, API_ERR_SINCE_UNTIL_ARG, "since and until are Unix seconds");
    return;
  }
  if (until <= since) {
    http_error(resp, 400, API_ERR_UNTIL_BEFORE, "until must be later than since");
    return;
  }

  stor_point_t *pts = NULL;
  size_t n = 0;
  int rc = stor_query(req->reader, device, q, step, (int64_t)(since * 1000.0),
                      (int64_t)(until * 1000.0), (size_t)limit, &pts, &n);
  if (rc == -ENOENT)
    n = 0; /* configured but never stored anything */
  else if (rc != 0) {
    http_error(resp, 503, API_ERR_DB_QUERY, "database query failed: %s", strerror(-rc));
    http_error_sys(resp, -rc);
    return;
  }
  json_t *points = json_array();
  for (size_t i = 0; i < n; i++) {
    json_t *p = step == STOR_STEP_RAW
                    ? json_pack("{s:f,s:f}", "t", pts[i].t_ms / 1000.0, "v", pts[i].mean)
                    : json_pack("{s:f,s:I,s:f,s:f,s:f}", "t", pts[i].t_ms / 1000.0, "n",
                                (json_int_t)pts[i].n, "min", pts[i].min, "max", pts[i].max, "mean",
                                pts[i].mean);
    json_array_append_new(points, p);
  }
  free(pts);
  resp->json = json_pack("{s:s,s:s,s:s,s:s,s:f,s:f,s:b,s:o}", "device", device, "quantity", qname,
                         "unit", proto_quantity_unit(q), "step", step_names[step], "since", since,
                         "until", until, "truncated", n == (size_t)limit, "points", points);
}

/* The endpoints. `prefix` routes match every path that starts with `path`
 * and pass the rest as req->tail; `action` routes change something and need
 * the [http] token (DESIGN.md: reading on loopback needs nothing). */
static const struct route {
  const char *method;
  const char *path;
  bool prefix, action;
  http_handler_t handler;
} routes[] = {
    {"GET", "/api/status", false, false, api_status},
    {"GET", "/api/readings", false, false, api_readings},
    {"GET", "/api/alarms", false, false, api_alarms},
    {"GET", "/api/alarms/", true, false, api_alarm_detail},
    {"POST", "/api/alarms/", true, true, api_alarm_ack},
    {"GET", "/api/noise", false, false, api_noise},
    {"GET", "/api/dust", false, false, api_dust},
    /* waste and material ledger (api_waste.c) */
    {"GET", "/api/waste/summary", false, false, api_waste_summary},
    {"GET", "/api/waste/tickets", false, false, api_waste_tickets},
    {"POST", "/api/waste/tickets", false, true, api_waste_add},
    {"POST", "/api/waste/corrections", false, true, api_waste_correct},
    {"GET", "/api/waste/verify", false, false, api_waste_verify},
    {"GET", "/api/waste/disclosure", false, false, api_waste_disclosure},
    {"GET", "/api/materials/summary", false, false, api_materials_summary},
    {"PUT", "/api/materials/boq", false, true, api_materials_boq},
    {"GET", "/api/site/progress", false, false, api_site_progress_get},
    {"PUT", "/api/site/progress", false, true, api_site_progress_put},
    /* equipment energy, group control and carbon (api_equipment.c) */
    {"GET", "/api/equipment", false, false, api_equipment},
    {"GET", "/api/equipment/log", false, false, api_equipment_log},
    {"POST", "/api/equipment/", true, true, api_equipment_override},
    {"GET", "/api/energy", false, false, api_energy},
    {"GET", "/api/carbon", false, false, api_carbon},
    {"GET", "/api/machinery", false, false, api_machinery},
    {"GET", "/api/machinery/", true, false, api_machine_detail},
    {"POST", "/api/machinery", false, true, api_machine_add},
    {"POST", "/api/machinery/", true, true, api_machine_action},
    /* the uplink to the authority and its outbox (uplink.c) */
    {"GET", "/api/uplink", false, false, api_uplink},
    /* Prometheus metrics (api_metrics.c), the monthly report (report.c) */
    {"GET", "/metrics", false, false, api_metrics},
    {"GET", "/api/report", false, false, api_report},
    /* the site-office screen's figures, no token (api_screen.c) */
    {"GET", "/api/screen", false, false, api_screen},
    /* the dashboard's files (web.c): last, it takes every other path */
    {"GET", "/", true, false, api_web_file},
};

/* Per-connection state across libmicrohttpd's calls of one request. */
typedef struct conn_state {
  char *body;
  size_t len;
  bool too_large;
} conn_state_t;

#define HTTP_BODY_MAX (256 * 1024)

static bool token_ok(struct http_api *h, struct MHD_Connection *c) {
  const char *want = h->gw->cfg->http_token;
  const char *auth = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
  if (!want[0] || !auth || strncmp(auth, "Bearer ", 7) != 0)
    return false;
  /* Constant-time compare: the token guards every action. */
  const char *got = auth + 7;
  size_t n = strlen(want), m = strlen(got);
  unsigned diff = (unsigned)(n ^ m);
  for (size_t i = 0; i < n; i++)
    diff |= (unsigned char)want[i] ^ (unsigned char)(i < m ? got[i] : 0);
  return diff == 0;
}

bool http_addr_is_loopback(const void *addr) {
  const struct sockaddr *sa = addr;
  if (!sa)
    return false;
  if (sa->sa_family == AF_INET)
    return (ntohl(((const struct sockaddr_in *)sa)->sin_addr.s_addr) >> 24) == 127;
  if (sa->sa_family == AF_INET6) {
    const struct in6_addr *a = &((const struct sockaddr_in6 *)sa)->sin6_addr;
    return IN6_IS_ADDR_LOOPBACK(a) || (IN6_IS_ADDR_V4MAPPED(a) && a->s6_addr[12] == 127);
  }
  return false;
}

bool http_needs_token(bool action, bool web_file, const void *client_addr) {
  return action || (!web_file && !http_addr_is_loopback(client_addr));
}

bool http_host_ok(const char *host, const char *names) {
  char name[256];
  size_t n;
  if (host[0] == '[') { /* [v6]:port */
    n = strcspn(host + 1, "]");
    if (host[1 + n] != ']' || n >= sizeof(name))
      return false;
    memcpy(name, host + 1, n);
    name[n] = '\0';
    struct in6_addr a6;
    return inet_pton(AF_INET6, name, &a6) == 1;
  }
  n = strcspn(host, ":");
  if (n == 0 || n >= sizeof(name))
    return false;
  memcpy(name, host, n);
  name[n] = '\0';
  if (n > 1 && name[n - 1] == '.')
    name[--n] = '\0'; /* "localhost." is localhost */
  struct in_addr a4;
  /* An address is never a rebound name: a page of evil.example sends
   * Host: evil.example, whatever address that name resolves to. */
  if (inet_pton(AF_INET, name, &a4) == 1 || strcasecmp(name, "localhost") == 0)
    return true;
  for (const char *p = names; *p;) {
    p += strspn(p, ", \t");
    size_t k = strcspn(p, ", \t");
    if (k == n && strncasecmp(p, name, n) == 0)
      return true;
    p += k;
  }
  return false;
}

static enum MHD_Result respond(struct MHD_Connection *c, http_resp_t *resp) {
  struct MHD_Response *r;
  if (resp->json) {
    char *text = json_dumps(resp->json, JSON_COMPACT | JSON_REAL_PRECISION(SG_JSON_DIGITS));
    json_decref(resp->json);
    free(resp->text);
    if (resp->stream)
      resp->stream_free(resp->stream_arg);
    if (!text)
      return MHD_NO;
    r = MHD_create_response_from_buffer(strlen(text), text, MHD_RESPMEM_MUST_FREE);
    MHD_add_response_header(r, "Content-Type", "application/json; charset=utf-8");
  } else if (resp->stream) {
    r = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, HTTP_STREAM_BLOCK, resp->stream,
                                          resp->stream_arg, resp->stream_free);
    if (!r) {
      resp->stream_free(resp->stream_arg);
      return MHD_NO;
    }
    MHD_add_response_header(r, "Content-Type", resp->content_type);
  } else {
    r = MHD_create_response_from_buffer(resp->text_len, resp->text ? resp->text : (char *)"",
                                        resp->text ? MHD_RESPMEM_MUST_FREE
                                                   : MHD_RESPMEM_PERSISTENT);
    if (resp->content_type)
      MHD_add_response_header(r, "Content-Type", resp->content_type);
  }
  MHD_add_response_header(r, "Cache-Control", "no-store");
  enum MHD_Result ok = MHD_queue_response(c, resp->status ? resp->status : 200, r);
  MHD_destroy_response(r);
  return ok;
}

/* The route of `method` `url`, or NULL; *path_known when some route has
 * the path (405 rather than 404). */
static const struct route *route_find(const char *method, const char *url, bool *path_known) {
  const struct route *found = NULL;
  *path_known = false;
  for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]) && !found; i++) {
    const struct route *r = &routes[i];
    size_t n = strlen(r->path);
    bool match = r->prefix ? strncmp(url, r->path, n) == 0 : strcmp(url, r->path) == 0;
    if (match && r->handler == api_web_file && strncmp(url, "/api/", 5) == 0)
      match = false; /* not a file: an endpoint no row names */
    *path_known |= match;
    if (match && (strcmp(method, r->method) == 0 ||
                  (strcmp(method, "HEAD") == 0 && strcmp(r->method, "GET") == 0)))
      found = r;
  }
  return found;
}

/* Reads anyone may make: the dashboard's files (no site data) and the
 * site-office screen's public figures. */
static bool route_public(const struct route *r) {
  return r && !r->action && (r->handler == api_web_file || r->handler == api_screen);
}

bool http_route_public(const char *method, const char *url) {
  bool known;
  return route_public(route_find(method, url, &known));
}

static void dispatch(struct http_api *h, struct MHD_Connection *c, const char *url,
                     const char *method, conn_state_t *cs, http_resp_t *resp) {
  bool path_known;
  const struct route *found = route_find(method, url, &path_known);
  const char *host = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Host");
  if (host && !http_host_ok(host, h->gw->cfg->http_hosts)) {
    atomic_fetch_add_explicit(&h->gw->counters.http_bad_host, 1, memory_order_relaxed);
    http_error(resp, 421, API_ERR_BAD_HOST,
               "this gateway does not answer to Host \"%.64s\": use its address, localhost, or "
               "add the name to [http] hosts",
               host);
    return;
  }
  if (!found) {
    if (path_known)
      http_error(resp, 405, API_ERR_METHOD, "%s is not allowed on %s", method, url);
    else
      http_error(resp, 404, API_ERR_NO_ENDPOINT, "no such endpoint: %s", url);
    return;
  }
  /* The dashboard's files hold no site data; every endpoint off loopback
   * reads the site's, so it needs the token as an action does. */
  const union MHD_ConnectionInfo *ci =
      MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
  bool needs_token =
      http_needs_token(found->action, route_public(found), ci ? ci->client_addr : NULL);
  if (needs_token && !token_ok(h, c)) {
    atomic_fetch_add_explicit(&h->gw->counters.http_no_token, 1, memory_order_relaxed);
    if (found->action)
      http_error(resp, 401, API_ERR_TOKEN_ACTION,
                 "this action needs the gateway's token (Authorization: Bearer ...)");
    else
      http_error(resp, 401, API_ERR_TOKEN_READ,
                 "reading from another address than loopback needs the gateway's token "
                 "(Authorization: Bearer ...)");
    return;
  }
  if (cs->too_large) {
    http_error(resp, 413, API_ERR_BODY_LARGE, "request body is larger than %d bytes",
               HTTP_BODY_MAX);
    return;
  }
  http_req_t req = {
      .gw = h->gw, .method = method, .path = url, .tail = url + strlen(found->path), .conn = c};
  if (cs->len) {
    json_error_t jerr;
    req.body = json_loadb(cs->body, cs->len, JSON_REJECT_DUPLICATES, &jerr);
    if (!req.body) {
      http_error(resp, 400, API_ERR_BODY_JSON, "body is not JSON: %s (line %d, column %d)",
                 jerr.text, jerr.line, jerr.column);
      return;
    }
  }
  int rc = reader_take(h, &req.reader);
  if (rc != 0) {
    http_error(resp, 503, API_ERR_DB_READ, "cannot read the database: %s", strerror(-rc));
    http_error_sys(resp, -rc);
  } else {
    found->handler(&req, resp);
    reader_give(h, req.reader);
  }
  json_decref(req.body);
}

/* Moves the connection's watch to `phase`, from now. */
static void track_phase(struct http_api *h, struct MHD_Connection *c, phase_t phase) {
  const union MHD_ConnectionInfo *ci =
      MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
  track_t *t = ci ? ci->socket_context : NULL;
  if (!t)
    return;
  pthread_mutex_lock(&h->tmu);
  t->phase = phase;
  t->since_ms = sg_mono_ms();
  pthread_mutex_unlock(&h->tmu);
}

static void on_connection(void *cls, struct MHD_Connection *c, void **socket_context,
                          enum MHD_ConnectionNotificationCode toe) {
  struct http_api *h = cls;
  track_t *t = *socket_context;
  if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    if (!ci || !(t = calloc(1, sizeof(*t))))
      return; /* not watched: the idle timeout still applies */
    t->fd = ci->connect_fd;
    t->since_ms = sg_mono_ms();
    t->phase = PHASE_HEADERS;
    pthread_mutex_lock(&h->tmu);
    t->next = h->tracks;
    if (h->tracks)
      h->tracks->prev = t;
    h->tracks = t;
    pthread_mutex_unlock(&h->tmu);
    *socket_context = t;
  } else if (toe == MHD_CONNECTION_NOTIFY_CLOSED && t) {
    /* before libmicrohttpd closes the fd: the watchdog, which shuts fds
     * down under tmu, never touches one reused by another connection */
    pthread_mutex_lock(&h->tmu);
    if (t->prev)
      t->prev->next = t->next;
    else
      h->tracks = t->next;
    if (t->next)
      t->next->prev = t->prev;
    pthread_mutex_unlock(&h->tmu);
    free(t);
    *socket_context = NULL;
  }
}

/* The watchdog: once a second, cuts every connection over its phase's
 * deadline; says so at most once a minute, with the count since. */
static void *watch_main(void *arg) {
  struct http_api *h = arg;
  pthread_mutex_lock(&h->tmu);
  while (!h->stopping) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += 1;
    pthread_cond_timedwait(&h->tcv, &h->tmu, &ts);
    uint64_t now = sg_mono_ms();
    for (track_t *t = h->tracks; t; t = t->next) {
      uint64_t limit_ms = t->phase == PHASE_HEADERS ? HTTP_HEADERS_S * 1000u
                          : t->phase == PHASE_BODY  ? HTTP_BODY_S * 1000u
                                                    : 0;
      if (!limit_ms || t->cut || now - t->since_ms <= limit_ms)
        continue;
      t->cut = true;
      shutdown(t->fd, SHUT_RDWR);
      atomic_fetch_add_explicit(&h->gw->counters.http_slow, 1, memory_order_relaxed);
      h->cut_unlogged++;
    }
    if (h->cut_unlogged && now - h->cut_logged_ms >= 60000) {
      log_warn("cut %llu slow connection%s (headers over %d s or body over %d s)",
               (unsigned long long)h->cut_unlogged, h->cut_unlogged > 1 ? "s" : "", HTTP_HEADERS_S,
               HTTP_BODY_S);
      h->cut_unlogged = 0;
      h->cut_logged_ms = now;
    }
  }
  pthread_mutex_unlock(&h->tmu);
  return NULL;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_size, void **state) {
  (void)version;
  struct http_api *h = cls;
  conn_state_t *cs = *state;
  /* First call: headers only. Answering on a later call keeps connections
   * alive (libmicrohttpd's documented pattern). */
  if (cs == NULL) {
    if (!(cs = calloc(1, sizeof(*cs))))
      return MHD_NO;
    *state = cs;
    track_phase(h, c, PHASE_BODY);
    return MHD_YES;
  }
  if (*upload_size) {
    if (cs->len + *upload_size > HTTP_BODY_MAX) {
      cs->too_large = true;
    } else {
      char *b = realloc(cs->body, cs->len + *upload_size);
      if (!b)
        return MHD_NO;
      memcpy(b + cs->len, upload_data, *upload_size);
      cs->body = b;
      cs->len += *upload_size;
    }
    *upload_size = 0;
    return MHD_YES;
  }
  track_phase(h, c, PHASE_HANDLING);
  http_resp_t resp = {0};
  /* With -v the log shows when a request starts and how long it took;
   * test_api_concurrency.sh uses the first line to know that a handler is
   * running. The URL has no query string here, and no token. */
  uint64_t t0 = sg_mono_ms();
  log_debug("%s %s", method, url);
  dispatch(h, c, url, method, cs, &resp);
  log_debug("%s %s: %u in %llu ms", method, url, resp.status ? resp.status : 200,
            (unsigned long long)(sg_mono_ms() - t0));
  return respond(c, &resp);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **state,
                         enum MHD_RequestTerminationCode why) {
  (void)why;
  track_phase(cls, c, PHASE_HEADERS); /* a keep-alive connection's next request */
  conn_state_t *cs = *state;
  if (cs) {
    free(cs->body);
    free(cs);
    *state = NULL;
  }
}

int http_start(gw_t *gw, struct http_api **out) {
  const sg_config_t *cfg = gw->cfg;
  struct sockaddr_storage ss;
  bool loopback = false;
  *out = NULL;
  if (sg_parse_listen(cfg->http_listen, &ss, &loopback) != 0) {
    log_err("[http] listen: \"%s\" is not ADDRESS:PORT (like 127.0.0.1:8080)", cfg->http_listen);
    return -EINVAL;
  }
  if (!loopback && cfg->http_token[0] == '\0') { /* the config check refuses it first */
    log_err("[http] listen %s is not loopback: set [http] token first", cfg->http_listen);
    return -EPERM;
  }
  struct http_api *h = calloc(1, sizeof(*h));
  if (!h)
    return -ENOMEM;
  h->gw = gw;
  pthread_mutex_init(&h->mu, NULL);
  pthread_cond_init(&h->cv, NULL);
  pthread_mutex_init(&h->tmu, NULL);
  pthread_cond_init(&h->tcv, NULL);
  /* One reader now, so that a database the API cannot read fails the start. */
  int rc = stor_reader_open(cfg->db_path, &h->idle[0]);
  if (rc != 0) {
    http_stop(h);
    return rc;
  }
  h->n_idle = h->n_open = 1;
  /* The pool threads poll with epoll or poll (MHD_USE_AUTO); the pool
   * needs the internal polling thread mode. */
  unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_AUTO | MHD_USE_ERROR_LOG;
  if (ss.ss_family == AF_INET6)
    flags |= MHD_USE_IPv6;
  h->mhd = MHD_start_daemon(flags, 0, NULL, NULL, on_request, h, MHD_OPTION_SOCK_ADDR, &ss,
                            MHD_OPTION_THREAD_POOL_SIZE, (unsigned)HTTP_THREADS,
                            MHD_OPTION_CONNECTION_TIMEOUT, 30u, MHD_OPTION_CONNECTION_LIMIT,
                            (unsigned)HTTP_CONN_MAX, MHD_OPTION_PER_IP_CONNECTION_LIMIT,
                            (unsigned)HTTP_PER_IP_MAX, MHD_OPTION_NOTIFY_COMPLETED, on_completed, h,
                            MHD_OPTION_NOTIFY_CONNECTION, on_connection, h, MHD_OPTION_END);
  if (!h->mhd) {
    log_err("cannot serve HTTP on %s: is another program using it?", cfg->http_listen);
    http_stop(h);
    return -EADDRINUSE;
  }
  if (pthread_create(&h->watch, NULL, watch_main, h) != 0) {
    log_err("cannot start the HTTP watchdog thread");
    http_stop(h);
    return -EAGAIN;
  }
  h->watching = true;
  log_info("API on http://%s/api/status (%d threads)", cfg->http_listen, HTTP_THREADS);
  *out = h;
  return 0;
}

void http_stop(struct http_api *h) {
  if (!h)
    return;
  if (h->mhd)
    MHD_stop_daemon(h->mhd); /* joins the pool: every reader is back */
  if (h->watching) {
    pthread_mutex_lock(&h->tmu);
    h->stopping = true;
    pthread_cond_signal(&h->tcv);
    pthread_mutex_unlock(&h->tmu);
    pthread_join(h->watch, NULL);
  }
  assert(h->tracks == NULL); /* every connection has closed */
  assert(h->n_idle == h->n_open);
  for (size_t i = 0; i < h->n_idle; i++)
    stor_reader_close(h->idle[i]);
  pthread_mutex_destroy(&h->mu);
  pthread_cond_destroy(&h->cv);
  pthread_mutex_destroy(&h->tmu);
  pthread_cond_destroy(&h->tcv);
  free(h);
}
