# ipfailover — build, test, demo, install.
#
#   make            build the three programs (release)
#   sudo make demo  the pair in network namespaces on this machine
#   sudo make test  every test, the end-to-end ones on real namespaces (root needed)
#   make lint       rustfmt and clippy, as CI runs them

CARGO ?= cargo

.PHONY: all build debug test demo lint clean

all: build

build:
	$(CARGO) build --workspace --release

# The end-to-end tests start the real daemons: build them before testing.
debug:
	$(CARGO) build --workspace --bins

test: debug
	$(CARGO) test --workspace

demo: debug
	./target/debug/ipfo-demo

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

clean:
	$(CARGO) clean
