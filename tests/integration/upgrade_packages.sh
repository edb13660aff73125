# The package upgrade, for real (make test-upgrade; not in make test: it
# builds the packages twice, 3 to 8 minutes on 2 cores). Packages are built
# from two commits: an older one (SITEGATE_UPGRADE_FROM, by default the
# first commit of main that had debian/), in a git worktree under
# build/upgrade/ with its version lowered to sort before this one, and this
# tree. (Not under /tmp: in-systemd gives the systemd its own /tmp.) Under a
# throwaway systemd (../shared/tools/in-systemd) the old packages are
# installed over a site config put there first (the admin's own: dpkg
# keeps it), the old service stores readings, then the new packages are
# installed over the old: the service was restarted with the new program,
# the config is untouched, no reading is lost, the schema was migrated in
# place and the same database file takes new readings.
source "$(dirname "$0")/lib.sh"
REPO=$(cd "$HERE/../.." && pwd)

if [ -z "${SITEGATE_IN_SYSTEMD:-}" ]; then
  in_systemd_check
  OLD=${SITEGATE_UPGRADE_FROM:-$(git -C "$REPO" log --first-parent --diff-filter=A --format=%H -1 -- debian/control)}
  [ -n "$OLD" ] || fail "no commit with debian/control to upgrade from"
  echo "upgrade: from $(git -C "$REPO" log -1 --format='%h %s' "$OLD" | cut -c1-72)"
  echo "upgrade: to   $(git -C "$REPO" log -1 --format='%h %s' HEAD | cut -c1-72) and the work tree"
  UP=$REPO/build/upgrade
  remove_worktree() {
    git -C "$REPO" worktree remove --force "$UP/old" 2>/dev/null || true
    rm -rf "$UP"
  }
  remove_worktree
  trap 'remove_worktree; cleanup' EXIT
  mkdir -p "$UP"
  git -C "$REPO" worktree add -q --detach "$UP/old" "$OLD" || fail "git worktree add $OLD"
  newver=$(dpkg-parsechangelog -l "$REPO/debian/changelog" -S Version)
  oldver="$newver~upgrade.$(git -C "$REPO" rev-parse --short "$OLD")"
  sed -i "1s/(.*)/($oldver)/" "$UP/old/debian/changelog"
  # The unit tests were the commits' own business: nocheck.
  DEB_BUILD_OPTIONS=nocheck make -s -C "$UP/old" deb >"$T/deb.log" 2>&1 ||
    fail "make deb in $UP/old: $(tail -15 "$T/deb.log")"
  DEB_BUILD_OPTIONS=nocheck make -s -C "$REPO" deb BUILD=build/upgrade/new >"$T/deb.log" 2>&1 ||
    fail "make deb: $(tail -15 "$T/deb.log")"
  arch=$(dpkg --print-architecture)
  in_systemd "$HERE/upgrade_packages.sh" OLD_DEBS="$UP/old/build/deb/$arch" \
    NEW_DEBS="$UP/new/deb/$arch" OLD_VERSION="$oldver" NEW_VERSION="$newver"
fi

# ---- inside the throwaway systemd
CONF=/etc/sitegate/sitegate.conf
DB=/var/lib/sitegate/sitegate.db
diagnose() {
  systemctl status sitegated --no-pager -n 0 || true
  echo "--- journal of sitegated (last 25 lines)"
  journalctl -u sitegated --no-pager -n 25 -o short-monotonic || true
}
main_pid() { systemctl show -p MainPID --value sitegated; }
active() { [ "$(systemctl show -p ActiveState --value sitegated)" = active ]; }
answers() { sitectl status >/dev/null 2>&1; }
installed() { dpkg-query -W -f='${Version}' "$1"; }
stored() { sitectl readings dust-01 pm10 --since -1h --json | json 'len(j["points"])'; }
schema() { sqlite3 "file:$DB?mode=ro" 'PRAGMA user_version'; }
post() { # post FIRST LAST: readings FIRST..LAST of dust-01, one a second back from now
  now=$(now_s)
  for i in $(seq "$1" "$2"); do
    r=$(coap post /r 110 "[{\"bn\":\"dust-01/\",\"t\":$((now - 600 + i)),\"n\":\"pm10\",\"v\":$i}]")
    expect_code 2.04 "$r" "reading $i"
  done
  wait_for 30 "the readings committed" committed
}
debs() { ls "$1"/sitegate_*.deb "$1"/sitegate-rx_*.deb "$1"/sitegate-sim_*.deb; }

# This machine's image carries Docker's policy-rc.d, which keeps dpkg from
# starting services; a site box has none (removed from the overlay only).
rm -f /usr/sbin/policy-rc.d

# The site's own config, there before the package (its ports are the
# test's): dpkg keeps it, at install and at upgrade.
mkdir -p /etc/sitegate
DB=$DB write_conf "$CONF" </dev/null
sum=$(sha256sum <"$CONF")

# The old packages: installing enables and starts the service.
# shellcheck disable=SC2046
dpkg -i --force-confold $(debs "$OLD_DEBS") >"$T/dpkg-old.log" 2>&1 ||
  fail "dpkg -i of the old packages: $(tail -5 "$T/dpkg-old.log")"
[ "$(installed sitegate)" = "$OLD_VERSION" ] || fail "installed $(installed sitegate), not $OLD_VERSION"
wait_for 60 "the old sitegated active and answering" sh -c '
  [ "$(systemctl show -p ActiveState --value sitegated)" = active ] && sitectl status >/dev/null 2>&1'
[ "$(stat -c %a:%U:%G "$CONF")" = 640:root:sitegate ] || fail "$CONF is $(stat -c %a:%U:%G "$CONF")"
N=30
post 1 $N
[ "$(stored)" = $N ] || fail "the old service stored $(stored) of $N readings"
old_pid=$(main_pid)
old_schema=$(schema)
ino=$(stat -c %i "$DB")

# The upgrade: the new packages over the old.
# shellcheck disable=SC2046
dpkg -i --force-confold --force-confdef $(debs "$NEW_DEBS") >"$T/dpkg-new.log" 2>&1 ||
  fail "dpkg -i of the new packages: $(tail -5 "$T/dpkg-new.log")"
for p in sitegate sitegate-rx sitegate-sim; do
  [ "$(installed $p)" = "$NEW_VERSION" ] || fail "$p is $(installed $p) after the upgrade, not $NEW_VERSION"
done
active || fail "sitegated is $(systemctl show -p ActiveState --value sitegated) after the upgrade"
new_pid=$(main_pid)
[ "$new_pid" != "$old_pid" ] || fail "the upgrade did not restart sitegated (PID $old_pid)"
# (/proc's links read as paths outside in-systemd's root: compare files.)
cmp -s /proc/"$new_pid"/exe /usr/bin/sitegated || fail "the service does not run the new /usr/bin/sitegated"
wait_for 60 "the new sitegated answering" answers
[ "$(sha256sum <"$CONF")" = "$sum" ] || fail "the upgrade changed $CONF"
[ "$(stat -c %a:%U:%G "$CONF")" = 640:root:sitegate ] || fail "after the upgrade $CONF is $(stat -c %a:%U:%G "$CONF")"
[ "$(stored)" = $N ] || fail "after the upgrade: $(stored) of $N readings"
new_schema=$(schema)
[ "$new_schema" -ge "$old_schema" ] || fail "schema $new_schema after the upgrade, was $old_schema"
[ "$(stat -c %i "$DB")" = "$ino" ] || fail "$DB is another file after the upgrade"
holds_db() {
  for fd in /proc/"$new_pid"/fd/*; do
    [ "$(stat -L -c %d:%i "$fd" 2>/dev/null)" = "$(stat -c %d:%i "$DB")" ] && return 0
  done
  return 1
}
holds_db || fail "the new sitegated does not hold $DB open"
post $((N + 1)) $((N + 10))
[ "$(stored)" = $((N + 10)) ] || fail "the upgraded service stored $(stored) of $((N + 10)) readings"
echo "upgrade: $OLD_VERSION -> $NEW_VERSION: restarted (PID $old_pid -> $new_pid), config kept, $N readings kept, schema $old_schema -> $new_schema in place, 10 more stored: ok"
