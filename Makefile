# blobq: the commands a developer needs.
CARGO ?= cargo

.PHONY: run test lint fmt build release bench clean

## run: start the server on 127.0.0.1:8080 with the defaults
run:
	$(CARGO) run --release -- serve

## test: unit and integration tests
test:
	$(CARGO) test --all-targets

## lint: formatting check and clippy with warnings as errors
lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets -- -D warnings

## bench: blobq against its ceiling and webdis, then the scale cases (docs/PERFORMANCE.md)
## (needs wrk, redis-server, webdis; BENCH_DURATION=10 and more in bench/run.sh)
bench:
	bench/run.sh

fmt:
	$(CARGO) fmt

build:
	$(CARGO) build

release:
	$(CARGO) build --release

clean:
	$(CARGO) clean
