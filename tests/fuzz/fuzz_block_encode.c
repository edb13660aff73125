/* libFuzzer harness for the block encoder's choice of mode
 * (storage/block.c): stor__block_encode works the three version 2 modes'
 * sizes out from the values instead of encoding in each, so its bytes are
 * checked against the oracle, stor__block_encode_mode in the mode whose
 * stor__block_size is least (the first of SCALED2, DEC and XOR2 on a tie),
 * for samples made from the input: each 10 bytes are a time step (2 bytes,
 * 0 makes the samples refused) and a value's IEEE 754 bits (8 bytes: any
 * double, -0, NaN and infinities included). The block must decode to the
 * samples, bit for bit; samples no mode holds must be refused with
 * -EINVAL, and a buffer a byte short with -ENOSPC. */
#include "storage/storage_int.h"
#include "tests/fuzz/block_least.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CAP 2048

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static stor_sample_t s[CAP], back[CAP];
  static uint8_t buf[32 + CAP * 20], want[32 + CAP * 20];
  size_t n = 0;
  int64_t t = 1765000000000;
  for (; n < CAP && (n + 1) * 10 <= size; n++) {
    const uint8_t *p = data + n * 10;
    t += (int64_t)(p[0] | p[1] << 8);
    uint64_t bits = 0;
    for (int k = 0; k < 8; k++)
      bits = bits << 8 | p[2 + k];
    s[n].t_ms = t;
    memcpy(&s[n].v, &bits, sizeof(double));
  }
  size_t best;
  int pick = block_least(s, n, &best);
  ssize_t len = stor__block_encode(s, n, buf, sizeof(buf));
  if (pick < 0) {
    if (len != -EINVAL)
      abort();
    return 0;
  }
  if (len != (ssize_t)best ||
      stor__block_encode_mode(s, n, block_modes[pick], want, sizeof(want)) != len ||
      memcmp(buf, want, best) != 0)
    abort();
  if (stor__block_encode(s, n, buf, best - 1) != -ENOSPC)
    abort();
  size_t got = 0;
  int mode = -1;
  if (stor__block_decode(want, best, back, CAP, &got, &mode) != 0 || got != n ||
      mode != block_modes[pick])
    abort();
  for (size_t i = 0; i < n; i++)
    if (back[i].t_ms != s[i].t_ms || memcmp(&back[i].v, &s[i].v, sizeof(double)) != 0)
      abort();
  return 0;
}
