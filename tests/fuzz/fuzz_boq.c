/* libFuzzer harness for the bill-of-quantities CSV reader (protocol/boq.c).
 *
 * Arbitrary bytes into proto_boq_parse(). A refusal must be -EBADMSG with every
 * message line starting "line N:" (or the "... and N more" tail), also when
 * the message buffer is tiny; an accepted bill must hold only what the
 * ledger can store: material ids of a-z 0-9 _, each once, quantities above
 * 0 and finite, line numbers rising. */
#include "protocol/protocol.h"

#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  proto_boq_item_t *items = NULL;
  size_t n = 0;
  char err[4096], small[8];
  int rc = proto_boq_parse((const char *)data, size, &items, &n, err, sizeof(err));
  if (rc != 0) {
    if (rc != -EBADMSG || items || strncmp(err, "line ", 5) != 0)
      abort();
    for (const char *p = strchr(err, '\n'); p; p = strchr(p + 1, '\n'))
      if (strncmp(p + 1, "line ", 5) != 0 && strncmp(p + 1, "... and ", 8) != 0)
        abort();
    if (proto_boq_parse((const char *)data, size, &items, &n, small, sizeof(small)) != rc ||
        strlen(small) >= sizeof(small))
      abort();
    return 0;
  }
  if (n > PROTO_BOQ_ITEMS_MAX || (n == 0) != (items == NULL))
    abort();
  for (size_t i = 0; i < n; i++) {
    const proto_boq_item_t *it = &items[i];
    size_t len = strnlen(it->material, sizeof(it->material));
    if (len == 0 || len > PROTO_MATERIAL_MAX || !(it->net_t > 0) || !isfinite(it->net_t) ||
        strnlen(it->description, sizeof(it->description)) > PROTO_BOQ_DESC_MAX)
      abort();
    for (size_t k = 0; k < len; k++) {
      char c = it->material[k];
      if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_'))
        abort();
    }
    for (size_t k = 0; k < i; k++)
      if (strcmp(items[k].material, it->material) == 0 || items[k].line >= it->line)
        abort();
  }
  free(items);
  return 0;
}
