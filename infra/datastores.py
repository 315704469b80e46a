"""Where data lives: the buckets (lake = the pods' workdir, MLflow artifacts, Feast registry), Memorystore Redis
(Feast's online store), Cloud SQL Postgres (MLflow's backend, where this stack runs MLflow), Pub/Sub (the API's
events into the bronze lake) and the Artifact Registry repository of the two images.

Everything is reachable on private addresses only: Redis and SQL through private service access, GCS and
Pub/Sub through Private Google Access. Secrets (Redis AUTH, the database password) only ever travel as Pulumi
secrets; the database password's one copy outside Kubernetes is in Secret Manager."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote

import pulumi
import pulumi_gcp as gcp
import pulumi_random as random

# The bronze event layout of src/reco/lake.py, relative to the bucket (= the workdir): lake/bronze/events/date=D/.
BRONZE_EVENTS_PREFIX = "lake/bronze/events/"
# The Cloud Storage subscription names each file <prefix><UTC datetime><uuid><suffix>; with this prefix and
# datetime format a file lands in lake/bronze/events/date=YYYY-MM-DD/ (the UTC day it was written, i.e. of
# arrival, as bronze partitions are), as hh_mm_ssZ<uuid>.jsonl.
EVENTS_FILENAME_PREFIX = f"{BRONZE_EVENTS_PREFIX}date="
EVENTS_FILENAME_DATETIME_FORMAT = "YYYY-MM-DD/hh_mm_ssZ"
EVENTS_FILENAME_SUFFIX = ".jsonl"
MLFLOW_DB_NAME = "mlflow"
MLFLOW_DB_USER = "mlflow"
MLFLOW_DB_HOST = "mlflow-db"  # <host>.<internal domain>, gitops/apps/mlflow.yaml's backendStore.postgres.host


@dataclass
class DatastoresArgs:
    project: str
    region: str
    network: pulumi.Input[str]
    private_services_range: pulumi.Input[str]  # the allocated range's name (Redis reserved_ip_range)
    private_services: pulumi.Resource  # the peering: Redis and SQL wait for it
    labels: dict[str, str]
    redis_tier: str
    redis_memory_gb: int
    redis_version: str
    host_mlflow: bool
    sql_tier: str
    sql_high_availability: bool
    sql_point_in_time_recovery: bool
    sql_backup_retention: int
    deletion_protection: bool
    internal_domain: str
    lake_nearline_days: int
    lake_delete_days: int
    noncurrent_version_days: int
    registry_name: str
    keep_image_versions: int
    untagged_image_days: int
    events_topic: str


class Datastores(pulumi.ComponentResource):
    """Buckets, Redis, Cloud SQL (when ``host_mlflow``), Pub/Sub, Artifact Registry."""

    def __init__(self, name: str, args: DatastoresArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("reco:infra:Datastores", name, None, opts)
        self._name = name
        self._args = args
        self.buckets = self._buckets()
        self.redis = self._redis()
        url: pulumi.Output[str] = pulumi.Output.all(self.redis.auth_string, self.redis.host, self.redis.port).apply(
            lambda v: f"rediss://:{quote(str(v[0] or ''), safe='')}@{v[1]}:{v[2]}/0"
        )
        self.redis_url: pulumi.Output[str] = pulumi.Output.secret(url)
        # The CA that signed the instance's server certificate: clients verify it (transit encryption).
        self.server_ca_certs = self.redis.server_ca_certs.apply(
            lambda certs: "\n".join((c.cert or "").strip() for c in certs or []) + "\n"
        )
        self.sql: gcp.sql.DatabaseInstance | None = None
        self.mlflow_db_password: pulumi.Output[str] | None = None
        self.mlflow_db_secret: gcp.secretmanager.Secret | None = None
        if args.host_mlflow:
            self._mlflow_database()
        self.events_topic, self.dead_letter_topic = self._events()
        self.registry = self._registry()
        self.registry_url = f"{args.region}-docker.pkg.dev/{args.project}/{args.registry_name}"
        self.register_outputs(
            {
                **{f"{kind}_bucket": bucket.name for kind, bucket in self.buckets.items()},
                "redis_host": self.redis.host,
                "server_ca_certs": self.server_ca_certs,
                "events_topic": self.events_topic.id,
                "registry_url": self.registry_url,
                **({"sql_connection_name": self.sql.connection_name} if self.sql is not None else {}),
            }
        )

    # -- buckets --------------------------------------------------------------------------------------------------

    def _buckets(self) -> dict[str, gcp.storage.Bucket]:
        a = self._args
        keep_versions = gcp.storage.BucketLifecycleRuleArgs(
            action=gcp.storage.BucketLifecycleRuleActionArgs(type="Delete"),
            condition=gcp.storage.BucketLifecycleRuleConditionArgs(
                days_since_noncurrent_time=a.noncurrent_version_days, with_state="ARCHIVED"
            ),
        )
        # Only the bronze *events* age out: bronze/articles is re-read by every ingest (silver articles are
        # rebuilt from all of it), and silver/features are what training reads.
        lake_rules = [
            gcp.storage.BucketLifecycleRuleArgs(
                action=gcp.storage.BucketLifecycleRuleActionArgs(type="SetStorageClass", storage_class="NEARLINE"),
                condition=gcp.storage.BucketLifecycleRuleConditionArgs(
                    age=a.lake_nearline_days,
                    matches_prefixes=[BRONZE_EVENTS_PREFIX],
                    matches_storage_classes=["STANDARD"],
                ),
            ),
            keep_versions,
        ]
        if a.lake_delete_days:
            lake_rules.insert(
                1,
                gcp.storage.BucketLifecycleRuleArgs(
                    action=gcp.storage.BucketLifecycleRuleActionArgs(type="Delete"),
                    condition=gcp.storage.BucketLifecycleRuleConditionArgs(
                        age=a.lake_delete_days, matches_prefixes=[BRONZE_EVENTS_PREFIX]
                    ),
                ),
            )
        kinds = {"lake": lake_rules, "feast_registry": [keep_versions]}
        if a.host_mlflow:
            kinds["mlflow"] = [keep_versions]
        return {
            kind: gcp.storage.Bucket(
                f"{self._name}-{kind.replace('_', '-')}",
                name=f"{a.project}-{kind.replace('_', '-')}",
                location=a.region.upper(),
                storage_class="STANDARD",
                uniform_bucket_level_access=True,
                public_access_prevention="enforced",
                versioning=gcp.storage.BucketVersioningArgs(enabled=True),
                lifecycle_rules=rules,
                force_destroy=False,
                labels=a.labels,
                opts=pulumi.ResourceOptions(parent=self),
            )
            for kind, rules in kinds.items()
        }

    # -- Redis ----------------------------------------------------------------------------------------------------

    def _redis(self) -> gcp.redis.Instance:
        a = self._args
        return gcp.redis.Instance(
            f"{self._name}-redis",
            name="reco-online",
            display_name="Feast online store",
            region=a.region,
            tier=a.redis_tier,
            memory_size_gb=a.redis_memory_gb,
            redis_version=a.redis_version,
            authorized_network=a.network,
            connect_mode="PRIVATE_SERVICE_ACCESS",
            reserved_ip_range=a.private_services_range,
            auth_enabled=True,
            # TLS on 6378; clients verify the server with server_ca_certs (reco-redis's ca.crt).
            transit_encryption_mode="SERVER_AUTHENTICATION",
            maintenance_policy=gcp.redis.InstanceMaintenancePolicyArgs(
                weekly_maintenance_windows=[
                    gcp.redis.InstanceMaintenancePolicyWeeklyMaintenanceWindowArgs(
                        day="SUNDAY",
                        start_time=gcp.redis.InstanceMaintenancePolicyWeeklyMaintenanceWindowStartTimeArgs(
                            hours=2, minutes=0
                        ),
                    )
                ]
            ),
            labels=a.labels,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[a.private_services]),
        )

    # -- Cloud SQL for MLflow -------------------------------------------------------------------------------------

    def _mlflow_database(self) -> None:
        a = self._args
        child = pulumi.ResourceOptions(parent=self)
        self.sql = gcp.sql.DatabaseInstance(
            f"{self._name}-mlflow-sql",
            name="reco-mlflow",
            database_version="POSTGRES_16",
            region=a.region,
            deletion_protection=a.deletion_protection,
            settings=gcp.sql.DatabaseInstanceSettingsArgs(
                tier=a.sql_tier,
                edition="ENTERPRISE",
                availability_type="REGIONAL" if a.sql_high_availability else "ZONAL",
                disk_type="PD_SSD",
                disk_size=10,
                disk_autoresize=True,
                deletion_protection_enabled=a.deletion_protection,
                ip_configuration=gcp.sql.DatabaseInstanceSettingsIpConfigurationArgs(
                    ipv4_enabled=False,
                    private_network=a.network,
                    allocated_ip_range=a.private_services_range,
                    ssl_mode="ENCRYPTED_ONLY",
                ),
                backup_configuration=gcp.sql.DatabaseInstanceSettingsBackupConfigurationArgs(
                    enabled=True,
                    start_time="01:00",
                    point_in_time_recovery_enabled=a.sql_point_in_time_recovery,
                    transaction_log_retention_days=7,
                    backup_retention_settings=gcp.sql.DatabaseInstanceSettingsBackupConfigurationBackupRetentionSettingsArgs(
                        retained_backups=a.sql_backup_retention, retention_unit="COUNT"
                    ),
                ),
                maintenance_window=gcp.sql.DatabaseInstanceSettingsMaintenanceWindowArgs(
                    day=7, hour=3, update_track="stable"
                ),
                insights_config=gcp.sql.DatabaseInstanceSettingsInsightsConfigArgs(query_insights_enabled=True),
                user_labels=a.labels,
            ),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[a.private_services]),
        )
        gcp.sql.Database(f"{self._name}-mlflow-db", name=MLFLOW_DB_NAME, instance=self.sql.name, opts=child)
        password = random.RandomPassword(f"{self._name}-mlflow-db-password", length=32, special=False, opts=child)
        self.mlflow_db_password = pulumi.Output.secret(password.result)
        gcp.sql.User(
            f"{self._name}-mlflow-db-user",
            name=MLFLOW_DB_USER,
            instance=self.sql.name,
            password=self.mlflow_db_password,
            opts=child,
        )
        self.mlflow_db_secret = gcp.secretmanager.Secret(
            f"{self._name}-mlflow-db-password",
            secret_id="mlflow-db-password",
            replication=gcp.secretmanager.SecretReplicationArgs(auto=gcp.secretmanager.SecretReplicationAutoArgs()),
            labels=a.labels,
            opts=child,
        )
        gcp.secretmanager.SecretVersion(
            f"{self._name}-mlflow-db-password",
            secret=self.mlflow_db_secret.id,
            secret_data=self.mlflow_db_password,
            opts=child,
        )

        # mlflow-db.<domain>: the name gitops/apps/mlflow.yaml connects to, resolvable inside the VPC only.
        zone = gcp.dns.ManagedZone(
            f"{self._name}-internal-zone",
            name="reco-internal",
            dns_name=f"{a.internal_domain}.",
            visibility="private",
            private_visibility_config=gcp.dns.ManagedZonePrivateVisibilityConfigArgs(
                networks=[gcp.dns.ManagedZonePrivateVisibilityConfigNetworkArgs(network_url=a.network)]
            ),
            labels=a.labels,
            opts=child,
        )
        gcp.dns.RecordSet(
            f"{self._name}-mlflow-db-dns",
            managed_zone=zone.name,
            name=f"{MLFLOW_DB_HOST}.{a.internal_domain}.",
            type="A",
            ttl=300,
            rrdatas=[self.sql.private_ip_address],
            opts=child,
        )

    # -- Pub/Sub: events into the bronze lake ---------------------------------------------------------------------

    def _events(self) -> tuple[gcp.pubsub.Topic, gcp.pubsub.Topic]:
        a = self._args
        child = pulumi.ResourceOptions(parent=self)
        lake = self.buckets["lake"]
        topic = gcp.pubsub.Topic(
            f"{self._name}-events",
            name=a.events_topic,
            message_retention_duration="86400s",
            labels=a.labels,
            opts=child,
        )
        dead_letter = gcp.pubsub.Topic(
            f"{self._name}-events-dead-letter", name=f"{a.events_topic}-dead-letter", labels=a.labels, opts=child
        )
        gcp.pubsub.Subscription(
            f"{self._name}-events-dead-letter",
            name=f"{a.events_topic}-dead-letter",
            topic=dead_letter.id,
            message_retention_duration="604800s",
            expiration_policy=gcp.pubsub.SubscriptionExpirationPolicyArgs(ttl=""),
            labels=a.labels,
            opts=child,
        )

        # Pub/Sub's service agent writes the files and moves undeliverable messages.
        agent = gcp.projects.ServiceIdentity(
            f"{self._name}-pubsub-agent", project=a.project, service="pubsub.googleapis.com", opts=child
        )
        agent_member = agent.email.apply(lambda email: f"serviceAccount:{email}")
        writes = [
            gcp.storage.BucketIAMMember(
                f"{self._name}-pubsub-agent-lake-{role.split('.')[-1].lower()}",
                bucket=lake.name,
                role=role,
                member=agent_member,
                opts=child,
            )
            for role in ("roles/storage.objectCreator", "roles/storage.legacyBucketReader")
        ]
        dead_letter_publish = gcp.pubsub.TopicIAMMember(
            f"{self._name}-pubsub-agent-dead-letter",
            topic=dead_letter.name,
            role="roles/pubsub.publisher",
            member=agent_member,
            opts=child,
        )
        to_lake = gcp.pubsub.Subscription(
            f"{self._name}-events-to-lake",
            name=f"{a.events_topic}-to-lake",
            topic=topic.id,
            cloud_storage_config=gcp.pubsub.SubscriptionCloudStorageConfigArgs(
                bucket=lake.name,
                filename_prefix=EVENTS_FILENAME_PREFIX,
                filename_datetime_format=EVENTS_FILENAME_DATETIME_FORMAT,
                filename_suffix=EVENTS_FILENAME_SUFFIX,
                # One JSON event per line (the message data as services/recommend/events.py publishes it).
                text_config=gcp.pubsub.SubscriptionCloudStorageConfigTextConfigArgs(),
                max_duration="300s",
                max_bytes=100 * 1024 * 1024,
            ),
            dead_letter_policy=gcp.pubsub.SubscriptionDeadLetterPolicyArgs(
                dead_letter_topic=dead_letter.id, max_delivery_attempts=10
            ),
            message_retention_duration="604800s",
            expiration_policy=gcp.pubsub.SubscriptionExpirationPolicyArgs(ttl=""),
            labels=a.labels,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[*writes, dead_letter_publish]),
        )
        # Dead-lettering acknowledges the message on the source subscription: the agent must be its subscriber.
        gcp.pubsub.SubscriptionIAMMember(
            f"{self._name}-pubsub-agent-to-lake",
            subscription=to_lake.name,
            role="roles/pubsub.subscriber",
            member=agent_member,
            opts=child,
        )
        return topic, dead_letter

    # -- Artifact Registry ----------------------------------------------------------------------------------------

    def _registry(self) -> gcp.artifactregistry.Repository:
        a = self._args
        return gcp.artifactregistry.Repository(
            f"{self._name}-registry",
            repository_id=a.registry_name,
            location=a.region,
            format="DOCKER",
            description="reco-api and reco-pipeline images",
            # A release names its image by tag (gitops overlays' release.yaml): a tag must never move.
            docker_config=gcp.artifactregistry.RepositoryDockerConfigArgs(immutable_tags=True),
            cleanup_policy_dry_run=False,
            cleanup_policies=[
                # KEEP wins over DELETE: the newest versions of each image, tagged or not, always stay.
                gcp.artifactregistry.RepositoryCleanupPolicyArgs(
                    id="keep-recent",
                    action="KEEP",
                    most_recent_versions=gcp.artifactregistry.RepositoryCleanupPolicyMostRecentVersionsArgs(
                        keep_count=a.keep_image_versions
                    ),
                ),
                # Only untagged versions are ever deleted: a tag may be what an overlay serves.
                gcp.artifactregistry.RepositoryCleanupPolicyArgs(
                    id="delete-untagged",
                    action="DELETE",
                    condition=gcp.artifactregistry.RepositoryCleanupPolicyConditionArgs(
                        tag_state="UNTAGGED", older_than=f"{a.untagged_image_days * 86400}s"
                    ),
                ),
            ],
            labels=a.labels,
            opts=pulumi.ResourceOptions(parent=self),
        )
