"""The reco-articles CrossGuard policy pack: `pulumi preview --policy-pack policies`.

Pulumi runs this directory with runpy (``run_name="__main__"``), which also puts it on ``sys.path``.
Constructing ``PolicyPack`` starts the analyzer's gRPC server and blocks, hence the guard: tests import
``reco_policies`` and start this file in a subprocess.
"""

from pulumi_policy import EnforcementLevel, PolicyPack
from reco_policies.catalog import resource_policies

if __name__ == "__main__":
    PolicyPack(
        "reco-articles",
        policies=resource_policies(),
        enforcement_level=EnforcementLevel.MANDATORY,
        description="Security, recovery, labelling and pinning rules for the reco-articles GCP/GKE program.",
    )
