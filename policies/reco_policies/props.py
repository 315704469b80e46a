"""Reading resource inputs the same way from CrossGuard and from Pulumi mocks.

The two shapes differ in two ways, both absorbed here so that rules need no wrapper:

* CrossGuard hands read-only ``Mapping``/``Sequence`` proxies (not ``dict``/``list``) that raise
  ``UnknownValueError`` when a value is unknown during preview; rules let that error through, and
  CrossGuard reports the rule as not runnable in preview instead of guessing.
* Mocks keep secrets in their wire form ``{SIG: SECRET_SIG, "value": ...}``, CrossGuard unwraps them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

_SIG_KEY = "4dabf18193072939515e22adb298388d"
_SECRET_SIG = "1b47061264138c4ac30d75fd1eb44270"

PROD_ENVS = frozenset({"prod", "production"})

# Where each labelable type keeps its user labels. Only types whose GCP API takes user labels and that
# this project creates or plausibly will; a type missing here is not checked, so add it when the
# program starts using it. Left out on purpose: NodePool (the cluster's resourceLabels propagate to
# node VMs and disks), networks, subnetworks, routers, service accounts and IAM (no labels in the API),
# Cloud SQL databases and users (labels live on the instance).
LABEL_PATHS: Mapping[str, str] = {
    "gcp:storage/bucket:Bucket": "labels",
    "gcp:redis/instance:Instance": "labels",
    "gcp:redis/cluster:Cluster": "labels",
    "gcp:memorystore/instance:Instance": "labels",
    "gcp:sql/databaseInstance:DatabaseInstance": "settings.userLabels",
    "gcp:container/cluster:Cluster": "resourceLabels",
    "gcp:pubsub/topic:Topic": "labels",
    "gcp:pubsub/subscription:Subscription": "labels",
    "gcp:artifactregistry/repository:Repository": "labels",
    "gcp:secretmanager/secret:Secret": "labels",
    "gcp:secretmanager/regionalSecret:RegionalSecret": "labels",
    "gcp:kms/cryptoKey:CryptoKey": "labels",
    "gcp:compute/address:Address": "labels",
    "gcp:compute/globalAddress:GlobalAddress": "labels",
    "gcp:compute/disk:Disk": "labels",
    "gcp:compute/instance:Instance": "labels",
    "gcp:compute/forwardingRule:ForwardingRule": "labels",
    "gcp:compute/globalForwardingRule:GlobalForwardingRule": "labels",
    "gcp:dns/managedZone:ManagedZone": "labels",
    "gcp:certificatemanager/certificate:Certificate": "labels",
}


def unwrap(value: Any) -> Any:
    """``value`` with a mock's secret envelope removed (CrossGuard's values come unwrapped already)."""
    while isinstance(value, Mapping) and value.get(_SIG_KEY) == _SECRET_SIG:
        value = value.get("value")
    return value


def get(props: Mapping[str, Any], path: str, default: Any = None) -> Any:
    """The value at a dotted ``path`` (``"settings.ipConfiguration.ipv4Enabled"``), ``default`` when absent or null."""
    node: Any = props
    for key in path.split("."):
        node = unwrap(node)
        if not isinstance(node, Mapping) or key not in node:
            return default
        node = node[key]
    node = unwrap(node)
    return default if node is None else node


def items(value: Any) -> list[Any]:
    """A list input as a Python list (``[]`` when absent); strings are not lists."""
    value = unwrap(value)
    if isinstance(value, Sequence) and not isinstance(value, str | bytes):
        return [unwrap(v) for v in value]
    return []


def labels(resource_type: str, props: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The user labels of a labelable type (``{}`` when it has none), ``None`` for a type that takes no labels."""
    path = LABEL_PATHS.get(resource_type)
    if path is None:
        return None
    value = get(props, path, {})
    return value if isinstance(value, Mapping) else {}


def is_prod(resource_type: str, props: Mapping[str, Any]) -> bool:
    """Whether the resource belongs to a production stack, read from its ``env`` label.

    The label and not the stack name: a policy sees one resource's inputs, and the ``env`` label is on
    every labelable resource (``gcp-required-labels``), so dropping it is itself a violation.
    """
    return str((labels(resource_type, props) or {}).get("env", "")).lower() in PROD_ENVS
