# orderd — one non-recursive Makefile.
#
#   make            build build/orderd
#   make run        install missing packages, build, run on 127.0.0.1:8080 (db in ./var/)
#   make test       install missing packages, build, run every suite
#                   (unit + integration under ASan/UBSan, threaded tests under TSan)
#   make install    DESTDIR/PREFIX honoured
#   make deb        build/orderd_<VERSION>-1_<arch>.deb (debian/, build-aux/build-deb.sh)
#
# Sanitizer flavours are the same sources built into their own directory:
#   make O=build/asan SAN=address,undefined
#   make O=build/tsan SAN=thread

PREFIX    ?= /usr/local
DESTDIR   ?=
BINDIR    ?= $(PREFIX)/bin
MANDIR    ?= $(PREFIX)/share/man
SYSCONFDIR ?= /etc
UNITDIR   ?= /lib/systemd/system
SYSUSERSDIR ?= /usr/lib/sysusers.d
TMPFILESDIR ?= /usr/lib/tmpfiles.d

O   ?= build
SAN ?=

VERSION := $(shell cat VERSION 2>/dev/null || echo 0.0.0)

# --- dependencies: the one place that knows which Debian packages we need ---
DEB_BUILD := build-essential pkg-config libmicrohttpd-dev libsqlite3-dev \
             libjansson-dev libuv1-dev libinih-dev libgnutls28-dev libpq-dev \
             libcurl4-gnutls-dev check
DEB_TEST  := curl sqlite3 clang libclang-rt-14-dev systemd util-linux procps e2fsprogs \
             prometheus prometheus-alertmanager groff-base man-db nodejs shellcheck \
             chromium openssl postgresql strace jq python3 \
             fuse3 libfuse3-dev libtoml11-dev libspdlog-dev
DEB_BENCH := wrk nginx-light curl sqlite3 python3
# make deb, and tests/package/run.sh (lintian; python3-yaml reads the CI workflow)
DEB_PACKAGE := debhelper dpkg-dev lintian python3-yaml

PKGS := libmicrohttpd sqlite3 jansson libuv inih gnutls libpq libcurl
CC ?= cc
CFLAGS ?= -O2 -g
WARN := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
        -Wformat=2 -Wno-format-nonliteral
CPPFLAGS_ALL := -Iinclude -Isrc -D_GNU_SOURCE -DORDERD_VERSION='"$(VERSION)"' \
        $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
CFLAGS_ALL := -std=c11 $(WARN) -pthread -fno-omit-frame-pointer $(CFLAGS)
LDLIBS_ALL := $(shell pkg-config --libs $(PKGS) 2>/dev/null) -pthread -lm
CHECK_LIBS := $(shell pkg-config --libs check 2>/dev/null)

ifneq ($(SAN),)
CFLAGS_ALL += -fsanitize=$(SAN) -fno-sanitize-recover=all -O1
LDLIBS_ALL += -fsanitize=$(SAN)
endif

SRCS      := $(wildcard src/*.c)
LIB_SRCS  := $(filter-out src/main.c,$(SRCS))
LIB_OBJS  := $(LIB_SRCS:src/%.c=$(O)/obj/%.o)
MAIN_OBJ  := $(O)/obj/main.o
UNIT_SRCS := $(wildcard tests/unit/*.c)
UNIT_OBJS := $(UNIT_SRCS:tests/unit/%.c=$(O)/obj/tests/%.o)

.PHONY: all run test unit integration test-asan test-tsan test-static test-browser test-durability bench bench-scale \
        bench-fulfilment bench-retention fuzz \
        install uninstall clean deps deps-test deps-bench format lint \
        deb test-package deps-package

all: $(O)/orderd $(O)/mhd_static

V ?= 0
Q := $(if $(filter 1,$(V)),,@)

$(O)/obj/%.o: src/%.c
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CC      $@")
	$(Q)$(CC) $(CPPFLAGS_ALL) $(CFLAGS_ALL) -MMD -MP -c $< -o $@

$(O)/obj/tests/%.o: tests/unit/%.c
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CC      $@")
	$(Q)$(CC) $(CPPFLAGS_ALL) $(CFLAGS_ALL) -MMD -MP -c $< -o $@

$(O)/orderd: $(LIB_OBJS) $(MAIN_OBJ)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(CFLAGS_ALL) -o $@ $^ $(LDLIBS_ALL)

# bench/run.sh's second reference server: libmicrohttpd answering a static 202
$(O)/mhd_static: bench/mhd_static.c
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CC      $@")
	$(Q)$(CC) $(CPPFLAGS_ALL) $(CFLAGS_ALL) -o $@ $< $(LDLIBS_ALL)

# bench/fulfilment.sh's ceiling for fulfilment_command: /bin/true started as src/fulfilment.c does
$(O)/spawn_rate: bench/spawn_rate.c
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CC      $@")
	$(Q)$(CC) $(CPPFLAGS_ALL) $(CFLAGS_ALL) -o $@ $<

$(O)/unit-tests: $(LIB_OBJS) $(UNIT_OBJS)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(CFLAGS_ALL) -o $@ $^ $(CHECK_LIBS) $(LDLIBS_ALL)

-include $(LIB_OBJS:.o=.d) $(MAIN_OBJ:.o=.d) $(UNIT_OBJS:.o=.d)

# --- packages -------------------------------------------------------------
# build-aux/apt-install-missing.sh installs what is missing and prints what it
# installs; it waits up to APT_LOCK_TIMEOUT seconds for another apt or dpkg
# (unattended-upgrades on a fresh machine) instead of failing on its lock.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
APT_LOCK_TIMEOUT ?= 600
APT_INSTALL_MISSING = SUDO='$(SUDO)' APT_LOCK_TIMEOUT='$(APT_LOCK_TIMEOUT)' \
        bash build-aux/apt-install-missing.sh

deps:
	@$(APT_INSTALL_MISSING) $(DEB_BUILD)
# --npm: Debian's npm only when there is no npm command (see the script).
deps-test: deps
	@$(APT_INSTALL_MISSING) --npm $(DEB_TEST) $(DEB_PACKAGE)
deps-package: deps
	@$(APT_INSTALL_MISSING) $(DEB_PACKAGE)
deps-bench: deps
	@$(APT_INSTALL_MISSING) $(DEB_BENCH)

# --- run ------------------------------------------------------------------
# etc/orderd/dev.conf: 127.0.0.1:8080, database var/orderd.db (orderd creates var/ 0750).
run: deps
	$(MAKE) all
	./$(O)/orderd -c etc/orderd/dev.conf

# --- tests ----------------------------------------------------------------
# unit: check suites; integration: the real binary driven by curl.
unit: $(O)/unit-tests
	CK_FORK=yes ./$(O)/unit-tests

integration: $(O)/orderd
	TEST_ORDERD_BIN=$(abspath $(O)/orderd) tests/integration/run.sh

test: deps-test
	$(MAKE) all
	$(MAKE) test-static
	$(MAKE) O=build/asan SAN=address,undefined unit integration
	TEST_ORDERD_BIN=$(abspath build/asan/orderd) tests/pg/run.sh
	$(MAKE) O=build/tsan SAN=thread unit
	$(MAKE) O=build/tsan SAN=thread TEST_FILTER=threaded integration
	TEST_ORDERD_BIN=$(abspath build/orderd) tests/crash/run.sh
	TEST_ORDERD_BIN=$(abspath build/orderd) tests/durability/run.sh
	TEST_ORDERD_BIN=$(abspath build/orderd) tests/ops/run.sh
	@if [ -x tests/observability/run.sh ]; then \
	  TEST_ORDERD_BIN=$(abspath build/orderd) tests/observability/run.sh; fi
	TEST_ORDERD_BIN=$(abspath build/asan/orderd) tests/browser/run.sh
	tests/package/run.sh
	FUZZ_SECONDS=$(FUZZ_SMOKE_SECONDS) tests/fuzz/run.sh
	@echo "make test: every suite passed"

# Each fuzz target runs this long in make test (make fuzz: FUZZ_SECONDS, default 30).
FUZZ_SMOKE_SECONDS ?= 5

# the status page's dead-letter console in headless chromium (puppeteer-core
# from npm, under build/browser-npm; screenshots in build/browser/)
test-browser: all
	TEST_ORDERD_BIN=$(abspath $(O)/orderd) tests/browser/run.sh

# the Debian package: the CI workflow's shape, lintian, install, remove and
# purge on this machine, upgrade from the previous release tag (root; it
# leaves the machine as it found it; see tests/package/run.sh)
test-package: deps-package
	tests/package/run.sh

# power cuts and torn writes on LazyFS (docs/durability.md); LAZYFS=path/to/lazyfs
# (.ci/run builds it from ../shared); without it: "skipped: no LazyFS"
test-durability: all
	TEST_ORDERD_BIN=$(abspath $(O)/orderd) tests/durability/run.sh

# static checks of the files an operator installs
test-static: all
	tests/ops/static.sh

bench: deps-bench all
	bench/run.sh

# processing rate of the workers, each row against its own ceiling (docs/performance.md)
bench-fulfilment: deps-bench all $(O)/spawn_rate
	BENCH_ORDERD_BIN=$(abspath $(O)/orderd) bench/fulfilment.sh

# what purging 1 M expired orders costs durable intake (issue 20; ~13 min)
bench-retention: deps-bench all
	BENCH_ORDERD_BIN=$(abspath $(O)/orderd) bash bench/retention.sh

# intake with 1, 2 and 3 nodes on one PostgreSQL (docs/scale-out.md)
bench-scale: deps-bench deps-test all
	TEST_ORDERD_BIN=$(abspath $(O)/orderd) tests/pg/bench.sh

fuzz:
	tests/fuzz/run.sh

# --- package ----------------------------------------------------------------
# The .deb of this tree with Debian's tooling (dpkg-buildpackage, debhelper);
# the version is VERSION's, which debian/changelog must have an entry for.
deb: deps-package
	bash build-aux/build-deb.sh . build

# --- install ----------------------------------------------------------------
install: all
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(UNITDIR) $(DESTDIR)$(SYSCONFDIR)/orderd \
	  $(DESTDIR)$(MANDIR)/man8 $(DESTDIR)$(MANDIR)/man5 \
	  $(DESTDIR)$(SYSUSERSDIR) $(DESTDIR)$(TMPFILESDIR)
	install -m 0755 $(O)/orderd $(DESTDIR)$(BINDIR)/orderd
	sed 's|@BINDIR@|$(BINDIR)|g' systemd/orderd.service > $(DESTDIR)$(UNITDIR)/orderd.service
	chmod 0644 $(DESTDIR)$(UNITDIR)/orderd.service
	install -m 0644 systemd/orderd.sysusers $(DESTDIR)$(SYSUSERSDIR)/orderd.conf
	install -m 0644 systemd/orderd.tmpfiles $(DESTDIR)$(TMPFILESDIR)/orderd.conf
	[ -e $(DESTDIR)$(SYSCONFDIR)/orderd/orderd.conf ] || \
	  install -m 0640 etc/orderd/orderd.conf $(DESTDIR)$(SYSCONFDIR)/orderd/orderd.conf
	install -m 0644 docs/orderd.8 $(DESTDIR)$(MANDIR)/man8/orderd.8
	install -m 0644 docs/orderd.conf.5 $(DESTDIR)$(MANDIR)/man5/orderd.conf.5
	@# On a real system (no DESTDIR): create the user and state directory now and
	@# let the orderd group read its config, so `systemctl start orderd` works.
	@if [ -z "$(DESTDIR)" ]; then \
	  systemd-sysusers $(SYSUSERSDIR)/orderd.conf && \
	  systemd-tmpfiles --create $(TMPFILESDIR)/orderd.conf && \
	  chgrp orderd $(SYSCONFDIR)/orderd/orderd.conf && \
	  { systemctl daemon-reload 2>/dev/null || true; }; \
	fi

uninstall:
	rm -f $(DESTDIR)$(BINDIR)/orderd $(DESTDIR)$(UNITDIR)/orderd.service \
	  $(DESTDIR)$(SYSUSERSDIR)/orderd.conf $(DESTDIR)$(TMPFILESDIR)/orderd.conf \
	  $(DESTDIR)$(MANDIR)/man8/orderd.8 $(DESTDIR)$(MANDIR)/man5/orderd.conf.5
	@echo "kept $(DESTDIR)$(SYSCONFDIR)/orderd/ and /var/lib/orderd (your config and data)"

format:
	clang-format -i src/*.c include/*.h tests/unit/*.c

lint:
	cppcheck --quiet --error-exitcode=1 --enable=warning,performance,portability \
	  --inline-suppr -Iinclude src

clean:
	rm -rf build
