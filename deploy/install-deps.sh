#!/bin/sh
# Installs the Debian packages sitegate builds, tests and runs with, but only
# when something is missing: on a machine that has them it does nothing.
# With the argument `deb`, also what `make deb` needs (debhelper, lintian).
# Needs root (or sudo) only when it has to install.
set -eu

# pkg-config module or command : Debian package that provides it
NEEDS="
pkg:libcoap-3-openssl:libcoap3-dev
cmd:coap-client-openssl:libcoap3-bin
pkg:libuv:libuv1-dev
pkg:jansson:libjansson-dev
hdr:/usr/include/jsmn.h:libjsmn-dev
pkg:libcbor:libcbor-dev
pkg:inih:libinih-dev
pkg:sqlite3:libsqlite3-dev
pkg:libpq:libpq-dev
pkg:libxcrypt:libcrypt-dev
hdr:/usr/lib/postgresql/15/bin/initdb:postgresql-15
pkg:libmicrohttpd:libmicrohttpd-dev
pkg:libcurl:libcurl4-openssl-dev
pkg:libsystemd:libsystemd-dev
hdr:/lib/systemd/systemd:systemd
cmd:ss:iproute2
pkg:cmocka:libcmocka-dev
hdr:/usr/include/mbedtls/ssl.h:libmbedtls-dev
hdr:/usr/share/zoneinfo/Asia/Shanghai:tzdata
cmd:pkg-config:pkg-config
cmd:sqlite3:sqlite3
cmd:openssl:openssl
cmd:cc:gcc
cmd:make:make
cmd:clang:clang
hdr:/usr/lib/llvm-14/lib/clang/14.0.6/lib/linux/libclang_rt.fuzzer-x86_64.a:libclang-rt-14-dev
hdr:/usr/bin/python3:python3
cmd:curl:curl
cmd:node:nodejs
cmd:npm:npm
hdr:/usr/bin/chromium:chromium
hdr:/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc:fonts-wqy-zenhei
"

# `install-deps.sh deb`: what `make deb` needs besides the build's (not
# installed for `make test` or `make demo`).
if [ "${1:-}" = deb ]; then
  NEEDS="$NEEDS
cmd:dpkg-buildpackage:dpkg-dev
cmd:dh:debhelper
cmd:lintian:lintian
cmd:fakeroot:fakeroot
pkg:libsystemd:libsystemd-dev
"
fi

missing=""
for n in $NEEDS; do
  kind=${n%%:*}; rest=${n#*:}; what=${rest%:*}; pkg=${rest##*:}
  case $kind in
    pkg) command -v pkg-config >/dev/null 2>&1 && pkg-config --exists "$what" && continue ;;
    cmd) command -v "$what" >/dev/null 2>&1 && continue ;;
    hdr) [ -e "$what" ] && continue ;;
  esac
  case " $missing " in *" $pkg "*) ;; *) missing="$missing $pkg" ;; esac
done

[ -z "$missing" ] && exit 0

echo "install-deps: installing:$missing"
SUDO=""
if [ "$(id -u)" != 0 ]; then
  command -v sudo >/dev/null 2>&1 || { echo "install-deps: run as root or install:$missing" >&2; exit 1; }
  SUDO=sudo
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# shellcheck disable=SC2086
$SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
