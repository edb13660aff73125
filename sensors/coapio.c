/* libcoap on the libuv loop, for sitesim's clients.
 *
 * Debian's libcoap 3 (4.3.1) is built with epoll: coap_context_get_coap_fd()
 * is an epoll fd holding every session socket and a timerfd that libcoap
 * arms itself for retransmissions. One uv_poll_t on that fd, calling
 * coap_io_process(COAP_IO_NO_WAIT) when it is readable, therefore drives
 * sends, receives and retransmissions. Almost: libcoap 4.3.1's
 * coap_io_prepare_epoll() can leave the timerfd disarmed while it records a
 * deadline that has just passed (read in its source), and later sends then
 * see that stale deadline and do not rearm it: a client whose requests are
 * all lost would wait until some packet arrives. A libuv timer therefore
 * also runs libcoap every BACKSTOP_MS, which bounds how late a
 * retransmission can be. This is the client side of libcoap in sitesim
 * (equipment.c is the server side), so the rest of sitesim sees requests as
 * (session, 8-byte token) and replies as sim_reply_t. */
#include "sensors/sensors_int.h"

#include <coap3/coap.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define LOG_MODULE "sitesim"

#define BACKSTOP_MS 100

struct sim_coap {
  uv_poll_t poll;
  uv_timer_t backstop;
  coap_context_t *ctx;
  const sim_coap_cb_t *cb;
  void *arg;
  bool closing;
  sim_sess_t *sessions; /* every session, freed with the context */
};

struct sim_sess {
  coap_session_t *s;
  sim_coap_t *c;
  void *user;
  bool ready; /* plain UDP at once; DTLS after the handshake */
  int fd;     /* its socket, when found; -1 otherwise */
  sim_sess_t *next;
};

/* ---- targets */

int sim_target_parse(const char *uri, uint16_t default_port, sim_target_t *out, char *err,
                     size_t errlen) {
  memset(out, 0, sizeof(*out));
  const char *p;
  if (strncmp(uri, "coap://", 7) == 0) {
    p = uri + 7;
  } else if (strncmp(uri, "coaps://", 8) == 0) {
    p = uri + 8;
    out->secure = true;
  } else {
    snprintf(err, errlen, "%s: a gateway URI starts with coap:// or coaps://", uri);
    return -EINVAL;
  }
  const char *host = p, *host_end;
  if (*p == '[') { /* RFC 3986 IPv6 literal */
    host = ++p;
    host_end = strchr(p, ']');
    if (!host_end) {
      snprintf(err, errlen, "%s: unclosed [ in the host", uri);
      return -EINVAL;
    }
    p = host_end + 1;
  } else {
    host_end = p + strcspn(p, ":/");
    p = host_end;
  }
  size_t hl = (size_t)(host_end - host);
  if (hl == 0 || hl >= sizeof(out->host)) {
    snprintf(err, errlen, "%s: no host, or a host name that is too long", uri);
    return -EINVAL;
  }
  memcpy(out->host, host, hl);
  out->port = default_port;
  if (*p == ':') {
    char *end;
    long port = strtol(p + 1, &end, 10);
    if (end == p + 1 || port < 1 || port > 65535) {
      snprintf(err, errlen, "%s: the port must be 1..65535", uri);
      return -EINVAL;
    }
    out->port = (uint16_t)port;
    p = end;
  }
  if (*p && strcmp(p, "/") != 0 && strcmp(p, "/r") != 0) {
    snprintf(err, errlen, "%s: give the gateway as scheme://host[:port] (packs go to /r)", uri);
    return -EINVAL;
  }
  struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_DGRAM}, *ai = NULL;
  int rc = getaddrinfo(out->host, NULL, &hints, &ai);
  if (rc != 0) {
    snprintf(err, errlen, "%s: %s", out->host, gai_strerror(rc));
    return -EINVAL;
  }
  memcpy(&out->addr, ai->ai_addr, ai->ai_addrlen);
  out->addrlen = ai->ai_addrlen;
  freeaddrinfo(ai);
  return 0;
}

void sim_target_with(const sim_target_t *t, bool secure, uint16_t port, sim_target_t *out) {
  *out = *t;
  out->secure = secure;
  out->port = port;
}

void sim_target_for(const sim_target_t *base, const sg_config_t *cfg, const sg_device_t *dev,
                    sim_target_t *out) {
  bool secure = dev->psk[0] != '\0';
  if (secure && !base->secure && cfg->dtls_port == 0) {
    log_warn("%s has a psk but [coap] dtls_port is 0: it sends plain CoAP", dev->id);
    secure = false;
  }
  if (secure == base->secure)
    *out = *base;
  else
    sim_target_with(base, secure, (uint16_t)(secure ? cfg->dtls_port : cfg->coap_port), out);
}

const char *sim_target_str(const sim_target_t *t, char *buf, size_t len) {
  bool v6 = strchr(t->host, ':') != NULL;
  snprintf(buf, len, "%s://%s%s%s:%u", t->secure ? "coaps" : "coap", v6 ? "[" : "", t->host,
           v6 ? "]" : "", t->port);
  return buf;
}

static void target_address(const sim_target_t *t, coap_address_t *a) {
  coap_address_init(a);
  memcpy(&a->addr, &t->addr, t->addrlen);
  a->size = t->addrlen;
  if (t->addr.ss_family == AF_INET6)
    a->addr.sin6.sin6_port = htons(t->port);
  else
    a->addr.sin.sin_port = htons(t->port);
}

/* ---- libcoap callbacks */

static void coap_on_log(coap_log_t level, const char *message) {
  size_t n = strlen(message);
  while (n > 0 && (message[n - 1] == '\n' || message[n - 1] == '\r'))
    n--;
  (void)level; /* libcoap's own lines are detail: sitesim reports what matters */
  if (LOG_LVL_DEBUG <= log_threshold)
    log_write(LOG_LVL_DEBUG, "libcoap", "%.*s", (int)n, message);
}

static sim_sess_t *sess_of(const coap_session_t *session) {
  sim_sess_t *ss = coap_session_get_app_data(session);
  return ss && !ss->c->closing ? ss : NULL;
}

static bool token_of(const coap_pdu_t *pdu, uint64_t *out) {
  coap_bin_const_t tok = coap_pdu_get_token(pdu);
  if (tok.length != 8)
    return false;
  uint64_t v = 0;
  for (size_t i = 0; i < 8; i++)
    v = v << 8 | tok.s[i];
  *out = v;
  return true;
}

static coap_response_t coap_on_response(coap_session_t *session, const coap_pdu_t *sent,
                                        const coap_pdu_t *received, const coap_mid_t mid) {
  (void)sent;
  (void)mid;
  sim_sess_t *ss = sess_of(session);
  uint64_t token;
  coap_pdu_code_t code = coap_pdu_get_code(received);
  if (!ss || code == COAP_EMPTY_CODE || !token_of(received, &token))
    return COAP_RESPONSE_OK;
  sim_reply_t r = {.code = (int)(code >> 5) * 100 + (int)(code & 0x1f), .max_age = -1};
  if (!coap_get_data(received, &r.len, &r.payload)) {
    r.len = 0;
    r.payload = NULL;
  }
  coap_opt_iterator_t it;
  coap_opt_t *opt = coap_check_option(received, COAP_OPTION_MAXAGE, &it);
  if (opt)
    r.max_age = (long)coap_decode_var_bytes(coap_opt_value(opt), coap_opt_length(opt));
  ss->c->cb->on_reply(ss->user, token, &r);
  return COAP_RESPONSE_OK;
}

static void coap_on_nack(coap_session_t *session, const coap_pdu_t *sent,
                         const coap_nack_reason_t reason, const coap_mid_t mid) {
  (void)mid;
  sim_sess_t *ss = sess_of(session);
  uint64_t token;
  if (!ss || !sent || !token_of(sent, &token))
    return;
  sim_fail_t why = SIM_FAIL_UNREACHABLE;
  switch (reason) {
  case COAP_NACK_TOO_MANY_RETRIES:
    why = SIM_FAIL_TIMEOUT;
    break;
  case COAP_NACK_RST:
    why = SIM_FAIL_RESET;
    break;
  case COAP_NACK_TLS_FAILED:
    why = SIM_FAIL_TLS;
    break;
  case COAP_NACK_NOT_DELIVERABLE:
  case COAP_NACK_ICMP_ISSUE:
    break;
  }
  ss->c->cb->on_fail(ss->user, token, why);
}

static int coap_on_event(coap_session_t *session, const coap_event_t event) {
  sim_sess_t *ss = sess_of(session);
  if (!ss)
    return 0;
  bool up;
  switch (event) {
  case COAP_EVENT_DTLS_CONNECTED:
    up = true;
    break;
  case COAP_EVENT_DTLS_CLOSED:
  case COAP_EVENT_DTLS_ERROR:
    up = false;
    break;
  default:
    return 0;
  }
  ss->ready = up;
  if (ss->c->cb->on_link)
    ss->c->cb->on_link(ss->user, up);
  return 0;
}

/* ---- the loop */

static void coap_run(sim_coap_t *c) {
  coap_io_process(c->ctx, COAP_IO_NO_WAIT);
  if (c->cb->after_io && !c->closing)
    c->cb->after_io(c->arg);
}

static void poll_on_event(uv_poll_t *h, int status, int events) {
  (void)events;
  if (status < 0) {
    log_err("coap: poll: %s", uv_strerror(status));
    return;
  }
  coap_run(h->data);
}

static void backstop_on_tick(uv_timer_t *h) { coap_run(h->data); }

int sim_coap_open(uv_loop_t *loop, const sim_coap_cb_t *cb, void *arg, sim_coap_t **out) {
  static bool started;
  *out = NULL;
  if (!started) { /* once per process: other contexts (equipment.c) share it */
    coap_startup();
    atexit(coap_cleanup);
    started = true;
  }
  coap_set_log_handler(coap_on_log);
  coap_set_log_level(log_threshold >= LOG_LVL_DEBUG ? LOG_DEBUG : LOG_EMERG);
  coap_dtls_set_log_level(log_threshold >= LOG_LVL_DEBUG ? LOG_INFO : LOG_EMERG);
  sim_coap_t *c = calloc(1, sizeof(*c));
  if (!c)
    return -ENOMEM;
  c->cb = cb;
  c->arg = arg;
  c->ctx = coap_new_context(NULL);
  if (!c->ctx) {
    log_err("coap: cannot create a libcoap context");
    free(c);
    return -ENOMEM;
  }
  coap_register_response_handler(c->ctx, coap_on_response);
  coap_register_nack_handler(c->ctx, coap_on_nack);
  coap_register_event_handler(c->ctx, coap_on_event);
  int fd = coap_context_get_coap_fd(c->ctx);
  int rc = fd < 0 ? UV_ENOTSUP : uv_poll_init(loop, &c->poll, fd);
  if (rc < 0) {
    log_err("coap: cannot watch libcoap's fd (%s); libcoap must be built with epoll",
            uv_strerror(rc));
    coap_free_context(c->ctx);
    free(c);
    return rc;
  }
  c->poll.data = c;
  uv_poll_start(&c->poll, UV_READABLE, poll_on_event);
  uv_timer_init(loop, &c->backstop);
  c->backstop.data = c;
  uv_timer_start(&c->backstop, backstop_on_tick, BACKSTOP_MS, BACKSTOP_MS);
  /* The first pass arms libcoap's timerfd; from then on it rearms it. */
  coap_io_process(c->ctx, COAP_IO_NO_WAIT);
  *out = c;
  return 0;
}

/* The poll handle closes last: then libcoap's fd can go. */
static void poll_on_closed(uv_handle_t *h) {
  sim_coap_t *c = h->data;
  coap_free_context(c->ctx); /* releases the sessions; `closing` mutes callbacks */
  while (c->sessions) {
    sim_sess_t *next = c->sessions->next;
    free(c->sessions);
    c->sessions = next;
  }
  free(c);
}

void sim_coap_close(sim_coap_t *c) {
  if (!c)
    return;
  c->closing = true;
  uv_close((uv_handle_t *)&c->backstop, NULL);
  uv_close((uv_handle_t *)&c->poll, poll_on_closed);
}

/* libcoap draws a random byte per CON for its ACK timeout (RFC 7252 4.2),
 * by default with getrandom(2): a system call per request. */
static uint64_t prng_state;

static int fast_prng(void *out, size_t len) {
  uint8_t *p = out;
  while (len > 0) {
    uint64_t x = prng_state += 0x9e3779b97f4a7c15ULL; /* splitmix64 */
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    x ^= x >> 31;
    size_t n = len < sizeof(x) ? len : sizeof(x);
    memcpy(p, &x, n);
    p += n;
    len -= n;
  }
  return 1;
}

void sim_coap_fast_prng(uint64_t seed) {
  prng_state = seed;
  coap_set_prng(fast_prng);
}

/* ---- sessions */

/* libcoap 4.3.1 does not tell a session's socket. It opens it with the
 * lowest free descriptor, which a probe finds first; the local port then
 * confirms the guess. */
static int lowest_free_fd(void) {
  int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (fd >= 0)
    close(fd);
  return fd;
}

static int confirm_fd(int fd, const coap_session_t *s) {
  struct sockaddr_storage a;
  socklen_t len = sizeof(a);
  int type = 0;
  socklen_t tl = sizeof(type);
  const coap_address_t *local = coap_session_get_addr_local(s);
  if (fd < 0 || !local || getsockname(fd, (struct sockaddr *)&a, &len) != 0 ||
      getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &tl) != 0 || type != SOCK_DGRAM)
    return -1;
  uint16_t port = a.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&a)->sin6_port)
                                          : ntohs(((struct sockaddr_in *)&a)->sin_port);
  return port == coap_address_get_port(local) ? fd : -1;
}

sim_sess_t *sim_sess_open(sim_coap_t *c, const sim_target_t *t, const char *identity,
                          const char *psk, void *user) {
  coap_address_t dst;
  char where[200];
  target_address(t, &dst);
  sim_sess_t *ss = calloc(1, sizeof(*ss));
  if (!ss)
    return NULL;
  int probe = lowest_free_fd();
  if (psk && t->secure) {
    coap_dtls_cpsk_t setup;
    memset(&setup, 0, sizeof(setup));
    setup.version = COAP_DTLS_CPSK_SETUP_VERSION;
    setup.psk_info.identity.s = (const uint8_t *)identity;
    setup.psk_info.identity.length = strlen(identity);
    setup.psk_info.key.s = (const uint8_t *)psk;
    setup.psk_info.key.length = strlen(psk);
    ss->s = coap_new_client_session_psk2(c->ctx, NULL, &dst, COAP_PROTO_DTLS, &setup);
  } else if (!t->secure) {
    ss->s = coap_new_client_session(c->ctx, NULL, &dst, COAP_PROTO_UDP);
    ss->ready = true;
  }
  if (!ss->s) {
    log_err("coap: cannot open a session to %s%s", sim_target_str(t, where, sizeof(where)),
            t->secure && !coap_dtls_is_supported() ? " (libcoap has no DTLS)"
            : t->secure && !psk                    ? " (coaps needs a psk)"
                                                   : "");
    free(ss);
    return NULL;
  }
  ss->fd = confirm_fd(probe, ss->s);
  ss->c = c;
  ss->user = user;
  ss->next = c->sessions;
  c->sessions = ss;
  coap_session_set_app_data(ss->s, ss);
  return ss;
}

void sim_sess_tune(sim_sess_t *s, unsigned nstart, unsigned ack_timeout_ms,
                   unsigned max_retransmit) {
  if (nstart)
    coap_session_set_nstart(s->s, (uint16_t)(nstart > 65535 ? 65535 : nstart));
  if (ack_timeout_ms) {
    coap_fixed_point_t v = {ack_timeout_ms / 1000, ack_timeout_ms % 1000};
    coap_session_set_ack_timeout(s->s, v);
  }
  if (max_retransmit)
    coap_session_set_max_retransmit(s->s, (uint16_t)max_retransmit);
}

int sim_sess_rcvbuf(sim_sess_t *s, int bytes) {
  if (s->fd < 0)
    return -ENOTSUP;
  return setsockopt(s->fd, SOL_SOCKET, SO_RCVBUF, &bytes, sizeof(bytes)) == 0 ? 0 : -errno;
}

bool sim_sess_ready(const sim_sess_t *s) { return s->ready; }

int sim_sess_post(sim_sess_t *ss, uint64_t token, int content_format, const void *buf, size_t len) {
  return sim_sess_post_to(ss, token, "r", content_format, buf, len);
}

int sim_sess_post_to(sim_sess_t *ss, uint64_t token, const char *path, int content_format,
                     const void *buf, size_t len) {
  coap_session_t *s = ss->s;
  coap_pdu_t *pdu = coap_pdu_init(COAP_MESSAGE_CON, COAP_REQUEST_CODE_POST, coap_new_message_id(s),
                                  coap_session_max_pdu_size(s));
  if (!pdu)
    return -ENOMEM;
  uint8_t tok[8], cf[4];
  for (int i = 7; i >= 0; i--, token >>= 8)
    tok[i] = (uint8_t)token;
  if (!coap_add_token(pdu, sizeof(tok), tok) ||
      !coap_add_option(pdu, COAP_OPTION_URI_PATH, strlen(path), (const uint8_t *)path) ||
      !coap_add_option(pdu, COAP_OPTION_CONTENT_FORMAT,
                       coap_encode_var_safe(cf, sizeof(cf), (unsigned)content_format), cf) ||
      !coap_add_data(pdu, len, buf)) {
    coap_delete_pdu(pdu);
    return -EMSGSIZE;
  }
  return coap_send(s, pdu) == COAP_INVALID_MID ? -EIO : 0;
}

/* ---- the retry policy, and one message at a time (sensors_int.h) */

uint64_t sim_backoff_ms(unsigned *fails) {
  uint64_t ms = (uint64_t)SIM_RETRY_MIN_MS << (*fails < 6 ? *fails : 6);
  ++*fails;
  return ms < SIM_RETRY_MAX_MS ? ms : SIM_RETRY_MAX_MS;
}

static void sender_on_timer(uv_timer_t *h) {
  sim_sender_t *s = (sim_sender_t *)h; /* the timer is its first member */
  if (s->inflight) {
    log_warn("%s: no answer to %s within %d s; resending it", s->id, s->what,
             SIM_REPLY_WAIT_MS / 1000);
    s->inflight = false;
  }
  s->pump(h->data);
}

void sim_sender_init(uv_loop_t *loop, sim_sender_t *s, void *owner, void (*pump)(void *owner),
                     const char *id, const char *what, const bool *stopping) {
  *s = (sim_sender_t){.pump = pump, .id = id, .what = what, .stopping = stopping};
  uv_timer_init(loop, &s->timer);
  s->timer.data = owner;
}

void sim_sender_later(sim_sender_t *s, uint64_t ms) {
  if (!*s->stopping)
    uv_timer_start(&s->timer, sender_on_timer, ms, 0);
}

int sim_sender_post(sim_sender_t *s, sim_sess_t *sess, uint64_t token, const char *path, int cf,
                    const void *buf, size_t len) {
  int rc = sim_sess_post_to(sess, token, path, cf, buf, len);
  if (rc < 0)
    return rc;
  s->inflight = true;
  s->token = token;
  sim_sender_later(s, SIM_REPLY_WAIT_MS);
  return 0;
}

bool sim_sender_answered(sim_sender_t *s, uint64_t token) {
  if (!s->inflight || token != s->token)
    return false;
  s->inflight = false;
  return true;
}

void sim_sender_failed(sim_sender_t *s, uint64_t token) {
  if (!sim_sender_answered(s, token))
    return;
  uint64_t ms = sim_backoff_ms(&s->fails);
  log_debug("%s: %s not delivered; retrying in %llu ms", s->id, s->what, (unsigned long long)ms);
  sim_sender_later(s, ms);
}
