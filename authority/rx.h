/* sitegate-rx: the authority's receiver (folder-private header).
 *
 * One libuv loop accepts gateways over mutual TLS (rxtls.c, over
 * protocol/tlspipe.c, which alone includes mbedTLS headers), cuts the
 * stream into HJ 212 frames, checks them and assembles split messages
 * (rxserver.c). A writer thread (rxwriter.c) owns the database, which is
 * storage/'s (storage.h "the receiver's store"; only storage/ includes
 * SQLite's header): de-duplication, chain continuity and hourly seals are
 * decided there, and the loop sends 9014 only once the writer says a
 * message is durably stored. sitegate-rx.c is the command line: serve,
 * check, sites, export, the last two printed by rxquery.c. The wire
 * contract is protocol/UPLINK.md. */
#ifndef SITEGATE_RX_H
#define SITEGATE_RX_H

#include "protocol/protocol.h"
#include "storage/storage.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define RX_BEIJING_MIN 480 /* HJ 212 times are Beijing time, UTC+8 */

/* ---- TLS and signatures (rxtls.c, over protocol/tlspipe.c) */
typedef struct rx_tls_server rx_tls_server_t;
typedef struct rx_tls rx_tls_t;
typedef proto_pubkey_t rx_pubkey_t; /* a gateway's certificate and key */

/* Loads the CA that client certificates must chain to, the server's own
 * certificate and key, and seeds the random generator. Returns 0, or -EINVAL
 * with the file and mbedTLS's reason in `err`. */
int rx_tls_server_new(const char *ca, const char *cert, const char *key, rx_tls_server_t **out,
                      char *err, size_t errlen);
void rx_tls_server_free(rx_tls_server_t *s); /* accepts NULL */

/* Ciphertext the connection must write: `send` queues it on the socket and
 * returns 0, or a negative errno to fail the TLS operation. */
typedef int (*rx_tls_send_fn)(void *arg, const uint8_t *buf, size_t len);

/* A server-side TLS session over the caller's socket. NULL when out of
 * memory. */
rx_tls_t *rx_tls_new(rx_tls_server_t *s, rx_tls_send_fn send, void *arg);
void rx_tls_free(rx_tls_t *t); /* accepts NULL */

/* Hands ciphertext that arrived to the session. Returns 0, or -ENOBUFS when
 * the peer sends far more than a TLS record without it being consumed. */
int rx_tls_feed(rx_tls_t *t, const uint8_t *buf, size_t len);

/* Advances the handshake with what has been fed. Returns 0 when it is
 * complete and the client's certificate was verified against the CA (the
 * peer's CN is then available), -EAGAIN when more input is needed, or
 * -EPROTO with the reason in rx_tls_error(). */
int rx_tls_handshake(rx_tls_t *t);

/* Decrypted application data: returns bytes (> 0), 0 when nothing more is
 * available now, -ECONNRESET when the peer closed the session, or -EPROTO. */
int rx_tls_read(rx_tls_t *t, uint8_t *buf, size_t cap);

/* Encrypts and queues `len` bytes. Returns 0 or -EPROTO. */
int rx_tls_write(rx_tls_t *t, const uint8_t *buf, size_t len);
void rx_tls_close_notify(rx_tls_t *t);

const char *rx_tls_error(const rx_tls_t *t);
/* After the handshake: the certificate's subject CN (the site's MN), its
 * subject as text, the SHA-256 of the certificate (hex) and its public key.
 * The key lives as long as the session. */
const char *rx_tls_peer_cn(const rx_tls_t *t);
const char *rx_tls_peer_subject(const rx_tls_t *t);
const char *rx_tls_peer_fingerprint(const rx_tls_t *t);
const rx_pubkey_t *rx_tls_peer_key(const rx_tls_t *t);

/* A gateway's public key from its certificate file (for `check --cert`). */
int rx_pubkey_load(const char *cert_path, rx_pubkey_t **out, char *err, size_t errlen);
void rx_pubkey_free(rx_pubkey_t *k);

/* Checks a signed record (UPLINK.md "Signed records"): Hash against the
 * canonical bytes and, when `key` is not NULL, Sig against the key. Returns
 * 0 or -EBADMSG with the reason. */
int rx_signed_verify(const rx_pubkey_t *key, const char *cp, size_t cp_len, const hj212_signed_t *s,
                     char *err, size_t errlen);

/* ---- the writer thread (rxwriter.c) over the receiver's store
 * (storage.h "the receiver's store"; only storage/ includes SQLite's
 * header) */
typedef struct rx_store rx_store_t;

/* Frees a message made by the loop (its packets and CP). Accepts NULL. */
void rx_msg_free(stor_rx_msg_t *m);

typedef void (*rx_done_fn)(void *arg, stor_rx_msg_t *m);

/* Opens (creating and migrating) the database, a file or a PostgreSQL URI
 * (storage.h "the receiver's store"), and starts the writer. `done`
 * is called on the loop thread (through `loop`, a uv_loop_t) for each
 * submitted message once it is decided. Returns 0 or a negative errno,
 * logged. */
int rx_store_open(const char *db, void *loop, rx_done_fn done, void *arg, rx_store_t **out);
/* Finishes what was submitted, stops the writer, closes. Accepts NULL. The
 * loop must run afterwards so the close of its async handle completes. */
void rx_store_close(rx_store_t *st);
/* Hands `m`, made on the loop, to the writer, which owns it until `done`
 * gives it back. Loop thread. Returns the number of messages waiting, so
 * the caller can stop reading while the writer is behind. */
size_t rx_store_submit(rx_store_t *st, stor_rx_msg_t *m);
size_t rx_store_waiting(rx_store_t *st);            /* messages and records not yet decided */
const char *rx_store_backend(const rx_store_t *st); /* "SQLite", "PostgreSQL" */
/* Records a refusal (who, why, the frame) for `sites` and for people. */
void rx_store_refusal(rx_store_t *st, const char *mn, const char *peer, const char *reason,
                      const char *frame, size_t frame_len);
/* A gateway completed a handshake. */
void rx_store_seen(rx_store_t *st, const char *mn, const char *subject);

/* What the writer counts, for /metrics (since start). */
#define RX_COMMIT_BUCKETS 10
extern const double RX_COMMIT_BOUNDS_MS[RX_COMMIT_BUCKETS];
typedef struct rx_writer_stats {
  uint64_t batches;                      /* committed */
  uint64_t retries;                      /* batches the database asked again for */
  uint64_t errors;                       /* batches not stored */
  uint64_t reconnects;                   /* the database connection lost, then back */
  bool lost;                             /* the database is unreachable now */
  uint64_t commit_le[RX_COMMIT_BUCKETS]; /* committed batches that took <= the bound, cumulative */
  double commit_ms_sum;
  /* the backfill (storage.h stor_rx_backfill()), run while idle */
  uint64_t backfill_messages; /* stored messages decoded by it */
  int64_t backfill_left;      /* frame ids left to look at (0: done, or not known yet) */
} rx_writer_stats_t;
/* A copy of the writer's counters. Any thread. */
void rx_store_stats(rx_store_t *st, rx_writer_stats_t *out);

/* ---- /metrics (rxmetrics.c), loop thread */
/* Why a frame or connection was refused, as counted: a fixed list, so the
 * metric's label has few values (the full reason is in the log and in the
 * refusals table). */
#define RX_REFUSAL_KINDS(X)                                                                        \
  X(FRAME, "frame")         /* not a well-formed HJ 212 frame (CRC, length, fields) */             \
  X(MN, "mn")               /* a frame for another MN than the certificate's */                    \
  X(NO_QN, "no_qn")         /* a frame without QN */                                               \
  X(SPLIT, "split")         /* PNUM/PNO that cannot be collected */                                \
  X(LINE, "line")           /* a line too long to be a frame */                                    \
  X(SIGNATURE, "signature") /* a signed record whose Hash or Sig does not check */                 \
  X(CHAIN, "chain")         /* a broken chain or a fork */                                         \
  X(SEAL, "seal")           /* a malformed hourly seal */                                          \
  X(TLS, "tls")             /* a failed TLS handshake (certificate refused...) */
#define RX_REFUSAL_ENUM(e, s) RX_REFUSED_##e,
typedef enum { RX_REFUSAL_KINDS(RX_REFUSAL_ENUM) RX_REFUSAL_N } rx_refusal_t;
extern const char *const RX_REFUSAL_NAMES[RX_REFUSAL_N];

/* Sign-ins by outcome (rxconsole.c's head: the limits on guessing). */
#define RX_SIGNIN_OUTCOMES(X)                                                                      \
  X(OK, "ok")                           /* signed in */                                            \
  X(BAD, "bad")                         /* wrong name or password */                               \
  X(LIMITED_ADDRESS, "limited_address") /* refused: too many failures from the address */          \
  X(LIMITED_ACCOUNT, "limited_account") /* refused: too many failures for the account */
#define RX_SIGNIN_ENUM(e, s) RX_SIGNIN_##e,
typedef enum { RX_SIGNIN_OUTCOMES(RX_SIGNIN_ENUM) RX_SIGNIN_N } rx_signin_t;
extern const char *const RX_SIGNIN_NAMES[RX_SIGNIN_N];

typedef struct rx_counters {
  uint64_t accepted, open, handshakes, frames, refused, acks;
  uint64_t refused_by[RX_REFUSAL_N];
  /* connections without a handshake yet: open now, and closed for the
   * limits on them (refused, evicted, silent, too slow) since start */
  uint64_t strangers, stranger_drops;
  uint64_t messages[4]; /* by stor_rx_outcome_t */
  size_t waiting;
  rx_writer_stats_t w;
  bool console;                  /* --http: the console's counts below */
  uint64_t signins[RX_SIGNIN_N]; /* by rx_signin_t */
} rx_counters_t;
typedef void (*rx_counters_fn)(void *arg, rx_counters_t *out);
typedef struct rx_metrics rx_metrics_t;
struct sockaddr;
/* Serves GET /metrics on `sa` (plain HTTP/1.0), each scrape filled by
 * `fill`. Returns 0 or a libuv error; rx_metrics_stop() closes it (accepts
 * NULL). */
int rx_metrics_start(void *loop, const struct sockaddr *sa, rx_counters_fn fill, void *arg,
                     rx_metrics_t **out);
void rx_metrics_stop(rx_metrics_t *m);
/* The Prometheus text of `k`, malloc'ed (NULL when out of memory). */
char *rx_metrics_format(const rx_counters_t *k);

/* ---- the supervision console (rxconsole.c), on libmicrohttpd's threads */
typedef struct rx_console rx_console_t;
/* Serves the console on `sa`, reading `db` (a file or URI) on connections
 * of its own; `users` is the accounts file (NULL: no sign-in, allowed on a
 * loopback address only), `web` the pages' folder (NULL:
 * ../share/sitegate-rx/web beside the program). Returns 0 or a negative
 * errno, logged. rx_console_stop() accepts NULL. */
int rx_console_start(const struct sockaddr *sa, const char *db, const char *users, const char *web,
                     rx_console_t **out);
void rx_console_stop(rx_console_t *c);
/* The counts of sign-ins since start into `out`. Any thread. */
void rx_console_stats(rx_console_t *c, uint64_t out[RX_SIGNIN_N]);
/* `sitegate-rx passwd`: sets NAME's password in the accounts file (made
 * when missing), hashed with crypt(3)'s default method. 0 or -errno,
 * printed. */
int rx_console_passwd(const char *users, const char *name, const char *password);

/* ---- read-only queries for the command line (rxquery.c); print to
 * stdout. Return 0, or a negative errno with the reason printed to
 * stderr. */
int rx_query_sites(const char *db, bool json);
int rx_query_export(const char *db, const char *mn, int64_t since, int64_t until, const char *cn,
                    bool json);

/* ---- the server (rxserver.c) */
typedef struct rx_options {
  const char *listen; /* host:port */
  const char *ca, *cert, *key, *db;
  int max_conn;
  int idle_s;          /* close a connection silent this long */
  int handshake_s;     /* close one whose handshake takes longer */
  bool reuseport;      /* SO_REUSEPORT: several receivers on one --listen */
  const char *metrics; /* host:port of /metrics, or NULL */
  const char *http;    /* host:port of the supervision console, or NULL */
  const char *users;   /* the console's accounts file, or NULL */
  const char *web;     /* the console's pages, or NULL for the default */
} rx_options_t;

/* Runs until SIGTERM/SIGINT. Returns 0 after a clean stop, or 1 with a
 * one-line reason logged when it cannot start. */
int rx_serve(const rx_options_t *o);

/* ---- systemd (rxnotify.c): Type=notify and WatchdogSec=; nothing
 * without systemd. Loop thread. */
/* READY=1 with `status` (STATUS=), once the database is open and the port
 * listens; starts the WATCHDOG=1 pings on `loop` (a uv_loop_t) when the unit
 * asks for them. */
void rx_notify_ready(void *loop, const char *status);
/* STOPPING=1, and stops the pings (their timer's close completes on the
 * loop's next run). */
void rx_notify_stopping(void);

#endif
