/* systemd's side of the receiver's life (the receiver's one file that
 * includes libsystemd's header), as gateway/core/notify.c is the gateway's:
 * READY=1 once the database is open and the TLS port listens, STOPPING=1 at
 * SIGTERM, and WATCHDOG=1 from a timer on the loop itself, so a loop that
 * hangs (a blocking call, SIGSTOP) stops the pings and systemd restarts the
 * receiver after WatchdogSec=. Without systemd (no NOTIFY_SOCKET, no
 * WATCHDOG_USEC) every call here does nothing. */
#define LOG_MODULE "sitegate-rx"
#include "authority/rx.h"
#include "common/common.h"

#include <stdbool.h>
#include <systemd/sd-daemon.h>
#include <uv.h>

/* One receiver per process; loop thread only. */
static uv_timer_t watchdog;
static bool watchdog_on;

static void watchdog_on_tick(uv_timer_t *t) {
  (void)t;
  sd_notify(0, "WATCHDOG=1");
}

void rx_notify_ready(void *loop, const char *status) {
  uint64_t usec = 0;
  /* Half the interval systemd asked for (sd_watchdog_enabled(3)): one late
   * tick on a busy box still arrives in time. */
  if (sd_watchdog_enabled(0, &usec) > 0 && usec >= 2000) {
    uint64_t ms = usec / 2000;
    uv_timer_init(loop, &watchdog);
    uv_timer_start(&watchdog, watchdog_on_tick, ms, ms);
    uv_unref((uv_handle_t *)&watchdog); /* it never keeps the loop alive */
    watchdog_on = true;
    log_info("systemd watchdog: a ping every %llu ms", (unsigned long long)ms);
  }
  sd_notifyf(0, "READY=1\nSTATUS=%s", status);
}

void rx_notify_stopping(void) {
  sd_notify(0, "STOPPING=1");
  if (watchdog_on) {
    watchdog_on = false;
    uv_close((uv_handle_t *)&watchdog, NULL);
  }
}
