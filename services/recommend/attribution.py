"""Request ids that say who served the list, so feedback is attributed on any pod.

The frontend posts feedback to whichever pod the Kubernetes Service picks, often not the one that
answered. A click on a canary's list that reaches a stable pod without ``variant`` and
``model_version`` would be counted as the stable one's and blur the canary analysis, which
compares click-through rates by variant. The id carries both, so any pod attributes the event
without shared state; events that do echo ``variant`` / ``model_version`` keep their own.
"""

from __future__ import annotations

VARIANTS = frozenset(("stable", "canary"))


def make_request_id(token: str, variant: str, version: str) -> str:
    """``<32 hex>.<variant>.<model version>`` (``token``: 32 random hex characters)."""
    return f"{token}.{variant}.{version}"


def served_by(request_id: str) -> tuple[str, str] | None:
    """(variant, model_version) from an id made by ``make_request_id``; None for any other id."""
    parts = request_id.split(".", 2)
    if len(parts) != 3 or len(parts[0]) != 32 or parts[1] not in VARIANTS or not parts[2]:
        return None
    return parts[1], parts[2]



def attribute(request_id: str, model_version: str | None, variant: str | None) -> tuple[str | None, str | None]:
    """(model_version, variant) of a feedback event: its own where given, else its id's."""
    if model_version is None or variant is None:
        served = served_by(request_id)
        if served is not None:
            return model_version or served[1], variant or served[0]
    return model_version, variant
