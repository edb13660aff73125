#!/bin/bash
# The dashboard in a real browser: Debian's Chromium, headless, driven by
# playwright-core (tests/browser/dashboard.test.mjs) against a demo-like
# gateway (demo_site.sh): the overview shows numbers, charts draw points,
# the language switch works, an alarm acknowledged in the page is
# acknowledged in `sitectl alarms`. Screenshots go to $SHOTS (default
# build/screenshots). Installs what it needs: chromium, nodejs and npm
# through deploy/install-deps.sh, playwright-core through npm ci.
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/lib.sh"
. "$HERE/demo_site.sh"

browser_ready
[ -f "$(dirname "$BIN")/share/sitegate/web/index.html" ] || fail "no dashboard beside $BIN: run make"

start_demo
# dust-01's pack over plain CoAP (it has a key: DTLS only): refused, and
# the overview's device table has to say why (dashboard.test.mjs)
r=$(coap post /r 110 '[{"bn":"dust-01/","n":"pm10","v":50}]')
case $r in 4.03*) ;; *) fail "dust-01's pack without DTLS got: $r" ;; esac
SHOTS=${SHOTS:-$TOP/build/screenshots}
# timeout: a guard against a hung browser, not a pace (each wait in the
# page has its own deadline); a busy 2-core machine needs minutes.
DASH_URL=$SITECTL_URL DASH_TOKEN=$TOKEN SITECTL="$BIN/sitectl" SHOTS="$SHOTS" \
  timeout 900 node "$B/dashboard.test.mjs" || fail "the browser test failed"
echo "dashboard: screenshots in $SHOTS"
