/* sitectl report and sitectl metrics: the monthly site report (GET
 * /api/report) and the gateway's Prometheus metrics (GET /metrics).
 *
 *   sitectl report [--month YYYY-MM]              its sentences and tables
 *   sitectl report --month M --out report.html    the printable page, saved
 *   sitectl report --month M --csv TABLE          one table as CSV
 *   sitectl report --json                         the report's JSON
 *   sitectl metrics [--json]                      the metrics, as text or
 *                                                 [{name, labels, value}] */

#include "gateway/sitectl/sitectl.h"
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct text {
  char *p;
  size_t len;
} text_t;

static int get_text(const ctl_t *ctl, const char *path, text_t *out) {
  return api_get_text(ctl, path, &out->p, &out->len);
}

/* Appends a row of n cells to an aligned table (table_row takes a fixed
 * count of arguments; report tables have their own widths). */
static void table_row_n(table_t *t, const char *const *cells) {
  if (t->nrows == t->cap) {
    t->cap = t->cap ? t->cap * 2 : 64;
    t->cells = realloc(t->cells, t->cap * t->ncols * sizeof(char *));
  }
  for (size_t c = 0; c < t->ncols; c++)
    t->cells[t->nrows * t->ncols + c] = strdup(cells[c] ? cells[c] : "");
  t->nrows++;
}

static void print_table(const json_t *tb) {
  json_t *cols = json_object_get(tb, "columns"), *rows = json_object_get(tb, "rows");
  size_t nc = json_array_size(cols);
  if (nc == 0 || nc > TBL_MAX_COLS)
    return;
  printf("\n%s\n", json_string_value(json_object_get(tb, "title")));
  if (json_array_size(rows) == 0) {
    printf("  (%s)\n", M("rep.page.none"));
    return;
  }
  table_t t = {.ncols = nc};
  const char *cells[TBL_MAX_COLS];
  char buf[TBL_MAX_COLS][48];
  size_t i, j;
  json_t *v, *row;
  json_array_foreach(cols, i, v) cells[i] = json_string_value(json_object_get(v, "title"));
  table_row_n(&t, cells);
  json_array_foreach(rows, i, row) {
    json_array_foreach(row, j, v) {
      if (j >= nc)
        break;
      cells[j] = buf[j];
      buf[j][0] = '\0';
      if (json_is_string(v))
        cells[j] = json_string_value(v);
      else if (json_is_integer(v))
        snprintf(buf[j], sizeof(buf[j]), "%lld", (long long)json_integer_value(v));
      else if (json_is_real(v))
        fmt_num(json_real_value(v), buf[j], sizeof(buf[j]));
      else
        cells[j] = "-";
      t.right[j] = json_is_number(v) || t.right[j];
    }
    table_row_n(&t, cells);
  }
  table_print(&t);
}

int cmd_report(ctl_t *ctl, int argc, char **argv) {
  if (argc > 1 || (argc == 1 && !ctl->csv) || (ctl->csv && argc != 1))
    return EXIT_USAGE;
  char path[256], esc[64] = "";
  if (ctl->month)
    url_escape(ctl->month, esc, sizeof(esc));
  /* The report is made in sitectl's language (its words are the gateway's). */
  snprintf(path, sizeof(path), "/api/report?month=%s&lang=%s", esc, words_lang());
  if (ctl->csv || ctl->out) {
    char tname[96];
    if (ctl->csv) {
      url_escape(argv[0], tname, sizeof(tname));
      snprintf(path + strlen(path), sizeof(path) - strlen(path), "&format=csv&table=%s", tname);
    } else {
      snprintf(path + strlen(path), sizeof(path) - strlen(path), "&format=html");
    }
    text_t body;
    int rc = get_text(ctl, path, &body);
    if (rc)
      return rc;
    FILE *f = ctl->out ? fopen(ctl->out, "w") : stdout;
    if (!f) {
      say(stderr, "ctl.cannot_write", "file", ctl->out, "why", strerror(errno), NULL);
      free(body.p);
      return EXIT_NO;
    }
    fwrite(body.p, 1, body.len, f);
    if (ctl->out) {
      if (fclose(f) != 0) {
        say(stderr, "ctl.cannot_write", "file", ctl->out, "why", strerror(errno), NULL);
        free(body.p);
        return EXIT_NO;
      }
      if (ctl->json)
        printf("{\"out\": \"%s\", \"bytes\": %zu}\n", ctl->out, body.len);
      else {
        char n[24];
        snprintf(n, sizeof(n), "%zu", body.len);
        say(stdout, "ctl.report_saved", "file", ctl->out, "bytes", n, NULL);
      }
    }
    free(body.p);
    return 0;
  }
  json_t *r;
  int rc = fetch_zone(ctl);
  if (rc)
    return rc;
  if ((rc = api_get(ctl, path, &r)) != 0)
    return rc;
  if (json_answer(ctl, r))
    return 0;
  json_t *site = json_object_get(r, "site");
  printf("%s %s · %s（%s）%s\n", json_string_value(json_object_get(r, "month")),
         M("rep.page.title"), json_string_value(json_object_get(site, "name")),
         json_string_value(json_object_get(site, "id")),
         json_is_true(json_object_get(r, "partial")) ? M("rep.page.partial") : "");
  size_t i, j;
  json_t *p, *tb, *v;
  json_array_foreach(json_object_get(r, "parts"), i, p) {
    printf("\n%s\n", json_string_value(json_object_get(p, "title")));
    json_array_foreach(json_object_get(p, "lines"), j, v) printf("  %s\n", json_string_value(v));
    json_array_foreach(json_object_get(r, "tables"), j, tb) {
      if (strcmp(json_string_value(json_object_get(tb, "part")),
                 json_string_value(json_object_get(p, "name"))) == 0)
        print_table(tb);
    }
  }
  printf("\n%s", M("ctl.report_tables"));
  json_array_foreach(json_object_get(r, "tables"), j, tb)
      printf(" %s", json_string_value(json_object_get(tb, "name")));
  printf("\n");
  json_decref(r);
  return 0;
}

/* One exposition line "name{a="x",b="y"} value" as JSON; NULL for others. */
static json_t *metric_json(char *s) {
  if (*s == '#' || *s == '\0')
    return NULL;
  char *brace = strchr(s, '{'), *sp = strrchr(s, ' ');
  if (!sp)
    return NULL;
  *sp = '\0';
  json_t *labels = json_object();
  if (brace) {
    *brace = '\0';
    char *q = brace + 1;
    while (*q && *q != '}') {
      char *eq = strchr(q, '=');
      if (!eq || eq[1] != '"')
        break;
      *eq = '\0';
      char val[256];
      size_t n = 0;
      char *c = eq + 2;
      for (; *c && *c != '"' && n + 1 < sizeof(val); c++) {
        if (*c == '\\' && c[1]) {
          c++;
          val[n++] = *c == 'n' ? '\n' : *c;
        } else {
          val[n++] = *c;
        }
      }
      val[n] = '\0';
      json_object_set_new(labels, q, json_string(val));
      q = *c ? c + 1 : c;
      if (*q == ',')
        q++;
    }
  }
  return json_pack("{s:s,s:o,s:f}", "name", s, "labels", labels, "value", strtod(sp + 1, NULL));
}

int cmd_metrics(ctl_t *ctl, int argc, char **argv) {
  (void)argv;
  if (argc != 0)
    return EXIT_USAGE;
  text_t body;
  int rc = get_text(ctl, "/metrics", &body);
  if (rc)
    return rc;
  if (!ctl->json) {
    fwrite(body.p, 1, body.len, stdout);
    free(body.p);
    return 0;
  }
  json_t *arr = json_array();
  for (char *save = NULL, *ln = strtok_r(body.p, "\n", &save); ln;
       ln = strtok_r(NULL, "\n", &save)) {
    json_t *m = metric_json(ln);
    if (m)
      json_array_append_new(arr, m);
  }
  print_json(arr);
  json_decref(arr);
  free(body.p);
  return 0;
}
