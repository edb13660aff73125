/* The message catalogue (msgcat.h): a JSON file read once with jansson,
 * looked up by key. Rendering is string substitution; the rules are kept
 * the same as the dashboard's i18n.js so both read one file alike. */
#include "common/msgcat.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct msgcat {
  json_t *root; /* {"zh": {...}, "en": {...}} */
};

int msgcat_load(const char *path, msgcat_t **out, char *err, size_t errlen) {
  json_error_t je;
  *out = NULL;
  json_t *root = json_load_file(path, 0, &je);
  if (!root) {
    if (err)
      snprintf(err, errlen, "%s: %s (line %d)", path, je.text, je.line);
    return json_error_code(&je) == json_error_cannot_open_file ? -ENOENT : -EBADMSG;
  }
  if (!json_is_object(json_object_get(root, "zh")) ||
      !json_is_object(json_object_get(root, "en"))) {
    if (err)
      snprintf(err, errlen, "%s: needs the objects \"zh\" and \"en\"", path);
    json_decref(root);
    return -EBADMSG;
  }
  msgcat_t *c = malloc(sizeof(*c));
  if (!c) {
    json_decref(root);
    return -ENOMEM;
  }
  c->root = root;
  *out = c;
  return 0;
}

int msgcat_from_json(void *jroot, msgcat_t **out) {
  json_t *root = jroot;
  *out = NULL;
  if (!json_is_object(json_object_get(root, "zh")) ||
      !json_is_object(json_object_get(root, "en"))) {
    json_decref(root);
    return -EBADMSG;
  }
  msgcat_t *c = malloc(sizeof(*c));
  if (!c) {
    json_decref(root);
    return -ENOMEM;
  }
  c->root = root;
  *out = c;
  return 0;
}

void msgcat_free(msgcat_t *c) {
  if (!c)
    return;
  json_decref(c->root);
  free(c);
}

const char *msgcat_lang(const char *wish) {
  return wish && strncmp(wish, "en", 2) == 0 ? "en" : "zh";
}

static const char *lookup(const msgcat_t *c, const char *lang, const char *key) {
  if (!c)
    return NULL;
  const char *s = json_string_value(json_object_get(json_object_get(c->root, lang), key));
  if (!s)
    s = json_string_value(json_object_get(json_object_get(c->root, "zh"), key));
  return s;
}

const char *msgcat_get(const msgcat_t *c, const char *lang, const char *key) {
  const char *s = lookup(c, lang, key);
  return s ? s : key;
}

const char *msgcat_name(const msgcat_t *c, const char *lang, const char *prefix, const char *id) {
  char key[128];
  snprintf(key, sizeof(key), "%s_%s", prefix, id);
  const char *s = lookup(c, lang, key);
  return s ? s : id;
}

/* The placeholders of `s`, sorted, into buf ("{a}{b}"). */
static void placeholders(const char *s, char *buf, size_t len) {
  char names[16][32];
  size_t n = 0;
  for (const char *p = s; (p = strchr(p, '{')) != NULL; p++) {
    const char *e = strchr(p, '}');
    if (!e || n == 16)
      break;
    snprintf(names[n++], sizeof(names[0]), "%.*s", (int)(e - p + 1), p);
  }
  qsort(names, n, sizeof(names[0]), (int (*)(const void *, const void *))strcmp);
  buf[0] = '\0';
  for (size_t i = 0; i < n; i++)
    if (i == 0 || strcmp(names[i], names[i - 1]) != 0)
      strncat(buf, names[i], len - strlen(buf) - 1);
}

static int check_pair(json_t *a, json_t *b, const char *la, const char *lb, char *err,
                      size_t errlen) {
  int faults = 0;
  const char *key;
  json_t *v;
  json_object_foreach(a, key, v) {
    json_t *w = json_object_get(b, key);
    if (!json_is_string(v) || !json_is_string(w)) {
      snprintf(err, errlen, "\"%s\" is in %s but not (as text) in %s", key, la, lb);
      faults++;
      continue;
    }
    char pa[256], pb[256];
    placeholders(json_string_value(v), pa, sizeof(pa));
    placeholders(json_string_value(w), pb, sizeof(pb));
    if (strcmp(pa, pb) != 0) {
      snprintf(err, errlen, "\"%s\" has %s in %s but %s in %s", key, pa, la, pb, lb);
      faults++;
    }
  }
  return faults;
}

int msgcat_check(const msgcat_t *c, char *err, size_t errlen) {
  json_t *zh = json_object_get(c->root, "zh"), *en = json_object_get(c->root, "en");
  int faults = check_pair(zh, en, "zh", "en", err, errlen);
  /* The other way, for keys in English only; placeholder faults were
   * counted already. */
  const char *key;
  json_t *v;
  json_object_foreach(en, key, v) {
    if (!json_object_get(zh, key)) {
      snprintf(err, errlen, "\"%s\" is in en but not in zh", key);
      faults++;
    }
  }
  return faults;
}

char *msgcat_fill(const char *tmpl, const char *const *names, const char *const *values, size_t n,
                  char *buf, size_t len) {
  size_t o = 0;
  buf[0] = '\0';
  for (const char *p = tmpl; *p && o + 1 < len;) {
    const char *e = *p == '{' ? strchr(p, '}') : NULL;
    const char *val = NULL;
    if (e) {
      for (size_t i = 0; i < n && !val; i++)
        if (strlen(names[i]) == (size_t)(e - p - 1) && strncmp(p + 1, names[i], e - p - 1) == 0)
          val = values[i] ? values[i] : "";
    }
    if (val) {
      int w = snprintf(buf + o, len - o, "%s", val);
      o = w < 0 ? o : o + (size_t)w >= len ? len - 1 : o + (size_t)w;
      p = e + 1;
    } else {
      buf[o++] = *p++;
      buf[o] = '\0';
    }
  }
  return buf;
}

char *msgcat_figure(double v, char *buf, size_t len) {
  if (!isfinite(v))
    snprintf(buf, len, "–");
  else if (v == floor(v) && fabs(v) < 1e15)
    snprintf(buf, len, "%.0f", v);
  else
    snprintf(buf, len, "%.1f", v);
  return buf;
}

void msgcat_alarm_key(const msgcat_t *c, const char *rule, char *key, size_t keylen, char *q,
                      size_t qlen) {
  char probe[128];
  snprintf(probe, sizeof(probe), "alarm.%s", rule);
  q[0] = '\0';
  if (lookup(c, "zh", probe)) {
    snprintf(key, keylen, "%s", rule);
    return;
  }
  const char *first = strchr(rule, '.'), *last = strrchr(rule, '.');
  if (first && last != first) {
    snprintf(key, keylen, "%.*s", (int)(last - rule), rule);
    snprintf(q, qlen, "%s", last + 1);
    return;
  }
  static const char *const kinds[] = {"_exceed_day", "_long", "_short"};
  size_t n = strlen(rule);
  if (strncmp(rule, "dust.", 5) == 0) {
    for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
      size_t k = strlen(kinds[i]);
      if (n > 5 + k && strcmp(rule + n - k, kinds[i]) == 0) {
        snprintf(key, keylen, "dust.%s", kinds[i] + 1);
        snprintf(q, qlen, "%.*s", (int)(n - 5 - k), rule + 5);
        return;
      }
    }
  }
  snprintf(key, keylen, "other");
}

char *msgcat_rule_name(const msgcat_t *c, const char *lang, const char *rule, char *buf,
                       size_t len) {
  char key[64], q[32], probe[80];
  msgcat_alarm_key(c, rule, key, sizeof(key), q, sizeof(q));
  if (strcmp(key, "other") == 0) {
    snprintf(buf, len, "%s", rule);
    return buf;
  }
  snprintf(probe, sizeof(probe), "rule.%s", key);
  const char *names[] = {"q"}, *values[] = {msgcat_name(c, lang, "q", q)};
  return msgcat_fill(msgcat_get(c, lang, probe), names, values, 1, buf, len);
}

char *msgcat_alarm_text(const msgcat_t *c, const char *lang, const msgcat_alarm_t *a, double figure,
                        char *buf, size_t len) {
  char key[64], q[32], probe[80], fig[32], lim[32], peak[32];
  msgcat_alarm_key(c, a->rule, key, sizeof(key), q, sizeof(q));
  snprintf(probe, sizeof(probe), "alarm.%s", key);
  const char *names[] = {"source", "rule", "unit", "q", "figure", "limit", "peak"};
  const char *values[] = {a->source,
                          a->rule,
                          a->unit ? a->unit : "",
                          msgcat_name(c, lang, "q", q),
                          msgcat_figure(figure, fig, sizeof(fig)),
                          msgcat_figure(a->limit, lim, sizeof(lim)),
                          msgcat_figure(a->peak, peak, sizeof(peak))};
  return msgcat_fill(msgcat_get(c, lang, probe), names, values, 7, buf, len);
}

/* errno values a storage, outbox, report or file failure can carry (the
 * API's "sys", sitectl's own files); test_msgcat holds each in both
 * languages. */
static const struct {
  int e;
  const char *name;
} errno_names[] = {
    {EIO, "eio"},
    {ENOSPC, "enospc"},
    {ENOMEM, "enomem"},
    {EBUSY, "ebusy"},
    {EAGAIN, "eagain"},
    {EACCES, "eacces"},
    {EPERM, "eperm"},
    {EROFS, "erofs"},
    {ENOENT, "enoent"},
    {EEXIST, "eexist"},
    {EINVAL, "einval"},
    {EBADMSG, "ebadmsg"},
    {EMSGSIZE, "emsgsize"},
    {ECANCELED, "ecanceled"},
    {ESHUTDOWN, "eshutdown"},
    {ETIMEDOUT, "etimedout"},
    {EINTR, "eintr"},
    {EPROTO, "eproto"},
    {ENOTSUP, "enotsup"},
    {EDQUOT, "edquot"},
    {EFBIG, "efbig"},
    {ENAMETOOLONG, "enametoolong"},
    {EISDIR, "eisdir"},
    {ENOTDIR, "enotdir"},
};

const char *msgcat_errno_name(int e) {
  e = e < 0 ? -e : e;
  for (size_t i = 0; i < sizeof(errno_names) / sizeof(errno_names[0]); i++)
    if (errno_names[i].e == e)
      return errno_names[i].name;
  return "other";
}

char *msgcat_errno_text(const msgcat_t *c, const char *lang, int e, char *buf, size_t len) {
  char key[48], num[24];
  snprintf(key, sizeof(key), "sys.%s", msgcat_errno_name(e));
  snprintf(num, sizeof(num), "%d", e < 0 ? -e : e);
  const char *t = msgcat_get(c, lang, key);
  if (t == key || strcmp(t, key) == 0)
    t = msgcat_get(c, lang, "sys.other");
  const char *names[1] = {"1"}, *values[1] = {num};
  return msgcat_fill(t, names, values, 1, buf, len);
}
