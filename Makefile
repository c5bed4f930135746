# The two commands: `make demo` (the flagship agent DAG on the embedded default) and
# `make test` (every test, against real services this Makefile starts and stops).
# `make up` / `make down` run the whole stack on this machine for a person.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

ROOT := $(abspath $(dir $(lastword $(MAKEFILE_LIST))))
PYTHON ?= python3.11
VENV := $(ROOT)/.venv
PY := $(VENV)/bin/python
STACK := $(ROOT)/.stack
STAMP := $(VENV)/.installed
DEV_STAMP := $(VENV)/.installed-dev
LAUNCHER := $(PY) $(ROOT)/docker/launcher.py
DOTENV := $(VENV)/bin/dotenv
# The embedded default: SQLite metadata DB in .stack/airflow-embedded, LocalExecutor, and
# no service connection (Kafka, Cassandra, ...): what needs one falls back (see README).
EMBEDDED := AIRFLOW_HOME=$(STACK)/airflow-embedded AIRFLOW__CORE__DAGS_FOLDER=$(ROOT)/dags \
	AIRFLOW__CORE__PLUGINS_FOLDER=$(ROOT)/plugins PATH=$(VENV)/bin:$$PATH \
	$(DOTENV) -f $(ROOT)/config/airflow/embedded.env run --
PYTEST_ARGS ?=

.PHONY: help venv venv-dev demo test test-unit lint format up down status lock models clean

help:
	@echo "make demo   run the flagship agent DAG (support_ticket_triage) with airflow dags test"
	@echo "make test   lint, start Kafka/Cassandra/PostgreSQL/Redis, run unit+integration+e2e tests, stop"
	@echo "make up     start the services and Airflow (CeleryExecutor) on this machine; make down stops all"
	@echo "make lint   ruff check, ruff format --check, mypy"
	@echo "make models export a small instruct LLM to OpenVINO IR (needs network; EXPORT_MODEL=...)"

venv: $(STAMP)

# The runtime lock (all `make demo` needs). Once the dev extras are in, re-syncs keep them.
$(STAMP): requirements.txt pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "make: $(PYTHON) not found; install Python 3.11 or run make PYTHON=/path/to/python3.11"; exit 2; }
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' || { echo "make: $(PYTHON) is not Python 3.11 (the lock is for 3.11)"; exit 2; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check uv==0.13.8
	$(VENV)/bin/uv pip sync --python $(PY) requirements.txt $(if $(wildcard $(DEV_STAMP)),requirements-convert.txt)
	$(VENV)/bin/uv pip install --python $(PY) --no-deps -e .
	touch $(STAMP)

# Plus the conversion extra (PyTorch: model conversion, the reference in tests and bench/),
# for the tests and the full stack; the Docker image has the runtime lock only.
$(DEV_STAMP): $(STAMP) requirements-convert.txt requirements-export.txt
	$(VENV)/bin/uv pip install --python $(PY) --no-deps -r requirements-convert.txt
	$(VENV)/bin/uv pip install --python $(PY) --no-deps --target $(VENV)/export-overlay -r requirements-export.txt
	touch $(DEV_STAMP)

venv-dev: $(DEV_STAMP)

demo: venv-dev
	@mkdir -p $(STACK)/airflow-embedded
	@echo "== migrating the SQLite metadata DB"
	@$(EMBEDDED) airflow db migrate > $(STACK)/airflow-embedded/migrate.log 2>&1 || { tail -n 30 $(STACK)/airflow-embedded/migrate.log; exit 1; }
	@$(EMBEDDED) airflow pools import $(ROOT)/config/pools.json >> $(STACK)/airflow-embedded/migrate.log 2>&1 || { tail -n 30 $(STACK)/airflow-embedded/migrate.log; exit 1; }
	@echo "== airflow dags test support_ticket_triage (full log: .stack/airflow-embedded/demo.log)"
	@$(EMBEDDED) airflow dags test support_ticket_triage > $(STACK)/airflow-embedded/demo.log 2>&1 & test_pid=$$!; \
	$(EMBEDDED) python -m operators.cli approve support_ticket_triage --timeout 900 > $(STACK)/airflow-embedded/approve.log 2>&1 \
		|| { kill $$test_pid 2>/dev/null; tail -n 20 $(STACK)/airflow-embedded/approve.log; tail -n 60 $(STACK)/airflow-embedded/demo.log; exit 1; }; \
	grep "answered through the REST API" $(STACK)/airflow-embedded/approve.log; \
	wait $$test_pid || { tail -n 60 $(STACK)/airflow-embedded/demo.log; exit 1; }
	@grep -E "Tool call|LLM run complete|Agent run|Decision|No kafka_default|DagRun Finished" $(STACK)/airflow-embedded/demo.log | sed -E 's/^[^ ]+ \[[a-z]+ *\] //; s/ \[(airflow|unusual_prefix)[^]]*\].*$$//' || true
	@echo "== result"
	@$(EMBEDDED) python -m operators.cli result support_ticket_triage triage.publish_reply

# Export a small instruct LLM (EXPORT_TASK=rerank: a cross-encoder) to OpenVINO IR under the
# model cache, and print its models.yaml entry and connection; needs the Hugging Face hub.
EXPORT_MODEL ?= Qwen/Qwen2.5-0.5B-Instruct
EXPORT_WEIGHTS ?= int4
EXPORT_TASK ?= generate
models: venv-dev
	$(PY) -m include.inference.export_llm --model $(EXPORT_MODEL) --weight-format $(EXPORT_WEIGHTS) --task $(EXPORT_TASK)

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

format: venv
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

test-unit: venv-dev
	$(PY) -m pytest tests/unit $(PYTEST_ARGS)

# Services are started once for the integration tests; the e2e test runs `make up` and
# `make down` itself. The services are stopped whatever the tests' outcome.
test: venv-dev
	$(MAKE) --no-print-directory lint
	$(LAUNCHER) up
	status=0; AGENTFLOW_SERVICES_STARTED=1 $(PY) -m pytest tests/unit tests/integration tests/e2e \
		-p no:cacheprovider $(PYTEST_ARGS) || status=$$?; \
	$(LAUNCHER) down || true; \
	exit $$status

up: venv-dev
	$(LAUNCHER) up --airflow

down:
	@if test -x $(PY); then $(LAUNCHER) down; else echo "nothing to stop (no .venv)"; fi

status: venv
	$(LAUNCHER) status

# Recompile the full lock (needs PyPI). sentence-transformers is left out: see requirements-excludes.txt.
lock: venv
	$(VENV)/bin/uv pip compile requirements.in --excludes requirements-excludes.txt \
		--python-version 3.11.7 --python-platform x86_64-manylinux_2_28 -o requirements.txt
	$(VENV)/bin/uv pip compile requirements-convert.in -c requirements.txt \
		--python-version 3.11.7 --python-platform x86_64-manylinux_2_28 -o requirements-convert.txt

clean: down
	rm -rf $(STACK) $(VENV)
