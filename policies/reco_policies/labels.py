"""Labels that attribute every labelable GCP resource to an environment, a team and a budget."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .props import LABEL_PATHS, labels

REQUIRED_LABELS = ("env", "team", "cost-center")


def required_labels(resource_type: str, props: Mapping[str, Any]) -> list[str]:
    """env, team and cost-center are set (non-empty) on every type of ``props.LABEL_PATHS``. Missing labels: violation;
    types not in the list: not applicable."""
    present = labels(resource_type, props)
    if present is None:
        return []
    missing = [key for key in REQUIRED_LABELS if not str(present.get(key) or "").strip()]
    if not missing:
        return []
    return [f"{LABEL_PATHS[resource_type]} lacks {', '.join(missing)}"]
