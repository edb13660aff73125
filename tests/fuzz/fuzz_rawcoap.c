/* libFuzzer harness for the load generator's CoAP reader
 * (sensors/rawcoap.c, sim_raw_parse): a datagram from the gateway, or from
 * whatever answers on its port. An accepted message must have a token of
 * at most 8 bytes and a payload inside the datagram, after the header and
 * token, and not empty (a payload marker with nothing after it is an error,
 * RFC 7252 3). Every payload byte is read so that ASan sees the bounds. */
#include "sensors/sensors_int.h"

#include <stdint.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  sim_raw_msg_t m;
  if (sim_raw_parse(data, size, &m) != 0)
    return 0;
  if (m.tkl > 8 || size < 4 + m.tkl || m.type > 3 || m.code > 255)
    abort();
  if (m.payload) {
    if (m.len == 0 || m.payload < data + 4 + m.tkl || m.payload + m.len != data + size)
      abort();
    volatile uint8_t sum = 0;
    for (size_t i = 0; i < m.len; i++)
      sum += m.payload[i];
    (void)sum;
  } else if (m.len != 0) {
    abort();
  }
  return 0;
}
