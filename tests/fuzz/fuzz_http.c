/* libFuzzer harness for the parts of an HTTP request the gateway parses
 * itself (libmicrohttpd parses the request line and the headers):
 *
 *   mode 0: the Host check against DNS rebinding (http_host_ok), input
 *           "HOST\0NAMES". It must be case-insensitive, and a yes for a
 *           name that is neither an address nor localhost means the name
 *           is among NAMES;
 *   mode 1: the dashboard's static-file path check (web.c's safe_path,
 *           compiled in here): a path it lets through has no empty, "."
 *           or ".." segment, no hidden file, and only [A-Za-z0-9._-/];
 *   mode 2: a query's time (sg_parse_time, used by ?since= and ?until=):
 *           accepted means finite;
 *   mode 3: a listen address (sg_parse_listen, [http] listen): accepted
 *           means IPv4 or IPv6 with a port.
 * The first byte picks the mode (modulo 4). */
#include "gateway/api/web.c"

#include <arpa/inet.h>
#include <ctype.h>
#include <math.h>
#include <netinet/in.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char buf[4096], upper[4096];

static void check_host(const char *host, const char *names) {
  bool ok = http_host_ok(host, names);
  size_t i;
  for (i = 0; host[i]; i++)
    upper[i] = (char)toupper((unsigned char)host[i]);
  upper[i] = '\0';
  if (http_host_ok(upper, names) != ok)
    abort(); /* Host names are case-insensitive (RFC 9110 4.2.3) */
  if (!ok || host[0] == '[')
    return;
  char name[256];
  size_t n = strcspn(host, ":");
  if (n == 0 || n >= sizeof(name))
    abort(); /* accepted a Host with no name */
  memcpy(name, host, n);
  name[n] = '\0';
  if (n > 1 && name[n - 1] == '.')
    name[--n] = '\0';
  struct in_addr a4;
  if (inet_pton(AF_INET, name, &a4) == 1 || strcasecmp(name, "localhost") == 0)
    return;
  for (const char *p = names; *p;) { /* then it must be one of the names */
    p += strspn(p, ", \t");
    size_t k = strcspn(p, ", \t");
    if (k == n && strncasecmp(p, name, n) == 0)
      return;
    p += k;
  }
  abort();
}

static void check_path(const char *rel) {
  if (!safe_path(rel))
    return;
  if (!*rel || rel[0] == '/' || strstr(rel, "//") || rel[strlen(rel) - 1] == '/')
    abort();
  for (const char *seg = rel; seg; seg = strchr(seg, '/') ? strchr(seg, '/') + 1 : NULL) {
    if (seg[0] == '.')
      abort(); /* ".", "..", or a hidden file */
  }
  for (const char *p = rel; *p; p++)
    if (!isalnum((unsigned char)*p) && !strchr("._-/", *p))
      abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1 || size >= sizeof(buf))
    return 0;
  memcpy(buf, data + 1, size - 1);
  buf[size - 1] = '\0';
  switch (data[0] % 4) {
  case 0: {
    size_t hl = strlen(buf);
    check_host(buf, hl + 1 < size - 1 ? buf + hl + 1 : "");
    break;
  }
  case 1:
    check_path(buf);
    break;
  case 2: {
    double t = 0;
    if (sg_parse_time(buf, 1796500000.0, &t) == 0 && !isfinite(t))
      abort();
    break;
  }
  case 3: {
    struct sockaddr_storage ss;
    bool loopback = false;
    if (sg_parse_listen(buf, &ss, &loopback) == 0) {
      if (ss.ss_family == AF_INET) {
        if (((struct sockaddr_in *)&ss)->sin_port == 0)
          abort();
      } else if (ss.ss_family == AF_INET6) {
        if (((struct sockaddr_in6 *)&ss)->sin6_port == 0)
          abort();
      } else {
        abort();
      }
    }
    break;
  }
  }
  return 0;
}
