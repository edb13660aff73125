/* What the authority asks of the uplink (uplink_int.h, "pull.c"): history
 * and ledger pulls, answered from the outbox, and time calibration.
 *
 * A pull (2011/2051/2061/2031 by DataTime, 6081 by Seq) is queued, at most
 * PULLS_QUEUED_MAX of them, and read one at a time by a worker with its own
 * read-only connection; the answer goes out on the loop as UPLINK.md says:
 * 9011 (ready), the original frames byte for byte, 9012 (done, 100 when
 * there was nothing, 2 when the database failed). An answer read for a
 * connection that has gone is dropped: the authority asks again. The 1012
 * is here because it is answered the same way (9011, 9012) and, like a
 * pull, changes nothing but what the status shows. */
#define LOG_MODULE "uplink"
#include "gateway/uplink/uplink_int.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PULL_MAX_ROWS 20000 /* messages one pull may return */
#define PULLS_QUEUED_MAX 64

struct up_pull_req {
  char qn[HJ212_QN_MAX + 1], cn[HJ212_CN_MAX + 1];
  bool by_seq;        /* 6081: begin and end are Seq, else DataTime (Unix s) */
  int64_t begin, end; /* inclusive */
  struct up_pull_req *next;
};

/* ---- the worker */

static int on_pulled(void *arg, const stor_ob_msg_t *m) {
  up_pulls_t *p = arg;
  if (p->len + m->frames_len > p->cap) {
    size_t cap = (p->len + m->frames_len) * 2;
    char *b = realloc(p->buf, cap);
    if (!b) {
      p->rc = -ENOMEM;
      return 1;
    }
    p->buf = b;
    p->cap = cap;
  }
  memcpy(p->buf + p->len, m->frames, m->frames_len);
  p->len += m->frames_len;
  p->rows++;
  return 0;
}

static void pull_on_run(uv_work_t *work) {
  uplink_t *up = work->data;
  up_pulls_t *p = &up->pull;
  const up_pull_req_t *r = p->cur;
  p->rc = 0;
  p->len = 0;
  p->rows = 0;
  if (!p->rd && (p->rc = stor_reader_open(up->cfg->db_path, &p->rd)) != 0)
    return;
  int rc = r->by_seq
               ? stor_outbox_by_seq(p->rd, r->begin, r->end, PULL_MAX_ROWS, on_pulled, p)
               : stor_outbox_history(p->rd, r->cn, r->begin, r->end, PULL_MAX_ROWS, on_pulled, p);
  if (p->rc == 0)
    p->rc = rc;
}

static void pull_start(uplink_t *up);

/* 9011 (ready), the original frames byte for byte, 9012 (done, or 100: no
 * data). */
static void pull_on_done(uv_work_t *work, int status) {
  uplink_t *up = work->data;
  up_pulls_t *p = &up->pull;
  up_pull_req_t *r = p->cur;
  p->busy = false;
  p->cur = NULL;
  if (status == 0 && !up->stopping && p->gen == up->link.gen && up->link.state == UPLINK_READY) {
    p->served++;
    log_info("pull CN %s %lld-%lld (QN %s): %lld messages", r->cn, (long long)r->begin,
             (long long)r->end, r->qn, (long long)p->rows);
    uplink__reply(up, r->qn, "9011", "QnRtn=1");
    if (p->rc == 0 && p->len > 0)
      uplink__write(up, p->buf, p->len);
    uplink__reply(up, r->qn, "9012",
                  p->rc != 0    ? "ExeRtn=2"
                  : p->rows > 0 ? "ExeRtn=1"
                                : "ExeRtn=100");
  }
  free(r);
  if (p->cap > (1u << 22)) { /* do not keep a big pull's buffer */
    free(p->buf);
    p->buf = NULL;
    p->cap = 0;
  }
  pull_start(up);
}

static void pull_start(uplink_t *up) {
  up_pulls_t *p = &up->pull;
  if (p->busy || !p->queue || up->stopping)
    return;
  p->cur = p->queue;
  p->queue = p->queue->next;
  p->n_queued--;
  p->gen = up->link.gen;
  p->work.data = up;
  p->busy = uv_queue_work(up->gw->loop, &p->work, pull_on_run, pull_on_done) == 0;
  if (!p->busy) {
    free(p->cur);
    p->cur = NULL;
  }
}

/* ---- the requests */

/* Queues the pull `f` asks for, its range in the pairs named `a` and `b`
 * (Seq numbers when `by_seq`, else DataTimes), or refuses it with 9011
 * QnRtn=2. */
static void pull_queue(uplink_t *up, const hj212_frame_t *f, bool by_seq, const char *a,
                       const char *b) {
  up_pulls_t *p = &up->pull;
  const char *va = hj212_get(f, -1, a), *vb = hj212_get(f, -1, b);
  int64_t begin = -1, end = -1;
  if (va && vb) {
    begin = by_seq ? strtoll(va, NULL, 10) : uplink_parse_datatime(va);
    end = by_seq ? strtoll(vb, NULL, 10) : uplink_parse_datatime(vb);
  }
  if (begin < 0 || end < begin || p->n_queued >= PULLS_QUEUED_MAX) {
    log_warn("pull CN %s (QN %s) refused: %s", f->h.cn, f->h.qn,
             begin < 0 || end < begin ? "no valid range" : "too many pulls queued");
    uplink__reply(up, f->h.qn, "9011", "QnRtn=2");
    return;
  }
  up_pull_req_t *r = calloc(1, sizeof(*r));
  if (!r)
    return;
  snprintf(r->qn, sizeof(r->qn), "%s", f->h.qn);
  snprintf(r->cn, sizeof(r->cn), "%s", f->h.cn);
  r->by_seq = by_seq;
  r->begin = begin;
  r->end = end;
  up_pull_req_t **tail = &p->queue;
  while (*tail)
    tail = &(*tail)->next;
  *tail = r;
  p->n_queued++;
  pull_start(up);
}

void uplink__on_pull_history(uplink_t *up, const hj212_frame_t *f) {
  pull_queue(up, f, false, "BeginTime", "EndTime");
}

void uplink__on_pull_ledger(uplink_t *up, const hj212_frame_t *f) {
  pull_queue(up, f, true, "BeginSeq", "EndSeq");
}

/* Time calibration: we report the offset and keep our clock, which the OS
 * sets (NTP); changing it under running timers is not ours. */
void uplink__on_time(uplink_t *up, const hj212_frame_t *f) {
  up_pulls_t *p = &up->pull;
  const char *v = hj212_get(f, -1, "SystemTime");
  int64_t t = v ? uplink_parse_datatime(v) : -1;
  if (t < 0) {
    uplink__reply(up, f->h.qn, "9011", "QnRtn=2");
    return;
  }
  p->clock_offset_s = (double)t - sg_now();
  p->clock_known = true;
  if (fabs(p->clock_offset_s) > 5)
    log_warn("the authority's clock is %+.0f s from ours: check the gateway's time source",
             p->clock_offset_s);
  uplink__reply(up, f->h.qn, "9011", "QnRtn=1");
  uplink__reply(up, f->h.qn, "9012", "ExeRtn=1");
}

/* ---- for uplink.c */

void uplink__pulls_clear(uplink_t *up) {
  up_pulls_t *p = &up->pull;
  for (up_pull_req_t *r = p->queue, *next; r; r = next) {
    next = r->next;
    free(r);
  }
  p->queue = NULL;
  p->n_queued = 0;
}

void uplink__pull_free(uplink_t *up) {
  up_pulls_t *p = &up->pull;
  uplink__pulls_clear(up);
  stor_reader_close(p->rd);
  p->rd = NULL;
  free(p->buf);
  p->buf = NULL;
  p->len = p->cap = 0;
}
