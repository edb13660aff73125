/* The uplink on the loop (uplink.h, uplink_int.h): one TLS connection to
 * the authority's sitegate-rx, fed from the outbox. This file is its life
 * cycle and its orchestration; the work is in one file per part:
 * - conn.c: resolving, connecting, TLS, line framing, the back-off;
 * - window.c: the outbox sent in order with a window awaiting 9014s,
 *   OverTime/ReCount resends, acknowledgements marked;
 * - pull.c: the authority's pulls (9011, the frames, 9012) and 1012.
 *
 * It owns what ties them together: one timer ticking every part, the
 * builder (uplink_build.c) on a worker once a second, the uplink.down
 * alarm, the status snapshot assembled from the parts, and the table that
 * hands each command from the authority to the part that answers it.
 * conn.c reports through the uplink__on_* hooks below, so what a new or
 * lost connection means to the window and the pulls is said here once. */
#define LOG_MODULE "uplink"
#include "gateway/rules/rules.h"
#include "gateway/uplink/uplink_int.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define TICK_MS 250
#define BUILD_EVERY_MS 1000
#define ALARM_EVERY_MS 10000

/* ---- errors */

void uplink__set_error_v(uplink_t *up, const char *fmt, va_list ap) {
  vsnprintf(up->last_error, sizeof(up->last_error), fmt, ap);
  up->last_error_t = sg_now();
}

void uplink__set_error(uplink_t *up, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  uplink__set_error_v(up, fmt, ap);
  va_end(ap);
}

void uplink__say_error(uplink_t *up, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  uplink__set_error_v(up, fmt, ap);
  va_end(ap);
  log_warn("%s", up->last_error);
}

/* ---- what the authority says */

static void on_answer(uplink_t *up, const hj212_frame_t *f) {
  (void)up;
  log_debug("CN %s for QN %s", f->h.cn, f->h.qn);
}

/* The commands we answer, by CN. Anything else is refused (9011 QnRtn=2). */
static const struct command {
  const char *cn;
  void (*fn)(uplink_t *up, const hj212_frame_t *f);
} commands[] = {
    {"9014", uplink__on_ack},          /* HJ 212-2017: data acknowledgement */
    {"2011", uplink__on_pull_history}, /* HJ 212-2017: real-time data, here a pull */
    {"2051", uplink__on_pull_history}, /* HJ 212-2017: minute data */
    {"2061", uplink__on_pull_history}, /* HJ 212-2017: hourly data */
    {"2031", uplink__on_pull_history}, /* HJ 212-2017: daily data */
    {"6081", uplink__on_pull_ledger},  /* sitegate's extension: ledger pull (UPLINK.md) */
    {"1012", uplink__on_time},         /* HJ 212-2017: set the time (answers our 1013) */
    {"9011", on_answer},               /* HJ 212-2017: request answer */
    {"9012", on_answer},               /* HJ 212-2017: execution result */
    {"9013", on_answer},               /* HJ 212-2017: notification answer */
};

void uplink__on_line(uplink_t *up, const char *line, size_t len) {
  if (len > 0 && line[len - 1] == '\r')
    len--;
  if (len == 0)
    return;
  hj212_frame_t f;
  char err[192];
  if (hj212_decode(line, len, &f, err, sizeof(err)) != 0) {
    log_warn("from the receiver, not a frame: %s", err);
    return;
  }
  if (strcmp(f.h.mn, up->mn) != 0) {
    log_warn("from the receiver, a frame for MN %s (we are %s): ignored", f.h.mn, up->mn);
    return;
  }
  for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
    if (strcmp(f.h.cn, commands[i].cn) == 0) {
      commands[i].fn(up, &f);
      return;
    }
  }
  log_info("CN %s from the receiver is not one we answer: refused", f.h.cn);
  uplink__reply(up, f.h.qn, "9011", "QnRtn=2");
}

/* ---- conn.c's other hooks */

void uplink__on_connected(uplink_t *up) {
  uplink__window_clear(up);
  uplink__pulls_clear(up);
  /* Ask for the time (the answer is a 1012). */
  char qn[HJ212_QN_LEN + 1];
  hj212_qn_format((int64_t)(sg_now() * 1000.0), UPLINK_BEIJING_MIN, qn);
  uplink__send_msg(up, qn, up->cfg->uplink_st, "1013", HJ212_FLAG_V2017, "");
  uplink__pump(up);
}

void uplink__on_lost(uplink_t *up) { uplink__window_clear(up); }

void uplink__on_writable(uplink_t *up) { uplink__pump(up); }

/* ---- the builder */

static void build_on_run(uv_work_t *w) {
  uplink_t *up = w->data;
  uplink_builder_run(up->build.builder, sg_now(), &up->build.res);
}

static void build_on_done(uv_work_t *w, int status) {
  uplink_t *up = w->data;
  up_build_t *b = &up->build;
  b->busy = false;
  if (status != 0 || up->stopping)
    return;
  const uplink_build_result_t *r = &b->res;
  b->chain_seq = r->chain_seq;
  if (r->err != 0) {
    b->failures++;
    uplink__say_error(up, "making messages: %s (retried)", r->error);
  }
  if (r->dropped)
    log_warn("outbox over %d messages: the %zu oldest real-time frames dropped",
             up->cfg->uplink_outbox_max, r->dropped);
  if (r->over && !b->over)
    log_err("outbox over %d messages with no real-time frame left to drop: keeping everything",
            up->cfg->uplink_outbox_max);
  b->over = r->over;
  if (r->made) {
    b->made += r->made;
    uplink__window_more(up);
  }
}

static void build_start(uplink_t *up, uint64_t now) {
  up_build_t *b = &up->build;
  if (b->busy || now - b->last_ms < BUILD_EVERY_MS)
    return;
  b->last_ms = now;
  b->work.data = up;
  b->busy = uv_queue_work(up->gw->loop, &b->work, build_on_run, build_on_done) == 0;
}

/* ---- the tick */

/* uplink.down: a warning after down_alarm_s disconnected, an alarm after
 * four times that (UPLINK.md "Down"). */
static void report_down(uplink_t *up, uint64_t now) {
  if (now - up->last_alarm_ms < ALARM_EVERY_MS)
    return;
  up->last_alarm_ms = now;
  double down = up->link.state == UPLINK_READY ? 0 : (double)(now - up->link.down_ms) / 1000.0;
  double lim = up->cfg->uplink_down_alarm_s;
  alarm_cond_t c = {.rule = "uplink.down",
                    .source = up->cfg->site_id,
                    .level = down >= 4 * lim ? ALARM_ALARM
                             : down >= lim   ? ALARM_WARNING
                                             : ALARM_NORMAL,
                    .figure = down,
                    .limit = down >= 4 * lim ? 4 * lim : lim,
                    .unit = "s",
                    .hold_s = -1};
  char msg[256];
  if (c.level) {
    snprintf(msg, sizeof(msg), "no connection to the authority for %.0f min (%.180s)", down / 60,
             up->last_error[0] ? up->last_error : "never connected");
    c.message = msg;
  }
  alarm_update(up->gw, &c);
}

static void on_tick(uv_timer_t *t) {
  uplink_t *up = t->data;
  uint64_t now = sg_mono_ms();
  build_start(up, now);
  uplink__link_tick(up, now);
  uplink__window_tick(up);
  report_down(up, now);
}

/* ---- life cycle */

int uplink_start(gw_t *gw) {
  GW_ASSERT_LOOP(gw);
  const sg_config_t *cfg = gw->cfg;
  if (!cfg->uplink_host[0]) {
    log_info("no [uplink] host: nothing is sent to an authority");
    return 0;
  }
  uplink_t *up = calloc(1, sizeof(*up));
  if (!up)
    return -ENOMEM;
  up->gw = gw;
  up->cfg = cfg;
  snprintf(up->mn, sizeof(up->mn), "%.27s", cfg->site_id);
  char err[512];
  int rc = uplink__link_open(up, err, sizeof(err));
  if (rc == 0)
    rc = uplink_builder_new(gw, &up->build.builder, err, sizeof(err));
  if (rc != 0) {
    log_err("cannot start the uplink: %s", err);
    uplink__link_free(up);
    free(up);
    return rc;
  }
  srand((unsigned)(sg_mono_ms() ^ (uint64_t)getpid()));
  uv_timer_init(gw->loop, &up->tick);
  up->tick.data = up;
  uv_timer_start(&up->tick, on_tick, 0, TICK_MS);
  gw->uplink = up;
  log_info("uplink to %s:%d (name %s) as MN %s; outbox bound %d", cfg->uplink_host,
           cfg->uplink_port, up->link.server_name, up->mn, cfg->uplink_outbox_max);
  return 0;
}

void uplink_stop(gw_t *gw) {
  GW_ASSERT_LOOP(gw);
  uplink_t *up = gw->uplink;
  if (!up || up->stopping)
    return;
  up->stopping = true;
  uv_close((uv_handle_t *)&up->tick, NULL);
  uplink__link_close(up);
  uplink__window_clear(up);
  uplink__pulls_clear(up);
  log_info("uplink stopped: %llu sent, %llu resent, %llu acknowledged",
           (unsigned long long)up->win.sent, (unsigned long long)up->win.resent,
           (unsigned long long)up->win.acked);
}

void uplink_free(gw_t *gw) {
  GW_ASSERT_LOOP(gw);
  uplink_t *up = gw->uplink;
  if (!up)
    return;
  uplink__window_free(up); /* marks the acknowledgements not yet marked */
  uplink__pull_free(up);
  uplink_builder_free(up->build.builder);
  uplink__link_free(up);
  free(up);
  gw->uplink = NULL;
}

/* ---- the snapshot GET /api/uplink shows */

const char *uplink_state_name(uplink_state_t s) {
  static const char *const names[] = {"disconnected", "resolving", "connecting", "handshake",
                                      "connected"};
  return (unsigned)s < sizeof(names) / sizeof(names[0]) ? names[s] : "?";
}

static void snapshot(gw_t *gw, void *arg) {
  const uplink_t *up = gw->uplink;
  uplink_status_t *s = arg;
  if (!up)
    return;
  s->state = up->link.state;
  s->state_since = up->link.state_since;
  s->connected_since = up->link.connected_since;
  s->down_since = up->link.down_since;
  snprintf(s->cipher, sizeof(s->cipher), "%s", up->link.cipher);
  s->connects = up->link.connects;
  s->handshakes = up->link.handshakes;
  snprintf(s->last_error, sizeof(s->last_error), "%s", up->last_error);
  s->last_error_t = up->last_error_t;
  s->sent = up->win.sent;
  s->resent = up->win.resent;
  s->acked = up->win.acked;
  s->last_ack_t = up->win.last_ack_t;
  s->inflight = up->win.inflight;
  s->pulls = up->pull.served;
  s->clock_offset_s = up->pull.clock_offset_s;
  s->clock_known = up->pull.clock_known;
  s->chain_seq = up->build.chain_seq;
  s->made = up->build.made;
  s->build_failures = up->build.failures;
  s->over = up->build.over;
}

int uplink_status(gw_t *gw, uplink_status_t *out) {
  memset(out, 0, sizeof(*out));
  if (!gw->cfg->uplink_host[0])
    return -ENOENT;
  return gw_call_on_loop(gw, snapshot, out);
}
