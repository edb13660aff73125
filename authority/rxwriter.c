/* The receiver's writer thread: the one thread that writes the database
 * (storage.h "the receiver's store"), and the hand-over between it and the
 * loop.
 *
 * The loop hands whole messages (all packets of a QN), already checked for
 * CRC, MN and signatures, to a queue; the writer takes everything queued,
 * has storage decide each one in one transaction (SQLite or PostgreSQL,
 * storage's choice from --db), commits, and only then passes the messages
 * back to the loop through a uv_async_t, where they are acknowledged. So a
 * 9014 always means "committed", and a crash before the commit just means
 * the gateway resends. Refusals and handshakes ride in the same batches.
 * A batch the database asks again for is run again; while the database is
 * unreachable the writer holds its batch (no acknowledgement goes out) and
 * reconnects. While nothing is queued (and once a second under a steady
 * stream), the writer decodes the frames stored before their decoded
 * tables existed (stor_rx_backfill()), one bounded step at a time, so a
 * batch never waits for more than one step. */
#define LOG_MODULE "rxstore"
#include "authority/rx.h"
#include "common/common.h"
#include "storage/storage.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <uv.h>

#define RX_RETRIES 5         /* a batch the database asks again for, at once */
#define RX_RECONNECT_MS 1000 /* a lost database connection is tried this often */
#define RX_BATCH_MAX 1000    /* jobs in one transaction */
/* The backfill: messages in one step (tens of ms: what a batch may wait),
 * how soon to look again when another receiver runs it or a step failed,
 * and how often to log its progress. */
#define RX_BACKFILL_STEP 500
#define RX_BACKFILL_EVERY_MS 1000 /* under a steady stream, a step this often all the same */
#define RX_BACKFILL_BUSY_MS 5000
#define RX_BACKFILL_RETRY_MS 10000 /* doubled after each failure in a row, up to 10 min */
#define RX_BACKFILL_RETRY_MAX_MS 600000
#define RX_BACKFILL_LOG_MS 10000

typedef enum { JOB_MSG, JOB_REFUSAL, JOB_SEEN } job_kind_t;

typedef struct job {
  job_kind_t kind;
  stor_rx_msg_t *m;
  char mn[HJ212_MN_MAX + 1];
  char peer[64];
  char *text;  /* refusal reason or subject */
  char *frame; /* refusal: the frame, NUL-terminated */
  int64_t at_ms;
  struct job *next;
} job_t;

struct rx_store {
  stor_rx_t *db;
  pthread_t thread;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  job_t *head, **tail;
  size_t waiting;
  bool stop, started;
  bool lost;               /* the writer's: the database connection is lost */
  rx_writer_stats_t stats; /* under mu */
  stor_rx_msg_t **done;    /* decided, for the loop */
  size_t n_done, cap_done;
  uv_async_t async;
  rx_done_fn done_fn;
  void *done_arg;
  /* the backfill, the writer's own */
  bool bf_on, bf_started;
  double bf_next_ms, bf_last_ms, bf_log_ms, bf_t0; /* mono_ms() */
  double bf_retry_ms;                              /* the wait after the last failure */
  uint64_t bf_messages, bf_rows, bf_skipped, bf_steps;
};

static int64_t now_ms(void) { return (int64_t)(sg_now() * 1000.0); }

static double mono_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1000.0 + (double)ts.tv_nsec / 1e6;
}

void rx_msg_free(stor_rx_msg_t *m) {
  if (!m)
    return;
  free(m->packets);
  free(m->cp);
  free(m);
}

static bool stopping(rx_store_t *st) {
  pthread_mutex_lock(&st->mu);
  bool stop = st->stop;
  pthread_mutex_unlock(&st->mu);
  return stop;
}

/* One job inside the batch's transaction: 0 or a negative errno. */
static int apply(stor_rx_t *db, job_t *j) {
  switch (j->kind) {
  case JOB_MSG:
    return stor_rx_decide(db, j->m);
  case JOB_REFUSAL:
    return stor_rx_refusal(db, j->mn, j->peer, j->text, j->frame, j->at_ms);
  case JOB_SEEN:
    return stor_rx_seen(db, j->mn, j->text, j->at_ms);
  }
  return -EINVAL;
}

static void job_free(job_t *j) {
  free(j->text);
  free(j->frame);
  free(j);
}

static void hand_back(rx_store_t *st, job_t *list) {
  pthread_mutex_lock(&st->mu);
  for (job_t *j = list; j; j = j->next) {
    if (j->kind != JOB_MSG)
      continue;
    if (st->n_done == st->cap_done) {
      size_t cap = st->cap_done ? st->cap_done * 2 : 64;
      stor_rx_msg_t **p = realloc(st->done, cap * sizeof(*p));
      if (!p) /* cannot happen in practice; the message is lost unacknowledged */
        abort();
      st->done = p;
      st->cap_done = cap;
    }
    st->done[st->n_done++] = j->m;
    j->m = NULL;
  }
  pthread_mutex_unlock(&st->mu);
  uv_async_send(&st->async);
  for (job_t *j = list, *next; j; j = next) {
    next = j->next;
    job_free(j);
  }
}

/* One batch in one transaction. The database may ask for it again (a
 * deadlock with another receiver, a race it lost: -EAGAIN), which is done
 * at once; a lost connection (-ENOTCONN) is tried again every
 * RX_RECONNECT_MS while the receiver runs, holding the batch's
 * acknowledgements meanwhile. Returns 0, or the last negative errno
 * (rolled back: nothing of the batch is stored). */
static void count(rx_store_t *st, uint64_t *what) {
  pthread_mutex_lock(&st->mu);
  (*what)++;
  st->stats.lost = st->lost;
  pthread_mutex_unlock(&st->mu);
}

static void count_commit(rx_store_t *st, double ms) {
  pthread_mutex_lock(&st->mu);
  st->stats.batches++;
  st->stats.commit_ms_sum += ms;
  for (int i = 0; i < RX_COMMIT_BUCKETS; i++)
    if (ms <= RX_COMMIT_BOUNDS_MS[i])
      st->stats.commit_le[i]++;
  st->stats.lost = false;
  pthread_mutex_unlock(&st->mu);
}

void rx_store_stats(rx_store_t *st, rx_writer_stats_t *out) {
  pthread_mutex_lock(&st->mu);
  *out = st->stats;
  pthread_mutex_unlock(&st->mu);
}

static int store_batch(rx_store_t *st, job_t *list) {
  int again = 0, rc;
  /* The batch's messages, for the back end to ask about at once. */
  size_t n = 0;
  for (job_t *j = list; j; j = j->next)
    n += j->kind == JOB_MSG;
  stor_rx_msg_t **msgs = n ? malloc(n * sizeof(*msgs)) : NULL;
  n = 0;
  for (job_t *j = list; msgs && j; j = j->next)
    if (j->kind == JOB_MSG)
      msgs[n++] = j->m;
  for (;;) {
    double t0 = mono_ms();
    rc = stor_rx_begin(st->db);
    if (rc == 0 && msgs) /* without it (out of memory) the same, message by message */
      rc = stor_rx_prefetch(st->db, msgs, n);
    for (job_t *j = list; j && rc == 0; j = j->next)
      rc = apply(st->db, j);
    if (rc == 0)
      rc = stor_rx_commit(st->db);
    if (rc == 0) {
      if (st->lost) {
        log_info("database connection back: batch stored");
        count(st, &st->stats.reconnects);
      }
      st->lost = false;
      count_commit(st, mono_ms() - t0);
      free(msgs);
      return 0;
    }
    stor_rx_rollback(st->db);
    if (rc == -EAGAIN && ++again <= RX_RETRIES) {
      count(st, &st->stats.retries);
      log_info("batch asked again by the database (%s): retry %d", stor_rx_error(st->db), again);
      continue;
    }
    if (rc != -ENOTCONN || stopping(st)) {
      free(msgs);
      return rc;
    }
    if (!st->lost)
      log_err("database connection lost (%s): holding acknowledgements, reconnecting",
              stor_rx_error(st->db));
    st->lost = true;
    count(st, &st->stats.errors);
    struct timespec ts = {RX_RECONNECT_MS / 1000, (RX_RECONNECT_MS % 1000) * 1000000L};
    nanosleep(&ts, NULL);
  }
}

/* One step of the backfill, between batches. */
static void backfill_step(rx_store_t *st) {
  stor_rx_backfill_t b;
  double now = mono_ms();
  st->bf_last_ms = now;
  int rc = stor_rx_backfill(st->db, RX_BACKFILL_STEP, &b);
  if (rc == -EBUSY) { /* another receiver sharing the database runs it */
    st->bf_next_ms = now + RX_BACKFILL_BUSY_MS;
    return;
  }
  if (rc != 0) {
    double again = st->bf_retry_ms ? st->bf_retry_ms * 2 : RX_BACKFILL_RETRY_MS;
    st->bf_retry_ms = again < RX_BACKFILL_RETRY_MAX_MS ? again : RX_BACKFILL_RETRY_MAX_MS;
    log_warn("backfill: step not done (%s): tried again in %.0f s", stor_rx_error(st->db),
             st->bf_retry_ms / 1000);
    st->bf_next_ms = now + st->bf_retry_ms;
    return;
  }
  st->bf_retry_ms = 0;
  if (!st->bf_started && !b.finished)
    log_info("backfill: decoding the frames stored before their decoded tables (frame ids %lld "
             "to %lld), while no upload waits",
             (long long)b.done, (long long)b.upto);
  if (!st->bf_started)
    st->bf_t0 = st->bf_log_ms = now;
  st->bf_started = true;
  st->bf_steps++;
  st->bf_messages += (uint64_t)b.messages;
  st->bf_rows += (uint64_t)b.rows;
  st->bf_skipped += (uint64_t)b.skipped;
  pthread_mutex_lock(&st->mu);
  st->stats.backfill_messages = st->bf_messages;
  st->stats.backfill_left = b.finished ? 0 : b.upto - b.done;
  pthread_mutex_unlock(&st->mu);
  st->bf_next_ms = 0; /* the next at once, unless uploads wait */
  if (b.finished) {
    st->bf_on = false;
    if (st->bf_steps == 1 && !b.messages && !b.skipped)
      log_info("backfill: nothing to decode");
    else
      log_info("backfill: done: %llu stored messages decoded (%llu rows, %llu not rebuilt) in "
               "%.1f s",
               (unsigned long long)st->bf_messages, (unsigned long long)st->bf_rows,
               (unsigned long long)st->bf_skipped, (mono_ms() - st->bf_t0) / 1000.0);
  } else if (now - st->bf_log_ms >= RX_BACKFILL_LOG_MS) {
    st->bf_log_ms = now;
    log_info("backfill: up to frame %lld of %lld, %llu messages decoded", (long long)b.done,
             (long long)b.upto, (unsigned long long)st->bf_messages);
  }
}

/* Waits (under mu) until a job is queued, the writer is to stop, or a
 * backfill step is due: true for the last. A step is due when nothing is
 * queued, or when none ran for RX_BACKFILL_EVERY_MS, so that a receiver
 * never idle still gets to the end. */
static bool wait_for_work(rx_store_t *st) {
  double now = mono_ms();
  if (st->head && !st->stop && st->bf_on && now >= st->bf_next_ms &&
      now - st->bf_last_ms >= RX_BACKFILL_EVERY_MS)
    return true;
  while (!st->head && !st->stop) {
    if (!st->bf_on) {
      pthread_cond_wait(&st->cv, &st->mu);
      continue;
    }
    double wait_ms = st->bf_next_ms - mono_ms();
    if (wait_ms <= 0)
      return true;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    long long ns = (long long)ts.tv_nsec + (long long)(wait_ms * 1e6);
    ts.tv_sec += (time_t)(ns / 1000000000LL);
    ts.tv_nsec = (long)(ns % 1000000000LL);
    pthread_cond_timedwait(&st->cv, &st->mu, &ts);
  }
  return false;
}

static void *writer_main(void *arg) {
  rx_store_t *st = arg;
  /* An empty transaction first: it proves the database is there (a
   * PostgreSQL away at start is reconnected to like any lost one, and
   * /metrics says so meanwhile). */
  store_batch(st, NULL);
  st->bf_on = true;
  for (;;) {
    pthread_mutex_lock(&st->mu);
    if (wait_for_work(st)) {
      pthread_mutex_unlock(&st->mu);
      backfill_step(st);
      continue;
    }
    /* At most RX_BATCH_MAX jobs: a batch's questions and answers stay a
     * size the connection carries without either side waiting. */
    job_t *list = st->head, *last = st->head;
    for (int k = 1; last && last->next && k < RX_BATCH_MAX; k++)
      last = last->next;
    if (last && last->next) {
      st->head = last->next;
      last->next = NULL;
    } else {
      st->head = NULL;
      st->tail = &st->head;
    }
    bool stop = st->stop;
    pthread_mutex_unlock(&st->mu);
    if (!list && stop)
      break;
    int rc = store_batch(st, list);
    if (rc != 0 && rc != -ENOTCONN)
      count(st, &st->stats.errors);
    if (rc != 0) {
      const char *why = stor_rx_error(st->db);
      log_err("batch not stored (%s): the gateways will resend", why);
      for (job_t *j = list; j; j = j->next)
        if (j->kind == JOB_MSG) {
          j->m->outcome = STOR_RX_FAILED;
          snprintf(j->m->reason, sizeof(j->m->reason), "database: %s", why);
        }
    }
    size_t n = 0;
    for (job_t *j = list; j; j = j->next)
      n++;
    pthread_mutex_lock(&st->mu);
    st->waiting -= n;
    pthread_mutex_unlock(&st->mu);
    hand_back(st, list);
  }
  return NULL;
}

static void store_on_async(uv_async_t *a) {
  rx_store_t *st = a->data;
  pthread_mutex_lock(&st->mu);
  stor_rx_msg_t **list = st->done;
  size_t n = st->n_done;
  st->done = NULL;
  st->n_done = st->cap_done = 0;
  pthread_mutex_unlock(&st->mu);
  for (size_t i = 0; i < n; i++)
    st->done_fn(st->done_arg, list[i]);
  free(list);
}

static void enqueue(rx_store_t *st, job_t *j) {
  pthread_mutex_lock(&st->mu);
  *st->tail = j;
  st->tail = &j->next;
  st->waiting++;
  pthread_cond_signal(&st->cv);
  pthread_mutex_unlock(&st->mu);
}

const char *rx_store_backend(const rx_store_t *st) { return stor_rx_backend(st->db); }

size_t rx_store_waiting(rx_store_t *st) {
  pthread_mutex_lock(&st->mu);
  size_t n = st->waiting;
  pthread_mutex_unlock(&st->mu);
  return n;
}

size_t rx_store_submit(rx_store_t *st, stor_rx_msg_t *m) {
  job_t *j = calloc(1, sizeof(*j));
  if (!j) {
    m->outcome = STOR_RX_FAILED;
    snprintf(m->reason, sizeof(m->reason), "out of memory");
    st->done_fn(st->done_arg, m);
    return 0;
  }
  j->kind = JOB_MSG;
  j->m = m;
  enqueue(st, j);
  pthread_mutex_lock(&st->mu);
  size_t n = st->waiting;
  pthread_mutex_unlock(&st->mu);
  return n;
}

void rx_store_refusal(rx_store_t *st, const char *mn, const char *peer, const char *reason,
                      const char *frame, size_t frame_len) {
  job_t *j = calloc(1, sizeof(*j));
  if (!j)
    return;
  j->kind = JOB_REFUSAL;
  snprintf(j->mn, sizeof(j->mn), "%s", mn ? mn : "");
  snprintf(j->peer, sizeof(j->peer), "%s", peer ? peer : "");
  j->text = strdup(reason);
  if (frame && frame_len) {
    size_t n = frame_len > 2048 ? 2048 : frame_len; /* enough to see what it was */
    j->frame = malloc(n + 1);
    if (j->frame) {
      memcpy(j->frame, frame, n);
      j->frame[n] = '\0';
    }
  }
  j->at_ms = now_ms();
  if (!j->text) {
    job_free(j);
    return;
  }
  enqueue(st, j);
}

void rx_store_seen(rx_store_t *st, const char *mn, const char *subject) {
  job_t *j = calloc(1, sizeof(*j));
  if (!j)
    return;
  j->kind = JOB_SEEN;
  snprintf(j->mn, sizeof(j->mn), "%s", mn);
  j->text = strdup(subject);
  j->at_ms = now_ms();
  if (!j->text) {
    job_free(j);
    return;
  }
  enqueue(st, j);
}

int rx_store_open(const char *path, void *loop, rx_done_fn done, void *arg, rx_store_t **out) {
  *out = NULL;
  rx_store_t *st = calloc(1, sizeof(*st));
  if (!st)
    return -ENOMEM;
  st->tail = &st->head;
  st->done_fn = done;
  st->done_arg = arg;
  if (stor_rx_open(path, &st->db) != 0) {
    free(st);
    return -EIO;
  }
  pthread_mutex_init(&st->mu, NULL);
  pthread_cond_init(&st->cv, NULL);
  uv_async_init(loop, &st->async, store_on_async);
  st->async.data = st;
  /* The loop ends when the server's own handles are closed; what the writer
   * decides after that is handed over by rx_store_close(). */
  uv_unref((uv_handle_t *)&st->async);
  if (pthread_create(&st->thread, NULL, writer_main, st) != 0) {
    log_err("cannot start the writer thread");
    st->stop = true;
    rx_store_close(st);
    return -EAGAIN;
  }
  st->started = true;
  *out = st;
  return 0;
}

static void store_on_closed(uv_handle_t *h) {
  rx_store_t *st = h->data;
  pthread_mutex_destroy(&st->mu);
  pthread_cond_destroy(&st->cv);
  free(st);
}

void rx_store_close(rx_store_t *st) {
  if (!st)
    return;
  pthread_mutex_lock(&st->mu);
  st->stop = true;
  pthread_cond_signal(&st->cv);
  pthread_mutex_unlock(&st->mu);
  if (st->started)
    pthread_join(st->thread, NULL);
  store_on_async(&st->async); /* the last decisions, so no message leaks */
  stor_rx_close(st->db);
  st->db = NULL;
  uv_close((uv_handle_t *)&st->async, store_on_closed);
}
