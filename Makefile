# Two commands do everything: `make demo` (embedded default, no services) and `make test`.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
SERVING_VENV := .venv-serving
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
export PROPENSITY_PROFILE := $(PROFILE)
export DAGSTER_HOME := $(PROPENSITY_HOME)/dagster
# The services profile keeps the Dagster instance (runs, event log, schedules) in the PostgreSQL `make services` runs.
ifeq ($(PROFILE),redis)
export DAGSTER_POSTGRES_URL ?= postgresql+psycopg2://propensity:propensity@127.0.0.1:5432/dagster
endif
# OpenMP threads spin while idle by default: beside Spark or a server on 2 cores a 0.3 s LightGBM fit took 10 s+.
export OMP_WAIT_POLICY ?= PASSIVE
# Spark's Python workers run this interpreter (PySpark reads only the environment for it).
export PYSPARK_PYTHON ?= $(CURDIR)/$(VENV)/bin/python

.PHONY: install data demo loop test lint dev services services-down stream replay endpoint endpoint-down bench \
	serving-env browser lock clean tools lint-infra spark-cluster spark-cluster-down aws-env test-aws pipeline-definition training-env release-dry-run \
	feast-plan feast-apply

install: $(VENV)/.installed

$(VENV)/.installed: requirements.lock pyproject.toml
	@command -v java >/dev/null || { echo "Java 17+ is required for Spark: apt-get install openjdk-17-jre-headless"; exit 1; }
	@echo "[install] $(VENV) from requirements.lock (pinned versions)"
	@$(PYTHON) -m venv $(VENV)
	@$(VENV)/bin/pip install -q --disable-pip-version-check "uv==$(UV_VERSION)"
	@$(VENV)/bin/uv pip install --python $(PY) -q -r requirements.lock
	@$(VENV)/bin/uv pip install --python $(PY) -q --no-deps -e .
	@# The stream job runs optimised (-O); its largest import's bytecode at that level, so it is not compiled each start
	@$(PY) -m compileall -q -o 1 $(VENV)/lib/python3.11/site-packages/feast >/dev/null
	@touch $@

# The real datasets into data/ (PROPENSITY_DATA moves it), sha256 checked; PROPENSITY_DATA_MIRROR serves them offline.
data: install
	@$(PY) -m propensity.datasets fetch

demo: install
	@if [ "$(PROFILE)" = "redis" ]; then $(MAKE) --no-print-directory services; fi
	@if [ "$(DATASET)" != "simulator" ]; then $(MAKE) --no-print-directory data; fi
	@$(PY) scripts/demo.py --dataset $(DATASET)

# The closed loop under the real Dagster daemon: its own state directory (var/loop), rebuilt on every run, and its own
# Redis database (the stream, the batch rebuilds and the endpoint share the online store at once, which SQLite's
# single writer cannot take); the timeline goes to var/demo/loop.json.
# `make dev PROPENSITY_HOME=$(CURDIR)/var/loop PROFILE=redis` shows its runs in the UI.
LOOP_HOME := $(CURDIR)/var/loop
LOOP_REDIS_URL ?= redis://127.0.0.1:6379/3
loop: install services
	@if [ -f $(LOOP_HOME)/serving/endpoints/propensity/server.pid ]; then \
	  PROPENSITY_HOME=$(LOOP_HOME) $(PY) -m serving.control.endpoint stop propensity >/dev/null; fi
	@rm -rf $(LOOP_HOME)
	@PROPENSITY_HOME=$(LOOP_HOME) DAGSTER_HOME=$(LOOP_HOME)/dagster PROPENSITY_PROFILE=redis REDIS_URL=$(LOOP_REDIS_URL) \
	  PROPENSITY_RETRAIN_COOLDOWN_S=300 $(PY) scripts/loop.py

# Debian's chromium for the dashboard's browser test (installed when missing; needs root).
browser:
	@bash scripts/browser.sh >/dev/null

lint: install
	@$(VENV)/bin/ruff check .
	@$(VENV)/bin/ruff format --check .

# The linters of infra/ and .github/workflows/ (scripts/tools.sh: Go-built actionlint and tflint, checkov and
# check-jsonschema in .venv-tools, shellcheck from Debian; terraform must be on PATH). .ci/run runs lint-infra.
ACTIONLINT_VERSION := v1.7.12
TFLINT_VERSION := v0.64.0
TOOLS_BIN := $(CURDIR)/.tools/bin
tools: install
	@ACTIONLINT_VERSION=$(ACTIONLINT_VERSION) TFLINT_VERSION=$(TFLINT_VERSION) PYTHON=$(PYTHON) UV=$(VENV)/bin/uv \
	  bash scripts/tools.sh

# terraform fmt, tflint (its bundled Terraform ruleset) and checkov on infra/; actionlint (shellcheck on every run:
# block) and GitHub's workflow schema on .github/workflows/. No provider is downloaded: init, validate and plan run
# in the terraform workflow only.
lint-infra: tools
	@TF_CLI_CONFIG_FILE=/dev/null terraform fmt -check -recursive infra
	@cd infra && $(TOOLS_BIN)/tflint --format=compact
	@.venv-tools/bin/checkov -d infra --framework terraform --quiet --compact --skip-download
	@$(TOOLS_BIN)/actionlint .github/workflows/*.yml
	@.venv-tools/bin/check-jsonschema --builtin-schema vendor.github-workflows .github/workflows/*.yml

test: install lint data services serving-env training-env browser aws-env
	$(PY) -m pytest $(PYTEST_ARGS)
	@$(MAKE) --no-print-directory test-aws

dev: install
	@if [ "$(PROFILE)" = "redis" ]; then $(MAKE) --no-print-directory services; fi
	@$(PY) -m propensity_assets.instance $(DAGSTER_HOME)
	$(VENV)/bin/dagster dev -w workspace.yaml -h 127.0.0.1 -p 3000

# `feast plan` / `feast apply` of feature_repo/ against the PROFILE's registry (the aws profile's on S3, beside
# PROPENSITY_LAKE_URI), as the feature-store workflow runs them.
feast-plan feast-apply: install
	@$(PY) scripts/feast_repo.py $(subst feast-,,$@)

# Redis, a one-node Apache Kafka (KRaft; jars from Maven Central, fetched once) and Spark's Kafka connector jars,
# all under var/services. KAFKA_VERSION, KAFKA_PORT, REDIS_PORT etc. are read from the environment (scripts/services.sh).
services:
	@VENV=$(VENV) bash scripts/services.sh up

services-down:
	@VENV=$(VENV) bash scripts/services.sh down

# A Spark standalone cluster on 127.0.0.1 (a master on 7077, status page on 8090, two workers), from pyspark's jars:
# SPARK_MASTER=spark://127.0.0.1:7077 runs every Spark job there.
spark-cluster: install
	@$(PY) -m propensity.spark_cluster start

spark-cluster-down: install
	@$(PY) -m propensity.spark_cluster stop

# The stream job (Ctrl-C or SIGTERM stops it; restarts resume from its checkpoint). SOURCE=file reads
# var/streaming/inbox, SOURCE=kafka the storefront.events topic (make services). Features go to the PROFILE's online
# store. -O: Feast's typeguard decorators re-compile its classes at import (3 s of a 15 s start on 2 cores); optimised,
# they step aside.
SOURCE ?= file
stream: install
	@if [ "$(SOURCE)" = "kafka" ] || [ "$(PROFILE)" = "redis" ]; then $(MAKE) --no-print-directory services; fi
	$(PY) -O -m propensity.streaming.job --source $(SOURCE)

# Replay storefront traffic into the stream (REPLAY_ARGS="--dataset taobao --asap", etc.).
replay: install
	$(PY) scripts/replay.py --to $(SOURCE) $(REPLAY_ARGS)

# The local endpoint `propensity` (deployed by `make demo`): start or stop its server in the background.
endpoint: install
	$(PY) -m serving.control.endpoint start propensity

endpoint-down: install
	$(PY) -m serving.control.endpoint stop propensity

bench: install data services serving-env
	$(PY) -m bench
	$(PY) -m bench.report

# The scoring container's environment: requirements-serving.lock only (no Dagster, Spark, moto or pytest), and not
# the project itself: the tests and benchmarks lay out the code as the Dockerfile copies it.
serving-env: $(SERVING_VENV)/.installed

$(SERVING_VENV)/.installed: requirements-serving.lock pyproject.toml $(VENV)/.installed
	@echo "[install] $(SERVING_VENV) from requirements-serving.lock (what the scoring container installs)"
	@$(PYTHON) -m venv $(SERVING_VENV)
	@$(VENV)/bin/uv pip install --python $(SERVING_VENV)/bin/python -q -r requirements-serving.lock
	@touch $@

# The training container's environment (requirements-training.lock, what Dockerfile.training installs): the tests
# run the SageMaker pipeline's jobs in it, with only the code that image copies.
TRAINING_VENV := .venv-training
training-env: $(TRAINING_VENV)/.installed

$(TRAINING_VENV)/.installed: requirements-training.lock $(VENV)/.installed
	@echo "[install] $(TRAINING_VENV) from requirements-training.lock (what the training container installs)"
	@$(PYTHON) -m venv $(TRAINING_VENV)
	@$(VENV)/bin/uv pip install --python $(TRAINING_VENV)/bin/python -q -r requirements-training.lock
	@touch $@

# The SageMaker pipeline builder's environment (requirements-aws.lock: the sagemaker SDK v3 pins pyarrow below the
# platform's, so it is kept apart), its tests, and the pipeline's definition. The SDK builds it without any AWS call
# under serving/control/training_pipeline.offline_environment(): these variables.
AWS_VENV := .venv-aws
AWS_OFFLINE := AWS_DEFAULT_REGION=eu-west-1 SAGEMAKER_VALIDATE_ROLE=false \
  SAGEMAKER_USER_CONFIG_OVERRIDE=$(CURDIR)/serving/control/sagemaker_sdk_config.yaml \
  SAGEMAKER_ADMIN_CONFIG_OVERRIDE=$(CURDIR)/serving/control/sagemaker_sdk_config.yaml PYTHONPATH=$(CURDIR)
aws-env: $(AWS_VENV)/.installed

$(AWS_VENV)/.installed: requirements-aws.lock $(VENV)/.installed
	@echo "[install] $(AWS_VENV) from requirements-aws.lock (the sagemaker SDK and its tests)"
	@$(PYTHON) -m venv $(AWS_VENV)
	@$(VENV)/bin/uv pip install --python $(AWS_VENV)/bin/python -q -r requirements-aws.lock
	@touch $@

test-aws: aws-env
	$(AWS_OFFLINE) $(AWS_VENV)/bin/python -m pytest tests/aws --confcutdir=tests/aws -o addopts="-ra --strict-markers" \
	  -W ignore::pytest.PytestConfigWarning $(PYTEST_ARGS)

# ENVIRONMENT=staging|production ACCOUNT=<12 digits> [IMAGE_TAG=<git sha>]: the definition the deploy workflow upserts.
ENVIRONMENT ?= staging
ACCOUNT ?= 123456789012
IMAGE_TAG ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo latest)
pipeline-definition: aws-env
	@$(AWS_OFFLINE) $(AWS_VENV)/bin/python -m serving.control.training_pipeline --environment $(ENVIRONMENT) \
	  --account $(ACCOUNT) --image-tag $(IMAGE_TAG) --out $(PROPENSITY_HOME)/release/$(ENVIRONMENT)/pipeline.json \
	  2>/dev/null

# Every artifact of a release, rendered locally and sent nowhere (serving/control/release_plan.py): per environment
# the pipeline definition, image tags, the champion's model package request and archive, the Terraform variables.
release-dry-run: aws-env
	@$(MAKE) --no-print-directory pipeline-definition ENVIRONMENT=staging
	@$(MAKE) --no-print-directory pipeline-definition ENVIRONMENT=production
	@$(PY) -m serving.control.release_plan --account $(ACCOUNT) --tag $(IMAGE_TAG)

# The locks: from pyproject.toml the full one (platform and dev extras) and the serving one (a subset of the full
# lock's versions); from requirements-aws.in the pipeline builder's. Add a dependency there, then `make lock`.
lock: install
	$(VENV)/bin/uv pip compile -q pyproject.toml --extra platform --extra dev --python-version 3.11 --no-annotate \
	  --constraint requirements.lock --no-header -o requirements.lock.new
	{ echo "# Pinned, resolved together (make lock). \`make install\` installs exactly these."; \
	  cat requirements.lock.new; } > requirements.lock && rm requirements.lock.new
	$(VENV)/bin/uv pip compile -q pyproject.toml --python-version 3.11 --no-annotate --constraint requirements.lock --no-header \
	  -o requirements-serving.lock.new
	{ echo "# The scoring container's pins (make lock): the serving dependencies at the full lock's versions."; \
	  cat requirements-serving.lock.new; } > requirements-serving.lock && rm requirements-serving.lock.new
	$(VENV)/bin/uv pip compile -q requirements-training.in --python-version 3.11 --no-annotate --no-header \
	  --constraint requirements.lock -o requirements-training.lock.new
	{ echo "# Pinned from requirements-training.in at requirements.lock's versions (make lock); the training container installs these."; \
	  cat requirements-training.lock.new; } > requirements-training.lock && rm requirements-training.lock.new
	$(VENV)/bin/uv pip compile -q requirements-aws.in --python-version 3.11 --no-annotate --no-header \
	  -o requirements-aws.lock.new
	{ echo "# Pinned, resolved together from requirements-aws.in (make lock). make aws-env installs exactly these."; \
	  cat requirements-aws.lock.new; } > requirements-aws.lock && rm requirements-aws.lock.new

clean:
	rm -rf var $(VENV) $(SERVING_VENV) $(AWS_VENV) $(TRAINING_VENV) .venv-tools .tools
