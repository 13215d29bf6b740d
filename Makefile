# Two entry points: `make run` (the default workflow) and `make test` (lint + tests).
# Both create .venv with Python 3.11 and install the pinned requirements first.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
CORES ?= 2
# pytest-xdist workers for make test (auto: one per core; 0 runs the tests in one process)
TEST_WORKERS ?= auto

.PHONY: setup run test lint benchmarks clean

$(BIN)/.installed: requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -r requirements.txt
	$(BIN)/pip install --quiet --no-deps -e .
	touch $@

setup: $(BIN)/.installed

run: setup
	$(BIN)/snakemake --cores $(CORES) all

# ruff, ruff format, snakefmt, snakemake --lint and the generated files' checks: .pre-commit-config.yaml.
lint: setup
	$(BIN)/pre-commit run --all-files
	$(BIN)/mypy src

test: lint
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile

benchmarks: setup
	$(BIN)/python -m benchmarks.run

clean:
	rm -rf results resources logs .snakemake reports/figures reports/tables reports/neurons reports/report.html \
		reports/provenance.json
