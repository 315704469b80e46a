"""Who may do what. One Google service account per workload, bound by Workload Identity to the Kubernetes
service account that platform.yaml (and the gitops tree) names, each holding the narrowest role on the
narrowest resource: a bucket, a topic, a secret, never the project where a resource-level binding exists. No
primitive role (owner, editor, viewer) anywhere.

| Google SA       | Kubernetes SA                               | may                                              |
|-----------------|---------------------------------------------|--------------------------------------------------|
| reco-pipeline   | reco/reco-pipeline                          | read/write the lake and the Feast registry       |
| reco-api        | reco/reco-api                               | read them; publish to the events topic           |
| mlflow          | mlflow/mlflow                               | read/write the MLflow bucket; read its DB secret |
| argocd          | argocd/argocd-application-controller,server | (nothing in GCP) reach the other cluster         |

Neither the pipeline nor the API needs Cloud SQL (MLflow's server alone talks to it, with a password over the
private network), so no one holds roles/cloudsql.client. Argo Workflows calls no Google API here (no artifact
repository is configured in gitops/apps/argo-workflows.yaml), so it has no Google identity."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pulumi
import pulumi_gcp as gcp


@dataclass
class Workload:
    """A Google service account and the Kubernetes service accounts ("<namespace>/<name>") that act as it."""

    account_id: str
    description: str
    kubernetes: Sequence[str]
    bucket_roles: Mapping[str, str] = field(default_factory=dict)  # bucket kind -> role
    publishes: bool = False  # roles/pubsub.publisher on the events topic
    reads_db_secret: bool = False  # roles/secretmanager.secretAccessor on the MLflow database password


@dataclass
class IdentityArgs:
    project: str
    workload_pool: str
    workloads: Sequence[Workload]
    buckets: Mapping[str, gcp.storage.Bucket]
    events_topic: gcp.pubsub.Topic
    db_secret: gcp.secretmanager.Secret | None
    # Argo CD of another stack, let into this cluster (GKE requires container.clusters.get of the project).
    argocd_service_account: str = ""


class Identity(pulumi.ComponentResource):
    """The workloads' Google service accounts; ``emails[account_id]``."""

    def __init__(self, name: str, args: IdentityArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("reco:infra:Identity", name, None, opts)
        self.emails: dict[str, pulumi.Output[str]] = {}
        for workload in args.workloads:
            account = gcp.serviceaccount.Account(
                f"{name}-{workload.account_id}",
                account_id=workload.account_id,
                display_name=workload.description,
                opts=pulumi.ResourceOptions(parent=self),
            )
            self.emails[workload.account_id] = account.email
            member = account.email.apply(lambda email: f"serviceAccount:{email}")
            bound = pulumi.ResourceOptions(parent=account)
            for ksa in workload.kubernetes:
                gcp.serviceaccount.IAMMember(
                    f"{name}-{workload.account_id}-wi-{ksa.replace('/', '-')}",
                    service_account_id=account.name,
                    role="roles/iam.workloadIdentityUser",
                    member=f"serviceAccount:{args.workload_pool}[{ksa}]",
                    opts=bound,
                )
            for kind, role in workload.bucket_roles.items():
                gcp.storage.BucketIAMMember(
                    f"{name}-{workload.account_id}-{kind.replace('_', '-')}",
                    bucket=args.buckets[kind].name,
                    role=role,
                    member=member,
                    opts=bound,
                )
            if workload.publishes:
                gcp.pubsub.TopicIAMMember(
                    f"{name}-{workload.account_id}-publish",
                    topic=args.events_topic.name,
                    role="roles/pubsub.publisher",
                    member=member,
                    opts=bound,
                )
            if workload.reads_db_secret:
                if args.db_secret is None:
                    raise ValueError(f"{workload.account_id} reads the database secret, which this stack does not have")
                gcp.secretmanager.SecretIamMember(
                    f"{name}-{workload.account_id}-db-secret",
                    secret_id=args.db_secret.secret_id,
                    role="roles/secretmanager.secretAccessor",
                    member=member,
                    opts=bound,
                )
        if args.argocd_service_account:
            # Authentication to GKE needs container.clusters.get on the project (no cluster-level IAM exists);
            # what Argo CD may do inside is Kubernetes RBAC (bootstrap.py's ClusterRoleBinding).
            gcp.projects.IAMMember(
                f"{name}-argocd-cluster-viewer",
                project=args.project,
                role="roles/container.clusterViewer",
                member=f"serviceAccount:{args.argocd_service_account}",
                opts=pulumi.ResourceOptions(parent=self),
            )
        self.register_outputs({"emails": self.emails})


def workloads(platform: Mapping[str, object], host_mlflow: bool, host_argocd: bool) -> list[Workload]:
    """The workloads of one stack; the Kubernetes names come from platform.yaml (service_accounts, namespace)."""
    namespace = str(platform["namespace"])
    accounts = platform["service_accounts"]
    assert isinstance(accounts, Mapping)
    found = [
        Workload(
            account_id=str(accounts["pipeline"]),
            description="reco daily pipeline (Argo workflows)",
            kubernetes=[f"{namespace}/{accounts['pipeline']}"],
            bucket_roles={"lake": "roles/storage.objectAdmin", "feast_registry": "roles/storage.objectAdmin"},
        ),
        Workload(
            account_id=str(accounts["api"]),
            description="reco recommend API",
            kubernetes=[f"{namespace}/{accounts['api']}"],
            bucket_roles={"lake": "roles/storage.objectViewer", "feast_registry": "roles/storage.objectViewer"},
            publishes=True,
        ),
    ]
    if host_mlflow:
        found.append(
            Workload(
                account_id="mlflow",
                description="MLflow tracking server and registry",
                kubernetes=["mlflow/mlflow"],
                bucket_roles={"mlflow": "roles/storage.objectAdmin"},
                reads_db_secret=True,
            )
        )
    if host_argocd:
        found.append(
            Workload(
                account_id="argocd",
                description="Argo CD (reaches the clusters it manages)",
                kubernetes=["argocd/argocd-application-controller", "argocd/argocd-server"],
            )
        )
    return found
