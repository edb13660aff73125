/* gateway/core: the daemon's shared state on its one loop, below every other
 * room of gateway/ (coap, rules, equipment, waste, uplink, then api; the top
 * file gateway/gateway.c starts them). Nothing here calls a part: parts
 * register listeners, and the top file starts and stops them.
 *
 * Threads: the loop thread owns everything here except the counters and the
 * per-device `last_ms`, which the HTTP threads read; those are C11 atomics
 * written by the loop thread only. */
#ifndef SITEGATE_GW_CORE_H
#define SITEGATE_GW_CORE_H

#include "gateway/gateway.h"
#include "protocol/protocol.h"
#include "storage/storage.h"

#include <assert.h>
#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <uv.h>

/* Why a request was refused: X(enum, metric label). The labels are
 * /metrics' and /api/status' contract: README's table of refusals. */
#define GW_REJECT_MAP(X)                                                                           \
  X(BAD_PACK, "bad_pack")                                                                          \
  X(UNKNOWN_DEVICE, "unknown_device")                                                              \
  X(IDENTITY, "identity_mismatch")                                                                 \
  X(NEEDS_DTLS, "needs_dtls")                                                                      \
  X(TOO_LARGE, "too_large")                                                                        \
  X(FORMAT, "unsupported_format")                                                                  \
  X(INVALID_READING, "invalid_reading")                                                            \
  X(INVALID_TICKET, "invalid_ticket")                                                              \
  X(BUSY, "storage_busy")                                                                          \
  X(DISK_FULL, "disk_full")                                                                        \
  X(STORAGE_ERROR, "storage_error")

typedef enum {
#define X(e, s) GW_REJECT_##e,
  GW_REJECT_MAP(X)
#undef X
      GW_REJECT_COUNT
} gw_reject_t;

const char *gw_reject_name(gw_reject_t r);

typedef struct gw_device {
  const sg_device_t *conf;
  uint32_t db_id;
  _Atomic int64_t last_ms; /* receipt time of its last accepted pack, 0: never */
  _Atomic uint64_t packs, records, rejects;
  /* Rejects by reason (gw_device_reject, gw_device_rejects_by), made at the
   * device's first refusal: kept inline, 104 bytes for each of 10,000
   * devices that are never refused were 1 MB of the gateway's RSS. */
  _Atomic(_Atomic uint64_t *) reject_by;
} gw_device_t;

typedef struct gw_counters {
  _Atomic uint64_t requests, records;
  _Atomic uint64_t rejects[GW_REJECT_COUNT];
  /* the HTTP API's refusals (api/http.c), written by its threads */
  _Atomic uint64_t http_slow;     /* connections cut: headers or body too slow */
  _Atomic uint64_t http_no_token; /* 401: an action, or a read off loopback */
  _Atomic uint64_t http_bad_host; /* 421: a Host that is not this gateway */
  /* DTLS (coap/server.c): handshakes that failed or were dropped */
  _Atomic uint64_t dtls_failed;
  /* DTLS server handshakes (coap/server.c): begun (a ClientHello from a new
   * address), completed, abandoned (the session went before the handshake
   * finished: spoofed or given-up ClientHellos), and pending now */
  _Atomic uint64_t dtls_begun, dtls_completed, dtls_abandoned;
  _Atomic int64_t dtls_pending;
} gw_counters_t;

struct coap_front;
struct http_api;
struct loop_calls;
struct gw_listener;
struct alarms;
struct env;
struct waste_gw;
struct uplink;
struct equipment;
struct machinery;

struct gw {
  uv_loop_t *loop;
  const sg_config_t *cfg;
  stor_db_t *db;
  gw_device_t *devices; /* parallel to cfg->devices (sorted by id) */
  gw_counters_t counters;
  double started; /* Unix seconds */
  struct coap_front *coap;
  struct http_api *http;
  uv_signal_t sig_term, sig_int;
  uv_timer_t lag_timer; /* watches the loop for blocking work */
  uv_timer_t watchdog;  /* WATCHDOG=1 to systemd, when it asks (notify.c) */
  bool watchdog_on;     /* the watchdog timer was started */
  int lock_fd;          /* stor_lock() on the database: one instance per database */
  uv_work_t pool_start; /* starts libuv's threads before they are placed */
  uint64_t lag_expected_ms;
  _Atomic uint64_t lag_max_ms;   /* the longest the loop was late, since start */
  bool running, stopping;        /* gw_core_run has begun; gw_core_stop has run */
  pthread_t loop_thread;         /* the thread that opened the loop */
  void (*stop_parts)(gw_t *gw);  /* the top file's, on SIGTERM/SIGINT */
  struct loop_calls *calls;      /* calls and posts onto the loop (core.c) */
  struct gw_listener *on_pack;   /* gw_on_pack() listeners, loop thread */
  struct gw_listener *on_ledger; /* gw_on_ledger() listeners, loop thread */
  struct alarms *alarms;         /* the alarm model (rules.h), loop thread */
  struct env *env;               /* noise, dust and health rules (rules.h) */
  struct waste_gw *waste;        /* the waste and material ledger (waste.h) */
  struct uplink *uplink;         /* to the authority (uplink.h); NULL without [uplink] host */
  struct equipment *equipment;   /* energy and group control (equipment.h) */
  struct gw_listener *on_move;   /* gw_on_move() listeners, loop thread */
  struct machinery *machinery;   /* non-road mobile machinery (machinery.h) */
};

/* For functions that must run on the loop thread: asserts it in debug
 * builds (as libuv asserts its handles' states), costs nothing with NDEBUG. */
#define GW_ASSERT_LOOP(gw) assert(pthread_equal(pthread_self(), (gw)->loop_thread))

/* Runs fn(gw, arg) on the loop thread and waits until it has returned: the
 * way an HTTP thread acts on loop-owned state (acknowledging an alarm,
 * overriding a unit). Any number of threads may wait at once; `arg` is the
 * caller's and only fn touches it. Returns 0, or -ECANCELED when the loop is
 * stopping (fn did not run). Safe until http_stop() has returned, also
 * during the shutdown drain. Never call it from the loop thread. */
int gw_call_on_loop(gw_t *gw, void (*fn)(gw_t *gw, void *arg), void *arg);

/* A post: fn(gw, arg, false) runs on the loop thread, soon. The bridge from
 * storage's threads (a commit's callback may not touch the loop): any thread
 * may post, at any time until gw_core_free(). Once the loop has stopped
 * taking posts (gw_core_stop), they are kept, and gw_core_free() runs each
 * as fn(gw, arg, true) after storage has closed: none is lost, none runs
 * after the loop's parts are gone. The struct is the caller's (embed it in
 * the job) and must live until fn has run; gw_post fills in `next`. */
typedef struct gw_post {
  void (*fn)(gw_t *gw, void *arg, bool cancelled);
  void *arg;
  struct gw_post *next;
} gw_post_t;
void gw_post(gw_t *gw, gw_post_t *p);

/* ---- listeners: how a part hears of what another did without the two
 * calling each other. Loop thread; a listener is called in the order added
 * and must not block. Returns 0 or -ENOMEM. */
/* Every pack the CoAP front accepted (validated and queued to storage). */
typedef void (*gw_pack_fn)(void *arg, const struct gw_device *dev, const proto_pack_t *p);
int gw_on_pack(gw_t *gw, gw_pack_fn fn, void *arg);
void gw_pack_accepted(gw_t *gw, const struct gw_device *dev, const proto_pack_t *p);
/* The ledger changed: a ticket was committed (gw_ticket_submit does this),
 * a correction, the progress or the bill of quantities (the API says so). */
typedef void (*gw_ledger_fn)(void *arg);
int gw_on_ledger(gw_t *gw, gw_ledger_fn fn, void *arg);
void gw_ledger_changed(gw_t *gw);

/* Submits a weighing ticket to the ledger (stor_ticket_submit, `t` copied);
 * done(arg, res) runs on the loop once it is committed or refused, and the
 * ledger listeners after it when a row was created. res is NULL when
 * storage closed before the answer could reach the loop (shutdown).
 * Returns 0, -ESHUTDOWN once the loop is stopping, or stor_ticket_submit's
 * refusal (-EINVAL, -EAGAIN, ...; done is then not called). Loop thread. */
typedef void (*gw_ticket_fn)(void *arg, const stor_ticket_result_t *res);
int gw_ticket_submit(gw_t *gw, const stor_ticket_t *t, gw_ticket_fn done, void *arg);

/* Machinery entries and exits (storage.h "machinery"): a gate's event
 * from the CoAP front (POST /g), committed like a ticket: done(arg, mv,
 * res) runs on the loop once stored or refused (res NULL when storage
 * closed first), then, for a new row, the move listeners. Returns 0,
 * -ESHUTDOWN once the loop is stopping, or stor_move_submit's refusal
 * (done is then not called). Loop thread. */
typedef void (*gw_move_done_fn)(void *arg, const stor_move_t *mv, const stor_move_result_t *res);
int gw_move_submit(gw_t *gw, const stor_move_t *mv, gw_move_done_fn done, void *arg);
/* A move was stored (by gw_move_submit, or by the API, which calls
 * gw_move_stored on the loop itself). Loop thread. */
typedef void (*gw_move_fn)(void *arg, const stor_move_t *mv);
int gw_on_move(gw_t *gw, gw_move_fn fn, void *arg);
void gw_move_stored(gw_t *gw, const stor_move_t *mv);

/* ---- the daemon's life, for the top file: gw_core_open (storage, the
 * registry, calls), the parts start, gw_core_run until SIGTERM/SIGINT (which
 * calls `stop_parts` once, on the loop), then gw_core_stop, the parts free
 * what is theirs, gw_core_free (storage closes, kept posts run) and
 * gw_core_close_loop. */
int gw_core_open(gw_t *gw, const sg_config_t *cfg, uv_loop_t *loop);
void gw_core_run(gw_t *gw, void (*stop_parts)(gw_t *gw));
/* Stops taking calls (waiters get -ECANCELED) and posts; closes the core's
 * handles. Loop thread; idempotent. */
void gw_core_stop(gw_t *gw);
/* After the HTTP threads have stopped and the loop has run out. */
void gw_core_free(gw_t *gw);
/* Closes the loop: rc, or -EBUSY when rc was 0 and a handle was still open
 * (each is logged by type: a part that forgot one is a bug). */
int gw_core_close_loop(gw_t *gw, int rc);

/* notify.c, for core.c: tells systemd the daemon is ready (and starts the
 * watchdog pings it asked for), or stopping (and stops them). Loop thread. */
void gw__notify_ready(gw_t *gw);
void gw__notify_stopping(gw_t *gw);
/* While storage opens (stor_opening_fn; `arg` unused): tells systemd what
 * it is doing and that it is making progress, so that a long schema
 * migration is not taken for a hung start. At most every
 * GW_OPENING_NOTIFY_MS; each call gives the start GW_OPENING_EXTEND_S more
 * (EXTEND_TIMEOUT_USEC, systemd 236 or later; older ones ignore it). */
#define GW_OPENING_NOTIFY_MS 1000
#define GW_OPENING_EXTEND_S 30
void gw__notify_opening(void *arg, const stor_opening_t *o);

/* The registry entry of a device id, or NULL. */
gw_device_t *gw_device_find(gw_t *gw, const char *id);
/* Counts a refusal of the device's pack, in `rejects` and by reason. Loop
 * thread only. Should the reasons' table not be allocated (out of memory),
 * the refusal is counted in `rejects` alone. */
void gw_device_reject(gw_device_t *dev, gw_reject_t why);
/* The device's refusals for `why` so far. Any thread. */
uint64_t gw_device_rejects_by(const gw_device_t *dev, gw_reject_t why);
/* Online: a pack arrived within offline_intervals x interval_s before `now`;
 * `last` is the receipt time of the last pack (0: never). The one definition
 * of online: /api/status and /metrics (gw_device_online) and the
 * health.offline alarm all use it, with [health] offline_intervals. */
bool gw_is_online(int offline_intervals, double interval_s, double last, double now);
/* The silence after which `d` counts as offline, s: offline_intervals x
 * interval_s for devices that report on an interval; for event-driven ones
 * (scale, gate) their heartbeat_s, 86400 when unset (they send when a truck
 * comes: a quiet night is not a fault). Pure. */
double gw_silence_allowed_s(int offline_intervals, const sg_device_t *d);
/* True for devices that send on events, not on an interval. */
bool gw_event_driven(const sg_device_t *d);
/* Online by gw_silence_allowed_s() for `d` with [health] offline_intervals;
 * an event-driven device not heard from since start counts its silence from
 * the start. Any thread: it reads the atomic last_ms. */
bool gw_device_online(const gw_t *gw, const gw_device_t *d, double now);
/* How many configured devices are online at `now`. Any thread. */
size_t gw_devices_online(const gw_t *gw, double now);

#endif
