/* TLS 1.2 with mutual certificate authentication over libuv streams, and the
 * signature checks of the ledger extension: the one file of sitegate-rx
 * that includes mbedTLS headers.
 *
 * mbedTLS never touches a socket here. The session and the policy are
 * protocol/tlspipe.c's, shared with the gateway: its BIO callbacks read from
 * an input buffer the loop fills (rx_tls_feed) and write through a callback
 * that queues a uv_write, so a handshake is just "feed, call again until it
 * stops asking for input", driven by read events. The policy is fixed, not
 * configured: TLS 1.2 only, ECDHE-ECDSA with AES-GCM, a client certificate
 * required and verified against the authority's CA; here, the peer's key EC P-256
 * (the same key signs ledger records, UPLINK.md). One ECDSA handshake costs a
 * few milliseconds of the loop's time; mbedTLS 2.28 as Debian builds it has
 * no restartable ECC to slice that up. */
#include "authority/rx.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mbedtls/ecdsa.h>
#include <mbedtls/oid.h>
#include <mbedtls/pk.h>
#include <mbedtls/ssl.h>
#include <mbedtls/x509_crt.h>

#define IN_MAX (64 * 1024) /* ciphertext held before mbedTLS consumes it */

struct rx_tls_server {
  proto_tls_conf_t *tc;
};

struct rx_pubkey {
  mbedtls_x509_crt crt; /* the key is crt.pk */
};

struct rx_tls {
  proto_tls_t *p;
  char cn[HJ212_MN_MAX + 1];
  char subject[256];
  char fp[65];
  rx_pubkey_t peer; /* copy of the peer certificate */
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
  if (!t)
    return NULL;
  mbedtls_x509_crt_init(&t->peer.crt);
  if (!(t->p = proto_tls_new(s->tc, NULL, IN_MAX, send, arg))) {
    rx_tls_free(t);
    return NULL;
  }
  return t;
}

void rx_tls_free(rx_tls_t *t) {
  if (!t)
    return;
  proto_tls_free(t->p);
  mbedtls_x509_crt_free(&t->peer.crt);
  free(t);
}

int rx_tls_feed(rx_tls_t *t, const uint8_t *buf, size_t len) {
  return proto_tls_feed(t->p, buf, len);
}

/* The peer's subject CN, its subject line and fingerprint, after a
 * successful handshake. Refuses a key that is not EC P-256. */
static int take_peer(rx_tls_t *t) {
  const mbedtls_x509_crt *crt = mbedtls_ssl_get_peer_cert(proto_tls_ssl(t->p));
  if (!crt)
    return proto_tls_fail(t->p, "the gateway sent no certificate");
  if (mbedtls_x509_crt_parse_der(&t->peer.crt, crt->raw.p, crt->raw.len) != 0)
    return proto_tls_fail(t->p, "cannot keep the gateway's certificate");
  mbedtls_x509_dn_gets(t->subject, sizeof(t->subject), &crt->subject);
  for (const mbedtls_x509_name *n = &crt->subject; n; n = n->next) {
    if (n->oid.p && MBEDTLS_OID_CMP(MBEDTLS_OID_AT_CN, &n->oid) == 0) {
      size_t len = n->val.len;
      if (len == 0 || len > HJ212_MN_MAX)
        return proto_tls_fail(t->p, "certificate CN is not an MN of 1-%d characters", HJ212_MN_MAX);
      for (size_t i = 0; i < len; i++) {
        unsigned char c = n->val.p[i];
        if (!((c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
              c == '.' || c == '_' || c == '-'))
          return proto_tls_fail(t->p, "certificate CN has a character an MN cannot have");
      }
      memcpy(t->cn, n->val.p, len);
      t->cn[len] = '\0';
    }
  }
  if (t->cn[0] == '\0')
    return proto_tls_fail(t->p, "certificate subject \"%.120s\" has no CN", t->subject);
  if (mbedtls_pk_get_type(&crt->pk) != MBEDTLS_PK_ECKEY ||
      mbedtls_pk_ec(crt->pk)->grp.id != MBEDTLS_ECP_DP_SECP256R1)
    return proto_tls_fail(t->p, "certificate of %s does not hold an EC P-256 key", t->cn);
  uint8_t d[32];
  proto_sha256(crt->raw.p, crt->raw.len, NULL, 0, d);
  for (int i = 0; i < 32; i++)
    snprintf(t->fp + 2 * i, 3, "%02x", d[i]);
  return 0;
}

int rx_tls_handshake(rx_tls_t *t) {
  if (proto_tls_done(t->p))
    return 0; /* and the peer taken already */
  int rc = proto_tls_handshake(t->p, "handshake", "client certificate refused", NULL);
  if (rc == 0 && (rc = take_peer(t)) == 0)
    proto_tls_set_done(t->p);
  return rc;
}

int rx_tls_read(rx_tls_t *t, uint8_t *buf, size_t cap) { return proto_tls_read(t->p, buf, cap); }
int rx_tls_write(rx_tls_t *t, const uint8_t *buf, size_t len) {
  return proto_tls_write(t->p, buf, len);
}
void rx_tls_close_notify(rx_tls_t *t) { proto_tls_close_notify(t->p); }
const char *rx_tls_error(const rx_tls_t *t) { return proto_tls_error(t->p); }
const char *rx_tls_peer_cn(const rx_tls_t *t) { return t->cn; }
const char *rx_tls_peer_subject(const rx_tls_t *t) { return t->subject; }
const char *rx_tls_peer_fingerprint(const rx_tls_t *t) { return t->fp; }
const rx_pubkey_t *rx_tls_peer_key(const rx_tls_t *t) {
  return proto_tls_done(t->p) ? &t->peer : NULL;
}

/* ---- keys, hashes and signatures */

int rx_pubkey_load(const char *cert_path, rx_pubkey_t **out, char *err, size_t errlen) {
  rx_pubkey_t *k = calloc(1, sizeof(*k));
  if (!k)
    return -ENOMEM;
  mbedtls_x509_crt_init(&k->crt);
  int rc = mbedtls_x509_crt_parse_file(&k->crt, cert_path);
  if (rc != 0) {
    char what[300];
    snprintf(what, sizeof(what), "certificate %s", cert_path);
    proto_tls_say(err, errlen, what, rc);
    rx_pubkey_free(k);
    return -EINVAL;
  }
  if (mbedtls_pk_get_type(&k->crt.pk) != MBEDTLS_PK_ECKEY ||
      mbedtls_pk_ec(k->crt.pk)->grp.id != MBEDTLS_ECP_DP_SECP256R1) {
    snprintf(err, errlen, "certificate %s does not hold an EC P-256 key", cert_path);
    rx_pubkey_free(k);
    return -EINVAL;
  }
  *out = k;
  return 0;
}

void rx_pubkey_free(rx_pubkey_t *k) {
  if (!k)
    return;
  mbedtls_x509_crt_free(&k->crt);
  free(k);
}

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
  mbedtls_ecp_keypair *ec = mbedtls_pk_ec(key->crt.pk);
  mbedtls_mpi r, sv;
  mbedtls_mpi_init(&r);
  mbedtls_mpi_init(&sv);
  int rc = mbedtls_mpi_read_binary(&r, s->sig, 32);
  if (rc == 0)
    rc = mbedtls_mpi_read_binary(&sv, s->sig + 32, 32);
  if (rc == 0)
    rc = mbedtls_ecdsa_verify(&ec->grp, s->hash, 32, &ec->Q, &r, &sv);
  mbedtls_mpi_free(&r);
  mbedtls_mpi_free(&sv);
  if (rc != 0) {
    snprintf(err, errlen, "Sig of Seq %llu does not verify with the gateway's certificate",
             (unsigned long long)s->seq);
    return -EBADMSG;
  }
  return 0;
}
