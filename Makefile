# Two commands a new user needs: `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install run test lint format bench fuzz clean

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

test: install lint
	$(BIN)/pytest

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

clean:
	rm -rf $(VENV) .devcmd .pytest_cache build *.egg-info
