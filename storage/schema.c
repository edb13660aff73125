/* The schema and its migrations: one ordered list, version N is entry N-1
 * and sets PRAGMA user_version = N in the same transaction, so a database
 * is always at exactly one known version. Modules that need tables (waste
 * ledger, alarms, outbox) append an entry; a released entry never changes.
 *
 * Readings are the bulk of the file, so their tables are shaped for size:
 * see the measurements above `v1`. */
#define LOG_MODULE "storage"
#include "common/common.h"
#include "storage/storage_int.h"

#include <errno.h>
#include <libgen.h>
#include <stdio.h>
#include <sys/statvfs.h>

/* 0x53475445, "SGTE": tells a sitegate database from another program's
 * SQLite file. */
#define STOR_APPLICATION_ID 1397183557

/* Version 11's rollup table `t`, its rows moved in (see there). */
#define ROLL_V11(t)                                                                                \
  "CREATE TABLE " t "_11("                                                                         \
  "  series INTEGER NOT NULL, t INTEGER NOT NULL, n INTEGER NOT NULL,"                             \
  "  vmin REAL NOT NULL,"                                                                          \
  "  vmax REAL," /* NULL: vmin */                                                                  \
  "  vsum REAL," /* NULL: vmin for n 1, vmin + vmax for n 2 */                                     \
  "  esum REAL,"                                                                                   \
  "  PRIMARY KEY(series, t)) WITHOUT ROWID;"                                                       \
  "INSERT INTO " t "_11 SELECT series, t, n, vmin, CASE WHEN vmax = vmin THEN NULL ELSE vmax END," \
  "  CASE WHEN (n = 1 AND vsum = vmin) OR (n = 2 AND vsum = vmin + vmax) THEN NULL ELSE vsum END," \
  "  esum FROM " t " ORDER BY series, t;"                                                          \
  "DROP TABLE " t ";"                                                                              \
  "ALTER TABLE " t "_11 RENAME TO " t ";"

/* Version 13's rollup table `t`: the same columns, keyed time first (see
 * there). */
#define ROLL_V13(t)                                                                                \
  "CREATE TABLE " t "_13("                                                                         \
  "  series INTEGER NOT NULL, t INTEGER NOT NULL, n INTEGER NOT NULL,"                             \
  "  vmin REAL NOT NULL, vmax REAL, vsum REAL, esum REAL,"                                         \
  "  PRIMARY KEY(t, series)) WITHOUT ROWID;"                                                       \
  "INSERT INTO " t "_13 SELECT series, t, n, vmin, vmax, vsum, esum FROM " t                       \
  " ORDER BY t, series;"                                                                           \
  "DROP TABLE " t ";"                                                                              \
  "ALTER TABLE " t "_13 RENAME TO " t ";"

/* Version 1: devices, series, raw readings, rollups, latest values (and
 * the application_id, set by stor__migrate).
 *
 * series maps (device, quantity) to a small integer, so a raw row is
 * (series, t ms, v) under PRIMARY KEY(series, t) WITHOUT ROWID: the key
 * clusters each series for range queries and makes a resend (same device,
 * quantity, t) a conflict that INSERT OR IGNORE skips. v has no affinity
 * and holds hundredths as an INTEGER when exact (util.c): 56.3 takes 2
 * bytes instead of 8.
 *
 * Measured with stor_append in 10-reading calls (Debian SQLite 3.40.1,
 * this 2-core VM, synchronous=FULL, queue_max 200000 as the gateway's
 * default; bytes are the file after the close checkpoint over raw rows,
 * every table included; one-decimal values between 30 and 100, like 56.3).
 * The first figures are from the writer as it was before rollups were
 * deferred (batch.c); "now" is with deferred rollups, the WAL written
 * through a buffer (db.c) and an 8 MiB cache:
 *   1,000 devices x 3 quantities, one reading per series per second,
 *   arriving interleaved, 3.6 M readings: 20.2 bytes/reading; 245-295 k
 *   readings/s sustained (runs vary by 15% on this VM), 384 k/s with
 *   queue_max 500000. Under overload a batch is half the queue (the other
 *   half fills while it commits), and each batch dirties about 4.6 pages
 *   per series it touches (a split raw leaf and its neighbours, the minute
 *   row, ...), so bigger batches are cheaper per reading. Now, 3 M
 *   readings: 444-464 k/s (before, the same runs: 306-324 k/s).
 *   With 4 KiB pages: 20.4 bytes, but a 100 k-reading commit writes 38 MB
 *   to the WAL instead of 14, and runs gave 140-285 k/s. With v an 8-byte
 *   REAL: about 25 bytes. A rowid table keyed series << 42 | t: one byte
 *   less, for an opaque key.
 *   100 devices x 3 quantities the same way, 3 M readings: 19.5
 *   bytes/reading, 480 k readings/s.
 *   10,000 devices x 1 quantity, 2 M readings (200 a series), each call
 *   one device's 10 seconds as sitesim sends them: 21.4 bytes/reading;
 *   before, 185-235 k readings/s (median 195 k) and 9.4-10.4 s of CPU;
 *   now 288-385 k/s (median 300 k) and 4.6-6.7 s; with 10 devices a call,
 *   141-193 k/s before, 224-279 k/s now. Here nearly every series of a
 *   batch had its own four rollup and latest upserts, a quarter to a
 *   third of the writer's CPU, and SQLite's two write calls per WAL
 *   frame took a fifth of it (now a twelfth). What remains is the raw
 *   table: a batch of 100 k readings gives each series 10, and its tail
 *   leaf, kept about 83% full by SQLite's balancing, splits nearly every
 *   batch, so a batch writes ~30 MB (3 pages a series) to the WAL, syncs
 *   it, and the checkpointer copies it back. On tmpfs (no waiting for the disk) the
 *   same runs give 410-450 k/s now (250-320 k before): the writer's CPU
 *   would allow 400 k/s, this VM's disk does not. The sitegated bench
 *   (bench/run.sh (c), 10-record CBOR packs from sitesim on the same two
 *   cores): 195-229 k records/s with 5.03 refusals in 4 runs of 5 before,
 *   221-276 k/s and none now (the writer keeps up; the CoAP path and
 *   sitesim take the cores); sitegated's VmHWM 51.6-52.1 MB before,
 *   42.9-43.8 MB now.
 *   1,000 x 3 paced at 3,000 readings/s (a real site's rate): 150
 *   readings a batch, 7-8% of one core before and now, about 2 MB/s
 *   written (WAL and checkpoints; 1.4 times that with 4 KiB pages).
 *   1,000 x 3 with one reading per series per minute: 54.7 bytes/reading,
 *   since each reading then has a per-minute rollup row to itself (kept
 *   400 days, raw rows 31).
 * The writer's page cache (STOR_CACHE_KIB) mattered as much as the schema
 * while every batch touched rollup pages: with 8 MiB instead of 16 the
 * 1,000 x 3 rate dropped to 165-185 k/s. Now batches touch raw pages only
 * (rollup pages once a second) and 8 MiB runs as fast as 16 (10,000 x 1:
 * 278-311 k/s against 287-314 k/s; 4 MiB 3-5% slower), 9 MB less RSS;
 * in the sitegated bench 6 MiB runs as fast as 8 (storage_int.h).
 * Tried and left: writing rollups every 2 or 5 s instead of 1 (no
 * measurable gain); waking the checkpointer at 32,768 WAL pages instead of
 * 8,192 (+8%, for 2.3 MB more RSS and a WAL four times the size);
 * journal_size_limit at the hard WAL size (no gain).
 *
 * Rollups are (series, bucket start in Unix seconds) with count, min, max,
 * sum and, for levels, the energy sum of 10^(0.1 L); NULL otherwise.
 * roll_1m and roll_1h buckets are UTC multiples of 60 and 3600 s; roll_1d
 * buckets start at local midnight of the writer's TZ. They and latest
 * are written late (batch.c; readers add the rest, reader.c), and hold exactly the raw
 * rows of a series with t <= latest.t: newer ones are rolled up from raw
 * at the next open after a crash. (A sitegate older than that rule would
 * not know to, after a crash.)
 *
 * Retention (retention.c): raw rows older than raw_days and minute rollups
 * older than 400 days are deleted; hourly and daily rollups, devices,
 * series and latest values are kept forever. */
static const char *const migrations[] = {
    /* 1 */
    "CREATE TABLE device("
    "  id INTEGER PRIMARY KEY,"
    "  name TEXT NOT NULL UNIQUE);"
    "CREATE TABLE series("
    "  id INTEGER PRIMARY KEY,"
    "  device INTEGER NOT NULL REFERENCES device(id),"
    "  quantity INTEGER NOT NULL," /* proto_quantity_t */
    "  UNIQUE(device, quantity));"
    "CREATE TABLE raw("
    "  series INTEGER NOT NULL,"
    "  t INTEGER NOT NULL," /* Unix ms */
    "  v NOT NULL,"         /* hundredths as INTEGER when exact, else REAL */
    "  PRIMARY KEY(series, t)) WITHOUT ROWID;"
    "CREATE TABLE roll_1m("
    "  series INTEGER NOT NULL,"
    "  t INTEGER NOT NULL," /* bucket start, Unix seconds */
    "  n INTEGER NOT NULL,"
    "  vmin REAL NOT NULL,"
    "  vmax REAL NOT NULL,"
    "  vsum REAL NOT NULL,"
    "  esum REAL," /* levels only: sum of 10^(0.1 L) */
    "  PRIMARY KEY(series, t)) WITHOUT ROWID;"
    "CREATE TABLE roll_1h("
    "  series INTEGER NOT NULL, t INTEGER NOT NULL, n INTEGER NOT NULL,"
    "  vmin REAL NOT NULL, vmax REAL NOT NULL, vsum REAL NOT NULL, esum REAL,"
    "  PRIMARY KEY(series, t)) WITHOUT ROWID;"
    "CREATE TABLE roll_1d("
    "  series INTEGER NOT NULL, t INTEGER NOT NULL, n INTEGER NOT NULL,"
    "  vmin REAL NOT NULL, vmax REAL NOT NULL, vsum REAL NOT NULL, esum REAL,"
    "  PRIMARY KEY(series, t)) WITHOUT ROWID;"
    "CREATE TABLE latest("
    "  series INTEGER PRIMARY KEY,"
    "  t INTEGER NOT NULL," /* Unix ms */
    "  v REAL NOT NULL);"
    /* Exact row counts without scanning: kept in the same transactions. */
    "CREATE TABLE counter("
    "  name TEXT PRIMARY KEY,"
    "  value INTEGER NOT NULL) WITHOUT ROWID;"
    "INSERT INTO counter VALUES('raw_rows', 0);",
    /* 2: alarms (alarms.c). `alarm` is each alarm's latest state, its id
     * handed out by the model (gateway/rules/alarm.c); `alarm_event` is the
     * history, in order. Times are Unix seconds as REAL; a figure that is
     * not a number is NULL. */
    "CREATE TABLE alarm("
    "  id INTEGER PRIMARY KEY,"
    "  rule TEXT NOT NULL,"
    "  source TEXT NOT NULL,"
    "  level INTEGER NOT NULL," /* 1 warning, 2 alarm, 0 once cleared */
    "  peak_level INTEGER NOT NULL,"
    "  figure REAL, lim REAL, peak REAL,"
    "  unit TEXT NOT NULL,"
    "  message TEXT NOT NULL,"
    "  data_t REAL NOT NULL,"
    "  raised REAL NOT NULL,"
    "  updated REAL NOT NULL,"
    "  cleared REAL NOT NULL DEFAULT 0," /* 0 while active */
    "  acked REAL NOT NULL DEFAULT 0,"
    "  acked_by TEXT NOT NULL DEFAULT '',"
    "  note TEXT NOT NULL DEFAULT '',"
    "  low_is_bad INTEGER NOT NULL DEFAULT 0);"
    "CREATE INDEX alarm_active ON alarm(id) WHERE cleared = 0;"
    "CREATE INDEX alarm_updated ON alarm(updated);"
    "CREATE TABLE alarm_event("
    "  seq INTEGER PRIMARY KEY,"
    "  alarm INTEGER NOT NULL REFERENCES alarm(id),"
    "  t REAL NOT NULL,"
    "  kind INTEGER NOT NULL," /* 0 raised, 1 escalated, 2 deescalated, 3 cleared, 4 acked */
    "  level INTEGER NOT NULL,"
    "  figure REAL, lim REAL,"
    "  by TEXT NOT NULL DEFAULT '',"
    "  note TEXT NOT NULL DEFAULT '');"
    "CREATE INDEX alarm_event_alarm ON alarm_event(alarm, seq);",
    /* 3: the waste and material ledger (ledger.c). One append-only,
     * hash-chained table for tickets, deliveries, returns and corrections
     * (storage.h "waste and material ledger"); ids are the chain order.
     * (scale, no) is unique, which makes a scale's resend find its entry.
     * `ledger_head` repeats the count and last hash; `progress` is the
     * history of [site] progress; `boq` the bill of quantities. */
    "CREATE TABLE ledger("
    "  id INTEGER PRIMARY KEY,"
    "  received_ms INTEGER NOT NULL,"
    "  source TEXT NOT NULL," /* scale, manual, correction */
    "  type TEXT NOT NULL,"   /* waste, delivery, return */
    "  scale TEXT NOT NULL,"  /* '' when none */
    "  no INTEGER,"           /* NULL when none */
    "  t INTEGER NOT NULL,"   /* weighing time, Unix s */
    "  plate TEXT NOT NULL,"
    "  dir TEXT NOT NULL,"
    "  gross_kg INTEGER, tare_kg INTEGER," /* NULL when absent */
    "  net_kg INTEGER NOT NULL,"           /* negative in a reversal */
    "  category TEXT NOT NULL, kind TEXT NOT NULL, dest TEXT NOT NULL,"
    "  dest_name TEXT NOT NULL, carrier TEXT NOT NULL,"
    "  material TEXT NOT NULL, green_cert INTEGER NOT NULL,"
    "  corrects INTEGER REFERENCES ledger(id),"
    "  reversal INTEGER NOT NULL,"
    "  note TEXT NOT NULL,"
    "  prev BLOB NOT NULL, hash BLOB NOT NULL);"
    "CREATE UNIQUE INDEX ledger_slip ON ledger(scale, no) WHERE no IS NOT NULL;"
    "CREATE INDEX ledger_t ON ledger(t);"
    "CREATE INDEX ledger_corrects ON ledger(corrects) WHERE corrects IS NOT NULL;"
    "CREATE TABLE ledger_head("
    "  one INTEGER PRIMARY KEY CHECK(one = 1),"
    "  entries INTEGER NOT NULL,"
    "  hash BLOB NOT NULL);"
    "INSERT INTO ledger_head VALUES(1, 0, zeroblob(32));"
    "CREATE TABLE progress("
    "  seq INTEGER PRIMARY KEY,"
    "  t REAL NOT NULL,"
    "  value REAL NOT NULL);"
    "CREATE TABLE boq("
    "  material TEXT PRIMARY KEY,"
    "  net_t REAL NOT NULL,"
    "  description TEXT NOT NULL,"
    "  imported REAL NOT NULL) WITHOUT ROWID;",
    /* 4: equipment (equipment.c): the command audit trail, daily energy per
     * unit, counter baselines and the control state (holds, overrides).
     * Times are Unix seconds as REAL, days the local midnight. */
    "CREATE TABLE eq_command("
    "  id INTEGER PRIMARY KEY,"
    "  t REAL NOT NULL,"
    "  unit TEXT NOT NULL,"
    "  grp TEXT NOT NULL,"
    "  turn_on INTEGER NOT NULL,"
    "  reason TEXT NOT NULL,"
    "  origin TEXT NOT NULL," /* policy, override, local */
    "  actor TEXT NOT NULL,"
    "  note TEXT NOT NULL,"
    "  attempts INTEGER NOT NULL,"
    "  result TEXT NOT NULL,"
    "  result_t REAL NOT NULL);"
    "CREATE INDEX eq_command_t ON eq_command(t);"
    "CREATE TABLE energy_day("
    "  unit TEXT NOT NULL,"
    "  day INTEGER NOT NULL,"
    "  kwh REAL NOT NULL, fuel_l REAL NOT NULL,"
    "  run_s REAL NOT NULL, idle_s REAL NOT NULL, off_s REAL NOT NULL,"
    "  idle_kwh REAL NOT NULL,"
    "  PRIMARY KEY(unit, day)) WITHOUT ROWID;"
    "CREATE TABLE energy_counter("
    "  unit TEXT NOT NULL,"
    "  quantity INTEGER NOT NULL," /* proto_quantity_t */
    "  value REAL NOT NULL,"
    "  t REAL NOT NULL,"
    "  rollovers INTEGER NOT NULL, resets INTEGER NOT NULL, jumps INTEGER NOT NULL,"
    "  PRIMARY KEY(unit, quantity)) WITHOUT ROWID;"
    "CREATE TABLE eq_state("
    "  unit TEXT PRIMARY KEY,"
    "  held INTEGER NOT NULL," /* eqp_hold_t */
    "  ovr INTEGER NOT NULL, ovr_on INTEGER NOT NULL,"
    "  ovr_until REAL NOT NULL, ovr_t REAL NOT NULL,"
    "  ovr_actor TEXT NOT NULL, ovr_note TEXT NOT NULL) WITHOUT ROWID;",
    /* 5: the uplink's outbox (outbox.c, storage.h "uplink outbox"). One row
     * per message for the authority, its frames as sent; id is the sending
     * order, acked_ms NULL while it waits for its 9014. The partial index
     * keeps the pending rows (the backlog) cheap to walk and count however
     * many acknowledged rows are kept for history pulls. outbox_state holds
     * the uplink's cursors and its chain head, changed in the same
     * transactions as the rows. */
    "CREATE TABLE outbox("
    "  id INTEGER PRIMARY KEY,"
    "  qn TEXT NOT NULL UNIQUE,"
    "  cn TEXT NOT NULL,"
    "  class INTEGER NOT NULL," /* stor_ob_class_t */
    "  t INTEGER NOT NULL,"     /* DataTime, Unix s */
    "  seq INTEGER,"            /* chain Seq of a signed message */
    "  frames TEXT NOT NULL,"
    "  made_ms INTEGER NOT NULL,"
    "  acked_ms INTEGER);"
    "CREATE INDEX outbox_pending ON outbox(id) WHERE acked_ms IS NULL;"
    "CREATE INDEX outbox_cn_t ON outbox(cn, t);"
    "CREATE UNIQUE INDEX outbox_seq ON outbox(seq) WHERE seq IS NOT NULL;"
    "CREATE TABLE outbox_state("
    "  name TEXT PRIMARY KEY,"
    "  value NOT NULL) WITHOUT ROWID;",
    /* 6: non-road mobile machinery (machinery.c, storage.h "machinery").
     * `machine` is the register, one row per registration code, kept
     * when retired (retired is then its time); `machine_audit` every
     * change with who and why; `machine_move` entries and exits, a gate's
     * (gate, no) stored once so a resend is recognised, a person's with
     * no NULL. */
    "CREATE TABLE machine("
    "  code TEXT PRIMARY KEY,"
    "  type TEXT NOT NULL,"
    "  stage INTEGER NOT NULL," /* proto_stage_t */
    "  power_kw REAL NOT NULL,"
    "  fuel INTEGER NOT NULL," /* proto_fuel_t */
    "  owner TEXT NOT NULL,"
    "  label TEXT NOT NULL,"
    "  terminal TEXT NOT NULL,"
    "  added REAL NOT NULL,"
    "  changed REAL NOT NULL,"
    "  retired REAL) WITHOUT ROWID;"
    "CREATE TABLE machine_audit("
    "  id INTEGER PRIMARY KEY,"
    "  t REAL NOT NULL,"
    "  code TEXT NOT NULL,"
    "  action TEXT NOT NULL," /* add, change, import, retire */
    "  actor TEXT NOT NULL,"
    "  reason TEXT NOT NULL,"
    "  detail TEXT NOT NULL);" /* the row after the change */
    "CREATE INDEX machine_audit_code ON machine_audit(code, t);"
    "CREATE TABLE machine_move("
    "  id INTEGER PRIMARY KEY,"
    "  gate TEXT NOT NULL,"
    "  no INTEGER,"
    "  code TEXT NOT NULL,"
    "  dir_in INTEGER NOT NULL,"
    "  t REAL NOT NULL,"
    "  source TEXT NOT NULL," /* gate, sitectl */
    "  actor TEXT NOT NULL,"
    "  received REAL NOT NULL);"
    "CREATE UNIQUE INDEX machine_move_gate_no ON machine_move(gate, no) WHERE no IS NOT NULL;"
    "CREATE INDEX machine_move_code_t ON machine_move(code, t);",
    /* 7: the register's row after each change, in columns, so that the
     * uplink's 6051 carries it as it was (NULL for a retirement and for
     * changes from before this version, whose `detail` says it). */
    "ALTER TABLE machine_audit ADD COLUMN type TEXT;"
    "ALTER TABLE machine_audit ADD COLUMN stage INTEGER;"
    "ALTER TABLE machine_audit ADD COLUMN power_kw REAL;"
    "ALTER TABLE machine_audit ADD COLUMN fuel INTEGER;"
    "ALTER TABLE machine_audit ADD COLUMN owner TEXT;"
    "ALTER TABLE machine_audit ADD COLUMN label TEXT;"
    "ALTER TABLE machine_audit ADD COLUMN terminal TEXT;",
    /* 8: the block layout (issue 15; compact.c). Raw readings land in
     * `tail` and the compactor turns them into `block` rows; a (series, t)
     * is in one of the two, never both, and `counter.raw_rows` counts
     * both.
     *
     * tail is keyed (slot, series, t), slot = t >> 14 (16.4 s; version 9
     * makes it t >> 12): a commit's readings share one or two slots, so it appends to the
     * last few leaf pages instead of dirtying one leaf per series as raw
     * did (a 5 s commit of 1,500 readings from 1,500 series rewrote ~1,500
     * pages), while one series' tail rows are still one seek per slot for
     * readers, and (series, t) stays unique for the resend check (INSERT
     * OR IGNORE).
     *
     * block holds one series' readings in [t0, t1] (n of them) as the
     * codec's bytes (block.c); a series' blocks never overlap.
     *
     * The migration moves raw into tail in key order; the compactor then
     * turns it into blocks a bounded step at a time, so a big database
     * does not hold the writer in one long transaction of encoding. */
    "CREATE TABLE tail("
    "  slot INTEGER NOT NULL," /* t >> 14 (version 9: STOR_SLOT_SHIFT) */
    "  series INTEGER NOT NULL,"
    "  t INTEGER NOT NULL," /* Unix ms */
    "  v NOT NULL,"         /* hundredths as INTEGER when exact, else REAL */
    "  PRIMARY KEY(slot, series, t)) WITHOUT ROWID;"
    "CREATE TABLE block("
    "  series INTEGER NOT NULL,"
    "  t0 INTEGER NOT NULL," /* first and last reading, Unix ms */
    "  t1 INTEGER NOT NULL,"
    "  n INTEGER NOT NULL,"
    "  data BLOB NOT NULL,"
    "  PRIMARY KEY(series, t0)) WITHOUT ROWID;"
    "INSERT INTO tail(slot, series, t, v)"
    "  SELECT t >> 14, series, t, v FROM raw ORDER BY t >> 14, series, t;"
    "DROP TABLE raw;",
    /* 9: the tail keyed (slot, t, series), slot = t >> 12 (4.1 s), instead
     * of (slot, series, t) with t >> 14 (16.4 s). A commit's readings are
     * the newest: in time order they land after everything stored, on
     * pages of their own, whereas series order within a slot spread them
     * over the pages of a slot the previous commits had filled, which
     * were written to the WAL again with each (bench/written.sh, 3,000
     * series: 5.7 MB of WAL for 90,000 readings at 3,000/s; 807 frames
     * for 221 pages of tail at 300/s, where sitesim's times put the whole
     * run in one or two slots). (slot, t) orders as t does; slot stays so
     * that the queries keep their shape. A reader scans a slot's rows for
     * its series' (the tail is short: the compactor keeps it so); the
     * resend check is still a point lookup. The rows move to a new table
     * in key order. */
    "CREATE TABLE tail9("
    "  slot INTEGER NOT NULL," /* t >> STOR_SLOT_SHIFT */
    "  series INTEGER NOT NULL,"
    "  t INTEGER NOT NULL," /* Unix ms */
    "  v NOT NULL,"         /* hundredths as INTEGER when exact, else REAL */
    "  PRIMARY KEY(slot, t, series)) WITHOUT ROWID;"
    "INSERT INTO tail9(slot, series, t, v) SELECT t >> 12, series, t, v"
    "  FROM tail ORDER BY 1, t, series;"
    "DROP TABLE tail;"
    "ALTER TABLE tail9 RENAME TO tail;",
    /* 10: one tail row per series per commit, a pack (compact.c): the
     * series' readings of that commit. A row a reading cost about 24
     * bytes of tail pages at 3,000 readings/s, each written twice (to the
     * WAL and by the checkpoint); a pack of a commit's five readings of a
     * 1 Hz series costs about 5 a reading (bench/written.sh). `data` is
     * the one reading's value when there is one (hundredths as INTEGER
     * when exact, else REAL, as version 9's v: the usual case at a site's
     * pace, where a series sends every 10 s and a commit is 5 s), else the
     * readings in the block codec, times relative to the row's t, its
     * first reading's. Keyed (t, series): a commit's packs are the newest
     * and append, as version 9's rows did; a pack's readings lie within
     * STOR_PACK_SPAN_MS of its t, so a resend check and a reader scan the
     * rows of a short range of t. n counts the pack's readings (the
     * compactor bounds a step by it, retention and the tests count with
     * it; 1 takes no byte). Each version 9 row becomes a pack of one.
     *
     * counter.pending_from is at or before the oldest pending reading
     * (batch.c: newer than its series' latest.t), written by every commit
     * that stores readings, on the page that raw_rows dirties anyway; a
     * reader adding pending readings scans the tail from there only
     * (reader.c). 0 from the migration: the whole tail. */
    "CREATE TABLE tail10("
    "  t INTEGER NOT NULL," /* the pack's first reading, Unix ms */
    "  series INTEGER NOT NULL,"
    "  n INTEGER NOT NULL,"
    "  data NOT NULL," /* n = 1: the value; else the block codec's bytes */
    "  PRIMARY KEY(t, series)) WITHOUT ROWID;"
    "INSERT INTO tail10(t, series, n, data) SELECT t, series, 1, v"
    "  FROM tail ORDER BY t, series;"
    "DROP TABLE tail;"
    "ALTER TABLE tail10 RENAME TO tail;"
    "INSERT INTO counter VALUES('pending_from', 0);",
    /* 11: rollups leave out what their other columns give (issue 15: a
     * simulated week of the demo site, bench/week.sh, held 7.2 bytes of
     * roll_1m a reading, most series sending about once a minute). vmax
     * is NULL when it equals vmin; vsum is NULL when n is 1 and it equals
     * vmin, or n is 2 and it equals vmin + vmax (mostly so; the sum is
     * of the readings, then scaled). A NULL takes no byte of the record
     * where a REAL with a fraction takes 8, and device arithmetic leaves
     * one on many values (449 * 0.1 * 100 is 4490.000000000001). Readers read
     * coalesce(vmax, vmin) and the sum likewise (reader.c); the upsert
     * works on those and leaves the columns out again (batch.c). The rows
     * move to new tables in key order. */
    ROLL_V11("roll_1m") ROLL_V11("roll_1h") ROLL_V11("roll_1d")
    /* and blocks in a rowid table, found by a unique index on (series,
     * t0). A block is mostly larger than a page can keep of a row in
     * place; a WITHOUT ROWID table's row keeps at most about a quarter of a
     * (1 KiB) page there and the rest on overflow pages, whose last one was
     * about half empty (a week of the demo site: 722 KB unused in 2.9 MB
     * of overflow pages for 2.3 MB of blocks); a rowid table's row keeps
     * up to a page less 35 bytes in place, and SQLite sizes that part so
     * that the overflow pages are full. New blocks append (rowids ascend),
     * so a compaction step's writes no longer land on a page per series. */
    "CREATE TABLE block11("
    "  id INTEGER PRIMARY KEY,"
    "  series INTEGER NOT NULL,"
    "  t0 INTEGER NOT NULL," /* first and last reading, Unix ms */
    "  t1 INTEGER NOT NULL,"
    "  n INTEGER NOT NULL,"
    "  data BLOB NOT NULL);"
    "INSERT INTO block11(series, t0, t1, n, data) SELECT series, t0, t1, n, data FROM block"
    "  ORDER BY t0, series;"
    "DROP TABLE block;"
    "ALTER TABLE block11 RENAME TO block;"
    "CREATE UNIQUE INDEX block_key ON block(series, t0);",
    /* 12: auto_vacuum = INCREMENTAL, so that the writer can give free
     * pages back (db.c "free pages"): a compaction step frees the tail
     * pages of the rows it turns into blocks, and after a burst those can
     * be most of the file (bench/run.sh's first gateway: 10.5 MB of tail
     * for 2.4 MB of blocks). A new file is made so (db.c); an older one
     * needs a VACUUM, which cannot run in a transaction, so this entry is
     * no SQL (NULL) and stor__migrate runs vacuum_incremental instead. It
     * rewrites the file once, writing about twice its size (a copy in a
     * temporary file, then the pages through the WAL), and needs as much
     * room; a file that cannot be vacuumed (less than STOR_VACUUM_ROOM
     * times its size free, another connection reading) stays as it was,
     * keeps working and reuses its free pages as before, and says so in
     * the log. A large file takes long (minutes on a slow eMMC); the open
     * reports its progress meanwhile (vacuum_incremental). The pointer map
     * pages it adds (one per 204 pages of 1 KiB) cost about 0.5% of the
     * file, and writes: a commit that adds pages writes the map page that
     * records them, one WAL frame a commit (6 of 243 in bench/written.sh's
     * 30 s at 300 readings/s) and a 4 KiB page more at the checkpoint:
     * about a byte written a reading at 300/s, 0.3 at 3,000/s (six
     * alternating runs each against a build that made files auto_vacuum =
     * NONE: 56.2 against 55.5 and 17.2 against 16.9; storage/BLOCKS.md). */
    NULL,
    /* 13: rollups keyed time first, (t, series). Keyed series first, each
     * flush of the pending buckets (every STOR_PEND_MAX minutes or before
     * a compaction step: about every 5.5 minutes of a site of 3,000
     * series at 300 readings/s) wrote a few rows into every series' own
     * last page of roll_1m, and later of roll_1h and roll_1d: 3,000 pages
     * or more a flush, each written to the WAL and again by the
     * checkpoint. Keyed time first, a flush's buckets are the newest and
     * land on the tables' last few pages (bench/steady.c, 3,000 series at
     * 300/s over the data's second hour, one run each: 321 bytes written
     * a reading before, 174 after). Readers look a series' buckets up one
     * by one (reader.c, roll_points); retention deletes the oldest minutes
     * of all series at once (retention.c). The rows move to new tables in
     * key order. */
    ROLL_V13("roll_1m") ROLL_V13("roll_1h") ROLL_V13("roll_1d"),
};

#define N_MIGRATIONS ((int)(sizeof(migrations) / sizeof(migrations[0])))

int stor__schema_version(void) { return N_MIGRATIONS; }

/* Reads user_version and application_id and says whether this code may use
 * the file. */
static int check(sqlite3 *db, const char *path, int64_t *version) {
  int64_t app = 0;
  int rc = stor__query_int(db, "PRAGMA user_version", version);
  if (rc == 0)
    rc = stor__query_int(db, "PRAGMA application_id", &app);
  if (rc != 0)
    return rc;
  if (app != 0 && app != STOR_APPLICATION_ID) {
    log_err("%s: not a sitegate database (application_id %#llx); give storage.path a file of "
            "its own",
            path, (unsigned long long)app);
    return -EINVAL;
  }
  if (*version > N_MIGRATIONS) {
    log_err("%s: schema version %lld is newer than this program knows (%d): it was written by "
            "a newer sitegate; run that version or restore a backup",
            path, (long long)*version, N_MIGRATIONS);
    return -ENOTSUP;
  }
  return 0;
}

int stor__check_version(sqlite3 *db, const char *path) {
  int64_t version = 0;
  int rc = check(db, path, &version);
  if (rc == 0 && version == 0) {
    log_err("%s: no sitegate schema yet (the gateway creates it)", path);
    rc = -ENOENT;
  }
  return rc;
}

/* Migration 12 (above): makes an older file auto_vacuum = INCREMENTAL with
 * a VACUUM, outside any transaction. Never fails the open: a file that
 * cannot be vacuumed keeps working as it is.
 *
 * There is no bound on the file's size: the VACUUM may take minutes on a
 * large file on a slow eMMC, and stor_open's report (stor_opening_fn,
 * called from SQLite's progress handler and the WAL's writes throughout)
 * lets sitegated tell systemd it is making progress, so the start timeout
 * does not kill it half-way. (It was bounded to 256 MiB for that timeout
 * alone.) What does bound it is room: the VACUUM writes a copy of the file
 * to a temporary file (SQLite's temporary directory, /var/tmp under
 * systemd, mostly the same file system), then the new pages through the
 * WAL beside the file, so it runs only when the file system holding the
 * file has STOR_VACUUM_ROOM times the file's size free. Otherwise it would
 * fill the disk before failing, at a moment other programs on the box may
 * need it; such a file keeps its free pages for reuse, as before, and says
 * so. */
static int64_t vacuum_room = -1; /* tests: the free bytes to assume; -1: statvfs's */

void stor__test_vacuum_room(int64_t bytes) { vacuum_room = bytes; }

/* Free bytes on the file system that holds `path`, -1 if unknown. */
static int64_t room_beside(const char *path) {
  if (vacuum_room >= 0)
    return vacuum_room;
  char dir[4096];
  snprintf(dir, sizeof(dir), "%s", path);
  struct statvfs fs;
  if (statvfs(dirname(dir), &fs) != 0)
    return -1;
  return (int64_t)fs.f_bavail * (int64_t)fs.f_frsize;
}

static void vacuum_incremental(sqlite3 *db, const char *path, stor_opener_t *op, int v) {
  int64_t mode = 0, pages = 0, page_size = 0;
  if (stor__query_int(db, "PRAGMA auto_vacuum", &mode) != 0 || mode == 2)
    return; /* a new file is made so (db.c) */
  if (stor__query_int(db, "PRAGMA page_count", &pages) != 0 ||
      stor__query_int(db, "PRAGMA page_size", &page_size) != 0)
    return;
  int64_t size = pages * page_size, room = room_beside(path);
  if (room >= 0 && room < STOR_VACUUM_ROOM * size) {
    log_warn("%s: %lld MB, and %lld MB free beside it: too little room to rewrite it (VACUUM "
             "needs %d times its size); it keeps its free pages for reuse, as before",
             path, (long long)(size >> 20), (long long)(room >> 20), STOR_VACUUM_ROOM);
    return;
  }
  log_info("%s: rewriting the file once (VACUUM) so that it can give free pages back", path);
  stor__opening_step(op, v,
                     "migrating the database to schema %d of %d: rewriting the file "
                     "(VACUUM, %lld MB)",
                     v, N_MIGRATIONS, (long long)(size >> 20));
  int rc = sqlite3_exec(db, "PRAGMA auto_vacuum = INCREMENTAL; VACUUM", NULL, NULL, NULL);
  if (rc != SQLITE_OK || stor__query_int(db, "PRAGMA auto_vacuum", &mode) != 0 || mode != 2)
    log_warn("%s: cannot rewrite the file (%s); it keeps its free pages for reuse, as before", path,
             sqlite3_errmsg(db));
}

int stor__migrate(sqlite3 *db, const char *path, stor_opener_t *op) {
  int64_t version = 0;
  int rc = check(db, path, &version);
  if (rc == 0 && version == 0)
    stor__opening_step(op, N_MIGRATIONS, "creating the database (schema %d)", N_MIGRATIONS);
  for (int v = (int)version + 1; rc == 0 && v <= N_MIGRATIONS; v++) {
    char what[64], set[64];
    snprintf(what, sizeof(what), "%s: migration %d", path, v);
    snprintf(set, sizeof(set), "PRAGMA user_version = %d", v);
    if (version > 0)
      stor__opening_step(op, v, "migrating the database to schema %d of %d", v, N_MIGRATIONS);
    if (!migrations[v - 1])
      vacuum_incremental(db, path, op, v);
    int src = sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
    if (src == SQLITE_OK && v == 1)
      src = sqlite3_exec(db, "PRAGMA application_id = " STR(STOR_APPLICATION_ID), NULL, NULL, NULL);
    if (src == SQLITE_OK && migrations[v - 1])
      src = sqlite3_exec(db, migrations[v - 1], NULL, NULL, NULL);
    if (src == SQLITE_OK)
      src = sqlite3_exec(db, set, NULL, NULL, NULL);
    if (src == SQLITE_OK)
      src = sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
    if (src != SQLITE_OK) {
      rc = stor__fail(db, src, what);
      if (!sqlite3_get_autocommit(db))
        sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
    } else if (version > 0) {
      log_info("%s: schema upgraded to version %d", path, v);
    }
  }
  return rc;
}
