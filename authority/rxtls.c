/* TLS 1.2 with mutual certificate authentication over libuv streams, and the
 * signature checks of the ledger extension: the receiver's names (rx_tls_*,
 * rx_pubkey_*, declared in rx.h) for what protocol/tlspipe.c does. No
 * mbedTLS header is included here; tlspipe.c is the one file that includes
 * them.
 *
 * mbedTLS never touches a socket. The session and the policy are
 * tlspipe.c's, shared with the gateway: it reads from an input buffer the
 * loop fills (rx_tls_feed) and writes through a callback that queues a
 * uv_write, so a handshake is just "feed, call again until it stops asking
 * for input", driven by read events. The policy is fixed, not configured:
 * TLS 1.2 only, ECDHE-ECDSA with AES-GCM, a client certificate required
 * and verified against the authority's CA; here, its CN an MN and its key
 * EC P-256 (the same key signs ledger records, UPLINK.md). One ECDSA
 * handshake costs a few milliseconds of the loop's time; mbedTLS 2.28 as
 * Debian builds it has no restartable ECC to slice that up. */
#include "authority/rx.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define IN_MAX (64 * 1024) /* ciphertext held before mbedTLS consumes it */

struct rx_tls_server {
  proto_tls_conf_t *tc;
};

struct rx_tls {
  proto_tls_t *p;
};

/* ---- the server's configuration */

int rx_tls_server_new(const char *ca, const char *cert, const char *key, rx_tls_server_t **out,
                      char *err, size_t errlen) {
  static const char *const names[3] = {"CA", "certificate", "key"};
  *out = NULL;
  rx_tls_server_t *s = calloc(1, sizeof(*s));
  if (!s) {
    snprintf(err, errlen, "out of memory");
    return -ENOMEM;
  }
  int rc = proto_tls_conf_new(true, ca, cert, key, names, &s->tc, err, errlen);
  if (rc != 0) {
    free(s);
    return rc;
  }
  *out = s;
  return 0;
}

void rx_tls_server_free(rx_tls_server_t *s) {
  if (!s)
    return;
  proto_tls_conf_free(s->tc);
  free(s);
}

/* ---- one session */

rx_tls_t *rx_tls_new(rx_tls_server_t *s, rx_tls_send_fn send, void *arg) {
  rx_tls_t *t = calloc(1, sizeof(*t));
  if (t && !(t->p = proto_tls_new(s->tc, NULL, IN_MAX, send, arg))) {
    free(t);
    t = NULL;
  }
  return t;
}

void rx_tls_free(rx_tls_t *t) {
  if (!t)
    return;
  proto_tls_free(t->p);
  free(t);
}

int rx_tls_feed(rx_tls_t *t, const uint8_t *buf, size_t len) {
  return proto_tls_feed(t->p, buf, len);
}

int rx_tls_handshake(rx_tls_t *t) {
  if (proto_tls_done(t->p))
    return 0; /* and the peer taken already */
  int rc = proto_tls_handshake(t->p, "handshake", "client certificate refused", NULL);
  if (rc == 0 && (rc = proto_tls_take_peer(t->p)) == 0)
    proto_tls_set_done(t->p);
  return rc;
}

int rx_tls_read(rx_tls_t *t, uint8_t *buf, size_t cap) { return proto_tls_read(t->p, buf, cap); }
int rx_tls_write(rx_tls_t *t, const uint8_t *buf, size_t len) {
  return proto_tls_write(t->p, buf, len);
}
void rx_tls_close_notify(rx_tls_t *t) { proto_tls_close_notify(t->p); }
const char *rx_tls_error(const rx_tls_t *t) { return proto_tls_error(t->p); }
const char *rx_tls_peer_cn(const rx_tls_t *t) { return proto_tls_peer_cn(t->p); }
const char *rx_tls_peer_subject(const rx_tls_t *t) { return proto_tls_peer_subject(t->p); }
const char *rx_tls_peer_fingerprint(const rx_tls_t *t) { return proto_tls_peer_fingerprint(t->p); }
const rx_pubkey_t *rx_tls_peer_key(const rx_tls_t *t) { return proto_tls_peer_key(t->p); }

/* ---- keys, hashes and signatures */

int rx_pubkey_load(const char *cert_path, rx_pubkey_t **out, char *err, size_t errlen) {
  return proto_pubkey_load(cert_path, out, err, errlen);
}

void rx_pubkey_free(rx_pubkey_t *k) { proto_pubkey_free(k); }

int rx_signed_verify(const rx_pubkey_t *key, const char *cp, size_t cp_len, const hj212_signed_t *s,
                     char *err, size_t errlen) {
  (void)cp_len;
  uint8_t h[32];
  proto_sha256(s->prev, sizeof(s->prev), cp, s->canon_len, h);
  if (memcmp(h, s->hash, 32) != 0) {
    snprintf(err, errlen, "Hash of Seq %llu does not match SHA-256(Prev || record)",
             (unsigned long long)s->seq);
    return -EBADMSG;
  }
  if (!key)
    return 0;
  if (proto_pubkey_verify(key, s->hash, s->sig) != 0) {
    snprintf(err, errlen, "Sig of Seq %llu does not verify with the gateway's certificate",
             (unsigned long long)s->seq);
    return -EBADMSG;
  }
  return 0;
}
