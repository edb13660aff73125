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

if [ ! -x /usr/bin/chromium ] || ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  "$TOP/deploy/install-deps.sh" || fail "cannot install chromium, nodejs and npm"
fi
B="$TOP/tests/browser"
if [ ! -f "$B/node_modules/playwright-core/package.json" ] ||
  [ "$B/package-lock.json" -nt "$B/node_modules/.package-lock.json" ]; then
  (cd "$B" && npm ci --no-audit --no-fund --loglevel=error >"$T/npm.log" 2>&1) ||
    fail "npm ci in tests/browser: $(tail -5 "$T/npm.log")"
fi
[ -f "$(dirname "$BIN")/share/sitegate/web/index.html" ] || fail "no dashboard beside $BIN: run make"

start_demo
SHOTS=${SHOTS:-$TOP/build/screenshots}
DASH_URL=$SITECTL_URL DASH_TOKEN=$TOKEN SITECTL="$BIN/sitectl" SHOTS="$SHOTS" \
  timeout 300 node "$B/dashboard.test.mjs" || fail "the browser test failed"
echo "dashboard: screenshots in $SHOTS"
