/* The uplink's TLS (mbedTLS 2.28), for both of its ends (UPLINK.md): the
 * gateway's client (gateway/tls.c) and the receiver's server
 * (authority/rxtls.c). One policy, one handshake step, and one session
 * whose ciphertext the caller carries: what the socket read is fed in,
 * what mbedTLS writes goes to a send callback. Each end names its own
 * files and messages and checks its peer (through proto_tls_ssl()). */
#include "protocol/protocol.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mbedtls/ctr_drbg.h>
#include <mbedtls/entropy.h>
#include <mbedtls/error.h>
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

struct proto_tls {
  mbedtls_ssl_context ssl;
  proto_tls_send_fn send;
  void *arg;
  uint8_t *in; /* fed in, not yet taken by mbedTLS: in_len bytes from in_off */
  size_t in_off, in_len, in_cap, in_max;
  bool done;
  char error[256];
};

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
  proto_tls_say(err, errlen, what, rc);
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

const struct mbedtls_x509_crt *proto_tls_conf_cert(const proto_tls_conf_t *c) { return &c->cert; }
const struct mbedtls_pk_context *proto_tls_conf_key(const proto_tls_conf_t *c) { return &c->key; }

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
  free(t->in);
  free(t);
}

struct mbedtls_ssl_context *proto_tls_ssl(proto_tls_t *t) {
  return &t->ssl;
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
    return proto_tls_fail(t, "%s: %s", refused, info);
  }
  if (rc == MBEDTLS_ERR_SSL_FATAL_ALERT_MESSAGE && alert)
    return proto_tls_fail(t, "%s", alert);
  return proto_tls_fail_mbed(t, what, rc);
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
  return proto_tls_fail_mbed(t, "TLS read", rc);
}

int proto_tls_write(proto_tls_t *t, const uint8_t *buf, size_t len) {
  while (len > 0) {
    int rc = mbedtls_ssl_write(&t->ssl, buf, len);
    if (rc < 0)
      return proto_tls_fail_mbed(t, "TLS write", rc);
    buf += rc;
    len -= (size_t)rc;
  }
  return 0;
}

void proto_tls_close_notify(proto_tls_t *t) {
  if (t->done)
    (void)mbedtls_ssl_close_notify(&t->ssl);
}

int proto_tls_fail(proto_tls_t *t, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(t->error, sizeof(t->error), fmt, ap);
  va_end(ap);
  return -EPROTO;
}

int proto_tls_fail_mbed(proto_tls_t *t, const char *what, int rc) {
  proto_tls_say(t->error, sizeof(t->error), what, rc);
  return -EPROTO;
}

const char *proto_tls_error(const proto_tls_t *t) { return t->error[0] ? t->error : "no error"; }

void proto_tls_say(char *out, size_t len, const char *what, int rc) {
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
