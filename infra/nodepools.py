"""The node pools and their identities. The general pool runs everything but GPU training; the GPU pool scales
from zero when the train step's GPU variant asks for it, and back to zero after. Both pools' labels and the GPU
pool's accelerator and taint are platform.yaml's (``node_pools``): the rendered workflow selects and tolerates
exactly those, and tests/infra compares the three.

Each pool runs as its own Google service account holding only what a node needs: write logs and metrics
(roles/container.defaultNodeServiceAccount) and pull images from the project's one repository."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_gcp as gcp

# What a node needs of the project: logging.logWriter, monitoring.metricWriter, monitoring.viewer,
# stackdriver.resourceMetadata.writer and autoscaling.metricsWriter, as GKE's own role.
NODE_ROLE = "roles/container.defaultNodeServiceAccount"
# Kubernetes taint effects as the GKE API spells them.
TAINT_EFFECTS = {"NoSchedule": "NO_SCHEDULE", "PreferNoSchedule": "PREFER_NO_SCHEDULE", "NoExecute": "NO_EXECUTE"}


@dataclass
class NodeIdentitiesArgs:
    project: str
    registry: gcp.artifactregistry.Repository


class NodeIdentities(pulumi.ComponentResource):
    """One Google service account per pool (``general``, ``gpu``), least privilege."""

    def __init__(self, name: str, args: NodeIdentitiesArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("reco:infra:NodeIdentities", name, None, opts)
        self.accounts: dict[str, gcp.serviceaccount.Account] = {}
        for pool in ("general", "gpu"):
            account = gcp.serviceaccount.Account(
                f"{name}-{pool}",
                account_id=f"reco-nodes-{pool}",
                display_name=f"GKE nodes, {pool} pool",
                opts=pulumi.ResourceOptions(parent=self),
            )
            member = account.email.apply(lambda email: f"serviceAccount:{email}")
            gcp.projects.IAMMember(
                f"{name}-{pool}-node",
                project=args.project,
                role=NODE_ROLE,
                member=member,
                opts=pulumi.ResourceOptions(parent=account),
            )
            gcp.artifactregistry.RepositoryIamMember(
                f"{name}-{pool}-pull",
                location=args.registry.location,
                repository=args.registry.name,
                role="roles/artifactregistry.reader",
                member=member,
                opts=pulumi.ResourceOptions(parent=account),
            )
            self.accounts[pool] = account
        self.register_outputs({pool: account.email for pool, account in self.accounts.items()})


@dataclass
class NodePoolsArgs:
    cluster: pulumi.Input[str]
    location: str
    node_zones: Sequence[str]
    gpu_zones: Sequence[str]
    general_service_account: pulumi.Input[str]
    gpu_service_account: pulumi.Input[str]
    general_labels: Mapping[str, str]  # platform.yaml node_pools.cpu.labels
    gpu_labels: Mapping[str, str]  # platform.yaml node_pools.gpu.labels
    gpu_taint: Mapping[str, str]  # platform.yaml node_pools.gpu.taint: key, value, effect (Kubernetes spelling)
    system_machine_type: str
    system_min_nodes: int
    system_max_nodes: int
    gpu_machine_type: str
    gpu_accelerator: str
    gpu_count: int
    gpu_min_nodes: int
    gpu_max_nodes: int
    gpu_spot: bool
    gpu_driver_version: str
    resource_labels: dict[str, str]


class NodePools(pulumi.ComponentResource):
    """The ``general`` pool and the ``gpu`` pool (scales to zero, tainted, GKE installs the driver)."""

    def __init__(self, name: str, args: NodePoolsArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("reco:infra:NodePools", name, None, opts)

        self.general = gcp.container.NodePool(
            f"{name}-general",
            name="general",
            cluster=args.cluster,
            location=args.location,
            node_locations=list(args.node_zones) or None,
            autoscaling=gcp.container.NodePoolAutoscalingArgs(
                total_min_node_count=args.system_min_nodes,
                total_max_node_count=args.system_max_nodes,
                location_policy="BALANCED",
            ),
            initial_node_count=1,  # per zone, at creation; then the autoscaler's
            management=gcp.container.NodePoolManagementArgs(auto_repair=True, auto_upgrade=True),
            upgrade_settings=gcp.container.NodePoolUpgradeSettingsArgs(
                max_surge=1, max_unavailable=0, strategy="SURGE"
            ),
            node_config=gcp.container.NodePoolNodeConfigArgs(
                machine_type=args.system_machine_type,
                labels=dict(args.general_labels),
                **_hardened_node(args.general_service_account, args.resource_labels),
            ),
            # The autoscaler owns the count.
            opts=pulumi.ResourceOptions(parent=self, ignore_changes=["initialNodeCount"]),
        )

        taint = gcp.container.NodePoolNodeConfigTaintArgs(
            key=args.gpu_taint["key"],
            value=args.gpu_taint["value"],
            effect=TAINT_EFFECTS[args.gpu_taint["effect"]],
        )
        self.gpu = gcp.container.NodePool(
            f"{name}-gpu",
            name="gpu",
            cluster=args.cluster,
            location=args.location,
            node_locations=list(args.gpu_zones or args.node_zones) or None,
            autoscaling=gcp.container.NodePoolAutoscalingArgs(
                total_min_node_count=args.gpu_min_nodes,
                total_max_node_count=args.gpu_max_nodes,
                # Spot capacity: any zone that has some, rather than an even spread.
                location_policy="ANY",
            ),
            initial_node_count=0,
            management=gcp.container.NodePoolManagementArgs(auto_repair=True, auto_upgrade=True),
            upgrade_settings=gcp.container.NodePoolUpgradeSettingsArgs(
                max_surge=1, max_unavailable=0, strategy="SURGE"
            ),
            node_config=gcp.container.NodePoolNodeConfigArgs(
                machine_type=args.gpu_machine_type,
                spot=args.gpu_spot,
                guest_accelerators=[
                    gcp.container.NodePoolNodeConfigGuestAcceleratorArgs(
                        type=args.gpu_accelerator,
                        count=args.gpu_count,
                        gpu_driver_installation_config=gcp.container.NodePoolNodeConfigGuestAcceleratorGpuDriverInstallationConfigArgs(
                            gpu_driver_version=args.gpu_driver_version
                        ),
                    )
                ],
                # GKE adds the accelerator label (cloud.google.com/gke-accelerator) itself; ours is platform.yaml's.
                labels=dict(args.gpu_labels),
                taints=[taint],
                **_hardened_node(args.gpu_service_account, args.resource_labels),
            ),
            opts=pulumi.ResourceOptions(parent=self, ignore_changes=["initialNodeCount"]),
        )
        self.register_outputs({"general": self.general.name, "gpu": self.gpu.name})


def _hardened_node(service_account: pulumi.Input[str], resource_labels: dict[str, str]) -> dict[str, Any]:
    """What every pool's nodes share: own service account, shielded VM, metadata server hidden behind
    Workload Identity, containerd on COS, GCP labels."""
    return {
        "service_account": service_account,
        "oauth_scopes": ["https://www.googleapis.com/auth/cloud-platform"],
        "image_type": "COS_CONTAINERD",
        "disk_type": "pd-balanced",
        "disk_size_gb": 100,
        "metadata": {"disable-legacy-endpoints": "true"},
        "shielded_instance_config": gcp.container.NodePoolNodeConfigShieldedInstanceConfigArgs(
            enable_secure_boot=True, enable_integrity_monitoring=True
        ),
        "workload_metadata_config": gcp.container.NodePoolNodeConfigWorkloadMetadataConfigArgs(mode="GKE_METADATA"),
        "resource_labels": resource_labels,
    }
