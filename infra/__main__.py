"""Pulumi's entry point (Pulumi.yaml: main: infra/). Everything is in infra.program."""

import sys
from pathlib import Path

# infra/ is Pulumi's program directory; its modules import each other as the package `infra`, from the root.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from infra.program import main

main()
