/* The alarm model in the daemon (rules.h): the loop thread owns the
 * model; its events go to listeners at once and to storage through a
 * queue that a libuv worker drains.
 *
 * Why a worker and a mutex-guarded queue: stor_alarm_write() waits for the
 * storage writer (a commit, an fsync), which the loop must never do. The
 * worker keeps taking events until the queue is empty, so an
 * acknowledgement waiting on an HTTP thread is stored even while the loop
 * is shutting down. Order is kept: one worker at a time, events in the
 * order the model made them; a failed write puts its events back at the
 * head, and the next report (rules report every few seconds) retries.
 * Events that cannot be queued or put back (out of memory) are counted
 * lost, never stored (alarm_tally_t), so no acknowledgement among them is
 * answered as stored. */
#define LOG_MODULE "alarm"

#include "gateway/rules/rules.h"
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define ACK_WAIT_S 30 /* longest an acknowledgement waits for its commit */

struct listener {
  alarm_listener_t fn;
  void *arg;
};

struct alarms {
  gw_t *gw;
  alarm_model_t model; /* loop thread */
  struct listener listeners[ALARM_LISTENERS];
  size_t n_listeners;
  uv_work_t work;
  bool worker_failed; /* the last worker stopped on a failed write (worker, then loop) */
  double event_t;     /* loop thread: the time of the model's call in progress */

  /* under mu */
  pthread_mutex_t mu;
  pthread_cond_t stored_cv;
  stor_alarm_event_t *q; /* waiting to be written, in order */
  size_t n, cap;
  bool busy;           /* a worker is draining the queue */
  alarm_tally_t tally; /* what became of the events (rules.h) */
  bool closed;
};

/* ---- the queue */

/* With mu held: appends `n` events at the tail, or at the head. */
static int queue_put(struct alarms *al, const stor_alarm_event_t *ev, size_t n, bool head) {
  if (al->n + n > al->cap) {
    size_t cap = al->cap ? al->cap : 16;
    while (cap < al->n + n)
      cap *= 2;
    stor_alarm_event_t *q = realloc(al->q, cap * sizeof(*q));
    if (!q)
      return -ENOMEM;
    al->q = q;
    al->cap = cap;
  }
  if (head) {
    memmove(al->q + n, al->q, al->n * sizeof(*al->q));
    memcpy(al->q, ev, n * sizeof(*ev));
  } else {
    memcpy(al->q + al->n, ev, n * sizeof(*ev));
  }
  al->n += n;
  return 0;
}

/* Threadpool: writes until the queue is empty or a write fails. */
static void work_on_run(uv_work_t *w) {
  struct alarms *al = w->data;
  al->worker_failed = false;
  for (;;) {
    pthread_mutex_lock(&al->mu);
    stor_alarm_event_t *batch = al->q;
    size_t n = al->n;
    al->q = NULL;
    al->n = al->cap = 0;
    pthread_mutex_unlock(&al->mu);
    if (n == 0)
      break;
    int rc = stor_alarm_write(al->gw->db, batch, n);
    pthread_mutex_lock(&al->mu);
    bool kept = rc != 0 && queue_put(al, batch, n, true) == 0;
    alarm_tally_written(&al->tally, n, rc, kept);
    pthread_cond_broadcast(&al->stored_cv);
    pthread_mutex_unlock(&al->mu);
    free(batch);
    al->worker_failed = rc != 0; /* read in work_on_done, after this thread ends */
    if (rc != 0) {
      log_err("cannot store %zu alarm events: %s; %s", n, strerror(-rc),
              kept ? "retrying with the next report" : "out of memory, they are lost");
      break;
    }
  }
}

static void kick(struct alarms *al);

static void work_on_done(uv_work_t *w, int status) {
  struct alarms *al = w->data;
  (void)status;
  pthread_mutex_lock(&al->mu);
  al->busy = false;
  pthread_mutex_unlock(&al->mu);
  /* Events queued after the worker found the queue empty; after a failure
   * the next report retries instead. */
  if (!al->worker_failed)
    kick(al);
}

/* Loop thread: starts a worker when events wait and none runs. */
static void kick(struct alarms *al) {
  pthread_mutex_lock(&al->mu);
  bool start = !al->busy && al->n > 0 && !al->closed;
  if (start)
    al->busy = true;
  pthread_mutex_unlock(&al->mu);
  if (!start)
    return;
  al->work.data = al;
  int rc = uv_queue_work(al->gw->loop, &al->work, work_on_run, work_on_done);
  if (rc != 0) {
    log_err("cannot start the alarm writer: %s", uv_strerror(rc));
    pthread_mutex_lock(&al->mu);
    al->busy = false;
    pthread_mutex_unlock(&al->mu);
  }
}

/* The model's callback, loop thread: queue for storage, tell listeners. */
static void on_event(void *arg, alarm_ev_t ev, const stor_alarm_t *a) {
  struct alarms *al = arg;
  stor_alarm_event_t e = {
      .alarm = *a, .kind = (int)ev, .t = al->event_t > 0 ? al->event_t : sg_now()};
  pthread_mutex_lock(&al->mu);
  int rc = queue_put(al, &e, 1, false);
  alarm_tally_made(&al->tally, rc);
  pthread_mutex_unlock(&al->mu);
  if (rc != 0)
    log_err("alarm %lld %s: out of memory, not stored", (long long)a->id, alarm_event_name(ev));
  log_info("alarm %lld %s: %s", (long long)a->id, alarm_event_name(ev), a->message);
  for (size_t i = 0; i < al->n_listeners; i++)
    al->listeners[i].fn(al->listeners[i].arg, ev, a);
  kick(al);
}

/* ---- life cycle */

static int restore_one(void *arg, const stor_alarm_t *a) {
  return alarm_model_restore(arg, a) != 0;
}

int alarm_open(gw_t *gw) {
  struct alarms *al = calloc(1, sizeof(*al));
  if (!al)
    return -ENOMEM;
  al->gw = gw;
  pthread_mutex_init(&al->mu, NULL);
  pthread_cond_init(&al->stored_cv, NULL);
  alarm_model_init(&al->model, 1);
  stor_reader_t *r = NULL;
  int64_t max_id = 0;
  int rc = stor_reader_open(gw->cfg->db_path, &r);
  if (rc == 0)
    rc = stor_alarm_active(r, restore_one, &al->model, &max_id);
  stor_reader_close(r);
  if (rc != 0) {
    log_err("cannot read the alarms in %s: %s", gw->cfg->db_path, strerror(-rc));
    gw->alarms = al;
    alarm_close(gw);
    return rc;
  }
  if (max_id >= al->model.next_id)
    al->model.next_id = max_id + 1;
  al->model.on_event = on_event;
  al->model.arg = al;
  gw->alarms = al;
  if (al->model.n)
    log_info("%zu alarms active from before the restart", al->model.n);
  return 0;
}

void alarm_close(gw_t *gw) {
  struct alarms *al = gw->alarms;
  if (!al)
    return;
  gw->alarms = NULL;
  /* The loop has run out, so no worker runs: store what is left here. */
  pthread_mutex_lock(&al->mu);
  al->closed = true;
  if (al->n > 0 && gw->db) {
    int rc = stor_alarm_write(gw->db, al->q, al->n);
    alarm_tally_written(&al->tally, al->n, rc, false);
    if (rc != 0)
      log_err("%zu alarm events could not be stored at exit: %s", al->n, strerror(-rc));
  }
  pthread_cond_broadcast(&al->stored_cv);
  pthread_mutex_unlock(&al->mu);
  alarm_model_free(&al->model);
  free(al->q);
  pthread_cond_destroy(&al->stored_cv);
  pthread_mutex_destroy(&al->mu);
  free(al);
}

int64_t alarm_update(gw_t *gw, const alarm_cond_t *c) {
  struct alarms *al = gw->alarms;
  if (!al)
    return -ENODEV;
  /* late data is judged as at its own time (rules.h, "late data") */
  al->event_t = c && c->at > 0 ? c->at : sg_now();
  int64_t rc = alarm_model_update(&al->model, c, al->event_t);
  al->event_t = 0;
  kick(al); /* retries events a failed write left queued */
  return rc;
}

int alarm_listen(gw_t *gw, alarm_listener_t fn, void *arg) {
  struct alarms *al = gw->alarms;
  if (!al)
    return -ENODEV;
  if (al->n_listeners == ALARM_LISTENERS)
    return -ENOSPC;
  al->listeners[al->n_listeners++] = (struct listener){fn, arg};
  return 0;
}

/* ---- the HTTP threads' side */

static json_t *real_or_null(double v) { return isfinite(v) ? json_real(v) : json_null(); }
static json_t *time_or_null(double t) { return t > 0 ? json_real(t) : json_null(); }

json_t *alarm_to_json(const stor_alarm_t *a) {
  bool active = a->cleared == 0;
  return json_pack("{s:I,s:s,s:s,s:s,s:i,s:s,s:o,s:o,s:o,s:s,s:s,s:o,s:f,s:f,s:o,s:b,s:b,s:o,"
                   "s:s,s:s}",
                   "id", (json_int_t)a->id, "rule", a->rule, "source", a->source, "level",
                   alarm_level_name(a->level), "severity", a->level, "peak_level",
                   alarm_level_name(a->peak_level), "figure", real_or_null(a->figure), "limit",
                   real_or_null(a->limit), "peak", real_or_null(a->peak), "unit", a->unit,
                   "message", a->message, "data_t", time_or_null(a->data_t), "raised", a->raised,
                   "updated", a->updated, "cleared", time_or_null(a->cleared), "active", active,
                   "acked", a->acked > 0, "acked_at", time_or_null(a->acked), "acked_by",
                   a->acked_by, "note", a->note);
}

typedef struct snapshot {
  stor_alarm_t *a;
  size_t n;
} snapshot_t;

static void snapshot_on_loop(gw_t *gw, void *arg) {
  snapshot_t *s = arg;
  struct alarms *al = gw->alarms;
  if (!al || al->model.n == 0)
    return;
  s->a = malloc(al->model.n * sizeof(*s->a));
  if (!s->a)
    return;
  memcpy(s->a, al->model.active, al->model.n * sizeof(*s->a));
  s->n = al->model.n;
}

static int by_id_desc(const void *x, const void *y) {
  int64_t a = ((const stor_alarm_t *)x)->id, b = ((const stor_alarm_t *)y)->id;
  return a < b ? 1 : a > b ? -1 : 0;
}

json_t *alarm_active_json(gw_t *gw) {
  snapshot_t s = {0};
  if (gw_call_on_loop(gw, snapshot_on_loop, &s) != 0)
    return NULL;
  if (s.n)
    qsort(s.a, s.n, sizeof(*s.a), by_id_desc);
  json_t *list = json_array();
  for (size_t i = 0; i < s.n; i++)
    json_array_append_new(list, alarm_to_json(&s.a[i]));
  free(s.a);
  return list;
}

typedef struct ack_call {
  int64_t id;
  const char *by, *note;
  int rc;
  alarm_tally_t then; /* before the acknowledgement's event */
  uint64_t seq;       /* its position */
} ack_call_t;

static void ack_on_loop(gw_t *gw, void *arg) {
  ack_call_t *c = arg;
  struct alarms *al = gw->alarms;
  if (!al) {
    c->rc = -ECANCELED;
    return;
  }
  pthread_mutex_lock(&al->mu);
  c->then = al->tally;
  pthread_mutex_unlock(&al->mu);
  al->event_t = sg_now();
  c->rc = alarm_model_ack(&al->model, c->id, c->by, c->note, al->event_t);
  al->event_t = 0;
  pthread_mutex_lock(&al->mu);
  c->seq = al->tally.made;
  pthread_mutex_unlock(&al->mu);
}

int alarm_ack(gw_t *gw, int64_t id, const char *by, const char *note) {
  ack_call_t c = {.id = id, .by = by, .note = note};
  if (!by || !*by)
    return -EINVAL;
  int rc = gw_call_on_loop(gw, ack_on_loop, &c);
  if (rc != 0)
    return rc;
  if (c.rc != 0)
    return c.rc;
  /* Answer only once the acknowledgement is committed. The alarms object
   * lives until the HTTP threads have stopped, so it is safe to wait on. */
  struct alarms *al = gw->alarms;
  if (!al)
    return -ECANCELED;
  struct timespec until;
  clock_gettime(CLOCK_REALTIME, &until);
  until.tv_sec += ACK_WAIT_S;
  pthread_mutex_lock(&al->mu);
  while ((rc = alarm_tally_outcome(&al->tally, &c.then, c.seq)) == -EINPROGRESS && !al->closed &&
         pthread_cond_timedwait(&al->stored_cv, &al->mu, &until) != ETIMEDOUT)
    ;
  if (rc == -EINPROGRESS)
    rc = al->closed ? -EIO : -ETIMEDOUT;
  pthread_mutex_unlock(&al->mu);
  return rc;
}
