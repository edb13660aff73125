/* The block encoder's choice worked out the slow way, for the tests that
 * hold the encoder to it (test_block.c, fuzz_block.c, fuzz_block_encode.c):
 * the least of the three value modes' sizes, the first of them on a tie. */
#ifndef SITEGATE_FUZZ_BLOCK_LEAST_H
#define SITEGATE_FUZZ_BLOCK_LEAST_H

#include "storage/storage_int.h"

static const int block_modes[] = {STOR_BLOCK_SCALED2, STOR_BLOCK_DEC, STOR_BLOCK_XOR2};

/* The index in block_modes of the least mode for s[0..n), its size in
 * *best; -1 (and *best 0) when no mode can encode them. */
static int block_least(const stor_sample_t *s, size_t n, size_t *best) {
  int pick = -1;
  *best = 0;
  for (int m = 0; m < 3; m++) {
    size_t len = stor__block_size(s, n, block_modes[m]);
    if (len > 0 && (*best == 0 || len < *best)) {
      *best = len;
      pick = m;
    }
  }
  return pick;
}

#endif
