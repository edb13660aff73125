/* Weighing tickets: POST /w (protocol/COAP.md; the ledger is storage.h's).
 * Apart from the readings of server.c because its answer cannot be given
 * in the handler: it waits for a durable commit.
 *
 * 2.01 may only be sent once the ticket is durably committed, and the loop
 * may not wait for an fsync, so the answer is a separate response (RFC
 * 7252 5.2.2) with libcoap's async support:
 *   1. the first call of the handler decodes and checks the ticket,
 *      registers an async for the request (libcoap keeps a copy of it and a
 *      reference to the session), submits the ticket to the ledger and
 *      returns without a code: a CON request gets an empty ACK at once;
 *   2. the ledger's result arrives on the loop (core's gw_ticket_submit) in
 *      on_ticket_done(), which stores it in the job and triggers the async;
 *   3. libcoap calls the handler again with the stored request; it finds
 *      the async by token, answers from the job (2.01, 2.04, 4.09 or 5.03)
 *      and libcoap frees the async.
 * The async is registered with a watchdog delay instead of "forever": if
 * the commit has not come back by then (storage stuck), the handler runs
 * anyway and answers 5.03; the job stays until its result arrives and is
 * then dropped (a resend of the ticket finds it stored: 2.04). The
 * handler tells libcoap's call from a retransmission of the request by the
 * message id: libcoap's stored copy has a new one (coap_register_async()
 * duplicates the request with a new MID), a retransmission has the
 * original's, and gets another empty ACK. Once a job leaves an async, the
 * async's app data is cleared, so no later call can reach a freed job.
 * When the front stops, waiting jobs are orphaned: their results, or the
 * NULL result of a stopped gateway, free them. */
#define LOG_MODULE "coap"

#include "gateway/coap/coap_int.h"
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TICKET_WATCHDOG_S 10 /* longest wait for a commit before 5.03 */
#define TICKET_RETRY_S 2     /* Max-Age of that 5.03 */

struct ticket_job {
  struct coap_front *cf; /* NULL once orphaned */
  coap_async_t *async;   /* NULL once libcoap has answered or dropped it */
  bool done;
  stor_ticket_result_t res;
  char scale[PROTO_DEVICE_MAX + 1];
  int64_t no;
  coap_mid_t mid; /* of the request as the scale sent it */
  struct ticket_job *prev, *next;
};

static void job_unlink(struct ticket_job *j) {
  if (!j->cf)
    return;
  if (j->prev)
    j->prev->next = j->next;
  else
    j->cf->tickets = j->next;
  if (j->next)
    j->next->prev = j->prev;
  j->cf = NULL;
  j->prev = j->next = NULL;
}

static void reply_json(coap_pdu_t *resp, coap_pdu_code_t code, const char *text) {
  uint8_t buf[4];
  coap_pdu_set_code(resp, code);
  coap_add_option(resp, COAP_OPTION_CONTENT_FORMAT,
                  coap_encode_var_safe(buf, sizeof(buf), COAP_MEDIATYPE_APPLICATION_JSON), buf);
  coap_add_data(resp, strlen(text), (const uint8_t *)text);
}

static void reply_busy(coap_pdu_t *resp, const char *text) {
  uint8_t buf[4];
  coap_add_option(resp, COAP_OPTION_MAXAGE, coap_encode_var_safe(buf, sizeof(buf), TICKET_RETRY_S),
                  buf);
  coapfront__reply(resp, COAP_RESPONSE_CODE_SERVICE_UNAVAILABLE, text);
}

/* The separate response, from a job whose result has come. */
static void ticket_answer(struct ticket_job *j, coap_pdu_t *resp) {
  char text[256], hash[65];
  for (int i = 0; i < 32; i++)
    snprintf(hash + 2 * i, 3, "%02x", j->res.hash[i]);
  switch (j->res.status) {
  case STOR_TICKET_CREATED:
  case STOR_TICKET_SAME:
    snprintf(text, sizeof(text), "{\"id\":%lld,\"hash\":\"%s\"}", (long long)j->res.id, hash);
    reply_json(resp,
               j->res.status == STOR_TICKET_CREATED ? COAP_RESPONSE_CODE_CREATED
                                                    : COAP_RESPONSE_CODE_CHANGED,
               text);
    log_debug("ticket %s #%lld: entry %lld (%s)", j->scale, (long long)j->no, (long long)j->res.id,
              j->res.status == STOR_TICKET_CREATED ? "stored" : "resent");
    break;
  case -EEXIST:
    snprintf(text, sizeof(text),
             "ticket %lld of %s is stored (entry %lld) with other content; a scale never reuses "
             "a ticket number, and a wrong ticket is corrected with sitectl waste correct",
             (long long)j->no, j->scale, (long long)j->res.id);
    log_warn("%s", text);
    coapfront__reply(resp, COAP_RESPONSE_CODE_CONFLICT, text);
    break;
  default:
    snprintf(text, sizeof(text), "the ticket could not be stored (%s); keep it and resend",
             strerror(-j->res.status));
    reply_busy(resp, text);
    break;
  }
}

/* Loop thread: the ledger's answer (or NULL when the gateway stopped). */
static void on_ticket_done(void *arg, const stor_ticket_result_t *res) {
  struct ticket_job *j = arg;
  if (!res || !j->cf || !j->async) {
    job_unlink(j);
    free(j);
    return;
  }
  j->res = *res;
  j->done = true;
  coap_async_trigger(j->async);
  coap_io_process(j->cf->ctx, COAP_IO_NO_WAIT); /* answer now, not at the next event */
}

/* The first call of POST /w: checks, then submits. Returns 0 when the
 * ticket was submitted (no code: the answer comes separately). */
static int ticket_submit(struct coap_front *cf, coap_session_t *session, const coap_resource_t *res,
                         const coap_pdu_t *req, coap_pdu_t *resp) {
  gw_t *gw = cf->gw;
  char err[256];
  proto_ticket_t pt;
  coap_opt_iterator_t oi;
  coap_opt_t *opt = coap_check_option(req, COAP_OPTION_CONTENT_FORMAT, &oi);
  int cfmt = opt ? (int)coap_decode_var_bytes(coap_opt_value(opt), coap_opt_length(opt)) : -1;
  if (cfmt != COAP_MEDIATYPE_APPLICATION_JSON && cfmt != COAP_MEDIATYPE_APPLICATION_CBOR) {
    coapfront__reject(cf, coapfront__sender(cf, session), GW_REJECT_FORMAT, resp,
                      COAP_RESPONSE_CODE_UNSUPPORTED_CONTENT_FORMAT,
                      "a ticket is Content-Format 50 (json) or 60 (cbor)");
    return -1;
  }
  size_t len = 0;
  const uint8_t *data = NULL;
  if (!coapfront__body(cf, session, res, req, resp, (size_t)gw->cfg->max_body, &data, &len))
    return -1; /* 2.31 for a block, or refused */
  if (len == 0) {
    coapfront__reject(cf, coapfront__sender(cf, session), GW_REJECT_BAD_PACK, resp,
                      COAP_RESPONSE_CODE_BAD_REQUEST, "empty payload: send one weighing ticket");
    return -1;
  }
  double now = sg_now();
  proto_ticket_limits_t lim = {now, now - PROTO_TICKET_OLDEST_DAYS * 86400.0, false};
  int rc = cfmt == COAP_MEDIATYPE_APPLICATION_CBOR
               ? proto_ticket_decode_cbor(data, len, &lim, &pt, err, sizeof(err))
               : proto_ticket_decode_json(data, len, &lim, &pt, err, sizeof(err));
  if (rc != 0) {
    coapfront__reject(cf, coapfront__sender(cf, session), GW_REJECT_BAD_PACK, resp,
                      COAP_RESPONSE_CODE_BAD_REQUEST, err);
    return -1;
  }
  gw_device_t *dev = gw_device_find(gw, pt.scale);
  char identity[PROTO_DEVICE_MAX + 2];
  coapfront__identity(session, identity, sizeof(identity));
  if (!dev || dev->conf->type != SG_DEV_SCALE) {
    snprintf(err, sizeof(err),
             dev ? "device \"%s\" is not a scale (its type is %s)"
                 : "unknown scale \"%s\": add a [device %s] section with type = scale",
             pt.scale, dev ? sg_devtype_name(dev->conf->type) : pt.scale);
    coapfront__reject(cf, dev, GW_REJECT_UNKNOWN_DEVICE, resp, COAP_RESPONSE_CODE_FORBIDDEN, err);
    return -1;
  }
  if ((identity[0] && strcmp(identity, dev->conf->id) != 0) ||
      (!identity[0] && dev->conf->psk[0])) {
    snprintf(err, sizeof(err),
             identity[0] ? "DTLS identity \"%s\" may not send for scale \"%s\""
                         : "%sscale \"%s\" has a key and must use CoAPS (DTLS)",
             identity, dev->conf->id);
    coapfront__reject(cf, dev, identity[0] ? GW_REJECT_IDENTITY : GW_REJECT_NEEDS_DTLS, resp,
                      COAP_RESPONSE_CODE_FORBIDDEN, err);
    return -1;
  }
  if (proto_ticket_check_net(&pt, dev->conf->resolution_kg, err, sizeof(err)) != 0) {
    coapfront__reject(cf, dev, GW_REJECT_BAD_PACK, resp, COAP_RESPONSE_CODE_BAD_REQUEST, err);
    return -1;
  }

  struct ticket_job *j = calloc(1, sizeof(*j));
  coap_async_t *async =
      j ? coap_register_async(session, req, COAP_TICKS_PER_SECOND * TICKET_WATCHDOG_S) : NULL;
  if (!async) {
    free(j);
    reply_busy(resp, "gateway is busy; resend the ticket");
    return -1;
  }
  stor_ticket_t st;
  stor_ticket_from_proto(&pt, "scale", &st);
  snprintf(j->scale, sizeof(j->scale), "%s", pt.scale);
  j->no = pt.no;
  j->async = async;
  j->mid = coap_pdu_get_mid(req);
  j->cf = cf;
  j->next = cf->tickets;
  if (j->next)
    j->next->prev = j;
  cf->tickets = j;
  coap_async_set_app_data(async, j);
  if ((rc = gw_ticket_submit(gw, &st, on_ticket_done, j)) != 0) {
    coap_free_async(session, async);
    job_unlink(j);
    free(j);
    if (gw_ticket_refusal(rc, &st, err, sizeof(err)) == 400)
      coapfront__reject(cf, dev, GW_REJECT_INVALID_TICKET, resp, COAP_RESPONSE_CODE_BAD_REQUEST,
                        err);
    else
      reply_busy(resp, err);
    return -1;
  }
  atomic_fetch_add_explicit(&dev->packs, 1, memory_order_relaxed);
  atomic_store_explicit(&dev->last_ms, (int64_t)(now * 1000.0), memory_order_relaxed);
  return 0;
}

static void on_post_ticket(coap_resource_t *res, coap_session_t *session, const coap_pdu_t *req,
                           const coap_string_t *query, coap_pdu_t *resp) {
  (void)query;
  struct coap_front *cf = coap_resource_get_userdata(res);
  coap_async_t *async = coap_find_async(session, coap_pdu_get_token(req));
  if (!async) {
    atomic_fetch_add_explicit(&cf->gw->counters.requests, 1, memory_order_relaxed);
    ticket_submit(cf, session, res, req, resp);
    return; /* submitted: no code, so a CON gets an empty ACK now */
  }
  struct ticket_job *j = coap_async_get_app_data(async);
  if (j && coap_pdu_get_mid(req) == j->mid)
    return; /* the request again while its commit is under way: another empty ACK */
  /* libcoap's call: triggered by on_ticket_done, or the watchdog. libcoap
   * frees the async after it. */
  coap_async_set_app_data(async, NULL);
  if (j && j->done) {
    ticket_answer(j, resp);
    job_unlink(j);
    free(j);
    return;
  }
  if (j) { /* the watchdog: storage is slow; the job waits for its result */
    j->async = NULL;
    job_unlink(j);
    log_warn("ticket %lld of %s: no commit after %d s; told the scale to resend", (long long)j->no,
             j->scale, TICKET_WATCHDOG_S);
  }
  reply_busy(resp, "the ticket is not confirmed stored yet; resend it");
}

void coapfront__tickets_orphan(struct coap_front *cf) {
  while (cf->tickets) {
    struct ticket_job *j = cf->tickets;
    j->async = NULL;
    job_unlink(j);
  }
}

void coapfront__tickets_add(struct coap_front *cf) {
  coap_resource_t *r = coap_resource_init(coap_make_str_const("w"), 0);
  coap_register_handler(r, COAP_REQUEST_POST, on_post_ticket);
  coap_resource_set_userdata(r, cf);
  coap_add_attr(r, coap_make_str_const("ct"), coap_make_str_const("\"50 60\""), 0);
  coap_add_attr(r, coap_make_str_const("rt"), coap_make_str_const("\"sitegate.ticket\""), 0);
  coap_add_attr(r, coap_make_str_const("title"), coap_make_str_const("\"weighing ticket\""), 0);
  coap_add_resource(cf->ctx, r);
}
