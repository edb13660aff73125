/* common/msgcat: the one catalogue of messages a person reads, Chinese and
 * English (gateway/web/messages.json; the dashboard loads the same file).
 *
 * The file is {"zh": {key: text}, "en": {key: text}}; a text may hold
 * {name} placeholders. The daemon's report and sitectl render through
 * here, the dashboard through gateway/web/i18n.js, with the same rules:
 * a key missing in the language falls back to Chinese, then to the key
 * itself; figures are whole numbers as they are, others to one decimal.
 *
 * An alarm is stored once as its parts (rule, source, figure, limit,
 * unit) and rendered here in either language: msgcat_alarm_key() picks
 * the entry "alarm.<key>" and its {q}, exactly as i18n.js's alarmKey().
 *
 * A catalogue is immutable once loaded: any thread may read it. */
#ifndef SITEGATE_COMMON_MSGCAT_H
#define SITEGATE_COMMON_MSGCAT_H

#include <stddef.h>

typedef struct msgcat msgcat_t;

/* Loads the catalogue at `path`. Returns 0 or -ENOENT, -EBADMSG (not the
 * shape above, with `err` saying why; err may be NULL), -ENOMEM. */
int msgcat_load(const char *path, msgcat_t **out, char *err, size_t errlen);
/* The same from a parsed catalogue (sitectl GETs /messages.json); takes
 * over the caller's reference to `root` in every case. */
int msgcat_from_json(void *root, msgcat_t **out);
/* Accepts NULL. */
void msgcat_free(msgcat_t *c);

/* "zh" or "en" from a locale or a wish ("en", "en_GB.UTF-8", "zh_CN"):
 * English only when asked for; NULL or anything else is Chinese. */
const char *msgcat_lang(const char *wish);

/* The text of `key` in `lang` (fallbacks above); borrowed from `c`, or
 * `key` itself. `c` may be NULL (then `key`). */
const char *msgcat_get(const msgcat_t *c, const char *lang, const char *key);
/* `prefix`_`id` in `lang`, else `id` (a family of names: "q", "pm2_5"). */
const char *msgcat_name(const msgcat_t *c, const char *lang, const char *prefix, const char *id);

/* Checks that every key has a text in both languages with the same set of
 * placeholders. Returns the number of faults; each is described into `err`
 * (the last one wins). */
int msgcat_check(const msgcat_t *c, char *err, size_t errlen);

typedef struct msgcat_alarm {
  const char *rule, *source, *unit;
  double figure, limit, peak; /* NAN: not known ("–") */
} msgcat_alarm_t;

/* The catalogue key (without "alarm.") for `rule` into key[keylen] and its
 * quantity into q[qlen] ("" when none): "alarm.<rule>" when the catalogue
 * has it; else for "a.b.c" the key "a.b" and q "c"; else for
 * "dust.<q>_long|_short|_exceed_day" the key "dust.long" etc.; else "other". */
void msgcat_alarm_key(const msgcat_t *c, const char *rule, char *key, size_t keylen, char *q,
                      size_t qlen);
/* The rule's short name ("rule.<key>"), and the alarm's sentence using
 * `figure` (pass a->peak for the worst), into buf. Return buf. */
char *msgcat_rule_name(const msgcat_t *c, const char *lang, const char *rule, char *buf,
                       size_t len);
char *msgcat_alarm_text(const msgcat_t *c, const char *lang, const msgcat_alarm_t *a, double figure,
                        char *buf, size_t len);

/* Fills {name} placeholders of `tmpl` from parallel arrays of names and
 * values (a missing name stays as "{name}"). Returns buf. */
char *msgcat_fill(const char *tmpl, const char *const *names, const char *const *values, size_t n,
                  char *buf, size_t len);
/* The catalogue's name for an errno (either sign), its text being
 * "sys.<name>": "eio", "enospc", ...; "other" for one it does not name
 * ("sys.other" says the number as {1}). */
const char *msgcat_errno_name(int e);
/* The system's reason for errno `e` in `lang`, into buf. Returns buf. */
char *msgcat_errno_text(const msgcat_t *c, const char *lang, int e, char *buf, size_t len);

/* A figure as sentences show it: "12", "12.3", "–" for NAN. */
char *msgcat_figure(double v, char *buf, size_t len);

#endif
