"""Pub/Sub: a message that cannot be delivered goes to a dead-letter topic, not back forever."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from .props import get

SUBSCRIPTION = "gcp:pubsub/subscription:Subscription"
# A topic named like this is a dead-letter topic ("projects/p/topics/reco-events-dead-letter", "...-dlq").
DEAD_LETTER_TOPIC = re.compile(r"(^|[-_./])(dead-?letter|dlq)$", re.IGNORECASE)


def dead_letter_policy(resource_type: str, props: Mapping[str, Any]) -> list[str]:
    """``deadLetterPolicy.deadLetterTopic`` is set. Missing: violation, except on a subscription of a dead-letter
    topic (by name): that subscription is where failed messages are kept, there is no further place to send them.
    """
    if resource_type != SUBSCRIPTION or get(props, "deadLetterPolicy.deadLetterTopic"):
        return []
    if DEAD_LETTER_TOPIC.search(str(get(props, "topic", "")).rstrip("/")):
        return []
    return ["deadLetterPolicy.deadLetterTopic must be set: a poison message would otherwise be redelivered forever"]
