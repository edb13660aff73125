/* Weighing tickets (POST /w): one flat object in JSON or CBOR, decoded into
 * a proto_ticket_t.
 *
 * Both decoders feed the same field setter (field_set()) with one small
 * tagged value per field, and the same whole-ticket check (finish()), so the
 * two formats accept exactly the same tickets and refuse the others in the
 * same words. A ticket is a flat object of scalars: the CBOR side walks it
 * with libcbor's streaming decoder straight from the request buffer and
 * stops at the first thing that is not a scalar, so no item tree is ever
 * built and a header claiming 2^32 items costs nothing.
 *
 * The ledger behind POST /w is append-only and compared field by field for
 * idempotency, so the decoder is strict: unknown or repeated fields,
 * fractional kilograms and relative times are refused, each with a sentence
 * that names the field. */
#include "protocol/protocol.h"

#include <assert.h>
#include <cbor.h>
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* ---- names */
static const char *const category_names[] = {
#define X(e, name, excl) name,
    PROTO_WASTE_CATEGORY_MAP(X)
#undef X
};
static const bool category_excluded[] = {
#define X(e, name, excl) excl,
    PROTO_WASTE_CATEGORY_MAP(X)
#undef X
};
static const char *const kind_names[] = {
#define X(e, name) name,
    PROTO_WASTE_KIND_MAP(X)
#undef X
};
static const char *const dest_names[] = {
#define X(e, name, leaves) name,
    PROTO_WASTE_DEST_MAP(X)
#undef X
};
static const bool dest_leaves[] = {
#define X(e, name, leaves) leaves,
    PROTO_WASTE_DEST_MAP(X)
#undef X
};
static const char *const type_names[] = {"waste", "delivery", "return"};

/* The lists for messages: "spoil, mud, ..." */
#define LIST2(e, name, x) ", " name
#define LIST1(e, name) ", " name
static const char category_list[] = PROTO_WASTE_CATEGORY_MAP(LIST2);
static const char kind_list[] = PROTO_WASTE_KIND_MAP(LIST1);
static const char dest_list[] = PROTO_WASTE_DEST_MAP(LIST2);
#undef LIST1
#undef LIST2

#define N(a) (int)(sizeof(a) / sizeof((a)[0]))

const char *proto_waste_category_name(int c) {
  return c >= 0 && c < N(category_names) ? category_names[c] : NULL;
}
const char *proto_waste_kind_name(int k) {
  return k >= 0 && k < N(kind_names) ? kind_names[k] : NULL;
}
const char *proto_waste_dest_name(int d) {
  return d >= 0 && d < N(dest_names) ? dest_names[d] : NULL;
}
const char *proto_ticket_type_name(int type) {
  return type >= 0 && type < N(type_names) ? type_names[type] : NULL;
}

static int lookup(const char *const *names, int n, const char *s, size_t len) {
  for (int i = 0; i < n; i++)
    if (strlen(names[i]) == len && memcmp(names[i], s, len) == 0)
      return i;
  return -1;
}

int proto_waste_category_from_name(const char *s) {
  return s ? lookup(category_names, N(category_names), s, strlen(s)) : -1;
}
int proto_waste_kind_from_name(const char *s) {
  return s ? lookup(kind_names, N(kind_names), s, strlen(s)) : -1;
}
int proto_waste_dest_from_name(const char *s) {
  return s ? lookup(dest_names, N(dest_names), s, strlen(s)) : -1;
}
bool proto_waste_category_excluded(int c) {
  return c >= 0 && c < N(category_excluded) && category_excluded[c];
}
bool proto_waste_dest_leaves_site(int d) { return d >= 0 && d < N(dest_leaves) && dest_leaves[d]; }

/* ---- fields: X(enum, name) */
#define TICKET_FIELD_MAP(X)                                                                        \
  X(SCALE, "scale")                                                                                \
  X(NO, "no")                                                                                      \
  X(T, "t")                                                                                        \
  X(PLATE, "plate")                                                                                \
  X(DIR, "dir")                                                                                    \
  X(GROSS, "gross_kg")                                                                             \
  X(TARE, "tare_kg")                                                                               \
  X(NET, "net_kg")                                                                                 \
  X(CATEGORY, "category")                                                                          \
  X(KIND, "kind")                                                                                  \
  X(DEST, "dest")                                                                                  \
  X(DEST_NAME, "dest_name")                                                                        \
  X(CARRIER, "carrier")                                                                            \
  X(MATERIAL, "material")                                                                          \
  X(GREEN, "green_cert")                                                                           \
  X(NOTE, "note")

enum field {
#define X(e, name) F_##e,
  TICKET_FIELD_MAP(X)
#undef X
      F_COUNT
};
static const char *const field_names[] = {
#define X(e, name) name,
    TICKET_FIELD_MAP(X)
#undef X
};
#define BIT(f) (1u << (f))

/* One scalar value, as either format gives it. */
enum vkind { V_INT, V_UINT_BIG, V_REAL, V_TEXT, V_BOOL, V_OTHER };
struct val {
  enum vkind kind;
  int64_t i;        /* V_INT */
  double f;         /* V_REAL */
  const char *s;    /* V_TEXT: not NUL-terminated, valid UTF-8 */
  size_t len;       /* V_TEXT */
  bool b;           /* V_BOOL */
  const char *what; /* V_OTHER: "an array", "null", ... */
};

struct dec {
  const proto_ticket_limits_t *lim;
  proto_ticket_t *out;
  char *err;
  size_t errlen;
  uint32_t seen;
  double t; /* as sent, checked in finish() */
};

/* The English sentence into `err`, and `code` with the sentence's values
 * for proto_why(). */
__attribute__((format(printf, 3, 4))) static int fail(struct dec *d, proto_why_code_t code,
                                                      const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  if (d->err && d->errlen) {
    va_list ap2;
    va_copy(ap2, ap);
    vsnprintf(d->err, d->errlen, fmt, ap2);
    va_end(ap2);
  }
  proto__why_set(code, fmt, ap);
  va_end(ap);
  return -EBADMSG;
}

/* RFC 3629 section 4: no overlong forms, no surrogates, nothing past U+10FFFF.
 * Returns the number of characters, or -1. */
static long utf8_chars(const uint8_t *s, size_t n) {
  long chars = 0;
  for (size_t i = 0; i < n; chars++) {
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
      return -1;
    if (n - i < len)
      return -1;
    for (size_t k = 1; k < len; k++) {
      if ((s[i + k] & 0xc0) != 0x80)
        return -1;
      cp = cp << 6 | (s[i + k] & 0x3f);
    }
    if ((len == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
        (len == 4 && (cp < 0x10000 || cp > 0x10ffff)))
      return -1;
    i += len;
  }
  return chars;
}

/* Quotes untrusted text (valid UTF-8) for a one-line message: at most 40
 * bytes, cut on a character boundary, quote, backslash and control bytes
 * escaped. Chinese stays readable. */
#define QUOTE_CAP 176
static const char *quote(char dst[QUOTE_CAP], const char *s, size_t len) {
  size_t o = 0, i = 0;
  dst[o++] = '"';
  for (; i < len && i < 40; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c == '"' || c == '\\')
      o += (size_t)snprintf(dst + o, QUOTE_CAP - o, "\\%c", c);
    else if (c < 0x20 || c == 0x7f)
      o += (size_t)snprintf(dst + o, QUOTE_CAP - o, "\\x%02x", c);
    else
      dst[o++] = (char)c;
  }
  if (i < len) {
    while (o > 1 && ((unsigned char)dst[o - 1] & 0xc0) == 0x80)
      o--; /* continuation bytes of the cut character */
    if (o > 1 && (unsigned char)dst[o - 1] >= 0xc0)
      o--; /* and its lead byte */
    memcpy(dst + o, "...", 3);
    o += 3;
  }
  dst[o++] = '"';
  dst[o] = '\0';
  return dst;
}

static const char *val_what(const struct val *v) {
  switch (v->kind) {
  case V_INT:
  case V_UINT_BIG:
  case V_REAL:
    return "a number";
  case V_TEXT:
    return "a string";
  case V_BOOL:
    return "true or false";
  case V_OTHER:
    return v->what;
  }
  return "?";
}

static int wrong_type(struct dec *d, enum field f, const char *want, const struct val *v) {
  proto_why_code_t code = strcmp(want, "a whole number") == 0  ? PROTO_WHY_TICKET_TYPE_INT
                          : strcmp(want, "a string") == 0      ? PROTO_WHY_TICKET_TYPE_TEXT
                          : strcmp(want, "true or false") == 0 ? PROTO_WHY_TICKET_TYPE_BOOL
                                                               : PROTO_WHY_TICKET_TYPE_DIR;
  return fail(d, code, "field \"%s\" must be %s, not %s", field_names[f], want, val_what(v));
}

/* A whole number within [min, max]; reals are accepted when integral
 * (17600.0), since some JSON writers have no integers. */
static int get_int(struct dec *d, enum field f, const struct val *v, int64_t min, int64_t max,
                   const char *unit, int64_t *out) {
  int64_t i;
  if (v->kind == V_INT) {
    i = v->i;
  } else if (v->kind == V_UINT_BIG) {
    return fail(d, PROTO_WHY_TICKET_RANGE,
                "field \"%s\" is out of range %" PRId64 "..%" PRId64 "%s", field_names[f], min, max,
                unit);
  } else if (v->kind == V_REAL) {
    if (!isfinite(v->f))
      return fail(d, PROTO_WHY_TICKET_FINITE, "field \"%s\" must be a finite number",
                  field_names[f]);
    if (v->f != floor(v->f))
      return fail(d, PROTO_WHY_TICKET_WHOLE, "field \"%s\" must be a whole number%s, not %.15g",
                  field_names[f], *unit ? " of kilograms" : "", v->f);
    if (v->f < (double)min || v->f > (double)max)
      return fail(d, PROTO_WHY_TICKET_RANGE_VALUE,
                  "field \"%s\": %.15g is out of range %" PRId64 "..%" PRId64 "%s", field_names[f],
                  v->f, min, max, unit);
    i = (int64_t)v->f;
  } else {
    return wrong_type(d, f, "a whole number", v);
  }
  if (i < min || i > max)
    return fail(d, PROTO_WHY_TICKET_RANGE_VALUE,
                "field \"%s\": %" PRId64 " is out of range %" PRId64 "..%" PRId64 "%s",
                field_names[f], i, min, max, unit);
  *out = i;
  return 0;
}

/* Free text: no control characters, at most `max_chars` characters. */
static int get_text(struct dec *d, enum field f, const struct val *v, long max_chars, char *out,
                    size_t cap) {
  char q[QUOTE_CAP];
  if (v->kind != V_TEXT)
    return wrong_type(d, f, "a string", v);
  long chars = utf8_chars((const uint8_t *)v->s, v->len);
  if (chars < 0)
    return fail(d, PROTO_WHY_TICKET_UTF8, "field \"%s\" is not valid UTF-8", field_names[f]);
  for (size_t i = 0; i < v->len; i++) {
    unsigned char c = (unsigned char)v->s[i];
    if (c < 0x20 || c == 0x7f)
      return fail(d, PROTO_WHY_TICKET_CONTROL, "field \"%s\": %s holds a control character",
                  field_names[f], quote(q, v->s, v->len));
  }
  if (chars > max_chars || v->len >= cap)
    return fail(d, PROTO_WHY_TICKET_LONG, "field \"%s\": %s is longer than %ld characters",
                field_names[f], quote(q, v->s, v->len), max_chars);
  memcpy(out, v->s, v->len);
  out[v->len] = '\0';
  return 0;
}

static bool is_id_char(char c, bool lower_only) {
  if (lower_only)
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_';
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
         c == '_' || c == '-';
}

/* An identifier: scale ids as device ids, material ids lower case. */
static int get_id(struct dec *d, enum field f, const struct val *v, bool lower_only, char *out,
                  size_t cap) {
  char q[QUOTE_CAP];
  if (v->kind != V_TEXT)
    return wrong_type(d, f, "a string", v);
  bool ok = v->len > 0 && v->len < cap;
  for (size_t i = 0; ok && i < v->len; i++)
    ok = is_id_char(v->s[i], lower_only);
  if (!ok)
    return fail(d, lower_only ? PROTO_WHY_TICKET_ID_LOWER : PROTO_WHY_TICKET_ID,
                "field \"%s\": %s must be 1 to %zu of %s", field_names[f], quote(q, v->s, v->len),
                cap - 1, lower_only ? "a-z 0-9 _" : "A-Z a-z 0-9 . _ -");
  memcpy(out, v->s, v->len);
  out[v->len] = '\0';
  return 0;
}

static int get_enum(struct dec *d, enum field f, const struct val *v, const char *const *names,
                    int n, const char *list, int8_t *out) {
  char q[QUOTE_CAP];
  if (v->kind != V_TEXT)
    return wrong_type(d, f, "a string", v);
  int i = lookup(names, n, v->s, v->len);
  if (i < 0)
    return fail(d, PROTO_WHY_TICKET_ENUM, "field \"%s\": %s is not one of %s", field_names[f],
                quote(q, v->s, v->len), list + 2);
  *out = (int8_t)i;
  return 0;
}

static int field_set(struct dec *d, const char *key, size_t klen, const struct val *v) {
  char q[QUOTE_CAP];
  proto_ticket_t *t = d->out;
  int f = lookup(field_names, F_COUNT, key, klen);
  if (f < 0)
    return fail(d, PROTO_WHY_TICKET_UNKNOWN_FIELD,
                "unknown field %s (fields: scale, no, t, plate, dir, gross_kg, tare_kg, "
                "net_kg, category, kind, dest, dest_name, carrier, material, green_cert)",
                quote(q, key, klen));
  if (d->seen & BIT(f))
    return fail(d, PROTO_WHY_TICKET_TWICE, "field \"%s\" appears twice", field_names[f]);
  d->seen |= BIT(f);
  switch ((enum field)f) {
  case F_SCALE:
    return get_id(d, F_SCALE, v, false, t->scale, sizeof(t->scale));
  case F_NO:
    return get_int(d, F_NO, v, 1, PROTO_TICKET_NO_MAX, "", &t->no);
  case F_T:
    if (v->kind == V_INT)
      d->t = (double)v->i;
    else if (v->kind == V_REAL && isfinite(v->f))
      d->t = v->f;
    else if (v->kind == V_UINT_BIG)
      d->t = HUGE_VAL;
    else
      return wrong_type(d, F_T, "Unix seconds", v);
    return 0;
  case F_PLATE:
    return get_text(d, F_PLATE, v, PROTO_TICKET_PLATE_CHARS, t->plate, sizeof(t->plate));
  case F_DIR:
    if (v->kind != V_TEXT)
      return wrong_type(d, F_DIR, "\"in\" or \"out\"", v);
    if (v->len == 2 && memcmp(v->s, "in", 2) == 0)
      t->dir_in = true;
    else if (v->len == 3 && memcmp(v->s, "out", 3) == 0)
      t->dir_in = false;
    else
      return fail(d, PROTO_WHY_TICKET_DIR,
                  "field \"dir\": %s is not \"in\" (a delivery) or \"out\"",
                  quote(q, v->s, v->len));
    return 0;
  case F_GROSS:
    return get_int(d, F_GROSS, v, 0, PROTO_TICKET_KG_MAX, " kg", &t->gross_kg);
  case F_TARE:
    return get_int(d, F_TARE, v, 0, PROTO_TICKET_KG_MAX, " kg", &t->tare_kg);
  case F_NET:
    return get_int(d, F_NET, v, 1, PROTO_TICKET_KG_MAX, " kg", &t->net_kg);
  case F_CATEGORY:
    return get_enum(d, F_CATEGORY, v, category_names, N(category_names), category_list,
                    &t->category);
  case F_KIND:
    return get_enum(d, F_KIND, v, kind_names, N(kind_names), kind_list, &t->kind);
  case F_DEST:
    return get_enum(d, F_DEST, v, dest_names, N(dest_names), dest_list, &t->dest);
  case F_DEST_NAME:
    return get_text(d, F_DEST_NAME, v, PROTO_TICKET_TEXT_CHARS, t->dest_name, sizeof(t->dest_name));
  case F_CARRIER:
    return get_text(d, F_CARRIER, v, PROTO_TICKET_TEXT_CHARS, t->carrier, sizeof(t->carrier));
  case F_MATERIAL:
    return get_id(d, F_MATERIAL, v, true, t->material, sizeof(t->material));
  case F_GREEN:
    if (v->kind != V_BOOL)
      return wrong_type(d, F_GREEN, "true or false", v);
    t->green_cert = v->b;
    return 0;
  case F_NOTE:
    if (!d->lim->manual)
      return fail(d, PROTO_WHY_TICKET_NOTE_MANUAL,
                  "field \"note\" is for entries made by a person (sitectl waste add)");
    return get_text(d, F_NOTE, v, PROTO_TICKET_TEXT_CHARS, t->note, sizeof(t->note));
  case F_COUNT:
    break;
  }
  return -EBADMSG; /* not reached */
}

static void dec_init(struct dec *d, const proto_ticket_limits_t *lim, proto_ticket_t *out,
                     char *err, size_t errlen) {
  assert(lim != NULL && out != NULL);
  memset(d, 0, sizeof(*d));
  proto_why_clear();
  d->lim = lim;
  d->out = out;
  d->err = err;
  d->errlen = errlen;
  memset(out, 0, sizeof(*out));
  out->gross_kg = out->tare_kg = -1;
  out->category = out->kind = out->dest = -1;
  if (err && errlen)
    err[0] = '\0';
}

static bool has(const struct dec *d, enum field f) { return (d->seen & BIT(f)) != 0; }

/* Only `allowed` of the fields in `mask` may be present. */
static int refuse_fields(struct dec *d, uint32_t mask, proto_why_code_t code, const char *why) {
  for (int f = 0; f < F_COUNT; f++)
    if (d->seen & mask & BIT(f))
      return fail(d, code, "field \"%s\" %s", field_names[f], why);
  return 0;
}

/* Checks that need the whole ticket. */
static int finish(struct dec *d) {
  proto_ticket_t *t = d->out;
  const proto_ticket_limits_t *lim = d->lim;
  int rc;
  if (!d->lim->manual) {
    /* "t" too: a resend must compare equal, so the time cannot be ours */
    static const enum field need[] = {F_SCALE, F_NO, F_T, F_DIR, F_GROSS, F_TARE, F_NET};
    for (size_t i = 0; i < sizeof(need) / sizeof(need[0]); i++)
      if (!has(d, need[i]))
        return fail(d, PROTO_WHY_TICKET_REQUIRED, "field \"%s\" is required", field_names[need[i]]);
  } else {
    if (!has(d, F_DIR))
      return fail(d, PROTO_WHY_TICKET_REQUIRED, "field \"%s\" is required", "dir");
    if (!has(d, F_NET))
      return fail(d, PROTO_WHY_TICKET_REQUIRED, "field \"%s\" is required", "net_kg");
    if (has(d, F_SCALE) != has(d, F_NO))
      return fail(d, PROTO_WHY_TICKET_SCALE_NO,
                  "fields \"scale\" and \"no\" go together (the slip's scale and number)");
  }
  if (has(d, F_GROSS) != has(d, F_TARE))
    return fail(d, PROTO_WHY_TICKET_GROSS_TARE, "fields \"gross_kg\" and \"tare_kg\" go together");
  if (has(d, F_GROSS) && t->tare_kg > t->gross_kg)
    return fail(d, PROTO_WHY_TICKET_TARE_GROSS,
                "tare_kg %" PRId64 " is more than gross_kg %" PRId64, t->tare_kg, t->gross_kg);

  if (!has(d, F_T)) {
    t->t = (int64_t)floor(lim->now);
  } else {
    if (d->t < PROTO_SENML_REL_LIMIT)
      return fail(d, PROTO_WHY_TICKET_T_RELATIVE,
                  "field \"t\" must be absolute Unix seconds, not %.15g", d->t);
    if (d->t > lim->now + PROTO_FUTURE_MAX_S)
      return fail(d, PROTO_WHY_TICKET_T_FUTURE,
                  "field \"t\": %.0f is %.0f s in the future; is the scale's clock right?", d->t,
                  d->t - lim->now);
    if (d->t < lim->oldest)
      return fail(d, PROTO_WHY_TICKET_T_OLD,
                  "field \"t\": %.0f is before %.0f, the oldest weighing accepted", d->t,
                  lim->oldest);
    t->t = (int64_t)floor(d->t);
  }

  if (has(d, F_CATEGORY) && has(d, F_MATERIAL))
    return fail(d, PROTO_WHY_TICKET_CAT_MATERIAL,
                "a ticket has a category (waste) or a material (delivery, return), not both");
  if (t->dir_in) {
    if (!has(d, F_MATERIAL))
      return fail(d, PROTO_WHY_TICKET_IN_MATERIAL,
                  "a ticket with dir \"in\" is a material delivery and needs \"material\"");
    t->type = PROTO_TICKET_DELIVERY;
    rc = refuse_fields(d, BIT(F_KIND) | BIT(F_DEST) | BIT(F_DEST_NAME),
                       PROTO_WHY_TICKET_NOT_DELIVERY,
                       "is for waste leaving the site, not for a delivery");
  } else if (has(d, F_MATERIAL)) {
    t->type = PROTO_TICKET_RETURN;
    rc = refuse_fields(d, BIT(F_KIND) | BIT(F_DEST) | BIT(F_GREEN), PROTO_WHY_TICKET_NOT_RETURN,
                       "is not for material returned to its supplier");
  } else {
    if (!has(d, F_CATEGORY))
      return fail(d, PROTO_WHY_TICKET_OUT_NEEDS,
                  "a ticket with dir \"out\" needs \"category\" (waste) or \"material\" "
                  "(material returned to its supplier)");
    t->type = PROTO_TICKET_WASTE;
    if (!has(d, F_DEST))
      return fail(d, PROTO_WHY_TICKET_DEST_REQUIRED, "field \"dest\" is required for waste (%s)",
                  dest_list + 2);
    if (!has(d, F_KIND) && !proto_waste_category_excluded(t->category))
      return fail(d, PROTO_WHY_TICKET_KIND_REQUIRED, "field \"kind\" is required for %s waste (%s)",
                  category_names[t->category], kind_list + 2);
    rc = refuse_fields(d, BIT(F_GREEN), PROTO_WHY_TICKET_NOT_WASTE, "is for deliveries");
  }
  return rc;
}

int proto_ticket_check_net(const proto_ticket_t *t, double resolution_kg, char *err,
                           size_t errlen) {
  proto_why_clear();
  if (err && errlen)
    err[0] = '\0';
  if (t->gross_kg < 0 || t->tare_kg < 0)
    return 0;
  int64_t diff = t->gross_kg - t->tare_kg - t->net_kg;
  if ((double)(diff < 0 ? -diff : diff) > resolution_kg) {
    struct dec d = {.err = err, .errlen = errlen};
    return fail(&d, PROTO_WHY_TICKET_NET,
                "net_kg %" PRId64 " is not gross_kg - tare_kg = %" PRId64
                " within the scale's resolution of %g kg",
                t->net_kg, t->gross_kg - t->tare_kg, resolution_kg);
  }
  return 0;
}

/* ---- JSON */

/* jansson's message may quote the input: keep it on one printable line. */
static void json_error_clean(char *text) {
  for (unsigned char *p = (unsigned char *)text; *p != '\0'; p++)
    if (*p < 0x20 || *p >= 0x7f)
      *p = '?';
}

static int json_field(struct dec *d, const char *key, size_t klen, const json_t *j) {
  struct val v = {.kind = V_OTHER};
  switch (json_typeof(j)) {
  case JSON_INTEGER:
    v.kind = V_INT;
    v.i = json_integer_value(j);
    break;
  case JSON_REAL:
    v.kind = V_REAL;
    v.f = json_real_value(j);
    break;
  case JSON_STRING:
    v.kind = V_TEXT;
    v.s = json_string_value(j);
    v.len = json_string_length(j);
    break;
  case JSON_TRUE:
  case JSON_FALSE:
    v.kind = V_BOOL;
    v.b = json_is_true(j);
    break;
  case JSON_NULL:
    v.what = "null";
    break;
  case JSON_ARRAY:
    v.what = "an array";
    break;
  case JSON_OBJECT:
    v.what = "an object";
    break;
  }
  return field_set(d, key, klen, &v);
}

int proto_ticket_decode_json(const uint8_t *buf, size_t len, const proto_ticket_limits_t *lim,
                             proto_ticket_t *out, char *err, size_t errlen) {
  struct dec d;
  json_error_t je;
  int rc = 0;
  dec_init(&d, lim, out, err, errlen);
  if (len == 0)
    return fail(&d, PROTO_WHY_TICKET_NO_DATA, "no data: a ticket is a JSON object");
  /* JSON_ALLOW_NUL keeps "\u0000" in strings, so it is refused as a control
   * character instead of cutting the text short. */
  json_t *root = json_loadb((const char *)buf, len, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &je);
  if (!root) {
    json_error_clean(je.text);
    return fail(&d, PROTO_WHY_TICKET_JSON, "invalid JSON at line %d, column %d: %s", je.line,
                je.column, je.text);
  }
  if (!json_is_object(root)) {
    rc = fail(&d, PROTO_WHY_TICKET_NOT_OBJECT, "a ticket is a JSON object, not %s",
              json_is_array(root) ? "an array" : "a single value");
  } else {
    for (void *it = json_object_iter(root); rc == 0 && it; it = json_object_iter_next(root, it))
      rc = json_field(&d, json_object_iter_key(it), json_object_iter_key_len(it),
                      json_object_iter_value(it));
    if (rc == 0)
      rc = finish(&d);
  }
  json_decref(root);
  return rc;
}

/* ---- CBOR: a flat map, walked with libcbor's streaming decoder.
 * States: the map's head, then alternately a text key and a scalar value;
 * an indefinite-length map ends with a break. */
enum cstate { C_TOP, C_KEY, C_VALUE, C_DONE };
#define SELF_DESCRIBED_CBOR 55799 /* RFC 8949 3.4.6 */
#define KEY_MAX 32

struct cdec {
  struct dec d;
  int rc;
  enum cstate state;
  bool indef;
  uint64_t pairs_left;
  size_t pos; /* offset of the item being decoded */
  char key[KEY_MAX + 1];
  size_t klen;
};

static void c_fail_malformed(struct cdec *c, const char *what) {
  c->rc = fail(&c->d, PROTO_WHY_TICKET_CBOR, "malformed CBOR at byte %zu: %s", c->pos, what);
}

static void c_pair_done(struct cdec *c) {
  c->state = C_KEY;
  if (!c->indef && --c->pairs_left == 0) {
    c->state = C_DONE;
    c->rc = finish(&c->d);
  }
}

/* Every item except strings comes through here; `v` describes it. */
static void c_item(struct cdec *c, const struct val *v, bool is_break) {
  if (c->rc != 0)
    return;
  switch (c->state) {
  case C_TOP:
    c->rc = fail(&c->d, PROTO_WHY_TICKET_CBOR, "a ticket is a CBOR map, not %s",
                 is_break ? "a break" : val_what(v));
    return;
  case C_KEY:
    if (is_break && c->indef) {
      c->state = C_DONE;
      c->rc = finish(&c->d);
    } else if (is_break) {
      c_fail_malformed(c, "break inside a definite-length map");
    } else {
      c->rc =
          fail(&c->d, PROTO_WHY_TICKET_CBOR, "field names are text strings, not %s", val_what(v));
    }
    return;
  case C_VALUE:
    if (is_break) {
      c_fail_malformed(c, "an indefinite-length map ends with a key and no value");
      return;
    }
    if ((c->rc = field_set(&c->d, c->key, c->klen, v)) == 0)
      c_pair_done(c);
    return;
  case C_DONE:
    return;
  }
}

static void c_map(struct cdec *c, bool indef, uint64_t n) {
  if (c->rc != 0)
    return;
  if (c->state != C_TOP) {
    struct val v = {.kind = V_OTHER, .what = "a map"};
    c_item(c, &v, false);
    return;
  }
  c->indef = indef;
  c->pairs_left = n;
  c->state = C_KEY;
  if (!indef && n == 0) {
    c->state = C_DONE;
    c->rc = finish(&c->d);
  }
}

static void c_text(struct cdec *c, const uint8_t *s, size_t len) {
  char q[QUOTE_CAP];
  if (c->rc != 0)
    return;
  if (c->state == C_KEY) {
    if (utf8_chars(s, len) < 0) {
      c_fail_malformed(c, "a field name that is not UTF-8");
    } else if (len > KEY_MAX) {
      c->rc = fail(&c->d, PROTO_WHY_TICKET_UNKNOWN_FIELD, "unknown field %s",
                   quote(q, (const char *)s, len));
    } else {
      memcpy(c->key, s, len);
      c->klen = len;
      c->state = C_VALUE;
    }
    return;
  }
  if (c->state == C_VALUE && utf8_chars(s, len) < 0) {
    c->klen = c->klen > KEY_MAX ? KEY_MAX : c->klen;
    c->key[c->klen] = '\0';
    c->rc = fail(&c->d, PROTO_WHY_TICKET_CBOR, "field %s is not valid UTF-8 (RFC 8949 5.3.1)",
                 quote(q, c->key, c->klen));
    return;
  }
  struct val v = {.kind = V_TEXT, .s = (const char *)s, .len = len};
  c_item(c, &v, false);
}

static void c_other(void *ctx, const char *what) {
  struct val v = {.kind = V_OTHER, .what = what};
  c_item(ctx, &v, false);
}

static void on_uint(void *ctx, uint64_t u) {
  struct val v = {.kind = u > INT64_MAX ? V_UINT_BIG : V_INT, .i = (int64_t)(u & INT64_MAX)};
  c_item(ctx, &v, false);
}
static void on_uint8(void *c, uint8_t v) { on_uint(c, v); }
static void on_uint16(void *c, uint16_t v) { on_uint(c, v); }
static void on_uint32(void *c, uint32_t v) { on_uint(c, v); }
static void on_negint(void *ctx, uint64_t u) {
  /* -1 - u; anything below INT64_MIN is out of every range here */
  struct val v = {.kind = V_INT, .i = u > INT64_MAX ? INT64_MIN : -1 - (int64_t)u};
  c_item(ctx, &v, false);
}
static void on_negint8(void *c, uint8_t v) { on_negint(c, v); }
static void on_negint16(void *c, uint16_t v) { on_negint(c, v); }
static void on_negint32(void *c, uint32_t v) { on_negint(c, v); }
static void on_double(void *ctx, double f) {
  struct val v = {.kind = V_REAL, .f = f};
  c_item(ctx, &v, false);
}
static void on_float(void *c, float f) { on_double(c, f); }
static void on_bool(void *ctx, bool b) {
  struct val v = {.kind = V_BOOL, .b = b};
  c_item(ctx, &v, false);
}
static void on_text(void *c, cbor_data s, size_t len) { c_text(c, s, len); }
static void on_text_start(void *ctx) {
  struct cdec *c = ctx;
  if (c->rc == 0)
    c->rc = fail(&c->d, PROTO_WHY_TICKET_CBOR,
                 "indefinite-length text strings are not accepted in a ticket");
}
static void on_bytes(void *c, cbor_data s, size_t len) {
  (void)s;
  (void)len;
  c_other(c, "a byte string");
}
static void on_bytes_start(void *c) { c_other(c, "a byte string"); }
static void on_array(void *c, size_t n) {
  (void)n;
  c_other(c, "an array");
}
static void on_iarray(void *c) { c_other(c, "an array"); }
static void on_map(void *c, size_t n) { c_map(c, false, n); }
static void on_imap(void *c) { c_map(c, true, 0); }
static void on_tag(void *ctx, uint64_t tag) {
  struct cdec *c = ctx;
  if (c->state == C_TOP && tag == SELF_DESCRIBED_CBOR)
    return; /* a marker, allowed in front of the map */
  c_other(c, "a tagged item");
}
static void on_null(void *c) { c_other(c, "null"); }
static void on_undef(void *c) { c_other(c, "undefined"); }
static void on_break(void *ctx) { c_item(ctx, NULL, true); }

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

int proto_ticket_decode_cbor(const uint8_t *buf, size_t len, const proto_ticket_limits_t *lim,
                             proto_ticket_t *out, char *err, size_t errlen) {
  struct cdec c;
  memset(&c, 0, sizeof(c));
  dec_init(&c.d, lim, out, err, errlen);
  c.state = C_TOP;
  if (len == 0)
    return fail(&c.d, PROTO_WHY_TICKET_NO_DATA, "no data: a ticket is a CBOR map");
  while (c.rc == 0 && c.state != C_DONE) {
    if (c.pos == len)
      return fail(&c.d, PROTO_WHY_TICKET_CBOR, "truncated CBOR at byte %zu", len);
    struct cbor_decoder_result r = cbor_stream_decode(buf + c.pos, len - c.pos, &callbacks, &c);
    if (r.status == CBOR_DECODER_NEDATA)
      return fail(&c.d, PROTO_WHY_TICKET_CBOR, "truncated CBOR at byte %zu", c.pos);
    if (r.status != CBOR_DECODER_FINISHED)
      return fail(&c.d, PROTO_WHY_TICKET_CBOR,
                  "malformed CBOR at byte %zu: reserved initial byte 0x%02x", c.pos, buf[c.pos]);
    c.pos += r.read;
  }
  if (c.rc == 0 && c.pos != len)
    return fail(&c.d, PROTO_WHY_TICKET_CBOR, "trailing data after the ticket at byte %zu", c.pos);
  return c.rc;
}

/* ---- encoders */

/* -EINVAL for a ticket the decoders would refuse for its shape. */
static int encode_check(const proto_ticket_t *t) {
  if (t->net_kg < 1 || t->net_kg > PROTO_TICKET_KG_MAX || t->no < 0 ||
      t->no > PROTO_TICKET_NO_MAX || t->type > PROTO_TICKET_RETURN)
    return -EINVAL;
  return 0;
}

struct sink {
  uint8_t *buf;
  size_t cap, len;
  bool full;
};

static void put_bytes(struct sink *o, const void *p, size_t n) {
  if (o->full || o->cap - o->len < n) {
    o->full = true;
    return;
  }
  memcpy(o->buf + o->len, p, n);
  o->len += n;
}

__attribute__((format(printf, 2, 3))) static void put(struct sink *o, const char *fmt, ...) {
  va_list ap;
  if (o->full)
    return;
  va_start(ap, fmt);
  int n = vsnprintf((char *)o->buf + o->len, o->cap - o->len, fmt, ap);
  va_end(ap);
  if (n < 0 || (size_t)n >= o->cap - o->len)
    o->full = true;
  else
    o->len += (size_t)n;
}

/* The fields a ticket has, in contract order, for both encoders. */
typedef void (*emit_text_fn)(struct sink *o, bool *first, const char *key, const char *s);
typedef void (*emit_int_fn)(struct sink *o, bool *first, const char *key, int64_t v);
typedef void (*emit_bool_fn)(struct sink *o, bool *first, const char *key, bool v);

struct emitter {
  emit_text_fn text;
  emit_int_fn num;
  emit_bool_fn boolean;
};

static size_t count_fields(const proto_ticket_t *t) {
  /* t, dir and net_kg always; the others when present, as emit() does */
  return 3 + (t->scale[0] != '\0') + (t->no > 0) + (t->plate[0] != '\0') + 2 * (t->gross_kg >= 0) +
         (t->category >= 0) + (t->kind >= 0) + (t->dest >= 0) + (t->dest_name[0] != '\0') +
         (t->carrier[0] != '\0') + (t->material[0] != '\0') +
         (t->type == PROTO_TICKET_DELIVERY && t->green_cert) + (t->note[0] != '\0');
}

static void emit(const struct emitter *e, struct sink *o, const proto_ticket_t *t) {
  bool first = true;
  if (t->scale[0])
    e->text(o, &first, "scale", t->scale);
  if (t->no > 0)
    e->num(o, &first, "no", t->no);
  e->num(o, &first, "t", t->t);
  if (t->plate[0])
    e->text(o, &first, "plate", t->plate);
  e->text(o, &first, "dir", t->dir_in ? "in" : "out");
  if (t->gross_kg >= 0) {
    e->num(o, &first, "gross_kg", t->gross_kg);
    e->num(o, &first, "tare_kg", t->tare_kg);
  }
  e->num(o, &first, "net_kg", t->net_kg);
  if (t->category >= 0)
    e->text(o, &first, "category", proto_waste_category_name(t->category));
  if (t->kind >= 0)
    e->text(o, &first, "kind", proto_waste_kind_name(t->kind));
  if (t->dest >= 0)
    e->text(o, &first, "dest", proto_waste_dest_name(t->dest));
  if (t->dest_name[0])
    e->text(o, &first, "dest_name", t->dest_name);
  if (t->carrier[0])
    e->text(o, &first, "carrier", t->carrier);
  if (t->material[0])
    e->text(o, &first, "material", t->material);
  if (t->type == PROTO_TICKET_DELIVERY && t->green_cert)
    e->boolean(o, &first, "green_cert", true);
  if (t->note[0])
    e->text(o, &first, "note", t->note);
}

static void json_key(struct sink *o, bool *first, const char *key) {
  put(o, "%s\"%s\":", *first ? "" : ",", key);
  *first = false;
}
static void json_text(struct sink *o, bool *first, const char *key, const char *s) {
  json_key(o, first, key);
  put_bytes(o, "\"", 1);
  for (const char *p = s; *p; p++) {
    unsigned char c = (unsigned char)*p;
    if (c == '"' || c == '\\')
      put(o, "\\%c", c);
    else if (c < 0x20)
      put(o, "\\u%04x", c);
    else
      put_bytes(o, p, 1);
  }
  put_bytes(o, "\"", 1);
}
static void json_num(struct sink *o, bool *first, const char *key, int64_t v) {
  json_key(o, first, key);
  put(o, "%" PRId64, v);
}
static void json_bool(struct sink *o, bool *first, const char *key, bool v) {
  json_key(o, first, key);
  put(o, "%s", v ? "true" : "false");
}

int proto_ticket_encode_json(const proto_ticket_t *t, char *buf, size_t cap) {
  static const struct emitter e = {json_text, json_num, json_bool};
  struct sink o = {(uint8_t *)buf, cap, 0, false};
  if (encode_check(t) != 0)
    return -EINVAL;
  put_bytes(&o, "{", 1);
  emit(&e, &o, t);
  put_bytes(&o, "}", 1);
  put_bytes(&o, "", 1); /* the NUL */
  if (o.full)
    return -ENOSPC;
  return (int)(o.len - 1);
}

/* RFC 8949 3: a head is the major type and an argument in 0, 1, 2, 4 or 8
 * bytes, the shortest that holds it. */
static void cbor_head(struct sink *o, unsigned major, uint64_t arg) {
  uint8_t h[9];
  size_t n;
  if (arg < 24) {
    h[0] = (uint8_t)(major << 5 | arg);
    n = 1;
  } else if (arg <= UINT8_MAX) {
    h[0] = (uint8_t)(major << 5 | 24);
    n = 2;
  } else if (arg <= UINT16_MAX) {
    h[0] = (uint8_t)(major << 5 | 25);
    n = 3;
  } else if (arg <= UINT32_MAX) {
    h[0] = (uint8_t)(major << 5 | 26);
    n = 5;
  } else {
    h[0] = (uint8_t)(major << 5 | 27);
    n = 9;
  }
  for (size_t i = 1; i < n; i++)
    h[i] = (uint8_t)(arg >> (8 * (n - 1 - i)));
  put_bytes(o, h, n);
}
static void cbor_str(struct sink *o, const char *s) {
  size_t n = strlen(s);
  cbor_head(o, 3, n);
  put_bytes(o, s, n);
}
static void cbor_text(struct sink *o, bool *first, const char *key, const char *s) {
  (void)first;
  cbor_str(o, key);
  cbor_str(o, s);
}
static void cbor_num(struct sink *o, bool *first, const char *key, int64_t v) {
  (void)first;
  cbor_str(o, key);
  if (v >= 0)
    cbor_head(o, 0, (uint64_t)v);
  else
    cbor_head(o, 1, (uint64_t)(-1 - v));
}
static void cbor_bool(struct sink *o, bool *first, const char *key, bool v) {
  (void)first;
  cbor_str(o, key);
  uint8_t b = v ? 0xf5 : 0xf4;
  put_bytes(o, &b, 1);
}

int proto_ticket_encode_cbor(const proto_ticket_t *t, uint8_t *buf, size_t cap) {
  static const struct emitter e = {cbor_text, cbor_num, cbor_bool};
  struct sink o = {buf, cap, 0, false};
  if (encode_check(t) != 0)
    return -EINVAL;
  cbor_head(&o, 5, count_fields(t));
  emit(&e, &o, t);
  if (o.full)
    return -ENOSPC;
  return (int)o.len;
}
