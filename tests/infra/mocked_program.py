"""Run the whole Pulumi program (infra/) under Pulumi's mocks: no engine, no cloud, no network.

``declare("dev")`` / ``declare("prod")`` return every resource the program declares with the stack's config
(``Pulumi.<stack>.yaml``), as the mock monitor receives it: type token, name, inputs (wire names: camelCase;
secrets unwrapped, their paths listed in ``secrets``). ``run`` also returns the stack outputs (resolved, and
which are secret) and the error, if the program stopped on one. Each run happens in a fresh ``contextvars.Context``: Pulumi keeps its settings,
config and root stack resource in context variables, so runs do not see each other and any number can follow
one another in one process (dev, then prod, then dev again gives the same as the first). The program's modules
do nothing at import time, so they are not re-imported.
"""

from __future__ import annotations

import base64
import contextvars
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
import yaml
from pulumi.runtime.rpc import _special_secret_sig as _SECRET_SIG
from pulumi.runtime.rpc import _special_sig_key as _SIG_KEY
from pulumi.runtime.stack import run_pulumi_func
from pulumi.runtime.sync_await import _sync_await

ROOT = Path(__file__).resolve().parents[2]
PROJECT = "reco-articles"
# Values for the config secrets (set with `pulumi config set --secret` on a real stack; absent from the files).
TEST_SECRETS = {
    f"{PROJECT}:argoServerToken": "test-argo-server-token",
    f"{PROJECT}:alertWebhookUrl": "https://hooks.example.test/reco",
    f"{PROJECT}:gitopsToken": "test-gitops-token",
    f"{PROJECT}:rolloutsNotificationToken": "test-rollouts-token",
}
# What a StackReference to the staging stack reads (prod's Argo CD registers that cluster).
STAGING_OUTPUTS = {
    "cluster_endpoint": "198.51.100.20",
    "cluster_ca_certificate": base64.b64encode(b"staging CA").decode(),
}
CA_PEM = "-----BEGIN CERTIFICATE-----\nMIIB-mock\n-----END CERTIFICATE-----"


@dataclass(frozen=True)
class Declared:
    """One resource as the mock monitor received it."""

    type_: str  # e.g. "gcp:container/cluster:Cluster"
    name: str  # the Pulumi resource name
    inputs: dict[str, Any]  # secrets unwrapped to their values
    secrets: frozenset[str] = frozenset()  # dotted paths of the inputs that were Pulumi secrets ("stringData")


@dataclass
class Run:
    resources: list[Declared] = field(default_factory=list)
    outputs: dict[str, Any] = field(default_factory=dict)
    secret_outputs: set[str] = field(default_factory=set)
    error: BaseException | None = None

    def of_type(self, type_: str) -> list[Declared]:
        return [r for r in self.resources if r.type_ == type_]

    def one(self, type_: str, name: str | None = None) -> Declared:
        found = [r for r in self.of_type(type_) if name is None or r.name == name]
        if len(found) != 1:
            raise LookupError(f"{len(found)} resources of type {type_}{f' named {name}' if name else ''}")
        return found[0]


def stack_config(stack: str) -> dict[str, str]:
    """``Pulumi.<stack>.yaml``'s config as the engine hands it to a program: every value a string (JSON for
    objects, lists, numbers and booleans); encrypted values left out."""
    raw = yaml.safe_load((ROOT / f"Pulumi.{stack}.yaml").read_text()) or {}
    config = {}
    for key, value in (raw.get("config") or {}).items():
        if isinstance(value, dict) and "secure" in value:
            continue
        config[key] = value if isinstance(value, str) else json.dumps(value)
    return config


class _Recorder(pulumi.runtime.Mocks):
    """Records custom resources and answers with their inputs plus the outputs the program reads."""

    def __init__(self, project: str, region: str) -> None:
        self.project = project
        self.region = region
        self.resources: list[Declared] = []

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str | None, dict[str, Any]]:
        secrets: set[str] = set()
        inputs = _unwrap(dict(args.inputs), "", secrets)
        if args.custom:
            self.resources.append(Declared(args.typ, args.name, inputs, frozenset(secrets)))
        state = dict(args.inputs)  # as received, secrets still wrapped: outputs stay as secret as inputs were
        resource_id = f"{args.name}-id"
        name = state.get("name", args.name)
        p = self.project
        if args.typ == "gcp:container/cluster:Cluster":
            state.update(endpoint="203.0.113.10", masterAuth={"clusterCaCertificate": base64.b64encode(b"CA").decode()})
        elif args.typ == "gcp:compute/network:Network":
            resource_id = f"projects/{p}/global/networks/{name}"
        elif args.typ == "gcp:compute/subnetwork:Subnetwork":
            resource_id = f"projects/{p}/regions/{self.region}/subnetworks/{name}"
        elif args.typ == "gcp:compute/address:Address":
            state.update(address="198.51.100.7", selfLink=f"projects/{p}/regions/{self.region}/addresses/{name}")
        elif args.typ == "gcp:redis/instance:Instance":
            state.update(host="10.30.0.4", port=6378, authString="mock-auth/+=", serverCaCerts=[{"cert": CA_PEM}])
        elif args.typ == "gcp:sql/databaseInstance:DatabaseInstance":
            state.update(connectionName=f"{p}:{self.region}:{name}", privateIpAddress="10.30.1.5")
        elif args.typ == "gcp:serviceaccount/account:Account":
            email = f"{state['accountId']}@{p}.iam.gserviceaccount.com"
            state.update(email=email, name=f"projects/{p}/serviceAccounts/{email}", member=f"serviceAccount:{email}")
        elif args.typ == "gcp:projects/serviceIdentity:ServiceIdentity":
            email = "service-123456789@gcp-sa-pubsub.iam.gserviceaccount.com"
            state.update(email=email, member=f"serviceAccount:{email}")
        elif args.typ == "gcp:pubsub/topic:Topic":
            resource_id = f"projects/{p}/topics/{name}"
        elif args.typ == "gcp:secretmanager/secret:Secret":
            resource_id = f"projects/{p}/secrets/{state['secretId']}"
            state.update(name=resource_id)
        elif args.typ == "gcp:artifactregistry/repository:Repository":
            state.update(name=state["repositoryId"])
        elif args.typ == "random:index/randomPassword:RandomPassword":
            state.update(result="mock-random-password")
        elif args.typ == "pulumi:pulumi:StackReference":
            state.update(outputs=STAGING_OUTPUTS, secretOutputNames=[])
        return resource_id, state

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict[str, Any], list[tuple[str, str]] | None]:
        return {}, None


def _unwrap(value: Any, path: str, secrets: set[str]) -> Any:
    """The value with Pulumi's secret envelopes ({<sig>: <secret sig>, "value": v}) replaced by v, their paths
    added to ``secrets``."""
    if isinstance(value, dict):
        if value.get(_SIG_KEY) == _SECRET_SIG:
            secrets.add(path)
            return _unwrap(value.get("value"), path, secrets)
        return {k: _unwrap(v, f"{path}.{k}" if path else str(k), secrets) for k, v in value.items()}
    if isinstance(value, list):
        return [_unwrap(v, f"{path}[{i}]", secrets) for i, v in enumerate(value)]
    return value


def stack_settings(
    stack: str, overrides: dict[str, str | None] | None = None, *, secrets: bool = True
) -> dict[str, str]:
    """The config a run of ``stack`` sees: Pulumi.<stack>.yaml, TEST_SECRETS, then ``overrides`` (None removes)."""
    config = stack_config(stack)
    if secrets:
        config.update(TEST_SECRETS)
    for key, value in (overrides or {}).items():
        if value is None:
            config.pop(key, None)
        else:
            config[key] = value
    return config


def use_mocks(stack: str, overrides: dict[str, str | None] | None = None) -> list[Declared]:
    """Point Pulumi's runtime, in the current context, at the mocks and ``stack``'s config; returns the list the
    declared resources are recorded in. For ``@pulumi.runtime.test`` functions run in that context."""
    config = stack_settings(stack, overrides)
    mocks = _Recorder(config.get("gcp:project", "missing-project"), config.get("gcp:region", "europe-west1"))
    pulumi.runtime.set_mocks(mocks, project=PROJECT, stack=stack, preview=False)
    pulumi.runtime.set_all_config(config, [key for key in config if key in TEST_SECRETS])
    return mocks.resources


def run(stack: str, overrides: dict[str, str | None] | None = None) -> Run:
    """Run the program (config validated, then everything declared) for ``stack`` under mocks, in a fresh
    context. Never raises for the program's own errors: they are in ``Run.error``."""
    return contextvars.Context().run(_run, stack, overrides)


def declare(stack: str, overrides: dict[str, str | None] | None = None) -> list[Declared]:
    """Every custom resource the program declares for ``stack``; raises the program's error, if any."""
    result = run(stack, overrides)
    if result.error is not None:
        raise result.error
    return result.resources


def _run(stack: str, overrides: dict[str, str | None] | None) -> Run:
    from infra import program
    from infra.config import load

    result = Run(resources=use_mocks(stack, overrides))

    def body() -> None:
        outputs = program.build(load())
        for name, value in outputs.items():
            output = pulumi.Output.from_input(value)
            result.outputs[name] = _sync_await(output.future())
            if _sync_await(output.is_secret()):
                result.secret_outputs.add(name)

    try:
        _sync_await(run_pulumi_func(body))
    except Exception as err:  # the program's own error is the result, for tests to assert on
        result.error = err
    return result
