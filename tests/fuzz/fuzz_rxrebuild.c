/* libFuzzer harness for the backfill's rebuilding of a stored message
 * (storage/rxdecode.c stor__rx_rebuild()): the bytes a database holds in
 * frames.data, which a damaged or hand-edited database may hold anything
 * in.
 *
 * The input is cut at CR LF into the data segments of one message's
 * packets (at most 64, as the receiver collects). A refusal must say
 * which packet and leave nothing allocated; a message rebuilt must hold
 * every segment followed by CR LF, a CP no longer than the segments, and
 * decode (stor__rx_decode()) without failing. */
#include "protocol/protocol.h"
#include "storage/rx_int.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int row(void *arg, const rx_row_t *r) {
  (void)arg, (void)r;
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const char *segs[64];
  size_t lens[64], total = 0;
  int n = 0;
  const char *p = (const char *)data, *end = p + size;
  while (p < end && n < 64) {
    const char *eol = memmem(p, (size_t)(end - p), "\r\n", 2);
    size_t len = eol ? (size_t)(eol - p) : (size_t)(end - p);
    segs[n] = p;
    lens[n++] = len;
    total += len;
    p += len + 2;
  }
  if (n == 0)
    return 0;
  stor_rx_msg_t m = {0};
  char err[192];
  int rc = stor__rx_rebuild(segs, lens, n, &m, err, sizeof(err));
  if (rc != 0) {
    if (rc != -EBADMSG || m.packets || m.cp || strncmp(err, "packet ", 7) != 0)
      abort();
    return 0;
  }
  if (m.npackets != n || m.packets_len != total + 2 * (size_t)n || m.cp_len > total + (size_t)n ||
      strlen(m.cp) != m.cp_len)
    abort();
  size_t at = 0;
  for (int i = 0; i < n; i++) {
    if (memcmp(m.packets + at, segs[i], lens[i]) || memcmp(m.packets + at + lens[i], "\r\n", 2))
      abort();
    at += lens[i] + 2;
  }
  m.is_signed = true;
  if (stor__rx_decode(&m, row, NULL) != 0)
    abort();
  free(m.packets);
  free(m.cp);
  return 0;
}
