#!/bin/bash
# The machinery page (机械) in a real browser: Debian's Chromium, headless,
# driven by playwright-core (tests/browser/machinery.test.mjs) against the
# demo-like gateway of demo_site.sh, whose register is
# deploy/machines-demo.csv and whose machines sitesim runs: the rig below
# the zone's stage and the smoking pump show as breaches and alarms, in
# Chinese with no raw code, and in English; a machine's days, moves and
# audit; an exit entered in the page clears the rig's alarm in `sitectl
# alarms`; at 390x844 the tables become cards within the phone. Installs
# what it needs as test_dashboard.sh does. Screenshots go to $SHOTS.
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/lib.sh"
. "$HERE/demo_site.sh"

browser_ready
[ -f "$(dirname "$BIN")/share/sitegate/web/page_machinery.js" ] || fail "no dashboard beside $BIN: run make"

# machine_alarms: true once the rig's stage alarm and the pump's smoke
# alarm are both active.
machine_alarms() {
  "$BIN/sitectl" alarms --json >"$T/alarms.json" 2>&1 &&
    $PY - "$T/alarms.json" <<'PY'
import json, sys
a = json.load(open(sys.argv[1]))["alarms"]
have = {(x["rule"], x["source"]) for x in a if not x.get("cleared")}
sys.exit(0 if {("machinery.stage", "23010100000103"), ("machinery.smoke", "23010100000104")} <= have else 1)
PY
}

start_demo
wait_for 60 "the rig's machinery.stage and the pump's machinery.smoke alarms" machine_alarms
SHOTS=${SHOTS:-$TOP/build/screenshots}
# timeout: a guard against a hung browser, not a pace (each wait in the
# page has its own deadline); a busy 2-core machine needs minutes.
DASH_URL=$SITECTL_URL DASH_TOKEN=$TOKEN SITECTL="$BIN/sitectl" SHOTS="$SHOTS" \
  timeout 900 node "$B/machinery.test.mjs" || fail "the machinery browser test failed"
echo "dashboard (machinery): screenshots in $SHOTS"
