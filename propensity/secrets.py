"""Secrets from the environment or from AWS Secrets Manager.

A setting's value may name a secret instead of holding it: `secretsmanager:<secret id or ARN>`, or
`secretsmanager:<id>#<key>` for one key of a JSON secret (`REDIS_URL=secretsmanager:propensity/production/redis-url`).
The settings resolve such values once, at start-up; a Dagster resource that takes a value as dg.EnvVar (so the UI
shows only the variable's name) resolves it when it builds its client. The secret's value is never put in a message.
boto3 is needed only where a reference is used (the scoring container has no boto3: its deployer resolves the
online store's URL before it starts the endpoint).
"""

from __future__ import annotations

import json

PREFIX = "secretsmanager:"
CALL_TIMEOUT_S = 5


class SecretError(ValueError):
    """A secret reference that cannot be resolved; the message names the reference, never a value."""


def is_reference(value: str | None) -> bool:
    return bool(value) and value.startswith(PREFIX)


def resolve(value: str | None, *, client=None) -> str | None:
    """`value` itself, or the secret it names (`secretsmanager:<id>[#<key>]`)."""
    if not is_reference(value):
        return value
    reference = value[len(PREFIX) :]
    secret_id, _, key = reference.partition("#")
    if not secret_id:
        raise SecretError(f"{value!r} names no secret: write secretsmanager:<secret id>[#<json key>]")
    try:
        import boto3
        from botocore.config import Config
        from botocore.exceptions import BotoCoreError, ClientError
    except ImportError:
        raise SecretError(f"{value!r} needs boto3 to read Secrets Manager: install it, or give the value") from None
    if client is None:
        config = Config(connect_timeout=CALL_TIMEOUT_S, read_timeout=CALL_TIMEOUT_S, retries={"total_max_attempts": 2})
        client = boto3.client("secretsmanager", config=config)
    try:
        secret = client.get_secret_value(SecretId=secret_id)["SecretString"]
    except (BotoCoreError, ClientError) as error:
        code = getattr(error, "response", {}).get("Error", {}).get("Code", type(error).__name__)
        raise SecretError(
            f"secret {secret_id!r} could not be read ({code}): check its name, the region and "
            "secretsmanager:GetSecretValue"
        ) from None
    if not key:
        return secret
    try:
        return str(json.loads(secret)[key])
    except (ValueError, KeyError, TypeError):
        raise SecretError(f"secret {secret_id!r} is not a JSON object with the key {key!r}") from None
