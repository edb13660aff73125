/* sitectl's waste, material and progress commands: tables and the public
 * disclosure notice over /api/waste/..., /api/materials/... and
 * /api/site/progress.
 *
 * A person's ticket is given as KEY=VALUE words with the field names of
 * POST /w (plus net_t, gross_t, tare_t in tonnes and t as any time
 * argument), so the words on the command line are the ones on the wire.
 * The bill of quantities is read here with the gateway's own CSV reader
 * (protocol/boq.c), so a bad line is named before anything is sent. */

#include "gateway/sitectl/sitectl.h"
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---- formatting */
static const char *num(double v, int decimals, char *buf, size_t cap) {
  if (!isfinite(v)) {
    snprintf(buf, cap, "-");
    return buf;
  }
  /* thousands separated, for a person reading tonnes */
  char raw[64];
  snprintf(raw, sizeof(raw), "%.*f", decimals, fabs(v));
  char *dot = strchr(raw, '.');
  size_t int_len = dot ? (size_t)(dot - raw) : strlen(raw);
  size_t o = 0;
  if (v < 0 && strspn(raw, "0.") != strlen(raw))
    buf[o++] = '-';
  for (size_t i = 0; i < int_len && o + 2 < cap; i++) {
    buf[o++] = raw[i];
    size_t left = int_len - i - 1;
    if (left > 0 && left % 3 == 0)
      buf[o++] = ',';
  }
  snprintf(buf + o, cap - o, "%s", dot ? dot : "");
  return buf;
}

static double jnum(const json_t *o, const char *key) {
  const json_t *v = json_object_get(o, key);
  return json_is_number(v) ? json_number_value(v) : NAN;
}

static const char *pct_to(double share, int digits, char *buf, size_t cap) {
  if (!isfinite(share))
    snprintf(buf, cap, "-");
  else
    snprintf(buf, cap, "%.*f%%", digits, 100.0 * share);
  return buf;
}

/* Shares to one decimal; loss rates, which are a few percent, to two, as
 * the dashboard and the report show them. */
static const char *pct(double share, char *buf, size_t cap) { return pct_to(share, 1, buf, cap); }
static const char *rate(double share, char *buf, size_t cap) { return pct_to(share, 2, buf, cap); }

/* ---- waste summary */
static int waste_summary(ctl_t *ctl) {
  json_t *s;
  int rc = fetch_zone(ctl);
  if (rc)
    return rc;
  if ((rc = api_get(ctl, "/api/waste/summary", &s)) != 0)
    return rc;
  if (json_answer(ctl, s))
    return 0;
  char a[32], b[32], c[32], d[32], e[32], f[32];
  json_t *site = json_object_get(s, "site"), *proj = json_object_get(s, "projection");
  double ac = jnum(s, "area_cast_in_place_m2"), ap = jnum(s, "area_prefab_m2");
  double allowance = jnum(s, "allowance_t"), projected = jnum(s, "projected_t");
  say(stdout, "ctl.ws.site", "id", json_string_value(json_object_get(site, "id")), "name",
      json_string_value(json_object_get(site, "name")), NULL);
  say(stdout, "ctl.ws.area", "cast", num(ac, 0, a, 32), "prefab", num(ap, 0, b, 32), "total",
      num(ac + ap, 0, c, 32), NULL);
  say(stdout, "ctl.ws.allowance", "lc", num(jnum(s, "limit_cast_t_per_10k_m2"), 0, a, 32), "ac",
      num(ac, 0, b, 32), "lp", num(jnum(s, "limit_prefab_t_per_10k_m2"), 0, c, 32), "ap",
      num(ap, 0, d, 32), "t", num(allowance, 1, e, 32), "per",
      num(jnum(s, "limit_t_per_10k_m2"), 1, f, 32), NULL);
  double used = jnum(s, "allowance_used");
  say(stdout, "ctl.ws.discharged", "t", num(jnum(s, "discharged_t"), 1, a, 32), "used",
      pct(used, b, 32), "per", num(jnum(s, "intensity_t_per_10k_m2"), 1, c, 32), "flag",
      used >= jnum(s, "alarm_share")        ? M("ctl.ws.over")
      : used >= jnum(s, "alarm_warn_share") ? M("ctl.ws.warning")
                                            : "",
      NULL);
  const char *method = json_string_value(json_object_get(proj, "method"));
  if (isfinite(projected))
    say(stdout, "ctl.ws.projected", "t", num(projected, 1, a, 32), "progress",
        pct(jnum(proj, "progress"), b, 32), "how",
        M(method && strcmp(method, "recent_rate") == 0 ? "ctl.ws.recent_rate" : "proj_average"),
        "flag", M(projected > allowance && allowance > 0 ? "ctl.ws.over" : "ctl.ws.within"), NULL);
  else
    say(stdout, "ctl.ws.no_projection", NULL);
  say(stdout, "ctl.ws.generated", "t", num(jnum(s, "generated_t"), 1, a, 32), "reused",
      num(jnum(s, "reused_t"), 1, b, 32), "recycled", num(jnum(s, "recycled_t"), 1, c, 32),
      "backfill", num(jnum(s, "backfill_t"), 1, d, 32), "disposed",
      num(jnum(s, "disposed_t"), 1, e, 32), NULL);
  say(stdout, "ctl.ws.utilisation", "rate", pct(jnum(s, "utilisation_rate"), a, 32), "target",
      pct(jnum(s, "utilisation_target"), b, 32), NULL);
  say(stdout, "ctl.ws.not_counted", "t", num(jnum(s, "excluded_t"), 1, a, 32), "spoil",
      num(jnum(s, "spoil_t"), 1, b, 32), "mud", num(jnum(s, "mud_t"), 1, c, 32), "hazardous",
      num(jnum(s, "hazardous_t"), 1, d, 32), NULL);
  printf("\n");

  table_t t = {.ncols = 6};
  for (int i = 1; i < 6; i++)
    t.right[i] = true;
  table_row(&t, M("ctl.col.category_t"), M("reused"), M("recycled"), M("backfill"), M("disposed"),
            M("total"));
  const char *k;
  json_t *v;
  json_object_foreach(json_object_get(s, "by_category"), k, v) {
    char name[48];
    snprintf(name, sizeof(name), "%s%s", MN("cat", k),
             json_is_true(json_object_get(v, "excluded")) ? M("ctl.ws.not_counted_tag") : "");
    table_row(&t, name, num(jnum(v, "reuse_onsite_t"), 1, a, 32),
              num(jnum(v, "recycling_t"), 1, b, 32), num(jnum(v, "backfill_t"), 1, c, 32),
              num(jnum(v, "disposal_t"), 1, d, 32), num(jnum(v, "total_t"), 1, e, 32));
  }
  table_print(&t);
  printf("\n");
  table_t u = {.ncols = 4};
  u.right[1] = u.right[2] = u.right[3] = true;
  table_row(&u, M("ctl.col.kind"), M("ctl.col.generated_t"), M("ctl.col.utilised_t"),
            M("ctl.col.rate"));
  json_object_foreach(json_object_get(s, "by_kind"), k, v) {
    if (jnum(v, "generated_t") == 0)
      continue;
    table_row(&u, MN("kind", k), num(jnum(v, "generated_t"), 1, a, 32),
              num(jnum(v, "utilised_t"), 1, b, 32), pct(jnum(v, "utilisation_rate"), c, 32));
  }
  if (u.nrows > 1) {
    table_print(&u);
  } else {
    table_discard(&u);
    say(stdout, "ctl.ws.none", NULL);
  }
  json_decref(s);
  return 0;
}

/* ---- waste tickets */
/* GETs a text body (the CSV) and writes it to stdout. */
static int get_text(const ctl_t *ctl, const char *path) {
  char *text;
  size_t len;
  int rc = api_get_text(ctl, path, &text, &len);
  if (rc == 0)
    fwrite(text, 1, len, stdout);
  free(text);
  return rc;
}

/* --since/--until as Unix seconds; EXIT_USAGE after a message. */
static int period(const ctl_t *ctl, double def_since, double *since, double *until) {
  double now = sg_now();
  *since = def_since;
  *until = 4102444800.0;
  if (ctl->since && sg_parse_time(ctl->since, now, since) != 0) {
    say(stderr, "ctl.bad_time", "opt", "--since", "arg", ctl->since, NULL);
    return EXIT_USAGE;
  }
  if (ctl->until && sg_parse_time(ctl->until, now, until) != 0) {
    say(stderr, "ctl.bad_time", "opt", "--until", "arg", ctl->until, NULL);
    return EXIT_USAGE;
  }
  return 0;
}

static const char *jstr(const json_t *o, const char *key) {
  const char *s = json_string_value(json_object_get(o, key));
  return s ? s : "";
}

static int waste_tickets(ctl_t *ctl) {
  json_t *r;
  int rc = fetch_zone(ctl);
  if (rc)
    return rc;
  double since, until;
  if ((rc = period(ctl, 0, &since, &until)) != 0)
    return rc;
  char path[256];
  snprintf(path, sizeof(path), "/api/waste/tickets?since=%.0f&until=%.0f&limit=100000%s", since,
           until, ctl->csv ? "&format=csv" : "");
  if (ctl->csv)
    return get_text(ctl, path);
  if ((rc = api_get(ctl, path, &r)) != 0)
    return rc;
  if (json_answer(ctl, r))
    return 0;
  table_t t = {.ncols = 9};
  t.right[0] = t.right[7] = true;
  table_row(&t, M("ctl.col.id"), M("ctl.col.weighed"), M("ctl.col.slip"), M("plate"),
            M("ctl.col.type"), M("ctl.col.what"), M("ctl.col.where"), M("net_t"), M("note"));
  size_t i;
  json_t *e;
  double sum_out = 0, sum_in = 0;
  json_array_foreach(json_object_get(r, "tickets"), i, e) {
    char id[24], when[32], slip[80], what[64], net[32], note[320];
    snprintf(id, sizeof(id), "%lld", (long long)json_integer_value(json_object_get(e, "id")));
    fmt_time(jnum(e, "t"), when, sizeof(when));
    if (json_is_integer(json_object_get(e, "no")))
      snprintf(slip, sizeof(slip), "%s #%lld", jstr(e, "scale"),
               (long long)json_integer_value(json_object_get(e, "no")));
    else
      snprintf(slip, sizeof(slip), "%s", MN("src", jstr(e, "source")));
    const char *type = jstr(e, "type");
    if (strcmp(type, "waste") == 0)
      snprintf(what, sizeof(what), "%s%s%s", MN("cat", jstr(e, "category")),
               *jstr(e, "kind") ? "/" : "", *jstr(e, "kind") ? MN("kind", jstr(e, "kind")) : "");
    else
      snprintf(what, sizeof(what), "%s%s", MN("mat", jstr(e, "material")),
               json_is_true(json_object_get(e, "green_cert")) ? M("ctl.ws.green_tag") : "");
    char where[160];
    snprintf(where, sizeof(where), "%s%s%s", *jstr(e, "dest") ? MN("dest", jstr(e, "dest")) : "",
             *jstr(e, "dest") && *jstr(e, "dest_name") ? " " : "", jstr(e, "dest_name"));
    double net_t = jnum(e, "net_t");
    if (strcmp(type, "delivery") == 0)
      sum_in += net_t;
    else if (strcmp(type, "waste") == 0)
      sum_out += net_t;
    char cid[24];
    if (json_is_true(json_object_get(e, "reversal")))
      MF(note, sizeof(note), "ctl.ws.reverses", "id", fmt_int(e, "corrects", cid, sizeof(cid)),
         "note", jstr(e, "note"), NULL);
    else if (json_is_integer(json_object_get(e, "corrects")))
      MF(note, sizeof(note), "ctl.ws.replaces", "id", fmt_int(e, "corrects", cid, sizeof(cid)),
         "note", jstr(e, "note"), NULL);
    else
      snprintf(note, sizeof(note), "%s", jstr(e, "note"));
    table_row(&t, id, when, slip, jstr(e, "plate"), MN("ttype", type), what, where,
              num(net_t, 3, net, 32), note);
  }
  size_t n = json_array_size(json_object_get(r, "tickets"));
  if (n == 0) {
    table_discard(&t);
    say(stdout, "ctl.ws.no_entries", NULL);
  } else {
    char a[32], b[32];
    table_print(&t);
    char cnt[24];
    snprintf(cnt, sizeof(cnt), "%zu", n);
    say(stdout, "ctl.ws.entries", "n", cnt, "out", num(sum_out, 3, a, 32), "in",
        num(sum_in, 3, b, 32), NULL);
  }
  json_decref(r);
  return 0;
}

/* ---- a person's ticket */
static const char *const text_fields[] = {"scale", "plate",     "dir",     "category", "kind",
                                          "dest",  "dest_name", "carrier", "material"};

/* KEY=VALUE words into a ticket object. Returns 0 or EXIT_USAGE after a
 * message. */
static int parse_fields(int argc, char **argv, json_t *obj) {
  double now = sg_now();
  for (int i = 0; i < argc; i++) {
    char *eq = strchr(argv[i], '=');
    if (!eq || eq == argv[i]) {
      say(stderr, "ctl.ws.not_kv", "arg", argv[i], NULL);
      return EXIT_USAGE;
    }
    char key[32];
    snprintf(key, sizeof(key), "%.*s", (int)(eq - argv[i]), argv[i]);
    const char *val = eq + 1;
    char *end;
    bool done = false;
    for (size_t k = 0; k < sizeof(text_fields) / sizeof(text_fields[0]) && !done; k++)
      if (strcmp(key, text_fields[k]) == 0) {
        json_object_set_new(obj, key, json_string(val));
        done = true;
      }
    if (done)
      continue;
    if (strcmp(key, "no") == 0 || strcmp(key, "gross_kg") == 0 || strcmp(key, "tare_kg") == 0 ||
        strcmp(key, "net_kg") == 0) {
      long long v = strtoll(val, &end, 10);
      if (!*val || *end) {
        say(stderr, "ctl.ws.not_whole", "key", key, "val", val, NULL);
        return EXIT_USAGE;
      }
      json_object_set_new(obj, key, json_integer(v));
    } else if (strcmp(key, "gross_t") == 0 || strcmp(key, "tare_t") == 0 ||
               strcmp(key, "net_t") == 0) {
      double v = strtod(val, &end);
      if (!*val || *end || !isfinite(v)) {
        say(stderr, "ctl.ws.not_tonnes", "key", key, "val", val, NULL);
        return EXIT_USAGE;
      }
      char kg[16];
      snprintf(kg, sizeof(kg), "%.*s_kg", (int)(strlen(key) - 2), key);
      json_object_set_new(obj, kg, json_integer((json_int_t)llround(v * 1000.0)));
    } else if (strcmp(key, "t") == 0) {
      double t;
      if (sg_parse_time(val, now, &t) != 0) {
        say(stderr, "ctl.ws.bad_t", "val", val, NULL);
        return EXIT_USAGE;
      }
      json_object_set_new(obj, "t", json_integer((json_int_t)floor(t)));
    } else if (strcmp(key, "green_cert") == 0) {
      bool yes = strcmp(val, "yes") == 0 || strcmp(val, "true") == 0 || strcmp(val, "1") == 0;
      bool no = strcmp(val, "no") == 0 || strcmp(val, "false") == 0 || strcmp(val, "0") == 0;
      if (!yes && !no) {
        say(stderr, "ctl.ws.green_yes_no", NULL);
        return EXIT_USAGE;
      }
      json_object_set_new(obj, key, json_boolean(yes));
    } else if (strcmp(key, "note") == 0) {
      json_object_set_new(obj, key, json_string(val));
    } else {
      say(stderr, "ctl.ws.unknown_field", "key", key, "fields",
          "scale no t plate dir gross_kg tare_kg net_kg gross_t tare_t net_t category kind dest "
          "dest_name carrier material green_cert note",
          NULL);
      return EXIT_USAGE;
    }
  }
  return 0;
}

static int waste_add(ctl_t *ctl, int argc, char **argv) {
  if (argc == 0) {
    fputs(M("ctl.waste_help"), stderr);
    return EXIT_USAGE;
  }
  json_t *st, *obj = json_object(), *r;
  /* The fields are checked before the gateway is asked (a usage error is
   * one whether it is up or not), then read again in the site's zone. */
  int rc = parse_fields(argc, argv, obj);
  if (rc) {
    json_decref(obj);
    return rc;
  }
  json_object_clear(obj);
  rc = fetch_status(ctl, &st); /* the site's zone, for t=... */
  if (rc) {
    json_decref(obj);
    return rc;
  }
  json_decref(st);
  if (ctl->note)
    json_object_set_new(obj, "note", json_string(ctl->note));
  if ((rc = parse_fields(argc, argv, obj)) == 0 &&
      (rc = api_request(ctl, "POST", "/api/waste/tickets", obj, &r)) == 0) {
    if (ctl->json)
      print_json(r);
    else {
      char id[24], hash[20];
      snprintf(hash, sizeof(hash), "%.16s", jstr(r, "hash"));
      say(stdout,
          strcmp(jstr(r, "status"), "created") == 0 ? "ctl.ws.stored" : "ctl.ws.stored_already",
          "id", fmt_int(r, "id", id, sizeof(id)), "hash", hash, NULL);
    }
    json_decref(r);
  }
  json_decref(obj);
  return rc;
}

static int waste_correct(ctl_t *ctl, int argc, char **argv) {
  char *end = NULL;
  long long id = argc > 0 ? strtoll(argv[0], &end, 10) : 0;
  if (argc == 0 || *end || id < 1) {
    fprintf(stderr, "%s: sitectl waste correct ID --note WHY [KEY=VALUE...]\n", M("ctl.usage"));
    return EXIT_USAGE;
  }
  if (!ctl->note || !*ctl->note) {
    say(stderr, "ctl.ws.correct_note", NULL);
    return EXIT_USAGE;
  }
  json_t *st, *r, *replace = json_object();
  int rc = fetch_status(ctl, &st);
  if (rc) {
    json_decref(replace);
    return rc;
  }
  json_decref(st);
  if ((rc = parse_fields(argc - 1, argv + 1, replace)) != 0) {
    json_decref(replace);
    return rc;
  }
  json_t *body = json_pack("{s:I,s:s}", "corrects", (json_int_t)id, "note", ctl->note);
  if (json_object_size(replace))
    json_object_set(body, "replace", replace);
  json_decref(replace);
  rc = api_request(ctl, "POST", "/api/waste/corrections", body, &r);
  json_decref(body);
  if (rc)
    return rc;
  if (ctl->json) {
    print_json(r);
  } else {
    char a[24], b[24];
    snprintf(a, sizeof(a), "%lld", id);
    if (json_is_integer(json_object_get(r, "replacement")))
      say(stdout, "ctl.ws.corrected_replaced", "id", a, "rev", fmt_int(r, "reversal", b, sizeof(b)),
          "new", fmt_int(r, "replacement", a + 12, sizeof(a) - 12), NULL);
    else
      say(stdout, "ctl.ws.corrected", "id", a, "rev", fmt_int(r, "reversal", b, sizeof(b)), NULL);
  }
  json_decref(r);
  return 0;
}

static int waste_verify(ctl_t *ctl) {
  json_t *r;
  int rc = api_get(ctl, "/api/waste/verify", &r);
  if (rc)
    return rc;
  bool ok = json_is_true(json_object_get(r, "ok"));
  if (ctl->json) {
    print_json(r);
  } else {
    char a[24], b[24];
    if (ok)
      say(stdout, "ctl.ws.intact", "n", fmt_int(r, "entries", a, sizeof(a)), "head",
          jstr(r, "head"), NULL);
    else
      say(stdout, "ctl.ws.broken", "id", fmt_int(r, "bad_id", a, sizeof(a)), "why",
          jstr(r, "reason"), "n", fmt_int(r, "entries", b, sizeof(b)), NULL);
  }
  json_decref(r);
  return ok ? 0 : EXIT_NO;
}

/* ---- the public disclosure (建筑垃圾排放公示) */
static const char *const cat_zh[][2] = {
    {"engineering", "工程垃圾"},       {"demolition", "拆除垃圾"},
    {"decoration", "装修垃圾"},        {"spoil", "工程渣土（不计入限额）"},
    {"mud", "工程泥浆（不计入限额）"},
};

static void date_zh(double t, char *buf, size_t cap) {
  time_t s = (time_t)t;
  struct tm tm;
  localtime_r(&s, &tm);
  snprintf(buf, cap, "%d年%d月%d日", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday);
}

static void names_table(json_t *list, const char *head) {
  table_t t = {.ncols = 3};
  t.right[1] = t.right[2] = true;
  table_row(&t, head, "车次", "吨");
  size_t i;
  json_t *e;
  json_array_foreach(list, i, e) {
    char trips[24], tonnes[32];
    snprintf(trips, sizeof(trips), "%lld",
             (long long)json_integer_value(json_object_get(e, "trips")));
    const char *name = jstr(e, "name");
    table_row(&t, *name ? name : "（未登记）", trips, num(jnum(e, "t"), 1, tonnes, 32));
  }
  if (json_array_size(list) == 0)
    table_row(&t, "（本期无）", "", "");
  table_print(&t);
}

static int waste_disclosure(ctl_t *ctl) {
  json_t *r;
  int rc = fetch_zone(ctl);
  if (rc)
    return rc;
  char path[128];
  if (ctl->month)
    snprintf(path, sizeof(path), "/api/waste/disclosure?month=%.7s", ctl->month);
  else
    snprintf(path, sizeof(path), "/api/waste/disclosure");
  if ((rc = api_get(ctl, path, &r)) != 0)
    return rc;
  if (json_answer(ctl, r))
    return 0;
  json_t *site = json_object_get(r, "site"), *cats = json_object_get(r, "by_category"),
         *to = json_object_get(r, "to_date");
  char d1[48], d2[48], a[32], b[32], c[32], d[32], e[32];
  date_zh(jnum(r, "since"), d1, sizeof(d1));
  date_zh(jnum(r, "until") - 1, d2, sizeof(d2));
  printf("                         建筑垃圾排放公示\n\n");
  printf("工地名称：%s\n", jstr(site, "name"));
  printf("工地编号：%s\n", jstr(site, "id"));
  printf("公示期间：%s至%s\n", d1, d2);
  printf("建筑面积：%s 平方米\n\n", num(jnum(to, "area_m2"), 0, a, 32));
  printf("一、本期建筑垃圾产生量及去向（单位：吨）\n\n");
  table_t t = {.ncols = 6};
  for (int i = 1; i < 6; i++)
    t.right[i] = true;
  table_row(&t, "类别", "现场再利用", "资源化利用", "回填", "处置", "合计");
  for (size_t i = 0; i < sizeof(cat_zh) / sizeof(cat_zh[0]); i++) {
    json_t *v = json_object_get(cats, cat_zh[i][0]);
    table_row(&t, cat_zh[i][1], num(jnum(v, "reuse_onsite_t"), 1, a, 32),
              num(jnum(v, "recycling_t"), 1, b, 32), num(jnum(v, "backfill_t"), 1, c, 32),
              num(jnum(v, "disposal_t"), 1, d, 32), num(jnum(v, "total_t"), 1, e, 32));
  }
  table_print(&t);
  printf("\n本期产生建筑垃圾（不含工程渣土、工程泥浆）%s 吨，其中现场再利用 %s 吨、资源化利用 "
         "%s 吨、回填 %s 吨、处置 %s 吨；\n",
         num(jnum(r, "generated_t"), 1, a, 32), num(jnum(r, "reused_t"), 1, b, 32),
         num(jnum(r, "recycled_t"), 1, c, 32), num(jnum(r, "backfill_t"), 1, d, 32),
         num(jnum(r, "disposed_t"), 1, e, 32));
  printf("本期排放量（运出工地）%s 吨；资源化利用率 %s。\n", num(jnum(r, "discharged_t"), 1, a, 32),
         pct(jnum(r, "utilisation_rate"), b, 32));
  if (jnum(r, "hazardous_t") > 0)
    printf("另有危险废物 %s 吨，按危险废物管理规定处置，不计入建筑垃圾。\n",
           num(jnum(r, "hazardous_t"), 1, a, 32));
  printf("\n二、运输单位\n\n");
  names_table(json_object_get(r, "carriers"), "运输单位");
  printf("\n三、消纳场所\n\n");
  names_table(json_object_get(r, "facilities"), "消纳场所");
  printf("\n四、累计排放情况（截至公示日）\n\n");
  printf("累计排放建筑垃圾 %s 吨，排放强度 %s 吨/万平方米；\n",
         num(jnum(to, "discharged_t"), 1, a, 32),
         num(jnum(to, "intensity_t_per_10k_m2"), 1, b, 32));
  printf("本工地限额 %s 吨/万平方米（合计 %s 吨），已使用 %s；资源化利用率 %s。\n",
         num(jnum(to, "limit_t_per_10k_m2"), 1, a, 32), num(jnum(to, "allowance_t"), 1, b, 32),
         pct(jnum(to, "allowance_used"), c, 32), pct(jnum(to, "utilisation_rate"), d, 32));
  char today[48];
  date_zh(sg_now(), today, sizeof(today));
  printf("\n数据来源：工地地磅称重记录（哈希链存证，可用 sitectl waste verify 核验）。\n");
  printf("\n公示单位（盖章）：____________________    公示日期：%s\n", today);
  printf("监督电话：____________________\n");
  json_decref(r);
  return 0;
}

int cmd_waste(ctl_t *ctl, int argc, char **argv) {
  const char *sub = argc > 0 ? argv[0] : "";
  if (strcmp(sub, "summary") == 0 && argc == 1)
    return waste_summary(ctl);
  if (strcmp(sub, "tickets") == 0 && argc == 1)
    return waste_tickets(ctl);
  if (strcmp(sub, "add") == 0)
    return waste_add(ctl, argc - 1, argv + 1);
  if (strcmp(sub, "correct") == 0)
    return waste_correct(ctl, argc - 1, argv + 1);
  if (strcmp(sub, "verify") == 0 && argc == 1)
    return waste_verify(ctl);
  if (strcmp(sub, "disclosure") == 0 && argc == 1)
    return waste_disclosure(ctl);
  if (strcmp(sub, "help") == 0) {
    fputs(M("ctl.waste_help"), stdout);
    return 0;
  }
  fputs(M("ctl.waste_help"), stderr);
  return EXIT_USAGE;
}

/* ---- materials */
static const char *status_text(const char *s) { return MN("st", s); }

static int materials_summary(ctl_t *ctl) {
  json_t *r;
  int rc = api_get(ctl, "/api/materials/summary", &r);
  if (rc)
    return rc;
  if (json_answer(ctl, r))
    return 0;
  table_t t = {.ncols = 10};
  for (int i = 1; i < 9; i++)
    t.right[i] = true;
  table_row(&t, M("material"), M("ctl.col.delivered_t"), M("ctl.col.returned_t"),
            M("ctl.col.design_t"), M("ctl.col.to_date_t"), M("loss_rate"), M("baseline"),
            M("target"), M("green_share"), M("status"));
  size_t i;
  json_t *m;
  char a[32], b[32], c[32], d[32], e[32], f[32], g[32], h[32];
  json_array_foreach(json_object_get(r, "materials"), i, m) {
    table_row(&t, MN("mat", jstr(m, "material")), num(jnum(m, "delivered_t"), 1, a, 32),
              num(jnum(m, "returned_t"), 1, b, 32), num(jnum(m, "design_t"), 1, c, 32),
              num(jnum(m, "design_to_date_t"), 1, h, 32),
              rate(isfinite(jnum(m, "loss_rate_to_date")) ? jnum(m, "loss_rate_to_date")
                                                          : jnum(m, "loss_rate"),
                   d, 32),
              rate(jnum(m, "baseline_rate"), e, 32), rate(jnum(m, "target_rate"), f, 32),
              pct(jnum(m, "green_share"), g, 32), status_text(jstr(m, "status")));
  }
  if (json_array_size(json_object_get(r, "materials")) == 0) {
    table_discard(&t);
    say(stdout, "ctl.mat.none", NULL);
  } else {
    table_print(&t);
    snprintf(e, sizeof(e), "%.1f", jnum(r, "loss_target_factor"));
    printf("\n");
    say(stdout, "ctl.mat.foot", "delivered", num(jnum(r, "delivered_t"), 1, a, 32), "green",
        num(jnum(r, "green_t"), 1, b, 32), "share", pct(jnum(r, "green_share"), c, 32), "factor", e,
        "progress", pct(jnum(r, "progress"), d, 32), NULL);
  }
  json_decref(r);
  return 0;
}

static int materials_import(ctl_t *ctl, const char *file) {
  FILE *f = fopen(file, "rb");
  if (!f) {
    say(stderr, "ctl.cannot_read", "file", file, "why", strerror(errno), NULL);
    return EXIT_USAGE;
  }
  char *text = NULL;
  size_t len = 0, cap = 0, n;
  char chunk[65536];
  while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0) {
    if (len + n > cap) {
      cap = (len + n) * 2;
      char *p = realloc(text, cap);
      if (!p) {
        free(text);
        fclose(f);
        return EXIT_NO;
      }
      text = p;
    }
    memcpy(text + len, chunk, n);
    len += n;
  }
  fclose(f);
  proto_boq_item_t *items = NULL;
  size_t count = 0;
  char err[4096];
  int prc = proto_boq_parse(text ? text : "", len, &items, &count, err, sizeof(err));
  free(text);
  if (prc != 0) {
    say(stderr, "ctl.mat.bad_boq", "file", file, NULL);
    for (char *line = strtok(err, "\n"); line; line = strtok(NULL, "\n"))
      fprintf(stderr, "  %s: %s\n", file, line);
    free(items);
    return EXIT_NO;
  }
  json_t *arr = json_array(), *r;
  for (size_t i = 0; i < count; i++)
    json_array_append_new(arr, json_pack("{s:s,s:f,s:s}", "material", items[i].material, "net_t",
                                         items[i].net_t, "description", items[i].description));
  free(items);
  json_t *body = json_pack("{s:o}", "items", arr);
  int rc = api_request(ctl, "PUT", "/api/materials/boq", body, &r);
  json_decref(body);
  if (rc)
    return rc;
  if (ctl->json)
    print_json(r);
  else {
    char cnt[24];
    snprintf(cnt, sizeof(cnt), "%zu", count);
    say(stdout, "ctl.mat.imported", "n", cnt, "file", file, NULL);
  }
  json_decref(r);
  return 0;
}

int cmd_materials(ctl_t *ctl, int argc, char **argv) {
  if (argc == 1 && strcmp(argv[0], "summary") == 0)
    return materials_summary(ctl);
  if (argc == 2 && strcmp(argv[0], "import") == 0)
    return materials_import(ctl, argv[1]);
  return EXIT_USAGE;
}

/* ---- construction progress */
int cmd_site(ctl_t *ctl, int argc, char **argv) {
  if (argc < 1 || argc > 2 || strcmp(argv[0], "progress") != 0)
    return EXIT_USAGE;
  json_t *r;
  double v = 0;
  if (argc == 2) { /* checked before the gateway is asked anything */
    char *end;
    v = strtod(argv[1], &end);
    if (*end == '%' && end[1] == '\0') {
      v /= 100.0;
      end++;
    }
    if (end == argv[1] || *end || !(v >= 0 && v <= 1)) {
      say(stderr, "ctl.progress_bad", NULL);
      return EXIT_USAGE;
    }
  }
  int rc = fetch_zone(ctl);
  if (rc)
    return rc;
  if (argc == 2) {
    json_t *body = json_pack("{s:f}", "progress", v);
    rc = api_request(ctl, "PUT", "/api/site/progress", body, &r);
    json_decref(body);
    if (rc)
      return rc;
    if (ctl->json)
      print_json(r);
    else {
      char p[24];
      snprintf(p, sizeof(p), "%.1f%%", 100.0 * jnum(r, "progress"));
      say(stdout, "ctl.progress_set", "p", p, NULL);
    }
    json_decref(r);
    return 0;
  }
  if ((rc = api_get(ctl, "/api/site/progress", &r)) != 0)
    return rc;
  if (ctl->json) {
    print_json(r);
  } else {
    char when[32];
    char p[24];
    snprintf(p, sizeof(p), "%.1f%%", 100.0 * jnum(r, "progress"));
    if (isfinite(jnum(r, "set")))
      say(stdout, "ctl.progress_when", "p", p, "when", fmt_time(jnum(r, "set"), when, sizeof(when)),
          NULL);
    else
      say(stdout, "ctl.progress", "p", p, NULL);
    size_t i;
    json_t *h;
    json_array_foreach(json_object_get(r, "history"), i, h) {
      printf("  %s  %5.1f%%\n", fmt_time(jnum(h, "t"), when, sizeof(when)),
             100.0 * jnum(h, "progress"));
    }
  }
  json_decref(r);
  return 0;
}
