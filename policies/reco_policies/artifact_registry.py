"""Artifact Registry: image tags are immutable, which the GitOps tree relies on (a tag names one digest)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .props import get

REPOSITORY = "gcp:artifactregistry/repository:Repository"


def immutable_tags(resource_type: str, props: Mapping[str, Any]) -> list[str]:
    """A standard DOCKER repository has ``dockerConfig.immutableTags: true``. Missing: violation (tags are mutable by
    default). Other formats and remote/virtual repositories: not applicable."""
    if resource_type != REPOSITORY or str(get(props, "format", "")).upper() != "DOCKER":
        return []
    if get(props, "mode", "STANDARD_REPOSITORY") != "STANDARD_REPOSITORY":
        return []
    if get(props, "dockerConfig.immutableTags") is True:
        return []
    return ["dockerConfig.immutableTags must be true: gitops/ pins images by tag and trusts a tag to name one digest"]
