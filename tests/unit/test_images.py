"""Both Dockerfiles take every base image from an ``ARG *_IMAGE=`` line, so `scripts/pin-base-images.sh` (which
pins those lines by digest) covers every base; a digest, once there, is well-formed and keeps its tag."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILES = ["Dockerfile", "Dockerfile.pipeline"]
BASE_ARG = re.compile(r"^ARG ([A-Z_]+_IMAGE)=(\S+)$", re.MULTILINE)


@pytest.mark.parametrize("name", DOCKERFILES)
def test_every_base_is_an_image_arg_or_an_earlier_stage(name: str) -> None:
    text = (ROOT / name).read_text()
    args = dict(BASE_ARG.findall(text))
    stages: set[str] = set()
    for base, stage in re.findall(r"^FROM (\S+)(?: AS (\S+))?$", text, flags=re.MULTILINE):
        arg = re.fullmatch(r"\$\{(\w+)\}", base)
        assert (arg and arg.group(1) in args) or base in stages, f"{name}: FROM {base} is not an *_IMAGE ARG"
        stages.add(stage)
    for arg, image in args.items():
        tagged, _, digest = image.partition("@")
        assert re.fullmatch(r"[\w./-]+:[\w.-]+", tagged), f"{arg}: {image} has no tag"
        assert not digest or re.fullmatch(r"sha256:[0-9a-f]{64}", digest), f"{arg}: malformed digest {digest}"


def test_the_pin_script_sees_every_base_that_is_not_pinned_yet() -> None:
    listed = subprocess.run([str(ROOT / "scripts" / "pin-base-images.sh"), "--check"], capture_output=True, text=True)
    expected = [
        f"{name}: {arg}={image} is not pinned by digest"
        for name in DOCKERFILES
        for arg, image in BASE_ARG.findall((ROOT / name).read_text())
        if "@sha256:" not in image
    ]
    assert listed.stdout.splitlines() == expected
    assert listed.returncode == (1 if expected else 0)
