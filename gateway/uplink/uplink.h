/* gateway/uplink: the uplink to the supervision authority
 * (protocol/UPLINK.md is the contract, DESIGN.md "Uplink to the authority").
 *
 * Three parts:
 * - tls.c: a TLS 1.2 client session over buffers (the loop moves the
 *   bytes) and the ECDSA P-256 signer the signed records need, the
 *   gateway's names for protocol/tlspipe.c (the one file that includes
 *   mbedTLS headers; SHA-256 is its proto_sha256());
 * - uplink_build.c, on a libuv worker: makes the messages (2011/2051/2061/
 *   2031 from the storage rollups, 6011/6012 from the ledger, 6021 from the
 *   alarm history, 6031 from the daily energy, 6041 hourly seals, 2081 at a
 *   restart), signs the 6xxx ones on one chain, and stores them in the
 *   outbox (storage.h "uplink outbox") with the cursors that say what has
 *   been made, in one transaction: a crash never makes one twice or skips
 *   one;
 * - the loop side, four files sharing the folder-private uplink_int.h:
 *   conn.c connects (libuv TCP, non-blocking, TLS) and reconnects with a
 *   jittered back-off; window.c sends the outbox in order with a window of
 *   unacknowledged messages, marks what the 9014s acknowledge and resends
 *   after OverTime up to ReCount; pull.c answers the authority's pulls
 *   (9011, the original frames, 9012) and time calibration (1012); uplink.c
 *   starts and stops them, ticks them, and holds the status below. */
#ifndef SITEGATE_GW_UPLINK_H
#define SITEGATE_GW_UPLINK_H

#include "gateway/core/core.h"
#include "gateway/rules/rules.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define UPLINK_BEIJING_MIN 480 /* HJ 212 times are Beijing time, UTC+8 */

/* ---- TLS and signatures (tls.c) */
typedef struct gtls_conf gtls_conf_t;
typedef struct gtls gtls_t;
typedef struct gtls_signer gtls_signer_t;

/* Loads the authority's CA (the only one trusted), this gateway's
 * certificate and key, and fixes the policy: TLS 1.2 only,
 * ECDHE-ECDSA with AES-GCM, the server's certificate required. Returns 0,
 * or -EINVAL with the file and mbedTLS's reason in `err`. */
int gtls_conf_new(const char *ca, const char *cert, const char *key, gtls_conf_t **out, char *err,
                  size_t errlen);
void gtls_conf_free(gtls_conf_t *c); /* accepts NULL */
/* The subject CN of our own certificate (the receiver takes it as our MN). */
const char *gtls_conf_cn(const gtls_conf_t *c);

/* Ciphertext to write: queue it on the socket and return 0, or a negative
 * errno to fail the TLS operation. */
typedef int (*gtls_send_fn)(void *arg, const uint8_t *buf, size_t len);

/* A client session that checks the server's certificate against the CA
 * and `server_name`. NULL when out of memory. */
gtls_t *gtls_new(gtls_conf_t *c, const char *server_name, gtls_send_fn send, void *arg);
void gtls_free(gtls_t *t); /* accepts NULL */
/* Ciphertext that arrived. Returns 0, or -ENOBUFS when far too much is
 * waiting unconsumed. */
int gtls_feed(gtls_t *t, const uint8_t *buf, size_t len);
/* Advances the handshake: 0 when complete, -EAGAIN for more input, or
 * -EPROTO with the reason in gtls_error(). */
int gtls_handshake(gtls_t *t);
/* Plaintext: bytes (> 0), 0 when none now, -ECONNRESET when the server
 * closed the session, -EPROTO. */
int gtls_read(gtls_t *t, uint8_t *buf, size_t cap);
/* Encrypts and queues all of `buf`. Returns 0 or -EPROTO. */
int gtls_write(gtls_t *t, const uint8_t *buf, size_t len);
void gtls_close_notify(gtls_t *t);
const char *gtls_error(const gtls_t *t);
const char *gtls_cipher(const gtls_t *t); /* after the handshake */

/* The gateway's key for signing ledger records, with its own random
 * generator (one thread at a time). */
int gtls_signer_new(const char *key, gtls_signer_t **out, char *err, size_t errlen);
void gtls_signer_free(gtls_signer_t *s);
/* ECDSA P-256 over the 32-byte digest: raw r || s, 32 bytes each. */
int gtls_sign(gtls_signer_t *s, const uint8_t hash[32], uint8_t sig[64]);

/* ---- building messages (uplink_build.c), on a worker thread */
typedef struct uplink_builder uplink_builder_t;

typedef struct uplink_build_result {
  size_t made;       /* messages stored by this pass */
  size_t dropped;    /* real-time messages the bound dropped */
  bool over;         /* the outbox is over its bound with nothing left to drop */
  int err;           /* 0, or the negative errno of a failed pass (retried next pass) */
  char error[192];   /* a failed pass's reason */
  int64_t chain_seq; /* the signed chain's last Seq */
} uplink_build_result_t;

/* Loads the signing key. Returns 0 or -EINVAL with the reason. */
int uplink_builder_new(gw_t *gw, uplink_builder_t **out, char *err, size_t errlen);
void uplink_builder_free(uplink_builder_t *b); /* accepts NULL */
/* One pass at wall time `now`: makes what is due and stores it. Worker
 * thread, one pass at a time. */
void uplink_builder_run(uplink_builder_t *b, double now, uplink_build_result_t *res);

/* ---- machinery's daily figures for the 6053 (UPLINK.md). The machinery
 * room computes them; a room does not include another of its level, so
 * the top file hands its function over with uplink_set_machine_days()
 * before uplink_start() (once; the builder's worker calls it with its own
 * reader). Without it no 6053 is made. */
typedef struct uplink_machine_day {
  const char *code;
  const char *stage; /* "III", ...; NULL: not in the register */
  double power_kw;   /* 0 when not in the register */
  double onsite_h;
  double engine_h, idle_share, fuel_l; /* NAN: the terminal did not say */
  double t_co2, nox_kg, pm_kg;
} uplink_machine_day_t;
typedef int (*uplink_machine_day_cb)(void *arg, const uplink_machine_day_t *d);
/* cb for every machine on site or working in local day [day, end);
 * cb returns non-zero to stop. 0 or -errno. */
typedef int (*uplink_machine_days_fn)(stor_reader_t *rd, const sg_config_t *cfg, int64_t day,
                                      int64_t end, uplink_machine_day_cb cb, void *arg);
void uplink_set_machine_days(uplink_machine_days_fn fn);

/* A frame's DataTime (YYYYMMDDhhmmss, Beijing time) for Unix seconds. */
void uplink_datatime(int64_t t, char out[15]);
/* DataTime (YYYYMMDDhhmmss) to Unix seconds; -1 when malformed. */
int64_t uplink_parse_datatime(const char *s);

/* ---- the loop side (uplink.c): gw->uplink. Loop thread. */
/* Starts the uplink when [uplink] host is set (else does nothing): loads
 * the PKI, then connects in the background. Returns 0, or -EINVAL with the
 * reason logged (a missing or bad certificate stops start-up). */
int uplink_start(gw_t *gw);
/* Stops connecting and sending (close_notify, handles close; the loop must
 * run once more). Accepts a gateway without an uplink. */
void uplink_stop(gw_t *gw);
/* After the loop has run out: frees it. */
void uplink_free(gw_t *gw);

/* ---- what GET /api/uplink shows */
#define UPLINK_ERROR_MAX 256
typedef enum {
  UPLINK_IDLE,
  UPLINK_RESOLVING,
  UPLINK_CONNECTING,
  UPLINK_HANDSHAKE,
  UPLINK_READY
} uplink_state_t;
const char *uplink_state_name(uplink_state_t s); /* "disconnected", ..., "connected" */

typedef struct uplink_status {
  uplink_state_t state;
  double state_since; /* Unix s */
  double connected_since, down_since;
  char cipher[64];
  char last_error[UPLINK_ERROR_MAX];
  double last_error_t;
  uint64_t sent, resent, acked, connects, handshakes;
  double last_ack_t;
  size_t inflight;
  int64_t chain_seq;
  double clock_offset_s; /* authority's SystemTime - ours, at the last 1012 */
  bool clock_known;
  uint64_t made, build_failures, pulls;
  bool over;
} uplink_status_t;
/* The uplink's state, copied from the loop (gw_call_on_loop): any thread
 * but the loop's. Returns 0; -ENOENT without [uplink] host (*out zeroed);
 * -ECANCELED while the loop is stopping. */
int uplink_status(gw_t *gw, uplink_status_t *out);

#endif
