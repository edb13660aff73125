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

#include <arpa/inet.h>
#include <errno.h>
#include <libgen.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

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

/* The line of `key` in [section] of the config file, for a message that
 * points at it (0 when not found: a default). The parser's lines are gone by
 * now; the file is short. */
static int key_line(const sg_config_t *cfg, const char *section, const char *key) {
  FILE *f = fopen(cfg->path, "r");
  if (!f)
    return 0;
  char buf[1100], head[64];
  snprintf(head, sizeof(head), "[%s]", section);
  int line = 0, found = 0;
  bool in = false;
  size_t kl = strlen(key);
  while (!found && fgets(buf, sizeof(buf), f)) {
    line++;
    char *t = buf + strspn(buf, " \t");
    if (*t == '[')
      in = !strncmp(t, head, strlen(head));
    else if (in && !strncmp(t, key, kl) && (t[kl] == ' ' || t[kl] == '\t' || t[kl] == '='))
      found = line;
  }
  fclose(f);
  return found;
}

#define CHECK_ERR(cfg, sec, key, ...)                                                              \
  do {                                                                                             \
    char m_[512];                                                                                  \
    snprintf(m_, sizeof(m_), __VA_ARGS__);                                                         \
    int l_ = key_line((cfg), (sec), (key));                                                        \
    if (l_)                                                                                        \
      log_err("%s:%d: %s", (cfg)->path, l_, m_);                                                   \
    else                                                                                           \
      log_err("%s: %s", (cfg)->path, m_);                                                          \
  } while (0)

/* The database's folder must be there and writable: SQLite would only say
 * "unable to open database file" once everything else had started. */
static int check_db_folder(const sg_config_t *cfg) {
  char dir[sizeof(cfg->db_path)];
  snprintf(dir, sizeof(dir), "%s", cfg->db_path);
  const char *d = dirname(dir);
  struct stat st;
  if (stat(d, &st) != 0 || !S_ISDIR(st.st_mode)) {
    CHECK_ERR(cfg, "storage", "path", "[storage] path %s: the folder %s %s", cfg->db_path, d,
              stat(d, &st) != 0 ? "does not exist (create it, owned by the gateway's user)"
                                : "is not a folder");
    return -ENOENT;
  }
  if (access(d, W_OK | X_OK) != 0) {
    CHECK_ERR(cfg, "storage", "path", "[storage] path %s: this user (uid %d) may not write in %s",
              cfg->db_path, (int)getuid(), d);
    return -EACCES;
  }
  return 0;
}

/* Binds `sa` once (UDP or TCP) and lets it go: what start-up will do, so
 * an address this machine does not have, a port taken or one that needs
 * privilege is refused here with the key's line. A port taken while the
 * instance lock is held (a running sitegated of this database, checking
 * its own file) is a warning. */
static int probe_bind(const sg_config_t *cfg, const char *sec, const char *key,
                      const struct sockaddr_storage *sa, int type, const char *what) {
  socklen_t len =
      sa->ss_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
  int fd = socket(sa->ss_family, type | SOCK_CLOEXEC, 0), one = 1, err = 0;
  if (fd < 0)
    return 0;              /* no such family here: start-up will say */
  if (type == SOCK_STREAM) /* a TIME_WAIT of our own last run is no owner */
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if (bind(fd, (const struct sockaddr *)sa, len) != 0)
    err = errno;
  close(fd);
  if (err == EADDRINUSE) {
    int lk;
    pid_t holder = 0;
    if (stor_lock(cfg->db_path, &lk, &holder) != 0 && holder) {
      log_warn("%s is in use, by the running sitegated (pid %d) of this database it seems", what,
               (int)holder);
      return 0;
    }
    stor_unlock(lk);
    CHECK_ERR(cfg, sec, key, "%s is in use by another program", what);
    return -EADDRINUSE;
  }
  if (err == EADDRNOTAVAIL) {
    CHECK_ERR(cfg, sec, key, "%s: the address is not one of this machine's", what);
    return -EADDRNOTAVAIL;
  }
  if (err == EACCES) {
    CHECK_ERR(cfg, sec, key, "%s needs root or CAP_NET_BIND_SERVICE (a port under 1024)", what);
    return -EACCES;
  }
  return 0;
}

static int check_listeners(const sg_config_t *cfg) {
  struct sockaddr_storage sa;
  memset(&sa, 0, sizeof(sa));
  char what[128];
  int rc = 0;
  struct sockaddr_in *v4 = (struct sockaddr_in *)&sa;
  struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&sa;
  if (inet_pton(AF_INET, cfg->coap_listen, &v4->sin_addr) == 1)
    sa.ss_family = AF_INET;
  else if (inet_pton(AF_INET6, cfg->coap_listen, &v6->sin6_addr) == 1)
    sa.ss_family = AF_INET6;
  else
    return 0; /* the parser refused it already */
  const int ports[2] = {cfg->coap_port, cfg->dtls_port};
  const char *keys[2] = {"port", "dtls_port"};
  for (int i = 0; i < 2 && rc == 0; i++) {
    if (!ports[i])
      continue;
    if (sa.ss_family == AF_INET)
      v4->sin_port = htons((uint16_t)ports[i]);
    else
      v6->sin6_port = htons((uint16_t)ports[i]);
    snprintf(what, sizeof(what), "[coap] %s %d on %s (UDP)", keys[i], ports[i], cfg->coap_listen);
    rc = probe_bind(cfg, "coap", i ? "dtls_port" : "listen", &sa, SOCK_DGRAM, what);
  }
  bool loopback;
  if (rc == 0 && sg_parse_listen(cfg->http_listen, &sa, &loopback) == 0) {
    snprintf(what, sizeof(what), "[http] listen %s (TCP)", cfg->http_listen);
    rc = probe_bind(cfg, "http", "listen", &sa, SOCK_STREAM, what);
  }
  return rc;
}

int gw_check(const sg_config_t *cfg) {
  int rc = check_db_folder(cfg);
  if (rc == 0)
    rc = check_listeners(cfg);
  if (rc != 0 || !cfg->uplink_host[0])
    return rc;
  /* What uplink_start() loads: the authority's CA, our certificate and the
   * key, which also signs the ledger's extension records. */
  char err[512];
  gtls_conf_t *tls = NULL;
  gtls_signer_t *signer = NULL;
  rc = gtls_conf_new(cfg->uplink_ca, cfg->uplink_cert, cfg->uplink_key, &tls, err, sizeof(err));
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
