#!/bin/sh
# The tree is the architecture (STYLE.md, issue 12); this keeps it so:
# - each third-party library in its room: sqlite3.h only under storage/
#   (and the power-cut VFS shim, tests/test_powercut.c),
#   mbedTLS headers only under protocol/; libpq-fe.h only under storage/;
#   jsmn.h only in protocol/senml.c; libsystemd's sd-daemon.h only in the
#   two files that talk to systemd (gateway/core/notify.c, authority/rxnotify.c);
# - gateway/ holds at most three .c files at its top, the rest in rooms;
# - a room of gateway/ includes only the headers of rooms below it:
#     core < coap, rules < equipment, waste, uplink, machinery < api
#   (sitectl/ is a program of its own: it includes no room at all).
# Prints what is wrong, file by file, and exits 1; else one line.
cd "$(dirname "$0")/.." || exit 1
bad=0
complain() { echo "layout: $*" >&2; bad=1; }
sources=$(git ls-files '*.c' '*.h' 2>/dev/null || find . -name '*.[ch]' -not -path './build*')

for f in $sources; do
  # tests/test_powercut.c is the SQLite VFS shim issue 15 asks for in tests/.
  case $f in storage/* | tests/test_powercut.c) ;; *) grep -q '#include <sqlite3.h>' "$f" && complain "$f includes sqlite3.h (only storage/ may)" ;; esac
  case $f in protocol/*) ;; *) grep -q '#include <mbedtls/' "$f" && complain "$f includes an mbedTLS header (only protocol/ may)" ;; esac
  case $f in storage/*) ;; *) grep -q '#include <libpq-fe.h>' "$f" && complain "$f includes libpq-fe.h (only storage/ may)" ;; esac
  case $f in protocol/senml.c) ;; *) grep -q '#include <jsmn.h>' "$f" && complain "$f includes jsmn.h (only protocol/senml.c may)" ;; esac
  case $f in gateway/core/notify.c | authority/rxnotify.c) ;; *) grep -q '#include <systemd/' "$f" && complain "$f includes a libsystemd header (only gateway/core/notify.c and authority/rxnotify.c may)" ;; esac
done

n=$(ls gateway/*.c | wc -l)
[ "$n" -le 3 ] || complain "gateway/ has $n .c files at its top (at most 3): $(ls gateway/*.c | tr '\n' ' ')"

rank() { # the room's level; a room may include rooms of a lower level only
  case $1 in
    core) echo 0 ;; coap | rules) echo 1 ;; equipment | waste | uplink | machinery) echo 2 ;; api) echo 3 ;;
    sitectl) echo 9 ;; *) echo "" ;;
  esac
}
for dir in gateway/*/; do
  room=$(basename "$dir")
  [ "$room" = web ] && continue
  r=$(rank "$room")
  [ -n "$r" ] || { complain "gateway/$room/ is a room this check does not know: give it a level"; continue; }
  for f in "$dir"*.[ch]; do
    for inc in $(sed -n 's|^#include "gateway/\([a-z_]*\)/.*|\1|p' "$f"); do
      [ "$inc" = "$room" ] && continue
      ir=$(rank "$inc")
      if [ "$room" = sitectl ] || [ -z "$ir" ] || [ "$ir" -ge "$r" ]; then
        complain "$f ($room) includes gateway/$inc/: only rooms below it may be included"
      fi
    done
  done
done
[ $bad -eq 0 ] && echo "layout: libraries in their rooms, gateway/ rooms one way"
exit $bad
