/* The bill of quantities as CSV (proto_boq_parse in protocol.h): what the
 * site manager imports with `sitectl materials import`. A pure parser of
 * file input, fuzzed by tests/fuzz/fuzz_boq.c. */
#include "protocol/protocol.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BOQ_FIELDS_MAX 32
#define BOQ_FIELD_MAX 256
#define BOQ_ERRORS_MAX 20 /* lines named in one message */

enum { COL_MATERIAL, COL_UNIT, COL_QTY, COL_DESC, COL_COUNT };
static const char *const col_names[COL_COUNT] = {"material", "unit", "net_qty", "description"};

struct csv {
  const char *p, *end;
  int line;      /* of the record being read */
  int next_line; /* of the record after it */
  char field[BOQ_FIELDS_MAX][BOQ_FIELD_MAX];
  size_t n;
  bool too_long, too_many, bad_quote, nul;
};

struct errs {
  char *buf;
  size_t cap, len;
  int count;
};

__attribute__((format(printf, 3, 4))) static void add_err(struct errs *e, int line, const char *fmt,
                                                          ...) {
  e->count++;
  if (e->count > BOQ_ERRORS_MAX || !e->buf || e->cap == 0)
    return;
  int n = snprintf(e->buf + e->len, e->cap - e->len, "%sline %d: ", e->len ? "\n" : "", line);
  if (n > 0 && (size_t)n < e->cap - e->len) {
    e->len += (size_t)n;
    va_list ap;
    va_start(ap, fmt);
    n = vsnprintf(e->buf + e->len, e->cap - e->len, fmt, ap);
    va_end(ap);
    if (n > 0)
      e->len += (size_t)n < e->cap - e->len ? (size_t)n : e->cap - e->len - 1;
  }
}

static void put_char(struct csv *c, size_t *len, char ch) {
  if (ch == '\0') {
    c->nul = true;
    return;
  }
  if (*len + 1 >= BOQ_FIELD_MAX) {
    c->too_long = true;
    return;
  }
  c->field[c->n][(*len)++] = ch;
}

/* Reads one record (RFC 4180: quoted fields may hold commas, quotes as "",
 * and line breaks). Returns false at the end of the input. */
static bool csv_record(struct csv *c) {
  if (c->p >= c->end)
    return false;
  c->n = 0;
  c->too_long = c->too_many = c->bad_quote = c->nul = false;
  c->line = c->next_line;
  for (;;) {
    size_t len = 0;
    bool quoted = false;
    if (c->p < c->end && *c->p == '"') {
      quoted = true;
      c->p++;
    }
    while (c->p < c->end) {
      char ch = *c->p;
      if (quoted) {
        c->p++;
        if (ch == '"') {
          if (c->p < c->end && *c->p == '"') {
            c->p++;
            put_char(c, &len, '"');
            continue;
          }
          quoted = false;
          if (c->p < c->end && *c->p != ',' && *c->p != '\n' && *c->p != '\r')
            c->bad_quote = true;
          continue;
        }
        if (ch == '\n')
          c->next_line++;
        put_char(c, &len, ch);
        continue;
      }
      if (ch == ',' || ch == '\n' || ch == '\r')
        break;
      put_char(c, &len, ch);
      c->p++;
    }
    if (quoted)
      c->bad_quote = true; /* the input ended inside quotes */
    if (c->n < BOQ_FIELDS_MAX)
      c->field[c->n++][len < BOQ_FIELD_MAX ? len : BOQ_FIELD_MAX - 1] = '\0';
    else
      c->too_many = true;
    if (c->n == BOQ_FIELDS_MAX && c->p < c->end && *c->p == ',') {
      c->too_many = true;
      c->n = BOQ_FIELDS_MAX - 1; /* keep reading into the last slot */
    }
    if (c->p >= c->end)
      break;
    if (*c->p == ',') {
      c->p++;
      continue;
    }
    if (*c->p == '\r')
      c->p++;
    if (c->p < c->end && *c->p == '\n')
      c->p++;
    break;
  }
  c->next_line++;
  return true;
}

static void trim(char *s) {
  size_t n = strlen(s);
  while (n > 0 && isspace((unsigned char)s[n - 1]))
    s[--n] = '\0';
  size_t i = 0;
  while (isspace((unsigned char)s[i]))
    i++;
  memmove(s, s + i, n - i + 1);
}

static bool blank_record(const struct csv *c) {
  for (size_t i = 0; i < c->n; i++)
    if (c->field[i][0] != '\0')
      return false;
  return true;
}

static bool valid_material(const char *s) {
  size_t n = strlen(s);
  if (n == 0 || n > PROTO_MATERIAL_MAX)
    return false;
  for (; *s; s++)
    if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '_'))
      return false;
  return true;
}

/* The header: which field holds each column; -1 when absent. */
static int read_header(struct csv *c, int col[COL_COUNT], struct errs *e) {
  for (int k = 0; k < COL_COUNT; k++)
    col[k] = -1;
  for (size_t i = 0; i < c->n; i++) {
    char name[BOQ_FIELD_MAX];
    snprintf(name, sizeof(name), "%s", c->field[i]);
    trim(name);
    for (char *p = name; *p; p++)
      *p = (char)tolower((unsigned char)*p);
    for (int k = 0; k < COL_COUNT; k++) {
      if (strcmp(name, col_names[k]) != 0)
        continue;
      if (col[k] >= 0) {
        add_err(e, c->line, "column \"%s\" appears twice in the header", col_names[k]);
        return -1;
      }
      col[k] = (int)i;
    }
  }
  for (int k = 0; k < COL_DESC; k++) {
    if (col[k] < 0) {
      add_err(e, c->line,
              "the header must name the columns material, unit and net_qty (and may name "
              "description); \"%s\" is missing",
              col_names[k]);
      return -1;
    }
  }
  return 0;
}

/* A field for a one-line message: at most `max` bytes, cut on a UTF-8
 * boundary, control bytes as '?'. */
static const char *show(const char *s, size_t max, char *buf, size_t cap) {
  size_t n = strlen(s);
  if (n > max)
    n = max;
  if (n >= cap)
    n = cap - 1;
  if (n < strlen(s))
    while (n > 0 && ((unsigned char)s[n] & 0xc0) == 0x80)
      n--; /* s[n] starts the character that is cut off */
  for (size_t i = 0; i < n; i++)
    buf[i] = (unsigned char)s[i] < 0x20 || s[i] == 0x7f ? '?' : s[i];
  buf[n] = '\0';
  return buf;
}

static void read_row(struct csv *c, const int col[COL_COUNT], proto_boq_item_t *it, struct errs *e,
                     bool *ok) {
  char b1[64], b2[64];
  *ok = false;
  if (c->nul) {
    add_err(e, c->line, "holds a NUL byte: save the bill of quantities as CSV text");
    return;
  }
  if (c->bad_quote) {
    add_err(e, c->line, "a quoted field is not closed properly");
    return;
  }
  if (c->too_long || c->too_many) {
    add_err(e, c->line, "a field longer than %d bytes or more than %d fields", BOQ_FIELD_MAX - 1,
            BOQ_FIELDS_MAX);
    return;
  }
  for (int k = 0; k < COL_DESC; k++) {
    if ((size_t)col[k] >= c->n) {
      add_err(e, c->line, "has %zu fields; the header has column \"%s\" at field %d", c->n,
              col_names[k], col[k] + 1);
      return;
    }
    trim(c->field[col[k]]);
  }
  const char *mat = c->field[col[COL_MATERIAL]];
  const char *unit = c->field[col[COL_UNIT]];
  const char *qty = c->field[col[COL_QTY]];
  if (!valid_material(mat)) {
    add_err(e, c->line, "material \"%s\" must be 1 to %d of a-z 0-9 _ (like rebar)",
            show(mat, 40, b1, sizeof(b1)), PROTO_MATERIAL_MAX);
    return;
  }
  double factor;
  if (strcmp(unit, "t") == 0)
    factor = 1.0;
  else if (strcmp(unit, "kg") == 0)
    factor = 0.001;
  else {
    add_err(e, c->line,
            "unit \"%s\" of %s: give quantities in t or kg (convert volumes with the "
            "material's density)",
            show(unit, 20, b1, sizeof(b1)), mat);
    return;
  }
  char *end;
  errno = 0;
  double v = strtod(qty, &end);
  if (qty[0] == '\0' || *end != '\0' || errno || !isfinite(v)) {
    add_err(e, c->line, "net_qty \"%s\" of %s is not a number (use a '.' for decimals)",
            show(qty, 40, b2, sizeof(b2)), mat);
    return;
  }
  if (v <= 0) {
    add_err(e, c->line, "net_qty %g of %s must be more than 0", v, mat);
    return;
  }
  snprintf(it->material, sizeof(it->material), "%s", mat);
  it->net_t = v * factor;
  it->description[0] = '\0';
  if (col[COL_DESC] >= 0 && (size_t)col[COL_DESC] < c->n) {
    trim(c->field[col[COL_DESC]]);
    snprintf(it->description, sizeof(it->description), "%s", c->field[col[COL_DESC]]);
    /* cut on a UTF-8 character boundary */
    size_t n = strlen(it->description);
    if (n == PROTO_BOQ_DESC_MAX) {
      while (n > 0 && ((unsigned char)it->description[n - 1] & 0xc0) == 0x80)
        n--;
      if (n > 0 && (unsigned char)it->description[n - 1] >= 0xc0)
        n--;
      it->description[n] = '\0';
    }
  }
  it->line = c->line;
  *ok = true;
}

int proto_boq_parse(const char *text, size_t len, proto_boq_item_t **items, size_t *n, char *err,
                    size_t errlen) {
  struct csv c; /* 8 KiB of field buffers */
  struct errs e = {err, errlen, 0, 0};
  int col[COL_COUNT];
  bool header = false;
  *items = NULL;
  *n = 0;
  if (err && errlen)
    err[0] = '\0';
  if (len >= 3 && memcmp(text, "\xef\xbb\xbf", 3) == 0) {
    text += 3;
    len -= 3;
  }
  memset(&c, 0, sizeof(c));
  c.p = text;
  c.end = text + len;
  c.next_line = 1;
  proto_boq_item_t *out = NULL;
  size_t count = 0;
  while (csv_record(&c)) {
    if (blank_record(&c) || (c.n > 0 && c.field[0][0] == '#'))
      continue;
    if (!header) {
      if (read_header(&c, col, &e) != 0)
        break;
      header = true;
      continue;
    }
    if (count == PROTO_BOQ_ITEMS_MAX) {
      add_err(&e, c.line, "more than %d materials in one bill of quantities", PROTO_BOQ_ITEMS_MAX);
      break;
    }
    if (!out && !(out = calloc(PROTO_BOQ_ITEMS_MAX, sizeof(*out))))
      return -ENOMEM;
    bool ok;
    read_row(&c, col, &out[count], &e, &ok);
    if (!ok)
      continue;
    for (size_t i = 0; i < count; i++) {
      if (strcmp(out[i].material, out[count].material) == 0) {
        add_err(&e, c.line,
                "%s is listed again (first at line %d); give one net quantity per "
                "material",
                out[count].material, out[i].line);
        ok = false;
        break;
      }
    }
    if (ok)
      count++;
  }
  if (!header && e.count == 0)
    add_err(&e, c.next_line > 1 ? c.next_line - 1 : 1,
            "no header: the first line must name the columns material, unit, net_qty");
  if (e.count > BOQ_ERRORS_MAX && err && e.len + 1 < errlen)
    snprintf(err + e.len, errlen - e.len, "\n... and %d more bad lines", e.count - BOQ_ERRORS_MAX);
  if (e.count > 0) {
    free(out);
    return -EBADMSG;
  }
  if (count == 0) {
    free(out);
    out = NULL;
  }
  *items = out;
  *n = count;
  return 0;
}
