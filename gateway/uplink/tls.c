/* TLS 1.2 client sessions over buffers, and the ECDSA signatures of the
 * ledger extension: the one gateway file that includes mbedTLS headers.
 *
 * mbedTLS never touches a socket. The session and the policy are
 * protocol/tlspipe.c's, shared with the receiver: its BIO callbacks read from an input
 * buffer the loop fills (gtls_feed) and write through a callback that
 * queues a uv_write, so the handshake is "feed, call again until it stops
 * asking for input", driven by read events, and the loop never blocks. The
 * policy is fixed, not configured (protocol/UPLINK.md "Transport"): TLS 1.2
 * only, ECDHE-ECDSA with AES-GCM, the authority's CA pinned as the only
 * trust anchor, the server's name checked against its certificate, and our
 * own certificate (an EC P-256 key, the one that signs ledger records) sent
 * for mutual authentication. The signer has its own key context and random
 * generator because it runs on a worker thread while sessions run on the
 * loop; mbedTLS contexts are not shared across threads. */
#include "gateway/uplink/uplink.h"
#include "protocol/protocol.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mbedtls/ctr_drbg.h>
#include <mbedtls/ecdsa.h>
#include <mbedtls/entropy.h>
#include <mbedtls/oid.h>
#include <mbedtls/pk.h>
#include <mbedtls/ssl.h>
#include <mbedtls/x509_crt.h>

#define IN_MAX (256 * 1024) /* ciphertext held before mbedTLS consumes it */

struct gtls_conf {
  proto_tls_conf_t *tc;
  char cn[64];
};

struct gtls {
  proto_tls_t *p;
};

struct gtls_signer {
  mbedtls_pk_context key;
  mbedtls_entropy_context entropy;
  mbedtls_ctr_drbg_context drbg;
};

static bool is_p256(const mbedtls_pk_context *pk) {
  return mbedtls_pk_get_type(pk) == MBEDTLS_PK_ECKEY &&
         mbedtls_pk_ec(*pk)->grp.id == MBEDTLS_ECP_DP_SECP256R1;
}

/* ---- configuration */

/* The subject CN of `crt` into out. */
static void subject_cn(const mbedtls_x509_crt *crt, char *out, size_t cap) {
  out[0] = '\0';
  for (const mbedtls_x509_name *n = &crt->subject; n; n = n->next)
    if (n->oid.p && MBEDTLS_OID_CMP(MBEDTLS_OID_AT_CN, &n->oid) == 0)
      snprintf(out, cap, "%.*s", (int)n->val.len, (const char *)n->val.p);
}

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
  if (rc == 0 && !is_p256(proto_tls_conf_key(c->tc))) {
    snprintf(err, errlen, "[uplink] key %s is not an EC P-256 key (deploy/pki/ makes one)", key);
    rc = -EINVAL;
  }
  if (rc != 0) {
    gtls_conf_free(c);
    return rc;
  }
  subject_cn(proto_tls_conf_cert(c->tc), c->cn, sizeof(c->cn));
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

const char *gtls_cipher(const gtls_t *t) {
  return mbedtls_ssl_get_ciphersuite(proto_tls_ssl(t->p));
}

/* ---- signatures and hashes */

int gtls_signer_new(const char *key, gtls_signer_t **out, char *err, size_t errlen) {
  *out = NULL;
  gtls_signer_t *s = calloc(1, sizeof(*s));
  if (!s)
    return -ENOMEM;
  mbedtls_pk_init(&s->key);
  mbedtls_entropy_init(&s->entropy);
  mbedtls_ctr_drbg_init(&s->drbg);
  static const unsigned char pers[] = "sitegated ledger signer";
  int rc =
      mbedtls_ctr_drbg_seed(&s->drbg, mbedtls_entropy_func, &s->entropy, pers, sizeof(pers) - 1);
  if (rc != 0) {
    proto_tls_say(err, errlen, "seeding the random generator", rc);
  } else if ((rc = mbedtls_pk_parse_keyfile(&s->key, key, NULL)) != 0) {
    char what[300];
    snprintf(what, sizeof(what), "[uplink] key %s", key);
    proto_tls_say(err, errlen, what, rc);
  } else if (!is_p256(&s->key)) {
    snprintf(err, errlen, "[uplink] key %s is not an EC P-256 key", key);
    rc = -1;
  }
  if (rc != 0) {
    gtls_signer_free(s);
    return -EINVAL;
  }
  *out = s;
  return 0;
}

void gtls_signer_free(gtls_signer_t *s) {
  if (!s)
    return;
  mbedtls_pk_free(&s->key);
  mbedtls_ctr_drbg_free(&s->drbg);
  mbedtls_entropy_free(&s->entropy);
  free(s);
}

int gtls_sign(gtls_signer_t *s, const uint8_t hash[32], uint8_t sig[64]) {
  mbedtls_ecp_keypair *ec = mbedtls_pk_ec(s->key);
  mbedtls_mpi r, sv;
  mbedtls_mpi_init(&r);
  mbedtls_mpi_init(&sv);
  int rc =
      mbedtls_ecdsa_sign(&ec->grp, &r, &sv, &ec->d, hash, 32, mbedtls_ctr_drbg_random, &s->drbg);
  if (rc == 0)
    rc = mbedtls_mpi_write_binary(&r, sig, 32);
  if (rc == 0)
    rc = mbedtls_mpi_write_binary(&sv, sig + 32, 32);
  mbedtls_mpi_free(&r);
  mbedtls_mpi_free(&sv);
  return rc == 0 ? 0 : -EIO;
}
