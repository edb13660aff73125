/* The contract documents against the tables they describe, so that neither
 * can change without the other:
 *   - deploy/CONFIG.md against the option table of common/config.c (read
 *     through sg_config_option()): every option has exactly one row in the
 *     table of its section, with its type, range and default as the table
 *     has them, and no row names an option the table lacks;
 *   - protocol/HTTP.md against the route table of the HTTP API (found by
 *     its `routes[] = {` line under gateway/, wherever the file moves):
 *     every route has a "### METHOD /path" heading, and every such heading
 *     is a route.
 * A failure prints the row or heading to write. `test_docs --print` writes
 * the option rows of every section (meaning left empty) for a new section
 * or a new option: `make config-reference`. Paths are relative to the
 * source tree's top, where `make unit` runs (SITEGATE_SRC overrides). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "common/common.h"

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CONFIG_DOC "deploy/CONFIG.md"
#define HTTP_DOC "protocol/HTTP.md"
#define OPTIONS_MAX 512
#define ROUTES_MAX 128

/* ---- helpers */

/* `rel` under the source tree. */
static void src_path(const char *rel, char *out, size_t cap) {
  const char *top = getenv("SITEGATE_SRC");
  snprintf(out, cap, "%s%s%s", top ? top : "", top ? "/" : "", rel);
}

/* The whole file as a string, or NULL. */
static char *read_file(const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f)
    return NULL;
  char *text = NULL;
  size_t len = 0;
  FILE *m = open_memstream(&text, &len);
  char buf[4096];
  size_t n;
  while (m && (n = fread(buf, 1, sizeof(buf), f)) > 0)
    fwrite(buf, 1, n, m);
  fclose(f);
  if (m)
    fclose(m);
  return text;
}

static char *read_text(const char *rel) {
  char path[1024];
  src_path(rel, path, sizeof(path));
  return read_file(path);
}

/* The next line of *p (without its newline) into `line`; false at the end. */
static bool next_line(const char **p, char *line, size_t cap) {
  if (**p == '\0')
    return false;
  size_t n = strcspn(*p, "\n");
  snprintf(line, cap, "%.*s", (int)(n < cap - 1 ? n : cap - 1), *p);
  *p += n + ((*p)[n] == '\n');
  return true;
}

/* ---- the configuration reference */

/* The first four cells of the reference row of option `o`:
 * "| `key` | type | range | default |". */
static void option_row(const sg_config_option_t *o, char *out, size_t cap) {
  char range[96], def[160];
  if (strcmp(o->type, "string") == 0) {
    snprintf(range, sizeof(range), "up to %zu bytes", o->max_len);
  } else if (strcmp(o->type, "device type") == 0) {
    range[0] = '\0';
    for (int t = SG_DEV_DUST; t <= SG_DEV_GATE; t++)
      snprintf(range + strlen(range), sizeof(range) - strlen(range), "%s%s", t ? ", " : "",
               sg_devtype_name((sg_devtype_t)t));
  } else if (strcmp(o->type, "boolean") == 0) {
    snprintf(range, sizeof(range), "yes, no");
  } else {
    snprintf(range, sizeof(range), "%.15g..%.15g", o->min, o->max);
  }
  if (!o->def)
    snprintf(def, sizeof(def), "required");
  else if (!o->def[0])
    snprintf(def, sizeof(def), "(empty)");
  else
    snprintf(def, sizeof(def), "`%s`", o->def);
  snprintf(out, cap, "| `%s` | %s | %s | %s |", o->key, o->type, range, def);
}

static size_t load_options(sg_config_option_t *opts) {
  size_t n = 0;
  while (n < OPTIONS_MAX && sg_config_option(n, &opts[n]))
    n++;
  return n;
}

/* "## [device ID]" gives "device"; other "## " headings give "". */
static bool section_heading(const char *line, char *section, size_t cap) {
  if (strncmp(line, "## ", 3) != 0)
    return false;
  section[0] = '\0';
  if (line[3] == '[') {
    size_t n = strcspn(line + 4, " ]");
    snprintf(section, cap, "%.*s", (int)(n < cap - 1 ? n : cap - 1), line + 4);
  }
  return true;
}

#define OPTION_TABLE_HEADER "| key | type | range | default | meaning |"

static void config_reference_matches_option_table(void **state) {
  (void)state;
  static sg_config_option_t opts[OPTIONS_MAX];
  static int rows[OPTIONS_MAX];
  size_t n = load_options(opts);
  assert_true(n > 0 && n < OPTIONS_MAX);
  char *text = read_text(CONFIG_DOC);
  if (!text)
    fail_msg("cannot read %s (run from the source tree's top, or set SITEGATE_SRC)", CONFIG_DOC);
  memset(rows, 0, sizeof(rows));
  char line[2048], section[64] = "", want[512];
  int lineno = 0, errors = 0;
  bool in_table = false;
  for (const char *p = text; next_line(&p, line, sizeof(line));) {
    lineno++;
    if (section_heading(line, section, sizeof(section))) {
      in_table = false;
      continue;
    }
    if (strcmp(line, OPTION_TABLE_HEADER) == 0) {
      if (!section[0]) {
        print_error("%s:%d: an option table outside a \"## [section]\" heading\n", CONFIG_DOC,
                    lineno);
        errors++;
      }
      in_table = true;
      continue;
    }
    if (line[0] != '|') {
      in_table = false;
      continue;
    }
    if (!in_table || strncmp(line, "|---", 4) == 0 || !section[0])
      continue;
    /* | `key` | ... */
    char key[64] = "";
    if (sscanf(line, "| `%63[^`]`", key) != 1) {
      print_error("%s:%d: an option row starts with | `key` |\n", CONFIG_DOC, lineno);
      errors++;
      continue;
    }
    size_t i = 0;
    while (i < n && !(strcmp(opts[i].section, section) == 0 && strcmp(opts[i].key, key) == 0))
      i++;
    if (i == n) {
      print_error("%s:%d: [%s] %s is not an option in common/config.c\n", CONFIG_DOC, lineno,
                  section, key);
      errors++;
      continue;
    }
    if (rows[i]) {
      print_error("%s:%d: [%s] %s is listed again (first on line %d)\n", CONFIG_DOC, lineno,
                  section, key, rows[i]);
      errors++;
      continue;
    }
    rows[i] = lineno;
    option_row(&opts[i], want, sizeof(want));
    size_t wl = strlen(want);
    const char *meaning = line + wl;
    if (strncmp(line, want, wl) != 0) {
      print_error("%s:%d: [%s] %s differs from common/config.c; write\n  %s <meaning> |\n",
                  CONFIG_DOC, lineno, section, key, want);
      errors++;
    } else if (strspn(meaning, " |") == strlen(meaning)) {
      print_error("%s:%d: [%s] %s says nothing of what it means\n", CONFIG_DOC, lineno, section,
                  key);
      errors++;
    }
  }
  for (size_t i = 0; i < n; i++) {
    if (rows[i])
      continue;
    option_row(&opts[i], want, sizeof(want));
    print_error("%s: [%s] %s is not documented; add to the table under \"## [%s]\"\n  %s "
                "<meaning> |\n",
                CONFIG_DOC, opts[i].section, opts[i].key, opts[i].section, want);
    errors++;
  }
  free(text);
  assert_int_equal(errors, 0);
}

/* The row format itself, by hand: a changed default or range must change
 * the row (else the check above would pass whatever the document says). */
static void option_row_shows_type_range_and_default(void **state) {
  (void)state;
  char row[256];
  sg_config_option_t port = {"coap", "port", "integer", 1, 65535, 0, "5683"};
  option_row(&port, row, sizeof(row));
  assert_string_equal(row, "| `port` | integer | 1..65535 | `5683` |");
  sg_config_option_t area = {"site", "area_prefab_m2", "number", 0, 1e8, 0, "0"};
  option_row(&area, row, sizeof(row));
  assert_string_equal(row, "| `area_prefab_m2` | number | 0..100000000 | `0` |");
  sg_config_option_t id = {"site", "id", "string", 0, 0, 47, NULL};
  option_row(&id, row, sizeof(row));
  assert_string_equal(row, "| `id` | string | up to 47 bytes | required |");
  sg_config_option_t token = {"http", "token", "string", 0, 0, 127, ""};
  option_row(&token, row, sizeof(row));
  assert_string_equal(row, "| `token` | string | up to 127 bytes | (empty) |");
}

static void option_table_is_readable_row_by_row(void **state) {
  (void)state;
  sg_config_option_t o, untouched = {.key = "untouched"};
  assert_true(sg_config_option(0, &o));
  assert_string_equal(o.section, "site");
  assert_string_equal(o.key, "id");
  assert_null(o.def);
  size_t n = load_options((sg_config_option_t[OPTIONS_MAX]){{0}});
  o = untouched;
  assert_false(sg_config_option(n, &o));
  assert_string_equal(o.key, "untouched");
  bool found = false;
  for (size_t i = 0; sg_config_option(i, &o); i++)
    if (strcmp(o.section, "device") == 0 && strcmp(o.key, "resolution_kg") == 0) {
      found = true;
      assert_string_equal(o.type, "number");
      assert_string_equal(o.def, "20");
    }
  assert_true(found);
}

/* ---- the HTTP API reference */

typedef struct route_row {
  char method[8], path[96];
  bool seen;
} route_row_t;

static char routes_file[1024];

static int find_routes(const char *path, const struct stat *sb, int type, struct FTW *ftw) {
  (void)sb;
  (void)ftw;
  size_t n = strlen(path);
  if (type != FTW_F || n < 2 || strcmp(path + n - 2, ".c") != 0)
    return 0;
  char *text = read_file(path);
  bool has = text && strstr(text, "} routes[] = {");
  free(text);
  if (has)
    snprintf(routes_file, sizeof(routes_file), "%s", path);
  return has; /* nonzero stops the walk */
}

/* The rows of the route table: {"GET", "/api/status", false, false, ...}. */
static size_t load_routes(route_row_t *r) {
  char top[1024];
  src_path("gateway", top, sizeof(top));
  routes_file[0] = '\0';
  nftw(top, find_routes, 16, FTW_PHYS);
  if (!routes_file[0])
    fail_msg("no file under gateway/ holds the HTTP route table (\"} routes[] = {\")");
  char *text = read_file(routes_file);
  assert_non_null(text);
  const char *p = strstr(text, "} routes[] = {");
  const char *end = strstr(p, "\n};");
  assert_non_null(end);
  size_t n = 0;
  char line[512];
  for (; p < end && next_line(&p, line, sizeof(line));) {
    route_row_t *row = &r[n];
    if (n < ROUTES_MAX &&
        sscanf(line, " {\"%7[A-Z]\", \"%95[^\"]\"", row->method, row->path) == 2) {
      row->seen = false;
      n++;
    }
  }
  free(text);
  return n;
}

static void http_reference_names_every_route(void **state) {
  (void)state;
  static route_row_t routes[ROUTES_MAX];
  size_t n = load_routes(routes);
  assert_true(n >= 20); /* the table has not vanished behind a new layout */
  char *text = read_text(HTTP_DOC);
  if (!text)
    fail_msg("cannot read %s", HTTP_DOC);
  char line[1024];
  int lineno = 0, errors = 0;
  for (const char *p = text; next_line(&p, line, sizeof(line));) {
    lineno++;
    char method[8], path[96];
    /* "### GET /api/alarms/ID": a prefix route's row ends at its '/'. */
    if (sscanf(line, "### %7[A-Z] %95s", method, path) != 2 || path[0] != '/')
      continue;
    size_t i = 0;
    for (; i < n; i++) {
      size_t pl = strlen(routes[i].path);
      /* the dashboard's "/" takes every path but the API's, as dispatch() does */
      bool prefix = routes[i].path[pl - 1] == '/' && (pl > 1 || strncmp(path, "/api", 4) != 0);
      if (strcmp(routes[i].method, method) == 0 &&
          (strcmp(routes[i].path, path) == 0 || (prefix && strncmp(routes[i].path, path, pl) == 0)))
        break;
    }
    if (i == n) {
      print_error("%s:%d: %s %s is not a route in %s\n", HTTP_DOC, lineno, method, path,
                  routes_file);
      errors++;
    } else {
      routes[i].seen = true;
    }
  }
  for (size_t i = 0; i < n; i++)
    if (!routes[i].seen) {
      print_error("%s: the route %s %s (%s) has no \"### %s %s...\" heading\n", HTTP_DOC,
                  routes[i].method, routes[i].path, routes_file, routes[i].method, routes[i].path);
      errors++;
    }
  free(text);
  assert_int_equal(errors, 0);
}

/* `--print`: every section's option table, the meaning left to write. */
static void print_reference(void) {
  static sg_config_option_t opts[OPTIONS_MAX];
  size_t n = load_options(opts);
  char row[512];
  for (size_t i = 0; i < n; i++) {
    if (i == 0 || strcmp(opts[i].section, opts[i - 1].section) != 0)
      printf("%s## [%s]\n\n%s\n|---|---|---|---|---|\n", i ? "\n" : "", opts[i].section,
             OPTION_TABLE_HEADER);
    option_row(&opts[i], row, sizeof(row));
    printf("%s  |\n", row);
  }
}

int main(int argc, char **argv) {
  if (argc == 2 && strcmp(argv[1], "--print") == 0) {
    print_reference();
    return 0;
  }
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(option_table_is_readable_row_by_row),
      cmocka_unit_test(option_row_shows_type_range_and_default),
      cmocka_unit_test(config_reference_matches_option_table),
      cmocka_unit_test(http_reference_names_every_route),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
