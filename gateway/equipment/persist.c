/* The equipment rows' way to storage and back (equipment_int.h).
 *
 * Audit rows, holds and overrides are queued as they change; daily figures
 * and counters every persist_s (equipment__persist, from the tick). A libuv
 * worker writes the queue, because stor_equipment_write waits for the
 * storage writer, which the loop must never do; the queue is therefore the
 * one thing of the daemon under a mutex. A failed write goes back to the
 * head of the queue and is retried with the next one, so rows keep their
 * order. At stop, what is left is written from the stopping thread once
 * the loop has run out. The state comes back from storage at start-up,
 * through a reader of its own, before the loop takes any pack. */
#define LOG_MODULE "equipment"

#include "gateway/equipment/equipment_int.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- the queue */

/* Appends `item`; a row that finds no memory is dropped (and the queue is
 * left as it was). */
#define WQ_PUSH(arr, n, cap, item)                                                                 \
  do {                                                                                             \
    if ((n) == (cap)) {                                                                            \
      size_t c_ = (cap) ? (cap)*2 : 16;                                                            \
      void *p_ = realloc((arr), c_ * sizeof(*(arr)));                                              \
      if (!p_)                                                                                     \
        break;                                                                                     \
      (arr) = p_;                                                                                  \
      (cap) = c_;                                                                                  \
    }                                                                                              \
    (arr)[(n)++] = (item);                                                                         \
  } while (0)

static void wq_free(wq_t *q) {
  free(q->cmds);
  free(q->days);
  free(q->ctrs);
  free(q->states);
  memset(q, 0, sizeof(*q));
}

/* Puts `head` in front of `q` (a failed write, retried before newer rows). */
static void wq_prepend(wq_t *q, wq_t *head) {
  wq_t all = *head;
  memset(head, 0, sizeof(*head));
  for (size_t i = 0; i < q->n_cmds; i++)
    WQ_PUSH(all.cmds, all.n_cmds, all.cap_cmds, q->cmds[i]);
  for (size_t i = 0; i < q->n_days; i++)
    WQ_PUSH(all.days, all.n_days, all.cap_days, q->days[i]);
  for (size_t i = 0; i < q->n_ctrs; i++)
    WQ_PUSH(all.ctrs, all.n_ctrs, all.cap_ctrs, q->ctrs[i]);
  for (size_t i = 0; i < q->n_states; i++)
    WQ_PUSH(all.states, all.n_states, all.cap_states, q->states[i]);
  wq_free(q);
  *q = all;
}

static int wq_write(stor_db_t *db, const wq_t *q) {
  stor_eq_write_t w = {q->cmds, q->n_cmds, q->days,   q->n_days,
                       q->ctrs, q->n_ctrs, q->states, q->n_states};
  return stor_equipment_write(db, &w);
}

static void work_on_run(uv_work_t *w) {
  struct equipment *eq = w->data;
  pthread_mutex_lock(&eq->mu);
  wq_t batch = eq->q;
  memset(&eq->q, 0, sizeof(eq->q));
  pthread_mutex_unlock(&eq->mu);
  int rc = wq_write(eq->gw->db, &batch);
  eq->failed = rc != 0;
  if (rc != 0) {
    log_err("cannot store equipment rows: %s; retrying with the next ones", strerror(-rc));
    pthread_mutex_lock(&eq->mu);
    wq_prepend(&eq->q, &batch);
    pthread_mutex_unlock(&eq->mu);
  }
  wq_free(&batch);
}

static void kick(struct equipment *eq);

static void work_on_done(uv_work_t *w, int status) {
  struct equipment *eq = w->data;
  (void)status;
  eq->busy = false;
  if (!eq->failed)
    kick(eq); /* rows queued while it wrote */
}

static void kick(struct equipment *eq) {
  GW_ASSERT_LOOP(eq->gw);
  pthread_mutex_lock(&eq->mu);
  bool any = eq->q.n_cmds + eq->q.n_days + eq->q.n_ctrs + eq->q.n_states > 0;
  pthread_mutex_unlock(&eq->mu);
  if (eq->busy || !any)
    return;
  eq->work.data = eq;
  eq->busy = uv_queue_work(eq->gw->loop, &eq->work, work_on_run, work_on_done) == 0;
}

void equipment__queue_cmd(struct equipment *eq, const stor_eqcmd_t *c) {
  pthread_mutex_lock(&eq->mu);
  WQ_PUSH(eq->q.cmds, eq->q.n_cmds, eq->q.cap_cmds, *c);
  pthread_mutex_unlock(&eq->mu);
  kick(eq);
}

static stor_eqstate_t state_row(const unit_t *u) {
  stor_eqstate_t s = {.held = (int)u->held,
                      .ovr = u->ovr,
                      .ovr_on = u->ovr_on,
                      .ovr_until = u->ovr_until,
                      .ovr_t = u->ovr_t};
  snprintf(s.unit, sizeof(s.unit), "%s", u->dev->id);
  snprintf(s.ovr_actor, sizeof(s.ovr_actor), "%s", u->ovr_actor);
  snprintf(s.ovr_note, sizeof(s.ovr_note), "%s", u->ovr_note);
  return s;
}

void equipment__queue_state(struct equipment *eq, const unit_t *u) {
  stor_eqstate_t s = state_row(u);
  pthread_mutex_lock(&eq->mu);
  WQ_PUSH(eq->q.states, eq->q.n_states, eq->q.cap_states, s);
  pthread_mutex_unlock(&eq->mu);
  kick(eq);
}

static stor_counter_row_t counter_row(const unit_t *u, int q, const energy_counter_t *c) {
  stor_counter_row_t r = {.quantity = q,
                          .value = c->value,
                          .t = c->t,
                          .rollovers = c->rollovers,
                          .resets = c->resets,
                          .jumps = c->jumps};
  snprintf(r.unit, sizeof(r.unit), "%s", u->dev->id);
  return r;
}

/* The days and counters changed since they were last queued, into q. */
static void collect_energy(struct equipment *eq, wq_t *q) {
  for (size_t i = 0; i < eq->n_units; i++) {
    unit_t *u = &eq->units[i];
    if (!u->acc.dirty)
      continue;
    for (size_t k = 0; k < u->acc.n; k++) {
      const energy_day_t *d = &u->acc.days[k];
      if (d->day < u->acc.dirty_from)
        continue;
      stor_energy_row_t r = {.day = d->day,
                             .kwh = d->kwh,
                             .fuel_l = d->fuel_l,
                             .run_s = d->run_s,
                             .idle_s = d->idle_s,
                             .off_s = d->off_s,
                             .idle_kwh = d->idle_kwh};
      snprintf(r.unit, sizeof(r.unit), "%s", u->dev->id);
      WQ_PUSH(q->days, q->n_days, q->cap_days, r);
    }
    if (u->acc.kwh_ctr.have)
      WQ_PUSH(q->ctrs, q->n_ctrs, q->cap_ctrs, counter_row(u, PROTO_Q_ENERGY, &u->acc.kwh_ctr));
    if (u->acc.fuel_ctr.have)
      WQ_PUSH(q->ctrs, q->n_ctrs, q->cap_ctrs, counter_row(u, PROTO_Q_FUEL, &u->acc.fuel_ctr));
    u->acc.dirty = false;
  }
}

void equipment__persist(struct equipment *eq) {
  wq_t q = {0};
  collect_energy(eq, &q);
  pthread_mutex_lock(&eq->mu);
  for (size_t i = 0; i < q.n_days; i++)
    WQ_PUSH(eq->q.days, eq->q.n_days, eq->q.cap_days, q.days[i]);
  for (size_t i = 0; i < q.n_ctrs; i++)
    WQ_PUSH(eq->q.ctrs, eq->q.n_ctrs, eq->q.cap_ctrs, q.ctrs[i]);
  pthread_mutex_unlock(&eq->mu);
  wq_free(&q);
  kick(eq);
}

/* ---- the restore at start-up */

static int restore_day(void *arg, const stor_energy_row_t *r) {
  struct equipment *eq = arg;
  unit_t *u = equipment__unit_by_id(eq, r->unit);
  energy_day_t *d = u ? energy_acc_day(&u->acc, r->day + 1) : NULL;
  if (!d)
    return 0; /* a unit no longer configured */
  *d = (energy_day_t){.day = d->day,
                      .kwh = r->kwh,
                      .fuel_l = r->fuel_l,
                      .run_s = r->run_s,
                      .idle_s = r->idle_s,
                      .off_s = r->off_s,
                      .idle_kwh = r->idle_kwh};
  u->run_s += r->run_s;
  return 0;
}

static int restore_counter(void *arg, const stor_counter_row_t *r) {
  unit_t *u = equipment__unit_by_id(arg, r->unit);
  energy_counter_t *c = !u                              ? NULL
                        : r->quantity == PROTO_Q_ENERGY ? &u->acc.kwh_ctr
                        : r->quantity == PROTO_Q_FUEL   ? &u->acc.fuel_ctr
                                                        : NULL;
  if (c)
    *c = (energy_counter_t){.have = true,
                            .value = r->value,
                            .t = r->t,
                            .rollovers = r->rollovers,
                            .resets = r->resets,
                            .jumps = r->jumps};
  return 0;
}

static int restore_state(void *arg, const stor_eqstate_t *s) {
  unit_t *u = equipment__unit_by_id(arg, s->unit);
  if (!u || u->group < 0)
    return 0;
  u->held = s->held >= EQP_HOLD_NONE && s->held <= EQP_HOLD_OVERRIDE ? (eqp_hold_t)s->held
                                                                     : EQP_HOLD_NONE;
  u->ovr = s->ovr;
  u->ovr_on = s->ovr_on;
  u->ovr_until = s->ovr_until;
  u->ovr_t = s->ovr_t;
  snprintf(u->ovr_actor, sizeof(u->ovr_actor), "%s", s->ovr_actor);
  snprintf(u->ovr_note, sizeof(u->ovr_note), "%s", s->ovr_note);
  return 0;
}

int equipment__restore(struct equipment *eq) {
  stor_reader_t *r = NULL;
  int64_t max_id = 0;
  stor_eq_load_t cb = {restore_day, restore_counter, restore_state, eq};
  int rc = stor_reader_open(eq->cfg->db_path, &r);
  if (rc == 0)
    rc = stor_equipment_load(r, &cb, &max_id);
  stor_reader_close(r);
  if (rc != 0) {
    log_err("cannot read the equipment state in %s: %s", eq->cfg->db_path, strerror(-rc));
    return rc;
  }
  eq->next_cmd_id = max_id + 1;
  for (size_t i = 0; i < eq->n_units; i++)
    eq->units[i].acc.dirty = false;
  return 0;
}

/* ---- set up and the last write */

int equipment__persist_init(struct equipment *eq) { return -pthread_mutex_init(&eq->mu, NULL); }

void equipment__persist_flush(struct equipment *eq) {
  wq_t rest = {0};
  collect_energy(eq, &rest);
  pthread_mutex_lock(&eq->mu);
  wq_prepend(&rest, &eq->q); /* queued rows first, then the last figures */
  pthread_mutex_unlock(&eq->mu);
  int rc = wq_write(eq->gw->db, &rest);
  if (rc != 0)
    log_err("cannot store the last equipment rows: %s", strerror(-rc));
  wq_free(&rest);
}

void equipment__persist_free(struct equipment *eq) {
  wq_free(&eq->q);
  pthread_mutex_destroy(&eq->mu);
}
