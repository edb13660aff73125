"""Idle TCP against sitegate-rx (issue 13, item 2): connections that never
finish a TLS handshake, from many loopback addresses, each reopened as soon
as the receiver closes it, so the crowd stays as large as it can.

usage: tcp_strangers.py PORT STOPFILE STATSFILE ADDRS PER_ADDR HOG
ADDRS addresses 127.0.1.1, 127.0.1.2, ... each keep PER_ADDR sockets open,
and 127.0.0.2 keeps HOG (more than the receiver allows from one address).
Each socket sends one byte of a TLS record header, so that the receiver
takes it for a handshake begun and gives it a TLS session (the memory a
crowd costs). STATSFILE gets "opened closed_by_server" after each round."""
import errno
import os
import selectors
import socket
import sys


def main():
    port = int(sys.argv[1])
    stop, stats = sys.argv[2], sys.argv[3]
    addrs, per_addr, hog = int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
    want = [(f"127.0.{1 + i // 250}.{1 + i % 250}", per_addr) for i in range(addrs)]
    want.append(("127.0.0.2", hog))
    sel = selectors.DefaultSelector()
    held = {a: 0 for a, _ in want}
    opened = closed = 0

    def open_one(addr):
        nonlocal opened
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        s.bind((addr, 0))
        try:
            s.connect(("127.0.0.1", port))
        except BlockingIOError:
            pass
        sel.register(s, selectors.EVENT_READ | selectors.EVENT_WRITE, addr)
        held[addr] += 1
        opened += 1

    while not os.path.exists(stop):
        for addr, n in want:
            while held[addr] < n:
                open_one(addr)
        for key, ev in sel.select(timeout=0.2):
            s, addr = key.fileobj, key.data
            if ev & selectors.EVENT_WRITE:
                try:
                    s.send(b"\x16")
                except OSError:
                    pass
                sel.modify(s, selectors.EVENT_READ, addr)
                continue
            try:
                data = s.recv(4096)
            except OSError as e:
                data = b"" if e.errno != errno.EAGAIN else None
            if data == b"":
                sel.unregister(s)
                s.close()
                held[addr] -= 1
                closed += 1
        with open(stats + ".tmp", "w") as f:
            f.write(f"{opened} {closed}\n")
        os.replace(stats + ".tmp", stats)
    for key in list(sel.get_map().values()):
        key.fileobj.close()


main()
