# blobq: the commands a developer needs.
CARGO ?= cargo

.PHONY: run test fuzz lint fmt build release man verify-unit bench bench-durable bench-backlog bench-instructions bench-allocations bench-policy bench-nats clean

## run: start the server on 127.0.0.1:8080 with the defaults
run:
	$(CARGO) run --release -- serve

## test: unit and integration tests
test:
	$(CARGO) test --all-targets

## fuzz: the parsing and path property tests (tests/fuzz_parsing.rs,
##       tests/fuzz_paths.rs) and the replay model test (tests/replay_model.rs)
##       with many cases, reusing the debug build of `make test`.
##       Longer: make fuzz FUZZ_CASES=1000000 REPLAY_CASES=5000 FUZZ_FLAGS=--release
FUZZ_CASES ?= 5000
REPLAY_CASES ?= 200
FUZZ_FLAGS ?=
fuzz:
	BLOBQ_FUZZ_CASES=$(FUZZ_CASES) $(CARGO) test $(FUZZ_FLAGS) --test fuzz_parsing --test fuzz_paths
	BLOBQ_REPLAY_CASES=$(REPLAY_CASES) $(CARGO) test $(FUZZ_FLAGS) --test replay_model

## lint: formatting check and clippy with warnings as errors
lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets -- -D warnings

## bench: blobq against its ceiling and webdis, then the scale cases and the NATS
##        backend's cases (docs/PERFORMANCE.md)
## (needs wrk, redis-server, webdis; BENCH_DURATION, BENCH_ROUNDS and more in bench/run.sh)
## BENCH_BASELINE=/path/to/old/blobq runs an older binary in the same rounds and
## judges blobq against it (an A/B of a change)
bench:
	bench/run.sh
	bench/backlog.sh
	bench/durability.sh

## bench-backlog: a backlog past the memory limit, against --memory-limit 0 and webdis
bench-backlog:
	bench/backlog.sh

## bench-nats: the NATS backend through one and two blobq nodes on a three-node
##       JetStream cluster, against JetStream used directly and the embedded backend
##       (needs nats-server and wrk; bench/nats.sh)
bench-nats:
	bench/nats.sh

## bench-durable: --data-dir in each --fsync mode against memory and redis AOF
bench-durable:
	bench/durability.sh

## bench-instructions: instructions per push and pop under callgrind (needs valgrind);
##       repeatable to a fraction of a percent, for small hot-path changes
##       INSTR_CACHE=1 also counts simulated instruction-cache misses
bench-instructions:
	bench/instructions.sh

## bench-allocations: heap allocations per push and pop, counted exactly with
##       uprobes (needs root and linux-perf); ALLOC_POP_QUERY=?timeout=5 for
##       a blocking consumer's pops
bench-allocations:
	bench/allocations.sh

## bench-policy: blobq against the bare ceiling at 100 B in back-to-back pairs,
##       with wrk under the default scheduling policy and under SCHED_BATCH
##       (the policy make bench runs it with); POLICY_PAIRS, POLICY_DURATION
bench-policy:
	bench/policy.sh

## man: the man pages (blobq.1 and one per subcommand) into target/man/man1,
##      from the same definitions as --help; read with man -l target/man/man1/blobq.1
man:
	$(CARGO) run -q -- man target/man/man1

## verify-unit: systemd-analyze verify etc/blobq.service (needs systemd);
##      the unit names /usr/local/bin/blobq, checked here as the debug build
verify-unit: man
	.ci/verify-unit

fmt:
	$(CARGO) fmt

build:
	$(CARGO) build

release:
	$(CARGO) build --release

clean:
	$(CARGO) clean
