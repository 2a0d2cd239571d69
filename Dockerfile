# The inference container for SageMaker (bring your own container): the same `serve` as on a laptop, and nothing else.
# It installs requirements-serving.lock only (no Dagster, Spark, scikit-learn, moto or pytest) and copies the
# packages the scoring path imports: the core (propensity/), the data plane (serving/) and the Feast repository
# whose registry is baked in. SageMaker extracts model.tar.gz into /opt/ml/model (the server finds MANIFEST.json
# there), sends GET /ping and POST /invocations to port 8080, and starts the container as `docker run <image> serve`.
#   docker build -t propensity-serving . && docker run -p 8080:8080 \
#     -v $PWD/var/models/registry/<version>:/opt/ml/model propensity-serving
FROM python:3.11-slim

# LightGBM's OpenMP runtime
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgomp1 \
    && rm -rf /var/lib/apt/lists/*

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /opt/program

# The pinned serving dependencies first: this layer is rebuilt only when the lock changes.
COPY requirements-serving.lock .
RUN pip install -r requirements-serving.lock

# The scoring path's code only (the control plane under serving/control is not needed, and is not imported).
COPY propensity ./propensity
COPY serving ./serving
COPY feature_repo ./feature_repo
RUN rm -rf serving/control
ENV PYTHONPATH=/opt/program \
    SERVING_HOST=0.0.0.0 \
    SERVING_PORT=8080 \
    PROPENSITY_HOME=/opt/ml/var
# The server resolves the feature service from Feast's registry at start-up: bake this code's registry into the image
# (the redis profile reads the same file; only the online store differs, REDIS_URL at run time).
RUN python -c "from feature_repo import FEAST_OBJECTS; from propensity.feature_store import open_feature_store; \
open_feature_store('local', online_only=True).apply(FEAST_OBJECTS)"
EXPOSE 8080

# SageMaker passes `serve` as the argument: drop it, then exec the server (PID 1 gets SIGTERM).
ENTRYPOINT ["/bin/sh", "-c", "if [ \"$1\" = serve ]; then shift; fi; exec python -m serving.server \"$@\"", "serve"]
