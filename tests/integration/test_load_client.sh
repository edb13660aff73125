#!/bin/bash
# sitesim load speaks plain CoAP without libcoap (sensors/rawcoap.c): against
# a scripted server it must retransmit a lost CON, acknowledge a separate
# CON response after an empty ACK, report a 5.03's diagnostic, and count an
# RST as a failure.
. "$(dirname "$0")/lib.sh"

P=$(free_port udp)
"$PY" - "$P" >"$T/server.log" 2>&1 <<'PY' &
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", int(sys.argv[1]))); s.settimeout(60)
print("ready", flush=True)
n = 0; acked = []
while n < 7:
    d, a = s.recvfrom(2000)
    typ, tkl, mid = (d[0] >> 4) & 3, d[0] & 15, d[2:4]
    tok = d[4:4 + tkl]
    if typ == 2:                      # the client's ACK of our separate response
        acked.append(mid.hex()); continue
    assert d[1] == 2 and tkl == 8, d  # CON POST with an 8-byte token
    n += 1
    if n == 1: continue               # lost: the client must send it again
    if n == 2:                        # empty ACK, then a separate CON 2.04
        s.sendto(bytes([0x60, 0]) + mid, a)
        s.sendto(bytes([0x40 | tkl, 0x44, 0x12, 0x34]) + tok, a)
    elif n == 3:                      # 5.03, Max-Age 7, a diagnostic
        s.sendto(bytes([0x60 | tkl, 0xa3]) + mid + tok + bytes([0xd1, 1, 7, 0xff]) + b"busy here", a)
    elif n == 4:                      # reset
        s.sendto(bytes([0x70, 0]) + mid, a)
    else:
        s.sendto(bytes([0x60 | tkl, 0x44]) + mid + tok, a)
print("acked", " ".join(acked))
PY
SERVER=$!
PIDS="$PIDS $SERVER"
server_ready() { alive "$SERVER" "the scripted server"; grep -qx ready "$T/server.log"; }
diagnose() { cat "$T/server.log"; }
wait_for 30 "the scripted server bound to its port" server_ready
out=$("$BIN/sitesim" load --gateway "coap://127.0.0.1:$P/r" --devices 1 --records 1 --window 1 \
  --ports 1 --requests 6 --ack-timeout 2000 2>&1) || true
echo "$out" | grep -q 'ok=4 errors=2 timeouts=0' || fail "load summary: $out"
echo "$out" | grep -q 'replied 5.03: busy here' || fail "no 5.03 diagnostic: $out"
wait "$SERVER" || fail "server: $(cat "$T/server.log")"
grep -q '^acked 1234$' "$T/server.log" || fail "separate response not acknowledged: $(cat "$T/server.log")"
echo "load client: retransmission, separate response, 5.03 and RST handled"
