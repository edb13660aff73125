/* The core of the daemon, below every other room of gateway/: the loop and
 * what all parts share on it. The device registry; calls from other threads
 * onto the loop (gw_call_on_loop, which waits) and posts to it (gw_post, the
 * bridge from storage's threads, which does not); the listeners of accepted
 * packs and ledger changes, so that the CoAP front never calls the parts it
 * feeds; tickets submitted to the ledger; the loop's lag watch, signals and
 * thread placement. The daemon's top file (gateway/gateway.c) starts and
 * stops the parts around it. */
#define LOG_MODULE "gateway"
#include "gateway/core/core.h"

#include <assert.h>
#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

const char *gw_reject_name(gw_reject_t r) {
  static const char *const names[] = {
#define X(e, s) s,
      GW_REJECT_MAP(X)
#undef X
  };
  return (unsigned)r < GW_REJECT_COUNT ? names[r] : "?";
}

gw_device_t *gw_device_find(gw_t *gw, const char *id) {
  const sg_device_t *d = sg_config_device(gw->cfg, id);
  return d ? &gw->devices[d - gw->cfg->devices] : NULL;
}

void gw_device_reject(gw_device_t *dev, gw_reject_t why) {
  assert((unsigned)why < GW_REJECT_COUNT);
  atomic_fetch_add_explicit(&dev->rejects, 1, memory_order_relaxed);
  _Atomic uint64_t *by = atomic_load_explicit(&dev->reject_by, memory_order_relaxed);
  if (!by) {
    /* Only the loop thread stores it: release, for readers on other threads. */
    if (!(by = calloc(GW_REJECT_COUNT, sizeof(*by)))) {
      log_warn("%s: out of memory for refusals by reason", dev->conf->id);
      return;
    }
    atomic_store_explicit(&dev->reject_by, by, memory_order_release);
  }
  atomic_fetch_add_explicit(&by[why], 1, memory_order_relaxed);
}

uint64_t gw_device_rejects_by(const gw_device_t *dev, gw_reject_t why) {
  assert((unsigned)why < GW_REJECT_COUNT);
  _Atomic uint64_t *by = atomic_load_explicit(&dev->reject_by, memory_order_acquire);
  return by ? atomic_load_explicit(&by[why], memory_order_relaxed) : 0;
}

bool gw_is_online(int offline_intervals, double interval_s, double last, double now) {
  return last > 0 && now - last <= offline_intervals * interval_s;
}

#define EVENT_SILENCE_DEFAULT_S 86400.0 /* a working day without a weighing */

bool gw_event_driven(const sg_device_t *d) {
  return d->type == SG_DEV_SCALE || d->type == SG_DEV_GATE;
}

double gw_silence_allowed_s(int offline_intervals, const sg_device_t *d) {
  if (gw_event_driven(d))
    return d->heartbeat_s > 0 ? (double)d->heartbeat_s : EVENT_SILENCE_DEFAULT_S;
  return (double)offline_intervals * d->interval_s;
}

bool gw_device_online(const gw_t *gw, const gw_device_t *d, double now) {
  double last = (double)atomic_load_explicit(&d->last_ms, memory_order_relaxed) / 1000.0;
  if (gw_event_driven(d->conf)) {
    double since = last > 0 ? last : gw->started;
    return now - since <= gw_silence_allowed_s(gw->cfg->health_offline_intervals, d->conf);
  }
  return gw_is_online(gw->cfg->health_offline_intervals, d->conf->interval_s, last, now);
}

size_t gw_devices_online(const gw_t *gw, double now) {
  size_t online = 0;
  for (size_t i = 0; i < gw->cfg->n_devices; i++)
    online += gw_device_online(gw, &gw->devices[i], now);
  return online;
}

/* ---- calls from other threads onto the loop
 *
 * HTTP handler threads queue a call and wait on `cv` until the loop has run
 * it. The shutdown order is waste_gw.c's: calls_close() (loop thread) marks
 * the list closed and fails every queued call with -ECANCELED under the
 * mutex, so no thread can send on the closing async handle; the struct,
 * its mutex and its condition variable stay alive until calls_free(),
 * which runs only after http_stop() has joined every handler thread, so a
 * waiter woken by the cancellation can still re-acquire the mutex.
 * gw->calls is set before the HTTP threads start and cleared only after
 * they have stopped: they read it without a lock.
 *
 * Posts (gw_post) share the list's mutex and async handle but nobody waits
 * on them: once closed, they are kept and run as cancelled by
 * gw_core_free(), after storage (whose threads post) has closed. */
typedef struct loop_call {
  void (*fn)(gw_t *gw, void *arg);
  void *arg;
  int state; /* 0 waiting, 1 done, -1 cancelled */
  struct loop_call *next;
} loop_call_t;

struct loop_calls {
  uv_async_t async;
  bool handle_closed; /* the async handle's close callback has run (loop thread) */
  pthread_mutex_t mu;
  pthread_cond_t cv;
  loop_call_t *head;              /* under mu */
  gw_post_t *posts, **posts_tail; /* under mu, in order */
  bool closed;                    /* under mu: no call is taken any more */
};

static void calls_on_async(uv_async_t *a) {
  gw_t *gw = a->data;
  struct loop_calls *lc = gw->calls;
  pthread_mutex_lock(&lc->mu);
  loop_call_t *list = lc->head;
  lc->head = NULL;
  gw_post_t *posts = lc->closed ? NULL : lc->posts;
  if (posts) {
    lc->posts = NULL;
    lc->posts_tail = &lc->posts;
  }
  pthread_mutex_unlock(&lc->mu);
  for (gw_post_t *p = posts, *next; p; p = next) {
    next = p->next; /* p may be freed by its fn */
    p->fn(gw, p->arg, false);
  }
  /* The callers are blocked until we mark their call: the list is ours. */
  for (loop_call_t *c = list, *next; c; c = next) {
    next = c->next;
    c->fn(gw, c->arg);
    pthread_mutex_lock(&lc->mu);
    c->state = 1;
    pthread_mutex_unlock(&lc->mu);
  }
  pthread_mutex_lock(&lc->mu);
  pthread_cond_broadcast(&lc->cv);
  pthread_mutex_unlock(&lc->mu);
}

int gw_call_on_loop(gw_t *gw, void (*fn)(gw_t *gw, void *arg), void *arg) {
  struct loop_calls *lc = gw->calls;
  assert(!pthread_equal(pthread_self(), gw->loop_thread)); /* it would wait for itself */
  loop_call_t call = {.fn = fn, .arg = arg};
  assert(lc != NULL); /* set before http_start, cleared after http_stop */
  pthread_mutex_lock(&lc->mu);
  if (lc->closed) {
    pthread_mutex_unlock(&lc->mu);
    return -ECANCELED;
  }
  loop_call_t **tail = &lc->head;
  while (*tail)
    tail = &(*tail)->next;
  *tail = &call;
  uv_async_send(&lc->async); /* under mu: calls_close() cannot have closed it */
  while (call.state == 0)
    pthread_cond_wait(&lc->cv, &lc->mu);
  pthread_mutex_unlock(&lc->mu);
  return call.state == 1 ? 0 : -ECANCELED;
}

void gw_post(gw_t *gw, gw_post_t *p) {
  struct loop_calls *lc = gw->calls;
  assert(lc != NULL); /* from gw_core_open to gw_core_free */
  p->next = NULL;
  pthread_mutex_lock(&lc->mu);
  *lc->posts_tail = p;
  lc->posts_tail = &p->next;
  if (!lc->closed)
    uv_async_send(&lc->async); /* under mu: calls_close() cannot have closed it */
  pthread_mutex_unlock(&lc->mu);
}

static void calls_on_closed(uv_handle_t *h) {
  struct loop_calls *lc = h->data;
  lc->handle_closed = true;
}

/* Loop thread. Stops taking calls; callers still waiting are told
 * -ECANCELED. Frees nothing: calls_free() does, after http_stop(). */
static void calls_close(gw_t *gw) {
  struct loop_calls *lc = gw->calls;
  if (!lc)
    return;
  pthread_mutex_lock(&lc->mu);
  bool was_closed = lc->closed;
  lc->closed = true;
  for (loop_call_t *c = lc->head; c; c = c->next)
    c->state = -1;
  lc->head = NULL;
  pthread_cond_broadcast(&lc->cv);
  pthread_mutex_unlock(&lc->mu);
  if (!was_closed) {
    lc->async.data = lc;
    uv_close((uv_handle_t *)&lc->async, calls_on_closed);
  }
}

/* After http_stop() (no thread can be waiting) and after the loop has run
 * the async handle's close callback. Accepts gw->calls == NULL. */
static void calls_free(gw_t *gw) {
  struct loop_calls *lc = gw->calls;
  if (!lc)
    return;
  assert(lc->closed && lc->handle_closed);
  /* Storage has closed: nothing posts any more. */
  for (gw_post_t *p = lc->posts, *next; p; p = next) {
    next = p->next;
    p->fn(gw, p->arg, true);
  }
  gw->calls = NULL;
  pthread_mutex_destroy(&lc->mu);
  pthread_cond_destroy(&lc->cv);
  free(lc);
}

static int calls_open(gw_t *gw) {
  struct loop_calls *lc = calloc(1, sizeof(*lc));
  if (!lc)
    return -ENOMEM;
  pthread_mutex_init(&lc->mu, NULL);
  pthread_cond_init(&lc->cv, NULL);
  lc->posts_tail = &lc->posts;
  uv_async_init(gw->loop, &lc->async, calls_on_async);
  lc->async.data = gw;
  gw->calls = lc;
  return 0;
}

/* The loop must never block (DESIGN.md): a 100 ms timer that fires late
 * shows how long something held it, and a long hold is logged. */
#define LAG_TICK_MS 100
#define LAG_WARN_MS 250
static void lag_on_tick(uv_timer_t *t) {
  gw_t *gw = t->data;
  uint64_t now = uv_now(gw->loop);
  uint64_t late = now > gw->lag_expected_ms ? now - gw->lag_expected_ms : 0;
  if (late > atomic_load(&gw->lag_max_ms))
    atomic_store(&gw->lag_max_ms, late);
  if (late >= LAG_WARN_MS)
    log_warn("the event loop was blocked for %llu ms", (unsigned long long)late);
  gw->lag_expected_ms = now + LAG_TICK_MS;
}

static void on_signal(uv_signal_t *s, int signum) {
  gw_t *gw = s->data;
  log_info("%s: stopping", strsignal(signum));
  if (gw->stop_parts)
    gw->stop_parts(gw);
  gw_core_stop(gw);
}

/* ---- CPU placement
 *
 * The loop thread answers every CoAP request, so it gets one CPU of its
 * own and every other thread (the storage writer and checkpointer, the
 * HTTP threads, libuv's workers) the rest. Left to the scheduler on a
 * 2-core box, a reply waited behind a commit or a rollup flush on the
 * loop's CPU while the other CPU idled (perf sched: up to 5 ms; a woken
 * thread that ran recently is not pulled to an idle CPU): at 10,000
 * requests/s p99 was 3.1-4.9 ms, placed 1.0-1.3 ms, throughput the same
 * (bench/run.sh, three runs each). With one CPU allowed, nothing is done.
 * Threads the loop starts later would share its CPU; none does (libuv's
 * pool is started here, before placing). */
static void pool_noop(uv_work_t *w) { (void)w; }
static void pool_noop_done(uv_work_t *w, int status) {
  (void)w;
  (void)status;
}

static void place_threads(gw_t *gw) {
  cpu_set_t all, loop_cpu, rest;
  if (sched_getaffinity(0, sizeof(all), &all) != 0 || CPU_COUNT(&all) < 2)
    return;
  int first = 0;
  while (!CPU_ISSET(first, &all))
    first++;
  CPU_ZERO(&loop_cpu);
  CPU_SET(first, &loop_cpu);
  rest = all;
  CPU_CLR(first, &rest);
  if (uv_queue_work(gw->loop, &gw->pool_start, pool_noop, pool_noop_done) != 0)
    return;
  DIR *d = opendir("/proc/self/task");
  if (!d)
    return;
  pid_t self = gettid();
  int failed = 0;
  /* A sandbox may forbid placement (EPERM: a seccomp filter, a container):
   * then it is not allowed here, said once, and the threads stay where the
   * scheduler puts them. */
  for (struct dirent *e; (e = readdir(d)) && failed != EPERM;) {
    pid_t tid = (pid_t)atoi(e->d_name);
    if (tid > 0 && sched_setaffinity(tid, sizeof(cpu_set_t), tid == self ? &loop_cpu : &rest) != 0)
      failed = errno;
  }
  closedir(d);
  if (failed == EPERM)
    log_info("thread placement is not allowed here (EPERM): threads left to the scheduler");
  else if (failed)
    log_info("threads left where the scheduler puts them: %s", strerror(failed));
  else
    log_info("CPU %d runs the CoAP loop; storage and workers run on the other %d", first,
             CPU_COUNT(&rest));
}

/* ---- the end of the loop: a part that forgot to close a handle is a bug
 * that a clean exit status would hide (and a leak in tests), so it is
 * named and the run fails. */
static void leftover_on_walk(uv_handle_t *h, void *arg) {
  size_t *n = arg;
  (*n)++;
  log_err("a %s handle was left open%s", uv_handle_type_name(uv_handle_get_type(h)),
          uv_is_active(h) ? " (active)" : "");
}

int gw_core_close_loop(gw_t *gw, int rc) {
  uv_loop_t *loop = gw->loop;
  if (!loop)
    return rc; /* it never opened */
  size_t n = 0;
  uv_walk(loop, leftover_on_walk, &n);
  int lrc = uv_loop_close(loop);
  if (lrc == 0)
    return rc;
  log_err("the event loop could not close with %zu handles open: %s", n, uv_strerror(lrc));
  return rc != 0 ? rc : lrc;
}

/* Registry: one entry per configured device, with its storage id. */
static int registry_open(gw_t *gw) {
  const sg_config_t *cfg = gw->cfg;
  gw->devices = calloc(cfg->n_devices ? cfg->n_devices : 1, sizeof(*gw->devices));
  if (!gw->devices)
    return -ENOMEM;
  const char **names = calloc(cfg->n_devices ? cfg->n_devices : 1, sizeof(*names));
  uint32_t *ids = calloc(cfg->n_devices ? cfg->n_devices : 1, sizeof(*ids));
  int rc = names && ids ? 0 : -ENOMEM;
  for (size_t i = 0; rc == 0 && i < cfg->n_devices; i++) {
    gw->devices[i].conf = &cfg->devices[i];
    names[i] = cfg->devices[i].id;
  }
  if (rc == 0)
    rc = stor_device_ids(gw->db, names, cfg->n_devices, ids);
  for (size_t i = 0; rc == 0 && i < cfg->n_devices; i++)
    gw->devices[i].db_id = ids[i];
  free(names);
  free(ids);
  return rc;
}

/* ---- listeners */

struct gw_listener {
  void (*fn)(void); /* gw_pack_fn or gw_ledger_fn, by the list it is on */
  void *arg;
  struct gw_listener *next;
};

static int listen_add(struct gw_listener **list, void (*fn)(void), void *arg) {
  struct gw_listener *l = calloc(1, sizeof(*l)), **tail = list;
  if (!l)
    return -ENOMEM;
  l->fn = fn;
  l->arg = arg;
  while (*tail)
    tail = &(*tail)->next;
  *tail = l;
  return 0;
}

static void listen_free(struct gw_listener **list) {
  for (struct gw_listener *l = *list, *next; l; l = next) {
    next = l->next;
    free(l);
  }
  *list = NULL;
}

int gw_on_pack(gw_t *gw, gw_pack_fn fn, void *arg) {
  return listen_add(&gw->on_pack, (void (*)(void))fn, arg);
}

void gw_pack_accepted(gw_t *gw, const gw_device_t *dev, const proto_pack_t *p) {
  GW_ASSERT_LOOP(gw);
  for (struct gw_listener *l = gw->on_pack; l; l = l->next)
    ((gw_pack_fn)l->fn)(l->arg, dev, p);
}

int gw_on_ledger(gw_t *gw, gw_ledger_fn fn, void *arg) {
  return listen_add(&gw->on_ledger, (void (*)(void))fn, arg);
}

void gw_ledger_changed(gw_t *gw) {
  GW_ASSERT_LOOP(gw);
  for (struct gw_listener *l = gw->on_ledger; l; l = l->next)
    ((gw_ledger_fn)l->fn)(l->arg);
}

/* ---- tickets: committed on the storage writer thread, answered on the loop */

typedef struct ticket_job {
  gw_post_t post;
  gw_ticket_fn done;
  void *arg;
  stor_ticket_result_t res;
  gw_t *gw;
} ticket_job_t;

static void ticket_on_loop(gw_t *gw, void *arg, bool cancelled) {
  ticket_job_t *j = arg;
  j->done(j->arg, cancelled ? NULL : &j->res);
  if (!cancelled && j->res.status == STOR_TICKET_CREATED)
    gw_ledger_changed(gw);
  free(j);
}

/* Storage writer thread: may not touch the loop, so it posts. */
static void ticket_on_committed(void *arg, const stor_ticket_result_t *res) {
  ticket_job_t *j = arg;
  j->res = *res;
  gw_post(j->gw, &j->post);
}

int gw_ticket_submit(gw_t *gw, const stor_ticket_t *t, gw_ticket_fn done, void *arg) {
  GW_ASSERT_LOOP(gw);
  if (gw->stopping)
    return -ESHUTDOWN;
  ticket_job_t *j = calloc(1, sizeof(*j));
  if (!j)
    return -ENOMEM;
  j->post.fn = ticket_on_loop;
  j->post.arg = j;
  j->done = done;
  j->arg = arg;
  j->gw = gw;
  int rc = stor_ticket_submit(gw->db, t, ticket_on_committed, j);
  if (rc != 0)
    free(j);
  return rc;
}

/* ---- machinery moves: as tickets */

int gw_on_move(gw_t *gw, gw_move_fn fn, void *arg) {
  return listen_add(&gw->on_move, (void (*)(void))fn, arg);
}

void gw_move_stored(gw_t *gw, const stor_move_t *mv) {
  GW_ASSERT_LOOP(gw);
  for (struct gw_listener *l = gw->on_move; l; l = l->next)
    ((gw_move_fn)l->fn)(l->arg, mv);
}

typedef struct move_job {
  gw_post_t post;
  gw_move_done_fn done;
  void *arg;
  stor_move_t mv;
  stor_move_result_t res;
  gw_t *gw;
} move_job_t;

static void move_on_loop(gw_t *gw, void *arg, bool cancelled) {
  move_job_t *j = arg;
  j->done(j->arg, &j->mv, cancelled ? NULL : &j->res);
  if (!cancelled && j->res.status == STOR_MOVE_CREATED)
    gw_move_stored(gw, &j->mv);
  free(j);
}

/* Storage writer thread: may not touch the loop, so it posts. */
static void move_on_committed(void *arg, const stor_move_t *mv, const stor_move_result_t *res) {
  move_job_t *j = arg;
  j->mv = *mv;
  j->res = *res;
  gw_post(j->gw, &j->post);
}

int gw_move_submit(gw_t *gw, const stor_move_t *mv, gw_move_done_fn done, void *arg) {
  GW_ASSERT_LOOP(gw);
  if (gw->stopping)
    return -ESHUTDOWN;
  move_job_t *j = calloc(1, sizeof(*j));
  if (!j)
    return -ENOMEM;
  j->post.fn = move_on_loop;
  j->post.arg = j;
  j->done = done;
  j->arg = arg;
  j->gw = gw;
  int rc = stor_move_submit(gw->db, mv, move_on_committed, j);
  if (rc != 0)
    free(j);
  return rc;
}

/* ---- life cycle */

int gw_core_open(gw_t *gw, const sg_config_t *cfg, uv_loop_t *loop) {
  int rc;
  memset(gw, 0, sizeof(*gw));
  gw->lock_fd = -1;
  gw->cfg = cfg;
  gw->loop = loop;
  gw->loop_thread = pthread_self();
  gw->started = sg_now();
  /* Rollups and reports are in the site's zone; set it before any thread. */
  setenv("TZ", cfg->timezone, 1);
  tzset();
  signal(SIGPIPE, SIG_IGN);
  if ((rc = uv_loop_init(loop)) != 0) {
    log_err("cannot start the event loop: %s", uv_strerror(rc));
    gw->loop = NULL;
    return rc;
  }
  stor_options_t so = {.path = cfg->db_path,
                       .batch_ms = cfg->batch_ms,
                       .batch_readings = (size_t)cfg->batch_readings,
                       .queue_max = (size_t)cfg->queue_max,
                       .raw_days = cfg->raw_days,
                       .on_opening = gw__notify_opening,
                       .opening_ms = GW_OPENING_NOTIFY_MS};
  /* One instance per database: refused here, before anything reads it. */
  if ((rc = stor_lock(cfg->db_path, &gw->lock_fd, NULL)) != 0 || (rc = calls_open(gw)) != 0 ||
      (rc = stor_open(&so, &gw->db)) != 0)
    return rc;
  if ((rc = registry_open(gw)) != 0)
    log_err("cannot register devices in %s: %s", cfg->db_path, strerror(-rc));
  return rc;
}

void gw_core_run(gw_t *gw, void (*stop_parts)(gw_t *gw)) {
  uv_loop_t *loop = gw->loop;
  gw->stop_parts = stop_parts;
  uv_signal_init(loop, &gw->sig_term);
  uv_signal_init(loop, &gw->sig_int);
  gw->sig_term.data = gw->sig_int.data = gw;
  uv_signal_start(&gw->sig_term, on_signal, SIGTERM);
  uv_signal_start(&gw->sig_int, on_signal, SIGINT);
  uv_timer_init(loop, &gw->lag_timer);
  gw->lag_timer.data = gw;
  /* The loop's clock is as old as uv_loop_init, before storage opened
   * (a migration may take minutes): the lag is measured from now. */
  uv_update_time(loop);
  gw->lag_expected_ms = uv_now(loop) + LAG_TICK_MS;
  uv_timer_start(&gw->lag_timer, lag_on_tick, LAG_TICK_MS, LAG_TICK_MS);
  gw->running = true;
  place_threads(gw);
  log_info("site %s: %zu devices, database %s", gw->cfg->site_id, gw->cfg->n_devices,
           gw->cfg->db_path);
  gw__notify_ready(gw); /* every part has started: storage open, CoAP and HTTP listen */
  uv_run(loop, UV_RUN_DEFAULT);
}

void gw_core_stop(gw_t *gw) {
  if (gw->stopping)
    return;
  gw->stopping = true;
  calls_close(gw); /* handlers waiting on the loop get -ECANCELED */
  if (gw->running) {
    gw__notify_stopping(gw);
    uv_close((uv_handle_t *)&gw->lag_timer, NULL);
    uv_close((uv_handle_t *)&gw->sig_term, NULL);
    uv_close((uv_handle_t *)&gw->sig_int, NULL);
  }
}

void gw_core_free(gw_t *gw) {
  stor_close(gw->db); /* commits everything queued */
  gw->db = NULL;
  stor_unlock(gw->lock_fd); /* after the last write */
  gw->lock_fd = -1;
  calls_free(gw); /* after storage: kept posts run, as cancelled */
  listen_free(&gw->on_pack);
  listen_free(&gw->on_ledger);
  listen_free(&gw->on_move);
  for (size_t i = 0; gw->devices && i < gw->cfg->n_devices; i++)
    free((void *)atomic_load(&gw->devices[i].reject_by));
  free(gw->devices);
  gw->devices = NULL;
}
