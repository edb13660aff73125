/* Non-road mobile machinery on the wire: the register's rows, its CSV
 * import, and gate events (POST /g, protocol/COAP.md).
 *
 * A gate event is a flat object of five scalars. Both decoders reduce a
 * field to one small tagged value and hand it to the same setter
 * (field_set()), then the same whole-event check (finish()), so JSON and
 * CBOR accept exactly the same events and refuse the others in the same
 * words. The CBOR side walks the bytes itself: a definite map of text keys
 * and integer, text or float values is all an event can be, so no item
 * tree is built and a header claiming 2^32 pairs costs nothing.
 *
 * A resend of an event must compare equal to what is stored (the gate's
 * number makes it idempotent), so the decoder is strict: unknown or
 * repeated fields, fractional numbers and relative times are refused. */
#include "protocol/protocol.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const stage_names[PROTO_STAGE_COUNT] = {"0", "I", "II", "III", "IV", "electric"};
static const char *const fuel_names[PROTO_FUEL_COUNT] = {"diesel", "petrol", "electric"};

const char *proto_stage_name(int s) {
  return s >= 0 && s < PROTO_STAGE_COUNT ? stage_names[s] : NULL;
}

int proto_stage_from_name(const char *s) {
  for (int i = 0; s && i < PROTO_STAGE_COUNT; i++)
    if (strcmp(s, stage_names[i]) == 0)
      return i;
  return -1;
}

const char *proto_fuel_name(int f) { return f >= 0 && f < PROTO_FUEL_COUNT ? fuel_names[f] : NULL; }

int proto_fuel_from_name(const char *s) {
  for (int i = 0; s && i < PROTO_FUEL_COUNT; i++)
    if (strcmp(s, fuel_names[i]) == 0)
      return i;
  return -1;
}

bool proto_machine_code_ok(const char *s) {
  size_t n = strlen(s);
  if (n == 0 || n > PROTO_MACHINE_CODE_MAX)
    return false;
  for (size_t i = 0; i < n; i++)
    if (!isascii((unsigned char)s[i]) || !(isalnum((unsigned char)s[i]) || s[i] == '-'))
      return false;
  return true;
}

static bool device_id_ok(const char *s) {
  size_t n = strlen(s);
  if (n == 0 || n > PROTO_DEVICE_MAX)
    return false;
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if (!isascii(c) || !(isalnum(c) || c == '.' || c == '_' || c == '-'))
      return false;
  }
  return true;
}

/* Printable text without control bytes. */
static bool text_ok(const char *s) {
  for (; *s; s++)
    if ((unsigned char)*s < 0x20 || *s == 0x7f)
      return false;
  return true;
}

/* The English sentence into `err`, and `code` with the sentence's values
 * for proto_why(). */
static int fail(char *err, size_t errlen, proto_why_code_t code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int fail(char *err, size_t errlen, proto_why_code_t code, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  if (err && errlen) {
    va_list ap2;
    va_copy(ap2, ap);
    vsnprintf(err, errlen, fmt, ap2);
    va_end(ap2);
  }
  proto__why_set(code, fmt, ap);
  va_end(ap);
  return -EBADMSG;
}

int proto_machine_check(const proto_machine_t *m, char *err, size_t errlen) {
  proto_why_clear();
  if (!proto_machine_code_ok(m->code))
    return fail(err, errlen, PROTO_WHY_MACHINE_CODE,
                "code \"%.40s\" is not a registration code (1-%d of A-Z a-z 0-9 -)", m->code,
                PROTO_MACHINE_CODE_MAX);
  if (!m->type[0] || !text_ok(m->type))
    return fail(err, errlen, PROTO_WHY_MACHINE_TYPE,
                "type is required (excavator, loader, crane, ...)");
  if (!proto_stage_name(m->stage))
    return fail(err, errlen, PROTO_WHY_MACHINE_STAGE,
                "stage must be 0, I, II, III, IV or electric");
  if (!(m->power_kw > 0 && m->power_kw <= PROTO_MACHINE_KW_MAX))
    return fail(err, errlen, PROTO_WHY_MACHINE_POWER,
                "power_kw must be more than 0 and at most %.0f", PROTO_MACHINE_KW_MAX);
  if (!proto_fuel_name(m->fuel))
    return fail(err, errlen, PROTO_WHY_MACHINE_FUEL, "fuel must be diesel, petrol or electric");
  if ((m->stage == PROTO_STAGE_ELECTRIC) != (m->fuel == PROTO_FUEL_ELECTRIC))
    return fail(err, errlen, PROTO_WHY_MACHINE_ELECTRIC,
                "an electric machine has stage electric and fuel electric, both");
  if (!text_ok(m->owner))
    return fail(err, errlen, PROTO_WHY_MACHINE_OWNER, "owner has control characters");
  for (const char *c = m->label; *c; c++)
    if (*c < 'a' || *c > 'z')
      return fail(err, errlen, PROTO_WHY_MACHINE_LABEL,
                  "label is a colour in lower-case letters (green, yellow, ...)");
  if (m->terminal[0] && !device_id_ok(m->terminal))
    return fail(err, errlen, PROTO_WHY_MACHINE_TERMINAL,
                "terminal is a device id (1-%d of A-Z a-z 0-9 . _ -)", PROTO_DEVICE_MAX);
  return 0;
}

/* ======================================================================
 * ---- CSV (RFC 4180 quoting) */

enum col { C_CODE, C_TYPE, C_STAGE, C_POWER, C_FUEL, C_OWNER, C_LABEL, C_TERMINAL, C_COUNT };
static const char *const col_names[C_COUNT] = {"code", "type",  "stage", "power_kw",
                                               "fuel", "owner", "label", "terminal"};
#define CELL_MAX 128
#define COLS_MAX 32

/* Splits one record starting at *p (at most `end`) into cells; moves *p
 * past its line end. Returns the number of cells, or -1 for a cell too
 * long or an unterminated quote. */
static int split_line(const char **p, const char *end, char cells[COLS_MAX][CELL_MAX]) {
  const char *s = *p;
  int n = 0;
  bool bad = false;
  for (;;) {
    size_t k = 0;
    char *cell = n < COLS_MAX ? cells[n] : NULL;
    if (s < end && *s == '"') {
      s++;
      for (;;) {
        if (s >= end) {
          bad = true;
          break;
        }
        if (*s == '"') {
          if (s + 1 < end && s[1] == '"') {
            s += 2;
            if (cell && k + 1 < CELL_MAX)
              cell[k++] = '"';
            else
              bad = true;
            continue;
          }
          s++;
          break;
        }
        if (cell && k + 1 < CELL_MAX)
          cell[k++] = *s;
        else
          bad = true;
        s++;
      }
    }
    while (s < end && *s != ',' && *s != '\n' && *s != '\r') {
      if (cell && k + 1 < CELL_MAX)
        cell[k++] = *s;
      else
        bad = true;
      s++;
    }
    if (cell) {
      while (k > 0 && (cell[k - 1] == ' ' || cell[k - 1] == '\t'))
        k--;
      cell[k] = '\0';
      size_t lead = strspn(cell, " \t");
      memmove(cell, cell + lead, k - lead + 1);
    }
    n++;
    if (s < end && *s == ',') {
      s++;
      continue;
    }
    break;
  }
  while (s < end && *s != '\n')
    s++;
  if (s < end)
    s++;
  *p = s;
  return bad || n > COLS_MAX ? -1 : n;
}

/* The bad lines' codes and values, for proto_why_lines(). */
struct bad_lines {
  proto_why_t l[PROTO_WHY_LINES];
  int n, more;
};

/* Appends "line N: ..." to err (one line each), keeping it terminated;
 * the line's code and values (proto_why()) go to `bl`. */
static void note(char *err, size_t errlen, int line, const char *msg, struct bad_lines *bl) {
  if (bl->n < PROTO_WHY_LINES) {
    bl->l[bl->n] = *proto_why();
    bl->l[bl->n++].line = line;
  } else {
    bl->more++;
  }
  size_t used = err && errlen ? strlen(err) : 0;
  if (err && used + 1 < errlen)
    snprintf(err + used, errlen - used, "%sline %d: %s", used ? "\n" : "", line, msg);
}

static int row_from_cells(char cells[COLS_MAX][CELL_MAX], int n, const int *col, int line,
                          proto_machine_t *m, char *msg, size_t msglen) {
  memset(m, 0, sizeof(*m));
  m->line = line;
  const char *v[C_COUNT];
  for (int c = 0; c < C_COUNT; c++)
    v[c] = col[c] >= 0 && col[c] < n ? cells[col[c]] : "";
  if (strlen(v[C_CODE]) > PROTO_MACHINE_CODE_MAX || strlen(v[C_TYPE]) > PROTO_MACHINE_TEXT_MAX ||
      strlen(v[C_OWNER]) > PROTO_MACHINE_TEXT_MAX || strlen(v[C_LABEL]) > PROTO_MACHINE_LABEL_MAX ||
      strlen(v[C_TERMINAL]) > PROTO_DEVICE_MAX)
    return fail(msg, msglen, PROTO_WHY_MCSV_LONG,
                "a field is too long (code %d, type and owner %d bytes)", PROTO_MACHINE_CODE_MAX,
                PROTO_MACHINE_TEXT_MAX);
  snprintf(m->code, sizeof(m->code), "%s", v[C_CODE]);
  snprintf(m->type, sizeof(m->type), "%s", v[C_TYPE]);
  snprintf(m->owner, sizeof(m->owner), "%s", v[C_OWNER]);
  snprintf(m->label, sizeof(m->label), "%s", v[C_LABEL]);
  snprintf(m->terminal, sizeof(m->terminal), "%s", v[C_TERMINAL]);
  int st = proto_stage_from_name(v[C_STAGE]);
  if (st < 0)
    return fail(msg, msglen, PROTO_WHY_MCSV_STAGE,
                "stage \"%.20s\" is not 0, I, II, III, IV or electric", v[C_STAGE]);
  m->stage = (int8_t)st;
  char *endp;
  m->power_kw = strtod(v[C_POWER], &endp);
  if (!v[C_POWER][0] || *endp || !isfinite(m->power_kw))
    return fail(msg, msglen, PROTO_WHY_MCSV_POWER, "power_kw \"%.20s\" is not a number (kW)",
                v[C_POWER]);
  int fu = v[C_FUEL][0] ? proto_fuel_from_name(v[C_FUEL])
                        : (st == PROTO_STAGE_ELECTRIC ? PROTO_FUEL_ELECTRIC : PROTO_FUEL_DIESEL);
  if (fu < 0)
    return fail(msg, msglen, PROTO_WHY_MCSV_FUEL,
                "fuel \"%.20s\" is not diesel, petrol or electric", v[C_FUEL]);
  m->fuel = (int8_t)fu;
  return proto_machine_check(m, msg, msglen);
}

/* `msg`, a sentence without values, recorded as `code` for proto_why(). */
static const char *why_text(proto_why_code_t code, const char *msg) {
  fail(NULL, 0, code, "%s", "");
  proto__why_mut()->nargs = 0;
  return msg;
}

int proto_machine_csv_parse(const char *text, size_t len, proto_machine_t **items, size_t *n,
                            char *err, size_t errlen) {
  char(*cl)[CELL_MAX] = calloc(COLS_MAX, CELL_MAX);
  const char *p = text, *end = text + len;
  int col[C_COUNT], line = 0, bad = 0;
  proto_machine_t *out = NULL;
  size_t cnt = 0, cap = 0;
  bool header = false;
  struct bad_lines *first = calloc(1, sizeof(*first));
  proto_why_clear();
  *items = NULL;
  *n = 0;
  if (err && errlen)
    err[0] = '\0';
  if (!cl || !first) {
    free(cl);
    free(first);
    return -ENOMEM;
  }
  if (len >= 3 && memcmp(p, "\xef\xbb\xbf", 3) == 0)
    p += 3;
  while (p < end) {
    line++;
    const char *start = p;
    int nc = split_line(&p, end, cl);
    if (memchr(start, '\0', (size_t)(p - start))) {
      note(err, errlen, line,
           why_text(PROTO_WHY_MCSV_NUL, "a NUL byte: this is not a CSV text file"), first);
      bad++;
      continue;
    }
    if (nc < 0) {
      note(err, errlen, line,
           why_text(PROTO_WHY_MCSV_CELL,
                    "a cell is longer than 127 bytes, or a quote is not closed"),
           first);
      bad++;
      continue;
    }
    if ((nc == 1 && cl[0][0] == '\0') || cl[0][0] == '#')
      continue;
    if (!header) {
      for (int c = 0; c < C_COUNT; c++) {
        col[c] = -1;
        for (int i = 0; i < nc; i++)
          if (strcasecmp(cl[i], col_names[c]) == 0)
            col[c] = i;
      }
      if (col[C_CODE] < 0 || col[C_TYPE] < 0 || col[C_STAGE] < 0 || col[C_POWER] < 0) {
        note(err, errlen, line,
             why_text(PROTO_WHY_MCSV_COLUMNS,
                      "the header must name the columns code, type, stage and power_kw (fuel, "
                      "owner, label, terminal optional)"),
             first);
        proto__why_lines_set(first->l, first->n, first->more);
        free(first);
        free(cl);
        return -EBADMSG;
      }
      header = true;
      continue;
    }
    proto_machine_t m;
    char msg[160];
    if (row_from_cells(cl, nc, col, line, &m, msg, sizeof(msg)) != 0) {
      note(err, errlen, line, msg, first);
      bad++;
      continue;
    }
    bool twice = false;
    for (size_t i = 0; i < cnt && !twice; i++)
      twice = strcmp(out[i].code, m.code) == 0;
    if (twice) {
      fail(msg, sizeof(msg), PROTO_WHY_MCSV_TWICE, "machine %s is listed twice", m.code);
      note(err, errlen, line, msg, first);
      bad++;
      continue;
    }
    if (cnt == PROTO_MACHINE_ROWS_MAX) {
      note(err, errlen, line, why_text(PROTO_WHY_MCSV_MANY, "more than 10000 machines"), first);
      bad++;
      break;
    }
    if (cnt == cap) {
      size_t nc2 = cap ? cap * 2 : 16;
      proto_machine_t *g = realloc(out, nc2 * sizeof(*out));
      if (!g) {
        free(out);
        free(cl);
        free(first);
        return -ENOMEM;
      }
      out = g;
      cap = nc2;
    }
    out[cnt++] = m;
  }
  free(cl);
  if (!header && !bad) {
    note(err, errlen, line ? line : 1,
         why_text(PROTO_WHY_MCSV_HEADER, "no header: the first line must name the columns"), first);
    bad++;
  }
  if (bad) {
    free(out);
    proto__why_lines_set(first->l, first->n, first->more);
    free(first);
    return -EBADMSG;
  }
  free(first);
  proto_why_clear();
  *items = out;
  *n = cnt;
  return 0;
}

/* ======================================================================
 * ---- gate events */

enum gfield { G_GATE, G_NO, G_T, G_CODE, G_DIR, G_COUNT };
static const char *const gfield_names[G_COUNT] = {"gate", "no", "t", "code", "dir"};

struct gval {
  enum { V_INT, V_REAL, V_TEXT, V_OTHER } kind;
  int64_t i;
  double r;
  const char *s;
  size_t len;
};

struct gdec {
  double now, oldest;
  proto_gate_event_t *out;
  unsigned seen;
  char *err;
  size_t errlen;
};

static int g_text(struct gdec *d, enum gfield f, const struct gval *v, size_t max, char *dst) {
  if (v->kind != V_TEXT)
    return fail(d->err, d->errlen, PROTO_WHY_GATE_EVENT, "field \"%s\" must be text",
                gfield_names[f]);
  if (v->len == 0 || v->len > max || memchr(v->s, '\0', v->len))
    return fail(d->err, d->errlen, PROTO_WHY_GATE_EVENT, "field \"%s\" must be 1 to %zu bytes",
                gfield_names[f], max);
  memcpy(dst, v->s, v->len);
  dst[v->len] = '\0';
  return 0;
}

static int g_int(struct gdec *d, enum gfield f, const struct gval *v, int64_t *dst) {
  if (v->kind == V_REAL && v->r == floor(v->r) && fabs(v->r) <= (double)PROTO_GATE_NO_MAX) {
    *dst = (int64_t)v->r;
    return 0;
  }
  if (v->kind != V_INT)
    return fail(d->err, d->errlen, PROTO_WHY_GATE_EVENT, "field \"%s\" must be a whole number",
                gfield_names[f]);
  *dst = v->i;
  return 0;
}

static int field_set(struct gdec *d, const char *key, size_t klen, const struct gval *v) {
  int f = -1;
  for (int i = 0; i < G_COUNT; i++)
    if (strlen(gfield_names[i]) == klen && memcmp(gfield_names[i], key, klen) == 0)
      f = i;
  if (f < 0) {
    char k[40];
    size_t n = klen < sizeof(k) - 1 ? klen : sizeof(k) - 1;
    for (size_t i = 0; i < n; i++)
      k[i] = (key[i] >= 0x20 && key[i] < 0x7f) ? key[i] : '?';
    k[n] = '\0';
    return fail(d->err, d->errlen, PROTO_WHY_GATE_EVENT,
                "unknown field \"%s\": a gate event has gate, no, t, code and dir", k);
  }
  if (d->seen & (1u << f))
    return fail(d->err, d->errlen, PROTO_WHY_GATE_EVENT, "field \"%s\" is repeated",
                gfield_names[f]);
  d->seen |= 1u << f;
  proto_gate_event_t *e = d->out;
  char dir[8];
  switch ((enum gfield)f) {
  case G_GATE:
    if (g_text(d, G_GATE, v, PROTO_DEVICE_MAX, e->gate) != 0)
      return -EBADMSG;
    if (!device_id_ok(e->gate))
      return fail(d->err, d->errlen, PROTO_WHY_GATE_EVENT,
                  "field \"gate\" is a device id (A-Z a-z 0-9 . _ -)");
    return 0;
  case G_CODE:
    if (g_text(d, G_CODE, v, PROTO_MACHINE_CODE_MAX, e->code) != 0)
      return -EBADMSG;
    if (!proto_machine_code_ok(e->code))
      return fail(d->err, d->errlen, PROTO_WHY_GATE_EVENT,
                  "field \"code\" is a registration code (A-Z a-z 0-9 -)");
    return 0;
  case G_DIR:
    if (g_text(d, G_DIR, v, sizeof(dir) - 1, dir) != 0)
      return -EBADMSG;
    if (strcmp(dir, "in") != 0 && strcmp(dir, "out") != 0)
      return fail(d->err, d->errlen, PROTO_WHY_GATE_EVENT,
                  "field \"dir\" must be \"in\" or \"out\"");
    e->in = dir[0] == 'i';
    return 0;
  case G_NO:
    if (g_int(d, G_NO, v, &e->no) != 0)
      return -EBADMSG;
    if (e->no < 1 || e->no > PROTO_GATE_NO_MAX)
      return fail(d->err, d->errlen, PROTO_WHY_GATE_EVENT, "field \"no\" must be 1 to 2^53 - 1");
    return 0;
  case G_T:
    if (g_int(d, G_T, v, &e->t) != 0)
      return -EBADMSG;
    if ((double)e->t > d->now + PROTO_FUTURE_MAX_S)
      return fail(d->err, d->errlen, PROTO_WHY_GATE_EVENT,
                  "field \"t\" is more than 5 minutes ahead: check the clock");
    if ((double)e->t < d->oldest)
      return fail(d->err, d->errlen, PROTO_WHY_GATE_EVENT,
                  "field \"t\" is too old (or not absolute Unix seconds)");
    return 0;
  default:
    return -EBADMSG;
  }
}

static int finish(struct gdec *d) {
  for (int f = 0; f < G_COUNT; f++)
    if (!(d->seen & (1u << f)))
      return fail(d->err, d->errlen, PROTO_WHY_GATE_EVENT, "field \"%s\" is required",
                  gfield_names[f]);
  return 0;
}

static void gdec_init(struct gdec *d, double now, double oldest, proto_gate_event_t *out, char *err,
                      size_t errlen) {
  memset(out, 0, sizeof(*out));
  *d = (struct gdec){now, oldest, out, 0, err, errlen};
  if (err && errlen)
    err[0] = '\0';
}

int proto_gate_decode_json(const uint8_t *buf, size_t len, double now, double oldest,
                           proto_gate_event_t *out, char *err, size_t errlen) {
  struct gdec d;
  gdec_init(&d, now, oldest, out, err, errlen);
  json_error_t je;
  json_t *root = json_loadb((const char *)buf, len, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &je);
  if (!root)
    return fail(err, errlen, PROTO_WHY_GATE_EVENT,
                "not JSON (or a field is repeated): line %d column %d", je.line, je.column);
  int rc = 0;
  if (!json_is_object(root))
    rc = fail(err, errlen, PROTO_WHY_GATE_EVENT, "a gate event is one JSON object");
  const char *key;
  json_t *val;
  json_object_foreach(root, key, val) {
    if (rc != 0)
      break;
    struct gval v = {.kind = V_OTHER};
    if (json_is_integer(val)) {
      v.kind = V_INT;
      v.i = json_integer_value(val);
    } else if (json_is_real(val)) {
      v.kind = V_REAL;
      v.r = json_real_value(val);
    } else if (json_is_string(val)) {
      v.kind = V_TEXT;
      v.s = json_string_value(val);
      v.len = json_string_length(val);
    }
    rc = field_set(&d, key, strlen(key), &v);
  }
  json_decref(root);
  return rc ? rc : finish(&d);
}

/* ---- CBOR (RFC 8949), by hand: the head of an item. */
static int cbor_head(const uint8_t **p, const uint8_t *end, int *major, uint64_t *arg, int *info) {
  if (*p >= end)
    return -1;
  uint8_t b = *(*p)++;
  *major = b >> 5;
  *info = b & 31;
  if (*info < 24) {
    *arg = (uint64_t)*info;
    return 0;
  }
  int n = *info == 24 ? 1 : *info == 25 ? 2 : *info == 26 ? 4 : *info == 27 ? 8 : -1;
  if (n < 0 || end - *p < n)
    return -1;
  uint64_t v = 0;
  for (int i = 0; i < n; i++)
    v = v << 8 | *(*p)++;
  *arg = v;
  return 0;
}

static int cbor_value(const uint8_t **p, const uint8_t *end, struct gval *v) {
  int major, info;
  uint64_t a;
  if (cbor_head(p, end, &major, &a, &info) != 0)
    return -1;
  switch (major) {
  case 0:
  case 1:
    v->kind = a > (uint64_t)INT64_MAX ? V_OTHER : V_INT;
    v->i = major == 0 ? (int64_t)a : -1 - (int64_t)a;
    return 0;
  case 3:
    if (a > (uint64_t)(end - *p))
      return -1;
    v->kind = V_TEXT;
    v->s = (const char *)*p;
    v->len = (size_t)a;
    *p += a;
    return 0;
  case 7:
    if (info == 26) {
      float f;
      uint32_t u = (uint32_t)a;
      memcpy(&f, &u, sizeof(f));
      v->kind = V_REAL;
      v->r = f;
    } else if (info == 27) {
      memcpy(&v->r, &a, sizeof(v->r));
      v->kind = V_REAL;
    } else {
      v->kind = V_OTHER; /* booleans, null, half floats: no field takes them */
    }
    return 0;
  default:
    v->kind = V_OTHER; /* byte strings, arrays, maps, tags: refused by the field */
    return 1;
  }
}

int proto_gate_decode_cbor(const uint8_t *buf, size_t len, double now, double oldest,
                           proto_gate_event_t *out, char *err, size_t errlen) {
  struct gdec d;
  gdec_init(&d, now, oldest, out, err, errlen);
  const uint8_t *p = buf, *end = buf + len;
  int major, info;
  uint64_t n;
  if (cbor_head(&p, end, &major, &n, &info) != 0 || major != 5 || info == 31)
    return fail(err, errlen, PROTO_WHY_GATE_EVENT,
                "a gate event in CBOR is one definite map with text keys");
  if (n > G_COUNT)
    return fail(err, errlen, PROTO_WHY_GATE_EVENT, "a gate event has 5 fields, not %" PRIu64, n);
  for (uint64_t i = 0; i < n; i++) {
    struct gval k, v;
    if (cbor_value(&p, end, &k) < 0 || k.kind != V_TEXT)
      return fail(err, errlen, PROTO_WHY_GATE_EVENT, "pair %" PRIu64 ": the key must be text", i);
    int rc = cbor_value(&p, end, &v);
    if (rc < 0)
      return fail(err, errlen, PROTO_WHY_GATE_EVENT,
                  "pair %" PRIu64 ": the value is cut short or malformed", i);
    if ((rc = field_set(&d, k.s, k.len, &v)) != 0)
      return rc;
  }
  if (p != end)
    return fail(err, errlen, PROTO_WHY_GATE_EVENT, "%zu bytes follow the map", (size_t)(end - p));
  return finish(&d);
}

int proto_gate_encode_json(const proto_gate_event_t *e, char *buf, size_t cap) {
  int n = snprintf(buf, cap,
                   "{\"gate\":\"%s\",\"no\":%" PRId64 ",\"t\":%" PRId64
                   ",\"code\":\"%s\",\"dir\":\"%s\"}",
                   e->gate, e->no, e->t, e->code, e->in ? "in" : "out");
  return n < 0 || (size_t)n >= cap ? -ENOSPC : n;
}

static int put_head(uint8_t *buf, size_t cap, size_t *at, int major, uint64_t a) {
  uint8_t h[9];
  size_t n;
  if (a < 24) {
    h[0] = (uint8_t)(major << 5 | a);
    n = 1;
  } else {
    int bytes = a <= 0xff ? 1 : a <= 0xffff ? 2 : a <= 0xffffffffu ? 4 : 8;
    h[0] = (uint8_t)(major << 5 | (bytes == 1 ? 24 : bytes == 2 ? 25 : bytes == 4 ? 26 : 27));
    for (int i = 0; i < bytes; i++)
      h[1 + i] = (uint8_t)(a >> (8 * (bytes - 1 - i)));
    n = 1 + (size_t)bytes;
  }
  if (*at + n > cap)
    return -ENOSPC;
  memcpy(buf + *at, h, n);
  *at += n;
  return 0;
}

static int put_text(uint8_t *buf, size_t cap, size_t *at, const char *s) {
  size_t n = strlen(s);
  if (put_head(buf, cap, at, 3, n) != 0 || *at + n > cap)
    return -ENOSPC;
  memcpy(buf + *at, s, n);
  *at += n;
  return 0;
}

static int put_int(uint8_t *buf, size_t cap, size_t *at, int64_t v) {
  return v >= 0 ? put_head(buf, cap, at, 0, (uint64_t)v)
                : put_head(buf, cap, at, 1, (uint64_t)(-1 - v));
}

int proto_gate_encode_cbor(const proto_gate_event_t *e, uint8_t *buf, size_t cap) {
  size_t at = 0;
  int rc = put_head(buf, cap, &at, 5, G_COUNT);
  rc = rc ? rc : put_text(buf, cap, &at, "gate");
  rc = rc ? rc : put_text(buf, cap, &at, e->gate);
  rc = rc ? rc : put_text(buf, cap, &at, "no");
  rc = rc ? rc : put_int(buf, cap, &at, e->no);
  rc = rc ? rc : put_text(buf, cap, &at, "t");
  rc = rc ? rc : put_int(buf, cap, &at, e->t);
  rc = rc ? rc : put_text(buf, cap, &at, "code");
  rc = rc ? rc : put_text(buf, cap, &at, e->code);
  rc = rc ? rc : put_text(buf, cap, &at, "dir");
  rc = rc ? rc : put_text(buf, cap, &at, e->in ? "in" : "out");
  return rc ? rc : (int)at;
}
