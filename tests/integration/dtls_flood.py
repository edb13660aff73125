"""A DTLS ClientHello flood (issue 13, item 1): spoofed or abandoned
handshakes. Each ClientHello goes from a new UDP socket, so from a new source
port, and nothing ever answers the server's HelloVerifyRequest: to the
server it is what a spoofed source looks like (the answer goes nowhere).

usage: dtls_flood.py HOST PORT RATE STOPFILE COUNTFILE [cookie]
Sends RATE ClientHellos a second until STOPFILE exists, writing the number
sent so far to COUNTFILE after each one (written whole, then renamed).
With `cookie` each source answers the HelloVerifyRequest with the cookie
(RFC 6347 4.2.1), as a machine on the LAN can, so that the server keeps a
handshake session for it past the cookie, then never goes on."""
import os
import socket
import struct
import sys
import time


def client_hello(cookie=b"", random=None, seq=0):
    body = b"\xfe\xfd" + (random or os.urandom(32))  # DTLS 1.2, client random
    body += b"\x00"  # no session id
    body += bytes([len(cookie)]) + cookie
    suites = [0xC0A8, 0x00AE, 0x008C]  # PSK_AES_128_CCM_8, PSK_AES_128_CBC_SHA256/_SHA
    body += struct.pack("!H", 2 * len(suites)) + b"".join(struct.pack("!H", s) for s in suites)
    body += b"\x01\x00"  # compression: null
    # handshake header: client_hello, length, message_seq 0, offset 0, fragment length
    n = len(body)
    hs = struct.pack("!B", 1) + n.to_bytes(3, "big") + struct.pack("!H", seq) + b"\x00\x00\x00" + n.to_bytes(3, "big")
    hs += body
    # record: handshake, DTLS 1.0 version on the first record, epoch 0, sequence seq
    return struct.pack("!BHH", 22, 0xFEFF, 0) + seq.to_bytes(6, "big") + struct.pack("!H", len(hs)) + hs


def cookie_of(reply):
    """The cookie of a HelloVerifyRequest (record 13 bytes, handshake header
    12, then server_version 2, cookie length 1, cookie), or None."""
    if len(reply) < 28 or reply[0] != 22 or reply[13] != 3:
        return None
    return reply[28 : 28 + reply[27]]


# The flood comes from its own loopback address. A source port it has let go
# is free for the next socket on the machine, and the devices of the tests'
# load tool bind theirs on 127.0.0.1 while the flood runs: a device given a
# port whose half-open handshake the gateway still keeps (a few seconds, as
# long as the flood's newer strangers leave it) had its ClientHello taken
# by that stale session and needed a second handshake.
SOURCE = "127.0.0.2"


def main():
    host, port, rate, stop, countfile = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4], sys.argv[5]
    answer = len(sys.argv) > 6 and sys.argv[6] == "cookie"
    sent = 0
    start = time.monotonic()
    while not os.path.exists(stop):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((SOURCE, 0))
        random = os.urandom(32)
        s.sendto(client_hello(random=random), (host, port))
        if answer:
            s.settimeout(5)
            try:
                cookie = cookie_of(s.recv(2048))
            except socket.timeout:
                cookie = None
            if cookie is not None:
                s.sendto(client_hello(cookie, random, 1), (host, port))
        s.close()
        sent += 1
        with open(countfile + ".tmp", "w") as f:
            f.write(f"{sent}\n")
        os.replace(countfile + ".tmp", countfile)
        # the pace of the flood: time is what this script is about
        delay = start + sent / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)


main()
