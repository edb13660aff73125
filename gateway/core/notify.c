/* systemd's side of the daemon's life (the only file that includes
 * libsystemd's header): while storage opens, what it does and
 * EXTEND_TIMEOUT_USEC as long as it makes progress; READY=1 once storage is
 * open and the CoAP and HTTP sockets listen, STOPPING=1 at SIGTERM, and
 * WATCHDOG=1 from a timer on the loop itself, so a loop that hangs (a
 * blocking call, SIGSTOP) stops the pings and systemd restarts the daemon
 * after WatchdogSec=. Without systemd (no NOTIFY_SOCKET, no WATCHDOG_USEC)
 * every call here does nothing. */
#define LOG_MODULE "gateway"
#include "gateway/core/core.h"

#include <string.h>
#include <systemd/sd-daemon.h>

static void watchdog_on_tick(uv_timer_t *t) {
  (void)t;
  sd_notify(0, "WATCHDOG=1");
}

/* A schema migration of a large file on a slow eMMC (moving every reading
 * to a new table, the VACUUM that rewrites the file) can outlast the unit's
 * TimeoutStartSec= (120 s); killed, the daemon would roll back and start
 * the same migration again, for ever. Storage calls this at most every
 * GW_OPENING_NOTIFY_MS while SQLite works (statements running, the WAL
 * written) and at each step. The extension is what a start may go without
 * any: far longer than the single calls that report nothing (a commit's
 * fsync, the drop of a large table: at most 0.14 s between two reports
 * while a 58 MB schema 6 file migrated on the 2-core VM, so seconds on a
 * card 20 times slower), short enough that a start that has stalled is
 * still killed and restarted. STATUS= says what it does and how long that
 * step has taken (`systemctl status`). */
void gw__notify_opening(void *arg, const stor_opening_t *o) {
  (void)arg;
  sd_notifyf(0, "EXTEND_TIMEOUT_USEC=%llu\nSTATUS=%s (%.0f s)",
             (unsigned long long)GW_OPENING_EXTEND_S * 1000000ULL, o->what, o->step_s);
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
