/* sitegate-rx's read-only queries for people: `sites` and `export`. The
 * rows come from the receiver's store (storage.h "the receiver's read-only
 * queries"); this file only prints them, as aligned text, CSV or one JSON
 * object a line, so another storage backend prints the same. */
#include "authority/rx.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static void iso(int64_t t, char *out, size_t len) {
  time_t s = (time_t)(t + RX_BEIJING_MIN * 60);
  struct tm tm;
  gmtime_r(&s, &tm);
  strftime(out, len, "%Y-%m-%dT%H:%M:%S+08:00", &tm);
}

/* ---- sites */

typedef struct sites_out {
  bool json;
  bool header; /* the text table's header is printed */
} sites_out_t;

static void sites_header(sites_out_t *o) {
  if (o->json || o->header)
    return;
  o->header = true;
  printf("%-27s %8s %-25s %9s %7s %7s %-24s %s\n", "MN", "frames", "last frame", "ledger",
         "pending", "broken", "seals ok/incomplete/bad", "refused");
}

static void sites_on_row(void *arg, const stor_rx_site_t *r) {
  sites_out_t *o = arg;
  sites_header(o);
  if (o->json) {
    json_t *j =
        json_pack("{s:s, s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}", "mn", r->mn,
                  "subject", r->subject, "last_seen", (json_int_t)r->last_seen, "connections",
                  (json_int_t)r->connections, "frames", (json_int_t)r->frames, "last_frame",
                  (json_int_t)(r->last_frame_ms / 1000), "ledger_seq", (json_int_t)r->ledger_seq,
                  "ledger_pending", (json_int_t)r->ledger_pending, "ledger_broken",
                  (json_int_t)r->ledger_broken, "seals_verified", (json_int_t)r->seals_verified,
                  "seals_incomplete", (json_int_t)r->seals_incomplete, "seals_mismatch",
                  (json_int_t)r->seals_mismatch);
    json_object_set_new(j, "refused", json_integer(r->refused));
    char *s = json_dumps(j, JSON_COMPACT);
    if (s)
      puts(s);
    free(s);
    json_decref(j);
    return;
  }
  char when[40] = "-";
  if (r->has_last_frame)
    iso(r->last_frame_ms / 1000, when, sizeof(when));
  char seals[40];
  snprintf(seals, sizeof(seals), "%lld/%lld/%lld", (long long)r->seals_verified,
           (long long)r->seals_incomplete, (long long)r->seals_mismatch);
  printf("%-27s %8lld %-25s %9lld %7lld %7lld %-24s %lld\n", r->mn, (long long)r->frames, when,
         (long long)r->ledger_seq, (long long)r->ledger_pending, (long long)r->ledger_broken, seals,
         (long long)r->refused);
}

int rx_query_sites(const char *path, bool json) {
  sites_out_t o = {.json = json};
  int64_t unknown = 0;
  char err[512];
  int rc = stor_rx_sites(path, sites_on_row, &o, &unknown, err, sizeof(err));
  if (err[0]) {
    fprintf(stderr, "sitegate-rx: %s\n", err);
    return rc;
  }
  sites_header(&o); /* also over no site at all */
  if (!json && unknown > 0)
    printf("(%lld connections refused before a site was known)\n", (long long)unknown);
  return rc;
}

/* ---- export */

typedef struct export_out {
  bool json;
  bool header;
  const char *mn;
  hj212_frame_t f; /* large: one per export, not on the stack */
} export_out_t;

/* CP of a stored data segment, for export: decoded again from the bytes. */
static int cp_of(const char *data, size_t len, hj212_frame_t *f) {
  char line[HJ212_FRAME_MAX + 8], err[128];
  if (len > HJ212_DATA_MAX)
    return -EINVAL;
  int n =
      snprintf(line, sizeof(line), "##%04zu%.*s%04X", len, (int)len, data, hj212_crc(data, len));
  return hj212_decode(line, (size_t)n, f, err, sizeof(err));
}

static void csv_field(const char *s) {
  putchar('"');
  for (; *s; s++) {
    if (*s == '"')
      putchar('"');
    putchar(*s);
  }
  putchar('"');
}

static void export_header(export_out_t *o) {
  if (o->json || o->header)
    return;
  o->header = true;
  printf("time,received,mn,qn,cn,what,pno,pnum,ledger_seq,ledger_state,cp\n");
}

static void export_json(export_out_t *o, const stor_rx_frame_t *r, const char *what, bool ok) {
  hj212_frame_t *f = &o->f;
  json_t *j = json_pack("{s:I, s:I, s:s, s:s, s:s, s:i, s:i}", "t", (json_int_t)r->t, "received",
                        (json_int_t)(r->received_ms / 1000), "mn", o->mn, "qn", r->qn, "cn", r->cn,
                        "pno", r->pno, "pnum", r->pnum);
  if (what)
    json_object_set_new(j, "what", json_string(what));
  if (r->in_ledger) {
    json_object_set_new(j, "ledger_seq", json_integer(r->ledger_seq));
    json_object_set_new(j, "ledger_state", json_string(r->ledger_state));
  }
  json_t *recs = json_array();
  for (size_t i = 0; ok && i < f->n_pairs; i++) {
    while (json_array_size(recs) <= f->pair[i].record)
      json_array_append_new(recs, json_object());
    json_object_set_new(json_array_get(recs, f->pair[i].record), hj212_key(f, i),
                        json_string(hj212_value(f, i)));
  }
  json_object_set_new(j, "records", recs);
  json_object_set_new(j, "cp", json_string(ok ? f->cp : ""));
  char *s = json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER);
  if (s)
    puts(s);
  free(s);
  json_decref(j);
}

static void export_on_row(void *arg, const stor_rx_frame_t *r) {
  export_out_t *o = arg;
  export_header(o);
  const char *what = hj212_cn_name(r->cn);
  bool ok = cp_of(r->data, r->data_len, &o->f) == 0;
  if (o->json) {
    export_json(o, r, what, ok);
    return;
  }
  char a[40], b[40];
  iso(r->t, a, sizeof(a));
  iso(r->received_ms / 1000, b, sizeof(b));
  printf("%s,%s,%s,%s,%s,%s,%d,%d,", a, b, o->mn, r->qn, r->cn, what ? what : "", r->pno, r->pnum);
  if (r->in_ledger)
    printf("%lld,%s,", (long long)r->ledger_seq, r->ledger_state);
  else
    printf(",,");
  csv_field(ok ? o->f.cp : "");
  putchar('\n');
}

int rx_query_export(const char *path, const char *mn, int64_t since, int64_t until, const char *cn,
                    bool json) {
  export_out_t *o = calloc(1, sizeof(*o));
  if (!o)
    return -ENOMEM;
  o->json = json;
  o->mn = mn;
  char err[512];
  int rc = stor_rx_export(path, mn, since, until, cn, export_on_row, o, err, sizeof(err));
  if (err[0])
    fprintf(stderr, "sitegate-rx: %s\n", err);
  else
    export_header(o); /* also over no frame at all */
  free(o);
  return rc;
}
