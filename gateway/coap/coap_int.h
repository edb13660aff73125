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

/* A Block1 upload being assembled (upload.c). */
#define COAP_UPLOADS_MAX 16 /* at once, over every session */
struct coap_upload {
  const coap_session_t *session; /* NULL: the slot is free; compared, never followed */
  const coap_resource_t *res;
  uint8_t *buf;
  size_t len, size1; /* bytes so far; Size1 as declared, 0 when none */
  uint64_t used_ms;
};

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
  /* DTLS sessions that have shaken hands, most recently used first
   * (server.c): each holds a reference, so that libcoap's idle limit never
   * frees it for a stranger's packet */
  struct dtls_peer *peers, *peers_tail;
  size_t n_peers, peers_max;
  struct ticket_job *tickets; /* POST /w waiting for their commit (tickets.c) */
  struct ctl_client *ctl;     /* equipment controllers (client.c), NULL until used */
  struct gate_job *gates;     /* POST /g waiting for their commit (gates.c) */
  struct coap_upload uploads[COAP_UPLOADS_MAX];
  uint8_t *body; /* the last upload assembled, freed at the next request */
};

/* Sets the code of `resp` and, when `text` is not empty, a text/plain
 * diagnostic payload (RFC 7252 5.5.2). */
void coapfront__reply(coap_pdu_t *resp, coap_pdu_code_t code, const char *text);
/* A refused request: counts it under `why` (and for `dev`, which may be
 * NULL), logs it at debug level, then replies as coapfront__reply. */
void coapfront__reject(struct coap_front *cf, gw_device_t *dev, gw_reject_t why, coap_pdu_t *resp,
                       coap_pdu_code_t code, const char *text);
/* A request came on `s`: a DTLS session that has shaken hands becomes the
 * most recently used (server.c). Called by coapfront__body, which every
 * POST handler calls first. */
void coapfront__touch(struct coap_front *cf, coap_session_t *s);
/* The DTLS identity of a session as a C string ("" for plain CoAP, or for
 * an identity of `cap` bytes or more). */
void coapfront__identity(const coap_session_t *s, char *out, size_t cap);
/* The configured device whose DTLS identity `s` carries, or NULL (plain
 * CoAP, or an identity that names no device): a pack that cannot be
 * decoded names no device itself, but its sender is known by its key, and
 * its refusal is counted for it (the dashboard explains it per device). */
gw_device_t *coapfront__sender(struct coap_front *cf, const coap_session_t *s);

/* upload.c: the body of request `req` to resource `res`. A request
 * without Block1 is its own body. Block1 uploads (RFC 7959 2.5) are
 * assembled here, not by libcoap: libcoap 4.3.1 cut a body to a Size1
 * that lied and took the first block for the whole body when Size1 was
 * missing. Blocks must come in order from block 0; a body over `max` bytes
 * is 4.13 with Size1 = `max`; a Size1 that does not match what the blocks
 * held is 4.00. Returns 1 with the whole body in *data and *len (valid
 * until the next request), or 0 when `resp` is set: 2.31 Continue for a
 * block that is not the last, or a refusal (counted as too_large for
 * 4.13, bad_pack otherwise). An empty body is returned as such. */
int coapfront__body(struct coap_front *cf, coap_session_t *session, const coap_resource_t *res,
                    const coap_pdu_t *req, coap_pdu_t *resp, size_t max, const uint8_t **data,
                    size_t *len);
/* upload.c: drops the uploads of a session that goes (session NULL: all,
 * and frees them; when the front stops), and those idle for 60 s. */
void coapfront__uploads_drop(struct coap_front *cf, const coap_session_t *session);
void coapfront__uploads_sweep(struct coap_front *cf);

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
