/* The uplink's send window (uplink_int.h, "window.c"): the outbox, sent in
 * id order with up to `window` messages awaiting their 9014.
 *
 * The queue holds what was read from the outbox and not yet acknowledged,
 * q[head, next) sent and q[next, n) to send; a fetch worker tops it up in
 * batches when it runs low. An acknowledged message leaves the window at
 * once and is marked in the database by an ack worker in batches: a lost
 * mark only means a resend, which the receiver de-duplicates. A message not
 * acknowledged within OverTime is sent again, at most ReCount times; then
 * the connection is given up (conn.c's back-off). A new connection starts
 * again from the oldest pending message, so what the receiver stores first
 * is always in outbox order. Each worker has at most one job in flight and
 * the fetch worker its own read-only connection; a fetch for an older
 * connection is dropped when it comes back. */
#define LOG_MODULE "uplink"
#include "gateway/uplink/uplink_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FETCH_BATCH 512 /* pending rows read at a time */

struct up_item {
  int64_t id;
  char qn[24], cn[8];
  int cls;
  char *frames; /* the message's frames, CRLF-terminated, back to back */
  size_t len;
  uint64_t sent_ms;
  int sends;
  bool acked;
};

/* ---- the queue */

static void item_free(up_item_t *it) {
  free(it->frames);
  it->frames = NULL;
}

void uplink__window_clear(uplink_t *up) {
  up_window_t *w = &up->win;
  for (size_t i = w->head; i < w->n; i++)
    item_free(&w->q[i]);
  w->head = w->n = w->next = 0;
  w->inflight = 0;
  w->fetched_id = 0;
  w->caught_up = false;
}

/* Drops acknowledged items from the front, and moves the rest down when
 * half the array is behind us. */
static void queue_compact(up_window_t *w) {
  while (w->head < w->next && w->q[w->head].acked)
    item_free(&w->q[w->head++]);
  if (w->head == w->n) {
    w->head = w->n = w->next = 0;
  } else if (w->head > w->cap / 2) {
    memmove(w->q, w->q + w->head, (w->n - w->head) * sizeof(*w->q));
    w->n -= w->head;
    w->next -= w->head;
    w->head = 0;
  }
}

static int queue_push(up_window_t *w, const up_item_t *it) {
  if (w->n == w->cap) {
    size_t cap = w->cap ? w->cap * 2 : 1024;
    up_item_t *p = realloc(w->q, cap * sizeof(*p));
    if (!p)
      return -ENOMEM;
    w->q = p;
    w->cap = cap;
  }
  w->q[w->n++] = *it;
  return 0;
}

static bool id_in(const int64_t *ids, size_t n, int64_t id) {
  for (size_t i = 0; i < n; i++)
    if (ids[i] == id)
      return true;
  return false;
}

/* ---- sending */

static void fetch_start(uplink_t *up);

/* A failed write fails the connection, which clears the queue under the
 * caller: callers check the state or the connection after it. */
static void send_item(uplink_t *up, up_item_t *it) {
  it->sends++;
  it->sent_ms = sg_mono_ms();
  if (it->sends > 1)
    up->win.resent++;
  else
    up->win.sent++;
  uplink__write(up, it->frames, it->len);
}

void uplink__pump(uplink_t *up) {
  up_window_t *w = &up->win;
  if (up->link.state != UPLINK_READY || !up->link.conn)
    return;
  size_t window = (size_t)up->cfg->uplink_window;
  while (w->inflight < window && w->next < w->n && uplink__can_write(up)) {
    up_item_t *it = &w->q[w->next++];
    w->inflight++;
    send_item(up, it);
  }
  if (up->link.conn && !w->caught_up && w->n - w->next < FETCH_BATCH / 2 + window)
    fetch_start(up);
}

/* 9014 (HJ 212-2017 data acknowledgement) with the QN of a message in the
 * window: it leaves the window, to be marked in the outbox. */
void uplink__on_ack(uplink_t *up, const hj212_frame_t *f) {
  up_window_t *w = &up->win;
  const char *qn = f->h.qn;
  for (size_t i = w->head; i < w->next; i++) {
    up_item_t *it = &w->q[i];
    if (it->acked || strcmp(it->qn, qn) != 0)
      continue;
    it->acked = true;
    w->inflight--;
    w->acked++;
    w->last_ack_t = sg_now();
    uplink__backoff_reset(up);
    if (w->ack.n == w->ack.cap) {
      size_t cap = w->ack.cap ? w->ack.cap * 2 : 256;
      int64_t *p = realloc(w->ack.ids, cap * sizeof(*p));
      if (!p)
        return; /* it stays pending in the database: resent, de-duplicated */
      w->ack.ids = p;
      w->ack.cap = cap;
    }
    w->ack.ids[w->ack.n++] = it->id;
    queue_compact(w);
    uplink__pump(up);
    return;
  }
  log_debug("9014 for QN %s, which is not waiting (a pulled frame or a repeat)", qn);
}

/* OverTime and ReCount (HJ 212-2017 6.4): resend, then give up on the
 * connection. */
static void check_overtime(uplink_t *up) {
  up_window_t *w = &up->win;
  uint64_t now = sg_mono_ms(), over = (uint64_t)up->cfg->uplink_overtime_s * 1000;
  for (size_t i = w->head; i < w->next && up->link.state == UPLINK_READY; i++) {
    up_item_t *it = &w->q[i];
    if (it->acked || now - it->sent_ms < over)
      continue;
    if (it->sends > up->cfg->uplink_recount) {
      uplink__fail(up, "QN %s (CN %s) not acknowledged after %d sends", it->qn, it->cn, it->sends);
      return;
    }
    log_info("QN %s (CN %s) not acknowledged in %d s: sending it again", it->qn, it->cn,
             up->cfg->uplink_overtime_s);
    send_item(up, it);
  }
}

/* ---- the fetch worker: pending rows after the last one read */

static int on_pending(void *arg, const stor_ob_msg_t *m) {
  up_window_t *w = arg;
  if (w->fetch.n == w->fetch.cap) {
    size_t cap = w->fetch.cap ? w->fetch.cap * 2 : FETCH_BATCH;
    up_item_t *p = realloc(w->fetch.rows, cap * sizeof(*p));
    if (!p) {
      w->fetch.rc = -ENOMEM;
      return 1;
    }
    w->fetch.rows = p;
    w->fetch.cap = cap;
  }
  up_item_t *it = &w->fetch.rows[w->fetch.n];
  memset(it, 0, sizeof(*it));
  it->id = m->id;
  snprintf(it->qn, sizeof(it->qn), "%s", m->qn);
  snprintf(it->cn, sizeof(it->cn), "%s", m->cn);
  it->cls = m->cls;
  it->frames = malloc(m->frames_len);
  if (!it->frames) {
    w->fetch.rc = -ENOMEM;
    return 1;
  }
  memcpy(it->frames, m->frames, m->frames_len);
  it->len = m->frames_len;
  w->fetch.n++;
  return 0;
}

static void fetch_on_run(uv_work_t *work) {
  uplink_t *up = work->data;
  up_window_t *w = &up->win;
  w->fetch.rc = 0;
  if (!w->fetch.rd && (w->fetch.rc = stor_reader_open(up->cfg->db_path, &w->fetch.rd)) != 0)
    return;
  int rc = stor_outbox_pending(w->fetch.rd, w->fetch.after, FETCH_BATCH, on_pending, w);
  if (w->fetch.rc == 0)
    w->fetch.rc = rc;
}

static void fetch_on_done(uv_work_t *work, int status) {
  uplink_t *up = work->data;
  up_window_t *w = &up->win;
  w->fetch.busy = false;
  bool current = status == 0 && !up->stopping && w->fetch.gen == up->link.gen &&
                 up->link.state == UPLINK_READY && w->fetch.rc == 0;
  if (w->fetch.rc != 0 && !up->stopping)
    uplink__say_error(up, "reading the outbox: %s", strerror(-w->fetch.rc));
  for (size_t i = 0; i < w->fetch.n; i++) {
    up_item_t *it = &w->fetch.rows[i];
    /* Acknowledged already, its mark not yet committed: not again. */
    bool skip =
        !current || id_in(w->ack.ids, w->ack.n, it->id) || id_in(w->ack.job, w->ack.n_job, it->id);
    if (current && it->id > w->fetched_id)
      w->fetched_id = it->id;
    if (skip || queue_push(w, it) != 0)
      item_free(it);
  }
  if (current && w->fetch.n < FETCH_BATCH)
    w->caught_up = true;
  w->fetch.n = 0;
  if (current)
    uplink__pump(up);
}

static void fetch_start(uplink_t *up) {
  up_window_t *w = &up->win;
  if (w->fetch.busy || up->stopping)
    return;
  w->fetch.gen = up->link.gen;
  w->fetch.after = w->fetched_id;
  w->fetch.work.data = up;
  w->fetch.busy = uv_queue_work(up->gw->loop, &w->fetch.work, fetch_on_run, fetch_on_done) == 0;
}

/* ---- the ack worker: marks acknowledged messages, a batch at a time */

static void ack_on_run(uv_work_t *work) {
  uplink_t *up = work->data;
  up_window_t *w = &up->win;
  w->ack.rc =
      stor_outbox_ack(up->gw->db, w->ack.job, w->ack.n_job, (int64_t)(sg_now() * 1000.0), NULL);
}

static void ack_start(uplink_t *up);

static void ack_on_done(uv_work_t *work, int status) {
  uplink_t *up = work->data;
  up_window_t *w = &up->win;
  w->ack.busy = false;
  if (status != 0 || w->ack.rc != 0) {
    if (!up->stopping)
      uplink__say_error(up, "marking %zu acknowledgements: %s (they will be resent)", w->ack.n_job,
                        strerror(w->ack.rc ? -w->ack.rc : ECANCELED));
  }
  w->ack.n_job = 0;
  if (!up->stopping)
    ack_start(up);
}

static void ack_start(uplink_t *up) {
  up_window_t *w = &up->win;
  if (w->ack.busy || w->ack.n == 0 || up->stopping)
    return;
  /* The two arrays swap places, each with its capacity. */
  int64_t *t = w->ack.job;
  size_t cap = w->ack.cap_job;
  w->ack.job = w->ack.ids;
  w->ack.cap_job = w->ack.cap;
  w->ack.n_job = w->ack.n;
  w->ack.ids = t;
  w->ack.cap = cap;
  w->ack.n = 0;
  w->ack.work.data = up;
  w->ack.busy = uv_queue_work(up->gw->loop, &w->ack.work, ack_on_run, ack_on_done) == 0;
}

/* ---- for uplink.c */

void uplink__window_tick(uplink_t *up) {
  if (up->link.state == UPLINK_READY) {
    check_overtime(up);
    uplink__pump(up);
  }
  ack_start(up);
}

void uplink__window_more(uplink_t *up) {
  up->win.caught_up = false;
  uplink__pump(up);
}

void uplink__window_free(uplink_t *up) {
  up_window_t *w = &up->win;
  if (w->ack.n)
    stor_outbox_ack(up->gw->db, w->ack.ids, w->ack.n, (int64_t)(sg_now() * 1000.0), NULL);
  uplink__window_clear(up);
  stor_reader_close(w->fetch.rd);
  free(w->q);
  free(w->fetch.rows);
  free(w->ack.ids);
  free(w->ack.job);
  memset(w, 0, sizeof(*w));
}
