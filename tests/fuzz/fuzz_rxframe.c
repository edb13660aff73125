/* libFuzzer harness for sitegate-rx's framing (authority/rxserver.c): the
 * decrypted byte stream of one gateway cut into lines, each line an HJ 212
 * frame, split messages (PNUM/PNO) collected by QN and put together, and
 * the writer's answers turned into 9014 replies.
 *
 * rxserver.c is compiled in whole, with TLS, the store and the signature
 * check replaced by the stubs below, so the harness drives the very
 * functions the server runs (conn_bytes and what it calls). Input: byte 0
 * picks the outcome the "writer" gives every message, byte 1 where the
 * stream is cut in two reads; the rest is the stream. Every message handed
 * to the writer must be well made: its packets, each framed again with its
 * length and CRC, decode, carry the message's QN and, when split, PNO 1..N
 * in order; its CP and packets are NUL-terminated strings of the lengths
 * it says. Everything allocated is freed (ASan's leak check). */
#include "authority/rxserver.c"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static stor_rx_msg_t *submitted[512];
static size_t n_submitted;
static hj212_frame_t check_frame;

static void check_msg(const stor_rx_msg_t *m) {
  if (m->npackets < 1 || m->npackets > PNUM_ASSEMBLE_MAX || !m->packets || !m->cp ||
      strlen(m->packets) != m->packets_len || strlen(m->cp) != m->cp_len)
    abort();
  const char *p = m->packets;
  for (int k = 0; k < m->npackets; k++) {
    const char *eol = strstr(p, "\r\n");
    if (!eol)
      abort();
    size_t n = (size_t)(eol - p);
    char framed[HJ212_FRAME_MAX + 16], err[160];
    int len = snprintf(framed, sizeof(framed), "##%04zu%.*s%04X", n, (int)n, p, hj212_crc(p, n));
    if (len < 0 || (size_t)len >= sizeof(framed) ||
        hj212_decode(framed, (size_t)len, &check_frame, err, sizeof(err)) != 0)
      abort(); /* a packet the server accepted no longer decodes */
    if (strcmp(check_frame.h.qn, m->qn) != 0)
      abort();
    if (m->npackets > 1 && check_frame.h.pno != k + 1)
      abort();
    p = eol + 2;
  }
  if (*p)
    abort();
}

/* ---- stubs: what the framing calls beyond itself */

size_t rx_store_submit(rx_store_t *st, stor_rx_msg_t *m) {
  (void)st;
  check_msg(m);
  if (n_submitted == sizeof(submitted) / sizeof(submitted[0]))
    abort(); /* more messages than bytes allow: cannot be */
  submitted[n_submitted++] = m;
  return n_submitted;
}
size_t rx_store_waiting(rx_store_t *st) {
  (void)st;
  return 0;
}
void rx_store_refusal(rx_store_t *st, const char *mn, const char *peer, const char *reason,
                      const char *frame_, size_t len) {
  (void)st, (void)mn, (void)peer, (void)frame_, (void)len;
  if (!reason || !*reason)
    abort(); /* a refusal says why */
}
void rx_store_seen(rx_store_t *st, const char *mn, const char *subject) {
  (void)st, (void)mn, (void)subject;
}
const char *rx_store_backend(const rx_store_t *st) {
  (void)st;
  return "none";
}
int rx_store_open(const char *db, void *loop, rx_done_fn done, void *arg, rx_store_t **out) {
  (void)db, (void)loop, (void)done, (void)arg, (void)out;
  return -ENOTSUP;
}
void rx_store_close(rx_store_t *st) { (void)st; }
void rx_store_stats(rx_store_t *st, rx_writer_stats_t *out) {
  (void)st;
  memset(out, 0, sizeof(*out));
}
void rx_msg_free(stor_rx_msg_t *m) {
  if (!m)
    return;
  free(m->packets);
  free(m->cp);
  free(m);
}
int rx_signed_verify(const rx_pubkey_t *key, const char *cp, size_t cp_len, const hj212_signed_t *s,
                     char *err, size_t errlen) {
  (void)key, (void)cp, (void)cp_len, (void)s, (void)err, (void)errlen;
  return 0;
}
int rx_tls_write(rx_tls_t *t, const uint8_t *buf, size_t len) {
  (void)t;
  char err[160];
  if (hj212_decode((const char *)buf, len - 2, &check_frame, err, sizeof(err)) != 0)
    abort(); /* what the server says must be a frame */
  return 0;
}
void rx_tls_close_notify(rx_tls_t *t) { (void)t; }
const char *rx_tls_error(const rx_tls_t *t) {
  (void)t;
  return "stub";
}
const char *rx_tls_peer_cn(const rx_tls_t *t) {
  (void)t;
  return "FUZZ-SITE-01";
}
const char *rx_tls_peer_subject(const rx_tls_t *t) {
  (void)t;
  return "CN=FUZZ-SITE-01";
}
const char *rx_tls_peer_fingerprint(const rx_tls_t *t) {
  (void)t;
  return "00";
}
const rx_pubkey_t *rx_tls_peer_key(const rx_tls_t *t) {
  (void)t;
  return NULL;
}
rx_tls_t *rx_tls_new(rx_tls_server_t *s, rx_tls_send_fn send, void *arg) {
  (void)s, (void)send, (void)arg;
  return NULL;
}
void rx_tls_free(rx_tls_t *t) { (void)t; }
int rx_tls_feed(rx_tls_t *t, const uint8_t *buf, size_t len) {
  (void)t, (void)buf, (void)len;
  return -ENOTSUP;
}
int rx_tls_handshake(rx_tls_t *t) {
  (void)t;
  return -ENOTSUP;
}
int rx_tls_read(rx_tls_t *t, uint8_t *buf, size_t cap) {
  (void)t, (void)buf, (void)cap;
  return 0;
}
int rx_tls_server_new(const char *ca, const char *cert, const char *key, rx_tls_server_t **out,
                      char *err, size_t errlen) {
  (void)ca, (void)cert, (void)key, (void)out, (void)err, (void)errlen;
  return -ENOTSUP;
}
void rx_tls_server_free(rx_tls_server_t *s) { (void)s; }
int rx_metrics_start(void *loop, const struct sockaddr *sa, rx_counters_fn fill, void *arg,
                     rx_metrics_t **out) {
  (void)loop, (void)sa, (void)fill, (void)arg, (void)out;
  return -ENOTSUP;
}
void rx_metrics_stop(rx_metrics_t *m) { (void)m; }

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 2)
    return 0;
  log_threshold = 0; /* refusals are logged: not what is measured here */
  static const rx_options_t opt = {.max_conn = 16, .idle_s = 60, .handshake_s = 30};
  server_t s;
  memset(&s, 0, sizeof(s));
  s.opt = &opt;
  conn_t *c = calloc(1, sizeof(*c));
  if (!c)
    return 0;
  c->srv = &s;
  c->refs = 1; /* the handle's */
  c->handshaken = true;
  snprintf(c->mn, sizeof(c->mn), "FUZZ-SITE-01");
  snprintf(c->peer, sizeof(c->peer), "fuzz");
  stor_rx_outcome_t outcome = (stor_rx_outcome_t)(data[0] % 4);
  size_t cut = size > 2 ? data[1] % (size - 1) : 0;
  const uint8_t *stream = data + 2;
  size_t n = size - 2;
  if (cut > n)
    cut = n;
  conn_bytes(c, stream, cut);
  conn_bytes(c, stream + cut, n - cut);
  for (size_t i = 0; i < n_submitted; i++) {
    submitted[i]->outcome = outcome;
    if (outcome == STOR_RX_REFUSED || outcome == STOR_RX_FAILED)
      snprintf(submitted[i]->reason, sizeof(submitted[i]->reason), "fuzz");
    rx_done(&s, submitted[i]); /* frees it and drops its reference */
  }
  n_submitted = 0;
  conn_unref(c); /* the handle's reference: frees partial messages too */
  return 0;
}
