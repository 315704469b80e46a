"""The platform's shared names (``platform.yaml`` at the repository root), typed for the workflow builders."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

PLATFORM_FILE = Path(__file__).resolve().parents[1] / "platform.yaml"


@dataclass(frozen=True)
class Platform:
    """What the workflows reference by name; see ``platform.yaml`` for what each one is."""

    raw: dict[str, Any]

    @property
    def namespace(self) -> str:
        return str(self.raw["namespace"])

    @property
    def pipeline_image(self) -> str:
        return str(self.raw["images"]["pipeline"])

    @property
    def pipeline_service_account(self) -> str:
        return str(self.raw["service_accounts"]["pipeline"])

    @property
    def gpu_pool(self) -> dict[str, Any]:
        return dict(self.raw["node_pools"]["gpu"])

    @property
    def cpu_pool(self) -> dict[str, Any]:
        return dict(self.raw["node_pools"]["cpu"])

    @property
    def workdir(self) -> dict[str, str]:
        return dict(self.raw["workdir"])

    def secret(self, name: str) -> dict[str, str]:
        return dict(self.raw["secrets"][name])

    def config_map(self, name: str) -> dict[str, str]:
        return dict(self.raw["config_maps"][name])


@lru_cache(maxsize=1)
def platform() -> Platform:
    return Platform(yaml.safe_load(PLATFORM_FILE.read_text()))
