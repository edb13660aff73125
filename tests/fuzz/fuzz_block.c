/* libFuzzer harness for the compressed block decoder (storage/block.c):
 * the bytes of a block as read back from the database file, which a
 * damaged disk can make anything.
 *
 * A refusal must be -EBADMSG (or -ENOSPC for more readings than room);
 * an accepted block must hold what the contract promises (1..STOR_BLOCK_MAX
 * readings, times >= 0 strictly ascending, finite values, scaled values
 * exact in hundredths) and, the format being canonical, re-encode in its
 * mode (version 1 or 2, decimal included) to the very same bytes; the
 * encoder's own choice of mode (version 2) must decode to the same
 * readings and be no larger, but for a version 1 block, whose times
 * version 2 may write a byte longer (a lone delta-of-delta 0), and be
 * the bytes of the least of the three version 2 modes (fuzz_block_encode
 * checks that choice on arbitrary values). The resend check's walk through
 * the times must answer as the decoded block does, for times asked in
 * order and out of it (and on any bytes, read nothing past them). The
 * same bytes as a tail row's pack (compact.c) must be refused or give at
 * most STOR_PACK_MAX readings from the row's t, within STOR_PACK_SPAN_MS
 * of it. */
#include "storage/storage_int.h"
#include "tests/fuzz/block_least.h"

#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CAP 4096

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static stor_sample_t s[CAP], back[CAP];
  static uint8_t buf[CAP * 20];
  size_t n = 0, n2 = 0;
  int mode = -1, mode2 = -1;
  const int64_t row_t = 1765000000000;
  if (stor__pack_decode(row_t, data, size, s, &n) == 0) {
    if (n == 0 || n > STOR_PACK_MAX || s[0].t_ms != row_t ||
        s[n - 1].t_ms - row_t >= STOR_PACK_SPAN_MS)
      abort();
    ssize_t plen = stor__pack_encode(s, n, buf, sizeof(buf));
    if (plen <= 0 || (data[0] >> 4 == 2 && (size_t)plen > size))
      abort();
  }
  n = 0;
  int rc = stor__block_decode(data, size, s, CAP, &n, &mode);
  stor_blk_walk_t w;
  if (rc == -EBADMSG || rc == -ENOSPC) {
    if (stor__block_walk(&w, data, size) == 0) /* only that it stays in the bytes */
      for (int64_t t = 0; t < 4096 && stor__block_walk_to(&w, t * 977) >= 0; t++)
        ;
    return 0;
  }
  if (rc != 0 || n == 0 || n > CAP ||
      (mode != STOR_BLOCK_SCALED && mode != STOR_BLOCK_XOR && mode != STOR_BLOCK_SCALED2 &&
       mode != STOR_BLOCK_XOR2 && mode != STOR_BLOCK_DEC))
    abort();
  for (size_t i = 0; i < n; i++) {
    int64_t h;
    if (s[i].t_ms < 0 || (i > 0 && s[i].t_ms <= s[i - 1].t_ms) || !isfinite(s[i].v))
      abort();
    if ((mode == STOR_BLOCK_SCALED || mode == STOR_BLOCK_SCALED2) &&
        !stor__block_hundredths(s[i].v, &h))
      abort();
  }
  if (stor__block_walk(&w, data, size) != 0)
    abort();
  for (size_t i = 0; i < n; i++) { /* ascending: each time, and one before it */
    if (stor__block_walk_to(&w, s[i].t_ms - 1) != (i > 0 && s[i - 1].t_ms == s[i].t_ms - 1) ||
        stor__block_walk_to(&w, s[i].t_ms) != 1)
      abort();
  }
  if (stor__block_walk_to(&w, s[n - 1].t_ms + 1) != 0 || stor__block_walk_to(&w, s[0].t_ms) != 1 ||
      (s[0].t_ms > 0 && stor__block_walk_to(&w, s[0].t_ms - 1) != 0) ||
      stor__block_walk_to(&w, s[n / 2].t_ms) != 1)
    abort();
  ssize_t len = stor__block_encode_mode(s, n, mode, buf, sizeof(buf));
  if (len != (ssize_t)size || memcmp(buf, data, size) != 0)
    abort();
  len = stor__block_encode(s, n, buf, sizeof(buf));
  if (len <= 0 || (mode >> 4 == 2 && (size_t)len > size)) /* no larger than its mode */
    abort();
  /* The encoder's choice, from sizes it works out without encoding: the
   * least of the three modes' (the first on a tie), byte for byte. */
  static uint8_t least[CAP * 20];
  size_t best;
  int pick = block_least(s, n, &best);
  if (pick < 0 || (size_t)len != best ||
      stor__block_encode_mode(s, n, block_modes[pick], least, sizeof(least)) != len ||
      memcmp(least, buf, best) != 0)
    abort();
  if (stor__block_decode(buf, (size_t)len, back, CAP, &n2, &mode2) != 0 || n2 != n)
    abort();
  for (size_t i = 0; i < n; i++)
    if (back[i].t_ms != s[i].t_ms || memcmp(&back[i].v, &s[i].v, sizeof(double)) != 0)
      abort();
  return 0;
}
