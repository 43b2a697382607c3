# airq: `make run` runs the pipeline, `make test` runs the tests, `make help` lists the targets. `run` and `test` set
# everything up from a fresh clone.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
N ?= 2
PYTEST_ARGS ?=

.PHONY: run test test-unit worker backfill broker stop cluster cluster-stop lint typecheck bench soak check-python \
	clean distclean help

run: $(INSTALLED) ## run the pipeline: the local broker, the simulator and workers (the default target)
	@$(BIN)/python -m airq_dev.launcher run

test: $(INSTALLED) typecheck ## mypy, then every test (fetches the Kafka jars and a browser first); PYTEST_ARGS=... passes arguments
	@$(BIN)/python -m airq_dev.local_kafka fetch >/dev/null
	@scripts/install-browser
	$(BIN)/pytest $(PYTEST_ARGS)

test-unit: $(INSTALLED) ## the unit tests only (no broker)
	$(BIN)/pytest -m unit $(PYTEST_ARGS)

# An extra worker on this machine: make worker N=2 (web port 6065+N, its own data directory).
worker: $(INSTALLED) ## an extra worker on this machine: make worker N=2
	AIRQ_WEB_PORT=$$((6065 + $(N))) AIRQ_DATA_DIR=data/worker-$(N) $(BIN)/faust -A airq_app worker -l info

# History through the stream, exactly once and resumable (see README, Backfill):
#   make backfill FROM=2026-01-01 TO=2026-01-31 [SOURCE=archive|api] [LOCATIONS=2178,8118] [COUNTRIES=US,IN]
backfill: $(INSTALLED) ## history through the stream: make backfill FROM=YYYY-MM-DD TO=YYYY-MM-DD [...]
	@test -n "$(FROM)" && test -n "$(TO)" || { echo "usage: make backfill FROM=YYYY-MM-DD TO=YYYY-MM-DD [SOURCE=archive|api] [LOCATIONS=id,...] [COUNTRIES=CC,...]"; exit 2; }
	$(BIN)/faust -A airq_app backfill --from $(FROM) --to $(TO) --source $(or $(SOURCE),archive) \
		$(if $(LOCATIONS),--location $(LOCATIONS)) $(if $(COUNTRIES),--country $(COUNTRIES))

broker: $(INSTALLED) ## start the local Kafka broker on 127.0.0.1:9092
	@$(BIN)/python -m airq_dev.local_kafka start

stop: ## stop the local Kafka broker
	@test -x $(BIN)/python && $(BIN)/python -m airq_dev.local_kafka stop || true

# A 3-node KRaft cluster on 127.0.0.1:29092-29094 (state in .kafka-cluster/): AIRQ_BROKER=kafka://127.0.0.1:29092,...
cluster: $(INSTALLED) ## start the local 3-node Kafka cluster
	@$(BIN)/python -m airq_dev.kafka_cluster start

cluster-stop: ## stop the local 3-node Kafka cluster
	@test -x $(BIN)/python && $(BIN)/python -m airq_dev.kafka_cluster stop || true

lint: $(INSTALLED) ## ruff check and ruff format --check
	$(BIN)/ruff check airq_app airq_dev tests bench scripts
	$(BIN)/ruff format --check airq_app airq_dev tests bench scripts

typecheck: $(INSTALLED) ## Type-check the code with mypy (settings and paths in setup.cfg [mypy])
	$(BIN)/mypy

bench: $(INSTALLED) ## the benchmarks against the local broker (results in bench/results.json)
	$(BIN)/python -m bench

# The two tests that once stalled after a rebalance, RUNS times in a row (not in `make test`: about a minute a run).
RUNS ?= 20
SOAK_TESTS := tests/integration/test_full_disk.py::test_workers_join_and_leave_while_the_disk_is_full \
	tests/integration/test_hostile_stream.py::test_an_undelivered_table_update_holds_its_file_back_until_delivered
soak: $(INSTALLED) ## the two tests that once stalled, RUNS times in a row (20 by default)
	@$(BIN)/python -m airq_dev.local_kafka fetch >/dev/null
	@passed=0; for i in $$(seq 1 $(RUNS)); do \
		if $(BIN)/pytest -q -p no:cacheprovider $(SOAK_TESTS) >/tmp/airq-soak-$$i.log 2>&1; then passed=$$((passed + 1)); \
		else echo "run $$i failed: /tmp/airq-soak-$$i.log"; fi; \
		echo "run $$i: $$passed/$$i passed"; done; \
	test $$passed -eq $(RUNS)

check-python: ## check for Python 3.11+, Java and Maven
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' || \
		{ echo "airq needs Python 3.11 or newer (found: $$($(PYTHON) --version 2>&1)); set PYTHON=/path/to/python3.11"; exit 1; }
	@command -v java >/dev/null || { echo "Java not found: install a JDK 17+ (apt install openjdk-17-jdk)"; exit 1; }
	@command -v mvn >/dev/null || { echo "Maven not found: install it (apt install maven)"; exit 1; }

$(INSTALLED): setup.cfg constraints.txt | check-python
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check -c constraints.txt -e '.[dev]'
	@touch $@

clean: ## remove output, data and test artifacts
	rm -rf output data .pytest_cache tests/artifacts
	find . -name __pycache__ -prune -exec rm -rf {} +

distclean: stop clean ## clean, and remove the virtualenv, the local broker's state and the Kafka jars
	rm -rf $(VENV) .kafka kafka/libs *.egg-info

help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-z][a-z-]*:.*## / {printf "  %-14s %s\n", $$1, $$2}' $(MAKEFILE_LIST)
