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

/* "12 min ago" style age of Unix time t, "-" when unknown. */
static const char *ago(double t, char *buf, size_t cap) {
  if (!isfinite(t) || t <= 0) {
    snprintf(buf, cap, "-");
    return buf;
  }
  char tb[32];
  double d = sg_now() - t;
  const char *unit = "s";
  if (d >= 86400 * 2) {
    d /= 86400;
    unit = "d";
  } else if (d >= 7200) {
    d /= 3600;
    unit = "h";
  } else if (d >= 120) {
    d /= 60;
    unit = "min";
  }
  snprintf(buf, cap, "%s (%.0f %s ago)", fmt_time(t, tb, sizeof(tb)), d < 0 ? 0 : d, unit);
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
  char a[96], b[96];
  bool enabled = json_is_true(json_object_get(u, "enabled"));
  if (!enabled)
    printf("uplink      off ([uplink] host is not set); MN %s\n", jstr(u, "mn"));
  else
    printf("uplink      %s, %s since %s\n", jstr(u, "server"), jstr(u, "state"),
           ago(jnum(u, "since"), a, sizeof(a)));
  if (*jstr(u, "cipher"))
    printf("session     TLS 1.2 %s, MN %s\n", jstr(u, "cipher"), jstr(u, "mn"));
  printf("backlog     %.0f messages waiting for a 9014", jnum(u, "backlog_total"));
  json_t *bl = json_object_get(u, "backlog"), *dr = json_object_get(u, "dropped");
  const char *key;
  json_t *v;
  bool first = true;
  json_object_foreach(bl, key, v) {
    if (json_integer_value(v) == 0)
      continue;
    printf("%s%s %lld", first ? " (" : ", ", key, (long long)json_integer_value(v));
    first = false;
  }
  printf("%s\n", first ? "" : ")");
  json_t *old = json_object_get(u, "oldest_pending");
  if (json_is_object(old))
    printf("oldest      QN %s, CN %s, made %s\n", jstr(old, "qn"), jstr(old, "cn"),
           ago(jnum(old, "made"), b, sizeof(b)));
  printf("last ack    %s\n", ago(jnum(u, "last_ack"), a, sizeof(a)));
  long long dropped = 0;
  json_object_foreach(dr, key, v) dropped += json_integer_value(v);
  printf("dropped     %lld real-time frames (bound %.0f pending; minute/hour/day data, ledger "
         "records and alarms are never dropped)%s\n",
         dropped, jnum(u, "outbox_max"),
         json_is_true(json_object_get(u, "over_bound")) ? "; OVER THE BOUND" : "");
  json_t *c = json_object_get(u, "counters");
  if (enabled)
    printf("this run    %.0f made, %.0f sent, %.0f resent, %.0f acknowledged, %.0f in flight "
           "(window %.0f), %.0f pulls answered, %.0f connections\n",
           jnum(c, "made"), jnum(c, "sent"), jnum(c, "resent"), jnum(c, "acked"),
           jnum(c, "inflight"), jnum(u, "window"), jnum(c, "pulls"), jnum(c, "handshakes"));
  if (isfinite(jnum(u, "chain_seq")) && jnum(u, "chain_seq") > 0)
    printf("chain       signed records up to Seq %.0f\n", jnum(u, "chain_seq"));
  if (isfinite(jnum(u, "clock_offset_s")))
    printf("clock       the authority's is %+.1f s from ours\n", jnum(u, "clock_offset_s"));
  if (*jstr(u, "last_error"))
    printf("last error  %s (%s)\n", jstr(u, "last_error"),
           ago(jnum(u, "last_error_at"), a, sizeof(a)));
  json_decref(u);
  return 0;
}
