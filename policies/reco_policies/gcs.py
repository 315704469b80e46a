"""Cloud Storage buckets: no object-level ACLs, never public, versioned."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .props import get

BUCKET = "gcp:storage/bucket:Bucket"


def uniform_bucket_level_access(resource_type: str, props: Mapping[str, Any]) -> list[str]:
    """Buckets use IAM only (``uniformBucketLevelAccess: true``). Missing: violation (the provider defaults to false)."""
    if resource_type != BUCKET or get(props, "uniformBucketLevelAccess") is True:
        return []
    return ["uniformBucketLevelAccess must be true: object ACLs can grant access that bucket IAM does not show"]


def public_access_prevention(resource_type: str, props: Mapping[str, Any]) -> list[str]:
    """``publicAccessPrevention: "enforced"``. Missing: violation (the default "inherited" lets the org policy decide)."""
    if resource_type != BUCKET:
        return []
    value = get(props, "publicAccessPrevention")
    if value == "enforced":
        return []
    return [f'publicAccessPrevention must be "enforced", got {value!r}']


def versioning(resource_type: str, props: Mapping[str, Any]) -> list[str]:
    """``versioning.enabled: true``. Missing: violation (off by default)."""
    if resource_type != BUCKET or get(props, "versioning.enabled") is True:
        return []
    return ["versioning.enabled must be true so that an overwritten or deleted object can be restored"]
