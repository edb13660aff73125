"""Raw CoAP bursts for test_coap_hostile.sh.

usage: coap_burst.py PORT packs N   -> N timeless SenML packs of dust-01 as
         fast as one socket sends them (CON, all in flight at once); prints
         how many were answered 2.04
       coap_burst.py PORT rst N     -> N unsolicited RSTs from one socket"""
import os
import socket
import struct
import sys
import time

port, what, n = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
s.connect(("127.0.0.1", port))
base = int.from_bytes(os.urandom(2), "big")
if what == "rst":
    for i in range(n):
        s.send(struct.pack("!BBH", 0x70, 0, (base + i) & 0xFFFF))  # ver 1, RST, code 0.00
    sys.exit(0)
body = b'[{"bn":"dust-01/","n":"pm10","v":42.5}]'
opts = bytes([0xB1]) + b"r" + bytes([0x11, 110])  # Uri-Path "r", Content-Format 110
for i in range(n):
    mid = (base + i) & 0xFFFF
    s.send(struct.pack("!BBH", 0x42, 0x02, mid) + struct.pack("!H", i) + opts + b"\xff" + body)
answered, ok = set(), 0
s.settimeout(5)
deadline = time.monotonic() + 30
while len(answered) < n and time.monotonic() < deadline:
    try:
        d = s.recv(2048)
    except socket.timeout:
        break
    mid = struct.unpack("!H", d[2:4])[0]
    if mid in answered:
        continue
    answered.add(mid)
    ok += d[1] == 0x44  # 2.04
print(ok, len(answered))
