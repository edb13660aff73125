/* What the CoAP front answers when storage refuses readings (POST /r) or a
 * ticket (POST /w): the code, the reason /metrics counts it under and the
 * diagnostic payload. Pure, beside server.c and tickets.c which send it,
 * so that each errno's answer is tested by hand (tests/test_ingest.c).
 *
 * The mapping follows who can act: -EAGAIN (queue full) and -ENOSPC (disk
 * full) are 5.03 with Max-Age, the request was fine and is to be resent; an
 * invalid reading or ticket is 4.00 naming what is wrong, because resending
 * the same thing can never succeed; any other errno is the gateway's own
 * failure, 5.00. */

#include "gateway/coap/coap.h"
#include <errno.h>
#include <stdio.h>
#include <string.h>

#define MAX_AGE_BUSY_S 1       /* queue full: retry soon */
#define MAX_AGE_DISK_FULL_S 60 /* disk full: a person has to act */

void gw_append_verdict(int rc, const stor_reading_t *r, size_t n, gw_verdict_t *v) {
  char why[128];
  switch (rc) {
  case -EAGAIN:
    *v = (gw_verdict_t){503, GW_REJECT_BUSY, MAX_AGE_BUSY_S, ""};
    snprintf(v->text, sizeof(v->text), "gateway is busy; retry after Max-Age");
    return;
  case -ENOSPC:
    *v = (gw_verdict_t){503, GW_REJECT_DISK_FULL, MAX_AGE_DISK_FULL_S, ""};
    snprintf(v->text, sizeof(v->text),
             "gateway storage is full; keep the readings and retry later");
    return;
  case -EINVAL:
    for (size_t i = 0; i < n; i++) {
      if (stor_reading_check(&r[i], why, sizeof(why)) == 0)
        continue;
      const char *q = proto_quantity_name(r[i].quantity);
      *v = (gw_verdict_t){400, GW_REJECT_INVALID_READING, 0, ""};
      snprintf(v->text, sizeof(v->text),
               "record %zu (%s at %lld ms) cannot be stored: %s; fix it, resending it cannot help",
               i, q ? q : "?", (long long)r[i].t_ms, why);
      return;
    }
    break; /* each reading is fine: its device id is the gateway's fault */
  default:
    break;
  }
  *v = (gw_verdict_t){500, GW_REJECT_STORAGE_ERROR, 0, ""};
  snprintf(v->text, sizeof(v->text), "gateway storage failed (%s); retry later", strerror(-rc));
}

int gw_ticket_refusal(int rc, const stor_ticket_t *t, char *text, size_t cap) {
  char why[128];
  if (rc == -EINVAL && stor_ticket_check(t, why, sizeof(why)) != 0) {
    snprintf(text, cap,
             "ticket %lld of %s cannot be stored: %s; correct it at the scale, resending it "
             "cannot help",
             (long long)t->no, t->scale, why);
    return 400;
  }
  snprintf(text, cap, "%s",
           rc == -ESHUTDOWN ? "gateway is stopping; resend the ticket later"
                            : "gateway is busy; resend the ticket");
  return 503;
}
