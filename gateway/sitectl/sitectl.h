/* Private to sitectl: the helpers its commands share. */
#ifndef SITEGATE_SITECTL_INT_H
#define SITEGATE_SITECTL_INT_H

#include "common/common.h"
#include "protocol/protocol.h"

#include "common/msgcat.h"
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

enum { EXIT_NO = 1, EXIT_USAGE = 2, EXIT_UNREACHABLE = 3 };

typedef struct ctl {
  const char *url; /* gateway base URL, no trailing slash */
  bool json;
  const char *since, *until, *step;
  char timezone[64]; /* the site's, from /api/status */

  /* sitectl_env.c: alarm ack, noise, dust */
  const char *note, *by, *device, *window;
  bool all; /* alarms: history, not only active */

  /* sitectl_waste.c: waste tickets --csv, waste disclosure --month */
  bool csv;
  const char *month;

  /* sitectl_equipment.c: equipment set --for 2h --reason TEXT */
  const char *for_, *reason;

  /* sitectl_report.c: report --out FILE (also --month, --csv) */
  const char *out;

  /* sitectl_machinery.c: machine add|change --type --stage --power-kw ... */
  const char *type, *stage, *power_kw, *fuel, *owner, *label, *terminal;
} ctl_t;

/* ---- words (sitectl_util.c): everything sitectl prints for a person comes
 * from the catalogue (gateway/web/messages.json, keys "ctl.*" and the
 * dashboard's names), Chinese unless English is asked for: --lang, else
 * SITECTL_LANG, else LC_ALL, LC_MESSAGES, LANG. The catalogue is the one
 * installed beside sitectl (../share/sitegate/web/), else the gateway's
 * (GET /messages.json, once). One thread: sitectl has only one. */
void words_init(const ctl_t *ctl, const char *lang_opt);
void words_free(void);
const char *words_lang(void);
/* The catalogue itself, for msgcat_alarm_text and friends (may be NULL). */
const msgcat_t *words_cat(void);
/* The text of `key`; the name of `id` in a family ("level", "warning"). */
const char *M(const char *key);
const char *MN(const char *prefix, const char *id);
/* The text of `key` with placeholders filled from (name, value) pairs
 * ended by NULL, into buf; returns buf. */
char *MF(char *buf, size_t len, const char *key, ...) __attribute__((sentinel));
/* The same printed to `f` with "sitectl: " before it (stderr) or not, and a
 * newline after it. */
void say(FILE *f, const char *key, ...) __attribute__((sentinel));

/* GETs base+path and parses the JSON answer into *out (the caller
 * json_decref's it). On failure prints the reason and returns the exit
 * status to use (EXIT_NO, EXIT_UNREACHABLE); 0 on success. */
int api_get(const ctl_t *ctl, const char *path, json_t **out);
/* The same printing nothing when the answer is not 200 with JSON (for what
 * sitectl can do without: the message catalogue). */
int api_get_quiet(const ctl_t *ctl, const char *path, json_t **out);
/* The same with any method and an optional JSON body (actions send
 * $SITECTL_TOKEN as a bearer token). */
int api_request(const ctl_t *ctl, const char *method, const char *path, const json_t *body,
                json_t **out);
/* GETs a body that is not JSON (CSV, HTML, metrics) into *out, malloc'ed and
 * NUL-terminated, `len` bytes; the caller frees it. Returns as api_get. */
int api_get_text(const ctl_t *ctl, const char *path, char **out, size_t *len);
/* GETs /api/status and switches this process to the site's time zone. */
int fetch_status(ctl_t *ctl, json_t **st);
/* The same when only the zone matters. */
int fetch_zone(ctl_t *ctl);
int url_escape(const char *in, char *out, size_t cap);

void print_json(const json_t *j);
/* With --json: prints `j` as the command's answer, frees it and returns
 * true (the command is done); false otherwise. */
bool json_answer(const ctl_t *ctl, json_t *j);
void use_site_zone(const ctl_t *ctl);
/* "2026-11-20 21:20:00" in the site's zone, "-" for 0. */
const char *fmt_time(double t, char *buf, size_t cap);
const char *fmt_num(double v, char *buf, size_t cap);
/* A SenML unit as a person writes it: "ug/m3" as µg/m³, "Cel" as °C,
 * "deg" as °, "%RH" as %; the others as they are (any language). */
const char *unit_shown(const char *senml);
/* The integer o[key] as text ("0" when absent). */
const char *fmt_int(const json_t *o, const char *key, char *buf, size_t cap);

/* Aligned tables; widths count display columns so Chinese lines up. */
#define TBL_MAX_COLS 12
typedef struct table {
  size_t ncols, nrows, cap;
  char **cells; /* nrows * ncols */
  bool right[TBL_MAX_COLS];
} table_t;
/* Adds a row of t->ncols strings (NULL prints empty). */
void table_row(table_t *t, ...);
/* Prints and frees the rows. */
void table_print(table_t *t);
/* Frees the rows without printing them (a table that stayed empty). */
void table_discard(table_t *t);

/* Commands in sitectl_env.c. */
int cmd_alarms(ctl_t *ctl, int argc, char **argv);
int cmd_alarm(ctl_t *ctl, int argc, char **argv);
int cmd_noise(ctl_t *ctl, int argc, char **argv);
int cmd_dust(ctl_t *ctl, int argc, char **argv);

/* Commands in sitectl_waste.c. */
int cmd_waste(ctl_t *ctl, int argc, char **argv);
int cmd_materials(ctl_t *ctl, int argc, char **argv);
int cmd_site(ctl_t *ctl, int argc, char **argv);

/* Commands in sitectl_equipment.c. */
int cmd_equipment(ctl_t *ctl, int argc, char **argv);
int cmd_energy(ctl_t *ctl, int argc, char **argv);
int cmd_carbon(ctl_t *ctl, int argc, char **argv);

/* Commands in sitectl_machinery.c. */
int cmd_machines(ctl_t *ctl, int argc, char **argv);
int cmd_machine(ctl_t *ctl, int argc, char **argv);

/* Command in sitectl_uplink.c. */
int cmd_uplink(ctl_t *ctl, int argc, char **argv);

/* Commands in sitectl_report.c. */
int cmd_report(ctl_t *ctl, int argc, char **argv);
int cmd_metrics(ctl_t *ctl, int argc, char **argv);

#endif
