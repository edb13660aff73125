/* storage: everything that touches the database (the only module that
 * includes sqlite3.h): the gateway's, and at the end of this header the
 * receiver's (sitegate-rx), which is a database of its own.
 *
 * One SQLite file in WAL mode, schema versioned with PRAGMA user_version.
 * A single writer thread owns the read-write connection: the loop thread
 * hands it readings through a bounded queue (stor_append never blocks on
 * disk), and the writer group-commits them at most `batch_ms` after the
 * first of them arrived, or as soon as `batch_readings` are queued,
 * whichever comes first. The per-minute, hourly and daily rollups and the
 * latest values follow within a second or one batch window, whichever is
 * longer (raw readings are the truth: what a crash leaves unrolled is
 * rolled up from raw at open), and ride on the readings' commits;
 * stor_flush and stor_close write them at once. Readers use their own
 * read-only connections (stor_reader_t), one per thread.
 *
 * Durability: synchronous=FULL, so a commit survives a power cut; a reading
 * acknowledged by stor_append() but not yet committed (at most one batch
 * window) is what a crash can lose. */
#ifndef SITEGATE_STORAGE_H
#define SITEGATE_STORAGE_H

#include "protocol/protocol.h" /* tickets and the receiver's HJ 212 messages */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

typedef struct stor_db stor_db_t;
typedef struct stor_reader stor_reader_t;

typedef struct stor_reading {
  uint32_t device;  /* from stor_device_id() */
  uint8_t quantity; /* proto_quantity_t */
  int64_t t_ms;     /* Unix milliseconds */
  double value;     /* canonical unit */
} stor_reading_t;

/* What stor_open is busy with, for a caller that shows it or must prove
 * it is alive meanwhile (sitegated tells systemd, which would otherwise
 * take a long schema migration on a large file for a hung start, kill it
 * and have it start the same migration again). */
typedef struct stor_opening {
  const char *what; /* for a person: "migrating the database to schema 8 of 12" */
  int schema;       /* the schema version being migrated to; 0 in the other steps */
  double step_s;    /* seconds since this step began */
} stor_opening_t;
/* Called on stor_open's thread, inside it: when a step begins (each
 * migration, migration 12's VACUUM, reading back pending readings) and,
 * while SQLite works on it (statements run or the WAL is written), at
 * most every `opening_ms`. A step that stalls (a single call that does not
 * return) calls nothing. `o` is the callee's to read during the call only.
 * It must not call this module; it cannot change or stop the open. */
typedef void (*stor_opening_fn)(void *arg, const stor_opening_t *o);

typedef struct stor_options {
  const char *path;
  int batch_ms;               /* longest wait before queued readings are committed */
  size_t batch_readings;      /* queued readings that start a commit before batch_ms ends */
  size_t queue_max;           /* readings the queue holds before stor_append refuses */
  int raw_days;               /* raw readings older than this are deleted */
  int64_t max_page_count;     /* 0: none; tests use it to simulate a full disk */
  stor_opening_fn on_opening; /* NULL: none */
  void *opening_arg;          /* on_opening's */
  int opening_ms;             /* on_opening's least interval within a step; 0: 1000 */
} stor_options_t;

/* Upper bounds of the commit-duration buckets, ms (stor_stats_t). */
#define STOR_COMMIT_BUCKETS 10
extern const double STOR_COMMIT_BOUNDS_MS[STOR_COMMIT_BUCKETS];

typedef struct stor_stats {
  size_t queued; /* readings waiting for the writer */
  size_t queue_max;
  uint64_t committed;    /* readings committed since open */
  uint64_t duplicates;   /* readings ignored as already stored */
  uint64_t batches;      /* transactions committed */
  double last_commit_ms; /* duration of the last commit */
  bool disk_full;        /* the last commit failed for lack of space */
  /* Commit durations since open, for /metrics: commit_le[i] counts those
   * that took at most STOR_COMMIT_BOUNDS_MS[i] (cumulative, as Prometheus
   * histogram buckets are); commit_ms_sum is their total. */
  uint64_t commit_le[STOR_COMMIT_BUCKETS];
  double commit_ms_sum;
} stor_stats_t;

/* Opens (creating and migrating as needed) and starts the writer thread.
 * Returns 0 or a negative errno; the reason is logged. -ENOTSUP: the file
 * was written by a newer sitegate (its schema version is unknown here);
 * -EINVAL: it is another program's SQLite file; -EIO: not a database or
 * damaged; -ENOENT/-EACCES: the OS refused the path. */
int stor_open(const stor_options_t *opt, stor_db_t **out);

/* Drains the queue, commits, stops the writer and closes. Accepts NULL. */
void stor_close(stor_db_t *db);

/* One instance per database: takes an fcntl lock on `db_path`.lock (created
 * beside it, the holder's PID written in it), to be called before anything
 * opens the database, by the process that will write it (sitegated,
 * sitegate-rx). The lock is held until stor_unlock(*fd) or the process ends.
 * Returns 0, -EBUSY when another process holds it (its PID in `*holder`,
 * when not NULL and the kernel says; logged), or another negative errno
 * (logged). */
int stor_lock(const char *db_path, int *fd, pid_t *holder);
/* Releases the lock. Accepts -1. */
void stor_unlock(int fd);

/* The stable integer id of a device name, created on first use. Call before
 * ingest starts (it runs a short synchronous transaction on the caller's
 * thread through the writer). Returns 0 or a negative errno. */
int stor_device_id(stor_db_t *db, const char *name, uint32_t *id);
/* The same for `n` names at once, in one transaction (start-up with
 * thousands of devices): ids[i] for names[i]. All or none. */
int stor_device_ids(stor_db_t *db, const char *const *names, size_t n, uint32_t *ids);

/* Queues `n` readings, all or none; they are copied, the caller keeps `r`.
 * Any thread, never blocks on disk. Returns 0; -EAGAIN when the queue has no
 * room for all of them (or stor_close has begun), -ENOSPC while the disk is
 * full (the caller replies 5.03 in both cases); -EINVAL when n is 0 or a
 * reading could never be stored (a device id stor_device_id did not hand
 * out, a quantity outside proto_quantity_t, t_ms < 0, a value that is not
 * finite). A reading with the same device, quantity and time as a stored
 * one (or an earlier one in the queue) is a resend and is ignored. */
int stor_append(stor_db_t *db, const stor_reading_t *r, size_t n);
/* The part of stor_append's -EINVAL that is about the reading itself (the
 * device id only the open database can judge): a quantity in
 * proto_quantity_t, t_ms >= 0, a finite value. Pure, any thread. Returns 0,
 * or -EINVAL with what is wrong in `err` (may be NULL). */
int stor_reading_check(const stor_reading_t *r, char *err, size_t errlen);

/* Returns once everything queued before the call is committed (tests and
 * shutdown). Returns 0, or the negative errno of a commit that failed
 * meanwhile (-ENOSPC...): the readings stay queued and the writer retries
 * them every second by itself. */
int stor_flush(stor_db_t *db);

void stor_get_stats(stor_db_t *db, stor_stats_t *st);

/* Deletes raw readings older than raw_days now (the writer also does it
 * hourly by itself), and minute rollups older than 400 days; hourly and
 * daily rollups are kept. Waits for the whole pass, which the writer runs
 * in short transactions between batches. Returns the number of raw
 * readings deleted or a negative errno. */
int64_t stor_retention_run(stor_db_t *db, int64_t now_ms);

/* ---- reading back, on read-only connections */
typedef enum { STOR_STEP_RAW, STOR_STEP_1M, STOR_STEP_1H, STOR_STEP_1D } stor_step_t;

typedef struct stor_point {
  int64_t t_ms;          /* reading time, or bucket start */
  uint32_t n;            /* 1 for raw */
  double min, max, mean; /* mean of a level (dB) is the energy average */
} stor_point_t;

/* A read-only connection for one thread. -ENOENT when the file or its
 * schema does not exist yet, -ENOTSUP for a newer schema. */
int stor_reader_open(const char *path, stor_reader_t **out);
void stor_reader_close(stor_reader_t *r);
/* Gives back the reader's page cache (up to STOR_READER_CACHE_KIB): for a
 * reader that sits idle between requests or ticks. Its next query reads
 * its pages again, from the kernel's page cache. Same thread rules as a
 * query. */
void stor_reader_trim(stor_reader_t *r);

/* Holds one read transaction on `r` for the queries that follow, till
 * stor_reader_release: they all see the database as it was at the hold
 * (the writer goes on meanwhile; the checkpoint cannot pass the hold, so
 * keep it short: a rule engine's evaluation). And it reads the tail once
 * for the series of the n `devices`: a raw or rollup query of a series
 * otherwise reads the tail packs of every series in its range (the tail is
 * keyed time first, storage/BLOCKS.md), 3 ms for one of 3,000 series with
 * 54,000 tail rows. At most max_samples readings are kept (16 bytes each,
 * on the heap till the release); the series beyond it are read as without
 * a hold. Unknown devices are skipped. Returns 0, -EBUSY when `r` already
 * holds, or a negative errno (nothing held). */
int stor_reader_hold(stor_reader_t *r, const char *const *devices, size_t n, size_t max_samples);
/* Ends a hold. Accepts NULL and a reader that holds nothing. */
void stor_reader_release(stor_reader_t *r);

/* Points of one device's quantity with since_ms <= t < until_ms, oldest
 * first, at most `limit`. Daily buckets start at local midnight (the process's
 * TZ). `*out` is malloc'ed and freed by the caller (NULL when n is 0).
 * Returns 0, -ENOENT for an unknown device, or a negative errno. */
int stor_query(stor_reader_t *r, const char *device, int quantity, stor_step_t step,
               int64_t since_ms, int64_t until_ms, size_t limit, stor_point_t **out, size_t *n);

/* Latest reading of each (device, quantity), for status pages. The callback
 * is called once per series; return non-zero from it to stop. */
typedef int (*stor_latest_cb)(void *arg, const char *device, int quantity, int64_t t_ms,
                              double value);
int stor_latest(stor_reader_t *r, stor_latest_cb cb, void *arg);

/* Readings stored (exact: a counter kept in the commit's transaction) and
 * database bytes (page_count * page_size of the main file, WAL excluded),
 * for status and benchmarks. Either pointer may be NULL. */
int stor_reader_counts(stor_reader_t *r, int64_t *raw_rows, int64_t *db_bytes);

/* ======================================================================
 * ---- alarms (storage/alarms.c). The model and its rules are in
 * gateway/rules/rules.h; storage keeps each alarm's latest state (table
 * `alarm`) and its history of events (table `alarm_event`). */
#define STOR_ALARM_NAME_MAX 48 /* rule and source, with the NUL */

typedef struct stor_alarm {
  int64_t id;
  char rule[STOR_ALARM_NAME_MAX];   /* "noise.laeq" */
  char source[STOR_ALARM_NAME_MAX]; /* device, group or site id */
  char unit[16];
  char message[256];
  int level;                       /* 1 warning, 2 alarm; 0 once cleared */
  int peak_level;                  /* the highest level it reached */
  double figure, limit;            /* last reported figure, threshold of the level */
  double peak;                     /* worst figure while active */
  double data_t;                   /* time the figure refers to, Unix s */
  double raised, updated, cleared; /* Unix s; cleared is 0 while active */
  double acked;                    /* Unix s, 0: not acknowledged */
  char acked_by[64];
  char note[256];
  bool low_is_bad;
} stor_alarm_t;

typedef struct stor_alarm_event {
  stor_alarm_t alarm; /* the alarm as the event left it */
  int kind;           /* alarm_ev_t: 0 raised, 1 escalated, 2 deescalated, 3 cleared, 4 acked */
  double t;           /* Unix s */
} stor_alarm_event_t;

/* Stores `n` events in order, each with its alarm's new state, in one
 * transaction on the writer's connection, and returns once it is committed
 * (synchronous=FULL). It waits for the writer: call it from a worker
 * thread, never the loop thread. Returns 0 or a negative errno. */
int stor_alarm_write(stor_db_t *db, const stor_alarm_event_t *ev, size_t n);

typedef int (*stor_alarm_cb)(void *arg, const stor_alarm_t *a);
/* Calls cb for each active alarm (not cleared), oldest first, and sets
 * *max_id (may be NULL) to the largest id ever stored (0: none). cb
 * returning non-zero stops. Returns 0 or a negative errno. */
int stor_alarm_active(stor_reader_t *r, stor_alarm_cb cb, void *arg, int64_t *max_id);
/* Alarms raised, updated or cleared at or after `since` (Unix s), newest
 * first, at most `limit`; `active_only` keeps those not cleared. */
int stor_alarm_history(stor_reader_t *r, double since, bool active_only, size_t limit,
                       stor_alarm_cb cb, void *arg);
/* One alarm by id: 0, -ENOENT, or a negative errno. */
int stor_alarm_get(stor_reader_t *r, int64_t id, stor_alarm_t *out);
/* The events of alarm `id`, oldest first. `by` and `note` are "" except
 * for acknowledgements. */
typedef int (*stor_alarm_event_cb)(void *arg, int kind, double t, int level, double figure,
                                   double limit, const char *by, const char *note);
int stor_alarm_events(stor_reader_t *r, int64_t id, stor_alarm_event_cb cb, void *arg);

/* ======================================================================
 * ---- waste and material ledger (storage/ledger.c)
 *
 * Every weighing ticket, delivery and correction is one row of table
 * `ledger`, append-only and hash-chained: entry N stores
 *   hash_N = SHA-256(hash_{N-1} || canonical_N)      (hash_0 = 32 zero bytes)
 * where canonical_N is the entry as compact JSON with every field in a
 * fixed order (ledger.c, canonical()). A correction never changes a row:
 * it appends a reversal (every weight negated, same weighing time, so sums
 * over any period cancel) and optionally a replacement, both referring to
 * the corrected entry. Table `ledger_head` repeats the count and last hash
 * so that rows cut off the end are noticed too. */
#define STOR_TICKET_TEXT 257 /* free text: 64 characters of UTF-8, NUL */

typedef struct stor_ticket {
  int64_t id;                            /* set by the ledger */
  char source[12];                       /* "scale", "manual" or "correction" */
  char type[12];                         /* "waste", "delivery" or "return" */
  char scale[48];                        /* "" when the entry has no scale */
  int64_t no;                            /* the scale's ticket number; 0: none */
  int64_t t;                             /* weighing time, Unix seconds */
  char plate[68];                        /* "" when unknown */
  char dir[4];                           /* "out" or "in" */
  bool weighed;                          /* gross_kg and tare_kg are set */
  int64_t gross_kg, tare_kg;             /* negated in a reversal */
  int64_t net_kg;                        /* negated in a reversal */
  char category[16], kind[16], dest[16]; /* waste; "" otherwise (kind may be "") */
  char dest_name[STOR_TICKET_TEXT], carrier[STOR_TICKET_TEXT];
  char material[32]; /* deliveries and returns; "" otherwise */
  bool green_cert;
  int64_t corrects; /* the entry this one corrects; 0: none */
  bool reversal;    /* this entry cancels `corrects` */
  char note[STOR_TICKET_TEXT];
  int64_t received_ms;        /* when the ledger stored it (set by the ledger) */
  uint8_t prev[32], hash[32]; /* set by the ledger */
} stor_ticket_t;

/* What became of a ticket or a correction. */
enum {
  STOR_TICKET_CREATED = 0, /* stored now: CoAP 2.01 */
  STOR_TICKET_SAME = 1,    /* this scale's ticket number is stored with the same content: 2.04 */
};
typedef struct stor_ticket_result {
  int status;       /* STOR_TICKET_*, or -EEXIST (the scale's ticket number is stored with
                     * other content: 4.09), -ENOENT, -EALREADY, -EINVAL (corrections), or
                     * another negative errno when storage failed */
  int64_t id;       /* the entry (a correction's reversal); for -EEXIST and -EALREADY, the
                     * entry already stored (its correction) */
  int64_t id2;      /* a correction's replacement; 0: none */
  uint8_t hash[32]; /* of `id2` if set, else of `id` */
} stor_ticket_result_t;

/* Called exactly once per submission ON THE WRITER THREAD after the commit
 * is durable (synchronous=FULL) or has failed. It must not wait for the
 * writer (no blocking stor_* call); hand the result to your own thread. */
typedef void (*stor_ticket_cb)(void *arg, const stor_ticket_result_t *res);

/* Queues ticket `t` (copied; id, received_ms, prev, hash are ignored) for
 * its own synchronous commit on the writer thread and returns at once; any
 * thread, never blocks on disk. When `t` has a scale and a number already
 * stored, nothing is written and cb learns STOR_TICKET_SAME or -EEXIST.
 * Returns 0 (cb will be called), -EINVAL for a ticket the schema cannot
 * hold, or -ENOMEM / -ESHUTDOWN (cb will not be called). */
int stor_ticket_submit(stor_db_t *db, const stor_ticket_t *t, stor_ticket_cb cb, void *arg);
/* A decoded ticket (protocol.h) as a ledger entry; `source` is "scale",
 * "manual" or "correction". */
void stor_ticket_from_proto(const proto_ticket_t *p, const char *source, stor_ticket_t *out);
/* What stor_ticket_submit's -EINVAL judges: whether the schema can hold
 * `t`. Pure, any thread. Returns 0, or -EINVAL with what is wrong in `err`
 * (may be NULL), naming the field. */
int stor_ticket_check(const stor_ticket_t *t, char *err, size_t errlen);

/* Queues a correction of entry `id`: a reversal and, when `replacement` is
 * not NULL, the replacement (its corrects/reversal fields are set here),
 * both with `note` (required) and in one transaction. cb gets
 * STOR_TICKET_CREATED, -ENOENT (no such entry), -EINVAL (a reversal cannot
 * be corrected) or -EALREADY (corrected before; id is that reversal).
 * Returns as stor_ticket_submit(). */
int stor_ticket_correct_submit(stor_db_t *db, int64_t id, const stor_ticket_t *replacement,
                               const char *note, stor_ticket_cb cb, void *arg);

/* The same two, waiting for the result (for threads that may block, like
 * the HTTP threads; never the loop thread). Return 0 with *res filled, or
 * the submission's negative errno. */
int stor_ticket_commit(stor_db_t *db, const stor_ticket_t *t, stor_ticket_result_t *res);
int stor_ticket_correct(stor_db_t *db, int64_t id, const stor_ticket_t *replacement,
                        const char *note, stor_ticket_result_t *res);

/* ---- ledger reads (read-only connections) */
typedef int (*stor_ticket_row_cb)(void *arg, const stor_ticket_t *t);
/* Entries with since_t <= t < until_t (weighing time, Unix seconds) in id
 * order, at most `limit`; cb returning non-zero stops. */
int stor_ticket_list(stor_reader_t *r, int64_t since_t, int64_t until_t, size_t limit,
                     stor_ticket_row_cb cb, void *arg);
/* One entry; -ENOENT when there is none. */
int stor_ticket_get(stor_reader_t *r, int64_t id, stor_ticket_t *out);

/* Net kilograms per (type, category, kind, dest, material, green_cert) over
 * since_t <= t < until_t, reversals included (they are negative). Strings
 * are "" when absent. */
typedef int (*stor_ledger_sum_cb)(void *arg, const char *type, const char *category,
                                  const char *kind, const char *dest, const char *material,
                                  bool green_cert, int64_t net_kg, int64_t entries);
int stor_ledger_sums(stor_reader_t *r, int64_t since_t, int64_t until_t, stor_ledger_sum_cb cb,
                     void *arg);

/* Net kilograms and entries (a reversal counts -1) per carrier or per
 * receiving facility, of waste that left the site (not reused on site), for
 * the public disclosure. `what` is "carrier" or "dest_name". */
typedef int (*stor_ledger_name_cb)(void *arg, const char *name, int64_t net_kg, int64_t entries);
int stor_ledger_names(stor_reader_t *r, const char *what, int64_t since_t, int64_t until_t,
                      stor_ledger_name_cb cb, void *arg);

/* Walks the chain. Returns 0 when every entry's hash matches its contents
 * and its predecessor, -EBADMSG with the first broken entry and why, or a
 * negative errno. */
typedef struct stor_verify {
  int64_t entries;  /* checked */
  int64_t bad_id;   /* first broken entry, 0 when intact */
  char reason[256]; /* for a person */
  uint8_t head[32]; /* hash of the last good entry */
} stor_verify_t;
int stor_ledger_verify(stor_reader_t *r, stor_verify_t *out);

/* ---- construction progress ([site] progress, then `sitectl site
 * progress`): a history, so the projection can use the recent rate. */
/* Appends a value (0-1) at time t (Unix s); waits for the writer. */
int stor_progress_set(stor_db_t *db, double t, double progress);
/* The same, but only when no value was ever stored (the configured
 * initial one at start-up). Sets *stored to whether it did. */
int stor_progress_seed(stor_db_t *db, double t, double progress, bool *stored);
typedef int (*stor_progress_cb)(void *arg, double t, double progress);
/* Every stored value, oldest first. */
int stor_progress_list(stor_reader_t *r, stor_progress_cb cb, void *arg);

/* ---- bill of quantities: design net quantity per material, in t */
typedef struct stor_boq_item {
  char material[32];
  double net_t;
  char description[128];
} stor_boq_item_t;
/* Replaces the whole bill (a revised one supersedes the last) at time t;
 * waits for the writer. */
int stor_boq_replace(stor_db_t *db, const stor_boq_item_t *items, size_t n, double t);
typedef int (*stor_boq_cb)(void *arg, const stor_boq_item_t *item, double imported);
int stor_boq_list(stor_reader_t *r, stor_boq_cb cb, void *arg);

/* ======================================================================
 * ---- equipment: command audit trail, daily energy, control state
 * (storage/equipment.c; the rules are gateway/equipment/equipment.h's).
 *
 * `eq_command` is the audit trail: one row per command the gateway sent
 * (or per switch a unit made on its own, origin "local"), updated with its
 * outcome; ids are handed out by the gateway. `energy_day` holds each
 * unit's figures per local day, `energy_counter` the last counter reading
 * (so a restart continues the count), `eq_state` what the gateway holds
 * a unit off for and any manual override, so both survive a restart. The
 * gateway keeps the current values in memory and writes them here; the
 * rows are its latest copy, replaced whole. */
#define STOR_EQ_NAME 48 /* unit and group ids, with the NUL */

typedef struct stor_eqcmd {
  int64_t id;
  double t; /* sent (or seen, for "local"), Unix s */
  char unit[STOR_EQ_NAME], grp[STOR_EQ_NAME];
  bool on;         /* switch on (true) or off */
  char reason[32]; /* "peak-cap", "idle", "override", ... */
  char origin[16]; /* "policy", "override", "local" */
  char actor[64];  /* who set an override; "" otherwise */
  char note[256];  /* the reason a person gave; "" otherwise */
  int attempts;    /* commands sent for it */
  char result[16]; /* commands: "sent", "followed", "followed-late", "not-followed",
                    * "refused", "no-answer", "superseded"; others: "done" (switched at
                    * the unit), "expired", "cleared" (overrides) */
  double result_t; /* when the result was known; 0 while "sent" */
} stor_eqcmd_t;

typedef struct stor_energy_row {
  char unit[STOR_EQ_NAME];
  double day; /* local midnight, Unix s */
  double kwh, fuel_l, run_s, idle_s, off_s, idle_kwh;
} stor_energy_row_t;

typedef struct stor_counter_row {
  char unit[STOR_EQ_NAME];
  int quantity; /* proto_quantity_t: energy or fuel */
  double value, t;
  uint32_t rollovers, resets, jumps;
} stor_counter_row_t;

typedef struct stor_eqstate {
  char unit[STOR_EQ_NAME];
  int held;         /* eqp_hold_t */
  bool ovr, ovr_on; /* a manual override, and its state */
  double ovr_until, ovr_t;
  char ovr_actor[64], ovr_note[256];
} stor_eqstate_t;

typedef struct stor_eq_write {
  const stor_eqcmd_t *cmds;
  size_t n_cmds;
  const stor_energy_row_t *days;
  size_t n_days;
  const stor_counter_row_t *counters;
  size_t n_counters;
  const stor_eqstate_t *states;
  size_t n_states;
} stor_eq_write_t;

/* Replaces the given rows (by id, by unit and day, by unit and quantity,
 * by unit) in one transaction on the writer's connection and returns once
 * it is committed. It waits for the writer: call it from a worker thread,
 * never the loop thread. Returns 0 or a negative errno. */
int stor_equipment_write(stor_db_t *db, const stor_eq_write_t *w);

/* Reads everything the gateway restores at start-up (a short synchronous
 * read): every energy_day row (oldest first), every counter, every state,
 * and the largest command id in *max_cmd_id. A callback returning non-zero
 * stops. Callbacks may be NULL. */
typedef struct stor_eq_load {
  int (*day)(void *arg, const stor_energy_row_t *r);
  int (*counter)(void *arg, const stor_counter_row_t *r);
  int (*state)(void *arg, const stor_eqstate_t *s);
  void *arg;
} stor_eq_load_t;
int stor_equipment_load(stor_reader_t *r, const stor_eq_load_t *cb, int64_t *max_cmd_id);

/* Audit rows with t >= since, newest first, at most `limit`; only `unit`'s
 * when it is not NULL. */
typedef int (*stor_eqcmd_cb)(void *arg, const stor_eqcmd_t *c);
int stor_equipment_log(stor_reader_t *r, double since, const char *unit, size_t limit,
                       stor_eqcmd_cb cb, void *arg);

/* ======================================================================
 * ---- uplink outbox (storage/outbox.c; the uplink is gateway/uplink*.c,
 * the wire contract protocol/UPLINK.md).
 *
 * Every message for the authority is a row of table `outbox` before it is
 * sent: its frames exactly as they go on the wire ("##...\r\n", one per
 * packet), its QN, CN, class and DataTime. Rows are sent in id order and
 * stay pending until the 9014 with their QN is committed here (acked_ms).
 * Acknowledged rows are kept for history pulls (2011/2051/2061/2031 by
 * DataTime, 6081 by Seq): environmental ones for `keep_days`, signed ones
 * for good (a ledger record per weighing is small).
 *
 * The bound: when an add leaves more than `max_pending` rows pending, the
 * oldest pending real-time (2011) rows are dropped until it does not;
 * minute, hour and day data, signed messages (ledger records, alarms,
 * energy, seals) and restarts are never dropped, so with no real-time row
 * left the outbox may grow past the bound (the add says so). Drops are
 * counted per class in the state table.
 *
 * `outbox_state` holds the uplink's named values (what has been made up to
 * where, the signing chain's head) so they change in the same transaction
 * as the rows they describe: a crash never makes a message twice or skips
 * one. */
typedef enum {
  STOR_OB_RTD,    /* 2011 real-time data: may be dropped */
  STOR_OB_MINUTE, /* 2051 */
  STOR_OB_HOUR,   /* 2061 */
  STOR_OB_DAY,    /* 2031 */
  STOR_OB_SIGNED, /* our 6011-6041, with a chain Seq */
  STOR_OB_OTHER,  /* 2081 restarts and the like */
  STOR_OB_CLASSES
} stor_ob_class_t;

/* "rtd", "minute", "hour", "day", "signed", "other"; "?" out of range. */
const char *stor_outbox_class_name(int cls);

typedef struct stor_ob_msg {
  int64_t id; /* set by the outbox (ignored by stor_outbox_add) */
  char qn[24];
  char cn[8];
  int cls;            /* stor_ob_class_t */
  int64_t t;          /* DataTime, Unix seconds */
  int64_t seq;        /* chain Seq of a signed message; 0 for others */
  const char *frames; /* the frames as sent, "##...\r\n" each */
  size_t frames_len;
  int64_t made_ms;  /* when it was made, Unix ms */
  int64_t acked_ms; /* read back: 0 while pending */
} stor_ob_msg_t;

/* A named value of outbox_state: text when `s` is not NULL, else `i`. */
typedef struct stor_ob_var {
  const char *name;
  int64_t i;
  const char *s;
} stor_ob_var_t;

typedef struct stor_ob_added {
  int64_t first_id, last_id; /* ids given to the messages */
  int64_t pending;           /* rows pending after the add (and any drop) */
  size_t dropped;            /* real-time rows dropped by this add */
  bool over;                 /* still more than max_pending: nothing left to drop */
} stor_ob_added_t;

/* Appends `n` messages (copied) in order and sets `nvars` state values, in
 * one transaction on the writer's connection with synchronous=FULL, then
 * applies the bound (max_pending 0: none). Waits for the writer: a worker
 * thread, never the loop. `out` may be NULL. Returns 0, -EEXIST when a QN
 * or Seq is already stored (nothing is written), -EINVAL, or another
 * negative errno (-ENOSPC: disk full; nothing is written). */
int stor_outbox_add(stor_db_t *db, const stor_ob_msg_t *m, size_t n, const stor_ob_var_t *vars,
                    size_t nvars, int64_t max_pending, stor_ob_added_t *out);

/* Marks the messages acknowledged at now_ms (ids not pending are skipped)
 * and remembers now_ms as the last acknowledgement. Waits for the writer.
 * Returns 0 or a negative errno; *acked (may be NULL) counts rows marked. */
int stor_outbox_ack(stor_db_t *db, const int64_t *ids, size_t n, int64_t now_ms, size_t *acked);

/* Deletes acknowledged unsigned rows acknowledged before `before_ms`, in
 * short transactions. Waits for the writer. Returns the rows deleted or a
 * negative errno. */
int64_t stor_outbox_retention(stor_db_t *db, int64_t before_ms);

/* Sets state values outside an add. Waits for the writer. */
int stor_outbox_set(stor_db_t *db, const stor_ob_var_t *vars, size_t nvars);

/* ---- outbox reads (read-only connections). The message passed to a
 * callback, frames included, is valid during the call only; returning
 * non-zero stops. */
typedef int (*stor_ob_cb)(void *arg, const stor_ob_msg_t *m);
/* Pending rows with id > after_id, in id order, at most `limit`. */
int stor_outbox_pending(stor_reader_t *r, int64_t after_id, size_t limit, stor_ob_cb cb, void *arg);
/* Rows of CN `cn` with since_t <= t <= until_t, acknowledged or not, in QN
 * order, at most `limit` (a history pull). */
int stor_outbox_history(stor_reader_t *r, const char *cn, int64_t since_t, int64_t until_t,
                        size_t limit, stor_ob_cb cb, void *arg);
/* Signed rows with begin <= seq <= end, in Seq order (a 6081 pull). */
int stor_outbox_by_seq(stor_reader_t *r, int64_t begin, int64_t end, size_t limit, stor_ob_cb cb,
                       void *arg);
/* The 2011, 2051 and 2061 rows with t0 <= t < t1 in QN order: what an
 * hourly seal covers (UPLINK.md 6041). */
int stor_outbox_env_frames(stor_reader_t *r, int64_t t0, int64_t t1, stor_ob_cb cb, void *arg);
/* A state value: 0, or -ENOENT when it was never set. `s` (may be NULL)
 * receives text values. */
int stor_outbox_get(stor_reader_t *r, const char *name, int64_t *i, char *s, size_t cap);

typedef struct stor_ob_stats {
  int64_t pending[STOR_OB_CLASSES];
  int64_t dropped[STOR_OB_CLASSES];            /* ever, by the bound */
  int64_t pending_total, rows;                 /* pending, and every row kept */
  int64_t oldest_id, oldest_made_ms, oldest_t; /* the oldest pending row; 0 when none */
  char oldest_qn[24], oldest_cn[8];
  int64_t last_ack_ms; /* 0: never */
  char last_qn[24];    /* the largest QN ever made ("" none) */
} stor_ob_stats_t;
int stor_outbox_stats(stor_reader_t *r, stor_ob_stats_t *st);

/* ---- what the uplink reads to make its signed messages */
typedef struct stor_ob_alarm_ev {
  int64_t seq, alarm;
  int kind;                        /* alarm_ev_t: 0 raised ... 4 acked */
  int level;                       /* after the event: 1 warning, 2 alarm, 0 cleared */
  int peak_level;                  /* the highest level the alarm reached */
  double t, figure, limit, data_t; /* figure and limit NAN when unknown */
  char rule[STOR_ALARM_NAME_MAX], source[STOR_ALARM_NAME_MAX], unit[16];
} stor_ob_alarm_ev_t;
/* Alarm events with seq > after_seq, in order, at most `limit`. */
int stor_outbox_alarm_events(stor_reader_t *r, int64_t after_seq, size_t limit,
                             int (*cb)(void *arg, const stor_ob_alarm_ev_t *e), void *arg);
/* The energy_day rows of local day `day` (its midnight, Unix s), by unit. */
int stor_outbox_energy_day(stor_reader_t *r, int64_t day,
                           int (*cb)(void *arg, const stor_energy_row_t *row), void *arg);

/* ---- non-road mobile machinery (storage/machinery.c; the rules are
 * gateway/machinery/machinery.h's). The register (one row per
 * registration code, kept when retired), its audit trail (every change
 * with who and why, in the change's transaction) and the entries and
 * exits. Writes are short requests on the writer's connection: the
 * _commit and register functions wait for them and are for the HTTP
 * threads, never the loop; stor_move_submit does not wait. */
typedef struct stor_machine {
  proto_machine_t m;
  double added, changed; /* Unix s */
  double retired;        /* Unix s; 0 while in the register */
} stor_machine_t;

#define STOR_MACHINE_ACTOR_MAX 63
#define STOR_MACHINE_REASON_MAX 255
typedef struct stor_machine_audit {
  int64_t id;
  double t;
  char code[PROTO_MACHINE_CODE_MAX + 1];
  char action[16]; /* add, change, import, retire */
  char actor[STOR_MACHINE_ACTOR_MAX + 1];
  char reason[STOR_MACHINE_REASON_MAX + 1];
  char detail[512];    /* the row after the change, "type=... stage=..." */
  bool has_row;        /* `row` holds the register's row after the change */
  proto_machine_t row; /* (not for a retirement) */
} stor_machine_audit_t;

/* Adds (`add`: -EEXIST when the code is in the register; a retired code
 * comes back) or changes (-ENOENT when it is not in the register) one
 * machine, `m` checked with proto_machine_check (-EINVAL), audited as by
 * `actor` for `reason` at `t`. 0 or -errno. Not on the loop. */
int stor_machine_put(stor_db_t *db, const proto_machine_t *m, bool add, const char *actor,
                     const char *reason, double t);
/* Adds or changes the `n` machines of an import in one transaction, each
 * audited ("import"); *added and *changed count them. All or none. */
int stor_machine_import(stor_db_t *db, const proto_machine_t *items, size_t n, const char *actor,
                        const char *reason, double t, size_t *added, size_t *changed);
/* Retires a machine from the register (-ENOENT when it is not in it). */
int stor_machine_retire(stor_db_t *db, const char *code, const char *actor, const char *reason,
                        double t);

/* An entry or exit. A gate's event has its number (no > 0): the same
 * (gate, no) again is a resend, told apart by its content. A person's
 * (no 0) is always new. */
typedef struct stor_move {
  int64_t id; /* set when stored */
  char gate[PROTO_DEVICE_MAX + 1];
  int64_t no;
  char code[PROTO_MACHINE_CODE_MAX + 1];
  bool in;
  double t;        /* Unix s */
  char source[16]; /* "gate", "sitectl" */
  char actor[STOR_MACHINE_ACTOR_MAX + 1];
  double received; /* Unix s */
} stor_move_t;
enum { STOR_MOVE_CREATED = 1, STOR_MOVE_SAME = 2 };
typedef struct stor_move_result {
  int status; /* STOR_MOVE_CREATED, STOR_MOVE_SAME, -EEXIST (other content), -errno */
  int64_t id; /* the stored row (also for -EEXIST) */
} stor_move_result_t;
/* Stores `mv` and waits: 0 with res filled (its status may be -EEXIST),
 * or -errno. Not on the loop. */
int stor_move_commit(stor_db_t *db, const stor_move_t *mv, stor_move_result_t *res);
/* The same without waiting: cb(arg, res) runs on the writer thread (it
 * must not wait for the writer; post to the loop). `mv` is copied.
 * Returns 0, -ENOMEM or -ESHUTDOWN (cb is then not called). */
typedef void (*stor_move_cb)(void *arg, const stor_move_t *mv, const stor_move_result_t *res);
int stor_move_submit(stor_db_t *db, const stor_move_t *mv, stor_move_cb cb, void *arg);

/* ---- machinery reads (read-only connections); callbacks return non-zero
 * to stop. */
typedef int (*stor_machine_cb)(void *arg, const stor_machine_t *m);
/* The register by code; retired machines too when `retired`. */
int stor_machine_list(stor_reader_t *r, bool retired, stor_machine_cb cb, void *arg);
/* One machine, retired or not: 0, -ENOENT or -errno. */
int stor_machine_get(stor_reader_t *r, const char *code, stor_machine_t *out);
/* The audit trail, newest first, of one machine (code) or all (NULL). */
int stor_machine_audit(stor_reader_t *r, const char *code, size_t limit,
                       int (*cb)(void *arg, const stor_machine_audit_t *a), void *arg);
typedef int (*stor_move_row_cb)(void *arg, const stor_move_t *mv);
/* Moves of `code` (NULL: every machine) with since <= t < until, oldest
 * first, at most `limit`. */
int stor_machine_moves(stor_reader_t *r, const char *code, double since, double until, size_t limit,
                       stor_move_row_cb cb, void *arg);
/* For the uplink: audit rows and moves with an id above `after`, in id
 * order (the order they were stored), at most `limit`. */
int stor_machine_audit_after(stor_reader_t *r, int64_t after, size_t limit,
                             int (*cb)(void *arg, const stor_machine_audit_t *a), void *arg);
int stor_machine_moves_after(stor_reader_t *r, int64_t after, size_t limit, stor_move_row_cb cb,
                             void *arg);
/* The latest move of every machine that has one (what the gate last saw). */
int stor_machine_last_moves(stor_reader_t *r, stor_move_row_cb cb, void *arg);

/* ==== the receiver's store (sitegate-rx, authority/), rxstore.c ========
 * A database of its own, apart from the gateway's: what each site sent
 * (frames), its signed ledger chain, its hourly seals, the sites seen and
 * the refusals. authority/ calls only what is declared here (its writer
 * thread, the loop hand-over and all printing stay there). Two back ends,
 * chosen by the target: a file name is SQLite (rxsqlite.c), a libpq URI
 * (postgresql://... or postgres://...) is PostgreSQL (rxpg.c), which any
 * number of receivers may share; the decisions are rxstore.c's, the same
 * for both. One connection per stor_rx_t, used by one thread at a time
 * (the receiver's writer thread); the queries open their own connection. */
typedef struct stor_rx stor_rx_t;

typedef enum {
  STOR_RX_STORED,    /* new, durably stored */
  STOR_RX_DUPLICATE, /* already stored: acknowledge again */
  STOR_RX_REFUSED,   /* not stored: the reason says why */
  STOR_RX_FAILED,    /* the database failed: no acknowledgement, the gateway resends */
} stor_rx_outcome_t;

/* One whole message (all packets of a QN), already checked for CRC, MN and
 * signature by the caller, who allocates and frees it. `packets` holds the
 * data segments of PNO 1..n, each followed by CRLF, one after another; `cp`
 * the reassembled CP. */
typedef struct stor_rx_msg {
  char mn[HJ212_MN_MAX + 1];
  char qn[HJ212_QN_MAX + 1];
  char cn[HJ212_CN_MAX + 1];
  char st[HJ212_ST_MAX + 1];
  char pw[HJ212_PW_MAX + 1];
  int flag;
  int64_t t;     /* DataTime as Unix seconds, or -1 */
  int64_t rx_ms; /* when it arrived */
  int npackets;
  char *packets; /* data segments, "...\r\n" each */
  size_t packets_len;
  char *cp;
  size_t cp_len;
  bool is_signed; /* verified by the caller: Hash and Sig */
  hj212_signed_t sig;
  char cert_fp[65];
  /* filled by stor_rx_decide() */
  stor_rx_outcome_t outcome;
  char reason[192];
  const char *refusal;          /* REFUSED: "chain" or "seal" (static), for counting */
  uint64_t gap_begin, gap_end;  /* a ledger gap to pull with 6081 (begin 0: none) */
  char pull_cns[32];            /* history to pull, "2051" or "2011,2051,2061" ("" none) */
  int64_t pull_begin, pull_end; /* its time range, Unix seconds, inclusive */
  void *owner;                  /* the caller's, never read by storage */
} stor_rx_msg_t;

/* True when `target` names a PostgreSQL database (a libpq URI). */
bool stor_rx_is_pg(const char *target);
/* `target` fit for a log line: a URI's password becomes ***. */
void stor_rx_redact(const char *target, char *out, size_t outlen);

/* Opens (creating and migrating) the receiver's database read-write; a
 * commit is durable (SQLite synchronous=FULL; PostgreSQL's own WAL).
 * Returns 0, or a negative errno with the reason logged. The caller closes
 * it with stor_rx_close(), which accepts NULL. */
int stor_rx_open(const char *target, stor_rx_t **out);
const char *stor_rx_backend(const stor_rx_t *db); /* "SQLite", "PostgreSQL" */
void stor_rx_close(stor_rx_t *db);

/* A transaction around a batch: stor_rx_begin(), any number of the three
 * calls below, stor_rx_commit(); after any failure, stor_rx_rollback() and
 * nothing of the batch is stored. Each returns 0, or a negative errno with
 * the database's reason in stor_rx_error() (and logged): -EAGAIN when the
 * database asks for the batch again (a deadlock between receivers, a race
 * another receiver won): roll back and run the same batch again;
 * -ENOTCONN when the connection to the database is lost: roll back, and
 * the next stor_rx_begin() reconnects (or fails with -ENOTCONN again). */
int stor_rx_begin(stor_rx_t *db);
/* Optional, right after stor_rx_begin(): the batch's messages, so the back
 * end locks their sites and asks what deciding them needs at once (one
 * round trip on PostgreSQL instead of several per message). The calls that
 * follow may then return before the database answered: a failure shows at
 * a later call or at stor_rx_commit(), and fails the whole batch. */
int stor_rx_prefetch(stor_rx_t *db, stor_rx_msg_t *const *msgs, size_t n);
int stor_rx_commit(stor_rx_t *db);
void stor_rx_rollback(stor_rx_t *db); /* keeps stor_rx_error() */
/* The last failure's reason, "not an error" when none; valid until the
 * next call on `db`. */
const char *stor_rx_error(const stor_rx_t *db);

/* Decides `m` inside the transaction, under a lock on its site held until
 * the end of the transaction, and stores it when new: a duplicate of
 * a stored QN or ledger Seq, the next link of the site's chain, or after a
 * gap (m->gap_begin/gap_end say what to pull); a 6041 seal is checked
 * against the stored frames of its hour, and an incomplete hour or a missed
 * minute sets m->pull_*. Sets m->outcome (STORED, DUPLICATE or REFUSED with
 * m->reason); `m` stays the caller's. Returns 0 or a negative errno. */
int stor_rx_decide(stor_rx_t *db, stor_rx_msg_t *m);
/* Records a refusal (who, why, the frame; `frame` may be NULL) at `at_ms`,
 * Unix milliseconds. The strings are copied. */
int stor_rx_refusal(stor_rx_t *db, const char *mn, const char *peer, const char *reason,
                    const char *frame, int64_t at_ms);
/* A site completed a handshake at `at_ms` (kept to the second). */
int stor_rx_seen(stor_rx_t *db, const char *mn, const char *subject, int64_t at_ms);

/* The backfill (protocol/RX-SCHEMA.md "Frames stored before their
 * tables"): frames stored before a decoded table existed get its rows
 * afterwards, rebuilt from the frames and decoded as if they had just come
 * (signed records only when the ledger holds them; the ledger is not
 * touched), a row already there kept. */
typedef struct stor_rx_backfill {
  int64_t messages;   /* decoded in this step */
  int64_t rows;       /* rows they gave (stored, or there already) */
  int64_t skipped;    /* that could not be rebuilt (logged; their frames keep them) */
  int64_t done, upto; /* frame ids: every table decoded up to `done`, of `upto` */
  bool finished;      /* nothing is left to decode */
} stor_rx_backfill_t;
/* One bounded step, in a transaction of its own (never inside
 * stor_rx_begin()): at most `max_messages` messages and a bounded range of
 * frame ids, so that the writer's batches wait little. Fills `out`.
 * Returns 0, -EBUSY when another receiver sharing the database is running
 * a step (try again later), or a negative errno with stor_rx_error(). */
int stor_rx_backfill(stor_rx_t *db, int max_messages, stor_rx_backfill_t *out);

/* ---- the receiver's read-only queries, for people. Each opens its own
 * connection on `target` (a file or a URI). A row passed to a callback, strings
 * included, is valid during the call only. Return 0; -ENOENT (cannot
 * open) or -EIO with the reason in `err`, or -EIO with `err` empty when a
 * step failed after rows were passed. */
typedef struct stor_rx_site {
  const char *mn, *subject;
  int64_t last_seen, connections; /* Unix seconds; handshakes */
  int64_t frames;
  bool has_last_frame;
  int64_t last_frame_ms;                             /* received, when has_last_frame */
  int64_t ledger_seq, ledger_pending, ledger_broken; /* seq: the chained end, 0 none */
  int64_t seals_verified, seals_incomplete, seals_mismatch;
  int64_t refused;
} stor_rx_site_t;
/* Every site in MN order, then in `*unknown` the refusals no site was known
 * for (a failed handshake). */
int stor_rx_sites(const char *target, void (*cb)(void *arg, const stor_rx_site_t *s), void *arg,
                  int64_t *unknown, char *err, size_t errlen);

/* Retention of the decoded minute and hour figures (protocol/RX-SCHEMA.md):
 * removes what is older than the `keep_months` Beijing-time months before
 * the one holding `now` (Unix seconds); PostgreSQL drops whole partitions,
 * SQLite deletes rows. `cb` hears each partition or table and the rows it
 * held (PostgreSQL: the planner's estimate). Frames, the ledger and seals
 * are kept. */
int stor_rx_prune(const char *target, int keep_months, int64_t now,
                  void (*cb)(void *arg, const char *what, int64_t rows), void *arg, char *err,
                  size_t errlen);

/* ---- the supervision console's questions (rxreport.c), each one SQL
 * text for both back ends, on a connection of its own. A row comes as
 * `n` columns: their names, their values as text (NULL for SQL NULL) and
 * whether each is a number. The callback returns 0 to go on. */
typedef struct stor_rx_cols {
  int n;
  const char *const *name;
  const char *const *value;
  const bool *is_num;
} stor_rx_cols_t;
typedef int (*stor_rx_row_fn)(void *arg, const stor_rx_cols_t *row);
/* Every site with its state (last upload, chain, seals, refusals) and its
 * figures of the month [t0, t1) (Unix s): noise alarms by day and night
 * (GB 12523-2011: day 06-22 Beijing time), dust episodes, waste and how
 * much went to reuse/recycling/backfill, energy and carbon. */
int stor_rx_report_sites(const char *target, int64_t t0, int64_t t1, stor_rx_row_fn cb, void *arg,
                         char *err, size_t errlen);
/* Site `mn`'s minute PM10 (a34002) and noise (LA) in [t0, t1), in time order. */
int stor_rx_report_series(const char *target, const char *mn, int64_t t0, int64_t t1,
                          stor_rx_row_fn cb, void *arg, char *err, size_t errlen);
/* Site `mn`'s hourly PM10 and noise (rx_env_hour) in [t0, t1), in time order:
 * the console's month chart. */
int stor_rx_report_hours(const char *target, const char *mn, int64_t t0, int64_t t1,
                         stor_rx_row_fn cb, void *arg, char *err, size_t errlen);
/* Site `mn`'s latest `limit` signed records, newest first, each with its
 * verification state and its decoded figures. */
int stor_rx_report_ledger(const char *target, const char *mn, int limit, stor_rx_row_fn cb,
                          void *arg, char *err, size_t errlen);

typedef struct stor_rx_frame {
  int64_t t; /* DataTime, else the second it arrived */
  int64_t received_ms;
  const char *qn, *cn;
  int pno, pnum;
  const char *data; /* the data segment as sent, data_len bytes */
  size_t data_len;
  bool in_ledger; /* a signed message: */
  int64_t ledger_seq;
  const char *ledger_state; /* "chained", "pending", "broken" */
} stor_rx_frame_t;
/* The frames of site `mn` with since <= t < until (Unix seconds) and, when
 * `cn` is not NULL, that CN, in time, QN and PNO order. */
int stor_rx_export(const char *target, const char *mn, int64_t since, int64_t until, const char *cn,
                   void (*cb)(void *arg, const stor_rx_frame_t *f), void *arg, char *err,
                   size_t errlen);

#endif
