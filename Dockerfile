# The inference container for SageMaker (bring your own container): the same `serve` as on a laptop.
# SageMaker extracts model.tar.gz into /opt/ml/model (the server finds MANIFEST.json there), sends GET /ping and
# POST /invocations to port 8080, and starts the container as `docker run <image> serve`.
#   docker build -t propensity-serving . && docker run -p 8080:8080 -v $PWD/var/models/registry/<version>:/opt/ml/model propensity-serving
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

# The pinned dependencies first: this layer is rebuilt only when the lock changes.
COPY requirements.lock .
RUN pip install -r requirements.lock

COPY pyproject.toml ./
COPY propensity ./propensity
COPY propensity_assets ./propensity_assets
COPY resources ./resources
COPY sensors ./sensors
COPY serving ./serving
COPY feature_repo ./feature_repo
RUN pip install --no-deps . && rm -rf build *.egg-info
# The source tree first on the path as well, as in the editable install the tests run against.
ENV PYTHONPATH=/opt/program

ENV SERVING_HOST=0.0.0.0 \
    SERVING_PORT=8080 \
    PROPENSITY_HOME=/opt/ml/var
# The server resolves the feature service from Feast's registry at start-up: bake this code's registry into the image
# (the redis profile reads the same file; only the online store differs, REDIS_URL at run time).
RUN python -c "from feature_repo import FEAST_OBJECTS; from resources.feast import open_feature_store; open_feature_store('local').apply(FEAST_OBJECTS)"
EXPOSE 8080

# SageMaker passes `serve` as the argument: drop it, then exec the console script (PID 1 gets SIGTERM).
ENTRYPOINT ["/bin/sh", "-c", "if [ \"$1\" = serve ]; then shift; fi; exec serve \"$@\"", "serve"]
