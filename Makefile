# switchboard — the same targets for people and CI.
# `make up` runs the stack, `make test` runs the tests; both install what they need on their own.

# PYTHON: the interpreter for a new .venv (empty: scripts/venv.sh picks a supported one, see pyproject.toml's
# requires-python). VENV: where the dev venv lives.
PYTHON ?=
VENV ?= .venv
BIN := $(VENV)/bin
export PYTHON VENV

.PHONY: help venv lock prepare pages web-check proto proto-check fmt lint typecheck check test test-unit test-all soak faults bench bench-services loadtest loadtest-double11 eval-routing up clean

help:
	@echo "make up         run Kafka, Redis and every service (Ctrl-C stops all)"
	@echo "make test       the test suite against real Kafka and Redis (installs what it needs)"
	@echo "make loadtest   the smoke big-sale scenario against a local stack, with a report"
	@echo "make loadtest-double11  the double11 scenario with its surge profile off, then on (same seed), compared"
	@echo "make faults     the fault table: faults injected under load on a loopback stack (FAULTS_ARGS=--quick,"
	@echo "                --only NAME, --write-doc for docs/reliability.md)"
	@echo "make bench      raw limits and pipeline figures on this machine"
	@echo "make bench-services  each service's own benchmark (BENCH_ARGS=--quick for short runs)"
	@echo "make check      format check, lint and typecheck"
	@echo "make lock       regenerate requirements/*.lock after a dependency changed in a pyproject.toml"
	@echo "make eval-routing  the example shop's routing on its labelled messages: accuracy, confusion matrix, timing"
	@echo "                (EVAL_ARGS=--compare also measures the candidate classifiers; exits 1 below 90 % held out)"

# The dev venv: every package of requirements/dev.lock (hash-checked), then both distributions editable: the
# services (.) and their tooling (tools/: the local stack, the load generator, the benchmarks; tools/README.md says
# why they are apart). scripts/venv.sh rebuilds a venv made by another Python or from another lock, and says why.
venv:
	@sh scripts/venv.sh

# The three hashed locks (README, "Dependencies"), each a superset of the one before with the same pins:
#   runtime.lock  the services' dependencies (pyproject.toml), all the service image installs
#   tools.lock    plus the tools distribution (tools/pyproject.toml: load generator, charting), the load-test image
#   dev.lock      plus the services' dev extra (tests, lint, typecheck, proto generation), the dev venv
# uv keeps every pin already in a lock and resolves only what is new; UPGRADE=--upgrade moves every pin (or
# UPGRADE="--upgrade-package NAME" one). --universal: one lock for every supported Python and platform.
LOCK_COMPILE := $(BIN)/uv pip compile --quiet --generate-hashes --universal --python-version 3.11
LOCAL_PACKAGES := --no-emit-package switchboard --no-emit-package switchboard-tools
lock: venv
	$(LOCK_COMPILE) $(UPGRADE) pyproject.toml -o requirements/runtime.lock
	$(LOCK_COMPILE) $(UPGRADE) requirements/tools.in -c requirements/runtime.lock $(LOCAL_PACKAGES) -o requirements/tools.lock
	$(LOCK_COMPILE) $(UPGRADE) requirements/dev.in -c requirements/tools.lock $(LOCAL_PACKAGES) -o requirements/dev.lock

prepare: venv
	$(BIN)/python -m switchboard_tools.stack.prepare

pages: venv
	$(BIN)/python -c "from switchboard_tools.stack.pages import build_pages; print(build_pages(force=True))"

proto: venv
	$(BIN)/python scripts/gen_proto.py

proto-check: venv
	$(BIN)/python scripts/gen_proto.py --check

fmt: venv
	$(BIN)/ruff format services tools tests scripts
	$(BIN)/ruff check --fix services tools tests scripts

lint: venv
	$(BIN)/ruff check services tools tests scripts

typecheck: venv
	$(BIN)/mypy

check: lint typecheck proto-check web-check

# The pages' TypeScript, checked by tsc (npm packages from web/package-lock.json, installed by prepare).
web-check: prepare
	cd web && ./node_modules/.bin/tsc --noEmit

test: prepare
	$(BIN)/pytest -m "not slow" $(PYTEST_ARGS)

# The fast tests alone (no broker), e.g. on the other supported Python: make test-unit VENV=.venv-3.12 PYTHON=python3.12
test-unit: prepare
	$(BIN)/pytest tests/unit $(PYTEST_ARGS)

test-all: prepare
	$(BIN)/pytest $(PYTEST_ARGS)

soak: prepare
	$(BIN)/pytest -m slow $(PYTEST_ARGS)

# Every fault at full count on a loopback stack of its own (about 25 minutes on 2 cores; exits 1 when a loss
# column is not zero). docs/reliability.md says how to read the table; --write-doc rewrites it.
faults: prepare
	$(BIN)/python -m switchboard_tools.faults $(FAULTS_ARGS)

up: prepare
	$(BIN)/switchboard up

bench: prepare
	$(BIN)/switchboard bench

bench-services: prepare
	$(BIN)/python -m switchboard_tools.bench.services $(BENCH_ARGS)

loadtest: prepare
	$(BIN)/switchboard loadtest --scenario smoke

# Two stacks in a row, about 8 minutes each on 2 cores; not part of `make test`.
loadtest-double11: prepare
	$(BIN)/switchboard loadtest --scenario double11 --profile both

# A benchmark of routing quality, not a timed test (not part of `make test`); docs/routing.md has its figures.
eval-routing: venv
	$(BIN)/python -m switchboard_tools.routing_eval $(EVAL_ARGS)

clean:
	rm -rf .run reports .pytest_cache .mypy_cache .ruff_cache
