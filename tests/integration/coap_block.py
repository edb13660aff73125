"""A Block1 upload (RFC 7959 2.5) written by hand, for what libcoap's client
will not send: a Size1 that lies, no Size1, blocks out of order.

usage: coap_block.py PORT PATH CF FILE SZX SIZE1|none [skip]
Posts FILE to coap://127.0.0.1:PORT/PATH in blocks of 2**(SZX+4) bytes (CON,
one block at a time), with Size1 = SIZE1 on the first block (or none), and
with "skip" leaves out block 1. Prints the last answer: "2.04 payload"."""
import os
import socket
import struct
import sys


def opt_bytes(n):
    return b"" if n == 0 else n.to_bytes((n.bit_length() + 7) // 8, "big")


def encode_options(opts):
    out, last = b"", 0
    for num, val in sorted(opts, key=lambda o: o[0]):
        delta, length = num - last, len(val)
        last = num

        def nib(x):
            if x < 13:
                return x, b""
            if x < 269:
                return 13, bytes([x - 13])
            return 14, struct.pack("!H", x - 269)

        d, dx = nib(delta)
        l, lx = nib(length)
        out += bytes([(d << 4) | l]) + dx + lx + val
    return out


def request(sock, mid, token, path, cf, block, size1, payload):
    opts = [(11, path.encode()), (12, opt_bytes(cf)), (27, opt_bytes(block))]
    if size1 is not None:
        opts.append((60, opt_bytes(size1)))
    head = struct.pack("!BBH", 0x40 | len(token), 0x02, mid) + token
    sock.send(head + encode_options(opts) + b"\xff" + payload)
    while True:
        data = sock.recv(2048)
        if struct.unpack("!H", data[2:4])[0] != mid:
            continue  # a late answer to an earlier one
        code = data[1]
        pay = data.split(b"\xff", 1)[1] if b"\xff" in data[4 + (data[0] & 15):] else b""
        return f"{code >> 5}.{code & 31:02d}", pay.decode(errors="replace")


def main():
    port, path, cf, fname, szx = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4], int(sys.argv[5])
    size1 = None if sys.argv[6] == "none" else int(sys.argv[6])
    skip = len(sys.argv) > 7 and sys.argv[7] == "skip"
    body = open(fname, "rb").read()
    size = 1 << (szx + 4)
    blocks = [body[i:i + size] for i in range(0, len(body), size)]
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.connect(("127.0.0.1", port))
    sock.settimeout(5)
    token, mid = os.urandom(4), int.from_bytes(os.urandom(2), "big")
    code, pay = "none", ""
    for num, chunk in enumerate(blocks):
        if skip and num == 1:
            continue
        more = 1 if num < len(blocks) - 1 else 0
        mid = (mid + 1) & 0xFFFF
        code, pay = request(sock, mid, token, path, cf, (num << 4) | (more << 3) | szx,
                            size1 if num == 0 else None, chunk)
        if code != "2.31":
            break
    print(code, pay)


main()
