/* The dashboard's static files (GET / and every path outside /api/), on the
 * HTTP threads.
 *
 * The files are plain HTML, CSS and JavaScript modules that `make` copies,
 * with the charting library npm installed, into share/sitegate/web beside
 * bin/ (and `make install` into PREFIX/share/sitegate/web), so the default
 * web root is ../share/sitegate/web relative to the running program: the
 * build's copy for the demo and the tests, the installed one in service.
 * [http] web_root overrides it. They are read from disk on every request
 * (a few small files, a few users): an edited file shows on reload.
 *
 * A request path is mapped to a file only when every segment is made of
 * [A-Za-z0-9._-] and does not begin with a dot, so ".." and hidden files
 * can never be reached, and only regular files are served. */
#define LOG_MODULE "http"

#include "gateway/api/api.h"
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define WEB_PATH_MAX 200
#define WEB_FILE_MAX (8 * 1024 * 1024)

static char default_root[PATH_MAX];
static pthread_once_t default_once = PTHREAD_ONCE_INIT;

static void find_default_root(void) {
  char exe[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
  if (n <= 0)
    return;
  exe[n] = '\0';
  char *slash = strrchr(exe, '/');
  if (!slash)
    return;
  *slash = '\0';
  snprintf(default_root, sizeof(default_root), "%.*s/../share/sitegate/web", PATH_MAX - 32, exe);
}

const char *web_root(const sg_config_t *cfg) {
  if (cfg->http_web_root[0])
    return cfg->http_web_root;
  pthread_once(&default_once, find_default_root);
  return default_root;
}

static const struct {
  const char *ext, *type;
} types[] = {
    {".html", "text/html; charset=utf-8"},
    {".css", "text/css; charset=utf-8"},
    {".js", "text/javascript; charset=utf-8"},
    {".mjs", "text/javascript; charset=utf-8"},
    {".json", "application/json; charset=utf-8"},
    {".svg", "image/svg+xml"},
    {".png", "image/png"},
    {".ico", "image/x-icon"},
    {".txt", "text/plain; charset=utf-8"},
    {".woff2", "font/woff2"},
};

static const char *type_of(const char *path) {
  const char *dot = strrchr(path, '.');
  for (size_t i = 0; dot && i < sizeof(types) / sizeof(types[0]); i++)
    if (strcmp(dot, types[i].ext) == 0)
      return types[i].type;
  return NULL;
}

/* Is `rel` (no leading slash) a path the dashboard may serve? */
static bool safe_path(const char *rel) {
  bool seg_start = true;
  for (const char *p = rel; *p; p++) {
    char c = *p;
    if (c == '/') {
      if (seg_start)
        return false; /* "//" */
      seg_start = true;
      continue;
    }
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '-' || c == '.';
    if (!ok || (seg_start && c == '.'))
      return false;
    seg_start = false;
  }
  return !seg_start;
}

/* GET /PATH: the file PATH under the web root; "/" and ".../" give
 * index.html. */
void api_web_file(const http_req_t *req, http_resp_t *resp) {
  const char *path = req->path;
  if (strncmp(path, "/api/", 5) == 0 || strcmp(path, "/api") == 0) {
    http_error(resp, 404, API_ERR_NO_ENDPOINT, "no such endpoint: %s", path);
    return;
  }
  char rel[WEB_PATH_MAX + 16];
  size_t len = strlen(path);
  if (len > WEB_PATH_MAX) {
    http_error(resp, 404, API_ERR_NO_FILE, "no such file");
    return;
  }
  snprintf(rel, sizeof(rel), "%s%s", path + 1,
           len == 1 || path[len - 1] == '/' ? "index.html" : "");
  const char *type = type_of(rel);
  if (!safe_path(rel) || !type) {
    http_error(resp, 404, API_ERR_NO_FILE_NAMED, "no such file: %s", path);
    return;
  }
  const char *root = web_root(req->gw->cfg);
  char full[PATH_MAX];
  snprintf(full, sizeof(full), "%.*s/%s", PATH_MAX - WEB_PATH_MAX - 32, root, rel);
  int fd = open(full, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  struct stat st;
  if (fd < 0 || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size > WEB_FILE_MAX) {
    int e = errno;
    if (fd >= 0)
      close(fd);
    if (strcmp(rel, "index.html") == 0)
      http_error(resp, 404, API_ERR_NO_DASHBOARD,
                 "the dashboard is not at %s (`make` builds it; [http] web_root says where)", root);
    else
      http_error(resp, 404, API_ERR_NO_FILE_WHY, "no such file: %s%s", path,
                 e == ENOENT ? "" : " (not readable)");
    return;
  }
  size_t n = (size_t)st.st_size, got = 0;
  char *body = malloc(n ? n : 1);
  while (body && got < n) {
    ssize_t r = read(fd, body + got, n - got);
    if (r <= 0)
      break;
    got += (size_t)r;
  }
  close(fd);
  if (!body || got != n) {
    free(body);
    http_error(resp, 503, API_ERR_CANNOT_READ, "cannot read %s", rel);
    return;
  }
  resp->text = body;
  resp->text_len = n;
  resp->content_type = type;
}
