# sitegate: `make` builds the programs into bin/; see README.md for the rest.
#
# Each folder is a module built into a static library (common, protocol,
# storage, gateway); programs and tests link the ones they need. gateway/'s
# library is its top file and every room (a subfolder) but sitectl/ and web/.
# New .c files and new rooms are picked up by wildcard: no list to keep.

BUILD   ?= build
BIN     ?= bin
PREFIX  ?= /usr/local
CC      ?= cc
CFLAGS  ?= -O2 -g
FUZZ_SECONDS ?= 20
FUZZ_RUNS ?= 10000000

PKGS := libcoap-3-openssl libuv jansson libcbor inih sqlite3 libmicrohttpd libcurl libpq libsystemd libxcrypt
TEST_PKGS := cmocka

# Cross builds: ARCH, a Debian architecture other than the machine's
# (`make deb ARCH=arm64`, `make test-arm64`), compiles with Debian's cross
# compiler for it, against the :ARCH development packages (multiarch), which
# pkg-config reads from the architecture's folder (Debian 12 ships no
# TRIPLET-pkg-config for a foreign one). libpq-dev cannot be installed for
# two architectures at once: its .deb for ARCH is unpacked under
# $(BUILD)/cross/ (the cross-libpq target) and found there first.
NATIVE_ARCH := $(shell dpkg --print-architecture 2>/dev/null)
ARCH ?= $(NATIVE_ARCH)
ifneq ($(ARCH),$(NATIVE_ARCH))
CROSS_TRIPLET := $(shell dpkg-architecture -a$(ARCH) -qDEB_HOST_MULTIARCH 2>/dev/null)
CROSS_ROOT    ?= $(abspath $(BUILD))/cross/$(ARCH)
CC            := $(CROSS_TRIPLET)-gcc
PKG_CONFIG    := env PKG_CONFIG_PATH=$(CROSS_ROOT)/usr/lib/$(CROSS_TRIPLET)/pkgconfig \
  PKG_CONFIG_LIBDIR=/usr/lib/$(CROSS_TRIPLET)/pkgconfig:/usr/share/pkgconfig pkg-config
endif
PKG_CONFIG ?= pkg-config

# pkg-config is asked only when a target needs to compile (not for `make deps`).
pkgcflags = $(shell $(PKG_CONFIG) --cflags $(1) 2>/dev/null)
pkglibs   = $(shell $(PKG_CONFIG) --libs $(1) 2>/dev/null)

# Required flags: `make CFLAGS=...` changes optimisation and sanitizers, never these.
FINAL_CFLAGS = $(CFLAGS) -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror \
  -Wshadow -Wstrict-prototypes -Wmissing-prototypes -I. $(call pkgcflags,$(PKGS))
# mbedTLS 2.28 ships no pkg-config file.
# --as-needed: a program depends only on the libraries it calls (sitegated
# links no libpq, which only the receiver's PostgreSQL store uses).
FINAL_LDLIBS = -Wl,--as-needed $(LDLIBS) $(call pkglibs,$(PKGS)) -lmbedtls -lmbedx509 -lmbedcrypto -lpthread -lm

MODULES := common protocol storage gateway
LIB_common   := $(filter-out %/fuzz_%.c,$(wildcard common/*.c))
LIB_protocol := $(wildcard protocol/*.c)
LIB_storage  := $(wildcard storage/*.c)
GW_ROOMS     := $(filter-out gateway/sitectl/ gateway/web/,$(wildcard gateway/*/))
LIB_gateway  := $(filter-out gateway/sitegated.c,$(wildcard gateway/*.c)) \
  $(wildcard $(addsuffix *.c,$(GW_ROOMS)))
LIBS := $(foreach m,gateway storage protocol common,$(BUILD)/lib$(m).a)

PROGRAMS := $(BIN)/sitegated $(BIN)/sitectl $(BIN)/sitesim $(BIN)/sitegate-rx
BENCH_SRC := $(wildcard bench/*.c)
BENCH_PROGRAMS := $(patsubst bench/%.c,$(BIN)/%,$(BENCH_SRC))
TEST_SRC := $(wildcard tests/test_*.c)
TEST_PROGRAMS := $(patsubst tests/%.c,$(BUILD)/tests/%,$(TEST_SRC))
FUZZ_SRC := $(wildcard tests/fuzz/fuzz_*.c)

.PHONY: all deps test unit integration test-stress asan fuzz fuzz-long bench bench-rx bench-rx-scale lint install install-files deb demo clean web \
  config-reference cross-libpq test-arm64 unit-programs test-upgrade
# Objects make would take for intermediate (tests, fuzz harnesses) are kept:
# deleting them made every `make unit` rebuild.
.SECONDARY:
all: $(PROGRAMS) $(BENCH_PROGRAMS) web

# The dashboard (gateway/web/): its files and the charting library npm
# installs from gateway/web/package-lock.json, copied to share/sitegate/web
# beside the folder of the programs, where sitegated looks by default.
WEB_OUT   := $(dir $(BIN))share/sitegate/web
WEB_SRC   := $(wildcard gateway/web/*.html gateway/web/*.css gateway/web/*.js) gateway/web/messages.json
WEB_NPM   := gateway/web/node_modules/uplot/dist
WEB_FILES := $(patsubst gateway/web/%,$(WEB_OUT)/%,$(WEB_SRC)) \
  $(WEB_OUT)/vendor/uPlot.esm.js $(WEB_OUT)/vendor/uPlot.min.css
# The supervision console's pages (authority/web/), with the same charting
# library, to share/sitegate-rx/web beside the programs.
RXWEB_OUT   := $(dir $(BIN))share/sitegate-rx/web
RXWEB_SRC   := $(wildcard authority/web/*.html authority/web/*.css authority/web/*.js)
RXWEB_FILES := $(patsubst authority/web/%,$(RXWEB_OUT)/%,$(RXWEB_SRC)) \
  $(RXWEB_OUT)/vendor/uPlot.esm.js $(RXWEB_OUT)/vendor/uPlot.min.css
web: $(WEB_FILES) $(RXWEB_FILES)
$(RXWEB_OUT)/%: authority/web/%
	@mkdir -p $(dir $@)
	cp $< $@
$(RXWEB_OUT)/vendor/%: $(WEB_NPM)/%
	@mkdir -p $(dir $@)
	cp $< $@
$(WEB_OUT)/%: gateway/web/%
	@mkdir -p $(dir $@)
	cp $< $@
$(WEB_NPM)/uPlot.esm.js: gateway/web/package-lock.json
	@command -v npm >/dev/null 2>&1 || { echo "make: the dashboard needs npm: make deps (or apt-get install nodejs npm)" >&2; exit 1; }
	cd gateway/web && npm ci --no-audit --no-fund --loglevel=error
	@touch $@
$(WEB_NPM)/uPlot.min.css: $(WEB_NPM)/uPlot.esm.js
$(WEB_OUT)/vendor/%: $(WEB_NPM)/%
	@mkdir -p $(dir $@)
	cp $< $@

deps:
	@deploy/install-deps.sh

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(FINAL_CFLAGS) -MMD -MP -c $< -o $@

define module_lib
$(BUILD)/lib$(1).a: $(patsubst %.c,$(BUILD)/%.o,$(LIB_$(1)))
	@mkdir -p $$(dir $$@)
	rm -f $$@ && ar rcs $$@ $$^
endef
$(foreach m,$(MODULES),$(eval $(call module_lib,$(m))))

$(BIN)/sitegated: $(BUILD)/gateway/sitegated.o $(LIBS)
$(BIN)/sitectl: $(patsubst %.c,$(BUILD)/%.o,$(wildcard gateway/sitectl/*.c)) $(LIBS)
$(BIN)/sitesim: $(patsubst %.c,$(BUILD)/%.o,$(wildcard sensors/*.c)) $(LIBS)
$(BIN)/sitegate-rx: $(patsubst %.c,$(BUILD)/%.o,$(wildcard authority/*.c)) $(LIBS)
$(BENCH_PROGRAMS): $(BIN)/%: $(BUILD)/bench/%.o $(LIBS)
$(PROGRAMS) $(BENCH_PROGRAMS):
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $(filter %.o,$^) $(LIBS) $(FINAL_LDLIBS)

$(BUILD)/tests/%: $(BUILD)/tests/%.o $(LIBS)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $< $(LIBS) $(FINAL_LDLIBS) $(call pkglibs,$(TEST_PKGS))

# The README's test command: installs what is missing, then every unit test
# and every integration test (real binaries over loopback).
test: deps
	@$(MAKE) --no-print-directory unit integration

unit: $(TEST_PROGRAMS)
	@tests/check-layout.sh
	@tests/run-units.sh $(TEST_PROGRAMS)

integration: $(PROGRAMS) web
	@SITEGATE_BIN=$(abspath $(BIN)) tests/integration/run.sh

# The integration suite 3 times on a machine made slow on purpose (a python3
# that takes 0.5 s to start first on PATH, one CPU spinning): every round
# must pass. About 3 x 10 minutes on 2 cores, so not in .ci/run.
test-stress: deps
	@$(MAKE) --no-print-directory all
	@SITEGATE_BIN=$(abspath $(BIN)) tests/integration/stress.sh

# The same suite under AddressSanitizer + UBSan, in its own build tree.
asan: deps
	@$(MAKE) --no-print-directory BUILD=build-asan BIN=build-asan/bin \
	  CFLAGS="-O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all" \
	  LDFLAGS="-fsanitize=address,undefined" unit integration

# libFuzzer harnesses (clang), each run for FUZZ_SECONDS over its corpus.
fuzz: deps
	@$(MAKE) --no-print-directory CC=clang BUILD=build-fuzz BIN=build-fuzz/bin \
	  CFLAGS="-O1 -g -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=all" \
	  $(patsubst tests/fuzz/%.c,build-fuzz/bin/%,$(FUZZ_SRC))
	@for f in $(patsubst tests/fuzz/%.c,%,$(FUZZ_SRC)); do \
	  mkdir -p build-fuzz/corpus/$$f; \
	  echo "fuzz: $$f for $(FUZZ_SECONDS)s"; \
	  build-fuzz/bin/$$f -max_total_time=$(FUZZ_SECONDS) -print_final_stats=0 \
	    build-fuzz/corpus/$$f tests/data/$$f || exit 1; \
	done
# Every harness to 10 million executions (FUZZ_RUNS) over its kept corpus
# in tests/data/ (grown with what it finds), a line of execs and coverage
# each: hours, so not in .ci/run.
fuzz-long: deps
	@$(MAKE) --no-print-directory CC=clang BUILD=build-fuzz BIN=build-fuzz/bin \
	  CFLAGS="-O1 -g -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=all" \
	  $(patsubst tests/fuzz/%.c,build-fuzz/bin/%,$(FUZZ_SRC))
	@FUZZ_RUNS=$(FUZZ_RUNS) tests/fuzz/long.sh build-fuzz/bin $(patsubst tests/fuzz/%.c,%,$(FUZZ_SRC))
# sitegate-rx's framing is compiled into its harness (rxserver.c, with stubs).
$(BUILD)/tests/fuzz/fuzz_rxframe.o: authority/rxserver.c
# The load generator's CoAP reader lives in sitesim, not in a library.
$(BIN)/fuzz_rawcoap: FUZZ_OBJS = $(BUILD)/sensors/rawcoap.o
$(BIN)/fuzz_rawcoap: $(BUILD)/sensors/rawcoap.o
$(BIN)/fuzz_%: $(BUILD)/tests/fuzz/fuzz_%.o $(LIBS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -fsanitize=fuzzer,address,undefined -o $@ $< $(FUZZ_OBJS) $(LIBS) $(FINAL_LDLIBS)

# The receiver at an authority's scale: 1,000 TLS gateways against one
# sitegate-rx on SQLite, one and two on PostgreSQL, 10,000 idle connections
# (bench/rx.sh; a few minutes, 1,000s of certificates made once).
bench-rx: deps
	@$(MAKE) --no-print-directory all
	@SITEGATE_BIN=$(abspath $(BIN)) bench/rx.sh

# The receiver's minute data at a province's size: 3,000 sites in
# PostgreSQL, a month of minutes at full density and eleven thin months,
# and the per-site month query (bench/rx_scale.sh; ~30 GB of disk for a
# while, tens of minutes). Not part of `make bench`.
bench-rx-scale: deps
	@$(MAKE) --no-print-directory all
	@SITEGATE_BIN=$(abspath $(BIN)) bench/rx_scale.sh

bench: deps
	@$(MAKE) --no-print-directory all
	@SITEGATE_BIN=$(abspath $(BIN)) bench/run.sh

# The option rows of deploy/CONFIG.md, from common/config.c's table (the
# meaning column left to write); tests/test_docs.c fails until they match.
config-reference: $(BUILD)/tests/test_docs
	@$(BUILD)/tests/test_docs --print

lint:
	clang-format --dry-run --Werror $(shell git ls-files '*.c' '*.h')

demo: deps
	@$(MAKE) --no-print-directory all
	@deploy/demo.sh

# GNU conventions: DESTDIR stages (nothing is written outside it when it is
# set), PREFIX, BINDIR, DATADIR, DOCDIR; SYSCONFDIR is /etc and the unit and
# sysusers folders are systemd's (pkg-config) for the system prefixes /usr
# and /usr/local; any other PREFIX is a private tree and gets all of them
# under it, so a trial install never touches the live unit or config.
# Installing into the live system (no DESTDIR, or DESTDIR=/) also creates
# the sitegate user and lets its group read the config (systemd-sysusers).
BINDIR  ?= $(PREFIX)/bin
DATADIR ?= $(PREFIX)/share
DOCDIR  ?= $(DATADIR)/doc/sitegate
ifneq ($(filter /usr /usr/local,$(PREFIX)),)
SYSCONFDIR  ?= /etc
UNITDIR     ?= $(or $(shell $(PKG_CONFIG) --variable=systemdsystemunitdir systemd 2>/dev/null),/lib/systemd/system)
SYSUSERSDIR ?= $(or $(shell $(PKG_CONFIG) --variable=sysusersdir systemd 2>/dev/null),/usr/lib/sysusers.d)
else
SYSCONFDIR  ?= $(PREFIX)/etc
UNITDIR     ?= $(PREFIX)/lib/systemd/system
SYSUSERSDIR ?= $(PREFIX)/lib/sysusers.d
endif
DOCS := README.md deploy/CONFIG.md protocol/COAP.md protocol/HTTP.md protocol/UPLINK.md \
  protocol/RX-SCHEMA.md
UNIT_SUBST = sed -e 's|@BINDIR@|$(BINDIR)|g' -e 's|@SYSCONFDIR@|$(SYSCONFDIR)|g' -e 's|@DOCDIR@|$(DOCDIR)|g'
LIVE_INSTALL = $(if $(filter-out /,$(DESTDIR)),,$(if $(filter /usr /usr/local,$(PREFIX)),yes))

# install-files installs what is built (BIN= says where), building nothing:
# the systemd test installs the binaries it is given.
install: all
	@$(MAKE) --no-print-directory install-files
install-files:
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(DATADIR)/sitegate/web/vendor $(DESTDIR)$(DOCDIR) \
	  $(DESTDIR)$(DATADIR)/sitegate-rx/web/vendor \
	  $(DESTDIR)$(SYSCONFDIR)/sitegate $(DESTDIR)$(UNITDIR) $(DESTDIR)$(SYSUSERSDIR)
	install -m 755 $(PROGRAMS) $(DESTDIR)$(BINDIR)/
	install -m 644 $(filter-out $(WEB_OUT)/vendor/%,$(WEB_FILES)) $(DESTDIR)$(DATADIR)/sitegate/web/
	install -m 644 $(filter $(WEB_OUT)/vendor/%,$(WEB_FILES)) $(DESTDIR)$(DATADIR)/sitegate/web/vendor/
	install -m 644 $(filter-out $(RXWEB_OUT)/vendor/%,$(RXWEB_FILES)) $(DESTDIR)$(DATADIR)/sitegate-rx/web/
	install -m 644 $(filter $(RXWEB_OUT)/vendor/%,$(RXWEB_FILES)) $(DESTDIR)$(DATADIR)/sitegate-rx/web/vendor/
	install -m 644 $(DOCS) $(DESTDIR)$(DOCDIR)/
	install -m 644 deploy/sitegate.conf $(DESTDIR)$(DOCDIR)/sitegate.conf.example
	test -e $(DESTDIR)$(SYSCONFDIR)/sitegate/sitegate.conf || \
	  install -m 640 deploy/sitegate.conf $(DESTDIR)$(SYSCONFDIR)/sitegate/sitegate.conf
	$(UNIT_SUBST) deploy/sitegated.service > $(DESTDIR)$(UNITDIR)/sitegated.service
	$(UNIT_SUBST) deploy/sitegate-rx.service > $(DESTDIR)$(UNITDIR)/sitegate-rx.service
	chmod 644 $(DESTDIR)$(UNITDIR)/sitegated.service $(DESTDIR)$(UNITDIR)/sitegate-rx.service
	install -m 644 deploy/sysusers-sitegate.conf $(DESTDIR)$(SYSUSERSDIR)/sitegate.conf
	install -m 644 deploy/sysusers-sitegate-rx.conf $(DESTDIR)$(SYSUSERSDIR)/sitegate-rx.conf
ifeq ($(LIVE_INSTALL),yes)
	@if [ "$$(id -u)" = 0 ] && command -v systemd-sysusers >/dev/null 2>&1; then \
	  echo "install: the sitegate user and group; $(SYSCONFDIR)/sitegate/sitegate.conf 0640 root:sitegate"; \
	  systemd-sysusers $(SYSUSERSDIR)/sitegate.conf $(SYSUSERSDIR)/sitegate-rx.conf && \
	  chown root:sitegate $(SYSCONFDIR)/sitegate/sitegate.conf && \
	  chmod 640 $(SYSCONFDIR)/sitegate/sitegate.conf; \
	  [ -d /run/systemd/system ] && systemctl daemon-reload || true; \
	fi
endif

# Debian packages (sitegate, sitegate-rx, sitegate-sim) with debhelper,
# built from a copy of the tree in build/deb/ARCH/ (dpkg-buildpackage writes
# beside the source, which must stay inside this tree), then lintian.
# ARCH=arm64 cross-builds (deploy/install-deps.sh arm64 installs what that
# needs; the build-dependency check is left to it, as libpq-dev:arm64 is
# unpacked, not installed). Not part of `make test`.
DEB_DIR := $(BUILD)/deb/$(ARCH)
deb: $(WEB_NPM)/uPlot.esm.js
	@deploy/install-deps.sh $(if $(CROSS_ROOT),$(ARCH),deb)
	$(if $(CROSS_ROOT),@$(MAKE) --no-print-directory ARCH=$(ARCH) cross-libpq)
	rm -rf $(DEB_DIR) && mkdir -p $(DEB_DIR)/sitegate
	git ls-files -z --cached --others --exclude-standard | grep -zv '^debian/.*~$$' | \
	  xargs -0 cp -p --parents -t $(DEB_DIR)/sitegate
	cp -rp --parents gateway/web/node_modules/uplot $(DEB_DIR)/sitegate
	cd $(DEB_DIR)/sitegate && $(if $(CROSS_ROOT),CROSS_ROOT=$(CROSS_ROOT) DEB_BUILD_OPTIONS="nocheck $$DEB_BUILD_OPTIONS") \
	  dpkg-buildpackage -b -us -uc -a$(ARCH) $(if $(CROSS_ROOT),-d -Pnocheck)
	lintian --fail-on error,warning $(DEB_DIR)/*.changes
	@ls -l $(DEB_DIR)/*.deb

# libpq-dev for a foreign ARCH, unpacked under $(BUILD)/cross/ARCH/ (see
# "Cross builds" at the top), of the version of its installed libpq5.
cross-libpq: $(CROSS_ROOT)/usr/lib/$(CROSS_TRIPLET)/pkgconfig/libpq.pc
$(CROSS_ROOT)/usr/lib/$(CROSS_TRIPLET)/pkgconfig/libpq.pc:
	rm -rf $(CROSS_ROOT) && mkdir -p $(CROSS_ROOT)/debs
	cd $(CROSS_ROOT)/debs && apt-get download -q \
	  "libpq-dev:$(ARCH)=$$(dpkg-query -W -f='$${Version}' libpq5:$(ARCH))" 2>&1 | grep -v unsandboxed || true
	dpkg-deb -x $(CROSS_ROOT)/debs/libpq-dev_*_$(ARCH).deb $(CROSS_ROOT)
	sed -i 's|^prefix=.*|prefix=$(CROSS_ROOT)/usr|' $@
	ln -sf /usr/lib/$(CROSS_TRIPLET)/libpq.so.5 $(CROSS_ROOT)/usr/lib/$(CROSS_TRIPLET)/libpq.so

# The cmocka unit tests of the arm64 build (build-arm64/), each run under
# qemu-user, then one end-to-end smoke test of the arm64 programs (also
# under qemu-user, through build-arm64/qemu-bin/). Installs what it needs
# (deploy/install-deps.sh arm64); not part of `make test` or .ci/run.
ARM64 := ARCH=arm64 BUILD=build-arm64 BIN=build-arm64/bin
test-arm64:
	@deploy/install-deps.sh arm64
	@$(MAKE) --no-print-directory $(ARM64) cross-libpq
	@$(MAKE) --no-print-directory $(ARM64) unit-programs
	@UNIT_RUNNER=qemu-aarch64 tests/run-units.sh $(patsubst $(BUILD)/%,build-arm64/%,$(TEST_PROGRAMS))
	@tests/arm64-smoke.sh build-arm64

unit-programs: $(TEST_PROGRAMS) $(PROGRAMS) web

# The package upgrade (tests/integration/upgrade_packages.sh): packages from
# an older commit (UPGRADE_FROM, by default main's first with debian/) and
# from this tree, the old installed and storing readings under a throwaway
# systemd, then the new over it. 3 to 8 minutes on 2 cores (two package
# builds), so not in `make test`.
test-upgrade: deps
	@SITEGATE_BIN=/usr/bin $(if $(UPGRADE_FROM),SITEGATE_UPGRADE_FROM=$(UPGRADE_FROM)) \
	  bash tests/integration/upgrade_packages.sh

clean:
	rm -rf build build-asan build-fuzz bin share

# (build/deb/ holds the packages' own trees: their .d files and sysusers.d are not ours)
-include $(shell find $(BUILD) -path '$(BUILD)/deb' -prune -o -type f -name '*.d' -print 2>/dev/null)
