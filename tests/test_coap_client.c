/* The CoAP front as a client of equipment controllers (gateway/coap/client.c)
 * when the controller is named by a host name: the request waits for
 * uv_getaddrinfo and then goes, and a front stopped while the name
 * resolves calls nobody and leaves no handle behind. The controller is a
 * bare UDP socket on loopback that answers each CON with a piggybacked
 * ACK (RFC 7252 3: 4-byte header, token, 0xFF, payload). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "gateway/coap/coap.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct fixture {
  uv_loop_t loop;
  gw_t gw;
  sg_config_t *cfg;
  struct coap_front *cf;
  uv_udp_t ctl; /* the controller */
  uv_timer_t deadline;
  int port;
  char uri[64];
  char path[64]; /* Uri-Path of the last request, "/"-joined */
  int requests, states, dones, last_err, last_code;
  coapfront_state_t st;
  bool timed_out;
} fixture_t;

static void on_alloc(uv_handle_t *h, size_t size, uv_buf_t *buf) {
  (void)h;
  static char mem[1500];
  *buf = uv_buf_init(mem, size < sizeof(mem) ? (unsigned)size : sizeof(mem));
}

/* Reads the Uri-Path options of a request (no option above 12 is sent
 * before them, and none is longer than 12 bytes). */
static void read_path(const uint8_t *p, size_t n, char *out, size_t cap) {
  size_t i = 4 + (p[0] & 0x0f), len = 0;
  unsigned num = 0;
  out[0] = '\0';
  while (i < n && p[i] != 0xff) {
    unsigned delta = p[i] >> 4, olen = p[i] & 0x0f;
    i++;
    if (delta == 13)
      delta = 13 + p[i++];
    num += delta;
    if (num == 11 && len + olen + 2 < cap) { /* Uri-Path */
      if (len)
        out[len++] = '/';
      memcpy(out + len, p + i, olen);
      out[len += olen] = '\0';
    }
    i += olen;
  }
}

static void on_sent(uv_udp_send_t *req, int status) {
  (void)status;
  free(req);
}

/* Each request: a piggybacked ACK, 2.05 with a state for GET, 2.04 for PUT. */
static void ctl_on_recv(uv_udp_t *h, ssize_t n, const uv_buf_t *buf, const struct sockaddr *from,
                        unsigned flags) {
  (void)flags;
  fixture_t *f = h->data;
  const uint8_t *p = (const uint8_t *)buf->base;
  if (n < 4 || !from || (p[0] >> 4 & 3) != 0)
    return;
  size_t tkl = p[0] & 0x0f;
  f->requests++;
  read_path(p, (size_t)n, f->path, sizeof(f->path));
  const char *state = "{\"on\":true,\"power_kw\":12.5}";
  bool get = p[1] == 0x01;
  struct {
    uv_udp_send_t req;
    uint8_t pdu[64];
  } *s = malloc(sizeof(*s));
  assert_non_null(s);
  size_t len = 4 + tkl;
  s->pdu[0] = (uint8_t)(0x60 | tkl); /* version 1, ACK */
  s->pdu[1] = get ? 0x45 : 0x44;     /* 2.05, 2.04 */
  memcpy(s->pdu + 2, p + 2, 2 + tkl);
  if (get) {
    s->pdu[len++] = 0xff;
    memcpy(s->pdu + len, state, strlen(state));
    len += strlen(state);
  }
  uv_buf_t out = uv_buf_init((char *)s->pdu, (unsigned)len);
  assert_int_equal(uv_udp_send(&s->req, h, &out, 1, from, on_sent), 0);
}

static void on_state(void *arg, const coapfront_state_t *st, int err) {
  fixture_t *f = arg;
  f->states++;
  f->last_err = err;
  if (st)
    f->st = *st;
}

static void on_done(void *arg, uint64_t tag, int result, int code) {
  fixture_t *f = arg;
  assert_int_equal(tag, 42);
  f->dones++;
  f->last_err = result;
  f->last_code = code;
}

static void on_deadline(uv_timer_t *t) {
  fixture_t *f = t->data;
  f->timed_out = true;
  uv_stop(&f->loop);
}

static int setup(void **state) {
  fixture_t *f = calloc(1, sizeof(*f));
  assert_non_null(f);
  assert_int_equal(uv_loop_init(&f->loop), 0);
  /* The controller, on every loopback address "localhost" may name. */
  struct sockaddr_storage ss;
  assert_int_equal(uv_udp_init(&f->loop, &f->ctl), 0);
  f->ctl.data = f;
  uv_ip6_addr("::", 0, (struct sockaddr_in6 *)&ss);
  if (uv_udp_bind(&f->ctl, (struct sockaddr *)&ss, 0) != 0) {
    uv_ip4_addr("127.0.0.1", 0, (struct sockaddr_in *)&ss);
    assert_int_equal(uv_udp_bind(&f->ctl, (struct sockaddr *)&ss, 0), 0);
  }
  int len = sizeof(ss);
  assert_int_equal(uv_udp_getsockname(&f->ctl, (struct sockaddr *)&ss, &len), 0);
  f->port = ntohs(((struct sockaddr_in *)&ss)->sin_port); /* same place in sin6 */
  assert_int_equal(uv_udp_recv_start(&f->ctl, on_alloc, ctl_on_recv), 0);
  snprintf(f->uri, sizeof(f->uri), "coap://localhost:%d/unit", f->port);
  uv_timer_init(&f->loop, &f->deadline);
  f->deadline.data = f;
  uv_timer_start(&f->deadline, on_deadline, 10000, 0);

  f->cfg = calloc(1, sizeof(*f->cfg));
  assert_non_null(f->cfg);
  snprintf(f->cfg->coap_listen, sizeof(f->cfg->coap_listen), "127.0.0.1");
  f->cfg->coap_port = f->port + 1 > 65535 ? f->port - 1 : f->port + 1; /* UDP: not probed */
  f->cfg->max_body = 1024;
  f->gw.loop = &f->loop;
  f->gw.cfg = f->cfg;
  f->gw.loop_thread = pthread_self();
  if (coapfront_start(&f->gw, &f->cf) != 0) { /* that port was taken: any other */
    f->cfg->coap_port = f->cfg->coap_port > 2000 ? f->cfg->coap_port - 1000 : 40000;
    assert_int_equal(coapfront_start(&f->gw, &f->cf), 0);
  }
  *state = f;
  return 0;
}

/* Stops whatever is still open and checks that nothing was left behind. */
static int teardown(void **state) {
  fixture_t *f = *state;
  coapfront_stop(f->cf);
  uv_close((uv_handle_t *)&f->ctl, NULL);
  uv_close((uv_handle_t *)&f->deadline, NULL);
  assert_int_equal(uv_run(&f->loop, UV_RUN_DEFAULT), 0);
  assert_int_equal(uv_loop_close(&f->loop), 0);
  free(f->cfg);
  free(f);
  return 0;
}

static void run_until(fixture_t *f, const int *counter, int n) {
  while (*counter < n && !f->timed_out)
    uv_run(&f->loop, UV_RUN_ONCE);
  assert_false(f->timed_out);
}

static void observe_by_host_name_goes_once_the_name_resolves(void **state) {
  fixture_t *f = *state;
  assert_int_equal(coapfront_observe(f->cf, f->uri, on_state, f), 0);
  assert_int_equal(f->requests, 0); /* nothing can have gone yet */
  run_until(f, &f->states, 1);
  assert_int_equal(f->last_err, 0);
  assert_true(f->st.on);
  assert_true(fabs(f->st.power_kw - 12.5) < 1e-9);
  assert_int_equal(f->st.demand, -1);
  assert_string_equal(f->path, "unit/state");
}

static void command_by_host_name_waits_for_the_name_then_is_answered(void **state) {
  fixture_t *f = *state;
  assert_int_equal(coapfront_command(f->cf, f->uri, false, "peak-cap", on_done, f, 42), 0);
  assert_int_equal(coapfront_command(f->cf, f->uri, true, "demand", on_done, f, 42), 0);
  run_until(f, &f->dones, 2);
  assert_int_equal(f->last_err, 0);
  assert_int_equal(f->last_code, 204);
  assert_string_equal(f->path, "unit/ctl");
  /* The name is kept: the next command goes at once. */
  int before = f->requests;
  assert_int_equal(coapfront_command(f->cf, f->uri, false, "peak-cap", on_done, f, 42), 0);
  run_until(f, &f->dones, 3);
  assert_int_equal(f->requests, before + 1);
}

static void front_stopped_while_resolving_calls_nobody(void **state) {
  fixture_t *f = *state;
  assert_int_equal(coapfront_observe(f->cf, f->uri, on_state, f), 0);
  assert_int_equal(coapfront_command(f->cf, f->uri, true, "demand", on_done, f, 42), 0);
  coapfront_stop(f->cf);
  f->cf = NULL;
  /* With the test's own handles unreferenced, the loop runs until the
   * front's handles have closed and the lookup, an active request, has
   * returned to on_resolved(). */
  uv_unref((uv_handle_t *)&f->ctl);
  uv_unref((uv_handle_t *)&f->deadline);
  uv_run(&f->loop, UV_RUN_DEFAULT);
  assert_false(f->timed_out);
  assert_int_equal(f->states + f->dones + f->requests, 0);
}

static void uri_that_is_not_coap_is_refused_at_once(void **state) {
  fixture_t *f = *state;
  assert_int_equal(coapfront_observe(f->cf, "coaps://localhost/unit", on_state, f), -EINVAL);
  assert_int_equal(coapfront_command(f->cf, "http://x", true, "", on_done, f, 42), -EINVAL);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(observe_by_host_name_goes_once_the_name_resolves, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(command_by_host_name_waits_for_the_name_then_is_answered,
                                      setup, teardown),
      cmocka_unit_test_setup_teardown(front_stopped_while_resolving_calls_nobody, setup, teardown),
      cmocka_unit_test_setup_teardown(uri_that_is_not_coap_is_refused_at_once, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
