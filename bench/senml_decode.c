/* SenML decoders alone, without the network: 10-record packs as the (c)
 * figure of bench/run.sh sends them, decoded in a loop by the jsmn JSON
 * decoder (the hot path), jansson's (the oracle it replaced) and the CBOR
 * decoder; and the encoders, in microseconds a pack as `sitesim load`
 * builds them (it encodes each pack it sends, on the cores of the gateway
 * it measures). Prints each figure and one `senml:` line. */
#include "protocol/protocol.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define NOW 1764100000.0
#define ROUNDS 200000

typedef int (*decode_fn)(const uint8_t *, size_t, const proto_limits_t *, proto_pack_t *, char *,
                         size_t);

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double rate(decode_fn f, const uint8_t *buf, size_t len, size_t records) {
  static proto_pack_t out;
  static const proto_limits_t lim = {NOW, NOW - 31 * 86400.0};
  char err[256];
  double t0 = now_s();
  for (int i = 0; i < ROUNDS; i++)
    if (f(buf, len, &lim, &out, err, sizeof(err)) != 0) {
      fprintf(stderr, "senml_decode: refused: %s\n", err);
      exit(1);
    }
  return (double)ROUNDS * (double)records / (now_s() - t0);
}

/* Microseconds to encode `p`, its value changed each time as sitesim's are. */
static double encode_us(proto_pack_t *p, bool cbor) {
  static uint8_t buf[8192];
  double t0 = now_s();
  for (int i = 0; i < ROUNDS; i++) {
    p->rec[0].value = 30.0 + (double)(i % 120);
    int n = cbor ? proto_senml_encode_cbor(p, buf, sizeof(buf))
                 : proto_senml_encode_json(p, (char *)buf, sizeof(buf));
    if (n <= 0) {
      fprintf(stderr, "senml_decode: cannot encode: %d\n", n);
      exit(1);
    }
  }
  return (now_s() - t0) * 1e6 / ROUNDS;
}

int main(void) {
  static proto_pack_t p;
  static char json[8192];
  static uint8_t cbor[4096];
  snprintf(p.device, sizeof(p.device), "load-00042");
  p.n = 10;
  for (size_t i = 0; i < p.n; i++) { /* as sitesim load sends them */
    p.rec[i].quantity = (uint8_t)(i % 3 == 0   ? PROTO_Q_PM10
                                  : i % 3 == 1 ? PROTO_Q_LA
                                               : PROTO_Q_TEMP);
    p.rec[i].t_ms = (int64_t)(NOW - 60) * 1000 + (int64_t)i * 1000;
    p.rec[i].value = 20.0 + (double)i * 1.7;
  }
  int nj = proto_senml_encode_json(&p, json, sizeof(json));
  int nc = proto_senml_encode_cbor(&p, cbor, sizeof(cbor));
  if (nj <= 0 || nc <= 0)
    return 1;
  double j = rate(proto_senml_decode_json, (const uint8_t *)json, (size_t)nj, p.n);
  double o = rate(proto_senml_decode_json_jansson, (const uint8_t *)json, (size_t)nj, p.n);
  double c = rate(proto_senml_decode_cbor, cbor, (size_t)nc, p.n);
  static proto_pack_t lp; /* as sensors/load.c's build_pack */
  snprintf(lp.device, sizeof(lp.device), "load-4242");
  lp.n = 10;
  for (size_t i = 0; i < lp.n; i++) {
    lp.rec[i].quantity = PROTO_Q_PM10;
    lp.rec[i].t_ms = (int64_t)(NOW - 86400) * 1000 + 517 + (int64_t)i * 8000;
    lp.rec[i].value = 30.0 + (double)((42 * 7 + i) % 120);
  }
  double ej = encode_us(&lp, false), ec = encode_us(&lp, true);
  printf("senml decode, 10-record packs (%d B JSON, %d B CBOR), one core:\n", nj, nc);
  printf("  JSON, jsmn:     %10.0f records/s\n", j);
  printf("  JSON, jansson:  %10.0f records/s\n", o);
  printf("  CBOR, libcbor:  %10.0f records/s\n", c);
  printf("senml encode, 10-record packs as sitesim load sends them: JSON %.2f us, CBOR %.2f us\n",
         ej, ec);
  printf("senml: json_jsmn_records_s=%.0f json_jansson_records_s=%.0f cbor_records_s=%.0f "
         "encode_json_us=%.2f encode_cbor_us=%.2f\n",
         j, o, c, ej, ec);
  return 0;
}
