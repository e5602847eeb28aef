# TradeGraph — the two commands are `make run` and `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

NATIVE := engine/_native/FINGERPRINT

.PHONY: run test lint types schema native bench bench-engine bench-worker bench-restart clean-data

# The editable install also compiles the engine with mypyc (setup.py; pure Python if it
# cannot). PIP_CONSTRAINT pins the build's mypy too.
$(STAMP): pyproject.toml constraints.txt setup.py
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check --upgrade "pip>=24"
	PIP_CONSTRAINT=constraints.txt $(BIN)/python -m pip install -q --disable-pip-version-check -c constraints.txt -e '.[dev,bench]'
	touch $(STAMP)

## native: compile the engine again after editing it (until then the pure source runs)
native: $(NATIVE)

$(NATIVE): $(wildcard engine/*.py) setup.py | $(STAMP)
	$(BIN)/python setup.py -q build_ext --inplace

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

## test: lint, then the whole suite against real PostgreSQL and Redis (the compiled engine,
## if it built), then the engine's tests again on the pure-Python engine
test: lint native
	$(BIN)/python -m pytest
	TRADEGRAPH_PURE_ENGINE=1 $(BIN)/python -m pytest -q tests/engine

## schema: regenerate frontend-contract/schema.graphql from the Strawberry schema
schema: $(STAMP)
	$(BIN)/python -m graph.export_schema frontend-contract/schema.graphql

## bench: the performance table, terminal + bench/results/<time>/ (BENCH_ARGS=--quick: smoke run)
bench: $(STAMP)
	$(BIN)/python -m bench.run $(BENCH_ARGS)

bench-engine: $(STAMP) $(NATIVE)
	$(BIN)/python -m bench.engine

bench-restart: $(STAMP) $(NATIVE)
	$(BIN)/python -m bench.restart

bench-worker: $(STAMP)
	$(BIN)/python -m bench.worker

## clean-data: wipe the embedded servers' data (refused while `make run` uses it)
clean-data:
	@if test -f .tradegraph/endpoints.json && test -x $(BIN)/python && $(BIN)/python -c \
	  'import sys; from app.config import Settings; from app.kit.bootstrap import running_platform; sys.exit(running_platform(Settings(data_dir=".tradegraph")) is None)'; \
	  then echo "make clean-data: TradeGraph is running on this data (stop make run first)" >&2; exit 1; fi
	rm -rf .tradegraph
