# ipfailover — build, test, demo, install.
#
#   make                      build the three programs (release)
#   make demo                 the pair in network namespaces on this machine (as root)
#   make demo-group           three members and a three-member etcd cluster (as root)
#   make test                 every test, the end-to-end ones on real namespaces (as root), and
#                             the model checker at two faults (release build)
#   make lint                 rustfmt and clippy, as CI runs them
#   make check-macos          the product type-checked for macOS (clippy, warnings denied)
#   make man                  manual pages and bash/zsh/fish completions, in target/man
#   make deb                  the Debian package, target/debian/ipfailover_<version>_<arch>.deb
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

.PHONY: all build debug test demo demo-group lint check-macos man deb install uninstall clean

all: build

build:
	$(CARGO) build --workspace --release

# The end-to-end tests start the real daemons: build them before testing.
debug:
	$(CARGO) build --workspace --bins

# scripts/deps installs (as root on Debian/Ubuntu) or names what the tests need; the demo
# only checks that it can make namespaces, before anything is built.
#
# The model checker (docs/hardening.md, "The model checker") runs once, optimised: its two
# faults per run take one and a half to three minutes to build and one and a half to two to
# check in release, where a debug build explores six to twelve times slower (a quarter of an
# hour or more). Its debug tests check one fault only, so they are left out here rather than
# run as well.
test:
	scripts/deps test
	$(CARGO) build --workspace --bins
	$(CARGO) test --workspace --exclude ipfailover-model
	$(CARGO) test --release -p ipfailover-model

DEMO ?= ./target/debug/ipfo-demo
demo:
	@scripts/deps demo
	$(CARGO) build --workspace --bins
	$(DEMO)

# The group demo needs etcd: scripts/deps group installs it (as root on Debian/Ubuntu).
DEMO_GROUP ?= ./target/debug/ipfo-demo-group
demo-group:
	@scripts/deps group
	$(CARGO) build --workspace --bins
	$(DEMO_GROUP)

# Manual pages and shell completions, generated from the programs and docs/configuration.md.
man: build
	scripts/man target/$(BUILD) target/man

# The Debian package, with cargo-deb (cargo install cargo-deb): target/debian/ipfailover_*.deb.
deb:
	scripts/deb

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

# macOS is compiled, not only written: the product crates type-checked for macOS, warnings
# denied (TLS there is the platform's own; ring would need Apple's SDK).
MACOS_TARGET ?= x86_64-apple-darwin
check-macos:
	scripts/deps macos
	$(CARGO) clippy --target $(MACOS_TARGET) -p ipfailover -p ipfailover-os -p ipfailover-etcd -p ipfailover-runtime -p heartbeatd -p failoverd -p failoverctl -- -D warnings

install:
	@test -x target/$(BUILD)/failoverd || { echo "target/$(BUILD)/failoverd is missing: run make first (or make debug and BUILD=debug)"; exit 1; }
	install -d $(DESTDIR)$(SBINDIR) $(DESTDIR)$(BINDIR) $(DESTDIR)$(SHAREDIR)/etc/peering $(DESTDIR)$(DOCDIR)
	install -m 755 target/$(BUILD)/heartbeatd target/$(BUILD)/failoverd $(DESTDIR)$(SBINDIR)/
	if [ -x target/$(BUILD)/failoverctl ]; then install -m 755 target/$(BUILD)/failoverctl $(DESTDIR)$(BINDIR)/; fi
	# Samples go beside the live configuration, never over it.
	install -d -m 755 $(DESTDIR)$(SYSCONFDIR)/ipfailover
	install -m 644 etc/hostconfig.primary etc/hostconfig.secondary etc/hostconfig.group etc/ipfailover.toml $(DESTDIR)$(SHAREDIR)/etc/
	install -m 644 etc/peering/*.hostconfig $(DESTDIR)$(SHAREDIR)/etc/peering/
	if [ -d hooks-template ]; then rm -rf $(DESTDIR)$(SHAREDIR)/hooks-template && cp -R hooks-template $(DESTDIR)$(SHAREDIR)/ && chmod -R go-w $(DESTDIR)$(SHAREDIR)/hooks-template; fi
	install -m 644 README.md $(DESTDIR)$(DOCDIR)/
	# Manual pages and completions, when made (make man; the package always makes them).
	if [ -d target/man ]; then \
		install -d $(DESTDIR)$(PREFIX)/share/man/man8 $(DESTDIR)$(PREFIX)/share/man/man5 $(DESTDIR)$(PREFIX)/share/bash-completion/completions $(DESTDIR)$(PREFIX)/share/zsh/vendor-completions $(DESTDIR)$(PREFIX)/share/fish/vendor_completions.d; \
		install -m 644 target/man/man8/*.8 $(DESTDIR)$(PREFIX)/share/man/man8/; \
		install -m 644 target/man/man5/*.5 $(DESTDIR)$(PREFIX)/share/man/man5/; \
		install -m 644 target/man/bash/* $(DESTDIR)$(PREFIX)/share/bash-completion/completions/; \
		install -m 644 target/man/zsh/_* $(DESTDIR)$(PREFIX)/share/zsh/vendor-completions/; \
		install -m 644 target/man/fish/*.fish $(DESTDIR)$(PREFIX)/share/fish/vendor_completions.d/; \
	fi
	if [ -d docs ]; then install -m 644 docs/*.md $(DESTDIR)$(DOCDIR)/; fi
ifeq ($(UNAME),Darwin)
	install -d $(DESTDIR)$(LAUNCHDDIR)
	for f in launchd/*.plist; do sed 's#/usr/local#$(PREFIX)#g' $$f > $(DESTDIR)$(LAUNCHDDIR)/$$(basename $$f); chmod 644 $(DESTDIR)$(LAUNCHDDIR)/$$(basename $$f); done
	install -d -m 755 $(DESTDIR)/var/log/ipfailover
else
	install -d $(DESTDIR)$(SYSTEMDDIR)
	for f in systemd/*.service systemd/*.timer; do sed 's#/usr/local#$(PREFIX)#g' $$f > $(DESTDIR)$(SYSTEMDDIR)/$$(basename $$f); chmod 644 $(DESTDIR)$(SYSTEMDDIR)/$$(basename $$f); done
endif
	@echo "installed under $(DESTDIR)$(PREFIX); configuration goes in $(SYSCONFDIR)/ipfailover/hostconfig (samples in $(SHAREDIR)/etc)"

uninstall:
	rm -f $(DESTDIR)$(SBINDIR)/heartbeatd $(DESTDIR)$(SBINDIR)/failoverd $(DESTDIR)$(BINDIR)/failoverctl
	rm -rf $(DESTDIR)$(SHAREDIR) $(DESTDIR)$(DOCDIR)
	rm -f $(DESTDIR)$(PREFIX)/share/man/man8/heartbeatd.8 $(DESTDIR)$(PREFIX)/share/man/man8/failoverd.8 $(DESTDIR)$(PREFIX)/share/man/man8/failoverctl.8 $(DESTDIR)$(PREFIX)/share/man/man5/ipfailover-hostconfig.5
	for p in heartbeatd failoverd failoverctl; do rm -f $(DESTDIR)$(PREFIX)/share/bash-completion/completions/$$p $(DESTDIR)$(PREFIX)/share/zsh/vendor-completions/_$$p $(DESTDIR)$(PREFIX)/share/fish/vendor_completions.d/$$p.fish; done
ifeq ($(UNAME),Darwin)
	rm -f $(DESTDIR)$(LAUNCHDDIR)/org.ipfailover.heartbeatd.plist $(DESTDIR)$(LAUNCHDDIR)/org.ipfailover.failoverd.plist
else
	rm -f $(DESTDIR)$(SYSTEMDDIR)/heartbeatd.service $(DESTDIR)$(SYSTEMDDIR)/failoverd.service $(DESTDIR)$(SYSTEMDDIR)/failoverctl-metrics.service $(DESTDIR)$(SYSTEMDDIR)/failoverctl-metrics.timer
endif

clean:
	$(CARGO) clean
