/* storage internals, for the files of storage/ and tests/test_storage.c only.
 *
 * The writer's state lives here because four files share it: db.c (queue,
 * thread, requests), batch.c (one group commit with its rollups),
 * retention.c (chunked deletes) and schema.c (migrations). Fields are
 * grouped by who may touch them: set once at open, under `mu`, or the
 * writer thread's alone. */
#ifndef SITEGATE_STORAGE_INT_H
#define SITEGATE_STORAGE_INT_H

#include "storage/storage.h"

#include <pthread.h>
#include <sqlite3.h>

/* Page size of new databases. 1 KiB pages keep a group commit small: a
 * batch dirties a leaf page or more per series it touches in raw (and, in
 * the commits that write rollups, in roll_1m, roll_1h, roll_1d and
 * latest), so the WAL bytes written and synced per commit scale with the
 * page size (measured in schema.c). */
#define STOR_PAGE_SIZE 1024
/* The writer's page cache. The gateway's RSS target is 32 MB; since
 * batches no longer touch rollup pages, 8 MiB runs as fast as 16 did
 * (schema.c), and 6 MiB as fast as 8 in bench/run.sh's (b) and (c) with
 * 10,000 devices (three runs each, alternating: 30-37k req/s and 221-243k
 * records/s against 32-33k and 221-233k), for 2.7 MB less peak RSS. On
 * the tail layout (schema 10) 2 MiB runs as 6 did and writes as much
 * (7 Dec 2026, shared box, alternating runs of a fresh gateway with
 * 10,000 devices: (b) 30.1-32.2k req/s and (c) 172-234k records/s
 * against 18.7-37.3k and 174-202k; bench/written.sh twice each: 56 and 58
 * bytes a reading at 300/s, 18 and 19 at 3,000/s, against 55 and 59, 18
 * and 18), and the gateway's peak RSS was 31.3-32.8 MB against 35.9-40.9:
 * the writer's arena had held 7.2 MB. */
#define STOR_CACHE_KIB 2048
/* Each reader connection (one per module that reads) holds at most this
 * much: their queries are range scans the kernel's page cache serves as
 * well, and SQLite's default of 2 MB each added up to more than the
 * writer's. */
#define STOR_READER_CACHE_KIB 512
/* Background priority for the writer and the checkpointer (nice values):
 * a program on the box that wakes takes the CPU from them. With the CoAP
 * loop on a CPU of its own (gateway.c), perf sched still showed bench's
 * load generator waiting 2-3 ms behind a commit while the loop's CPU idled;
 * with these the paced p99 at 10,000 requests/s went from 1.2-2.3 ms to
 * 0.66-1.1 ms, with no 5.03 refusals and the same rates in (b) and (c). */
#define STOR_WRITER_NICE 5
#define STOR_CKPT_NICE 10
#define STOR_WAL_PAGES 8192 /* wake the checkpointer (checkpoint.c) at this WAL size */
#define STOR_WAL_HARD_PAGES (8 * STOR_WAL_PAGES) /* the writer checkpoints itself */
/* The writer's WAL writes are gathered into this many bytes (db.c); the
 * unix VFS writes at most 128 KiB - 1 in one call. */
#define STOR_WAL_BUF (64 * 1024)
#define STOR_BUSY_TIMEOUT_MS 5000 /* readers and checkpoints are brief */
#define STOR_RETRY_MS 1000        /* a failed batch is retried this often */
#define STOR_RETENTION_EVERY_MS (3600 * 1000)
#define STOR_RETENTION_FIRST_MS (60 * 1000) /* first pass after open */
#define STOR_RETENTION_CHUNK 4096 /* rows deleted per transaction, so batches are not held up */
#define STOR_RETENTION_SERIES 256 /* series visited per transaction */
#define STOR_MINUTE_DAYS 400      /* per-minute rollups kept; hourly and daily forever */
#define STOR_CLOSE_TRIES 3        /* commit attempts for the last batch at close */

/* The write budget (README "What an acknowledgement promises", issue 15):
 * at a site's pace each commit, not each reading, costs the flash its
 * bytes, so readings wait up to 5 s for company; a deep queue (overload, a
 * backlog) commits at once (db.c). 16384 readings is more than 3,000 a
 * second (a large site) bring in 5 s, so at a site's pace the window
 * decides; at a paced 10,000/s with 10,000 series, batches of 32768 took
 * about a second each to commit and the loop's median answer went from
 * 0.4 ms (50 ms windows) to 6-18 ms in four runs, 16384 gave 0.9-2.4 ms
 * and 8192 0.4-4 ms (bench/run.sh's paced run, on a shared, loaded VM). */
#define STOR_DEFAULT_BATCH_MS 5000
#define STOR_DEFAULT_BATCH_READINGS 16384
#define STOR_DEFAULT_QUEUE_MAX 200000
#define STOR_BATCH_KEEP 4096 /* batch array entries kept resident (batch.c) */
#define STOR_DEFAULT_RAW_DAYS 31

/* The rollup steps that have tables, indexed by stor_step_t - 1. */
#define STOR_ROLLUPS 3

#define STR_(x) #x
#define STR(x) STR_(x)

/* ---- errors and values (util.c) */

/* Translates a SQLite result code to 0 or a negative errno, once, at the
 * boundary. CANTOPEN uses the OS errno SQLite saw when there is one. */
int stor__err(sqlite3 *db, int rc);
/* stor__err() after logging "what: sqlite message" at error level. */
int stor__fail(sqlite3 *db, int rc, const char *what);
int stor__prepare(sqlite3 *db, const char *sql, sqlite3_stmt **st);
/* qsort/bsearch order of int64_t, or of structs that start with one
 * (stor_sample_t's t_ms). */
int stor__cmp_i64(const void *a, const void *b);
int stor__exec(sqlite3 *db, const char *sql);
/* Reads a one-value pragma or query into *v. */
int stor__query_int(sqlite3 *db, const char *sql, int64_t *v);
/* Steps a prepared statement, bindings set, whose first column is an
 * integer, and resets it: *v is the first row's (left as it was when there
 * is none, which *found says unless NULL). SQLITE_OK or SQLite's error. */
int stor__one_int(sqlite3_stmt *st, int64_t *v, bool *found);
/* Steps a statement that returns no row, then resets it and clears its
 * bindings for the next use: 0, or the error as stor__fail() gives it with
 * `what`. */
int stor__step_done(sqlite3 *db, sqlite3_stmt *st, const char *what);

/* raw.v holds hundredths as an INTEGER when that round-trips exactly (56.3
 * is stored as 5630 in 2 bytes instead of an 8-byte REAL), else the REAL. */
void stor__bind_value(sqlite3_stmt *st, int col, double v);
double stor__column_value(sqlite3_stmt *st, int col);

/* Time, as the rollups reckon it: a / b rounded down (times before 1970
 * too), and the local day holding Unix second `s`, [*start, *end). A zone
 * whose clocks skip midnight starts that day at its first minute (as
 * mktime gives it); for anything stranger *start is that midnight or `s`,
 * and the function returns false: not a day to cache. */
int64_t stor__floor_div(int64_t a, int64_t b);
bool stor__local_day(int64_t s, int64_t *start, int64_t *end);

/* Buffers sized for the worst case (the queue and the batch arrays, a few
 * MB at queue_max 200,000) come straight from mmap, so that what a batch
 * no longer needs goes back to the kernel: without that the ring, cycled
 * through, keeps all of it resident however short the queue is.
 * stor__pages_release drops the whole pages inside [from, to) bytes of
 * `base`: they read as zeros on next touch. Only for memory no other thread
 * may write meanwhile. */
void *stor__pages_alloc(size_t bytes); /* NULL on failure */
void stor__pages_free(void *base, size_t bytes);
void stor__pages_release(void *base, size_t from, size_t to);
/* Names the calling thread (at most 15 bytes: what top -H shows) and
 * lowers its CPU priority (nice, Linux: per thread). */
void stor__thread_start(const char *name, int nice);

/* Rollups keep vmin, vmax and vsum times 100 in REAL columns. SQLite
 * writes a REAL with no fraction as a small integer, so 56.3 takes 2 bytes
 * instead of 8, and the scale is uniform, so the SQL upsert's min, max and
 * + stay right. (A value with more decimals is off by an ulp at most.) */
#define STOR_ROLL_SCALE 100.0
/* A rollup row's vmax and vsum, which schema version 11 leaves NULL when
 * vmin (and, for the sum of two, vmax) gives them: columns of SQL over the
 * row's n, vmin, vmax and vsum. */
#define STOR_ROLL_VMAX "coalesce(vmax, vmin)"
#define STOR_ROLL_VSUM                                                                             \
  "coalesce(vsum, CASE WHEN n = 1 THEN vmin ELSE vmin + coalesce(vmax, vmin) END)"

/* ---- schema (schema.c) */

/* Migrations are one ordered list in schema.c; a module that needs tables
 * appends an entry there, never edits a released one. */
int stor__schema_version(void); /* the newest version this code knows */
/* stor_open's report of what it is doing (storage.h stor_opening_fn), kept
 * on its stack while it opens. */
typedef struct stor_opener {
  stor_opening_fn fn; /* NULL: nothing is reported */
  void *arg;
  int64_t every_ms;
  uint64_t step_ms; /* sg_mono_ms() when the step began */
  uint64_t last_ms; /* of the last call */
  stor_opening_t o;
  char what[128];
} stor_opener_t;
/* SQLite's progress handler looks at the clock every this many virtual
 * machine instructions (tens of microseconds' work). */
#define STOR_OPENING_VM_OPS 10000
#define STOR_OPENING_MS 1000 /* stor_options_t.opening_ms's default */
/* A new step: reports it at once. `schema` as stor_opening_t's. Accepts
 * NULL (nothing to report). */
void stor__opening_step(stor_opener_t *op, int schema, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Work within the step: reported if every_ms has passed since the last
 * call. Accepts NULL. */
void stor__opening_tick(stor_opener_t *op);

/* Refuses a database from newer code or another program, then applies the
 * missing migrations, each in its own transaction. `path` is for messages;
 * `op` (NULL: none) is told each migration as it begins, and SQLite's work
 * within it if the caller has set the connection's progress handler so. */
int stor__migrate(sqlite3 *db, const char *path, stor_opener_t *op);
/* Checks that an existing database is one this code can read. */
int stor__check_version(sqlite3 *db, const char *path);

/* ---- requests: work that must run on the writer's connection (device
 * ids, retention on demand, alarms, ledger entries, test hooks). The writer
 * runs them in order between two batches, never inside a batch's
 * transaction; fn opens and commits its own transaction if it needs one.
 * A request may be embedded first in a larger struct: fn gets back the
 * pointer it was posted with. */
typedef struct stor_req stor_req_t;
typedef int64_t (*stor_req_fn)(stor_db_t *db, stor_req_t *req);
#define STOR_REQ_PENDING INT64_MIN /* fn's answer when the req completes later */
struct stor_req {
  stor_req_fn fn;
  /* stor__request_submit only: called on the writer thread once fn's
   * result is in req->result; it must not wait for the writer. */
  void (*on_done)(stor_db_t *db, stor_req_t *req);
  const char *name;         /* argument of stor_device_id */
  const char *const *names; /* stor_device_ids: `arg` names in, ids out */
  uint32_t *ids;
  int64_t arg;
  int64_t result; /* fn's return value: >= 0 or a negative errno */
  bool done;
  stor_req_t *next;
};
/* Runs `req` on the writer and waits for it; returns fn's result, or
 * -ESHUTDOWN once stor_close has begun. Never from the writer thread. */
int64_t stor__request_post(stor_db_t *db, stor_req_t *req);
/* Queues `req` (which must outlive it, and have on_done) and returns at
 * once: 0, or -ESHUTDOWN once stor_close has begun (on_done is then not
 * called). Every request queued before stor_close runs before the writer
 * ends. Any thread but the writer. */
int stor__request_submit(stor_db_t *db, stor_req_t *req);
/* Writer thread: completes a request that fn left pending. */
void stor__req_complete(stor_db_t *db, stor_req_t *req, int64_t result);

/* A reader's connection, for queries kept in other files (NULL for NULL). */
sqlite3 *stor__reader_db(stor_reader_t *r);

/* ---- one group commit (batch.c) */

/* Readings of one series summed in memory: a minute (roll_1m's t) within
 * one local day [day, day_end), or, for readings written at once, an hour
 * or a day. sum and esum are of the readings' own values (rollup rows keep
 * them times STOR_ROLL_SCALE). */
typedef struct stor_bucket {
  int64_t t;            /* start, Unix seconds */
  int64_t day, day_end; /* minutes: the local day they are counted in */
  uint32_t n;
  double min, max, sum, esum; /* esum: levels only, the sum of 10^(0.1 L) */
} stor_bucket_t;

/* What the writer knows of a series. Rollups and the latest value are
 * deferred (batch.c): `rolled_t` is latest.t as stored, and the rollup
 * tables hold exactly the raw rows of the series with t <= rolled_t; the
 * newer ones are pending, summed in `open` and in db->pend. */
typedef struct stor_series {
  uint32_t id;
  bool level;       /* a level (dB): its rollups keep the energy sum */
  bool pending;     /* it has readings not rolled up yet */
  int64_t max_t;    /* no stored reading is newer (INT64_MIN: none), so readings
                     * after it need no duplicate check */
  int64_t rolled_t; /* INT64_MIN when it has no latest row */
  int64_t new_t;    /* the newest pending reading and its value */
  double new_v;
  stor_bucket_t open; /* the pending minute readings go to first; n 0: none */
} stor_series_t;

/* (device, quantity) -> index into `ser`; open addressing, grows at half
 * load. Forgotten on rollback, since ids made in that transaction vanish
 * (and reloaded from the tables). */
typedef struct stor_series_slot {
  uint64_t key; /* (device << 8 | quantity) + 1; 0 is an empty slot */
  uint32_t idx;
} stor_series_slot_t;
typedef struct stor_series_map {
  stor_series_slot_t *slots;
  size_t cap, used;
  stor_series_t *ser; /* `used` of them, in the order they were added */
  size_t ser_cap;
} stor_series_map_t;

/* A pending minute bucket that is no longer its series' open one. */
typedef struct stor_pend {
  uint32_t idx; /* into ser */
  stor_bucket_t b;
} stor_pend_t;

/* Rollups and latest values are written at the latest this long after the
 * first commit that left readings pending (else when the compactor or
 * retention needs them, by stor_flush, or when STOR_PEND_MAX buckets are
 * set aside; never at close), in one upsert per series and bucket for
 * everything pending. Readers add what is pending from the tail meanwhile
 * (reader.c), so nobody waits for them; each write costs a page or more
 * per series (db.c). */
#define STOR_ROLL_FLUSH_MS (600 * 1000)
/* Pending minute buckets kept besides the open ones before a batch writes
 * them all at once (64 bytes each). */
#define STOR_PEND_MAX 16384

/* Rows per multi-row raw insert: 1, 2, 4 ... 64 (measured: 64 rows per
 * statement cost 0.9 us a row, one row per statement 2.0 us). */
#define STOR_MULTI_SHIFT 7

/* One local day, [start, end) in Unix seconds; mktime is slow, so day
 * buckets are looked up in a small direct-mapped cache of these. */
typedef struct stor_day {
  int64_t start, end;
} stor_day_t;
#define STOR_DAY_CACHE 8

/* Commits the `n` readings at the head of the ring (none: only rollups) in
 * one transaction with the rollups of those written at once and, when
 * `flush` is set, every pending rollup and latest value. Writer thread only.
 * Returns 0 or a negative errno, having rolled back (the readings stay
 * queued; what was pending is reloaded from raw by the next attempt). */
int stor__batch_commit(stor_db_t *db, size_t n, bool flush, uint64_t *inserted, uint64_t *dups);
/* Whether readings older than `before_ms` may be pending (not rolled up
 * yet), so that retention must not delete raw rows before a commit writes
 * them; INT64_MAX: any. Writer thread. */
bool stor__roll_pending(const stor_db_t *db, int64_t before_ms);
/* After a failed commit, reads back what is pending (a transaction of its
 * own), so that stor__roll_pending knows again. 0 or a negative errno. */
int stor__roll_prepare(stor_db_t *db);
/* Prepares the batch statements and buffers at open; free copes with a
 * half-done open. */
int stor__batch_open(stor_db_t *db);
/* After a commit of n readings: hands back the batch arrays' pages past the
 * first STOR_BATCH_KEEP entries. */
void stor__batch_release(stor_db_t *db, size_t n);
void stor__batch_free(stor_db_t *db);
/* The local midnight at or before `s` (Unix seconds). */
int64_t stor__day_start(stor_db_t *db, int64_t s);

/* ---- compressed blocks (block.c): pure code, the format is at the top
 * of block.c */

typedef struct stor_sample {
  int64_t t_ms; /* Unix ms, >= 0 */
  double v;     /* finite */
} stor_sample_t;
#define STOR_BLOCK_MAX 65535 /* samples in one block */
/* Value modes, each a block's first byte (format version and mode): the
 * encoder writes version 2; version 1's blocks are read as ever. */
enum {
  STOR_BLOCK_SCALED = 0x10,
  STOR_BLOCK_XOR = 0x11,
  STOR_BLOCK_SCALED2 = 0x20,
  STOR_BLOCK_XOR2 = 0x21,
  STOR_BLOCK_DEC = 0x22,
};
/* Whether `v` is stored exactly as hundredths (*h): the scaled mode. */
bool stor__block_hundredths(double v, int64_t *h);
/* Bytes the block of `n` samples takes in `mode`; 0 when the samples
 * cannot be a block (none, too many, times not strictly ascending or
 * negative, a value not finite or, scaled, not exact in hundredths). */
size_t stor__block_size(const stor_sample_t *s, size_t n, int mode);
/* Encodes in `mode` into buf[cap]: the bytes written, -EINVAL as for
 * stor__block_size, or -ENOSPC when cap is too small. */
ssize_t stor__block_encode_mode(const stor_sample_t *s, size_t n, int mode, uint8_t *buf,
                                size_t cap);
/* The same in whichever version 2 mode is smallest (on a tie scaled, then
 * decimal, then XOR). */
ssize_t stor__block_encode(const stor_sample_t *s, size_t n, uint8_t *buf, size_t cap);
/* Decodes a block from the file into out[cap]: 0 with *n samples and (if
 * `mode` is not NULL) its mode; -ENOSPC when it holds more than cap;
 * -EBADMSG when it is not exactly one well-formed block (damaged,
 * truncated, trailing bytes, an overlong varint, times not strictly
 * ascending, a value not finite). */
int stor__block_decode(const uint8_t *buf, size_t len, stor_sample_t *out, size_t cap, size_t *n,
                       int *mode);
/* A walk through a block's times, for the resend check: it reads them
 * only as far as the time asked for, and nothing of the values (only
 * stor__block_decode checks a whole block). The bytes stay the caller's. */
typedef struct stor_blk_walk {
  const uint8_t *p;
  size_t len, at;      /* where the next time starts */
  uint64_t count, run; /* readings; what is left of a run of delta-of-delta 0 */
  size_t i;            /* times read */
  int64_t t, d;        /* the last time read, and its delta */
  int64_t probe;       /* the last time asked for */
  bool runs;           /* version 2 */
} stor_blk_walk_t;
/* Starts a walk through the block in buf: 0, or -EBADMSG. */
int stor__block_walk(stor_blk_walk_t *w, const uint8_t *buf, size_t len);
/* Whether the block holds a reading at `t_ms`: 1 or 0, or -EBADMSG when
 * its times are damaged that far. Times asked for in ascending order are
 * one walk; an earlier one starts it over. */
int stor__block_walk_to(stor_blk_walk_t *w, int64_t t_ms);

/* ---- the block layout (compact.c; the tables are schema.c's versions 8
 * and 10)
 *
 * Readings land in `tail`, one row per series per commit (a pack: the
 * series' readings of that commit, the value alone for one, else in the
 * block codec with their times made relative to the row's t, its first
 * reading's); the compactor turns the oldest tail rows into one block per
 * series, in the transaction that deletes them, a bounded step at a time
 * (below). It starts a step when the tail holds STOR_COMPACT_ROWS
 * readings or its oldest row is STOR_COMPACT_AGE_MS old, taking then
 * every row older than STOR_COMPACT_KEEP_MS. At close only a tail of
 * STOR_COMPACT_ROWS readings or more, due for a step anyway, is
 * compacted, and the pages it freed given back (db.c, close_tidy):
 * compacting 90,000 fresh readings at stop wrote 36 more bytes a reading
 * (bench/written.sh), the tail's range delete dirtying its leaves. A
 * series' last block with fewer than STOR_BLOCK_SMALL readings is
 * extended rather than
 * followed by another small one; a reading into an already compacted span
 * (late) is merged into the block it falls in.
 *
 * A pack's readings lie in [t, t + STOR_PACK_SPAN_MS) and are at most
 * STOR_PACK_MAX, so the packs that may hold a reading at t are the
 * series' rows with a t in (t - STOR_PACK_SPAN_MS, t]. The tail's key
 * starts with t, so such a window holds every series' packs: a commit
 * reads each window its resends and late readings fall in once, for all
 * their series together (batch.c, tail_find). A series' packs may overlap
 * in time (a late reading gets a pack of its own), never in readings. */
#define STOR_PACK_SPAN_MS 8192
#define STOR_PACK_MAX 256
/* Bytes a pack of n readings takes at most: 3 of header, 10 a time (a
 * varint) and 9 a value (XOR: a control byte and 8). */
#define STOR_PACK_BYTES(n) (16 + (size_t)(n)*19)
/* Readings in the tail that make a step due. A step takes rows until they
 * hold STOR_COMPACT_ROWS readings and take STOR_COMPACT_BYTES of memory
 * (compact.c, pack_ref_t): about 390,000 readings in 10-reading packs,
 * 131,072 in packs of one (3.5 MiB). With 3 MiB (590,000 readings) the
 * gateway's peak RSS in bench/run.sh rose by about 1 MB, to 31.2 against
 * the target of 32. A brief step, taken while a batch waits, stops at
 * STOR_COMPACT_ROWS readings: it holds commits up for a third as long. */
#define STOR_COMPACT_ROWS 131072
#define STOR_COMPACT_BYTES (2 << 20)
/* With a batch waiting, compaction gives way to ingest until the tail
 * holds this many readings (about 10 MB of 10-reading packs): a burst of
 * that size is committed at the pace of commits alone and compacted once
 * it has passed. Beyond it, a brief step follows each commit. bench/run.sh's
 * first gateway up to (c), five runs of each build alternating (8 Dec
 * 2026), with 4 steps and full ones while batches waited: CBOR 181,000 to
 * 326,000 records/s (mean 255,000; a step of 390,000 readings held
 * commits up long enough for the queue to fill), JSON 281,000-309,000,
 * peak RSS 30.8-32.9 MB; with these: CBOR 294,000-328,000 (mean 312,000),
 * JSON 271,000-329,000, 27.7-30.0 MB. The larger bound alone gave CBOR
 * 256,000-332,000 and brief steps alone 219,000-310,000 (four runs each). */
#define STOR_COMPACT_BURST (16 * STOR_COMPACT_ROWS)
/* A series' readings a step decodes at a time (16 B each). */
#define STOR_COMPACT_CHUNK 65536
#define STOR_COMPACT_AGE_MS (3600 * 1000)  /* an older tail row starts a step */
#define STOR_COMPACT_KEEP_MS (1800 * 1000) /* rows younger than this then stay */
#define STOR_BLOCK_SMALL 1024
/* A block the compactor writes holds at most this: a late reading merged
 * into a block rewrites the whole block, and the resend check walks its
 * times. */
#define STOR_BLOCK_CAP (2 * STOR_BLOCK_SMALL)
#define STOR_BLOCK_SPAN_MS (6 * 3600 * 1000) /* the time a block may span */
#define STOR_COMPACT_CHECK_MS (60 * 1000)    /* the age is looked at this often */
/* Free pages given back (db.c; the database has auto_vacuum = INCREMENTAL,
 * schema.c): when nothing is queued, or at close, and the free list holds
 * at least STOR_VACUUM_MIN_PAGES and a STOR_VACUUM_SHARE-th of the file
 * (at close, whatever its size), STOR_VACUUM_CHUNK pages a transaction.
 * Below that they wait for the next tail growth or blocks to reuse them:
 * moving pages costs writes. */
#define STOR_VACUUM_MIN_PAGES 4096
#define STOR_VACUUM_SHARE 4
#define STOR_VACUUM_CHUNK 1024
/* Migration 12's VACUUM runs only when the file system holding the file
 * has this many times the file's size free: it writes a copy to a
 * temporary file and then the pages through the WAL (schema.c,
 * vacuum_incremental). Its size is not bounded: it used to be (256 MiB)
 * for systemd's start timeout alone, which the open's progress reports now
 * extend (stor_opening_fn, gateway/core/notify.c). */
#define STOR_VACUUM_ROOM 2

/* Prepares the compactor's statements and reads the tail's size. */
int stor__compact_open(stor_db_t *db);
void stor__compact_free(stor_db_t *db);
/* Writer: the time (Unix ms) before which tail rows are due for a step
 * now (0: none); `all` at close. */
int64_t stor__compact_due(stor_db_t *db, int64_t now_ms, bool all);
/* Writer: one step, in its own transaction, over the oldest tail rows with
 * a t before `cut` (about STOR_COMPACT_ROWS readings or STOR_COMPACT_BYTES
 * of them, whichever is more; when `brief`, about STOR_COMPACT_ROWS
 * readings, whatever memory they take). Returns the
 * rows compacted (0: none left before `cut`), -EAGAIN when some of them
 * are not rolled up yet (a commit of pending rollups must come first), or
 * a negative errno, having rolled back. Rows not rolled up yet stay (0
 * when that is all of them). */
int64_t stor__compact_step(stor_db_t *db, int64_t cut, bool brief);
/* The block stor__block_has read last: checks of one series' readings,
 * in time order, mostly fall in one block. Zeroed before the first call;
 * the caller frees data. */
typedef struct stor_blk_seen {
  int64_t series, t0, t1;
  uint8_t *data; /* its bytes (room for cap) */
  size_t cap;
  stor_blk_walk_t walk; /* through data */
} stor_blk_seen_t;
/* Whether series `series` holds a reading at `t_ms` in its blocks: 1 yes,
 * 0 no, or a SQLite error code (negated). */
int stor__block_has(stor_db_t *db, stor_blk_seen_t *c, int64_t series, int64_t t_ms);
/* A pack (a tail row's data): s[0..n) (ascending, at most STOR_PACK_MAX,
 * spanning less than STOR_PACK_SPAN_MS) encoded with their times less
 * s[0].t_ms into buf[cap]: the bytes written or a negative errno
 * (stor__block_encode's). */
ssize_t stor__pack_encode(const stor_sample_t *s, size_t n, uint8_t *buf, size_t cap);
/* Decodes the pack of the tail row at time `t` into out[STOR_PACK_MAX]:
 * 0 with *n samples, or -EBADMSG when it is not a well-formed pack of that
 * row (a block codec error, too many readings, a reading outside
 * [t, t + STOR_PACK_SPAN_MS)). */
int stor__pack_decode(int64_t t, const void *data, size_t len, stor_sample_t *out, size_t *n);
/* The pack in columns `col` (t) and `col + 1` (data) of a row of `st`:
 * data is the value of a pack of one (as stor__bind_value binds it), else
 * the bytes stor__pack_decode reads. SQLITE_OK or SQLITE_CORRUPT. */
int stor__pack_column(sqlite3_stmt *st, int col, stor_sample_t *out, size_t *n);

/* ---- retention (retention.c) */

/* Starts a pass deleting raw rows older than raw_days and minute rollups
 * older than STOR_MINUTE_DAYS before `now_ms`; `req` (may be NULL) is
 * completed with the number of raw rows deleted when the pass ends. */
int stor__retention_open(stor_db_t *db);
void stor__retention_free(stor_db_t *db);
void stor__retention_start(stor_db_t *db, int64_t now_ms, stor_req_t *req);
/* Runs one short transaction of the active pass. */
void stor__retention_step(stor_db_t *db);
/* Ends an active pass, completing its request with `result`. */
void stor__retention_cancel(stor_db_t *db, int64_t result);

struct stor_db {
  /* set at open, read-only afterwards */
  char *path;
  int batch_ms;
  size_t batch_readings; /* at most queue_max / 2 */
  size_t queue_max;
  int raw_days;
  pthread_t thread, ckpt_thread;
  bool sync_ready; /* mu and the conditions exist */
  bool started, ckpt_started;

  /* everything below until "writer thread only" is under mu */
  pthread_mutex_t mu;
  pthread_cond_t wake;  /* writer waits here (CLOCK_MONOTONIC) */
  pthread_cond_t done;  /* flush and requests wait here */
  stor_reading_t *ring; /* queue_max slots, queued readings at [head, head + count) */
  size_t head, count;
  size_t taken;      /* readings at the head being committed now */
  uint64_t first_ms; /* when the oldest reading not taken yet arrived (monotonic) */
  uint64_t appended; /* readings ever queued */
  uint64_t settled;  /* readings ever committed (or found to be duplicates) */
  uint64_t failures; /* failed commit attempts */
  int last_err;      /* of the last failed attempt */
  int flushers;      /* threads in stor_flush: commit without waiting */
  bool hold;         /* test hook: start no batch */
  bool stopping;
  bool exited;          /* the writer thread has ended */
  uint32_t max_device;  /* highest id stor_device_id handed out */
  int roll_ms;          /* STOR_ROLL_FLUSH_MS; tests change it */
  bool roll_pending;    /* the writer holds readings not rolled up yet */
  bool roll_now;        /* ... and must write them (retention is waiting) */
  uint64_t roll_due;    /* monotonic ms when they are to be written */
  uint64_t flush_seq;   /* stor_flush calls so far */
  uint64_t flushed_seq; /* flush_seq when the last commit writing all began */
  stor_stats_t st;
  stor_req_t *req_head, *req_tail;
  pthread_cond_t ckpt_wake; /* the checkpointer waits here */
  bool ckpt_due, ckpt_stop;

  /* writer thread only (the opening thread before it starts, the closing
   * thread after it ends) */
  sqlite3 *db;
  sqlite3 *ckpt_db; /* the checkpointer's */
  sqlite3_stmt *s_begin, *s_commit, *s_rollback;
  sqlite3_stmt *s_raw_multi[STOR_MULTI_SHIFT], *s_roll[STOR_ROLLUPS], *s_latest, *s_count;
  sqlite3_stmt *s_series_get, *s_series_put, *s_series_all, *s_pend_rows, *s_dev_get, *s_dev_put,
      *s_pend_from;
  sqlite3_stmt *s_next_series, *s_bound[2], *s_delete[2];
  sqlite3_stmt *s_blk_at, *s_blk_near, *s_blk_put, *s_blk_del, *s_tail_min, *s_tail_take,
      *s_tail_del, *s_tail_all, *s_tail_span;
  int64_t tail_rows;  /* about: readings in tail (the compactor's trigger) */
  int64_t tail_min_t; /* the oldest row's t; INT64_MAX: none */
  uint64_t next_compact_check;
  uint64_t compact_failed_until; /* after a failed step, monotonic ms */
  uint64_t compacted;            /* readings compacted since open (stats) */
  bool incremental;              /* auto_vacuum = INCREMENTAL: free pages can be given back */
  int64_t vacuum_min;            /* STOR_VACUUM_MIN_PAGES; tests lower it */
  uint64_t next_vacuum_check;    /* monotonic ms */
  uint32_t *order;               /* batch_readings offsets from head, sorted per batch */
  uint32_t *sid;                 /* series (index into series.ser) of each sorted reading */
  uint32_t *cnt;                 /* readings per series, for sorting a batch */
  size_t cnt_cap;
  uint8_t *state; /* what became of each sorted reading */
  stor_series_map_t series;
  stor_pend_t *pend; /* pending buckets besides the open ones */
  size_t npend, pend_cap;
  size_t pend_series; /* series with pending readings */
  int64_t pend_min_t; /* the oldest pending reading (INT64_MAX: none) */
  bool reload;        /* the series and what is pending must be read again */
  stor_day_t days[STOR_DAY_CACHE];
  uint64_t retry_at; /* monotonic ms; 0 when the last attempt succeeded */
  uint64_t next_retention;
  int fail_rc;      /* the error of the current failure episode, 0 if none */
  unsigned retries; /* attempts in the current failure episode */
  char errmsg[256]; /* SQLite's words for the last failed batch */

  struct {
    bool active;
    int64_t cut_ms[2]; /* raw rows with t < [0]; minute rollups with t < [1] (seconds) */
    int64_t series;    /* next series to visit is the first with an id >= this */
    int table;         /* 0 raw, 1 roll_1m, within `series` */
    int64_t deleted;   /* raw rows so far */
    stor_req_t *req;
  } ret;
};

/* ---- the checkpointer (checkpoint.c) */

/* Opens its connection, starts its thread and hooks the writer's commits;
 * stop copes with a half-done start. */
int stor__ckpt_start(stor_db_t *db);
void stor__ckpt_stop(stor_db_t *db);

/* ---- test hooks */

/* While held, the writer starts no batch (requests and close still run):
 * a deterministic full queue. */
void stor__test_hold(stor_db_t *db, bool hold);
/* How long rollups may trail their raw rows (STOR_ROLL_FLUSH_MS): tests
 * lengthen it to keep readings pending. */
void stor__test_roll_ms(stor_db_t *db, int ms);
/* Compacts the whole tail into blocks now; the readings compacted or a
 * negative errno. */
int64_t stor__test_compact(stor_db_t *db);
/* Writes the pending rollups, then runs one compaction step (brief or
 * not: stor__compact_step); what the step returns. */
int64_t stor__test_step(stor_db_t *db, bool brief);
/* The free pages the writer lets stand before it gives them back
 * (STOR_VACUUM_MIN_PAGES); it looks again at once. */
void stor__test_vacuum_min(stor_db_t *db, int64_t pages);
/* The free bytes migration 12 assumes beside the file for the opens that
 * follow (tests); -1: the file system's. */
void stor__test_vacuum_room(int64_t bytes);
/* PRAGMA max_page_count on the writer's connection; returns the new limit
 * or a negative errno. */
int64_t stor__test_set_max_page_count(stor_db_t *db, int64_t pages);

#endif
