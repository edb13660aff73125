"""A bounded slowloris on loopback (issue 13, item 4): opens COUNT sockets
to 127.0.0.1:PORT from source addresses 127.0.0.2.. (PER_ADDR each), sends
one header byte per second on each for at most SECONDS, and prints JSON:
how many connected, how many the server closed and when (seconds after the
start, the latest), how many it refused at once (more than its per-address
limit), and how many were still open at the end."""
import json, socket, sys, time

port, count, per_addr, seconds = (int(a) for a in sys.argv[1:5])
socks, refused = [], 0
t0 = time.monotonic()
for i in range(count):
    s = socket.socket()
    s.setblocking(True)
    s.settimeout(2)
    try:
        s.bind(("127.0.0.%d" % (2 + i // per_addr), 0))
        s.connect(("127.0.0.1", port))
        s.send(b"G")
        socks.append(s)
    except OSError:
        refused += 1
        s.close()
closed_at = {}
line = b"ET /api/status HTTP/1.1\r\nHost: 127.0.0.1\r\nX-a: " + b"a" * 1000
k = 0
while time.monotonic() - t0 < seconds and len(closed_at) < len(socks):
    for s in socks:
        if s in closed_at:
            continue
        try:
            s.send(line[k:k + 1])
            s.settimeout(0.001)
            try:
                if s.recv(1) == b"":
                    closed_at[s] = time.monotonic() - t0
            except socket.timeout:
                pass
        except OSError:
            closed_at[s] = time.monotonic() - t0
    k = (k + 1) % len(line)
    time.sleep(1)  # time under test: a byte a second is the attack
# a per-address refusal shows as a connection closed at once
early = sum(1 for t in closed_at.values() if t < 2)
print(json.dumps({"connected": len(socks), "refused": refused, "closed": len(closed_at),
                  "closed_early": early, "last_close_s": max(closed_at.values(), default=0),
                  "open_at_end": len(socks) - len(closed_at)}))
for s in socks:
    s.close()
