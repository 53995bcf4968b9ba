# ipfailover — build, test, demo, install.
#
#   make                      build the three programs (release)
#   make demo                 the pair in network namespaces on this machine (as root)
#   make test                 every test, the end-to-end ones on real namespaces (as root)
#   make lint                 rustfmt and clippy, as CI runs them
#   make install              install binaries, service files, samples, hook templates, docs (as root)
#
# install honours PREFIX (default /usr/local) and DESTDIR (staging root for packagers), and
# BUILD=debug to install the debug binaries instead of the release ones.

CARGO ?= cargo
PREFIX ?= /usr/local
DESTDIR ?=
BUILD ?= release
SYSCONFDIR ?= /etc
SBINDIR = $(PREFIX)/sbin
BINDIR = $(PREFIX)/bin
SHAREDIR = $(PREFIX)/share/ipfailover
DOCDIR = $(PREFIX)/share/doc/ipfailover
UNAME := $(shell uname -s)
ifeq ($(UNAME),Darwin)
LAUNCHDDIR ?= /Library/LaunchDaemons
else
SYSTEMDDIR ?= /etc/systemd/system
endif

.PHONY: all build debug test demo lint install uninstall clean

all: build

build:
	$(CARGO) build --workspace --release

# The end-to-end tests start the real daemons: build them before testing.
debug:
	$(CARGO) build --workspace --bins

# scripts/deps installs (as root on Debian/Ubuntu) or names what the tests need; the demo
# only checks that it can make namespaces, before anything is built.
test:
	scripts/deps test
	$(CARGO) build --workspace --bins
	$(CARGO) test --workspace

DEMO ?= ./target/debug/ipfo-demo
demo:
	@scripts/deps demo
	$(CARGO) build --workspace --bins
	$(DEMO)

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

install:
	@test -x target/$(BUILD)/failoverd || { echo "target/$(BUILD)/failoverd is missing: run make first (or make debug and BUILD=debug)"; exit 1; }
	install -d $(DESTDIR)$(SBINDIR) $(DESTDIR)$(BINDIR) $(DESTDIR)$(SHAREDIR)/etc/peering $(DESTDIR)$(DOCDIR)
	install -m 755 target/$(BUILD)/heartbeatd target/$(BUILD)/failoverd $(DESTDIR)$(SBINDIR)/
	if [ -x target/$(BUILD)/failoverctl ]; then install -m 755 target/$(BUILD)/failoverctl $(DESTDIR)$(BINDIR)/; fi
	# Samples go beside the live configuration, never over it.
	install -d -m 755 $(DESTDIR)$(SYSCONFDIR)/ipfailover
	install -m 644 etc/hostconfig.primary etc/hostconfig.secondary etc/ipfailover.toml $(DESTDIR)$(SHAREDIR)/etc/
	install -m 644 etc/peering/*.hostconfig $(DESTDIR)$(SHAREDIR)/etc/peering/
	if [ -d hooks-template ]; then rm -rf $(DESTDIR)$(SHAREDIR)/hooks-template && cp -R hooks-template $(DESTDIR)$(SHAREDIR)/ && chmod -R go-w $(DESTDIR)$(SHAREDIR)/hooks-template; fi
	install -m 644 README.md $(DESTDIR)$(DOCDIR)/
	if [ -d docs ]; then install -m 644 docs/*.md $(DESTDIR)$(DOCDIR)/; fi
ifeq ($(UNAME),Darwin)
	install -d $(DESTDIR)$(LAUNCHDDIR)
	for f in launchd/*.plist; do sed 's#/usr/local#$(PREFIX)#g' $$f > $(DESTDIR)$(LAUNCHDDIR)/$$(basename $$f); chmod 644 $(DESTDIR)$(LAUNCHDDIR)/$$(basename $$f); done
	install -d -m 755 $(DESTDIR)/var/log/ipfailover
else
	install -d $(DESTDIR)$(SYSTEMDDIR)
	for f in systemd/*.service; do sed 's#/usr/local#$(PREFIX)#g' $$f > $(DESTDIR)$(SYSTEMDDIR)/$$(basename $$f); chmod 644 $(DESTDIR)$(SYSTEMDDIR)/$$(basename $$f); done
endif
	@echo "installed under $(DESTDIR)$(PREFIX); configuration goes in $(SYSCONFDIR)/ipfailover/hostconfig (samples in $(SHAREDIR)/etc)"

uninstall:
	rm -f $(DESTDIR)$(SBINDIR)/heartbeatd $(DESTDIR)$(SBINDIR)/failoverd $(DESTDIR)$(BINDIR)/failoverctl
	rm -rf $(DESTDIR)$(SHAREDIR) $(DESTDIR)$(DOCDIR)
ifeq ($(UNAME),Darwin)
	rm -f $(DESTDIR)$(LAUNCHDDIR)/org.ipfailover.heartbeatd.plist $(DESTDIR)$(LAUNCHDDIR)/org.ipfailover.failoverd.plist
else
	rm -f $(DESTDIR)$(SYSTEMDDIR)/heartbeatd.service $(DESTDIR)$(SYSTEMDDIR)/failoverd.service
endif

clean:
	$(CARGO) clean
