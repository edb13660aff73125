/* sensors: private declarations of sitesim, the simulated worksite.
 *
 * The module has no public header: its surface is the program (see
 * `sitesim --help`). Files and their jobs:
 *   sitesim.c  command line, `gen-config`
 *   coapio.c   libcoap clients on the libuv loop
 *   rawcoap.c  plain CoAP without libcoap, for the load generator
 *   model.c    believable readings: pure functions of seed, device and time
 *   site.c     the site mode: one CoAP session per configured device
 *   load.c     the load generator for benchmarks
 *   gate.c     a gate reader posting machinery entries and exits
 *   weighbridge.c, equipment.c  scales posting tickets; equipment
 *              controllers as CoAP servers (coap3 is included by coapio.c
 *              and equipment.c only)
 * Everything runs on one libuv loop in one thread. */
#ifndef SITEGATE_SENSORS_INT_H
#define SITEGATE_SENSORS_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <uv.h>

#include "common/common.h"
#include "protocol/protocol.h"

#define SIM_CF_SENML_JSON 110 /* RFC 8428 section 12.3 */
#define SIM_CF_SENML_CBOR 112
/* Payload bytes one pack may use: a UDP datagram within libcoap's default
 * MTU (1152) after CoAP header, token, options and DTLS record overhead, so
 * no block-wise transfer (RFC 7959) is needed. */
#define SIM_PAYLOAD_MAX 1024

/* ---- coapio.c: libcoap driven by one uv_poll_t on its epoll fd */
typedef struct sim_coap sim_coap_t;
typedef struct sim_sess sim_sess_t;

typedef enum {
  SIM_FAIL_TIMEOUT,     /* no answer after the last retransmission */
  SIM_FAIL_RESET,       /* the peer answered with RST */
  SIM_FAIL_UNREACHABLE, /* ICMP unreachable or the socket gave up */
  SIM_FAIL_TLS,         /* the DTLS handshake failed or the session closed */
} sim_fail_t;

typedef struct sim_reply {
  int code; /* class * 100 + detail: 204, 400, 503 */
  const uint8_t *payload;
  size_t len;
  long max_age; /* seconds, -1 when the option is absent */
} sim_reply_t;

/* Callbacks; `user` is the pointer given to sim_sess_open(). They run
 * inside libcoap's processing: they must not open or close sessions, nor
 * post (post from after_io or from a libuv callback instead). */
typedef struct sim_coap_cb {
  void (*on_reply)(void *user, uint64_t token, const sim_reply_t *r);
  void (*on_fail)(void *user, uint64_t token, sim_fail_t why);
  void (*on_link)(void *user, bool up); /* DTLS session up or down; may be NULL */
  void (*after_io)(void *arg);          /* after each batch of I/O; may be NULL */
} sim_coap_cb_t;

/* Where the gateway is: coap://host:port or coaps://host:port. */
typedef struct sim_target {
  bool secure;
  uint16_t port;
  char host[128];
  struct sockaddr_storage addr;
  socklen_t addrlen;
} sim_target_t;

/* Parses and resolves `uri`; a missing port becomes `default_port`.
 * Returns 0, or -EINVAL with a sentence in `err`. */
int sim_target_parse(const char *uri, uint16_t default_port, sim_target_t *out, char *err,
                     size_t errlen);
/* Copies `t` with another scheme and port (same resolved host). */
void sim_target_with(const sim_target_t *t, bool secure, uint16_t port, sim_target_t *out);
/* The target device `dev` of `cfg` posts to, on `base`'s host: over DTLS
 * when it has a psk (plain CoAP, with a warning, when the site has no
 * [coap] dtls_port and `base` is plain), else plain CoAP. */
void sim_target_for(const sim_target_t *base, const sg_config_t *cfg, const sg_device_t *dev,
                    sim_target_t *out);
/* URI text of `t` for messages. */
const char *sim_target_str(const sim_target_t *t, char *buf, size_t len);

/* Creates the CoAP context and starts watching it on `loop`. `cb` must
 * outlive the context. Returns 0 or a negative errno. */
int sim_coap_open(uv_loop_t *loop, const sim_coap_cb_t *cb, void *arg, sim_coap_t **out);
/* Stops watching and frees the context, its sessions and `c` once the poll
 * handle has closed (run the loop). No callback runs after this call. */
void sim_coap_close(sim_coap_t *c);

/* Replaces libcoap's random source (getrandom, one call per CON) by a
 * seeded user-space generator: for load tests, where the system call shows.
 * Call after sim_coap_open(). Tokens and DTLS keys do not come from it. */
void sim_coap_fast_prng(uint64_t seed);

/* Opens a client session with its own UDP socket (its own source port).
 * With `psk` non-NULL the target must be coaps and the DTLS PSK identity is
 * `identity`. Returns NULL after logging why. The session is freed by
 * sim_coap_close(). */
sim_sess_t *sim_sess_open(sim_coap_t *c, const sim_target_t *t, const char *identity,
                          const char *psk, void *user);
/* Transmission parameters (RFC 7252 4.8): outstanding CON limit, initial
 * ACK timeout (libcoap 4.3.1 refuses less than 1 s) and retransmissions.
 * 0 keeps the current value. */
void sim_sess_tune(sim_sess_t *s, unsigned nstart, unsigned ack_timeout_ms,
                   unsigned max_retransmit);
/* Sets the session socket's receive buffer (the kernel caps it at
 * net.core.rmem_max): a window of many requests on one session gets its
 * answers in a burst. Returns 0 or a negative errno. */
int sim_sess_rcvbuf(sim_sess_t *s, int bytes);
/* True once the session can carry requests (DTLS handshake done). */
bool sim_sess_ready(const sim_sess_t *s);
/* Sends POST /r as CON with an 8-byte token; the payload is copied.
 * Returns 0, -EMSGSIZE when it does not fit one datagram, or -EIO. */
int sim_sess_post(sim_sess_t *s, uint64_t token, int content_format, const void *buf, size_t len);
/* The same to another resource: POST /`path` (weighbridges post to "w"). */
int sim_sess_post_to(sim_sess_t *s, uint64_t token, const char *path, int content_format,
                     const void *buf, size_t len);

/* ---- coapio.c: the retry policy, and one message at a time.
 * A device that could not deliver waits SIM_RETRY_MIN_MS, doubling to
 * SIM_RETRY_MAX_MS: sim_backoff_ms(&fails) gives the wait and counts the
 * failure (the caller zeroes `fails` on an answer).
 *
 * The gate reader and the weighbridge send their events one at a time,
 * oldest first, each until the gateway answers it: a sim_sender_t (the
 * timer its first member) runs `pump(timer.data)` when it is time to
 * send, resends a message with no answer in SIM_REPLY_WAIT_MS (a lost
 * separate response) and backs off after a failure. */
#define SIM_RETRY_MIN_MS 1000
#define SIM_RETRY_MAX_MS 60000
#define SIM_REPLY_WAIT_MS 30000
uint64_t sim_backoff_ms(unsigned *fails);

typedef struct sim_sender {
  uv_timer_t timer; /* data: the owner, pump's argument; the next due, a retry or the watchdog */
  void (*pump)(void *owner); /* sends what is due, or sim_sender_later */
  const char *id, *what;     /* for the log: the device, "a ticket" */
  const bool *stopping;      /* the owner's: no timer once it is set */
  uint64_t token;
  bool inflight;
  unsigned fails;
} sim_sender_t;
void sim_sender_init(uv_loop_t *loop, sim_sender_t *s, void *owner, void (*pump)(void *owner),
                     const char *id, const char *what, const bool *stopping);
void sim_sender_later(sim_sender_t *s, uint64_t ms);
/* POST /`path` through `sess` as the message in flight: 0 or
 * sim_sess_post_to's error (then nothing is in flight). */
int sim_sender_post(sim_sender_t *s, sim_sess_t *sess, uint64_t token, const char *path, int cf,
                    const void *buf, size_t len);
/* True when `token` answers the message in flight, which then no longer is. */
bool sim_sender_answered(sim_sender_t *s, uint64_t token);
/* The message in flight (if `token` is its) was not delivered: back off. */
void sim_sender_failed(sim_sender_t *s, uint64_t token);

/* ---- rawcoap.c: plain CoAP over UDP without libcoap, for the load
 * generator (a request costs it a send() and a share of a recvmmsg()).
 * `nsock` connected UDP sockets (source ports) to `t`, at most `capacity`
 * requests outstanding in all (up to 65536), CON with retransmissions from
 * `ack_timeout_ms`; `rcvbuf` > 0 sizes each socket's receive buffer.
 * Replies and failures come through `cb` with users[sock] as `user`;
 * after_io(arg) runs after each batch of datagrams and each timer scan.
 * Returns 0 or a negative errno (logged); after sim_raw_close() (which
 * accepts NULL) the memory goes once the loop has run. */
typedef struct sim_raw sim_raw_t;
int sim_raw_open(uv_loop_t *loop, const sim_target_t *t, unsigned nsock, unsigned capacity,
                 unsigned ack_timeout_ms, int rcvbuf, const sim_coap_cb_t *cb, void *arg,
                 void *const *users, sim_raw_t **out);
/* POST /`path` with Content-Format `cf` on socket `sock`: 0, -ENOBUFS when
 * `capacity` requests are outstanding, -EMSGSIZE, or the send's errno. */
int sim_raw_post(sim_raw_t *r, unsigned sock, uint64_t token, const char *path, int cf,
                 const void *buf, size_t len);
void sim_raw_close(sim_raw_t *r);
/* One CoAP message as rawcoap.c reads it (the only options it keeps are
 * Max-Age; the payload points into the datagram). */
typedef struct sim_raw_msg {
  unsigned type, code, tkl;
  uint16_t mid;
  uint64_t token;
  long max_age; /* -1: absent */
  const uint8_t *payload;
  size_t len;
} sim_raw_msg_t;
/* 0, or -1 for a datagram that is not a well-formed CoAP message (RFC 7252
 * 3). Fuzzed by tests/fuzz/fuzz_rawcoap.c. */
int sim_raw_parse(const uint8_t *b, size_t len, sim_raw_msg_t *m);
/* Takes datagram `b` as if it had come on socket `sock`: the reader's
 * whole answer path (matching, separate responses, RST, duplicates) without
 * the network. For tests/fuzz/fuzz_rawcoap.c. */
void sim_raw__feed(sim_raw_t *r, unsigned sock, const uint8_t *b, size_t len);
/* Forgets every outstanding request, without a callback, and starts again
 * as sim_raw_open left it, but with timeouts and Message IDs drawn from
 * `seed`: so that a fuzz run repeats (fuzz_rawcoap.c). */
void sim_raw__reset(sim_raw_t *r, uint64_t seed);

/* ---- model.c: readings. Every random draw is a hash of (seed, device,
 * channel, time), so a reading is a pure function of those: two runs with
 * the same seed give the same values at the same timestamps, whatever the
 * speed or the order of events. Times are Unix seconds. */
uint64_t sim_hash(uint64_t a, uint64_t b);
uint64_t sim_key(uint64_t seed, const char *device);

typedef struct sim_weather {
  double temp, rh, pressure, wind_speed, wind_dir;
} sim_weather_t;
void sim_weather_at(uint64_t seed, double t, sim_weather_t *w);
/* Local hour of day (0..24) in the zone set by TZ. */
double sim_local_hour(double t);

typedef struct sim_model {
  sg_devtype_t type;
  uint64_t seed, key;
  double rated_kw; /* energy and equipment */
  bool always_on;  /* equipment that runs day and night (pumps) */
  double energy_kwh, energy_t;
  double last_t; /* noise: last second sampled */
  /* machine terminals (sim_model_machine) */
  int stage; /* proto_stage_t of the machine it is fitted to */
  bool smoky, all_day;
  double duty, idle_share, engine_h0, fuel_l0;
  /* --history's story (sim_model_story): 0 none */
  unsigned story;
  double story_end;
} sim_model_t;

/* Prepares the model of `d` for reports from time `t_start` on. */
void sim_model_init(sim_model_t *m, const sg_device_t *d, uint64_t seed, double t_start);
/* A machine terminal's model: the machine it is fitted to (`reg`, from
 * --machines; NULL: stage III, 100 kW) and whether its engine is worn
 * (--smoky: it smokes above the usual limit). After sim_model_init. */
void sim_model_machine(sim_model_t *m, const proto_machine_t *reg, bool smoky);
/* The history's story: `sitesim --history` gives the past days events the
 * rules must catch, relative to `end` (when the history reaches the
 * present), so that every demo opens with alarms raised (and cleared) in
 * the past and one still active for a person to acknowledge:
 *   SIM_STORY_DUST_NOW    a dust episode (PM10 about 280) from 90 min
 *                         before `end` to 30 min after: an alarm still on;
 *   SIM_STORY_DUST_PAST   one at the last 10:00 at least 20 h back, 100 min;
 *   SIM_STORY_NIGHT_NOISE a concrete pump at 72 dB(A) for 15 min from 23:10
 *                         of the last night at least 3 h back (limit 55).
 * After sim_model_init. */
#define SIM_STORY_DUST_NOW 1u
#define SIM_STORY_DUST_PAST 2u
#define SIM_STORY_NIGHT_NOISE 4u
void sim_model_story(sim_model_t *m, unsigned story, double end);
/* Fills `p` (device name included) with the records of the report at `t`:
 * the pack may exceed one datagram (noise carries one `la` per second since
 * the last report), the caller splits it. */
void sim_model_report(sim_model_t *m, const char *device, double t, proto_pack_t *p);

/* ---- site.c and load.c */
typedef struct sim_opts {
  const char *config;
  const char *gateway; /* NULL: coap://127.0.0.1:[coap] port */
  double speed;
  double duration_s; /* 0: until SIGINT/SIGTERM */
  bool cbor;
  uint64_t seed;
  bool verbose;
  double ignore;        /* share of commands equipment controllers ignore (equipment.c) */
  const char *machines; /* --machines: the register as CSV (gate.c, machine terminals) */
  const char *smoky;    /* --smoky: codes of machines whose engines smoke, comma-separated */
  double history_s;     /* with speed > 1 and no duration: how far back to start (0: a day) */
} sim_opts_t;
int sim_site_run(const sim_opts_t *o);

typedef struct sim_load_opts {
  const char *gateway;
  const char *prefix;
  const char *psk;
  unsigned devices, records, window, ports;
  uint64_t requests;
  double duration_s, rate;
  unsigned ack_timeout_ms;
  bool cbor, verbose;
} sim_load_opts_t;
int sim_load_run(const sim_load_opts_t *o);

/* Encodes `p` as JSON or CBOR into buf; returns bytes or a negative errno. */
int sim_encode(const proto_pack_t *p, bool cbor, uint8_t *buf, size_t cap);

/* ---- weighbridge.c: the site's scales post weighing tickets to POST /w,
 * with their own CoAP context on `loop`. NULL when the site has no scale
 * (or on failure, logged). sim_wb_stop() prints a summary line; the memory
 * goes once the loop has run (handles closing). */
typedef struct sim_wb sim_wb_t;
sim_wb_t *sim_wb_start(uv_loop_t *loop, const sg_config_t *cfg, const sim_target_t *base,
                       const sim_opts_t *o);
void sim_wb_stop(sim_wb_t *wb);

/* ---- gate.c: the first gate reader of the site posts the entries and
 * exits of the register's machines `m` (the caller's, outliving the
 * reader) to POST /g, with its own CoAP context on `loop`. NULL when the
 * site has no gate or no machine (or on failure, logged). sim_gate_stop()
 * prints a summary line; the memory goes once the loop has run. */
typedef struct sim_gate sim_gate_t;
sim_gate_t *sim_gate_start(uv_loop_t *loop, const sg_config_t *cfg, const sim_target_t *base,
                           const sim_opts_t *o, const proto_machine_t *m, size_t n_m);
void sim_gate_stop(sim_gate_t *g); /* accepts NULL */

/* ---- equipment.c: the controllers of equipment units, CoAP servers
 * (DESIGN.md "Southbound CoAP contract": GET /state observable, PUT /ctl).
 * Every equipment device whose `coap` URI names this host (127.x, ::1,
 * localhost) gets one on that port. A unit follows a command after 2 to
 * 6 s, ignores one with probability `ignore_p`, and what it draws (and
 * reports through site.c) follows its state. The server side of libcoap
 * in sitesim, as coapio.c is the client side. `clock` gives simulated
 * time. Returns 0 or a negative errno (a port in use, logged); *out is
 * set either way and stopped with sim_ctl_stop() (run the loop after). */
typedef struct sim_ctl sim_ctl_t;
typedef struct sim_unit sim_unit_t;
int sim_ctl_start(uv_loop_t *loop, const sg_config_t *cfg, uint64_t seed, double ignore_p,
                  double (*clock)(void *arg), void *clock_arg, sim_ctl_t **out);
void sim_ctl_stop(sim_ctl_t *c); /* accepts NULL */
/* The controlled unit of `device`, or NULL when it has no local controller. */
sim_unit_t *sim_ctl_unit(sim_ctl_t *c, const char *device);
/* Gives the unit its device's model (which must outlive it). */
void sim_unit_bind(sim_unit_t *u, const sim_model_t *m);
/* The report of a controlled unit at simulated time t, instead of
 * sim_model_report(): power, energy and on as its controller has it. */
void sim_unit_report(sim_unit_t *u, const sim_model_t *m, const char *device, double t,
                     proto_pack_t *p);
/* model.c: an equipment model's power at t as if nothing stopped it, and
 * whether it has work then. */
double sim_model_natural_power(const sim_model_t *m, double t, bool *busy);

#endif
