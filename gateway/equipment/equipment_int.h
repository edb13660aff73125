/* gateway/equipment, for this folder alone: the daemon's state (one
 * struct equipment per gateway, a unit_t per equipment unit and energy
 * meter, a group_t per [group]) and what its files ask of each other.
 * equipment.h is the room's interface and has the rules; this is how the
 * daemon holds them.
 *
 *   equipment.c       life cycle; the evaluation tick that decides the groups
 *   observe.c         what the controllers' /state and the sensors' packs say
 *   command.c         commands to the controllers, their confirmation,
 *                     retries and "did not follow"; the manual override
 *   persist.c         the queue of rows to storage (a libuv worker writes
 *                     it) and the restore at start-up
 *   equipment_json.c  the API's snapshots
 *
 * Threads: everything here belongs to the loop thread, but for `q`, which
 * persist.c's worker takes under `mu`. */
#ifndef SITEGATE_GW_EQUIPMENT_INT_H
#define SITEGATE_GW_EQUIPMENT_INT_H

#include "gateway/equipment/equipment.h"

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

typedef struct unit {
  struct equipment *eq;
  const sg_device_t *dev;
  int group; /* index into eq->groups; -1 for energy meters */
  eqp_thresholds_t th;
  energy_acc_t acc;
  double run_s; /* over every day: run-hours */
  /* what the unit is */
  bool known, on;
  bool obs_ok;     /* the /state observation answers */
  bool obs_warned; /* its failure has been logged */
  bool ctl_bad;    /* its URI cannot be used (logged by the front): not controlled */
  double obs_sent; /* last registration, Unix s */
  double power_kw; /* latest, from /state or a reading */
  double power_t;  /* its time */
  double run_kw;   /* average power while running (exponential, recent) */
  double since;    /* last observed switch; 0: unknown */
  eqp_run_t run;
  double idle_since; /* start of the current idle run; 0: not idle */
  int demand;        /* -1 unknown */
  /* what the gateway does with it */
  eqp_hold_t held;
  bool ovr, ovr_on;
  bool ovr_cleared; /* by a person: its expiry is not worth a row */
  double ovr_until, ovr_t;
  char ovr_actor[64], ovr_note[256];
  bool pending, pending_on; /* a command waiting for its confirmation */
  double cmd_t, cmd_first_t;
  stor_eqcmd_t cmd;     /* the audit row of the last command */
  bool wanted, want_on; /* the last state the gateway asked for */
  double quiet_until;
  bool not_following; /* its alarm is raised */
} unit_t;

typedef struct group {
  const sg_group_t *cfg;
  eqp_policy_t pol;
  size_t *members; /* into eq->units */
  size_t n;
  double temp_c; /* what the last decision saw */
  int dust_level;
} group_t;

/* Rows waiting for the storage writer (persist.c). */
typedef struct wq {
  stor_eqcmd_t *cmds;
  size_t n_cmds, cap_cmds;
  stor_energy_row_t *days;
  size_t n_days, cap_days;
  stor_counter_row_t *ctrs;
  size_t n_ctrs, cap_ctrs;
  stor_eqstate_t *states;
  size_t n_states, cap_states;
} wq_t;

struct equipment {
  gw_t *gw;
  const sg_config_t *cfg;
  unit_t *units; /* equipment and energy meters */
  size_t n_units;
  int *unit_of; /* per configured device: its unit, or -1 */
  group_t *groups;
  size_t n_groups;
  double *temp, *temp_t; /* per configured device: latest air temperature */
  carbon_factors_t factors;
  double area_m2;
  int64_t next_cmd_id;
  double next_persist;
  uv_timer_t tick;
  bool tick_open, stopping;
  /* the storage worker (persist.c) */
  uv_work_t work;
  bool busy, failed; /* loop, and the worker before it ends */
  pthread_mutex_t mu;
  wq_t q; /* under mu */
};

/* A unit's group name; "" for an energy meter. */
static inline const char *equipment__group_name(const struct equipment *eq, const unit_t *u) {
  return u->group >= 0 ? eq->groups[u->group].cfg->name : "";
}

/* Whether the gateway switches the unit: in a group, with a usable URI. */
static inline bool equipment__controllable(const unit_t *u) {
  return u->group >= 0 && u->dev->coap[0] != '\0' && !u->ctl_bad;
}

/* ---- equipment.c: the state and its evaluation. Loop thread. */
/* The unit of configured device `id`; NULL when it has none. */
unit_t *equipment__unit_by_id(struct equipment *eq, const char *id);
/* The local hour of `t`, 0..24 (process TZ). Any thread. */
double equipment__local_hour(double t);
/* Decides group `g` (eqp_decide) and sends what changed. */
void equipment__decide_group(struct equipment *eq, group_t *g, double now);

/* ---- observe.c: what the controllers and the sensors say. Loop thread. */
/* Registers (again) the observation of the unit's /state; a URI the front
 * cannot use takes the unit out of control (ctl_bad). */
void equipment__observe(unit_t *u, double now);
/* Registers again each observation due: refreshed when it answers, retried
 * sooner when it does not. */
void equipment__observe_due(struct equipment *eq, double now);
/* Core's pack listener (gw_on_pack, `arg` is the struct equipment). */
void equipment__on_pack(void *arg, const gw_device_t *dev, const proto_pack_t *p);

/* ---- command.c: commands and their confirmation. Loop thread. */
/* Sends PUT /ctl `on` for `reason` ("override" is a person's, with the
 * unit's override actor and note), superseding a command in flight. */
void equipment__send_command(unit_t *u, bool on, const char *reason, double now);
/* Commands in flight: confirmed by now, sent again, or given up. */
void equipment__check_pending(struct equipment *eq, double now);
/* What an observed /state (`on`, `changed` from the last one) means for
 * the unit's commands: followed, followed late, or switched at the unit. */
void equipment__confirm(unit_t *u, bool on, bool changed, double now);
/* An audit row that is not a command (a switch made at the unit, an
 * override cleared or expired), queued as it is. */
void equipment__audit_note(struct equipment *eq, const unit_t *u, bool on, const char *reason,
                           const char *origin, const char *result, double now);

/* ---- persist.c: rows to storage, and back at start-up. */
/* Sets up the queue; 0 or -errno. Before any other call below. */
int equipment__persist_init(struct equipment *eq);
/* Queues an audit row (copied) / the unit's hold and override. Loop thread. */
void equipment__queue_cmd(struct equipment *eq, const stor_eqcmd_t *c);
void equipment__queue_state(struct equipment *eq, const unit_t *u);
/* Queues the daily figures and counters changed since last time. Loop thread. */
void equipment__persist(struct equipment *eq);
/* Reads the stored figures, counters, holds and overrides into the units
 * built from the configuration. 0 or -errno (logged). */
int equipment__restore(struct equipment *eq);
/* Writes what is queued, then the last figures, from the calling thread:
 * only once the loop has run out (no worker runs). */
void equipment__persist_flush(struct equipment *eq);
/* Frees the queue (rows not written are lost) and its mutex. */
void equipment__persist_free(struct equipment *eq);

/* ---- equipment_json.c */
/* The unit as the API shows it (the caller owns it). Loop thread. */
json_t *equipment__unit_json(const struct equipment *eq, const unit_t *u, double now);

#endif
