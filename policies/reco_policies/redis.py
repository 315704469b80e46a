"""Memorystore for Redis: AUTH, TLS, and a replica in production."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .props import get, is_prod

INSTANCE = "gcp:redis/instance:Instance"


def auth_enabled(resource_type: str, props: Mapping[str, Any]) -> list[str]:
    """``authEnabled: true``. Missing: violation (off by default: anyone on the VPC could read the features)."""
    if resource_type != INSTANCE or get(props, "authEnabled") is True:
        return []
    return ["authEnabled must be true: without AUTH any client on the network can read and write"]


def transit_encryption(resource_type: str, props: Mapping[str, Any]) -> list[str]:
    """``transitEncryptionMode: SERVER_AUTHENTICATION``. Missing: violation (the default is DISABLED)."""
    if resource_type != INSTANCE:
        return []
    mode = get(props, "transitEncryptionMode")
    if mode == "SERVER_AUTHENTICATION":
        return []
    return [f"transitEncryptionMode must be SERVER_AUTHENTICATION, got {mode!r}: the AUTH string would cross in clear"]


def prod_standard_ha(resource_type: str, props: Mapping[str, Any]) -> list[str]:
    """In prod (``labels.env``), ``tier: STANDARD_HA``. Missing tier in prod: violation (the default is BASIC).
    Not prod, or no env label: not applicable (``gcp-required-labels`` reports the label)."""
    if resource_type != INSTANCE or not is_prod(resource_type, props):
        return []
    tier = get(props, "tier")
    if tier == "STANDARD_HA":
        return []
    return [f"tier must be STANDARD_HA in prod, got {tier!r}: a BASIC instance loses its data on any failure"]
