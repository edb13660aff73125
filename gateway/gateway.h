/* gateway: the sitegated daemon's parts (CoAP front, device registry, local
 * HTTP API), wired together on one libuv loop.
 *
 * sitegated.c is only main(): it loads the configuration and runs gw_run().
 * Tests drive the same functions. */
#ifndef SITEGATE_GATEWAY_H
#define SITEGATE_GATEWAY_H

#include "common/common.h"

#include <stdbool.h>

typedef struct gw gw_t;

/* Opens storage, binds CoAP and HTTP, and runs the loop until SIGTERM or
 * SIGINT; then stops taking requests, commits everything queued and returns.
 * `cfg` is borrowed for the whole run. Returns 0 after a clean stop, a
 * negative errno when start-up failed (the reason is logged on one line),
 * or -EBUSY when the loop could not close because a handle was left open
 * (a bug: each such handle's type is logged). */
int gw_run(const sg_config_t *cfg);

/* The checks start-up makes beyond the configuration file's own (which
 * sg_config_load makes, listeners and token included): the uplink's
 * certificates and key load. For --check-config and before gw_run();
 * logs each problem.
 * Returns 0 or the first negative errno. */
int gw_check(const sg_config_t *cfg);

#endif
