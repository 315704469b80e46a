"""GKE Standard: private nodes, Workload Identity, Dataplane V2 (which enforces the gitops NetworkPolicies),
the Gateway API (the canary's weights), the Cloud Storage FUSE CSI driver (the workdir), shielded nodes, a
release channel and a maintenance window. No basic auth, no client certificate, no legacy ABAC. The default node
pool is removed: the pools are nodepools.py's."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_gcp as gcp

from infra.network import PODS_RANGE, SERVICES_RANGE


@dataclass
class GkeClusterArgs:
    name: str
    location: str  # a region (regional control plane) or a zone
    node_zones: Sequence[str]
    network: pulumi.Input[str]
    subnetwork: pulumi.Input[str]
    master_cidr: str
    master_authorized_networks: Sequence[str]
    workload_pool: str
    release_channel: str
    maintenance_start: str
    maintenance_end: str
    maintenance_recurrence: str
    deletion_protection: bool
    # The service account of the short-lived default pool GKE creates with the cluster (then removed):
    # never the Compute Engine default one, which is a project editor.
    bootstrap_node_service_account: pulumi.Input[str]
    labels: dict[str, str]


class GkeCluster(pulumi.ComponentResource):
    """The control plane; ``endpoint`` and ``ca_certificate`` are what a kubeconfig needs."""

    def __init__(self, name: str, args: GkeClusterArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("reco:infra:GkeCluster", name, None, opts)
        self.cluster = gcp.container.Cluster(
            f"{name}-cluster",
            name=args.name,
            location=args.location,
            node_locations=list(args.node_zones) or None,
            network=args.network,
            subnetwork=args.subnetwork,
            networking_mode="VPC_NATIVE",
            ip_allocation_policy=gcp.container.ClusterIpAllocationPolicyArgs(
                cluster_secondary_range_name=PODS_RANGE,
                services_secondary_range_name=SERVICES_RANGE,
            ),
            remove_default_node_pool=True,
            initial_node_count=1,
            node_config=gcp.container.ClusterNodeConfigArgs(
                service_account=args.bootstrap_node_service_account,
                oauth_scopes=["https://www.googleapis.com/auth/cloud-platform"],
                shielded_instance_config=gcp.container.ClusterNodeConfigShieldedInstanceConfigArgs(
                    enable_secure_boot=True, enable_integrity_monitoring=True
                ),
                workload_metadata_config=gcp.container.ClusterNodeConfigWorkloadMetadataConfigArgs(mode="GKE_METADATA"),
            ),
            private_cluster_config=gcp.container.ClusterPrivateClusterConfigArgs(
                enable_private_nodes=True,
                # The public endpoint stays (Pulumi, Argo CD of the other cluster), limited to the authorised
                # networks below and to IAM-authenticated callers.
                enable_private_endpoint=False,
                master_ipv4_cidr_block=args.master_cidr,
                master_global_access_config=gcp.container.ClusterPrivateClusterConfigMasterGlobalAccessConfigArgs(
                    enabled=True
                ),
            ),
            master_authorized_networks_config=gcp.container.ClusterMasterAuthorizedNetworksConfigArgs(
                cidr_blocks=[
                    gcp.container.ClusterMasterAuthorizedNetworksConfigCidrBlockArgs(
                        cidr_block=cidr, display_name=f"authorized-{i}"
                    )
                    for i, cidr in enumerate(args.master_authorized_networks)
                ],
                gcp_public_cidrs_access_enabled=False,
            ),
            master_auth=gcp.container.ClusterMasterAuthArgs(
                client_certificate_config=gcp.container.ClusterMasterAuthClientCertificateConfigArgs(
                    issue_client_certificate=False
                ),
            ),
            enable_legacy_abac=False,
            enable_shielded_nodes=True,
            workload_identity_config=gcp.container.ClusterWorkloadIdentityConfigArgs(workload_pool=args.workload_pool),
            release_channel=gcp.container.ClusterReleaseChannelArgs(channel=args.release_channel),
            # Dataplane V2 (eBPF): NetworkPolicy enforcement without the Calico add-on.
            datapath_provider="ADVANCED_DATAPATH",
            gateway_api_config=gcp.container.ClusterGatewayApiConfigArgs(channel="CHANNEL_STANDARD"),
            addons_config=gcp.container.ClusterAddonsConfigArgs(
                gcs_fuse_csi_driver_config=gcp.container.ClusterAddonsConfigGcsFuseCsiDriverConfigArgs(enabled=True),
                http_load_balancing=gcp.container.ClusterAddonsConfigHttpLoadBalancingArgs(disabled=False),
                horizontal_pod_autoscaling=gcp.container.ClusterAddonsConfigHorizontalPodAutoscalingArgs(
                    disabled=False
                ),
            ),
            maintenance_policy=gcp.container.ClusterMaintenancePolicyArgs(
                recurring_window=gcp.container.ClusterMaintenancePolicyRecurringWindowArgs(
                    start_time=args.maintenance_start,
                    end_time=args.maintenance_end,
                    recurrence=args.maintenance_recurrence,
                ),
            ),
            security_posture_config=gcp.container.ClusterSecurityPostureConfigArgs(
                mode="BASIC", vulnerability_mode="VULNERABILITY_BASIC"
            ),
            logging_config=gcp.container.ClusterLoggingConfigArgs(enable_components=["SYSTEM_COMPONENTS", "WORKLOADS"]),
            monitoring_config=gcp.container.ClusterMonitoringConfigArgs(enable_components=["SYSTEM_COMPONENTS"]),
            deletion_protection=args.deletion_protection,
            resource_labels=args.labels,
            # The default pool's settings only matter for the minutes it exists.
            opts=pulumi.ResourceOptions(parent=self, ignore_changes=["nodeConfig", "initialNodeCount"]),
        )
        self.name = self.cluster.name
        self.endpoint = self.cluster.endpoint
        self.ca_certificate = self.cluster.master_auth.apply(lambda auth: auth.cluster_ca_certificate or "")
        self.register_outputs({"name": self.name, "endpoint": self.endpoint, "ca_certificate": self.ca_certificate})
