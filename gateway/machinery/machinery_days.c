/* Each machine's figures of a local day, from stored moves and terminal
 * readings with the pure functions of machinery_rule.c. Any thread, with
 * the caller's reader: the API (a machine's days, the monthly report)
 * and the uplink's daily record (6053, through the top file). */
#include "gateway/machinery/machinery.h"

#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct moves_acc {
  mach_move_t *v;
  size_t n, cap;
  bool last_in; /* for the "before" query: where the last one left it */
} moves_acc_t;

static int keep_move(void *arg, const stor_move_t *mv) {
  moves_acc_t *a = arg;
  if (a->n == a->cap) {
    size_t cap = a->cap ? a->cap * 2 : 16;
    mach_move_t *g = realloc(a->v, cap * sizeof(*g));
    if (!g)
      return -1;
    a->v = g;
    a->cap = cap;
  }
  a->v[a->n++] = (mach_move_t){mv->t, mv->in};
  return 0;
}

static int last_move(void *arg, const stor_move_t *mv) {
  ((moves_acc_t *)arg)->last_in = mv->in;
  return 0;
}

static int cmp_double(const void *x, const void *y) {
  double a = *(const double *)x, b = *(const double *)y;
  return a < b ? -1 : a > b;
}

int machinery_day(stor_reader_t *rd, const sg_config_t *cfg, const char *code,
                  const stor_machine_t *m, double day, double end, mach_day_t *out) {
  mach_zone_t zone, *z = &zone;
  mach_zone_from_config(cfg, z);
  memset(out, 0, sizeof(*out));
  out->engine_h = out->fuel_l = out->idle_share = NAN;
  moves_acc_t before = {0}, in = {0};
  int rc = stor_machine_moves(rd, code, 0, day, SIZE_MAX, last_move, &before);
  if (rc == 0)
    rc = stor_machine_moves(rd, code, day, end, SIZE_MAX, keep_move, &in);
  env_sample_t *eh = NULL, *fu = NULL, *op = NULL, *id = NULL;
  size_t neh = 0, nfu = 0, nop = 0, nid = 0;
  const char *term = m && m->m.terminal[0] ? m->m.terminal : NULL;
  if (rc == 0 && term)
    rc = env_load(rd, term, PROTO_Q_ENGINE_H, day - 86400.0, end, &eh, &neh);
  if (rc == 0 && term)
    rc = env_load(rd, term, PROTO_Q_FUEL, day - 86400.0, end, &fu, &nfu);
  if (rc == 0 && term)
    rc = env_load(rd, term, PROTO_Q_OPACITY, day - 86400.0, end, &op, &nop);
  if (rc == 0 && term)
    rc = env_load(rd, term, PROTO_Q_IDLE_H, day - 86400.0, end, &id, &nid);
  double *rt = rc == 0 ? malloc((neh + nfu + nop + 1) * sizeof(*rt)) : NULL;
  if (rc == 0 && !rt)
    rc = -ENOMEM;
  if (rc == 0) {
    size_t n = 0;
    for (size_t i = 0; i < neh; i++)
      rt[n++] = eh[i].t;
    for (size_t i = 0; i < nfu; i++)
      rt[n++] = fu[i].t;
    for (size_t i = 0; i < nop; i++)
      rt[n++] = op[i].t;
    qsort(rt, n, sizeof(*rt), cmp_double);
    out->onsite_h = mach_onsite_s(z, before.last_in, in.v, in.n, rt, n, day, end) / 3600.0;
    out->engine_h = mach_counter_rise(eh, neh, day, end);
    out->fuel_l = mach_counter_rise(fu, nfu, day, end);
    out->idle_share = mach_idle_share(mach_counter_rise(id, nid, day, end), out->engine_h);
    if (m)
      mach_day_emissions(&m->m, cfg->energy_diesel_factor, out);
  }
  free(rt);
  free(eh);
  free(fu);
  free(op);
  free(id);
  free(in.v);
  return rc;
}

/* ---- every machine of a day */

typedef struct days_ctx {
  stor_reader_t *rd;
  const sg_config_t *cfg;
  double day, end;
  mach_days_cb cb;
  void *arg;
  int rc;
  char (*seen)[PROTO_MACHINE_CODE_MAX + 1]; /* codes with moves that day */
  size_t n_seen, cap_seen;
} days_ctx_t;

/* Reports one machine's day when it was on site or ran its engine. */
static int one_day(days_ctx_t *c, const char *code, const stor_machine_t *m) {
  mach_day_t d;
  if ((c->rc = machinery_day(c->rd, c->cfg, code, m, c->day, c->end, &d)) != 0)
    return 1;
  if (d.onsite_h <= 0 && !(isfinite(d.engine_h) && d.engine_h > 0))
    return 0;
  return c->cb(c->arg, code, m, &d) != 0;
}

static int register_row(void *arg, const stor_machine_t *m) {
  days_ctx_t *c = arg;
  if (m->added >= c->end || (m->retired > 0 && m->retired < c->day))
    return 0; /* not in the register that day */
  return one_day(c, m->m.code, m);
}

static int seen_move(void *arg, const stor_move_t *mv) {
  days_ctx_t *c = arg;
  for (size_t i = 0; i < c->n_seen; i++)
    if (strcmp(c->seen[i], mv->code) == 0)
      return 0;
  if (c->n_seen == c->cap_seen) {
    size_t cap = c->cap_seen ? c->cap_seen * 2 : 16;
    void *p = realloc(c->seen, cap * sizeof(*c->seen));
    if (!p) {
      c->rc = -ENOMEM;
      return 1;
    }
    c->seen = p;
    c->cap_seen = cap;
  }
  snprintf(c->seen[c->n_seen++], sizeof(c->seen[0]), "%s", mv->code);
  return 0;
}

int machinery_days(stor_reader_t *rd, const sg_config_t *cfg, double day, double end,
                   mach_days_cb cb, void *arg) {
  days_ctx_t c = {.rd = rd, .cfg = cfg, .day = day, .end = end, .cb = cb, .arg = arg};
  int rc = stor_machine_list(rd, true, register_row, &c);
  if (rc == 0 && c.rc == 0)
    rc = stor_machine_moves(rd, NULL, day, end, SIZE_MAX, seen_move, &c);
  for (size_t i = 0; rc == 0 && c.rc == 0 && i < c.n_seen; i++) {
    stor_machine_t m;
    int g = stor_machine_get(rd, c.seen[i], &m);
    if (g == -ENOENT) { /* seen, never registered */
      if (one_day(&c, c.seen[i], NULL))
        break;
    } else if (g != 0) {
      rc = g;
    }
  }
  free(c.seen);
  return rc ? rc : c.rc;
}
