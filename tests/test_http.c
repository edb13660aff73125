/* The HTTP API's rules on who may ask (gateway/api/http.c): the Host check
 * against DNS rebinding, and reads off loopback needing the token. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "gateway/api/api.h"

#include <arpa/inet.h>
#include <string.h>

static void host_check_takes_addresses_localhost_and_configured_names(void **state) {
  (void)state;
  static const char *const ok[] = {"127.0.0.1:8080", "127.0.0.1",        "192.168.1.20:8080",
                                   "[::1]:8080",     "localhost",        "LOCALHOST:8080",
                                   "localhost.:80",  "gw.site.lan:8080", "GW.SITE.LAN"};
  for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++)
    if (!http_host_ok(ok[i], "other.lan, gw.site.lan"))
      fail_msg("refused: %s", ok[i]);
}

static void host_check_refuses_a_rebound_name(void **state) {
  (void)state;
  static const char *const bad[] = {
      "evil.example", "evil.example:8080", "gw.site.lan.evil", "localhost.evil.io", "",
      ":8080",        "[evil]:80",         "127.0.0.1.nip.io", "site.lan"};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
    if (http_host_ok(bad[i], "gw.site.lan"))
      fail_msg("accepted: %s", bad[i]);
  assert_false(http_host_ok("gw.site.lan", ""));
}

static void reads_off_loopback_need_the_token(void **state) {
  (void)state;
  struct sockaddr_in lo = {.sin_family = AF_INET}, lan = {.sin_family = AF_INET};
  inet_pton(AF_INET, "127.0.0.2", &lo.sin_addr);
  inet_pton(AF_INET, "192.168.1.7", &lan.sin_addr);
  struct sockaddr_in6 lo6 = {.sin6_family = AF_INET6}, mapped = {.sin6_family = AF_INET6},
                      lan6 = {.sin6_family = AF_INET6};
  inet_pton(AF_INET6, "::1", &lo6.sin6_addr);
  inet_pton(AF_INET6, "::ffff:127.0.0.1", &mapped.sin6_addr);
  inet_pton(AF_INET6, "fe80::1", &lan6.sin6_addr);
  assert_false(http_needs_token(false, false, &lo));
  assert_false(http_needs_token(false, false, &lo6));
  assert_false(http_needs_token(false, false, &mapped));
  assert_true(http_needs_token(false, false, &lan));
  assert_true(http_needs_token(false, false, &lan6));
  assert_true(http_needs_token(false, false, NULL));
  assert_false(http_needs_token(false, true, &lan)); /* the dashboard's files */
  /* which routes those are: the files and the site-office screen, no other read */
  assert_true(http_route_public("GET", "/app.js"));
  assert_true(http_route_public("GET", "/api/screen"));
  assert_true(http_route_public("HEAD", "/api/screen"));
  assert_false(http_route_public("GET", "/api/status"));
  assert_false(http_route_public("GET", "/api/alarms"));
  assert_false(http_route_public("GET", "/api/report"));
  assert_false(http_route_public("POST", "/api/screen"));
  assert_false(http_route_public("GET", "/api/nosuch"));
  assert_true(http_needs_token(true, false, &lo)); /* an action, anywhere */
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(host_check_takes_addresses_localhost_and_configured_names),
      cmocka_unit_test(host_check_refuses_a_rebound_name),
      cmocka_unit_test(reads_off_loopback_need_the_token),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
