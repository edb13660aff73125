/* gateway/coap, private to the folder: the front's state and the helpers
 * its three files share. server.c owns the libcoap context and the libuv
 * handles that drive it; tickets.c adds POST /w to that context; client.c
 * opens client sessions in it. Only this folder includes coap3/coap.h.
 * Loop thread, all of it. */
#ifndef SITEGATE_GW_COAP_INT_H
#define SITEGATE_GW_COAP_INT_H

#include "gateway/coap/coap.h"
#include <coap3/coap.h>

struct ticket_job;
struct gate_job;
struct ctl_client;

struct coap_front {
  gw_t *gw;
  coap_context_t *ctx; /* NULL once the front has stopped */
  uv_poll_t poll;      /* on coap_context_get_coap_fd() */
  uv_timer_t sweep;    /* sweeps idle sessions */
  int open_handles;    /* the front is freed when the last one has closed */
  proto_pack_t pack;   /* decode scratch */
  stor_reading_t readings[PROTO_PACK_MAX];
  uint8_t dummy_key[32];      /* PSK for identities we do not know */
  uint64_t unknown_ids;       /* handshakes of unknown identities not yet logged */
  uint64_t unknown_logged_ms; /* when the last was */
  /* DTLS handshakes (server.c, from libcoap's session events): the figures
   * at the last flood line, and when it was said */
  uint64_t hs_logged_abandoned, hs_logged_ms;
  struct ticket_job *tickets; /* POST /w waiting for their commit (tickets.c) */
  struct ctl_client *ctl;     /* equipment controllers (client.c), NULL until used */
  struct gate_job *gates;     /* POST /g waiting for their commit (gates.c) */
};

/* Sets the code of `resp` and, when `text` is not empty, a text/plain
 * diagnostic payload (RFC 7252 5.5.2). */
void coapfront__reply(coap_pdu_t *resp, coap_pdu_code_t code, const char *text);
/* A refused request: counts it under `why` (and for `dev`, which may be
 * NULL), logs it at debug level, then replies as coapfront__reply. */
void coapfront__reject(struct coap_front *cf, gw_device_t *dev, gw_reject_t why, coap_pdu_t *resp,
                       coap_pdu_code_t code, const char *text);
/* The DTLS identity of a session as a C string ("" for plain CoAP, or for
 * an identity of `cap` bytes or more). */
void coapfront__identity(const coap_session_t *s, char *out, size_t cap);

/* tickets.c: registers POST /w on cf->ctx. */
void coapfront__tickets_add(struct coap_front *cf);
/* tickets.c: when the front stops, before libcoap frees every async. */
void coapfront__tickets_orphan(struct coap_front *cf);

/* gates.c: registers POST /g; orphans its waiting jobs when the front stops. */
void coapfront__gates_add(struct coap_front *cf);
void coapfront__gates_orphan(struct coap_front *cf);

/* client.c: before the context goes. Frees the sessions' app data and
 * every request; no callback runs after it. */
void coapfront__client_free(struct coap_front *cf);

#endif
