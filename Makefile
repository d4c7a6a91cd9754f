# edgestats entry points. `make` alone lists them.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
RUN := .run
export PYTHONPATH := $(CURDIR)/services:$(CURDIR)/gen
export EDGESTATS_HOME := $(CURDIR)

.DEFAULT_GOAL := help
.PHONY: help run cluster airflow stop test cluster-test unit e2e lint protos bench clean

help:  ## list the entry points
	@grep -E '^[a-z]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | expand -t12

$(RUN)/venv.stamp: requirements.txt pyproject.toml
	@mkdir -p $(RUN)
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -r requirements.txt
	$(BIN)/pip install -q --no-deps -e .
	@touch $@

$(RUN)/system.stamp: scripts/install_system.sh
	@mkdir -p $(RUN)
	bash scripts/install_system.sh
	@touch $@

PROTOS := $(shell find protos -name '*.proto')
$(RUN)/protos.stamp: $(RUN)/venv.stamp $(PROTOS) scripts/gen_protos.sh services/edgestats_stack/openapi.py
	bash scripts/gen_protos.sh $(CURDIR)/$(BIN)/python
	@touch $@

setup: $(RUN)/venv.stamp $(RUN)/system.stamp $(RUN)/protos.stamp

protos: $(RUN)/protos.stamp  ## generate Python stubs, descriptor set and OpenAPI into gen/

run: setup  ## start PostgreSQL, migrate, load demo data, start services + Envoy
	$(BIN)/python -m edgestats_stack up

cluster: setup  ## like run, on a PostgreSQL per region and a streaming standby of emea
	$(BIN)/python -m edgestats_stack cluster

airflow: setup  ## start Airflow 3 (UI/API :8090) with the rollup and maintenance DAGs
	$(BIN)/python -m edgestats_stack airflow

stop:  ## stop what `make run` or `make cluster` (and `make airflow`) started
	@test -x $(BIN)/python && $(BIN)/python -m edgestats_stack down || true

# the end-to-end suites run a second time on `make cluster`'s topology (docs/scaling.md)
CLUSTER_SUITES := $(addprefix tests/e2e/test_,legacy_api.py v1_metrics.py v1_errors.py \
	sql_query.py sql_hostile.py errors.py ingest.py)

test: setup lint  ## lint, the whole suite, then the e2e suites on the multi-database topology
	$(BIN)/python -m pytest -q
	EDGESTATS_TEST_TOPOLOGY=cluster $(BIN)/python -m pytest -q $(CLUSTER_SUITES)

cluster-test: setup  ## only the e2e suites on the multi-database topology
	EDGESTATS_TEST_TOPOLOGY=cluster $(BIN)/python -m pytest -q $(CLUSTER_SUITES)

unit: setup  ## fast tests: no database, no network
	$(BIN)/python -m pytest -q -m "not e2e and not db"

e2e: setup  ## end-to-end tests through Envoy
	$(BIN)/python -m pytest -q -m e2e

lint: setup  ## ruff, buf lint, buf breaking against main
	$(BIN)/ruff check services tests bench dags
	bash scripts/buf_check.sh

bench: setup  ## benchmarks (see docs/performance.md)
	$(BIN)/pip install -q -r bench/requirements.txt
	$(BIN)/python -m bench.ingest_throughput
	$(BIN)/python -m bench.query_latency

clean: stop  ## remove generated code, the venv and .run/
	rm -rf gen $(VENV) $(RUN)
