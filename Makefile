# TradeGraph — the two commands are `make run` and `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test lint types schema bench bench-engine bench-worker clean-data

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check --upgrade "pip>=24"
	$(BIN)/python -m pip install -q --disable-pip-version-check -c constraints.txt -e '.[dev,bench]'
	touch $(STAMP)

## run: start PostgreSQL + Redis (embedded unless DATABASE_URL/REDIS_URL are set), migrate, serve on :8000
##      from one API process per core (`make run WORKERS=4`, or TRADEGRAPH_API_WORKERS, for another count)
run: $(STAMP)
	$(BIN)/tradegraph run $(if $(WORKERS),--workers $(WORKERS))

## lint: ruff (lint + format check), mypy (strict on engine/), import-linter contracts
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy --strict engine
	$(BIN)/mypy app graph workers migrations tests bench
	$(BIN)/lint-imports

## test: lint, then the whole suite against real PostgreSQL and Redis
test: lint
	$(BIN)/python -m pytest

## schema: regenerate frontend-contract/schema.graphql from the Strawberry schema
schema: $(STAMP)
	$(BIN)/python -m graph.export_schema frontend-contract/schema.graphql

## bench: the engine and the worker benchmarks (figures, not tests)
bench: bench-engine bench-worker

bench-engine: $(STAMP)
	$(BIN)/python -m bench.engine

bench-worker: $(STAMP)
	$(BIN)/python -m bench.worker

## clean-data: wipe the embedded servers' data (refused while `make run` uses it)
clean-data:
	@if test -f .tradegraph/endpoints.json && test -x $(BIN)/python && $(BIN)/python -c \
	  'import sys; from app.config import Settings; from app.kit.bootstrap import running_platform; sys.exit(running_platform(Settings(data_dir=".tradegraph")) is None)'; \
	  then echo "make clean-data: TradeGraph is running on this data (stop make run first)" >&2; exit 1; fi
	rm -rf .tradegraph
