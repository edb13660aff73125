/* The southbound CoAP front (DESIGN.md "Southbound CoAP contract").
 *
 * libcoap runs on the gateway's libuv loop through its single epoll fd: one
 * uv_poll_t on coap_context_get_coap_fd() calls coap_io_process(NO_WAIT).
 * Debian's libcoap arms its own timerfd inside that epoll set, so
 * retransmissions fire without help; a slow libuv timer only sweeps idle
 * sessions. This is the only file that includes coap3/coap.h.
 *
 * POST /r is decoded, checked against the device registry and handed to the
 * storage queue in one piece: a pack is accepted or refused whole, and 2.04
 * means it is queued for the next group commit. */
#define LOG_MODULE "coap"

#include "gateway/coap/coap.h"
#include <coap3/coap.h>
#include <errno.h>
#include <math.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* Idle plain-UDP sessions kept before the oldest is dropped: libcoap 4.3.1
 * walks every session per packet, so thousands of sensors each with its own
 * source port would otherwise slow every request (measured: 1,000 endpoints
 * halve the rate). A dropped session costs nothing for plain CoAP. */
#define COAP_MAX_IDLE_SESSIONS 100

struct coap_front {
  gw_t *gw;
  coap_context_t *ctx;
  uv_poll_t poll;
  uv_timer_t sweep;
  int open_handles;
  proto_pack_t pack; /* decode scratch, loop thread only */
  stor_reading_t readings[PROTO_PACK_MAX];
  uint8_t dummy_key[32];      /* PSK for identities we do not know */
  struct ticket_job *tickets; /* POST /w waiting for their commit (see below) */
  struct ctl_client *ctl;     /* equipment controllers (see the end) */
};

static void reply(coap_pdu_t *resp, coap_pdu_code_t code, const char *text) {
  coap_pdu_set_code(resp, code);
  if (text && *text) {
    uint8_t buf[4];
    coap_add_option(resp, COAP_OPTION_CONTENT_FORMAT,
                    coap_encode_var_safe(buf, sizeof(buf), COAP_MEDIATYPE_TEXT_PLAIN), buf);
    coap_add_data(resp, strlen(text), (const uint8_t *)text);
  }
}

static void reject(struct coap_front *cf, gw_device_t *dev, gw_reject_t why, coap_pdu_t *resp,
                   coap_pdu_code_t code, const char *text) {
  atomic_fetch_add_explicit(&cf->gw->counters.rejects[why], 1, memory_order_relaxed);
  if (dev)
    atomic_fetch_add_explicit(&dev->rejects, 1, memory_order_relaxed);
  log_debug("refused (%s): %s", gw_reject_name(why), text);
  reply(resp, code, text);
}

/* The DTLS identity of a session as a C string ("" for plain CoAP). */
static void session_identity(const coap_session_t *s, char *out, size_t cap) {
  out[0] = '\0';
  if (coap_session_get_proto(s) != COAP_PROTO_DTLS)
    return;
  const coap_bin_const_t *id = coap_session_get_psk_identity(s);
  if (id && id->length < cap) {
    memcpy(out, id->s, id->length);
    out[id->length] = '\0';
  }
}

static void on_post_readings(coap_resource_t *res, coap_session_t *session, const coap_pdu_t *req,
                             const coap_string_t *query, coap_pdu_t *resp) {
  (void)query;
  struct coap_front *cf = coap_resource_get_userdata(res);
  gw_t *gw = cf->gw;
  char err[256];
  atomic_fetch_add_explicit(&gw->counters.requests, 1, memory_order_relaxed);

  int cfmt = COAP_MEDIATYPE_APPLICATION_SENML_JSON; /* see below */
  coap_opt_iterator_t oi;
  coap_opt_t *opt = coap_check_option(req, COAP_OPTION_CONTENT_FORMAT, &oi);
  if (!opt) {
    reject(cf, NULL, GW_REJECT_FORMAT, resp, COAP_RESPONSE_CODE_UNSUPPORTED_CONTENT_FORMAT,
           "Content-Format is required: 110 (senml+json), 112 (senml+cbor) or 50 (json)");
    return;
  }
  cfmt = (int)coap_decode_var_bytes(coap_opt_value(opt), coap_opt_length(opt));
  if (cfmt != COAP_MEDIATYPE_APPLICATION_SENML_JSON &&
      cfmt != COAP_MEDIATYPE_APPLICATION_SENML_CBOR && cfmt != COAP_MEDIATYPE_APPLICATION_JSON) {
    snprintf(err, sizeof(err),
             "Content-Format %d is not accepted: use 110 (senml+json), 112 (senml+cbor) or 50 "
             "(json)",
             cfmt);
    reject(cf, NULL, GW_REJECT_FORMAT, resp, COAP_RESPONSE_CODE_UNSUPPORTED_CONTENT_FORMAT, err);
    return;
  }

  size_t len = 0, offset = 0, total = 0;
  const uint8_t *data = NULL;
  if (!coap_get_data_large(req, &len, &data, &offset, &total) || total == 0) {
    reject(cf, NULL, GW_REJECT_BAD_PACK, resp, COAP_RESPONSE_CODE_BAD_REQUEST,
           "empty payload: send a SenML pack");
    return;
  }
  if (total > (size_t)gw->cfg->max_body) {
    uint8_t buf[4];
    snprintf(err, sizeof(err), "pack of %zu bytes is larger than the %d allowed; send it in parts",
             total, gw->cfg->max_body);
    coap_add_option(resp, COAP_OPTION_SIZE1,
                    coap_encode_var_safe(buf, sizeof(buf), (unsigned)gw->cfg->max_body), buf);
    reject(cf, NULL, GW_REJECT_TOO_LARGE, resp, COAP_RESPONSE_CODE_REQUEST_TOO_LARGE, err);
    return;
  }

  double now = sg_now();
  proto_limits_t lim = {.now = now, .oldest = now - (double)gw->cfg->raw_days * 86400.0};
  int rc = cfmt == COAP_MEDIATYPE_APPLICATION_SENML_CBOR
               ? proto_senml_decode_cbor(data, len, &lim, &cf->pack, err, sizeof(err))
               : proto_senml_decode_json(data, len, &lim, &cf->pack, err, sizeof(err));
  if (rc != 0) {
    reject(cf, NULL, GW_REJECT_BAD_PACK, resp, COAP_RESPONSE_CODE_BAD_REQUEST, err);
    return;
  }

  gw_device_t *dev = gw_device_find(gw, cf->pack.device);
  char identity[PROTO_DEVICE_MAX + 2];
  session_identity(session, identity, sizeof(identity));
  if (!dev) {
    snprintf(err, sizeof(err),
             "unknown device \"%s\": add a [device %s] section to the site config", cf->pack.device,
             cf->pack.device);
    reject(cf, NULL, GW_REJECT_UNKNOWN_DEVICE, resp, COAP_RESPONSE_CODE_FORBIDDEN, err);
    return;
  }
  if (identity[0] && strcmp(identity, dev->conf->id) != 0) {
    snprintf(err, sizeof(err), "DTLS identity \"%s\" may not send for device \"%s\"", identity,
             dev->conf->id);
    reject(cf, dev, GW_REJECT_IDENTITY, resp, COAP_RESPONSE_CODE_FORBIDDEN, err);
    return;
  }
  if (!identity[0] && dev->conf->psk[0]) {
    snprintf(err, sizeof(err), "device \"%s\" has a key and must use CoAPS (DTLS) on port %d",
             dev->conf->id, gw->cfg->dtls_port);
    reject(cf, dev, GW_REJECT_NEEDS_DTLS, resp, COAP_RESPONSE_CODE_FORBIDDEN, err);
    return;
  }

  for (size_t i = 0; i < cf->pack.n; i++) {
    cf->readings[i] = (stor_reading_t){.device = dev->db_id,
                                       .quantity = cf->pack.rec[i].quantity,
                                       .t_ms = cf->pack.rec[i].t_ms,
                                       .value = cf->pack.rec[i].value};
  }
  rc = stor_append(gw->db, cf->readings, cf->pack.n);
  if (rc != 0) {
    gw_verdict_t v;
    gw_append_verdict(rc, cf->readings, cf->pack.n, &v);
    if (v.max_age) {
      uint8_t buf[4];
      coap_add_option(resp, COAP_OPTION_MAXAGE, coap_encode_var_safe(buf, sizeof(buf), v.max_age),
                      buf);
    }
    reject(cf, dev, v.why, resp, COAP_RESPONSE_CODE(v.code), v.text);
    return;
  }
  atomic_fetch_add_explicit(&gw->counters.records, cf->pack.n, memory_order_relaxed);
  atomic_fetch_add_explicit(&dev->packs, 1, memory_order_relaxed);
  atomic_fetch_add_explicit(&dev->records, cf->pack.n, memory_order_relaxed);
  atomic_store_explicit(&dev->last_ms, (int64_t)(now * 1000.0), memory_order_relaxed);
  gw_pack_accepted(gw, dev, &cf->pack);
  coap_pdu_set_code(resp, COAP_RESPONSE_CODE_CHANGED);
}

/* DTLS: the key of the device whose id is the PSK identity. An unknown
 * identity gets a random key no client has, so its handshake fails. */
static const coap_bin_const_t *on_psk_identity(coap_bin_const_t *identity, coap_session_t *session,
                                               void *arg) {
  (void)session;
  struct coap_front *cf = arg;
  static _Thread_local coap_bin_const_t key;
  char id[PROTO_DEVICE_MAX + 1];
  if (identity->length < sizeof(id)) {
    memcpy(id, identity->s, identity->length);
    id[identity->length] = '\0';
    gw_device_t *dev = gw_device_find(cf->gw, id);
    if (dev && dev->conf->psk[0]) {
      key.s = (const uint8_t *)dev->conf->psk;
      key.length = strlen(dev->conf->psk);
      return &key;
    }
    log_warn("DTLS handshake from unknown identity \"%s\" (or a device with no psk)", id);
  }
  key.s = cf->dummy_key;
  key.length = sizeof(cf->dummy_key);
  return &key;
}

static void on_poll(uv_poll_t *h, int status, int events) {
  (void)status;
  (void)events;
  struct coap_front *cf = h->data;
  coap_io_process(cf->ctx, COAP_IO_NO_WAIT);
}

static void on_sweep(uv_timer_t *t) {
  struct coap_front *cf = t->data;
  coap_io_process(cf->ctx, COAP_IO_NO_WAIT);
}

static int bind_endpoint(struct coap_front *cf, const char *host, int port, coap_proto_t proto) {
  coap_address_t addr;
  coap_address_init(&addr);
  addr.addr.sin.sin_family = AF_INET;
  addr.addr.sin.sin_port = htons((uint16_t)port);
  addr.size = sizeof(addr.addr.sin);
  if (inet_pton(AF_INET, host, &addr.addr.sin.sin_addr) != 1) {
    addr.addr.sin6.sin6_family = AF_INET6;
    addr.addr.sin6.sin6_port = htons((uint16_t)port);
    addr.size = sizeof(addr.addr.sin6);
    if (inet_pton(AF_INET6, host, &addr.addr.sin6.sin6_addr) != 1) {
      log_err("[coap] listen: \"%s\" is not an IPv4 or IPv6 address", host);
      return -EINVAL;
    }
  }
  /* libcoap binds with SO_REUSEADDR, which lets a second gateway share the
   * port and steal half the packets; a plain bind first finds the owner. */
  int probe = socket(addr.addr.sa.sa_family, SOCK_DGRAM, 0);
  int taken = probe >= 0 && bind(probe, &addr.addr.sa, addr.size) != 0 && errno == EADDRINUSE;
  if (probe >= 0)
    close(probe);
  if (taken || !coap_new_endpoint(cf->ctx, &addr, proto)) {
    log_err("cannot listen on %s port %d (%s): is another program using it?", host, port,
            proto == COAP_PROTO_DTLS ? "CoAPS" : "CoAP");
    return -EADDRINUSE;
  }
  log_info("listening on %s %s:%d", proto == COAP_PROTO_DTLS ? "coaps" : "coap", host, port);
  return 0;
}

/* Gives the listening sockets on `port` a receive buffer for bursts: with
 * the kernel's default (208 KiB) a burst of a few hundred packs overflowed it
 * and each lost datagram cost its sensor a 2-4 s retransmission. libcoap
 * keeps its sockets to itself, so they are found by their local port. */
#define COAP_RCVBUF_BYTES (4 * 1024 * 1024)
static void grow_rcvbuf(int port) {
  for (int fd = 3; fd < 1024; fd++) {
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    int type = 0;
    socklen_t tlen = sizeof(type);
    if (getsockname(fd, (struct sockaddr *)&ss, &len) != 0 ||
        getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &tlen) != 0 || type != SOCK_DGRAM)
      continue;
    int p = ss.ss_family == AF_INET    ? ntohs(((struct sockaddr_in *)&ss)->sin_port)
            : ss.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&ss)->sin6_port)
                                       : -1;
    if (p != port)
      continue;
    int size = COAP_RCVBUF_BYTES;
    /* SO_RCVBUFFORCE passes net.core.rmem_max when we may (root or
     * CAP_NET_ADMIN); otherwise the kernel caps SO_RCVBUF at rmem_max. */
    if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof(size)) != 0)
      setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof(size));
  }
}

static int setup_dtls(struct coap_front *cf) {
  if (!coap_dtls_is_supported()) {
    log_err("this libcoap has no DTLS; set [coap] dtls_port = 0 or install libcoap3 with OpenSSL");
    return -ENOTSUP;
  }
  if (coap_prng(cf->dummy_key, sizeof(cf->dummy_key)) == 0)
    return -EIO;
  coap_dtls_spsk_t spsk;
  memset(&spsk, 0, sizeof(spsk));
  spsk.version = COAP_DTLS_SPSK_SETUP_VERSION;
  spsk.validate_id_call_back = on_psk_identity;
  spsk.id_call_back_arg = cf;
  spsk.psk_info.key.s = cf->dummy_key;
  spsk.psk_info.key.length = sizeof(cf->dummy_key);
  if (!coap_context_set_psk2(cf->ctx, &spsk))
    return -EIO;
  return 0;
}

/* ======================================================================
 * ---- weighing tickets: POST /w (DESIGN.md; the ledger is storage.h's)
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
  reply(resp, COAP_RESPONSE_CODE_SERVICE_UNAVAILABLE, text);
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
    reply(resp, COAP_RESPONSE_CODE_CONFLICT, text);
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
static int ticket_submit(struct coap_front *cf, coap_session_t *session, const coap_pdu_t *req,
                         coap_pdu_t *resp) {
  gw_t *gw = cf->gw;
  char err[256];
  proto_ticket_t pt;
  coap_opt_iterator_t oi;
  coap_opt_t *opt = coap_check_option(req, COAP_OPTION_CONTENT_FORMAT, &oi);
  int cfmt = opt ? (int)coap_decode_var_bytes(coap_opt_value(opt), coap_opt_length(opt)) : -1;
  if (cfmt != COAP_MEDIATYPE_APPLICATION_JSON && cfmt != COAP_MEDIATYPE_APPLICATION_CBOR) {
    reject(cf, NULL, GW_REJECT_FORMAT, resp, COAP_RESPONSE_CODE_UNSUPPORTED_CONTENT_FORMAT,
           "a ticket is Content-Format 50 (json) or 60 (cbor)");
    return -1;
  }
  size_t len = 0, offset = 0, total = 0;
  const uint8_t *data = NULL;
  if (!coap_get_data_large(req, &len, &data, &offset, &total) || total == 0) {
    reject(cf, NULL, GW_REJECT_BAD_PACK, resp, COAP_RESPONSE_CODE_BAD_REQUEST,
           "empty payload: send one weighing ticket");
    return -1;
  }
  if (total > (size_t)gw->cfg->max_body) {
    reject(cf, NULL, GW_REJECT_TOO_LARGE, resp, COAP_RESPONSE_CODE_REQUEST_TOO_LARGE,
           "a ticket this large is not a ticket");
    return -1;
  }
  double now = sg_now();
  proto_ticket_limits_t lim = {now, now - PROTO_TICKET_OLDEST_DAYS * 86400.0, false};
  int rc = cfmt == COAP_MEDIATYPE_APPLICATION_CBOR
               ? proto_ticket_decode_cbor(data, len, &lim, &pt, err, sizeof(err))
               : proto_ticket_decode_json(data, len, &lim, &pt, err, sizeof(err));
  if (rc != 0) {
    reject(cf, NULL, GW_REJECT_BAD_PACK, resp, COAP_RESPONSE_CODE_BAD_REQUEST, err);
    return -1;
  }
  gw_device_t *dev = gw_device_find(gw, pt.scale);
  char identity[PROTO_DEVICE_MAX + 2];
  session_identity(session, identity, sizeof(identity));
  if (!dev || dev->conf->type != SG_DEV_SCALE) {
    snprintf(err, sizeof(err),
             dev ? "device \"%s\" is not a scale (its type is %s)"
                 : "unknown scale \"%s\": add a [device %s] section with type = scale",
             pt.scale, dev ? sg_devtype_name(dev->conf->type) : pt.scale);
    reject(cf, dev, GW_REJECT_UNKNOWN_DEVICE, resp, COAP_RESPONSE_CODE_FORBIDDEN, err);
    return -1;
  }
  if ((identity[0] && strcmp(identity, dev->conf->id) != 0) ||
      (!identity[0] && dev->conf->psk[0])) {
    snprintf(err, sizeof(err),
             identity[0] ? "DTLS identity \"%s\" may not send for scale \"%s\""
                         : "%sscale \"%s\" has a key and must use CoAPS (DTLS)",
             identity, dev->conf->id);
    reject(cf, dev, identity[0] ? GW_REJECT_IDENTITY : GW_REJECT_NEEDS_DTLS, resp,
           COAP_RESPONSE_CODE_FORBIDDEN, err);
    return -1;
  }
  if (proto_ticket_check_net(&pt, dev->conf->resolution_kg, err, sizeof(err)) != 0) {
    reject(cf, dev, GW_REJECT_BAD_PACK, resp, COAP_RESPONSE_CODE_BAD_REQUEST, err);
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
      reject(cf, dev, GW_REJECT_INVALID_TICKET, resp, COAP_RESPONSE_CODE_BAD_REQUEST, err);
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
    ticket_submit(cf, session, req, resp);
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

/* When the front stops: libcoap is about to free every async. */
static void tickets_orphan(struct coap_front *cf) {
  while (cf->tickets) {
    struct ticket_job *j = cf->tickets;
    j->async = NULL;
    job_unlink(j);
  }
}

/* ---- end of weighing tickets */

static void add_resources(struct coap_front *cf) {
  coap_resource_t *r = coap_resource_init(coap_make_str_const("r"), 0);
  coap_register_handler(r, COAP_REQUEST_POST, on_post_readings);
  coap_resource_set_userdata(r, cf);
  coap_add_attr(r, coap_make_str_const("ct"), coap_make_str_const("\"110 112 50\""), 0);
  coap_add_attr(r, coap_make_str_const("rt"), coap_make_str_const("\"sitegate.readings\""), 0);
  coap_add_attr(r, coap_make_str_const("title"), coap_make_str_const("\"SenML readings\""), 0);
  coap_add_resource(cf->ctx, r);
  /* weighing tickets (section above) */
  r = coap_resource_init(coap_make_str_const("w"), 0);
  coap_register_handler(r, COAP_REQUEST_POST, on_post_ticket);
  coap_resource_set_userdata(r, cf);
  coap_add_attr(r, coap_make_str_const("ct"), coap_make_str_const("\"50 60\""), 0);
  coap_add_attr(r, coap_make_str_const("rt"), coap_make_str_const("\"sitegate.ticket\""), 0);
  coap_add_attr(r, coap_make_str_const("title"), coap_make_str_const("\"weighing ticket\""), 0);
  coap_add_resource(cf->ctx, r);
}

static void on_handle_closed(uv_handle_t *h) {
  struct coap_front *cf = h->data;
  if (--cf->open_handles == 0)
    free(cf);
}

int coapfront_start(gw_t *gw, struct coap_front **out) {
  struct coap_front *cf = calloc(1, sizeof(*cf));
  int rc = -ENOMEM;
  *out = NULL;
  if (!cf)
    return rc;
  cf->gw = gw;
  coap_startup();
  coap_set_log_level(log_threshold >= LOG_LVL_DEBUG ? LOG_INFO : LOG_ERR);
  coap_dtls_set_log_level(LOG_ERR);
  cf->ctx = coap_new_context(NULL);
  if (!cf->ctx)
    goto fail;
  coap_context_set_block_mode(cf->ctx, COAP_BLOCK_USE_LIBCOAP | COAP_BLOCK_SINGLE_BODY);
  coap_context_set_max_idle_sessions(cf->ctx, COAP_MAX_IDLE_SESSIONS);
  const sg_config_t *cfg = gw->cfg;
  if ((rc = bind_endpoint(cf, cfg->coap_listen, cfg->coap_port, COAP_PROTO_UDP)) != 0)
    goto fail;
  if (cfg->dtls_port) {
    if ((rc = setup_dtls(cf)) != 0 ||
        (rc = bind_endpoint(cf, cfg->coap_listen, cfg->dtls_port, COAP_PROTO_DTLS)) != 0)
      goto fail;
  }
  add_resources(cf);
  grow_rcvbuf(cfg->coap_port);
  if (cfg->dtls_port)
    grow_rcvbuf(cfg->dtls_port);
  int fd = coap_context_get_coap_fd(cf->ctx);
  if (fd < 0) {
    rc = -ENOTSUP;
    log_err("libcoap gives no epoll fd; it must be built with epoll support");
    goto fail;
  }
  uv_poll_init(gw->loop, &cf->poll, fd);
  uv_timer_init(gw->loop, &cf->sweep);
  cf->poll.data = cf->sweep.data = cf;
  cf->open_handles = 2;
  uv_poll_start(&cf->poll, UV_READABLE, on_poll);
  uv_timer_start(&cf->sweep, on_sweep, 1000, 1000);
  coap_io_process(cf->ctx, COAP_IO_NO_WAIT); /* prime libcoap's timers */
  *out = cf;
  return 0;
fail:
  if (cf->ctx)
    coap_free_context(cf->ctx);
  free(cf);
  return rc;
}

static void ctl_free(struct coap_front *cf);

void coapfront_stop(struct coap_front *cf) {
  if (!cf)
    return;
  ctl_free(cf);
  /* The poll handle watches libcoap's fd: close it before the context. */
  uv_close((uv_handle_t *)&cf->poll, on_handle_closed);
  uv_close((uv_handle_t *)&cf->sweep, on_handle_closed);
  tickets_orphan(cf);
  coap_free_context(cf->ctx);
  cf->ctx = NULL;
  coap_cleanup();
}

/* ======================================================================
 * ---- equipment controllers: the gateway as a CoAP client
 *
 * Each controller gets one plain-UDP client session in this same libcoap
 * context (so the same uv_poll drives it), opened on first use. Requests
 * are CON with an 8-byte token: libcoap retransmits them (ACK timeout
 * CTL_ACK_TIMEOUT_MS, CTL_MAX_RETRANSMIT times, so about 15 s before it
 * gives up) and reports the answer or the failure to the handlers below,
 * which find the request by its token. The observation of /state keeps one
 * token per controller, so registering again refreshes the same
 * observation; a notification with a token we do not know (an observation
 * from before a restart) is answered with RST, which cancels it
 * (RFC 7641 3.6). Host names are resolved once, when the controller is
 * first used (at start-up). */
#define CTL_ACK_TIMEOUT_MS 1000
#define CTL_MAX_RETRANSMIT 3
#define CTL_PAYLOAD_MAX 256

typedef struct ctl_peer {
  struct coap_front *cf;
  char uri[128];
  char base[96]; /* path before state and ctl, "" for none */
  coap_session_t *s;
  coapfront_state_cb cb;
  void *arg;
  uint64_t obs_token;
  struct ctl_peer *next;
} ctl_peer_t;

typedef struct ctl_req {
  uint64_t token;
  coapfront_done_cb cb;
  void *arg;
  uint64_t tag;
  struct ctl_req *next;
} ctl_req_t;

struct ctl_client {
  ctl_peer_t *peers;
  ctl_req_t *reqs;
  uint64_t next_token;
};

static uint64_t ctl_token_of(const coap_pdu_t *pdu, bool *ok) {
  coap_bin_const_t tok = coap_pdu_get_token(pdu);
  uint64_t v = 0;
  *ok = tok.length == 8;
  for (size_t i = 0; *ok && i < 8; i++)
    v = v << 8 | tok.s[i];
  return v;
}

static int ctl_code(const coap_pdu_t *pdu) {
  coap_pdu_code_t c = coap_pdu_get_code(pdu);
  return (int)(c >> 5) * 100 + (int)(c & 0x1f);
}

/* {"on":true,"power_kw":41.5[,"demand":false]} */
static int ctl_parse_state(const coap_pdu_t *pdu, coapfront_state_t *st) {
  size_t len = 0;
  const uint8_t *data = NULL;
  if (!coap_get_data(pdu, &len, &data) || len == 0)
    return -EBADMSG;
  json_t *j = json_loadb((const char *)data, len, 0, NULL);
  json_t *on = json_object_get(j, "on"), *kw = json_object_get(j, "power_kw"),
         *dem = json_object_get(j, "demand");
  int rc = json_is_boolean(on) ? 0 : -EBADMSG;
  st->on = json_is_true(on);
  st->power_kw = json_is_number(kw) ? json_number_value(kw) : NAN;
  st->demand = json_is_boolean(dem) ? json_is_true(dem) : -1;
  json_decref(j);
  return rc;
}

static coap_response_t ctl_on_response(coap_session_t *session, const coap_pdu_t *sent,
                                       const coap_pdu_t *received, const coap_mid_t mid) {
  (void)sent;
  (void)mid;
  bool client = coap_session_get_type(session) == COAP_SESSION_TYPE_CLIENT;
  ctl_peer_t *peer = client ? coap_session_get_app_data(session) : NULL;
  struct coap_front *cf = peer ? peer->cf : NULL;
  bool ok;
  uint64_t token = ctl_token_of(received, &ok);
  if (!cf || !cf->ctl || !ok || coap_pdu_get_code(received) == COAP_EMPTY_CODE)
    return COAP_RESPONSE_OK;
  int code = ctl_code(received);
  if (token == peer->obs_token) {
    coapfront_state_t st;
    int rc = code / 100 != 2 ? -EPROTO : ctl_parse_state(received, &st);
    if (rc != 0)
      log_warn("%s/state: %s (%d.%02d)", peer->uri, rc == -EPROTO ? "refused" : "not a state",
               code / 100, code % 100);
    if (peer->cb)
      peer->cb(peer->arg, rc == 0 ? &st : NULL, rc);
    return COAP_RESPONSE_OK;
  }
  for (ctl_req_t **pp = &cf->ctl->reqs; *pp; pp = &(*pp)->next) {
    ctl_req_t *r = *pp;
    if (r->token != token)
      continue;
    *pp = r->next;
    r->cb(r->arg, r->tag, code / 100 == 2 ? 0 : -EPROTO, code);
    free(r);
    return COAP_RESPONSE_OK;
  }
  return COAP_RESPONSE_FAIL; /* an observation we no longer hold: RST cancels it */
}

static void ctl_on_nack(coap_session_t *session, const coap_pdu_t *sent,
                        const coap_nack_reason_t reason, const coap_mid_t mid) {
  (void)mid;
  bool client = coap_session_get_type(session) == COAP_SESSION_TYPE_CLIENT;
  ctl_peer_t *peer = client ? coap_session_get_app_data(session) : NULL;
  struct coap_front *cf = peer ? peer->cf : NULL;
  bool ok;
  uint64_t token = sent ? ctl_token_of(sent, &ok) : 0;
  if (!cf || !cf->ctl || !sent || !ok)
    return;
  int err = reason == COAP_NACK_RST ? -ECONNREFUSED : -ETIMEDOUT;
  if (token == peer->obs_token) {
    if (peer->cb)
      peer->cb(peer->arg, NULL, err);
    return;
  }
  for (ctl_req_t **pp = &cf->ctl->reqs; *pp; pp = &(*pp)->next) {
    ctl_req_t *r = *pp;
    if (r->token != token)
      continue;
    *pp = r->next;
    r->cb(r->arg, r->tag, err, 0);
    free(r);
    return;
  }
}

static struct ctl_client *ctl_client(struct coap_front *cf) {
  if (cf->ctl)
    return cf->ctl;
  cf->ctl = calloc(1, sizeof(*cf->ctl));
  if (!cf->ctl)
    return NULL;
  if (coap_prng(&cf->ctl->next_token, sizeof(cf->ctl->next_token)) == 0)
    cf->ctl->next_token = (uint64_t)(sg_now() * 1000.0);
  coap_register_response_handler(cf->ctx, ctl_on_response);
  coap_register_nack_handler(cf->ctx, ctl_on_nack);
  return cf->ctl;
}

/* Opens the session of `uri`, or finds it. NULL after logging why. */
static ctl_peer_t *ctl_peer(struct coap_front *cf, const char *uri) {
  struct ctl_client *cc = ctl_client(cf);
  if (!cc)
    return NULL;
  for (ctl_peer_t *p = cc->peers; p; p = p->next)
    if (strcmp(p->uri, uri) == 0)
      return p;
  coap_uri_t u;
  char host[64];
  if (strlen(uri) >= sizeof(((ctl_peer_t *)0)->uri) ||
      coap_split_uri((const uint8_t *)uri, strlen(uri), &u) != 0 ||
      u.scheme != COAP_URI_SCHEME_COAP || u.host.length == 0 || u.host.length >= sizeof(host) ||
      u.path.length >= sizeof(((ctl_peer_t *)0)->base)) {
    log_err("controller %s: use coap://HOST[:PORT][/PATH] (coaps is not supported yet)", uri);
    return NULL;
  }
  memcpy(host, u.host.s, u.host.length);
  host[u.host.length] = '\0';
  struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_DGRAM}, *ai = NULL;
  int grc = getaddrinfo(host, NULL, &hints, &ai);
  if (grc != 0) {
    log_err("controller %s: %s: %s", uri, host, gai_strerror(grc));
    return NULL;
  }
  coap_address_t dst;
  coap_address_init(&dst);
  memcpy(&dst.addr, ai->ai_addr, ai->ai_addrlen);
  dst.size = ai->ai_addrlen;
  if (ai->ai_family == AF_INET6)
    dst.addr.sin6.sin6_port = htons(u.port);
  else
    dst.addr.sin.sin_port = htons(u.port);
  freeaddrinfo(ai);
  ctl_peer_t *p = calloc(1, sizeof(*p));
  if (!p)
    return NULL;
  p->s = coap_new_client_session(cf->ctx, NULL, &dst, COAP_PROTO_UDP);
  if (!p->s) {
    log_err("controller %s: cannot open a CoAP session", uri);
    free(p);
    return NULL;
  }
  coap_fixed_point_t ack = {CTL_ACK_TIMEOUT_MS / 1000, CTL_ACK_TIMEOUT_MS % 1000};
  coap_session_set_ack_timeout(p->s, ack);
  coap_session_set_max_retransmit(p->s, CTL_MAX_RETRANSMIT);
  coap_session_set_app_data(p->s, p);
  p->cf = cf;
  snprintf(p->uri, sizeof(p->uri), "%s", uri);
  if (u.path.length) /* s may be NULL when it is empty */
    memcpy(p->base, u.path.s, u.path.length);
  p->base[u.path.length] = '\0';
  p->obs_token = cc->next_token++;
  p->next = cc->peers;
  cc->peers = p;
  return p;
}

/* A CON request to BASE/leaf with token `token`; the payload may be NULL. */
static int ctl_send(ctl_peer_t *p, coap_pdu_code_t code, const char *leaf, uint64_t token,
                    bool observe, const char *payload) {
  coap_pdu_t *pdu = coap_pdu_init(COAP_MESSAGE_CON, code, coap_new_message_id(p->s),
                                  coap_session_max_pdu_size(p->s));
  if (!pdu)
    return -ENOMEM;
  uint8_t tok[8], buf[4];
  for (int i = 7; i >= 0; i--, token >>= 8)
    tok[i] = (uint8_t)token;
  bool ok = coap_add_token(pdu, sizeof(tok), tok);
  if (observe)
    ok = ok && coap_add_option(pdu, COAP_OPTION_OBSERVE,
                               coap_encode_var_safe(buf, sizeof(buf), COAP_OBSERVE_ESTABLISH), buf);
  for (const char *seg = p->base; ok && *seg;) { /* Uri-Path options, in order */
    size_t n = strcspn(seg, "/");
    if (n)
      ok = coap_add_option(pdu, COAP_OPTION_URI_PATH, n, (const uint8_t *)seg);
    seg += n + (seg[n] == '/');
  }
  ok = ok && coap_add_option(pdu, COAP_OPTION_URI_PATH, strlen(leaf), (const uint8_t *)leaf);
  if (payload)
    ok = ok &&
         coap_add_option(pdu, COAP_OPTION_CONTENT_FORMAT,
                         coap_encode_var_safe(buf, sizeof(buf), COAP_MEDIATYPE_APPLICATION_JSON),
                         buf) &&
         coap_add_data(pdu, strlen(payload), (const uint8_t *)payload);
  if (!ok) {
    coap_delete_pdu(pdu);
    return -EMSGSIZE;
  }
  return coap_send(p->s, pdu) == COAP_INVALID_MID ? -EIO : 0;
}

int coapfront_observe(struct coap_front *cf, const char *uri, coapfront_state_cb cb, void *arg) {
  ctl_peer_t *p = ctl_peer(cf, uri);
  if (!p)
    return -EINVAL;
  p->cb = cb;
  p->arg = arg;
  return ctl_send(p, COAP_REQUEST_CODE_GET, "state", p->obs_token, true, NULL);
}

int coapfront_command(struct coap_front *cf, const char *uri, bool on, const char *reason,
                      coapfront_done_cb cb, void *arg, uint64_t tag) {
  ctl_peer_t *p = ctl_peer(cf, uri);
  if (!p)
    return -EINVAL;
  json_t *j = json_pack("{s:b,s:s}", "on", on, "reason", reason ? reason : "");
  char *payload = j ? json_dumps(j, JSON_COMPACT) : NULL;
  json_decref(j);
  ctl_req_t *r = calloc(1, sizeof(*r));
  if (!payload || !r || strlen(payload) > CTL_PAYLOAD_MAX) {
    free(payload);
    free(r);
    return -ENOMEM;
  }
  *r = (ctl_req_t){.token = cf->ctl->next_token++, .cb = cb, .arg = arg, .tag = tag};
  int rc = ctl_send(p, COAP_REQUEST_CODE_PUT, "ctl", r->token, false, payload);
  free(payload);
  if (rc != 0) {
    free(r);
    return rc;
  }
  r->next = cf->ctl->reqs;
  cf->ctl->reqs = r;
  return 0;
}

/* Before the context goes: no callback may run after the front stops. */
static void ctl_free(struct coap_front *cf) {
  struct ctl_client *cc = cf->ctl;
  if (!cc)
    return;
  cf->ctl = NULL;
  for (ctl_peer_t *p = cc->peers, *next; p; p = next) {
    next = p->next;
    coap_session_set_app_data(p->s, NULL);
    free(p);
  }
  for (ctl_req_t *r = cc->reqs, *next; r; r = next) {
    next = r->next;
    free(r);
  }
  free(cc);
}
