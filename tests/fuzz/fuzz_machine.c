/* libFuzzer harness for the machinery codecs (protocol/machine.c): the
 * register's CSV and gate events in JSON and CBOR. The same bytes go to
 * all three. A refusal must be -EBADMSG (or -ENOMEM) with a message; an
 * accepted CSV row must pass proto_machine_check; an accepted gate event
 * must hold only what the contract allows and come back unchanged through
 * both encoders. */
#include "protocol/protocol.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define NOW 1764100000.0
#define OLDEST (NOW - 400 * 86400.0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_event(const proto_gate_event_t *e) {
  if (e->no < 1 || e->no > PROTO_GATE_NO_MAX || (double)e->t > NOW + PROTO_FUTURE_MAX_S ||
      (double)e->t < OLDEST || !proto_machine_code_ok(e->code) || !e->gate[0])
    abort();
  char text[512];
  uint8_t bin[512];
  proto_gate_event_t back;
  int n = proto_gate_encode_json(e, text, sizeof(text));
  if (n <= 0 ||
      proto_gate_decode_json((const uint8_t *)text, (size_t)n, NOW, OLDEST, &back, NULL, 0) != 0 ||
      memcmp(e, &back, sizeof(back)) != 0)
    abort();
  n = proto_gate_encode_cbor(e, bin, sizeof(bin));
  if (n <= 0 || proto_gate_decode_cbor(bin, (size_t)n, NOW, OLDEST, &back, NULL, 0) != 0 ||
      memcmp(e, &back, sizeof(back)) != 0)
    abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char err[256];
  proto_machine_t *m = NULL;
  size_t n = 0;
  int rc = proto_machine_csv_parse((const char *)data, size, &m, &n, err, sizeof(err));
  if (rc == 0) {
    for (size_t i = 0; i < n; i++)
      if (proto_machine_check(&m[i], NULL, 0) != 0)
        abort();
  } else if ((rc != -EBADMSG && rc != -ENOMEM) || (rc == -EBADMSG && !err[0]) || m || n) {
    abort();
  }
  free(m);

  proto_gate_event_t e;
  rc = proto_gate_decode_json(data, size, NOW, OLDEST, &e, err, sizeof(err));
  if (rc == 0)
    check_event(&e);
  else if (rc != -EBADMSG || !err[0])
    abort();
  rc = proto_gate_decode_cbor(data, size, NOW, OLDEST, &e, err, 4); /* tiny buffer */
  if (rc == 0)
    check_event(&e);
  else if (rc != -EBADMSG)
    abort();
  return 0;
}
