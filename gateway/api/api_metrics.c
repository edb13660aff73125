/* GET /metrics: the gateway's counters in the Prometheus text exposition
 * format (version 0.0.4), for a site's or the contractor's monitoring.
 *
 * Everything here is read the way the JSON API reads it: the ingest
 * counters are atomics, storage statistics come from stor_get_stats, the
 * active alarms and the uplink through their own API functions (which take
 * a snapshot on the loop), so /metrics and /api/status never disagree. */
#define LOG_MODULE "http"

#include "gateway/api/api.h"
#include "gateway/coap/coap.h"
#include "gateway/rules/rules.h"
#include "gateway/uplink/uplink.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A label value with \, " and newlines escaped (exposition format). */
static void label(FILE *f, const char *s) {
  fputc('"', f);
  for (; *s; s++) {
    if (*s == '\\' || *s == '"')
      fputc('\\', f);
    if (*s == '\n')
      fputs("\\n", f);
    else
      fputc(*s, f);
  }
  fputc('"', f);
}

static void head(FILE *f, const char *name, const char *type, const char *help) {
  fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void ingest(FILE *f, gw_t *gw) {
  head(f, "sitegate_ingest_requests_total", "counter", "CoAP requests received on POST /r.");
  fprintf(f, "sitegate_ingest_requests_total %llu\n",
          (unsigned long long)atomic_load(&gw->counters.requests));
  head(f, "sitegate_ingest_records_total", "counter", "Readings accepted and queued.");
  fprintf(f, "sitegate_ingest_records_total %llu\n",
          (unsigned long long)atomic_load(&gw->counters.records));
  head(f, "sitegate_ingest_rejects_total", "counter", "Requests refused, by reason.");
  for (int i = 0; i < GW_REJECT_COUNT; i++) {
    fputs("sitegate_ingest_rejects_total{reason=", f);
    label(f, gw_reject_name(i));
    fprintf(f, "} %llu\n", (unsigned long long)atomic_load(&gw->counters.rejects[i]));
  }
  head(f, "sitegate_http_refused_total", "counter",
       "HTTP API connections cut or requests refused (issue 13), by reason.");
  fprintf(f,
          "sitegate_http_refused_total{reason=\"slow\"} %llu\n"
          "sitegate_http_refused_total{reason=\"token\"} %llu\n"
          "sitegate_http_refused_total{reason=\"host\"} %llu\n",
          (unsigned long long)atomic_load(&gw->counters.http_slow),
          (unsigned long long)atomic_load(&gw->counters.http_no_token),
          (unsigned long long)atomic_load(&gw->counters.http_bad_host));
  head(f, "sitegate_dtls_handshakes_failed_total", "counter",
       "DTLS handshakes that failed, timed out or were dropped at the pending limit.");
  fprintf(f, "sitegate_dtls_handshakes_failed_total %llu\n",
          (unsigned long long)atomic_load(&gw->counters.dtls_failed));
  head(f, "sitegate_dtls_handshakes_total", "counter",
       "DTLS server handshakes by outcome: begun (a ClientHello from a new address), completed, "
       "abandoned (gone before completing: spoofed or given-up ClientHellos).");
  fprintf(f,
          "sitegate_dtls_handshakes_total{outcome=\"begun\"} %llu\n"
          "sitegate_dtls_handshakes_total{outcome=\"completed\"} %llu\n"
          "sitegate_dtls_handshakes_total{outcome=\"abandoned\"} %llu\n",
          (unsigned long long)atomic_load(&gw->counters.dtls_begun),
          (unsigned long long)atomic_load(&gw->counters.dtls_completed),
          (unsigned long long)atomic_load(&gw->counters.dtls_abandoned));
  head(f, "sitegate_dtls_handshakes_pending", "gauge",
       "DTLS handshakes pending; at sitegate_dtls_handshakes_pending_max new ones are ignored.");
  fprintf(f, "sitegate_dtls_handshakes_pending %lld\n",
          (long long)atomic_load(&gw->counters.dtls_pending));
  head(f, "sitegate_dtls_handshakes_pending_max", "gauge", "The pending DTLS handshakes allowed.");
  fprintf(f, "sitegate_dtls_handshakes_pending_max %d\n", GW_DTLS_MAX_HANDSHAKES);
  const sg_config_t *cfg = gw->cfg;
  size_t online = gw_devices_online(gw, sg_now());
  head(f, "sitegate_devices", "gauge", "Configured devices, by whether they report.");
  fprintf(f, "sitegate_devices{state=\"online\"} %zu\nsitegate_devices{state=\"offline\"} %zu\n",
          online, cfg->n_devices - online);
}

static void storage(FILE *f, gw_t *gw) {
  stor_stats_t st;
  stor_get_stats(gw->db, &st);
  head(f, "sitegate_storage_queue_depth", "gauge", "Readings waiting for the storage writer.");
  fprintf(f, "sitegate_storage_queue_depth %zu\n", st.queued);
  head(f, "sitegate_storage_queue_capacity", "gauge", "Readings the queue holds before 5.03.");
  fprintf(f, "sitegate_storage_queue_capacity %zu\n", st.queue_max);
  head(f, "sitegate_storage_committed_total", "counter", "Readings committed to the database.");
  fprintf(f, "sitegate_storage_committed_total %llu\n", (unsigned long long)st.committed);
  head(f, "sitegate_storage_duplicates_total", "counter", "Readings ignored as already stored.");
  fprintf(f, "sitegate_storage_duplicates_total %llu\n", (unsigned long long)st.duplicates);
  head(f, "sitegate_storage_disk_full", "gauge", "1 while commits fail for lack of space.");
  fprintf(f, "sitegate_storage_disk_full %d\n", st.disk_full ? 1 : 0);
  head(f, "sitegate_storage_commit_seconds", "histogram",
       "Duration of one group commit (synchronous=FULL).");
  for (int b = 0; b < STOR_COMMIT_BUCKETS; b++)
    fprintf(f, "sitegate_storage_commit_seconds_bucket{le=\"%g\"} %llu\n",
            STOR_COMMIT_BOUNDS_MS[b] / 1000.0, (unsigned long long)st.commit_le[b]);
  fprintf(f,
          "sitegate_storage_commit_seconds_bucket{le=\"+Inf\"} %llu\n"
          "sitegate_storage_commit_seconds_sum %.6f\n"
          "sitegate_storage_commit_seconds_count %llu\n",
          (unsigned long long)st.batches, st.commit_ms_sum / 1000.0,
          (unsigned long long)st.batches);
  head(f, "sitegate_storage_last_commit_seconds", "gauge", "Duration of the last commit.");
  fprintf(f, "sitegate_storage_last_commit_seconds %.6f\n", st.last_commit_ms / 1000.0);
}

static void uplink(FILE *f, const http_req_t *req) {
  http_resp_t r = {0};
  api_uplink(req, &r);
  if (!r.json || r.status >= 400) {
    json_decref(r.json);
    return;
  }
  json_t *j = r.json;
  head(f, "sitegate_uplink_enabled", "gauge", "1 when [uplink] host is set.");
  fprintf(f, "sitegate_uplink_enabled %d\n", json_is_true(json_object_get(j, "enabled")));
  head(f, "sitegate_uplink_connected", "gauge", "1 while the TLS session to the authority is up.");
  fprintf(f, "sitegate_uplink_connected %d\n", json_is_true(json_object_get(j, "connected")));
  head(f, "sitegate_uplink_state", "gauge", "The uplink's state (the one with value 1).");
  fputs("sitegate_uplink_state{state=", f);
  const char *state = json_string_value(json_object_get(j, "state"));
  label(f, state ? state : "unknown");
  fputs("} 1\n", f);
  head(f, "sitegate_outbox_backlog", "gauge",
       "Messages waiting for the authority's ack, by class.");
  const char *k;
  json_t *v;
  json_object_foreach(json_object_get(j, "backlog"), k, v) {
    fputs("sitegate_outbox_backlog{class=", f);
    label(f, k);
    fprintf(f, "} %lld\n", (long long)json_integer_value(v));
  }
  head(f, "sitegate_outbox_dropped_total", "counter", "Messages dropped unsent, by class.");
  json_object_foreach(json_object_get(j, "dropped"), k, v) {
    fputs("sitegate_outbox_dropped_total{class=", f);
    label(f, k);
    fprintf(f, "} %lld\n", (long long)json_integer_value(v));
  }
  static const char *const counters[][2] = {{"sent", "Frames sent (first time)."},
                                            {"resent", "Frames sent again."},
                                            {"acked", "Frames the authority acknowledged."}};
  json_t *c = json_object_get(j, "counters");
  for (size_t i = 0; i < sizeof(counters) / sizeof(counters[0]); i++) {
    char name[64];
    snprintf(name, sizeof(name), "sitegate_uplink_%s_total", counters[i][0]);
    head(f, name, "counter", counters[i][1]);
    fprintf(f, "%s %lld\n", name,
            (long long)json_integer_value(json_object_get(c, counters[i][0])));
  }
  json_decref(j);
}

/* Active alarms counted by rule (the kind) and level. */
static void alarms(FILE *f, gw_t *gw) {
  json_t *list = alarm_active_json(gw);
  head(f, "sitegate_alarms_active", "gauge", "Active alarms, by rule and level.");
  if (!list)
    return;
  json_t *counts = json_object();
  size_t i;
  json_t *a;
  json_array_foreach(list, i, a) {
    char key[128];
    snprintf(key, sizeof(key), "%s\t%s", json_string_value(json_object_get(a, "rule")),
             json_string_value(json_object_get(a, "level")));
    json_int_t n = json_integer_value(json_object_get(counts, key));
    json_object_set_new(counts, key, json_integer(n + 1));
  }
  const char *k;
  json_t *v;
  json_object_foreach(counts, k, v) {
    const char *tab = strchr(k, '\t');
    char rule[64];
    snprintf(rule, sizeof(rule), "%.*s", (int)(tab - k), k);
    fputs("sitegate_alarms_active{rule=", f);
    label(f, rule);
    fputs(",level=", f);
    label(f, tab + 1);
    fprintf(f, "} %lld\n", (long long)json_integer_value(v));
  }
  head(f, "sitegate_alarms_active_total", "gauge", "Active alarms in all.");
  fprintf(f, "sitegate_alarms_active_total %zu\n", json_array_size(list));
  json_decref(counts);
  json_decref(list);
}

void api_metrics(const http_req_t *req, http_resp_t *resp) {
  gw_t *gw = req->gw;
  char *body = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&body, &len);
  if (!f) {
    http_error(resp, 503, API_ERR_NO_MEMORY, "out of memory");
    return;
  }
  head(f, "sitegate_build_info", "gauge", "The gateway's version and site (value 1).");
  fputs("sitegate_build_info{version=\"0.1.0\",site=", f);
  label(f, gw->cfg->site_id);
  fputs("} 1\n", f);
  head(f, "sitegate_uptime_seconds", "gauge", "Seconds since sitegated started.");
  fprintf(f, "sitegate_uptime_seconds %.3f\n", sg_now() - gw->started);
  ingest(f, gw);
  storage(f, gw);
  uplink(f, req);
  alarms(f, gw);
  if (fclose(f) != 0) {
    free(body);
    http_error(resp, 503, API_ERR_NO_MEMORY, "out of memory");
    return;
  }
  resp->text = body;
  resp->text_len = len;
  resp->content_type = "text/plain; version=0.0.4; charset=utf-8";
}
