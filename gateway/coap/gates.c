/* Machinery entries and exits: POST /g (protocol/COAP.md), from gate
 * readers (devices of type gate). Shaped exactly as tickets.c, for the
 * same reason: the answer promises the event is durably stored, so it is
 * a separate response (RFC 7252 5.2.2) sent once the move has committed,
 * with libcoap's async support:
 *   1. the first call decodes and checks the event, registers an async,
 *      submits the move (core's gw_move_submit) and returns without a
 *      code: a CON request gets an empty ACK at once;
 *   2. the result arrives on the loop in on_move_done(), which triggers
 *      the async;
 *   3. libcoap calls the handler again with its stored copy (a new message
 *      id), which answers 2.01, 2.04 (a resend: the same gate, number and
 *      content are stored), 4.09 (the number is stored with other content)
 *      or 5.03.
 * A retransmission of the request (the original message id) while the
 * commit is under way gets another empty ACK; the watchdog answers 5.03
 * when storage is stuck; the front's stop orphans waiting jobs. */
#define LOG_MODULE "coap"

#include "gateway/coap/coap_int.h"
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define GATE_WATCHDOG_S 10 /* longest wait for a commit before 5.03 */
#define GATE_RETRY_S 2     /* Max-Age of that 5.03 */
#define GATE_BODY_MAX 512  /* an event is five short fields */

struct gate_job {
  struct coap_front *cf; /* NULL once orphaned */
  coap_async_t *async;   /* NULL once libcoap has answered or dropped it */
  bool done;
  stor_move_result_t res;
  char gate[PROTO_DEVICE_MAX + 1];
  int64_t no;
  coap_mid_t mid; /* of the request as the gate sent it */
  struct gate_job *prev, *next;
};

static void job_unlink(struct gate_job *j) {
  if (!j->cf)
    return;
  if (j->prev)
    j->prev->next = j->next;
  else
    j->cf->gates = j->next;
  if (j->next)
    j->next->prev = j->prev;
  j->cf = NULL;
  j->prev = j->next = NULL;
}

static void reply_busy(coap_pdu_t *resp, const char *text) {
  uint8_t buf[4];
  coap_add_option(resp, COAP_OPTION_MAXAGE, coap_encode_var_safe(buf, sizeof(buf), GATE_RETRY_S),
                  buf);
  coapfront__reply(resp, COAP_RESPONSE_CODE_SERVICE_UNAVAILABLE, text);
}

/* The separate response, from a job whose result has come. */
static void gate_answer(struct gate_job *j, coap_pdu_t *resp) {
  char text[256];
  uint8_t buf[4];
  switch (j->res.status) {
  case STOR_MOVE_CREATED:
  case STOR_MOVE_SAME:
    snprintf(text, sizeof(text), "{\"id\":%lld}", (long long)j->res.id);
    coap_pdu_set_code(resp, j->res.status == STOR_MOVE_CREATED ? COAP_RESPONSE_CODE_CREATED
                                                               : COAP_RESPONSE_CODE_CHANGED);
    coap_add_option(resp, COAP_OPTION_CONTENT_FORMAT,
                    coap_encode_var_safe(buf, sizeof(buf), COAP_MEDIATYPE_APPLICATION_JSON), buf);
    coap_add_data(resp, strlen(text), (const uint8_t *)text);
    break;
  case -EEXIST:
    snprintf(text, sizeof(text),
             "event %lld of %s is stored (entry %lld) with other content; a gate never reuses "
             "an event number",
             (long long)j->no, j->gate, (long long)j->res.id);
    log_warn("%s", text);
    coapfront__reply(resp, COAP_RESPONSE_CODE_CONFLICT, text);
    break;
  default:
    snprintf(text, sizeof(text), "the event could not be stored (%s); keep it and resend",
             strerror(-j->res.status));
    reply_busy(resp, text);
    break;
  }
}

/* Loop thread: the move's result (or NULL when the gateway stopped). */
static void on_move_done(void *arg, const stor_move_t *mv, const stor_move_result_t *res) {
  (void)mv;
  struct gate_job *j = arg;
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

/* The first call of POST /g: checks, then submits. */
static void gate_submit(struct coap_front *cf, coap_session_t *session, const coap_resource_t *res,
                        const coap_pdu_t *req, coap_pdu_t *resp) {
  gw_t *gw = cf->gw;
  char err[256];
  proto_gate_event_t ev;
  coap_opt_iterator_t oi;
  coap_opt_t *opt = coap_check_option(req, COAP_OPTION_CONTENT_FORMAT, &oi);
  int cfmt = opt ? (int)coap_decode_var_bytes(coap_opt_value(opt), coap_opt_length(opt)) : -1;
  if (cfmt != COAP_MEDIATYPE_APPLICATION_JSON && cfmt != COAP_MEDIATYPE_APPLICATION_CBOR) {
    coapfront__reject(cf, coapfront__sender(cf, session), GW_REJECT_FORMAT, resp,
                      COAP_RESPONSE_CODE_UNSUPPORTED_CONTENT_FORMAT,
                      "a gate event is Content-Format 50 (json) or 60 (cbor)");
    return;
  }
  size_t len = 0;
  const uint8_t *data = NULL;
  size_t max = GATE_BODY_MAX < gw->cfg->max_body ? GATE_BODY_MAX : (size_t)gw->cfg->max_body;
  if (!coapfront__body(cf, session, res, req, resp, max, &data, &len))
    return; /* 2.31 for a block, or refused */
  if (len == 0) {
    coapfront__reject(cf, coapfront__sender(cf, session), GW_REJECT_BAD_PACK, resp,
                      COAP_RESPONSE_CODE_BAD_REQUEST, "empty payload: send one gate event");
    return;
  }
  double now = sg_now();
  int rc = cfmt == COAP_MEDIATYPE_APPLICATION_CBOR
               ? proto_gate_decode_cbor(data, len, now, now - (double)gw->cfg->raw_days * 86400.0,
                                        &ev, err, sizeof(err))
               : proto_gate_decode_json(data, len, now, now - (double)gw->cfg->raw_days * 86400.0,
                                        &ev, err, sizeof(err));
  if (rc != 0) {
    coapfront__reject(cf, coapfront__sender(cf, session), GW_REJECT_BAD_PACK, resp,
                      COAP_RESPONSE_CODE_BAD_REQUEST, err);
    return;
  }
  gw_device_t *dev = gw_device_find(gw, ev.gate);
  char identity[PROTO_DEVICE_MAX + 2];
  coapfront__identity(session, identity, sizeof(identity));
  if (!dev || dev->conf->type != SG_DEV_GATE) {
    snprintf(err, sizeof(err),
             dev ? "device \"%s\" is not a gate reader (its type is %s)"
                 : "unknown gate \"%s\": add a [device %s] section with type = gate",
             ev.gate, dev ? sg_devtype_name(dev->conf->type) : ev.gate);
    coapfront__reject(cf, dev, GW_REJECT_UNKNOWN_DEVICE, resp, COAP_RESPONSE_CODE_FORBIDDEN, err);
    return;
  }
  if ((identity[0] && strcmp(identity, dev->conf->id) != 0) ||
      (!identity[0] && dev->conf->psk[0])) {
    snprintf(err, sizeof(err),
             identity[0] ? "DTLS identity \"%s\" may not send for gate \"%s\""
                         : "%sgate \"%s\" has a key and must use CoAPS (DTLS)",
             identity, dev->conf->id);
    coapfront__reject(cf, dev, identity[0] ? GW_REJECT_IDENTITY : GW_REJECT_NEEDS_DTLS, resp,
                      COAP_RESPONSE_CODE_FORBIDDEN, err);
    return;
  }

  struct gate_job *j = calloc(1, sizeof(*j));
  coap_async_t *async =
      j ? coap_register_async(session, req, COAP_TICKS_PER_SECOND * GATE_WATCHDOG_S) : NULL;
  if (!async) {
    free(j);
    reply_busy(resp, "gateway is busy; resend the event");
    return;
  }
  stor_move_t mv;
  memset(&mv, 0, sizeof(mv));
  snprintf(mv.gate, sizeof(mv.gate), "%s", ev.gate);
  mv.no = ev.no;
  snprintf(mv.code, sizeof(mv.code), "%s", ev.code);
  mv.in = ev.in;
  mv.t = (double)ev.t;
  snprintf(mv.source, sizeof(mv.source), "gate");
  snprintf(mv.actor, sizeof(mv.actor), "%s", ev.gate);
  mv.received = now;
  snprintf(j->gate, sizeof(j->gate), "%s", ev.gate);
  j->no = ev.no;
  j->async = async;
  j->mid = coap_pdu_get_mid(req);
  j->cf = cf;
  j->next = cf->gates;
  if (j->next)
    j->next->prev = j;
  cf->gates = j;
  coap_async_set_app_data(async, j);
  if ((rc = gw_move_submit(gw, &mv, on_move_done, j)) != 0) {
    coap_free_async(session, async);
    job_unlink(j);
    free(j);
    snprintf(err, sizeof(err), "the event could not be queued (%s); resend it", strerror(-rc));
    reply_busy(resp, err);
    return;
  }
  atomic_fetch_add_explicit(&dev->packs, 1, memory_order_relaxed);
  atomic_store_explicit(&dev->last_ms, (int64_t)(now * 1000.0), memory_order_relaxed);
}

static void on_post_gate(coap_resource_t *res, coap_session_t *session, const coap_pdu_t *req,
                         const coap_string_t *query, coap_pdu_t *resp) {
  (void)query;
  struct coap_front *cf = coap_resource_get_userdata(res);
  coap_async_t *async = coap_find_async(session, coap_pdu_get_token(req));
  if (!async) {
    atomic_fetch_add_explicit(&cf->gw->counters.requests, 1, memory_order_relaxed);
    gate_submit(cf, session, res, req, resp);
    return; /* submitted: no code, so a CON gets an empty ACK now */
  }
  struct gate_job *j = coap_async_get_app_data(async);
  if (j && coap_pdu_get_mid(req) == j->mid)
    return; /* the request again while its commit is under way: another empty ACK */
  coap_async_set_app_data(async, NULL);
  if (j && j->done) {
    gate_answer(j, resp);
    job_unlink(j);
    free(j);
    return;
  }
  if (j) { /* the watchdog: storage is slow; the job waits for its result */
    j->async = NULL;
    job_unlink(j);
    log_warn("gate event %lld of %s: no commit after %d s; told the gate to resend",
             (long long)j->no, j->gate, GATE_WATCHDOG_S);
  }
  reply_busy(resp, "the event is not confirmed stored yet; resend it");
}

void coapfront__gates_orphan(struct coap_front *cf) {
  while (cf->gates) {
    struct gate_job *j = cf->gates;
    j->async = NULL;
    job_unlink(j);
  }
}

void coapfront__gates_add(struct coap_front *cf) {
  coap_resource_t *r = coap_resource_init(coap_make_str_const("g"), 0);
  coap_register_handler(r, COAP_REQUEST_POST, on_post_gate);
  coap_resource_set_userdata(r, cf);
  coap_add_attr(r, coap_make_str_const("ct"), coap_make_str_const("\"50 60\""), 0);
  coap_add_attr(r, coap_make_str_const("rt"), coap_make_str_const("\"sitegate.gate\""), 0);
  coap_add_attr(r, coap_make_str_const("title"), coap_make_str_const("\"machinery gate event\""),
                0);
  coap_add_resource(cf->ctx, r);
}
