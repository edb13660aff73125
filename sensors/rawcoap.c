/* Plain CoAP (RFC 7252) over UDP without libcoap, for the load generator.
 *
 * `sitesim load` shares the gateway's two cores in `make bench`, so what it
 * spends per request is taken from the gateway it measures. Through libcoap
 * a request cost the client about 20 us of CPU on this VM, more than the
 * bare libcoap server spends answering it (17 us): a PDU allocation, a
 * session walk and a timerfd_settime per packet, and a getrandom per CON.
 * Here a request is one send() of a datagram built in place and an answer
 * is one slot of a recvmmsg() batch. DTLS still goes through coapio.c.
 *
 * What this client does of RFC 7252: CON POST with an 8-byte token, one
 * Uri-Path option per segment and Content-Format; retransmission with
 * exponential back-off from a random initial timeout in [ACK_TIMEOUT,
 * 1.5 x ACK_TIMEOUT] up to MAX_RETRANSMIT (4.2, 4.8); piggybacked
 * responses, empty ACKs followed by a separate response (which it
 * acknowledges when it is CON, 5.2.2), and RST. Requests are matched by
 * token (the wire token holds a slot index and a sequence number); empty
 * ACKs and RSTs, which carry no token, by socket and Message ID. */
#include "sensors/sensors_int.h"

#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define LOG_MODULE "sitesim"

#define RAW_DGRAM_MAX 1152   /* libcoap's default UDP PDU size, as coapio.c */
#define RAW_SLOTS_MAX 65536  /* requests outstanding; Message IDs are 16 bits */
#define RAW_BATCH 32         /* datagrams per recvmmsg() */
#define RAW_MAX_RETRANSMIT 4 /* RFC 7252 4.8 */
/* After an empty ACK, the separate response may take MAX_TRANSMIT_WAIT,
 * ACK_TIMEOUT x (2^(MAX_RETRANSMIT + 1) - 1) x ACK_RANDOM_FACTOR = 46.5 x
 * ACK_TIMEOUT (RFC 7252 4.8.2). */
#define RAW_SEPARATE_WAIT 47
#define RAW_SCAN_MS 20 /* retransmission timer resolution */
#define RAW_TYPE_CON 0
#define RAW_TYPE_NON 1
#define RAW_TYPE_ACK 2
#define RAW_TYPE_RST 3
#define RAW_OPT_URI_PATH 11 /* RFC 7252 12.2 */
#define RAW_OPT_CONTENT_FORMAT 12
#define RAW_OPT_MAX_AGE 14

typedef struct raw_slot {
  uint64_t token;  /* the caller's */
  uint64_t due_ns; /* next retransmission, or the deadline once acknowledged */
  uint32_t seq;    /* wire token: slot index << 32 | seq; 0 when free */
  uint32_t sock;
  uint32_t timeout_ms;
  uint16_t mid, len;
  uint8_t tries;
  bool acked; /* an empty ACK came: no more retransmissions */
  uint8_t *dgram;
} raw_slot_t;

typedef struct raw_sock {
  uv_poll_t poll;
  sim_raw_t *r;
  void *user;
  int fd;
  uint16_t next_mid;
  bool polling; /* poll initialised: closed with the rest */
} raw_sock_t;

struct sim_raw {
  const sim_coap_cb_t *cb;
  void *arg;
  raw_sock_t *socks;
  unsigned nsock, nslots, nfree, open_handles;
  raw_slot_t *slots;
  uint32_t *free_slots;
  uint8_t *dgrams;
  uint32_t seq;
  unsigned ack_timeout_ms;
  uint64_t prng;
  uv_timer_t timer;
  bool closing;
  uint8_t rx[RAW_BATCH][RAW_DGRAM_MAX + 1];
};

static uint64_t prng_next(sim_raw_t *r) { /* xorshift64*: timeouts only, not tokens */
  r->prng ^= r->prng >> 12;
  r->prng ^= r->prng << 25;
  r->prng ^= r->prng >> 27;
  return r->prng * 2685821657736338717ull;
}

/* ---- encoding */

static size_t put_option(uint8_t *p, unsigned delta, const void *val, size_t len) {
  /* Deltas and lengths here stay below 269 (RFC 7252 3.1). */
  size_t n = 1;
  uint8_t d = delta < 13 ? (uint8_t)delta : 13, l = len < 13 ? (uint8_t)len : 13;
  p[0] = (uint8_t)(d << 4 | l);
  if (d == 13)
    p[n++] = (uint8_t)(delta - 13);
  if (l == 13)
    p[n++] = (uint8_t)(len - 13);
  memcpy(p + n, val, len);
  return n + len;
}

/* Builds the datagram into s->dgram; returns its length or -EMSGSIZE. */
static int build(raw_slot_t *s, uint32_t index, const char *path, int cf, const void *buf,
                 size_t len) {
  uint8_t *p = s->dgram;
  size_t n = 0, plen = strlen(path);
  if (plen + len + 32 > RAW_DGRAM_MAX)
    return -EMSGSIZE;
  p[n++] = 0x40 | RAW_TYPE_CON << 4 | 8; /* version 1, CON, TKL 8 */
  p[n++] = 0x02;                         /* 0.02 POST */
  p[n++] = (uint8_t)(s->mid >> 8);
  p[n++] = (uint8_t)s->mid;
  uint64_t wire = (uint64_t)index << 32 | s->seq;
  for (int i = 7; i >= 0; i--)
    p[n++] = (uint8_t)(wire >> (8 * i));
  unsigned last = 0;
  for (const char *seg = path; *seg;) {
    size_t sl = strcspn(seg, "/");
    if (sl >= 269)
      return -EMSGSIZE;
    n += put_option(p + n, RAW_OPT_URI_PATH - last, seg, sl);
    last = RAW_OPT_URI_PATH;
    seg += sl + (seg[sl] == '/');
  }
  uint8_t v[2];
  size_t vl = cf == 0 ? 0 : cf < 256 ? 1 : 2;
  v[0] = (uint8_t)(vl == 2 ? cf >> 8 : cf);
  v[1] = (uint8_t)cf;
  n += put_option(p + n, RAW_OPT_CONTENT_FORMAT - last, v, vl);
  if (len) {
    p[n++] = 0xff;
    memcpy(p + n, buf, len);
    n += len;
  }
  return (int)n;
}

/* ---- decoding */

static int ext(const uint8_t **p, const uint8_t *end, unsigned nib, unsigned *out) {
  if (nib < 13) {
    *out = nib;
  } else if (nib == 13) {
    if (*p >= end)
      return -1;
    *out = 13u + *(*p)++;
  } else if (nib == 14) {
    if (end - *p < 2)
      return -1;
    *out = 269u + ((unsigned)(*p)[0] << 8 | (*p)[1]);
    *p += 2;
  } else {
    return -1;
  }
  return 0;
}

int sim_raw_parse(const uint8_t *b, size_t len, sim_raw_msg_t *m) {
  if (len < 4 || b[0] >> 6 != 1)
    return -1;
  m->type = b[0] >> 4 & 3;
  m->tkl = b[0] & 15;
  m->code = b[1];
  m->mid = (uint16_t)(b[2] << 8 | b[3]);
  m->token = 0;
  m->max_age = -1;
  m->payload = NULL;
  m->len = 0;
  if (m->tkl > 8 || len < 4 + m->tkl)
    return -1;
  for (unsigned i = 0; i < m->tkl; i++)
    m->token = m->token << 8 | b[4 + i];
  const uint8_t *p = b + 4 + m->tkl, *end = b + len;
  unsigned opt = 0;
  while (p < end) {
    if (*p == 0xff) {
      if (++p == end)
        return -1; /* a marker with no payload (3) */
      m->payload = p;
      m->len = (size_t)(end - p);
      break;
    }
    unsigned d, l, head = *p++;
    if (ext(&p, end, head >> 4, &d) || ext(&p, end, head & 15, &l) || (size_t)(end - p) < l)
      return -1;
    opt += d;
    if (opt == RAW_OPT_MAX_AGE && l <= 4) {
      unsigned long v = 0;
      for (unsigned i = 0; i < l; i++)
        v = v << 8 | p[i];
      m->max_age = (long)v;
    }
    p += l;
  }
  return 0;
}

/* ---- requests */

static void slot_free(sim_raw_t *r, uint32_t i) {
  r->slots[i].seq = 0;
  r->free_slots[r->nfree++] = i;
}

static void ack_empty(raw_sock_t *s, uint16_t mid) {
  uint8_t a[4] = {0x40 | RAW_TYPE_ACK << 4, 0, (uint8_t)(mid >> 8), (uint8_t)mid};
  (void)send(s->fd, a, sizeof(a), MSG_DONTWAIT);
}

/* The outstanding request on socket `sock` with Message ID `mid`, or -1. */
static long by_mid(const sim_raw_t *r, uint32_t sock, uint16_t mid) {
  for (uint32_t i = 0; i < r->nslots; i++)
    if (r->slots[i].seq && r->slots[i].sock == sock && r->slots[i].mid == mid)
      return (long)i;
  return -1;
}

static void fail(sim_raw_t *r, uint32_t i, sim_fail_t why) {
  raw_slot_t *s = &r->slots[i];
  uint64_t token = s->token;
  void *user = r->socks[s->sock].user;
  slot_free(r, i);
  r->cb->on_fail(user, token, why);
}

static void on_message(sim_raw_t *r, raw_sock_t *so, const uint8_t *b, size_t len) {
  sim_raw_msg_t m;
  if (sim_raw_parse(b, len, &m) != 0)
    return;
  uint32_t sock = (uint32_t)(so - r->socks);
  if (m.type == RAW_TYPE_RST || (m.type == RAW_TYPE_ACK && m.code == 0)) {
    long i = by_mid(r, sock, m.mid);
    if (i < 0)
      return;
    if (m.type == RAW_TYPE_RST) {
      fail(r, (uint32_t)i, SIM_FAIL_RESET);
    } else if (!r->slots[i].acked) { /* the response will come separately */
      r->slots[i].acked = true;
      r->slots[i].due_ns =
          uv_hrtime() + (uint64_t)r->ack_timeout_ms * RAW_SEPARATE_WAIT * 1000000ull;
    }
    return;
  }
  if (m.code >> 5 == 0)
    return; /* a request or an empty message: not for a client */
  if (m.type == RAW_TYPE_CON)
    ack_empty(so, m.mid); /* acknowledged even when a duplicate */
  uint32_t i = (uint32_t)(m.token >> 32);
  /* A free slot has seq 0, which no token we send carries: without the
   * first test a token ending in 0 answered a free slot, which then went
   * to the free list twice (found by fuzz_rawcoap). */
  if (m.tkl != 8 || i >= r->nslots || !r->slots[i].seq || r->slots[i].seq != (uint32_t)m.token ||
      r->slots[i].sock != sock)
    return; /* late, duplicate or not ours */
  uint64_t token = r->slots[i].token;
  slot_free(r, i);
  sim_reply_t reply = {.code = (int)(m.code >> 5) * 100 + (int)(m.code & 31),
                       .payload = m.payload,
                       .len = m.len,
                       .max_age = m.max_age};
  r->cb->on_reply(so->user, token, &reply);
}

void sim_raw__reset(sim_raw_t *r, uint64_t seed) {
  r->nfree = 0;
  for (unsigned i = 0; i < r->nslots; i++) {
    r->slots[i].seq = 0;
    r->free_slots[r->nfree++] = r->nslots - 1 - i;
  }
  r->seq = 0;
  r->prng = seed | 1;
  for (unsigned i = 0; i < r->nsock; i++)
    r->socks[i].next_mid = (uint16_t)prng_next(r);
}

void sim_raw__feed(sim_raw_t *r, unsigned sock, const uint8_t *b, size_t len) {
  if (sock < r->nsock)
    on_message(r, &r->socks[sock], b, len);
}

static void fail_socket(sim_raw_t *r, uint32_t sock) {
  for (uint32_t i = 0; i < r->nslots; i++)
    if (r->slots[i].seq && r->slots[i].sock == sock)
      fail(r, i, SIM_FAIL_UNREACHABLE);
}

static void on_readable(uv_poll_t *h, int status, int events) {
  (void)events;
  raw_sock_t *so = h->data;
  sim_raw_t *r = so->r;
  if (status < 0 || r->closing)
    return;
  struct mmsghdr mm[RAW_BATCH];
  struct iovec iov[RAW_BATCH];
  for (;;) {
    for (int i = 0; i < RAW_BATCH; i++) {
      iov[i] = (struct iovec){r->rx[i], sizeof(r->rx[i])};
      mm[i] = (struct mmsghdr){.msg_hdr = {.msg_iov = &iov[i], .msg_iovlen = 1}};
    }
    int n = recvmmsg(so->fd, mm, RAW_BATCH, MSG_DONTWAIT, NULL);
    if (n < 0) {
      if (errno == ECONNREFUSED) /* ICMP port unreachable: nobody listens */
        fail_socket(r, (uint32_t)(so - r->socks));
      break;
    }
    for (int i = 0; i < n && !r->closing; i++)
      if (!(mm[i].msg_hdr.msg_flags & MSG_TRUNC))
        on_message(r, so, r->rx[i], mm[i].msg_len);
    if (n < RAW_BATCH)
      break;
  }
  if (r->cb->after_io && !r->closing)
    r->cb->after_io(r->arg);
}

/* Retransmissions (RFC 7252 4.2) and give-ups. */
static void on_timer(uv_timer_t *t) {
  sim_raw_t *r = t->data;
  uint64_t now = uv_hrtime();
  for (uint32_t i = 0; i < r->nslots && !r->closing; i++) {
    raw_slot_t *s = &r->slots[i];
    if (!s->seq || s->due_ns > now)
      continue;
    if (s->acked || s->tries > RAW_MAX_RETRANSMIT) {
      fail(r, i, SIM_FAIL_TIMEOUT);
      continue;
    }
    if (s->tries == RAW_MAX_RETRANSMIT) { /* the last one went out: wait once more */
      s->tries++;
      s->timeout_ms *= 2;
      s->due_ns = now + (uint64_t)s->timeout_ms * 1000000ull;
      continue;
    }
    (void)send(r->socks[s->sock].fd, s->dgram, s->len, MSG_DONTWAIT);
    s->tries++;
    s->timeout_ms *= 2;
    s->due_ns = now + (uint64_t)s->timeout_ms * 1000000ull;
  }
  if (r->cb->after_io && !r->closing)
    r->cb->after_io(r->arg);
}

int sim_raw_post(sim_raw_t *r, unsigned sock, uint64_t token, const char *path, int cf,
                 const void *buf, size_t len) {
  if (r->nfree == 0 || sock >= r->nsock)
    return -ENOBUFS;
  uint32_t i = r->free_slots[r->nfree - 1];
  raw_slot_t *s = &r->slots[i];
  raw_sock_t *so = &r->socks[sock];
  s->seq = ++r->seq ? r->seq : ++r->seq; /* never 0: 0 marks a free slot */
  s->mid = so->next_mid++;
  int n = build(s, i, path, cf, buf, len);
  if (n < 0) {
    s->seq = 0;
    return n;
  }
  if (send(so->fd, s->dgram, (size_t)n, MSG_DONTWAIT) < 0 && errno != EAGAIN &&
      errno != ENOBUFS) { /* a full socket buffer is a lost datagram: retransmitted */
    s->seq = 0;
    return -errno;
  }
  r->nfree--;
  s->token = token;
  s->sock = sock;
  s->len = (uint16_t)n;
  s->tries = 0;
  s->acked = false;
  s->timeout_ms = r->ack_timeout_ms + (uint32_t)(prng_next(r) % (r->ack_timeout_ms / 2 + 1));
  s->due_ns = uv_hrtime() + (uint64_t)s->timeout_ms * 1000000ull;
  return 0;
}

/* ---- open and close */

static void on_closed(uv_handle_t *h) {
  sim_raw_t *r = h->data;
  if (--r->open_handles > 0)
    return;
  for (unsigned i = 0; i < r->nsock; i++)
    if (r->socks[i].fd >= 0)
      close(r->socks[i].fd);
  free(r->socks);
  free(r->slots);
  free(r->free_slots);
  free(r->dgrams);
  free(r);
}

void sim_raw_close(sim_raw_t *r) {
  if (!r || r->closing)
    return;
  r->closing = true;
  for (unsigned i = 0; i < r->nsock; i++)
    if (r->socks[i].polling) {
      r->socks[i].poll.data = r; /* on_closed counts handles of r */
      uv_close((uv_handle_t *)&r->socks[i].poll, on_closed);
    }
  uv_close((uv_handle_t *)&r->timer, on_closed);
}

int sim_raw_open(uv_loop_t *loop, const sim_target_t *t, unsigned nsock, unsigned capacity,
                 unsigned ack_timeout_ms, int rcvbuf, const sim_coap_cb_t *cb, void *arg,
                 void *const *users, sim_raw_t **out) {
  *out = NULL;
  sim_raw_t *r = calloc(1, sizeof(*r));
  if (!r)
    return -ENOMEM;
  r->cb = cb;
  r->arg = arg;
  r->nslots = capacity;
  r->ack_timeout_ms = ack_timeout_ms;
  r->prng = uv_hrtime() | 1;
  r->socks = calloc(nsock, sizeof(*r->socks));
  r->slots = calloc(capacity, sizeof(*r->slots));
  r->free_slots = calloc(capacity, sizeof(*r->free_slots));
  r->dgrams = capacity <= RAW_SLOTS_MAX ? malloc((size_t)capacity * RAW_DGRAM_MAX) : NULL;
  uv_timer_init(loop, &r->timer);
  r->timer.data = r;
  r->open_handles = 1;
  if (!r->socks || !r->slots || !r->free_slots || !r->dgrams) {
    sim_raw_close(r);
    return -ENOMEM;
  }
  r->nsock = nsock;
  for (unsigned i = 0; i < capacity; i++) {
    r->slots[i].dgram = r->dgrams + (size_t)i * RAW_DGRAM_MAX;
    r->free_slots[r->nfree++] = capacity - 1 - i;
  }
  for (unsigned i = 0; i < nsock; i++)
    r->socks[i].fd = -1;
  struct sockaddr_storage to = t->addr; /* sim_target_t keeps the port apart */
  if (to.ss_family == AF_INET6)
    ((struct sockaddr_in6 *)&to)->sin6_port = htons(t->port);
  else
    ((struct sockaddr_in *)&to)->sin_port = htons(t->port);
  for (unsigned i = 0; i < nsock; i++) {
    raw_sock_t *so = &r->socks[i];
    so->r = r;
    so->user = users[i];
    so->next_mid = (uint16_t)prng_next(r);
    so->fd = socket(t->addr.ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (so->fd < 0 || connect(so->fd, (const struct sockaddr *)&to, t->addrlen) != 0) {
      int e = errno;
      log_err("load: socket %u of %u to %s: %s", i + 1, nsock, t->host, strerror(e));
      sim_raw_close(r);
      return -e;
    }
    if (rcvbuf > 0)
      (void)setsockopt(so->fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
    uv_poll_init(loop, &so->poll, so->fd);
    so->poll.data = so;
    so->polling = true;
    r->open_handles++;
    uv_poll_start(&so->poll, UV_READABLE, on_readable);
  }
  uv_timer_start(&r->timer, on_timer, RAW_SCAN_MS, RAW_SCAN_MS);
  *out = r;
  return 0;
}
