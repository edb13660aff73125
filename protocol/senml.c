/* SenML (RFC 8428) packs in JSON and CBOR: decoders and encoders.
 *
 * Both decoders feed the same record builder: a syntax walker reports each
 * field of a record as it meets it (record_text(), record_number(),
 * record_bool()), and record_end() applies the base fields, resolves the
 * name, value, unit and time and appends one canonical proto_record_t. So
 * the two formats cannot drift apart in what they accept, and every
 * rejection says which record and which field, in the same words.
 *
 * The decoders run on the gateway's event loop for every request, so they
 * are built not to allocate beyond what the JSON parser needs: CBOR is read
 * with libcbor's streaming decoder straight from the request buffer (no item
 * tree, so a header claiming 2^32 items costs nothing), strings are copied
 * into short fixed buffers, and duplicates are found with a linear scan for
 * small packs and a small open-addressing table for large ones. */
#include "protocol/protocol.h"

#include <assert.h>
#include <cbor.h>
#include <errno.h>
#include <float.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

/* ---- labels: RFC 8428 section 4.1 (JSON names), section 6 table 6 (CBOR) */
enum label {
  L_BVER,
  L_BN,
  L_BT,
  L_BU,
  L_BV,
  L_BS,
  L_N,
  L_U,
  L_V,
  L_VS,
  L_VB,
  L_S,
  L_T,
  L_UT,
  L_VD
};
#define L_COUNT (L_VD + 1)
#define L_UNKNOWN L_COUNT
#define BIT(l) (1u << (l))

enum ltype { T_NUMBER, T_TEXT, T_BOOL, T_UNSUPPORTED };

static const struct label_info {
  char name[5];
  uint8_t len;
  int8_t cbor;
  uint8_t type;
  const char *what; /* for messages */
} labels[L_COUNT] = {
    [L_BVER] = {"bver", 4, -1, T_NUMBER, "base version"},
    [L_BN] = {"bn", 2, -2, T_TEXT, "base name"},
    [L_BT] = {"bt", 2, -3, T_NUMBER, "base time"},
    [L_BU] = {"bu", 2, -4, T_TEXT, "base unit"},
    [L_BV] = {"bv", 2, -5, T_NUMBER, "base value"},
    [L_BS] = {"bs", 2, -6, T_UNSUPPORTED, "base sum"},
    [L_N] = {"n", 1, 0, T_TEXT, "name"},
    [L_U] = {"u", 1, 1, T_TEXT, "unit"},
    [L_V] = {"v", 1, 2, T_NUMBER, "value"},
    [L_VS] = {"vs", 2, 3, T_UNSUPPORTED, "string value"},
    [L_VB] = {"vb", 2, 4, T_BOOL, "boolean value"},
    [L_S] = {"s", 1, 5, T_UNSUPPORTED, "sum"},
    [L_T] = {"t", 1, 6, T_NUMBER, "time"},
    [L_UT] = {"ut", 2, 7, T_NUMBER, "update time"},
    [L_VD] = {"vd", 2, 8, T_UNSUPPORTED, "data value"},
};

static const char *const type_names[] = {
    [T_NUMBER] = "a number",
    [T_TEXT] = "a string",
    [T_BOOL] = "true or false",
    [T_UNSUPPORTED] = "absent",
};

#define SENML_VERSION 10 /* RFC 8428 4.4: bver defaults to 10 */

/* Every quantity name, for "unknown quantity" messages. */
static const char known_quantities[] =
#define X(e, name, unit, level) ", " name
    PROTO_QUANTITY_MAP(X)
#undef X
    ;

static int label_from_name(const char *s, size_t len) {
  for (int l = 0; l < L_COUNT; l++)
    if (labels[l].len == len && labels[l].name[0] == s[0] && memcmp(labels[l].name, s, len) == 0)
      return l;
  return L_UNKNOWN;
}

static int label_from_cbor(int64_t key) {
  static const uint8_t by_key[] = {/* key + 6, for keys -6..8 */
                                   L_BS, L_BV, L_BU, L_BT, L_BN, L_BVER, L_N, L_U,
                                   L_V,  L_VS, L_VB, L_S,  L_T,  L_UT,   L_VD};
  return key >= -6 && key <= 8 ? by_key[key + 6] : L_UNKNOWN;
}

/* ---- short strings: names and units are copied, never kept as pointers,
 * so a CBOR indefinite-length string and a JSON string look the same. */
#define TEXT_MAX 63

struct text {
  uint8_t len;
  bool cut; /* longer than TEXT_MAX: matches nothing, shown with "..." */
  char s[TEXT_MAX + 1];
};

static void text_set(struct text *t, const char *s, size_t len) {
  t->cut = len > TEXT_MAX;
  t->len = (uint8_t)(t->cut ? TEXT_MAX : len);
  memcpy(t->s, s, t->len);
  t->s[t->len] = '\0';
}

/* Quotes untrusted bytes for a one-line message: at most 40 of them, quote,
 * backslash and anything outside printable ASCII escaped. */
#define QUOTE_CAP 176

static const char *quote(char *dst, const char *s, size_t len, bool cut) {
  size_t o = 0;
  dst[o++] = '"';
  for (size_t i = 0; i < len; i++) {
    unsigned char c = (unsigned char)s[i];
    if (i == 40) {
      cut = true;
      break;
    }
    if (c == '"' || c == '\\') {
      dst[o++] = '\\';
      dst[o++] = (char)c;
    } else if (c < 0x20 || c >= 0x7f) {
      o += (size_t)snprintf(dst + o, QUOTE_CAP - o, "\\x%02x", c);
    } else {
      dst[o++] = (char)c;
    }
  }
  if (cut) {
    memcpy(dst + o, "...", 3);
    o += 3;
  }
  dst[o++] = '"';
  dst[o] = '\0';
  return dst;
}

static const char *quote_text(char *dst, const struct text *t) {
  return quote(dst, t->s, t->len, t->cut);
}

/* ---- the record builder shared by both decoders */
struct record {
  uint32_t have; /* BIT(label) for each field present */
  struct text bn, bu, n, u;
  double bver, bt, bv, v, t;
  bool vb;
};

#define DUP_LINEAR 16  /* records scanned linearly before the table is built */
#define DUP_SLOTS 2048 /* a power of two, at least 2 * PROTO_PACK_MAX */

struct senml_dec {
  const proto_limits_t *lim;
  proto_pack_t *out;
  char *err;
  size_t errlen;
  size_t idx; /* the record being decoded */
  struct record r;
  /* base fields in force (RFC 8428 4.1) */
  bool have_device, have_bu;
  double bt, bv;
  struct text bu;
  /* out->rec index + 1 per slot, 0 when empty; valid once n >= DUP_LINEAR */
  uint16_t slots[DUP_SLOTS];
};

static void verr(char *err, size_t errlen, const char *prefix, const char *fmt, va_list ap) {
  if (err == NULL || errlen == 0)
    return;
  int n = snprintf(err, errlen, "%s", prefix);
  if (n >= 0 && (size_t)n < errlen)
    vsnprintf(err + n, errlen - (size_t)n, fmt, ap);
}

/* Writes "record N: <message>" and returns -EBADMSG. */
__attribute__((format(printf, 2, 3))) static int fail(struct senml_dec *s, const char *fmt, ...) {
  char prefix[32];
  va_list ap;
  snprintf(prefix, sizeof(prefix), "record %zu: ", s->idx);
  va_start(ap, fmt);
  verr(s->err, s->errlen, prefix, fmt, ap);
  va_end(ap);
  return -EBADMSG;
}

/* A problem with the pack as a whole, not one record. */
__attribute__((format(printf, 3, 4))) static int fail_pack(char *err, size_t errlen,
                                                           const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  verr(err, errlen, "", fmt, ap);
  va_end(ap);
  return -EBADMSG;
}

static void dec_init(struct senml_dec *s, const proto_limits_t *lim, proto_pack_t *out, char *err,
                     size_t errlen) {
  assert(lim != NULL && out != NULL);
  assert(isfinite(lim->now) && !isnan(lim->oldest));
  s->lim = lim;
  s->out = out;
  s->err = err;
  s->errlen = errlen;
  s->idx = 0;
  s->have_device = s->have_bu = false;
  s->bt = s->bv = 0.0;
  out->device[0] = '\0';
  out->n = 0;
  if (err != NULL && errlen > 0)
    err[0] = '\0';
}

static int record_begin(struct senml_dec *s) {
  if (s->idx >= PROTO_PACK_MAX)
    return fail_pack(s->err, s->errlen, "pack has more than %d records", PROTO_PACK_MAX);
  s->r.have = 0;
  return 0;
}

/* A label arrived: refuse what sitegate does not take, and repeats (CBOR
 * maps may repeat a key; JSON ones are refused by the parser). */
static int record_label(struct senml_dec *s, int l) {
  if (labels[l].type == T_UNSUPPORTED)
    return fail(s, "%s (%s) is not supported; send numbers in \"v\"", labels[l].what,
                labels[l].name);
  if (s->r.have & BIT(l))
    return fail(s, "field \"%s\" appears twice", labels[l].name);
  return 0;
}

static int wrong_type(struct senml_dec *s, int l, const char *got) {
  return fail(s, "field \"%s\" (%s) must be %s, not %s", labels[l].name, labels[l].what,
              type_names[labels[l].type], got);
}

static int record_text(struct senml_dec *s, int l, const char *str, size_t len) {
  struct record *r = &s->r;
  switch (l) {
  case L_BN:
    text_set(&r->bn, str, len);
    break;
  case L_BU:
    text_set(&r->bu, str, len);
    break;
  case L_N:
    text_set(&r->n, str, len);
    break;
  case L_U:
    text_set(&r->u, str, len);
    break;
  default:
    return wrong_type(s, l, "a string");
  }
  r->have |= BIT(l);
  return 0;
}

static int record_number(struct senml_dec *s, int l, double v) {
  struct record *r = &s->r;
  if (labels[l].type != T_NUMBER)
    return wrong_type(s, l, "a number");
  if (!isfinite(v))
    return fail(s, "field \"%s\" (%s) is not a finite number", labels[l].name, labels[l].what);
  switch (l) {
  case L_BVER:
    r->bver = v;
    break;
  case L_BT:
    r->bt = v;
    break;
  case L_BV:
    r->bv = v;
    break;
  case L_V:
    r->v = v;
    break;
  case L_T:
    r->t = v;
    break;
  default: /* ut: checked, then ignored */
    break;
  }
  r->have |= BIT(l);
  return 0;
}

static int record_bool(struct senml_dec *s, int l, bool b) {
  if (l != L_VB)
    return wrong_type(s, l, b ? "true" : "false");
  s->r.vb = b;
  s->r.have |= BIT(l);
  return 0;
}

static bool is_id_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
         c == '_' || c == '-';
}

/* bn must be "DEVICE/" (DESIGN.md "Southbound CoAP contract"), and every
 * record of a pack comes from the device the first one names. */
static int take_base_name(struct senml_dec *s) {
  const struct text *bn = &s->r.bn;
  char q[QUOTE_CAP];
  size_t n = bn->len;
  bool ok = !bn->cut && n >= 2 && n - 1 <= PROTO_DEVICE_MAX && bn->s[n - 1] == '/';
  for (size_t i = 0; ok && i + 1 < n; i++)
    ok = is_id_char(bn->s[i]);
  if (!ok)
    return fail(s,
                "base name (bn) %s is not \"DEVICE/\" (1 to %d of A-Z a-z 0-9 . _ -, then a '/')",
                quote_text(q, bn), PROTO_DEVICE_MAX);
  if (!s->have_device) {
    memcpy(s->out->device, bn->s, n - 1);
    s->out->device[n - 1] = '\0';
    s->have_device = true;
  } else if (strlen(s->out->device) != n - 1 || memcmp(s->out->device, bn->s, n - 1) != 0) {
    return fail(s, "base name (bn) %s names another device than \"%s/\"; send one pack per device",
                quote_text(q, bn), s->out->device);
  }
  return 0;
}

static int quantity_lookup(const struct text *n) {
  static const struct {
    uint8_t len;
    char name[24];
  } names[PROTO_Q_COUNT] = {
#define X(e, name, unit, level) {sizeof(name) - 1, name},
      PROTO_QUANTITY_MAP(X)
#undef X
  };
  for (int q = 0; q < PROTO_Q_COUNT; q++)
    if (names[q].len == n->len && !n->cut && names[q].name[0] == n->s[0] &&
        memcmp(names[q].name, n->s, n->len) == 0)
      return q;
  return -1;
}

/* The value of record `r` for quantity `q`, in q's canonical unit. */
static int resolve_value(struct senml_dec *s, int q, double *out) {
  const struct record *r = &s->r;
  const char *name = proto_quantity_name(q);
  char qs[QUOTE_CAP];
  if ((r->have & BIT(L_V)) && (r->have & BIT(L_VB)))
    return fail(s, "both \"v\" and \"vb\"; a record carries one value");
  if (q == PROTO_Q_ON) {
    if ((r->have & BIT(L_U)) && r->u.len > 0)
      return fail(s, "unit %s given for on, which is a boolean and takes none",
                  quote_text(qs, &r->u));
    if (r->have & BIT(L_VB)) {
      *out = r->vb ? 1.0 : 0.0;
      return 0;
    }
    if (!(r->have & BIT(L_V)))
      return fail(s, "missing value (\"vb\") for on");
    double v = s->bv + r->v;
    if (v != 0.0 && v != 1.0)
      return fail(s, "value %.15g for on; send \"vb\" true or false (or \"v\" 0 or 1)", v);
    *out = v;
    return 0;
  }
  if (r->have & BIT(L_VB))
    return fail(s, "boolean value (\"vb\") for %s, which takes a number in \"v\"", name);
  if (!(r->have & BIT(L_V)))
    return fail(s, "missing value (\"v\") for %s", name);

  double v = s->bv + r->v; /* RFC 8428 4.1: bv is added to v, in v's unit */
  const struct text *u = NULL;
  bool from_bu = false;
  if (r->have & BIT(L_U))
    u = &r->u;
  else if (s->have_bu)
    u = &s->bu, from_bu = true;
  /* An empty unit is taken as no unit: the canonical one. */
  if (u != NULL && u->len > 0 && (u->cut || proto_unit_to_canonical(q, u->s, u->len, &v) != 0))
    return fail(s, "%s %s is not a unit of %s (%s); use one of %s",
                from_bu ? "base unit (bu)" : "unit", quote_text(qs, u), name,
                proto_quantity_unit(q), proto_quantity_units(q));
  if (!isfinite(v))
    return fail(s, "value of %s is out of range once converted to %s", name,
                proto_quantity_unit(q));
  *out = v;
  return 0;
}

/* "1764100000.5 (2025-11-25T19:46:40Z)" */
static const char *fmt_time(char *buf, size_t cap, double t) {
  struct tm tm;
  time_t tt = (t > -1e11 && t < 1e11) ? (time_t)floor(t) : 0;
  if (t > -1e11 && t < 1e11 && gmtime_r(&tt, &tm) != NULL)
    snprintf(buf, cap, "%.15g (%04d-%02d-%02dT%02d:%02d:%02dZ)", t, tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
  else
    snprintf(buf, cap, "%.15g", t);
  return buf;
}

/* RFC 8428 4.5.3: a time below 2^28 is relative to now (negative: in the
 * past); anything else is seconds since the Unix epoch. */
static int resolve_time(struct senml_dec *s, int64_t *t_ms) {
  const proto_limits_t *lim = s->lim;
  char a[96], b[96];
  double t = s->bt + ((s->r.have & BIT(L_T)) ? s->r.t : 0.0);
  if (t < PROTO_SENML_REL_LIMIT)
    t += lim->now;
  if (!(t - lim->now <= PROTO_FUTURE_MAX_S))
    return fail(s,
                "time %s is more than 5 minutes in the future (%.0f s ahead of the gateway "
                "clock); check the sensor's clock",
                fmt_time(a, sizeof(a), t), t - lim->now);
  if (t < lim->oldest)
    return fail(s, "time %s is older than the retention horizon %s", fmt_time(a, sizeof(a), t),
                fmt_time(b, sizeof(b), lim->oldest));
  if (!(fabs(t) < 9e15)) /* int64 milliseconds */
    return fail(s, "time %.15g is out of range", t);
  *t_ms = llround(t * 1000.0);
  return 0;
}

static uint32_t dup_hash(uint8_t q, int64_t t_ms) {
  uint64_t h = ((uint64_t)t_ms ^ ((uint64_t)q << 56)) * 0x9E3779B97F4A7C15ull;
  return (uint32_t)(h >> 53) & (DUP_SLOTS - 1);
}

/* Finds rec[i]'s slot: an empty one (returns 0 and sets *slot) or one that
 * holds an earlier record with the same quantity and time (returns its
 * index + 1). */
static unsigned dup_probe(const struct senml_dec *s, size_t i, uint32_t *slot) {
  const proto_record_t *rec = &s->out->rec[i];
  uint32_t h = dup_hash(rec->quantity, rec->t_ms);
  for (;; h = (h + 1) & (DUP_SLOTS - 1)) {
    unsigned v = s->slots[h];
    if (v == 0) {
      *slot = h;
      return 0;
    }
    const proto_record_t *o = &s->out->rec[v - 1];
    if (o->quantity == rec->quantity && o->t_ms == rec->t_ms)
      return v;
  }
}

/* Returns the index of an earlier record with the same quantity and time as
 * rec[n] (just written, not yet counted), or -1. */
static long dup_find(struct senml_dec *s) {
  const proto_pack_t *p = s->out;
  size_t n = p->n;
  uint32_t slot;
  if (n < DUP_LINEAR) {
    for (size_t i = 0; i < n; i++)
      if (p->rec[i].quantity == p->rec[n].quantity && p->rec[i].t_ms == p->rec[n].t_ms)
        return (long)i;
    return -1;
  }
  if (n == DUP_LINEAR) {
    memset(s->slots, 0, sizeof(s->slots));
    for (size_t i = 0; i < n; i++) {
      (void)dup_probe(s, i, &slot); /* no duplicates among them: checked above */
      s->slots[slot] = (uint16_t)(i + 1);
    }
  }
  unsigned v = dup_probe(s, n, &slot);
  if (v != 0)
    return (long)v - 1;
  s->slots[slot] = (uint16_t)(n + 1);
  return -1;
}

/* All fields of record s->idx are in: apply them and append the record. */
static int record_end(struct senml_dec *s) {
  struct record *r = &s->r;
  char qs[QUOTE_CAP], ts[96];
  int rc;
  if (r->have & BIT(L_BN)) {
    if ((rc = take_base_name(s)) != 0)
      return rc;
  } else if (!s->have_device) {
    return fail(s, "missing base name (bn) \"DEVICE/\"");
  }
  if ((r->have & BIT(L_BVER)) && r->bver > SENML_VERSION)
    return fail(s,
                "base version (bver) %.15g is newer than SenML version %d, which this gateway "
                "reads",
                r->bver, SENML_VERSION);
  if (r->have & BIT(L_BT))
    s->bt = r->bt;
  if (r->have & BIT(L_BV))
    s->bv = r->bv;
  if (r->have & BIT(L_BU)) {
    s->bu = r->bu;
    s->have_bu = true;
  }
  if (!(r->have & BIT(L_N)))
    return fail(s, "missing name (\"n\"), one of: %s", known_quantities + 2);
  int q = quantity_lookup(&r->n);
  if (q < 0)
    return fail(s, "unknown quantity %s (known: %s)", quote_text(qs, &r->n), known_quantities + 2);

  proto_record_t *rec = &s->out->rec[s->out->n];
  rec->quantity = (uint8_t)q;
  if ((rc = resolve_value(s, q, &rec->value)) != 0)
    return rc;
  if ((rc = resolve_time(s, &rec->t_ms)) != 0)
    return rc;
  long dup = dup_find(s);
  if (dup >= 0)
    return fail(s, "duplicate of record %ld (%s at %s)", dup, proto_quantity_name(q),
                fmt_time(ts, sizeof(ts), (double)rec->t_ms / 1000.0));
  s->out->n++;
  s->idx++;
  return 0;
}

/* ---- JSON (RFC 8428 section 5) through jansson's tree: the reference the
 * jsmn decoder below is checked against (tests/fuzz/fuzz_senml_diff.c). */
static const char *json_type_name(const json_t *v) {
  switch (json_typeof(v)) {
  case JSON_OBJECT:
    return "an object";
  case JSON_ARRAY:
    return "an array";
  case JSON_STRING:
    return "a string";
  case JSON_INTEGER:
  case JSON_REAL:
    return "a number";
  case JSON_TRUE:
    return "true";
  case JSON_FALSE:
    return "false";
  default:
    return "null";
  }
}

static int json_field(struct senml_dec *s, const char *key, size_t klen, const json_t *v) {
  int l = label_from_name(key, klen);
  char qs[QUOTE_CAP];
  int rc;
  if (l == L_UNKNOWN) {
    /* RFC 8428 4.4 and 12.3.1: unknown labels are ignored unless they end
     * in '_', which marks an extension the receiver must understand. */
    if (klen > 0 && key[klen - 1] == '_')
      return fail(s, "field %s must be understood (RFC 8428 4.4) and is not supported",
                  quote(qs, key, klen, false));
    return 0;
  }
  if ((rc = record_label(s, l)) != 0)
    return rc;
  if (json_is_string(v))
    return record_text(s, l, json_string_value(v), json_string_length(v));
  if (json_is_number(v))
    return record_number(s, l, json_number_value(v));
  if (json_is_boolean(v))
    return record_bool(s, l, json_is_true(v));
  return wrong_type(s, l, json_type_name(v));
}

static int json_record(struct senml_dec *s, const json_t *rec) {
  int rc;
  if (!json_is_object(rec))
    return fail(s, "not an object but %s", json_type_name(rec));
  if ((rc = record_begin(s)) != 0)
    return rc;
  /* The iterator API takes a non-const object but does not change it. */
  json_t *obj = (json_t *)rec;
  for (void *it = json_object_iter(obj); it != NULL; it = json_object_iter_next(obj, it)) {
    rc = json_field(s, json_object_iter_key(it), json_object_iter_key_len(it),
                    json_object_iter_value(it));
    if (rc != 0)
      return rc;
  }
  return record_end(s);
}

/* jansson's message may quote the input: keep it on one printable line. */
static void json_error_clean(char *text) {
  for (unsigned char *p = (unsigned char *)text; *p != '\0'; p++)
    if (*p < 0x20 || *p >= 0x7f)
      *p = '?';
}

int proto_senml_decode_json_jansson(const uint8_t *buf, size_t len, const proto_limits_t *lim,
                                    proto_pack_t *out, char *err, size_t errlen) {
  struct senml_dec s;
  json_error_t je;
  int rc = 0;

  dec_init(&s, lim, out, err, errlen);
  if (len == 0)
    return fail_pack(err, errlen, "no data: a SenML pack is a JSON array of records");
  json_t *root = json_loadb((const char *)buf, len, JSON_REJECT_DUPLICATES, &je);
  if (root == NULL) {
    json_error_clean(je.text);
    return fail_pack(err, errlen, "invalid JSON at line %d, column %d: %s", je.line, je.column,
                     je.text);
  }
  size_t n = json_array_size(root);
  if (!json_is_array(root))
    rc = fail_pack(err, errlen, "a SenML pack is a JSON array of records, not %s",
                   json_type_name(root));
  else if (n == 0)
    rc = fail_pack(err, errlen, "empty pack");
  else if (n > PROTO_PACK_MAX)
    rc = fail_pack(err, errlen, "pack has %zu records, more than %d", n, PROTO_PACK_MAX);
  for (size_t i = 0; rc == 0 && i < n; i++)
    rc = json_record(&s, json_array_get(root, i));
  json_decref(root);
  return rc;
}

/* ---- JSON (RFC 8428 section 5) with jsmn, the decoder on the hot path.
 *
 * jsmn (strict mode) cuts the text into tokens in one pass, into an array
 * on the stack for packs of ordinary size: no tree, no allocation. jsmn
 * alone is lax (it takes "[1,]", "{\"a\" 1}", "tru", raw control
 * characters, lone surrogates), so json_check() holds every token and the
 * punctuation between tokens to RFC 8259 and to what jansson refuses besides
 * (\u0000, numbers that overflow, duplicate keys, nesting past 2048): the
 * verdicts, values and SenML messages are jansson's, which stays as the
 * oracle of a differential fuzz harness. A syntax error is reported as
 * "invalid JSON at line L, column C: reason", in our words, not jansson's. */
#define JSMN_STATIC
#define JSMN_STRICT
#include <jsmn.h>

#include <locale.h>
#include <pthread.h>
#include <stdlib.h>

#define JSON_DEPTH_MAX 2048 /* jansson's JSON_PARSER_MAX_DEPTH: values nested this deep */
#define JSON_TOKENS_STACK 256
#define KEYS_LINEAR 16 /* keys of one object compared pairwise before a hash is used */

/* RFC 3629 section 4: no overlong forms, no surrogates, nothing past
 * U+10FFFF. Returns the offset of the first bad byte, or n. */
static size_t utf8_bad_at(const uint8_t *s, size_t n) {
  for (size_t i = 0; i < n;) {
    uint64_t w; /* eight ASCII bytes at once, the usual case */
    if (n - i >= 8 && (memcpy(&w, s + i, 8), (w & 0x8080808080808080u) == 0)) {
      i += 8;
      continue;
    }
    unsigned c = s[i];
    size_t len;
    uint32_t cp;
    if (c < 0x80) {
      i++;
      continue;
    }
    if (c >= 0xc2 && c <= 0xdf)
      len = 2, cp = c & 0x1f;
    else if (c >= 0xe0 && c <= 0xef)
      len = 3, cp = c & 0x0f;
    else if (c >= 0xf0 && c <= 0xf4)
      len = 4, cp = c & 0x07;
    else
      return i;
    if (n - i < len)
      return i;
    for (size_t k = 1; k < len; k++) {
      if ((s[i + k] & 0xc0) != 0x80)
        return i;
      cp = cp << 6 | (s[i + k] & 0x3f);
    }
    if ((len == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
        (len == 4 && (cp < 0x10000 || cp > 0x10ffff)))
      return i;
    i += len;
  }
  return n;
}

/* What json_check() learns of each token, so that the pass over the
 * records does not find it out again. */
struct jfact {
  double num; /* a number's value */
  bool esc;   /* a string with a backslash */
};

struct jdoc {
  const char *b;
  size_t len;
  jsmntok_t *tok;
  struct jfact *fact; /* one per token */
  int ntok;
  size_t bad;      /* offset of a syntax error */
  const char *why; /* its reason */
};

static bool jbad(struct jdoc *d, size_t off, const char *why) {
  d->bad = off;
  d->why = why;
  return false;
}

static int hexval(char c) { return c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10; }

static uint32_t hex4(const char *p) {
  return (uint32_t)(hexval(p[0]) << 12 | hexval(p[1]) << 8 | hexval(p[2]) << 4 | hexval(p[3]));
}

/* The decoded bytes of a string token, one at a time (escapes resolved,
 * RFC 8259 section 7), for keys and values that hold a backslash. The
 * string has passed json_check_string(). */
struct jcur {
  const char *p, *end;
  uint8_t pend[4];
  int npend, ipend;
};

static void jcur_init(struct jcur *c, const struct jdoc *d, const jsmntok_t *t) {
  c->p = d->b + t->start;
  c->end = d->b + t->end;
  c->npend = c->ipend = 0;
}

static int utf8_put(uint8_t *o, uint32_t cp) {
  if (cp < 0x80) {
    o[0] = (uint8_t)cp;
    return 1;
  }
  if (cp < 0x800) {
    o[0] = (uint8_t)(0xc0 | cp >> 6);
    o[1] = (uint8_t)(0x80 | (cp & 0x3f));
    return 2;
  }
  if (cp < 0x10000) {
    o[0] = (uint8_t)(0xe0 | cp >> 12);
    o[1] = (uint8_t)(0x80 | (cp >> 6 & 0x3f));
    o[2] = (uint8_t)(0x80 | (cp & 0x3f));
    return 3;
  }
  o[0] = (uint8_t)(0xf0 | cp >> 18);
  o[1] = (uint8_t)(0x80 | (cp >> 12 & 0x3f));
  o[2] = (uint8_t)(0x80 | (cp >> 6 & 0x3f));
  o[3] = (uint8_t)(0x80 | (cp & 0x3f));
  return 4;
}

/* The next decoded byte, or -1 at the end. */
static int jcur_next(struct jcur *c) {
  if (c->ipend < c->npend)
    return c->pend[c->ipend++];
  if (c->p >= c->end)
    return -1;
  char ch = *c->p++;
  if (ch != '\\')
    return (unsigned char)ch;
  ch = *c->p++;
  switch (ch) {
  case 'b':
    return '\b';
  case 'f':
    return '\f';
  case 'n':
    return '\n';
  case 'r':
    return '\r';
  case 't':
    return '\t';
  case 'u':
    break;
  default: /* '"', '\\', '/' */
    return (unsigned char)ch;
  }
  uint32_t cp = hex4(c->p);
  c->p += 4;
  if (cp >= 0xd800 && cp <= 0xdbff) { /* a pair: checked to be one */
    cp = 0x10000 + ((cp - 0xd800) << 10) + (hex4(c->p + 2) - 0xdc00);
    c->p += 6;
  }
  c->npend = utf8_put(c->pend, cp);
  c->ipend = 1;
  return c->pend[0];
}

/* A string token with a backslash (json_check() has seen it). */
static bool tok_has_escape(const struct jdoc *d, const jsmntok_t *t) {
  return d->fact[t - d->tok].esc;
}

/* Copies the first `cap` decoded bytes of string token `t` to dst and
 * returns its whole decoded length; *last is its last byte ('\0' if none). */
static size_t tok_text(const struct jdoc *d, const jsmntok_t *t, char *dst, size_t cap,
                       char *last) {
  size_t n = 0;
  int ch, prev = '\0';
  if (!tok_has_escape(d, t)) {
    n = (size_t)(t->end - t->start);
    memcpy(dst, d->b + t->start, n < cap ? n : cap);
    *last = n > 0 ? d->b[t->end - 1] : '\0';
    return n;
  }
  struct jcur c;
  jcur_init(&c, d, t);
  while ((ch = jcur_next(&c)) >= 0) {
    if (n < cap)
      dst[n] = (char)ch;
    n++;
    prev = ch;
  }
  *last = (char)prev;
  return n;
}

static bool keys_equal(const struct jdoc *d, const jsmntok_t *a, const jsmntok_t *b) {
  bool ea = tok_has_escape(d, a), eb = tok_has_escape(d, b);
  if (!ea && !eb)
    return a->end - a->start == b->end - b->start && d->b[a->start] == d->b[b->start] &&
           memcmp(d->b + a->start, d->b + b->start, (size_t)(a->end - a->start)) == 0;
  struct jcur ca, cb;
  int x, y;
  jcur_init(&ca, d, a);
  jcur_init(&cb, d, b);
  do {
    x = jcur_next(&ca);
    y = jcur_next(&cb);
  } while (x == y && x >= 0);
  return x == y;
}

static uint32_t key_hash(const struct jdoc *d, const jsmntok_t *t, int obj) {
  struct jcur c;
  int ch;
  uint32_t h = 2166136261u ^ (uint32_t)obj; /* FNV-1a */
  jcur_init(&c, d, t);
  while ((ch = jcur_next(&c)) >= 0)
    h = (h ^ (uint32_t)ch) * 16777619u;
  return h;
}

/* RFC 8259 section 7, and what jansson refuses besides: control
 * characters, lone or reversed surrogates, \u0000 (escape letters and hex
 * digits jsmn has checked). */
static bool json_check_string(struct jdoc *d, const jsmntok_t *t) {
  for (int i = t->start; i < t->end; i++) {
    unsigned char c = (unsigned char)d->b[i];
    if (c < 0x20)
      return jbad(d, (size_t)i, "a control character in a string");
    if (c != '\\')
      continue;
    d->fact[t - d->tok].esc = true;
    if (d->b[++i] != 'u')
      continue;
    uint32_t cp = hex4(d->b + i + 1);
    if (cp == 0)
      return jbad(d, (size_t)i - 1, "\\u0000 in a string");
    if (cp >= 0xdc00 && cp <= 0xdfff)
      return jbad(d, (size_t)i - 1, "a lone low surrogate");
    i += 4;
    if (cp >= 0xd800 && cp <= 0xdbff) {
      if (i + 6 >= t->end || d->b[i + 1] != '\\' || d->b[i + 2] != 'u')
        return jbad(d, (size_t)i - 5, "a high surrogate without its low half");
      uint32_t lo = hex4(d->b + i + 3);
      if (lo < 0xdc00 || lo > 0xdfff)
        return jbad(d, (size_t)i - 5, "a high surrogate without its low half");
      i += 6;
    }
  }
  return true;
}

static locale_t c_locale;
static void c_locale_init(void) { c_locale = newlocale(LC_NUMERIC_MASK, "C", (locale_t)0); }

/* A number token's value as jansson gives it: integers through strtoll
 * (so -0 is 0), the rest through strtod. Returns false when jansson would
 * call it an overflow. The token is followed by a delimiter in the buffer
 * (jsmn's strict mode), so strtod stops at its end. */
static bool number_value(const char *s, size_t n, bool integer, double *out) {
  static pthread_once_t once = PTHREAD_ONCE_INIT;
  bool neg = s[0] == '-';
  size_t i = neg ? 1 : 0, digits = 0, frac = 0;
  uint64_t m = 0;
  /* Clinger's fast path: at most 15 digits and 22 decimals are exact. */
  for (; i < n && s[i] >= '0' && s[i] <= '9'; i++, digits++)
    m = m * 10 + (uint64_t)(s[i] - '0');
  if (i < n && s[i] == '.')
    for (i++; i < n && s[i] >= '0' && s[i] <= '9'; i++, digits++, frac++)
      m = m * 10 + (uint64_t)(s[i] - '0');
  if (i == n && digits <= 15) {
    static const double pow10[] = {1e0, 1e1, 1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
                                   1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15};
    double v = (double)m / pow10[frac];
    *out = integer ? (neg && m != 0 ? -v : v) : (neg ? -v : v);
    return true;
  }
  errno = 0;
  char *end;
  if (integer) {
    long long ll = strtoll(s, &end, 10);
    *out = (double)ll;
    return errno != ERANGE;
  }
  pthread_once(&once, c_locale_init);
  double v = c_locale != (locale_t)0 ? strtod_l(s, &end, c_locale) : strtod(s, &end);
  *out = v;
  return !((v == HUGE_VAL || v == -HUGE_VAL) && errno == ERANGE);
}

/* true, false, null, or a number of RFC 8259 section 6 that fits. */
static bool json_check_primitive(struct jdoc *d, const jsmntok_t *t) {
  const char *s = d->b + t->start;
  size_t n = (size_t)(t->end - t->start), i = 0;
  if (s[0] == 't' || s[0] == 'f' || s[0] == 'n') {
    if ((n == 4 && memcmp(s, "true", 4) == 0) || (n == 5 && memcmp(s, "false", 5) == 0) ||
        (n == 4 && memcmp(s, "null", 4) == 0))
      return true;
    return jbad(d, (size_t)t->start, "not true, false or null");
  }
  bool integer = true;
  if (s[i] == '-')
    i++;
  if (i < n && s[i] == '0')
    i++;
  else if (i < n && s[i] >= '1' && s[i] <= '9')
    while (i < n && s[i] >= '0' && s[i] <= '9')
      i++;
  else
    return jbad(d, (size_t)t->start + i, "a malformed number");
  if (i < n && s[i] == '.') {
    integer = false;
    if (++i == n || s[i] < '0' || s[i] > '9')
      return jbad(d, (size_t)t->start + i, "a malformed number");
    while (i < n && s[i] >= '0' && s[i] <= '9')
      i++;
  }
  if (i < n && (s[i] == 'e' || s[i] == 'E')) {
    integer = false;
    if (++i < n && (s[i] == '+' || s[i] == '-'))
      i++;
    if (i == n || s[i] < '0' || s[i] > '9')
      return jbad(d, (size_t)t->start + i, "a malformed number");
    while (i < n && s[i] >= '0' && s[i] <= '9')
      i++;
  }
  if (i != n)
    return jbad(d, (size_t)t->start + i, "a malformed number");
  if (!number_value(s, n, integer, &d->fact[t - d->tok].num))
    return jbad(d, (size_t)t->start, "a number out of range");
  return true;
}

/* Duplicate keys (jansson's JSON_REJECT_DUPLICATES): a new key `k` of the
 * object `obj` against its earlier keys, keys[base..top). Small objects
 * are compared pairwise; from KEYS_LINEAR keys on, the object's keys go
 * into one hash table shared by the whole document (allocated then). */
struct keyset {
  int *keys; /* key token indices, a stack over open objects */
  int top;
  struct kslot {
    int obj, key; /* key + 1; 0: empty */
  } * tab;
  size_t cap; /* slots, a power of two */
};

static bool keyset_insert(struct jdoc *d, struct keyset *ks, int obj, int k) {
  if (ks->tab == NULL) {
    size_t cap = 64;
    while (cap < 2 * (size_t)d->ntok)
      cap *= 2;
    ks->tab = calloc(cap, sizeof(*ks->tab));
    if (ks->tab == NULL)
      return jbad(d, (size_t)d->tok[k].start, "out of memory");
    ks->cap = cap;
  }
  for (size_t h = key_hash(d, &d->tok[k], obj) & (ks->cap - 1);; h = (h + 1) & (ks->cap - 1)) {
    struct kslot *sl = &ks->tab[h];
    if (sl->key == 0) {
      sl->obj = obj;
      sl->key = k + 1;
      return true;
    }
    if (sl->obj == obj && keys_equal(d, &d->tok[sl->key - 1], &d->tok[k]))
      return jbad(d, (size_t)d->tok[k].start - 1, "a duplicate object key");
  }
}

static bool keyset_add(struct jdoc *d, struct keyset *ks, int obj, int base, int k) {
  int n = ks->top - base;
  if (n < KEYS_LINEAR) {
    for (int i = base; i < ks->top; i++)
      if (keys_equal(d, &d->tok[ks->keys[i]], &d->tok[k]))
        return jbad(d, (size_t)d->tok[k].start - 1, "a duplicate object key");
    ks->keys[ks->top++] = k;
    if (n + 1 < KEYS_LINEAR)
      return true;
    for (int i = base; i < ks->top; i++) /* this object moves to the table */
      if (!keyset_insert(d, ks, obj, ks->keys[i]))
        return false;
    return true;
  }
  return keyset_insert(d, ks, obj, k);
}

/* Where the pushdown check of json_check() stands. */
enum jstate {
  J_TOP,       /* before the document's value */
  J_ARR_FIRST, /* after '[': a value or ']' */
  J_OBJ_FIRST, /* after '{': a key or '}' */
  J_VALUE,     /* after ',' in an array, or ':' */
  J_KEY,       /* after ',' in an object */
  J_COLON,     /* after a key */
  J_AFTER,     /* after a value inside a container: ',' or the closer */
  J_DONE       /* the document's value is closed */
};

struct jframe {
  int obj;     /* the container's token */
  int keybase; /* its first key in keyset.keys */
};

/* The punctuation between tokens: ws, ',', ':' and closers. */
static bool json_gap(struct jdoc *d, size_t from, size_t to, enum jstate *st, struct jframe *stack,
                     int *depth, struct keyset *ks) {
  for (size_t i = from; i < to; i++) {
    char c = d->b[i];
    bool arr = *depth > 0 && d->tok[stack[*depth - 1].obj].type == JSMN_ARRAY;
    switch (c) {
    case ' ':
    case '\t':
    case '\n':
    case '\r':
      continue;
    case ',':
      if (*st != J_AFTER)
        return jbad(d, i, "unexpected ','");
      *st = arr ? J_VALUE : J_KEY;
      continue;
    case ':':
      if (*st != J_COLON)
        return jbad(d, i, "unexpected ':'");
      *st = J_VALUE;
      continue;
    case ']':
    case '}':
      if (*depth == 0 || arr != (c == ']') ||
          !(*st == J_AFTER || *st == (arr ? J_ARR_FIRST : J_OBJ_FIRST)))
        return jbad(d, i, c == ']' ? "unexpected ']'" : "unexpected '}'");
      ks->top = stack[--*depth].keybase;
      *st = *depth == 0 ? J_DONE : J_AFTER;
      continue;
    default:
      return jbad(d, i, "an unexpected character");
    }
  }
  return true;
}

/* Holds jsmn's tokens and the text between them to RFC 8259 and to what
 * jansson refuses; *d->bad and d->why say where and why not. */
static bool json_check(struct jdoc *d, int *keys) {
  struct jframe stack[JSON_DEPTH_MAX];
  struct keyset ks = {keys, 0, NULL, 0};
  enum jstate st = J_TOP;
  int depth = 0;
  size_t pos = 0;
  bool ok = true;
  for (int i = 0; ok && i < d->ntok; i++) {
    const jsmntok_t *t = &d->tok[i];
    size_t lex = (size_t)t->start - (t->type == JSMN_STRING ? 1 : 0);
    if (!(ok = json_gap(d, pos, lex, &st, stack, &depth, &ks)))
      break;
    if (st == J_OBJ_FIRST || st == J_KEY) {
      if (t->type != JSMN_STRING) {
        ok = jbad(d, lex, "a key must be a string");
        break;
      }
      ok = json_check_string(d, t) &&
           keyset_add(d, &ks, stack[depth - 1].obj, stack[depth - 1].keybase, i);
      st = J_COLON;
      pos = (size_t)t->end + 1;
      continue;
    }
    if (st == J_DONE) {
      ok = jbad(d, lex, "data after the end of the document");
      break;
    }
    if (st == J_COLON || st == J_AFTER) {
      ok = jbad(d, lex, st == J_COLON ? "':' expected" : "',' expected");
      break;
    }
    if (st == J_TOP && t->type != JSMN_ARRAY && t->type != JSMN_OBJECT) {
      ok = jbad(d, lex, "a JSON text here is an array or an object");
      break;
    }
    if (depth >= JSON_DEPTH_MAX) {
      ok = jbad(d, lex, "nested too deep");
      break;
    }
    switch (t->type) {
    case JSMN_ARRAY:
    case JSMN_OBJECT:
      stack[depth].obj = i;
      stack[depth++].keybase = ks.top;
      st = t->type == JSMN_ARRAY ? J_ARR_FIRST : J_OBJ_FIRST;
      pos = lex + 1;
      continue;
    case JSMN_STRING:
      ok = json_check_string(d, t);
      pos = (size_t)t->end + 1;
      break;
    default:
      ok = json_check_primitive(d, t);
      pos = (size_t)t->end;
      break;
    }
    st = J_AFTER;
  }
  if (ok)
    ok = json_gap(d, pos, d->len, &st, stack, &depth, &ks);
  if (ok && st != J_DONE)
    ok = jbad(d, d->len, "premature end of input");
  free(ks.tab);
  return ok;
}

/* The token after the value at `i` and everything inside it. */
static int tok_skip(const struct jdoc *d, int i) {
  if (d->tok[i].type != JSMN_ARRAY && d->tok[i].type != JSMN_OBJECT)
    return i + 1;
  int end = d->tok[i].end, j = i + 1;
  while (j < d->ntok && d->tok[j].start < end)
    j++;
  return j;
}

static const char *tok_type_name(const struct jdoc *d, const jsmntok_t *t) {
  switch (t->type) {
  case JSMN_OBJECT:
    return "an object";
  case JSMN_ARRAY:
    return "an array";
  case JSMN_STRING:
    return "a string";
  default:
    break;
  }
  switch (d->b[t->start]) {
  case 't':
    return "true";
  case 'f':
    return "false";
  case 'n':
    return "null";
  default:
    return "a number";
  }
}

/* What json_field() does with a jansson value, for token `v` of key `k`. */
static int jtok_field(struct senml_dec *s, const struct jdoc *d, const jsmntok_t *k,
                      const jsmntok_t *v) {
  char key[TEXT_MAX + 1], last, qs[QUOTE_CAP];
  size_t klen = tok_text(d, k, key, sizeof(key), &last);
  int l = klen <= 4 ? label_from_name(key, klen) : L_UNKNOWN;
  int rc;
  if (l == L_UNKNOWN) {
    if (klen > 0 && last == '_')
      return fail(s, "field %s must be understood (RFC 8428 4.4) and is not supported",
                  quote(qs, key, klen, false));
    return 0;
  }
  if ((rc = record_label(s, l)) != 0)
    return rc;
  if (v->type == JSMN_STRING) {
    char text[TEXT_MAX + 1];
    /* record_text() copies at most TEXT_MAX bytes: the rest only counts. */
    size_t n = tok_text(d, v, text, sizeof(text), &last);
    return record_text(s, l, text, n);
  }
  if (v->type == JSMN_PRIMITIVE) {
    const char *p = d->b + v->start;
    if (*p == 't' || *p == 'f')
      return record_bool(s, l, *p == 't');
    if (*p != 'n')
      return record_number(s, l, d->fact[v - d->tok].num); /* json_check() */
  }
  return wrong_type(s, l, tok_type_name(d, v));
}

static int jtok_record(struct senml_dec *s, const struct jdoc *d, int i) {
  const jsmntok_t *rec = &d->tok[i];
  int rc;
  if (rec->type != JSMN_OBJECT)
    return fail(s, "not an object but %s", tok_type_name(d, rec));
  if ((rc = record_begin(s)) != 0)
    return rc;
  int k = i + 1;
  for (int f = 0; f < rec->size; f++) {
    if ((rc = jtok_field(s, d, &d->tok[k], &d->tok[k + 1])) != 0)
      return rc;
    k = tok_skip(d, k + 1);
  }
  return record_end(s);
}

/* line and column (1-based, in bytes) of offset `off`, for messages */
static void line_col(const char *b, size_t off, int *line, int *col) {
  *line = 1;
  size_t ls = 0;
  for (size_t i = 0; i < off; i++)
    if (b[i] == '\n')
      (*line)++, ls = i + 1;
  *col = (int)(off - ls) + 1;
}

static int jsmn_tokens(struct jdoc *d, jsmntok_t *stack_tok, jsmntok_t **heap) {
  jsmn_parser p;
  jsmn_init(&p);
  int r = jsmn_parse(&p, d->b, d->len, stack_tok, JSON_TOKENS_STACK);
  d->tok = stack_tok;
  if (r == JSMN_ERROR_NOMEM) {
    jsmn_init(&p);
    r = jsmn_parse(&p, d->b, d->len, NULL, 0); /* counts */
    if (r > 0) {
      *heap = malloc((size_t)r * sizeof(**heap));
      if (*heap == NULL)
        return -ENOMEM;
      d->tok = *heap;
      unsigned n = (unsigned)r;
      jsmn_init(&p);
      r = jsmn_parse(&p, d->b, d->len, d->tok, n);
    }
  }
  if (r < 0) {
    d->bad = p.pos;
    d->why = r == JSMN_ERROR_PART ? "premature end of input" : "an unexpected character";
  }
  d->ntok = r;
  return r;
}

int proto_senml_decode_json(const uint8_t *buf, size_t len, const proto_limits_t *lim,
                            proto_pack_t *out, char *err, size_t errlen) {
  struct senml_dec s;
  jsmntok_t stack_tok[JSON_TOKENS_STACK], *heap_tok = NULL;
  int stack_keys[JSON_TOKENS_STACK], *heap_keys = NULL;
  struct jfact stack_fact[JSON_TOKENS_STACK], *heap_fact = NULL;
  struct jdoc d = {(const char *)buf, len, NULL, stack_fact, 0, 0, NULL};
  int rc = 0, line, col;

  dec_init(&s, lim, out, err, errlen);
  if (len == 0)
    return fail_pack(err, errlen, "no data: a SenML pack is a JSON array of records");
  /* jsmn stops at a NUL byte, which no JSON text holds. */
  const uint8_t *nul = memchr(buf, '\0', len);
  size_t bad_utf8 = utf8_bad_at(buf, len);
  if (nul != NULL && (size_t)(nul - buf) < bad_utf8)
    jbad(&d, (size_t)(nul - buf), "a NUL byte");
  else if (bad_utf8 < len)
    jbad(&d, bad_utf8, "not UTF-8");
  else if (jsmn_tokens(&d, stack_tok, &heap_tok) < 0 && d.why == NULL)
    rc = -ENOMEM;
  else if (d.ntok > JSON_TOKENS_STACK &&
           ((heap_keys = malloc((size_t)d.ntok * sizeof(int))) == NULL ||
            (d.fact = heap_fact = calloc((size_t)d.ntok, sizeof(*heap_fact))) == NULL))
    rc = -ENOMEM;
  else if (d.ntok > 0) {
    if (heap_fact == NULL)
      memset(stack_fact, 0, (size_t)d.ntok * sizeof(*stack_fact));
    (void)json_check(&d, heap_keys != NULL ? heap_keys : stack_keys);
  } else if (d.why == NULL)
    jbad(&d, len, "premature end of input");
  free(heap_keys);
  if (rc == -ENOMEM) {
    free(heap_tok);
    free(heap_fact);
    return fail_pack(err, errlen, "out of memory decoding the pack");
  }
  if (d.why != NULL) {
    free(heap_tok);
    free(heap_fact);
    line_col(d.b, d.bad, &line, &col);
    return fail_pack(err, errlen, "invalid JSON at line %d, column %d: %s", line, col, d.why);
  }
  const jsmntok_t *root = &d.tok[0];
  size_t n = (size_t)root->size;
  if (root->type != JSMN_ARRAY)
    rc = fail_pack(err, errlen, "a SenML pack is a JSON array of records, not an object");
  else if (n == 0)
    rc = fail_pack(err, errlen, "empty pack");
  else if (n > PROTO_PACK_MAX)
    rc = fail_pack(err, errlen, "pack has %zu records, more than %d", n, PROTO_PACK_MAX);
  for (int i = 1, r = 0; rc == 0 && (size_t)r < n; r++) {
    rc = jtok_record(&s, &d, i);
    i = tok_skip(&d, i);
  }
  free(heap_tok);
  free(heap_fact);
  return rc;
}

/* ---- CBOR (RFC 8428 section 6), read with libcbor's streaming decoder.
 *
 * libcbor calls back once per data item header; the callbacks turn that into
 * one `struct ev` for cbor_on_event(), a state machine over pack, record,
 * key and value. Values of unknown labels may be nested arbitrarily; they
 * are skipped with a small stack of item counts. The streaming decoder does
 * not check structure (a break may come anywhere), so this code does. */
enum ev_kind {
  EV_UINT,
  EV_NEGINT, /* value -1 - u (RFC 8949 3.1, major type 1) */
  EV_FLOAT,
  EV_BOOL,
  EV_NULL,
  EV_UNDEF,
  EV_TEXT,
  EV_BYTES,
  EV_TEXT_START, /* indefinite length */
  EV_BYTES_START,
  EV_ARRAY,
  EV_IARRAY,
  EV_MAP,
  EV_IMAP,
  EV_TAG,
  EV_BREAK,
};

static const char *const ev_names[] = {
    [EV_UINT] = "an unsigned integer",
    [EV_NEGINT] = "a negative integer",
    [EV_FLOAT] = "a float",
    [EV_BOOL] = "a boolean",
    [EV_NULL] = "null",
    [EV_UNDEF] = "undefined",
    [EV_TEXT] = "a text string",
    [EV_BYTES] = "a byte string",
    [EV_TEXT_START] = "a text string",
    [EV_BYTES_START] = "a byte string",
    [EV_ARRAY] = "an array",
    [EV_IARRAY] = "an array",
    [EV_MAP] = "a map",
    [EV_IMAP] = "a map",
    [EV_TAG] = "a tagged item",
    [EV_BREAK] = "a break",
};

struct ev {
  enum ev_kind kind;
  uint64_t u; /* EV_UINT, EV_NEGINT, EV_TAG, EV_ARRAY, EV_MAP */
  double f;
  bool b;
  const char *s; /* EV_TEXT, EV_BYTES */
  size_t len;
};

enum cstate { C_TOP, C_RECORD, C_KEY, C_VALUE, C_DONE };

#define SKIP_MAX 16
#define SKIP_INDEF UINT64_MAX
#define SELF_DESCRIBED_CBOR 55799 /* RFC 8949 3.4.6 */

struct cbor_dec {
  struct senml_dec s;
  size_t len, pos; /* pos: offset of the item being decoded */
  int rc;
  enum cstate state;
  bool pack_indef, map_indef;
  size_t records_left, pairs_left;
  int label; /* of the value awaited in C_VALUE */
  /* skipping the value of an unknown label */
  unsigned depth;
  struct skip {
    uint64_t left; /* items still to come, or SKIP_INDEF */
    uint8_t kind;  /* what opened it; EV_TEXT / EV_BYTES: a string's chunks */
    bool odd;      /* EV_IMAP: a key is waiting for its value */
  } skip[SKIP_MAX];
  /* an indefinite-length text string in a key or value, joined */
  bool collecting;
  char last; /* its last byte, for the must-understand '_' */
  size_t slen;
  char sbuf[TEXT_MAX + 1];
};

static void cbor_fail_malformed(struct cbor_dec *d, const char *what) {
  d->rc = fail_pack(d->s.err, d->s.errlen, "malformed CBOR at byte %zu: %s", d->pos, what);
}

static void cbor_record_end(struct cbor_dec *d) {
  if ((d->rc = record_end(&d->s)) != 0)
    return;
  if (!d->pack_indef && --d->records_left == 0)
    d->state = C_DONE;
  else
    d->state = C_RECORD;
}

static void cbor_pair_done(struct cbor_dec *d) {
  if (!d->map_indef && --d->pairs_left == 0)
    cbor_record_end(d);
  else
    d->state = C_KEY;
}

static void cbor_top(struct cbor_dec *d, const struct ev *e) {
  if (e->kind == EV_TAG && e->u == SELF_DESCRIBED_CBOR)
    return;
  if (e->kind == EV_IARRAY) {
    d->pack_indef = true;
  } else if (e->kind == EV_ARRAY && e->u == 0) {
    d->rc = fail_pack(d->s.err, d->s.errlen, "empty pack");
    return;
  } else if (e->kind == EV_ARRAY && e->u > PROTO_PACK_MAX) {
    d->rc = fail_pack(d->s.err, d->s.errlen, "pack has %llu records, more than %d",
                      (unsigned long long)e->u, PROTO_PACK_MAX);
    return;
  } else if (e->kind == EV_ARRAY) {
    d->records_left = (size_t)e->u;
  } else {
    d->rc = fail_pack(d->s.err, d->s.errlen, "a SenML pack is a CBOR array of records, not %s",
                      ev_names[e->kind]);
    return;
  }
  d->state = C_RECORD;
}

static void cbor_record(struct cbor_dec *d, const struct ev *e) {
  if (e->kind == EV_BREAK && d->pack_indef) {
    if (d->s.idx == 0)
      d->rc = fail_pack(d->s.err, d->s.errlen, "empty pack");
    d->state = C_DONE;
    return;
  }
  if (e->kind != EV_MAP && e->kind != EV_IMAP) {
    d->rc = fail(&d->s, "not a map but %s", ev_names[e->kind]);
    return;
  }
  if ((d->rc = record_begin(&d->s)) != 0)
    return;
  d->map_indef = e->kind == EV_IMAP;
  d->pairs_left = (size_t)e->u;
  if (!d->map_indef && d->pairs_left == 0)
    cbor_record_end(d);
  else
    d->state = C_KEY;
}

static void cbor_key_label(struct cbor_dec *d, int l) {
  if (l != L_UNKNOWN && (d->rc = record_label(&d->s, l)) != 0)
    return;
  d->label = l;
  d->state = C_VALUE;
}

static void cbor_key_text(struct cbor_dec *d, const char *s, size_t len, char last) {
  char qs[QUOTE_CAP];
  int l = label_from_name(s, len);
  /* RFC 8428 4.4: a label ending in '_' must be understood. */
  if (l == L_UNKNOWN && len > 0 && last == '_') {
    d->rc = fail(&d->s, "field %s must be understood (RFC 8428 4.4) and is not supported",
                 quote(qs, s, len, false));
    return;
  }
  cbor_key_label(d, l);
}

static void cbor_key(struct cbor_dec *d, const struct ev *e) {
  switch (e->kind) {
  case EV_BREAK:
    if (d->map_indef)
      cbor_record_end(d);
    else
      cbor_fail_malformed(d, "break inside a definite-length map");
    break;
  case EV_UINT:
    cbor_key_label(d, e->u <= INT8_MAX ? label_from_cbor((int64_t)e->u) : L_UNKNOWN);
    break;
  case EV_NEGINT:
    cbor_key_label(d, e->u <= INT8_MAX ? label_from_cbor(-1 - (int64_t)e->u) : L_UNKNOWN);
    break;
  case EV_TEXT:
    cbor_key_text(d, e->s, e->len, e->len > 0 ? e->s[e->len - 1] : '\0');
    break;
  case EV_TEXT_START:
    d->collecting = true;
    d->slen = 0;
    d->last = '\0';
    break;
  default:
    d->rc = fail(&d->s, "map key is %s, not a SenML label", ev_names[e->kind]);
    break;
  }
}

static void cbor_skip_push(struct cbor_dec *d, uint64_t left, enum ev_kind kind) {
  if (d->depth == SKIP_MAX) {
    d->rc = fail(&d->s, "an unknown field is nested more than %d levels deep", SKIP_MAX);
    return;
  }
  d->skip[d->depth].left = left;
  d->skip[d->depth].kind = (uint8_t)kind;
  d->skip[d->depth].odd = false;
  d->depth++;
}

/* Starts skipping the item `e`; returns false when it is complete already. */
static bool cbor_skip_begin(struct cbor_dec *d, const struct ev *e) {
  switch (e->kind) {
  case EV_ARRAY:
  case EV_MAP:
    if (e->u == 0)
      return false;
    /* Every item takes a byte at least: a larger count is truncated data,
     * and refusing it here keeps 2 * count from overflowing. */
    if (e->u > d->len - d->pos) {
      d->rc = fail_pack(d->s.err, d->s.errlen, "truncated CBOR at byte %zu", d->len);
      return true;
    }
    cbor_skip_push(d, e->kind == EV_MAP ? 2 * e->u : e->u, e->kind);
    return true;
  case EV_IARRAY:
  case EV_IMAP:
    cbor_skip_push(d, SKIP_INDEF, e->kind);
    return true;
  case EV_TEXT_START:
    cbor_skip_push(d, SKIP_INDEF, EV_TEXT);
    return true;
  case EV_BYTES_START:
    cbor_skip_push(d, SKIP_INDEF, EV_BYTES);
    return true;
  case EV_TAG:
    cbor_skip_push(d, 1, EV_TAG);
    return true;
  default:
    return false;
  }
}

/* One item at the top of the skip stack is complete. */
static void cbor_skip_item_done(struct cbor_dec *d) {
  while (d->depth > 0) {
    struct skip *f = &d->skip[d->depth - 1];
    if (f->left == SKIP_INDEF) {
      f->odd = !f->odd;
      return;
    }
    if (--f->left > 0)
      return;
    d->depth--; /* the container is complete: one item of its parent */
  }
  cbor_pair_done(d);
}

static void cbor_skip(struct cbor_dec *d, const struct ev *e) {
  struct skip *f = &d->skip[d->depth - 1];
  if (f->kind == EV_TEXT || f->kind == EV_BYTES) {
    /* RFC 8949 3.2.3: chunks are definite strings of the same major type. */
    if (e->kind == EV_BREAK) {
      d->depth--;
      cbor_skip_item_done(d);
    } else if (e->kind != f->kind) {
      cbor_fail_malformed(d, "an indefinite-length string holds another kind of chunk");
    }
    return;
  }
  if (e->kind == EV_BREAK) {
    if (f->left != SKIP_INDEF) {
      cbor_fail_malformed(d, "break inside a definite-length item");
      return;
    }
    if (f->kind == EV_IMAP && f->odd) {
      cbor_fail_malformed(d, "an indefinite-length map ends with a key and no value");
      return;
    }
    d->depth--;
    cbor_skip_item_done(d);
    return;
  }
  if (!cbor_skip_begin(d, e))
    cbor_skip_item_done(d);
}

static void cbor_value(struct cbor_dec *d, const struct ev *e) {
  struct senml_dec *s = &d->s;
  int l = d->label;
  if (e->kind == EV_BREAK) {
    cbor_fail_malformed(d, "break where a value belongs");
    return;
  }
  if (l == L_UNKNOWN) {
    if (!cbor_skip_begin(d, e))
      cbor_pair_done(d);
    return;
  }
  enum ev_kind k = e->kind;
  bool fits = labels[l].type == T_NUMBER ? (k == EV_UINT || k == EV_NEGINT || k == EV_FLOAT)
              : labels[l].type == T_TEXT ? (k == EV_TEXT || k == EV_TEXT_START)
                                         : k == EV_BOOL;
  if (!fits) {
    d->rc = wrong_type(s, l, ev_names[k]);
    return;
  }
  switch (k) {
  case EV_UINT:
    d->rc = record_number(s, l, (double)e->u);
    break;
  case EV_NEGINT:
    d->rc = record_number(s, l, -1.0 - (double)e->u);
    break;
  case EV_FLOAT:
    d->rc = record_number(s, l, e->f);
    break;
  case EV_BOOL:
    d->rc = record_bool(s, l, e->b);
    break;
  case EV_TEXT:
    d->rc = record_text(s, l, e->s, e->len);
    break;
  case EV_TEXT_START:
    d->collecting = true;
    d->slen = 0;
    d->last = '\0';
    return;
  default: /* excluded above */
    break;
  }
  if (d->rc == 0)
    cbor_pair_done(d);
}

/* The chunks of an indefinite-length text string in a key or a value. */
static void cbor_collect(struct cbor_dec *d, const struct ev *e) {
  if (e->kind == EV_TEXT) {
    size_t room = sizeof(d->sbuf) - d->slen;
    size_t n = e->len < room ? e->len : room;
    memcpy(d->sbuf + d->slen, e->s, n);
    d->slen += n; /* stops at TEXT_MAX + 1: enough to know it is too long */
    if (e->len > 0)
      d->last = e->s[e->len - 1];
    return;
  }
  if (e->kind != EV_BREAK) {
    cbor_fail_malformed(d, "an indefinite-length string holds another kind of chunk");
    return;
  }
  d->collecting = false;
  if (d->state == C_KEY) {
    cbor_key_text(d, d->sbuf, d->slen, d->last);
  } else if ((d->rc = record_text(&d->s, d->label, d->sbuf, d->slen)) == 0) {
    cbor_pair_done(d);
  }
}

static void cbor_on_event(struct cbor_dec *d, const struct ev *e) {
  if (d->rc != 0)
    return;
  if (d->depth > 0) {
    cbor_skip(d, e);
    return;
  }
  if (d->collecting) {
    cbor_collect(d, e);
    return;
  }
  switch (d->state) {
  case C_TOP:
    cbor_top(d, e);
    break;
  case C_RECORD:
    cbor_record(d, e);
    break;
  case C_KEY:
    cbor_key(d, e);
    break;
  case C_VALUE:
    cbor_value(d, e);
    break;
  case C_DONE:
    break;
  }
}

static bool utf8_valid(const uint8_t *s, size_t n) { return utf8_bad_at(s, n) == n; }

static void on_uint(void *c, uint64_t v) {
  cbor_on_event(c, &(struct ev){.kind = EV_UINT, .u = v});
}
static void on_uint8(void *c, uint8_t v) { on_uint(c, v); }
static void on_uint16(void *c, uint16_t v) { on_uint(c, v); }
static void on_uint32(void *c, uint32_t v) { on_uint(c, v); }
static void on_negint(void *c, uint64_t v) {
  cbor_on_event(c, &(struct ev){.kind = EV_NEGINT, .u = v});
}
static void on_negint8(void *c, uint8_t v) { on_negint(c, v); }
static void on_negint16(void *c, uint16_t v) { on_negint(c, v); }
static void on_negint32(void *c, uint32_t v) { on_negint(c, v); }
static void on_bytes(void *c, cbor_data p, size_t n) {
  cbor_on_event(c, &(struct ev){.kind = EV_BYTES, .s = (const char *)p, .len = n});
}
static void on_bytes_start(void *c) { cbor_on_event(c, &(struct ev){.kind = EV_BYTES_START}); }
static void on_text(void *c, cbor_data p, size_t n) {
  struct cbor_dec *d = c;
  /* RFC 8949 3.2.3: each chunk of an indefinite string is valid on its own. */
  if (d->rc == 0 && !utf8_valid(p, n)) {
    cbor_fail_malformed(d, "a text string that is not UTF-8 (RFC 8949 5.3.1)");
    return;
  }
  cbor_on_event(c, &(struct ev){.kind = EV_TEXT, .s = (const char *)p, .len = n});
}
static void on_text_start(void *c) { cbor_on_event(c, &(struct ev){.kind = EV_TEXT_START}); }
static void on_array(void *c, size_t n) {
  cbor_on_event(c, &(struct ev){.kind = EV_ARRAY, .u = n});
}
static void on_iarray(void *c) { cbor_on_event(c, &(struct ev){.kind = EV_IARRAY}); }
static void on_map(void *c, size_t n) { cbor_on_event(c, &(struct ev){.kind = EV_MAP, .u = n}); }
static void on_imap(void *c) { cbor_on_event(c, &(struct ev){.kind = EV_IMAP}); }
static void on_tag(void *c, uint64_t v) { cbor_on_event(c, &(struct ev){.kind = EV_TAG, .u = v}); }
static void on_float(void *c, float v) { cbor_on_event(c, &(struct ev){.kind = EV_FLOAT, .f = v}); }
static void on_double(void *c, double v) {
  cbor_on_event(c, &(struct ev){.kind = EV_FLOAT, .f = v});
}
static void on_undef(void *c) { cbor_on_event(c, &(struct ev){.kind = EV_UNDEF}); }
static void on_null(void *c) { cbor_on_event(c, &(struct ev){.kind = EV_NULL}); }
static void on_bool(void *c, bool v) { cbor_on_event(c, &(struct ev){.kind = EV_BOOL, .b = v}); }
static void on_break(void *c) { cbor_on_event(c, &(struct ev){.kind = EV_BREAK}); }

static const struct cbor_callbacks callbacks = {
    .uint8 = on_uint8,
    .uint16 = on_uint16,
    .uint32 = on_uint32,
    .uint64 = on_uint,
    .negint8 = on_negint8,
    .negint16 = on_negint16,
    .negint32 = on_negint32,
    .negint64 = on_negint,
    .byte_string_start = on_bytes_start,
    .byte_string = on_bytes,
    .string = on_text,
    .string_start = on_text_start,
    .indef_array_start = on_iarray,
    .array_start = on_array,
    .indef_map_start = on_imap,
    .map_start = on_map,
    .tag = on_tag,
    .float2 = on_float, /* libcbor widens half precision to float */
    .float4 = on_float,
    .float8 = on_double,
    .undefined = on_undef,
    .null = on_null,
    .boolean = on_bool,
    .indef_break = on_break,
};

int proto_senml_decode_cbor(const uint8_t *buf, size_t len, const proto_limits_t *lim,
                            proto_pack_t *out, char *err, size_t errlen) {
  struct cbor_dec d;
  dec_init(&d.s, lim, out, err, errlen);
  d.len = len;
  d.pos = 0;
  d.rc = 0;
  d.state = C_TOP;
  d.pack_indef = d.map_indef = false;
  d.records_left = d.pairs_left = 0;
  d.label = L_UNKNOWN;
  d.depth = 0;
  d.collecting = false;
  if (len == 0)
    return fail_pack(err, errlen, "no data: a SenML pack is a CBOR array of records");

  while (d.rc == 0 && d.state != C_DONE) {
    if (d.pos == len)
      return fail_pack(err, errlen, "truncated CBOR at byte %zu", len);
    struct cbor_decoder_result r = cbor_stream_decode(buf + d.pos, len - d.pos, &callbacks, &d);
    if (r.status == CBOR_DECODER_NEDATA)
      return fail_pack(err, errlen, "truncated CBOR at byte %zu", d.pos);
    if (r.status != CBOR_DECODER_FINISHED)
      return fail_pack(err, errlen, "malformed CBOR at byte %zu: reserved initial byte 0x%02x",
                       d.pos, buf[d.pos]);
    d.pos += r.read;
  }
  if (d.rc == 0 && d.pos != len)
    return fail_pack(err, errlen, "trailing data after the pack at byte %zu", d.pos);
  return d.rc;
}

/* ---- encoders: what the decoders read back unchanged */

/* -EINVAL for a pack no SenML text could carry to our decoders. */
static int encode_check(const proto_pack_t *p) {
  size_t dl = strnlen(p->device, sizeof(p->device));
  if (p->n == 0 || p->n > PROTO_PACK_MAX || dl == 0 || dl > PROTO_DEVICE_MAX)
    return -EINVAL;
  for (size_t i = 0; i < dl; i++)
    if (!is_id_char(p->device[i]))
      return -EINVAL;
  for (size_t i = 0; i < p->n; i++) {
    const proto_record_t *r = &p->rec[i];
    /* A time below 2^28 s would be read back as relative to now. */
    if (r->quantity >= PROTO_Q_COUNT || !isfinite(r->value) ||
        r->t_ms < (int64_t)PROTO_SENML_REL_LIMIT * 1000 || r->t_ms > (INT64_C(1) << 53))
      return -EINVAL;
  }
  return 0;
}

/* The JSON encoder writes its tokens by hand, with printf only for a
 * fraction: sitesim's load generator encodes every pack it sends on the
 * cores of the gateway it measures, and with a vsnprintf per token (and a
 * %.15g with its strtod check per value) a 10-record pack took 7.6 us
 * against CBOR's 1.4; written by hand, 0.47 us (bench/senml_decode.c,
 * encode_json_us, on a loaded box). */
struct sink {
  char *buf;
  size_t cap, len;
  bool full;
};

static void put_mem(struct sink *o, const char *s, size_t n) {
  if (o->full)
    return;
  if (o->cap - o->len <= n) { /* and room for the terminating NUL */
    o->full = true;
    return;
  }
  memcpy(o->buf + o->len, s, n);
  o->len += n;
  o->buf[o->len] = '\0';
}

static void put_str(struct sink *o, const char *s) { put_mem(o, s, strlen(s)); }

/* `v` in decimal, at least `width` digits (leading zeros). */
static void put_uint(struct sink *o, uint64_t v, int width) {
  char tmp[24];
  int i = (int)sizeof(tmp);
  do {
    tmp[--i] = (char)('0' + v % 10);
    v /= 10;
  } while (v > 0 || (int)sizeof(tmp) - i < width);
  put_mem(o, tmp + i, sizeof(tmp) - (size_t)i);
}

/* Milliseconds as seconds, no trailing zeros: 1764100000.5 */
static void put_ms(struct sink *o, int64_t ms) {
  uint64_t a = ms < 0 ? (uint64_t)0 - (uint64_t)ms : (uint64_t)ms;
  unsigned f = (unsigned)(a % 1000);
  if (ms < 0)
    put_mem(o, "-", 1);
  put_uint(o, a / 1000, 1);
  if (f == 0)
    return;
  put_mem(o, ".", 1);
  if (f % 100 == 0)
    put_uint(o, f / 100, 1);
  else if (f % 10 == 0)
    put_uint(o, f / 10, 2);
  else
    put_uint(o, f, 3);
}

/* The shortest of %.15g..%.17g that reads back as the same double. A whole
 * number below 10^15 is that in %.15g: its digits, written directly (-0
 * takes the general path). */
static void put_double(struct sink *o, double v) {
  char tmp[40];
  if (v != 0 && v == trunc(v) && fabs(v) < 1e15) {
    if (v < 0)
      put_mem(o, "-", 1);
    put_uint(o, (uint64_t)fabs(v), 1);
    return;
  }
  for (int prec = 15; prec <= 17; prec++) {
    snprintf(tmp, sizeof(tmp), "%.*g", prec, v);
    if (prec == 17 || strtod(tmp, NULL) == v)
      break;
  }
  /* JSON wants '.', whatever LC_NUMERIC says (strtod above read the same). */
  for (char *c = tmp; *c != '\0'; c++)
    if (*c == ',')
      *c = '.';
  put_str(o, tmp);
}

int proto_senml_encode_json(const proto_pack_t *p, char *buf, size_t cap) {
  int rc = encode_check(p);
  if (rc != 0)
    return rc;
  if (buf == NULL || cap == 0)
    return -ENOSPC;
  struct sink o = {buf, cap, 0, false};
  int64_t t0 = p->rec[0].t_ms;
  buf[0] = '\0';
  put_mem(&o, "[", 1);
  for (size_t i = 0; i < p->n; i++) {
    const proto_record_t *r = &p->rec[i];
    put_str(&o, i > 0 ? ",{" : "{");
    if (i == 0) {
      put_str(&o, "\"bn\":\"");
      put_str(&o, p->device);
      put_str(&o, "/\",\"bt\":");
      put_ms(&o, t0);
      put_mem(&o, ",", 1);
    }
    put_str(&o, "\"n\":\"");
    put_str(&o, proto_quantity_name(r->quantity));
    put_mem(&o, "\"", 1);
    if (r->t_ms != t0) {
      put_str(&o, ",\"t\":");
      put_ms(&o, r->t_ms - t0);
    }
    if (r->quantity == PROTO_Q_ON) {
      put_str(&o, r->value != 0.0 ? ",\"vb\":true}" : ",\"vb\":false}");
    } else {
      put_str(&o, ",\"v\":");
      put_double(&o, r->value);
      put_mem(&o, "}", 1);
    }
  }
  put_mem(&o, "]", 1);
  return o.full ? -ENOSPC : (int)o.len;
}

struct csink {
  uint8_t *buf;
  size_t cap, len;
  bool full;
};

/* libcbor's encoders return the bytes written, 0 when there is no room. */
#define CPUT(o, call)                                                                              \
  do {                                                                                             \
    if (!(o)->full) {                                                                              \
      size_t n_ = (call);                                                                          \
      if (n_ == 0)                                                                                 \
        (o)->full = true;                                                                          \
      else                                                                                         \
        (o)->len += n_;                                                                            \
    }                                                                                              \
  } while (0)
#define CAT(o) ((o)->buf + (o)->len), ((o)->cap - (o)->len)

static void cput_int(struct csink *o, int64_t v) {
  if (v >= 0)
    CPUT(o, cbor_encode_uint((uint64_t)v, CAT(o)));
  else
    CPUT(o, cbor_encode_negint((uint64_t)(-1 - v), CAT(o)));
}

static void cput_text(struct csink *o, const char *s) {
  size_t n = strlen(s);
  CPUT(o, cbor_encode_string_start(n, CAT(o)));
  if (o->full)
    return;
  if (o->cap - o->len < n) {
    o->full = true;
    return;
  }
  memcpy(o->buf + o->len, s, n);
  o->len += n;
}

/* The smallest exact form: an integer, a float32, else a float64. */
static void cput_number(struct csink *o, double v) {
  if (v == trunc(v) && fabs(v) < 9007199254740992.0) /* 2^53 */
    cput_int(o, (int64_t)v);
  else if (fabs(v) <= FLT_MAX && (double)(float)v == v)
    CPUT(o, cbor_encode_single((float)v, CAT(o)));
  else
    CPUT(o, cbor_encode_double(v, CAT(o)));
}

static void cput_ms(struct csink *o, int64_t ms) {
  if (ms % 1000 == 0)
    cput_int(o, ms / 1000);
  else
    cput_number(o, (double)ms / 1000.0);
}

int proto_senml_encode_cbor(const proto_pack_t *p, uint8_t *buf, size_t cap) {
  char bn[PROTO_DEVICE_MAX + 2];
  int rc = encode_check(p);
  if (rc != 0)
    return rc;
  if (buf == NULL || cap == 0)
    return -ENOSPC;
  struct csink o = {buf, cap, 0, false};
  int64_t t0 = p->rec[0].t_ms;
  snprintf(bn, sizeof(bn), "%s/", p->device);
  CPUT(&o, cbor_encode_array_start(p->n, CAT(&o)));
  for (size_t i = 0; i < p->n; i++) {
    const proto_record_t *r = &p->rec[i];
    size_t pairs = 2 + (i == 0 ? 2 : 0) + (r->t_ms != t0 ? 1 : 0);
    CPUT(&o, cbor_encode_map_start(pairs, CAT(&o)));
    if (i == 0) {
      cput_int(&o, labels[L_BN].cbor);
      cput_text(&o, bn);
      cput_int(&o, labels[L_BT].cbor);
      cput_ms(&o, t0);
    }
    cput_int(&o, labels[L_N].cbor);
    cput_text(&o, proto_quantity_name(r->quantity));
    if (r->t_ms != t0) {
      cput_int(&o, labels[L_T].cbor);
      cput_ms(&o, r->t_ms - t0);
    }
    if (r->quantity == PROTO_Q_ON) {
      cput_int(&o, labels[L_VB].cbor);
      CPUT(&o, cbor_encode_bool(r->value != 0.0, CAT(&o)));
    } else {
      cput_int(&o, labels[L_V].cbor);
      cput_number(&o, r->value);
    }
  }
  if (o.full || o.len > INT32_MAX)
    return -ENOSPC;
  return (int)o.len;
}
