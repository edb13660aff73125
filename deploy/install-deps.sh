#!/bin/sh
# Installs the Debian packages sitegate builds, tests and runs with, but only
# when something is missing: on a machine that has them it does nothing.
# With the argument `deb`, also what `make deb` needs (debhelper, lintian);
# with a Debian architecture (`arm64`), what cross-building for it needs
# (`make deb ARCH=arm64`, `make test-arm64`): the architecture added to dpkg
# (multiarch), crossbuild-essential-ARCH, the :ARCH development packages and
# qemu-user to run what was built. Neither is part of `make deps`.
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

# A foreign architecture: its development packages beside the machine's own
# (multiarch). libpq-dev is not Multi-Arch: same in Debian 12 (installing
# libpq-dev:arm64 removes the machine's libpq-dev), so only its library is
# installed here and `make deb ARCH=...` unpacks libpq-dev's .deb for the
# architecture into its build tree.
add_arch=""
case "${1:-}" in
  ""|deb) ;;
  *)
    arch=$1
    [ "$arch" = "$(dpkg --print-architecture)" ] && exit 0
    dpkg --print-foreign-architectures | grep -qx "$arch" || add_arch=$arch
    case $arch in arm64) qemu=aarch64 ;; armhf) qemu=arm ;; *) qemu=$arch ;; esac
    NEEDS="$NEEDS
cmd:dpkg-buildpackage:dpkg-dev
cmd:dh:debhelper
cmd:lintian:lintian
cmd:fakeroot:fakeroot
cmd:qemu-$qemu:qemu-user
deb:crossbuild-essential-$arch:crossbuild-essential-$arch
"
    for p in libc6-dev libcoap3-dev libuv1-dev libjansson-dev libcbor-dev libinih-dev \
      libsqlite3-dev libpq5 libmicrohttpd-dev libcurl4-openssl-dev libsystemd-dev \
      libmbedtls-dev libcmocka-dev libcrypt-dev; do
      NEEDS="$NEEDS deb:$p@$arch:$p@$arch"
    done
    ;;
esac

missing=""
for n in $NEEDS; do
  kind=${n%%:*}; rest=${n#*:}; what=${rest%:*}; pkg=${rest##*:}
  what=$(printf %s "$what" | tr @ :); pkg=$(printf %s "$pkg" | tr @ :) # NAME@ARCH is NAME:ARCH
  case $kind in
    pkg) command -v pkg-config >/dev/null 2>&1 && pkg-config --exists "$what" && continue ;;
    cmd) command -v "$what" >/dev/null 2>&1 && continue ;;
    hdr) [ -e "$what" ] && continue ;;
    deb) [ -z "$add_arch" ] && dpkg-query -W -f='${db:Status-Abbrev}' "$what" 2>/dev/null |
      grep -q '^ii' && continue ;;
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
[ -n "$add_arch" ] && $SUDO dpkg --add-architecture "$add_arch"
$SUDO apt-get update -qq
# shellcheck disable=SC2086
$SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
