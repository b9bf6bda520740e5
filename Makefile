# Two commands a new user needs: `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install run test lint format bench bench-scale fuzz clean

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

bench: install
	$(BIN)/python bench/sweep.py

# Create and sweep on a Redis Cluster of 1 vs 3 masters: server CPU per command and balance.
bench-scale: install
	$(BIN)/python bench/scale.py

clean:
	rm -rf $(VENV) .devcmd .pytest_cache build *.egg-info
