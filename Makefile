# Two commands a new user needs: `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install run test test-unit-integration redis7 lint format bench bench-memory bench-scale soak fuzz clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

run: install
	$(BIN)/devcmd run

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

test: install lint redis7
	$(BIN)/pytest

# The unit and integration layers only, e.g. on a second Python in its own venv:
# `make test-unit-integration PYTHON=python3.13 VENV=.venv-3.13` (.ci/run does this).
test-unit-integration: install redis7
	$(BIN)/pytest tests/unit tests/integration

# Redis 7 for the core integration modules' second back end (tests/backends.py): Debian's
# redis-server, installed with apt-get when missing, as root or with passwordless sudo. Without
# apt-get or root the step says so, and those tests are skipped with the reason.
SUDO := $(if $(filter 0,$(shell id -u)),,sudo -n)
redis7:
	@if command -v redis-server >/dev/null; then \
		redis-server --version; \
	elif command -v apt-get >/dev/null && $(SUDO) true 2>/dev/null; then \
		$(SUDO) apt-get update -qq && \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive \
			apt-get install --yes --quiet --no-install-recommends redis-server >/dev/null && \
		redis-server --version || echo "make redis7: apt-get failed; the redis7 tests will skip"; \
	else \
		echo "make redis7: no apt-get or no root; the redis7 back end's tests will skip"; \
	fi

# schemathesis against every operation of /openapi.json: 1000 examples per operation and mode.
fuzz: install
	FUZZ_EXAMPLES=$${FUZZ_EXAMPLES:-1000} $(BIN)/pytest tests/integration/test_fuzz.py --timeout=0 -q

# Every benchmark, one after another (about five minutes), each from the repository root as a
# module (bench/http.py would shadow the standard library's http if run as a script). wrk drives
# the HTTP ones: installed from Debian's packages when missing and apt-get is usable, else a
# clear message. `make bench BASELINE=../other-checkout` also measures that checkout's HTTP path
# in the same run, beside this one.
bench: install
	@command -v wrk >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null \
		&& apt-get update -qq && apt-get install -y -qq wrk >/dev/null; } \
		|| { echo "make bench needs wrk: apt-get install wrk (Debian/Ubuntu package wrk)" >&2; exit 1; }
	$(BIN)/python -m bench.sweep
	$(BIN)/python -m bench.callbacks
	$(BIN)/python -m bench.http $(if $(BASELINE),--baseline $(BASELINE))
	$(BIN)/python -m bench.latency

bench-memory: install
	$(BIN)/python -m bench.memory

# The long soak (five minutes): steady load with a 5 s retention; memory must level off (the
# test suite runs a 30 s version, tests/integration/test_soak.py).
soak: install
	$(BIN)/python -m bench.soak

# Create and sweep on a Redis Cluster of 1 vs 3 masters: server CPU per command and balance.
bench-scale: install
	$(BIN)/python -m bench.scale

clean:
	rm -rf $(VENV) .venv-* .devcmd .pytest_cache build *.egg-info
