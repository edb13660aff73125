/* The uplink's TLS and signatures (mbedTLS 2.28), for both of its ends
 * (UPLINK.md): the gateway's client (gateway/uplink/tls.c) and the receiver's
 * server (authority/rxtls.c). One policy, one handshake step, and one
 * session whose ciphertext the caller carries: what the socket read is fed
 * in, what mbedTLS writes goes to a send callback. Each end names its own
 * files and messages; the receiver's check of a gateway's certificate, the
 * ECDSA P-256 signer and verifier of ledger records and SHA-256 are here
 * too, so this is the one file of the tree that includes mbedTLS headers
 * and protocol.h shows none of its types. */
#include "protocol/protocol.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mbedtls/ctr_drbg.h>
#include <mbedtls/ecdsa.h>
#include <mbedtls/entropy.h>
#include <mbedtls/error.h>
#include <mbedtls/oid.h>
#include <mbedtls/pk.h>
#include <mbedtls/sha256.h>
#include <mbedtls/ssl.h>
#include <mbedtls/x509_crt.h>

#define IN_FIRST 16384 /* first size of the buffer of ciphertext fed in */

struct proto_tls_conf {
  mbedtls_ssl_config conf;
  mbedtls_x509_crt ca, cert;
  mbedtls_pk_context key;
  mbedtls_entropy_context entropy;
  mbedtls_ctr_drbg_context drbg;
};

struct proto_pubkey {
  mbedtls_x509_crt crt; /* the key is crt.pk */
};

struct proto_tls {
  mbedtls_ssl_context ssl;
  proto_tls_send_fn send;
  void *arg;
  uint8_t *in; /* fed in, not yet taken by mbedTLS: in_len bytes from in_off */
  size_t in_off, in_len, in_cap, in_max;
  bool done;
  char error[256];
  /* the peer, once proto_tls_take_peer() accepted it */
  bool peer_taken;
  char cn[HJ212_MN_MAX + 1];
  char subject[256];
  char fp[65];
  proto_pubkey_t peer; /* a copy of the peer's certificate */
};

struct proto_signer {
  mbedtls_pk_context key;
  mbedtls_entropy_context entropy;
  mbedtls_ctr_drbg_context drbg;
};

static int tls_fail(proto_tls_t *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int tls_fail_mbed(proto_tls_t *t, const char *what, int rc);
static void say(char *out, size_t len, const char *what, int rc);

static bool is_p256(const mbedtls_pk_context *pk) {
  return mbedtls_pk_get_type(pk) == MBEDTLS_PK_ECKEY &&
         mbedtls_pk_ec(*pk)->grp.id == MBEDTLS_ECP_DP_SECP256R1;
}

/* ---- the policy (UPLINK.md): TLS 1.2 only, ECDHE-ECDSA with AES-GCM, the
 * peer's certificate required and checked against the authority's CA */

static const int suites[] = {MBEDTLS_TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
                             MBEDTLS_TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384, 0};
/* The receiver also takes X25519 from a client that offers it; the gateway
 * offers the NIST curves its ECDSA certificates use. */
static const mbedtls_ecp_group_id client_curves[] = {MBEDTLS_ECP_DP_SECP256R1,
                                                     MBEDTLS_ECP_DP_SECP384R1, MBEDTLS_ECP_DP_NONE};
static const mbedtls_ecp_group_id server_curves[] = {MBEDTLS_ECP_DP_SECP256R1,
                                                     MBEDTLS_ECP_DP_CURVE25519,
                                                     MBEDTLS_ECP_DP_SECP384R1, MBEDTLS_ECP_DP_NONE};

int proto_tls_conf_new(bool server, const char *ca, const char *cert, const char *key,
                       const char *const names[3], proto_tls_conf_t **out, char *err,
                       size_t errlen) {
  *out = NULL;
  proto_tls_conf_t *c = calloc(1, sizeof(*c));
  if (!c) {
    snprintf(err, errlen, "out of memory");
    return -ENOMEM;
  }
  mbedtls_ssl_config_init(&c->conf);
  mbedtls_x509_crt_init(&c->ca);
  mbedtls_x509_crt_init(&c->cert);
  mbedtls_pk_init(&c->key);
  mbedtls_entropy_init(&c->entropy);
  mbedtls_ctr_drbg_init(&c->drbg);
  int rc;
  char what[600];
  static const unsigned char pers[] = "sitegate uplink";
  if ((rc = mbedtls_ctr_drbg_seed(&c->drbg, mbedtls_entropy_func, &c->entropy, pers,
                                  sizeof(pers) - 1)) != 0) {
    snprintf(what, sizeof(what), "seeding the random generator");
    goto fail;
  }
  if ((rc = mbedtls_x509_crt_parse_file(&c->ca, ca)) != 0) {
    snprintf(what, sizeof(what), "%s %s", names[0], ca);
    goto fail;
  }
  if ((rc = mbedtls_x509_crt_parse_file(&c->cert, cert)) != 0) {
    snprintf(what, sizeof(what), "%s %s", names[1], cert);
    goto fail;
  }
  if ((rc = mbedtls_pk_parse_keyfile(&c->key, key, NULL)) != 0) {
    snprintf(what, sizeof(what), "%s %s", names[2], key);
    goto fail;
  }
  if ((rc = mbedtls_ssl_config_defaults(
           &c->conf, server ? MBEDTLS_SSL_IS_SERVER : MBEDTLS_SSL_IS_CLIENT,
           MBEDTLS_SSL_TRANSPORT_STREAM, MBEDTLS_SSL_PRESET_DEFAULT)) != 0) {
    snprintf(what, sizeof(what), "TLS defaults");
    goto fail;
  }
  /* TLS 1.2 and nothing else (3.3 is TLS 1.2 in the record layer's terms). */
  mbedtls_ssl_conf_min_version(&c->conf, MBEDTLS_SSL_MAJOR_VERSION_3, MBEDTLS_SSL_MINOR_VERSION_3);
  mbedtls_ssl_conf_max_version(&c->conf, MBEDTLS_SSL_MAJOR_VERSION_3, MBEDTLS_SSL_MINOR_VERSION_3);
  mbedtls_ssl_conf_ciphersuites(&c->conf, suites);
  mbedtls_ssl_conf_curves(&c->conf, server ? server_curves : client_curves);
  mbedtls_ssl_conf_authmode(&c->conf, MBEDTLS_SSL_VERIFY_REQUIRED);
  mbedtls_ssl_conf_ca_chain(&c->conf, &c->ca, NULL);
  mbedtls_ssl_conf_rng(&c->conf, mbedtls_ctr_drbg_random, &c->drbg);
  mbedtls_ssl_conf_renegotiation(&c->conf, MBEDTLS_SSL_RENEGOTIATION_DISABLED);
  if ((rc = mbedtls_ssl_conf_own_cert(&c->conf, &c->cert, &c->key)) != 0) {
    snprintf(what, sizeof(what), "%s %s with key %s", names[1], cert, key);
    goto fail;
  }
  *out = c;
  return 0;
fail:
  say(err, errlen, what, rc);
  proto_tls_conf_free(c);
  return -EINVAL;
}

void proto_tls_conf_free(proto_tls_conf_t *c) {
  if (!c)
    return;
  mbedtls_ssl_config_free(&c->conf);
  mbedtls_x509_crt_free(&c->ca);
  mbedtls_x509_crt_free(&c->cert);
  mbedtls_pk_free(&c->key);
  mbedtls_ctr_drbg_free(&c->drbg);
  mbedtls_entropy_free(&c->entropy);
  free(c);
}

void proto_tls_conf_cn(const proto_tls_conf_t *c, char *out, size_t cap) {
  out[0] = '\0';
  for (const mbedtls_x509_name *n = &c->cert.subject; n; n = n->next)
    if (n->oid.p && MBEDTLS_OID_CMP(MBEDTLS_OID_AT_CN, &n->oid) == 0)
      snprintf(out, cap, "%.*s", (int)n->val.len, (const char *)n->val.p);
}

bool proto_tls_conf_key_is_p256(const proto_tls_conf_t *c) { return is_p256(&c->key); }

/* ---- one session */

static int bio_send(void *ctx, const unsigned char *buf, size_t len) {
  proto_tls_t *t = ctx;
  return t->send(t->arg, buf, len) == 0 ? (int)len : MBEDTLS_ERR_SSL_INTERNAL_ERROR;
}

static int bio_recv(void *ctx, unsigned char *buf, size_t len) {
  proto_tls_t *t = ctx;
  if (t->in_len == 0)
    return MBEDTLS_ERR_SSL_WANT_READ;
  size_t n = len < t->in_len ? len : t->in_len;
  memcpy(buf, t->in + t->in_off, n);
  t->in_off += n;
  t->in_len -= n;
  if (t->in_len == 0)
    t->in_off = 0;
  return (int)n;
}

proto_tls_t *proto_tls_new(const proto_tls_conf_t *c, const char *server_name, size_t in_max,
                           proto_tls_send_fn send, void *arg) {
  proto_tls_t *t = calloc(1, sizeof(*t));
  if (!t)
    return NULL;
  mbedtls_ssl_init(&t->ssl);
  mbedtls_x509_crt_init(&t->peer.crt);
  t->send = send;
  t->arg = arg;
  t->in_max = in_max;
  if (mbedtls_ssl_setup(&t->ssl, &c->conf) != 0 ||
      (server_name && mbedtls_ssl_set_hostname(&t->ssl, server_name) != 0)) {
    proto_tls_free(t);
    return NULL;
  }
  mbedtls_ssl_set_bio(&t->ssl, t, bio_send, bio_recv, NULL);
  return t;
}

void proto_tls_free(proto_tls_t *t) {
  if (!t)
    return;
  mbedtls_ssl_free(&t->ssl);
  mbedtls_x509_crt_free(&t->peer.crt);
  free(t->in);
  free(t);
}

int proto_tls_feed(proto_tls_t *t, const uint8_t *buf, size_t len) {
  if (t->in_off > 0 && t->in_len > 0)
    memmove(t->in, t->in + t->in_off, t->in_len);
  t->in_off = 0;
  if (t->in_len + len > t->in_cap) {
    if (t->in_len + len > t->in_max)
      return -ENOBUFS;
    size_t cap = t->in_cap ? t->in_cap : IN_FIRST;
    while (cap < t->in_len + len)
      cap *= 2;
    uint8_t *p = realloc(t->in, cap);
    if (!p)
      return -ENOBUFS;
    t->in = p;
    t->in_cap = cap;
  }
  memcpy(t->in + t->in_len, buf, len);
  t->in_len += len;
  return 0;
}

int proto_tls_handshake(proto_tls_t *t, const char *what, const char *refused, const char *alert) {
  if (t->done)
    return 0;
  int rc = mbedtls_ssl_handshake(&t->ssl);
  if (rc == MBEDTLS_ERR_SSL_WANT_READ || rc == MBEDTLS_ERR_SSL_WANT_WRITE)
    return -EAGAIN;
  if (rc == 0)
    return 0;
  uint32_t flags = mbedtls_ssl_get_verify_result(&t->ssl);
  if (rc == MBEDTLS_ERR_X509_CERT_VERIFY_FAILED && flags != 0 && flags != (uint32_t)-1) {
    char info[160];
    mbedtls_x509_crt_verify_info(info, sizeof(info), "", flags);
    info[strcspn(info, "\n")] = '\0';
    return tls_fail(t, "%s: %s", refused, info);
  }
  if (rc == MBEDTLS_ERR_SSL_FATAL_ALERT_MESSAGE && alert)
    return tls_fail(t, "%s", alert);
  return tls_fail_mbed(t, what, rc);
}

void proto_tls_set_done(proto_tls_t *t) { t->done = true; }
bool proto_tls_done(const proto_tls_t *t) { return t->done; }

int proto_tls_read(proto_tls_t *t, uint8_t *buf, size_t cap) {
  int rc = mbedtls_ssl_read(&t->ssl, buf, cap);
  if (rc > 0)
    return rc;
  if (rc == MBEDTLS_ERR_SSL_WANT_READ || rc == MBEDTLS_ERR_SSL_WANT_WRITE)
    return 0;
  if (rc == 0 || rc == MBEDTLS_ERR_SSL_PEER_CLOSE_NOTIFY)
    return -ECONNRESET;
  return tls_fail_mbed(t, "TLS read", rc);
}

int proto_tls_write(proto_tls_t *t, const uint8_t *buf, size_t len) {
  while (len > 0) {
    int rc = mbedtls_ssl_write(&t->ssl, buf, len);
    if (rc < 0)
      return tls_fail_mbed(t, "TLS write", rc);
    buf += rc;
    len -= (size_t)rc;
  }
  return 0;
}

void proto_tls_close_notify(proto_tls_t *t) {
  if (t->done)
    (void)mbedtls_ssl_close_notify(&t->ssl);
}

static int tls_fail(proto_tls_t *t, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(t->error, sizeof(t->error), fmt, ap);
  va_end(ap);
  return -EPROTO;
}

static int tls_fail_mbed(proto_tls_t *t, const char *what, int rc) {
  say(t->error, sizeof(t->error), what, rc);
  return -EPROTO;
}

const char *proto_tls_error(const proto_tls_t *t) { return t->error[0] ? t->error : "no error"; }

const char *proto_tls_cipher(const proto_tls_t *t) { return mbedtls_ssl_get_ciphersuite(&t->ssl); }

/* "what: mbedTLS's text for rc" into out. */
static void say(char *out, size_t len, const char *what, int rc) {
  char e[128];
  mbedtls_strerror(rc, e, sizeof(e));
  snprintf(out, len, "%s: %s", what, e);
}

void proto_sha256(const void *a, size_t alen, const void *b, size_t blen, uint8_t out[32]) {
  mbedtls_sha256_context c;
  mbedtls_sha256_init(&c);
  mbedtls_sha256_starts_ret(&c, 0);
  if (alen)
    mbedtls_sha256_update_ret(&c, a, alen);
  if (blen)
    mbedtls_sha256_update_ret(&c, b, blen);
  mbedtls_sha256_finish_ret(&c, out);
  mbedtls_sha256_free(&c);
}

/* ---- the receiver's check of a gateway (UPLINK.md "Transport") */

/* The subject CN (which must be an MN), the subject line and the
 * fingerprint of the peer's certificate, and a copy of it for signature
 * checks. Refuses a key that is not EC P-256. */
int proto_tls_take_peer(proto_tls_t *t) {
  const mbedtls_x509_crt *crt = mbedtls_ssl_get_peer_cert(&t->ssl);
  if (!crt)
    return tls_fail(t, "the gateway sent no certificate");
  if (mbedtls_x509_crt_parse_der(&t->peer.crt, crt->raw.p, crt->raw.len) != 0)
    return tls_fail(t, "cannot keep the gateway's certificate");
  mbedtls_x509_dn_gets(t->subject, sizeof(t->subject), &crt->subject);
  for (const mbedtls_x509_name *n = &crt->subject; n; n = n->next) {
    if (n->oid.p && MBEDTLS_OID_CMP(MBEDTLS_OID_AT_CN, &n->oid) == 0) {
      size_t len = n->val.len;
      if (len == 0 || len > HJ212_MN_MAX)
        return tls_fail(t, "certificate CN is not an MN of 1-%d characters", HJ212_MN_MAX);
      for (size_t i = 0; i < len; i++) {
        unsigned char c = n->val.p[i];
        if (!((c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
              c == '.' || c == '_' || c == '-'))
          return tls_fail(t, "certificate CN has a character an MN cannot have");
      }
      memcpy(t->cn, n->val.p, len);
      t->cn[len] = '\0';
    }
  }
  if (t->cn[0] == '\0')
    return tls_fail(t, "certificate subject \"%.120s\" has no CN", t->subject);
  if (!is_p256(&crt->pk))
    return tls_fail(t, "certificate of %s does not hold an EC P-256 key", t->cn);
  uint8_t d[32];
  proto_sha256(crt->raw.p, crt->raw.len, NULL, 0, d);
  for (int i = 0; i < 32; i++)
    snprintf(t->fp + 2 * i, 3, "%02x", d[i]);
  t->peer_taken = true;
  return 0;
}

const char *proto_tls_peer_cn(const proto_tls_t *t) { return t->cn; }
const char *proto_tls_peer_subject(const proto_tls_t *t) { return t->subject; }
const char *proto_tls_peer_fingerprint(const proto_tls_t *t) { return t->fp; }
const proto_pubkey_t *proto_tls_peer_key(const proto_tls_t *t) {
  return t->done && t->peer_taken ? &t->peer : NULL;
}

/* ---- keys and signatures of the ledger extension (UPLINK.md "Signed
 * records") */

int proto_pubkey_load(const char *cert_path, proto_pubkey_t **out, char *err, size_t errlen) {
  proto_pubkey_t *k = calloc(1, sizeof(*k));
  if (!k)
    return -ENOMEM;
  mbedtls_x509_crt_init(&k->crt);
  int rc = mbedtls_x509_crt_parse_file(&k->crt, cert_path);
  if (rc != 0) {
    char what[300];
    snprintf(what, sizeof(what), "certificate %s", cert_path);
    say(err, errlen, what, rc);
    proto_pubkey_free(k);
    return -EINVAL;
  }
  if (!is_p256(&k->crt.pk)) {
    snprintf(err, errlen, "certificate %s does not hold an EC P-256 key", cert_path);
    proto_pubkey_free(k);
    return -EINVAL;
  }
  *out = k;
  return 0;
}

void proto_pubkey_free(proto_pubkey_t *k) {
  if (!k)
    return;
  mbedtls_x509_crt_free(&k->crt);
  free(k);
}

int proto_pubkey_verify(const proto_pubkey_t *k, const uint8_t hash[32], const uint8_t sig[64]) {
  mbedtls_ecp_keypair *ec = mbedtls_pk_ec(k->crt.pk);
  mbedtls_mpi r, sv;
  mbedtls_mpi_init(&r);
  mbedtls_mpi_init(&sv);
  int rc = mbedtls_mpi_read_binary(&r, sig, 32);
  if (rc == 0)
    rc = mbedtls_mpi_read_binary(&sv, sig + 32, 32);
  if (rc == 0)
    rc = mbedtls_ecdsa_verify(&ec->grp, hash, 32, &ec->Q, &r, &sv);
  mbedtls_mpi_free(&r);
  mbedtls_mpi_free(&sv);
  return rc == 0 ? 0 : -EBADMSG;
}

int proto_signer_new(const char *key, const char *name, proto_signer_t **out, char *err,
                     size_t errlen) {
  *out = NULL;
  proto_signer_t *s = calloc(1, sizeof(*s));
  if (!s)
    return -ENOMEM;
  mbedtls_pk_init(&s->key);
  mbedtls_entropy_init(&s->entropy);
  mbedtls_ctr_drbg_init(&s->drbg);
  static const unsigned char pers[] = "sitegated ledger signer";
  int rc =
      mbedtls_ctr_drbg_seed(&s->drbg, mbedtls_entropy_func, &s->entropy, pers, sizeof(pers) - 1);
  if (rc != 0) {
    say(err, errlen, "seeding the random generator", rc);
  } else if ((rc = mbedtls_pk_parse_keyfile(&s->key, key, NULL)) != 0) {
    char what[300];
    snprintf(what, sizeof(what), "%s %s", name, key);
    say(err, errlen, what, rc);
  } else if (!is_p256(&s->key)) {
    snprintf(err, errlen, "%s %s is not an EC P-256 key", name, key);
    rc = -1;
  }
  if (rc != 0) {
    proto_signer_free(s);
    return -EINVAL;
  }
  *out = s;
  return 0;
}

void proto_signer_free(proto_signer_t *s) {
  if (!s)
    return;
  mbedtls_pk_free(&s->key);
  mbedtls_ctr_drbg_free(&s->drbg);
  mbedtls_entropy_free(&s->entropy);
  free(s);
}

int proto_sign(proto_signer_t *s, const uint8_t hash[32], uint8_t sig[64]) {
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
