/* The receiver's decoded data (rx_int.h "decoded data"): the table of
 * tables, and the pure code that turns a stored message into their rows.
 *
 * Frames are kept as sent for audit; what the authority asks questions
 * about (a site's minute dust and noise, its tickets, alarms, energy) is
 * also written out here as plain columns, in the transaction that stores
 * the frame. Everything is driven by stor__rx_tables: a table's entry gives
 * its CN, its shape (one row per message or per record, or a wide row of
 * pollutant figures),
 * its columns with the CP key each comes from, and whether PostgreSQL
 * partitions it by month. The schema of both back ends, the INSERT and the
 * decoding are made from it, so a new record kind (the machinery records,
 * say) is one entry here and a paragraph in protocol/RX-SCHEMA.md.
 *
 * The message was authenticated before it gets here (signed records are
 * verified, all came over mutual TLS), so nothing in it is refused: a
 * value that is not what its column wants becomes NULL, bytes that are not
 * UTF-8 become '?', and the frame itself keeps what was sent. */
#include "protocol/protocol.h"
#include "storage/rx_int.h"

#include <errno.h>
#include <float.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TEXT_MAX 256 /* bytes of a decoded text value (the uplink allows 64 characters) */

/* The pollutant columns of 2051/2061/2031 (protocol/UPLINK.md's codes):
 * min, avg and max of each, then the flags, so that the 4-byte reals lie
 * together (a flag between them would cost its padding in every row). */
#define ENV_FIGURES(code, col)                                                                     \
  {col "_min", code "-Min", RX_REAL4}, {col "_avg", code "-Avg", RX_REAL4}, {                      \
    col "_max", code "-Max", RX_REAL4                                                              \
  }
#define ENV_FLAG(code, col)                                                                        \
  { col "_flag", code "-Flag", RX_TEXT }
#define ENV_POLLUTANTS(X)                                                                          \
  X("a34001", "a34001"), X("a34002", "a34002"), X("a34004", "a34004"), X("a01001", "a01001"),      \
      X("a01002", "a01002"), X("a01006", "a01006"), X("a01007", "a01007"), X("a01008", "a01008"),  \
      X("LA", "la")
#define ENV_COLS                                                                                   \
  { ENV_POLLUTANTS(ENV_FIGURES), ENV_POLLUTANTS(ENV_FLAG) }

/* The fields a 6011 and a 6012 share (protocol/UPLINK.md 6011, 6012). */
#define LEDGER_HEAD                                                                                \
  {"ledger_id", "LedgerId", RX_INT}, {"source", "Source", RX_TEXT}, {"scale", "Scale", RX_TEXT},   \
      {"ticket_no", "TicketNo", RX_INT}, {                                                         \
    "plate", "Plate", RX_TEXT                                                                      \
  }
#define LEDGER_TAIL                                                                                \
  {"gross_kg", "GrossKg", RX_INT}, {"tare_kg", "TareKg", RX_INT}, {"net_kg", "NetKg", RX_INT},     \
      {"carrier", "Carrier", RX_TEXT}, {"note", "Note", RX_TEXT},                                  \
      {"corrects", "Corrects", RX_INT}, {"reversal", "Reversal", RX_INT}, {                        \
    "ledger_hash", "LedgerHash", RX_TEXT                                                           \
  }

const rx_table_t stor__rx_tables[] = {
    {"rx_env_minute", "2051", RX_WIDE, false, true, "t", ENV_COLS},
    {"rx_env_hour", "2061", RX_WIDE, false, true, "t", ENV_COLS},
    {"rx_env_day", "2031", RX_WIDE, false, false, "t", ENV_COLS},
    {"rx_waste",
     "6011",
     RX_WHOLE,
     true,
     false,
     "seq",
     {LEDGER_HEAD,
      {"category", "Category", RX_TEXT},
      {"kind", "Kind", RX_TEXT},
      {"dest", "Dest", RX_TEXT},
      {"dest_name", "DestName", RX_TEXT},
      LEDGER_TAIL}},
    {"rx_deliveries",
     "6012",
     RX_WHOLE,
     true,
     false,
     "seq",
     {LEDGER_HEAD,
      {"material", "Material", RX_TEXT},
      {"green_cert", "GreenCert", RX_INT},
      {"dir", "Dir", RX_TEXT},
      LEDGER_TAIL}},
    {"rx_alarms",
     "6021",
     RX_WHOLE,
     true,
     false,
     "seq",
     {{"alarm_id", "AlarmId", RX_INT},
      {"state", "State", RX_TEXT},
      {"level", "Level", RX_TEXT},
      {"rule", "Rule", RX_TEXT},
      {"device", "Device", RX_TEXT},
      {"pol", "PolId", RX_TEXT},
      {"value", "Value", RX_REAL},
      {"limit_value", "Limit", RX_REAL},
      {"window_s", "WindowS", RX_INT}}},
    {"rx_energy",
     "6031",
     RX_WHOLE,
     true,
     false,
     "seq",
     {{"energy_kwh", "EnergyKwh", RX_REAL},
      {"fuel_l", "FuelL", RX_REAL},
      {"carbon_kg", "CarbonKg", RX_REAL},
      {"ef_grid", "EfGrid", RX_REAL},
      {"ef_fuel", "EfFuel", RX_REAL}}},
    {"rx_energy_equipment",
     "6031",
     RX_EACH,
     true,
     false,
     "seq, eq_id",
     {{"eq_id", "EqId", RX_TEXT},
      {"energy_kwh", "EnergyKwh", RX_REAL},
      {"fuel_l", "FuelL", RX_REAL},
      {"run_s", "RunS", RX_REAL}}},
    {"rx_machinery_register",
     "6051",
     RX_WHOLE,
     true,
     false,
     "seq",
     {{"audit_id", "AuditId", RX_INT},
      {"code", "Code", RX_TEXT},
      {"action", "Action", RX_TEXT},
      {"stage", "Stage", RX_TEXT},
      {"power_kw", "PowerKw", RX_REAL},
      {"fuel", "Fuel", RX_TEXT},
      {"label", "Label", RX_TEXT},
      {"terminal", "Terminal", RX_TEXT},
      {"machine_type", "Type", RX_TEXT},
      {"owner", "Owner", RX_TEXT},
      {"changed_by", "By", RX_TEXT},
      {"reason", "Reason", RX_TEXT}}},
    {"rx_machinery_moves",
     "6052",
     RX_WHOLE,
     true,
     false,
     "seq",
     {{"move_id", "MoveId", RX_INT},
      {"code", "Code", RX_TEXT},
      {"dir", "Dir", RX_TEXT},
      {"source", "Source", RX_TEXT},
      {"gate", "Gate", RX_TEXT},
      {"gate_no", "GateNo", RX_INT},
      {"moved_by", "By", RX_TEXT}}},
    {"rx_machinery_day",
     "6053",
     RX_WHOLE,
     true,
     false,
     "seq",
     {{"machines", "Machines", RX_INT},
      {"fuel_l", "FuelL", RX_REAL},
      {"co2_kg", "Co2Kg", RX_REAL},
      {"ef_fuel", "EfFuel", RX_REAL}}},
    {"rx_machinery_day_machine",
     "6053",
     RX_EACH,
     true,
     false,
     "seq, code",
     {{"code", "Code", RX_TEXT},
      {"registered", "Registered", RX_INT},
      {"stage", "Stage", RX_TEXT},
      {"power_kw", "PowerKw", RX_REAL},
      {"onsite_h", "OnsiteH", RX_REAL},
      {"engine_h", "EngineH", RX_REAL},
      {"idle_share", "IdleShare", RX_REAL},
      {"fuel_l", "FuelL", RX_REAL},
      {"co2_kg", "Co2Kg", RX_REAL},
      {"nox_kg", "NoxKg", RX_REAL},
      {"pm_kg", "PmKg", RX_REAL}}},
    /* The site profile (6061): one row per profile sent; the latest holds. */
    {"rx_site_profile",
     "6061",
     RX_WHOLE,
     true,
     false,
     "seq",
     {{"name", "Name", RX_TEXT},
      {"area_cast_m2", "AreaCastM2", RX_REAL},
      {"area_prefab_m2", "AreaPrefabM2", RX_REAL},
      {"latitude", "Lat", RX_REAL},
      {"longitude", "Lon", RX_REAL}}},
    {NULL, NULL, RX_WHOLE, false, false, NULL, {{NULL, NULL, RX_TEXT}}},
};

/* ---- SQL from the table */

static int put(char *out, size_t cap, size_t *len, const char *fmt, const char *a, const char *b) {
  int n = snprintf(out + *len, cap - *len, fmt, a, b);
  if (n < 0 || (size_t)n >= cap - *len)
    return -ENOSPC;
  *len += (size_t)n;
  return 0;
}

int stor__rx_table_sql(const rx_table_t *t, bool pg, char *out, size_t cap) {
  static const char *const pg_types[] = {"TEXT", "BIGINT", "DOUBLE PRECISION", "REAL"};
  static const char *const sq_types[] = {"TEXT", "INTEGER", "REAL", "REAL"};
  const char *const *ty = pg ? pg_types : sq_types;
  size_t len = 0;
  int rc = put(out, cap, &len, "CREATE TABLE IF NOT EXISTS %s(mn TEXT NOT NULL, t %s NOT NULL",
               t->name, ty[RX_INT]);
  if (rc == 0 && t->is_signed)
    rc = put(out, cap, &len, ", seq %s NOT NULL, qn TEXT NOT NULL%s", ty[RX_INT], "");
  for (int i = 0; rc == 0 && i < RX_COLS_MAX && t->cols[i].name; i++)
    rc = put(out, cap, &len, ", %s %s", t->cols[i].name, ty[t->cols[i].type]);
  if (rc == 0)
    rc = put(out, cap, &len, ", PRIMARY KEY(mn, %s))%s", t->key,
             pg && t->by_month ? " PARTITION BY RANGE (t)" : "");
  if (rc == 0)
    rc = put(out, cap, &len, ";", "", "");
  /* A site's month of signed records (the primary key serves the others). */
  if (rc == 0 && t->is_signed)
    rc = put(out, cap, &len, "CREATE INDEX IF NOT EXISTS %s_mn_t ON %s(mn, t);", t->name, t->name);
  return rc < 0 ? rc : (int)len;
}

int stor__rx_insert_sql(const rx_table_t *t, char *out, size_t cap) {
  size_t len = 0;
  int n = 2,
      rc = put(out, cap, &len, "INSERT INTO %s(mn, t%s", t->name, t->is_signed ? ", seq, qn" : "");
  if (t->is_signed)
    n += 2;
  for (int i = 0; rc == 0 && i < RX_COLS_MAX && t->cols[i].name; i++, n++)
    rc = put(out, cap, &len, ", %s%s", t->cols[i].name, "");
  if (rc == 0)
    rc = put(out, cap, &len, ") VALUES($1%s", "", "");
  for (int i = 2; rc == 0 && i <= n; i++) {
    char b[16];
    snprintf(b, sizeof(b), "%d", i);
    rc = put(out, cap, &len, ",$%s%s", b, "");
  }
  if (rc == 0)
    rc = put(out, cap, &len, ") ON CONFLICT DO NOTHING%s%s", "", "");
  return rc < 0 ? rc : n;
}

/* The column of schema version 2's one-row-per-pollutant tables that held
 * each figure. */
static const struct {
  const char *suffix, *col;
} v2_cols[] = {{"-Min", "vmin"}, {"-Avg", "vavg"}, {"-Max", "vmax"}, {"-Flag", "flag"}};

int stor__rx_convert_sql(const rx_table_t *t, const char *old, char *out, size_t cap) {
  size_t len = 0;
  int rc = put(out, cap, &len, "INSERT INTO %s(mn, t%s", t->name, "");
  for (int i = 0; rc == 0 && i < RX_COLS_MAX && t->cols[i].name; i++)
    rc = put(out, cap, &len, ", %s%s", t->cols[i].name, "");
  if (rc == 0)
    rc = put(out, cap, &len, ") SELECT mn, t%s%s", "", "");
  for (int i = 0; rc == 0 && i < RX_COLS_MAX && t->cols[i].name; i++) {
    const char *key = t->cols[i].key, *dash = strrchr(key, '-'), *col = NULL;
    for (size_t k = 0; dash && k < sizeof(v2_cols) / sizeof(v2_cols[0]); k++)
      if (!strcmp(dash, v2_cols[k].suffix))
        col = v2_cols[k].col;
    if (!col)
      return -EINVAL; /* not a column of the old shape */
    char code[64];
    snprintf(code, sizeof(code), "%.*s", (int)(dash - key), key);
    rc = put(out, cap, &len, ", MAX(CASE WHEN pol='%s' THEN %s END)", code, col);
  }
  if (rc == 0)
    rc = put(out, cap, &len, " FROM %s GROUP BY mn, t%s", old, "");
  return rc < 0 ? rc : (int)len;
}

/* ---- decoding */

typedef struct pair {
  const char *key, *value;
  int record;
} pair_t;

typedef struct cp {
  char *buf;
  pair_t *pair;
  size_t n;
  int records;
} cp_t;

/* Splits a CP: records by ';', pairs by ','; a piece without '=' is
 * skipped, as hj212.c does. */
static int cp_split(const char *cp, size_t len, cp_t *out) {
  memset(out, 0, sizeof(*out));
  size_t seps = 1;
  for (size_t i = 0; i < len; i++)
    seps += cp[i] == ';' || cp[i] == ',';
  out->buf = malloc(len + 1);
  out->pair = malloc(seps * sizeof(*out->pair));
  if (!out->buf || !out->pair)
    return -ENOMEM;
  memcpy(out->buf, cp, len);
  out->buf[len] = '\0';
  int record = 0;
  char *p = out->buf;
  for (;;) {
    size_t n = strcspn(p, ";,");
    char sep = p[n];
    p[n] = '\0';
    char *eq = strchr(p, '=');
    if (eq && eq != p) {
      *eq = '\0';
      out->pair[out->n++] = (pair_t){p, eq + 1, record};
    }
    if (!sep)
      break;
    if (sep == ';')
      record++;
    p += n + 1;
  }
  out->records = record + 1;
  return 0;
}

/* The value of `key` in record `record` (-1: any), first found. */
static const char *cp_get(const cp_t *c, int record, const char *key) {
  for (size_t i = 0; i < c->n; i++)
    if ((record < 0 || c->pair[i].record == record) && !strcmp(c->pair[i].key, key))
      return c->pair[i].value;
  return NULL;
}

/* `s` made fit for a text column in `out` (TEXT_MAX + 1 bytes): %XX
 * undone, cut at TEXT_MAX bytes on a character boundary, bytes that are not
 * UTF-8 made '?'. */
static const char *as_text(const char *s, char *out) {
  snprintf(out, TEXT_MAX + 1, "%s", s);
  char tmp[TEXT_MAX + 1];
  memcpy(tmp, out, sizeof(tmp));
  if (hj212_unescape(tmp) >= 0)
    memcpy(out, tmp, sizeof(tmp));
  unsigned char *p = (unsigned char *)out;
  while (*p) {
    int n = *p < 0x80             ? 0
            : (*p & 0xE0) == 0xC0 ? 1
            : (*p & 0xF0) == 0xE0 ? 2
            : (*p & 0xF8) == 0xF0 ? 3
                                  : -1;
    int ok = n >= 0;
    for (int i = 1; ok && i <= n; i++)
      ok = (p[i] & 0xC0) == 0x80;
    if (!ok) {
      *p++ = '?';
      continue;
    }
    p += n + 1;
  }
  return out;
}

/* `s` as the number `type` wants, written plainly into `out` (32 bytes),
 * or NULL. Only decimals: no hex, no inf, no nan, no blanks. */
static const char *as_number(const char *s, rx_type_t type, char *out) {
  if (!*s || strspn(s, "+-0123456789.eE") != strlen(s))
    return NULL;
  char *end;
  if (type == RX_INT) {
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (*end || errno)
      return NULL;
    snprintf(out, 32, "%lld", v);
    return out;
  }
  double v = strtod(s, &end);
  if (*end || !isfinite(v))
    return NULL;
  /* PostgreSQL refuses a REAL it cannot hold (and the batch with it). */
  if (type == RX_REAL4 && (fabs(v) > FLT_MAX || (v != 0 && fabs(v) < FLT_MIN)))
    return NULL;
  snprintf(out, 32, "%.15g", v);
  return out;
}

typedef struct scratch {
  char text[RX_COLS_MAX][TEXT_MAX + 1];
  char num[RX_COLS_MAX][32];
} scratch_t;

static const char *value_of(const rx_col_t *col, int i, const char *raw, scratch_t *s) {
  if (!raw)
    return NULL;
  return col->type == RX_TEXT ? as_text(raw, s->text[i]) : as_number(raw, col->type, s->num[i]);
}

static int ncols(const rx_table_t *t) {
  int n = 0;
  while (n < RX_COLS_MAX && t->cols[n].name)
    n++;
  return n;
}

/* One row from record `record` (-1: every record). */
static int row_from(const rx_table_t *t, const cp_t *c, int record, rx_row_t *r, scratch_t *s,
                    rx_row_cb cb, void *arg) {
  for (int i = 0; i < ncols(t); i++)
    r->v[i] = value_of(&t->cols[i], i, cp_get(c, record, t->cols[i].key), s);
  return cb(arg, r);
}

/* One row of every column's whole key, unless none is there. */
static int row_wide(const rx_table_t *t, const cp_t *c, rx_row_t *r, scratch_t *s, rx_row_cb cb,
                    void *arg) {
  bool any = false;
  for (int i = 0; i < ncols(t); i++) {
    const char *raw = cp_get(c, -1, t->cols[i].key);
    any = any || raw;
    r->v[i] = value_of(&t->cols[i], i, raw, s);
  }
  return any ? cb(arg, r) : 0;
}

static int decode_table(const rx_table_t *t, const stor_rx_msg_t *m, const cp_t *c, rx_row_cb cb,
                        void *arg) {
  scratch_t *s = malloc(sizeof(*s));
  if (!s)
    return -ENOMEM;
  rx_row_t r = {.table = t, .mn = m->mn, .qn = m->qn, .t = m->t, .seq = (int64_t)m->sig.seq};
  int rc = 0;
  switch (t->shape) {
  case RX_WHOLE:
    rc = row_from(t, c, -1, &r, s, cb, arg);
    break;
  case RX_EACH:
    for (int rec = 1; rc == 0 && rec < c->records; rec++)
      if (cp_get(c, rec, t->cols[0].key))
        rc = row_from(t, c, rec, &r, s, cb, arg);
    break;
  case RX_WIDE:
    rc = row_wide(t, c, &r, s, cb, arg);
    break;
  }
  free(s);
  return rc;
}

int stor__rx_decode(const stor_rx_msg_t *m, rx_row_cb cb, void *arg) {
  if (m->t < 0 || !m->cp)
    return 0;
  cp_t c = {0};
  int rc = 0;
  for (const rx_table_t *t = stor__rx_tables; rc == 0 && t->name; t++) {
    if (strcmp(t->cn, m->cn) != 0 || (t->is_signed && !m->is_signed))
      continue;
    if (!c.buf && (rc = cp_split(m->cp, m->cp_len, &c)) != 0)
      break;
    rc = decode_table(t, m, &c, cb, arg);
  }
  free(c.buf);
  free(c.pair);
  return rc;
}

/* ---- a stored message rebuilt (the backfill) */

/* Packet `pno`'s (0: the message's) failure `why`, the buffers freed. */
static int rebuild_fail(stor_rx_msg_t *m, int rc, char *err, size_t errlen, int pno,
                        const char *why) {
  if (pno)
    snprintf(err, errlen, "packet %d: %s", pno, why);
  else
    snprintf(err, errlen, "%s", why);
  free(m->packets);
  free(m->cp);
  m->packets = m->cp = NULL;
  return rc;
}

int stor__rx_rebuild(const char *const *segs, const size_t *lens, int n, stor_rx_msg_t *m,
                     char *err, size_t errlen) {
  size_t plen = 0;
  for (int i = 0; i < n; i++)
    plen += lens[i] + 2;
  m->packets = malloc(plen + 1);
  m->cp = malloc(plen + 1); /* the CPs are shorter than their segments */
  m->packets_len = m->cp_len = 0;
  hj212_frame_t *f = malloc(sizeof(*f));
  char *line = malloc(HJ212_FRAME_MAX + 8), why[160];
  int rc = 0;
  if (!m->packets || !m->cp || !f || !line)
    rc = rebuild_fail(m, -ENOMEM, err, errlen, 0, "out of memory");
  for (int i = 0; rc == 0 && i < n; i++) {
    if (lens[i] > HJ212_DATA_MAX || memchr(segs[i], '\0', lens[i])) {
      rc = rebuild_fail(m, -EBADMSG, err, errlen, i + 1,
                        "not a data segment (over 1024 bytes or holding a NUL)");
      break;
    }
    int k = snprintf(line, HJ212_FRAME_MAX + 8, "##%04zu%.*s%04X", lens[i], (int)lens[i], segs[i],
                     hj212_crc(segs[i], lens[i]));
    if (hj212_decode(line, (size_t)k, f, why, sizeof(why)) != 0) {
      rc = rebuild_fail(m, -EBADMSG, err, errlen, i + 1, why);
      break;
    }
    if (n > 1 && f->h.pno != i + 1) {
      rc = rebuild_fail(m, -EBADMSG, err, errlen, i + 1, "PNO out of place");
      break;
    }
    if (i == 0) { /* as the receiver's msg_new() and DataTime of the first record */
      snprintf(m->mn, sizeof(m->mn), "%s", f->h.mn);
      snprintf(m->qn, sizeof(m->qn), "%s", f->h.qn);
      snprintf(m->cn, sizeof(m->cn), "%s", f->h.cn);
      snprintf(m->st, sizeof(m->st), "%s", f->h.st);
      snprintf(m->pw, sizeof(m->pw), "%s", f->h.pw);
      m->flag = f->h.flag;
      const char *dt = hj212_get(f, 0, "DataTime");
      m->t = dt ? hj212_datatime(dt, 480 /* Beijing time */) : -1;
    }
    memcpy(m->packets + m->packets_len, segs[i], lens[i]);
    memcpy(m->packets + m->packets_len + lens[i], "\r\n", 2);
    m->packets_len += lens[i] + 2;
    if (i > 0)
      m->cp[m->cp_len++] = ';';
    memcpy(m->cp + m->cp_len, f->cp, f->cp_len);
    m->cp_len += f->cp_len;
  }
  if (rc == 0) {
    m->packets[m->packets_len] = '\0';
    m->cp[m->cp_len] = '\0';
    m->npackets = n;
  }
  free(f);
  free(line);
  return rc;
}
