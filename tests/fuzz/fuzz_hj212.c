/* libFuzzer harness for the HJ 212-2017 codec (protocol/hj212.c).
 *
 * The first byte picks the mode (its value modulo 3). 0: the rest is a frame for
 * hj212_decode(); a refusal must come with a reason, an accepted frame must
 * have consistent pairs, and when its header is one the strict encoder takes,
 * encoding it again and decoding that must give the same header and CP.
 * 1: the rest is a CP for hj212_encode(); when accepted, every packet must
 * decode, stay within 1024 data bytes, and the packets' CPs joined by ';'
 * must give back the input. 2: the rest is a data segment, framed here with
 * the right length and CRC, so the fuzzer reaches the field checks without
 * having to guess a CRC. Every mode also runs hj212_signed_parse(), and
 * every decoded value goes through uplink_parse_datatime(), the gateway's
 * reading of the receiver's BeginTime, EndTime and SystemTime (a time
 * before year 10000 from 14 digits, or below 0 for no time). */
#include "gateway/uplink/uplink.h"
#include "protocol/protocol.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static hj212_frame_t frame, again;
static char out[256 * 1024], joined[64 * 1024];

static void check_pairs(const hj212_frame_t *f) {
  if (f->cp_len > HJ212_DATA_MAX || f->data_len > HJ212_DATA_MAX || f->n_pairs > HJ212_PAIR_MAX ||
      f->cp[f->cp_len] != '\0')
    abort();
  size_t last = 0;
  for (size_t i = 0; i < f->n_pairs; i++) {
    if (f->pair[i].key > HJ212_DATA_MAX || f->pair[i].value > HJ212_DATA_MAX)
      abort();
    if (hj212_key(f, i)[0] == '\0' || f->pair[i].record < last || f->pair[i].record >= f->n_records)
      abort();
    last = f->pair[i].record;
    const char *v = hj212_get(f, (int)f->pair[i].record, hj212_key(f, i));
    if (v == NULL)
      abort();
    int64_t t = uplink_parse_datatime(v);
    if (t > 253402300800) /* past 9999-12-31 */
      abort();
    for (int k = 0; t >= 0 && k < 14; k++) /* its callers take t < 0 as no time */
      if (v[k] < '0' || v[k] > '9')
        abort();
  }
  hj212_signed_t s;
  char err[256];
  if (hj212_signed_parse(f->cp, f->cp_len, &s, err, sizeof(err)) == 0 && s.canon_len > f->cp_len)
    abort();
}

static void decode_mode(const uint8_t *data, size_t size) {
  char err[256] = "";
  int rc = hj212_decode((const char *)data, size, &frame, err, sizeof(err));
  if (rc != 0) {
    if (rc != -EBADMSG || err[0] == '\0')
      abort();
    return;
  }
  check_pairs(&frame);
  hj212_head_t h = frame.h;
  if (h.pnum != 0 || h.flag < 0)
    return;
  h.flag &= ~HJ212_FLAG_SPLIT;
  size_t n = 0;
  int len = hj212_encode(&h, frame.cp, frame.cp_len, out, sizeof(out), &n, err, sizeof(err));
  if (len < 0) {
    if (err[0] == '\0')
      abort();
    return;
  }
  if (n != 1 || hj212_decode(out, (size_t)len, &again, err, sizeof(err)) != 0)
    abort();
  if (memcmp(&again.h, &h, sizeof(h)) != 0 || again.cp_len != frame.cp_len ||
      memcmp(again.cp, frame.cp, frame.cp_len) != 0)
    abort();
}

static void encode_mode(const uint8_t *data, size_t size) {
  hj212_head_t h;
  memset(&h, 0, sizeof(h));
  strcpy(h.qn, "20261120212000123");
  strcpy(h.st, "39");
  strcpy(h.cn, "6031");
  strcpy(h.pw, "123456");
  strcpy(h.mn, "HLJ-HRB-0001");
  h.flag = HJ212_FLAG_V2017 | HJ212_FLAG_ACK;
  char err[256] = "";
  size_t n = 0;
  int len = hj212_encode(&h, (const char *)data, size, out, sizeof(out), &n, err, sizeof(err));
  if (len < 0) {
    if (err[0] == '\0' && len != -ENOSPC)
      abort();
    return;
  }
  size_t jo = 0;
  const char *p = out, *end = out + len;
  for (size_t i = 1; i <= n; i++) {
    const char *eol = memchr(p, '\n', (size_t)(end - p));
    if (!eol)
      abort();
    if (hj212_decode(p, (size_t)(eol + 1 - p), &frame, err, sizeof(err)) != 0)
      abort();
    check_pairs(&frame);
    if (n > 1 && (frame.h.pno != (int)i || frame.h.pnum != (int)n))
      abort();
    if (i > 1)
      joined[jo++] = ';';
    memcpy(joined + jo, frame.cp, frame.cp_len);
    jo += frame.cp_len;
    p = eol + 1;
  }
  if (p != end || jo != size || memcmp(joined, data, size) != 0)
    abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size == 0 || size > 60000)
    return 0;
  if (data[0] % 3 == 1) {
    encode_mode(data + 1, size - 1);
  } else if (data[0] % 3 == 2) {
    static uint8_t framed[HJ212_FRAME_MAX + 64];
    size_t dlen = size - 1;
    if (dlen > HJ212_DATA_MAX + 8)
      return 0;
    snprintf((char *)framed, 7, "##%04zu", dlen);
    memcpy(framed + 6, data + 1, dlen);
    snprintf((char *)framed + 6 + dlen, 7, "%04X\r\n", hj212_crc(data + 1, dlen));
    decode_mode(framed, 6 + dlen + 6);
  } else {
    decode_mode(data + 1, size - 1);
  }
  return 0;
}
