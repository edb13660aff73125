/* gateway/uplink/uplink_int.h: what the loop side's files share, for this
 * folder alone (uplink.h stays the room's interface, for api/ and the top
 * file).
 *
 * struct uplink is uplink.c's: the life cycle, the tick, the builder, the
 * uplink.down alarm, the status snapshot and the command table. It embeds
 * one part per file, each written by its own file only:
 * - link (conn.c): the connection, TLS, line framing, back-off; the state
 *   and the generation are read by everyone;
 * - win (window.c): the outbox send window and its fetch and ack workers;
 * - pull (pull.c): the authority's pulls and its clock (1012).
 * conn.c knows no other part: it tells uplink.c through the uplink__on_*
 * hooks, and uplink.c hands the events on.
 *
 * Everything is loop thread only, but for a worker job's fields (rd, rc,
 * rows, ...), which belong to the worker from uv_queue_work() to its done
 * callback. A worker result is dropped when the generation moved meanwhile
 * (it was for a connection that has gone). */
#ifndef SITEGATE_GW_UPLINK_INT_H
#define SITEGATE_GW_UPLINK_INT_H

#include "gateway/uplink/uplink.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct uplink uplink_t;
typedef struct up_conn up_conn_t;         /* conn.c's: one per connection attempt */
typedef struct up_item up_item_t;         /* window.c's: one outbox message */
typedef struct up_pull_req up_pull_req_t; /* pull.c's: one pull asked for */

/* ---- conn.c: the connection */
typedef struct up_link {
  gtls_conf_t *tls;
  const char *server_name; /* checked against the receiver's certificate */
  uv_getaddrinfo_t resolve;
  struct addrinfo *addrs, *next_addr;
  up_conn_t *conn; /* the current connection or attempt; NULL between them */
  uint64_t gen;    /* moves at every handshake and every failure */
  uplink_state_t state;
  double state_since, connected_since, down_since;     /* Unix s */
  uint64_t state_ms, retry_at_ms, backoff_ms, down_ms; /* monotonic ms */
  char cipher[64];
  uint64_t connects, handshakes;
} up_link_t;

/* ---- window.c: the send window */
typedef struct up_window {
  up_item_t *q; /* q[head, n) in outbox id order, q[head, next) sent */
  size_t head, n, cap, next;
  size_t inflight;    /* sent, not acknowledged */
  int64_t fetched_id; /* the last id read from the outbox */
  bool caught_up;     /* the last fetch found the outbox's end */
  uint64_t sent, resent, acked;
  double last_ack_t;
  struct {
    uv_work_t work;
    bool busy;
    uint64_t gen;
    int64_t after;
    stor_reader_t *rd; /* the worker's */
    up_item_t *rows;
    size_t n, cap;
    int rc;
  } fetch;
  struct {
    uv_work_t work;
    bool busy;
    int64_t *ids, *job; /* acknowledged, not yet marked; being marked */
    size_t n, cap, n_job, cap_job;
    int rc;
  } ack;
} up_window_t;

/* ---- pull.c: the authority's pulls and clock */
typedef struct up_pulls {
  up_pull_req_t *queue, *cur; /* waiting; being read by the worker */
  size_t n_queued;
  uv_work_t work;
  bool busy;
  uint64_t gen;
  stor_reader_t *rd; /* the worker's */
  char *buf;         /* the frames read, back to back */
  size_t len, cap;
  int64_t rows;
  int rc;
  uint64_t served;
  double clock_offset_s; /* the authority's SystemTime - ours, at the last 1012 */
  bool clock_known;
} up_pulls_t;

/* ---- uplink.c: the builder's worker */
typedef struct up_build {
  uplink_builder_t *builder;
  uv_work_t work;
  bool busy;
  uplink_build_result_t res; /* the worker's */
  uint64_t last_ms;
  uint64_t made, failures;
  int64_t chain_seq;
  bool over;
} up_build_t;

struct uplink {
  gw_t *gw;
  const sg_config_t *cfg;
  char mn[HJ212_MN_MAX + 1];
  bool stopping; /* uplink_stop has run: start nothing more */
  uv_timer_t tick;
  uint64_t last_alarm_ms;
  char last_error[UPLINK_ERROR_MAX]; /* any part's, the latest */
  double last_error_t;
  up_build_t build;
  up_link_t link;
  up_window_t win;
  up_pulls_t pull;
};

/* ---- uplink.c */
/* Records the latest error for the status; uplink__say_error also logs it. */
void uplink__set_error_v(uplink_t *up, const char *fmt, va_list ap)
    __attribute__((format(printf, 2, 0)));
void uplink__set_error(uplink_t *up, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void uplink__say_error(uplink_t *up, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* conn.c's hooks. The handshake is done (state READY, a new generation). */
void uplink__on_connected(uplink_t *up);
/* The connection is gone (uplink__fail), before the generation moves. */
void uplink__on_lost(uplink_t *up);
/* Queued bytes went out: there may be room to send more. */
void uplink__on_writable(uplink_t *up);
/* One line from the receiver, without its LF; `line` is conn.c's and
 * valid for the call only. The handler may fail the connection. */
void uplink__on_line(uplink_t *up, const char *line, size_t len);

/* ---- conn.c */
/* Loads the PKI and sets the back-off's start. Returns 0 or -EINVAL with
 * the reason in `err`. */
int uplink__link_open(uplink_t *up, char *err, size_t errlen);
/* Connects when the back-off is over; fails an attempt that takes too long. */
void uplink__link_tick(uplink_t *up, uint64_t now_ms);
/* Stops connecting: cancels a resolve, closes the connection (close_notify
 * first; the loop must run once more), state IDLE. */
void uplink__link_close(uplink_t *up);
void uplink__link_free(uplink_t *up); /* after the loop has run out */
/* Gives up on the connection or attempt: records why, closes, and waits a
 * jittered, doubling back-off before the next attempt. */
void uplink__fail(uplink_t *up, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The receiver is taking our messages: the next back-off starts short. */
void uplink__backoff_reset(uplink_t *up);
/* True when connected and the socket's queue has room for more. */
bool uplink__can_write(const uplink_t *up);
/* Encrypts and queues `buf` (whole frames). Returns 0, -ENOTCONN, or
 * -EPROTO after failing the connection. */
int uplink__write(uplink_t *up, const char *buf, size_t len);
/* Encodes and writes one message of ours (a request such as 1013). */
void uplink__send_msg(uplink_t *up, const char *qn, const char *st, const char *cn, int flag,
                      const char *cp);
/* A reply (9011, 9012): ST=91, Flag=4, the request's QN. */
void uplink__reply(uplink_t *up, const char *qn, const char *cn, const char *cp);

/* ---- window.c */
/* Forgets the window (a new connection starts again from the oldest
 * pending message); acknowledgements not yet marked stay to be marked. */
void uplink__window_clear(uplink_t *up);
/* Sends while the window and the socket have room; fetches more rows
 * when the queue runs low. */
void uplink__pump(uplink_t *up);
/* Every tick: OverTime/ReCount while connected, marks acknowledgements. */
void uplink__window_tick(uplink_t *up);
/* The builder stored new messages: fetch again. */
void uplink__window_more(uplink_t *up);
/* Marks what is acknowledged but not yet marked (the writer still runs),
 * frees the rest. After the loop has run out. */
void uplink__window_free(uplink_t *up);
void uplink__on_ack(uplink_t *up, const hj212_frame_t *f); /* 9014 */

/* ---- pull.c */
void uplink__on_pull_history(uplink_t *up, const hj212_frame_t *f); /* 2011 2051 2061 2031 */
void uplink__on_pull_ledger(uplink_t *up, const hj212_frame_t *f);  /* 6081 */
void uplink__on_time(uplink_t *up, const hj212_frame_t *f);         /* 1012 */
void uplink__pulls_clear(uplink_t *up); /* drops the queued pulls (not the one running) */
void uplink__pull_free(uplink_t *up);   /* after the loop has run out */

#endif
