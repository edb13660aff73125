/* protocol/why: the code and values of a parser's last refusal, kept per
 * thread beside the English sentence the parsers already write, so that a
 * person can be told in their own language (protocol.h "Why a parser or
 * check refused"). Per thread, like errno: the parsers run on the loop,
 * on the API's threads and in tools at the same time. */
#include "protocol/protocol.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

static _Thread_local proto_why_t last;
static _Thread_local proto_why_t lines[PROTO_WHY_LINES];
static _Thread_local int n_lines;

static const char *const names[] = {
#define X(e, s) s,
    PROTO_WHY_MAP(X)
#undef X
};

const char *proto_why_name(proto_why_code_t c) {
  return (unsigned)c < PROTO_WHY_COUNT ? names[c] : "?";
}

const proto_why_t *proto_why(void) { return &last; }

proto_why_t *proto__why_mut(void) { return &last; }

void proto_why_clear(void) {
  memset(&last, 0, sizeof(last));
  n_lines = 0;
}

int proto_why_lines(const proto_why_t **out) {
  *out = lines;
  return n_lines;
}

void proto__why_lines_set(const proto_why_t *l, int n, int more) {
  proto_why_clear();
  n = n < PROTO_WHY_LINES ? n : PROTO_WHY_LINES;
  memcpy(lines, l, (size_t)n * sizeof(*l));
  n_lines = n;
  if (n > 0) {
    last = l[0];
    last.more = more + n - 1;
    for (int i = 0; i < n; i++)
      lines[i].more = 0;
  }
}

int proto_fmt_values(const char *fmt, va_list ap, void (*put)(void *arg, const char *val),
                     void *arg) {
  int n = 0;
  for (const char *p = fmt; (p = strchr(p, '%')) != NULL;) {
    const char *q = p + 1;
    if (*q == '%') {
      p = q + 1;
      continue;
    }
    q += strspn(q, "-+ #0");
    q += strspn(q, "0123456789");
    if (*q == '.')
      q += 1 + strspn(q + 1, "0123456789");
    int longs = 0;
    bool size = false, max = false;
    for (; *q == 'l' || *q == 'h' || *q == 'z' || *q == 'j'; q++)
      longs += *q == 'l', size |= *q == 'z', max |= *q == 'j';
    char spec[24], val[512];
    snprintf(spec, sizeof(spec), "%.*s", (int)(q - p + 1), p);
    switch (*q) {
    case 'd':
    case 'i':
    case 'u':
    case 'x':
    case 'c':
      if (size)
        snprintf(val, sizeof(val), spec, va_arg(ap, size_t));
      else if (max)
        snprintf(val, sizeof(val), spec, va_arg(ap, intmax_t));
      else if (longs >= 2)
        snprintf(val, sizeof(val), spec, va_arg(ap, long long));
      else if (longs == 1)
        snprintf(val, sizeof(val), spec, va_arg(ap, long));
      else
        snprintf(val, sizeof(val), spec, va_arg(ap, int));
      break;
    case 'f':
    case 'g':
    case 'e':
      snprintf(val, sizeof(val), spec, va_arg(ap, double));
      break;
    case 's':
      snprintf(val, sizeof(val), spec, va_arg(ap, const char *));
      break;
    default: /* a conversion this file does not know: the values so far stand */
      return n;
    }
    put(arg, val);
    n++;
    p = q + 1;
  }
  return n;
}

static void why_put(void *arg, const char *val) {
  proto_why_t *w = arg;
  if (w->nargs < PROTO_WHY_ARGS)
    snprintf(w->args[w->nargs++], sizeof(w->args[0]), "%s", val);
}

void proto__why_set(proto_why_code_t code, const char *fmt, va_list ap) {
  memset(&last, 0, sizeof(last));
  last.code = code;
  proto_fmt_values(fmt, ap, why_put, &last);
}
