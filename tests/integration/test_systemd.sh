# The real thing under a real systemd (../shared/tools/in-systemd: a
# throwaway systemd on a memory overlay of this machine): make install into
# the overlay, systemctl start, the service answers sitectl, readings posted
# over CoAP are stored and survive systemctl restart, a SIGSTOPped daemon is
# restarted by the watchdog, a broken config fails the start with file:line
# in the journal and is not retried, and the unit's exposure is at most 2.0.
# The receiver's unit too: sitegate-rx is ready (Type=notify) only once it
# listens with its database open, stores what the gateway's uplink sends
# it, is restarted by its watchdog when stopped, and its exposure is at most
# 2.0.
#
# Run as a test, it starts itself again inside in-systemd (with
# SITEGATE_IN_SYSTEMD=1); everything it does there is thrown away with the
# overlay. Needs root.
source "$(dirname "$0")/lib.sh"
REPO=$(cd "$HERE/../.." && pwd)

[ -n "${SITEGATE_IN_SYSTEMD:-}" ] || in_systemd "$HERE/test_systemd.sh"

# ---- inside the throwaway systemd
CONF=/etc/sitegate/sitegate.conf
diagnose() {
  systemctl status sitegated --no-pager -n 0 || true
  echo "--- journal of sitegated (last 25 lines)"
  journalctl -u sitegated --no-pager -n 25 -o short-monotonic || true
}
main_pid() { systemctl show -p MainPID --value sitegated; }
state() { systemctl show -p ActiveState --value sitegated; }
active() { [ "$(state)" = active ]; }
answers() { "$BIN/sitectl" status >/dev/null 2>&1; }

# make install into the overlay: programs, units, sysusers.d, documents;
# DESTDIR=/ is the live (overlay) system, so it creates the sitegate user.
make -s -C "$REPO" install-files BIN="$BIN" DESTDIR=/ PREFIX=/usr/local >"$T/install.log" 2>&1 ||
  fail "make install: $(tail -5 "$T/install.log")"
id sitegate >/dev/null 2>&1 || fail "make install did not create the sitegate user"
[ "$(stat -c %a:%U:%G $CONF)" = 640:root:sitegate ] || fail "$CONF is $(stat -c %a:%U:%G $CONF)"

# The receiver's certificates (deploy/pki), where its unit reads them, and
# the gateway's, readable by the sitegate user only.
MN=TEST-SITE-01
RX_PORT=$(free_port tcp)
"$REPO/deploy/pki/make-ca.sh" "$T/pki" >/dev/null
"$REPO/deploy/pki/make-server.sh" "$T/pki" localhost >/dev/null
"$REPO/deploy/pki/make-gateway.sh" "$T/pki" "$MN" >/dev/null
install -d -m 750 -g sitegate-rx /etc/sitegate-rx
install -m 640 -g sitegate-rx "$T/pki/ca.crt" "$T/pki/server.crt" "$T/pki/server.key" /etc/sitegate-rx/
install -m 640 -g sitegate "$T/pki/ca.crt" "$T/pki/gateway-$MN.crt" "$T/pki/gateway-$MN.key" /etc/sitegate/

# The test's site, with its ports, in the installed config's place and mode,
# uploading to the receiver.
printf '[uplink]\nhost = 127.0.0.1\nport = %s\nserver_name = localhost\nca = %s\ncert = %s\nkey = %s\nrtd_interval_s = 1\nbackoff_max_s = 2\n' \
  "$RX_PORT" /etc/sitegate/ca.crt "/etc/sitegate/gateway-$MN.crt" "/etc/sitegate/gateway-$MN.key" |
  DB=/var/lib/sitegate/sitegate.db write_conf "$CONF"
# The real unit; only the watchdog is shortened, to keep the test short.
# Under make asan, LeakSanitizer cannot run in the unit's sandbox (it needs
# ptrace-like access the system-call filter denies) and would turn every
# exit into 1: leaks are the other tests' to find.
mkdir -p /etc/systemd/system/sitegated.service.d
printf '[Service]\nWatchdogSec=6s\nEnvironment=ASAN_OPTIONS=detect_leaks=0\n' \
  >/etc/systemd/system/sitegated.service.d/test.conf
systemctl daemon-reload

exposure=$(systemd-analyze security sitegated 2>/dev/null | sed -n 's/.*Overall exposure level for sitegated.service: \([0-9.]*\).*/\1/p')
echo "systemd-analyze security sitegated: exposure $exposure"
"$PY" -c "import sys; sys.exit(0 if float(sys.argv[1]) <= 2.0 else 1)" "${exposure:-99}" ||
  fail "exposure $exposure is above 2.0"

# Type=notify: start returns once storage is open and CoAP and HTTP listen.
timeout 150 systemctl start sitegated || fail "systemctl start sitegated failed"
active || fail "sitegated is $(state) after start"
answers || fail "sitectl status does not answer right after start (READY=1 too early?)"
journalctl -u sitegated --no-pager -o cat | grep -q "systemd watchdog: a ping every 3000 ms" ||
  fail "the daemon did not start the watchdog pings"

# Readings posted over CoAP are stored.
N=20
now=$(now_s)
for i in $(seq 1 $N); do
  r=$(coap post /r 110 "[{\"bn\":\"dust-01/\",\"t\":$((now - 200 + i)),\"n\":\"pm10\",\"v\":$i}]")
  expect_code 2.04 "$r" "reading $i"
done
wait_for 30 "the readings committed (storage queue empty)" committed
stored() {
  "$BIN/sitectl" readings dust-01 pm10 --since -1h --json | json 'len(j["points"])'
}
[ "$(stored)" = $N ] || fail "stored $(stored) of $N readings"

# systemctl restart loses none of them.
pid=$(main_pid)
timeout 150 systemctl restart sitegated || fail "systemctl restart sitegated failed"
[ "$(main_pid)" != "$pid" ] || fail "restart kept PID $pid"
answers || fail "sitectl status does not answer after restart"
[ "$(stored)" = $N ] || fail "after restart: $(stored) of $N readings"

# A hung loop (SIGSTOP) stops the WATCHDOG=1 pings: systemd kills and
# restarts the daemon (WatchdogSec 6 s, TimeoutAbortSec 10 s, RestartSec 10 s).
pid=$(main_pid)
restarts=$(systemctl show -p NRestarts --value sitegated)
kill -STOP "$pid"
restarted() { p=$(main_pid); [ "$p" != 0 ] && [ "$p" != "$pid" ] && active && answers; }
wait_for 90 "the watchdog restarting the stopped daemon (PID $pid)" restarted
# NRestarts counts systemd's own restarts only, and a stopped process cannot
# exit by itself: the watchdog did it. (systemd's "Watchdog timeout" line
# goes to in-systemd's console, not to the journal.)
[ "$(systemctl show -p NRestarts --value sitegated)" -gt "$restarts" ] ||
  fail "restarted, but not by systemd (NRestarts did not grow)"
! kill -0 "$pid" 2>/dev/null || fail "the stopped daemon (PID $pid) is still there"
[ "$(stored)" = $N ] || fail "after the watchdog restart: $(stored) of $N readings"

# A second daemon on the same database is refused, naming the service's PID.
rc=0
out=$(setpriv --reuid=sitegate --regid=sitegate --init-groups "$BIN/sitegated" -c "$CONF" 2>&1) || rc=$?
[ $rc -ne 0 ] && echo "$out" | grep -q "in use by process $(main_pid)" ||
  fail "a second sitegated on the live database: rc=$rc $out"

# ---- the receiver's unit, to the same standard
rx_diag() {
  systemctl status sitegate-rx --no-pager -n 0 || true
  echo "--- journal of sitegate-rx (last 25 lines)"
  journalctl -u sitegate-rx --no-pager -n 25 -o short-monotonic || true
}
diagnose() { rx_diag; }
RXDB=/var/lib/sitegate-rx/rx.db
rx_pid() { systemctl show -p MainPID --value sitegate-rx; }
rx_active() { [ "$(systemctl show -p ActiveState --value sitegate-rx)" = active ]; }
rx_listens() { ss -Hltn "sport = :$RX_PORT" | grep -q LISTEN; }
mkdir -p /etc/systemd/system/sitegate-rx.service.d
printf '[Service]\nEnvironment=RX_LISTEN=127.0.0.1:%s\nWatchdogSec=6s\nEnvironment=ASAN_OPTIONS=detect_leaks=0\n' \
  "$RX_PORT" >/etc/systemd/system/sitegate-rx.service.d/test.conf
systemctl daemon-reload
exposure=$(systemd-analyze security sitegate-rx 2>/dev/null | sed -n 's/.*Overall exposure level for sitegate-rx.service: \([0-9.]*\).*/\1/p')
echo "systemd-analyze security sitegate-rx: exposure $exposure"
"$PY" -c "import sys; sys.exit(0 if float(sys.argv[1]) <= 2.0 else 1)" "${exposure:-99}" ||
  fail "sitegate-rx's exposure $exposure is above 2.0"
[ "$(systemctl show -p Type --value sitegate-rx)" = notify ] || fail "sitegate-rx's unit is not Type=notify"

# Type=notify: start returns once the database is open and the port listens,
# not before (checked at once, without waiting).
timeout 150 systemctl start sitegate-rx || fail "systemctl start sitegate-rx failed"
rx_active || fail "sitegate-rx is $(systemctl show -p ActiveState --value sitegate-rx) after start"
rx_listens || fail "sitegate-rx was ready before it listened on $RX_PORT (READY=1 too early)"
[ -s "$RXDB" ] || fail "sitegate-rx was ready before its database $RXDB was made"
systemctl show -p StatusText --value sitegate-rx | grep -q "listening on 127.0.0.1:$RX_PORT, database SQLite" ||
  fail "sitegate-rx's status: $(systemctl show -p StatusText --value sitegate-rx)"
journalctl -u sitegate-rx --no-pager -o cat | grep -q "systemd watchdog: a ping every 3000 ms" ||
  fail "sitegate-rx did not start the watchdog pings"

# What the gateway uploads arrives and is stored (the receiver's acks are
# only sent after commit).
rx_frames() {
  "$BIN/sitegate-rx" sites --db "$RXDB" --json 2>/dev/null | grep "\"$MN\"" | json 'j["frames"]' 2>/dev/null
}
rx_got() { f=$(rx_frames); [ "${f:-0}" -ge "$1" ]; }
wait_for 60 "the gateway's frames stored by sitegate-rx" rx_got 1

# A hung loop (SIGSTOP): the watchdog restarts the receiver, which then
# stores the frames that follow.
pid=$(rx_pid)
restarts=$(systemctl show -p NRestarts --value sitegate-rx)
kill -STOP "$pid"
rx_restarted() { p=$(rx_pid); [ "$p" != 0 ] && [ "$p" != "$pid" ] && rx_active && rx_listens; }
wait_for 90 "the watchdog restarting the stopped sitegate-rx (PID $pid)" rx_restarted
[ "$(systemctl show -p NRestarts --value sitegate-rx)" -gt "$restarts" ] ||
  fail "sitegate-rx restarted, but not by systemd (NRestarts did not grow)"
! kill -0 "$pid" 2>/dev/null || fail "the stopped sitegate-rx (PID $pid) is still there"
before=$(rx_frames)
wait_for 60 "frames stored after the receiver's restart (had $before)" rx_got $((before + 1))

# systemctl stop: SIGTERM, a clean exit (0: every handle closed).
systemctl stop sitegate-rx
[ "$(systemctl show -p ExecMainStatus --value sitegate-rx)" = 0 ] ||
  fail "sitegate-rx exited $(systemctl show -p ExecMainStatus --value sitegate-rx) at stop"
diagnose() {
  systemctl status sitegated --no-pager -n 0 || true
  echo "--- journal of sitegated (last 25 lines)"
  journalctl -u sitegated --no-pager -n 25 -o short-monotonic || true
}

# A broken config: the start fails, the journal has file:line, and the unit
# is failed at once (exit 78: RestartPreventExitStatus), not waiting to
# restart every few seconds.
sed -i 's/^port = /prot = /' "$CONF"
line=$(grep -n '^prot = ' "$CONF" | cut -d: -f1)
rc=0
timeout 150 systemctl restart sitegated 2>/dev/null || rc=$?
[ $rc -ne 0 ] || fail "systemctl restart with a broken config succeeded"
msg() { journalctl -u sitegated --no-pager -o cat | grep -q "$CONF:$line: unknown key \"prot\""; }
wait_for 30 "the journal showing $CONF:$line" msg
[ "$(state)" = failed ] || fail "with a broken config the unit is $(state) ($(systemctl show -p SubState --value sitegated)), not failed"
[ "$(systemctl show -p ExecMainStatus --value sitegated)" = 78 ] ||
  fail "exit status $(systemctl show -p ExecMainStatus --value sitegated), not 78 (EX_CONFIG)"
# The receiver without its key: failed at once with 78, not restarted
# every 10 s for ever.
mv /etc/sitegate-rx/server.key /etc/sitegate-rx/server.key.away
rc=0
timeout 150 systemctl restart sitegate-rx 2>/dev/null || rc=$?
[ $rc -ne 0 ] || fail "sitegate-rx started without its key"
rx_state() { systemctl show -p ActiveState --value sitegate-rx; }
rx_failed() { [ "$(rx_state)" = failed ]; }
wait_for 30 "sitegate-rx failed for good (it is $(rx_state))" rx_failed
[ "$(systemctl show -p ExecMainStatus --value sitegate-rx)" = 78 ] ||
  fail "sitegate-rx's exit status $(systemctl show -p ExecMainStatus --value sitegate-rx), not 78 (EX_CONFIG)"
echo "systemd: start, status, ingest, restart, watchdog, one instance, broken config; sitegate-rx: ready, stores, watchdog, stop, no key: ok"
