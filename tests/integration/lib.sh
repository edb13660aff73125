# Shared by the integration tests (bash): each test sources this, gets a
# temporary directory and free ports, starts the real binaries over loopback,
# and everything it started is stopped and removed on exit, also on failure.
#
# Two rules keep the suite true on slow and busy machines:
# - nothing waits by sleeping: wait_for polls a condition up to a deadline and
#   fails saying what did not happen; a sleep is left only where time itself is
#   under test, with a comment saying so;
# - every failure says where: fail() names the test's file and line, and the
#   ERR trap does the same for any command that fails outside a `|| fail`.
set -eEu
BIN=${SITEGATE_BIN:?set SITEGATE_BIN to the folder with sitegated}
HERE=$(cd "$(dirname "$0")" && pwd)
LIB_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd) # this file's, tests/integration
T=$(mktemp -d /tmp/sitegate-it.XXXXXX)
PIDS=""
GW_PID=""
# Debian's interpreter, called by path: whatever python3 comes first on PATH
# (a version manager's shim that takes 0.3 s to start, say) is not ours to time.
PY=${SITEGATE_PYTHON:-/usr/bin/python3}

cleanup() {
  for p in $PIDS; do kill -9 "$p" 2>/dev/null || true; done
  for p in $PIDS; do wait "$p" 2>/dev/null || true; done
  [ -n "${MOUNTED:-}" ] && umount "$MOUNTED" 2>/dev/null
  rm -rf "$T"
}
trap cleanup EXIT

# where SKIP: "file:line" of the first call outside lib.sh, SKIP frames above
# where's caller (so a failure inside a helper points at the test's line).
where() {
  local i src
  for ((i = $1 + 1; i < ${#FUNCNAME[@]}; i++)); do
    src=${BASH_SOURCE[i + 1]:-}
    [ -n "$src" ] || break
    [ "$(basename "$src")" = lib.sh ] && continue
    echo "$(basename "$src"):${BASH_LINENO[i]}"
    return 0
  done
  echo "lib.sh"
}

# A test may define diagnose() to print what it knows (its own state, other
# logs) when it fails; the gateway's log tail follows.
logs_tail() {
  if declare -F diagnose >/dev/null; then
    echo "--- what the test knows" >&2
    trap - ERR
    (diagnose) >&2 || true
    unset -f diagnose # once, even if it fails itself
  fi
  if [ -s "$T/coap-client.log" ]; then
    echo "--- the last coap-client exchange (libcoap's -v 7 dump)" >&2
    tail -25 "$T/coap-client.log" >&2
  fi
  if [ -f "$T/gw.log" ]; then
    echo "--- sitegated log (last 20 lines)" >&2
    tail -20 "$T/gw.log" >&2
  fi
}

fail() {
  echo "FAIL $(where 0): $*" >&2
  logs_tail
  exit 1
}

# A command that fails where nobody tests its status ends the test (set -e):
# say which, and where. Command substitutions run without -e, so the trap
# speaks only when this shell is about to exit; the line is the one that
# used the substitution.
on_err() {
  local rc=$1 line=$2 cmd=$3
  case $- in *e*) ;; *) return 0 ;; esac
  trap - ERR
  echo "FAIL $(basename "${BASH_SOURCE[1]}"):$line: exit $rc from: $cmd" >&2
  case ${FUNCNAME[1]:-main} in main | source) ;; *) echo "     in ${FUNCNAME[1]}, called from $(where 1)" >&2 ;; esac
  logs_tail
  exit "$rc"
}
trap 'on_err $? $LINENO "$BASH_COMMAND"' ERR

# wait_for SECONDS WHAT COMMAND...: runs COMMAND every 0.1 s until it
# succeeds; after SECONDS fails with "WHAT did not happen within SECONDS s".
# The deadline is generous on purpose: it bounds a broken run, it is not a
# performance check.
wait_for() {
  local secs=$1 what=$2 deadline
  shift 2
  deadline=$(($(date +%s) + secs))
  until "$@"; do
    if [ "$(date +%s)" -ge "$deadline" ]; then
      echo "FAIL $(where 0): $what did not happen within $secs s" >&2
      logs_tail
      exit 1
    fi
    sleep 0.1 # the poll period, not a synchronisation
  done
}

# free_port udp|tcp: a port nobody listens on, below the kernel's ephemeral
# range and not yet handed out in this test (free_port.py says why).
free_port() { "$PY" "$LIB_DIR/free_port.py" "$1" "$T/ports"; }

COAP_PORT=$(free_port udp)
DTLS_PORT=$(free_port udp)
HTTP_PORT=$(free_port tcp)
export SITECTL_URL="http://127.0.0.1:$HTTP_PORT"
# sitectl speaks the site manager's language, Chinese, whatever the
# machine's locale: a test that reads its English asks for it.
export SITECTL_LANG=zh

# write_conf FILE: a small site with the test's ports; extra sections follow
# on stdin.
write_conf() {
  {
    cat <<CONF
[site]
id = TEST-SITE-01
name = 测试工地
timezone = Asia/Shanghai

[storage]
path = ${DB:-$T/sitegate.db}
batch_ms = ${BATCH_MS:-50}

[coap]
listen = 127.0.0.1
port = $COAP_PORT
dtls_port = $DTLS_PORT

[http]
listen = 127.0.0.1:$HTTP_PORT

# dust-01 and noise-01 post plain CoAP on purpose (the tests that speak
# it); dust-02 has a key and must use CoAPS.
[device dust-01]
type = dust
insecure = yes

[device dust-02]
type = dust
psk = secret-dust-02-key-0001

[device noise-01]
type = noise
insecure = yes
interval_s = 10
CONF
    cat
  } >"$1"
}

# alive PID WHAT: true while PID runs; once it has exited, fails saying so
# (for wait_for conditions that must not wait on a dead process).
alive() {
  kill -0 "$1" 2>/dev/null || fail "$2 exited: $(wait "$1" 2>/dev/null; echo "status $?")"
}

gw_answers() {
  alive "$GW_PID" "sitegated"
  curl -sf "$SITECTL_URL/api/status" >/dev/null 2>&1
}

# start_gw CONF: starts sitegated (with the extra options in $GW_ARGS, e.g.
# -v) and waits until its API answers.
start_gw() {
  # shellcheck disable=SC2086 # GW_ARGS is a list of options
  "$BIN/sitegated" -c "$1" ${GW_ARGS:-} >>"$T/gw.log" 2>&1 &
  GW_PID=$!
  PIDS="$PIDS $GW_PID"
  wait_for 60 "sitegated answering on $SITECTL_URL" gw_answers
}

# committed: true once the gateway's storage queue is empty.
committed() {
  [ "$(curl -sf "$SITECTL_URL/api/status" | json 'j["storage"]["queued"]')" = 0 ]
}

# stop_gw: SIGTERM and expect a clean exit 0 (sitegated exits 1 when its
# loop could not close, naming each handle left open), and no sanitizer
# report in its log.
stop_gw() {
  kill -TERM "$GW_PID"
  rc=0
  wait "$GW_PID" || rc=$?
  [ $rc -eq 0 ] || fail "sitegated exited $rc after SIGTERM"
  GW_PID=""
  no_sanitizer_report "$T/gw.log" sitegated
}

# lock_db DB: another program (Python's sqlite3) takes DB's write lock
# (BEGIN IMMEDIATE; in WAL mode readers go on) and holds it until
# unlock_db, or 120 s if the test is gone. Returns once the lock is held.
lock_db() {
  rm -f "$T/locked" "$T/release"
  "$PY" -c '
import os, sqlite3, sys, time
c = sqlite3.connect(sys.argv[1], isolation_level=None)
c.execute("BEGIN IMMEDIATE")
open(sys.argv[2], "w").close()
deadline = time.monotonic() + 120
while not os.path.exists(sys.argv[3]) and time.monotonic() < deadline:
    time.sleep(0.02)  # the poll period
c.execute("ROLLBACK")' "$1" "$T/locked" "$T/release" &
  LOCK_PID=$!
  PIDS="$PIDS $LOCK_PID"
  wait_for 30 "another program holding the write lock of $1" lock_held
}
lock_held() { alive "$LOCK_PID" "the lock holder"; [ -e "$T/locked" ]; }
unlock_db() {
  touch "$T/release"
  wait "$LOCK_PID" || fail "the lock holder failed"
}

# no_sanitizer_report LOG WHAT: fails when LOG holds an AddressSanitizer,
# LeakSanitizer or UBSan report.
no_sanitizer_report() {
  if grep -q "ERROR: AddressSanitizer\|ERROR: LeakSanitizer\|runtime error:" "$1"; then
    grep -m1 -A30 "ERROR: AddressSanitizer\|ERROR: LeakSanitizer\|runtime error:" "$1" >&2
    fail "$2: sanitizer report in $1"
  fi
  return 0
}

# coap METHOD PATH CONTENT-FORMAT PAYLOAD [extra coap-client args...]:
# prints the response code (e.g. 2.04) and then the payload, on one line.
coap() {
  m=$1 path=$2 ct=$3 payload=$4
  shift 4
  out=$(coap-client-openssl -B 5 -v 7 -m "$m" -t "$ct" -e "$payload" "$@" \
    "coap://127.0.0.1:$COAP_PORT$path" 2>&1) || true
  printf '%s\n' "$out" >"$T/coap-client.log"
  code_and_payload "$out"
}

# coaps ID KEY PATH CT PAYLOAD: the same over DTLS with a PSK identity.
coaps() {
  id=$1 key=$2 path=$3 ct=$4 payload=$5
  out=$(coap-client-openssl -B 5 -v 7 -u "$id" -k "$key" -m post -t "$ct" -e "$payload" \
    "coaps://127.0.0.1:$DTLS_PORT$path" 2>&1) || true
  printf '%s\n' "$out" >"$T/coap-client.log"
  code_and_payload "$out"
}

# The final response code libcoap logged (its -v 7 PDU dump: "c:2.04"; a
# block-wise upload answers 2.31 Continue first), or "none", followed by the
# response's payload.
code_and_payload() {
  code=$(printf '%s\n' "$1" | grep -o ' c:[2-5]\.[0-9][0-9]' | grep -v 'c:2.31' | tail -1 | cut -d: -f2)
  body=$(printf '%s\n' "$1" | grep -v '^[A-Z][a-z][a-z] [0-9 ]' | grep -v '^ *$' | tail -1)
  echo "${code:-none} $body"
}

expect_code() { # expect_code WANT "OUTPUT" what
  case "$2" in
    "$1"*) ;;
    *) fail "$3: wanted $1, got: $2" ;;
  esac
}

# make_pki DIR [MN...]: an authority's PKI made by deploy/pki's scripts, as
# an operator makes it: a CA, the receiver's certificate for localhost and
# a gateway certificate for each MN.
make_pki() {
  local dir=$1 pki mn
  pki="$(cd "$LIB_DIR/../.." && pwd)/deploy/pki"
  shift
  "$pki/make-ca.sh" "$dir" >/dev/null && "$pki/make-server.sh" "$dir" localhost >/dev/null ||
    fail "deploy/pki could not make a CA and a server certificate in $dir"
  for mn in "$@"; do
    "$pki/make-gateway.sh" "$dir" "$mn" >/dev/null || fail "deploy/pki could not make $mn's certificate"
  done
}

# rx_send PORT MN FRAMES ANSWER: gateway MN (its certificate from make_pki
# in $T/pki) opens one TLS connection to the receiver on PORT and writes
# the frames in file FRAMES; the receiver's answers go to file ANSWER. The
# connection stays open (fd 3) until rx_send_end, so the test can wait for
# the answers it expects first.
rx_send() {
  rm -f "$T/rx_send.in"
  mkfifo "$T/rx_send.in"
  openssl s_client -quiet -no_ign_eof -connect "127.0.0.1:$1" -servername localhost \
    -cert "$T/pki/gateway-$2.crt" -key "$T/pki/gateway-$2.key" -CAfile "$T/pki/ca.crt" \
    -verify_return_error <"$T/rx_send.in" >"$4" 2>&1 &
  RX_SEND_PID=$!
  PIDS="$PIDS $RX_SEND_PID"
  exec 3>"$T/rx_send.in"
  cat "$3" >&3 || true # s_client may be gone (a refused handshake): the test's wait says so
}
# rx_send_end: closes rx_send's connection and waits for s_client.
rx_send_end() {
  exec 3>&-
  wait "$RX_SEND_PID" || true
}

# json EXPR < JSON: evaluates a Python expression over the parsed JSON `j`.
json() {
  "$PY" -c 'import json, sys; j = json.load(sys.stdin); print(eval(sys.argv[1]))' "$1"
}

now_s() { date +%s; }

# browser_ready: Debian's Chromium, node and npm (installed through
# deploy/install-deps.sh when missing) and tests/browser's playwright-core
# (npm ci when its lock changed); sets B to tests/browser.
browser_ready() {
  local top
  top=$(cd "$HERE/../.." && pwd)
  if [ ! -x /usr/bin/chromium ] || ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    "$top/deploy/install-deps.sh" || fail "cannot install chromium, nodejs and npm"
  fi
  B="$top/tests/browser"
  if [ ! -f "$B/node_modules/playwright-core/package.json" ] ||
    [ "$B/package-lock.json" -nt "$B/node_modules/.package-lock.json" ]; then
    (cd "$B" && npm ci --no-audit --no-fund --loglevel=error >"$T/npm.log" 2>&1) ||
      fail "npm ci in tests/browser: $(tail -5 "$T/npm.log")"
  fi
}

# in_systemd_check: sets IN_SYSTEMD to the in-systemd tool (shared/tools/
# beside the clone, where CI copies it, or SITEGATE_IN_SYSTEMD_TOOL) and
# fails unless it is there and we are root: a test that needs a real
# systemd says so rather than passing.
in_systemd_check() {
  IN_SYSTEMD=${SITEGATE_IN_SYSTEMD_TOOL:-$HERE/../../../shared/tools/in-systemd}
  [ -f "$IN_SYSTEMD" ] || fail "no $IN_SYSTEMD: this test needs shared/tools/in-systemd beside the clone"
  [ "$(id -u)" = 0 ] || fail "this test boots systemd (in-systemd) and needs root"
}

# in_systemd SCRIPT [VAR=VALUE...]: runs SCRIPT again inside a throwaway
# systemd, with SITEGATE_IN_SYSTEMD=1, this SITEGATE_BIN and
# SITEGATE_PYTHON and the VARs, and exits with its status (after systemd's
# console when it failed). Everything SCRIPT does there is thrown away with
# the overlay.
in_systemd() {
  script=$1
  shift
  in_systemd_check
  rc=0
  IN_SYSTEMD_LOG=$T/systemd.log bash "$IN_SYSTEMD" env SITEGATE_IN_SYSTEMD=1 \
    SITEGATE_BIN="$BIN" SITEGATE_PYTHON="$PY" "$@" bash "$script" || rc=$?
  if [ $rc -ne 0 ]; then
    echo "--- systemd's console (last 15 lines)" >&2
    tail -15 "$T/systemd.log" >&2
  fi
  exit $rc
}
