#!/bin/sh
# arm64-smoke.sh BUILD: end-to-end smoke tests of the arm64 programs in
# BUILD/bin (make test-arm64), each run under qemu-user: BUILD/qemu-bin/
# holds one wrapper per program that execs qemu-aarch64 on it (the PID and
# signals are the program's), and the integration tests named below run
# against that folder as they run against bin/. Tests and tools (python,
# libcoap's client, curl) stay the machine's own.
set -eu
build=$1
[ -x "$build/bin/sitegated" ] || { echo "arm64-smoke: no $build/bin/sitegated" >&2; exit 1; }
case $(od -An -j18 -N2 -tu2 "$build/bin/sitegated" | tr -d ' ') in
  183) ;; # EM_AARCH64
  *) echo "arm64-smoke: $build/bin/sitegated is not an arm64 program" >&2; exit 1 ;;
esac
qbin=$build/qemu-bin
mkdir -p "$qbin"
for p in sitegated sitectl sitesim sitegate-rx; do
  printf '#!/bin/sh\nexec qemu-aarch64 %s "$@"\n' "$(cd "$build/bin" && pwd)/$p" >"$qbin/$p"
  chmod 755 "$qbin/$p"
done
passed=0
failed=0
for t in test_coap_ingest.sh test_rx_tls.sh; do
  if SITEGATE_BIN=$(cd "$qbin" && pwd) bash "$(dirname "$0")/integration/$t"; then
    echo "arm64-smoke: $t passed"; passed=$((passed + 1))
  else
    echo "arm64-smoke: $t FAILED"; failed=$((failed + 1))
  fi
done
echo "arm64 smoke: $passed passed, $failed failed"
[ $failed -eq 0 ]
