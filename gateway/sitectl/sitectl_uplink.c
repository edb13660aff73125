/* sitectl uplink: the connection to the authority and the outbox, from
 * GET /api/uplink (gateway/uplink/uplink.c). A person sees whether the gateway is
 * connected, how much waits by class, the oldest message waiting, the last
 * acknowledgement, what the bound dropped and the last error; --json gives
 * the API's answer as it is. */

#include "gateway/sitectl/sitectl.h"
#include <math.h>
#include <stdio.h>
#include <string.h>

static double jnum(const json_t *o, const char *k) {
  json_t *v = json_object_get(o, k);
  return json_is_number(v) ? json_number_value(v) : NAN;
}

static const char *jstr(const json_t *o, const char *k) {
  const char *s = json_string_value(json_object_get(o, k));
  return s ? s : "";
}

/* "2026-11-20 21:20:00 (12 min ago)" for Unix time t, "-" when unknown. */
static const char *ago(double t, char *buf, size_t cap) {
  if (!isfinite(t) || t <= 0) {
    snprintf(buf, cap, "-");
    return buf;
  }
  char tb[32], n[24];
  double d = sg_now() - t;
  const char *key = "ctl.ago_s";
  if (d >= 86400 * 2) {
    d /= 86400;
    key = "ctl.ago_d";
  } else if (d >= 7200) {
    d /= 3600;
    key = "ctl.ago_h";
  } else if (d >= 120) {
    d /= 60;
    key = "ctl.ago_min";
  }
  snprintf(n, sizeof(n), "%.0f", d < 0 ? 0 : d);
  return MF(buf, cap, key, "time", fmt_time(t, tb, sizeof(tb)), "n", n, NULL);
}

/* A number of the answer as text, "-" when absent. */
static const char *N(const json_t *o, const char *k, char *buf, size_t cap) {
  double v = jnum(o, k);
  if (isfinite(v))
    snprintf(buf, cap, "%.0f", v);
  else
    snprintf(buf, cap, "-");
  return buf;
}

int cmd_uplink(ctl_t *ctl, int argc, char **argv) {
  (void)argv;
  if (argc != 0)
    return EXIT_USAGE;
  json_t *st = NULL, *u = NULL;
  int rc = fetch_status(ctl, &st);
  json_decref(st);
  if (rc != 0)
    return rc;
  if ((rc = api_get(ctl, "/api/uplink", &u)) != 0)
    return rc;
  if (json_answer(ctl, u))
    return 0;
  char a[128], b[128], n[8][24], line[1024];
  bool enabled = json_is_true(json_object_get(u, "enabled"));
  if (!enabled)
    say(stdout, "ctl.up.off", "mn", jstr(u, "mn"), NULL);
  else
    say(stdout, "ctl.up.on", "server", jstr(u, "server"), "state", MN("upstate", jstr(u, "state")),
        "since", ago(jnum(u, "since"), a, sizeof(a)), NULL);
  if (*jstr(u, "cipher"))
    say(stdout, "ctl.up.session", "cipher", jstr(u, "cipher"), "mn", jstr(u, "mn"), NULL);
  MF(line, sizeof(line), "ctl.up.backlog", "n", N(u, "backlog_total", n[0], sizeof(n[0])), NULL);
  json_t *bl = json_object_get(u, "backlog"), *dr = json_object_get(u, "dropped");
  const char *key;
  json_t *v;
  bool first = true;
  json_object_foreach(bl, key, v) {
    if (json_integer_value(v) == 0)
      continue;
    snprintf(line + strlen(line), sizeof(line) - strlen(line), "%s%s %lld",
             first ? M("ctl.paren_open") : M("ctl.list_sep"), MN("upclass", key),
             (long long)json_integer_value(v));
    first = false;
  }
  printf("%s%s\n", line, first ? "" : M("ctl.paren_close"));
  json_t *old = json_object_get(u, "oldest_pending");
  if (json_is_object(old))
    say(stdout, "ctl.up.oldest", "qn", jstr(old, "qn"), "cn", jstr(old, "cn"), "made",
        ago(jnum(old, "made"), b, sizeof(b)), NULL);
  say(stdout, "ctl.up.last_ack", "at", ago(jnum(u, "last_ack"), a, sizeof(a)), NULL);
  long long dropped = 0;
  json_object_foreach(dr, key, v) dropped += json_integer_value(v);
  snprintf(n[0], sizeof(n[0]), "%lld", dropped);
  say(stdout, "ctl.up.dropped", "n", n[0], "bound", N(u, "outbox_max", n[1], sizeof(n[1])), "over",
      json_is_true(json_object_get(u, "over_bound")) ? M("ctl.up.over_bound") : "", NULL);
  json_t *c = json_object_get(u, "counters");
  if (enabled)
    say(stdout, "ctl.up.run", "made", N(c, "made", n[0], sizeof(n[0])), "sent",
        N(c, "sent", n[1], sizeof(n[1])), "resent", N(c, "resent", n[2], sizeof(n[2])), "acked",
        N(c, "acked", n[3], sizeof(n[3])), "inflight", N(c, "inflight", n[4], sizeof(n[4])),
        "window", N(u, "window", n[5], sizeof(n[5])), "pulls", N(c, "pulls", n[6], sizeof(n[6])),
        "conns", N(c, "handshakes", n[7], sizeof(n[7])), NULL);
  if (isfinite(jnum(u, "chain_seq")) && jnum(u, "chain_seq") > 0)
    say(stdout, "ctl.up.chain", "seq", N(u, "chain_seq", n[0], sizeof(n[0])), NULL);
  if (isfinite(jnum(u, "clock_offset_s"))) {
    snprintf(n[0], sizeof(n[0]), "%+.1f", jnum(u, "clock_offset_s"));
    say(stdout, "ctl.up.clock", "s", n[0], NULL);
  }
  if (*jstr(u, "last_error"))
    say(stdout, "ctl.up.error", "error", jstr(u, "last_error"), "at",
        ago(jnum(u, "last_error_at"), a, sizeof(a)), NULL);
  json_decref(u);
  return 0;
}
