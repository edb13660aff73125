/* GET /api/uplink: the uplink's state from the loop (uplink_status) and its
 * outbox from storage, on the request's own reader. */
#include "gateway/api/api.h"
#include "gateway/uplink/uplink.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

static json_t *t_or_null(double t) { return t > 0 ? json_real(t) : json_null(); }

void api_uplink(const http_req_t *req, http_resp_t *resp) {
  gw_t *gw = req->gw;
  const sg_config_t *cfg = gw->cfg;
  uplink_status_t s;
  bool enabled = cfg->uplink_host[0] != '\0';
  bool live = uplink_status(gw, &s) == 0;
  stor_ob_stats_t ob;
  int rc = stor_outbox_stats(req->reader, &ob);
  if (rc != 0) {
    http_error(resp, 500, API_ERR_OUTBOX, "outbox: %s", strerror(-rc));
    return;
  }
  json_t *backlog = json_object(), *dropped = json_object();
  for (int c = 0; c < STOR_OB_CLASSES; c++) {
    json_object_set_new(backlog, stor_outbox_class_name(c), json_integer(ob.pending[c]));
    json_object_set_new(dropped, stor_outbox_class_name(c), json_integer(ob.dropped[c]));
  }
  json_t *oldest = json_null();
  if (ob.oldest_id)
    oldest = json_pack("{s:s,s:s,s:I,s:f}", "qn", ob.oldest_qn, "cn", ob.oldest_cn, "data_time",
                       (json_int_t)ob.oldest_t, "made", (double)ob.oldest_made_ms / 1000.0);
  char server[300];
  snprintf(server, sizeof(server), "%s:%d", cfg->uplink_host, cfg->uplink_port);
  json_t *j = json_pack(
      "{s:b,s:s,s:s,s:s,s:b,s:o,s:o,s:I,s:o,s:o,s:o,s:I,s:I,s:I}", "enabled", enabled, "mn",
      cfg->site_id, "server", enabled ? server : "", "state",
      live      ? uplink_state_name(s.state)
      : enabled ? "stopping"
                : "off",
      "connected", live && s.state == UPLINK_READY, "since", t_or_null(s.state_since), "backlog",
      backlog, "backlog_total", (json_int_t)ob.pending_total, "oldest_pending", oldest, "last_ack",
      t_or_null(ob.last_ack_ms > 0 ? (double)ob.last_ack_ms / 1000.0 : s.last_ack_t), "dropped",
      dropped, "outbox_rows", (json_int_t)ob.rows, "outbox_max", (json_int_t)cfg->uplink_outbox_max,
      "window", (json_int_t)cfg->uplink_window);
  json_object_set_new(j, "last_error", s.last_error[0] ? json_string(s.last_error) : json_null());
  json_object_set_new(j, "last_error_at", t_or_null(s.last_error_t));
  json_object_set_new(j, "cipher", s.cipher[0] ? json_string(s.cipher) : json_null());
  json_object_set_new(j, "counters",
                      json_pack("{s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I}", "made", (json_int_t)s.made,
                                "sent", (json_int_t)s.sent, "resent", (json_int_t)s.resent, "acked",
                                (json_int_t)s.acked, "inflight", (json_int_t)s.inflight, "connects",
                                (json_int_t)s.connects, "handshakes", (json_int_t)s.handshakes,
                                "pulls", (json_int_t)s.pulls));
  json_object_set_new(j, "chain_seq", json_integer(s.chain_seq));
  json_object_set_new(j, "over_bound", json_boolean(s.over));
  json_object_set_new(j, "clock_offset_s",
                      s.clock_known ? json_real(s.clock_offset_s) : json_null());
  resp->json = j;
}
