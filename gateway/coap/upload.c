/* Block1 uploads (RFC 7959 2.5), assembled by the front for /r, /w and /g.
 *
 * libcoap 4.3.1's COAP_BLOCK_SINGLE_BODY sized the body by Size1 alone: a
 * Size1 smaller than the blocks cut the body to it, and with no Size1 the
 * handler got the first block as the whole body, each acknowledged with
 * 2.04 (issue 13). So libcoap now hands over each block (it still answers
 * a middle block's 2.xx as 2.31 with the Block1 option), and here the
 * blocks are put together in order, and the total is checked against
 * Size1 when the last one comes.
 *
 * An upload is one per (session, resource): a block 0 (re)starts it. At
 * most COAP_UPLOADS_MAX are open; the oldest gives way to a new one, and
 * one idle for UPLOAD_IDLE_MS is dropped (RFC 7959 2.5's 4.08 awaits the
 * client that comes back). Loop thread. */
#define LOG_MODULE "coap"

#include "gateway/coap/coap_int.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define UPLOAD_IDLE_MS 60000

static void upload_free(struct coap_upload *u) {
  free(u->buf);
  memset(u, 0, sizeof(*u));
}

static struct coap_upload *upload_find(struct coap_front *cf, const coap_session_t *s,
                                       const coap_resource_t *res) {
  for (int i = 0; i < COAP_UPLOADS_MAX; i++)
    if (cf->uploads[i].session == s && cf->uploads[i].res == res)
      return &cf->uploads[i];
  return NULL;
}

static struct coap_upload *upload_new(struct coap_front *cf) {
  struct coap_upload *oldest = &cf->uploads[0];
  for (int i = 0; i < COAP_UPLOADS_MAX; i++) {
    if (!cf->uploads[i].session)
      return &cf->uploads[i];
    if (cf->uploads[i].used_ms < oldest->used_ms)
      oldest = &cf->uploads[i];
  }
  upload_free(oldest);
  return oldest;
}

/* A refusal that ends the upload (when there is one). */
static int refuse(struct coap_front *cf, struct coap_upload *u, coap_pdu_t *resp, int code,
                  size_t max, const char *text) {
  if (u)
    upload_free(u);
  if (code == COAP_RESPONSE_CODE_REQUEST_TOO_LARGE) {
    uint8_t buf[4];
    coap_add_option(resp, COAP_OPTION_SIZE1, coap_encode_var_safe(buf, sizeof(buf), (unsigned)max),
                    buf);
    coapfront__reject(cf, NULL, GW_REJECT_TOO_LARGE, resp, code, text);
  } else {
    coapfront__reject(cf, NULL, GW_REJECT_BAD_PACK, resp, code, text);
  }
  return 0;
}

int coapfront__body(struct coap_front *cf, coap_session_t *session, const coap_resource_t *res,
                    const coap_pdu_t *req, coap_pdu_t *resp, size_t max, const uint8_t **data,
                    size_t *len) {
  coapfront__touch(cf, session);
  free(cf->body);
  cf->body = NULL;
  size_t n = 0, offset = 0, total = 0;
  const uint8_t *d = NULL;
  if (!coap_get_data_large(req, &n, &d, &offset, &total))
    n = 0, d = NULL;
  coap_block_b_t b;
  if (!coap_get_block_b(session, req, COAP_OPTION_BLOCK1, &b)) {
    *data = d;
    *len = n;
    return 1;
  }
  char err[200];
  coap_opt_iterator_t oi;
  coap_opt_t *opt = coap_check_option(req, COAP_OPTION_SIZE1, &oi);
  size_t size1 = opt ? coap_decode_var_bytes8(coap_opt_value(opt), coap_opt_length(opt)) : 0;
  size_t at = (size_t)b.num << (b.szx + 4);
  struct coap_upload *u = upload_find(cf, session, res);
  if (b.num == 0) {
    if (u)
      upload_free(u);
    u = upload_new(cf);
    u->session = session;
    u->res = res;
  } else if (!u || at != u->len) {
    snprintf(err, sizeof(err),
             "block %u (at byte %zu) is not the next of this upload (%zu bytes so far): send it "
             "again from block 0",
             b.num, at, u ? u->len : (size_t)0);
    return refuse(cf, u, resp, COAP_RESPONSE_CODE_INCOMPLETE, max, err);
  }
  u->used_ms = sg_mono_ms();
  if (size1 && !u->size1)
    u->size1 = size1;
  if (u->size1 > max || u->len + n > max) {
    snprintf(err, sizeof(err),
             "a body of %zu bytes is larger than the %zu allowed; send it in parts",
             u->size1 > max ? u->size1 : u->len + n, max);
    return refuse(cf, u, resp, COAP_RESPONSE_CODE_REQUEST_TOO_LARGE, max, err);
  }
  if (b.m && n != ((size_t)1 << (b.szx + 4))) {
    snprintf(err, sizeof(err), "block %u holds %zu bytes, not the %u its size says", b.num, n,
             1u << (b.szx + 4));
    return refuse(cf, u, resp, COAP_RESPONSE_CODE_BAD_REQUEST, max, err);
  }
  uint8_t *grown = realloc(u->buf, u->len + n + 1);
  if (!grown)
    return refuse(cf, u, resp, COAP_RESPONSE_CODE_INTERNAL_ERROR, max, "out of memory");
  u->buf = grown;
  if (n)
    memcpy(u->buf + u->len, d, n);
  u->len += n;
  if (b.m) { /* libcoap adds Block1 to a 2.xx and makes it 2.31, unless it took the block for
                random access (no upload of its own): then it is done here */
    if (!coap_check_option(resp, COAP_OPTION_BLOCK1, &oi)) {
      uint8_t buf[4];
      coap_add_option(resp, COAP_OPTION_BLOCK1,
                      coap_encode_var_safe(buf, sizeof(buf), (b.num << 4) | (1u << 3) | b.szx),
                      buf);
    }
    coap_pdu_set_code(resp, COAP_RESPONSE_CODE_CONTINUE);
    return 0;
  }
  if (u->size1 && u->size1 != u->len) {
    snprintf(err, sizeof(err),
             "Size1 said %zu bytes but the blocks held %zu: nothing stored, send it again",
             u->size1, u->len);
    return refuse(cf, u, resp, COAP_RESPONSE_CODE_BAD_REQUEST, max, err);
  }
  cf->body = u->buf;
  *data = u->buf;
  *len = u->len;
  u->buf = NULL;
  upload_free(u);
  return 1;
}

void coapfront__uploads_drop(struct coap_front *cf, const coap_session_t *session) {
  for (int i = 0; i < COAP_UPLOADS_MAX; i++)
    if (cf->uploads[i].session && (!session || cf->uploads[i].session == session))
      upload_free(&cf->uploads[i]);
  if (!session) {
    free(cf->body);
    cf->body = NULL;
  }
}

void coapfront__uploads_sweep(struct coap_front *cf) {
  uint64_t now = sg_mono_ms();
  for (int i = 0; i < COAP_UPLOADS_MAX; i++)
    if (cf->uploads[i].session && now - cf->uploads[i].used_ms > UPLOAD_IDLE_MS)
      upload_free(&cf->uploads[i]);
}
