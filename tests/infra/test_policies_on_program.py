"""The policy pack over the infra program as Pulumi mocks declare it, for the dev and the prod stack:
every rule on every declared resource finds nothing, and a broken copy of a real resource is caught."""

from __future__ import annotations

import copy
import sys
from pathlib import Path
from typing import Any

import pytest
from mocked_program import declare

POLICIES_DIR = Path(__file__).resolve().parents[2] / "policies"
if str(POLICIES_DIR) not in sys.path:
    sys.path.insert(0, str(POLICIES_DIR))

from reco_policies.catalog import RULES  # noqa: E402

STACKS = ("dev", "prod")
# Types the rules are about; the program declaring them keeps "no violations" from being vacuous.
EXPECTED_TYPES = {
    "gcp:storage/bucket:Bucket",
    "gcp:container/cluster:Cluster",
    "gcp:container/nodePool:NodePool",
    "gcp:redis/instance:Instance",
    "gcp:sql/databaseInstance:DatabaseInstance",
    "gcp:pubsub/topic:Topic",
    "gcp:pubsub/subscription:Subscription",
    "gcp:artifactregistry/repository:Repository",
    "kubernetes:helm.sh/v3:Release",
}

_declared: dict[str, list[Any]] = {}


def declared(stack: str) -> list[Any]:
    if stack not in _declared:
        _declared[stack] = declare(stack)
    return _declared[stack]


def violations(resources: list[Any]) -> list[str]:
    return [
        f"{rule.name} ({rule.level.value}) on {resource.type_} {resource.name!r}: {message}"
        for resource in resources
        for rule in RULES
        for message in rule.check(resource.type_, resource.inputs)
    ]


def test_program_declares_what_the_rules_check() -> None:
    """Over both stacks: Cloud SQL and the Argo CD release live in prod only (prod hosts MLflow and Argo CD)."""
    missing = EXPECTED_TYPES - {resource.type_ for stack in STACKS for resource in declared(stack)}
    assert not missing, f"neither stack declares {sorted(missing)}"


@pytest.mark.parametrize("stack", STACKS)
def test_program_passes_every_rule(stack: str) -> None:
    found = violations(declared(stack))
    for line in found:
        print(f"{stack}: {line}")
    assert found == [], f"{len(found)} violation(s) in {stack}, printed above"


def _first(stack: str, type_: str, where: Any = lambda inputs: True) -> Any:
    return next(r for r in declared(stack) if r.type_ == type_ and where(r.inputs))


@pytest.mark.parametrize(
    ("type_", "path", "rule"),
    [
        ("gcp:storage/bucket:Bucket", "publicAccessPrevention", "gcs-public-access-prevention"),
        ("gcp:redis/instance:Instance", "authEnabled", "redis-auth-enabled"),
        ("gcp:container/nodePool:NodePool", "nodeConfig.serviceAccount", "gke-node-dedicated-service-account"),
    ],
)
def test_a_broken_copy_of_a_real_resource_is_caught(type_: str, path: str, rule: str) -> None:
    """The program's own resource, with one property dropped, newly violates exactly the rule about that property."""
    resource = _first("prod", type_)
    inputs = copy.deepcopy(dict(resource.inputs))
    *parents, leaf = path.split(".")
    node = inputs
    for key in parents:
        node = node[key]
    del node[leaf]
    before = {r.name for r in RULES if r.check(type_, resource.inputs)}
    after = {r.name for r in RULES if r.check(type_, inputs)}
    assert after - before == {rule}, f"{resource.name!r} without {path}: newly violated {sorted(after - before)}"
