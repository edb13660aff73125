/* Time arguments as people type them (DESIGN.md "Manager interface"):
 * ISO 8601 in the site's zone unless a zone is given, relative to now, or
 * Unix seconds. Used by sitectl and sitegate-rx. */
#include "common/common.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Parses --since/--until: Unix seconds, relative (-2h, -30m, -45s, -1d, -1w)
 * or ISO 8601 (2026-11-20T21:20[:SS], a date, a space for T; site-local
 * unless it ends in Z or +hh:mm). Returns 0 or -EINVAL. */
int sg_parse_time(const char *s, double now, double *out) {
  char *end;
  if (s[0] == '-' && isdigit((unsigned char)s[1])) {
    double v = strtod(s + 1, &end);
    static const struct {
      char unit;
      double secs;
    } units[] = {{'s', 1}, {'m', 60}, {'h', 3600}, {'d', 86400}, {'w', 604800}};
    for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
      if (end[0] == units[i].unit && end[1] == '\0') {
        *out = now - v * units[i].secs;
        return isfinite(*out) ? 0 : -EINVAL; /* 400 digits are a number too large */
      }
    }
    return -EINVAL;
  }
  bool digits = *s != '\0';
  for (const char *p = s; *p; p++)
    digits = digits && isdigit((unsigned char)*p);
  if (digits && strlen(s) >= 9) {
    *out = strtod(s, NULL);
    return isfinite(*out) ? 0 : -EINVAL;
  }
  struct tm tm;
  memset(&tm, 0, sizeof(tm));
  int y, mo, d, h = 0, mi = 0, sec = 0, n = 0;
  if (sscanf(s, "%4d-%2d-%2d%n", &y, &mo, &d, &n) != 3)
    return -EINVAL;
  const char *p = s + n;
  if (*p == 'T' || *p == ' ') {
    int m = 0;
    if (sscanf(p + 1, "%2d:%2d%n", &h, &mi, &m) != 2)
      return -EINVAL;
    p += 1 + m;
    if (*p == ':') {
      if (sscanf(p + 1, "%2d%n", &sec, &m) != 1)
        return -EINVAL;
      p += 1 + m;
    }
  }
  /* Days of the month, February of leap years (Gregorian) included, so
   * 2026-02-30 is refused rather than read as 2026-03-02 by mktime. */
  static const int mdays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  if (mo < 1 || mo > 12 || h > 23 || mi > 59 || sec > 60)
    return -EINVAL;
  bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
  if (d < 1 || d > mdays[mo - 1] + (mo == 2 && leap))
    return -EINVAL;
  tm.tm_year = y - 1900;
  tm.tm_mon = mo - 1;
  tm.tm_mday = d;
  tm.tm_hour = h;
  tm.tm_min = mi;
  tm.tm_sec = sec;
  if (*p == '\0') {
    tm.tm_isdst = -1;
    *out = (double)mktime(&tm); /* site-local: TZ is the site's zone */
    return 0;
  }
  int off = 0;
  if (*p == 'Z' && p[1] == '\0') {
    off = 0;
  } else if ((*p == '+' || *p == '-') && strlen(p) == 6 && p[3] == ':') {
    int oh = atoi(p + 1), om = atoi(p + 4);
    off = (oh * 3600 + om * 60) * (*p == '-' ? -1 : 1);
  } else {
    return -EINVAL;
  }
  *out = (double)timegm(&tm) - off;
  return 0;
}
