/* libFuzzer harness: the SenML JSON decoder (jsmn, protocol/senml.c)
 * against the jansson decoder it replaced, kept as the oracle.
 *
 * Both decode the same bytes; any difference aborts: in the verdict, in the
 * pack (device, records, quantity, time, and each value bit for bit), or in
 * the message. The one allowed difference is the reason after "invalid JSON
 * at line L, column C: ", which is jansson's own text on one side; both must
 * still say "invalid JSON".
 *
 * One divergence is jansson's and deliberate: jansson drops a NUL byte that
 * follows a number or true/false/null (its lexer reads one byte ahead, and
 * a NUL pushed back reads as "no byte buffered"), so it takes "[1\0]" as
 * "[1]". The jsmn decoder refuses every NUL byte, as RFC 8259 does; inputs
 * that hold one are checked for that refusal only. The corpus starts from
 * tests/data/fuzz_senml_json (tests/data/fuzz_senml_diff holds the same seeds and what was found).
 */
#include "protocol/protocol.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define NOW 1764100000.0
#define HORIZON (31 * 86400.0)
#define SYNTAX "invalid JSON at line "

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static bool same_pack(const proto_pack_t *a, const proto_pack_t *b) {
  if (strcmp(a->device, b->device) != 0 || a->n != b->n)
    return false;
  for (size_t i = 0; i < a->n; i++)
    if (a->rec[i].quantity != b->rec[i].quantity || a->rec[i].t_ms != b->rec[i].t_ms ||
        memcmp(&a->rec[i].value, &b->rec[i].value, sizeof(double)) != 0)
      return false;
  return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static proto_pack_t mine, oracle;
  static const proto_limits_t lim = {NOW, NOW - HORIZON};
  char e1[256], e2[256];
  int r1 = proto_senml_decode_json(data, size, &lim, &mine, e1, sizeof(e1));
  if (memchr(data, '\0', size) != NULL) {
    if (r1 != -EBADMSG || strncmp(e1, SYNTAX, strlen(SYNTAX)) != 0)
      abort();
    return 0;
  }
  int r2 = proto_senml_decode_json_jansson(data, size, &lim, &oracle, e2, sizeof(e2));
  if (r1 != r2)
    abort();
  if (r1 == 0) {
    if (!same_pack(&mine, &oracle))
      abort();
    return 0;
  }
  bool s1 = strncmp(e1, SYNTAX, strlen(SYNTAX)) == 0;
  bool s2 = strncmp(e2, SYNTAX, strlen(SYNTAX)) == 0;
  if (s1 != s2 || (!s1 && strcmp(e1, e2) != 0))
    abort();
  return 0;
}
