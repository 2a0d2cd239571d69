# Two commands do everything: `make demo` (embedded default, no services) and `make test`.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
UV_VERSION := 0.13.9
DATASET ?= simulator
PROFILE ?= local
# Each dataset gets its own state directory so their lakes and Dagster runs never mix.
ifeq ($(DATASET),simulator)
PROPENSITY_HOME ?= $(CURDIR)/var
else
PROPENSITY_HOME ?= $(CURDIR)/var/$(DATASET)
endif
export PROPENSITY_HOME
export DAGSTER_HOME := $(PROPENSITY_HOME)/dagster

.PHONY: install demo test dev services services-down stream replay endpoint endpoint-down bench lock clean

install: $(VENV)/.installed

$(VENV)/.installed: requirements.lock pyproject.toml
	@command -v java >/dev/null || { echo "Java 17+ is required for Spark: apt-get install openjdk-17-jre-headless"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q "uv==$(UV_VERSION)"
	$(VENV)/bin/uv pip install --python $(PY) -q -r requirements.lock
	$(VENV)/bin/uv pip install --python $(PY) -q --no-deps -e .
	@touch $@

demo: install
	@if [ "$(PROFILE)" = "redis" ]; then $(MAKE) --no-print-directory services; fi
	PYTHONWARNINGS=ignore $(PY) scripts/demo.py --dataset $(DATASET) --profile $(PROFILE)

test: install services
	$(PY) -m pytest $(PYTEST_ARGS)

dev: install
	@mkdir -p $(DAGSTER_HOME)
	$(VENV)/bin/dagster dev -w workspace.yaml -h 127.0.0.1 -p 3000

# Redis, a one-node Apache Kafka (KRaft; jars from Maven Central, fetched once) and Spark's Kafka connector jars,
# all under var/services. KAFKA_VERSION, KAFKA_PORT, REDIS_PORT etc. are read from the environment (scripts/services.sh).
services:
	@VENV=$(VENV) bash scripts/services.sh up

services-down:
	@VENV=$(VENV) bash scripts/services.sh down

# The stream job (Ctrl-C stops it; restarts resume from its checkpoint). SOURCE=file reads var/streaming/inbox,
# SOURCE=kafka the storefront.events topic (make services). Features go to the PROFILE's online store.
SOURCE ?= file
stream: install
	@if [ "$(SOURCE)" = "kafka" ] || [ "$(PROFILE)" = "redis" ]; then $(MAKE) --no-print-directory services; fi
	$(PY) -m propensity.streaming.job --source $(SOURCE) --profile $(PROFILE)

# Replay simulated storefront traffic into the stream (REPLAY_ARGS="--dataset taobao --asap", etc.).
replay: install
	$(PY) -m propensity.streaming.replayer --to $(SOURCE) $(REPLAY_ARGS)

# The local endpoint `propensity` (deployed by `make demo`): start or stop its server in the background.
endpoint: install
	PROPENSITY_PROFILE=$(PROFILE) $(PY) -m serving.endpoint start propensity

endpoint-down: install
	$(PY) -m serving.endpoint stop propensity

bench: install services
	$(PY) -m bench
	$(PY) -m bench.report

lock: install
	$(VENV)/bin/uv pip install --python $(PY) -q -e .
	{ echo "# Pinned, resolved together (uv pip freeze). \`make install\` installs exactly these; add a dependency in pyproject.toml, then \`make lock\`."; \
	  $(VENV)/bin/uv pip freeze --python $(PY) --exclude-editable; } > requirements.lock

clean:
	rm -rf var $(VENV)
