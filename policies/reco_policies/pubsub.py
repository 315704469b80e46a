"""Pub/Sub: a message that cannot be delivered goes to a dead-letter topic, not back forever."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .props import get

SUBSCRIPTION = "gcp:pubsub/subscription:Subscription"


def dead_letter_policy(resource_type: str, props: Mapping[str, Any]) -> list[str]:
    """``deadLetterPolicy.deadLetterTopic`` is set. Missing: violation."""
    if resource_type != SUBSCRIPTION or get(props, "deadLetterPolicy.deadLetterTopic"):
        return []
    return ["deadLetterPolicy.deadLetterTopic must be set: a poison message would otherwise be redelivered forever"]
