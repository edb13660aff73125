/* libFuzzer harness for the receiver's decoder (storage/rxdecode.c).
 *
 * The first byte picks the CN among those the decoded tables know, and
 * whether the message counts as signed; the rest is the reassembled CP.
 * Every row must name a table of that CN, hold valid UTF-8 of at most 256
 * bytes in text columns and plain decimals in number columns (for a 4-byte
 * REAL column, within what PostgreSQL's REAL holds). */
#include "protocol/protocol.h"
#include "storage/rx_int.h"

#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static bool utf8(const char *s) {
  const unsigned char *p = (const unsigned char *)s;
  while (*p) {
    int n = *p < 0x80             ? 0
            : (*p & 0xE0) == 0xC0 ? 1
            : (*p & 0xF0) == 0xE0 ? 2
            : (*p & 0xF8) == 0xF0 ? 3
                                  : -1;
    if (n < 0)
      return false;
    for (int i = 1; i <= n; i++)
      if ((p[i] & 0xC0) != 0x80)
        return false;
    p += n + 1;
  }
  return true;
}

static int check(void *arg, const rx_row_t *r) {
  if (strcmp(r->table->cn, (const char *)arg) != 0)
    abort();
  for (int i = 0; i < RX_COLS_MAX && r->table->cols[i].name; i++) {
    const char *v = r->v[i];
    if (!v)
      continue;
    if (r->table->cols[i].type == RX_TEXT) {
      if (!utf8(v) || strlen(v) > 256)
        abort();
    } else {
      char *end;
      double d = strtod(v, &end);
      if (*end || !isfinite(d))
        abort();
      /* what PostgreSQL's REAL would refuse, and the batch with it */
      if (r->table->cols[i].type == RX_REAL4 &&
          (fabs(d) > FLT_MAX || (d != 0 && fabs(d) < FLT_MIN)))
        abort();
    }
  }
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static const char *const cns[] = {"2051", "2061", "2031", "6011", "6012", "6021", "6031"};
  if (size < 1)
    return 0;
  stor_rx_msg_t m = {.t = 1763622000, .is_signed = data[0] & 0x80};
  strcpy(m.cn, cns[(data[0] & 0x7F) % (sizeof(cns) / sizeof(cns[0]))]);
  m.cp = malloc(size);
  if (!m.cp)
    return 0;
  memcpy(m.cp, data + 1, size - 1);
  m.cp_len = size - 1;
  stor__rx_decode(&m, check, m.cn);
  free(m.cp);
  return 0;
}
