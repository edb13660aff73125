"""free_port.py udp|tcp TAKEN-FILE: prints a loopback port a test's server
can bind, below the kernel's ephemeral range, and adds it to TAKEN-FILE
(a test's ports so far, never handed out twice).

Why below that range: libcoap sets SO_REUSEADDR on its UDP sockets, the
gateway's and coap-client's alike, and two such sockets do not conflict.
A port from the ephemeral range (what binding port 0 gives) could later be
given to coap-client as its own source port: its request then goes to
itself, and its own libcoap answers "4.04 Not Found" (the rare 4.04 seen in
test_uplink.sh). The kernel never gives out a source port outside
/proc/sys/net/ipv4/ip_local_port_range."""
import random
import socket
import sys

kind = socket.SOCK_DGRAM if sys.argv[1] == "udp" else socket.SOCK_STREAM
taken_file = sys.argv[2]
try:
    with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
        low = int(f.read().split()[0])
except (OSError, ValueError, IndexError):
    low = 32768
try:
    with open(taken_file) as f:
        taken = {int(x) for x in f.read().split()}
except FileNotFoundError:
    taken = set()
ports = range(10000, low) if low > 11000 else None  # else: the kernel's choice
for _ in range(1000):
    port = random.choice(ports) if ports else 0
    if port in taken:
        continue
    s = socket.socket(socket.AF_INET, kind)
    try:
        s.bind(("127.0.0.1", port))
    except OSError:
        continue
    finally:
        port = s.getsockname()[1] if port == 0 else port
        s.close()
    with open(taken_file, "a") as f:
        f.write(f"{port}\n")
    print(port)
    sys.exit(0)
sys.exit("free_port.py: no free port below the ephemeral range")
