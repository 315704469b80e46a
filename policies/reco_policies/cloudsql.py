"""Cloud SQL (the MLflow backend store): private, encrypted, recoverable."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .props import get, is_prod

INSTANCE = "gcp:sql/databaseInstance:DatabaseInstance"
ENCRYPTED_SSL_MODES = frozenset({"ENCRYPTED_ONLY", "TRUSTED_CLIENT_CERTIFICATE_REQUIRED"})


def no_public_ip(resource_type: str, props: Mapping[str, Any]) -> list[str]:
    """``settings.ipConfiguration.ipv4Enabled: false``. Missing: violation (the provider assigns a public IP)."""
    if resource_type != INSTANCE or get(props, "settings.ipConfiguration.ipv4Enabled") is False:
        return []
    return ["settings.ipConfiguration.ipv4Enabled must be false: the instance must have a private IP only"]


def ssl_required(resource_type: str, props: Mapping[str, Any]) -> list[str]:
    """``settings.ipConfiguration.sslMode`` ENCRYPTED_ONLY or TRUSTED_CLIENT_CERTIFICATE_REQUIRED (or the older
    ``requireSsl: true``). Missing: violation (the default accepts unencrypted connections)."""
    if resource_type != INSTANCE:
        return []
    mode = get(props, "settings.ipConfiguration.sslMode")
    if mode in ENCRYPTED_SSL_MODES or get(props, "settings.ipConfiguration.requireSsl") is True:
        return []
    return [f"settings.ipConfiguration.sslMode must be one of {sorted(ENCRYPTED_SSL_MODES)}, got {mode!r}"]


def backups_enabled(resource_type: str, props: Mapping[str, Any]) -> list[str]:
    """``settings.backupConfiguration.enabled: true``. Missing: violation (no automated backups by default)."""
    if resource_type != INSTANCE or get(props, "settings.backupConfiguration.enabled") is True:
        return []
    return ["settings.backupConfiguration.enabled must be true: the model registry lives in this database"]


def prod_deletion_protection(resource_type: str, props: Mapping[str, Any]) -> list[str]:
    """In prod (``settings.userLabels.env``), ``deletionProtection`` not false. Missing: compliant (the provider
    defaults to true). Not prod: not applicable, dev may be torn down."""
    if resource_type != INSTANCE or not is_prod(resource_type, props):
        return []
    if get(props, "deletionProtection") is False:
        return ["deletionProtection is false in prod: a `pulumi destroy` or replacement would drop the database"]
    return []


def prod_point_in_time_recovery(resource_type: str, props: Mapping[str, Any]) -> list[str]:
    """In prod, ``settings.backupConfiguration.pointInTimeRecoveryEnabled: true``. Missing in prod: violation."""
    if resource_type != INSTANCE or not is_prod(resource_type, props):
        return []
    if get(props, "settings.backupConfiguration.pointInTimeRecoveryEnabled") is True:
        return []
    return ["settings.backupConfiguration.pointInTimeRecoveryEnabled must be true in prod"]
