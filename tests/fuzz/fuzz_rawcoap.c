/* libFuzzer harness for the load generator's CoAP client (sensors/rawcoap.c):
 * datagrams from the gateway, or from whatever answers on its port.
 *
 * First the reader alone (sim_raw_parse): an accepted message must have a
 * token of at most 8 bytes and a payload inside the datagram, after the
 * header and token, and not empty (a payload marker with nothing after it
 * is an error, RFC 7252 3); every payload byte is read so that ASan sees
 * the bounds.
 *
 * Then the whole answer path (sim_raw__feed) against a client with
 * requests outstanding, reset for each input with a fixed seed so that a
 * finding repeats: the input is a run of datagrams, each one byte of
 * socket, one of length, then the bytes. Every request ends at most once
 * (a reply or a failure) and only for a token that was outstanding; a
 * reply's payload lies inside its datagram; and the slots the client
 * frees are exactly those that ended (the harness fills the client before
 * and after the datagrams, and counts). The client sends its requests,
 * and its ACKs of separate responses, to a socket of the harness that
 * nobody reads; the * loop never runs, so no retransmission interferes. */
#include "sensors/sensors_int.h"

#include <netinet/in.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#define SOCKS 2
#define SLOTS 8

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static sim_raw_t *client;
static uint64_t next_token = 1;
static uint64_t open_tokens[SLOTS]; /* outstanding; 0 = none */
static const uint8_t *dgram;        /* the datagram being fed */
static size_t dgram_len;

static void forget(uint64_t token) {
  for (int i = 0; i < SLOTS; i++)
    if (open_tokens[i] == token) {
      open_tokens[i] = 0;
      return;
    }
  abort(); /* ended twice, or never posted */
}

static void on_reply(void *user, uint64_t token, const sim_reply_t *r) {
  (void)user;
  forget(token);
  if (r->code < 100 || r->code > 731)
    abort();
  if (r->payload) {
    if (r->len == 0 || r->payload < dgram || r->payload + r->len > dgram + dgram_len)
      abort();
    volatile uint8_t sum = 0;
    for (size_t i = 0; i < r->len; i++)
      sum += r->payload[i];
    (void)sum;
  } else if (r->len != 0) {
    abort();
  }
}

static void on_fail(void *user, uint64_t token, sim_fail_t why) {
  (void)user;
  (void)why;
  forget(token);
}

static const sim_coap_cb_t callbacks = {.on_reply = on_reply, .on_fail = on_fail};

static int sink = -1;
static sim_target_t target;

static void client_ready(void) {
  if (sink < 0) {
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t alen = sizeof(a);
    sink = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (sink < 0 || bind(sink, (struct sockaddr *)&a, sizeof(a)) != 0 ||
        getsockname(sink, (struct sockaddr *)&a, &alen) != 0)
      abort();
    target = (sim_target_t){.port = ntohs(a.sin_port), .host = "127.0.0.1", .addrlen = sizeof(a)};
    memcpy(&target.addr, &a, sizeof(a));
  }
  if (!client) {
    void *users[SOCKS] = {NULL, NULL};
    if (sim_raw_open(uv_default_loop(), &target, SOCKS, SLOTS, 1000, 0, &callbacks, NULL, users,
                     &client) != 0)
      abort();
  }
  sim_raw__reset(client, 1);
  next_token = 1;
  memset(open_tokens, 0, sizeof(open_tokens));
}

/* Posts until the client is full: exactly the slots that are free. */
static void refill(void) {
  int open = 0;
  for (int i = 0; i < SLOTS; i++)
    open += open_tokens[i] != 0;
  int posted = 0;
  static const uint8_t body[] = "[{\"n\":\"pm10\",\"v\":1}]";
  for (;;) {
    uint64_t token = next_token;
    if (sim_raw_post(client, (unsigned)(token % SOCKS), token, "r", 110, body, sizeof(body) - 1) !=
        0)
      break;
    next_token++;
    posted++;
    int i = 0;
    while (i < SLOTS && open_tokens[i])
      i++;
    if (i == SLOTS)
      abort(); /* more accepted than it has slots */
    open_tokens[i] = token;
  }
  if (open + posted != SLOTS)
    abort(); /* a slot lost, or one freed that had not ended */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  sim_raw_msg_t m;
  if (sim_raw_parse(data, size, &m) == 0) {
    if (m.tkl > 8 || size < 4 + m.tkl || m.type > 3 || m.code > 255)
      abort();
    if (m.payload) {
      if (m.len == 0 || m.payload < data + 4 + m.tkl || m.payload + m.len != data + size)
        abort();
    } else if (m.len != 0) {
      abort();
    }
  }

  client_ready();
  refill();
  while (size >= 2) {
    unsigned sock = data[0] % SOCKS;
    size_t n = data[1];
    data += 2;
    size -= 2;
    if (n > size)
      n = size;
    dgram = data;
    dgram_len = n;
    sim_raw__feed(client, sock, data, n);
    data += n;
    size -= n;
  }
  refill();
  return 0;
}
