"""The SageMaker pipeline builder's tests, run in its own environment (.venv-aws, requirements-aws.lock) by
`make test-aws` (part of `make test`); the platform's conftest above is not loaded here (--confcutdir)."""

import os

from serving.control.training_pipeline import offline_environment

# Before the SDK is imported: no role validation, no telemetry, a region, and fake credentials for moto.
os.environ.update(offline_environment("eu-west-1"))
os.environ.update({"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_SESSION_TOKEN": "testing"})
