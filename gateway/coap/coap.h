/* gateway/coap: the CoAP front. A server of sensors (POST /r readings,
 * POST /w weighing tickets, over UDP and DTLS: protocol/COAP.md) and a client
 * of equipment controllers (GET /state observed, PUT /ctl). It hands every
 * accepted pack to core's pack listeners and every ticket to
 * gw_ticket_submit: it calls no other part. Loop thread. */
#ifndef SITEGATE_GW_COAP_H
#define SITEGATE_GW_COAP_H

#include "gateway/core/core.h"

#include <stdbool.h>
#include <stdint.h>

/* DTLS handshakes the front keeps pending at once (libcoap's
 * max_handshake_sessions; its default is 100). With OpenSSL the first
 * ClientHello from an address only earns a stateless HelloVerifyRequest
 * (RFC 6347 4.2.1), but libcoap 4.3.1 still keeps a small session per
 * address and frees one only when it is 30 s old and another new address
 * writes: so N pending slots withstand N/30 spoofed or abandoned ClientHellos
 * a second. 100 fell to a trickle of 20/s (issue 13); 1024 holds 34/s,
 * costs under 1 MB when full, and a device that has shaken hands is never
 * counted against it. */
#define GW_DTLS_MAX_HANDSHAKES 1024

/* The CoAP front (server.c): binds UDP and DTLS, serves POST /r and POST /w.
 * Loop thread (asserted). Returns 0, -EINVAL, -EADDRINUSE or -ENOTSUP
 * (each logged with what to do), -EIO or -ENOMEM. */
int coapfront_start(gw_t *gw, struct coap_front **out);
/* Stops answering and frees it; its libuv handles close asynchronously, so
 * the loop must run once more (and, when a controller's name was still
 * resolving, until libuv's lookup returns). No callback of
 * coapfront_observe or coapfront_command runs after it. Loop thread
 * (asserted). Accepts NULL. */
void coapfront_stop(struct coap_front *cf);

/* ---- the gateway as a CoAP client of equipment controllers (client.c,
 * protocol/COAP.md): GET /state observed (RFC 7641),
 * PUT /ctl {"on":false,"reason":"peak-cap"} as CON, retransmitted by
 * libcoap. `uri` is the unit's `coap` key: coap://HOST[:PORT][/BASE], the
 * resources being BASE/state and BASE/ctl. Loop thread only (asserted);
 * callbacks run on the loop and may send again; none runs after
 * coapfront_stop().
 *
 * HOST as an IP address is used at once. A host name is resolved on the
 * controller's first use with uv_getaddrinfo, so the loop never waits on
 * DNS: the call returns 0 and the request waits for the address, then
 * goes. A name that does not resolve reaches the callback as -EHOSTUNREACH
 * (logged once, with the resolver's reason), and the next call resolves it
 * again; a resolved name is kept until the front stops. */
typedef struct coapfront_state {
  bool on;
  double power_kw; /* NAN when the controller does not say */
  int demand;      /* 1 the operator asks for the unit, 0 not, -1 not said */
} coapfront_state_t;
/* A notification (st != NULL, err 0) or a failed observation (st NULL,
 * err -ETIMEDOUT, -ECONNREFUSED, -EPROTO for an error code, -EBADMSG for
 * a payload that is not a state, -EHOSTUNREACH for a name that did not
 * resolve, or -ENOMEM, -EIO when it could not be sent once it had): observe
 * again later. */
typedef void (*coapfront_state_cb)(void *arg, const coapfront_state_t *st, int err);
/* A command's answer: 0 (2.xx), -EPROTO (4.xx, 5.xx: `code` as 404),
 * -ETIMEDOUT (no ACK after the retransmissions), -ECONNREFUSED (RST), or,
 * for a host name, -EHOSTUNREACH (it did not resolve) or -ENOMEM, -EIO
 * (not sent once it had); `code` is 0 but for -EPROTO. */
typedef void (*coapfront_done_cb)(void *arg, uint64_t tag, int result, int code);
/* Registers (again, with the same token: RFC 7641 3.3.1) an observation
 * of uri's /state. Returns 0 (sent, or waiting for the host name),
 * -EINVAL for a URI it cannot use (logged), -ENOMEM or -EIO. */
int coapfront_observe(struct coap_front *cf, const char *uri, coapfront_state_cb cb, void *arg);
/* Sends PUT /ctl; cb(arg, tag, ...) is called once, unless the front stops
 * first. Returns 0 or as coapfront_observe. */
int coapfront_command(struct coap_front *cf, const char *uri, bool on, const char *reason,
                      coapfront_done_cb cb, void *arg, uint64_t tag);

/* How the CoAP front answers a refusal from storage (ingest.c, pure). */
typedef struct gw_verdict {
  int code;         /* the CoAP code as three digits (RFC 7252 12.1.2): 400, 500, 503 */
  gw_reject_t why;  /* the reason it is counted under */
  unsigned max_age; /* the Max-Age option in s; 0: none */
  char text[256];   /* the diagnostic payload */
} gw_verdict_t;
/* stor_append() refused readings r[0..n) with `rc` (not 0): -EAGAIN is
 * busy and -ENOSPC disk full (both 5.03 with Max-Age), -EINVAL for a
 * reading that can never be stored is 4.00 invalid_reading naming it, any
 * other errno 5.00 storage_error. */
void gw_append_verdict(int rc, const stor_reading_t *r, size_t n, gw_verdict_t *v);
/* gw_ticket_submit() refused ticket `t` with `rc` (not 0). Returns 400 for a
 * ticket the ledger can never hold (invalid_ticket), with what is wrong in
 * `text`; else 503 (resend) with the reason. */
int gw_ticket_refusal(int rc, const stor_ticket_t *t, char *text, size_t cap);

#endif
