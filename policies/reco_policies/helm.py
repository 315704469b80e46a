"""Helm: a chart version is a pin, never a range, so a preview shows exactly what will be installed."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from .props import get

HELM_TYPES = frozenset(
    {
        "kubernetes:helm.sh/v3:Release",
        "kubernetes:helm.sh/v3:Chart",
        "kubernetes:helm.sh/v4:Chart",
    }
)
# Exact SemVer 2.0 (optionally "v"-prefixed): no ~, ^, x, *, ranges, "latest".
EXACT_VERSION = re.compile(r"v?(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?")


def chart_version_pinned(resource_type: str, props: Mapping[str, Any]) -> list[str]:
    """``version`` is an exact SemVer version. Missing: violation, except for a local chart (a path without a
    repository), whose version is the committed Chart.yaml.

    Python's ``helm.v3.Chart`` is a local component that registers no inputs, so CrossGuard never sees its
    version and this rule rejects it: use ``helm.v3.Release`` or ``helm.v4.Chart``, which carry ``version``.
    """
    if resource_type not in HELM_TYPES:
        return []
    chart = str(get(props, "chart", ""))
    if chart.startswith(("./", "../", "/")) and not get(props, "repositoryOpts.repo"):
        return []
    version = get(props, "version")
    if isinstance(version, str) and EXACT_VERSION.fullmatch(version.strip()):
        return []
    return [f"chart {chart or '?'} must pin an exact version, got {version!r}"]
