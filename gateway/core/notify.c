/* systemd's side of the daemon's life (the only file that includes
 * libsystemd's header): READY=1 once storage is open and the CoAP and HTTP
 * sockets listen, STOPPING=1 at SIGTERM, and WATCHDOG=1 from a timer on the
 * loop itself, so a loop that hangs (a blocking call, SIGSTOP) stops the
 * pings and systemd restarts the daemon after WatchdogSec=. Without systemd
 * (no NOTIFY_SOCKET, no WATCHDOG_USEC) every call here does nothing. */
#define LOG_MODULE "gateway"
#include "gateway/core/core.h"

#include <string.h>
#include <systemd/sd-daemon.h>

static void watchdog_on_tick(uv_timer_t *t) {
  (void)t;
  sd_notify(0, "WATCHDOG=1");
}

void gw__notify_ready(gw_t *gw) {
  uint64_t usec = 0;
  /* Half the interval systemd asked for (sd_watchdog_enabled(3)): one late
   * tick on a busy box still arrives in time. */
  if (sd_watchdog_enabled(0, &usec) > 0 && usec >= 2000) {
    uint64_t ms = usec / 2000;
    uv_timer_init(gw->loop, &gw->watchdog);
    gw->watchdog.data = gw;
    uv_timer_start(&gw->watchdog, watchdog_on_tick, ms, ms);
    uv_unref((uv_handle_t *)&gw->watchdog); /* it never keeps the loop alive */
    gw->watchdog_on = true;
    log_info("systemd watchdog: a ping every %llu ms", (unsigned long long)ms);
  }
  sd_notifyf(0, "READY=1\nSTATUS=site %s: %zu devices", gw->cfg->site_id, gw->cfg->n_devices);
}

void gw__notify_stopping(gw_t *gw) {
  sd_notify(0, "STOPPING=1");
  if (gw->watchdog_on) {
    gw->watchdog_on = false;
    uv_close((uv_handle_t *)&gw->watchdog, NULL);
  }
}
