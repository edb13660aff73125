/* coap_bare: the ceiling for ingest benchmarks. A libcoap server on the same
 * libuv integration as sitegated (one uv_poll_t on libcoap's epoll fd,
 * coap_io_process(NO_WAIT), the loop thread alone on the first allowed CPU
 * as sitegated places it), answering POST /r with 2.04 and doing nothing
 * else. Usage: coap_bare PORT; stops on SIGINT/SIGTERM. */
#include <coap3/coap.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <uv.h>

static coap_context_t *ctx;

static void on_post(coap_resource_t *r, coap_session_t *s, const coap_pdu_t *req,
                    const coap_string_t *q, coap_pdu_t *resp) {
  (void)r;
  (void)s;
  (void)req;
  (void)q;
  coap_pdu_set_code(resp, COAP_RESPONSE_CODE_CHANGED);
}

static void on_poll(uv_poll_t *h, int status, int events) {
  (void)h;
  (void)status;
  (void)events;
  coap_io_process(ctx, COAP_IO_NO_WAIT);
}

static void on_signal(uv_signal_t *s, int signum) {
  (void)signum;
  uv_stop(s->loop);
}

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: coap_bare PORT\n");
    return 2;
  }
  cpu_set_t all, first;
  if (sched_getaffinity(0, sizeof(all), &all) == 0 && CPU_COUNT(&all) >= 2) {
    int c = 0;
    while (!CPU_ISSET(c, &all))
      c++;
    CPU_ZERO(&first);
    CPU_SET(c, &first);
    sched_setaffinity(0, sizeof(first), &first);
  }
  coap_startup();
  coap_set_log_level(LOG_ERR);
  ctx = coap_new_context(NULL);
  coap_context_set_max_idle_sessions(ctx, 100); /* as sitegated */
  coap_address_t addr;
  coap_address_init(&addr);
  addr.addr.sin.sin_family = AF_INET;
  addr.addr.sin.sin_port = htons((uint16_t)atoi(argv[1]));
  addr.addr.sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.size = sizeof(addr.addr.sin);
  if (!coap_new_endpoint(ctx, &addr, COAP_PROTO_UDP)) {
    fprintf(stderr, "coap_bare: cannot listen on port %s\n", argv[1]);
    return 1;
  }
  coap_resource_t *r = coap_resource_init(coap_make_str_const("r"), 0);
  coap_register_handler(r, COAP_REQUEST_POST, on_post);
  coap_add_resource(ctx, r);

  uv_loop_t *loop = uv_default_loop();
  uv_poll_t poll;
  uv_signal_t sig_int, sig_term;
  uv_poll_init(loop, &poll, coap_context_get_coap_fd(ctx));
  uv_poll_start(&poll, UV_READABLE, on_poll);
  uv_signal_init(loop, &sig_int);
  uv_signal_init(loop, &sig_term);
  uv_signal_start(&sig_int, on_signal, SIGINT);
  uv_signal_start(&sig_term, on_signal, SIGTERM);
  coap_io_process(ctx, COAP_IO_NO_WAIT);
  uv_run(loop, UV_RUN_DEFAULT);
  uv_close((uv_handle_t *)&poll, NULL);
  uv_close((uv_handle_t *)&sig_int, NULL);
  uv_close((uv_handle_t *)&sig_term, NULL);
  uv_run(loop, UV_RUN_DEFAULT);
  coap_free_context(ctx);
  coap_cleanup();
  return uv_loop_close(loop) == 0 ? 0 : 1;
}
