/* TLS 1.2 client sessions over buffers, and the ECDSA signatures of the
 * ledger extension, for the uplink: the gateway's names (gtls_*, declared
 * in uplink.h) for what protocol/tlspipe.c does, with the gateway's
 * file names and messages. No mbedTLS header is included here; tlspipe.c
 * is the one file that includes them.
 *
 * mbedTLS never touches a socket. The session and the policy are
 * tlspipe.c's, shared with the receiver: it reads from an input buffer the
 * loop fills (gtls_feed) and writes through a callback that queues a
 * uv_write, so the handshake is "feed, call again until it stops asking
 * for input", driven by read events, and the loop never blocks. The policy
 * is fixed, not configured (protocol/UPLINK.md "Transport"): TLS 1.2 only,
 * ECDHE-ECDSA with AES-GCM, the authority's CA pinned as the only trust
 * anchor, the server's name checked against its certificate, and our own
 * certificate (an EC P-256 key, the one that signs ledger records) sent
 * for mutual authentication. The signer has its own key context and random
 * generator because it runs on a worker thread while sessions run on the
 * loop; mbedTLS contexts are not shared across threads. */
#include "gateway/uplink/uplink.h"
#include "protocol/protocol.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#define IN_MAX (256 * 1024) /* ciphertext held before mbedTLS consumes it */

struct gtls_conf {
  proto_tls_conf_t *tc;
  char cn[64];
};

struct gtls {
  proto_tls_t *p;
};

struct gtls_signer {
  proto_signer_t *s;
};

/* ---- configuration */

int gtls_conf_new(const char *ca, const char *cert, const char *key, gtls_conf_t **out, char *err,
                  size_t errlen) {
  static const char *const names[3] = {"[uplink] ca", "[uplink] cert", "[uplink] key"};
  *out = NULL;
  gtls_conf_t *c = calloc(1, sizeof(*c));
  if (!c) {
    snprintf(err, errlen, "out of memory");
    return -ENOMEM;
  }
  int rc = proto_tls_conf_new(false, ca, cert, key, names, &c->tc, err, errlen);
  if (rc == 0 && !proto_tls_conf_key_is_p256(c->tc)) {
    snprintf(err, errlen, "[uplink] key %s is not an EC P-256 key (deploy/pki/ makes one)", key);
    rc = -EINVAL;
  }
  if (rc != 0) {
    gtls_conf_free(c);
    return rc;
  }
  proto_tls_conf_cn(c->tc, c->cn, sizeof(c->cn));
  *out = c;
  return 0;
}

void gtls_conf_free(gtls_conf_t *c) {
  if (!c)
    return;
  proto_tls_conf_free(c->tc);
  free(c);
}

const char *gtls_conf_cn(const gtls_conf_t *c) { return c->cn; }

/* ---- one session */

gtls_t *gtls_new(gtls_conf_t *c, const char *server_name, gtls_send_fn send, void *arg) {
  gtls_t *t = calloc(1, sizeof(*t));
  if (t && !(t->p = proto_tls_new(c->tc, server_name, IN_MAX, send, arg))) {
    free(t);
    t = NULL;
  }
  return t;
}

void gtls_free(gtls_t *t) {
  if (!t)
    return;
  proto_tls_free(t->p);
  free(t);
}

int gtls_feed(gtls_t *t, const uint8_t *buf, size_t len) { return proto_tls_feed(t->p, buf, len); }

int gtls_handshake(gtls_t *t) {
  int rc = proto_tls_handshake(t->p, "TLS handshake", "the receiver's certificate is refused",
                               "the receiver refused the handshake (a fatal alert: is our "
                               "certificate from the authority's CA?)");
  if (rc == 0)
    proto_tls_set_done(t->p);
  return rc;
}

int gtls_read(gtls_t *t, uint8_t *buf, size_t cap) { return proto_tls_read(t->p, buf, cap); }

int gtls_write(gtls_t *t, const uint8_t *buf, size_t len) {
  return proto_tls_write(t->p, buf, len);
}

void gtls_close_notify(gtls_t *t) { proto_tls_close_notify(t->p); }

const char *gtls_error(const gtls_t *t) { return proto_tls_error(t->p); }

const char *gtls_cipher(const gtls_t *t) { return proto_tls_cipher(t->p); }

/* ---- signatures */

int gtls_signer_new(const char *key, gtls_signer_t **out, char *err, size_t errlen) {
  *out = NULL;
  gtls_signer_t *s = calloc(1, sizeof(*s));
  if (!s)
    return -ENOMEM;
  int rc = proto_signer_new(key, "[uplink] key", &s->s, err, errlen);
  if (rc != 0) {
    free(s);
    return rc;
  }
  *out = s;
  return 0;
}

void gtls_signer_free(gtls_signer_t *s) {
  if (!s)
    return;
  proto_signer_free(s->s);
  free(s);
}

int gtls_sign(gtls_signer_t *s, const uint8_t hash[32], uint8_t sig[64]) {
  return proto_sign(s->s, hash, sig);
}
