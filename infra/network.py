"""The VPC: one subnet for the nodes (secondary ranges for pods and Services), the proxy-only subnet of the
regional internal Gateway, Cloud NAT for the private nodes' way out (one static address, so other
clusters' authorised networks and outside allow-lists can name it), and private service access, the peering
through which Memorystore and Cloud SQL get their private addresses."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

import pulumi
import pulumi_gcp as gcp

PODS_RANGE = "pods"
SERVICES_RANGE = "services"


@dataclass
class NetworkArgs:
    region: str
    subnet_cidr: str
    pods_cidr: str
    services_cidr: str
    proxy_only_cidr: str  # gitops/base/networkpolicy.yaml lets this range reach the API pods
    private_services_cidr: str
    labels: dict[str, str]


class Network(pulumi.ComponentResource):
    """VPC, subnets, router + NAT, private service access."""

    def __init__(self, name: str, args: NetworkArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("reco:infra:Network", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)

        self.vpc = gcp.compute.Network(
            f"{name}-vpc",
            name=name,
            auto_create_subnetworks=False,
            routing_mode="REGIONAL",
            opts=child,
        )
        self.subnet = gcp.compute.Subnetwork(
            f"{name}-nodes",
            name=f"{name}-nodes",
            region=args.region,
            network=self.vpc.id,
            ip_cidr_range=args.subnet_cidr,
            # Private nodes reach Google APIs (GCS, Pub/Sub, Artifact Registry) without public addresses.
            private_ip_google_access=True,
            secondary_ip_ranges=[
                gcp.compute.SubnetworkSecondaryIpRangeArgs(range_name=PODS_RANGE, ip_cidr_range=args.pods_cidr),
                gcp.compute.SubnetworkSecondaryIpRangeArgs(range_name=SERVICES_RANGE, ip_cidr_range=args.services_cidr),
            ],
            log_config=gcp.compute.SubnetworkLogConfigArgs(
                aggregation_interval="INTERVAL_5_SEC", flow_sampling=0.1, metadata="INCLUDE_ALL_METADATA"
            ),
            opts=child,
        )
        # The regional internal Application Load Balancer (GatewayClass gke-l7-rilb) runs its Envoy proxies here;
        # one per region and VPC.
        self.proxy_only_subnet = gcp.compute.Subnetwork(
            f"{name}-proxy-only",
            name=f"{name}-proxy-only",
            region=args.region,
            network=self.vpc.id,
            ip_cidr_range=args.proxy_only_cidr,
            purpose="REGIONAL_MANAGED_PROXY",
            role="ACTIVE",
            opts=child,
        )

        self.router = gcp.compute.Router(
            f"{name}-router", name=f"{name}-router", region=args.region, network=self.vpc.id, opts=child
        )
        self.nat_address = gcp.compute.Address(
            f"{name}-nat",
            name=f"{name}-nat",
            region=args.region,
            address_type="EXTERNAL",
            labels=args.labels,
            opts=child,
        )
        self.nat = gcp.compute.RouterNat(
            f"{name}-nat",
            name=f"{name}-nat",
            region=args.region,
            router=self.router.name,
            nat_ip_allocate_option="MANUAL_ONLY",
            nat_ips=[self.nat_address.self_link],
            source_subnetwork_ip_ranges_to_nat="ALL_SUBNETWORKS_ALL_IP_RANGES",
            log_config=gcp.compute.RouterNatLogConfigArgs(enable=True, filter="ERRORS_ONLY"),
            opts=child,
        )

        # Private service access: Google's services peer with the VPC and take addresses from this range.
        psa = ipaddress.IPv4Network(args.private_services_cidr)
        self.private_services_range = gcp.compute.GlobalAddress(
            f"{name}-private-services",
            name=f"{name}-private-services",
            purpose="VPC_PEERING",
            address_type="INTERNAL",
            address=str(psa.network_address),
            prefix_length=psa.prefixlen,
            network=self.vpc.id,
            labels=args.labels,
            opts=child,
        )
        self.private_services = gcp.servicenetworking.Connection(
            f"{name}-private-services",
            network=self.vpc.id,
            service="servicenetworking.googleapis.com",
            reserved_peering_ranges=[self.private_services_range.name],
            opts=child,
        )

        self.register_outputs(
            {
                "network": self.vpc.id,
                "subnetwork": self.subnet.id,
                "proxy_only_subnet": self.proxy_only_subnet.id,
                "nat_ip": self.nat_address.address,
            }
        )
