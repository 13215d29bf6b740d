# Two entry points: `make run` (the default workflow) and `make test` (lint + tests).
# Both create .venv with Python 3.11 and install the pinned requirements first.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
CORES ?= 2

.PHONY: setup run test lint benchmarks clean

$(BIN)/.installed: requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -r requirements.txt
	$(BIN)/pip install --quiet --no-deps -e .
	touch $@

setup: $(BIN)/.installed

run: setup
	$(BIN)/snakemake --cores $(CORES) all

lint: setup
	$(BIN)/snakemake --lint
	$(BIN)/snakefmt --check .
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: lint
	$(BIN)/python -m pytest

benchmarks: setup
	$(BIN)/python -m benchmarks.run

clean:
	rm -rf results resources logs .snakemake reports/figures reports/tables reports/report.html
