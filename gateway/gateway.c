/* The daemon's life cycle, the one file that knows every room of gateway/:
 * start the parts in dependency order on core's loop, run until
 * SIGTERM/SIGINT, then stop them in reverse so that nothing already
 * acknowledged to a sensor is lost: the CoAP front stops answering first,
 * then storage commits whatever is queued.
 *
 * The rooms, each depending only on those before it:
 *   core                           the loop, the registry, calls and posts,
 *                                  listeners, tickets to the ledger
 *   coap                           the CoAP server of sensors, client of controllers
 *   rules                          the alarm model; noise, dust, health
 *   equipment, waste, uplink,      group control and energy; the ledger; the authority;
 *   machinery                      non-road mobile machinery
 *   api                            the HTTP API, the dashboard, /metrics, the report */
#define LOG_MODULE "gateway"
#include "gateway/api/api.h"
#include "gateway/coap/coap.h"
#include "gateway/core/core.h"
#include "gateway/equipment/equipment.h"
#include "gateway/machinery/machinery.h"
#include "gateway/rules/rules.h"
#include "gateway/uplink/uplink.h"
#include "gateway/waste/waste.h"

#include <string.h>

/* Stops what takes work in (on the loop: at SIGTERM, or after a failed
 * start); each part's stop is idempotent and accepts a part never started. */
static void stop_parts(gw_t *gw) {
  equipment_stop(gw); /* sends nothing more through the front */
  coapfront_stop(gw->coap);
  gw->coap = NULL;
  waste_gw_stop(gw);
  env_stop(gw);
  uplink_stop(gw);
  machinery_stop(gw);
}

/* machinery's daily figures, as the uplink's 6053 takes them (two rooms of
 * one level meet here). */
typedef struct day_bridge {
  uplink_machine_day_cb cb;
  void *arg;
} day_bridge_t;

static int bridge_day(void *arg, const char *code, const stor_machine_t *m, const mach_day_t *d) {
  day_bridge_t *b = arg;
  uplink_machine_day_t u = {.code = code,
                            .stage = m ? proto_stage_name(m->m.stage) : NULL,
                            .power_kw = m ? m->m.power_kw : 0,
                            .onsite_h = d->onsite_h,
                            .engine_h = d->engine_h,
                            .idle_share = d->idle_share,
                            .fuel_l = d->fuel_l,
                            .t_co2 = d->t_co2,
                            .nox_kg = d->nox_kg,
                            .pm_kg = d->pm_kg};
  return b->cb(b->arg, &u);
}

static int machine_days(stor_reader_t *rd, const sg_config_t *cfg, int64_t day, int64_t end,
                        uplink_machine_day_cb cb, void *arg) {
  day_bridge_t b = {cb, arg};
  return machinery_days(rd, cfg, (double)day, (double)end, bridge_day, &b);
}

int gw_check(const sg_config_t *cfg) {
  if (!cfg->uplink_host[0])
    return 0;
  /* What uplink_start() loads: the authority's CA, our certificate and the
   * key, which also signs the ledger's extension records. */
  char err[512];
  gtls_conf_t *tls = NULL;
  gtls_signer_t *signer = NULL;
  int rc = gtls_conf_new(cfg->uplink_ca, cfg->uplink_cert, cfg->uplink_key, &tls, err, sizeof(err));
  if (rc == 0)
    rc = gtls_signer_new(cfg->uplink_key, &signer, err, sizeof(err));
  if (rc != 0)
    log_err("cannot start the uplink: %s", err);
  else if (strcmp(gtls_conf_cn(tls), cfg->site_id) != 0)
    log_warn("[uplink] cert %s is for %s, not for this site (%s): the receiver will refuse it",
             cfg->uplink_cert, gtls_conf_cn(tls), cfg->site_id);
  gtls_signer_free(signer);
  gtls_conf_free(tls);
  return rc;
}

int gw_run(const sg_config_t *cfg) {
  gw_t gw;
  uv_loop_t loop;
  int rc = gw_core_open(&gw, cfg, &loop);
  if (rc == 0)
    rc = alarm_open(&gw);
  if (rc == 0)
    rc = waste_gw_open(&gw);
  if (rc == 0)
    rc = coapfront_start(&gw, &gw.coap);
  if (rc == 0)
    rc = http_start(&gw, &gw.http);
  if (rc == 0)
    rc = env_start(&gw);
  if (rc == 0)
    rc = equipment_open(&gw);
  if (rc == 0)
    rc = machinery_open(&gw);
  if (rc == 0) {
    uplink_set_machine_days(machine_days);
    rc = uplink_start(&gw);
  }
  if (rc == 0)
    gw_core_run(&gw, stop_parts);

  if (gw.loop) {
    stop_parts(&gw);
    gw_core_stop(&gw);             /* handlers waiting on the loop get -ECANCELED */
    http_stop(gw.http);            /* joins every handler thread */
    uv_run(&loop, UV_RUN_DEFAULT); /* let closed handles finish */
    equipment_free(&gw);           /* stores the last figures and commands */
    uplink_free(&gw);              /* marks the last acknowledgements */
    alarm_close(&gw);              /* stores what is still queued */
    waste_gw_free(&gw);
    machinery_free(&gw);
    gw_core_free(&gw); /* storage commits everything queued; kept posts run */
  }
  rc = gw_core_close_loop(&gw, rc);
  if (rc == 0)
    log_info("stopped cleanly");
  return rc;
}
