/* The gateway as a CoAP client of equipment controllers (protocol/COAP.md):
 * GET /state observed, PUT /ctl. Apart from the server of sensors because
 * its life is the other way round: the gateway sends, libcoap answers
 * through the context's response and NACK handlers, and a request may have
 * to wait for its controller's address before it can go.
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
 * (RFC 7641 3.6).
 *
 * A controller named by an IP address gets its session at once. A host
 * name is resolved once, with uv_getaddrinfo (libuv's thread pool: the loop
 * never waits on DNS); meanwhile the peer has no session, an observation
 * asked for is remembered in the peer and commands wait in the list of
 * requests, unsent, and on_resolved() sends them or fails them. A name
 * that does not resolve drops the peer, so the next call resolves again.
 * When the front stops during a resolution the peer is orphaned (cf NULL)
 * and freed by on_resolved(), which then calls nobody. */
#define LOG_MODULE "coap"

#include "gateway/coap/coap_int.h"
#include <errno.h>
#include <math.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#define CTL_ACK_TIMEOUT_MS 1000
#define CTL_MAX_RETRANSMIT 3
#define CTL_PAYLOAD_MAX 256

typedef struct ctl_peer {
  struct coap_front *cf; /* NULL once orphaned by the front's stop */
  char uri[128];
  char base[96]; /* path before state and ctl, "" for none */
  char host[64];
  uint16_t port;
  coap_session_t *s;    /* NULL while the host name resolves */
  uv_getaddrinfo_t gai; /* in flight while s is NULL */
  coapfront_state_cb cb;
  void *arg;
  bool observe; /* an observation asked for while resolving */
  uint64_t obs_token;
  struct ctl_peer *next;
} ctl_peer_t;

typedef struct ctl_req {
  ctl_peer_t *peer;
  uint64_t token;
  coapfront_done_cb cb;
  void *arg;
  uint64_t tag;
  bool sent;                         /* false while its peer resolves */
  char payload[CTL_PAYLOAD_MAX + 1]; /* what is sent */
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

/* Opens the peer's session to `sa` (its port is the URI's). 0, or -EIO
 * after logging why. */
static int peer_connect(ctl_peer_t *p, const struct sockaddr *sa) {
  coap_address_t dst;
  coap_address_init(&dst);
  if (sa->sa_family == AF_INET6) {
    memcpy(&dst.addr.sin6, sa, sizeof(dst.addr.sin6));
    dst.addr.sin6.sin6_port = htons(p->port);
    dst.size = sizeof(dst.addr.sin6);
  } else {
    memcpy(&dst.addr.sin, sa, sizeof(dst.addr.sin));
    dst.addr.sin.sin_port = htons(p->port);
    dst.size = sizeof(dst.addr.sin);
  }
  p->s = coap_new_client_session(p->cf->ctx, NULL, &dst, COAP_PROTO_UDP);
  if (!p->s) {
    log_err("controller %s: cannot open a CoAP session", p->uri);
    return -EIO;
  }
  coap_fixed_point_t ack = {CTL_ACK_TIMEOUT_MS / 1000, CTL_ACK_TIMEOUT_MS % 1000};
  coap_session_set_ack_timeout(p->s, ack);
  coap_session_set_max_retransmit(p->s, CTL_MAX_RETRANSMIT);
  coap_session_set_app_data(p->s, p);
  return 0;
}

/* The first request of p waiting for its address, taken off the list. */
static ctl_req_t *take_waiting(struct ctl_client *cc, const ctl_peer_t *p) {
  for (ctl_req_t **pp = &cc->reqs; *pp; pp = &(*pp)->next) {
    ctl_req_t *r = *pp;
    if (r->peer == p && !r->sent) {
      *pp = r->next;
      return r;
    }
  }
  return NULL;
}

/* Loop thread: the host name of `p` resolved, or did not. Sends what
 * waited, or fails it with -EHOSTUNREACH. A callback may send again or
 * even stop the front, so the list is searched afresh after each one and
 * the walk ends once cf->ctl is not `cc` any more. */
static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *ai) {
  ctl_peer_t *p = req->data;
  struct coap_front *cf = p->cf;
  if (!cf) { /* the front stopped meanwhile: nobody is called */
    uv_freeaddrinfo(ai);
    free(p);
    return;
  }
  struct ctl_client *cc = cf->ctl;
  int err = status == 0 ? peer_connect(p, ai->ai_addr) : -EHOSTUNREACH;
  if (status != 0)
    log_err("controller %s: %s: %s", p->uri, p->host, uv_strerror(status));
  uv_freeaddrinfo(ai);
  if (err) { /* forget it: the next call resolves again */
    for (ctl_peer_t **pp = &cc->peers; *pp; pp = &(*pp)->next)
      if (*pp == p) {
        *pp = p->next;
        break;
      }
  }
  if (p->observe) {
    p->observe = false;
    int rc = err ? err : ctl_send(p, COAP_REQUEST_CODE_GET, "state", p->obs_token, true, NULL);
    if (rc != 0 && p->cb)
      p->cb(p->arg, NULL, rc);
  }
  for (ctl_req_t *r; cf->ctl == cc && (r = take_waiting(cc, p)) != NULL;) {
    int rc = err ? err : ctl_send(p, COAP_REQUEST_CODE_PUT, "ctl", r->token, false, r->payload);
    if (rc == 0) {
      r->sent = true;
      r->next = cc->reqs;
      cc->reqs = r;
      continue;
    }
    r->cb(r->arg, r->tag, rc, 0);
    free(r);
  }
  if (err)
    free(p); /* unlinked above, so the front's stop did not free it */
}

/* Finds the peer of `uri`, or makes it: with its session when the host is
 * an IP address, else with its name resolving. NULL after logging why. */
static ctl_peer_t *ctl_peer(struct coap_front *cf, const char *uri) {
  struct ctl_client *cc = ctl_client(cf);
  if (!cc)
    return NULL;
  for (ctl_peer_t *p = cc->peers; p; p = p->next)
    if (strcmp(p->uri, uri) == 0)
      return p;
  coap_uri_t u;
  if (strlen(uri) >= sizeof(((ctl_peer_t *)0)->uri) ||
      coap_split_uri((const uint8_t *)uri, strlen(uri), &u) != 0 ||
      u.scheme != COAP_URI_SCHEME_COAP || u.host.length == 0 ||
      u.host.length >= sizeof(((ctl_peer_t *)0)->host) ||
      u.path.length >= sizeof(((ctl_peer_t *)0)->base)) {
    log_err("controller %s: use coap://HOST[:PORT][/PATH] (coaps is not supported yet)", uri);
    return NULL;
  }
  ctl_peer_t *p = calloc(1, sizeof(*p));
  if (!p)
    return NULL;
  p->cf = cf;
  snprintf(p->uri, sizeof(p->uri), "%s", uri);
  memcpy(p->host, u.host.s, u.host.length);
  if (u.path.length) /* s may be NULL when it is empty */
    memcpy(p->base, u.path.s, u.path.length);
  p->port = u.port;
  struct sockaddr_storage ss = {0};
  struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
  struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
  int rc;
  if (uv_inet_pton(AF_INET, p->host, &sin->sin_addr) == 0) {
    ss.ss_family = AF_INET;
    rc = peer_connect(p, (struct sockaddr *)&ss);
  } else if (uv_inet_pton(AF_INET6, p->host, &sin6->sin6_addr) == 0) {
    ss.ss_family = AF_INET6;
    rc = peer_connect(p, (struct sockaddr *)&ss);
  } else {
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_DGRAM};
    rc = uv_getaddrinfo(cf->gw->loop, &p->gai, on_resolved, p->host, NULL, &hints);
    p->gai.data = p; /* after: the call initialises the request; on_resolved runs later */
    if (rc != 0)
      log_err("controller %s: cannot resolve %s: %s", uri, p->host, uv_strerror(rc));
  }
  if (rc != 0) {
    free(p);
    return NULL;
  }
  p->obs_token = cc->next_token++;
  p->next = cc->peers;
  cc->peers = p;
  return p;
}

int coapfront_observe(struct coap_front *cf, const char *uri, coapfront_state_cb cb, void *arg) {
  GW_ASSERT_LOOP(cf->gw);
  ctl_peer_t *p = ctl_peer(cf, uri);
  if (!p)
    return -EINVAL;
  p->cb = cb;
  p->arg = arg;
  if (!p->s) { /* resolving: on_resolved() sends it */
    p->observe = true;
    return 0;
  }
  return ctl_send(p, COAP_REQUEST_CODE_GET, "state", p->obs_token, true, NULL);
}

int coapfront_command(struct coap_front *cf, const char *uri, bool on, const char *reason,
                      coapfront_done_cb cb, void *arg, uint64_t tag) {
  GW_ASSERT_LOOP(cf->gw);
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
  r->peer = p;
  r->token = cf->ctl->next_token++;
  r->cb = cb;
  r->arg = arg;
  r->tag = tag;
  snprintf(r->payload, sizeof(r->payload), "%s", payload);
  free(payload);
  if (p->s) {
    int rc = ctl_send(p, COAP_REQUEST_CODE_PUT, "ctl", r->token, false, r->payload);
    if (rc != 0) {
      free(r);
      return rc;
    }
    r->sent = true;
  } /* else it waits for on_resolved() */
  r->next = cf->ctl->reqs;
  cf->ctl->reqs = r;
  return 0;
}

void coapfront__client_free(struct coap_front *cf) {
  struct ctl_client *cc = cf->ctl;
  if (!cc)
    return;
  cf->ctl = NULL;
  for (ctl_peer_t *p = cc->peers, *next; p; p = next) {
    next = p->next;
    if (p->s) {
      coap_session_set_app_data(p->s, NULL);
      free(p);
    } else { /* resolving: its callback frees it (cancelled, or after the lookup ends) */
      p->cf = NULL;
      uv_cancel((uv_req_t *)&p->gai);
    }
  }
  for (ctl_req_t *r = cc->reqs, *next; r; r = next) {
    next = r->next;
    free(r);
  }
  free(cc);
}
