/* CSV cells that a spreadsheet would run (OWASP "CSV Injection"): a cell
 * that starts with = + - @, a tab or a carriage return is read as a
 * formula by Excel, LibreOffice and Google Sheets, so ticket text from a
 * scale (`dest_name`, `carrier`, `plate`) could put =HYPERLINK(...) in the
 * site manager's export. Such a cell gets a leading apostrophe, which the
 * spreadsheet shows as text; a cell that is a whole number in C's syntax
 * (a reversal's -17600) is left as it is, since a number is not a formula.
 * Pure functions: every CSV export of the API uses them. */
#include "gateway/api/api.h"

#include <stdlib.h>
#include <string.h>

bool api_csv_needs_guard(const char *s) {
  if (!s || s[0] == '\0' || !strchr("=+-@\t\r", s[0]))
    return false;
  if (s[0] == '-' || s[0] == '+') {
    char *end;
    (void)strtod(s, &end);
    if (end != s && *end == '\0' && strspn(s + 1, "0123456789.eE+-") == strlen(s + 1))
      return false; /* a signed number, not a formula */
  }
  return true;
}
