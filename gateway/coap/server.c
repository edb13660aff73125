/* The CoAP server of sensors (protocol/COAP.md): binds CoAP and CoAPS,
 * answers DTLS handshakes with the device's PSK, serves POST /r, and runs
 * libcoap on the gateway's libuv loop. It owns the libcoap context that
 * tickets.c (POST /w) and client.c (the equipment controllers) share, so
 * starting and stopping the front happen here.
 *
 * libcoap runs through its single epoll fd: one uv_poll_t on
 * coap_context_get_coap_fd() drains it (on_poll: coap_io_process's two
 * halves, the timers prepared once a drain). Debian's
 * libcoap arms its own timerfd inside that epoll set, so retransmissions
 * fire without help; a slow libuv timer only sweeps idle sessions.
 *
 * POST /r is decoded, checked against the device registry and handed to the
 * storage queue in one piece: a pack is accepted or refused whole, and 2.04
 * means it is queued for the next group commit. */
#define LOG_MODULE "coap"

#include "gateway/coap/coap_int.h"
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

/* Idle sessions kept before the oldest is dropped: libcoap 4.3.1 walks
 * every session per packet, so thousands of sensors each with its own
 * source port would otherwise slow every request (measured: 1,000 endpoints
 * halve the rate; 1,024 kept against 100 cost 10-20 % of requests/s with
 * 1,000 ports). A dropped session costs nothing for plain CoAP. libcoap
 * also counts DTLS handshakes past the cookie as idle, so the limit is this
 * plus one per keyed device: every device may shake hands at once (after a
 * power cut) without pushing another's handshake out (test_dtls_idle.sh:
 * 43 of 150 stalled for over 10 s under ASan at 100). */
#define COAP_MAX_IDLE_SESSIONS 100

void coapfront__reply(coap_pdu_t *resp, coap_pdu_code_t code, const char *text) {
  coap_pdu_set_code(resp, code);
  if (text && *text) {
    uint8_t buf[4];
    coap_add_option(resp, COAP_OPTION_CONTENT_FORMAT,
                    coap_encode_var_safe(buf, sizeof(buf), COAP_MEDIATYPE_TEXT_PLAIN), buf);
    coap_add_data(resp, strlen(text), (const uint8_t *)text);
  }
}

void coapfront__reject(struct coap_front *cf, gw_device_t *dev, gw_reject_t why, coap_pdu_t *resp,
                       coap_pdu_code_t code, const char *text) {
  atomic_fetch_add_explicit(&cf->gw->counters.rejects[why], 1, memory_order_relaxed);
  if (dev)
    gw_device_reject(dev, why);
  log_debug("refused (%s): %s", gw_reject_name(why), text);
  coapfront__reply(resp, code, text);
}

void coapfront__identity(const coap_session_t *s, char *out, size_t cap) {
  out[0] = '\0';
  if (coap_session_get_proto(s) != COAP_PROTO_DTLS)
    return;
  const coap_bin_const_t *id = coap_session_get_psk_identity(s);
  if (id && id->length < cap) {
    memcpy(out, id->s, id->length);
    out[id->length] = '\0';
  }
}

gw_device_t *coapfront__sender(struct coap_front *cf, const coap_session_t *s) {
  char identity[PROTO_DEVICE_MAX + 2];
  coapfront__identity(s, identity, sizeof(identity));
  return identity[0] ? gw_device_find(cf->gw, identity) : NULL;
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
    coapfront__reject(
        cf, NULL, GW_REJECT_FORMAT, resp, COAP_RESPONSE_CODE_UNSUPPORTED_CONTENT_FORMAT,
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
    coapfront__reject(cf, coapfront__sender(cf, session), GW_REJECT_FORMAT, resp,
                      COAP_RESPONSE_CODE_UNSUPPORTED_CONTENT_FORMAT, err);
    return;
  }

  size_t len = 0;
  const uint8_t *data = NULL;
  if (!coapfront__body(cf, session, res, req, resp, (size_t)gw->cfg->max_body, &data, &len))
    return; /* 2.31 for a block, or refused */
  if (len == 0) {
    coapfront__reject(cf, coapfront__sender(cf, session), GW_REJECT_BAD_PACK, resp,
                      COAP_RESPONSE_CODE_BAD_REQUEST, "empty payload: send a SenML pack");
    return;
  }
  double now = sg_now();
  proto_limits_t lim = {.now = now, .oldest = now - (double)gw->cfg->raw_days * 86400.0};
  int rc = cfmt == COAP_MEDIATYPE_APPLICATION_SENML_CBOR
               ? proto_senml_decode_cbor(data, len, &lim, &cf->pack, err, sizeof(err))
               : proto_senml_decode_json(data, len, &lim, &cf->pack, err, sizeof(err));
  if (rc != 0) {
    coapfront__reject(cf, coapfront__sender(cf, session), GW_REJECT_BAD_PACK, resp,
                      COAP_RESPONSE_CODE_BAD_REQUEST, err);
    return;
  }

  gw_device_t *dev = gw_device_find(gw, cf->pack.device);
  char identity[PROTO_DEVICE_MAX + 2];
  coapfront__identity(session, identity, sizeof(identity));
  if (!dev) {
    snprintf(err, sizeof(err),
             "unknown device \"%s\": add a [device %s] section to the site config", cf->pack.device,
             cf->pack.device);
    coapfront__reject(cf, NULL, GW_REJECT_UNKNOWN_DEVICE, resp, COAP_RESPONSE_CODE_FORBIDDEN, err);
    return;
  }
  if (identity[0] && strcmp(identity, dev->conf->id) != 0) {
    snprintf(err, sizeof(err), "DTLS identity \"%s\" may not send for device \"%s\"", identity,
             dev->conf->id);
    coapfront__reject(cf, dev, GW_REJECT_IDENTITY, resp, COAP_RESPONSE_CODE_FORBIDDEN, err);
    return;
  }
  if (!identity[0] && dev->conf->psk[0]) {
    snprintf(err, sizeof(err), "device \"%s\" has a key and must use CoAPS (DTLS) on port %d",
             dev->conf->id, gw->cfg->dtls_port);
    coapfront__reject(cf, dev, GW_REJECT_NEEDS_DTLS, resp, COAP_RESPONSE_CODE_FORBIDDEN, err);
    return;
  }

  /* A record without t is stamped with the receipt time (SenML: "now"), to
   * the millisecond: two packs of one device in one millisecond would share
   * it, and storage would take the second for a resend of the first and
   * drop it after its 2.04 (issue 13). So a device's receipt times only go
   * forward, by a millisecond at least: decoded again when they would not. */
  int64_t last = atomic_load_explicit(&dev->last_ms, memory_order_relaxed);
  if (llround(now * 1000.0) <= last) {
    now = lim.now = ((double)last + 1.0) / 1000.0;
    rc = cfmt == COAP_MEDIATYPE_APPLICATION_SENML_CBOR
             ? proto_senml_decode_cbor(data, len, &lim, &cf->pack, err, sizeof(err))
             : proto_senml_decode_json(data, len, &lim, &cf->pack, err, sizeof(err));
    if (rc != 0) { /* it decoded a moment ago */
      coapfront__reject(cf, dev, GW_REJECT_BAD_PACK, resp, COAP_RESPONSE_CODE_BAD_REQUEST, err);
      return;
    }
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
    coapfront__reject(cf, dev, v.why, resp, COAP_RESPONSE_CODE(v.code), v.text);
    return;
  }
  atomic_fetch_add_explicit(&gw->counters.records, cf->pack.n, memory_order_relaxed);
  atomic_fetch_add_explicit(&dev->packs, 1, memory_order_relaxed);
  atomic_fetch_add_explicit(&dev->records, cf->pack.n, memory_order_relaxed);
  atomic_store_explicit(&dev->last_ms, (int64_t)llround(now * 1000.0), memory_order_relaxed);
  gw_pack_accepted(gw, dev, &cf->pack);
  coap_pdu_set_code(resp, COAP_RESPONSE_CODE_CHANGED);
}

/* DTLS: the key of the device whose id is the PSK identity. An unknown
 * identity gets a random key no client has, so its handshake fails. */
#define IDENTITY_LOG_EVERY_MS 10000

/* `n` bytes of `in` as printable ASCII into `out`: anything else as \xNN. */
static void escape_bytes(char *out, size_t cap, const uint8_t *in, size_t n) {
  size_t o = 0;
  for (size_t i = 0; i < n && o + 5 <= cap; i++) {
    if (in[i] >= 0x20 && in[i] < 0x7f && in[i] != '"' && in[i] != '\\')
      out[o++] = (char)in[i];
    else
      o += (size_t)snprintf(out + o, cap - o, "\\x%02x", in[i]);
  }
  out[o < cap ? o : cap - 1] = '\0';
}

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
  }
  /* The identity is the peer's bytes: escaped (a crafted one forged a crit
   * line with terminal escapes), and said at most once per
   * IDENTITY_LOG_EVERY_MS with the count since, so a flood of handshakes
   * cannot flood the log. The handshake then fails: counted. */
  atomic_fetch_add_explicit(&cf->gw->counters.dtls_failed, 1, memory_order_relaxed);
  uint64_t now = sg_mono_ms();
  cf->unknown_ids++;
  if (now - cf->unknown_logged_ms >= IDENTITY_LOG_EVERY_MS || cf->unknown_logged_ms == 0) {
    char shown[4 * 32 + 1];
    escape_bytes(shown, sizeof(shown), identity->s, identity->length < 32 ? identity->length : 32);
    log_warn("DTLS handshake from unknown identity \"%s\"%s (or a device with no psk); %llu such "
             "handshake%s since the last line",
             shown, identity->length > 32 ? "..." : "", (unsigned long long)cf->unknown_ids,
             cf->unknown_ids > 1 ? "s" : "");
    cf->unknown_ids = 0;
    cf->unknown_logged_ms = now;
  }
  key.s = cf->dummy_key;
  key.length = sizeof(cf->dummy_key);
  return &key;
}

/* DTLS handshakes, counted from libcoap's session events. A server session
 * on the DTLS endpoint is born at a ClientHello from a new address
 * (SERVER_SESSION_NEW), completes at DTLS_CONNECTED, and goes at
 * SERVER_SESSION_DEL: one that goes without having completed was abandoned
 * (a spoofed source never answers the HelloVerifyRequest; a client may give
 * up). A completed session carries a dtls_peer_t, or `hs_done` once it has
 * been let go, as its app data; server sessions have no other (client.c's
 * are of type CLIENT).
 *
 * libcoap 4.3.1 keeps at most COAP_MAX_IDLE_SESSIONS sessions without a
 * reference per endpoint and, at that limit, frees the least recently used
 * one whenever a packet comes from a new address, before it looks at what
 * the packet is: 100 quiet devices and a spoofed ClientHello cost a real
 * device its session, and its next post went unanswered
 * (test_dtls_idle.sh). So a session that has shaken hands (which takes a
 * device's key) is a peer: it holds a reference, which takes it out of that
 * count, until it has been quiet for DTLS_PEER_IDLE_MS or the peers number
 * more than peers_max (the least recently used goes first); then libcoap's
 * own idle timeout frees it as before. */
static char hs_done;
#define FLOOD_LOG_EVERY_MS 10000
#define DTLS_PEER_IDLE_MS 300000 /* libcoap's own idle session timeout, 300 s */

typedef struct dtls_peer {
  coap_session_t *s;
  uint64_t used_ms;
  struct dtls_peer *prev, *next;
} dtls_peer_t;

static void peer_unlink(struct coap_front *cf, dtls_peer_t *p) {
  *(p->prev ? &p->prev->next : &cf->peers) = p->next;
  *(p->next ? &p->next->prev : &cf->peers_tail) = p->prev;
  p->prev = p->next = NULL;
}

static void peer_push(struct coap_front *cf, dtls_peer_t *p) {
  p->next = cf->peers;
  *(cf->peers ? &cf->peers->prev : &cf->peers_tail) = p;
  cf->peers = p;
}

/* Lets peer `p` go: its session keeps `hs_done` (it did complete), and
 * loses the reference unless libcoap is freeing it (`deleting`). */
static void peer_free(struct coap_front *cf, dtls_peer_t *p, bool deleting) {
  peer_unlink(cf, p);
  cf->n_peers--;
  coap_session_set_app_data(p->s, &hs_done);
  if (!deleting)
    coap_session_release(p->s);
  free(p);
}

void coapfront__touch(struct coap_front *cf, coap_session_t *s) {
  dtls_peer_t *p =
      coap_session_get_type(s) == COAP_SESSION_TYPE_SERVER ? coap_session_get_app_data(s) : NULL;
  if (!p || (void *)p == &hs_done)
    return;
  p->used_ms = sg_mono_ms();
  if (cf->peers != p) {
    peer_unlink(cf, p);
    peer_push(cf, p);
  }
}

/* Once a second: peers quiet too long, or over peers_max, are let go. */
static void peers_sweep(struct coap_front *cf) {
  uint64_t now = sg_mono_ms();
  while (cf->peers_tail &&
         (cf->n_peers > cf->peers_max || now - cf->peers_tail->used_ms > DTLS_PEER_IDLE_MS))
    peer_free(cf, cf->peers_tail, false);
}

static void peer_new(struct coap_front *cf, coap_session_t *s) {
  dtls_peer_t *p = calloc(1, sizeof(*p));
  if (!p) { /* it works as before: libcoap may free it while it is idle */
    coap_session_set_app_data(s, &hs_done);
    return;
  }
  p->s = coap_session_reference(s);
  p->used_ms = sg_mono_ms();
  coap_session_set_app_data(s, p);
  peer_push(cf, p);
  cf->n_peers++;
}

static int on_session_event(coap_session_t *s, const coap_event_t event) {
  coap_session_type_t type = coap_session_get_type(s);
  struct coap_front *cf = coap_get_app_data(coap_session_get_context(s));
  if (!cf || (type != COAP_SESSION_TYPE_SERVER && type != COAP_SESSION_TYPE_HELLO))
    return 0;
  if (event == COAP_EVENT_SERVER_SESSION_DEL)
    coapfront__uploads_drop(cf, s); /* its pointer may come back for another peer */
  if (coap_session_get_proto(s) != COAP_PROTO_DTLS)
    return 0;
  gw_counters_t *c = &cf->gw->counters;
  void *app = coap_session_get_app_data(s);
  switch (event) {
  case COAP_EVENT_SERVER_SESSION_NEW:
    atomic_fetch_add_explicit(&c->dtls_begun, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&c->dtls_pending, 1, memory_order_relaxed);
    break;
  case COAP_EVENT_DTLS_CONNECTED:
    if (!app) {
      peer_new(cf, s);
      atomic_fetch_add_explicit(&c->dtls_completed, 1, memory_order_relaxed);
      atomic_fetch_sub_explicit(&c->dtls_pending, 1, memory_order_relaxed);
    }
    break;
  case COAP_EVENT_DTLS_CLOSED: /* the device said goodbye, or the session failed */
  case COAP_EVENT_DTLS_ERROR:
    if (app && app != &hs_done)
      peer_free(cf, app, false);
    break;
  case COAP_EVENT_SERVER_SESSION_DEL:
    if (!app) {
      atomic_fetch_add_explicit(&c->dtls_abandoned, 1, memory_order_relaxed);
      atomic_fetch_sub_explicit(&c->dtls_pending, 1, memory_order_relaxed);
    } else if (app != &hs_done) {
      peer_free(cf, app, true);
    }
    break;
  default:
    break;
  }
  return 0;
}

/* Once a second: when handshakes were abandoned since the last line, or the
 * pending ones fill half the table, says so at most every
 * FLOOD_LOG_EVERY_MS, with the figures. At the limit libcoap ignores new
 * ClientHellos without a word, so that is said loudest. */
static void check_handshakes(struct coap_front *cf) {
  gw_counters_t *c = &cf->gw->counters;
  uint64_t abandoned = atomic_load_explicit(&c->dtls_abandoned, memory_order_relaxed);
  int64_t pending = atomic_load_explicit(&c->dtls_pending, memory_order_relaxed);
  uint64_t now = sg_mono_ms();
  if (abandoned == cf->hs_logged_abandoned && pending < GW_DTLS_MAX_HANDSHAKES / 2)
    return;
  if (cf->hs_logged_ms && now - cf->hs_logged_ms < FLOOD_LOG_EVERY_MS)
    return;
  if (pending >= GW_DTLS_MAX_HANDSHAKES)
    log_err("DTLS: %lld handshakes pending, the limit: new devices cannot connect until they "
            "time out (30 s); %llu abandoned since the last line. A flood of ClientHellos?",
            (long long)pending, (unsigned long long)(abandoned - cf->hs_logged_abandoned));
  else
    log_warn("DTLS: %llu handshakes abandoned since the last line, %lld pending of %d: "
             "ClientHellos that never finish (spoofed, or a device giving up)",
             (unsigned long long)(abandoned - cf->hs_logged_abandoned), (long long)pending,
             GW_DTLS_MAX_HANDSHAKES);
  cf->hs_logged_abandoned = abandoned;
  cf->hs_logged_ms = now;
}

/* libcoap's own log lines, into ours. Its default handler writes each to
 * stderr, and it says "got RST" at LOG_ALERT for every reset it did not
 * expect: one datagram each, so anyone on the LAN could fill the journal
 * (issue 13). Resets are counted and said in one line at most every
 * LIBCOAP_LOG_EVERY_MS; other lines pass, at most LIBCOAP_BURST per such
 * period, the rest counted. libcoap logs on the loop thread only. */
#define LIBCOAP_LOG_EVERY_MS 10000
#define LIBCOAP_BURST 20
static struct { uint64_t since_ms, rsts, lines, dropped; } coap_log_state;

static void coap_log_flush(uint64_t now) {
  if (coap_log_state.rsts)
    log_warn("%llu unexpected CoAP resets (RST) in the last %llu s: a peer resetting messages "
             "the gateway no longer tracks, or a flood",
             (unsigned long long)coap_log_state.rsts,
             (unsigned long long)(now - coap_log_state.since_ms + 999) / 1000);
  if (coap_log_state.dropped)
    log_warn("%llu more libcoap messages left out of the log in the last %llu s",
             (unsigned long long)coap_log_state.dropped,
             (unsigned long long)(now - coap_log_state.since_ms + 999) / 1000);
  coap_log_state.rsts = coap_log_state.lines = coap_log_state.dropped = 0;
  coap_log_state.since_ms = now;
}

static void on_coap_log(coap_log_t level, const char *message) {
  uint64_t now = sg_mono_ms();
  if (now - coap_log_state.since_ms >= LIBCOAP_LOG_EVERY_MS)
    coap_log_flush(now);
  if (!strncmp(message, "got RST", 7)) {
    coap_log_state.rsts++;
    return;
  }
  if (coap_log_state.lines++ >= LIBCOAP_BURST) {
    coap_log_state.dropped++;
    return;
  }
  size_t n = strlen(message);
  while (n && (message[n - 1] == '\n' || message[n - 1] == '\r'))
    n--;
  int lvl = level <= LOG_ERR ? LOG_LVL_ERR : level == LOG_WARNING ? LOG_LVL_WARN : level;
  if (lvl > LOG_LVL_DEBUG)
    lvl = LOG_LVL_DEBUG;
  LOG_AT(lvl, "libcoap: %.*s", (int)n, message);
}

/* Datagrams a readable epoll fd is drained of before libuv runs the rest
 * of the loop: 640 at most (COAP_MAX_EPOLL_EVENTS a round), about 10 ms. */
#define COAP_DRAIN_ROUNDS 64

/* coap_io_process() takes one datagram an endpoint a call, and each call
 * first walks every session and sets libcoap's timerfd again (4.3.1's
 * coap_io_prepare_epoll, 15-25 % of the loop thread under load). So the
 * poll callback runs coap_io_process's two halves itself: epoll events are
 * handled while there are any, then the timers are prepared once. What
 * coap_io_process does besides (expiring its cache, async requests) the
 * sweep's call does every second. */
static void on_poll(uv_poll_t *h, int status, int events) {
  (void)status;
  (void)events;
  struct coap_front *cf = h->data;
  int fd = coap_context_get_coap_fd(cf->ctx);
  struct epoll_event ev[COAP_MAX_EPOLL_EVENTS];
  for (int round = 0; round < COAP_DRAIN_ROUNDS; round++) {
    int n = epoll_wait(fd, ev, COAP_MAX_EPOLL_EVENTS, 0);
    if (n <= 0)
      break;
    coap_io_do_epoll(cf->ctx, ev, (size_t)n);
  }
  coap_tick_t now;
  coap_ticks(&now);
  coap_io_prepare_epoll(cf->ctx, now);
}

static void on_sweep(uv_timer_t *t) {
  struct coap_front *cf = t->data;
  coap_io_process(cf->ctx, COAP_IO_NO_WAIT);
  check_handshakes(cf);
  peers_sweep(cf);
  coapfront__uploads_sweep(cf);
  if (sg_mono_ms() - coap_log_state.since_ms >= LIBCOAP_LOG_EVERY_MS)
    coap_log_flush(sg_mono_ms());
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

static void add_resources(struct coap_front *cf) {
  coap_resource_t *r = coap_resource_init(coap_make_str_const("r"), 0);
  coap_register_handler(r, COAP_REQUEST_POST, on_post_readings);
  coap_resource_set_userdata(r, cf);
  coap_add_attr(r, coap_make_str_const("ct"), coap_make_str_const("\"110 112 50\""), 0);
  coap_add_attr(r, coap_make_str_const("rt"), coap_make_str_const("\"sitegate.readings\""), 0);
  coap_add_attr(r, coap_make_str_const("title"), coap_make_str_const("\"SenML readings\""), 0);
  coap_add_resource(cf->ctx, r);
  coapfront__tickets_add(cf); /* POST /w */
  coapfront__gates_add(cf);   /* POST /g */
}

/* Devices that post plain CoAP are a choice the site wrote down (`insecure
 * = yes`); it is said at every start, in one line however many there are. */
static void warn_insecure(const sg_config_t *cfg) {
  char names[256] = "";
  size_t n = 0, len = 0;
  for (size_t i = 0; i < cfg->n_devices; i++) {
    if (!cfg->devices[i].insecure)
      continue;
    if (n++ < 5 && len < sizeof(names))
      len += (size_t)snprintf(names + len, sizeof(names) - len, "%s%s", n > 1 ? ", " : "",
                              cfg->devices[i].id);
  }
  if (n)
    log_warn("%zu device%s without a key (insecure = yes: %s%s): anyone who can reach %s port %d "
             "may post as %s",
             n, n > 1 ? "s" : "", names, n > 5 ? ", ..." : "", cfg->coap_listen, cfg->coap_port,
             n > 1 ? "them" : "it");
}

static void on_handle_closed(uv_handle_t *h) {
  struct coap_front *cf = h->data;
  if (--cf->open_handles == 0)
    free(cf);
}

int coapfront_start(gw_t *gw, struct coap_front **out) {
  GW_ASSERT_LOOP(gw);
  struct coap_front *cf = calloc(1, sizeof(*cf));
  int rc = -ENOMEM;
  *out = NULL;
  if (!cf)
    return rc;
  cf->gw = gw;
  size_t keyed = 0;
  for (size_t i = 0; i < gw->cfg->n_devices; i++)
    keyed += gw->cfg->devices[i].psk[0] != '\0';
  /* a session per keyed device, twice over for devices that have come
   * back from a new port before their old session was let go */
  cf->peers_max = 2 * keyed + 64;
  coap_startup();
  coap_set_log_handler(on_coap_log);
  coap_log_state.since_ms = sg_mono_ms();
  coap_set_log_level(log_threshold >= LOG_LVL_DEBUG ? LOG_INFO : LOG_ERR);
  coap_dtls_set_log_level(LOG_ERR);
  cf->ctx = coap_new_context(NULL);
  if (!cf->ctx)
    goto fail;
  /* Each block to the handler: upload.c puts them together (not
   * COAP_BLOCK_SINGLE_BODY, which trusted Size1). */
  coap_context_set_block_mode(cf->ctx, COAP_BLOCK_USE_LIBCOAP);
  coap_context_set_max_idle_sessions(cf->ctx, COAP_MAX_IDLE_SESSIONS + (unsigned)keyed);
  coap_context_set_max_handshake_sessions(cf->ctx, GW_DTLS_MAX_HANDSHAKES);
  coap_set_app_data(cf->ctx, cf);
  coap_register_event_handler(cf->ctx, on_session_event);
  const sg_config_t *cfg = gw->cfg;
  if ((rc = bind_endpoint(cf, cfg->coap_listen, cfg->coap_port, COAP_PROTO_UDP)) != 0)
    goto fail;
  if (cfg->dtls_port) {
    if ((rc = setup_dtls(cf)) != 0 ||
        (rc = bind_endpoint(cf, cfg->coap_listen, cfg->dtls_port, COAP_PROTO_DTLS)) != 0)
      goto fail;
  }
  add_resources(cf);
  warn_insecure(cfg);
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

void coapfront_stop(struct coap_front *cf) {
  if (!cf)
    return;
  GW_ASSERT_LOOP(cf->gw);
  coapfront__client_free(cf);
  /* The poll handle watches libcoap's fd: close it before the context. */
  uv_close((uv_handle_t *)&cf->poll, on_handle_closed);
  uv_close((uv_handle_t *)&cf->sweep, on_handle_closed);
  coapfront__tickets_orphan(cf);
  coapfront__gates_orphan(cf);
  coap_register_event_handler(cf->ctx, NULL); /* the sessions go with it: not abandoned */
  while (cf->peers)
    peer_free(cf, cf->peers, false); /* libcoap frees only sessions without one */
  coap_free_context(cf->ctx);
  coapfront__uploads_drop(cf, NULL);
  cf->ctx = NULL;
  coap_cleanup();
}
