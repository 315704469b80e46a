"""GKE Standard clusters and their node pools.

Node-pool rules look at ``NodePool`` resources, at node pools declared inline in a ``Cluster``, and at
the cluster's default pool while it is kept (``removeDefaultNodePool`` not true): all three run nodes.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from .props import get, items

CLUSTER = "gcp:container/cluster:Cluster"
NODE_POOL = "gcp:container/nodePool:NodePool"

RELEASE_CHANNELS = frozenset({"RAPID", "REGULAR", "STABLE", "EXTENDED"})
GPU_TAINT_KEY = "nvidia.com/gpu"
# Machine families that come with GPUs attached, so a pool of them is a GPU pool without guestAccelerators.
GPU_MACHINE_PREFIXES = ("a2-", "a3-", "a4-", "g2-", "g4-")


# --- clusters -------------------------------------------------------------------------------------


def private_nodes(resource_type: str, props: Mapping[str, Any]) -> list[str]:
    """Nodes have no public IPs. Cluster: ``privateClusterConfig.enablePrivateNodes`` true, missing = violation.

    A pool may override the cluster with ``networkConfig.enablePrivateNodes: false`` (violation); a pool
    without it inherits the cluster's setting (compliant).
    """
    found = []
    if resource_type == CLUSTER and get(props, "privateClusterConfig.enablePrivateNodes") is not True:
        found.append("privateClusterConfig.enablePrivateNodes must be true: nodes must not get public IPs")
    for where, pool in _pools(resource_type, props):
        if get(pool, "networkConfig.enablePrivateNodes") is False:
            found.append(f"{where}networkConfig.enablePrivateNodes is false: the pool's nodes would get public IPs")
    return found


def workload_identity(resource_type: str, props: Mapping[str, Any]) -> list[str]:
    """``workloadIdentityConfig.workloadPool`` is set. Missing: violation (pods would act as the node's account)."""
    if resource_type != CLUSTER or get(props, "workloadIdentityConfig.workloadPool"):
        return []
    return ["workloadIdentityConfig.workloadPool must be set (PROJECT.svc.id.goog) so pods get their own identity"]


def shielded_nodes(resource_type: str, props: Mapping[str, Any]) -> list[str]:
    """``enableShieldedNodes`` not false. Missing: compliant (GKE and the provider default to true)."""
    if resource_type == CLUSTER and get(props, "enableShieldedNodes") is False:
        return ["enableShieldedNodes is false: nodes must be Shielded GKE nodes"]
    return []


def legacy_abac_disabled(resource_type: str, props: Mapping[str, Any]) -> list[str]:
    """``enableLegacyAbac`` not true. Missing: compliant (off by default)."""
    if resource_type == CLUSTER and get(props, "enableLegacyAbac") is True:
        return ["enableLegacyAbac is true: legacy ABAC bypasses RBAC"]
    return []


def no_basic_auth_or_client_cert(resource_type: str, props: Mapping[str, Any]) -> list[str]:
    """No static password and no issued client certificate in ``masterAuth``. Missing: compliant (neither by default)."""
    if resource_type != CLUSTER:
        return []
    found = []
    if get(props, "masterAuth.username") or get(props, "masterAuth.password"):
        found.append("masterAuth has a username/password: basic auth is a static credential to the API server")
    if get(props, "masterAuth.clientCertificateConfig.issueClientCertificate") is True:
        found.append("masterAuth.clientCertificateConfig.issueClientCertificate is true: a client cert cannot be revoked")
    return found


def release_channel(resource_type: str, props: Mapping[str, Any]) -> list[str]:
    """``releaseChannel.channel`` is RAPID, REGULAR, STABLE or EXTENDED. Missing or UNSPECIFIED: violation."""
    if resource_type != CLUSTER:
        return []
    channel = get(props, "releaseChannel.channel")
    if channel in RELEASE_CHANNELS:
        return []
    return [f"releaseChannel.channel must be one of {sorted(RELEASE_CHANNELS)}, got {channel!r}"]


def network_policy(resource_type: str, props: Mapping[str, Any]) -> list[str]:
    """NetworkPolicies are enforced: Dataplane V2 (``datapathProvider: ADVANCED_DATAPATH``) or
    ``networkPolicy.enabled``. Missing both: violation (the NetworkPolicies in gitops/ would be ignored)."""
    if resource_type != CLUSTER:
        return []
    if get(props, "datapathProvider") == "ADVANCED_DATAPATH" or get(props, "networkPolicy.enabled") is True:
        return []
    return ["NetworkPolicies are not enforced: set datapathProvider ADVANCED_DATAPATH (Dataplane V2)"]


# --- node pools -----------------------------------------------------------------------------------


def _pools(resource_type: str, props: Mapping[str, Any]) -> Iterator[tuple[str, Mapping[str, Any]]]:
    """(prefix for messages, pool inputs with ``nodeConfig``/``management``/``networkConfig``) of a resource."""
    if resource_type == NODE_POOL:
        yield "", props
    elif resource_type == CLUSTER:
        for index, pool in enumerate(items(get(props, "nodePools"))):
            yield f"nodePools[{index}].", pool
        if get(props, "removeDefaultNodePool") is not True and not items(get(props, "nodePools")):
            yield "default pool ", {"nodeConfig": get(props, "nodeConfig", {})}


def node_auto_repair_upgrade(resource_type: str, props: Mapping[str, Any]) -> list[str]:
    """``management.autoRepair`` and ``autoUpgrade`` not false. Missing: compliant (both default to true)."""
    return [
        f"{where}management.{field} is false: nodes must be repaired and patched by GKE"
        for where, pool in _pools(resource_type, props)
        for field in ("autoRepair", "autoUpgrade")
        if get(pool, f"management.{field}") is False
    ]


def _is_gpu_pool(pool: Mapping[str, Any]) -> bool:
    machine = str(get(pool, "nodeConfig.machineType", ""))
    return bool(items(get(pool, "nodeConfig.guestAccelerators"))) or machine.startswith(GPU_MACHINE_PREFIXES)


def gpu_pool_tainted(resource_type: str, props: Mapping[str, Any]) -> list[str]:
    """A GPU pool (guestAccelerators, or an a2/a3/a4/g2/g4 machine) carries the ``nvidia.com/gpu`` taint with effect
    NO_SCHEDULE or NO_EXECUTE. A pool without GPUs: not applicable; a GPU pool without taints: violation."""
    found = []
    for where, pool in _pools(resource_type, props):
        if not _is_gpu_pool(pool):
            continue
        taints = items(get(pool, "nodeConfig.taints"))
        if not any(
            get(t, "key") == GPU_TAINT_KEY and get(t, "effect") in ("NO_SCHEDULE", "NO_EXECUTE") for t in taints
        ):
            found.append(f"{where}GPU pool lacks the taint {GPU_TAINT_KEY}=present:NoSchedule: CPU pods would land on it")
    return found


def workload_metadata(resource_type: str, props: Mapping[str, Any]) -> list[str]:
    """``nodeConfig.workloadMetadataConfig.mode: GKE_METADATA``. Missing: violation (a pool cannot see its
    cluster, so the pool states it; without it pods may read the node's credentials from the metadata server)."""
    return [
        f"{where}nodeConfig.workloadMetadataConfig.mode must be GKE_METADATA, got {mode!r}"
        for where, pool in _pools(resource_type, props)
        if (mode := get(pool, "nodeConfig.workloadMetadataConfig.mode")) != "GKE_METADATA"
    ]


def _is_default_compute_account(account: str) -> bool:
    return account == "default" or account.endswith("-compute@developer.gserviceaccount.com")


def dedicated_service_account(resource_type: str, props: Mapping[str, Any]) -> list[str]:
    """``nodeConfig.serviceAccount`` is a dedicated account. Missing: violation (nodes run as the Compute Engine
    default account, which holds roles/editor on the project)."""
    found = []
    for where, pool in _pools(resource_type, props):
        account = get(pool, "nodeConfig.serviceAccount")
        if not account or _is_default_compute_account(str(account)):
            found.append(f"{where}nodeConfig.serviceAccount must be a dedicated account, got {account!r}")
    return found


def secure_boot(resource_type: str, props: Mapping[str, Any]) -> list[str]:
    """``nodeConfig.shieldedInstanceConfig.enableSecureBoot: true``. Missing: violation (off by default)."""
    return [
        f"{where}nodeConfig.shieldedInstanceConfig.enableSecureBoot must be true"
        for where, pool in _pools(resource_type, props)
        if get(pool, "nodeConfig.shieldedInstanceConfig.enableSecureBoot") is not True
    ]
