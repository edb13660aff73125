/* The monthly report's renderings and its endpoint:
 *
 *   GET /api/report?month=YYYY-MM                 the report as JSON (report.c)
 *   GET /api/report?month=YYYY-MM&format=html     the printable page
 *   ...&lang=en                                   any of them in English
 *   GET /api/report?month=YYYY-MM&format=csv&table=NAME   one of its tables
 *
 * The page is self-contained (its style inline, no script), so the file
 * `sitectl report --out` saves prints the same anywhere. */
#define LOG_MODULE "http"

#include "common/msgcat.h"
#include "gateway/api/api.h"
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static void esc(FILE *f, const char *s) {
  for (; *s; s++) {
    switch (*s) {
    case '&':
      fputs("&amp;", f);
      break;
    case '<':
      fputs("&lt;", f);
      break;
    case '>':
      fputs("&gt;", f);
      break;
    case '"':
      fputs("&quot;", f);
      break;
    default:
      fputc(*s, f);
    }
  }
}

/* A cell as text: numbers as JSON writes them, null as "" (CSV) or "–". */
static void cell(FILE *f, const json_t *v, bool html) {
  if (json_is_string(v)) {
    if (html)
      esc(f, json_string_value(v));
    else
      fputs(json_string_value(v), f);
  } else if (json_is_integer(v)) {
    fprintf(f, "%lld", (long long)json_integer_value(v));
  } else if (json_is_real(v)) {
    fprintf(f, "%.15g", json_real_value(v));
  } else if (html) {
    fputs("–", f);
  }
}

static const char *const STYLE =
    "body{font-family:\"Noto Sans CJK SC\",\"WenQuanYi Zen Hei\",\"Microsoft YaHei\",sans-serif;"
    "margin:24px auto;max-width:1100px;color:#1d2733;font-size:14px;padding:0 12px}"
    "h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px;border-bottom:2px solid "
    "#17324d;padding-bottom:4px}h3{font-size:14px;margin:16px 0 6px}"
    "table{border-collapse:collapse;width:100%;margin:4px 0 10px;font-size:12.5px}"
    "th,td{border:1px solid #9aa6b2;padding:3px 6px;text-align:left}th{background:#eef2f6}"
    "td.n{text-align:right;font-variant-numeric:tabular-nums}.meta{color:#566}"
    "p.line{margin:4px 0;line-height:1.6}.sign{margin-top:36px;display:flex;gap:80px}"
    "@media print{body{margin:0;max-width:none}h2{break-after:avoid}tr{break-inside:avoid}}";

/* The page's word `key` (the report's "words", from the catalogue). */
static const char *W(const json_t *rep, const char *key) {
  const char *s = json_string_value(json_object_get(json_object_get(rep, "words"), key));
  return s ? s : key;
}

static char *render_html(const json_t *rep, size_t *len) {
  char *out = NULL;
  FILE *f = open_memstream(&out, len);
  if (!f)
    return NULL;
  json_t *site = json_object_get(rep, "site");
  const char *month = json_string_value(json_object_get(rep, "month"));
  bool en = strcmp(json_string_value(json_object_get(rep, "lang")), "en") == 0;
  fprintf(f,
          "<!doctype html>\n<html lang=\"%s\"><head><meta charset=\"utf-8\">"
          "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>",
          en ? "en" : "zh-CN");
  esc(f, json_string_value(json_object_get(site, "name")));
  fprintf(f, " %s ", month);
  esc(f, W(rep, "title"));
  fprintf(f, "</title><style>%s</style></head><body>\n", STYLE);
  fputs("<h1>", f);
  esc(f, json_string_value(json_object_get(site, "name")));
  fprintf(f, " · %s ", month);
  esc(f, W(rep, "title"));
  fputs("</h1>\n<p class=\"meta\">", f);
  esc(f, W(rep, "site_id"));
  fputc(' ', f);
  esc(f, json_string_value(json_object_get(site, "id")));
  char from[32], to[32], gen[32];
  time_t a = (time_t)json_number_value(json_object_get(rep, "since")),
         b = (time_t)json_number_value(json_object_get(rep, "until")),
         g = (time_t)json_number_value(json_object_get(rep, "generated"));
  struct tm tm;
  strftime(from, sizeof(from), "%Y-%m-%d %H:%M", localtime_r(&a, &tm));
  strftime(to, sizeof(to), "%Y-%m-%d %H:%M", localtime_r(&b, &tm));
  strftime(gen, sizeof(gen), "%Y-%m-%d %H:%M", localtime_r(&g, &tm));
  /* "period" and "generated" hold {from} {to} and {at}: filled here. */
  char line[512];
  const char *names[] = {"from", "to", "at"}, *values[] = {from, to, gen};
  fputs(" · ", f);
  esc(f, msgcat_fill(W(rep, "period"), names, values, 2, line, sizeof(line)));
  if (json_is_true(json_object_get(rep, "partial")))
    esc(f, W(rep, "partial"));
  fputs(" · ", f);
  esc(f, msgcat_fill(W(rep, "generated"), names, values, 3, line, sizeof(line)));
  fputs("</p>\n", f);
  size_t i, j, k;
  json_t *p, *t, *row, *v, *c;
  json_array_foreach(json_object_get(rep, "parts"), i, p) {
    const char *pname = json_string_value(json_object_get(p, "name"));
    fputs("<h2>", f);
    esc(f, json_string_value(json_object_get(p, "title")));
    fputs("</h2>\n", f);
    json_array_foreach(json_object_get(p, "lines"), j, v) {
      fputs("<p class=\"line\">", f);
      esc(f, json_string_value(v));
      fputs("</p>\n", f);
    }
    json_array_foreach(json_object_get(rep, "tables"), j, t) {
      if (strcmp(json_string_value(json_object_get(t, "part")), pname) != 0)
        continue;
      json_t *rows = json_object_get(t, "rows");
      fprintf(f, "<h3 id=\"%s\">", json_string_value(json_object_get(t, "name")));
      esc(f, json_string_value(json_object_get(t, "title")));
      fputs("</h3>\n<table><thead><tr>", f);
      json_array_foreach(json_object_get(t, "columns"), k, c) {
        fputs("<th>", f);
        esc(f, json_string_value(json_object_get(c, "title")));
        fputs("</th>", f);
      }
      fputs("</tr></thead><tbody>\n", f);
      json_array_foreach(rows, k, row) {
        fputs("<tr>", f);
        size_t x;
        json_array_foreach(row, x, v) {
          fputs(json_is_number(v) ? "<td class=\"n\">" : "<td>", f);
          cell(f, v, true);
          fputs("</td>", f);
        }
        fputs("</tr>\n", f);
      }
      if (json_array_size(rows) == 0) {
        fprintf(f, "<tr><td colspan=\"%zu\">", json_array_size(json_object_get(t, "columns")));
        esc(f, W(rep, "none"));
        fputs("</td></tr>\n", f);
      }
      fputs("</tbody></table>\n", f);
    }
  }
  fputs("<div class=\"sign\">", f);
  static const char *const signs[] = {"sign_pm", "sign_sup", "sign_date"};
  for (size_t s = 0; s < 3; s++) {
    fputs("<span>", f);
    esc(f, W(rep, signs[s]));
    fputs("</span>", f);
  }
  fputs("</div>\n</body></html>\n", f);
  if (fclose(f) != 0) {
    free(out);
    return NULL;
  }
  return out;
}

static void csv_text(FILE *f, const char *s) {
  bool guard = api_csv_needs_guard(s);
  if (!guard && !strpbrk(s, ",\"\r\n")) {
    fputs(s, f);
    return;
  }
  fputc('"', f);
  if (guard)
    fputc('\'', f); /* OWASP CSV injection: shown as text, never run */
  for (; *s; s++) {
    if (*s == '"')
      fputc('"', f);
    fputc(*s, f);
  }
  fputc('"', f);
}

/* One table as CSV (RFC 4180): a header of the column keys, then rows. */
static char *render_csv(const json_t *t, size_t *len) {
  char *out = NULL;
  FILE *f = open_memstream(&out, len);
  if (!f)
    return NULL;
  size_t i, j;
  json_t *c, *row, *v;
  json_array_foreach(json_object_get(t, "columns"), i, c) {
    if (i)
      fputc(',', f);
    csv_text(f, json_string_value(json_object_get(c, "key")));
  }
  fputs("\r\n", f);
  json_array_foreach(json_object_get(t, "rows"), i, row) {
    json_array_foreach(row, j, v) {
      if (j)
        fputc(',', f);
      if (json_is_string(v))
        csv_text(f, json_string_value(v));
      else
        cell(f, v, false);
    }
    fputs("\r\n", f);
  }
  if (fclose(f) != 0) {
    free(out);
    return NULL;
  }
  return out;
}

void api_report(const http_req_t *req, http_resp_t *resp) {
  const char *month = http_query(req, "month"), *format = http_query(req, "format");
  const char *tname = http_query(req, "table"), *lang = http_query(req, "lang");
  int y, m;
  char tail;
  if (month && *month) {
    if (sscanf(month, "%4d-%2d%c", &y, &m, &tail) != 2 || y < 2000 || y > 2100 || m < 1 || m > 12) {
      http_error(resp, 400, API_ERR_MONTH_ARG, "month is YYYY-MM, like 2026-11");
      return;
    }
  } else {
    time_t now = time(NULL);
    struct tm tm;
    localtime_r(&now, &tm);
    y = tm.tm_year + 1900;
    m = tm.tm_mon + 1;
  }
  if (!format || !*format)
    format = "json";
  bool html = strcmp(format, "html") == 0, csv = strcmp(format, "csv") == 0;
  if (!html && !csv && strcmp(format, "json") != 0) {
    http_error(resp, 400, API_ERR_FORMAT_REPORT, "format is json, html or csv");
    return;
  }
  if (csv && (!tname || !*tname)) {
    http_error(resp, 400, API_ERR_REPORT_TABLE_ARG,
               "format=csv needs table=NAME (the names are in the JSON's tables)");
    return;
  }
  json_t *rep;
  int rc = report_build(req->gw, req->reader, y, m, lang, &rep);
  if (rc == -ERANGE) {
    http_error(resp, 404, API_ERR_MONTH_FUTURE, "%04d-%02d has not begun yet", y, m);
    return;
  }
  if (rc != 0) {
    http_error(resp, 503, API_ERR_REPORT_FAIL, "the report could not be made: %s", strerror(-rc));
    return;
  }
  if (!html && !csv) {
    resp->json = rep;
    return;
  }
  json_t *table = NULL;
  if (csv) {
    size_t i;
    json_t *t;
    json_array_foreach(json_object_get(rep, "tables"), i, t) {
      if (strcmp(json_string_value(json_object_get(t, "name")), tname) == 0)
        table = t;
    }
    if (!table) {
      json_decref(rep);
      http_error(resp, 404, API_ERR_REPORT_NO_TABLE, "the report has no table \"%s\"", tname);
      return;
    }
  }
  size_t len = 0;
  char *text = html ? render_html(rep, &len) : render_csv(table, &len);
  json_decref(rep);
  if (!text) {
    http_error(resp, 503, API_ERR_NO_MEMORY, "out of memory");
    return;
  }
  resp->text = text;
  resp->text_len = len;
  resp->content_type = html ? "text/html; charset=utf-8" : "text/csv; charset=utf-8";
}
